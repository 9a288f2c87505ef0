/* test_pgstore_pg.c -- hub/pgstore.c against a real PostgreSQL
 * (tests/lib/with-pg.sh): group commit, readers by range and dest, cursors,
 * revocations, gc with the anchor, recovery (gapless, chain checked, records
 * replayed for dedup), and epoch fencing of a displaced holder. */
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pgstore.h"
#include "tbtest.h"

static const char *conninfo;

static void sql(const char *q)
{
    PGconn *c = PQconnectdb(conninfo);
    PGresult *r = PQexec(c, q);
    ExecStatusType st = PQresultStatus(r);
    CHECK_MSG(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK, "%s: %s", q, PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
}

typedef struct {
    uint64_t n, last, sum_seq;
    int order_ok;
} seen_t;

static void on_rec(void *arg, const jrec_t *rec)
{
    seen_t *s = arg;
    if (s->n && rec->hub_seq != s->last + 1) s->order_ok = 0;
    s->last = rec->hub_seq;
    s->n++;
    s->sum_seq += rec->sender_seq;
}

static pgstore_t *open_store(seen_t *seen, tb_err_t *rc, char *err, size_t errlen)
{
    pgstore_opts_t o;
    memset(&o, 0, sizeof o);
    o.conninfo = conninfo;
    o.app_name = "test_pgstore";
    o.timeout_ms = 3000;
    o.holder = "test";
    o.verify_chain = 1;
    o.on_record = on_rec;
    o.arg = seen;
    memset(seen, 0, sizeof *seen);
    seen->order_ok = 1;
    pgstore_t *s = NULL;
    *rc = pgstore_open(&o, &s, NULL, err, errlen);
    return s;
}

int main(void)
{
    char err[512];
    tb_err_t rc;
    seen_t seen;
    conninfo = getenv("TB_TEST_PG_CONNINFO");
    if (!conninfo) {
        fprintf(stderr, "TB_TEST_PG_CONNINFO not set (run under tests/lib/with-pg.sh)\n");
        return 1;
    }
    pgstore_t *s = open_store(&seen, &rc, err, sizeof err);
    CHECK_MSG(rc == TB_OK, "%s", err);
    if (!s) return tbtest_done("test_pgstore_pg");
    CHECK(pgstore_last_seq(s) == 0 && seen.n == 0);

    /* group commit: 300 appends, one commit; invisible before it */
    uint8_t batch[300];
    for (int i = 0; i < 300; i++) {
        uint64_t hs = 0;
        memset(batch, i & 0xff, sizeof batch);
        const char *dest = i % 3 == 0 ? "topic:lic" : i % 3 == 1 ? "n2" : "n3";
        CHECK(pgstore_append(s, "n1", 1000 + (uint64_t)i, dest, batch, (size_t)i + 1, &hs, err, sizeof err) == TB_OK);
        CHECK(hs == (uint64_t)i + 1);
    }
    CHECK(pgstore_durable_seq(s) == 0 && pgstore_last_seq(s) == 300);
    pgstore_reader_t *r = NULL;
    const char *d2[] = { "n2", "topic:lic" };
    CHECK(pgstore_reader_new(s, 0, d2, 2, &r, err, sizeof err) == TB_OK);
    jrec_t rec;
    int got = 1;
    CHECK(pgstore_reader_next(r, &rec, &got, err, sizeof err) == TB_OK && got == 0);
    CHECK_MSG(pgstore_commit(s, err, sizeof err) == TB_OK, "%s", err);
    CHECK(pgstore_durable_seq(s) == 300);

    /* reader: only n2 and topic:lic, in order, batch bytes intact */
    uint64_t n = 0, prev = 0;
    int ok = 1;
    while (pgstore_reader_next(r, &rec, &got, err, sizeof err) == TB_OK && got) {
        n++;
        if (rec.hub_seq <= prev || strcmp(rec.dest, "n3") == 0) ok = 0;
        if (rec.batch_len != rec.hub_seq || rec.batch[0] != (uint8_t)((rec.hub_seq - 1) & 0xff)) ok = 0;
        if (rec.sender_seq != 999 + rec.hub_seq) ok = 0;
        prev = rec.hub_seq;
    }
    CHECK(ok);
    CHECK_MSG(n == 200, "read %llu", (unsigned long long)n);
    CHECK(pgstore_reader_pos(r) == 300);
    pgstore_reader_destroy(&r);
    CHECK(pgstore_reader_new(s, 250, d2, 1, &r, err, sizeof err) == TB_OK);   /* only n2, after 250 */
    n = 0;
    while (pgstore_reader_next(r, &rec, &got, err, sizeof err) == TB_OK && got) n++;
    CHECK_MSG(n == 17, "n2 after 250: %llu", (unsigned long long)n);
    pgstore_reader_destroy(&r);

    /* cursors and revocations */
    cursors_t *c = cursors_new_memory();
    cursors_set(c, "n2", 120);
    cursors_set(c, "n3", 90);
    CHECK_MSG(pgstore_cursors_save(s, c, err, sizeof err) == TB_OK, "%s", err);
    CHECK(!cursors_dirty(c));
    cursors_destroy(&c);
    CHECK_MSG(pgstore_revoke(s, "n9", 12345, err, sizeof err) == TB_OK, "%s", err);

    /* gc: only the prefix below min and past retention; anchor kept */
    size_t removed = 0;
    CHECK_MSG(pgstore_gc(s, 100, 0, &removed, err, sizeof err) == TB_OK, "%s", err);
    CHECK_MSG(removed == 100, "removed %zu", removed);
    CHECK(pgstore_gc(s, 200, 3600000, &removed, err, sizeof err) == TB_OK && removed == 0);  /* retention */
    pgstore_destroy(&s);

    /* recovery: rows 101..300 replayed in order, chain verified from the anchor */
    s = open_store(&seen, &rc, err, sizeof err);
    CHECK_MSG(rc == TB_OK, "%s", err);
    CHECK_MSG(seen.n == 200 && seen.order_ok && seen.last == 300, "n=%llu", (unsigned long long)seen.n);
    CHECK(pgstore_last_seq(s) == 300);
    c = cursors_new_memory();
    CHECK(pgstore_cursors_load(s, c, err, sizeof err) == TB_OK);
    CHECK(cursors_get(c, "n2") == 120 && cursors_get(c, "n3") == 90);
    cursors_destroy(&c);
    uint64_t hs = 0;
    CHECK(pgstore_append(s, "n2", 7, "n1", batch, 10, &hs, err, sizeof err) == TB_OK && hs == 301);
    CHECK(pgstore_commit(s, err, sizeof err) == TB_OK);

    /* fencing: a second holder claims the store; the first can no longer write */
    seen_t seen2;
    pgstore_t *s2 = open_store(&seen2, &rc, err, sizeof err);
    CHECK_MSG(rc == TB_OK && seen2.n == 201, "%s", err);
    CHECK(pgstore_epoch(s2) > pgstore_epoch(s));
    CHECK(pgstore_append(s, "n2", 8, "n1", batch, 10, &hs, err, sizeof err) == TB_OK);
    rc = pgstore_commit(s, err, sizeof err);
    CHECK_MSG(rc == TB_ERR_REFUSED, "commit of a displaced holder: %d %s", (int)rc, err);
    CHECK(pgstore_broken(s));
    pgstore_destroy(&s);
    CHECK(pgstore_append(s2, "n2", 8, "n1", batch, 10, &hs, err, sizeof err) == TB_OK && hs == 302);
    CHECK(pgstore_commit(s2, err, sizeof err) == TB_OK);
    pgstore_destroy(&s2);

    /* tampering: a changed batch breaks the chain at its hub_seq */
    sql("UPDATE tongban_hub.batches SET batch = '\\x00' WHERE hub_seq = 200");
    s = open_store(&seen, &rc, err, sizeof err);
    CHECK_MSG(rc == TB_ERR_PROTO && strstr(err, "hub_seq 200"), "tampered: %d %s", (int)rc, err);
    pgstore_destroy(&s);
    /* a gap is refused too */
    sql("DELETE FROM tongban_hub.batches WHERE hub_seq >= 150 AND hub_seq <= 250");
    s = open_store(&seen, &rc, err, sizeof err);
    CHECK_MSG(rc == TB_ERR_PROTO && strstr(err, "gap"), "gap: %d %s", (int)rc, err);
    pgstore_destroy(&s);

    /* an unreachable server: bounded, TB_ERR_UNAVAILABLE */
    pgstore_opts_t o;
    memset(&o, 0, sizeof o);
    o.conninfo = "host=127.0.0.1 port=1 dbname=x connect_timeout=2";
    o.timeout_ms = 1000;
    CHECK(pgstore_open(&o, &s, NULL, err, sizeof err) == TB_ERR_UNAVAILABLE && !s);
    return tbtest_done("test_pgstore_pg");
}
