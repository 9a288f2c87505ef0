/* admin.c -- the node's operator channel: a REP socket on an ipc:// path
 * that only the node's user can open (mode 0600), used by `tbctl node ...`.
 *
 * Requests (one text frame):
 *   "status" (JSON) | "status text"
 *   "dead-letters" (text) | "dead-letters json"
 *   "retry ID"                 re-apply dead letter ID now
 *   "refused" (text) | "refused json"   deliveries this node refused, parked
 *   "retry-refused ID"         re-verify and apply parked delivery ID now
 *   "resync CATALOG FROM"      ask node FROM to send CATALOG again (snapshot)
 *   "count CATALOG"            rows of CATALOG in tongban.records
 * Replies: JSON / text, or "ok: ..." / "error: ..." / "refused: ..." (a
 * parked delivery still refused: tbctl exits 3).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <zmq.h>

#include "adminsock.h"
#include "housekeep.h"
#include "jsonw.h"
#include "log.h"
#include "node_internal.h"
#include "store_refused.h"
#include "wire.h"

#define RESYNC_TIMEOUT_MS 30000   /* the owner queues the whole catalog first */

static const char *comp = "node";

tb_err_t node_admin_bind(node_t *self, char *err, size_t errlen)
{
    char path[TB_PATH_MAX + 32];
    return tb_admin_bind(self->ctx, tb_node_admin_path(self->cfg, path, sizeof path), &self->admin, err,
                         errlen);
}

static void reply(node_t *self, const char *text)
{
    if (zmq_send(self->admin, text, strlen(text), 0) < 0)
        tb_log(TB_LOG_WARN, comp, "admin_reply_failed", "error=\"%s\"", zmq_strerror(errno));
}

