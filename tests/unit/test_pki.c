/* test_pki.c -- CA creation, node enrolment, CURVE key files. */
#include "tbtest.h"

#include "crypto.h"
#include "pki.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <zmq.h>

/* Builds "dir/name" into a caller buffer. Returns buf. */
static char *pj(char *buf, size_t len, const char *dir, const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
    return buf;
}
#define PJ(buf, dir, name) pj(buf, sizeof buf, dir, name)

/* Returns the permission bits of path, or -1 if it does not exist. */
static int mode_of(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

/* Reads up to len-1 bytes of path into buf (NUL-terminated). Returns the
 * number of bytes, or -1. */
static long slurp(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, len - 1, f);
    fclose(f);
    buf[n] = '\0';
    return (long)n;
}

/* Writes s to path with mode. Returns 0 or -1. */
static int put(const char *path, const char *s, mode_t mode)
{
    unlink(path);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(s, f);
    fclose(f);
    return chmod(path, mode);
}

/* Returns 1 if s contains sub. */
static int has(const char *s, const char *sub)
{
    return s && strstr(s, sub) != NULL;
}

/* Reads a PEM certificate with plain OpenSSL. Returns it or NULL. */
static X509 *raw_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    return x;
}

/* Returns the text of the first entry nid in name ("" if none), static. */
static const char *name_entry(X509_NAME *name, int nid)
{
    static char buf[256];
    buf[0] = '\0';
    X509_NAME_get_text_by_NID(name, nid, buf, sizeof buf);
    return buf;
}

