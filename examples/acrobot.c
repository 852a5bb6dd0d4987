/* SPDX-License-Identifier: MIT
 * examples/acrobot.c: Symplectic ODE-Net (Zhong, Dey and Chakraborty, ICLR 2020) learns the
 * Acrobot from MuJoCo trajectories, and a controller built from the learned model alone swings
 * the MuJoCo Acrobot up and balances it (in about 2 of 3 trials).
 *
 * The system (examples/models/mujoco/acrobot.xml): gym's Acrobot-v1 parameters (two links of
 * length 1 and mass 1, centres of mass at 0.5, inertia 1 about them, gravity 9.8), a torque at
 * the elbow only, limited to [-10, 10] (gym's is 1: too weak to balance these heavy links, see
 * the README); q = (shoulder, elbow), (0, 0) hanging down, (pi, 0) upright. tests/test_mujoco.c
 * checks the model against gym's equations. The data: 512 trajectories of 2 s sampled every
 * 0.05 s from q0 ~ U(-pi, pi)^2, qdot0 ~ U(-4, 4)^2, plus 128 (--upright-traj) from
 * q0 ~ (pi, 0) + U(-0.3, 0.3)^2, qdot0 ~ U(-1, 1)^2, each under a constant torque u ~ U(-2, 2);
 * 32 more held out. Training: windows of 8 points, batch 256, dopri5 with the adjoint at
 * rtol = atol = 1e-4, tanh MLPs of width 32, 500 iterations of Adam at lr 3e-3 by default
 * (examples/physics/driver.c; the model is examples/models/symoden.c).
 *
 * The controller sees a plant: qddot = a(q, qdot) + b(q) u and an energy E(q, qdot), zero upright,
 * either from the learned model (a = (dM^-1/dt) p + M^-1 (-dH/dq), b = M^-1 g, p = M(q) qdot,
 * E = (H - H_up) / g_elbow(0): H and g share one unknown scale) or, with --controller-model
 * true, from gym's equations (a reference, not learned):
 *   swing-up (Spong 1995's collocated partial feedback linearisation): u = (v - a2) / b2 makes
 *   the elbow's acceleration v = -K_P q2 - K_D qdot2 + ALPHA K_P sat(-E qdot1 / E_SCALE), which
 *   pumps energy into the shoulder while it is below the upright energy;
 *   balance: the discrete LQR of the plant linearised at (q*, 0) in (q, qdot) (central
 *   differences, zero-order hold at the control period, Riccati iterated), once the cost-to-go
 *   (y - y*)' P (y - y*) is below a threshold. On the learned model the LQR weighs the elbow angle
 *   100x (lqr_weights): its linearisation is off by up to 15% and plain weights give gains under
 *   which the true system is unstable; setup prints the true closed loop's spectral radius.
 * It runs on the true MuJoCo Acrobot at 100 Hz from q ~ U(-0.2, 0.2)^2 at rest, 40 s per trial;
 * the README's "Physical control" section has the success counts. --plot draws held-out
 * trajectories (MuJoCo vs learned), the learned V(q1, 0) / g(0) against the true one, the angle
 * error of every trial, and the loss.
 *
 * Run:  ./build/examples/acrobot [--iters N] [--model symoden|baseline] [--norm rms|seminorm]
 *           [--rtol R] [--atol A] [--trials K] [--controller-model learned|true] [--upright-traj N]
 *           [--save F] [--resume F] [--plot F.png] [--json]
 *           (--help: every flag)
 * Exit status: 0 when it ran (or when the build has no MuJoCo: it says so), 1 on an error,
 * 2 on bad flags.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

#define UMAX 10.0 /* the XML's elbow torque limit */
#define DT 0.01   /* the control period (driver.c's CONTROL_DT) */
/* swing-up: v = -K_P q2 - K_D q2dot + ALPHA K_P sat((E_up - E) q1dot / E_SCALE) */
#define K_P 40.0
#define K_D 1.0
#define ALPHA 1.5
#define E_SCALE 10.0
/* balance once (y - y*)' P (y - y*) is below this */

static double true_potential(const double *q)
{
    // gym's potential, zero hanging down: -(m1 lc1 + m2 l1) g cos q1 - m2 lc2 g cos(q1 + q2)
    return 9.8 * (1.5 * (1 - cos(q[0])) + 0.5 * (1 - cos(q[0] + q[1])));
}

