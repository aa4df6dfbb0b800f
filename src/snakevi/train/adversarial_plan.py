"""``AdversarialTrainingPlan``: a batch classifier on the latent space that the encoder learns to fool.

scvi-tools' plan of the same name. Each training step:

1. the module's loss plus ``kappa * fool_loss``, where ``fool_loss`` is the cross-entropy of
   the classifier's batch prediction on ``z`` against the uniform distribution over the
   *other* batches; the trainer minimises it with the module's optimizer;
2. then (:meth:`AdversarialTrainingPlan.after_optimizer_step`) the classifier is trained on
   ``z.detach()`` toward the true batch, loss scaled by ``kappa``, with its own
   ``Adam(lr=1e-3, eps=0.01, weight_decay=plan.weight_decay)``.

``kappa = 1 - kl_weight`` with ``scale_adversarial_loss="auto"`` (the adversary fades in as the
KL warm-up fades out), else the given number. The LR scheduler steps as for every plan: after
validation when ``lr_scheduler_metric`` names a validation metric, else after the training
epoch (scvi-tools' rule for this plan). The classifier's weights and optimizer state are part
of the plan's :meth:`state_dict`, which the trainer puts in every checkpoint.

Under DDP (several processes) the trainer starts every rank from rank 0's classifier
(:attr:`~AdversarialTrainingPlan.auxiliary_modules`), normalises its BatchNorm over the whole
minibatch, and hands the plan its gradient averaging (:meth:`set_gradient_averaging`): after the
classifier's backward its gradients are averaged over the ranks in one flat all-reduce, as the
module's are, so its step is the one a single process takes on the whole minibatch.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import torch

from snakevi._constants import REGISTRY_KEYS
from snakevi.module.base import BaseModuleClass, LossOutput
from snakevi.module.classifier import Classifier
from snakevi.train import optim
from snakevi.train.plan import TrainingPlan, _can_fuse


class AdversarialTrainingPlan(TrainingPlan):
    """Training plan with an optional adversarial batch classifier on ``z``.

    Parameters
    ----------
    module
        A VAE-like module with ``n_batch``, ``n_latent`` and ``inference`` returning ``"z"``.
    adversarial_classifier
        ``True`` builds scvi-tools' ``Classifier(n_latent, n_hidden=32, n_labels=n_batch,
        n_layers=2, logits=True)``; a ``torch.nn.Module`` (returning logits over batches) is
        used as given; ``False`` trains without adversary. With a single batch there is
        nothing to mix, so ``True`` is turned off with a warning.
    scale_adversarial_loss
        ``"auto"`` (``1 - kl_weight``) or a fixed weight of both adversarial losses.
    **kwargs
        :class:`~snakevi.train.TrainingPlan` arguments and loss keywords.

    Notes
    -----
    Build the plan after seeding (``snakevi.train.seed_everything``, or as ``SCVI.train`` does)
    to make the classifier's initial weights reproducible.
    """

    def __init__(
        self,
        module: BaseModuleClass,
        *,
        adversarial_classifier: bool | torch.nn.Module = False,
        scale_adversarial_loss: float | Literal["auto"] = "auto",
        **kwargs,
    ) -> None:
        super().__init__(module, **kwargs)
        if not (scale_adversarial_loss == "auto" or isinstance(scale_adversarial_loss, (int, float))):
            raise ValueError(f"scale_adversarial_loss={scale_adversarial_loss!r}: expected 'auto' or a number.")
        self.scale_adversarial_loss = scale_adversarial_loss
        self.n_output_classifier = int(getattr(module, "n_batch", 0))
        if adversarial_classifier is True:
            if self.n_output_classifier <= 1:
                warnings.warn(
                    f"Disabling the adversarial classifier: the data has {max(self.n_output_classifier, 1)} batch, "
                    "so there are no batches to mix. Training continues without it.",
                    UserWarning,
                    stacklevel=2,
                )
                adversarial_classifier = False
            else:
                adversarial_classifier = Classifier(
                    n_input=module.n_latent, n_hidden=32, n_labels=self.n_output_classifier, n_layers=2, logits=True
                )
        elif adversarial_classifier is not False and not isinstance(adversarial_classifier, torch.nn.Module):
            raise TypeError(
                "adversarial_classifier must be True, False or a torch.nn.Module, "
                f"got {type(adversarial_classifier).__name__}."
            )
        self.adversarial_classifier = adversarial_classifier
        self.classifier_optimizer: torch.optim.Optimizer | None = None
        self._classifier_params: list[torch.nn.Parameter] = []
        self._average_gradients = None  # the ranks' averaging under DDP (set by the trainer)
        self._pending: tuple[torch.Tensor, torch.Tensor, float] | None = None

    @property
    def has_adversary(self) -> bool:
        """Whether a batch classifier is trained against the encoder."""
        return self.adversarial_classifier is not False

    @property
    def auxiliary_modules(self) -> tuple[torch.nn.Module, ...]:
        """Modules trained besides ``module`` (the classifier): under DDP the trainer broadcasts them
        from rank 0 and gives their BatchNorm the whole minibatch, as it does for ``module``."""
        return (self.adversarial_classifier,) if self.has_adversary else ()

    def set_gradient_averaging(self, average) -> None:
        """Average the classifier's gradients over the ranks with ``average(params)`` (None: alone)."""
        self._average_gradients = average

    def kappa(self, kl_weight: float) -> float:
        """Weight of the adversarial losses at this KL weight."""
        return 1.0 - kl_weight if self.scale_adversarial_loss == "auto" else float(self.scale_adversarial_loss)

    # -- optimisation ----------------------------------------------------------------------
    def configure_optimizers(self):
        """The module's optimizer and scheduler (as TrainingPlan); builds the classifier's own Adam."""
        optimizer, scheduler = super().configure_optimizers()
        self.classifier_optimizer = None
        if self.has_adversary:
            # The trainer moves only the module; the classifier follows it here, in training mode
            # for good (it is not used in validation).
            self.adversarial_classifier.to(self.module.device).train()
            params = self._classifier_params = [p for p in self.adversarial_classifier.parameters()
                                                if p.requires_grad]
            self.classifier_optimizer = optim.Adam(
                params, lr=1e-3, eps=0.01, weight_decay=self.weight_decay, fused=_can_fuse(params)
            )
        return optimizer, scheduler

    def loss_adversarial_classifier(
        self, z: torch.Tensor, batch_index: torch.Tensor, predict_true_class: bool = True
    ) -> torch.Tensor:
        """Cross-entropy of the classifier on ``z`` toward the true batch, or toward the others.

        With ``predict_true_class=False`` the target is uniform over the batches the cell is
        *not* from (``1 / (n_batch - 1)`` each): the encoder's "fool" objective.
        """
        n_classes = self.n_output_classifier
        log_probs = torch.log_softmax(self.adversarial_classifier(z), dim=1)
        one_hot = torch.nn.functional.one_hot(batch_index.reshape(-1), n_classes)
        if predict_true_class:
            target = one_hot
        else:
            target = (~one_hot.bool()).float() / (n_classes - 1)
        return -(log_probs * target).sum(dim=1).mean()

    # -- steps -----------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int, *, epoch: int, global_step: int) -> torch.Tensor:
        """Module loss plus ``kappa * fool_loss``; remembers ``z`` for the classifier's own step."""
        kl_weight = self.kl_weight(epoch, global_step)
        self._last_kl_weight = kl_weight
        kappa = self.kappa(kl_weight)
        inference_outputs, _, loss_output = self.module(batch, loss_kwargs=self._loss_kwargs(kl_weight))
        if not isinstance(loss_output, LossOutput):
            raise TypeError(f"{type(self.module).__name__}.forward returned {type(loss_output).__name__} last.")
        z = inference_outputs["z"]
        batch_index = batch[REGISTRY_KEYS.BATCH_KEY]
        loss = loss_output.loss
        if kappa > 0 and self.has_adversary:
            loss = loss + self.loss_adversarial_classifier(z, batch_index, False) * kappa
            # train_loss includes the adversarial term, as scvi-tools logs it (its in-place +=).
            loss_output.loss = loss
        self.train_metrics.update(loss_output)
        self._pending = (z.detach(), batch_index, kappa) if self.has_adversary else None
        return loss

    def after_optimizer_step(self) -> None:
        """Train the classifier one step on the last minibatch's ``z`` (called by the trainer)."""
        if self._pending is None or self.classifier_optimizer is None:
            return
        z, batch_index, kappa = self._pending
        self._pending = None
        loss = self.loss_adversarial_classifier(z, batch_index, True) * kappa
        self.classifier_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self._average_gradients is not None:
            self._average_gradients(self._classifier_params)
        self.classifier_optimizer.step()

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Classifier weights and its optimizer's state (``{}`` without adversary)."""
        if not self.has_adversary:
            return {}
        optimizer = self.classifier_optimizer
        return {
            "adversarial_classifier": self.adversarial_classifier.state_dict(),
            "classifier_optimizer": None if optimizer is None else optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (after ``configure_optimizers``); refuse a state of another plan."""
        if bool(state) != self.has_adversary:
            raise ValueError(
                "the checkpoint was written for another training plan: it "
                f"{'has' if state else 'has no'} adversarial classifier state but this plan "
                f"{'trains' if self.has_adversary else 'has no'} adversarial classifier; resume with the same "
                "adversarial_classifier setting."
            )
        if not state:
            return
        self.adversarial_classifier.load_state_dict(state["adversarial_classifier"])
        if self.classifier_optimizer is not None and state["classifier_optimizer"] is not None:
            self.classifier_optimizer.load_state_dict(state["classifier_optimizer"])
