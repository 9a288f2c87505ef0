/* api_args.c -- the pure part of the client API: decoding a request frame
 * (ApiRequest of proto/api.proto) and checking each operation's arguments
 * (docs/client-api.md) before its handler touches the store. No database,
 * no socket, no clock: fuzz/fuzz_api.c and tests/unit/test_api_args.c call
 * these directly. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.pb-c.h"
#include "api_internal.h"
#include "errbuf.h"

/* ------------------------------------------------------------------------
 * Error lines
 * ------------------------------------------------------------------------ */

char *api_one_line(char *s)
{
    for (char *p = s; p && *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7F)
            *p = ' ';
    return s;
}

/* ------------------------------------------------------------------------
 * Argument helpers
 * ------------------------------------------------------------------------ */

/* A required string argument of 1..max bytes without control characters. */
tb_err_t api_need_str(const json_t *args, const char *name, size_t max, const char **out, char *err,
                      size_t errlen)
{
    const json_t *v = json_object_get(args, name);
    *out = NULL;
    if (!v || json_is_null(v)) {
        tb_seterr(err, errlen, "%s: required", name);
        return TB_ERR_INVALID;
    }
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        tb_seterr(err, errlen, "%s: expected a string of 1 to %zu bytes", name, max);
        return TB_ERR_INVALID;
    }
    for (const char *p = json_string_value(v); *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7F) {
            tb_seterr(err, errlen, "%s: contains a control character", name);
            return TB_ERR_INVALID;
        }
    *out = json_string_value(v);
    return TB_OK;
}

/* An optional integer argument in [lo, hi] (absent or null: def). */
tb_err_t api_opt_int(const json_t *args, const char *name, long long lo, long long hi, long long def,
                     long long *out, char *err, size_t errlen)
{
    const json_t *v = json_object_get(args, name);
    *out = def;
    if (!v || json_is_null(v))
        return TB_OK;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        tb_seterr(err, errlen, "%s: expected an integer from %lld to %lld", name, lo, hi);
        return TB_ERR_INVALID;
    }
    *out = json_integer_value(v);
    return TB_OK;
}

/* A name-like argument (cursor, catalog): [A-Za-z0-9_.-]{1,max}. */
tb_err_t api_need_name(const json_t *args, const char *name, size_t max, const char **out, char *err,
                       size_t errlen)
{
    *out = jstr(args, name);
    if (!json_object_get(args, name) || json_is_null(json_object_get(args, name))) {
        tb_seterr(err, errlen, "%s: required", name);
        return TB_ERR_INVALID;
    }
    if (!*out || !domain_valid_name(*out, max)) {
        *out = NULL;
        tb_seterr(err, errlen, "%s: expected 1 to %zu characters of [A-Za-z0-9_.-]", name, max);
        return TB_ERR_INVALID;
    }
    return TB_OK;
}

/* ------------------------------------------------------------------------
 * Per-op checks
 * ------------------------------------------------------------------------ */

#define CHECK(fn) static tb_err_t fn(const json_t *args, const api_ctx_t *ctx, api_args_t *o, char *err, size_t errlen)

static tb_err_t record_args(const json_t *args, int write, api_args_t *o, char *err, size_t errlen)
{
    tb_err_t rc;
    if ((rc = api_need_name(args, "catalog", 64, &o->catalog, err, errlen)) != TB_OK)
        return rc;
    if (write && strncmp(o->catalog, "tb.", 3) == 0) {
        tb_seterr(err, errlen, "catalog: the tb.* catalogs are written through their own operations (licence.*, "
                               "case.*, supitem.*, risk.*, complaint.*)");
        return TB_ERR_INVALID;
    }
    return api_need_str(args, "key", 1024, &o->key, err, errlen);
}

CHECK(check_record_put)
{
    (void)ctx;
    tb_err_t rc = record_args(args, 1, o, err, errlen);
    if (rc != TB_OK)
        return rc;
    if (!(o->value = json_object_get(args, "body"))) {
        tb_seterr(err, errlen, "body: required (any JSON value)");
        return TB_ERR_INVALID;
    }
    return TB_OK;
}

CHECK(check_record_get)
{
    (void)ctx;
    return record_args(args, 0, o, err, errlen);
}

CHECK(check_record_delete)
{
    (void)ctx;
    return record_args(args, 1, o, err, errlen);
}

CHECK(check_licence_issue)
{
    return domain_licence_issue(args, ctx->node_id, ctx->now, &o->body, err, errlen);
}

/* update, suspend, resume, revoke, get: the rest is checked against the
 * stored licence (domain_licence_update / domain_licence_status). */
CHECK(check_identifier)
{
    (void)ctx;
    return api_need_str(args, "identifier", 128, &o->identifier, err, errlen);
}

