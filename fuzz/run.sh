#!/bin/sh
# SPDX-License-Identifier: MIT
# fuzz/run.sh: builds the libFuzzer targets with clang (fuzzer + ASan + UBSan) into build-io-fuzz/
# and runs each for SECONDS (default 60) on a seed corpus generated here (none is committed).
# Crashes land in build-io-fuzz/crash-*; the corpora grow in build-io-fuzz/corpus-*.
#   fuzz/run.sh [SECONDS] [safetensors|idx|odeint ...]        e.g.  fuzz/run.sh 300 odeint
set -eu
SECONDS_EACH=${1:-60}
[ $# -gt 0 ] && shift
TARGETS=${*:-"safetensors idx odeint"}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${FUZZ_OUT:-$ROOT/build-io-fuzz}
CC=${CC:-clang}
mkdir -p "$OUT/include"
printf '#pragma once\n#define ND_REAL_DOUBLE\n#define ND_VERSION_MAJOR 0\n#define ND_VERSION_MINOR 1\n#define ND_VERSION_PATCH 0\n#define ND_VERSION_STRING "0.1.0"\n' \
    > "$OUT/include/nd_config.h"

LIB_SRC="tensor/status.c tensor/ctx.c tensor/tensor.c tensor/rng.c io/checkpoint.c io/idx.c io/dataset.c io/parse.c"
# the solver target: tensor, autograd and odeint, with cblas (OpenBLAS) for the GEMMs
ODE_SRC="tensor/status.c tensor/version.c tensor/ctx.c tensor/tensor.c tensor/rng.c tensor/kernels.c
 $(ls autograd/*.c odeint/*.c | tr '\n' ' ')"
BLAS_CFLAGS=$(pkg-config --cflags openblas 2>/dev/null || echo)
BLAS_LIBS=$(pkg-config --libs openblas 2>/dev/null || echo -lcblas)
FLAGS="-g -O1 -std=c11 -D_DEFAULT_SOURCE -Wall -Wextra -I$ROOT -I$OUT/include"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
LIBS="-lcjson -lz -lm"
cd "$ROOT"

echo "fuzz/run.sh: building seeds and targets in $OUT"
$CC $FLAGS $SAN -o "$OUT/make_seeds" fuzz/make_seeds.c $LIB_SRC $LIBS
for t in $TARGETS; do
    if [ "$t" = odeint ]; then
        # shellcheck disable=SC2086
        $CC $FLAGS $BLAS_CFLAGS $SAN -fsanitize=fuzzer -o "$OUT/fuzz_$t" "fuzz/fuzz_$t.c" $ODE_SRC \
            $BLAS_LIBS -lm
    else
        $CC $FLAGS $SAN -fsanitize=fuzzer -o "$OUT/fuzz_$t" "fuzz/fuzz_$t.c" $LIB_SRC $LIBS
    fi
done

mkdir -p "$OUT/seeds-safetensors" "$OUT/seeds-idx" "$OUT/corpus-safetensors" "$OUT/corpus-idx" \
    "$OUT/seeds-odeint" "$OUT/corpus-odeint"
"$OUT/make_seeds" "$OUT/seeds-safetensors" "$OUT/seeds-idx"
cp tests/data-io/*.safetensors "$OUT/seeds-safetensors/"

for t in $TARGETS; do
    case $t in
        safetensors) extra="-dict=$ROOT/fuzz/safetensors.dict -max_len=4096" ;;
        idx) extra="-max_len=16384" ;;
        odeint) extra="-max_len=512" ;; # its inputs are option records, not files: no seeds needed
        *) echo "unknown target $t" >&2; exit 2 ;;
    esac
    echo "fuzz/run.sh: fuzz_$t for ${SECONDS_EACH}s"
    # shellcheck disable=SC2086
    "$OUT/fuzz_$t" -max_total_time="$SECONDS_EACH" -print_final_stats=1 -timeout=10 \
        -rss_limit_mb=2048 -artifact_prefix="$OUT/" $extra \
        "$OUT/corpus-$t" "$OUT/seeds-$t" 2> "$OUT/fuzz_$t.log" || {
        echo "fuzz/run.sh: fuzz_$t FAILED; see $OUT/fuzz_$t.log" >&2
        tail -40 "$OUT/fuzz_$t.log" >&2
        exit 1
    }
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$OUT/fuzz_$t.log" |
        sed "s/^/fuzz_$t: /"
    grep -E '^#[0-9]+[[:space:]]+DONE' "$OUT/fuzz_$t.log" | sed "s/^/fuzz_$t: /" || true
done
