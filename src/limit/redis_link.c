/*
 * One worker's connection to Redis, and what the workers of a process share
 * about it; see redis_link.h.  A link is one connection (struct redis_conn),
 * two while a reload moves it to another fleet.
 *
 * hiredis frees a context itself after telling of a failed connect or a
 * lost connection, and defers a free asked for inside one of its callbacks
 * until that callback returns; so a link forgets its context (ctx = NULL)
 * before anything can free it, and every callback first checks that the
 * context it is called for is still the link's.
 */
#include "limit/redis_link.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "base/clock.h"
#include "base/list.h"
#include "config/config.h"

#define BACKOFF_MIN_US INT64_C(100000)  /* first reconnect after 100 ms... */
#define BACKOFF_MAX_US INT64_C(1000000) /* ...doubling to 1 s: back within 2 s of Redis */
#define BEAT_US        INT64_C(1000000) /* heartbeat period */
#define BEAT_TTL_MS    "3000"           /* an instance silent this long is not counted */
#define LOG_GAP_US     INT64_C(1000000) /* error lines: at most one a second */
#define REDIS_ARGS_MAX 8
#define REDIS_ARG_LEN  320

const int64_t redis_rtt_le_us[REDIS_RTT_BUCKETS] = {100,   250,   500,   1000,   2500,   5000,
                                                    10000, 25000, 50000, 100000, 250000, 1000000};

/*
 * Registers the instance and counts the live ones, by Redis' clock so the
 * instances' clocks need not agree.  Effects replication makes TIME legal
 * in a writing script before Redis 5 too (later it is the default).
 */
static const char beat_script[] =
    "if redis.replicate_commands then redis.replicate_commands() end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local ttl = tonumber(ARGV[2])\n"
    "redis.call('ZADD', KEYS[1], now, ARGV[1])\n"
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ttl)\n"
    "redis.call('PEXPIRE', KEYS[1], ttl)\n"
    "return redis.call('ZCARD', KEYS[1])\n";

struct redis_req {
	struct list_node node;   /* on the link's pending list, oldest first */
	struct redis_conn *link; /* the connection it was sent on */
	const struct redis_script *script;
	int64_t sent_us; /* for the timeout and the round-trip time */
	int argc;        /* key and arguments in argv */
	char argv[REDIS_ARGS_MAX][REDIS_ARG_LEN];
	redis_reply_fn fn; /* told once: the answer, or NULL */
	void *arg;
	bool resent; /* NOSCRIPT was answered: sent again with EVAL */
};

struct redis_conn {
	struct redis_link *owner;                    /* the worker's link */
	struct redis_fleet *fleet;                   /* a reference */
	struct event_base *base;                     /* the worker's loop */
	struct evdns_base *dns;                      /* and its resolver */
	struct evdns_getaddrinfo_request *resolving; /* name lookup in flight */
	redisAsyncContext *ctx;                      /* NULL while down or resolving */
	enum redis_state state;
	struct list_node pending; /* scripts sent, oldest first */
	struct event *deadline;   /* connect, or the oldest answer, overdue */
	struct event *retry;      /* reconnect after backoff_us */
	struct event *beat_timer; /* heartbeat each second while up */
	int64_t backoff_us;       /* next reconnect delay */
	int64_t connect_us;       /* when this connect began */
	bool beat_pending;        /* a heartbeat is unanswered: don't pile them up */
	bool settled;             /* the first connect is over: it answered, or failed */
	char last_error[200];     /* the last failure logged: a repeat is logged at debug */
};

struct redis_link {
	struct event_base *base;
	struct evdns_base *dns;
	struct redis_conn *cur;  /* in use */
	struct redis_conn *next; /* a reload's new fleet, connecting; replaces cur when settled */
};

static void conn_free(struct redis_conn *l);
static int conn_eval(struct redis_conn *l, const struct redis_script *s, const char *key,
                     const char *const *args, int nargs, redis_reply_fn fn, void *arg);

/* The new fleet's connection answered or failed: it is the link's from now on. */
static void promote(struct redis_link *link)
{
	struct redis_conn *old = link->cur;

	link->cur = link->next;
	link->next = NULL;
	LOG_AT(link->cur->fleet->log, LOG_DEBUG, NULL,
	       "redis: a worker moved to %s:%d, key prefix \"%s\"", link->cur->fleet->url.host,
	       link->cur->fleet->url.port, link->cur->fleet->prefix);
	conn_free(old);
}

