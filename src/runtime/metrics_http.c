/*
 * The HTTP endpoint; see metrics_http.h.  Everything here runs on the control
 * loop.  Requests that need the workers wait on `pending` until their gather
 * reports back; /readyz requests that need a probe wait on `waiters`.
 */
#include "runtime/metrics_http.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "base/clock.h"
#include "config/config.h"
#include "limit/redis_limiter.h"
#include "limit/redis_link.h"
#include "observe/latency.h"
#include "observe/queries.h"
#include "base/list.h"
#include "base/log.h"
#include "pool/pool.h"
#include "runtime/procstat.h"
#include "runtime/inherit.h"
#include "runtime/runtime.h"
#include "pool/server.h"
#include "observe/gather.h"
#include "pool/worker.h"

#define HTTP_TIMEOUT_S    10               /* a slow HTTP client is dropped after this */
#define PROBE_TIMEOUT_S   2                /* one upstream probe */
#define PROBE_FRESH_US    (10 * 1000000LL) /* a successful probe counts this long */
#define PROBE_MAX         8                /* databases probed at once */
#define PROBE_SSL_REQUEST 80877103         /* SSLRequest code */
#define PROMETHEUS_TYPE   "text/plain; version=0.0.4; charset=utf-8"

struct metrics_http {
	struct runtime *rt;       /* owner */
	struct evhttp *http;      /* the server, on rt->base */
	struct evdns_base *dns;   /* resolver for probes of databases given by host name */
	struct list_node pending; /* struct waiting: requests waiting for a gather */
	struct list_node waiters; /* struct waiting: /readyz requests waiting for a probe */
	struct list_node probes;  /* struct probe in flight */
	int64_t probe_ok_us;      /* clock_monotonic_us of the last successful probe; 0 = none */
	bool starting_probes;     /* probe_databases is still starting them */
	struct evhttp_bound_socket *bound; /* the listening socket; NULL once handed over */
};

/* An HTTP request waiting for the workers or for a probe. */
struct waiting {
	struct metrics_http *m;     /* owner */
	struct evhttp_request *req; /* answered exactly once, then this is freed */
	struct list_node node;      /* m->pending or m->waiters */
	int nworkers;               /* entries in live */
	int live[];                 /* /readyz: logged-in servers, one slot per worker */
};

/* A readiness probe of one database. */
struct probe {
	struct metrics_http *m;  /* owner */
	struct bufferevent *bev; /* the connection */
	struct list_node node;   /* m->probes */
	bool starting;           /* inside probe_start: a failure is only noted */
	bool failed;             /* failed while starting */
};

static void reply_text(struct evhttp_request *req, int code, const char *reason, const char *body)
{
	struct evbuffer *b = evbuffer_new();

	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
	                  "text/plain; charset=utf-8");
	if (b != NULL)
		evbuffer_add_printf(b, "%s\n", body);
	evhttp_send_reply(req, code, reason, b);
	if (b != NULL)
		evbuffer_free(b);
}

static struct waiting *waiting_new(struct metrics_http *m, struct evhttp_request *req, int nworkers)
{
	struct waiting *wt = calloc(1, sizeof(*wt) + (size_t)nworkers * sizeof(int));

	if (wt == NULL)
		return NULL;
	wt->m = m;
	wt->req = req;
	wt->nworkers = nworkers;
	list_add_tail(&m->pending, &wt->node);
	return wt;
}

/* Answer and forget a waiting request. */
static void waiting_reply(struct waiting *wt, int code, const char *reason, const char *body)
{
	list_del(&wt->node);
	reply_text(wt->req, code, reason, body);
	free(wt);
}

/* ---- /metrics ---- */

/* Bounds of the exported `le` buckets, in us, and how they are printed. */
static const uint64_t le_us[] = {50,      100,     250,      500,      1000,    2500,   5000,
                                 10000,   25000,   50000,    100000,   250000,  500000, 1000000,
                                 2500000, 5000000, 10000000, 30000000, 60000000};
static const char *const le_text[] = {
    "0.00005", "0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
    "0.1",     "0.25",   "0.5",     "1",      "2.5",   "5",      "10",    "30",   "60"};
#define NBOUNDS (sizeof(le_us) / sizeof(le_us[0]))

struct histogram_family {
	enum latency_kind kind; /* which histogram */
	const char *name;       /* metric family */
	const char *help;       /* its HELP line */
};

static const struct histogram_family histogram_families[] = {
    {LATENCY_QUERY, "sluice_query_duration_seconds",
     "Request forwarded to the server until the ReadyForQuery that answers it."},
    {LATENCY_XACT, "sluice_transaction_duration_seconds",
     "First request after ReadyForQuery 'I' until the next 'I'."},
    {LATENCY_WAIT, "sluice_wait_duration_seconds",
     "Time a client waited for a server connection (0 when one was idle)."},
    {LATENCY_CONNECT, "sluice_server_connect_duration_seconds",
     "Server connection start until its login completed."},
};

/* A per-pool number: a field of struct latency_row. */
struct row_family {
	const char *name; /* metric family */
	const char *type; /* gauge or counter */
	const char *help; /* HELP line */
	size_t offset;    /* of the field in struct latency_row */
	bool is_int;      /* int field, else uint64_t */
};

#define ROW_INT(f)    offsetof(struct latency_row, f), true
#define ROW_UINT64(f) offsetof(struct latency_row, f), false