static char *status_render(node_t *self, int json)
{
    char err[TB_ERRLEN];
    tb_store_status_t st;
    int have = self->store && tb_store_status(self->store, &st, err, sizeof err) == TB_OK;
    const node_stats_t *s = &self->stats;
    uint64_t now = tb_now_ms();
    api_stats_t as;
    unsigned long api_errors = 0;
    api_get_stats(self->api, &as);
    for (int i = 1; i < TB_ERR__COUNT; i++) api_errors += as.by_status[i];
    long days = tb_cert_days_left(self->cert);
    tb_housekeep_counters_t hk;
    tb_housekeep_counters(self->housekeep, &hk);
    long inbox_days = tb_housekeep_inbox_days(self->housekeep, self->cfg);
    jsonw_t w;
    jsonw_init(&w);
    if (json) {
        jsonw_obj_begin(&w, NULL);
        jsonw_str(&w, "node", self->cfg->id);
        jsonw_str(&w, "version", TB_VERSION_STRING);
        jsonw_u64(&w, "uptime_s", (now - self->started_ms) / 1000);
        jsonw_obj_begin(&w, "hub");
        jsonw_str(&w, "endpoint", self->cfg->hub_endpoints[self->ep]);     /* the current one */
        jsonw_arr_begin(&w, "endpoints");
        for (size_t i = 0; i < self->cfg->hub_endpoint_count; i++) jsonw_str(&w, NULL, self->cfg->hub_endpoints[i]);
        jsonw_arr_end(&w);
        jsonw_u64(&w, "failovers", self->hub_failovers);
        jsonw_bool(&w, "connected", self->welcomed);
        jsonw_i64(&w, "last_heard_ms_ago", self->last_heard_ms ? (long long)(now - self->last_heard_ms) : -1);
        jsonw_i64(&w, "last_ack_ms_ago", self->last_ack_ms ? (long long)(now - self->last_ack_ms) : -1);
        jsonw_u64(&w, "in_flight_batches", self->npend);
        jsonw_obj_end(&w);
        jsonw_bool(&w, "postgresql_connected", self->store != NULL);
        if (have) {
            jsonw_obj_begin(&w, "database");
            jsonw_i64(&w, "outbox_rows", st.outbox_rows);
            jsonw_dbl(&w, "outbox_oldest_age_s", st.outbox_oldest_age_s);
            jsonw_i64(&w, "unacked_batches", st.unacked_batches);
            jsonw_i64(&w, "refused_batches", st.refused_batches);
            jsonw_i64(&w, "dead_letters", st.dead_letters);
            jsonw_i64(&w, "refused_deliveries", st.refused_deliveries);
            jsonw_i64(&w, "inbox_rows", st.inbox_rows);
            jsonw_dbl(&w, "last_applied_age_s", st.last_applied_age_s);
            jsonw_i64(&w, "records", st.records);
            jsonw_obj_end(&w);
        }
        jsonw_obj_begin(&w, "totals");
        jsonw_u64(&w, "batches_sent", s->batches_sent);
        jsonw_u64(&w, "records_sent", s->records_sent);
        jsonw_u64(&w, "acks", s->acks);
        jsonw_u64(&w, "nacks", s->nacks);
        jsonw_u64(&w, "batches_applied", s->batches_applied);
        jsonw_u64(&w, "records_applied", s->records_applied);
        jsonw_u64(&w, "duplicates", s->duplicates);
        jsonw_u64(&w, "rejected_in", s->rejected_in);
        jsonw_u64(&w, "deliveries_parked", s->deliveries_parked);
        jsonw_u64(&w, "parked_applied", s->parked_applied);
        jsonw_u64(&w, "pg_errors", s->pg_errors);
        jsonw_obj_end(&w);
        jsonw_obj_begin(&w, "api");
        jsonw_u64(&w, "requests", as.requests);
        jsonw_u64(&w, "errors", api_errors);
        jsonw_obj_begin(&w, "errors_by_status");
        for (int i = 1; i < TB_ERR__COUNT; i++)
            if (as.by_status[i]) jsonw_u64(&w, tb_strerror((tb_err_t)i), as.by_status[i]);
        jsonw_obj_end(&w);
        jsonw_u64(&w, "malformed", as.malformed);
        jsonw_u64(&w, "parked", as.parked);
        jsonw_u64(&w, "parked_timeouts", as.parked_timeouts);
        jsonw_u64(&w, "reply_failed", as.reply_failed);
        jsonw_u64(&w, "connections_refused", as.zap_denied);
        jsonw_u64(&w, "licence_queries_answered", as.queries_answered);
        jsonw_u64(&w, "domain_entries_refused", as.domain_refused);
        jsonw_obj_end(&w);
        /* days kept (0: forever); inbox_days is the one in effect (housekeep.h) */
        jsonw_obj_begin(&w, "retention");
        jsonw_i64(&w, "inbox_days", inbox_days);
        jsonw_i64(&w, "inbox_days_configured", self->cfg->retention_inbox_days);
        jsonw_u64(&w, "hub_journal_retention_hours", self->hub_retention_hours);
        jsonw_i64(&w, "tombstone_days", self->cfg->retention_tombstone_days);
        jsonw_i64(&w, "events_days", self->cfg->retention_events_days);
        jsonw_i64(&w, "dead_letters_applied_days", self->cfg->retention_dead_letters_days);
        jsonw_obj_begin(&w, "pruned_rows");
        for (int t = 0; t < TB_HK_TABLES; t++) jsonw_u64(&w, tb_housekeep_table_name(t), hk.pruned[t]);
        jsonw_obj_end(&w);
        jsonw_u64(&w, "passes", hk.passes);
        jsonw_u64(&w, "errors", hk.errors);
        jsonw_obj_end(&w);
        jsonw_i64(&w, "cert_days_left", days);
        jsonw_obj_end(&w);
    } else {
        jsonw_raw(&w, "node %s  version %s  up %llus\n", self->cfg->id, TB_VERSION_STRING,
                  (unsigned long long)((now - self->started_ms) / 1000));
        jsonw_raw(&w, "hub        %s  %s", self->cfg->hub_endpoints[self->ep], self->welcomed ? "connected" : "NOT CONNECTED");
        if (self->cfg->hub_endpoint_count > 1)
            jsonw_raw(&w, " (endpoint %zu of %zu, %lu failovers)", self->ep + 1, self->cfg->hub_endpoint_count,
                      self->hub_failovers);
        if (self->last_ack_ms) jsonw_raw(&w, ", last ack %llus ago", (unsigned long long)((now - self->last_ack_ms) / 1000));
        jsonw_raw(&w, ", %zu batches in flight\n", self->npend);
        jsonw_raw(&w, "postgresql %s\n", self->store ? "connected" : "NOT CONNECTED (retrying)");
        if (have) {
            jsonw_raw(&w, "outbox     %" PRId64 " rows", st.outbox_rows);
            if (st.outbox_oldest_age_s >= 0) jsonw_raw(&w, ", oldest %.1fs", st.outbox_oldest_age_s);
            jsonw_raw(&w, "; %" PRId64 " unacked batches; %" PRId64 " refused batches%s\n", st.unacked_batches,
                      st.refused_batches, st.refused_batches ? " (SELECT * FROM tongban.refused_batches)" : "");
            jsonw_raw(&w, "inbound    %" PRId64 " batches applied", st.inbox_rows);
            if (st.last_applied_age_s >= 0) jsonw_raw(&w, ", last %.1fs ago", st.last_applied_age_s);
            jsonw_raw(&w, "; %" PRId64 " dead letters%s; %" PRId64 " refused deliveries%s\n", st.dead_letters,
                      st.dead_letters ? " (tbctl node dead-letters)" : "", st.refused_deliveries,
                      st.refused_deliveries ? " (tbctl node refused)" : "");
            jsonw_raw(&w, "records    %" PRId64 "\n", st.records);
        }
        jsonw_raw(&w, "totals     sent %lu batches / %lu records, %lu acks, %lu nacks; applied %lu batches / %lu records, %lu duplicates, %lu rejected (%lu parked, %lu applied after a retry), %lu PostgreSQL errors\n",
                  s->batches_sent, s->records_sent, s->acks, s->nacks, s->batches_applied,
                  s->records_applied, s->duplicates, s->rejected_in, s->deliveries_parked, s->parked_applied,
                  s->pg_errors);
        jsonw_raw(&w, "api        %lu requests, %lu errors, %zu waiting, %lu verify timeouts, %lu malformed, %lu refused connections; %lu received domain entries refused\n",
                  as.requests, api_errors, as.parked, as.parked_timeouts, as.malformed, as.zap_denied,
                  as.domain_refused);
        jsonw_raw(&w, "retention  inbox %ld days", inbox_days);
        if (inbox_days != self->cfg->retention_inbox_days)
            jsonw_raw(&w, " (retention.inbox_days %ld, raised to the hub's journal retention of %u h)",
                      self->cfg->retention_inbox_days, (unsigned)self->hub_retention_hours);
        jsonw_raw(&w, ", tombstones %ld, events %ld, applied dead letters %ld (0: forever); pruned %" PRIu64
                      " inbox, %" PRIu64 " tombstones, %" PRIu64 " events, %" PRIu64 " dead letters rows; %" PRIu64
                      " housekeeping errors\n",
                  self->cfg->retention_tombstone_days, self->cfg->retention_events_days,
                  self->cfg->retention_dead_letters_days, hk.pruned[TB_HK_INBOX], hk.pruned[TB_HK_TOMBSTONES],
                  hk.pruned[TB_HK_EVENTS], hk.pruned[TB_HK_DEAD_LETTERS], hk.errors);
        jsonw_raw(&w, "cert       %ld days left%s\n", days, days < 30 ? "  RENEW SOON" : "");
    }
    if (have) tb_store_free_status(&st);
    return jsonw_take(&w);
}

