"""The ``snakevi`` command: each workflow step as a subcommand, with the rules' inputs and params.

    snakevi register --input data.h5ad --output registry.json --batch-key donor
    snakevi prepare  --input data.h5ad --registry registry.json --output prepared/
    snakevi train    --prepared prepared/ --registry registry.json --model model/ --history history.csv \
                     --latent latent.npy
    snakevi export   --model model/ --input data.h5ad --latent latent.npy --output embedding.h5ad
    snakevi export-scvi-tools --model model/ --output model_scvi_tools/
    snakevi report   --history history.csv --latent latent.npy --prepared prepared/ \
                     --registry registry.json --output report/ --run NAME
    snakevi integration --latent latent.npy --prepared prepared/ --registry registry.json \
                     --output report/ --run NAME
    snakevi summarize --metrics report/metrics.json ... --integration report/integration.json ... \
                     --output summary.tsv [--groups-output summary_groups.tsv]

Parameters given as JSON (``--model-params``, ``--train-params``) are the dicts of the
workflow config's ``model`` and ``train`` sections; ``@file.json`` or ``@file.yaml`` reads them
from a file. Heavy imports happen inside the subcommands, so ``snakevi --help`` is instant.
Exit status: 0 on success, 1 when the inputs are unusable (the message says why), 2 for usage
errors, 3 when training was interrupted by a signal after writing a checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys

from snakevi._constants import DEFAULT_CHECKPOINT_SECONDS


def _unique_pairs(pairs: list) -> dict:
    """``object_pairs_hook`` that refuses a key given twice (JSON readers keep the last silently)."""
    keys = [key for key, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise argparse.ArgumentTypeError(f"key {key!r} is given twice; remove one of them")
    return dict(pairs)


def _yaml_unique(raw: str):
    """``yaml.safe_load`` that refuses a key given twice in one mapping."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            _unique_pairs([(self.construct_object(k, deep=deep), None) for k, _ in node.value])
            return super().construct_mapping(node, deep=deep)

    return yaml.load(raw, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def _json_arg(text: str) -> dict:
    """A JSON object given inline or as ``@path`` (JSON or YAML file); a key given twice is refused."""
    if text.startswith("@"):
        path = text[1:]
        with open(path, encoding="utf-8") as fh:
            raw = fh.read()
        if path.endswith((".yaml", ".yml")):
            value = _yaml_unique(raw)
        else:
            value = json.loads(raw, object_pairs_hook=_unique_pairs)
    else:
        try:
            value = json.loads(text, object_pairs_hook=_unique_pairs)
        except json.JSONDecodeError as err:
            raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {text!r}") from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object (a dict), got {type(value).__name__}")
    return value


def _logger_arg(text: str):
    """``--logger``: a tracker name (``tensorboard``), or JSON of a mapping or a list of them."""
    if text.strip()[:1] in ("{", "["):
        try:
            return json.loads(text, object_pairs_hook=_unique_pairs)
        except json.JSONDecodeError as err:
            raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {text!r}") from err
    return text.strip().strip('"')


#: An option left out is not passed on, so the step's own signature default applies (one place per
#: default: change it in the library and the command follows).
STEP_DEFAULT = argparse.SUPPRESS


def _given(args, *names: str) -> dict:
    """The options among ``names`` given on the command line (those left out keep the step's default)."""
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


def _none_or_float(text: str):
    return None if text.lower() in ("none", "null") else float(text)


