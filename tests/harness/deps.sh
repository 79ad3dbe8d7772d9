#!/bin/sh
# Installs the Debian 12 packages that building and testing sluice need.
# Only missing packages are installed, so a second run touches neither the
# network nor apt's lists; apt-get update runs only when something is missing,
# because a clean CI container has empty package lists.
set -eu

# pgbench ships in postgresql-15; pgbouncer is for the comparison benchmarks;
# clang-format backs the format-check target, clang the libFuzzer targets
# (tests/fuzz/run.sh).  The Python, Java and Node drivers are for the driver
# matrix (tests/drivers, tests/integration/test_drivers.c).
# systemd (systemd-analyze), man-db, groff-base and python3-yaml check the
# packaging (tests/integration/packaging_lint.sh).  prometheus-pgbouncer-exporter
# is pointed at the admin console (tests/integration/test_console.c).  prometheus
# provides promtool, which checks /metrics (tests/integration/test_observability.c)
# and the rules in packaging/prometheus (tests/integration/prometheus_check.py).
# libhiredis-dev is the Redis client of limiter = redis; redis-server (with
# redis-cli) is the real Redis that tests/harness/redis.sh starts for its tests.
packages="build-essential meson ninja-build pkg-config libevent-dev libpq-dev
libssl-dev libinih-dev libcriterion-dev libhiredis-dev redis-server
postgresql-15 postgresql-client-15
pgbouncer clang-format clang
python3-psycopg2 python3-psycopg python3-asyncpg libpostgresql-jdbc-java
ca-certificates systemd man-db groff-base python3-yaml prometheus-pgbouncer-exporter prometheus"

missing=""
for pkg in $packages; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  if [ "$status" != "installed" ]; then
    missing="$missing $pkg"
  fi
done

# A JDK and Node are wanted as commands, not as particular packages: a machine
# may already have them from elsewhere (NodeSource's nodejs provides npm and
# conflicts with Debian's npm package, which must then not be installed).
if ! command -v javac >/dev/null 2>&1; then
  missing="$missing default-jdk-headless"
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing="$missing nodejs npm"
fi

root=$(cd "$(dirname "$0")/../.." && pwd -P)

# The npm drivers (pg, postgres) go to tests/drivers/node_modules, pinned by
# its package-lock.json.  A failure here does not stop the run: the driver
# tests then fail with a message that names what is missing.
install_npm_drivers() {
  "$root/tests/drivers/npm-install.sh" ||
    echo "deps: warning: npm drivers not installed; the driver tests will fail" >&2
}

if [ -z "$missing" ]; then
  install_npm_drivers
  exit 0
fi

echo "deps: installing:$missing" >&2
if [ "$(id -u)" -eq 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1; then
  sudo="sudo"
else
  echo "deps: missing packages and not root (no sudo either):$missing" >&2
  exit 1
fi
$sudo apt-get update
# $missing is a word list on purpose.
# shellcheck disable=SC2086
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
install_npm_drivers