static void test_init_ca(void)
{
    char dir[512], err[TB_ERRLEN], p[700], q[700], ca[600];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("pki"));
    snprintf(ca, sizeof ca, "%s/deep/er/ca", dir);

    CHECK_MSG(tb_pki_init_ca(ca, "Tongban Root CA", TB_ALG_ED25519, 3650, err, sizeof err) == TB_OK,
              "%s", err);
    CHECK(mode_of(ca) == 0700);
    CHECK(mode_of(PJ(p, ca, "ca.key")) == 0600);
    CHECK(mode_of(PJ(p, ca, "ca.crt")) == 0644);

    char keypem[4096];
    CHECK(slurp(PJ(p, ca, "ca.key"), keypem, sizeof keypem) > 0);
    CHECK(has(keypem, "-----BEGIN PRIVATE KEY-----"));   /* PKCS#8, unencrypted */

    X509 *x = raw_cert(PJ(p, ca, "ca.crt"));
    CHECK(x != NULL);
    if (x) {
        CHECK(X509_get_version(x) == X509_VERSION_3);
        CHECK(strcmp(name_entry(X509_get_subject_name(x), NID_commonName), "Tongban Root CA") == 0);
        CHECK(strcmp(name_entry(X509_get_subject_name(x), NID_organizationName), "tongban") == 0);
        CHECK(X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)) == 0);
        CHECK(X509_check_ca(x) == 1);
        uint32_t fl = X509_get_extension_flags(x);
        CHECK((fl & EXFLAG_CA) && (fl & EXFLAG_SS));
        int crit = -1;
        BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
        CHECK(bc && bc->ca && crit == 1);
        BASIC_CONSTRAINTS_free(bc);
        CHECK(X509_get_key_usage(x) == (KU_KEY_CERT_SIGN | KU_CRL_SIGN));
        CHECK(X509_get0_subject_key_id(x) != NULL);
        /* 128-bit random positive serial */
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
        CHECK(bn && !BN_is_negative(bn) && BN_num_bits(bn) > 100 && BN_num_bits(bn) <= 128);
        BN_free(bn);
        /* about 3650 days */
        int days = 0, secs = 0;
        CHECK(ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)) == 1);
        CHECK(days == 3649 || days == 3650);
        CHECK(X509_cmp_current_time(X509_get0_notBefore(x)) < 0);
        EVP_PKEY *pub = X509_get0_pubkey(x);
        CHECK(pub && EVP_PKEY_is_a(pub, "ED25519"));
        CHECK(X509_verify(x, pub) == 1);
    }

    /* a second CA: different serial */
    char ca2[600];
    snprintf(ca2, sizeof ca2, "%s/ca2", dir);
    CHECK(tb_pki_init_ca(ca2, "Tongban Root CA", TB_ALG_ED25519, 10, err, sizeof err) == TB_OK);
    X509 *y = raw_cert(PJ(q, ca2, "ca.crt"));
    CHECK(x && y && ASN1_INTEGER_cmp(X509_get0_serialNumber(x), X509_get0_serialNumber(y)) != 0);
    X509_free(y);
    X509_free(x);

    /* never overwritten */
    char before[8192], after[8192];
    CHECK(slurp(PJ(p, ca, "ca.crt"), before, sizeof before) > 0);
    err[0] = '\0';
    CHECK(tb_pki_init_ca(ca, "Another", TB_ALG_P256, 10, err, sizeof err) == TB_ERR_DUPLICATE);
    CHECK_MSG(has(err, "ca.key") && has(err, "already exists"), "%s", err);
    CHECK(slurp(PJ(p, ca, "ca.crt"), after, sizeof after) > 0);
    CHECK(strcmp(before, after) == 0);
    /* ca.crt alone present: ca.key is not created either */
    char ca3[600];
    snprintf(ca3, sizeof ca3, "%s/ca3", dir);
    CHECK(mkdir(ca3, 0700) == 0);
    CHECK(put(PJ(p, ca3, "ca.crt"), "placeholder\n", 0644) == 0);
    CHECK(tb_pki_init_ca(ca3, "X", TB_ALG_SM2, 10, err, sizeof err) == TB_ERR_DUPLICATE);
    CHECK(has(err, "ca.crt"));
    CHECK(mode_of(PJ(p, ca3, "ca.key")) == -1);

    /* argument checks */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/bad", dir);
    CHECK(tb_pki_init_ca(bad, "", TB_ALG_ED25519, 10, err, sizeof err) == TB_ERR_INVALID);
    CHECK(tb_pki_init_ca(bad, NULL, TB_ALG_ED25519, 10, err, sizeof err) == TB_ERR_INVALID);
    CHECK(tb_pki_init_ca(bad, "a\nb", TB_ALG_ED25519, 10, err, sizeof err) == TB_ERR_INVALID);
    CHECK(tb_pki_init_ca(bad, "CA", TB_ALG_NONE, 10, err, sizeof err) == TB_ERR_INVALID);
    CHECK(tb_pki_init_ca(bad, "CA", (tb_alg_t)99, 10, err, sizeof err) == TB_ERR_INVALID);
    CHECK(tb_pki_init_ca(bad, "CA", TB_ALG_ED25519, 0, err, sizeof err) == TB_ERR_INVALID);
    CHECK(tb_pki_init_ca(bad, "CA", TB_ALG_ED25519, 36501, err, sizeof err) == TB_ERR_INVALID);
    CHECK(has(err, "36501"));
    CHECK(tb_pki_init_ca(NULL, "CA", TB_ALG_ED25519, 10, err, sizeof err) == TB_ERR_INVALID);
    CHECK(mode_of(bad) == -1);   /* nothing created on bad arguments */
    /* a CN over 64 characters is refused by X.509 rules */
    char longname[80];
    memset(longname, 'n', 70);
    longname[70] = '\0';
    CHECK(tb_pki_init_ca(bad, longname, TB_ALG_ED25519, 10, err, sizeof err) == TB_ERR_CRYPTO);
    CHECK(mode_of(PJ(p, bad, "ca.key")) == -1);
    CHECK(ERR_peek_error() == 0);
    /* UTF-8 names and the longest validity */
    char cn[600];
    snprintf(cn, sizeof cn, "%s/cn", dir);
    CHECK(tb_pki_init_ca(cn, "国家数据交换根CA", TB_ALG_SM2, 36500, err, sizeof err) == TB_OK);
    tb_cert_t *c = NULL;
    CHECK(tb_cert_load_file(PJ(p, cn, "ca.crt"), &c, err, sizeof err) == TB_OK);
    CHECK(c && strcmp(tb_cert_node_id(c), "国家数据交换根CA") == 0);
    CHECK(c && tb_cert_days_left(c) >= 36499);
    tb_cert_destroy(&c);
    tbtest_rmtree(dir);
}

