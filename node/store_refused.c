/* store_refused.c -- parked deliveries in tongban.refused_deliveries: park,
 * list, get, update after a retry, delete once applied (see
 * store_refused.h). One parameterised statement per call on the store's
 * connection; the SQL of the table is migration 9 in store_schema.c. */
#include "store_refused.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errbuf.h"

#define TEXT_MAX 500 /* longest reason / sender kept */

#define ISO_UTC(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* The columns tb_refused_t is read from (binary results: bigints as int8). */
#define COLUMNS                                                                                                     \
    "id, hub_seq, sender, seq, reason, retries::bigint, " ISO_UTC("refused_at") ", " ISO_UTC("retried_at")         \
    ", octet_length(delivery)::bigint"
enum { C_ID, C_HUB_SEQ, C_SENDER, C_SEQ, C_REASON, C_RETRIES, C_REFUSED_AT, C_RETRIED_AT, C_SIZE, C_BYTES };

/* The store's connection, or NULL with err filled when it is gone. */
static PGconn *conn_of(tb_store_t *st, const char *what, char *err, size_t errlen)
{
    PGconn *c = st ? tb_store_conn(st) : NULL;
    if (c && PQstatus(c) == CONNECTION_OK)
        return c;
    tb_seterr_line(err, errlen, "%s: connection to PostgreSQL lost%s%s", what, c ? ": " : "",
                   c ? PQerrorMessage(c) : "");
    return NULL;
}

/* Reports a failed statement (err = what + PostgreSQL's message), clears
 * res. Returns TB_ERR_UNAVAILABLE when the connection is gone, else TB_ERR_DB. */
static tb_err_t fail(PGconn *c, PGresult *res, const char *what, char *err, size_t errlen)
{
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    int gone = PQstatus(c) != CONNECTION_OK || (state && strncmp(state, "08", 2) == 0);
    tb_seterr_line(err, errlen, "%s: %s%s%s", what, msg && *msg ? msg : PQerrorMessage(c), state ? " SQLSTATE " : "",
                   state ? state : "");
    PQclear(res);
    return gone ? TB_ERR_UNAVAILABLE : TB_ERR_DB;
}

/* s as printable ASCII (other bytes become '?'), at most TEXT_MAX bytes:
 * what comes from the wire can be any bytes, PostgreSQL's text only UTF-8. */
static const char *printable(const char *s, char *buf, size_t len)
{
    size_t i = 0;
    for (; s && s[i] && i + 1 < len; i++)
        buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    buf[i] = '\0';
    return buf;
}

static int64_t be_i64(const PGresult *res, int r, int c)
{
    if (PQgetisnull(res, r, c) || PQgetlength(res, r, c) != 8)
        return -1;
    const unsigned char *p = (const unsigned char *)PQgetvalue(res, r, c);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return (int64_t)v;
}

static char *dup_col(const PGresult *res, int r, int c)
{
    return PQgetisnull(res, r, c) ? NULL : strndup(PQgetvalue(res, r, c), (size_t)PQgetlength(res, r, c));
}

/* Fills *d from row r; returns 0, or -1 when out of memory. */
static int row_take(const PGresult *res, int r, tb_refused_t *d)
{
    d->id = be_i64(res, r, C_ID);
    d->hub_seq = be_i64(res, r, C_HUB_SEQ);
    d->seq = be_i64(res, r, C_SEQ);
    d->retries = (int)be_i64(res, r, C_RETRIES);
    d->size = (size_t)be_i64(res, r, C_SIZE);
    d->sender = dup_col(res, r, C_SENDER);
    d->reason = dup_col(res, r, C_REASON);
    d->refused_at = dup_col(res, r, C_REFUSED_AT);
    d->retried_at = dup_col(res, r, C_RETRIED_AT);
    if (PQnfields(res) > C_BYTES && !PQgetisnull(res, r, C_BYTES)) {
        d->size = (size_t)PQgetlength(res, r, C_BYTES);
        if ((d->bytes = malloc(d->size ? d->size : 1)))
            memcpy(d->bytes, PQgetvalue(res, r, C_BYTES), d->size);
    }
    if ((!d->sender && !PQgetisnull(res, r, C_SENDER)) || !d->reason || !d->refused_at ||
        (!d->retried_at && !PQgetisnull(res, r, C_RETRIED_AT)) ||
        (!d->bytes && PQnfields(res) > C_BYTES && !PQgetisnull(res, r, C_BYTES)))
        return -1;
    return 0;
}

