/* test_store_domain_pg.c -- the domain layer of the node's store (schema
 * migration 7 and node/store_domain.c) against a real PostgreSQL
 * (tests/lib/with-pg.sh): routing of tb.* rows, the rules on local writes
 * and on received entries, tongban.cases through a whole case, overdue,
 * events and durable cursors, and the read functions. The store runs as
 * node 110000; the test's own connection plays the other nodes (a received
 * entry is simulated with SET LOCAL tongban.applying = 'on' and an explicit
 * origin, or sent through tb_store_apply_batch). */
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"
#include "store_domain.h"
#include "store_schema.h"
#include "tbtest.h"

#define ME "110000"     /* the store's node: Beijing */
#define GD "440000"     /* Guangdong */
#define JS "320000"     /* Jiangsu */

static PGconn *db;      /* the test's own connection: other nodes, integrators */
static tb_store_t *st;  /* the store under test, node ME */
static char err[1024];
static char *out;       /* last tb_store_json_call result (freed by the next call) */

/* ---------------- helpers ---------------- */

static void sql(const char *q)
{
    PGresult *r = PQexec(db, q);
    ExecStatusType s = PQresultStatus(r);
    CHECK_MSG(s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK, "%s: %s", q, PQerrorMessage(db));
    PQclear(r);
}

/* First column of the first row of q($1..$n), malloc'ed ("<NULL>" for NULL;
 * NULL if no row or an error). */
static char *qstrv(const char *q, int n, const char *const *v)
{
    PGresult *r = PQexecParams(db, q, n, NULL, v, NULL, NULL, 0);
    char *s = NULL;
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "query failed: %s: %s\n", q, PQerrorMessage(db));
    else if (PQntuples(r) > 0)
        s = strdup(PQgetisnull(r, 0, 0) ? "<NULL>" : PQgetvalue(r, 0, 0));
    PQclear(r);
    return s;
}

static long long qint(const char *q, int n, const char *const *v)
{
    char *s = qstrv(q, n, v);
    long long x = s && strcmp(s, "<NULL>") != 0 ? strtoll(s, NULL, 10) : -1;
    free(s);
    return x;
}

static long long qint0(const char *q)
{
    return qint(q, 0, NULL);
}

/* 1 if the JSON text json satisfies the jsonpath predicate pred (PostgreSQL
 * evaluates it: jsonb @@ jsonpath). */
static int jp(const char *json, const char *pred)
{
    if (!json)
        return 0;
    const char *v[2] = {json, pred};
    char *s = qstrv("SELECT $1::jsonb @@ $2::jsonpath", 2, v);
    int ok = s && strcmp(s, "t") == 0;
    if (!ok)
        fprintf(stderr, "  jsonpath %s is not true of %s\n", pred, json);
    free(s);
    return ok;
}

/* jsonpath query q over json as text (first item; malloc'ed; NULL if none) */
static char *jq(const char *json, const char *q)
{
    if (!json)
        return NULL;
    const char *v[2] = {json, q};
    char *s = qstrv("SELECT jsonb_path_query_first($1::jsonb, $2::jsonpath) #>> '{}'", 2, v);
    if (s && strcmp(s, "<NULL>") == 0) {
        free(s);
        s = NULL;
    }
    return s;
}

/* tb_store_json_call(fn, n text args...); the result in out */
static tb_err_t call(const char *fn, int n, ...)
{
    const char *a[TB_STORE_JSON_MAX_ARGS] = {0};
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n && i < TB_STORE_JSON_MAX_ARGS; i++)
        a[i] = va_arg(ap, const char *);
    va_end(ap);
    free(out);
    out = NULL;
    err[0] = '\0';
    return tb_store_json_call(st, fn, a, n, &out, err, sizeof err);
}

/* the call succeeded (TB_OK) */
#define OK_CALL(...) do { tb_err_t rc_ = call(__VA_ARGS__); \
    CHECK_MSG(rc_ == TB_OK, "%s: rc %d %s", #__VA_ARGS__, rc_, err); } while (0)

/* the call failed with want and err contains needle */
#define BAD_CALL(want, needle, ...) do { tb_err_t rc_ = call(__VA_ARGS__); \
    CHECK_MSG(rc_ == (want) && strstr(err, needle) != NULL && out == NULL && strchr(err, '\n') == NULL, \
              "%s: rc %d (want %d) err [%s] want [%s]", #__VA_ARGS__, rc_, (int)(want), err, needle); } while (0)

/* ---- bodies ---- */

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (s) {
        va_start(ap, f);
        vsnprintf(s, (size_t)n + 1, f, ap);
        va_end(ap);
    }
    return s;
}

/* A licence body (the seal is not checked by the database). */
static char *licence(const char *id, const char *issuer, const char *status, int revision, const char *holder)
{
    return fmt("{\"identifier\": \"%s\", \"issuer_node\": \"%s\", \"status\": \"%s\", \"revision\": %d,"
               " \"holder_code\": \"%s\", \"name\": \"business licence\","
               " \"seal\": {\"alg\": \"ed25519\", \"signer\": \"%s\", \"key_id\": \"00\", \"sig\": \"AA==\"}}",
               id, issuer, status, revision, holder, issuer);
}

/* Case event times: one second apart, in order. */
static int clock_s;
static const char *next_at(void)
{
    static char at[32];
    clock_s++;
    snprintf(at, sizeof at, "2026-03-01T%02d:%02d:%02dZ", (clock_s / 3600) % 24, (clock_s / 60) % 60, clock_s % 60);
    return at;
}

/* key "<case>/<ev>" into key (static per call site: copy) */
static const char *ekey(const char *case_id, const char *ev)
{
    static char k[2][160];
    static int w;
    w ^= 1;
    snprintf(k[w], sizeof k[w], "%s/%s", case_id, ev);
    return k[w];
}

static char *submit_ev(const char *case_id, const char *ev, const char *accepting, const char *mode,
                       const char *handling_json, const char *deadline)
{
    return fmt("{\"case_id\": \"%s\", \"event_id\": \"%s\", \"action\": \"submit\", \"by_node\": \"%s\","
               " \"at\": \"%s\", \"service_item\": \"11100000000013338W3000117001\", \"applicant_name\": \"张三\","
               " \"applicant_code\": \"11010519491231002X\", \"applicant_code_type\": \"111\", \"mode\": \"%s\","
               " \"accepting\": \"%s\", \"handling\": %s, \"deadline\": \"%s\","
               " \"materials\": [{\"name\": \"id card\", \"sha256\": \"%064d\", \"size\": 10, \"ref\": \"s3://m/1\"}],"
               " \"seal\": {\"alg\": \"ed25519\", \"signer\": \"%s\", \"key_id\": \"00\", \"sig\": \"AA==\"}}",
               case_id, ev, accepting, next_at(), mode, accepting, handling_json, deadline, 0, accepting);
}

/* any other action; extra is "" or ", \"field\": value..." */
static char *act_ev(const char *case_id, const char *ev, const char *action, const char *by, const char *extra)
{
    return fmt("{\"case_id\": \"%s\", \"event_id\": \"%s\", \"action\": \"%s\", \"by_node\": \"%s\", \"at\": \"%s\"%s,"
               " \"seal\": {\"alg\": \"ed25519\", \"signer\": \"%s\", \"key_id\": \"00\", \"sig\": \"AA==\"}}",
               case_id, ev, action, by, next_at(), extra, by);
}

/* ---- received entries, simulated on the test's connection ---- */

/* Applies an upsert of (catalog, key, body) from origin the way the node
 * applies a received one (applying = on, explicit origin, a newer clock,
 * LWW). Returns the SQLSTATE ("00000": applied) and the message in msg. */
static const char *remote(const char *catalog, const char *key, const char *body, const char *origin, char *msg,
                          size_t len)
{
    static char state[6];
    PGresult *r = PQexec(db, "BEGIN; SET LOCAL tongban.applying = 'on'");
    PQclear(r);
    const char *v[4] = {catalog, key, body, origin};
    r = PQexecParams(db,
                     "INSERT INTO tongban.records AS r (catalog, key, body, version, origin, hlc)"
                     " VALUES ($1, $2, $3::jsonb, 1, $4, greatest(tongban.hlc_now(), (SELECT x.hlc + 1 FROM"
                     "   tongban.records x WHERE x.catalog = $1 AND x.key = $2)))"
                     " ON CONFLICT (catalog, key) DO UPDATE"
                     "   SET body = EXCLUDED.body, version = r.version + 1, origin = EXCLUDED.origin,"
                     "       hlc = EXCLUDED.hlc, updated_at = now()"
                     "   WHERE (EXCLUDED.hlc, EXCLUDED.origin COLLATE \"C\") > (r.hlc, r.origin COLLATE \"C\")",
                     4, NULL, v, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_COMMAND_OK) {
        snprintf(state, sizeof state, "00000");
        if (msg)
            msg[0] = '\0';
        PQclear(r);
        PQclear(PQexec(db, "COMMIT"));
    } else {
        const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        snprintf(state, sizeof state, "%s", s ? s : "?????");
        if (msg)
            snprintf(msg, len, "%s", m ? m : PQerrorMessage(db));
        PQclear(r);
        PQclear(PQexec(db, "ROLLBACK"));
    }
    return state;
}

/* the received entry applies */
#define REMOTE_OK(cat, key, body, origin) do { char m_[512]; \
    const char *s_ = remote(cat, key, body, origin, m_, sizeof m_); \
    CHECK_MSG(strcmp(s_, "00000") == 0, "remote %s %s from %s: %s %s", cat, key, origin, s_, m_); } while (0)

/* the received entry is refused with 23514 and a message containing needle */
#define REMOTE_BAD(needle, cat, key, body, origin) do { char m_[512]; \
    const char *s_ = remote(cat, key, body, origin, m_, sizeof m_); \
    CHECK_MSG(strcmp(s_, "23514") == 0 && strstr(m_, needle) != NULL, \
              "remote %s %s from %s: %s [%s], want 23514 [%s]", cat, key, origin, s_, m_, needle); } while (0)

