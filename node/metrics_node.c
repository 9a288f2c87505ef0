/* metrics_node.c -- the node's metrics registry, its rendering from
 * node_stats_t plus the loop's gauges, and the /metrics + /healthz endpoint
 * (see metrics_node.h for the names and the threading). */
#include "metrics_node.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "wire.h"

static const char *comp = "node";

enum {
    M_BATCHES_SENT, M_RECORDS_SENT, M_ACKS, M_NACKS, M_BATCHES_APPLIED, M_RECORDS_APPLIED,
    M_DUPLICATES, M_REJECTED_IN, M_PG_ERRORS, M_OUTBOX_UNACKED, M_HUB_CONNECTED, M_PG_CONNECTED,
    M_APPLY_SECONDS, M_CERT_DAYS, M_START_TIME, M_BUILD_INFO, M_HUB_FAILOVERS, M_DELIVERIES_PARKED,
    M_PARKED_APPLIED, M_PRUNED_ROWS, M_HOUSEKEEP_ERRORS, M_OUTBOX_COMPACTIONS, M_OUTBOX_VACUUMS, M_COUNT
};

static const struct {
    const char *name;
    tb_metric_kind_t kind;
    const char *help;
} defs[M_COUNT] = {
    [M_BATCHES_SENT] = { "tongban_node_batches_sent_total", TB_METRIC_COUNTER,
                         "Batches cut from the outbox, signed, stored and queued for the hub." },
    [M_RECORDS_SENT] = { "tongban_node_records_sent_total", TB_METRIC_COUNTER, "Entries in the batches sent." },
    [M_ACKS] = { "tongban_node_acks_total", TB_METRIC_COUNTER, "Acks received from the hub." },
    [M_NACKS] = { "tongban_node_nacks_total", TB_METRIC_COUNTER, "Nacks received from the hub, by reason." },
    [M_BATCHES_APPLIED] = { "tongban_node_batches_applied_total", TB_METRIC_COUNTER,
                            "Delivered batches applied in PostgreSQL." },
    [M_RECORDS_APPLIED] = { "tongban_node_records_applied_total", TB_METRIC_COUNTER,
                            "Entries of the delivered batches applied." },
    [M_DUPLICATES] = { "tongban_node_duplicates_total", TB_METRIC_COUNTER,
                       "Deliveries already applied before (inbox), acked and skipped." },
    [M_REJECTED_IN] = { "tongban_node_rejected_in_total", TB_METRIC_COUNTER,
                        "Deliveries refused: bad signature, unknown or revoked signer, misaddressed, apply error." },
    [M_PG_ERRORS] = { "tongban_node_pg_errors_total", TB_METRIC_COUNTER, "PostgreSQL errors." },
    [M_OUTBOX_UNACKED] = { "tongban_node_outbox_unacked_batches", TB_METRIC_GAUGE,
                           "Signed batches waiting for the hub's Ack." },
    [M_HUB_CONNECTED] = { "tongban_node_hub_connected", TB_METRIC_GAUGE, "1 if the hub has welcomed this node." },
    [M_PG_CONNECTED] = { "tongban_node_pg_connected", TB_METRIC_GAUGE, "1 if connected to PostgreSQL." },
    [M_APPLY_SECONDS] = { "tongban_node_apply_seconds", TB_METRIC_HISTOGRAM,
                          "Time to verify-and-apply one delivered batch in PostgreSQL." },
    [M_CERT_DAYS] = { "tongban_node_cert_days_left", TB_METRIC_GAUGE,
                      "Days until this node's certificate expires (negative: expired)." },
    [M_START_TIME] = { "process_start_time_seconds", TB_METRIC_GAUGE,
                       "Start time of the process since unix epoch in seconds." },
    [M_BUILD_INFO] = { "tongban_node_build_info", TB_METRIC_GAUGE, "Version of the node; the value is 1." },
    [M_HUB_FAILOVERS] = { "tongban_node_hub_failovers_total", TB_METRIC_COUNTER,
                          "Moves to the next hub endpoint (hub.endpoints) after the hub stopped answering." },
    [M_DELIVERIES_PARKED] = { "tongban_node_deliveries_parked_total", TB_METRIC_COUNTER,
                              "Refused deliveries parked in tongban.refused_deliveries and acked (tbctl node refused)." },
    [M_PARKED_APPLIED] = { "tongban_node_parked_applied_total", TB_METRIC_COUNTER,
                           "Parked deliveries applied by a retry (or found already applied) and removed." },
    [M_PRUNED_ROWS] = { "tongban_node_pruned_rows_total", TB_METRIC_COUNTER,
                        "Rows deleted by the retention housekeeping (retention.* in node.yaml), by table." },
    [M_HOUSEKEEP_ERRORS] = { "tongban_node_housekeeping_errors_total", TB_METRIC_COUNTER,
                             "Housekeeping statements that failed (the pass is tried again an interval later)." },
    [M_OUTBOX_COMPACTIONS] = { "tongban_node_outbox_compactions_total", TB_METRIC_COUNTER,
                               "Times the empty outbox was truncated to drop the dead rows of taken changes." },
    [M_OUTBOX_VACUUMS] = { "tongban_node_outbox_vacuums_total", TB_METRIC_COUNTER,
                           "VACUUMs of the outbox and signed batches started by the node during a sustained load." },
};