/* One node under an SM2 CA, checked file by file. */
static void test_issue(void)
{
    char dir[512], err[TB_ERRLEN], p[700], ca[600], out[600];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("issue"));
    snprintf(ca, sizeof ca, "%s/ca", dir);
    snprintf(out, sizeof out, "%s/nodes/110000", dir);

    CHECK(tb_pki_init_ca(ca, "Root", TB_ALG_SM2, 100, err, sizeof err) == TB_OK);
    CHECK_MSG(tb_pki_issue(ca, "110000", TB_ALG_ED25519, 30, out, err, sizeof err) == TB_OK,
              "%s", err);
    CHECK(mode_of(out) == 0700);
    CHECK(mode_of(PJ(p, out, "node.key")) == 0600);
    CHECK(mode_of(PJ(p, out, "node.crt")) == 0644);
    CHECK(mode_of(PJ(p, out, "ca.crt")) == 0644);
    CHECK(mode_of(PJ(p, out, "curve.key")) == 0600);
    CHECK(mode_of(PJ(p, out, "curve.pub")) == 0644);

    /* the copied CA certificate is the CA certificate */
    tb_cert_t *c1 = NULL, *c2 = NULL, *node = NULL;
    CHECK(tb_cert_load_file(PJ(p, ca, "ca.crt"), &c1, err, sizeof err) == TB_OK);
    CHECK(tb_cert_load_file(PJ(p, out, "ca.crt"), &c2, err, sizeof err) == TB_OK);
    CHECK(tb_cert_load_file(PJ(p, out, "node.crt"), &node, err, sizeof err) == TB_OK);
    CHECK(c1 && c2 && strcmp(tb_cert_key_id(c1), tb_cert_key_id(c2)) == 0);
    CHECK(node && c2 && tb_cert_verify_issued_by(node, c2, err, sizeof err) == TB_OK);
    CHECK(node && strcmp(tb_cert_node_id(node), "110000") == 0);
    CHECK(node && tb_cert_alg(node) == TB_ALG_ED25519);
    tb_signer_t *s = NULL;
    CHECK(tb_signer_load(PJ(p, out, "node.key"), &s, err, sizeof err) == TB_OK);
    CHECK(node && s && tb_cert_matches_signer(node, s, err, sizeof err) == TB_OK);
    tb_signer_destroy(&s);
    tb_cert_destroy(&c2);
    tb_cert_destroy(&node);

    /* node certificate details */
    X509 *x = raw_cert(PJ(p, out, "node.crt"));
    X509 *cx = raw_cert(PJ(p, ca, "ca.crt"));
    CHECK(x && cx);
    if (x && cx) {
        CHECK(X509_get_version(x) == X509_VERSION_3);
        CHECK(strcmp(name_entry(X509_get_subject_name(x), NID_commonName), "110000") == 0);
        CHECK(strcmp(name_entry(X509_get_subject_name(x), NID_organizationName), "tongban") == 0);
        CHECK(X509_NAME_cmp(X509_get_issuer_name(x), X509_get_subject_name(cx)) == 0);
        int crit = -1;
        BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
        CHECK(bc && !bc->ca && crit == 1);
        BASIC_CONSTRAINTS_free(bc);
        CHECK(X509_check_ca(x) == 0);
        CHECK(X509_get_key_usage(x) == KU_DIGITAL_SIGNATURE);
        const ASN1_OCTET_STRING *akid = X509_get0_authority_key_id(x);
        const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(cx);
        CHECK(akid && skid && ASN1_OCTET_STRING_cmp(akid, skid) == 0);
        CHECK(X509_get_signature_nid(x) == NID_SM2_with_SM3);
        CHECK(X509_check_issued(cx, x) == X509_V_OK);
    }
    X509_free(x);
    X509_free(cx);

    /* CURVE files: 40 Z85 characters and a newline; a matching pair */
    char sec[64], pub[64], sec41[41], pub41[41], derived[41];
    CHECK(slurp(PJ(p, out, "curve.key"), sec, sizeof sec) == 41);
    CHECK(slurp(PJ(p, out, "curve.pub"), pub, sizeof pub) == 41);
    CHECK(sec[40] == '\n' && pub[40] == '\n');
    CHECK(strcmp(sec, pub) != 0);
    CHECK(tb_pki_read_z85(PJ(p, out, "curve.key"), 1, sec41, err, sizeof err) == TB_OK);
    CHECK(tb_pki_read_z85(PJ(p, out, "curve.pub"), 0, pub41, err, sizeof err) == TB_OK);
    CHECK(strlen(sec41) == 40 && strlen(pub41) == 40);
    CHECK(strncmp(sec41, sec, 40) == 0 && strncmp(pub41, pub, 40) == 0);
    CHECK(zmq_curve_public(derived, sec41) == 0 && strcmp(derived, pub41) == 0);

    /* a second node gets different keys */
    char out2[600], sec2[64];
    snprintf(out2, sizeof out2, "%s/nodes/120000", dir);
    CHECK(tb_pki_issue(ca, "120000", TB_ALG_SM2, 30, out2, err, sizeof err) == TB_OK);
    CHECK(slurp(PJ(p, out2, "curve.key"), sec2, sizeof sec2) == 41);
    CHECK(strcmp(sec, sec2) != 0);

    /* never overwritten */
    char before[8192], after[8192];
    CHECK(slurp(PJ(p, out, "node.crt"), before, sizeof before) > 0);
    err[0] = '\0';
    CHECK(tb_pki_issue(ca, "110000", TB_ALG_ED25519, 30, out, err, sizeof err) == TB_ERR_DUPLICATE);
    CHECK_MSG(has(err, out) && has(err, "already exists"), "%s", err);
    CHECK(slurp(PJ(p, out, "node.crt"), after, sizeof after) > 0);
    CHECK(strcmp(before, after) == 0);
    CHECK(slurp(PJ(p, out, "curve.key"), after, sizeof after) == 41 && strcmp(sec, after) == 0);

    /* only curve.pub in the way: nothing at all is written */
    char out3[600];
    snprintf(out3, sizeof out3, "%s/nodes/130000", dir);
    CHECK(mkdir(out3, 0700) == 0);
    CHECK(put(PJ(p, out3, "curve.pub"), "x\n", 0644) == 0);
    CHECK(tb_pki_issue(ca, "130000", TB_ALG_P256, 30, out3, err, sizeof err) == TB_ERR_DUPLICATE);
    CHECK_MSG(has(err, "curve.pub"), "%s", err);
    CHECK(mode_of(PJ(p, out3, "node.key")) == -1);
    CHECK(mode_of(PJ(p, out3, "node.crt")) == -1);
    CHECK(mode_of(PJ(p, out3, "curve.key")) == -1);

    tb_cert_destroy(&c1);
    tbtest_rmtree(dir);
}

