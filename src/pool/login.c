/*
 * The login phase of a client: startup packet (with SSLRequest/GSSENCRequest
 * refused and CancelRequest routed), protocol negotiation, and password
 * authentication (SCRAM-SHA-256, md5, cleartext, trust) against the
 * auth_file.  Unknown users go through the same exchange as known ones and
 * fail at the end, so the answer does not reveal which user names exist.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pool/login.h"
#include "pool/pause.h"
#include "pool/relay.h"
#include "pool/admission.h"
#include "auth/auth_file.h"
#include "pool/auth_query.h"
#include "auth/scram.h"
#include "pool/cancel.h"
#include "pool/client.h"
#include "config/config.h"
#include "limit/login_delay.h"
#include "pool/pool.h"
#include "proto/build.h"
#include "proto/frame.h"
#include "proto/sqlstate.h"
#include "net/snapshot.h"
#include "net/tls.h"
#include "pool/worker.h"

#define MAX_UNRECOGNIZED 16
/*
 * Settings one startup packet may carry, its own and those of `options`
 * together.  Each is looked up among the others (a list, param_set): a
 * 10,000-byte packet of thousands of two-byte names made millions of
 * compares, before any password, on a worker every client shares.  Drivers
 * send about ten.
 */
#define STARTUP_SETTINGS_MAX 100

struct startup_scan {
	struct client *c;
	const char *user, *dbname;                  /* in the packet; the last of each wins */
	const char *unrecognized[MAX_UNRECOGNIZED]; /* _pq_.* options we do not know */
	size_t nunrecognized;
	bool bad_options;
	bool too_many; /* more than STARTUP_SETTINGS_MAX settings */
};

/*
 * Is `name` in ignore_startup_parameters?  Compared without case, as
 * Postgres compares setting names.
 */
static bool param_ignored(const struct config *cfg, const char *name)
{
	size_t len = strlen(name);

	for (const char *p = cfg->ignore_startup_parameters; *p != '\0';) {
		size_t n;

		p += strspn(p, ", \t");
		n = strcspn(p, ", \t");
		if (n == len && strncasecmp(p, name, n) == 0)
			return true;
		p += n;
	}
	return false;
}

/* One setting from the packet or its options, unless over STARTUP_SETTINGS_MAX. */
static void add_setting(struct startup_scan *scan, const char *name, const char *value)
{
	struct client *c = scan->c;

	if (c->params.count >= STARTUP_SETTINGS_MAX)
		scan->too_many = true;
	else
		param_set(&c->params, name, value);
}

static void add_option_param(void *arg, const char *name, const char *value)
{
	struct startup_scan *scan = arg;

	if (!param_ignored(scan->c->w->cfg, name))
		add_setting(scan, name, value);
}

static void startup_param(struct startup_scan *scan, const char *key, const char *value)
{
	struct client *c = scan->c;

	if (strcmp(key, "user") == 0) {
		scan->user = value;
	} else if (strcmp(key, "database") == 0) {
		scan->dbname = value;
	} else if (strcmp(key, "options") == 0) {
		/* With "options" itself ignored, what sluice cannot read in it is dropped too. */
		if (param_parse_options(value, add_option_param, scan) < 0 &&
		    !param_ignored(c->w->cfg, "options"))
			scan->bad_options = true;
	} else if (strncmp(key, "_pq_.", 5) == 0) {
		if (scan->nunrecognized < MAX_UNRECOGNIZED)
			scan->unrecognized[scan->nunrecognized++] = key;
	} else if (param_ignored(c->w->cfg, key)) {
		return; /* dropped, as PgBouncer's ignore_startup_parameters does */
	} else if (!param_is_startup_only(key)) {
		/* Unknown parameters are accepted and synced like any other. */
		add_setting(scan, key, value);
	} else if (strcmp(key, "replication") == 0 && strcmp(value, "false") != 0 &&
	           strcmp(value, "0") != 0 && strcmp(value, "off") != 0 &&
	           strcmp(value, "no") != 0) {
		scan->bad_options = true;
	}
}

