#!/usr/bin/env bash
# Install ChatLedger with its test dependencies, then lint, type-check and run every test.
# Extra arguments go to pytest (for example: scripts/test.sh tests/ledger -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh "[test]"
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
.venv/bin/mypy
.venv/bin/pytest -q "$@"
