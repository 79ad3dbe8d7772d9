/*
 * sd_notify over $NOTIFY_SOCKET: the datagrams arrive as systemd would read
 * them, on a path socket and on an abstract one, and nothing happens (and
 * nothing fails) without the variable.
 */
#include "runtime/sdnotify.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* A datagram socket bound to `name` (a path, or '@' then an abstract name). */
static int bind_receiver(const char *name)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	size_t len = strlen(name);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	memcpy(sun.sun_path, name, len);
	if (name[0] == '@')
		sun.sun_path[0] = '\0';
	cr_assert_eq(bind(fd, (struct sockaddr *)&sun,
	                  (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)),
	             0, "bind %s", name);
	return fd;
}

/* The next datagram, NUL-terminated; fails the test if none is waiting. */
static void receive(int fd, char *buf, size_t len)
{
	ssize_t n = recv(fd, buf, len - 1, MSG_DONTWAIT);

	cr_assert_gt(n, 0, "no notification was sent");
	buf[n] = '\0';
}

Test(sdnotify, path_socket)
{
	char dir[] = "/tmp/sluice-notify-XXXXXX", path[128], var[160], buf[256];
	char *env[] = {"PATH=/bin", var, NULL};
	int fd;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/notify", dir);
	snprintf(var, sizeof(var), "NOTIFY_SOCKET=%s", path);
	fd = bind_receiver(path);

	cr_assert_eq(sdnotify_send(env, "READY=1"), 0);
	receive(fd, buf, sizeof(buf));
	cr_assert_str_eq(buf, "READY=1");

	cr_assert_eq(sdnotify_reloading(env), 0);
	receive(fd, buf, sizeof(buf));
	cr_assert(strncmp(buf, "RELOADING=1\nMONOTONIC_USEC=", 27) == 0, "%s", buf);
	cr_assert_gt(strtoull(buf + 27, NULL, 10), 0);

	cr_assert_eq(sdnotify_send(env, "STOPPING=1"), 0);
	receive(fd, buf, sizeof(buf));
	cr_assert_str_eq(buf, "STOPPING=1");
	close(fd);
	unlink(path);
	rmdir(dir);
}

Test(sdnotify, abstract_socket)
{
	char name[64], var[96], buf[64];
	char *env[] = {var, NULL};
	int fd;

	snprintf(name, sizeof(name), "@sluice-test-%d", (int)getpid());
	snprintf(var, sizeof(var), "NOTIFY_SOCKET=%s", name);
	fd = bind_receiver(name);
	cr_assert_eq(sdnotify_send(env, "READY=1"), 0);
	receive(fd, buf, sizeof(buf));
	cr_assert_str_eq(buf, "READY=1");
	close(fd);
}

Test(sdnotify, without_a_socket_nothing_happens)
{
	char *env[] = {"PATH=/bin", "NOTIFY_SOCKET=", NULL};

	cr_assert_eq(sdnotify_send(NULL, "READY=1"), 0);
	cr_assert_eq(sdnotify_send(env + 1, "READY=1"), 0, "an empty variable means none");
	cr_assert_eq(sdnotify_send(env, "READY=1"), 0);
}

Test(sdnotify, bad_socket_fails_quietly)
{
	char *relative[] = {"NOTIFY_SOCKET=relative/path", NULL};
	char *missing[] = {"NOTIFY_SOCKET=/nonexistent/sluice/notify", NULL};

	cr_assert_eq(sdnotify_send(relative, "READY=1"), -1);
	cr_assert_eq(sdnotify_send(missing, "READY=1"), -1);
}