static const double apply_bounds[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };

#define NREASONS 16

struct node_metrics {
    tb_metrics_t *m;
    tb_httpd_t *httpd;
    char id[TB_ID_MAX + 1];
    double started;               /* unix seconds */
};

tb_err_t node_metrics_new(const tb_node_config_t *cfg, node_metrics_t **out, char *err, size_t errlen)
{
    char host[64], l[160];
    int port = 0;
    struct timeval tv;
    tb_err_t rc = TB_ERR_NOMEM;
    node_metrics_t *self = calloc(1, sizeof *self);
    if (!self) return TB_ERR_NOMEM;
    snprintf(self->id, sizeof self->id, "%s", cfg->id);
    gettimeofday(&tv, NULL);
    self->started = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
    if ((rc = tb_metrics_new(&self->m)) != TB_OK) goto fail;
    for (int i = 0; i < M_COUNT; i++) {
        int id = -1;
        rc = defs[i].kind == TB_METRIC_HISTOGRAM
                 ? tb_metrics_declare_histogram(self->m, defs[i].name, defs[i].help, apply_bounds,
                                                sizeof apply_bounds / sizeof *apply_bounds, &id)
                 : tb_metrics_declare(self->m, defs[i].name, defs[i].kind, defs[i].help, &id);
        if (rc != TB_OK) goto fail;
        if (id != i) {
            rc = TB_ERR_INVALID;
            goto fail;
        }
    }
    /* Every series exists from the start, at zero. */
    for (int r = 1; r < NREASONS; r++) {
        const char *name = tb_nack_reason_name((Tongban__NackReason)r);
        if (strcmp(name, "unspecified") == 0) continue;
        tb_metrics_labels(l, sizeof l, "reason", name, (char *)NULL);
        if ((rc = tb_metrics_touch(self->m, M_NACKS, l)) != TB_OK) goto fail;
    }
    if ((rc = tb_metrics_touch(self->m, M_APPLY_SECONDS, NULL)) != TB_OK) goto fail;
    for (int t = 0; t < TB_HK_TABLES; t++) {
        tb_metrics_labels(l, sizeof l, "table", tb_housekeep_table_name(t), (char *)NULL);
        if ((rc = tb_metrics_touch(self->m, M_PRUNED_ROWS, l)) != TB_OK) goto fail;
    }
    if ((rc = tb_metrics_touch(self->m, M_HOUSEKEEP_ERRORS, NULL)) != TB_OK) goto fail;
    if (cfg->http_listen[0]) {
        if (!tb_config_parse_http_listen(cfg->http_listen, host, sizeof host, &port)) {
            snprintf(err, errlen, "http.listen: expected HOST:PORT, got \"%s\"", cfg->http_listen);
            rc = TB_ERR_CONFIG;
            goto fail;
        }
        if ((rc = tb_httpd_new(host, port, NULL, &self->httpd, err, errlen)) != TB_OK) goto fail;
        tb_log(TB_LOG_INFO, comp, "http_listening", "node=%s http=%s port=%d paths=/metrics,/healthz", cfg->id,
               cfg->http_listen, tb_httpd_port(self->httpd));
    }
    *out = self;
    return TB_OK;
fail:
    node_metrics_destroy(&self);
    return rc;
}

void node_metrics_destroy(node_metrics_t **selfp)
{
    node_metrics_t *self = selfp ? *selfp : NULL;
    if (!self) return;
    tb_httpd_destroy(&self->httpd);
    tb_metrics_destroy(&self->m);
    free(self);
    *selfp = NULL;
}