static const struct row_family row_families[] = {
    {"sluice_pool_clients_active", "gauge",
     "Clients logged in and not waiting (linked to a server or between transactions).",
     ROW_INT(clients_active)},
    {"sluice_pool_clients_waiting", "gauge",
     "Clients queued for a server connection or for the pool's first login.",
     ROW_INT(clients_waiting)},
    {"sluice_pool_servers_active", "gauge", "Server connections linked to a client.",
     ROW_INT(servers_active)},
    {"sluice_pool_servers_idle", "gauge", "Server connections idle in the pool.",
     ROW_INT(servers_idle)},
    {"sluice_pool_servers_used", "gauge",
     "Server connections waiting for a check query before reuse, as SHOW POOLS' sv_used "
     "(sluice runs no server_check_query, so none).",
     ROW_INT(servers_used)},
    {"sluice_pool_servers_tested", "gauge",
     "Server connections being reset after a client left (SHOW POOLS' sv_tested).",
     ROW_INT(servers_tested)},
    {"sluice_pool_servers_being_canceled", "gauge",
     "Server connections with a cancel in flight (SHOW POOLS' sv_being_canceled).",
     ROW_INT(servers_canceling)},
    {"sluice_pool_servers_login", "gauge", "Server connections connecting or logging in.",
     ROW_INT(servers_login)},
    {"sluice_listen_connections", "gauge",
     "Shared listening connections logged in (LISTEN in transaction mode, "
     "docs/session-state.md).",
     ROW_INT(listen_servers)},
    {"sluice_listen_channels", "gauge", "Channels the listening connections LISTEN on.",
     ROW_INT(listen_channels)},
    {"sluice_listen_subscriptions", "gauge", "Client subscriptions to those channels.",
     ROW_INT(listen_subs)},
    {"sluice_listen_notifications_total", "counter",
     "Notifications the listening connections received.", ROW_UINT64(stats.listen_notifications)},
    {"sluice_listen_deliveries_total", "counter",
     "Copies of notifications written to subscribed clients.", ROW_UINT64(stats.listen_delivered)},
    {"sluice_listen_dropped_subscribers_total", "counter",
     "Subscribers closed for holding more than listen_queue_size notifications.",
     ROW_UINT64(stats.listen_dropped)},
    {"sluice_listen_connections_lost_total", "counter",
     "Listening connections lost and opened again (subscribers were told).",
     ROW_UINT64(stats.listen_lost)},
    {"sluice_queries_total", "counter", "Query and Execute messages forwarded to servers.",
     ROW_UINT64(stats.query_count)},
    {"sluice_transactions_total", "counter", "Transactions finished (ReadyForQuery 'I').",
     ROW_UINT64(stats.xact_count)},
    {"sluice_received_bytes_total", "counter", "Bytes from clients forwarded to servers.",
     ROW_UINT64(stats.bytes_received)},
    {"sluice_sent_bytes_total", "counter", "Bytes from servers forwarded to clients.",
     ROW_UINT64(stats.bytes_sent)},
    {"sluice_server_assignments_total", "counter",
     "Times a server connection was linked to a client.", ROW_UINT64(stats.server_assignments)},
    {"sluice_client_logins_total", "counter", "Successful client logins.",
     ROW_UINT64(stats.client_logins)},
    {"sluice_pins_total", "counter",
     "Times a server connection was pinned to its client (advisory lock, temporary table, "
     "cursor WITH HOLD, LOAD...; docs/session-state.md).",
     ROW_UINT64(stats.pins)},
    {"sluice_timeouts_total", "counter",
     "Client timeouts (query_wait, idle, idle in transaction) that ended a request or a "
     "connection.",
     ROW_UINT64(timeouts)},
    {"sluice_cancels_total", "counter", "Cancel requests for clients of the pool.",
     ROW_UINT64(cancels)},
    {"sluice_ratelimit_rejections_total", "counter",
     "Requests refused by a tenant rate limit (SQLSTATE 53400).", ROW_UINT64(ratelimit_rejections)},
    {"sluice_pool_size", "gauge", "The pool's cap on server connections (pool_size).",
     ROW_INT(pool_size)},
    {"sluice_pool_min_size", "gauge", "Idle server connections kept open (min_pool_size).",
     ROW_INT(min_pool_size)},
};

/* Label value escaping of the text format: backslash, quote and newline. */
static void add_label_value(char *buf, size_t len, size_t *pos, const char *v)
{
	for (; *v != '\0' && *pos + 3 < len; v++) {
		if (*v == '\\' || *v == '"') {
			buf[(*pos)++] = '\\';
			buf[(*pos)++] = *v;
		} else if (*v == '\n') {
			buf[(*pos)++] = '\\';
			buf[(*pos)++] = 'n';
		} else {
			buf[(*pos)++] = *v;
		}
	}
	buf[*pos] = '\0';
}

/*
 * Bytes of a database, user or tenant name in a label.  A client picks its
 * database and user names (through "*"), and one label that is not valid
 * UTF-8, or cut in the middle, fails the whole scrape: names are made valid
 * UTF-8 and cut by characters to this (Postgres' own are at most 63 bytes),
 * so three of them, escaped (at most twice as long), fit a 1 kB label set.
 */
#define LABEL_NAME_MAX 128

/* Appends `,name="value"` (no comma at the start of buf), cleaned as above. */
static void add_name_label(char *buf, size_t len, size_t *pos, const char *name, const char *value)
{
	char clean[LABEL_NAME_MAX + 1];
	int n;

	queries_utf8_clean(value != NULL ? value : "", clean, sizeof(clean));
	n = snprintf(buf + *pos, len - *pos, "%s%s=\"", *pos > 0 ? "," : "", name);
	if (n < 0 || (size_t)n >= len - *pos)
		return;
	*pos += (size_t)n;
	add_label_value(buf, len, pos, clean);
	if (*pos + 2 <= len) {
		buf[(*pos)++] = '"';
		buf[*pos] = '\0';
	}
}

/* database="..",user="..",tenant=".." for a row. */
static void pool_labels(const struct latency_row *r, char *buf, size_t len)
{
	size_t pos = 0;

	buf[0] = '\0';
	add_name_label(buf, len, &pos, "database", r->database);
	add_name_label(buf, len, &pos, "user", r->user);
	add_name_label(buf, len, &pos, "tenant", r->tenant);
}

