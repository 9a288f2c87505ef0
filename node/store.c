/* store.c -- the node's PostgreSQL side: migrations, trigger-based outbox
 * capture, signed batches awaiting ack, and the idempotent multi-row apply
 * of received batches (see store.h for the contract). libpq only; every
 * statement that carries data is parameterised. */
#include "store.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errbuf.h"
#include "log.h"
#include "store_schema.h"

struct tb_store {
    PGconn *conn;
    char node_id[TB_ID_MAX + 1];
    tb_entry_check_fn check; /* received tb.* entries (may be NULL) */
    void *check_arg;
    size_t batch_max_bytes;  /* tb_store_batch_begin's byte budget (0: the default) */
    char *conninfo;          /* for the maintenance connection */
    PGconn *maint;           /* VACUUM runs here, asynchronously (NULL until first needed) */
};

/* ------------------------------------------------------------------------
 * Small helpers: growable buffer, array literals, errors.
 * ------------------------------------------------------------------------ */

typedef struct {
    char *p;
    size_t len, cap;
    size_t items;  /* elements written into the current array literal */
    int oom;
} sbuf_t;

static int sb_reserve(sbuf_t *b, size_t extra)
{
    if (b->oom)
        return -1;
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static void sb_putc(sbuf_t *b, char c)
{
    if (sb_reserve(b, 1) == 0) {
        b->p[b->len++] = c;
        b->p[b->len] = '\0';
    }
}

static void arr_open(sbuf_t *b)
{
    b->len = 0;
    b->items = 0;
    sb_putc(b, '{');
}

static void arr_sep(sbuf_t *b)
{
    if (b->items++)
        sb_putc(b, ',');
}

/* Appends one text element: double-quoted, '"' and '\\' escaped; NULL as NULL. */
static void arr_text(sbuf_t *b, const char *s)
{
    arr_sep(b);
    if (!s) {
        if (sb_reserve(b, 4) == 0) {
            memcpy(b->p + b->len, "NULL", 5);
            b->len += 4;
        }
        return;
    }
    size_t n = strlen(s);
    if (sb_reserve(b, 2 * n + 2) != 0)
        return;
    char *w = b->p + b->len;
    *w++ = '"';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\')
            *w++ = '\\';
        *w++ = s[i];
    }
    *w++ = '"';
    *w = '\0';
    b->len = (size_t)(w - b->p);
}

static void arr_i64(sbuf_t *b, int64_t v)
{
    arr_sep(b);
    if (sb_reserve(b, 24) == 0)
        b->len += (size_t)snprintf(b->p + b->len, 25, "%" PRId64, v);
}

/* Appends one bytea element in hex input form: "\\x0a1b" in the literal
 * (the backslash escaped for the array parser, then bytea's \x hex). */
static void arr_hex(sbuf_t *b, const uint8_t *data, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    arr_sep(b);
    if (sb_reserve(b, 2 * n + 5) != 0)
        return;
    char *w = b->p + b->len;
    memcpy(w, "\"\\\\x", 4);
    w += 4;
    for (size_t i = 0; i < n; i++) {
        *w++ = hex[data[i] >> 4];
        *w++ = hex[data[i] & 15];
    }
    *w++ = '"';
    *w = '\0';
    b->len = (size_t)(w - b->p);
}

static void arr_close(sbuf_t *b)
{
    sb_putc(b, '}');
}

/* Binary (COPY/array_recv) form of a one-dimensional array, for parameters
 * sent with format 1: ndim, flags (has nulls), element type, length, lower
 * bound, then per element its byte length (-1: NULL) and bytes. The server
 * takes the bytes as they are: no array literal to parse and unescape. */
#define OID_INT8 20
#define OID_TEXT 25

static void put_be32(char *w, uint32_t v)
{
    w[0] = (char)(v >> 24);
    w[1] = (char)(v >> 16);
    w[2] = (char)(v >> 8);
    w[3] = (char)v;
}

static void bin_open(sbuf_t *b, uint32_t elem_oid)
{
    b->len = 0;
    b->items = 0;
    if (sb_reserve(b, 20) != 0)
        return;
    put_be32(b->p, 1);          /* ndim */
    put_be32(b->p + 4, 0);      /* flags: no NULL so far */
    put_be32(b->p + 8, elem_oid);
    put_be32(b->p + 12, 0);     /* length, set by bin_close */
    put_be32(b->p + 16, 1);     /* lower bound */
    b->len = 20;
}

static void bin_text(sbuf_t *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n > INT32_MAX - 64 || sb_reserve(b, 4 + n) != 0) {
        b->oom = 1;
        return;
    }
    b->items++;
    if (!s) {
        put_be32(b->p + 4, 1);
        put_be32(b->p + b->len, UINT32_MAX); /* -1: NULL */
        b->len += 4;
        return;
    }
    put_be32(b->p + b->len, (uint32_t)n);
    memcpy(b->p + b->len + 4, s, n);
    b->len += 4 + n;
}

static void bin_i64(sbuf_t *b, int64_t v)
{
    if (sb_reserve(b, 12) != 0)
        return;
    b->items++;
    put_be32(b->p + b->len, 8);
    put_be32(b->p + b->len + 4, (uint32_t)((uint64_t)v >> 32));
    put_be32(b->p + b->len + 8, (uint32_t)v);
    b->len += 12;
}

/* Sets the element count; a result PostgreSQL cannot take as one
 * parameter (over 1 GB) counts as out of memory. */
static void bin_close(sbuf_t *b)
{
    if (b->oom)
        return;
    if (b->len > (size_t)INT32_MAX / 2 || b->items > INT32_MAX) {
        b->oom = 1;
        return;
    }
    put_be32(b->p + 12, (uint32_t)b->items);
}

char *tb_store_text_array(const char *const *v, size_t n)
{
    sbuf_t b = {0};
    arr_open(&b);
    for (size_t i = 0; i < n; i++)
        arr_text(&b, v[i]);
    arr_close(&b);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}


static void rollback(tb_store_t *self)
{
    if (PQstatus(self->conn) == CONNECTION_OK && PQtransactionStatus(self->conn) != PQTRANS_IDLE)
        PQclear(PQexec(self->conn, "ROLLBACK"));
}

/* The error of a failed statement as one line: "message (detail) SQLSTATE
 * xxxxx" (the connection's message when res carries none). */
static void pg_reason(tb_store_t *self, const PGresult *res, char *buf, size_t len)
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
static tb_err_t pg_fail(tb_store_t *self, PGresult *res, const char *what, char *err, size_t errlen)
{
    char reason[1024];
    pg_reason(self, res, reason, sizeof reason);
    tb_seterr_line(err, errlen, "%s: %s", what, reason);
    PQclear(res);
    tb_err_t rc = PQstatus(self->conn) == CONNECTION_OK ? TB_ERR_DB : TB_ERR_UNAVAILABLE;
    rollback(self);
    return rc;
}

