#!/usr/bin/env python3
"""Writes the hand-made seed inputs in tests/fuzz/corpus/<target>/.

The seeds are committed; this script documents how each was made and
rewrites them (`python3 tests/fuzz/seeds.py`).  It only adds and overwrites
its own files, so reproducers added to the corpus by hand stay.  The input
layout of each target is described at the top of tests/fuzz/fuzz_<target>.c.
"""
import base64
import hashlib
import hmac
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")

# RFC 7677 section 3: user "user", password "pencil".
RFC_CLIENT_NONCE = b"rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = b"%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_NONCE = RFC_CLIENT_NONCE + RFC_SERVER_NONCE
RFC_SALT = b"W22ZaJ0SNY7soEsUEjb6gQ=="
RFC_CLIENT_FIRST = b"n,,n=user,r=" + RFC_CLIENT_NONCE
RFC_SERVER_FIRST = b"r=" + RFC_NONCE + b",s=" + RFC_SALT + b",i=4096"
RFC_CLIENT_FINAL = (b"c=biws,r=" + RFC_NONCE +
                    b",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
RFC_VERIFIER = (b"SCRAM-SHA-256$4096:" + RFC_SALT +
                b"$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
                b"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def msg(type_, body=b""):
    return type_ + struct.pack("!I", len(body) + 4) + body


def untyped(code, body=b""):
    return struct.pack("!II", len(body) + 8, code) + body


def startup(params, version=196608):
    body = b"".join(k + b"\0" + v + b"\0" for k, v in params) + b"\0"
    return untyped(version, body)


def server_final_for(client_first_bare, server_first, client_final_wp):
    """v= for sluice's client ("n=,r=...") in the RFC exchange, from the RFC's keys."""
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", base64.b64decode(RFC_SALT), 4096)
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    auth_msg = client_first_bare + b"," + server_first + b"," + client_final_wp
    return b"v=" + base64.b64encode(hmac.new(server_key, auth_msg, "sha256").digest())


def startup_seeds():
    app = [(b"user", b"app"), (b"database", b"app"), (b"application_name", b"psql"),
           (b"client_encoding", b"UTF8")]
    write("startup", "startup", startup(app))
    write("startup", "startup_options", startup(
        [(b"user", b"app"), (b"options", b"-c search_path=public --statement-timeout=5s "
          b"-cDateStyle=ISO\\ ,\\ MDY")]))
    write("startup", "startup_3_2_pq", startup(
        [(b"user", b"app"), (b"_pq_.protocol_managed_params", b"x")], version=196610))
    write("startup", "sslrequest_startup", untyped(80877103) + startup(app))
    write("startup", "gssencrequest_startup", untyped(80877104) + startup(app))
    write("startup", "cancel", untyped(80877102, struct.pack("!II", 4242, 0x12345678)))
    write("startup", "replication", startup([(b"user", b"app"), (b"replication", b"database")]))
    sasl_initial = (b"SCRAM-SHA-256\0" + struct.pack("!I", len(RFC_CLIENT_FIRST)) +
                    RFC_CLIENT_FIRST)
    write("startup", "scram_rfc7677", startup([(b"user", b"user")]) + msg(b"p", sasl_initial) +
          msg(b"p", RFC_CLIENT_FINAL))
    write("startup", "password", startup([(b"user", b"app")]) +
          msg(b"p", b"md5a3556571e93b0d20722ba62be61e8c2d\0"))


def frames_seeds():
    # First byte: bit 0 = from the client; bits 1-2 = limit (1 GB, 1 kB, login, 10000).
    login = (msg(b"R", struct.pack("!I", 10) + b"SCRAM-SHA-256\0\0") +
             msg(b"R", struct.pack("!I", 11) + RFC_SERVER_FIRST) +
             msg(b"R", struct.pack("!I", 12) + RFC_SERVER_FINAL) +
             msg(b"R", struct.pack("!I", 0)) +
             msg(b"S", b"server_version\x0015.4\0") + msg(b"S", b"DateStyle\0ISO, MDY\0") +
             msg(b"K", struct.pack("!II", 4242, 0x12345678)) + msg(b"Z", b"I"))
    write("frames", "server_login", b"\x04" + login)
    write("frames", "server_md5", b"\x04" + msg(b"R", struct.pack("!I", 5) + b"\x01\x02\x03\x04"))
    error = (b"SERROR\0VERROR\0C42P01\0Mrelation \"nope\" does not exist\0"
             b"P15\0Fparse_relation.c\0L1392\0RparserOpenTable\0\0")
    write("frames", "server_error", b"\x00" + msg(b"E", error) +
          msg(b"N", b"SNOTICE\0VNOTICE\0C00000\0Mhello\0DSome detail\0HA hint\0\0") +
          msg(b"Z", b"E"))
    row = struct.pack("!H", 2) + struct.pack("!I", 8) + b"TimeZone" + struct.pack("!I", 3) + b"UTC"
    write("frames", "server_results", b"\x00" + msg(b"v", struct.pack("!II", 0, 1) +
                                                    b"_pq_.x\0") +
          msg(b"T", b"\x00\x01name\0" + b"\0" * 18) + msg(b"D", row) + msg(b"C", b"SELECT 1\0") +
          msg(b"Z", b"T"))
    parse = b"stmt1\0SELECT $1::int\0" + struct.pack("!HI", 1, 23)
    bind = (b"\0stmt1\0" + struct.pack("!HH", 1, 0) + struct.pack("!H", 2) +
            struct.pack("!I", 2) + b"42" + struct.pack("!I", 0xffffffff) +
            struct.pack("!HH", 1, 1))
    extended = (msg(b"P", parse) + msg(b"B", bind) + msg(b"D", b"P\0") +
                msg(b"E", b"\0" + struct.pack("!I", 0)) + msg(b"C", b"Sstmt1\0") + msg(b"S") +
                msg(b"Q", b"SELECT 1;\0") + msg(b"X"))
    write("frames", "client_extended", b"\x01" + extended)
    write("frames", "client_small_limit", b"\x03" + msg(b"Q", b"SELECT 1\0") +
          msg(b"d", b"copy data\n") + msg(b"c") + msg(b"f", b"aborted\0") +
          msg(b"p", b"password\0"))


def scram_seeds():
    # First byte: bits 0-1 = mode, bit 7 = short output buffer; pieces split at NUL.
    write("scram", "server_rfc7677", b"\x00" + RFC_CLIENT_FIRST + b"\0" + RFC_CLIENT_FINAL)
    write("scram", "server_y_ext", b"\x00" + b"y,,n=,r=abc,x=ext\0c=eSws,r=abc" + RFC_SERVER_NONCE +
          b",x=1,p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    write("scram", "server_short_out", b"\x84" + RFC_CLIENT_FIRST + b"\0" + RFC_CLIENT_FINAL)
    bare = b"n=,r=" + RFC_CLIENT_NONCE
    wp = b"c=biws,r=" + RFC_NONCE
    write("scram", "client_rfc7677", b"\x01" + RFC_SERVER_FIRST + b"\0" +
          server_final_for(bare, RFC_SERVER_FIRST, wp))
    write("scram", "client_error", b"\x01" + RFC_SERVER_FIRST + b",x=y\0e=invalid-proof")
    write("scram", "verifier_server", b"\x02" + RFC_VERIFIER + b"\0" + RFC_CLIENT_FIRST + b"\0" +
          RFC_CLIENT_FINAL)
    write("scram", "nonce_client", b"\x03" + b"abc\0r=abcdef,s=" + RFC_SALT + b",i=1\0v=" +
          b"A" * 43 + b"=")


def config_seeds():
    # Pieces: INI text, NUL, --upstream URL, NUL, environment entries separated by NULs.
    ini = b"""[sluice]
listen_addr = 127.0.0.1
listen_port = 6432
auth_type = trust
pool_mode = transaction
default_pool_size = 20
query_timeout = 1.5s
max_packet_size = 64MB
unix_socket_mode = 0700

[databases]
app = host=127.0.0.1 port=5432 dbname=app
reports = host=127.0.0.1 port=5432 dbname=analytics user=reporter
    password='reporter password' pool_size=5 pool_mode=session
    connect_options='-c statement_timeout=30s' application_name=reports
* = host=/var/run/postgresql port=5432 sslmode=disable

[users]
batch = pool_mode=session pool_size=2 max_user_connections=4 statement_timeout=10min

[tier.gold]
query_rate = 100/s
query_burst = 200
connect_rate = 600/min

[tenant.acme]
users = acme_*, acme
databases = app
tier = gold
transaction_rate = 50/s
max_client_conn = 100
rate_limit_wait = 200ms
"""
    write("config", "ini", ini)
    write("config", "ini_userlist", b"[sluice]\nauth_file = sluice-fuzz-missing.txt\n"
          b"[databases]\napp = host=db\n")
    write("config", "env_url", b"\0\0SLUICE_DATABASE_URL=postgres://app:secret@db:5432/app\0"
          b"SLUICE_POOL_MODE=session\0SLUICE_AUTH_TYPE=trust\0"
          b"SLUICE_DATABASE_URL_REPORTS=host=db port=5433 dbname=analytics user=r password=x")
    write("config", "upstream", b"\0postgresql://u:p%40ss@[::1]:5433/db?application_name=x"
          b"&sslmode=disable\0SLUICE_QUERY_TIMEOUT=30s")
    write("config", "ini_env_upstream", b"[sluice]\nauth_type = trust\n[databases]\n"
          b"a = host=h\n\0host=db dbname=b user=u password=p\0SLUICE_WORKERS=2\0"
          b"SLUICE_X=50/min")


def auth_file_seeds():
    with open(os.path.join(os.path.dirname(ROOT), "..", "..", "etc", "userlist.txt"), "rb") as f:
        write("auth_file", "userlist", f.read())
    write("auth_file", "quotes_crlf", b'"app ""x""" "pa ss" trailing\r\n# comment\r\n'
          b'\t "b" "md5a3556571e93b0d20722ba62be61e8c2d"\r\n"app ""x""" "again"\n')
    write("auth_file", "scram", b'"admin" "' + RFC_VERIFIER + b'"\n')
    write("auth_file", "bad_line", b'"ok" "pw"\n"broken "pw"\n')


def hba_seeds():
    rules = (b"# TYPE DATABASE USER ADDRESS METHOD\n"
             b"local all all trust\n"
             b"hostssl app,other admin,+ops 10.0.0.0/8 scram-sha-256\n"
             b"hostnossl \"quoted db\" all 192.168.1.0 255.255.255.0 md5\n"
             b"host all all ::1/128 password\n"
             b"host all all 2001:db8::/32 cert\n"
             b"host sluice all 0.0.0.0/0 reject\n"
             b"host all all all scram-sha-256\n")
    write("hba", "rules_lookups", rules + b"\0app\0admin\x0010.1.2.3\0"
          b"quoted db\0bob\x00192.168.1.77\0sluice\0u\0::1\0app\0u\0local\0")
    write("hba", "bad_line", b"host all all 10.0.0.0/33 md5\n")
    write("hba", "crlf_comments", b"  # only a comment\r\nhost all all 127.0.0.1/32 trust # tail\r\n"
          b"\0db\0user\x00127.0.0.1\0")


if __name__ == "__main__":
    startup_seeds()
    frames_seeds()
    scram_seeds()
    config_seeds()
    auth_file_seeds()
    hba_seeds()
