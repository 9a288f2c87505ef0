/* store.c -- the node's PostgreSQL store, its connection side: the shared
 * helpers of store_internal.h (errors, statements, parsing), open with the
 * migrations, the node claim and the prepared statements, notifications,
 * routes, snapshots for initial load and resync, the tombstone purge and
 * status (see store.h for the contract). The outbox side is store_outbox.c,
 * the apply of received batches store_apply.c, the operator's dead letters
 * store_dead.c, array parameters store_array.c. libpq only; every
 * statement that carries data is parameterised. */
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errbuf.h"
#include "log.h"
#include "store_internal.h"
#include "store_schema.h"

/* ------------------------------------------------------------------------
 * Small helpers: errors, statements, parsing (store_internal.h).
 * ------------------------------------------------------------------------ */

void store_rollback(tb_store_t *self)
{
    if (PQstatus(self->conn) == CONNECTION_OK && PQtransactionStatus(self->conn) != PQTRANS_IDLE)
        PQclear(PQexec(self->conn, "ROLLBACK"));
}

/* The error of a failed statement as one line: "message (detail) SQLSTATE
 * xxxxx" (the connection's message when res carries none). */
void store_pg_reason(tb_store_t *self, const PGresult *res, char *buf, size_t len)
{
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (!msg || !*msg)
        msg = PQerrorMessage(self->conn);
    if (!msg || !*msg)
        msg = res ? PQresStatus(PQresultStatus(res)) : "no result from server";
    tb_seterr_line(buf, len, "%s%s%s%s%s%s", msg, detail ? " (" : "", detail ? detail : "", detail ? ")" : "",
           state ? " SQLSTATE " : "", state ? state : "");
}

/* Reports a failed statement: fills err with what + the PostgreSQL message,
 * clears res, rolls back any open transaction. Returns TB_ERR_UNAVAILABLE if
 * the connection is gone, TB_ERR_DB otherwise. */
tb_err_t tb_store_fail(tb_store_t *self, PGresult *res, const char *what, char *err, size_t errlen)
{
    char reason[1024];
    store_pg_reason(self, res, reason, sizeof reason);
    tb_seterr_line(err, errlen, "%s: %s", what, reason);
    PQclear(res);
    tb_err_t rc = PQstatus(self->conn) == CONNECTION_OK ? TB_ERR_DB : TB_ERR_UNAVAILABLE;
    store_rollback(self);
    return rc;
}

/* 1 if a failed statement's error is about the data it was given (a
 * constraint, invalid input...: the entry can be dead-lettered), 0 if it is
 * about the moment or the server -- connection (08), transaction state
 * (25), rollback (40: deadlock, serialization), resources (53), object
 * state (55: lock timeout), operator (57: cancel, shutdown), system (58) --
 * or the connection is gone: then the batch must fail and be redelivered. */
int store_data_error(tb_store_t *self, const PGresult *res)
{
    static const char transient[][3] = {"08", "25", "40", "53", "55", "57", "58"};
    const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (!st || strlen(st) != 5 || PQstatus(self->conn) != CONNECTION_OK)
        return 0;
    for (size_t i = 0; i < sizeof transient / sizeof transient[0]; i++)
        if (strncmp(st, transient[i], 2) == 0)
            return 0;
    return 1;
}

/* TB_ERR_UNAVAILABLE (with err filled) if the connection is gone, else TB_OK. */
tb_err_t store_check_conn(tb_store_t *self, const char *what, char *err, size_t errlen)
{
    if (PQstatus(self->conn) == CONNECTION_OK)
        return TB_OK;
    tb_seterr_line(err, errlen, "%s: connection to PostgreSQL lost: %s", what, PQerrorMessage(self->conn));
    return TB_ERR_UNAVAILABLE;
}

/* Runs a static statement without parameters (BEGIN, COMMIT, LISTEN...). */
tb_err_t store_exec_simple(tb_store_t *self, const char *sql, const char *what, char *err, size_t errlen)
{
    PGresult *res = PQexec(self->conn, sql);
    if (!store_res_ok(res))
        return tb_store_fail(self, res, what, err, errlen);
    PQclear(res);
    return TB_OK;
}

int store_parse_i64(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return -1;
    *out = (int64_t)v;
    return 0;
}

