/* hub_internal.h -- the hub's state, shared by hub.c (the loop), its ingest
 * and delivery paths (hub_ingest.c, hub_deliver.c), admin.c (the operator's
 * channel), metrics_hub.c and console.c. Not part of any public interface. */
#ifndef TB_HUB_INTERNAL_H
#define TB_HUB_INTERNAL_H

#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "console.h"
#include "cursors.h"
#include "dedup.h"
#include "httpd.h"
#include "hub.h"
#include "ha.h"
#include "hubstore.h"
#include "journal.h"
#include "jsonw.h"
#include "metrics.h"
#include "registry.h"

#define RID_MAX 256

typedef struct {
    uint64_t hub_seq;
    uint64_t bytes;
    uint64_t sent_ms;
    int acked;
} inflight_t;

/* Runtime state of one registered node (by id; survives registry reloads). */
typedef struct {
    char id[TB_ID_MAX + 1];
    reg_node_t *reg;              /* NULL once removed from the registry */
    int online;
    uint8_t rid[RID_MAX];
    size_t rid_len;
    int fd;                       /* socket of its current connection (ZMQ_SRCFD), -1 unknown */
    struct sockaddr_storage fd_peer;  /* getpeername(fd) when noted: is fd still that connection? */
    socklen_t fd_peer_len;        /* 0: unknown */
    uint64_t last_seen_ms;
    int64_t last_seen_wall_ms;
    /* delivery to this node */
    hubstore_reader_t *reader;    /* NULL: (re)create from cursor */
    uint64_t cursor;              /* every record for it up to here is acked */
    inflight_t *inflight;         /* window, in hub_seq order */
    size_t ninflight;
    uint64_t backlog_batches, backlog_bytes;
    /* as a sender */
    dedup_t *dedup;
    /* counters */
    uint64_t batches_in, records_in, batches_out, bytes_out, acks_in;
    uint64_t rejected;
    uint64_t rejected_by[16];               /* by Tongban__NackReason */
    uint64_t rate_mark_in, rate_mark_out;   /* records_in / batches_out at the last rate tick */
    double rate_in, rate_out;               /* per second, over the last tick */
} peer_t;

/* A batch journaled in this burst, to be acked after the next sync. */
typedef struct {
    peer_t *peer;
    uint64_t seq;
} ack_wait_t;

struct hub {
    tb_hub_config_t *cfg;         /* owned by main; replaced on reload */
    const char *cfg_path;
    void *ctx, *router, *zap, *admin;
    registry_t *reg;
    hubstore_t *store;            /* journal or PostgreSQL; NULL while standby */
    cursors_t *cursors;
    peer_t *peers;
    size_t npeers;
    ack_wait_t *acks;
    size_t nacks, acks_cap;
    uint64_t started_ms, last_timer_ms, last_stats_ms, last_save_ms, last_gc_ms, last_rate_ms;
    int64_t started_wall_ms;
    int storage_failed;           /* journal refused a write: Nack until it works again */
    int fatal;                    /* journal sync failed: stop serving */
    int pg;                       /* store: postgresql (active / standby) */
    hub_ha_t *ha;                 /* the lock session (store: postgresql), else NULL */
    int active;                   /* serving: ROUTER bound, state recovered */
    int64_t role_since_wall_ms;   /* when the current role (active / standby) began */
    uint64_t fences, takeovers;   /* times this hub fenced itself / became active */
    uint64_t activated_ms;        /* monotonic, at the last activation */
    int first_ack_logged;         /* the first Ack after an activation was logged */
    hub_stats_t stats;
    tb_metrics_t *metrics;        /* metrics_hub.c; NULL until the first render */
    tb_httpd_t *httpd;            /* /metrics and /healthz; NULL when http.listen is empty */
    hub_console_t *console;       /* console.c: history and node trends; NULL until the first tick */
};

/* admin.c: binds the admin socket (ipc, mode 0600). */
tb_err_t hub_admin_bind(hub_t *self, char *err, size_t errlen);
/* admin.c: answers one request waiting on the admin socket. */
void hub_admin_handle(hub_t *self);
/* admin.c: writes the status object (docs/api-status.md) into w; with
 * with_history the console's "history" too (GET /api/status). */
