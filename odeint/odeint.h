/* SPDX-License-Identifier: MIT
 * odeint/odeint.h: ODE solves as differentiable ops.
 *
 *   ys = nd_odeint(ctx, f, user_data, y0, t, params, n_params, &opts);
 *   const nd_ode_stats *st = nd_odeint_stats(ys);   // evaluations, steps; backward after backward
 *
 * returns the solution at every time of t, shape (n_t, *y0.shape), differentiable with respect to
 * y0, the listed params, and t when t requires grad. Its backward (opts.grad, nd_grad_mode) is
 * backprop through the solver's steps (memory grows with the steps; or checkpointed, memory
 * bounded) or an adjoint ODE solved backwards (z integrated backwards with it, memory O(1) in the
 * steps, or z interpolated from the forward solution) by an adaptive solver whose error test may
 * use a seminorm: the parameter and time adjoints never feed back into the dynamics, so their
 * error can be ignored when choosing steps (Kidger, Chen and Lyons, "Hey, that's not an ODE",
 * ICML 2021).
 *
 * Step control matches torchdiffeq 0.2.5 by default, so step counts compare one for one. The
 * statistics also say which block of the state bound each step (nd_limit_stats). Below the op:
 * dense solutions (nd_ode_solution: y(t) anywhere after one solve) and terminal events
 * (nd_odeint_event: solve until g(t, y) = 0, the time and state differentiable).
 */
#ifndef ND_ODEINT_H
#define ND_ODEINT_H

#include <math.h>

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
    ND_METHOD_INHERIT = -1, /* adjoint options only: the forward solver's method */
    ND_EULER,               /* fixed step, order 1 */
    ND_MIDPOINT,            /* fixed step, order 2 */
    ND_RK4,                 /* fixed step, order 4 (the classic tableau) */
    ND_HEUN_EULER,          /* adaptive 2(1) (torchdiffeq's adaptive_heun) */
    ND_FEHLBERG2,           /* adaptive 2(1) Runge-Kutta-Fehlberg */
    ND_BOSH3,               /* adaptive 3(2) Bogacki-Shampine */
    ND_DOPRI5,              /* adaptive 5(4) Dormand-Prince, the default */
    ND_TSIT5,               /* adaptive 5(4) Tsitouras */
    ND_DOPRI8,              /* adaptive 8(7) Prince-Dormand */
    ND_METHOD_COUNT
} nd_ode_method;

/* What each block of a solve's state is, for norms. The forward state's blocks are
 * ND_ROLE_STATE; the adjoint's are the state z, its adjoint a_z, the parameter adjoints a_theta
 * (one block per parameter tensor) and the time adjoint a_t. */
typedef enum {
    ND_ROLE_STATE,
    ND_ROLE_ADJ_STATE,
    ND_ROLE_ADJ_PARAM,
    ND_ROLE_ADJ_TIME,
    ND_ROLE_COUNT
} nd_block_role;

/* "state", "adj_state", "adj_param", "adj_time"; NULL for anything else. */
ND_API const char *nd_block_role_name(nd_block_role r);

/* A user norm: given each block's scaled error e_i / (atol + rtol max(|y0_i|, |y1_i|)), return
 * the error ratio (the step is accepted iff it is <= 1). */
typedef double (*nd_norm_fn)(int n_blocks, const nd_real *const *blocks, const size_t *sizes,
                             const nd_block_role *roles, void *norm_data);

typedef enum {
    ND_NORM_RMS,      /* max over blocks of each block's RMS (torchdiffeq's default, mixed norm) */
    ND_NORM_SEMINORM, /* the same over state and state-adjoint blocks only: a_theta, a_t ignored */
    ND_NORM_SEMINORM_KEEP_T, /* torchdiffeq's norm='seminorm': ignores a_theta, keeps a_t */
    ND_NORM_USER             /* norm_fn */
} nd_norm_kind;