static void begin_auth(struct client *c);

/* Both names in one allocation: an idle client's memory is mostly fixed costs like these. */
static bool keep_names(struct client *c, const char *user, const char *dbname)
{
	size_t ulen = strlen(user) + 1, dlen = strlen(dbname) + 1;

	c->user = malloc(ulen + dlen);
	if (c->user == NULL)
		return false;
	memcpy(c->user, user, ulen);
	c->dbname = c->user + ulen;
	memcpy(c->dbname, dbname, dlen);
	return true;
}

static void handle_startup(struct client *c, const uint8_t *body, size_t len, uint32_t version)
{
	struct startup_scan scan = {.c = c};
	struct msg_reader r;

	msg_reader_init(&r, body, len);
	for (;;) {
		const char *key = msg_read_cstr(&r), *value;

		if (key == NULL) {
			client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
			            "invalid startup packet layout: expected terminator as last "
			            "byte");
			return;
		}
		if (key[0] == '\0')
			break;
		value = msg_read_cstr(&r);
		if (value == NULL) {
			client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
			            "invalid startup packet: parameter \"%s\" has no value", key);
			return;
		}
		startup_param(&scan, key, value);
	}
	if (scan.too_many) {
		client_fail(c, SQLSTATE_PROGRAM_LIMIT_EXCEEDED,
		            "too many settings in the startup packet (more than %d)",
		            STARTUP_SETTINGS_MAX);
		return;
	}
	if (scan.bad_options) {
		client_fail(c, SQLSTATE_FEATURE_NOT_SUPPORTED,
		            "unsupported startup options: only -c name=value settings are "
		            "accepted, and no replication connections");
		return;
	}
	if (scan.user == NULL || scan.user[0] == '\0') {
		client_fail(c, SQLSTATE_INVALID_AUTHORIZATION,
		            "no PostgreSQL user name specified in startup packet");
		return;
	}
	if (!keep_names(c, scan.user,
	                scan.dbname != NULL && scan.dbname[0] != '\0' ? scan.dbname : scan.user)) {
		client_fail(c, SQLSTATE_INTERNAL_ERROR, "out of memory");
		return;
	}
	if (!c->tls && !c->is_unix && c->w->cfg->client_tls_sslmode >= SSLMODE_REQUIRE) {
		client_fail(c, SQLSTATE_INVALID_AUTHORIZATION,
		            "TLS is required by client_tls_sslmode: connect with sslmode=require "
		            "or stricter");
		return;
	}
	/* We speak 3.0: tell newer clients, and list the protocol options we ignore. */
	if (FRAME_PROTO_MINOR(version) > 0 || scan.nunrecognized > 0)
		build_negotiate_protocol(conn_out(&c->conn), FRAME_PROTO_3_0, scan.unrecognized,
		                         scan.nunrecognized);
	begin_auth(c);
}

/* One untyped startup-phase packet; returns false if the client was closed or must wait. */
static bool startup_input(struct client *c)
{
	struct evbuffer *in = c->conn.in;
	uint32_t len, code;
	enum frame_status st = frame_peek_startup(in, &len, &code);
	const uint8_t *packet;

	if (st == FRAME_INCOMPLETE)
		return false;
	if (st == FRAME_INVALID) {
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION, "invalid length of startup packet");
		return false;
	}
	if (evbuffer_get_length(in) < len)
		return false;
	if (code == FRAME_CODE_SSL || code == FRAME_CODE_GSSENC) {
		evbuffer_drain(in, len);
		/* Bytes sent before our answer could be injected; a real client waits. */
		if (len != 8 || evbuffer_get_length(in) > 0) {
			client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
			            "unexpected data after an encryption request");
			return false;
		}
		/* libpq never asks for TLS over a Unix socket; GSSAPI is not offered. */
		if (code == FRAME_CODE_SSL && !c->tls && !c->is_unix &&
		    c->w->snap->tls.accept != NULL)
			return client_start_tls(c) == 0;
		evbuffer_add(conn_out(&c->conn), "N", 1);
		return true;
	}
	packet = evbuffer_pullup(in, len);
	if (code == FRAME_CODE_CANCEL) {
		struct msg_reader r;
		uint32_t pid, key;

		msg_reader_init(&r, packet + 8, len - 8);
		pid = msg_read_u32(&r);
		key = msg_read_u32(&r);
		if (len == 16)
			cancel_route(c->w, pid, key);
		client_close(c, "cancel request handled");
		return false;
	}
	if (FRAME_PROTO_MAJOR(code) != 3) {
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
		            "unsupported frontend protocol %u.%u: server supports 3.0",
		            FRAME_PROTO_MAJOR(code), FRAME_PROTO_MINOR(code));
		return false;
	}
	handle_startup(c, packet + 8, len - 8, code);
	evbuffer_drain(in, len);
	return c->state == CLIENT_LOGIN;
}

