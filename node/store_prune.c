/* store_prune.c -- the bounded DELETEs of the node's retention (see
 * store_prune.h): one parameterised statement per call on the store's
 * connection, each its own transaction; the watermark table and its trigger
 * are migration 11 in store_schema.c. */
#include "store_prune.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errbuf.h"
#include "store_internal.h"

#define CUTOFF(p) "now() - make_interval(days => " p "::int)"

/* Holding cursors: all, or with idle_days ($n) >= 1 only those that
 * acknowledged something within idle_days. */
#define HOLDING(p) "(" p "::int = 0 OR c.updated_at >= now() - make_interval(days => " p "::int))"

/* Inbox rows older than $1 days, oldest first, at most $2: below each
 * sender's limit `upto` -- its newest seq, or the lowest seq of a parked
 * delivery it claims if lower (a parked delivery may be retried and
 * applied later, and must not then find itself below the watermark). The
 * senders come from a loose index scan of the primary key and their limits
 * are computed once (MATERIALIZED: inlined, they would be recomputed for
 * every row); the rows from the applied_at index, so the statement reads
 * about as many rows as it deletes. The watermark moves in the same
 * statement: the deletion and the watermark commit together. */
static const char sql_inbox[] =
    "WITH RECURSIVE s AS ("
    "   (SELECT i.sender FROM tongban.inbox i ORDER BY i.sender LIMIT 1)"
    "   UNION ALL"
    "   SELECT (SELECT i.sender FROM tongban.inbox i WHERE i.sender > s.sender ORDER BY i.sender LIMIT 1)"
    "     FROM s WHERE s.sender IS NOT NULL),"
    " lim AS MATERIALIZED (SELECT s.sender,"
    "          least((SELECT max(i.seq) FROM tongban.inbox i WHERE i.sender = s.sender),"
    "                (SELECT min(r.seq) FROM tongban.refused_deliveries r WHERE r.sender = s.sender COLLATE \"C\"))"
    "            AS upto"
    "     FROM s WHERE s.sender IS NOT NULL),"
    " v AS (SELECT i.ctid FROM tongban.inbox i"
    "        WHERE i.applied_at < " CUTOFF("$1")
    "          AND i.seq < (SELECT l.upto FROM lim l WHERE l.sender = i.sender)"
    "        ORDER BY i.applied_at LIMIT $2::int),"
    " d AS (DELETE FROM tongban.inbox WHERE ctid = ANY (ARRAY (SELECT v.ctid FROM v)) RETURNING sender, seq),"
    " w AS (INSERT INTO tongban.inbox_watermarks AS m (sender, seq)"
    "        SELECT d.sender, max(d.seq) FROM d GROUP BY d.sender"
    "        ON CONFLICT (sender) DO UPDATE SET seq = greatest(m.seq, EXCLUDED.seq), pruned_at = now())"
    " SELECT count(*), 0 FROM d";

/* Applications' transactions lock tombstones (a delete of a deleted key
 * again, a re-insert): those are skipped, never waited for. */
static const char sql_tombstones[] =
    "WITH d AS (DELETE FROM tongban.tombstones WHERE ctid = ANY (ARRAY ("
    "   SELECT t.ctid FROM tongban.tombstones t WHERE t.deleted_at < " CUTOFF("$1")
    "    ORDER BY t.deleted_at LIMIT $2::int FOR UPDATE SKIP LOCKED)) RETURNING 1)"
    " SELECT count(*), 0 FROM d";

/* The first $3 events in id order up to the slowest holding cursor; of
 * those, the ones older than $1 days go. An index walk of at most $3 rows
 * whatever the table holds (no index on `at` needed: ids grow with time).
 * Only the node deletes events, dead letters and inbox rows, on this
 * connection: nothing to lock against. */
static const char sql_events[] =
    "WITH d AS (DELETE FROM tongban.events x WHERE x.ctid = ANY (ARRAY ("
    "   SELECT e.ctid FROM tongban.events e"
    "    WHERE e.id <= coalesce((SELECT min(c.last_id) FROM tongban.event_cursors c WHERE " HOLDING("$2") "),"
    "                           9223372036854775807)"
    "    ORDER BY e.id LIMIT $3::int))"
    "   AND x.at < " CUTOFF("$1") " RETURNING 1)"
    " SELECT count(*), 0 FROM d";

/* Applied dead letters older than $1 days, at most $2, then the signed
 * batches of theirs that have no dead letter left (the letters being
 * deleted are still visible to the statement: excluded by id). The foreign
 * key is checked at the end of the statement, when both are gone. */
