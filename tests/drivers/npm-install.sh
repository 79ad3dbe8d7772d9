#!/bin/sh
# Installs the npm drivers of the driver matrix (pg, postgres.js) into
# tests/drivers/node_modules, exactly as package-lock.json pins them.
# Idempotent and offline-tolerant: when node_modules already holds what the
# lock file names (a stamp copy of the lock file says so), nothing is fetched.
set -eu

here=$(cd "$(dirname "$0")" && pwd -P)
stamp=$here/node_modules/.sluice-lock-stamp

if ! command -v npm >/dev/null 2>&1; then
  echo "npm-install: npm is not installed (tests/harness/deps.sh installs it)" >&2
  exit 1
fi
if [ -f "$stamp" ] && cmp -s "$stamp" "$here/package-lock.json" &&
  [ -f "$here/node_modules/pg/package.json" ] &&
  [ -f "$here/node_modules/postgres/package.json" ]; then
  exit 0
fi
echo "npm-install: installing pg and postgres into $here/node_modules" >&2
# npm ci installs exactly the lock file and fails rather than changing it.
npm ci --prefix "$here" --no-audit --no-fund --loglevel=error
cp "$here/package-lock.json" "$stamp"
