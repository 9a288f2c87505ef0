/* test_store_pg.c -- the node store (node/store*.c) against a real PostgreSQL (tests/lib/with-pg.sh):
 * migrations, node claim, capture triggers, batches, acks, idempotent LWW apply,
 * and node/store_refused.c: parked deliveries. */
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
#include "store_refused.h"
#include "store_schema.h"
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

/* Applies b with its serialised bytes standing in for the signed batch
 * (tb_store_apply_batch stores them verbatim for dead letters). */
static tb_err_t apply_b(tb_store_t *s, const Tongban__Batch *b, int *ap, size_t *dead, char *err, size_t errlen)
{
    size_t len = tongban__batch__get_packed_size(b);
    uint8_t *buf = malloc(len + 1);
    tongban__batch__pack(b, buf);
    int applied = -1;
    size_t d = 99;
    err[0] = '\0';
    tb_err_t rc = tb_store_apply_batch(s, b, buf, len, &applied, &d, err, errlen);
    free(buf);
    if (ap)
        *ap = applied;
    if (dead)
        *dead = d;
    return rc;
}

/* applies entries as batch (sender, seq); returns rc, *applied through ap,
 * the number of dead-lettered entries through dead */
static tb_err_t apply_d(tb_store_t *s, const char *sender, uint64_t seq, const ent_t *e, size_t n, int *ap,
                        size_t *dead, char *err, size_t errlen)
{
    Tongban__Batch *b = mk_batch(sender, seq, e, n);
    tb_err_t rc = apply_b(s, b, ap, dead, err, errlen);
    free_batch(b);
    return rc;
}

