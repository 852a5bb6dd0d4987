/* SPDX-License-Identifier: MIT
 * examples/models/hopper_data.h: Rubanova, Chen and Duvenaud's MuJoCo Hopper data set (NeurIPS
 * 2019, section 4.3), generated in C: the hopper of examples/models/mujoco/hopper.xml (a planar
 * torso, pelvis, thigh, leg and foot over a floor, as dm_control's; 7 degrees of freedom, no
 * actuation) dropped from random initial states (root height and x offset U(0, 0.5), every angle
 * U(-2, 2) rad, every velocity U(-5, 5)) and recorded at 100 times 10 ms apart: the state is the
 * 7 positions and 7 velocities, 14 channels, each scaled to [0, 1] over the data set (their
 * normalisation). Each series then observes a random half of its times (seeded). The simulation
 * runs once per (n, seed) and is cached in a safetensors file, written atomically, checked on
 * reading (its metadata and a checksum of the values): a corrupt or foreign cache is an error
 * that names the file, never silently replaced. Not part of the library.
 */
#ifndef EXAMPLES_MODELS_HOPPER_DATA_H
#define EXAMPLES_MODELS_HOPPER_DATA_H

#include "latent.h"

#define HOPPER_POINTS 100
#define HOPPER_CHANNELS 14
#define HOPPER_DT 0.01      /* seconds between recorded points */
#define HOPPER_NOISE 1e-3   /* the likelihood's fixed standard deviation (Rubanova's) */
#define HOPPER_OBSERVED 0.5 /* the fraction of times each series observes */

/* The channels' names: "rootz", "rootx", "rooty", "waist", "hip", "knee", "ankle", then each
 * with a "d" in front for its velocity ("drootz", ...). */
extern const char *const hopper_channel_names[HOPPER_CHANNELS];

/* True when this build has MuJoCo (examples/common/mujoco_sim.h). */
bool hopper_available(void);

/* Fills d with n series from seed (t in seconds, values scaled to [0, 1]). Reads cache_path when
 * it exists (metadata n and seed must match), else simulates and writes it (a cache that cannot
 * be written is a warning on stderr, the data are returned); *generated says which. 0, or -1 with a
 * message in err (err_size > 0) naming the cache file and the problem. */
int hopper_load(nd_ctx *ctx, series_data *d, int n, uint64_t seed, const char *cache_path,
                bool *generated, char *err, size_t err_size);

/* The raw simulation behind hopper_load: n trajectories (n, HOPPER_POINTS, HOPPER_CHANNELS)
 * into states; 0 or -1 with a message in err. */
int hopper_simulate(int n, uint64_t seed, double *states, char *err, size_t err_size);

#endif
