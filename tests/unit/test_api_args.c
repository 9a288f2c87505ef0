/* test_api_args.c -- the client API's pure request decoding and per-op
 * argument checks (node/api_args.c): every op accepts its documented
 * arguments (the fuzz seeds fuzz/corpus/fuzz_api/args_<op>.json) and
 * refuses bad ones with one line that names the field. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.pb-c.h"
#include "api_internal.h"
#include "tbtest.h"

static const api_ctx_t ctx = {"110000", "2024-05-01T08:00:00Z", "110000-20240501-0123456789ab", "0123456789abcdef"};

static json_t *seed(const char *op)
{
    char path[512];
    json_error_t je;
    snprintf(path, sizeof path, "%s/fuzz/corpus/fuzz_api/args_%s.json", TB_SOURCE_DIR, op);
    json_t *v = json_load_file(path, 0, &je);
    CHECK_MSG(json_is_object(v), "%s: %s", path, je.text);
    return v;
}

/* op on args: rc; on error err names field and is one line. */
static void expect(const char *op, json_t *args, tb_err_t want, const char *field)
{
    char err[ERRLEN] = "";
    api_args_t a;
    int i = api_op_find(op);
    CHECK_MSG(i >= 0, "op %s", op);
    tb_err_t rc = api_args_check(i, args, &ctx, &a, err, sizeof err);
    CHECK_MSG(rc == want, "%s: rc %d, want %d (%s)", op, rc, want, err);
    if (rc != TB_OK) {
        CHECK_MSG(err[0] && !strchr(err, '\n'), "%s: error line \"%s\"", op, err);
        if (field)
            CHECK_MSG(strncmp(err, field, strlen(field)) == 0 || strstr(err, field), "%s: \"%s\" does not name %s", op,
                      err, field);
        CHECK(a.body == NULL);
    }
    api_args_free(&a);
    json_decref(args);
}

/* the seed of op with member k set to v (v NULL: removed) */
static json_t *with(const char *op, const char *k, json_t *v)
{
    json_t *o = seed(op);
    if (v)
        json_object_set_new(o, k, v);
    else
        json_object_del(o, k);
    return o;
}

static void test_valid(void)
{
    for (int i = 0; i < API_OP__COUNT; i++) {
        char err[ERRLEN] = "";
        api_args_t a;
        json_t *args = seed(api_ops[i].name);
        tb_err_t rc = api_args_check(i, args, &ctx, &a, err, sizeof err);
        CHECK_MSG(rc == TB_OK, "%s: %s", api_ops[i].name, err);
        api_args_free(&a);
        json_decref(args);
    }
    /* parsed values */
    char err[ERRLEN];
    api_args_t a;
    json_t *args = seed("events.next");
    CHECK(api_args_check(API_OP_EVENTS_NEXT, args, &ctx, &a, err, sizeof err) == TB_OK);
    CHECK(strcmp(a.cursor, "app1") == 0 && a.max == 10 && a.wait_ms == 100 && a.after == 3);
    json_decref(args);
    args = json_pack("{s:s}", "cursor", "c");
    CHECK(api_args_check(API_OP_EVENTS_NEXT, args, &ctx, &a, err, sizeof err) == TB_OK);
    CHECK(a.max == 100 && a.wait_ms == 0 && a.after == -1);
    json_decref(args);
    args = seed("case.submit");
    CHECK(api_args_check(API_OP_CASE_SUBMIT, args, &ctx, &a, err, sizeof err) == TB_OK);
    CHECK(json_is_object(a.body) && strcmp(json_string_value(json_object_get(a.body, "case_id")), ctx.id) == 0);
    CHECK(a.new_id == ctx.id && a.event_id == ctx.event_id);
    api_args_free(&a);
    CHECK(a.body == NULL);
    json_decref(args);
    args = seed("licence.verify");
    CHECK(api_args_check(API_OP_LICENCE_VERIFY, args, &ctx, &a, err, sizeof err) == TB_OK);
    CHECK(a.ask_issuer == 1 && a.timeout_ms == 2000);
    json_decref(args);
    args = json_pack("{s:s}", "identifier", "x");
    CHECK(api_args_check(API_OP_LICENCE_VERIFY, args, &ctx, &a, err, sizeof err) == TB_OK);
    CHECK(a.ask_issuer == 0 && a.timeout_ms == API_VERIFY_TIMEOUT_MS);
    json_decref(args);
    args = json_pack("{s:b}", "overdue", 1);
    CHECK(api_args_check(API_OP_CASE_LIST, args, &ctx, &a, err, sizeof err) == TB_OK);
    CHECK(a.state == NULL && strcmp(a.overdue, "true") == 0);
    json_decref(args);
}