def build_parser() -> argparse.ArgumentParser:
    from snakevi.model.registry import MODELS  # the model classes by name (no torch: cheap)

    p = argparse.ArgumentParser(
        prog="snakevi", description="scVI in plain PyTorch: run one step of the snakevi workflow.",
        epilog="Each step writes its outputs atomically; `snakevi STEP --help` lists its options.",
    )
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="STEP")

    def add(name, help_):
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.add_argument("--log", default=None, help="also write the step's log to this file")
        return sp

    s = add("simulate", "write a simulated count dataset (.h5ad) for demos and tests")
    s.add_argument("--output", required=True, help="the .h5ad file to write")
    s.add_argument("--params", type=_json_arg, default={}, help="JSON of snakevi.data.simulate arguments")

    s = add("register", "validate an .h5ad file and write its registry (setup, mappings, genes)")
    s.add_argument("--input", required=True, help="input .h5ad with raw counts")
    s.add_argument("--output", required=True, help="registry .json to write")
    s.add_argument("--layer", default=None, help="layer holding the counts (default: X)")
    s.add_argument("--batch-key", default=None, help="obs column with the batch")
    s.add_argument("--labels-key", default=None, help="obs column with cell labels")
    s.add_argument("--unlabeled-category", default=None, help="label value of cells with an unknown label (scANVI)")
    s.add_argument("--size-factor-key", default=None, help="obs column with size factors")
    s.add_argument("--categorical-covariate-keys", nargs="*", default=None, metavar="KEY")
    s.add_argument("--continuous-covariate-keys", nargs="*", default=None, metavar="KEY")
    s.add_argument("--n-top-genes", type=int, default=None, help="keep this many highly variable genes")
    s.add_argument("--hvg-flavor", default="seurat_v3",
                   choices=["seurat_v3", "seurat_v3_paper", "cell_ranger", "seurat"],
                   help="scanpy's flavour of the --n-top-genes selection (scanpy's gene set)")
    s.add_argument("--genes", default=None, help="text file of the genes to keep, one per line")
    s.add_argument("--missing-labels", default="error", choices=["error", "unlabeled", "drop"],
                   help="cells with no label: refuse, label them --unlabeled-category, or drop them")
    s.add_argument("--setup", type=_json_arg, default=None,
                   help="the config's 'setup' section as JSON (instead of the options above)")

    s = add("prepare", "write training arrays, the seeded split and the loader spec")
    s.add_argument("--input", required=True, help="the registered .h5ad")
    s.add_argument("--registry", required=True, help="registry .json from `snakevi register`")
    s.add_argument("--output", required=True, help="prepared folder to write")
    s.add_argument("--train-size", type=_none_or_float, default=None)
    s.add_argument("--validation-size", type=_none_or_float, default=None)
    s.add_argument("--batch-size", type=int, default=STEP_DEFAULT,
                   help="cells per minibatch (left out: the step's default)")
    s.add_argument("--no-shuffle-set-split", dest="shuffle_set_split", action="store_false")
    s.add_argument("--seed", type=int, default=STEP_DEFAULT, help="seed of the split (left out: the step's default)")

    s = add("train", "train a model (scVI, scANVI, LinearSCVI); write the model folder and the history CSV")
    s.add_argument("--prepared", required=True, help="folder from `snakevi prepare`")
    s.add_argument("--registry", required=True, help="registry .json")
    s.add_argument("--model", required=True, help="model folder to write")
    s.add_argument("--history", required=True, help="history .csv to write")
    s.add_argument("--latent", default=None, help="also write the latent representation (.npy) of every cell")
    s.add_argument("--checkpoint-dir", default=None, help="checkpoints (default: checkpoints/ beside --model)")
    s.add_argument("--checkpoint-store", default=None,
                   help="s3://bucket/prefix: mirror the checkpoints there and resume from them on a new node "
                        "(credentials as snakemake-storage-plugin-s3's SNAKEMAKE_STORAGE_S3_* or AWS_* variables)")
    s.add_argument("--checkpoint-every-seconds", type=float, default=DEFAULT_CHECKPOINT_SECONDS,
                   help="write a checkpoint at most this often (0: after every epoch; the last epoch always)")
    s.add_argument("--model-params", type=_json_arg, default={}, help="JSON: the config's 'model' section")
    s.add_argument("--train-params", type=_json_arg, default={},
                   help="JSON: the config's 'train' section, grouped as in the config: "
                        '{"max_epochs": 50, "plan": {"lr": 0.001}, "scanvi": {"max_epochs": 10}}')
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--accelerator", default="auto", choices=["auto", "cpu", "cuda", "gpu", "mps"])
    s.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    s.add_argument("--progress-bar", action="store_true", help="show a progress bar")
    s.add_argument("--model-class", default="scvi", choices=list(MODELS),
                   help="scanvi: scVI first, then scANVI from it (needs labels and an unlabeled category); "
                        "linear_scvi: scVI with a linear decoder (gene loadings)")
    s.add_argument("--devices", type=int, default=None,
                   help="train with this many processes per node (one GPU each on CUDA); left out: one, or as "
                        "many as torchrun/srun started")
    s.add_argument("--nodes", type=int, default=1, help="nodes of a SLURM allocation to train on (srun)")
    s.add_argument("--launcher", default="auto", choices=["auto", "local", "srun", "torchrun"],
                   help="how this command starts the processes of --devices N (auto: srun in a SLURM job, else local)")
    s.add_argument("--logger", type=_logger_arg, default=None,
                   help='experiment trackers: a name (tensorboard, mlflow) or JSON, e.g. '
                        '\'{"type": "mlflow", "tracking_uri": "sqlite:///mlflow.db"}\' (the config\'s train.logger)')
    s.add_argument("--run-name", default=None, help="name of the tracked run (default: the folder holding --model)")
    s.add_argument("--log-every-n-steps", type=int, default=None,
                   help="how often the trackers get train_loss_step (default 50; 0: never)")

    s = add("export", "write the embedding .h5ad (obsm latent, optional normalized layer)")
    s.add_argument("--model", required=True, help="model folder from `snakevi train`")
    s.add_argument("--input", required=True, help="the dataset .h5ad")
    s.add_argument("--output", required=True, help="embedding .h5ad to write")
    s.add_argument("--latent", default=None,
                   help="latent.npy from `snakevi train --latent` (otherwise computed here from the model)")
    s.add_argument("--latent-key", default=STEP_DEFAULT,
                   help="obsm key of the latent space (left out: the step's default)")
    s.add_argument("--predicted-key", default=STEP_DEFAULT,
                   help="obs key of a scANVI model's predicted labels (left out: the step's default)")
    s.add_argument("--normalized-layer", default=None, help="also store normalized expression in this layer")
    s.add_argument("--library-size", type=float, default=STEP_DEFAULT,
                   help="scale of the normalized expression (left out: the step's default)")
    s.add_argument("--threads", type=int, default=None)

    s.add_argument("--full-anndata", action="store_true", default=STEP_DEFAULT,
                   help="write into a copy of the whole input AnnData (all genes, layers, obs)")

    s = add("export-scvi-tools", "write an SCVI/SCANVI model folder as scvi-tools' model directory")
    s.add_argument("--model", required=True, help="model folder from `snakevi train`")
    s.add_argument("--output", required=True, help="scvi-tools model directory to write")

    s = add("report", "plot loss curves and the latent space; write metrics.json")
    s.add_argument("--history", required=True, help="history .csv from `snakevi train`")
    _latent_prepared_registry_output(s)
    s.add_argument("--group", default=None, help="run group of a seed replicate, for the summary (default: the run)")
    s.add_argument("--seed", type=int, default=None, help="the run's seed, recorded for the summary")

    s = add("integration", "scib-style integration metrics of the latent space and of a PCA baseline: "
                           "metrics.tsv, integration.png, integration.json")
    _latent_prepared_registry_output(s)
    s.add_argument("--no-metrics", dest="metrics", action="store_false",
                   help="write the files with a note instead of computing the metrics")

    s = add("map-query", "map a query .h5ad onto a trained model (scArches); write its model and embedding")
    s.add_argument("--reference", required=True, help="model folder from `snakevi train`")
    s.add_argument("--input", required=True, help="the query .h5ad")
    s.add_argument("--model", required=True, help="query model folder to write")
    s.add_argument("--history", required=True, help="query history .csv to write")
    s.add_argument("--output", required=True, help="query embedding .h5ad to write")
    s.add_argument("--summary", default=None, help="summary .json to write")
    s.add_argument("--train-params", type=_json_arg, default={},
                   help="JSON: max_epochs, lr, weight_decay, batch_size (left out: the query training "
                        "defaults, snakevi.model.arches.QUERY_TRAIN_DEFAULTS, then TrainingPlan's and train()'s)")
    s.add_argument("--seed", type=int, default=STEP_DEFAULT, help="seed of the new weights, split and minibatches")
    s.add_argument("--use-labels", action="store_true", help="train on the query's own labels where known")
    s.add_argument("--unfrozen", action="store_true", help="train every weight, not only the new batches'")
    s.add_argument("--latent-key", default=None, help="default X_scVI or X_scANVI by the reference")
    s.add_argument("--predicted-key", default=STEP_DEFAULT, help="obs key of a scANVI reference's predicted labels")
    s.add_argument("--accelerator", default=STEP_DEFAULT, choices=["auto", "cpu", "cuda", "gpu", "mps"],
                   help="left out: the step's default")
    s.add_argument("--threads", type=int, default=None)

    s = add("summarize", "gather runs' metrics.json (and integration.json) into one TSV")
    s.add_argument("--metrics", nargs="+", required=True, help="metrics.json of every run")
    s.add_argument("--integration", nargs="*", default=[], help="integration.json of the runs that have one")
    s.add_argument("--output", required=True)
    s.add_argument("--groups-output", default=None,
                   help="also write the mean and sd per run group (seed replicates) to this TSV")
    return p


