/* node_internal.h -- the node's state, shared by node.c (the loop) and
 * admin.c (the operator's channel). Not part of any public interface. */
#ifndef TB_NODE_INTERNAL_H
#define TB_NODE_INTERNAL_H

#include <stdint.h>
#include <zmq.h>

#include "api.h"
#include "config.h"
#include "crypto.h"
#include "housekeep.h"
#include "metrics_node.h"
#include "node.h"
#include "store.h"
#include "tongban.pb-c.h"

#define HELLO_EVERY_MS 1000
#define HEARTBEAT_MS 1000
#define HUB_SILENT_MS 5000         /* no frame for this long: hub considered lost */
#define FAILOVER_WELCOME_MS 3000   /* with several hub.endpoints: no Welcome this long after
                                      connecting (a standby does not listen) -> next endpoint */
#define PG_RETRY_MS 1000
#define STATS_EVERY_MS 30000
#define DRAIN_BUDGET_MS 50        /* longest stretch of receiving before other work */
#define REFUSED_RETRY_STEP 16     /* parked deliveries re-verified per loop turn */

/* The reason a delivery whose signer is unknown is parked with; such ones
 * are retried by themselves when the directory gains a signer. */
#define REFUSED_UNKNOWN_SIGNER "signer not in the directory"

typedef struct {
    uint64_t seq;
    char dest[TB_ID_MAX + 8];
    uint8_t *bytes;               /* serialised SignedBatch as stored */
    size_t len;
    size_t entries;
    uint64_t sent_ms;             /* 0 = to be sent */
} pend_t;

typedef struct {
    char id[TB_ID_MAX + 1];
    tb_cert_t *cert;
    int revoked;
} dir_t;

struct node {
    const tb_node_config_t *cfg;  /* main's, or own_cfg after a reload */
    tb_node_config_t *own_cfg;
    tb_signer_t *signer;
    tb_cert_t *cert, *ca;
    void *ctx, *dealer;
    /* the hub connection: one DEALER to cfg->hub_endpoints[ep]; with several
     * endpoints a failover closes it and opens one to the next (round robin) */
    char curve_secret[41], curve_public[41];   /* this node's CURVE keys (Z85), for new DEALERs */
    void *mon;                    /* PAIR: the DEALER's disconnect events (several endpoints only) */
    unsigned mon_seq;             /* names the monitor's inproc endpoint */
    size_t ep;                    /* index of the current endpoint */
    uint64_t ep_since_ms;         /* when the DEALER to it was opened (or first shook hands) */
    int ep_handshaken;            /* the DEALER completed a handshake with this endpoint */
    unsigned long hub_failovers;
    uint32_t hub_retention_hours; /* the longest journal retention a hub's Welcome announced */
    tb_store_t *store;
    uint64_t pg_retry_ms;
    dir_t *dir;
    size_t ndir;
    int welcomed, ever_welcomed;
    uint64_t started_ms, last_hello_ms, last_heard_ms, last_hb_ms, last_poll_ms, last_stats_ms;
    pend_t *pend;
    size_t npend, cap;
    uint64_t acked[64];           /* acked by the hub, not yet deleted from sent_batches */
    size_t nacked;
    int outbox_dirty;
    uint64_t batch_deadline;      /* 0 = none */
    uint64_t taken_since_compact; /* outbox rows taken since the outbox was last truncated */
    uint64_t compact_try_ms;      /* last attempt to truncate the empty outbox */
    uint64_t taken_since_vacuum;  /* outbox rows taken since the last VACUUM was started */
    int vacuuming;                /* a VACUUM runs on the store's maintenance connection */
    uint64_t ooo_resend_ms;       /* last resend of everything after Nack out_of_order */
    node_stats_t stats;
    uint64_t last_ack_ms;         /* monotonic time of the last Ack from the hub */
    int64_t last_ack_wall_ms;
    tb_housekeep_t *housekeep;    /* retention housekeeping (housekeep.c), from on_timer */
    node_metrics_t *metrics;      /* /metrics and /healthz (NULL: disabled) */
    /* operator channel */
    void *admin;
    int admin_waiting;            /* a request awaits a Reply from another node */
    uint64_t admin_deadline;
    uint64_t query_id;            /* id of the Query the admin request waits for */
    uint64_t next_query_id;       /* last Query id sent (random start: a late Reply
                                     from before a restart matches nothing) */
    api_t *api;                   /* the client API (api.c) */
    char query_what[160];         /* what the admin request asked, for its answer */
    /* parked deliveries (refused.c) */
    int refused_retry_due;        /* the directory gained a signer: retry REFUSED_UNKNOWN_SIGNER ones */
    int64_t refused_retry_after;  /* ... with an id above this (the retry goes in steps) */
    int64_t refused_retry_upto;   /* ... up to this one: parked before the directory changed */
};

