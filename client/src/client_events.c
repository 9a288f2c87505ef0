/* client_events.c -- the node's event stream (events.next / events.ack)
 * with a durable, named cursor: fetched in batches, handed out one by one. */
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"

#define BATCH_MAX 100          /* events.next max per request */
#define WAIT_MAX_MS 30000      /* events.next wait_ms bound   */

struct tb_event {
    json_t *obj;               /* the event object (owned by the batch array) */
    long long id;
    const char *kind, *key, *origin, *at;   /* inside obj, or ""          */
    char *body;                /* compact text of obj.body                    */
    char *json;                /* compact text of obj                         */
};

struct tb_events {
    tb_client_t *c;
    char *cursor;
    json_t *array;             /* the batch as received                       */
    tb_event_t *batch;
    size_t n, pos;             /* events in the batch; next one to hand out   */
    long long after;           /* id of the last event handed out, 0 = none   */
};

static void batch_free(tb_events_t *ev)
{
    for (size_t i = 0; i < ev->n; i++) {
        free(ev->batch[i].body);
        free(ev->batch[i].json);
    }
    free(ev->batch);
    json_decref(ev->array);
    ev->batch = NULL;
    ev->array = NULL;
    ev->n = ev->pos = 0;
}

tb_err_t tb_events_open(tb_client_t *c, const char *cursor_name, tb_events_t **out)
{
    tb_err_t e;
    if (out) *out = NULL;
    if ((e = tbc_begin(c)) != TB_OK || (e = tbc_need(c, "cursor_name", cursor_name)) != TB_OK) return e;
    if (!out) return tbc_fail(c, TB_ERR_INVALID, "tb_events_open: out is NULL");
    tb_events_t *ev = calloc(1, sizeof *ev);
    if (!ev || !(ev->cursor = strdup(cursor_name))) {
        free(ev);
        return tbc_fail(c, TB_ERR_NOMEM, "out of memory");
    }
    ev->c = c;
    *out = ev;
    return TB_OK;
}

void tb_events_close(tb_events_t **ev)
{
    if (!ev || !*ev) return;
    batch_free(*ev);
    free((*ev)->cursor);
    free(*ev);
    *ev = NULL;
}

