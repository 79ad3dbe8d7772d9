#!/usr/bin/python3
"""Load, fault schedule and end checks of bench/soak.sh (see bench/README.md).

Runs against a sluice and a Postgres that soak.sh started, as root (it
signals Postgres and sluice, which run as an unprivileged user).  Every
client is a thread of this process; all traffic goes to 127.0.0.x and
everything stops by itself: clients at the end of the run, each fault after
its own bounded steps.  Prints a markdown table and the summary line

    soak: N committed, L lost, H hung, K leaked, E errors without SQLSTATE

and exits 1 when L, H, K or E (or a wrong answer, a failed probe, a sanitizer
report or a crash of sluice) is non-zero.

Only Debian's python3-psycopg is needed (/usr/bin/python3 sees it).
"""

import argparse
import base64
import collections
import contextlib
import hashlib
import hmac
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import psycopg
from psycopg.rows import dict_row

# ---------------------------------------------------------------- settings

# The limits soak.sh writes into sluice.ini; the bounds below derive from them.
CFG = {
    "query_wait_timeout": 8.0,
    "query_timeout": 5.0,
    "slow_query_timeout": 2.0,  # [databases] app_slow query_timeout
    "cancel_grace": 2.0,
    "idle_transaction_timeout": 3.0,
    "client_login_timeout": 10.0,
    "auth_failure_delay_max": 5.0,
    "rate_limit_wait": 1.0,  # [tenant.rated]
}
# [tenant.rated]: 20 requests a second, burst 20, its tokens kept in Redis.
RATED = {"rate": 20.0, "burst": 20}
PG_OWNER = "sluicepg"  # soak.sh runs Postgres as this user
# Longest a request may take before its client counts as hung: a wait in
# the queue, then a statement cancelled at query_timeout whose cancel
# Postgres may not answer (stopped) for cancel_grace, plus the 1 s slack
# of the definition.
REQUEST_BOUND = CFG["query_wait_timeout"] + CFG["query_timeout"] + CFG["cancel_grace"] + 1
SLOW_BOUND = CFG["query_wait_timeout"] + CFG["slow_query_timeout"] + CFG["cancel_grace"] + 1
RATED_BOUND = REQUEST_BOUND + CFG["rate_limit_wait"]
LOGIN_BOUND = CFG["client_login_timeout"] + 1
POOL_SIZES = (10, 6)  # default_pool_size alternates between these at each reload


def now():
    return time.monotonic()


# ---------------------------------------------------------------- bookkeeping


class Soak:
    """Everything the threads count, behind one lock."""

    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.counts = collections.Counter()  # role/event -> n
        self.states = collections.Counter()  # (role, sqlstate) -> n
        self.nostate = collections.Counter()  # (role, message) -> n
        self.nostate_at = []  # (time, role, full text), to match with sluice's log
        self.hung = []  # (role, what, seconds, bound, client port or None)
        self.held = []  # what quiesce found held, as logged (dump_held)
        self.wrong = []  # wrong answers
        self.acked = []  # ledger ids whose COMMIT returned OK
        self.probes = []  # (probe, ok, detail)
        self.stop = threading.Event()
        self.inflight = {}  # thread ident -> (role, what, start, bound, client port or None)
        self.next_id = 0
        self.pool_size = POOL_SIZES[0]
        self.round = 0
        self.redis_restarts = 0

    def count(self, key, n=1):
        with self.lock:
            self.counts[key] += n

    def new_id(self):
        with self.lock:
            self.next_id += 1
            return self.args.id_base + self.next_id

    def error(self, role, exc, conn=None):
        state = getattr(exc, "sqlstate", None)
        text = str(exc).strip()
        msg = text.splitlines()[0] if text else type(exc).__name__
        if state is None and conn is not None and getattr(conn, "soak_notice_error", None):
            # libpq hands an ErrorResponse that arrives while no query runs
            # to the notice processor, and reports only the close after it.
            state = conn.soak_notice_error
        if state is None and isinstance(exc, psycopg.OperationalError) and sent_by_server(text):
            # libpq keeps no SQLSTATE for an ErrorResponse that comes during
            # login or while no query runs (idle_transaction_timeout, a
            # server lost between statements), only its text: that text
            # proves sluice sent one, and its builder always sets the code.
            state = "async"
        with self.lock:
            if state:
                self.states[(role, state)] += 1
            else:
                self.nostate[(role, re.sub(r"\d+", "N", msg)[:120])] += 1
                self.nostate_at.append((time.strftime("%H:%M:%S"), role, text.replace("\n", " ")[:200]))
        return state

    def probe(self, name, ok, detail):
        with self.lock:
            self.probes.append((name, ok, detail))
        log(f"probe {name}: {'ok' if ok else 'FAILED'} ({detail})")

    class _Op:
        def __init__(self, soak, role, what, bound, port):
            self.soak, self.role, self.what, self.bound, self.port = soak, role, what, bound, port

        def __enter__(self):
            self.start = now()
            with self.soak.lock:
                self.soak.inflight[threading.get_ident()] = (self.role, self.what, self.start, self.bound,
                                                             self.port)
            return self

        def __exit__(self, *exc):
            took = now() - self.start
            with self.soak.lock:
                self.soak.inflight.pop(threading.get_ident(), None)
                if took > self.bound:
                    self.soak.hung.append((self.role, self.what, round(took, 2), self.bound, self.port))
            return False

    def op(self, role, what, bound, conn=None):
        """Times one client wait; longer than `bound` counts as hung.  With
        the connection, a hung wait names its local port, which finds the
        client in sluice's log (hung_client_log)."""
        return Soak._Op(self, role, what, bound, local_port(conn))


# What libpq says on its own when a connection ends without an
# ErrorResponse (or before one could be read): any other text of an
# OperationalError is the message of an ErrorResponse.
LIBPQ_OWN = re.compile(r"(server closed the connection unexpectedly|could not receive data from server"
                       r"|could not send data to server|no connection to the server|Connection refused"
                       r"|lost synchronization with server|timeout expired$|connection is bad"
                       r"|SSL SYSCALL error|the connection is closed|connection is lost"
                       r"|invalid socket|could not connect to server)")


def sent_by_server(text):
    if re.search(r"\b(FATAL|ERROR):  ", text):
        return True
    # libpq appends its own words after the server's message ("server
    # closed the connection unexpectedly" follows a FATAL): the first line
    # says who spoke first.
    body = re.sub(r"^(connection failed|consuming input failed|sending query failed"
                  r"(?: and (?:discarding|fetching) results failed)?):\s*", "", text).splitlines()
    return bool(body) and bool(body[0].strip()) and not LIBPQ_OWN.match(body[0].strip())


