/*
 * The auth_file (PgBouncer's userlist.txt format) as auth_file_load reads
 * it: quoted user and secret with "" for a quote, comments, NUL bytes and
 * CR/LF line ends, and each secret classified as an md5 hash, a SCRAM
 * verifier (scram_secret_parse) or a plain password (from which an md5 hash
 * and a SCRAM verifier are derived).  The input is written to
 * /tmp/sluice-fuzz-auth_file-PID.
 *
 * On success every entry must be found by its name, have a non-empty name and
 * a secret of the shape its kind promises; on failure the error must name
 * the file and a line.  Then auth_file_add_plain (the --upstream path)
 * replaces the first entry.
 */
#include <stdlib.h>
#include <string.h>

#include "auth/auth_file.h"
#include "fuzz.h"

static void check_entry(const struct auth_file *af, const struct user_secret *u)
{
	FUZZ_CHECK(u->user != NULL && u->user[0] != '\0');
	/* A later line for the same user replaces the earlier: names are unique. */
	FUZZ_CHECK(auth_file_find(af, u->user) == u);
	switch (u->kind) {
	case SECRET_PLAIN:
		FUZZ_CHECK(u->plain != NULL && u->plain[0] != '\0');
		/* Plain entries serve md5 and SCRAM clients too. */
		FUZZ_CHECK(strlen(u->md5) == MD5_PASSWD_LEN);
		FUZZ_CHECK(u->scram.iterations >= 1 && u->scram.salt_len >= 1);
		break;
	case SECRET_MD5:
		FUZZ_CHECK(strlen(u->md5) == MD5_PASSWD_LEN && strncmp(u->md5, "md5", 3) == 0);
		break;
	case SECRET_SCRAM:
		FUZZ_CHECK(u->scram.iterations >= 1 && u->scram.salt_len >= 1 &&
		           u->scram.salt_len <= SCRAM_MAX_SALT_LEN);
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = fuzz_write_file("auth_file", data, size);
	struct auth_file af;
	char err[512];

	if (path == NULL)
		abort();
	err[0] = '\0';
	if (auth_file_load(path, &af, err, sizeof(err)) == 0) {
		for (size_t i = 0; i < af.count; i++)
			check_entry(&af, &af.users[i]);
	} else {
		FUZZ_CHECK(af.count == 0 && af.users == NULL);
		FUZZ_CHECK(strncmp(err, path, strlen(path)) == 0 && err[strlen(path)] == ':');
	}
	/*
	 * The --upstream user replaces a file entry of the same name.  Only for
	 * the first entry: each plain password costs a PBKDF2 run.
	 */
	if (af.count > 0) {
		size_t count = af.count;
		char *name = strdup(af.users[0].user);

		if (name == NULL)
			abort();
		FUZZ_CHECK(auth_file_add_plain(&af, name, "secret") == 0);
		FUZZ_CHECK(af.count == count && auth_file_find(&af, name)->kind == SECRET_PLAIN);
		free(name);
	}
	auth_file_fini(&af);
	return 0;
}
