/* metrics_hub.c -- the hub's Prometheus metrics and health verdict, rendered
 * from its state by the loop thread and handed to the HTTP endpoint
 * (common/httpd.c) as a snapshot together with the console's /api/status
 * (console.c); no hub state is touched by another thread. Starting the
 * endpoint applies http.token and http.tls_cert / http.tls_key.
 *
 * Counters whose source of truth is hub_stats_t or peer_t are *set* from it
 * at each render (they only ever grow there), gauges are set from the
 * current state. Per-node series cover every node the hub has known since
 * it started (a node removed by a reload keeps its counters).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "crypto.h"
#include "hub_internal.h"
#include "log.h"
#include "wire.h"

static const char *comp = "hub";

/* Families, in rendering order; the enum is the registry id. */
enum {
    M_BATCHES_IN, M_RECORDS_IN, M_BATCHES_OUT, M_BYTES_OUT, M_REJECTED, M_DUPLICATES,
    M_REFUSED, M_MALFORMED, M_ACKS_OUT, M_SYNCS,
    M_JOURNAL_BYTES, M_JOURNAL_SEGMENTS, M_JOURNAL_LAST_SEQ, M_JOURNAL_DURABLE_SEQ, M_STORAGE_FAILED,
    M_ONLINE, M_REVOKED, M_BACKLOG_BATCHES, M_BACKLOG_BYTES, M_IN_FLIGHT, M_LAG, M_CERT_DAYS,
    M_START_TIME, M_BUILD_INFO, M_COUNT
};

static const struct {
    const char *name;
    tb_metric_kind_t kind;
    const char *help;
} defs[M_COUNT] = {
    [M_BATCHES_IN] = { "tongban_hub_batches_in_total", TB_METRIC_COUNTER,
                       "Batches accepted from the node (signature, sender and ACL checked, journaled)." },
    [M_RECORDS_IN] = { "tongban_hub_records_in_total", TB_METRIC_COUNTER,
                       "Entries in the batches accepted from the node." },
    [M_BATCHES_OUT] = { "tongban_hub_batches_out_total", TB_METRIC_COUNTER,
                        "Batches delivered to the node, redeliveries included." },
    [M_BYTES_OUT] = { "tongban_hub_bytes_out_total", TB_METRIC_COUNTER,
                      "Bytes of the Deliver frames sent to the node." },
    [M_REJECTED] = { "tongban_hub_rejected_total", TB_METRIC_COUNTER,
                     "Batches and frames refused with a Nack, by reason." },
    [M_DUPLICATES] = { "tongban_hub_duplicates_total", TB_METRIC_COUNTER,
                       "Batches received again after they were accepted (acked again, stored once)." },
    [M_REFUSED] = { "tongban_hub_connections_refused_total", TB_METRIC_COUNTER,
                    "Connections refused by the ZAP handler (CURVE key not registered, or revoked)." },
    [M_MALFORMED] = { "tongban_hub_malformed_frames_total", TB_METRIC_COUNTER,
                      "Frames that could not be decoded or were not expected." },
    [M_ACKS_OUT] = { "tongban_hub_acks_out_total", TB_METRIC_COUNTER,
                     "Acks sent to senders once their batches were durable." },
    [M_SYNCS] = { "tongban_hub_journal_syncs_total", TB_METRIC_COUNTER,
                  "Journal fsyncs (one group commit per receive burst)." },
    [M_JOURNAL_BYTES] = { "tongban_hub_journal_bytes", TB_METRIC_GAUGE, "Bytes in the journal's segments." },
    [M_JOURNAL_SEGMENTS] = { "tongban_hub_journal_segments", TB_METRIC_GAUGE, "Journal segment files." },
    [M_JOURNAL_LAST_SEQ] = { "tongban_hub_journal_last_seq", TB_METRIC_GAUGE,
                             "hub_seq of the last batch journaled." },
    [M_JOURNAL_DURABLE_SEQ] = { "tongban_hub_journal_durable_seq", TB_METRIC_GAUGE,
                                "hub_seq up to which the journal is fsynced." },
    [M_STORAGE_FAILED] = { "tongban_hub_storage_failed", TB_METRIC_GAUGE,
                           "1 while the journal refuses writes (batches are refused with reason storage)." },
    [M_ONLINE] = { "tongban_hub_node_online", TB_METRIC_GAUGE, "1 if the node is connected." },
    [M_REVOKED] = { "tongban_hub_node_revoked", TB_METRIC_GAUGE,
                    "1 if the node is revoked or no longer in the registry." },
    [M_BACKLOG_BATCHES] = { "tongban_hub_node_backlog_batches", TB_METRIC_GAUGE,
                            "Journaled batches for the node that it has not acked yet." },
    [M_BACKLOG_BYTES] = { "tongban_hub_node_backlog_bytes", TB_METRIC_GAUGE,
                          "Bytes of the journaled batches for the node that it has not acked yet." },
    [M_IN_FLIGHT] = { "tongban_hub_node_in_flight", TB_METRIC_GAUGE,
                      "Batches delivered to the node and awaiting its ack (the window)." },
    [M_LAG] = { "tongban_hub_node_lag_hub_seq", TB_METRIC_GAUGE,
                "hub_seq positions between the journal's end and the node's delivery cursor (batches for "
                "others included: backlog_batches counts only the node's own)." },
    [M_CERT_DAYS] = { "tongban_hub_node_cert_days_left", TB_METRIC_GAUGE,
                      "Days until the node's certificate expires (negative: expired)." },
    [M_START_TIME] = { "process_start_time_seconds", TB_METRIC_GAUGE,
                       "Start time of the process since unix epoch in seconds." },
    [M_BUILD_INFO] = { "tongban_hub_build_info", TB_METRIC_GAUGE, "Version of the hub; the value is 1." },
};

