#!/bin/sh
# Checks (or with --fix, applies) .clang-format on every tracked C file.
set -eu
clang_format=$1
root=$2
mode=${3:-}
cd "$root"
files=$(git ls-files '*.c' '*.h')
if [ "$mode" = "--fix" ]; then
  exec "$clang_format" -i $files
fi
exec "$clang_format" --dry-run --Werror $files
