/* store_prune.h -- retention of the node's PostgreSQL tables that grow with
 * traffic: each call is one bounded DELETE (at most `limit` rows, one
 * statement and so one short transaction of its own), so that housekeep.c
 * can spread a large backlog over many turns of the node's loop, each
 * statement reading about as many rows as it deletes. Tombstones locked by
 * an application's transaction are skipped (SKIP LOCKED), never waited
 * for; the other tables are written only by the node itself.
 *
 * What goes, for a retention of `days` >= 1 (a table whose retention is 0
 * is kept forever: the caller does not call its function):
 *   inbox        rows applied more than `days` ago, except each sender's
 *                newest row and any row at or above the seq of a delivery
 *                of that sender still parked in refused_deliveries. The
 *                same statement raises the sender's watermark in
 *                tongban.inbox_watermarks to the highest seq it pruned;
 *                a trigger on the inbox (migration 11) skips a row at or
 *                below the watermark, so a redelivered batch whose row was
 *                pruned is a duplicate, not applied twice.
 *   tombstones   deleted more than `days` ago. A change delayed longer than
 *                that (a node offline, a delivery parked that long and then
 *                retried) can resurrect the key it deleted.
 *   events       older than `days` and passed by every event cursor
 *                (tongban.event_cursors: id <= its last_id). With
 *                idle_days >= 1, a cursor that has acknowledged nothing
 *                for idle_days no longer holds events back; 0: every
 *                cursor does. No cursor at all: age alone.
 *   dead letters status 'applied' (retried successfully) more than `days`
 *                ago (by retried_at), and the signed batch of every batch
 *                that has no dead letter left.
 * Never pruned here: pending and failed dead letters, parked deliveries
 * (the operator's work list; a parked delivery is deleted once applied),
 * records, cases, the outbox.
 *
 * Every function needs the store's connection idle (no transaction open)
 * and returns TB_OK, TB_ERR_INVALID (bad argument, no store, a transaction
 * open), TB_ERR_DB or TB_ERR_UNAVAILABLE (connection gone), with err = one
 * line naming what failed. Counts may be NULL.
 */
#ifndef TB_STORE_PRUNE_H
#define TB_STORE_PRUNE_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define TB_PRUNE_DAYS_MAX 36500      /* retention.*_days upper bound (config.c) */
#define TB_PRUNE_LIMIT_MAX 1000000   /* rows of one statement */

/* Deletes up to limit inbox rows (see above); *pruned = how many. */
tb_err_t tb_store_prune_inbox(tb_store_t *st, long days, size_t limit, int64_t *pruned, char *err,
                              size_t errlen);

/* Deletes up to limit tombstones deleted more than days ago, oldest first.
 * (tb_store_purge_tombstones in store.c does the same in one unbounded
 * statement, for tools and tests.) */
tb_err_t tb_store_prune_tombstones(tb_store_t *st, long days, size_t limit, int64_t *pruned, char *err,
                                   size_t errlen);

/* Takes the first limit events in id order up to the slowest cursor that
 * holds events back and deletes those older than days; *pruned < limit
 * means nothing more can go now. */
tb_err_t tb_store_prune_events(tb_store_t *st, long days, long idle_days, size_t limit, int64_t *pruned,
                               char *err, size_t errlen);

/* Deletes up to limit applied dead letters older than days (*letters) and
 * then the signed batches left without any dead letter (*batches). */
tb_err_t tb_store_prune_dead_letters(tb_store_t *st, long days, size_t limit, int64_t *letters,
                                     int64_t *batches, char *err, size_t errlen);

/* The cursor that keeps events older than days from going: the holding
 * cursor (as for tb_store_prune_events) with the lowest last_id, if the
 * first event after it is older than days. cursor = its name and *last_id
 * its position, or cursor = "" and *last_id = 0 when none holds any. */
tb_err_t tb_store_events_holder(tb_store_t *st, long days, long idle_days, char *cursor, size_t len,
                                int64_t *last_id, char *err, size_t errlen);

/* *seq = the inbox watermark of sender (the highest seq pruned), 0 when
 * none was pruned. */
tb_err_t tb_store_inbox_watermark(tb_store_t *st, const char *sender, int64_t *seq, char *err, size_t errlen);

#endif