static const char *str_or_empty(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

void tbc_events_free(tb_event_t *b, size_t n)
{
    for (size_t i = 0; b && i < n; i++) {
        free(b[i].body);
        free(b[i].json);
    }
    free(b);
}

const tb_event_t *tbc_event_at(const tb_event_t *b, size_t i)
{
    return &b[i];
}

/* Parses the events array of an events.next result into a new batch (n
 * events after `after`, in id order). Returns TB_OK (n may be 0) or
 * TB_ERR_PROTO / TB_ERR_NOMEM with c's error set. */
tb_err_t tbc_events_parse(tb_client_t *c, json_t *res, long long after, tb_event_t **out, size_t *out_n)
{
    json_t *arr = json_object_get(res, "events");
    *out = NULL;
    *out_n = 0;
    if (!json_is_array(arr)) return tbc_fail(c, TB_ERR_PROTO, "events.next: the node's result has no events array");
    size_t n = json_array_size(arr);
    if (n == 0) return TB_OK;
    tb_event_t *b = calloc(n, sizeof *b);
    if (!b) return tbc_fail(c, TB_ERR_NOMEM, "out of memory");
    long long prev = after;
    tb_err_t e = TB_OK;
    for (size_t i = 0; i < n && e == TB_OK; i++) {
        json_t *o = json_array_get(arr, i);
        json_t *id = json_object_get(o, "id");
        tb_event_t *ev = &b[i];
        if (!json_is_object(o) || !json_is_integer(id) || json_integer_value(id) <= prev) {
            e = tbc_fail(c, TB_ERR_PROTO, "events.next: event %zu of the node's result has no id after %lld", i, prev);
            break;
        }
        ev->obj = o;
        ev->id = prev = (long long)json_integer_value(id);
        ev->kind = str_or_empty(o, "kind");
        ev->key = str_or_empty(o, "key");
        ev->origin = str_or_empty(o, "origin");
        ev->at = str_or_empty(o, "at");
        if (!(ev->body = tbc_dump(json_object_get(o, "body"))) || !(ev->json = tbc_dump(o)))
            e = tbc_fail(c, TB_ERR_NOMEM, "out of memory");
    }
    if (e != TB_OK) {
        tbc_events_free(b, n);
        return e;
    }
    *out = b;
    *out_n = n;
    return TB_OK;
}

tb_err_t tb_events_next(tb_events_t *ev, int wait_ms, const tb_event_t **out)
{
    json_t *args, *res = NULL;
    tb_err_t e;

    if (out) *out = NULL;
    if (!ev) return TB_ERR_INVALID;
    tb_client_t *c = ev->c;
    if ((e = tbc_begin(c)) != TB_OK) return e;
    if (!out) return tbc_fail(c, TB_ERR_INVALID, "tb_events_next: out is NULL");
    if (wait_ms < 0 || wait_ms > WAIT_MAX_MS)
        return tbc_fail(c, TB_ERR_INVALID, "wait_ms: expected 0..%d, got %d", WAIT_MAX_MS, wait_ms);
    if (ev->pos >= ev->n) {
        tb_event_t *b = NULL;
        size_t n = 0;
        if ((e = tbc_args(c, &args, "cursor", ev->cursor, (const char *)NULL)) != TB_OK) return e;
        if (json_object_set_new(args, "max", json_integer(BATCH_MAX)) != 0 ||
            json_object_set_new(args, "wait_ms", json_integer(wait_ms)) != 0 ||
            (ev->after > 0 && json_object_set_new(args, "after", json_integer(ev->after)) != 0)) {
            json_decref(args);
            return tbc_fail(c, TB_ERR_NOMEM, "out of memory");
        }
        e = tbc_call(c, "events.next", args, c->timeout_ms + wait_ms, &res);
        if (e == TB_OK) e = tbc_events_parse(c, res, ev->after, &b, &n);
        if (e == TB_OK && n == 0)
            e = tbc_fail(c, TB_ERR_TIMEOUT, "events.next: no event on cursor %s within %d ms", ev->cursor, wait_ms);
        if (e != TB_OK) {                    /* the last event handed out stays valid */
            json_decref(res);
            return e;
        }
        batch_free(ev);
        ev->array = json_incref(json_object_get(res, "events"));
        ev->batch = b;
        ev->n = n;
        json_decref(res);
    }
    tb_event_t *got = &ev->batch[ev->pos++];
    ev->after = got->id;
    *out = got;
    return TB_OK;
}

tb_err_t tb_events_ack_id(tb_events_t *ev, long long id)
{
    json_t *args;
    tb_err_t rc;

    if (!ev) return TB_ERR_INVALID;
    tb_client_t *c = ev->c;
    if ((rc = tbc_begin(c)) != TB_OK) return rc;
    if (id <= 0) return tbc_fail(c, TB_ERR_INVALID, "events.ack: no event (id %lld)", id);
    if ((rc = tbc_args(c, &args, "cursor", ev->cursor, (const char *)NULL)) != TB_OK) return rc;
    if (json_object_set_new(args, "id", json_integer(id)) != 0) {
        json_decref(args);
        return tbc_fail(c, TB_ERR_NOMEM, "out of memory");
    }
    return tbc_call(c, "events.ack", args, c->timeout_ms, NULL);
}

tb_err_t tb_events_ack(tb_events_t *ev, const tb_event_t *e)
{
    if (ev && !e) {
        tbc_begin(ev->c);
        return tbc_fail(ev->c, TB_ERR_INVALID, "tb_events_ack: no event");
    }
    return tb_events_ack_id(ev, e ? e->id : 0);
}

long long tb_event_id(const tb_event_t *e)
{
    return e ? e->id : 0;
}

const char *tb_event_kind(const tb_event_t *e)
{
    return e ? e->kind : NULL;
}

const char *tb_event_key(const tb_event_t *e)
{
    return e ? e->key : NULL;
}

const char *tb_event_origin(const tb_event_t *e)
{
    return e ? e->origin : NULL;
}

const char *tb_event_at(const tb_event_t *e)
{
    return e ? e->at : NULL;
}

const char *tb_event_body(const tb_event_t *e)
{
    return e ? e->body : NULL;
}

const char *tb_event_json(const tb_event_t *e)
{
    return e ? e->json : NULL;
}
