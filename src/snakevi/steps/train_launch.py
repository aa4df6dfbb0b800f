"""The train step as N processes: start one rank each, relay their logs, forward signals, report.

When a run asks for several processes (``train.devices`` x ``train.nodes`` > 1) and this process
was not itself started by a launcher, the train step becomes a small supervisor: it starts the
ranks, each of which runs ``snakevi train`` with the same arguments (and trains as one rank of
the process group, :mod:`snakevi.train.distributed`), then waits for all of them.

Launchers (``launcher=``):

``local``
    N processes on this machine, started here with torchrun's environment (``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR=127.0.0.1``, a free ``MASTER_PORT``). They
    run in their own session and get only the signals this process forwards, so one Ctrl-C is
    one stop request (a second one aborts, as for one process). When one rank fails, the others
    get SIGTERM, then SIGKILL after a grace period: none is left waiting in a collective.
``srun``
    Inside a SLURM allocation: ``srun --ntasks=N*M --nodes=M`` (one task per device, tasks on
    every node of the allocation); ``MASTER_ADDR`` is this host (the first node of the job).
``torchrun``
    ``python -m torch.distributed.run --standalone --nproc-per-node=N`` (one node). On SIGTERM
    torchrun gives its workers 30 s before SIGKILL, so an epoch longer than that loses its
    stop checkpoint; ``local`` waits for the epoch.
``auto``
    ``srun`` inside a SLURM job, else ``local``.

Each rank's log lines come here tagged ``[rank k]``; rank 0 writes every output. All ranks
stopped by a signal (exit status 3) raise :class:`TrainingInterrupted`, as one process does; any
other failure raises :class:`StepError` naming the first process that failed and why.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from snakevi.steps._io import StepError
from snakevi.train.recipe import TrainingInterrupted

log = logging.getLogger(__name__)

LAUNCHERS = ("auto", "local", "srun", "torchrun")
#: After the first rank fails, how long the others may take to fail on their own (a peer that
#: closed its connection ends gloo's collectives at once) before they are stopped.
FAILURE_GRACE_S = 20.0
#: After SIGTERM, how long a stopped rank may take before SIGKILL.
KILL_GRACE_S = 10.0

# "12:00:01 INFO snakevi.train.recipe: epoch 1/5 ..." (step_logging's format), srun --label's "1: " first.
_LOG_LINE = re.compile(r"^(?:\s*(\d+): )?\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) ([\w.]+): (.*)$")
_FAILED = re.compile(r"snakevi train failed: (\w+): (.*)$")


def choose_launcher(launcher: str, nodes: int) -> str:
    """The launcher to use: ``auto`` resolved (srun in a SLURM job, else local); checked."""
    if launcher not in LAUNCHERS:
        raise StepError(f"launcher={launcher!r}: expected one of {list(LAUNCHERS)}.")
    in_slurm_job = "SLURM_JOB_ID" in os.environ and shutil.which("srun") is not None
    if launcher == "auto":
        launcher = "srun" if in_slurm_job else "local"
    if nodes > 1 and launcher != "srun":
        raise StepError(
            f"train.nodes={nodes} needs the srun launcher inside a SLURM allocation of {nodes} nodes "
            f"(launcher={launcher!r}{'' if in_slurm_job else ', and this process is not in a SLURM job'}). "
            "Run the workflow with the slurm executor, or set train.nodes: 1."
        )
    if launcher == "srun" and shutil.which("srun") is None:
        raise StepError("launcher='srun' but srun is not on PATH: run inside a SLURM job, or use launcher: local.")
    return launcher


def rank_commands(step_args: list[str], *, devices: int, nodes: int, launcher: str,
                  threads_per_rank: int) -> list[tuple[list[str], dict[str, str]]]:
    """The command line and extra environment of each process to start.

    ``local`` starts one process per rank; ``srun`` and ``torchrun`` one launcher each.
    """
    rank_argv = ["-m", "snakevi", "train", *step_args, "--threads", str(threads_per_rank)]
    processes = devices * nodes
    if launcher == "local":
        port = str(_free_port())
        return [([sys.executable, *rank_argv],
                 {"RANK": str(r), "WORLD_SIZE": str(processes), "LOCAL_RANK": str(r),
                  "LOCAL_WORLD_SIZE": str(processes), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port})
                for r in range(processes)]
    if launcher == "torchrun":
        return [([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={devices}",
                  *rank_argv], {})]
    srun = ["srun", f"--ntasks={processes}", f"--nodes={nodes}", f"--ntasks-per-node={devices}",
            f"--cpus-per-task={threads_per_rank}", "--kill-on-bad-exit=1", "--label",
            # The train job may itself run in a step (srun -n1 of the slurm executor): share its CPUs.
            "--overlap"]
    # srun's tasks take the job's environment; environment_world() maps SLURM_PROCID & co.
    env = {"MASTER_ADDR": socket.gethostname(), "MASTER_PORT": str(_free_port()), "LOCAL_WORLD_SIZE": str(devices)}
    return [([*srun, sys.executable, *rank_argv], env)]


def _free_port() -> int:
    from snakevi.train.launch import free_port

    return free_port()


@dataclass
class _Rank:
    """One started process (a rank, or srun/torchrun with all of them) and what its output said."""

    index: int
    proc: subprocess.Popen
    failures: list[tuple[str, str]] = field(default_factory=list)  # (error type, message) lines
    ended_at: float | None = None  # time.monotonic() when it ended, set by its waiter thread
    threads: list[threading.Thread] = field(default_factory=list)


def launch(step_args: list[str], *, devices: int, nodes: int = 1, launcher: str = "auto",
           threads: int | None = None, accelerator: str = "auto") -> None:
    """Run ``snakevi train <step_args>`` as ``devices * nodes`` processes and wait for them all.

    Parameters
    ----------
    step_args
        The train command's arguments (``--prepared ... --devices N``), the same for every rank.
    devices, nodes
        Processes per node (one device each) and nodes.
    launcher
        ``auto``, ``local``, ``srun`` or ``torchrun`` (see the module's docstring).
    threads
        CPU threads of the job on each node; each rank gets ``threads // devices`` (at least 1).
    accelerator
        The ranks' accelerator: on ``"cpu"``, more processes than this machine's cores are
        refused before any starts (the ranks themselves refuse more processes than GPUs).

    Raises
    ------
    TrainingInterrupted
        Every rank stopped on a signal after its checkpoint (rerun to resume).
    StepError
        A rank failed or was killed; the message names the first one and its error.
    """
    kind = choose_launcher(launcher, nodes)
    processes = devices * nodes
    cores = os.cpu_count() or 1
    if accelerator == "cpu" and kind != "srun" and devices > cores:
        raise StepError(
            f"devices={devices}: more training processes than CPU cores ({cores}) on this machine. "
            f"Use devices={cores} or fewer."
        )
    # The job's threads are per node (a SLURM job's CPUs per node): shared by the node's ranks.
    per_rank = max(1, (threads or os.cpu_count() or 1) // devices)
    log.info("training with %d processes (%d per node on %d node(s), launcher %s, %d thread(s) each)",
             processes, devices, nodes, kind, per_rank)
    commands = rank_commands(step_args, devices=devices, nodes=nodes, launcher=kind, threads_per_rank=per_rank)
    ranks = _start(commands)
    forwarded = _forward_signals(ranks)
    try:
        _wait(ranks)
    finally:
        for sig, handler in forwarded.items():
            signal.signal(sig, handler)
    _report(ranks, processes)


def _start(commands) -> list[_Rank]:
    ranks = []
    try:
        for i, (argv, extra_env) in enumerate(commands):
            env = {**os.environ, **extra_env, "PYTHONUNBUFFERED": "1"}
            proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, errors="replace",
                                    start_new_session=True, preexec_fn=_end_with_parent)
            ranks.append(_Rank(i, proc))
    except BaseException:
        for rank in ranks:
            rank.proc.kill()
        raise
    for rank in ranks:
        rank.threads = [threading.Thread(target=_relay, args=(rank, len(commands) > 1), daemon=True),
                        threading.Thread(target=_note_end, args=(rank,), daemon=True)]
        for thread in rank.threads:
            thread.start()
    return ranks


def _note_end(rank: _Rank) -> None:
    """Wait for the process in a thread of its own: the exact moment it ended tells which rank
    failed first (a rank killed takes its peers down a few milliseconds later)."""
    rank.proc.wait()
    rank.ended_at = time.monotonic()


def _end_with_parent() -> None:
    """In the child before exec: SIGTERM it when this process dies (even by SIGKILL), so no rank
    trains on, unwatched, holding the checkpoint folder."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the ranks end when their collectives fail
        pass


def _relay(rank: _Rank, tag_by_process: bool) -> None:
    """Log each line of the rank's output here, tagged with its rank; remember its failure lines."""
    for raw in rank.proc.stdout:
        line = raw.rstrip("\n")
        match = _LOG_LINE.match(line)
        if match:
            label, level, name, message = match.groups()
        else:
            label, level, name, message = None, "INFO", __name__, line
            if line[:1].isdigit() and ": " in line:  # srun --label on a line that is not a log record
                head, rest = line.split(": ", 1)
                label, message = (head.strip(), rest) if head.strip().isdigit() else (None, line)
        who = str(rank.index) if tag_by_process else label
        failed = _FAILED.search(message)
        if failed:
            rank.failures.append(failed.groups())
        prefix = f"[rank {who}] " if who is not None else ""
        logging.getLogger(name).log(getattr(logging, level), "%s%s", prefix, message)


def _forward_signals(ranks: list[_Rank]) -> dict:
    """SIGTERM/SIGINT to this process go to every rank (each then stops after its epoch)."""
    def forward(signum, frame):  # noqa: ARG001 - signal handler signature
        # srun and torchrun pass SIGTERM on to their tasks; srun reads one SIGINT as "print status".
        sig = signum if len(ranks) > 1 else signal.SIGTERM if signum == signal.SIGINT else signum
        log.info("received %s: passing it to the training processes", signal.Signals(signum).name)
        for rank in ranks:
            if rank.proc.poll() is None:
                os.kill(rank.proc.pid, sig)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[sig] = signal.signal(sig, forward)
        except ValueError:  # not the main thread: leave signals alone
            pass
    return previous


def _wait(ranks: list[_Rank]) -> None:
    """Wait for every process; once one failed, stop the ones still running after a grace period."""
    stopped_at = killed = None
    while any(rank.ended_at is None for rank in ranks):
        ended = [rank.ended_at for rank in ranks
                 if rank.ended_at is not None and rank.proc.returncode not in (0, TrainingInterrupted.exit_status)]
        now = time.monotonic()
        if ended and stopped_at is None and now - min(ended) > FAILURE_GRACE_S:
            stopped_at = now
            _signal_running(ranks, signal.SIGTERM)
        if stopped_at is not None and killed is None and now - stopped_at > KILL_GRACE_S:
            killed = now
            _signal_running(ranks, signal.SIGKILL)
        time.sleep(0.1)
    for rank in ranks:
        for thread in rank.threads:
            thread.join()  # the relay has read the last lines: the report can quote them
        rank.proc.stdout.close()


def _signal_running(ranks: list[_Rank], sig) -> None:
    for rank in ranks:
        if rank.proc.poll() is None:
            log.warning("stopping training process %d with %s (another one failed)", rank.index, sig.name)
            os.kill(rank.proc.pid, sig)


def _report(ranks: list[_Rank], processes: int) -> None:
    """Nothing when all succeeded; else the error that says what happened."""
    codes = [rank.proc.returncode for rank in ranks]
    if all(code == 0 for code in codes):
        return
    failures = [f for rank in ranks for f in rank.failures]
    if failures and all(kind == TrainingInterrupted.__name__ for kind, _ in failures):
        raise TrainingInterrupted(failures[0][1])
    # A process killed by a signal is the cause of its peers' errors (their collectives lost it).
    failed = sorted((r for r in ranks if r.proc.returncode != 0), key=lambda r: (r.proc.returncode >= 0, r.ended_at))
    first = failed[0]
    why = next((f"{kind}: {msg}" for kind, msg in first.failures if kind != TrainingInterrupted.__name__), None)
    if why is None:
        why = next((f"{kind}: {msg}" for kind, msg in failures if kind != TrainingInterrupted.__name__), None)
    code = first.proc.returncode
    ended = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
    who = f"Training process {first.index} of {processes}" if len(ranks) > 1 else "The launcher of the training processes"
    raise StepError(
        f"{who} {ended}{': ' + why if why else ''}. The other processes were stopped; the last checkpoint "
        "(if an epoch completed) is kept, and running the step again resumes from it."
    )
