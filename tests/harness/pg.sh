#!/bin/bash
# A throwaway Postgres 15 cluster for the quickstart and the integration tests.
#
#   tests/harness/pg.sh start     start (or reuse) the cluster, print its env file
#   tests/harness/pg.sh stop      stop it (the data stays for the next start)
#   tests/harness/pg.sh status    exit 0 when it is running and accepts connections
#   tests/harness/pg.sh env       print the env file
#   tests/harness/pg.sh destroy   stop it and delete its data
#   tests/harness/pg.sh standby   start (or make, with pg_basebackup -R) NAME-standby,
#                                 a streaming standby of NAME on a port of its own;
#                                 starts NAME first if needed; prints the standby's
#                                 env file (.run/NAME-standby.env)
#   tests/harness/pg.sh promote   promote NAME-standby (pg_ctl promote) and wait
#   tests/harness/pg.sh kill      kill -9 NAME's postmaster: a crash, for failover tests
#
# NAME-standby is an instance like any other for stop, status, env and destroy
# (SLUICE_PG_NAME=NAME-standby).  A standby that was promoted, or that streams
# from an earlier incarnation of NAME, is made again by the next `standby`.
#
# SLUICE_PG_NAME picks the instance (default "pg"): data lives at .run/NAME and
# the connection facts are written to .run/NAME.env, so the test run can own a
# cluster of its own without stopping the one the quickstart left running.
# SLUICE_PG_PORTS=FIRST-LAST picks the ports tried (default 54320-54419):
# bench/soak.sh keeps its clusters apart from the tests' clusters and from
# the ephemeral ports, either of which could take a port while the soak's
# primary is down and must come back on it.
#
# Postgres refuses to run as root, so as root the cluster runs as the system
# user sluicepg (created here); as any other user it runs as that user.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd -P)
name=${SLUICE_PG_NAME:-pg}
run=$root/.run
link=$run/$name
envfile=$run/$name.env
pgbin=${SLUICE_PGBIN:-/usr/lib/postgresql/15/bin}
superuser=sluicepg
owner=$superuser
ports=${SLUICE_PG_PORTS:-54320-54419}
first_port=${ports%-*}
last_port=${ports#*-}

die() {
  echo "pg.sh: $*" >&2
  exit 1
}

# shellcheck source=tests/harness/owner.sh
. "$root/tests/harness/owner.sh"

# Where the cluster's files go.  Normally .run/NAME itself; but when the
# cluster's owner cannot reach .run (a checkout under /root, say: opening /root
# to others is not acceptable) or the socket path would exceed the 107 bytes a
# Unix socket name may have, the files go to a private directory under /tmp
# named after the checkout and .run/NAME is a symlink to it.
place_data() {
  mkdir -p "$run"
  if [ -L "$link" ]; then
    local target
    target=$(readlink "$link")
    # /tmp may have been cleaned since the last run: recreate the target.
    if [ ! -d "$target" ]; then
      make_private_dir "$target"
    fi
    return
  fi
  if [ -d "$link" ]; then
    return
  fi
  local probe="$link/socket/.s.PGSQL.65535"
  if [ "${#probe}" -le 100 ] && as_owner test -x "$run"; then
    make_private_dir "$link"
  else
    local hash
    hash=$(printf '%s' "$root/$name" | sha256sum | cut -c1-16)
    make_private_dir "/tmp/sluice-pg-$hash"
    ln -s "/tmp/sluice-pg-$hash" "$link"
  fi
}

pg_paths() {
  pgdir=$(cd "$link" && pwd -P)
  data=$pgdir/data
  sock=$pgdir/socket
  logfile=$pgdir/postgres.log
}

init_cluster() {
  if [ -f "$data/PG_VERSION" ]; then
    return
  fi
  echo "pg.sh: initdb in $data" >&2
  as_owner mkdir -m 0700 "$sock"
  # --no-sync: a throwaway cluster has nothing to lose.
  as_owner "$pgbin/initdb" -D "$data" -U "$superuser" -E UTF8 --locale=C \
    --auth-local=trust --auth-host=scram-sha-256 --no-sync >"$pgdir/initdb.log" 2>&1 ||
    { cat "$pgdir/initdb.log" >&2; die "initdb failed"; }
  local q="'"
  as_owner tee -a "$data/postgresql.conf" >/dev/null <<EOF

# Set by tests/harness/pg.sh.
listen_addresses = '127.0.0.1'
unix_socket_directories = '${sock//$q/$q$q}'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
password_encryption = 'scram-sha-256'
include_if_exists = 'sluice-port.conf'
EOF
}

# TLS for the tests of sluice's server side: a CA and a certificate for
# localhost and 127.0.0.1 in $pgdir/tls (made once), ssl = on, and the role
# tlsonly that may log in over TLS only.  Applied at every start, so a cluster
# made before this existed gets it too.
setup_tls() {
  local tls=$pgdir/tls
  if [ ! -f "$tls/server.crt" ]; then
    as_owner mkdir -p -m 0755 "$tls"
    as_owner openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -days 3650 -subj "/CN=sluice test CA" -keyout "$tls/ca.key" -out "$tls/ca.crt" \
      >/dev/null 2>&1 || die "openssl: making the test CA failed"
    as_owner openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -subj "/CN=localhost" -keyout "$tls/server.key" -out "$tls/server.csr" \
      >/dev/null 2>&1 || die "openssl: making the server key failed"
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' | as_owner tee "$tls/san.ext" >/dev/null
    as_owner openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
      -CAcreateserial -days 3650 -extfile "$tls/san.ext" -out "$tls/server.crt" \
      >/dev/null 2>&1 || die "openssl: signing the server certificate failed"
    as_owner chmod 0600 "$tls/server.key" "$tls/ca.key"
  fi
  if ! grep -q "sluice-tls.conf" "$data/postgresql.conf"; then
    echo "include_if_exists = 'sluice-tls.conf'" | as_owner tee -a "$data/postgresql.conf" >/dev/null
  fi
  as_owner tee "$data/sluice-tls.conf" >/dev/null <<EOF
ssl = on
ssl_cert_file = '$tls/server.crt'
ssl_key_file = '$tls/server.key'
EOF
  # Matched top to bottom: tlsonly and md5user first.
  as_owner tee "$data/pg_hba.conf" >/dev/null <<EOF
# Set by tests/harness/pg.sh.
local     all all                  trust
local     replication all          trust
hostssl   all tlsonly 127.0.0.1/32 scram-sha-256
host      all tlsonly 127.0.0.1/32 reject
host      all md5user 127.0.0.1/32 md5
host      all md5user ::1/128      md5
host      all all     127.0.0.1/32 scram-sha-256
host      all all     ::1/128      scram-sha-256
EOF
}

# Pid of the postmaster if it is alive.  A postmaster.pid whose process is gone
# or is not a postgres (the pid was reused after a crash or reboot) is stale
# and removed, so that pg_ctl start does not refuse to run.
postmaster_pid() {
  local pidfile=$data/postmaster.pid pid comm state
  [ -f "$pidfile" ] || return 1
  pid=$(head -n 1 "$pidfile")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
    # A killed postmaster stays a zombie where nothing reaps orphans (a
    # container's pid 1 often does not), and a zombie still answers kill -0.
    state=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d ' ' -f 1 || true)
    if [ "$comm" = "postgres" ] && [ "$state" != "Z" ]; then
      echo "$pid"
      return 0
    fi
  fi
  echo "pg.sh: removing stale $pidfile" >&2
  as_owner rm -f "$pidfile"
  # The socket's lock file names the same dead (or zombie) postmaster, and
  # Postgres would refuse to start while a zombie answers kill -0.
  as_owner find "$sock" -maxdepth 1 -name '.s.PGSQL.*.lock' -delete 2>/dev/null || true
  return 1
}

