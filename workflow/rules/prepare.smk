# Training-ready arrays (memory-mappable .npy), the seeded split and the loader spec.
rule prepare:
    input:
        h5ad=dataset,
        registry="results/{run}/registry.json",
    output:
        prepared=directory("results/{run}/prepared"),
    log:
        "results/{run}/logs/prepare.log",
    benchmark:
        "results/{run}/benchmarks/prepare.tsv"
    conda:
        "../../envs/snakevi-cpu.yaml"
    threads: 1
    resources:
        mem_mb=run_mem_mb,
        runtime=run_runtime,
    params:
        split=lambda wildcards: run_config(wildcards)["split"],
        seed=lambda wildcards: run_config(wildcards)["seed"],
    script:
        "../../scripts/prepare.py"
