/* test_store_pg.c -- node/store.c against a real PostgreSQL (tests/lib/with-pg.sh):
 * migrations, node claim, capture triggers, batches, acks, idempotent LWW apply. */
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "store.h"
#include "tbtest.h"

#define TB_STR2(x) #x
#define TB_STR(x) TB_STR2(x)

static PGconn *db;           /* the test's own connection: plays the integrators' apps */
static const char *conninfo;

/* ---------------- helpers ---------------- */

static void sql(const char *q)
{
    PGresult *r = PQexec(db, q);
    ExecStatusType st = PQresultStatus(r);
    CHECK_MSG(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", q, PQerrorMessage(db));
    PQclear(r);
}

/* Runs q with params; returns the first column of the first row as a
 * malloc'ed string ("<NULL>" for SQL NULL, NULL if no row or error). */
static char *qstr(const char *q, int n, const char *const *vals)
{
    PGresult *r = PQexecParams(db, q, n, NULL, vals, NULL, NULL, 0);
    char *out = NULL;
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "query failed: %s: %s\n", q, PQerrorMessage(db));
    else if (PQntuples(r) > 0)
        out = strdup(PQgetisnull(r, 0, 0) ? "<NULL>" : PQgetvalue(r, 0, 0));
    PQclear(r);
    return out;
}

static long long qint(const char *q, int n, const char *const *vals)
{
    char *s = qstr(q, n, vals);
    long long v = s && strcmp(s, "<NULL>") ? strtoll(s, NULL, 10) : -1;
    free(s);
    return v;
}

static long long qint0(const char *q)
{
    return qint(q, 0, NULL);
}

static long long count_outbox(const char *dest)
{
    const char *v[1] = {dest};
    return qint("SELECT count(*) FROM tongban.outbox WHERE dest = $1", 1, v);
}

/* body::text of records(catalog, key), malloc'ed, or NULL if absent */
static char *body_of(const char *catalog, const char *key)
{
    const char *v[2] = {catalog, key};
    return qstr("SELECT body::text FROM tongban.records WHERE catalog = $1 AND key = $2", 2, v);
}

static int body_is(const char *catalog, const char *key, const char *want)
{
    char *b = body_of(catalog, key);
    int ok = b && want && strcmp(b, want) == 0;
    if (!ok && want)
        fprintf(stderr, "  %s/%s: body %s, want %s\n", catalog, key, b ? b : "(absent)", want);
    free(b);
    return ok;
}

