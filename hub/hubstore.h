/* hubstore.h -- the hub's store, whichever it is: the embedded journal
 * (journal.h + cursors file + revoked file) or PostgreSQL (pgstore.h). A
 * thin switch so that hub.c does not care which one it has. Same semantics
 * as journal.h: append buffers, sync makes durable (then ack), readers see
 * durable records only. */
#ifndef TB_HUBSTORE_H
#define TB_HUBSTORE_H

#include <stddef.h>
#include <stdint.h>
#include <tongban/tongban.h>

#include "cursors.h"
#include "journal.h"
#include "pgstore.h"
#include "registry.h"

typedef struct hubstore hubstore_t;
typedef struct hubstore_reader hubstore_reader_t;

typedef struct {
    uint64_t records, bytes, first_seq, last_seq, truncated_bytes, segments;
    int64_t epoch;
} hubstore_report_t;

/* Wraps an open journal (taken over). NULL if out of memory. */
hubstore_t *hubstore_journal(journal_t *j);
/* Wraps an open PostgreSQL store (taken over). NULL if out of memory. */
hubstore_t *hubstore_pg(pgstore_t *pg);
void hubstore_destroy(hubstore_t **self);

int hubstore_is_pg(const hubstore_t *self);
const char *hubstore_kind(const hubstore_t *self);       /* "journal" | "postgresql" */
/* 1 if the store can no longer be used (PostgreSQL: connection lost, fenced). */
int hubstore_broken(const hubstore_t *self);
/* PostgreSQL: the epoch this hub claimed the store under (0 for the journal). */
int64_t hubstore_epoch(const hubstore_t *self);

/* Appends one batch: journal_append or pgstore_append. body_sha256 (may be
 * NULL) is the SHA-256 of the SignedBatch body in batch, under the contract
 * of journal_append; the PostgreSQL store ignores it (its chain hashes the
 * whole row). */
tb_err_t hubstore_append(hubstore_t *self, const char *sender, uint64_t sender_seq, const char *dest,
                         const uint8_t *batch, size_t len, const uint8_t *body_sha256, uint64_t *hub_seq,
                         char *err, size_t errlen);
tb_err_t hubstore_sync(hubstore_t *self, char *err, size_t errlen);
uint64_t hubstore_last_seq(const hubstore_t *self);
uint64_t hubstore_durable_seq(const hubstore_t *self);
uint64_t hubstore_bytes(const hubstore_t *self);
size_t hubstore_segments(const hubstore_t *self);       /* journal segments; 0 for PostgreSQL */

/* want/arg filter the journal; dests (n) filter PostgreSQL in SQL: give both. */
tb_err_t hubstore_reader_new(hubstore_t *self, uint64_t after_seq, const char *const *dests, size_t n,
                             hubstore_reader_t **out, char *err, size_t errlen);
tb_err_t hubstore_reader_next(hubstore_reader_t *r, int (*want)(void *arg, const char *dest), void *arg,
                              jrec_t *rec, int *got, char *err, size_t errlen);
uint64_t hubstore_reader_pos(const hubstore_reader_t *r);
void hubstore_reader_destroy(hubstore_reader_t **r);

tb_err_t hubstore_gc(hubstore_t *self, uint64_t min_acked, int64_t retention_ms, size_t *removed, char *err,
                     size_t errlen);

/* Cursors: the journal saves the file; PostgreSQL the table. */
tb_err_t hubstore_cursors_save(hubstore_t *self, cursors_t *c, char *err, size_t errlen);
/* Revocation: the registry's file always; the table too with PostgreSQL. */
tb_err_t hubstore_revoke(hubstore_t *self, registry_t *reg, const char *id, char *err, size_t errlen);

/* PostgreSQL: marks the registry's nodes revoked as the table says (no-op for the journal). */
tb_err_t hubstore_revoked_load(hubstore_t *self, registry_t *reg, char *err, size_t errlen);

#endif