/* Names, one table each: methods as torchdiffeq ("euler" "midpoint" "rk4" "adaptive_heun" (also
 * "heun_euler") "fehlberg2" "bosh3" "dopri5" "tsit5" "dopri8"); norms "rms" "seminorm"
 * "seminorm_keep_t". from_name returns false (and leaves *out alone) for an unknown name. */
ND_API bool nd_ode_method_from_name(const char *name, nd_ode_method *out);
ND_API const char *nd_ode_method_name(nd_ode_method m);
ND_API bool nd_ode_norm_from_name(const char *name, nd_norm_kind *out);
ND_API const char *nd_ode_norm_name(nd_norm_kind k);

typedef enum {
    ND_CONTROLLER_INHERIT = -1, /* adjoint options only: the forward solver's controller */
    ND_CONTROLLER_I,
    ND_CONTROLLER_PI
} nd_controller;

/* The default step budget per output interval (max_num_steps): a solve that is far from
 * finishing after this many attempted steps between two output times stops with
 * ND_ERR_MAX_STEPS instead of running on for minutes (dy/dt = -y over [0, 1e300] does). Every
 * workload nodal's tests and benchmarks measure takes at most a few hundred steps per interval,
 * so the limit never changes a step count; diffrax stops at 4096 steps per solve by default, this
 * is 4x that per interval. It applies to every method, fixed-step ones too: a step_size or grid
 * giving more than max_num_steps x (n_t - 1) steps is ND_ERR_MAX_STEPS before f is first called
 * (Euler at step_size 1e-5 over [0, 1] needs 1e5). Raise it with opts.solver.max_num_steps (and
 * opts.adjoint.max_num_steps, which inherits it); LONG_MAX is no limit. */
#define ND_DEFAULT_MAX_NUM_STEPS 16384L

/* One solver's settings. The forward solve and the adjoint solve each have one. */
typedef struct {
    nd_ode_method method;
    double rtol, atol;         /* scalars, or per state block below */
    const double *rtol_blocks; /* (n_blocks,) of the forward state, or NULL. This and the
                                  other arrays (atol_blocks, grid, step_t, jump_t) are copied
                                  by the solve: they need not outlive the call */
    const double *atol_blocks; /* (n_blocks,) or NULL */
    double first_step;         /* 0: chosen by Hairer-Norsett-Wanner II.4 (2 evaluations) */
    double min_step;           /* steps never shrink below it; a step this small is accepted.
                                  At most max_step; one larger than a solve's interval (the
                                  forward's t[0]..t[n_t-1], each adjoint solve's one output
                                  interval) counts as that interval's length */
    double max_step;           /* INFINITY: no limit */
    long max_num_steps;        /* steps per output interval before ND_ERR_MAX_STEPS, for every
                                  method (ND_DEFAULT_MAX_NUM_STEPS) */
    double step_size;          /* fixed-step methods: 0 steps from output time to output time.
                                  Its steps count against max_num_steps (checked before f
                                  runs); the grid is generated as the solve goes, not stored */
    const double *grid;        /* fixed-step methods: the times to step through instead, (n_grid,)
                                  monotone like t; only those inside a solve's interval count,
                                  and their steps count against max_num_steps too */
    int n_grid;
    nd_norm_kind norm;
    nd_norm_fn norm_fn; /* with ND_NORM_USER */
    void *norm_data;
    nd_controller controller;
    double safety, ifactor, dfactor; /* 0.9, 10, 0.2 */
    double pi_beta1, pi_beta2;       /* PI exponents times the order: 0.7 and 0.4 */
} nd_solver_options;