# Port recorded in postmaster.pid (line 4) of the running cluster.
running_port() {
  sed -n 4p "$data/postmaster.pid"
}

is_ready() {
  "$pgbin/pg_isready" -q -h "$sock" -p "$1" -t 5
}

port_is_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start_on_free_port() {
  local port=$first_port
  # Prefer the port of the previous run, so URLs printed before stay valid.
  if [ -f "$data/sluice-port.conf" ]; then
    port=$(sed -n 's/^port = //p' "$data/sluice-port.conf")
    [ "$port" -ge "$first_port" ] && [ "$port" -le "$last_port" ] || port=$first_port
  fi
  # Every port of the range may be tried: a port nobody listens on can still
  # be taken by a client's outgoing connection (the range lies inside Linux's
  # ephemeral ports), and after a test that opened thousands of connections
  # many of those linger in TIME_WAIT, where the probe sees a free port but
  # Postgres cannot bind it.
  local tries=0 logged
  while [ "$tries" -le $((last_port - first_port)) ]; do
    while ! port_is_free "$port"; do
      port=$((port + 1))
      [ "$port" -le "$last_port" ] || port=$first_port
    done
    echo "port = $port" | as_owner tee "$data/sluice-port.conf" >/dev/null
    logged=$(stat -c %s "$logfile" 2>/dev/null || echo 0)
    if as_owner "$pgbin/pg_ctl" start -D "$data" -l "$logfile" -w -t 120 >/dev/null; then
      return 0
    fi
    # Only this attempt's lines: an earlier attempt's bind error must not hide another failure.
    if ! tail -c +$((logged + 1)) "$logfile" | grep -q "could not bind"; then
      tail -n 30 "$logfile" >&2
      die "postgres did not start (log: $logfile)"
    fi
    port=$((port + 1))
    [ "$port" -le "$last_port" ] || port=$first_port
    tries=$((tries + 1))
  done
  die "no free port found for postgres"
}

