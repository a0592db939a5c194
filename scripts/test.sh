#!/usr/bin/env bash
# scripts/test.sh — the one command that prepares a Debian machine and runs
# every check and test of matrix-2fa. Idempotent; works from any directory.
#
#   1. installs missing system packages (apt, only when something is missing)
#   2. builds the test-only Dendrite homeserver (internal/tools/dendrite/bin)
#   3. gofmt and go vet
#   4. go test ./...
#   5. browser tests (run by go test in step 4: TestBrowser*, tests/browser)
#
# Needs Go (the version in go.mod, or any Go that can fetch that toolchain).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$(pwd)"

step() { printf '\n==== %s ====\n' "$*"; }
die() { printf 'test.sh: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------
step "1/5 system packages"
# oathtool, zbarimg: TOTP and QR decoding in tests; chromium + chromedriver:
# browser tests; gcc: cgo for mattn/go-sqlite3; ca-certificates: module downloads.
PACKAGES=(oathtool zbar-tools chromium chromium-driver ca-certificates gcc prometheus)
PACKAGES+=(postgresql-15) # storage/postgres tests, on a throwaway cluster (scripts/pg.sh)
PACKAGES+=(nginx-light caddy) # split-routing tests: the generated proxy configs, run for real
missing=()
for p in "${PACKAGES[@]}"; do
	if ! dpkg -s "$p" >/dev/null 2>&1; then
		missing+=("$p")
	fi
done
# node + npm: the browser tests (tests/browser, run by the Go tests). Only when
# the commands are missing: a node from elsewhere may bundle its own npm.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if ((${#missing[@]} > 0)); then
	echo "installing: ${missing[*]}"
	SUDO=()
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 || die "need root or sudo to install: ${missing[*]}"
		SUDO=(sudo -n)
	fi
	"${SUDO[@]}" apt-get update </dev/null
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y --no-install-recommends "${missing[@]}" </dev/null
else
	echo "all present: ${PACKAGES[*]}"
fi
for c in oathtool zbarimg chromium chromedriver gcc node npm; do
	command -v "$c" >/dev/null 2>&1 || die "$c is not on PATH after installing packages"
done
command -v go >/dev/null 2>&1 || die "go is not on PATH; install Go (see go.mod for the version)"
go version
export CGO_ENABLED=1 # mattn/go-sqlite3 needs cgo; fail loudly rather than build a stub
# playwright-core, matrix-js-sdk and esbuild for the browser tests, from the committed lock file; never a
# browser download (they use the system Chromium).
if [ ! -d tests/browser/node_modules ] || [ tests/browser/package-lock.json -nt tests/browser/node_modules ]; then
	PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix tests/browser --no-audit --no-fund
	touch tests/browser/node_modules
fi

# ---------------------------------------------------------------------------
step "2/5 Dendrite test homeserver"
# Built once here so that parallel test packages don't wait on each other.
start=$SECONDS
go run ./internal/dendrite/cmd/build-dendrite
echo "took $((SECONDS - start))s"

# ---------------------------------------------------------------------------
step "3/5 gofmt and go vet"
gofiles=()
if command -v git >/dev/null 2>&1 && git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
	while IFS= read -r -d '' f; do
		[ -f "$f" ] && gofiles+=("$f") # skip tracked files deleted in the work tree
	done < <(git -C "$ROOT" ls-files -z -- '*.go')
else
	mapfile -d '' gofiles < <(find . -name '*.go' -not -path '*/node_modules/*' -print0)
fi
if ((${#gofiles[@]} > 0)); then
	unformatted="$(gofmt -l "${gofiles[@]}")"
	if [ -n "$unformatted" ]; then
		printf 'gofmt needed on:\n%s\n' "$unformatted" >&2
		exit 1
	fi
fi
echo "gofmt: ${#gofiles[@]} files ok"
go vet ./...
echo "go vet: ok"

# ---------------------------------------------------------------------------
step "4/5 go test"
# A throwaway PostgreSQL on 127.0.0.1:54329 for storage/postgres, stopped on exit.
MATRIX2FA_TEST_PG="$("$ROOT/scripts/pg.sh" start)" || die "PostgreSQL did not start (scripts/pg.sh start)"
export MATRIX2FA_TEST_PG
trap '"$ROOT/scripts/pg.sh" stop || true' EXIT
go test -count=1 -timeout 40m ./...

# ---------------------------------------------------------------------------
step "5/5 browser tests"
# Run in step 4: the Go tests TestBrowser* (gateway/*_test.go) start the
# scripts under tests/browser in headless Chromium (gateway/browser_helpers_test.go)
# and fail, never skip, when node, Chromium or playwright-core is missing.
echo "run by go test in step 4 (TestBrowser*)"

step "all tests passed"
