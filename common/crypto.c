/* crypto.c -- node signing keys, X.509 certificates and batch signatures (OpenSSL 3 EVP). */
#include "errbuf.h"
#include "crypto.h"
#include "sm2.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* Key and certificate files are small; anything bigger is not ours. */
#define MAX_PEM_FILE (1024 * 1024)

struct tb_signer {
    EVP_PKEY *pkey;
    tb_alg_t alg;
    uint8_t sm2_z[TB_SM2_Z_LEN];    /* SM2: Z of the key and TB_SM2_ID (sm2.h) */
};

struct tb_cert {
    X509 *x509;
    EVP_PKEY *pub;          /* normalised public key (SM2 typed as SM2) */
    tb_alg_t alg;
    uint8_t sm2_z[TB_SM2_Z_LEN];    /* SM2: Z of the key and TB_SM2_ID (sm2.h) */
    char *node_id;          /* subject CN, UTF-8, no embedded NUL */
    char key_id[65];        /* hex SHA-256 of the DER */
    char *pem;              /* canonical PEM, NUL-terminated */
    size_t pem_len;
    char *source;           /* file name or "<pem>", for error messages */
};

/* ---- error helpers ---- */


/* Copies the first queued OpenSSL reason into buf and clears the queue.
 * Returns buf ("unknown error" when the queue was empty). */
const char *tb_ossl_reason(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();
    if (e == 0) {
        snprintf(buf, len, "unknown error");
    } else {
        const char *r = ERR_reason_error_string(e);
        if (r) snprintf(buf, len, "%s", r);
        else ERR_error_string_n(e, buf, len);
    }
    ERR_clear_error();
    return buf;
}

/* ---- algorithms ---- */

/* Returns the algorithm named name, TB_ALG_NONE if unknown or NULL. */
tb_alg_t tb_alg_parse(const char *name)
{
    if (!name) return TB_ALG_NONE;
    if (strcmp(name, "ed25519") == 0) return TB_ALG_ED25519;
    if (strcmp(name, "p256") == 0) return TB_ALG_P256;
    if (strcmp(name, "sm2") == 0) return TB_ALG_SM2;
    return TB_ALG_NONE;
}

/* Returns the canonical name, "none" for TB_ALG_NONE or an unknown value. */
const char *tb_alg_name(tb_alg_t alg)
{
    switch (alg) {
    case TB_ALG_ED25519: return "ed25519";
    case TB_ALG_P256: return "p256";
    case TB_ALG_SM2: return "sm2";
    default: return "none";
    }
}

/* Re-creates an EC key on the SM2 curve as an "SM2"-typed key, so that EVP
 * picks the SM2 signature and not ECDSA. selection is EVP_PKEY_KEYPAIR or
 * EVP_PKEY_PUBLIC_KEY. Returns the new key or NULL (OpenSSL error queued). */
static EVP_PKEY *ec_to_sm2(EVP_PKEY *pkey, int selection)
{
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *out = NULL;

    if (EVP_PKEY_todata(pkey, selection, &params) != 1) goto done;
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "SM2", NULL);
    if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1) goto done;
    if (EVP_PKEY_fromdata(ctx, &out, selection, params) != 1) out = NULL;
done:
    if (params) {
        /* params hold the private scalar: wipe before freeing */
        for (OSSL_PARAM *p = params; p->key; p++)
            if (p->data) OPENSSL_cleanse(p->data, p->data_size);
        OSSL_PARAM_free(params);
    }
    EVP_PKEY_CTX_free(ctx);
    return out;
}

/* Classifies pkey and, when it is an EC key on the SM2 curve, replaces
 * *pkey with an SM2-typed copy (freeing the original). Returns the
 * algorithm, TB_ALG_NONE if unsupported (then *what names the key type),
 * or TB_ALG_NONE with *what = NULL on an OpenSSL failure. */