/* A statement on the test's connection fails with SQLSTATE want and a
 * message containing needle. */
static void sql_fails(const char *q, const char *want, const char *needle)
{
    PGresult *r = PQexec(db, q);
    const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    CHECK_MSG(PQresultStatus(r) == PGRES_FATAL_ERROR && s && strcmp(s, want) == 0 && m && strstr(m, needle),
              "%s: %s [%s], want %s [%s]", q, s ? s : "ok", m ? m : "", want, needle);
    PQclear(r);
}

/* ---- real batches through tb_store_apply_batch ---- */

typedef struct {
    const char *catalog, *key, *body, *origin;
} ent_t;

static uint64_t batch_hlc = (uint64_t)1 << 60;

static Tongban__Batch *mk_batch(const char *sender, uint64_t seq, const ent_t *e, size_t n)
{
    Tongban__Batch *b = calloc(1, sizeof *b);
    tongban__batch__init(b);
    b->sender = (char *)sender;
    b->seq = seq;
    b->dest = (char *)ME;
    b->n_entries = n;
    b->entries = calloc(n, sizeof *b->entries);
    for (size_t i = 0; i < n; i++) {
        Tongban__Entry *en = calloc(1, sizeof *en);
        tongban__entry__init(en);
        en->id.len = 16;
        en->id.data = calloc(1, 16);
        memcpy(en->id.data, &i, sizeof i);
        Tongban__RecordUpsert u = TONGBAN__RECORD_UPSERT__INIT;
        u.catalog = (char *)e[i].catalog;
        u.key = (char *)e[i].key;
        u.body = (char *)e[i].body;
        u.origin = (char *)e[i].origin;
        u.version = 1;
        u.hlc = ++batch_hlc;
        en->type = TONGBAN__ENTRY_TYPE__RECORD_UPSERT;
        en->payload.len = tongban__record_upsert__get_packed_size(&u);
        en->payload.data = malloc(en->payload.len + 1);
        tongban__record_upsert__pack(&u, en->payload.data);
        b->entries[i] = en;
        b->hlc = u.hlc;
    }
    return b;
}

static void free_batch(Tongban__Batch *b)
{
    for (size_t i = 0; i < b->n_entries; i++) {
        free(b->entries[i]->id.data);
        free(b->entries[i]->payload.data);
        free(b->entries[i]);
    }
    free(b->entries);
    free(b);
}

/* applies e[0..n-1] as batch (sender, seq); returns the dead letter count (-1 on error) */
static long apply_batch(const char *sender, uint64_t seq, const ent_t *e, size_t n)
{
    Tongban__Batch *b = mk_batch(sender, seq, e, n);
    int applied = 0;
    size_t dead = 0;
    char e2[512] = "";
    tb_err_t rc = tb_store_apply_batch(st, b, NULL, 0, &applied, &dead, e2, sizeof e2);
    free_batch(b);
    CHECK_MSG(rc == TB_OK && applied == 1, "apply %s/%" PRIu64 ": rc %d %s", sender, seq, rc, e2);
    return rc == TB_OK ? (long)dead : -1;
}

/* outbox rows for key, as "dest,dest,..." ordered (malloc'ed) */
static char *outbox_dests(const char *key)
{
    const char *v[1] = {key};
    return qstrv("SELECT coalesce(string_agg(dest || ':' || op, ',' ORDER BY dest, id), '')"
                 "  FROM tongban.outbox WHERE key = $1", 1, v);
}

static int dests_are(const char *key, const char *want)
{
    char *d = outbox_dests(key);
    int ok = d && strcmp(d, want) == 0;
    if (!ok)
        fprintf(stderr, "  outbox of %s: [%s], want [%s]\n", key, d ? d : "?", want);
    free(d);
    return ok;
}

static long long events_count(void)
{
    return qint0("SELECT count(*) FROM tongban.events");
}

static int wait_notify(const char *channel, int ms)
{
    int got = 0;
    for (int waited = 0; waited <= ms && !got; waited += 20) {
        PQconsumeInput(db);
        PGnotify *n;
        while ((n = PQnotifies(db)) != NULL) {
            got |= strcmp(n->relname, channel) == 0;
            PQfreemem(n);
        }
        if (!got) {
            struct pollfd p = {.fd = PQsocket(db), .events = POLLIN};
            poll(&p, 1, 20);
        }
    }
    return got;
}

/* ---------------- tests ---------------- */

static void test_schema(void)
{
    CHECK(TB_SCHEMA_VERSION >= 8);          /* 7: domain objects, 8: case attachments */
    CHECK(tb_store_migration_count == TB_SCHEMA_VERSION);
    CHECK(tb_store_migrations[tb_store_migration_count - 1].version == TB_SCHEMA_VERSION);
    CHECK(qint0("SELECT max(version) FROM tongban.schema_migrations") == TB_SCHEMA_VERSION);
    static const char *const fns[] = {"domain_dests", "record_get", "record_put", "record_delete", "domain_insert",
                                      "domain_put", "licence_get", "licence_find", "case_get", "case_list",
                                      "case_history", "events_next", "events_ack", "supitem_list", "complaint_get",
                                      "attachment_status", "attachment_get", "attachment_put"};
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        const char *v[1] = {fns[i]};
        CHECK_MSG(qint("SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                       " WHERE n.nspname = 'tongban' AND p.proname = $1", 1, v) == 1, "tongban.%s", fns[i]);
    }
    /* the rule triggers are named to fire after records_before_update */
    CHECK(qint0("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'tongban.records'::regclass"
                " AND tgname LIKE 'records_zz_domain_%' AND tgname > 'records_before_update'") == 3);

    /* domain_dests by catalog */
    static const struct {
        const char *catalog, *body, *want;
    } d[] = {
        {"tb.licence", "{}", "{topic:licences}"},
        {"tb.risk", "{}", "{topic:risk}"},
        {"tb.supitem", "{}", "{topic:supervision}"},
        {"tb.complaint", "{\"region\": \"440000\", \"filed_by\": \"110000\"}", "{440000}"},
        {"tb.complaint", "{\"region\": \"110000\"}", "{}"},  /* to ourselves: nowhere */
        {"tb.complaint_receipt", "{\"region\": \"440000\", \"filed_by\": \"320000\"}", "{320000}"},
        {"tb.case_event", "{\"action\": \"submit\", \"accepting\": \"110000\", \"handling\": [\"440000\", \"320000\","
                          " \"440000\"]}", "{320000,440000}"},
        {"tb.case_event", "{\"action\": \"accept\", \"case_id\": \"no-such-case\"}", "{}"},
        {"tb.unknown", "{\"region\": \"440000\"}", "{}"},
        {"ordinary", "{}", "{}"},
    };
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) {
        const char *v[2] = {d[i].catalog, d[i].body};
        char *s = qstrv("SELECT tongban.domain_dests($1, $2::jsonb)::text", 2, v);
        CHECK_MSG(s && strcmp(s, d[i].want) == 0, "domain_dests(%s, %s) = %s, want %s", d[i].catalog, d[i].body,
                  s ? s : "?", d[i].want);
        free(s);
    }
}

static void test_call_errors(void)
{
    const char *a[1] = {"x"};
    char *o = (char *)"untouched";
    CHECK(tb_store_json_call(st, "Record_get", a, 1, &o, err, sizeof err) == TB_ERR_INVALID && o == NULL);
    CHECK(tb_store_json_call(st, "record_get; DROP", a, 1, &o, err, sizeof err) == TB_ERR_INVALID);
    CHECK(tb_store_json_call(st, "", a, 0, &o, err, sizeof err) == TB_ERR_INVALID);
    CHECK(tb_store_json_call(st, "record_get", NULL, 2, &o, err, sizeof err) == TB_ERR_INVALID);
    CHECK(tb_store_json_call(st, "record_get", a, TB_STORE_JSON_MAX_ARGS + 1, &o, err, sizeof err) == TB_ERR_INVALID);
    CHECK(tb_store_json_call(NULL, "record_get", a, 1, &o, err, sizeof err) == TB_ERR_INVALID);
    BAD_CALL(TB_ERR_DB, "no_such_function: function tongban.no_such_function", "no_such_function", 1, "x");
    BAD_CALL(TB_ERR_DB, "record_get: function tongban.record_get", "record_get", 1, "x"); /* wrong arity */
    BAD_CALL(TB_ERR_INVALID, "record_put: invalid input syntax for type json", "record_put", 3, "c", "k", "{not json");
    BAD_CALL(TB_ERR_INVALID, "catalog and key are required", "record_put", 3, "c", "", "{}");
    BAD_CALL(TB_ERR_INVALID, "body is required", "record_put", 3, "c", "k", NULL);
    BAD_CALL(TB_ERR_NOTFOUND, "record_get", "record_get", 2, "c", "nothing");
    /* the connection is usable after errors (no transaction left open) */
    CHECK(PQtransactionStatus(db) == PQTRANS_IDLE);
    OK_CALL("record_put", 3, "c", "after-errors", "1");
}

