/* SPDX-License-Identifier: MIT
 * odeint/odeint.h: ODE solves as differentiable ops.
 *
 *   ys = nd_odeint(ctx, f, user_data, y0, t, params, n_params, &opts, &stats);
 *
 * returns the solution at every time of t, shape (n_t, *y0.shape), differentiable with respect to
 * y0, the listed params, and t when t requires grad. Its backward is either backprop through the
 * solver's steps (memory grows with the steps) or the adjoint ODE (memory O(1) in the steps),
 * solved backwards by an adaptive solver whose error test may use a seminorm: the parameter and
 * time adjoints never feed back into the dynamics, so their error can be ignored when choosing
 * steps (Kidger, Chen and Lyons, "Hey, that's not an ODE", ICML 2021).
 *
 * Step control matches torchdiffeq 0.2.5 by default, so step counts compare one for one.
 */
#ifndef ND_ODEINT_H
#define ND_ODEINT_H

#include "autograd/autograd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* dydt = f(t, y). t is a scalar tensor (differentiable when the solve's t requires grad). Build
 * *dydt with nodal ops from y, t and the params. Return 0 on success, > 0 to reject the step
 * (the solver shrinks it and retries), < 0 to stop the solve with ND_ERR_CALLBACK. */
typedef int (*nd_ode_fn)(nd_ctx *ctx, nd_tensor *t, nd_tensor *y, nd_tensor **dydt,
                         void *user_data);
/* The same for a state made of n tensors (a tuple, like (z, log p)): fill dydt[0..n-1]. */
typedef int (*nd_ode_tuple_fn)(nd_ctx *ctx, nd_tensor *t, nd_tensor *const *y, int n,
                               nd_tensor **dydt, void *user_data);

typedef enum {
    ND_EULER,      /* fixed step, order 1 */
    ND_MIDPOINT,   /* fixed step, order 2 */
    ND_RK4,        /* fixed step, order 4 (the classic tableau) */
    ND_HEUN_EULER, /* adaptive 2(1) (torchdiffeq's adaptive_heun) */
    ND_FEHLBERG2,  /* adaptive 2(1) Runge-Kutta-Fehlberg */
    ND_BOSH3,      /* adaptive 3(2) Bogacki-Shampine */
    ND_DOPRI5,     /* adaptive 5(4) Dormand-Prince, the default */
    ND_TSIT5,      /* adaptive 5(4) Tsitouras */
    ND_DOPRI8,     /* adaptive 8(7) Prince-Dormand */
    ND_METHOD_COUNT
} nd_ode_method;

/* "dopri5" -> ND_DOPRI5 (names as torchdiffeq: euler midpoint rk4 adaptive_heun heun_euler
 * fehlberg2 bosh3 dopri5 tsit5 dopri8); -1 if unknown. */
int nd_ode_method_from_name(const char *name);
const char *nd_ode_method_name(nd_ode_method m);

/* What each block of a solve's state is, for norms. The forward state's blocks are
 * ND_ROLE_STATE; the adjoint's are the state z, its adjoint a_z, the parameter adjoints a_theta
 * (one block per parameter tensor) and the time adjoint a_t. */
typedef enum { ND_ROLE_STATE, ND_ROLE_ADJ_STATE, ND_ROLE_ADJ_PARAM, ND_ROLE_ADJ_TIME } nd_block_role;

/* A user norm: given each block's scaled error e_i / (atol + rtol max(|y0_i|, |y1_i|)), return
 * the error ratio (the step is accepted iff it is <= 1). */
typedef double (*nd_norm_fn)(int n_blocks, const nd_real *const *blocks, const size_t *sizes,
                             const nd_block_role *roles, void *norm_data);

typedef enum {
    ND_NORM_RMS,      /* max over blocks of each block's RMS (torchdiffeq's default, mixed norm) */
    ND_NORM_SEMINORM, /* the same over state and state-adjoint blocks only: a_theta, a_t ignored */
    ND_NORM_SEMINORM_KEEP_T, /* torchdiffeq's norm='seminorm': ignores a_theta, keeps a_t */
    ND_NORM_USER      /* norm_fn */
} nd_norm_kind;

typedef enum { ND_CONTROLLER_I, ND_CONTROLLER_PI } nd_controller;

