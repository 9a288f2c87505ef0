/* api.h -- the node's client API server (docs/client-api.md): a ZeroMQ
 * ROUTER on api.listen that answers libtongban / tbctl.
 *
 * Framing: the client is a DEALER and sends one frame, a packed ApiRequest
 * (proto/api.proto); the ROUTER sees [routing id][ApiRequest] and answers
 * [routing id][ApiReply] with the request's id. A REQ client's empty
 * delimiter ([routing id][""][ApiRequest]) is accepted too and echoed.
 * Anything else is counted and logged; a request whose id can be read is
 * answered TB_ERR_PROTO.
 *
 * ipc:// (the default, next to the admin socket) is created mode 0660: the
 * node's group may use it. tcp:// is served with CURVE under the node's own
 * key pair (keys.curve_secret / keys.curve_public) and a ZAP handler that
 * admits only the Z85 public keys listed in api.clients.
 *
 * Everything runs in the node's loop: requests that must wait (licence
 * verification at the issuer, events.next with wait_ms) are parked and
 * answered later from api_on_reply / api_timer; the loop never blocks.
 */
#ifndef TB_API_H
#define TB_API_H

#include <stddef.h>
#include <stdint.h>
#include <tongban/tongban.h>
#include <zmq.h>

#include "config.h"
#include "node.h"
#include "tongban.pb-c.h"

#define API_MAX_MSG (16L << 20)     /* ZMQ_MAXMSGSIZE of the API socket */
#define API_MAX_PARKED 256          /* requests waiting at once */
#define API_BUDGET 32               /* requests handled per loop turn at most */
#define API_EVENTS_RECHECK_MS 100   /* a waiting events.next looks again this often */
#define API_VERIFY_TIMEOUT_MS 3000  /* licence.verify's default timeout_ms at the issuer */

typedef struct api api_t;

typedef struct {
    unsigned long requests;              /* requests answered or parked */
    unsigned long by_status[TB_ERR__COUNT]; /* replies sent, by status (0 = ok) */
    unsigned long malformed;             /* undecodable requests / wrong framing */
    unsigned long parked_timeouts;       /* parked licence.verify past its deadline */
    unsigned long reply_failed;          /* the client was gone when its reply was ready */
    unsigned long zap_denied;            /* tcp:// connections with a key not in api.clients */
    unsigned long domain_refused;        /* received tb.* entries refused by the entry check */
    unsigned long queries_answered;      /* licence_status queries answered for other nodes */
    size_t parked;                       /* waiting now */
} api_stats_t;

/* Binds the API socket of node (its config, context and keys): tcp://
 * also reads api.clients ("FILE:LINE: problem" in err) and binds the ZAP
 * handler. TB_OK or TB_ERR_CONFIG / TB_ERR_IO with err. */
tb_err_t api_new(node_t *node, api_t **out, char *err, size_t errlen);
void api_destroy(api_t **self);

/* Fills up to 2 poll items (the API socket, the ZAP socket) and returns
 * how many; api_on_poll handles their events (at most API_BUDGET requests
 * or DRAIN_BUDGET_MS; api_backlog() is then 1 and the loop should poll
 * again without waiting). */
int api_poll_items(api_t *self, zmq_pollitem_t *items);
void api_on_poll(api_t *self, const zmq_pollitem_t *items, int n, uint64_t now);
int api_backlog(const api_t *self);

/* 1 once after requests used the node's database connection: the loop
 * should drain its notifications (NOTIFYs that arrived meanwhile, our own
 * writes' included, were read by libpq and will not wake the poll). */
int api_used_db(api_t *self);

/* A Reply from another node: 1 if it answered a parked request (consumed). */
int api_on_reply(api_t *self, const Tongban__Reply *r, uint64_t now);
/* Another node's Query "licence_status": answered here (as the issuer). */
void api_on_query(api_t *self, const Tongban__Query *q);
/* Something was applied: waiting events.next requests look again now. */
void api_wake(api_t *self);
/* Deadlines and rechecks of parked requests. */
void api_timer(api_t *self, uint64_t now);

/* Re-reads api.clients from cfg (tcp:// only; api.listen itself needs a
 * restart). On error the old list stays and err says why. */
tb_err_t api_reload(api_t *self, const tb_node_config_t *cfg, char *err, size_t errlen);

void api_get_stats(const api_t *self, api_stats_t *out);

/* The store's entry check (tb_entry_check_fn) for received tb.* entries;
 * arg is the node_t. See domain_check_entry. */
int api_entry_check(void *arg, const char *sender, const Tongban__RecordUpsert *u, const Tongban__RecordDelete *d,
                    char *why, size_t whylen);

#endif
