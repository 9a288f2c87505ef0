/* node_receive.c -- the node's receive path: what the hub delivers is
 * verified, applied in PostgreSQL and acked.
 *
 * Deliveries waiting on the socket behind one another (a backlog, catch-up)
 * are verified and applied as a group in one PostgreSQL transaction
 * (tb_store_apply_batches); each is acked only after that transaction
 * committed. A refused one is parked in tongban.refused_deliveries
 * (refused.c) and acked on its own, and the group goes on without it. A
 * frame of another kind read on the way ends the group and is handled after
 * it (node_on_dealer_msg), so frames keep their order. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "log.h"
#include "metrics.h"
#include "node_internal.h"
#include "wire.h"

static const char *comp = "node";

/* Deliveries applied in one transaction when they are backed up (see
 * node_on_deliver): at most this many batches / entries per group. */
#define GROUP_MAX_BATCHES 16
#define GROUP_MAX_ENTRIES 8192

/* node_internal.h */
const char *node_check_delivery(node_t *self, const uint8_t *raw, size_t raw_len, Tongban__SignedBatch **sbp,
                                Tongban__Batch **bp, const char **signer, char *err, size_t errlen)
{
    Tongban__Batch *b = NULL;
    Tongban__SignedBatch *sb = tongban__signed_batch__unpack(NULL, raw_len, raw);
    const dir_t *sender = sb && sb->signer_key_id ? node_dir_by_key_id(self, sb->signer_key_id) : NULL;
    const char *why = NULL;
    *sbp = NULL;
    *bp = NULL;
    *signer = sender ? sender->id : NULL;
    if (!sb) why = "no batch";
    else if (!sender) why = REFUSED_UNKNOWN_SIGNER;
    else if (sender->revoked) why = "signer revoked";
    else if (tb_batch_verify(sb, sender->cert, &b, err, errlen) != TB_OK) why = err;
    else if (!b->dest || (strcmp(b->dest, self->cfg->id) != 0 && strncmp(b->dest, "topic:", 6) != 0))
        why = "batch is addressed to another node";
    else if (b->seq > INT64_MAX) why = "batch seq beyond 2^63-1";
    if (why) {
        if (b) tongban__batch__free_unpacked(b, NULL);
        if (sb) tongban__signed_batch__free_unpacked(sb, NULL);
        return why;
    }
    *sbp = sb;
    *bp = b;
    return NULL;
}

static void ack_delivery(node_t *self, uint64_t hub_seq)
{
    Tongban__DeliverAck da = TONGBAN__DELIVER_ACK__INIT;
    da.hub_seq = hub_seq;
    Tongban__Frame f = TONGBAN__FRAME__INIT;
    f.kind_case = TONGBAN__FRAME__KIND_DELIVER_ACK;
    f.deliver_ack = &da;
    node_send_frame(self, &f);
}

/* Checks a delivery (node_check_delivery). Returns 0 with *sbp and *bp set
 * (the caller frees them), or -1 after logging and counting the refusal and
 * parking it in tongban.refused_deliveries, then acking it: a refused
 * delivery must not hold up the ones behind it. One that could not be parked
 * (PostgreSQL unavailable) is not acked: the hub delivers it again. */
static int verify_delivery(node_t *self, uint64_t hub_seq, const uint8_t *raw, size_t raw_len,
                           Tongban__SignedBatch **sbp, Tongban__Batch **bp)
{
    char err[TB_ERRLEN], q[TB_ERRLEN + 8];
    const char *signer = NULL;
    const char *why = node_check_delivery(self, raw, raw_len, sbp, bp, &signer, err, sizeof err);
    if (!why) return 0;
    self->stats.rejected_in++;
    tb_log(TB_LOG_ERROR, comp, "delivery_rejected", "node=%s hub_seq=%llu sender=%s error=%s",
           self->cfg->id, (unsigned long long)hub_seq, signer ? signer : "?", tb_log_quote(why, q, sizeof q));
    if (node_park_delivery(self, hub_seq, raw, raw_len, signer, why) == 0) ack_delivery(self, hub_seq);
    return -1;
}

void node_account_apply(node_t *self, const Tongban__Batch *b, const tb_apply_item_t *it, double seconds)
{
    if (!it->applied) {
        self->stats.duplicates++;
        tb_log(TB_LOG_INFO, comp, "duplicate_skipped", "node=%s sender=%s seq=%llu", self->cfg->id, b->sender,
               (unsigned long long)b->seq);
        return;
    }
    node_metrics_apply(self->metrics, seconds);
    self->stats.batches_applied++;
    self->stats.records_applied += b->n_entries - it->dead;
    self->stats.dead_letters += it->dead;
    if (it->dead)
        tb_log(TB_LOG_WARN, comp, "dead_letters", "node=%s sender=%s seq=%llu entries=%zu dead=%zu hint=\"tbctl node dead-letters\"",
               self->cfg->id, b->sender, (unsigned long long)b->seq, b->n_entries, it->dead);
}

