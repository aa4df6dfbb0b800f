# snakevi: scVI trained in plain PyTorch, as a Snakemake workflow.
# register -> prepare -> train -> export -> report, for every run in config["runs"];
# map_query for every query in config["queries"] (new data onto a trained run).
# Run: snakemake --cores 2   (config/README.md explains every config key)
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/config.smk"
include: "workflow/rules/common.smk"


wildcard_constraints:
    run="|".join(RUNS),
    query="|".join(QUERIES),


include: "workflow/rules/simulate.smk"
include: "workflow/rules/register.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/map_query.smk"
include: "workflow/rules/run_end.smk"


# Jobs of a second or two: on a cluster they run where snakemake runs, not as cluster jobs.
localrules:
    simulate,
    summary,


rule all:
    default_target: True
    input:
        all_targets(),