def log(msg):
    print(f"soak {time.strftime('%H:%M:%S')}: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- connections


def url(args, db="app", user="app", password="app-secret", **extra):
    parts = [f"host=127.0.0.1 port={args.port} dbname={db} user={user} password={password}",
             "sslmode=disable", f"connect_timeout={int(LOGIN_BOUND) + 5}"]
    parts += [f"{k}={v}" for k, v in extra.items()]
    return " ".join(parts)


def connect(soak, role, db="app", **kw):
    with soak.op(role, "login", LOGIN_BOUND):
        conn = psycopg.connect(url(soak.args, db), **kw)
    watch_notices(conn)
    return conn


def watch_notices(conn):
    """Keeps the SQLSTATE of an ERROR or FATAL that libpq passed on as a notice."""
    conn.soak_notice_error = None

    def seen(diag):
        if diag.severity_nonlocalized in ("ERROR", "FATAL", "PANIC") and diag.sqlstate:
            conn.soak_notice_error = diag.sqlstate

    conn.add_notice_handler(seen)


def superuser(args):
    return psycopg.connect(f"host={args.pg_socket} port={args.pg_port} user={args.pg_super} dbname=app",
                           autocommit=True)


def console(args):
    return psycopg.connect(url(args, db="sluice", user="admin", password="admin-secret"),
                           autocommit=True, cursor_factory=psycopg.ClientCursor)


def close_quietly(conn):
    if conn is not None:
        try:
            conn.close()
        except Exception:
            pass


@contextlib.contextmanager
def closed_on_error(conn):
    """Closes `conn` when the block raises.  A connection the load drops
    without closing stays open (its notice handler refers back to it, so only
    the cycle collector would free it) and sluice rightly keeps its client:
    the quiesce check then counts it as leaked."""
    try:
        yield conn
    except BaseException:
        close_quietly(conn)
        raise


def local_port(conn):
    """The local port of a psycopg connection's socket, or None; looked up
    once per connection (kept on it, as soak_notice_error is)."""
    if conn is None:
        return None
    port = getattr(conn, "soak_port", None)
    if port is None:
        try:
            with socket.socket(fileno=os.dup(conn.fileno())) as s:
                port = s.getsockname()[1]
        except (OSError, psycopg.Error):
            return None
        conn.soak_port = port
    return port


def hung_client_log(args, port, limit=40):
    """sluice's log lines of the client that logged in from `port`: its
    login line gives its id, and the last `limit` lines with that id follow."""
    with open(args.sluice_log, errors="replace") as f:
        text = f.read().splitlines()
    ids = {m.group(1) for line in text if f"(127.0.0.1:{port})" in line
           for m in [re.search(r" (w\d+ C-\d+) ", line)] if m}
    return [line[:400] for line in text if any(f" {i} " in line for i in ids)][-limit:]


def reset_socket(conn):
    """Closes the connection's socket with an RST (SO_LINGER 0), as a
    crashed client host or a killed container would, without psycopg knowing;
    /dev/null takes the descriptor's place so psycopg closes that later."""
    fd = conn.fileno()
    s = socket.socket(fileno=os.dup(fd))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, fd)
    os.close(null)


# ---------------------------------------------------------------- raw protocol


def pack_msg(kind, body):
    return kind + struct.pack("!I", len(body) + 4) + body


def startup_packet(user, db):
    body = struct.pack("!I", 3 << 16) + f"user\0{user}\0database\0{db}\0\0".encode()
    return struct.pack("!I", len(body) + 4) + body


class Raw:
    """A hand-driven client socket: for the probes that no driver would send."""

    def __init__(self, args, source="127.0.0.1", timeout=30.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((source, 0))
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", args.port))
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def read_msg(self):
        """(kind, body), or (None, None) at EOF."""
        while True:
            if len(self.buf) >= 5:
                n = struct.unpack("!I", self.buf[1:5])[0]
                if len(self.buf) >= 1 + n:
                    kind, body = self.buf[:1], self.buf[5:1 + n]
                    self.buf = self.buf[1 + n:]
                    return kind, body
            chunk = self.sock.recv(65536)
            if not chunk:
                return None, None
            self.buf += chunk

    def error_state(self):
        """The SQLSTATE of the first ErrorResponse, or None at EOF without one."""
        while True:
            kind, body = self.read_msg()
            if kind is None:
                return None
            if kind == b"E":
                return error_field(body, b"C")

    def login(self, user, db, password, wrong=False):
        """SCRAM-SHA-256 login; returns the SQLSTATE of a refusal or 'ok'."""
        self.sock.sendall(startup_packet(user, db))
        kind, body = self.read_msg()
        if kind == b"E":
            return error_field(body, b"C")
        if kind != b"R" or struct.unpack("!I", body[:4])[0] != 10:
            return f"unexpected {kind!r}"
        cnonce = base64.b64encode(os.urandom(18)).decode()
        first_bare = f"n=,r={cnonce}"
        data = ("n,," + first_bare).encode()
        self.sock.sendall(pack_msg(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(data)) + data))
        kind, body = self.read_msg()
        if kind == b"E":
            return error_field(body, b"C")
        server_first = body[4:].decode()
        attrs = dict(a.split("=", 1) for a in server_first.split(","))
        final_bare = f"c=biws,r={attrs['r']}"
        if wrong:
            proof = os.urandom(32)
        else:
            salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]),
                                         int(attrs["i"]))
            client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
            stored = hashlib.sha256(client_key).digest()
            auth = f"{first_bare},{server_first},{final_bare}".encode()
            sig = hmac.new(stored, auth, hashlib.sha256).digest()
            proof = bytes(a ^ b for a, b in zip(client_key, sig))
        final = f"{final_bare},p={base64.b64encode(proof).decode()}".encode()
        self.sock.sendall(pack_msg(b"p", final))
        while True:
            kind, body = self.read_msg()
            if kind is None:
                return None
            if kind == b"E":
                return error_field(body, b"C")
            if kind == b"Z":
                return "ok"


def error_field(body, code):
    for field in body.split(b"\0"):
        if field[:1] == code:
            return field[1:].decode()
    return None


# ---------------------------------------------------------------- load roles


def run_role(soak, role, fn):
    """A client loop: reconnects after any error until the run stops."""
    conn = None
    while not soak.stop.is_set():
        try:
            if conn is None or conn.closed or conn.broken:
                close_quietly(conn)
                conn = None
                conn = fn(soak, None)
            else:
                fn(soak, conn)
        except psycopg.Error as e:
            soak.error(role, e, conn)
            try:
                if conn is not None and not conn.closed and not conn.broken:
                    conn.rollback()
            except psycopg.Error:
                close_quietly(conn)
                conn = None
            soak.stop.wait(0.2)  # no hot reconnect loop while Postgres is down
    close_quietly(conn)


def ledger(soak, conn):
    """Inserts unique ids; an id counts only once its COMMIT returned OK.
    app_rw is the primary,standby host list (target_session_attrs=read-write):
    the ledger follows the failover fault to the promoted standby."""
    if conn is None:
        return connect(soak, "ledger", db="app_rw")
    i = soak.new_id()
    with soak.op("ledger", "insert", REQUEST_BOUND, conn):
        # pg.sh's cluster runs with synchronous_commit off, which loses the
        # last commits on kill -9 by design: the ledger asks for durability.
        conn.execute("SET LOCAL synchronous_commit = on")
        conn.execute("INSERT INTO soak_ledger (id) VALUES (%s)", (i,))
    with soak.op("ledger", "select", REQUEST_BOUND, conn):
        conn.execute("SELECT count(*) FROM pgbench_branches")
    with soak.op("ledger", "commit", REQUEST_BOUND, conn):
        conn.commit()
    with soak.lock:
        soak.acked.append(i)
    soak.count("ledger commits")
    return conn


