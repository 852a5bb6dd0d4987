#!/usr/bin/env bash
# bench/dist_scaling.sh [BUILD_DIR]: data-parallel scaling on this machine, as JSON lines.
# Runs examples/odenet (the 10k MNIST digits, 512 images, batch 64, 1 epoch) and examples/cnf2d
# (8gaussians, batch 512, 20 iterations) on 1 and then on 2 ranks through tests/mpirun.sh, with
# the same global batch, and prints for each run the throughput (images or points per second),
# rank 0's time in gradient all-reduces (communication) and each rank's time waiting for the
# others (load imbalance); then the 2-rank / 1-rank throughput ratio per program, measured in this
# one run; then bench_allreduce on 2 ranks for the two models' parameter counts. The first line
# records the machine's cores and load average: on a shared machine the figures are noisy.
# Usage: bench/dist_scaling.sh build   (a build with MPI; run from the source directory)
set -euo pipefail
build=${1:-build}
src=$(cd "$(dirname "$0")/.." && pwd)
mpirun_sh=$src/tests/mpirun.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# num FILE KEY: the number after "KEY": in a one-object JSON file
num() { sed -n "s/.*\"$2\": *\([-0-9.eE+]*\).*/\1/p" "$1" | head -1; }
# list FILE KEY: the array after "KEY": as text
list() { sed -n "s/.*\"$2\": *\(\[[^]]*\]\).*/\1/p" "$1" | head -1; }

real=double
if grep -q '#define ND_REAL_FLOAT' "$build/nd_config.h"; then real=float; fi
printf '{"bench": "machine", "cores": %d, "loadavg_1_5_15": "%s", "real": "%s"}\n' "$(nproc)" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$real"

declare -A rate params
for prog in odenet cnf2d; do
    for np in 1 2; do
        out=$tmp/$prog-$np.json
        if [[ $prog == odenet ]]; then
            "$mpirun_sh" "$np" "$build/examples/odenet" --data "$src/data/mnist-digits-10k" \
                --limit 512 --batch 64 --epochs 1 --json >"$out" 2>"$tmp/$prog-$np.log"
            r=$(num "$out" images_per_second)
            secs=$(num "$out" seconds_per_epoch)
            unit=images
        else
            "$mpirun_sh" "$np" "$build/examples/cnf2d" --iters 20 --batch 512 --json >"$out" \
                2>"$tmp/$prog-$np.log"
            ms=$(num "$out" ms_per_iter)
            r=$(awk -v ms="$ms" 'BEGIN { printf "%.6g", 512 * 1000 / ms }')
            secs=$(awk -v ms="$ms" 'BEGIN { printf "%.6g", ms * 20 / 1000 }')
            unit=points
        fi
        comm=$(num "$out" comm_seconds)
        rate[$prog-$np]=$r
        params[$prog]=$(num "$out" parameters)
        printf '{"bench": "scaling", "program": "%s", "ranks": %d, "%s_per_second": %s, "train_seconds": %s, "comm_seconds": %s, "comm_fraction": %s, "wait_seconds_per_rank": %s, "parameters": %s}\n' \
            "$prog" "$np" "$unit" "$r" "$secs" "$comm" \
            "$(awk -v c="$comm" -v s="$secs" 'BEGIN { printf "%.4f", c / s }')" \
            "$(list "$out" wait_seconds_per_rank)" "${params[$prog]}"
    done
    printf '{"bench": "speedup", "program": "%s", "ranks": 2, "throughput_ratio_2_over_1": %s}\n' \
        "$prog" "$(awk -v a="${rate[$prog-2]}" -v b="${rate[$prog-1]}" 'BEGIN { printf "%.3f", a / b }')"
done
"$mpirun_sh" 2 "$build/bench/bench_allreduce" --elems "${params[odenet]},${params[cnf2d]}" --reps 200
