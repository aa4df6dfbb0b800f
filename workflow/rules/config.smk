# Config checks, all before any job runs: the schema (types, ranges, defaults), then what JSON
# Schema cannot say: a YAML file that repeats a key (the last one would win silently) and a
# number with a decimal point where a count belongs (JSON Schema's "integer" admits 5.0).
import json
import re

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

CONFIG_SCHEMA = "../schemas/config.schema.yaml"
CONFIG_DOCS = "config/README.md lists every key with its type and default."


def config_error(err):
    """One readable line for a schema violation: where in the config, what, and where to look.

    Snakemake's message holds the whole schema; keep jsonschema's one-line reason and the
    path of the offending entry ("On instance['runs']['demo']['train']").
    """
    text = str(err)
    reason = re.search(r"ValidationError: (.*)", text)
    where = re.search(r"On instance((?:\[[^\]]*\])*)", text)
    if reason is None:
        return text
    path = re.findall(r"\['?([^\]']*)'?\]", where.group(1)) if where else []
    return f"Invalid config at {'.'.join(path) or 'the top level'}: {reason.group(1)}. {CONFIG_DOCS}"


def best_config_error(value, schema):
    """The most telling schema violation of ``value`` as one line, or None if there is none.

    Snakemake reports the first error jsonschema meets; under ``anyOf`` (a seed or a list of
    seeds) that is "not valid under any of the given schemas", which hides the reason.
    jsonschema's ``best_match`` descends into the branch of the value's own type.
    """
    import jsonschema
    from jsonschema.exceptions import best_match

    validator = jsonschema.validators.validator_for(schema)(schema)
    error = best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = ".".join(str(part) for part in error.absolute_path) or "the top level"
    return f"Invalid config at {where}: {error.message}. {CONFIG_DOCS}"


class UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that records each key repeated within one mapping: ``(key, first line, line)``."""

    def __init__(self, stream):
        super().__init__(stream)
        self.repeated = []

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                self.repeated.append((key, seen[key], line))
            seen.setdefault(key, line)
        return super().construct_mapping(node, deep=deep)


def repeated_keys(text):
    """``(key, where)`` of the first key repeated within one mapping of a JSON or YAML text, or None."""
    found = []

    def pairs_hook(pairs):
        keys = [key for key, _ in pairs]
        found.extend((key, "object") for key in keys if keys.count(key) > 1)
        return dict(pairs)

    try:
        json.loads(text, object_pairs_hook=pairs_hook)
        return found[0] if found else None
    except ValueError:
        pass  # not JSON: YAML
    loader = UniqueKeyLoader(text)
    try:
        loader.get_single_data()
    except yaml.YAMLError:
        return None  # Snakemake read it (its YAML dialect may go beyond ours); nothing more to say
    finally:
        loader.dispose()
    if not loader.repeated:
        return None
    key, first, line = loader.repeated[0]
    return key, f"section (lines {first} and {line})"


def refuse_duplicate_keys(paths):
    """Read each config file again, strictly: a key repeated within one mapping is an error."""
    for path in paths:
        try:
            with open(path, encoding="utf-8") as fh:
                found = repeated_keys(fh.read())
        except OSError:
            continue  # Snakemake has already said what is wrong with a missing file
        if found is not None:
            key, where = found
            raise WorkflowError(
                f"Invalid config file {path}: key {key!r} appears twice in one {where}; it would "
                "silently keep only the last. Remove or rename one of them."
            )


def refuse_decimal_counts(value, schema, defs, path=()):
    """Refuse a float where the schema wants an integer (5.0 for max_epochs, say).

    JSON Schema counts 5.0 as an integer, but the steps and torch would not: say so now, naming
    the key, instead of a raw error from a job later.
    """
    while "$ref" in schema or "anyOf" in schema:
        if "$ref" in schema:
            schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
            continue
        # The branch of the value's kind (a seed or a list of seeds).
        branches = [
            b
            for b in schema["anyOf"]
            if (b.get("type") == "array") == isinstance(value, list)
        ]
        if not branches:
            return
        schema = branches[0]
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    if isinstance(value, float) and "integer" in types and "number" not in types:
        where = ".".join(path) or "the top level"
        hint = f"write {int(value)}" if value.is_integer() else "give a whole number"
        raise WorkflowError(
            f"Invalid config at {where}: {value!r} is not an integer ({hint}). {CONFIG_DOCS}"
        )
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                refuse_decimal_counts(item, sub, defs, (*path, str(key)))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            refuse_decimal_counts(item, schema["items"], defs, (*path, str(i)))


refuse_duplicate_keys(workflow.configfiles)
with open(workflow.source_path(CONFIG_SCHEMA), encoding="utf-8") as schema_file:
    config_schema = yaml.safe_load(schema_file)
try:
    validate(config, CONFIG_SCHEMA)
except WorkflowError as err:
    raise WorkflowError(
        best_config_error(config, config_schema) or config_error(err)
    ) from None
refuse_decimal_counts(config, config_schema, config_schema.get("$defs", {}))
