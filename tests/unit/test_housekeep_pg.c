/* test_housekeep_pg.c -- node/store_prune.c and node/housekeep.c against a
 * real PostgreSQL (tests/lib/with-pg.sh): what each table's prune keeps and
 * deletes, that a redelivered batch whose inbox row was pruned is not
 * applied again (the watermark) nor one a parked delivery still waits for
 * held back, that unread events stay, the schedule, chunking over several
 * ticks, 0 = keep forever, the counters and their metrics. */
#include <inttypes.h>
#include <libpq-fe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "housekeep.h"
#include "metrics_node.h"
#include "store.h"
#include "store_prune.h"
#include "store_refused.h"
#include "tbtest.h"

static PGconn *db; /* the test's own connection */

/* ---------------- helpers ---------------- */

static void sql(const char *q)
{
    PGresult *r = PQexec(db, q);
    ExecStatusType st = PQresultStatus(r);
    CHECK_MSG(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", q, PQerrorMessage(db));
    PQclear(r);
}

/* The first column of the first row as a number; -1 for no row, NULL or error. */
static long long qint(const char *q)
{
    PGresult *r = PQexec(db, q);
    long long v = -1;
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        fprintf(stderr, "query failed: %s: %s\n", q, PQerrorMessage(db));
    else if (PQntuples(r) > 0 && !PQgetisnull(r, 0, 0))
        v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

#define H ((uint64_t)1 << 40)

/* A batch of sender/seq with one upsert of catalog "hki", key "<sender>-<seq>". */
typedef struct {
    Tongban__Batch b;
    Tongban__Entry e, *ep;
    Tongban__RecordUpsert u;
    uint8_t id[16], payload[256];
    char sender[32], key[48];
} batch_t;

static void mk(batch_t *t, const char *sender, uint64_t seq)
{
    memset(t, 0, sizeof *t);
    snprintf(t->sender, sizeof t->sender, "%s", sender);
    snprintf(t->key, sizeof t->key, "%s-%" PRIu64, sender, seq);
    tongban__record_upsert__init(&t->u);
    t->u.catalog = (char *)"hki";
    t->u.key = t->key;
    t->u.body = (char *)"{\"v\": 1}";
    t->u.origin = t->sender;
    t->u.version = 1;
    t->u.hlc = H + seq;
    tongban__entry__init(&t->e);
    memcpy(t->id, &seq, sizeof seq);
    t->e.id.data = t->id;
    t->e.id.len = sizeof t->id;
    t->e.type = TONGBAN__ENTRY_TYPE__RECORD_UPSERT;
    t->e.payload.len = tongban__record_upsert__pack(&t->u, t->payload);
    t->e.payload.data = t->payload;
    t->ep = &t->e;
    tongban__batch__init(&t->b);
    t->b.sender = t->sender;
    t->b.seq = seq;
    t->b.dest = (char *)"nodeR";
    t->b.hlc = H + seq;
    t->b.n_entries = 1;
    t->b.entries = &t->ep;
}

/* Applies sender/seq; returns applied (1), already applied (0), or -1 on error. */
static int apply(tb_store_t *s, const char *sender, uint64_t seq)
{
    batch_t t;
    char err[512] = "";
    int applied = -1;
    mk(&t, sender, seq);
    tb_err_t rc = tb_store_apply_batch(s, &t.b, NULL, 0, &applied, NULL, err, sizeof err);
    CHECK_MSG(rc == TB_OK, "apply %s/%" PRIu64 ": %s", sender, seq, err);
    return rc == TB_OK ? applied : -1;
}

static long long inbox_rows(const char *sender)
{
    char q[256];
    snprintf(q, sizeof q, "SELECT count(*) FROM tongban.inbox WHERE sender = '%s'", sender);
    return qint(q);
}

static int in_inbox(const char *sender, int seq)
{
    char q[256];
    snprintf(q, sizeof q, "SELECT count(*) FROM tongban.inbox WHERE sender = '%s' AND seq = %d", sender, seq);
    return qint(q) == 1;
}

static void age_inbox(const char *sender, int seq, int days)
{
    char q[256];
    snprintf(q, sizeof q,
             "UPDATE tongban.inbox SET applied_at = now() - make_interval(days => %d) WHERE sender = '%s' AND seq = %d",
             days, sender, seq);
    sql(q);
}

static long long watermark(tb_store_t *s, const char *sender)
{
    int64_t w = -1;
    char err[512] = "";
    CHECK_MSG(tb_store_inbox_watermark(s, sender, &w, err, sizeof err) == TB_OK, "%s", err);
    return w;
}

/* Removes the record a batch applied without leaving a tombstone or an
 * outbox row (as the node's apply does, tongban.applying = on), so a
 * second apply of the batch would be seen: the record would be back. */
static void forget_record(const char *key)
{
    char q[256];
    snprintf(q, sizeof q,
             "BEGIN; SET LOCAL tongban.applying = 'on'; DELETE FROM tongban.records WHERE catalog = 'hki' AND key = '%s';"
             " COMMIT",
             key);
    sql(q);
}

static int has_record(const char *key)
{
    char q[256];
    snprintf(q, sizeof q, "SELECT count(*) FROM tongban.records WHERE catalog = 'hki' AND key = '%s'", key);
    return qint(q) == 1;
}

static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return NAN;
}

/* ---------------- tests ---------------- */

static void test_schema(void)
{
    CHECK(qint("SELECT max(version) FROM tongban.schema_migrations") == TB_SCHEMA_VERSION);
    CHECK(qint("SELECT count(*) FROM tongban.schema_migrations WHERE version = 11 AND description LIKE 'retention%'") ==
          1);
    CHECK(qint("SELECT count(*) FROM pg_trigger WHERE tgname = 'inbox_watermark'") == 1);
}

static void test_args(tb_store_t *s)
{
    char err[512] = "";
    int64_t n = 7, m = 7;
    CHECK(tb_store_prune_inbox(s, 0, 10, &n, err, sizeof err) == TB_ERR_INVALID && n == 0);
    CHECK(strstr(err, "prune inbox: days must be 1..36500") != NULL);
    CHECK(tb_store_prune_tombstones(s, 30, 0, &n, err, sizeof err) == TB_ERR_INVALID);
    CHECK(tb_store_prune_events(s, 30, -1, 10, &n, err, sizeof err) == TB_ERR_INVALID);
    CHECK(tb_store_prune_dead_letters(s, 36501, 10, &n, &m, err, sizeof err) == TB_ERR_INVALID && m == 0);
    CHECK(tb_store_prune_inbox(NULL, 30, 10, &n, err, sizeof err) == TB_ERR_INVALID);
    /* a transaction open on the store's connection: refused, nothing done */
    PQclear(PQexec(tb_store_conn(s), "BEGIN"));
    CHECK(tb_store_prune_tombstones(s, 30, 10, &n, err, sizeof err) == TB_ERR_INVALID);
    CHECK(strstr(err, "a transaction is already open") != NULL);
    PQclear(PQexec(tb_store_conn(s), "ROLLBACK"));
}

/* The inbox: old rows go, recent ones and each sender's newest stay; a
 * redelivery of a pruned batch is a duplicate; a parked delivery holds its
 * sender's rows at and above its seq. */
static void test_inbox(tb_store_t *s)
{
    char err[512] = "";
    int64_t n = -1;
    for (int i = 1; i <= 5; i++)
        CHECK(apply(s, "s1", (uint64_t)i) == 1);
    for (int i = 1; i <= 3; i++)
        CHECK(apply(s, "s2", (uint64_t)i) == 1);
    for (int i = 1; i <= 3; i++)
        age_inbox("s1", i, 40);          /* s1: 1..3 old, 4..5 recent */
    for (int i = 1; i <= 3; i++)
        age_inbox("s2", i, 40);          /* s2: all old; 3 is its newest */
    age_inbox("s1", 4, 29);              /* inside the retention */

    CHECK(watermark(s, "s1") == 0 && watermark(s, "s2") == 0);
    CHECK_MSG(tb_store_prune_inbox(s, 30, 1000, &n, err, sizeof err) == TB_OK, "%s", err);
    CHECK_MSG(n == 5, "pruned %" PRId64, n);
    CHECK(!in_inbox("s1", 1) && !in_inbox("s1", 2) && !in_inbox("s1", 3) && in_inbox("s1", 4) && in_inbox("s1", 5));
    CHECK(!in_inbox("s2", 1) && !in_inbox("s2", 2) && in_inbox("s2", 3));
    CHECK(watermark(s, "s1") == 3 && watermark(s, "s2") == 2);
    CHECK(qint("SELECT count(*) FROM tongban.inbox_watermarks") == 2);
    /* nothing more is old enough: a second prune deletes nothing, moves nothing */
    CHECK(tb_store_prune_inbox(s, 30, 1000, &n, err, sizeof err) == TB_OK && n == 0);
    CHECK(watermark(s, "s1") == 3);

    /* redelivered after the prune: skipped -- the record the batch wrote was
     * removed behind the node's back, a second apply would bring it back */
    forget_record("s1-2");
    forget_record("s2-1");
    CHECK(apply(s, "s1", 2) == 0);
    CHECK(apply(s, "s2", 1) == 0);
    CHECK(!has_record("s1-2") && !has_record("s2-1"));
    CHECK(!in_inbox("s1", 2) && !in_inbox("s2", 1));        /* no row comes back either */
    CHECK(apply(s, "s1", 3) == 0);                          /* the watermark itself */
    CHECK(apply(s, "s1", 5) == 0);                          /* still in the inbox */
    CHECK(apply(s, "s1", 6) == 1 && has_record("s1-6"));    /* above: applied */
    CHECK(apply(s, "s2", 4) == 1 && in_inbox("s2", 4));
    /* the same through a group (tb_store_apply_batches: one multi-row inbox insert) */
    {
        batch_t a, b, c;
        mk(&a, "s1", 1);
        mk(&b, "s1", 7);
        mk(&c, "s2", 2);
        forget_record("s1-1");
        tb_apply_item_t it[3] = {{.batch = &a.b}, {.batch = &b.b}, {.batch = &c.b}};
        CHECK(tb_store_apply_batches(s, it, 3) == TB_OK);
        CHECK_MSG(it[0].rc == TB_OK && it[0].applied == 0, "%d %d %s", it[0].rc, it[0].applied, it[0].err);
        CHECK(it[1].rc == TB_OK && it[1].applied == 1);
        CHECK(it[2].rc == TB_OK && it[2].applied == 0);
        CHECK(!has_record("s1-1") && has_record("s1-7"));
    }

    /* a parked delivery of s3 (seq 2, e.g. its signer was not yet in the
     * directory) holds s3's rows at and above 2: when it is retried and
     * verified later it must still apply */
    CHECK(apply(s, "s3", 1) == 1 && apply(s, "s3", 3) == 1 && apply(s, "s3", 4) == 1 && apply(s, "s3", 5) == 1);
    for (int i = 1; i <= 5; i++)
        if (i != 2)
            age_inbox("s3", i, 40);
    static const uint8_t junk[] = {1, 2, 3};
    CHECK_MSG(tb_store_park_delivery(s, 77, "s3", 2, "signer not in the directory", junk, sizeof junk, err,
                                     sizeof err) == TB_OK, "%s", err);
    CHECK(tb_store_prune_inbox(s, 30, 1000, &n, err, sizeof err) == TB_OK);
    CHECK_MSG(n == 2, "pruned %" PRId64, n);                /* s3/1, and s2/3: no longer s2's newest */
    CHECK(!in_inbox("s3", 1) && in_inbox("s3", 3) && in_inbox("s3", 4) && in_inbox("s3", 5));
    CHECK(watermark(s, "s3") == 1 && watermark(s, "s2") == 3);
    CHECK(apply(s, "s3", 2) == 1 && has_record("s3-2"));   /* the parked one, retried */
    sql("DELETE FROM tongban.refused_deliveries");
    /* no longer held: 3 and 4 go, 2 (just applied) and 5 (newest) stay */
    CHECK(tb_store_prune_inbox(s, 30, 1000, &n, err, sizeof err) == TB_OK && n == 2);
    CHECK(in_inbox("s3", 2) && !in_inbox("s3", 3) && !in_inbox("s3", 4) && in_inbox("s3", 5));
    CHECK(watermark(s, "s3") == 4);

    /* limit: at most that many rows, oldest first */
    for (int i = 10; i <= 20; i++)
        CHECK(apply(s, "s4", (uint64_t)i) == 1);
    for (int i = 10; i <= 20; i++)
        age_inbox("s4", i, 60 - i);       /* 10 is the oldest */
    CHECK(tb_store_prune_inbox(s, 30, 3, &n, err, sizeof err) == TB_OK && n == 3);
    CHECK(inbox_rows("s4") == 8 && !in_inbox("s4", 12) && in_inbox("s4", 13) && watermark(s, "s4") == 12);
    CHECK(tb_store_prune_inbox(s, 30, 100, &n, err, sizeof err) == TB_OK && n == 7);   /* 13..19; 20 newest */
    CHECK(inbox_rows("s4") == 1 && in_inbox("s4", 20) && watermark(s, "s4") == 19);
}

static void make_tombstones(const char *catalog, int n, int days)
{
    char q[512];
    snprintf(q, sizeof q,
             "INSERT INTO tongban.records (catalog, key, body) SELECT '%s', 'k' || g, '{}' FROM generate_series(1, %d) g",
             catalog, n);
    sql(q);
    snprintf(q, sizeof q, "DELETE FROM tongban.records WHERE catalog = '%s'", catalog);
    sql(q);
    snprintf(q, sizeof q,
             "UPDATE tongban.tombstones SET deleted_at = now() - make_interval(days => %d) WHERE catalog = '%s'", days,
             catalog);
    sql(q);
}

static void test_tombstones(tb_store_t *s)
{
    char err[512] = "";
    int64_t n = -1;
    make_tombstones("tbold", 12, 31);
    make_tombstones("tbnew", 5, 29);
    CHECK(qint("SELECT count(*) FROM tongban.tombstones WHERE catalog = 'tbold'") == 12);
    CHECK(tb_store_prune_tombstones(s, 30, 5, &n, err, sizeof err) == TB_OK && n == 5);
    CHECK(tb_store_prune_tombstones(s, 30, 5, &n, err, sizeof err) == TB_OK && n == 5);
    CHECK(tb_store_prune_tombstones(s, 30, 5, &n, err, sizeof err) == TB_OK && n == 2);
    CHECK(tb_store_prune_tombstones(s, 30, 5, &n, err, sizeof err) == TB_OK && n == 0);
    CHECK(qint("SELECT count(*) FROM tongban.tombstones WHERE catalog = 'tbold'") == 0);
    CHECK(qint("SELECT count(*) FROM tongban.tombstones WHERE catalog = 'tbnew'") == 5);
    CHECK(tb_store_prune_tombstones(s, 28, 100, &n, err, sizeof err) == TB_OK && n == 5);
}

/* n events, `days` old */
static void make_events(int n, int days)
{
    char q[512];
    snprintf(q, sizeof q,
             "INSERT INTO tongban.events (at, kind, key, origin, op, body)"
             " SELECT now() - make_interval(days => %d), 'licence', 'e' || g, 'nodeR', 'I', '{}'"
             "   FROM generate_series(1, %d) g",
             days, n);
    sql(q);
}

static void test_events(tb_store_t *s)
{
    char err[512] = "", cur[64];
    int64_t n = -1, last = -1;
    sql("DELETE FROM tongban.events");
    sql("DELETE FROM tongban.event_cursors");
    make_events(10, 40);
    long long first = qint("SELECT min(id) FROM tongban.events");
    make_events(3, 1);
    /* app1 has read the first 5 old ones, app2 the first 7 */
    char q[256];
    snprintf(q, sizeof q, "SELECT tongban.events_ack('app1', %lld)", first + 4);
    sql(q);
    snprintf(q, sizeof q, "SELECT tongban.events_ack('app2', %lld)", first + 6);
    sql(q);
    CHECK(tb_store_prune_events(s, 30, 0, 100, &n, err, sizeof err) == TB_OK);
    CHECK_MSG(n == 5, "pruned %" PRId64, n);
    CHECK(qint("SELECT min(id) FROM tongban.events") == first + 5);      /* what app1 has not read stays */
    CHECK(qint("SELECT count(*) FROM tongban.events") == 5 + 3);
    CHECK(tb_store_events_holder(s, 30, 0, cur, sizeof cur, &last, err, sizeof err) == TB_OK);
    CHECK(strcmp(cur, "app1") == 0 && last == first + 4);

    /* app1 reads on: now app2 is the slowest */
    snprintf(q, sizeof q, "SELECT tongban.events_ack('app1', %lld)", first + 12);
    sql(q);
    CHECK(tb_store_prune_events(s, 30, 0, 100, &n, err, sizeof err) == TB_OK && n == 2);
    CHECK(tb_store_events_holder(s, 30, 0, cur, sizeof cur, &last, err, sizeof err) == TB_OK);
    CHECK(strcmp(cur, "app2") == 0 && last == first + 6);

    /* app2 idle for 10 days: with idle_cursor_days 7 it no longer holds */
    sql("UPDATE tongban.event_cursors SET updated_at = now() - interval '10 days' WHERE name = 'app2'");
    CHECK(tb_store_prune_events(s, 30, 11, 100, &n, err, sizeof err) == TB_OK && n == 0);
    CHECK(tb_store_prune_events(s, 30, 7, 100, &n, err, sizeof err) == TB_OK && n == 3);
    CHECK(qint("SELECT count(*) FROM tongban.events") == 3);               /* the recent ones */
    CHECK(tb_store_events_holder(s, 30, 7, cur, sizeof cur, &last, err, sizeof err) == TB_OK);
    CHECK(cur[0] == '\0' && last == 0);

    /* no cursor at all: age alone; limit in id order */
    sql("DELETE FROM tongban.event_cursors");
    make_events(4, 35);
    CHECK(tb_store_prune_events(s, 30, 0, 2, &n, err, sizeof err) == TB_OK && n == 0);   /* the first 2 are recent */
    CHECK(tb_store_prune_events(s, 30, 0, 100, &n, err, sizeof err) == TB_OK && n == 4);
    CHECK(qint("SELECT count(*) FROM tongban.events") == 3);
}

static long long dl_id(int seq, int idx)
{
    char q[256];
    snprintf(q, sizeof q, "SELECT id FROM tongban.dead_letters WHERE sender = 'dls' AND seq = %d AND entry_index = %d",
             seq, idx);
    return qint(q);
}

/* Applies dls/seq with n upserts of catalog hkd that the CHECK refuses. */
static void apply_refused(tb_store_t *s, uint64_t seq, int n)
{
    Tongban__RecordUpsert u[4];
    Tongban__Entry e[4], *ep[4];
    uint8_t payload[4][128], id[4][16];
    char key[4][16];
    for (int i = 0; i < n; i++) {
        snprintf(key[i], sizeof key[i], "d%" PRIu64 "-%d", seq, i);
        tongban__record_upsert__init(&u[i]);
        u[i].catalog = (char *)"hkd";
        u[i].key = key[i];
        u[i].body = (char *)"{\"bad\": 1}";
        u[i].origin = (char *)"dls";
        u[i].version = 1;
        u[i].hlc = H;
        tongban__entry__init(&e[i]);
        memset(id[i], i, sizeof id[i]);
        e[i].id.data = id[i];
        e[i].id.len = sizeof id[i];
        e[i].type = TONGBAN__ENTRY_TYPE__RECORD_UPSERT;
        e[i].payload.len = tongban__record_upsert__pack(&u[i], payload[i]);
        e[i].payload.data = payload[i];
        ep[i] = &e[i];
    }
    Tongban__Batch b = TONGBAN__BATCH__INIT;
    b.sender = (char *)"dls";
    b.seq = seq;
    b.dest = (char *)"nodeR";
    b.hlc = H;
    b.n_entries = (size_t)n;
    b.entries = ep;
    int applied = -1;
    size_t dead = 0;
    char err[512] = "";
    static const uint8_t signed_bytes[] = {9, 9, 9};
    CHECK_MSG(tb_store_apply_batch(s, &b, signed_bytes, sizeof signed_bytes, &applied, &dead, err, sizeof err) ==
                  TB_OK && applied == 1 && dead == (size_t)n,
              "%s", err);
}

static void retry_dl(tb_store_t *s, long long id)
{
    char err[512] = "";
    CHECK_MSG(tb_store_retry_dead_letter(s, id, err, sizeof err) == TB_OK, "%lld: %s", id, err);
}

static void test_dead_letters(tb_store_t *s)
{
    char err[512] = "", q[256];
    int64_t n = -1, m = -1;
    sql("ALTER TABLE tongban.records ADD CONSTRAINT hk_chk CHECK (catalog <> 'hkd' OR NOT body ? 'bad')");
    apply_refused(s, 1, 2);   /* two dead letters */
    apply_refused(s, 2, 1);
    apply_refused(s, 3, 1);
    sql("ALTER TABLE tongban.records DROP CONSTRAINT hk_chk");
    long long a = dl_id(1, 0), b = dl_id(1, 1), c = dl_id(2, 0), e = dl_id(3, 0);
    CHECK(a > 0 && b > 0 && c > 0 && e > 0);
    retry_dl(s, a);
    retry_dl(s, c);
    retry_dl(s, e);
    snprintf(q, sizeof q,
             "UPDATE tongban.dead_letters SET retried_at = now() - interval '40 days' WHERE id IN (%lld, %lld)", a, c);
    sql(q);
    /* b is pending (never retried): stays and keeps batch 1; e is recent */
    CHECK(tb_store_prune_dead_letters(s, 30, 100, &n, &m, err, sizeof err) == TB_OK);
    CHECK_MSG(n == 2 && m == 1, "letters %" PRId64 " batches %" PRId64 " %s", n, m, err);
    CHECK(qint("SELECT count(*) FROM tongban.dead_letters WHERE sender = 'dls'") == 2);
    CHECK(dl_id(1, 1) == b && dl_id(3, 0) == e && dl_id(1, 0) == -1 && dl_id(2, 0) == -1);
    PGresult *r = PQexec(db, "SELECT string_agg(seq::text, ',' ORDER BY seq) FROM tongban.dead_letter_batches"
                             " WHERE sender = 'dls'");
    CHECK(PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "1,3") == 0);
    PQclear(r);
    CHECK(tb_store_prune_dead_letters(s, 30, 100, &n, &m, err, sizeof err) == TB_OK && n == 0 && m == 0);
    /* the recent one goes with a shorter retention, with its batch */
    sql("UPDATE tongban.dead_letters SET retried_at = now() - interval '2 days' WHERE sender = 'dls' AND seq = 3");
    CHECK(tb_store_prune_dead_letters(s, 1, 100, &n, &m, err, sizeof err) == TB_OK && n == 1 && m == 1);
    CHECK(qint("SELECT count(*) FROM tongban.dead_letter_batches WHERE sender = 'dls'") == 1);
}

