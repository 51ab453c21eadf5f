#!/usr/bin/env bash
# Throwaway PostgreSQL cluster for the test suite.
#
# Usage:
#   source .ci/postgres.sh [start]   start a cluster (or reuse the one this
#                                    checkout already started) and export
#                                    TEST_DATABASE_URL into the current shell
#   bash .ci/postgres.sh start       start it (or reuse it) and print
#                                    `export TEST_DATABASE_URL=...` for eval:
#                                    eval "$(bash .ci/postgres.sh start)" && npm test
#   bash .ci/postgres.sh stop        stop it and delete its data directory
#   bash .ci/postgres.sh status      tell whether it is running
#   bash .ci/postgres.sh url         print the URL of the running cluster
#
# The cluster listens on 127.0.0.1 only (first free port from 54329 up), keeps
# its unix socket inside its data directory (a mktemp dir), trusts loopback
# connections, and runs with fsync off: it is for tests only. Its database is
# `identity_test`, its superuser `postgres`:
#   TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:PORT/identity_test
#
# When run as root (CI), initdb/pg_ctl run as the `postgres` OS user, because
# initdb refuses root. If the server binaries are missing and we are root, the
# Debian `postgresql` package is installed.
#
# Settings (environment, all optional):
#   PG_TEST_BINDIR      directory holding initdb/pg_ctl (default: newest
#                       /usr/lib/postgresql/*/bin, preferring 15)
#   PG_TEST_PORT        first port to try (default 54329)
#   PG_TEST_DB          database name (default identity_test)
#   PG_TEST_STATE_FILE  where the running cluster is recorded (default: a file
#                       in ${TMPDIR:-/tmp} named after this checkout's path)
#
# Exported after start: TEST_DATABASE_URL, PG_TEST_DATA_DIR, PG_TEST_PORT_USED,
# PG_TEST_STATE_FILE.
#
# Written to work both sourced (no `set -e`, never `exit`s the caller's shell)
# and executed: every step checks its own result.

_pgt_log() { printf '[postgres.sh] %s\n' "$*" >&2; }

_pgt_repo_root() {
  local here
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." 2>/dev/null && pwd -P)" || here="$PWD"
  printf '%s\n' "$here"
}

_pgt_state_file() {
  if [ -n "${PG_TEST_STATE_FILE:-}" ]; then
    printf '%s\n' "$PG_TEST_STATE_FILE"
    return 0
  fi
  local root key
  root="$(_pgt_repo_root)"
  key="$(printf '%s' "$root" | cksum | cut -d' ' -f1)"
  printf '%s/identity-test-postgres-%s-%s.state\n' "${TMPDIR:-/tmp}" "$(id -u)" "$key"
}

_pgt_find_bindir() {
  local d
  if [ -n "${PG_TEST_BINDIR:-}" ]; then
    if [ -x "$PG_TEST_BINDIR/initdb" ] && [ -x "$PG_TEST_BINDIR/pg_ctl" ]; then
      printf '%s\n' "$PG_TEST_BINDIR"
      return 0
    fi
    _pgt_log "PG_TEST_BINDIR=$PG_TEST_BINDIR has no initdb/pg_ctl"
    return 1
  fi
  if [ -x /usr/lib/postgresql/15/bin/initdb ]; then
    printf '%s\n' /usr/lib/postgresql/15/bin
    return 0
  fi
  # Newest installed major version.
  for d in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5,5 -n -r); do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then
      printf '%s\n' "$d"
      return 0
    fi
  done
  return 1
}

_pgt_ensure_bindir() {
  local bindir
  if bindir="$(_pgt_find_bindir)"; then
    printf '%s\n' "$bindir"
    return 0
  fi
  # An explicit PG_TEST_BINDIR that is wrong is the caller's to fix.
  [ -z "${PG_TEST_BINDIR:-}" ] || return 1
  if [ "$(id -u)" != 0 ]; then
    _pgt_log "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin)."
    _pgt_log "Install them (Debian/Ubuntu: sudo apt-get install postgresql) or set PG_TEST_BINDIR."
    return 1
  fi
  _pgt_log "PostgreSQL server binaries not found; installing Debian package 'postgresql'"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 || return 1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >&2 || return 1
  bindir="$(_pgt_find_bindir)" || { _pgt_log "still no initdb after installing postgresql"; return 1; }
  printf '%s\n' "$bindir"
}

# Run a command as the cluster's OS owner: `postgres` when we are root,
# ourselves otherwise. Arguments are quoted for the inner shell.
_pgt_as_owner() {
  if [ "$(id -u)" = 0 ]; then
    local cmd
    cmd="cd / && exec$(printf ' %q' "$@")"
    su postgres -s /bin/sh -c "$cmd"
  else
    "$@"
  fi
}

_pgt_ensure_os_user() {
  [ "$(id -u)" = 0 ] || return 0
  id postgres >/dev/null 2>&1 && return 0
  _pgt_log "creating OS user 'postgres'"
  useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/sh postgres >&2
}

