/* pgstore.h -- the hub's batch store on PostgreSQL (store: postgresql): the
 * same guarantees as journal.h, in tables of the schema tongban_hub, so that
 * several hub processes can share it (one active at a time, see ha.h).
 *
 *   batches(hub_seq PK, accepted_ms, sender, sender_seq, dest, batch, hash)
 *   meta(id = 1, epoch, holder, lock_pid, since, anchor_seq, anchor_hash)
 *   cursors(node PK, hub_seq)          revoked(node PK, revoked_ms)
 *   hub_instances(id PK, role, since, heartbeat_at, endpoint, pid)   (ha.c)
 *
 * hash is SHA-256 of the journal's record body (journal.h: hub_seq,
 * accepted_ms, prev_hash, sender, sender_seq, dest, batch), prev_hash being
 * the previous row's hash (meta.anchor_hash for the first row kept after
 * pgstore_gc, 32 zero bytes for hub_seq 1): the chain of a version 1
 * journal segment (the journal's version 2 hash is not used here).
 *
 * Fencing: pgstore_open claims a new epoch (UPDATE meta SET epoch = epoch +
 * 1) and every write statement carries "WHERE EXISTS (SELECT 1 FROM meta
 * WHERE epoch = <ours> FOR SHARE)": once another hub has claimed the store,
 * this one can no longer write (TB_ERR_REFUSED), and a claim waits for a
 * write in progress to finish, so the new holder's recovery sees it.
 *
 * Group commit: pgstore_append only buffers; pgstore_commit writes every
 * buffered record in ONE multi-row INSERT (one statement, one transaction,
 * one round trip). Every round trip is bounded by timeout_ms (client side;
 * statement_timeout and TCP keepalives server side); a connection lost or
 * timed out is closed and the store is "broken" (pgstore_broken) -- the hub
 * then fences itself. Not thread-safe.
 */
#ifndef TB_PGSTORE_H
#define TB_PGSTORE_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>
#include <tongban/tongban.h>

#include "cursors.h"
#include "journal.h"
#include "registry.h"

typedef struct pgstore pgstore_t;
typedef struct pgstore_reader pgstore_reader_t;

typedef struct {
    const char *conninfo;      /* libpq string (several hosts allowed) */
    const char *app_name;      /* application_name, e.g. "tongban-hub:hub-a" */
    long timeout_ms;           /* bound of each round trip; 0 = 3000 */
    const char *holder;        /* hub id written into meta with the epoch */
    int lock_pid;              /* backend pid of the holder's lock session (shown only) */
    int verify_chain;          /* recompute the hash chain at open */
    /* after the claim, before the rows are read (e.g. to load cursors and
     * revocations); returns TB_OK or fails the open (may be NULL) */
    tb_err_t (*before_recovery)(void *arg, pgstore_t *store, char *err, size_t errlen);
    void (*on_record)(void *arg, const jrec_t *rec);  /* each row at open, in hub_seq order */
    void *arg;
} pgstore_opts_t;

typedef struct {
    uint64_t records, bytes, first_seq, last_seq;
    int64_t epoch;
} pgstore_report_t;

/* Connects with the hub's safety settings (connect_timeout, keepalives,
 * tcp_user_timeout, statement_timeout, idle_in_transaction_session_timeout)
 * under conninfo. Returns the connection, or NULL with err filled. */
PGconn *pgstore_connect(const char *conninfo, const char *app_name, long timeout_ms, char *err,
                        size_t errlen);

/* Runs sql (one statement with n parameters, or with n < 0 a parameterless
 * multi-statement string) on *conn within timeout_ms. Parameters in text
 * format unless fmts says otherwise; results in binary when binary. Returns
 * the (last) result, which the caller clears; NULL with err filled on
 * error -- and then *conn is NULL if the connection was lost or timed out
 * (it was closed). */
