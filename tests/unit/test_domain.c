/* test_domain.c -- seals (canonical bytes, sign, verify) for ed25519, p256
 * and sm2; the check of received tb.* entries; argument validation and
 * body building of the client API's operations. No PostgreSQL. */
#include "tbtest.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <tongban/validate.h>

#include "crypto.h"
#include "domain.h"
#include "pki.h"

static const char *pj(const char *dir, const char *name)
{
    static char bufs[8][1024];
    static int next;
    char tmp[sizeof bufs[0]];
    char *b = bufs[next++ % 8];
    snprintf(tmp, sizeof tmp, "%s/%s", dir, name);
    memcpy(b, tmp, sizeof tmp);
    return b;
}

static json_t *parse(const char *text)
{
    json_error_t je;
    json_t *v = json_loads(text, 0, &je);
    if (!v) fprintf(stderr, "bad test JSON: %s: %s\n", je.text, text);
    return v;
}

/* JSON text -> object -> text -> object: what a body goes through on its
 * way to another node (PostgreSQL jsonb aside). */
static json_t *roundtrip(const json_t *v)
{
    char *t = json_dumps(v, JSON_COMPACT);
    json_t *r = t ? parse(t) : NULL;
    free(t);
    return r;
}

/* ---- canonical bytes ---- */

static void test_bytes_layout(void)
{
    char err[256], *out = NULL;
    size_t len = 0;
    json_t *b = parse("{\"identifier\": \"ab\", \"holder_name\": \"\\u738b\", \"revision\": 12, "
                      "\"extension\": {\"b\": 1, \"a\": \"x\"}, \"valid_to\": null, \"status\": \"valid\", "
                      "\"seal\": {\"sig\": \"ignored\"}, \"unrelated\": 1}");
    CHECK(tb_seal_bytes(DOMAIN_LICENCE, b, &out, &len, err, sizeof err) == TB_OK);
    const char *want = "tongban-licence-seal/1\n"
                       "identifier=2:ab\n"
                       "type_code=0:\n"
                       "type_name=0:\n"
                       "number=0:\n"
                       "name=0:\n"
                       "issue_date=0:\n"
                       "issuer_name=0:\n"
                       "issuer_code=0:\n"
                       "jurisdiction=0:\n"
                       "holder_name=3:\xe7\x8e\x8b\n"
                       "holder_code=0:\n"
                       "holder_code_type=0:\n"
                       "valid_from=0:\n"
                       "valid_to=0:\n"
                       "service_item_code=0:\n"
                       "extension=15:{\"a\":\"x\",\"b\":1}\n"
                       "file_hash=0:\n"
                       "file_url=0:\n"
                       "status=5:valid\n"
                       "status_reason=0:\n"
                       "status_at=0:\n"
                       "revision=2:12\n"
                       "issuer_node=0:\n";
    CHECK_MSG(out && strcmp(out, want) == 0, "got:\n%s", out ? out : "(null)");
    CHECK(len == strlen(want));
    free(out);
    json_decref(b);

    b = parse("{\"case_id\": \"110000-20261201-0123456789ab\", \"event_id\": \"e1\", \"action\": \"submit\", "
              "\"handling\": [\"440000\", \"310000\"], \"score\": 5, "
              "\"materials\": [{\"name\": \"a.pdf\", \"sha256\": \"ff\", \"size\": 11, \"ref\": \"oss://x/1\"}, "
              "{\"name\": \"b\", \"sha256\": \"00\", \"size\": 0, \"ref\": \"r\"}], "
              "\"result\": {\"z\": [1, 2], \"a\": true}}");
    CHECK(tb_seal_bytes(DOMAIN_CASE_EVENT, b, &out, &len, err, sizeof err) == TB_OK);
    want = "tongban-case-event-seal/1\n"
           "case_id=28:110000-20261201-0123456789ab\n"
           "event_id=2:e1\n"
           "action=6:submit\n"
           "by_node=0:\n"
           "at=0:\n"
           "part=0:\n"
           "detail=0:\n"
           "service_item=0:\n"
           "applicant_name=0:\n"
           "applicant_code=0:\n"
           "applicant_code_type=0:\n"
           "mode=0:\n"
           "accepting=0:\n"
           "handling=13:440000,310000\n"
           "deadline=0:\n"
           "materials=30:a.pdf|ff|11|oss://x/1,b|00|0|r\n"
           "result=20:{\"a\":true,\"z\":[1,2]}\n"
           "score=1:5\n";
    CHECK_MSG(out && strcmp(out, want) == 0, "got:\n%s", out ? out : "(null)");
    free(out);
    json_decref(b);

    /* no single canonical form: refused */
    const char *bad[] = {
        "{\"handling\": [\"a,b\"]}",
        "{\"handling\": [{\"x\": 1}]}",
        "{\"materials\": [{\"name\": \"a|b\", \"sha256\": \"ff\", \"size\": 1, \"ref\": \"r\"}]}",
        "{\"materials\": [{\"name\": \"a,b\", \"sha256\": \"ff\", \"size\": 1, \"ref\": \"r\"}]}",
        "{\"materials\": [{\"name\": \"a\", \"sha256\": \"ff\", \"size\": \"1\", \"ref\": \"r\"}]}",
        "{\"score\": \"5\"}",
        "{\"score\": 5.0}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        b = parse(bad[i]);
        out = NULL;
        CHECK_MSG(tb_seal_bytes(DOMAIN_CASE_EVENT, b, &out, &len, err, sizeof err) == TB_ERR_INVALID, "%s", bad[i]);
        CHECK(out == NULL);
        json_decref(b);
    }
    b = parse("{\"revision\": \"1\"}");
    CHECK(tb_seal_bytes(DOMAIN_LICENCE, b, &out, &len, err, sizeof err) == TB_ERR_INVALID);
    CHECK(strstr(err, "revision") != NULL);
    json_decref(b);
    b = json_array();
    CHECK(tb_seal_bytes(DOMAIN_LICENCE, b, &out, &len, err, sizeof err) == TB_ERR_INVALID);
    json_decref(b);
}

