# SPDX-License-Identifier: MIT
"""bench/peers/peer_classify.py: examples/mnist.c's conv-net and examples/odenet.c's ODE-Net in
PyTorch (+ torchdiffeq), trained as examples/classify/driver.c trains them.

One epoch over the first `limit` training images of an MNIST-style IDX directory, batch 64 in a
shuffled order (the last batch smaller), pixels in [0, 1] standardised by the mean and deviation
of those images, cross-entropy, Adam lr 2e-3 falling to 0 along a cosine over the run. The timed
span is the epoch (batching and standardising included, as the driver's loader is), so images/s
compares with the driver's images_per_second.
  conv-net  conv 3x3 1->32, relu, maxpool 2, conv 3x3 32->64, relu, maxpool 2, linear 3136->10
  ODE-Net   conv 3x3 1->16, GN(4), relu, conv 4x4/2 16->16, GN, relu, conv 4x4/2 16->16,
            ODE block over [0, 1]: dx/dt = GN(conv 3x3 16->16(relu(GN(conv 3x3 [x, t] 17->16)))),
            GN, relu, avgpool 2 (to 3x3), linear 144->10; dopri5 rtol = atol = 1e-3 both ways,
            the adjoint under the seminorm (t is the 17th channel and needs no gradient;
            peer_norms.py)
"""
import gzip
import os
import struct
import time

import torch
from torch import nn
import torchdiffeq

from peer_norms import adjoint_options

WIDTH = 16


def read_idx(directory, stem, limit):
    """The array of the IDX file directory/stem[.gz] as a uint8 tensor, its first `limit` rows."""
    for name in (stem, stem + ".gz"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rb") as f:
                raw = f.read()
            zero, kind, ndim = struct.unpack(">HBB", raw[:4])
            if zero != 0 or kind != 0x08:
                raise ValueError(f"{path}: not an IDX file of unsigned bytes")
            dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
            rows = min(dims[0], limit) if limit else dims[0]
            per = 1
            for d in dims[1:]:
                per *= d
            start = 4 + 4 * ndim
            data = torch.frombuffer(bytearray(raw[start:start + rows * per]), dtype=torch.uint8)
            return data.reshape(rows, *dims[1:])
    raise FileNotFoundError(f"no {stem}[.gz] in {directory}")


def conv_net(dtype):
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, 1, 1, dtype=dtype), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(32, 64, 3, 1, 1, dtype=dtype), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 10, dtype=dtype))


class ODEFunc(nn.Module):
    """dx/dt for x (B, 16, 7, 7), t as an extra (17th) input channel; counts its evaluations."""

    def __init__(self, dtype):
        super().__init__()
        self.conv1 = nn.Conv2d(WIDTH + 1, WIDTH, 3, 1, 1, dtype=dtype)
        self.norm1 = nn.GroupNorm(4, WIDTH, eps=1e-5, dtype=dtype)
        self.conv2 = nn.Conv2d(WIDTH, WIDTH, 3, 1, 1, dtype=dtype)
        self.norm2 = nn.GroupNorm(4, WIDTH, eps=1e-5, dtype=dtype)
        self.nfe = 0

    def forward(self, t, x):
        self.nfe += 1
        tt = t.to(x.dtype).expand(x.shape[0], 1, x.shape[2], x.shape[3])     # (B, 1, 7, 7)
        h = torch.relu(self.norm1(self.conv1(torch.cat([x, tt], 1))))
        return self.norm2(self.conv2(h))


class ODEBlock(nn.Module):
    def __init__(self, func, rtol, atol, norm, peer_norm):
        super().__init__()
        self.func, self.rtol, self.atol = func, rtol, atol
        self.adjoint_options = adjoint_options(norm, 1, peer_norm)

    def forward(self, x):
        t = torch.tensor([0.0, 1.0], dtype=x.dtype)
        ys = torchdiffeq.odeint_adjoint(self.func, x, t, rtol=self.rtol, atol=self.atol,
                                        method="dopri5", adjoint_options=self.adjoint_options,
                                        adjoint_params=tuple(self.func.parameters()))
        return ys[-1]


def ode_net(dtype, peer_norm, rtol=1e-3, atol=1e-3, norm="seminorm"):
    gn = lambda: nn.GroupNorm(4, WIDTH, eps=1e-5, dtype=dtype)  # noqa: E731
    return nn.Sequential(
        nn.Conv2d(1, WIDTH, 3, 1, 1, dtype=dtype), gn(), nn.ReLU(),
        nn.Conv2d(WIDTH, WIDTH, 4, 2, 1, dtype=dtype), gn(), nn.ReLU(),
        nn.Conv2d(WIDTH, WIDTH, 4, 2, 1, dtype=dtype),
        ODEBlock(ODEFunc(dtype), rtol, atol, norm, peer_norm),
        gn(), nn.ReLU(), nn.AvgPool2d(2, 2), nn.Flatten(), nn.Linear(WIDTH * 9, 10, dtype=dtype))


def run(cfg):
    """cfg: model ('convnet' | 'odenet'), data (dir), limit, batch, dtype, seed, peer_norm.
    Returns images/s, ms per batch, and for the ODE-Net NFE per batch and the time split."""
    dtype, gen = cfg["dtype"], torch.Generator().manual_seed(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    images = read_idx(cfg["data"], "train-images-idx3-ubyte", cfg["limit"])
    labels = read_idx(cfg["data"], "train-labels-idx1-ubyte", cfg["limit"]).long()
    pixels = images.to(torch.float64) / 255
    mean, std = float(pixels.mean()), float(pixels.std(unbiased=False))
    x_all = pixels.to(dtype).unsqueeze(1)                                    # (N, 1, 28, 28)
    model = conv_net(dtype) if cfg["model"] == "convnet" else ode_net(dtype, cfg["peer_norm"])
    func = model[7].func if cfg["model"] == "odenet" else None
    B, N = cfg["batch"], x_all.shape[0]
    steps = (N + B - 1) // B
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=0.0)
    fwd = bwd = 0.0
    nfe_f = nfe_b = 0
    t0, c0 = time.perf_counter(), time.process_time()
    order = torch.randperm(N, generator=gen)
    for s in range(steps):
        idx = order[s * B:(s + 1) * B]
        x = (x_all[idx] - mean) / std
        y = labels[idx]
        ta = time.perf_counter()
        n0 = func.nfe if func else 0
        loss = nn.functional.cross_entropy(model(x), y)
        n1 = func.nfe if func else 0
        tb = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        n2 = func.nfe if func else 0
        fwd += tb - ta
        bwd += time.perf_counter() - tb
        opt.step()
        sched.step()
        nfe_f += n1 - n0
        nfe_b += n2 - n1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {"images_per_second": N / wall, "ms_per_iter": 1e3 * wall / steps,
           "cpu_ms_per_iter": 1e3 * cpu / steps, "final_loss": float(loss),
           "ms_forward_per_iter": 1e3 * fwd / steps, "ms_backward_per_iter": 1e3 * bwd / steps}
    if func:
        out["nfe_forward_per_iter"] = nfe_f / steps
        out["nfe_backward_per_iter"] = nfe_b / steps
    return out
