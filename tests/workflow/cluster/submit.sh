#!/usr/bin/env bash
# A tiny local "scheduler" for snakemake's cluster-generic executor: submit a job.
#
#   --cluster-generic-submit-cmd "tests/workflow/cluster/submit.sh {rule} {threads} {resources.mem_mb}"
#
# Snakemake appends the job script as the last argument. It runs in the background, fully
# detached from this script's stdout (snakemake reads that until it closes); its pid, exit
# code, output and the other arguments go to $SCHEDULER_DIR (default ./.scheduler) under the
# job id, which is printed on stdout, as a real scheduler's submit command does.
set -euo pipefail
(( $# >= 1 )) || { echo "usage: submit.sh [ARG...] JOBSCRIPT" >&2; exit 2; }
state="${SCHEDULER_DIR:-$PWD/.scheduler}"
mkdir -p "$state"
jobscript="${!#}"
[[ -r "$jobscript" ]] || { echo "submit.sh: no job script at $jobscript" >&2; exit 2; }
id="job$(date +%s%N)$$"
printf '%s\n' "${@:1:$#-1}" > "$state/$id.args"
(
    bash "$jobscript"
    echo $? > "$state/$id.exit.tmp"
    mv "$state/$id.exit.tmp" "$state/$id.exit"   # atomic: status.sh never reads half a file
) </dev/null >"$state/$id.out" 2>&1 &
echo $! > "$state/$id.pid"
echo "$id"
