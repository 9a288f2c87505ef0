/* store_outbox.c -- the sender side of the node's store (see store.h): the
 * outbox's destinations, the take of a batch and its commit as a signed
 * batch awaiting the hub's ack, unacked batches, acks and refusals, and
 * keeping the queue small (TRUNCATE when empty, VACUUM on a maintenance
 * connection under load). */
#include "store.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errbuf.h"
#include "store_internal.h"

/* ------------------------------------------------------------------------
 * Sender side
 * ------------------------------------------------------------------------ */

void tb_store_free_strings(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

tb_err_t tb_store_outbox_dests(tb_store_t *self, char ***dests, size_t *n, char *err, size_t errlen)
{
    *dests = NULL;
    *n = 0;
    /* loose index scan over outbox(dest, id): cheap even with a deep backlog */
    PGresult *res = store_exec_stmt(self, S_OUTBOX_DESTS, 0, NULL, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return tb_store_fail(self, res, "outbox destinations", err, errlen);
    size_t count = (size_t)PQntuples(res);
    char **v = count ? calloc(count, sizeof *v) : NULL;
    if (count && !v)
        goto nomem;
    for (size_t i = 0; i < count; i++)
        if (!(v[i] = strdup(PQgetvalue(res, (int)i, 0)))) {
            tb_store_free_strings(v, count);
            goto nomem;
        }
    PQclear(res);
    *dests = v;
    *n = count;
    return TB_OK;
nomem:
    PQclear(res);
    tb_seterr_line(err, errlen, "outbox destinations: out of memory");
    return TB_ERR_NOMEM;
}

/* The outbox is a queue: every taken row leaves a dead heap tuple and a
 * dead entry in outbox(dest, id) until VACUUM, and both the destinations
 * scan and the take walk those entries from the start of the index -- after
 * a burst of 1,000,000 rows ~3,900 index pages per scan, milliseconds on
 * every batch. When the queue is empty the whole table can go instead:
 * TRUNCATE under an ACCESS EXCLUSIVE lock taken with NOWAIT, so it happens
 * only when no transaction has touched the outbox (an application's
 * uncommitted capture holds ROW EXCLUSIVE until it ends: then this gives
 * up at once, nothing waits and nothing is lost), and only after checking,
 * under the lock, that no committed row is left. The id sequence goes on. */
tb_err_t tb_store_outbox_compact(tb_store_t *self, int *done, char *err, size_t errlen)
{
    tb_err_t rc;
    *done = 0;
    if ((rc = store_check_conn(self, "outbox compact", err, errlen)) != TB_OK)
        return rc;
    if ((rc = store_exec_simple(self, "BEGIN", "outbox compact: BEGIN", err, errlen)) != TB_OK)
        return rc;
    PGresult *res = PQexec(self->conn, "LOCK TABLE tongban.outbox IN ACCESS EXCLUSIVE MODE NOWAIT");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (st && strcmp(st, "55P03") == 0 && PQstatus(self->conn) == CONNECTION_OK) {
            PQclear(res);           /* lock_not_available: busy, another time */
            return store_exec_simple(self, "ROLLBACK", "outbox compact: ROLLBACK", err, errlen);
        }
        return tb_store_fail(self, res, "outbox compact: lock", err, errlen);
    }
    PQclear(res);
    /* through the index (ORDER BY dest), not a sequential scan of dead rows */
    res = PQexec(self->conn, "SELECT dest FROM tongban.outbox ORDER BY dest LIMIT 1");
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return tb_store_fail(self, res, "outbox compact: check", err, errlen);
    int empty = PQntuples(res) == 0;
    PQclear(res);
    if (!empty)
        return store_exec_simple(self, "ROLLBACK", "outbox compact: ROLLBACK", err, errlen);
    if ((rc = store_exec_simple(self, "TRUNCATE tongban.outbox", "outbox compact: TRUNCATE", err, errlen)) != TB_OK)
        return rc;
    if ((rc = store_exec_simple(self, "COMMIT", "outbox compact: COMMIT", err, errlen)) != TB_OK)
        return rc;
    *done = 1;
    return TB_OK;
}

/* The queue tables' dead rows, during a sustained load: the outbox is
 * never empty long enough to be truncated, and autovacuum looks once a
 * minute. Every take walks the dead index entries left by the takes before
 * it (15 ms per take with 100,000 of them here; VACUUM of those costs
 * ~60 ms once), and the heap and the signed batches' TOAST only grow. A
 * second connection runs the VACUUM so the node's own never waits; SKIP_LOCKED
 * gives up on a table someone holds (autovacuum, a TRUNCATE) instead of
 * queueing behind it. */
tb_err_t tb_store_vacuum_start(tb_store_t *self, char *err, size_t errlen)
{
    if (self->maint && PQstatus(self->maint) != CONNECTION_OK) {
        PQfinish(self->maint);
        self->maint = NULL;
    }
    if (!self->maint) {
        self->maint = PQconnectdb(self->conninfo);
        if (!self->maint || PQstatus(self->maint) != CONNECTION_OK) {
            tb_seterr_line(err, errlen, "vacuum: cannot connect to PostgreSQL: %s",
                           self->maint ? PQerrorMessage(self->maint) : "out of memory");
            PQfinish(self->maint);
            self->maint = NULL;
            return TB_ERR_UNAVAILABLE;
        }
        PQsetNoticeProcessor(self->maint, store_notice_processor, NULL);
    }
    if (!PQsendQuery(self->maint, "VACUUM (SKIP_LOCKED) tongban.outbox, tongban.sent_batches")) {
        tb_seterr_line(err, errlen, "vacuum: %s", PQerrorMessage(self->maint));
        PQfinish(self->maint);
        self->maint = NULL;
        return TB_ERR_DB;
    }
    return TB_OK;
}

int tb_store_vacuum_poll(tb_store_t *self, char *err, size_t errlen)
{
    if (!self->maint)
        return 0;
    if (!PQconsumeInput(self->maint)) {
        tb_seterr_line(err, errlen, "vacuum: %s", PQerrorMessage(self->maint));
        PQfinish(self->maint);
        self->maint = NULL;
        return -1;
    }
    int failed = 0;
    while (!PQisBusy(self->maint)) {
        PGresult *res = PQgetResult(self->maint);
        if (!res)
            return failed ? -1 : 0;
        if (PQresultStatus(res) != PGRES_COMMAND_OK && !failed) {
            char reason[512];
            store_pg_reason(self, res, reason, sizeof reason);
            tb_seterr_line(err, errlen, "vacuum: %s", reason);
            failed = 1;
        }
        PQclear(res);
    }
    return 1;
}

void tb_store_free_outrows(tb_outrow_t *rows, size_t n)
{
    if (!rows)
        return;
    for (size_t i = 0; i < n; i++) {
        free(rows[i].catalog);
        free(rows[i].key);
        free(rows[i].body);
        free(rows[i].origin);
    }
    free(rows);
}

static int outrow_cmp(const void *a, const void *b)
{
    int64_t x = ((const tb_outrow_t *)a)->outbox_id, y = ((const tb_outrow_t *)b)->outbox_id;
    return x < y ? -1 : x > y;
}

void tb_store_set_batch_max_bytes(tb_store_t *self, size_t bytes)
{
    if (self)
        self->batch_max_bytes = bytes;
}

tb_err_t tb_store_batch_begin(tb_store_t *self, const char *dest, size_t max, uint64_t *seq,
                              tb_outrow_t **rows, size_t *n, char *err, size_t errlen)
{
    tb_err_t rc;
    PGresult *res = NULL;
    tb_outrow_t *v = NULL;
    size_t count = 0;
    *rows = NULL;
    *n = 0;
    *seq = 0;
    if (!dest) {
        tb_seterr_line(err, errlen, "batch begin: no destination");
        return TB_ERR_INVALID;
    }
    if (max == 0)
        return TB_OK;
    if ((rc = store_check_conn(self, "batch begin", err, errlen)) != TB_OK)
        return rc;
    if (PQtransactionStatus(self->conn) != PQTRANS_IDLE) {
        tb_seterr_line(err, errlen, "batch begin: a transaction is already open");
        return TB_ERR_INVALID;
    }

    if ((rc = store_exec_simple(self, "BEGIN", "batch begin", err, errlen)) != TB_OK)
        return rc;
    char maxs[24], bytes[24];
    snprintf(maxs, sizeof maxs, "%zu", max);
    snprintf(bytes, sizeof bytes, "%zu", self->batch_max_bytes ? self->batch_max_bytes : TB_STORE_BATCH_MAX_BYTES);
    const char *vals[3] = {dest, maxs, bytes};
    res = store_exec_stmt(self, S_OUTBOX_TAKE, 3, vals, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return tb_store_fail(self, res, "batch begin: take outbox rows", err, errlen);
    count = (size_t)PQntuples(res);
    if (count == 0) {
        PQclear(res);
        return store_exec_simple(self, "ROLLBACK", "batch begin: ROLLBACK", err, errlen);
    }

    if (!(v = calloc(count, sizeof *v)))
        goto nomem;
    for (size_t i = 0; i < count; i++) {
        int r = (int)i;
        tb_outrow_t *o = &v[i];
        int64_t hlc;
        if (store_parse_i64(PQgetvalue(res, r, 0), &o->outbox_id) != 0 ||
            store_parse_i64(PQgetvalue(res, r, 5), &o->version) != 0 ||
            store_parse_i64(PQgetvalue(res, r, 7), &hlc) != 0 || hlc < 0) {
            PQclear(res);
            tb_store_free_outrows(v, count);
            store_rollback(self);
            tb_seterr_line(err, errlen, "batch begin: malformed outbox row");
            return TB_ERR_DB;
        }
        o->hlc = (uint64_t)hlc;
        o->op = PQgetvalue(res, r, 1)[0];
        o->catalog = strdup(PQgetvalue(res, r, 2));
        o->key = strdup(PQgetvalue(res, r, 3));
        o->origin = strdup(PQgetvalue(res, r, 6));
        o->body = PQgetisnull(res, r, 4) ? NULL : strdup(PQgetvalue(res, r, 4));
        if (!o->catalog || !o->key || !o->origin || (!PQgetisnull(res, r, 4) && !o->body))
            goto nomem;
    }
    PQclear(res);
    qsort(v, count, sizeof *v, outrow_cmp);

    res = store_exec_stmt(self, S_NEXT_SEQ, 0, NULL, NULL, NULL, 0);
    int64_t s;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        tb_store_free_outrows(v, count);
        return tb_store_fail(self, res, "batch begin: allocate seq", err, errlen);
    }
    if (PQntuples(res) != 1 || store_parse_i64(PQgetvalue(res, 0, 0), &s) != 0 || s <= 0) {
        PQclear(res);
        tb_store_free_outrows(v, count);
        store_rollback(self);
        tb_seterr_line(err, errlen, "batch begin: tongban.node_state has no usable next_seq");
        return TB_ERR_DB;
    }
    PQclear(res);
    *seq = (uint64_t)s;
    *rows = v;
    *n = count;
    return TB_OK;

nomem:
    PQclear(res);
    tb_store_free_outrows(v, count);
    store_rollback(self);
    tb_seterr_line(err, errlen, "batch begin: out of memory");
    return TB_ERR_NOMEM;
}

tb_err_t tb_store_batch_commit(tb_store_t *self, uint64_t seq, const char *dest, const tb_outrow_t *rows,
                               size_t n, const uint8_t *signed_bytes, size_t len, char *err, size_t errlen)
{
    tb_err_t rc;
    if ((rc = store_check_conn(self, "batch commit", err, errlen)) != TB_OK)
        return rc;
    if (PQtransactionStatus(self->conn) != PQTRANS_INTRANS) {
        tb_seterr_line(err, errlen, "batch commit: no batch in progress");
        return TB_ERR_INVALID;
    }
    if (!dest || (n && !rows) || (len && !signed_bytes) || seq > INT64_MAX || len > INT32_MAX) {
        store_rollback(self);
        tb_seterr_line(err, errlen, "batch commit: invalid arguments");
        return TB_ERR_INVALID;
    }

    /* the outbox rows were deleted by tb_store_batch_begin in this transaction */
    char seqs[24];
    snprintf(seqs, sizeof seqs, "%" PRIu64, seq);
    const char *vals[3] = {seqs, dest, (const char *)(signed_bytes ? signed_bytes : (const uint8_t *)"")};
    int lens[3] = {0, 0, (int)len};
    int fmts[3] = {0, 0, 1};
    PGresult *res = store_exec_stmt(self, S_SENT_INSERT, 3, vals, lens, fmts, 0);
    if (!store_res_ok(res))
        return tb_store_fail(self, res, "batch commit: store signed batch", err, errlen);
    PQclear(res);
    return store_exec_simple(self, "COMMIT", "batch commit: COMMIT", err, errlen);
}

void tb_store_batch_abort(tb_store_t *self)
{
    if (self)
        store_rollback(self);
}

void tb_store_free_sent(tb_sent_t *v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++) {
        free(v[i].dest);
        free(v[i].bytes);
    }
    free(v);
}