static char *dead_letters_render(node_t *self, int json, char *err, size_t errlen)
{
    tb_dead_t *v = NULL;
    size_t n = 0;
    if (!self->store) {
        snprintf(err, errlen, "PostgreSQL not connected");
        return NULL;
    }
    if (tb_store_dead_letters(self->store, &v, &n, err, errlen) != TB_OK) return NULL;
    jsonw_t w;
    jsonw_init(&w);
    if (json) jsonw_arr_begin(&w, NULL);
    else jsonw_raw(&w, "%-8s %-10s %-12s %-6s %-14s %-8s %-20s %s\n", "ID", "SENDER", "SEQ", "ENTRY",
                   "TYPE", "STATUS", "SINCE", "REASON");
    for (size_t i = 0; i < n; i++) {
        const tb_dead_t *d = &v[i];
        if (json) {
            jsonw_obj_begin(&w, NULL);
            jsonw_i64(&w, "id", d->id);
            jsonw_str(&w, "sender", d->sender);
            jsonw_u64(&w, "seq", d->seq);
            jsonw_i64(&w, "entry_index", d->entry_index);
            jsonw_str(&w, "type", d->entry_type);
            jsonw_str(&w, "status", d->status);
            jsonw_str(&w, "created_at", d->created_at);
            jsonw_str(&w, "reason", d->reason);
            jsonw_obj_end(&w);
        } else {
            jsonw_raw(&w, "%-8" PRId64 " %-10s %-12" PRIu64 " %-6d %-14s %-8s %-20.19s %s\n", d->id, d->sender,
                      d->seq, d->entry_index, d->entry_type, d->status, d->created_at, d->reason);
        }
    }
    if (json) jsonw_arr_end(&w);
    else if (n == 0) jsonw_raw(&w, "(no dead letters)\n");
    tb_store_free_dead(v, n);
    return jsonw_take(&w);
}

