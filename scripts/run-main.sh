#!/usr/bin/env bash
# Set up (or reuse) .venv and run the default experiment end to end (2 CPU cores).
# Figures land in results/figures, tables in results/tables. Extra arguments go to snakemake.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
exec snakemake --cores 2 "$@"
