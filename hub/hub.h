/* hub.h -- the tongban-hub event loop: CURVE-authenticated ROUTER, batch
 * verification and forwarding between registered nodes.
 *
 * This release keeps its queues in memory and acknowledges a batch to its
 * sender only after the destination node has applied it (DeliverAck), so a
 * hub crash loses nothing acknowledged: unacked batches stay in the
 * sender's database and are resent. The durable journal comes with the
 * hub-storage issue.
 */
#ifndef TB_HUB_H
#define TB_HUB_H

#include <signal.h>
#include <tongban/tongban.h>

#include "config.h"

typedef struct hub hub_t;

/* Builds the hub: loads the CA, every registered node's certificate (each
 * must be issued by the CA, with CN == its id) and the CURVE secret, binds
 * the ZAP handler and the ROUTER. On error err names the file or endpoint. */
tb_err_t hub_new(const tb_hub_config_t *cfg, hub_t **out, char *err, size_t errlen);

/* Runs until *stop becomes non-zero. Returns TB_OK on a clean stop. */
tb_err_t hub_run(hub_t *self, volatile sig_atomic_t *stop);

void hub_destroy(hub_t **self);

/* Counters, for status and tests. */
typedef struct {
    unsigned long batches_in, records_in, batches_out, acks_out;
    unsigned long rejected[16];          /* by Tongban__NackReason */
    unsigned long zap_denied, malformed_frames;
} hub_stats_t;
void hub_get_stats(const hub_t *self, hub_stats_t *out);

#endif
