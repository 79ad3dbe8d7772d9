/*
 * The takeover exchange; see takeover.h.  The new process's side runs at
 * startup, before its loop serves anyone, so it may block (with timeouts);
 * the old process's side is non-blocking on its control loop.
 */
#define _GNU_SOURCE /* struct ucred, SO_PEERCRED */
#include "runtime/takeover.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "runtime/inherit.h"
#include "runtime/listener.h"
#include "runtime/metrics_http.h"
#include "runtime/runtime.h"

/* How long either side waits for the other's next line. */
#define TAKEOVER_TIMEOUT_S 30

/* The new process that asked, while the exchange is under way. */
struct takeover_peer {
	struct takeover *t; /* owner */
	int fd;             /* the connection */
	struct event *ev;   /* readable, or TAKEOVER_TIMEOUT_S passed */
	pid_t pid;          /* SO_PEERCRED: named in the logs */
	bool sent;          /* our sockets went out; now waiting for "OK" */
	char line[16];      /* the line read so far */
	size_t len;
};

struct takeover {
	struct runtime *rt;         /* owner */
	struct evconnlistener *lev; /* the takeover socket */
	struct takeover_peer *peer; /* at most one exchange at a time */
	bool owns_path;             /* the file is there and ours... */
	bool inherited;             /* (not until the takeover that handed it over is confirmed) */
	dev_t dev;                  /* ...and it is this one, so a later one stays */
	ino_t ino;
	struct sockaddr_un sun; /* its path */
};

static void peer_free(struct takeover_peer *p)
{
	p->t->peer = NULL;
	event_free(p->ev);
	close(p->fd);
	free(p);
}

/* Our listeners, the HTTP endpoint's and this socket, with their names. */
static int send_sockets(struct takeover_peer *p)
{
	struct runtime *rt = p->t->rt;
	int fds[INHERIT_MAX], n = listener_fds(rt, fds, INHERIT_MAX - 2), metrics;
	char text[64 + INHERIT_MAX * 10], *at;
	char control[CMSG_SPACE(sizeof(fds))] = {0};
	struct iovec iov;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control};
	struct cmsghdr *cm;
	int named = n;

	if ((metrics = metrics_http_fd(rt->metrics)) >= 0)
		fds[n++] = metrics;
	fds[n++] = evconnlistener_get_fd(p->t->lev);
	at = text + snprintf(text, sizeof(text), "SLUICE-TAKEOVER %d %d ", (int)getpid(), n);
	for (int i = 0; i < n; i++)
		at += snprintf(at, sizeof(text) - (size_t)(at - text), "%s%s", i > 0 ? ":" : "",
		               i < named ? "pg" : (i == n - 1 ? "takeover" : "metrics"));
	at += snprintf(at, sizeof(text) - (size_t)(at - text), "\n");
	iov.iov_base = text;
	iov.iov_len = (size_t)(at - text);
	msg.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)n);
	cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)n);
	memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)n);
	/* A fresh connection's buffer takes this short message whole, or not at all. */
	return sendmsg(p->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)iov.iov_len ? n : -1;
}

/* A complete line arrived: "TAKEOVER" first, then "OK". */
static void peer_line(struct takeover_peer *p)
{
	struct runtime *rt = p->t->rt;
	int n;

	if (!p->sent && strcmp(p->line, "TAKEOVER") == 0) {
		if ((n = send_sockets(p)) < 0) {
			log_error(&rt->log, "takeover by pid %d: cannot send the sockets: %s",
			          (int)p->pid, strerror(errno));
			peer_free(p);
			return;
		}
		log_info(&rt->log, "takeover by pid %d: sent %d listening sockets", (int)p->pid, n);
		p->sent = true;
		p->len = 0;
		return;
	}
	if (p->sent && strcmp(p->line, "OK") == 0) {
		pid_t pid = p->pid;

		peer_free(p);
		runtime_hand_over(rt, pid);
		return;
	}
	log_warn(&rt->log, "takeover socket: unexpected request from pid %d", (int)p->pid);
	peer_free(p);
}

static void peer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct takeover_peer *p = arg;
	struct runtime *rt = p->t->rt;
	char c;
	ssize_t got;

	if (what & EV_TIMEOUT) {
		log_warn(&rt->log, "takeover by pid %d: no answer, keeping the sockets",
		         (int)p->pid);
		peer_free(p);
		return;
	}
	while ((got = recv(fd, &c, 1, MSG_DONTWAIT)) == 1) {
		if (c == '\n') {
			p->line[p->len] = '\0';
			peer_line(p);
			return;
		}
		if (p->len + 1 >= sizeof(p->line))
			break;
		p->line[p->len++] = c;
	}
	if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	/* Closed (the new process failed to start) or garbage: we keep serving. */
	log_warn(&rt->log, "takeover by pid %d abandoned; still serving", (int)p->pid);
	peer_free(p);
}

static void takeover_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
                               struct sockaddr *addr, int addrlen, void *arg)
{
	struct takeover *t = arg;
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct timeval tv = {.tv_sec = TAKEOVER_TIMEOUT_S};
	struct takeover_peer *p;

