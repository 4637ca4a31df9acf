#!/usr/bin/env bash
# A real headless browser for the viewer tests (tests/test_viewer.py, tests/test_workflow.py): Debian's chromium
# and chromium-driver, from the distribution's package registry (no browser download by a test tool). Run as
# root; idempotent.
set -euo pipefail
if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
    echo "install_browser: $(/usr/bin/chromium --version 2>/dev/null | head -n 1) already installed" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends chromium chromium-driver
apt-get clean
rm -rf /var/lib/apt/lists/*
/usr/bin/chromium --version
