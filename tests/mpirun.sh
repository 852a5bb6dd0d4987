#!/usr/bin/env bash
# tests/mpirun.sh N PROGRAM [ARGS...]: runs PROGRAM on N ranks under Open MPI's mpirun, with what
# CI needs: root may run it (--allow-run-as-root and the two OMPI_ALLOW_* variables), more ranks
# than cores (--oversubscribe), shared memory without CMA, which containers forbid
# (btl_vader_single_copy_mechanism=none), and a time limit so a hang fails instead of waiting
# forever (ND_MPI_TIMEOUT seconds, 600 by default). Exit 77 (meson's "skipped") with a message
# when mpirun is not installed.
set -u
np=$1
shift
if ! command -v mpirun >/dev/null 2>&1; then
    echo "SKIP: mpirun not found; install Open MPI (apt-get install openmpi-bin libopenmpi-dev)"
    exit 77
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
exec timeout -k 10 "${ND_MPI_TIMEOUT:-600}" mpirun --allow-run-as-root --oversubscribe \
    -np "$np" "$@"