static tb_node_config_t cfg_all(long days)
{
    tb_node_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.id, sizeof cfg.id, "nodeR");
    cfg.retention_inbox_days = days;
    cfg.retention_tombstone_days = days;
    cfg.retention_events_days = days;
    cfg.retention_idle_cursor_days = 0;
    cfg.retention_dead_letters_days = days;
    cfg.retention_interval_s = 60;
    return cfg;
}

static long long tombstones(const char *catalog)
{
    char q[256];
    snprintf(q, sizeof q, "SELECT count(*) FROM tongban.tombstones WHERE catalog = '%s'", catalog);
    return qint(q);
}

/* The schedule, chunking over ticks, 0 = keep forever, counters, metrics. */
static void test_housekeep(tb_store_t *s)
{
    char err[512] = "";
    tb_housekeep_t *hk = NULL;
    tb_housekeep_counters_t c;
    CHECK(tb_housekeep_new(&hk) == TB_OK && hk);
    if (!hk)
        return;
    tb_housekeep_set_chunk(hk, 10);
    tb_node_config_t cfg = cfg_all(0);
    cfg.retention_tombstone_days = 30;   /* tombstones only */
    sql("DELETE FROM tongban.tombstones");
    make_tombstones("hk", 35, 31);
    make_tombstones("hkn", 3, 1);

    uint64_t t0 = 5000, iv = 60000;
    CHECK(tb_housekeep_tick(hk, s, &cfg, t0, err, sizeof err) == TB_OK);          /* first tick: schedules */
    CHECK(tb_housekeep_tick(hk, s, &cfg, t0 + iv - 1, err, sizeof err) == TB_OK); /* not yet */
    tb_housekeep_counters(hk, &c);
    CHECK(tombstones("hk") == 35 && c.statements == 0 && c.passes == 0 && !c.busy);
    /* due: one chunk per tick */
    long long want[] = {25, 15, 5, 0};
    for (int i = 0; i < 4; i++) {
        CHECK(tb_housekeep_tick(hk, s, &cfg, t0 + iv + (uint64_t)i, err, sizeof err) == TB_OK);
        CHECK_MSG(tombstones("hk") == want[i], "tick %d: %lld left", i, tombstones("hk"));
        tb_housekeep_counters(hk, &c);
        CHECK(c.busy == (i < 3));
    }
    tb_housekeep_counters(hk, &c);
    CHECK(c.pruned[TB_HK_TOMBSTONES] == 35 && c.statements == 4 && c.passes == 1 && c.errors == 0);
    CHECK(tombstones("hkn") == 3);
    /* the next pass an interval after this one started */
    make_tombstones("hk2", 4, 31);
    CHECK(tb_housekeep_tick(hk, s, &cfg, t0 + 2 * iv - 1, err, sizeof err) == TB_OK && tombstones("hk2") == 4);
    CHECK(tb_housekeep_tick(hk, s, &cfg, t0 + 2 * iv, err, sizeof err) == TB_OK && tombstones("hk2") == 0);
    tb_housekeep_counters(hk, &c);
    CHECK(c.pruned[TB_HK_TOMBSTONES] == 39 && c.passes == 2 && !c.busy);

    /* 0 keeps forever: a pass runs no statement at all */
    make_tombstones("hk3", 4, 400);
    cfg.retention_tombstone_days = 0;
    CHECK(tb_housekeep_tick(hk, s, &cfg, t0 + 3 * iv, err, sizeof err) == TB_OK);
    tb_housekeep_counters(hk, &c);
    CHECK(tombstones("hk3") == 4 && c.statements == 5 && c.passes == 3 && !c.busy);

    /* without a store the pass waits */
    cfg.retention_tombstone_days = 30;
    CHECK(tb_housekeep_tick(hk, NULL, &cfg, t0 + 4 * iv, err, sizeof err) == TB_OK);
    tb_housekeep_counters(hk, &c);
    CHECK(tombstones("hk3") == 4 && c.passes == 3);
    CHECK(tb_housekeep_tick(hk, s, &cfg, t0 + 4 * iv + 1, err, sizeof err) == TB_OK && tombstones("hk3") == 0);

    /* a failed statement is counted and ends the pass */
    make_tombstones("hk4", 2, 31);
    PQclear(PQexec(tb_store_conn(s), "BEGIN"));
    CHECK(tb_housekeep_tick(hk, s, &cfg, t0 + 6 * iv, err, sizeof err) == TB_ERR_INVALID);
    PQclear(PQexec(tb_store_conn(s), "ROLLBACK"));
    tb_housekeep_counters(hk, &c);
    CHECK(c.errors == 1 && !c.busy && tombstones("hk4") == 2);
    CHECK(tb_housekeep_tick(hk, s, &cfg, t0 + 6 * iv + 1, err, sizeof err) == TB_OK && tombstones("hk4") == 2);
    CHECK(tb_housekeep_tick(hk, s, &cfg, t0 + 7 * iv, err, sizeof err) == TB_OK && tombstones("hk4") == 0);

    /* every table in one pass, in order, each until done */
    cfg = cfg_all(30);
    tb_housekeep_set_chunk(hk, 4);
    sql("DELETE FROM tongban.inbox");
    sql("DELETE FROM tongban.events");
    for (int i = 1; i <= 6; i++)
        CHECK(apply(s, "h1", (uint64_t)i) == 1);
    sql("UPDATE tongban.inbox SET applied_at = now() - interval '31 days' WHERE sender = 'h1'");
    make_tombstones("hk5", 5, 31);
    sql("DELETE FROM tongban.event_cursors");
    make_events(9, 31);
    tb_housekeep_counters_t before;
    tb_housekeep_counters(hk, &before);
    uint64_t now = t0 + 8 * iv;
    int ticks = 0;
    do {
        CHECK(tb_housekeep_tick(hk, s, &cfg, now++, err, sizeof err) == TB_OK);
        tb_housekeep_counters(hk, &c);
        ticks++;
    } while (c.busy && ticks < 50);
    CHECK(inbox_rows("h1") == 1 && watermark(s, "h1") == 5);
    CHECK(tombstones("hk5") == 0 && qint("SELECT count(*) FROM tongban.events WHERE at < now() - interval '30 days'") == 0);
    CHECK(c.pruned[TB_HK_INBOX] - before.pruned[TB_HK_INBOX] == 5);
    CHECK(c.pruned[TB_HK_TOMBSTONES] - before.pruned[TB_HK_TOMBSTONES] == 5);
    CHECK(c.pruned[TB_HK_EVENTS] - before.pruned[TB_HK_EVENTS] == 9);
    /* inbox 4+1 (2 statements), tombstones 4+1 (2), events 4+4+1 (3), dead letters 0 (1) */
    CHECK_MSG(c.statements - before.statements == 8 && ticks == 8, "statements %" PRIu64 " ticks %d",
              c.statements - before.statements, ticks);

    /* the counters as metrics */
    {
        tb_node_config_t mcfg;
        memset(&mcfg, 0, sizeof mcfg);
        snprintf(mcfg.id, sizeof mcfg.id, "nodeR");
        node_metrics_t *nm = NULL;
        CHECK(node_metrics_new(&mcfg, &nm, err, sizeof err) == TB_OK && nm);
        node_stats_t st;
        memset(&st, 0, sizeof st);
        node_gauges_t g = {.pg_connected = 1, .housekeep = NULL};
        char *text = NULL;
        size_t len = 0;
        CHECK(nm && node_metrics_render(nm, &st, &g, &text, &len) == TB_OK && text);
        CHECK(text && sample(text, "tongban_node_pruned_rows_total{table=\"inbox\"}") == 0);
        free(text);
        text = NULL;
        g.housekeep = hk;
        CHECK(nm && node_metrics_render(nm, &st, &g, &text, &len) == TB_OK && text);
        CHECK(text && sample(text, "tongban_node_pruned_rows_total{table=\"tombstones\"}") ==
                          (double)c.pruned[TB_HK_TOMBSTONES]);
        CHECK(text && sample(text, "tongban_node_pruned_rows_total{table=\"inbox\"}") == 5);
        CHECK(text && sample(text, "tongban_node_pruned_rows_total{table=\"events\"}") == 9);
        CHECK(text && sample(text, "tongban_node_pruned_rows_total{table=\"dead_letter_batches\"}") == 0);
        CHECK(text && sample(text, "tongban_node_housekeeping_errors_total") == 1);
        free(text);
        node_metrics_destroy(&nm);
    }

    /* the hub's journal retention is a floor under inbox_days (never above
     * 0 = forever); 3 rows of 6 days ago with inbox_days 5 */
    sql("DELETE FROM tongban.inbox");
    for (int i = 1; i <= 3; i++)
        CHECK(apply(s, "fl", (uint64_t)i) == 1);
    sql("UPDATE tongban.inbox SET applied_at = now() - interval '6 days' WHERE sender = 'fl'");
    cfg = cfg_all(0);
    cfg.retention_inbox_days = 5;
    CHECK(tb_housekeep_inbox_days(hk, &cfg) == 5);
    tb_housekeep_set_inbox_floor(hk, 8);
    CHECK(tb_housekeep_inbox_days(hk, &cfg) == 8);
    cfg.retention_inbox_days = 0;
    CHECK(tb_housekeep_inbox_days(hk, &cfg) == 0);
    cfg.retention_inbox_days = 9;
    CHECK(tb_housekeep_inbox_days(hk, &cfg) == 9);
    cfg.retention_inbox_days = 5;
    for (int floor = 8; floor >= 0; floor -= 8) {   /* 8: all kept; then none: the two older go */
        tb_housekeep_set_inbox_floor(hk, floor);
        now += iv;
        ticks = 0;
        do {
            CHECK(tb_housekeep_tick(hk, s, &cfg, now++, err, sizeof err) == TB_OK);
            tb_housekeep_counters(hk, &c);
            ticks++;
        } while (c.busy && ticks < 50);
        CHECK_MSG(inbox_rows("fl") == (floor ? 3 : 1), "floor %d: %lld rows", floor, inbox_rows("fl"));
    }
    CHECK(watermark(s, "fl") == 2);

    tb_housekeep_destroy(&hk);
    CHECK(hk == NULL);
    tb_housekeep_destroy(&hk);
    tb_housekeep_counters(NULL, &c);
    CHECK(c.passes == 0 && c.pruned[TB_HK_INBOX] == 0);
    CHECK(tb_housekeep_tick(NULL, s, &cfg, 1, err, sizeof err) == TB_OK);
    CHECK(strcmp(tb_housekeep_table_name(TB_HK_DEAD_LETTER_BATCHES), "dead_letter_batches") == 0);
    CHECK(tb_housekeep_table_name(TB_HK_TABLES) == NULL);
}

int main(void)
{
    const char *conninfo = getenv("TB_TEST_PG_CONNINFO");
    if (!conninfo) {
        fprintf(stderr, "test_housekeep_pg: TB_TEST_PG_CONNINFO not set (run through tests/lib/with-pg.sh)\n");
        return 1;
    }
    db = PQconnectdb(conninfo);
    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "test_housekeep_pg: cannot connect: %s", PQerrorMessage(db));
        PQfinish(db);
        return 1;
    }
    char err[512] = "";
    tb_store_t *s = NULL;
    tb_err_t rc = tb_store_open(conninfo, "nodeR", &s, err, sizeof err);
    CHECK_MSG(rc == TB_OK && s, "open: %s", err);
    if (s) {
        test_schema();
        test_args(s);
        test_inbox(s);
        test_tombstones(s);
        test_events(s);
        test_dead_letters(s);
        test_housekeep(s);
        tb_store_destroy(&s);
    }
    PQfinish(db);
    return tbtest_done("test_housekeep_pg");
}
