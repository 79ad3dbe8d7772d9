"""Shared pieces of the Python driver programs (psycopg 3, psycopg2, asyncpg).

Connection facts come from the standard libpq variables PGHOST, PGPORT,
PGUSER, PGPASSWORD and PGDATABASE; the knobs of a run from DRIVER_*:

  DRIVER_CLIENTS        concurrent clients (default 40)
  DRIVER_ITERATIONS     iterations per client (default 50)
  DRIVER_MAX_BACKENDS   fail if the clients saw more distinct server backends
                        (pg_backend_pid) than this; unset = no check
  DRIVER_EXPECT_MOVES   "1": fail unless at least one client saw its statements
                        run on more than one backend (a pool smaller than the
                        client count must move them)
  DRIVER_STRICT         "1" (default): the ALTER TABLE scenario asserts sluice's
                        contract (at most one 0A000 error per client, then
                        success); "0" only reports what the driver saw, for runs
                        directly against Postgres
  DRIVER_STATEMENTS     distinct statements of the memory scenario (default 10000)
  DRIVER_MAX_PREPARED   bound on the server's pg_prepared_statements count in the
                        memory scenario; unset = report only

Every program ends with one summary line, "RESULT <variant> <scenario>: ok
(...)" or "RESULT <variant> <scenario>: FAIL (...)", and exits 0 only on ok.
"""

import os
import sys
import threading
import traceback

ZONES = ["UTC", "Asia/Tokyo", "America/New_York", "Europe/Berlin", "Australia/Sydney"]


def env_int(name, default):
    value = os.environ.get(name, "")
    return int(value) if value else default


def conn_params():
    return {
        "host": os.environ.get("PGHOST", "127.0.0.1"),
        "port": int(os.environ.get("PGPORT", "5432")),
        "user": os.environ.get("PGUSER", "app"),
        "password": os.environ.get("PGPASSWORD", ""),
        "dbname": os.environ.get("PGDATABASE", "app"),
    }


CLIENTS = env_int("DRIVER_CLIENTS", 40)
ITERATIONS = env_int("DRIVER_ITERATIONS", 50)
MAX_BACKENDS = env_int("DRIVER_MAX_BACKENDS", 0)
EXPECT_MOVES = os.environ.get("DRIVER_EXPECT_MOVES", "") == "1"
STRICT = os.environ.get("DRIVER_STRICT", "1") != "0"
STATEMENTS = env_int("DRIVER_STATEMENTS", 10000)
MAX_PREPARED = env_int("DRIVER_MAX_PREPARED", 0)


class Check(Exception):
    """A wrong result: the run fails with this message."""


def expect(got, want, what):
    if got != want:
        raise Check(f"{what}: got {got!r}, want {want!r}")


class Expectations:
    """Compares several values at once, so one failure names every wrong one."""

    def __init__(self):
        self.wrong = []

    def check(self, got, want, what):
        if got != want:
            self.wrong.append((what, got, want))

    def done(self, report):
        if not self.wrong:
            return
        with report.lock:
            tally = report.notes.setdefault("wrong", {})
            examples = report.examples
            for what, got, want in self.wrong:
                key = what.replace(" ", "_")
                tally[key] = tally.get(key, 0) + 1
                examples.setdefault(key, f"{what}: got {got!r}, want {want!r}")
        raise Check("; ".join(f"{what}: got {got!r}, want {want!r}"
                              for what, got, want in self.wrong))


def table(variant, base):
    """Per-variant table names, so concurrent programs never share DDL."""
    return f"drv_{base}_{variant.replace('-', '_')}"


