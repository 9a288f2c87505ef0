/* store_dead.c -- the operator's dead letters (see store.h): list those not
 * applied, and retry one -- decoded, checked and applied again with
 * store_apply.c's statement, its status and reason updated. */
#include "store.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errbuf.h"
#include "log.h"
#include "store_internal.h"

/* ------------------------------------------------------------------------
 * Dead letters (operator)
 * ------------------------------------------------------------------------ */

void tb_store_free_dead(tb_dead_t *v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++) {
        free(v[i].sender);
        free(v[i].entry_type);
        free(v[i].status);
        free(v[i].reason);
        free(v[i].created_at);
        free(v[i].retried_at);
    }
    free(v);
}

#define ISO_UTC(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

tb_err_t tb_store_dead_letters(tb_store_t *self, tb_dead_t **out, size_t *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    PGresult *res = PQexecParams(self->conn,
        "SELECT id, sender, seq, entry_index, entry_type, status, reason, retries, "
        ISO_UTC("created_at") ", " ISO_UTC("retried_at")
        "  FROM tongban.dead_letters WHERE status <> 'applied' ORDER BY id",
        0, NULL, NULL, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return tb_store_fail(self, res, "dead letters", err, errlen);
    size_t count = (size_t)PQntuples(res);
    tb_dead_t *v = count ? calloc(count, sizeof *v) : NULL;
    if (count && !v)
        goto nomem;
    for (size_t i = 0; i < count; i++) {
        int r = (int)i;
        tb_dead_t *d = &v[i];
        int64_t seq, idx, type, retries;
        if (store_parse_i64(PQgetvalue(res, r, 0), &d->id) != 0 || store_parse_i64(PQgetvalue(res, r, 2), &seq) != 0 ||
            store_parse_i64(PQgetvalue(res, r, 3), &idx) != 0 || store_parse_i64(PQgetvalue(res, r, 4), &type) != 0 ||
            store_parse_i64(PQgetvalue(res, r, 7), &retries) != 0) {
            tb_store_free_dead(v, count);
            PQclear(res);
            tb_seterr_line(err, errlen, "dead letters: malformed row");
            return TB_ERR_DB;
        }
        d->seq = (uint64_t)seq;
        d->entry_index = (int)idx;
        d->entry_type_value = (int)type;
        const char *name = store_entry_type_name(d->entry_type_value);
        char num[16];
        snprintf(num, sizeof num, "%d", d->entry_type_value);
        d->entry_type = strdup(name ? name : num);
        d->retries = (int)retries;
        d->sender = strdup(PQgetvalue(res, r, 1));
        d->status = strdup(PQgetvalue(res, r, 5));
        d->reason = strdup(PQgetvalue(res, r, 6));
        d->created_at = strdup(PQgetvalue(res, r, 8));
        d->retried_at = PQgetisnull(res, r, 9) ? NULL : strdup(PQgetvalue(res, r, 9));
        if (!d->entry_type || !d->sender || !d->status || !d->reason || !d->created_at ||
            (!PQgetisnull(res, r, 9) && !d->retried_at)) {
            tb_store_free_dead(v, count);
            goto nomem;
        }
    }
    PQclear(res);
    *out = v;
    *n = count;
    return TB_OK;
nomem:
    PQclear(res);
    tb_seterr_line(err, errlen, "dead letters: out of memory");
    return TB_ERR_NOMEM;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

tb_err_t tb_store_retry_dead_letter(tb_store_t *self, int64_t id, char *err, size_t errlen)
{
    tb_err_t rc;
    char what[64], ids[24], reason[1024] = "";
    snprintf(what, sizeof what, "retry dead letter %" PRId64, id);
    snprintf(ids, sizeof ids, "%" PRId64, id);
    if (!self) {
        tb_seterr_line(err, errlen, "%s: no store", what);
        return TB_ERR_INVALID;
    }
    if ((rc = store_check_conn(self, what, err, errlen)) != TB_OK)
        return rc;
    if (PQtransactionStatus(self->conn) != PQTRANS_IDLE) {
        tb_seterr_line(err, errlen, "%s: a transaction is already open", what);
        return TB_ERR_INVALID;
    }
    if ((rc = store_exec_simple(self, "BEGIN; SET LOCAL tongban.applying = 'on'", what, err, errlen)) != TB_OK)
        return rc;
    const char *vals[1] = {ids};
    /* binary: entry_type as int4, payload and status as raw bytes */
    PGresult *res = PQexecParams(self->conn,
                                 "SELECT entry_type, payload, status, sender FROM tongban.dead_letters"
                                 " WHERE id = $1::bigint FOR UPDATE",
                                 1, NULL, vals, NULL, NULL, 1);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return tb_store_fail(self, res, what, err, errlen);
    if (PQntuples(res) != 1 || PQgetlength(res, 0, 0) != 4) {
        int none = PQntuples(res) == 0;
        PQclear(res);
        store_rollback(self);
        tb_seterr_line(err, errlen, "%s: %s", what, none ? "no such dead letter" : "unexpected row encoding");
        return none ? TB_ERR_NOTFOUND : TB_ERR_DB;
    }
    int type = (int)(int32_t)be32((const unsigned char *)PQgetvalue(res, 0, 0));
    if (strcmp(PQgetvalue(res, 0, 2), "applied") == 0) { /* already done */
        PQclear(res);
        return store_exec_simple(self, "ROLLBACK", what, err, errlen);
    }
    void *msg = store_decode_entry(type, (const uint8_t *)PQgetvalue(res, 0, 1), (size_t)PQgetlength(res, 0, 1), reason,
                                   sizeof reason);
    tb_err_t outcome = TB_ERR_PROTO;
    if (msg && store_entry_refused(self, PQgetvalue(res, 0, 3), type, msg, reason, sizeof reason)) {
        store_free_entry(type, msg);
        msg = NULL;
        outcome = TB_ERR_REFUSED;
    }
    PQclear(res);

    if (msg) {
        int oom;
        size_t zero = 0;
        if ((rc = store_exec_simple(self, "SAVEPOINT tb_run", what, err, errlen)) != TB_OK) {
            store_free_entry(type, msg);
            return rc;
        }
        res = store_run_stmt(self, type, &msg, &zero, 1, &oom);
        store_free_entry(type, msg);
        if (oom) {
            store_rollback(self);
            tb_seterr_line(err, errlen, "%s: out of memory", what);
            return TB_ERR_NOMEM;
        }
        if (store_res_ok(res)) {
            outcome = TB_OK;
            PQclear(res);
        } else if (!store_data_error(self, res)) {
            return tb_store_fail(self, res, what, err, errlen);
        } else {
            outcome = TB_ERR_DB;
            store_pg_reason(self, res, reason, sizeof reason);
            PQclear(res);
            if ((rc = store_exec_simple(self, "ROLLBACK TO SAVEPOINT tb_run", what, err, errlen)) != TB_OK)
                return rc;
        }
    }
    const char *uvals[3] = {ids, outcome == TB_OK ? "applied" : "failed", reason};
    res = PQexecParams(self->conn,
                       "UPDATE tongban.dead_letters SET status = $2,"
                       "  reason = CASE WHEN $2 = 'applied' THEN reason ELSE $3 END,"
                       "  retries = retries + 1, retried_at = now()"
                       " WHERE id = $1::bigint",
                       3, NULL, uvals, NULL, NULL, 0);
    if (!store_res_ok(res))
        return tb_store_fail(self, res, what, err, errlen);
    PQclear(res);
    if ((rc = store_exec_simple(self, "COMMIT", what, err, errlen)) != TB_OK)
        return rc;
    if (outcome != TB_OK)
        tb_seterr_line(err, errlen, "%s: still failing: %s", what, reason);
    tb_log(outcome == TB_OK ? TB_LOG_INFO : TB_LOG_WARN, "store", "dead_letter_retried", "id=%" PRId64 " result=%s",
           id, outcome == TB_OK ? "applied" : "failed");
    return outcome;
}
