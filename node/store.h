/* store.h -- the node's PostgreSQL side: schema migrations, the transactional
 * outbox, persisted signed batches awaiting the hub's ack, and the idempotent
 * multi-row apply of received batches behind an inbox table.
 *
 * Schema `tongban` (owned by the node, versioned in tongban.schema_migrations;
 * the SQL is in store_schema.c):
 *   records(catalog, key, body jsonb, version, origin, hlc, updated_at)  -- shared data
 *   tombstones(catalog, key, version, origin, hlc, deleted_at)  -- deleted keys
 *   routes(catalog, dest)            -- routing rules, rewritten from the YAML at start
 *   outbox(id, dest, op, catalog, key, body, version, origin, hlc)  -- written by triggers
 *   sent_batches(seq, dest, signed bytea, created_at)  -- signed, awaiting the hub's Ack
 *   inbox(sender, seq, applied_at)   -- (sender, seq) of every applied batch
 *   inbox_watermarks(sender, seq, pruned_at)  -- highest seq pruned from the inbox per
 *                                    sender; an inbox row at or below it is skipped
 *                                    (already applied; store_prune.h)
 *   refused_batches(seq, dest, signed, reason, detail)  -- refused for good by the hub
 *   refused_deliveries(id, hub_seq, sender, seq, reason, delivery, retries, refused_at,
 *                      retried_at)  -- deliveries this node refused (store_refused.h)
 *   dead_letter_batches(sender, seq, signed)  -- signed original of a batch with dead letters
 *   dead_letters(id, sender, seq, entry_index, entry_id, entry_type, payload, reason,
 *                status pending|applied|failed, retries, created_at, retried_at)
 *   node_state(node_id, next_seq)
 * Capture is statement-level (transition tables) and skipped while the node
 * applies remote changes (SET LOCAL tongban.applying = 'on').
 *
 * Conflicts are last-writer-wins on (hlc, origin), origins compared bytewise:
 * an upsert wins over a record or a tombstone only when strictly newer, a
 * delete wins when newer or equal. A local DELETE always leaves a tombstone
 * (routed or not); a local INSERT of a key that has one is moved past it
 * (hlc = greatest(hlc, tombstone.hlc + 1)) and drops it, so a re-insert is
 * newer than the delete everywhere. A remote upsert that overtakes a
 * tombstone leaves it (dominated by the record, harmless). Tombstones are
 * kept until tb_store_purge_tombstones or the housekeeping
 * (retention.tombstone_days, store_prune.h): an upsert delayed longer than
 * that retention could resurrect its key.
 *
 * All SQL is parameterised. Functions return TB_OK or TB_ERR_DB (with the
 * PostgreSQL message in err) / TB_ERR_UNAVAILABLE when the connection is gone.
 */
#ifndef TB_STORE_H
#define TB_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <tongban/tongban.h>

#include "config.h"
#include "tongban.pb-c.h"

#define TB_SCHEMA_VERSION 11

typedef struct tb_store tb_store_t;

/* Connects, applies pending migrations in order (each in its own
 * transaction), refuses (TB_ERR_DB) a schema newer than TB_SCHEMA_VERSION,
 * records node_id, and LISTENs on channel "tongban_outbox". */
tb_err_t tb_store_open(const char *conninfo, const char *node_id, tb_store_t **out,
                       char *err, size_t errlen);
void tb_store_destroy(tb_store_t **self);

/* The store's PostgreSQL connection, for store_domain.c (NULL if none). */
struct pg_conn;
struct pg_conn *tb_store_conn(tb_store_t *self);

/* For the store's sibling modules (store_prune.c): reports a failed
 * statement as store.c does -- err = what + PostgreSQL's message and
 * SQLSTATE, res cleared, an open transaction rolled back. Returns
 * TB_ERR_UNAVAILABLE when the connection is gone, TB_ERR_DB otherwise. */
struct pg_result;
tb_err_t tb_store_fail(tb_store_t *self, struct pg_result *res, const char *what, char *err, size_t errlen);

/* The connection's socket (for poll) and a drain of pending notifications:
 * returns how many NOTIFYs were consumed (0 if none), -1 if the connection broke. */
int tb_store_socket(tb_store_t *self);
int tb_store_drain_notifies(tb_store_t *self);

/* Replaces tongban.routes with the configured rules (one transaction). */
tb_err_t tb_store_set_routes(tb_store_t *self, const tb_route_config_t *routes, size_t n,
                             char *err, size_t errlen);

