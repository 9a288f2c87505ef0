/* test_sm2.c -- SM2 signatures over a libgcrypt SM3 digest, checked against OpenSSL's own SM2. */
#include "tbtest.h"

#include "crypto.h"
#include "sm2.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

/* OpenSSL's EVP_DigestVerify (SM3, distinguishing ID id) of sig over data: 1 if valid. */
static int ossl_verify(EVP_PKEY *key, const char *id, const uint8_t *data, size_t len,
                       const uint8_t *sig, size_t siglen)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new(key, NULL);
    int ok = md && pctx && EVP_PKEY_CTX_set1_id(pctx, id, strlen(id)) == 1;
    if (ok) {
        EVP_MD_CTX_set_pkey_ctx(md, pctx);
        ok = EVP_DigestVerifyInit(md, NULL, EVP_sm3(), NULL, key) == 1 &&
             EVP_DigestVerify(md, sig, siglen, data, len) == 1;
    }
    EVP_MD_CTX_free(md);
    EVP_PKEY_CTX_free(pctx);
    ERR_clear_error();
    return ok;
}

/* OpenSSL's EVP_DigestSign (SM3, TB_SM2_ID) over data into sig. Returns its length, 0 on failure. */
static size_t ossl_sign(EVP_PKEY *key, const uint8_t *data, size_t len, uint8_t *sig, size_t cap)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new(key, NULL);
    size_t n = cap;
    int ok = md && pctx && EVP_PKEY_CTX_set1_id(pctx, TB_SM2_ID, strlen(TB_SM2_ID)) == 1;
    if (ok) {
        EVP_MD_CTX_set_pkey_ctx(md, pctx);
        ok = EVP_DigestSignInit(md, NULL, EVP_sm3(), NULL, key) == 1 &&
             EVP_DigestSign(md, sig, &n, data, len) == 1;
    }
    EVP_MD_CTX_free(md);
    EVP_PKEY_CTX_free(pctx);
    return ok ? n : 0;
}

/* A copy of key holding the public half only (what a certificate gives). */
static EVP_PKEY *public_only(EVP_PKEY *key)
{
    EVP_PKEY *pub = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "SM2", NULL);
    if (ctx && EVP_PKEY_todata(key, EVP_PKEY_PUBLIC_KEY, &params) == 1 && EVP_PKEY_fromdata_init(ctx) == 1 &&
        EVP_PKEY_fromdata(ctx, &pub, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pub = NULL;
    OSSL_PARAM_free(params);
    EVP_PKEY_CTX_free(ctx);
    return pub;
}

/* tb_sm2_digest is SM3(z || data): the same as OpenSSL's SM3 over the concatenation. */
static void test_digest(void)
{
    char err[TB_ERRLEN];
    uint8_t z[TB_SM2_Z_LEN], e[TB_SM2_Z_LEN], want[TB_SM2_Z_LEN], cat[TB_SM2_Z_LEN + 1000];
    for (unsigned i = 0; i < sizeof cat; i++) cat[i] = (uint8_t)(i * 131 + 7);
    memcpy(z, cat, sizeof z);
    size_t lens[] = { 0, 1, 31, 64, 1000 };
    for (unsigned i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        unsigned int n = 0;
        CHECK(EVP_Digest(cat, TB_SM2_Z_LEN + lens[i], want, &n, EVP_sm3(), NULL) == 1 && n == sizeof want);
        CHECK(tb_sm2_digest(z, lens[i] ? cat + TB_SM2_Z_LEN : NULL, lens[i], e, err, sizeof err) == TB_OK);
        CHECK_MSG(memcmp(e, want, sizeof e) == 0, "SM3 of %zu bytes differs from OpenSSL's", lens[i]);
    }
    /* the GB/T 32905 example: SM3("abc") */
    static const uint8_t abc[32] = { 0x66, 0xc7, 0xf0, 0xf4, 0x62, 0xee, 0xed, 0xd9, 0xd1, 0xf2, 0xd4,
                                     0x6b, 0xdc, 0x10, 0xe4, 0xe2, 0x41, 0x67, 0xc4, 0x87, 0x5c, 0xf2,
                                     0xf7, 0xa2, 0x29, 0x7d, 0xa0, 0x2b, 0x8f, 0x4b, 0xa8, 0xe0 };
    unsigned int n = 0;
    CHECK(EVP_Digest("abc", 3, want, &n, EVP_sm3(), NULL) == 1 && memcmp(want, abc, 32) == 0);
}

/* Signatures made here verify with OpenSSL's SM2 and the other way round;
 * anything altered does not verify. */
static void test_sign_verify(void)
{
    char err[TB_ERRLEN];
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "SM2");
    EVP_PKEY *pub = key ? public_only(key) : NULL;
    CHECK(key && pub && EVP_PKEY_is_a(pub, "SM2"));
    if (!key || !pub) goto done;
    uint8_t z[TB_SM2_Z_LEN], zpub[TB_SM2_Z_LEN], zother[TB_SM2_Z_LEN];
    CHECK(tb_sm2_z(key, TB_SM2_ID, z, err, sizeof err) == TB_OK);
    CHECK(tb_sm2_z(pub, TB_SM2_ID, zpub, err, sizeof err) == TB_OK);
    CHECK(memcmp(z, zpub, sizeof z) == 0);
    CHECK(tb_sm2_z(pub, "ALICE123@YAHOO.COM", zother, err, sizeof err) == TB_OK);
    CHECK(memcmp(z, zother, sizeof z) != 0);

    size_t big = 1 << 20;
    uint8_t *data = malloc(big);
    CHECK(data != NULL);
    if (!data) goto done;
    for (size_t i = 0; i < big; i++) data[i] = (uint8_t)(i ^ (i >> 9));
    size_t lens[] = { 0, 1, 600, big };
    for (unsigned i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        size_t len = lens[i];
        uint8_t *sig = NULL;
        size_t siglen = 0;
        CHECK(tb_sm2_sign(key, z, data, len, &sig, &siglen, err, sizeof err) == TB_OK);
        CHECK(sig != NULL && siglen >= 8 && siglen <= 72);
        if (!sig) continue;
        CHECK_MSG(ossl_verify(pub, TB_SM2_ID, data, len, sig, siglen), "OpenSSL refused our signature of %zu bytes",
                  len);
        CHECK(!ossl_verify(pub, "ALICE123@YAHOO.COM", data, len, sig, siglen));
        CHECK(tb_sm2_verify(pub, zpub, data, len, sig, siglen, err, sizeof err) == TB_OK);
        /* the wrong Z (another ID) */
        CHECK(tb_sm2_verify(pub, zother, data, len, sig, siglen, err, sizeof err) == TB_ERR_BADSIG);
        if (len) {
            data[len / 2] ^= 0x01;
            CHECK(tb_sm2_verify(pub, zpub, data, len, sig, siglen, err, sizeof err) == TB_ERR_BADSIG);
            CHECK(strstr(err, "bad sm2 signature") != NULL);
            data[len / 2] ^= 0x01;
        }
        /* a flipped bit in r, in s, a truncated and an empty signature */
        size_t pos[2] = { 6, siglen - 2 };
        for (int k = 0; k < 2; k++) {
            sig[pos[k]] ^= 0x10;
            CHECK(tb_sm2_verify(pub, zpub, data, len, sig, siglen, err, sizeof err) == TB_ERR_BADSIG);
            sig[pos[k]] ^= 0x10;
        }
        CHECK(tb_sm2_verify(pub, zpub, data, len, sig, siglen - 1, err, sizeof err) == TB_ERR_BADSIG);
        CHECK(tb_sm2_verify(pub, zpub, data, len, sig, 0, err, sizeof err) == TB_ERR_BADSIG);
        CHECK(ERR_peek_error() == 0);
        CHECK(tb_sm2_verify(pub, zpub, data, len, sig, siglen, err, sizeof err) == TB_OK);
        free(sig);

        /* OpenSSL's signature verifies here */
        uint8_t osig[80];
        size_t on = ossl_sign(key, data, len, osig, sizeof osig);
        CHECK(on > 0);
        CHECK(tb_sm2_verify(pub, zpub, data, len, osig, on, err, sizeof err) == TB_OK);
    }
    free(data);
done:
    EVP_PKEY_free(pub);
    EVP_PKEY_free(key);
}