static tb_alg_t classify_key(EVP_PKEY **pkey, int selection, const char **what)
{
    char group[64] = "";
    *what = EVP_PKEY_get0_type_name(*pkey);
    if (!*what) *what = "unknown";

    if (EVP_PKEY_is_a(*pkey, "ED25519")) return TB_ALG_ED25519;
    if (EVP_PKEY_is_a(*pkey, "SM2")) return TB_ALG_SM2;
    if (!EVP_PKEY_is_a(*pkey, "EC")) return TB_ALG_NONE;
    if (EVP_PKEY_get_group_name(*pkey, group, sizeof group, NULL) != 1) {
        ERR_clear_error();
        return TB_ALG_NONE;
    }
    if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0)
        return TB_ALG_P256;
    if (strcmp(group, "SM2") == 0) {
        EVP_PKEY *sm2 = ec_to_sm2(*pkey, selection);
        if (!sm2) {
            *what = NULL;
            return TB_ALG_NONE;
        }
        EVP_PKEY_free(*pkey);
        *pkey = sm2;
        return TB_ALG_SM2;
    }
    *what = "EC key on an unsupported curve";
    return TB_ALG_NONE;
}

/* Prepares mdctx for signing (sign != 0) or verifying with pkey of alg:
 * NULL digest for Ed25519, SHA-256 for P-256 (SM2 goes through sm2.c).
 * Returns 1 on success, 0 on failure (OpenSSL error queued). */
static int digest_init(EVP_MD_CTX *mdctx, EVP_PKEY *pkey, tb_alg_t alg, int sign)
{
    const EVP_MD *md = alg == TB_ALG_P256 ? EVP_sha256() : NULL;
    return sign ? EVP_DigestSignInit(mdctx, NULL, md, NULL, pkey) == 1
                : EVP_DigestVerifyInit(mdctx, NULL, md, NULL, pkey) == 1;
}

/* Z (sm2.h) of the SM2 key from source (a file name, for the message).
 * Returns TB_OK or the error of tb_sm2_z. */
static tb_err_t sm2_z_of(EVP_PKEY *pkey, const char *source, uint8_t z[TB_SM2_Z_LEN], char *err, size_t errlen)
{
    char e2[TB_ERRLEN];
    tb_err_t rc = tb_sm2_z(pkey, TB_SM2_ID, z, e2, sizeof e2);
    if (rc != TB_OK) tb_seterr(err, errlen, "%s: %s", source, e2);
    return rc;
}

/* ---- file reading ---- */

/* crypto.h */
tb_err_t tb_read_small_file(const char *path, int secret, char **buf, size_t *len, char *err, size_t errlen)
{
    tb_err_t rc = TB_ERR_IO;
    char *data = NULL;
    size_t n = 0;
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        tb_seterr(err, errlen, "%s: %s", path, strerror(errno));
        return TB_ERR_IO;
    }
    if (fstat(fd, &st) != 0) {
        tb_seterr(err, errlen, "%s: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        tb_seterr(err, errlen, "%s: not a regular file", path);
        goto done;
    }
    if (secret && (st.st_mode & 077)) {
        tb_seterr(err, errlen, "%s: permissions %04o are too open (must be 0600 or stricter)",
               path, (unsigned)(st.st_mode & 07777));
        rc = TB_ERR_PERM;
        goto done;
    }
    if (st.st_size > MAX_PEM_FILE) {
        tb_seterr(err, errlen, "%s: file too large (%lld bytes)", path, (long long)st.st_size);
        goto done;
    }
    data = malloc((size_t)st.st_size + 1);
    if (!data) {
        tb_seterr(err, errlen, "%s: out of memory", path);
        rc = TB_ERR_NOMEM;
        goto done;
    }
    while (n < (size_t)st.st_size) {
        ssize_t r = read(fd, data + n, (size_t)st.st_size - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            tb_seterr(err, errlen, "%s: %s", path, strerror(errno));
            goto done;
        }
        if (r == 0) break;   /* file shrank under us: use what we got */
        n += (size_t)r;
    }
    data[n] = '\0';
    *buf = data;
    *len = n;
    data = NULL;
    rc = TB_OK;
done:
    if (data) {
        OPENSSL_cleanse(data, (size_t)st.st_size + 1);
        free(data);
    }
    close(fd);
    return rc;
}

/* ---- signers ---- */

/* Refuses to prompt for a passphrase: encrypted keys are not supported.
 * Returns -1 (no password). */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf; (void)size; (void)rwflag; (void)u;
    return -1;
}

