/*
 * SCRAM-SHA-256 (RFC 5802, RFC 7677), server role towards sluice's clients and
 * client role towards Postgres, on OpenSSL 3 EVP primitives.
 *
 * Every message handled here comes from the network, so the parsers never
 * trust a length or a terminator: each message is bounded by SCRAM_MSG_MAX and
 * checked for NUL bytes before anything else, every attribute is located with
 * memchr inside those bounds, and every decoded value is checked against the
 * exact size of the buffer it lands in before it is written.
 */
#include "auth/scram.h"

#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

/* 18 random bytes give a 24-character nonce, as Postgres and libpq use. */
#define SCRAM_RAW_NONCE_LEN 18
#define SCRAM_DEFAULT_SALT  16

/*
 * Upper bound on the iteration count we accept from a server: PBKDF2 runs on
 * a worker thread, so a hostile or misconfigured server must not be able to
 * stall it for minutes.  Postgres' default is 4096.
 */
#define SCRAM_MAX_ITERATIONS 10000000

/* client-first-bare + "," + server-first + "," + client-final-without-proof */
#define SCRAM_AUTH_MSG_MAX (3 * SCRAM_MSG_MAX + 2)

/* Base64 of 32 bytes: 44 characters with one '=' of padding. */
#define SCRAM_KEY_B64_LEN 44

/* A bounded view into a message that is not NUL-terminated. */
struct scram_cursor {
	const char *p;   /* next unread byte */
	const char *end; /* one past the last byte of the message */
};

/* ---- base64 (RFC 4648, strict: canonical padding, no whitespace) ---- */

static int b64_value(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

/* Encodes len bytes into out (NUL-terminated); returns the length or -1 if out is too small. */
static int b64_encode(const uint8_t *in, size_t len, char *out, size_t outcap)
{
	static const char alphabet[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t need = (len + 2) / 3 * 4;
	size_t o = 0;

	if (need >= outcap || need > INT_MAX)
		return -1;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;

		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		out[o++] = alphabet[(v >> 18) & 63];
		out[o++] = alphabet[(v >> 12) & 63];
		out[o++] = i + 1 < len ? alphabet[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? alphabet[v & 63] : '=';
	}
	out[o] = '\0';
	return (int)o;
}

/*
 * Decodes exactly len characters into out; returns the byte count or -1.  The
 * input must be canonical (padded to a multiple of 4, '=' only at the end, and
 * unused low bits zero) so that one value has exactly one accepted spelling.
 */
static int b64_decode(const char *in, size_t len, uint8_t *out, size_t outcap)
{
	size_t pad = 0;
	size_t o = 0;

	if (len % 4 != 0 || len / 4 * 3 > outcap + 2)
		return -1;
	if (len > 0 && in[len - 1] == '=')
		pad = in[len - 2] == '=' ? 2 : 1;
	if (len / 4 * 3 - pad > outcap)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		bool last = i + 4 == len;
		int d[4];
		uint32_t v;

		for (int k = 0; k < 4; k++) {
			d[k] = b64_value((unsigned char)in[i + k]);
			if (d[k] < 0 && !(last && k >= 4 - (int)pad))
				return -1;
		}
		v = (uint32_t)d[0] << 18 | (uint32_t)d[1] << 12;
		if (last && pad == 2) {
			if (v & 0xffff)
				return -1;
			out[o++] = (uint8_t)(v >> 16);
			break;
		}
		v |= (uint32_t)d[2] << 6;
		if (last && pad == 1) {
			if (v & 0xff)
				return -1;
			out[o++] = (uint8_t)(v >> 16);
			out[o++] = (uint8_t)(v >> 8);
			break;
		}
		v |= (uint32_t)d[3];
		out[o++] = (uint8_t)(v >> 16);
		out[o++] = (uint8_t)(v >> 8);
		out[o++] = (uint8_t)v;
	}
	return (int)o;
}

/* ---- primitives ---- */

static int hmac_sha256(const uint8_t *key, size_t keylen, const void *data, size_t len,
                       uint8_t out[SCRAM_KEY_LEN])
{
	size_t outlen = 0;

	if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, keylen, data, len, out,
	               SCRAM_KEY_LEN, &outlen))
		return -1;
	return outlen == SCRAM_KEY_LEN ? 0 : -1;
}

static int sha256(const void *data, size_t len, uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int outlen = 0;

	if (!EVP_Digest(data, len, out, &outlen, EVP_sha256(), NULL))
		return -1;
	return outlen == SCRAM_KEY_LEN ? 0 : -1;
}

