/* SPDX-License-Identifier: MIT
 * examples/odenet.c: an ODE-Net image classifier for the MNIST family (Chen et al. 2018, section
 * 7.1, scaled down for a CPU): downsampling convolutions, one ODE block whose dynamics are a
 * small conv-net that sees t as an extra input channel, average pooling and a linear head.
 *   conv 3x3 1->16, GroupNorm, relu -> conv 4x4/2 16->16, GroupNorm, relu -> conv 4x4/2 16->16
 *   -> ODE block over t in [0, 1]: dx/dt = GN(conv 3x3 16->16(relu(GN(conv 3x3 [x, t] 17->16))))
 *   -> GroupNorm, relu, average pool 2x2 to 3x3, linear 144->10
 * (The paper pools to 1x1 over 64 channels; with 16 channels that head learned far too slowly:
 * 33% test accuracy after 94 steps on the MNIST digits, against 86-90% pooled to 3x3.)
 * dopri5 with the adjoint; the adjoint's error test uses --norm (rms or seminorm). Adam (lr 2e-3
 * falling to 0 along a cosine), batch 64, cross-entropy, pixels standardised as in
 * examples/mnist.c: the two share one driver (examples/classify/driver.c: flags, data, loaders,
 * the epoch loop, --save / --resume, the summary), and this file holds only the model. Per epoch it
 * prints the accuracy and the mean function evaluations per batch of the forward pass (NFE-F) and
 * of the adjoint (NFE-B): the seminorm's saving; B-par% is the share of the adjoint's error tests
 * that the parameter or time adjoint bound under the RMS norm (0 under the seminorm, which
 * leaves them out): near 100, the seminorm can save steps.
 *
 * Good looks like (2-core Xeon, double): Fashion-MNIST (Debian's dataset-fashion-mnist) >= 89%
 * test accuracy in 2 epochs; the 10k real MNIST digits (data/mnist-digits-10k) >= 97%.
 * Each epoch of Fashion-MNIST takes a few minutes here.
 * Run:
 *   ./build/examples/odenet --norm seminorm                           # Fashion-MNIST, 2 epochs
 *   ./build/examples/odenet --data data/mnist-digits-10k --epochs 8
 *   ./build/examples/odenet --limit 256 --epochs 1                    # CI smoke test
 * Flags (--help lists them): --data DIR --epochs N --batch B --lr X --seed S
 * --norm rms|seminorm|seminorm_keep_t --rtol R --atol A --save FILE --resume FILE --limit N
 * --json. Exit status: 0 when it ran, 1 on a library error, missing data or a bad checkpoint, 2 on
 * bad flags.
 * Data-parallel: `mpirun -np N ./build/examples/odenet ...` (README, "Data-parallel training over
 * MPI") splits each global batch of --batch across the N ranks and averages their gradients;
 * rank 0 alone prints and saves; the JSON adds per-rank NFE and waiting times.
 */
#include <stdio.h>

#include "data.h"
#include "driver.h"
#include "nodal.h"

// ------------------------------------------------------------------------------------------------
// model: downsampling, the ODE block, the head; one Sequential (state names "0.weight", ...,
// "7.func.0.weight" for the dynamics)

#define WIDTH 16 /* channels inside the ODE block */

/* the dynamics: [x, t] (B, 17, 7, 7) -> dx/dt (B, 16, 7, 7) */
static nd_module *dynamics_create(nd_ctx *ctx, nd_rng *rng)
{
    nd_module *layers[] = {
        nd_conv2d_create(ctx, WIDTH + 1, WIDTH, 3, 1, 1, true, rng), // t is the 17th channel
        nd_group_norm_create(ctx, 4, WIDTH, 1e-5),
        nd_activation_create(ctx, ND_ACT_RELU),
        nd_conv2d_create(ctx, WIDTH, WIDTH, 3, 1, 1, true, rng),
        nd_group_norm_create(ctx, 4, WIDTH, 1e-5),
    };
    return nd_sequential_create(ctx, (int)(sizeof layers / sizeof *layers), layers);
}

/* the solver of the ODE block, from the flags */
typedef struct {
    int norm; // nd_norm_kind of the adjoint's error test
    double rtol, atol;
    nd_ode_options ode;
} solver_flags;