/* ---- seal and verify ---- */

typedef struct {
    tb_signer_t *signer;
    tb_cert_t *cert;
} ident_t;

static int load_ident(const char *dir, ident_t *id)
{
    char err[TB_ERRLEN];
    int ok = tb_signer_load(pj(dir, "node.key"), &id->signer, err, sizeof err) == TB_OK &&
             tb_cert_load_file(pj(dir, "node.crt"), &id->cert, err, sizeof err) == TB_OK;
    if (!ok) fprintf(stderr, "load %s: %s\n", dir, err);
    return ok;
}

static void free_ident(ident_t *id)
{
    tb_signer_destroy(&id->signer);
    tb_cert_destroy(&id->cert);
}

static json_t *sample_licence(const char *issuer)
{
    json_t *b = parse("{\"identifier\": \"1.2.156.3005.2.X.Y.1.001.A\", \"type_code\": \"X\", \"type_name\": "
                      "\"\\u8425\\u4e1a\\u6267\\u7167\", \"holder_name\": \"\\u738b\\u5c0f\\u660e\", "
                      "\"extension\": {\"capital\": 1000000, \"ratio\": 0.1, \"tags\": [\"a\", \"b\"]}, "
                      "\"status\": \"valid\", \"status_reason\": \"\", \"revision\": 1, \"valid_from\": "
                      "\"2026-01-01\"}");
    json_object_set_new(b, "issuer_node", json_string(issuer));
    return b;
}