/* ---- sender side ---- */

/* One captured change. op is 'U' (upsert) or 'D' (delete); body NULL for 'D'. */
typedef struct {
    int64_t outbox_id;
    char op;
    char *catalog;
    char *key;
    char *body;
    int64_t version;
    char *origin;
    uint64_t hlc;
} tb_outrow_t;

/* Destinations that currently have outbox rows, in order (malloc'ed array
 * of malloc'ed strings; free with tb_store_free_strings). A loose index scan
 * over outbox(dest, id): O(destinations), not O(backlog). */
tb_err_t tb_store_outbox_dests(tb_store_t *self, char ***dests, size_t *n, char *err, size_t errlen);

/* Empties the outbox's table files (TRUNCATE) when the outbox is empty and
 * no transaction is using it, so taken rows stop costing index walks before
 * VACUUM gets to them. *done = 1 if it did; 0 (TB_OK) if rows are waiting
 * or a transaction holds a lock on the outbox -- it never waits. */
tb_err_t tb_store_outbox_compact(tb_store_t *self, int *done, char *err, size_t errlen);

/* Starts VACUUM of the outbox and the signed batches on a second
 * connection (opened on first use) and returns at once; poll with
 * tb_store_vacuum_poll until it returns 0 before starting another.
 * Errors: TB_ERR_UNAVAILABLE (cannot connect), TB_ERR_DB. */
tb_err_t tb_store_vacuum_start(tb_store_t *self, char *err, size_t errlen);
/* 1 while the VACUUM runs, 0 when it has finished (or none was started),
 * -1 (err filled) if it failed; never blocks. */
int tb_store_vacuum_poll(tb_store_t *self, char *err, size_t errlen);
void tb_store_free_strings(char **v, size_t n);

/* The byte budget of a batch (0: TB_STORE_BATCH_MAX_BYTES): tb_store_batch_begin
 * stops taking rows once the running sum of their body sizes would exceed it
 * (one row is always taken, whatever its size). */
#define TB_STORE_BATCH_MAX_BYTES (4UL << 20)
void tb_store_set_batch_max_bytes(tb_store_t *self, size_t bytes);

/* Opens a transaction, takes (deletes, in that transaction) up to max outbox
 * rows for dest in id order (and within the byte budget), and allocates the next batch seq (no gaps: the
 * counter moves only if the batch commits). When *n == 0 the transaction is
 * already closed. tb_store_batch_abort puts the rows back (rollback). */
tb_err_t tb_store_batch_begin(tb_store_t *self, const char *dest, size_t max, uint64_t *seq,
                              tb_outrow_t **rows, size_t *n, char *err, size_t errlen);
/* Stores the signed batch bytes under seq and commits (with the deletion of
 * the outbox rows rows[0..n-1] that tb_store_batch_begin took). */
tb_err_t tb_store_batch_commit(tb_store_t *self, uint64_t seq, const char *dest,
                               const tb_outrow_t *rows, size_t n,
                               const uint8_t *signed_bytes, size_t len, char *err, size_t errlen);
/* Rolls back a begun batch. */
void tb_store_batch_abort(tb_store_t *self);
void tb_store_free_outrows(tb_outrow_t *rows, size_t n);

/* Signed batches not yet acked by the hub, in seq order. */
typedef struct {
    uint64_t seq;
    char *dest;
    uint8_t *bytes;
    size_t len;
} tb_sent_t;
tb_err_t tb_store_unacked(tb_store_t *self, tb_sent_t **out, size_t *n, char *err, size_t errlen);
void tb_store_free_sent(tb_sent_t *v, size_t n);

/* Highest seq below which every batch of this node has been acked by a hub
 * (the lowest unacked seq - 1, or the last seq issued when none is
 * unacked); 0 when none was ever sent. */
tb_err_t tb_store_last_acked(tb_store_t *self, uint64_t *seq, char *err, size_t errlen);

/* The hub acked seq: delete it. Acking an unknown seq is TB_OK (idempotent).
 * The deletion commits without waiting for its WAL flush (synchronous_commit
 * off for that transaction only): an ack lost in a crash only makes the node
 * resend a batch the hub already has, which the hub deduplicates. */
tb_err_t tb_store_ack(tb_store_t *self, uint64_t seq, char *err, size_t errlen);
/* The same for seqs[0..n-1], in one transaction. */
tb_err_t tb_store_ack_many(tb_store_t *self, const uint64_t *seqs, size_t n, char *err, size_t errlen);

