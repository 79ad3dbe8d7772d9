#!/bin/sh
# Installs the Debian 12 packages that building and testing sluice need.
# Only missing packages are installed, so a second run touches neither the
# network nor apt's lists; apt-get update runs only when something is missing,
# because a clean CI container has empty package lists.
set -eu

# pgbench ships in postgresql-15; pgbouncer is for the comparison benchmarks;
# clang-format backs the format-check target.
packages="build-essential meson ninja-build pkg-config libevent-dev libpq-dev
libssl-dev libinih-dev libcriterion-dev postgresql-15 postgresql-client-15
pgbouncer clang-format"

missing=""
for pkg in $packages; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  if [ "$status" != "installed" ]; then
    missing="$missing $pkg"
  fi
done

if [ -z "$missing" ]; then
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
