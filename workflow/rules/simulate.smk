# The demo dataset (config["simulate"]); used by runs whose dataset is resources/demo.h5ad.
rule simulate:
    output:
        # local(): the path the demo config names, also under a module's prefix (see dataset()).
        h5ad=local("resources/demo.h5ad"),
    log:
        "logs/simulate.log",
    benchmark:
        "logs/benchmarks/simulate.tsv"
    conda:
        "../../envs/snakevi-cpu.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        simulate=config["simulate"],
    script:
        "../../scripts/simulate.py"