/* How the gradient of a solve is computed (README: "Choosing a gradient mode"). */
typedef enum {
    /* optimise-then-discretise, the backsolve adjoint (torchdiffeq's; the default): z integrated
     * backwards beside a_z and a_theta. O(1) memory, but z recomputed backwards drifts on
     * dissipative or chaotic dynamics, and the gradient with it */
    ND_GRAD_ADJOINT,
    /* discretise-then-optimise: backprop through the solver's operations; the exact gradient of
     * the discrete solve, memory growing with the steps; differentiable again */
    ND_GRAD_BACKPROP,
    /* the interpolating adjoint (SciMLSensitivity's InterpolatingAdjoint, CVODES): the forward
     * solve keeps checkpoints (every output time, and every checkpoint_every steps); the backward
     * solves one checkpoint interval forward again with dense output and integrates [a_z, a_theta,
     * a_t] backwards with z interpolated, never integrating z in reverse. The adjoint's norm
     * applies (the seminorm drops a_theta and a_t) */
    ND_GRAD_INTERP_ADJOINT,
    /* the quadrature adjoint (SciMLSensitivity's GaussAdjoint): as the interpolating adjoint, but
     * the backward ODE is a_z alone and dL/dtheta (and dL/dt_0) the integral of -a_z df/dtheta,
     * by Gauss-Legendre quadrature over each accepted backward step (a_z from the step's dense
     * output): no norm choice; its accuracy follows the adjoint's tolerances on a_z */
    ND_GRAD_QUADRATURE_ADJOINT,
    /* checkpointed backprop (diffrax's RecursiveCheckpointAdjoint): backprop's gradient with at
     * most `checkpoints` solver states kept by the forward solve, each segment between two of them
     * solved again taped in the backward (README). Adaptive methods; t must not require grad */
    ND_GRAD_CHECKPOINTED
} nd_grad_mode;

/* Names: "adjoint" "backprop" "interp_adjoint" "quadrature_adjoint" "checkpointed". from_name
 * returns false (and leaves *out alone) for an unknown name. */
ND_API bool nd_ode_grad_from_name(const char *name, nd_grad_mode *out);
ND_API const char *nd_ode_grad_name(nd_grad_mode g);

/* The adjoint inherits. opts.adjoint starts as ND_SOLVER_INHERIT: every field unset, so the
 * adjoint solve uses the forward solver's settings (as torchdiffeq's adjoint_rtol / adjoint_atol
 * / adjoint_method / adjoint_options default to the forward ones). Set a field to override just
 * that one; the rest keep following opts.solver:
 *
 *   nd_ode_options o = ND_ODE_DEFAULT;
 *   o.solver.method = ND_BOSH3, o.solver.rtol = o.solver.atol = 1e-3; // the adjoint too
 *   o.adjoint.norm = ND_NORM_SEMINORM;                                // only the adjoint's norm
 *
 * The norm (norm, norm_fn, norm_data) is the adjoint's own choice and is never inherited
 * (ND_NORM_RMS unless set). Unset is, per field: method ND_METHOD_INHERIT, controller
 * ND_CONTROLLER_INHERIT, max_num_steps and n_grid ND_INHERIT_COUNT, every double ND_INHERIT (a
 * NaN). rtol_blocks / atol_blocks follow their scalar: inherited while rtol (atol) is unset;
 * step_size and grid are inherited together while both are unset. opts.adjoint =
 * ND_SOLVER_DEFAULT sets every field explicitly (dopri5 at 1e-7 / 1e-9). The forward solver's own
 * options must all be set: an unset value there is an error. */
#define ND_INHERIT NAN
#define ND_INHERIT_COUNT (-1)

typedef struct {
    nd_solver_options solver;  /* the forward solve */
    nd_solver_options adjoint; /* the adjoint solve (ND_GRAD_ADJOINT): unset fields inherit */
    nd_grad_mode grad;
    /* Times the solver must step onto (kinks in f) and discontinuities (f is evaluated again just
     * after them); sorted the same way as t; used by the forward and the adjoint solve. */
    const double *step_t;
    int n_step_t;
    const double *jump_t;
    int n_jump_t;
    /* ND_GRAD_INTERP_ADJOINT and ND_GRAD_QUADRATURE_ADJOINT: besides every output time, store a
     * forward checkpoint every checkpoint_every accepted steps (0: at output times only). The
     * backward keeps the dense output of one checkpoint interval at a time, so memory is the
     * checkpoints plus one interval's steps; checkpoints also become breakpoints of the backward
     * solve. Must be >= 0. */
    int checkpoint_every;
    /* ND_GRAD_CHECKPOINTED: the most solver states the forward solve keeps (>= 1). Memory is
     * these plus the tape of one segment, about 2 N / checkpoints steps of the N the solve takes;
     * the backward solves every step again once (README: "Choosing a gradient mode"). */
    int checkpoints;
} nd_ode_options;