/* Loads a PEM private key (0600 or stricter). Returns TB_OK with *out, or
 * TB_ERR_IO (unreadable), TB_ERR_PERM (too open), TB_ERR_CRYPTO (not a
 * supported key), TB_ERR_NOMEM, TB_ERR_INVALID. */
tb_err_t tb_signer_load(const char *path, tb_signer_t **out, char *err, size_t errlen)
{
    tb_err_t rc;
    char *data = NULL;
    size_t len = 0;
    BIO *bio = NULL;
    EVP_PKEY *pkey = NULL;
    tb_signer_t *self = NULL;
    char reason[256];

    if (!path || !out) {
        tb_seterr(err, errlen, "tb_signer_load: NULL argument");
        return TB_ERR_INVALID;
    }
    *out = NULL;
    rc = tb_read_small_file(path, 1, &data, &len, err, errlen);
    if (rc != TB_OK) return rc;

    rc = TB_ERR_CRYPTO;
    bio = BIO_new_mem_buf(data, (int)len);
    if (!bio) {
        tb_seterr(err, errlen, "%s: %s", path, tb_ossl_reason(reason, sizeof reason));
        goto done;
    }
    pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
    if (!pkey) {
        tb_seterr(err, errlen, "%s: not a PEM private key (%s)", path,
               tb_ossl_reason(reason, sizeof reason));
        goto done;
    }
    const char *what;
    tb_alg_t alg = classify_key(&pkey, EVP_PKEY_KEYPAIR, &what);
    if (alg == TB_ALG_NONE) {
        if (what)
            tb_seterr(err, errlen, "%s: unsupported key type %s (need ed25519, p256 or sm2)",
                   path, what);
        else
            tb_seterr(err, errlen, "%s: cannot convert SM2 key (%s)", path,
                   tb_ossl_reason(reason, sizeof reason));
        goto done;
    }
    self = calloc(1, sizeof *self);
    if (!self) {
        tb_seterr(err, errlen, "%s: out of memory", path);
        rc = TB_ERR_NOMEM;
        goto done;
    }
    if (alg == TB_ALG_SM2 && (rc = sm2_z_of(pkey, path, self->sm2_z, err, errlen)) != TB_OK) {
        free(self);
        goto done;
    }
    self->pkey = pkey;
    self->alg = alg;
    pkey = NULL;
    *out = self;
    rc = TB_OK;
done:
    EVP_PKEY_free(pkey);
    BIO_free(bio);
    OPENSSL_cleanse(data, len);
    free(data);
    return rc;
}

/* Frees the signer and nulls *self (NULL-safe). Returns nothing. */
void tb_signer_destroy(tb_signer_t **self)
{
    if (!self || !*self) return;
    EVP_PKEY_free((*self)->pkey);
    free(*self);
    *self = NULL;
}

/* Returns the signer's algorithm (TB_ALG_NONE for NULL). */
tb_alg_t tb_signer_alg(const tb_signer_t *self)
{
    return self ? self->alg : TB_ALG_NONE;
}

/* Returns the signer's private key (borrowed; for pki.c). */
struct evp_pkey_st *tb_signer_pkey(const tb_signer_t *self)
{
    return self ? self->pkey : NULL;
}

/* Signs data. Returns TB_OK with *sig (malloc'ed) and *siglen, or
 * TB_ERR_CRYPTO / TB_ERR_NOMEM / TB_ERR_INVALID. */
