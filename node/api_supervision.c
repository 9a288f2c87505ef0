/* api_supervision.c -- the client API's generic records (record.put, get,
 * delete), the supervision operations (supitem.put / list, risk.publish,
 * complaint.file / ack / get) and the event stream (events.next, which may
 * wait, and events.ack). The arguments were checked (and the bodies built)
 * by api_args.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "errbuf.h"

#define OP(fn) int fn(api_t *self, const req_t *rq, api_args_t *a, uint64_t now, json_t **res, char *err, size_t errlen)

/* ------------------------------------------------------------------------
 * Records
 * ------------------------------------------------------------------------ */

OP(api_op_record_put)
{
    tb_err_t rc;
    (void)rq;
    (void)now;
    char *text = json_dumps(a->value, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        return TB_ERR_NOMEM;
    const char *q[3] = {a->catalog, a->key, text};
    rc = api_db(self, "record_put", q, 3, res, err, errlen);
    free(text);
    if (rc == TB_OK)
        self->wrote = 1;
    return rc;
}

OP(api_op_record_get)
{
    (void)rq;
    (void)now;
    const char *q[2] = {a->catalog, a->key};
    tb_err_t rc = api_db(self, "record_get", q, 2, res, err, errlen);
    if (rc == TB_ERR_NOTFOUND)
        tb_seterr(err, errlen, "no record %s/%s", a->catalog, a->key);
    return rc;
}

OP(api_op_record_delete)
{
    (void)rq;
    (void)now;
    const char *q[2] = {a->catalog, a->key};
    tb_err_t rc = api_db(self, "record_delete", q, 2, NULL, err, errlen);
    if (rc == TB_ERR_NOTFOUND)
        tb_seterr(err, errlen, "no record %s/%s", a->catalog, a->key);
    if (rc == TB_OK) {
        self->wrote = 1;
        *res = json_object();
    }
    return rc;
}

/* ------------------------------------------------------------------------
 * Supervision
 * ------------------------------------------------------------------------ */

/* Writes the body the check built under catalog/key (domain_insert or
 * domain_put); on success it becomes the result. */
static int write_body(api_t *self, api_args_t *a, const char *fn, const char *catalog, const char *key,
                      json_t **res, char *err, size_t errlen)
{
    json_t *body = a->body;
    a->body = NULL;
    tb_err_t rc = api_db_write(self, fn, catalog, key, body, err, errlen);
    if (rc == TB_OK)
        *res = body;
    else
        json_decref(body);
    return rc;
}

OP(api_op_supitem_put)
{
    (void)rq;
    (void)now;
    return write_body(self, a, "domain_put", "tb.supitem", jstr(a->body, "code"), res, err, errlen);
}

OP(api_op_supitem_list)
{
    (void)rq;
    (void)now;
    const char *q[1] = {a->level};
    return api_db(self, "supitem_list", q, 1, res, err, errlen);
}

OP(api_op_risk_publish)
{
    (void)rq;
    (void)now;
    return write_body(self, a, "domain_insert", "tb.risk", a->new_id, res, err, errlen);
}

OP(api_op_complaint_file)
{
    (void)rq;
    (void)now;
    const char *region = jstr(a->body, "region");
    int revoked = 0;
    if (self->node->ndir && strcmp(region, api_me(self)) != 0 && !api_dir_cert(self->node, region, &revoked)) {
        tb_seterr(err, errlen, "region: node %s is not in the hub's directory", region);
        return TB_ERR_INVALID;
    }
    return write_body(self, a, "domain_insert", "tb.complaint", a->new_id, res, err, errlen);
}

OP(api_op_complaint_ack)
{
    char at[40];
    const char *id = a->complaint_id;
    json_t *cur = NULL, *body = NULL;
    tb_err_t rc;
    (void)rq;
    (void)now;
    const char *q[1] = {id};
    if ((rc = api_db(self, "complaint_get", q, 1, &cur, err, errlen)) != TB_OK) {
        if (rc == TB_ERR_NOTFOUND)
            tb_seterr(err, errlen, "no complaint %s on this node", id);
        return rc;
    }
    json_t *complaint = api_unwrap(cur, NULL);
    json_decref(cur);
    rc = domain_receipt(a->args, complaint, api_me(self), domain_now(at, sizeof at), &body, err, errlen);
    json_decref(complaint);
    if (rc == TB_OK)
        rc = api_db_write(self, "domain_insert", "tb.complaint_receipt", id, body, err, errlen);
    if (rc == TB_ERR_DUPLICATE)
        tb_seterr(err, errlen, "complaint %s is already acknowledged", id);
    if (rc == TB_OK)
        *res = body;
    else
        json_decref(body);
    return rc;
}

OP(api_op_complaint_get)
{
    (void)rq;
    (void)now;
    const char *q[1] = {a->complaint_id};
    tb_err_t rc = api_db(self, "complaint_get", q, 1, res, err, errlen);
    if (rc == TB_ERR_NOTFOUND)
        tb_seterr(err, errlen, "no complaint %s on this node", a->complaint_id);
    return rc;
}

/* ------------------------------------------------------------------------
 * Events
 * ------------------------------------------------------------------------ */

/* events_next(cursor, after, max): TB_OK with *res; *empty = no events. */
static tb_err_t events_fetch(api_t *self, const char *cursor, const char *after, const char *max, json_t **res,
                             int *empty, char *err, size_t errlen)
{
    const char *q[3] = {cursor, after, max};
    tb_err_t rc = api_db(self, "events_next", q, 3, res, err, errlen);
    *empty = rc == TB_OK && json_array_size(json_object_get(*res, "events")) == 0;
    return rc;
}

OP(api_op_events_next)
{
    char maxs[16], afters[24];
    int empty = 0;
    tb_err_t rc;
    snprintf(maxs, sizeof maxs, "%lld", a->max);
    snprintf(afters, sizeof afters, "%lld", a->after);
    if ((rc = events_fetch(self, a->cursor, a->after >= 0 ? afters : NULL, maxs, res, &empty, err, errlen)) !=
            TB_OK ||
        !empty || a->wait_ms == 0)
        return rc;
    park_t *p = api_park_new(self, rq, P_EVENTS, now + (uint64_t)a->wait_ms);
    if (!p)
        return TB_OK;          /* no room to wait: the empty answer now */
    p->cursor = strdup(a->cursor);
    p->after = a->after >= 0 ? strdup(afters) : NULL;
    snprintf(p->max, sizeof p->max, "%s", maxs);
    p->next_check = now + API_EVENTS_RECHECK_MS;
    if (!p->cursor || (a->after >= 0 && !p->after)) {
        api_park_free(p);
        return TB_OK;
    }
    json_decref(*res);
    *res = NULL;
    return PARKED;
}

void api_events_recheck(api_t *self, park_t *p, uint64_t now)
{
    json_t *res = NULL;
    int empty = 0;
    char err[ERRLEN];
    tb_err_t rc = events_fetch(self, p->cursor, p->after, p->max, &res, &empty, err, sizeof err);
    if (rc != TB_OK || !empty || now >= p->deadline) {
        api_finish(self, &p->rq, rc, err, rc == TB_OK ? res : NULL);
        json_decref(res);
        api_park_free(p);
        return;
    }
    json_decref(res);
    p->next_check = now + API_EVENTS_RECHECK_MS;
}

OP(api_op_events_ack)
{
    char ids[24];
    (void)rq;
    (void)now;
    snprintf(ids, sizeof ids, "%lld", a->id);
    const char *q[2] = {a->cursor, ids};
    return api_db(self, "events_ack", q, 2, res, err, errlen);
}