void store_notice_processor(void *arg, const char *message)
{
    (void)arg;
    char buf[512], line[512];
    snprintf(line, sizeof line, "%s", message);
    line[strcspn(line, "\r\n")] = '\0';
    tb_log(TB_LOG_INFO, "store", "pg_notice", "msg=%s", tb_log_quote(line, buf, sizeof buf));
}

/* ------------------------------------------------------------------------
 * Open / close
 * ------------------------------------------------------------------------ */

/* One pass: in a transaction under the advisory lock, read the schema
 * version and apply the next pending migration (*done = 0), or, when none
 * is pending, claim node_state for node_id (*done = 1). */
static tb_err_t migrate_step(tb_store_t *self, int *done, char *err, size_t errlen)
{
    PGresult *res = NULL;
    tb_err_t rc;
    *done = 0;

    if ((rc = store_exec_simple(self, "BEGIN", "migrate: BEGIN", err, errlen)) != TB_OK)
        return rc;
    if ((rc = store_exec_simple(self, TB_STORE_MIGRATE_LOCK_SQL, "migrate: advisory lock", err, errlen)) != TB_OK)
        return rc;

    res = PQexec(self->conn, "SELECT to_regclass('tongban.schema_migrations') IS NOT NULL");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        return tb_store_fail(self, res, "migrate: look for tongban.schema_migrations", err, errlen);
    int have_table = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (!have_table &&
        (rc = store_exec_simple(self, tb_store_bootstrap_sql, "migrate: create tongban.schema_migrations", err,
                                errlen)) != TB_OK)
        return rc;

    res = PQexec(self->conn, "SELECT coalesce(max(version), 0) FROM tongban.schema_migrations");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        return tb_store_fail(self, res, "migrate: read schema version", err, errlen);
    int64_t current;
    if (store_parse_i64(PQgetvalue(res, 0, 0), &current) != 0)
        current = -1;
    PQclear(res);
    if (current < 0 || current > TB_SCHEMA_VERSION) {
        store_rollback(self);
        tb_seterr_line(err, errlen, "database schema version %" PRId64 " is newer than this tongban-node knows (%d)",
               current, TB_SCHEMA_VERSION);
        return TB_ERR_DB;
    }

    const tb_migration_t *next = NULL;
    for (size_t i = 0; i < tb_store_migration_count; i++)
        if (tb_store_migrations[i].version > current) {
            next = &tb_store_migrations[i];
            break;
        }

    if (next) {
        char what[128];
        snprintf(what, sizeof what, "migration %d (%s)", next->version, next->description);
        if ((rc = store_exec_simple(self, next->sql, what, err, errlen)) != TB_OK)
            return rc;
        char ver[16];
        snprintf(ver, sizeof ver, "%d", next->version);
        const char *vals[2] = {ver, next->description};
        res = PQexecParams(self->conn,
                           "INSERT INTO tongban.schema_migrations (version, description) VALUES ($1::int, $2)",
                           2, NULL, vals, NULL, NULL, 0);
        if (!store_res_ok(res))
            return tb_store_fail(self, res, what, err, errlen);
        PQclear(res);
        tb_log(TB_LOG_INFO, "store", "migration_applied", "version=%d", next->version);
    } else {
        /* Claim the database for this node (first start) or check it is ours.
         * Under the advisory lock, so a concurrent first start sees our row. */
        const char *vals[1] = {self->node_id};
        res = PQexecParams(self->conn,
                           "WITH ins AS (INSERT INTO tongban.node_state (node_id) VALUES ($1)"
                           "             ON CONFLICT (singleton) DO NOTHING RETURNING node_id)"
                           " SELECT node_id FROM ins UNION ALL SELECT node_id FROM tongban.node_state",
                           1, NULL, vals, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            return tb_store_fail(self, res, "claim node_state", err, errlen);
        if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 0), self->node_id) != 0) {
            char owner[TB_ID_MAX + 1];
            snprintf(owner, sizeof owner, "%s", PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "?");
            PQclear(res);
            store_rollback(self);
            tb_seterr_line(err, errlen,
                   "database belongs to node \"%s\", not \"%s\" (tongban.node_state); "
                   "each node needs its own database",
                   owner, self->node_id);
            return TB_ERR_DB;
        }
        PQclear(res);
        /* tongban.local_node() is the DEFAULT of records.origin, evaluated
         * per inserted row. Reading node_state, it ran the SQL-function
         * executor for every row (~4 us, ~14% of a bulk insert's backend);
         * the claim is permanent, so the function becomes the constant
         * itself: IMMUTABLE, inlined and folded by the planner. */
        res = PQexecParams(self->conn,
                           "SELECT format('CREATE OR REPLACE FUNCTION tongban.local_node() RETURNS text"
                           " LANGUAGE sql IMMUTABLE PARALLEL SAFE AS %L', s.src)"
                           "  FROM (SELECT 'SELECT ' || quote_literal($1::text) || '::text' AS src) s"
                           " WHERE NOT EXISTS (SELECT 1 FROM pg_proc p WHERE p.oid = 'tongban.local_node()'::regprocedure"
                           "                      AND p.provolatile = 'i' AND p.prosrc = s.src)",
                           1, NULL, vals, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK)
            return tb_store_fail(self, res, "define tongban.local_node()", err, errlen);
        if (PQntuples(res) == 1) {
            char *ddl = strdup(PQgetvalue(res, 0, 0));
            PQclear(res);
            if (!ddl) {
                store_rollback(self);
                tb_seterr_line(err, errlen, "define tongban.local_node(): out of memory");
                return TB_ERR_NOMEM;
            }
            rc = store_exec_simple(self, ddl, "define tongban.local_node()", err, errlen);
            free(ddl);
            if (rc != TB_OK)
                return rc;
        } else {
            PQclear(res);
        }
        *done = 1;
    }
    return store_exec_simple(self, "COMMIT", "migrate: COMMIT", err, errlen);
}

