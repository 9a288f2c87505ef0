/* pki.c -- the national CA and node enrolment: keys, certificates, CURVE pairs on disk. */
#include "errbuf.h"
#include "pki.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <zmq.h>

/* Certificates start this many seconds in the past, to absorb clock skew
 * between the CA host and the nodes. */
#define NOT_BEFORE_SKEW (-300L)
#define MAX_DAYS 36500
#define NODE_ID_MAX 64

static const char z85_alphabet[] =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/* A file to create: written only if none of a set exists, removed again if
 * a later file of the set fails. */
typedef struct {
    char path[PATH_MAX];
    mode_t mode;
    const void *data;
    size_t len;
    int created;
} outfile_t;


/* Returns 1 if id is 1..64 characters of [A-Za-z0-9_.-], else 0. */
static int valid_node_id(const char *id)
{
    size_t n = 0;
    if (!id) return 0;
    for (; id[n]; n++) {
        char c = id[n];
        if (n >= NODE_ID_MAX) return 0;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return n > 0;
}

/* Returns 1 if name is a non-empty string without control characters. */
static int valid_ca_name(const char *name)
{
    if (!name || !*name) return 0;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p < 0x20 || *p == 0x7f) return 0;
    return 1;
}

/* Joins dir and name into out. Returns 0, or -1 if it does not fit. */
static int join(char *out, size_t outlen, const char *dir, const char *name)
{
    int n = snprintf(out, outlen, "%s/%s", dir, name);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* Creates dir and its missing parents (mode 0700). Returns TB_OK,
 * TB_ERR_INVALID (path too long) or TB_ERR_IO. */
static tb_err_t make_dir(const char *dir, char *err, size_t errlen)
{
    char buf[PATH_MAX];
    struct stat st;
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof buf) {
        tb_seterr(err, errlen, "%s: invalid directory name", dir);
        return TB_ERR_INVALID;
    }
    memcpy(buf, dir, n + 1);
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST) {
            tb_seterr(err, errlen, "%s: cannot create directory: %s", buf, strerror(errno));
            return TB_ERR_IO;
        }
        *p = c;
        if (c == '\0') break;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        tb_seterr(err, errlen, "%s: not a directory", dir);
        return TB_ERR_IO;
    }
    return TB_OK;
}

/* Creates path exclusively with mode and writes data. Returns TB_OK,
 * TB_ERR_DUPLICATE (already exists) or TB_ERR_IO (nothing left behind). */
static tb_err_t write_new_file(const char *path, mode_t mode, const void *data, size_t len,
                               char *err, size_t errlen)
{
    /* O_EXCL: never overwrite, never follow a planted symlink; the mode is
     * applied at creation, so a secret is never briefly readable by others */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        if (errno == EEXIST) {
            tb_seterr(err, errlen, "%s: already exists (refusing to overwrite)", path);
            return TB_ERR_DUPLICATE;
        }
        tb_seterr(err, errlen, "%s: %s", path, strerror(errno));
        return TB_ERR_IO;
    }
    const char *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t w = write(fd, p + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) goto fail;
        done += (size_t)w;
    }
    if (fsync(fd) != 0) goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    return TB_OK;
fail:
    tb_seterr(err, errlen, "%s: write failed: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    unlink(path);
    return TB_ERR_IO;
}

/* Writes all files, or none: refuses up front if any exists, and removes
 * the ones already written when a later one fails. Returns TB_OK,
 * TB_ERR_DUPLICATE or TB_ERR_IO. */
static tb_err_t write_all(outfile_t *files, size_t n, char *err, size_t errlen)
{
    struct stat st;
    for (size_t i = 0; i < n; i++) {
        if (lstat(files[i].path, &st) == 0) {
            tb_seterr(err, errlen, "%s: already exists (refusing to overwrite)", files[i].path);
            return TB_ERR_DUPLICATE;
        }
    }
    for (size_t i = 0; i < n; i++) {
        tb_err_t rc = write_new_file(files[i].path, files[i].mode, files[i].data,
                                     files[i].len, err, errlen);
        if (rc != TB_OK) {
            for (size_t j = 0; j < i; j++)
                if (files[j].created) unlink(files[j].path);
            return rc;
        }
        files[i].created = 1;
    }
    return TB_OK;
}

/* Generates a key of alg. Returns it or NULL (OpenSSL error queued). */
static EVP_PKEY *keygen(tb_alg_t alg)
{
    switch (alg) {
    case TB_ALG_ED25519: return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    case TB_ALG_P256: return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    case TB_ALG_SM2: return EVP_PKEY_Q_keygen(NULL, NULL, "SM2");
    default: return NULL;
    }
}

