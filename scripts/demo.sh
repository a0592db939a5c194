#!/usr/bin/env bash
# scripts/demo.sh — run matrix-2fa on a fresh Debian machine: installs what the
# build needs (gcc for SQLite's cgo driver), then starts a throwaway Dendrite on
# loopback with the gateway in front and prints what to try. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
need=()
for p in gcc libc6-dev oathtool curl jq; do
	dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if ((${#need[@]} > 0)); then
	SUDO=()
	[ "$(id -u)" -eq 0 ] || SUDO=(sudo -n)
	"${SUDO[@]}" apt-get update </dev/null
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" </dev/null
fi
command -v go >/dev/null 2>&1 || { echo "demo.sh: install Go first (see go.mod for the version)" >&2; exit 1; }
export CGO_ENABLED=1
exec go run ./cmd/matrix-2fa demo "$@"