/* ClientKey and ServerKey from SaltedPassword = PBKDF2(password, salt, iterations). */
static int keys_from_password(const char *password, const uint8_t *salt, size_t salt_len,
                              int iterations, uint8_t client_key[SCRAM_KEY_LEN],
                              uint8_t server_key[SCRAM_KEY_LEN])
{
	uint8_t salted[SCRAM_KEY_LEN];
	size_t pwlen = strlen(password);
	int rc = -1;

	if (pwlen > INT_MAX || salt_len > INT_MAX || iterations < 1)
		return -1;
	if (PKCS5_PBKDF2_HMAC(password, (int)pwlen, salt, (int)salt_len, iterations, EVP_sha256(),
	                      SCRAM_KEY_LEN, salted) != 1)
		goto out;
	if (hmac_sha256(salted, SCRAM_KEY_LEN, "Client Key", 10, client_key) < 0 ||
	    hmac_sha256(salted, SCRAM_KEY_LEN, "Server Key", 10, server_key) < 0)
		goto out;
	rc = 0;
out:
	OPENSSL_cleanse(salted, sizeof(salted));
	return rc;
}

/* A nonce is printable ASCII other than ',' (RFC 5802 "printable"), 1..max chars. */
static bool is_valid_nonce(const char *p, size_t len, size_t max)
{
	if (len == 0 || len > max)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)p[i];

		if (ch < 0x21 || ch > 0x7e || ch == ',')
			return false;
	}
	return true;
}

/* Fills dst (SCRAM_NONCE_MAX + 1) with the given nonce or a random one; "" on failure. */
static int nonce_setup(char *dst, const char *given)
{
	uint8_t raw[SCRAM_RAW_NONCE_LEN];

	dst[0] = '\0';
	if (given) {
		size_t len = strnlen(given, SCRAM_NONCE_MAX + 1);

		if (!is_valid_nonce(given, len, SCRAM_NONCE_MAX))
			return -1;
		memcpy(dst, given, len);
		dst[len] = '\0';
		return 0;
	}
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return -1;
	/* Base64 output never contains ',' and is printable, so it is a valid nonce. */
	return b64_encode(raw, sizeof(raw), dst, SCRAM_NONCE_MAX + 1) < 0 ? -1 : 0;
}

/* Decimal without sign or leading zeros, 1..max (max <= INT_MAX). */
static int parse_count(const char *p, size_t len, int max, int *out)
{
	int v = 0;

	if (len == 0 || (p[0] == '0' && len > 1))
		return -1;
	for (size_t i = 0; i < len; i++) {
		int digit = p[i] - '0';

		if (p[i] < '0' || p[i] > '9')
			return -1;
		/* Checked before multiplying, so v can never overflow. */
		if (v > (max - digit) / 10)
			return -1;
		v = v * 10 + digit;
	}
	if (v < 1)
		return -1;
	*out = v;
	return 0;
}

/* ---- attribute parsing ---- */

/* Messages must fit the protocol bound and, being text, contain no NUL. */
static bool is_sane_message(const char *msg, size_t len)
{
	return msg != NULL && len > 0 && len <= SCRAM_MSG_MAX && memchr(msg, '\0', len) == NULL;
}

static bool cursor_at_end(const struct scram_cursor *c)
{
	return c->p >= c->end;
}

/* The attribute name at the cursor, or 0 if there is none. */
static char cursor_peek(const struct scram_cursor *c)
{
	return c->end - c->p >= 2 && c->p[1] == '=' ? c->p[0] : 0;
}

/*
 * Reads `name=value` and the ',' after it.  The value runs to the next ',' or
 * the end; a ',' must be followed by another attribute, so a trailing comma
 * is malformed.
 */
static int cursor_attr(struct scram_cursor *c, char name, const char **val, size_t *vlen)
{
	const char *comma;

	if (cursor_peek(c) != name)
		return -1;
	c->p += 2;
	comma = memchr(c->p, ',', (size_t)(c->end - c->p));
	*val = c->p;
	*vlen = (size_t)((comma ? comma : c->end) - c->p);
	c->p += *vlen;
	if (comma) {
		c->p++;
		if (cursor_at_end(c))
			return -1;
	}
	return 0;
}

/* Skips RFC 5802 extensions (ALPHA "=" 1*value-char) until attribute stop or the end. */
static int cursor_skip_extensions(struct scram_cursor *c, char stop)
{
	while (!cursor_at_end(c)) {
		char name = cursor_peek(c);
		const char *val;
		size_t vlen;

		if (stop != 0 && name == stop)
			break;
		if (!((name >= 'a' && name <= 'z') || (name >= 'A' && name <= 'Z')))
			return -1;
		if (cursor_attr(c, name, &val, &vlen) < 0 || vlen == 0)
			return -1;
	}
	return 0;
}

/* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
static int auth_message_build(char *buf, const char *first_bare, size_t first_len,
                              const char *server_first, size_t server_len, const char *final,
                              size_t final_len)
{
	size_t n = 0;

	if (first_len > SCRAM_MSG_MAX || server_len > SCRAM_MSG_MAX || final_len > SCRAM_MSG_MAX)
		return -1;
	memcpy(buf + n, first_bare, first_len);
	n += first_len;
	buf[n++] = ',';
	memcpy(buf + n, server_first, server_len);
	n += server_len;
	buf[n++] = ',';
	memcpy(buf + n, final, final_len);
	n += final_len;
	return (int)n;
}

/*
 * Both signatures over one AuthMessage: ClientSignature = HMAC(StoredKey,
 * AuthMessage) hides the ClientKey in the proof, and ServerSignature =
 * HMAC(ServerKey, AuthMessage) proves the server knows the verifier.
 */
static int auth_message_sign(const char *am, size_t am_len, const uint8_t stored_key[SCRAM_KEY_LEN],
                             const uint8_t server_key[SCRAM_KEY_LEN],
                             uint8_t client_sig[SCRAM_KEY_LEN], uint8_t server_sig[SCRAM_KEY_LEN])
{
	if (hmac_sha256(stored_key, SCRAM_KEY_LEN, am, am_len, client_sig) < 0)
		return -1;
	return hmac_sha256(server_key, SCRAM_KEY_LEN, am, am_len, server_sig);
}

/* ---- verifiers ---- */

int scram_secret_from_password(const char *password, const uint8_t *salt, size_t salt_len,
                               int iterations, struct scram_secret *out)
{
	struct scram_secret s;
	uint8_t client_key[SCRAM_KEY_LEN];
	int rc = -1;

	memset(&s, 0, sizeof(s));
	if (password == NULL || iterations < 1)
		return -1;
	if (salt == NULL) {
		s.salt_len = SCRAM_DEFAULT_SALT;
		if (RAND_bytes(s.salt, SCRAM_DEFAULT_SALT) != 1)
			return -1;
	} else {
		if (salt_len == 0 || salt_len > SCRAM_MAX_SALT_LEN)
			return -1;
		memcpy(s.salt, salt, salt_len);
		s.salt_len = salt_len;
	}
	s.iterations = iterations;
	if (keys_from_password(password, s.salt, s.salt_len, iterations, client_key, s.server_key))
		goto out;
	if (sha256(client_key, SCRAM_KEY_LEN, s.stored_key) < 0)
		goto out;
	*out = s;
	rc = 0;
out:
	OPENSSL_cleanse(client_key, sizeof(client_key));
	OPENSSL_cleanse(&s, sizeof(s));
	return rc;
}

/* Splits text at the first sep within [p, end); returns the piece's end or NULL. */
static const char *field_end(const char *p, const char *end, char sep)
{
	return memchr(p, sep, (size_t)(end - p));
}

/*
 * Each field is located with field_end() inside [text, end), so a missing
 * separator fails instead of running into the next field.  Any positive
 * iteration count is accepted, as Postgres does: verifiers come from the
 * trusted auth_file, unlike the bounded count in a server-first-message.
 */
int scram_secret_parse(const char *text, struct scram_secret *out)
{
	static const char prefix[] = SCRAM_MECHANISM "$";
	struct scram_secret s;
	const char *p, *end, *sep;
	size_t len;
	int n;

	if (text == NULL || (len = strnlen(text, SCRAM_MSG_MAX + 1)) > SCRAM_MSG_MAX ||
	    strncmp(text, prefix, sizeof(prefix) - 1) != 0)
		return -1;
	memset(&s, 0, sizeof(s));
	end = text + len;
	p = text + sizeof(prefix) - 1;
	if (!(sep = field_end(p, end, ':')) ||
	    parse_count(p, (size_t)(sep - p), INT_MAX, &s.iterations) < 0)
		goto fail;
	p = sep + 1;
	if (!(sep = field_end(p, end, '$')) ||
	    (n = b64_decode(p, (size_t)(sep - p), s.salt, sizeof(s.salt))) < 1)
		goto fail;
	s.salt_len = (size_t)n;
	p = sep + 1;
	if (!(sep = field_end(p, end, ':')) ||
	    b64_decode(p, (size_t)(sep - p), s.stored_key, SCRAM_KEY_LEN) != SCRAM_KEY_LEN)
		goto fail;
	p = sep + 1;
	if (b64_decode(p, (size_t)(end - p), s.server_key, SCRAM_KEY_LEN) != SCRAM_KEY_LEN)
		goto fail;
	*out = s;
	OPENSSL_cleanse(&s, sizeof(s));
	return 0;
fail:
	OPENSSL_cleanse(&s, sizeof(s));
	return -1;
}

