/*
 * The pidfile and dropping root; see process.h.
 */
#include "runtime/process.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* The process id in the pidfile; 0 when there is none or it is not a number. */
static pid_t pidfile_read(const char *path)
{
	char buf[32];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	long pid;

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	pid = strtol(buf, NULL, 10);
	return pid > 0 ? (pid_t)pid : 0;
}

int process_pidfile_write(const char *path, const char *user, bool takeover, char *err, size_t len)
{
	pid_t old = pidfile_read(path);
	struct passwd *pw = user[0] != '\0' ? getpwnam(user) : NULL;
	char text[32];
	int fd, n;

	/* kill(pid, 0) fails with EPERM for a live process of another user. */
	if (!takeover && old > 0 && old != getpid() && (kill(old, 0) == 0 || errno == EPERM)) {
		snprintf(err, len, "pidfile %s: process %ld is running (another instance?)", path,
		         (long)old);
		return -1;
	}
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		snprintf(err, len, "cannot write pidfile %s: %s", path, strerror(errno));
		return -1;
	}
	n = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
	if (write(fd, text, (size_t)n) != n ||
	    (pw != NULL && fchown(fd, pw->pw_uid, pw->pw_gid) < 0)) {
		snprintf(err, len, "cannot write pidfile %s: %s", path, strerror(errno));
		close(fd);
		unlink(path);
		return -1;
	}
	close(fd);
	return 0;
}

void process_pidfile_remove(const char *path)
{
	if (path[0] != '\0' && pidfile_read(path) == getpid())
		unlink(path);
}

int process_drop_privileges(const char *user, char *err, size_t len)
{
	struct passwd *pw;

	errno = 0;
	if ((pw = getpwnam(user)) == NULL) {
		snprintf(err, len, "user %s: %s", user, errno ? strerror(errno) : "no such user");
		return -1;
	}
	if (geteuid() == pw->pw_uid)
		return 0;
	if (geteuid() != 0) {
		snprintf(err, len, "cannot switch to user %s: sluice was not started as root",
		         user);
		return -1;
	}
	/* Groups first: once the uid is dropped, the right to change them is gone. */
	if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0) {
		snprintf(err, len, "cannot switch to user %s: %s", user, strerror(errno));
		return -1;
	}
	/* Must not be able to come back. */
	if (setuid(0) == 0) {
		snprintf(err, len, "cannot switch to user %s: root could be regained", user);
		return -1;
	}
	return 0;
}