tb_err_t tb_store_open(const char *conninfo, const char *node_id, tb_store_t **out, char *err, size_t errlen)
{
    tb_err_t rc;
    if (!out || !conninfo || !node_id || !*node_id || strlen(node_id) > TB_ID_MAX) {
        tb_seterr_line(err, errlen, "tb_store_open: conninfo and a node id of 1..%d characters are required", TB_ID_MAX);
        return TB_ERR_INVALID;
    }
    *out = NULL;
    tb_store_t *self = calloc(1, sizeof *self);
    if (!self) {
        tb_seterr_line(err, errlen, "tb_store_open: out of memory");
        return TB_ERR_NOMEM;
    }
    snprintf(self->node_id, sizeof self->node_id, "%s", node_id);
    if (!(self->conninfo = strdup(conninfo))) {
        free(self);
        tb_seterr_line(err, errlen, "tb_store_open: out of memory");
        return TB_ERR_NOMEM;
    }

    self->conn = PQconnectdb(conninfo);
    if (!self->conn) {
        tb_seterr_line(err, errlen, "tb_store_open: out of memory");
        rc = TB_ERR_NOMEM;
        goto fail;
    }
    if (PQstatus(self->conn) != CONNECTION_OK) {
        tb_seterr_line(err, errlen, "cannot connect to PostgreSQL: %s", PQerrorMessage(self->conn));
        rc = TB_ERR_UNAVAILABLE;
        goto fail;
    }
    PQsetNoticeProcessor(self->conn, store_notice_processor, NULL);
    if (PQsetClientEncoding(self->conn, "UTF8") != 0) {
        rc = tb_store_fail(self, NULL, "set client_encoding UTF8", err, errlen);
        goto fail;
    }

    for (int done = 0; !done;)
        if ((rc = migrate_step(self, &done, err, errlen)) != TB_OK)
            goto fail;

    for (int i = 0; i < S__COUNT; i++) {
        PGresult *res = PQprepare(self->conn, tb_store_stmts[i].name, tb_store_stmts[i].sql, 0, NULL);
        if (!store_res_ok(res)) {
            char what[80];
            snprintf(what, sizeof what, "prepare %s", tb_store_stmts[i].name);
            rc = tb_store_fail(self, res, what, err, errlen);
            goto fail;
        }
        PQclear(res);
    }

    if ((rc = store_exec_simple(self, "LISTEN tongban_outbox", "LISTEN tongban_outbox", err, errlen)) != TB_OK)
        goto fail;
    *out = self;
    return TB_OK;

fail:
    tb_store_destroy(&self);
    return rc;
}

struct pg_conn *tb_store_conn(tb_store_t *self)
{
    return self ? self->conn : NULL;
}

void tb_store_destroy(tb_store_t **self)
{
    if (!self || !*self)
        return;
    if ((*self)->conn)
        PQfinish((*self)->conn);
    if ((*self)->maint)
        PQfinish((*self)->maint);
    free((*self)->conninfo);
    free(*self);
    *self = NULL;
}