static void test_seal_roundtrip(const char *dir, tb_alg_t alg, const char *node)
{
    char err[TB_ERRLEN], why[512];
    ident_t a = {0}, other = {0}, twin = {0};
    const char *an = tb_alg_name(alg);
    char da[64], dother[64], dtwin[64];
    snprintf(da, sizeof da, "%s-a", an);
    snprintf(dother, sizeof dother, "%s-other", an);
    snprintf(dtwin, sizeof dtwin, "%s-twin", an);
    CHECK_MSG(tb_pki_issue(pj(dir, "ca"), node, alg, 10, pj(dir, da), err, sizeof err) == TB_OK, "%s", err);
    CHECK(tb_pki_issue(pj(dir, "ca"), "other", alg, 10, pj(dir, dother), err, sizeof err) == TB_OK);
    CHECK(tb_pki_issue(pj(dir, "ca"), node, alg, 10, pj(dir, dtwin), err, sizeof err) == TB_OK);
    if (!load_ident(pj(dir, da), &a) || !load_ident(pj(dir, dother), &other) || !load_ident(pj(dir, dtwin), &twin)) {
        CHECK(0);
        goto done;
    }

    json_t *lic = sample_licence(node);
    CHECK_MSG(domain_seal(a.signer, a.cert, node, DOMAIN_LICENCE, lic, err, sizeof err) == TB_OK, "%s: %s", an, err);
    json_t *seal = json_object_get(lic, "seal");
    CHECK(json_is_object(seal));
    CHECK(strcmp(json_string_value(json_object_get(seal, "alg")), an) == 0);
    CHECK(strcmp(json_string_value(json_object_get(seal, "signer")), node) == 0);
    CHECK(strcmp(json_string_value(json_object_get(seal, "key_id")), tb_cert_key_id(a.cert)) == 0);
    const char *sig = json_string_value(json_object_get(seal, "sig"));
    CHECK(sig && strlen(sig) % 4 == 0 && strlen(sig) >= 88);
    CHECK_MSG(domain_verify_seal(DOMAIN_LICENCE, lic, a.cert, why, sizeof why) == TB_OK, "%s: %s", an, why);

    /* through JSON text, with an unsealed extra member: still verifies */
    json_t *copy = roundtrip(lic);
    json_object_set_new(copy, "updated_at", json_string("2026-01-01T00:00:00Z"));
    CHECK_MSG(domain_verify_seal(DOMAIN_LICENCE, copy, a.cert, why, sizeof why) == TB_OK, "%s: %s", an, why);
    json_decref(copy);

    /* a changed field does not */
    const char *fields[] = {"holder_name", "status", "issuer_node", "valid_to"};
    for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
        copy = roundtrip(lic);
        json_object_set_new(copy, fields[i], json_string("tampered"));
        CHECK_MSG(domain_verify_seal(DOMAIN_LICENCE, copy, a.cert, why, sizeof why) == TB_ERR_BADSIG, "%s %s", an,
                  fields[i]);
        json_decref(copy);
    }
    copy = roundtrip(lic);
    json_object_set_new(copy, "revision", json_integer(2));
    CHECK(domain_verify_seal(DOMAIN_LICENCE, copy, a.cert, why, sizeof why) == TB_ERR_BADSIG);
    json_object_set_new(json_object_get(copy, "extension"), "capital", json_integer(1));
    json_object_set_new(copy, "revision", json_integer(1));
    CHECK(domain_verify_seal(DOMAIN_LICENCE, copy, a.cert, why, sizeof why) == TB_ERR_BADSIG);
    json_decref(copy);
    /* the same bytes under the other kind do not verify either */
    CHECK(domain_verify_seal(DOMAIN_CASE_EVENT, lic, a.cert, why, sizeof why) != TB_OK);

    /* wrong certificates: another node; the same node's other certificate */
    CHECK(domain_verify_seal(DOMAIN_LICENCE, lic, other.cert, why, sizeof why) == TB_ERR_BADSIG);
    CHECK(strstr(why, "not by") != NULL);
    CHECK(domain_verify_seal(DOMAIN_LICENCE, lic, twin.cert, why, sizeof why) == TB_ERR_BADSIG);
    CHECK(strstr(why, "another certificate") != NULL);
    /* a seal claiming the twin certificate (signer and key_id match it),
     * but signed with the first key */
    copy = roundtrip(lic);
    json_object_set_new(json_object_get(copy, "seal"), "key_id", json_string(tb_cert_key_id(twin.cert)));
    CHECK(domain_verify_seal(DOMAIN_LICENCE, copy, twin.cert, why, sizeof why) == TB_ERR_BADSIG);
    json_decref(copy);

    /* malformed seals */
    copy = roundtrip(lic);
    json_object_set_new(json_object_get(copy, "seal"), "sig", json_string("not base64!"));
    CHECK(domain_verify_seal(DOMAIN_LICENCE, copy, a.cert, why, sizeof why) == TB_ERR_INVALID);
    json_object_set_new(json_object_get(copy, "seal"), "sig", json_string("AAAA"));
    CHECK(domain_verify_seal(DOMAIN_LICENCE, copy, a.cert, why, sizeof why) != TB_OK);
    json_object_set_new(json_object_get(copy, "seal"), "sig", json_string("A==="));
    CHECK(domain_verify_seal(DOMAIN_LICENCE, copy, a.cert, why, sizeof why) == TB_ERR_INVALID);
    json_object_del(json_object_get(copy, "seal"), "alg");
    CHECK(domain_verify_seal(DOMAIN_LICENCE, copy, a.cert, why, sizeof why) == TB_ERR_INVALID);
    json_object_del(copy, "seal");
    CHECK(domain_verify_seal(DOMAIN_LICENCE, copy, a.cert, why, sizeof why) == TB_ERR_INVALID);
    CHECK(strcmp(why, "no seal") == 0);
    json_decref(copy);

    /* resealing replaces the seal */
    json_object_set_new(lic, "status", json_string("revoked"));
    CHECK(domain_seal(a.signer, a.cert, node, DOMAIN_LICENCE, lic, err, sizeof err) == TB_OK);
    CHECK(domain_verify_seal(DOMAIN_LICENCE, lic, a.cert, why, sizeof why) == TB_OK);
    json_decref(lic);

    /* a case event */
    json_t *ev = parse("{\"case_id\": \"c1\", \"event_id\": \"e1\", \"action\": \"submit\", \"at\": "
                       "\"2026-12-01T08:00:00.000Z\", \"handling\": [\"440000\"], \"materials\": [{\"name\": "
                       "\"\\u8eab\\u4efd\\u8bc1.pdf\", \"sha256\": "
                       "\"0000000000000000000000000000000000000000000000000000000000000000\", \"size\": 11, "
                       "\"ref\": \"oss://m/1\"}]}");
    json_object_set_new(ev, "by_node", json_string(node));
    CHECK(domain_seal(a.signer, a.cert, node, DOMAIN_CASE_EVENT, ev, err, sizeof err) == TB_OK);
    copy = roundtrip(ev);
    CHECK_MSG(domain_verify_seal(DOMAIN_CASE_EVENT, copy, a.cert, why, sizeof why) == TB_OK, "%s", why);
    json_object_set_new(json_array_get(json_object_get(copy, "materials"), 0), "size", json_integer(12));
    CHECK(domain_verify_seal(DOMAIN_CASE_EVENT, copy, a.cert, why, sizeof why) == TB_ERR_BADSIG);
    json_decref(copy);
    json_decref(ev);
done:
    free_ident(&a);
    free_ident(&other);
    free_ident(&twin);
}

/* ---- received entries ---- */

typedef struct {
    const char *id;
    tb_cert_t *cert;
    int revoked;
} dirent_t;

