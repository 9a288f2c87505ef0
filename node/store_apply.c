/* store_apply.c -- the receiver side of the node's store (see store.h):
 * decode and check a received batch's entries, apply them with one
 * multi-row statement per run of one type behind the inbox (a batch alone,
 * or a group of batches in one transaction), and keep what PostgreSQL or
 * the entry check refuses as dead letters. */
#include "store.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errbuf.h"
#include "log.h"
#include "store_internal.h"

/* ------------------------------------------------------------------------
 * Receiver side
 * ------------------------------------------------------------------------ */

const char *store_entry_type_name(int type)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&tongban__entry_type__descriptor, type);
    return v ? v->name : NULL;
}

void store_free_entry(int type, void *msg)
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
void *store_decode_entry(int type, const uint8_t *data, size_t len, char *why, size_t whylen)
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
    const char *name = store_entry_type_name(type);
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
int store_entry_refused(tb_store_t *self, const char *sender, int type, const void *msg, char *why, size_t whylen)
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
PGresult *store_run_stmt(tb_store_t *self, int type, void *const *msgs, const size_t *idx, size_t k, int *oom)
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
        store_bin_open(&col[c], upsert ? upsert_oids[c] : delete_oids[c]);
    for (size_t j = 0; j < k; j++) {
        if (upsert) {
            const Tongban__RecordUpsert *u = msgs[idx[j]];
            store_bin_text(&col[0], u->catalog);
            store_bin_text(&col[1], u->key);
            store_bin_text(&col[2], u->body);
            store_bin_i64(&col[3], (int64_t)u->version);
            store_bin_text(&col[4], u->origin);
            store_bin_i64(&col[5], (int64_t)u->hlc);
        } else {
            const Tongban__RecordDelete *d = msgs[idx[j]];
            store_bin_text(&col[0], d->catalog);
            store_bin_text(&col[1], d->key);
            store_bin_i64(&col[2], (int64_t)d->version);
            store_bin_text(&col[3], d->origin);
            store_bin_i64(&col[4], (int64_t)d->hlc);
        }
    }
    const char *vals[NCOL];
    int lens[NCOL], fmts[NCOL];
    for (int c = 0; c < ncol; c++) {
        store_bin_close(&col[c]);
        *oom |= col[c].oom;
        vals[c] = col[c].p;
        lens[c] = (int)col[c].len;
        fmts[c] = 1;
    }
    if (!*oom) {
        int s = !upsert ? S_APPLY_DELETE : upserts_unique(msgs, idx, k) ? S_APPLY_UPSERT_UNIQUE : S_APPLY_UPSERT;
        res = store_exec_stmt(self, s, ncol, vals, lens, fmts, 0);
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
    if ((rc = store_exec_simple(self, "BEGIN; SET LOCAL tongban.applying = 'on'", what, err, errlen)) != TB_OK)
        return rc;
    char seqs[24];
    snprintf(seqs, sizeof seqs, "%" PRIu64, batch->seq);
    const char *ivals[2] = {batch->sender, seqs};
    PGresult *res = store_exec_stmt(self, S_INBOX_INSERT, 2, ivals, NULL, NULL, 0);
    if (!store_res_ok(res))
        return tb_store_fail(self, res, what, err, errlen);
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
        if (careful && (rc = store_exec_simple(self, "SAVEPOINT tb_run", ctx, err, errlen)) != TB_OK)
            return rc;
        PGresult *res = store_run_stmt(self, type, msgs, live + a, b - a, &oom);
        if (oom)
            goto nomem;
        if (store_res_ok(res)) {
            PQclear(res);
            if (careful && (rc = store_exec_simple(self, "RELEASE SAVEPOINT tb_run", ctx, err, errlen)) != TB_OK)
                return rc;
            a = b;
            continue;
        }
        if (!store_data_error(self, res))
            return tb_store_fail(self, res, ctx, err, errlen);
        if (!careful) {
            rc = tb_store_fail(self, res, ctx, err, errlen);
            *retry = 1;
            return rc;
        }
        PQclear(res);
        if ((rc = store_exec_simple(self, "ROLLBACK TO SAVEPOINT tb_run", ctx, err, errlen)) != TB_OK)
            return rc;
        for (size_t j = a; j < b; j++) {
            res = store_run_stmt(self, type, msgs, live + j, 1, &oom);
            if (oom)
                goto nomem;
            if (store_res_ok(res)) {
                PQclear(res);
                rc = store_exec_simple(self, "RELEASE SAVEPOINT tb_run; SAVEPOINT tb_run", ctx, err, errlen);
            } else if (!store_data_error(self, res)) {
                return tb_store_fail(self, res, ctx, err, errlen);
            } else {
                char reason[1024];
                store_pg_reason(self, res, reason, sizeof reason);
                PQclear(res);
                if (!(why[live[j]] = strdup(reason)))
                    goto nomem;
                rc = store_exec_simple(self, "ROLLBACK TO SAVEPOINT tb_run", ctx, err, errlen);
            }
            if (rc != TB_OK)
                return rc;
        }
        if ((rc = store_exec_simple(self, "RELEASE SAVEPOINT tb_run", ctx, err, errlen)) != TB_OK)
            return rc;
        a = b;
    }
    return TB_OK;