int tb_store_socket(tb_store_t *self)
{
    return self ? PQsocket(self->conn) : -1;
}

int tb_store_drain_notifies(tb_store_t *self)
{
    if (!self || PQstatus(self->conn) != CONNECTION_OK || !PQconsumeInput(self->conn))
        return -1;
    int count = 0;
    PGnotify *n;
    while ((n = PQnotifies(self->conn)) != NULL) {
        count++;
        PQfreemem(n);
    }
    return PQstatus(self->conn) == CONNECTION_OK ? count : -1;
}

/* ------------------------------------------------------------------------
 * Routes
 * ------------------------------------------------------------------------ */

tb_err_t tb_store_set_routes(tb_store_t *self, const tb_route_config_t *routes, size_t n, char *err,
                             size_t errlen)
{
    if (!self || (n && !routes)) {
        tb_seterr_line(err, errlen, "tb_store_set_routes: invalid arguments");
        return TB_ERR_INVALID;
    }
    sbuf_t cats = {0}, dests = {0};
    tb_err_t rc = TB_OK;
    store_arr_open(&cats);
    store_arr_open(&dests);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < routes[i].to_count; j++) {
            store_arr_text(&cats, routes[i].catalog);
            store_arr_text(&dests, routes[i].to[j]);
        }
    store_arr_close(&cats);
    store_arr_close(&dests);
    if (cats.oom || dests.oom) {
        tb_seterr_line(err, errlen, "set routes: out of memory");
        rc = TB_ERR_NOMEM;
        goto done;
    }
    if ((rc = store_exec_simple(self, "BEGIN", "set routes: BEGIN", err, errlen)) != TB_OK)
        goto done;
    if ((rc = store_exec_simple(self, "DELETE FROM tongban.routes", "set routes: delete", err, errlen)) != TB_OK)
        goto done;
    /* A specific catalog routed to a dest that also gets '*' is dropped, so
     * the capture join never emits one change twice for one destination. */
    const char *vals[2] = {cats.p, dests.p};
    PGresult *res = PQexecParams(self->conn,
        "WITH u AS (SELECT * FROM unnest($1::text[], $2::text[]) AS u (catalog, dest))"
        " INSERT INTO tongban.routes (catalog, dest)"
        " SELECT DISTINCT catalog, dest FROM u"
        "  WHERE catalog = '*' OR NOT EXISTS (SELECT 1 FROM u w WHERE w.catalog = '*' AND w.dest = u.dest)",
        2, NULL, vals, NULL, NULL, 0);
    if (!store_res_ok(res)) {
        rc = tb_store_fail(self, res, "set routes: insert", err, errlen);
        goto done;
    }
    PQclear(res);
    rc = store_exec_simple(self, "COMMIT", "set routes: COMMIT", err, errlen);
done:
    free(cats.p);
    free(dests.p);
    return rc;
}

/* ------------------------------------------------------------------------
 * Snapshot, tombstones, status
 * ------------------------------------------------------------------------ */

tb_err_t tb_store_snapshot_enqueue(tb_store_t *self, const char *catalog, const char *dest, int64_t *rows,
                                   char *err, size_t errlen)
{
    tb_err_t rc;
    if (rows)
        *rows = 0;
    if (!self || !catalog || !*catalog || !tb_config_valid_dest(dest)) {
        tb_seterr_line(err, errlen, "snapshot: a catalog (or \"*\") and a destination (node id or topic:<id>) are required");
        return TB_ERR_INVALID;
    }
    if ((rc = store_check_conn(self, "snapshot", err, errlen)) != TB_OK)
        return rc;
    if (PQtransactionStatus(self->conn) != PQTRANS_IDLE) {
        tb_seterr_line(err, errlen, "snapshot: a transaction is already open");
        return TB_ERR_INVALID;
    }
    char what[TB_ID_MAX + TB_DEST_MAX + 40];
    snprintf(what, sizeof what, "snapshot of %.64s for %s", catalog, dest);
    if ((rc = store_exec_simple(self, "BEGIN", what, err, errlen)) != TB_OK)
        return rc;
    /* one statement, one snapshot of records and tombstones */
    const char *vals[2] = {catalog, dest};
    PGresult *res = PQexecParams(self->conn,
        "INSERT INTO tongban.outbox (dest, op, catalog, key, body, version, origin, hlc)"
        " SELECT $2, 'U', r.catalog, r.key, r.body, r.version, r.origin, r.hlc"
        "   FROM tongban.records r WHERE $1 = '*' OR r.catalog = $1"
        " UNION ALL"
        " SELECT $2, 'D', t.catalog, t.key, NULL, t.version, t.origin, t.hlc"
        "   FROM tongban.tombstones t WHERE ($1 = '*' OR t.catalog = $1)"
        "    AND NOT EXISTS (SELECT 1 FROM tongban.records r WHERE r.catalog = t.catalog AND r.key = t.key)",
        2, NULL, vals, NULL, NULL, 0);
    if (!store_res_ok(res))
        return tb_store_fail(self, res, what, err, errlen);
    int64_t count = 0;
    if (store_parse_i64(PQcmdTuples(res), &count) != 0)
        count = 0;
    PQclear(res);
    if (count > 0 && (rc = store_exec_simple(self, "NOTIFY tongban_outbox", what, err, errlen)) != TB_OK)
        return rc;
    if ((rc = store_exec_simple(self, "COMMIT", what, err, errlen)) != TB_OK)
        return rc;
    if (rows)
        *rows = count;
    tb_log(TB_LOG_INFO, "store", "snapshot_enqueued", "catalog=%s dest=%s rows=%" PRId64, catalog, dest, count);
    return TB_OK;
}

