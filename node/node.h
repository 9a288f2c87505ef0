/* node.h -- the tongban-node event loop: capture from the local PostgreSQL
 * outbox, batch + sign + send to the hub with a window of batches in flight,
 * verify + apply what the hub delivers, ack both ways.
 */
#ifndef TB_NODE_H
#define TB_NODE_H

#include <signal.h>
#include <tongban/tongban.h>

#include "config.h"

typedef struct node node_t;

/* Builds the node: loads and cross-checks key, certificate and CA (the
 * certificate must be issued by the CA, match the key and name cfg->id),
 * opens the PostgreSQL store (migrating it) and installs the routes, then
 * connects to the hub. On error err says what and where (file, conninfo
 * host, endpoint). cfg must outlive the node. */
tb_err_t node_new(const tb_node_config_t *cfg, node_t **out, char *err, size_t errlen);

/* Runs until *stop becomes non-zero; re-reads cfg_path whenever *reload is
 * set (SIGHUP; may be NULL). Returns TB_OK on a clean stop,
 * TB_ERR_UNAVAILABLE if the hub never answered within the connect timeout. */
tb_err_t node_run(node_t *self, volatile sig_atomic_t *stop, volatile sig_atomic_t *reload,
                  const char *cfg_path);

/* Re-reads the configuration file: applies routes, batch.* and log.* now,
 * and logs which changed settings need a restart (keys, hub, postgresql,
 * node.id, node.admin, http.listen). Errors leave the running config as is. */
tb_err_t node_reload(node_t *self, const char *cfg_path, char *err, size_t errlen);

void node_destroy(node_t **self);

typedef struct {
    unsigned long batches_sent, records_sent, acks, nacks;
    unsigned long batches_applied, records_applied, duplicates, rejected_in;
    unsigned long pg_errors, dead_letters;
    unsigned long deliveries_parked;   /* refused deliveries parked in tongban.refused_deliveries and acked */
    unsigned long parked_applied;      /* parked deliveries applied by a retry (or found already applied) */
    unsigned long outbox_compactions;  /* empty outbox truncated (tb_store_outbox_compact) */
    unsigned long outbox_vacuums;      /* VACUUMs of the outbox started (tb_store_vacuum_start) */
    unsigned long long apply_ms_total;
} node_stats_t;
void node_get_stats(const node_t *self, node_stats_t *out);

#endif
