#!/bin/bash
# Checks the packaging that needs no Postgres and no container engine:
#
#   packaging_lint.sh              all of the checks below
#   packaging_lint.sh image-libs BINARY
#                                  only: every library BINARY links comes from a
#                                  package the Dockerfile's final stage installs
#                                  (test_packaging.c runs it on the binary that
#                                  packaging/install.sh installed)
#
# - the man page renders with `man -l` and groff finds nothing to warn about;
# - the systemd unit passes `systemd-analyze verify` (ExecStart pointed at the
#   built binary) and `systemd-analyze security` rates it low exposure, and its
#   stop timeout covers the default drain;
# - the Dockerfile has the shape docs/deploy.md promises, its build stage
#   provides every pkg-config dependency of meson.build, and the image's
#   HEALTHCHECK script tells a 200 from a 404 and from nothing listening;
# - the Kubernetes examples (tests/integration/k8s_check.py);
# - packaging/prometheus/: promtool check and test rules, the Grafana
#   dashboard, and that every series they read is exported
#   (tests/integration/prometheus_check.py).
#
# SLUICE_BIN and SLUICE_SOURCE_ROOT come from meson (tests/meson.build).
set -euo pipefail

root=${SLUICE_SOURCE_ROOT:?}
bin=${SLUICE_BIN:?}
pkg=$root/packaging
tmp=$(mktemp -d /tmp/sluice-lint-XXXXXX)
failures=0
cleanup() {
  if [ -n "${server_pid:-}" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

need() {
  for tool in "$@"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      echo "FAIL: $tool is missing: tests/harness/deps.sh installs it" >&2
      exit 1
    fi
  done
}

# The packages one RUN apt-get install line of a Dockerfile stage installs.
stage_packages() { # STAGE-NUMBER (1 = build, 2 = final)
  # From the `apt-get install` line to the next `&& command` or the end of the RUN.
  awk -v want="$1" '
    /^FROM / { stage++ }
    stage == want && /apt-get install/ { on = 1 }
    on && /^ *&&/ && !/apt-get install/ { on = 0 }
    on { print; if ($0 !~ /\\$/) on = 0 }
  ' "$pkg/Dockerfile" | sed 's/[\\ ]/\n/g' | grep -E '^[a-z0-9][a-z0-9.+-]+$' |
    grep -vE '^(apt-get|install|no-install-recommends)$' | sort -u
}

# Every shared library $1 links (directly) belongs to a package of the final stage.
image_libs() {
  local binary=$1 runtime lib path owner
  runtime=$(stage_packages 2)
  for lib in $(readelf -d "$binary" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
    path=$(ldd "$binary" | awk -v l="$lib" '$1 == l { print $3 }')
    [ -n "$path" ] || { fail "$lib: not found by ldd"; continue; }
    path=$(readlink -f "$path")
    owner=$(dpkg -S "$path" 2>/dev/null | head -1 | cut -d: -f1) ||
      owner=$(dpkg -S "/usr$path" 2>/dev/null | head -1 | cut -d: -f1) || true
    [ -n "$owner" ] || owner=$(dpkg -S "*/$(basename "$path")" 2>/dev/null | head -1 | cut -d: -f1)
    case $owner in
    libc6) ;; # in every Debian image
    '') fail "$lib ($path): no Debian package owns it" ;;
    *) grep -qx "$owner" <<<"$runtime" || fail "$lib comes from $owner, which the Dockerfile's final stage does not install" ;;
    esac
  done
  for p in $runtime; do
    dpkg-query -W "$p" >/dev/null 2>&1 || fail "Dockerfile installs $p, which is no Debian 12 package here"
  done
}

check_man() {
  need man groff
  local warnings out
  warnings=$(groff -man -ww -z "$pkg/sluice.1" 2>&1) || fail "groff failed on sluice.1"
  [ -z "$warnings" ] || fail "groff warns about packaging/sluice.1: $warnings"
  out=$(MANWIDTH=80 man -l -P cat "$pkg/sluice.1" 2>&1) || fail "man -l packaging/sluice.1 failed: $out"
  for want in 'SLUICE(1)' 'NAME' 'sluice - transaction-pooling proxy' 'listen_port' \
    'SLUICE_DATABASE_URL_FILE' 'SIGTERM' 'shutdown_delay'; do
    grep -qF -- "$want" <<<"$out" || fail "man -l output lacks '$want'"
  done
}