/* Microseconds as exact decimal seconds. */
static void add_seconds(struct evbuffer *out, uint64_t us)
{
	evbuffer_add_printf(out, "%llu.%06llu", (unsigned long long)(us / 1000000),
	                    (unsigned long long)(us % 1000000));
}

static void add_header(struct evbuffer *out, const char *name, const char *type, const char *help)
{
	evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void add_histogram(struct evbuffer *out, const char *name, const char *labels,
                          const struct histogram *h)
{
	uint64_t cum[NBOUNDS];

	histogram_cumulative(h, le_us, NBOUNDS, cum);
	for (size_t k = 0; k < NBOUNDS; k++)
		evbuffer_add_printf(out, "%s_bucket{%s,le=\"%s\"} %llu\n", name, labels, le_text[k],
		                    (unsigned long long)cum[k]);
	evbuffer_add_printf(out, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels,
	                    (unsigned long long)h->count);
	evbuffer_add_printf(out, "%s_sum{%s} ", name, labels);
	add_seconds(out, h->sum);
	evbuffer_add_printf(out, "\n%s_count{%s} %llu\n", name, labels,
	                    (unsigned long long)h->count);
}

static void add_histograms(struct evbuffer *out, const struct latency_report *rep,
                           char (*labels)[1024])
{
	for (size_t f = 0; f < sizeof(histogram_families) / sizeof(histogram_families[0]); f++) {
		const struct histogram_family *hf = &histogram_families[f];

		add_header(out, hf->name, "histogram", hf->help);
		for (size_t i = 0; i < rep->nrows; i++)
			add_histogram(out, hf->name, labels[i], &rep->rows[i].h[hf->kind]);
	}
}

/*
 * Percentiles straight from the histograms.  A gauge with a `percentile`
 * label, not a summary: promtool reserves `quantile` for summaries, and these
 * cover everything since start rather than a sliding window.
 */
static void add_percentiles(struct evbuffer *out, const struct latency_report *rep,
                            char (*labels)[1024])
{
	static const double qs[] = {0.5, 0.9, 0.95, 0.99, 0.999};
	static const char *const names[] = {"50", "90", "95", "99", "99.9"};

	add_header(out, "sluice_latency_percentile_seconds", "gauge",
	           "Percentiles of the latency histograms since start (nearest rank, within 1.6%); "
	           "for a time window use histogram_quantile on the _bucket series.");
	for (size_t i = 0; i < rep->nrows; i++) {
		for (int k = 0; k < LATENCY_KINDS; k++) {
			const struct histogram *h = &rep->rows[i].h[k];

			if (h->count == 0)
				continue;
			for (int q = 0; q < 5; q++) {
				evbuffer_add_printf(
				    out,
				    "sluice_latency_percentile_seconds{%s,kind=\"%s\","
				    "percentile=\"%s\"} ",
				    labels[i], latency_kind_name(k), names[q]);
				add_seconds(out, histogram_percentile(h, qs[q]));
				evbuffer_add(out, "\n", 1);
			}
		}
	}
}

static void add_row_families(struct evbuffer *out, const struct latency_report *rep,
                             char (*labels)[1024])
{
	for (size_t f = 0; f < sizeof(row_families) / sizeof(row_families[0]); f++) {
		const struct row_family *rf = &row_families[f];

		add_header(out, rf->name, rf->type, rf->help);
		for (size_t i = 0; i < rep->nrows; i++) {
			const char *field = (const char *)&rep->rows[i] + rf->offset;
			unsigned long long v;

			if (rf->is_int)
				v = (unsigned long long)*(const int *)(const void *)field;
			else
				v = (unsigned long long)*(const uint64_t *)(const void *)field;
			evbuffer_add_printf(out, "%s{%s} %llu\n", rf->name, labels[i], v);
		}
	}
}

static void add_errors(struct evbuffer *out, const struct latency_report *rep, char (*labels)[1024])
{
	add_header(
	    out, "sluice_errors_total", "counter",
	    "ErrorResponses relayed from servers, by SQLSTATE class (first two characters).");
	for (size_t i = 0; i < rep->nrows; i++) {
		const struct latency_row *r = &rep->rows[i];

		for (size_t k = 0; k < LATENCY_REPORT_CLASSES && r->errors[k].cls[0] != '\0'; k++)
			evbuffer_add_printf(out, "sluice_errors_total{%s,class=\"%s\"} %llu\n",
			                    labels[i], r->errors[k].cls,
			                    (unsigned long long)r->errors[k].count);
		if (r->errors_other > 0)
			evbuffer_add_printf(out, "sluice_errors_total{%s,class=\"other\"} %llu\n",
			                    labels[i], (unsigned long long)r->errors_other);
	}
}

/* SHOW POOLS' maxwait: how long the oldest queued client has waited, now. */
static void add_maxwait(struct evbuffer *out, const struct latency_report *rep,
                        char (*labels)[1024])
{
	add_header(out, "sluice_pool_maxwait_seconds", "gauge",
	           "How long the oldest client queued for a server has waited; 0 = none waits.");
	for (size_t i = 0; i < rep->nrows; i++) {
		evbuffer_add_printf(out, "sluice_pool_maxwait_seconds{%s} ", labels[i]);
		add_seconds(out,
		            (uint64_t)(rep->rows[i].maxwait_us > 0 ? rep->rows[i].maxwait_us : 0));
		evbuffer_add(out, "\n", 1);
	}
}

/* Per database, from its pools (rows are sorted by database): PAUSE, DISABLE, the cap. */
static void add_databases(struct evbuffer *out, const struct latency_report *rep)
{
	static const char *const names[] = {"sluice_database_paused", "sluice_database_disabled",
	                                    "sluice_database_max_connections"};
	static const char *const helps[] = {
	    "1 while PAUSE or SUSPEND holds the database's pools.",
	    "1 while DISABLE refuses new logins to the database.",
	    "max_db_connections of the database over all its pools; 0 = no cap."};

	for (int f = 0; f < 3; f++) {
		add_header(out, names[f], "gauge", helps[f]);
		for (size_t i = 0; i < rep->nrows; i++) {
			const struct latency_row *r = &rep->rows[i];
			char label[512];
			size_t pos = 0;
			int v = f == 0 ? r->paused : f == 1 ? r->disabled : r->max_db_connections;

			if (i > 0 &&
			    strcmp(r->database ? r->database : "",
			           rep->rows[i - 1].database ? rep->rows[i - 1].database : "") == 0)
				continue;
			/* Another pool of the same database may say paused: the rows after this
			 * one. */
			for (size_t k = i + 1;
			     f < 2 && k < rep->nrows &&
			     strcmp(rep->rows[k].database ? rep->rows[k].database : "",
			            r->database ? r->database : "") == 0;
			     k++)
				v = v || (f == 0 ? rep->rows[k].paused : rep->rows[k].disabled);
			add_name_label(label, sizeof(label), &pos, "database", r->database);
			evbuffer_add_printf(out, "%s{%s} %d\n", names[f], label, v);
		}
	}
}

/* Servers moving between workers, per worker (SHOW WORKERS, docs/architecture.md). */
static void add_worker_moves(struct evbuffer *out, const struct latency_report *rep)
{
	static const struct {
		const char *name, *help;
		size_t offset;
	} families[] = {
	    {"sluice_worker_server_asks_total",
	     "Times a pool of the worker, with clients waiting and no server to wait for, asked "
	     "the other workers for one.",
	     offsetof(struct worker_moves, asks)},
	    {"sluice_worker_server_debts_total",
	     "Times a pool of the worker promised its next free server to another worker.",
	     offsetof(struct worker_moves, debts)},
	    {"sluice_worker_servers_sent_total",
	     "Idle servers the worker handed to another worker (no new login).",
	     offsetof(struct worker_moves, sent)},
	    {"sluice_worker_servers_received_total",
	     "Servers handed to the worker by another worker.",
	     offsetof(struct worker_moves, received)},
	    {"sluice_worker_servers_closed_for_others_total",
	     "Servers the worker closed because one that could not move was wanted elsewhere.",
	     offsetof(struct worker_moves, closed_for)},
	    {"sluice_worker_units_received_total",
	     "Pool units of servers closed for the worker, received to connect with.",
	     offsetof(struct worker_moves, units_received)},
	};

	if (rep->moves == NULL)
		return;
	for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
		add_header(out, families[f].name, "counter", families[f].help);
		for (int w = 0; w < rep->nworkers; w++) {
			const uint64_t *v =
			    (const uint64_t *)((const char *)&rep->moves[w] + families[f].offset);

			evbuffer_add_printf(out, "%s{worker=\"%d\"} %llu\n", families[f].name, w,
			                    (unsigned long long)*v);
		}
	}
}

