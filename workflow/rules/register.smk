# Validate the dataset and write its registry (setup, category mappings, genes, checks).
rule register:
    input:
        h5ad=dataset,
        # setup.genes, when given: an input, so that editing the list registers again.
        genes=lambda wildcards: run_config(wildcards)["setup"]["genes"] or [],
    output:
        registry="results/{run}/registry.json",
    log:
        "results/{run}/logs/register.log",
    benchmark:
        "results/{run}/benchmarks/register.tsv"
    conda:
        "../../envs/snakevi-cpu.yaml"
    threads: 1
    resources:
        mem_mb=run_mem_mb,
        runtime=run_runtime,
    params:
        setup=lambda wildcards: run_config(wildcards)["setup"],
    script:
        "../../scripts/register.py"