PREPARED = [(f"SELECT %s::int * {k} + length(%s::text) AS v{k}", k) for k in range(1, 25)]


def prepared(soak, conn):
    """Named prepared statements (psycopg prepares at the first use), answers checked."""
    if conn is None:
        return connect(soak, "prepared", autocommit=True, prepare_threshold=0)
    sql, k = random.choice(PREPARED)
    n, s = random.randint(0, 10**6), "x" * random.randint(0, 20)
    with soak.op("prepared", "execute", REQUEST_BOUND, conn):
        got = conn.execute(sql, (n, s), prepare=True).fetchone()[0]
    if got != n * k + len(s):
        with soak.lock:
            soak.wrong.append(f"{sql} ({n}, {s!r}) -> {got}")
    soak.count("prepared executes")
    return conn


def listener(soak, conn):
    """LISTEN on a session-mode pool; notifications arrive with each poll."""
    if conn is None:
        conn = connect(soak, "listen", db="app_session", autocommit=True)
        with closed_on_error(conn):
            conn.add_notify_handler(lambda n: soak.count("notifications received"))
            conn.execute("LISTEN soak")
        return conn
    with soak.op("listen", "poll", REQUEST_BOUND, conn):
        conn.execute("SELECT 1")
    soak.stop.wait(0.3)
    return conn


def notifier(soak, conn):
    if conn is None:
        return connect(soak, "notify", autocommit=True)
    with soak.op("notify", "notify", REQUEST_BOUND, conn):
        conn.execute("NOTIFY soak, 'tick'")
    soak.count("notifications sent")
    soak.stop.wait(0.2)
    return conn


def slow(soak, conn):
    """Statements past app_slow's query_timeout: each must end in 57014."""
    if conn is None:
        return connect(soak, "slow", db="app_slow", autocommit=True)
    long = random.random() < 0.7
    try:
        with soak.op("slow", "pg_sleep", SLOW_BOUND, conn):
            conn.execute("SELECT pg_sleep(%s)", (6 if long else 0.2,))
        soak.count("slow completed")
        if long:
            with soak.lock:
                soak.wrong.append("pg_sleep(6) was not cancelled at query_timeout")
    except psycopg.errors.QueryCanceled:
        soak.count("slow cancelled (57014)")
    return conn


def idle_in_transaction(soak, conn):
    """Idle inside a transaction, sometimes past idle_transaction_timeout."""
    if conn is None:
        return connect(soak, "idle_tx")
    past = random.random() < 0.5
    with soak.op("idle_tx", "begin", REQUEST_BOUND, conn):
        conn.execute("SELECT 1")
    soak.stop.wait(CFG["idle_transaction_timeout"] + 1 if past else 0.5)
    try:
        with soak.op("idle_tx", "commit", REQUEST_BOUND, conn):
            conn.execute("SELECT 2")
            conn.commit()
        soak.count("idle_tx committed")
        if past and not soak.stop.is_set():
            with soak.lock:
                soak.wrong.append("a transaction idle past idle_transaction_timeout was not ended")
    except psycopg.Error as e:
        st = soak.error("idle_tx", e, conn)
        soak.count(f"idle_tx ended ({st})")
        close_quietly(conn)
        return None
    return conn


def rated(soak, conn):
    """As many requests as it can on a tenant limited to 20/s through Redis:
    each one is admitted or refused 53400, and over a run no more are
    admitted than the bucket gave (checked at the end)."""
    if conn is None:
        return connect(soak, "rated", db="app_rated", autocommit=True)
    try:
        with soak.op("rated", "select", RATED_BOUND, conn):
            conn.execute("SELECT 1")
        soak.count("rated admitted")
    except psycopg.errors.ConfigurationLimitExceeded:
        soak.count("rated refused (53400)")
    return conn


def console_reader(soak, conn):
    if conn is None:
        with soak.op("console", "login", LOGIN_BOUND):
            conn = console(soak.args)
        watch_notices(conn)
        return conn
    for what in ("POOLS", "CLIENTS", "SERVERS", "STATS", "LATENCY", "DATABASES", "LISTS"):
        with soak.op("console", f"SHOW {what}", REQUEST_BOUND):
            conn.execute(f"SHOW {what}").fetchall()
        soak.count("console SHOWs")
    soak.stop.wait(0.5)
    return conn


# libpq hands an ErrorResponse that arrives while no query runs (sluice's
# 08006 or Postgres' 57P01 when the server dies between two statements of a
# transaction) to its notice processor, which prints "FATAL:  ..." on stderr,
# and fails the next query on the close that follows: pgbench then reports
# "perhaps the backend died while processing" with no SQLSTATE of its own.
PGBENCH_CLIENTS = 4
PGBENCH_NOTICE = re.compile(r"^FATAL:  ")
PGBENCH_ERROR = re.compile(r"\b(ERROR|FATAL):  ")


def pgbench_aborts(stderr):
    """Each client abort in a one-client pgbench's stderr, with "error" when
    its line quotes the ErrorResponse, "async" when a FATAL notice came before
    it (a whole ErrorResponse: sluice's builder and Postgres always set its
    code), or None: an abort without SQLSTATE."""
    notice = False
    for line in stderr.splitlines():
        if PGBENCH_NOTICE.match(line):
            notice = True
        if not re.search(r"client \d+ .*aborted", line):
            continue
        if PGBENCH_ERROR.search(line):
            yield line, "error"
        else:
            yield line, "async" if notice else None


def pgbench(soak):
    """TPC-B through sluice in segments, one client per pgbench (four run at
    once): pgbench ends a client at its first error, and its notices name no
    client, so only with one client can an abort be matched with the
    asynchronous FATAL that came before it."""
    env = dict(os.environ, PGPASSWORD="app-secret")
    while not soak.stop.is_set():
        seg = 10
        cmd = ["pgbench", "-n", "-c", "1", "-j", "1", "-T", str(seg), "-M", "simple",
               "-h", "127.0.0.1", "-p", str(soak.args.port), "-U", "app", "app"]
        start = now()
        try:
            p = subprocess.run(cmd, env=env, capture_output=True, text=True,
                               timeout=seg + REQUEST_BOUND + 30)
        except subprocess.TimeoutExpired:
            with soak.lock:
                soak.hung.append(("pgbench", "segment", round(now() - start, 1), seg + REQUEST_BOUND))
            continue
        m = re.search(r"number of transactions actually processed: (\d+)", p.stdout)
        soak.count("pgbench transactions", int(m.group(1)) if m else 0)
        for line, state in pgbench_aborts(p.stderr):
            soak.count("pgbench client errors")
            with soak.lock:
                if state:
                    soak.states[("pgbench", state)] += 1
                    continue
                soak.nostate[("pgbench", re.sub(r"\d+", "N", line)[:120])] += 1
            log(f"pgbench segment ending {time.strftime('%H:%M:%S')}, an abort without SQLSTATE; "
                f"its stderr: {p.stderr.strip()[-3000:]}")
        if now() - start < 1:
            soak.stop.wait(1)


