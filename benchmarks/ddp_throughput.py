#!/usr/bin/env python
"""Throughput of multi-process (DDP) training: 1 vs N processes at the same global batch, side by side.

Usage (from the repository root)::

    envs/venv-run python benchmarks/ddp_throughput.py                  # CPU: Kang and CellBench, 1 vs 2 processes
    envs/venv-run python benchmarks/ddp_throughput.py --datasets kang --epochs 3 --repeats 1
    python benchmarks/ddp_throughput.py --device cuda                    # GPU machine: 1..(GPUs) processes
    python benchmarks/ddp_throughput.py --device cuda --processes 2 4 --prepared P --registry R.json

Every configuration trains a default SCVI (n_hidden 128, n_latent 10, ZINB, gene dispersion,
batch one-hot; validation every epoch) on the same cells with the same seed and the same
*global* batch (``--global-batch`` cells per step, split evenly over the processes), so every
configuration takes the same optimizer steps. Each one runs as ranks started by
:func:`snakevi.train.launch.spawn` (a single process too, so all pay the same start-up), where
``SCVI.train(devices="auto")`` joins the process group as under torchrun (``benchmarks/ddp_rank.py``).

On the CPU (gloo) the configurations share the machine's cores fairly: 1 process with all
``--threads`` torch threads (the baseline), 1 process with 1 thread, and N processes with
``threads / N`` each. On CUDA (``--device cuda``, NCCL) each process gets one GPU; asking for
more processes than visible GPUs is refused before anything starts.

Printed per configuration: training cells/s (training cells / median epoch time over every
epoch but each run's first; an epoch is its training pass plus its validation pass), its ratio
to the baseline, the training pass alone, the time per step spent in the gradient all-reduce and
in BatchNorm's forward all-reduce (CPU only: on a GPU these calls return before the work is
done), start-up (spawn to the first epoch: interpreters, imports, data, model, process group)
and the final ``elbo_validation``.

Then a check that N processes compute one process's numbers: both retrain for
``--exact-epochs`` with dropout 0 and the latent set to the posterior mean (the default model's
random draws come from each rank's own seed, so its runs differ by their draws, not by
rounding); the largest relative difference in the history and the largest weight difference
are printed. One process with another thread count (same arithmetic, another summation order)
gives the rounding floor; the script exits 1 when the history differs by more than ``--rtol`` and
more than ``FLOOR_FACTOR`` times that floor. The
table also goes to ``benchmarks/out/ddp_<device>_<date>.md``, every measurement to the ``.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from ddp_rank import train_rank  # this script's folder is on sys.path when it runs
from worker_runs import DATA

HERE = Path(__file__).resolve().parent
#: name -> (file in ../shared/data, batch key)
#: N processes pass the equivalence check when their history differs from one process's by at most
#: this many times the rounding floor (one process, another thread count), or by ``--rtol``.
FLOOR_FACTOR = 4
DATASETS = {"kang": ("kang_pbmc_ctrl_8donors.h5ad", "donor"), "cellbench": ("cellbench_lung_celseq2_dropseq.h5ad", "batch")}


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=["kang", "cellbench"])
    p.add_argument("--prepared", help="a prepared folder (snakevi prepare) instead of --datasets: no anndata needed")
    p.add_argument("--registry", help="the registry.json the --prepared folder was made with")
    p.add_argument("--processes", type=int, nargs="+", default=None,
                   help="process counts besides the 1-process baseline (default: 2 on the CPU, 2..GPUs on CUDA)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="CPU: torch threads of the baseline, shared out among N processes (default: all cores)")
    p.add_argument("--global-batch", type=int, default=256, help="cells per optimizer step, over all processes")
    p.add_argument("--epochs", type=int, default=4, help="epochs per run; the first is not timed")
    p.add_argument("--repeats", type=int, default=2, help="runs per configuration, in rotating order")
    p.add_argument("--exact-epochs", type=int, default=2, help="epochs of the equivalence check (0: skip it)")
    p.add_argument("--rtol", type=float, default=1e-4, help="largest relative history difference the check allows")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", default=str(HERE / "out"))
    args = p.parse_args(argv)
    if bool(args.prepared) != bool(args.registry):
        p.error("--prepared and --registry go together (the folder and the registry it was prepared with).")
    return args


def _refusal(args) -> str | None:
    """Why these configurations cannot run on this machine (None when they can)."""
    import torch

    counts = args.processes
    if any(n < 1 for n in counts):
        return f"--processes {counts}: every count must be >= 1."
    bad = [n for n in counts if args.global_batch % n]
    if bad:
        return (f"--global-batch {args.global_batch} does not split evenly over {bad} process(es); "
                "choose a global batch every process count divides.")
    if args.device == "cuda":
        if not torch.cuda.is_available():
            return f"--device cuda, but torch {torch.__version__} sees no GPU here; run on the CPU (--device cpu)."
        visible = torch.cuda.device_count()
        if max(counts) > visible:
            return (f"--processes {counts} needs {max(counts)} GPUs (one per process) but torch sees {visible} "
                    f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); "
                    f"use --processes up to {visible}.")
        return None
    cores = os.cpu_count() or 1
    if max(counts) > args.threads or args.threads > cores:
        return (f"--processes {counts} with --threads {args.threads} on {cores} cores: each process needs at least "
                f"one thread and the threads must fit the cores; use --processes up to {min(args.threads, cores)}.")
    return None


def configurations(args) -> list[tuple[int, int]]:
    """``(processes, threads per process)``, the baseline first."""
    if args.device == "cuda":
        threads = max(1, (os.cpu_count() or 1) // max(args.processes))  # host threads, alike for all
        return [(n, threads) for n in sorted({1, *args.processes})]
    out = [(1, args.threads)]
    if args.threads > 1:
        out.append((1, 1))
    return out + [(n, args.threads // n) for n in sorted(set(args.processes)) if n > 1]


def _sources(args) -> dict[str, dict]:
    if args.prepared:
        return {f"prepared:{Path(args.prepared).name}": {"prepared": args.prepared, "registry": args.registry}}
    return {name: {"h5ad": str(DATA / DATASETS[name][0]), "batch_key": DATASETS[name][1]} for name in args.datasets}


def _run(source: dict, processes: int, threads: int, args, *, epochs: int, deterministic: bool = False) -> dict:
    from snakevi.train.launch import spawn

    job = {"source": source, "world_size": processes, "split_multiple": math.lcm(*(n for n, _ in configurations(args))),
           "global_batch": args.global_batch, "epochs": epochs, "seed": args.seed, "device": args.device,
           "deterministic": deterministic, "return_weights": deterministic}
    launched = time.time()
    result = spawn(train_rank, processes, (job,), threads=threads)
    result["startup_s"] = result["first_epoch_at"] - launched
    return result


def _summarise(runs: list[dict]) -> dict:
    epochs = [t for r in runs for t in r["epoch_s"][1:]]
    passes = [t for r in runs for t in r["train_pass_s"][1:]]
    steps = sum(sum(r["steps"][1:]) for r in runs)
    n_train = runs[0]["n_train"]
    return {
        "s_per_epoch": statistics.median(epochs), "train_pass_s": statistics.median(passes),
        "cells_per_s": n_train / statistics.median(epochs), "n_train": n_train,
        "steps_per_epoch": runs[0]["steps"][0],
        "grad_ms_per_step": 1e3 * sum(sum(r["grad_allreduce_s"][1:]) for r in runs) / steps,
        "bn_ms_per_step": 1e3 * sum(sum(r["bn_allreduce_s"][1:]) for r in runs) / steps,
        "startup_s": statistics.median(r["startup_s"] for r in runs),
        "elbo_validation": runs[-1]["history"][-1]["elbo_validation"],
        "history": runs[-1]["history"],
    }


def _history_difference(a: list[dict], b: list[dict]) -> tuple[float, str]:
    """Largest relative difference between two histories, and where (``key@epoch``)."""
    worst, where = 0.0, "-"
    for epoch, (row_a, row_b) in enumerate(zip(a, b, strict=True)):
        for key, value in row_a.items():
            if key == "epoch" or not isinstance(value, float):
                continue
            rel = abs(row_b[key] - value) / max(abs(value), 1e-12)
            if rel > worst:
                worst, where = rel, f"{key}@{epoch}"
    return worst, where


def _exact_check(source: dict, args) -> dict:
    """1 process vs the largest process count, deterministic forward: history and weight differences."""
    import torch

    base, many = configurations(args)[0], configurations(args)[-1]
    one = _run(source, *base, args, epochs=args.exact_epochs, deterministic=True)
    other = _run(source, *many, args, epochs=args.exact_epochs, deterministic=True)
    rel, where = _history_difference(one["history"], other["history"])
    # The rounding floor: one process again with another thread count. Same arithmetic, another
    # summation order, so its difference is float rounding compounded over the steps.
    floor_rel, floor_where, floor_threads = None, "-", None
    if args.device == "cpu" and base[1] > 1:
        floor_threads = 1
        floor = _run(source, 1, floor_threads, args, epochs=args.exact_epochs, deterministic=True)
        floor_rel, floor_where = _history_difference(one["history"], floor["history"])
    allowed = max(args.rtol, FLOOR_FACTOR * floor_rel) if floor_rel is not None else args.rtol
    weights = max(float((one["weights"][k].double() - other["weights"][k].double()).abs().max())
                  for k in one["weights"] if one["weights"][k].is_floating_point())
    scale = max(float(v.abs().max()) for v in one["weights"].values() if v.is_floating_point())
    steps = sum(one["steps"])
    return {"processes": many[0], "epochs": args.exact_epochs, "steps": steps, "history_rel": rel, "where": where,
            "weights_abs": weights, "weights_scale": scale, "passed": rel <= allowed, "allowed": allowed,
            "floor_rel": floor_rel, "floor_where": floor_where, "floor_threads": floor_threads,
            "elbo_validation": [one["history"][-1]["elbo_validation"], other["history"][-1]["elbo_validation"]],
            "torch_threads": [one["threads"], other["threads"]], "torch": torch.__version__}


def _environment(args) -> dict:
    import torch

    env = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "python": platform.python_version(),
           "torch": torch.__version__, "device": args.device}
    try:
        from importlib.metadata import version

        env["snakevi"] = version("snakevi")
    except Exception:  # noqa: BLE001 - only a label
        env["snakevi"] = "?"
    if args.device == "cuda":
        env.update(gpu=torch.cuda.get_device_name(0), gpus=torch.cuda.device_count(), cuda=torch.version.cuda,
                   nccl=".".join(map(str, torch.cuda.nccl.version())))
    return env


def main(argv=None) -> int:
    args = _args(argv)
    if args.processes is None:
        import torch

        # CPU: 2 processes; CUDA: every count up to the GPUs there are (1 alone on a single GPU).
        args.processes = [2] if args.device == "cpu" else list(range(2, torch.cuda.device_count() + 1)) or [1]
    refusal = _refusal(args)
    if refusal:
        print(f"[ddp] refused: {refusal}", file=sys.stderr)
        return 2
    env = _environment(args)
    configs = configurations(args)
    report: dict = {"environment": env, "args": {k: v for k, v in vars(args).items()}, "datasets": {}}
    failed = False
    for name, source in _sources(args).items():
        runs: dict[tuple[int, int], list[dict]] = {c: [] for c in configs}
        for rep in range(args.repeats):
            order = configs[rep % len(configs):] + configs[:rep % len(configs)]  # drift hits all alike
            for config in order:
                print(f"[ddp] {name}: {config[0]} process(es) x {config[1]} thread(s), repeat {rep + 1}",
                      file=sys.stderr, flush=True)
                runs[config].append(_run(source, *config, args, epochs=args.epochs))
        rows = {c: _summarise(r) for c, r in runs.items()}
        entry = {"rows": [{"processes": c[0], "threads": c[1], **{k: v for k, v in s.items() if k != "history"}}
                          for c, s in rows.items()],
                 "raw": [{"processes": c[0], "threads": c[1], **{k: v for k, v in r.items() if k != "history"}}
                         for c, rs in runs.items() for r in rs]}
        base = rows[configs[0]]
        for c, s in rows.items():
            entry_row = next(r for r in entry["rows"] if (r["processes"], r["threads"]) == c)
            entry_row["ratio"] = s["cells_per_s"] / base["cells_per_s"]
            entry_row["history_rel_vs_baseline"], entry_row["where"] = _history_difference(base["history"], s["history"])
        if args.exact_epochs > 0 and configs[-1][0] > 1:
            print(f"[ddp] {name}: equivalence check ({args.exact_epochs} epochs, deterministic forward)",
                  file=sys.stderr, flush=True)
            entry["exact"] = _exact_check(source, args)
            failed |= not entry["exact"]["passed"]
        report["datasets"][name] = entry
    text = _table(report, args)
    print(text)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = f"ddp_{args.device}_{datetime.date.today().isoformat()}"
    (out_dir / f"{stamp}.md").write_text(text + "\n")
    (out_dir / f"{stamp}.json").write_text(json.dumps(report, indent=1, default=str))
    return 1 if failed else 0


def _table(report: dict, args) -> str:
    env = report["environment"]
    device = (f"{env['gpus']} x {env['gpu']}, CUDA {env['cuda']}, NCCL {env['nccl']}" if args.device == "cuda"
              else "CPU, gloo")
    lines = [f"{datetime.date.today()} | {env['machine']} | {device} | Python {env['python']}, torch {env['torch']}, "
             f"snakevi {env['snakevi']} | global batch {args.global_batch}, {args.epochs} epochs (first untimed) x "
             f"{args.repeats} runs per configuration, seed {args.seed}"]
    comm = args.device == "cpu"
    for name, entry in report["datasets"].items():
        first = entry["rows"][0]
        lines += ["", f"**{name}**: {first['n_train']:,} training cells, {first['steps_per_epoch']} steps per epoch", "",
                  "| processes x threads | batch per process | s/epoch | training pass (s) | cells/s | x baseline "
                  "| grad all-reduce (ms/step) | BatchNorm all-reduce (ms/step) | start-up (s) | elbo_validation "
                  "| history vs baseline (max rel) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in entry["rows"]:
            grad = f"{r['grad_ms_per_step']:.2f}" if comm and r["processes"] > 1 else "-"
            bn = f"{r['bn_ms_per_step']:.2f}" if comm and r["processes"] > 1 else "-"
            lines.append(f"| {r['processes']} x {r['threads']} | {args.global_batch // r['processes']} | "
                         f"{r['s_per_epoch']:.3f} | {r['train_pass_s']:.3f} | {r['cells_per_s']:,.0f} | {r['ratio']:.3f} | "
                         f"{grad} | {bn} | {r['startup_s']:.1f} | {r['elbo_validation']:.3f} | "
                         f"{r['history_rel_vs_baseline']:.1e} ({r['where']}) |")
        exact = entry.get("exact")
        if exact:
            verdict = "PASSED" if exact["passed"] else "FAILED"
            floor = ("" if exact["floor_rel"] is None else
                     f" Rounding floor (1 process, {exact['floor_threads']} thread vs the baseline's): "
                     f"{exact['floor_rel']:.1e} ({exact['floor_where']}); allowed max(rtol, {FLOOR_FACTOR} x floor) = "
                     f"{exact['allowed']:.1e}.")
            lines += ["", f"Equivalence ({verdict}, rtol {args.rtol:g}): dropout 0 and z = posterior mean, "
                      f"{exact['epochs']} epochs ({exact['steps']} steps), 1 vs {exact['processes']} processes: "
                      f"history max relative difference {exact['history_rel']:.1e} ({exact['where']}), "
                      f"weights max |difference| {exact['weights_abs']:.1e} (largest |weight| "
                      f"{exact['weights_scale']:.2f}); elbo_validation {exact['elbo_validation'][0]:.4f} vs "
                      f"{exact['elbo_validation'][1]:.4f}.{floor}"]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