static void test_records(void)
{
    long long ev0 = events_count();
    OK_CALL("record_put", 3, "misc", "k1", "{\"a\": 1, \"s\": \"中文\"}");
    CHECK(jp(out, "$.catalog == \"misc\" && $.key == \"k1\" && $.version == 1 && $.origin == \"" ME "\""));
    CHECK(jp(out, "$.body.a == 1 && $.body.s == \"中文\" && $.updated_at like_regex \"^\\\\d{4}-\\\\d\\\\d-\\\\d\\\\dT.*Z$\""));
    OK_CALL("record_put", 3, "misc", "k1", "[1, 2]");
    CHECK(jp(out, "$.version == 2 && $.body[1] == 2"));
    OK_CALL("record_get", 2, "misc", "k1");
    CHECK(jp(out, "$.version == 2 && $.body.size() == 2 && $.key == \"k1\""));
    OK_CALL("record_put", 3, "misc", "scalar", "\"just a string\"");
    CHECK(jp(out, "$.body == \"just a string\""));
    OK_CALL("record_delete", 2, "misc", "k1");
    CHECK(jp(out, "$.catalog == \"misc\" && $.key == \"k1\""));
    BAD_CALL(TB_ERR_NOTFOUND, "not found", "record_get", 2, "misc", "k1");
    BAD_CALL(TB_ERR_NOTFOUND, "not found", "record_delete", 2, "misc", "k1");
    /* tb.* catalogs only through the domain functions */
    BAD_CALL(TB_ERR_REFUSED, "tb.licence x: catalogs starting with tb. are written by the domain operations only",
             "record_put", 3, "tb.licence", "x", "{}");
    BAD_CALL(TB_ERR_REFUSED, "written by the domain operations only", "record_delete", 2, "tb.licence", "x");
    BAD_CALL(TB_ERR_REFUSED, "domain_insert is for the tb.* catalogs", "domain_insert", 3, "misc", "x", "{}");
    BAD_CALL(TB_ERR_REFUSED, "domain_put is for the tb.* catalogs", "domain_put", 3, "misc", "x", "{}");
    /* ordinary catalogs make no events */
    CHECK(events_count() == ev0);
    /* a plain SQL write of a tb.* row goes through the same rules */
    sql_fails("INSERT INTO tongban.records (catalog, key, body) VALUES ('tb.licence', 'L-sql', '{}')", "23514",
              "tb.licence L-sql: issuer_node (the authority) is required");
    sql_fails("INSERT INTO tongban.records (catalog, key, body) VALUES ('tb.risk', 'R-sql', '[1]')", "23514",
              "tb.risk R-sql: body must be a JSON object");
}

static void test_routing(void)
{
    char e2[256];
    sql("DELETE FROM tongban.outbox");
    char to_b[1][TB_DEST_MAX + 1] = {"B"};
    tb_route_config_t r[1] = {{.catalog = "ord", .to = to_b, .to_count = 1}};
    CHECK_MSG(tb_store_set_routes(st, r, 1, e2, sizeof e2) == TB_OK, "%s", e2);

    /* a licence: topic:licences */
    char *l = licence("L-route", ME, "valid", 1, "91110000MA01ABCD2X");
    OK_CALL("domain_insert", 3, "tb.licence", "L-route", l);
    CHECK(jp(out, "$.catalog == \"tb.licence\" && $.key == \"L-route\" && $.version == 1 && $.origin == \"" ME "\""));
    CHECK(dests_are("L-route", "topic:licences:U"));
    free(l);
    /* a proxy case submitted here for 440000: to 440000 only (never to ourselves) */
    char *s = submit_ev("C-route", "e1", ME, "proxy", "[\"" GD "\"]", "2099-12-31");
    OK_CALL("domain_insert", 3, "tb.case_event", ekey("C-route", "e1"), s);
    CHECK(dests_are("C-route/e1", GD ":U"));
    free(s);
    /* a joint case: to every party but us */
    s = submit_ev("C-route2", "e1", ME, "joint", "[\"" GD "\", \"" JS "\", \"" ME "\"]", "2099-12-31");
    OK_CALL("domain_insert", 3, "tb.case_event", ekey("C-route2", "e1"), s);
    CHECK(dests_are("C-route2/e1", JS ":U," GD ":U"));
    free(s);
    /* complaints go to the responsible region; deletes follow the old body */
    OK_CALL("domain_insert", 3, "tb.complaint", "K-route",
            "{\"complaint_id\": \"K-route\", \"filed_by\": \"" ME "\", \"region\": \"" GD "\", \"kind\": \"complaint\"}");
    CHECK(dests_are("K-route", GD ":U"));
    sql("DELETE FROM tongban.records WHERE catalog = 'tb.complaint' AND key = 'K-route'");
    CHECK(dests_are("K-route", GD ":U," GD ":D"));
    OK_CALL("domain_insert", 3, "tb.risk", "R-route", "{\"risk_id\": \"R-route\", \"issued_by\": \"" ME "\", \"level\": 2}");
    CHECK(dests_are("R-route", "topic:risk:U"));
    OK_CALL("domain_put", 3, "tb.supitem", "S-route", "{\"code\": \"S-route\", \"owner\": \"" ME "\", \"level\": \"city\"}");
    CHECK(dests_are("S-route", "topic:supervision:U"));

    /* a configured route still works for ordinary catalogs, which get no tb routing */
    sql("INSERT INTO tongban.records (catalog, key, body) VALUES ('ord', 'O-route', '{\"region\": \"440000\"}'),"
        " ('unrouted', 'U-route', '{\"region\": \"440000\", \"action\": \"submit\"}')");
    CHECK(dests_are("O-route", "B:U"));
    CHECK(dests_are("U-route", ""));

    /* a dest in both the routes and the domain destinations gets a row once;
     * a '*' route covers ordinary catalogs only: a tb.* row goes to routes
     * naming its catalog and to its domain destinations */
    char to_lic[1][TB_DEST_MAX + 1] = {"topic:licences"};
    char to_all[1][TB_DEST_MAX + 1] = {"topic:all"};
    tb_route_config_t r2[3] = {{.catalog = "tb.licence", .to = to_lic, .to_count = 1},
                               {.catalog = "ord", .to = to_b, .to_count = 1},
                               {.catalog = "*", .to = to_all, .to_count = 1}};
    CHECK_MSG(tb_store_set_routes(st, r2, 3, e2, sizeof e2) == TB_OK, "%s", e2);
    sql("DELETE FROM tongban.outbox");
    l = licence("L-route", ME, "suspended", 2, "91110000MA01ABCD2X");
    OK_CALL("domain_put", 3, "tb.licence", "L-route", l);
    CHECK(jp(out, "$.version == 2 && $.body.status == \"suspended\""));
    CHECK(dests_are("L-route", "topic:licences:U"));
    free(l);
    /* multi-row statements: ordinary and tb.* rows together */
    sql("DELETE FROM tongban.outbox");
    l = licence("L-multi", ME, "valid", 1, "H-multi");
    const char *v[1] = {l};
    PGresult *res = PQexecParams(db,
                                 "INSERT INTO tongban.records (catalog, key, body) VALUES ('ord', 'O-multi', '{}'),"
                                 " ('tb.licence', 'L-multi', $1::jsonb), ('x', 'X-multi', '{}')",
                                 1, NULL, v, NULL, NULL, 0);
    CHECK_MSG(PQresultStatus(res) == PGRES_COMMAND_OK, "%s", PQerrorMessage(db));
    PQclear(res);
    free(l);
    CHECK(dests_are("O-multi", "B:U,topic:all:U"));
    CHECK(dests_are("L-multi", "topic:licences:U"));
    CHECK(dests_are("X-multi", "topic:all:U"));

    /* received entries are not forwarded (capture is off while applying) */
    sql("DELETE FROM tongban.outbox");
    l = licence("L-remote-route", GD, "valid", 1, "H-rr");
    REMOTE_OK("tb.licence", "L-remote-route", l, GD);
    free(l);
    CHECK(qint0("SELECT count(*) FROM tongban.outbox") == 0);
    CHECK(tb_store_set_routes(st, NULL, 0, e2, sizeof e2) == TB_OK);
    sql("DELETE FROM tongban.outbox");
}