#define NREASONS 16                 /* hub_stats_t.rejected[] */

static tb_err_t declare_all(tb_metrics_t *m)
{
    for (int i = 0; i < M_COUNT; i++) {
        int id;
        tb_err_t rc = tb_metrics_declare(m, defs[i].name, defs[i].kind, defs[i].help, &id);
        if (rc != TB_OK) return rc;
        if (id != i) return TB_ERR_INVALID;
    }
    return TB_OK;
}

int hub_metrics_health(const hub_t *self, char *why, size_t whylen)
{
    if (self->fatal) {
        snprintf(why, whylen, "journal sync failed: the hub is stopping");
        return 0;
    }
    if (self->storage_failed) {
        snprintf(why, whylen, "journal not writable: batches are refused (reason storage)");
        return 0;
    }
    if (self->pg && !self->active) {
        snprintf(why, whylen, "standby: waiting for the lock (another hub is active)");
        return 1;
    }
    snprintf(why, whylen, "ok");
    return 1;
}

/* Sets every family from the hub's state. Returns TB_OK or TB_ERR_NOMEM. */
static tb_err_t update(hub_t *self)
{
    tb_metrics_t *m = self->metrics;
    tb_err_t rc = TB_OK;
    char l[160];
#define SET(id, labels, v) do { tb_err_t e_ = tb_metrics_set(m, id, labels, (double)(v)); if (e_ != TB_OK) rc = e_; } while (0)
    for (size_t i = 0; i < self->npeers; i++) {
        const peer_t *p = &self->peers[i];
        uint64_t last = hubstore_last_seq(self->store);
        tb_metrics_labels(l, sizeof l, "node", p->id, (char *)NULL);
        SET(M_BATCHES_IN, l, p->batches_in);
        SET(M_RECORDS_IN, l, p->records_in);
        SET(M_BATCHES_OUT, l, p->batches_out);
        SET(M_BYTES_OUT, l, p->bytes_out);
        SET(M_ONLINE, l, p->online);
        SET(M_REVOKED, l, !p->reg || p->reg->revoked_ms != 0);
        SET(M_BACKLOG_BATCHES, l, p->backlog_batches);
        SET(M_BACKLOG_BYTES, l, p->backlog_bytes);
        SET(M_IN_FLIGHT, l, p->ninflight);
        SET(M_LAG, l, last > p->cursor ? last - p->cursor : 0);
        if (p->reg) SET(M_CERT_DAYS, l, tb_cert_days_left(p->reg->cert));
    }
    for (int r = 1; r < NREASONS; r++) {
        const char *name = tb_nack_reason_name((Tongban__NackReason)r);
        if (strcmp(name, "unspecified") == 0) continue;
        tb_metrics_labels(l, sizeof l, "reason", name, (char *)NULL);
        SET(M_REJECTED, l, self->stats.rejected[r]);
    }
    SET(M_DUPLICATES, NULL, self->stats.duplicates);
    SET(M_REFUSED, NULL, self->stats.zap_denied);
    SET(M_MALFORMED, NULL, self->stats.malformed_frames);
    SET(M_ACKS_OUT, NULL, self->stats.acks_out);
    SET(M_SYNCS, NULL, self->stats.syncs);
    SET(M_JOURNAL_BYTES, NULL, hubstore_bytes(self->store));
    SET(M_JOURNAL_SEGMENTS, NULL, hubstore_segments(self->store));
    SET(M_JOURNAL_LAST_SEQ, NULL, hubstore_last_seq(self->store));
    SET(M_JOURNAL_DURABLE_SEQ, NULL, hubstore_durable_seq(self->store));
    SET(M_STORAGE_FAILED, NULL, self->storage_failed);
    SET(M_START_TIME, NULL, (double)self->started_wall_ms / 1000.0);
    tb_metrics_labels(l, sizeof l, "version", TB_VERSION_STRING, "hub", self->cfg->id, (char *)NULL);
    SET(M_BUILD_INFO, l, 1);
#undef SET
    return rc;
}

tb_err_t hub_metrics_render(hub_t *self, char **text, size_t *len)
{
    tb_err_t rc;
    if (!self->metrics) {
        if ((rc = tb_metrics_new(&self->metrics)) != TB_OK) return rc;
        if ((rc = declare_all(self->metrics)) != TB_OK) {
            tb_metrics_destroy(&self->metrics);
            return rc;
        }
    }
    if ((rc = update(self)) != TB_OK) return rc;
    return tb_metrics_render(self->metrics, text, len);
}

