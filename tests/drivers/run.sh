#!/bin/bash
# Runs one driver program of the driver matrix (see docs/drivers.md).
#
#   tests/drivers/run.sh VARIANT SCENARIO
#
# VARIANT: psycopg3-prepare0 psycopg3-default psycopg2 asyncpg-cache
#          asyncpg-prepare jdbc-threshold1 jdbc-default node-pg-named postgresjs
#          psql (txnstate only)
#          mixed (psycopg3-prepare0 and jdbc-threshold1 at once; session only)
# SCENARIO: matrix alter session memory memory-dealloc txnstate (not every variant has
#          every scenario; the program says so)
#
# Connection facts come from PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE;
# the DRIVER_* knobs are described in tests/drivers/drvcommon.py.  The last
# line of the output is the summary, "RESULT VARIANT SCENARIO: ok (...)".
# A driver that is not installed is a failure (exit 3) with a message naming
# the package, never a skip.
set -u

here=$(cd "$(dirname "$0")" && pwd -P)
root=$(cd "$here/../.." && pwd -P)
python=/usr/bin/python3 # Debian's Python modules are visible to it alone
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in the checkout
jar=${DRIVER_JDBC_JAR:-/usr/share/java/postgresql.jar}

if [ "$#" -ne 2 ]; then
  sed -n '2,18p' "$0" >&2
  exit 2
fi
variant=$1
scenario=$2

missing() {
  echo "MISSING DRIVER: $1 (install it with tests/harness/deps.sh)" >&2
  echo "RESULT $variant $scenario: FAIL (driver not installed: $1)"
  exit 3
}

need_python_module() {
  local module=$1 package=$2 err
  [ -x "$python" ] || missing "$python (Debian's python3)"
  if ! err=$("$python" -c "import $module" 2>&1); then
    missing "$package: $python cannot import $module: $(echo "$err" | tail -n 1)"
  fi
}

need_node_module() {
  command -v node >/dev/null 2>&1 || missing "nodejs (node)"
  if ! node -e "require('$here/node_modules/$1')" >/dev/null 2>&1; then
    missing "npm package $1 in tests/drivers/node_modules (tests/drivers/npm-install.sh)"
  fi
}

# Compiles JdbcDriver.java into .run/drivers/jdbc unless the classes there are
# newer than the source; a lock keeps concurrent runs from racing.
compile_jdbc() {
  command -v javac >/dev/null 2>&1 || missing "a JDK (javac; default-jdk-headless)"
  command -v java >/dev/null 2>&1 || missing "a Java runtime (java)"
  [ -r "$jar" ] || missing "libpostgresql-jdbc-java ($jar)"
  classes=$root/.run/drivers/jdbc
  mkdir -p "$root/.run/drivers"
  (
    flock 9
    if [ ! -f "$classes/JdbcDriver.class" ] ||
      [ "$here/JdbcDriver.java" -nt "$classes/JdbcDriver.class" ]; then
      rm -rf "$classes.tmp"
      mkdir -p "$classes.tmp"
      javac -nowarn -d "$classes.tmp" -cp "$jar" "$here/JdbcDriver.java" || exit 1
      rm -rf "$classes"
      mv "$classes.tmp" "$classes"
    fi
  ) 9>"$root/.run/drivers/jdbc.lock" || {
    echo "RESULT $variant $scenario: FAIL (javac failed)"
    exit 1
  }
}

# Two programs at once against the same pool: pgJDBC's startup parameters
# (extra_float_digits=2, then SET to 3; TimeZone=America/Sao_Paulo) next to
# psycopg clients that have none of them.  Both wait for each other before their loops.
run_mixed() {
  local dir a b ra rb
  [ "$scenario" = session ] || {
    echo "mixed: only the session scenario" >&2
    exit 2
  }
  need_python_module psycopg python3-psycopg
  compile_jdbc
  dir=$(mktemp -d)
  DRIVER_SYNC_DIR=$dir DRIVER_SYNC_COUNT=2 "$0" psycopg3-prepare0 session >"$dir/psycopg3.out" 2>&1 &
  a=$!
  DRIVER_SYNC_DIR=$dir DRIVER_SYNC_COUNT=2 "$0" jdbc-threshold1 session >"$dir/jdbc.out" 2>&1 &
  b=$!
  wait "$a"
  ra=$?
  wait "$b"
  rb=$?
  echo "--- psycopg3-prepare0 session (exit $ra)"
  cat "$dir/psycopg3.out"
  echo "--- jdbc-threshold1 session (exit $rb)"
  cat "$dir/jdbc.out"
  rm -rf "$dir"
  if [ "$ra" -eq 0 ] && [ "$rb" -eq 0 ]; then
    echo "RESULT mixed session: ok (psycopg3-prepare0 and jdbc-threshold1 sharing the pool)"
    exit 0
  fi
  echo "RESULT mixed session: FAIL (psycopg3-prepare0 exit $ra, jdbc-threshold1 exit $rb)"
  exit 1
}

case $variant in
psycopg3-*)
  need_python_module psycopg python3-psycopg
  exec "$python" "$here/psycopg3_driver.py" "$variant" "$scenario"
  ;;
psycopg2)
  need_python_module psycopg2 python3-psycopg2
  exec "$python" "$here/psycopg2_driver.py" "$variant" "$scenario"
  ;;
asyncpg-*)
  need_python_module asyncpg python3-asyncpg
  exec "$python" "$here/asyncpg_driver.py" "$variant" "$scenario"
  ;;
jdbc-*)
  compile_jdbc
  exec java -Duser.timezone=America/Sao_Paulo -cp "$classes:$jar" JdbcDriver "$variant" "$scenario"
  ;;
node-pg-named)
  need_node_module pg
  exec node "$here/node_pg.js" "$variant" "$scenario"
  ;;
postgresjs)
  need_node_module postgres
  exec node "$here/postgresjs.js" "$variant" "$scenario"
  ;;
psql)
  command -v psql >/dev/null 2>&1 || [ -x "${SLUICE_TEST_PGBIN:-}/psql" ] ||
    missing "postgresql-client (psql)"
  exec "$here/psql_driver.sh" "$variant" "$scenario"
  ;;
mixed)
  run_mixed
  ;;
*)
  echo "run.sh: unknown variant $variant" >&2
  exit 2
  ;;
esac