/* the same, for batches that must apply without dead letters */
static tb_err_t apply(tb_store_t *s, const char *sender, uint64_t seq, const ent_t *e, size_t n, int *ap,
                      char *err, size_t errlen)
{
    size_t dead = 0;
    tb_err_t rc = apply_d(s, sender, seq, e, n, ap, &dead, err, errlen);
    CHECK_MSG(rc != TB_OK || dead == 0, "%s/%" PRIu64 ": %zu unexpected dead letters", sender, seq, dead);
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

    /* invalid JSON: that entry is a dead letter, the rest applies (more in test_dead_letters) */
    ent_t e10[] = {{0, "ap", "i", "{\"v\": \"fine\"}", "nodeR", 1, H}, {0, "ap", "j", "{not json", "nodeR", 1, H}};
    size_t dead = 99;
    tb_err_t rc = apply_d(s, "nodeR", 8, e10, 2, &ap, &dead, err, sizeof err);
    CHECK_MSG(rc == TB_OK && ap == 1 && dead == 1, "rc %d ap %d dead %zu err %s", rc, ap, dead, err);
    CHECK(body_is("ap", "i", "{\"v\": \"fine\"}"));
    CHECK(!exists("ap", "j"));
    CHECK(qint0("SELECT count(*) FROM tongban.inbox WHERE sender = 'nodeR' AND seq = 8") == 1);
    CHECK(qint0("SELECT count(*) FROM tongban.dead_letters WHERE sender = 'nodeR' AND seq = 8 AND entry_index = 1"
                " AND reason LIKE '%json%'") == 1);
    /* a redelivery is a duplicate: no second dead letter */
    CHECK(apply_d(s, "nodeR", 8, e10, 2, &ap, &dead, err, sizeof err) == TB_OK && ap == 0 && dead == 0);
    CHECK(qint0("SELECT count(*) FROM tongban.dead_letters WHERE sender = 'nodeR' AND seq = 8") == 1);

    /* unknown entry type / undecodable payload through the old entry point:
     * dead letters (the batch kept without signed bytes), the rest applies */
    ent_t e9b[] = {{0, "ap", "k1", "{}", "nodeR", 1, H}, {0, "ap", "k2", "{}", "nodeR", 1, H},
                   {0, "ap", "k3", "{}", "nodeR", 1, H}};
    Tongban__Batch *b = mk_batch("nodeR", 9, e9b, 3);
    b->entries[1]->type = TONGBAN__ENTRY_TYPE__LICENCE_ISSUE;
    memset(b->entries[2]->payload.data, 0xff, b->entries[2]->payload.len);
    rc = tb_store_apply(s, b, &ap, err, sizeof err);
    CHECK_MSG(rc == TB_OK && ap == 1, "rc %d err %s", rc, err);
    free_batch(b);
    CHECK(exists("ap", "k1") && !exists("ap", "k2") && !exists("ap", "k3"));
    CHECK(qint0("SELECT count(*) FROM tongban.dead_letters WHERE sender = 'nodeR' AND seq = 9") == 2);
    CHECK(qint0("SELECT count(*) FROM tongban.dead_letter_batches WHERE sender = 'nodeR' AND seq = 9"
                " AND signed IS NULL") == 1);
    ent_t e11[] = {{0, "ap", "k", "{}", "nodeR", 1, (uint64_t)1 << 63}, {0, "ap", "k4", "{}", "nodeR", 1, H}};
    CHECK(apply_d(s, "nodeR", 20, e11, 2, &ap, &dead, err, sizeof err) == TB_OK && ap == 1 && dead == 1);
    CHECK(!exists("ap", "k") && exists("ap", "k4"));
    ent_t e12[] = {{0, "ap", "k", "{}", "nodeR", 1, H}};
    CHECK_MSG(apply(s, "nodeR", 21, e12, 1, &ap, err, sizeof err) == TB_OK && ap == 1, "%s", err);
    CHECK(apply(s, "", 1, e12, 1, &ap, err, sizeof err) == TB_ERR_PROTO);
    sql("DELETE FROM tongban.dead_letters");
    sql("DELETE FROM tongban.dead_letter_batches");

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

/* tb_store_apply_batches: several batches in one transaction, duplicates
 * (in the inbox or repeated in the group) skipped, dead letters kept, and
 * the fallback to batch-by-batch when PostgreSQL refuses an entry. */
static void test_apply_group(tb_store_t *s)
{
    ent_t e1[] = {{0, "gr", "k1", "{\"v\": 1}", "nodeG", 1, H}};
    ent_t e2[] = {{0, "gr", "k1", "{\"v\": 2}", "nodeG", 2, H + 1}, {0, "gr", "k2", "{\"v\": 2}", "nodeG", 1, H + 1}};
    ent_t e3[] = {{1, "gr", "k2", NULL, "nodeG", 2, H + 2}, {0, "gr", "k3", "{\"v\": 3}", "nodeG", 1, H + 2}};
    Tongban__Batch *b[4] = {mk_batch("nodeG", 1, e1, 1), mk_batch("nodeG", 2, e2, 2), mk_batch("nodeG", 1, e1, 1),
                            mk_batch("nodeG", 3, e3, 2)};
    /* an undecodable entry in batch 3: a dead letter, the group still applies */
    b[3]->entries[1]->payload.data[0] ^= 0xff;
    b[3]->entries[1]->payload.len = 3;
    tb_apply_item_t it[4];
    memset(it, 0, sizeof it);
    for (int i = 0; i < 4; i++)
        it[i].batch = b[i];
    long long inbox0 = qint0("SELECT count(*) FROM tongban.inbox");
    CHECK_MSG(tb_store_apply_batches(s, it, 4) == TB_OK, "%s", it[0].err);
    CHECK(it[0].rc == TB_OK && it[0].applied == 1 && it[0].dead == 0);
    CHECK(it[1].rc == TB_OK && it[1].applied == 1 && it[1].dead == 0);
    CHECK(it[2].rc == TB_OK && it[2].applied == 0);          /* repeated in the group */
    CHECK_MSG(it[3].rc == TB_OK && it[3].applied == 1 && it[3].dead == 1, "%s dead=%zu", it[3].err, it[3].dead);
    CHECK(qint0("SELECT count(*) FROM tongban.inbox") == inbox0 + 3);
    CHECK(body_is("gr", "k1", "{\"v\": 2}"));
    CHECK(!exists("gr", "k2"));
    CHECK(!exists("gr", "k3"));
    CHECK(qint0("SELECT count(*) FROM tongban.dead_letters WHERE sender = 'nodeG' AND seq = 3") == 1);
    /* the same group again: all duplicates, nothing changes */
    CHECK(tb_store_apply_batches(s, it, 4) == TB_OK);
    CHECK(it[0].applied == 0 && it[1].applied == 0 && it[2].applied == 0 && it[3].applied == 0);
    CHECK(qint0("SELECT count(*) FROM tongban.inbox") == inbox0 + 3);
    for (int i = 0; i < 4; i++)
        free_batch(b[i]);

    /* PostgreSQL refuses an entry (invalid JSON): batch by batch, with savepoints */
    ent_t f1[] = {{0, "gr", "m1", "{\"v\": 1}", "nodeG", 1, H}};
    ent_t f2[] = {{0, "gr", "m2", "{not json", "nodeG", 1, H}, {0, "gr", "m3", "{\"v\": 3}", "nodeG", 1, H}};
    ent_t f3[] = {{0, "gr", "m4", "{\"v\": 4}", "nodeG", 1, H}};
    Tongban__Batch *c[3] = {mk_batch("nodeG", 10, f1, 1), mk_batch("nodeG", 11, f2, 2), mk_batch("nodeG", 12, f3, 1)};
    tb_apply_item_t jt[3];
    memset(jt, 0, sizeof jt);
    for (int i = 0; i < 3; i++)
        jt[i].batch = c[i];
    CHECK_MSG(tb_store_apply_batches(s, jt, 3) == TB_OK, "%s", jt[0].err);
    CHECK(jt[0].rc == TB_OK && jt[0].applied == 1 && jt[0].dead == 0);
    CHECK(jt[1].rc == TB_OK && jt[1].applied == 1 && jt[1].dead == 1);
    CHECK(jt[2].rc == TB_OK && jt[2].applied == 1 && jt[2].dead == 0);
    CHECK(exists("gr", "m1") && !exists("gr", "m2") && exists("gr", "m3") && exists("gr", "m4"));
    CHECK(qint0("SELECT count(*) FROM tongban.inbox WHERE sender = 'nodeG' AND seq BETWEEN 10 AND 12") == 3);
    for (int i = 0; i < 3; i++)
        free_batch(c[i]);

    /* a malformed item fails alone */
    ent_t g1[] = {{0, "gr", "n1", "{\"v\": 1}", "nodeG", 1, H}};
    Tongban__Batch *d[2] = {mk_batch("nodeG", 20, g1, 1), mk_batch("", 21, g1, 1)};
    tb_apply_item_t kt[2];
    memset(kt, 0, sizeof kt);
    kt[0].batch = d[0];
    kt[1].batch = d[1];
    CHECK(tb_store_apply_batches(s, kt, 2) == TB_ERR_PROTO);
    CHECK(kt[0].rc == TB_OK && kt[0].applied == 1 && kt[1].rc == TB_ERR_PROTO && kt[1].err[0]);
    CHECK(exists("gr", "n1"));
    for (int i = 0; i < 2; i++)
        free_batch(d[i]);
}

static void test_tombstones(tb_store_t *s)
{
    char err[512] = "";
    int ap = -1;
    CHECK(routes1(s, "tomb", "B", err, sizeof err) == TB_OK);
    sql("DELETE FROM tongban.outbox");
    sql("DELETE FROM tongban.tombstones");

    /* a local DELETE leaves a tombstone -- routed or not -- with the 'D' row's clock */
    sql("INSERT INTO tongban.records (catalog, key, body) VALUES ('tomb', 'l1', '{}'), ('notrouted', 'u1', '{}')");
    sql("DELETE FROM tongban.outbox");
    sql("DELETE FROM tongban.records WHERE (catalog, key) IN (('tomb', 'l1'), ('notrouted', 'u1'))");
    CHECK(qint0("SELECT count(*) FROM tongban.tombstones t JOIN tongban.outbox o USING (catalog, key)"
                " WHERE t.catalog = 'tomb' AND t.key = 'l1' AND o.op = 'D' AND o.hlc = t.hlc"
                " AND o.version = t.version AND t.version = 2 AND t.origin = 'nodeA' AND o.origin = 'nodeA'") == 1);
    CHECK(qint0("SELECT count(*) FROM tongban.tombstones WHERE catalog = 'notrouted' AND key = 'u1'"
                " AND origin = 'nodeA' AND version = 2") == 1);
    CHECK(qint0("SELECT count(*) FROM tongban.outbox") == 1);
    sql("DELETE FROM tongban.outbox");

    /* remote: a delete newer than an upsert that arrives after it -- the key stays deleted */
    ent_t a1[] = {{0, "tomb", "r1", "{\"v\": 1}", "nodeR", 1, H + 100}};
    CHECK_MSG(apply(s, "nodeT", 1, a1, 1, &ap, err, sizeof err) == TB_OK && ap == 1, "%s", err);
    CHECK(exists("tomb", "r1"));
    ent_t a2[] = {{1, "tomb", "r1", NULL, "nodeR", 3, H + 300}};
    CHECK_MSG(apply(s, "nodeT", 2, a2, 1, &ap, err, sizeof err) == TB_OK && ap == 1, "%s", err);
    CHECK(!exists("tomb", "r1"));
    char h300[32];
    snprintf(h300, sizeof h300, "%" PRIu64, H + 300);
    const char *v300[1] = {h300};
    CHECK(qint("SELECT count(*) FROM tongban.tombstones WHERE catalog = 'tomb' AND key = 'r1'"
               " AND hlc = $1::bigint AND version = 3 AND origin = 'nodeR'", 1, v300) == 1);
    ent_t a3[] = {{0, "tomb", "r1", "{\"v\": \"late\"}", "nodeR", 2, H + 200}};
    CHECK_MSG(apply(s, "nodeT", 3, a3, 1, &ap, err, sizeof err) == TB_OK && ap == 1, "%s", err);
    CHECK(!exists("tomb", "r1"));
    /* a tie goes to the delete */
    ent_t a3b[] = {{0, "tomb", "r1", "{\"v\": \"tie\"}", "nodeR", 2, H + 300}};
    CHECK(apply(s, "nodeT", 4, a3b, 1, &ap, err, sizeof err) == TB_OK && ap == 1);
    CHECK(!exists("tomb", "r1"));
    /* an older delete does not move the tombstone back */
    ent_t a4[] = {{1, "tomb", "r1", NULL, "nodeQ", 2, H + 250}};
    CHECK(apply(s, "nodeT", 5, a4, 1, &ap, err, sizeof err) == TB_OK && ap == 1);
    CHECK(qint("SELECT count(*) FROM tongban.tombstones WHERE catalog = 'tomb' AND key = 'r1'"
               " AND hlc = $1::bigint AND origin = 'nodeR'", 1, v300) == 1);
    /* a delete of an absent key is remembered too: an older upsert after it
     * (here in the same batch) stays out */
    ent_t a5[] = {{1, "tomb", "r3", NULL, "nodeR", 1, H + 500}, {0, "tomb", "r3", "{}", "nodeR", 1, H + 400}};
    CHECK(apply(s, "nodeT", 6, a5, 2, &ap, err, sizeof err) == TB_OK && ap == 1);
    CHECK(!exists("tomb", "r3"));
    CHECK(qint0("SELECT count(*) FROM tongban.tombstones WHERE catalog = 'tomb' AND key = 'r3'") == 1);

    /* a newer upsert after the delete wins (the tombstone, now dominated by
     * the record, stays until purged) */
    ent_t a6[] = {{0, "tomb", "r1", "{\"v\": \"reborn\"}", "nodeR", 4, H + 400}};
    CHECK(apply(s, "nodeT", 7, a6, 1, &ap, err, sizeof err) == TB_OK && ap == 1);
    CHECK(body_is("tomb", "r1", "{\"v\": \"reborn\"}"));
    CHECK(qint0("SELECT count(*) FROM tongban.records WHERE catalog = 'tomb' AND key = 'r1' AND version = 4") == 1);
    /* equal hlc, bytewise greater origin: the upsert is newer */
    ent_t a6b[] = {{1, "tomb", "r6", NULL, "nodeR", 1, H + 600}, {0, "tomb", "r6", "{}", "nodeS", 1, H + 600}};
    CHECK(apply(s, "nodeT", 8, a6b, 2, &ap, err, sizeof err) == TB_OK && ap == 1);
    CHECK(exists("tomb", "r6"));
    /* a delete older than the record changes nothing, not even the tombstone */
    ent_t a7[] = {{1, "tomb", "r1", NULL, "nodeR", 3, H + 350}, {1, "tomb", "r6", NULL, "nodeQ", 3, H + 550}};
    CHECK(apply(s, "nodeT", 9, a7, 2, &ap, err, sizeof err) == TB_OK && ap == 1);
    CHECK(exists("tomb", "r1") && exists("tomb", "r6"));
    CHECK(qint("SELECT count(*) FROM tongban.tombstones WHERE catalog = 'tomb' AND key = 'r1'"
               " AND hlc = $1::bigint AND origin = 'nodeR'", 1, v300) == 1);
    /* an upsert newer than the tombstone but older than the record loses to the record */
    ent_t a7b[] = {{0, "tomb", "r1", "{\"v\": \"between\"}", "nodeR", 4, H + 350}};
    CHECK(apply(s, "nodeT", 14, a7b, 1, &ap, err, sizeof err) == TB_OK && ap == 1);
    CHECK(body_is("tomb", "r1", "{\"v\": \"reborn\"}"));
    CHECK(qint0("SELECT count(*) FROM tongban.outbox") == 0); /* nothing applied is captured */

    /* local re-insert after a remote delete whose clock is an hour ahead:
     * the insert is moved past the tombstone, the tombstone dropped */
    long long fut = qint0("SELECT tongban.hlc_now() + (3600000::bigint << 16)");
    ent_t a8[] = {{1, "tomb", "r4", NULL, "nodeR", 7, (uint64_t)fut}};
    CHECK(apply(s, "nodeT", 10, a8, 1, &ap, err, sizeof err) == TB_OK && ap == 1);
    char fs[32];
    snprintf(fs, sizeof fs, "%lld", fut);
    const char *vf[1] = {fs};
    CHECK(qint("SELECT count(*) FROM tongban.tombstones WHERE catalog = 'tomb' AND key = 'r4' AND hlc = $1::bigint",
               1, vf) == 1);
    sql("INSERT INTO tongban.records (catalog, key, body)"
        " VALUES ('tomb', 'r4', '{\"v\": \"local\"}'), ('tomb', 'r5', '{}')");
    CHECK(qint("SELECT count(*) FROM tongban.records WHERE catalog = 'tomb' AND key = 'r4'"
               " AND hlc = $1::bigint + 1 AND version = 8 AND origin = 'nodeA'", 1, vf) == 1);
    CHECK(qint0("SELECT count(*) FROM tongban.tombstones WHERE catalog = 'tomb' AND key = 'r4'") == 0);
    CHECK(qint("SELECT count(*) FROM tongban.outbox WHERE dest = 'B' AND op = 'U' AND key = 'r4'"
               " AND hlc = $1::bigint + 1 AND version = 8 AND origin = 'nodeA' AND body = '{\"v\": \"local\"}'",
               1, vf) == 1);
    /* the other row of the statement, without a tombstone, is captured as usual */
    CHECK(qint0("SELECT count(*) FROM tongban.outbox o JOIN tongban.records r USING (catalog, key)"
                " WHERE o.key = 'r5' AND o.hlc = r.hlc AND o.version = 1 AND r.version = 1") == 1);
    CHECK(qint0("SELECT count(*) FROM tongban.outbox") == 2);
    /* and the remote delete, redelivered or re-sent, no longer wins */
    ent_t a8b[] = {{1, "tomb", "r4", NULL, "nodeR", 7, (uint64_t)fut}};
    CHECK(apply(s, "nodeT", 11, a8b, 1, &ap, err, sizeof err) == TB_OK && ap == 1);
    CHECK(body_is("tomb", "r4", "{\"v\": \"local\"}"));

    /* the ordinary case: a remote delete stamped now, a local re-insert after it */
    long long now_h = qint0("SELECT tongban.hlc_now()");
    ent_t a9[] = {{1, "tomb", "r5", NULL, "nodeR", 2, (uint64_t)now_h + 1000}};
    CHECK(apply(s, "nodeT", 12, a9, 1, &ap, err, sizeof err) == TB_OK && ap == 1);
    CHECK(!exists("tomb", "r5"));
    sql("DELETE FROM tongban.outbox");
    sql("INSERT INTO tongban.records (catalog, key, body) VALUES ('tomb', 'r5', '{\"again\": true}')");
    char ns[32];
    snprintf(ns, sizeof ns, "%lld", now_h + 1000);
    const char *vn[1] = {ns};
    CHECK(qint("SELECT count(*) FROM tongban.outbox WHERE key = 'r5' AND op = 'U' AND hlc > $1::bigint", 1, vn) == 1);
    CHECK(qint0("SELECT count(*) FROM tongban.tombstones WHERE catalog = 'tomb' AND key = 'r5'") == 0);
    /* a local re-insert while a stale tombstone is older: the clock is left alone */
    sql("INSERT INTO tongban.tombstones (catalog, key, version, origin, hlc) VALUES ('tomb', 'r7', 1, 'nodeR', 5)");
    sql("DELETE FROM tongban.outbox");
    sql("INSERT INTO tongban.records (catalog, key, body) VALUES ('tomb', 'r7', '{}')");
    CHECK(qint0("SELECT count(*) FROM tongban.outbox o JOIN tongban.records r USING (catalog, key)"
                " WHERE o.key = 'r7' AND o.hlc = r.hlc AND r.hlc > 5 AND r.version = 2") == 1);
    CHECK(qint0("SELECT count(*) FROM tongban.tombstones WHERE catalog = 'tomb' AND key = 'r7'") == 0);

    /* purge: only tombstones older than the limit */
    sql("UPDATE tongban.tombstones SET deleted_at = now() - interval '2 hours' WHERE catalog = 'tomb' AND key = 'r3'");
    long long before = qint0("SELECT count(*) FROM tongban.tombstones");
    CHECK(before >= 3);
    int64_t purged = -1;
    CHECK_MSG(tb_store_purge_tombstones(s, 3600, &purged, err, sizeof err) == TB_OK && purged == 1, "%s", err);
    CHECK(qint0("SELECT count(*) FROM tongban.tombstones WHERE key = 'r3'") == 0);
    CHECK(qint0("SELECT count(*) FROM tongban.tombstones") == before - 1);
    CHECK(tb_store_purge_tombstones(s, -1, &purged, err, sizeof err) == TB_ERR_INVALID);
    /* once purged, the delete is forgotten: a late older upsert is applied */
    ent_t a10[] = {{0, "tomb", "r3", "{\"v\": \"resurrected\"}", "nodeR", 1, H + 400}};
    CHECK(apply(s, "nodeT", 13, a10, 1, &ap, err, sizeof err) == TB_OK && ap == 1);
    CHECK(exists("tomb", "r3"));
    sql("DELETE FROM tongban.outbox");
}

static long long dl_id(const char *sender, int seq, int idx)
{
    char q[256];
    snprintf(q, sizeof q,
             "SELECT id FROM tongban.dead_letters WHERE sender = '%s' AND seq = %d AND entry_index = %d", sender,
             seq, idx);
    return qint0(q);
}

/* 1 if dead letter (sender, seq, idx) has status and its reason contains every needle */
static int dl_is(const char *sender, int seq, int idx, const char *status, const char *needle1, const char *needle2)
{
    char q[256];
    snprintf(q, sizeof q,
             "SELECT status || ' ' || reason FROM tongban.dead_letters"
             " WHERE sender = '%s' AND seq = %d AND entry_index = %d",
             sender, seq, idx);
    char *r = qstr(q, 0, NULL);
    int ok = r && strncmp(r, status, strlen(status)) == 0 && r[strlen(status)] == ' ' &&
             (!needle1 || strstr(r, needle1)) && (!needle2 || strstr(r, needle2));
    if (!ok)
        fprintf(stderr, "  dead letter %s/%d/%d: %s\n", sender, seq, idx, r ? r : "(absent)");
    free(r);
    return ok;
}

static void test_dead_letters(tb_store_t *s)
{
    char err[512] = "";
    int ap = -1;
    size_t dead = 99;
    tb_err_t rc;
    CHECK(routes1(s, "*", "topic:echo", err, sizeof err) == TB_OK);
    sql("DELETE FROM tongban.outbox");
    sql("DELETE FROM tongban.dead_letters");
    sql("DELETE FROM tongban.dead_letter_batches");

    /* 100 entries: upserts 0..49, deletes 50..59 (of keys 0..9), upserts
     * 60..99 of which 77's body is not JSON: 99 take effect, 1 dead letter */
    enum { N = 100 };
    ent_t e[N];
    char keys[N][16], bodies[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "d%d", i < 50 || i >= 60 ? i : i - 50);
        snprintf(bodies[i], sizeof bodies[i], "{\"i\": %d}", i);
        e[i] = (ent_t){i >= 50 && i < 60, "dl", keys[i], i >= 50 && i < 60 ? NULL : bodies[i], "nodeR", 1,
                       H + (i >= 50 && i < 60 ? 20u : 10u)};
    }
    e[77].body = "{not json";
    Tongban__Batch *b = mk_batch("nodeD", 1, e, N);
    size_t plen = tongban__batch__get_packed_size(b);
    uint8_t *packed = malloc(plen);
    tongban__batch__pack(b, packed);
    double t0 = now_s();
    rc = apply_b(s, b, &ap, &dead, err, sizeof err);
    double t1 = now_s();
    CHECK_MSG(rc == TB_OK && ap == 1 && dead == 1, "rc %d ap %d dead %zu err %s", rc, ap, dead, err);
    CHECK(qint0("SELECT count(*) FROM tongban.records WHERE catalog = 'dl'") == 40 + 39);
    CHECK(qint0("SELECT count(*) FROM tongban.tombstones WHERE catalog = 'dl'") == 10);
    CHECK(!exists("dl", "d77") && body_is("dl", "d76", "{\"i\": 76}") && body_is("dl", "d99", "{\"i\": 99}"));
    CHECK(dl_is("nodeD", 1, 77, "pending", "invalid input syntax for type json", "SQLSTATE 22P02"));
    CHECK(qint0("SELECT count(*) FROM tongban.dead_letters WHERE sender = 'nodeD'") == 1);
    CHECK(qint0("SELECT count(*) FROM tongban.inbox WHERE sender = 'nodeD' AND seq = 1") == 1);
    CHECK(qint0("SELECT count(*) FROM tongban.outbox") == 0);
    /* the entry as received and the signed original, byte for byte */
    {
        const char *vals[3] = {(const char *)b->entries[77]->payload.data, (const char *)b->entries[77]->id.data,
                               (const char *)packed};
        int lens[3] = {(int)b->entries[77]->payload.len, (int)b->entries[77]->id.len, (int)plen};
        int fmts[3] = {1, 1, 1};
        PGresult *r = PQexecParams(db,
                                   "SELECT d.payload = $1 AND d.entry_id = $2 AND d.entry_type = 1 AND b.signed = $3"
                                   "  FROM tongban.dead_letters d"
                                   "  JOIN tongban.dead_letter_batches b USING (sender, seq)"
                                   " WHERE d.sender = 'nodeD' AND d.seq = 1",
                                   3, NULL, vals, lens, fmts, 0);
        CHECK_MSG(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't', "%s",
                  PQerrorMessage(db));
        PQclear(r);
    }
    printf("bench: apply 100 entries with 1 invalid (fast pass + entry-by-entry fallback): %.1f ms\n",
           (t1 - t0) * 1000);
    free(packed);
    free_batch(b);
    /* a redelivery is a duplicate: nothing more */
    CHECK(apply_d(s, "nodeD", 1, e, N, &ap, &dead, err, sizeof err) == TB_OK && ap == 0 && dead == 0);
    CHECK(qint0("SELECT count(*) FROM tongban.dead_letters") == 1);

    /* a CHECK and a unique violation: the refused entries only */
    sql("ALTER TABLE tongban.records ADD CONSTRAINT dl_chk1 CHECK (catalog <> 'dlc' OR NOT body ? 'bad')");
    sql("CREATE UNIQUE INDEX dl_uniq ON tongban.records ((body->>'u')) WHERE catalog = 'dlu'");
    ent_t c[] = {{0, "dlc", "c0", "{\"ok\": 0}", "nodeR", 1, H},   {0, "dlc", "c1", "{\"bad\": 1}", "nodeR", 1, H},
                 {0, "dlc", "c2", "{\"ok\": 2}", "nodeR", 1, H},   {1, "dl", "d20", NULL, "nodeR", 2, H + 20},
                 {0, "dlu", "u1", "{\"u\": \"x\"}", "nodeR", 1, H}, {0, "dlu", "u2", "{\"u\": \"x\"}", "nodeR", 1, H},
                 {0, "dlu", "u3", "{\"u\": \"y\"}", "nodeR", 1, H}};
    rc = apply_d(s, "nodeD", 2, c, 7, &ap, &dead, err, sizeof err);
    CHECK_MSG(rc == TB_OK && ap == 1 && dead == 2, "rc %d ap %d dead %zu err %s", rc, ap, dead, err);
    CHECK(exists("dlc", "c0") && !exists("dlc", "c1") && exists("dlc", "c2") && !exists("dl", "d20"));
    CHECK(exists("dlu", "u1") && !exists("dlu", "u2") && exists("dlu", "u3"));
    CHECK(dl_is("nodeD", 2, 1, "pending", "dl_chk1", "SQLSTATE 23514"));
    CHECK(dl_is("nodeD", 2, 5, "pending", "dl_uniq", "SQLSTATE 23505"));

    /* retry of a still-bad entry: kept, failed, reason updated */
    sql("ALTER TABLE tongban.records DROP CONSTRAINT dl_chk1");
    sql("ALTER TABLE tongban.records ADD CONSTRAINT dl_chk2 CHECK (catalog <> 'dlc' OR NOT body ? 'bad')");
    long long id1 = dl_id("nodeD", 2, 1);
    CHECK(id1 > 0);
    err[0] = '\0';
    rc = tb_store_retry_dead_letter(s, id1, err, sizeof err);
    CHECK_MSG(rc == TB_ERR_DB && strstr(err, "dl_chk2"), "rc %d err %s", rc, err);
    CHECK(dl_is("nodeD", 2, 1, "failed", "dl_chk2", "SQLSTATE 23514"));
    CHECK(qint0("SELECT count(*) FROM tongban.dead_letters WHERE reason LIKE '%dl_chk1%'") == 0);
    CHECK(qint0("SELECT count(*) FROM tongban.dead_letters WHERE retries = 1 AND retried_at IS NOT NULL") == 1);
    CHECK(!exists("dlc", "c1"));
    /* cause fixed: the retry applies it and marks it applied */
    sql("ALTER TABLE tongban.records DROP CONSTRAINT dl_chk2");
    rc = tb_store_retry_dead_letter(s, id1, err, sizeof err);
    CHECK_MSG(rc == TB_OK, "rc %d err %s", rc, err);
    CHECK(body_is("dlc", "c1", "{\"bad\": 1}"));
    CHECK(dl_is("nodeD", 2, 1, "applied", "dl_chk2", NULL));
    CHECK(tb_store_retry_dead_letter(s, id1, err, sizeof err) == TB_OK); /* already applied: no-op */
    CHECK(qint0("SELECT retries FROM tongban.dead_letters WHERE status = 'applied'") == 2);
    CHECK(qint0("SELECT count(*) FROM tongban.outbox") == 0); /* a retry is an apply: not captured */
    /* a retried entry overtaken meanwhile by a newer change: LWW, applied as a no-op */
    sql("DROP INDEX tongban.dl_uniq");
    ent_t c2[] = {{0, "dlu", "u2", "{\"u\": \"newer\"}", "nodeR", 2, H + 1000}};
    CHECK(apply(s, "nodeD", 3, c2, 1, &ap, err, sizeof err) == TB_OK && ap == 1);
    rc = tb_store_retry_dead_letter(s, dl_id("nodeD", 2, 5), err, sizeof err);
    CHECK_MSG(rc == TB_OK, "rc %d err %s", rc, err);
    CHECK(body_is("dlu", "u2", "{\"u\": \"newer\"}"));
    CHECK(dl_is("nodeD", 2, 5, "applied", NULL, NULL));
    CHECK(tb_store_retry_dead_letter(s, 987654321, err, sizeof err) == TB_ERR_NOTFOUND);

    /* undecodable payload, unknown entry types, clock out of range: dead letters, the rest applies */
    ent_t x[6];
    char xk[6][8];
    for (int i = 0; i < 6; i++) {
        snprintf(xk[i], sizeof xk[i], "x%d", i);
        x[i] = (ent_t){0, "dlx", xk[i], "{}", "nodeR", 1, i == 5 ? (uint64_t)1 << 63 : H};
    }
    b = mk_batch("nodeD", 4, x, 6);
    b->entries[1]->type = TONGBAN__ENTRY_TYPE__LICENCE_ISSUE;
    b->entries[2]->type = (Tongban__EntryType)77;
    memset(b->entries[3]->payload.data, 0xff, b->entries[3]->payload.len);
    rc = apply_b(s, b, &ap, &dead, err, sizeof err);
    free_batch(b);
    CHECK_MSG(rc == TB_OK && ap == 1 && dead == 4, "rc %d ap %d dead %zu err %s", rc, ap, dead, err);
    CHECK(exists("dlx", "x0") && exists("dlx", "x4"));
    CHECK(qint0("SELECT count(*) FROM tongban.records WHERE catalog = 'dlx'") == 2);
    CHECK(dl_is("nodeD", 4, 1, "pending", "unsupported entry type 3 (LICENCE_ISSUE)", NULL));
    CHECK(dl_is("nodeD", 4, 2, "pending", "unsupported entry type 77 (unknown)", NULL));
    CHECK(dl_is("nodeD", 4, 3, "pending", "undecodable RecordUpsert payload", NULL));
    CHECK(dl_is("nodeD", 4, 5, "pending", "beyond INT64_MAX", NULL));
    rc = tb_store_retry_dead_letter(s, dl_id("nodeD", 4, 1), err, sizeof err);
    CHECK_MSG(rc == TB_ERR_PROTO && strstr(err, "LICENCE_ISSUE"), "rc %d err %s", rc, err);
    CHECK(dl_is("nodeD", 4, 1, "failed", "LICENCE_ISSUE", NULL));

    /* the operator's list: pending and failed, oldest first */
    tb_dead_t *v = NULL;
    size_t n = 0;
    CHECK_MSG(tb_store_dead_letters(s, &v, &n, err, sizeof err) == TB_OK, "%s", err);
    CHECK_MSG(n == 5, "n %zu", n); /* 1/77, 4/1..3, 4/5 (2/1 and 2/5 are applied) */
    int seen = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK(i == 0 || v[i].id > v[i - 1].id);
        CHECK(strcmp(v[i].sender, "nodeD") == 0 && v[i].reason && *v[i].reason);
        CHECK(v[i].created_at && strlen(v[i].created_at) == 24 && v[i].created_at[10] == 'T' &&
              v[i].created_at[23] == 'Z');
        if (v[i].seq == 4 && v[i].entry_index == 1) {
            seen++;
            CHECK(strcmp(v[i].entry_type, "LICENCE_ISSUE") == 0 && v[i].entry_type_value == 3);
            CHECK(strcmp(v[i].status, "failed") == 0 && v[i].retries == 1 && v[i].retried_at);
        }
        if (v[i].seq == 4 && v[i].entry_index == 2) {
            seen++;
            CHECK(strcmp(v[i].entry_type, "77") == 0 && strcmp(v[i].status, "pending") == 0 && !v[i].retried_at);
        }
        if (v[i].seq == 1) {
            seen++;
            CHECK(v[i].entry_index == 77 && strcmp(v[i].entry_type, "RECORD_UPSERT") == 0);
        }
    }
    CHECK(seen == 3);
    tb_store_free_dead(v, n);

    /* a whole batch refused: it still counts as applied, every entry dead */
    sql("ALTER TABLE tongban.records ADD CONSTRAINT dl_chk3 CHECK (catalog <> 'dly')");
    ent_t y[] = {{0, "dly", "y1", "{}", "nodeR", 1, H}, {0, "dly", "y2", "{}", "nodeR", 1, H}};
    CHECK(apply_d(s, "nodeD", 5, y, 2, &ap, &dead, err, sizeof err) == TB_OK && ap == 1 && dead == 2);
    sql("ALTER TABLE tongban.records DROP CONSTRAINT dl_chk3");
    CHECK(qint0("SELECT count(*) FROM tongban.records WHERE catalog = 'dly'") == 0);

    /* a transient error (lock timeout) is not a dead letter: the batch fails whole */
    sql("ALTER ROLE CURRENT_USER SET lock_timeout = '300ms'");
    tb_store_t *s2 = NULL;
    CHECK_MSG(tb_store_open(conninfo, "nodeA", &s2, err, sizeof err) == TB_OK, "%s", err);
    sql("ALTER ROLE CURRENT_USER RESET lock_timeout");
    if (s2) {
        sql("BEGIN");
        sql("SELECT 1 FROM tongban.records WHERE catalog = 'dlx' AND key = 'x0' FOR UPDATE");
        ent_t lk[] = {{0, "dlx", "x9", "{}", "nodeR", 1, H}, {0, "dlx", "x0", "{\"v\": 1}", "nodeR", 1, H + 5}};
        rc = apply_d(s2, "nodeD", 6, lk, 2, &ap, &dead, err, sizeof err);
        sql("ROLLBACK");
        CHECK_MSG(rc == TB_ERR_DB && ap == 0 && strstr(err, "55P03"), "rc %d err %s", rc, err);
        CHECK(qint0("SELECT count(*) FROM tongban.inbox WHERE sender = 'nodeD' AND seq = 6") == 0);
        CHECK(qint0("SELECT count(*) FROM tongban.dead_letters WHERE seq = 6") == 0);
        CHECK(!exists("dlx", "x9"));
        CHECK(apply(s2, "nodeD", 6, lk, 2, &ap, err, sizeof err) == TB_OK && ap == 1);
        CHECK(body_is("dlx", "x0", "{\"v\": 1}"));
        tb_store_destroy(&s2);
    }
    sql("DELETE FROM tongban.outbox");
}

