/* hub.c -- tongban-hub's loop: admit registered nodes (CURVE + ZAP), recover
 * and serve the store (active / standby on PostgreSQL), and dispatch what the
 * nodes send: each batch goes to the ingest path (hub_ingest.c: verified,
 * journaled, acked after fsync, group commit per receive burst), and it is
 * delivered from the journal to each destination -- node or topic
 * subscribers -- by the delivery path (hub_deliver.c). Here too: Hello /
 * Welcome, the directory, Query / Reply, revoke and reload, the timers. */
#include "hub.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <zmq.h>

#include "crypto.h"
#include "errbuf.h"
#include "hub_internal.h"
#include "log.h"
#include "pki.h"
#include "wire.h"
#include "zap.h"

#define BURST_MAX 1024          /* messages handled before a group commit */
#define TIMER_MS 100
#define STALL_LOG_MS 1000          /* a loop turn this long is logged (loop_stalled) */
#define SAVE_EVERY_MS 1000
#define GC_EVERY_MS 60000
#define RATE_EVERY_MS 5000
#define STATS_EVERY_MS 30000

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
    reg_node_t *n = self->reg ? registry_by_key(self->reg, key) : NULL;
    return n && !n->revoked_ms ? n->id : NULL;
}

/* ---- peers ---- */

static int peer_init(hub_t *self, peer_t *p, reg_node_t *reg)
{
    memset(p, 0, sizeof *p);
    snprintf(p->id, sizeof p->id, "%s", reg->id);
    p->reg = reg;
    p->fd = -1;
    p->dedup = dedup_new();
    p->inflight = calloc((size_t)self->cfg->deliver_window, sizeof *p->inflight);
    p->cursor = cursors_get(self->cursors, p->id);
    return p->dedup && p->inflight ? 0 : -1;
}

static void peer_fini(peer_t *p)
{
    hubstore_reader_destroy(&p->reader);
    dedup_destroy(&p->dedup);
    free(p->inflight);
    p->inflight = NULL;
}

/* 1 if p->fd is still the connection p's messages came on: after that
 * connection closed, the same number may be another node's socket (or the
 * admin channel's), which must not be shut down in p's name. */
static int peer_fd_current(const peer_t *p)
{
    struct sockaddr_storage now;
    socklen_t len = sizeof now;
    if (p->fd < 0 || p->fd_peer_len == 0) return 0;
    if (getpeername(p->fd, (struct sockaddr *)&now, &len) != 0) return 0;
    return len == p->fd_peer_len && memcmp(&now, &p->fd_peer, len) == 0;
}

/* Stops sending to p. What is in flight stays in flight: DeliverAcks the
 * node sent before it went away may still be queued behind this moment and
 * must count. A reconnect (Hello, new routing id) or the redelivery timer
 * starts again from the cursor. */
void hub_mark_offline(peer_t *p, const char *why)
{
    if (!p->online) return;
    p->online = 0;
    tb_log(TB_LOG_INFO, comp, "node_offline", "node=%s reason=%s backlog_batches=%llu", p->id, why,
           (unsigned long long)p->backlog_batches);
}

/* Journal recovery: rebuild each sender's dedup memory and each node's backlog. */
static void on_recovered(void *arg, const jrec_t *rec)
{
    hub_t *self = arg;
    peer_t *s = peer_by_id(self, rec->sender);
    if (s) {
        Tongban__SignedBatch *sb = tongban__signed_batch__unpack(NULL, rec->batch_len, rec->batch);
        if (sb) {
            uint8_t d[16];
            dedup_digest(sb->signature.data, sb->signature.len, d);
            dedup_record(s->dedup, rec->sender_seq, d);
            tongban__signed_batch__free_unpacked(sb, NULL);
        }
    }
    for (size_t i = 0; i < self->npeers; i++) {
        peer_t *p = &self->peers[i];
        if (p->reg && rec->hub_seq > p->cursor && strcmp(rec->sender, p->id) != 0 &&
            registry_wants(p->reg, rec->dest)) {
            p->backlog_batches++;
            p->backlog_bytes += rec->batch_len;
        }
    }
}

/* ---- setup ---- */

/* ZAP handler + ROUTER bound on cfg->listen: nodes may connect from now on. */
static tb_err_t router_bind(hub_t *self, char *err, size_t errlen)
{
    const tb_hub_config_t *cfg = self->cfg;
    char secret[41];
    tb_err_t rc = tb_pki_read_z85(cfg->curve_secret, 1, secret, err, errlen);
    if (rc != TB_OK) return rc;
    self->router = zmq_socket(self->ctx, ZMQ_ROUTER);
    if (!self->router) {
        memset(secret, 0, sizeof secret);
        snprintf(err, errlen, "zeromq setup failed: %s", zmq_strerror(errno));
        return TB_ERR_IO;
    }
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
    memset(secret, 0, sizeof secret);
    if (zmq_bind(self->router, cfg->listen) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", cfg->listen, zmq_strerror(errno));
        zmq_close(self->router);
        self->router = NULL;
        return TB_ERR_IO;
    }
    return TB_OK;
}