static void answer_auth_failed(struct client *c)
{
	client_fail(c, SQLSTATE_INVALID_PASSWORD, "password authentication failed for user \"%s\"",
	            c->user);
}

/*
 * Wrong password or unknown user (the same to the client).  After an
 * address's first failure the answer waits out its growing delay
 * (login_delay.h) on the client's timer, reading nothing meanwhile, so a
 * password guesser gets each answer slowly; the client holds no server.
 */
static void auth_failed(struct client *c)
{
	const struct config *cfg = c->w->cfg;
	int64_t now = worker_now_us(c->w), delay = 0, login_left;
	char host[INET6_ADDRSTRLEN];

	if (!c->is_unix)
		delay = login_delay_failed(&c->w->shared->failures, &c->peer.sa,
		                           cfg->auth_failure_delay_us,
		                           cfg->auth_failure_delay_max_us, now);
	if (delay == 0) {
		answer_auth_failed(c);
		return;
	}
	/* Never past client_login_timeout: the answer then comes at that deadline. */
	login_left = c->connect_us + cfg->client_login_timeout_us - now;
	if (cfg->client_login_timeout_us > 0 && delay > login_left)
		delay = login_left > 0 ? login_left : 1;
	sockaddr_host(&c->peer.sa, host, sizeof(host));
	clog(c, LOG_INFO, "delaying the answer to a failed login from %s by %lld ms", host,
	     (long long)(delay / 1000));
	c->login = LOGIN_AUTH_DELAY;
	conn_suspend(&c->conn, SUSPEND_AUTH_DELAY);
	client_arm_timer(c, delay);
}

/* Authenticated by a password or SCRAM: the address's failures are forgiven. */
static void auth_succeeded(struct client *c)
{
	if (!c->is_unix)
		login_delay_succeeded(&c->w->shared->failures, &c->peer.sa, worker_now_us(c->w));
}

static const struct user_secret *client_secret(const struct client *c);

/* The console is a layer above: it is reached through the handler the runtime set. */
static void console_login(struct client *c)
{
	const struct client_handler *console = c->w->shared->hooks->console;

	if (console == NULL) {
		client_fail(c, SQLSTATE_INVALID_CATALOG_NAME, "database \"%s\" does not exist",
		            c->dbname);
		return;
	}
	console->login(c);
}

