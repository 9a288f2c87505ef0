/* test_crypto.c -- signing keys, certificates and signatures for ed25519, p256 and sm2. */
#include "tbtest.h"

#include "crypto.h"
#include "pki.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static const tb_alg_t algs[3] = { TB_ALG_ED25519, TB_ALG_P256, TB_ALG_SM2 };
static int have_openssl_cli;

/* Builds "dir/name" in a static rotating buffer (8 slots: use at once or
 * copy). Returns it. */
static const char *pj(const char *dir, const char *name)
{
    static char bufs[8][1024];
    static int next;
    char tmp[sizeof bufs[0]];
    char *b = bufs[next++ % 8];
    snprintf(tmp, sizeof tmp, "%s/%s", dir, name);   /* dir may be an earlier result */
    memcpy(b, tmp, sizeof tmp);
    return b;
}

/* Writes data to path with mode. Returns 0 or -1. */
static int write_file(const char *path, const void *data, size_t len, mode_t mode)
{
    unlink(path);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    size_t w = fwrite(data, 1, len, f);
    fclose(f);
    chmod(path, mode);
    return w == len ? 0 : -1;
}

/* Returns 1 if s contains sub. */
static int has(const char *s, const char *sub)
{
    return s && strstr(s, sub) != NULL;
}

/* Hex SHA-256 of the DER of the certificate at path, computed here with
 * plain OpenSSL calls. Returns 0 on success. */
static int der_sha256_hex(const char *path, char out[65])
{
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!x) return -1;
    unsigned char *der = NULL, md[32];
    unsigned int mdlen = 0;
    int n = i2d_X509(x, &der);
    int ok = n > 0 && EVP_Digest(der, (size_t)n, md, &mdlen, EVP_sha256(), NULL) == 1;
    OPENSSL_free(der);
    X509_free(x);
    if (!ok) return -1;
    for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* Creates a certificate with plain OpenSSL calls (for cases tb_pki never
 * produces): subject CN cn (none if NULL), Ed25519 key *key (generated when
 * NULL), signed by issuer/ikey (self-signed when NULL), validity
 * [now+nb_days, now+na_days]; basicConstraints CA:TRUE when ca, none at all
 * when v1. Writes it to path. Returns 0 on success. */
static int make_test_cert(const char *path, const char *cn, EVP_PKEY **key, X509 **xout,
                          X509 *issuer, EVP_PKEY *ikey, long nb_days, long na_days, int ca, int v1)
{
    int rc = -1;
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    if (!*key) *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!x || !name || !*key) goto done;
    X509_set_version(x, v1 ? X509_VERSION_1 : X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 42);
    X509_time_adj_ex(X509_getm_notBefore(x), (int)nb_days, 0, NULL);
    X509_time_adj_ex(X509_getm_notAfter(x), (int)na_days, 0, NULL);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"tongban", -1, -1, 0);
    if (cn) X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
    X509_set_subject_name(x, name);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    X509_set_pubkey(x, *key);
    if (!v1) {
        X509V3_CTX ctx;
        X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
        X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints,
                                                 ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
        if (!ex) goto done;
        X509_add_ext(x, ex, -1);
        X509_EXTENSION_free(ex);
    }
    if (X509_sign(x, ikey ? ikey : *key, NULL) <= 0) goto done;
    FILE *f = fopen(path, "w");
    if (!f) goto done;
    PEM_write_X509(f, x);
    fclose(f);
    rc = 0;
done:
    X509_NAME_free(name);
    if (rc == 0 && xout) *xout = x;
    else X509_free(x);
    return rc;
}

/* Copies the certificate at in to out with the last bit of its signature
 * flipped. Returns 0 on success. */
static int tamper_cert_sig(const char *in, const char *out)
{
    FILE *f = fopen(in, "r");
    if (!f) return -1;
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    unsigned char *der = NULL;
    int n = x ? i2d_X509(x, &der) : -1;
    X509_free(x);
    if (n <= 0) return -1;
    der[n - 1] ^= 0x01;
    const unsigned char *p = der;
    x = d2i_X509(NULL, &p, n);
    OPENSSL_free(der);
    if (!x) return -1;
    f = fopen(out, "w");
    int rc = f && PEM_write_X509(f, x) == 1 ? 0 : -1;
    if (f) fclose(f);
    X509_free(x);
    return rc;
}

/* Loads the PEM private key at path with plain OpenSSL. Returns it or NULL. */
static EVP_PKEY *raw_key(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    return k;
}