tb_err_t tb_store_purge_tombstones(tb_store_t *self, int64_t older_than_seconds, int64_t *purged, char *err,
                                   size_t errlen)
{
    if (purged)
        *purged = 0;
    if (!self || older_than_seconds < 0) {
        tb_seterr_line(err, errlen, "purge tombstones: older_than_seconds must be >= 0");
        return TB_ERR_INVALID;
    }
    char secs[24];
    snprintf(secs, sizeof secs, "%" PRId64, older_than_seconds);
    const char *vals[1] = {secs};
    PGresult *res = PQexecParams(self->conn,
                                 "DELETE FROM tongban.tombstones"
                                 " WHERE deleted_at < now() - make_interval(secs => $1::bigint::float8)",
                                 1, NULL, vals, NULL, NULL, 0);
    if (!store_res_ok(res))
        return tb_store_fail(self, res, "purge tombstones", err, errlen);
    int64_t count = 0;
    if (store_parse_i64(PQcmdTuples(res), &count) != 0)
        count = 0;
    PQclear(res);
    if (purged)
        *purged = count;
    return TB_OK;
}

tb_err_t tb_store_count(tb_store_t *self, const char *catalog, int64_t *rows, char *err, size_t errlen)
{
    *rows = 0;
    if (!self || !catalog || !*catalog) {
        tb_seterr_line(err, errlen, "count: a catalog (or \"*\") is required");
        return TB_ERR_INVALID;
    }
    const char *vals[1] = {catalog};
    PGresult *res = PQexecParams(self->conn, "SELECT count(*) FROM tongban.records WHERE $1 = '*' OR catalog = $1", 1,
                                 NULL, vals, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        return tb_store_fail(self, res, "count", err, errlen);
    int64_t v = 0;
    int bad = store_parse_i64(PQgetvalue(res, 0, 0), &v) != 0;
    PQclear(res);
    if (bad) {
        tb_seterr_line(err, errlen, "count: malformed result");
        return TB_ERR_DB;
    }
    *rows = v;
    return TB_OK;
}

void tb_store_free_status(tb_store_status_t *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->n_outbox_dests; i++)
        free(st->outbox_dests[i].dest);
    free(st->outbox_dests);
    st->outbox_dests = NULL;
    st->n_outbox_dests = 0;
}

/* a count column (0 when NULL or malformed) */
static int64_t col_i64(const PGresult *res, int r, int c)
{
    int64_t v = 0;
    if (PQgetisnull(res, r, c) || store_parse_i64(PQgetvalue(res, r, c), &v) != 0)
        return 0;
    return v;
}

/* an age column in seconds (-1 when NULL) */
static double col_age(const PGresult *res, int r, int c)
{
    if (PQgetisnull(res, r, c))
        return -1;
    char *end;
    double v = strtod(PQgetvalue(res, r, c), &end);
    return end == PQgetvalue(res, r, c) ? -1 : v;
}