static const char sql_dead_letters[] =
    "WITH d AS (DELETE FROM tongban.dead_letters WHERE ctid = ANY (ARRAY ("
    "   SELECT l.ctid FROM tongban.dead_letters l"
    "    WHERE l.status = 'applied' AND l.retried_at < " CUTOFF("$1")
    "    ORDER BY l.retried_at LIMIT $2::int)) RETURNING id, sender, seq),"
    " b AS (DELETE FROM tongban.dead_letter_batches x"
    "        WHERE (x.sender, x.seq) IN (SELECT d.sender, d.seq FROM d)"
    "          AND NOT EXISTS (SELECT 1 FROM tongban.dead_letters l WHERE l.sender = x.sender AND l.seq = x.seq"
    "                             AND l.id NOT IN (SELECT d.id FROM d))"
    "       RETURNING 1)"
    " SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM b)";

static const char sql_events_holder[] =
    "WITH c AS (SELECT c.name, c.last_id FROM tongban.event_cursors c WHERE " HOLDING("$2")
    "            ORDER BY c.last_id, c.name LIMIT 1)"
    " SELECT c.name, c.last_id FROM c"
    "  WHERE (SELECT e.at FROM tongban.events e WHERE e.id > c.last_id ORDER BY e.id LIMIT 1) < " CUTOFF("$1");

/* The store's connection, idle; NULL with err filled and *rc set otherwise. */
static PGconn *idle_conn(tb_store_t *st, const char *what, tb_err_t *rc, char *err, size_t errlen)
{
    PGconn *c = st ? tb_store_conn(st) : NULL;
    if (!c) {
        tb_seterr_line(err, errlen, "%s: no store", what);
        *rc = TB_ERR_INVALID;
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        tb_seterr_line(err, errlen, "%s: connection to PostgreSQL lost: %s", what, PQerrorMessage(c));
        *rc = TB_ERR_UNAVAILABLE;
        return NULL;
    }
    if (PQtransactionStatus(c) != PQTRANS_IDLE) {
        tb_seterr_line(err, errlen, "%s: a transaction is already open", what);
        *rc = TB_ERR_INVALID;
        return NULL;
    }
    return c;
}

/* Checks days (1 .. TB_PRUNE_DAYS_MAX) and limit (1 .. TB_PRUNE_LIMIT_MAX). */
static tb_err_t args_ok(const char *what, long days, size_t limit, char *err, size_t errlen)
{
    if (days < 1 || days > TB_PRUNE_DAYS_MAX || limit < 1 || limit > TB_PRUNE_LIMIT_MAX) {
        tb_seterr_line(err, errlen, "%s: days must be 1..%d and limit 1..%d (days %ld, limit %zu)", what,
                       TB_PRUNE_DAYS_MAX, TB_PRUNE_LIMIT_MAX, days, limit);
        return TB_ERR_INVALID;
    }
    return TB_OK;
}

/* Runs one statement returning one row of two counts into *a and *b
 * (either may be NULL; both 0 on error). */
static tb_err_t run_counts(tb_store_t *st, const char *what, const char *sql, int n, const char *const *vals,
                           int64_t *a, int64_t *b, char *err, size_t errlen)
{
    tb_err_t rc = TB_OK;
    int64_t va = 0, vb = 0;
    if (a)
        *a = 0;
    if (b)
        *b = 0;
    PGconn *c = idle_conn(st, what, &rc, err, errlen);
    if (!c)
        return rc;
    PGresult *res = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) != 2)
        return tb_store_fail(st, res, what, err, errlen);
    if (store_parse_i64(PQgetvalue(res, 0, 0), &va) != 0 || store_parse_i64(PQgetvalue(res, 0, 1), &vb) != 0) {
        PQclear(res);
        tb_seterr_line(err, errlen, "%s: unexpected result", what);
        return TB_ERR_DB;
    }
    PQclear(res);
    if (a)
        *a = va;
    if (b)
        *b = vb;
    return TB_OK;
}

/* One chunk of a table pruned by age alone: sql takes $1 days, $2 limit
 * and returns the counts run_counts reads into *a and *b (either NULL). */
static tb_err_t prune_by_age(tb_store_t *st, const char *what, const char *sql, long days, size_t limit,
                             int64_t *a, int64_t *b, char *err, size_t errlen)
{
    char d[24], l[24];
    if (a)
        *a = 0;
    if (b)
        *b = 0;
    tb_err_t rc = args_ok(what, days, limit, err, errlen);
    if (rc != TB_OK)
        return rc;
    snprintf(d, sizeof d, "%ld", days);
    snprintf(l, sizeof l, "%zu", limit);
    const char *vals[2] = {d, l};
    return run_counts(st, what, sql, 2, vals, a, b, err, errlen);
}