void node_metrics_nack(node_metrics_t *self, const char *reason)
{
    char l[160];
    if (!self) return;
    if (tb_metrics_labels(l, sizeof l, "reason", reason ? reason : "unknown", (char *)NULL) == 0)
        tb_metrics_add(self->m, M_NACKS, l, 1);
}

void node_metrics_apply(node_metrics_t *self, double seconds)
{
    if (self) tb_metrics_observe(self->m, M_APPLY_SECONDS, NULL, seconds);
}

int node_metrics_health(const node_gauges_t *g, char *why, size_t whylen)
{
    if (!g->pg_connected && !g->hub_connected)
        snprintf(why, whylen, "postgresql not connected; hub not connected");
    else if (!g->pg_connected)
        snprintf(why, whylen, "postgresql not connected");
    else if (!g->hub_connected)
        snprintf(why, whylen, "hub not connected (no Welcome)");
    else
        snprintf(why, whylen, "ok");
    return g->pg_connected && g->hub_connected;
}

tb_err_t node_metrics_render(node_metrics_t *self, const node_stats_t *s, const node_gauges_t *g,
                             char **text, size_t *len)
{
    tb_metrics_t *m = self->m;
    tb_err_t rc = TB_OK;
    char l[200];
#define SET(id, labels, v) do { tb_err_t e_ = tb_metrics_set(m, id, labels, (double)(v)); if (e_ != TB_OK) rc = e_; } while (0)
    SET(M_BATCHES_SENT, NULL, s->batches_sent);
    SET(M_RECORDS_SENT, NULL, s->records_sent);
    SET(M_ACKS, NULL, s->acks);
    SET(M_BATCHES_APPLIED, NULL, s->batches_applied);
    SET(M_RECORDS_APPLIED, NULL, s->records_applied);
    SET(M_DUPLICATES, NULL, s->duplicates);
    SET(M_REJECTED_IN, NULL, s->rejected_in);
    SET(M_DELIVERIES_PARKED, NULL, s->deliveries_parked);
    SET(M_PARKED_APPLIED, NULL, s->parked_applied);
    SET(M_OUTBOX_COMPACTIONS, NULL, s->outbox_compactions);
    SET(M_OUTBOX_VACUUMS, NULL, s->outbox_vacuums);
    SET(M_PG_ERRORS, NULL, s->pg_errors);
    SET(M_OUTBOX_UNACKED, NULL, g->outbox_unacked);
    SET(M_HUB_CONNECTED, NULL, g->hub_connected != 0);
    SET(M_PG_CONNECTED, NULL, g->pg_connected != 0);
    SET(M_HUB_FAILOVERS, NULL, g->hub_failovers);
    if (g->cert) SET(M_CERT_DAYS, NULL, tb_cert_days_left(g->cert));
    if (g->housekeep) {
        tb_housekeep_counters_t hk;
        tb_housekeep_counters(g->housekeep, &hk);
        for (int t = 0; t < TB_HK_TABLES; t++) {
            tb_metrics_labels(l, sizeof l, "table", tb_housekeep_table_name(t), (char *)NULL);
            SET(M_PRUNED_ROWS, l, hk.pruned[t]);
        }
        SET(M_HOUSEKEEP_ERRORS, NULL, hk.errors);
    }
    SET(M_START_TIME, NULL, self->started);
    tb_metrics_labels(l, sizeof l, "version", TB_VERSION_STRING, "node", self->id, (char *)NULL);
    SET(M_BUILD_INFO, l, 1);
#undef SET
    if (rc != TB_OK) return rc;
    return tb_metrics_render(m, text, len);
}

void node_metrics_tick(node_metrics_t *self, const node_stats_t *s, const node_gauges_t *g)
{
    if (!self || !self->httpd || !tb_httpd_due(self->httpd)) return;
    char *text = NULL, why[160];
    size_t len = 0;
    tb_err_t rc = node_metrics_render(self, s, g, &text, &len);
    if (rc != TB_OK) {
        tb_log(TB_LOG_WARN, comp, "metrics_render_failed", "node=%s error=\"%s\"", self->id, tb_strerror(rc));
        return;                   /* the endpoint keeps the previous snapshot */
    }
    int ok = node_metrics_health(g, why, sizeof why);
    if (tb_httpd_publish(self->httpd, text, len, ok, why) != TB_OK)
        tb_log(TB_LOG_WARN, comp, "metrics_publish_failed", "node=%s error=\"%s\"", self->id,
               tb_strerror(TB_ERR_NOMEM));
    free(text);
}

int node_metrics_port(const node_metrics_t *self)
{
    return self ? tb_httpd_port(self->httpd) : 0;
}
