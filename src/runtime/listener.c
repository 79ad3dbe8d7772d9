/*
 * Listeners; see listener.h.  Address resolution here may block, which is
 * fine: it runs once at startup before any loop serves traffic.
 */
#include "runtime/listener.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "runtime/inherit.h"
#include "runtime/runtime.h"
#include "pool/worker.h"

struct listener {
	struct runtime *rt;         /* owner */
	struct evconnlistener *lev; /* libevent listener */
	bool is_unix;               /* Unix socket (path below) */
	bool owns_path;             /* we created the socket file */
	bool inherited; /* or a takeover handed it over: ours once confirmed (listener_adopt_paths)
	                 */
	dev_t dev;      /* the file we created, so a */
	ino_t ino;      /* file put there since stays */
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

/* Serve `fd`, a socket that already listens; it is closed on failure. */
static int add_listener(struct runtime *rt, int fd, bool is_unix)
{
	struct listener *l = calloc(1, sizeof(*l));
	struct listener **grown;

	if (l == NULL) {
		close(fd);
		return -1;
	}
	l->rt = rt;
	l->is_unix = is_unix;
	/* Backlog 0: the socket listens already, with listen_backlog or systemd's Backlog=. */
	l->lev = evconnlistener_new(rt->base, accept_cb, l,
	                            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
	if (l->lev == NULL) {
		close(fd);
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

/*
 * A TCP listening socket.  IPV6_V6ONLY on every IPv6 socket, as Postgres
 * does: otherwise "::" also claims the IPv4 port, and "*" (which resolves to
 * 0.0.0.0 and ::) or "0.0.0.0,::" fails with EADDRINUSE on the second bind.
 */
static int bind_tcp(const struct config *cfg, const struct addrinfo *ai)
{
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1, saved;

	if (fd < 0)
		return -1;
	/* SO_REUSEADDR: a restart must not wait for the old connections' TIME_WAIT. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    (cfg->so_reuseport &&
	     setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
	    (ai->ai_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, cfg->listen_backlog) < 0) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
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
		int fd = inherit_take_addr(&rt->inherited, ai->ai_addr, ai->ai_addrlen);

		if (fd < 0)
			fd = bind_tcp(rt->snap->cfg, ai);
		if (fd >= 0 && add_listener(rt, fd, false) == 0)
			opened++;
		else
			log_warn(&rt->log, "cannot listen on %s:%d (%s): %s", host, port,
			         ai->ai_family == AF_INET6 ? "IPv6" : "IPv4", strerror(errno));
	}
	freeaddrinfo(res);
	if (opened > 0)
		log_info(&rt->log, "listening on %s:%d", host, port);
	return opened > 0 ? 0 : -1;
}

int listener_bind_unix(const struct sockaddr_un *sun, int backlog)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int saved;

	if (fd < 0)
		return -1;
	/* A socket file left by a crashed instance; a live one would still hold the port. */
	unlink(sun->sun_path);
	if (bind(fd, (const struct sockaddr *)sun, sizeof(*sun)) < 0 || listen(fd, backlog) < 0) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

static int open_unix_path(struct runtime *rt, const char *path, int mode)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct listener *l;
	struct stat st;
	bool inherited;
	int fd;

	if ((size_t)snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path) >=
	    sizeof(sun.sun_path)) {
		log_error(&rt->log, "socket path %s is too long", path);
		return -1;
	}
	/* Taken over: the file is already there, and it is the socket we now share. */
	fd = inherit_take_addr(&rt->inherited, (struct sockaddr *)&sun, sizeof(sun));
	inherited = fd >= 0;
	if (fd < 0 && (fd = listener_bind_unix(&sun, rt->snap->cfg->listen_backlog)) >= 0)
		chmod(sun.sun_path, (mode_t)mode);
	if (fd < 0 || add_listener(rt, fd, true) < 0) {
		log_error(&rt->log, "cannot listen on %s: %s", sun.sun_path, strerror(errno));
		return -1;
	}
	l = rt->listeners[rt->nlisteners - 1];
	l->inherited = inherited;
	snprintf(l->path, sizeof(l->path), "%s", sun.sun_path);
	if (stat(sun.sun_path, &st) == 0) {
		l->owns_path = true;
		l->dev = st.st_dev;
		l->ino = st.st_ino;
	}
	return 0;
}

static int open_unix(struct runtime *rt, const char *dir, int port, int mode)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];

	if ((size_t)snprintf(path, sizeof(path), "%s/.s.PGSQL.%d", dir, port) >= sizeof(path)) {
		log_error(&rt->log, "unix_socket_dir %s is too long", dir);
		return -1;
	}
	if (open_unix_path(rt, path, mode) < 0)
		return -1;
	log_info(&rt->log, "listening on %s", path);
	return 0;
}

/*
 * Socket activation: the .socket unit decides where to listen, so serve
 * every socket systemd passed (but the HTTP endpoint's) and bind nothing
 * from listen_addr or unix_socket_dir.
 */
static int open_activated(struct runtime *rt)
{
	struct inherited *in = &rt->inherited;

	for (int i = 0; i < in->n; i++) {
		struct sockaddr_storage ss = {0};
		socklen_t len = sizeof(ss);
		int fd = in->socks[i].fd;

		if (fd < 0 || strcmp(in->socks[i].name, "metrics") == 0)
			continue;
		in->socks[i].fd = -1;
		getsockname(fd, (struct sockaddr *)&ss, &len);
		if (add_listener(rt, fd, ss.ss_family == AF_UNIX) < 0)
			return -1;
		log_info(&rt->log, "listening on socket %d (%s) from systemd", fd,
		         in->socks[i].name);
	}
	return 0;
}

int listener_open_all(struct runtime *rt)
{
	const struct config *cfg = rt->snap->cfg;
	char *addrs = strdup(cfg->listen_addr), *save = NULL;
	int failed = 0;

	if (addrs == NULL)
		return -1;
	if (rt->inherited.from_systemd) {
		free(addrs);
		log_info(&rt->log,
		         "socket activation: listen_addr and unix_socket_dir are not used");
		return open_activated(rt) < 0 || rt->nlisteners == 0 ? -1 : 0;
	}
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

/* Close every listener; with `unlink_files`, remove the socket files we created. */
static void close_all(struct runtime *rt, bool unlink_files)
{
	for (int i = 0; i < rt->nlisteners; i++) {
		struct listener *l = rt->listeners[i];
		struct stat st;

		evconnlistener_free(l->lev);
		/* A process started since (so_reuseport restarts) may have put its own file there.
		 */
		if (unlink_files && l->owns_path && !l->inherited && stat(l->path, &st) == 0 &&
		    st.st_dev == l->dev && st.st_ino == l->ino)
			unlink(l->path);
		free(l);
	}
	free(rt->listeners);
	rt->listeners = NULL;
	rt->nlisteners = 0;
}

void listener_close_all(struct runtime *rt)
{
	close_all(rt, true);
}

void listener_adopt_paths(struct runtime *rt)
{
	for (int i = 0; i < rt->nlisteners; i++)
		rt->listeners[i]->inherited = false;
}

void listener_release_all(struct runtime *rt)
{
	close_all(rt, false);
}

int listener_fds(const struct runtime *rt, int *fds, int max)
{
	int n = 0;

	for (int i = 0; i < rt->nlisteners && n < max; i++)
		fds[n++] = evconnlistener_get_fd(rt->listeners[i]->lev);
	return n;
}