static void arm(struct event *ev, int64_t us)
{
	struct timeval tv = {.tv_sec = us / 1000000, .tv_usec = us % 1000000};

	if (us < 0)
		tv.tv_sec = tv.tv_usec = 0;
	evtimer_add(ev, &tv);
}

/* ---------------------------------------------------------------------------
 * The fleet
 */

static int script_init(struct redis_script *s, const char *body)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	s->body = body;
	if (EVP_Digest(body, strlen(body), md, &n, EVP_sha1(), NULL) != 1 || n != 20)
		return -1;
	for (unsigned i = 0; i < n; i++)
		snprintf(s->sha + 2 * i, 3, "%02x", md[i]);
	return 0;
}

struct redis_fleet *redis_fleet_new(const struct config *cfg, const struct logger *log,
                                    struct redis_stats *stats, const char *instance,
                                    const char *take_script, const char *clients_script, int nlinks,
                                    char *msg, size_t len)
{
	struct redis_fleet *f = calloc(1, sizeof(*f));
	unsigned char rnd[4] = {0};
	char host[64] = "sluice";

	if (f == NULL) {
		snprintf(msg, len, "out of memory");
		return NULL;
	}
	atomic_init(&f->refs, 1);
	if (redis_url_parse(cfg->redis_url, &f->url, msg, len) < 0)
		goto fail;
	if (cfg->redis_password[0] != '\0')
		snprintf(f->url.password, sizeof(f->url.password), "%s", cfg->redis_password);
	if ((size_t)snprintf(f->prefix, sizeof(f->prefix), "%s", cfg->redis_key_prefix) >=
	    sizeof(f->prefix)) {
		snprintf(msg, len, "redis_key_prefix is longer than %zu bytes",
		         sizeof(f->prefix) - 1);
		goto fail;
	}
	if (instance != NULL) {
		snprintf(f->instance, sizeof(f->instance), "%s", instance);
	} else {
		gethostname(host, sizeof(host) - 1);
		RAND_bytes(rnd, sizeof(rnd));
		snprintf(f->instance, sizeof(f->instance), "%s:%d:%02x%02x%02x%02x", host,
		         (int)getpid(), rnd[0], rnd[1], rnd[2], rnd[3]);
	}
	atomic_init(&f->timeout_us, cfg->redis_timeout_us);
	atomic_init(&f->failure_mode, cfg->redis_failure_mode);
	f->log = log;
	f->stats = stats;
	f->nlinks = nlinks;
	atomic_init(&f->live, 1);
	if (script_init(&f->take, take_script) < 0 || script_init(&f->beat, beat_script) < 0 ||
	    script_init(&f->clients, clients_script) < 0) {
		snprintf(msg, len, "cannot hash the scripts (SHA-1)");
		goto fail;
	}
	return f;
fail:
	redis_fleet_unref(f);
	return NULL;
}

bool redis_fleet_same_store(const struct redis_fleet *f, const struct config *cfg)
{
	struct redis_url u;
	char msg[160];
	bool same;

	if (redis_url_parse(cfg->redis_url, &u, msg, sizeof(msg)) < 0)
		return false;
	if (cfg->redis_password[0] != '\0')
		snprintf(u.password, sizeof(u.password), "%s", cfg->redis_password);
	same = strcmp(u.host, f->url.host) == 0 && u.port == f->url.port && u.db == f->url.db &&
	       strcmp(u.user, f->url.user) == 0 && strcmp(u.password, f->url.password) == 0 &&
	       strcmp(cfg->redis_key_prefix, f->prefix) == 0;
	OPENSSL_cleanse(u.password, sizeof(u.password));
	return same;
}

struct redis_fleet *redis_fleet_ref(struct redis_fleet *f)
{
	if (f != NULL)
		atomic_fetch_add(&f->refs, 1);
	return f;
}

void redis_fleet_unref(struct redis_fleet *f)
{
	if (f == NULL || atomic_fetch_sub(&f->refs, 1) != 1)
		return;
	OPENSSL_cleanse(f->url.password, sizeof(f->url.password));
	free(f);
}

const char *redis_fleet_state(struct redis_fleet *f)
{
	int up = atomic_load(&f->links_up);

	return up >= f->nlinks ? "up" : up == 0 ? "down" : "partial";
}

