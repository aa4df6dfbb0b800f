"""Generative modules (no AnnData here): the module contract, scVI's VAE (and its linearly decoded
variant LDVAE), scANVI's, their layers and likelihoods."""

from snakevi.module.base import BaseModuleClass, LossOutput
from snakevi.module.classifier import Classifier
from snakevi.module.distributions import (
    NegativeBinomial,
    Poisson,
    ZeroInflatedNegativeBinomial,
    log_nb_positive,
    log_poisson,
    log_zinb_positive,
)
from snakevi.module.layers import Decoder, DecoderSCVI, Encoder, FCLayers
from snakevi.module.ldvae import LDVAE, LinearDecoderSCVI
from snakevi.module.scanvae import SCANVAE
from snakevi.module.vae import VAE

__all__ = [
    "BaseModuleClass",
    "Classifier",
    "Decoder",
    "DecoderSCVI",
    "Encoder",
    "FCLayers",
    "LDVAE",
    "LinearDecoderSCVI",
    "LossOutput",
    "NegativeBinomial",
    "Poisson",
    "SCANVAE",
    "VAE",
    "ZeroInflatedNegativeBinomial",
    "log_nb_positive",
    "log_poisson",
    "log_zinb_positive",
]