static int exists(const char *catalog, const char *key)
{
    char *b = body_of(catalog, key);
    free(b);
    return b != NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits up to ms for notifications on the store's connection; returns how many. */
static int wait_notifies(tb_store_t *s, int ms)
{
    int total = 0;
    double end = now_s() + ms / 1000.0;
    for (;;) {
        int n = tb_store_drain_notifies(s);
        if (n < 0)
            return -1;
        total += n;
        double left = end - now_s();
        if (total > 0 || left <= 0)
            return total;
        struct pollfd p = {.fd = tb_store_socket(s), .events = POLLIN};
        poll(&p, 1, (int)(left * 1000) + 1);
    }
}

/* ---- building batches with protobuf-c ---- */

typedef struct {
    int del;             /* 0: RecordUpsert, 1: RecordDelete */
    const char *catalog, *key, *body, *origin;
    uint64_t version, hlc;
} ent_t;

static Tongban__Entry *mk_entry(const ent_t *e, size_t idx)
{
    Tongban__Entry *en = malloc(sizeof *en);
    tongban__entry__init(en);
    en->id.len = 16;
    en->id.data = calloc(1, 16);
    memcpy(en->id.data, &idx, sizeof idx);
    if (!e->del) {
        Tongban__RecordUpsert u = TONGBAN__RECORD_UPSERT__INIT;
        u.catalog = (char *)e->catalog;
        u.key = (char *)e->key;
        u.body = (char *)e->body;
        u.origin = (char *)e->origin;
        u.version = e->version;
        u.hlc = e->hlc;
        en->type = TONGBAN__ENTRY_TYPE__RECORD_UPSERT;
        en->payload.len = tongban__record_upsert__get_packed_size(&u);
        en->payload.data = malloc(en->payload.len + 1);
        tongban__record_upsert__pack(&u, en->payload.data);
    } else {
        Tongban__RecordDelete d = TONGBAN__RECORD_DELETE__INIT;
        d.catalog = (char *)e->catalog;
        d.key = (char *)e->key;
        d.origin = (char *)e->origin;
        d.version = e->version;
        d.hlc = e->hlc;
        en->type = TONGBAN__ENTRY_TYPE__RECORD_DELETE;
        en->payload.len = tongban__record_delete__get_packed_size(&d);
        en->payload.data = malloc(en->payload.len + 1);
        tongban__record_delete__pack(&d, en->payload.data);
    }
    return en;
}

static Tongban__Batch *mk_batch(const char *sender, uint64_t seq, const ent_t *e, size_t n)
{
    Tongban__Batch *b = malloc(sizeof *b);
    tongban__batch__init(b);
    b->sender = (char *)sender;
    b->seq = seq;
    b->dest = (char *)"nodeA";
    b->n_entries = n;
    b->entries = calloc(n ? n : 1, sizeof *b->entries);
    for (size_t i = 0; i < n; i++) {
        b->entries[i] = mk_entry(&e[i], i);
        if (e[i].hlc > b->hlc)
            b->hlc = e[i].hlc;
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

/* applies entries as batch (sender, seq); returns rc, *applied through ap */
static tb_err_t apply(tb_store_t *s, const char *sender, uint64_t seq, const ent_t *e, size_t n, int *ap,
                      char *err, size_t errlen)
{
    Tongban__Batch *b = mk_batch(sender, seq, e, n);
    int applied = -1;
    err[0] = '\0';
    tb_err_t rc = tb_store_apply(s, b, &applied, err, errlen);
    free_batch(b);
    if (ap)
        *ap = applied;
    return rc;
}

static tb_err_t routes1(tb_store_t *s, const char *catalog, const char *dest, char *err, size_t errlen)
{
    char to[1][TB_DEST_MAX + 1];
    snprintf(to[0], sizeof to[0], "%s", dest);
    tb_route_config_t r = {.to = to, .to_count = 1};
    snprintf(r.catalog, sizeof r.catalog, "%s", catalog);
    return tb_store_set_routes(s, &r, 1, err, errlen);
}

/* ---------------- tests ---------------- */

static void test_array_literal(void)
{
    const char *small[] = {"a", "b\"c", "d\\e", NULL};
    char *lit = tb_store_text_array(small, 4);
    CHECK(lit && strcmp(lit, "{\"a\",\"b\\\"c\",\"d\\\\e\",NULL}") == 0);
    free(lit);
    lit = tb_store_text_array(NULL, 0);
    CHECK(lit && strcmp(lit, "{}") == 0);
    free(lit);

    /* round trip through PostgreSQL's own array parser */
    const char *v[] = {"plain", "", "NULL", "null", "say \"hi\"", "C:\\dir\\", "\\\"", "{braces},comma",
                       "  spaces  ", "中文 政务服务", "tab\tnew\nline", "'single'", NULL, "end"};
    size_t n = sizeof v / sizeof v[0];
    lit = tb_store_text_array(v, n);
    CHECK(lit != NULL);
    const char *p[1] = {lit};
    PGresult *r = PQexecParams(db,
                               "SELECT x IS NULL, coalesce(x, '') FROM unnest($1::text[]) WITH ORDINALITY AS t (x, o)"
                               " ORDER BY o",
                               1, NULL, p, NULL, NULL, 0);
    CHECK_MSG(PQresultStatus(r) == PGRES_TUPLES_OK, "%s", PQerrorMessage(db));
    CHECK(PQntuples(r) == (int)n);
    for (int i = 0; i < PQntuples(r) && i < (int)n; i++) {
        int isnull = PQgetvalue(r, i, 0)[0] == 't';
        CHECK_MSG(isnull == (v[i] == NULL), "element %d null-ness", i);
        if (v[i])
            CHECK_MSG(strcmp(PQgetvalue(r, i, 1), v[i]) == 0, "element %d: got [%s] want [%s]", i,
                      PQgetvalue(r, i, 1), v[i]);
    }
    PQclear(r);
    free(lit);
}

static void test_open(void)
{
    char err[512] = "";
    tb_store_t *s = NULL;
    tb_err_t rc = tb_store_open(conninfo, "nodeA", &s, err, sizeof err);
    CHECK_MSG(rc == TB_OK && s, "open: %s", err);
    tb_store_destroy(&s);
    CHECK(s == NULL);
    tb_store_destroy(&s); /* NULL-safe */

    rc = tb_store_open(conninfo, "nodeA", &s, err, sizeof err);
    CHECK_MSG(rc == TB_OK && s, "second open: %s", err);
    tb_store_destroy(&s);

    CHECK(qint0("SELECT count(*) FROM tongban.schema_migrations") == TB_SCHEMA_VERSION);
    CHECK(qint0("SELECT max(version) FROM tongban.schema_migrations") == TB_SCHEMA_VERSION);
    CHECK(qint0("SELECT count(*) FROM tongban.schema_migrations WHERE description <> '' AND applied_at <= now()") ==
          TB_SCHEMA_VERSION);
    char *id = qstr("SELECT node_id FROM tongban.node_state", 0, NULL);
    CHECK(id && strcmp(id, "nodeA") == 0);
    free(id);
    CHECK(qint0("SELECT count(*) FROM tongban.node_state") == 1);

    /* another node id on the same database is refused */
    err[0] = '\0';
    rc = tb_store_open(conninfo, "nodeB", &s, err, sizeof err);
    CHECK(rc == TB_ERR_DB && s == NULL);
    CHECK_MSG(strstr(err, "nodeA") && strstr(err, "nodeB"), "err: %s", err);
    CHECK(strchr(err, '\n') == NULL);

    /* a newer schema than we know is refused */
    sql("INSERT INTO tongban.schema_migrations (version, description) VALUES (99, 'from the future')");
    err[0] = '\0';
    rc = tb_store_open(conninfo, "nodeA", &s, err, sizeof err);
    CHECK(rc == TB_ERR_DB && s == NULL);
    CHECK_MSG(strstr(err, "database schema version 99 is newer than this tongban-node knows (" TB_STR(TB_SCHEMA_VERSION) ")"), "err: %s",
              err);
    sql("DELETE FROM tongban.schema_migrations WHERE version = 99");

    /* unreachable server */
    err[0] = '\0';
    rc = tb_store_open("host=/nonexistent-tongban port=1 connect_timeout=2", "nodeA", &s, err, sizeof err);
    CHECK(rc == TB_ERR_UNAVAILABLE && s == NULL);
    CHECK_MSG(strstr(err, "cannot connect") != NULL, "err: %s", err);

    rc = tb_store_open(conninfo, "", &s, err, sizeof err);
    CHECK(rc == TB_ERR_INVALID && s == NULL);
}

static void test_capture(tb_store_t *s)
{
    char err[512] = "";
    sql("DELETE FROM tongban.outbox");
    tb_store_drain_notifies(s);
    CHECK_MSG(routes1(s, "cat1", "B", err, sizeof err) == TB_OK, "%s", err);
    CHECK(qint0("SELECT count(*) FROM tongban.routes") == 1);

    /* unrouted catalog: nothing captured, no wake-up */
    sql("INSERT INTO tongban.records (catalog, key, body) VALUES ('unrouted', 'k', '{}')");
    CHECK(qint0("SELECT count(*) FROM tongban.outbox") == 0);
    CHECK(wait_notifies(s, 200) == 0);

    sql("INSERT INTO tongban.records (catalog, key, body)"
        " SELECT 'cat1', 'k' || g, jsonb_build_object('n', g) FROM generate_series(1, 1000) g");
    CHECK(count_outbox("B") == 1000);
    CHECK(qint0("SELECT count(DISTINCT key) FROM tongban.outbox WHERE op = 'U' AND origin = 'nodeA'"
                " AND body IS NOT NULL AND version = 1 AND hlc > 0") == 1000);
    /* the default hlc is milliseconds << 16, close to now */
    CHECK(qint0("SELECT count(*) FROM tongban.records WHERE catalog = 'cat1'"
                " AND abs((hlc >> 16) - extract(epoch FROM now()) * 1000) < 60000") == 1000);
    CHECK(wait_notifies(s, 5000) >= 1);

    char **dests = NULL;
    size_t nd = 0;
    CHECK(tb_store_outbox_dests(s, &dests, &nd, err, sizeof err) == TB_OK);
    CHECK(nd == 1 && dests && strcmp(dests[0], "B") == 0);
    tb_store_free_strings(dests, nd);

    /* '*' and specific catalogs fan out; a dest covered by '*' is not doubled */
    char to_all[1][TB_DEST_MAX + 1] = {"topic:all"};
    char to_lic[2][TB_DEST_MAX + 1] = {"B", "C"};
    tb_route_config_t r[3] = {{.catalog = "*", .to = to_all, .to_count = 1},
                              {.catalog = "licences", .to = to_lic, .to_count = 2},
                              {.catalog = "x", .to = to_all, .to_count = 1}};
    CHECK_MSG(tb_store_set_routes(s, r, 3, err, sizeof err) == TB_OK, "%s", err);
    CHECK(qint0("SELECT count(*) FROM tongban.routes") == 3);
    sql("DELETE FROM tongban.outbox");
    sql("INSERT INTO tongban.records (catalog, key, body) VALUES ('licences', 'L1', '{\"a\": 1}'),"
        " ('licences', 'L2', '{\"a\": 2}'), ('x', 'X1', '{}'), ('misc', 'M1', '{}')");
    CHECK(count_outbox("B") == 2);
    CHECK(count_outbox("C") == 2);
    CHECK(count_outbox("topic:all") == 4);
    CHECK(tb_store_outbox_dests(s, &dests, &nd, err, sizeof err) == TB_OK);
    CHECK(nd == 3 && strcmp(dests[0], "B") == 0 && strcmp(dests[1], "C") == 0 &&
          strcmp(dests[2], "topic:all") == 0);
    tb_store_free_strings(dests, nd);

    /* UPDATE: hlc and version move forward, origin is ours, 'U' rows */
    CHECK(routes1(s, "cat1", "B", err, sizeof err) == TB_OK);
    sql("DELETE FROM tongban.outbox");
    sql("UPDATE tongban.records SET hlc = 42, origin = 'elsewhere' WHERE catalog = 'cat1' AND key = 'k2'");
    CHECK(qint0("SELECT count(*) FROM tongban.records WHERE catalog = 'cat1' AND key = 'k2'"
                " AND hlc > 42 AND origin = 'nodeA' AND version = 2") == 1);
    sql("DELETE FROM tongban.outbox");
    long long h0 = qint0("SELECT hlc FROM tongban.records WHERE catalog = 'cat1' AND key = 'k1'");
    CHECK(h0 > 42);
    sql("UPDATE tongban.records SET body = '{\"n\": -1}', origin = 'forged'"
        " WHERE catalog = 'cat1' AND key IN ('k1', 'k2')");
    CHECK(qint0("SELECT count(*) FROM tongban.records WHERE catalog = 'cat1' AND key IN ('k1', 'k2')"
                " AND origin = 'nodeA'") == 2);
    CHECK(qint0("SELECT version FROM tongban.records WHERE catalog = 'cat1' AND key = 'k1'") == 2);
    CHECK(qint0("SELECT version FROM tongban.records WHERE catalog = 'cat1' AND key = 'k2'") == 3);
    CHECK(qint0("SELECT hlc FROM tongban.records WHERE catalog = 'cat1' AND key = 'k1'") > h0);
    CHECK(count_outbox("B") == 2);
    CHECK(qint0("SELECT count(*) FROM tongban.outbox o JOIN tongban.records r USING (catalog, key)"
                " WHERE o.op = 'U' AND o.hlc = r.hlc AND o.version = r.version AND o.body = r.body"
                " AND o.origin = 'nodeA'") == 2);
    /* the clock still moves forward when the stored hlc is in the future */
    sql("SET tongban.applying = 'on'");
    sql("UPDATE tongban.records SET hlc = (tongban.hlc_now() + (3600000::bigint << 16))"
        " WHERE catalog = 'cat1' AND key = 'k3'");
    sql("RESET tongban.applying");
    long long hf = qint0("SELECT hlc FROM tongban.records WHERE catalog = 'cat1' AND key = 'k3'");
    sql("UPDATE tongban.records SET body = '{}' WHERE catalog = 'cat1' AND key = 'k3'");
    CHECK(qint0("SELECT hlc FROM tongban.records WHERE catalog = 'cat1' AND key = 'k3'") == hf + 1);
    /* catalog / key cannot be changed in place */
    PGresult *res = PQexec(db, "UPDATE tongban.records SET key = 'renamed' WHERE catalog = 'cat1' AND key = 'k4'");
    CHECK(PQresultStatus(res) == PGRES_FATAL_ERROR);
    PQclear(res);
    res = PQexec(db, "TRUNCATE tongban.records");
    CHECK(PQresultStatus(res) == PGRES_FATAL_ERROR);
    PQclear(res);

    /* DELETE: 'D' rows without body, newer clock, our origin */
    sql("DELETE FROM tongban.outbox");
    long long h5 = qint0("SELECT hlc FROM tongban.records WHERE catalog = 'cat1' AND key = 'k5'");
    sql("DELETE FROM tongban.records WHERE catalog = 'cat1' AND key IN ('k5', 'k6', 'k7')");
    CHECK(qint0("SELECT count(*) FROM tongban.outbox WHERE dest = 'B' AND op = 'D' AND body IS NULL"
                " AND origin = 'nodeA' AND version = 2") == 3);
    CHECK(qint0("SELECT hlc FROM tongban.outbox WHERE key = 'k5'") > h5);
    CHECK(wait_notifies(s, 5000) >= 1);
    sql("DELETE FROM tongban.outbox");
}

static void test_batches(tb_store_t *s)
{
    char err[512] = "";
    tb_outrow_t *rows = NULL;
    size_t n = 0;
    uint64_t seq = 0, seq0;
    sql("DELETE FROM tongban.outbox");
    sql("DELETE FROM tongban.sent_batches");
    CHECK(routes1(s, "cat2", "B", err, sizeof err) == TB_OK);
    sql("INSERT INTO tongban.records (catalog, key, body)"
        " SELECT 'cat2', 'b' || g, jsonb_build_object('g', g) FROM generate_series(1, 24) g");
    sql("DELETE FROM tongban.records WHERE catalog = 'cat2' AND key = 'b1'");
    CHECK(count_outbox("B") == 25);

    /* nothing for another dest: no seq consumed */
    CHECK(tb_store_batch_begin(s, "nobody", 10, &seq, &rows, &n, err, sizeof err) == TB_OK);
    CHECK(n == 0 && rows == NULL);
    long long next = qint0("SELECT next_seq FROM tongban.node_state");

    CHECK_MSG(tb_store_batch_begin(s, "B", 10, &seq, &rows, &n, err, sizeof err) == TB_OK, "%s", err);
    CHECK(n == 10 && rows && seq == (uint64_t)next);
    seq0 = seq;
    int sorted = 1;
    for (size_t i = 1; i < n; i++)
        sorted &= rows[i].outbox_id > rows[i - 1].outbox_id;
    CHECK(sorted);
    CHECK(rows[0].op == 'U' && rows[0].body && strcmp(rows[0].catalog, "cat2") == 0 &&
          strcmp(rows[0].origin, "nodeA") == 0 && rows[0].version == 1 && rows[0].hlc > 0);
    CHECK(strstr(rows[0].body, "\"g\"") != NULL);
    tb_store_batch_abort(s);
    tb_store_free_outrows(rows, n);
    CHECK(count_outbox("B") == 25);
    CHECK(qint0("SELECT next_seq FROM tongban.node_state") == next);

    /* three commits: seq without gaps, outbox drained, signed bytes kept */
    uint8_t blob[3][300];
    size_t blen[3] = {300, 1, 257};
    for (int b = 0; b < 3; b++)
        for (int i = 0; i < 300; i++)
            blob[b][i] = (uint8_t)(i * 7 + b); /* includes 0x00 and 0xff */
    size_t taken = 0, deletes = 0;
    for (int b = 0; b < 3; b++) {
        CHECK_MSG(tb_store_batch_begin(s, "B", 10, &seq, &rows, &n, err, sizeof err) == TB_OK, "%s", err);
        CHECK(seq == seq0 + (uint64_t)b);
        CHECK(n == (b < 2 ? 10u : 5u));
        taken += n;
        for (size_t i = 0; i < n; i++)
            if (rows[i].op == 'D') {
                deletes++;
                CHECK(rows[i].body == NULL && strcmp(rows[i].key, "b1") == 0);
            }
        CHECK_MSG(tb_store_batch_commit(s, seq, "B", rows, n, blob[b], blen[b], err, sizeof err) == TB_OK, "%s",
                  err);
        tb_store_free_outrows(rows, n);
        CHECK(count_outbox("B") == (long long)(25 - taken));
    }
    CHECK(deletes == 1);
    CHECK(tb_store_batch_begin(s, "B", 10, &seq, &rows, &n, err, sizeof err) == TB_OK && n == 0);
    CHECK(qint0("SELECT next_seq FROM tongban.node_state") == (long long)(seq0 + 3));
    /* a commit without begin is refused, not silently run */
    CHECK(tb_store_batch_commit(s, 1, "B", NULL, 0, blob[0], 1, err, sizeof err) == TB_ERR_INVALID);

    tb_sent_t *sent = NULL;
    size_t ns = 0;
    CHECK_MSG(tb_store_unacked(s, &sent, &ns, err, sizeof err) == TB_OK, "%s", err);
    CHECK(ns == 3);
    for (size_t i = 0; i < ns && i < 3; i++) {
        CHECK(sent[i].seq == seq0 + i);
        CHECK(strcmp(sent[i].dest, "B") == 0);
        CHECK(sent[i].len == blen[i] && memcmp(sent[i].bytes, blob[i], blen[i]) == 0);
    }
    tb_store_free_sent(sent, ns);

    CHECK(tb_store_ack(s, seq0 + 1, err, sizeof err) == TB_OK);
    CHECK(tb_store_ack(s, seq0 + 1, err, sizeof err) == TB_OK);
    CHECK(tb_store_ack(s, 999999999, err, sizeof err) == TB_OK);
    CHECK(tb_store_unacked(s, &sent, &ns, err, sizeof err) == TB_OK);
    CHECK(ns == 2 && sent[0].seq == seq0 && sent[1].seq == seq0 + 2);
    tb_store_free_sent(sent, ns);
    CHECK(tb_store_ack(s, seq0, err, sizeof err) == TB_OK);
    CHECK(tb_store_ack(s, seq0 + 2, err, sizeof err) == TB_OK);
    CHECK(tb_store_unacked(s, &sent, &ns, err, sizeof err) == TB_OK && ns == 0 && sent == NULL);
}

#define H ((uint64_t)1700000000000 << 16)

static void test_apply(tb_store_t *s)
{
    char err[512] = "";
    int ap = -1;
    /* route everything: an echo of applied changes would show up here */
    CHECK(routes1(s, "*", "topic:echo", err, sizeof err) == TB_OK);
    sql("DELETE FROM tongban.outbox");

    ent_t e1[] = {{0, "ap", "a", "{\"v\": \"a0\"}", "nodeR", 1, H},
                  {0, "ap", "b", "{\"v\": \"b0\"}", "nodeR", 1, H},
                  {0, "ap", "c", "{\"v\": \"c0\"}", "nodeR", 1, H}};
    CHECK_MSG(apply(s, "nodeR", 1, e1, 3, &ap, err, sizeof err) == TB_OK && ap == 1, "%s", err);
    CHECK(qint0("SELECT count(*) FROM tongban.records WHERE catalog = 'ap' AND origin = 'nodeR'"
                " AND version = 1") == 3);
    const char *hv[1] = {"ap"};
    char hs[32];
    snprintf(hs, sizeof hs, "%" PRIu64, H);
    const char *hv2[2] = {"ap", hs};
    CHECK(qint("SELECT count(*) FROM tongban.records WHERE catalog = $1 AND hlc = $2::bigint", 2, hv2) == 3);
    CHECK(qint("SELECT count(*) FROM tongban.records WHERE catalog = $1", 1, hv) == 3);
    CHECK(qint0("SELECT count(*) FROM tongban.outbox") == 0);
    CHECK(qint0("SELECT count(*) FROM tongban.inbox WHERE sender = 'nodeR' AND seq = 1") == 1);

    /* same (sender, seq) again: a no-op */
    ent_t e1b[] = {{0, "ap", "a", "{\"v\": \"replayed\"}", "nodeR", 9, H + 99}};
    CHECK(apply(s, "nodeR", 1, e1b, 1, &ap, err, sizeof err) == TB_OK && ap == 0);
    CHECK(body_is("ap", "a", "{\"v\": \"a0\"}"));
    CHECK(qint0("SELECT count(*) FROM tongban.inbox") == 1);

    /* LWW: older loses, newer wins, tie broken by origin */
    ent_t e2[] = {{0, "ap", "a", "{\"v\": \"older\"}", "nodeR", 2, H - 1}};
    CHECK(apply(s, "nodeR", 2, e2, 1, &ap, err, sizeof err) == TB_OK && ap == 1);
    CHECK(body_is("ap", "a", "{\"v\": \"a0\"}"));
    ent_t e3[] = {{0, "ap", "a", "{\"v\": \"newer\"}", "nodeR", 2, H + 1}};
    CHECK(apply(s, "nodeR", 3, e3, 1, &ap, err, sizeof err) == TB_OK && ap == 1);
    CHECK(body_is("ap", "a", "{\"v\": \"newer\"}"));
    CHECK(qint0("SELECT version FROM tongban.records WHERE catalog = 'ap' AND key = 'a'") == 2);
    ent_t e4[] = {{0, "ap", "b", "{\"v\": \"tie-lower-origin\"}", "nodeQ", 2, H}};
    CHECK(apply(s, "nodeQ", 1, e4, 1, &ap, err, sizeof err) == TB_OK && ap == 1);
    CHECK(body_is("ap", "b", "{\"v\": \"b0\"}"));
    ent_t e5[] = {{0, "ap", "b", "{\"v\": \"tie-higher-origin\"}", "nodeS", 2, H}};
    CHECK(apply(s, "nodeS", 1, e5, 1, &ap, err, sizeof err) == TB_OK && ap == 1);
    CHECK(body_is("ap", "b", "{\"v\": \"tie-higher-origin\"}"));
    CHECK(qint0("SELECT count(*) FROM tongban.records WHERE catalog = 'ap' AND key = 'b' AND origin = 'nodeS'") == 1);

    /* deletes: older doesn't remove, newer (or equal) does; unknown key is fine */
    ent_t e6[] = {{1, "ap", "c", NULL, "nodeR", 2, H - 1}, {1, "ap", "nosuch", NULL, "nodeR", 1, H}};
    CHECK(apply(s, "nodeR", 4, e6, 2, &ap, err, sizeof err) == TB_OK && ap == 1);
    CHECK(exists("ap", "c"));
    ent_t e7[] = {{1, "ap", "c", NULL, "nodeR", 2, H + 5}};
    CHECK(apply(s, "nodeR", 5, e7, 1, &ap, err, sizeof err) == TB_OK && ap == 1);
    CHECK(!exists("ap", "c"));

    /* several upserts of one key in one batch: the highest hlc wins, then the last */
    ent_t e8[] = {{0, "ap", "d", "{\"v\": \"first\"}", "nodeR", 1, H + 1},
                  {0, "ap", "d", "{\"v\": \"second\"}", "nodeR", 2, H + 2},
                  {0, "ap", "f", "{\"v\": \"newer\"}", "nodeR", 2, H + 3},
                  {0, "ap", "f", "{\"v\": \"older\"}", "nodeR", 1, H + 2},
                  {0, "ap", "e", "{\"v\": \"e1\"}", "nodeR", 1, H},
                  {0, "ap", "e", "{\"v\": \"e2\"}", "nodeR", 1, H}};
    CHECK_MSG(apply(s, "nodeR", 6, e8, 6, &ap, err, sizeof err) == TB_OK && ap == 1, "%s", err);
    CHECK(body_is("ap", "d", "{\"v\": \"second\"}"));
    CHECK(body_is("ap", "f", "{\"v\": \"newer\"}"));
    CHECK(body_is("ap", "e", "{\"v\": \"e2\"}"));

    /* runs of mixed types are applied in order */
    ent_t e9[] = {{0, "ap", "g", "{\"v\": \"g1\"}", "nodeR", 1, H + 10},
                  {1, "ap", "g", NULL, "nodeR", 2, H + 11},
                  {0, "ap", "g", "{\"v\": \"g3\"}", "nodeR", 3, H + 12},
                  {0, "ap", "h", "{\"v\": \"h1\"}", "nodeR", 1, H + 10},
                  {1, "ap", "h", NULL, "nodeR", 2, H + 11}};
    CHECK_MSG(apply(s, "nodeR", 7, e9, 5, &ap, err, sizeof err) == TB_OK && ap == 1, "%s", err);
    CHECK(body_is("ap", "g", "{\"v\": \"g3\"}"));
    CHECK(!exists("ap", "h"));
    CHECK(qint0("SELECT count(*) FROM tongban.outbox") == 0);

    /* invalid JSON: TB_ERR_DB, nothing applied, connection still usable */
    ent_t e10[] = {{0, "ap", "i", "{\"v\": \"fine\"}", "nodeR", 1, H}, {0, "ap", "j", "{not json", "nodeR", 1, H}};
    tb_err_t rc = apply(s, "nodeR", 8, e10, 2, &ap, err, sizeof err);
    CHECK_MSG(rc == TB_ERR_DB && ap == 0, "rc %d", rc);
    CHECK_MSG(strstr(err, "json") && strstr(err, "nodeR/8"), "err: %s", err);
    CHECK(strchr(err, '\n') == NULL);
    CHECK(!exists("ap", "i"));
    CHECK(qint0("SELECT count(*) FROM tongban.inbox WHERE sender = 'nodeR' AND seq = 8") == 0);
    e10[1].body = "{\"v\": \"fixed\"}";
    CHECK_MSG(apply(s, "nodeR", 8, e10, 2, &ap, err, sizeof err) == TB_OK && ap == 1, "%s", err);
    CHECK(body_is("ap", "j", "{\"v\": \"fixed\"}"));

    /* unknown entry type / undecodable payload: TB_ERR_PROTO naming the entry */
    Tongban__Batch *b = mk_batch("nodeR", 9, e1, 3);
    b->entries[1]->type = TONGBAN__ENTRY_TYPE__LICENCE_ISSUE;
    rc = tb_store_apply(s, b, &ap, err, sizeof err);
    CHECK_MSG(rc == TB_ERR_PROTO && ap == 0 && strstr(err, "entry 1"), "rc %d err %s", rc, err);
    b->entries[1]->type = TONGBAN__ENTRY_TYPE__RECORD_UPSERT;
    memset(b->entries[2]->payload.data, 0xff, b->entries[2]->payload.len);
    rc = tb_store_apply(s, b, &ap, err, sizeof err);
    CHECK_MSG(rc == TB_ERR_PROTO && ap == 0 && strstr(err, "entry 2"), "rc %d err %s", rc, err);
    free_batch(b);
    CHECK(qint0("SELECT count(*) FROM tongban.inbox WHERE sender = 'nodeR' AND seq = 9") == 0);
    ent_t e11[] = {{0, "ap", "k", "{}", "nodeR", 1, (uint64_t)1 << 63}};
    CHECK(apply(s, "nodeR", 9, e11, 1, &ap, err, sizeof err) == TB_ERR_PROTO);
    ent_t e12[] = {{0, "ap", "k", "{}", "nodeR", 1, H}};
    CHECK_MSG(apply(s, "nodeR", 9, e12, 1, &ap, err, sizeof err) == TB_OK && ap == 1, "%s", err);
    CHECK(apply(s, "", 1, e12, 1, &ap, err, sizeof err) == TB_ERR_PROTO);

    /* odd characters survive byte-identical, in keys and in bodies */
    static const char *odd_key[] = {"quote\"d", "back\\slash", "{braces},comma", "中文键", "NULL", ""};
    static const char *odd_body[] = {"{\"s\": \"say \\\"hi\\\"\"}",
                                     "{\"p\": \"C:\\\\dir\\\\file\\\\\"}",
                                     "{\"名称\": \"北京市 政务服务 一网通办\"}",
                                     "{\"a\": \"{}[],\", \"b\": [1, {\"y\": null}, true]}",
                                     "[\"NULL\", null, \"\\\\\\\"\"]",
                                     "\"just a string\""};
    ent_t e13[6];
    for (int i = 0; i < 6; i++)
        e13[i] = (ent_t){0, "odd\"cat", odd_key[i], odd_body[i], "nodeR", 1, H};
    CHECK_MSG(apply(s, "nodeR", 10, e13, 6, &ap, err, sizeof err) == TB_OK && ap == 1, "%s", err);
    for (int i = 0; i < 6; i++)
        CHECK_MSG(body_is("odd\"cat", odd_key[i], odd_body[i]), "odd body %d", i);
    CHECK(qint0("SELECT count(*) FROM tongban.outbox") == 0);

    /* a later local update of an applied record is captured with a newer clock */
    sql("UPDATE tongban.records SET body = '{\"v\": \"local\"}' WHERE catalog = 'ap' AND key = 'a'");
    CHECK(qint0("SELECT count(*) FROM tongban.outbox WHERE dest = 'topic:echo' AND key = 'a' AND origin = 'nodeA'"
                " AND version = 3") == 1);
    CHECK(qint("SELECT count(*) FROM tongban.records WHERE catalog = $1 AND key = 'a' AND hlc > $2::bigint", 2,
               hv2) == 1);

    /* the odd bodies also leave the sender byte-identical (outbox body::text) */
    sql("DELETE FROM tongban.outbox");
    for (int i = 0; i < 6; i++) {
        const char *v[2] = {odd_key[i], odd_body[i]};
        PGresult *r = PQexecParams(db, "INSERT INTO tongban.records (catalog, key, body) VALUES ('odd2', $1, $2)", 2,
                                   NULL, v, NULL, NULL, 0);
        CHECK_MSG(PQresultStatus(r) == PGRES_COMMAND_OK, "%s", PQerrorMessage(db));
        PQclear(r);
    }
    tb_outrow_t *rows = NULL;
    size_t n = 0;
    uint64_t seq = 0;
    CHECK(tb_store_batch_begin(s, "topic:echo", 100, &seq, &rows, &n, err, sizeof err) == TB_OK && n == 6);
    for (size_t i = 0; i < n && i < 6; i++)
        CHECK_MSG(strcmp(rows[i].key, odd_key[i]) == 0 && strcmp(rows[i].body, odd_body[i]) == 0, "row %zu", i);
    tb_store_batch_abort(s);
    tb_store_free_outrows(rows, n);
    sql("DELETE FROM tongban.outbox");
}

/* Several nodes' first start on one empty database at once: the advisory
 * lock serialises the migrations (without it CREATE SCHEMA races). */
static void test_concurrent_first_start(void)
{
    enum { KIDS = 4 };
    sql("DROP DATABASE IF EXISTS tbrace");
    sql("CREATE DATABASE tbrace");
    char ci[1200];
    snprintf(ci, sizeof ci, "%s dbname=tbrace", conninfo);
    fflush(NULL);
    pid_t kids[KIDS];
    for (int i = 0; i < KIDS; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            char err[512] = "";
            tb_store_t *s = NULL;
            tb_err_t rc = tb_store_open(ci, "nodeA", &s, err, sizeof err);
            if (rc != TB_OK)
                fprintf(stderr, "child %d: %s\n", i, err);
            tb_store_destroy(&s);
            _exit(rc == TB_OK ? 0 : 1);
        }
    }
    int ok = 0;
    for (int i = 0; i < KIDS; i++) {
        int st = 0;
        if (kids[i] > 0 && waitpid(kids[i], &st, 0) == kids[i] && WIFEXITED(st) && WEXITSTATUS(st) == 0)
            ok++;
    }
    CHECK(ok == KIDS);
    PGconn *c = PQconnectdb(ci);
    PGresult *r = PQexec(c, "SELECT count(*) FROM tongban.schema_migrations");
    CHECK(PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), TB_STR(TB_SCHEMA_VERSION)) == 0);
    PQclear(r);
    PQfinish(c);
    sql("DROP DATABASE tbrace");
}

