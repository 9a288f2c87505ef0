/* pgstore.c -- the hub's batch store on PostgreSQL: group commit by one
 * multi-row INSERT, hash chain in the table, epoch fencing on every write,
 * readers by hub_seq ranges. See pgstore.h. */
#include "pgstore.h"

#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "errbuf.h"
#include "wire.h"

#define HASH_LEN 32
#define RECOVER_CHUNK 2000
#define READ_CHUNK 32
#define OID_INT8 20
#define OID_TEXT 25
#define OID_BYTEA 17
#define COLS 7                      /* hub_seq, accepted_ms, sender, sender_seq, dest, batch, hash */
#define MAX_ROWS_PER_INSERT (65535 / COLS)

typedef struct {
    uint64_t hub_seq, sender_seq;
    int64_t accepted_ms;
    char *sender, *dest;
    uint8_t *batch;
    size_t len;
    uint8_t hash[HASH_LEN];
    char num[3][24];                /* text of hub_seq, accepted_ms, sender_seq */
} pend_t;

struct pgstore {
    PGconn *conn;
    long timeout_ms;
    int64_t epoch;
    char epoch_txt[24];
    uint64_t last_seq, durable_seq, records, bytes;
    uint8_t last_hash[HASH_LEN], durable_hash[HASH_LEN];
    pend_t *pend;
    size_t npend, pendcap;
    EVP_MD_CTX *md;
    int broken;
};

struct pgstore_reader {
    pgstore_t *s;
    uint64_t pos;                   /* last hub_seq examined */
    char *dests;                    /* text[] literal */
    PGresult *res;
    int row, nrows;
    uint64_t upto;                  /* durable_seq when res was fetched */
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t be64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return be64toh(v);
}

/* Trims libpq's trailing newline into err. */
static void pq_err(char *err, size_t errlen, const char *what, const char *msg)
{
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' ')) n--;
    tb_seterr(err, errlen, "%s: %.*s", what, (int)n, msg);
}

PGconn *pgstore_connect(const char *conninfo, const char *app_name, long timeout_ms, char *err,
                        size_t errlen)
{
    char ct[24], tut[24], opts[320];
    long secs = timeout_ms / 1000 > 0 ? timeout_ms / 1000 : 1;
    snprintf(ct, sizeof ct, "%ld", secs < 2 ? 2 : secs);   /* libpq treats 1 as 2 anyway */
    snprintf(tut, sizeof tut, "%ld", timeout_ms);
    /* server side: a statement or an open transaction never outlives the
     * hub's patience, and a vanished hub's sessions (and its advisory lock)
     * end within ~timeout + 8 s */
    snprintf(opts, sizeof opts,
             "-c statement_timeout=%ld -c idle_in_transaction_session_timeout=%ld -c client_min_messages=warning "
             "-c tcp_keepalives_idle=5 -c tcp_keepalives_interval=1 -c tcp_keepalives_count=3",
             timeout_ms, timeout_ms * 2);
    /* ours first, the operator's conninfo last: what it says wins */
    const char *keys[] = { "connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval",
                           "keepalives_count", "tcp_user_timeout", "application_name", "options",
                           "dbname", NULL };
    const char *vals[] = { ct, "1", "2", "1", "2", tut, app_name ? app_name : "tongban-hub", opts, conninfo,
                           NULL };
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c) {
        tb_seterr(err, errlen, "postgresql: out of memory");
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        pq_err(err, errlen, "postgresql connect", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    return c;
}

PGresult *pgstore_run(PGconn **conn, long timeout_ms, const char *sql, int n, const Oid *types,
                      const char *const *vals, const int *lens, const int *fmts, int binary, char *err,
                      size_t errlen)
{
    PGconn *c = *conn;
    PGresult *last = NULL, *bad = NULL;
    if (!c) {
        tb_seterr(err, errlen, "postgresql: not connected");
        return NULL;
    }
    int ok = n >= 0 ? PQsendQueryParams(c, sql, n, types, vals, lens, fmts, binary) : PQsendQuery(c, sql);
    if (!ok) {
        pq_err(err, errlen, "postgresql send", PQerrorMessage(c));
        goto broken;
    }
    uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;
    for (;;) {
        while (PQisBusy(c)) {
            uint64_t now = mono_ms();
            if (now >= deadline) {
                tb_seterr(err, errlen, "postgresql: no answer within %ld ms", timeout_ms);
                goto broken;
            }
            struct pollfd pfd = { PQsocket(c), POLLIN, 0 };
            int pr = poll(&pfd, 1, (int)(deadline - now));
            if (pr < 0 && errno != EINTR) {
                tb_seterr(err, errlen, "postgresql poll: %s", strerror(errno));
                goto broken;
            }
            if (!PQconsumeInput(c)) {
                pq_err(err, errlen, "postgresql", PQerrorMessage(c));
                goto broken;
            }
        }
        PGresult *r = PQgetResult(c);
        if (!r) break;
        ExecStatusType st = PQresultStatus(r);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
            if (!bad) {
                bad = r;
                pq_err(err, errlen, "postgresql", PQresultErrorMessage(r));
            } else {
                PQclear(r);
            }
        } else {
            PQclear(last);
            last = r;
        }
    }
    if (bad) {
        PQclear(bad);
        PQclear(last);
        if (PQstatus(c) == CONNECTION_BAD) goto broken_noerr;
        return NULL;
    }
    return last;
broken:
    PQclear(bad);
    PQclear(last);
broken_noerr:
    PQfinish(c);
    *conn = NULL;
    return NULL;
}