/* ---- server role ---- */

void scram_server_init(struct scram_server *s, const struct scram_secret *secret,
                       const char *server_nonce)
{
	memset(s, 0, sizeof(*s));
	s->state = SCRAM_SERVER_INIT;
	/* No secret leaves iterations at 0, which handle_first refuses. */
	if (secret)
		s->secret = *secret;
	/* Until the client's nonce arrives, nonce holds only the server's part. */
	if (nonce_setup(s->nonce, server_nonce) < 0)
		s->nonce[0] = '\0';
}

/*
 * gs2-header: "n,," or "y,,"; binding ("p=") and authzid ("a=") are refused.
 * "y" means the client could bind but believes the server cannot.  That is
 * true here (we never advertise SCRAM-SHA-256-PLUS), so it is no sign of a
 * downgrade and is accepted (RFC 5802 section 6).
 */
static int server_parse_gs2(struct scram_server *s, struct scram_cursor *c, const char **errmsg)
{
	if (c->end - c->p < 3) {
		*errmsg = "malformed SCRAM message (gs2 header)";
		return -1;
	}
	if (c->p[0] == 'p') {
		*errmsg = "channel binding is not supported: sluice does not offer "
		          "SCRAM-SHA-256-PLUS";
		return -1;
	}
	if ((c->p[0] != 'n' && c->p[0] != 'y') || c->p[1] != ',') {
		*errmsg = "malformed SCRAM message (gs2 header)";
		return -1;
	}
	if (c->p[2] != ',') {
		*errmsg = c->p[2] == 'a' ? "SCRAM authorization identity is not supported"
		                         : "malformed SCRAM message (gs2 header)";
		return -1;
	}
	s->cbind_flag = c->p[0];
	c->p += 3;
	return 0;
}

/*
 * client-first-message-bare: "n=" user "," "r=" nonce ["," extensions].  The
 * user name is ignored (Postgres sends "n=" with the name in the startup
 * packet), but it still must be a well-formed attribute.
 */
static int server_parse_first_bare(struct scram_cursor *c, const char **nonce, size_t *nonce_len,
                                   const char **errmsg)
{
	const char *user;
	size_t user_len;

	*errmsg = "malformed SCRAM client-first-message";
	if (cursor_peek(c) == 'm') {
		*errmsg = "SCRAM mandatory extensions are not supported";
		return -1;
	}
	if (cursor_attr(c, 'n', &user, &user_len) < 0 || cursor_at_end(c))
		return -1;
	if (cursor_attr(c, 'r', nonce, nonce_len) < 0)
		return -1;
	if (!is_valid_nonce(*nonce, *nonce_len, SCRAM_NONCE_MAX)) {
		*errmsg = "invalid SCRAM client nonce";
		return -1;
	}
	return cursor_skip_extensions(c, 0);
}

/* Joins the nonces and writes server-first: "r=" nonce ",s=" salt ",i=" iterations. */
static int server_build_first(struct scram_server *s, const char *cnonce, size_t cnonce_len)
{
	char snonce[SCRAM_NONCE_MAX + 1];
	char salt_b64[(SCRAM_MAX_SALT_LEN + 2) / 3 * 4 + 1];
	size_t snonce_len = strlen(s->nonce);
	int n;

	memcpy(snonce, s->nonce, snonce_len + 1);
	memcpy(s->nonce, cnonce, cnonce_len);
	memcpy(s->nonce + cnonce_len, snonce, snonce_len + 1);
	if (b64_encode(s->secret.salt, s->secret.salt_len, salt_b64, sizeof(salt_b64)) < 0)
		return -1;
	n = snprintf(s->server_first, sizeof(s->server_first), "r=%s,s=%s,i=%d", s->nonce, salt_b64,
	             s->secret.iterations);
	return n > 0 && (size_t)n < sizeof(s->server_first) ? n : -1;
}