/* The process_* series of Prometheus' client libraries, so stock panels work. */
static void add_process(struct metrics_http *m, struct evbuffer *out)
{
	struct procstat ps;

	add_header(out, "sluice_max_client_conn", "gauge",
	           "max_client_conn: client connections this process accepts.");
	evbuffer_add_printf(out, "sluice_max_client_conn %d\n", m->rt->snap->cfg->max_client_conn);
	if (procstat_read(&ps) < 0)
		return;
	add_header(out, "process_cpu_seconds_total", "counter", "User and system CPU time spent.");
	evbuffer_add_printf(out, "process_cpu_seconds_total %.2f\n", ps.cpu_seconds);
	add_header(out, "process_resident_memory_bytes", "gauge", "Resident memory size.");
	evbuffer_add_printf(out, "process_resident_memory_bytes %lld\n",
	                    (long long)ps.resident_bytes);
	add_header(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size.");
	evbuffer_add_printf(out, "process_virtual_memory_bytes %lld\n",
	                    (long long)ps.virtual_bytes);
	add_header(out, "process_open_fds", "gauge", "Open file descriptors.");
	evbuffer_add_printf(out, "process_open_fds %lld\n", (long long)ps.open_fds);
	if (ps.max_fds >= 0) {
		add_header(out, "process_max_fds", "gauge", "Most file descriptors it may open.");
		evbuffer_add_printf(out, "process_max_fds %lld\n", (long long)ps.max_fds);
	}
	add_header(out, "process_start_time_seconds", "gauge",
	           "Start time of the process since the Unix epoch.");
	evbuffer_add_printf(out, "process_start_time_seconds %.2f\n", ps.start_time_seconds);
}

/* ---- query insights: histograms per statement type, and the top fingerprints only ---- */

static void add_query_types(struct evbuffer *out, const struct query_report *q)
{
	char labels[QUERY_TYPES][64];

	for (int t = 0; t < QUERY_TYPES; t++)
		snprintf(labels[t], sizeof(labels[t]), "query_type=\"%s\"", query_type_name(t));
	add_header(out, "sluice_statement_duration_seconds", "histogram",
	           "Statements by type (query_stats): a Query until its ReadyForQuery, an Execute "
	           "until it completed.");
	for (int t = 0; t < QUERY_TYPES; t++)
		add_histogram(out, "sluice_statement_duration_seconds", labels[t], &q->types[t].h);
	add_header(out, "sluice_statement_errors_total", "counter",
	           "Statements answered with an ErrorResponse, by type.");
	for (int t = 0; t < QUERY_TYPES; t++)
		evbuffer_add_printf(out, "sluice_statement_errors_total{%s} %llu\n", labels[t],
		                    (unsigned long long)q->types[t].errors);
	add_header(out, "sluice_statement_rows_total", "counter",
	           "Rows reported by CommandComplete tags, by statement type.");
	for (int t = 0; t < QUERY_TYPES; t++)
		evbuffer_add_printf(out, "sluice_statement_rows_total{%s} %llu\n", labels[t],
		                    (unsigned long long)q->types[t].rows);
}

/* fingerprint, database, user, tenant and query_type of a top row. */
static void top_labels(const struct query_row *r, char *buf, size_t len)
{
	size_t pos =
	    (size_t)snprintf(buf, len, "fingerprint=\"%016llx\"", (unsigned long long)r->fp);

	add_name_label(buf, len, &pos, "database", r->database);
	add_name_label(buf, len, &pos, "user", r->user);
	add_name_label(buf, len, &pos, "tenant", r->tenant);
	if (pos < len)
		snprintf(buf + pos, len - pos, ",query_type=\"%s\"", query_type_name(r->type));
}

static void add_top_queries(struct evbuffer *out, const struct query_report *q)
{
	const struct query_row *top[QUERIES_METRICS_TOP];
	char labels[QUERIES_METRICS_TOP][1024];
	size_t n = 0;

	for (size_t i = 0; i < q->nrows && n < QUERIES_METRICS_TOP; i++)
		if (q->rows[i].fp != 0)
			top[n++] = &q->rows[i];
	for (size_t i = 0; i < n; i++)
		top_labels(top[i], labels[i], sizeof(labels[i]));
	add_header(out, "sluice_top_query_info", "gauge",
	           "Always 1: the normalised text of each of the top statement fingerprints by "
	           "total time (at most 20 series).");
	for (size_t i = 0; i < n; i++) {
		char clean[QSTATS_TEXT_MAX + 1], text[2 * QSTATS_TEXT_MAX + 1];
		size_t pos = 0;

		queries_utf8_clean(top[i]->text, clean, sizeof(clean));
		add_label_value(text, sizeof(text), &pos, clean);
		evbuffer_add_printf(out, "sluice_top_query_info{%s,query=\"%s\"} 1\n", labels[i],
		                    text);
	}
	add_header(out, "sluice_top_query_calls_total", "counter",
	           "Statements finished, for the top fingerprints by total time.");
	for (size_t i = 0; i < n; i++)
		evbuffer_add_printf(out, "sluice_top_query_calls_total{%s} %llu\n", labels[i],
		                    (unsigned long long)top[i]->fig.calls);
	add_header(out, "sluice_top_query_errors_total", "counter",
	           "Statements that failed, for the top fingerprints by total time.");
	for (size_t i = 0; i < n; i++)
		evbuffer_add_printf(out, "sluice_top_query_errors_total{%s} %llu\n", labels[i],
		                    (unsigned long long)top[i]->fig.errors);
	add_header(out, "sluice_top_query_rows_total", "counter",
	           "Rows from CommandComplete tags, for the top fingerprints by total time.");
	for (size_t i = 0; i < n; i++)
		evbuffer_add_printf(out, "sluice_top_query_rows_total{%s} %llu\n", labels[i],
		                    (unsigned long long)top[i]->fig.rows);
	add_header(out, "sluice_top_query_seconds_total", "counter",
	           "Summed statement time, for the top fingerprints by total time.");
	for (size_t i = 0; i < n; i++) {
		evbuffer_add_printf(out, "sluice_top_query_seconds_total{%s} ", labels[i]);
		add_seconds(out, top[i]->fig.total_us);
		evbuffer_add(out, "\n", 1);
	}
	add_header(out, "sluice_top_query_p99_seconds", "gauge",
	           "99th percentile of statement time since start or RESET QUERIES (within 12%), "
	           "for the top fingerprints by total time.");
	for (size_t i = 0; i < n; i++) {
		evbuffer_add_printf(out, "sluice_top_query_p99_seconds{%s} ", labels[i]);
		add_seconds(out, qstats_percentile(top[i]->fig.hist, top[i]->fig.calls, 0.99));
		evbuffer_add(out, "\n", 1);
	}
}

/* database="..",host="..",port="..",role=".." for a host row. */
static void host_labels(char *buf, size_t len, const char *db, const struct db_host *h,
                        enum host_role role)
{
	const char *names[] = {"database", "host"};
	const char *values[] = {db, h->host};
	size_t pos = 0;

	buf[0] = '\0';
	for (int i = 0; i < 2; i++) {
		pos += (size_t)snprintf(buf + pos, len - pos, "%s=\"", names[i]);
		if (pos >= len)
			return;
		add_label_value(buf, len, &pos, values[i]);
		pos += (size_t)snprintf(buf + pos, len - pos, "\",");
		if (pos >= len)
			return;
	}
	snprintf(buf + pos, len - pos, "port=\"%d\",role=\"%s\"", h->port, host_role_name(role));
}

/*
 * Each database's hosts, from their shared breakers (docs/topology.md):
 * up, breaker state, transitions, servers.  A host no pool has used yet has
 * no breaker and shows as closed with no servers.
 */
static void add_hosts(struct evbuffer *out, const struct config *cfg, struct breaker_registry *reg)
{
	static const char *const families[][3] = {
	    {"sluice_host_up", "gauge",
	     "1 while the host's circuit breaker lets connections go (closed), else 0."},
	    {"sluice_host_breaker_state", "gauge",
	     "The host's breaker: 0 closed, 1 open, 2 half-open."},
	    {"sluice_host_breaker_transitions_total", "counter",
	     "Changes of the host's breaker state (the same breaker under each database)."},
	    {"sluice_host_servers", "gauge",
	     "Server connections to the host, every database (the same under each)."},
	};
	int64_t now = loop_now_us();

	for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
		add_header(out, families[f][0], families[f][1], families[f][2]);
		for (size_t i = 0; i < cfg->ndbs; i++) {
			for (int k = 0; k < cfg->dbs[i].nhosts; k++) {
				const struct db_host *h = &cfg->dbs[i].hosts[k];
				struct breaker_view v = {0};
				char labels[1024];
				long long value[] = {0, 0, 0, 0};

				breaker_peek(reg, h->host, h->port, now, &v);
				value[0] = v.state == BREAKER_CLOSED;
				value[1] = v.state;
				value[2] = (long long)v.transitions;
				value[3] = v.servers;
				host_labels(labels, sizeof(labels), cfg->dbs[i].name, h, v.role);
				evbuffer_add_printf(out, "%s{%s} %lld\n", families[f][0], labels,
				                    value[f]);
			}
		}
	}
}

