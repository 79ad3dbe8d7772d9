#!/bin/bash
# A throwaway Redis for the shared rate limiter's tests (limiter = redis) and
# the benchmarks that run a fleet of sluice instances.
#
#   tests/harness/redis.sh start     start (or reuse) the server, print its env file
#   tests/harness/redis.sh stop      stop it (nothing is kept: no RDB, no AOF)
#   tests/harness/redis.sh status    exit 0 when it is running and answers PING
#   tests/harness/redis.sh env       print the env file
#   tests/harness/redis.sh destroy   stop it and delete its directory
#
# SLUICE_REDIS_NAME picks the instance (default "redis"): its files live at
# .run/NAME and the connection facts are written to .run/NAME.env, so a test
# that kills and restarts its Redis can own one without disturbing the others.
#
# Debian's redis-server is started by hand (not its systemd unit), listening
# on 127.0.0.1 only, on a free port in 56380-56479 (SLUICE_REDIS_PORTS=FIRST-LAST
# picks another range: bench/soak.sh's, so that neither a test's Redis nor an
# outgoing connection can take the soak's port while the soak restarts its
# own).  As root it runs as the system user pg.sh uses (sluicepg, created here
# if missing), so a test cluster never runs a server as root; as any other
# user it runs as that user.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd -P)
name=${SLUICE_REDIS_NAME:-redis}
run=$root/.run
link=$run/$name
envfile=$run/$name.env
server=${SLUICE_REDIS_SERVER:-/usr/bin/redis-server}
cli=${SLUICE_REDIS_CLI:-/usr/bin/redis-cli}
owner=sluicepg
ports=${SLUICE_REDIS_PORTS:-56380-56479}
first_port=${ports%-*}
last_port=${ports#*-}

die() {
  echo "redis.sh: $*" >&2
  exit 1
}

# shellcheck source=tests/harness/owner.sh
. "$root/tests/harness/owner.sh"

# The server's directory: .run/NAME, or when the owner cannot reach .run (a
# checkout under /root) a private directory under /tmp that .run/NAME links to.
place_dir() {
  mkdir -p "$run"
  if [ -L "$link" ]; then
    local target
    target=$(readlink "$link")
    [ -d "$target" ] || make_private_dir "$target"
  elif [ ! -d "$link" ]; then
    if as_owner test -x "$run"; then
      make_private_dir "$link"
    else
      local hash
      hash=$(printf '%s' "$root/$name" | sha256sum | cut -c1-16)
      make_private_dir "/tmp/sluice-redis-$hash"
      ln -s "/tmp/sluice-redis-$hash" "$link"
    fi
  fi
  dir=$(cd "$link" && pwd -P)
  pidfile=$dir/redis.pid
  logfile=$dir/redis.log
  conf=$dir/redis.conf
}

# Pid of the server if it is alive; a stale pidfile (process gone, a zombie,
# or a reused pid that is not redis-server) is removed.
server_pid() {
  local pid comm state
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile" 2>/dev/null) # Redis removes it as it exits
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
    state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d ' ' -f 1 || true)
    if [ "${comm#redis-server}" != "$comm" ] && [ "$state" != "Z" ]; then
      echo "$pid"
      return 0
    fi
  fi
  as_owner rm -f "$pidfile"
  return 1
}

running_port() {
  sed -n 's/^port //p' "$conf"
}

answers_ping() {
  [ "$("$cli" -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = "PONG" ]
}

port_is_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

write_conf() {
  as_owner tee "$conf" >/dev/null <<EOF
# Written by tests/harness/redis.sh: a throwaway server, nothing persisted.
bind 127.0.0.1
protected-mode yes
port $1
daemonize yes
pidfile $pidfile
logfile $logfile
dir $dir
save ""
appendonly no
EOF
}

# Polls PING for up to 10 s; a server that exited (port taken) fails at once.
wait_ready() {
  local port=$1 deadline=$((SECONDS + 10))
  while ! answers_ping "$port"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      return 1
    fi
    if [ -f "$pidfile" ] && ! server_pid >/dev/null; then
      return 1
    fi
    sleep 0.05
  done
}

start_on_free_port() {
  local port=$first_port tries=0
  if [ -f "$conf" ]; then
    port=$(running_port)
    [ "$port" -ge "$first_port" ] && [ "$port" -le "$last_port" ] || port=$first_port
  fi
  while [ "$tries" -lt 10 ]; do
    while ! port_is_free "$port"; do
      port=$((port + 1))
      [ "$port" -le "$last_port" ] || port=$first_port
    done
    write_conf "$port"
    if as_owner "$server" "$conf" && wait_ready "$port"; then
      return 0
    fi
    if ! grep -q "Address already in use" "$logfile" 2>/dev/null; then
      tail -n 20 "$logfile" >&2 || true
      die "redis-server did not start (log: $logfile)"
    fi
    as_owner truncate -s 0 "$logfile"
    port=$((port + 1))
    tries=$((tries + 1))
  done
  die "no free port found for redis"
}

write_env() {
  local tmp=$envfile.tmp
  cat >"$tmp" <<EOF
SLUICE_TEST_REDIS_HOST='127.0.0.1'
SLUICE_TEST_REDIS_PORT='$1'
SLUICE_TEST_REDIS_URL='redis://127.0.0.1:$1/0'
SLUICE_TEST_REDIS_SERVER='$server'
SLUICE_TEST_REDIS_CLI='$cli'
SLUICE_TEST_REDIS_HARNESS='$root/tests/harness/redis.sh'
EOF
  mv "$tmp" "$envfile"
}

cmd_start() {
  [ -x "$server" ] || die "no redis-server at $server (run tests/harness/deps.sh)"
  ensure_user
  place_dir
  local port
  if server_pid >/dev/null && answers_ping "$(running_port)"; then
    port=$(running_port)
  else
    if server_pid >/dev/null; then
      echo "redis.sh: redis-server is running but not answering; restarting it" >&2
      kill -KILL "$(server_pid)" 2>/dev/null || true
    fi
    start_on_free_port
    port=$(running_port)
  fi
  write_env "$port"
  cat "$envfile"
}

cmd_stop() {
  [ -e "$link" ] || return 0
  place_dir
  rm -f "$envfile"
  local pid deadline=$((SECONDS + 10))
  pid=$(server_pid) || return 0
  kill -TERM "$pid" 2>/dev/null || true
  while server_pid >/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.05
  done
}

cmd_status() {
  [ -e "$link" ] || return 1
  place_dir
  server_pid >/dev/null || return 1
  answers_ping "$(running_port)"
}

cmd_destroy() {
  cmd_stop
  if [ -L "$link" ]; then
    rm -rf "$(readlink "$link")"
  fi
  rm -rf "$link"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) cat "$envfile" ;;
destroy) cmd_destroy ;;
*)
  echo "usage: $0 start|stop|status|env|destroy" >&2
  exit 2
  ;;
esac
