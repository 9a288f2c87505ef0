/* api_case.c -- the client API's case operations: case.submit (the case
 * and its submit event, accepted here), case.act and case.rate (a new
 * event on a case this node has), case.get, case.history, case.list. The
 * arguments were checked (and the event built) by api_args.c. */
#include <stdio.h>
#include <string.h>

#include "api_internal.h"
#include "errbuf.h"

/* ------------------------------------------------------------------------
 * Cases
 * ------------------------------------------------------------------------ */

/* Answers with the case as tongban.case_get shows it (after a write). */
static tb_err_t case_result(api_t *self, const char *case_id, json_t *fallback, json_t **res, char *err,
                            size_t errlen)
{
    const char *a[1] = {case_id};
    tb_err_t rc = api_db(self, "case_get", a, 1, res, err, errlen);
    if (rc != TB_OK) {     /* written, but not readable back: answer what was written */
        *res = fallback;
        return TB_OK;
    }
    json_decref(fallback);
    return TB_OK;
}

int api_op_case_submit(api_t *self, const req_t *rq, api_args_t *a, uint64_t now, json_t **res, char *err,
                       size_t errlen)
{
    char key[TB_ID_MAX + 64];
    const char *case_id = a->new_id, *evid = a->event_id;
    json_t *ev = a->body;      /* built by the check (domain_case_submit) */
    node_t *node = self->node;
    tb_err_t rc;
    (void)rq;
    (void)now;
    a->body = NULL;
    /* handling nodes the hub does not know would never get the case */
    const json_t *h = json_object_get(ev, "handling");
    for (size_t i = 0; node->ndir && i < json_array_size(h); i++) {
        const char *id = json_string_value(json_array_get(h, i));
        int revoked = 0;
        if (strcmp(id, api_me(self)) != 0 && !api_dir_cert(node, id, &revoked)) {
            tb_seterr(err, errlen, "handling[%zu]: node %s is not in the hub's directory", i, id);
            json_decref(ev);
            return TB_ERR_INVALID;
        }
    }
    snprintf(key, sizeof key, "%s/%s", case_id, evid);
    if ((rc = api_seal_and_write(self, DOMAIN_CASE_EVENT, "domain_insert", "tb.case_event", key, ev, err, errlen)) !=
        TB_OK) {
        json_decref(ev);
        return rc;
    }
    return case_result(self, case_id, ev, res, err, errlen);
}

/* case.act / case.rate: the event the check built (domain_case_event), on a case this node has. */
static int case_event(api_t *self, api_args_t *a, json_t **res, char *err, size_t errlen)
{
    char key[256];
    const char *evid = a->event_id;
    json_t *ev = a->body, *cur = NULL;
    tb_err_t rc;
    a->body = NULL;
    const char *case_id = jstr(ev, "case_id");
    const char *q[1] = {case_id};
    if ((rc = api_db(self, "case_get", q, 1, &cur, err, errlen)) != TB_OK) {
        if (rc == TB_ERR_NOTFOUND)
            tb_seterr(err, errlen, "no case %s on this node", case_id);
        json_decref(ev);
        return rc;
    }
    json_decref(cur);
    snprintf(key, sizeof key, "%s/%s", case_id, evid);
    if ((rc = api_seal_and_write(self, DOMAIN_CASE_EVENT, "domain_insert", "tb.case_event", key, ev, err, errlen)) !=
        TB_OK) {
        json_decref(ev);
        return rc;
    }
    return case_result(self, case_id, ev, res, err, errlen);
}

int api_op_case_act(api_t *self, const req_t *rq, api_args_t *a, uint64_t now, json_t **res, char *err,
                    size_t errlen)
{
    (void)rq;
    (void)now;
    return case_event(self, a, res, err, errlen);
}

int api_op_case_rate(api_t *self, const req_t *rq, api_args_t *a, uint64_t now, json_t **res, char *err,
                     size_t errlen)
{
    (void)rq;
    (void)now;
    return case_event(self, a, res, err, errlen);
}

static int case_by_id(api_t *self, const char *case_id, const char *fn, json_t **res, char *err, size_t errlen)
{
    const char *q[1] = {case_id};
    tb_err_t rc = api_db(self, fn, q, 1, res, err, errlen);
    if (rc == TB_ERR_NOTFOUND)
        tb_seterr(err, errlen, "no case %s on this node", case_id);
    return rc;
}

int api_op_case_get(api_t *self, const req_t *rq, api_args_t *a, uint64_t now, json_t **res, char *err,
                    size_t errlen)
{
    (void)rq;
    (void)now;
    return case_by_id(self, a->case_id, "case_get", res, err, errlen);
}

int api_op_case_history(api_t *self, const req_t *rq, api_args_t *a, uint64_t now, json_t **res, char *err,
                        size_t errlen)
{
    (void)rq;
    (void)now;
    return case_by_id(self, a->case_id, "case_history", res, err, errlen);
}

int api_op_case_list(api_t *self, const req_t *rq, api_args_t *a, uint64_t now, json_t **res, char *err,
                     size_t errlen)
{
    (void)rq;
    (void)now;
    const char *q[2] = {a->state, a->overdue};
    return api_db(self, "case_list", q, 2, res, err, errlen);
}

/* ------------------------------------------------------------------------
 * Attachments: tb.chunk rows (migration 8 checks and routes them)
 * ------------------------------------------------------------------------ */

int api_op_case_attach(api_t *self, const req_t *rq, api_args_t *a, uint64_t now, json_t **res, char *err,
                       size_t errlen)
{
    char size[24], index[24];
    (void)rq;
    (void)now;
    snprintf(size, sizeof size, "%lld", a->size);
    snprintf(index, sizeof index, "%lld", a->index);
    const char *q[5] = {a->case_id, a->sha256, size, index, a->data};
    tb_err_t rc = api_db(self, "attachment_put", q, 5, res, err, errlen);
    if (rc == TB_ERR_NOTFOUND)
        tb_seterr(err, errlen, "no case %s on this node", a->case_id);
    if (rc == TB_OK)
        self->wrote = 1;
    return rc;
}

int api_op_case_attachment(api_t *self, const req_t *rq, api_args_t *a, uint64_t now, json_t **res, char *err,
                           size_t errlen)
{
    (void)rq;
    (void)now;
    const char *q[2] = {a->case_id, a->sha256};
    tb_err_t rc = api_db(self, "attachment_status", q, 2, res, err, errlen);
    if (rc == TB_ERR_NOTFOUND)
        tb_seterr(err, errlen, "no case %s on this node", a->case_id);
    return rc;
}

int api_op_case_attachment_chunk(api_t *self, const req_t *rq, api_args_t *a, uint64_t now, json_t **res,
                                 char *err, size_t errlen)
{
    char index[24];
    (void)rq;
    (void)now;
    snprintf(index, sizeof index, "%lld", a->index);
    const char *q[3] = {a->case_id, a->sha256, index};
    tb_err_t rc = api_db(self, "attachment_get", q, 3, res, err, errlen);
    if (rc == TB_ERR_NOTFOUND)
        tb_seterr(err, errlen, "case %s: no chunk %s of %s on this node", a->case_id, index, a->sha256);
    return rc;
}
