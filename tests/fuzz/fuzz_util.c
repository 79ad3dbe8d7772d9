/* Helpers shared by the fuzz targets; see fuzz.h. */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/frame.h"

_Noreturn void fuzz_fail(const char *what, const char *file, int line)
{
	fprintf(stderr, "%s:%d: invariant failed: %s\n", file, line, what);
	abort();
}

uint8_t *fuzz_copy(const void *p, size_t n)
{
	uint8_t *copy = malloc(n > 0 ? n : 1);

	if (copy == NULL)
		abort();
	if (n > 0)
		memcpy(copy, p, n);
	return copy;
}

char *fuzz_next_cstr(struct fuzz_input *in, size_t *len)
{
	const uint8_t *nul = memchr(in->p, '\0', in->left);
	size_t n = nul != NULL ? (size_t)(nul - in->p) : in->left;
	char *s = malloc(n + 1);

	if (s == NULL)
		abort();
	memcpy(s, in->p, n);
	s[n] = '\0';
	in->p += n;
	in->left -= n;
	if (nul != NULL) {
		in->p++;
		in->left--;
	}
	if (len != NULL)
		*len = n;
	return s;
}

int fuzz_contains(const uint8_t *p, size_t n, const char *s)
{
	size_t slen = strlen(s);

	for (size_t i = 0; slen <= n && i <= n - slen; i++)
		if (memcmp(p + i, s, slen) == 0)
			return 1;
	return 0;
}

void fuzz_check_reader(const struct msg_reader *r)
{
	FUZZ_CHECK(r->pos <= r->len);
	FUZZ_CHECK(msg_remaining(r) == (r->failed ? 0 : r->len - r->pos));
}

const char *fuzz_read_cstr(struct msg_reader *r)
{
	size_t before = r->pos;
	bool was_failed = r->failed;
	const char *s = msg_read_cstr(r);

	/* A failed reader stays failed: nothing after a short read may be trusted. */
	FUZZ_CHECK(!was_failed || s == NULL);
	if (s != NULL) {
		FUZZ_CHECK(s == (const char *)r->data + before);
		FUZZ_CHECK(r->pos == before + strlen(s) + 1);
	} else {
		FUZZ_CHECK(r->failed);
	}
	fuzz_check_reader(r);
	return s;
}

const uint8_t *fuzz_read_bytes(struct msg_reader *r, size_t n)
{
	size_t before = r->pos;
	bool was_failed = r->failed;
	const uint8_t *p = msg_read_bytes(r, n);

	FUZZ_CHECK(!was_failed || p == NULL);
	if (p != NULL) {
		FUZZ_CHECK(p == r->data + before);
		FUZZ_CHECK(r->pos == before + n);
	} else {
		FUZZ_CHECK(r->failed);
	}
	fuzz_check_reader(r);
	return p;
}

/*
 * The one piece of mutable file-scope state in the fuzz targets: libFuzzer
 * calls the target with no context argument, and the path must stay the same
 * for the whole process so that the atexit handler can remove it.
 */
static char temp_path[128];

static void remove_temp(void)
{
	unlink(temp_path);
}

const char *fuzz_write_file(const char *tag, const uint8_t *data, size_t size)
{
	FILE *f;
	int ok;

	if (temp_path[0] == '\0') {
		snprintf(temp_path, sizeof(temp_path), "/tmp/sluice-fuzz-%s-%ld", tag,
		         (long)getpid());
		atexit(remove_temp);
	}
	/*
	 * A new file rather than a truncated one: ext4 flushes a file that was
	 * truncated and rewritten when it is closed, which would cost more than
	 * the parsing.
	 */
	unlink(temp_path);
	if ((f = fopen(temp_path, "w")) == NULL)
		return NULL;
	ok = fwrite(data, 1, size, f) == size;
	if (fclose(f) != 0 || !ok)
		return NULL;
	return temp_path;
}
