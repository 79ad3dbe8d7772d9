# shellcheck shell=bash disable=SC2154 # owner is set by the including script
# Sourced by pg.sh and redis.sh: running a test server as its owner.  As root
# the owner is the system user $owner (created here), since Postgres refuses
# to run as root and a test server should not; as anyone else it is that user.
# The including script sets owner and defines die.

is_root() {
  [ "$(id -u)" -eq 0 ]
}

# Runs a command as the owner.  The working directory is / because the
# checkout may be one the owner cannot enter, and some Postgres tools resolve
# their own path against it.
as_owner() {
  if is_root; then
    (cd / && runuser -u "$owner" -- "$@")
  else
    (cd / && "$@")
  fi
}

ensure_user() {
  if is_root && ! id -u "$owner" >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /nonexistent \
      --shell /usr/sbin/nologin "$owner"
  fi
}

owner_group() {
  if is_root; then
    echo "$owner:$owner"
  else
    echo "$(id -un):$(id -gn)"
  fi
}

# Creates DIR for the owner, refusing one that someone else made first (a
# planted directory or symlink under /tmp must not be trusted).
make_private_dir() {
  local dir=$1
  if [ -e "$dir" ] || [ -L "$dir" ]; then
    if [ -L "$dir" ] || [ ! -d "$dir" ]; then
      die "$dir exists and is not a directory"
    fi
    local who
    who=$(stat -c %U:%G "$dir")
    [ "$who" = "$(owner_group)" ] || die "$dir belongs to $who, not $(owner_group)"
    return
  fi
  mkdir -m 0755 "$dir"
  chown "$(owner_group)" "$dir"
}