/* The parked deliveries as a table or a JSON array (hub_seq, sender and seq
 * only when known: "?" in the table). */
static char *refused_render(node_t *self, int json, char *err, size_t errlen)
{
    tb_refused_t *v = NULL;
    size_t n = 0;
    if (!self->store) {
        snprintf(err, errlen, "PostgreSQL not connected");
        return NULL;
    }
    tb_err_t rc = tb_store_refused_list(self->store, 0, 0, NULL, 0, &v, &n, err, errlen);
    if (rc == TB_ERR_UNAVAILABLE) node_store_lost(self, "refused_list", err);
    if (rc != TB_OK) return NULL;
    jsonw_t w;
    jsonw_init(&w);
    if (json) jsonw_arr_begin(&w, NULL);
    else jsonw_raw(&w, "%-8s %-10s %-10s %-12s %-9s %-7s %-20s %s\n", "ID", "HUB_SEQ", "SENDER", "SEQ", "BYTES",
                   "RETRIES", "SINCE", "REASON");
    for (size_t i = 0; i < n; i++) {
        const tb_refused_t *d = &v[i];
        if (json) {
            jsonw_obj_begin(&w, NULL);
            jsonw_i64(&w, "id", d->id);
            if (d->hub_seq >= 0) jsonw_i64(&w, "hub_seq", d->hub_seq);
            if (d->sender) jsonw_str(&w, "sender", d->sender);
            if (d->seq >= 0) jsonw_i64(&w, "seq", d->seq);
            jsonw_u64(&w, "bytes", d->size);
            jsonw_i64(&w, "retries", d->retries);
            jsonw_str(&w, "refused_at", d->refused_at);
            if (d->retried_at) jsonw_str(&w, "retried_at", d->retried_at);
            jsonw_str(&w, "reason", d->reason);
            jsonw_obj_end(&w);
        } else {
            char seq[24] = "?";
            if (d->seq >= 0) snprintf(seq, sizeof seq, "%" PRId64, d->seq);
            jsonw_raw(&w, "%-8" PRId64 " %-10" PRId64 " %-10s %-12s %-9zu %-7d %-20.19s %s\n", d->id, d->hub_seq,
                      d->sender ? d->sender : "?", seq, d->size, d->retries, d->refused_at, d->reason);
        }
    }
    if (json) jsonw_arr_end(&w);
    else if (n == 0) jsonw_raw(&w, "(no refused deliveries)\n");
    tb_store_free_refused(v, n);
    return jsonw_take(&w);
}

/* "retry-refused ID": the answer into out. */
static void retry_refused(node_t *self, long long id, char *out, size_t outlen)
{
    char msg[TB_ERRLEN];
    tb_err_t rc = node_refused_retry(self, (int64_t)id, msg, sizeof msg);
    if (rc == TB_OK)
        snprintf(out, outlen, "ok: refused delivery %lld: %s", id, msg);
    else if (rc == TB_ERR_REFUSED)
        snprintf(out, outlen, "refused: delivery %lld is still refused: %s (it stays parked)", id, msg);
    else
        snprintf(out, outlen, "error: refused delivery %lld: %s", id, msg);
}

