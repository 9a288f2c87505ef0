/* housekeep.h -- the node's retention housekeeping: prunes the PostgreSQL
 * tables that grow with traffic (inbox, tombstones, events, applied dead
 * letters; store_prune.h says what goes) as configured under retention: in
 * node.yaml, a little at a time, from the node loop's timer.
 *
 * Schedule: the first pass starts retention.interval_s after the first
 * tick (node.c ticks only while the hub has welcomed the node: by then the
 * hub has redelivered whatever it had not had acknowledged before a
 * restart), the next one interval_s after the previous one started
 * (at once when a pass took longer). A pass goes through the tables in
 * the order inbox, tombstones, events, dead letters, skipping those whose
 * retention is 0 (kept forever). Each tick runs at most one DELETE of at
 * most the chunk size (TB_HOUSEKEEP_CHUNK_ROWS) in its own transaction; a
 * table is done when a DELETE took fewer rows than that, so a backlog is
 * worked off over as many ticks as it needs and the loop is never held
 * for longer than one chunk. The interval and retentions are read from
 * cfg at every tick (a reload applies them).
 *
 * A pass that deleted anything logs one line (event=pruned, rows per
 * table, statements, time); a failed statement logs event=housekeeping_failed
 * and ends the pass (the next one comes an interval later). When events
 * older than the retention are kept for a cursor that has not read them,
 * event=events_held names the cursor (when that changes, and once a day).
 */
#ifndef TB_HOUSEKEEP_H
#define TB_HOUSEKEEP_H

#include <stddef.h>
#include <stdint.h>
#include <tongban/tongban.h>

#include "config.h"
#include "store.h"

#define TB_HOUSEKEEP_CHUNK_ROWS 10000   /* rows of one DELETE statement */

typedef struct tb_housekeep tb_housekeep_t;

/* The tables counted (tb_housekeep_counters_t.pruned). */
enum {
    TB_HK_INBOX,
    TB_HK_TOMBSTONES,
    TB_HK_EVENTS,
    TB_HK_DEAD_LETTERS,          /* applied dead letters */
    TB_HK_DEAD_LETTER_BATCHES,   /* their signed batches, once no dead letter is left */
    TB_HK_TABLES
};

typedef struct {
    uint64_t pruned[TB_HK_TABLES];   /* rows deleted since the start, per table */
    uint64_t passes;                 /* passes finished (or ended by an error) */
    uint64_t statements;             /* DELETE statements run */
    uint64_t errors;                 /* statements that failed */
    int busy;                        /* a pass is under way */
} tb_housekeep_counters_t;

/* *out = a housekeeper with nothing scheduled yet. TB_OK or TB_ERR_NOMEM. */
tb_err_t tb_housekeep_new(tb_housekeep_t **out);

/* Frees, nulls *self; NULL-safe. */
void tb_housekeep_destroy(tb_housekeep_t **self);

/* Rows per DELETE (0: TB_HOUSEKEEP_CHUNK_ROWS); for tests and tools. */
void tb_housekeep_set_chunk(tb_housekeep_t *self, size_t rows);

/* The least the inbox keeps, in days, whatever retention.inbox_days says
 * (0, or a negative value: no floor). node.c sets it from the hub's
 * journal retention (its Welcome): the hub can deliver a batch that long
 * after it was sent, and one at or below its sender's watermark would be
 * taken for applied -- so no (sender, seq) is forgotten before then. */
void tb_housekeep_set_inbox_floor(tb_housekeep_t *self, long days);

/* The inbox retention in effect: retention.inbox_days, raised to the floor
 * (0 stays 0: kept forever). */
long tb_housekeep_inbox_days(const tb_housekeep_t *self, const tb_node_config_t *cfg);

/* From the node loop's timer, with monotonic milliseconds: does nothing
 * (and returns at once) unless a pass is due or under way; then runs at
 * most one DELETE on st (plus, when the events are done, one look for the
 * cursor holding them). st NULL (PostgreSQL away): the pass waits. Returns
 * TB_OK, or the store's error with err filled (already logged and
 * counted); TB_ERR_UNAVAILABLE means the connection is gone. */
tb_err_t tb_housekeep_tick(tb_housekeep_t *self, tb_store_t *st, const tb_node_config_t *cfg, uint64_t now_ms,
                           char *err, size_t errlen);

/* Copies the counters into *out (zeroes for a NULL self). */
void tb_housekeep_counters(const tb_housekeep_t *self, tb_housekeep_counters_t *out);

/* "inbox", "tombstones", "events", "dead_letters", "dead_letter_batches";
 * NULL for another value. The label of tongban_node_pruned_rows_total. */
const char *tb_housekeep_table_name(int table);

#endif