static dirent_t tdir[3];

static const tb_cert_t *lookup(void *arg, const char *node, int *revoked)
{
    (void)arg;
    for (int i = 0; i < 3; i++)
        if (tdir[i].id && strcmp(tdir[i].id, node) == 0) {
            *revoked = tdir[i].revoked;
            return tdir[i].cert;
        }
    return NULL;
}

static void test_entry_check(const char *dir)
{
    char err[TB_ERRLEN], why[512];
    ident_t a = {0}, b = {0};
    CHECK(tb_pki_issue(pj(dir, "ca"), "440000", TB_ALG_ED25519, 10, pj(dir, "ec-a"), err, sizeof err) == TB_OK);
    CHECK(tb_pki_issue(pj(dir, "ca"), "110000", TB_ALG_SM2, 10, pj(dir, "ec-b"), err, sizeof err) == TB_OK);
    if (!load_ident(pj(dir, "ec-a"), &a) || !load_ident(pj(dir, "ec-b"), &b)) {
        CHECK(0);
        goto done;
    }
    tdir[0] = (dirent_t){"440000", a.cert, 0};
    tdir[1] = (dirent_t){"110000", b.cert, 0};

    json_t *lic = sample_licence("440000");
    CHECK(domain_seal(a.signer, a.cert, "440000", DOMAIN_LICENCE, lic, err, sizeof err) == TB_OK);
    char *body = json_dumps(lic, JSON_COMPACT);
    const char *key = "1.2.156.3005.2.X.Y.1.001.A";
    CHECK_MSG(domain_check_entry(lookup, NULL, "440000", "tb.licence", key, "440000", body, why, sizeof why) == 0,
              "%s", why);
    /* relayed by another node */
    CHECK(domain_check_entry(lookup, NULL, "110000", "tb.licence", key, "440000", body, why, sizeof why) == 1);
    CHECK(strstr(why, "origin") != NULL);
    CHECK(domain_check_entry(lookup, NULL, "110000", "tb.licence", key, "110000", body, why, sizeof why) == 1);
    CHECK(strstr(why, "issuer_node") != NULL);
    /* under another key */
    CHECK(domain_check_entry(lookup, NULL, "440000", "tb.licence", "other", "440000", body, why, sizeof why) == 1);
    CHECK(strstr(why, "key") != NULL);
    /* signer revoked / unknown */
    tdir[0].revoked = 1;
    CHECK(domain_check_entry(lookup, NULL, "440000", "tb.licence", key, "440000", body, why, sizeof why) == 1);
    CHECK(strstr(why, "revoked") != NULL);
    tdir[0].revoked = 0;
    tdir[0].id = "gone";
    CHECK(domain_check_entry(lookup, NULL, "440000", "tb.licence", key, "440000", body, why, sizeof why) == 1);
    CHECK(strstr(why, "directory") != NULL);
    tdir[0].id = "440000";
    free(body);
    /* tampered */
    json_object_set_new(lic, "holder_name", json_string("x"));
    body = json_dumps(lic, JSON_COMPACT);
    CHECK(domain_check_entry(lookup, NULL, "440000", "tb.licence", key, "440000", body, why, sizeof why) == 1);
    CHECK(strstr(why, "does not verify") != NULL);
    free(body);
    /* sealed by someone else than the sender, who claims to be the issuer */
    json_object_set_new(lic, "issuer_node", json_string("110000"));
    CHECK(domain_seal(a.signer, a.cert, "440000", DOMAIN_LICENCE, lic, err, sizeof err) == TB_OK);
    body = json_dumps(lic, JSON_COMPACT);
    CHECK(domain_check_entry(lookup, NULL, "110000", "tb.licence", key, "110000", body, why, sizeof why) == 1);
    CHECK(strstr(why, "sealed by") != NULL);
    free(body);
    json_decref(lic);
    /* not JSON / no seal */
    CHECK(domain_check_entry(lookup, NULL, "440000", "tb.licence", key, "440000", "[1]", why, sizeof why) == 1);
    CHECK(domain_check_entry(lookup, NULL, "440000", "tb.licence", key, "440000",
                             "{\"identifier\": \"1.2.156.3005.2.X.Y.1.001.A\", \"issuer_node\": \"440000\"}", why,
                             sizeof why) == 1);

    /* a case event by 110000 (SM2) */
    json_t *ev = parse("{\"case_id\": \"c1\", \"event_id\": \"e1\", \"action\": \"withdraw\"}");
    json_object_set_new(ev, "by_node", json_string("110000"));
    CHECK(domain_seal(b.signer, b.cert, "110000", DOMAIN_CASE_EVENT, ev, err, sizeof err) == TB_OK);
    body = json_dumps(ev, JSON_COMPACT);
    CHECK_MSG(domain_check_entry(lookup, NULL, "110000", "tb.case_event", "c1/e1", "110000", body, why,
                                 sizeof why) == 0, "%s", why);
    CHECK(domain_check_entry(lookup, NULL, "110000", "tb.case_event", "c1/e2", "110000", body, why, sizeof why) == 1);
    free(body);
    json_decref(ev);

    /* the batch signature covers the other catalogs: origin == sender is enough */
    CHECK(domain_check_entry(lookup, NULL, "mps", "tb.risk", "r1", "mps", "{}", why, sizeof why) == 0);
    CHECK(domain_check_entry(lookup, NULL, "mps", "tb.risk", "r1", "110000", "{}", why, sizeof why) == 1);
    CHECK(domain_check_entry(lookup, NULL, "mps", "tb.supitem", "s", "mps", "{}", why, sizeof why) == 0);
    CHECK(domain_check_entry(lookup, NULL, "mps", "tb.complaint", "c", "mps", "{}", why, sizeof why) == 0);
    CHECK(domain_check_entry(lookup, NULL, "mps", "tb.complaint_receipt", "c", "mps", "{}", why, sizeof why) == 0);
    CHECK(domain_check_entry(lookup, NULL, "mps", "tb.licence", "k", "mps", NULL, why, sizeof why) == 0);   /* a delete */
    CHECK(domain_check_entry(lookup, NULL, "mps", "tb.nonsense", "k", "mps", "{}", why, sizeof why) == 1);
    CHECK(strstr(why, "reserved") != NULL);
    CHECK(domain_check_entry(lookup, NULL, "mps", "tb.risk", "k", NULL, "{}", why, sizeof why) == 1);
done:
    memset(tdir, 0, sizeof tdir);
    free_ident(&a);
    free_ident(&b);
}

