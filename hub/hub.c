/* hub.c -- tongban-hub: admit registered nodes (CURVE + ZAP), verify each
 * batch's signature and sender, forward it to its destination with a window
 * of deliveries in flight, and ack the sender once the destination applied it. */
#include "hub.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "crypto.h"
#include "log.h"
#include "pki.h"
#include "wire.h"
#include "zap.h"

#define RID_MAX 256

typedef struct {
    uint64_t hub_seq;
    char *sender;                 /* node id of the origin (points into peers) */
    uint64_t sender_seq;
    uint8_t *sb;                  /* serialised SignedBatch, verbatim */
    size_t sb_len;
    uint64_t sent_ms;             /* 0 = not in flight */
    int acked;
} pending_t;

typedef struct {
    char id[TB_ID_MAX + 1];
    uint8_t curve_pub[32];
    tb_cert_t *cert;
    int online;
    uint8_t rid[RID_MAX];
    size_t rid_len;
    uint64_t last_seen_ms;
    pending_t *q;                 /* FIFO of batches for this node: q[head..len) */
    size_t head, len, cap;
    unsigned long batches_in, batches_out;
} peer_t;

struct hub {
    tb_hub_config_t cfg;          /* shallow copy; strings owned by the caller */
    void *ctx, *router, *zap;
    tb_cert_t *ca;
    peer_t *peers;
    size_t npeers;
    uint64_t next_hub_seq;
    uint64_t last_stats_ms;
    hub_stats_t stats;
};

static const char *comp = "hub";

static peer_t *peer_by_id(hub_t *self, const char *id)
{
    for (size_t i = 0; i < self->npeers; i++)
        if (strcmp(self->peers[i].id, id) == 0) return &self->peers[i];
    return NULL;
}

static const char *zap_lookup(void *arg, const uint8_t key[32])
{
    hub_t *self = arg;
    for (size_t i = 0; i < self->npeers; i++)
        if (memcmp(self->peers[i].curve_pub, key, 32) == 0) return self->peers[i].id;
    return NULL;
}