void redis_fleet_log(struct redis_fleet *f, const char *fmt, ...)
{
	int64_t now = clock_monotonic_us(), last = atomic_load(&f->stats->last_log_us);
	int level = LOG_DEBUG;
	char line[512];
	va_list ap;

	if (now - last >= LOG_GAP_US &&
	    atomic_compare_exchange_strong(&f->stats->last_log_us, &last, now))
		level = LOG_WARN;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	LOG_AT(f->log, level, NULL, "redis: %s", line);
}

static void record_rtt(struct redis_fleet *f, int64_t rtt)
{
	int i = 0;

	while (i < REDIS_RTT_BUCKETS && rtt > redis_rtt_le_us[i])
		i++;
	if (i < REDIS_RTT_BUCKETS)
		atomic_fetch_add(&f->stats->rtt_buckets[i], 1);
	atomic_store(&f->stats->last_rtt_us, rtt);
	atomic_fetch_add(&f->stats->rtt_count, 1);
	atomic_fetch_add(&f->stats->rtt_sum_us, (uint64_t)(rtt > 0 ? rtt : 0));
}

/* ---------------------------------------------------------------------------
 * Going down and coming back
 */

static void rearm_deadline(struct redis_conn *l)
{
	struct redis_req *head;

	if (l->state == REDIS_CONNECTING)
		return; /* the connect deadline stands */
	if (list_empty(&l->pending)) {
		evtimer_del(l->deadline);
		return;
	}
	head = list_entry(l->pending.next, struct redis_req, node);
	arm(l->deadline, head->sent_us + l->fleet->timeout_us - clock_monotonic_us());
}

/*
 * The link is down: forget the context (freeing it unless hiredis is about
 * to), say why once, and come back after the backoff.  Pending scripts are
 * told NULL by hiredis as it frees the context.
 */
static void link_down(struct redis_conn *l, bool free_ctx, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void link_down(struct redis_conn *l, bool free_ctx, const char *fmt, ...)
{
	redisAsyncContext *ctx = l->ctx;
	char why[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (l->state == REDIS_UP)
		atomic_fetch_sub(&l->fleet->links_up, 1);
	atomic_fetch_add(&l->fleet->stats->errors, 1);
	/* A failure repeated at every reconnect is said once, not every second. */
	if (strcmp(why, l->last_error) != 0) {
		redis_fleet_log(l->fleet, "%s:%d: %s; limiter falls back to redis_failure_mode %s",
		                l->fleet->url.host, l->fleet->url.port, why,
		                l->fleet->failure_mode == REDIS_FAIL_OPEN     ? "open"
		                : l->fleet->failure_mode == REDIS_FAIL_CLOSED ? "closed"
		                                                              : "local");
		snprintf(l->last_error, sizeof(l->last_error), "%s", why);
	}
	l->state = REDIS_DOWN;
	l->settled = true;
	l->ctx = NULL;
	l->beat_pending = false;
	evtimer_del(l->deadline);
	evtimer_del(l->beat_timer);
	if (l->resolving != NULL) {
		struct evdns_getaddrinfo_request *r = l->resolving;

		l->resolving = NULL;
		evdns_getaddrinfo_cancel(r);
	}
	if (ctx != NULL) {
		ctx->data = NULL;
		if (free_ctx)
			redisAsyncFree(ctx);
	}
	arm(l->retry, l->backoff_us);
	l->backoff_us = l->backoff_us * 2 > BACKOFF_MAX_US ? BACKOFF_MAX_US : l->backoff_us * 2;
	/* A reload's new fleet that cannot be reached is still the configuration now. */
	if (l->owner != NULL && l->owner->next == l)
		promote(l->owner);
}

static void beat_done(void *arg, struct redis_fleet *f, const struct redisReply *reply)
{
	struct redis_conn *l = arg;

	l->beat_pending = false;
	if (reply != NULL && reply->type == REDIS_REPLY_INTEGER)
		atomic_store(&l->fleet->live, reply->integer > 0 ? (int)reply->integer : 1);
	else if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
		redis_fleet_log(l->fleet, "heartbeat script failed: %.200s", reply->str);
}

/* The fleet's once-a-second extra, by whichever link in use beats first. */
static void beat_hook(struct redis_conn *l)
{
	struct redis_fleet *f = l->fleet;
	int64_t now = clock_monotonic_us(), last = atomic_load(&f->hooked_us);

	if (f->beat_hook == NULL || l->owner == NULL || l->owner->cur != l ||
	    now - last < BEAT_US * 9 / 10 ||
	    !atomic_compare_exchange_strong(&f->hooked_us, &last, now))
		return;
	f->beat_hook(f->beat_arg, f, l->owner);
}

static void beat(struct redis_conn *l)
{
	const char *args[] = {l->fleet->instance, BEAT_TTL_MS};
	char key[REDIS_ARG_LEN];

	snprintf(key, sizeof(key), "%sinstances", l->fleet->prefix);
	if (!l->beat_pending && conn_eval(l, &l->fleet->beat, key, args, 2, beat_done, l) == 0)
		l->beat_pending = true;
	arm(l->beat_timer, BEAT_US);
	beat_hook(l);
}

static void beat_cb(evutil_socket_t fd, short what, void *arg)
{
	beat(arg);
}

/* The PING after AUTH and SELECT answered: the link is up. */
static void ready_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct redis_conn *l = ac->data;
	redisReply *reply = r;

	if (l == NULL || l->ctx != ac || reply == NULL)
		return;
	if (reply->type == REDIS_REPLY_ERROR) {
		link_down(l, true, "PING: %.150s", reply->str);
		return;
	}
	l->state = REDIS_UP;
	l->settled = true;
	l->backoff_us = BACKOFF_MIN_US;
	atomic_fetch_add(&l->fleet->links_up, 1);
	record_rtt(l->fleet, clock_monotonic_us() - l->connect_us);
	/* After a failure this is news (the limits are shared again); a first connect is not. */
	LOG_AT(l->fleet->log, l->last_error[0] != '\0' ? LOG_INFO : LOG_DEBUG, NULL,
	       "redis: connected to %s:%d: limits are shared again", l->fleet->url.host,
	       l->fleet->url.port);
	l->last_error[0] = '\0';
	rearm_deadline(l);
	beat(l);
	if (l->owner != NULL && l->owner->next == l)
		promote(l->owner);
}

/* AUTH or SELECT: privdata names the step for the log line. */
static void step_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct redis_conn *l = ac->data;
	redisReply *reply = r;

	if (l == NULL || l->ctx != ac || reply == NULL)
		return;
	if (reply->type == REDIS_REPLY_ERROR)
		link_down(l, true, "%s refused: %.150s", (const char *)privdata, reply->str);
}