/* Authenticated: pick the pool, admit to the tenant, welcome (again after a throttle). */
static void client_login_finish(struct client *c)
{
	const struct config *cfg = c->w->cfg;
	const struct db_def *db;
	const char *server_user;
	struct pool *pool;
	bool over_cap;

	if (config_is_console_db(cfg, c->dbname)) {
		console_login(c);
		return;
	}
	if (pause_db_disabled(c->w, c->dbname)) {
		client_fail(c, SQLSTATE_CANNOT_CONNECT_NOW,
		            "database \"%s\" does not allow connections: it was disabled from "
		            "the admin console (ENABLE allows them again)",
		            c->dbname);
		return;
	}
	db = config_find_db(cfg, c->dbname);
	if (db == NULL) {
		client_fail(c, SQLSTATE_INVALID_CATALOG_NAME, "database \"%s\" does not exist",
		            c->dbname);
		return;
	}
	server_user = db->user != NULL ? db->user : c->user;
	pool = pool_get(c->w, c->dbname, server_user, c->user, db, &over_cap);
	if (over_cap) {
		client_fail(c, SQLSTATE_CONFIGURATION_LIMIT,
		            "database \"%s\" refused: the \"*\" entry already serves "
		            "max_auto_databases (%d) database names",
		            c->dbname, cfg->max_auto_databases);
		return;
	}
	/*
	 * Again after a throttle, across a reload that moved the user to another
	 * tenant: what it holds in the old tenant (its count under
	 * max_client_conn, a fleet seat, a reserved token) goes back there, and
	 * admission_login takes them anew in the new one.  Kept, the old tenant
	 * counted one client too many for good, the new one one too few.
	 */
	if (pool != NULL && c->pool != NULL && pool != c->pool)
		admission_client_gone(c);
	if (pool != NULL)
		pool_attach(pool, c);
	if (pool == NULL || (!c->cancel_registered && cancel_register(c->w, c) < 0)) {
		client_fail(c, SQLSTATE_INTERNAL_ERROR, "out of memory");
		return;
	}
	pause_apply(c->pool);
	if (admission_login(c) != ADMIT_GO)
		return;
	c->handler = &relay_client_handler;
	/* The proof's key logs the same user into Postgres without a stored password. */
	if (c->has_client_key && strcmp(server_user, c->user) == 0) {
		const struct user_secret *secret = client_secret(c);

		memcpy(c->pool->client_key, c->scram->client_key, SCRAM_KEY_LEN);
		/* And the ServerKey that checks Postgres' answer, wherever the verifier came from.
		 */
		if (secret != NULL && secret->kind == SECRET_SCRAM)
			memcpy(c->pool->server_key, secret->scram.server_key, SCRAM_KEY_LEN);
		c->pool->has_client_key = true;
	}
	build_auth(conn_out(&c->conn), 0, NULL, 0);
	if (c->pool->have_defaults) {
		client_login_ready(c);
		return;
	}
	if (pool_refuse_if_down(c->pool, c))
		return;
	/* The welcome needs the server's parameters: wait for the pool's first login. */
	c->login = LOGIN_WAIT_POOL;
	conn_suspend(&c->conn, SUSPEND_LOGIN_WAIT);
	list_add_tail(&c->pool->login_waiting, &c->wait_node);
	pool_maintain(c->pool);
}

static const struct scram_secret *scram_secret_for(const struct client *c,
                                                   const struct user_secret *secret)
{
	if (secret != NULL && (secret->kind == SECRET_SCRAM || secret->kind == SECRET_PLAIN))
		return &secret->scram;
	return &c->w->dummy_secret;
}

/* "host \"1.2.3.4\", user \"u\", database \"d\", TLS on": names a connection in refusals. */
static void describe_connection(const struct client *c, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (c->is_unix) {
		snprintf(buf, len, "local connection, user \"%s\", database \"%s\"", c->user,
		         c->dbname);
		return;
	}
	sockaddr_host(&c->peer.sa, host, sizeof(host));
	snprintf(buf, len, "host \"%s\", user \"%s\", database \"%s\", %s", host, c->user,
	         c->dbname, c->tls ? "TLS on" : "TLS off");
}

/*
 * The console's other name (admin_db and "pgbouncer" are one database): the
 * rules written for either apply to both.  NULL for any other database.
 */
static const char *console_alias(const struct config *cfg, const char *dbname)
{
	if (!config_is_console_db(cfg, dbname))
		return NULL;
	if (strcmp(dbname, "pgbouncer") != 0)
		return "pgbouncer";
	return cfg->admin_db[0] != '\0' ? cfg->admin_db : NULL;
}

/*
 * The authentication method: the first matching auth_hba_file rule (no rule
 * or a reject rule refuses the client, as Postgres does), else auth_type.
 * Returns an enum auth_type, or -1 when the client was refused.
 */