/* ND_GRAD_CHECKPOINTED's default number of checkpoints */
#define ND_DEFAULT_CHECKPOINTS 32

#define ND_SOLVER_DEFAULT                                                                          \
    ((nd_solver_options){.method = ND_DOPRI5,                                                      \
                         .rtol = 1e-7,                                                             \
                         .atol = 1e-9,                                                             \
                         .max_step = INFINITY,                                                     \
                         .max_num_steps = ND_DEFAULT_MAX_NUM_STEPS,                                \
                         .norm = ND_NORM_RMS,                                                      \
                         .controller = ND_CONTROLLER_I,                                            \
                         .safety = 0.9,                                                            \
                         .ifactor = 10.0,                                                          \
                         .dfactor = 0.2,                                                           \
                         .pi_beta1 = 0.7,                                                          \
                         .pi_beta2 = 0.4})

#define ND_SOLVER_INHERIT                                                                          \
    ((nd_solver_options){.method = ND_METHOD_INHERIT,                                              \
                         .rtol = ND_INHERIT,                                                       \
                         .atol = ND_INHERIT,                                                       \
                         .first_step = ND_INHERIT,                                                 \
                         .min_step = ND_INHERIT,                                                   \
                         .max_step = ND_INHERIT,                                                   \
                         .max_num_steps = ND_INHERIT_COUNT,                                        \
                         .step_size = ND_INHERIT,                                                  \
                         .n_grid = ND_INHERIT_COUNT,                                               \
                         .norm = ND_NORM_RMS,                                                      \
                         .controller = ND_CONTROLLER_INHERIT,                                      \
                         .safety = ND_INHERIT,                                                     \
                         .ifactor = ND_INHERIT,                                                    \
                         .dfactor = ND_INHERIT,                                                    \
                         .pi_beta1 = ND_INHERIT,                                                   \
                         .pi_beta2 = ND_INHERIT})

#define ND_ODE_DEFAULT                                                                             \
    ((nd_ode_options){.solver = ND_SOLVER_DEFAULT,                                                 \
                      .adjoint = ND_SOLVER_INHERIT,                                                \
                      .grad = ND_GRAD_ADJOINT,                                                     \
                      .checkpoints = ND_DEFAULT_CHECKPOINTS})

/* Which block limited the steps: at every error test of an adaptive solve, the block with the
 * largest RMS scaled error among the blocks the norm counts (every block under a user norm) is
 * counted, in accepted[role][k] or rejected[role][k], k its index among the blocks of its role:
 * for ND_ROLE_STATE and ND_ROLE_ADJ_STATE the tuple's tensor (0 for nd_odeint), for
 * ND_ROLE_ADJ_PARAM the parameter (in the order of params, those requiring grad), 0 for a_t;
 * indices past ND_LIMIT_MAX_BLOCKS - 1 count in the last. Under the RMS norm, a backward solve
 * whose steps are bound by ND_ROLE_ADJ_PARAM or ND_ROLE_ADJ_TIME is one the seminorm speeds up;
 * under the seminorm those blocks never bind. Steps f rejects and fixed steps count nowhere. */
#define ND_LIMIT_MAX_BLOCKS 8
typedef struct {
    long accepted[ND_ROLE_COUNT][ND_LIMIT_MAX_BLOCKS];
    long rejected[ND_ROLE_COUNT][ND_LIMIT_MAX_BLOCKS];
} nd_limit_stats;