/* 1 if a failed statement's error is about the data it was given (a
 * constraint, invalid input...: the entry can be dead-lettered), 0 if it is
 * about the moment or the server -- connection (08), transaction state
 * (25), rollback (40: deadlock, serialization), resources (53), object
 * state (55: lock timeout), operator (57: cancel, shutdown), system (58) --
 * or the connection is gone: then the batch must fail and be redelivered. */
static int data_error(tb_store_t *self, const PGresult *res)
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
static tb_err_t check_conn(tb_store_t *self, const char *what, char *err, size_t errlen)
{
    if (PQstatus(self->conn) == CONNECTION_OK)
        return TB_OK;
    tb_seterr_line(err, errlen, "%s: connection to PostgreSQL lost: %s", what, PQerrorMessage(self->conn));
    return TB_ERR_UNAVAILABLE;
}

static int res_ok(const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    return res && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
}

/* Runs a static statement without parameters (BEGIN, COMMIT, LISTEN...). */
static tb_err_t exec_simple(tb_store_t *self, const char *sql, const char *what, char *err, size_t errlen)
{
    PGresult *res = PQexec(self->conn, sql);
    if (!res_ok(res))
        return pg_fail(self, res, what, err, errlen);
    PQclear(res);
    return TB_OK;
}

static PGresult *exec_stmt(tb_store_t *self, int s, int n, const char *const *vals, const int *lens,
                           const int *fmts, int resfmt)
{
    return PQexecPrepared(self->conn, tb_store_stmts[s].name, n, vals, lens, fmts, resfmt);
}

static int parse_i64(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return -1;
    *out = (int64_t)v;
    return 0;
}

static void notice_processor(void *arg, const char *message)
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

    if ((rc = exec_simple(self, "BEGIN", "migrate: BEGIN", err, errlen)) != TB_OK)
        return rc;
    if ((rc = exec_simple(self, TB_STORE_MIGRATE_LOCK_SQL, "migrate: advisory lock", err, errlen)) != TB_OK)
        return rc;

    res = PQexec(self->conn, "SELECT to_regclass('tongban.schema_migrations') IS NOT NULL");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        return pg_fail(self, res, "migrate: look for tongban.schema_migrations", err, errlen);
    int have_table = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (!have_table &&
        (rc = exec_simple(self, tb_store_bootstrap_sql, "migrate: create tongban.schema_migrations", err,
                          errlen)) != TB_OK)
        return rc;

    res = PQexec(self->conn, "SELECT coalesce(max(version), 0) FROM tongban.schema_migrations");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        return pg_fail(self, res, "migrate: read schema version", err, errlen);
    int64_t current;
    if (parse_i64(PQgetvalue(res, 0, 0), &current) != 0)
        current = -1;
    PQclear(res);
    if (current < 0 || current > TB_SCHEMA_VERSION) {
        rollback(self);
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
        if ((rc = exec_simple(self, next->sql, what, err, errlen)) != TB_OK)
            return rc;
        char ver[16];
        snprintf(ver, sizeof ver, "%d", next->version);
        const char *vals[2] = {ver, next->description};
        res = PQexecParams(self->conn,
                           "INSERT INTO tongban.schema_migrations (version, description) VALUES ($1::int, $2)",
                           2, NULL, vals, NULL, NULL, 0);
        if (!res_ok(res))
            return pg_fail(self, res, what, err, errlen);
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
            return pg_fail(self, res, "claim node_state", err, errlen);
        if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 0), self->node_id) != 0) {
            char owner[TB_ID_MAX + 1];
            snprintf(owner, sizeof owner, "%s", PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "?");
            PQclear(res);
            rollback(self);
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
            return pg_fail(self, res, "define tongban.local_node()", err, errlen);
        if (PQntuples(res) == 1) {
            char *ddl = strdup(PQgetvalue(res, 0, 0));
            PQclear(res);
            if (!ddl) {
                rollback(self);
                tb_seterr_line(err, errlen, "define tongban.local_node(): out of memory");
                return TB_ERR_NOMEM;
            }
            rc = exec_simple(self, ddl, "define tongban.local_node()", err, errlen);
            free(ddl);
            if (rc != TB_OK)
                return rc;
        } else {
            PQclear(res);
        }
        *done = 1;
    }
    return exec_simple(self, "COMMIT", "migrate: COMMIT", err, errlen);
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
    PQsetNoticeProcessor(self->conn, notice_processor, NULL);
    if (PQsetClientEncoding(self->conn, "UTF8") != 0) {
        rc = pg_fail(self, NULL, "set client_encoding UTF8", err, errlen);
        goto fail;
    }

    for (int done = 0; !done;)
        if ((rc = migrate_step(self, &done, err, errlen)) != TB_OK)
            goto fail;

    for (int i = 0; i < S__COUNT; i++) {
        PGresult *res = PQprepare(self->conn, tb_store_stmts[i].name, tb_store_stmts[i].sql, 0, NULL);
        if (!res_ok(res)) {
            char what[80];
            snprintf(what, sizeof what, "prepare %s", tb_store_stmts[i].name);
            rc = pg_fail(self, res, what, err, errlen);
            goto fail;
        }
        PQclear(res);
    }

    if ((rc = exec_simple(self, "LISTEN tongban_outbox", "LISTEN tongban_outbox", err, errlen)) != TB_OK)
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

tb_err_t tb_store_fail(tb_store_t *self, PGresult *res, const char *what, char *err, size_t errlen)
{
    return pg_fail(self, res, what, err, errlen);
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
    arr_open(&cats);
    arr_open(&dests);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < routes[i].to_count; j++) {
            arr_text(&cats, routes[i].catalog);
            arr_text(&dests, routes[i].to[j]);
        }
    arr_close(&cats);
    arr_close(&dests);
    if (cats.oom || dests.oom) {
        tb_seterr_line(err, errlen, "set routes: out of memory");
        rc = TB_ERR_NOMEM;
        goto done;
    }
    if ((rc = exec_simple(self, "BEGIN", "set routes: BEGIN", err, errlen)) != TB_OK)
        goto done;
    if ((rc = exec_simple(self, "DELETE FROM tongban.routes", "set routes: delete", err, errlen)) != TB_OK)
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
    if (!res_ok(res)) {
        rc = pg_fail(self, res, "set routes: insert", err, errlen);
        goto done;
    }
    PQclear(res);
    rc = exec_simple(self, "COMMIT", "set routes: COMMIT", err, errlen);