static void test_snapshot(tb_store_t *s)
{
    char err[512] = "";
    int64_t rows = -1;
    sql("DELETE FROM tongban.outbox");
    sql("DELETE FROM tongban.tombstones");
    tb_store_drain_notifies(s);
    /* bulk set-up without capture */
    sql("SET tongban.applying = 'on'");
    sql("INSERT INTO tongban.records (catalog, key, body, version, origin, hlc)"
        " SELECT 'snap', 's' || g, jsonb_build_object('g', g, 'pad', repeat('x', 200)), 1 + g % 5,"
        "        CASE WHEN g % 3 = 0 THEN 'nodeR' ELSE 'nodeA' END, tongban.hlc_now() - g"
        "   FROM generate_series(1, 200000) g");
    sql("INSERT INTO tongban.records (catalog, key, body)"
        " SELECT 'snap2', 't' || g, '{}' FROM generate_series(1, 100) g");
    sql("INSERT INTO tongban.tombstones (catalog, key, version, origin, hlc)"
        " SELECT 'snap', 'gone' || g, 3, 'nodeR', 1000 + g FROM generate_series(1, 1000) g");
    /* a stale tombstone of a live key is not sent */
    sql("INSERT INTO tongban.tombstones (catalog, key, version, origin, hlc) VALUES ('snap', 's1', 1, 'nodeR', 5)");
    sql("INSERT INTO tongban.tombstones (catalog, key, version, origin, hlc)"
        " SELECT 'snap2', 'gone' || g, 1, 'nodeQ', g FROM generate_series(1, 10) g");
    sql("RESET tongban.applying");
    sql("VACUUM ANALYZE tongban.records"); /* settled, as a node's records are */

    double t0 = now_s();
    tb_err_t rc = tb_store_snapshot_enqueue(s, "snap", "topic:resync", &rows, err, sizeof err);
    double t1 = now_s();
    CHECK_MSG(rc == TB_OK && rows == 201000, "rc %d rows %" PRId64 " err %s", rc, rows, err);
    printf("bench: snapshot enqueue of 200,000 records + 1,000 tombstones: %.2f s, %.0f rows/s\n", t1 - t0,
           (double)rows / (t1 - t0));
    CHECK(count_outbox("topic:resync") == 201000);
    CHECK(qint0("SELECT count(*) FROM tongban.outbox") == 201000);
    CHECK(qint0("SELECT count(*) FROM tongban.outbox o JOIN tongban.records r USING (catalog, key)"
                " WHERE o.dest = 'topic:resync' AND o.op = 'U' AND o.body = r.body AND o.version = r.version"
                " AND o.origin = r.origin AND o.hlc = r.hlc") == 200000);
    CHECK(qint0("SELECT count(*) FROM tongban.outbox o JOIN tongban.tombstones t USING (catalog, key)"
                " WHERE o.op = 'D' AND o.body IS NULL AND o.version = t.version AND o.origin = t.origin"
                " AND o.hlc = t.hlc") == 1000);
    CHECK(qint0("SELECT count(*) FROM tongban.outbox WHERE key = 's1'") == 1);
    CHECK(qint0("SELECT count(DISTINCT id) FROM tongban.outbox WHERE catalog = 'snap'") == 201000);
    CHECK(wait_notifies(s, 2000) >= 1);

    /* "*": every catalog */
    sql("DELETE FROM tongban.outbox");
    long long want = qint0("SELECT (SELECT count(*) FROM tongban.records) + (SELECT count(*) FROM tongban.tombstones t"
                           " WHERE NOT EXISTS (SELECT 1 FROM tongban.records r"
                           "                    WHERE (r.catalog, r.key) = (t.catalog, t.key)))");
    CHECK(want > 201110);
    rc = tb_store_snapshot_enqueue(s, "*", "C", &rows, err, sizeof err);
    CHECK_MSG(rc == TB_OK && rows == want, "rows %" PRId64 " want %lld err %s", rows, want, err);
    CHECK(qint0("SELECT count(*) FROM tongban.outbox WHERE dest = 'C' AND catalog = 'snap2' AND op = 'D'") == 10);
    sql("DELETE FROM tongban.outbox");
    CHECK(tb_store_snapshot_enqueue(s, "nosuch", "C", &rows, err, sizeof err) == TB_OK && rows == 0);
    CHECK(qint0("SELECT count(*) FROM tongban.outbox") == 0);
    CHECK(tb_store_snapshot_enqueue(s, "snap", "not a dest", &rows, err, sizeof err) == TB_ERR_INVALID);
    CHECK(tb_store_snapshot_enqueue(s, "", "C", &rows, err, sizeof err) == TB_ERR_INVALID);
    CHECK(tb_store_count(s, "snap", &rows, err, sizeof err) == TB_OK && rows == 200000);
    CHECK(tb_store_count(s, "*", &rows, err, sizeof err) == TB_OK &&
          rows == qint0("SELECT count(*) FROM tongban.records"));

    sql("SET tongban.applying = 'on'");
    sql("DELETE FROM tongban.records WHERE catalog IN ('snap', 'snap2')");
    sql("RESET tongban.applying");
    sql("DELETE FROM tongban.tombstones");
    tb_store_drain_notifies(s);
}