static int auth_method(struct client *c)
{
	const struct config *cfg = c->w->cfg;
	const struct hba_rule *rule;
	char who[256];

	if (cfg->auth_hba_file[0] == '\0')
		return cfg->auth_type;
	rule = hba_match(&cfg->hba, c->is_unix, c->tls, c->is_unix ? NULL : &c->peer.sa, c->dbname,
	                 console_alias(cfg, c->dbname), c->user);
	if (rule == NULL || rule->method == HBA_REJECT) {
		describe_connection(c, who, sizeof(who));
		if (rule == NULL)
			client_fail(c, SQLSTATE_INVALID_AUTHORIZATION,
			            "no auth_hba_file entry for %s", who);
		else
			client_fail(c, SQLSTATE_INVALID_AUTHORIZATION,
			            "auth_hba_file rejects connection for %s (line %d)", who,
			            rule->line);
		return -1;
	}
	switch (rule->method) {
	case HBA_TRUST:
		return AUTH_TRUST;
	case HBA_MD5:
		return AUTH_MD5;
	case HBA_PASSWORD:
		return AUTH_PLAIN;
	case HBA_CERT:
		return AUTH_CERT;
	default:
		return AUTH_SCRAM;
	}
}

/*
 * cert: the client's TLS certificate, verified against client_tls_ca_file,
 * must name the user as its common name.  Fails the client otherwise.
 */
static bool cert_matches_user(struct client *c)
{
	SSL *ssl = c->tls ? bufferevent_openssl_get_ssl(conn_tls_bev(&c->conn)) : NULL;
	X509 *cert = ssl != NULL ? SSL_get0_peer_certificate(ssl) : NULL;
	char cn[256] = "";

	if (cert == NULL || SSL_get_verify_result(ssl) != X509_V_OK) {
		client_fail(c, SQLSTATE_INVALID_AUTHORIZATION,
		            "certificate authentication failed for user \"%s\": no verified client "
		            "certificate (connect with TLS and sslcert/sslkey)",
		            c->user);
		return false;
	}
	X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
	if (strcmp(cn, c->user) != 0) {
		client_fail(c, SQLSTATE_INVALID_AUTHORIZATION,
		            "certificate authentication failed for user \"%s\": the certificate is "
		            "for \"%s\"",
		            c->user, cn);
		return false;
	}
	return true;
}

/* The user's credentials: the auth_file's, else what auth_query found; NULL = unknown user. */
static const struct user_secret *client_secret(const struct client *c)
{
	if (c->queried_secret != NULL)
		return c->queried_secret;
	return auth_file_find(&c->w->cfg->auth, c->user);
}

/* Ask for the password, or start SCRAM, as c->auth_method says. */
static void ask_password(struct client *c)
{
	const struct user_secret *secret = client_secret(c);
	struct evbuffer *out = conn_out(&c->conn);
	bool use_scram;

	if (c->auth_method == AUTH_PLAIN) {
		c->login = LOGIN_PASSWORD;
		build_auth(out, 3, NULL, 0);
		return;
	}
	/* md5 cannot be checked against a SCRAM verifier, and SCRAM not against an md5 hash. */
	use_scram = c->auth_method == AUTH_SCRAM ? secret == NULL || secret->kind != SECRET_MD5
	                                         : secret != NULL && secret->kind == SECRET_SCRAM;
	if (use_scram) {
		c->scram = calloc(1, sizeof(*c->scram));
		if (c->scram == NULL) {
			client_fail(c, SQLSTATE_INTERNAL_ERROR, "out of memory");
			return;
		}
		/*
		 * Remembered, not looked up again at the end: a reload may add the
		 * user meanwhile, and the dummy's empty password must not pass then.
		 */
		c->scram_dummy = scram_secret_for(c, secret) == &c->w->dummy_secret;
		scram_server_init(c->scram, scram_secret_for(c, secret), NULL);
		c->login = LOGIN_SASL_INITIAL;
		build_auth_sasl(out, SCRAM_MECHANISM);
		return;
	}
	RAND_bytes(c->md5_salt, sizeof(c->md5_salt));
	c->password_md5 = true;
	c->login = LOGIN_PASSWORD;
	build_auth(out, 5, c->md5_salt, sizeof(c->md5_salt));
}