/* ---- operations ---- */

/* A valid licence.issue argument object (identifiers with correct check characters). */
static json_t *issue_args(void)
{
    char uscc[19], cid[19], lid[160];
    snprintf(uscc, sizeof uscc, "11440000MB2C92384");
    uscc[17] = tb_uscc_check_char(uscc);
    uscc[18] = '\0';
    snprintf(cid, sizeof cid, "44030119900307281");
    cid[17] = tb_citizen_id_check_char(cid);
    cid[18] = '\0';
    snprintf(lid, sizeof lid, "1.2.156.3005.2.11100000000013338W032.%s.2026001.001", uscc);
    char c = tb_licence_id_check_char(lid);
    size_t n = strlen(lid);
    snprintf(lid + n, sizeof lid - n, ".%c", c);
    json_t *a = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "identifier", lid,
                          "type_code", "11100000000013338W032", "type_name", "business licence", "number",
                          "440300-0001", "name", "Some Tech Co. licence", "issue_date", "2026-11-01", "issuer_name",
                          "Guangdong AMR", "issuer_code", uscc, "jurisdiction", "440000", "holder_name", "Wang",
                          "holder_code", cid, "holder_code_type", "111", "valid_from", "2026-11-01", "valid_to",
                          "2046-10-31");
    return a;
}

/* 1 if args with field set to value (NULL: removed) is refused naming field. */
static int refused_naming(const char *field, json_t *value, const char *named)
{
    char err[512];
    json_t *a = issue_args(), *out = NULL;
    if (value) json_object_set_new(a, field, value);
    else json_object_del(a, field);
    tb_err_t rc = domain_licence_issue(a, "440000", "2026-12-01T00:00:00.000Z", &out, err, sizeof err);
    json_decref(a);
    json_decref(out);
    if (rc != TB_ERR_INVALID || !strstr(err, named)) {
        fprintf(stderr, "  %s: rc %d err %s\n", field, rc, err);
        return 0;
    }
    return 1;
}