static void test_status(tb_store_t *s)
{
    char err[512] = "";
    tb_store_status_t st;
    sql("DELETE FROM tongban.outbox");
    sql("DELETE FROM tongban.sent_batches");
    sql("DELETE FROM tongban.refused_batches");
    sql("DELETE FROM tongban.dead_letters");
    sql("DELETE FROM tongban.dead_letter_batches");
    sql("DELETE FROM tongban.inbox");
    sql("DELETE FROM tongban.tombstones");
    CHECK_MSG(tb_store_status(s, &st, err, sizeof err) == TB_OK, "%s", err);
    CHECK(st.outbox_rows == 0 && st.outbox_oldest_age_s == -1 && st.n_outbox_dests == 0 && !st.outbox_dests);
    CHECK(st.unacked_batches == 0 && st.unacked_oldest_age_s == -1 && st.refused_batches == 0);
    CHECK(st.dead_letters == 0 && st.dead_pending == 0 && st.dead_failed == 0);
    CHECK(st.inbox_rows == 0 && st.last_applied_age_s == -1 && st.tombstones == 0);
    CHECK(st.refused_deliveries == 0);
    CHECK(st.records == qint0("SELECT count(*) FROM tongban.records") && st.records > 0);
    tb_store_free_status(&st);

    sql("INSERT INTO tongban.outbox (dest, op, catalog, key, body, version, origin, hlc, created_at)"
        " SELECT CASE WHEN g <= 5 THEN 'B' WHEN g <= 8 THEN 'C' ELSE 'topic:x' END, 'U', 'st', 'k' || g, '{}', 1,"
        "        'nodeA', g, now() - CASE WHEN g = 1 THEN interval '100 s' ELSE interval '1 s' END"
        "   FROM generate_series(1, 9) g");
    sql("INSERT INTO tongban.sent_batches (seq, dest, signed, created_at)"
        " VALUES (7, 'B', '\\x00', now() - interval '30 s'), (8, 'B', '\\x00', now())");
    sql("INSERT INTO tongban.refused_batches (seq, dest, signed, reason, detail) VALUES (6, 'B', '\\x00', 'acl', '')");
    sql("INSERT INTO tongban.dead_letter_batches (sender, seq) VALUES ('nodeS', 1)");
    sql("INSERT INTO tongban.dead_letters (sender, seq, entry_index, entry_id, entry_type, payload, reason, status)"
        " VALUES ('nodeS', 1, 0, '', 1, '', 'r', 'pending'), ('nodeS', 1, 1, '', 1, '', 'r', 'pending'),"
        "        ('nodeS', 1, 2, '', 1, '', 'r', 'failed'), ('nodeS', 1, 3, '', 1, '', 'r', 'applied')");
    sql("INSERT INTO tongban.inbox (sender, seq, applied_at) SELECT 'nodeS', g, now() - (60 - g) * interval '1 s'"
        "   FROM generate_series(1, 4) g");
    sql("INSERT INTO tongban.tombstones (catalog, key, version, origin, hlc) VALUES ('st', 'a', 1, 'x', 1),"
        " ('st', 'b', 1, 'x', 1)");
    CHECK_MSG(tb_store_status(s, &st, err, sizeof err) == TB_OK, "%s", err);
    CHECK(st.outbox_rows == 9);
    CHECK_MSG(st.outbox_oldest_age_s >= 100 && st.outbox_oldest_age_s < 160, "%f", st.outbox_oldest_age_s);
    CHECK(st.n_outbox_dests == 3);
    if (st.n_outbox_dests == 3)
        CHECK(strcmp(st.outbox_dests[0].dest, "B") == 0 && st.outbox_dests[0].rows == 5 &&
              strcmp(st.outbox_dests[1].dest, "C") == 0 && st.outbox_dests[1].rows == 3 &&
              strcmp(st.outbox_dests[2].dest, "topic:x") == 0 && st.outbox_dests[2].rows == 1);
    CHECK(st.unacked_batches == 2);
    CHECK_MSG(st.unacked_oldest_age_s >= 30 && st.unacked_oldest_age_s < 90, "%f", st.unacked_oldest_age_s);
    CHECK(st.refused_batches == 1);
    CHECK(st.dead_letters == 3 && st.dead_pending == 2 && st.dead_failed == 1);
    CHECK(st.inbox_rows == 4);
    CHECK_MSG(st.last_applied_age_s >= 56 && st.last_applied_age_s < 116, "%f", st.last_applied_age_s);
    CHECK(st.records == qint0("SELECT count(*) FROM tongban.records"));
    CHECK(st.tombstones == 2);
    tb_store_free_status(&st);
    CHECK(st.outbox_dests == NULL && st.n_outbox_dests == 0);
    tb_store_free_status(&st); /* twice is safe */

    sql("DELETE FROM tongban.outbox");
    sql("DELETE FROM tongban.sent_batches");
    sql("DELETE FROM tongban.refused_batches");
    sql("DELETE FROM tongban.dead_letters");
    sql("DELETE FROM tongban.dead_letter_batches");
    sql("DELETE FROM tongban.tombstones");
}