/* Runs a SELECT of COLUMNS (+ the bytes) with text parameters; the rows
 * into *out / *n. */
static tb_err_t fetch(tb_store_t *st, const char *what, const char *sql, int nvals, const char *const *vals,
                      tb_refused_t **out, size_t *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    PGconn *c = conn_of(st, what, err, errlen);
    if (!c)
        return TB_ERR_UNAVAILABLE;
    PGresult *res = PQexecParams(c, sql, nvals, NULL, vals, NULL, NULL, 1);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return fail(c, res, what, err, errlen);
    size_t count = (size_t)PQntuples(res);
    tb_refused_t *v = count ? calloc(count, sizeof *v) : NULL;
    int oom = count && !v;
    for (size_t i = 0; i < count && !oom; i++)
        oom = row_take(res, (int)i, &v[i]) != 0;
    PQclear(res);
    if (oom) {
        tb_store_free_refused(v, count);
        tb_seterr_line(err, errlen, "%s: out of memory", what);
        return TB_ERR_NOMEM;
    }
    *out = v;
    *n = count;
    return TB_OK;
}

tb_err_t tb_store_park_delivery(tb_store_t *st, uint64_t hub_seq, const char *sender, int64_t seq,
                                const char *reason, const uint8_t *bytes, size_t len, char *err, size_t errlen)
{
    const char *what = "park delivery";
    PGconn *c = conn_of(st, what, err, errlen);
    if (!c)
        return TB_ERR_UNAVAILABLE;
    if (len > INT32_MAX || (len && !bytes)) {
        tb_seterr_line(err, errlen, "%s: invalid delivery bytes", what);
        return TB_ERR_INVALID;
    }
    char hs[24], sq[24], snd[TEXT_MAX + 1], why[TEXT_MAX + 1];
    snprintf(hs, sizeof hs, "%" PRIu64, hub_seq);
    snprintf(sq, sizeof sq, "%" PRId64, seq);
    const char *vals[5] = {hub_seq <= INT64_MAX ? hs : NULL, sender ? printable(sender, snd, sizeof snd) : NULL,
                           seq >= 0 ? sq : NULL, printable(reason ? reason : "", why, sizeof why),
                           len ? (const char *)bytes : ""};
    int lens[5] = {0, 0, 0, 0, (int)len};
    int fmts[5] = {0, 0, 0, 0, 1};
    PGresult *res = PQexecParams(c,
                                 "INSERT INTO tongban.refused_deliveries (hub_seq, sender, seq, reason, delivery)"
                                 " VALUES ($1::bigint, $2, $3::bigint, $4, $5::bytea)"
                                 " ON CONFLICT (hub_seq, (sha256(delivery))) DO NOTHING",
                                 5, NULL, vals, lens, fmts, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        return fail(c, res, what, err, errlen);
    PQclear(res);
    return TB_OK;
}

tb_err_t tb_store_refused_list(tb_store_t *st, int64_t after_id, size_t max, const char *reason, int with_bytes,
                               tb_refused_t **out, size_t *n, char *err, size_t errlen)
{
    char after[24], lim[24];
    snprintf(after, sizeof after, "%" PRId64, after_id);
    snprintf(lim, sizeof lim, "%zu", max);
    const char *vals[4] = {after, max ? lim : NULL, reason, with_bytes ? "t" : "f"};
    return fetch(st, "refused deliveries",
                 "SELECT " COLUMNS ", CASE WHEN $4::boolean THEN delivery END FROM tongban.refused_deliveries"
                 " WHERE id > $1::bigint AND ($3::text IS NULL OR reason = $3::text) ORDER BY id LIMIT $2::bigint",
                 4, vals, out, n, err, errlen);
}

tb_err_t tb_store_refused_last_id(tb_store_t *st, int64_t *id, char *err, size_t errlen)
{
    const char *what = "refused deliveries: last id";
    *id = 0;
    PGconn *c = conn_of(st, what, err, errlen);
    if (!c)
        return TB_ERR_UNAVAILABLE;
    PGresult *res = PQexec(c, "SELECT coalesce(max(id), 0) FROM tongban.refused_deliveries");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        return fail(c, res, what, err, errlen);
    *id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    PQclear(res);
    return TB_OK;
}

tb_err_t tb_store_refused_get(tb_store_t *st, int64_t id, tb_refused_t *out, char *err, size_t errlen)
{
    char ids[24];
    tb_refused_t *v = NULL;
    size_t n = 0;
    memset(out, 0, sizeof *out);
    snprintf(ids, sizeof ids, "%" PRId64, id);
    const char *vals[1] = {ids};
    tb_err_t rc = fetch(st, "refused delivery",
                        "SELECT " COLUMNS ", delivery FROM tongban.refused_deliveries WHERE id = $1::bigint", 1, vals,
                        &v, &n, err, errlen);
    if (rc != TB_OK)
        return rc;
    if (n == 0) {
        tb_seterr_line(err, errlen, "no refused delivery %" PRId64, id);
        return TB_ERR_NOTFOUND;
    }
    *out = v[0];
    free(v);
    return TB_OK;
}

/* Runs an UPDATE / DELETE of row id; *rows = rows it touched. */
static tb_err_t change(tb_store_t *st, const char *what, const char *sql, int64_t id, const char *text, int *rows,
                       char *err, size_t errlen)
{
    PGconn *c = conn_of(st, what, err, errlen);
    if (!c)
        return TB_ERR_UNAVAILABLE;
    char ids[24], buf[TEXT_MAX + 1];
    snprintf(ids, sizeof ids, "%" PRId64, id);
    const char *vals[2] = {ids, printable(text ? text : "", buf, sizeof buf)};
    PGresult *res = PQexecParams(c, sql, text ? 2 : 1, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        return fail(c, res, what, err, errlen);
    *rows = (int)strtol(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return TB_OK;
}

tb_err_t tb_store_refused_update(tb_store_t *st, int64_t id, const char *reason, char *err, size_t errlen)
{
    int rows = 0;
    tb_err_t rc = change(st, "refused delivery: record the retry",
                         "UPDATE tongban.refused_deliveries SET reason = $2, retries = retries + 1, retried_at = now()"
                         " WHERE id = $1::bigint",
                         id, reason ? reason : "", &rows, err, errlen);
    if (rc == TB_OK && rows == 0) {
        tb_seterr_line(err, errlen, "no refused delivery %" PRId64, id);
        return TB_ERR_NOTFOUND;
    }
    return rc;
}

tb_err_t tb_store_refused_delete(tb_store_t *st, int64_t id, char *err, size_t errlen)
{
    int rows = 0;
    return change(st, "refused delivery: delete", "DELETE FROM tongban.refused_deliveries WHERE id = $1::bigint", id,
                  NULL, &rows, err, errlen);
}

void tb_store_refused_clear(tb_refused_t *r)
{
    if (!r)
        return;
    free(r->sender);
    free(r->reason);
    free(r->refused_at);
    free(r->retried_at);
    free(r->bytes);
    memset(r, 0, sizeof *r);
}

void tb_store_free_refused(tb_refused_t *v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        tb_store_refused_clear(&v[i]);
    free(v);
}