static void begin_auth(struct client *c)
{
	const struct config *cfg = c->w->cfg;
	int method;

	if (c->refuse == REFUSE_TOO_MANY) {
		client_fail(c, SQLSTATE_TOO_MANY_CONNECTIONS,
		            "no more connections allowed (max_client_conn %d)",
		            cfg->max_client_conn);
		return;
	}
	if (c->refuse == REFUSE_IP_RATE) {
		client_fail(c, SQLSTATE_CONFIGURATION_LIMIT,
		            "too many login attempts from this address (connect_rate_per_ip %d/s)",
		            cfg->connect_rate_per_ip);
		return;
	}
	if (c->refuse == REFUSE_SHUTDOWN) {
		client_fail(c, SQLSTATE_CANNOT_CONNECT_NOW, "sluice is shutting down");
		return;
	}
	if ((method = auth_method(c)) < 0)
		return;
	if (method == AUTH_TRUST) {
		client_login_finish(c);
		return;
	}
	if (method == AUTH_CERT) {
		if (cert_matches_user(c))
			client_login_finish(c);
		return;
	}
	c->auth_method = method;
	/* Not in the auth_file: ask Postgres (the console's users come from the file only). */
	if (client_secret(c) == NULL && cfg->auth_user[0] != '\0' &&
	    !config_is_console_db(cfg, c->dbname)) {
		c->login = LOGIN_AUTH_QUERY;
		if (!auth_query_lookup(c))
			return;
	}
	ask_password(c);
}

static bool check_cleartext(const struct client *c, const struct user_secret *secret,
                            const char *password)
{
	char md5[MD5_PASSWD_LEN + 1];
	struct scram_secret derived;

	if (secret == NULL)
		return false;
	switch (secret->kind) {
	case SECRET_PLAIN:
		return strlen(password) == strlen(secret->plain) &&
		       secret_equal(password, secret->plain, strlen(password));
	case SECRET_MD5:
		md5_password_hash(password, c->user, md5);
		return secret_equal(md5, secret->md5, MD5_PASSWD_LEN);
	case SECRET_SCRAM:
		if (scram_secret_from_password(password, secret->scram.salt, secret->scram.salt_len,
		                               secret->scram.iterations, &derived) < 0)
			return false;
		return secret_equal(derived.stored_key, secret->scram.stored_key, SCRAM_KEY_LEN);
	}
	return false;
}

static void password_message(struct client *c, const uint8_t *body, size_t len)
{
	const struct user_secret *secret = client_secret(c);
	struct msg_reader r;
	const char *password;
	bool ok;

	msg_reader_init(&r, body, len);
	password = msg_read_cstr(&r);
	if (password == NULL) {
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION, "malformed password message");
		return;
	}
	if (c->password_md5) {
		char expected[MD5_PASSWD_LEN + 1];

		ok = secret != NULL && secret->kind != SECRET_SCRAM;
		if (ok) {
			md5_salted_response(secret->md5, c->md5_salt, expected);
			ok = strlen(password) == MD5_PASSWD_LEN &&
			     secret_equal(password, expected, MD5_PASSWD_LEN);
		}
	} else {
		ok = check_cleartext(c, secret, password);
	}
	if (!ok) {
		auth_failed(c);
		return;
	}
	auth_succeeded(c);
	client_login_finish(c);
}