done:
    free(cats.p);
    free(dests.p);
    return rc;
}

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
    PGresult *res = exec_stmt(self, S_OUTBOX_DESTS, 0, NULL, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return pg_fail(self, res, "outbox destinations", err, errlen);
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
    if ((rc = check_conn(self, "outbox compact", err, errlen)) != TB_OK)
        return rc;
    if ((rc = exec_simple(self, "BEGIN", "outbox compact: BEGIN", err, errlen)) != TB_OK)
        return rc;
    PGresult *res = PQexec(self->conn, "LOCK TABLE tongban.outbox IN ACCESS EXCLUSIVE MODE NOWAIT");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (st && strcmp(st, "55P03") == 0 && PQstatus(self->conn) == CONNECTION_OK) {
            PQclear(res);           /* lock_not_available: busy, another time */
            return exec_simple(self, "ROLLBACK", "outbox compact: ROLLBACK", err, errlen);
        }
        return pg_fail(self, res, "outbox compact: lock", err, errlen);
    }
    PQclear(res);
    /* through the index (ORDER BY dest), not a sequential scan of dead rows */
    res = PQexec(self->conn, "SELECT dest FROM tongban.outbox ORDER BY dest LIMIT 1");
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return pg_fail(self, res, "outbox compact: check", err, errlen);
    int empty = PQntuples(res) == 0;
    PQclear(res);
    if (!empty)
        return exec_simple(self, "ROLLBACK", "outbox compact: ROLLBACK", err, errlen);
    if ((rc = exec_simple(self, "TRUNCATE tongban.outbox", "outbox compact: TRUNCATE", err, errlen)) != TB_OK)
        return rc;
    if ((rc = exec_simple(self, "COMMIT", "outbox compact: COMMIT", err, errlen)) != TB_OK)
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
        PQsetNoticeProcessor(self->maint, notice_processor, NULL);
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
            pg_reason(self, res, reason, sizeof reason);
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
    if ((rc = check_conn(self, "batch begin", err, errlen)) != TB_OK)
        return rc;
    if (PQtransactionStatus(self->conn) != PQTRANS_IDLE) {
        tb_seterr_line(err, errlen, "batch begin: a transaction is already open");
        return TB_ERR_INVALID;
    }

    if ((rc = exec_simple(self, "BEGIN", "batch begin", err, errlen)) != TB_OK)
        return rc;
    char maxs[24], bytes[24];
    snprintf(maxs, sizeof maxs, "%zu", max);
    snprintf(bytes, sizeof bytes, "%zu", self->batch_max_bytes ? self->batch_max_bytes : TB_STORE_BATCH_MAX_BYTES);
    const char *vals[3] = {dest, maxs, bytes};
    res = exec_stmt(self, S_OUTBOX_TAKE, 3, vals, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return pg_fail(self, res, "batch begin: take outbox rows", err, errlen);
    count = (size_t)PQntuples(res);
    if (count == 0) {
        PQclear(res);
        return exec_simple(self, "ROLLBACK", "batch begin: ROLLBACK", err, errlen);
    }

    if (!(v = calloc(count, sizeof *v)))
        goto nomem;
    for (size_t i = 0; i < count; i++) {
        int r = (int)i;
        tb_outrow_t *o = &v[i];
        int64_t hlc;
        if (parse_i64(PQgetvalue(res, r, 0), &o->outbox_id) != 0 ||
            parse_i64(PQgetvalue(res, r, 5), &o->version) != 0 ||
            parse_i64(PQgetvalue(res, r, 7), &hlc) != 0 || hlc < 0) {
            PQclear(res);
            tb_store_free_outrows(v, count);
            rollback(self);
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

    res = exec_stmt(self, S_NEXT_SEQ, 0, NULL, NULL, NULL, 0);
    int64_t s;
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        tb_store_free_outrows(v, count);
        return pg_fail(self, res, "batch begin: allocate seq", err, errlen);
    }
    if (PQntuples(res) != 1 || parse_i64(PQgetvalue(res, 0, 0), &s) != 0 || s <= 0) {
        PQclear(res);
        tb_store_free_outrows(v, count);
        rollback(self);
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
    rollback(self);
    tb_seterr_line(err, errlen, "batch begin: out of memory");
    return TB_ERR_NOMEM;
}

tb_err_t tb_store_batch_commit(tb_store_t *self, uint64_t seq, const char *dest, const tb_outrow_t *rows,
                               size_t n, const uint8_t *signed_bytes, size_t len, char *err, size_t errlen)
{
    tb_err_t rc;
    if ((rc = check_conn(self, "batch commit", err, errlen)) != TB_OK)
        return rc;
    if (PQtransactionStatus(self->conn) != PQTRANS_INTRANS) {
        tb_seterr_line(err, errlen, "batch commit: no batch in progress");
        return TB_ERR_INVALID;
    }
    if (!dest || (n && !rows) || (len && !signed_bytes) || seq > INT64_MAX || len > INT32_MAX) {
        rollback(self);
        tb_seterr_line(err, errlen, "batch commit: invalid arguments");
        return TB_ERR_INVALID;
    }

    /* the outbox rows were deleted by tb_store_batch_begin in this transaction */
    char seqs[24];
    snprintf(seqs, sizeof seqs, "%" PRIu64, seq);
    const char *vals[3] = {seqs, dest, (const char *)(signed_bytes ? signed_bytes : (const uint8_t *)"")};
    int lens[3] = {0, 0, (int)len};
    int fmts[3] = {0, 0, 1};
    PGresult *res = exec_stmt(self, S_SENT_INSERT, 3, vals, lens, fmts, 0);
    if (!res_ok(res))
        return pg_fail(self, res, "batch commit: store signed batch", err, errlen);
    PQclear(res);
    return exec_simple(self, "COMMIT", "batch commit: COMMIT", err, errlen);
}

void tb_store_batch_abort(tb_store_t *self)
{
    if (self)
        rollback(self);
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
        return pg_fail(self, res, "unacked batches", err, errlen);
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
    if ((rc = check_conn(self, "ack", err, errlen)) != TB_OK)
        return rc;
    arr_open(&arr);
    for (size_t i = 0; i < n; i++)
        if (seqs[i] <= INT64_MAX) /* a larger one cannot exist */
            arr_i64(&arr, (int64_t)seqs[i]);
    arr_close(&arr);
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
    if ((rc = exec_simple(self, "BEGIN; SET LOCAL synchronous_commit = off", "ack", err, errlen)) != TB_OK) {
        free(arr.p);
        return rc;
    }
    const char *vals[1] = {arr.p};
    PGresult *res = exec_stmt(self, S_ACK, 1, vals, NULL, NULL, 0);
    free(arr.p);
    if (!res_ok(res))
        return pg_fail(self, res, "ack", err, errlen);
    PQclear(res);
    return exec_simple(self, "COMMIT", "ack: COMMIT", err, errlen);
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
    PGresult *res = exec_stmt(self, S_REFUSE, 3, vals, NULL, NULL, 0);
    if (!res_ok(res))
        return pg_fail(self, res, "refuse", err, errlen);
    PQclear(res);
    return TB_OK;
}

/* ------------------------------------------------------------------------
 * Receiver side
 * ------------------------------------------------------------------------ */

static const char *entry_type_name(int type)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&tongban__entry_type__descriptor, type);
    return v ? v->name : NULL;
}