/* Steps a role bound, summed over its blocks (accepted or rejected ones). */
ND_API long nd_limit_count(const nd_limit_stats *l, nd_block_role role, bool accepted);
/* The fraction of all counted error tests (accepted and rejected) that a role bound; NaN when
 * none was counted (a fixed-step solve, or no solve yet). */
ND_API double nd_limit_fraction(const nd_limit_stats *l, nd_block_role role);
/* The fraction bound by the blocks the seminorm leaves out (a_theta and a_t): under the RMS norm,
 * how much of the backward's stepping the seminorm could relax; 0 under the seminorm. NaN as
 * above. */
ND_API double nd_limit_seminorm_share(const nd_limit_stats *l);

typedef struct {
    long nfe;             /* evaluations of f (each adjoint evaluation: one f and one VJP) */
    long accepted;        /* accepted steps */
    long rejected;        /* rejected steps */
    nd_limit_stats limit; /* which block bound each step */
} nd_solve_stats;

/* backward: the backward pass's own solve (the adjoint's; nfe includes the quadrature adjoint's
 * evaluations at its Gauss nodes). recomputed: the forward steps the backward pass solved again
 * (the interpolating and quadrature adjoints' re-solves of checkpoint intervals, checkpointed
 * backprop's taped segments), not included in
 * backward: the backward pass costs backward.nfe + recomputed.nfe evaluations. */
typedef struct {
    nd_solve_stats forward, backward, recomputed;
    size_t dense_bytes; /* the interpolating and quadrature adjoints: the most heap memory the
                           dense output of one checkpoint interval held in the backward pass (the
                           checkpoints themselves are in the arena) */
} nd_ode_stats;

/* y0: the initial state, any shape up to ND_MAX_DIMS - 1 dims. t: (n_t,) strictly increasing or
 * decreasing, n_t >= 2. params: what f depends on (tensors requiring grad get gradients). opts
 * may be NULL (ND_ODE_DEFAULT). Returns (n_t, *y0.shape), arena-owned, or NULL with the error in
 * ctx. */
ND_API nd_tensor *nd_odeint(nd_ctx *ctx, nd_ode_fn f, void *user_data, nd_tensor *y0, nd_tensor *t,
                            nd_tensor *const *params, int n_params, const nd_ode_options *opts);

/* A state of n_y tensors: ys_out[i] is the trajectory of block i, (n_t, *y0s[i].shape). Each
 * block is one block of the norm. Returns ys_out[0], or NULL (every ys_out[i] NULL) on failure. */
ND_API nd_tensor *nd_odeint_tuple(nd_ctx *ctx, nd_ode_tuple_fn f, void *user_data,
                                  nd_tensor *const *y0s, int n_y, nd_tensor *t,
                                  nd_tensor *const *params, int n_params,
                                  const nd_ode_options *opts, nd_tensor **ys_out);

/* The statistics of the solve that returned ys (any trajectory nd_odeint or nd_odeint_tuple
 * returned, or either output of nd_odeint_event, in any grad mode): forward after the solve,
 * backward after the backward pass (0 until then, and for backprop through the solver, whose
 * backward replays the graph instead of calling f). The op owns them in the arena: valid until the
 * ctx is reset, like ys. NULL when ys is not an odeint result. */
ND_API const nd_ode_stats *nd_odeint_stats(const nd_tensor *ys);

