# SPDX-License-Identifier: MIT
"""bench/peers/peer_cnf.py: examples/cnf2d.c (examples/models/cnf.c) in PyTorch + torchdiffeq.

A continuous normalising flow (FFJORD) on "8 gaussians": the state (z (B, 2), logp (B, 1)) under
dz/dt = f(z, t), f an MLP on [z, t] (3 -> 64 -> 64 -> 2, tanh, PyTorch's default init), and
d logp/dt = -trace(df/dz) from two vector-Jacobian products taken with create_graph, so the adjoint
differentiates through them. One solve over t = [0, 1] (dopri5, rtol = atol = 1e-5, the adjoint
under the RMS norm, t without gradient as in cnf2d.c: see peer_norms.py) on a fresh batch of 512
points each iteration; loss -mean log p(x) = mean(|z1|^2 / 2 + log 2 pi + logp1); Adam lr 1e-3.
Drawing the batch is outside the timed step, as in cnf2d.c.
"""
import math

import torch
from torch import nn
import torchdiffeq

from peer_norms import adjoint_options
from peer_train import timed_training

LOG_2PI = math.log(2 * math.pi)


class CNFField(nn.Module):
    """(dz/dt, dlogp/dt) = (f(z, t), -trace(df/dz)), counting its evaluations."""

    def __init__(self, dtype):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 64, dtype=dtype), nn.Tanh(),
                                 nn.Linear(64, 64, dtype=dtype), nn.Tanh(),
                                 nn.Linear(64, 2, dtype=dtype))
        self.nfe = 0

    def forward(self, t, state):
        self.nfe += 1
        z = state[0]                                     # (B, 2)
        outer_grad = torch.is_grad_enabled()
        made_leaf = not z.requires_grad                  # the forward solve records nothing
        if made_leaf:
            z = z.detach().requires_grad_(True)
        with torch.enable_grad():
            tb = t.reshape(1, 1).expand(z.shape[0], 1)   # (B, 1)
            dz = self.net(torch.cat([z, tb], 1))         # (B, 2)
            g0 = torch.autograd.grad(dz[:, 0].sum(), z, create_graph=True)[0]  # (B, 2) row 0 of J
            g1 = torch.autograd.grad(dz[:, 1].sum(), z, create_graph=True)[0]  # (B, 2) row 1 of J
            dlogp = -(g0[:, :1] + g1[:, 1:2])            # (B, 1)
        if made_leaf and not outer_grad:
            dz, dlogp = dz.detach(), dlogp.detach()
        return dz, dlogp


def sample_8gaussians(n, gen, dtype):
    """(n, 2): centres 4 * (unit vectors at multiples of 45 degrees), std 0.5, all / 1.414."""
    s = 1.0 / math.sqrt(2.0)
    centres = torch.tensor([[1, 0], [-1, 0], [0, 1], [0, -1], [s, s], [s, -s], [-s, s], [-s, -s]],
                           dtype=dtype)
    pick = torch.randint(0, 8, (n,), generator=gen)
    noise = torch.randn(n, 2, generator=gen, dtype=dtype)
    return (4 * centres[pick] + 0.5 * noise) / 1.414


def run(cfg):
    """cfg: iters, batch, dtype, seed, peer_norm (peer_norms.py).
    Returns per-iteration means (ms, cpu_ms, NFE)."""
    dtype, gen = cfg["dtype"], torch.Generator().manual_seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    field = CNFField(dtype)
    opt = torch.optim.Adam(field.parameters(), lr=1e-3)
    t = torch.tensor([0.0, 1.0], dtype=dtype)
    options = adjoint_options("rms", 2, cfg["peer_norm"])
    def loss_of(x):
        logp0 = torch.zeros(x.shape[0], 1, dtype=dtype)
        zs, logps = torchdiffeq.odeint_adjoint(field, (x, logp0), t, rtol=1e-5, atol=1e-5,
                                               method="dopri5", adjoint_options=options,
                                               adjoint_params=tuple(field.parameters()))
        z1, logp1 = zs[-1], logps[-1]
        return torch.mean(0.5 * torch.sum(z1 * z1, 1, keepdim=True) + LOG_2PI + logp1)

    return timed_training(cfg["iters"], field, opt,
                          lambda: sample_8gaussians(cfg["batch"], gen, dtype), loss_of)