static uint64_t be64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

tb_err_t tb_store_unacked(tb_store_t *self, tb_sent_t **out, size_t *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    /* binary results: seq as int8, dest as raw text, signed as raw bytes */
    PGresult *res = PQexecParams(self->conn, "SELECT seq, dest, signed FROM tongban.sent_batches ORDER BY seq",
                                 0, NULL, NULL, NULL, NULL, 1);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return tb_store_fail(self, res, "unacked batches", err, errlen);
    size_t count = (size_t)PQntuples(res);
    tb_sent_t *v = count ? calloc(count, sizeof *v) : NULL;
    if (count && !v)
        goto nomem;
    for (size_t i = 0; i < count; i++) {
        int r = (int)i;
        if (PQgetlength(res, r, 0) != 8) {
            tb_store_free_sent(v, count);
            PQclear(res);
            tb_seterr_line(err, errlen, "unacked batches: unexpected seq encoding");
            return TB_ERR_DB;
        }
        v[i].seq = be64((const unsigned char *)PQgetvalue(res, r, 0));
        v[i].dest = strndup(PQgetvalue(res, r, 1), (size_t)PQgetlength(res, r, 1));
        v[i].len = (size_t)PQgetlength(res, r, 2);
        v[i].bytes = malloc(v[i].len ? v[i].len : 1);
        if (!v[i].dest || !v[i].bytes) {
            tb_store_free_sent(v, count);
            goto nomem;
        }
        memcpy(v[i].bytes, PQgetvalue(res, r, 2), v[i].len);
    }
    PQclear(res);
    *out = v;
    *n = count;
    return TB_OK;
nomem:
    PQclear(res);
    tb_seterr_line(err, errlen, "unacked batches: out of memory");
    return TB_ERR_NOMEM;
}

