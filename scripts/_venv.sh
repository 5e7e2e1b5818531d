# Sourced by the other scripts: make .venv with everything the Python side needs, once.
# torch is pinned to 2.13.0: that CPU build lies on these machines' disk, while a looser
# requirement can make pip download a multi-GB CUDA build. The frameworks extra is installed on
# the same command line, so pip resolves it against that torch and keeps it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
stamp="$VENV/.gradwatch-installed"
want="torch==2.13.0 $(sha1sum "$ROOT/pyproject.toml" | cut -c1-12)"
if [[ ! -x "$PY" ]]; then
  echo "setup: creating $VENV" >&2
  python3 -m venv "$VENV"
fi
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "setup: installing torch==2.13.0 and gradwatch[test,frameworks] into .venv (a few minutes the first time)" >&2
  "$PY" -m pip install --quiet --disable-pip-version-check "torch==2.13.0" -e "$ROOT[test,frameworks]" 2>&1 \
    | grep -v "^WARNING: Location" >&2 || true
  "$PY" -c "import torch, gradwatch, nbclient, ipykernel, transformers, lightning, accelerate" # fail loudly if the install did not work
  echo "$want" > "$stamp"
fi
