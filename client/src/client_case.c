/* client_case.c -- the typed calls on cross-region cases (case.*) and on
 * supervision: items, risk warnings, complaints (supitem.*, risk.*,
 * complaint.*). */
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"

struct tb_case {
    json_t *obj;               /* the case object the node returned */
    char *json;                /* its compact text                  */
};

static const char *const action_names[] = {
    [TB_CASE_WITHDRAW] = "withdraw", [TB_CASE_ACCEPT] = "accept",       [TB_CASE_REJECT] = "reject",
    [TB_CASE_START] = "start",       [TB_CASE_PART_DONE] = "part_done", [TB_CASE_DECIDE] = "decide",
    [TB_CASE_DELIVER] = "deliver",
};
#define N_ACTIONS (sizeof action_names / sizeof action_names[0])

const char *tb_case_action_name(tb_case_action_t a)
{
    if ((int)a < 0 || (size_t)a >= N_ACTIONS) return NULL;
    return action_names[a];
}

tb_err_t tb_case_action_parse(const char *name, tb_case_action_t *out)
{
    if (!name || !out) return TB_ERR_INVALID;
    for (size_t i = 0; i < N_ACTIONS; i++) {
        if (strcmp(name, action_names[i]) == 0) {
            *out = (tb_case_action_t)i;
            return TB_OK;
        }
    }
    return TB_ERR_INVALID;
}

/* ---- cases ---- */

/* Calls op with args (consumed); on TB_OK makes a case handle of the
 * result into *out (if out is non-NULL). */
static tb_err_t case_call(tb_client_t *c, const char *op, json_t *args, tb_case_t **out)
{
    json_t *res = NULL;
    tb_err_t e = tbc_call(c, op, args, c->timeout_ms, &res);
    if (e != TB_OK || !out) goto done;
    if (!json_is_string(json_object_get(res, "case_id"))) {
        e = tbc_fail(c, TB_ERR_PROTO, "%s: the node's result is not a case (no case_id)", op);
        goto done;
    }
    tb_case_t *cs = calloc(1, sizeof *cs);
    if (!cs || !(cs->json = tbc_dump(res))) {
        free(cs);
        e = tbc_fail(c, TB_ERR_NOMEM, "%s: out of memory", op);
        goto done;
    }
    cs->obj = res;
    res = NULL;
    *out = cs;
done:
    json_decref(res);
    return e;
}

/* Calls op with args (consumed); on TB_OK *json (if non-NULL) is the
 * result text; array_key (if non-NULL) must be an array member of it. */
static tb_err_t json_call(tb_client_t *c, const char *op, json_t *args, const char *array_key, char **json)
{
    json_t *res = NULL;
    tb_err_t e = tbc_call(c, op, args, c->timeout_ms, &res);
    if (e == TB_OK && array_key && !json_is_array(json_object_get(res, array_key)))
        e = tbc_fail(c, TB_ERR_PROTO, "%s: the node's result has no %s array", op, array_key);
    if (e == TB_OK && json && !(*json = tbc_dump(res))) e = tbc_fail(c, TB_ERR_NOMEM, "%s: out of memory", op);
    json_decref(res);
    return e;
}

tb_err_t tb_case_submit(tb_client_t *c, const char *submit_json, tb_case_t **out)
{
    tb_err_t e;
    if (out) *out = NULL;
    if ((e = tbc_begin(c)) != TB_OK) return e;
    json_t *args = tbc_parse_object(c, "submit_json", submit_json);
    if (!args) return TB_ERR_INVALID;
    return case_call(c, "case.submit", args, out);
}

tb_err_t tb_case_act(tb_client_t *c, const char *case_id, tb_case_action_t action, const char *detail,
                     const char *result, tb_case_t **out)
{
    json_t *args;
    tb_err_t e;
    if (out) *out = NULL;
    if ((e = tbc_begin(c)) != TB_OK || (e = tbc_need(c, "case_id", case_id)) != TB_OK) return e;
    const char *name = tb_case_action_name(action);
    if (!name) return tbc_fail(c, TB_ERR_INVALID, "action: unknown value %d", (int)action);
    if ((e = tbc_args(c, &args, "case_id", case_id, "action", name, "detail", detail, "result", result,
                      (const char *)NULL)) != TB_OK)
        return e;
    return case_call(c, "case.act", args, out);
}

