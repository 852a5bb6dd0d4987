#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# tests/reference-nn/make_reference.py: writes nn.json, PyTorch's values for nodal's nn tests:
# several optimizer steps on fixed parameters and gradient sequences, gradient clipping, LR
# schedules, and forward / backward values of Conv2d, pooling, GroupNorm, BatchNorm (train and
# eval) and cross-entropy. Run once with Debian's python3-torch (/usr/bin/python3); the tests read
# the JSON and never need torch. Every entry is a flat list of float64 numbers (row-major).
import json
import math
import os

import torch

torch.manual_seed(20240601)
torch.set_default_dtype(torch.float64)
out = {"torch_version": [float(x) for x in torch.__version__.split("a")[0].split(".")[:2]]}


def put(name, t):
    if isinstance(t, torch.Tensor):
        out[name] = [float(v) for v in t.detach().reshape(-1).tolist()]
    elif isinstance(t, (list, tuple)):
        out[name] = [float(v) for v in t]
    else:
        out[name] = [float(t)]


# --- optimizers -------------------------------------------------------------------------------
# Two parameters, shapes (2, 3) and (3,); STEPS gradients per parameter with changing signs and
# magnitudes (so momentum, amsgrad's maximum and centering all matter).
STEPS = 5
p0 = [torch.randn(2, 3), torch.randn(3)]
grads = [[torch.randn(2, 3) * (1 + k), torch.randn(3) * (0.5 + 0.3 * k)] for k in range(STEPS)]
put("optim.p0", torch.cat([p.reshape(-1) for p in p0]))
put("optim.grads", torch.cat([g.reshape(-1) for gs in grads for g in gs]))

configs = {
    "sgd": (torch.optim.SGD, dict(lr=0.1)),
    "sgd_momentum": (torch.optim.SGD, dict(lr=0.1, momentum=0.9)),
    "sgd_dampening_wd": (torch.optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.5,
                                               weight_decay=0.01)),
    "sgd_nesterov": (torch.optim.SGD, dict(lr=0.05, momentum=0.8, nesterov=True,
                                           weight_decay=0.1)),
    "adam_default": (torch.optim.Adam, dict()),
    "adam_wd": (torch.optim.Adam, dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    "adam_amsgrad": (torch.optim.Adam, dict(lr=0.01, amsgrad=True)),
    "adamw_default": (torch.optim.AdamW, dict()),
    "adamw": (torch.optim.AdamW, dict(lr=0.01, weight_decay=0.1)),
    "adamw_amsgrad": (torch.optim.AdamW, dict(lr=0.02, amsgrad=True)),
    "rmsprop_default": (torch.optim.RMSprop, dict()),
    "rmsprop_centered": (torch.optim.RMSprop, dict(lr=0.01, centered=True)),
    "rmsprop_momentum_wd": (torch.optim.RMSprop, dict(lr=0.01, alpha=0.9, momentum=0.9,
                                                      weight_decay=0.1)),
    "rmsprop_centered_momentum": (torch.optim.RMSprop, dict(lr=0.005, momentum=0.5,
                                                            centered=True, eps=1e-4)),
}
for name, (cls, kw) in configs.items():
    params = [p.clone().requires_grad_(True) for p in p0]
    opt = cls(params, **kw)
    after = []
    for k in range(STEPS):
        for p, g in zip(params, grads[k]):
            p.grad = g.clone()
        opt.step()
        after.append(torch.cat([p.detach().reshape(-1) for p in params]))
    put("optim." + name, torch.cat(after))

# --- clipping and schedules --------------------------------------------------------------------
for max_norm in (1.0, 100.0):
    params = [p.clone().requires_grad_(True) for p in p0]
    for p, g in zip(params, grads[2]):
        p.grad = g.clone()
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    tag = "clip.%g" % max_norm
    put(tag + ".norm", norm)
    put(tag + ".grads", torch.cat([p.grad.reshape(-1) for p in params]))


def schedule(make, epochs):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    sched = make(opt)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


