#!/bin/bash
# psql through sluice: the txnstate scenario (docs/session-state.md) with one
# psql process per client, each reading its commands from a shell function
# through a pipe.  psql sends every command as a simple Query.
#
#   tests/drivers/psql_driver.sh psql txnstate
#
# Where two sessions must take turns (the advisory lock, LISTEN before the
# first NOTIFY), a session runs "\! touch FILE" after a command and the other
# side's feeder waits for that file before it writes its next command: psql
# runs "\!" only after the command before it has completed.
# Environment and summary line as in tests/drivers/drvcommon.py.
set -u

if [ "$#" -ne 2 ] || [ "$1" != psql ] || [ "$2" != txnstate ]; then
  echo "usage: $0 psql txnstate" >&2
  exit 2
fi

psql_bin=psql
[ -n "${SLUICE_TEST_PGBIN:-}" ] && [ -x "$SLUICE_TEST_PGBIN/psql" ] && psql_bin=$SLUICE_TEST_PGBIN/psql
rounds=40
notifications=50
zones=(Asia/Tokyo Europe/Paris America/Lima Africa/Cairo Australia/Perth Asia/Kolkata
  Europe/Oslo Pacific/Auckland)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# One client: psql reading stdin, stdout line-buffered so that what it printed
# so far is in the file when a feeder looks.
client() {
  PGAPPNAME=$1 stdbuf -oL "$psql_bin" -X -q -At -v ON_ERROR_STOP=1 >"$dir/$1.out" 2>"$dir/$1.err"
}

# Waits (bounded: 60 s) until a file exists; another process creates it.
wait_for() {
  local n
  for ((n = 0; n < 1200; n++)); do
    [ -e "$dir/$1" ] && return 0
    sleep 0.05
  done
  echo "timed out waiting for $1" >>"$dir/feeder.err"
  return 1
}

# A job's verdict: "ok" or what was wrong, in $dir/NAME.verdict.
verdict() {
  echo "$2" >"$dir/$1.verdict"
}

# Compares a client's lines with a prefix to the expected ones.
check_lines() {
  local name=$1 prefix=$2 want=$3 what=$4 got
  got=$(grep "^$prefix" "$dir/$name.out" | sed "s/^$prefix//")
  if [ "$got" = "$want" ]; then
    verdict "$name" ok
  else
    verdict "$name" "$what: got $(echo "$got" | head -c 300 | tr '\n' ' '), want $(echo "$want" | head -c 300 | tr '\n' ' ')"
  fi
}

# SET and set_config of a custom setting and TimeZone stay with their client.
settings_feed() {
  local i=$1 r
  if ((i % 2 == 0)); then
    echo "SET myapp.who = 'c$i';"
    echo "SET TimeZone = '${zones[$i]}';"
  else
    echo "select set_config('myapp.who', 'c$i', false), set_config('TimeZone', '${zones[$i]}', false) \\g /dev/null"
  fi
  for ((r = 0; r < rounds; r++)); do
    echo "begin;"
    echo "select 'own:' || current_setting('myapp.who', true) || '|' || current_setting('TimeZone');"
    echo "commit;"
  done
}

settings_job() {
  local i=$1 want
  settings_feed "$i" | client "set-$i" || { verdict "set-$i" "psql failed: $(head -c 300 "$dir/set-$i.err")"; return; }
  want=$(for ((r = 0; r < rounds; r++)); do echo "c$i|${zones[$i]}"; done)
  check_lines "set-$i" own: "$want" "own settings"
}

# A client that sets nothing never sees anyone's custom setting.
clean_job() {
  local r zone want
  {
    echo "select 'zone:' || current_setting('TimeZone');"
    for ((r = 0; r < rounds * 2; r++)); do
      echo "select 'seen:' || coalesce(current_setting('myapp.who', true), '') || '|' || current_setting('TimeZone');"
    done
  } | client clean || { verdict clean "psql failed: $(head -c 300 "$dir/clean.err")"; return; }
  zone=$(sed -n 's/^zone://p' "$dir/clean.out")
  want=$(for ((r = 0; r < rounds * 2; r++)); do echo "|$zone"; done)
  check_lines clean seen: "$want" "no other client's settings"
}

# SQL PREPARE/EXECUTE, the same name in 8 clients.
prepare_job() {
  local i=$1 it want
  {
    echo "PREPARE q(int) AS SELECT 'got:' || \$1 * $((i + 1));"
    for ((it = 0; it < rounds; it++)); do
      echo "EXECUTE q($it);"
    done
    echo "DEALLOCATE q;"
  } | client "prep-$i" || { verdict "prep-$i" "psql failed: $(head -c 300 "$dir/prep-$i.err")"; return; }
  want=$(for ((it = 0; it < rounds; it++)); do echo $((it * (i + 1))); done)
  check_lines "prep-$i" got: "$want" "own statement"
}