static void free_entry(int type, void *msg)
{
    if (!msg)
        return;
    if (type == TONGBAN__ENTRY_TYPE__RECORD_UPSERT)
        tongban__record_upsert__free_unpacked(msg, NULL);
    else
        tongban__record_delete__free_unpacked(msg, NULL);
}

/* Decodes one entry's payload: the RecordUpsert / RecordDelete, or NULL
 * with the reason in why (unsupported type, undecodable, out of range). */
static void *decode_entry(int type, const uint8_t *data, size_t len, char *why, size_t whylen)
{
    if (type == TONGBAN__ENTRY_TYPE__RECORD_UPSERT) {
        Tongban__RecordUpsert *u = tongban__record_upsert__unpack(NULL, len, data);
        if (!u)
            tb_seterr_line(why, whylen, "undecodable RecordUpsert payload (%zu bytes)", len);
        else if (u->hlc > INT64_MAX || u->version > INT64_MAX) {
            tb_seterr_line(why, whylen, "RecordUpsert hlc %" PRIu64 " or version %" PRIu64 " beyond INT64_MAX", u->hlc,
                   u->version);
            tongban__record_upsert__free_unpacked(u, NULL);
            u = NULL;
        }
        return u;
    }
    if (type == TONGBAN__ENTRY_TYPE__RECORD_DELETE) {
        Tongban__RecordDelete *d = tongban__record_delete__unpack(NULL, len, data);
        if (!d)
            tb_seterr_line(why, whylen, "undecodable RecordDelete payload (%zu bytes)", len);
        else if (d->hlc > INT64_MAX || d->version > INT64_MAX) {
            tb_seterr_line(why, whylen, "RecordDelete hlc %" PRIu64 " or version %" PRIu64 " beyond INT64_MAX", d->hlc,
                   d->version);
            tongban__record_delete__free_unpacked(d, NULL);
            d = NULL;
        }
        return d;
    }
    const char *name = entry_type_name(type);
    tb_seterr_line(why, whylen, "unsupported entry type %d (%s)", type, name ? name : "unknown");
    return NULL;
}

void tb_store_set_entry_check(tb_store_t *self, tb_entry_check_fn fn, void *arg)
{
    if (!self)
        return;
    self->check = fn;
    self->check_arg = fn ? arg : NULL;
}

/* Runs the entry check on a decoded entry of a "tb." catalog: 0 = apply
 * it; 1 = refused, the reason in why. Other catalogs cost one strncmp. */
static int entry_refused(tb_store_t *self, const char *sender, int type, const void *msg, char *why, size_t whylen)
{
    if (!self->check || !msg)
        return 0;
    const Tongban__RecordUpsert *u = type == TONGBAN__ENTRY_TYPE__RECORD_UPSERT ? msg : NULL;
    const Tongban__RecordDelete *d = type == TONGBAN__ENTRY_TYPE__RECORD_DELETE ? msg : NULL;
    const char *catalog = u ? u->catalog : d ? d->catalog : NULL;
    if (!catalog || strncmp(catalog, "tb.", 3) != 0)
        return 0;
    why[0] = '\0';
    if (self->check(self->check_arg, sender, u, d, why, whylen) == 0)
        return 0;
    if (!why[0])
        tb_seterr_line(why, whylen, "refused by the entry check");
    return 1;
}

typedef struct {
    uint64_t h;
    const Tongban__RecordUpsert *u;
} keyhash_t;

static int keyhash_cmp(const void *a, const void *b)
{
    uint64_t x = ((const keyhash_t *)a)->h, y = ((const keyhash_t *)b)->h;
    return x < y ? -1 : x > y;
}

static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return (h ^ 0xff) * 1099511628211u; /* a byte no string contains: "a"+"bc" != "ab"+"c" */
}

/* 1 if the upserts msgs[idx[0..k-1]] all have distinct (catalog, key), so
 * the statement needs no DISTINCT ON; 0 if not (or out of memory). */
static int upserts_unique(void *const *msgs, const size_t *idx, size_t k)
{
    if (k < 2)
        return 1;
    keyhash_t *v = malloc(k * sizeof *v);
    if (!v)
        return 0;
    for (size_t j = 0; j < k; j++) {
        const Tongban__RecordUpsert *u = msgs[idx[j]];
        v[j].u = u;
        v[j].h = fnv1a(fnv1a(14695981039346656037u, u->catalog ? u->catalog : ""), u->key ? u->key : "");
    }
    qsort(v, k, sizeof *v, keyhash_cmp);
    int unique = 1;
    for (size_t j = 0; j < k && unique; j++)
        for (size_t i = j + 1; i < k && v[i].h == v[j].h && unique; i++)
            unique = !(strcmp(v[i].u->catalog ? v[i].u->catalog : "", v[j].u->catalog ? v[j].u->catalog : "") == 0 &&
                       strcmp(v[i].u->key ? v[i].u->key : "", v[j].u->key ? v[j].u->key : "") == 0);
    free(v);
    return unique;
}

/* Runs the multi-row statement of type (upsert or delete) over the entries
 * msgs[idx[0..k-1]], the columns as binary arrays. Returns the result (the
 * caller clears it); NULL with *oom = 1 when out of memory here. */
static PGresult *run_stmt(tb_store_t *self, int type, void *const *msgs, const size_t *idx, size_t k, int *oom)
{
    enum { NCOL = 6 };
    sbuf_t col[NCOL] = {{0}};
    PGresult *res = NULL;
    int upsert = type == TONGBAN__ENTRY_TYPE__RECORD_UPSERT;
    int ncol = upsert ? 6 : 5;
    static const uint32_t upsert_oids[NCOL] = {OID_TEXT, OID_TEXT, OID_TEXT, OID_INT8, OID_TEXT, OID_INT8};
    static const uint32_t delete_oids[NCOL] = {OID_TEXT, OID_TEXT, OID_INT8, OID_TEXT, OID_INT8, 0};
    *oom = 0;
    for (int c = 0; c < ncol; c++)
        bin_open(&col[c], upsert ? upsert_oids[c] : delete_oids[c]);
    for (size_t j = 0; j < k; j++) {
        if (upsert) {
            const Tongban__RecordUpsert *u = msgs[idx[j]];
            bin_text(&col[0], u->catalog);
            bin_text(&col[1], u->key);
            bin_text(&col[2], u->body);
            bin_i64(&col[3], (int64_t)u->version);
            bin_text(&col[4], u->origin);
            bin_i64(&col[5], (int64_t)u->hlc);
        } else {
            const Tongban__RecordDelete *d = msgs[idx[j]];
            bin_text(&col[0], d->catalog);
            bin_text(&col[1], d->key);
            bin_i64(&col[2], (int64_t)d->version);
            bin_text(&col[3], d->origin);
            bin_i64(&col[4], (int64_t)d->hlc);
        }
    }
    const char *vals[NCOL];
    int lens[NCOL], fmts[NCOL];
    for (int c = 0; c < ncol; c++) {
        bin_close(&col[c]);
        *oom |= col[c].oom;
        vals[c] = col[c].p;
        lens[c] = (int)col[c].len;
        fmts[c] = 1;
    }
    if (!*oom) {
        int s = !upsert ? S_APPLY_DELETE : upserts_unique(msgs, idx, k) ? S_APPLY_UPSERT_UNIQUE : S_APPLY_UPSERT;
        res = exec_stmt(self, s, ncol, vals, lens, fmts, 0);
    }
    for (int c = 0; c < NCOL; c++)
        free(col[c].p);
    return res;
}

