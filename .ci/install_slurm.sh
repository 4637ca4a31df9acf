#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for tests/test_slurm.py (Debian/Ubuntu, run as root, no
# systemd needed). Idempotent: run it again and it only starts what is not running.
#
#   .ci/install_slurm.sh          install the packages if missing, configure, start, wait for the node
#   .ci/install_slurm.sh start    no apt: configure and start (packages must already be installed)
#   .ci/install_slurm.sh status   exit 0 when the cluster answers and the node is usable
#
# The cluster: munge auth, one node "localhost" with all CPUs and 90 % of its memory, a default partition
# "cpu" and a partition "gpu" on the same node (the profile's partition names), the machine's NVIDIA GPUs
# as gres/gpu or, where it has none, one placeholder GPU (File=/dev/null) so that `--gpus=1` jobs are
# scheduled and run on the CPU; no accounting database (so `sacct` fails, as on many small clusters: the
# Snakemake profile polls with squeue), and a job-completion log at $JOBCOMP_LOG that the tests read.
set -euo pipefail

SLURM_ETC=/etc/slurm
CONF=$SLURM_ETC/slurm.conf
MARKER="# written by lulc .ci/install_slurm.sh"
JOBCOMP_LOG=/var/log/slurm/jobcomp.log
STATE=/var/lib/slurm
WAIT_S=${SLURM_WAIT_S:-60}

log() { echo "install_slurm: $*" >&2; }

as_root() {
    if [[ $(id -u) -ne 0 ]]; then
        log "must run as root (it installs packages and starts daemons)"
        exit 2
    fi
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null; then
        log "packages already installed"
        return
    fi
    log "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
    apt-get clean
}

write_config() {
    if [[ -f $CONF ]] && ! grep -qF "$MARKER" "$CONF"; then
        log "$CONF exists and was not written by this script: left as it is"
        return
    fi
    local cpus mem
    cpus=$(nproc)
    # slurmd -C prints the node's hardware as slurm.conf would write it; declaring more memory than the
    # node has drains it, so declare 90 %.
    mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n1)
    mem=$((mem * 9 / 10))
    local gpus=(/dev/nvidia[0-9]*) gres_file
    if [[ -e ${gpus[0]} ]]; then
        gres_file="/dev/nvidia[0-$((${#gpus[@]} - 1))]"
    else
        gpus=(/dev/null)
        gres_file=/dev/null
    fi
    mkdir -p "$SLURM_ETC" "$(dirname "$JOBCOMP_LOG")" "$STATE/slurmctld" "$STATE/slurmd"
    local tmp
    tmp=$(mktemp)
    cat >"$tmp" <<EOF
$MARKER
# A single-node test cluster without cgroups or accounting.
ClusterName=lulc
GresTypes=gpu
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default, a job that asks for no memory takes the whole node and jobs run one at a time.
DefMemPerCPU=1000
# Finished jobs stay visible to squeue for 5 minutes (the Snakemake profile polls with squeue; the plugin
# wants MinJobAge >= 3 x slurm-init-seconds-before-status-checks).
MinJobAge=300
ReturnToService=2
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$JOBCOMP_LOG
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:${#gpus[@]} State=UNKNOWN
PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost Default=NO MaxTime=INFINITE State=UP
EOF
    echo "NodeName=localhost Name=gpu File=$gres_file" >>"$tmp.gres"
    if ! cmp -s "$tmp" "$CONF" 2>/dev/null || ! cmp -s "$tmp.gres" "$SLURM_ETC/gres.conf" 2>/dev/null; then
        install -m 0644 "$tmp" "$CONF"
        install -m 0644 "$tmp.gres" "$SLURM_ETC/gres.conf"
        log "wrote $CONF (CPUs=$cpus RealMemory=$mem, ${#gpus[@]} GPU(s): $gres_file)"
        CONFIG_CHANGED=1
    fi
    rm -f "$tmp" "$tmp.gres"
}

stop_daemon() {
    local pidfile=/run/slurm/$1.pid pid
    [[ -f $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        log "configuration changed: stopping $1 (pid $pid)"
        kill "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$pidfile"
}

munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
ctld_ok() { scontrol ping 2>/dev/null | grep -q "is UP"; }
# slurmd runs as root, so its pid file is the reliable way to tell it runs (no broad process matching).
slurmd_ok() { [[ -f /run/slurm/slurmd.pid ]] && kill -0 "$(cat /run/slurm/slurmd.pid)" 2>/dev/null; }
node_state() { sinfo -h -N -n localhost -o %T 2>/dev/null | head -n1; }

start_daemons() {
    mkdir -p /run/munge /run/slurm /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating a munge key"
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile=/etc/munge/munge.key
        else
            dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
        fi
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
    fi
    if ! munge_ok; then
        log "starting munged"
        runuser -u munge -- /usr/sbin/munged --force
        for _ in $(seq 50); do munge_ok && break; sleep 0.1; done
        munge_ok || { log "munged did not start"; exit 1; }
    fi
    if [[ ${CONFIG_CHANGED:-0} == 1 ]]; then
        # node definitions (CPUs, memory, GPUs) are read only at start: restart the daemons this script
        # started, by their pid files
        stop_daemon slurmd
        stop_daemon slurmctld
    fi
    if ! ctld_ok; then
        log "starting slurmctld"
        /usr/sbin/slurmctld
        for _ in $(seq 100); do ctld_ok && break; sleep 0.1; done
        ctld_ok || { log "slurmctld did not start; see /var/log/slurm/slurmctld.log"; exit 1; }
    fi
    if ! slurmd_ok; then
        log "starting slurmd"
        /usr/sbin/slurmd -N localhost
    fi
}

wait_for_node() {
    local state
    for _ in $(seq $((WAIT_S * 2))); do
        state=$(node_state)
        case $state in
            idle | mixed | allocated | completing)
                log "node localhost is $state"
                return 0
                ;;
            down* | drain* | drained*)
                scontrol update nodename=localhost state=resume 2>/dev/null || true
                ;;
        esac
        sleep 0.5
    done
    log "node localhost did not become idle (state: ${state:-unknown}); see /var/log/slurm/"
    sinfo -N -l >&2 || true
    exit 1
}

status() {
    command -v sinfo >/dev/null || { log "sinfo not installed"; exit 1; }
    munge_ok || { log "munged not running"; exit 1; }
    ctld_ok || { log "slurmctld not answering"; exit 1; }
    case $(node_state) in
        idle | mixed | allocated | completing) exit 0 ;;
        *) log "node state: $(node_state)"; exit 1 ;;
    esac
}

case ${1:-all} in
    all)
        as_root
        install_packages
        write_config
        start_daemons
        wait_for_node
        ;;
    start)
        as_root
        command -v slurmctld >/dev/null || { log "slurm-wlm is not installed: run $0 without arguments"; exit 1; }
        write_config
        start_daemons
        wait_for_node
        ;;
    status) status ;;
    *)
        echo "usage: $0 [all|start|status]" >&2
        exit 2
        ;;
esac