create_roles() {
  "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h "$sock" -p "$1" -U "$superuser" -d postgres <<'EOF'
SET client_min_messages = warning;
SET password_encryption = 'scram-sha-256';
SELECT 'CREATE ROLE app' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app') \gexec
ALTER ROLE app LOGIN PASSWORD 'app-secret';
SET password_encryption = 'md5';
SELECT 'CREATE ROLE md5user' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'md5user') \gexec
ALTER ROLE md5user LOGIN PASSWORD 'md5-secret';
SET password_encryption = 'scram-sha-256';
SELECT 'CREATE ROLE tlsonly' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tlsonly') \gexec
ALTER ROLE tlsonly LOGIN PASSWORD 'tls-secret';
SELECT 'CREATE DATABASE app OWNER app'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'app') \gexec
SELECT 'CREATE DATABASE other OWNER app'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'other') \gexec
EOF
}

write_env() {
  local tmp=$envfile.tmp
  cat >"$tmp" <<EOF
SLUICE_TEST_PGHOST='127.0.0.1'
SLUICE_TEST_PGPORT='$1'
SLUICE_TEST_PGSOCKET='$sock'
SLUICE_TEST_PGSUPER='$superuser'
SLUICE_TEST_PGBIN='$pgbin'
SLUICE_TEST_PGCA='$pgdir/tls/ca.crt'
EOF
  mv "$tmp" "$envfile"
}

cmd_start() {
  [ -x "$pgbin/postgres" ] || die "no Postgres 15 in $pgbin (run tests/harness/deps.sh)"
  ensure_user
  place_data
  pg_paths
  # A standby is started by `standby` on its primary's name: create_roles
  # below would fail on a read-only server.
  [ ! -f "$data/standby.signal" ] || die "$name is a standby; start it with: SLUICE_PG_NAME=${name%-standby} $0 standby"
  init_cluster
  setup_tls
  local port
  if postmaster_pid >/dev/null; then
    port=$(running_port)
    if ! is_ready "$port"; then
      echo "pg.sh: postgres is running but not answering; restarting it" >&2
      as_owner "$pgbin/pg_ctl" stop -D "$data" -m immediate -w -t 60 >/dev/null || true
      start_on_free_port
    else
      as_owner "$pgbin/pg_ctl" reload -D "$data" >/dev/null # TLS and pg_hba.conf
    fi
  else
    start_on_free_port
  fi
  port=$(running_port)
  create_roles "$port"
  write_env "$port"
  cat "$envfile"
}

cmd_stop() {
  if [ ! -e "$link" ]; then
    return 0
  fi
  pg_paths
  rm -f "$envfile"
  # A postmaster killed a moment ago (cmd_kill) may still look alive here and
  # be gone when pg_ctl signals it ("No such process"): gone is stopped.
  if [ -f "$data/PG_VERSION" ] && postmaster_pid >/dev/null; then
    as_owner "$pgbin/pg_ctl" stop -D "$data" -m fast -w -t 120 >/dev/null ||
      ! postmaster_pid >/dev/null
  fi
}