/* BEGIN, SET LOCAL tongban.applying, record (sender, seq) in the inbox:
 * *fresh = 0 if it was already there (the transaction stays open). */
static tb_err_t begin_apply(tb_store_t *self, const Tongban__Batch *batch, const char *what, int *fresh, char *err,
                            size_t errlen)
{
    tb_err_t rc;
    *fresh = 0;
    if ((rc = exec_simple(self, "BEGIN; SET LOCAL tongban.applying = 'on'", what, err, errlen)) != TB_OK)
        return rc;
    char seqs[24];
    snprintf(seqs, sizeof seqs, "%" PRIu64, batch->seq);
    const char *ivals[2] = {batch->sender, seqs};
    PGresult *res = exec_stmt(self, S_INBOX_INSERT, 2, ivals, NULL, NULL, 0);
    if (!res_ok(res))
        return pg_fail(self, res, what, err, errlen);
    *fresh = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    return TB_OK;
}

/* Applies the decodable entries live[0..nlive-1] (indexes into the batch)
 * with one statement per run of one type, in batch order.
 * Fast (careful = 0): no savepoints; a run refused for its data rolls the
 * transaction back and returns TB_ERR_DB with *retry = 1.
 * Careful: each run in a SAVEPOINT; a run refused for its data is rolled
 * back to it and applied entry by entry (a savepoint each), the reason of
 * every refused entry i going to why[i].
 * Any other error rolls everything back (TB_ERR_DB / TB_ERR_UNAVAILABLE). */
static tb_err_t apply_runs(tb_store_t *self, const char *what, const Tongban__Batch *batch, void *const *msgs,
                           const size_t *live, size_t nlive, int careful, char **why, int *retry, char *err,
                           size_t errlen)
{
    tb_err_t rc;
    char ctx[TB_ID_MAX + 192];
    int oom;
    *retry = 0;
    for (size_t a = 0; a < nlive;) {
        int type = batch->entries[live[a]]->type;
        size_t b = a;
        while (b < nlive && (int)batch->entries[live[b]]->type == type)
            b++;
        snprintf(ctx, sizeof ctx, "%s: %s of entries %zu..%zu", what,
                 type == TONGBAN__ENTRY_TYPE__RECORD_UPSERT ? "upserts" : "deletes", live[a], live[b - 1]);
        if (careful && (rc = exec_simple(self, "SAVEPOINT tb_run", ctx, err, errlen)) != TB_OK)
            return rc;
        PGresult *res = run_stmt(self, type, msgs, live + a, b - a, &oom);
        if (oom)
            goto nomem;
        if (res_ok(res)) {
            PQclear(res);
            if (careful && (rc = exec_simple(self, "RELEASE SAVEPOINT tb_run", ctx, err, errlen)) != TB_OK)
                return rc;
            a = b;
            continue;
        }
        if (!data_error(self, res))
            return pg_fail(self, res, ctx, err, errlen);
        if (!careful) {
            rc = pg_fail(self, res, ctx, err, errlen);
            *retry = 1;
            return rc;
        }
        PQclear(res);
        if ((rc = exec_simple(self, "ROLLBACK TO SAVEPOINT tb_run", ctx, err, errlen)) != TB_OK)
            return rc;
        for (size_t j = a; j < b; j++) {
            res = run_stmt(self, type, msgs, live + j, 1, &oom);
            if (oom)
                goto nomem;
            if (res_ok(res)) {
                PQclear(res);
                rc = exec_simple(self, "RELEASE SAVEPOINT tb_run; SAVEPOINT tb_run", ctx, err, errlen);
            } else if (!data_error(self, res)) {
                return pg_fail(self, res, ctx, err, errlen);
            } else {
                char reason[1024];
                pg_reason(self, res, reason, sizeof reason);
                PQclear(res);
                if (!(why[live[j]] = strdup(reason)))
                    goto nomem;
                rc = exec_simple(self, "ROLLBACK TO SAVEPOINT tb_run", ctx, err, errlen);
            }
            if (rc != TB_OK)
                return rc;
        }
        if ((rc = exec_simple(self, "RELEASE SAVEPOINT tb_run", ctx, err, errlen)) != TB_OK)
            return rc;
        a = b;
    }
    return TB_OK;
nomem:
    rollback(self);
    tb_seterr_line(err, errlen, "%s: out of memory", what);
    return TB_ERR_NOMEM;
}

/* Inserts the batch's dead letters (entries i with why[i] set) and, once,
 * the signed batch bytes (NULL when signed_batch is NULL). */
static tb_err_t insert_dead(tb_store_t *self, const char *what, const Tongban__Batch *batch,
                            const uint8_t *signed_batch, size_t signed_len, char *const *why, char *err,
                            size_t errlen)
{
    enum { NARR = 5 };
    sbuf_t arr[NARR] = {{0}};
    tb_err_t rc = TB_OK;
    int oom = 0;
    for (int c = 0; c < NARR; c++)
        arr_open(&arr[c]);
    for (size_t i = 0; i < batch->n_entries; i++) {
        if (!why[i])
            continue;
        const Tongban__Entry *e = batch->entries[i];
        arr_i64(&arr[0], (int64_t)i);
        arr_hex(&arr[1], e ? e->id.data : NULL, e ? e->id.len : 0);
        arr_i64(&arr[2], e ? (int64_t)e->type : 0);
        arr_hex(&arr[3], e ? e->payload.data : NULL, e ? e->payload.len : 0);
        arr_text(&arr[4], why[i]);
    }
    for (int c = 0; c < NARR; c++) {
        arr_close(&arr[c]);
        oom |= arr[c].oom;
    }
    if (oom) {
        rollback(self);
        tb_seterr_line(err, errlen, "%s: dead letters: out of memory", what);
        rc = TB_ERR_NOMEM;
        goto done;
    }
    char seqs[24];
    snprintf(seqs, sizeof seqs, "%" PRIu64, batch->seq);
    const char *vals[8] = {batch->sender, seqs, (const char *)signed_batch, arr[0].p, arr[1].p,
                           arr[2].p,      arr[3].p, arr[4].p};
    int lens[8] = {0, 0, (int)signed_len, 0, 0, 0, 0, 0};
    int fmts[8] = {0, 0, 1, 0, 0, 0, 0, 0};
    PGresult *res = exec_stmt(self, S_DEAD_INSERT, 8, vals, lens, fmts, 0);
    if (!res_ok(res)) {
        char ctx[TB_ID_MAX + 96];
        snprintf(ctx, sizeof ctx, "%s: store dead letters", what);
        rc = pg_fail(self, res, ctx, err, errlen);
        goto done;
    }
    PQclear(res);
done:
    for (int c = 0; c < NARR; c++)
        free(arr[c].p);
    return rc;
}

