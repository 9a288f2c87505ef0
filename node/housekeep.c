/* housekeep.c -- when and how much the node prunes (see housekeep.h); the
 * DELETEs themselves are in store_prune.c. */
#include "housekeep.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "store_prune.h"

static const char *comp = "node";

#define HELD_WARN_EVERY_MS (24ULL * 3600 * 1000)   /* repeat of event=events_held */

/* The steps of a pass, in order. */
enum { STEP_INBOX, STEP_TOMBSTONES, STEP_EVENTS, STEP_DEAD_LETTERS, STEPS };

struct tb_housekeep {
    size_t chunk;                 /* rows per DELETE */
    long inbox_floor;             /* days the inbox keeps at least (the hub's journal retention), 0: none */
    int started;                  /* the first tick has been seen */
    uint64_t last_start;          /* when the last pass started (or the first tick) */
    int busy;                     /* a pass is under way ... */
    int step;                     /* ... at this step */
    uint64_t pass_rows[TB_HK_TABLES];
    unsigned pass_statements;
    double pass_db_s;             /* time spent in its statements */
    char held_by[128];            /* the cursor last named by event=events_held ("": none) */
    uint64_t held_warned;         /* when */
    tb_housekeep_counters_t c;
};

static const char *const table_names[TB_HK_TABLES] = {
    [TB_HK_INBOX] = "inbox",
    [TB_HK_TOMBSTONES] = "tombstones",
    [TB_HK_EVENTS] = "events",
    [TB_HK_DEAD_LETTERS] = "dead_letters",
    [TB_HK_DEAD_LETTER_BATCHES] = "dead_letter_batches",
};

const char *tb_housekeep_table_name(int table)
{
    return table >= 0 && table < TB_HK_TABLES ? table_names[table] : NULL;
}

tb_err_t tb_housekeep_new(tb_housekeep_t **out)
{
    tb_housekeep_t *self = calloc(1, sizeof *self);
    *out = self;
    if (!self)
        return TB_ERR_NOMEM;
    self->chunk = TB_HOUSEKEEP_CHUNK_ROWS;
    return TB_OK;
}

void tb_housekeep_destroy(tb_housekeep_t **self)
{
    if (!self || !*self)
        return;
    free(*self);
    *self = NULL;
}

void tb_housekeep_set_chunk(tb_housekeep_t *self, size_t rows)
{
    if (self)
        self->chunk = rows ? rows : TB_HOUSEKEEP_CHUNK_ROWS;
}

void tb_housekeep_set_inbox_floor(tb_housekeep_t *self, long days)
{
    if (self)
        self->inbox_floor = days > 0 ? days : 0;
}

long tb_housekeep_inbox_days(const tb_housekeep_t *self, const tb_node_config_t *cfg)
{
    long days = cfg->retention_inbox_days;
    if (days > 0 && self && days < self->inbox_floor)
        days = self->inbox_floor;
    return days;
}

void tb_housekeep_counters(const tb_housekeep_t *self, tb_housekeep_counters_t *out)
{
    if (!self) {
        memset(out, 0, sizeof *out);
        return;
    }
    *out = self->c;
    out->busy = self->busy;
}

/* The retention of a step's table in days (0: kept forever). */
static long step_days(const tb_housekeep_t *self, int step, const tb_node_config_t *cfg)
{
    switch (step) {
    case STEP_INBOX: return tb_housekeep_inbox_days(self, cfg);
    case STEP_TOMBSTONES: return cfg->retention_tombstone_days;
    case STEP_EVENTS: return cfg->retention_events_days;
    case STEP_DEAD_LETTERS: return cfg->retention_dead_letters_days;
    default: return 0;
    }
}

/* Ends the pass: counts it and logs what it pruned (nothing: no line). */
static void finish(tb_housekeep_t *self, const tb_node_config_t *cfg, uint64_t now, const char *result)
{
    uint64_t total = 0;
    for (int t = 0; t < TB_HK_TABLES; t++)
        total += self->pass_rows[t];
    self->busy = 0;
    self->c.passes++;
    if (!total)
        return;
    tb_log(TB_LOG_INFO, comp, "pruned",
           "node=%s inbox=%" PRIu64 " tombstones=%" PRIu64 " events=%" PRIu64 " dead_letters=%" PRIu64
           " dead_letter_batches=%" PRIu64 " statements=%u db_ms=%.0f took_ms=%" PRIu64 " result=%s",
           cfg->id, self->pass_rows[TB_HK_INBOX], self->pass_rows[TB_HK_TOMBSTONES], self->pass_rows[TB_HK_EVENTS],
           self->pass_rows[TB_HK_DEAD_LETTERS], self->pass_rows[TB_HK_DEAD_LETTER_BATCHES], self->pass_statements,
           self->pass_db_s * 1000.0, now - self->last_start, result);
}