ROLES = [  # role, function, threads
    ("ledger", ledger, 4),
    ("prepared", prepared, 3),
    ("listen", listener, 2),
    ("notify", notifier, 1),
    ("slow", slow, 2),
    ("idle_tx", idle_in_transaction, 2),
    ("console", console_reader, 1),
    ("rated", rated, 1),
]


def start_load(soak):
    threads = []
    for role, fn, n in ROLES:
        for _ in range(n):
            threads.append(threading.Thread(target=run_role, args=(soak, role, fn), name=role, daemon=True))
    for _ in range(PGBENCH_CLIENTS):
        threads.append(threading.Thread(target=pgbench, args=(soak,), name="pgbench", daemon=True))
    for t in threads:
        t.start()
    return threads


def stop_load(soak, threads):
    """Stops the clients; one still inside a wait past its bound is hung."""
    soak.stop.set()
    deadline = now() + max(REQUEST_BOUND * 2, LOGIN_BOUND) + 15
    for t in threads:
        t.join(max(0.1, deadline - now()))
    with soak.lock:
        for t in threads:
            if t.is_alive():
                info = soak.inflight.get(t.ident)
                soak.hung.append((t.name, info[1] if info else "?", round(now() - info[2], 1) if info else -1,
                                  info[3] if info else 0, info[4] if info else None))


# ---------------------------------------------------------------- Postgres and sluice


def pg_pids(args):
    try:
        with open(os.path.join(args.pg_data, "postmaster.pid")) as f:
            pm = int(f.readline())
    except (OSError, ValueError):
        return []
    pids = [pm]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pm:
                        pids.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return pids


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def harness(script, env, cmd):
    """tests/harness/pg.sh or redis.sh; its output (the env file) or an exception."""
    p = subprocess.run([script, cmd], env=dict(os.environ, **env), capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"{os.path.basename(script)} {cmd} failed: {p.stderr.strip()[-300:]}")
    return p.stdout


def env_port(out, key):
    return int(re.search(rf"{key}='(\d+)'", out).group(1))


def pg_start(args):
    port = env_port(harness(args.pg_sh, {"SLUICE_PG_NAME": args.pg_name}, "start"), "SLUICE_TEST_PGPORT")
    if port != args.pg_port:
        raise RuntimeError(f"Postgres came back on port {port}, not {args.pg_port}")


def as_owner(cmd):
    """A Postgres tool as the user the clusters belong to."""
    p = subprocess.run(["setpriv", f"--reuid={PG_OWNER}", f"--regid={PG_OWNER}", "--init-groups", "--"] + cmd,
                       cwd="/", capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"{os.path.basename(cmd[0])} failed: {(p.stderr or p.stdout).strip()[-300:]}")


def standby_superuser(args):
    return psycopg.connect(f"host={args.standby_socket} port={args.standby_port} user={args.pg_super} "
                           "dbname=app", autocommit=True)


def synchronous(conn, on):
    """With the standby synchronous, a COMMIT that asked for durability (the
    ledger's) returns once the standby has it too: a failover loses none."""
    if on:
        conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
    else:
        conn.execute("ALTER SYSTEM RESET synchronous_standby_names")
    conn.execute("SELECT pg_reload_conf()")


def wait_synced(su, what, timeout=60.0):
    """Until a standby streams from `su`'s server synchronously and has
    flushed everything written there so far."""
    lsn = su.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
    deadline = now() + timeout
    while True:
        row = su.execute("SELECT sync_state, flush_lsn >= %s::pg_lsn FROM pg_stat_replication "
                         "WHERE state = 'streaming'", (lsn,)).fetchone()
        if row is not None and row[0] == "sync" and row[1]:
            return
        if now() > deadline:
            raise RuntimeError(f"{what}: no synchronous standby caught up within {timeout:.0f} s ({row})")
        time.sleep(0.1)


def wait_streaming(su, what, timeout=60.0):
    """Until a standby streams from `su`'s server."""
    deadline = now() + timeout
    while su.execute("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'").fetchone()[0] == 0:
        if now() > deadline:
            raise RuntimeError(f"{what}: no standby streaming within {timeout:.0f} s")
        time.sleep(0.1)


