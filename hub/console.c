/* console.c -- the hub's web console: serves the page compiled into the
 * binary, publishes /api/status from the loop, and keeps what the status
 * needs beyond the hub's counters: a throughput history (a sample every
 * 5 s, the last 10 minutes) and, per node, when it last had a batch
 * refused and its backlog and cursor over the last 30 s (its health). */
#include "console.h"

#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "hub_internal.h"
#include "log.h"
#include "wire.h"

static const char *comp = "hub";

#define SAMPLE_EVERY_MS 5000
#define HISTORY_N 120                    /* samples: 10 minutes */
#define TREND_N 7                        /* per-node samples: 30 s */
#define REJECT_RECENT_MS (5 * 60 * 1000)
#define CERT_WARN_DAYS 30
#define REASONS_MAX 6

typedef struct {
    int64_t t_ms;                        /* unix ms */
    double records_in, batches_in, batches_out, bytes_out;   /* per second over the interval */
    uint64_t rejected;                   /* refusals during the interval */
    uint32_t online;                     /* nodes connected at the sample */
} sample_t;

typedef struct {
    uint64_t rejected_mark;              /* peer_t.rejected when last looked at */
    int64_t last_reject_ms;              /* unix ms; 0: none since the hub started */
    uint64_t backlog[TREND_N], cursor[TREND_N];   /* ring, oldest at (head - n) */
    size_t head, n;
} trend_t;

struct hub_console {
    sample_t hist[HISTORY_N];            /* ring, oldest at (head - n) */
    size_t head, n;
    uint64_t last_sample_ms;             /* monotonic; 0: no sample yet */
    uint64_t m_records_in, m_batches_in, m_batches_out, m_bytes_out, m_rejected;
    trend_t *nodes;                      /* parallel to hub->peers (which only grows) */
    size_t nnodes;
};

/* ---- the page ---- */

static const char *type_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot) return "application/octet-stream";
    if (strcmp(dot, ".html") == 0) return "text/html; charset=utf-8";
    if (strcmp(dot, ".js") == 0) return "text/javascript; charset=utf-8";
    if (strcmp(dot, ".css") == 0) return "text/css; charset=utf-8";
    if (strcmp(dot, ".svg") == 0) return "image/svg+xml";
    if (strcmp(dot, ".json") == 0) return "application/json; charset=utf-8";
    return "application/octet-stream";
}

tb_err_t hub_console_attach(hub_t *self)
{
    if (!self->httpd) return TB_OK;
    for (size_t i = 0; i < hub_console_nassets; i++) {
        const hub_console_asset_t *a = &hub_console_assets[i];
        char path[96];
        snprintf(path, sizeof path, "/%s", strcmp(a->name, "index.html") == 0 ? "" : a->name);
        tb_err_t rc = tb_httpd_add_static(self->httpd, path, type_of(a->name), a->data, a->len);
        if (rc != TB_OK) return rc;
    }
    return tb_httpd_put(self->httpd, "/api/status", "application/json; charset=utf-8", NULL, 0);
}

/* ---- the loop's samples ---- */

/* The console's state, with a trend_t for every peer; NULL when out of memory. */
static hub_console_t *state(hub_t *self)
{
    hub_console_t *c = self->console;
    if (!c && !(c = self->console = calloc(1, sizeof *c))) return NULL;
    if (c->nnodes < self->npeers) {
        trend_t *t = realloc(c->nodes, self->npeers * sizeof *t);
        if (!t) return NULL;
        memset(t + c->nnodes, 0, (self->npeers - c->nnodes) * sizeof *t);
        c->nodes = t;
        c->nnodes = self->npeers;
    }
    return c;
}

static void take_sample(hub_t *self, hub_console_t *c, uint64_t now)
{
    uint64_t bytes_out = 0, rejected = 0;
    uint32_t online = 0;
    for (size_t i = 0; i < self->npeers; i++) {
        const peer_t *p = &self->peers[i];
        trend_t *t = &c->nodes[i];
        bytes_out += p->bytes_out;
        online += p->online != 0;
        t->backlog[t->head] = p->backlog_batches;
        t->cursor[t->head] = p->cursor;
        t->head = (t->head + 1) % TREND_N;
        if (t->n < TREND_N) t->n++;
    }
    for (int r = 0; r < 16; r++) rejected += self->stats.rejected[r];
    if (c->last_sample_ms) {
        double secs = (double)(now - c->last_sample_ms) / 1000.0;
        sample_t *s = &c->hist[c->head];
        s->t_ms = tb_wall_ms();
        s->records_in = (double)(self->stats.records_in - c->m_records_in) / secs;
        s->batches_in = (double)(self->stats.batches_in - c->m_batches_in) / secs;
        s->batches_out = (double)(self->stats.batches_out - c->m_batches_out) / secs;
        s->bytes_out = (double)(bytes_out - c->m_bytes_out) / secs;
        s->rejected = rejected - c->m_rejected;
        s->online = online;
        c->head = (c->head + 1) % HISTORY_N;
        if (c->n < HISTORY_N) c->n++;
    }
    c->last_sample_ms = now;
    c->m_records_in = self->stats.records_in;
    c->m_batches_in = self->stats.batches_in;
    c->m_batches_out = self->stats.batches_out;
    c->m_bytes_out = bytes_out;
    c->m_rejected = rejected;
}