class Report:
    """Collects failures and observations of all clients; prints the summary."""

    def __init__(self, variant, scenario):
        self.variant = variant
        self.scenario = scenario
        self.lock = threading.Lock()
        self.errors = []
        self.backends = set()
        self.moved = 0
        self.notes = {}
        self.clients = CLIENTS
        self.examples = {}  # the first wrong value seen of each kind

    def fail(self, client, exc):
        with self.lock:
            detail = describe(exc)
            self.errors.append(f"client {client}: {detail}")
            if len(self.errors) <= 5:
                print(f"client {client} failed: {detail}", file=sys.stderr)
                if not isinstance(exc, Check):
                    traceback.print_exception(exc, file=sys.stderr)

    def saw_backends(self, pids):
        with self.lock:
            self.backends |= set(pids)
            if len(set(pids)) > 1:
                self.moved += 1

    def note(self, key, value):
        with self.lock:
            self.notes[key] = value

    def finish(self):
        """Prints the summary line and returns the exit code."""
        if self.backends:
            if MAX_BACKENDS and len(self.backends) > MAX_BACKENDS:
                self.errors.append(
                    f"clients saw {len(self.backends)} distinct backends, "
                    f"more than the pool's {MAX_BACKENDS}")
            if EXPECT_MOVES and self.moved == 0:
                self.errors.append("no client's statements moved between backends")
        for key, text in sorted(self.examples.items()):
            print(f"first wrong {key}: {text}", file=sys.stderr)
        facts = [f"clients={self.clients}"]
        if self.backends:
            facts.append(f"backends={len(self.backends)} moved={self.moved}")
        facts += [f"{k}={fmt(v)}" for k, v in sorted(self.notes.items())]
        if self.errors:
            first = self.errors[0].replace("\n", " ")
            print(f"RESULT {self.variant} {self.scenario}: FAIL "
                  f"({len(self.errors)} errors; first: {first}) {' '.join(facts)}")
            return 1
        print(f"RESULT {self.variant} {self.scenario}: ok ({' '.join(facts)})")
        return 0


def fmt(value):
    if isinstance(value, dict):
        return ",".join(f"{k}:{v}" for k, v in sorted(value.items()))
    return str(value)


def describe(exc):
    """One line naming an exception, its SQLSTATE when it carries one."""
    code = sqlstate(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    return f"{name}{' [' + code + ']' if code else ''}: {text}"


def sqlstate(exc):
    for attr in ("sqlstate", "pgcode"):
        code = getattr(exc, attr, None)
        if isinstance(code, str) and code:
            return code
    diag = getattr(exc, "diag", None)
    if diag is not None and getattr(diag, "sqlstate", None):
        return diag.sqlstate
    return ""


def run_threads(n, target):
    """Runs target(i) for i in range(n) on n threads and waits for them."""
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def usage(argv, variants, scenarios):
    if len(argv) != 3 or argv[1] not in variants or argv[2] not in scenarios:
        print(f"usage: {argv[0]} {'|'.join(variants)} {'|'.join(scenarios)}", file=sys.stderr)
        sys.exit(2)
    return argv[1], argv[2]


class AlterTally:
    """What one client saw after the result type changed under its statement."""

    def __init__(self):
        self.errors = []   # SQLSTATEs of failed executions
        self.pattern = ""  # one letter per execution: "." ok, "E" error

    def ok(self):
        self.pattern += "."

    def error(self, code):
        self.errors.append(code or "?")
        self.pattern += "E"

    def check(self, attempts):
        """Raises Check when the strict contract is broken."""
        bad = [e for e in self.errors if e != "0A000"]
        if bad:
            raise Check(f"after ALTER TABLE: errors other than 0A000: {bad}")
        if not STRICT:
            return
        if len(self.errors) > 1:
            raise Check(f"after ALTER TABLE: {len(self.errors)} errors in {attempts} "
                        f"executions, at most one allowed (executions: {self.pattern})")
        if self.pattern.endswith("E"):
            raise Check(f"after ALTER TABLE: the execution after the error was not seen")

    def record(self, report):
        """Counts this client's pattern into the report's notes."""
        with report.lock:
            patterns = report.notes.setdefault("patterns", {})
            patterns[self.pattern] = patterns.get(self.pattern, 0) + 1
