/* tb_err.c -- the one error vocabulary of tongban and its names. */
#include <tongban/tongban.h>

const char *tb_strerror(tb_err_t err)
{
    switch (err) {
    case TB_OK: return "ok";
    case TB_ERR_INVALID: return "invalid input";
    case TB_ERR_NOMEM: return "out of memory";
    case TB_ERR_IO: return "i/o error";
    case TB_ERR_CONFIG: return "configuration error";
    case TB_ERR_CRYPTO: return "cryptographic operation failed";
    case TB_ERR_BADSIG: return "bad signature";
    case TB_ERR_CERT: return "certificate not trusted";
    case TB_ERR_PERM: return "permission problem";
    case TB_ERR_DB: return "database error";
    case TB_ERR_PROTO: return "protocol error";
    case TB_ERR_NOTFOUND: return "not found";
    case TB_ERR_TIMEOUT: return "timed out";
    case TB_ERR_UNAVAILABLE: return "unavailable";
    case TB_ERR_REFUSED: return "refused";
    case TB_ERR_DUPLICATE: return "duplicate";
    case TB_ERR__COUNT: break;
    }
    return "unknown error";
}

const char *tb_version(void)
{
    return TB_VERSION_STRING;
}