/* Encodes pkey as unencrypted PKCS#8 PEM in a BIO that wipes itself on
 * free. Returns the BIO (caller frees) or NULL. */
static BIO *key_pem(EVP_PKEY *pkey)
{
    BIO *bio = BIO_new(BIO_s_secmem());
    if (bio && PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) != 1) {
        BIO_free(bio);
        bio = NULL;
    }
    return bio;
}

/* Encodes x as PEM. Returns a memory BIO (caller frees) or NULL. */
static BIO *cert_pem(X509 *x)
{
    BIO *bio = BIO_new(BIO_s_mem());
    if (bio && PEM_write_bio_X509(bio, x) != 1) {
        BIO_free(bio);
        bio = NULL;
    }
    return bio;
}

/* Adds one extension given in openssl.cnf syntax. Returns 1 or 0. */
static int add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    if (!ex) return 0;
    int ok = X509_add_ext(x, ex, -1) == 1;
    X509_EXTENSION_free(ex);
    return ok;
}

/* Signs x with the issuer key of alg: no digest for Ed25519, SHA-256 for
 * P-256, SM3 with the distinguishing ID for SM2. Returns 1 or 0. */
static int sign_cert(X509 *x, EVP_PKEY *key, tb_alg_t alg)
{
    if (alg == TB_ALG_ED25519) return X509_sign(x, key, NULL) > 0;
    if (alg == TB_ALG_P256) return X509_sign(x, key, EVP_sha256()) > 0;
    if (alg != TB_ALG_SM2) return 0;

    int ok = 0;
    EVP_MD_CTX *mdctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new(key, NULL);
    if (!mdctx || !pctx) goto done;
    if (EVP_PKEY_CTX_set1_id(pctx, TB_SM2_ID, strlen(TB_SM2_ID)) <= 0) goto done;
    EVP_MD_CTX_set_pkey_ctx(mdctx, pctx);   /* pctx stays ours to free */
    if (EVP_DigestSignInit(mdctx, NULL, EVP_sm3(), NULL, key) != 1) goto done;
    ok = X509_sign_ctx(x, mdctx) > 0;
done:
    EVP_MD_CTX_free(mdctx);
    EVP_PKEY_CTX_free(pctx);
    return ok;
}

/* Builds and signs a certificate: subject O=tongban, CN=cn, public key pub,
 * valid days. For a CA (issuer == NULL) it is self-signed with CA:TRUE;
 * otherwise an end-entity certificate signed by issuer/issuer_key.
 * Returns the certificate or NULL (OpenSSL error queued). */
static X509 *make_cert(const char *cn, EVP_PKEY *pub, int days, X509 *issuer,
                       EVP_PKEY *issuer_key, tb_alg_t issuer_alg)
{
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    BIGNUM *bn = NULL;
    ASN1_INTEGER *serial = NULL;
    unsigned char rnd[16];
    int ok = 0;
    X509V3_CTX ctx;

    if (!x || !name) goto done;
    if (X509_set_version(x, X509_VERSION_3) != 1) goto done;

    /* 128-bit random positive serial (top bit clear, fixed length) */
    if (RAND_bytes(rnd, sizeof rnd) != 1) goto done;
    rnd[0] = (unsigned char)((rnd[0] & 0x7f) | 0x40);
    if (!(bn = BN_bin2bn(rnd, sizeof rnd, NULL))) goto done;
    if (!(serial = BN_to_ASN1_INTEGER(bn, NULL))) goto done;
    if (X509_set_serialNumber(x, serial) != 1) goto done;

    if (!X509_gmtime_adj(X509_getm_notBefore(x), NOT_BEFORE_SKEW)) goto done;
    if (!X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL)) goto done;

    if (X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                                   (const unsigned char *)"tongban", -1, -1, 0) != 1)
        goto done;
    if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                                   (const unsigned char *)cn, -1, -1, 0) != 1)
        goto done;
    if (X509_set_subject_name(x, name) != 1) goto done;
    if (X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) != 1) goto done;
    if (X509_set_pubkey(x, pub) != 1) goto done;

    X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
    if (!issuer) {
        if (!add_ext(x, &ctx, NID_basic_constraints, "critical,CA:TRUE")) goto done;
        if (!add_ext(x, &ctx, NID_key_usage, "critical,keyCertSign,cRLSign")) goto done;
        if (!add_ext(x, &ctx, NID_subject_key_identifier, "hash")) goto done;
    } else {
        if (!add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE")) goto done;
        if (!add_ext(x, &ctx, NID_key_usage, "critical,digitalSignature")) goto done;
        if (!add_ext(x, &ctx, NID_subject_key_identifier, "hash")) goto done;
        if (!add_ext(x, &ctx, NID_authority_key_identifier, "keyid:always")) goto done;
    }
    ok = sign_cert(x, issuer_key, issuer_alg);
done:
    OPENSSL_cleanse(rnd, sizeof rnd);
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    X509_NAME_free(name);
    if (!ok) {
        X509_free(x);
        x = NULL;
    }
    return x;
}

