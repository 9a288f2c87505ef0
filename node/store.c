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

#include "log.h"

struct tb_store {
    PGconn *conn;
    char node_id[TB_ID_MAX + 1];
};

/* ------------------------------------------------------------------------
 * Schema migrations: applied in order, each with its record in one
 * transaction, under an advisory lock so two nodes starting on one database
 * do not race. Never edit a released migration: append a new one.
 * ------------------------------------------------------------------------ */

typedef struct {
    int version;
    const char *description;
    const char *sql;
} migration_t;

/* Session-level guard shared by every capture trigger: the node sets
 * tongban.applying = 'on' (SET LOCAL) while it applies remote changes. */
#define NOT_APPLYING "current_setting('tongban.applying', true) IS DISTINCT FROM 'on'"

static const migration_t migrations[] = {
    {1, "records, routes, outbox, sent batches, inbox, node state, capture triggers",
     "CREATE TABLE tongban.node_state ("
     "  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),"
     "  node_id text NOT NULL,"
     "  next_seq bigint NOT NULL DEFAULT 1 CHECK (next_seq > 0));\n"

     "CREATE FUNCTION tongban.local_node() RETURNS text LANGUAGE sql STABLE AS"
     "  $$ SELECT node_id FROM tongban.node_state $$;\n"
     /* milliseconds since the epoch << 16: the low 16 bits are the HLC counter */
     "CREATE FUNCTION tongban.hlc_now() RETURNS bigint LANGUAGE sql VOLATILE AS"
     "  $$ SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16 $$;\n"

     "CREATE TABLE tongban.records ("
     "  catalog text NOT NULL,"
     "  key text NOT NULL,"
     "  body jsonb NOT NULL,"
     "  version bigint NOT NULL DEFAULT 1,"
     "  origin text NOT NULL DEFAULT tongban.local_node(),"
     "  hlc bigint NOT NULL DEFAULT tongban.hlc_now(),"
     "  updated_at timestamptz NOT NULL DEFAULT now(),"
     "  PRIMARY KEY (catalog, key));\n"

     "CREATE TABLE tongban.routes ("
     "  catalog text NOT NULL,"
     "  dest text NOT NULL,"
     "  PRIMARY KEY (catalog, dest));\n"

     "CREATE TABLE tongban.outbox ("
     "  id bigserial PRIMARY KEY,"
     "  dest text NOT NULL,"
     "  op char(1) NOT NULL CHECK (op IN ('U', 'D')),"
     "  catalog text NOT NULL,"
     "  key text NOT NULL,"
     "  body jsonb,"
     "  version bigint NOT NULL,"
     "  origin text NOT NULL,"
     "  hlc bigint NOT NULL,"
     "  created_at timestamptz NOT NULL DEFAULT now());\n"
     "CREATE INDEX outbox_dest_id ON tongban.outbox (dest, id);\n"

     "CREATE TABLE tongban.sent_batches ("
     "  seq bigint PRIMARY KEY,"
     "  dest text NOT NULL,"
     "  signed bytea NOT NULL,"
     "  created_at timestamptz NOT NULL DEFAULT now());\n"

     "CREATE TABLE tongban.inbox ("
     "  sender text NOT NULL,"
     "  seq bigint NOT NULL,"
     "  applied_at timestamptz NOT NULL DEFAULT now(),"
     "  PRIMARY KEY (sender, seq));\n"

     /* local updates always move the record's clock forward */
     "CREATE FUNCTION tongban.records_before_update() RETURNS trigger LANGUAGE plpgsql AS $$\n"
     "BEGIN\n"
     "  IF NEW.catalog IS DISTINCT FROM OLD.catalog OR NEW.key IS DISTINCT FROM OLD.key THEN\n"
     "    RAISE EXCEPTION 'tongban.records: catalog and key cannot be changed (delete and insert instead)'\n"
     "      USING ERRCODE = 'feature_not_supported';\n"
     "  END IF;\n"
     "  NEW.hlc := greatest(tongban.hlc_now(), OLD.hlc + 1);\n"
     "  NEW.origin := tongban.local_node();\n"
     "  NEW.version := OLD.version + 1;\n"
     "  NEW.updated_at := now();\n"
     "  RETURN NEW;\n"
     "END $$;\n"
     "CREATE TRIGGER records_before_update BEFORE UPDATE ON tongban.records"
     "  FOR EACH ROW WHEN (" NOT_APPLYING ")"
     "  EXECUTE FUNCTION tongban.records_before_update();\n"

     /* capture: one outbox row per (changed row x matching destination) */
     "CREATE FUNCTION tongban.capture_upsert() RETURNS trigger LANGUAGE plpgsql AS $$\n"
     "BEGIN\n"
     "  INSERT INTO tongban.outbox (dest, op, catalog, key, body, version, origin, hlc)\n"
     "  SELECT r.dest, 'U', n.catalog, n.key, n.body, n.version, n.origin, n.hlc\n"
     "    FROM new_rows n JOIN tongban.routes r ON (r.catalog = n.catalog OR r.catalog = '*');\n"
     "  IF FOUND THEN PERFORM pg_notify('tongban_outbox', ''); END IF;\n"
     "  RETURN NULL;\n"
     "END $$;\n"
     "CREATE FUNCTION tongban.capture_delete() RETURNS trigger LANGUAGE plpgsql AS $$\n"
     "DECLARE\n"
     "  me text := tongban.local_node();\n"
     "  now_hlc bigint := tongban.hlc_now();\n"
     "BEGIN\n"
     "  INSERT INTO tongban.outbox (dest, op, catalog, key, body, version, origin, hlc)\n"
     "  SELECT r.dest, 'D', o.catalog, o.key, NULL, o.version + 1, me, greatest(now_hlc, o.hlc + 1)\n"
     "    FROM old_rows o JOIN tongban.routes r ON (r.catalog = o.catalog OR r.catalog = '*');\n"
     "  IF FOUND THEN PERFORM pg_notify('tongban_outbox', ''); END IF;\n"
     "  RETURN NULL;\n"
     "END $$;\n"
     "CREATE TRIGGER records_capture_insert AFTER INSERT ON tongban.records"
     "  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT WHEN (" NOT_APPLYING ")"
     "  EXECUTE FUNCTION tongban.capture_upsert();\n"
     "CREATE TRIGGER records_capture_update AFTER UPDATE ON tongban.records"
     "  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT WHEN (" NOT_APPLYING ")"
     "  EXECUTE FUNCTION tongban.capture_upsert();\n"
     "CREATE TRIGGER records_capture_delete AFTER DELETE ON tongban.records"
     "  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT WHEN (" NOT_APPLYING ")"
     "  EXECUTE FUNCTION tongban.capture_delete();\n"

     /* TRUNCATE fires no row capture: refuse it rather than diverge silently */
     "CREATE FUNCTION tongban.records_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$\n"
     "BEGIN\n"
     "  RAISE EXCEPTION 'TRUNCATE of tongban.records is not replicated; use DELETE'\n"
     "    USING ERRCODE = 'feature_not_supported';\n"
     "END $$;\n"
     "CREATE TRIGGER records_no_truncate BEFORE TRUNCATE ON tongban.records"
     "  FOR EACH STATEMENT WHEN (" NOT_APPLYING ")"
     "  EXECUTE FUNCTION tongban.records_no_truncate();\n"},
    {2, "refused_batches: batches the hub refused for good, kept for the operator",
     "CREATE TABLE tongban.refused_batches ("
     "  seq bigint PRIMARY KEY,"
     "  dest text NOT NULL,"
     "  signed bytea NOT NULL,"
     "  reason text NOT NULL,"
     "  detail text NOT NULL,"
     "  refused_at timestamptz NOT NULL DEFAULT now());\n"},
};

