#!/usr/bin/env bash
# Set up (or reuse) .venv with the test extras, install the system packages the integration tests
# need when we may (root with apt-get: Debian's chromium for the browser tests, slurm-wlm and
# munge for the one-node SLURM test), lint, and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
export PREFALIGN_EXTRAS="${PREFALIGN_EXTRAS:-dev,browser,slurm}"
source scripts/env.sh
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v slurmctld >/dev/null 2>&1 || missing+=(slurm-wlm munge)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "[test] installing ${missing[*]} (Debian packages)" >&2
    apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
      || echo "[test] could not install ${missing[*]}: those tests will be skipped" >&2
  fi
fi
ruff check src tests benchmarks
# the Snakefile and workflow/rules/*.smk, which ruff does not read (pyproject.toml: [tool.snakefmt])
snakefmt --check Snakefile workflow/
exec python -m pytest "$@"