/* limiter = redis: the link to the fleet's Redis (limit/redis_link.h); nothing otherwise. */
static void add_redis(struct evbuffer *out, struct limiter *l)
{
	struct redis_fleet *f = limiter_fleet(l);
	struct redis_stats *st = &l->stats;
	uint64_t cumulative = 0, count;

	if (f == NULL)
		return;
	add_header(out, "sluice_redis_up", "gauge",
	           "1 while every worker's connection to the limiter's Redis is up, else 0.");
	evbuffer_add_printf(out, "sluice_redis_up %d\n",
	                    atomic_load(&f->links_up) >= f->nlinks ? 1 : 0);
	add_header(out, "sluice_redis_instances", "gauge",
	           "sluice instances sharing the tenant limits, as Redis last said.");
	evbuffer_add_printf(out, "sluice_redis_instances %d\n", atomic_load(&f->live));
	add_header(out, "sluice_redis_errors_total", "counter",
	           "Failed connects, timeouts, lost connections and error answers from Redis.");
	evbuffer_add_printf(out, "sluice_redis_errors_total %llu\n",
	                    (unsigned long long)atomic_load(&st->errors));
	add_header(out, "sluice_redis_roundtrip_seconds", "histogram",
	           "Round trips to Redis: bucket leases, heartbeats, connects.");
	for (int i = 0; i < REDIS_RTT_BUCKETS; i++) {
		cumulative += atomic_load(&st->rtt_buckets[i]);
		evbuffer_add_printf(out, "sluice_redis_roundtrip_seconds_bucket{le=\"");
		add_seconds(out, (uint64_t)redis_rtt_le_us[i]);
		evbuffer_add_printf(out, "\"} %llu\n", (unsigned long long)cumulative);
	}
	/* Read after the buckets, which a worker may have moved in between: never below them. */
	count = atomic_load(&st->rtt_count);
	if (count < cumulative)
		count = cumulative;
	evbuffer_add_printf(out, "sluice_redis_roundtrip_seconds_bucket{le=\"+Inf\"} %llu\n",
	                    (unsigned long long)count);
	evbuffer_add_printf(out, "sluice_redis_roundtrip_seconds_sum ");
	add_seconds(out, atomic_load(&st->rtt_sum_us));
	evbuffer_add_printf(out, "\nsluice_redis_roundtrip_seconds_count %llu\n",
	                    (unsigned long long)count);
	redis_fleet_unref(f);
}