/* The events are done: names the cursor, if any, that keeps older ones. */
static tb_err_t look_for_holder(tb_housekeep_t *self, tb_store_t *st, const tb_node_config_t *cfg, uint64_t now,
                                char *err, size_t errlen)
{
    char name[sizeof self->held_by], q[2 * sizeof self->held_by];
    int64_t last_id = 0;
    tb_err_t rc = tb_store_events_holder(st, cfg->retention_events_days, cfg->retention_idle_cursor_days, name,
                                         sizeof name, &last_id, err, errlen);
    if (rc != TB_OK)
        return rc;
    if (!name[0]) {
        self->held_by[0] = '\0';
        return TB_OK;
    }
    if (strcmp(name, self->held_by) != 0 || now - self->held_warned >= HELD_WARN_EVERY_MS) {
        tb_log(TB_LOG_WARN, comp, "events_held",
               "node=%s cursor=%s last_id=%" PRId64 " events_days=%ld idle_cursor_days=%ld"
               " hint=\"the application reading this cursor is behind or gone: let it catch up, or delete its"
               " row in tongban.event_cursors, or set retention.events_idle_cursor_days\"",
               cfg->id, tb_log_quote(name, q, sizeof q), last_id, cfg->retention_events_days,
               cfg->retention_idle_cursor_days);
        snprintf(self->held_by, sizeof self->held_by, "%s", name);
        self->held_warned = now;
    }
    return TB_OK;
}

/* Runs one DELETE of the current step; *more = 0 when its table is done. */
static tb_err_t run_step(tb_housekeep_t *self, tb_store_t *st, const tb_node_config_t *cfg, int *more, char *err,
                         size_t errlen)
{
    int64_t n = 0, m = 0;
    tb_err_t rc;
    long days = step_days(self, self->step, cfg);
    double t0 = tb_metrics_now();
    switch (self->step) {
    case STEP_INBOX:
        rc = tb_store_prune_inbox(st, days, self->chunk, &n, err, errlen);
        self->pass_rows[TB_HK_INBOX] += (uint64_t)n;
        self->c.pruned[TB_HK_INBOX] += (uint64_t)n;
        break;
    case STEP_TOMBSTONES:
        rc = tb_store_prune_tombstones(st, days, self->chunk, &n, err, errlen);
        self->pass_rows[TB_HK_TOMBSTONES] += (uint64_t)n;
        self->c.pruned[TB_HK_TOMBSTONES] += (uint64_t)n;
        break;
    case STEP_EVENTS:
        rc = tb_store_prune_events(st, days, cfg->retention_idle_cursor_days, self->chunk, &n, err, errlen);
        self->pass_rows[TB_HK_EVENTS] += (uint64_t)n;
        self->c.pruned[TB_HK_EVENTS] += (uint64_t)n;
        break;
    default:
        rc = tb_store_prune_dead_letters(st, days, self->chunk, &n, &m, err, errlen);
        self->pass_rows[TB_HK_DEAD_LETTERS] += (uint64_t)n;
        self->c.pruned[TB_HK_DEAD_LETTERS] += (uint64_t)n;
        self->pass_rows[TB_HK_DEAD_LETTER_BATCHES] += (uint64_t)m;
        self->c.pruned[TB_HK_DEAD_LETTER_BATCHES] += (uint64_t)m;
        break;
    }
    self->pass_db_s += tb_metrics_now() - t0;
    self->pass_statements++;
    self->c.statements++;
    *more = rc == TB_OK && (uint64_t)n >= self->chunk;
    return rc;
}

tb_err_t tb_housekeep_tick(tb_housekeep_t *self, tb_store_t *st, const tb_node_config_t *cfg, uint64_t now_ms,
                           char *err, size_t errlen)
{
    char q[1024];
    if (!self || !cfg)
        return TB_OK;
    if (!self->started) {             /* the first pass one interval from now */
        self->started = 1;
        self->last_start = now_ms;
        return TB_OK;
    }
    if (!st)
        return TB_OK;                 /* PostgreSQL away: due or under way, the pass waits */
    if (!self->busy) {
        uint64_t interval = (uint64_t)cfg->retention_interval_s * 1000u;
        if (now_ms >= self->last_start && now_ms - self->last_start < interval)
            return TB_OK;
        self->busy = 1;
        self->step = 0;
        self->last_start = now_ms;
        memset(self->pass_rows, 0, sizeof self->pass_rows);
        self->pass_statements = 0;
        self->pass_db_s = 0;
    }
    while (self->step < STEPS && step_days(self, self->step, cfg) == 0)
        self->step++;                 /* kept forever */
    if (self->step >= STEPS) {
        finish(self, cfg, now_ms, "done");
        return TB_OK;
    }

    int more = 0, step = self->step;
    tb_err_t rc = run_step(self, st, cfg, &more, err, errlen);
    if (rc == TB_OK && !more && step == STEP_EVENTS)
        rc = look_for_holder(self, st, cfg, now_ms, err, errlen);
    if (rc != TB_OK) {
        self->c.errors++;
        tb_log(TB_LOG_WARN, comp, "housekeeping_failed", "node=%s table=%s error=%s", cfg->id,
               table_names[step], tb_log_quote(err, q, sizeof q));   /* step i counts in table i */
        finish(self, cfg, now_ms, "failed");
        return rc;
    }
    if (more)
        return TB_OK;                 /* the same table at the next tick */
    self->step++;
    while (self->step < STEPS && step_days(self, self->step, cfg) == 0)
        self->step++;
    if (self->step >= STEPS)
        finish(self, cfg, now_ms, "done");
    return TB_OK;
}
