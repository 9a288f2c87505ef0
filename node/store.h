/* store.h -- the node's PostgreSQL side: schema migrations, the transactional
 * outbox, persisted signed batches awaiting the hub's ack, and the idempotent
 * multi-row apply of received batches behind an inbox table.
 *
 * Schema `tongban` (owned by the node, versioned in tongban.schema_migrations):
 *   records(catalog, key, body jsonb, version, origin, hlc, updated_at)  -- shared data
 *   routes(catalog, dest)            -- routing rules, rewritten from the YAML at start
 *   outbox(id, dest, op, catalog, key, body, version, origin, hlc)  -- written by triggers
 *   sent_batches(seq, dest, signed bytea, created_at)  -- signed, awaiting the hub's Ack
 *   inbox(sender, seq, applied_at)   -- (sender, seq) of every applied batch
 *   refused_batches(seq, dest, signed, reason, detail)  -- refused for good by the hub
 *   node_state(node_id, next_seq)
 * Capture is statement-level (transition tables) and skipped while the node
 * applies remote changes (SET LOCAL tongban.applying = 'on').
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

#define TB_SCHEMA_VERSION 2

typedef struct tb_store tb_store_t;

/* Connects, applies pending migrations in order (each in its own
 * transaction), refuses (TB_ERR_DB) a schema newer than TB_SCHEMA_VERSION,
 * records node_id, and LISTENs on channel "tongban_outbox". */
tb_err_t tb_store_open(const char *conninfo, const char *node_id, tb_store_t **out,
                       char *err, size_t errlen);
void tb_store_destroy(tb_store_t **self);

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

/* Destinations that currently have outbox rows (malloc'ed array of
 * malloc'ed strings; free with tb_store_free_strings). */
tb_err_t tb_store_outbox_dests(tb_store_t *self, char ***dests, size_t *n, char *err, size_t errlen);
void tb_store_free_strings(char **v, size_t n);

/* Opens a transaction, allocates the next batch seq (no gaps: the counter
 * moves only if the batch commits), and reads up to max outbox rows for dest
 * in id order. When *n == 0 the transaction is already closed. */
tb_err_t tb_store_batch_begin(tb_store_t *self, const char *dest, size_t max, uint64_t *seq,
                              tb_outrow_t **rows, size_t *n, char *err, size_t errlen);
/* Stores the signed batch bytes under seq, deletes the outbox rows it
 * carries (ids of rows[0..n-1]) and commits. */
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

/* The hub acked seq: delete it. Acking an unknown seq is TB_OK (idempotent). */
tb_err_t tb_store_ack(tb_store_t *self, uint64_t seq, char *err, size_t errlen);

/* The hub refused seq for good (reason, detail): move it from sent_batches
 * to refused_batches, where the operator sees it. Idempotent. */
tb_err_t tb_store_refuse(tb_store_t *self, uint64_t seq, const char *reason, const char *detail,
                         char *err, size_t errlen);

/* ---- receiver side ---- */

/* Applies a verified batch in one transaction: inserts (sender, seq) into the
 * inbox; if it was already there, does nothing and sets *applied = 0.
 * Otherwise applies every entry with multi-row statements (upserts win only
 * when (hlc, origin) is newer than the local row's; deletes likewise) and
 * sets *applied = 1. Entries of unknown type or undecodable payload make the
 * whole call fail with TB_ERR_PROTO and nothing applied. */
tb_err_t tb_store_apply(tb_store_t *self, const Tongban__Batch *batch, int *applied,
                        char *err, size_t errlen);

/* ---- helper ---- */

/* Builds the PostgreSQL array literal of n strings, e.g. {"a","b\\"c",NULL}:
 * every element double-quoted with '"' and '\\' backslash-escaped, NULL
 * pointers as NULL. Returns a malloc'ed string (free()), NULL when out of
 * memory. Used for the multi-row statements; public for its unit test. */
char *tb_store_text_array(const char *const *v, size_t n);

#endif
