/* admin.c -- the hub's operator channel: a REP socket on an ipc:// path that
 * only the hub's user can open (mode 0600), used by `tbctl hub ...`.
 *
 * Requests (one text frame): "status" (JSON), "status text" (a table),
 * "revoke NODE", "reload". Replies are one frame: JSON for status, and
 * "ok: ..." / "error: ..." for actions. The status JSON is the document of
 * the console's GET /api/status without its "history" (docs/api-status.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

#include "adminsock.h"
#include "crypto.h"
#include "hub_internal.h"
#include "jsonw.h"
#include "log.h"
#include "wire.h"

static const char *comp = "hub";

tb_err_t hub_admin_bind(hub_t *self, char *err, size_t errlen)
{
    char path[TB_PATH_MAX + 32];
    return tb_admin_bind(self->ctx, tb_hub_admin_path(self->cfg, path, sizeof path), &self->admin, err,
                         errlen);
}

void hub_status_write(hub_t *self, jsonw_t *w, int with_history)
{
    int64_t now = tb_wall_ms();
    char why[160];
    size_t online = 0, revoked = 0, registered = 0;
    double rate_in = 0, rate_out = 0;
    for (size_t i = 0; i < self->npeers; i++) {
        const peer_t *p = &self->peers[i];
        registered += p->reg != NULL;
        revoked += p->reg && p->reg->revoked_ms;
        online += p->online != 0;
        rate_in += p->rate_in;
        rate_out += p->rate_out;
    }
    int healthy = hub_metrics_health(self, why, sizeof why);
    jsonw_obj_begin(w, NULL);
    jsonw_u64(w, "schema_version", HUB_STATUS_SCHEMA_VERSION);
    jsonw_str(w, "hub", self->cfg->id);
    jsonw_str(w, "version", TB_VERSION_STRING);
    jsonw_i64(w, "time_unix_ms", now);
    jsonw_u64(w, "uptime_s", (tb_now_ms() - self->started_ms) / 1000);
    jsonw_bool(w, "healthy", healthy);
    jsonw_str(w, "health_reason", why);
    hub_ha_status_write(self, w);
    jsonw_obj_begin(w, "summary");
    jsonw_u64(w, "nodes", self->npeers);
    jsonw_u64(w, "registered", registered);
    jsonw_u64(w, "online", online);
    jsonw_u64(w, "revoked", revoked);
    jsonw_dbl(w, "records_in_per_s", rate_in);
    jsonw_dbl(w, "batches_out_per_s", rate_out);
    jsonw_obj_end(w);
    jsonw_obj_begin(w, "journal");
    jsonw_str(w, "store", self->pg ? "postgresql" : "journal");
    jsonw_u64(w, "bytes", hubstore_bytes(self->store));
    jsonw_u64(w, "segments", hubstore_segments(self->store));
    jsonw_u64(w, "last_seq", hubstore_last_seq(self->store));
    jsonw_u64(w, "durable_seq", hubstore_durable_seq(self->store));
    jsonw_bool(w, "storage_failed", self->storage_failed);
    jsonw_obj_end(w);
    jsonw_obj_begin(w, "totals");
    jsonw_u64(w, "batches_in", self->stats.batches_in);
    jsonw_u64(w, "records_in", self->stats.records_in);
    jsonw_u64(w, "batches_out", self->stats.batches_out);
    jsonw_u64(w, "acks_out", self->stats.acks_out);
    jsonw_u64(w, "duplicates", self->stats.duplicates);
    jsonw_u64(w, "syncs", self->stats.syncs);
    jsonw_u64(w, "zap_denied", self->stats.zap_denied);
    jsonw_u64(w, "malformed_frames", self->stats.malformed_frames);
    jsonw_obj_end(w);
    jsonw_obj_begin(w, "rejected");
    for (int r = 1; r < 16; r++) {
        const char *name = tb_nack_reason_name((Tongban__NackReason)r);
        if (strcmp(name, "unspecified") != 0) jsonw_u64(w, name, self->stats.rejected[r]);
    }
    jsonw_obj_end(w);
    jsonw_arr_begin(w, "nodes");
    uint64_t last = hubstore_last_seq(self->store);
    for (size_t i = 0; i < self->npeers; i++) {
        const peer_t *p = &self->peers[i];
        int is_revoked = p->reg && p->reg->revoked_ms;
        jsonw_obj_begin(w, NULL);
        jsonw_str(w, "id", p->id);
        jsonw_bool(w, "registered", p->reg != NULL);
        jsonw_bool(w, "online", p->online);
        jsonw_bool(w, "revoked", is_revoked);
        jsonw_str(w, "state", !p->reg ? "removed" : is_revoked ? "revoked" : p->online ? "online" : "offline");
        if (p->last_seen_wall_ms) jsonw_i64(w, "last_seen_ms_ago", now - p->last_seen_wall_ms);
        else jsonw_i64(w, "last_seen_ms_ago", -1);
        jsonw_i64(w, "last_seen_unix_ms", p->last_seen_wall_ms);
        jsonw_u64(w, "cursor", p->cursor);
        jsonw_u64(w, "lag_hub_seq", last > p->cursor ? last - p->cursor : 0);
        jsonw_u64(w, "backlog_batches", p->backlog_batches);
        jsonw_u64(w, "backlog_bytes", p->backlog_bytes);
        jsonw_u64(w, "in_flight", p->ninflight);
        jsonw_u64(w, "batches_in", p->batches_in);
        jsonw_u64(w, "records_in", p->records_in);
        jsonw_u64(w, "batches_out", p->batches_out);
        jsonw_u64(w, "bytes_out", p->bytes_out);
        jsonw_u64(w, "rejected", p->rejected);
        jsonw_obj_begin(w, "rejected_by_reason");      /* the reasons that occurred */
        for (int r = 1; r < 16; r++)
            if (p->rejected_by[r]) jsonw_u64(w, tb_nack_reason_name((Tongban__NackReason)r), p->rejected_by[r]);
        jsonw_obj_end(w);
        jsonw_dbl(w, "records_in_per_s", p->rate_in);
        jsonw_dbl(w, "batches_out_per_s", p->rate_out);
        if (p->reg) jsonw_i64(w, "cert_days_left", tb_cert_days_left(p->reg->cert));
        hub_console_node_json(self, i, now, w);
        jsonw_arr_begin(w, "subscribe");
        for (size_t k = 0; p->reg && k < p->reg->nsubs; k++) jsonw_str(w, NULL, p->reg->subs[k]);
        jsonw_arr_end(w);
        jsonw_obj_end(w);
    }
    jsonw_arr_end(w);
    if (with_history) hub_console_history_json(self, w);
    jsonw_obj_end(w);
}