/* Stops serving: ROUTER closed (every node connection cut), in-flight
 * state, peers, registry and store dropped. NULL-safe on each part. */
static void deactivate(hub_t *self)
{
    if (self->router) {
        zmq_close(self->router);
        self->router = NULL;
    }
    for (size_t i = 0; i < self->npeers; i++) peer_fini(&self->peers[i]);
    free(self->peers);
    self->peers = NULL;
    self->npeers = 0;
    self->nacks = 0;
    if (self->cursors && self->store && !hubstore_broken(self->store) && !self->pg) {
        char err[TB_ERRLEN];
        if (hubstore_cursors_save(self->store, self->cursors, err, sizeof err) != TB_OK)
            tb_log(TB_LOG_ERROR, comp, "cursors_save_failed", "error=\"%s\"", err);
    }
    cursors_destroy(&self->cursors);
    hubstore_destroy(&self->store);
    registry_destroy(&self->reg);
    self->storage_failed = 0;
    self->active = 0;
}

/* Loads the registry, recovers the store (journal, or PostgreSQL claimed
 * under a new epoch), rebuilds dedup memory and backlogs, binds the ROUTER.
 * On error everything is undone (err names the cause). */
static tb_err_t make_peers(hub_t *self)
{
    self->peers = calloc(self->reg->n ? self->reg->n : 1, sizeof *self->peers);
    if (!self->peers) return TB_ERR_NOMEM;
    for (size_t i = 0; i < self->reg->n; i++)
        if (peer_init(self, &self->peers[self->npeers++], &self->reg->nodes[i]) != 0) return TB_ERR_NOMEM;
    return TB_OK;
}

/* pgstore_open's hook: cursors and revocations from the tables, then the peers. */
static tb_err_t pg_before_recovery(void *arg, pgstore_t *pg, char *err, size_t errlen)
{
    hub_t *self = arg;
    tb_err_t rc;
    if ((rc = pgstore_cursors_load(pg, self->cursors, err, errlen)) != TB_OK) return rc;
    if ((rc = pgstore_revoked_load(pg, self->reg, err, errlen)) != TB_OK) return rc;
    if ((rc = make_peers(self)) != TB_OK) tb_seterr(err, errlen, "out of memory");
    return rc;
}

static tb_err_t activate(hub_t *self, char *err, size_t errlen)
{
    const tb_hub_config_t *cfg = self->cfg;
    char path[TB_PATH_MAX + 32];
    tb_err_t rc;
    uint64_t t0 = tb_now_ms();
    snprintf(path, sizeof path, "%s/revoked", cfg->data_dir);
    if ((rc = registry_load(cfg, path, &self->reg, err, errlen)) != TB_OK) goto fail;
    if (self->pg) {
        self->cursors = cursors_new_memory();
        if (!self->cursors) { rc = TB_ERR_NOMEM; goto fail; }
    } else {
        snprintf(path, sizeof path, "%s/cursors", cfg->data_dir);
        if ((rc = cursors_open(path, &self->cursors, err, errlen)) != TB_OK) goto fail;
    }
    if (self->pg) {
        /* cursors and revocations come from the tables, before the peers
         * take their cursors and the recovery counts backlogs */
        char app[96];
        snprintf(app, sizeof app, "tongban-hub:%s:data", cfg->id);
        pgstore_opts_t po;
        memset(&po, 0, sizeof po);
        po.conninfo = cfg->pg_conninfo;
        po.app_name = app;
        po.timeout_ms = cfg->pg_timeout_ms;
        po.holder = cfg->id;
        po.lock_pid = hub_ha_lock_pid(self->ha);
        po.verify_chain = 1;
        po.before_recovery = pg_before_recovery;
        po.on_record = on_recovered;
        po.arg = self;
        pgstore_t *pg = NULL;
        pgstore_report_t prep;
        if ((rc = pgstore_open(&po, &pg, &prep, err, errlen)) != TB_OK) goto fail;
        self->store = hubstore_pg(pg);
        if (!self->store) { pgstore_destroy(&pg); rc = TB_ERR_NOMEM; goto fail; }
        tb_log(TB_LOG_INFO, comp, "store_recovered",
               "store=postgresql epoch=%lld records=%llu bytes=%llu first_seq=%llu last_seq=%llu ms=%llu",
               (long long)prep.epoch, (unsigned long long)prep.records, (unsigned long long)prep.bytes,
               (unsigned long long)prep.first_seq, (unsigned long long)prep.last_seq,
               (unsigned long long)(tb_now_ms() - t0));
    } else {
        if ((rc = make_peers(self)) != TB_OK) goto fail;
        journal_opts_t jo;
        journal_opts_init(&jo);
        jo.segment_bytes = (uint64_t)cfg->segment_mb << 20;
        jo.on_record = on_recovered;
        jo.arg = self;
        journal_report_t rep;
        journal_t *j = NULL;
        snprintf(path, sizeof path, "%s/journal", cfg->data_dir);
        if ((rc = journal_open(path, &jo, &j, &rep, err, errlen)) != TB_OK) goto fail;
        self->store = hubstore_journal(j);
        if (!self->store) { journal_destroy(&j); rc = TB_ERR_NOMEM; goto fail; }
        tb_log(TB_LOG_INFO, comp, "journal_recovered",
               "dir=%s records=%llu segments=%llu bytes=%llu first_seq=%llu last_seq=%llu truncated_bytes=%llu ms=%llu",
               path, (unsigned long long)rep.records, (unsigned long long)rep.segments,
               (unsigned long long)rep.bytes, (unsigned long long)rep.first_seq,
               (unsigned long long)rep.last_seq, (unsigned long long)rep.truncated_bytes,
               (unsigned long long)(tb_now_ms() - t0));
        if (rep.truncated_bytes)
            tb_log(TB_LOG_WARN, comp, "journal_torn_tail", "dir=%s truncated_bytes=%llu", path,
                   (unsigned long long)rep.truncated_bytes);
    }
    if ((rc = router_bind(self, err, errlen)) != TB_OK) goto fail;
    self->active = 1;
    self->activated_ms = tb_now_ms();
    self->first_ack_logged = 0;
    return TB_OK;
fail:
    deactivate(self);
    return rc;
}