tb_err_t tb_signer_sign(tb_signer_t *self, const uint8_t *data, size_t len,
                        uint8_t **sig, size_t *siglen, char *err, size_t errlen)
{
    tb_err_t rc = TB_ERR_CRYPTO;
    EVP_MD_CTX *mdctx = NULL;
    uint8_t *buf = NULL;
    size_t n = 0;
    char reason[256];
    static const uint8_t empty[1] = { 0 };

    if (!self || !sig || !siglen || (!data && len)) {
        tb_seterr(err, errlen, "tb_signer_sign: NULL argument");
        return TB_ERR_INVALID;
    }
    *sig = NULL;
    *siglen = 0;
    if (!data) data = empty;
    if (self->alg == TB_ALG_SM2) return tb_sm2_sign(self->pkey, self->sm2_z, data, len, sig, siglen, err, errlen);

    mdctx = EVP_MD_CTX_new();
    if (!mdctx || !digest_init(mdctx, self->pkey, self->alg, 1)) {
        tb_seterr(err, errlen, "%s sign init failed: %s", tb_alg_name(self->alg),
               tb_ossl_reason(reason, sizeof reason));
        goto done;
    }
    if (EVP_DigestSign(mdctx, NULL, &n, data, len) != 1 || n == 0) {
        tb_seterr(err, errlen, "%s sign failed: %s", tb_alg_name(self->alg),
               tb_ossl_reason(reason, sizeof reason));
        goto done;
    }
    buf = malloc(n);
    if (!buf) {
        tb_seterr(err, errlen, "%s sign: out of memory", tb_alg_name(self->alg));
        rc = TB_ERR_NOMEM;
        goto done;
    }
    if (EVP_DigestSign(mdctx, buf, &n, data, len) != 1) {
        tb_seterr(err, errlen, "%s sign failed: %s", tb_alg_name(self->alg),
               tb_ossl_reason(reason, sizeof reason));
        goto done;
    }
    *sig = buf;
    *siglen = n;
    buf = NULL;
    rc = TB_OK;
done:
    free(buf);
    EVP_MD_CTX_free(mdctx);
    return rc;
}

tb_err_t tb_sha256(const uint8_t *data, size_t len, uint8_t out[TB_SHA256_LEN])
{
    static const uint8_t empty[1] = { 0 };
    unsigned n = 0;
    if (EVP_Digest(data ? data : empty, len, out, &n, EVP_sha256(), NULL) != 1 || n != TB_SHA256_LEN)
        return TB_ERR_CRYPTO;
    return TB_OK;
}

/* ---- certificates ---- */

/* Extracts the single subject commonName as a malloc'ed UTF-8 string.
 * Returns it, or NULL (and a reason in err) if absent, repeated, empty or
 * containing a NUL. */
static char *subject_cn(X509 *x, const char *source, char *err, size_t errlen)
{
    X509_NAME *name = X509_get_subject_name(x);
    int idx = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
    if (idx < 0) {
        tb_seterr(err, errlen, "%s: certificate subject has no commonName (node id)", source);
        return NULL;
    }
    if (X509_NAME_get_index_by_NID(name, NID_commonName, idx) >= 0) {
        tb_seterr(err, errlen, "%s: certificate subject has several commonNames", source);
        return NULL;
    }
    ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
    unsigned char *utf8 = NULL;
    int n = d ? ASN1_STRING_to_UTF8(&utf8, d) : -1;
    if (n <= 0 || (size_t)n != strlen((char *)utf8)) {
        ERR_clear_error();
        OPENSSL_free(utf8);
        tb_seterr(err, errlen, "%s: certificate commonName is empty or malformed", source);
        return NULL;
    }
    char *cn = strdup((char *)utf8);
    OPENSSL_free(utf8);
    if (!cn) tb_seterr(err, errlen, "%s: out of memory", source);
    return cn;
}

/* Builds a tb_cert around x (takes ownership of x on success and on
 * failure). Returns TB_OK, TB_ERR_CERT (no CN), TB_ERR_CRYPTO or
 * TB_ERR_NOMEM. */