static void test_invalid(void)
{
    /* records */
    expect("record.put", with("record.put", "catalog", NULL), TB_ERR_INVALID, "catalog");
    expect("record.put", with("record.put", "catalog", json_string("tb.licence")), TB_ERR_INVALID, "catalog");
    expect("record.put", with("record.put", "catalog", json_string("a b")), TB_ERR_INVALID, "catalog");
    expect("record.put", with("record.put", "key", json_string("")), TB_ERR_INVALID, "key");
    expect("record.put", with("record.put", "key", json_string("a\nb")), TB_ERR_INVALID, "key");
    expect("record.put", with("record.put", "body", NULL), TB_ERR_INVALID, "body");
    expect("record.get", with("record.get", "key", json_integer(3)), TB_ERR_INVALID, "key");
    expect("record.get", with("record.get", "catalog", json_string("tb.licence")), TB_OK, NULL);
    expect("record.delete", with("record.delete", "catalog", json_string("tb.case_event")), TB_ERR_INVALID, "catalog");
    /* licences */
    expect("licence.issue", with("licence.issue", "jurisdiction", json_string("990000")), TB_ERR_INVALID,
           "jurisdiction");
    expect("licence.issue", with("licence.issue", "holder_code", NULL), TB_ERR_INVALID, "holder_code");
    expect("licence.issue", with("licence.issue", "valid_to", json_string("2046-13-40")), TB_ERR_INVALID, "valid_to");
    expect("licence.issue", with("licence.issue", "x\ny", json_true()), TB_ERR_INVALID, NULL);
    expect("licence.update", with("licence.update", "identifier", NULL), TB_ERR_INVALID, "identifier");
    expect("licence.revoke", with("licence.revoke", "identifier", json_integer(1)), TB_ERR_INVALID, "identifier");
    expect("licence.get", with("licence.get", "identifier", json_string("")), TB_ERR_INVALID, "identifier");
    expect("licence.find", with("licence.find", "holder_code", NULL), TB_ERR_INVALID, "holder_code");
    expect("licence.verify", with("licence.verify", "timeout_ms", json_integer(0)), TB_ERR_INVALID, "timeout_ms");
    expect("licence.verify", with("licence.verify", "timeout_ms", json_integer(60001)), TB_ERR_INVALID, "timeout_ms");
    expect("licence.verify", with("licence.verify", "ask_issuer", json_string("yes")), TB_ERR_INVALID, "ask_issuer");
    /* cases */
    expect("case.submit", with("case.submit", "materials", json_string("x")), TB_ERR_INVALID, "materials");
    json_t *m = with("case.submit", "x", NULL);
    json_object_set_new(json_array_get(json_object_get(m, "materials"), 0), "sha256", json_string("abc"));
    expect("case.submit", m, TB_ERR_INVALID, "sha256");
    expect("case.submit", with("case.submit", "handling", json_array()), TB_ERR_INVALID, "handling");
    expect("case.submit", with("case.submit", "applicant_code", json_string("123")), TB_ERR_INVALID,
           "applicant_code");
    expect("case.act", with("case.act", "action", json_string("explode")), TB_ERR_INVALID, "action");
    expect("case.act", with("case.act", "case_id", NULL), TB_ERR_INVALID, "case_id");
    expect("case.rate", with("case.rate", "score", json_integer(9)), TB_ERR_INVALID, "score");
    expect("case.rate", with("case.rate", "score", json_string("5")), TB_ERR_INVALID, "score");
    expect("case.get", with("case.get", "case_id", json_string("a/b")), TB_ERR_INVALID, "case_id");
    expect("case.history", with("case.history", "case_id", NULL), TB_ERR_INVALID, "case_id");
    expect("case.list", with("case.list", "overdue", json_string("yes")), TB_ERR_INVALID, "overdue");
    expect("case.list", with("case.list", "state", json_string("a b")), TB_ERR_INVALID, "state");
    /* supervision */
    expect("supitem.put", with("supitem.put", "level", json_string("galactic")), TB_ERR_INVALID, "level");
    expect("supitem.put", with("supitem.put", "code", NULL), TB_ERR_INVALID, "code");
    expect("supitem.list", with("supitem.list", "level", json_string("galactic")), TB_ERR_INVALID, "level");
    expect("supitem.list", with("supitem.list", "level", json_null()), TB_OK, NULL);
    expect("risk.publish", with("risk.publish", "level", json_integer(99)), TB_ERR_INVALID, "level");
    expect("risk.publish", with("risk.publish", "title", NULL), TB_ERR_INVALID, "title");
    expect("complaint.file", with("complaint.file", "region", json_string("a b/c")), TB_ERR_INVALID, "region");
    expect("complaint.file", with("complaint.file", "subject", NULL), TB_ERR_INVALID, "subject");
    expect("complaint.ack", with("complaint.ack", "complaint_id", NULL), TB_ERR_INVALID, "complaint_id");
    expect("complaint.get", with("complaint.get", "complaint_id", json_string("")), TB_ERR_INVALID, "complaint_id");
    /* events */
    expect("events.next", with("events.next", "cursor", NULL), TB_ERR_INVALID, "cursor");
    expect("events.next", with("events.next", "max", json_integer(0)), TB_ERR_INVALID, "max");
    expect("events.next", with("events.next", "max", json_real(1.5)), TB_ERR_INVALID, "max");
    expect("events.next", with("events.next", "wait_ms", json_integer(30001)), TB_ERR_INVALID, "wait_ms");
    expect("events.next", with("events.next", "after", json_integer(-1)), TB_ERR_INVALID, "after");
    expect("events.ack", with("events.ack", "id", NULL), TB_ERR_INVALID, "id");
    expect("case.attach", with("case.attach", "sha256", json_string("ABC")), TB_ERR_INVALID, "sha256");
    expect("case.attach", with("case.attach", "chunk_index", json_integer(1)), TB_ERR_INVALID, "chunk_index");
    expect("case.attach", with("case.attach", "size", json_integer(67108865)), TB_ERR_INVALID, "size");
    expect("case.attach", with("case.attach", "data", json_string("eA=\n")), TB_ERR_INVALID, "data");
    expect("case.attachment_chunk", with("case.attachment_chunk", "index", NULL), TB_ERR_INVALID, "index");
    expect("case.attachment_chunk", with("case.attachment_chunk", "index", json_integer(256)), TB_ERR_INVALID, "index");
    expect("events.ack", with("events.ack", "id", json_null()), TB_OK, NULL);
    expect("events.ack", with("events.ack", "id", json_integer(-5)), TB_ERR_INVALID, "id");
    /* not an object */
    char err[ERRLEN];
    api_args_t a;
    json_t *arr = json_array();
    CHECK(api_args_check(API_OP_RECORD_GET, arr, &ctx, &a, err, sizeof err) == TB_ERR_INVALID);
    CHECK(strstr(err, "args") != NULL);
    CHECK(api_args_check(-1, arr, &ctx, &a, err, sizeof err) == TB_ERR_INVALID);
    CHECK(api_args_check(API_OP__COUNT, arr, &ctx, &a, err, sizeof err) == TB_ERR_INVALID);
    json_decref(arr);
}

