#!/usr/bin/env bash
# Reads the output of `pnpm test` (vitest's default reporter, through Turborepo) and
# prints one total: "N passed, N failed, N skipped" (tests). Exits 1 when a whole test
# file was skipped ("↓ file") that is not one of the documented opt-in files below:
# a skipped file is a check that did not run, and must not pass unnoticed.
# Usage: bash .ci/test-summary.sh <log>
set -euo pipefail
log=$1

# Opt-in files (docs/TESTING.md, "The Swarm test is opt-in"), as "<package> <file>".
OPT_IN=("@app/e2e test/swarm.test.ts")

text=$(sed 's/\x1b\[[0-9;]*m//g' "$log")   # colour codes would split the lines matched below
# vitest prints per package "Tests  N failed | N passed | N skipped (N)", each part only
# when it is not zero; the same for "Test Files".
sum() { # sum <summary: Tests|Test Files> <kind: passed|failed|skipped>
  { grep -E "^(\S+: *)?$1 +[0-9]" <<<"$text" || true; } |
    { grep -oE "[0-9]+ $2" || true; } | awk '{s += $1} END {print s + 0}'
}
echo "$(sum Tests passed) passed, $(sum Tests failed) failed, $(sum Tests skipped) skipped"

# Skipped files: "@app/e2e:test:  ↓ test/swarm.test.ts (4 tests | 4 skipped)".
skipped=$(sed -nE 's/^(\S+):test: +↓ +(\S+\.test\.ts).*/\1 \2/p' <<<"$text")
status=0
if [ "$(grep -c . <<<"$skipped" || true)" -ne "$(sum 'Test Files' skipped)" ]; then
  echo "Could not tell which test files were skipped: the summaries count $(sum 'Test Files' skipped)." >&2
  status=1
fi
while IFS= read -r file; do
  [ -n "$file" ] || continue
  allowed=false
  for opt_in in "${OPT_IN[@]}"; do [ "$file" = "$opt_in" ] && allowed=true; done
  if $allowed; then
    echo "Skipped (opt-in): $file"
  else
    echo "Skipped, and not an opt-in test file: $file" >&2
    status=1
  fi
done <<<"$skipped"
exit "$status"
