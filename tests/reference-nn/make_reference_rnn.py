#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# tests/reference-nn/make_reference_rnn.py: writes rnn.json, PyTorch's values for nodal's recurrent
# cells (tests/test_rnn.c): torch.nn.GRUCell and LSTMCell forward outputs for fixed float64
# inputs, parameters and state, and the gradients of L = sum(r * h') (+ sum(r_c * c') for the
# LSTM) with respect to the input, the state and every parameter; and the same for a short
# sequence run through the cells step by step (no mask). Run once with Debian's python3-torch
# (/usr/bin/python3); the tests read the JSON and never need torch. Every entry is a flat list of
# float64 numbers (row-major). Last, a masked sequence from a random h0, with the update of
# Rubanova et al.'s ODE-RNN code: a sample is observed when any channel of its mask is,
# h = m * cell(x, h) + (1 - m) * h.
import json
import os

import torch

torch.manual_seed(20240612)
torch.set_default_dtype(torch.float64)
out = {"torch_version": [float(x) for x in torch.__version__.split("a")[0].split(".")[:2]]}


def put(name, t):
    out[name] = [float(v) for v in t.detach().reshape(-1).tolist()]


B, D, H, T = 3, 4, 5, 4
PARAMS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def cell_case(tag, cell, lstm):
    """One step from a random state; inputs, parameters, outputs and gradients under tag."""
    x = torch.randn(B, D, requires_grad=True)
    h = torch.randn(B, H, requires_grad=True)
    c = torch.randn(B, H, requires_grad=True)
    for p in PARAMS:
        put("%s.%s" % (tag, p), getattr(cell, p))
    put(tag + ".x", x)
    put(tag + ".h", h)
    if lstm:
        put(tag + ".c", c)
        h2, c2 = cell(x, (h, c))
        rc = torch.randn_like(c2)
        put(tag + ".c2", c2)
        put(tag + ".rc", rc)
    else:
        h2 = cell(x, h)
    r = torch.randn_like(h2)
    put(tag + ".h2", h2)
    put(tag + ".r", r)
    loss = (h2 * r).sum() + ((c2 * rc).sum() if lstm else 0)
    loss.backward()
    put(tag + ".dx", x.grad)
    put(tag + ".dh", h.grad)
    if lstm:
        put(tag + ".dc", c.grad)
    for p in PARAMS:
        put("%s.d%s" % (tag, p), getattr(cell, p).grad)
    cell.zero_grad()


def sequence_case(tag, cell, lstm):
    """T steps from the zero state over xs (T, B, D); hs (T, B, H) and d sum(r * hs) / d xs."""
    xs = torch.randn(T, B, D, requires_grad=True)
    h = torch.zeros(B, H)
    c = torch.zeros(B, H)
    hs = []
    for t in range(T):
        if lstm:
            h, c = cell(xs[t], (h, c))
        else:
            h = cell(xs[t], h)
        hs.append(h)
    hs = torch.stack(hs)
    r = torch.randn_like(hs)
    (hs * r).sum().backward()
    put(tag + ".xs", xs)
    put(tag + ".hs", hs)
    put(tag + ".r", r)
    put(tag + ".dxs", xs.grad)
    for p in PARAMS:
        put("%s.d%s" % (tag, p), getattr(cell, p).grad)
    cell.zero_grad()


def masked_case(tag, cell, lstm):
    """T masked steps from h0 (and c0) over xs (T, B, D) with mask (T, B, D)."""
    xs = torch.randn(T, B, D, requires_grad=True)
    h0 = torch.randn(B, H, requires_grad=True)
    c0 = torch.randn(B, H)
    mask = (torch.rand(T, B, D) < 0.4).double()
    mask[1] = 0  # a step with nothing observed
    mask[0, 0] = 0  # steps with some samples observed, others not
    mask[0, 1, 1] = 1
    mask[3, 2] = 0
    mask[3, 0, 2] = 1
    mask[2, :, 0] = 1  # a step with every sample observed
    h, c, hs = h0, c0, []
    for t in range(T):
        m = (mask[t].sum(-1, keepdim=True) > 0).double()  # (B, 1)
        if lstm:
            h2, c2 = cell(xs[t], (h, c))
            c = m * c2 + (1 - m) * c
        else:
            h2 = cell(xs[t], h)
        h = m * h2 + (1 - m) * h
        hs.append(h)
    hs = torch.stack(hs)
    r = torch.randn_like(hs)
    (hs * r).sum().backward()
    for name, v in (("xs", xs), ("h0", h0), ("c0", c0), ("mask", mask), ("hs", hs), ("r", r),
                    ("dxs", xs.grad), ("dh0", h0.grad)):
        put("%s.%s" % (tag, name), v)
    for p in PARAMS:
        put("%s.d%s" % (tag, p), getattr(cell, p).grad)
    cell.zero_grad()


gru = torch.nn.GRUCell(D, H)
lstm = torch.nn.LSTMCell(D, H)
cell_case("gru", gru, False)
cell_case("lstm", lstm, True)
sequence_case("gru_seq", gru, False)
sequence_case("lstm_seq", lstm, True)
masked_case("gru_mseq", gru, False)
masked_case("lstm_mseq", lstm, True)

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rnn.json")
with open(path, "w") as f:
    f.write("{\n")
    f.write(",\n".join('"%s": %s' % (k, json.dumps(v)) for k, v in out.items()))
    f.write("\n}\n")
print("wrote", path, len(out), "entries")