/* A received batch decoded for the apply: msgs[i] the RecordUpsert /
 * RecordDelete of entry i, or NULL with the reason in why[i]; live[0..nlive-1]
 * the entries to apply, in batch order. */
typedef struct {
    void **msgs;
    char **why;
    size_t *live;
    size_t nent, nlive;
} decoded_t;

static void decoded_free(const Tongban__Batch *batch, decoded_t *d)
{
    for (size_t i = 0; i < d->nent; i++) {
        if (d->msgs && d->msgs[i])
            free_entry(batch->entries[i]->type, d->msgs[i]);
        if (d->why)
            free(d->why[i]);
    }
    free(d->msgs);
    free(d->why);
    free(d->live);
    memset(d, 0, sizeof *d);
}

/* Decodes every entry of batch into d (what cannot be decoded, or the
 * entry check refuses, is a dead letter). 0, or -1 when out of memory
 * (d freed). */
static int decode_batch(tb_store_t *self, const Tongban__Batch *batch, decoded_t *d)
{
    size_t nent = batch->n_entries;
    memset(d, 0, sizeof *d);
    d->nent = nent;
    if (nent && (!(d->msgs = calloc(nent, sizeof *d->msgs)) || !(d->why = calloc(nent, sizeof *d->why)) ||
                 !(d->live = calloc(nent, sizeof *d->live))))
        goto nomem;
    for (size_t i = 0; i < nent; i++) {
        const Tongban__Entry *e = batch->entries[i];
        char reason[512];
        if (!e)
            tb_seterr_line(reason, sizeof reason, "entry is missing");
        else
            d->msgs[i] = decode_entry(e->type, e->payload.data, e->payload.len, reason, sizeof reason);
        if (d->msgs[i] && entry_refused(self, batch->sender, e->type, d->msgs[i], reason, sizeof reason)) {
            free_entry(e->type, d->msgs[i]);
            d->msgs[i] = NULL;
        }
        if (d->msgs[i])
            d->live[d->nlive++] = i;
        else if (!(d->why[i] = strdup(reason)))
            goto nomem;
    }
    return 0;
nomem:
    decoded_free(batch, d);
    return -1;
}

/* The checks tb_store_apply_batch makes of its arguments. */
static tb_err_t apply_args_ok(const Tongban__Batch *batch, const uint8_t *signed_batch, size_t signed_len,
                              char *err, size_t errlen)
{
    if (!batch || !batch->sender || !*batch->sender || batch->seq > INT64_MAX ||
        (batch->n_entries && !batch->entries)) {
        tb_seterr_line(err, errlen, "apply: batch without sender or with seq out of range");
        return TB_ERR_PROTO;
    }
    if (signed_len > INT32_MAX || (signed_len && !signed_batch)) {
        tb_seterr_line(err, errlen, "apply: invalid signed batch bytes");
        return TB_ERR_INVALID;
    }
    return TB_OK;
}

static void log_dead(const Tongban__Batch *batch, const decoded_t *d, size_t ndead)
{
    size_t first = 0;
    while (!d->why[first])
        first++;
    char q[1024];
    tb_log(TB_LOG_WARN, "store", "dead_letters", "sender=%s seq=%" PRIu64 " entries=%zu dead=%zu first=%zu reason=%s",
           batch->sender, batch->seq, d->nent, ndead, first, tb_log_quote(d->why[first], q, sizeof q));
}

tb_err_t tb_store_apply_batch(tb_store_t *self, const Tongban__Batch *batch, const uint8_t *signed_batch,
                              size_t signed_len, int *applied, size_t *dead, char *err, size_t errlen)
{
    tb_err_t rc;
    decoded_t dec = {0};
    size_t ndead = 0;
    int fresh = 0;
    *applied = 0;
    if (dead)
        *dead = 0;
    if (!self) {
        tb_seterr_line(err, errlen, "apply: no store");
        return TB_ERR_INVALID;
    }
    if ((rc = apply_args_ok(batch, signed_batch, signed_len, err, errlen)) != TB_OK)
        return rc;
    if ((rc = check_conn(self, "apply", err, errlen)) != TB_OK)
        return rc;
    if (PQtransactionStatus(self->conn) != PQTRANS_IDLE) {
        tb_seterr_line(err, errlen, "apply: a transaction is already open");
        return TB_ERR_INVALID;
    }
    char what[TB_ID_MAX + 64];
    snprintf(what, sizeof what, "apply batch %.64s/%" PRIu64, batch->sender, batch->seq);

    /* decode everything first: what cannot be decoded is a dead letter */
    if (decode_batch(self, batch, &dec) != 0) {
        tb_seterr_line(err, errlen, "%s: out of memory", what);
        return TB_ERR_NOMEM;
    }

    /* fast pass without savepoints; if PostgreSQL refuses an entry, again
     * from the start with a savepoint per run and, in a refused run, per entry */
    for (int pass = 0;; pass++) {
        int retry = 0;
        if ((rc = begin_apply(self, batch, what, &fresh, err, errlen)) != TB_OK)
            goto done;
        if (!fresh) { /* already applied: nothing to do */
            rc = exec_simple(self, "ROLLBACK", what, err, errlen);
            goto done;
        }
        rc = apply_runs(self, what, batch, (void *const *)dec.msgs, dec.live, dec.nlive, pass > 0, dec.why, &retry,
                        err, errlen);
        if (rc == TB_OK)
            break;
        if (!retry || pass > 0)
            goto done;
        char q[1024];
        tb_log(TB_LOG_INFO, "store", "apply_entry_by_entry", "sender=%s seq=%" PRIu64 " error=%s", batch->sender,
               batch->seq, tb_log_quote(err, q, sizeof q));
    }

    for (size_t i = 0; i < dec.nent; i++)
        ndead += dec.why[i] != NULL;
    if (ndead && (rc = insert_dead(self, what, batch, signed_batch, signed_len, dec.why, err, errlen)) != TB_OK)
        goto done;
    if ((rc = exec_simple(self, "COMMIT", what, err, errlen)) != TB_OK)
        goto done;
    *applied = 1;
    if (dead)
        *dead = ndead;
    if (ndead)
        log_dead(batch, &dec, ndead);

done:
    decoded_free(batch, &dec);
    return rc;
}

