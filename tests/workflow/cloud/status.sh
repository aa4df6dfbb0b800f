#!/usr/bin/env bash
# Status of a job started by submit.sh: running, success or failed (its exit code file).
rc="$SNAKEVI_TEST_NODES/$1.rc"
if [[ ! -f "$rc" ]]; then
    echo running
elif [[ "$(cat "$rc")" == 0 ]]; then
    echo success
else
    echo failed
fi