#define MIGRATION_COUNT (sizeof migrations / sizeof migrations[0])

/* Advisory lock key for schema changes and node claim ("tongban" in ASCII). */
#define MIGRATE_LOCK_SQL "SELECT pg_advisory_xact_lock(32773617270022510)"

static const char bootstrap_sql[] =
    "CREATE SCHEMA IF NOT EXISTS tongban;\n"
    "CREATE TABLE IF NOT EXISTS tongban.schema_migrations ("
    "  version int PRIMARY KEY,"
    "  description text NOT NULL,"
    "  applied_at timestamptz NOT NULL DEFAULT now());\n";

/* ------------------------------------------------------------------------
 * Hot statements, prepared once per connection.
 * ------------------------------------------------------------------------ */

enum {
    S_OUTBOX_READ,
    S_NEXT_SEQ,
    S_SENT_INSERT,
    S_OUTBOX_DELETE,
    S_ACK,
    S_REFUSE,
    S_INBOX_INSERT,
    S_APPLY_UPSERT,
    S_APPLY_DELETE,
    S__COUNT
};

static const struct {
    const char *name;
    const char *sql;
} stmts[S__COUNT] = {
    [S_OUTBOX_READ] = {"tb_outbox_read",
        "SELECT id, op, catalog, key, body::text, version, origin, hlc"
        "  FROM tongban.outbox WHERE dest = $1 ORDER BY id LIMIT $2::bigint"},
    [S_NEXT_SEQ] = {"tb_next_seq",
        "UPDATE tongban.node_state SET next_seq = next_seq + 1 RETURNING next_seq - 1"},
    [S_SENT_INSERT] = {"tb_sent_insert",
        "INSERT INTO tongban.sent_batches (seq, dest, signed) VALUES ($1::bigint, $2, $3::bytea)"},
    [S_OUTBOX_DELETE] = {"tb_outbox_delete",
        "DELETE FROM tongban.outbox WHERE id = ANY ($1::bigint[])"},
    [S_ACK] = {"tb_ack", "DELETE FROM tongban.sent_batches WHERE seq = $1::bigint"},
    [S_REFUSE] = {"tb_refuse",
        "WITH moved AS (DELETE FROM tongban.sent_batches WHERE seq = $1::bigint RETURNING seq, dest, signed)"
        " INSERT INTO tongban.refused_batches (seq, dest, signed, reason, detail)"
        " SELECT seq, dest, signed, $2, $3 FROM moved ON CONFLICT (seq) DO NOTHING"},
    [S_INBOX_INSERT] = {"tb_inbox_insert",
        "INSERT INTO tongban.inbox (sender, seq) VALUES ($1, $2::bigint) ON CONFLICT DO NOTHING"},
    /* DISTINCT ON keeps one row per key (the newest) so ON CONFLICT never
     * touches a row twice; the WHERE makes it last-writer-wins. Origins are
     * compared bytewise (COLLATE "C") so every node breaks ties alike,
     * whatever its database's collation. */
    [S_APPLY_UPSERT] = {"tb_apply_upsert",
        "INSERT INTO tongban.records AS r (catalog, key, body, version, origin, hlc)"
        " SELECT DISTINCT ON (u.catalog, u.key) u.catalog, u.key, u.body::jsonb, u.version, u.origin, u.hlc"
        "   FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[])"
        "        WITH ORDINALITY AS u (catalog, key, body, version, origin, hlc, ord)"
        "  ORDER BY u.catalog, u.key, u.hlc DESC, u.origin COLLATE \"C\" DESC, u.ord DESC"
        " ON CONFLICT (catalog, key) DO UPDATE"
        "    SET body = EXCLUDED.body, version = EXCLUDED.version, origin = EXCLUDED.origin,"
        "        hlc = EXCLUDED.hlc, updated_at = now()"
        "  WHERE (EXCLUDED.hlc, EXCLUDED.origin COLLATE \"C\") > (r.hlc, r.origin COLLATE \"C\")"},
    [S_APPLY_DELETE] = {"tb_apply_delete",
        "DELETE FROM tongban.records AS r"
        "  USING unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) AS d (catalog, key, origin, hlc)"
        "  WHERE r.catalog = d.catalog AND r.key = d.key"
        "    AND (d.hlc, d.origin COLLATE \"C\") >= (r.hlc, r.origin COLLATE \"C\")"},
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

static void arr_close(sbuf_t *b)
{
    sb_putc(b, '}');
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

/* Formats into err as one line (newlines and tabs become spaces). */
static void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    for (char *p = err; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
    size_t n = strlen(err);
    while (n > 0 && err[n - 1] == ' ')
        err[--n] = '\0';
}

static void rollback(tb_store_t *self)
{
    if (PQstatus(self->conn) == CONNECTION_OK && PQtransactionStatus(self->conn) != PQTRANS_IDLE)
        PQclear(PQexec(self->conn, "ROLLBACK"));
}

/* Reports a failed statement: fills err with what + the PostgreSQL message,
 * clears res, rolls back any open transaction. Returns TB_ERR_UNAVAILABLE if
 * the connection is gone, TB_ERR_DB otherwise. */
static tb_err_t pg_fail(tb_store_t *self, PGresult *res, const char *what, char *err, size_t errlen)
{
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (!msg || !*msg)
        msg = PQerrorMessage(self->conn);
    if (!msg || !*msg)
        msg = res ? PQresStatus(PQresultStatus(res)) : "no result from server";
    seterr(err, errlen, "%s: %s%s%s%s%s%s", what, msg, detail ? " (" : "", detail ? detail : "",
           detail ? ")" : "", state ? " SQLSTATE " : "", state ? state : "");
    PQclear(res);
    tb_err_t rc = PQstatus(self->conn) == CONNECTION_OK ? TB_ERR_DB : TB_ERR_UNAVAILABLE;
    rollback(self);
    return rc;
}

/* TB_ERR_UNAVAILABLE (with err filled) if the connection is gone, else TB_OK. */
static tb_err_t check_conn(tb_store_t *self, const char *what, char *err, size_t errlen)
{
    if (PQstatus(self->conn) == CONNECTION_OK)
        return TB_OK;
    seterr(err, errlen, "%s: connection to PostgreSQL lost: %s", what, PQerrorMessage(self->conn));
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
    return PQexecPrepared(self->conn, stmts[s].name, n, vals, lens, fmts, resfmt);
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
    if ((rc = exec_simple(self, MIGRATE_LOCK_SQL, "migrate: advisory lock", err, errlen)) != TB_OK)
        return rc;

    res = PQexec(self->conn, "SELECT to_regclass('tongban.schema_migrations') IS NOT NULL");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
        return pg_fail(self, res, "migrate: look for tongban.schema_migrations", err, errlen);
    int have_table = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    if (!have_table &&
        (rc = exec_simple(self, bootstrap_sql, "migrate: create tongban.schema_migrations", err, errlen)) != TB_OK)
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
        seterr(err, errlen, "database schema version %" PRId64 " is newer than this tongban-node knows (%d)",
               current, TB_SCHEMA_VERSION);
        return TB_ERR_DB;
    }

    const migration_t *next = NULL;
    for (size_t i = 0; i < MIGRATION_COUNT; i++)
        if (migrations[i].version > current) {
            next = &migrations[i];
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
            seterr(err, errlen,
                   "database belongs to node \"%s\", not \"%s\" (tongban.node_state); "
                   "each node needs its own database",
                   owner, self->node_id);
            return TB_ERR_DB;
        }
        PQclear(res);
        *done = 1;
    }
    return exec_simple(self, "COMMIT", "migrate: COMMIT", err, errlen);
}