void hub_status_write(hub_t *self, jsonw_t *w, int with_history);
/* admin.c: writes the "ha" object (role, since when, the hubs seen). */
void hub_ha_status_write(hub_t *self, jsonw_t *w);
/* metrics_hub.c: serves /metrics and /healthz when http.listen is set
 * (nothing to do otherwise). Returns TB_OK or the error (err filled). */
tb_err_t hub_metrics_start(hub_t *self, char *err, size_t errlen);
/* metrics_hub.c: from the timer: publishes a fresh snapshot to the HTTP
 * endpoint when one is due (cheap when none is). */
void hub_metrics_tick(hub_t *self);
/* metrics_hub.c: stops the HTTP endpoint, frees the registry and the
 * console's state. */
void hub_metrics_stop(hub_t *self);
/* metrics_hub.c: the hub's metrics as Prometheus text (*text malloc'd).
 * Returns TB_OK or TB_ERR_NOMEM. */
tb_err_t hub_metrics_render(hub_t *self, char **text, size_t *len);
/* metrics_hub.c: the /healthz verdict: 1 if healthy, else 0 with why. */
int hub_metrics_health(const hub_t *self, char *why, size_t whylen);
/* 1 if p may not be served: removed from the registry, or revoked. */
static inline int hub_peer_revoked(const peer_t *p)
{
    return !p->reg || p->reg->revoked_ms != 0;
}

/* hub.c: sends f to p (DONTWAIT). Returns TB_OK, TB_ERR_UNAVAILABLE when p
 * is offline or unreachable (then marked offline), or the send's error. */
tb_err_t hub_send_to(hub_t *self, peer_t *p, const Tongban__Frame *f);
/* hub.c: stops sending to p (no-op when offline); why goes into the log
 * line. What is in flight stays in flight. */
void hub_mark_offline(peer_t *p, const char *why);
/* hub.c (store: postgresql): stops serving at once and goes back to standby
 * (no-op when not active); reason and detail go into the log line. */
void hub_fence(hub_t *self, const char *reason, const char *detail);
/* hub.c: revokes a node now (registry file, connection, directory update). */
tb_err_t hub_revoke(hub_t *self, const char *id, char *err, size_t errlen);
/* hub.c: re-reads the configuration file and applies the registry. */
tb_err_t hub_reload(hub_t *self, char *err, size_t errlen);

/* hub_ingest.c: handles one Batch frame from p (raw: the SignedBatch's
 * bytes, journaled verbatim): verified, deduplicated, checked against the
 * ACL, journaled, its Ack queued for hub_flush; or refused with a Nack. */
void hub_on_batch(hub_t *self, peer_t *p, const uint8_t *raw, size_t raw_len);
/* hub_ingest.c: refuses p's batch seq (0: unknown) for reason: logs
 * batch_rejected, counts it, sends the Nack with detail. */
void hub_reject(hub_t *self, peer_t *p, uint64_t seq, Tongban__NackReason reason, const char *detail);
/* hub_ingest.c: the group commit after a receive burst: one sync for what
 * was journaled, then the queued Acks, then hub_pump for every node. A sync
 * that fails sets self->fatal (journal) or fences the hub (PostgreSQL), and
 * nothing is acked. */
void hub_flush(hub_t *self, uint64_t now);

/* hub_deliver.c: forgets what is in flight to p: the next hub_pump resends
 * from the cursor. */
void hub_reset_delivery(peer_t *p);
/* hub_deliver.c: sends as many journaled batches to p as its window allows
 * (nothing when p is offline or revoked, or the store is down), then moves
 * p's cursor past what is acked. */
void hub_pump(hub_t *self, peer_t *p, uint64_t now);
/* hub_deliver.c: p acked the Deliver of hub_seq: counts it, moves the
 * cursor, pumps more. */
void hub_on_deliver_ack(hub_t *self, peer_t *p, uint64_t hub_seq, uint64_t now);

#endif