/* The hub refused seq for good (reason, detail): move it from sent_batches
 * to refused_batches, where the operator sees it. Idempotent. */
tb_err_t tb_store_refuse(tb_store_t *self, uint64_t seq, const char *reason, const char *detail,
                         char *err, size_t errlen);

/* ---- receiver side ---- */

/* Applies a verified batch in one transaction: inserts (sender, seq) into the
 * inbox; if it was already there, does nothing and sets *applied = 0.
 * Otherwise applies every entry with multi-row statements, one per run of
 * consecutive entries of one type (LWW as above), and sets *applied = 1.
 *
 * Entries that cannot be applied do not stop the batch: an entry of
 * unsupported type, with an undecodable payload or an hlc / version beyond
 * INT64_MAX, and every entry PostgreSQL refuses (constraint, invalid JSON...;
 * found by re-applying a failed run entry by entry, each in a SAVEPOINT),
 * goes to tongban.dead_letters with the reason (PostgreSQL message and
 * SQLSTATE), in the same transaction; the signed batch bytes (may be NULL)
 * are kept once in tongban.dead_letter_batches. *dead = how many (dead may
 * be NULL). Errors that are not about the data (connection, deadlock,
 * serialization, lock timeout, cancel, out of memory or disk: SQLSTATE
 * classes 08 25 40 53 55 57 58) fail the whole call with nothing applied:
 * TB_ERR_UNAVAILABLE when the connection is gone, TB_ERR_DB otherwise.
 * A batch without sender or with seq > INT64_MAX is TB_ERR_PROTO. */
tb_err_t tb_store_apply_batch(tb_store_t *self, const Tongban__Batch *batch, const uint8_t *signed_batch,
                              size_t signed_len, int *applied, size_t *dead, char *err, size_t errlen);

/* One received batch of a group for tb_store_apply_batches. */
typedef struct {
    const Tongban__Batch *batch;  /* verified, as for tb_store_apply_batch */
    const uint8_t *signed_batch;  /* its signed bytes (may be NULL) */
    size_t signed_len;
    /* out */
    tb_err_t rc;                  /* what tb_store_apply_batch would have returned */
    int applied;                  /* rc TB_OK: 1 applied now, 0 already applied */
    size_t dead;                  /* rc TB_OK and applied: its dead letters */
    char err[512];                /* rc not TB_OK: why */
} tb_apply_item_t;

/* Applies items[0..n-1] as tb_store_apply_batch would one after the other,
 * with the same statements in the same order, but in one transaction: one
 * multi-row inbox insert for the group (a batch already in the inbox, or
 * repeated in the group, is a duplicate: applied = 0), one COMMIT. Fewer
 * commits (WAL flushes) when deliveries are backed up; nothing of the group
 * is visible, nor may be acked, before that COMMIT succeeded. If
 * PostgreSQL refuses an entry, or an item is malformed, the group falls
 * back to tb_store_apply_batch item by item (savepoints, dead letters).
 * Every item gets its own outcome (rc, applied, dead, err); a failure of
 * the group's transaction (connection lost, deadlock...) is every item's
 * outcome, nothing committed. Returns the first item's error, or TB_OK. */
tb_err_t tb_store_apply_batches(tb_store_t *self, tb_apply_item_t *items, size_t n);

/* An optional check of received entries, run before the apply for every
 * decoded entry whose catalog starts with "tb." (the domain catalogs): u is
 * the upsert, or d the delete (the other NULL); sender is the batch's
 * (verified) sender. Returns 0 to apply the entry; non-zero makes it a dead
 * letter with why (one line) as the reason. Entries of other catalogs never
 * reach it. Also run by tb_store_retry_dead_letter. */
typedef int (*tb_entry_check_fn)(void *arg, const char *sender, const Tongban__RecordUpsert *u,
                                 const Tongban__RecordDelete *d, char *why, size_t whylen);
/* Installs (fn NULL: removes) the entry check of this store. */
void tb_store_set_entry_check(tb_store_t *self, tb_entry_check_fn fn, void *arg);

/* tb_store_apply_batch without the signed bytes (dead letters keep NULL). */
tb_err_t tb_store_apply(tb_store_t *self, const Tongban__Batch *batch, int *applied,
                        char *err, size_t errlen);

/* ---- dead letters (operator) ---- */