	/* Whoever gets the sockets can serve (and read) every client: only ourselves. */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ||
	    (cred.uid != geteuid() && cred.uid != 0) || t->peer != NULL ||
	    (p = calloc(1, sizeof(*p))) == NULL) {
		log_warn(&t->rt->log, "takeover socket: refused a connection");
		close(fd);
		return;
	}
	p->t = t;
	p->fd = fd;
	p->pid = cred.pid;
	p->ev = event_new(t->rt->base, fd, EV_READ | EV_PERSIST, peer_cb, p);
	if (p->ev == NULL || event_add(p->ev, &tv) < 0) {
		if (p->ev != NULL)
			event_free(p->ev);
		close(fd);
		free(p);
		return;
	}
	t->peer = p;
}

int takeover_listen(struct runtime *rt)
{
	const char *path = rt->snap->cfg->takeover_socket;
	struct takeover *t;
	struct stat st;
	int fd;

	rt->takeover = NULL;
	if (path[0] == '\0')
		return 0;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return -1;
	t->rt = rt;
	t->sun.sun_family = AF_UNIX;
	if ((size_t)snprintf(t->sun.sun_path, sizeof(t->sun.sun_path), "%s", path) >=
	    sizeof(t->sun.sun_path)) {
		log_error(&rt->log, "takeover_socket %s is too long", path);
		free(t);
		return -1;
	}
	fd = inherit_take_addr(&rt->inherited, (struct sockaddr *)&t->sun, sizeof(t->sun));
	t->inherited = fd >= 0;
	/* Owner only: a takeover hands out every client connection. */
	if (fd < 0 && (fd = listener_bind_unix(&t->sun, 4)) >= 0)
		chmod(path, 0600);
	if (fd < 0 || (t->lev = evconnlistener_new(rt->base, takeover_accept_cb, t,
	                                           LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0,
	                                           fd)) == NULL) {
		log_error(&rt->log, "cannot listen on takeover_socket %s: %s", path,
		          strerror(errno));
		if (fd >= 0)
			close(fd);
		free(t);
		return -1;
	}
	if (stat(path, &st) == 0) {
		t->owns_path = true;
		t->dev = st.st_dev;
		t->ino = st.st_ino;
	}
	rt->takeover = t;
	return 0;
}

void takeover_free(struct takeover *t, bool unlink_file)
{
	struct stat st;

	if (t == NULL)
		return;
	if (t->peer != NULL)
		peer_free(t->peer);
	evconnlistener_free(t->lev);
	if (unlink_file && t->owns_path && !t->inherited && stat(t->sun.sun_path, &st) == 0 &&
	    st.st_dev == t->dev && st.st_ino == t->ino)
		unlink(t->sun.sun_path);
	free(t);
}

/* Parse the old process's line and keep the descriptors that came with it. */
static int receive_sockets(struct runtime *rt, int conn)
{
	char text[64 + INHERIT_MAX * 10], names[INHERIT_MAX * 10];
	char control[CMSG_SPACE(sizeof(int) * INHERIT_MAX)];
	struct iovec iov = {.iov_base = text, .iov_len = sizeof(text) - 1};
	struct msghdr msg = {.msg_iov = &iov,
	                     .msg_iovlen = 1,
	                     .msg_control = control,
	                     .msg_controllen = sizeof(control)};
	struct cmsghdr *cm;
	int pid, n, nfds = 0, fds[INHERIT_MAX];
	ssize_t got = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);

	if (got <= 0) {
		log_error(&rt->log, "takeover: no answer from the running process: %s",
		          got == 0 ? "connection closed" : strerror(errno));
		return -1;
	}
	text[got] = '\0';
	for (cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
			nfds = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			memcpy(fds, CMSG_DATA(cm), sizeof(int) * (size_t)nfds);
		}
	if (sscanf(text, "SLUICE-TAKEOVER %d %d %639[^\n]", &pid, &n, names) != 3 || n != nfds ||
	    (msg.msg_flags & MSG_CTRUNC)) {
		log_error(&rt->log, "takeover: unexpected answer from the running process");
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		return -1;
	}
	char *save = NULL, *name = strtok_r(names, ":", &save);

	for (int i = 0; i < nfds; i++, name = strtok_r(NULL, ":", &save))
		if (inherit_add(&rt->inherited, fds[i], name != NULL ? name : "pg") < 0)
			close(fds[i]);
	log_info(&rt->log, "takeover: received %d listening sockets from pid %d", nfds, pid);
	return 0;
}

int takeover_fetch(struct runtime *rt)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	const char *path = rt->snap->cfg->takeover_socket;
	struct timeval tv = {.tv_sec = TAKEOVER_TIMEOUT_S};
	int conn;

	if (path[0] == '\0') {
		log_error(&rt->log, "--takeover needs takeover_socket, the running process's");
		return -1;
	}
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	if ((conn = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(conn, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(conn, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		log_info(&rt->log, "takeover: nothing answers at %s (%s); starting afresh", path,
		         strerror(errno));
		close(conn);
		return -2;
	}
	if (send(conn, "TAKEOVER\n", 9, MSG_NOSIGNAL) != 9 || receive_sockets(rt, conn) < 0) {
		close(conn);
		return -1;
	}
	return conn;
}

void takeover_confirm(struct runtime *rt, int conn)
{
	bool confirmed = send(conn, "OK\n", 3, MSG_NOSIGNAL) == 3;

	if (!confirmed)
		log_warn(&rt->log, "takeover: could not confirm: %s", strerror(errno));
	close(conn);
	/*
	 * The socket files are this process's now (before: the old one's, if
	 * this one failed).  Unconfirmed, the old process may still serve them.
	 */
	if (!confirmed)
		return;
	listener_adopt_paths(rt);
	if (rt->takeover != NULL)
		rt->takeover->inherited = false;
}
