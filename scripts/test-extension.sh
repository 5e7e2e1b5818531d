#!/usr/bin/env bash
# The editor side's one entry point: install, compile, unit tests, .vsix, then the
# end-to-end test in a real VS Code (code-server 4.100.3 + Debian's Chromium): on a notebook
# the real kernel side executes during this run, and on cells it runs live in a real ipykernel
# (a test-only notebook controller). Exits non-zero on any failure.
#
#   bash scripts/test-extension.sh            everything
#   bash scripts/test-extension.sh --no-e2e   install, compile, unit tests, package
#   bash scripts/test-extension.sh --unit     compile and unit tests (npm ci only when node_modules
#                                             is older than the lockfile): scripts/test --fast
#
# Env: GRADWATCH_PYTHON (default .venv/bin/python) runs tests/e2e/make_seed_notebook.py and the
# live cells' kernel.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
E2E=1
UNIT_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --no-e2e) E2E=0 ;;
    --unit) UNIT_ONLY=1 ;;
    *) echo "unknown option $arg" >&2; exit 2 ;;
  esac
done

START=$SECONDS
step() { echo "== test-extension: $* [$((SECONDS - START))s]"; }

if [ "$UNIT_ONLY" = 1 ] && [ node_modules/.package-lock.json -nt package-lock.json ] \
    && [ node_modules/.package-lock.json -nt package.json ]; then
  step "node_modules up to date (no npm ci)"
else
  step "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

step "compile (tsc + renderer bundle)"
npm run -s compile

step "unit tests (node --test)"
node --test extension/out/test/unit/

if [ "$UNIT_ONLY" = 1 ]; then
  step "done (unit tests only)"
  exit 0
fi

step "package .vsix"
rm -f gradwatch.vsix
npm run -s package >/dev/null
ls -l gradwatch.vsix

if [ "$E2E" = 0 ]; then
  step "done (e2e skipped)"
  exit 0
fi

step "install code-server and Chromium (cached in .cache/e2e)"
bash scripts/e2e/install.sh
CODE_SERVER="$PWD/.cache/e2e/code-server-4.100.3/node_modules/.bin/code-server"

PYTHON="${GRADWATCH_PYTHON:-.venv/bin/python}"
if [ ! -x "$PYTHON" ]; then
  echo "test-extension: $PYTHON not found; create the project venv first (scripts/test does)" >&2
  exit 1
fi
step "execute the seed notebook with the real kernel ($PYTHON)"
mkdir -p artifacts
rm -f artifacts/e2e-seed.ipynb artifacts/e2e-notebook.png
if ! "$PYTHON" tests/e2e/make_seed_notebook.py artifacts/e2e-seed.ipynb 2> artifacts/e2e-seed.stderr.log; then
  tail -n 30 artifacts/e2e-seed.stderr.log >&2
  exit 1
fi

step "end-to-end in code-server"
node tests/e2e/run_e2e.mjs \
  --vsix gradwatch.vsix \
  --notebook artifacts/e2e-seed.ipynb \
  --code-server "$CODE_SERVER" \
  --python "$PYTHON" \
  --artifacts artifacts
test -s artifacts/e2e-notebook.png

step "done"