PGresult *pgstore_run(PGconn **conn, long timeout_ms, const char *sql, int n, const Oid *types,
                      const char *const *vals, const int *lens, const int *fmts, int binary, char *err,
                      size_t errlen);

/* Creates the schema if missing (serialised by an advisory transaction
 * lock, safe for hubs starting together). TB_OK, TB_ERR_DB, TB_ERR_UNAVAILABLE. */
tb_err_t pgstore_schema(PGconn **conn, long timeout_ms, char *err, size_t errlen);

/* Connects, creates the schema, claims a new epoch and recovers: calls
 * on_record for every row (hub_seq order, gapless, chain checked when
 * verify_chain). TB_OK and *out; TB_ERR_PROTO for a gap or broken chain
 * (err names the hub_seq); TB_ERR_UNAVAILABLE / TB_ERR_DB / TB_ERR_NOMEM. */
tb_err_t pgstore_open(const pgstore_opts_t *opts, pgstore_t **out, pgstore_report_t *report, char *err,
                      size_t errlen);
void pgstore_destroy(pgstore_t **self);

/* Buffers one record (not visible nor durable before pgstore_commit). */
tb_err_t pgstore_append(pgstore_t *self, const char *sender, uint64_t sender_seq, const char *dest,
                        const uint8_t *batch, size_t len, uint64_t *hub_seq, char *err, size_t errlen);
/* Writes every buffered record in one INSERT. TB_OK; TB_ERR_REFUSED if
 * another hub claimed the store (fenced); TB_ERR_UNAVAILABLE (connection
 * lost or timed out: outcome unknown), TB_ERR_DB. On error the buffer is
 * dropped and the store is broken. */
tb_err_t pgstore_commit(pgstore_t *self, char *err, size_t errlen);

uint64_t pgstore_last_seq(const pgstore_t *self);
uint64_t pgstore_durable_seq(const pgstore_t *self);
uint64_t pgstore_bytes(const pgstore_t *self);     /* batch bytes in the table (approx.) */
uint64_t pgstore_records(const pgstore_t *self);
int64_t pgstore_epoch(const pgstore_t *self);
/* 1 once a round trip failed on the connection, the store was fenced or a
 * commit failed: only reopening helps. */
int pgstore_broken(const pgstore_t *self);

/* Readers see committed rows only, and only those whose dest is in dests
 * (n strings; the SQL filter). Semantics of journal_reader_*. */
tb_err_t pgstore_reader_new(pgstore_t *self, uint64_t after_seq, const char *const *dests, size_t n,
                            pgstore_reader_t **out, char *err, size_t errlen);
tb_err_t pgstore_reader_next(pgstore_reader_t *r, jrec_t *rec, int *got, char *err, size_t errlen);
uint64_t pgstore_reader_pos(const pgstore_reader_t *r);
void pgstore_reader_destroy(pgstore_reader_t **r);

/* Deletes the prefix of rows with hub_seq <= min_acked accepted more than
 * retention_ms ago, moving the anchor (meta) in the same statement.
 * *removed (may be NULL): rows deleted. TB_OK or an error as commit. */
tb_err_t pgstore_gc(pgstore_t *self, uint64_t min_acked, int64_t retention_ms, size_t *removed, char *err,
                    size_t errlen);

/* Cursors: loads every saved cursor into c; saves all of c (fenced write). */
tb_err_t pgstore_cursors_load(pgstore_t *self, cursors_t *c, char *err, size_t errlen);
tb_err_t pgstore_cursors_save(pgstore_t *self, cursors_t *c, char *err, size_t errlen);

/* Revocations: marks the registry's nodes revoked as the table says;
 * records one (fenced write). */
tb_err_t pgstore_revoked_load(pgstore_t *self, registry_t *reg, char *err, size_t errlen);
tb_err_t pgstore_revoke(pgstore_t *self, const char *id, int64_t when_ms, char *err, size_t errlen);

#endif