static nd_module *model_create(nd_ctx *ctx, nd_rng *rng, void *user)
{
    solver_flags *s = user; // dopri5 both ways; the adjoint's error test under the chosen norm
    nd_ode_options *ode = &s->ode;
    *ode = ND_ODE_DEFAULT;
    ode->solver.rtol = ode->adjoint.rtol = s->rtol;
    ode->solver.atol = ode->adjoint.atol = s->atol;
    ode->adjoint.norm = (nd_norm_kind)s->norm;
    nd_module *layers[] = {
        nd_conv2d_create(ctx, 1, WIDTH, 3, 1, 1, true, rng),     // 0: -> (B, 16, 28, 28)
        nd_group_norm_create(ctx, 4, WIDTH, 1e-5),               // 1
        nd_activation_create(ctx, ND_ACT_RELU),                  // 2
        nd_conv2d_create(ctx, WIDTH, WIDTH, 4, 2, 1, true, rng), // 3: -> (B, 16, 14, 14)
        nd_group_norm_create(ctx, 4, WIDTH, 1e-5),               // 4
        nd_activation_create(ctx, ND_ACT_RELU),                  // 5
        nd_conv2d_create(ctx, WIDTH, WIDTH, 4, 2, 1, true, rng), // 6: -> (B, 16, 7, 7)
        nd_odeblock_create(ctx, dynamics_create(ctx, rng), ND_TIME_CONCAT, 0.0, 1.0, ode), // 7
        nd_group_norm_create(ctx, 4, WIDTH, 1e-5),                                         // 8
        nd_activation_create(ctx, ND_ACT_RELU),                                            // 9
        nd_avg_pool2d_create(ctx, 2, 2),                        // 10: -> (B, 16, 3, 3)
        nd_flatten_create(ctx),                                 // 11: -> (B, 144)
        nd_linear_create(ctx, WIDTH * 9, N_CLASSES, true, rng), // 12: -> (B, 10) logits
    };
    return nd_sequential_create(ctx, (int)(sizeof layers / sizeof *layers), layers);
}
#define ODE_LAYER 7

/* the ODE block's function evaluations of the last training step, forward and adjoint, and the
 * share of the adjoint's error tests the parameter or time adjoint bound (the steps the seminorm
 * can save: 0 under the seminorm, which leaves those blocks out) */
static void nfe_metrics(const nd_module *model, double *values, void *user)
{
    (void)user;
    const nd_module *block = model->children[ODE_LAYER].module;
    // after the backward, before the reset
    const nd_ode_stats *st = nd_odeblock_stats(NULL, block);
    values[0] = (double)st->forward.nfe;
    values[1] = (double)st->backward.nfe;
    values[2] = 100 * nd_limit_seminorm_share(&st->backward.limit);
}

static void describe(FILE *out, void *user)
{
    const solver_flags *s = user;
    fprintf(out, "; dopri5 rtol %g atol %g, adjoint norm %s", s->rtol, s->atol,
            nd_ode_norm_name((nd_norm_kind)s->norm));
}

static void json_members(json_writer *w, void *user)
{
    const solver_flags *s = user;
    json_str(w, "norm", nd_ode_norm_name((nd_norm_kind)s->norm));
    json_num(w, "rtol", s->rtol);
    json_num(w, "atol", s->atol);
}

int main(int argc, char **argv)
{
    solver_flags s = {.norm = ND_NORM_SEMINORM, .rtol = 1e-3, .atol = 1e-3};
    const flag_spec flags[] = {
        FLAG_NORM(&s.norm, "the adjoint's norm"),
        FLAG_POSITIVE("rtol", &s.rtol, "relative tolerance of both solves"),
        FLAG_POSITIVE("atol", &s.atol, "absolute tolerance of both solves"),
    };
    const classify_program prog = {
        .name = "odenet",
        .summary = "An ODE-Net classifies MNIST-family images (Fashion-MNIST by default).",
        .model_create = model_create,
        .flags = flags,
        .n_flags = FLAGS_N(flags),
        .n_metrics = 3,
        .metric_labels = {"NFE-F", "NFE-B", "B-par%"},
        .metric_keys = {"nfe_forward_per_batch", "nfe_backward_per_batch",
                        "backward_steps_bound_by_param_or_time_pct"},
        .metrics = nfe_metrics,
        .describe = describe,
        .json_members = json_members,
        .user = &s,
    };
    return classify_main(&prog, argc, argv);
}
