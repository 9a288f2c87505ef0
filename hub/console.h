/* console.h -- the operator's web console of the hub: the page (hub/console/,
 * compiled into the binary at build time), GET /api/status (the hub's
 * status JSON, docs/api-status.md) and the state behind them that the
 * status of the admin channel lacks: ten minutes of throughput samples for
 * the chart, and per node the time of its last refused batch and its recent
 * backlog, from which its health colour is derived.
 *
 * Everything here runs on the hub's loop thread: the HTTP threads only copy
 * the /api/status document the loop publishes (common/httpd.c).
 */
#ifndef TB_HUB_CONSOLE_H
#define TB_HUB_CONSOLE_H

#include <stddef.h>
#include <stdint.h>
#include <tongban/tongban.h>

#include "hub.h"
#include "jsonw.h"

/* Version of the /api/status document: raised only when a field changes
 * meaning or disappears (new fields do not raise it). */
#define HUB_STATUS_SCHEMA_VERSION 1

typedef struct hub_console hub_console_t;

/* One file of hub/console/, embedded by cmake/embed_console.cmake. */
typedef struct {
    const char *name;             /* file name, e.g. "index.html" */
    const unsigned char *data;
    size_t len;
} hub_console_asset_t;
extern const hub_console_asset_t hub_console_assets[];
extern const size_t hub_console_nassets;

/* Serves the page (index.html at "/", every other file at "/NAME") and
 * declares /api/status on the hub's HTTP endpoint. Returns TB_OK (also when
 * there is no endpoint) or the httpd error. */
tb_err_t hub_console_attach(hub_t *self);

/* From the loop's timer (every 100 ms): notes refused batches per node and,
 * every 5 s, takes a throughput sample and each node's backlog. */
void hub_console_tick(hub_t *self, uint64_t now_ms);

/* Renders /api/status and hands it to the HTTP endpoint (before its
 * snapshot is published). Returns TB_OK, TB_ERR_NOMEM or the httpd error. */
tb_err_t hub_console_publish(hub_t *self);

/* Writes the console's fields of node i (self->peers[i]) into the open node
 * object: "health", "health_reasons", "last_reject_ms_ago". */
void hub_console_node_json(hub_t *self, size_t i, int64_t now_wall_ms, jsonw_t *w);

/* Writes "history": the throughput samples, oldest first. */
void hub_console_history_json(hub_t *self, jsonw_t *w);

/* Frees the console's state, nulls *self; NULL-safe. */
void hub_console_destroy(hub_console_t **self);

#endif