/* Keys that are not SM2 and IDs ENTL cannot express are refused with a reason. */
static void test_refusals(void)
{
    char err[TB_ERRLEN];
    uint8_t z[TB_SM2_Z_LEN];
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    EVP_PKEY *p256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    EVP_PKEY *sm2 = EVP_PKEY_Q_keygen(NULL, NULL, "SM2");
    err[0] = '\0';
    CHECK(tb_sm2_z(ed, TB_SM2_ID, z, err, sizeof err) == TB_ERR_CRYPTO && strstr(err, "not an SM2 key"));
    CHECK(tb_sm2_z(p256, TB_SM2_ID, z, err, sizeof err) == TB_ERR_CRYPTO);
    CHECK(tb_sm2_z(NULL, TB_SM2_ID, z, err, sizeof err) == TB_ERR_CRYPTO);
    char *longid = malloc(8192 + 1);
    if (longid) {
        memset(longid, 'a', 8192);
        longid[8192] = '\0';
        CHECK(tb_sm2_z(sm2, longid, z, err, sizeof err) == TB_ERR_INVALID && strstr(err, "too long"));
        longid[8191] = '\0';   /* 8,191 bytes: the longest ENTL can say */
        CHECK(tb_sm2_z(sm2, longid, z, err, sizeof err) == TB_OK);
        free(longid);
    }
    CHECK(tb_sm2_z(sm2, "", z, err, sizeof err) == TB_OK);
    CHECK(ERR_peek_error() == 0);
    EVP_PKEY_free(ed);
    EVP_PKEY_free(p256);
    EVP_PKEY_free(sm2);
}

/* Prints the SM3 rates of libgcrypt and OpenSSL over 700 KB (a batch of
 * 1,000 records), the reason this module exists. Asserts nothing about speed. */
static void bench(void)
{
    char err[TB_ERRLEN];
    size_t len = 700 * 1000;
    uint8_t *data = calloc(1, len), z[TB_SM2_Z_LEN] = { 0 }, e[TB_SM2_Z_LEN];
    if (!data) return;
    struct timespec t0, t1, t2;
    int rounds = 40, ok = 1;
    unsigned int n;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int r = 0; r < rounds; r++) ok &= tb_sm2_digest(z, data, len, e, err, sizeof err) == TB_OK;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    for (int r = 0; r < rounds; r++) ok &= EVP_Digest(data, len, e, &n, EVP_sm3(), NULL) == 1;
    clock_gettime(CLOCK_MONOTONIC, &t2);
    CHECK(ok);
    double tg = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    double to = (double)(t2.tv_sec - t1.tv_sec) + (double)(t2.tv_nsec - t1.tv_nsec) / 1e9;
    printf("bench SM3 700 KB: libgcrypt %.0f MB/s, OpenSSL %.0f MB/s\n", rounds * (double)len / 1e6 / tg,
           rounds * (double)len / 1e6 / to);
    free(data);
}

int main(void)
{
    test_digest();
    test_sign_verify();
    test_refusals();
    bench();
    return tbtest_done("test_sm2");
}