static void test_issue_errors(void)
{
    char dir[512], err[TB_ERRLEN], p[700], q[700], ca[600], out[600];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("issuerr"));
    snprintf(ca, sizeof ca, "%s/ca", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    CHECK(tb_pki_init_ca(ca, "Root", TB_ALG_P256, 100, err, sizeof err) == TB_OK);

    /* node ids */
    const char *bad_ids[] = { "", "a/b", "a b", "../x", "nöde", "a\n", "x;y", "a*" };
    for (size_t i = 0; i < sizeof bad_ids / sizeof bad_ids[0]; i++) {
        CHECK_MSG(tb_pki_issue(ca, bad_ids[i], TB_ALG_ED25519, 10, out, err, sizeof err) == TB_ERR_INVALID,
                  "id \"%s\"", bad_ids[i]);
    }
    CHECK(has(err, "invalid node id"));
    CHECK(tb_pki_issue(ca, NULL, TB_ALG_ED25519, 10, out, err, sizeof err) == TB_ERR_INVALID);
    char id65[66], id64[65];
    memset(id65, 'a', 65);
    id65[65] = '\0';
    memcpy(id64, id65, 64);
    id64[64] = '\0';
    CHECK(tb_pki_issue(ca, id65, TB_ALG_ED25519, 10, out, err, sizeof err) == TB_ERR_INVALID);
    CHECK(mode_of(out) == -1);
    char o64[600], oodd[600];
    snprintf(o64, sizeof o64, "%s/o64", dir);
    snprintf(oodd, sizeof oodd, "%s/oodd", dir);
    CHECK(tb_pki_issue(ca, id64, TB_ALG_ED25519, 10, o64, err, sizeof err) == TB_OK);
    CHECK(tb_pki_issue(ca, "Az09_.-", TB_ALG_ED25519, 10, oodd, err, sizeof err) == TB_OK);
    tb_cert_t *c = NULL;
    CHECK(tb_cert_load_file(PJ(p, oodd, "node.crt"), &c, err, sizeof err) == TB_OK);
    CHECK(c && strcmp(tb_cert_node_id(c), "Az09_.-") == 0);
    tb_cert_destroy(&c);

    /* days and algorithm */
    CHECK(tb_pki_issue(ca, "n", TB_ALG_ED25519, 0, out, err, sizeof err) == TB_ERR_INVALID);
    CHECK(tb_pki_issue(ca, "n", TB_ALG_ED25519, -5, out, err, sizeof err) == TB_ERR_INVALID);
    CHECK(tb_pki_issue(ca, "n", TB_ALG_ED25519, 36501, out, err, sizeof err) == TB_ERR_INVALID);
    CHECK(tb_pki_issue(ca, "n", TB_ALG_NONE, 10, out, err, sizeof err) == TB_ERR_INVALID);
    CHECK(mode_of(out) == -1);

    /* missing CA */
    CHECK(tb_pki_issue(PJ(q, dir, "noca"), "n", TB_ALG_ED25519, 10, out, err, sizeof err) == TB_ERR_IO);
    CHECK_MSG(has(err, "ca.key") && has(err, "No such file"), "%s", err);
    CHECK(mode_of(out) == -1);

    /* CA key readable by others */
    CHECK(chmod(PJ(p, ca, "ca.key"), 0644) == 0);
    CHECK(tb_pki_issue(ca, "n", TB_ALG_ED25519, 10, out, err, sizeof err) == TB_ERR_PERM);
    CHECK_MSG(has(err, "permissions 0644 are too open"), "%s", err);
    CHECK(chmod(PJ(p, ca, "ca.key"), 0600) == 0);

    /* CA key and certificate from different CAs */
    char other[600], mixed[600], kb[8192];
    snprintf(other, sizeof other, "%s/other", dir);
    snprintf(mixed, sizeof mixed, "%s/mixed", dir);
    CHECK(tb_pki_init_ca(other, "Root", TB_ALG_P256, 100, err, sizeof err) == TB_OK);
    CHECK(mkdir(mixed, 0700) == 0);
    CHECK(slurp(PJ(p, other, "ca.key"), kb, sizeof kb) > 0);
    CHECK(put(PJ(p, mixed, "ca.key"), kb, 0600) == 0);
    CHECK(slurp(PJ(p, ca, "ca.crt"), kb, sizeof kb) > 0);
    CHECK(put(PJ(p, mixed, "ca.crt"), kb, 0644) == 0);
    CHECK(tb_pki_issue(mixed, "n", TB_ALG_ED25519, 10, out, err, sizeof err) == TB_ERR_CRYPTO);
    CHECK_MSG(has(err, "does not belong"), "%s", err);

    /* a node's directory is no CA */
    CHECK(tb_pki_issue(ca, "leaf", TB_ALG_ED25519, 10, out, err, sizeof err) == TB_OK);
    char sub[600];
    snprintf(sub, sizeof sub, "%s/sub", dir);
    CHECK(mkdir(sub, 0700) == 0);
    CHECK(slurp(PJ(p, out, "node.key"), kb, sizeof kb) > 0);
    CHECK(put(PJ(p, sub, "ca.key"), kb, 0600) == 0);
    CHECK(slurp(PJ(p, out, "node.crt"), kb, sizeof kb) > 0);
    CHECK(put(PJ(p, sub, "ca.crt"), kb, 0644) == 0);
    CHECK(tb_pki_issue(sub, "n", TB_ALG_ED25519, 10, PJ(q, dir, "sub-out"), err, sizeof err) == TB_ERR_CERT);
    CHECK_MSG(has(err, "not a CA"), "%s", err);
    CHECK(ERR_peek_error() == 0);
    tbtest_rmtree(dir);
}