static tb_err_t run_ok(PGconn **conn, long timeout_ms, const char *sql, char *err, size_t errlen)
{
    PGresult *r = pgstore_run(conn, timeout_ms, sql, -1, NULL, NULL, NULL, NULL, 0, err, errlen);
    if (!r) return *conn ? TB_ERR_DB : TB_ERR_UNAVAILABLE;
    PQclear(r);
    return TB_OK;
}

tb_err_t pgstore_schema(PGconn **conn, long timeout_ms, char *err, size_t errlen)
{
    static const char ddl[] =
        "BEGIN;"
        "SELECT pg_advisory_xact_lock(7478016);"
        "CREATE SCHEMA IF NOT EXISTS tongban_hub;"
        "CREATE TABLE IF NOT EXISTS tongban_hub.batches ("
        "  hub_seq bigint PRIMARY KEY, accepted_ms bigint NOT NULL, sender text NOT NULL,"
        "  sender_seq bigint NOT NULL, dest text NOT NULL, batch bytea NOT NULL, hash bytea NOT NULL);"
        "CREATE INDEX IF NOT EXISTS batches_dest ON tongban_hub.batches (dest, hub_seq);"
        "CREATE TABLE IF NOT EXISTS tongban_hub.meta ("
        "  id int PRIMARY KEY CHECK (id = 1), epoch bigint NOT NULL DEFAULT 0, holder text,"
        "  lock_pid int, since timestamptz, anchor_seq bigint NOT NULL DEFAULT 0,"
        "  anchor_hash bytea NOT NULL DEFAULT decode(repeat('00', 32), 'hex'));"
        "INSERT INTO tongban_hub.meta (id) VALUES (1) ON CONFLICT DO NOTHING;"
        "CREATE TABLE IF NOT EXISTS tongban_hub.cursors (node text PRIMARY KEY, hub_seq bigint NOT NULL);"
        "CREATE TABLE IF NOT EXISTS tongban_hub.revoked (node text PRIMARY KEY, revoked_ms bigint NOT NULL);"
        "CREATE TABLE IF NOT EXISTS tongban_hub.hub_instances ("
        "  id text PRIMARY KEY, role text NOT NULL, since timestamptz, heartbeat_at timestamptz NOT NULL,"
        "  endpoint text, pid int);"
        "COMMIT;";
    return run_ok(conn, timeout_ms, ddl, err, errlen);
}

/* SHA-256 of the journal's record body for these fields. Returns 0 or -1. */
static int chain_hash(EVP_MD_CTX *md, uint64_t hub_seq, int64_t accepted_ms, const uint8_t prev[HASH_LEN],
                      const char *sender, uint64_t sender_seq, const char *dest, const uint8_t *batch,
                      size_t len, uint8_t out[HASH_LEN])
{
    uint8_t head[8 + 8 + HASH_LEN + 2 + 255 + 8 + 2 + 255 + 4], *p = head;
    size_t sl = strlen(sender), dl = strlen(dest);
    uint64_t v;
    uint16_t s16;
    uint32_t s32;
    if (sl == 0 || sl > 255 || dl == 0 || dl > 255) return -1;
    v = htole64(hub_seq); memcpy(p, &v, 8); p += 8;
    v = htole64((uint64_t)accepted_ms); memcpy(p, &v, 8); p += 8;
    memcpy(p, prev, HASH_LEN); p += HASH_LEN;
    s16 = htole16((uint16_t)sl); memcpy(p, &s16, 2); p += 2;
    memcpy(p, sender, sl); p += sl;
    v = htole64(sender_seq); memcpy(p, &v, 8); p += 8;
    s16 = htole16((uint16_t)dl); memcpy(p, &s16, 2); p += 2;
    memcpy(p, dest, dl); p += dl;
    s32 = htole32((uint32_t)len); memcpy(p, &s32, 4); p += 4;
    unsigned int n = 0;
    if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 || EVP_DigestUpdate(md, head, (size_t)(p - head)) != 1 ||
        (len && EVP_DigestUpdate(md, batch, len) != 1) || EVP_DigestFinal_ex(md, out, &n) != 1 || n != HASH_LEN)
        return -1;
    return 0;
}

