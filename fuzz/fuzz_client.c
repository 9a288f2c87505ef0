/* fuzz_client.c -- libFuzzer target: libtongban's reply decoding
 * (client/src/client*.c): tbc_reply_frame on the input as an ApiReply
 * frame (for the id it carries, and for another id), then the verify-result
 * and event-batch parsers (tbc_parse_verify, tbc_events_parse) on the
 * result it yields and on the input itself as JSON.
 *
 * Properties: never crash or leak; a frame for another request is stale
 * and sets nothing; any error leaves a non-empty one-line error; a result
 * is a JSON object and tb_client_result's text is set with it; a parsed
 * verify result has a known verdict; a parsed batch has increasing ids
 * after `after`.
 *
 * Seeds: fuzz/corpus/fuzz_client (replies of every kind the node sends).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api.pb-c.h"
#include "client_internal.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_err(const tb_client_t *c)
{
    FUZZ_ASSERT(c->err[0] != '\0');
    for (const char *p = c->err; *p; p++)
        FUZZ_ASSERT((unsigned char)*p >= 0x20);
}

static void parsers(tb_client_t *c, json_t *res)
{
    tb_verify_result_t v;
    memset(&v, 0, sizeof v);
    c->err[0] = '\0';
    if (tbc_parse_verify(c, res, &v) == TB_OK) {
        FUZZ_ASSERT((int)v.verdict >= 0 && (int)v.verdict <= TB_VERDICT_UNKNOWN);
        FUZZ_ASSERT(strcmp(tb_verdict_name(v.verdict), "unknown") != 0 || v.verdict == TB_VERDICT_UNKNOWN);
        for (const char *p = v.detail; *p; p++)
            FUZZ_ASSERT((unsigned char)*p >= 0x20);
    } else {
        check_err(c);
    }
    for (long long after = 0; after <= 5; after += 5) {
        tb_event_t *b = NULL;
        size_t n = 0;
        c->err[0] = '\0';
        if (tbc_events_parse(c, res, after, &b, &n) == TB_OK) {
            FUZZ_ASSERT((n == 0) == (b == NULL));
            long long prev = after;
            for (size_t i = 0; i < n; i++) {
                const tb_event_t *e = tbc_event_at(b, i);
                FUZZ_ASSERT(tb_event_id(e) > prev);
                prev = tb_event_id(e);
                FUZZ_ASSERT(tb_event_kind(e) && tb_event_key(e) && tb_event_origin(e) && tb_event_at(e));
                FUZZ_ASSERT(tb_event_body(e) && tb_event_json(e));
            }
            tbc_events_free(b, n);
        } else {
            FUZZ_ASSERT(b == NULL && n == 0);
            check_err(c);
        }
    }
}

static void one_frame(tb_client_t *c, const uint8_t *data, size_t size, uint64_t want)
{
    json_t *res = NULL;
    int stale = 0;
    c->err[0] = '\0';
    tb_err_t e = tbc_reply_frame(c, "fuzz.op", data, size, want, &stale, &res);
    FUZZ_ASSERT(e >= 0 && e < TB_ERR__COUNT);
    if (stale) {
        FUZZ_ASSERT(e == TB_OK && res == NULL && c->result == NULL && c->err[0] == '\0');
        return;
    }
    if (e != TB_OK)
        check_err(c);
    if (res) {
        FUZZ_ASSERT(json_is_object(res));
        parsers(c, res);
    }
    if (e == TB_OK)
        FUZZ_ASSERT(res != NULL);
    json_decref(res);
    free(c->result);
    c->result = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tb_client_t *c = calloc(1, sizeof *c);
    FUZZ_ASSERT(c != NULL);
    c->endpoint = "ipc:///fuzz/api.sock";
    c->timeout_ms = 1000;

    /* the frame for the id it carries (if it decodes), and for another */
    Tongban__ApiReply *r = tongban__api_reply__unpack(NULL, size, data);
    uint64_t id = r ? r->id : 0;
    if (r)
        tongban__api_reply__free_unpacked(r, NULL);
    one_frame(c, data, size, id);
    one_frame(c, data, size, id + 1);

    /* the input as a result object */
    json_error_t je;
    json_t *res = json_loadb((const char *)data, size, 0, &je);
    if (json_is_object(res))
        parsers(c, res);
    json_decref(res);
    free(c);
    return 0;
}