/* One delivery of a group: its hub_seq, its message when read ahead here
 * (raw points into it), the decoded batch. */
typedef struct {
    uint64_t hub_seq;
    const uint8_t *raw;
    size_t raw_len;
    zmq_msg_t msg;
    int has_msg;
    Tongban__SignedBatch *sb;
    Tongban__Batch *b;
} delivery_t;

/* A delivery: hub_seq and the signed batch bytes exactly as journaled.
 * Deliveries already waiting on the socket behind it (a backlog, catch-up)
 * are read and verified too, up to GROUP_MAX_*, and the verified ones applied
 * in one PostgreSQL transaction (tb_store_apply_batches); each is acked only
 * after that transaction committed. A refused one is parked and acked on
 * its own (verify_delivery) and the group goes on without it. A frame of
 * another kind read on the way ends the group and is handled after it, so
 * frames keep their order. */
void node_on_deliver(node_t *self, uint64_t hub_seq, const uint8_t *raw, size_t raw_len)
{
    delivery_t g[GROUP_MAX_BATCHES];
    tb_apply_item_t *items = NULL;
    size_t n = 0, entries = 0;
    zmq_msg_t held;
    int have_held = 0;
    uint64_t now = tb_now_ms();
    if (!self->store) return;             /* not acked: the hub redelivers */
    if (verify_delivery(self, hub_seq, raw, raw_len, &g[0].sb, &g[0].b) != 0) return;
    g[0].hub_seq = hub_seq;
    g[0].raw = raw;
    g[0].raw_len = raw_len;
    g[0].has_msg = 0;
    entries = g[0].b->n_entries;
    n = 1;
    while (n < GROUP_MAX_BATCHES && entries < GROUP_MAX_ENTRIES) {
        int ev = 0;
        size_t evlen = sizeof ev;
        if (zmq_getsockopt(self->dealer, ZMQ_EVENTS, &ev, &evlen) != 0 || !(ev & ZMQ_POLLIN)) break;
        delivery_t *d = &g[n];
        zmq_msg_init(&d->msg);
        if (zmq_msg_recv(&d->msg, self->dealer, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&d->msg);
            break;
        }
        self->last_heard_ms = now = tb_now_ms();
        if (tb_frame_parse_deliver(zmq_msg_data(&d->msg), zmq_msg_size(&d->msg), &d->hub_seq, &d->raw,
                                   &d->raw_len) != TB_OK) {
            zmq_msg_init(&held);
            zmq_msg_move(&held, &d->msg);
            zmq_msg_close(&d->msg);
            have_held = 1;
            break;
        }
        if (verify_delivery(self, d->hub_seq, d->raw, d->raw_len, &d->sb, &d->b) != 0) {
            zmq_msg_close(&d->msg);
            if (!self->store) break;      /* could not park it: the group is not applied either */
            continue;                     /* parked and acked: the group goes on */
        }
        d->has_msg = 1;
        entries += d->b->n_entries;
        n++;
    }

    if (!self->store) goto done;                          /* not acked: redelivered */
    if (!(items = calloc(n, sizeof *items))) goto done;   /* not acked: redelivered */
    for (size_t i = 0; i < n; i++) {
        items[i].batch = g[i].b;
        items[i].signed_batch = g[i].raw;
        items[i].signed_len = g[i].raw_len;
    }
    uint64_t t0 = tb_now_ms();
    double t_apply = tb_metrics_now();
    tb_store_apply_batches(self->store, items, n);
    double dt = tb_metrics_now() - t_apply;
    size_t napplied = 0;
    for (size_t i = 0; i < n; i++) napplied += items[i].rc == TB_OK && items[i].applied;
    self->stats.apply_ms_total += tb_now_ms() - t0;
    for (size_t i = 0; i < n; i++) {
        const tb_apply_item_t *it = &items[i];
        const Tongban__Batch *b = g[i].b;
        char q[TB_ERRLEN + 8];
        if (it->rc == TB_ERR_UNAVAILABLE) {
            node_store_lost(self, "apply", it->err);   /* this one and the rest: not acked */
            break;
        }
        if (it->rc != TB_OK) {
            self->stats.rejected_in++;
            self->stats.pg_errors++;
            tb_log(TB_LOG_ERROR, comp, "apply_failed", "node=%s sender=%s seq=%llu error=%s", self->cfg->id,
                   b->sender, (unsigned long long)b->seq, tb_log_quote(it->err, q, sizeof q));
            continue;
        }
        node_account_apply(self, b, it, napplied ? dt / (double)napplied : dt);
        ack_delivery(self, g[i].hub_seq);
    }
done:
    free(items);
    for (size_t i = 0; i < n; i++) {
        tongban__batch__free_unpacked(g[i].b, NULL);
        tongban__signed_batch__free_unpacked(g[i].sb, NULL);
        if (g[i].has_msg) zmq_msg_close(&g[i].msg);
    }
    if (have_held) node_on_dealer_msg(self, &held, now);
}