tb_err_t hub_new(const tb_hub_config_t *cfg, const char *cfg_path, hub_t **out, char *err,
                 size_t errlen)
{
    tb_err_t rc = TB_ERR_NOMEM;
    hub_t *self = calloc(1, sizeof *self);
    if (!self) return TB_ERR_NOMEM;
    self->cfg = (tb_hub_config_t *)cfg;
    self->cfg_path = cfg_path;
    self->started_ms = tb_now_ms();
    self->started_wall_ms = self->role_since_wall_ms = tb_wall_ms();
    self->pg = strcmp(cfg->store, "postgresql") == 0;

    if (mkdir(cfg->data_dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", cfg->data_dir, strerror(errno));
        rc = TB_ERR_IO;
        goto fail;
    }
    rc = TB_ERR_IO;
    self->ctx = zmq_ctx_new();
    if (!self->ctx) goto zfail;
    /* The ZAP handler must be bound before any CURVE socket accepts peers. */
    self->zap = zmq_socket(self->ctx, ZMQ_REP);
    if (!self->zap || zmq_bind(self->zap, "inproc://zeromq.zap.01") != 0) goto zfail;
    int zero = 0;
    zmq_setsockopt(self->zap, ZMQ_LINGER, &zero, sizeof zero);
    if (self->pg) {
        /* standby until the lock is ours: the ROUTER is not bound, nodes
         * are refused; the loop's first tick tries the lock */
        self->ha = hub_ha_new(cfg->pg_conninfo, cfg->pg_lock_key, cfg->id,
                              cfg->advertise[0] ? cfg->advertise : cfg->listen, cfg->pg_timeout_ms,
                              cfg->pg_check_ms);
        if (!self->ha) { rc = TB_ERR_NOMEM; goto fail; }
        /* the registry must be sound before standing by for hours */
        registry_t *probe = NULL;
        char path[TB_PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/revoked", cfg->data_dir);
        if ((rc = registry_load(cfg, path, &probe, err, errlen)) != TB_OK) goto fail;
        registry_destroy(&probe);
        char secret[41];
        if ((rc = tb_pki_read_z85(cfg->curve_secret, 1, secret, err, errlen)) != TB_OK) goto fail;
        memset(secret, 0, sizeof secret);
    } else if ((rc = activate(self, err, errlen)) != TB_OK) {
        goto fail;
    }
    if ((rc = hub_admin_bind(self, err, errlen)) != TB_OK) goto fail;
    if ((rc = hub_metrics_start(self, err, errlen)) != TB_OK) goto fail;
    *out = self;
    return TB_OK;
zfail:
    snprintf(err, errlen, "zeromq setup failed: %s", zmq_strerror(errno));
fail:
    hub_destroy(&self);
    return rc;
}

void hub_destroy(hub_t **selfp)
{
    hub_t *self = selfp ? *selfp : NULL;
    if (!self) return;
    hub_metrics_stop(self);                /* first: joins the HTTP threads */
    if (self->pg && self->active && self->store && !hubstore_broken(self->store)) {
        char err[TB_ERRLEN];
        if (hubstore_cursors_save(self->store, self->cursors, err, sizeof err) != TB_OK)
            tb_log(TB_LOG_ERROR, comp, "cursors_save_failed", "error=\"%s\"", err);
    }
    deactivate(self);
    hub_ha_destroy(&self->ha);
    if (self->zap) zmq_close(self->zap);
    if (self->admin) zmq_close(self->admin);
    if (self->ctx) zmq_ctx_term(self->ctx);
    free(self->acks);
    free(self);
    *selfp = NULL;
}

void hub_get_stats(const hub_t *self, hub_stats_t *out)
{
    *out = self->stats;
}

/* ---- sending ---- */

/* hub_internal.h */
tb_err_t hub_send_to(hub_t *self, peer_t *p, const Tongban__Frame *f)
{
    if (!p->online) return TB_ERR_UNAVAILABLE;
    tb_err_t rc = tb_frame_send(self->router, p->rid, p->rid_len, f, ZMQ_DONTWAIT);
    if (rc == TB_ERR_UNAVAILABLE) hub_mark_offline(p, "unreachable");
    return rc;
}

/* The directory every node verifies signatures with: all registered nodes'
 * certificates and revocation flags. Frees with free_directory. */
static Tongban__DirectoryUpdate *build_directory(hub_t *self)
{
    size_t n = self->reg->n;
    Tongban__DirectoryUpdate *dir = calloc(1, sizeof *dir);
    Tongban__DirectoryEntry *ents = calloc(n ? n : 1, sizeof *ents);
    Tongban__DirectoryEntry **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    if (!dir || !ents || !ptrs) {
        free(dir);
        free(ents);
        free(ptrs);
        return NULL;
    }
    tongban__directory_update__init(dir);
    for (size_t i = 0; i < n; i++) {
        const reg_node_t *r = &self->reg->nodes[i];
        tongban__directory_entry__init(&ents[i]);
        size_t len;
        const char *pem = tb_cert_pem(r->cert, &len);
        ents[i].node_id = (char *)r->id;
        ents[i].certificate_pem.data = (uint8_t *)pem;
        ents[i].certificate_pem.len = len;
        ents[i].revoked = r->revoked_ms != 0;
        ptrs[i] = &ents[i];
    }
    dir->n_nodes = n;
    dir->nodes = ptrs;
    return dir;
}

static void free_directory(Tongban__DirectoryUpdate *dir)
{
    if (!dir) return;
    if (dir->nodes) free(dir->nodes[0]);
    free(dir->nodes);
    free(dir);
}

/* ---- receiving ---- */

static void on_hello(hub_t *self, peer_t *p, const Tongban__Hello *h, uint64_t now)
{
    if (!h->node_id || strcmp(h->node_id, p->id) != 0) {
        hub_reject(self, p, 0, TONGBAN__NACK_REASON__NACK_WRONG_SENDER, "Hello names another node");
        return;
    }
    /* Batches the node says a hub acked are done, even if this hub does not
     * remember them (restored from a backup): do not wait for them. */
    if (h->acked_seq > dedup_high(p->dedup)) {
        tb_log(TB_LOG_WARN, comp, "sender_ahead", "node=%s acked_seq=%llu hub_knew=%llu", p->id,
               (unsigned long long)h->acked_seq, (unsigned long long)dedup_high(p->dedup));
        dedup_skip(p->dedup, h->acked_seq);
    }
    Tongban__DirectoryUpdate *dir = build_directory(self);
    if (!dir) return;
    Tongban__Welcome w = TONGBAN__WELCOME__INIT;
    w.hub_id = self->cfg->id;
    w.protocol = TB_PROTOCOL_VERSION;
    w.directory = dir;
    w.journal_retention_hours = (uint32_t)self->cfg->retention_hours;
    Tongban__Frame f = TONGBAN__FRAME__INIT;
    f.kind_case = TONGBAN__FRAME__KIND_WELCOME;
    f.welcome = &w;
    hub_reset_delivery(p);            /* a (re)connecting node gets everything after its cursor */
    if (hub_send_to(self, p, &f) == TB_OK)
        tb_log(TB_LOG_INFO, comp, "node_welcome", "node=%s software=%s cursor=%llu backlog_batches=%llu",
               p->id, h->software ? h->software : "", (unsigned long long)p->cursor,
               (unsigned long long)p->backlog_batches);
    free_directory(dir);
    hub_pump(self, p, now);
}

/* Query / Reply: routed to an online node now, not journaled. A query for
 * a node that is offline (or unknown) is answered UNAVAILABLE at once. */
static void on_query(hub_t *self, peer_t *p, Tongban__Query *q)
{
    peer_t *d = q->dest ? peer_by_id(self, q->dest) : NULL;
    q->from = p->id;
    Tongban__Frame f = TONGBAN__FRAME__INIT;
    if (d && d != p && d->online && !hub_peer_revoked(d)) {
        f.kind_case = TONGBAN__FRAME__KIND_QUERY;
        f.query = q;
        if (hub_send_to(self, d, &f) == TB_OK) {
            q->from = NULL;
            return;
        }
    }
    q->from = NULL;    /* not ours to free */
    Tongban__Reply r = TONGBAN__REPLY__INIT;
    r.id = q->id;
    r.status = TONGBAN__REPLY_STATUS__REPLY_UNAVAILABLE;
    r.to = p->id;
    r.from = q->dest;
    f.kind_case = TONGBAN__FRAME__KIND_REPLY;
    f.reply = &r;
    hub_send_to(self, p, &f);
    tb_log(TB_LOG_DEBUG, comp, "query_unavailable", "node=%s dest=%s kind=%s", p->id,
           q->dest ? q->dest : "", q->kind ? q->kind : "");
}

static void on_reply(hub_t *self, peer_t *p, Tongban__Reply *r)
{
    peer_t *d = r->to ? peer_by_id(self, r->to) : NULL;
    if (!d || !d->online) return;         /* the asker is gone: it times out */
    char *saved = r->from;
    r->from = p->id;
    Tongban__Frame f = TONGBAN__FRAME__INIT;
    f.kind_case = TONGBAN__FRAME__KIND_REPLY;
    f.reply = r;
    hub_send_to(self, d, &f);
    r->from = saved;
}

static void on_router(hub_t *self, uint64_t now)
{
    zmq_msg_t rid, body;
    zmq_msg_init(&rid);
    zmq_msg_init(&body);
    if (zmq_msg_recv(&rid, self->router, ZMQ_DONTWAIT) < 0) goto done;
    if (!zmq_msg_more(&rid) || zmq_msg_recv(&body, self->router, 0) < 0) goto done;
    if (zmq_msg_more(&body)) {
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
    if (!p || zmq_msg_size(&rid) > RID_MAX) {
        self->stats.malformed_frames++;
        goto done;
    }
    int fd = zmq_msg_get(&body, ZMQ_SRCFD), fresh = 0;
    if (hub_peer_revoked(p)) {
        /* a connection the revocation did not cut (the node held several,
         * or was removed from the registry): nothing on it is served, and
         * it is cut at its first message (p->rid: the last one cut) */
        self->stats.rejected[TONGBAN__NACK_REASON__NACK_REVOKED]++;
        p->rejected_by[TONGBAN__NACK_REASON__NACK_REVOKED]++;
        p->rejected++;
        if (p->rid_len != zmq_msg_size(&rid) || memcmp(p->rid, zmq_msg_data(&rid), p->rid_len) != 0) {
            tb_log(TB_LOG_WARN, comp, "frame_rejected", "node=%s reason=revoked action=disconnect", p->id);
            if (fd >= 0) shutdown(fd, SHUT_RDWR);
            p->rid_len = zmq_msg_size(&rid);
            memcpy(p->rid, zmq_msg_data(&rid), p->rid_len);
        }
        goto done;
    }
    p->last_seen_ms = now;
    p->last_seen_wall_ms = tb_wall_ms();
    if (!p->online || p->rid_len != zmq_msg_size(&rid) ||
        memcmp(p->rid, zmq_msg_data(&rid), p->rid_len) != 0) {
        p->rid_len = zmq_msg_size(&rid);
        memcpy(p->rid, zmq_msg_data(&rid), p->rid_len);
        if (!p->online) tb_log(TB_LOG_INFO, comp, "node_online", "node=%s", p->id);
        else hub_reset_delivery(p);   /* a new connection: what was in flight went to the old one */
        p->online = 1;
        fresh = 1;
    }
    if (fresh || fd != p->fd) {
        /* whose socket fd is now: once this connection closes, the number
         * may be reused by another node's (see hub_revoke) */
        p->fd_peer_len = sizeof p->fd_peer;
        if (fd < 0 || getpeername(fd, (struct sockaddr *)&p->fd_peer, &p->fd_peer_len) != 0)
            p->fd_peer_len = 0;
    }
    p->fd = fd;
    const uint8_t *data = zmq_msg_data(&body), *inner;
    size_t size = zmq_msg_size(&body), inner_len;
    uint32_t field;
    if (tb_frame_inner(data, size, &field, &inner, &inner_len) == TB_OK &&
        field == TONGBAN__FRAME__KIND_BATCH) {
        hub_on_batch(self, p, inner, inner_len);   /* journaled verbatim, no re-encoding */
        goto done;
    }
    Tongban__Frame *f = tongban__frame__unpack(NULL, size, data);
    if (!f) {
        self->stats.malformed_frames++;
        hub_reject(self, p, 0, TONGBAN__NACK_REASON__NACK_MALFORMED, "undecodable frame");
        goto done;
    }
    switch (f->kind_case) {
    case TONGBAN__FRAME__KIND_HELLO: on_hello(self, p, f->hello, now); break;
    case TONGBAN__FRAME__KIND_DELIVER_ACK: hub_on_deliver_ack(self, p, f->deliver_ack->hub_seq, now); break;
    case TONGBAN__FRAME__KIND_QUERY: on_query(self, p, f->query); break;
    case TONGBAN__FRAME__KIND_REPLY: on_reply(self, p, f->reply); break;
    case TONGBAN__FRAME__KIND_HEARTBEAT: {
        Tongban__Heartbeat hb = TONGBAN__HEARTBEAT__INIT;
        hb.time_ms = now;
        Tongban__Frame r = TONGBAN__FRAME__INIT;
        r.kind_case = TONGBAN__FRAME__KIND_HEARTBEAT;
        r.heartbeat = &hb;
        hub_send_to(self, p, &r);
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

/* ---- operator actions ---- */

static void broadcast_directory(hub_t *self)
{
    Tongban__DirectoryUpdate *dir = build_directory(self);
    if (!dir) return;
    Tongban__Frame f = TONGBAN__FRAME__INIT;
    f.kind_case = TONGBAN__FRAME__KIND_DIRECTORY;
    f.directory = dir;
    for (size_t i = 0; i < self->npeers; i++)
        if (self->peers[i].online && !hub_peer_revoked(&self->peers[i])) hub_send_to(self, &self->peers[i], &f);
    free_directory(dir);
}

tb_err_t hub_revoke(hub_t *self, const char *id, char *err, size_t errlen)
{
    if (!self->active) {
        tb_seterr(err, errlen, "this hub is standby: revoke on the active hub");
        return TB_ERR_UNAVAILABLE;
    }
    tb_err_t rc = hubstore_revoke(self->store, self->reg, id, err, errlen);
    if (rc != TB_OK) return rc;
    peer_t *p = peer_by_id(self, id);
    if (p && p->online) {
        /* libzmq has no call to drop one peer of a ROUTER: shut its socket
         * down (the fd of its last message); ZAP refuses it from now on. */
        if (peer_fd_current(p)) shutdown(p->fd, SHUT_RDWR);
        hub_mark_offline(p, "revoked");
    }
    if (p) p->rid_len = 0;   /* any connection it still holds is cut at its next message */
    tb_log(TB_LOG_WARN, comp, "node_revoked", "node=%s", id);
    broadcast_directory(self);
    return TB_OK;
}

tb_err_t hub_reload(hub_t *self, char *err, size_t errlen)
{
    tb_hub_config_t *cfg = calloc(1, sizeof *cfg);
    tb_config_errors_t errs = { 0 };
    registry_t *reg = NULL;
    char path[TB_PATH_MAX + 32];
    if (!cfg) return TB_ERR_NOMEM;
    if (!self->active) {
        free(cfg);
        tb_seterr(err, errlen, "this hub is standby: it reads the registry when it becomes active");
        return TB_ERR_UNAVAILABLE;
    }
    tb_err_t rc = tb_hub_config_load(self->cfg_path, cfg, &errs);
    if (rc != TB_OK) {
        for (size_t i = 0; i < errs.count; i++)
            tb_log(TB_LOG_ERROR, comp, "reload_config_error", "problem=\"%s\"", errs.lines[i]);
        snprintf(err, errlen, "%s: %zu problem(s), registry not reloaded (see log)", self->cfg_path,
                 errs.count);
        goto fail;
    }
    snprintf(path, sizeof path, "%s/revoked", self->cfg->data_dir);
    if ((rc = registry_load(cfg, path, &reg, err, errlen)) != TB_OK) goto fail;
    if (self->pg && (rc = hubstore_revoked_load(self->store, reg, err, errlen)) != TB_OK) goto fail;
    if (strcmp(cfg->listen, self->cfg->listen) || strcmp(cfg->data_dir, self->cfg->data_dir) ||
        strcmp(cfg->curve_secret, self->cfg->curve_secret) ||
        cfg->deliver_window != self->cfg->deliver_window || strcmp(cfg->http_listen, self->cfg->http_listen) ||
        strcmp(cfg->http_token, self->cfg->http_token) || strcmp(cfg->http_tls_cert, self->cfg->http_tls_cert))
        tb_log(TB_LOG_WARN, comp, "reload_needs_restart",
               "detail=\"hub.listen, hub.data_dir, hub.curve_secret, limits.deliver_window and http.* take effect after a restart\"");
    peer_t *peers = realloc(self->peers, (self->npeers + reg->n) * sizeof *peers);
    if (!peers) { rc = TB_ERR_NOMEM; goto fail; }
    self->peers = peers;
    for (size_t i = 0; i < self->npeers; i++) {
        peer_t *p = &self->peers[i];
        p->reg = registry_node(reg, p->id);
        if (!p->reg && p->online) hub_mark_offline(p, "removed_from_registry");
        if (!p->reg) p->rid_len = 0;   /* its connections are cut at their next message */
    }
    size_t added = 0;
    for (size_t i = 0; i < reg->n; i++) {
        if (peer_by_id(self, reg->nodes[i].id)) continue;
        if (peer_init(self, &self->peers[self->npeers], &reg->nodes[i]) != 0) { rc = TB_ERR_NOMEM; goto fail; }
        self->npeers++;
        added++;
    }
    registry_destroy(&self->reg);
    self->reg = reg;
    reg = NULL;
    for (size_t i = 0; i < self->npeers; i++) hub_reset_delivery(&self->peers[i]);
    tb_log(TB_LOG_INFO, comp, "registry_reloaded", "nodes=%zu topics=%zu added=%zu", self->reg->n,
           self->reg->ntopics, added);
    broadcast_directory(self);
    tb_config_errors_free(&errs);
    /* The registry copied what it needs; limits keep their start-up values. */
    tb_hub_config_free(cfg);
    free(cfg);
    return TB_OK;
fail:
    registry_destroy(&reg);
    tb_config_errors_free(&errs);
    tb_hub_config_free(cfg);
    free(cfg);
    return rc != TB_OK ? rc : TB_ERR_CONFIG;
}

/* ---- timers ---- */

static void on_timer(hub_t *self, uint64_t now)
{
    char err[TB_ERRLEN];
    hub_console_tick(self, now);         /* the console's history and node trends */
    hub_metrics_tick(self);              /* the /metrics and /healthz snapshot, when due */
    if (!self->active) return;
    for (size_t i = 0; i < self->npeers; i++) {
        peer_t *p = &self->peers[i];
        if (p->online && now - p->last_seen_ms > (uint64_t)self->cfg->heartbeat_timeout_ms)
            hub_mark_offline(p, "heartbeat_timeout");
        for (size_t k = 0; k < p->ninflight; k++) {
            if (!p->inflight[k].acked && now - p->inflight[k].sent_ms > (uint64_t)self->cfg->redeliver_ms) {
                tb_log(TB_LOG_INFO, comp, "redeliver", "node=%s from_hub_seq=%llu", p->id,
                       (unsigned long long)p->inflight[k].hub_seq);
                hub_reset_delivery(p);
                break;
            }
        }
        hub_pump(self, p, now);
    }
    if (now - self->last_save_ms >= SAVE_EVERY_MS) {
        self->last_save_ms = now;
        if (hubstore_cursors_save(self->store, self->cursors, err, sizeof err) != TB_OK)
            tb_log(TB_LOG_ERROR, comp, "cursors_save_failed", "error=\"%s\"", err);
    }
    if (now - self->last_rate_ms >= RATE_EVERY_MS) {
        double secs = (double)(now - self->last_rate_ms) / 1000.0;
        for (size_t i = 0; i < self->npeers; i++) {
            peer_t *p = &self->peers[i];
            p->rate_in = (double)(p->records_in - p->rate_mark_in) / secs;
            p->rate_out = (double)(p->batches_out - p->rate_mark_out) / secs;
            p->rate_mark_in = p->records_in;
            p->rate_mark_out = p->batches_out;
        }
        self->last_rate_ms = now;
    }
    if (now - self->last_gc_ms >= GC_EVERY_MS) {
        self->last_gc_ms = now;
        uint64_t min = UINT64_MAX;
        for (size_t i = 0; i < self->npeers; i++)
            if (self->peers[i].reg && self->peers[i].cursor < min) min = self->peers[i].cursor;
        size_t removed = 0;
        if (min != UINT64_MAX &&
            hubstore_gc(self->store, min, (int64_t)self->cfg->retention_hours * 3600000, &removed, err,
                       sizeof err) != TB_OK)
            tb_log(TB_LOG_ERROR, comp, "journal_gc_failed", "error=\"%s\"", err);
        else if (removed)
            tb_log(TB_LOG_INFO, comp, "journal_gc", "segments_removed=%zu min_cursor=%llu", removed,
                   (unsigned long long)min);
    }
    if (now - self->last_stats_ms >= STATS_EVERY_MS) {
        self->last_stats_ms = now;
        tb_log(TB_LOG_INFO, comp, "stats",
               "batches_in=%lu records_in=%lu batches_out=%lu acks_out=%lu duplicates=%lu syncs=%lu "
               "zap_denied=%lu malformed=%lu journal_bytes=%llu",
               self->stats.batches_in, self->stats.records_in, self->stats.batches_out,
               self->stats.acks_out, self->stats.duplicates, self->stats.syncs, self->stats.zap_denied,
               self->stats.malformed_frames, (unsigned long long)hubstore_bytes(self->store));
    }
}

/* Stops serving at once (store: postgresql): the lock or the database is
 * lost, or another hub claimed the store. ROUTER closed, in-flight state
 * dropped, lock released; back to standby (the loop tries the lock again). */
void hub_fence(hub_t *self, const char *reason, const char *detail)
{
    if (!self->active) return;
    tb_log(TB_LOG_ERROR, comp, "fenced", "hub=%s reason=%s unix_ms=%lld detail=\"%s\" action=standby",
           self->cfg->id, reason, (long long)tb_wall_ms(), detail ? detail : "");
    deactivate(self);
    hub_ha_release(self->ha, reason);
    self->fences++;
    self->role_since_wall_ms = tb_wall_ms();
}

/* store: postgresql -- the lock: become active when it is ours, fence at
 * once when it is lost or the store broke. */
static void ha_step(hub_t *self, uint64_t now)
{
    char err[TB_ERRLEN];
    if (!self->ha) return;
    if (self->active && hubstore_broken(self->store)) {
        hub_fence(self, "store_lost", "the data session failed, timed out or was fenced");
        return;
    }
    ha_event_t ev = hub_ha_tick(self->ha, now);
    if (ev == HA_LOST && self->active) {
        hub_fence(self, "lock_lost", "the lock session failed its check");
    } else if (ev == HA_ACQUIRED) {
        uint64_t t0 = tb_now_ms();
        if (activate(self, err, sizeof err) != TB_OK) {
            tb_log(TB_LOG_ERROR, comp, "activate_failed", "error=\"%s\" action=standby", err);
            hub_ha_release(self->ha, "activate_failed");
            return;
        }
        self->takeovers++;
        self->role_since_wall_ms = tb_wall_ms();
        self->last_stats_ms = self->last_rate_ms = self->last_gc_ms = self->last_save_ms = now;
        tb_log(TB_LOG_INFO, comp, "active", "hub=%s listen=%s unix_ms=%lld nodes=%zu last_seq=%llu recovery_ms=%llu",
               self->cfg->id, self->cfg->listen, (long long)tb_wall_ms(), self->npeers,
               (unsigned long long)hubstore_last_seq(self->store), (unsigned long long)(tb_now_ms() - t0));
    }
}

tb_err_t hub_run(hub_t *self, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload)
{
    if (self->active)
        tb_log(TB_LOG_INFO, comp, "started", "hub=%s listen=%s nodes=%zu topics=%zu journal_last_seq=%llu version=%s",
               self->cfg->id, self->cfg->listen, self->npeers, self->reg->ntopics,
               (unsigned long long)hubstore_last_seq(self->store), TB_VERSION_STRING);
    else
        tb_log(TB_LOG_INFO, comp, "started", "hub=%s listen=%s store=postgresql role=standby version=%s",
               self->cfg->id, self->cfg->listen, TB_VERSION_STRING);
    self->last_stats_ms = self->last_rate_ms = self->last_gc_ms = tb_now_ms();
    while (!*stop && !self->fatal) {
        if (reload && *reload) {
            *reload = 0;
            char err[TB_ERRLEN];
            if (hub_reload(self, err, sizeof err) != TB_OK)
                tb_log(TB_LOG_ERROR, comp, "reload_failed", "error=\"%s\"", err);
        }
        uint64_t turn_start = tb_now_ms();
        ha_step(self, turn_start);
        zmq_pollitem_t items[3] = {
            { self->zap, 0, ZMQ_POLLIN, 0 },
            { self->admin, 0, ZMQ_POLLIN, 0 },
            { self->router, 0, ZMQ_POLLIN, 0 },
        };
        int nitems = self->router ? 3 : 2;
        int n = zmq_poll(items, nitems, TIMER_MS);
        if (n < 0 && errno != EINTR) {
            tb_log(TB_LOG_ERROR, comp, "poll_failed", "error=\"%s\"", zmq_strerror(errno));
            return TB_ERR_IO;
        }
        uint64_t now = tb_now_ms();
        if (n > 0 && (items[0].revents & ZMQ_POLLIN)) {
            char who[128];
            if (zap_handle(self->zap, zap_lookup, self, who, sizeof who) != 1) {
                self->stats.zap_denied++;
                /* A revoked node's key is known but refused: say so. */
                char z85[41] = "";
                const char *k = strstr(who, "key=");
                uint8_t key[32];
                const reg_node_t *rn = NULL;
                if (k && strlen(k + 4) == 40) {
                    memcpy(z85, k + 4, 41);
                    if (self->reg && zmq_z85_decode(key, z85)) rn = registry_by_key(self->reg, key);
                }
                if (rn && rn->revoked_ms)
                    tb_log(TB_LOG_WARN, comp, "connection_refused", "reason=revoked node=%s %s", rn->id, who);
                else
                    tb_log(TB_LOG_WARN, comp, "connection_refused", "reason=unregistered_key %s", who);
            }
        }
        if (n > 0 && nitems == 3 && (items[2].revents & ZMQ_POLLIN)) {
            for (int i = 0; i < BURST_MAX && self->router; i++) {
                int ev = 0;
                size_t evlen = sizeof ev;
                if (zmq_getsockopt(self->router, ZMQ_EVENTS, &ev, &evlen) != 0 || !(ev & ZMQ_POLLIN))
                    break;
                on_router(self, now);
            }
            hub_flush(self, now);
        }
        if (n > 0 && (items[1].revents & ZMQ_POLLIN)) hub_admin_handle(self);
        if (now - self->last_timer_ms >= TIMER_MS) {
            self->last_timer_ms = now;
            on_timer(self, now);
        }
        /* A turn that kept the loop from its sockets for over a second
         * beyond the poll's own wait (a storage stall in fsync or
         * PostgreSQL, a huge burst, the process not scheduled): nodes may
         * have seen the hub silent, heartbeats, the console's samples and
         * redeliveries were late. Said once, with how long, for operators. */
        uint64_t turn_ms = tb_now_ms() - turn_start;
        if (turn_ms >= TIMER_MS + STALL_LOG_MS) {
            self->stats.loop_stalls++;
            tb_log(TB_LOG_WARN, comp, "loop_stalled", "ms=%llu from_unix_ms=%lld hint=\"slow storage (fsync, PostgreSQL) or no CPU\"",
                   (unsigned long long)turn_ms, (long long)(tb_wall_ms() - (int64_t)turn_ms));
        }
    }
    if (self->fatal) return TB_ERR_IO;
    hub_flush(self, tb_now_ms());
    char err[TB_ERRLEN];
    if (self->store && !self->pg && hubstore_sync(self->store, err, sizeof err) != TB_OK)
        tb_log(TB_LOG_ERROR, comp, "journal_sync_failed", "error=\"%s\"", err);
    tb_log(TB_LOG_INFO, comp, "stopped", "batches_in=%lu batches_out=%lu journal_last_seq=%llu",
           self->stats.batches_in, self->stats.batches_out,
           (unsigned long long)hubstore_last_seq(self->store));
    return TB_OK;
}