/* Parked deliveries (store_refused.c): bytes kept verbatim, a redelivery
 * adds no row, what the wire claims is kept to printable ASCII, list /
 * filter / page / get / update / delete, and the status count. */
static void test_refused(tb_store_t *s)
{
    char err[512] = "";
    tb_refused_t *v = NULL, r;
    size_t n = 99;
    sql("DELETE FROM tongban.refused_deliveries");
    const uint8_t bytes[] = {0x0a, 0x00, 0xff, 0x80, 0x00, '\\', 'x', 0x01};
    const uint8_t other[] = {0x12, 0x34};
    CHECK_MSG(tb_store_park_delivery(s, 41, "nodeX", 7, "signer revoked", bytes, sizeof bytes, err, sizeof err) ==
                  TB_OK, "%s", err);
    /* the same delivery again (its ack was lost): no second row */
    CHECK(tb_store_park_delivery(s, 41, "nodeX", 7, "signer revoked", bytes, sizeof bytes, err, sizeof err) == TB_OK);
    CHECK(qint0("SELECT count(*) FROM tongban.refused_deliveries") == 1);
    /* another delivery under the same hub_seq (a hub restored from a backup) is kept */
    CHECK(tb_store_park_delivery(s, 41, "nodeX", 8, "signer revoked", other, sizeof other, err, sizeof err) == TB_OK);
    /* unknown sender and seq, a hub_seq beyond bigint, a reason with bytes PostgreSQL's text refuses */
    CHECK_MSG(tb_store_park_delivery(s, (uint64_t)INT64_MAX + 1, NULL, -1, "signer not in the directory\xff\n",
                                     other, sizeof other, err, sizeof err) == TB_OK, "%s", err);
    CHECK(tb_store_park_delivery(s, 43, "nodeY", 1, "signer not in the directory", other, 0, err, sizeof err) == TB_OK);
    CHECK(qint0("SELECT count(*) FROM tongban.refused_deliveries") == 4);
    CHECK(qint0("SELECT count(*) FROM tongban.refused_deliveries WHERE hub_seq IS NULL AND sender IS NULL"
                " AND seq IS NULL AND reason = 'signer not in the directory?\?'") == 1);

    /* all, oldest first, without the bytes */
    CHECK_MSG(tb_store_refused_list(s, 0, 0, NULL, 0, &v, &n, err, sizeof err) == TB_OK, "%s", err);
    CHECK(n == 4);
    if (n == 4) {
        CHECK(v[0].id < v[1].id && v[1].id < v[2].id && v[2].id < v[3].id);
        CHECK(v[0].hub_seq == 41 && strcmp(v[0].sender, "nodeX") == 0 && v[0].seq == 7);
        CHECK(strcmp(v[0].reason, "signer revoked") == 0 && v[0].retries == 0 && !v[0].retried_at);
        CHECK(v[0].size == sizeof bytes && !v[0].bytes);
        CHECK(v[0].refused_at && strlen(v[0].refused_at) == 24 && v[0].refused_at[23] == 'Z');
        CHECK(v[2].hub_seq == -1 && !v[2].sender && v[2].seq == -1);
        CHECK(v[3].size == 0);
    }
    int64_t first = n ? v[0].id : 0, third = n > 2 ? v[2].id : 0;
    tb_store_free_refused(v, n);

    /* by reason, paged, with the bytes */
    CHECK(tb_store_refused_list(s, 0, 1, "signer not in the directory", 1, &v, &n, err, sizeof err) == TB_OK);
    CHECK(n == 1 && v[0].seq == 1 && v[0].size == 0 && v[0].bytes);     /* the '??' one has another reason */
    tb_store_free_refused(v, n);
    CHECK(tb_store_refused_list(s, first, 1, "signer revoked", 1, &v, &n, err, sizeof err) == TB_OK);
    CHECK(n == 1 && v[0].seq == 8 && v[0].size == sizeof other && v[0].bytes &&
          memcmp(v[0].bytes, other, sizeof other) == 0);
    tb_store_free_refused(v, n);
    CHECK(tb_store_refused_list(s, INT64_MAX, 0, NULL, 1, &v, &n, err, sizeof err) == TB_OK && n == 0 && !v);

    /* one, with its bytes exactly as parked */
    CHECK_MSG(tb_store_refused_get(s, first, &r, err, sizeof err) == TB_OK, "%s", err);
    CHECK(r.id == first && r.size == sizeof bytes && r.bytes && memcmp(r.bytes, bytes, sizeof bytes) == 0);
    tb_store_refused_clear(&r);
    CHECK(r.bytes == NULL);
    CHECK(tb_store_refused_get(s, 999999, &r, err, sizeof err) == TB_ERR_NOTFOUND && strstr(err, "999999"));

    /* still refused: new reason, retries + 1 */
    CHECK(tb_store_refused_update(s, first, "bad signature", err, sizeof err) == TB_OK);
    CHECK(tb_store_refused_update(s, first, "bad signature", err, sizeof err) == TB_OK);
    CHECK(tb_store_refused_get(s, first, &r, err, sizeof err) == TB_OK);
    CHECK(strcmp(r.reason, "bad signature") == 0 && r.retries == 2 && r.retried_at && r.retried_at[23] == 'Z');
    tb_store_refused_clear(&r);
    CHECK(tb_store_refused_update(s, 999999, "x", err, sizeof err) == TB_ERR_NOTFOUND);

    /* the status counts them */
    tb_store_status_t st;
    CHECK(tb_store_status(s, &st, err, sizeof err) == TB_OK && st.refused_deliveries == 4);
    tb_store_free_status(&st);

    /* applied: the row goes; deleting again is fine */
    CHECK(tb_store_refused_delete(s, third, err, sizeof err) == TB_OK);
    CHECK(tb_store_refused_delete(s, third, err, sizeof err) == TB_OK);
    CHECK(qint0("SELECT count(*) FROM tongban.refused_deliveries") == 3);
    CHECK(tb_store_status(s, &st, err, sizeof err) == TB_OK && st.refused_deliveries == 3);
    tb_store_free_status(&st);
    sql("DELETE FROM tongban.refused_deliveries");
}