static void connect_cb(const redisAsyncContext *ac, int status)
{
	struct redis_conn *l = ac->data;

	/* On failure hiredis frees the context after this returns. */
	if (l != NULL && l->ctx == ac && status != REDIS_OK)
		link_down(l, false, "cannot connect: %.150s", ac->errstr);
}

static void disconnect_cb(const redisAsyncContext *ac, int status)
{
	struct redis_conn *l = ac->data;

	if (l != NULL && l->ctx == ac)
		link_down(l, false, "connection lost: %.150s",
		          ac->err != 0 ? ac->errstr : "closed by the server");
}

static void connect_to(struct redis_conn *l, const char *ip)
{
	const struct redis_url *u = &l->fleet->url;
	redisAsyncContext *ac = redisAsyncConnect(ip, u->port);
	char db[16];

	if (ac == NULL) {
		link_down(l, false, "cannot connect: out of memory");
		return;
	}
	if (ac->err != 0) {
		char why[160];

		snprintf(why, sizeof(why), "%s", ac->errstr);
		redisAsyncFree(ac);
		link_down(l, false, "cannot connect: %s", why);
		return;
	}
	ac->data = l;
	l->ctx = ac;
	redisLibeventAttach(ac, l->base);
	redisAsyncSetConnectCallback(ac, connect_cb);
	redisAsyncSetDisconnectCallback(ac, disconnect_cb);
	/* Queued now, written once connected: one round trip for the whole handshake. */
	if (u->user[0] != '\0')
		redisAsyncCommand(ac, step_cb, "AUTH", "AUTH %s %s", u->user, u->password);
	else if (u->password[0] != '\0')
		redisAsyncCommand(ac, step_cb, "AUTH", "AUTH %s", u->password);
	if (u->db != 0) {
		snprintf(db, sizeof(db), "%d", u->db);
		redisAsyncCommand(ac, step_cb, "SELECT", "SELECT %s", db);
	}
	redisAsyncCommand(ac, ready_cb, NULL, "PING");
}