static tb_err_t fail_rc(pgstore_t *self)
{
    self->broken = 1;
    return self->conn ? TB_ERR_DB : TB_ERR_UNAVAILABLE;
}

/* Recovery: every row after anchor_seq, in chunks, gapless, chain checked. */
static tb_err_t recover(pgstore_t *self, const pgstore_opts_t *o, uint64_t anchor_seq, pgstore_report_t *rep,
                        char *err, size_t errlen)
{
    uint64_t after = anchor_seq;
    for (;;) {
        char a[24], lim[16];
        snprintf(a, sizeof a, "%" PRIu64, after);
        snprintf(lim, sizeof lim, "%d", RECOVER_CHUNK);
        const char *vals[] = { a, lim };
        PGresult *r = pgstore_run(&self->conn, self->timeout_ms * 4,
                                  "SELECT hub_seq, accepted_ms, sender, sender_seq, dest, batch, hash "
                                  "FROM tongban_hub.batches WHERE hub_seq > $1::int8 ORDER BY hub_seq LIMIT $2::int8",
                                  2, NULL, vals, NULL, NULL, 1, err, errlen);
        if (!r) return fail_rc(self);
        int n = PQntuples(r);
        for (int i = 0; i < n; i++) {
            jrec_t rec;
            rec.hub_seq = be64(PQgetvalue(r, i, 0));
            rec.accepted_ms = (int64_t)be64(PQgetvalue(r, i, 1));
            rec.sender = PQgetvalue(r, i, 2);
            rec.sender_seq = be64(PQgetvalue(r, i, 3));
            rec.dest = PQgetvalue(r, i, 4);
            rec.batch = (const uint8_t *)PQgetvalue(r, i, 5);
            rec.batch_len = (size_t)PQgetlength(r, i, 5);
            const uint8_t *hash = (const uint8_t *)PQgetvalue(r, i, 6);
            if (rec.hub_seq != self->last_seq + 1) {
                tb_seterr(err, errlen, "tongban_hub.batches: hub_seq %" PRIu64 " follows %" PRIu64 " (gap)",
                          rec.hub_seq, self->last_seq);
                PQclear(r);
                return TB_ERR_PROTO;
            }
            if (PQgetlength(r, i, 6) != HASH_LEN) {
                tb_seterr(err, errlen, "tongban_hub.batches: hub_seq %" PRIu64 ": bad hash length", rec.hub_seq);
                PQclear(r);
                return TB_ERR_PROTO;
            }
            if (o->verify_chain) {
                uint8_t h[HASH_LEN];
                if (chain_hash(self->md, rec.hub_seq, rec.accepted_ms, self->last_hash, rec.sender,
                               rec.sender_seq, rec.dest, rec.batch, rec.batch_len, h) != 0 ||
                    memcmp(h, hash, HASH_LEN) != 0) {
                    tb_seterr(err, errlen, "tongban_hub.batches: hub_seq %" PRIu64 ": hash chain broken",
                              rec.hub_seq);
                    PQclear(r);
                    return TB_ERR_PROTO;
                }
            }
            memcpy(self->last_hash, hash, HASH_LEN);
            self->last_seq = rec.hub_seq;
            self->records++;
            self->bytes += rec.batch_len;
            if (!rep->first_seq) rep->first_seq = rec.hub_seq;
            if (o->on_record) o->on_record(o->arg, &rec);
        }
        after = self->last_seq;
        PQclear(r);
        if (n < RECOVER_CHUNK) break;
    }
    self->durable_seq = self->last_seq;
    memcpy(self->durable_hash, self->last_hash, HASH_LEN);
    return TB_OK;
}

