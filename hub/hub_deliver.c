/* hub_deliver.c -- the hub's delivery path: journaled batches go from the
 * journal to each destination -- node or topic subscribers -- with a window
 * in flight and a persisted cursor per node.
 *
 * A node's cursor moves past a record once the record and everything before
 * it are acked (DeliverAck). What is in flight when the node reconnects, or
 * stays unacked too long (the redelivery timer in hub.c), is forgotten and
 * sent again from the cursor. */
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "hub_internal.h"
#include "log.h"
#include "wire.h"

static const char *comp = "hub";

/* Forgets what is in flight: the next pump resends from the cursor. */
void hub_reset_delivery(peer_t *p)
{
    hubstore_reader_destroy(&p->reader);
    p->ninflight = 0;
}

/* hubstore_reader_next's filter: 1 if p receives dest, else 0. */
static int want_dest(void *arg, const char *dest)
{
    const peer_t *p = arg;
    return p->reg && registry_wants(p->reg, dest);
}

static void advance_cursor(hub_t *self, peer_t *p)
{
    size_t k = 0;
    uint64_t c = p->cursor;
    while (k < p->ninflight && p->inflight[k].acked) c = p->inflight[k++].hub_seq;
    if (k) {
        memmove(p->inflight, p->inflight + k, (p->ninflight - k) * sizeof *p->inflight);
        p->ninflight -= k;
    }
    if (p->ninflight == 0 && p->reader) {
        uint64_t pos = hubstore_reader_pos(p->reader);
        if (pos > c) c = pos;
    }
    if (c != p->cursor) {
        p->cursor = c;
        cursors_set(self->cursors, p->id, c);
    }
}

/* Sends as many journaled batches to p as its window allows. */
void hub_pump(hub_t *self, peer_t *p, uint64_t now)
{
    char err[TB_ERRLEN];
    if (!p->online || hub_peer_revoked(p)) return;
    if (!self->store || hubstore_broken(self->store)) return;
    if (!p->reader) {
        /* the destinations p receives (registry_wants), for the SQL filter */
        const char *dests[1 + 64];
        char topics[64][TB_ID_MAX + 8];
        size_t nd = 0;
        dests[nd++] = p->id;
        for (size_t k = 0; k < p->reg->nsubs && k < 64; k++) {
            snprintf(topics[k], sizeof topics[k], "topic:%s", p->reg->subs[k]);
            dests[nd++] = topics[k];
        }
        tb_err_t rc = hubstore_reader_new(self->store, p->cursor, dests, nd, &p->reader, err, sizeof err);
        if (rc != TB_OK) {
            tb_log(TB_LOG_ERROR, comp, "journal_read_failed", "node=%s cursor=%llu error=\"%s\"", p->id,
                   (unsigned long long)p->cursor, err);
            return;
        }
        p->ninflight = 0;
    }
    while (p->ninflight < (size_t)self->cfg->deliver_window) {
        jrec_t rec;
        int got = 0;
        tb_err_t rc = hubstore_reader_next(p->reader, want_dest, p, &rec, &got, err, sizeof err);
        if (rc != TB_OK) {
            tb_log(TB_LOG_ERROR, comp, "journal_read_failed", "node=%s error=\"%s\"", p->id, err);
            break;
        }
        if (!got) break;
        inflight_t *e = &p->inflight[p->ninflight];
        e->hub_seq = rec.hub_seq;
        e->bytes = rec.batch_len;
        e->sent_ms = now ? now : 1;
        e->acked = 0;
        if (strcmp(rec.sender, p->id) == 0) {   /* own topic batch: not echoed */
            e->acked = 1;
            p->ninflight++;
            continue;
        }
        size_t len = 0;
        rc = tb_frame_send_deliver(self->router, p->rid, p->rid_len, rec.hub_seq, rec.batch, rec.batch_len,
                                   ZMQ_DONTWAIT, &len);
        if (rc == TB_ERR_NOMEM) break;
        p->ninflight++;              /* sent or not, the redelivery timer covers it */
        if (rc != TB_OK) {
            hub_mark_offline(p, "unreachable");
            return;
        }
        p->batches_out++;
        p->bytes_out += len;
        self->stats.batches_out++;
    }
    advance_cursor(self, p);
}

/* hub_internal.h */
void hub_on_deliver_ack(hub_t *self, peer_t *p, uint64_t hub_seq, uint64_t now)
{
    for (size_t k = 0; k < p->ninflight; k++) {
        inflight_t *e = &p->inflight[k];
        if (e->hub_seq != hub_seq || e->acked) continue;
        e->acked = 1;
        p->acks_in++;
        if (p->backlog_batches) p->backlog_batches--;
        p->backlog_bytes = p->backlog_bytes > e->bytes ? p->backlog_bytes - e->bytes : 0;
        break;
    }
    advance_cursor(self, p);
    hub_pump(self, p, now);
}