/* Records (sender, seq) of every item in the inbox with one statement and
 * sets fresh[i] = 1 for the items not there before (the first of a
 * repeated pair only). In the caller's transaction. */
static tb_err_t inbox_insert_many(tb_store_t *self, const tb_apply_item_t *items, size_t n, int *fresh, char *err,
                                  size_t errlen)
{
    sbuf_t snd = {0}, seq = {0};
    arr_open(&snd);
    arr_open(&seq);
    for (size_t i = 0; i < n; i++) {
        arr_text(&snd, items[i].batch->sender);
        arr_i64(&seq, (int64_t)items[i].batch->seq);
    }
    arr_close(&snd);
    arr_close(&seq);
    if (snd.oom || seq.oom) {
        free(snd.p);
        free(seq.p);
        rollback(self);
        tb_seterr_line(err, errlen, "apply group: out of memory");
        return TB_ERR_NOMEM;
    }
    const char *vals[2] = {snd.p, seq.p};
    PGresult *res = exec_stmt(self, S_INBOX_INSERT_MANY, 2, vals, NULL, NULL, 0);
    free(snd.p);
    free(seq.p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return pg_fail(self, res, "apply group: inbox", err, errlen);
    for (size_t i = 0; i < n; i++)
        fresh[i] = 0;
    for (int r = 0; r < PQntuples(res); r++) {
        int64_t s;
        if (parse_i64(PQgetvalue(res, r, 1), &s) != 0)
            continue;
        for (size_t i = 0; i < n; i++)
            if (!fresh[i] && items[i].batch->seq == (uint64_t)s &&
                strcmp(items[i].batch->sender, PQgetvalue(res, r, 0)) == 0) {
                fresh[i] = 1;
                break;
            }
    }
    PQclear(res);
    return TB_OK;
}

/* Sets every item's outcome to rc / err (a failure of the whole group). */
static void items_fail(tb_apply_item_t *items, size_t n, tb_err_t rc, const char *err)
{
    for (size_t i = 0; i < n; i++) {
        items[i].rc = rc;
        snprintf(items[i].err, sizeof items[i].err, "%s", err);
    }
}

tb_err_t tb_store_apply_batches(tb_store_t *self, tb_apply_item_t *items, size_t n)
{
    tb_err_t rc = TB_OK;
    decoded_t *dec = NULL;
    int *fresh = NULL, any = 0;
    size_t *ndead = NULL;
    char err[sizeof items->err];
    if (n && !items)
        return TB_ERR_INVALID;
    for (size_t i = 0; i < n; i++) {
        items[i].applied = 0;
        items[i].dead = 0;
        items[i].rc = TB_OK;
        items[i].err[0] = '\0';
    }
    if (!self) {
        items_fail(items, n, TB_ERR_INVALID, "apply group: no store");
        return n ? TB_ERR_INVALID : TB_OK;
    }
    if (n <= 1)
        goto one_by_one;
    for (size_t i = 0; i < n; i++)
        if (apply_args_ok(items[i].batch, items[i].signed_batch, items[i].signed_len, err, sizeof err) != TB_OK)
            goto one_by_one; /* that one fails alone, as it would have */
    if ((rc = check_conn(self, "apply group", err, sizeof err)) != TB_OK)
        goto fail;
    if (PQtransactionStatus(self->conn) != PQTRANS_IDLE) {
        tb_seterr_line(err, sizeof err, "apply group: a transaction is already open");
        rc = TB_ERR_INVALID;
        goto fail;
    }
    if (!(dec = calloc(n, sizeof *dec)) || !(fresh = calloc(n, sizeof *fresh)) ||
        !(ndead = calloc(n, sizeof *ndead)))
        goto nomem;
    for (size_t i = 0; i < n; i++)
        if (decode_batch(self, items[i].batch, &dec[i]) != 0)
            goto nomem;

    /* one transaction: the statements each batch would have run, in order */
    if ((rc = exec_simple(self, "BEGIN; SET LOCAL tongban.applying = 'on'", "apply group", err, sizeof err)) != TB_OK)
        goto fail;
    if ((rc = inbox_insert_many(self, items, n, fresh, err, sizeof err)) != TB_OK)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        const Tongban__Batch *b = items[i].batch;
        if (!fresh[i])
            continue;
        any = 1;
        char what[TB_ID_MAX + 64];
        snprintf(what, sizeof what, "apply batch %.64s/%" PRIu64, b->sender, b->seq);
        int retry = 0;
        rc = apply_runs(self, what, b, (void *const *)dec[i].msgs, dec[i].live, dec[i].nlive, 0, dec[i].why, &retry,
                        err, sizeof err);
        if (rc != TB_OK) {
            if (retry) /* an entry PostgreSQL refuses: the batches one by one, with savepoints */
                goto one_by_one;
            goto fail;
        }
        for (size_t k = 0; k < dec[i].nent; k++)
            ndead[i] += dec[i].why[k] != NULL;
        if (ndead[i] && (rc = insert_dead(self, what, b, items[i].signed_batch, items[i].signed_len, dec[i].why,
                                          err, sizeof err)) != TB_OK)
            goto fail;
    }
    if ((rc = exec_simple(self, any ? "COMMIT" : "ROLLBACK", "apply group", err, sizeof err)) != TB_OK)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        items[i].applied = fresh[i];
        items[i].dead = fresh[i] ? ndead[i] : 0;
        if (fresh[i] && ndead[i])
            log_dead(items[i].batch, &dec[i], ndead[i]);
    }
    goto done;

one_by_one:
    rc = TB_OK;
    for (size_t i = 0; i < n; i++) {
        tb_apply_item_t *it = &items[i];
        if (rc == TB_ERR_UNAVAILABLE) { /* the connection is gone: the rest too */
            it->rc = rc;
            snprintf(it->err, sizeof it->err, "%s", err);
            continue;
        }
        it->rc = tb_store_apply_batch(self, it->batch, it->signed_batch, it->signed_len, &it->applied, &it->dead,
                                      it->err, sizeof it->err);
        if (it->rc != TB_OK && rc == TB_OK) {
            rc = it->rc;
            snprintf(err, sizeof err, "%s", it->err);
        }
    }
    goto done;
nomem:
    rollback(self);
    tb_seterr_line(err, sizeof err, "apply group: out of memory");
    rc = TB_ERR_NOMEM;
fail:
    items_fail(items, n, rc, err);
done:
    if (dec)
        for (size_t i = 0; i < n; i++)
            decoded_free(items[i].batch, &dec[i]);
    free(dec);
    free(fresh);
    free(ndead);
    return rc;
}