static void test_curve_files(void)
{
    char dir[512], err[TB_ERRLEN], p[700], q[700], out[41];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("curve"));

    CHECK(tb_pki_curve_keypair(PJ(p, dir, "hub.key"), PJ(q, dir, "hub.pub"), err, sizeof err) == TB_OK);
    CHECK(mode_of(p) == 0600);
    CHECK(mode_of(q) == 0644);
    CHECK(tb_pki_read_z85(p, 1, out, err, sizeof err) == TB_OK);
    CHECK(strlen(out) == 40);
    CHECK(tb_pki_read_z85(q, 0, out, err, sizeof err) == TB_OK);
    CHECK(tb_pki_curve_keypair(p, PJ(q, dir, "other.pub"), err, sizeof err) == TB_ERR_DUPLICATE);
    CHECK(mode_of(q) == -1);   /* the public half was not written either */

    /* permissions of secret files */
    CHECK(chmod(p, 0640) == 0);
    CHECK(tb_pki_read_z85(p, 1, out, err, sizeof err) == TB_ERR_PERM);
    CHECK_MSG(has(err, p) && has(err, "0640"), "%s", err);
    CHECK(tb_pki_read_z85(p, 0, out, err, sizeof err) == TB_OK);   /* not checked for public */
    CHECK(chmod(p, 0400) == 0);
    CHECK(tb_pki_read_z85(p, 1, out, err, sizeof err) == TB_OK);

    /* content */
    const char *good = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
    CHECK(put(PJ(p, dir, "k"), good, 0600) == 0);   /* no newline */
    CHECK(tb_pki_read_z85(p, 1, out, err, sizeof err) == TB_OK);
    CHECK(strcmp(out, good) == 0);
    char line[64];
    snprintf(line, sizeof line, "%s\r\n", good);
    CHECK(put(p, line, 0600) == 0);
    CHECK(tb_pki_read_z85(p, 1, out, err, sizeof err) == TB_OK);
    const char *bad[] = { "", "short\n", "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf\n",
                          "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7X\n",
                          "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf~\n",
                          "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf\"\n",
                          "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\n\n" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(put(p, bad[i], 0600) == 0);
        CHECK_MSG(tb_pki_read_z85(p, 1, out, err, sizeof err) == TB_ERR_INVALID, "case %zu", i);
    }
    CHECK(has(err, p));
    CHECK(tb_pki_read_z85(PJ(p, dir, "missing"), 0, out, err, sizeof err) == TB_ERR_IO);
    CHECK(has(err, "No such file"));
    CHECK(tb_pki_read_z85(dir, 0, out, err, sizeof err) == TB_ERR_IO);
    tbtest_rmtree(dir);
}

int main(void)
{
    umask(022);
    test_init_ca();
    test_issue();
    test_issue_errors();
    test_curve_files();
    return tbtest_done("test_pki");
}
