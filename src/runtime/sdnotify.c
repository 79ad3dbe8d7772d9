/*
 * sd_notify(3) over $NOTIFY_SOCKET; see sdnotify.h.  The protocol is a
 * single datagram of newline-separated KEY=VALUE lines to an AF_UNIX socket,
 * a filesystem path or, when the name starts with '@', an abstract one.
 */
#include "runtime/sdnotify.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char *env_find(char *const *envp, const char *name)
{
	size_t len = strlen(name);

	for (; envp != NULL && *envp != NULL; envp++)
		if (strncmp(*envp, name, len) == 0 && (*envp)[len] == '=')
			return *envp + len + 1;
	return NULL;
}

int sdnotify_send(char *const *envp, const char *state)
{
	const char *path = env_find(envp, "NOTIFY_SOCKET");
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	size_t len = path ? strlen(path) : 0;
	ssize_t sent;
	int fd;

	if (len == 0)
		return 0;
	/* Only absolute paths and abstract names are valid; anything else is not for us. */
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sun.sun_path))
		return -1;
	memcpy(sun.sun_path, path, len);
	if (sun.sun_path[0] == '@')
		sun.sun_path[0] = '\0';
	if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	/* An abstract name's length is exact: no terminating NUL is part of it. */
	sent = sendto(
	    fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sun,
	    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '/' ? 1 : 0)));
	close(fd);
	return sent == (ssize_t)strlen(state) ? 0 : -1;
}

int sdnotify_reloading(char *const *envp)
{
	struct timespec ts;
	char state[64];

	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%llu",
	         (unsigned long long)ts.tv_sec * 1000000ULL +
	             (unsigned long long)ts.tv_nsec / 1000);
	return sdnotify_send(envp, state);
}