/* One solver's settings. The forward solve and the adjoint solve each have one. */
typedef struct {
    nd_ode_method method;
    double rtol, atol;          /* scalars, or per state block below */
    const double *rtol_blocks;  /* (n_blocks,) of the forward state, or NULL */
    const double *atol_blocks;  /* (n_blocks,) or NULL */
    double first_step;          /* 0: chosen by Hairer-Norsett-Wanner II.4 (2 evaluations) */
    double min_step;            /* steps never shrink below it; a step this small is accepted */
    double max_step;            /* INFINITY: no limit */
    long max_num_steps;         /* attempts per output interval before ND_ERR_MAX_STEPS */
    double step_size;           /* fixed-step methods: 0 steps from output time to output time */
    const double *grid;         /* fixed-step methods: the times to step through instead, (n_grid,)
                                   monotone like t; only those inside a solve's interval count */
    int n_grid;
    nd_norm_kind norm;
    nd_norm_fn norm_fn;         /* with ND_NORM_USER */
    void *norm_data;
    nd_controller controller;
    double safety, ifactor, dfactor; /* 0.9, 10, 0.2 */
    double pi_beta1, pi_beta2;       /* PI exponents times the order: 0.7 and 0.4 */
} nd_solver_options;

typedef enum {
    ND_GRAD_ADJOINT, /* optimise-then-discretise: the adjoint ODE (default) */
    ND_GRAD_BACKPROP /* discretise-then-optimise: backprop through the solver's operations */
} nd_grad_mode;

typedef struct {
    nd_solver_options solver;  /* the forward solve */
    nd_solver_options adjoint; /* the adjoint solve (ND_GRAD_ADJOINT) */
    nd_grad_mode grad;
    /* Times the solver must step onto (kinks in f) and discontinuities (f is evaluated again just
     * after them); sorted the same way as t; used by the forward and the adjoint solve. */
    const double *step_t;
    int n_step_t;
    const double *jump_t;
    int n_jump_t;
} nd_ode_options;

#define ND_SOLVER_DEFAULT                                                                          \
    ((nd_solver_options){.method = ND_DOPRI5,                                                      \
                         .rtol = 1e-7,                                                             \
                         .atol = 1e-9,                                                             \
                         .max_step = __builtin_inf(),                                              \
                         .max_num_steps = 2147483647L,                                             \
                         .norm = ND_NORM_RMS,                                                      \
                         .controller = ND_CONTROLLER_I,                                            \
                         .safety = 0.9,                                                            \
                         .ifactor = 10.0,                                                          \
                         .dfactor = 0.2,                                                           \
                         .pi_beta1 = 0.7,                                                          \
                         .pi_beta2 = 0.4})

#define ND_ODE_DEFAULT                                                                             \
    ((nd_ode_options){.solver = ND_SOLVER_DEFAULT, .adjoint = ND_SOLVER_DEFAULT,                   \
                      .grad = ND_GRAD_ADJOINT})

typedef struct {
    long nfe;      /* evaluations of f (each adjoint evaluation: one f and one VJP) */
    long accepted; /* accepted steps */
    long rejected; /* rejected steps */
} nd_solve_stats;

/* Filled after the forward solve, and backward after the backward pass (0 for backprop through
 * the solver, whose backward replays the graph instead of calling f). The op keeps the pointer
 * until its backward has run: it must stay valid until then. */
typedef struct {
    nd_solve_stats forward, backward;
} nd_ode_stats;

/* y0: the initial state, any shape. t: (n_t,) strictly increasing or decreasing, n_t >= 2.
 * params: what f depends on (tensors requiring grad get gradients). opts and stats may be NULL.
 * Returns (n_t, *y0.shape), arena-owned, or NULL with the error in ctx. */
nd_tensor *nd_odeint(nd_ctx *ctx, nd_ode_fn f, void *user_data, nd_tensor *y0, nd_tensor *t,
                     nd_tensor *const *params, int n_params, const nd_ode_options *opts,
                     nd_ode_stats *stats);

/* A state of n_y tensors: ys_out[i] is the trajectory of block i, (n_t, *y0s[i].shape). Each
 * block is one block of the norm. */
nd_status nd_odeint_tuple(nd_ctx *ctx, nd_ode_tuple_fn f, void *user_data, nd_tensor *const *y0s,
                          int n_y, nd_tensor *t, nd_tensor *const *params, int n_params,
                          const nd_ode_options *opts, nd_ode_stats *stats, nd_tensor **ys_out);

#ifdef __cplusplus
}
#endif

#endif /* ND_ODEINT_H */