static void test_licence_rules(void)
{
    char *l;
    /* wrong origin: a licence issued by another node cannot be written here */
    l = licence("L-gd", GD, "valid", 1, "H1");
    BAD_CALL(TB_ERR_REFUSED, "tb.licence L-gd: origin " ME " is not the authority (issuer_node = " GD ")",
             "domain_insert", 3, "tb.licence", "L-gd", l);
    /* ... but arrives from its issuer */
    REMOTE_OK("tb.licence", "L-gd", l, GD);
    free(l);
    /* and a local update of it is refused (the update makes the origin ours) */
    l = licence("L-gd", GD, "suspended", 2, "H1");
    BAD_CALL(TB_ERR_REFUSED, "origin " ME " is not the authority (issuer_node = " GD ")", "domain_put", 3,
             "tb.licence", "L-gd", l);
    /* received from someone else: refused too */
    REMOTE_BAD("tb.licence L-gd: origin " JS " is not the authority (issuer_node = " GD ")", "tb.licence", "L-gd", l,
               JS);
    /* from the issuer: fine */
    REMOTE_OK("tb.licence", "L-gd", l, GD);
    free(l);
    /* the authority cannot change, here or there */
    l = licence("L-gd", JS, "valid", 3, "H1");
    REMOTE_BAD("tb.licence L-gd: the authority cannot change (issuer_node " GD " -> " JS ")", "tb.licence", "L-gd", l,
               JS);
    free(l);
    l = licence("L-me", ME, "valid", 1, "H2");
    OK_CALL("domain_insert", 3, "tb.licence", "L-me", l);
    free(l);
    l = licence("L-me", GD, "valid", 2, "H2");
    BAD_CALL(TB_ERR_REFUSED, "tb.licence L-me: the authority cannot change (issuer_node " ME " -> " GD ")",
             "domain_put", 3, "tb.licence", "L-me", l);
    free(l);
    /* the revision strictly increases */
    l = licence("L-me", ME, "suspended", 1, "H2");
    BAD_CALL(TB_ERR_REFUSED, "tb.licence L-me: revision must increase (1 -> 1)", "domain_put", 3, "tb.licence",
             "L-me", l);
    free(l);
    l = licence("L-gd", GD, "valid", 2, "H1-changed");
    REMOTE_BAD("tb.licence L-gd: revision must increase (2 -> 2)", "tb.licence", "L-gd", l, GD);
    free(l);
    /* valid -> suspended -> valid -> revoked, then nothing */
    l = licence("L-me", ME, "suspended", 2, "H2");
    OK_CALL("domain_put", 3, "tb.licence", "L-me", l);
    free(l);
    l = licence("L-me", ME, "valid", 3, "H2");
    OK_CALL("domain_put", 3, "tb.licence", "L-me", l);
    free(l);
    l = licence("L-me", ME, "revoked", 4, "H2");
    OK_CALL("domain_put", 3, "tb.licence", "L-me", l);
    free(l);
    l = licence("L-me", ME, "valid", 5, "H2");
    BAD_CALL(TB_ERR_REFUSED, "tb.licence L-me: a revoked licence is final", "domain_put", 3, "tb.licence", "L-me", l);
    free(l);
    l = licence("L-me", ME, "revoked", 5, "H2-new-holder");
    BAD_CALL(TB_ERR_REFUSED, "a revoked licence is final", "domain_put", 3, "tb.licence", "L-me", l);
    free(l);
    l = licence("L-gd", GD, "revoked", 3, "H1");
    REMOTE_OK("tb.licence", "L-gd", l, GD);
    free(l);
    l = licence("L-gd", GD, "valid", 4, "H1");
    REMOTE_BAD("tb.licence L-gd: a revoked licence is final", "tb.licence", "L-gd", l, GD);
    free(l);
    /* required fields */
    l = licence("L-other", ME, "valid", 1, "H3");
    BAD_CALL(TB_ERR_REFUSED, "tb.licence L-bad: identifier must equal the key (identifier = L-other)",
             "domain_insert", 3, "tb.licence", "L-bad", l);
    free(l);
    l = licence("L-bad", ME, "expired", 1, "H3");
    BAD_CALL(TB_ERR_REFUSED, "status must be valid, suspended or revoked (status = expired)", "domain_insert", 3,
             "tb.licence", "L-bad", l);
    free(l);
    l = licence("L-bad", ME, "valid", 0, "H3");
    BAD_CALL(TB_ERR_REFUSED, "revision must be a positive integer", "domain_insert", 3, "tb.licence", "L-bad", l);
    free(l);
    BAD_CALL(TB_ERR_REFUSED, "tb.licence L-bad: seal is required", "domain_insert", 3, "tb.licence", "L-bad",
             "{\"identifier\": \"L-bad\", \"issuer_node\": \"" ME "\", \"status\": \"valid\", \"revision\": 1}");
    BAD_CALL(TB_ERR_REFUSED, "tb.licence L-bad: body must be a JSON object", "domain_insert", 3, "tb.licence",
             "L-bad", "[]");
    /* a duplicate issue */
    l = licence("L-me2", ME, "valid", 1, "H2");
    OK_CALL("domain_insert", 3, "tb.licence", "L-me2", l);
    BAD_CALL(TB_ERR_DUPLICATE, "domain_insert: tb.licence L-me2: already exists", "domain_insert", 3, "tb.licence",
             "L-me2", l);
    free(l);
    /* other kinds: the authority field */
    BAD_CALL(TB_ERR_REFUSED, "tb.risk R1: origin " ME " is not the authority (issued_by = " GD ")", "domain_insert",
             3, "tb.risk", "R1", "{\"issued_by\": \"" GD "\"}");
    BAD_CALL(TB_ERR_REFUSED, "tb.supitem S1: owner (the authority) is required", "domain_put", 3, "tb.supitem", "S1",
             "{\"code\": \"S1\"}");
    BAD_CALL(TB_ERR_REFUSED, "tb.complaint_receipt K1: origin " ME " is not the authority (by = " GD ")",
             "domain_insert", 3, "tb.complaint_receipt", "K1", "{\"by\": \"" GD "\", \"filed_by\": \"" ME "\"}");
    REMOTE_BAD("tb.complaint K9: origin " JS " is not the authority (filed_by = " GD ")", "tb.complaint", "K9",
               "{\"filed_by\": \"" GD "\", \"region\": \"" ME "\"}", JS);
    /* an update that only moves the clock is not a change (re-insert after delete) */
    sql("DELETE FROM tongban.records WHERE catalog = 'tb.licence' AND key = 'L-me2'");
    l = licence("L-me2", ME, "valid", 1, "H2");
    OK_CALL("domain_insert", 3, "tb.licence", "L-me2", l);
    CHECK(jp(out, "$.version == 3"));
    free(l);
}

/* a case submitted remotely by accepting; returns nothing, checks it applied */
static void remote_submit(const char *case_id, const char *accepting, const char *mode, const char *handling,
                          const char *deadline)
{
    char *s = submit_ev(case_id, "e0", accepting, mode, handling, deadline);
    REMOTE_OK("tb.case_event", ekey(case_id, "e0"), s, accepting);
    free(s);
}