static tb_err_t cert_wrap(X509 *x, const char *source, tb_cert_t **out, char *err, size_t errlen)
{
    tb_err_t rc = TB_ERR_CRYPTO;
    tb_cert_t *self = NULL;
    BIO *bio = NULL;
    unsigned char *der = NULL;
    char reason[256];

    self = calloc(1, sizeof *self);
    if (!self || !(self->source = strdup(source))) {
        tb_seterr(err, errlen, "%s: out of memory", source);
        rc = TB_ERR_NOMEM;
        goto fail;
    }
    self->x509 = x;
    x = NULL;

    /* SM2-with-SM3 signatures are verified with the distinguishing ID kept
     * in the certificate; without it OpenSSL 3.0 uses an empty ID. */
    if (X509_get_signature_nid(self->x509) == NID_SM2_with_SM3) {
        ASN1_OCTET_STRING *id = ASN1_OCTET_STRING_new();
        if (!id || ASN1_OCTET_STRING_set(id, (const unsigned char *)TB_SM2_ID,
                                         (int)strlen(TB_SM2_ID)) != 1) {
            ASN1_OCTET_STRING_free(id);
            tb_seterr(err, errlen, "%s: %s", source, tb_ossl_reason(reason, sizeof reason));
            goto fail;
        }
        X509_set0_distinguishing_id(self->x509, id);
    }

    self->pub = X509_get_pubkey(self->x509);   /* new reference */
    if (!self->pub) {
        tb_seterr(err, errlen, "%s: cannot decode the certificate public key (%s)", source,
               tb_ossl_reason(reason, sizeof reason));
        goto fail;
    }
    const char *what;
    self->alg = classify_key(&self->pub, EVP_PKEY_PUBLIC_KEY, &what);
    if (self->alg == TB_ALG_NONE) {
        if (what)
            tb_seterr(err, errlen, "%s: unsupported certificate key type %s (need ed25519, p256 or sm2)",
                   source, what);
        else
            tb_seterr(err, errlen, "%s: cannot convert SM2 key (%s)", source,
                   tb_ossl_reason(reason, sizeof reason));
        goto fail;
    }
    if (self->alg == TB_ALG_SM2 && sm2_z_of(self->pub, source, self->sm2_z, err, errlen) != TB_OK)
        goto fail;   /* rc is TB_ERR_CRYPTO */

    self->node_id = subject_cn(self->x509, source, err, errlen);
    if (!self->node_id) {
        rc = TB_ERR_CERT;
        goto fail;
    }

    int derlen = i2d_X509(self->x509, &der);
    unsigned char md[TB_SHA256_LEN];
    if (derlen <= 0 || tb_sha256(der, (size_t)derlen, md) != TB_OK) {
        tb_seterr(err, errlen, "%s: cannot hash certificate (%s)", source,
               tb_ossl_reason(reason, sizeof reason));
        goto fail;
    }
    for (unsigned i = 0; i < 32; i++)
        snprintf(self->key_id + 2 * i, 3, "%02x", md[i]);

    BUF_MEM *mem = NULL;
    bio = BIO_new(BIO_s_mem());
    if (!bio || PEM_write_bio_X509(bio, self->x509) != 1) {
        tb_seterr(err, errlen, "%s: cannot encode certificate (%s)", source,
               tb_ossl_reason(reason, sizeof reason));
        goto fail;
    }
    BIO_get_mem_ptr(bio, &mem);
    self->pem = malloc(mem->length + 1);
    if (!self->pem) {
        tb_seterr(err, errlen, "%s: out of memory", source);
        rc = TB_ERR_NOMEM;
        goto fail;
    }
    memcpy(self->pem, mem->data, mem->length);
    self->pem[mem->length] = '\0';
    self->pem_len = mem->length;

    BIO_free(bio);
    OPENSSL_free(der);
    *out = self;
    return TB_OK;
fail:
    BIO_free(bio);
    OPENSSL_free(der);
    X509_free(x);
    tb_cert_destroy(&self);
    return rc;
}

/* Parses the first PEM certificate in pem[0..len). Returns TB_OK, or the
 * error of cert_wrap / TB_ERR_CRYPTO naming source. */
static tb_err_t cert_from_pem(const uint8_t *pem, size_t len, const char *source,
                              tb_cert_t **out, char *err, size_t errlen)
{
    char reason[256];
    if (len > INT_MAX) {
        tb_seterr(err, errlen, "%s: certificate too large", source);
        return TB_ERR_INVALID;
    }
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio) {
        tb_seterr(err, errlen, "%s: %s", source, tb_ossl_reason(reason, sizeof reason));
        return TB_ERR_NOMEM;
    }
    X509 *x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL);
    BIO_free(bio);
    if (!x) {
        tb_seterr(err, errlen, "%s: not a PEM certificate (%s)", source,
               tb_ossl_reason(reason, sizeof reason));
        return TB_ERR_CRYPTO;
    }
    return cert_wrap(x, source, out, err, errlen);
}

/* Loads the first PEM certificate of path. Returns TB_OK with *out, or
 * TB_ERR_IO, TB_ERR_CRYPTO (not a supported certificate), TB_ERR_CERT (no
 * commonName), TB_ERR_NOMEM, TB_ERR_INVALID. */