/* The "ha" object: this hub's role and since when, and the hubs seen in
 * hub_instances (store: postgresql); a single hub otherwise. */
void hub_ha_status_write(hub_t *self, jsonw_t *w)
{
    const ha_instance_t *inst;
    size_t n = hub_ha_instances(self->ha, &inst);
    const char *active = self->active ? self->cfg->id : "";
    for (size_t i = 0; !self->active && i < n; i++)
        if (strcmp(inst[i].role, "active") == 0 && inst[i].heartbeat_ms_ago < 5000) active = inst[i].id;
    jsonw_obj_begin(w, "ha");
    if (!self->pg) {                     /* one hub: the object of docs/api-status.md */
        jsonw_str(w, "mode", "single");
        jsonw_str(w, "active", self->cfg->id);
        jsonw_arr_begin(w, "hubs");
        jsonw_obj_begin(w, NULL);
        jsonw_str(w, "id", self->cfg->id);
        jsonw_str(w, "role", "active");
        jsonw_obj_end(w);
        jsonw_arr_end(w);
        jsonw_obj_end(w);
        return;
    }
    jsonw_str(w, "mode", "active_standby");
    jsonw_str(w, "role", self->active ? "active" : "standby");
    jsonw_i64(w, "role_since_unix_ms", self->role_since_wall_ms);
    jsonw_str(w, "active", active);
    jsonw_u64(w, "takeovers", self->takeovers);
    jsonw_u64(w, "fences", self->fences);
    jsonw_bool(w, "lock_session", hub_ha_connected(self->ha));
    jsonw_i64(w, "epoch", self->store && hubstore_is_pg(self->store) ? hubstore_epoch(self->store) : 0);
    jsonw_arr_begin(w, "hubs");
    for (size_t i = 0; i < n; i++) {
        jsonw_obj_begin(w, NULL);
        jsonw_str(w, "id", inst[i].id);
        jsonw_str(w, "role", inst[i].role);
        jsonw_str(w, "endpoint", inst[i].endpoint);
        jsonw_i64(w, "since_unix_ms", inst[i].since_unix_ms);
        jsonw_i64(w, "heartbeat_ms_ago", inst[i].heartbeat_ms_ago);
        jsonw_bool(w, "stale", inst[i].heartbeat_ms_ago > 5000);
        jsonw_obj_end(w);
    }
    jsonw_arr_end(w);
    jsonw_obj_end(w);
}

static char *status_json(hub_t *self)
{
    jsonw_t w;
    jsonw_init(&w);
    hub_status_write(self, &w, 0);
    return jsonw_take(&w);
}