/* A connection the server dropped is reported as TB_ERR_UNAVAILABLE. */
static void test_connection_lost(void)
{
    char err[512] = "";
    tb_store_t *s = NULL;
    CHECK_MSG(tb_store_open(conninfo, "nodeA", &s, err, sizeof err) == TB_OK, "%s", err);
    if (!s)
        return;
    sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid() AND backend_type = 'client backend'");
    usleep(200000);
    tb_err_t rc = tb_store_ack(s, 1, err, sizeof err);
    CHECK_MSG(rc == TB_ERR_UNAVAILABLE, "rc %d err %s", rc, err);
    CHECK(err[0] != '\0' && strchr(err, '\n') == NULL);
    CHECK(tb_store_drain_notifies(s) == -1);
    int ap = 0;
    ent_t e[] = {{0, "ap", "z", "{}", "nodeR", 1, H}};
    CHECK(apply(s, "nodeR", 100, e, 1, &ap, err, sizeof err) == TB_ERR_UNAVAILABLE && ap == 0);
    tb_store_destroy(&s);
}

/* ---------------- rough figures (printed, not asserted) ---------------- */

static char *body512(int i)
{
    char *b = malloc(513);
    int n = snprintf(b, 513, "{\"n\": %d, \"pad\": \"", i);
    memset(b + n, 'x', (size_t)(512 - n - 2));
    memcpy(b + 510, "\"}", 3);
    return b;
}