static void resolved_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	struct redis_conn *l = arg;
	char ip[INET6_ADDRSTRLEN] = "";

	if (result == EVUTIL_EAI_CANCEL)
		return;
	l->resolving = NULL;
	if (result != 0) {
		link_down(l, false, "cannot resolve: %s", evutil_gai_strerror(result));
		return;
	}
	if (res->ai_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr, ip,
		          sizeof(ip));
	else
		inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, ip, sizeof(ip));
	evutil_freeaddrinfo(res);
	/* A numeric address: hiredis' own getaddrinfo then needs no lookup and cannot block. */
	connect_to(l, ip);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct redis_conn *l = arg;
	struct evutil_addrinfo hints = {
	    .ai_family = AF_UNSPEC,
	    .ai_socktype = SOCK_STREAM,
	    .ai_protocol = IPPROTO_TCP,
	};
	struct evdns_getaddrinfo_request *req;

	l->state = REDIS_CONNECTING;
	l->connect_us = clock_monotonic_us();
	arm(l->deadline, l->fleet->timeout_us);
	if (l->dns == NULL) {
		link_down(l, false, "no resolver");
		return;
	}
	/* A numeric address is answered at once, through the callback, and NULL comes back. */
	req = evdns_getaddrinfo(l->dns, l->fleet->url.host, NULL, &hints, resolved_cb, l);
	if (req != NULL && l->state == REDIS_CONNECTING && l->ctx == NULL)
		l->resolving = req;
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct redis_conn *l = arg;
	struct redis_req *head;

	if (l->state == REDIS_CONNECTING) {
		link_down(l, true, "no connection within redis_timeout (%lld ms)",
		          (long long)(l->fleet->timeout_us / 1000));
		return;
	}
	if (list_empty(&l->pending))
		return;
	head = list_entry(l->pending.next, struct redis_req, node);
	if (clock_monotonic_us() - head->sent_us >= l->fleet->timeout_us)
		link_down(l, true, "no answer within redis_timeout (%lld ms)",
		          (long long)(l->fleet->timeout_us / 1000));
	else
		rearm_deadline(l);
}

static struct redis_conn *conn_new(struct redis_link *owner, struct redis_fleet *f)
{
	struct redis_conn *l = calloc(1, sizeof(*l));
	struct event_base *base = owner->base;

	if (l == NULL)
		return NULL;
	l->owner = owner;
	l->fleet = redis_fleet_ref(f);
	l->base = base;
	l->dns = owner->dns;
	l->state = REDIS_DOWN;
	l->backoff_us = BACKOFF_MIN_US;
	list_init(&l->pending);
	l->deadline = evtimer_new(base, deadline_cb, l);
	l->retry = evtimer_new(base, retry_cb, l);
	l->beat_timer = evtimer_new(base, beat_cb, l);
	if (l->deadline == NULL || l->retry == NULL || l->beat_timer == NULL) {
		conn_free(l);
		return NULL;
	}
	arm(l->retry, 0); /* connect once the worker's loop runs */
	return l;
}

static void conn_free(struct redis_conn *l)
{
	redisAsyncContext *ctx;

	if (l == NULL)
		return;
	l->owner = NULL; /* the pending scripts failed below start no promotion */
	ctx = l->ctx;
	l->ctx = NULL;
	if (l->resolving != NULL) {
		struct evdns_getaddrinfo_request *r = l->resolving;

		l->resolving = NULL;
		evdns_getaddrinfo_cancel(r);
	}
	if (ctx != NULL) {
		ctx->data = NULL;
		redisAsyncFree(ctx); /* pending scripts are told NULL now */
	}
	if (l->state == REDIS_UP)
		atomic_fetch_sub(&l->fleet->links_up, 1);
	if (l->deadline != NULL)
		event_free(l->deadline);
	if (l->retry != NULL)
		event_free(l->retry);
	if (l->beat_timer != NULL)
		event_free(l->beat_timer);
	redis_fleet_unref(l->fleet);
	free(l);
}

struct redis_link *redis_link_new(struct redis_fleet *f, struct event_base *base,
                                  struct evdns_base *dns)
{
	struct redis_link *link = calloc(1, sizeof(*link));

	if (link == NULL)
		return NULL;
	link->base = base;
	link->dns = dns;
	if ((link->cur = conn_new(link, f)) == NULL) {
		free(link);
		return NULL;
	}
	return link;
}

