#!/usr/bin/env bash
# scripts/pg.sh — a throwaway PostgreSQL 15 cluster for the storage/postgres tests.
#
#   scripts/pg.sh start   creates the cluster if needed, starts it if it is not
#                         running, and prints its URL (the only line on stdout)
#   scripts/pg.sh stop    stops it if it is running (the data stays for next time)
#
# Trust authentication, listening on 127.0.0.1 only, a fixed uncommon port, the
# unix socket inside the cluster directory, fsync off: for tests only, never for
# data anyone wants. Needs Debian's postgresql-15 package; as root it runs the
# server as the package's postgres user (PostgreSQL refuses to run as root).
#
# Environment: MATRIX2FA_PG_DIR (default /tmp/matrix2fa-pg), MATRIX2FA_PG_PORT
# (default 54329), PG_BIN (default /usr/lib/postgresql/15/bin).
set -euo pipefail

BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
DIR="${MATRIX2FA_PG_DIR:-/tmp/matrix2fa-pg}"
PORT="${MATRIX2FA_PG_PORT:-54329}"
DATA="$DIR/data"
URL="postgres://postgres@127.0.0.1:$PORT/postgres?sslmode=disable"

die() { printf 'pg.sh: %s\n' "$*" >&2; exit 1; }

[ -x "$BIN/pg_ctl" ] && [ -x "$BIN/initdb" ] ||
	die "no PostgreSQL 15 in $BIN; install Debian's postgresql-15 (scripts/test.sh does)"

# as_pg runs a command as the cluster's owner: postgres when we are root,
# ourselves otherwise. cd / first: the caller's directory may be unreadable to it.
as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		id postgres >/dev/null 2>&1 || die "no postgres user; the postgresql-15 package creates it"
		(cd / && runuser -u postgres -- "$@")
	else
		(cd / && "$@")
	fi
}

running() { as_pg "$BIN/pg_ctl" status -D "$DATA" >/dev/null 2>&1; }

case "${1:-}" in
start)
	mkdir -p "$DIR"
	if [ "$(id -u)" -eq 0 ]; then
		chown postgres: "$DIR"
	fi
	chmod 700 "$DIR"
	if [ ! -f "$DATA/PG_VERSION" ]; then
		as_pg "$BIN/initdb" -D "$DATA" --auth=trust --username=postgres --encoding=UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 2>&1 ||
			{ cat "$DIR/initdb.log" >&2; die "initdb failed"; }
	fi
	if ! running; then
		# -c options rather than postgresql.conf: a changed port or directory
		# takes effect on the next start without a new initdb.
		as_pg "$BIN/pg_ctl" start -D "$DATA" -l "$DIR/server.log" -w -t 60 -o \
			"-c listen_addresses=127.0.0.1 -c port=$PORT -c unix_socket_directories=$DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
			>/dev/null || { tail -n 20 "$DIR/server.log" >&2; die "PostgreSQL did not start"; }
	fi
	"$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 30 || die "PostgreSQL on 127.0.0.1:$PORT is not accepting connections"
	echo "$URL"
	;;
stop)
	if [ -f "$DATA/PG_VERSION" ] && running; then
		as_pg "$BIN/pg_ctl" stop -D "$DATA" -m fast -w >/dev/null
	fi
	;;
*)
	die "usage: $0 start|stop"
	;;
esac
