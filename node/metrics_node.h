/* metrics_node.h -- the node's Prometheus metrics and /healthz, served on
 * http.listen (common/httpd.h) from snapshots the node's loop publishes.
 *
 * The loop owns a node_metrics_t: it reports the events that node_stats_t
 * does not break down (Nacks by reason, apply latency) as they happen, and
 * hands its stats and a few gauges to node_metrics_tick() from its timer,
 * which renders and publishes only when a snapshot is due. Everything runs
 * on the loop's thread; the HTTP threads only copy the published text.
 *
 * Metrics (counters are set from node_stats_t unless said otherwise):
 *   tongban_node_batches_sent_total        batches cut, signed and queued for the hub
 *   tongban_node_records_sent_total        entries in those batches
 *   tongban_node_acks_total                Acks received from the hub
 *   tongban_node_nacks_total{reason}       Nacks received, by reason (node_metrics_nack)
 *   tongban_node_batches_applied_total     deliveries applied in PostgreSQL
 *   tongban_node_records_applied_total     entries applied
 *   tongban_node_duplicates_total          deliveries already applied (inbox), skipped
 *   tongban_node_rejected_in_total         deliveries refused (signature, signer, address, apply error)
 *   tongban_node_deliveries_parked_total   refused deliveries parked in tongban.refused_deliveries and acked
 *   tongban_node_parked_applied_total      parked deliveries applied by a retry and removed
 *   tongban_node_pg_errors_total           PostgreSQL errors
 *   tongban_node_outbox_unacked_batches    gauge: signed batches awaiting the hub's Ack
 *   tongban_node_hub_connected             gauge: 1 if welcomed by the hub
 *   tongban_node_pg_connected              gauge: 1 if connected to PostgreSQL
 *   tongban_node_hub_failovers_total       moves to the next hub endpoint (node_gauges_t:
 *                                          the count lives in the loop, not node_stats_t)
 *   tongban_node_apply_seconds             histogram: time to apply one delivery (node_metrics_apply)
 *   tongban_node_cert_days_left            gauge: days until this node's certificate expires
 *   tongban_node_pruned_rows_total{table}  rows deleted by the retention housekeeping (node_gauges_t:
 *                                          its counters, housekeep.h)
 *   tongban_node_housekeeping_errors_total housekeeping statements that failed (likewise)
 *   process_start_time_seconds             gauge
 *   tongban_node_build_info{version,node}  gauge, always 1
 * /healthz: 200 "ok" when PostgreSQL is connected and the hub has welcomed
 * the node, else 503 naming what is missing.
 */
#ifndef TB_METRICS_NODE_H
#define TB_METRICS_NODE_H

#include <stddef.h>
#include <tongban/tongban.h>

#include "config.h"
#include "crypto.h"
#include "housekeep.h"
#include "metrics.h"              /* tb_metrics_now() */
#include "node.h"

typedef struct node_metrics node_metrics_t;

/* What the loop knows now, besides node_stats_t. */
typedef struct {
    int hub_connected;            /* welcomed by the hub (node->welcomed) */
    int pg_connected;             /* the store is open (node->store != NULL) */
    size_t outbox_unacked;        /* node->npend */
    const tb_cert_t *cert;        /* this node's certificate, NULL: not shown */
    unsigned long hub_failovers;  /* counter: moves to the next hub endpoint (node->hub_failovers) */
    const tb_housekeep_t *housekeep;  /* its counters (tb_housekeep_counters); NULL: shown as 0 */
} node_gauges_t;

/* Creates the registry and, when cfg->http_listen is set, starts the HTTP
 * endpoint (logging event=http_listening). Returns TB_OK, TB_ERR_CONFIG
 * (http.listen unparsable), TB_ERR_IO (cannot bind; err says where and why)
 * or TB_ERR_NOMEM. */
tb_err_t node_metrics_new(const tb_node_config_t *cfg, node_metrics_t **out, char *err, size_t errlen);

/* Stops the endpoint (joins its threads), frees, nulls *self; NULL-safe. */
void node_metrics_destroy(node_metrics_t **self);

/* A Nack arrived; reason as tb_nack_reason_name() names it. NULL-safe. */
void node_metrics_nack(node_metrics_t *self, const char *reason);

/* A delivery was applied in seconds (tb_metrics_now() differences). NULL-safe. */
void node_metrics_apply(node_metrics_t *self, double seconds);

/* From the loop's timer: renders and publishes a snapshot when the endpoint
 * wants one (a scrape is waiting, or a second has passed); otherwise
 * returns at once. NULL-safe; does nothing without an endpoint. */
void node_metrics_tick(node_metrics_t *self, const node_stats_t *s, const node_gauges_t *g);

/* Renders the metrics for s and g as Prometheus text (*text malloc'd; used
 * by node_metrics_tick and by tests). Returns TB_OK or TB_ERR_NOMEM. */
tb_err_t node_metrics_render(node_metrics_t *self, const node_stats_t *s, const node_gauges_t *g,
                             char **text, size_t *len);

/* The /healthz verdict for g: 1 if healthy, else 0 with why filled. */
int node_metrics_health(const node_gauges_t *g, char *why, size_t whylen);

/* The port the endpoint is bound to, 0 without one. */
int node_metrics_port(const node_metrics_t *self);

#endif
