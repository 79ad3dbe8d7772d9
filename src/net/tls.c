/*
 * TLS contexts and socket wrapping; see tls.h.
 */
#include "net/tls.h"

#include <arpa/inet.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"

/* The first OpenSSL error queued, as text, with the queue cleared. */
static void openssl_reason(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();

	if (e == 0)
		snprintf(buf, len, "unknown OpenSSL error");
	else
		ERR_error_string_n(e, buf, len);
	ERR_clear_error();
}

static SSL_CTX *new_ctx(const SSL_METHOD *method, const char *ciphers, const char *what, char *err,
                        size_t len)
{
	SSL_CTX *ctx = SSL_CTX_new(method);
	char reason[256];

	if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_cipher_list(ctx, ciphers)) {
		openssl_reason(reason, sizeof(reason));
		snprintf(err, len, "%s_ciphers '%s': %s", what, ciphers, reason);
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* No renegotiation, no compression, no session tickets: nothing to gain here. */
	SSL_CTX_set_options(ctx,
	                    SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET);
	/*
	 * Nor resumption at all: libpq never resumes, and under TLS 1.3
	 * SSL_OP_NO_TICKET alone makes tickets stateful, so every handshake
	 * left its session in the context's cache (about 1 KB each, up to
	 * 20,480 of them, behind a lock all workers share).
	 */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	return ctx;
}

static int load_pair(SSL_CTX *ctx, const char *what, const char *cert, const char *key, char *err,
                     size_t len)
{
	char reason[256];

	if (cert[0] == '\0' && key[0] == '\0')
		return 0;
	if (cert[0] == '\0' || key[0] == '\0') {
		snprintf(err, len, "%s_cert_file and %s_key_file must be set together", what, what);
		return -1;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		openssl_reason(reason, sizeof(reason));
		snprintf(err, len, "%s_cert_file %s: %s", what, cert, reason);
		return -1;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		openssl_reason(reason, sizeof(reason));
		snprintf(err, len, "%s_key_file %s: %s", what, key, reason);
		return -1;
	}
	return 0;
}

/* ---- CA stores kept across builds ---- */

/*
 * What a store was read from, as stat saw it (zeroes: missing).  The
 * defaults are a file read up front and a hashed directory OpenSSL reads
 * lazily into the store, so the directory's entries count too.
 */
struct ca_source {
	struct stat file, dir;
	bool racy; /* changed within RACY_S of being read: a change in the same tick may hide */
};

struct tls_ca_store {
	char *path; /* NULL: the system's default locations */
	struct ca_source src;
	X509_STORE *store; /* the cache's reference */
	bool used;         /* by the build in progress */
};

/*
 * File times tick coarsely: a file rewritten at the same size within the
 * tick it was read in looks unchanged, so one changed that recently is read
 * again at the next build (as git treats "racily clean" files).
 */
#define RACY_S 2

static void stat_or_zero(const char *path, struct stat *st)
{
	if (path == NULL || stat(path, st) < 0)
		memset(st, 0, sizeof(*st));
}

static const char *env_or(const char *name, const char *fallback)
{
	const char *env = getenv(name);

	return env != NULL ? env : fallback;
}

static void ca_source_read(const char *path, struct ca_source *src)
{
	time_t now = time(NULL);

	if (path != NULL) {
		stat_or_zero(path, &src->file);
		memset(&src->dir, 0, sizeof(src->dir));
	} else {
		stat_or_zero(env_or(X509_get_default_cert_file_env(), X509_get_default_cert_file()),
		             &src->file);
		stat_or_zero(env_or(X509_get_default_cert_dir_env(), X509_get_default_cert_dir()),
		             &src->dir);
	}
	src->racy =
	    now - src->file.st_mtim.tv_sec < RACY_S || now - src->file.st_ctim.tv_sec < RACY_S ||
	    now - src->dir.st_mtim.tv_sec < RACY_S || now - src->dir.st_ctim.tv_sec < RACY_S;
}

