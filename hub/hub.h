/* hub.h -- the tongban-hub event loop: CURVE-authenticated ROUTER, batch
 * verification and ACLs, a durable journal (ack after fsync), per-node
 * delivery cursors with a window of batches in flight, topics, revocation
 * and the operator's admin channel.
 */
#ifndef TB_HUB_H
#define TB_HUB_H

#include <signal.h>
#include <tongban/tongban.h>

#include "config.h"

typedef struct hub hub_t;

/* Builds the hub from cfg (loaded from cfg_path; both must outlive the hub):
 * loads the registry (every node certificate must be issued by the CA and
 * name its node), opens and recovers the journal and the cursors in
 * data_dir, binds the ZAP handler, the ROUTER and the admin socket. On
 * error err names the file, journal offset or endpoint. */
tb_err_t hub_new(const tb_hub_config_t *cfg, const char *cfg_path, hub_t **out, char *err,
                 size_t errlen);

/* Runs until *stop becomes non-zero; reloads the registry whenever *reload
 * is set (and clears it). Returns TB_OK on a clean stop (journal synced,
 * cursors saved). */
tb_err_t hub_run(hub_t *self, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload);

void hub_destroy(hub_t **self);

/* Counters, for status and tests. */
typedef struct {
    unsigned long batches_in, records_in, batches_out, acks_out, duplicates;
    unsigned long rejected[16];          /* by Tongban__NackReason */
    unsigned long zap_denied, malformed_frames, syncs;
    unsigned long loop_stalls;           /* loop turns of a second or more (loop_stalled) */
} hub_stats_t;
void hub_get_stats(const hub_t *self, hub_stats_t *out);

#endif
