/* ha.c -- the hub's lock session: one PostgreSQL advisory lock decides the
 * active hub; see ha.h. */
#include "ha.h"

#include <endian.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "pgstore.h"
#include "wire.h"

#define BACKOFF_MAX_MS 4000
#define INSTANCES_EVERY_MS 1000
#define FENCED_BACKOFF 4          /* check periods a fenced hub waits before trying the lock */

static const char *comp = "hub";

struct hub_ha {
    char *conninfo, *id, *endpoint;
    char key[24], app[96];
    long timeout_ms, check_ms;
    PGconn *conn;
    int active, pid;
    int pending;                 /* lock held, grace not over yet */
    uint64_t grace_until;
    int64_t since_ms;
    uint64_t next_ms, backoff_ms, last_instances_ms;
    int connect_failed_logged;
    ha_instance_t inst[HA_MAX_INSTANCES];
    size_t ninst;
};

hub_ha_t *hub_ha_new(const char *conninfo, long lock_key, const char *hub_id, const char *endpoint,
                     long timeout_ms, long check_ms)
{
    hub_ha_t *self = calloc(1, sizeof *self);
    if (!self) return NULL;
    self->conninfo = strdup(conninfo);
    self->id = strdup(hub_id);
    self->endpoint = strdup(endpoint);
    if (!self->conninfo || !self->id || !self->endpoint) {
        hub_ha_destroy(&self);
        return NULL;
    }
    snprintf(self->key, sizeof self->key, "%ld", lock_key);
    snprintf(self->app, sizeof self->app, "tongban-hub:%s:lock", hub_id);
    self->timeout_ms = timeout_ms;
    self->check_ms = check_ms;
    self->since_ms = tb_wall_ms();
    return self;
}

static void drop(hub_ha_t *self)
{
    if (self->conn) PQfinish(self->conn);
    self->conn = NULL;
    self->pid = 0;
}

void hub_ha_destroy(hub_ha_t **selfp)
{
    hub_ha_t *self = selfp ? *selfp : NULL;
    if (!self) return;
    drop(self);
    free(self->conninfo);
    free(self->id);
    free(self->endpoint);
    free(self);
    *selfp = NULL;
}

static void set_role(hub_ha_t *self, int active)
{
    self->active = active;
    self->since_ms = tb_wall_ms();
}

/* Upserts this hub's row, then reads every row. Returns 0 or -1 (err). */
static int heartbeat(hub_ha_t *self, uint64_t now, char *err, size_t errlen)
{
    char since[24];
    snprintf(since, sizeof since, "%" PRId64, self->since_ms);
    const char *vals[] = { self->id, self->active ? "active" : "standby", since, self->endpoint };
    PGresult *r = pgstore_run(&self->conn, self->timeout_ms,
                              "INSERT INTO tongban_hub.hub_instances (id, role, since, heartbeat_at, endpoint, pid)"
                              " VALUES ($1, $2, to_timestamp($3::int8 / 1000.0), now(), $4, pg_backend_pid())"
                              " ON CONFLICT (id) DO UPDATE SET role = EXCLUDED.role, since = EXCLUDED.since,"
                              " heartbeat_at = now(), endpoint = EXCLUDED.endpoint, pid = EXCLUDED.pid",
                              4, NULL, vals, NULL, NULL, 0, err, errlen);
    if (!r) return -1;
    PQclear(r);
    if (now - self->last_instances_ms < INSTANCES_EVERY_MS && self->ninst) return 0;
    self->last_instances_ms = now;
    r = pgstore_run(&self->conn, self->timeout_ms,
                    "SELECT id, role, coalesce(endpoint, ''),"
                    " coalesce((extract(epoch FROM since) * 1000)::int8, 0),"
                    " (extract(epoch FROM now() - heartbeat_at) * 1000)::int8"
                    " FROM tongban_hub.hub_instances ORDER BY id",
                    0, NULL, NULL, NULL, NULL, 0, err, errlen);
    if (!r) return -1;
    self->ninst = 0;
    for (int i = 0; i < PQntuples(r) && self->ninst < HA_MAX_INSTANCES; i++) {
        ha_instance_t *h = &self->inst[self->ninst++];
        snprintf(h->id, sizeof h->id, "%s", PQgetvalue(r, i, 0));
        snprintf(h->role, sizeof h->role, "%s", PQgetvalue(r, i, 1));
        snprintf(h->endpoint, sizeof h->endpoint, "%s", PQgetvalue(r, i, 2));
        h->since_unix_ms = strtoll(PQgetvalue(r, i, 3), NULL, 10);
        h->heartbeat_ms_ago = strtoll(PQgetvalue(r, i, 4), NULL, 10);
    }
    PQclear(r);
    return 0;
}

