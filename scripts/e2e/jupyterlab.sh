#!/usr/bin/env bash
# The HTML report in a real JupyterLab (issue 13, section 1): JupyterLab from PyPI in its own
# venv, Debian's Chromium driven by playwright-core (no browser download). Runs the seed
# notebook cell by cell through the UI with a kernel from the project's .venv, checks the report
# by its DOM and screenshots it in the light and dark themes into artifacts/jupyterlab/.
# Installs what it needs on a fresh machine (cached under .cache/e2e); ./scripts/test runs it.
#
#   bash scripts/e2e/jupyterlab.sh
#
# Env: GRADWATCH_PYTHON (default .venv/bin/python) runs the kernel.
set -euo pipefail

JUPYTERLAB_VERSION=4.6.6
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
CACHE="${GRADWATCH_E2E_CACHE:-$ROOT/.cache/e2e}"
LAB_VENV="$CACHE/jupyterlab-$JUPYTERLAB_VERSION"
PYTHON="${GRADWATCH_PYTHON:-.venv/bin/python}"
# absolute, but not resolved: a venv's python is a symlink to the base interpreter
[[ $PYTHON == /* ]] || PYTHON="$ROOT/$PYTHON"
ARTIFACTS="$ROOT/artifacts/jupyterlab"
START=$SECONDS
step() { echo "== jupyterlab e2e: $* [$((SECONDS - START))s]"; }

[ -x "$PYTHON" ] || { echo "jupyterlab e2e: $PYTHON not found; scripts/test creates .venv" >&2; exit 1; }

step "install (Chromium from Debian, JupyterLab $JUPYTERLAB_VERSION in $LAB_VENV, playwright-core)"
need_apt=()
for pkg in chromium fonts-liberation fonts-dejavu-core; do
  [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
if [ ! -f "$LAB_VENV/.installed" ]; then
  rm -rf "$LAB_VENV"
  python3 -m venv "$LAB_VENV"
  "$LAB_VENV/bin/pip" install --quiet --disable-pip-version-check "jupyterlab==$JUPYTERLAB_VERSION" 2>&1 \
    | grep -v "^WARNING: Location" >&2 || true
  "$LAB_VENV/bin/jupyter-lab" --version >/dev/null
  touch "$LAB_VENV/.installed"
fi
[ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund --loglevel=error

# Everything JupyterLab reads or writes lives in one temporary folder: its config, settings,
# workspaces, runtime files, the notebook, and a `python3` kernel spec that runs the project's
# interpreter (ahead of the lab venv's own on JUPYTER_PATH).
WORK="$(mktemp -d)"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill -- "-$server_pid" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
rm -rf "$ARTIFACTS"
mkdir -p "$WORK/data/kernels/python3" "$WORK/notebooks" "$WORK/settings/@jupyterlab/apputils-extension" \
  "$WORK/settings/@jupyterlab/notebook-extension" "$ARTIFACTS"
# no news or update toasts over the screenshots (and no request to the outside)
echo '{"fetchNews": "false", "checkForUpdates": false, "doNotDisturbMode": true}' \
  > "$WORK/settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings"
# every cell in the DOM (the default renders only the cells near the viewport)
echo '{"windowingMode": "none"}' > "$WORK/settings/@jupyterlab/notebook-extension/tracker.jupyterlab-settings"
cat > "$WORK/data/kernels/python3/kernel.json" <<JSON
{"argv": ["$PYTHON", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
 "display_name": "Python 3 (gradwatch .venv)", "language": "python"}
JSON
"$PYTHON" - "$WORK/notebooks/seed.ipynb" <<'PY'
import sys
sys.path.insert(0, "tests/e2e")
import nbformat
from make_seed_notebook import build
nbformat.write(build(), sys.argv[1])
PY

PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
TOKEN="$("$PYTHON" -c 'import secrets; print(secrets.token_hex(16))')"
step "start JupyterLab on 127.0.0.1:$PORT"
env JUPYTER_CONFIG_DIR="$WORK/config" JUPYTER_DATA_DIR="$WORK/data" JUPYTER_PATH="$WORK/data" \
  JUPYTER_RUNTIME_DIR="$WORK/runtime" JUPYTERLAB_SETTINGS_DIR="$WORK/settings" \
  JUPYTERLAB_WORKSPACES_DIR="$WORK/workspaces" \
  setsid "$LAB_VENV/bin/jupyter-lab" --no-browser --ip=127.0.0.1 --port="$PORT" \
    --IdentityProvider.token="$TOKEN" --ServerApp.root_dir="$WORK/notebooks" --allow-root \
    --ServerApp.terminals_enabled=False --LabApp.extension_manager=readonly \
    --LabApp.news_url=None --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate \
    >"$ARTIFACTS/jupyterlab-server.log" 2>&1 &
server_pid=$!

step "run the seed notebook through the UI, check the report, screenshot light and dark"
node tests/e2e/jupyterlab/run_jupyterlab.mjs --url "http://127.0.0.1:$PORT" --token "$TOKEN" \
  --notebook seed.ipynb --artifacts "$ARTIFACTS"
step "done: $ARTIFACTS/report-light.png, $ARTIFACTS/report-dark.png"
