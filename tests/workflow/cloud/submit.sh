#!/usr/bin/env bash
# A fresh cloud node per job, for the cluster-generic executor (tests/workflow/test_cloud.py):
# each job starts in a new empty directory under $SNAKEVI_TEST_NODES holding only what a job
# image or Snakemake's source deployment would bring: the workflow sources and the config of the
# submitting directory. Anything a job reads from the submitting directory instead of the
# storage is missing there. The job runs in a process group of its own, whose id is in
# <node>.pid: `kill -KILL -<id>` takes the node away mid-job (a spot reclaim).
#   usage: submit.sh JOBSCRIPT      prints the job id (the node's folder name)
set -euo pipefail
jobscript="$1"
node="$(mktemp -d "$SNAKEVI_TEST_NODES/node.XXXXXX")"
cp -r Snakefile workflow scripts envs config "$node"/
(
    cd "$node"
    rc=0
    setsid bash "$jobscript" > "$node.log" 2>&1 &
    echo $! > "$node.pid"
    wait $! || rc=$?
    echo "$rc" > "$node.rc"
) > /dev/null 2>&1 &
basename "$node"
