# SPDX-License-Identifier: MIT
"""bench/peers/workloads.py: the workloads, each as a nodal program with its flags and the PyTorch
peer that mirrors it, and the sizes of the --quick and --full modes.

A workload is a dict:
  program   the nodal program, relative to the build directory
  args      its flags for a mode (a function of the mode's size and the options)
  size      {"quick": n, "full": n}: iterations, or training images for the classifiers
  peer      (module name, function of the size and options giving the peer's cfg)
  unit      what one "iteration" is ("iteration" or "batch")
  reals     the nodal builds it runs on: "double" (--build) and, when given, "float" (--float-build)
"""

CLASSIFY_BATCH = 64


def _iters(n):
    return ["--iters", str(n)]


WORKLOADS = {
    "spiral_adjoint": {
        "program": "examples/spiral",
        "args": lambda n, o: _iters(n) + ["--adjoint", "--norm", "seminorm", "--seed", "0"],
        "size": {"quick": 20, "full": 200},
        "peer": ("peer_spiral", lambda n, o: {"iters": n, "adjoint": True, "norm": "seminorm"}),
        "unit": "iteration",
        "reals": ("double",),
        "what": "spiral, adjoint + seminorm, batch 20 x 10, dopri5 1e-7/1e-9",
    },
    "spiral_backprop": {
        "program": "examples/spiral",
        "args": lambda n, o: _iters(n) + ["--seed", "0"],
        "size": {"quick": 40, "full": 400},
        "peer": ("peer_spiral", lambda n, o: {"iters": n, "adjoint": False, "norm": "rms"}),
        "unit": "iteration",
        "reals": ("double",),
        "what": "spiral, backprop through the solver, batch 20 x 10, dopri5 1e-7/1e-9",
    },
    "odenet": {
        "program": "examples/odenet",
        "args": lambda n, o: ["--epochs", "1", "--limit", str(n), "--batch", str(CLASSIFY_BATCH),
                              "--norm", "seminorm", "--data", o.data],
        "size": {"quick": 256, "full": 2048},
        "peer": ("peer_classify", lambda n, o: {"model": "odenet", "limit": n, "data": o.data,
                                                "batch": CLASSIFY_BATCH}),
        "unit": "batch",
        "reals": ("double", "float"),
        "nodal_threads": True,  # conv and group norm share images: OpenBLAS at 1 thread
        "what": "ODE-Net of examples/odenet.c, batch 64, dopri5 1e-3/1e-3, adjoint + seminorm, "
                "one epoch of the first N training images",
    },
    "convnet": {
        "program": "examples/mnist",
        "args": lambda n, o: ["--epochs", "1", "--limit", str(n), "--batch", str(CLASSIFY_BATCH),
                              "--data", o.data],
        "size": {"quick": 1024, "full": 8192},
        "peer": ("peer_classify", lambda n, o: {"model": "convnet", "limit": n, "data": o.data,
                                                "batch": CLASSIFY_BATCH}),
        "unit": "batch",
        "reals": ("double", "float"),
        "nodal_threads": True,  # conv and group norm share images: OpenBLAS at 1 thread
        "what": "conv-net of examples/mnist.c, batch 64, one epoch of the first N training images",
    },
    "cnf": {
        "program": "examples/cnf2d",
        "args": lambda n, o: _iters(n) + ["--batch", "512", "--print-every", "1000000"],
        "size": {"quick": 3, "full": 30},
        "peer": ("peer_cnf", lambda n, o: {"iters": n, "batch": 512}),
        "unit": "iteration",
        "reals": ("double",),
        "what": "CNF of examples/cnf2d.c on 8 gaussians, batch 512, dopri5 1e-5/1e-5, adjoint "
                "(rms), exact trace by two VJPs under create_graph",
    },
    "ncde": {
        "program": "examples/ncde",
        "args": lambda n, o: _iters(n) + ["--print-every", "1000000"],
        "size": {"quick": 2, "full": 20},
        "peer": ("peer_ncde", lambda n, o: {"iters": n}),
        "unit": "iteration",
        "reals": ("double",),
        "what": "neural CDE of examples/ncde.c, 128 spirals, natural cubic spline, dopri5 "
                "1e-3/1e-6, adjoint + seminorm, full batch",
    },
}