static void test_dests(tb_store_t *s)
{
    char err[512] = "";
    char **d = NULL;
    size_t n = 0;
    sql("DELETE FROM tongban.outbox");
    CHECK(tb_store_outbox_dests(s, &d, &n, err, sizeof err) == TB_OK && n == 0 && d == NULL);
    sql("INSERT INTO tongban.outbox (dest, op, catalog, key, body, version, origin, hlc)"
        " SELECT (ARRAY['topic:x', 'B', 'C'])[1 + g % 3], 'U', 'c', 'k' || g, '{}', 1, 'nodeA', g"
        "   FROM generate_series(1, 30000) g");
    sql("ANALYZE tongban.outbox");
    CHECK_MSG(tb_store_outbox_dests(s, &d, &n, err, sizeof err) == TB_OK, "%s", err);
    CHECK(n == 3 && strcmp(d[0], "B") == 0 && strcmp(d[1], "C") == 0 && strcmp(d[2], "topic:x") == 0);
    tb_store_free_strings(d, n);
    sql("DELETE FROM tongban.outbox WHERE dest = 'C'");
    CHECK(tb_store_outbox_dests(s, &d, &n, err, sizeof err) == TB_OK);
    CHECK(n == 2 && strcmp(d[0], "B") == 0 && strcmp(d[1], "topic:x") == 0);
    tb_store_free_strings(d, n);
    sql("DELETE FROM tongban.outbox");
}