tb_err_t pgstore_open(const pgstore_opts_t *o, pgstore_t **out, pgstore_report_t *report, char *err,
                      size_t errlen)
{
    pgstore_report_t rep;
    tb_err_t rc;
    memset(&rep, 0, sizeof rep);
    *out = NULL;
    pgstore_t *self = calloc(1, sizeof *self);
    if (!self || !(self->md = EVP_MD_CTX_new())) {
        free(self);
        tb_seterr(err, errlen, "out of memory");
        return TB_ERR_NOMEM;
    }
    self->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 3000;
    if (!(self->conn = pgstore_connect(o->conninfo, o->app_name, self->timeout_ms, err, errlen))) {
        rc = TB_ERR_UNAVAILABLE;
        goto fail;
    }
    if ((rc = pgstore_schema(&self->conn, self->timeout_ms, err, errlen)) != TB_OK) goto fail;
    char pid[16];
    snprintf(pid, sizeof pid, "%d", o->lock_pid);
    const char *vals[] = { o->holder ? o->holder : "", pid };
    /* the claim waits for a write of the previous holder in progress (its
     * FOR SHARE lock on this row), so recovery below sees that write */
    PGresult *r = pgstore_run(&self->conn, self->timeout_ms,
                              "UPDATE tongban_hub.meta SET epoch = epoch + 1, holder = $1, lock_pid = $2::int,"
                              " since = now() WHERE id = 1 RETURNING epoch, anchor_seq, anchor_hash",
                              2, NULL, vals, NULL, NULL, 1, err, errlen);
    if (!r) {
        rc = self->conn ? TB_ERR_DB : TB_ERR_UNAVAILABLE;
        goto fail;
    }
    if (PQntuples(r) != 1 || PQgetlength(r, 0, 2) != HASH_LEN) {
        PQclear(r);
        tb_seterr(err, errlen, "tongban_hub.meta: row 1 missing or damaged");
        rc = TB_ERR_PROTO;
        goto fail;
    }
    self->epoch = (int64_t)be64(PQgetvalue(r, 0, 0));
    snprintf(self->epoch_txt, sizeof self->epoch_txt, "%" PRId64, self->epoch);
    uint64_t anchor = be64(PQgetvalue(r, 0, 1));
    memcpy(self->last_hash, PQgetvalue(r, 0, 2), HASH_LEN);
    PQclear(r);
    self->last_seq = anchor;
    if (o->before_recovery && (rc = o->before_recovery(o->arg, self, err, errlen)) != TB_OK) goto fail;
    if ((rc = recover(self, o, anchor, &rep, err, errlen)) != TB_OK) goto fail;
    rep.records = self->records;
    rep.bytes = self->bytes;
    rep.last_seq = self->last_seq;
    rep.epoch = self->epoch;
    if (report) *report = rep;
    *out = self;
    return TB_OK;
fail:
    pgstore_destroy(&self);
    return rc;
}

static void drop_pending(pgstore_t *self)
{
    for (size_t i = 0; i < self->npend; i++) {
        free(self->pend[i].sender);
        free(self->pend[i].dest);
        free(self->pend[i].batch);
    }
    self->npend = 0;
    self->last_seq = self->durable_seq;
    memcpy(self->last_hash, self->durable_hash, HASH_LEN);
}

void pgstore_destroy(pgstore_t **selfp)
{
    pgstore_t *self = selfp ? *selfp : NULL;
    if (!self) return;
    drop_pending(self);
    free(self->pend);
    if (self->conn) PQfinish(self->conn);
    EVP_MD_CTX_free(self->md);
    free(self);
    *selfp = NULL;
}

tb_err_t pgstore_append(pgstore_t *self, const char *sender, uint64_t sender_seq, const char *dest,
                        const uint8_t *batch, size_t len, uint64_t *hub_seq, char *err, size_t errlen)
{
    if (self->broken) {
        tb_seterr(err, errlen, "postgresql store unavailable (connection lost or fenced)");
        return TB_ERR_UNAVAILABLE;
    }
    if (!sender || !dest || !*sender || !*dest || strlen(sender) > JOURNAL_MAX_NAME ||
        strlen(dest) > JOURNAL_MAX_NAME || len > JOURNAL_MAX_BATCH) {
        tb_seterr(err, errlen, "bad record (sender, dest or batch size)");
        return TB_ERR_INVALID;
    }
    if (self->npend == self->pendcap) {
        size_t cap = self->pendcap ? self->pendcap * 2 : 256;
        pend_t *p = realloc(self->pend, cap * sizeof *p);
        if (!p) goto nomem;
        self->pend = p;
        self->pendcap = cap;
    }
    pend_t *e = &self->pend[self->npend];
    memset(e, 0, sizeof *e);
    e->hub_seq = self->last_seq + 1;
    e->accepted_ms = tb_wall_ms();
    e->sender_seq = sender_seq;
    e->len = len;
    e->sender = strdup(sender);
    e->dest = strdup(dest);
    e->batch = malloc(len ? len : 1);
    if (!e->sender || !e->dest || !e->batch) {
        free(e->sender);
        free(e->dest);
        free(e->batch);
        goto nomem;
    }
    memcpy(e->batch, batch, len);
    if (chain_hash(self->md, e->hub_seq, e->accepted_ms, self->last_hash, sender, sender_seq, dest, batch, len,
                   e->hash) != 0) {
        free(e->sender);
        free(e->dest);
        free(e->batch);
        tb_seterr(err, errlen, "sha-256 failed");
        return TB_ERR_CRYPTO;
    }
    snprintf(e->num[0], sizeof e->num[0], "%" PRIu64, e->hub_seq);
    snprintf(e->num[1], sizeof e->num[1], "%" PRId64, e->accepted_ms);
    snprintf(e->num[2], sizeof e->num[2], "%" PRIu64, e->sender_seq);
    memcpy(self->last_hash, e->hash, HASH_LEN);
    self->last_seq = e->hub_seq;
    self->npend++;
    if (hub_seq) *hub_seq = e->hub_seq;
    return TB_OK;
nomem:
    tb_seterr(err, errlen, "out of memory");
    return TB_ERR_NOMEM;
}