static void test_case_rules(void)
{
    char *e;
    /* submit: by the accepting node, mode and parties consistent */
    e = submit_ev("C-bad", "e1", GD, "proxy", "[\"" JS "\"]", "2099-01-01");
    BAD_CALL(TB_ERR_REFUSED, "tb.case_event C-bad/e1: origin " ME " is not the authority (by_node = " GD ")",
             "domain_insert", 3, "tb.case_event", "C-bad/e1", e);
    free(e);
    e = submit_ev("C-bad", "e1", ME, "online", "[\"" GD "\"]", "2099-01-01");
    BAD_CALL(TB_ERR_REFUSED, "online mode needs exactly one handling node, the accepting node", "domain_insert", 3,
             "tb.case_event", "C-bad/e1", e);
    free(e);
    e = submit_ev("C-bad", "e1", ME, "proxy", "[\"" ME "\"]", "2099-01-01");
    BAD_CALL(TB_ERR_REFUSED, "proxy mode needs exactly one handling node other than the accepting node",
             "domain_insert", 3, "tb.case_event", "C-bad/e1", e);
    free(e);
    e = submit_ev("C-bad", "e1", ME, "proxy", "[\"" GD "\", \"" JS "\"]", "2099-01-01");
    BAD_CALL(TB_ERR_REFUSED, "proxy mode needs exactly one handling node", "domain_insert", 3, "tb.case_event",
             "C-bad/e1", e);
    free(e);
    e = submit_ev("C-bad", "e1", ME, "joint", "[\"" GD "\"]", "2099-01-01");
    BAD_CALL(TB_ERR_REFUSED, "joint mode needs two or more handling nodes", "domain_insert", 3, "tb.case_event",
             "C-bad/e1", e);
    free(e);
    e = submit_ev("C-bad", "e1", ME, "express", "[\"" GD "\"]", "2099-01-01");
    BAD_CALL(TB_ERR_REFUSED, "mode must be online, proxy or joint", "domain_insert", 3, "tb.case_event", "C-bad/e1",
             e);
    free(e);
    e = submit_ev("C-bad", "e1", ME, "proxy", "[\"" GD "\"]", "2099-02-30");
    BAD_CALL(TB_ERR_REFUSED, "deadline must be a date YYYY-MM-DD (deadline = 2099-02-30)", "domain_insert", 3,
             "tb.case_event", "C-bad/e1", e);
    free(e);
    e = submit_ev("C-bad", "e1", ME, "proxy", "[\"" GD "\"]", "2099-01-01");
    BAD_CALL(TB_ERR_REFUSED, "tb.case_event C-bad/e2: key must be <case_id>/<event_id> (C-bad/e1)", "domain_insert",
             3, "tb.case_event", "C-bad/e2", e);
    free(e);
    e = act_ev("C-none", "e1", "accept", ME, "");
    BAD_CALL(TB_ERR_REFUSED, "tb.case_event C-none/e1: accept needs case C-none, which is unknown here",
             "domain_insert", 3, "tb.case_event", "C-none/e1", e);
    free(e);

    /* proxy case P1: accepting us, handling 440000 */
    e = submit_ev("P1", "e1", ME, "proxy", "[\"" GD "\"]", "2099-01-01");
    OK_CALL("domain_insert", 3, "tb.case_event", "P1/e1", e);
    /* the same event again: a no-op, not an error, no new event */
    long long ev0 = events_count();
    OK_CALL("domain_insert", 3, "tb.case_event", "P1/e1", e);
    CHECK(jp(out, "$.version == 1 && $.key == \"P1/e1\""));
    REMOTE_OK("tb.case_event", "P1/e1", e, ME);
    sql("INSERT INTO tongban.records (catalog, key, body) SELECT catalog, key, body FROM tongban.records"
        " WHERE catalog = 'tb.case_event' AND key = 'P1/e1'");
    CHECK(events_count() == ev0);
    CHECK(qint0("SELECT version FROM tongban.records WHERE catalog = 'tb.case_event' AND key = 'P1/e1'") == 1);
    /* a second submit of the same case */
    free(e);
    e = submit_ev("P1", "e9", ME, "proxy", "[\"" GD "\"]", "2099-01-01");
    BAD_CALL(TB_ERR_REFUSED, "tb.case_event P1/e9: submit: case P1 already exists", "domain_insert", 3,
             "tb.case_event", "P1/e9", e);
    free(e);
    /* deliver before decide */
    e = act_ev("P1", "e2", "deliver", ME, "");
    BAD_CALL(TB_ERR_REFUSED, "tb.case_event P1/e2: deliver needs state decided, case P1 is submitted",
             "domain_insert", 3, "tb.case_event", "P1/e2", e);
    free(e);
    /* accept by the accepting node in proxy mode */
    e = act_ev("P1", "e2", "accept", ME, "");
    BAD_CALL(TB_ERR_REFUSED, "tb.case_event P1/e2: accept must be by the lead handling node " GD " (by_node = " ME ")",
             "domain_insert", 3, "tb.case_event", "P1/e2", e);
    free(e);
    /* the same rules when received: 440000 may not withdraw or deliver */
    e = act_ev("P1", "e2", "withdraw", GD, "");
    REMOTE_BAD("tb.case_event P1/e2: withdraw must be by the accepting node " ME " (by_node = " GD ")",
               "tb.case_event", "P1/e2", e, GD);
    free(e);
    e = act_ev("P1", "e2", "accept", GD, "");
    REMOTE_BAD("origin " JS " is not the authority (by_node = " GD ")", "tb.case_event", "P1/e2", e, JS);
    REMOTE_OK("tb.case_event", "P1/e2", e, GD);
    free(e);
    /* withdraw after accept */
    e = act_ev("P1", "e3", "withdraw", ME, "");
    BAD_CALL(TB_ERR_REFUSED, "tb.case_event P1/e3: withdraw needs state submitted, case P1 is accepted",
             "domain_insert", 3, "tb.case_event", "P1/e3", e);
    free(e);
    /* part_done is for joint cases */
    e = act_ev("P1", "e3", "start", GD, "");
    REMOTE_OK("tb.case_event", "P1/e3", e, GD);
    free(e);
    e = act_ev("P1", "e4", "part_done", GD, "");
    REMOTE_BAD("tb.case_event P1/e4: part_done is for joint mode only (mode = proxy)", "tb.case_event", "P1/e4", e,
               GD);
    free(e);
    e = act_ev("P1", "e4", "fly", GD, "");
    REMOTE_BAD("unknown action fly", "tb.case_event", "P1/e4", e, GD);
    free(e);
    /* case events are immutable: update and delete refused */
    e = act_ev("P1", "e3", "start", GD, ", \"detail\": \"changed\"");
    REMOTE_BAD("tb.case_event P1/e3: case events are immutable", "tb.case_event", "P1/e3", e, GD);
    BAD_CALL(TB_ERR_REFUSED, "tb.case_event P1/e3: case events are immutable", "domain_put", 3, "tb.case_event",
             "P1/e3", e);
    BAD_CALL(TB_ERR_DUPLICATE, "tb.case_event P1/e3: already exists", "domain_insert", 3, "tb.case_event", "P1/e3", e);
    free(e);
    sql_fails("UPDATE tongban.records SET body = body || '{\"detail\": \"x\"}'"
              " WHERE catalog = 'tb.case_event' AND key = 'P1/e1'", "23514",
              "tb.case_event P1/e1: case events are immutable (update refused)");
    sql_fails("DELETE FROM tongban.records WHERE catalog = 'tb.case_event' AND key = 'P1/e1'", "23514",
              "tb.case_event P1/e1: case events are immutable (delete refused)");
    sql_fails("BEGIN; SET LOCAL tongban.applying = 'on';"
              " DELETE FROM tongban.records WHERE catalog = 'tb.case_event' AND key LIKE 'P1/%'", "23514",
              "case events are immutable (delete refused)");
    sql("ROLLBACK");
    CHECK(qint0("SELECT count(*) FROM tongban.records WHERE catalog = 'tb.case_event' AND key LIKE 'P1/%'") == 3);
    CHECK(qint0("SELECT count(*) FROM tongban.cases WHERE case_id = 'P1' AND state = 'in_progress'") == 1);

    /* joint case J1: accepting 440000, handling [us (lead), 320000] */
    remote_submit("J1", GD, "joint", "[\"" ME "\", \"" JS "\"]", "2099-01-01");
    e = act_ev("J1", "e1", "accept", ME, "");
    OK_CALL("domain_insert", 3, "tb.case_event", "J1/e1", e);
    CHECK(dests_are("J1/e1", JS ":U," GD ":U"));
    free(e);
    e = act_ev("J1", "e2", "start", ME, "");
    OK_CALL("domain_insert", 3, "tb.case_event", "J1/e2", e);
    free(e);
    e = act_ev("J1", "e3", "part_done", ME, ", \"part\": \"identity check\"");
    OK_CALL("domain_insert", 3, "tb.case_event", "J1/e3", e);
    free(e);
    /* decide before every part is done */
    e = act_ev("J1", "e4", "decide", ME, ", \"result\": {\"approved\": true}");
    BAD_CALL(TB_ERR_REFUSED, "tb.case_event J1/e4: decide in joint mode needs part_done of every handling node"
             " (missing " JS ")", "domain_insert", 3, "tb.case_event", "J1/e4", e);
    free(e);
    /* a second part_done from the same node */
    e = act_ev("J1", "e5", "part_done", ME, "");
    BAD_CALL(TB_ERR_REFUSED, "tb.case_event J1/e5: part_done of " ME " is already recorded", "domain_insert", 3,
             "tb.case_event", "J1/e5", e);
    free(e);
    /* part_done by the accepting node, not a handling one */
    e = act_ev("J1", "e5", "part_done", GD, "");
    REMOTE_BAD("part_done must be by a handling node (" ME "," JS ")", "tb.case_event", "J1/e5", e, GD);
    free(e);
    e = act_ev("J1", "e5", "part_done", JS, "");
    REMOTE_OK("tb.case_event", "J1/e5", e, JS);
    free(e);
    /* decide only by the lead */
    e = act_ev("J1", "e6", "decide", JS, "");
    REMOTE_BAD("decide must be by the lead handling node " ME, "tb.case_event", "J1/e6", e, JS);
    free(e);
    e = act_ev("J1", "e6", "decide", ME, ", \"result\": {\"approved\": true}");
    OK_CALL("domain_insert", 3, "tb.case_event", "J1/e6", e);
    free(e);
    OK_CALL("case_get", 1, "J1");
    CHECK(jp(out, "$.state == \"decided\" && $.parts_done.size() == 2 && $.result.approved == true"));
    /* rate: score 1..5 */
    e = act_ev("J1", "e7", "deliver", GD, "");
    REMOTE_OK("tb.case_event", "J1/e7", e, GD);
    free(e);
    e = act_ev("J1", "e8", "rate", GD, ", \"score\": 6");
    REMOTE_BAD("tb.case_event J1/e8: rate needs a score of 1..5 (score = 6)", "tb.case_event", "J1/e8", e, GD);
    free(e);
    e = act_ev("J1", "e8", "rate", GD, ", \"score\": 4, \"comment\": \"fast\"");
    REMOTE_OK("tb.case_event", "J1/e8", e, GD);
    free(e);
    OK_CALL("case_get", 1, "J1");
    CHECK(jp(out, "$.state == \"rated\" && $.rating == 4 && $.rating_comment == \"fast\" && $.overdue == false"));
    /* rated is final */
    e = act_ev("J1", "e9", "reject", ME, "");
    BAD_CALL(TB_ERR_REFUSED, "reject needs state submitted or accepted or in_progress, case J1 is rated",
             "domain_insert", 3, "tb.case_event", "J1/e9", e);
    free(e);

    /* online case: accepting = handling[0] = us; reject from in_progress is final */
    e = submit_ev("O1", "e1", ME, "online", "[\"" ME "\"]", "2099-01-01");
    OK_CALL("domain_insert", 3, "tb.case_event", "O1/e1", e);
    CHECK(dests_are("O1/e1", ""));  /* nobody else is a party */
    free(e);
    e = act_ev("O1", "e2", "reject", ME, ", \"detail\": \"materials incomplete\"");
    OK_CALL("domain_insert", 3, "tb.case_event", "O1/e2", e);
    free(e);
    e = act_ev("O1", "e3", "accept", ME, "");
    BAD_CALL(TB_ERR_REFUSED, "accept needs state submitted, case O1 is rejected", "domain_insert", 3,
             "tb.case_event", "O1/e3", e);
    free(e);
    /* withdraw: accepting node, from submitted */
    e = submit_ev("W1", "e1", ME, "proxy", "[\"" GD "\"]", "2099-01-01");
    OK_CALL("domain_insert", 3, "tb.case_event", "W1/e1", e);
    free(e);
    e = act_ev("W1", "e2", "withdraw", ME, "");
    OK_CALL("domain_insert", 3, "tb.case_event", "W1/e2", e);
    CHECK(dests_are("W1/e2", GD ":U"));
    free(e);
    OK_CALL("case_get", 1, "W1");
    CHECK(jp(out, "$.state == \"withdrawn\""));
}

/* Received batches: rule violations become dead letters with the trigger's
 * message; a batch carrying several events of one case applies in one go. */
static void test_batches(void)
{
    char *s = submit_ev("B1", "e1", ME, "proxy", "[\"" GD "\"]", "2099-01-01");
    OK_CALL("domain_insert", 3, "tb.case_event", "B1/e1", s);
    free(s);
    char *a = act_ev("B1", "e2", "accept", GD, "");
    char *b = act_ev("B1", "e3", "start", GD, "");
    char *c = act_ev("B1", "e4", "decide", GD, ", \"result\": {\"licence\": \"L-x\"}");
    ent_t e[3] = {{"tb.case_event", "B1/e2", a, GD}, {"tb.case_event", "B1/e3", b, GD},
                  {"tb.case_event", "B1/e4", c, GD}};
    long long dl0 = qint0("SELECT count(*) FROM tongban.dead_letters");
    CHECK(apply_batch(GD, 1, e, 3) == 0);
    OK_CALL("case_get", 1, "B1");
    CHECK(jp(out, "$.state == \"decided\""));
    /* the same events again (another batch): no-ops, no dead letters */
    CHECK(apply_batch(GD, 2, e, 3) == 0);
    free(a);
    free(b);
    free(c);
    /* illegal ones: dead letters naming the rule; the legal one still applies */
    a = act_ev("B1", "e5", "rate", GD, ", \"score\": 5");      /* not the accepting node */
    b = act_ev("B1", "e6", "deliver", JS, "");                 /* origin is not by_node */
    char *l = licence("L-b", GD, "valid", 1, "H-b");
    ent_t f[3] = {{"tb.case_event", "B1/e5", a, GD}, {"tb.case_event", "B1/e6", b, GD}, {"tb.licence", "L-b", l, GD}};
    CHECK(apply_batch(GD, 3, f, 3) == 2);
    CHECK(qint0("SELECT count(*) FROM tongban.dead_letters") == dl0 + 2);
    CHECK(qint0("SELECT count(*) FROM tongban.dead_letters WHERE sender = '" GD "' AND seq = 3 AND entry_index = 0"
                " AND reason LIKE 'tb.case_event B1/e5: rate must be by the accepting node " ME "%SQLSTATE 23514'") == 1);
    CHECK(qint0("SELECT count(*) FROM tongban.dead_letters WHERE sender = '" GD "' AND seq = 3 AND entry_index = 1"
                " AND reason LIKE 'tb.case_event B1/e6: origin " GD " is not the authority (by_node = " JS ")%'") == 1);
    OK_CALL("licence_get", 1, "L-b");
    free(a);
    free(b);
    free(l);
}