int scram_server_handle_first(struct scram_server *s, const char *msg, size_t len, char *out,
                              size_t outcap, const char **errmsg)
{
	struct scram_cursor c = {msg, msg + len};
	const char *bare, *cnonce;
	size_t cnonce_len;
	int n;

	if (s->state != SCRAM_SERVER_INIT) {
		*errmsg = "unexpected SCRAM message";
		return -1;
	}
	/* Any failure ends the exchange: a client gets one attempt per handshake. */
	s->state = SCRAM_SERVER_DONE;
	if (!is_sane_message(msg, len)) {
		*errmsg = "malformed SCRAM client-first-message";
		return -1;
	}
	if (server_parse_gs2(s, &c, errmsg) < 0)
		return -1;
	bare = c.p;
	if (server_parse_first_bare(&c, &cnonce, &cnonce_len, errmsg) < 0)
		return -1;
	/*
	 * A verifier without salt or iterations (or a failed random nonce at
	 * init) cannot produce a valid server-first; refuse instead of sending
	 * "i=0" for the client to reject.
	 */
	if (s->nonce[0] == '\0' || s->secret.iterations < 1 || s->secret.salt_len == 0 ||
	    s->secret.salt_len > SCRAM_MAX_SALT_LEN) {
		*errmsg = "SCRAM authentication is not available";
		return -1;
	}
	n = server_build_first(s, cnonce, cnonce_len);
	if (n < 0 || (size_t)n >= outcap) {
		*errmsg = "internal error building SCRAM server-first-message";
		return -1;
	}
	memcpy(out, s->server_first, (size_t)n + 1);
	memcpy(s->client_first_bare, bare, (size_t)(msg + len - bare));
	s->client_first_bare[msg + len - bare] = '\0';
	s->state = SCRAM_SERVER_SENT_FIRST;
	return 0;
}

/*
 * client-final: "c=" b64(gs2 header) ",r=" nonce ["," extensions] ",p=" proof.
 * On success *without_proof_len is the length of client-final-without-proof,
 * the part that goes into the AuthMessage.
 */
static int server_parse_final(const struct scram_server *s, const char *msg, size_t len,
                              uint8_t proof[SCRAM_KEY_LEN], size_t *without_proof_len,
                              const char **errmsg)
{
	struct scram_cursor c = {msg, msg + len};
	const char *cb = s->cbind_flag == 'y' ? "eSws" : "biws"; /* b64 "y,," / "n,," */
	const char *val;
	size_t vlen;

	*errmsg = "malformed SCRAM client-final-message";
	if (cursor_attr(&c, 'c', &val, &vlen) < 0)
		return -1;
	if (vlen != 4 || memcmp(val, cb, 4) != 0) {
		*errmsg = "SCRAM channel binding data does not match the gs2 header";
		return -1;
	}
	if (cursor_attr(&c, 'r', &val, &vlen) < 0)
		return -1;
	if (vlen != strlen(s->nonce) || memcmp(val, s->nonce, vlen) != 0) {
		*errmsg = "SCRAM nonce does not match";
		return -1;
	}
	if (cursor_skip_extensions(&c, 'p') < 0 || cursor_at_end(&c))
		return -1;
	*without_proof_len = (size_t)(c.p - 1 - msg);
	/* The proof is the last attribute, so no ',' may follow it. */
	if (cursor_attr(&c, 'p', &val, &vlen) < 0 || !cursor_at_end(&c) ||
	    vlen != SCRAM_KEY_B64_LEN ||
	    b64_decode(val, vlen, proof, SCRAM_KEY_LEN) != SCRAM_KEY_LEN)
		return -1;
	return 0;
}

/*
 * ClientKey = ClientProof XOR ClientSignature; the proof is valid when
 * H(ClientKey) equals StoredKey, compared in constant time.
 */
static bool server_check_proof(struct scram_server *s, const uint8_t proof[SCRAM_KEY_LEN],
                               const uint8_t client_sig[SCRAM_KEY_LEN])
{
	uint8_t client_key[SCRAM_KEY_LEN];
	uint8_t stored[SCRAM_KEY_LEN];
	bool ok;

	for (int i = 0; i < SCRAM_KEY_LEN; i++)
		client_key[i] = proof[i] ^ client_sig[i];
	ok = sha256(client_key, SCRAM_KEY_LEN, stored) == 0 &&
	     CRYPTO_memcmp(stored, s->secret.stored_key, SCRAM_KEY_LEN) == 0;
	if (ok)
		memcpy(s->client_key, client_key, SCRAM_KEY_LEN);
	OPENSSL_cleanse(client_key, sizeof(client_key));
	return ok;
}

