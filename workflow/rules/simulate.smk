# The demo dataset (config["simulate"]); used by runs whose dataset is resources/demo.h5ad.
rule simulate:
    output:
        # The path the demo config names, also under a module's prefix; an object of the
        # default storage when there is one (see input_path()).
        h5ad=input_path("resources/demo.h5ad"),
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
