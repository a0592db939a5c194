#!/usr/bin/env bash
# scripts/bench.sh — the one benchmark command of matrix-2fa (issue 14): on a
# Debian machine, installs what is missing (wrk, nginx-light, gcc),
# builds Dendrite and matrix-2fa, then runs internal/benchtool, which starts
# its own Dendrite, gateway, nginx (alone and with the generated
# split-routing configuration) and a bare Go reverse proxy on loopback and
# prints every ratio of the issue's table from this one run. About 5 minutes.
# Not part of scripts/test.sh. Extra arguments go to benchtool (-duration 10s,
# -c 32, -work DIR, …).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

PACKAGES=(wrk nginx-light gcc ca-certificates) # split routing is measured with nginx only
missing=()
for p in "${PACKAGES[@]}"; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]} > 0)); then
	echo "installing: ${missing[*]}"
	SUDO=()
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 || { echo "bench.sh: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
		SUDO=(sudo -n)
	fi
	"${SUDO[@]}" apt-get update </dev/null
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" </dev/null
fi
for c in wrk go; do
	command -v "$c" >/dev/null 2>&1 || { echo "bench.sh: $c is not on PATH" >&2; exit 1; }
done
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || { echo "bench.sh: nginx is missing" >&2; exit 1; }
export CGO_ENABLED=1

go run ./internal/dendrite/cmd/build-dendrite
BIN="$(mktemp -d)"
trap 'rm -rf "$BIN"' EXIT
go build -o "$BIN/matrix-2fa" ./cmd/matrix-2fa
go build -o "$BIN/benchtool" ./internal/benchtool/cmd/benchtool
"$BIN/benchtool" -repo "$ROOT" -gateway "$BIN/matrix-2fa" "$@"