static size_t pack(uint64_t id, const char *op, const char *args, uint8_t *buf, size_t len)
{
    Tongban__ApiRequest m = TONGBAN__API_REQUEST__INIT;
    m.id = id;
    m.op = (char *)op;
    m.args = (char *)args;
    size_t n = tongban__api_request__get_packed_size(&m);
    CHECK(n <= len);
    return n <= len ? tongban__api_request__pack(&m, buf) : 0;
}

static void test_decode(void)
{
    uint8_t buf[256];
    char err[ERRLEN];
    api_request_t r;
    size_t n = pack(42, "events.ack", "{\"cursor\":\"c\",\"id\":1}", buf, sizeof buf);
    CHECK(api_request_decode(buf, n, &r, err, sizeof err) == TB_OK);
    CHECK(r.id == 42 && r.has_id && r.op == API_OP_EVENTS_ACK && strcmp(r.op_name, "events.ack") == 0);
    CHECK(json_integer_value(json_object_get(r.args, "id")) == 1);
    api_request_clear(&r);
    n = pack(7, "case.list", "", buf, sizeof buf);       /* no args: {} */
    CHECK(api_request_decode(buf, n, &r, err, sizeof err) == TB_OK && json_object_size(r.args) == 0);
    api_request_clear(&r);
    n = pack(8, "no.such op\n", "{}", buf, sizeof buf);
    CHECK(api_request_decode(buf, n, &r, err, sizeof err) == TB_ERR_INVALID);
    CHECK(r.id == 8 && r.op < 0 && strncmp(err, "op:", 3) == 0 && strcmp(r.op_name, "no.such?op?") == 0);
    n = pack(9, "record.get", "[1]", buf, sizeof buf);
    CHECK(api_request_decode(buf, n, &r, err, sizeof err) == TB_ERR_INVALID && strncmp(err, "args:", 5) == 0);
    CHECK(r.args == NULL);
    n = pack(10, "record.get", "{\"a\":\"\x01\n", buf, sizeof buf);
    CHECK(api_request_decode(buf, n, &r, err, sizeof err) == TB_ERR_INVALID && strncmp(err, "args:", 5) == 0);
    CHECK_MSG(!strchr(err, '\n') && !strchr(err, '\x01'), "%s", err);
    /* not a packed ApiRequest: the id only when it leads */
    const uint8_t junk[] = {0x08, 0x2A, 0xFF, 0xFF};
    CHECK(api_request_decode(junk, sizeof junk, &r, err, sizeof err) == TB_ERR_PROTO);
    CHECK(r.has_id && r.id == 42 && strcmp(r.op_name, "?") == 0 && strstr(err, "ApiRequest"));
    CHECK(api_request_decode(junk + 2, 2, &r, err, sizeof err) == TB_ERR_PROTO && !r.has_id);
    CHECK(api_op_find("licence.verify") == API_OP_LICENCE_VERIFY && api_op_find("x") < 0 && api_op_find(NULL) < 0);
    char s[] = "a\nb\tc\x7f";
    CHECK(strcmp(api_one_line(s), "a b c ") == 0);
}

int main(void)
{
    test_valid();
    test_invalid();
    test_decode();
    return tbtest_done("test_api_args");
}
