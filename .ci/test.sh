#!/usr/bin/env bash
# Both test tiers, `pnpm test` then `pnpm test:e2e` (the Compose stacks), each one's time,
# then the skip check CI applies to their output (.ci/test-summary.sh): the total
# "N passed, N failed, N skipped" over both, and a failure for any skipped test outside
# the opt-in files. What `pnpm check` (package.json) and .ci/run both run. It changes
# nothing of your Docker daemon: the Swarm test runs only with E2E_SWARM=1 in the environment.
# Usage: bash .ci/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT

# Every package's output, shown and kept for the total; a failure in one tier neither
# stops the other nor hides the total, and is reported after it.
status=0
for tier in test test:e2e; do
  started=$SECONDS
  pnpm "$tier" 2>&1 | tee -a "$log" || status=$?
  echo "pnpm $tier: $((SECONDS - started)) s"
done
bash .ci/test-summary.sh "$log" || status=1
exit "$status"