void node_admin_handle(node_t *self, uint64_t now)
{
    char req[256], err[TB_ERRLEN], out[TB_ERRLEN + 128];
    if (tb_admin_recv(self->admin, req, sizeof req) != 0) return;
    char *text = NULL, cat[TB_ID_MAX + 2], from[TB_ID_MAX + 2];
    long long id;
    err[0] = '\0';
    if (strcmp(req, "status") == 0 || strcmp(req, "status text") == 0) {
        text = status_render(self, strcmp(req, "status") == 0);
    } else if (strcmp(req, "dead-letters") == 0 || strcmp(req, "dead-letters json") == 0) {
        text = dead_letters_render(self, strcmp(req, "dead-letters json") == 0, err, sizeof err);
        if (!text) snprintf(out, sizeof out, "error: %s", err);
    } else if (strcmp(req, "refused") == 0 || strcmp(req, "refused json") == 0) {
        text = refused_render(self, strcmp(req, "refused json") == 0, err, sizeof err);
        if (!text) snprintf(out, sizeof out, "error: %s", err);
    } else if (sscanf(req, "retry-refused %lld", &id) == 1) {
        retry_refused(self, id, out, sizeof out);
    } else if (sscanf(req, "retry %lld", &id) == 1) {
        if (!self->store) snprintf(out, sizeof out, "error: PostgreSQL not connected");
        else if (tb_store_retry_dead_letter(self->store, (int64_t)id, err, sizeof err) == TB_OK)
            snprintf(out, sizeof out, "ok: dead letter %lld applied", id);
        else snprintf(out, sizeof out, "error: dead letter %lld: %s", id, err);
    } else if (sscanf(req, "count %65s", cat) == 1) {
        int64_t rows = 0;
        if (!self->store) snprintf(out, sizeof out, "error: PostgreSQL not connected");
        else if (tb_store_count(self->store, cat, &rows, err, sizeof err) == TB_OK)
            snprintf(out, sizeof out, "%lld", (long long)rows);
        else snprintf(out, sizeof out, "error: %s", err);
    } else if (sscanf(req, "resync %65s %65s", cat, from) == 2) {
        if (!tb_config_valid_catalog(cat) || !tb_config_valid_id(from)) {
            snprintf(out, sizeof out, "error: expected resync CATALOG NODE");
        } else if (!self->welcomed) {
            snprintf(out, sizeof out, "error: not connected to the hub");
        } else {
            /* answered when the owner's Reply comes (or at the deadline) */
            self->query_id = node_send_query(self, from, "snapshot", cat);
            snprintf(self->query_what, sizeof self->query_what, "%s from %s", cat, from);
            self->admin_waiting = 1;
            self->admin_deadline = now + RESYNC_TIMEOUT_MS;
            tb_log(TB_LOG_INFO, comp, "resync_requested", "node=%s catalog=%s owner=%s", self->cfg->id, cat, from);
            return;
        }
    } else {
        snprintf(out, sizeof out, "error: unknown request (status, dead-letters, retry ID, refused, retry-refused ID, resync CATALOG NODE, count CATALOG)");
    }
    reply(self, text ? text : out);
    free(text);
}

void node_admin_on_reply(node_t *self, const Tongban__Reply *r)
{
    char out[512], body[256];
    if (!self->admin_waiting || r->id != self->query_id) return;   /* late or unknown */
    size_t n = r->body.len < sizeof body - 1 ? r->body.len : sizeof body - 1;
    memcpy(body, r->body.data, n);
    body[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)body[i] < ' ') body[i] = '?';
    if (r->status == TONGBAN__REPLY_STATUS__REPLY_OK)
        snprintf(out, sizeof out, "ok: %s rows queued (%s)", body, self->query_what);
    else if (r->status == TONGBAN__REPLY_STATUS__REPLY_UNAVAILABLE)
        snprintf(out, sizeof out, "error: %s: the owner is unavailable (offline?) %s", self->query_what, body);
    else
        snprintf(out, sizeof out, "error: %s: %s", self->query_what, body);
    self->admin_waiting = 0;
    reply(self, out);
}

void node_admin_timer(node_t *self, uint64_t now)
{
    if (!self->admin_waiting || now < self->admin_deadline) return;
    char out[256];
    snprintf(out, sizeof out, "error: %s: no answer within %d s", self->query_what, RESYNC_TIMEOUT_MS / 1000);
    self->admin_waiting = 0;
    reply(self, out);
}