/* admin.c: binds the admin socket (ipc, mode 0600). */
tb_err_t node_admin_bind(node_t *self, char *err, size_t errlen);
/* admin.c: answers one request waiting on the admin socket. */
void node_admin_handle(node_t *self, uint64_t now);
/* admin.c: a Reply arrived from another node (for a pending admin request). */
void node_admin_on_reply(node_t *self, const Tongban__Reply *r);
/* admin.c: gives up on a pending request after its deadline. */
void node_admin_timer(node_t *self, uint64_t now);
/* node.c: sends a Query to another node through the hub; returns its id. */
uint64_t node_send_query(node_t *self, const char *dest, const char *kind, const char *body);
/* node.c: answers another node's Query q through the hub. */
void node_send_reply(node_t *self, const Tongban__Query *q, Tongban__ReplyStatus status, const char *body);
/* node.c: the PostgreSQL connection broke during `what`: close it, log,
 * reconnect later (PG_RETRY_MS). */
void node_store_lost(node_t *self, const char *what, const char *err);
/* node.c: sends f to the hub (DONTWAIT: dropped when not connected). */
void node_send_frame(node_t *self, const Tongban__Frame *f);
/* node.c: the directory entry whose certificate has key_id, or NULL. */
const dir_t *node_dir_by_key_id(const node_t *self, const char *key_id);
/* node.c: handles one frame from the hub: held (moved from, closed here),
 * or the next one received when held is NULL. */
void node_on_dealer_msg(node_t *self, zmq_msg_t *held, uint64_t now);

/* node_receive.c: checks a delivery (a SignedBatch's bytes) against the
 * directory: decodes, finds the signer, checks it is not revoked, verifies
 * the signature and that the batch is for this node (or a topic) with a seq
 * PostgreSQL can hold. Returns NULL with *sbp and *bp set (the caller frees
 * both), or why it is refused (a constant, or err) with both NULL. *signer
 * is the directory's id of the signing key, NULL when unknown (valid until
 * the directory changes). Logs and counts nothing. */
const char *node_check_delivery(node_t *self, const uint8_t *raw, size_t raw_len, Tongban__SignedBatch **sbp,
                                Tongban__Batch **bp, const char **signer, char *err, size_t errlen);
/* node_receive.c: counts and logs one item of tb_store_apply_batches that
 * succeeded (it->rc == TB_OK: applied now, or a duplicate) and took seconds. */
void node_account_apply(node_t *self, const Tongban__Batch *b, const tb_apply_item_t *it, double seconds);
/* node_receive.c: handles a Deliver from the hub (hub_seq, the signed batch
 * bytes exactly as journaled), with those waiting behind it as one group:
 * verified, applied in one transaction, each acked after the commit. */
void node_on_deliver(node_t *self, uint64_t hub_seq, const uint8_t *raw, size_t raw_len);

/* refused.c: parks a delivery refused for why (one INSERT into
 * tongban.refused_deliveries, the bytes verbatim), logs event=delivery_parked
 * and counts it. Returns 0 when parked (the caller acks it now), -1 when not
 * (PostgreSQL unavailable: the store is dropped; the hub redelivers it). */
int node_park_delivery(node_t *self, uint64_t hub_seq, const uint8_t *raw, size_t raw_len, const char *signer,
                       const char *why);
/* refused.c: the directory gained a signer: the deliveries parked so far
 * as REFUSED_UNKNOWN_SIGNER become due for a retry (the later ones were
 * checked against the new directory already). */
void node_refused_directory_grew(node_t *self);
/* refused.c: one step of that retry: up to REFUSED_RETRY_STEP of them,
 * re-verified and applied where they now pass. */
void node_refused_timer(node_t *self);
/* refused.c: the operator's retry of parked delivery id (tbctl node
 * retry-refused): re-verified against the current directory and applied.
 * TB_OK: applied (or already applied), the row deleted; TB_ERR_REFUSED:
 * still refused, kept with the new reason; TB_ERR_NOTFOUND; others: the
 * database failed. msg says what happened (one line). */
tb_err_t node_refused_retry(node_t *self, int64_t id, char *msg, size_t msglen);

#endif