static void test_alg_names(void)
{
    for (int i = 0; i < 3; i++) CHECK(tb_alg_parse(tb_alg_name(algs[i])) == algs[i]);
    CHECK(strcmp(tb_alg_name(TB_ALG_SM2), "sm2") == 0);
    CHECK(tb_alg_parse("rsa") == TB_ALG_NONE);
    CHECK(tb_alg_parse("") == TB_ALG_NONE);
    CHECK(tb_alg_parse(NULL) == TB_ALG_NONE);
}

/* Everything about one algorithm: two nodes under one CA, one under another. */
static void test_alg(tb_alg_t alg)
{
    char dir[512], err[TB_ERRLEN];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("crypto"));
    char ca1[600], ca2[600], a[600], b[600], c[600];
    snprintf(ca1, sizeof ca1, "%s/ca1", dir);
    snprintf(ca2, sizeof ca2, "%s/ca2", dir);
    snprintf(a, sizeof a, "%s/a", dir);
    snprintf(b, sizeof b, "%s/b", dir);
    snprintf(c, sizeof c, "%s/c", dir);
    tb_signer_t *sa = NULL, *sb = NULL;
    tb_cert_t *ca = NULL, *cb = NULL, *cc = NULL, *cca1 = NULL, *cca2 = NULL, *cpem = NULL;
    const char *name = tb_alg_name(alg);

    CHECK(tb_pki_init_ca(ca1, "CA one", alg, 365, err, sizeof err) == TB_OK);
    CHECK(tb_pki_init_ca(ca2, "CA two", alg, 365, err, sizeof err) == TB_OK);
    CHECK_MSG(tb_pki_issue(ca1, "node-a", alg, 30, a, err, sizeof err) == TB_OK, "%s: %s", name, err);
    CHECK(tb_pki_issue(ca1, "node-b", alg, 30, b, err, sizeof err) == TB_OK);
    CHECK(tb_pki_issue(ca2, "node-c", alg, 30, c, err, sizeof err) == TB_OK);

    CHECK_MSG(tb_signer_load(pj(a, "node.key"), &sa, err, sizeof err) == TB_OK, "%s: %s", name, err);
    CHECK(tb_signer_load(pj(b, "node.key"), &sb, err, sizeof err) == TB_OK);
    CHECK(tb_cert_load_file(pj(a, "node.crt"), &ca, err, sizeof err) == TB_OK);
    CHECK(tb_cert_load_file(pj(b, "node.crt"), &cb, err, sizeof err) == TB_OK);
    CHECK(tb_cert_load_file(pj(c, "node.crt"), &cc, err, sizeof err) == TB_OK);
    CHECK(tb_cert_load_file(pj(ca1, "ca.crt"), &cca1, err, sizeof err) == TB_OK);
    CHECK(tb_cert_load_file(pj(ca2, "ca.crt"), &cca2, err, sizeof err) == TB_OK);
    if (!sa || !sb || !ca || !cb || !cc || !cca1 || !cca2) goto done;

    /* identity */
    CHECK(tb_signer_alg(sa) == alg);
    CHECK(tb_cert_alg(ca) == alg);
    CHECK(tb_cert_alg(cca1) == alg);
    CHECK(strcmp(tb_cert_node_id(ca), "node-a") == 0);
    CHECK(strcmp(tb_cert_node_id(cca1), "CA one") == 0);
    char hex[65];
    CHECK(der_sha256_hex(pj(a, "node.crt"), hex) == 0);
    CHECK(strlen(tb_cert_key_id(ca)) == 64);
    CHECK(strcmp(tb_cert_key_id(ca), hex) == 0);
    CHECK(strcmp(tb_cert_key_id(ca), tb_cert_key_id(cb)) != 0);
    long days = tb_cert_days_left(ca);
    CHECK_MSG(days == 29 || days == 30, "days_left %ld", days);

    /* PEM round trip gives the same certificate */
    size_t plen = 0;
    const char *pem = tb_cert_pem(ca, &plen);
    CHECK(pem && plen == strlen(pem) && has(pem, "-----BEGIN CERTIFICATE-----"));
    CHECK(tb_cert_load_pem((const uint8_t *)pem, plen, &cpem, err, sizeof err) == TB_OK);
    CHECK(cpem && strcmp(tb_cert_key_id(cpem), tb_cert_key_id(ca)) == 0);
    tb_cert_destroy(&cpem);
    CHECK(cpem == NULL);

    /* chain */
    CHECK_MSG(tb_cert_verify_issued_by(ca, cca1, err, sizeof err) == TB_OK, "%s: %s", name, err);
    CHECK(tb_cert_verify_issued_by(cb, cca1, err, sizeof err) == TB_OK);
    CHECK(tb_cert_verify_issued_by(cc, cca2, err, sizeof err) == TB_OK);
    err[0] = '\0';
    CHECK(tb_cert_verify_issued_by(cc, cca1, err, sizeof err) == TB_ERR_CERT);
    CHECK_MSG(has(err, "node-c") && has(err, "unable to get local issuer certificate"), "%s", err);
    CHECK(tb_cert_verify_issued_by(ca, cca2, err, sizeof err) == TB_ERR_CERT);
    /* an impostor CA with the very same name: the signature gives it away */
    {
        tb_cert_t *cd = NULL, *cca3 = NULL;
        char ca3[600], d[600];
        snprintf(ca3, sizeof ca3, "%s/ca3", dir);
        snprintf(d, sizeof d, "%s/d", dir);
        CHECK(tb_pki_init_ca(ca3, "CA one", alg, 365, err, sizeof err) == TB_OK);
        CHECK(tb_pki_issue(ca3, "node-a", alg, 30, d, err, sizeof err) == TB_OK);
        CHECK(tb_cert_load_file(pj(d, "node.crt"), &cd, err, sizeof err) == TB_OK);
        CHECK(tb_cert_load_file(pj(ca3, "ca.crt"), &cca3, err, sizeof err) == TB_OK);
        if (cd && cca3) {
            CHECK(tb_cert_verify_issued_by(cd, cca3, err, sizeof err) == TB_OK);
            CHECK(tb_cert_verify_issued_by(cd, cca1, err, sizeof err) == TB_ERR_CERT);
            CHECK_MSG(has(err, "not verified by CA CA one"), "%s", err);
            CHECK(tb_cert_verify_issued_by(ca, cca3, err, sizeof err) == TB_ERR_CERT);
            CHECK(strcmp(tb_cert_key_id(cd), tb_cert_key_id(ca)) != 0);
            CHECK(tb_cert_matches_signer(cd, sa, err, sizeof err) != TB_OK);
        }
        tb_cert_destroy(&cd);
        tb_cert_destroy(&cca3);
    }
    /* a flipped bit in the certificate's signature */
    {
        char tp[600];
        tb_cert_t *ct = NULL;
        snprintf(tp, sizeof tp, "%s/tampered.crt", dir);
        CHECK(tamper_cert_sig(pj(a, "node.crt"), tp) == 0);
        CHECK(tb_cert_load_file(tp, &ct, err, sizeof err) == TB_OK);
        if (ct) {
            CHECK(tb_cert_verify_issued_by(ct, cca1, err, sizeof err) == TB_ERR_CERT);
            CHECK_MSG(has(err, "certificate signature failure"), "%s", err);
        }
        tb_cert_destroy(&ct);
    }
    /* a node certificate is no CA */
    CHECK(tb_cert_verify_issued_by(cb, ca, err, sizeof err) == TB_ERR_CERT);
    CHECK(has(err, "not a CA"));
    CHECK(ERR_peek_error() == 0);

    /* key <-> certificate */
    CHECK(tb_cert_matches_signer(ca, sa, err, sizeof err) == TB_OK);
    CHECK(tb_cert_matches_signer(cb, sb, err, sizeof err) == TB_OK);
    CHECK(tb_cert_matches_signer(cb, sa, err, sizeof err) != TB_OK);
    CHECK(tb_cert_matches_signer(cca1, sa, err, sizeof err) != TB_OK);

    /* signatures */
    const char *msg = "batch 42: 3 records for 110000";
    size_t mlen = strlen(msg);
    uint8_t data[64];
    memcpy(data, msg, mlen);
    uint8_t *sig = NULL;
    size_t siglen = 0;
    CHECK(tb_signer_sign(sa, data, mlen, &sig, &siglen, err, sizeof err) == TB_OK);
    CHECK(sig != NULL && siglen > 0);
    if (alg == TB_ALG_ED25519) CHECK(siglen == 64);
    else CHECK(siglen >= 8 && siglen <= 72);   /* DER (r, s) */
    if (!sig) goto done;
    CHECK_MSG(tb_cert_verify(ca, data, mlen, sig, siglen, err, sizeof err) == TB_OK, "%s: %s", name, err);

    /* one flipped bit anywhere in the data */
    for (size_t i = 0; i < mlen; i += 7) {
        data[i] ^= 0x01;
        CHECK(tb_cert_verify(ca, data, mlen, sig, siglen, err, sizeof err) == TB_ERR_BADSIG);
        data[i] ^= 0x01;
    }
    CHECK(tb_cert_verify(ca, data, mlen - 1, sig, siglen, err, sizeof err) == TB_ERR_BADSIG);
    CHECK(has(err, "node-a"));
    /* tampered signature: first, middle, last byte; truncated; empty */
    size_t pos[3] = { 0, siglen / 2, siglen - 1 };
    for (int i = 0; i < 3; i++) {
        sig[pos[i]] ^= 0x40;
        CHECK(tb_cert_verify(ca, data, mlen, sig, siglen, err, sizeof err) == TB_ERR_BADSIG);
        sig[pos[i]] ^= 0x40;
    }
    CHECK(tb_cert_verify(ca, data, mlen, sig, siglen - 1, err, sizeof err) == TB_ERR_BADSIG);
    CHECK(tb_cert_verify(ca, data, mlen, sig, 0, err, sizeof err) == TB_ERR_BADSIG);
    CHECK(ERR_peek_error() == 0);
    /* the wrong node's certificate */
    CHECK(tb_cert_verify(cb, data, mlen, sig, siglen, err, sizeof err) == TB_ERR_BADSIG);
    CHECK(tb_cert_verify(cc, data, mlen, sig, siglen, err, sizeof err) == TB_ERR_BADSIG);
    /* untouched again: still fine */
    CHECK(tb_cert_verify(ca, data, mlen, sig, siglen, err, sizeof err) == TB_OK);

    /* SM2: the signature carries the GM/T 0009 ID; with OpenSSL's default
     * (empty) ID it must not verify, with the explicit one it must */
    if (alg == TB_ALG_SM2) {
        EVP_PKEY *pub = X509_get_pubkey(tb_cert_x509(ca));
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        CHECK(EVP_DigestVerifyInit(md, NULL, EVP_sm3(), NULL, pub) == 1);
        CHECK(EVP_DigestVerify(md, sig, siglen, data, mlen) != 1);
        EVP_MD_CTX_free(md);
        md = EVP_MD_CTX_new();
        EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new(pub, NULL);
        CHECK(EVP_PKEY_CTX_set1_id(pctx, "1234567812345678", 16) == 1);
        EVP_MD_CTX_set_pkey_ctx(md, pctx);
        CHECK(EVP_DigestVerifyInit(md, NULL, EVP_sm3(), NULL, pub) == 1);
        CHECK(EVP_DigestVerify(md, sig, siglen, data, mlen) == 1);
        EVP_MD_CTX_free(md);
        EVP_PKEY_CTX_free(pctx);
        EVP_PKEY_free(pub);
        ERR_clear_error();

        /* interoperability with the openssl command line */
        if (have_openssl_cli) {
            char cmd[4096];
            CHECK(write_file(pj(dir, "data"), data, mlen, 0644) == 0);
            CHECK(write_file(pj(dir, "sig"), sig, siglen, 0644) == 0);
            snprintf(cmd, sizeof cmd,
                     "openssl x509 -in '%s' -pubkey -noout > '%s' && "
                     "openssl pkeyutl -verify -rawin -digest sm3 -pkeyopt distid:1234567812345678 "
                     "-pubin -inkey '%s' -in '%s' -sigfile '%s' >/dev/null 2>&1",
                     pj(a, "node.crt"), pj(dir, "pub.pem"), pj(dir, "pub.pem"), pj(dir, "data"),
                     pj(dir, "sig"));
            CHECK_MSG(system(cmd) == 0, "openssl CLI did not verify our SM2 signature");
            /* and the CLI's signature verifies here */
            snprintf(cmd, sizeof cmd,
                     "openssl pkeyutl -sign -rawin -digest sm3 -pkeyopt distid:1234567812345678 "
                     "-inkey '%s' -in '%s' -out '%s' 2>/dev/null",
                     pj(a, "node.key"), pj(dir, "data"), pj(dir, "sig2"));
            CHECK(system(cmd) == 0);
            FILE *f = fopen(pj(dir, "sig2"), "r");
            uint8_t sig2[256];
            size_t n2 = f ? fread(sig2, 1, sizeof sig2, f) : 0;
            if (f) fclose(f);
            CHECK(n2 > 0);
            CHECK(tb_cert_verify(ca, data, mlen, sig2, n2, err, sizeof err) == TB_OK);
            /* certificate chain: OK with the ID, refused without it */
            snprintf(cmd, sizeof cmd,
                     "openssl verify -CAfile '%s' -vfyopt distid:1234567812345678 '%s' >/dev/null 2>&1",
                     pj(ca1, "ca.crt"), pj(a, "node.crt"));
            CHECK_MSG(system(cmd) == 0, "openssl CLI did not verify our SM2 certificate");
            snprintf(cmd, sizeof cmd, "openssl verify -CAfile '%s' '%s' >/dev/null 2>&1",
                     pj(ca1, "ca.crt"), pj(a, "node.crt"));
            CHECK(system(cmd) != 0);
        }
    }
    free(sig);
    sig = NULL;

    /* empty data can be signed and verified too */
    CHECK(tb_signer_sign(sa, NULL, 0, &sig, &siglen, err, sizeof err) == TB_OK);
    CHECK(tb_cert_verify(ca, NULL, 0, sig, siglen, err, sizeof err) == TB_OK);
    CHECK(tb_cert_verify(ca, data, 1, sig, siglen, err, sizeof err) == TB_ERR_BADSIG);
    free(sig);