# Is something accepting TCP connections on 127.0.0.1:$1 ?
_pgt_port_busy() {
  local port="$1"
  if command -v ss >/dev/null 2>&1; then
    ss -Htln "sport = :$port" 2>/dev/null | grep -q . && return 0
  fi
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
  return 1
}

_pgt_load_state() {
  # Sets _pgt_state_dir/_pgt_state_port/_pgt_state_bindir/_pgt_state_db from the
  # state file; returns 1 if there is none.
  local file="$1" key value
  _pgt_state_dir="" _pgt_state_port="" _pgt_state_bindir="" _pgt_state_db=""
  [ -f "$file" ] || return 1
  while IFS='=' read -r key value; do
    case "$key" in
      data_dir) _pgt_state_dir="$value" ;;
      port) _pgt_state_port="$value" ;;
      bindir) _pgt_state_bindir="$value" ;;
      db) _pgt_state_db="$value" ;;
    esac
  done <"$file"
  [ -n "$_pgt_state_dir" ] && [ -n "$_pgt_state_port" ]
}

_pgt_url() { printf 'postgresql://postgres@127.0.0.1:%s/%s\n' "$1" "$2"; }

_pgt_export() {
  # $1 data dir, $2 port, $3 db, $4 state file
  TEST_DATABASE_URL="$(_pgt_url "$2" "$3")"
  PG_TEST_DATA_DIR="$1"
  PG_TEST_PORT_USED="$2"
  PG_TEST_STATE_FILE="$4"
  export TEST_DATABASE_URL PG_TEST_DATA_DIR PG_TEST_PORT_USED PG_TEST_STATE_FILE
}

_pgt_running() {
  # $1 bindir, $2 data dir
  [ -n "$1" ] && [ -d "$2" ] && [ -f "$2/postmaster.pid" ] || return 1
  _pgt_as_owner "$1/pg_ctl" -D "$2" status >/dev/null 2>&1
}

pg_test_stop() {
  local file dir bindir
  file="$(_pgt_state_file)"
  if ! _pgt_load_state "$file"; then
    # Nothing recorded; fall back to the exported data dir, if any.
    if [ -n "${PG_TEST_DATA_DIR:-}" ] && [ -d "${PG_TEST_DATA_DIR}" ]; then
      _pgt_state_dir="$PG_TEST_DATA_DIR"
    else
      _pgt_log "no test cluster recorded for this checkout ($file); nothing to stop"
      return 0
    fi
  fi
  dir="$_pgt_state_dir"
  bindir="${_pgt_state_bindir:-$(_pgt_find_bindir 2>/dev/null)}"
  if [ -n "$bindir" ] && [ -f "$dir/postmaster.pid" ]; then
    _pgt_log "stopping PostgreSQL (data dir $dir)"
    if ! _pgt_as_owner "$bindir/pg_ctl" -D "$dir" -m fast -w -t 60 stop >/dev/null 2>&1; then
      _pgt_log "fast shutdown failed; trying immediate"
      _pgt_as_owner "$bindir/pg_ctl" -D "$dir" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
    fi
  fi
  case "$dir" in
    */identity-test-pg.*) rm -rf -- "$dir" ;;
    *) _pgt_log "not removing unexpected data dir path: $dir" ;;
  esac
  rm -f -- "$file"
  unset PG_TEST_DATA_DIR PG_TEST_PORT_USED
  return 0
}

