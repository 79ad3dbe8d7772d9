#!/bin/bash
# The image's HEALTHCHECK: GET /healthz (or the path given) on sluice's HTTP
# endpoint and succeed on "200".  bash's /dev/tcp does the request, so the
# image needs no curl (with libcurl and its TLS, LDAP and SSH libraries, about
# 10 MB more to scan and patch); bash is Essential in Debian, in every image.
#
#   sluice-healthcheck [/healthz | /readyz]
#
# The address is SLUICE_METRICS_LISTEN's (the container's environment), with
# an "all addresses" host (0.0.0.0, *, ::) asked on loopback.
set -u

listen=${SLUICE_METRICS_LISTEN:-127.0.0.1:9127}
path=${1:-/healthz}
host=${listen%:*}
port=${listen##*:}
host=${host#[}
host=${host%]}
case $host in
'' | '*' | 0.0.0.0) host=127.0.0.1 ;;
::) host=::1 ;;
esac

exec 3<>"/dev/tcp/$host/$port" || exit 1
printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$host" >&3 || exit 1
IFS= read -r -t 5 status <&3 || exit 1
case $status in
"HTTP/1."?" 200"*) exit 0 ;;
esac
echo "sluice-healthcheck: $path answered: ${status%$'\r'}" >&2
exit 1