static bool same_stat(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Whether a store read from `was` may serve for `now`. */
static bool same_source(const struct ca_source *was, const struct ca_source *now)
{
	return !was->racy && same_stat(&was->file, &now->file) && same_stat(&was->dir, &now->dir);
}

static X509_STORE *read_store(const char *path, const char *what, char *err, size_t len)
{
	X509_STORE *store = X509_STORE_new();
	char reason[256];

	if (store == NULL) {
		snprintf(err, len, "out of memory");
		return NULL;
	}
	if (path == NULL) {
		/* As SSL_CTX_set_default_verify_paths: missing defaults are no error. */
		X509_STORE_set_default_paths(store);
		ERR_clear_error();
	} else if (X509_STORE_load_file(store, path) != 1) {
		openssl_reason(reason, sizeof(reason));
		snprintf(err, len, "%s %s: %s", what, path, reason);
		X509_STORE_free(store);
		return NULL;
	}
	return store;
}

/* The store for `path` (NULL: the defaults), read unless the cache has it unchanged. */
static X509_STORE *ca_store(struct tls_ca_cache *cas, const char *path, const char *what, char *err,
                            size_t len)
{
	struct tls_ca_store *s, *grown;
	struct ca_source src;

	ca_source_read(path, &src);
	for (size_t i = 0; i < cas->n; i++) {
		s = &cas->stores[i];
		if ((s->path == NULL ? path == NULL : path != NULL && strcmp(s->path, path) == 0) &&
		    same_source(&s->src, &src)) {
			s->used = true;
			return s->store;
		}
	}
	grown = realloc(cas->stores, (cas->n + 1) * sizeof(*cas->stores));
	if (grown == NULL) {
		snprintf(err, len, "out of memory");
		return NULL;
	}
	cas->stores = grown;
	s = &cas->stores[cas->n];
	*s = (struct tls_ca_store){.src = src, .used = true};
	if (path != NULL && (s->path = strdup(path)) == NULL) {
		snprintf(err, len, "out of memory");
		return NULL;
	}
	if ((s->store = read_store(path, what, err, len)) == NULL) {
		free(s->path);
		return NULL;
	}
	cas->n++;
	return s->store;
}

/*
 * Drop the stores a successful build did not use (their contexts hold their
 * own references).  After a failed one all are kept: the snapshot still in
 * use may need them at the next.
 */
static void ca_cache_prune(struct tls_ca_cache *cas, bool keep_unused)
{
	size_t kept = 0;

	for (size_t i = 0; i < cas->n; i++) {
		struct tls_ca_store *s = &cas->stores[i];

		if (s->used || keep_unused) {
			s->used = false;
			cas->stores[kept++] = *s;
		} else {
			X509_STORE_free(s->store);
			free(s->path);
		}
	}
	cas->n = kept;
}

void tls_ca_cache_fini(struct tls_ca_cache *cas)
{
	ca_cache_prune(cas, false); /* none is marked used between builds */
	free(cas->stores);
	memset(cas, 0, sizeof(*cas));
}

/* Verify peers against `path`'s CAs (NULL: the system's). */
static int use_ca(SSL_CTX *ctx, struct tls_ca_cache *cas, const char *what, const char *path,
                  char *err, size_t len)
{
	X509_STORE *store = ca_store(cas, path, what, err, len);

	if (store == NULL)
		return -1;
	SSL_CTX_set1_cert_store(ctx, store);
	return 0;
}

static SSL_CTX *build_accept(const struct config *cfg, struct tls_ca_cache *cas, char *err,
                             size_t len)
{
	SSL_CTX *ctx;

	if (cfg->client_tls_cert_file[0] == '\0') {
		snprintf(err, len,
		         "client_tls_sslmode %s needs client_tls_cert_file and "
		         "client_tls_key_file",
		         cfg->client_tls_sslmode == SSLMODE_REQUIRE ? "require"
		                                                    : "other than disable");
		return NULL;
	}
	ctx = new_ctx(TLS_server_method(), cfg->client_tls_ciphers, "client_tls", err, len);
	if (ctx == NULL || load_pair(ctx, "client_tls", cfg->client_tls_cert_file,
	                             cfg->client_tls_key_file, err, len) < 0)
		goto fail;
	if (cfg->client_tls_sslmode >= SSLMODE_VERIFY_CA && cfg->client_tls_ca_file[0] == '\0') {
		snprintf(err, len,
		         "client_tls_sslmode verify-ca/verify-full needs client_tls_ca_file");
		goto fail;
	}
	/*
	 * With a CA, clients are asked for a certificate: verify-ca and
	 * verify-full insist on one, below them it is optional and serves the
	 * cert authentication method.
	 */
	if (cfg->client_tls_ca_file[0] != '\0') {
		STACK_OF(X509_NAME) * names;

		if (use_ca(ctx, cas, "client_tls_ca_file", cfg->client_tls_ca_file, err, len) < 0)
			goto fail;
		names = SSL_load_client_CA_file(cfg->client_tls_ca_file);
		if (names != NULL)
			SSL_CTX_set_client_CA_list(ctx, names);
		SSL_CTX_set_verify(ctx,
		                   cfg->client_tls_sslmode >= SSLMODE_VERIFY_CA
		                       ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT
		                       : SSL_VERIFY_PEER,
		                   NULL);
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static SSL_CTX *build_connect(const struct config *cfg, struct tls_ca_cache *cas,
                              const char *ca_file, char *err, size_t len)
{
	SSL_CTX *ctx =
	    new_ctx(TLS_client_method(), cfg->server_tls_ciphers, "server_tls", err, len);

	if (ctx == NULL || load_pair(ctx, "server_tls", cfg->server_tls_cert_file,
	                             cfg->server_tls_key_file, err, len) < 0)
		goto fail;
	if (use_ca(ctx, cas,
	           ca_file == cfg->server_tls_ca_file ? "server_tls_ca_file" : "sslrootcert",
	           ca_file[0] != '\0' ? ca_file : NULL, err, len) < 0)
		goto fail;
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

int tls_contexts_build(const struct config *cfg, struct tls_ca_cache *cas, struct tls_contexts *t,
                       char *err, size_t len)
{
	memset(t, 0, sizeof(*t));
	if (cfg->client_tls_sslmode != SSLMODE_DISABLE &&
	    (t->accept = build_accept(cfg, cas, err, len)) == NULL)
		goto fail;
	if ((t->connect = build_connect(cfg, cas, cfg->server_tls_ca_file, err, len)) == NULL)
		goto fail;
	t->ndb = cfg->ndbs;
	if (cfg->ndbs > 0 && (t->db_connect = calloc(cfg->ndbs, sizeof(*t->db_connect))) == NULL) {
		snprintf(err, len, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < cfg->ndbs; i++) {
		const char *root = cfg->dbs[i].sslrootcert;

		if (root != NULL &&
		    (t->db_connect[i] = build_connect(cfg, cas, root, err, len)) == NULL)
			goto fail;
	}
	ca_cache_prune(cas, false);
	return 0;
fail:
	tls_contexts_free(t);
	ca_cache_prune(cas, true);
	return -1;
}

void tls_contexts_free(struct tls_contexts *t)
{
	SSL_CTX_free(t->accept);
	SSL_CTX_free(t->connect);
	for (size_t i = 0; i < t->ndb && t->db_connect != NULL; i++)
		SSL_CTX_free(t->db_connect[i]);
	free(t->db_connect);
	memset(t, 0, sizeof(*t));
}

int tls_server_sslmode(const struct config *cfg, const struct db_def *db)
{
	return db->sslmode != CONFIG_INHERIT ? db->sslmode : cfg->server_tls_sslmode;
}

SSL *tls_server_ssl(const struct tls_contexts *t, const struct config *cfg, const struct db_def *db,
                    const char *host)
{
	size_t i = (size_t)(db - cfg->dbs);
	SSL_CTX *ctx = i < t->ndb && t->db_connect[i] != NULL ? t->db_connect[i] : t->connect;
	int mode = tls_server_sslmode(cfg, db);
	unsigned char addr[16];
	bool is_ip = inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
	SSL *ssl = SSL_new(ctx);

	if (ssl == NULL)
		return NULL;
	/* Below verify-ca the certificate is not checked, as libpq does. */
	SSL_set_verify(ssl, mode >= SSLMODE_VERIFY_CA ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	if (!is_ip)
		SSL_set_tlsext_host_name(ssl, host);
	if (mode == SSLMODE_VERIFY_FULL) {
		int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host)
		               : SSL_set1_host(ssl, host);

		if (ok != 1) {
			SSL_free(ssl);
			return NULL;
		}
	}
	return ssl;
}

void tls_error_text(struct bufferevent *bev, char *buf, size_t len)
{
	unsigned long e = bufferevent_get_openssl_error(bev);

	if (e == 0) {
		snprintf(buf, len, "TLS connection failed");
		return;
	}
	ERR_error_string_n(e, buf, len);
	while (bufferevent_get_openssl_error(bev) != 0)
		;
}

void tls_describe(struct bufferevent *bev, char *buf, size_t len)
{
	SSL *ssl = bufferevent_openssl_get_ssl(bev);

	if (ssl == NULL) {
		buf[0] = '\0';
		return;
	}
	snprintf(buf, len, "%s/%s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
}
