/*
 * Linked into the targets whose inputs can hold plain passwords (config,
 * auth_file): sluice derives a SCRAM verifier from each with 4096 rounds of
 * PBKDF2, and OpenSSL allocates in every round, which under ASan made one
 * plain password cost milliseconds and the targets a hundred times slower.
 * This definition takes the place of libcrypto's for the whole executable
 * and runs the real one with a single round: the parsers around it see the
 * same shapes of keys, only faster.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>

#include <openssl/evp.h>

typedef int (*pbkdf2_fn)(const char *, int, const unsigned char *, int, int, const EVP_MD *, int,
                         unsigned char *);

int PKCS5_PBKDF2_HMAC(const char *pass, int passlen, const unsigned char *salt, int saltlen,
                      int iter, const EVP_MD *digest, int keylen, unsigned char *out)
{
	pbkdf2_fn real = (pbkdf2_fn)dlsym(RTLD_NEXT, "PKCS5_PBKDF2_HMAC");

	if (real == NULL)
		abort();
	return real(pass, passlen, salt, saltlen, iter > 1 ? 1 : iter, digest, keylen, out);
}