typedef struct {
    int64_t id;
    char *sender;
    uint64_t seq;
    int entry_index;       /* position in the batch */
    char *entry_type;      /* "RECORD_UPSERT"...; the number for a value this build does not know */
    int entry_type_value;  /* Tongban__EntryType value as received */
    char *status;          /* "pending" (never retried) or "failed" (retried, still failing) */
    char *reason;
    int retries;
    char *created_at;      /* ISO 8601 UTC, e.g. 2026-01-31T08:00:00.123Z */
    char *retried_at;      /* likewise; NULL if never retried */
} tb_dead_t;

/* Dead letters not yet applied (pending and failed), oldest first. */
tb_err_t tb_store_dead_letters(tb_store_t *self, tb_dead_t **out, size_t *n, char *err, size_t errlen);
void tb_store_free_dead(tb_dead_t *v, size_t n);

/* Re-applies dead letter id now, with the same statements and LWW rules
 * (an entry that has meanwhile been overtaken by a newer change is applied
 * as a no-op). TB_OK: applied (status 'applied'; also when it already was).
 * Still failing: status 'failed', reason updated, retries + 1, committed,
 * and TB_ERR_DB (PostgreSQL refused it) or TB_ERR_PROTO (undecodable /
 * unsupported type), or TB_ERR_REFUSED (the entry check still refuses it)
 * with the reason in err. TB_ERR_NOTFOUND: no such id.
 * Transient errors (as for apply) change nothing. */
tb_err_t tb_store_retry_dead_letter(tb_store_t *self, int64_t id, char *err, size_t errlen);

/* ---- snapshot, tombstones, status ---- */

/* Initial load / resync: in one statement (one transaction) enqueues for
 * dest one 'U' outbox row per current record of catalog ("*": all catalogs)
 * and one 'D' row per tombstone of a key without a record, each carrying
 * the record's / tombstone's own version, origin and hlc, so the receiver's
 * LWW makes it idempotent with live changes. Route the catalog to dest
 * first so no live change is missed. *rows = rows enqueued (may be NULL).
 * dest must be a node id or topic:<id> (TB_ERR_INVALID otherwise). */
tb_err_t tb_store_snapshot_enqueue(tb_store_t *self, const char *catalog, const char *dest, int64_t *rows,
                                   char *err, size_t errlen);

/* Deletes tombstones older than older_than_seconds (>= 0); *purged = how
 * many (may be NULL). An upsert delayed longer than this can resurrect. */
tb_err_t tb_store_purge_tombstones(tb_store_t *self, int64_t older_than_seconds, int64_t *purged,
                                   char *err, size_t errlen);

/* Records of catalog ("*": all) in tongban.records (count(*)). */
tb_err_t tb_store_count(tb_store_t *self, const char *catalog, int64_t *rows, char *err, size_t errlen);

typedef struct {
    char *dest;
    int64_t rows;
} tb_store_dest_count_t;

/* The node's status in one round trip (ages in seconds, -1 when there is
 * nothing to measure). Counts are exact (count(*)): cost grows with the
 * tables, mostly with the outbox backlog and tongban.records. */
typedef struct {
    int64_t outbox_rows;
    double outbox_oldest_age_s;          /* oldest outbox row (lowest id) */
    tb_store_dest_count_t *outbox_dests; /* per destination, ordered by dest */
    size_t n_outbox_dests;
    int64_t unacked_batches;             /* signed batches awaiting the hub's Ack */
    double unacked_oldest_age_s;
    int64_t refused_batches;
    int64_t refused_deliveries;          /* parked: refused by this node (store_refused.h) */
    int64_t dead_letters;                /* not applied: dead_pending + dead_failed */
    int64_t dead_pending;                /* never retried */
    int64_t dead_failed;                 /* retried and still failing */
    int64_t inbox_rows;
    double last_applied_age_s;           /* newest inbox row */
    int64_t records;
    int64_t tombstones;                  /* including ones a newer upsert overtook */
} tb_store_status_t;

/* Fills *out (free with tb_store_free_status; zeroed on error). */
tb_err_t tb_store_status(tb_store_t *self, tb_store_status_t *out, char *err, size_t errlen);
void tb_store_free_status(tb_store_status_t *st);

/* ---- helper ---- */

/* Builds the PostgreSQL array literal of n strings, e.g. {"a","b\\"c",NULL}:
 * every element double-quoted with '"' and '\\' backslash-escaped, NULL
 * pointers as NULL. Returns a malloc'ed string (free()), NULL when out of
 * memory. Used for the multi-row statements; public for its unit test. */
char *tb_store_text_array(const char *const *v, size_t n);

#endif
