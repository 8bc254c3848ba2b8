#!/usr/bin/env bash
# Install ChatLedger with its test dependencies, then lint, type-check and run every test:
# once on SQLite (tests/postgres included, on its own PostgreSQL server), then once more on a
# real PostgreSQL server (`pytest --backend postgres`) without tests/postgres, which already
# ran. Extra arguments go to both pytest runs (for example: scripts/test.sh tests/ledger -x).
# CHATLEDGER_TEST_BACKENDS="sqlite" (or "postgres") runs one pass only.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh "[test]"
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
.venv/bin/mypy

timings=()
for backend in ${CHATLEDGER_TEST_BACKENDS:-sqlite postgres}; do
  started=$SECONDS
  case "$backend" in
    sqlite) .venv/bin/pytest -q --backend sqlite "$@" ;;
    postgres)
      # Exit status 5 is "no tests collected": arguments that name only tests/postgres.
      .venv/bin/pytest -q --backend postgres --ignore=tests/postgres "$@" || [ $? -eq 5 ] ;;
    *) echo "CHATLEDGER_TEST_BACKENDS: unknown backend '$backend'" >&2; exit 2 ;;
  esac
  timings+=("$backend pass: $((SECONDS - started)) s")
done
printf '%s\n' "${timings[@]}"
