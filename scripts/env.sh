#!/usr/bin/env bash
# Create or reuse the project's virtual environment (.venv) and make it current.
# Sourced by run-main.sh and test.sh. Re-installs only when pyproject.toml changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PREFALIGN_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
EXTRAS="${PREFALIGN_EXTRAS:-dev}"
stamp="$VENV/.prefalign-installed"     # "<sha256 of pyproject.toml> <extras installed>"
hash="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[env] creating $VENV" >&2
  "$PYTHON" -m venv "$VENV"
fi
have_hash="" have_extras=""
[ -f "$stamp" ] && read -r have_hash have_extras < "$stamp"
# install when pyproject.toml changed or an extra is missing; never drop an extra installed before
union="$(printf '%s\n' ${EXTRAS//,/ } ${have_extras//,/ } | sort -u | paste -sd, -)"
if [ "$have_hash" != "$hash" ] || [ "$union" != "$have_extras" ]; then
  # a changed pyproject.toml installs the extras asked for, afresh; sorted like the union, so the
  # stamp compares equal next time whichever command comes first
  [ "$have_hash" = "$hash" ] || union="$(printf '%s\n' ${EXTRAS//,/ } | sort -u | paste -sd, -)"
  echo "[env] installing prefalign[$union] into $VENV (torch 2.13.0 CPU first)" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  # torch first, pinned: pip takes the CPU wheel from local disk instead of a multi-GB CUDA build
  "$VENV/bin/python" -m pip install -q "torch==2.13.0" >&2
  "$VENV/bin/python" -m pip install -q -e "$ROOT[$union]" >&2
  echo "$hash $union" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
export VIRTUAL_ENV="$VENV"
