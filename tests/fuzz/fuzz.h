/*
 * Shared by the libFuzzer targets in tests/fuzz (docs/fuzzing.md): the entry
 * point libFuzzer calls, a check that aborts whatever NDEBUG says, and helpers
 * that cut one input into pieces or hand it to a parser that reads a file.
 *
 * Every piece is copied into a heap block of exactly its size, so that ASan
 * reports a parser reading even one byte past the end of what it was given;
 * inside the fuzzer's own buffer such a read would go unnoticed.
 */
#ifndef SLUICE_FUZZ_H
#define SLUICE_FUZZ_H

#include <stddef.h>
#include <stdint.h>

struct msg_reader;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant of the code under test; a failure is a finding, reported by abort(). */
#define FUZZ_CHECK(cond) ((cond) ? (void)0 : fuzz_fail(#cond, __FILE__, __LINE__))
_Noreturn void fuzz_fail(const char *what, const char *file, int line);

/* The unread rest of an input. */
struct fuzz_input {
	const uint8_t *p; /* next unread byte */
	size_t left;      /* bytes after p */
};

/* A copy of n bytes in a block of exactly n bytes (one byte if n is 0); aborts on ENOMEM. */
uint8_t *fuzz_copy(const void *p, size_t n);
/*
 * The bytes up to the next NUL (or the end), NUL-terminated in a block of
 * exactly that size; the NUL is consumed.  *len, if not NULL, gets the length.
 */
char *fuzz_next_cstr(struct fuzz_input *in, size_t *len);
/* True if the n bytes at p contain the string s. */
int fuzz_contains(const uint8_t *p, size_t n, const char *s);

/* msg_reader's own invariants: the cursor inside the body, remaining 0 once failed. */
void fuzz_check_reader(const struct msg_reader *r);
/* msg_read_cstr and msg_read_bytes, their results checked to lie inside the body. */
const char *fuzz_read_cstr(struct msg_reader *r);
const uint8_t *fuzz_read_bytes(struct msg_reader *r, size_t n);

/*
 * Writes the bytes to /tmp/sluice-fuzz-TAG-PID (the name fixed on the first
 * call of the process, removed at exit) and returns that path, or NULL.
 */
const char *fuzz_write_file(const char *tag, const uint8_t *data, size_t size);

#endif