def _latent_prepared_registry_output(s: argparse.ArgumentParser) -> None:
    """Arguments shared by `report` and `integration`: what they read, where they write, names."""
    s.add_argument("--latent", required=True, help="latent .npy from `snakevi train --latent`")
    s.add_argument("--prepared", required=True, help="folder from `snakevi prepare`")
    s.add_argument("--registry", required=True, help="registry .json")
    s.add_argument("--output", required=True, help="report folder")
    s.add_argument("--run", default="run", help="run name for titles")
    s.add_argument("--latent-key", default=STEP_DEFAULT,
                   help="obsm key of the latent space (left out: the step's default)")


def _dispatch(args) -> None:
    cmd = args.command
    if cmd == "simulate":
        from snakevi.steps.simulate import simulate_dataset

        simulate_dataset(args.output, **args.params)
    elif cmd == "register":
        from snakevi.steps.register import register

        setup = args.setup or dict(
            layer=args.layer, batch_key=args.batch_key, labels_key=args.labels_key,
            unlabeled_category=args.unlabeled_category,
            size_factor_key=args.size_factor_key, categorical_covariate_keys=args.categorical_covariate_keys,
            continuous_covariate_keys=args.continuous_covariate_keys, n_top_genes=args.n_top_genes,
            hvg_flavor=args.hvg_flavor, genes=args.genes, missing_labels=args.missing_labels,
        )
        register(args.input, args.output, **setup)
    elif cmd == "prepare":
        from snakevi.steps.prepare import prepare

        prepare(args.input, args.registry, args.output, train_size=args.train_size,
                validation_size=args.validation_size, shuffle_set_split=args.shuffle_set_split,
                **_given(args, "batch_size", "seed"))
    elif cmd == "train":
        from snakevi.steps.train import train

        train(args.prepared, args.registry, args.model, args.history, latent_out=args.latent,
              checkpoint_dir=args.checkpoint_dir, checkpoint_store=args.checkpoint_store,
              checkpoint_every_seconds=args.checkpoint_every_seconds, model_params=args.model_params, train_params=args.train_params, seed=args.seed,
              accelerator=args.accelerator, threads=args.threads, enable_progress_bar=args.progress_bar,
              model_class=args.model_class, devices=args.devices, nodes=args.nodes, launcher=args.launcher,
              logger=args.logger, run_name=args.run_name, log_every_n_steps=args.log_every_n_steps)
    elif cmd == "export":
        from snakevi.steps.export import export

        export(args.model, args.input, args.output, latent=args.latent, normalized_layer=args.normalized_layer,
               threads=args.threads, **_given(args, "latent_key", "predicted_key", "library_size", "full_anndata"))
    elif cmd == "export-scvi-tools":
        from snakevi.steps.export_scvi_tools import export_scvi_tools

        export_scvi_tools(args.model, args.output)
    elif cmd == "report":
        from snakevi.steps.report import report

        report(args.history, args.latent, args.prepared, args.registry, args.output, run=args.run,
               group=args.group, seed=args.seed, **_given(args, "latent_key"))
    elif cmd == "integration":
        from snakevi.steps.integration import integration

        integration(args.latent, args.prepared, args.registry, args.output, run=args.run,
                    metrics=args.metrics, **_given(args, "latent_key"))
    elif cmd == "map-query":
        from snakevi.steps.map_query import map_query

        map_query(args.reference, args.input, args.model, args.history, args.output, args.summary,
                  train_params=args.train_params, use_labels=args.use_labels, unfrozen=args.unfrozen,
                  latent_key=args.latent_key, threads=args.threads,
                  **_given(args, "seed", "predicted_key", "accelerator"))
    elif cmd == "summarize":
        from snakevi.steps.report import summarize

        summarize(args.metrics, args.output, args.integration, groups_tsv=args.groups_output)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``snakevi`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from snakevi import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    from snakevi.steps.logs import step_logging
    from snakevi.steps.train import TrainingInterrupted

    try:
        with step_logging(args.log, step=f"snakevi {args.command}"):
            _dispatch(args)
    except TrainingInterrupted as stop:
        return stop.exit_status
    except (ValueError, FileNotFoundError, FileExistsError):
        # step_logging has already printed "snakevi STEP failed: <why>" to stderr and the log.
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