def sluice_rss_kb(args):
    with open(f"/proc/{args.sluice_pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def sluice_fds(args):
    return len(os.listdir(f"/proc/{args.sluice_pid}/fd"))


def write_config(args, pool_size):
    with open(args.config) as f:
        text = f.read()
    write_config_text(args, re.sub(r"(?m)^default_pool_size = \d+$", f"default_pool_size = {pool_size}", text))


def write_config_text(args, text):
    with open(args.config, "w") as f:
        f.write(text)


def reload_sluice(args):
    """SIGHUP, and wait (10 s at most) for sluice to log the reload."""
    before = log_count(args, "reload")
    os.kill(args.sluice_pid, signal.SIGHUP)
    deadline = now() + 10
    while log_count(args, "reload") == before and now() < deadline:
        time.sleep(0.1)


def redis_state(args):
    """The limiter's redis_state for the rated tenant (SHOW RATELIMITS)."""
    with console(args) as c:
        c.row_factory = dict_row
        for r in c.execute("SHOW RATELIMITS").fetchall():
            if r["tenant"] == "rated":
                return r["redis_state"]
    return None


def log_count(args, needle):
    with open(args.sluice_log, errors="replace") as f:
        return f.read().count(needle)


# ---------------------------------------------------------------- faults


def kill_postgres(args):
    """kill -9 of the primary's postmaster and all its processes; returns how many."""
    pids = pg_pids(args)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = now() + 30
    while any(alive(p) for p in pids) and now() < deadline:
        time.sleep(0.1)
    # The killed postmaster stays a zombie where nothing reaps orphans, and
    # Postgres takes the socket's lock file of a pid that answers kill(0) for
    # a live postmaster: the file goes (pg.sh does the same for postmaster.pid).
    try:
        os.unlink(os.path.join(args.pg_socket, f".s.PGSQL.{args.pg_port}.lock"))
    except FileNotFoundError:
        pass
    return len(pids)


def f_kill9(soak):
    n = kill_postgres(soak.args)
    start = now()
    pg_start(soak.args)
    return f"{n} processes killed, Postgres back after {now() - start:.1f} s"


def f_failover(soak):
    """kill -9 of the primary and promotion of the standby: the ledger must
    go on writing there (app_rw).  Then the roles go back as they were, so
    that the other faults find them: the old primary is made a standby of
    the promoted one (pg_basebackup), takes over in a clean switchover (the
    promoted one stops, which waits until its standby has all its WAL) and
    pg.sh makes the standby again."""
    args = soak.args
    start = now()
    with superuser(args) as su:
        wait_synced(su, "before the failover")
    kill_postgres(args)
    harness(args.pg_sh, {"SLUICE_PG_NAME": args.pg_name}, "promote")
    with standby_superuser(args) as sb:
        synchronous(sb, False)  # no standby of its own yet
    promoted = now()
    before = soak.counts["ledger commits"]
    deadline = now() + 30
    while soak.counts["ledger commits"] < before + 20 and now() < deadline:
        time.sleep(0.1)
    on_standby = soak.counts["ledger commits"] - before
    soak.probe("ledger writes on the promoted standby", on_standby >= 20,
               f"{on_standby} commits within {now() - promoted:.1f} s of the promotion")

    pgdir = os.path.dirname(args.pg_data)
    pgbin = args.pg_bin
    shutil.rmtree(args.pg_data)
    as_owner([f"{pgbin}/pg_basebackup", "-D", args.pg_data, "-R", "-X", "stream", "-c", "fast", "--no-sync",
              "-h", args.standby_socket, "-p", str(args.standby_port), "-U", args.pg_super])
    # The copy has the standby's port and socket directory: the primary's again.
    with open(os.path.join(args.pg_data, "sluice-port.conf"), "w") as f:
        f.write(f"port = {args.pg_port}\n")
    os.unlink(os.path.join(args.pg_data, "sluice-standby.conf"))
    as_owner([f"{pgbin}/pg_ctl", "start", "-D", args.pg_data, "-l", os.path.join(pgdir, "postgres.log"),
              "-w", "-t", "120"])
    with standby_superuser(args) as sb:
        wait_streaming(sb, "switching back")
    harness(args.pg_sh, {"SLUICE_PG_NAME": args.pg_name + "-standby"}, "stop")
    as_owner([f"{pgbin}/pg_ctl", "promote", "-D", args.pg_data, "-w", "-t", "120"])
    port = env_port(harness(args.pg_sh, {"SLUICE_PG_NAME": args.pg_name}, "standby"), "SLUICE_TEST_STANDBY_PORT")
    if port != args.standby_port:
        # Another cluster took its port meanwhile: the host list follows.
        with open(args.config) as f:
            text = f.read()
        text = text.replace(f",{args.standby_port} dbname=app", f",{port} dbname=app")
        args.standby_port = port
        write_config_text(args, text)
        reload_sluice(args)
    with superuser(args) as su:
        synchronous(su, True)
        wait_synced(su, "after the failover")
    return (f"promoted in {promoted - start:.1f} s, {on_standby} ledger commits there, "
            f"roles back in {now() - promoted:.1f} s")


def f_redis_restart(soak):
    """Redis stopped for 2 s (its buckets are lost: it keeps nothing) and
    started again: the limiter falls back to local buckets meanwhile and
    must be back on Redis soon after."""
    args = soak.args
    env = {"SLUICE_REDIS_NAME": args.redis_name}
    harness(args.redis_sh, env, "stop")
    soak.stop.wait(2)
    down = redis_state(args)
    port = env_port(harness(args.redis_sh, env, "start"), "SLUICE_TEST_REDIS_PORT")
    soak.redis_restarts += 1
    if port != args.redis_port:
        raise RuntimeError(f"Redis came back on port {port}, not {args.redis_port}")
    start = now()
    state = redis_state(args)
    while state != "up" and now() < start + 30:
        time.sleep(0.2)
        state = redis_state(args)
    soak.probe("limiter back on Redis after its restart", state == "up",
               f"redis_state {down} while stopped, {state} {now() - start:.1f} s after the restart")
    return f"stopped 2 s ({down}), {state} {now() - start:.1f} s after the restart"


def f_sigstop(soak):
    pids = pg_pids(soak.args)
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        soak.stop.wait(10)
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    return f"{len(pids)} processes stopped for 10 s"


def f_terminate(soak):
    with superuser(soak.args) as su:
        rows = su.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE usename = 'app' AND backend_type = 'client backend' "
                          "ORDER BY random() LIMIT 3").fetchall()
    return f"{len(rows)} server connections terminated"


def f_reload(soak):
    soak.pool_size = POOL_SIZES[1] if soak.pool_size == POOL_SIZES[0] else POOL_SIZES[0]
    write_config(soak.args, soak.pool_size)
    reload_sluice(soak.args)
    return f"default_pool_size -> {soak.pool_size}"


def f_console(soak):
    with console(soak.args) as c:
        c.execute("PAUSE app")
        soak.stop.wait(2)
        c.execute("RESUME app")
        c.execute("RECONNECT app")
        rows = c.execute("SHOW CLIENTS").fetchall()
        cols = [d.name for d in c.execute("SHOW CLIENTS").description]
        mine = [r for r in rows if r[cols.index("database")] in ("app", "app_session")]
        killed = 0
        for r in random.sample(mine, min(2, len(mine))):
            try:
                c.execute(f"KILL_CLIENT {r[cols.index('id')]}")
                killed += 1
            except psycopg.Error as e:
                soak.error("console", e)  # the client may have left meanwhile
    return f"PAUSE 2 s, RESUME, RECONNECT, KILL_CLIENT x{killed}"


def f_resets(soak):
    """Clients that vanish (RST) mid-transaction and mid-COPY."""
    done = 0
    for i in range(6):
        try:
            conn = connect(soak, "reset")
            with closed_on_error(conn):
                if i % 2 == 0:
                    conn.execute("INSERT INTO soak_scratch (v) VALUES ('mid-transaction')")
                    reset_socket(conn)
                else:
                    with conn.cursor() as cur:
                        try:
                            with cur.copy("COPY soak_scratch (v) FROM STDIN") as cp:
                                for k in range(2000):
                                    cp.write_row((f"copy row {k}",))
                                cp.write(b"")  # flush what is buffered to the server
                                reset_socket(conn)
                        except (psycopg.Error, OSError):
                            pass
            close_quietly(conn)
            done += 1
        except psycopg.Error as e:
            soak.error("reset", e)
    return f"{done} sockets reset (RST), half of them mid-COPY"


def f_slowloris(soak, n=500):
    """500 sockets that send their startup packet a byte at a time: each must
    be closed by client_login_timeout (+1 s), while the load goes on."""
    args = soak.args
    packet = startup_packet("app", "app")
    socks = {}
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((f"127.0.2.{1 + i % 200}", 0))
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", args.port))
        except BlockingIOError:
            pass
        socks[s] = [None, 0, None]  # connected (first byte taken), bytes sent, closed at
    # 500 connects at once overflow the listen backlog, and the kernel
    # retries a dropped SYN only after a second or more: the clock of a
    # socket starts when it is connected, as sluice's does at accept.
    deadline = now() + LOGIN_BOUND + 10
    while now() < deadline and any(v[2] is None for v in socks.values()):
        for s, v in socks.items():
            if v[2] is None and v[1] < len(packet) - 1:
                try:
                    v[1] += s.send(packet[v[1]:v[1] + 1])
                    if v[0] is None:
                        v[0] = now()
                except (BlockingIOError, OSError):
                    pass
        r, _, _ = select.select([s for s, v in socks.items() if v[2] is None], [], [], 0.5)
        for s in r:
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                socks[s][2] = now()
            # An ErrorResponse comes first; the close (EOF) follows.
    late = sum(1 for v in socks.values() if v[2] is None or v[0] is None or v[2] - v[0] > LOGIN_BOUND)
    for s in socks:
        s.close()
    with soak.lock:
        for _ in range(late):
            soak.hung.append(("slowloris", "login", LOGIN_BOUND + 10, LOGIN_BOUND))
    return f"{n} slow logins, {n - late} closed within client_login_timeout + 1 s"