/* ---------------------------------------------------------------------------------------------
 * The plant a controller sees: qddot = a + b u at (q, qdot), and an energy E(q, qdot) in the
 * true model's units, zero at rest upright. Either the true equations (gym's, which
 * tests/test_mujoco.c checks MuJoCo against) or the learned SymODEN model. */
typedef struct {
    const symoden_model *m; // NULL: the true model
    double scale;           // learned: H and g are known up to one scale, g's elbow entry at q = 0
    double h_up;            // learned: H at rest upright
} plant;

static void true_accel(const double *q, const double *v, double *a, double *b)
{
    // M(q) qddot + c(q, qdot) + dV/dq = (0, u), gym's book dynamics
    double c2 = cos(q[1]), s2 = sin(q[1]), g = 9.8;
    double m11 = 3.5 + c2, m12 = 1.25 + 0.5 * c2, m22 = 1.25, det = m11 * m22 - m12 * m12;
    double h1 = -0.5 * s2 * (2 * v[0] * v[1] + v[1] * v[1]) + 1.5 * g * sin(q[0]) +
                0.5 * g * sin(q[0] + q[1]);
    double h2 = 0.5 * s2 * v[0] * v[0] + 0.5 * g * sin(q[0] + q[1]);
    a[0] = (-m22 * h1 + m12 * h2) / det, a[1] = (m12 * h1 - m11 * h2) / det;
    b[0] = -m12 / det, b[1] = m11 / det;
}

static double true_energy(const double *q, const double *v)
{
    double c2 = cos(q[1]), m11 = 3.5 + c2, m12 = 1.25 + 0.5 * c2, m22 = 1.25;
    double T = 0.5 * (m11 * v[0] * v[0] + 2 * m12 * v[0] * v[1] + m22 * v[1] * v[1]);
    return T - 9.8 * (1.5 * cos(q[0]) + 0.5 * cos(q[0] + q[1])) - 2 * 9.8;
}

/* the learned qddot = d/dt (M^-1(q) p) = (dM^-1/dt) p + M^-1 (-dH/dq + g u), with dM^-1/dt by a
 * central difference along dq/dt = dH/dp; and the learned energy (H - H_up) / scale */
static int plant_eval(nd_ctx *ctx, const plant *pl, const double *q, const double *v, double *a,
                      double *b, double *E)
{
    if (!pl->m) {
        true_accel(q, v, a, b);
        *E = true_energy(q, v);
        return 0;
    }
    const double h = 1e-5, zero[2] = {0, 0};
    physics_learned l, lp, lm;
    double qp[2], qm[2];
    if (physics_learned_at(ctx, pl->m, q, v, &l) != ND_OK) return -1;
    for (int i = 0; i < 2; i++) qp[i] = q[i] + h * l.dHdp[i], qm[i] = q[i] - h * l.dHdp[i];
    if (physics_learned_at(ctx, pl->m, qp, zero, &lp) != ND_OK ||
        physics_learned_at(ctx, pl->m, qm, zero, &lm) != ND_OK)
        return -1;
    for (int i = 0; i < 2; i++) {
        a[i] = b[i] = 0;
        for (int j = 0; j < 2; j++) {
            double dminv = (lp.minv[i * 2 + j] - lm.minv[i * 2 + j]) / (2 * h);
            a[i] += dminv * l.p[j] - l.minv[i * 2 + j] * l.dHdq[j];
            b[i] += l.minv[i * 2 + j] * l.g[j];
        }
    }
    *E = (l.H - pl->h_up) / pl->scale;
    return 0;
}

/* The LQR's weights Q = diag(q1, q2, 1, 1), R = 1, and the cost-to-go below which it takes over.
 * On the learned model the elbow angle weighs 100x more: the learned linearisation upright is
 * off by up to 15%, and with (10, 10) the true system under its gains is unstable (spectral radius
 * ~1.003 per step; with (10, 1000) 0.994; setup prints it). */
typedef struct {
    double q1, q2, cost;
} lqr_weights;
static const lqr_weights TRUE_WEIGHTS = {10, 10, 1e4}, LEARNED_WEIGHTS = {10, 1000, 1e5};

typedef struct {
    plant pl;
    lqr_weights w;
    double K[4];     // u = -K (y - y*), y = (q, qdot)
    double P[4 * 4]; // the Riccati solution
} acrobot_control;

static void matmul4(const double *a, const double *b, double *c) // c = a b, 4 x 4
{
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            c[i * 4 + j] = 0;
            for (int k = 0; k < 4; k++) c[i * 4 + j] += a[i * 4 + k] * b[k * 4 + j];
        }
}

