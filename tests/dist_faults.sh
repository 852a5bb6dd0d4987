#!/usr/bin/env bash
# tests/dist_faults.sh MPIRUN_SH DIST_FAULT: runs tests/dist_fault.c on 2 ranks in each mode and
# checks that the job stops (exit non-zero, within 60 s: ND_MPI_TIMEOUT) with the error on every
# rank: "error" gives each rank's own line, "abort" the failing rank's line (mpirun's own report
# of MPI_ABORT comes or not, depending on timing), "die" mpirun's report of the killed rank. Prints a Check-style summary line
# (what .ci/run counts). Exit 77 (skipped) without mpirun.
set -u
mpirun_sh=$1 prog=$2
command -v mpirun >/dev/null 2>&1 || { echo "SKIP: mpirun not found (apt-get install openmpi-bin)"; exit 77; }
export ND_MPI_TIMEOUT=60
checks=0 failures=0
# expect MODE PATTERN...: the run's output contains every pattern, it exits non-zero, in time
expect() {
    local mode=$1 out rc=0 t0=$SECONDS
    shift
    out=$("$mpirun_sh" 2 --tag-output "$prog" "$mode" 2>&1) || rc=$?
    checks=$((checks + 1))
    local bad=""
    ((rc == 0)) && bad="exit 0"
    ((SECONDS - t0 >= ND_MPI_TIMEOUT)) && bad="timed out after $((SECONDS - t0)) s (a hang)"
    for p in "$@"; do
        grep -qF -- "$p" <<<"$out" || bad="${bad:+$bad; }no \"$p\""
    done
    if [[ -n $bad ]]; then
        failures=$((failures + 1))
        printf 'FAIL %s (exit %d): %s\n%s\n' "$mode" "$rc" "$bad" "$out"
    else
        printf 'ok   %s (exit %d, %d s)\n' "$mode" "$rc" $((SECONDS - t0))
        grep -E 'rank [01]|MPI_ABORT|signal' <<<"$out" | head -4 | sed 's/^/     /'
    fi
}
expect error "[1,0]<stderr>:rank 0: step 3: nd_dist_allreduce_grads: rank 1 of 2 failed: odeint: injected failure at t = 0.25" \
    "[1,1]<stderr>:rank 1: step 3: odeint: injected failure at t = 0.25"
expect abort "nodal: rank 1 of 2: step 3: odeint: injected failure at t = 0.25 (non-finite value); aborting every rank"
expect die "exited on signal 9"
printf '%d%%: Checks: %d, Failures: %d, Errors: 0\n' $(((checks - failures) * 100 / checks)) "$checks" "$failures"
((failures == 0))
