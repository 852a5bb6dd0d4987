#!/bin/sh
# SPDX-License-Identifier: MIT
# examples/latent_ode_resume.sh PROGRAM: latent_ode's --save / --resume (meson test
# latent_ode_resume). Two epochs in one run must give the same test MSEs and last-epoch loss as
# one epoch, --save, then --resume for one more (the optimizers' state and the schedules are
# restored, and each epoch's batches and noise come from the seed and the epoch); resuming a
# truncated checkpoint, or one trained on another task, must fail with status 1 and a message
# naming the file.
set -eu
prog=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
args="--task extrap --n-series 20 --batch 8 --json"
"$prog" $args --epochs 2 >"$dir/full.json" 2>"$dir/log"
"$prog" $args --epochs 1 --save "$dir/c.safetensors" >/dev/null 2>>"$dir/log"
"$prog" $args --epochs 1 --resume "$dir/c.safetensors" >"$dir/resumed.json" 2>>"$dir/log"
# the summary's test MSEs, and the last epoch's loss
pick() { sed -e 's/.*\("latent_ode_test_mse": [^,]*, "gru_dt_test_mse": [^,]*\).*/\1/' "$1"; }
last_loss() { sed -e 's/.*"latent_loss": \[\([^]]*\)\].*/\1/' -e 's/.*, //' "$1"; }
a=$(pick "$dir/full.json") b=$(pick "$dir/resumed.json")
la=$(last_loss "$dir/full.json") lb=$(last_loss "$dir/resumed.json")
if [ "$a" != "$b" ] || [ "$la" != "$lb" ]; then
    echo "resumed run differs: two epochs: $a, loss $la; one + one resumed: $b, loss $lb"
    exit 1
fi
grep -q '"epochs_before": 1' "$dir/resumed.json" || { echo "epochs_before is not 1"; exit 1; }
# bad checkpoints: an error naming the file, status 1, nothing trained
head -c 100 "$dir/c.safetensors" >"$dir/cut.safetensors"
for bad in "--task extrap --resume $dir/cut.safetensors" "--task interp --resume $dir/c.safetensors"; do
    status=0
    "$prog" --n-series 20 --batch 8 --epochs 1 $bad >/dev/null 2>"$dir/err" || status=$?
    if [ "$status" != 1 ] || ! grep -q "safetensors" "$dir/err"; then
        echo "latent_ode $bad: status $status, message: $(cat "$dir/err")"
        exit 1
    fi
done
echo "resume exact: $a, loss $la; bad checkpoints refused"