/* A = df/dy and B = df/du of the plant's field in y = (q, qdot) at (q*, 0), by central
 * differences */
static int linearise(nd_ctx *ctx, const plant *pl, double *A, double *B)
{
    const double y0[4] = {M_PI, 0, 0, 0}, h = 1e-5;
    double a[2], b[2], ap[2], am[2], E;
    memset(A, 0, 16 * sizeof *A);
    A[0 * 4 + 2] = A[1 * 4 + 3] = 1;
    for (int j = 0; j < 4; j++) {
        double yp[4], ym[4];
        memcpy(yp, y0, sizeof yp), memcpy(ym, y0, sizeof ym);
        yp[j] += h, ym[j] -= h;
        if (plant_eval(ctx, pl, yp, yp + 2, ap, b, &E) != 0 ||
            plant_eval(ctx, pl, ym, ym + 2, am, b, &E) != 0)
            return -1;
        for (int i = 0; i < 2; i++) A[(2 + i) * 4 + j] = (ap[i] - am[i]) / (2 * h);
    }
    if (plant_eval(ctx, pl, y0, y0 + 2, a, b, &E) != 0) return -1;
    B[0] = B[1] = 0, B[2] = b[0], B[3] = b[1];
    return 0;
}

/* zero-order hold at DT: Ad = exp(A DT), Bd = int_0^DT exp(A s) ds B, by their series */
static void discretise(const double *A, const double *B, double *Ad, double *Bd)
{
    double term[16], next[16], S[16];
    for (int i = 0; i < 16; i++) Ad[i] = term[i] = (i % 5 == 0), S[i] = (i % 5 == 0) * DT;
    for (int k = 1; k <= 12; k++) {
        matmul4(term, A, next);
        for (int i = 0; i < 16; i++) {
            term[i] = next[i] * DT / k; // (A DT)^k / k!
            Ad[i] += term[i];
            S[i] += term[i] * DT / (k + 1); // A^k DT^(k+1) / (k+1)!
        }
    }
    for (int i = 0; i < 4; i++) {
        Bd[i] = 0;
        for (int k = 0; k < 4; k++) Bd[i] += S[i * 4 + k] * B[k];
    }
}

/* discrete LQR: P = Q + Ad' P Ad - Ad' P Bd (R + Bd' P Bd)^-1 Bd' P Ad, iterated */
static void lqr(const double *Ad, const double *Bd, acrobot_control *c)
{
    const double Q[4] = {c->w.q1, c->w.q2, 1, 1}, R = 1;
    double *P = c->P, PA[16], PB[4], Pn[16];
    for (int i = 0; i < 16; i++) P[i] = (i % 5 == 0) * Q[i / 5];
    for (int it = 0; it < 100000; it++) {
        matmul4(P, Ad, PA);
        for (int i = 0; i < 4; i++) {
            PB[i] = 0;
            for (int k = 0; k < 4; k++) PB[i] += P[i * 4 + k] * Bd[k];
        }
        double s = R;
        for (int i = 0; i < 4; i++) s += Bd[i] * PB[i];
        for (int j = 0; j < 4; j++) { // K = Bd' P Ad / s
            c->K[j] = 0;
            for (int i = 0; i < 4; i++) c->K[j] += Bd[i] * PA[i * 4 + j];
            c->K[j] /= s;
        }
        double change = 0;
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) {
                double v = (i == j) * Q[i];
                for (int k = 0; k < 4; k++) v += Ad[k * 4 + i] * PA[k * 4 + j];
                double bpa_i = 0, bpa_j = 0; // (Bd' P Ad)_i, _j
                for (int k = 0; k < 4; k++) bpa_i += PB[k] * Ad[k * 4 + i];
                for (int k = 0; k < 4; k++) bpa_j += PB[k] * Ad[k * 4 + j];
                v -= bpa_i * bpa_j / s;
                change = fmax(change, fabs(v - P[i * 4 + j]));
                Pn[i * 4 + j] = v;
            }
        double big = 0; // keep P symmetric: the plain recursion loses it and diverges
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++)
                P[i * 4 + j] = (Pn[i * 4 + j] + Pn[j * 4 + i]) / 2,
                          big = fmax(big, fabs(P[i * 4 + j]));
        if (change < 1e-10 * big) break;
    }
}