static void render_metrics(struct metrics_http *m, const struct latency_report *rep,
                           const struct query_report *q, struct evbuffer *out)
{
	char(*labels)[1024] = calloc(rep->nrows ? rep->nrows : 1, sizeof(*labels));

	if (labels == NULL)
		return;
	for (size_t i = 0; i < rep->nrows; i++)
		pool_labels(&rep->rows[i], labels[i], sizeof(labels[i]));
	add_header(out, "sluice_info", "gauge", "Always 1; the version is a label.");
	evbuffer_add_printf(out, "sluice_info{version=\"%s\"} 1\n", SLUICE_VERSION);
	add_header(out, "sluice_draining", "gauge", "1 once a SIGTERM drain has started.");
	evbuffer_add_printf(out, "sluice_draining %d\n", m->rt->draining ? 1 : 0);
	add_header(out, "sluice_clients", "gauge", "Client connections to this process.");
	evbuffer_add_printf(out, "sluice_clients %d\n", atomic_load(&m->rt->shared.nclients));
	add_histograms(out, rep, labels);
	/* Opt-in: since start they hide every recent change; the buckets serve windows. */
	if (m->rt->snap->cfg->metrics_percentiles)
		add_percentiles(out, rep, labels);
	add_row_families(out, rep, labels);
	add_maxwait(out, rep, labels);
	add_databases(out, rep);
	add_worker_moves(out, rep);
	add_errors(out, rep, labels);
	add_process(m, out);
	add_hosts(out, m->rt->snap->cfg, &m->rt->shared.breakers);
	add_redis(out, &m->rt->shared.limiter);
	if (q != NULL) {
		add_query_types(out, q);
		add_top_queries(out, q);
	}
	free(labels);
}

static void metrics_done(struct latency_report *rep, struct query_report *q, void *arg)
{
	struct waiting *wt = arg;
	struct evbuffer *out = evbuffer_new();

	list_del(&wt->node);
	if (out == NULL || rep == NULL) {
		reply_text(wt->req, 503, "Service Unavailable", "out of memory");
	} else {
		render_metrics(wt->m, rep, q, out);
		evhttp_add_header(evhttp_request_get_output_headers(wt->req), "Content-Type",
		                  PROMETHEUS_TYPE);
		evhttp_send_reply(wt->req, 200, "OK", out);
	}
	if (out != NULL)
		evbuffer_free(out);
	latency_report_free(rep);
	query_report_free(q);
	free(wt);
}

static void serve_metrics(struct metrics_http *m, struct evhttp_request *req)
{
	struct waiting *wt = waiting_new(m, req, 0);

	if (wt == NULL) {
		reply_text(req, 503, "Service Unavailable", "out of memory");
		return;
	}
	/* No drop: metrics_http_free answers and frees every request still waiting. */
	if (queries_gather_metrics(&m->rt->shared, &m->rt->inbox, metrics_done, NULL, wt) < 0)
		waiting_reply(wt, 503, "Service Unavailable", "out of memory");
}

