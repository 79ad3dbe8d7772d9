/*
 * TLS with OpenSSL 3 through libevent's bufferevent_openssl, on both sides
 * (docs/security.md).  The SSL_CTXs are built from a configuration snapshot
 * and live with it, so RELOAD picks up new certificates for new connections
 * while established ones keep theirs (each SSL holds a reference to its
 * context).  TLS 1.2 is the oldest protocol either side accepts.
 */
#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H

#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

struct config;
struct db_def;

/*
 * CA stores kept from one build to the next while their file is unchanged
 * (its inode, size and times): parsed, the system's CAs take about 1 MB,
 * and a server's SSL keeps the context it was made with, so a store built
 * anew on every reload stayed once per reload that left a server behind.
 * A changed file is read again, so a rotated CA takes effect on reload.
 * Used on the control loop only; the stores themselves are shared with
 * the workers' SSLs (OpenSSL counts references and locks them).
 */
struct tls_ca_store;
struct tls_ca_cache {
	struct tls_ca_store *stores;
	size_t n;
};
void tls_ca_cache_fini(struct tls_ca_cache *cas);

struct tls_contexts {
	SSL_CTX *accept;      /* for clients; NULL when client_tls_sslmode = disable */
	SSL_CTX *connect;     /* for servers, with server_tls_ca_file (or the system's CAs) */
	SSL_CTX **db_connect; /* per [databases] entry with its own sslrootcert, else NULL */
	size_t ndb;
};

/*
 * Returns 0, or -1 with a message naming the option and OpenSSL's reason.
 * CA stores come from `cas` (read when new or changed); the ones this build
 * did not use are dropped from it.
 */
int tls_contexts_build(const struct config *cfg, struct tls_ca_cache *cas, struct tls_contexts *t,
                       char *err, size_t len);
void tls_contexts_free(struct tls_contexts *t);

/* The sslmode for a database's servers: its own, else server_tls_sslmode. */
int tls_server_sslmode(const struct config *cfg, const struct db_def *db);
/*
 * A new SSL for connecting to `host` (one of `db`'s hosts: the name the
 * certificate must match), with verification as the database's sslmode says.
 */
SSL *tls_server_ssl(const struct tls_contexts *t, const struct config *cfg, const struct db_def *db,
                    const char *host);

/* "TLSv1.3/TLS_AES_256_GCM_SHA384" for SHOW CLIENTS/SERVERS; "" when not TLS. */
void tls_describe(struct bufferevent *bev, char *buf, size_t len);

/* OpenSSL's reason for a failed TLS bufferevent, for logs and clients. */
void tls_error_text(struct bufferevent *bev, char *buf, size_t len);

#endif