/* Reads a PEM file (at most 1 MiB) into *out (NUL-terminated, caller frees).
 * Returns TB_OK or an error with err filled. */
static tb_err_t read_pem(const char *key, const char *path, char **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0;
    if (!f) {
        snprintf(err, errlen, "%s: cannot read %s: %s", key, path, strerror(errno));
        return TB_ERR_IO;
    }
    buf = malloc((1 << 20) + 1);
    if (buf) n = fread(buf, 1, 1 << 20, f);
    int bad = !buf || ferror(f) || !feof(f);
    fclose(f);
    if (bad || n == 0) {
        tb_err_t rc = buf ? TB_ERR_IO : TB_ERR_NOMEM;
        snprintf(err, errlen, "%s: %s: %s", key, path,
                 !buf ? "out of memory" : n == 0 ? "empty" : "larger than 1 MiB or unreadable");
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    return TB_OK;
}

tb_err_t hub_metrics_start(hub_t *self, char *err, size_t errlen)
{
    char host[64];
    int port = 0;
    char *cert = NULL, *key = NULL;
    const tb_hub_config_t *cfg = self->cfg;
    if (!cfg->http_listen[0]) return TB_OK;
    if (!tb_config_parse_http_listen(cfg->http_listen, host, sizeof host, &port)) {
        snprintf(err, errlen, "http.listen: expected HOST:PORT, got \"%s\"", cfg->http_listen);
        return TB_ERR_CONFIG;
    }
    int loopback = tb_config_loopback_host(host);
    if (!loopback && !cfg->http_token[0]) {        /* the configuration refuses it too */
        snprintf(err, errlen, "http.token: required when http.listen (%s) is not a loopback address",
                 cfg->http_listen);
        return TB_ERR_CONFIG;
    }
    tb_httpd_opts_t o;
    tb_httpd_opts_init(&o);
    o.token = cfg->http_token;
    tb_err_t rc = TB_OK;
    if (cfg->http_tls_cert[0]) {
        struct stat st;
        if ((rc = read_pem("http.tls_cert", cfg->http_tls_cert, &cert, err, errlen)) != TB_OK) goto done;
        if ((rc = read_pem("http.tls_key", cfg->http_tls_key, &key, err, errlen)) != TB_OK) goto done;
        if (stat(cfg->http_tls_key, &st) == 0 && (st.st_mode & 077))
            tb_log(TB_LOG_WARN, comp, "http_key_readable", "file=%s mode=%03o detail=\"the TLS key is readable by "
                   "others: chmod 600\"", cfg->http_tls_key, (unsigned)(st.st_mode & 0777));
        o.tls_cert_pem = cert;
        o.tls_key_pem = key;
    }
    if ((rc = tb_httpd_new(host, port, &o, &self->httpd, err, errlen)) != TB_OK) goto done;
    if ((rc = hub_console_attach(self)) != TB_OK) {
        snprintf(err, errlen, "http: cannot serve the console: %s", tb_strerror(rc));
        goto done;
    }
    tb_log(TB_LOG_INFO, comp, "http_listening",
           "hub=%s http=%s port=%d tls=%s auth=%s paths=/,/api/status,/metrics,/healthz", cfg->id,
           cfg->http_listen, tb_httpd_port(self->httpd), tb_httpd_tls(self->httpd) ? "on" : "off",
           cfg->http_token[0] ? "token" : "none");
    if (!loopback && !tb_httpd_tls(self->httpd))
        tb_log(TB_LOG_WARN, comp, "http_cleartext", "http=%s detail=\"not loopback and no TLS: the token "
               "crosses the network in clear unless a TLS-terminating proxy is in front (http.tls_cert, http.tls_key)\"",
               cfg->http_listen);
done:
    if (key) memset(key, 0, strlen(key));
    free(cert);
    free(key);
    return rc;
}

void hub_metrics_tick(hub_t *self)
{
    if (!self->httpd || !tb_httpd_due(self->httpd)) return;
    char *text = NULL, why[160];
    size_t len = 0;
    tb_err_t rc = hub_metrics_render(self, &text, &len);
    if (rc != TB_OK) {
        tb_log(TB_LOG_WARN, comp, "metrics_render_failed", "error=\"%s\"", tb_strerror(rc));
        return;                   /* the endpoint keeps the previous snapshot */
    }
    int ok = hub_metrics_health(self, why, sizeof why);
    rc = hub_console_publish(self);           /* /api/status: before the publish wakes the requests */
    if (rc != TB_OK)
        tb_log(TB_LOG_WARN, comp, "status_publish_failed", "error=\"%s\"", tb_strerror(rc));
    if (tb_httpd_publish(self->httpd, text, len, ok, why) != TB_OK)
        tb_log(TB_LOG_WARN, comp, "metrics_publish_failed", "error=\"%s\"", tb_strerror(TB_ERR_NOMEM));
    free(text);
}

void hub_metrics_stop(hub_t *self)
{
    tb_httpd_destroy(&self->httpd);
    tb_metrics_destroy(&self->metrics);
    hub_console_destroy(&self->console);
}
