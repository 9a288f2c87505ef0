/* sm2.h -- SM2 signatures (GB/T 32918.2) whose SM3 digest libgcrypt computes.
 *
 * An SM2 signature signs e = SM3(Z || M), Z = SM3(ENTL || ID || a || b ||
 * xG || yG || xA || yA) of the signer's public key and distinguishing ID.
 * OpenSSL 3.0's SM3 is portable C (~250 MB/s here); libgcrypt's has x86-64
 * AVX/BMI2 assembly (~1.3x), and a batch signature's cost is that hash over
 * the whole batch, once on the sender, the hub and the receiver. So e is
 * computed with libgcrypt and only the elliptic-curve step is OpenSSL's
 * (EVP_PKEY_sign / EVP_PKEY_verify over e). The signatures are the standard
 * ones: EVP_DigestSign/Verify with SM3 and the same ID make and accept them
 * (test_sm2 and test_crypto check both ways, and the openssl CLI).
 */
#ifndef TB_SM2_H
#define TB_SM2_H

#include <stddef.h>
#include <stdint.h>
#include <tongban/tongban.h>

#define TB_SM2_Z_LEN 32

struct evp_pkey_st;

/* Z of key (an SM2 key, public or private) for the distinguishing ID id.
 * Returns TB_OK, TB_ERR_CRYPTO (not an SM2 key, or OpenSSL/libgcrypt
 * failed; the reason in err) or TB_ERR_INVALID (id longer than 8,191
 * bytes, the most ENTL can say). */
tb_err_t tb_sm2_z(struct evp_pkey_st *key, const char *id, uint8_t z[TB_SM2_Z_LEN], char *err, size_t errlen);

/* e = SM3(z || data) into e. Returns TB_OK or TB_ERR_CRYPTO. */
tb_err_t tb_sm2_digest(const uint8_t z[TB_SM2_Z_LEN], const uint8_t *data, size_t len,
                       uint8_t e[TB_SM2_Z_LEN], char *err, size_t errlen);

/* Signs data with the private SM2 key whose Z is z. *sig (DER, malloc'ed,
 * the caller frees) and *siglen on TB_OK; TB_ERR_CRYPTO or TB_ERR_NOMEM. */
tb_err_t tb_sm2_sign(struct evp_pkey_st *key, const uint8_t z[TB_SM2_Z_LEN], const uint8_t *data, size_t len,
                     uint8_t **sig, size_t *siglen, char *err, size_t errlen);

/* Verifies sig over data with the SM2 key whose Z is z. TB_OK when valid,
 * TB_ERR_BADSIG when not (wrong or malformed signature; OpenSSL's error
 * queue is left clear), TB_ERR_CRYPTO when the check could not run. */
tb_err_t tb_sm2_verify(struct evp_pkey_st *key, const uint8_t z[TB_SM2_Z_LEN], const uint8_t *data, size_t len,
                       const uint8_t *sig, size_t siglen, char *err, size_t errlen);

#endif
