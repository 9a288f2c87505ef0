/* sm2.c -- SM2 signatures whose SM3 digest libgcrypt computes (see sm2.h). */
#include "crypto.h"
#include "errbuf.h"
#include "sm2.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <gcrypt.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>

#define COORD 32    /* bytes of a coordinate or curve parameter of SM2's 256-bit curve */

static pthread_once_t gcrypt_once = PTHREAD_ONCE_INIT;
static int gcrypt_ok;

/* libgcrypt wants gcry_check_version before anything else. A library may
 * not be alone in the process: if the application already finished
 * libgcrypt's initialisation, that stands; otherwise this finishes it
 * (hashing needs no secure memory). */
static void gcrypt_init(void)
{
    if (!gcry_check_version(GCRYPT_VERSION)) return;
    if (!gcry_control(GCRYCTL_INITIALIZATION_FINISHED_P)) {
        gcry_control(GCRYCTL_DISABLE_SECMEM, 0);
        gcry_control(GCRYCTL_INITIALIZATION_FINISHED, 0);
    }
    gcrypt_ok = 1;
}

static int gcrypt_ready(char *err, size_t errlen)
{
    pthread_once(&gcrypt_once, gcrypt_init);
    if (!gcrypt_ok) tb_seterr(err, errlen, "libgcrypt %s or newer is not available", GCRYPT_VERSION);
    return gcrypt_ok;
}

/* SM3 of the concatenation of n buffers into out. Returns TB_OK or TB_ERR_CRYPTO. */
static tb_err_t sm3(gcry_buffer_t *iov, int n, uint8_t out[TB_SM2_Z_LEN], char *err, size_t errlen)
{
    if (!gcrypt_ready(err, errlen)) return TB_ERR_CRYPTO;
    gcry_error_t e = gcry_md_hash_buffers(GCRY_MD_SM3, 0, out, iov, n);
    if (e) {
        tb_seterr(err, errlen, "SM3 failed: %s", gcry_strerror(e));
        return TB_ERR_CRYPTO;
    }
    return TB_OK;
}

/* Writes bn big-endian into COORD bytes at out. Returns 1, or 0 if it does not fit. */
static int put_coord(const BIGNUM *bn, uint8_t *out)
{
    return BN_bn2binpad(bn, out, COORD) == COORD;
}

tb_err_t tb_sm2_z(EVP_PKEY *key, const char *id, uint8_t z[TB_SM2_Z_LEN], char *err, size_t errlen)
{
    tb_err_t rc = TB_ERR_CRYPTO;
    size_t idlen = id ? strlen(id) : 0;
    EC_GROUP *group = NULL;
    BIGNUM *p = BN_new(), *a = BN_new(), *b = BN_new(), *gx = BN_new(), *gy = BN_new();
    BIGNUM *qx = NULL, *qy = NULL;
    uint8_t entl[2], params[6 * COORD];
    char reason[256];

    if (idlen > 0x1fff) {   /* ENTL is the ID's length in bits, in 16 bits */
        tb_seterr(err, errlen, "SM2 distinguishing ID of %zu bytes is too long", idlen);
        rc = TB_ERR_INVALID;
        goto done;
    }
    if (!key || !EVP_PKEY_is_a(key, "SM2")) {
        tb_seterr(err, errlen, "SM2 Z: not an SM2 key");
        goto done;
    }
    group = EC_GROUP_new_by_curve_name(NID_sm2);
    if (!p || !a || !b || !gx || !gy || !group || EC_GROUP_get_curve(group, p, a, b, NULL) != 1 ||
        EC_POINT_get_affine_coordinates(group, EC_GROUP_get0_generator(group), gx, gy, NULL) != 1 ||
        EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &qx) != 1 ||
        EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &qy) != 1) {
        tb_seterr(err, errlen, "SM2 Z: cannot read the curve or public key (%s)",
                  tb_ossl_reason(reason, sizeof reason));
        goto done;
    }
    if (!put_coord(a, params) || !put_coord(b, params + COORD) || !put_coord(gx, params + 2 * COORD) ||
        !put_coord(gy, params + 3 * COORD) || !put_coord(qx, params + 4 * COORD) ||
        !put_coord(qy, params + 5 * COORD)) {
        tb_seterr(err, errlen, "SM2 Z: a coordinate is longer than %d bytes", COORD);
        goto done;
    }
    entl[0] = (uint8_t)((idlen * 8) >> 8);
    entl[1] = (uint8_t)(idlen * 8);
    gcry_buffer_t iov[3] = {
        { .size = sizeof entl, .len = sizeof entl, .data = entl },
        { .size = idlen, .len = idlen, .data = (void *)id },
        { .size = sizeof params, .len = sizeof params, .data = params },
    };
    rc = sm3(iov, 3, z, err, errlen);