/* Returns TB_OK if days is in 1..36500, else TB_ERR_INVALID. */
static tb_err_t check_days(int days, char *err, size_t errlen)
{
    if (days >= 1 && days <= MAX_DAYS) return TB_OK;
    tb_seterr(err, errlen, "validity %d days out of range (1..%d)", days, MAX_DAYS);
    return TB_ERR_INVALID;
}

/* Returns TB_OK if alg is a supported algorithm, else TB_ERR_INVALID. */
static tb_err_t check_alg(tb_alg_t alg, char *err, size_t errlen)
{
    if (alg == TB_ALG_ED25519 || alg == TB_ALG_P256 || alg == TB_ALG_SM2) return TB_OK;
    tb_seterr(err, errlen, "unsupported algorithm %d (need ed25519, p256 or sm2)", (int)alg);
    return TB_ERR_INVALID;
}

/* Creates dir (0700) with ca.key (0600) and a self-signed ca.crt. Returns
 * TB_OK, TB_ERR_INVALID (arguments), TB_ERR_DUPLICATE (a file exists),
 * TB_ERR_IO or TB_ERR_CRYPTO; on error no file is left behind. */
tb_err_t tb_pki_init_ca(const char *dir, const char *name, tb_alg_t alg, int days,
                        char *err, size_t errlen)
{
    tb_err_t rc;
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    BIO *kbio = NULL, *cbio = NULL;
    char reason[256];
    outfile_t files[2];

    if (!dir || !*dir) {
        tb_seterr(err, errlen, "tb_pki_init_ca: no directory given");
        return TB_ERR_INVALID;
    }
    if (!valid_ca_name(name)) {
        tb_seterr(err, errlen, "invalid CA name (must be non-empty, no control characters)");
        return TB_ERR_INVALID;
    }
    if ((rc = check_alg(alg, err, errlen)) != TB_OK) return rc;
    if ((rc = check_days(days, err, errlen)) != TB_OK) return rc;

    memset(files, 0, sizeof files);
    if (join(files[0].path, sizeof files[0].path, dir, "ca.key") != 0
        || join(files[1].path, sizeof files[1].path, dir, "ca.crt") != 0) {
        tb_seterr(err, errlen, "%s: path too long", dir);
        return TB_ERR_INVALID;
    }
    if ((rc = make_dir(dir, err, errlen)) != TB_OK) return rc;

    rc = TB_ERR_CRYPTO;
    if (!(key = keygen(alg))) {
        tb_seterr(err, errlen, "%s: %s key generation failed: %s", dir, tb_alg_name(alg),
               tb_ossl_reason(reason, sizeof reason));
        goto done;
    }
    if (!(x = make_cert(name, key, days, NULL, key, alg))) {
        tb_seterr(err, errlen, "%s: cannot create CA certificate for \"%s\": %s", dir, name,
               tb_ossl_reason(reason, sizeof reason));
        goto done;
    }
    if (!(kbio = key_pem(key)) || !(cbio = cert_pem(x))) {
        tb_seterr(err, errlen, "%s: PEM encoding failed: %s", dir,
               tb_ossl_reason(reason, sizeof reason));
        goto done;
    }
    BUF_MEM *km, *cm;
    BIO_get_mem_ptr(kbio, &km);
    BIO_get_mem_ptr(cbio, &cm);
    files[0].mode = 0600;
    files[0].data = km->data;
    files[0].len = km->length;
    files[1].mode = 0644;
    files[1].data = cm->data;
    files[1].len = cm->length;
    rc = write_all(files, 2, err, errlen);
done:
    BIO_free(kbio);
    BIO_free(cbio);
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

/* Generates a CURVE key pair into pub/sec (41 bytes each). Returns TB_OK
 * or TB_ERR_CRYPTO. */
static tb_err_t curve_pair(char pub[41], char sec[41], char *err, size_t errlen)
{
    if (zmq_curve_keypair(pub, sec) != 0) {
        tb_seterr(err, errlen, "zmq_curve_keypair failed: %s", zmq_strerror(zmq_errno()));
        return TB_ERR_CRYPTO;
    }
    pub[40] = sec[40] = '\n';
    return TB_OK;
}

/* Issues node_id under the CA in ca_dir into out_dir (node.key, node.crt,
 * ca.crt, curve.key, curve.pub). Returns TB_OK, TB_ERR_INVALID, the CA
 * loading errors (TB_ERR_IO, TB_ERR_PERM, TB_ERR_CRYPTO, TB_ERR_CERT),
 * TB_ERR_DUPLICATE or TB_ERR_IO; on error no output file is left behind. */
tb_err_t tb_pki_issue(const char *ca_dir, const char *node_id, tb_alg_t alg, int days,
                      const char *out_dir, char *err, size_t errlen)
{
    tb_err_t rc;
    char path[PATH_MAX];
    tb_signer_t *ca_signer = NULL;
    tb_cert_t *ca = NULL, *issued = NULL;
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    BIO *kbio = NULL, *cbio = NULL;
    char reason[256];
    char pub[41], sec[41];
    outfile_t files[5];

    if (!ca_dir || !out_dir || !*out_dir) {
        tb_seterr(err, errlen, "tb_pki_issue: missing directory");
        return TB_ERR_INVALID;
    }
    if (!valid_node_id(node_id)) {
        tb_seterr(err, errlen, "invalid node id \"%.80s\" (1..64 characters of A-Z a-z 0-9 _ . -)",
               node_id ? node_id : "");
        return TB_ERR_INVALID;
    }
    if ((rc = check_alg(alg, err, errlen)) != TB_OK) return rc;
    if ((rc = check_days(days, err, errlen)) != TB_OK) return rc;

    memset(files, 0, sizeof files);
    static const char *names[5] = { "node.key", "node.crt", "ca.crt", "curve.key", "curve.pub" };
    for (int i = 0; i < 5; i++) {
        if (join(files[i].path, sizeof files[i].path, out_dir, names[i]) != 0) {
            tb_seterr(err, errlen, "%s: path too long", out_dir);
            return TB_ERR_INVALID;
        }
    }

    /* the CA: key (permission-checked), certificate, and that they match */
    if (join(path, sizeof path, ca_dir, "ca.key") != 0) {
        tb_seterr(err, errlen, "%s: path too long", ca_dir);
        return TB_ERR_INVALID;
    }
    if ((rc = tb_signer_load(path, &ca_signer, err, errlen)) != TB_OK) goto done;
    if (join(path, sizeof path, ca_dir, "ca.crt") != 0) {
        tb_seterr(err, errlen, "%s: path too long", ca_dir);
        rc = TB_ERR_INVALID;
        goto done;
    }
    if ((rc = tb_cert_load_file(path, &ca, err, errlen)) != TB_OK) goto done;
    if ((rc = tb_cert_matches_signer(ca, ca_signer, err, errlen)) != TB_OK) {
        tb_seterr(err, errlen, "%s: ca.key does not belong to ca.crt", ca_dir);
        goto done;
    }
    X509 *cax = tb_cert_x509(ca);
    if (X509_check_ca(cax) != 1) {
        ERR_clear_error();
        tb_seterr(err, errlen, "%s: not a CA certificate (basicConstraints CA:TRUE missing)", path);
        rc = TB_ERR_CERT;
        goto done;
    }
    if (X509_cmp_current_time(X509_get0_notAfter(cax)) <= 0) {
        ERR_clear_error();
        tb_seterr(err, errlen, "%s: CA certificate has expired", path);
        rc = TB_ERR_CERT;
        goto done;
    }

    if ((rc = make_dir(out_dir, err, errlen)) != TB_OK) goto done;

    rc = TB_ERR_CRYPTO;
    if (!(key = keygen(alg))) {
        tb_seterr(err, errlen, "%s: %s key generation failed: %s", out_dir, tb_alg_name(alg),
               tb_ossl_reason(reason, sizeof reason));
        goto done;
    }
    x = make_cert(node_id, key, days, cax, tb_signer_pkey(ca_signer), tb_signer_alg(ca_signer));
    if (!x) {
        tb_seterr(err, errlen, "%s: cannot issue certificate for %s: %s", ca_dir, node_id,
               tb_ossl_reason(reason, sizeof reason));
        goto done;
    }
    if (!(kbio = key_pem(key)) || !(cbio = cert_pem(x))) {
        tb_seterr(err, errlen, "%s: PEM encoding failed: %s", out_dir,
               tb_ossl_reason(reason, sizeof reason));
        goto done;
    }
    BUF_MEM *km, *cm;
    BIO_get_mem_ptr(kbio, &km);
    BIO_get_mem_ptr(cbio, &cm);

    /* self-check: what we are about to hand out must verify under the CA */
    if ((rc = tb_cert_load_pem((const uint8_t *)cm->data, cm->length, &issued, err, errlen))
        != TB_OK)
        goto done;
    if ((rc = tb_cert_verify_issued_by(issued, ca, err, errlen)) != TB_OK) goto done;

    if ((rc = curve_pair(pub, sec, err, errlen)) != TB_OK) goto done;

    size_t ca_len = 0;
    const char *ca_pem = tb_cert_pem(ca, &ca_len);
    files[0].mode = 0600; files[0].data = km->data; files[0].len = km->length;
    files[1].mode = 0644; files[1].data = cm->data; files[1].len = cm->length;
    files[2].mode = 0644; files[2].data = ca_pem;   files[2].len = ca_len;
    files[3].mode = 0600; files[3].data = sec;      files[3].len = 41;
    files[4].mode = 0644; files[4].data = pub;      files[4].len = 41;
    rc = write_all(files, 5, err, errlen);
done:
    OPENSSL_cleanse(sec, sizeof sec);
    BIO_free(kbio);
    BIO_free(cbio);
    X509_free(x);
    EVP_PKEY_free(key);
    tb_cert_destroy(&issued);
    tb_cert_destroy(&ca);
    tb_signer_destroy(&ca_signer);
    return rc;
}

/* Writes a fresh CURVE pair. Returns TB_OK, TB_ERR_DUPLICATE, TB_ERR_IO,
 * TB_ERR_CRYPTO or TB_ERR_INVALID; on error neither file is left behind. */
tb_err_t tb_pki_curve_keypair(const char *secret_path, const char *public_path,
                              char *err, size_t errlen)
{
    char pub[41], sec[41];
    outfile_t files[2];

    if (!secret_path || !public_path) {
        tb_seterr(err, errlen, "tb_pki_curve_keypair: NULL path");
        return TB_ERR_INVALID;
    }
    memset(files, 0, sizeof files);
    if (snprintf(files[0].path, sizeof files[0].path, "%s", secret_path) >= PATH_MAX
        || snprintf(files[1].path, sizeof files[1].path, "%s", public_path) >= PATH_MAX) {
        tb_seterr(err, errlen, "%s: path too long", secret_path);
        return TB_ERR_INVALID;
    }
    tb_err_t rc = curve_pair(pub, sec, err, errlen);
    if (rc == TB_OK) {
        files[0].mode = 0600; files[0].data = sec; files[0].len = 41;
        files[1].mode = 0644; files[1].data = pub; files[1].len = 41;
        rc = write_all(files, 2, err, errlen);
    }
    OPENSSL_cleanse(sec, sizeof sec);
    return rc;
}

/* Reads a Z85 key file into out (NUL-terminated). Returns TB_OK, TB_ERR_IO,
 * TB_ERR_PERM (secret file too open) or TB_ERR_INVALID (not a Z85 key). */
tb_err_t tb_pki_read_z85(const char *path, int is_secret, char out[41], char *err, size_t errlen)
{
    tb_err_t rc;
    char *buf = NULL;
    size_t n = 0;
    uint8_t raw[32];

    if (!path || !out) {
        tb_seterr(err, errlen, "tb_pki_read_z85: NULL argument");
        return TB_ERR_INVALID;
    }
    if ((rc = tb_read_small_file(path, is_secret, &buf, &n, err, errlen)) != TB_OK)
        return rc;
    rc = TB_ERR_INVALID;
    /* exactly 40 characters, optionally followed by "\n" or "\r\n" */
    if (!(n == 40 || (n == 41 && buf[40] == '\n')
          || (n == 42 && buf[40] == '\r' && buf[41] == '\n'))) {
        tb_seterr(err, errlen, "%s: not a Z85 CURVE key (expected 40 characters and a newline)", path);
        goto done;
    }
    for (size_t i = 0; i < 40; i++) {
        if (buf[i] == '\0' || !strchr(z85_alphabet, buf[i])) {
            tb_seterr(err, errlen, "%s: not a Z85 CURVE key (bad character at offset %zu)", path, i);
            goto done;
        }
    }
    buf[40] = '\0';
    if (!zmq_z85_decode(raw, buf)) {
        tb_seterr(err, errlen, "%s: not a valid Z85 CURVE key", path);
        goto done;
    }
    memcpy(out, buf, 41);
    rc = TB_OK;
done:
    OPENSSL_cleanse(buf, n);
    free(buf);
    OPENSSL_cleanse(raw, sizeof raw);
    return rc;
}
