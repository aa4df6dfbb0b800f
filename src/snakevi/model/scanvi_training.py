"""A scanvi run's two phases: scVI on the data, then scANVI from it, as scvi-tools recommends.

The scANVI phase reads the ``train.scanvi`` section: ``max_epochs`` (``None``: scvi-tools' rule
for a pretrained model), ``classification_ratio`` and ``n_samples_per_label``. It validates,
stops early and clips as the scVI phase does; the adversarial classifier is scVI's only.
"""

from __future__ import annotations

from snakevi.model.phases import PLAN_SECTION, build_model, first_phase_kwargs

#: The scANVI phase's section of ``train`` and its keys.
SECTION = "scanvi"
SECTION_KEYS = frozenset({"max_epochs", "classification_ratio", "n_samples_per_label"})
#: Plan settings the scANVI phase keeps from ``train.plan``: the optimiser's, not scVI's KL
#: warm-up (scvi-tools trains it with the plan's defaults unless told otherwise).
KEPT_PLAN_KEYS = ("optimizer", "lr", "weight_decay", "eps")


def check_scanvi_registry(registry: dict, source) -> None:
    """Refuse a registry without a labels key or an unlabeled category."""
    from snakevi.data.registry import registry_unlabeled_category

    if registry["fields"]["labels"]["original_key"] is None or registry_unlabeled_category(registry) is None:
        raise ValueError(
            f"{source}: model_class scanvi needs a registry with a labels key and an unlabeled category; "
            "register the data with setup.labels_key and setup.unlabeled_category."
        )


def scanvi_phases(cls, data, *, seed: int, model_params: dict, train_params: dict) -> list:
    """``[scvi phase, scanvi phase]`` of a run of ``cls`` (SCANVI) on ``data``."""
    from snakevi.data.registry import registry_unlabeled_category
    from snakevi.train.recipe import Phase

    first = cls.pretrained_with
    first_kwargs = first_phase_kwargs(train_params)
    plan = train_params.get(PLAN_SECTION, {})
    section = train_params.get(SECTION, {})
    # Validation, early stopping and clipping as in the scVI phase; the adversarial classifier is scVI's only.
    kwargs = {k: v for k, v in first_kwargs.items() if k != "adversarial_classifier"}
    kwargs.update(max_epochs=section.get("max_epochs"), n_samples_per_label=section.get("n_samples_per_label"))
    scanvi_plan = {k: v for k, v in plan.items() if k in KEPT_PLAN_KEYS}
    scanvi_plan["classification_ratio"] = float(section.get("classification_ratio", 50))

    def from_scvi(scvi_model):
        return cls.from_scvi_model(scvi_model, registry_unlabeled_category(scvi_model.registry))

    return [
        Phase(first.model_class, lambda previous: build_model(first, data, seed, model_params), first_kwargs,
              dict(plan)),
        Phase(cls.model_class, from_scvi, kwargs, scanvi_plan),
    ]
