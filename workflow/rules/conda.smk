# Where the conda envs (envs/*.yaml, --sdm conda) install snakevi from: their pip entry is
# `-e ${SNAKEVI_SOURCE}`, which pip expands from the environment. conda runs that pip from the
# folder of Snakemake's copy of the yaml (.snakemake/conda/), so a relative path (`-e ../`)
# would point there, not at this checkout. Default: the checkout this Snakefile lives in
# (two folders above this file). A workflow used as a module from a remote source has no local
# checkout: the user sets SNAKEVI_SOURCE, e.g. to git+https://github.com/<owner>/snakevi.git
# or to a local clone. Snakemake names an env by the yaml text plus the folder of the envs
# (.snakemake/conda of the working directory, or --conda-prefix), not by SNAKEVI_SOURCE: runs that
# share a --conda-prefix share one env, installed editable from the checkout that created it
# first. Accepted (the env's packages are the same; only the editable link differs); delete
# <prefix>/<hash>* to point it at another checkout.
import os as _os

# workflow.current_basedir is this file's folder (workflow/rules/): a local path as a str, or
# for a remote module a URL (not local: leave SNAKEVI_SOURCE to the user).
_rules_dir = str(workflow.current_basedir)
if "://" not in _rules_dir:
    _os.environ.setdefault(
        "SNAKEVI_SOURCE",
        _os.path.dirname(_os.path.dirname(_os.path.abspath(_rules_dir))),
    )
