#!/bin/sh
# SPDX-License-Identifier: MIT
# examples/latent_ode_resume.sh PROGRAM: latent_ode's --save / --resume (meson test
# latent_ode_resume). Two epochs in one run must give the same test MSEs and last-epoch loss as
# one epoch, --save, then --resume for one more (the optimizers' state and the schedules are
# restored, and each epoch's batches and noise come from the seed and the epoch); resuming a
# truncated checkpoint, or one trained on another task or seed, must fail with status 1 and a message
# naming the file. Prints a summary in Check's format, which .ci/run counts.
set -u
prog=$1
. "$(dirname "$0")/script_checks.sh"
args="--task extrap --n-series 20 --batch 8 --json"
"$prog" $args --epochs 2 >"$dir/full.json" 2>"$dir/log"
"$prog" $args --epochs 1 --save "$dir/c.safetensors" >/dev/null 2>>"$dir/log"
"$prog" $args --epochs 1 --resume "$dir/c.safetensors" >"$dir/resumed.json" 2>>"$dir/log"
# the summary's test MSEs, and the last epoch's loss
pick() { sed -e 's/.*\("latent_ode_test_mse": [^,]*, "gru_dt_test_mse": [^,]*\).*/\1/' "$1"; }
last_loss() { sed -e 's/.*"latent_loss": \[\([^]]*\)\].*/\1/' -e 's/.*, //' "$1"; }
a=$(pick "$dir/full.json") b=$(pick "$dir/resumed.json")
check "resumed test MSEs equal the uninterrupted run's ($a; $b)" same "$a" "$b"
la=$(last_loss "$dir/full.json") lb=$(last_loss "$dir/resumed.json")
check "resumed last-epoch loss equals the uninterrupted run's ($la; $lb)" same "$la" "$lb"
check "the resumed run counts the checkpoint's epoch" grep -q '"epochs_before": 1' "$dir/resumed.json"
# bad checkpoints: an error naming the file, status 1
head -c 100 "$dir/c.safetensors" >"$dir/cut.safetensors"
refused() { # refused FLAGS...: status 1 and a message naming a .safetensors file
    status=0
    "$prog" --n-series 20 --batch 8 --epochs 1 "$@" >/dev/null 2>"$dir/err" || status=$?
    [ "$status" = 1 ] && grep -q "safetensors" "$dir/err"
}
check "a truncated checkpoint is refused" refused --task extrap --resume "$dir/cut.safetensors"
check "a checkpoint of another task is refused" refused --task interp --resume "$dir/c.safetensors"
check "a checkpoint of another seed is refused" refused --task extrap --seed 7 --resume "$dir/c.safetensors"
check_summary