int scram_server_handle_final(struct scram_server *s, const char *msg, size_t len, char *out,
                              size_t outcap, const char **errmsg)
{
	char am[SCRAM_AUTH_MSG_MAX];
	uint8_t proof[SCRAM_KEY_LEN], client_sig[SCRAM_KEY_LEN], server_sig[SCRAM_KEY_LEN];
	size_t wp_len;
	int am_len, rc = -1;

	if (s->state != SCRAM_SERVER_SENT_FIRST) {
		*errmsg = "unexpected SCRAM message";
		return -1;
	}
	s->state = SCRAM_SERVER_DONE;
	if (!is_sane_message(msg, len)) {
		*errmsg = "malformed SCRAM client-final-message";
		return -1;
	}
	if (server_parse_final(s, msg, len, proof, &wp_len, errmsg) < 0)
		return -1;
	am_len = auth_message_build(am, s->client_first_bare, strlen(s->client_first_bare),
	                            s->server_first, strlen(s->server_first), msg, wp_len);
	*errmsg = "internal error in SCRAM";
	if (am_len < 0 || auth_message_sign(am, (size_t)am_len, s->secret.stored_key,
	                                    s->secret.server_key, client_sig, server_sig) < 0)
		goto out;
	if (!server_check_proof(s, proof, client_sig)) {
		*errmsg = "password authentication failed";
		goto out;
	}
	if (outcap < 3 || b64_encode(server_sig, SCRAM_KEY_LEN, out + 2, outcap - 2) < 0) {
		OPENSSL_cleanse(s->client_key, sizeof(s->client_key));
		goto out;
	}
	memcpy(out, "v=", 2);
	rc = 0;
out:
	OPENSSL_cleanse(client_sig, sizeof(client_sig));
	OPENSSL_cleanse(server_sig, sizeof(server_sig));
	return rc;
}

/* ---- client role ---- */

void scram_key_cache_wipe(struct scram_key_cache *kc)
{
	OPENSSL_cleanse(kc, sizeof(*kc));
}

int scram_client_init_password(struct scram_client *c, const char *password,
                               const char *client_nonce, struct scram_key_cache *key_cache)
{
	size_t len;

	memset(c, 0, sizeof(*c));
	c->state = SCRAM_CLIENT_INIT;
	if (password == NULL)
		return -1;
	len = strnlen(password, sizeof(c->password));
	if (len >= sizeof(c->password))
		return -1;
	memcpy(c->password, password, len + 1);
	c->have_password = true;
	c->key_cache = key_cache;
	if (nonce_setup(c->client_nonce, client_nonce) < 0) {
		OPENSSL_cleanse(c->password, sizeof(c->password));
		return -1;
	}
	return 0;
}

void scram_client_init_keys(struct scram_client *c, const uint8_t client_key[SCRAM_KEY_LEN],
                            const uint8_t server_key[SCRAM_KEY_LEN], const char *client_nonce)
{
	memset(c, 0, sizeof(*c));
	c->state = SCRAM_CLIENT_INIT;
	c->have_password = false;
	memcpy(c->client_key, client_key, SCRAM_KEY_LEN);
	memcpy(c->server_key, server_key, SCRAM_KEY_LEN);
	/* This returns void: a bad nonce leaves client_nonce empty and first fails. */
	if (nonce_setup(c->client_nonce, client_nonce) < 0)
		c->client_nonce[0] = '\0';
}

int scram_client_first(struct scram_client *c, char *out, size_t outcap)
{
	int n;

	if (c->state != SCRAM_CLIENT_INIT || c->client_nonce[0] == '\0')
		return -1;
	/*
	 * No channel binding and an empty user name: Postgres takes the user
	 * from the startup packet and ignores this one.
	 */
	n = snprintf(out, outcap, "n,,n=,r=%s", c->client_nonce);
	if (n < 0 || (size_t)n >= outcap)
		return -1;
	memcpy(c->client_first_bare, out + 3, (size_t)n - 3 + 1);
	c->state = SCRAM_CLIENT_SENT_FIRST;
	return n;
}

/* What the client needs from server-first: the joined nonce, salt and iterations. */
struct server_first_fields {
	const char *nonce;                /* points into the message */
	size_t nonce_len;                 /* bytes of nonce */
	uint8_t salt[SCRAM_MAX_SALT_LEN]; /* decoded salt */
	size_t salt_len;                  /* 1..SCRAM_MAX_SALT_LEN */
	int iterations;                   /* 1..SCRAM_MAX_ITERATIONS */
};

/* server-first: "r=" nonce ",s=" salt ",i=" iterations ["," extensions]. */
static int client_parse_server_first(const struct scram_client *c, const char *msg, size_t len,
                                     struct server_first_fields *f, const char **errmsg)
{
	struct scram_cursor cur = {msg, msg + len};
	size_t own = strlen(c->client_nonce);
	const char *val;
	size_t vlen;
	int n;