def p_partial(soak):
    """A partial message from as many clients as the pool has servers: a
    normal client is still served (issue 22, 1)."""
    stalled = []
    try:
        for _ in range(soak.pool_size):
            c = connect(soak, "partial")
            os.write(c.fileno(), b"Q" + struct.pack("!I", 100) + b"x" * 9)
            stalled.append(c)
        start = now()
        with connect(soak, "partial", autocommit=True) as c:
            with soak.op("partial", "served next to stalled clients", REQUEST_BOUND):
                ok = c.execute("SELECT 1").fetchone()[0] == 1
        soak.probe("partial messages, pool exhausted", ok,
                   f"{len(stalled)} clients stalled mid-message, a normal one served in {now() - start:.2f} s")
    except psycopg.Error as e:
        soak.probe("partial messages, pool exhausted", False, f"normal client: {e.sqlstate} {e}")
    finally:
        for c in stalled:
            reset_socket(c)
            close_quietly(c)


def p_made_up_databases(soak, n=2000):
    """2,000 logins to names only the * entry serves: each answered 3D000,
    the list of databases and RSS back where they were (issue 22, 2)."""
    args = soak.args
    with console(args) as c:
        before = len(c.execute("SHOW DATABASES").fetchall())
    rss0 = sluice_rss_kb(args)
    soak.round += 1
    answers = collections.Counter()

    def worker(k):
        for i in range(k, n, 4):
            try:
                # 40 names per source address: inside connect_burst_per_ip.
                with Raw(args, source=f"127.0.4.{1 + i % 50}", timeout=LOGIN_BOUND + 10) as r, \
                        soak.op("autodb", "login", LOGIN_BOUND + CFG["query_wait_timeout"]):
                    st = r.login("app", f"soak_nx_{soak.round}_{i}", "app-secret")
            except OSError as e:
                st = f"socket: {e}"
            with soak.lock:
                answers[st] += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    deadline = now() + 10
    with console(args) as c:
        while True:
            after = len(c.execute("SHOW DATABASES").fetchall())
            if after <= before or now() > deadline:
                break
            time.sleep(0.2)
    rss1 = sluice_rss_kb(args)
    # 08006 is a fair answer too when the probe follows a fault that left
    # Postgres' host marked down (its breaker): then sluice cannot ask it.
    ok = answers.get("3D000", 0) + answers.get("08006", 0) == n and after <= before
    soak.probe("2,000 made-up databases", ok,
               f"answers {dict(answers)}; SHOW DATABASES {before} -> {after} rows; "
               f"RSS {rss0 // 1024} -> {rss1 // 1024} MB")


def p_gigabyte(soak):
    """A 1 GB Query inside a transaction: 54000 at once, and the client is closed."""
    try:
        conn = connect(soak, "gigabyte")
        with closed_on_error(conn):
            conn.execute("SELECT 1")  # opens the transaction: the client holds a server
            fd = conn.fileno()
            os.write(fd, b"Q" + struct.pack("!I", 1 << 30))
            data = b""
            with socket.socket(fileno=os.dup(fd)) as s, soak.op("gigabyte", "answer", REQUEST_BOUND):
                s.settimeout(REQUEST_BOUND)
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
        close_quietly(conn)
        st = error_field(data[5:], b"C") if data[:1] == b"E" else None
        soak.probe("1 GB Query", st == "54000", f"answered {st}, then closed")
    except (psycopg.Error, OSError) as e:
        soak.probe("1 GB Query", False, str(e))


def p_startup4(soak):
    """A startup packet of length 4 is refused on those 4 bytes."""
    try:
        with Raw(soak.args, timeout=LOGIN_BOUND) as r:
            start = now()
            r.sock.sendall(struct.pack("!I", 4))
            st = r.error_state()
            took = now() - start
        soak.probe("startup packet of length 4", st == "08P01" and took < CFG["client_login_timeout"],
                   f"answered {st} after {took:.2f} s")
    except OSError as e:
        soak.probe("startup packet of length 4", False, str(e))