/* The empty outbox is truncated, never one with rows, and never while a
 * transaction has written to it uncommitted: the call gives up at once and
 * the row survives. The id sequence goes on across the truncation. */
static void test_outbox_compact(tb_store_t *s)
{
    char err[512] = "";
    int done = -1;
    static const char ins[] = "INSERT INTO tongban.outbox (dest, op, catalog, key, body, version, origin, hlc)"
                              " VALUES ('B', 'U', 'c', 'compact', '{}', 1, 'nodeA', 1)";
    sql("DELETE FROM tongban.outbox");
    sql(ins);
    CHECK_MSG(tb_store_outbox_compact(s, &done, err, sizeof err) == TB_OK && done == 0, "%s", err);
    CHECK(count_outbox("B") == 1);
    long long max_id = qint0("SELECT max(id) FROM tongban.outbox");
    sql("DELETE FROM tongban.outbox");
    /* an application's capture, not committed yet */
    sql("BEGIN");
    sql(ins);
    long long node0 = qint0("SELECT pg_relation_filenode('tongban.outbox')");
    CHECK_MSG(tb_store_outbox_compact(s, &done, err, sizeof err) == TB_OK && done == 0, "%s", err);
    sql("COMMIT");
    CHECK(count_outbox("B") == 1);
    CHECK(qint0("SELECT pg_relation_filenode('tongban.outbox')") == node0);
    sql("DELETE FROM tongban.outbox");
    CHECK_MSG(tb_store_outbox_compact(s, &done, err, sizeof err) == TB_OK && done == 1, "%s", err);
    CHECK(qint0("SELECT pg_relation_filenode('tongban.outbox')") != node0);
    CHECK(qint0("SELECT count(*) FROM tongban.outbox") == 0);
    sql(ins);
    CHECK(qint0("SELECT min(id) FROM tongban.outbox") > max_id + 1);
    sql("DELETE FROM tongban.outbox");

    /* VACUUM on the maintenance connection: returns at once, polled to the end */
    static const char vacs[] = "SELECT vacuum_count FROM pg_stat_user_tables"
                               " WHERE schemaname = 'tongban' AND relname = 'outbox'";
    sql("SELECT pg_stat_clear_snapshot()");
    long long v0 = qint0(vacs);
    CHECK(tb_store_vacuum_poll(s, err, sizeof err) == 0);   /* none started */
    for (int round = 0; round < 2; round++) {               /* the second reuses the connection */
        CHECK_MSG(tb_store_vacuum_start(s, err, sizeof err) == TB_OK, "%s", err);
        int r = 1;
        for (int i = 0; i < 1000 && r == 1; i++) {
            r = tb_store_vacuum_poll(s, err, sizeof err);
            if (r == 1) poll(NULL, 0, 10);
        }
        CHECK_MSG(r == 0, "vacuum poll %d: %s", r, err);
    }
    sql("SELECT pg_stat_clear_snapshot()");
    CHECK_MSG(qint0(vacs) == v0 + 2, "vacuum_count %lld, was %lld", qint0(vacs), v0);
    /* the node's own connection was not disturbed */
    CHECK_MSG(tb_store_outbox_compact(s, &done, err, sizeof err) == TB_OK, "%s", err);

    /* a read-only database: a clear error, the connection kept (the node goes on) */
    PQclear(PQexec(tb_store_conn(s), "SET default_transaction_read_only = on"));
    err[0] = '\0';
    CHECK(tb_store_outbox_compact(s, &done, err, sizeof err) == TB_ERR_DB && done == 0);
    CHECK_MSG(strstr(err, "outbox compact") && strstr(err, "read-only"), "%s", err);
    CHECK(PQstatus(tb_store_conn(s)) == CONNECTION_OK && PQtransactionStatus(tb_store_conn(s)) == PQTRANS_IDLE);
    PQclear(PQexec(tb_store_conn(s), "SET default_transaction_read_only = off"));
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
    CHECK(qint0("SELECT count(*) FROM tongban.inbox WHERE sender = 'nodeR' AND seq = 100") == 0);
    CHECK(tb_store_retry_dead_letter(s, 1, err, sizeof err) == TB_ERR_UNAVAILABLE);
    int64_t rows;
    CHECK(tb_store_snapshot_enqueue(s, "*", "B", &rows, err, sizeof err) == TB_ERR_UNAVAILABLE);
    tb_store_status_t st;
    CHECK(tb_store_status(s, &st, err, sizeof err) == TB_ERR_UNAVAILABLE);
    const uint8_t b[1] = {0};
    CHECK(tb_store_park_delivery(s, 1, "nodeX", 1, "signer revoked", b, 1, err, sizeof err) == TB_ERR_UNAVAILABLE);
    CHECK(err[0] != '\0' && strchr(err, '\n') == NULL);
    tb_refused_t *v = NULL;
    size_t n = 0;
    CHECK(tb_store_refused_list(s, 0, 0, NULL, 0, &v, &n, err, sizeof err) == TB_ERR_UNAVAILABLE && !v && n == 0);
    tb_store_destroy(&s);
}

/* A database at schema version 2 with data, written by the version-2
 * triggers, is migrated in place: data kept, the new capture in force. */