tb_err_t tb_store_open(const char *conninfo, const char *node_id, tb_store_t **out, char *err, size_t errlen)
{
    tb_err_t rc;
    if (!out || !conninfo || !node_id || !*node_id || strlen(node_id) > TB_ID_MAX) {
        seterr(err, errlen, "tb_store_open: conninfo and a node id of 1..%d characters are required", TB_ID_MAX);
        return TB_ERR_INVALID;
    }
    *out = NULL;
    tb_store_t *self = calloc(1, sizeof *self);
    if (!self) {
        seterr(err, errlen, "tb_store_open: out of memory");
        return TB_ERR_NOMEM;
    }
    snprintf(self->node_id, sizeof self->node_id, "%s", node_id);

    self->conn = PQconnectdb(conninfo);
    if (!self->conn) {
        seterr(err, errlen, "tb_store_open: out of memory");
        rc = TB_ERR_NOMEM;
        goto fail;
    }
    if (PQstatus(self->conn) != CONNECTION_OK) {
        seterr(err, errlen, "cannot connect to PostgreSQL: %s", PQerrorMessage(self->conn));
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
        PGresult *res = PQprepare(self->conn, stmts[i].name, stmts[i].sql, 0, NULL);
        if (!res_ok(res)) {
            char what[80];
            snprintf(what, sizeof what, "prepare %s", stmts[i].name);
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

void tb_store_destroy(tb_store_t **self)
{
    if (!self || !*self)
        return;
    if ((*self)->conn)
        PQfinish((*self)->conn);
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
        seterr(err, errlen, "tb_store_set_routes: invalid arguments");
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
        seterr(err, errlen, "set routes: out of memory");
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
    PGresult *res = PQexecParams(self->conn,
        "WITH RECURSIVE d AS ("
        "  (SELECT dest FROM tongban.outbox ORDER BY dest LIMIT 1)"
        "  UNION ALL"
        "  SELECT (SELECT o.dest FROM tongban.outbox o WHERE o.dest > d.dest ORDER BY o.dest LIMIT 1)"
        "    FROM d WHERE d.dest IS NOT NULL)"
        " SELECT dest FROM d WHERE dest IS NOT NULL",
        0, NULL, NULL, NULL, NULL, 0);
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
    seterr(err, errlen, "outbox destinations: out of memory");
    return TB_ERR_NOMEM;
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
        seterr(err, errlen, "batch begin: no destination");
        return TB_ERR_INVALID;
    }
    if (max == 0)
        return TB_OK;
    if ((rc = check_conn(self, "batch begin", err, errlen)) != TB_OK)
        return rc;
    if (PQtransactionStatus(self->conn) != PQTRANS_IDLE) {
        seterr(err, errlen, "batch begin: a transaction is already open");
        return TB_ERR_INVALID;
    }

    if ((rc = exec_simple(self, "BEGIN", "batch begin", err, errlen)) != TB_OK)
        return rc;
    char maxs[24];
    snprintf(maxs, sizeof maxs, "%zu", max);
    const char *vals[2] = {dest, maxs};
    res = exec_stmt(self, S_OUTBOX_READ, 2, vals, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return pg_fail(self, res, "batch begin: read outbox", err, errlen);
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
            seterr(err, errlen, "batch begin: malformed outbox row");
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
        seterr(err, errlen, "batch begin: tongban.node_state has no usable next_seq");
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
    seterr(err, errlen, "batch begin: out of memory");
    return TB_ERR_NOMEM;
}

tb_err_t tb_store_batch_commit(tb_store_t *self, uint64_t seq, const char *dest, const tb_outrow_t *rows,
                               size_t n, const uint8_t *signed_bytes, size_t len, char *err, size_t errlen)
{
    tb_err_t rc;
    sbuf_t ids = {0};
    if ((rc = check_conn(self, "batch commit", err, errlen)) != TB_OK)
        return rc;
    if (PQtransactionStatus(self->conn) != PQTRANS_INTRANS) {
        seterr(err, errlen, "batch commit: no batch in progress");
        return TB_ERR_INVALID;
    }
    if (!dest || (n && !rows) || (len && !signed_bytes) || seq > INT64_MAX || len > INT32_MAX) {
        rollback(self);
        seterr(err, errlen, "batch commit: invalid arguments");
        return TB_ERR_INVALID;
    }

    char seqs[24];
    snprintf(seqs, sizeof seqs, "%" PRIu64, seq);
    const char *vals[3] = {seqs, dest, (const char *)(signed_bytes ? signed_bytes : (const uint8_t *)"")};
    int lens[3] = {0, 0, (int)len};
    int fmts[3] = {0, 0, 1};
    PGresult *res = exec_stmt(self, S_SENT_INSERT, 3, vals, lens, fmts, 0);
    if (!res_ok(res))
        return pg_fail(self, res, "batch commit: store signed batch", err, errlen);
    PQclear(res);

    arr_open(&ids);
    for (size_t i = 0; i < n; i++)
        arr_i64(&ids, rows[i].outbox_id);
    arr_close(&ids);
    if (ids.oom) {
        free(ids.p);
        rollback(self);
        seterr(err, errlen, "batch commit: out of memory");
        return TB_ERR_NOMEM;
    }
    const char *dvals[1] = {ids.p};
    res = exec_stmt(self, S_OUTBOX_DELETE, 1, dvals, NULL, NULL, 0);
    free(ids.p);
    if (!res_ok(res))
        return pg_fail(self, res, "batch commit: delete outbox rows", err, errlen);
    PQclear(res);
    rc = exec_simple(self, "COMMIT", "batch commit: COMMIT", err, errlen);
    return rc;
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
            seterr(err, errlen, "unacked batches: unexpected seq encoding");
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
    seterr(err, errlen, "unacked batches: out of memory");
    return TB_ERR_NOMEM;
}

tb_err_t tb_store_ack(tb_store_t *self, uint64_t seq, char *err, size_t errlen)
{
    if (seq > INT64_MAX)
        return TB_OK; /* cannot exist */
    char seqs[24];
    snprintf(seqs, sizeof seqs, "%" PRIu64, seq);
    const char *vals[1] = {seqs};
    PGresult *res = exec_stmt(self, S_ACK, 1, vals, NULL, NULL, 0);
    if (!res_ok(res))
        return pg_fail(self, res, "ack", err, errlen);
    PQclear(res);
    return TB_OK;
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

/* Applies entries [from, to) -- all of one type, already decoded into msgs --
 * with one multi-row statement. */
static tb_err_t apply_run(tb_store_t *self, const char *batch_name, Tongban__EntryType type,
                          void *const *msgs, size_t from, size_t to, char *err, size_t errlen)
{
    enum { NCOL = 6 };
    sbuf_t col[NCOL] = {{0}};
    tb_err_t rc = TB_OK;
    int ncol = type == TONGBAN__ENTRY_TYPE__RECORD_UPSERT ? 6 : 4;
    for (int c = 0; c < ncol; c++)
        arr_open(&col[c]);
    for (size_t i = from; i < to; i++) {
        if (type == TONGBAN__ENTRY_TYPE__RECORD_UPSERT) {
            const Tongban__RecordUpsert *u = msgs[i];
            arr_text(&col[0], u->catalog);
            arr_text(&col[1], u->key);
            arr_text(&col[2], u->body);
            arr_i64(&col[3], (int64_t)u->version);
            arr_text(&col[4], u->origin);
            arr_i64(&col[5], (int64_t)u->hlc);
        } else {
            const Tongban__RecordDelete *d = msgs[i];
            arr_text(&col[0], d->catalog);
            arr_text(&col[1], d->key);
            arr_text(&col[2], d->origin);
            arr_i64(&col[3], (int64_t)d->hlc);
        }
    }
    const char *vals[NCOL];
    int oom = 0;
    for (int c = 0; c < ncol; c++) {
        arr_close(&col[c]);
        oom |= col[c].oom;
        vals[c] = col[c].p;
    }
    if (oom) {
        rollback(self);
        seterr(err, errlen, "apply: out of memory");
        rc = TB_ERR_NOMEM;
        goto done;
    }
    int upsert = type == TONGBAN__ENTRY_TYPE__RECORD_UPSERT;
    PGresult *res = exec_stmt(self, upsert ? S_APPLY_UPSERT : S_APPLY_DELETE, ncol, vals, NULL, NULL, 0);
    if (!res_ok(res)) {
        char what[TB_ID_MAX + 160];
        snprintf(what, sizeof what, "%s: %s of entries %zu..%zu", batch_name, upsert ? "upserts" : "deletes",
                 from, to - 1);
        rc = pg_fail(self, res, what, err, errlen);
        goto done;
    }
    PQclear(res);
done:
    for (int c = 0; c < NCOL; c++)
        free(col[c].p);
    return rc;
}

tb_err_t tb_store_apply(tb_store_t *self, const Tongban__Batch *batch, int *applied, char *err, size_t errlen)
{
    tb_err_t rc;
    void **msgs = NULL;
    size_t nent = 0, decoded = 0;
    *applied = 0;
    if (!self || !batch || !batch->sender || !*batch->sender || batch->seq > INT64_MAX ||
        (batch->n_entries && !batch->entries)) {
        seterr(err, errlen, "apply: batch without sender or with seq out of range");
        return TB_ERR_PROTO;
    }
    if ((rc = check_conn(self, "apply", err, errlen)) != TB_OK)
        return rc;
    if (PQtransactionStatus(self->conn) != PQTRANS_IDLE) {
        seterr(err, errlen, "apply: a transaction is already open");
        return TB_ERR_INVALID;
    }
    char what[TB_ID_MAX + 64];
    snprintf(what, sizeof what, "apply batch %.64s/%" PRIu64, batch->sender, batch->seq);

    if ((rc = exec_simple(self, "BEGIN; SET LOCAL tongban.applying = 'on'", what, err, errlen)) != TB_OK)
        return rc;
    char seqs[24];
    snprintf(seqs, sizeof seqs, "%" PRIu64, batch->seq);
    const char *ivals[2] = {batch->sender, seqs};
    PGresult *res = exec_stmt(self, S_INBOX_INSERT, 2, ivals, NULL, NULL, 0);
    if (!res_ok(res))
        return pg_fail(self, res, what, err, errlen);
    int fresh = strcmp(PQcmdTuples(res), "1") == 0;
    PQclear(res);
    if (!fresh) /* already applied: nothing to do */
        return exec_simple(self, "ROLLBACK", what, err, errlen);

    nent = batch->n_entries;
    if (nent && !(msgs = calloc(nent, sizeof *msgs))) {
        rollback(self);
        seterr(err, errlen, "%s: out of memory", what);
        return TB_ERR_NOMEM;
    }
    for (decoded = 0; decoded < nent; decoded++) {
        const Tongban__Entry *e = batch->entries[decoded];
        uint64_t hlc = 0, version = 0;
        if (!e) {
            rc = TB_ERR_PROTO;
            seterr(err, errlen, "%s: entry %zu is missing", what, decoded);
            goto fail;
        }
        if (e->type == TONGBAN__ENTRY_TYPE__RECORD_UPSERT) {
            Tongban__RecordUpsert *u = tongban__record_upsert__unpack(NULL, e->payload.len, e->payload.data);
            msgs[decoded] = u;
            if (u) {
                hlc = u->hlc;
                version = u->version;
            }
        } else if (e->type == TONGBAN__ENTRY_TYPE__RECORD_DELETE) {
            Tongban__RecordDelete *d = tongban__record_delete__unpack(NULL, e->payload.len, e->payload.data);
            msgs[decoded] = d;
            if (d) {
                hlc = d->hlc;
                version = d->version;
            }
        } else {
            rc = TB_ERR_PROTO;
            seterr(err, errlen, "%s: entry %zu has unsupported type %d", what, decoded, (int)e->type);
            goto fail;
        }
        if (!msgs[decoded]) {
            rc = TB_ERR_PROTO;
            seterr(err, errlen, "%s: entry %zu: undecodable %s payload (%zu bytes)", what, decoded,
                   e->type == TONGBAN__ENTRY_TYPE__RECORD_UPSERT ? "RecordUpsert" : "RecordDelete",
                   e->payload.len);
            goto fail;
        }
        if (hlc > INT64_MAX || version > INT64_MAX) {
            decoded++;
            rc = TB_ERR_PROTO;
            seterr(err, errlen, "%s: entry %zu: hlc or version out of range", what, decoded - 1);
            goto fail;
        }
    }

    /* one statement per run of consecutive entries of the same type, in order */
    for (size_t i = 0; i < nent;) {
        size_t j = i;
        while (j < nent && batch->entries[j]->type == batch->entries[i]->type)
            j++;
        if ((rc = apply_run(self, what, batch->entries[i]->type, msgs, i, j, err, errlen)) != TB_OK)
            goto fail;
        i = j;
    }
    if ((rc = exec_simple(self, "COMMIT", what, err, errlen)) != TB_OK)
        goto fail;
    *applied = 1;
    rc = TB_OK;
    goto done;

fail:
    rollback(self);
done:
    for (size_t i = 0; i < decoded && msgs; i++) {
        if (!msgs[i])
            continue;
        if (batch->entries[i]->type == TONGBAN__ENTRY_TYPE__RECORD_UPSERT)
            tongban__record_upsert__free_unpacked(msgs[i], NULL);
        else
            tongban__record_delete__free_unpacked(msgs[i], NULL);
    }
    free(msgs);
    return rc;
}
