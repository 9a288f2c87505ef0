/* store_refused.h -- deliveries the node refused, parked in its PostgreSQL
 * store (tongban.refused_deliveries, schema migration 9 in store_schema.c)
 * instead of being left unacknowledged at the hub, where they would block
 * every delivery behind them.
 *
 * A row keeps the delivery's bytes exactly as the hub delivered them (the
 * SignedBatch), the hub's hub_seq, the sender and seq the batch claims
 * (unverified: NULL when it could not be decoded) and the reason the node
 * refused it. The node re-verifies and applies a parked delivery when the
 * reason may have gone (a signer joined the directory) or when the operator
 * asks (tbctl node retry-refused ID); it deletes the row once applied.
 *
 * Every function runs its single statement in its own implicit transaction
 * (nothing may be open on the connection) and returns TB_OK, or
 * TB_ERR_UNAVAILABLE when the connection is gone (the caller drops the store,
 * node_store_lost), TB_ERR_DB for any other PostgreSQL error, with err = one
 * line naming what failed.
 */
#ifndef TB_STORE_REFUSED_H
#define TB_STORE_REFUSED_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* One parked delivery. */
typedef struct {
    int64_t id;
    int64_t hub_seq;         /* -1: not known (beyond bigint) */
    char *sender;            /* claimed, unverified; NULL: not known */
    int64_t seq;             /* claimed; -1: not known */
    char *reason;
    int retries;             /* re-verifications that refused it again */
    char *refused_at;        /* ISO 8601 UTC, e.g. 2026-01-31T08:00:00.123Z */
    char *retried_at;        /* likewise; NULL if never retried */
    size_t size;             /* bytes of the delivery */
    uint8_t *bytes;          /* the delivery itself; NULL unless asked for */
} tb_refused_t;

/* Parks a delivery: one INSERT, committed when this returns TB_OK (durable:
 * the caller may then ack it to the hub). sender NULL and seq < 0 when not
 * known; reason is kept to printable ASCII. The same delivery parked again
 * (same hub_seq and bytes: a redelivery whose ack was lost) is TB_OK without
 * a second row. */
tb_err_t tb_store_park_delivery(tb_store_t *st, uint64_t hub_seq, const char *sender, int64_t seq,
                                const char *reason, const uint8_t *bytes, size_t len, char *err, size_t errlen);

/* Parked deliveries with id > after_id in id order, at most max (0: all);
 * only those whose reason is `reason` unless it is NULL; with their bytes
 * when with_bytes. *out is NULL when *n == 0; free with tb_store_free_refused. */
tb_err_t tb_store_refused_list(tb_store_t *st, int64_t after_id, size_t max, const char *reason, int with_bytes,
                               tb_refused_t **out, size_t *n, char *err, size_t errlen);

/* *id = the largest id of the parked deliveries (0: none). */
tb_err_t tb_store_refused_last_id(tb_store_t *st, int64_t *id, char *err, size_t errlen);

/* Parked delivery id with its bytes into *out (free with
 * tb_store_refused_clear). TB_ERR_NOTFOUND: no such id. */
tb_err_t tb_store_refused_get(tb_store_t *st, int64_t id, tb_refused_t *out, char *err, size_t errlen);

/* Still refused after a retry: reason replaced, retries + 1, retried_at now.
 * TB_ERR_NOTFOUND: no such id. */
tb_err_t tb_store_refused_update(tb_store_t *st, int64_t id, const char *reason, char *err, size_t errlen);

/* Applied (or found already applied): the row goes. Deleting an id that is
 * not there is TB_OK. */
tb_err_t tb_store_refused_delete(tb_store_t *st, int64_t id, char *err, size_t errlen);

void tb_store_refused_clear(tb_refused_t *r);
void tb_store_free_refused(tb_refused_t *v, size_t n);

#endif
