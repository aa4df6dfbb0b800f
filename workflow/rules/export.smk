# The embedding (obsm[latent_key], optional normalized layer) of every cell.
rule export:
    input:
        model="results/{run}/model",
        latent="results/{run}/latent.npy",
        h5ad=dataset,
    output:
        embedding="results/{run}/embedding.h5ad",
    log:
        "results/{run}/logs/export.log",
    benchmark:
        "results/{run}/benchmarks/export.tsv"
    conda:
        "../../envs/snakevi-cpu.yaml"
    threads: export_threads
    resources:
        mem_mb=run_mem_mb,
        runtime=run_runtime,
    params:
        export=lambda wildcards: run_config(wildcards)["export"],
    script:
        "../../scripts/export.py"


# The model as scvi-tools' model directory (export.scvi_tools), for pipelines that take one.
rule export_scvi_tools:
    input:
        model="results/{run}/model",
    output:
        model=directory("results/{run}/model_scvi_tools"),
    log:
        "results/{run}/logs/export_scvi_tools.log",
    conda:
        "../../envs/snakevi-cpu.yaml"
    threads: 1
    resources:
        mem_mb=run_mem_mb,
        runtime=run_runtime,
    script:
        "../../scripts/export_scvi_tools.py"