def p_wrong_passwords(soak, n=30):
    """A burst of wrong passwords from one address: all 28P01, answered
    ever later (auth_failure_delay), and the address of nobody else slowed."""
    args = soak.args
    source = f"127.0.3.{1 + soak.round % 200}"
    before = log_count(args, f"delaying the answer to a failed login from {source}")
    states = collections.Counter()

    def attempt():
        try:
            with Raw(args, source=source, timeout=LOGIN_BOUND + CFG["auth_failure_delay_max"] + 5) as r, \
                    soak.op("wrong_password", "answer", CFG["auth_failure_delay_max"] + LOGIN_BOUND):
                st = r.login("app", "app", "nope", wrong=True)
        except OSError as e:
            st = f"socket: {e}"
        with soak.lock:
            states[st] += 1

    threads = [threading.Thread(target=attempt) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    delayed = log_count(args, f"delaying the answer to a failed login from {source}") - before
    with Raw(args, source="127.0.3.250", timeout=LOGIN_BOUND) as other:
        other_st = other.login("app", "app", "app-secret")
    soak.probe("wrong-password burst", states.get("28P01", 0) + states.get("53400", 0) == n and delayed > 0
               and other_st == "ok",
               f"answers {dict(states)}; {delayed} delayed; another address: {other_st}")


FAULTS = [
    ("pg_terminate_backend x3", f_terminate),
    ("SIGHUP reload, pool size changed", f_reload),
    ("console PAUSE/RESUME/RECONNECT/KILL_CLIENT", f_console),
    ("client RST mid-transaction and mid-COPY", f_resets),
    ("probe: partial messages", p_partial),
    ("kill -9 Postgres, restart", f_kill9),
    ("Redis restart", f_redis_restart),
    ("probe: startup packet of length 4", p_startup4),
    ("500 slowloris sockets", f_slowloris),
    ("probe: 1 GB Query", p_gigabyte),
    ("SIGSTOP Postgres 10 s", f_sigstop),
    ("probe: 2,000 made-up databases", p_made_up_databases),
    ("probe: wrong-password burst", p_wrong_passwords),
    ("primary failover and switch back", f_failover),
    ("pg_terminate_backend x3", f_terminate),
    ("SIGHUP reload, pool size changed", f_reload),
]


def run_faults(soak, until):
    """Goes through the schedule in order, spread over the run, again and
    again until `until`; always at least once through the whole list."""
    faults = FAULTS
    done = collections.Counter()
    outcomes = collections.defaultdict(list)
    gap = max(1.0, (until - now()) / len(faults))
    i = 0
    while True:
        if i >= len(faults) and now() >= until:
            break
        name, fn = faults[i % len(faults)]
        at = now()
        try:
            res = fn(soak)
        except Exception as e:  # a fault that could not be applied is a failed run
            res = f"FAILED: {type(e).__name__}: {e}"
            soak.probe(name, False, res)
        if res:
            outcomes[name].append(res)
            log(f"{name}: {res}")
        done[name] += 1
        i += 1
        soak.stop.wait(max(0.0, gap - (now() - at)))
    return done, outcomes


# ---------------------------------------------------------------- checks


def own_client_ports(args):
    """Local ports of this process's own open TCP connections to sluice: after
    the clients stopped there must be none (the consoles here are closed)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    with open("/proc/self/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            # Any state but LISTEN (0A): established, or CLOSE_WAIT when sluice
            # closed first.  A socket closed here that the kernel still keeps
            # (FIN_WAIT, TIME_WAIT) has no inode of ours.
            if int(remote.split(":")[1], 16) == args.port and inode in inodes and state != "0A":
                ports.add(int(local.split(":")[1], 16))
    return ports


def quiesce(args, timeout=30.0, held_log=None):
    """Waits until sluice has no client (other than consoles) and no busy
    server and Postgres no backend of 'app' outside 'idle'; returns what is
    still held.  SHOW POOLS' cl_active counts idle clients too (as in
    PgBouncer): every client the load opened is closed by now, so any client
    still there is a leak, in sluice or, when this process still holds its
    socket, in the load generator ("connections the load left open")."""
    deadline = now() + timeout
    while True:
        with console(args) as c:
            c.row_factory = dict_row
            pools = c.execute("SHOW POOLS").fetchall()
            servers = c.execute("SHOW SERVERS").fetchall()
        busy = sum(p["sv_active"] + p.get("sv_tested", 0) + p.get("sv_login", 0) for p in pools)
        clients = sum(p["cl_active"] + p["cl_waiting"] for p in pools if p["database"] != "sluice")
        with superuser(args) as su:
            not_idle = su.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' "
                                  "AND backend_type = 'client backend' AND state <> 'idle'").fetchone()[0]
            locks = su.execute("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                               "WHERE a.usename = 'app'").fetchone()[0]
        held = {"busy servers": busy, "clients": clients, "backends not idle": not_idle, "locks": locks}
        if not any(held.values()) or now() > deadline:
            held["connections the load left open"] = len(own_client_ports(args))
            if any(held.values()):
                lines = dump_held(args)
                if held_log is not None:
                    held_log.extend(lines)
            held["servers"] = len(servers)
            return held
        time.sleep(0.25)


def dump_held(args):
    """Logs, and returns, what quiesce found still held: pools, clients (and
    whether this process still holds their socket, with sluice's log of the
    held ones), servers that are not idle, and Postgres' backends of 'app'."""
    lines = []
    with console(args) as c:
        c.row_factory = dict_row
        for r in c.execute("SHOW POOLS").fetchall():
            lines.append("held POOLS: " + ", ".join(f"{k}={v}" for k, v in r.items()))
        own = own_client_ports(args)
        held_ports = []
        for r in c.execute("SHOW CLIENTS").fetchall():
            if r["database"] != "sluice":
                held_ports.append(r["port"])
                lines.append(f"held CLIENTS (the load {'holds' if r['port'] in own else 'does not hold'} "
                             "its socket): " + ", ".join(f"{k}={v}" for k, v in r.items()))
        for r in c.execute("SHOW SERVERS").fetchall():
            if r["state"] != "idle":
                lines.append("held SERVERS: " + ", ".join(f"{k}={v}" for k, v in r.items()))
    with superuser(args) as su:
        su.row_factory = dict_row
        for r in su.execute("SELECT pid, state, backend_start, xact_start, client_port, query FROM pg_stat_activity "
                            "WHERE usename = 'app' AND backend_type = 'client backend'").fetchall():
            lines.append(f"held backend: {r}")
    for port in held_ports[:5]:
        lines += [f"held client {port} in sluice's log: {line}" for line in hung_client_log(args, port)]
    for line in lines:
        log(line)
    return lines


def resources(args, held_log=None):
    held = quiesce(args, held_log=held_log)
    fds = sluice_fds(args)
    with console(args) as c:
        clients = len(c.execute("SHOW CLIENTS").fetchall())
        heap = [r for r in c.execute("SHOW MEM").fetchall() if r[0] == "heap"][0]
    # Idle server connections are the pool working as configured, not a leak:
    # the fds compared are the rest (listeners, loops, logs, this console).
    return {"rss_kb": sluice_rss_kb(args), "heap_kb": heap[2] // 1024,
            "fds": fds - held["servers"] - clients, "held": held}