/* One INSERT of pend[from, from + n), fenced by the epoch. */
static tb_err_t insert_rows(pgstore_t *self, size_t from, size_t n, char *err, size_t errlen)
{
    size_t np = 1 + n * COLS;
    tb_err_t rc = TB_ERR_NOMEM;
    const char **vals = calloc(np, sizeof *vals);
    int *lens = calloc(np, sizeof *lens), *fmts = calloc(np, sizeof *fmts);
    Oid *types = calloc(np, sizeof *types);
    size_t cap = 256 + n * 96, used = 0;
    char *sql = malloc(cap);
    PGresult *r = NULL;
    if (!vals || !lens || !fmts || !types || !sql) {
        tb_seterr(err, errlen, "out of memory");
        goto done;
    }
    vals[0] = self->epoch_txt;
    types[0] = OID_INT8;
    used += (size_t)snprintf(sql + used, cap - used,
                             "INSERT INTO tongban_hub.batches (hub_seq, accepted_ms, sender, sender_seq, dest, "
                             "batch, hash) SELECT * FROM (VALUES ");
    for (size_t i = 0; i < n; i++) {
        pend_t *e = &self->pend[from + i];
        size_t b = 1 + i * COLS;
        static const Oid t[COLS] = { OID_INT8, OID_INT8, OID_TEXT, OID_INT8, OID_TEXT, OID_BYTEA, OID_BYTEA };
        for (int k = 0; k < COLS; k++) types[b + (size_t)k] = t[k];
        vals[b] = e->num[0];
        vals[b + 1] = e->num[1];
        vals[b + 2] = e->sender;
        vals[b + 3] = e->num[2];
        vals[b + 4] = e->dest;
        vals[b + 5] = (const char *)e->batch;
        lens[b + 5] = (int)e->len;
        fmts[b + 5] = 1;
        vals[b + 6] = (const char *)e->hash;
        lens[b + 6] = HASH_LEN;
        fmts[b + 6] = 1;
        used += (size_t)snprintf(sql + used, cap - used, "%s($%zu,$%zu,$%zu,$%zu,$%zu,$%zu,$%zu)", i ? "," : "",
                                 b + 1, b + 2, b + 3, b + 4, b + 5, b + 6, b + 7);
    }
    snprintf(sql + used, cap - used,
             ") v WHERE EXISTS (SELECT 1 FROM tongban_hub.meta WHERE id = 1 AND epoch = $1 FOR SHARE)");
    r = pgstore_run(&self->conn, self->timeout_ms, sql, (int)np, types, vals, lens, fmts, 0, err, errlen);
    if (!r) {
        rc = self->conn ? TB_ERR_DB : TB_ERR_UNAVAILABLE;
        goto done;
    }
    if (strtoull(PQcmdTuples(r), NULL, 10) != n) {
        tb_seterr(err, errlen, "fenced: another hub claimed the store (epoch %s is no longer current)",
                  self->epoch_txt);
        rc = TB_ERR_REFUSED;
        goto done;
    }
    rc = TB_OK;
done:
    PQclear(r);
    free(vals);
    free(lens);
    free(fmts);
    free(types);
    free(sql);
    return rc;
}