done:
    tb_signer_destroy(&sa);
    tb_signer_destroy(&sb);
    CHECK(sa == NULL);
    tb_cert_destroy(&ca);
    tb_cert_destroy(&cb);
    tb_cert_destroy(&cc);
    tb_cert_destroy(&cca1);
    tb_cert_destroy(&cca2);
    tbtest_rmtree(dir);
}

/* Every CA algorithm issues every node algorithm. */
static void test_ca_matrix(void)
{
    char dir[512], err[TB_ERRLEN];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("matrix"));
    for (int i = 0; i < 3; i++) {
        char cadir[600];
        snprintf(cadir, sizeof cadir, "%s/ca-%s", dir, tb_alg_name(algs[i]));
        CHECK(tb_pki_init_ca(cadir, "Matrix CA", algs[i], 10, err, sizeof err) == TB_OK);
        tb_cert_t *cacert = NULL;
        CHECK(tb_cert_load_file(pj(cadir, "ca.crt"), &cacert, err, sizeof err) == TB_OK);
        for (int j = 0; j < 3; j++) {
            char nd[700];
            snprintf(nd, sizeof nd, "%s/node-%s", cadir, tb_alg_name(algs[j]));
            int ok = tb_pki_issue(cadir, "m1", algs[j], 10, nd, err, sizeof err) == TB_OK;
            CHECK_MSG(ok, "CA %s node %s: %s", tb_alg_name(algs[i]), tb_alg_name(algs[j]), err);
            tb_cert_t *c = NULL;
            tb_signer_t *s = NULL;
            CHECK(tb_cert_load_file(pj(nd, "node.crt"), &c, err, sizeof err) == TB_OK);
            CHECK(tb_signer_load(pj(nd, "node.key"), &s, err, sizeof err) == TB_OK);
            if (c && cacert) {
                CHECK(tb_cert_alg(c) == algs[j]);
                CHECK_MSG(tb_cert_verify_issued_by(c, cacert, err, sizeof err) == TB_OK,
                          "CA %s node %s: %s", tb_alg_name(algs[i]), tb_alg_name(algs[j]), err);
                /* signature algorithm of the certificate follows the CA */
                int nid = X509_get_signature_nid(tb_cert_x509(c));
                int want = algs[i] == TB_ALG_ED25519 ? NID_ED25519
                         : algs[i] == TB_ALG_P256 ? NID_ecdsa_with_SHA256 : NID_SM2_with_SM3;
                CHECK(nid == want);
            }
            if (c && s) {
                uint8_t *sig = NULL;
                size_t n = 0;
                CHECK(tb_signer_sign(s, (const uint8_t *)"x", 1, &sig, &n, err, sizeof err) == TB_OK);
                CHECK(tb_cert_verify(c, (const uint8_t *)"x", 1, sig, n, err, sizeof err) == TB_OK);
                free(sig);
            }
            if (have_openssl_cli && algs[i] == TB_ALG_SM2) {
                char cmd[4096];
                snprintf(cmd, sizeof cmd,
                         "openssl verify -CAfile '%s' -vfyopt distid:1234567812345678 '%s' >/dev/null 2>&1",
                         pj(cadir, "ca.crt"), pj(nd, "node.crt"));
                CHECK(system(cmd) == 0);
            }
            tb_cert_destroy(&c);
            tb_signer_destroy(&s);
        }
        tb_cert_destroy(&cacert);
    }
    tbtest_rmtree(dir);
}