put("lr.step", schedule(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5), 10))
put("lr.cosine", schedule(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10,
                                                                               eta_min=0.001), 11))

# --- layers: forward values and the gradients of L = sum(r * y) for a fixed random r -----------
F = torch.nn.functional


def layer(name, fn, inputs):
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    y = fn(*leaves)
    r = torch.randn_like(y)
    (y * r).sum().backward()
    for i, t in enumerate(leaves):
        put("%s.in%d" % (name, i), t)
        put("%s.grad%d" % (name, i), t.grad)
    put(name + ".r", r)
    put(name + ".y", y)


layer("conv_s2p1", lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
      [torch.randn(2, 3, 5, 6), torch.randn(4, 3, 3, 3), torch.randn(4)])
layer("conv_s1p0", lambda x, w, b: F.conv2d(x, w, b, stride=1, padding=0),
      [torch.randn(1, 2, 4, 5), torch.randn(3, 2, 2, 3), torch.randn(3)])
layer("maxpool_k3s2", lambda x: F.max_pool2d(x, 3, 2), [torch.randn(2, 2, 5, 6)])
layer("avgpool_k2s2", lambda x: F.avg_pool2d(x, 2, 2), [torch.randn(2, 3, 4, 5)])
layer("gap", lambda x: F.adaptive_avg_pool2d(x, 1), [torch.randn(2, 3, 3, 4)])
layer("groupnorm", lambda x, w, b: F.group_norm(x, 2, w, b, eps=1e-5),
      [torch.randn(2, 4, 3, 3), torch.randn(4), torch.randn(4)])

# BatchNorm2d: two training steps (running statistics), then evaluation on a third input.
bn = torch.nn.BatchNorm2d(3)
with torch.no_grad():
    bn.weight.copy_(torch.randn(3))
    bn.bias.copy_(torch.randn(3))
put("bn2d.weight", bn.weight)
put("bn2d.bias", bn.bias)
for step in range(2):
    x = torch.randn(4, 3, 2, 3).requires_grad_(True)
    bn.zero_grad()
    y = bn(x)
    r = torch.randn_like(y)
    (y * r).sum().backward()
    tag = "bn2d.train%d" % step
    put(tag + ".x", x)
    put(tag + ".r", r)
    put(tag + ".y", y)
    put(tag + ".dx", x.grad)
    put(tag + ".dweight", bn.weight.grad)
    put(tag + ".dbias", bn.bias.grad)
    put(tag + ".running_mean", bn.running_mean)
    put(tag + ".running_var", bn.running_var)
bn.eval()
x = torch.randn(2, 3, 2, 3).requires_grad_(True)
y = bn(x)
r = torch.randn_like(y)
(y * r).sum().backward()
put("bn2d.eval.x", x)
put("bn2d.eval.r", r)
put("bn2d.eval.y", y)
put("bn2d.eval.dx", x.grad)

bn1 = torch.nn.BatchNorm1d(3, momentum=0.2, eps=1e-3)
x = torch.randn(5, 3).requires_grad_(True)
y = bn1(x)
r = torch.randn_like(y)
(y * r).sum().backward()
put("bn1d.x", x)
put("bn1d.r", r)
put("bn1d.y", y)
put("bn1d.dx", x.grad)
put("bn1d.running_mean", bn1.running_mean)
put("bn1d.running_var", bn1.running_var)

logits = (torch.randn(5, 4) * 3).requires_grad_(True)
labels = torch.tensor([2, 0, 3, 3, 1])
put("ce.logits", logits)
put("ce.labels", labels.double())
for red in ("mean", "sum"):
    logits.grad = None
    loss = F.cross_entropy(logits, labels, reduction=red)
    loss.backward()
    put("ce.%s.loss" % red, loss)
    put("ce.%s.dlogits" % red, logits.grad)

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nn.json")
with open(path, "w") as f:
    f.write("{\n")
    f.write(",\n".join('"%s": %s' % (k, json.dumps(v)) for k, v in out.items()))
    f.write("\n}\n")
print("wrote", path, len(out), "entries")