tb_err_t pgstore_commit(pgstore_t *self, char *err, size_t errlen)
{
    if (self->npend == 0) return TB_OK;
    if (self->broken) {
        drop_pending(self);
        tb_seterr(err, errlen, "postgresql store unavailable");
        return TB_ERR_UNAVAILABLE;
    }
    /* one statement is one transaction: a burst above the parameter limit
     * (65535) would need an explicit transaction around several INSERTs */
    tb_err_t rc = TB_OK;
    int multi = self->npend > MAX_ROWS_PER_INSERT;
    if (multi && (rc = run_ok(&self->conn, self->timeout_ms, "BEGIN", err, errlen)) != TB_OK) goto fail;
    for (size_t from = 0; from < self->npend; from += MAX_ROWS_PER_INSERT) {
        size_t n = self->npend - from < MAX_ROWS_PER_INSERT ? self->npend - from : MAX_ROWS_PER_INSERT;
        if ((rc = insert_rows(self, from, n, err, errlen)) != TB_OK) goto fail;
    }
    if (multi && (rc = run_ok(&self->conn, self->timeout_ms, "COMMIT", err, errlen)) != TB_OK) goto fail;
    for (size_t i = 0; i < self->npend; i++) {
        self->bytes += self->pend[i].len;
        free(self->pend[i].sender);
        free(self->pend[i].dest);
        free(self->pend[i].batch);
    }
    self->records += self->npend;
    self->npend = 0;
    self->durable_seq = self->last_seq;
    memcpy(self->durable_hash, self->last_hash, HASH_LEN);
    return TB_OK;
fail:
    self->broken = 1;
    drop_pending(self);
    return rc;
}

uint64_t pgstore_last_seq(const pgstore_t *self) { return self ? self->last_seq : 0; }
uint64_t pgstore_durable_seq(const pgstore_t *self) { return self ? self->durable_seq : 0; }
uint64_t pgstore_bytes(const pgstore_t *self) { return self ? self->bytes : 0; }
uint64_t pgstore_records(const pgstore_t *self) { return self ? self->records : 0; }
int64_t pgstore_epoch(const pgstore_t *self) { return self ? self->epoch : 0; }
int pgstore_broken(const pgstore_t *self) { return !self || self->broken || !self->conn; }

/* ---- readers ---- */

tb_err_t pgstore_reader_new(pgstore_t *self, uint64_t after_seq, const char *const *dests, size_t n,
                            pgstore_reader_t **out, char *err, size_t errlen)
{
    size_t cap = 3;
    for (size_t i = 0; i < n; i++) cap += strlen(dests[i]) + 3;
    pgstore_reader_t *r = calloc(1, sizeof *r);
    char *d = malloc(cap);
    if (!r || !d) {
        free(r);
        free(d);
        tb_seterr(err, errlen, "out of memory");
        return TB_ERR_NOMEM;
    }
    /* ids and topic names are [A-Za-z0-9_.:-]: quoting suffices */
    size_t used = 0;
    d[used++] = '{';
    for (size_t i = 0; i < n; i++)
        used += (size_t)snprintf(d + used, cap - used, "%s\"%s\"", i ? "," : "", dests[i]);
    d[used++] = '}';
    d[used] = '\0';
    r->s = self;
    r->pos = after_seq;
    r->dests = d;
    *out = r;
    return TB_OK;
}

tb_err_t pgstore_reader_next(pgstore_reader_t *r, jrec_t *rec, int *got, char *err, size_t errlen)
{
    pgstore_t *s = r->s;
    *got = 0;
    if (!r->res || r->row >= r->nrows) {
        if (r->res && r->nrows < READ_CHUNK && r->upto > r->pos) r->pos = r->upto;  /* range exhausted */
        PQclear(r->res);
        r->res = NULL;
        r->row = r->nrows = 0;
        if (s->durable_seq <= r->pos) return TB_OK;
        if (s->broken) {
            tb_seterr(err, errlen, "postgresql store unavailable");
            return TB_ERR_UNAVAILABLE;
        }
        char a[24], u[24], lim[16];
        snprintf(a, sizeof a, "%" PRIu64, r->pos);
        snprintf(u, sizeof u, "%" PRIu64, s->durable_seq);
        snprintf(lim, sizeof lim, "%d", READ_CHUNK);
        const char *vals[] = { a, u, r->dests, lim };
        PGresult *res = pgstore_run(&s->conn, s->timeout_ms,
                                    "SELECT hub_seq, accepted_ms, sender, sender_seq, dest, batch "
                                    "FROM tongban_hub.batches WHERE hub_seq > $1::int8 AND hub_seq <= $2::int8"
                                    " AND dest = ANY($3::text[]) ORDER BY hub_seq LIMIT $4::int8",
                                    4, NULL, vals, NULL, NULL, 1, err, errlen);
        if (!res) {
            s->broken = 1;
            return s->conn ? TB_ERR_DB : TB_ERR_UNAVAILABLE;
        }
        r->res = res;
        r->nrows = PQntuples(res);
        r->upto = s->durable_seq;
        if (r->nrows == 0) {
            r->pos = r->upto;
            return TB_OK;
        }
    }
    PGresult *res = r->res;
    int i = r->row++;
    rec->hub_seq = be64(PQgetvalue(res, i, 0));
    rec->accepted_ms = (int64_t)be64(PQgetvalue(res, i, 1));
    rec->sender = PQgetvalue(res, i, 2);
    rec->sender_seq = be64(PQgetvalue(res, i, 3));
    rec->dest = PQgetvalue(res, i, 4);
    rec->batch = (const uint8_t *)PQgetvalue(res, i, 5);
    rec->batch_len = (size_t)PQgetlength(res, i, 5);
    r->pos = rec->hub_seq;
    if (r->row >= r->nrows && r->nrows < READ_CHUNK) r->pos = r->upto;
    *got = 1;
    return TB_OK;
}