ha_event_t hub_ha_tick(hub_ha_t *self, uint64_t now)
{
    char err[512];
    if (self->active && self->pending && now >= self->grace_until && self->conn) {
        self->pending = 0;
        return HA_ACQUIRED;
    }
    if (now < self->next_ms) return HA_NONE;
    self->next_ms = now + (uint64_t)self->check_ms;
    if (!self->conn) {
        self->conn = pgstore_connect(self->conninfo, self->app, self->timeout_ms, err, sizeof err);
        if (self->conn && pgstore_schema(&self->conn, self->timeout_ms, err, sizeof err) != TB_OK) drop(self);
        if (!self->conn) {
            self->backoff_ms = self->backoff_ms ? self->backoff_ms * 2 : (uint64_t)self->check_ms;
            if (self->backoff_ms > BACKOFF_MAX_MS) self->backoff_ms = BACKOFF_MAX_MS;
            self->next_ms = now + self->backoff_ms;
            if (!self->connect_failed_logged)
                tb_log(TB_LOG_WARN, comp, "pg_unavailable", "session=lock retry_ms=%llu error=\"%s\"",
                       (unsigned long long)self->backoff_ms, err);
            self->connect_failed_logged = 1;
            self->pending = 0;
            if (self->active) {
                set_role(self, 0);
                return HA_LOST;
            }
            return HA_NONE;
        }
        self->pid = PQbackendPID(self->conn);
        self->backoff_ms = 0;
        if (self->connect_failed_logged)
            tb_log(TB_LOG_INFO, comp, "pg_connected", "session=lock pid=%d", self->pid);
        self->connect_failed_logged = 0;
    }
    if (self->active) {
        if (heartbeat(self, now, err, sizeof err) != 0) {
            tb_log(TB_LOG_ERROR, comp, "lock_check_failed", "error=\"%s\"", err);
            drop(self);          /* whatever its state, the lock is not trusted any more */
            set_role(self, 0);
            self->next_ms = now + FENCED_BACKOFF * (uint64_t)self->check_ms;
            if (self->pending) {
                self->pending = 0;
                return HA_NONE;  /* never served */
            }
            return HA_LOST;
        }
        return HA_NONE;
    }
    const char *vals[] = { self->key };
    PGresult *r = pgstore_run(&self->conn, self->timeout_ms, "SELECT pg_try_advisory_lock($1::int8)", 1, NULL,
                              vals, NULL, NULL, 0, err, sizeof err);
    if (!r) {
        tb_log(TB_LOG_WARN, comp, "lock_try_failed", "error=\"%s\"", err);
        drop(self);
        return HA_NONE;
    }
    int got = PQgetvalue(r, 0, 0)[0] == 't';
    PQclear(r);
    if (got) {
        /* serve only after a grace of two check periods: a previous holder
         * whose lock session was cut (not dead) notices at its next check
         * and fences itself first -- never two hubs accepting nodes */
        set_role(self, 1);
        self->pending = 1;
        self->grace_until = now + 2 * (uint64_t)self->check_ms;
        tb_log(TB_LOG_INFO, comp, "lock_acquired", "hub=%s lock_pid=%d grace_ms=%ld", self->id, self->pid,
               2 * self->check_ms);
    }
    if (heartbeat(self, now, err, sizeof err) != 0) {
        tb_log(TB_LOG_WARN, comp, "ha_heartbeat_failed", "error=\"%s\"", err);
        drop(self);
        if (got) set_role(self, 0);
        self->pending = 0;
    }
    return HA_NONE;
}

void hub_ha_release(hub_ha_t *self, const char *why)
{
    if (!self) return;
    if (self->conn) tb_log(TB_LOG_INFO, comp, "lock_released", "reason=%s", why);
    drop(self);
    if (self->active) set_role(self, 0);
    self->pending = 0;
    /* a hub that just fenced itself lets the standbys try first */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    self->next_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u +
                    FENCED_BACKOFF * (uint64_t)self->check_ms;
}

int hub_ha_active(const hub_ha_t *self) { return self && self->active && !self->pending; }
int64_t hub_ha_since_unix_ms(const hub_ha_t *self) { return self ? self->since_ms : 0; }
int hub_ha_lock_pid(const hub_ha_t *self) { return self ? self->pid : 0; }
int hub_ha_connected(const hub_ha_t *self) { return self && self->conn != NULL; }

size_t hub_ha_instances(const hub_ha_t *self, const ha_instance_t **out)
{
    *out = self ? self->inst : NULL;
    return self ? self->ninst : 0;
}
