#!/usr/bin/env bash
# Status of a job of the local scheduler (submit.sh), as snakemake's cluster-generic
# executor wants it: exactly one word, success, failed or running.
#
#   --cluster-generic-status-cmd tests/workflow/cluster/status.sh   # job id is the last argument
set -uo pipefail
state="${SCHEDULER_DIR:-$PWD/.scheduler}"
id="${!#}"

finished() {
    [[ -f "$state/$id.exit" ]] || return 1
    if [[ "$(cat "$state/$id.exit")" == 0 ]]; then echo success; else echo failed; fi
}

finished && exit 0
pid="$(cat "$state/$id.pid" 2>/dev/null)" || { echo failed; exit 0; }   # unknown job
if kill -0 "$pid" 2>/dev/null; then echo running; exit 0; fi
# The process is gone: it wrote its exit code just before leaving, unless it was killed.
finished || echo failed
