# snakevi's entry point at the repository root: `snakemake --cores 2` here runs the workflow.
# The definition itself is workflow/Snakefile (the layout of the Snakemake workflow catalog);
# a host workflow that uses snakevi as a module names that file (README.md, section "As a module").
#
# This is the `include:` directive spelled as the call it compiles to, for its one option: an
# included file's rules never become the default target (`include:` takes no options), while
# overwrite_default_target=True lets a bare `snakemake` build workflow/Snakefile's `rule all`.
workflow.include("workflow/Snakefile", overwrite_default_target=True)