	*errmsg = "malformed SCRAM server-first-message";
	if (!is_sane_message(msg, len))
		return -1;
	if (cursor_peek(&cur) == 'm') {
		*errmsg = "SCRAM mandatory extensions are not supported";
		return -1;
	}
	if (cursor_attr(&cur, 'r', &f->nonce, &f->nonce_len) < 0)
		return -1;
	/* The server must extend our nonce; anything else could be a replay. */
	if (!is_valid_nonce(f->nonce, f->nonce_len, 2 * SCRAM_NONCE_MAX) || f->nonce_len <= own ||
	    memcmp(f->nonce, c->client_nonce, own) != 0) {
		*errmsg = "SCRAM server nonce does not extend the client nonce";
		return -1;
	}
	if (cursor_attr(&cur, 's', &val, &vlen) < 0)
		return -1;
	n = b64_decode(val, vlen, f->salt, sizeof(f->salt));
	if (n < 1)
		return -1;
	f->salt_len = (size_t)n;
	if (cursor_attr(&cur, 'i', &val, &vlen) < 0)
		return -1;
	if (parse_count(val, vlen, SCRAM_MAX_ITERATIONS, &f->iterations) < 0) {
		*errmsg = "SCRAM iteration count out of range";
		return -1;
	}
	return cursor_skip_extensions(&cur, 0);
}

/* The keys one client exchange signs with; wiped as soon as the proof is built. */
struct scram_keys {
	uint8_t client[SCRAM_KEY_LEN]; /* ClientKey: XORed into the proof */
	uint8_t stored[SCRAM_KEY_LEN]; /* StoredKey = H(ClientKey): signs the AuthMessage */
	uint8_t server[SCRAM_KEY_LEN]; /* ServerKey: predicts the server's signature */
};

/* The keys for a password and server-first's salt and iterations: cached, or derived and kept. */
static int cached_keys(struct scram_key_cache *kc, const char *password,
                       const struct server_first_fields *f, uint8_t client_key[SCRAM_KEY_LEN],
                       uint8_t server_key[SCRAM_KEY_LEN])
{
	uint8_t hash[SCRAM_KEY_LEN];
	struct scram_cached_keys *e;
	int rc = -1;

	if (sha256(password, strlen(password), hash) < 0)
		return -1;
	for (size_t i = 0; i < SCRAM_KEY_CACHE_SIZE; i++) {
		e = &kc->keys[i];
		if (e->used && e->iterations == f->iterations && e->salt_len == f->salt_len &&
		    memcmp(e->salt, f->salt, f->salt_len) == 0 &&
		    CRYPTO_memcmp(e->password_hash, hash, SCRAM_KEY_LEN) == 0) {
			memcpy(client_key, e->client_key, SCRAM_KEY_LEN);
			memcpy(server_key, e->server_key, SCRAM_KEY_LEN);
			rc = 0;
			goto out;
		}
	}
	if (keys_from_password(password, f->salt, f->salt_len, f->iterations, client_key,
	                       server_key) < 0)
		goto out;
	e = &kc->keys[kc->next++ % SCRAM_KEY_CACHE_SIZE];
	e->used = true;
	e->iterations = f->iterations;
	e->salt_len = (uint8_t)f->salt_len;
	memcpy(e->salt, f->salt, f->salt_len);
	memcpy(e->password_hash, hash, SCRAM_KEY_LEN);
	memcpy(e->client_key, client_key, SCRAM_KEY_LEN);
	memcpy(e->server_key, server_key, SCRAM_KEY_LEN);
	rc = 0;
out:
	OPENSSL_cleanse(hash, sizeof(hash));
	return rc;
}

/* ClientKey, StoredKey and ServerKey from the password or the pass-through keys. */
static int client_keys(struct scram_client *c, const struct server_first_fields *f,
                       struct scram_keys *k)
{
	if (c->have_password && c->key_cache != NULL) {
		if (cached_keys(c->key_cache, c->password, f, k->client, k->server) < 0)
			return -1;
	} else if (c->have_password) {
		if (keys_from_password(c->password, f->salt, f->salt_len, f->iterations, k->client,
		                       k->server) < 0)
			return -1;
	} else {
		memcpy(k->client, c->client_key, SCRAM_KEY_LEN);
		memcpy(k->server, c->server_key, SCRAM_KEY_LEN);
	}
	return sha256(k->client, SCRAM_KEY_LEN, k->stored);
}

