"""How a model class turns a run's ``train`` section into training phases (:class:`~snakevi.train.recipe.Phase`).

The section mirrors scvi-tools' ``model.train(..., plan_kwargs=...)``::

    train:
      max_epochs: 400            # top level: arguments of the model's train()
      early_stopping: false
      plan: {lr: 0.001, ...}     # the training plan's arguments (plan_kwargs)
      scanvi: {max_epochs: 10}   # the section of a later phase, named after it (SCANVI declares it)

so the split follows the structure: no list of keys per destination. What a key may be is read
from the signatures (the model's ``train``, the plan's constructor) less what the training recipe
passes itself; a later phase's section is what its model class declares (``phase_sections``;
a run of another class ignores it).
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from snakevi.train.recipe import Phase

class TrainingDeclaration:
    """What a model class declares about itself for the steps, so they need no branch per class.

    Mixed into :class:`~snakevi.model.base.BaseModelClass`; a model class overrides what differs.
    """

    #: The name of the class in the workflow config (``model_class``) and in ``snakevi.model.MODELS``.
    model_class: str = ""
    #: ``obsm`` key of the latent representation when the config names none.
    latent_key: str = "X_scVI"
    #: Whether ``predict()`` gives cell labels (the export and query steps then store them).
    predicts_labels: bool = False
    #: The model class a run trains first, when this one starts from it (SCANVI: SCVI).
    pretrained_with: type | None = None
    #: ``train`` config sections read by the phases after the first: ``{section: its keys}``.
    phase_sections: dict = {}

    @classmethod
    def check_training_registry(cls, registry: dict, source) -> None:
        """Refuse (``ValueError``) a registry this class cannot be trained on, before any data is read."""

    @classmethod
    def training_phases(cls, data, *, seed: int, model_params: dict, train_params: dict) -> list[Phase]:
        """The phases of a training run (see :func:`snakevi.train.recipe.run`): here one, ``cls`` on ``data``.

        ``train_params`` is a run's grouped ``train`` section (see the module's docstring).
        """
        return single_phase(cls, data, seed=seed, model_params=model_params, train_params=train_params)


#: The section of the plan's arguments.
PLAN_SECTION = "plan"
#: ``train()`` arguments the recipe gives itself (the prepare step fixed the split and batch size).
RECIPE_ARGUMENTS = frozenset({
    "external_indexing", "batch_size", "seed", "accelerator", "plan_kwargs", "callbacks", "enable_progress_bar",
    "ckpt_path", "train_size", "validation_size", "shuffle_set_split", "datasplitter_kwargs",
    # The trackers change no result: the workflow hands them over beside the train section
    # (train.logger), so they stay out of the run fingerprint.
    "logger", "tracking",
})
#: Config names of ``train()`` arguments, where they differ (the config keeps its short name).
CONFIG_NAMES = {"adversarial_classifier": "adversarial"}
#: Plan arguments no config can give (a Python callable).
_PLAN_CODE_ONLY = frozenset({"module", "optimizer_creator"})


def train_arguments(cls) -> set[str]:
    """The keyword arguments of ``cls.train``, through each ``**kwargs`` to the base class's ``train``."""
    names: set[str] = set()
    for klass in cls.__mro__:
        method = klass.__dict__.get("train")
        if method is None:
            continue
        params = inspect.signature(method).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


def plan_arguments() -> set[str]:
    """The training plan's constructor arguments a config can give."""
    from snakevi.train.plan import TrainingPlan

    params = inspect.signature(TrainingPlan.__init__).parameters.values()
    return {p.name for p in params if p.kind is p.KEYWORD_ONLY} - _PLAN_CODE_ONLY


def top_level_keys(cls) -> set[str]:
    """Keys the top level of ``train`` may hold for ``cls`` (config names): the arguments of the
    ``train`` of its first phase's model (``cls.pretrained_with``, or ``cls`` itself)."""
    first = cls.pretrained_with or cls
    return {CONFIG_NAMES.get(k, k) for k in train_arguments(first) - RECIPE_ARGUMENTS}


def check_train_config(cls, train_params: dict) -> None:
    """Refuse a key the model class cannot use, naming it and the keys it can.

    Raises
    ------
    ValueError
        An unknown key (at the top level, in ``plan`` or in a phase section), or a section
        that is not a mapping.
    """
    sections = {PLAN_SECTION: plan_arguments(), **phase_sections()}
    known = top_level_keys(cls) | set(sections)
    unknown = [k for k in train_params if k not in known]
    for name, keys in sections.items():
        section = train_params.get(name, {})
        if not isinstance(section, dict):
            raise ValueError(f"Training parameter {name!r} must be a mapping of its keys ({sorted(keys)}), "
                             f"not {section!r}.")
        unknown += [f"{name}.{k}" for k in section if k not in keys]
    if unknown:
        listed = sorted(top_level_keys(cls)) + [f"{n}.{k}" for n, keys in sections.items() for k in sorted(keys)]
        raise ValueError(
            f"Unknown training parameter(s) {sorted(unknown)}; known: {listed}. "
            "Check the spelling in the run's 'train' section."
        )


def phase_sections() -> dict:
    """The phase sections of every registered model class, ``{section: its keys}``: a run of one
    class accepts (and ignores) the others', so one config serves runs of any class."""
    from snakevi.model.registry import MODELS

    return {name: keys for model in MODELS.values() for name, keys in model.phase_sections.items()}


def flat_view(cls, train_params: dict) -> dict:
    """The ``train`` section as one flat mapping: what the run fingerprint is computed on.

    The sections' keys join the top level (``plan.lr`` -> ``lr``), a phase section's key that is
    also a top-level key taking the section's name as prefix (``scanvi.max_epochs`` ->
    ``scanvi_max_epochs``): the names of the flat section the config had before it was grouped,
    so a run's fingerprint, and so its checkpoints, carry over.
    """
    top, sections = top_level_keys(cls), phase_sections()
    flat = {k: v for k, v in train_params.items() if k != PLAN_SECTION and k not in sections}
    flat.update(train_params.get(PLAN_SECTION, {}))
    for name in sections:
        for key, value in train_params.get(name, {}).items():
            flat[f"{name}_{key}" if key in top else key] = value
    return flat


def first_phase_kwargs(train_params: dict) -> dict:
    """The top level of ``train`` as ``train()`` arguments (config names translated)."""
    reverse = {v: k for k, v in CONFIG_NAMES.items()}
    sections = phase_sections()
    kwargs = {reverse.get(k, k): v for k, v in train_params.items() if k != PLAN_SECTION and k not in sections}
    if "adversarial_classifier" in kwargs:
        kwargs["adversarial_classifier"] = bool(kwargs["adversarial_classifier"])
    return kwargs


class ModelParameterError(ValueError):
    """A model parameter the model class does not take."""


def build_model(cls, data, seed: int, model_params: dict):
    """``cls(data, seed=seed, **model_params)``, a wrong parameter named for people."""
    try:
        return cls(data, seed=int(seed), **model_params)
    except TypeError as err:
        raise ModelParameterError(f"Invalid model parameter: {err}. Check the run's 'model' section.") from err


def single_phase(cls, data, *, seed: int, model_params: dict, train_params: dict) -> list[Phase]:
    """The phases of a model trained in one go: ``cls`` built on ``data`` and trained."""
    from snakevi.train.recipe import Phase

    return [Phase(
        name=cls.model_class,
        build=lambda previous: build_model(cls, data, seed, model_params),
        train_kwargs=first_phase_kwargs(train_params),
        plan_kwargs=dict(train_params.get(PLAN_SECTION, {})),
    )]
