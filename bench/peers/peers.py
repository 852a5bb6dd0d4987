#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/peers/peers.py: nodal against PyTorch + torchdiffeq, side by side on one machine.

For each workload (workloads.py) it runs nodal's own program (its --json summary) and a PyTorch
model written to mirror it (peer_*.py), alternating the two for --rounds rounds (the order flips
every round, so load drift hits both alike), with one thread each (NODAL_NUM_THREADS, OMP_NUM_THREADS,
OPENBLAS_NUM_THREADS, torch.set_num_threads) and optionally two. It prints one JSON line per
workload, thread count and real type: both sides' medians over the rounds of the time per
iteration (or per batch), the function evaluations, the time per evaluation, and nodal's speed-up
(the peer's time over nodal's: above 1 means nodal is faster), with the machine it ran on.
Progress goes to stderr. Where torch or torchdiffeq cannot be imported it says so and exits 0.

  python3 bench/peers/peers.py [--quick | --full] [--workloads a,b] [--threads 1,2]
      [--build DIR] [--float-build DIR] [--torchdiffeq DIR] [--data DIR] [--rounds N]

See bench/peers/README.md. Optional: never part of the build, the tests or CI.
"""
import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
THREAD_VARS = ("NODAL_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def parse_args(argv):
    from workloads import WORKLOADS
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="short runs, seconds per workload (the default)")
    mode.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="longer runs, up to about a minute per workload and side")
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help="comma-separated, from: " + ", ".join(WORKLOADS) + " [all]")
    p.add_argument("--threads", default="1", help="comma-separated thread counts [1]")
    p.add_argument("--rounds", type=int, default=None,
                   help="alternations of nodal and the peer [2 quick, 3 full]")
    p.add_argument("--build", default=os.path.join(REPO, "build"),
                   help="nodal's build directory (double) [<repo>/build]")
    p.add_argument("--float-build", default=None,
                   help="a build directory configured with -Dreal=float: also runs the "
                        "workloads that have a float32 case (odenet, convnet) in float32")
    p.add_argument("--torchdiffeq", default=os.environ.get("NODAL_PEERS_TORCHDIFFEQ"),
                   help="a torchdiffeq checkout to import from (the directory holding the "
                        "torchdiffeq package) [$NODAL_PEERS_TORCHDIFFEQ, else the installed one]")
    p.add_argument("--peer-norm", choices=("nodal", "torchdiffeq"), default="nodal",
                   help="the peers' adjoint norm: nodal's (the same algorithm on both sides) or "
                        "torchdiffeq's own, which keeps the time adjoint (peer_norms.py) [nodal]")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist",
                   help="MNIST-style IDX directory for odenet and convnet "
                        "[/usr/share/datasets/fashion-mnist]")
    a = p.parse_args(argv)
    a.mode = a.mode or "quick"
    a.rounds = a.rounds or (2 if a.mode == "quick" else 3)
    a.workloads = [w for w in a.workloads.split(",") if w]
    for w in a.workloads:
        if w not in WORKLOADS:
            p.error(f"--workloads: unknown workload {w!r} (known: {', '.join(WORKLOADS)})")
    try:
        a.threads = [int(t) for t in a.threads.split(",")]
        if any(t < 1 for t in a.threads):
            raise ValueError
    except ValueError:
        p.error(f"--threads: {a.threads!r} is not a list of positive integers")
    if a.rounds < 1:
        p.error("--rounds must be at least 1")
    return a


def stub_scipy():
    """torchdiffeq imports scipy.integrate.solve_ivp at import time for its 'scipy_solver' method
    only, which no workload uses: without scipy, a stand-in that refuses to be called."""
    import types

    def solve_ivp(*args, **kwargs):
        raise RuntimeError("scipy is not installed: torchdiffeq's scipy_solver is unavailable")

    scipy, integrate = types.ModuleType("scipy"), types.ModuleType("scipy.integrate")
    integrate.solve_ivp, scipy.integrate = solve_ivp, integrate
    sys.modules.setdefault("scipy", scipy)
    sys.modules.setdefault("scipy.integrate", integrate)
    print("peers: scipy is not installed; torchdiffeq's scipy_solver (unused here) is stubbed",
          file=sys.stderr)


def import_peers(td_dir):
    """torch and torchdiffeq, or (None, reason). One thread unless told otherwise later."""
    for v in THREAD_VARS:
        os.environ[v] = "1"
    if td_dir:
        if not os.path.isdir(os.path.join(td_dir, "torchdiffeq")):
            return None, None, f"--torchdiffeq {td_dir}: no torchdiffeq package in it"
        sys.path.insert(0, os.path.abspath(td_dir))
    try:
        import torch
    except ImportError as e:
        return None, None, f"PyTorch is not importable ({e}); install python3-torch"
    try:
        try:
            import torchdiffeq
        except ImportError as e:
            if e.name not in ("scipy", "scipy.integrate"):
                raise
            stub_scipy()
            import torchdiffeq
    except ImportError as e:
        return None, None, (f"torchdiffeq is not importable ({e}); point --torchdiffeq or "
                            "NODAL_PEERS_TORCHDIFFEQ at a checkout (see bench/peers/README.md)")
    torch.set_num_interop_threads(1)
    return torch, torchdiffeq, None


# ------------------------------------------------------------------------------------------------
# one side of one round

def run_nodal(build, w, size, opts, threads):
    """Runs the nodal program; its --json summary normalised to per-iteration figures."""
    prog = os.path.join(build, w["program"])
    env = dict(os.environ, **{v: str(threads) for v in THREAD_VARS})
    if w.get("nodal_threads"):  # nodal's own threads share the images: OpenBLAS's would oversubscribe
        env["OPENBLAS_NUM_THREADS"] = "1"
    cmd = [prog] + w["args"](size, opts) + ["--json"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        tail = r.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {' | '.join(tail)}")
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    s = json.loads(lines[-1])
    if "images_per_second" in s:  # the classify driver: per batch
        steps = -(-s["n_train"] // s["batch"])
        out = {"images_per_second": s["images_per_second"],
               "ms_per_iter": 1e3 * s["seconds_per_epoch"] / steps}
        if "cpu_seconds_per_epoch" in s:  # the process's CPU time (all its threads)
            out["cpu_ms_per_iter"] = 1e3 * s["cpu_seconds_per_epoch"] / steps
        if "nfe_forward_per_batch" in s:
            out["nfe_forward_per_iter"] = s["nfe_forward_per_batch"]
            out["nfe_backward_per_iter"] = s["nfe_backward_per_batch"]
    else:
        out = {k: s[k] for k in ("ms_per_iter", "cpu_ms_per_iter", "nfe_forward_per_iter",
                                 "nfe_backward_per_iter") if k in s}
    out["real"] = s.get("real")
    return out


def run_peer(torch, w, size, opts, threads, real):
    module, make_cfg = w["peer"]
    cfg = make_cfg(size, opts)
    cfg.update(dtype=torch.float32 if real == "float" else torch.float64, seed=0,
               peer_norm=opts.peer_norm)
    torch.set_num_threads(threads)
    return importlib.import_module(module).run(cfg)


# ------------------------------------------------------------------------------------------------
# the summary line

def per_eval_us(side):
    """Microseconds per function evaluation (forward and backward counted alike), or None."""
    nfe = side.get("nfe_forward_per_iter", 0) + side.get("nfe_backward_per_iter", 0)
    return 1e3 * side["ms_per_iter"] / nfe if nfe else None


def summarise(rounds):
    """Medians over the rounds of every numeric key, plus the per-round times."""
    keys = set().union(*(r.keys() for r in rounds))
    out = {}
    for k in sorted(keys):
        vals = [r[k] for r in rounds if isinstance(r.get(k), (int, float))]
        if vals:
            out[k] = round(statistics.median(vals), 6)
    per = [per_eval_us(r) for r in rounds]
    if all(v is not None for v in per):
        out["us_per_eval"] = round(statistics.median(per), 4)
    out["ms_per_iter_rounds"] = [round(r["ms_per_iter"], 4) for r in rounds]
    return out


def ratio(a, b):
    return round(a / b, 3) if a and b else None


def report(name, w, real, threads, opts, size, nodal, peer, machine, load):
    line = {"workload": name, "what": w["what"], "real": real, "threads": threads,
            "mode": opts.mode, "peer_norm": opts.peer_norm, "size": size, "unit": w["unit"],
            "rounds": opts.rounds,
            "nodal": nodal, "peer": peer,
            "speedup_per_iter": ratio(peer["ms_per_iter"], nodal["ms_per_iter"]),
            "speedup_per_eval": ratio(peer.get("us_per_eval"), nodal.get("us_per_eval")),
            "speedup_cpu_per_iter": ratio(peer.get("cpu_ms_per_iter"),
                                          nodal.get("cpu_ms_per_iter")),
            "load_avg": load, "machine": machine}
    if "images_per_second" in nodal:
        line["speedup_images_per_second"] = ratio(nodal["images_per_second"],
                                                  peer["images_per_second"])
    if peer.get("nfe_forward_per_iter"):  # the peer's time split per evaluation, forward / backward
        if "ms_forward_per_iter" in peer:
            peer["us_forward_per_nfe"] = round(
                1e3 * peer["ms_forward_per_iter"] / peer["nfe_forward_per_iter"], 3)
        if "ms_backward_per_iter" in peer and peer.get("nfe_backward_per_iter"):
            peer["us_backward_per_nfe"] = round(
                1e3 * peer["ms_backward_per_iter"] / peer["nfe_backward_per_iter"], 3)
    print(json.dumps(line), flush=True)


def skip_line(name, real, threads, reason):
    print(json.dumps({"workload": name, "real": real, "threads": threads, "skipped": reason}),
          flush=True)
    print(f"peers: {name} ({real}, {threads} thread(s)) skipped: {reason}", file=sys.stderr)


# ------------------------------------------------------------------------------------------------

def bench_one(torch, name, w, real, build, threads, opts, machine):
    size = w["size"][opts.mode]
    prog = os.path.join(build, w["program"])
    if not os.access(prog, os.X_OK):
        return skip_line(name, real, threads, f"{prog} not built")
    if name in ("odenet", "convnet") and not os.path.isdir(opts.data):
        return skip_line(name, real, threads, f"no data directory {opts.data} (--data)")
    nodal_rounds, peer_rounds = [], []
    load0 = os.getloadavg()[0]
    for r in range(opts.rounds):
        for side in (("nodal", "peer") if r % 2 == 0 else ("peer", "nodal")):
            t0 = time.perf_counter()
            try:
                if side == "nodal":
                    res = run_nodal(build, w, size, opts, threads)
                    if res.get("real") != real:
                        return skip_line(name, real, threads,
                                         f"{build} is a {res.get('real')} build, not {real}")
                    nodal_rounds.append(res)
                else:
                    peer_rounds.append(run_peer(torch, w, size, opts, threads, real))
            except Exception as e:  # a failing side skips the workload, the others still run
                return skip_line(name, real, threads, f"{side}: {type(e).__name__}: {e}")
            print(f"peers: {name} {real} {threads}t round {r + 1}/{opts.rounds} {side}: "
                  f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    load = [round(load0, 2), round(os.getloadavg()[0], 2)]
    report(name, w, real, threads, opts, size, summarise(nodal_rounds), summarise(peer_rounds),
           machine, load)


def main(argv):
    sys.dont_write_bytecode = True  # no __pycache__ in the source tree
    sys.path.insert(0, HERE)
    opts = parse_args(argv)
    torch, torchdiffeq, why = import_peers(opts.torchdiffeq)
    if torch is None:
        print(f"peers: skipped: {why}", file=sys.stderr)
        return 0
    from machine import describe
    from workloads import WORKLOADS
    machine = describe(torch, torchdiffeq, REPO)
    builds = {"double": opts.build}
    if opts.float_build:
        builds["float"] = opts.float_build
    for name in opts.workloads:
        w = WORKLOADS[name]
        for real, build in builds.items():
            if real not in w["reals"]:
                continue
            for threads in opts.threads:
                bench_one(torch, name, w, real, build, threads, opts, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