static void test_key_files(void)
{
    char dir[512], err[TB_ERRLEN];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("keys"));
    tb_signer_t *s = NULL;
    char key[600];
    snprintf(key, sizeof key, "%s/node.key", dir);

    CHECK(tb_pki_init_ca(pj(dir, "ca"), "CA", TB_ALG_ED25519, 10, err, sizeof err) == TB_OK);
    CHECK(tb_pki_issue(pj(dir, "ca"), "k1", TB_ALG_P256, 10, pj(dir, "n"), err, sizeof err) == TB_OK);
    CHECK(rename(pj(pj(dir, "n"), "node.key"), key) == 0);

    CHECK(tb_signer_load(key, &s, err, sizeof err) == TB_OK);
    tb_signer_destroy(&s);

    /* too open */
    chmod(key, 0644);
    err[0] = '\0';
    CHECK(tb_signer_load(key, &s, err, sizeof err) == TB_ERR_PERM);
    CHECK(s == NULL);
    CHECK_MSG(has(err, key) && has(err, "permissions 0644 are too open")
              && has(err, "must be 0600 or stricter"), "%s", err);
    chmod(key, 0640);
    CHECK(tb_signer_load(key, &s, err, sizeof err) == TB_ERR_PERM);
    chmod(key, 0604);
    CHECK(tb_signer_load(key, &s, err, sizeof err) == TB_ERR_PERM);
    CHECK(tb_signer_load(key, &s, NULL, 0) == TB_ERR_PERM);
    chmod(key, 0400);
    CHECK(tb_signer_load(key, &s, err, sizeof err) == TB_OK);
    CHECK(tb_signer_alg(s) == TB_ALG_P256);
    tb_signer_destroy(&s);

    /* missing */
    char missing[600];
    snprintf(missing, sizeof missing, "%s/nope.key", dir);
    CHECK(tb_signer_load(missing, &s, err, sizeof err) == TB_ERR_IO);
    CHECK_MSG(has(err, missing) && has(err, "No such file or directory"), "%s", err);
    CHECK(tb_signer_load(dir, &s, err, sizeof err) == TB_ERR_IO);   /* a directory */

    /* garbage */
    char junk[600];
    snprintf(junk, sizeof junk, "%s/junk.key", dir);
    CHECK(write_file(junk, "hello, I am not a key\n", 22, 0600) == 0);
    CHECK(tb_signer_load(junk, &s, err, sizeof err) == TB_ERR_CRYPTO);
    CHECK_MSG(has(err, junk), "%s", err);
    CHECK(ERR_peek_error() == 0);
    CHECK(write_file(junk, "", 0, 0600) == 0);
    CHECK(tb_signer_load(junk, &s, err, sizeof err) == TB_ERR_CRYPTO);
    /* a certificate is not a key */
    CHECK(write_file(junk, "x", 1, 0600) == 0);
    {
        FILE *in = fopen(pj(pj(dir, "n"), "node.crt"), "r");
        char buf[4096];
        size_t n = in ? fread(buf, 1, sizeof buf, in) : 0;
        if (in) fclose(in);
        CHECK(write_file(junk, buf, n, 0600) == 0);
        CHECK(tb_signer_load(junk, &s, err, sizeof err) == TB_ERR_CRYPTO);
    }

    /* unsupported algorithms: P-384 and RSA keys */
    EVP_PKEY *k384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    EVP_PKEY *krsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    char kf[600];
    snprintf(kf, sizeof kf, "%s/other.key", dir);
    EVP_PKEY *others[2] = { k384, krsa };
    for (int i = 0; i < 2; i++) {
        CHECK(others[i] != NULL);
        if (!others[i]) continue;
        unlink(kf);
        FILE *f = fopen(kf, "w");
        PEM_write_PrivateKey(f, others[i], NULL, NULL, 0, NULL, NULL);
        fclose(f);
        chmod(kf, 0600);
        CHECK(tb_signer_load(kf, &s, err, sizeof err) == TB_ERR_CRYPTO);
        CHECK_MSG(has(err, "unsupported key type"), "%s", err);
    }

    /* an encrypted key is refused without prompting for a passphrase */
    unlink(kf);
    FILE *f = fopen(kf, "w");
    PEM_write_PrivateKey(f, k384, EVP_aes_256_cbc(), (unsigned char *)"secret", 6, NULL, NULL);
    fclose(f);
    chmod(kf, 0600);
    CHECK(tb_signer_load(kf, &s, err, sizeof err) == TB_ERR_CRYPTO);
    EVP_PKEY_free(k384);
    EVP_PKEY_free(krsa);
    CHECK(ERR_peek_error() == 0);
    tbtest_rmtree(dir);
}