/* A proxy-mode case through every state, tongban.cases following. */
static void test_full_case(void)
{
    static const struct {
        const char *ev, *action, *by, *extra, *state;
    } steps[] = {
        {"e1", "submit", ME, NULL, "submitted"},
        {"e2", "accept", GD, "", "accepted"},
        {"e3", "start", GD, "", "in_progress"},
        {"e4", "decide", GD, ", \"result\": {\"approved\": true, \"licence\": \"L-full\"}", "decided"},
        {"e5", "deliver", ME, ", \"detail\": \"handed over at the counter\"", "delivered"},
        {"e6", "rate", ME, ", \"score\": 5, \"comment\": \"很好\"", "rated"},
    };
    long long ev0 = events_count();
    const char *v[1] = {"FULL"};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        char *e = steps[i].extra ? act_ev("FULL", steps[i].ev, steps[i].action, steps[i].by, steps[i].extra)
                                 : submit_ev("FULL", "e1", ME, "proxy", "[\"" GD "\"]", "2099-06-30");
        const char *key = ekey("FULL", steps[i].ev);
        if (strcmp(steps[i].by, ME) == 0) {
            OK_CALL("domain_insert", 3, "tb.case_event", key, e);
            char want[64];
            snprintf(want, sizeof want, "%s:U", GD);
            CHECK(dests_are(key, want));
        } else {
            REMOTE_OK("tb.case_event", key, e, steps[i].by);
        }
        free(e);
        OK_CALL("case_get", 1, "FULL");
        char pred[128];
        snprintf(pred, sizeof pred, "$.state == \"%s\"", steps[i].state);
        CHECK_MSG(jp(out, pred), "after %s", steps[i].action);
        char *state = qstrv("SELECT state FROM tongban.cases WHERE case_id = $1", 1, v);
        CHECK(state && strcmp(state, steps[i].state) == 0);
        free(state);
    }
    OK_CALL("case_get", 1, "FULL");
    CHECK(jp(out, "$.case_id == \"FULL\" && $.mode == \"proxy\" && $.accepting == \"" ME "\""
                  " && $.handling.size() == 1 && $.handling[0] == \"" GD "\" && $.deadline == \"2099-06-30\""));
    CHECK(jp(out, "$.overdue == false && $.rating == 5 && $.rating_comment == \"很好\" && $.result.approved == true"));
    CHECK(jp(out, "$.applicant_code == \"11010519491231002X\" && $.applicant_code_type == \"111\""
                  " && $.service_item == \"11100000000013338W3000117001\" && $.applicant_name == \"张三\""));
    CHECK(jp(out, "$.submitted_at like_regex \"^2026-03-01T\" && $.last_event_at > $.submitted_at"
                  " && $.updated_at like_regex \"Z$\""));
    OK_CALL("case_history", 1, "FULL");
    CHECK(jp(out, "$.events.size() == 6 && $.events[0].action == \"submit\" && $.events[5].action == \"rate\""));
    CHECK(jp(out, "$.events[1].action == \"accept\" && $.events[3].action == \"decide\" && $.events[3].seal.alg == \"ed25519\""));
    BAD_CALL(TB_ERR_NOTFOUND, "case_history", "case_history", 1, "NO-SUCH-CASE");
    BAD_CALL(TB_ERR_NOTFOUND, "case_get", "case_get", 1, "NO-SUCH-CASE");
    /* one event per transition */
    CHECK(events_count() == ev0 + 6);
    CHECK(qint0("SELECT count(*) FROM tongban.events WHERE kind = 'case_event' AND key LIKE 'FULL/%' AND op = 'I'") == 6);
    /* a rated case accepts nothing more */
    char *e = act_ev("FULL", "e7", "rate", ME, ", \"score\": 1");
    BAD_CALL(TB_ERR_REFUSED, "rate needs state delivered, case FULL is rated", "domain_insert", 3, "tb.case_event",
             "FULL/e7", e);
    free(e);

    /* history order is (at, event_id), whatever the arrival order */
    e = submit_ev("ORD", "z-submit", ME, "proxy", "[\"" GD "\"]", "2099-06-30");
    OK_CALL("domain_insert", 3, "tb.case_event", "ORD/z-submit", e);
    free(e);
    e = act_ev("ORD", "a-accept", "accept", GD, "");
    REMOTE_OK("tb.case_event", "ORD/a-accept", e, GD);
    free(e);
    OK_CALL("case_history", 1, "ORD");
    CHECK(jp(out, "$.events.size() == 2 && $.events[0].event_id == \"z-submit\" && $.events[1].event_id == \"a-accept\""));
    /* a case id that is a prefix of another does not see its events */
    e = submit_ev("ORD-2", "e1", ME, "proxy", "[\"" GD "\"]", "2099-06-30");
    OK_CALL("domain_insert", 3, "tb.case_event", "ORD-2/e1", e);
    free(e);
    OK_CALL("case_history", 1, "ORD");
    CHECK(jp(out, "$.events.size() == 2"));
}

static void test_overdue(void)
{
    /* yesterday, today and tomorrow in UTC+8 */
    char *yday = qstrv("SELECT ((now() AT TIME ZONE 'Asia/Shanghai')::date - 1)::text", 0, NULL);
    char *today = qstrv("SELECT ((now() AT TIME ZONE 'Asia/Shanghai')::date)::text", 0, NULL);
    char *e = submit_ev("OD-late", "e1", ME, "proxy", "[\"" GD "\"]", yday);
    OK_CALL("domain_insert", 3, "tb.case_event", "OD-late/e1", e);
    CHECK(jp(out, "$.key == \"OD-late/e1\""));
    free(e);
    e = submit_ev("OD-today", "e1", ME, "proxy", "[\"" GD "\"]", today);
    OK_CALL("domain_insert", 3, "tb.case_event", "OD-today/e1", e);
    free(e);
    e = submit_ev("OD-done", "e1", ME, "proxy", "[\"" GD "\"]", yday);
    OK_CALL("domain_insert", 3, "tb.case_event", "OD-done/e1", e);
    free(e);
    e = act_ev("OD-done", "e2", "withdraw", ME, "");
    OK_CALL("domain_insert", 3, "tb.case_event", "OD-done/e2", e);
    free(e);
    OK_CALL("case_get", 1, "OD-late");
    CHECK(jp(out, "$.overdue == true && $.state == \"submitted\""));
    OK_CALL("case_get", 1, "OD-today");
    CHECK(jp(out, "$.overdue == false"));   /* until the end of the day in UTC+8 */
    OK_CALL("case_get", 1, "OD-done");
    CHECK(jp(out, "$.overdue == false && $.state == \"withdrawn\""));
    CHECK(qint0("SELECT count(*) FROM tongban.cases WHERE tongban.case_overdue(deadline, state)") == 1);
    /* at the end of the deadline day, Beijing time */
    CHECK(qint0("SELECT count(*) FROM (SELECT tongban.case_overdue(current_date + 3, 'accepted') AS a,"
                " tongban.case_overdue('2000-01-01', 'in_progress') AS b, tongban.case_overdue('2000-01-01', 'rated') AS c,"
                " tongban.case_overdue('2000-01-01', 'delivered') AS d, tongban.case_overdue('2000-01-01', 'rejected') AS e) x"
                " WHERE NOT a AND b AND NOT c AND NOT d AND NOT e") == 1);
    /* case_list filters */
    OK_CALL("case_list", 2, NULL, "true");
    CHECK(jp(out, "$.cases.size() == 1 && $.cases[0].case_id == \"OD-late\" && $.cases[0].overdue == true"));
    OK_CALL("case_list", 2, "withdrawn", NULL);
    CHECK(jp(out, "$.cases.size() == 2 && $.cases[*].state == \"withdrawn\" && !($.cases[*].state != \"withdrawn\")"));
    OK_CALL("case_list", 2, "withdrawn", "false");
    CHECK(jp(out, "$.cases.size() == 2"));
    OK_CALL("case_list", 2, "submitted", "false");
    CHECK(jp(out, "exists($.cases[*] ? (@.case_id == \"OD-today\")) && !exists($.cases[*] ? (@.case_id == \"OD-late\"))"));
    OK_CALL("case_list", 2, NULL, NULL);
    long long n = qint0("SELECT count(*) FROM tongban.cases");
    char pred[64];
    snprintf(pred, sizeof pred, "$.cases.size() == %lld", n);
    CHECK(jp(out, pred));
    OK_CALL("case_list", 2, "no-such-state", NULL);
    CHECK(jp(out, "$.cases.size() == 0"));
    BAD_CALL(TB_ERR_INVALID, "case_list: invalid input syntax for type boolean", "case_list", 2, NULL, "maybe");
    free(yday);
    free(today);
}