uint64_t pgstore_reader_pos(const pgstore_reader_t *r)
{
    return r ? r->pos : 0;
}

void pgstore_reader_destroy(pgstore_reader_t **rp)
{
    pgstore_reader_t *r = rp ? *rp : NULL;
    if (!r) return;
    PQclear(r->res);
    free(r->dests);
    free(r);
    *rp = NULL;
}

/* ---- gc, cursors, revocations ---- */

tb_err_t pgstore_gc(pgstore_t *self, uint64_t min_acked, int64_t retention_ms, size_t *removed, char *err,
                    size_t errlen)
{
    char m[24], cut[24];
    if (removed) *removed = 0;
    if (self->broken) {
        tb_seterr(err, errlen, "postgresql store unavailable");
        return TB_ERR_UNAVAILABLE;
    }
    if (min_acked > self->durable_seq) min_acked = self->durable_seq;
    snprintf(m, sizeof m, "%" PRIu64, min_acked);
    snprintf(cut, sizeof cut, "%" PRId64, tb_wall_ms() - retention_ms);
    const char *vals[] = { self->epoch_txt, m, cut };
    /* only a prefix: up to the first row (<= min) still within retention */
    PGresult *r = pgstore_run(
        &self->conn, self->timeout_ms * 4,
        "WITH ok AS (SELECT 1 FROM tongban_hub.meta WHERE id = 1 AND epoch = $1::int8 FOR SHARE),"
        " lim AS (SELECT LEAST($2::int8, coalesce((SELECT min(hub_seq) - 1 FROM tongban_hub.batches"
        "   WHERE hub_seq <= $2::int8 AND accepted_ms >= $3::int8), $2::int8)) AS upto),"
        " d AS (DELETE FROM tongban_hub.batches WHERE hub_seq <= (SELECT upto FROM lim)"
        "   AND EXISTS (SELECT 1 FROM ok) RETURNING hub_seq, hash, length(batch) AS len),"
        " l AS (SELECT hub_seq, hash FROM d ORDER BY hub_seq DESC LIMIT 1),"
        " u AS (UPDATE tongban_hub.meta SET anchor_seq = l.hub_seq, anchor_hash = l.hash FROM l"
        "   WHERE meta.id = 1 RETURNING 1)"
        " SELECT (SELECT count(*) FROM d), (SELECT coalesce(sum(len), 0) FROM d)::int8, (SELECT count(*) FROM ok)",
        3, NULL, vals, NULL, NULL, 1, err, errlen);
    if (!r) return fail_rc(self);
    uint64_t n = be64(PQgetvalue(r, 0, 0)), bytes = be64(PQgetvalue(r, 0, 1)), ok = be64(PQgetvalue(r, 0, 2));
    PQclear(r);
    if (!ok) {
        self->broken = 1;
        tb_seterr(err, errlen, "fenced: another hub claimed the store");
        return TB_ERR_REFUSED;
    }
    self->records = self->records > n ? self->records - n : 0;
    self->bytes = self->bytes > bytes ? self->bytes - bytes : 0;
    if (removed) *removed = (size_t)n;
    return TB_OK;
}

tb_err_t pgstore_cursors_load(pgstore_t *self, cursors_t *c, char *err, size_t errlen)
{
    PGresult *r = pgstore_run(&self->conn, self->timeout_ms, "SELECT node, hub_seq FROM tongban_hub.cursors", 0,
                              NULL, NULL, NULL, NULL, 1, err, errlen);
    if (!r) return fail_rc(self);
    for (int i = 0; i < PQntuples(r); i++) cursors_set(c, PQgetvalue(r, i, 0), be64(PQgetvalue(r, i, 1)));
    PQclear(r);
    cursors_mark_saved(c);
    return TB_OK;
}

typedef struct {
    char *ids, *seqs;
    size_t ilen, icap, slen, scap;
    int nomem;
} arrbuf_t;