tb_err_t tb_store_prune_inbox(tb_store_t *st, long days, size_t limit, int64_t *pruned, char *err,
                              size_t errlen)
{
    return prune_by_age(st, "prune inbox", sql_inbox, days, limit, pruned, NULL, err, errlen);
}

tb_err_t tb_store_prune_tombstones(tb_store_t *st, long days, size_t limit, int64_t *pruned, char *err,
                                   size_t errlen)
{
    return prune_by_age(st, "prune tombstones", sql_tombstones, days, limit, pruned, NULL, err, errlen);
}

tb_err_t tb_store_prune_events(tb_store_t *st, long days, long idle_days, size_t limit, int64_t *pruned,
                               char *err, size_t errlen)
{
    const char *what = "prune events";
    char d[24], i[24], l[24];
    if (pruned)
        *pruned = 0;
    tb_err_t rc = args_ok(what, days, limit, err, errlen);
    if (rc != TB_OK)
        return rc;
    if (idle_days < 0 || idle_days > TB_PRUNE_DAYS_MAX) {
        tb_seterr_line(err, errlen, "%s: idle_days must be 0..%d (%ld)", what, TB_PRUNE_DAYS_MAX, idle_days);
        return TB_ERR_INVALID;
    }
    snprintf(d, sizeof d, "%ld", days);
    snprintf(i, sizeof i, "%ld", idle_days);
    snprintf(l, sizeof l, "%zu", limit);
    const char *vals[3] = {d, i, l};
    return run_counts(st, what, sql_events, 3, vals, pruned, NULL, err, errlen);
}

tb_err_t tb_store_prune_dead_letters(tb_store_t *st, long days, size_t limit, int64_t *letters,
                                     int64_t *batches, char *err, size_t errlen)
{
    return prune_by_age(st, "prune dead letters", sql_dead_letters, days, limit, letters, batches, err, errlen);
}

tb_err_t tb_store_events_holder(tb_store_t *st, long days, long idle_days, char *cursor, size_t len,
                                int64_t *last_id, char *err, size_t errlen)
{
    const char *what = "events: holding cursor";
    char d[24], i[24];
    tb_err_t rc = TB_OK;
    if (cursor && len)
        cursor[0] = '\0';
    *last_id = 0;
    if ((rc = args_ok(what, days, 1, err, errlen)) != TB_OK)
        return rc;
    if (idle_days < 0 || idle_days > TB_PRUNE_DAYS_MAX) {
        tb_seterr_line(err, errlen, "%s: idle_days must be 0..%d (%ld)", what, TB_PRUNE_DAYS_MAX, idle_days);
        return TB_ERR_INVALID;
    }
    PGconn *c = idle_conn(st, what, &rc, err, errlen);
    if (!c)
        return rc;
    snprintf(d, sizeof d, "%ld", days);
    snprintf(i, sizeof i, "%ld", idle_days);
    const char *vals[2] = {d, i};
    PGresult *res = PQexecParams(c, sql_events_holder, 2, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != 2)
        return tb_store_fail(st, res, what, err, errlen);
    if (PQntuples(res) == 1) {
        if (cursor && len)
            snprintf(cursor, len, "%s", PQgetvalue(res, 0, 0));
        if (store_parse_i64(PQgetvalue(res, 0, 1), last_id) != 0)
            *last_id = 0;
    }
    PQclear(res);
    return TB_OK;
}

tb_err_t tb_store_inbox_watermark(tb_store_t *st, const char *sender, int64_t *seq, char *err, size_t errlen)
{
    const char *what = "inbox watermark";
    tb_err_t rc = TB_OK;
    *seq = 0;
    if (!sender) {
        tb_seterr_line(err, errlen, "%s: a sender is required", what);
        return TB_ERR_INVALID;
    }
    PGconn *c = idle_conn(st, what, &rc, err, errlen);
    if (!c)
        return rc;
    const char *vals[1] = {sender};
    PGresult *res = PQexecParams(c, "SELECT coalesce((SELECT seq FROM tongban.inbox_watermarks WHERE sender = $1), 0)",
                                 1, NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        return tb_store_fail(st, res, what, err, errlen);
    if (store_parse_i64(PQgetvalue(res, 0, 0), seq) != 0)
        *seq = 0;
    PQclear(res);
    return TB_OK;
}
