/*
 * Listeners; see listener.h.  Address resolution here may block, which is
 * fine: it runs once at startup before any loop serves traffic.
 */
#include "runtime/listener.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "runtime/runtime.h"
#include "pool/worker.h"

struct listener {
	struct runtime *rt;                                     /* owner */
	struct evconnlistener *lev;                             /* libevent listener */
	bool is_unix;                                           /* Unix socket (path below) */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* socket file to unlink */
};

static void accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *addr,
                      int addrlen, void *arg)
{
	struct listener *l = arg;
	struct runtime *rt = l->rt;
	struct accepted_socket *sock = calloc(1, sizeof(*sock));

	if (sock == NULL) {
		close(fd);
		return;
	}
	sock->fd = fd;
	sock->is_unix = l->is_unix;
	if (addrlen > (int)sizeof(sock->addr))
		addrlen = (int)sizeof(sock->addr);
	memcpy(&sock->addr, addr, (size_t)addrlen);
	sock->addrlen = (socklen_t)addrlen;
	if (!l->is_unix) {
		const struct config *cfg = rt->snap->cfg;
		struct timeval now;

		event_base_gettimeofday_cached(rt->base, &now);
		sock->over_ip_rate = !ip_limiter_admit(
		    &rt->ip_logins, addr, cfg->connect_rate_per_ip, cfg->connect_burst_per_ip,
		    (int64_t)now.tv_sec * 1000000 + now.tv_usec);
	}
	worker_post_accept(rt->shared.workers[rt->next_worker], sock);
	rt->next_worker = (rt->next_worker + 1) % rt->shared.nworkers;
}

static void accept_error_cb(struct evconnlistener *lev, void *arg)
{
	struct listener *l = arg;

	/* EMFILE and friends: log; libevent keeps the listener armed. */
	log_warn(&l->rt->log, "accept failed: %s", strerror(errno));
}

static int add_listener(struct runtime *rt, const struct sockaddr *sa, int len, bool is_unix,
                        const char *path)
{
	struct listener *l = calloc(1, sizeof(*l));
	struct listener **grown;

	if (l == NULL)
		return -1;
	l->rt = rt;
	l->is_unix = is_unix;
	if (path != NULL)
		snprintf(l->path, sizeof(l->path), "%s", path);
	l->lev = evconnlistener_new_bind(rt->base, accept_cb, l,
	                                 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
	                                     (is_unix ? 0 : LEV_OPT_REUSEABLE),
	                                 1024, sa, len);
	if (l->lev == NULL) {
		free(l);
		return -1;
	}
	evconnlistener_set_error_cb(l->lev, accept_error_cb);
	grown = realloc(rt->listeners, sizeof(*grown) * (size_t)(rt->nlisteners + 1));
	if (grown == NULL) {
		evconnlistener_free(l->lev);
		free(l);
		return -1;
	}
	rt->listeners = grown;
	rt->listeners[rt->nlisteners++] = l;
	return 0;
}

static int open_tcp(struct runtime *rt, const char *host, int port)
{
	struct addrinfo hints = {
	    .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
	struct addrinfo *res, *ai;
	char service[16];
	int opened = 0, rc;

	snprintf(service, sizeof(service), "%d", port);
	rc = getaddrinfo(strcmp(host, "*") == 0 ? NULL : host, service, &hints, &res);
	if (rc != 0) {
		log_error(&rt->log, "cannot resolve listen_addr %s: %s", host, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		if (add_listener(rt, ai->ai_addr, (int)ai->ai_addrlen, false, NULL) == 0)
			opened++;
		else
			log_warn(&rt->log, "cannot listen on %s:%d: %s", host, port,
			         strerror(errno));
	}
	freeaddrinfo(res);
	if (opened > 0)
		log_info(&rt->log, "listening on %s:%d", host, port);
	return opened > 0 ? 0 : -1;
}

static int open_unix(struct runtime *rt, const char *dir, int port, int mode)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	if ((size_t)snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/.s.PGSQL.%d", dir, port) >=
	    sizeof(sun.sun_path)) {
		log_error(&rt->log, "unix_socket_dir %s is too long", dir);
		return -1;
	}
	/* A socket file left by a crashed instance; a live one would still hold the port. */
	unlink(sun.sun_path);
	if (add_listener(rt, (struct sockaddr *)&sun, sizeof(sun), true, sun.sun_path) < 0) {
		log_error(&rt->log, "cannot listen on %s: %s", sun.sun_path, strerror(errno));
		return -1;
	}
	chmod(sun.sun_path, (mode_t)mode);
	log_info(&rt->log, "listening on %s", sun.sun_path);
	return 0;
}

int listener_open_all(struct runtime *rt)
{
	const struct config *cfg = rt->snap->cfg;
	char *addrs = strdup(cfg->listen_addr), *save = NULL;
	int failed = 0;

	if (addrs == NULL)
		return -1;
	for (char *a = strtok_r(addrs, ", ", &save); a != NULL; a = strtok_r(NULL, ", ", &save))
		if (open_tcp(rt, a, cfg->listen_port) < 0)
			failed++;
	free(addrs);
	if (cfg->unix_socket_dir[0] != '\0' &&
	    open_unix(rt, cfg->unix_socket_dir, cfg->listen_port, cfg->unix_socket_mode) < 0)
		failed++;
	if (failed > 0 || rt->nlisteners == 0) {
		log_error(&rt->log, "could not open all listeners");
		return -1;
	}
	return 0;
}

void listener_close_all(struct runtime *rt)
{
	for (int i = 0; i < rt->nlisteners; i++) {
		struct listener *l = rt->listeners[i];

		evconnlistener_free(l->lev);
		if (l->is_unix)
			unlink(l->path);
		free(l);
	}
	free(rt->listeners);
	rt->listeners = NULL;
	rt->nlisteners = 0;
}
