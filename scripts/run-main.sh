#!/usr/bin/env bash
# Set up (or reuse) .venv and run the default experiment end to end (2 CPU cores), then version
# the run with DVC: the results page is results/README.md, the figures and tables are under
# results/experiments/. Extra arguments go to snakemake.
#
# The run ends versioned: `dvc commit` records the workflow stage of dvc.yaml as it now stands
# (its dependencies and parameters in dvc.lock, the observation datasets and fine-tuned models in
# DVC's cache), so that `dvc status` is clean and `dvc exp show` lists the run's metrics
# (README, "DVC"). Arguments that run nothing (-n, --touch, --dag, ...) commit nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
snakemake --cores 2 "$@"
for arg in "$@"; do
  case "$arg" in
    -n|--dry-run|--dryrun|-t|--touch|--dag|--rulegraph|--filegraph|--summary|--detailed-summary|\
    --list-rules|--list|-l|--list-target-rules|--lint|--unlock|--cleanup-metadata|--report|\
    --delete-all-output|--delete-temp-output|-D|-S) exit 0 ;;
  esac
done
echo "[run-main] versioning the run: dvc commit workflow" >&2
if dvc commit --force --quiet workflow; then
  dvc status
else  # e.g. a run of other experiments than the stage's outputs (E1, A1) name
  echo "[run-main] the run is not versioned: dvc commit failed (see above)" >&2
fi