static void bench(tb_store_t *s)
{
    char err[512] = "";
    int ap;
    enum { BATCHES = 10, PER = 1000 };
    sql("DELETE FROM tongban.outbox");
    CHECK(tb_store_set_routes(s, NULL, 0, err, sizeof err) == TB_OK);

    /* apply: 10 batches x 1,000 upserts of 512-byte bodies */
    char **bodies = malloc(PER * sizeof *bodies);
    char(*keys)[24] = malloc(PER * sizeof *keys);
    for (int i = 0; i < PER; i++)
        bodies[i] = body512(i);
    Tongban__Batch *bs[BATCHES];
    ent_t *e = malloc(PER * sizeof *e);
    for (int b = 0; b < BATCHES; b++) {
        for (int i = 0; i < PER; i++) {
            snprintf(keys[i], sizeof keys[i], "k%d-%d", b, i);
            e[i] = (ent_t){0, "bench", keys[i], bodies[i], "nodeR", 1, H + (uint64_t)i};
        }
        bs[b] = mk_batch("nodeBench", (uint64_t)b + 1, e, PER);
    }
    double t0 = now_s();
    int okc = 0;
    for (int b = 0; b < BATCHES; b++)
        okc += tb_store_apply(s, bs[b], &ap, err, sizeof err) == TB_OK && ap == 1;
    double t1 = now_s();
    CHECK_MSG(okc == BATCHES, "%s", err);
    CHECK(qint0("SELECT count(*) FROM tongban.records WHERE catalog = 'bench'") == BATCHES * PER);
    printf("bench: apply %d x %d upserts (512 B): %.0f rows/s\n", BATCHES, PER, BATCHES * PER / (t1 - t0));
    for (int b = 0; b < BATCHES; b++)
        free_batch(bs[b]);
    free(e);

    /* capture: 1,000-row INSERT statements sent by a client, alternately
     * without (catalog not routed) and with capture; one warm-up each */
    const char *ks[PER];
    char(*ckeys)[24] = malloc(PER * sizeof *ckeys);
    char *ba = tb_store_text_array((const char *const *)bodies, PER);
    CHECK(routes1(s, "load", "B", err, sizeof err) == TB_OK);
    double t[2] = {0, 0};
    for (int b = -2; b < 2 * BATCHES; b++) {
        int capture = (b + 2) % 2;
        for (int i = 0; i < PER; i++) {
            snprintf(ckeys[i], sizeof ckeys[i], "r%d-%d", b, i);
            ks[i] = ckeys[i];
        }
        char *ka = tb_store_text_array(ks, PER);
        const char *v[3] = {capture ? "load" : "noroute", ka, ba};
        double a = now_s();
        PGresult *r = PQexecParams(db,
                                   "INSERT INTO tongban.records (catalog, key, body)"
                                   " SELECT $1, k, b::jsonb FROM unnest($2::text[], $3::text[]) AS u (k, b)",
                                   3, NULL, v, NULL, NULL, 0);
        if (b >= 0)
            t[capture] += now_s() - a;
        CHECK_MSG(PQresultStatus(r) == PGRES_COMMAND_OK, "%s", PQerrorMessage(db));
        PQclear(r);
        free(ka);
    }
    free(ba);
    printf("bench: loader %d x %d-row INSERT (512 B) without capture: %.0f rows/s\n", BATCHES, PER,
           BATCHES * PER / t[0]);
    printf("bench: loader %d x %d-row INSERT (512 B) with capture:    %.0f rows/s\n", BATCHES, PER,
           BATCHES * PER / t[1]);
    sql("DELETE FROM tongban.outbox WHERE key LIKE 'r-1-%'");
    CHECK(count_outbox("B") == BATCHES * PER);
    tb_store_drain_notifies(s);

    /* drain: batch_begin + commit of 1,000 rows with a batch-sized blob */
    uint8_t *blob = calloc(1, 560 * 1024);
    t0 = now_s();
    size_t total = 0;
    for (;;) {
        tb_outrow_t *rows;
        size_t n;
        uint64_t seq;
        if (tb_store_batch_begin(s, "B", PER, &seq, &rows, &n, err, sizeof err) != TB_OK || n == 0)
            break;
        if (tb_store_batch_commit(s, seq, "B", rows, n, blob, 560 * 1024, err, sizeof err) != TB_OK) {
            tb_store_free_outrows(rows, n);
            break;
        }
        total += n;
        tb_store_free_outrows(rows, n);
    }
    t1 = now_s();
    CHECK_MSG(total == BATCHES * PER, "drained %zu: %s", total, err);
    printf("bench: outbox drain (begin + commit, 1,000 rows + 560 KiB blob): %.0f rows/s\n", total / (t1 - t0));
    free(blob);
    free(ckeys);
    for (int i = 0; i < PER; i++)
        free(bodies[i]);
    free(bodies);
    free(keys);
}

int main(void)
{
    conninfo = getenv("TB_TEST_PG_CONNINFO");
    if (!conninfo) {
        fprintf(stderr, "test_store_pg: TB_TEST_PG_CONNINFO not set (run through tests/lib/with-pg.sh)\n");
        return 1;
    }
    db = PQconnectdb(conninfo);
    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "test_store_pg: cannot connect: %s", PQerrorMessage(db));
        PQfinish(db);
        return 1;
    }
    PQsetClientEncoding(db, "UTF8");

    test_array_literal();
    test_open();

    char err[512] = "";
    tb_store_t *s = NULL;
    tb_err_t rc = tb_store_open(conninfo, "nodeA", &s, err, sizeof err);
    CHECK_MSG(rc == TB_OK && s, "open: %s", err);
    if (s) {
        CHECK(tb_store_socket(s) >= 0);
        test_capture(s);
        test_batches(s);
        test_apply(s);
        if (!getenv("TB_TEST_NO_BENCH"))
            bench(s);
        CHECK(tb_store_drain_notifies(s) >= 0);
        tb_store_destroy(&s);
    }
    test_concurrent_first_start();
    test_connection_lost();
    PQfinish(db);
    return tbtest_done("test_store_pg");
}