tb_err_t tb_store_apply(tb_store_t *self, const Tongban__Batch *batch, int *applied, char *err, size_t errlen)
{
    return tb_store_apply_batch(self, batch, NULL, 0, applied, NULL, err, errlen);
}

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
        return pg_fail(self, res, "dead letters", err, errlen);
    size_t count = (size_t)PQntuples(res);
    tb_dead_t *v = count ? calloc(count, sizeof *v) : NULL;
    if (count && !v)
        goto nomem;
    for (size_t i = 0; i < count; i++) {
        int r = (int)i;
        tb_dead_t *d = &v[i];
        int64_t seq, idx, type, retries;
        if (parse_i64(PQgetvalue(res, r, 0), &d->id) != 0 || parse_i64(PQgetvalue(res, r, 2), &seq) != 0 ||
            parse_i64(PQgetvalue(res, r, 3), &idx) != 0 || parse_i64(PQgetvalue(res, r, 4), &type) != 0 ||
            parse_i64(PQgetvalue(res, r, 7), &retries) != 0) {
            tb_store_free_dead(v, count);
            PQclear(res);
            tb_seterr_line(err, errlen, "dead letters: malformed row");
            return TB_ERR_DB;
        }
        d->seq = (uint64_t)seq;
        d->entry_index = (int)idx;
        d->entry_type_value = (int)type;
        const char *name = entry_type_name(d->entry_type_value);
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
    if ((rc = check_conn(self, what, err, errlen)) != TB_OK)
        return rc;
    if (PQtransactionStatus(self->conn) != PQTRANS_IDLE) {
        tb_seterr_line(err, errlen, "%s: a transaction is already open", what);
        return TB_ERR_INVALID;
    }
    if ((rc = exec_simple(self, "BEGIN; SET LOCAL tongban.applying = 'on'", what, err, errlen)) != TB_OK)
        return rc;
    const char *vals[1] = {ids};
    /* binary: entry_type as int4, payload and status as raw bytes */
    PGresult *res = PQexecParams(self->conn,
                                 "SELECT entry_type, payload, status, sender FROM tongban.dead_letters"
                                 " WHERE id = $1::bigint FOR UPDATE",
                                 1, NULL, vals, NULL, NULL, 1);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return pg_fail(self, res, what, err, errlen);
    if (PQntuples(res) != 1 || PQgetlength(res, 0, 0) != 4) {
        int none = PQntuples(res) == 0;
        PQclear(res);
        rollback(self);
        tb_seterr_line(err, errlen, "%s: %s", what, none ? "no such dead letter" : "unexpected row encoding");
        return none ? TB_ERR_NOTFOUND : TB_ERR_DB;
    }
    int type = (int)(int32_t)be32((const unsigned char *)PQgetvalue(res, 0, 0));
    if (strcmp(PQgetvalue(res, 0, 2), "applied") == 0) { /* already done */
        PQclear(res);
        return exec_simple(self, "ROLLBACK", what, err, errlen);
    }
    void *msg = decode_entry(type, (const uint8_t *)PQgetvalue(res, 0, 1), (size_t)PQgetlength(res, 0, 1), reason,
                             sizeof reason);
    tb_err_t outcome = TB_ERR_PROTO;
    if (msg && entry_refused(self, PQgetvalue(res, 0, 3), type, msg, reason, sizeof reason)) {
        free_entry(type, msg);
        msg = NULL;
        outcome = TB_ERR_REFUSED;
    }
    PQclear(res);

    if (msg) {
        int oom;
        size_t zero = 0;
        if ((rc = exec_simple(self, "SAVEPOINT tb_run", what, err, errlen)) != TB_OK) {
            free_entry(type, msg);
            return rc;
        }
        res = run_stmt(self, type, &msg, &zero, 1, &oom);
        free_entry(type, msg);
        if (oom) {
            rollback(self);
            tb_seterr_line(err, errlen, "%s: out of memory", what);
            return TB_ERR_NOMEM;
        }
        if (res_ok(res)) {
            outcome = TB_OK;
            PQclear(res);
        } else if (!data_error(self, res)) {
            return pg_fail(self, res, what, err, errlen);
        } else {
            outcome = TB_ERR_DB;
            pg_reason(self, res, reason, sizeof reason);
            PQclear(res);
            if ((rc = exec_simple(self, "ROLLBACK TO SAVEPOINT tb_run", what, err, errlen)) != TB_OK)
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
    if (!res_ok(res))
        return pg_fail(self, res, what, err, errlen);
    PQclear(res);
    if ((rc = exec_simple(self, "COMMIT", what, err, errlen)) != TB_OK)
        return rc;
    if (outcome != TB_OK)
        tb_seterr_line(err, errlen, "%s: still failing: %s", what, reason);
    tb_log(outcome == TB_OK ? TB_LOG_INFO : TB_LOG_WARN, "store", "dead_letter_retried", "id=%" PRId64 " result=%s",
           id, outcome == TB_OK ? "applied" : "failed");
    return outcome;
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
    if ((rc = check_conn(self, "snapshot", err, errlen)) != TB_OK)
        return rc;
    if (PQtransactionStatus(self->conn) != PQTRANS_IDLE) {
        tb_seterr_line(err, errlen, "snapshot: a transaction is already open");
        return TB_ERR_INVALID;
    }
    char what[TB_ID_MAX + TB_DEST_MAX + 40];
    snprintf(what, sizeof what, "snapshot of %.64s for %s", catalog, dest);
    if ((rc = exec_simple(self, "BEGIN", what, err, errlen)) != TB_OK)
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
    if (!res_ok(res))
        return pg_fail(self, res, what, err, errlen);
    int64_t count = 0;
    if (parse_i64(PQcmdTuples(res), &count) != 0)
        count = 0;
    PQclear(res);
    if (count > 0 && (rc = exec_simple(self, "NOTIFY tongban_outbox", what, err, errlen)) != TB_OK)
        return rc;
    if ((rc = exec_simple(self, "COMMIT", what, err, errlen)) != TB_OK)
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
    if (!res_ok(res))
        return pg_fail(self, res, "purge tombstones", err, errlen);
    int64_t count = 0;
    if (parse_i64(PQcmdTuples(res), &count) != 0)
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
        return pg_fail(self, res, "count", err, errlen);
    int64_t v = 0;
    int bad = parse_i64(PQgetvalue(res, 0, 0), &v) != 0;
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
    if (PQgetisnull(res, r, c) || parse_i64(PQgetvalue(res, r, c), &v) != 0)
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
        return pg_fail(self, res, "status", err, errlen);
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
        return pg_fail(self, res, "last acked seq", err, errlen);
    int64_t v = 0;
    int bad = PQgetisnull(res, 0, 0) || parse_i64(PQgetvalue(res, 0, 0), &v) != 0 || v < 0;
    PQclear(res);
    if (bad) {
        tb_seterr_line(err, errlen, "last acked seq: malformed result");
        return TB_ERR_DB;
    }
    *seq = (uint64_t)v;
    return TB_OK;
}