tb_err_t hub_new(const tb_hub_config_t *cfg, hub_t **out, char *err, size_t errlen)
{
    tb_err_t rc = TB_ERR_NOMEM;
    char secret[41];
    hub_t *self = calloc(1, sizeof *self);
    if (!self) return TB_ERR_NOMEM;
    self->cfg = *cfg;
    self->next_hub_seq = 1;

    rc = tb_cert_load_file(cfg->ca_certificate, &self->ca, err, errlen);
    if (rc != TB_OK) goto fail;
    self->peers = calloc(cfg->node_count ? cfg->node_count : 1, sizeof *self->peers);
    if (!self->peers) { rc = TB_ERR_NOMEM; goto fail; }
    for (size_t i = 0; i < cfg->node_count; i++) {
        const tb_hub_node_config_t *n = &cfg->nodes[i];
        peer_t *p = &self->peers[self->npeers];
        snprintf(p->id, sizeof p->id, "%s", n->id);
        if (!zmq_z85_decode(p->curve_pub, n->curve_public)) {
            snprintf(err, errlen, "node %s: curve_public is not a valid Z85 key", n->id);
            rc = TB_ERR_CONFIG;
            goto fail;
        }
        rc = tb_cert_load_file(n->certificate, &p->cert, err, errlen);
        if (rc != TB_OK) goto fail;
        self->npeers++;
        char e2[TB_ERRLEN];
        rc = tb_cert_verify_issued_by(p->cert, self->ca, e2, sizeof e2);
        if (rc != TB_OK) {
            snprintf(err, errlen, "%s: not issued by the national CA %s: %s", n->certificate,
                     cfg->ca_certificate, e2);
            goto fail;
        }
        if (strcmp(tb_cert_node_id(p->cert), n->id) != 0) {
            snprintf(err, errlen, "%s: certificate is for node \"%s\", registry says \"%s\"",
                     n->certificate, tb_cert_node_id(p->cert), n->id);
            rc = TB_ERR_CERT;
            goto fail;
        }
    }
    rc = tb_pki_read_z85(cfg->curve_secret, 1, secret, err, errlen);
    if (rc != TB_OK) goto fail;

    rc = TB_ERR_IO;
    self->ctx = zmq_ctx_new();
    if (!self->ctx) goto zfail;
    /* The ZAP handler must be bound before any CURVE socket accepts peers. */
    self->zap = zmq_socket(self->ctx, ZMQ_REP);
    if (!self->zap || zmq_bind(self->zap, "inproc://zeromq.zap.01") != 0) goto zfail;
    self->router = zmq_socket(self->ctx, ZMQ_ROUTER);
    if (!self->router) goto zfail;
    int one = 1, zero = 0;
    int64_t maxmsg = cfg->max_message_bytes;
    int hb_ivl = (int)cfg->heartbeat_ms, hb_to = (int)cfg->heartbeat_timeout_ms;
    int hwm = 100000;
    zmq_setsockopt(self->router, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(self->router, ZMQ_CURVE_SECRETKEY, secret, 40);
    zmq_setsockopt(self->router, ZMQ_ZAP_DOMAIN, "tongban", 7);
    zmq_setsockopt(self->router, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(self->router, ZMQ_ROUTER_HANDOVER, &one, sizeof one);
    zmq_setsockopt(self->router, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    zmq_setsockopt(self->router, ZMQ_HEARTBEAT_IVL, &hb_ivl, sizeof hb_ivl);
    zmq_setsockopt(self->router, ZMQ_HEARTBEAT_TIMEOUT, &hb_to, sizeof hb_to);
    zmq_setsockopt(self->router, ZMQ_HEARTBEAT_TTL, &hb_to, sizeof hb_to);
    zmq_setsockopt(self->router, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(self->router, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(self->router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(self->zap, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_bind(self->router, cfg->listen) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", cfg->listen, zmq_strerror(errno));
        rc = TB_ERR_IO;
        goto fail;
    }
    memset(secret, 0, sizeof secret);
    *out = self;
    return TB_OK;
zfail:
    snprintf(err, errlen, "zeromq setup failed: %s", zmq_strerror(errno));
fail:
    memset(secret, 0, sizeof secret);
    hub_destroy(&self);
    return rc;
}

void hub_destroy(hub_t **selfp)
{
    hub_t *self = selfp ? *selfp : NULL;
    if (!self) return;
    if (self->router) zmq_close(self->router);
    if (self->zap) zmq_close(self->zap);
    if (self->ctx) zmq_ctx_term(self->ctx);
    for (size_t i = 0; i < self->npeers; i++) {
        peer_t *p = &self->peers[i];
        for (size_t j = p->head; j < p->len; j++) free(p->q[j].sb);
        free(p->q);
        tb_cert_destroy(&p->cert);
    }
    free(self->peers);
    tb_cert_destroy(&self->ca);
    free(self);
    *selfp = NULL;
}

void hub_get_stats(const hub_t *self, hub_stats_t *out)
{
    *out = self->stats;
}

/* ---- sending ---- */

static void mark_offline(hub_t *self, peer_t *p, const char *why)
{
    if (!p->online) return;
    p->online = 0;
    for (size_t j = p->head; j < p->len; j++) p->q[j].sent_ms = 0;
    size_t backlog = p->len - p->head;
    tb_log(TB_LOG_INFO, comp, "node_offline", "node=%s reason=%s backlog_batches=%zu", p->id, why,
           backlog);
    (void)self;
}

static tb_err_t send_to(hub_t *self, peer_t *p, const Tongban__Frame *f)
{
    if (!p->online) return TB_ERR_UNAVAILABLE;
    tb_err_t rc = tb_frame_send(self->router, p->rid, p->rid_len, f, ZMQ_DONTWAIT);
    if (rc == TB_ERR_UNAVAILABLE) mark_offline(self, p, "unreachable");
    return rc;
}

static void send_nack(hub_t *self, peer_t *p, uint64_t seq, Tongban__NackReason reason,
                      const char *detail)
{
    Tongban__Nack nack = TONGBAN__NACK__INIT;
    nack.seq = seq;
    nack.reason = reason;
    nack.detail = (char *)detail;
    Tongban__Frame f = TONGBAN__FRAME__INIT;
    f.kind_case = TONGBAN__FRAME__KIND_NACK;
    f.nack = &nack;
    send_to(self, p, &f);
    if ((unsigned)reason < 16) self->stats.rejected[reason]++;
}

/* Sends as many queued batches to p as its window allows (and resends those
 * whose delivery timed out). */
static void pump(hub_t *self, peer_t *p, uint64_t now)
{
    if (!p->online) return;
    size_t inflight = 0;
    for (size_t j = p->head; j < p->len; j++) {
        pending_t *e = &p->q[j];
        if (e->acked) continue;
        if (e->sent_ms && now - e->sent_ms < (uint64_t)self->cfg.redeliver_ms) {
            inflight++;
            continue;
        }
        if (inflight >= (size_t)self->cfg.deliver_window) break;
        uint8_t *buf;
        size_t len;
        if (tb_frame_deliver(e->hub_seq, e->sb, e->sb_len, &buf, &len) != TB_OK) return;
        tb_err_t rc = tb_frame_send_raw(self->router, p->rid, p->rid_len, buf, len, ZMQ_DONTWAIT);
        free(buf);
        if (rc != TB_OK) {
            mark_offline(self, p, "unreachable");
            return;
        }
        if (e->sent_ms)
            tb_log(TB_LOG_INFO, comp, "redeliver", "node=%s hub_seq=%llu", p->id,
                   (unsigned long long)e->hub_seq);
        e->sent_ms = now ? now : 1;
        inflight++;
        p->batches_out++;
        self->stats.batches_out++;
    }
}

/* ---- receiving ---- */

static void on_hello(hub_t *self, peer_t *p, const Tongban__Hello *h)
{
    if (!h->node_id || strcmp(h->node_id, p->id) != 0) {
        tb_log(TB_LOG_WARN, comp, "hello_rejected", "node=%s claimed=%s reason=wrong_sender",
               p->id, h->node_id ? h->node_id : "");
        self->stats.rejected[TONGBAN__NACK_REASON__NACK_WRONG_SENDER]++;
        return;
    }
    size_t n = self->npeers;
    Tongban__DirectoryEntry *ents = calloc(n ? n : 1, sizeof *ents);
    Tongban__DirectoryEntry **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    if (!ents || !ptrs) goto done;
    for (size_t i = 0; i < n; i++) {
        tongban__directory_entry__init(&ents[i]);
        size_t len;
        const char *pem = tb_cert_pem(self->peers[i].cert, &len);
        ents[i].node_id = self->peers[i].id;
        ents[i].certificate_pem.data = (uint8_t *)pem;
        ents[i].certificate_pem.len = len;
        ptrs[i] = &ents[i];
    }
    Tongban__DirectoryUpdate dir = TONGBAN__DIRECTORY_UPDATE__INIT;
    dir.n_nodes = n;
    dir.nodes = ptrs;
    Tongban__Welcome w = TONGBAN__WELCOME__INIT;
    w.hub_id = self->cfg.id;
    w.protocol = TB_PROTOCOL_VERSION;
    w.directory = &dir;
    Tongban__Frame f = TONGBAN__FRAME__INIT;
    f.kind_case = TONGBAN__FRAME__KIND_WELCOME;
    f.welcome = &w;
    /* A (re)connecting node: everything unacked is sent again. */
    for (size_t j = p->head; j < p->len; j++) p->q[j].sent_ms = 0;
    if (send_to(self, p, &f) == TB_OK)
        tb_log(TB_LOG_INFO, comp, "node_welcome", "node=%s software=%s backlog_batches=%zu", p->id,
               h->software ? h->software : "", p->len - p->head);
done:
    free(ents);
    free(ptrs);
}

static int queue_push(peer_t *p, pending_t e)
{
    if (p->head > 0 && p->head == p->len) p->head = p->len = 0;
    if (p->len == p->cap) {
        if (p->head > p->cap / 2) {
            memmove(p->q, p->q + p->head, (p->len - p->head) * sizeof *p->q);
            p->len -= p->head;
            p->head = 0;
        } else {
            size_t cap = p->cap ? p->cap * 2 : 64;
            pending_t *q = realloc(p->q, cap * sizeof *q);
            if (!q) return -1;
            p->q = q;
            p->cap = cap;
        }
    }
    p->q[p->len++] = e;
    return 0;
}

static void on_batch(hub_t *self, peer_t *p, const Tongban__SignedBatch *sb, uint64_t now)
{
    char err[TB_ERRLEN] = "";
    Tongban__Batch *b = NULL;
    tb_err_t rc = tb_batch_verify(sb, p->cert, &b, err, sizeof err);
    if (rc != TB_OK) {
        /* Best effort: tell the sender which seq was refused. */
        uint64_t seq = 0;
        Tongban__Batch *peek = tongban__batch__unpack(NULL, sb->body.len, sb->body.data);
        if (peek) { seq = peek->seq; tongban__batch__free_unpacked(peek, NULL); }
        Tongban__NackReason r = rc == TB_ERR_BADSIG ? TONGBAN__NACK_REASON__NACK_BAD_SIGNATURE
                               : strstr(err, "sender") ? TONGBAN__NACK_REASON__NACK_WRONG_SENDER
                                                       : TONGBAN__NACK_REASON__NACK_MALFORMED;
        char q[TB_ERRLEN + 8];
        tb_log(TB_LOG_WARN, comp, "batch_rejected", "node=%s seq=%llu reason=%s detail=%s", p->id,
               (unsigned long long)seq, tb_nack_reason_name(r), tb_log_quote(err, q, sizeof q));
        send_nack(self, p, seq, r, err);
        return;
    }
    peer_t *dest = b->dest ? peer_by_id(self, b->dest) : NULL;
    if (!dest || dest == p) {
        snprintf(err, sizeof err, "destination \"%s\" is not a registered node", b->dest ? b->dest : "");
        tb_log(TB_LOG_WARN, comp, "batch_rejected", "node=%s seq=%llu reason=unknown_dest dest=%s",
               p->id, (unsigned long long)b->seq, b->dest ? b->dest : "");
        send_nack(self, p, b->seq, TONGBAN__NACK_REASON__NACK_UNKNOWN_DEST, err);
        goto done;
    }
    /* A resend of a batch still queued: same bytes -> nothing to do (its
     * Ack follows the delivery); different bytes under one seq -> alarm. */
    for (size_t j = dest->head; j < dest->len; j++) {
        pending_t *e = &dest->q[j];
        if (e->sender_seq == b->seq && strcmp(e->sender, p->id) == 0) {
            size_t n = tongban__signed_batch__get_packed_size(sb);
            uint8_t *mine = malloc(n ? n : 1);
            int same = 0;
            if (mine) {
                tongban__signed_batch__pack(sb, mine);
                same = n == e->sb_len && memcmp(mine, e->sb, n) == 0;
                free(mine);
            }
            if (!same) {
                tb_log(TB_LOG_ERROR, comp, "batch_rejected",
                       "node=%s seq=%llu reason=replay_mismatch alarm=1", p->id,
                       (unsigned long long)b->seq);
                send_nack(self, p, b->seq, TONGBAN__NACK_REASON__NACK_REPLAY_MISMATCH,
                          "a different batch with this seq is already queued");
            }
            goto done;
        }
    }
    pending_t e = { 0 };
    e.hub_seq = self->next_hub_seq++;
    e.sender = p->id;
    e.sender_seq = b->seq;
    e.sb_len = tongban__signed_batch__get_packed_size(sb);
    e.sb = malloc(e.sb_len ? e.sb_len : 1);
    if (!e.sb || queue_push(dest, e) != 0) {
        free(e.sb);
        send_nack(self, p, b->seq, TONGBAN__NACK_REASON__NACK_OVERLOADED, "hub out of memory");
        goto done;
    }
    tongban__signed_batch__pack(sb, e.sb);
    p->batches_in++;
    self->stats.batches_in++;
    self->stats.records_in += b->n_entries;
    tb_log(TB_LOG_DEBUG, comp, "batch_accepted", "node=%s seq=%llu dest=%s entries=%zu hub_seq=%llu",
           p->id, (unsigned long long)b->seq, dest->id, b->n_entries, (unsigned long long)e.hub_seq);
    pump(self, dest, now);
done:
    tongban__batch__free_unpacked(b, NULL);
}

static void on_deliver_ack(hub_t *self, peer_t *p, uint64_t hub_seq, uint64_t now)
{
    for (size_t j = p->head; j < p->len; j++) {
        pending_t *e = &p->q[j];
        if (e->hub_seq != hub_seq || e->acked) continue;
        e->acked = 1;
        peer_t *src = peer_by_id(self, e->sender);
        if (src) {
            Tongban__Ack ack = TONGBAN__ACK__INIT;
            ack.seq = e->sender_seq;
            Tongban__Frame f = TONGBAN__FRAME__INIT;
            f.kind_case = TONGBAN__FRAME__KIND_ACK;
            f.ack = &ack;
            if (send_to(self, src, &f) == TB_OK) self->stats.acks_out++;
        }
        break;
    }
    while (p->head < p->len && p->q[p->head].acked) {
        free(p->q[p->head].sb);
        p->head++;
    }
    pump(self, p, now);
}

static void on_router(hub_t *self, uint64_t now)
{
    zmq_msg_t rid, body;
    zmq_msg_init(&rid);
    zmq_msg_init(&body);
    if (zmq_msg_recv(&rid, self->router, ZMQ_DONTWAIT) < 0) goto done;
    if (!zmq_msg_more(&rid) || zmq_msg_recv(&body, self->router, 0) < 0) goto done;
    if (zmq_msg_more(&body)) {
        /* Wrong frame count: drain and drop. */
        self->stats.malformed_frames++;
        tb_log(TB_LOG_WARN, comp, "frame_rejected", "reason=malformed detail=\"too many parts\"");
        while (zmq_msg_more(&body)) {
            zmq_msg_close(&body);
            zmq_msg_init(&body);
            if (zmq_msg_recv(&body, self->router, 0) < 0) break;
        }
        goto done;
    }
    const char *user = zmq_msg_gets(&body, "User-Id");
    peer_t *p = user ? peer_by_id(self, user) : NULL;
    if (!p) {
        self->stats.malformed_frames++;
        goto done;
    }
    if (zmq_msg_size(&rid) > RID_MAX) goto done;
    p->last_seen_ms = now;
    if (!p->online || p->rid_len != zmq_msg_size(&rid) ||
        memcmp(p->rid, zmq_msg_data(&rid), p->rid_len) != 0) {
        p->rid_len = zmq_msg_size(&rid);
        memcpy(p->rid, zmq_msg_data(&rid), p->rid_len);
        if (!p->online) tb_log(TB_LOG_INFO, comp, "node_online", "node=%s", p->id);
        p->online = 1;
    }
    Tongban__Frame *f = tongban__frame__unpack(NULL, zmq_msg_size(&body), zmq_msg_data(&body));
    if (!f) {
        self->stats.malformed_frames++;
        tb_log(TB_LOG_WARN, comp, "frame_rejected", "node=%s reason=malformed bytes=%zu", p->id,
               zmq_msg_size(&body));
        send_nack(self, p, 0, TONGBAN__NACK_REASON__NACK_MALFORMED, "undecodable frame");
        goto done;
    }
    switch (f->kind_case) {
    case TONGBAN__FRAME__KIND_HELLO: on_hello(self, p, f->hello); break;
    case TONGBAN__FRAME__KIND_BATCH: on_batch(self, p, f->batch, now); break;
    case TONGBAN__FRAME__KIND_DELIVER_ACK: on_deliver_ack(self, p, f->deliver_ack->hub_seq, now); break;
    case TONGBAN__FRAME__KIND_HEARTBEAT: {
        Tongban__Heartbeat hb = TONGBAN__HEARTBEAT__INIT;
        hb.time_ms = now;
        Tongban__Frame r = TONGBAN__FRAME__INIT;
        r.kind_case = TONGBAN__FRAME__KIND_HEARTBEAT;
        r.heartbeat = &hb;
        send_to(self, p, &r);
        pump(self, p, now);
        break;
    }
    default:
        self->stats.malformed_frames++;
        tb_log(TB_LOG_WARN, comp, "frame_rejected", "node=%s reason=unexpected kind=%d", p->id,
               (int)f->kind_case);
        break;
    }
    tongban__frame__free_unpacked(f, NULL);
done:
    zmq_msg_close(&rid);
    zmq_msg_close(&body);
}

static void on_timer(hub_t *self, uint64_t now)
{
    for (size_t i = 0; i < self->npeers; i++) {
        peer_t *p = &self->peers[i];
        if (p->online && now - p->last_seen_ms > (uint64_t)self->cfg.heartbeat_timeout_ms)
            mark_offline(self, p, "heartbeat_timeout");
        pump(self, p, now);
    }
    if (now - self->last_stats_ms >= 30000) {
        self->last_stats_ms = now;
        tb_log(TB_LOG_INFO, comp, "stats",
               "batches_in=%lu records_in=%lu batches_out=%lu acks_out=%lu zap_denied=%lu malformed=%lu",
               self->stats.batches_in, self->stats.records_in, self->stats.batches_out,
               self->stats.acks_out, self->stats.zap_denied, self->stats.malformed_frames);
    }
}

tb_err_t hub_run(hub_t *self, volatile sig_atomic_t *stop)
{
    tb_log(TB_LOG_INFO, comp, "started", "hub=%s listen=%s nodes=%zu version=%s", self->cfg.id,
           self->cfg.listen, self->npeers, TB_VERSION_STRING);
    uint64_t last_timer = 0;
    self->last_stats_ms = tb_now_ms();
    while (!*stop) {
        zmq_pollitem_t items[] = {
            { self->zap, 0, ZMQ_POLLIN, 0 },
            { self->router, 0, ZMQ_POLLIN, 0 },
        };
        int n = zmq_poll(items, 2, 100);
        if (n < 0) {
            if (errno == EINTR) continue;
            tb_log(TB_LOG_ERROR, comp, "poll_failed", "error=\"%s\"", zmq_strerror(errno));
            return TB_ERR_IO;
        }
        uint64_t now = tb_now_ms();
        if (items[0].revents & ZMQ_POLLIN) {
            char who[128];
            int ok = zap_handle(self->zap, zap_lookup, self, who, sizeof who);
            if (ok != 1) {
                self->stats.zap_denied++;
                tb_log(TB_LOG_WARN, comp, "connection_refused", "reason=unregistered_key %s", who);
            }
        }
        if (items[1].revents & ZMQ_POLLIN) {
            for (int i = 0; i < 256; i++) {
                int ev = 0;
                size_t evlen = sizeof ev;
                if (zmq_getsockopt(self->router, ZMQ_EVENTS, &ev, &evlen) != 0 || !(ev & ZMQ_POLLIN))
                    break;
                on_router(self, now);
            }
        }
        if (now - last_timer >= 100) {
            last_timer = now;
            on_timer(self, now);
        }
    }
    tb_log(TB_LOG_INFO, comp, "stopped", "batches_in=%lu batches_out=%lu", self->stats.batches_in,
           self->stats.batches_out);
    return TB_OK;
}