static void test_upgrade_from_v2(void)
{
    CHECK(tb_store_migration_count == TB_SCHEMA_VERSION);
    CHECK(tb_store_migrations[tb_store_migration_count - 1].version == TB_SCHEMA_VERSION);
    for (size_t i = 0; i < tb_store_migration_count; i++)
        CHECK(tb_store_migrations[i].version == (int)i + 1);
    sql("DROP DATABASE IF EXISTS tbupgrade");
    sql("CREATE DATABASE tbupgrade");
    char ci[1200];
    snprintf(ci, sizeof ci, "%s dbname=tbupgrade", conninfo);
    PGconn *c = PQconnectdb(ci);
    CHECK(PQstatus(c) == CONNECTION_OK);
    PGresult *r = PQexec(c, tb_store_bootstrap_sql);
    CHECK(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
    for (int v = 0; v < 2; v++) {
        r = PQexec(c, tb_store_migrations[v].sql);
        CHECK_MSG(PQresultStatus(r) == PGRES_COMMAND_OK, "migration %d: %s", v + 1, PQerrorMessage(c));
        PQclear(r);
    }
    static const char *const setup[] = {
        "INSERT INTO tongban.schema_migrations (version, description) VALUES (1, 'v1'), (2, 'v2')",
        "INSERT INTO tongban.node_state (node_id) VALUES ('nodeA')",
        "INSERT INTO tongban.routes VALUES ('*', 'B')",
        "INSERT INTO tongban.records (catalog, key, body) SELECT 'old', 'k' || g, '{}' FROM generate_series(1, 10) g",
        "DELETE FROM tongban.records WHERE key = 'k1'",
    };
    for (size_t i = 0; i < sizeof setup / sizeof setup[0]; i++) {
        r = PQexec(c, setup[i]);
        CHECK_MSG(PQresultStatus(r) == PGRES_COMMAND_OK, "%s: %s", setup[i], PQerrorMessage(c));
        PQclear(r);
    }
    char err[512] = "";
    tb_store_t *s = NULL;
    CHECK_MSG(tb_store_open(ci, "nodeA", &s, err, sizeof err) == TB_OK, "%s", err);
    tb_store_destroy(&s);
    static const struct {
        const char *q, *want;
    } checks[] = {
        {"SELECT max(version) FROM tongban.schema_migrations", TB_STR(TB_SCHEMA_VERSION)},
        {"SELECT count(*) FROM tongban.records", "9"},
        {"SELECT count(*) FROM tongban.outbox", "11"},
        {"SELECT count(*) FROM tongban.tombstones", "0"}, /* deletes before the upgrade left none */
        /* migration 10: identifiers bytewise, the rows and the triggers it recreated kept */
        {"SELECT string_agg(table_name || '.' || column_name || '=' || coalesce(collation_name, '-'), ' '"
         "                  ORDER BY table_name, column_name) FROM information_schema.columns"
         " WHERE table_schema = 'tongban' AND table_name IN ('records', 'outbox', 'inbox')"
         "   AND column_name IN ('catalog', 'key', 'dest', 'sender')",
         "inbox.sender=C outbox.catalog=- outbox.dest=C outbox.key=- records.catalog=C records.key=C"},
        {"SELECT count(*) FROM pg_trigger WHERE tgrelid = 'tongban.records'::regclass"
         "   AND tgname IN ('records_zz_domain_insert', 'records_zz_domain_update', 'records_zz_domain_delete',"
         "                  'records_licence_holders', 'records_licence_holders_delete',"
         "                  'records_zzz_chunk', 'records_zzz_chunk_delete')", "7"},
    };
    for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        r = PQexec(c, checks[i].q);
        CHECK_MSG(PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), checks[i].want) == 0,
                  "%s: got %s want %s", checks[i].q, PQgetvalue(r, 0, 0), checks[i].want);
        PQclear(r);
    }
    r = PQexec(c, "DELETE FROM tongban.records WHERE key = 'k2';"
                  " INSERT INTO tongban.records (catalog, key, body) VALUES ('old', 'k2', '{\"v\": 2}');"
                  " SELECT (SELECT count(*) FROM tongban.outbox WHERE key = 'k2') = 3"
                  "    AND (SELECT o.hlc FROM tongban.outbox o WHERE key = 'k2' AND op = 'U' ORDER BY id DESC LIMIT 1)"
                  "      > (SELECT o.hlc FROM tongban.outbox o WHERE key = 'k2' AND op = 'D')"
                  "    AND (SELECT count(*) FROM tongban.tombstones) = 0");
    CHECK_MSG(PQresultStatus(r) == PGRES_TUPLES_OK && PQgetvalue(r, 0, 0)[0] == 't', "%s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    sql("DROP DATABASE tbupgrade");
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
    /* the figures should not depend on the dead rows earlier tests left */
    sql("VACUUM ANALYZE tongban.outbox, tongban.records, tongban.tombstones, tongban.inbox");
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

/* Inserts `batches` 1,000-row statements into catalog (keys prefix-b-i) from
 * the test's connection; returns rows/s. */
static double load_rate(const char *catalog, const char *prefix, int batches)
{
    enum { PER = 1000 };
    const char *ks[PER];
    char(*keys)[32] = malloc(PER * sizeof *keys);
    double t = 0;
    for (int b = 0; b < batches; b++) {
        for (int i = 0; i < PER; i++) {
            snprintf(keys[i], sizeof keys[i], "%s-%d-%d", prefix, b, i);
            ks[i] = keys[i];
        }
        char *ka = tb_store_text_array(ks, PER);
        const char *v[2] = {catalog, ka};
        double a = now_s();
        PGresult *r = PQexecParams(db,
                                   "INSERT INTO tongban.records (catalog, key, body)"
                                   " SELECT $1, k, jsonb_build_object('k', k, 'pad', repeat('x', 480))"
                                   "   FROM unnest($2::text[]) AS u (k)",
                                   2, NULL, v, NULL, NULL, 0);
        t += now_s() - a;
        CHECK_MSG(PQresultStatus(r) == PGRES_COMMAND_OK, "%s", PQerrorMessage(db));
        PQclear(r);
        free(ka);
    }
    free(keys);
    return batches * PER / t;
}

/* Tombstone costs on the hot paths, the loose index scan and the status
 * query on a deep backlog. */
static void bench2(tb_store_t *s)
{
    char err[512] = "";
    enum { BATCHES = 10, PER = 1000 };
    sql("DELETE FROM tongban.outbox");
    CHECK(routes1(s, "load2", "B", err, sizeof err) == TB_OK);
    load_rate("load2", "warm", 2);
    double r0 = load_rate("load2", "a", BATCHES);
    sql("INSERT INTO tongban.tombstones (catalog, key, version, origin, hlc)"
        " SELECT 'load2', 'gone-' || g, 2, 'nodeR', g FROM generate_series(1, 200000) g");
    sql("VACUUM ANALYZE tongban.tombstones");
    double r1 = load_rate("load2", "b", BATCHES);
    printf("bench: capture %d x %d-row INSERT, 0 tombstones: %.0f rows/s;"
           " 200,000 tombstones (other keys): %.0f rows/s\n", BATCHES, PER, r0, r1);

    /* the rare path: every inserted key has a tombstone (local delete, then re-insert) */
    sql("DELETE FROM tongban.records WHERE catalog = 'load2' AND key LIKE 'b-%'");
    CHECK(qint0("SELECT count(*) FROM tongban.tombstones WHERE catalog = 'load2' AND key LIKE 'b-%'") == BATCHES * PER);
    double r2 = load_rate("load2", "b", BATCHES);
    CHECK(qint0("SELECT count(*) FROM tongban.tombstones WHERE catalog = 'load2' AND key LIKE 'b-%'") == 0);
    CHECK(qint0("SELECT count(*) FROM tongban.outbox o JOIN tongban.records r USING (catalog, key)"
                " WHERE o.op = 'U' AND o.key LIKE 'b-%' AND o.hlc = r.hlc AND r.version = 3") == BATCHES * PER);
    printf("bench: re-insert of %d x %d deleted keys (all with tombstones): %.0f rows/s\n", BATCHES, PER, r2);

    /* apply with 200,000 tombstones of other keys */
    char **bodies = malloc(PER * sizeof *bodies);
    char(*keys)[24] = malloc(PER * sizeof *keys);
    ent_t *e = malloc(PER * sizeof *e);
    Tongban__Batch *bs[BATCHES];
    for (int i = 0; i < PER; i++)
        bodies[i] = body512(i);
    for (int b = 0; b < BATCHES; b++) {
        for (int i = 0; i < PER; i++) {
            snprintf(keys[i], sizeof keys[i], "t%d-%d", b, i);
            e[i] = (ent_t){0, "load2", keys[i], bodies[i], "nodeR", 1, H + (uint64_t)i};
        }
        bs[b] = mk_batch("nodeBench2", (uint64_t)b + 1, e, PER);
    }
    int ok = 0, ap;
    size_t dead;
    double t0 = now_s();
    for (int b = 0; b < BATCHES; b++)
        ok += tb_store_apply_batch(s, bs[b], NULL, 0, &ap, &dead, err, sizeof err) == TB_OK && ap == 1 && dead == 0;
    double t1 = now_s();
    CHECK_MSG(ok == BATCHES, "%s", err);
    printf("bench: apply %d x %d upserts (512 B) with 200,000 tombstones: %.0f rows/s\n", BATCHES, PER,
           BATCHES * PER / (t1 - t0));
    for (int b = 0; b < BATCHES; b++)
        free_batch(bs[b]);

    /* one invalid entry in a 1,000-upsert batch: the entry-by-entry fallback */
    for (int i = 0; i < PER; i++) {
        snprintf(keys[i], sizeof keys[i], "f-%d", i);
        e[i] = (ent_t){0, "load2", keys[i], i == 500 ? "{not json" : bodies[i], "nodeR", 1, H};
    }
    Tongban__Batch *fb = mk_batch("nodeBench2", 100, e, PER);
    t0 = now_s();
    tb_err_t rc = tb_store_apply_batch(s, fb, NULL, 0, &ap, &dead, err, sizeof err);
    t1 = now_s();
    CHECK_MSG(rc == TB_OK && ap == 1 && dead == 1, "rc %d err %s", rc, err);
    printf("bench: apply 1 x %d upserts with 1 invalid (fallback, 1 dead letter): %.0f ms (%.0f rows/s)\n", PER,
           (t1 - t0) * 1000, PER / (t1 - t0));
    free_batch(fb);
    free(e);
    for (int i = 0; i < PER; i++)
        free(bodies[i]);
    free(bodies);
    free(keys);

    /* a 1,000,000-row backlog for 3 destinations */
    sql("DELETE FROM tongban.outbox");
    sql("INSERT INTO tongban.outbox (dest, op, catalog, key, body, version, origin, hlc)"
        " SELECT (ARRAY['B', 'C', 'topic:x'])[1 + g % 3], 'U', 'c', 'k' || g, '{}', 1, 'nodeA', g"
        "   FROM generate_series(1, 1000000) g");
    sql("VACUUM ANALYZE tongban.outbox");
    char **d = NULL;
    size_t n = 0;
    t0 = now_s();
    for (int i = 0; i < 5; i++) {
        CHECK(tb_store_outbox_dests(s, &d, &n, err, sizeof err) == TB_OK && n == 3);
        tb_store_free_strings(d, n);
    }
    t1 = now_s();
    double t2 = now_s();
    for (int i = 0; i < 5; i++)
        CHECK(qint0("SELECT count(*) FROM (SELECT DISTINCT dest FROM tongban.outbox) x") == 3);
    double t3 = now_s();
    printf("bench: outbox destinations on a 1,000,000-row backlog: loose index scan %.2f ms, SELECT DISTINCT %.1f ms\n",
           (t1 - t0) * 1000 / 5, (t3 - t2) * 1000 / 5);
    tb_store_status_t st;
    t0 = now_s();
    CHECK(tb_store_status(s, &st, err, sizeof err) == TB_OK && st.outbox_rows == 1000000 && st.n_outbox_dests == 3);
    t1 = now_s();
    printf("bench: status with a 1,000,000-row outbox and %" PRId64 " records: %.0f ms\n", st.records,
           (t1 - t0) * 1000);
    tb_store_free_status(&st);
    sql("DELETE FROM tongban.outbox");
    sql("DELETE FROM tongban.tombstones");
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
        test_apply_group(s);
        test_tombstones(s);
        test_dead_letters(s);
        test_snapshot(s);
        test_status(s);
        test_refused(s);
        test_dests(s);
        test_outbox_compact(s);
        if (!getenv("TB_TEST_NO_BENCH")) {
            bench(s);
            bench2(s);
        }
        CHECK(tb_store_drain_notifies(s) >= 0);
        tb_store_destroy(&s);
    }
    test_concurrent_first_start();
    test_upgrade_from_v2();
    test_connection_lost();
    PQfinish(db);
    return tbtest_done("test_store_pg");
}
