#!/bin/sh
# Builds sluice for release and installs it under $DESTDIR with meson install:
# the binary, the man page, the systemd units, the sysusers.d file, the example
# configuration and the license (docs/deploy.md, Installing).  packaging/Dockerfile
# runs exactly this in its build stage, and tests/integration/test_packaging.c
# runs it into a temporary DESTDIR and starts what it installed, so the image
# recipe is tested on every test run even where no container engine exists.
#
#   DESTDIR=/tmp/root packaging/install.sh
#
# DESTDIR  where to install (required; "/" installs into the system)
# PREFIX   installation prefix (default /usr/local: the unit and the image use it)
# BUILDDIR meson build directory (default build-release in the source tree)
#
# Tests are not built (-Dtests=false), so the build needs only the libraries
# sluice links, not criterion.
set -eu

src=$(cd "$(dirname "$0")/.." && pwd -P)
: "${DESTDIR:?set DESTDIR, e.g. DESTDIR=/tmp/sluice-root (or / for the system)}"
prefix=${PREFIX:-/usr/local}
builddir=${BUILDDIR:-$src/build-release}

if [ -f "$builddir/build.ninja" ]; then
  meson configure "$builddir" --prefix "$prefix" -Dtests=false -Dbuildtype=release
else
  meson setup "$builddir" "$src" --prefix "$prefix" -Dtests=false -Dbuildtype=release
fi
meson compile -C "$builddir"
meson install -C "$builddir" --destdir "$DESTDIR" --no-rebuild --quiet

# The installed binary must at least start; a broken link shows up here.
"$DESTDIR$prefix/bin/sluice" --version
