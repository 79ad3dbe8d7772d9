#!/bin/bash
# README command 1: installs what is missing, builds, starts a throwaway
# Postgres 15 cluster with sluice in front of it and prints the DATABASE_URL.
#
#   tests/quickstart.sh        start (again: Postgres is reused, sluice restarted
#                              so that changes to the build or config apply)
#   tests/quickstart.sh stop   stop sluice and Postgres
#
# Everything lives in .run/ (ignored by git).  Build output goes to stderr, so
# stdout carries only the summary: DATABASE_URL=... is a line of its own.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd -P)
cd "$root"
run=$root/.run
pidfile=$run/sluice.pid
logfile=$run/sluice.log
ini=$run/sluice.ini
userlist=$run/userlist.txt
pgbin=/usr/lib/postgresql/15/bin

# True if PID is a live process (a zombie is dead: where nothing reaps
# orphans, an exited daemon stays one and still answers kill -0).
alive() {
  local state
  kill -0 "$1" 2>/dev/null || return 1
  state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d ' ' -f 1 || true)
  [ -n "$state" ] && [ "$state" != "Z" ]
}

# Polls until PID is gone, for at most $2 seconds.
wait_gone() {
  local deadline=$((SECONDS + $2))
  while alive "$1"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

# Stops the sluice this script started: SIGTERM drains; a sluice still
# draining after 15 s gets SIGINT (exit at once), then SIGKILL.
stop_sluice() {
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(cat "$pidfile")
  # Only signal the pid if it still is our sluice, not a reused pid.
  if alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "sluice $ini"; then
    kill -TERM "$pid"
    wait_gone "$pid" 15 || { kill -INT "$pid"; wait_gone "$pid" 5; } ||
      { kill -KILL "$pid"; wait_gone "$pid" 5 || true; }
  fi
  rm -f "$pidfile"
}

port_is_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# The previous run's port if it is free again, else the first free one from 6432.
pick_port() {
  local port=6432
  if [ -f "$run/sluice.port" ]; then
    port=$(cat "$run/sluice.port")
  fi
  if ! port_is_free "$port"; then
    port=6432
    while ! port_is_free "$port"; do
      port=$((port + 1))
    done
  fi
  echo "$port"
}

# .run unless the socket path would pass the 107 bytes a Unix socket name may have.
socket_dir() {
  local probe="$run/.s.PGSQL.$1" dir
  if [ "${#probe}" -le 100 ]; then
    echo "$run"
  else
    dir=/tmp/sluice-qs-$(printf '%s' "$root" | sha256sum | cut -c1-16)
    [ -d "$dir" ] || mkdir -m 0700 "$dir"
    echo "$dir"
  fi
}

if [ "${1:-}" = "stop" ]; then
  stop_sluice
  tests/harness/pg.sh stop
  echo "sluice and Postgres stopped."
  exit 0
fi
if [ $# -gt 0 ]; then
  echo "usage: $0 [stop]" >&2
  exit 2
fi

tests/harness/deps.sh >&2
if [ ! -f build/build.ninja ]; then
  meson setup build >&2
fi
meson compile -C build >&2

tests/harness/pg.sh start >/dev/null
# shellcheck source=/dev/null
. "$run/pg.env"

stop_sluice
port=$(pick_port)
echo "$port" >"$run/sluice.port"
cat >"$userlist" <<'EOF'
"app" "app-secret"
"admin" "admin-secret"
EOF
chmod 600 "$userlist"
# The admin console may not be in this build yet, and sluice refuses a file
# with a key it does not know; so admin_users only when the build has it.
admin_line=""
if build/sluice --describe-config 2>/dev/null | grep -q '^| .admin_users. |'; then
  admin_line="admin_users = admin"
fi
cat >"$ini" <<EOF
; Written by tests/quickstart.sh; rewritten on every run.
[sluice]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir = $(socket_dir "$port")
auth_file = $userlist
$admin_line
pool_mode = transaction

[databases]
app = host=$SLUICE_TEST_PGHOST port=$SLUICE_TEST_PGPORT dbname=app
EOF

# setsid: a daemon of its own session, so closing this terminal does not
# signal it.  (Not nohup: SIGHUP must stay free for reloads.)
echo "---- $(date -u '+%Y-%m-%d %H:%M:%S') quickstart" >>"$logfile"
setsid build/sluice "$ini" >>"$logfile" 2>&1 </dev/null &
echo $! >"$pidfile"

deadline=$((SECONDS + 30))
until "$pgbin/pg_isready" -q -h 127.0.0.1 -p "$port" -d app -U app -t 2; do
  if ! alive "$(cat "$pidfile")" || [ "$SECONDS" -ge "$deadline" ]; then
    echo "sluice did not start; the end of $logfile:" >&2
    tail -n 30 "$logfile" >&2
    exit 1
  fi
  sleep 0.1
done

cat <<EOF
sluice is running (pid $(cat "$pidfile"), log .run/sluice.log) in front of
Postgres 15 on 127.0.0.1:$SLUICE_TEST_PGPORT (data in .run/pg).

DATABASE_URL=postgres://app:app-secret@127.0.0.1:$port/app

EOF
console="psql postgres://admin:admin-secret@127.0.0.1:$port/sluice"
if [ -n "$admin_line" ]; then
  echo "Admin console:  $console"
else
  echo "Admin console:  not in this build yet ($console once it is)"
fi
echo "Stop both:      tests/quickstart.sh stop"
