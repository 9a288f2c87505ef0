/* client_licence.c -- the typed calls on plain records (record.*) and on
 * electronic licences (licence.*), including verification. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"

struct tb_licence {
    json_t *obj;               /* the licence object the node returned */
    char *json;                /* its compact text                     */
};

/* ---- records ---- */

tb_err_t tb_record_put(tb_client_t *c, const char *catalog, const char *key, const char *body_json)
{
    json_t *args, *body;
    json_error_t jerr;
    tb_err_t e;

    if ((e = tbc_begin(c)) != TB_OK || (e = tbc_need(c, "catalog", catalog)) != TB_OK ||
        (e = tbc_need(c, "key", key)) != TB_OK || (e = tbc_need(c, "body_json", body_json)) != TB_OK)
        return e;
    if (!(body = json_loads(body_json, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr)))
        return tbc_fail(c, TB_ERR_INVALID, "body_json: not JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                        jerr.column);
    if ((e = tbc_args(c, &args, "catalog", catalog, "key", key, (const char *)NULL)) != TB_OK) {
        json_decref(body);
        return e;
    }
    if (json_object_set_new(args, "body", body) != 0) {
        json_decref(args);
        return tbc_fail(c, TB_ERR_NOMEM, "record.put: out of memory");
    }
    return tbc_call(c, "record.put", args, c->timeout_ms, NULL);
}

tb_err_t tb_record_get(tb_client_t *c, const char *catalog, const char *key, char **body_json)
{
    json_t *args, *res = NULL;
    tb_err_t e;

    if (body_json) *body_json = NULL;
    if ((e = tbc_begin(c)) != TB_OK || (e = tbc_need(c, "catalog", catalog)) != TB_OK ||
        (e = tbc_need(c, "key", key)) != TB_OK)
        return e;
    if ((e = tbc_args(c, &args, "catalog", catalog, "key", key, (const char *)NULL)) != TB_OK) return e;
    e = tbc_call(c, "record.get", args, c->timeout_ms, &res);
    if (e == TB_OK && body_json) {
        json_t *body = json_object_get(res, "body");
        if (!body) e = tbc_fail(c, TB_ERR_PROTO, "record.get: the node's result has no body");
        else if (!(*body_json = tbc_dump(body))) e = tbc_fail(c, TB_ERR_NOMEM, "record.get: out of memory");
    }
    json_decref(res);
    return e;
}

tb_err_t tb_record_delete(tb_client_t *c, const char *catalog, const char *key)
{
    json_t *args;
    tb_err_t e;

    if ((e = tbc_begin(c)) != TB_OK || (e = tbc_need(c, "catalog", catalog)) != TB_OK ||
        (e = tbc_need(c, "key", key)) != TB_OK)
        return e;
    if ((e = tbc_args(c, &args, "catalog", catalog, "key", key, (const char *)NULL)) != TB_OK) return e;
    return tbc_call(c, "record.delete", args, c->timeout_ms, NULL);
}

/* ---- licences ---- */

/* Makes a licence handle of res (consumed). */
static tb_err_t licence_wrap(tb_client_t *c, const char *op, json_t *res, tb_licence_t **out)
{
    if (!json_is_string(json_object_get(res, "identifier"))) {
        json_decref(res);
        return tbc_fail(c, TB_ERR_PROTO, "%s: the node's result is not a licence (no identifier)", op);
    }
    tb_licence_t *l = calloc(1, sizeof *l);
    if (!l || !(l->json = tbc_dump(res))) {
        free(l);
        json_decref(res);
        return tbc_fail(c, TB_ERR_NOMEM, "%s: out of memory", op);
    }
    l->obj = res;
    *out = l;
    return TB_OK;
}

/* Calls op with args (consumed); on TB_OK wraps the result into *out (if
 * out is non-NULL). */
static tb_err_t licence_call(tb_client_t *c, const char *op, json_t *args, tb_licence_t **out)
{
    json_t *res = NULL;
    tb_err_t e = tbc_call(c, op, args, c->timeout_ms, &res);
    if (e == TB_OK && out) return licence_wrap(c, op, res, out);
    json_decref(res);
    return e;
}

tb_err_t tb_licence_issue(tb_client_t *c, const char *fields_json, tb_licence_t **out)
{
    tb_err_t e;
    if (out) *out = NULL;
    if ((e = tbc_begin(c)) != TB_OK) return e;
    json_t *args = tbc_parse_object(c, "fields_json", fields_json);
    if (!args) return TB_ERR_INVALID;
    return licence_call(c, "licence.issue", args, out);
}

tb_err_t tb_licence_update(tb_client_t *c, const char *id, const char *fields_json, tb_licence_t **out)
{
    tb_err_t e;
    if (out) *out = NULL;
    if ((e = tbc_begin(c)) != TB_OK || (e = tbc_need(c, "licence identifier", id)) != TB_OK) return e;
    json_t *args = tbc_parse_object(c, "fields_json", fields_json);
    if (!args) return TB_ERR_INVALID;
    const char *given = json_string_value(json_object_get(args, "identifier"));
    if (given && strcmp(given, id) != 0) {
        tbc_fail(c, TB_ERR_INVALID, "fields_json: identifier \"%s\" differs from the licence's \"%s\"", given, id);
        json_decref(args);
        return TB_ERR_INVALID;
    }
    if (tbc_set_str(c, args, "identifier", id) != 0) {
        json_decref(args);
        return c->err[0] ? TB_ERR_INVALID : tbc_fail(c, TB_ERR_NOMEM, "out of memory");
    }
    return licence_call(c, "licence.update", args, out);
}

static tb_err_t licence_status(tb_client_t *c, const char *op, const char *id, const char *reason,
                               int reason_required, tb_licence_t **out)
{
    json_t *args;
    tb_err_t e;
    if (out) *out = NULL;
    if ((e = tbc_begin(c)) != TB_OK || (e = tbc_need(c, "licence identifier", id)) != TB_OK) return e;
    if (reason_required && (e = tbc_need(c, "reason", reason)) != TB_OK) return e;
    if ((e = tbc_args(c, &args, "identifier", id, "reason", reason, (const char *)NULL)) != TB_OK) return e;
    return licence_call(c, op, args, out);
}

tb_err_t tb_licence_suspend(tb_client_t *c, const char *id, const char *reason, tb_licence_t **out)
{
    return licence_status(c, "licence.suspend", id, reason, 1, out);
}

tb_err_t tb_licence_resume(tb_client_t *c, const char *id, const char *reason, tb_licence_t **out)
{
    return licence_status(c, "licence.resume", id, reason, 0, out);
}

tb_err_t tb_licence_revoke(tb_client_t *c, const char *id, const char *reason, tb_licence_t **out)
{
    return licence_status(c, "licence.revoke", id, reason, 1, out);
}

tb_err_t tb_licence_get(tb_client_t *c, const char *id, tb_licence_t **out)
{
    return licence_status(c, "licence.get", id, NULL, 0, out);
}

tb_err_t tb_licence_find(tb_client_t *c, const char *holder_code, char **json)
{
    json_t *args, *res = NULL;
    tb_err_t e;
    if (json) *json = NULL;
    if ((e = tbc_begin(c)) != TB_OK || (e = tbc_need(c, "holder_code", holder_code)) != TB_OK) return e;
    if ((e = tbc_args(c, &args, "holder_code", holder_code, (const char *)NULL)) != TB_OK) return e;
    e = tbc_call(c, "licence.find", args, c->timeout_ms, &res);
    if (e == TB_OK && !json_is_array(json_object_get(res, "licences")))
        e = tbc_fail(c, TB_ERR_PROTO, "licence.find: the node's result has no licences array");
    if (e == TB_OK && json && !(*json = tbc_dump(res))) e = tbc_fail(c, TB_ERR_NOMEM, "out of memory");
    json_decref(res);
    return e;
}

const char *tb_licence_field(const tb_licence_t *lic, const char *name)
{
    if (!lic || !name) return NULL;
    return json_string_value(json_object_get(lic->obj, name));
}

int tb_licence_revision(const tb_licence_t *lic)
{
    if (!lic) return 0;
    json_t *r = json_object_get(lic->obj, "revision");
    return json_is_integer(r) ? (int)json_integer_value(r) : 0;
}

const char *tb_licence_json(const tb_licence_t *lic)
{
    return lic ? lic->json : "";
}

void tb_licence_free(tb_licence_t **lic)
{
    if (!lic || !*lic) return;
    json_decref((*lic)->obj);
    free((*lic)->json);
    free(*lic);
    *lic = NULL;
}

/* ---- verification ---- */

static const char *const verdict_names[] = {
    [TB_VERDICT_VALID] = "valid",           [TB_VERDICT_SUSPENDED] = "suspended",
    [TB_VERDICT_REVOKED] = "revoked",       [TB_VERDICT_EXPIRED] = "expired",
    [TB_VERDICT_NOT_YET_VALID] = "not_yet_valid", [TB_VERDICT_BAD_SEAL] = "bad_seal",
    [TB_VERDICT_UNKNOWN] = "unknown",
};

const char *tb_verdict_name(tb_verdict_t v)
{
    if ((int)v < 0 || (size_t)v >= sizeof verdict_names / sizeof verdict_names[0]) return "unknown";
    return verdict_names[v];
}

/* Copies the string member key of o into buf ("" if absent). */
static void copy_member(char *buf, size_t len, const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    snprintf(buf, len, "%s", s ? s : "");
}

/* Fills out from a licence.verify result. TB_ERR_PROTO if it has no
 * verdict of the contract. */
tb_err_t tbc_parse_verify(tb_client_t *c, const json_t *res, tb_verify_result_t *out)
{
    const char *v = json_string_value(json_object_get(res, "verdict"));
    size_t i, n = sizeof verdict_names / sizeof verdict_names[0];
    for (i = 0; v && i < n; i++)
        if (strcmp(v, verdict_names[i]) == 0) break;
    if (!v || i == n)
        return tbc_fail(c, TB_ERR_PROTO, "licence.verify: the node's result has %s verdict%s%s",
                        v ? "an unknown" : "no", v ? " " : "", v ? v : "");
    out->verdict = (tb_verdict_t)i;
    out->seal_ok = json_is_true(json_object_get(res, "seal_ok"));
    copy_member(out->source, sizeof out->source, res, "source");
    copy_member(out->issuer, sizeof out->issuer, res, "issuer");
    copy_member(out->issuer_node, sizeof out->issuer_node, res, "issuer_node");
    copy_member(out->status, sizeof out->status, res, "status");
    copy_member(out->valid_from, sizeof out->valid_from, res, "valid_from");
    copy_member(out->valid_to, sizeof out->valid_to, res, "valid_to");
    copy_member(out->detail, sizeof out->detail, res, "detail");
    for (char *p = out->detail; *p; p++)
        if ((unsigned char)*p < 0x20) *p = ' ';
    json_t *age = json_object_get(res, "local_age_s");
    /* a real is converted only when it fits (1e300 would be undefined behaviour) */
    double agef = json_is_real(age) ? json_real_value(age) : -1;
    out->local_age_s = json_is_integer(age)              ? (long long)json_integer_value(age)
                       : agef >= 0 && agef < 9.2e18      ? (long long)agef
                                                         : -1;
    json_t *rev = json_object_get(res, "revision");
    json_int_t revv = json_is_integer(rev) ? json_integer_value(rev) : 0;
    out->revision = revv >= INT_MIN && revv <= INT_MAX ? (int)revv : 0;
    out->authoritative = strcmp(out->source, "issuer") == 0 || strcmp(out->issuer, "self") == 0;
    out->issuer_unavailable = strcmp(out->issuer, "unavailable") == 0 || strcmp(out->issuer, "timeout") == 0;
    return TB_OK;
}

tb_err_t tb_licence_verify(tb_client_t *c, const char *identifier, int flags, int timeout_ms,
                           tb_verify_result_t *out)
{
    json_t *args, *res = NULL;
    tb_err_t e;

    if (out) {
        memset(out, 0, sizeof *out);
        out->verdict = TB_VERDICT_UNKNOWN;
        out->local_age_s = -1;
    }
    if ((e = tbc_begin(c)) != TB_OK || (e = tbc_need(c, "licence identifier", identifier)) != TB_OK) return e;
    if (!out) return tbc_fail(c, TB_ERR_INVALID, "tb_licence_verify: out is NULL");
    if (flags & ~TB_VERIFY_ASK_ISSUER) return tbc_fail(c, TB_ERR_INVALID, "flags: unknown bits 0x%x", flags);
    if (timeout_ms < 0 || timeout_ms > 60000)
        return tbc_fail(c, TB_ERR_INVALID, "timeout_ms: expected 0 (the client's) or 1..60000, got %d", timeout_ms);
    int ask = (flags & TB_VERIFY_ASK_ISSUER) != 0;
    int issuer_ms = timeout_ms ? timeout_ms : c->timeout_ms;
    if ((e = tbc_args(c, &args, "identifier", identifier, (const char *)NULL)) != TB_OK) return e;
    if (json_object_set_new(args, "ask_issuer", json_boolean(ask)) != 0 ||
        (ask && json_object_set_new(args, "timeout_ms", json_integer(issuer_ms)) != 0)) {
        json_decref(args);
        return tbc_fail(c, TB_ERR_NOMEM, "out of memory");
    }
    e = tbc_call(c, "licence.verify", args, ask ? issuer_ms + c->timeout_ms : c->timeout_ms, &res);
    if (res) {
        char saved[TBC_ERRLEN];
        snprintf(saved, sizeof saved, "%s", c->err);
        tb_err_t pe = tbc_parse_verify(c, res, out);
        if (e == TB_OK) e = pe;
        else snprintf(c->err, sizeof c->err, "%s", saved);   /* keep the node's reason */
    }
    json_decref(res);
    return e;
}
