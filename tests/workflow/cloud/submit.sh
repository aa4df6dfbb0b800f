#!/usr/bin/env bash
# A fresh cloud node per job, for the cluster-generic executor (tests/workflow/test_cloud.py):
# each job starts in a new empty directory under $SNAKEVI_TEST_NODES holding only what a job
# image or Snakemake's source deployment would bring: the workflow sources and the config of the
# submitting directory. Anything a job reads from the submitting directory instead of the
# storage is missing there.
#   usage: submit.sh JOBSCRIPT      prints the job id (the node's folder name)
set -euo pipefail
jobscript="$1"
node="$(mktemp -d "$SNAKEVI_TEST_NODES/node.XXXXXX")"
cp -r Snakefile workflow scripts envs config "$node"/
(
    cd "$node"
    rc=0
    bash "$jobscript" > "$node.log" 2>&1 || rc=$?
    echo "$rc" > "$node.rc"
) > /dev/null 2>&1 &
basename "$node"
