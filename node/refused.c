/* refused.c -- the node's refused deliveries: parked in
 * tongban.refused_deliveries (store_refused.h) and acked instead of blocking
 * the hub's stream to this node, then retried -- by themselves when the
 * directory gains a signer (for those refused as REFUSED_UNKNOWN_SIGNER), or
 * when the operator asks (tbctl node retry-refused ID). Every change a node
 * receives thus lands in its database, in a dead letter or here, with a
 * reason; nothing stalls. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "node_internal.h"
#include "store_refused.h"

static const char *comp = "node";

/* What a refused delivery claims to be, unverified: its batch's sender
 * (only a valid node id, else "") and seq (-1 when unknown or beyond bigint). */
static void claimed(const uint8_t *raw, size_t raw_len, char *sender, size_t slen, int64_t *seq)
{
    Tongban__SignedBatch *sb = tongban__signed_batch__unpack(NULL, raw_len, raw);
    Tongban__Batch *b = sb ? tongban__batch__unpack(NULL, sb->body.len, sb->body.data) : NULL;
    snprintf(sender, slen, "%s", b && b->sender && tb_config_valid_id(b->sender) ? b->sender : "");
    *seq = b && b->seq <= INT64_MAX ? (int64_t)b->seq : -1;
    if (b) tongban__batch__free_unpacked(b, NULL);
    if (sb) tongban__signed_batch__free_unpacked(sb, NULL);
}

int node_park_delivery(node_t *self, uint64_t hub_seq, const uint8_t *raw, size_t raw_len, const char *signer,
                       const char *why)
{
    char err[TB_ERRLEN], q[TB_ERRLEN + 8], qwhy[TB_ERRLEN + 8], sender[TB_ID_MAX + 1];
    int64_t seq;
    if (!self->store) return -1;
    claimed(raw, raw_len, sender, sizeof sender, &seq);
    tb_err_t rc = tb_store_park_delivery(self->store, hub_seq, sender[0] ? sender : NULL, seq, why, raw, raw_len,
                                         err, sizeof err);
    if (rc == TB_ERR_UNAVAILABLE) {
        node_store_lost(self, "park_delivery", err);
        return -1;
    }
    if (rc != TB_OK) {                    /* not acked: delivered again, parked then */
        self->stats.pg_errors++;
        tb_log(TB_LOG_ERROR, comp, "delivery_park_failed", "node=%s hub_seq=%llu error=%s", self->cfg->id,
               (unsigned long long)hub_seq, tb_log_quote(err, q, sizeof q));
        return -1;
    }
    self->stats.deliveries_parked++;
    tb_log(TB_LOG_WARN, comp, "delivery_parked",
           "node=%s hub_seq=%llu sender=%s seq=%lld reason=%s hint=\"tbctl node refused\"", self->cfg->id,
           (unsigned long long)hub_seq, signer ? signer : sender[0] ? sender : "?", (long long)seq,
           tb_log_quote(why, qwhy, sizeof qwhy));
    return 0;
}

/* Records that parked delivery r is still refused for why. Returns
 * TB_ERR_REFUSED, or the store's error (the store dropped if unavailable). */
static tb_err_t still_refused(node_t *self, const tb_refused_t *r, const char *why, char *msg, size_t msglen)
{
    char err[TB_ERRLEN];
    tb_err_t rc = tb_store_refused_update(self->store, r->id, why, err, sizeof err);
    if (rc == TB_ERR_UNAVAILABLE) node_store_lost(self, "refused_update", err);
    snprintf(msg, msglen, "%s", rc == TB_OK ? why : err);
    return rc == TB_OK ? TB_ERR_REFUSED : rc;
}

/* Applies the verified batch b of parked delivery r through the normal path
 * (tb_store_apply_batches: its inbox row makes a second apply a no-op), then
 * deletes the row. The delete is a statement of its own after the apply's
 * commit: a crash in between leaves a row whose next retry finds the batch
 * in the inbox (a duplicate) and deletes it -- nothing applied twice. */