static void test_events(void)
{
    sql("LISTEN tongban_events");
    wait_notify("tongban_events", 0);
    long long top0 = qint0("SELECT coalesce(max(id), 0) FROM tongban.events");
    char top0s[24];
    snprintf(top0s, sizeof top0s, "%lld", top0);
    /* ordinary catalogs: no event, no notification */
    OK_CALL("record_put", 3, "ev-ord", "k", "{}");
    sql("INSERT INTO tongban.records (catalog, key, body) SELECT 'ev-ord', 'n' || g, '{}' FROM generate_series(1, 100) g");
    sql("UPDATE tongban.records SET body = '{\"u\": 1}' WHERE catalog = 'ev-ord'");
    sql("DELETE FROM tongban.records WHERE catalog = 'ev-ord'");
    CHECK(qint0("SELECT coalesce(max(id), 0) FROM tongban.events") == top0);
    CHECK(!wait_notify("tongban_events", 100));
    /* tb.* rows: one event each, insert / update / delete, local or received */
    OK_CALL("domain_put", 3, "tb.supitem", "SI-1",
            "{\"code\": \"SI-1\", \"name\": \"food safety\", \"level\": \"city\", \"owner\": \"" ME "\"}");
    CHECK(wait_notify("tongban_events", 2000));
    OK_CALL("domain_put", 3, "tb.supitem", "SI-1",
            "{\"code\": \"SI-1\", \"name\": \"food safety (2)\", \"level\": \"city\", \"owner\": \"" ME "\"}");
    REMOTE_OK("tb.supitem", "SI-2", "{\"code\": \"SI-2\", \"name\": \"drugs\", \"level\": \"national\", \"owner\": \"" GD "\"}",
              GD);
    sql("DELETE FROM tongban.records WHERE catalog = 'tb.supitem' AND key = 'SI-1'");
    CHECK(qint0("SELECT count(*) FROM tongban.events WHERE id > " "(SELECT coalesce(max(id), 0) FROM tongban.events) - 4"
                " AND kind = 'supitem'") == 4);
    CHECK(wait_notify("tongban_events", 2000));

    /* cursors: unknown = from 0; not durable until acked; never backwards */
    OK_CALL("events_next", 3, "app1", top0s, "2");
    CHECK(jp(out, "$.events.size() == 2 && $.events[0].kind == \"supitem\" && $.events[0].op == \"I\""
                  " && $.events[0].key == \"SI-1\" && $.events[0].origin == \"" ME "\" && $.events[0].body.name == \"food safety\""));
    CHECK(jp(out, "$.events[1].op == \"U\" && $.events[1].body.name == \"food safety (2)\" && $.last_id == $.events[1].id"));
    CHECK(jp(out, "$.events[0].at like_regex \"Z$\" && $.events[0].id < $.events[1].id"));
    char *id2 = jq(out, "$.last_id");
    OK_CALL("events_next", 3, "app1", NULL, "1000");
    CHECK(jp(out, "$.events[0].id == 1 && $.last_id == $.events[last].id"));
    char *last = jq(out, "$.last_id");
    OK_CALL("events_next", 3, "app1", NULL, NULL);     /* max defaults to 100 */
    CHECK(jp(out, "$.events[0].id == 1"));
    OK_CALL("events_ack", 2, "app1", id2);
    char pred[160];
    snprintf(pred, sizeof pred, "$.cursor == \"app1\" && $.last_id == %s", id2);
    CHECK(jp(out, pred));
    OK_CALL("events_next", 3, "app1", NULL, "10");
    snprintf(pred, sizeof pred, "$.events.size() == 2 && $.events[0].id == %s + 1 && $.events[0].origin == \"" GD "\"",
             id2);
    CHECK(jp(out, pred));
    CHECK(jp(out, "$.events[1].op == \"D\" && $.events[1].key == \"SI-1\" && $.events[0].body.level == \"national\""));
    /* never backwards */
    OK_CALL("events_ack", 2, "app1", top0s);
    snprintf(pred, sizeof pred, "$.last_id == %s", id2);
    CHECK(jp(out, pred));
    CHECK(qint0("SELECT last_id FROM tongban.event_cursors WHERE name = 'app1'") == strtoll(id2, NULL, 10));
    OK_CALL("events_ack", 2, "app1", last);
    OK_CALL("events_next", 3, "app1", NULL, "10");
    snprintf(pred, sizeof pred, "$.events.size() == 0 && $.last_id == %s", last);
    CHECK(jp(out, pred));
    /* other cursors are independent; after overrides the durable position */
    OK_CALL("events_next", 3, "app2", NULL, "1");
    CHECK(jp(out, "$.events.size() == 1 && $.events[0].id == 1 && $.last_id == 1"));
    OK_CALL("events_next", 3, "app1", "0", "1");
    CHECK(jp(out, "$.events[0].id == 1"));
    /* errors */
    BAD_CALL(TB_ERR_INVALID, "events_ack: id must be 0..", "events_ack", 2, "app1", "999999999");
    BAD_CALL(TB_ERR_INVALID, "events_ack: id must be 0..", "events_ack", 2, "app1", "-1");
    BAD_CALL(TB_ERR_INVALID, "events_next: max must be 1..1000", "events_next", 3, "app1", NULL, "1001");
    BAD_CALL(TB_ERR_INVALID, "events_next: max must be 1..1000", "events_next", 3, "app1", NULL, "0");
    BAD_CALL(TB_ERR_INVALID, "events_next: cursor is required", "events_next", 3, "", NULL, NULL);
    BAD_CALL(TB_ERR_INVALID, "invalid input syntax for type bigint", "events_next", 3, "app1", "x", NULL);
    /* the cursor survives a new connection (durable) */
    CHECK(qint0("SELECT count(*) FROM tongban.event_cursors WHERE name = 'app1' AND updated_at <= now()") == 1);
    free(id2);
    free(last);
    sql("UNLISTEN tongban_events");
}

static void test_licence_reads(void)
{
    static const char *const ids[] = {"L-f3", "L-f1", "L-f2"};
    for (size_t i = 0; i < 3; i++) {
        char *l = licence(ids[i], ME, "valid", 1, i < 2 ? "91110000HOLDER0001" : "91110000HOLDER0002");
        OK_CALL("domain_insert", 3, "tb.licence", ids[i], l);
        free(l);
    }
    char *l = licence("L-fgd", GD, "valid", 1, "91110000HOLDER0001");
    REMOTE_OK("tb.licence", "L-fgd", l, GD);
    free(l);
    OK_CALL("licence_find", 1, "91110000HOLDER0001");
    CHECK(jp(out, "$.licences.size() == 3 && $.licences[0].identifier == \"L-f1\" && $.licences[1].identifier == \"L-f3\""
                  " && $.licences[2].identifier == \"L-fgd\" && $.licences[2].issuer_node == \"" GD "\""));
    OK_CALL("licence_find", 1, "nobody");
    CHECK(jp(out, "$.licences.size() == 0"));
    /* a new holder moves it */
    l = licence("L-f3", ME, "valid", 2, "91110000HOLDER0002");
    OK_CALL("domain_put", 3, "tb.licence", "L-f3", l);
    free(l);
    OK_CALL("licence_find", 1, "91110000HOLDER0002");
    CHECK(jp(out, "$.licences.size() == 2 && $.licences[0].identifier == \"L-f2\" && $.licences[1].identifier == \"L-f3\""
                  " && $.licences[1].revision == 2"));
    OK_CALL("licence_find", 1, "91110000HOLDER0001");
    CHECK(jp(out, "$.licences.size() == 2"));
    CHECK(qint0("SELECT count(*) FROM tongban.licence_holders h JOIN tongban.records r ON r.catalog = 'tb.licence'"
                " AND r.key = h.identifier WHERE h.holder_code IS DISTINCT FROM r.body->>'holder_code'") == 0);
    CHECK(qint0("SELECT count(*) FROM tongban.licence_holders") ==
          qint0("SELECT count(*) FROM tongban.records WHERE catalog = 'tb.licence'"));
    /* licence_get: the body, updated_at and local_age_s */
    sql("SET tongban.applying = 'on'");
    sql("UPDATE tongban.records SET updated_at = now() - interval '90 seconds' WHERE catalog = 'tb.licence' AND key = 'L-fgd'");
    sql("RESET tongban.applying");
    OK_CALL("licence_get", 1, "L-fgd");
    CHECK(jp(out, "$.identifier == \"L-fgd\" && $.status == \"valid\" && $.local_age_s.type() == \"number\""
                  " && $.local_age_s >= 89 && $.local_age_s < 200 && $.updated_at like_regex \"Z$\" && $.seal.sig == \"AA==\""));
    BAD_CALL(TB_ERR_NOTFOUND, "licence_get", "licence_get", 1, "L-none");
    /* deletes leave the holder table */
    sql("DELETE FROM tongban.records WHERE catalog = 'tb.licence' AND key = 'L-f2'");
    OK_CALL("licence_find", 1, "91110000HOLDER0002");
    CHECK(jp(out, "$.licences.size() == 1 && $.licences[0].identifier == \"L-f3\""));
}

static void test_supervision(void)
{
    OK_CALL("domain_put", 3, "tb.supitem", "SV-b",
            "{\"code\": \"SV-b\", \"name\": \"b\", \"level\": \"county\", \"owner\": \"" ME "\"}");
    OK_CALL("domain_put", 3, "tb.supitem", "SV-a",
            "{\"code\": \"SV-a\", \"name\": \"a\", \"level\": \"county\", \"owner\": \"" ME "\"}");
    REMOTE_OK("tb.supitem", "SV-c", "{\"code\": \"SV-c\", \"level\": \"provincial\", \"owner\": \"" GD "\"}", GD);
    OK_CALL("supitem_list", 1, "county");
    CHECK(jp(out, "$.items.size() == 2 && $.items[0].code == \"SV-a\" && $.items[1].code == \"SV-b\""));
    OK_CALL("supitem_list", 1, NULL);
    long long n = qint0("SELECT count(*) FROM tongban.records WHERE catalog = 'tb.supitem'");
    char pred[64];
    snprintf(pred, sizeof pred, "$.items.size() == %lld", n);
    CHECK(jp(out, pred));
    /* another node's item cannot be changed here */
    BAD_CALL(TB_ERR_REFUSED, "tb.supitem SV-c: the authority cannot change (owner " GD " -> " ME ")", "domain_put", 3,
             "tb.supitem", "SV-c", "{\"code\": \"SV-c\", \"level\": \"provincial\", \"owner\": \"" ME "\"}");

    /* a complaint filed here for 440000, acknowledged there, the receipt back here */
    OK_CALL("domain_insert", 3, "tb.complaint", "CP-1",
            "{\"complaint_id\": \"CP-1\", \"kind\": \"report\", \"subject\": \"s\", \"filed_by\": \"" ME "\","
            " \"region\": \"" GD "\"}");
    OK_CALL("complaint_get", 1, "CP-1");
    CHECK(jp(out, "$.complaint_id == \"CP-1\" && $.kind == \"report\" && $.receipt == null"));
    REMOTE_OK("tb.complaint_receipt", "CP-1",
              "{\"complaint_id\": \"CP-1\", \"by\": \"" GD "\", \"filed_by\": \"" ME "\", \"note\": \"received\"}", GD);
    OK_CALL("complaint_get", 1, "CP-1");
    CHECK(jp(out, "$.receipt.by == \"" GD "\" && $.receipt.note == \"received\" && $.filed_by == \"" ME "\""));
    BAD_CALL(TB_ERR_NOTFOUND, "complaint_get", "complaint_get", 1, "CP-none");
    /* a receipt for a complaint filed here goes back to ... nobody: we filed it */
    OK_CALL("domain_insert", 3, "tb.complaint_receipt", "CP-2",
            "{\"complaint_id\": \"CP-2\", \"by\": \"" ME "\", \"filed_by\": \"" JS "\"}");
    CHECK(dests_are("CP-2", JS ":U"));
}

