/* fuzz_api.c -- libFuzzer target: the node's client API input path without
 * a database or a socket (node/api_args.c).
 *
 * The input is fed (1) as a raw request frame to api_request_decode and,
 * when it decodes, through the op's argument check; (2) as JSON: when it
 * parses as an object, through the check of every op (api_args_check),
 * with fixed node-side inputs (node id, now, new ids). Properties: never
 * crash; the result is TB_OK, TB_ERR_PROTO or TB_ERR_INVALID (decode) and
 * an error always comes with a non-empty one-line message; a request that
 * decodes re-encodes (id, op and args survive pack / decode); a check that
 * builds a body builds a JSON object, and a failed check builds none.
 *
 * Seeds: fuzz/corpus/fuzz_api (a request of every op, their args objects).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api.pb-c.h"
#include "api_internal.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const api_ctx_t g_ctx = {
    .node_id = "110000",
    .now = "2024-05-01T08:00:00Z",
    .id = "110000-20240501-0123456789ab",
    .event_id = "0123456789abcdef",
};

/* An error line: non-empty, no newline or other control character. */
static void check_line(const char *err)
{
    FUZZ_ASSERT(err[0] != '\0');
    for (const char *p = err; *p; p++)
        FUZZ_ASSERT((unsigned char)*p >= 0x20 || *p == '\t');
}

/* Runs op's check on args and checks its contract. */
static void run_check(int op, const json_t *args)
{
    char err[ERRLEN] = "";
    api_args_t a;
    tb_err_t rc = api_args_check(op, args, &g_ctx, &a, err, sizeof err);
    if (rc != TB_OK) {
        check_line(err);
        FUZZ_ASSERT(a.body == NULL);
        return;
    }
    FUZZ_ASSERT(a.args == args);
    if (a.body)
        FUZZ_ASSERT(json_is_object(a.body));
    /* what the handlers rely on */
    switch (op) {
    case API_OP_RECORD_PUT:
        FUZZ_ASSERT(a.value != NULL);
        /* fall through */
    case API_OP_RECORD_GET:
    case API_OP_RECORD_DELETE:
        FUZZ_ASSERT(a.catalog && a.key);
        break;
    case API_OP_LICENCE_ISSUE:
        FUZZ_ASSERT(a.body && json_is_string(json_object_get(a.body, "identifier")));
        break;
    case API_OP_CASE_SUBMIT:
    case API_OP_CASE_ACT:
    case API_OP_CASE_RATE:
        FUZZ_ASSERT(a.body && json_is_string(json_object_get(a.body, "case_id")));
        break;
    case API_OP_SUPITEM_PUT:
        FUZZ_ASSERT(a.body && json_is_string(json_object_get(a.body, "code")));
        break;
    case API_OP_COMPLAINT_FILE:
        FUZZ_ASSERT(a.body && json_is_string(json_object_get(a.body, "region")));
        break;
    case API_OP_RISK_PUBLISH:
        FUZZ_ASSERT(a.body != NULL);
        break;
    case API_OP_EVENTS_NEXT:
        FUZZ_ASSERT(a.cursor && a.max >= 1 && a.max <= 1000 && a.wait_ms >= 0 && a.after >= -1);
        break;
    case API_OP_EVENTS_ACK:
        FUZZ_ASSERT(a.cursor && a.id >= 0);
        break;
    case API_OP_LICENCE_VERIFY:
        FUZZ_ASSERT(a.identifier && a.timeout_ms >= 1 && a.timeout_ms <= 60000);
        break;
    default:
        break;
    }
    api_args_free(&a);
}

/* A decoded request packs again and decodes to the same request. */
static void check_reencode(const api_request_t *in)
{
    Tongban__ApiRequest m = TONGBAN__API_REQUEST__INIT;
    char *text = json_dumps(in->args, JSON_COMPACT);
    FUZZ_ASSERT(text != NULL);
    m.id = in->id;
    m.op = (char *)api_ops[in->op].name;
    m.args = text;
    size_t len = tongban__api_request__get_packed_size(&m);
    uint8_t *buf = malloc(len ? len : 1);
    FUZZ_ASSERT(buf != NULL);
    tongban__api_request__pack(&m, buf);
    api_request_t out;
    char err[ERRLEN] = "";
    tb_err_t rc = api_request_decode(buf, len, &out, err, sizeof err);
    FUZZ_ASSERT(rc == TB_OK);
    FUZZ_ASSERT(out.id == in->id && out.op == in->op);
    FUZZ_ASSERT(strcmp(out.op_name, api_ops[in->op].name) == 0);
    FUZZ_ASSERT(json_equal(out.args, in->args));
    api_request_clear(&out);
    free(buf);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* (1) a raw request frame */
    api_request_t in;
    char err[ERRLEN] = "";
    tb_err_t rc = api_request_decode(data, size, &in, err, sizeof err);
    FUZZ_ASSERT(rc == TB_OK || rc == TB_ERR_PROTO || rc == TB_ERR_INVALID);
    FUZZ_ASSERT(in.op_name[0] != '\0');
    for (const char *p = in.op_name; *p; p++)
        FUZZ_ASSERT(*p == '.' || *p == '_' || *p == '?' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                    (*p >= '0' && *p <= '9'));
    if (rc == TB_OK) {
        FUZZ_ASSERT(in.has_id && in.op >= 0 && in.op < API_OP__COUNT && json_is_object(in.args));
        check_reencode(&in);
        run_check(in.op, in.args);
    } else {
        check_line(err);
        FUZZ_ASSERT(in.args == NULL);
        if (rc == TB_ERR_INVALID)
            FUZZ_ASSERT(in.has_id);
    }
    api_request_clear(&in);

    /* (2) the bytes as the args object of every op */
    json_error_t je;
    json_t *args = json_loadb((const char *)data, size, 0, &je);
    if (json_is_object(args))
        for (int op = 0; op < API_OP__COUNT; op++)
            run_check(op, args);
    json_decref(args);
    return 0;
}