/* client-final "c=biws,r=nonce,p=proof" into out; signs with the derived keys. */
static int client_build_final(struct scram_client *c, const char *server_first, size_t len,
                              const struct server_first_fields *f, const struct scram_keys *k,
                              char *out, size_t outcap)
{
	char am[SCRAM_AUTH_MSG_MAX];
	uint8_t client_sig[SCRAM_KEY_LEN], proof[SCRAM_KEY_LEN];
	int n, am_len, rc = -1;

	n = snprintf(out, outcap, "c=biws,r=%.*s", (int)f->nonce_len, f->nonce);
	if (n < 0 || (size_t)n >= outcap)
		return -1;
	am_len = auth_message_build(am, c->client_first_bare, strlen(c->client_first_bare),
	                            server_first, len, out, (size_t)n);
	if (am_len < 0 || auth_message_sign(am, (size_t)am_len, k->stored, k->server, client_sig,
	                                    c->expected_server_signature) < 0)
		goto out;
	for (int i = 0; i < SCRAM_KEY_LEN; i++)
		proof[i] = k->client[i] ^ client_sig[i];
	if ((size_t)n + 3 >= outcap)
		goto out;
	memcpy(out + n, ",p=", 3);
	if (b64_encode(proof, SCRAM_KEY_LEN, out + n + 3, outcap - (size_t)n - 3) < 0)
		goto out;
	rc = n + 3 + SCRAM_KEY_B64_LEN;
out:
	OPENSSL_cleanse(client_sig, sizeof(client_sig));
	OPENSSL_cleanse(proof, sizeof(proof));
	return rc;
}

int scram_client_final(struct scram_client *c, const char *server_first, size_t len, char *out,
                       size_t outcap, const char **errmsg)
{
	struct server_first_fields f;
	struct scram_keys keys;
	int n = -1;

	if (c->state != SCRAM_CLIENT_SENT_FIRST) {
		*errmsg = "unexpected SCRAM server-first-message";
		return -1;
	}
	if (client_parse_server_first(c, server_first, len, &f, errmsg) < 0)
		return -1;
	*errmsg = "internal error in SCRAM";
	if (client_keys(c, &f, &keys) == 0)
		n = client_build_final(c, server_first, len, &f, &keys, out, outcap);
	OPENSSL_cleanse(&keys, sizeof(keys));
	if (n < 0)
		return -1;
	/* The secrets are not needed once the proof is out; only the signature check remains. */
	OPENSSL_cleanse(c->password, sizeof(c->password));
	OPENSSL_cleanse(c->client_key, sizeof(c->client_key));
	OPENSSL_cleanse(c->server_key, sizeof(c->server_key));
	c->state = SCRAM_CLIENT_SENT_FINAL;
	return n;
}

/* Maps a server-error value ("e=...") to a fixed message; the value itself is untrusted. */
static const char *server_error_message(const char *val, size_t vlen)
{
	if (vlen == 13 && memcmp(val, "invalid-proof", 13) == 0)
		return "server rejected the SCRAM proof (wrong password?)";
	if (vlen == 12 && memcmp(val, "unknown-user", 12) == 0)
		return "server does not know the SCRAM user";
	return "server reported a SCRAM error";
}

int scram_client_verify_server(struct scram_client *c, const char *server_final, size_t len,
                               const char **errmsg)
{
	struct scram_cursor cur = {server_final, server_final + len};
	uint8_t sig[SCRAM_KEY_LEN];
	const char *val;
	size_t vlen;

	*errmsg = "malformed SCRAM server-final-message";
	if (c->state != SCRAM_CLIENT_SENT_FINAL) {
		*errmsg = "unexpected SCRAM server-final-message";
		return -1;
	}
	if (!is_sane_message(server_final, len))
		return -1;
	if (cursor_peek(&cur) == 'e') {
		if (cursor_attr(&cur, 'e', &val, &vlen) == 0)
			*errmsg = server_error_message(val, vlen);
		return -1;
	}
	if (cursor_attr(&cur, 'v', &val, &vlen) < 0 || vlen != SCRAM_KEY_B64_LEN ||
	    b64_decode(val, vlen, sig, SCRAM_KEY_LEN) != SCRAM_KEY_LEN ||
	    cursor_skip_extensions(&cur, 0) < 0)
		return -1;
	if (CRYPTO_memcmp(sig, c->expected_server_signature, SCRAM_KEY_LEN) != 0) {
		*errmsg = "SCRAM server signature does not match: the server does not know the "
		          "password";
		return -1;
	}
	return 0;
}