nomem:
    store_rollback(self);
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
        store_arr_open(&arr[c]);
    for (size_t i = 0; i < batch->n_entries; i++) {
        if (!why[i])
            continue;
        const Tongban__Entry *e = batch->entries[i];
        store_arr_i64(&arr[0], (int64_t)i);
        store_arr_hex(&arr[1], e ? e->id.data : NULL, e ? e->id.len : 0);
        store_arr_i64(&arr[2], e ? (int64_t)e->type : 0);
        store_arr_hex(&arr[3], e ? e->payload.data : NULL, e ? e->payload.len : 0);
        store_arr_text(&arr[4], why[i]);
    }
    for (int c = 0; c < NARR; c++) {
        store_arr_close(&arr[c]);
        oom |= arr[c].oom;
    }
    if (oom) {
        store_rollback(self);
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
    PGresult *res = store_exec_stmt(self, S_DEAD_INSERT, 8, vals, lens, fmts, 0);
    if (!store_res_ok(res)) {
        char ctx[TB_ID_MAX + 96];
        snprintf(ctx, sizeof ctx, "%s: store dead letters", what);
        rc = tb_store_fail(self, res, ctx, err, errlen);
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
            store_free_entry(batch->entries[i]->type, d->msgs[i]);
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
            d->msgs[i] = store_decode_entry(e->type, e->payload.data, e->payload.len, reason, sizeof reason);
        if (d->msgs[i] && store_entry_refused(self, batch->sender, e->type, d->msgs[i], reason, sizeof reason)) {
            store_free_entry(e->type, d->msgs[i]);
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
    if ((rc = store_check_conn(self, "apply", err, errlen)) != TB_OK)
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
            rc = store_exec_simple(self, "ROLLBACK", what, err, errlen);
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
    if ((rc = store_exec_simple(self, "COMMIT", what, err, errlen)) != TB_OK)
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
    store_arr_open(&snd);
    store_arr_open(&seq);
    for (size_t i = 0; i < n; i++) {
        store_arr_text(&snd, items[i].batch->sender);
        store_arr_i64(&seq, (int64_t)items[i].batch->seq);
    }
    store_arr_close(&snd);
    store_arr_close(&seq);
    if (snd.oom || seq.oom) {
        free(snd.p);
        free(seq.p);
        store_rollback(self);
        tb_seterr_line(err, errlen, "apply group: out of memory");
        return TB_ERR_NOMEM;
    }
    const char *vals[2] = {snd.p, seq.p};
    PGresult *res = store_exec_stmt(self, S_INBOX_INSERT_MANY, 2, vals, NULL, NULL, 0);
    free(snd.p);
    free(seq.p);
    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        return tb_store_fail(self, res, "apply group: inbox", err, errlen);
    for (size_t i = 0; i < n; i++)
        fresh[i] = 0;
    for (int r = 0; r < PQntuples(res); r++) {
        int64_t s;
        if (store_parse_i64(PQgetvalue(res, r, 1), &s) != 0)
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
    if ((rc = store_check_conn(self, "apply group", err, sizeof err)) != TB_OK)
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
    if ((rc = store_exec_simple(self, "BEGIN; SET LOCAL tongban.applying = 'on'", "apply group", err, sizeof err)) != TB_OK)
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
    if ((rc = store_exec_simple(self, any ? "COMMIT" : "ROLLBACK", "apply group", err, sizeof err)) != TB_OK)
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
    store_rollback(self);
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