CHECK(check_licence_find)
{
    (void)ctx;
    return api_need_str(args, "holder_code", 64, &o->holder_code, err, errlen);
}

CHECK(check_licence_verify)
{
    tb_err_t rc;
    (void)ctx;
    if ((rc = api_need_str(args, "identifier", 128, &o->identifier, err, errlen)) != TB_OK ||
        (rc = api_opt_int(args, "timeout_ms", 1, 60000, API_VERIFY_TIMEOUT_MS, &o->timeout_ms, err, errlen)) !=
            TB_OK)
        return rc;
    const json_t *ask_v = json_object_get(args, "ask_issuer");
    if (ask_v && !json_is_boolean(ask_v) && !json_is_null(ask_v)) {
        tb_seterr(err, errlen, "ask_issuer: expected true or false");
        return TB_ERR_INVALID;
    }
    o->ask_issuer = json_is_true(ask_v);
    return TB_OK;
}

CHECK(check_case_submit)
{
    return domain_case_submit(args, ctx->node_id, ctx->now, ctx->id, ctx->event_id, &o->body, err, errlen);
}

CHECK(check_case_act)
{
    return domain_case_event(args, 0, ctx->node_id, ctx->now, ctx->event_id, &o->body, err, errlen);
}

CHECK(check_case_rate)
{
    return domain_case_event(args, 1, ctx->node_id, ctx->now, ctx->event_id, &o->body, err, errlen);
}

CHECK(check_case_id)
{
    (void)ctx;
    return api_need_name(args, "case_id", 128, &o->case_id, err, errlen);
}

/* case.attachment, case.attachment_chunk (index): case_id, sha256 */
CHECK(check_case_attachment)
{
    tb_err_t rc;
    (void)ctx;
    if ((rc = api_need_name(args, "case_id", 128, &o->case_id, err, errlen)) != TB_OK ||
        (rc = api_need_str(args, "sha256", 64, &o->sha256, err, errlen)) != TB_OK)
        return rc;
    if (strlen(o->sha256) != 64 || strspn(o->sha256, "0123456789abcdef") != 64) {
        tb_seterr(err, errlen, "sha256: expected 64 lowercase hex digits");
        return TB_ERR_INVALID;
    }
    return api_opt_int(args, "index", 0, API_ATTACH_MAX_CHUNKS - 1, 0, &o->index, err, errlen);
}

/* case.attachment_chunk: index required */
CHECK(check_case_attachment_chunk)
{
    if (!json_is_integer(json_object_get(args, "index"))) {
        tb_seterr(err, errlen, "index: required (an integer)");
        return TB_ERR_INVALID;
    }
    return check_case_attachment(args, ctx, o, err, errlen);
}

/* case.attach: one chunk of at most API_ATTACH_CHUNK bytes (base64) of a
 * file of 1..API_ATTACH_MAX_BYTES bytes; name optional */
