/* store_domain.c -- calls the domain functions of the node's PostgreSQL
 * store (tongban.<fn>(text...) -> jsonb) and maps their SQLSTATEs to
 * tb_err_t (see store_domain.h). The SQL itself is migration 7 in
 * store_schema.c. */
#include "store_domain.h"

#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errbuf.h"

#define FN_MAX 63


/* 1 if fn is 1..FN_MAX characters of [a-z_]. */
static int plain_name(const char *fn)
{
    size_t n = fn ? strlen(fn) : 0;
    if (n == 0 || n > FN_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((fn[i] >= 'a' && fn[i] <= 'z') || fn[i] == '_'))
            return 0;
    return 1;
}

/* The tb_err_t of a failed call, from its SQLSTATE and the connection:
 * class 08 and 57P01..57P03 (the server terminates or is shutting down)
 * say the connection is gone, whatever libpq has noticed so far. */
static tb_err_t map_state(PGconn *conn, const char *state)
{
    if (PQstatus(conn) != CONNECTION_OK || (state && strncmp(state, "08", 2) == 0) ||
        (state && strncmp(state, "57P0", 4) == 0 && state[4] >= '1' && state[4] <= '3'))
        return TB_ERR_UNAVAILABLE;
    if (!state)
        return TB_ERR_DB;
    if (strcmp(state, "23514") == 0 || strcmp(state, "P0001") == 0)
        return TB_ERR_REFUSED;
    if (strcmp(state, "23505") == 0)
        return TB_ERR_DUPLICATE;
    if (strncmp(state, "22", 2) == 0)
        return TB_ERR_INVALID;
    return TB_ERR_DB;
}

tb_err_t tb_store_json_call(tb_store_t *st, const char *fn, const char *const *args, int nargs, char **out,
                            char *err, size_t errlen)
{
    if (out)
        *out = NULL;
    if (!st || !out || !plain_name(fn) || nargs < 0 || nargs > TB_STORE_JSON_MAX_ARGS || (nargs > 0 && !args)) {
        tb_seterr_line(err, errlen, "tb_store_json_call %s: invalid arguments (function [a-z_]{1,%d}, 0..%d arguments)",
               plain_name(fn) ? fn : "?", FN_MAX, TB_STORE_JSON_MAX_ARGS);
        return TB_ERR_INVALID;
    }
    PGconn *conn = tb_store_conn(st);
    if (!conn || PQstatus(conn) != CONNECTION_OK) {
        tb_seterr_line(err, errlen, "%s: connection to PostgreSQL lost: %s", fn, conn ? PQerrorMessage(conn) : "no connection");
        return TB_ERR_UNAVAILABLE;
    }

    /* "SELECT tongban." fn "(" "$1,...,$8" ")" */
    char sql[32 + FN_MAX + 4 * TB_STORE_JSON_MAX_ARGS];
    int len = snprintf(sql, sizeof sql, "SELECT tongban.%s(", fn);
    for (int i = 0; i < nargs; i++)
        len += snprintf(sql + len, sizeof sql - (size_t)len, "%s$%d", i ? "," : "", i + 1);
    snprintf(sql + len, sizeof sql - (size_t)len, ")");

    PGresult *res = PQexecParams(conn, sql, nargs, NULL, args, NULL, NULL, 0);
    ExecStatusType status = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (status == PGRES_TUPLES_OK && PQntuples(res) == 1 && PQnfields(res) == 1) {
        tb_err_t rc = TB_OK;
        if (PQgetisnull(res, 0, 0)) {
            tb_seterr_line(err, errlen, "%s: not found", fn);
            rc = TB_ERR_NOTFOUND;
        } else if (!(*out = strdup(PQgetvalue(res, 0, 0)))) {
            tb_seterr_line(err, errlen, "%s: out of memory", fn);
            rc = TB_ERR_NOMEM;
        }
        PQclear(res);
        return rc;
    }

    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    tb_err_t rc = map_state(conn, state);
    if (rc == TB_ERR_UNAVAILABLE)
        tb_seterr_line(err, errlen, "%s: connection to PostgreSQL lost: %s", fn,
               msg && *msg ? msg : PQerrorMessage(conn));
    else if (status == PGRES_TUPLES_OK)
        tb_seterr_line(err, errlen, "%s: unexpected result (%d rows, %d columns)", fn, PQntuples(res), PQnfields(res));
    else
        tb_seterr_line(err, errlen, "%s: %s", fn, msg && *msg ? msg : PQerrorMessage(conn));
    PQclear(res);
    if (PQstatus(conn) == CONNECTION_OK && PQtransactionStatus(conn) != PQTRANS_IDLE)
        PQclear(PQexec(conn, "ROLLBACK"));
    return rc;
}
