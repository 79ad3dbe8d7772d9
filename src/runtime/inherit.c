/*
 * Inherited listening sockets; see inherit.h.
 */
#include "runtime/inherit.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/log.h"

static const char *env_find(char *const *envp, const char *name)
{
	size_t len = strlen(name);

	for (; envp != NULL && *envp != NULL; envp++)
		if (strncmp(*envp, name, len) == 0 && (*envp)[len] == '=')
			return *envp + len + 1;
	return NULL;
}

static long parse_count(const char *text)
{
	char *end;
	long v;

	if (text == NULL || text[0] < '0' || text[0] > '9')
		return -1;
	errno = 0;
	v = strtol(text, &end, 10);
	return errno != 0 || *end != '\0' ? -1 : v;
}

int inherit_add(struct inherited *in, int fd, const char *name)
{
	int flags = fcntl(fd, F_GETFL);

	if (in->n >= INHERIT_MAX || flags < 0)
		return -1;
	/* systemd hands sockets over blocking unless NonBlocking=yes; our loop must not block. */
	if (fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return -1;
	in->socks[in->n].fd = fd;
	snprintf(in->socks[in->n].name, sizeof(in->socks[in->n].name), "%s", name);
	in->n++;
	return 0;
}

/* The i-th name of LISTEN_FDNAMES ("a:b:c"); "unknown", as systemd says, when it has none. */
static void fd_name(const char *names, long i, char *out, size_t len)
{
	snprintf(out, len, "unknown");
	for (; names != NULL && i > 0; i--) {
		names = strchr(names, ':');
		if (names != NULL)
			names++;
	}
	if (names != NULL && *names != '\0' && *names != ':')
		snprintf(out, len, "%.*s", (int)strcspn(names, ":"), names);
}

int inherit_from_systemd(struct inherited *in, char *const *envp, char *err, size_t errlen)
{
	long pid = parse_count(env_find(envp, "LISTEN_PID"));
	long count = parse_count(env_find(envp, "LISTEN_FDS"));
	const char *names = env_find(envp, "LISTEN_FDNAMES");

	/* Variables left for another process (a parent's, inherited by mistake) are not ours. */
	if (pid != (long)getpid() || count <= 0)
		return 0;
	if (count > INHERIT_MAX) {
		snprintf(err, errlen, "LISTEN_FDS=%ld: at most %d sockets", count, INHERIT_MAX);
		return -1;
	}
	for (long i = 0; i < count; i++) {
		int fd = INHERIT_SYSTEMD_FIRST_FD + (int)i;
		char name[32];
		int type;
		socklen_t len = sizeof(type);

		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM) {
			snprintf(err, errlen, "LISTEN_FDS: descriptor %d is not a stream socket",
			         fd);
			return -1;
		}
		fd_name(names, i, name, sizeof(name));
		if (inherit_add(in, fd, name) < 0) {
			snprintf(err, errlen, "LISTEN_FDS: descriptor %d: %s", fd, strerror(errno));
			return -1;
		}
	}
	in->from_systemd = true;
	return in->n;
}

int inherit_take_name(struct inherited *in, const char *name)
{
	for (int i = 0; i < in->n; i++) {
		int fd = in->socks[i].fd;

		if (fd >= 0 && strcmp(in->socks[i].name, name) == 0) {
			in->socks[i].fd = -1;
			return fd;
		}
	}
	return -1;
}

static bool same_address(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != b->sa_family)
		return false;
	switch (a->sa_family) {
	case AF_INET: {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;

		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	case AF_INET6: {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;

		return x->sin6_port == y->sin6_port &&
		       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
	}
	case AF_UNIX:
		return strncmp(((const struct sockaddr_un *)a)->sun_path,
		               ((const struct sockaddr_un *)b)->sun_path,
		               sizeof(((struct sockaddr_un *)0)->sun_path)) == 0;
	default:
		return false;
	}
}

int inherit_take_addr(struct inherited *in, const struct sockaddr *sa, socklen_t len)
{
	for (int i = 0; i < in->n; i++) {
		struct sockaddr_storage bound = {0};
		socklen_t blen = sizeof(bound);
		int fd = in->socks[i].fd;

		if (fd < 0 || getsockname(fd, (struct sockaddr *)&bound, &blen) < 0)
			continue;
		if (same_address((struct sockaddr *)&bound, sa)) {
			in->socks[i].fd = -1;
			return fd;
		}
	}
	return -1;
}

void inherit_close_rest(struct inherited *in, struct logger *log)
{
	for (int i = 0; i < in->n; i++) {
		if (in->socks[i].fd < 0)
			continue;
		log_warn(log, "closing inherited socket %d (%s): no configured address uses it",
		         in->socks[i].fd, in->socks[i].name);
		close(in->socks[i].fd);
		in->socks[i].fd = -1;
	}
	in->n = 0;
}
