#!/usr/bin/env bash
# Install a real STAC API for tests/test_stac_api.py: PostgreSQL 15 + PostGIS 3 (Debian packages) and
# stac-fastapi-pgstac + pypgstac + uvicorn in their OWN virtual environment, so the project's pinned
# environment (.venv, requirements.txt) is never touched. Idempotent; run as root (apt) on Debian 12.
#
#   .ci/install_stac_api.sh                 # venv in /opt/stac-api-venv
#   STAC_API_VENV=/somewhere .ci/install_stac_api.sh
#
# The test finds the venv through $STAC_API_VENV, else /opt/stac-api-venv, else .venv-stac in the repo.
set -euo pipefail

STAC_API_VENV="${STAC_API_VENV:-/opt/stac-api-venv}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

# Pinned server stack (measured together; see ../shared/notes/servers.md).
STAC_FASTAPI_PGSTAC_VERSION=7.2.0
PYPGSTAC_VERSION=0.10.0
UVICORN_VERSION=0.54.0

if [ ! -x /usr/lib/postgresql/15/bin/initdb ] || [ ! -f /usr/share/postgresql/15/extension/postgis.control ]; then
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends postgresql-15-postgis-3 >/dev/null
    $SUDO apt-get clean
fi

if [ ! -x "$STAC_API_VENV/bin/uvicorn" ] || [ ! -x "$STAC_API_VENV/bin/pypgstac" ] \
    || ! "$STAC_API_VENV/bin/python" -c "import stac_fastapi.pgstac" >/dev/null 2>&1; then
    "$PYTHON" -m venv "$STAC_API_VENV"
    "$STAC_API_VENV/bin/python" -m pip install --quiet --no-cache-dir --upgrade pip
    "$STAC_API_VENV/bin/python" -m pip install --quiet --no-cache-dir \
        "stac-fastapi.pgstac==${STAC_FASTAPI_PGSTAC_VERSION}" \
        "pypgstac[psycopg]==${PYPGSTAC_VERSION}" \
        "uvicorn==${UVICORN_VERSION}"
fi

# the postgres server runs as a non-root user: it must be able to reach the venv's files (read only)
chmod -R a+rX "$STAC_API_VENV" 2>/dev/null || true

echo "PostgreSQL: $(/usr/lib/postgresql/15/bin/postgres --version)"
echo "PostGIS:    $(ls /usr/share/postgresql/15/extension/postgis--*.sql | grep -o '[0-9]\+\.[0-9]\+\.[0-9]\+' | sort -V | tail -1)"
echo "server venv: $STAC_API_VENV ($("$STAC_API_VENV/bin/python" -m pip freeze 2>/dev/null | grep -i -E '^(stac[-_.]fastapi[-_.]pgstac|pypgstac|uvicorn)==' | tr '\n' ' '))"