# A session advisory lock held across transactions keeps its backend; the
# holder and the other client take turns, round by round.
lock_job() {
  local r pid want
  {
    echo "select pg_advisory_lock(917) \\g /dev/null"
    echo "select 'first:' || pg_backend_pid();"
    for ((r = 0; r < rounds; r++)); do
      echo "select 'pid:' || pg_backend_pid();"
      echo "\\! touch $dir/lock-a-$r"
      wait_for "lock-b-$r" || break
    done
    echo "select pg_advisory_unlock(917) \\g /dev/null"
    echo "\\! touch $dir/lock-unlocked"
  } | client lock &
  {
    for ((r = 0; r < rounds; r++)); do
      wait_for "lock-a-$r" || break
      echo "select 'held:' || pg_try_advisory_lock(917);"
      echo "\\! touch $dir/lock-b-$r"
    done
    wait_for lock-unlocked
    echo "select 'released:' || pg_try_advisory_lock(917);"
    echo "select pg_advisory_unlock_all() \\g /dev/null"
  } | client lock-2
  wait $! || { verdict lock "psql failed: $(head -c 300 "$dir/lock.err")"; return; }
  pid=$(sed -n 's/^first://p' "$dir/lock.out")
  want=$(for ((r = 0; r < rounds; r++)); do echo "$pid"; done)
  check_lines lock pid: "$want" "pinned backend"
  [ "$(cat "$dir/lock.verdict")" = ok ] || return
  want=$(for ((r = 0; r < rounds; r++)); do echo false; done)
  check_lines lock-2 held: "$want" "lock still held"
  [ "$(cat "$dir/lock-2.verdict")" = ok ] || { cp "$dir/lock-2.verdict" "$dir/lock.verdict"; return; }
  check_lines lock-2 released: true "lock released"
  cp "$dir/lock-2.verdict" "$dir/lock.verdict"
}

# LISTEN in one connection, NOTIFY from another: every notification arrives.
# psql prints the notifications that arrived after each command it runs, so
# the listener runs "select 'tick'" until it has all of them, for at most 30 s
# once the sender has sent them all (however long a loaded machine takes to
# send them: a bound on sending would fail a slow run, not a lost message).
listen_job() {
  local n k sent_at= want got
  {
    echo "LISTEN drv_chan;"
    echo "\\! touch $dir/listening"
    wait_for listening || return
    for ((k = 0; ; k++)); do
      [ "$(grep -c '^Asynchronous notification' "$dir/listener.out")" -ge "$notifications" ] && break
      if [ -z "$sent_at" ] && [ -e "$dir/sent" ]; then
        sent_at=$SECONDS
      fi
      [ -n "$sent_at" ] && ((SECONDS - sent_at >= 30)) && break
      echo "select 'tick';"
      echo "\\! touch $dir/tick-$k"
      wait_for "tick-$k" || break
    done
  } | client listener &
  wait_for listening
  {
    for ((n = 0; n < notifications; n++)); do
      if ((n % 2 == 0)); then
        echo "NOTIFY drv_chan, '$n';"
      else
        echo "select pg_notify('drv_chan', '$n') \\g /dev/null"
      fi
    done
  } | client sender || { verdict listener "sender psql failed: $(head -c 300 "$dir/sender.err")"; }
  touch "$dir/sent"
  wait $! || { verdict listener "psql failed: $(head -c 300 "$dir/listener.err")"; return; }
  [ -e "$dir/listener.verdict" ] && return
  got=$(sed -n 's/^Asynchronous notification "drv_chan" with payload "\(.*\)" received.*/\1/p' "$dir/listener.out")
  want=$(seq 0 $((notifications - 1)))
  if [ "$got" = "$want" ]; then
    verdict listener ok
  else
    verdict listener "notifications in order: got $(echo "$got" | tr '\n' ' '), want 0..$((notifications - 1))"
  fi
}

churn_job() {
  while [ ! -e "$dir/stop" ]; do
    echo "select 1 \\g /dev/null"
  done | client "churn-$1"
}

churners=()
for i in 0 1 2 3; do
  churn_job "$i" &
  churners+=($!)
done
jobs=()
listen_job &
jobs+=($!)
clean_job &
jobs+=($!)
lock_job &
jobs+=($!)
for i in 0 1 2 3 4 5 6 7; do
  settings_job "$i" &
  jobs+=($!)
  prepare_job "$i" &
  jobs+=($!)
done
for p in "${jobs[@]}"; do
  wait "$p"
done
touch "$dir/stop"
for p in "${churners[@]}"; do
  wait "$p"
done

errors=()
for name in listener clean lock set-{0..7} prep-{0..7}; do
  v=$(cat "$dir/$name.verdict" 2>/dev/null || echo "no verdict")
  [ "$v" = ok ] || errors+=("client $name: $v")
done
for i in 0 1 2 3; do
  [ -s "$dir/churn-$i.err" ] && errors+=("client churn-$i: $(head -c 300 "$dir/churn-$i.err")")
done
[ -s "$dir/feeder.err" ] && errors+=("$(head -n 1 "$dir/feeder.err")")
version=$("$psql_bin" --version | awk '{print $3}')
if [ "${#errors[@]}" -gt 0 ]; then
  for e in "${errors[@]:0:5}"; do echo "$e" >&2; done
  echo "RESULT psql txnstate: FAIL (${#errors[@]} errors; first: ${errors[0]}) clients=23 psql=$version"
  exit 1
fi
echo "RESULT psql txnstate: ok (clients=23 psql=$version)"
