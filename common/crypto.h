/* crypto.h -- node signing keys, X.509 certificates and batch signatures.
 *
 * Algorithms: Ed25519 (default), ECDSA P-256 with SHA-256, SM2 with SM3
 * (distinguishing ID "1234567812345678", set explicitly on every sign,
 * verify and certificate check). Built on OpenSSL 3 EVP; an SM2
 * signature's SM3 digest is libgcrypt's (sm2.h).
 *
 * Every function that can fail returns a tb_err_t and, when err != NULL,
 * writes one human-readable line into err (what failed, which file).
 */
#ifndef TB_CRYPTO_H
#define TB_CRYPTO_H

#include <stddef.h>
#include <stdint.h>
#include <tongban/tongban.h>

#define TB_SM2_ID "1234567812345678"
#define TB_ERRLEN 512

typedef enum { TB_ALG_NONE = 0, TB_ALG_ED25519 = 1, TB_ALG_P256 = 2, TB_ALG_SM2 = 3 } tb_alg_t;

/* "ed25519" | "p256" | "sm2" <-> tb_alg_t. parse returns TB_ALG_NONE if unknown. */
tb_alg_t tb_alg_parse(const char *name);
const char *tb_alg_name(tb_alg_t alg);

/* Copies the first queued OpenSSL reason into buf and clears OpenSSL's
 * error queue. Returns buf ("unknown error" when the queue was empty). */
const char *tb_ossl_reason(char *buf, size_t len);

/* Reads a whole small file (key, certificate: at most 1 MiB). When secret,
 * refuses group/other permission bits. Returns TB_OK with *buf (malloc'ed,
 * NUL-terminated; the caller cleanses and frees) and *len; TB_ERR_IO
 * (missing, not a regular file, too large, read error), TB_ERR_PERM or
 * TB_ERR_NOMEM, with the file named in err. */
tb_err_t tb_read_small_file(const char *path, int secret, char **buf, size_t *len, char *err, size_t errlen);

/* ---- private keys ---- */
typedef struct tb_signer tb_signer_t;

/* Loads a PEM private key. Refuses (TB_ERR_PERM) a file readable or writable
 * by group or others, TB_ERR_IO if missing, TB_ERR_CRYPTO if not a key of a
 * supported algorithm. */
tb_err_t tb_signer_load(const char *path, tb_signer_t **out, char *err, size_t errlen);
void tb_signer_destroy(tb_signer_t **self);
tb_alg_t tb_signer_alg(const tb_signer_t *self);

/* Signs data; *sig is malloc'ed (caller frees), *siglen set. */
tb_err_t tb_signer_sign(tb_signer_t *self, const uint8_t *data, size_t len,
                        uint8_t **sig, size_t *siglen, char *err, size_t errlen);

/* ---- certificates ---- */
typedef struct tb_cert tb_cert_t;

tb_err_t tb_cert_load_file(const char *path, tb_cert_t **out, char *err, size_t errlen);
tb_err_t tb_cert_load_pem(const uint8_t *pem, size_t len, tb_cert_t **out, char *err, size_t errlen);
void tb_cert_destroy(tb_cert_t **self);

/* Checks that cert was issued by ca (signature, validity dates, CA flag on
 * ca). Returns TB_OK or TB_ERR_CERT with the OpenSSL reason in err. */
tb_err_t tb_cert_verify_issued_by(tb_cert_t *cert, tb_cert_t *ca, char *err, size_t errlen);

/* The node id: the subject's commonName. Never NULL for a loaded cert. */
const char *tb_cert_node_id(const tb_cert_t *self);
tb_alg_t tb_cert_alg(const tb_cert_t *self);
/* Hex SHA-256 of the DER encoding (64 chars + NUL): the signer_key_id. */
const char *tb_cert_key_id(const tb_cert_t *self);
/* Whole days until notAfter (negative when expired). */
long tb_cert_days_left(const tb_cert_t *self);
/* The certificate as PEM (owned by the cert). */
const char *tb_cert_pem(const tb_cert_t *self, size_t *len);

/* TB_OK when the signer's key is the certificate's public key. */
tb_err_t tb_cert_matches_signer(const tb_cert_t *cert, const tb_signer_t *signer,
                                char *err, size_t errlen);

/* Verifies sig over data with the certificate's public key.
 * TB_OK, TB_ERR_BADSIG (does not verify), or TB_ERR_CRYPTO. */
tb_err_t tb_cert_verify(const tb_cert_t *self, const uint8_t *data, size_t len,
                        const uint8_t *sig, size_t siglen, char *err, size_t errlen);

/* SHA-256 of data into out. Returns TB_OK or TB_ERR_CRYPTO. */
#define TB_SHA256_LEN 32
tb_err_t tb_sha256(const uint8_t *data, size_t len, uint8_t out[TB_SHA256_LEN]);

/* ---- for pki.c only: the underlying OpenSSL objects (borrowed, not owned) ---- */
struct evp_pkey_st;
struct x509_st;
struct evp_pkey_st *tb_signer_pkey(const tb_signer_t *self);
struct x509_st *tb_cert_x509(const tb_cert_t *self);

#endif