pg_test_start() {
  local file bindir dir port first db
  db="${PG_TEST_DB:-identity_test}"
  file="$(_pgt_state_file)"

  # Reuse a cluster this checkout already started, if it is still up.
  if _pgt_load_state "$file"; then
    if _pgt_running "$_pgt_state_bindir" "$_pgt_state_dir"; then
      _pgt_log "reusing running test cluster on port $_pgt_state_port (data dir $_pgt_state_dir)"
      _pgt_export "$_pgt_state_dir" "$_pgt_state_port" "${_pgt_state_db:-$db}" "$file"
      return 0
    fi
    _pgt_log "removing stale test cluster record ($file)"
    pg_test_stop
  fi

  bindir="$(_pgt_ensure_bindir)" || return 1
  _pgt_ensure_os_user || return 1

  dir="$(mktemp -d "${TMPDIR:-/tmp}/identity-test-pg.XXXXXX")" || return 1
  if [ "$(id -u)" = 0 ]; then
    chown postgres: "$dir" || { rm -rf -- "$dir"; return 1; }
  fi
  chmod 700 "$dir"

  _pgt_log "initdb ($("$bindir/postgres" --version 2>/dev/null)) in $dir"
  if ! _pgt_as_owner "$bindir/initdb" -D "$dir" -U postgres --auth=trust \
      --encoding=UTF8 --locale=C --no-sync >"$dir.initdb.log" 2>&1; then
    _pgt_log "initdb failed:"
    cat "$dir.initdb.log" >&2
    rm -rf -- "$dir" "$dir.initdb.log"
    return 1
  fi
  rm -f -- "$dir.initdb.log"

  # Loopback only, socket inside the data dir, speed over durability.
  # shellcheck disable=SC2016 # $1 is expanded by the inner sh
  if ! _pgt_as_owner /bin/sh -c 'cat >>"$1/postgresql.conf"' sh "$dir" <<EOF
# --- added by .ci/postgres.sh (throwaway test cluster) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
logging_collector = off
EOF
  then
    rm -rf -- "$dir"
    return 1
  fi
  # pg_stat_statements (it ships with the server package) for npm run bench's cost per
  # statement, planning time included; the tests never read it.
  if [ -f "$bindir/../lib/pg_stat_statements.so" ]; then
    _pgt_as_owner /bin/sh -c 'cat >>"$1/postgresql.conf"' sh "$dir" <<EOF
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track_planning = on
EOF
  fi

  first="${PG_TEST_PORT:-54329}"
  port="$first"
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    while _pgt_port_busy "$port"; do
      port=$((port + 1))
      if [ "$port" -gt $((first + 200)) ]; then
        _pgt_log "no free port in $first..$((first + 200))"
        rm -rf -- "$dir"
        return 1
      fi
    done
    rm -f -- "$dir/server.log"
    if _pgt_as_owner "$bindir/pg_ctl" -D "$dir" -l "$dir/server.log" -o "-p $port" \
        -w -t 60 start >/dev/null 2>&1; then
      break
    fi
    if grep -q 'could not bind\|Address already in use\|could not create any TCP/IP sockets' \
        "$dir/server.log" 2>/dev/null; then
      _pgt_log "port $port taken meanwhile; trying the next one"
      port=$((port + 1))
      continue
    fi
    _pgt_log "PostgreSQL failed to start; server log:"
    tail -n 50 "$dir/server.log" >&2 2>/dev/null
    _pgt_as_owner "$bindir/pg_ctl" -D "$dir" -m immediate stop >/dev/null 2>&1
    rm -rf -- "$dir"
    return 1
  done
  if ! _pgt_running "$bindir" "$dir"; then
    _pgt_log "PostgreSQL did not start after 10 attempts"
    rm -rf -- "$dir"
    return 1
  fi

  # Record it before anything else can fail, so `stop` can clean up.
  printf 'data_dir=%s\nport=%s\nbindir=%s\ndb=%s\n' "$dir" "$port" "$bindir" "$db" >"$file" || {
    _pgt_as_owner "$bindir/pg_ctl" -D "$dir" -m immediate stop >/dev/null 2>&1
    rm -rf -- "$dir"
    return 1
  }

  if ! "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres "$db" >&2; then
    _pgt_log "createdb $db failed"
    pg_test_stop
    return 1
  fi

  _pgt_export "$dir" "$port" "$db" "$file"
  _pgt_log "PostgreSQL up on 127.0.0.1:$port (data dir $dir); stop with: bash .ci/postgres.sh stop"
  return 0
}

pg_test_status() {
  local file
  file="$(_pgt_state_file)"
  if _pgt_load_state "$file" && _pgt_running "$_pgt_state_bindir" "$_pgt_state_dir"; then
    printf 'running: %s (data dir %s)\n' "$(_pgt_url "$_pgt_state_port" "${_pgt_state_db:-identity_test}")" "$_pgt_state_dir"
    return 0
  fi
  printf 'not running\n'
  return 1
}

pg_test_url() {
  local file
  file="$(_pgt_state_file)"
  if _pgt_load_state "$file" && _pgt_running "$_pgt_state_bindir" "$_pgt_state_dir"; then
    _pgt_url "$_pgt_state_port" "${_pgt_state_db:-identity_test}"
    return 0
  fi
  _pgt_log "no running test cluster for this checkout"
  return 1
}

_pgt_usage() {
  printf 'usage: bash .ci/postgres.sh {start|stop|status|url}\n       source .ci/postgres.sh [start]\n' >&2
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
  # Sourced: start (default) or run the given command in the caller's shell.
  case "${1:-start}" in
    start)
      if pg_test_start; then
        printf 'TEST_DATABASE_URL=%s\n' "$TEST_DATABASE_URL"
      else
        return 1
      fi
      ;;
    stop) pg_test_stop ;;
    status) pg_test_status ;;
    url) pg_test_url ;;
    *) _pgt_usage; return 2 ;;
  esac
else
  set -uo pipefail
  case "${1:-start}" in
    start)
      pg_test_start || exit 1
      # stdout is for eval; the hint goes to stderr, so it shows either way.
      printf 'export TEST_DATABASE_URL=%q\n' "$TEST_DATABASE_URL"
      _pgt_log "for the PostgreSQL suites, in your shell: eval \"\$(bash .ci/postgres.sh start)\" && npm test"
      ;;
    stop) pg_test_stop ;;
    status) pg_test_status ;;
    url) pg_test_url ;;
    -h|--help|help) _pgt_usage ;;
    *) _pgt_usage; exit 2 ;;
  esac
fi