static void test_licence_ops(void)
{
    char err[512];
    json_t *a = issue_args(), *lic = NULL;
    CHECK_MSG(domain_licence_issue(a, "440000", "2026-12-01T00:00:00.000Z", &lic, err, sizeof err) == TB_OK, "%s",
              err);
    json_decref(a);
    if (!lic) return;
    CHECK(strcmp(json_string_value(json_object_get(lic, "status")), "valid") == 0);
    CHECK(json_integer_value(json_object_get(lic, "revision")) == 1);
    CHECK(strcmp(json_string_value(json_object_get(lic, "issuer_node")), "440000") == 0);
    CHECK(strcmp(json_string_value(json_object_get(lic, "status_at")), "2026-12-01T00:00:00.000Z") == 0);

    CHECK(refused_naming("jurisdiction", json_string("990000"), "jurisdiction"));
    CHECK(refused_naming("identifier", json_string("1.2.156.3005.2.X.Y.1.001.A"), "identifier"));
    CHECK(refused_naming("issuer_code", json_string("11440000MB2C92384A"), "issuer_code"));
    CHECK(refused_naming("holder_code", json_string("440301199003072810"), "holder_code"));
    CHECK(refused_naming("holder_code_type", json_string("999"), "holder_code_type"));
    CHECK(refused_naming("issue_date", json_string("2026-02-30"), "issue_date"));
    CHECK(refused_naming("valid_to", json_string("2020-01-01"), "valid_to"));
    CHECK(refused_naming("name", NULL, "name: required"));
    CHECK(refused_naming("name", json_integer(3), "name"));
    CHECK(refused_naming("name", json_string("a\nb"), "control"));
    CHECK(refused_naming("surprise", json_string("x"), "surprise: unknown field"));
    CHECK(refused_naming("status", json_string("revoked"), "status: unknown field"));
    CHECK(refused_naming("extension", json_string("x"), "extension"));
    CHECK(refused_naming("extension", parse("{\"big\": 1e20}"), "extension"));
    CHECK(refused_naming("service_item_code", json_string("bad code!"), "service_item_code"));

    /* update: content only, revision + 1 */
    json_t *u = parse("{\"identifier\": \"x\", \"holder_name\": \"Li\", \"valid_to\": null}");
    CHECK_MSG(domain_licence_update(lic, u, err, sizeof err) == TB_OK, "%s", err);
    CHECK(json_integer_value(json_object_get(lic, "revision")) == 2);
    CHECK(strcmp(json_string_value(json_object_get(lic, "holder_name")), "Li") == 0);
    CHECK(json_object_get(lic, "valid_to") == NULL);
    json_decref(u);
    const char *bad_updates[] = {"{\"identifier\": \"x\"}", "{\"issuer_code\": \"x\"}", "{\"revision\": 9}",
                                 "{\"name\": null}", "{\"valid_from\": \"2026-13-01\"}", "{\"issuer_node\": \"a\"}"};
    for (size_t i = 0; i < sizeof bad_updates / sizeof *bad_updates; i++) {
        u = parse(bad_updates[i]);
        CHECK_MSG(domain_licence_update(lic, u, err, sizeof err) == TB_ERR_INVALID, "%s", bad_updates[i]);
        json_decref(u);
    }
    CHECK(json_integer_value(json_object_get(lic, "revision")) == 2);

    /* status: valid <-> suspended, valid|suspended -> revoked, revoked final */
    json_t *r = parse("{\"identifier\": \"x\", \"reason\": \"audit\"}"), *nr = parse("{\"identifier\": \"x\"}");
    CHECK(domain_licence_status(lic, "resume", r, "t1", err, sizeof err) == TB_ERR_REFUSED);
    CHECK(domain_licence_status(lic, "suspend", nr, "t1", err, sizeof err) == TB_ERR_INVALID);   /* reason required */
    CHECK(domain_licence_status(lic, "suspend", r, "t1", err, sizeof err) == TB_OK);
    CHECK(strcmp(json_string_value(json_object_get(lic, "status")), "suspended") == 0);
    CHECK(strcmp(json_string_value(json_object_get(lic, "status_reason")), "audit") == 0);
    CHECK(strcmp(json_string_value(json_object_get(lic, "status_at")), "t1") == 0);
    CHECK(json_integer_value(json_object_get(lic, "revision")) == 3);
    CHECK(domain_licence_status(lic, "suspend", r, "t2", err, sizeof err) == TB_ERR_REFUSED);
    CHECK(domain_licence_verdict(lic, "2027-01-01") != NULL &&
          strcmp(domain_licence_verdict(lic, "2027-01-01"), "suspended") == 0);
    CHECK(domain_licence_status(lic, "resume", nr, "t2", err, sizeof err) == TB_OK);   /* reason optional */
    CHECK(strcmp(domain_licence_verdict(lic, "2027-01-01"), "valid") == 0);
    CHECK(strcmp(domain_licence_verdict(lic, "2026-10-31"), "not_yet_valid") == 0);
    json_object_set_new(lic, "valid_to", json_string("2030-12-31"));
    CHECK(strcmp(domain_licence_verdict(lic, "2030-12-31"), "valid") == 0);
    CHECK(strcmp(domain_licence_verdict(lic, "2031-01-01"), "expired") == 0);
    CHECK(domain_licence_status(lic, "revoke", r, "t3", err, sizeof err) == TB_OK);
    CHECK(strcmp(domain_licence_verdict(lic, "2027-01-01"), "revoked") == 0);
    CHECK(domain_licence_status(lic, "resume", r, "t4", err, sizeof err) == TB_ERR_REFUSED);
    CHECK(domain_licence_status(lic, "revoke", r, "t4", err, sizeof err) == TB_ERR_REFUSED);
    CHECK(strstr(err, "revoked") != NULL);
    CHECK(json_integer_value(json_object_get(lic, "revision")) == 5);
    json_decref(r);
    json_decref(nr);
    json_decref(lic);
}

static json_t *case_args(const char *mode, const char *handling)
{
    char cid[19];
    snprintf(cid, sizeof cid, "44030119900307281");
    cid[17] = tb_citizen_id_check_char(cid);
    cid[18] = '\0';
    json_t *a = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "service_item", "11440000MB2C92384Y4440116001000",
                          "applicant_name", "Wang", "applicant_code", cid, "applicant_code_type", "111", "mode", mode,
                          "deadline", "2099-12-31");
    json_object_set_new(a, "handling", parse(handling));
    return a;
}

