# SPDX-License-Identifier: MIT
"""bench/peers/peer_spiral.py: examples/spiral.c in PyTorch + torchdiffeq (torchdiffeq's ode_demo).

The true system dy/dt = y^3 A, A = [[-0.1, 2], [-2, -0.1]], from y0 = [2, 0] on 1000 points of
[0, 25]; batches of 20 windows of 10 points; the model Linear(2, 50) - tanh - Linear(50, 2) on y^3,
weights N(0, 0.1), biases 0; L1 loss, RMSprop lr 1e-3 (alpha 0.99, eps 1e-8); dopri5 at rtol 1e-7,
atol 1e-9 for both solves; gradients by backprop through the solver or by the adjoint (with the
seminorm when asked; peer_norms.py). Times one training step per iteration (drawing the batch
excluded, as spiral.c does), and counts the evaluations of f in the forward solve and in the
backward pass.
"""

import torch
from torch import nn
import torchdiffeq

from peer_norms import adjoint_options
from peer_train import timed_training

DATA_SIZE, BATCH_TIME, BATCH_SIZE = 1000, 10, 20


class SpiralField(nn.Module):
    """dy/dt = Linear(50, 2)(tanh(Linear(2, 50)(y^3))), counting its evaluations."""

    def __init__(self, dtype):
        super().__init__()
        self.inner = nn.Linear(2, 50, dtype=dtype)
        self.outer = nn.Linear(50, 2, dtype=dtype)
        for layer in (self.inner, self.outer):
            nn.init.normal_(layer.weight, mean=0.0, std=0.1)
            nn.init.zeros_(layer.bias)
        self.nfe = 0

    def forward(self, t, y):  # y (B, 2) -> (B, 2)
        self.nfe += 1
        return self.outer(torch.tanh(self.inner(y ** 3)))


def true_trajectory(dtype):
    """t (1000,) and the true y (1000, 2) from dopri5 at rtol 1e-7 / atol 1e-9."""
    t = torch.linspace(0.0, 25.0, DATA_SIZE, dtype=dtype)
    A = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=dtype)
    y0 = torch.tensor([[2.0, 0.0]], dtype=dtype)
    with torch.no_grad():
        ys = torchdiffeq.odeint(lambda _t, y: (y ** 3) @ A, y0, t, rtol=1e-7, atol=1e-9,
                                method="dopri5")
    return t, ys[:, 0, :]


def run(cfg):
    """cfg: iters, adjoint (bool), norm ('rms' | 'seminorm'), dtype, seed, peer_norm.
    Returns per-iteration means: ms (wall), cpu_ms, nfe_forward, nfe_backward."""
    dtype, gen = cfg["dtype"], torch.Generator().manual_seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    t, true_y = true_trajectory(dtype)
    batch_t = t[:BATCH_TIME]
    field = SpiralField(dtype)
    opt = torch.optim.RMSprop(field.parameters(), lr=1e-3, alpha=0.99, eps=1e-8)
    tol = dict(rtol=1e-7, atol=1e-9, method="dopri5")
    if cfg["adjoint"]:
        tol["adjoint_options"] = adjoint_options(cfg["norm"], 1, cfg["peer_norm"])
    solve = torchdiffeq.odeint_adjoint if cfg["adjoint"] else torchdiffeq.odeint
    def make_batch():
        starts = torch.randperm(DATA_SIZE - BATCH_TIME, generator=gen)[:BATCH_SIZE]
        batch_y0 = true_y[starts]                                                   # (20, 2)
        batch_y = torch.stack([true_y[starts + i] for i in range(BATCH_TIME)], 0)  # (10, 20, 2)
        return batch_y0, batch_y

    def loss_of(batch):
        batch_y0, batch_y = batch
        pred = solve(field, batch_y0, batch_t, **tol)                               # (10, 20, 2)
        return torch.mean(torch.abs(pred - batch_y))

    return timed_training(cfg["iters"], field, opt, make_batch, loss_of)
