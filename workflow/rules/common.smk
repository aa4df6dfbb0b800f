# The lookups shared by every step (the config is checked in config.smk): one small function per question.
import copy
import os
import re
from pathlib import Path

from snakemake.exceptions import WorkflowError


def is_url(path):
    """Whether a config path is a URL (``s3://...``): read through a Snakemake storage plugin."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", str(path)) is not None


def expand_replicates():
    """Seed replicates: a run whose ``seed`` is a list becomes one run per seed, ``<name>_seed<s>``.

    Returns ``{run: group}`` for every run (a run that is not replicated is its own group), so
    the summary can average a group's replicates.
    """
    written = set(config["runs"])
    groups = {}
    for name in sorted(written):
        run = config["runs"][name]
        if not isinstance(run["seed"], list):
            groups[name] = name
            continue
        del config["runs"][name]
        for seed in run["seed"]:
            replicate = f"{name}_seed{seed}"
            if replicate in written:
                raise WorkflowError(
                    f"Invalid config at runs.{name}.seed: its replicate {replicate!r} has the name of "
                    f"another run; rename that run or {name!r}."
                )
            config["runs"][replicate] = {**copy.deepcopy(run), "seed": seed}
            groups[replicate] = name
    return groups


def selected_runs():
    """The runs to build: config["select_runs"] (runs or replicated groups) or all of them."""
    chosen = config["select_runs"]
    if chosen is None:
        return sorted(config["runs"])
    known = sorted(set(config["runs"]) | set(GROUPS.values()))
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise WorkflowError(
            f"Invalid config at select_runs: {unknown} not among the runs {known}."
        )
    return sorted(
        run for run, group in GROUPS.items() if run in chosen or group in chosen
    )


def present_results(name, results="results"):
    """``<results>/<run>/report/<name>`` of the runs this invocation does not build, where on disk.

    The summary keeps them, so a run built before (another ``select_runs``, a run since taken
    out of the config) does not vanish from ``results/summary.tsv``. ``results`` is the folder
    of the summary's own output, so that a module's ``prefix:`` is followed.
    """
    return sorted(
        str(path)
        for path in Path(results).glob(f"*/report/{name}")
        if path.parent.parent.name not in (*RUNS, "queries")
        and (path.parent / "metrics.json").is_file()
    )


def resolve_model_defaults():
    """Fill the latent keys left null with their model class's (from the schema, beside model_class).

    What a model class needs of the config (scanvi: setup.labels_key and setup.unlabeled_category)
    the schema checks; the classes' keys are in the schema too (tests check they are the library's).
    """
    default_key = config_schema["$defs"]["run"]["properties"]["model_class"][
        "x-latent-key"
    ]
    for name, run in config["runs"].items():
        setup = run["setup"]
        if setup["missing_labels"] != "error" and setup.get("labels_key") is None:
            raise WorkflowError(
                f"Invalid config at runs.{name}.setup.missing_labels: {setup['missing_labels']!r} "
                "needs setup.labels_key, the obs column whose missing values it handles."
            )
        if (
            setup["missing_labels"] == "unlabeled"
            and setup.get("unlabeled_category") is None
        ):
            raise WorkflowError(
                f"Invalid config at runs.{name}.setup.missing_labels: 'unlabeled' needs "
                "setup.unlabeled_category, the label the cells without one get (e.g. Unknown)."
            )
        if run["export"]["latent_key"] is None:
            run["export"]["latent_key"] = default_key[run["model_class"]]
        if run["export"]["scvi_tools"] and run["model_class"] not in ("scvi", "scanvi"):
            raise WorkflowError(
                f"Invalid config at runs.{name}.export.scvi_tools: a {run['model_class']} model has no "
                "scvi-tools format here (scvi and scanvi runs do); set it to false."
            )
    for name, query in config["queries"].items():
        given = [key for key in ("reference", "reference_model") if key in query]
        if len(given) != 1:
            raise WorkflowError(
                f"Invalid config at queries.{name}: give one of reference (a run's name) and "
                f"reference_model (a model directory), not {' and '.join(given) or 'neither'}."
            )
        if "reference_model" in query:
            # The model's class (and so its latent key) is read by the map_query job, not here:
            # reading a scvi-tools model.pt needs torch, which parsing the workflow does not load.
            continue
        replicates = sorted(
            r for r, g in GROUPS.items() if g == query["reference"] != r
        )
        if replicates:
            raise WorkflowError(
                f"Invalid config at queries.{name}.reference: run {query['reference']!r} has seed "
                f"replicates; name one of them: {replicates}."
            )
        if query["reference"] not in config["runs"]:
            raise WorkflowError(
                f"Invalid config at queries.{name}.reference: {query['reference']!r} is not among the "
                f"runs {sorted(config['runs'])}."
            )
        if query["export"]["latent_key"] is None:
            reference = config["runs"][query["reference"]]
            query["export"]["latent_key"] = default_key[reference["model_class"]]


#: The Snakemake storage plugin (pip package) that reads each URL scheme a dataset may have.
STORAGE_PLUGINS = {
    "s3": "snakemake-storage-plugin-s3",
    "gs": "snakemake-storage-plugin-gcs",
    "gcs": "snakemake-storage-plugin-gcs",
    "http": "snakemake-storage-plugin-http",
    "https": "snakemake-storage-plugin-http",
    "ftp": "snakemake-storage-plugin-ftp",
    "az": "snakemake-storage-plugin-azure",
}


def config_inputs():
    """``(config key, path or URL)`` of every file the config names as an input."""
    entries = [(f"runs.{n}.dataset", r["dataset"]) for n, r in config["runs"].items()]
    for name, query in config["queries"].items():
        entries.append((f"queries.{name}.dataset", query["dataset"]))
        if "reference_model" in query:
            entries.append(
                (f"queries.{name}.reference_model", query["reference_model"])
            )
    return entries


def refuse_urls_without_their_plugin():
    """A dataset or reference model given as a URL needs the storage plugin of its scheme.

    Checked before any job runs, naming the config key, the URL and the package to install
    (Snakemake's own message comes later and names neither).
    """
    import importlib.util

    for where, value in config_inputs():
        if not is_url(value):
            continue
        scheme = value.split("://", 1)[0].lower()
        plugin = STORAGE_PLUGINS.get(scheme)
        if plugin is None:
            raise WorkflowError(
                f"Invalid config at {where}: {value!r} is a URL of scheme {scheme!r}, which no Snakemake "
                f"storage plugin snakevi knows reads ({', '.join(sorted(STORAGE_PLUGINS))}); give a path "
                "or one of those URLs."
            )
        if importlib.util.find_spec(plugin.replace("-", "_")) is None:
            raise WorkflowError(
                f"Invalid config at {where}: {value!r} is read through Snakemake's storage plugin "
                f"{plugin}, which is not installed: pip install {plugin}"
            )


GROUPS = expand_replicates()
resolve_model_defaults()
refuse_urls_without_their_plugin()
RUNS = selected_runs()
# Queries of the runs being built (select_runs leaves out the queries of the runs it leaves out).
# A query onto a model directory (reference_model) is always built.
QUERIES = sorted(
    name
    for name, query in config["queries"].items()
    if "reference_model" in query or query["reference"] in RUNS
)


def run_config(wildcards):
    """The validated config of the run named by the job's ``run`` wildcard."""
    return config["runs"][wildcards.run]


#: ``train`` keys that are not training parameters: how often to checkpoint and how the processes
#: start and the experiment trackers change no result (untracked params); the number of processes has
#: its own param.
UNTRACKED_TRAIN_KEYS = (
    "checkpoint_every_seconds",
    "devices",
    "nodes",
    "launcher",
    "logger",
    "log_every_n_steps",
)


def training_parameters(run):
    """The run's ``train`` section without the keys that change no result."""
    return {k: v for k, v in run["train"].items() if k not in UNTRACKED_TRAIN_KEYS}


def checkpoint_seconds(wildcards, output):
    """The run's ``train.checkpoint_every_seconds``, as a param Snakemake does not track.

    Snakemake leaves params whose function takes ``output`` (a "derived" param) out of its
    params rerun trigger, so changing how often to checkpoint reruns no job.
    """
    return run_config(wildcards)["train"]["checkpoint_every_seconds"]


def train_logger(wildcards, output):
    """The run's ``train.logger`` (experiment trackers), a derived param: adding or changing a
    tracker reruns no job (see checkpoint_seconds)."""
    return run_config(wildcards)["train"].get("logger")


def log_every_n_steps(wildcards, output):
    """How often the trackers get the step loss (derived: it changes no result either)."""
    return run_config(wildcards)["train"].get("log_every_n_steps")


def tracked_run_name(wildcards, output):
    """The tracked run's name: the run's (derived, so that the param's arrival reran nothing)."""
    return wildcards.run


def train_devices(wildcards):
    """Training processes per node: train.devices, else one per GPU of resources.gpu, else 1."""
    run = run_config(wildcards)
    return run["train"]["devices"] or max(1, run["resources"]["gpu"])


def train_nodes(wildcards):
    return run_config(wildcards)["train"]["nodes"]


def train_processes(wildcards):
    """All the training processes of the run (devices per node x nodes)."""
    return train_devices(wildcards) * train_nodes(wildcards)


def rank_threads(wildcards):
    """CPU threads of each training process: the node's threads shared by its processes."""
    return max(1, run_threads(wildcards) // train_devices(wildcards))


def train_launcher(wildcards, output):
    """train.launcher, as a param Snakemake does not track (how the processes start changes no result)."""
    return run_config(wildcards)["train"]["launcher"]


def multi_process(value):
    """A SLURM resource of the train job only when it runs as several processes (None: not set).

    The slurm executor then submits one task per process (``--ntasks``) and, seeing ``mpi``,
    runs the job's script in the allocation itself rather than in a one-task step, so the
    script's ``srun`` starts the ranks.
    """

    def resource(wildcards):
        return value(wildcards) if train_processes(wildcards) > 1 else None

    return resource


def input_path(path):
    """A path or URL of the config as a rule's input (or the simulate rule's output).

    A URL (``s3://``, ``gs://``, ``https://``...) is read through Snakemake's storage plugin for
    its scheme. With a default storage provider (``--default-storage-provider``: no shared
    filesystem) a plain path is an object under the storage prefix, like every result.
    Otherwise ``local()`` keeps the path as the user wrote it when this workflow is used as a
    module with ``prefix:`` (which would move every relative input under the prefix).
    """
    if is_url(path):
        return storage(path)
    if workflow.storage_settings.default_storage_provider is not None:
        return path
    return local(path)


def dataset(wildcards):
    """Input .h5ad of a run, as written in the config (see input_path)."""
    return input_path(run_config(wildcards)["dataset"])


def run_threads(wildcards):
    return run_config(wildcards)["resources"]["threads"]


def export_threads(wildcards):
    """The run's threads when export runs the model (normalized layer), else 1: it only copies."""
    if run_config(wildcards)["export"].get("normalized_layer"):
        return run_threads(wildcards)
    return 1


def run_mem_mb(wildcards):
    return run_config(wildcards)["resources"]["mem_mb"]


def run_runtime(wildcards):
    return run_config(wildcards)["resources"]["runtime"]


def run_gpu(wildcards):
    """GPUs the train job asks for (resources.gpu on each of train.nodes); None for CPU runs."""
    return run_config(wildcards)["resources"]["gpu"] * train_nodes(wildcards) or None


def gpu_tasks(wildcards):
    """One task per GPU for a multi-process GPU job; None otherwise.

    Without it the slurm executor turns ``tasks`` into ``--ntasks-per-gpu=<tasks>`` (tasks per
    GPU, not in all) on a GPU job.
    """
    return 1 if run_config(wildcards)["resources"]["gpu"] > 0 else None


def run_accelerator(wildcards):
    return "cuda" if run_config(wildcards)["resources"]["gpu"] > 0 else "cpu"


def train_conda_env(wildcards):
    """The CUDA environment for runs that ask for a GPU, the CPU one otherwise."""
    gpu = run_config(wildcards)["resources"]["gpu"] > 0
    return "../../envs/snakevi-cuda.yaml" if gpu else "../../envs/snakevi-cpu.yaml"


REPORT_FILES = [
    "loss_elbo.png",
    "loss_reconstruction.png",
    "loss_kl.png",
    "latent_batch.png",
    "latent_label.png",
    "metrics.json",
    # the integration rule's
    "integration.png",
    "metrics.tsv",
    "integration.json",
]


def query_config(wildcards):
    """The validated config of the query named by the job's ``query`` wildcard."""
    return config["queries"][wildcards.query]


def query_reference(wildcards):
    """The model folder a query maps onto: its run's, or the model directory it names."""
    query = query_config(wildcards)
    if "reference_model" in query:
        return input_path(query["reference_model"])
    return f"results/{query['reference']}/model"


def query_dataset(wildcards):
    """Input .h5ad of a query, as written in the config (see input_path)."""
    return input_path(query_config(wildcards)["dataset"])


def all_targets():
    """Every final artifact: per run the embedding, model and report, plus the summary; per query its embedding."""
    targets = ["results/summary.tsv", "results/summary_groups.tsv"]
    targets += [f"results/queries/{query}/embedding.h5ad" for query in QUERIES]
    for run in RUNS:
        targets += [
            f"results/{run}/embedding.h5ad",
            f"results/{run}/model",
        ]
        targets += [f"results/{run}/report/{name}" for name in REPORT_FILES]
        if config["runs"][run]["export"]["scvi_tools"]:
            targets.append(f"results/{run}/model_scvi_tools")
    return targets


def checkpoint_dir(output):
    """results/{run}/checkpoints, next to the train job's history.csv (prefixed in modules)."""
    return os.path.join(os.path.dirname(output.history), "checkpoints")