tb_err_t tb_store_ack_many(tb_store_t *self, const uint64_t *seqs, size_t n, char *err, size_t errlen)
{
    tb_err_t rc;
    sbuf_t arr = {0};
    if (!self || (n && !seqs)) {
        tb_seterr_line(err, errlen, "ack: invalid arguments");
        return TB_ERR_INVALID;
    }
    if ((rc = store_check_conn(self, "ack", err, errlen)) != TB_OK)
        return rc;
    store_arr_open(&arr);
    for (size_t i = 0; i < n; i++)
        if (seqs[i] <= INT64_MAX) /* a larger one cannot exist */
            store_arr_i64(&arr, (int64_t)seqs[i]);
    store_arr_close(&arr);
    if (arr.oom) {
        free(arr.p);
        tb_seterr_line(err, errlen, "ack: out of memory");
        return TB_ERR_NOMEM;
    }
    if (arr.items == 0) {
        free(arr.p);
        return TB_OK;
    }
    /* Not waiting for the WAL flush is safe here: a lost deletion means the
     * batch is resent after a restart and deduplicated by the hub. */
    if ((rc = store_exec_simple(self, "BEGIN; SET LOCAL synchronous_commit = off", "ack", err, errlen)) != TB_OK) {
        free(arr.p);
        return rc;
    }
    const char *vals[1] = {arr.p};
    PGresult *res = store_exec_stmt(self, S_ACK, 1, vals, NULL, NULL, 0);
    free(arr.p);
    if (!store_res_ok(res))
        return tb_store_fail(self, res, "ack", err, errlen);
    PQclear(res);
    return store_exec_simple(self, "COMMIT", "ack: COMMIT", err, errlen);
}

tb_err_t tb_store_ack(tb_store_t *self, uint64_t seq, char *err, size_t errlen)
{
    return tb_store_ack_many(self, &seq, 1, err, errlen);
}

tb_err_t tb_store_refuse(tb_store_t *self, uint64_t seq, const char *reason, const char *detail,
                         char *err, size_t errlen)
{
    if (seq > INT64_MAX)
        return TB_OK; /* cannot exist */
    char seqs[24];
    snprintf(seqs, sizeof seqs, "%" PRIu64, seq);
    const char *vals[3] = {seqs, reason, detail};
    PGresult *res = store_exec_stmt(self, S_REFUSE, 3, vals, NULL, NULL, 0);
    if (!store_res_ok(res))
        return tb_store_fail(self, res, "refuse", err, errlen);
    PQclear(res);
    return TB_OK;
}
