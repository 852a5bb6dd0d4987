# SPDX-License-Identifier: MIT
"""bench/peers/peer_norms.py: the adjoint's error norm of the peers, chosen to match nodal's.

torchdiffeq's adjoint state is (a_t, y, a_y, a_params...) (y and a_y split into their pieces for a
tuple state), and its norms keep a_t: the default is the max of the RMS of every piece, and
norm="seminorm" drops only the parameter adjoints. Its augmented dynamics differentiate f with
respect to t even when t needs no gradient, so a_t is integrated and steers the step size
whenever f depends on t (the ODE-Net's time channel, the CDE's path). nodal integrates a_t only
when t needs a gradient, which no workload here asks for; its ND_NORM_RMS is the default without
a_t, and ND_NORM_SEMINORM the paper's seminorm over y and a_y. With peer_norm "nodal" (the default
of peers.py) the peers use those same norms, through torchdiffeq's custom-norm option, so that both
sides run the same algorithm; with "torchdiffeq" they use torchdiffeq's own, as a user would.
"""


def _rms(x):
    return x.abs().pow(2).mean().sqrt()


def adjoint_options(norm, n_state, peer_norm):
    """adjoint_options for odeint_adjoint: norm 'rms' or 'seminorm'; n_state the number of
    tensors in the state (1, or the tuple's length); peer_norm 'nodal' or 'torchdiffeq'."""
    if peer_norm == "torchdiffeq":
        return dict(norm="seminorm") if norm == "seminorm" else None
    if norm == "seminorm":
        def seminorm(state):       # (a_t, y pieces, a_y pieces, a_params...): y and a_y only
            return max(_rms(x) for x in state[1:1 + 2 * n_state])
        return dict(norm=seminorm)

    def rms_without_t(state):      # every piece but a_t
        return max(_rms(x) for x in state[1:])
    return dict(norm=rms_without_t)