check_systemd() {
  need systemd-analyze
  local unit=$pkg/systemd/sluice.service.in stop
  # meson fills in the installed paths (configure_file); ours point at the build.
  grep -qx 'ExecStart=@bindir@/sluice @sysconfdir@/sluice/sluice.ini' "$unit" ||
    fail "ExecStart is not @bindir@/sluice @sysconfdir@/sluice/sluice.ini"
  grep -qx 'ExecStartPre=@bindir@/sluice --check @sysconfdir@/sluice/sluice.ini' "$unit" ||
    fail "the unit does not run sluice --check before starting"
  mkdir -p "$tmp/unit" "$tmp/man/man1"
  sed -e "s|@bindir@|$(dirname "$bin")|g" -e "s|@sysconfdir@|/etc|g" "$unit" >"$tmp/unit/sluice.service"
  grep -qE '@[a-z_]+@' "$tmp/unit/sluice.service" && fail "sluice.service.in has a placeholder meson does not fill"
  cp "$pkg/systemd/sluice.socket" "$tmp/unit/"
  cp "$pkg/sluice.1" "$tmp/man/man1/"
  # Documentation=man:sluice(1) is looked up too: MANPATH points at our page.
  MANPATH=$tmp/man: systemd-analyze verify "$tmp/unit/sluice.service" "$tmp/unit/sluice.socket" ||
    fail "systemd-analyze verify rejects packaging/systemd/sluice.service.in or sluice.socket"
  systemd-analyze security --offline=yes --threshold=20 "$tmp/unit/sluice.service" >"$tmp/security" 2>&1 ||
    fail "systemd-analyze security rates the unit above 2.0: $(tail -1 "$tmp/security")"
  grep -qx 'Type=notify' "$unit" || fail "the unit is not Type=notify"
  # shellcheck disable=SC2016 # $MAINPID is systemd's
  grep -qx 'ExecReload=/bin/kill -HUP $MAINPID' "$unit" || fail "reload is not SIGHUP"
  # The default drain is shutdown_delay 0 + shutdown_timeout 30s.
  stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s\{0,1\}$/\1/p' "$unit")
  if [ -z "$stop" ] || [ "$stop" -le 30 ]; then
    fail "TimeoutStopSec ($stop) must exceed the default drain (30s)"
  fi
  # Socket activation: the socket unit starts this service, and its socket file
  # lives in the directory the service keeps (RuntimeDirectoryPreserve).
  grep -qx 'Service=sluice.service' "$pkg/systemd/sluice.socket" || fail "sluice.socket does not name sluice.service"
  grep -qx 'ListenStream=/run/sluice/.s.PGSQL.6432' "$pkg/systemd/sluice.socket" || fail "sluice.socket has no Unix socket in /run/sluice"
  grep -qx 'RuntimeDirectoryPreserve=yes' "$unit" || fail "a stop would remove sluice.socket's socket file"
}

check_dockerfile() {
  local df=$pkg/Dockerfile build dep pc owner
  grep -qx 'FROM debian:12 AS build' "$df" || fail "the build stage is not debian:12"
  grep -qx 'FROM debian:12-slim' "$df" || fail "the final stage is not debian:12-slim"
  grep -q 'packaging/install.sh$' "$df" || fail "the build stage does not run packaging/install.sh"
  grep -qx 'EXPOSE 6432 9127' "$df" || fail "EXPOSE 6432 9127 missing"
  grep -qx 'STOPSIGNAL SIGTERM' "$df" || fail "STOPSIGNAL SIGTERM missing"
  grep -qx 'USER 10001:10001' "$df" || fail "the image does not run as the non-root user"
  grep -q 'CMD \["/usr/local/bin/sluice-healthcheck", "/healthz"\]$' "$df" ||
    fail "HEALTHCHECK does not probe /healthz"
  grep -q '^COPY packaging/healthcheck.sh /usr/local/bin/sluice-healthcheck$' "$df" ||
    fail "the healthcheck script is not copied into the image"
  # Every pkg-config dependency of meson.build comes from a build-stage package.
  build=$(stage_packages 1)
  # shellcheck disable=SC2013 # one word per line
  for dep in $(sed -n "s/^ *dependency('\([a-z_]*\)'.*/\1/p" "$root/meson.build"); do
    pc=$(pkg-config --path "$dep" 2>/dev/null) || continue # threads and the like
    owner=$(dpkg -S "$(readlink -f "$pc")" 2>/dev/null | head -1 | cut -d: -f1) ||
      owner=$(dpkg -S "$pc" 2>/dev/null | head -1 | cut -d: -f1) || true
    [ -n "$owner" ] || { fail "$pc: no package owns it"; continue; }
    grep -qx "$owner" <<<"$build" || fail "meson needs $dep from $owner, which the build stage does not install"
  done
  for p in $build; do
    dpkg-query -W "$p" >/dev/null 2>&1 || fail "Dockerfile builds with $p, which is no Debian 12 package here"
  done
}