done:
    EC_GROUP_free(group);
    BN_free(p);
    BN_free(a);
    BN_free(b);
    BN_free(gx);
    BN_free(gy);
    BN_free(qx);
    BN_free(qy);
    return rc;
}

tb_err_t tb_sm2_digest(const uint8_t z[TB_SM2_Z_LEN], const uint8_t *data, size_t len,
                       uint8_t e[TB_SM2_Z_LEN], char *err, size_t errlen)
{
    gcry_buffer_t iov[2] = {
        { .size = TB_SM2_Z_LEN, .len = TB_SM2_Z_LEN, .data = (void *)z },
        { .size = len, .len = len, .data = (void *)data },
    };
    return sm3(iov, len ? 2 : 1, e, err, errlen);
}

tb_err_t tb_sm2_sign(EVP_PKEY *key, const uint8_t z[TB_SM2_Z_LEN], const uint8_t *data, size_t len,
                     uint8_t **sig, size_t *siglen, char *err, size_t errlen)
{
    uint8_t e[TB_SM2_Z_LEN];
    uint8_t *buf = NULL;
    size_t n = 0;
    char reason[256];
    tb_err_t rc = tb_sm2_digest(z, data, len, e, err, errlen);
    if (rc != TB_OK) return rc;
    rc = TB_ERR_CRYPTO;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
    if (!ctx || EVP_PKEY_sign_init(ctx) != 1 || EVP_PKEY_sign(ctx, NULL, &n, e, sizeof e) != 1 || n == 0)
        goto fail;
    if (!(buf = malloc(n))) {
        tb_seterr(err, errlen, "sm2 sign: out of memory");
        rc = TB_ERR_NOMEM;
        goto done;
    }
    if (EVP_PKEY_sign(ctx, buf, &n, e, sizeof e) != 1) goto fail;
    *sig = buf;
    *siglen = n;
    buf = NULL;
    rc = TB_OK;
    goto done;
fail:
    tb_seterr(err, errlen, "sm2 sign failed: %s", tb_ossl_reason(reason, sizeof reason));
done:
    free(buf);
    EVP_PKEY_CTX_free(ctx);
    return rc;
}

tb_err_t tb_sm2_verify(EVP_PKEY *key, const uint8_t z[TB_SM2_Z_LEN], const uint8_t *data, size_t len,
                       const uint8_t *sig, size_t siglen, char *err, size_t errlen)
{
    uint8_t e[TB_SM2_Z_LEN];
    char reason[256];
    tb_err_t rc = tb_sm2_digest(z, data, len, e, err, errlen);
    if (rc != TB_OK) return rc;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
    if (!ctx || EVP_PKEY_verify_init(ctx) != 1) {
        tb_seterr(err, errlen, "sm2 verify init failed: %s", tb_ossl_reason(reason, sizeof reason));
        EVP_PKEY_CTX_free(ctx);
        return TB_ERR_CRYPTO;
    }
    /* 1 = valid; 0 = mismatch; < 0 = e.g. malformed DER, just as bad from
     * the peer's side */
    if (EVP_PKEY_verify(ctx, sig, siglen, e, sizeof e) == 1) {
        rc = TB_OK;
    } else if (ERR_peek_error()) {
        tb_seterr(err, errlen, "bad sm2 signature (%s)", tb_ossl_reason(reason, sizeof reason));
        rc = TB_ERR_BADSIG;
    } else {
        tb_seterr(err, errlen, "bad sm2 signature");
        rc = TB_ERR_BADSIG;
    }
    ERR_clear_error();
    EVP_PKEY_CTX_free(ctx);
    return rc;
}