tb_err_t tb_cert_load_file(const char *path, tb_cert_t **out, char *err, size_t errlen)
{
    char *data = NULL;
    size_t len = 0;
    if (!path || !out) {
        tb_seterr(err, errlen, "tb_cert_load_file: NULL argument");
        return TB_ERR_INVALID;
    }
    *out = NULL;
    tb_err_t rc = tb_read_small_file(path, 0, &data, &len, err, errlen);
    if (rc != TB_OK) return rc;
    rc = cert_from_pem((const uint8_t *)data, len, path, out, err, errlen);
    free(data);
    return rc;
}

/* Like tb_cert_load_file from memory. Returns the same codes (no TB_ERR_IO). */
tb_err_t tb_cert_load_pem(const uint8_t *pem, size_t len, tb_cert_t **out, char *err, size_t errlen)
{
    if (!pem || !out) {
        tb_seterr(err, errlen, "tb_cert_load_pem: NULL argument");
        return TB_ERR_INVALID;
    }
    *out = NULL;
    return cert_from_pem(pem, len, "<pem>", out, err, errlen);
}

/* Frees the certificate and nulls *self (NULL-safe). Returns nothing. */
void tb_cert_destroy(tb_cert_t **self)
{
    if (!self || !*self) return;
    tb_cert_t *c = *self;
    X509_free(c->x509);
    EVP_PKEY_free(c->pub);
    free(c->node_id);
    free(c->pem);
    free(c->source);
    free(c);
    *self = NULL;
}

/* Returns the certificate (borrowed; for pki.c). */
struct x509_st *tb_cert_x509(const tb_cert_t *self)
{
    return self ? self->x509 : NULL;
}

/* Verifies cert against ca as the only trust anchor (signature, dates,
 * CA:TRUE on ca). Returns TB_OK, TB_ERR_CERT with the OpenSSL reason, or
 * TB_ERR_CRYPTO / TB_ERR_INVALID. */
tb_err_t tb_cert_verify_issued_by(tb_cert_t *cert, tb_cert_t *ca, char *err, size_t errlen)
{
    tb_err_t rc = TB_ERR_CERT;
    X509_STORE *store = NULL;
    X509_STORE_CTX *ctx = NULL;
    char reason[256];

    if (!cert || !ca) {
        tb_seterr(err, errlen, "tb_cert_verify_issued_by: NULL argument");
        return TB_ERR_INVALID;
    }
    if (X509_check_ca(ca->x509) != 1) {
        ERR_clear_error();
        tb_seterr(err, errlen, "%s: CA certificate %s is not a CA (basicConstraints CA:TRUE missing)",
               ca->source, ca->node_id);
        return TB_ERR_CERT;
    }
    store = X509_STORE_new();
    ctx = X509_STORE_CTX_new();
    if (!store || !ctx || X509_STORE_add_cert(store, ca->x509) != 1) {
        tb_seterr(err, errlen, "%s: cannot build trust store (%s)", ca->source,
               tb_ossl_reason(reason, sizeof reason));
        rc = TB_ERR_CRYPTO;
        goto done;
    }
    /* The given CA is the trust anchor even if it is not self-signed. */
    X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN);
    if (X509_STORE_CTX_init(ctx, store, cert->x509, NULL) != 1) {
        tb_seterr(err, errlen, "%s: cannot init verification (%s)", cert->source,
               tb_ossl_reason(reason, sizeof reason));
        rc = TB_ERR_CRYPTO;
        goto done;
    }
    if (X509_verify_cert(ctx) == 1) {
        rc = TB_OK;
    } else {
        int e = X509_STORE_CTX_get_error(ctx);
        tb_seterr(err, errlen, "%s: certificate %s not verified by CA %s: %s", cert->source,
               cert->node_id, ca->node_id, X509_verify_cert_error_string(e));
    }
    ERR_clear_error();
done:
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return rc;
}

/* Returns the subject commonName (NULL only for a NULL cert). */
const char *tb_cert_node_id(const tb_cert_t *self)
{
    return self ? self->node_id : NULL;
}