static void test_connection_lost(void)
{
    sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid() AND backend_type = 'client backend'");
    usleep(200000);
    BAD_CALL(TB_ERR_UNAVAILABLE, "record_get: connection to PostgreSQL lost", "record_get", 2, "c", "k");
    BAD_CALL(TB_ERR_UNAVAILABLE, "connection to PostgreSQL lost", "record_get", 2, "c", "k");
}


/* Attachments (migration 8): tb.chunk rules, routing, status; the byte budget of a batch. */
#define ZERO64 "0000000000000000000000000000000000000000000000000000000000000000"
#define ONE64 "1111111111111111111111111111111111111111111111111111111111111111"
static char *chunk_body(const char *case_id, const char *by, const char *size, const char *count, const char *data)
{
    return fmt("{\"case_id\": \"%s\", \"sha256\": \"" ZERO64 "\", \"index\": 0, \"count\": %s, \"size\": %s,"
               " \"data\": \"%s\", \"by_node\": \"%s\"}", case_id, count, size, data, by);
}

static void test_attachments(void)
{
    const char *key = "C-att/" ZERO64 "/000000";
    char *e = submit_ev("C-att", "e0", ME, "proxy", "[\"" GD "\"]", "2099-01-01");
    OK_CALL("domain_insert", 3, "tb.case_event", "C-att/e0", e);
    free(e);
    OK_CALL("attachment_status", 2, "C-att", ZERO64);
    CHECK(out && jp(out, "$.size == 10 && $.count == 1 && $.have.size() == 0 && $.complete == false"));
    BAD_CALL(TB_ERR_NOTFOUND, "not found", "attachment_status", 2, "C-none", ZERO64);
    BAD_CALL(TB_ERR_REFUSED, "materials name no sha256", "attachment_status", 2, "C-att", ONE64);
    BAD_CALL(TB_ERR_NOTFOUND, "not found", "attachment_put", 5, "C-none", ZERO64, "10", "0", "MDEyMzQ1Njc4OQ==");
    BAD_CALL(TB_ERR_REFUSED, "name no sha256", "attachment_put", 5, "C-att", ONE64, "10", "0", "MDEyMzQ1Njc4OQ==");
    BAD_CALL(TB_ERR_REFUSED, "has size 10, not 11", "attachment_put", 5, "C-att", ZERO64, "11", "0",
             "MDEyMzQ1Njc4OQ==");
    BAD_CALL(TB_ERR_REFUSED, "data has 3 bytes, chunk 0 of 1 must have 10", "attachment_put", 5, "C-att", ZERO64,
             "10", "0", "MDEy");
    BAD_CALL(TB_ERR_REFUSED, "index must be below count", "attachment_put", 5, "C-att", ZERO64, "10", "1",
             "MDEyMzQ1Njc4OQ==");
    long long ev0 = events_count();
    OK_CALL("attachment_put", 5, "C-att", ZERO64, "10", "0", "MDEyMzQ1Njc4OQ==");
    CHECK(out && jp(out, "$.have.size() == 1 && $.have[0] == 0 && $.complete == true"));
    CHECK(dests_are(key, GD ":U"));
    CHECK(events_count() == ev0 + 1);
    CHECK(qint0("SELECT count(*) FROM tongban.events WHERE kind = 'chunk' AND body ? 'data'") == 0);
    OK_CALL("attachment_put", 5, "C-att", ZERO64, "10", "0", "MDEyMzQ1Njc4OQ==");    /* again: a no-op */
    CHECK(events_count() == ev0 + 1);
    BAD_CALL(TB_ERR_REFUSED, "immutable", "attachment_put", 5, "C-att", ZERO64, "10", "0", "OTg3NjU0MzIxMA==");
    OK_CALL("attachment_get", 3, "C-att", ZERO64, "0");
    CHECK(out && jp(out, "$.data == \"MDEyMzQ1Njc4OQ==\" && $.by_node == \"" ME "\" && $.count == 1"));
    BAD_CALL(TB_ERR_NOTFOUND, "not found", "attachment_get", 3, "C-att", ZERO64, "1");
    sql_fails("DELETE FROM tongban.records WHERE catalog = 'tb.chunk'", "23514", "immutable (delete refused)");
    sql_fails("UPDATE tongban.records SET body = body || '{\"data\": \"OTg3NjU0MzIxMA==\"}' WHERE catalog = 'tb.chunk'",
              "23514", "immutable (update refused)");

    /* received: from a party of the case, checked like local writes */
    remote_submit("C-att2", GD, "proxy", "[\"" ME "\"]", "2099-01-01");
    const char *k2 = "C-att2/" ZERO64 "/000000";
    char *b = chunk_body("C-att2", JS, "10", "1", "MDEyMzQ1Njc4OQ==");
    REMOTE_BAD("is no party of case C-att2", "tb.chunk", k2, b, JS);
    free(b);
    b = chunk_body("C-att2", GD, "10", "2", "MDEyMzQ1Njc4OQ==");
    REMOTE_BAD("count must be ceil(size / 262144) = 1", "tb.chunk", k2, b, GD);
    free(b);
    b = chunk_body("C-att2", GD, "67108865", "257", "MDEyMzQ1Njc4OQ==");
    REMOTE_BAD("size must be 1..67108864", "tb.chunk", k2, b, GD);
    free(b);
    b = chunk_body("C-att2", GD, "10", "1", "MDEyMzQ1Njc4OQ==");
    REMOTE_BAD("is not the authority", "tb.chunk", k2, b, JS);
    REMOTE_BAD("key must be", "tb.chunk", "C-att2/x/000000", b, GD);
    REMOTE_OK("tb.chunk", k2, b, GD);
    CHECK(dests_are(k2, ""));                        /* received: not sent on */
    free(b);
    OK_CALL("attachment_status", 2, "C-att2", ZERO64);
    CHECK(out && jp(out, "$.complete == true"));

    /* the byte budget of a batch: 40 KB bodies, at least one row */
    sql("INSERT INTO tongban.outbox (dest, op, catalog, key, body, version, origin, hlc)"
        " SELECT 'budget', 'U', 'misc', 'b' || i, jsonb_build_object('x', (SELECT string_agg(md5(i::text || j::text), '')"
        "   FROM generate_series(1, 1250) j)), 1, '" ME "', 1 FROM generate_series(1, 3) i");
    sql("INSERT INTO tongban.outbox (dest, op, catalog, key, body, version, origin, hlc)"
        " SELECT 'budget-d', 'D', 'misc', 'd' || i, NULL, 1, '" ME "', 1 FROM generate_series(1, 3) i");
    static const struct { size_t budget; const char *dest; size_t want; } bt[] = {
        {65536, "budget", 1}, {100000, "budget", 2}, {1 << 20, "budget", 3}, {1000, "budget", 1}, {65536, "budget-d", 3}};
    for (size_t i = 0; i < sizeof bt / sizeof bt[0]; i++) {
        uint64_t seq;
        tb_outrow_t *rows = NULL;
        size_t n = 0;
        tb_store_set_batch_max_bytes(st, bt[i].budget);
        tb_err_t rc = tb_store_batch_begin(st, bt[i].dest, 1000, &seq, &rows, &n, err, sizeof err);
        CHECK_MSG(rc == TB_OK && n == bt[i].want, "budget %zu %s: rc %d n %zu, want %zu (%s)", bt[i].budget, bt[i].dest,
                  rc, n, bt[i].want, err);
        if (n)
            tb_store_batch_abort(st);
        tb_store_free_outrows(rows, n);
    }
    tb_store_set_batch_max_bytes(st, 0);
    sql("DELETE FROM tongban.outbox WHERE dest IN ('budget', 'budget-d')");
}

int main(void)
{
    const char *conninfo = getenv("TB_TEST_PG_CONNINFO");
    if (!conninfo) {
        fprintf(stderr, "test_store_domain_pg: TB_TEST_PG_CONNINFO not set (run through tests/lib/with-pg.sh)\n");
        return 1;
    }
    db = PQconnectdb(conninfo);
    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "test_store_domain_pg: cannot connect: %s", PQerrorMessage(db));
        PQfinish(db);
        return 1;
    }
    PQsetClientEncoding(db, "UTF8");
    tb_err_t rc = tb_store_open(conninfo, ME, &st, err, sizeof err);
    CHECK_MSG(rc == TB_OK && st, "open: %s", err);
    if (st) {
        test_schema();
        test_call_errors();
        test_records();
        test_routing();
        test_licence_rules();
        test_case_rules();
        test_batches();
        test_full_case();
        test_overdue();
        test_events();
        test_licence_reads();
        test_supervision();
        test_attachments();
        test_connection_lost();
        tb_store_destroy(&st);
    }
    free(out);
    PQfinish(db);
    return tbtest_done("test_store_domain_pg");
}
