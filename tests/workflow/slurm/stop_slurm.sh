#!/usr/bin/env bash
# Stop the single-node SLURM started by start_slurm.sh (slurmd, slurmctld, then munged).
set -uo pipefail
state="${SNAKEVI_SLURM_STATE:-/var/lib/snakevi-slurm}"

stop_pidfile() {  # name pidfile
    local pid
    pid="$(cat "$2" 2>/dev/null)" || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        echo "[stop_slurm] stopped $1 ($pid)" >&2
    fi
    rm -f "$2"
}

stop_pidfile slurmd "$state/slurmd.pid"
stop_pidfile slurmctld "$state/slurmctld.pid"
stop_pidfile munged /run/munge/munged.pid
exit 0
