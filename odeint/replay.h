/* SPDX-License-Identifier: MIT
 * odeint/replay.h: the forward solution recomputed from checkpoints, for the interpolating and
 * quadrature adjoints (module-private). During the forward solve the op stores checkpoints: every
 * output time and, with checkpoint_every = k > 0, the state after every k-th accepted step. The
 * backward pass asks for z(t) at any t; the interval between two checkpoints that holds t is
 * solved forward again from its checkpoint (the forward's solver options), its steps' dense output
 * kept, and z(t) read off the step's interpolant. Two intervals are kept (the one the backward
 * solve is in and the one it came from: a step, rejected or not, may reach across the checkpoint
 * between them): memory is the checkpoints plus two intervals' steps.
 */
#ifndef ND_REPLAY_H
#define ND_REPLAY_H

#include "odeint/interp.h"
#include "odeint/odeint_internal.h"

/* The dense output of one re-solved checkpoint interval: every step's interpolant. */
typedef struct {
    int interval; /* j: [ck_t[j], ck_t[j + 1]], or -1 when empty */
    long n_steps, cap;
    double *step_s; /* (cap, 2) each step's [s0, s1] in forward-internal time dir * t */
    nd_real *coeff; /* (cap, ND_INTERP_MAX_COEFF, n), n_coeff of them used (interp.h) */
    int n_coeff;
    unsigned long used; /* when it was last read */
} nd_replay_slot;

struct nd_replay {
    nd_forward_system fs;  /* first: the forward system, its on_step hook ours */
    nd_solve_stats *stats; /* the re-solves' counts (the op's stats.recomputed) */
    size_t n;
    double dir; /* +1 when the forward solve's times increase */
    bool recording;
    /* while the forward solve runs: every-k-step checkpoints, growing (heap) */
    int every;
    long since, n_rec, cap_rec;
    double *rec_t;
    nd_real *rec_y;
    /* after it: every checkpoint in forward order (arena), output times among them */
    int n_ck;
    double *ck_t;  /* (n_ck,) */
    nd_real *ck_y; /* (n_ck, n) */
    /* the backward's cache: the dense output of two checkpoint intervals (heap) */
    nd_replay_slot slot[2];
    int filling;         /* the slot a re-solve writes */
    unsigned long clock; /* counts lookups, for replacing the least recently used slot */
    size_t peak_bytes;   /* the most heap the cache held */
};

/* Before the forward solve: sv->replay set up over a copy of fs whose on_step records
 * checkpoints; the forward solve runs on sv->replay->fs.sys. */
bool nd_replay_begin(nd_ctx *ctx, nd_odeint_saved *sv, const nd_forward_system *fs);
/* After it (packed: the trajectory (n_t, n), or NULL when the solve failed): the checkpoints
 * merged with the output times into the arena; the recording's heap freed in every case. */
bool nd_replay_end(nd_ctx *ctx, nd_odeint_saved *sv, const nd_tensor *packed);
/* z(t) into out (n,), re-solving the checkpoint interval holding t if it is not the cached one.
 * Grad mode must be off. False with the error in ctx. */
bool nd_replay_eval(nd_ctx *ctx, nd_replay *rp, const nd_odeint_saved *sv, double t, nd_real *out);
/* The backward solve's breakpoints: the user's step_t and jump_t, and every checkpoint, output
 * times included: no backward step straddles two checkpoint intervals or passes the output time
 * its solve ends at (a step past it, as large as the solver likes, would reach into intervals
 * before it and solve them again and again), so each interval is re-solved once. */
bool nd_replay_breakpoints(nd_ctx *ctx, const nd_replay *rp, const nd_odeint_saved *sv,
                           nd_breakpoints *bp);
/* Frees the backward's cache (the arena's checkpoints stay until the ctx is reset). */
void nd_replay_release(nd_replay *rp);

#endif