def sanitizer_reports(args):
    with open(args.sluice_log, errors="replace") as f:
        text = f.read()
    return len(re.findall(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:", text))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--sluice-pid", type=int, required=True)
    ap.add_argument("--sluice-log", required=True)
    ap.add_argument("--pg-name", required=True)
    ap.add_argument("--pg-sh", required=True)
    ap.add_argument("--pg-data", required=True)
    ap.add_argument("--pg-port", type=int, required=True)
    ap.add_argument("--pg-socket", required=True)
    ap.add_argument("--pg-super", required=True)
    ap.add_argument("--pg-bin", required=True)
    ap.add_argument("--standby-data", required=True)
    ap.add_argument("--standby-port", type=int, required=True)
    ap.add_argument("--standby-socket", required=True)
    ap.add_argument("--redis-name", required=True)
    ap.add_argument("--redis-sh", required=True)
    ap.add_argument("--redis-port", type=int, required=True)
    ap.add_argument("--asan", action="store_true")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    args.id_base = int(time.time()) * 10**6

    with superuser(args) as su:
        su.execute("CREATE TABLE IF NOT EXISTS soak_ledger (id bigint PRIMARY KEY, at timestamptz DEFAULT now())")
        su.execute("CREATE TABLE IF NOT EXISTS soak_scratch (v text)")
        su.execute("GRANT ALL ON soak_ledger, soak_scratch TO app")
        synchronous(su, True)
        wait_synced(su, "at the start")

    soak = Soak(args)
    # Warm-up: every kind of client for a while, no faults, then quiet: the
    # RSS and descriptors the end is compared with.
    warm = max(5.0, min(20.0, args.duration / 10))
    log(f"warm-up {warm:.0f} s")
    threads = start_load(soak)
    warm_end = now() + warm
    # The probes once too, so that what they make sluice allocate (and the
    # allocator keeps) is in the baseline; a leak shows as growth beyond it.
    for probe in (f_slowloris, p_made_up_databases, p_wrong_passwords, p_partial, p_gigabyte):
        t0 = now()
        probe(soak)
        log(f"warm-up probe {probe.__name__}: {now() - t0:.1f} s")
    time.sleep(max(0.0, warm_end - now()))
    stop_load(soak, threads)
    base = resources(args)
    log(f"baseline: RSS {base['rss_kb']} kB, heap in use {base['heap_kb']} kB, "
        f"{base['fds']} descriptors besides connections")

    soak.stop.clear()
    start = now()
    rated0 = soak.counts["rated admitted"]
    log(f"soak {args.duration:.0f} s with faults")
    threads = start_load(soak)
    done, outcomes = run_faults(soak, start + args.duration)
    ran = now() - start
    stop_load(soak, threads)
    # The bucket held at most a burst when the clients started, and one
    # more after each Redis restart (Redis keeps nothing: the bucket starts
    # full again); it refilled at the rate since (docs/tenants.md, lease math).
    loaded = now() - start
    admitted = soak.counts["rated admitted"] - rated0
    budget = RATED["burst"] * (1 + soak.redis_restarts) + RATED["rate"] * loaded
    soak.probe("rate limit held through Redis restarts", admitted <= budget,
               f"{admitted} admitted in {loaded:.0f} s, at most {budget:.0f} (burst {RATED['burst']} x "
               f"(1 + {soak.redis_restarts} restarts) + {RATED['rate']:.0f}/s); "
               f"{soak.counts['rated refused (53400)']} refused in the whole run")
    end = resources(args, soak.held)

    with superuser(args) as su:
        stored = {r[0] for r in su.execute("SELECT id FROM soak_ledger WHERE id > %s", (args.id_base,))}
    lost = [i for i in soak.acked if i not in stored]

    leaks = []
    for k, v in end["held"].items():
        if k != "servers" and v:
            leaks.append(f"{v} {k} after quiesce")
    # What malloc has handed out and not had back (SHOW MEM, heap): RSS also
    # keeps what the allocator holds after the peaks of a fault (a reload
    # builds a TLS context with the system's CA certificates, 500 slowloris
    # logins), up ~10 % in a 60 s run without anything leaking.  ASan's
    # allocator is not glibc's: there LeakSanitizer checks at exit instead.
    if not args.asan and end["heap_kb"] > base["heap_kb"] * 1.10:
        leaks.append(f"heap in use {base['heap_kb']} -> {end['heap_kb']} kB")
    if end["fds"] > base["fds"] * 1.10:
        leaks.append(f"descriptors {base['fds']} -> {end['fds']}")

    # sluice must still be there; then it is stopped and its log read for
    # sanitizer reports (LeakSanitizer reports at exit).
    crashed = not alive(args.sluice_pid)
    if not crashed:
        os.kill(args.sluice_pid, signal.SIGTERM)
        deadline = now() + 60
        while alive(args.sluice_pid) and now() < deadline:
            time.sleep(0.1)
    san = sanitizer_reports(args)

    nostate = sum(soak.nostate.values())
    committed = soak.counts["ledger commits"]
    failed_probes = [p for p in soak.probes if not p[1]]

    out = []
    out.append(f"## Soak ({time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {ran:.0f} s"
               f"{', ASan+UBSan' if args.asan else ''}, load average {os.getloadavg()[0]:.1f})")
    out.append("")
    out.append("| check | result |")
    out.append("|---|---|")
    out.append(f"| ledger commits acknowledged | {committed} |")
    out.append(f"| acknowledged ids missing (lost) | {len(lost)} |")
    out.append(f"| hung (waited past its timeout + 1 s) | {len(soak.hung)} |")
    out.append(f"| leaked | {len(leaks)}{': ' + '; '.join(leaks) if leaks else ''} |")
    out.append(f"| errors without SQLSTATE | {nostate} |")
    out.append(f"| wrong answers | {len(soak.wrong)} |")
    out.append(f"| failed probes | {len(failed_probes)} |")
    out.append(f"| sanitizer reports | {san}{' (not an ASan build)' if not args.asan else ''} |")
    out.append(f"| sluice alive at the end | {'no' if crashed else 'yes'} |")
    out.append(f"| heap in use, RSS, descriptors (warm-up -> end) | {base['heap_kb']} -> {end['heap_kb']} kB"
               f"{' (not compared under ASan)' if args.asan else ''}, {base['rss_kb'] // 1024} -> "
               f"{end['rss_kb'] // 1024} MB, {base['fds']} -> {end['fds']} |")
    for k in sorted(soak.counts):
        out.append(f"| {k} | {soak.counts[k]} |")
    out.append("")
    out.append("| fault or probe | times | last outcome |")
    out.append("|---|---|---|")
    for name in dict.fromkeys(n for n, _ in FAULTS):
        last = outcomes[name][-1] if outcomes[name] else ""
        out.append(f"| {name} | {done[name]} | {last} |")
    for name, ok, detail in soak.probes:
        out.append(f"| {name} | {'ok' if ok else 'FAILED'} | {detail} |")
    out.append("")
    out.append("| errors clients got (role, SQLSTATE) | count |")
    out.append("|---|---|")
    for (role, st), n in sorted(soak.states.items()):
        out.append(f"| {role} {st} | {n} |")
    for (role, msg), n in sorted(soak.nostate.items()):
        out.append(f"| {role} NO SQLSTATE: {msg} | {n} |")
    for at, role, text in soak.nostate_at[:20]:
        out.append(f"| {at} {role} NO SQLSTATE: {text} | |")
    for h in soak.hung[:20]:
        out.append(f"| hung: {h[0]} {h[1]} {h[2]} s (bound {h[3]} s)"
                   f"{f', client port {h[4]}' if h[4] else ''} | |")
    for w in soak.wrong[:20]:
        out.append(f"| wrong: {w} | |")
    for i in lost[:20]:
        out.append(f"| lost id {i} | |")
    out.append("")
    summary = (f"soak: {committed} committed, {len(lost)} lost, {len(soak.hung)} hung, "
               f"{len(leaks)} leaked, {nostate} errors without SQLSTATE")
    # What a failure in CI needs, where only this output comes back.
    if soak.hung or soak.held:
        out.append("")
        out.append("What quiesce found held, and sluice's log of the hung clients:")
        out += soak.held[:200]
        for h in soak.hung[:5]:
            if h[4]:
                out += [f"hung client {h[4]}: {line}" for line in hung_client_log(args, h[4])]
        out.append("")
    out.append(summary)
    print("\n".join(out), flush=True)
    with open(args.json, "w") as f:
        json.dump({"committed": committed, "lost": len(lost), "hung": soak.hung, "leaks": leaks,
                   "nostate": {f"{r}: {m}": n for (r, m), n in soak.nostate.items()},
                   "states": {f"{r} {s}": n for (r, s), n in soak.states.items()},
                   "wrong": soak.wrong, "probes": soak.probes, "sanitizer_reports": san,
                   "crashed": crashed, "counts": dict(soak.counts), "baseline": base, "end": end,
                   "seconds": ran}, f, indent=1, default=str)
    bad = lost or soak.hung or leaks or nostate or soak.wrong or failed_probes or san or crashed
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
