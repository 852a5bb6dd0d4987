#!/bin/sh
# SPDX-License-Identifier: MIT
# examples/latent_ode_hopper_cache.sh PROGRAM: latent_ode --data hopper's cache (meson test
# latent_ode_hopper_cache). The first run simulates and writes the cache, the second reads it and
# must report the same test MSEs; a truncated cache, a cache with one value changed (the
# checksum), and a cache of another size are errors (status 1, a message naming the file), and
# none of them is overwritten. Prints a summary in Check's format, which .ci/run counts; skipped
# (77) when the build has no MuJoCo.
set -u
prog=$1
. "$(dirname "$0")/script_checks.sh"
args="--data hopper --n-series 10 --batch 4 --epochs 1 --json"
status=0
"$prog" $args --cache "$dir/h.safetensors" >"$dir/first.json" 2>"$dir/err" || status=$?
if [ "$status" = 1 ] && grep -q "needs MuJoCo" "$dir/err"; then
    echo "SKIP: this build has no MuJoCo"
    exit 77
fi
check "the first run simulates, trains and writes the cache" [ "$status" = 0 -a -s "$dir/h.safetensors" ]
"$prog" $args --cache "$dir/h.safetensors" >"$dir/second.json" 2>"$dir/err"
pick() { sed -e 's/.*\("latent_ode_test_mse": [^,]*, "gru_dt_test_mse": [^,]*\).*/\1/' "$1"; }
check "the cached data train as the simulated ones" same "$(pick "$dir/first.json")" "$(pick "$dir/second.json")"
status=0 # a cache that cannot be written (its directory missing): a warning, the run goes on
"$prog" $args --cache "$dir/missing/h.safetensors" >"$dir/uncached.json" 2>"$dir/err" || status=$?
uncached_ok() {
    [ "$status" = 0 ] && grep -q "warning: .*missing/h.safetensors" "$dir/err" &&
        same "$(pick "$dir/first.json")" "$(pick "$dir/uncached.json")"
}
check "an unwritable cache is a warning and the run trains as before" uncached_ok
size=$(wc -c <"$dir/h.safetensors")
head -c $((size / 2)) "$dir/h.safetensors" >"$dir/cut.safetensors"
cp "$dir/h.safetensors" "$dir/flip.safetensors" # one byte near the end: a value, not the header
printf 'Z' | dd of="$dir/flip.safetensors" bs=1 seek=$((size - 3)) conv=notrunc 2>/dev/null
cp "$dir/h.safetensors" "$dir/other.safetensors"
refused() { # refused NAME N: --cache NAME.safetensors with N series fails naming it, untouched
    cp "$dir/$1.safetensors" "$dir/before"
    status=0
    "$prog" --data hopper --n-series "$2" --batch 4 --epochs 1 --cache "$dir/$1.safetensors" \
        >/dev/null 2>"$dir/err" || status=$?
    [ "$status" = 1 ] && grep -q "$1.safetensors" "$dir/err" && cmp -s "$dir/before" "$dir/$1.safetensors"
}
check "a truncated cache is refused and kept" refused cut 10
check "a cache with a value changed is refused and kept" refused flip 10
check "a cache of another size is refused and kept" refused other 12
check_summary
