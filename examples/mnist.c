/* SPDX-License-Identifier: MIT
 * examples/mnist.c: an image classifier for the MNIST family (28x28 grey images, 10 classes).
 * Trains a small conv-net with Adam (lr 2e-3 decayed to 0 along a cosine over the run, batch 64,
 * cross-entropy) on pixels standardised by the training set's mean and deviation:
 *   conv 3x3 1->32, relu, maxpool 2 -> conv 3x3 32->64, relu, maxpool 2 -> linear 3136->10
 * (50,186 parameters) on Fashion-MNIST by default (Debian's dataset-fashion-mnist), or on any
 * directory of IDX files with the usual names (train-images-idx3-ubyte[.gz], t10k-..., plain or
 * gz).
 *
 * Good looks like (measured on a shared 2-core Xeon, double, OPENBLAS_NUM_THREADS=1):
 *   Fashion-MNIST, 2 epochs (the default): test accuracy 90.6% (88.3% after epoch 1);
 *     ~215 s per epoch, 280 images/s.  (16/32 channels reached only 89.5%: 2.3x faster.)
 *   MNIST digits 10k (8,000 train / 2,000 test), --epochs 6: test accuracy ~98% (>= 97%).
 * Run:
 *   ./build/examples/mnist                                   # Fashion-MNIST, 2 epochs
 *   ./build/examples/mnist --data data/mnist-digits-10k --epochs 6
 *   ./build/examples/mnist --limit 512 --epochs 1            # CI smoke test, a few seconds
 *   ./build/examples/mnist --save m.safetensors; ./build/examples/mnist --epochs 0 --resume
 * m.safetensors Flags (--help lists them): --data DIR --epochs N --batch B --lr X --seed S --save
 * FILE
 * --resume FILE --json, and --limit N: only the first N training and test images (smoke tests).
 * This file holds the model only: the driver (examples/classify/driver.c, shared with odenet.c)
 * does the flags, data, loaders, the epoch loop, checkpoints and the summary. A checkpoint holds
 * the model (params + buffers) and Adam's state, so --resume continues training.
 * Progress goes to stderr: one line updated in place on a terminal, one line per epoch otherwise;
 * --json prints one summary object on stdout. Exit status: 0 when it ran (good or not), 1 on a
 * library error, missing data or a bad checkpoint, 2 on bad flags.
 * Data-parallel: `mpirun -np N ./build/examples/mnist ...` (README, "Data-parallel training over
 * MPI") splits each global batch of --batch across the N ranks and averages their gradients;
 * rank 0 alone prints and saves; the JSON adds each rank's waiting time.
 */
#include "data.h"
#include "driver.h"
#include "nodal.h"

#ifndef C1
#define C1 32 // channels of the first conv layer
#endif
#ifndef C2
#define C2 64 // channels of the second conv layer
#endif

// two conv blocks and a linear classifier, as one Sequential (state names "0.weight", ...)
static nd_module *model_create(nd_ctx *ctx, nd_rng *rng, void *user)
{
    (void)user;
    nd_module *layers[] = {
        nd_conv2d_create(ctx, 1, C1, 3, 1, 1, true, rng),  // 0: (B, 1, 28, 28) -> (B, C1, 28, 28)
        nd_activation_create(ctx, ND_ACT_RELU),            // 1
        nd_max_pool2d_create(ctx, 2, 2),                   // 2: -> (B, C1, 14, 14)
        nd_conv2d_create(ctx, C1, C2, 3, 1, 1, true, rng), // 3: -> (B, C2, 14, 14)
        nd_activation_create(ctx, ND_ACT_RELU),            // 4
        nd_max_pool2d_create(ctx, 2, 2),                   // 5: -> (B, C2, 7, 7)
        nd_flatten_create(ctx),                            // 6: -> (B, C2 * 49)
        nd_linear_create(ctx, C2 * 7 * 7, N_CLASSES, true, rng), // 7: -> (B, 10) logits
    };
    return nd_sequential_create(ctx, (int)(sizeof layers / sizeof *layers), layers);
}

int main(int argc, char **argv)
{
    const classify_program prog = {
        .name = "mnist",
        .summary = "A conv-net classifies MNIST-family images (Fashion-MNIST by default).",
        .model_create = model_create,
    };
    return classify_main(&prog, argc, argv);
}
