#!/usr/bin/env bash
# Set up (or reuse) .venv, lint, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
ruff check src tests benchmarks
exec python -m pytest "$@"
