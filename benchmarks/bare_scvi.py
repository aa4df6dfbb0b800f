"""The floor of the speed benchmark: scVI's default network in a bare PyTorch loop.

Nothing here imports snakevi or scvi-tools. The network is scvi-tools' default ``VAE`` written
out by hand (n_hidden 128, n_latent 10, one hidden layer, ZINB likelihood, gene dispersion,
observed library size, batch one-hot injected into the decoder, BatchNorm with momentum 0.01
and eps 0.001, dropout 0.1 in the encoder), and the loop does only what training needs: the
counts are densified once into one tensor before the first epoch, each step indexes a
minibatch, runs forward/backward/Adam, and the epoch's ELBO terms are summed on the device and
read back once per epoch. No callbacks, no checkpoints, no metric bookkeeping beyond that.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn


def _hidden(n_in: int, n_hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, n_hidden),
        nn.BatchNorm1d(n_hidden, momentum=0.01, eps=0.001),
        nn.ReLU(),
        nn.Dropout(p=dropout),
    )


class BareSCVI(nn.Module):
    """scVI's default VAE (encoder q(z|x), decoder p(x|z, batch) with ZINB)."""

    def __init__(self, n_genes: int, n_batch: int, n_hidden: int = 128, n_latent: int = 10,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.n_batch = n_batch
        self.px_r = nn.Parameter(torch.randn(n_genes))
        self.encoder = _hidden(n_genes, n_hidden, dropout)
        self.z_mean = nn.Linear(n_hidden, n_latent)
        self.z_var = nn.Linear(n_hidden, n_latent)
        self.decoder = _hidden(n_latent + n_batch, n_hidden, 0.0)
        self.px_scale = nn.Linear(n_hidden, n_genes)
        self.px_dropout = nn.Linear(n_hidden, n_genes)

    def forward(self, x: torch.Tensor, batch: torch.Tensor, kl_weight: float):
        """Per-cell reconstruction loss and KL(q(z|x) || N(0, I)), and the loss to minimise."""
        library = torch.log(x.sum(1, keepdim=True))
        h = self.encoder(torch.log1p(x))
        q_m = self.z_mean(h)
        q_v = torch.exp(self.z_var(h)) + 1e-4
        q_s = q_v.sqrt()
        z = q_m + q_s * torch.randn_like(q_m)
        onehot = F.one_hot(batch.squeeze(1), self.n_batch).to(z.dtype)
        hd = self.decoder(torch.cat([z, onehot], dim=1))
        mu = torch.softmax(self.px_scale(hd), dim=-1) * torch.exp(library)
        pi = self.px_dropout(hd)
        theta = torch.exp(self.px_r)
        rec = -_log_zinb(x, mu, theta, pi).sum(-1)
        kl = (0.5 * (q_v + q_m**2 - 1.0) - torch.log(q_s)).sum(-1)
        return rec, kl, torch.mean(rec + kl_weight * kl)


def _log_zinb(x, mu, theta, pi, eps: float = 1e-8):
    """Zero-inflated NB log-likelihood with logits ``pi`` (the standard scVI formula)."""
    softplus_pi = F.softplus(-pi)
    log_theta_eps = torch.log(theta + eps)
    log_theta_mu_eps = torch.log(theta + mu + eps)
    pi_theta_log = -pi + theta * (log_theta_eps - log_theta_mu_eps)
    case_zero = F.softplus(pi_theta_log) - softplus_pi
    case_non_zero = (
        -softplus_pi
        + pi_theta_log
        + x * (torch.log(mu + eps) - log_theta_mu_eps)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
    )
    return (x < eps).to(x.dtype) * case_zero + (x > eps).to(x.dtype) * case_non_zero


def train_bare(X: torch.Tensor, batch: torch.Tensor, train_idx: torch.Tensor, val_idx: torch.Tensor,
               *, epochs: int, batch_size: int, seed: int, n_epochs_kl_warmup: int = 400,
               device: str = "cpu", fused: bool = True) -> dict:
    """Train :class:`BareSCVI` and return per-epoch wall times and the last epoch's elbo_validation.

    ``X`` is the dense float32 count matrix (all cells), ``batch`` the int64 ``(n, 1)`` batch codes.
    """
    torch.manual_seed(seed)
    n_batch = int(batch.max()) + 1
    model = BareSCVI(X.shape[1], n_batch).to(device)
    X, batch = X.to(device), batch.to(device)
    # torch's fused Adam kernel, as snakevi uses: the ratio to this loop then measures everything
    # but the arithmetic (with torch's default per-tensor Adam this loop is ~15% slower on CPU).
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=0.01, weight_decay=1e-6, fused=fused)
    generator = torch.Generator().manual_seed(seed)
    epoch_times, elbo_validation = [], float("nan")
    for epoch in range(epochs):
        t0 = time.perf_counter()
        kl_weight = min(1.0, epoch / n_epochs_kl_warmup)
        model.train()
        order = train_idx[torch.randperm(train_idx.numel(), generator=generator)].to(device)
        for start in range(0, order.numel(), batch_size):
            rows = order[start:start + batch_size]
            _, _, loss = model(X[rows], batch[rows], kl_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        total = torch.zeros((), dtype=torch.float64, device=device)
        with torch.no_grad():
            for start in range(0, val_idx.numel(), batch_size):
                rows = val_idx[start:start + batch_size].to(device)
                rec, kl, _ = model(X[rows], batch[rows], kl_weight)
                total += (rec + kl).sum().double()
        elbo_validation = float(total) / val_idx.numel()  # one read-back per epoch
        epoch_times.append(time.perf_counter() - t0)
    return {"epoch_times": epoch_times, "elbo_validation": elbo_validation}
