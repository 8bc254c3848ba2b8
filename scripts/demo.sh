#!/usr/bin/env bash
# Install ChatLedger and start the demo server on the embedded SQLite default.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/chatledger demo "$@"
