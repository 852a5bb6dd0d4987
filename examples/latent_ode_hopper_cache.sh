#!/bin/sh
# SPDX-License-Identifier: MIT
# examples/latent_ode_hopper_cache.sh PROGRAM: latent_ode --data hopper's cache (meson test
# latent_ode_hopper_cache). The first run simulates and writes the cache, the second reads it and
# must report the same test MSEs; a truncated cache, a cache with one value changed (the
# checksum), and a cache of another size are errors (status 1, a message naming the file), and
# none of them is overwritten. Skipped (77) when the build has no MuJoCo.
set -eu
prog=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
args="--data hopper --n-series 10 --batch 4 --epochs 1 --json"
status=0
"$prog" $args --cache "$dir/h.safetensors" >"$dir/first.json" 2>"$dir/err" || status=$?
if [ "$status" = 1 ] && grep -q "needs MuJoCo" "$dir/err"; then exit 77; fi
[ "$status" = 0 ] || { cat "$dir/err"; exit 1; }
"$prog" $args --cache "$dir/h.safetensors" >"$dir/second.json" 2>"$dir/err"
pick() { sed -e 's/.*\("latent_ode_test_mse": [^,]*, "gru_dt_test_mse": [^,]*\).*/\1/' "$1"; }
[ "$(pick "$dir/first.json")" = "$(pick "$dir/second.json")" ] ||
    { echo "cached data train differently: $(pick "$dir/first.json") vs $(pick "$dir/second.json")"; exit 1; }
size=$(wc -c <"$dir/h.safetensors")
head -c $((size / 2)) "$dir/h.safetensors" >"$dir/cut.safetensors"
cp "$dir/h.safetensors" "$dir/flip.safetensors" # one byte near the end: a value, not the header
printf 'Z' | dd of="$dir/flip.safetensors" bs=1 seek=$((size - 3)) conv=notrunc 2>/dev/null
cp "$dir/h.safetensors" "$dir/other.safetensors"
for bad in cut flip other; do
    n=10
    [ "$bad" = other ] && n=12
    cp "$dir/$bad.safetensors" "$dir/before"
    status=0
    "$prog" --data hopper --n-series $n --batch 4 --epochs 1 --cache "$dir/$bad.safetensors" \
        >/dev/null 2>"$dir/err" || status=$?
    if [ "$status" != 1 ] || ! grep -q "$bad.safetensors" "$dir/err"; then
        echo "cache $bad: status $status, message: $(cat "$dir/err")"
        exit 1
    fi
    cmp -s "$dir/before" "$dir/$bad.safetensors" || { echo "cache $bad was overwritten"; exit 1; }
done
echo "cache read back identically; truncated, altered and foreign caches refused"
