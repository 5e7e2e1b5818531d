#!/usr/bin/env bash
# Installs what the e2e test needs, pinned and cached under .cache/e2e (gitignored):
# Debian's Chromium and ripgrep, and code-server from npm (it bundles VS Code 1.100.3).
# Idempotent: a second run only checks. Works as root on a fresh Debian machine whose
# only network is the Debian, npm and PyPI registries (see shared notes/vscode-e2e.md).
set -euo pipefail

CODE_SERVER_VERSION=4.100.3
# code-server's @vscode/ripgrep postinstall downloads this asset from GitHub; we hand it
# Debian's rg in its cache instead.
RG_CACHE_DIR=vscode-ripgrep-cache-1.15.11
RG_ASSET=ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${GRADWATCH_E2E_CACHE:-$ROOT/.cache/e2e}"
CS_PREFIX="$CACHE/code-server-$CODE_SERVER_VERSION"
mkdir -p "$CACHE"

# Seen working: Debian 12's chromium 156.0.8078.108 (Debian's current build is used: old
# ones leave the archive). Fonts are only "recommended" by chromium: name them so that
# screenshots have text. libkrb5-dev and pkg-config build code-server's kerberos module.
need_apt=()
for pkg in chromium fonts-liberation fonts-dejavu-core ripgrep libkrb5-dev pkg-config; do
  # "install ok installed", not just known to dpkg (a removed package keeps config-files).
  [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" = "install ok installed" ] || need_apt+=("$pkg")
done
if ((${#need_apt[@]})); then
  echo "install: apt-get install ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ -f "$CS_PREFIX/.installed" ]; then
  echo "install: code-server $CODE_SERVER_VERSION cached in $CS_PREFIX"
else
  echo "install: code-server $CODE_SERVER_VERSION -> $CS_PREFIX"
  rm -rf "$CS_PREFIX"
  mkdir -p "$CS_PREFIX" "$CACHE/tmp/$RG_CACHE_DIR"
  rgdir="$(mktemp -d)"
  cp "$(command -v rg)" "$rgdir/rg"
  tar -czf "$CACHE/tmp/$RG_CACHE_DIR/$RG_ASSET" -C "$rgdir" rg
  rm -rf "$rgdir"
  echo '{"name":"gradwatch-e2e-code-server","private":true}' > "$CS_PREFIX/package.json"
  (
    cd "$CS_PREFIX"
    export TMPDIR="$CACHE/tmp" npm_config_unsafe_perm=true npm_config_yes=true
    npm install --no-audit --no-fund --loglevel=error "code-server@$CODE_SERVER_VERSION"
  )
  touch "$CS_PREFIX/.installed"
fi

command -v chromium >/dev/null || { echo "install: chromium missing after apt-get" >&2; exit 1; }
echo "install: $(chromium --version 2>/dev/null | head -1); code-server $(node -p "require('$CS_PREFIX/node_modules/code-server/package.json').version")"
