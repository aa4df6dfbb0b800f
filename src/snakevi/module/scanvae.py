"""scANVI's semi-supervised VAE: the module behind SCANVI (scvi-tools' ``scvi.module.SCANVAE``).

On top of the scVI VAE (``x -> z1``) it models a label ``y`` and a second latent ``z2``:
``p(z1 | z2, y)`` (``decoder_z1_z2``), ``q(z2 | z1, y)`` (``encoder_z2_z1``) and
``q(y | z1)`` (``classifier``). Same arguments, defaults, submodules, construction order and
loss arithmetic as scvi-tools 1.4.2, so a seed gives the same initial weights and the
state_dict keys match. Not carried over: ``use_labels_groups``/``labels_groups`` (label
hierarchies; refused with an error) and the autotune payload.

Label codes: ``0 .. n_labels - 1`` are the known cell types; the unlabelled category is code
``n_labels`` (the registry keeps it last), which the loss never reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.distributions import Normal, kl_divergence
from torch.nn import functional as F

from snakevi._constants import REGISTRY_KEYS
from snakevi.module._arguments import check_flag, check_int
from snakevi.module.base import LossOutput
from snakevi.module.classifier import Classifier
from snakevi.module.layers import Decoder, Encoder
from snakevi.module.vae import VAE


def categorical_kl(probs: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """``KL(Cat(probs) || Cat(prior))`` over the last axis, as ``torch.distributions.kl_divergence``.

    The same normalisation, clamping of the logs to ``[eps, 1 - eps]`` and handling of zeros
    (``inf`` where the prior is 0, 0 where ``probs`` is 0), written with ``torch.where``:
    torch's version assigns through boolean masks, which may make the host wait for the device.
    """
    p = probs / probs.sum(-1, keepdim=True)
    q = prior / prior.sum(-1, keepdim=True)
    eps = torch.finfo(p.dtype).eps
    t = p * (torch.log(p.clamp(eps, 1 - eps)) - torch.log(q.clamp(eps, 1 - eps)))
    t = torch.where(q == 0, torch.inf, t)
    t = torch.where(p == 0, 0.0, t)
    return t.sum(-1)


class SCANVAE(VAE):
    """Single-cell annotation using variational inference (Xu et al. 2021), after the M1+M2 model.

    Parameters
    ----------
    n_input, n_batch, n_hidden, n_latent, n_layers, n_continuous_cov, n_cats_per_cov,
    dropout_rate, dispersion, log_variational, gene_likelihood, use_observed_lib_size,
    use_batch_norm, use_layer_norm
        As for :class:`~snakevi.module.VAE`.
    n_labels
        Number of known cell types (the unlabelled category excluded).
    y_prior
        Prior class probabilities, shape ``(1, n_labels)`` or ``(n_labels,)``; ``None`` is uniform.
        Kept as a parameter without gradient (state_dict key ``y_prior``, as in scvi-tools).
    labels_groups, use_labels_groups
        Not supported (scvi-tools' label hierarchies); ``use_labels_groups=True`` is an error.
    linear_classifier
        A single Linear layer as classifier instead of an MLP (``n_layers`` hidden layers of
        ``n_hidden`` units).
    classifier_parameters
        Overrides for :class:`~snakevi.module.Classifier` (``n_hidden``, ``n_layers``,
        ``dropout_rate``, ``logits``...). The default classifier returns logits.
    **vae_kwargs
        Further :class:`~snakevi.module.VAE` arguments.
    """

    def __init__(
        self,
        n_input: int,
        n_batch: int = 0,
        n_labels: int = 0,
        n_hidden: int = 128,
        n_latent: int = 10,
        n_layers: int = 1,
        n_continuous_cov: int = 0,
        n_cats_per_cov: Sequence[int] | None = None,
        dropout_rate: float = 0.1,
        dispersion: str = "gene",
        log_variational: bool = True,
        gene_likelihood: str = "zinb",
        use_observed_lib_size: bool = True,
        y_prior=None,
        labels_groups: Sequence[int] | None = None,
        use_labels_groups: bool = False,
        linear_classifier: bool = False,
        classifier_parameters: dict | None = None,
        use_batch_norm: str = "both",
        use_layer_norm: str = "none",
        **vae_kwargs,
    ):
        if use_labels_groups or labels_groups is not None:
            raise ValueError(
                "SCANVAE: use_labels_groups/labels_groups (label hierarchies) are not supported by snakevi; "
                "leave them unset."
            )
        check_int("SCANVAE", "n_labels", n_labels, 0)
        if n_labels < 1:
            raise ValueError(
                f"SCANVAE: n_labels={n_labels!r}; it needs at least one known cell type "
                "(the unlabelled category does not count)."
            )
        check_flag("SCANVAE", "linear_classifier", linear_classifier)
        if classifier_parameters is not None and not isinstance(classifier_parameters, dict):
            raise ValueError(
                f"SCANVAE: classifier_parameters={classifier_parameters!r} is not valid; expected a dict of "
                "Classifier arguments or None."
            )
        super().__init__(
            n_input,
            n_batch=n_batch,
            n_labels=n_labels,
            n_hidden=n_hidden,
            n_latent=n_latent,
            n_layers=n_layers,
            n_continuous_cov=n_continuous_cov,
            n_cats_per_cov=n_cats_per_cov,
            dropout_rate=dropout_rate,
            dispersion=dispersion,
            log_variational=log_variational,
            gene_likelihood=gene_likelihood,
            use_observed_lib_size=use_observed_lib_size,
            use_batch_norm=use_batch_norm,
            use_layer_norm=use_layer_norm,
            **vae_kwargs,
        )
        norm_enc = {
            "use_batch_norm": use_batch_norm in ("encoder", "both"),
            "use_layer_norm": use_layer_norm in ("encoder", "both"),
        }
        norm_dec = {
            "use_batch_norm": use_batch_norm in ("decoder", "both"),
            "use_layer_norm": use_layer_norm in ("decoder", "both"),
        }
        cls_parameters = {
            "n_layers": 0 if linear_classifier else n_layers,
            "n_hidden": 0 if linear_classifier else n_hidden,
            "dropout_rate": dropout_rate,
            "logits": True,
        }
        cls_parameters.update(classifier_parameters or {})
        # Built in scvi-tools' order (classifier, encoder_z2_z1, decoder_z1_z2): same seed, same init.
        self.classifier = Classifier(n_latent, n_labels=n_labels, **{**norm_enc, **cls_parameters})
        self.encoder_z2_z1 = Encoder(
            n_latent,
            n_latent,
            n_cat_list=[n_labels],
            n_layers=n_layers,
            n_hidden=n_hidden,
            dropout_rate=dropout_rate,
            return_dist=True,
            **norm_enc,
        )
        self.decoder_z1_z2 = Decoder(
            n_latent, n_latent, n_cat_list=[n_labels], n_layers=n_layers, n_hidden=n_hidden, **norm_dec
        )
        if y_prior is None:
            prior = torch.ones(1, n_labels) / n_labels
        else:
            prior = torch.as_tensor(y_prior, dtype=torch.float32).reshape(1, -1)
            if prior.shape[1] != n_labels:
                raise ValueError(f"SCANVAE: y_prior has {prior.shape[1]} entries; expected one per label ({n_labels}).")
            if not (torch.isfinite(prior).all() and (prior >= 0).all() and prior.sum() > 0):
                raise ValueError(
                    f"SCANVAE: y_prior={y_prior!r} is not valid; expected finite probabilities >= 0 with a "
                    f"positive sum, one per label ({n_labels})."
                )
        self.y_prior = torch.nn.Parameter(prior, requires_grad=False)

    # ------------------------------------------------------------ classification
    def classify(
        self,
        x: torch.Tensor,
        batch_index: torch.Tensor | None = None,
        cont_covs: torch.Tensor | None = None,
        cat_covs: torch.Tensor | None = None,
        use_posterior_mean: bool = True,
    ) -> torch.Tensor:
        """Encode counts ``x`` ``(n_cells, n_genes)`` and score the labels from ``z1``.

        Parameters
        ----------
        use_posterior_mean
            Classify the posterior mean of ``q(z1 | x)``; otherwise one sample (stochastic).

        Returns
        -------
        ``(n_cells, n_labels)``: logits (the default classifier), or probabilities when the
        classifier was built with ``logits=False``.
        """
        x_ = torch.log1p(x) if self.log_variational else x
        encode_cov = self.encode_covariates
        encoder_input = torch.cat((x_, cont_covs), dim=-1) if cont_covs is not None and encode_cov else x_
        categorical_input = torch.split(cat_covs, 1, dim=1) if cat_covs is not None and encode_cov else ()
        qz, z = self.z_encoder(encoder_input, batch_index, *categorical_input)
        return self.classifier(qz.loc if use_posterior_mean else z)

    def classification_loss(self, labelled_tensors: dict[str, torch.Tensor]):
        """Cross-entropy of the classifier on a labelled minibatch (labels ``0 .. n_labels - 1``).

        Returns
        -------
        ``(ce_loss, true_labels, logits)``: 0-d mean cross-entropy, labels ``(n, 1)`` and
        classifier scores ``(n, n_labels)``.
        """
        y = labelled_tensors[REGISTRY_KEYS.LABELS_KEY]
        scores = self.classify(
            labelled_tensors[REGISTRY_KEYS.X_KEY],
            batch_index=labelled_tensors[REGISTRY_KEYS.BATCH_KEY],
            cont_covs=labelled_tensors.get(REGISTRY_KEYS.CONT_COVS_KEY),
            cat_covs=labelled_tensors.get(REGISTRY_KEYS.CAT_COVS_KEY),
        )
        # As scvi-tools: cross_entropy treats the scores as logits, whatever the classifier returns.
        ce_loss = F.cross_entropy(scores, y.reshape(-1).long())
        return ce_loss, y, scores

    # ---------------------------------------------------------------- the loss
    def loss(
        self,
        tensors: dict[str, torch.Tensor],
        inference_outputs: dict,
        generative_outputs: dict,
        kl_weight: float | torch.Tensor = 1.0,
        labelled_tensors: dict[str, torch.Tensor] | None = None,
        classification_ratio: float | None = None,
    ) -> LossOutput:
        """Negative ELBO with ``y`` summed out under ``q(y | z1)``, plus the weighted classification loss.

        Per cell, with ``pi = softmax(classifier(z1))``::

            reconstruction = -log p(x | z1, l) + log q(z1 | x) + sum_y pi_y * (-log p(z1 | z2_y, y))
            kl_local       = sum_y pi_y * KL(q(z2 | z1, y) || N(0, I)) + KL(pi || y_prior) + KL_l
            loss           = mean(reconstruction + kl_weight * kl_local)
                             [+ classification_ratio * CE(labelled_tensors)]

        As in scvi-tools every cell of ``tensors`` is marginalised over the labels (labelled
        ones too) and the library KL is warmed up with the rest.

        Parameters
        ----------
        kl_weight
            Weight of ``kl_local``.
        labelled_tensors
            A minibatch of labelled cells; adds ``classification_ratio * cross-entropy``.
        classification_ratio
            Weight of the classification loss (the training plan passes 50 by default).
        """
        qz1 = inference_outputs["qz"]
        z1 = inference_outputs["z"]
        n_labels = self.n_labels
        rec = self.reconstruction_loss(tensors, generative_outputs)

        # Every cell paired with every label: rows are label-major (all cells with label 0 first).
        n_cells = z1.shape[-2]
        ys = torch.arange(n_labels, device=z1.device).repeat_interleave(n_cells).unsqueeze(-1)
        z1s = z1.repeat(n_labels, 1) if z1.dim() == 2 else z1.repeat(1, n_labels, 1)
        qz2, z2 = self.encoder_z2_z1(z1s, ys)
        pz1_m, pz1_v = self.decoder_z1_z2(z2, ys)
        prior_z2 = Normal(torch.zeros_like(qz2.loc), torch.ones_like(qz2.scale), validate_args=False)
        kl_z2 = kl_divergence(qz2, prior_z2).sum(dim=-1)
        loss_z1_unweight = -Normal(pz1_m, torch.sqrt(pz1_v), validate_args=False).log_prob(z1s).sum(dim=-1)
        loss_z1_weight = qz1.log_prob(z1).sum(dim=-1)

        probs = self.classifier(z1)
        if self.classifier.logits:
            probs = F.softmax(probs, dim=-1)
        if z1.dim() == 2:
            loss_z1_unweight_ = loss_z1_unweight.view(n_labels, -1).t()
            kl_z2_ = kl_z2.view(n_labels, -1).t()
        else:
            loss_z1_unweight_ = loss_z1_unweight.view(z1.shape[0], n_labels, -1).transpose(-1, -2)
            kl_z2_ = kl_z2.view(z1.shape[0], n_labels, -1).transpose(-1, -2)
        rec = rec + loss_z1_weight + (loss_z1_unweight_ * probs).sum(dim=-1)
        kl = (kl_z2_ * probs).sum(dim=-1)
        kl = kl + categorical_kl(probs, self.y_prior.expand_as(probs))
        kl = kl + self.library_kl(inference_outputs, generative_outputs, like=kl)
        loss = torch.mean(rec + kl * kl_weight)

        if labelled_tensors is None:
            return LossOutput(loss=loss, reconstruction_loss=rec, kl_local=kl)
        if classification_ratio is None:
            raise ValueError(
                "SCANVAE.loss got labelled_tensors but no classification_ratio; pass the weight of the "
                "classification loss (SemiSupervisedTrainingPlan passes 50 by default)."
            )
        ce_loss, true_labels, logits = self.classification_loss(labelled_tensors)
        return LossOutput(
            loss=loss + ce_loss * classification_ratio,
            reconstruction_loss=rec,
            kl_local=kl,
            classification_loss=ce_loss,
            true_labels=true_labels,
            logits=logits,
        )