check_healthcheck() {
  need python3
  local port www
  www=$tmp/www
  mkdir -p "$www"
  echo ok >"$www/healthz"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  python3 -m http.server "$port" --bind 127.0.0.1 --directory "$www" >/dev/null 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    SLUICE_METRICS_LISTEN="0.0.0.0:$port" "$pkg/healthcheck.sh" 2>/dev/null && break
    sleep 0.1
  done
  SLUICE_METRICS_LISTEN="0.0.0.0:$port" "$pkg/healthcheck.sh" /healthz || fail "healthcheck: 200 not taken as healthy"
  SLUICE_METRICS_LISTEN="127.0.0.1:$port" "$pkg/healthcheck.sh" /readyz 2>/dev/null && fail "healthcheck: 404 taken as healthy"
  kill "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=
  SLUICE_METRICS_LISTEN="127.0.0.1:$port" "$pkg/healthcheck.sh" 2>/dev/null && fail "healthcheck: nothing listening taken as healthy"
  return 0
}

check_k8s() {
  local py=python3
  # Debian's python3 has python3-yaml (deps.sh); another python3 first in PATH may not.
  if ! python3 -c 'import yaml' 2>/dev/null && [ -x /usr/bin/python3 ]; then py=/usr/bin/python3; fi
  "$py" -c 'import yaml' || { fail "python3 cannot import yaml: tests/harness/deps.sh installs python3-yaml"; return; }
  "$py" "$root/tests/integration/k8s_check.py" "$bin" "$pkg"/k8s/*.yaml || fail "packaging/k8s examples"
  # The sidecar snippets in the README and docs/deploy.md parse and probe what the examples do.
  "$py" - "$root/README.md" "$root/docs/deploy.md" <<'EOF' || fail "the Kubernetes snippets in the docs"
import re, sys, yaml
for path in sys.argv[1:]:
    blocks = re.findall(r"```yaml\n(.*?)```", open(path).read(), re.S)
    assert blocks, f"{path}: no yaml snippet"
    sidecars = 0
    for block in blocks:
        # Every snippet parses; the sidecar ones (a container named sluice) probe as the examples do.
        text = yaml.dump(yaml.safe_load(block))
        if not re.search(r"^ *(- )?name: sluice$", text, re.M):
            continue
        sidecars += 1
        for want in ("/readyz", "/healthz", "SLUICE_DATABASE_URL", "restartPolicy: Always"):
            assert want in text, f"{path}: the yaml snippet lacks {want}"
    assert sidecars, f"{path}: no sluice sidecar snippet"
EOF
}

check_prometheus() {
  need promtool
  local py=python3
  if ! python3 -c 'import yaml' 2>/dev/null && [ -x /usr/bin/python3 ]; then py=/usr/bin/python3; fi
  "$py" "$root/tests/integration/prometheus_check.py" "$bin" "$pkg/prometheus" ||
    fail "packaging/prometheus"
}

if [ "${1:-}" = image-libs ]; then
  image_libs "$2"
else
  check_man
  check_systemd
  check_dockerfile
  check_healthcheck
  check_k8s
  check_prometheus
fi
if [ "$failures" -gt 0 ]; then
  echo "packaging_lint: $failures failed" >&2
  exit 1
fi
echo "packaging_lint: all checks passed"