/* ---------------------------------------------------------------------------------------------
 * Dense solutions (torchdiffeq's odeint_dense): solve once, then evaluate y(t) anywhere in the
 * interval from the interpolants the solve fitted to its accepted steps (the quartic of each
 * adaptive step, cubic Hermite for fixed-step methods), without calling f again:
 *
 *   nd_ode_solution *sol = nd_ode_solution_create(ctx, f, data, y0, 0, 5, params, n, &o);
 *   nd_tensor *y = nd_ode_solution_at(ctx, sol, 2.5);  // shape of y0
 *   nd_ode_solution_destroy(sol);                      // y stays valid: it is an arena tensor
 *
 * The values at t equal nd_odeint's at the same t (the same steps, the same interpolant).
 * Differentiable by backprop through the solver: when grad mode is on and y0 or a param requires
 * grad, opts->grad must be ND_GRAD_BACKPROP (the adjoint keeps no forward steps to differentiate
 * through) and every y(t) is a graph back to y0 and the params, differentiable again. Otherwise
 * the solve records nothing.
 *
 * Lifetime. The solution is a caller-owned heap object (its interpolants' values are copied out
 * of the arena), so without gradients it outlives nd_ctx_reset. With gradients its interpolants
 * are graph nodes in the ctx's arena: nd_ctx_reset, or nd_ctx_rewind to a mark taken before the
 * solve ended, frees them, and nd_ode_solution_at on it afterwards is an error (ND_ERR_ARG), not a
 * crash, however far the arena has been filled again since (the solve pins its end in the ctx;
 * rewinds to marks at or after it keep the solution). After nd_ode_solution_destroy the pointer
 * is gone like any freed one. */
typedef struct nd_ode_solution nd_ode_solution;

/* Solves y' = f(t, y) from y0 at t0 to t1 (t1 < t0 solves backwards). NULL with the error in ctx;
 * the checks and messages are nd_odeint's. */
ND_API nd_ode_solution *nd_ode_solution_create(nd_ctx *ctx, nd_ode_fn f, void *user_data,
                                               nd_tensor *y0, double t0, double t1,
                                               nd_tensor *const *params, int n_params,
                                               const nd_ode_options *opts);
ND_API void nd_ode_solution_destroy(nd_ode_solution *sol);

/* y(t), shape of y0, for t in the closed interval; a new arena tensor (a graph when the solution
 * is differentiable). NULL with ND_ERR_ARG for t outside the interval or not finite. */
ND_API nd_tensor *nd_ode_solution_at(nd_ctx *ctx, const nd_ode_solution *sol, double t);

/* The solve's statistics and accepted steps; NULL / 0 for a NULL sol. */
ND_API const nd_ode_stats *nd_ode_solution_stats(const nd_ode_solution *sol);
ND_API long nd_ode_solution_steps(const nd_ode_solution *sol);

/* ---------------------------------------------------------------------------------------------
 * Events (torchdiffeq's odeint_event): solve from t0 until the event function g(t, y) crosses
 * zero, and return the event time and the state there, both differentiable:
 *
 *   nd_tensor *t_ev, *y_ev;  // scalar, shape of y0
 *   st = nd_odeint_event(ctx, f, g, data, y0, 0, 10, params, n, &o, NULL, &t_ev, &y_ev);
 *
 * The event is terminal: the solve stops at the first crossing. After every accepted step g is
 * evaluated at the step's end; when its sign changed (in the direction asked for), the event
 * time is found by bisection of g(t, y(t)) on the step's interpolant, to within tol. A g(t0, y0)
 * of exactly 0 is not an event. No crossing before t_end is ND_ERR_NO_EVENT.
 *
 * Statistics: nd_odeint_stats(t_ev) and nd_odeint_stats(y_ev) (one struct): forward counts
 * both solves below (the search and the solve to t_ev), backward and recomputed the second
 * solve's backward pass; the event's own backward evaluates f once more at t_ev, uncounted.
 *
 * Gradients. y_ev comes from a second solve of the odeint op over [t0, t_ev] (in opts.grad's
 * mode), and t_ev's gradient by the implicit function theorem, as torchdiffeq does:
 * g(t_ev, y(t_ev)) = 0 gives
 *   dt_ev = -(dg/dy dy(T) + dg/dparams dparams) / (dg/dt + dg/dy . f(t_ev, y_ev)),
 * so dL/dt_ev reaches y0 and the params through the state (and g's own parameters directly).
 * params are f's and g's together (each may ignore some). A crossing where g's total derivative
 * is 0 (tangential) has no differentiable time: its backward is ND_ERR_ARG. The event's
 * gradient is not differentiable again (ND_ERR_GRAPH under create_graph). */