static void app(char **b, size_t *len, size_t *cap, const char *s, int *nomem)
{
    size_t n = strlen(s);
    if (*len + n + 2 > *cap) {
        size_t c = (*cap + n + 2) * 2;
        char *p = realloc(*b, c);
        if (!p) {
            *nomem = 1;
            return;
        }
        *b = p;
        *cap = c;
    }
    memcpy(*b + *len, s, n + 1);
    *len += n;
}

static void add_cursor(void *arg, const char *id, uint64_t seq)
{
    arrbuf_t *a = arg;
    char num[32], q[CURSORS_MAX_ID + 4];
    snprintf(q, sizeof q, "%s\"%s\"", a->ilen > 1 ? "," : "", id);
    snprintf(num, sizeof num, "%s%" PRIu64, a->slen > 1 ? "," : "", seq);
    app(&a->ids, &a->ilen, &a->icap, q, &a->nomem);
    app(&a->seqs, &a->slen, &a->scap, num, &a->nomem);
}

tb_err_t pgstore_cursors_save(pgstore_t *self, cursors_t *c, char *err, size_t errlen)
{
    if (!cursors_dirty(c)) return TB_OK;
    if (self->broken) {
        tb_seterr(err, errlen, "postgresql store unavailable");
        return TB_ERR_UNAVAILABLE;
    }
    arrbuf_t a = { 0 };
    tb_err_t rc = TB_ERR_NOMEM;
    app(&a.ids, &a.ilen, &a.icap, "{", &a.nomem);
    app(&a.seqs, &a.slen, &a.scap, "{", &a.nomem);
    cursors_each(c, add_cursor, &a);
    app(&a.ids, &a.ilen, &a.icap, "}", &a.nomem);
    app(&a.seqs, &a.slen, &a.scap, "}", &a.nomem);
    if (a.nomem) {
        tb_seterr(err, errlen, "out of memory");
        goto done;
    }
    const char *vals[] = { self->epoch_txt, a.ids, a.seqs };
    PGresult *r = pgstore_run(&self->conn, self->timeout_ms,
                              "WITH ok AS (SELECT 1 FROM tongban_hub.meta WHERE id = 1 AND epoch = $1::int8 FOR SHARE),"
                              " w AS (INSERT INTO tongban_hub.cursors (node, hub_seq)"
                              "   SELECT * FROM unnest($2::text[], $3::int8[]) WHERE EXISTS (SELECT 1 FROM ok)"
                              "   ON CONFLICT (node) DO UPDATE SET hub_seq = EXCLUDED.hub_seq RETURNING 1)"
                              " SELECT (SELECT count(*) FROM ok)",
                              3, NULL, vals, NULL, NULL, 1, err, errlen);
    if (!r) {
        rc = fail_rc(self);
        goto done;
    }
    int ok = be64(PQgetvalue(r, 0, 0)) != 0;
    PQclear(r);
    if (!ok) {
        self->broken = 1;
        tb_seterr(err, errlen, "fenced: another hub claimed the store");
        rc = TB_ERR_REFUSED;
        goto done;
    }
    cursors_mark_saved(c);
    rc = TB_OK;
done:
    free(a.ids);
    free(a.seqs);
    return rc;
}

tb_err_t pgstore_revoked_load(pgstore_t *self, registry_t *reg, char *err, size_t errlen)
{
    PGresult *r = pgstore_run(&self->conn, self->timeout_ms, "SELECT node, revoked_ms FROM tongban_hub.revoked", 0,
                              NULL, NULL, NULL, NULL, 1, err, errlen);
    if (!r) return fail_rc(self);
    for (int i = 0; i < PQntuples(r); i++) {
        reg_node_t *n = registry_node(reg, PQgetvalue(r, i, 0));
        if (n && !n->revoked_ms) n->revoked_ms = (int64_t)be64(PQgetvalue(r, i, 1));
    }
    PQclear(r);
    return TB_OK;
}

tb_err_t pgstore_revoke(pgstore_t *self, const char *id, int64_t when_ms, char *err, size_t errlen)
{
    char w[24];
    snprintf(w, sizeof w, "%" PRId64, when_ms);
    const char *vals[] = { self->epoch_txt, id, w };
    PGresult *r = pgstore_run(&self->conn, self->timeout_ms,
                              "INSERT INTO tongban_hub.revoked (node, revoked_ms) SELECT $2, $3::int8"
                              " WHERE EXISTS (SELECT 1 FROM tongban_hub.meta WHERE id = 1 AND epoch = $1::int8 FOR SHARE)"
                              " ON CONFLICT (node) DO NOTHING",
                              3, NULL, vals, NULL, NULL, 0, err, errlen);
    if (!r) return fail_rc(self);
    PQclear(r);
    return TB_OK;
}
