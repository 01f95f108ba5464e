#!/usr/bin/env bash
# Reads the output of `pnpm test` and `pnpm test:e2e` (vitest's default reporter, through
# Turborepo, whose prefix is "<package>:<task>:") and
# prints one total: "N passed, N failed, N skipped" (tests). Exits 1 when a test was
# skipped outside the documented opt-in files below (a whole file, "↓ file", or a test
# in a file that ran): a skipped test is a check that did not run, and must not pass
# unnoticed.
# Usage: bash .ci/test-summary.sh <log>
set -euo pipefail
log=$1

# Opt-in files (docs/TESTING.md, "The Swarm test is opt-in"), as "<package> <file>".
OPT_IN=("@app/e2e test/stacks/swarm.test.ts")

text=$(sed 's/\x1b\[[0-9;]*m//g' "$log")   # colour codes would split the lines matched below
# vitest prints per package "Tests  N failed | N passed | N skipped (N)", each part only
# when it is not zero; the same for "Test Files".
sum() { # sum <summary: Tests|Test Files> <kind: passed|failed|skipped>
  { grep -E "^(\S+: *)?$1 +[0-9]" <<<"$text" || true; } |
    { grep -oE "[0-9]+ $2" || true; } | awk '{s += $1} END {print s + 0}'
}
echo "$(sum Tests passed) passed, $(sum Tests failed) failed, $(sum Tests skipped) skipped"

# Skipped files, as "<package> <file> <tests>", from
# "@app/e2e:test:e2e:  ↓ test/stacks/swarm.test.ts (4 tests | 4 skipped)".
skipped=$(sed -nE 's/^(\S+):test(:e2e)?: +↓ +(\S+\.test\.ts) \(([0-9]+) tests?.*/\1 \3 \4/p' <<<"$text")
status=0
if [ "$(grep -c . <<<"$skipped" || true)" -ne "$(sum 'Test Files' skipped)" ]; then
  echo "Could not tell which test files were skipped: the summaries count $(sum 'Test Files' skipped)." >&2
  status=1
fi
opt_in_tests=0   # tests in the opt-in files that were skipped
while IFS= read -r line; do
  [ -n "$line" ] || continue
  file=${line% *}
  allowed=false
  for opt_in in "${OPT_IN[@]}"; do [ "$file" = "$opt_in" ] && allowed=true; done
  if $allowed; then
    echo "Skipped (opt-in): $file"
    opt_in_tests=$((opt_in_tests + ${line##* }))
  else
    echo "Skipped, and not an opt-in test file: $file" >&2
    status=1
  fi
done <<<"$skipped"
# A test skipped inside a file that ran (it.skip, skipIf) is a check that did not run too.
if [ "$(sum Tests skipped)" -gt "$opt_in_tests" ]; then
  echo "Tests skipped outside the opt-in files: $(( $(sum Tests skipped) - opt_in_tests ))." >&2
  status=1
fi
exit "$status"
