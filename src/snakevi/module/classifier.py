"""``Classifier``: a fully-connected classifier (scvi-tools' ``scvi.module.Classifier``).

Used on the latent space by SCANVAE (cell labels) and by the adversarial training plan
(batches). Same arguments, defaults, submodule layout (``classifier.0`` the hidden
:class:`~snakevi.module.FCLayers`, ``classifier.1`` the output Linear) and initialisation
order as scvi-tools, so state_dict keys match.
"""

from __future__ import annotations

import torch
from torch import nn

from snakevi.module._arguments import check_flag, check_int, check_rate
from snakevi.module.layers import FCLayers


class Classifier(nn.Module):
    """Hidden FC layers, then a Linear to ``n_labels`` outputs (softmax unless ``logits``).

    Parameters
    ----------
    n_input
        Input width (e.g. the latent dimension).
    n_hidden
        Units per hidden layer; ``0`` (or ``n_layers=0``) leaves a single Linear layer.
    n_labels
        Number of classes (outputs).
    n_layers
        Hidden layers; ``0`` leaves a single Linear layer.
    dropout_rate
        Dropout after each hidden layer.
    logits
        Return logits; otherwise class probabilities (a softmax over the last axis).
    use_batch_norm, use_layer_norm
        Normalisation in the hidden layers.
    activation_fn
        Activation class of the hidden layers.
    **kwargs
        Passed to :class:`~snakevi.module.FCLayers`.
    """

    def __init__(
        self,
        n_input: int,
        n_hidden: int = 128,
        n_labels: int = 5,
        n_layers: int = 1,
        dropout_rate: float = 0.1,
        logits: bool = False,
        use_batch_norm: bool = True,
        use_layer_norm: bool = False,
        activation_fn: type[nn.Module] = nn.ReLU,
        **kwargs,
    ):
        super().__init__()
        for name, value, minimum in [("n_input", n_input, 1), ("n_hidden", n_hidden, 0), ("n_labels", n_labels, 1),
                                     ("n_layers", n_layers, 0)]:
            check_int("Classifier", name, value, minimum)
        check_rate("Classifier", "dropout_rate", dropout_rate)
        for name, value in [("logits", logits), ("use_batch_norm", use_batch_norm), ("use_layer_norm", use_layer_norm)]:
            check_flag("Classifier", name, value)
        self.logits = logits
        layers: list[nn.Module] = []
        if n_hidden > 0 and n_layers > 0:
            layers.append(
                FCLayers(
                    n_in=n_input,
                    n_out=n_hidden,
                    n_layers=n_layers,
                    n_hidden=n_hidden,
                    dropout_rate=dropout_rate,
                    use_batch_norm=use_batch_norm,
                    use_layer_norm=use_layer_norm,
                    activation_fn=activation_fn,
                    **kwargs,
                )
            )
        else:
            n_hidden = n_input
        layers.append(nn.Linear(n_hidden, n_labels))
        if not logits:
            layers.append(nn.Softmax(dim=-1))
        self.classifier = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of ``x`` ``(n_cells, n_input)``: ``(n_cells, n_labels)`` logits or probabilities."""
        return self.classifier(x)
