# SPDX-License-Identifier: MIT
"""bench/peers/peer_train.py: the timed training loop the ODE peers share (spiral, CNF, neural CDE).

Each iteration draws its batch off the clock, then times the forward solve and loss, the backward
pass and the optimizer step, and tells forward from backward evaluations by the field's counter."""
import time


def timed_training(iters, field, opt, make_batch, loss_of):
    """make_batch() -> batch (not timed); loss_of(batch) -> scalar loss (the forward solve).
    Returns per-iteration means: ms, cpu_ms, NFE forward and backward, and the last loss."""
    wall = cpu = 0.0
    nfe_f = nfe_b = 0
    loss = float("nan")
    for _ in range(iters):
        batch = make_batch()
        t0, c0 = time.perf_counter(), time.process_time()
        n0 = field.nfe
        loss = loss_of(batch)
        n1 = field.nfe
        opt.zero_grad()
        loss.backward()
        n2 = field.nfe
        opt.step()
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        nfe_f += n1 - n0
        nfe_b += n2 - n1
    n = max(iters, 1)
    return {"ms_per_iter": 1e3 * wall / n, "cpu_ms_per_iter": 1e3 * cpu / n,
            "nfe_forward_per_iter": nfe_f / n, "nfe_backward_per_iter": nfe_b / n,
            "final_loss": float(loss)}