static void test_case_ops(void)
{
    char err[512];
    json_t *ev = NULL, *a = case_args("proxy", "[\"440000\"]");
    CHECK_MSG(domain_case_submit(a, "110000", "now", "110000-20261201-0123456789ab", "e1", &ev, err, sizeof err) ==
                  TB_OK, "%s", err);
    CHECK(ev && strcmp(json_string_value(json_object_get(ev, "accepting")), "110000") == 0);
    CHECK(ev && strcmp(json_string_value(json_object_get(ev, "action")), "submit") == 0);
    CHECK(ev && strcmp(json_string_value(json_object_get(ev, "by_node")), "110000") == 0);
    json_decref(ev);
    json_decref(a);

    struct {
        const char *mode, *handling, *field;
    } bad[] = {
        {"proxy", "[\"110000\"]", "mode"},          /* proxy to itself */
        {"online", "[\"440000\"]", "mode"},         /* online elsewhere */
        {"joint", "[\"440000\"]", "mode"},          /* joint needs two */
        {"proxy", "[]", "handling"},
        {"proxy", "[\"440 000\"]", "handling[0]"},
        {"joint", "[\"440000\", \"440000\"]", "handling[1]"},
        {"teleport", "[\"440000\"]", "mode"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        a = case_args(bad[i].mode, bad[i].handling);
        ev = NULL;
        CHECK_MSG(domain_case_submit(a, "110000", "now", "c", "e", &ev, err, sizeof err) == TB_ERR_INVALID &&
                      strncmp(err, bad[i].field, strlen(bad[i].field)) == 0,
                  "%s %s: %s", bad[i].mode, bad[i].handling, err);
        json_decref(a);
    }
    a = case_args("online", "[\"110000\"]");
    CHECK(domain_case_submit(a, "110000", "now", "c", "e", &ev, err, sizeof err) == TB_OK);
    json_decref(ev);
    json_object_set_new(a, "applicant_code", json_string("440301199003072819"));
    CHECK(domain_case_submit(a, "110000", "now", "c", "e", &ev, err, sizeof err) == TB_ERR_INVALID);
    CHECK(strncmp(err, "applicant_code", 14) == 0);
    json_decref(a);

    /* materials */
    const char *hash = "\"0000000000000000000000000000000000000000000000000000000000000000\"";
    char m[512];
    snprintf(m, sizeof m, "[{\"name\": \"a\", \"sha256\": %s, \"size\": 67108864, \"ref\": \"r\"}]", hash);
    a = case_args("joint", "[\"440000\", \"310000\"]");
    json_object_set_new(a, "materials", parse(m));
    CHECK_MSG(domain_case_submit(a, "110000", "now", "c", "e", &ev, err, sizeof err) == TB_OK, "%s", err);
    json_decref(ev);
    snprintf(m, sizeof m, "[{\"name\": \"a\", \"sha256\": %s, \"size\": 67108865, \"ref\": \"r\"}]", hash);
    json_object_set_new(a, "materials", parse(m));
    CHECK(domain_case_submit(a, "110000", "now", "c", "e", &ev, err, sizeof err) == TB_ERR_INVALID);
    CHECK(strstr(err, "materials[0].size") != NULL);
    json_object_set_new(a, "materials", parse("[{\"name\": \"a\", \"sha256\": \"abc\", \"size\": 1, \"ref\": \"r\"}]"));
    CHECK(domain_case_submit(a, "110000", "now", "c", "e", &ev, err, sizeof err) == TB_ERR_INVALID);
    CHECK(strstr(err, "materials[0].sha256") != NULL);
    snprintf(m, sizeof m, "[{\"name\": \"a,b\", \"sha256\": %s, \"size\": 1, \"ref\": \"r\"}]", hash);
    json_object_set_new(a, "materials", parse(m));
    CHECK(domain_case_submit(a, "110000", "now", "c", "e", &ev, err, sizeof err) == TB_ERR_INVALID);
    json_t *many = json_array();
    snprintf(m, sizeof m, "{\"name\": \"a\", \"sha256\": %s, \"size\": 1, \"ref\": \"r\"}", hash);
    for (int i = 0; i < 101; i++) json_array_append_new(many, parse(m));
    json_object_set_new(a, "materials", many);
    CHECK(domain_case_submit(a, "110000", "now", "c", "e", &ev, err, sizeof err) == TB_ERR_INVALID);
    CHECK(strstr(err, "at most 100") != NULL);
    json_array_remove(many, 0);
    CHECK(domain_case_submit(a, "110000", "now", "c", "e", &ev, err, sizeof err) == TB_OK);
    json_decref(ev);
    json_decref(a);

    /* act and rate */
    a = parse("{\"case_id\": \"c1\", \"action\": \"part_done\", \"detail\": \"ok\"}");
    CHECK(domain_case_event(a, 0, "440000", "now", "e2", &ev, err, sizeof err) == TB_OK);
    CHECK(ev && strcmp(json_string_value(json_object_get(ev, "part")), "440000") == 0);
    json_decref(ev);
    json_decref(a);
    a = parse("{\"case_id\": \"c1\", \"action\": \"submit\"}");
    CHECK(domain_case_event(a, 0, "440000", "now", "e2", &ev, err, sizeof err) == TB_ERR_INVALID);
    json_decref(a);
    a = parse("{\"case_id\": \"c1\", \"score\": 5, \"comment\": \"good\"}");
    CHECK(domain_case_event(a, 1, "110000", "now", "e3", &ev, err, sizeof err) == TB_OK);
    CHECK(ev && json_integer_value(json_object_get(ev, "score")) == 5);
    CHECK(ev && strcmp(json_string_value(json_object_get(ev, "detail")), "good") == 0);
    CHECK(ev && strcmp(json_string_value(json_object_get(ev, "action")), "rate") == 0);
    json_decref(ev);
    json_object_set_new(a, "score", json_integer(6));
    CHECK(domain_case_event(a, 1, "110000", "now", "e3", &ev, err, sizeof err) == TB_ERR_INVALID);
    CHECK(strncmp(err, "score", 5) == 0);
    json_decref(a);
}

static void test_supervision_ops(void)
{
    char err[512];
    json_t *b = NULL, *a = parse("{\"code\": \"330000000000000001\", \"name\": \"food\", \"level\": \"national\", "
                                 "\"region\": \"110000\"}");
    CHECK(domain_supitem(a, "mps", "now", &b, err, sizeof err) == TB_OK);
    CHECK(b && strcmp(json_string_value(json_object_get(b, "owner")), "mps") == 0);
    json_decref(b);
    json_object_set_new(a, "level", json_string("galactic"));
    CHECK(domain_supitem(a, "mps", "now", &b, err, sizeof err) == TB_ERR_INVALID);
    json_decref(a);

    a = parse("{\"level\": 2, \"title\": \"t\", \"detail\": \"line 1\\nline 2\", \"region\": \"110000\"}");
    CHECK(domain_risk(a, "mps", "now", "mps-0123456789ab", &b, err, sizeof err) == TB_OK);
    CHECK(b && strcmp(json_string_value(json_object_get(b, "issued_by")), "mps") == 0);
    CHECK(b && strcmp(json_string_value(json_object_get(b, "risk_id")), "mps-0123456789ab") == 0);
    json_decref(b);
    json_object_set_new(a, "level", json_integer(5));
    CHECK(domain_risk(a, "mps", "now", "x", &b, err, sizeof err) == TB_ERR_INVALID);
    json_decref(a);

    a = parse("{\"region\": \"440000\", \"kind\": \"complaint\", \"subject\": \"s\", \"detail\": \"d\"}");
    CHECK(domain_complaint(a, "110000", "now", "110000-0123456789ab", &b, err, sizeof err) == TB_OK);
    json_t *c = b, *r = NULL, *ack = parse("{\"complaint_id\": \"110000-0123456789ab\", \"note\": \"ok\"}");
    CHECK(domain_receipt(ack, c, "440000", "now", &r, err, sizeof err) == TB_OK);
    CHECK(r && strcmp(json_string_value(json_object_get(r, "filed_by")), "110000") == 0);
    CHECK(r && strcmp(json_string_value(json_object_get(r, "by")), "440000") == 0);
    json_decref(r);
    CHECK(domain_receipt(ack, c, "310000", "now", &r, err, sizeof err) == TB_ERR_REFUSED);
    CHECK(strstr(err, "only the responsible node 440000") != NULL);
    json_decref(ack);
    json_decref(c);
    json_object_set_new(a, "kind", json_string("praise"));
    CHECK(domain_complaint(a, "110000", "now", "x", &b, err, sizeof err) == TB_ERR_INVALID);
    json_decref(a);
}

static void test_misc(void)
{
    char buf[64], h[40];
    domain_now(buf, sizeof buf);
    CHECK(strlen(buf) == 24 && buf[10] == 'T' && buf[19] == '.' && buf[23] == 'Z');
    domain_today(buf, sizeof buf, 1);
    CHECK(strlen(buf) == 10 && buf[4] == '-' && tb_validate_date(buf, NULL, 0) == TB_OK);
    domain_today(buf, sizeof buf, 0);
    CHECK(strlen(buf) == 8);
    CHECK(domain_random_hex(h, sizeof h, 6) == TB_OK && strlen(h) == 12 && strspn(h, "0123456789abcdef") == 12);
    CHECK(domain_random_hex(h, 10, 6) != TB_OK);
    CHECK(domain_valid_name("110000-20261201-0123456789ab", 128));
    CHECK(!domain_valid_name("a b", 128) && !domain_valid_name("", 8) && !domain_valid_name("abc", 2));
}

int main(void)
{
    char err[TB_ERRLEN];
    const char *tmp = tbtest_tmpdir("domain");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", tmp);
    CHECK_MSG(tb_pki_init_ca(pj(dir, "ca"), "test CA", TB_ALG_ED25519, 10, err, sizeof err) == TB_OK, "%s", err);
    test_bytes_layout();
    test_seal_roundtrip(dir, TB_ALG_ED25519, "440000");
    test_seal_roundtrip(dir, TB_ALG_P256, "310000");
    test_seal_roundtrip(dir, TB_ALG_SM2, "mps");
    test_entry_check(dir);
    test_licence_ops();
    test_case_ops();
    test_supervision_ops();
    test_misc();
    tbtest_rmtree(dir);
    return tbtest_done("test_domain");
}