void hub_console_tick(hub_t *self, uint64_t now_ms)
{
    hub_console_t *c = state(self);
    if (!c) {
        tb_log(TB_LOG_WARN, comp, "console_no_memory", "detail=\"history not kept\"");
        return;
    }
    int64_t wall = 0;
    for (size_t i = 0; i < self->npeers; i++) {
        trend_t *t = &c->nodes[i];
        if (self->peers[i].rejected != t->rejected_mark) {
            t->rejected_mark = self->peers[i].rejected;
            t->last_reject_ms = wall ? wall : (wall = tb_wall_ms());
        }
    }
    if (!c->last_sample_ms || now_ms - c->last_sample_ms >= SAMPLE_EVERY_MS) take_sample(self, c, now_ms);
}

/* ---- health ---- */

/* The node's health and why ("offline", ...; at most REASONS_MAX). */
static const char *health(hub_t *self, size_t i, int64_t now_wall, const char **why, size_t *nwhy)
{
    const peer_t *p = &self->peers[i];
    const trend_t *t = self->console && i < self->console->nnodes ? &self->console->nodes[i] : NULL;
    *nwhy = 0;
    if (!p->reg) {
        why[(*nwhy)++] = "removed";
        return "unregistered";
    }
    long days = tb_cert_days_left(p->reg->cert);
    if (p->reg->revoked_ms) why[(*nwhy)++] = "revoked";
    else if (!p->online) why[(*nwhy)++] = "offline";
    if (days < 0) why[(*nwhy)++] = "cert_expired";
    if (*nwhy) return "down";
    if (t && t->last_reject_ms && now_wall - t->last_reject_ms < REJECT_RECENT_MS)
        why[(*nwhy)++] = "rejected_recently";
    if (t && t->n == TREND_N) {
        size_t oldest = (t->head + TREND_N - t->n) % TREND_N;
        int always = 1;
        for (size_t k = 0; k < TREND_N; k++) always &= t->backlog[k] > 0;
        if (p->backlog_batches > t->backlog[oldest] + (uint64_t)self->cfg->deliver_window)
            why[(*nwhy)++] = "backlog_growing";
        else if (always && p->backlog_batches > 0 && p->cursor == t->cursor[oldest])
            why[(*nwhy)++] = "backlog_stuck";
    }
    if (days < CERT_WARN_DAYS) why[(*nwhy)++] = "cert_expiring";
    return *nwhy ? "warn" : "ok";
}

void hub_console_node_json(hub_t *self, size_t i, int64_t now_wall_ms, jsonw_t *w)
{
    const char *why[REASONS_MAX];
    size_t n;
    const trend_t *t = self->console && i < self->console->nnodes ? &self->console->nodes[i] : NULL;
    jsonw_str(w, "health", health(self, i, now_wall_ms, why, &n));
    jsonw_arr_begin(w, "health_reasons");
    for (size_t k = 0; k < n; k++) jsonw_str(w, NULL, why[k]);
    jsonw_arr_end(w);
    jsonw_i64(w, "last_reject_ms_ago", t && t->last_reject_ms ? now_wall_ms - t->last_reject_ms : -1);
}

void hub_console_history_json(hub_t *self, jsonw_t *w)
{
    const hub_console_t *c = self->console;
    jsonw_obj_begin(w, "history");
    jsonw_u64(w, "interval_s", SAMPLE_EVERY_MS / 1000);
    jsonw_u64(w, "max_samples", HISTORY_N);
    jsonw_arr_begin(w, "samples");
    for (size_t k = 0; c && k < c->n; k++) {
        const sample_t *s = &c->hist[(c->head + HISTORY_N - c->n + k) % HISTORY_N];
        jsonw_obj_begin(w, NULL);
        jsonw_i64(w, "t_unix_ms", s->t_ms);
        jsonw_dbl(w, "records_in_per_s", s->records_in);
        jsonw_dbl(w, "batches_in_per_s", s->batches_in);
        jsonw_dbl(w, "batches_out_per_s", s->batches_out);
        jsonw_dbl(w, "bytes_out_per_s", s->bytes_out);
        jsonw_u64(w, "rejected", s->rejected);
        jsonw_u64(w, "nodes_online", s->online);
        jsonw_obj_end(w);
    }
    jsonw_arr_end(w);
    jsonw_obj_end(w);
}

/* ---- publishing ---- */

tb_err_t hub_console_publish(hub_t *self)
{
    if (!self->httpd) return TB_OK;
    jsonw_t w;
    jsonw_init(&w);
    hub_status_write(self, &w, 1);
    char *text = jsonw_take(&w);
    if (!text) return TB_ERR_NOMEM;
    tb_err_t rc = tb_httpd_put(self->httpd, "/api/status", "application/json; charset=utf-8", text, strlen(text));
    free(text);
    return rc;
}

void hub_console_destroy(hub_console_t **selfp)
{
    hub_console_t *self = selfp ? *selfp : NULL;
    if (!self) return;
    free(self->nodes);
    free(self);
    *selfp = NULL;
}
