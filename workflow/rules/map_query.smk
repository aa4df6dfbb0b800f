# Reference mapping (scArches): a query dataset onto a trained run. The reference weights stay
# frozen; only the query's new batch columns train. Writes the query's model, history and its
# embedding (obsm[latent_key]; for scanvi references also obs[predicted_key] and probabilities).
rule map_query:
    input:
        reference=query_reference,
        h5ad=query_dataset,
    output:
        model=directory("results/queries/{query}/model"),
        history="results/queries/{query}/history.csv",
        embedding="results/queries/{query}/embedding.h5ad",
        summary="results/queries/{query}/summary.json",
    log:
        "results/queries/{query}/logs/map_query.log",
    benchmark:
        "results/queries/{query}/benchmarks/map_query.tsv"
    conda:
        "../../envs/snakevi-cpu.yaml"
    threads: lambda wildcards: query_config(wildcards)["resources"]["threads"]
    resources:
        mem_mb=lambda wildcards: query_config(wildcards)["resources"]["mem_mb"],
        runtime=lambda wildcards: query_config(wildcards)["resources"]["runtime"],
    params:
        query=lambda wildcards: query_config(wildcards),
    script:
        "../../scripts/map_query.py"