void redis_link_free(struct redis_link *link)
{
	if (link == NULL)
		return;
	conn_free(link->next);
	conn_free(link->cur);
	free(link);
}

int redis_link_follow(struct redis_link *link, struct redis_fleet *f)
{
	if (link->cur->fleet == f) {
		conn_free(link->next); /* a reload went back before the move was done */
		link->next = NULL;
		return 0;
	}
	if (link->next != NULL && link->next->fleet == f)
		return 0;
	conn_free(link->next);
	if ((link->next = conn_new(link, f)) == NULL)
		return -1;
	/* Nothing to keep serving meanwhile: the old connection is down anyway. */
	if (link->cur->state != REDIS_UP)
		promote(link);
	return 0;
}

struct redis_fleet *redis_link_fleet(const struct redis_link *link)
{
	return link->cur->fleet;
}

bool redis_link_settled(const struct redis_link *link)
{
	return link->cur->settled;
}

bool redis_link_is_up(const struct redis_link *link)
{
	return link != NULL && link->cur->state == REDIS_UP;
}

/* ---------------------------------------------------------------------------
 * Scripts
 */

static int send_req(struct redis_conn *l, struct redis_req *q);

static void reply_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct redis_req *q = privdata;
	struct redis_conn *l = q->link;
	redisReply *reply = r;
	bool current = l->ctx == ac && ac != NULL;

	/* Redis lost the script (restarted, SCRIPT FLUSH): send it whole, once. */
	if (current && reply != NULL && reply->type == REDIS_REPLY_ERROR && !q->resent &&
	    strncmp(reply->str, "NOSCRIPT", 8) == 0) {
		q->resent = true;
		list_del(&q->node);
		if (send_req(l, q) == 0)
			return;
		reply = NULL;
	} else {
		list_del(&q->node);
	}
	if (reply != NULL) {
		record_rtt(l->fleet, clock_monotonic_us() - q->sent_us);
		if (reply->type == REDIS_REPLY_ERROR)
			atomic_fetch_add(&l->fleet->stats->errors, 1);
	}
	q->fn(q->arg, l->fleet, reply);
	free(q);
	if (current)
		rearm_deadline(l);
}

static int send_req(struct redis_conn *l, struct redis_req *q)
{
	const char *argv[REDIS_ARGS_MAX + 3];
	size_t lens[REDIS_ARGS_MAX + 3];
	int n = 0;

	argv[n++] = q->resent ? "EVAL" : "EVALSHA";
	argv[n++] = q->resent ? q->script->body : q->script->sha;
	argv[n++] = "1";
	for (int i = 0; i < q->argc; i++)
		argv[n++] = q->argv[i];
	for (int i = 0; i < n; i++)
		lens[i] = strlen(argv[i]);
	if (redisAsyncCommandArgv(l->ctx, reply_cb, q, n, argv, lens) != REDIS_OK)
		return -1;
	q->sent_us = clock_monotonic_us();
	list_add_tail(&l->pending, &q->node);
	if (!evtimer_pending(l->deadline, NULL))
		rearm_deadline(l);
	return 0;
}

static int conn_eval(struct redis_conn *l, const struct redis_script *s, const char *key,
                     const char *const *args, int nargs, redis_reply_fn fn, void *arg)
{
	struct redis_req *q;

	if (l == NULL || l->state != REDIS_UP || l->ctx == NULL || nargs + 1 > REDIS_ARGS_MAX)
		return -1;
	if ((q = calloc(1, sizeof(*q))) == NULL)
		return -1;
	q->link = l;
	q->script = s;
	q->fn = fn;
	q->arg = arg;
	q->argc = nargs + 1;
	if ((size_t)snprintf(q->argv[0], REDIS_ARG_LEN, "%s", key) >= REDIS_ARG_LEN)
		goto fail;
	for (int i = 0; i < nargs; i++)
		if ((size_t)snprintf(q->argv[i + 1], REDIS_ARG_LEN, "%s", args[i]) >= REDIS_ARG_LEN)
			goto fail;
	if (send_req(l, q) == 0)
		return 0;
fail:
	free(q);
	return -1;
}

int redis_link_eval(struct redis_link *link, const struct redis_script *s, const char *key,
                    const char *const *args, int nargs, redis_reply_fn fn, void *arg)
{
	return link == NULL ? -1 : conn_eval(link->cur, s, key, args, nargs, fn, arg);
}