static void sasl_initial(struct client *c, const uint8_t *body, size_t len)
{
	struct msg_reader r;
	const char *mech, *err = "malformed SASL message";
	char reply[SCRAM_MSG_MAX + 1];
	uint32_t n;
	const uint8_t *data;

	msg_reader_init(&r, body, len);
	mech = msg_read_cstr(&r);
	n = msg_read_u32(&r);
	data = msg_read_bytes(&r, n);
	if (mech == NULL || strcmp(mech, SCRAM_MECHANISM) != 0) {
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
		            "client selected an invalid SASL authentication mechanism");
		return;
	}
	if (data == NULL || n > SCRAM_MSG_MAX ||
	    scram_server_handle_first(c->scram, (const char *)data, n, reply, sizeof(reply), &err) <
	        0) {
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION, "%s", err);
		return;
	}
	c->login = LOGIN_SASL_FINAL;
	build_auth(conn_out(&c->conn), 11, reply, strlen(reply));
}

static void sasl_final(struct client *c, const uint8_t *body, size_t len)
{
	const struct user_secret *secret = client_secret(c);
	const char *err = "malformed SASL message";
	char reply[SCRAM_MSG_MAX + 1];

	if (len > SCRAM_MSG_MAX ||
	    scram_server_handle_final(c->scram, (const char *)body, len, reply, sizeof(reply),
	                              &err) < 0 ||
	    c->scram_dummy || secret == NULL ||
	    scram_secret_for(c, secret) == &c->w->dummy_secret) {
		auth_failed(c);
		return;
	}
	auth_succeeded(c);
	/* The exchange keeps its ClientKey until the login ends (client_set_state frees it). */
	c->has_client_key = true;
	build_auth(conn_out(&c->conn), 12, reply, strlen(reply));
	client_login_finish(c);
}

/* One typed authentication message ('p'); returns false when the client must wait or closed. */
static bool auth_input(struct client *c)
{
	struct evbuffer *in = c->conn.in;
	struct frame f;
	enum frame_status st = frame_peek(in, &f, FRAME_STARTUP_MAX);
	const uint8_t *body;
	enum login_step step = c->login;

	if (st == FRAME_INCOMPLETE)
		return false;
	if (st == FRAME_INVALID || f.type != 'p') {
		client_fail(c, SQLSTATE_PROTOCOL_VIOLATION,
		            "expected a password response, got message type '%c'",
		            f.type >= 0x20 && f.type < 0x7f ? f.type : '?');
		return false;
	}
	if (evbuffer_get_length(in) < frame_total(&f))
		return false;
	body = evbuffer_pullup(in, (ev_ssize_t)frame_total(&f)) + FRAME_HEADER_LEN;
	if (step == LOGIN_PASSWORD)
		password_message(c, body, f.len - 4);
	else if (step == LOGIN_SASL_INITIAL)
		sasl_initial(c, body, f.len - 4);
	else
		sasl_final(c, body, f.len - 4);
	if (c->state != CLIENT_CLOSING)
		evbuffer_drain(in, frame_total(&f));
	return c->state == CLIENT_LOGIN && c->login != LOGIN_WAIT_POOL;
}

static void login_input(struct client *c)
{
	bool more = true;

	while (more && c->state == CLIENT_LOGIN) {
		switch (c->login) {
		case LOGIN_STARTUP:
			more = startup_input(c);
			break;
		case LOGIN_PASSWORD:
		case LOGIN_SASL_INITIAL:
		case LOGIN_SASL_FINAL:
			more = auth_input(c);
			break;
		case LOGIN_WAIT_POOL:
		case LOGIN_THROTTLED:
		case LOGIN_AUTH_QUERY:
		case LOGIN_AUTH_DELAY:
			more = false;
			break;
		}
	}
}

/* auth_query answered, a connect_rate token is ready, or a failed login's delay is over. */
static void login_wake(struct client *c)
{
	if (c->state != CLIENT_LOGIN)
		return;
	if (c->login == LOGIN_AUTH_QUERY)
		ask_password(c);
	else if (c->login == LOGIN_THROTTLED)
		client_login_finish(c);
	else if (c->login == LOGIN_AUTH_DELAY)
		answer_auth_failed(c);
}

const struct client_handler login_client_handler = {
    .input = login_input,
    .wake = login_wake,
};