static tb_err_t apply_parked(node_t *self, const tb_refused_t *r, const Tongban__Batch *b, char *msg,
                             size_t msglen)
{
    char err[TB_ERRLEN];
    tb_apply_item_t it = { .batch = b, .signed_batch = r->bytes, .signed_len = r->size };
    double t0 = tb_metrics_now();
    tb_store_apply_batches(self->store, &it, 1);
    if (it.rc != TB_OK) {
        if (it.rc == TB_ERR_UNAVAILABLE) node_store_lost(self, "apply_parked", it.err);
        else self->stats.pg_errors++;
        snprintf(msg, msglen, "%s", it.err);
        return it.rc;
    }
    node_account_apply(self, b, &it, tb_metrics_now() - t0);
    self->stats.parked_applied++;
    tb_err_t rc = tb_store_refused_delete(self->store, r->id, err, sizeof err);
    if (rc == TB_ERR_UNAVAILABLE) node_store_lost(self, "refused_delete", err);
    snprintf(msg, msglen, "batch %s/%llu (%zu entries) %s%s", b->sender, (unsigned long long)b->seq,
             b->n_entries, it.applied ? "applied" : "was already applied",
             it.dead ? ", some entries as dead letters (tbctl node dead-letters)" : "");
    return TB_OK;                         /* applied: a row left behind is a no-op later */
}

/* Re-verifies parked delivery r (with its bytes) against the current
 * directory and applies it if it passes. Returns as node_refused_retry. */
static tb_err_t retry_one(node_t *self, const tb_refused_t *r, char *msg, size_t msglen)
{
    char err[TB_ERRLEN], q[TB_ERRLEN + 8];
    Tongban__SignedBatch *sb = NULL;
    Tongban__Batch *b = NULL;
    const char *signer = NULL;
    const char *why = node_check_delivery(self, r->bytes, r->size, &sb, &b, &signer, err, sizeof err);
    tb_err_t rc = why ? still_refused(self, r, why, msg, msglen) : apply_parked(self, r, b, msg, msglen);
    tb_log(rc == TB_OK ? TB_LOG_INFO : TB_LOG_WARN, comp, "refused_retried",
           "node=%s id=%" PRId64 " sender=%s seq=%" PRId64 " result=%s detail=%s", self->cfg->id, r->id,
           r->sender ? r->sender : "?", r->seq,
           rc == TB_OK ? "applied" : rc == TB_ERR_REFUSED ? "still_refused" : "failed",
           tb_log_quote(msg, q, sizeof q));
    if (b) tongban__batch__free_unpacked(b, NULL);
    if (sb) tongban__signed_batch__free_unpacked(sb, NULL);
    return rc;
}

void node_refused_directory_grew(node_t *self)
{
    char err[TB_ERRLEN];
    self->refused_retry_due = 1;
    self->refused_retry_after = 0;
    self->refused_retry_upto = INT64_MAX;         /* no database now: all of them, once it is back */
    if (!self->store) return;
    tb_err_t rc = tb_store_refused_last_id(self->store, &self->refused_retry_upto, err, sizeof err);
    if (rc != TB_OK) self->refused_retry_upto = INT64_MAX;      /* the timer's query reports the error */
    if (rc == TB_ERR_UNAVAILABLE) node_store_lost(self, "refused_last_id", err);
}

void node_refused_timer(node_t *self)
{
    char err[TB_ERRLEN], q[TB_ERRLEN + 8], msg[TB_ERRLEN];
    tb_refused_t *v = NULL;
    size_t n = 0;
    if (!self->refused_retry_due || !self->store) return;
    tb_err_t rc = tb_store_refused_list(self->store, self->refused_retry_after, REFUSED_RETRY_STEP,
                                        REFUSED_UNKNOWN_SIGNER, 1, &v, &n, err, sizeof err);
    if (rc != TB_OK) {
        if (rc == TB_ERR_UNAVAILABLE) {
            node_store_lost(self, "refused_list", err);   /* due: again after the reconnect */
            return;
        }
        tb_log(TB_LOG_ERROR, comp, "refused_retry_failed", "node=%s error=%s", self->cfg->id,
               tb_log_quote(err, q, sizeof q));
        self->refused_retry_due = 0;
        return;
    }
    size_t i = 0;
    for (; i < n && self->store && v[i].id <= self->refused_retry_upto; i++) {
        retry_one(self, &v[i], msg, sizeof msg);
        self->refused_retry_after = v[i].id;
    }
    if ((n < REFUSED_RETRY_STEP || i < n) && self->store) self->refused_retry_due = 0;
    tb_store_free_refused(v, n);
}

tb_err_t node_refused_retry(node_t *self, int64_t id, char *msg, size_t msglen)
{
    tb_refused_t r;
    if (!self->store) {
        snprintf(msg, msglen, "PostgreSQL not connected");
        return TB_ERR_UNAVAILABLE;
    }
    tb_err_t rc = tb_store_refused_get(self->store, id, &r, msg, msglen);
    if (rc == TB_ERR_UNAVAILABLE) node_store_lost(self, "refused_get", msg);
    if (rc != TB_OK) return rc;
    rc = retry_one(self, &r, msg, msglen);
    tb_store_refused_clear(&r);
    return rc;
}