tb_err_t tb_case_rate(tb_client_t *c, const char *case_id, int score, const char *comment, tb_case_t **out)
{
    json_t *args;
    tb_err_t e;
    if (out) *out = NULL;
    if ((e = tbc_begin(c)) != TB_OK || (e = tbc_need(c, "case_id", case_id)) != TB_OK) return e;
    if (score < 1 || score > 5) return tbc_fail(c, TB_ERR_INVALID, "score: expected 1..5, got %d", score);
    if ((e = tbc_args(c, &args, "case_id", case_id, "comment", comment, (const char *)NULL)) != TB_OK) return e;
    if (json_object_set_new(args, "score", json_integer(score)) != 0) {
        json_decref(args);
        return tbc_fail(c, TB_ERR_NOMEM, "out of memory");
    }
    return case_call(c, "case.rate", args, out);
}

tb_err_t tb_case_get(tb_client_t *c, const char *case_id, tb_case_t **out)
{
    json_t *args;
    tb_err_t e;
    if (out) *out = NULL;
    if ((e = tbc_begin(c)) != TB_OK || (e = tbc_need(c, "case_id", case_id)) != TB_OK) return e;
    if ((e = tbc_args(c, &args, "case_id", case_id, (const char *)NULL)) != TB_OK) return e;
    return case_call(c, "case.get", args, out);
}

tb_err_t tb_case_history(tb_client_t *c, const char *case_id, char **json)
{
    json_t *args;
    tb_err_t e;
    if (json) *json = NULL;
    if ((e = tbc_begin(c)) != TB_OK || (e = tbc_need(c, "case_id", case_id)) != TB_OK) return e;
    if ((e = tbc_args(c, &args, "case_id", case_id, (const char *)NULL)) != TB_OK) return e;
    return json_call(c, "case.history", args, "events", json);
}

tb_err_t tb_case_list(tb_client_t *c, const char *state, int overdue_only, char **json)
{
    json_t *args;
    tb_err_t e;
    if (json) *json = NULL;
    if ((e = tbc_begin(c)) != TB_OK) return e;
    if ((e = tbc_args(c, &args, "state", state && *state ? state : NULL, (const char *)NULL)) != TB_OK) return e;
    if (overdue_only && json_object_set_new(args, "overdue", json_true()) != 0) {
        json_decref(args);
        return tbc_fail(c, TB_ERR_NOMEM, "out of memory");
    }
    return json_call(c, "case.list", args, "cases", json);
}

const char *tb_case_id(const tb_case_t *cs)
{
    return cs ? json_string_value(json_object_get(cs->obj, "case_id")) : NULL;
}

const char *tb_case_state(const tb_case_t *cs)
{
    return cs ? json_string_value(json_object_get(cs->obj, "state")) : NULL;
}

int tb_case_overdue(const tb_case_t *cs)
{
    return cs ? json_is_true(json_object_get(cs->obj, "overdue")) : 0;
}

const char *tb_case_json(const tb_case_t *cs)
{
    return cs ? cs->json : "";
}

void tb_case_free(tb_case_t **cs)
{
    if (!cs || !*cs) return;
    json_decref((*cs)->obj);
    free((*cs)->json);
    free(*cs);
    *cs = NULL;
}

/* ---- supervision ---- */

tb_err_t tb_supitem_put(tb_client_t *c, const char *code, const char *name, const char *level, const char *parent,
                        const char *region, char **json)
{
    json_t *args;
    tb_err_t e;
    if (json) *json = NULL;
    if ((e = tbc_begin(c)) != TB_OK || (e = tbc_need(c, "code", code)) != TB_OK ||
        (e = tbc_need(c, "name", name)) != TB_OK || (e = tbc_need(c, "level", level)) != TB_OK ||
        (e = tbc_need(c, "region", region)) != TB_OK)
        return e;
    if ((e = tbc_args(c, &args, "code", code, "name", name, "level", level, "parent", parent && *parent ? parent : NULL,
                      "region", region, (const char *)NULL)) != TB_OK)
        return e;
    return json_call(c, "supitem.put", args, NULL, json);
}

