"""Generative modules (no AnnData here): the module contract, scVI's VAE, its layers and likelihoods."""

from snakevi.module.base import BaseModuleClass, LossOutput
from snakevi.module.distributions import (
    NegativeBinomial,
    Poisson,
    ZeroInflatedNegativeBinomial,
    log_nb_positive,
    log_poisson,
    log_zinb_positive,
)
from snakevi.module.layers import DecoderSCVI, Encoder, FCLayers
from snakevi.module.vae import VAE

__all__ = [
    "BaseModuleClass",
    "DecoderSCVI",
    "Encoder",
    "FCLayers",
    "LossOutput",
    "NegativeBinomial",
    "Poisson",
    "VAE",
    "ZeroInflatedNegativeBinomial",
    "log_nb_positive",
    "log_poisson",
    "log_zinb_positive",
]
