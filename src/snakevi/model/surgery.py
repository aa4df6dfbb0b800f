"""scArches surgery on a module: transplant reference weights, then freeze all but the new slices.

Works on torch modules and plain dicts only (no AnnData): ``model/arches.py`` decides the
category growth from the registries and calls :func:`transplant` and
:func:`set_params_online_update`. See that file's docstring for what follows scvi-tools and
where it differs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from snakevi.model.bundle import ModelFileError

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: SCANVI's z2 <-> z1 layers: scvi-tools keeps them fully frozen during query training.
_INFERENCE_ONLY = ("encoder_z2_z1", "decoder_z1_z2")


def _zeroed(k: int) -> int:
    """One-hot width of a categorical with ``k`` categories (FCLayers skips ``k <= 1``)."""
    return k if k > 1 else 0


def category_growth(ref_registry: dict, new_registry: dict) -> list[tuple[int, int]]:
    """``(n_before, n_after)`` for the batch and each categorical covariate, in FCLayers order."""
    a, b = ref_registry["summary"], new_registry["summary"]
    return [(int(a["n_batch"]), int(b["n_batch"]))] + [
        (int(x), int(y)) for x, y in zip(a["n_cats_per_cov"], b["n_cats_per_cov"])
    ]


def _fclayers_column_maps(module, old_shapes: dict, growth: list[tuple[int, int]]) -> dict:
    """For each grown FCLayers Linear weight: ``(src, zero)`` per input column of the new weight.

    ``src[j]`` is the reference column that new column ``j`` copies (``-1``: freshly
    initialised); ``zero[j]`` marks columns of categories the reference knew but had no column
    for (a single category, which FCLayers skips): they start at zero, so those cells are
    computed as in the reference.
    """
    from snakevi.module.layers import FCLayers

    maps = {}
    for fname, fcl in module.named_modules():
        if not isinstance(fcl, FCLayers):
            continue
        for i, block in enumerate(fcl.fc_layers):
            key = f"{fname}.fc_layers.Layer {i}.0.weight" if fname else f"fc_layers.Layer {i}.0.weight"
            n_in = block[0].weight.shape[1]
            old_in = old_shapes[key][1] if key in old_shapes and len(old_shapes[key]) == 2 else n_in
            if old_in == n_in or not fcl.inject_into_layer(i):
                continue
            base = n_in - sum(fcl.n_cat_list)
            new_widths = [_zeroed(kn) for _, kn in growth]
            if list(fcl.n_cat_list) != new_widths or base + sum(_zeroed(ko) for ko, _ in growth) != old_in:
                raise ValueError(
                    f"Cannot map the reference weight {key} ({old_in} input columns) onto the query model's "
                    f"({n_in} columns, categorical widths {fcl.n_cat_list}); its covariates are not "
                    "[batch] + categorical covariates."
                )
            src, zero = np.full(n_in, -1), np.zeros(n_in, dtype=bool)
            src[:base] = np.arange(base)
            pos_new = pos_old = base
            for k_old, k_new in growth:
                if _zeroed(k_new) == 0:
                    continue
                if _zeroed(k_old) == 0:
                    zero[pos_new:pos_new + k_old] = True
                else:
                    src[pos_new:pos_new + k_old] = np.arange(pos_old, pos_old + k_old)
                pos_new += _zeroed(k_new)
                pos_old += _zeroed(k_old)
            maps[key] = (src, zero)
    return maps


def transplant(module, ref_state: dict, growth: list[tuple[int, int]], where: str) -> dict[str, torch.Tensor]:
    """Load the reference weights into ``module``, keeping its fresh init where tensors grew.

    Returns
    -------
    ``{parameter or buffer name: bool mask}`` for every tensor that grew: True on the freshly
    initialised entries.
    """
    import torch

    new_state = module.state_dict()
    missing, extra = sorted(set(new_state) - set(ref_state)), sorted(set(ref_state) - set(new_state))
    if missing or extra:
        raise ModelFileError(
            f"The weights of {where} do not fit a {type(module).__name__} built from its parameters: "
            f"missing {missing[:5]}, unexpected {extra[:5]}."
        )
    column_maps = _fclayers_column_maps(module, {k: tuple(v.shape) for k, v in ref_state.items()}, growth)
    merged, fresh = {}, {}
    for key, new in new_state.items():
        old = ref_state[key].to(device=new.device)
        if old.shape == new.shape:
            merged[key] = old
            continue
        if old.dim() != new.dim() or any(o > n for o, n in zip(old.shape, new.shape)):
            raise ModelFileError(
                f"The reference tensor {key} has shape {tuple(old.shape)} but the query model's is "
                f"{tuple(new.shape)}; a query can only add categories."
            )
        out, mask = new.clone(), torch.ones(new.shape, dtype=torch.bool, device=new.device)
        if key in column_maps:
            src, zero = column_maps[key]
            copied = torch.as_tensor(np.flatnonzero(src >= 0), device=new.device)
            out[:, copied] = old[:, torch.as_tensor(src[src >= 0], device=new.device)].to(out.dtype)
            out[:, torch.as_tensor(np.flatnonzero(zero), device=new.device)] = 0
            mask[:, copied] = False
            mask[:, torch.as_tensor(np.flatnonzero(zero), device=new.device)] = False
        else:
            # As scvi-tools: the reference's values first along each grown dimension.
            region = tuple(slice(0, n) for n in old.shape)
            out[region] = old.to(out.dtype)
            mask[region] = False
        merged[key], fresh[key] = out, mask
    module.load_state_dict(merged, strict=True)
    return fresh


class _KeepSlices:
    """Gradient hook: keep the gradient where ``mask`` is True, zero it elsewhere."""

    def __init__(self, mask: torch.Tensor) -> None:
        self.frozen = ~mask

    def __call__(self, grad: torch.Tensor) -> torch.Tensor:
        if self.frozen.device != grad.device:  # the module moved (e.g. to the GPU for training)
            self.frozen = self.frozen.to(grad.device)
        # masked_fill rather than a multiplication: a NaN gradient in a frozen entry stays out.
        return grad.masked_fill(self.frozen, 0)


def set_params_online_update(
    module,
    fresh: dict[str, torch.Tensor],
    *,
    unfrozen: bool = False,
    freeze_dropout: bool = False,
    freeze_expression: bool = True,
    freeze_decoder_first_layer: bool = True,
    freeze_batchnorm_encoder: bool = True,
    freeze_batchnorm_decoder: bool = False,
    freeze_classifier: bool = True,
) -> list:
    """Freeze ``module`` for query training; only ``fresh`` slices and released parts train.

    Parameters
    ----------
    module
        The query model's module, holding the reference weights.
    fresh
        ``{tensor name: bool mask}`` of the freshly initialised entries (from the transplant).
    unfrozen, freeze_*
        See :meth:`ArchesMixin.load_query_data`.

    Returns
    -------
    The gradient-hook handles (``handle.remove()`` undoes a hook).
    """
    import torch

    from snakevi.module.layers import FCLayers

    if unfrozen:
        for p in module.parameters():
            p.requires_grad_(True)
        return []
    free_modules = {"l_encoder"} | (set() if freeze_classifier else {"classifier"})

    def top(name: str) -> str:
        return name.split(".")[0]

    trainable: dict[str, torch.Tensor | None] = {}  # name -> mask (None: the whole tensor)
    for fname, fcl in module.named_modules():
        if not isinstance(fcl, FCLayers) or top(fname) in free_modules or top(fname) in _INFERENCE_ONLY:
            continue
        first_free = (not freeze_expression and "encoder" in fname) or (
            not freeze_decoder_first_layer and "px_decoder" in fname
        )
        bn_free = ("encoder" in fname and not freeze_batchnorm_encoder) or (
            "decoder" in fname and not freeze_batchnorm_decoder
        )
        prefix = f"{fname}.fc_layers" if fname else "fc_layers"
        for i, block in enumerate(fcl.fc_layers):
            lin = f"{prefix}.Layer {i}.0"
            if i == 0 and first_free:
                trainable[f"{lin}.weight"] = None
                if block[0].bias is not None:
                    trainable[f"{lin}.bias"] = None
            elif f"{lin}.weight" in fresh:
                trainable[f"{lin}.weight"] = fresh[f"{lin}.weight"]
            if isinstance(block[1], torch.nn.BatchNorm1d) and bn_free:
                trainable[f"{prefix}.Layer {i}.1.weight"] = trainable[f"{prefix}.Layer {i}.1.bias"] = None
    hooks = []
    for name, p in module.named_parameters():
        if top(name) in free_modules:
            p.requires_grad_(True)
        elif name in trainable:
            p.requires_grad_(True)
            if trainable[name] is not None:
                hooks.append(p.register_hook(_KeepSlices(trainable[name])))
        elif name in fresh and top(name) not in _INFERENCE_ONLY:
            # e.g. px_r with dispersion="gene-batch": the new batches' columns must learn.
            p.requires_grad_(True)
            hooks.append(p.register_hook(_KeepSlices(fresh[name])))
        else:
            p.requires_grad_(False)
    for name, m in module.named_modules():
        if top(name) in free_modules:
            continue
        if freeze_dropout and isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if isinstance(m, torch.nn.BatchNorm1d) and (
            ("decoder" in name and freeze_batchnorm_decoder)
            or ("encoder" in name and freeze_batchnorm_encoder)
            or top(name) == "classifier"
        ):
            m.momentum = 0.0  # running statistics stay the reference's
    return hooks