static char *status_text(hub_t *self)
{
    jsonw_t w;
    jsonw_init(&w);
    int64_t now = tb_wall_ms();
    jsonw_raw(&w, "hub %s  version %s  up %llus  %s %llu bytes in %zu segments, last hub_seq %llu%s\n",
              self->cfg->id, TB_VERSION_STRING,
              (unsigned long long)((tb_now_ms() - self->started_ms) / 1000), self->pg ? "postgresql" : "journal",
              (unsigned long long)hubstore_bytes(self->store), hubstore_segments(self->store),
              (unsigned long long)hubstore_last_seq(self->store),
              self->storage_failed ? "  STORAGE FAILING" : "");
    jsonw_raw(&w, "role: %s since %llds ago (%s)  takeovers %llu  fences %llu\n",
              self->active ? "ACTIVE" : "standby", (long long)((now - self->role_since_wall_ms) / 1000),
              self->pg ? "store postgresql, advisory lock" : "single hub", (unsigned long long)self->takeovers,
              (unsigned long long)self->fences);
    {
        const ha_instance_t *inst;
        size_t n = hub_ha_instances(self->ha, &inst);
        for (size_t i = 0; i < n; i++)
            jsonw_raw(&w, "  hub %-12s %-8s %-28s since %llds ago, heartbeat %lldms ago%s\n", inst[i].id,
                      inst[i].role, inst[i].endpoint,
                      (long long)(inst[i].since_unix_ms ? (now - inst[i].since_unix_ms) / 1000 : -1),
                      (long long)inst[i].heartbeat_ms_ago, inst[i].heartbeat_ms_ago > 5000 ? " (STALE)" : "");
    }
    jsonw_raw(&w, "totals: batches in %lu (records %lu), out %lu, duplicates %lu, syncs %lu, refused connections %lu\n",
              self->stats.batches_in, self->stats.records_in, self->stats.batches_out,
              self->stats.duplicates, self->stats.syncs, self->stats.zap_denied);
    jsonw_raw(&w, "rejected:");
    int any = 0;
    for (int r = 1; r < 16; r++)
        if (self->stats.rejected[r]) {
            jsonw_raw(&w, " %s=%lu", tb_nack_reason_name((Tongban__NackReason)r), self->stats.rejected[r]);
            any = 1;
        }
    jsonw_raw(&w, "%s\n\n", any ? "" : " none");
    jsonw_raw(&w, "%-10s %-8s %10s %10s %12s %14s %10s %10s %6s\n", "NODE", "STATE", "LAST SEEN",
              "CURSOR", "BACKLOG", "BACKLOG BYTES", "IN rec/s", "OUT bat/s", "CERT d");
    for (size_t i = 0; i < self->npeers; i++) {
        const peer_t *p = &self->peers[i];
        const char *state = !p->reg ? "removed" : p->reg->revoked_ms ? "REVOKED" : p->online ? "online" : "offline";
        char seen[24];
        if (p->last_seen_wall_ms) snprintf(seen, sizeof seen, "%llds ago", (long long)((now - p->last_seen_wall_ms) / 1000));
        else snprintf(seen, sizeof seen, "never");
        jsonw_raw(&w, "%-10s %-8s %10s %10llu %12llu %14llu %10.1f %10.1f %6ld\n", p->id, state, seen,
                  (unsigned long long)p->cursor, (unsigned long long)p->backlog_batches,
                  (unsigned long long)p->backlog_bytes, p->rate_in, p->rate_out,
                  p->reg ? tb_cert_days_left(p->reg->cert) : 0L);
    }
    return jsonw_take(&w);
}

void hub_admin_handle(hub_t *self)
{
    char req[256], err[TB_ERRLEN], reply[TB_ERRLEN + 64];
    if (tb_admin_recv(self->admin, req, sizeof req) != 0) return;
    char *out = NULL;
    if (strcmp(req, "status") == 0) {
        out = status_json(self);
    } else if (strcmp(req, "status text") == 0) {
        out = status_text(self);
    } else if (strncmp(req, "revoke ", 7) == 0) {
        if (hub_revoke(self, req + 7, err, sizeof err) == TB_OK)
            snprintf(reply, sizeof reply, "ok: node %s revoked", req + 7);
        else
            snprintf(reply, sizeof reply, "error: %s", err);
    } else if (strcmp(req, "reload") == 0) {
        if (hub_reload(self, err, sizeof err) == TB_OK) snprintf(reply, sizeof reply, "ok: registry reloaded");
        else snprintf(reply, sizeof reply, "error: %s", err);
    } else {
        snprintf(reply, sizeof reply, "error: unknown request (status, status text, revoke NODE, reload)");
    }
    const char *r = out ? out : reply;
    if (zmq_send(self->admin, r, strlen(r), 0) < 0)
        tb_log(TB_LOG_WARN, comp, "admin_reply_failed", "error=\"%s\"", zmq_strerror(errno));
    free(out);
}
