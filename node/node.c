/* node.c -- tongban-node: outbox -> signed batches -> hub, and hub -> verified
 * batches -> one PostgreSQL transaction each (that receive path:
 * node_receive.c). Nothing is dropped from the local database before the
 * hub has acked it. */
#include "node.h"

#include <errno.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "crypto.h"
#include "daemon.h"
#include "log.h"
#include "node_internal.h"
#include "pki.h"
#include "store.h"
#include "wire.h"

static const char *comp = "node";

/* ---- setup ---- */

static tb_err_t open_store(node_t *self, char *err, size_t errlen)
{
    tb_err_t rc = tb_store_open(self->cfg->pg_conninfo, self->cfg->id, &self->store, err, errlen);
    if (rc != TB_OK) return rc;
    rc = tb_store_set_routes(self->store, self->cfg->routes, self->cfg->route_count, err, errlen);
    if (rc != TB_OK) tb_store_destroy(&self->store);
    else tb_store_set_entry_check(self->store, api_entry_check, self);   /* seals of received tb.* entries */
    return rc;
}

static void pend_clear(node_t *self)
{
    for (size_t i = 0; i < self->npend; i++) free(self->pend[i].bytes);
    self->npend = 0;
}

static int pend_add(node_t *self, uint64_t seq, const char *dest, uint8_t *bytes, size_t len,
                    size_t entries)
{
    if (self->npend == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 16;
        pend_t *p = realloc(self->pend, cap * sizeof *p);
        if (!p) return -1;
        self->pend = p;
        self->cap = cap;
    }
    pend_t *p = &self->pend[self->npend++];
    memset(p, 0, sizeof *p);
    p->seq = seq;
    snprintf(p->dest, sizeof p->dest, "%s", dest);
    p->bytes = bytes;
    p->len = len;
    p->entries = entries;
    return 0;
}

static void pend_remove(node_t *self, size_t i)
{
    free(self->pend[i].bytes);
    memmove(&self->pend[i], &self->pend[i + 1], (self->npend - i - 1) * sizeof *self->pend);
    self->npend--;
}

/* Loads the signed batches still awaiting an ack (from an earlier run). */
static tb_err_t load_unacked(node_t *self, char *err, size_t errlen)
{
    tb_sent_t *v = NULL;
    size_t n = 0;
    tb_err_t rc = tb_store_unacked(self->store, &v, &n, err, errlen);
    if (rc != TB_OK) return rc;
    pend_clear(self);
    for (size_t i = 0; i < n; i++) {
        if (pend_add(self, v[i].seq, v[i].dest, v[i].bytes, v[i].len, 0) != 0) {
            tb_store_free_sent(v, n);
            return TB_ERR_NOMEM;
        }
        v[i].bytes = NULL;   /* ownership moved */
    }
    tb_store_free_sent(v, n);
    if (n) tb_log(TB_LOG_INFO, comp, "unacked_loaded", "node=%s batches=%zu", self->cfg->id, n);
    return TB_OK;
}

/* ---- the hub connection ---- */

static void dealer_close(node_t *self)
{
    if (self->mon) zmq_close(self->mon);
    if (self->dealer) zmq_close(self->dealer);
    self->mon = self->dealer = NULL;
}

/* Opens a DEALER (CURVE, heartbeats) to cfg->hub_endpoints[self->ep] and,
 * with several endpoints, a monitor PAIR that reports its disconnections.
 * Returns TB_OK, or TB_ERR_IO with err filled (nothing left open). */
