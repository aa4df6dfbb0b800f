#!/usr/bin/env bash
# Start a single-node SLURM on this machine for tests/workflow/test_slurm.py.
#
#   tests/workflow/slurm/start_slurm.sh    # as root; installs Debian's packages when missing
#   tests/workflow/slurm/stop_slurm.sh     # stops the daemons this script started
#
# Installs (if missing) slurmctld, slurmd, slurm-client and munge with apt-get, writes
# /etc/slurm/slurm.conf from slurm.conf.in (only when that file is absent or was written by
# this script), starts munged, slurmctld and slurmd directly (no systemd on these machines)
# and waits until `sinfo` shows the node idle. State and logs go to $SNAKEVI_SLURM_STATE
# (default /var/lib/snakevi-slurm). Prints the partition name on the last line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
state="${SNAKEVI_SLURM_STATE:-/var/lib/snakevi-slurm}"
conf=/etc/slurm/slurm.conf
node=snakevi-node
partition="${SNAKEVI_SLURM_PARTITION:-debug}"
marker="snakevi-test-cluster"

say() { echo "[start_slurm] $*" >&2; }
die() { say "error: $*"; exit 1; }

[[ "$(id -u)" == 0 ]] || die "run as root (it installs packages and starts daemons)"

if sinfo -h -o %t 2>/dev/null | grep -qx idle; then
    say "SLURM is already running"; sinfo >&2; echo "$partition"; exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    say "installing slurmctld slurmd slurm-client munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # No init system here: keep the packages' scripts from starting services themselves.
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >&2
fi

if [[ -e "$conf" ]] && ! grep -q "$marker" "$conf"; then
    die "$conf exists and was not written by this script; refusing to overwrite it"
fi
mkdir -p /etc/slurm "$state/slurmctld" "$state/slurmd"
cpus="$(nproc)"
mem_total_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 ))
# slurmd refuses to register a node that claims more memory than it has: leave headroom.
mem_mb=$(( mem_total_mb * 85 / 100 ))
sed -e "s|@HOST@|$(hostname -s)|" -e "s|@STATE@|$state|g" -e "s|@NODE@|$node|g" \
    -e "s|@CPUS@|$cpus|" -e "s|@MEM@|$mem_mb|" -e "s|@PARTITION@|$partition|" \
    "$here/slurm.conf.in" > "$conf"

# munge: a key, its run directory, and the daemon as the munge user.
if [[ ! -s /etc/munge/munge.key ]]; then
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null; then mungekey --create --force >&2
    else dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
fi
chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! pgrep -u munge -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged >&2
fi
for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
munge -n | unmunge >/dev/null || die "munged does not answer"

# The daemons fork into the background and write their pid files into $state.
[[ -s "$state/slurmctld.pid" ]] && kill -0 "$(cat "$state/slurmctld.pid")" 2>/dev/null \
    || /usr/sbin/slurmctld -c >&2   # -c: clear old state (jobs of an earlier start)
[[ -s "$state/slurmd.pid" ]] && kill -0 "$(cat "$state/slurmd.pid")" 2>/dev/null \
    || /usr/sbin/slurmd -N "$node" >&2

for i in $(seq 120); do
    if sinfo -h -o %t 2>/dev/null | grep -qx idle; then
        say "SLURM is up after ${i}x0.5 s"; sinfo >&2; echo "$partition"; exit 0
    fi
    sleep 0.5
done
say "node did not become idle; logs follow"
sinfo >&2 || true
tail -n 30 "$state/slurmctld.log" "$state/slurmd.log" >&2 || true
exit 1