/* ---- /readyz ---- */

static void answer_waiters(struct metrics_http *m, bool ready)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &m->waiters)
	{
		struct waiting *wt = list_entry(pos, struct waiting, node);

		if (ready && !m->rt->draining)
			waiting_reply(wt, 200, "OK", "ready");
		else
			waiting_reply(wt, 503, "Service Unavailable",
			              m->rt->draining ? "draining" : "no database reachable");
	}
}

static void probe_finish(struct probe *p, bool ok)
{
	struct metrics_http *m = p->m;

	/* libevent may report a failed connect from inside the connect call. */
	if (p->starting) {
		p->failed = true;
		return;
	}
	list_del(&p->node);
	bufferevent_free(p->bev);
	free(p);
	if (ok) {
		m->probe_ok_us = clock_monotonic_us();
		answer_waiters(m, true);
	} else if (list_empty(&m->probes) && !m->starting_probes) {
		answer_waiters(m, false);
	}
}

static void probe_read_cb(struct bufferevent *bev, void *arg)
{
	char answer = 0;

	bufferevent_read(bev, &answer, 1);
	/* 'S' or 'N' to an SSLRequest: a Postgres postmaster is there. */
	probe_finish(arg, answer == 'S' || answer == 'N');
}

static void probe_event_cb(struct bufferevent *bev, short what, void *arg)
{
	uint32_t request[2] = {htonl(8), htonl(PROBE_SSL_REQUEST)};

	if (what & BEV_EVENT_CONNECTED) {
		bufferevent_write(bev, request, sizeof(request));
		return;
	}
	probe_finish(arg, false);
}

static int probe_connect(struct probe *p, const struct db_host *h)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	if (h->host[0] != '/')
		return bufferevent_socket_connect_hostname(p->bev, p->m->dns, AF_UNSPEC, h->host,
		                                           h->port);
	if ((size_t)snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/.s.PGSQL.%d", h->host,
	                     h->port) >= sizeof(sun.sun_path))
		return -1;
	return bufferevent_socket_connect(p->bev, (struct sockaddr *)&sun, sizeof(sun));
}

static void probe_start(struct metrics_http *m, const struct db_host *h)
{
	struct timeval tv = {.tv_sec = PROBE_TIMEOUT_S};
	struct probe *p = calloc(1, sizeof(*p));
	int rc;

	if (p == NULL)
		return;
	p->m = m;
	p->bev = bufferevent_socket_new(m->rt->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (p->bev == NULL) {
		free(p);
		return;
	}
	list_add_tail(&m->probes, &p->node);
	bufferevent_setcb(p->bev, probe_read_cb, NULL, probe_event_cb, p);
	bufferevent_set_timeouts(p->bev, &tv, &tv);
	bufferevent_enable(p->bev, EV_READ | EV_WRITE);
	p->starting = true;
	rc = probe_connect(p, h);
	p->starting = false;
	if (rc < 0 || p->failed)
		probe_finish(p, false);
}

static void probe_databases(struct metrics_http *m)
{
	const struct config *cfg = m->rt->snap->cfg;
	size_t started = 0;

	m->starting_probes = true;
	/* Every host of a list: any one that answers can serve some of the database. */
	for (size_t i = 0; i < cfg->ndbs && started < PROBE_MAX; i++) {
		for (int k = 0; k < cfg->dbs[i].nhosts && started < PROBE_MAX; k++) {
			probe_start(m, &cfg->dbs[i].hosts[k]);
			started++;
		}
	}
	m->starting_probes = false;
	if (list_empty(&m->probes))
		answer_waiters(m, false);
}

static void count_live(struct worker *w, void *arg)
{
	struct waiting *wt = arg;
	struct list_node *pos, *s;
	int live = 0;

	for (pos = w->pools.next; pos != &w->pools; pos = pos->next) {
		struct pool *p = list_entry(pos, struct pool, node);

		live += (int)list_count(&p->idle) + (int)list_count(&p->active);
		for (s = p->pending.next; s != &p->pending; s = s->next) {
			enum server_state st = list_entry(s, struct server, node)->state;

			live += st == SERVER_RESETTING || st == SERVER_CANCELING;
		}
	}
	wt->live[w->id] = live;
}

static void ready_done(void *arg)
{
	struct waiting *wt = arg;
	struct metrics_http *m = wt->m;
	int live = 0;

	for (int i = 0; i < wt->nworkers; i++)
		live += wt->live[i];
	if (m->rt->draining) {
		waiting_reply(wt, 503, "Service Unavailable", "draining");
		return;
	}
	if (live > 0 ||
	    (m->probe_ok_us != 0 && clock_monotonic_us() - m->probe_ok_us < PROBE_FRESH_US)) {
		waiting_reply(wt, 200, "OK", "ready");
		return;
	}
	/* No logged-in server to show for it: ask the databases directly. */
	list_del(&wt->node);
	list_add_tail(&m->waiters, &wt->node);
	if (list_empty(&m->probes))
		probe_databases(m);
}

static void serve_ready(struct metrics_http *m, struct evhttp_request *req)
{
	struct waiting *wt;

	/* Unready first and at once: orchestrators stop routing before listeners close. */
	if (m->rt->draining) {
		reply_text(req, 503, "Service Unavailable", "draining");
		return;
	}
	if (m->rt->nlisteners == 0) {
		reply_text(req, 503, "Service Unavailable", "not listening");
		return;
	}
	wt = waiting_new(m, req, m->rt->shared.nworkers);
	if (wt == NULL) {
		reply_text(req, 503, "Service Unavailable", "out of memory");
		return;
	}
	if (gather_start(&m->rt->shared, &m->rt->inbox, count_live, ready_done, NULL, wt) < 0)
		waiting_reply(wt, 503, "Service Unavailable", "out of memory");
}

/* ---- server ---- */

static void request_cb(struct evhttp_request *req, void *arg)
{
	struct metrics_http *m = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;

	if (path == NULL)
		reply_text(req, 400, "Bad Request", "bad request");
	else if (strcmp(path, "/metrics") == 0)
		serve_metrics(m, req);
	else if (strcmp(path, "/healthz") == 0)
		reply_text(req, 200, "OK", "ok");
	else if (strcmp(path, "/readyz") == 0)
		serve_ready(m, req);
	else
		reply_text(req, 404, "Not Found", "not found: try /metrics, /healthz or /readyz");
}

/* "host:port", "[v6]:port", ":port", "*:port"; an empty or "*" host means every address. */
static int parse_listen(const char *spec, char *host, size_t hostlen, int *port)
{
	const char *sep, *start = spec;
	size_t n;
	char *end;
	long v;

	if (spec[0] == '[') {
		sep = strchr(spec, ']');
		if (sep == NULL || sep[1] != ':')
			return -1;
		start = spec + 1;
		n = (size_t)(sep - start);
		sep++;
	} else {
		sep = strrchr(spec, ':');
		if (sep == NULL)
			return -1;
		n = (size_t)(sep - spec);
	}
	v = strtol(sep + 1, &end, 10);
	if (sep[1] == '\0' || *end != '\0' || v < 0 || v > 65535 || n >= hostlen)
		return -1;
	memcpy(host, start, n);
	host[n] = '\0';
	if (n == 0 || strcmp(host, "*") == 0)
		snprintf(host, hostlen, "0.0.0.0");
	*port = (int)v;
	return 0;
}

static void log_bound(struct runtime *rt, struct evhttp_bound_socket *bound)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char addr[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&ss, &len) == 0) {
		if (ss.ss_family == AF_INET6) {
			const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&ss;

			inet_ntop(AF_INET6, &in6->sin6_addr, addr, sizeof(addr));
			port = ntohs(in6->sin6_port);
		} else if (ss.ss_family == AF_INET) {
			const struct sockaddr_in *in = (const struct sockaddr_in *)&ss;

			inet_ntop(AF_INET, &in->sin_addr, addr, sizeof(addr));
			port = ntohs(in->sin_port);
		}
	}
	log_info(&rt->log, "HTTP endpoint listening on %s%s%s:%d (/metrics, /healthz, /readyz)",
	         ss.ss_family == AF_INET6 ? "[" : "", addr, ss.ss_family == AF_INET6 ? "]" : "",
	         port);
}