/* Returns the algorithm of the certificate's public key. */
tb_alg_t tb_cert_alg(const tb_cert_t *self)
{
    return self ? self->alg : TB_ALG_NONE;
}

/* Returns the lowercase hex SHA-256 of the DER (NULL for a NULL cert). */
const char *tb_cert_key_id(const tb_cert_t *self)
{
    return self ? self->key_id : NULL;
}

/* Returns whole days until notAfter, negative when expired (0 for NULL). */
long tb_cert_days_left(const tb_cert_t *self)
{
    int days = 0, secs = 0;
    if (!self) return 0;
    if (ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(self->x509)) != 1) {
        ERR_clear_error();
        return 0;
    }
    return days;
}

/* Returns the PEM text owned by the cert and sets *len (NULL for NULL). */
const char *tb_cert_pem(const tb_cert_t *self, size_t *len)
{
    if (!self) return NULL;
    if (len) *len = self->pem_len;
    return self->pem;
}

/* Returns TB_OK when signer holds the private half of cert's public key,
 * TB_ERR_CRYPTO when not, TB_ERR_INVALID on NULL. */
tb_err_t tb_cert_matches_signer(const tb_cert_t *cert, const tb_signer_t *signer,
                                char *err, size_t errlen)
{
    if (!cert || !signer) {
        tb_seterr(err, errlen, "tb_cert_matches_signer: NULL argument");
        return TB_ERR_INVALID;
    }
    int eq = cert->alg == signer->alg ? EVP_PKEY_eq(cert->pub, signer->pkey) : 0;
    ERR_clear_error();
    if (eq == 1) return TB_OK;
    tb_seterr(err, errlen, "%s: certificate %s (%s) does not match the signing key (%s)",
           cert->source, cert->node_id, tb_alg_name(cert->alg), tb_alg_name(signer->alg));
    return TB_ERR_CRYPTO;
}

/* Verifies sig over data with the certificate's key. Returns TB_OK,
 * TB_ERR_BADSIG (wrong, malformed or empty signature), TB_ERR_CRYPTO (could
 * not run the check) or TB_ERR_INVALID. */
tb_err_t tb_cert_verify(const tb_cert_t *self, const uint8_t *data, size_t len,
                        const uint8_t *sig, size_t siglen, char *err, size_t errlen)
{
    tb_err_t rc = TB_ERR_CRYPTO;
    char reason[256];
    static const uint8_t empty[1] = { 0 };

    if (!self || (!data && len)) {
        tb_seterr(err, errlen, "tb_cert_verify: NULL argument");
        return TB_ERR_INVALID;
    }
    if (!sig || siglen == 0) {
        tb_seterr(err, errlen, "bad signature from %s: empty", self->node_id);
        return TB_ERR_BADSIG;
    }
    if (!data) data = empty;
    if (self->alg == TB_ALG_SM2) {
        char e2[TB_ERRLEN];
        rc = tb_sm2_verify(self->pub, self->sm2_z, data, len, sig, siglen, e2, sizeof e2);
        if (rc != TB_OK) tb_seterr(err, errlen, "%s: %s", self->node_id, e2);
        return rc;
    }
    EVP_MD_CTX *mdctx = EVP_MD_CTX_new();
    if (!mdctx || !digest_init(mdctx, self->pub, self->alg, 0)) {
        tb_seterr(err, errlen, "%s verify init failed for %s: %s", tb_alg_name(self->alg),
               self->node_id, tb_ossl_reason(reason, sizeof reason));
        goto done;
    }
    /* 1 = valid; 0 = mismatch; < 0 = e.g. a malformed DER signature, which
     * is just as much a bad signature from the peer's side. */
    if (EVP_DigestVerify(mdctx, sig, siglen, data, len) == 1) {
        rc = TB_OK;
        ERR_clear_error();
    } else {
        rc = TB_ERR_BADSIG;
        if (ERR_peek_error())
            tb_seterr(err, errlen, "bad %s signature from %s (%s)", tb_alg_name(self->alg),
                   self->node_id, tb_ossl_reason(reason, sizeof reason));
        else
            tb_seterr(err, errlen, "bad %s signature from %s", tb_alg_name(self->alg),
                   self->node_id);
    }
done:
    EVP_MD_CTX_free(mdctx);
    return rc;
}
