#!/usr/bin/env bash
# `pnpm test`, then the skip check CI applies to its output (.ci/test-summary.sh): the
# total "N passed, N failed, N skipped", and a failure for any skipped test outside the
# opt-in files. What `pnpm check` (package.json) and .ci/run both run. It changes nothing
# of your Docker daemon: the Swarm test runs only with E2E_SWARM=1 in the environment.
# Usage: bash .ci/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Every package's output, shown and kept for the total; a failure is reported after the
# total, so both are seen.
status=0
pnpm test 2>&1 | tee "$log" || status=$?
bash .ci/test-summary.sh "$log" || status=1
exit "$status"
