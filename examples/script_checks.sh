# SPDX-License-Identifier: MIT
# examples/script_checks.sh: sourced by the program tests written in sh (latent_ode_resume.sh,
# latent_ode_hopper_cache.sh): a scratch directory removed at exit ($dir), check DESCRIPTION
# CONDITION... (one check, PASS or FAIL), and check_summary, the closing line in Check's format
# that .ci/run counts, whose exit status is the test's verdict.
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
n=0 bad=0
check() { # check DESCRIPTION CONDITION...: one check
    what=$1
    shift
    n=$((n + 1))
    if "$@"; then echo "PASS: $what"; else echo "FAIL: $what" && bad=$((bad + 1)); fi
}
same() { [ -n "$1" ] && [ "$1" = "$2" ]; } # same A B: A is not empty and equals B
check_summary() {
    echo "$(((n - bad) * 100 / n))%: Checks: $n, Failures: $bad, Errors: 0"
    [ "$bad" = 0 ]
}