tb_err_t tb_store_status(tb_store_t *self, tb_store_status_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!self) {
        tb_seterr_line(err, errlen, "status: no store");
        return TB_ERR_INVALID;
    }
    /* row k = 0: the totals; rows k = 1: one per outbox destination */
    PGresult *res = PQexecParams(self->conn,
        "WITH per AS MATERIALIZED (SELECT dest, count(*) AS n FROM tongban.outbox GROUP BY dest)"
        " SELECT 0 AS k, NULL::text AS dest,"
        "  (SELECT coalesce(sum(n), 0)::bigint FROM per),"
        "  (SELECT extract(epoch FROM now() - created_at)::float8 FROM tongban.outbox ORDER BY id LIMIT 1),"
        "  (SELECT count(*) FROM tongban.sent_batches),"
        "  (SELECT extract(epoch FROM now() - created_at)::float8 FROM tongban.sent_batches ORDER BY seq LIMIT 1),"
        "  (SELECT count(*) FROM tongban.refused_batches),"
        "  dl.pending, dl.failed,"
        "  (SELECT count(*) FROM tongban.inbox),"
        "  (SELECT extract(epoch FROM now() - max(applied_at))::float8 FROM tongban.inbox),"
        "  (SELECT count(*) FROM tongban.records),"
        "  (SELECT count(*) FROM tongban.tombstones),"
        "  (SELECT count(*) FROM tongban.refused_deliveries)"
        "  FROM (SELECT count(*) FILTER (WHERE status = 'pending') AS pending,"
        "               count(*) FILTER (WHERE status = 'failed') AS failed"
        "          FROM tongban.dead_letters WHERE status <> 'applied') dl"
        " UNION ALL"
        " SELECT 1, dest, n, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM per"
        " ORDER BY 1, 2",
        0, NULL, NULL, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return tb_store_fail(self, res, "status", err, errlen);
    int rows = PQntuples(res);
    if (rows < 1 || strcmp(PQgetvalue(res, 0, 0), "0") != 0) {
        PQclear(res);
        tb_seterr_line(err, errlen, "status: unexpected result");
        return TB_ERR_DB;
    }
    out->outbox_rows = col_i64(res, 0, 2);
    out->outbox_oldest_age_s = col_age(res, 0, 3);
    out->unacked_batches = col_i64(res, 0, 4);
    out->unacked_oldest_age_s = col_age(res, 0, 5);
    out->refused_batches = col_i64(res, 0, 6);
    out->dead_pending = col_i64(res, 0, 7);
    out->dead_failed = col_i64(res, 0, 8);
    out->dead_letters = out->dead_pending + out->dead_failed;
    out->inbox_rows = col_i64(res, 0, 9);
    out->last_applied_age_s = col_age(res, 0, 10);
    out->records = col_i64(res, 0, 11);
    out->tombstones = col_i64(res, 0, 12);
    out->refused_deliveries = col_i64(res, 0, 13);
    if (rows > 1) {
        size_t nd = (size_t)rows - 1;
        if (!(out->outbox_dests = calloc(nd, sizeof *out->outbox_dests)))
            goto nomem;
        for (size_t i = 0; i < nd; i++) {
            out->n_outbox_dests++;
            out->outbox_dests[i].rows = col_i64(res, (int)i + 1, 2);
            if (!(out->outbox_dests[i].dest = strdup(PQgetvalue(res, (int)i + 1, 1))))
                goto nomem;
        }
    }
    PQclear(res);
    return TB_OK;
nomem:
    PQclear(res);
    tb_store_free_status(out);
    memset(out, 0, sizeof *out);
    tb_seterr_line(err, errlen, "status: out of memory");
    return TB_ERR_NOMEM;
}

tb_err_t tb_store_last_acked(tb_store_t *self, uint64_t *seq, char *err, size_t errlen)
{
    *seq = 0;
    PGresult *res = PQexecParams(self->conn,
                                 "SELECT coalesce((SELECT min(seq) FROM tongban.sent_batches),"
                                 "                (SELECT next_seq FROM tongban.node_state)) - 1",
                                 0, NULL, NULL, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        return tb_store_fail(self, res, "last acked seq", err, errlen);
    int64_t v = 0;
    int bad = PQgetisnull(res, 0, 0) || store_parse_i64(PQgetvalue(res, 0, 0), &v) != 0 || v < 0;
    PQclear(res);
    if (bad) {
        tb_seterr_line(err, errlen, "last acked seq: malformed result");
        return TB_ERR_DB;
    }
    *seq = (uint64_t)v;
    return TB_OK;
}