tb_err_t tb_supitem_list(tb_client_t *c, const char *level, char **json)
{
    json_t *args;
    tb_err_t e;
    if (json) *json = NULL;
    if ((e = tbc_begin(c)) != TB_OK) return e;
    if ((e = tbc_args(c, &args, "level", level && *level ? level : NULL, (const char *)NULL)) != TB_OK) return e;
    return json_call(c, "supitem.list", args, "items", json);
}

/* Calls op with args (consumed); *id_out (if non-NULL) = the string member
 * id_key of the result. */
static tb_err_t id_call(tb_client_t *c, const char *op, json_t *args, const char *id_key, char **id_out)
{
    json_t *res = NULL;
    tb_err_t e = tbc_call(c, op, args, c->timeout_ms, &res);
    if (e == TB_OK) {
        char *id = NULL;
        e = tbc_dup_member(c, op, res, id_key, &id);
        if (id_out) *id_out = id;
        else free(id);
    }
    json_decref(res);
    return e;
}

tb_err_t tb_risk_publish(tb_client_t *c, int level, const char *title, const char *detail, const char *region,
                         char **risk_id)
{
    json_t *args;
    tb_err_t e;
    if (risk_id) *risk_id = NULL;
    if ((e = tbc_begin(c)) != TB_OK || (e = tbc_need(c, "title", title)) != TB_OK ||
        (e = tbc_need(c, "detail", detail)) != TB_OK)
        return e;
    if (level < 1 || level > 4) return tbc_fail(c, TB_ERR_INVALID, "level: expected 1..4, got %d", level);
    if ((e = tbc_args(c, &args, "title", title, "detail", detail, "region", region && *region ? region : NULL,
                      (const char *)NULL)) != TB_OK)
        return e;
    if (json_object_set_new(args, "level", json_integer(level)) != 0) {
        json_decref(args);
        return tbc_fail(c, TB_ERR_NOMEM, "out of memory");
    }
    return id_call(c, "risk.publish", args, "risk_id", risk_id);
}

tb_err_t tb_complaint_file(tb_client_t *c, const char *region, const char *kind, const char *subject,
                           const char *detail, char **complaint_id)
{
    json_t *args;
    tb_err_t e;
    if (complaint_id) *complaint_id = NULL;
    if ((e = tbc_begin(c)) != TB_OK || (e = tbc_need(c, "region", region)) != TB_OK ||
        (e = tbc_need(c, "kind", kind)) != TB_OK || (e = tbc_need(c, "subject", subject)) != TB_OK ||
        (e = tbc_need(c, "detail", detail)) != TB_OK)
        return e;
    if ((e = tbc_args(c, &args, "region", region, "kind", kind, "subject", subject, "detail", detail,
                      (const char *)NULL)) != TB_OK)
        return e;
    return id_call(c, "complaint.file", args, "complaint_id", complaint_id);
}

tb_err_t tb_complaint_ack(tb_client_t *c, const char *id, const char *note)
{
    json_t *args;
    tb_err_t e;
    if ((e = tbc_begin(c)) != TB_OK || (e = tbc_need(c, "complaint_id", id)) != TB_OK) return e;
    if ((e = tbc_args(c, &args, "complaint_id", id, "note", note, (const char *)NULL)) != TB_OK) return e;
    return json_call(c, "complaint.ack", args, NULL, NULL);
}

tb_err_t tb_complaint_get(tb_client_t *c, const char *id, char **json)
{
    json_t *args;
    tb_err_t e;
    if (json) *json = NULL;
    if ((e = tbc_begin(c)) != TB_OK || (e = tbc_need(c, "complaint_id", id)) != TB_OK) return e;
    if ((e = tbc_args(c, &args, "complaint_id", id, (const char *)NULL)) != TB_OK) return e;
    return json_call(c, "complaint.get", args, NULL, json);
}