static tb_err_t dealer_open(node_t *self, uint64_t now, char *err, size_t errlen)
{
    const tb_node_config_t *cfg = self->cfg;
    const char *ep = cfg->hub_endpoints[self->ep];
    int multi = cfg->hub_endpoint_count > 1;
    /* several hubs: retry a refused connection often (a standby binds
     * its port once it took over), and learn of a broken one at once */
    int zero = 0, hb = HEARTBEAT_MS, hbto = HUB_SILENT_MS, ivl = 100, ivlmax = multi ? 200 : 2000;
    int64_t maxmsg = 1 << 30;
    char mon[64];
    self->ep_since_ms = now;
    self->ep_handshaken = 0;
    self->dealer = zmq_socket(self->ctx, ZMQ_DEALER);
    if (!self->dealer) goto fail;
    zmq_setsockopt(self->dealer, ZMQ_CURVE_SERVERKEY, cfg->hub_curve_public, 40);
    zmq_setsockopt(self->dealer, ZMQ_CURVE_SECRETKEY, self->curve_secret, 40);
    zmq_setsockopt(self->dealer, ZMQ_CURVE_PUBLICKEY, self->curve_public, 40);
    zmq_setsockopt(self->dealer, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(self->dealer, ZMQ_HEARTBEAT_IVL, &hb, sizeof hb);
    zmq_setsockopt(self->dealer, ZMQ_HEARTBEAT_TIMEOUT, &hbto, sizeof hbto);
    zmq_setsockopt(self->dealer, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt(self->dealer, ZMQ_RECONNECT_IVL_MAX, &ivlmax, sizeof ivlmax);
    zmq_setsockopt(self->dealer, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (multi) {
        snprintf(mon, sizeof mon, "inproc://tb-node-monitor-%u", ++self->mon_seq);
        if (zmq_socket_monitor(self->dealer, mon, ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED) != 0)
            goto fail;
        self->mon = zmq_socket(self->ctx, ZMQ_PAIR);
        if (!self->mon || zmq_connect(self->mon, mon) != 0) goto fail;
    }
    if (zmq_connect(self->dealer, ep) != 0) {
        snprintf(err, errlen, "cannot connect to hub %s: %s", ep, zmq_strerror(errno));
        dealer_close(self);
        return TB_ERR_IO;
    }
    return TB_OK;
fail:
    snprintf(err, errlen, "zeromq setup failed: %s", zmq_strerror(errno));
    dealer_close(self);
    return TB_ERR_IO;
}

tb_err_t node_new(const tb_node_config_t *cfg, node_t **out, char *err, size_t errlen)
{
    tb_err_t rc;
    char secret[41], public[41];
    node_t *self = calloc(1, sizeof *self);
    if (!self) return TB_ERR_NOMEM;
    self->cfg = cfg;

    if ((rc = tb_signer_load(cfg->signing_key, &self->signer, err, errlen)) != TB_OK) goto fail;
    if ((rc = tb_cert_load_file(cfg->certificate, &self->cert, err, errlen)) != TB_OK) goto fail;
    if ((rc = tb_cert_load_file(cfg->ca_certificate, &self->ca, err, errlen)) != TB_OK) goto fail;
    char e2[TB_ERRLEN];
    if (tb_cert_verify_issued_by(self->cert, self->ca, e2, sizeof e2) != TB_OK) {
        snprintf(err, errlen, "%s: not issued by the CA in %s: %s", cfg->certificate,
                 cfg->ca_certificate, e2);
        rc = TB_ERR_CERT;
        goto fail;
    }
    if (tb_cert_matches_signer(self->cert, self->signer, e2, sizeof e2) != TB_OK) {
        snprintf(err, errlen, "%s does not belong to the key %s: %s", cfg->certificate,
                 cfg->signing_key, e2);
        rc = TB_ERR_CERT;
        goto fail;
    }
    if (strcmp(tb_cert_node_id(self->cert), cfg->id) != 0) {
        snprintf(err, errlen, "%s is for node \"%s\" but node.id is \"%s\"", cfg->certificate,
                 tb_cert_node_id(self->cert), cfg->id);
        rc = TB_ERR_CERT;
        goto fail;
    }
    if ((rc = tb_pki_read_z85(cfg->curve_secret, 1, secret, err, errlen)) != TB_OK) goto fail;
    if ((rc = tb_pki_read_z85(cfg->curve_public, 0, public, err, errlen)) != TB_OK) goto fail;
    if ((rc = open_store(self, err, errlen)) != TB_OK) goto fail;
    if ((rc = load_unacked(self, err, errlen)) != TB_OK) goto fail;

    rc = TB_ERR_IO;
    self->ctx = zmq_ctx_new();
    if (self->ctx && (rc = node_admin_bind(self, err, errlen)) != TB_OK) goto fail;
    if (self->ctx && (rc = api_new(self, &self->api, err, errlen)) != TB_OK) goto fail;
    if (RAND_bytes((unsigned char *)&self->next_query_id, sizeof self->next_query_id) != 1)
        self->next_query_id = tb_now_ms() << 16;
    self->next_query_id >>= 1;          /* room to count up */
    if ((rc = node_metrics_new(cfg, &self->metrics, err, errlen)) != TB_OK) goto fail;
    if ((rc = tb_housekeep_new(&self->housekeep)) != TB_OK) goto fail;
    rc = TB_ERR_IO;
    if (!self->ctx) {
        snprintf(err, errlen, "zeromq setup failed: %s", zmq_strerror(errno));
        goto fail;
    }
    memcpy(self->curve_secret, secret, sizeof secret);
    memcpy(self->curve_public, public, sizeof public);
    if ((rc = dealer_open(self, tb_now_ms(), err, errlen)) != TB_OK) goto fail;
    memset(secret, 0, sizeof secret);
    *out = self;
    return TB_OK;
fail:
    memset(secret, 0, sizeof secret);
    node_destroy(&self);
    return rc;
}

static void dir_clear(node_t *self)
{
    for (size_t i = 0; i < self->ndir; i++) tb_cert_destroy(&self->dir[i].cert);
    free(self->dir);
    self->dir = NULL;
    self->ndir = 0;
}

void node_destroy(node_t **selfp)
{
    node_t *self = selfp ? *selfp : NULL;
    if (!self) return;
    node_metrics_destroy(&self->metrics);
    tb_housekeep_destroy(&self->housekeep);
    dealer_close(self);
    memset(self->curve_secret, 0, sizeof self->curve_secret);
    if (self->admin) zmq_close(self->admin);
    api_destroy(&self->api);
    if (self->ctx) zmq_ctx_term(self->ctx);
    tb_store_destroy(&self->store);
    pend_clear(self);
    free(self->pend);
    dir_clear(self);
    tb_signer_destroy(&self->signer);
    tb_cert_destroy(&self->cert);
    tb_cert_destroy(&self->ca);
    if (self->own_cfg) {
        tb_node_config_free(self->own_cfg);
        free(self->own_cfg);
    }
    free(self);
    *selfp = NULL;
}

void node_get_stats(const node_t *self, node_stats_t *out)
{
    *out = self->stats;
}

/* ---- PostgreSQL trouble ---- */

static void store_lost(node_t *self, const char *what, const char *err)
{
    char q[TB_ERRLEN + 8];
    self->stats.pg_errors++;
    tb_log(TB_LOG_ERROR, comp, "postgresql_error", "node=%s during=%s error=%s", self->cfg->id, what,
           tb_log_quote(err, q, sizeof q));
    tb_store_destroy(&self->store);
    self->vacuuming = 0;                 /* its connection went with the store */
    self->pg_retry_ms = tb_now_ms() + PG_RETRY_MS;
}

void node_store_lost(node_t *self, const char *what, const char *err)
{
    if (self->store) store_lost(self, what, err);
}

static void store_reconnect(node_t *self, uint64_t now)
{
    if (self->store || now < self->pg_retry_ms) return;
    char err[TB_ERRLEN], q[TB_ERRLEN + 8];
    if (open_store(self, err, sizeof err) != TB_OK || load_unacked(self, err, sizeof err) != TB_OK) {
        tb_store_destroy(&self->store);
        tb_log(TB_LOG_WARN, comp, "postgresql_unavailable", "node=%s error=%s", self->cfg->id,
               tb_log_quote(err, q, sizeof q));
        self->pg_retry_ms = now + PG_RETRY_MS;
        return;
    }
    tb_log(TB_LOG_INFO, comp, "postgresql_reconnected", "node=%s unacked=%zu", self->cfg->id,
           self->npend);
    self->outbox_dirty = 1;
}

/* ---- sending ---- */

/* node_internal.h */
void node_send_frame(node_t *self, const Tongban__Frame *f)
{
    tb_frame_send(self->dealer, NULL, 0, f, ZMQ_DONTWAIT);
}

static void send_hello(node_t *self, uint64_t now)
{
    Tongban__Hello h = TONGBAN__HELLO__INIT;
    h.node_id = (char *)self->cfg->id;
    h.protocol = TB_PROTOCOL_VERSION;
    h.software = "tongban-node/" TB_VERSION_STRING;
    /* A hub whose memory is older than ours (restored from a backup, new
     * data directory) learns where our batch sequence stands. */
    uint64_t acked = 0;
    char err[TB_ERRLEN];
    if (self->store && tb_store_last_acked(self->store, &acked, err, sizeof err) == TB_OK) h.acked_seq = acked;
    Tongban__Frame f = TONGBAN__FRAME__INIT;
    f.kind_case = TONGBAN__FRAME__KIND_HELLO;
    f.hello = &h;
    node_send_frame(self, &f);
    self->last_hello_ms = now;
}

/* Moves to the next hub endpoint (round robin): a fresh DEALER, so nothing
 * queued for the old hub lingers; Hello at once (with acked_seq); every
 * unacked batch goes again, in seq order, after the Welcome (on_welcome) --
 * the hub deduplicates by (sender, seq). */
static void hub_failover(node_t *self, uint64_t now, const char *reason)
{
    char err[TB_ERRLEN], q[TB_ERRLEN + 8];
    const char *from = self->cfg->hub_endpoints[self->ep];
    dealer_close(self);
    self->ep = (self->ep + 1) % self->cfg->hub_endpoint_count;
    self->hub_failovers++;
    self->welcomed = 0;
    self->last_heard_ms = now;
    tb_log(TB_LOG_WARN, comp, "hub_failover", "node=%s from=%s to=%s reason=%s unacked=%zu failovers=%lu",
           self->cfg->id, from, self->cfg->hub_endpoints[self->ep], reason, self->npend,
           self->hub_failovers);
    if (dealer_open(self, now, err, sizeof err) != TB_OK) {     /* the next one in FAILOVER_WELCOME_MS */
        tb_log(TB_LOG_ERROR, comp, "hub_connect_failed", "node=%s endpoint=%s error=%s", self->cfg->id,
               self->cfg->hub_endpoints[self->ep], tb_log_quote(err, q, sizeof q));
        return;
    }
    send_hello(self, now);
}

/* Reads the DEALER's monitor. Returns 1 if the connection to the hub broke
 * (the hub died or closed its port: fenced, stopped), else 0. The first
 * completed handshake restarts the Welcome clock: a hub that just took over
 * and accepted us gets its FAILOVER_WELCOME_MS to answer. */
static int hub_disconnected(node_t *self, uint64_t now)
{
    int hit = 0;
    while (self->mon) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, self->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        uint16_t ev = 0;                /* frame 1: event (16 bits) + value (32 bits) */
        if (zmq_msg_size(&m) >= sizeof ev) memcpy(&ev, zmq_msg_data(&m), sizeof ev);
        if (ev == ZMQ_EVENT_DISCONNECTED) hit = 1;
        if (ev == ZMQ_EVENT_HANDSHAKE_SUCCEEDED && !self->ep_handshaken) {
            self->ep_handshaken = 1;
            self->ep_since_ms = now;
        }
        int more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        while (more) {                  /* frame 2: the endpoint */
            zmq_msg_init(&m);
            more = zmq_msg_recv(&m, self->mon, ZMQ_DONTWAIT) >= 0 && zmq_msg_more(&m);
            zmq_msg_close(&m);
        }
    }
    return hit;
}

/* With several hub endpoints: moves on when the current hub broke the
 * connection, stays silent (HUB_SILENT_MS) or did not welcome us within
 * FAILOVER_WELCOME_MS (a standby does not listen). At most one move per
 * FAILOVER_WELCOME_MS while no hub answers: never a busy loop. */
static void failover_check(node_t *self, uint64_t now)
{
    if (self->cfg->hub_endpoint_count < 2) return;
    int broken = hub_disconnected(self, now);
    if (self->welcomed && broken) hub_failover(self, now, "disconnected");
    else if (self->welcomed && now - self->last_heard_ms > HUB_SILENT_MS) hub_failover(self, now, "hub_silent");
    else if (!self->welcomed && now - self->ep_since_ms >= FAILOVER_WELCOME_MS) hub_failover(self, now, "no_welcome");
}

/* Sends pending batches that were never sent or whose ack is overdue. */
static void pump(node_t *self, uint64_t now)
{
    if (!self->welcomed) return;
    for (size_t i = 0; i < self->npend; i++) {
        pend_t *p = &self->pend[i];
        if (p->sent_ms && now - p->sent_ms < (uint64_t)self->cfg->resend_ms) continue;
        uint8_t *buf;
        size_t len;
        if (tb_frame_wrap(TONGBAN__FRAME__KIND_BATCH, p->bytes, p->len, &buf, &len) != TB_OK) return;
        int rc = zmq_send(self->dealer, buf, len, ZMQ_DONTWAIT);
        free(buf);
        if (rc < 0) return;      /* not connected / HWM: try again later */
        if (p->sent_ms)
            tb_log(TB_LOG_INFO, comp, "batch_resent", "node=%s seq=%llu dest=%s", self->cfg->id,
                   (unsigned long long)p->seq, p->dest);
        p->sent_ms = now ? now : 1;
    }
}

/* Turns up to max outbox rows for dest into one signed, persisted batch.
 * Returns the number of rows taken (0: nothing to do), -1 on error. */
static long cut_batch(node_t *self, const char *dest)
{
    char err[TB_ERRLEN];
    uint64_t seq = 0;
    tb_outrow_t *rows = NULL;
    size_t n = 0, i;
    long taken = -1;
    size_t max = (size_t)self->cfg->batch_max_entries;
    tb_store_set_batch_max_bytes(self->store, (size_t)self->cfg->batch_max_bytes);
    tb_err_t rc = tb_store_batch_begin(self->store, dest, max, &seq, &rows, &n, err, sizeof err);
    if (rc != TB_OK) {
        store_lost(self, "batch_begin", err);
        return -1;
    }
    if (n == 0) return 0;

    Tongban__Entry *ents = calloc(n, sizeof *ents);
    Tongban__Entry **eptrs = calloc(n, sizeof *eptrs);
    uint8_t (*ids)[16] = calloc(n, 16);
    uint8_t **payloads = calloc(n, sizeof *payloads);
    uint8_t *signed_bytes = NULL;
    size_t signed_len = 0;
    if (!ents || !eptrs || !ids || !payloads || RAND_bytes((uint8_t *)ids, (int)(n * 16)) != 1) {
        tb_store_batch_abort(self->store);
        goto done;
    }
    uint64_t hlc = 0;
    for (i = 0; i < n; i++) {
        const tb_outrow_t *r = &rows[i];
        tongban__entry__init(&ents[i]);
        ents[i].id.data = ids[i];
        ents[i].id.len = 16;
        size_t plen;
        if (r->op == 'D') {
            Tongban__RecordDelete d = TONGBAN__RECORD_DELETE__INIT;
            d.catalog = r->catalog;
            d.key = r->key;
            d.version = (uint64_t)r->version;
            d.origin = r->origin;
            d.hlc = r->hlc;
            ents[i].type = TONGBAN__ENTRY_TYPE__RECORD_DELETE;
            plen = tongban__record_delete__get_packed_size(&d);
            payloads[i] = malloc(plen ? plen : 1);
            if (payloads[i]) tongban__record_delete__pack(&d, payloads[i]);
        } else {
            Tongban__RecordUpsert u = TONGBAN__RECORD_UPSERT__INIT;
            u.catalog = r->catalog;
            u.key = r->key;
            u.version = (uint64_t)r->version;
            u.body = r->body ? r->body : "null";
            u.origin = r->origin;
            u.hlc = r->hlc;
            ents[i].type = TONGBAN__ENTRY_TYPE__RECORD_UPSERT;
            plen = tongban__record_upsert__get_packed_size(&u);
            payloads[i] = malloc(plen ? plen : 1);
            if (payloads[i]) tongban__record_upsert__pack(&u, payloads[i]);
        }
        if (!payloads[i]) {
            tb_store_batch_abort(self->store);
            goto done;
        }
        ents[i].payload.data = payloads[i];
        ents[i].payload.len = plen;
        eptrs[i] = &ents[i];
        if (r->hlc > hlc) hlc = r->hlc;
    }
    Tongban__Batch b = TONGBAN__BATCH__INIT;
    b.sender = (char *)self->cfg->id;
    b.seq = seq;
    b.prev_seq = seq - 1;       /* seqs are gapless: the hub keeps them in order */
    b.dest = (char *)dest;
    b.hlc = hlc;
    b.n_entries = n;
    b.entries = eptrs;
    rc = tb_batch_sign(&b, self->signer, self->cert, &signed_bytes, &signed_len, err, sizeof err);
    if (rc != TB_OK) {
        tb_store_batch_abort(self->store);
        char q[TB_ERRLEN + 8];
        tb_log(TB_LOG_ERROR, comp, "sign_failed", "node=%s seq=%llu error=%s", self->cfg->id,
               (unsigned long long)seq, tb_log_quote(err, q, sizeof q));
        goto done;
    }
    rc = tb_store_batch_commit(self->store, seq, dest, rows, n, signed_bytes, signed_len, err,
                               sizeof err);
    if (rc != TB_OK) {
        store_lost(self, "batch_commit", err);
        goto done;
    }
    if (pend_add(self, seq, dest, signed_bytes, signed_len, n) != 0) goto done;
    signed_bytes = NULL;
    self->stats.batches_sent++;
    self->stats.records_sent += n;
    self->taken_since_compact += n;
    self->taken_since_vacuum += n;
    tb_log(TB_LOG_DEBUG, comp, "batch_cut", "node=%s seq=%llu dest=%s entries=%zu", self->cfg->id,
           (unsigned long long)seq, dest, n);
    taken = (long)n;
done:
    if (payloads)
        for (i = 0; i < n; i++) free(payloads[i]);
    free(payloads);
    free(ids);
    free(eptrs);
    free(ents);
    free(signed_bytes);
    tb_store_free_outrows(rows, n);
    return taken;
}

/* Keeping the outbox's table small (store.h): an empty outbox is
 * truncated once OUTBOX_COMPACT_ROWS were taken from it (~40 dead index
 * pages; tried at most every OUTBOX_COMPACT_RETRY_MS while applications
 * keep it locked), and under a sustained load, when it is never empty,
 * VACUUM runs on a second connection every OUTBOX_VACUUM_ROWS taken. */
#define OUTBOX_COMPACT_ROWS 10000
#define OUTBOX_COMPACT_RETRY_MS 1000
#define OUTBOX_VACUUM_ROWS 50000

static void outbox_upkeep(node_t *self, uint64_t now, int empty)
{
    char err[TB_ERRLEN], q[TB_ERRLEN + 8];
    if (self->vacuuming) {
        int r = tb_store_vacuum_poll(self->store, err, sizeof err);
        if (r > 0) return;               /* neither a second VACUUM nor a TRUNCATE while it runs */
        self->vacuuming = 0;
        if (r < 0)
            tb_log(TB_LOG_WARN, comp, "outbox_vacuum_failed", "node=%s error=%s", self->cfg->id,
                   tb_log_quote(err, q, sizeof q));
    }
    if (empty && self->taken_since_compact >= OUTBOX_COMPACT_ROWS &&
        now - self->compact_try_ms >= OUTBOX_COMPACT_RETRY_MS) {
        int done = 0;
        self->compact_try_ms = now;
        tb_err_t rc = tb_store_outbox_compact(self->store, &done, err, sizeof err);
        if (rc == TB_ERR_UNAVAILABLE) {
            store_lost(self, "outbox_compact", err);
            return;
        }
        if (rc != TB_OK) {               /* e.g. a read-only database: not again before 10,000 more rows */
            self->stats.pg_errors++;
            self->taken_since_compact = 0;
            tb_log(TB_LOG_WARN, comp, "outbox_compact_failed", "node=%s error=%s", self->cfg->id,
                   tb_log_quote(err, q, sizeof q));
            return;
        }
        if (done) {
            tb_log(TB_LOG_DEBUG, comp, "outbox_compacted", "node=%s taken_since=%llu", self->cfg->id,
                   (unsigned long long)self->taken_since_compact);
            self->taken_since_compact = self->taken_since_vacuum = 0;
            self->stats.outbox_compactions++;
            return;
        }
    }
    if (self->taken_since_vacuum >= OUTBOX_VACUUM_ROWS) {
        self->taken_since_vacuum = 0;
        if (tb_store_vacuum_start(self->store, err, sizeof err) != TB_OK) {
            tb_log(TB_LOG_WARN, comp, "outbox_vacuum_failed", "node=%s error=%s", self->cfg->id,
                   tb_log_quote(err, q, sizeof q));
            return;
        }
        self->vacuuming = 1;
        self->stats.outbox_vacuums++;
    }
}

/* Cuts batches from the outbox while the window has room. */
static void cut_batches(node_t *self, uint64_t now)
{
    if (!self->store || !self->welcomed) return;
    char err[TB_ERRLEN];
    char **dests = NULL;
    size_t nd = 0;
    if (tb_store_outbox_dests(self->store, &dests, &nd, err, sizeof err) != TB_OK) {
        store_lost(self, "outbox_dests", err);
        return;
    }
    int more = 0;
    for (size_t d = 0; d < nd && self->store; d++) {
        while (self->npend < (size_t)self->cfg->batch_window) {
            long got = cut_batch(self, dests[d]);
            if (got <= 0) break;
            if (got < self->cfg->batch_max_entries) break;
        }
        if (self->npend >= (size_t)self->cfg->batch_window) more = 1;
    }
    tb_store_free_strings(dests, nd);
    if (self->store) outbox_upkeep(self, now, nd == 0);
    self->outbox_dirty = more;
    self->batch_deadline = 0;
    pump(self, now);
}

/* ---- receiving ---- */

/* node_internal.h */
const dir_t *node_dir_by_key_id(const node_t *self, const char *key_id)
{
    for (size_t i = 0; i < self->ndir; i++)
        if (strcmp(tb_cert_key_id(self->dir[i].cert), key_id) == 0) return &self->dir[i];
    return NULL;
}

/* 1 if the directory nd[0..nn-1] has a signing key, not revoked, that the
 * current one lacks (a node added, a certificate changed), else 0. */
static int dir_gains_signer(const node_t *self, const dir_t *nd, size_t nn)
{
    for (size_t i = 0; i < nn; i++)
        if (!nd[i].revoked && !node_dir_by_key_id(self, tb_cert_key_id(nd[i].cert))) return 1;
    return 0;
}

/* Replaces the directory of node certificates with d, keeping only the
 * entries whose certificate was issued by our CA and names its node. A
 * signer it gains makes the deliveries parked for an unknown signer due
 * for a retry (node_refused_timer). */
static void load_directory(node_t *self, const Tongban__DirectoryUpdate *d)
{
    size_t n = d ? d->n_nodes : 0;
    dir_t *nd = calloc(n ? n : 1, sizeof *nd);
    size_t nn = 0;
    if (!nd) return;            /* keep the old directory */
    for (size_t i = 0; i < n; i++) {
        const Tongban__DirectoryEntry *e = d->nodes[i];
        char err[TB_ERRLEN], q[TB_ERRLEN + 8];
        tb_cert_t *c = NULL;
        if (!e->node_id || !tb_config_valid_id(e->node_id)) continue;
        if (tb_cert_load_pem(e->certificate_pem.data, e->certificate_pem.len, &c, err, sizeof err) != TB_OK ||
            tb_cert_verify_issued_by(c, self->ca, err, sizeof err) != TB_OK ||
            strcmp(tb_cert_node_id(c), e->node_id) != 0) {
            if (c && strcmp(tb_cert_node_id(c), e->node_id) != 0)
                snprintf(err, sizeof err, "certificate names \"%s\"", tb_cert_node_id(c));
            tb_log(TB_LOG_WARN, comp, "directory_entry_rejected", "node=%s peer=%s error=%s",
                   self->cfg->id, e->node_id, tb_log_quote(err, q, sizeof q));
            tb_cert_destroy(&c);
            continue;
        }
        for (size_t k = 0; k < self->ndir; k++)
            if (strcmp(self->dir[k].id, e->node_id) == 0 && !self->dir[k].revoked && e->revoked)
                tb_log(TB_LOG_WARN, comp, "peer_revoked", "node=%s peer=%s", self->cfg->id, e->node_id);
        dir_t *de = &nd[nn++];
        snprintf(de->id, sizeof de->id, "%s", e->node_id);
        de->cert = c;
        de->revoked = e->revoked;
    }
    int grew = dir_gains_signer(self, nd, nn);
    dir_clear(self);
    self->dir = nd;
    self->ndir = nn;
    if (grew) node_refused_directory_grew(self);
}

/* Warns when retention.inbox_days is shorter than the floor the hubs set
 * (tb_housekeep_set_inbox_floor): the floor is what the inbox keeps. */
static void warn_inbox_floor(node_t *self)
{
    long days = self->cfg->retention_inbox_days, eff = tb_housekeep_inbox_days(self->housekeep, self->cfg);
    if (eff != days)
        tb_log(TB_LOG_WARN, comp, "inbox_retention_raised",
               "node=%s inbox_days=%ld hub_journal_retention_hours=%u effective_days=%ld"
               " hint=\"the hub may deliver a batch this long after it was sent: the inbox keeps it that long\"",
               self->cfg->id, days, (unsigned)self->hub_retention_hours, eff);
}

static void on_welcome(node_t *self, const Tongban__Welcome *w, uint64_t now)
{
    load_directory(self, w->directory);
    /* the inbox outlives the hub's journal: whole days, plus one */
    if (w->journal_retention_hours > self->hub_retention_hours) {
        self->hub_retention_hours = w->journal_retention_hours;
        tb_housekeep_set_inbox_floor(self->housekeep, (long)(self->hub_retention_hours + 23) / 24 + 1);
        warn_inbox_floor(self);
    }
    if (!self->welcomed)
        tb_log(TB_LOG_INFO, comp, "hub_connected", "node=%s hub=%s endpoint=%s directory=%zu unacked=%zu ms=%llu",
               self->cfg->id, w->hub_id ? w->hub_id : "", self->cfg->hub_endpoints[self->ep], self->ndir,
               self->npend, (unsigned long long)(now - self->ep_since_ms));
    self->welcomed = self->ever_welcomed = 1;
    for (size_t i = 0; i < self->npend; i++) self->pend[i].sent_ms = 0;
    self->outbox_dirty = 1;
    pump(self, now);
}

/* Deletes the batches acked since the last call from sent_batches, in one
 * transaction (see tb_store_ack_many). */
static void flush_acks(node_t *self)
{
    char err[TB_ERRLEN];
    if (!self->nacked || !self->store) return;
    if (tb_store_ack_many(self->store, self->acked, self->nacked, err, sizeof err) != TB_OK) {
        /* still in sent_batches: resent after the reconnect, deduplicated by the hub */
        self->nacked = 0;
        store_lost(self, "ack", err);
        return;
    }
    self->nacked = 0;
}

static void on_ack(node_t *self, uint64_t seq)
{
    for (size_t i = 0; i < self->npend; i++) {
        if (self->pend[i].seq != seq) continue;
        if (!self->store) return;   /* kept: resent later, deduplicated downstream */
        if (self->nacked == sizeof self->acked / sizeof self->acked[0]) flush_acks(self);
        if (!self->store) return;
        self->acked[self->nacked++] = seq;
        pend_remove(self, i);
        self->stats.acks++;
        self->last_ack_ms = tb_now_ms();
        self->last_ack_wall_ms = (int64_t)time(NULL) * 1000;
        self->outbox_dirty = 1;
        return;
    }
}

static void on_nack(node_t *self, const Tongban__Nack *k, uint64_t now)
{
    char q[600], err[TB_ERRLEN];
    const char *reason = tb_nack_reason_name(k->reason);
    const char *detail = k->detail ? k->detail : "";
    self->stats.nacks++;
    node_metrics_nack(self->metrics, reason);
    if (k->reason == TONGBAN__NACK_REASON__NACK_OUT_OF_ORDER) {
        /* An earlier batch was lost on the way (e.g. the hub restarted):
         * resend everything unacked now, in seq order -- at most once per
         * resend_ms: the other batches of the window are nacked too, and a
         * predecessor refused for the moment (storage, overloaded) waits for
         * its retry; resending at each Nack would loop as fast as the hub answers. */
        tb_log(TB_LOG_INFO, comp, "batch_out_of_order", "node=%s seq=%llu detail=%s", self->cfg->id,
               (unsigned long long)k->seq, tb_log_quote(detail, q, sizeof q));
        if (self->ooo_resend_ms && now - self->ooo_resend_ms < (uint64_t)self->cfg->resend_ms) return;
        self->ooo_resend_ms = now;
        /* The hub may have lost batches it had acked (restored from a
         * backup): a Hello tells it how far our sequence was acked. */
        send_hello(self, now);
        for (size_t i = 0; i < self->npend; i++) self->pend[i].sent_ms = 0;
        return;
    }
    tb_log(TB_LOG_ERROR, comp, "batch_refused", "node=%s seq=%llu reason=%s detail=%s", self->cfg->id,
           (unsigned long long)k->seq, reason, tb_log_quote(detail, q, sizeof q));
    for (size_t i = 0; i < self->npend; i++) {
        if (self->pend[i].seq != k->seq) continue;
        if (!tb_nack_is_permanent(k->reason) || !self->store) {
            self->pend[i].sent_ms = now;     /* retried after resend_ms */
            return;
        }
        /* Refused for good: kept in tongban.refused_batches for the
         * operator, out of the way of the batches behind it. */
        if (tb_store_refuse(self->store, k->seq, reason, detail, err, sizeof err) != TB_OK) {
            store_lost(self, "refuse", err);
            return;
        }
        pend_remove(self, i);
        self->outbox_dirty = 1;
        return;
    }
}

uint64_t node_send_query(node_t *self, const char *dest, const char *kind, const char *body)
{
    Tongban__Query q = TONGBAN__QUERY__INIT;
    q.id = ++self->next_query_id;
    q.dest = (char *)dest;
    q.kind = (char *)kind;
    q.body.data = (uint8_t *)body;
    q.body.len = strlen(body);
    Tongban__Frame f = TONGBAN__FRAME__INIT;
    f.kind_case = TONGBAN__FRAME__KIND_QUERY;
    f.query = &q;
    node_send_frame(self, &f);
    return q.id;
}

static void send_reply(node_t *self, const Tongban__Query *q, Tongban__ReplyStatus status,
                       const char *body)
{
    Tongban__Reply r = TONGBAN__REPLY__INIT;
    r.id = q->id;
    r.status = status;
    r.to = q->from;
    r.body.data = (uint8_t *)body;
    r.body.len = strlen(body);
    Tongban__Frame f = TONGBAN__FRAME__INIT;
    f.kind_case = TONGBAN__FRAME__KIND_REPLY;
    f.reply = &r;
    node_send_frame(self, &f);
}

void node_send_reply(node_t *self, const Tongban__Query *q, Tongban__ReplyStatus status, const char *body)
{
    send_reply(self, q, status, body);
}

/* 1 if this node's routes send catalog to node `who` (directly, by "*", or
 * through any topic: who may subscribe to it). */
static int routes_share(const node_t *self, const char *catalog, const char *who)
{
    for (size_t i = 0; i < self->cfg->route_count; i++) {
        const tb_route_config_t *r = &self->cfg->routes[i];
        if (strcmp(r->catalog, "*") != 0 && strcmp(catalog, "*") != 0 && strcmp(r->catalog, catalog) != 0)
            continue;
        for (size_t k = 0; k < r->to_count; k++)
            if (strcmp(r->to[k], who) == 0 || strncmp(r->to[k], "topic:", 6) == 0) return 1;
    }
    return 0;
}

/* Another node asks for something now. "snapshot": queue every current
 * record of a catalog (and its tombstones) for the asker through the
 * outbox -- signed, ordered and deduplicated like live changes, and
 * idempotent with them under last-writer-wins. */
static void on_query(node_t *self, const Tongban__Query *q)
{
    char body[TB_ID_MAX + 2], err[TB_ERRLEN], q2[TB_ERRLEN + 8], out[64];
    const char *from = q->from ? q->from : "";
    const char *kind = q->kind ? q->kind : "";
    if (strcmp(kind, "licence_status") == 0) {     /* api.c: as the licence's issuer */
        api_on_query(self->api, q);
        return;
    }
    if (strcmp(kind, "snapshot") != 0) {
        send_reply(self, q, TONGBAN__REPLY_STATUS__REPLY_ERROR, "unknown query kind");
        return;
    }
    size_t n = q->body.len < sizeof body - 1 ? q->body.len : sizeof body - 1;
    memcpy(body, q->body.data, n);
    body[n] = '\0';
    if (!tb_config_valid_catalog(body) || !tb_config_valid_id(from)) {
        send_reply(self, q, TONGBAN__REPLY_STATUS__REPLY_ERROR, "bad catalog name");
        return;
    }
    if (!routes_share(self, body, from)) {
        tb_log(TB_LOG_WARN, comp, "snapshot_refused", "node=%s asker=%s catalog=%s reason=not_routed",
               self->cfg->id, from, body);
        send_reply(self, q, TONGBAN__REPLY_STATUS__REPLY_ERROR, "this catalog is not shared with you");
        return;
    }
    if (!self->store) {
        send_reply(self, q, TONGBAN__REPLY_STATUS__REPLY_UNAVAILABLE, "database unavailable");
        return;
    }
    int64_t rows = 0;
    if (tb_store_snapshot_enqueue(self->store, body, from, &rows, err, sizeof err) != TB_OK) {
        tb_log(TB_LOG_ERROR, comp, "snapshot_failed", "node=%s asker=%s catalog=%s error=%s", self->cfg->id,
               from, body, tb_log_quote(err, q2, sizeof q2));
        send_reply(self, q, TONGBAN__REPLY_STATUS__REPLY_ERROR, "snapshot failed (see the owner's log)");
        return;
    }
    tb_log(TB_LOG_INFO, comp, "snapshot_queued", "node=%s asker=%s catalog=%s rows=%lld", self->cfg->id,
           from, body, (long long)rows);
    snprintf(out, sizeof out, "%lld", (long long)rows);
    send_reply(self, q, TONGBAN__REPLY_STATUS__REPLY_OK, out);
    self->outbox_dirty = 1;
}

static void on_dealer(node_t *self, uint64_t now)
{
    node_on_dealer_msg(self, NULL, now);
}

/* Handles one frame from the hub: held (moved from, closed here), or the
 * next one received when held is NULL. */
void node_on_dealer_msg(node_t *self, zmq_msg_t *held, uint64_t now)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (held) zmq_msg_move(&m, held), zmq_msg_close(held);
    else if (zmq_msg_recv(&m, self->dealer, ZMQ_DONTWAIT) < 0) goto done;
    self->last_heard_ms = now;
    uint64_t hub_seq;
    const uint8_t *sbraw;
    size_t sblen;
    if (tb_frame_parse_deliver(zmq_msg_data(&m), zmq_msg_size(&m), &hub_seq, &sbraw, &sblen) == TB_OK) {
        node_on_deliver(self, hub_seq, sbraw, sblen);    /* no copy of the batch before verifying */
        goto done;
    }
    Tongban__Frame *f = tongban__frame__unpack(NULL, zmq_msg_size(&m), zmq_msg_data(&m));
    if (!f) {
        tb_log(TB_LOG_WARN, comp, "frame_rejected", "node=%s reason=malformed bytes=%zu", self->cfg->id,
               zmq_msg_size(&m));
        goto done;
    }
    switch (f->kind_case) {
    case TONGBAN__FRAME__KIND_WELCOME: on_welcome(self, f->welcome, now); break;
    case TONGBAN__FRAME__KIND_ACK: on_ack(self, f->ack->seq); break;
    case TONGBAN__FRAME__KIND_NACK: on_nack(self, f->nack, now); break;
    case TONGBAN__FRAME__KIND_HEARTBEAT: break;
    case TONGBAN__FRAME__KIND_DIRECTORY: load_directory(self, f->directory); break;
    case TONGBAN__FRAME__KIND_QUERY: on_query(self, f->query); break;
    case TONGBAN__FRAME__KIND_REPLY:
        if (!api_on_reply(self->api, f->reply, now)) node_admin_on_reply(self, f->reply);
        break;
    default:
        tb_log(TB_LOG_WARN, comp, "frame_rejected", "node=%s reason=unexpected kind=%d", self->cfg->id,
               (int)f->kind_case);
        break;
    }
    tongban__frame__free_unpacked(f, NULL);
done:
    zmq_msg_close(&m);
}

static void on_timer(node_t *self, uint64_t now)
{
    store_reconnect(self, now);
    node_refused_timer(self);
    node_admin_timer(self, now);
    api_timer(self->api, now);
    node_gauges_t g = { .hub_connected = self->welcomed, .pg_connected = self->store != NULL,
                        .outbox_unacked = self->npend, .cert = self->cert,
                        .hub_failovers = self->hub_failovers, .housekeep = self->housekeep };
    node_metrics_tick(self->metrics, &self->stats, &g);
    failover_check(self, now);
    if (!self->welcomed) {
        if (now - self->last_hello_ms >= HELLO_EVERY_MS) send_hello(self, now);
    } else {
        if (now - self->last_heard_ms > HUB_SILENT_MS) {
            tb_log(TB_LOG_WARN, comp, "hub_lost", "node=%s endpoint=%s silent_ms=%llu unacked=%zu",
                   self->cfg->id, self->cfg->hub_endpoints[self->ep],
                   (unsigned long long)(now - self->last_heard_ms), self->npend);
            self->welcomed = 0;
            send_hello(self, now);
        } else if (now - self->last_hb_ms >= HEARTBEAT_MS) {
            Tongban__Heartbeat hb = TONGBAN__HEARTBEAT__INIT;
            hb.time_ms = now;
            Tongban__Frame f = TONGBAN__FRAME__INIT;
            f.kind_case = TONGBAN__FRAME__KIND_HEARTBEAT;
            f.heartbeat = &hb;
            node_send_frame(self, &f);
            self->last_hb_ms = now;
        }
    }
    if (now - self->last_poll_ms >= (uint64_t)self->cfg->poll_ms) {
        self->last_poll_ms = now;
        self->outbox_dirty = 1;          /* catch anything a lost NOTIFY missed */
    }
    pump(self, now);
    if (self->store && self->welcomed) {   /* retention: one bounded DELETE at most per turn */
        char herr[TB_ERRLEN];
        tb_err_t hrc = tb_housekeep_tick(self->housekeep, self->store, self->cfg, now, herr, sizeof herr);
        if (hrc == TB_ERR_UNAVAILABLE) store_lost(self, "housekeep", herr);
        else if (hrc != TB_OK) self->stats.pg_errors++;
    }
    if (now - self->last_stats_ms >= STATS_EVERY_MS) {
        self->last_stats_ms = now;
        const node_stats_t *s = &self->stats;
        tb_log(TB_LOG_INFO, comp, "stats",
               "node=%s batches_sent=%lu records_sent=%lu acks=%lu nacks=%lu batches_applied=%lu "
               "records_applied=%lu duplicates=%lu rejected_in=%lu parked=%lu pg_errors=%lu unacked=%zu",
               self->cfg->id, s->batches_sent, s->records_sent, s->acks, s->nacks, s->batches_applied,
               s->records_applied, s->duplicates, s->rejected_in, s->deliveries_parked, s->pg_errors, self->npend);
    }
}

tb_err_t node_reload(node_t *self, const char *cfg_path, char *err, size_t errlen)
{
    tb_node_config_t *cfg = calloc(1, sizeof *cfg);
    tb_config_errors_t errs = { 0 };
    if (!cfg) return TB_ERR_NOMEM;
    tb_err_t rc = tb_node_config_load(cfg_path, cfg, &errs);
    if (rc != TB_OK) {
        for (size_t i = 0; i < errs.count; i++)
            tb_log(TB_LOG_ERROR, comp, "reload_config_error", "problem=\"%s\"", errs.lines[i]);
        snprintf(err, errlen, "%s: %zu problem(s), nothing reloaded (see log)", cfg_path, errs.count);
        tb_config_errors_free(&errs);
        tb_node_config_free(cfg);
        free(cfg);
        return TB_ERR_CONFIG;
    }
    tb_config_errors_free(&errs);
    const tb_node_config_t *old = self->cfg;
    const char *restart[17];
    size_t nr = 0;
#define CHANGED_STR(f, name) if (strcmp(old->f, cfg->f) != 0) restart[nr++] = name
    CHANGED_STR(id, "node.id");
    CHANGED_STR(admin, "node.admin");
    CHANGED_STR(signing_key, "keys.signing_key");
    CHANGED_STR(certificate, "keys.certificate");
    CHANGED_STR(ca_certificate, "keys.ca_certificate");
    CHANGED_STR(curve_secret, "keys.curve_secret");
    CHANGED_STR(curve_public, "keys.curve_public");
    if (old->hub_endpoint_count != cfg->hub_endpoint_count ||
        memcmp(old->hub_endpoints, cfg->hub_endpoints, old->hub_endpoint_count * sizeof *old->hub_endpoints) != 0)
        restart[nr++] = old->hub_endpoint_count == 1 && cfg->hub_endpoint_count == 1 ? "hub.endpoint" : "hub.endpoints";
    CHANGED_STR(hub_curve_public, "hub.curve_public");
    CHANGED_STR(pg_conninfo, "postgresql.conninfo");
    CHANGED_STR(http_listen, "http.listen");
    CHANGED_STR(api_listen, "api.listen");
#undef CHANGED_STR
    for (size_t i = 0; i < nr; i++)
        tb_log(TB_LOG_WARN, comp, "reload_needs_restart", "node=%s key=%s", old->id, restart[i]);
    /* Keep what needs a restart, take the rest. */
    memcpy(cfg->id, old->id, sizeof cfg->id);
    memcpy(cfg->admin, old->admin, sizeof cfg->admin);
    memcpy(cfg->signing_key, old->signing_key, sizeof cfg->signing_key);
    memcpy(cfg->certificate, old->certificate, sizeof cfg->certificate);
    memcpy(cfg->ca_certificate, old->ca_certificate, sizeof cfg->ca_certificate);
    memcpy(cfg->curve_secret, old->curve_secret, sizeof cfg->curve_secret);
    memcpy(cfg->curve_public, old->curve_public, sizeof cfg->curve_public);
    memcpy(cfg->hub_endpoint, old->hub_endpoint, sizeof cfg->hub_endpoint);
    char (*eps)[sizeof *old->hub_endpoints] = malloc(old->hub_endpoint_count * sizeof *eps);
    if (!eps) {
        tb_node_config_free(cfg);
        free(cfg);
        return TB_ERR_NOMEM;
    }
    memcpy(eps, old->hub_endpoints, old->hub_endpoint_count * sizeof *eps);
    free(cfg->hub_endpoints);
    cfg->hub_endpoints = eps;
    cfg->hub_endpoint_count = old->hub_endpoint_count;
    memcpy(cfg->hub_curve_public, old->hub_curve_public, sizeof cfg->hub_curve_public);
    memcpy(cfg->pg_conninfo, old->pg_conninfo, sizeof cfg->pg_conninfo);
    memcpy(cfg->http_listen, old->http_listen, sizeof cfg->http_listen);
    memcpy(cfg->api_listen, old->api_listen, sizeof cfg->api_listen);
    char aerr[TB_ERRLEN], q[TB_ERRLEN + 8];
    if (api_reload(self->api, cfg, aerr, sizeof aerr) != TB_OK)      /* api.clients; the old list stays */
        tb_log(TB_LOG_ERROR, comp, "reload_api_clients_failed", "node=%s error=%s", old->id,
               tb_log_quote(aerr, q, sizeof q));
    if (self->store &&
        tb_store_set_routes(self->store, cfg->routes, cfg->route_count, err, errlen) != TB_OK) {
        tb_node_config_free(cfg);
        free(cfg);
        return TB_ERR_DB;
    }
    if (self->own_cfg) {
        tb_node_config_free(self->own_cfg);
        free(self->own_cfg);
    }
    self->own_cfg = cfg;
    self->cfg = cfg;
    tb_daemon_log_setup(&cfg->log);
    self->outbox_dirty = 1;
    warn_inbox_floor(self);
    tb_log(TB_LOG_INFO, comp, "config_reloaded", "node=%s routes=%zu restart_needed=%zu", cfg->id,
           cfg->route_count, nr);
    return TB_OK;
}

tb_err_t node_run(node_t *self, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload,
                  const char *cfg_path)
{
    uint64_t now = tb_now_ms();
    self->started_ms = self->last_stats_ms = now;
    self->taken_since_compact = OUTBOX_COMPACT_ROWS;   /* dead rows from before a restart: at the first idle moment */
    tb_log(TB_LOG_INFO, comp, "started", "node=%s hub=%s hubs=%zu alg=%s version=%s", self->cfg->id,
           self->cfg->hub_endpoints[self->ep], self->cfg->hub_endpoint_count, tb_alg_name(tb_signer_alg(self->signer)), TB_VERSION_STRING);
    send_hello(self, now);
    self->outbox_dirty = 1;
    while (!*stop) {
        if (reload && *reload && cfg_path) {
            *reload = 0;
            char err[TB_ERRLEN];
            if (node_reload(self, cfg_path, err, sizeof err) != TB_OK)
                tb_log(TB_LOG_ERROR, comp, "reload_failed", "node=%s error=\"%s\"", self->cfg->id, err);
        }
        zmq_pollitem_t items[5] = { { self->dealer, 0, self->dealer ? ZMQ_POLLIN : 0, 0 },
                                     { self->admin, 0, self->admin_waiting ? 0 : ZMQ_POLLIN, 0 },
                                     { NULL, -1, ZMQ_POLLIN, 0 } };
        int nitems = 2;
        if (self->store) {
            items[2].fd = tb_store_socket(self->store);
            nitems = 3;
        }
        int napi = api_poll_items(self->api, items + nitems), iapi = nitems;
        nitems += napi;
        /* Wake early only for a batch that can actually be cut now: with
         * the hub or PostgreSQL away, or the window full, a past deadline
         * would make this a busy loop. */
        long timeout = 50;
        int can_cut = self->welcomed && self->store && self->npend < (size_t)self->cfg->batch_window;
        if (can_cut && self->batch_deadline) {
            long left = (long)(self->batch_deadline - (now < self->batch_deadline ? now : self->batch_deadline));
            if (left < timeout) timeout = left;
        }
        if (can_cut && self->outbox_dirty && !self->batch_deadline) timeout = 0;
        if (api_backlog(self->api)) timeout = 0;     /* requests left over from the last turn */
        int n = zmq_poll(items, nitems, timeout);
        if (n < 0 && errno != EINTR) {
            tb_log(TB_LOG_ERROR, comp, "poll_failed", "error=\"%s\"", zmq_strerror(errno));
            return TB_ERR_IO;
        }
        now = tb_now_ms();
        if (n > 0 && (items[0].revents & ZMQ_POLLIN)) {
            /* Applying a backlog can take a while: give timers, the admin
             * channel and the outbox a turn every DRAIN_BUDGET_MS. */
            uint64_t start = now;
            for (int i = 0; i < 512; i++) {
                int ev = 0;
                size_t evlen = sizeof ev;
                if (zmq_getsockopt(self->dealer, ZMQ_EVENTS, &ev, &evlen) != 0 || !(ev & ZMQ_POLLIN)) break;
                on_dealer(self, now);
                now = tb_now_ms();
                if (now - start >= DRAIN_BUDGET_MS) break;
            }
            flush_acks(self);
            api_wake(self->api);            /* waiting events.next look again */
        }
        if (n > 0 && (items[1].revents & ZMQ_POLLIN)) node_admin_handle(self, now);
        if (n > 0 && napi) api_on_poll(self->api, items + iapi, napi, now);
        /* NOTIFYs (the API's own writes' too) that came while the API used
         * the connection were read by libpq: the socket will not wake the poll. */
        int api_db = api_used_db(self->api);
        if (((n > 0 && iapi == 3 && (items[2].revents & ZMQ_POLLIN)) || api_db) && self->store) {
            int got = tb_store_drain_notifies(self->store);
            if (got < 0) store_lost(self, "listen", "connection to PostgreSQL lost");
            else if (got > 0 && !self->batch_deadline) {
                self->outbox_dirty = 1;
                /* Less than half the window in flight: send at once
                 * (latency: a batch still awaiting its ack must not hold
                 * back the next one); otherwise let changes gather up to
                 * max_delay_ms into bigger batches (throughput). */
                self->batch_deadline = self->npend * 2 < (size_t)self->cfg->batch_window
                                           ? now
                                           : now + (uint64_t)self->cfg->batch_max_delay_ms;
            }
        }
        on_timer(self, now);
        if (!self->ever_welcomed && now - self->started_ms > (uint64_t)self->cfg->hub_connect_timeout_ms) {
            tb_log(TB_LOG_ERROR, comp, "hub_unreachable",
                   "node=%s endpoint=%s waited_ms=%ld hint=\"check hub.endpoint(s), hub.curve_public and that this node's CURVE key is registered at the hub\"",
                   self->cfg->id, self->cfg->hub_endpoints[self->ep], self->cfg->hub_connect_timeout_ms);
            return TB_ERR_UNAVAILABLE;
        }
        if (self->outbox_dirty && (!self->batch_deadline || now >= self->batch_deadline) &&
            self->npend < (size_t)self->cfg->batch_window)
            cut_batches(self, now);
    }
    flush_acks(self);
    tb_log(TB_LOG_INFO, comp, "stopped", "node=%s unacked=%zu", self->cfg->id, self->npend);
    return TB_OK;
}
