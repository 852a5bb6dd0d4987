# SPDX-License-Identifier: MIT
"""bench/peers/peer_ncde.py: examples/ncde.c (examples/models/ncde.c, spline.c) in PyTorch +
torchdiffeq, with its own natural cubic spline (no torchcde).

Spirals: 128 series of 100 points at t = linspace(0, 4 pi, 100), channels (t, x, y) with
x = cos(s + t) / (1 + t/2), y = sin(s + t) / (1 + t/2), s ~ U(0, 2 pi), x negated in half of them
(class 1), noise 0.01 on x and y. X is the natural cubic spline through each series' points.
  z0 = Linear(3, 16)(X(0));  dz/dt = g(z) dX/dt(t),  g = tanh(Linear(64, 48)(tanh(Linear(64, 64)(
  tanh(Linear(16, 64)(z)))))) reshaped (B, 16, 3);  logits = Linear(16, 2)(z(4 pi))
Full batch, cross-entropy, Adam lr 1e-3; one solve over [0, 4 pi] (dopri5, rtol 1e-3, atol 1e-6),
gradients by the adjoint under the seminorm (peer_norms.py), t without gradient (ncde.c's
defaults).
"""
import bisect
import math

import torch
from torch import nn
import torchdiffeq

from peer_norms import adjoint_options
from peer_train import timed_training

N_SERIES, N_POINTS, N_CH, HIDDEN, WIDTH = 128, 100, 3, 16, 64
T_END = 4 * math.pi


def spirals(n, gen, dtype):
    """obs (n, 100, 3) and labels (n,) int64, classes interleaved by a shuffle."""
    t = torch.linspace(0.0, T_END, N_POINTS, dtype=dtype)                     # (100,)
    s = 2 * math.pi * torch.rand(n, 1, generator=gen, dtype=dtype)            # (n, 1)
    labels = (torch.arange(n) < n // 2).long()                                 # (n,)
    r = 1 + 0.5 * t
    x = torch.cos(s + t) / r * torch.where(labels.bool(), -1.0, 1.0).to(dtype)[:, None]
    y = torch.sin(s + t) / r
    x = x + 0.01 * torch.randn(n, N_POINTS, generator=gen, dtype=dtype)
    y = y + 0.01 * torch.randn(n, N_POINTS, generator=gen, dtype=dtype)
    obs = torch.stack([t.expand(n, N_POINTS), x, y], 2)                        # (n, 100, 3)
    perm = torch.randperm(n, generator=gen)
    return t, obs[perm], labels[perm]


class NaturalCubicSpline:
    """Per series and channel, the natural cubic spline through (t_j, obs_j); its derivative on
    interval k at u = t - t_k is b_k + (c2_k + d3_k u) u, with c2 the second derivative M_k at
    the left knot and d3 = (M_{k+1} - M_k) / (2 h_k)."""

    def __init__(self, t, obs):                 # t (N,), obs (B, N, C)
        N = t.shape[0]
        h = t[1:] - t[:-1]                      # (N-1,)
        slope = (obs[:, 1:] - obs[:, :-1]) / h[None, :, None]                  # (B, N-1, C)
        # the tridiagonal system for the interior second derivatives M_1 .. M_{N-2}
        m = N - 2
        A = torch.zeros(m, m, dtype=t.dtype)
        idx = torch.arange(m)
        A[idx, idx] = 2 * (h[:-1] + h[1:])
        A[idx[:-1], idx[:-1] + 1] = h[1:-1]
        A[idx[:-1] + 1, idx[:-1]] = h[1:-1]
        rhs = 6 * (slope[:, 1:] - slope[:, :-1])                               # (B, m, C)
        inner = torch.linalg.solve(A, rhs)                                     # (B, m, C)
        zero = torch.zeros_like(inner[:, :1])
        M = torch.cat([zero, inner, zero], 1)                                  # (B, N, C)
        hh = h[None, :, None]
        # per interval k, (K, B, C) each so that one index picks a contiguous (B, C) block
        self.b = (slope - hh * (2 * M[:, :-1] + M[:, 1:]) / 6).transpose(0, 1).contiguous()
        self.c2 = M[:, :-1].transpose(0, 1).contiguous()
        self.d3 = ((M[:, 1:] - M[:, :-1]) / (2 * hh)).transpose(0, 1).contiguous()
        self.knots = t.tolist()
        self.x0 = obs[:, 0]                                                    # (B, C)

    def derivative(self, t):                    # t: a 0-dim tensor -> (B, C)
        k = min(max(bisect.bisect_right(self.knots, float(t)) - 1, 0), len(self.knots) - 2)
        u = t - self.knots[k]
        return self.b[k] + (self.c2[k] + self.d3[k] * u) * u


class CDEField(nn.Module):
    """dz/dt = g(z) dX/dt(t), counting its evaluations."""

    def __init__(self, path, dtype):
        super().__init__()
        self.path = path
        self.g = nn.Sequential(nn.Linear(HIDDEN, WIDTH, dtype=dtype), nn.Tanh(),
                               nn.Linear(WIDTH, WIDTH, dtype=dtype), nn.Tanh(),
                               nn.Linear(WIDTH, HIDDEN * N_CH, dtype=dtype), nn.Tanh())
        self.nfe = 0

    def forward(self, t, z):                    # z (B, 16) -> (B, 16)
        self.nfe += 1
        G = self.g(z).view(z.shape[0], HIDDEN, N_CH)                  # (B, 16, 3)
        dX = self.path.derivative(t).unsqueeze(-1)                    # (B, 3, 1)
        return torch.bmm(G, dX).squeeze(-1)


def run(cfg):
    """cfg: iters, dtype, seed, peer_norm (peer_norms.py).
    Returns per-iteration means (ms, cpu_ms, NFE)."""
    dtype, gen = cfg["dtype"], torch.Generator().manual_seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    t, obs, labels = spirals(N_SERIES, gen, dtype)
    path = NaturalCubicSpline(t, obs)
    initial = nn.Linear(N_CH, HIDDEN, dtype=dtype)
    field = CDEField(path, dtype)
    readout = nn.Linear(HIDDEN, 2, dtype=dtype)
    params = [*initial.parameters(), *field.parameters(), *readout.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    ts = torch.tensor([0.0, T_END], dtype=dtype)
    options = adjoint_options("seminorm", 1, cfg["peer_norm"])
    def loss_of(_):
        z0 = initial(path.x0)                                         # (B, 16)
        zs = torchdiffeq.odeint_adjoint(field, z0, ts, rtol=1e-3, atol=1e-6, method="dopri5",
                                        adjoint_options=options,
                                        adjoint_params=tuple(field.parameters()))
        return nn.functional.cross_entropy(readout(zs[-1]), labels)

    return timed_training(cfg["iters"], field, opt, lambda: None, loss_of)