CHECK(check_case_attach)
{
    tb_err_t rc;
    const char *name;
    if ((rc = check_case_attachment(args, ctx, o, err, errlen)) != TB_OK)
        return rc;
    if (json_object_get(args, "name") && !json_is_null(json_object_get(args, "name")) &&
        (rc = api_need_str(args, "name", 255, &name, err, errlen)) != TB_OK)
        return rc;
    if ((rc = api_opt_int(args, "size", 1, API_ATTACH_MAX_BYTES, 0, &o->size, err, errlen)) != TB_OK)
        return rc;
    if (o->size == 0) {
        tb_seterr(err, errlen, "size: required");
        return TB_ERR_INVALID;
    }
    if (!json_is_integer(json_object_get(args, "chunk_index"))) {
        tb_seterr(err, errlen, "chunk_index: required (an integer)");
        return TB_ERR_INVALID;
    }
    if ((rc = api_opt_int(args, "chunk_index", 0, (o->size - 1) / API_ATTACH_CHUNK, 0, &o->index, err, errlen)) !=
        TB_OK)
        return rc;
    if ((rc = api_need_str(args, "data", (API_ATTACH_CHUNK + 2) / 3 * 4, &o->data, err, errlen)) != TB_OK)
        return rc;
    size_t n = strlen(o->data);
    if (n % 4 != 0 || strspn(o->data, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=") != n) {
        tb_seterr(err, errlen, "data: expected base64 (no line breaks)");
        return TB_ERR_INVALID;
    }
    return TB_OK;
}

CHECK(check_case_list)
{
    tb_err_t rc;
    (void)ctx;
    const json_t *sv = json_object_get(args, "state"), *ov = json_object_get(args, "overdue");
    if (sv && !json_is_null(sv) && (rc = api_need_name(args, "state", 32, &o->state, err, errlen)) != TB_OK)
        return rc;
    if (ov && !json_is_null(ov) && !json_is_boolean(ov)) {
        tb_seterr(err, errlen, "overdue: expected true or false");
        return TB_ERR_INVALID;
    }
    o->overdue = !ov || json_is_null(ov) ? NULL : json_is_true(ov) ? "true" : "false";
    return TB_OK;
}

CHECK(check_supitem_put)
{
    return domain_supitem(args, ctx->node_id, ctx->now, &o->body, err, errlen);
}

CHECK(check_supitem_list)
{
    static const char *const levels[] = {"national", "provincial", "city", "county", NULL};
    const char *level = jstr(args, "level");
    const json_t *lv = json_object_get(args, "level");
    (void)ctx;
    if (lv && !json_is_null(lv)) {
        size_t i = 0;
        while (level && levels[i] && strcmp(levels[i], level) != 0)
            i++;
        if (!level || !levels[i]) {
            tb_seterr(err, errlen, "level: expected one of national, provincial, city, county");
            return TB_ERR_INVALID;
        }
        o->level = level;
    }
    return TB_OK;
}

CHECK(check_risk_publish)
{
    return domain_risk(args, ctx->node_id, ctx->now, ctx->id, &o->body, err, errlen);
}

CHECK(check_complaint_file)
{
    return domain_complaint(args, ctx->node_id, ctx->now, ctx->id, &o->body, err, errlen);
}

/* complaint.ack: the note is checked against the stored complaint (domain_receipt). */
CHECK(check_complaint_id)
{
    (void)ctx;
    return api_need_name(args, "complaint_id", 128, &o->complaint_id, err, errlen);
}

CHECK(check_events_next)
{
    tb_err_t rc;
    (void)ctx;
    if ((rc = api_need_name(args, "cursor", 64, &o->cursor, err, errlen)) != TB_OK ||
        (rc = api_opt_int(args, "max", 1, 1000, 100, &o->max, err, errlen)) != TB_OK ||
        (rc = api_opt_int(args, "wait_ms", 0, 30000, 0, &o->wait_ms, err, errlen)) != TB_OK ||
        (rc = api_opt_int(args, "after", 0, INT64_MAX, -1, &o->after, err, errlen)) != TB_OK)
        return rc;
    return TB_OK;
}

CHECK(check_events_ack)
{
    tb_err_t rc;
    (void)ctx;
    if ((rc = api_need_name(args, "cursor", 64, &o->cursor, err, errlen)) != TB_OK)
        return rc;
    if (!json_object_get(args, "id")) {
        tb_seterr(err, errlen, "id: required");
        return TB_ERR_INVALID;
    }
    return api_opt_int(args, "id", 0, INT64_MAX, 0, &o->id, err, errlen);
}

const api_op_spec_t api_ops[API_OP__COUNT] = {
    [API_OP_RECORD_PUT] = {"record.put", check_record_put, 0},
    [API_OP_RECORD_GET] = {"record.get", check_record_get, 0},
    [API_OP_RECORD_DELETE] = {"record.delete", check_record_delete, 0},
    [API_OP_LICENCE_ISSUE] = {"licence.issue", check_licence_issue, API_NEED_NOW},
    [API_OP_LICENCE_UPDATE] = {"licence.update", check_identifier, 0},
    [API_OP_LICENCE_SUSPEND] = {"licence.suspend", check_identifier, 0},
    [API_OP_LICENCE_RESUME] = {"licence.resume", check_identifier, 0},
    [API_OP_LICENCE_REVOKE] = {"licence.revoke", check_identifier, 0},
    [API_OP_LICENCE_GET] = {"licence.get", check_identifier, 0},
    [API_OP_LICENCE_FIND] = {"licence.find", check_licence_find, 0},
    [API_OP_LICENCE_VERIFY] = {"licence.verify", check_licence_verify, 0},
    [API_OP_CASE_SUBMIT] = {"case.submit", check_case_submit, API_NEED_CASE_ID | API_NEED_EVENT_ID | API_NEED_NOW},
    [API_OP_CASE_ACT] = {"case.act", check_case_act, API_NEED_EVENT_ID | API_NEED_NOW},
    [API_OP_CASE_RATE] = {"case.rate", check_case_rate, API_NEED_EVENT_ID | API_NEED_NOW},
    [API_OP_CASE_GET] = {"case.get", check_case_id, 0},
    [API_OP_CASE_HISTORY] = {"case.history", check_case_id, 0},
    [API_OP_CASE_LIST] = {"case.list", check_case_list, 0},
    [API_OP_SUPITEM_PUT] = {"supitem.put", check_supitem_put, API_NEED_NOW},
    [API_OP_SUPITEM_LIST] = {"supitem.list", check_supitem_list, 0},
    [API_OP_RISK_PUBLISH] = {"risk.publish", check_risk_publish, API_NEED_ID | API_NEED_NOW},
    [API_OP_COMPLAINT_FILE] = {"complaint.file", check_complaint_file, API_NEED_ID | API_NEED_NOW},
    [API_OP_COMPLAINT_ACK] = {"complaint.ack", check_complaint_id, 0},
    [API_OP_COMPLAINT_GET] = {"complaint.get", check_complaint_id, 0},
    [API_OP_EVENTS_NEXT] = {"events.next", check_events_next, 0},
    [API_OP_EVENTS_ACK] = {"events.ack", check_events_ack, 0},
    [API_OP_CASE_ATTACH] = {"case.attach", check_case_attach, 0},
    [API_OP_CASE_ATTACHMENT] = {"case.attachment", check_case_attachment, 0},
    [API_OP_CASE_ATTACHMENT_CHUNK] = {"case.attachment_chunk", check_case_attachment_chunk, 0},
};

int api_op_find(const char *name)
{
    for (int i = 0; name && i < API_OP__COUNT; i++)
        if (strcmp(api_ops[i].name, name) == 0)
            return i;
    return -1;
}

tb_err_t api_args_check(int op, const json_t *args, const api_ctx_t *ctx, api_args_t *out, char *err,
                        size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->args = args;
    out->after = -1;
    if (ctx) {
        out->new_id = ctx->id;
        out->event_id = ctx->event_id;
    }
    if (op < 0 || op >= API_OP__COUNT) {
        tb_seterr(err, errlen, "op: unknown operation (see docs/client-api.md)");
        return TB_ERR_INVALID;
    }
    if (!json_is_object(args)) {
        tb_seterr(err, errlen, "args: expected a JSON object");
        return TB_ERR_INVALID;
    }
    tb_err_t rc = api_ops[op].check(args, ctx, out, err, errlen);
    if (rc != TB_OK) {
        json_decref(out->body);
        out->body = NULL;
        api_one_line(err);    /* domain_* messages may quote the caller's member names */
        if (!err[0])
            tb_seterr(err, errlen, "%s: invalid arguments", api_ops[op].name);
    }
    return rc;
}

void api_args_free(api_args_t *a)
{
    if (!a)
        return;
    json_decref(a->body);
    a->body = NULL;
}

/* ------------------------------------------------------------------------
 * Request frames
 * ------------------------------------------------------------------------ */

/* Reads the id of an ApiRequest that does not decode: field 1 (varint)
 * first, as protobuf-c writes it. 1 if found. */
static int peek_id(const uint8_t *p, size_t n, uint64_t *id)
{
    uint64_t v = 0;
    if (n < 2 || p[0] != 0x08)
        return 0;
    for (size_t i = 1; i < n && i < 11; i++) {
        v |= (uint64_t)(p[i] & 0x7F) << (7 * (i - 1));
        if (!(p[i] & 0x80)) {
            *id = v;
            return 1;
        }
    }
    return 0;
}

tb_err_t api_request_decode(const uint8_t *data, size_t len, api_request_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->op = -1;
    Tongban__ApiRequest *m = tongban__api_request__unpack(NULL, len, data);
    if (!m) {
        snprintf(out->op_name, sizeof out->op_name, "?");
        out->has_id = peek_id(data, len, &out->id);
        tb_seterr(err, errlen, "the request is not a packed ApiRequest (proto/api.proto)");
        return TB_ERR_PROTO;
    }
    tb_err_t rc = TB_OK;
    out->id = m->id;
    out->has_id = 1;
    snprintf(out->op_name, sizeof out->op_name, "%s", m->op && *m->op ? m->op : "?");
    for (char *p = out->op_name; *p; p++) {    /* it goes into log lines */
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_'))
            *p = '?';
    }
    out->op = api_op_find(m->op);
    if (out->op < 0) {
        tb_seterr(err, errlen, "op: unknown operation (see docs/client-api.md)");
        rc = TB_ERR_INVALID;
        goto done;
    }
    json_error_t je;
    json_t *args = m->args && *m->args ? json_loads(m->args, 0, &je) : json_object();
    if (!json_is_object(args)) {
        /* je.text may quote the offending bytes, control characters included */
        tb_seterr(err, errlen, "args: expected a JSON object%s%s", args ? "" : ": ", args ? "" : je.text);
        api_one_line(err);
        json_decref(args);
        rc = TB_ERR_INVALID;
        goto done;
    }
    out->args = args;
done:
    tongban__api_request__free_unpacked(m, NULL);
    return rc;
}

void api_request_clear(api_request_t *r)
{
    if (!r)
        return;
    json_decref(r->args);
    r->args = NULL;
}