static void test_cert_files(void)
{
    char dir[512], err[TB_ERRLEN];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("certs"));
    tb_cert_t *c = NULL, *cac = NULL, *leaf = NULL;

    CHECK(tb_cert_load_file(pj(dir, "none.crt"), &c, err, sizeof err) == TB_ERR_IO);
    CHECK(has(err, "none.crt") && has(err, "No such file"));
    CHECK(write_file(pj(dir, "junk.crt"), "junk", 4, 0644) == 0);
    CHECK(tb_cert_load_file(pj(dir, "junk.crt"), &c, err, sizeof err) == TB_ERR_CRYPTO);
    CHECK(has(err, "junk.crt"));
    CHECK(tb_cert_load_pem((const uint8_t *)"junk", 4, &c, err, sizeof err) == TB_ERR_CRYPTO);
    CHECK(c == NULL);

    /* no CN: refused at load time */
    EVP_PKEY *k = NULL;
    CHECK(make_test_cert(pj(dir, "nocn.crt"), NULL, &k, NULL, NULL, NULL, 0, 10, 1, 0) == 0);
    CHECK(tb_cert_load_file(pj(dir, "nocn.crt"), &c, err, sizeof err) == TB_ERR_CERT);
    CHECK_MSG(has(err, "commonName") && has(err, "nocn.crt"), "%s", err);
    EVP_PKEY_free(k);
    k = NULL;

    /* an expired certificate from a real CA */
    X509 *cax = NULL;
    EVP_PKEY *cak = NULL, *lk = NULL;
    CHECK(make_test_cert(pj(dir, "ca.crt"), "Test CA", &cak, &cax, NULL, NULL, -10, 100, 1, 0) == 0);
    CHECK(make_test_cert(pj(dir, "old.crt"), "old", &lk, NULL, cax, cak, -10, -2, 0, 0) == 0);
    CHECK(tb_cert_load_file(pj(dir, "ca.crt"), &cac, err, sizeof err) == TB_OK);
    CHECK(tb_cert_load_file(pj(dir, "old.crt"), &leaf, err, sizeof err) == TB_OK);
    if (cac && leaf) {
        CHECK(tb_cert_days_left(leaf) <= -1);
        CHECK(tb_cert_verify_issued_by(leaf, cac, err, sizeof err) == TB_ERR_CERT);
        CHECK_MSG(has(err, "certificate has expired"), "%s", err);
    }
    tb_cert_destroy(&leaf);
    /* not yet valid */
    CHECK(make_test_cert(pj(dir, "new.crt"), "new", &lk, NULL, cax, cak, 2, 10, 0, 0) == 0);
    CHECK(tb_cert_load_file(pj(dir, "new.crt"), &leaf, err, sizeof err) == TB_OK);
    if (cac && leaf) {
        CHECK(tb_cert_verify_issued_by(leaf, cac, err, sizeof err) == TB_ERR_CERT);
        CHECK_MSG(has(err, "not yet valid"), "%s", err);
    }
    tb_cert_destroy(&leaf);
    /* valid: the helper itself is sound */
    CHECK(make_test_cert(pj(dir, "ok.crt"), "ok", &lk, NULL, cax, cak, -1, 10, 0, 0) == 0);
    CHECK(tb_cert_load_file(pj(dir, "ok.crt"), &leaf, err, sizeof err) == TB_OK);
    if (cac && leaf) CHECK(tb_cert_verify_issued_by(leaf, cac, err, sizeof err) == TB_OK);
    tb_cert_destroy(&leaf);
    tb_cert_destroy(&cac);
    X509_free(cax);
    EVP_PKEY_free(cak);
    cax = NULL;
    cak = NULL;

    /* a v1 self-signed "CA" without basicConstraints is not a CA for us */
    CHECK(make_test_cert(pj(dir, "v1ca.crt"), "v1 CA", &cak, &cax, NULL, NULL, -1, 100, 0, 1) == 0);
    CHECK(make_test_cert(pj(dir, "v1leaf.crt"), "v1leaf", &lk, NULL, cax, cak, -1, 10, 0, 0) == 0);
    CHECK(tb_cert_load_file(pj(dir, "v1ca.crt"), &cac, err, sizeof err) == TB_OK);
    CHECK(tb_cert_load_file(pj(dir, "v1leaf.crt"), &leaf, err, sizeof err) == TB_OK);
    if (cac && leaf) {
        CHECK(tb_cert_verify_issued_by(leaf, cac, err, sizeof err) == TB_ERR_CERT);
        CHECK_MSG(has(err, "not a CA"), "%s", err);
    }
    tb_cert_destroy(&leaf);
    tb_cert_destroy(&cac);
    X509_free(cax);
    EVP_PKEY_free(cak);
    EVP_PKEY_free(lk);

    /* the key of an issued node matches with plain OpenSSL too */
    CHECK(tb_pki_init_ca(pj(dir, "pca"), "CA", TB_ALG_SM2, 10, err, sizeof err) == TB_OK);
    CHECK(tb_pki_issue(pj(dir, "pca"), "sm", TB_ALG_SM2, 10, pj(dir, "pn"), err, sizeof err) == TB_OK);
    EVP_PKEY *rk = raw_key(pj(pj(dir, "pn"), "node.key"));
    CHECK(rk != NULL && EVP_PKEY_is_a(rk, "SM2"));
    CHECK(tb_cert_load_file(pj(pj(dir, "pn"), "node.crt"), &c, err, sizeof err) == TB_OK);
    if (rk && c) CHECK(EVP_PKEY_eq(rk, X509_get0_pubkey(tb_cert_x509(c))) == 1);
    EVP_PKEY_free(rk);
    tb_cert_destroy(&c);
    ERR_clear_error();
    tbtest_rmtree(dir);
}

