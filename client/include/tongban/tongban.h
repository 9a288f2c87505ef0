/* tongban.h -- public API of libtongban, the integrators' client library.
 *
 * Include this one header. It declares the error vocabulary and version
 * query shared by the daemons and tools (below), and includes:
 *   tongban/client.h    the client of a node's API: records, electronic
 *                       licences (issue, verify, revoke), cross-region cases,
 *                       supervision and the event stream (docs/client-api.md);
 *   tongban/validate.h  validators and check characters of citizen IDs,
 *                       unified social credit codes, licence identifiers,
 *                       division codes and dates.
 * Every call that can fail returns a tb_err_t (TB_OK == 0); tb_strerror()
 * names it. Only tb_* / TB_* names are defined.
 */
#ifndef TONGBAN_TONGBAN_H
#define TONGBAN_TONGBAN_H

#include <tongban/version.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define TB_EXPORT __attribute__((visibility("default")))
#else
#define TB_EXPORT
#endif

typedef enum {
    TB_OK = 0,
    TB_ERR_INVALID,      /* bad argument or malformed input */
    TB_ERR_NOMEM,        /* allocation failed */
    TB_ERR_IO,           /* file or socket error */
    TB_ERR_CONFIG,       /* configuration is wrong */
    TB_ERR_CRYPTO,       /* key / certificate / signature operation failed */
    TB_ERR_BADSIG,       /* signature does not verify */
    TB_ERR_CERT,         /* certificate not trusted (chain, dates, subject) */
    TB_ERR_PERM,         /* file permissions too open, or access refused */
    TB_ERR_DB,           /* PostgreSQL error */
    TB_ERR_PROTO,        /* protocol violation / undecodable frame */
    TB_ERR_NOTFOUND,     /* no such object */
    TB_ERR_TIMEOUT,      /* no answer in time */
    TB_ERR_UNAVAILABLE,  /* peer or server not reachable */
    TB_ERR_REFUSED,      /* refused by policy (ACL, revoked, ...) */
    TB_ERR_DUPLICATE,    /* already present */
    TB_ERR__COUNT
} tb_err_t;

/* Returns a static, human-readable name for err (never NULL). */
TB_EXPORT const char *tb_strerror(tb_err_t err);

/* Returns the library version as "MAJOR.MINOR.PATCH" (static string). */
TB_EXPORT const char *tb_version(void);

#ifdef __cplusplus
}
#endif

#include <tongban/client.h>
#include <tongban/validate.h>
#endif