/* g(t, y): a scalar (one element) built with nodal ops from t (a scalar) and y (y0's shape). */
typedef nd_tensor *(*nd_event_fn)(nd_ctx *ctx, nd_tensor *t, nd_tensor *y, void *user_data);

typedef struct {
    int direction; /* 0: any crossing; +1: g from < 0 to >= 0 only; -1: from > 0 to <= 0 only */
    double tol;    /* the event time to within tol (absolute); 0: to a few ulps of t */
} nd_event_options;

#define ND_EVENT_DEFAULT ((nd_event_options){.direction = 0, .tol = 0})

/* Solves y' = f(t, y) from y0 at t0 towards t_end (t_end < t0 solves backwards) until g crosses
 * zero; *t_event (scalar) and *y_event (y0's shape) are arena tensors. eopts NULL:
 * ND_EVENT_DEFAULT. On failure both are NULL and the error is in ctx. */
ND_API nd_status nd_odeint_event(nd_ctx *ctx, nd_ode_fn f, nd_event_fn g, void *user_data,
                                 nd_tensor *y0, double t0, double t_end, nd_tensor *const *params,
                                 int n_params, const nd_ode_options *opts,
                                 const nd_event_options *eopts, nd_tensor **t_event,
                                 nd_tensor **y_event);

/* ---------------------------------------------------------------------------------------------
 * Derivatives of f's own output inside f: a continuous normalising flow's trace of df/dz, a
 * Hamiltonian system's gradient of its energy. During the forward solve f runs with grad mode
 * off and y is plain numbers, so a bare nd_grad inside f sees no graph; in the adjoint and under
 * backprop the result must itself be a graph, so the solve can differentiate it again. The
 * pattern, one call each:
 *
 *   nd_ode_diff d;
 *   if (nd_ode_diff_begin(ctx, &d, &y, 1) != ND_OK) return -1;  // y: differentiable from here
 *   nd_tensor *H = energy(ctx, y), *dH;
 *   nd_status st = nd_ode_vjp(ctx, &d, &H, NULL, 1, &y, 1, &dH); // dH/dy
 *   *dydt = ...dH...;
 *   return nd_ode_diff_end(ctx, &d, dydt, 1) == ND_OK && st == ND_OK ? 0 : -1;
 */
typedef struct {
    bool prev_grad; /* the grad mode to restore */
    bool graph;     /* the solve needs a graph of dydt (the adjoint, backprop): create_graph */
} nd_ode_diff;

/* Turns grad mode on and replaces each ys[i] that the solve does not track by a differentiable
 * copy (a leaf), so outputs computed from ys can be differentiated with nd_ode_vjp. */
ND_API nd_status nd_ode_diff_begin(nd_ctx *ctx, nd_ode_diff *d, nd_tensor **ys, int n);
/* nd_grad with create_graph exactly when the solve needs a graph of dydt; an input the outputs do
 * not reach is an error (the zero trace it would silently give is the bug this guards). */
ND_API nd_status nd_ode_vjp(nd_ctx *ctx, const nd_ode_diff *d, nd_tensor **outputs,
                            nd_tensor **seeds, int n_out, nd_tensor **inputs, int n_in,
                            nd_tensor **grads_out);
/* Restores grad mode; when the solve needs no graph, replaces each dydt[i] by its plain values.
 * Returns the ctx's error if a dydt[i] is NULL. */
ND_API nd_status nd_ode_diff_end(nd_ctx *ctx, const nd_ode_diff *d, nd_tensor **dydt, int n);

#ifdef __cplusplus
}
#endif

#endif /* ND_ODEINT_H */