static struct metrics_http *metrics_http_new(struct runtime *rt)
{
	struct metrics_http *m = calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	m->rt = rt;
	list_init(&m->pending);
	list_init(&m->waiters);
	list_init(&m->probes);
	m->http = evhttp_new(rt->base);
	m->dns = evdns_base_new(rt->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
	                                      EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (m->dns == NULL)
		m->dns = evdns_base_new(rt->base, 0);
	if (m->dns != NULL)
		evdns_base_load_hosts(m->dns, NULL);
	if (m->http == NULL || m->dns == NULL) {
		metrics_http_free(m);
		return NULL;
	}
	evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
	evhttp_set_timeout(m->http, HTTP_TIMEOUT_S);
	evhttp_set_max_headers_size(m->http, 16384);
	evhttp_set_max_body_size(m->http, 0);
	evhttp_set_gencb(m->http, request_cb, m);
	return m;
}

int metrics_http_start(struct runtime *rt)
{
	const char *spec = rt->snap->cfg->metrics_listen;
	struct evhttp_bound_socket *bound;
	struct metrics_http *m;
	char host[256];
	int port, fd;

	rt->metrics = NULL;
	if (spec == NULL || spec[0] == '\0')
		return 0;
	if (parse_listen(spec, host, sizeof(host), &port) < 0) {
		log_error(&rt->log, "metrics_listen '%s': expected host:port", spec);
		return -1;
	}
	m = metrics_http_new(rt);
	if (m == NULL)
		return -1;
	/* Socket activation (FileDescriptorName=metrics) or a takeover passed it to us. */
	if ((fd = inherit_take_name(&rt->inherited, "metrics")) >= 0)
		bound = evhttp_accept_socket_with_handle(m->http, fd);
	else
		bound = evhttp_bind_socket_with_handle(m->http, host, (ev_uint16_t)port);
	if (bound == NULL) {
		log_error(&rt->log, "cannot open the HTTP endpoint on %s", spec);
		metrics_http_free(m);
		return -1;
	}
	log_bound(rt, bound);
	m->bound = bound;
	rt->metrics = m;
	return 0;
}

int metrics_http_fd(const struct metrics_http *m)
{
	return m != NULL && m->bound != NULL ? evhttp_bound_socket_get_fd(m->bound) : -1;
}

void metrics_http_release(struct metrics_http *m)
{
	if (m == NULL || m->bound == NULL)
		return;
	evhttp_del_accept_socket(m->http, m->bound);
	m->bound = NULL;
}

void metrics_http_free(struct metrics_http *m)
{
	struct list_node *pos, *tmp;

	if (m == NULL)
		return;
	/* Their gathers will never report back: the workers are gone. */
	list_for_each_safe(pos, tmp, &m->pending)
	{
		waiting_reply(list_entry(pos, struct waiting, node), 503, "Service Unavailable",
		              "shutting down");
	}
	list_for_each_safe(pos, tmp, &m->probes)
	{
		struct probe *p = list_entry(pos, struct probe, node);

		list_del(&p->node);
		bufferevent_free(p->bev);
		free(p);
	}
	answer_waiters(m, false);
	if (m->http != NULL)
		evhttp_free(m->http);
	if (m->dns != NULL)
		evdns_base_free(m->dns, 0);
	free(m);
}