/* Rough sign/verify rates (informative; printed, not asserted). */
static void bench(void)
{
    if (!getenv("TB_BENCH")) return;
    char dir[512], err[TB_ERRLEN];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("bench"));
    CHECK(tb_pki_init_ca(pj(dir, "ca"), "CA", TB_ALG_ED25519, 10, err, sizeof err) == TB_OK);
    for (int i = 0; i < 3; i++) {
        char nd[600];
        snprintf(nd, sizeof nd, "%s/%s", dir, tb_alg_name(algs[i]));
        tb_signer_t *s = NULL;
        tb_cert_t *c = NULL;
        CHECK(tb_pki_issue(pj(dir, "ca"), "b", algs[i], 10, nd, err, sizeof err) == TB_OK);
        CHECK(tb_signer_load(pj(nd, "node.key"), &s, err, sizeof err) == TB_OK);
        CHECK(tb_cert_load_file(pj(nd, "node.crt"), &c, err, sizeof err) == TB_OK);
        if (!s || !c) continue;
        uint8_t data[1024];
        memset(data, 'x', sizeof data);
        uint8_t *sig = NULL;
        size_t n = 0;
        int rounds = 2000;
        struct timespec t0, t1, t2;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int r = 0; r < rounds; r++) {
            free(sig);
            tb_signer_sign(s, data, sizeof data, &sig, &n, err, sizeof err);
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        int bad = 0;
        for (int r = 0; r < rounds; r++)
            bad += tb_cert_verify(c, data, sizeof data, sig, n, err, sizeof err) != TB_OK;
        clock_gettime(CLOCK_MONOTONIC, &t2);
        CHECK(bad == 0);
        double ts = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        double tv = (double)(t2.tv_sec - t1.tv_sec) + (double)(t2.tv_nsec - t1.tv_nsec) / 1e9;
        printf("bench %-8s 1 KiB: %8.0f sign/s %8.0f verify/s\n", tb_alg_name(algs[i]),
               rounds / ts, rounds / tv);
        free(sig);
        tb_signer_destroy(&s);
        tb_cert_destroy(&c);
    }
    tbtest_rmtree(dir);
}

int main(void)
{
    umask(022);
    have_openssl_cli = system("openssl version >/dev/null 2>&1") == 0;
    if (!have_openssl_cli) printf("test_crypto: openssl CLI not found, skipping interop checks\n");
    test_alg_names();
    for (int i = 0; i < 3; i++) test_alg(algs[i]);
    test_ca_matrix();
    test_key_files();
    test_cert_files();
    bench();
    return tbtest_done("test_crypto");
}