cmd_status() {
  [ -e "$link" ] || return 1
  pg_paths
  postmaster_pid >/dev/null || return 1
  is_ready "$(running_port)"
}

cmd_destroy() {
  cmd_stop
  if [ -L "$link" ]; then
    rm -rf "$(readlink "$link")"
  fi
  rm -rf "$link"
}

# The primary as a standby made from it knows it: its system identifier and
# where it listens.  A standby made from anything else is stale.
primary_facts() {
  local id
  id=$(as_owner "$pgbin/pg_controldata" -D "$data" | sed -n 's/^Database system identifier: *//p')
  echo "$id $sock $(running_port)"
}

# Whether the standby in $data still streams from the primary that
# primary_facts described as $1.
standby_is_current() {
  [ -f "$data/PG_VERSION" ] && [ -f "$data/standby.signal" ] &&
    [ "$(cat "$pgdir/primary" 2>/dev/null)" = "$1" ]
}

make_standby() {
  local facts=$1 primary_sock primary_port
  primary_sock=$(echo "$facts" | cut -d ' ' -f 2)
  primary_port=$(echo "$facts" | cut -d ' ' -f 3)
  if postmaster_pid >/dev/null; then
    as_owner "$pgbin/pg_ctl" stop -D "$data" -m immediate -w -t 60 >/dev/null || true
  fi
  as_owner rm -rf "$data" "$sock" "$pgdir/primary"
  echo "pg.sh: pg_basebackup -R into $data" >&2
  as_owner mkdir -m 0700 "$sock"
  as_owner "$pgbin/pg_basebackup" -D "$data" -R -X stream -c fast --no-sync \
    -h "$primary_sock" -p "$primary_port" -U "$superuser" >"$pgdir/basebackup.log" 2>&1 ||
    { cat "$pgdir/basebackup.log" >&2; die "pg_basebackup failed"; }
  # The copied postgresql.conf names the primary's socket directory; the
  # last setting wins, so an include appended at the end overrides it.
  local q="'"
  echo "unix_socket_directories = '${sock//$q/$q$q}'" |
    as_owner tee "$data/sluice-standby.conf" >/dev/null
  echo "include_if_exists = 'sluice-standby.conf'" | as_owner tee -a "$data/postgresql.conf" >/dev/null
  echo "$facts" | as_owner tee "$pgdir/primary" >/dev/null
}

write_standby_env() {
  local tmp=$envfile.tmp
  cat >"$tmp" <<EOF
SLUICE_TEST_STANDBY_NAME='$name'
SLUICE_TEST_STANDBY_PORT='$1'
SLUICE_TEST_STANDBY_SOCKET='$sock'
EOF
  mv "$tmp" "$envfile"
}

cmd_standby() {
  cmd_start >/dev/null
  local facts
  facts=$(primary_facts)
  name=$name-standby
  link=$run/$name
  envfile=$run/$name.env
  place_data
  pg_paths
  standby_is_current "$facts" || make_standby "$facts"
  if postmaster_pid >/dev/null && ! is_ready "$(running_port)"; then
    as_owner "$pgbin/pg_ctl" stop -D "$data" -m immediate -w -t 60 >/dev/null || true
  fi
  postmaster_pid >/dev/null || start_on_free_port
  write_standby_env "$(running_port)"
  cat "$envfile"
}

cmd_promote() {
  name=$name-standby
  link=$run/$name
  [ -e "$link" ] || die "no standby $name (run: $0 standby)"
  pg_paths
  postmaster_pid >/dev/null || die "$name is not running"
  as_owner "$pgbin/pg_ctl" promote -D "$data" -w -t 120 >/dev/null
}

cmd_kill() {
  [ -e "$link" ] || die "no cluster $name"
  pg_paths
  local pid
  pid=$(postmaster_pid) || die "$name is not running"
  kill -9 "$pid"
}

case "${1:-}" in
start) cmd_start ;;
standby) cmd_standby ;;
promote) cmd_promote ;;
kill) cmd_kill ;;
stop) cmd_stop ;;
status) cmd_status ;;
env) cat "$envfile" ;;
destroy) cmd_destroy ;;
*)
  echo "usage: $0 start|stop|status|env|destroy|standby|promote|kill" >&2
  exit 2
  ;;
esac