/* the spectral radius of Ad - Bd K (per control period), as ||(Ad - Bd K)^k||^(1/k) at k = 65536 */
static double closed_loop_radius(const double *Ad, const double *Bd, const double *K)
{
    double M[16], X[16], Y[16], log_scale = 0;
    for (int i = 0; i < 16; i++) M[i] = Ad[i] - Bd[i / 4] * K[i % 4];
    memcpy(X, M, sizeof X);
    for (int s = 0; s < 16; s++) { // X = M^(2^s), rescaled
        matmul4(X, X, Y);
        double big = 0;
        for (int i = 0; i < 16; i++) big = fmax(big, fabs(Y[i]));
        for (int i = 0; i < 16; i++) X[i] = Y[i] / big;
        log_scale = 2 * log_scale + log(big);
    }
    return exp(log_scale / 65536);
}

static int setup(nd_ctx *ctx, const symoden_model *m, bool true_model, void **state)
{
    acrobot_control *c = calloc(1, sizeof *c);
    double A[16], B[4], Ad[16], Bd[4];
    if (!c) return nd_fail(ctx, ND_ERR_NOMEM, "acrobot: out of memory"), -1;
    *state = c;
    c->pl = (plant){.m = true_model ? NULL : m, .scale = 1};
    c->w = true_model ? TRUE_WEIGHTS : LEARNED_WEIGHTS;
    if (!true_model) {
        physics_learned up, down;
        if (physics_learned_at(ctx, m, (double[]){M_PI, 0}, (double[]){0, 0}, &up) != ND_OK ||
            physics_learned_at(ctx, m, (double[]){0, 0}, (double[]){0, 0}, &down) != ND_OK)
            return -1;
        c->pl.h_up = up.H, c->pl.scale = down.g[1];
    }
    if (linearise(ctx, &c->pl, A, B) != 0) return -1;
    discretise(A, B, Ad, Bd);
    lqr(Ad, Bd, c);
    plant truth = {.scale = 1};
    double At[16], Bt[4], Adt[16], Bdt[4];
    if (linearise(ctx, &truth, At, Bt) != 0) return -1;
    discretise(At, Bt, Adt, Bdt);
    fprintf(stderr,
            "acrobot: LQR from the %s model: K = (%.1f, %.1f, %.1f, %.1f); the true system "
            "linearised upright under it: spectral radius %.4f per %.0f ms (stable below 1)\n",
            true_model ? "true" : "learned", c->K[0], c->K[1], c->K[2], c->K[3],
            closed_loop_radius(Adt, Bdt, c->K), DT * 1e3);
    return 0;
}

static int control(nd_ctx *ctx, const symoden_model *m, void *state, const double *q,
                   const double *qdot, double *u)
{
    (void)m;
    const acrobot_control *c = state;
    double a[2], b[2], E, cost = 0;
    if (plant_eval(ctx, &c->pl, q, qdot, a, b, &E) != 0) return -1;
    double dy[4] = {physics_wrap(q[0] - M_PI), physics_wrap(q[1]), qdot[0], qdot[1]};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) cost += dy[i] * c->P[i * 4 + j] * dy[j];
    if (cost < c->w.cost) {
        u[0] = 0;
        for (int i = 0; i < 4; i++) u[0] -= c->K[i] * dy[i];
    } else { // the elbow's acceleration linearised to v (Spong's collocated PFL), v pumps energy
        double pump = fmax(-1, fmin(1, -E * qdot[0] / E_SCALE));
        double v = -K_P * dy[1] - K_D * qdot[1] + ALPHA * K_P * pump;
        u[0] = (v - a[1]) / b[1];
    }
    u[0] = fmax(-UMAX, fmin(UMAX, u[0]));
    return 0;
}

int main(int argc, char **argv)
{
    const physics_program prog = {
        .name = "acrobot",
        .summary = "Symplectic ODE-Net learns the MuJoCo Acrobot and swings it up.",
        .xml = "acrobot.xml",
        .n = 2,
        .nu = 1,
        .qpos_lo = {-M_PI, -M_PI},
        .qpos_hi = {M_PI, M_PI},
        .qvel_lo = {-4, -4},
        .qvel_hi = {4, 4},
        .ctrl_lo = {-2},
        .ctrl_hi = {2},
        .q_goal = {M_PI, 0},
        .q_start = {0, 0},
        .start_spread = 0.2,
        .control_seconds = 40,
        .iters = 500,
        .hidden = 32,
        .train_traj = 512,
        .upright_traj = 128,
        .upright_spread = 0.3,
        .upright_vel = 1,
        .lr = 3e-3,
        .true_potential = true_potential,
        .control_setup = setup,
        .control = control,
        .true_controller = true,
    };
    return physics_main(&prog, argc, argv);
}
