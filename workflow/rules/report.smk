# Plots and numbers per run (registered for `snakemake --report`), and one summary table.
rule report:
    input:
        history="results/{run}/history.csv",
        latent="results/{run}/latent.npy",
        prepared="results/{run}/prepared",
        registry="results/{run}/registry.json",
    output:
        elbo=report(
            "results/{run}/report/loss_elbo.png",
            caption="../report/loss_curves.rst",
            category="{run}",
            subcategory="Training curves",
            labels={"run": "{run}", "figure": "ELBO"},
        ),
        reconstruction=report(
            "results/{run}/report/loss_reconstruction.png",
            caption="../report/loss_curves.rst",
            category="{run}",
            subcategory="Training curves",
            labels={"run": "{run}", "figure": "reconstruction loss"},
        ),
        kl=report(
            "results/{run}/report/loss_kl.png",
            caption="../report/loss_curves.rst",
            category="{run}",
            subcategory="Training curves",
            labels={"run": "{run}", "figure": "KL divergence"},
        ),
        latent_batch=report(
            "results/{run}/report/latent_batch.png",
            caption="../report/latent.rst",
            category="{run}",
            subcategory="Latent space",
            labels={"run": "{run}", "figure": "by batch"},
        ),
        latent_label=report(
            "results/{run}/report/latent_label.png",
            caption="../report/latent.rst",
            category="{run}",
            subcategory="Latent space",
            labels={"run": "{run}", "figure": "by label"},
        ),
        metrics="results/{run}/report/metrics.json",
    log:
        "results/{run}/logs/report.log",
    benchmark:
        "results/{run}/benchmarks/report.tsv"
    conda:
        "../../envs/snakevi-cpu.yaml"
    threads: 1
    resources:
        mem_mb=run_mem_mb,
        runtime=run_runtime,
    params:
        run="{run}",
        group=lambda wildcards: GROUPS[wildcards.run],
        seed=lambda wildcards: run_config(wildcards)["seed"],
        latent_key=lambda wildcards: run_config(wildcards)["export"]["latent_key"],
        # The figures go to the run's tracked run too (MLflow); derived, so it reruns nothing.
        logger=train_logger,
    script:
        "../../scripts/report.py"


# The scib-style scores, beside the report and export jobs: the slowest of the three (kNN over
# all cells, kBET), so it starts first (priority) and has its own resources on a cluster.
rule integration:
    input:
        latent="results/{run}/latent.npy",
        prepared="results/{run}/prepared",
        registry="results/{run}/registry.json",
    output:
        integration=report(
            "results/{run}/report/integration.png",
            caption="../report/integration.rst",
            category="{run}",
            subcategory="Integration",
            labels={"run": "{run}", "figure": "scib-style metrics"},
        ),
        table=report(
            "results/{run}/report/metrics.tsv",
            caption="../report/integration.rst",
            category="{run}",
            subcategory="Integration",
            labels={"run": "{run}", "figure": "metrics table"},
        ),
        scores="results/{run}/report/integration.json",
    log:
        "results/{run}/logs/integration.log",
    benchmark:
        "results/{run}/benchmarks/integration.tsv"
    priority: 1
    conda:
        "../../envs/snakevi-cpu.yaml"
    threads: 1
    resources:
        mem_mb=run_mem_mb,
        runtime=run_runtime,
    params:
        run="{run}",
        latent_key=lambda wildcards: run_config(wildcards)["export"]["latent_key"],
        metrics=lambda wildcards: run_config(wildcards)["report"]["metrics"],
    script:
        "../../scripts/integration.py"


# Every run with results: those built now (inputs) and those already on disk that this
# invocation leaves alone (params: read, never rebuilt), so select_runs drops no row.
rule summary:
    input:
        metrics=expand("results/{run}/report/metrics.json", run=RUNS),
        integration=expand("results/{run}/report/integration.json", run=RUNS),
    output:
        summary=report(
            "results/summary.tsv",
            caption="../report/summary.rst",
            category="Summary",
        ),
        groups=report(
            "results/summary_groups.tsv",
            caption="../report/summary_groups.rst",
            category="Summary",
        ),
    log:
        "logs/summary.log",
    benchmark:
        "logs/benchmarks/summary.tsv"
    conda:
        "../../envs/snakevi-cpu.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        # Beside the summary's own output: under a module's prefix too.
        kept_metrics=lambda wildcards, output: present_results(
            "metrics.json", os.path.dirname(output.summary)
        ),
        kept_integration=lambda wildcards, output: present_results(
            "integration.json", os.path.dirname(output.summary)
        ),
    script:
        "../../scripts/summary.py"
