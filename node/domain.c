/* domain.c -- seals, the check of received tb.* entries, and the pure half
 * of the client API's operations (see domain.h and docs/client-api.md). */
#include "domain.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <tongban/validate.h>

#include "errbuf.h"

/* ------------------------------------------------------------------------
 * A growable byte buffer
 * ------------------------------------------------------------------------ */

typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} buf_t;

static void buf_add(buf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_str(buf_t *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

/* ------------------------------------------------------------------------
 * Canonical bytes
 * ------------------------------------------------------------------------ */

static const char *const licence_fields[] = {
    "identifier", "type_code", "type_name", "number", "name", "issue_date", "issuer_name", "issuer_code",
    "jurisdiction", "holder_name", "holder_code", "holder_code_type", "valid_from", "valid_to",
    "service_item_code", "extension", "file_hash", "file_url", "status", "status_reason", "status_at",
    "revision", "issuer_node", NULL,
};

static const char *const case_fields[] = {
    "case_id", "event_id", "action", "by_node", "at", "part", "detail", "service_item", "applicant_name",
    "applicant_code", "applicant_code_type", "mode", "accepting", "handling", "deadline", "materials", "result",
    "score", NULL,
};

/* Appends one array element's text (no "," / "|" inside: the joins must
 * stay unambiguous). Returns 0, or -1 with err. */
static int put_part(buf_t *b, const char *field, size_t i, const char *what, const char *s, const char *forbid,
                    char *err, size_t errlen)
{
    if (strpbrk(s, forbid)) {
        tb_seterr(err, errlen, "%s[%zu]%s%s: contains one of \"%s\" (no canonical form)", field, i, *what ? "." : "",
                  what, forbid);
        return -1;
    }
    buf_str(b, s);
    return 0;
}

/* The value of field v as its canonical text into b. Returns 0 or -1. */
static int render(buf_t *b, const char *field, const json_t *v, char *err, size_t errlen)
{
    char num[32];
    int must_int = strcmp(field, "revision") == 0 || strcmp(field, "score") == 0;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_integer(v)) {
        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        buf_str(b, num);
        return 0;
    }
    if (must_int) {
        tb_seterr(err, errlen, "%s: expected an integer", field);
        return -1;
    }
    if (json_is_string(v)) {
        buf_add(b, json_string_value(v), json_string_length(v));
        return 0;
    }
    if (json_is_array(v)) {
        size_t i;
        const json_t *e;
        json_array_foreach(v, i, e) {
            if (i)
                buf_add(b, ",", 1);
            if (json_is_integer(e)) {
                snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(e));
                buf_str(b, num);
            } else if (json_is_string(e)) {
                if (put_part(b, field, i, "", json_string_value(e), ",", err, errlen) != 0)
                    return -1;
            } else if (json_is_object(e) && strcmp(field, "materials") == 0) {
                static const char *const parts[] = {"name", "sha256", "size", "ref"};
                for (int k = 0; k < 4; k++) {
                    const json_t *p = json_object_get(e, parts[k]);
                    if (k)
                        buf_add(b, "|", 1);
                    if (!p || json_is_null(p))
                        continue;
                    if (k == 2 && json_is_integer(p)) {
                        snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(p));
                        buf_str(b, num);
                    } else if (k != 2 && json_is_string(p)) {
                        if (put_part(b, field, i, parts[k], json_string_value(p), ",|", err, errlen) != 0)
                            return -1;
                    } else {
                        tb_seterr(err, errlen, "%s[%zu].%s: expected %s", field, i, parts[k],
                                  k == 2 ? "an integer" : "a string");
                        return -1;
                    }
                }
            } else {
                tb_seterr(err, errlen, "%s[%zu]: expected a string or an integer", field, i);
                return -1;
            }
        }
        return 0;
    }
    char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    if (!text) {
        b->oom = 1;
        return 0;
    }
    buf_str(b, text);
    free(text);
    return 0;
}

tb_err_t tb_seal_bytes(domain_kind_t kind, const json_t *body, char **out, size_t *len, char *err, size_t errlen)
{
    buf_t b = {0}, val = {0};
    char head[64];
    *out = NULL;
    *len = 0;
    if (!json_is_object(body)) {
        tb_seterr(err, errlen, "seal: the body is not a JSON object");
        return TB_ERR_INVALID;
    }
    const char *const *fields = kind == DOMAIN_LICENCE ? licence_fields : case_fields;
    buf_str(&b, kind == DOMAIN_LICENCE ? "tongban-licence-seal/1\n" : "tongban-case-event-seal/1\n");
    for (size_t i = 0; fields[i]; i++) {
        val.len = 0;
        buf_add(&val, "", 0);
        if (render(&val, fields[i], json_object_get(body, fields[i]), err, errlen) != 0) {
            free(val.p);
            free(b.p);
            return TB_ERR_INVALID;
        }
        snprintf(head, sizeof head, "%s=%zu:", fields[i], val.len);
        buf_str(&b, head);
        buf_add(&b, val.p ? val.p : "", val.len);
        buf_add(&b, "\n", 1);
    }
    free(val.p);
    if (b.oom || val.oom) {
        free(b.p);
        tb_seterr(err, errlen, "seal: out of memory");
        return TB_ERR_NOMEM;
    }
    *out = b.p;
    *len = b.len;
    return TB_OK;
}

/* ------------------------------------------------------------------------
 * Seal and verify
 * ------------------------------------------------------------------------ */

static char *b64_encode(const uint8_t *data, size_t len)
{
    char *out = malloc(4 * ((len + 2) / 3) + 1);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

/* Standard base64 with padding, nothing else (no whitespace). Returns a
 * malloc'ed buffer and its length, or NULL if s is not base64. */
static uint8_t *b64_decode(const char *s, size_t *outlen)
{
    size_t n = strlen(s);
    if (n == 0 || n % 4 != 0 || n > (1u << 20))
        return NULL;
    size_t pad = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
        if (c == '=' && i >= n - 2) {
            pad++;
            continue;
        }
        if (!ok || pad)
            return NULL;
    }
    uint8_t *out = malloc(n / 4 * 3 + 1);
    if (!out)
        return NULL;
    int m = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
    if (m < 0 || (size_t)m < pad) {
        free(out);
        return NULL;
    }
    *outlen = (size_t)m - pad;     /* DecodeBlock counts the padding as zero bytes */
    return out;
}

tb_err_t domain_seal(tb_signer_t *signer, const tb_cert_t *cert, const char *node_id, domain_kind_t kind,
                     json_t *body, char *err, size_t errlen)
{
    char *bytes = NULL, *sig64 = NULL;
    uint8_t *sig = NULL;
    size_t len = 0, siglen = 0;
    tb_err_t rc;
    json_object_del(body, "seal");
    if ((rc = tb_seal_bytes(kind, body, &bytes, &len, err, errlen)) != TB_OK)
        return rc;
    if ((rc = tb_signer_sign(signer, (const uint8_t *)bytes, len, &sig, &siglen, err, errlen)) != TB_OK)
        goto done;
    rc = TB_ERR_NOMEM;
    if (!(sig64 = b64_encode(sig, siglen)))
        goto done;
    json_t *seal = json_pack("{s:s, s:s, s:s, s:s}", "alg", tb_alg_name(tb_signer_alg(signer)), "signer", node_id,
                             "key_id", tb_cert_key_id(cert), "sig", sig64);
    if (!seal || json_object_set_new(body, "seal", seal) != 0)
        goto done;
    rc = TB_OK;
done:
    if (rc == TB_ERR_NOMEM)
        tb_seterr(err, errlen, "seal: out of memory");
    free(bytes);
    free(sig);
    free(sig64);
    return rc;
}

static const char *str_of(const json_t *obj, const char *key)
{
    const json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

tb_err_t domain_verify_seal(domain_kind_t kind, const json_t *body, const tb_cert_t *signer_cert, char *why,
                            size_t whylen)
{
    const json_t *seal = json_object_get(body, "seal");
    const char *alg = str_of(seal, "alg"), *signer = str_of(seal, "signer");
    const char *key_id = str_of(seal, "key_id"), *sig64 = str_of(seal, "sig");
    char *bytes = NULL;
    uint8_t *sig = NULL;
    size_t len = 0, siglen = 0;
    tb_err_t rc;
    if (!json_is_object(seal)) {
        tb_seterr(why, whylen, "no seal");
        return TB_ERR_INVALID;
    }
    if (!alg || !signer || !key_id || !sig64) {
        tb_seterr(why, whylen, "malformed seal: alg, signer, key_id and sig are required strings");
        return TB_ERR_INVALID;
    }
    if (strcmp(signer, tb_cert_node_id(signer_cert)) != 0) {
        tb_seterr(why, whylen, "sealed by \"%.64s\", not by \"%s\"", signer, tb_cert_node_id(signer_cert));
        return TB_ERR_BADSIG;
    }
    if (strcmp(alg, tb_alg_name(tb_cert_alg(signer_cert))) != 0) {
        tb_seterr(why, whylen, "seal algorithm \"%.16s\" is not that of %s's certificate (%s)", alg, signer,
                  tb_alg_name(tb_cert_alg(signer_cert)));
        return TB_ERR_BADSIG;
    }
    if (strcmp(key_id, tb_cert_key_id(signer_cert)) != 0) {
        tb_seterr(why, whylen, "sealed with another certificate of %s (key_id %.16s..., current %.16s...)", signer,
                  key_id, tb_cert_key_id(signer_cert));
        return TB_ERR_BADSIG;
    }
    if (!(sig = b64_decode(sig64, &siglen))) {
        tb_seterr(why, whylen, "malformed seal: sig is not base64");
        return TB_ERR_INVALID;
    }
    char e2[256];
    if ((rc = tb_seal_bytes(kind, body, &bytes, &len, e2, sizeof e2)) != TB_OK) {
        tb_seterr(why, whylen, "%s", e2);
        goto done;
    }
    rc = tb_cert_verify(signer_cert, (const uint8_t *)bytes, len, sig, siglen, e2, sizeof e2);
    if (rc == TB_ERR_BADSIG)
        tb_seterr(why, whylen, "the seal of %s does not verify (the body was changed, or not sealed by it)", signer);
    else if (rc != TB_OK)
        tb_seterr(why, whylen, "seal: %s", e2);
    else if (why && whylen)
        why[0] = '\0';
done:
    free(bytes);
    free(sig);
    return rc;
}

/* ------------------------------------------------------------------------
 * Received entries
 * ------------------------------------------------------------------------ */

int domain_check_entry(domain_cert_fn lookup, void *arg, const char *sender, const char *catalog,
                       const char *key, const char *origin, const char *body, char *why, size_t whylen)
{
    static const char *const known[] = {"tb.licence", "tb.case_event", "tb.risk", "tb.complaint",
                                        "tb.complaint_receipt", "tb.supitem", "tb.chunk", NULL};
    int k = 0;
    sender = sender ? sender : "";
    catalog = catalog ? catalog : "";
    key = key ? key : "";
    while (known[k] && strcmp(known[k], catalog) != 0)
        k++;
    if (!known[k]) {
        tb_seterr(why, whylen, "unknown domain catalog \"%.64s\" (the tb. prefix is reserved)", catalog);
        return 1;
    }
    if (!origin || strcmp(origin, sender) != 0) {
        tb_seterr(why, whylen, "%s %.128s: origin \"%.64s\" is not the sender \"%.64s\"", catalog, key,
                  origin ? origin : "", sender);
        return 1;
    }
    if (!body || k > 1)
        return 0;               /* deletes, and the catalogs the batch signature covers */

    domain_kind_t kind = k == 0 ? DOMAIN_LICENCE : DOMAIN_CASE_EVENT;
    json_error_t jerr;
    json_t *doc = json_loads(body, 0, &jerr);
    int refused = 1;
    char sub[512];
    if (!json_is_object(doc)) {
        tb_seterr(why, whylen, "%s %.128s: the body is not a JSON object", catalog, key);
        goto done;
    }
    const char *authority = str_of(doc, kind == DOMAIN_LICENCE ? "issuer_node" : "by_node");
    const char *signer = str_of(json_object_get(doc, "seal"), "signer");
    char want[300];
    if (kind == DOMAIN_LICENCE)
        snprintf(want, sizeof want, "%s", str_of(doc, "identifier") ? str_of(doc, "identifier") : "");
    else
        snprintf(want, sizeof want, "%s/%s", str_of(doc, "case_id") ? str_of(doc, "case_id") : "",
                 str_of(doc, "event_id") ? str_of(doc, "event_id") : "");
    if (strcmp(want, key) != 0) {
        tb_seterr(why, whylen, "%s %.128s: stored under another key than its body names (%.128s)", catalog, key,
                  want);
        goto done;
    }
    if (!authority || strcmp(authority, sender) != 0) {
        tb_seterr(why, whylen, "%s %.128s: %s \"%.64s\" is not the sender \"%.64s\"", catalog, key,
                  kind == DOMAIN_LICENCE ? "issuer_node" : "by_node", authority ? authority : "", sender);
        goto done;
    }
    if (!signer || strcmp(signer, sender) != 0) {
        tb_seterr(why, whylen, "%s %.128s: sealed by \"%.64s\", not by the sender \"%.64s\"", catalog, key,
                  signer ? signer : "(no seal)", sender);
        goto done;
    }
    int revoked = 0;
    const tb_cert_t *cert = lookup ? lookup(arg, sender, &revoked) : NULL;
    if (!cert) {
        tb_seterr(why, whylen, "%s %.128s: signer %.64s is not in the directory", catalog, key, sender);
        goto done;
    }
    if (revoked) {
        tb_seterr(why, whylen, "%s %.128s: signer %.64s is revoked", catalog, key, sender);
        goto done;
    }
    if (domain_verify_seal(kind, doc, cert, sub, sizeof sub) != TB_OK) {
        tb_seterr(why, whylen, "%s %.128s: %s", catalog, key, sub);
        goto done;
    }
    refused = 0;
done:
    json_decref(doc);
    return refused;
}

/* ------------------------------------------------------------------------
 * Time and identifiers
 * ------------------------------------------------------------------------ */

char *domain_now(char *out, size_t len)
{
    struct timespec ts;
    struct tm tm;
    char base[24];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, len, "%s.%03ldZ", base, ts.tv_nsec / 1000000);
    return out;
}

char *domain_today(char *out, size_t len, int dash)
{
    time_t t = time(NULL) + 8 * 3600;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, len, dash ? "%Y-%m-%d" : "%Y%m%d", &tm);
    return out;
}

tb_err_t domain_random_hex(char *out, size_t len, size_t nbytes)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t r[32];
    if (nbytes > sizeof r || len < 2 * nbytes + 1 || RAND_bytes(r, (int)nbytes) != 1)
        return TB_ERR_CRYPTO;
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = hex[r[i] >> 4];
        out[2 * i + 1] = hex[r[i] & 15];
    }
    out[2 * nbytes] = '\0';
    return TB_OK;
}

int domain_valid_name(const char *s, size_t max)
{
    size_t n = 0;
    if (!s)
        return 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= max || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                          c == '.' || c == '-'))
            return 0;
    }
    return n > 0;
}

/* ------------------------------------------------------------------------
 * Arguments
 * ------------------------------------------------------------------------ */

typedef tb_err_t (*vfn_t)(const char *s, char *why, size_t whylen);

enum { A_STR = 1, A_TEXT, A_INT, A_BOOL, A_OBJ, A_ARR, A_STR_OR_OBJ };

typedef struct {
    const char *name;
    int type;
    int required;
    long long min, max;     /* A_INT: bounds; strings: max bytes; A_OBJ: max bytes of its JSON */
    vfn_t check;
} spec_t;

#define NSPEC(a) (sizeof(a) / sizeof *(a))

static const spec_t *spec_find(const spec_t *spec, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(spec[i].name, name) == 0)
            return &spec[i];
    return NULL;
}

/* A string without control characters (text: tab and newlines allowed). */
static int clean_string(const char *s, int text)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c < 0x20 && !(text && (c == '\n' || c == '\t' || c == '\r'))) || c == 0x7F)
            return 0;
    }
    return 1;
}

/* A number of an extension that survives PostgreSQL's jsonb and back
 * unchanged (so the seal still verifies on every node): integers, and
 * reals below 1e15 in magnitude. */
static int json_numbers_stable(const json_t *v)
{
    if (json_is_real(v)) {
        double d = json_real_value(v);
        return d > -1e15 && d < 1e15;
    }
    if (json_is_object(v)) {
        const char *k;
        json_t *e;
        json_object_foreach((json_t *)v, k, e) if (!json_numbers_stable(e)) return 0;
    } else if (json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) if (!json_numbers_stable(e)) return 0;
    }
    return 1;
}

/* Checks one present, non-null value against its spec. */
static tb_err_t check_value(const spec_t *s, const json_t *v, char *err, size_t errlen)
{
    char why[256] = "";
    if (s->type == A_INT) {
        if (!json_is_integer(v) || json_integer_value(v) < s->min || json_integer_value(v) > s->max) {
            tb_seterr(err, errlen, "%s: expected an integer from %lld to %lld", s->name, s->min, s->max);
            return TB_ERR_INVALID;
        }
        return TB_OK;
    }
    if (s->type == A_BOOL || s->type == A_ARR) {
        if (s->type == A_BOOL ? !json_is_boolean(v) : !json_is_array(v)) {
            tb_seterr(err, errlen, "%s: expected %s", s->name, s->type == A_BOOL ? "true or false" : "a list");
            return TB_ERR_INVALID;
        }
        return TB_OK;
    }
    if ((s->type == A_OBJ || s->type == A_STR_OR_OBJ) && json_is_object(v)) {
        char *text = json_dumps(v, JSON_COMPACT);
        size_t n = text ? strlen(text) : 0;
        free(text);
        if (!text || (long long)n > s->max) {
            tb_seterr(err, errlen, "%s: larger than %lld bytes of JSON", s->name, s->max);
            return TB_ERR_INVALID;
        }
        if (!json_numbers_stable(v)) {
            tb_seterr(err, errlen, "%s: numbers must be integers or below 1e15 in magnitude", s->name);
            return TB_ERR_INVALID;
        }
        return TB_OK;
    }
    if (s->type == A_OBJ) {
        tb_seterr(err, errlen, "%s: expected a JSON object", s->name);
        return TB_ERR_INVALID;
    }
    /* A_STR, A_TEXT, and A_STR_OR_OBJ given a non-object */
    if (!json_is_string(v)) {
        tb_seterr(err, errlen, "%s: expected a string%s", s->name, s->type == A_STR_OR_OBJ ? " or an object" : "");
        return TB_ERR_INVALID;
    }
    const char *str = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0) {
        tb_seterr(err, errlen, "%s: must not be empty", s->name);
        return TB_ERR_INVALID;
    }
    if ((long long)n > s->max) {
        tb_seterr(err, errlen, "%s: longer than %lld bytes", s->name, s->max);
        return TB_ERR_INVALID;
    }
    if (strlen(str) != n || !clean_string(str, s->type != A_STR)) {
        tb_seterr(err, errlen, "%s: contains a control character", s->name);
        return TB_ERR_INVALID;
    }
    if (s->check && s->check(str, why, sizeof why) != TB_OK) {
        tb_seterr(err, errlen, "%s: %s", s->name, why[0] ? why : "invalid");
        return TB_ERR_INVALID;
    }
    return TB_OK;
}

/* Checks obj against spec: unknown fields (when strict), required ones
 * missing, each present value. null counts as absent. */
static tb_err_t check_args(const json_t *obj, const spec_t *spec, size_t n, int strict, char *err, size_t errlen)
{
    const char *k;
    json_t *v;
    tb_err_t rc;
    if (!json_is_object(obj)) {
        tb_seterr(err, errlen, "args: expected a JSON object");
        return TB_ERR_INVALID;
    }
    if (strict)
        json_object_foreach((json_t *)obj, k, v) {
            if (!spec_find(spec, n, k)) {
                tb_seterr(err, errlen, "%.64s: unknown field", k);
                return TB_ERR_INVALID;
            }
        }
    for (size_t i = 0; i < n; i++) {
        v = json_object_get(obj, spec[i].name);
        if (!v || json_is_null(v)) {
            if (spec[i].required) {
                tb_seterr(err, errlen, "%s: required", spec[i].name);
                return TB_ERR_INVALID;
            }
            continue;
        }
        if ((rc = check_value(&spec[i], v, err, errlen)) != TB_OK)
            return rc;
    }
    return TB_OK;
}

/* Copies the present, non-null fields of spec from args into body. */
static void copy_fields(json_t *body, const json_t *args, const spec_t *spec, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_object_get(args, spec[i].name);
        if (v && !json_is_null(v))
            json_object_set(body, spec[i].name, v);
    }
}

static tb_err_t v_hex64(const char *s, char *why, size_t whylen)
{
    if (strlen(s) != 64 || strspn(s, "0123456789abcdefABCDEF") != 64) {
        tb_seterr(why, whylen, "expected 64 hexadecimal characters (SHA-256)");
        return TB_ERR_INVALID;
    }
    return TB_OK;
}

static tb_err_t v_node(const char *s, char *why, size_t whylen)
{
    if (!domain_valid_name(s, 64)) {
        tb_seterr(why, whylen, "expected a node id, 1 to 64 characters of [A-Za-z0-9_.-]");
        return TB_ERR_INVALID;
    }
    return TB_OK;
}

static tb_err_t v_case_id(const char *s, char *why, size_t whylen)
{
    if (!domain_valid_name(s, 128)) {
        tb_seterr(why, whylen, "expected a case id, 1 to 128 characters of [A-Za-z0-9_.-]");
        return TB_ERR_INVALID;
    }
    return TB_OK;
}

static tb_err_t v_one_of(const char *s, const char *const *choices, char *why, size_t whylen)
{
    char list[160] = "";
    for (size_t i = 0; choices[i]; i++) {
        if (strcmp(s, choices[i]) == 0)
            return TB_OK;
        size_t u = strlen(list);
        snprintf(list + u, sizeof list - u, "%s%s", i ? ", " : "", choices[i]);
    }
    tb_seterr(why, whylen, "expected one of %s", list);
    return TB_ERR_INVALID;
}

#define ENUM_CHECK(fn, ...)                                             \
    static tb_err_t fn(const char *s, char *why, size_t whylen)         \
    {                                                                   \
        static const char *const c[] = {__VA_ARGS__, NULL};             \
        return v_one_of(s, c, why, whylen);                             \
    }
ENUM_CHECK(v_mode, "online", "proxy", "joint")
ENUM_CHECK(v_action, "withdraw", "accept", "reject", "start", "part_done", "decide", "deliver")
ENUM_CHECK(v_level, "national", "provincial", "city", "county")
ENUM_CHECK(v_complaint_kind, "complaint", "report")
ENUM_CHECK(v_code_type, "111", "001")

/* ------------------------------------------------------------------------
 * Licences
 * ------------------------------------------------------------------------ */

static const spec_t licence_spec[] = {
    {"identifier", A_STR, 1, 0, 128, tb_validate_licence_id},
    {"type_code", A_STR, 1, 0, 64, NULL},
    {"type_name", A_STR, 1, 0, 256, NULL},
    {"number", A_STR, 1, 0, 128, NULL},
    {"name", A_STR, 1, 0, 256, NULL},
    {"issue_date", A_STR, 1, 0, 10, tb_validate_date},
    {"issuer_name", A_STR, 1, 0, 256, NULL},
    {"issuer_code", A_STR, 1, 0, 18, tb_validate_uscc},
    {"jurisdiction", A_STR, 1, 0, 6, tb_validate_region},
    {"holder_name", A_STR, 1, 0, 256, NULL},
    {"holder_code", A_STR, 1, 0, 18, NULL},
    {"holder_code_type", A_STR, 1, 0, 3, v_code_type},
    {"valid_from", A_STR, 1, 0, 10, tb_validate_date},
    {"valid_to", A_STR, 0, 0, 10, tb_validate_date},
    {"service_item_code", A_STR, 0, 0, 50, tb_validate_item_code},
    {"extension", A_OBJ, 0, 0, 16384, NULL},
    {"file_hash", A_STR, 0, 0, 160, NULL},
    {"file_url", A_STR, 0, 0, 2048, NULL},
};

/* Cross-field rules of a licence's content: holder code by its type, and
 * valid_from <= valid_to. */
static tb_err_t check_licence_rules(const json_t *lic, char *err, size_t errlen)
{
    char why[256] = "";
    if (tb_validate_holder(str_of(lic, "holder_code_type"), str_of(lic, "holder_code"), why, sizeof why) != TB_OK) {
        tb_seterr(err, errlen, "holder_code: %s", why[0] ? why : "invalid for its holder_code_type");
        return TB_ERR_INVALID;
    }
    const char *from = str_of(lic, "valid_from"), *to = str_of(lic, "valid_to");
    if (from && to && strcmp(from, to) > 0) {
        tb_seterr(err, errlen, "valid_to: %s is before valid_from %s", to, from);
        return TB_ERR_INVALID;
    }
    return TB_OK;
}

tb_err_t domain_licence_issue(const json_t *args, const char *node_id, const char *now, json_t **out, char *err,
                              size_t errlen)
{
    tb_err_t rc;
    *out = NULL;
    if ((rc = check_args(args, licence_spec, NSPEC(licence_spec), 1, err, errlen)) != TB_OK)
        return rc;
    if ((rc = check_licence_rules(args, err, errlen)) != TB_OK)
        return rc;
    json_t *body = json_object();
    if (!body)
        return TB_ERR_NOMEM;
    copy_fields(body, args, licence_spec, NSPEC(licence_spec));
    json_object_set_new(body, "status", json_string("valid"));
    json_object_set_new(body, "status_reason", json_string(""));
    json_object_set_new(body, "status_at", json_string(now));
    json_object_set_new(body, "revision", json_integer(1));
    json_object_set_new(body, "issuer_node", json_string(node_id));
    *out = body;
    return TB_OK;
}

static json_int_t revision_of(const json_t *lic)
{
    const json_t *r = json_object_get(lic, "revision");
    return json_is_integer(r) ? json_integer_value(r) : 0;
}

tb_err_t domain_licence_update(json_t *cur, const json_t *args, char *err, size_t errlen)
{
    const char *k;
    json_t *v;
    tb_err_t rc;
    int changed = 0;
    if (!json_is_object(args)) {
        tb_seterr(err, errlen, "args: expected a JSON object");
        return TB_ERR_INVALID;
    }
    json_object_foreach((json_t *)args, k, v) {
        if (strcmp(k, "identifier") == 0)
            continue;
        const spec_t *s = spec_find(licence_spec, NSPEC(licence_spec), k);
        if (!s || strcmp(k, "issuer_name") == 0 || strcmp(k, "issuer_code") == 0) {
            tb_seterr(err, errlen, "%.64s: %s", k,
                      s ? "the issuer of a licence does not change" : "not a content field of a licence");
            return TB_ERR_INVALID;
        }
        if (json_is_null(v)) {
            if (s->required) {
                tb_seterr(err, errlen, "%s: required, cannot be removed", k);
                return TB_ERR_INVALID;
            }
            json_object_del(cur, k);
        } else {
            if ((rc = check_value(s, v, err, errlen)) != TB_OK)
                return rc;
            json_object_set(cur, k, v);
        }
        changed++;
    }
    if (!changed) {
        tb_seterr(err, errlen, "args: no content field to update");
        return TB_ERR_INVALID;
    }
    if ((rc = check_licence_rules(cur, err, errlen)) != TB_OK)
        return rc;
    json_object_set_new(cur, "revision", json_integer(revision_of(cur) + 1));
    return TB_OK;
}

tb_err_t domain_licence_status(json_t *cur, const char *action, const json_t *args, const char *now, char *err,
                               size_t errlen)
{
    const char *status = str_of(cur, "status");
    const char *id = str_of(cur, "identifier");
    int resume = strcmp(action, "resume") == 0;
    const spec_t spec[] = {
        {"identifier", A_STR, 1, 0, 128, NULL},
        {"reason", A_TEXT, !resume, 0, 1024, NULL},
    };
    tb_err_t rc;
    if ((rc = check_args(args, spec, NSPEC(spec), 1, err, errlen)) != TB_OK)
        return rc;
    const char *to = strcmp(action, "suspend") == 0 ? "suspended" : resume ? "valid" : "revoked";
    int ok = status && (strcmp(action, "suspend") == 0 ? strcmp(status, "valid") == 0
                        : resume                      ? strcmp(status, "suspended") == 0
                                                      : strcmp(status, "valid") == 0 || strcmp(status, "suspended") == 0);
    if (!ok) {
        tb_seterr(err, errlen, "licence %.128s is %s: cannot %s it (valid <-> suspended, valid|suspended -> revoked)",
                  id ? id : "?", status ? status : "without status", action);
        return TB_ERR_REFUSED;
    }
    const char *reason = str_of(args, "reason");
    json_object_set_new(cur, "status", json_string(to));
    json_object_set_new(cur, "status_reason", json_string(reason ? reason : ""));
    json_object_set_new(cur, "status_at", json_string(now));
    json_object_set_new(cur, "revision", json_integer(revision_of(cur) + 1));
    return TB_OK;
}

const char *domain_licence_verdict(const json_t *lic, const char *today)
{
    const char *status = str_of(lic, "status");
    const char *from = str_of(lic, "valid_from"), *to = str_of(lic, "valid_to");
    if (!status)
        return "unknown";
    if (strcmp(status, "revoked") == 0)
        return "revoked";
    if (strcmp(status, "suspended") == 0)
        return "suspended";
    if (strcmp(status, "expired") == 0)
        return "expired";
    if (strcmp(status, "valid") != 0)
        return "unknown";
    if (from && strcmp(today, from) < 0)
        return "not_yet_valid";
    if (to && *to && strcmp(today, to) > 0)
        return "expired";
    return "valid";
}

/* ------------------------------------------------------------------------
 * Cases
 * ------------------------------------------------------------------------ */

static tb_err_t check_materials(const json_t *m, char *err, size_t errlen)
{
    static const spec_t spec[] = {
        {"name", A_STR, 1, 0, 256, NULL},
        {"sha256", A_STR, 1, 0, 64, v_hex64},
        {"size", A_INT, 1, 0, DOMAIN_MAX_MATERIAL_BYTES, NULL},
        {"ref", A_STR, 1, 0, 2048, NULL},
    };
    size_t i;
    const json_t *e;
    char sub[256];
    if (json_array_size(m) > DOMAIN_MAX_MATERIALS) {
        tb_seterr(err, errlen, "materials: at most %d per case", DOMAIN_MAX_MATERIALS);
        return TB_ERR_INVALID;
    }
    json_array_foreach(m, i, e) {
        if (check_args(e, spec, NSPEC(spec), 1, sub, sizeof sub) != TB_OK) {
            tb_seterr(err, errlen, "materials[%zu].%s", i, sub);
            return TB_ERR_INVALID;
        }
        const char *name = str_of(e, "name"), *ref = str_of(e, "ref");
        if (strpbrk(name, ",|") || strpbrk(ref, ",|")) {
            tb_seterr(err, errlen, "materials[%zu]: name and ref must not contain \",\" or \"|\"", i);
            return TB_ERR_INVALID;
        }
    }
    return TB_OK;
}

tb_err_t domain_case_submit(const json_t *args, const char *node_id, const char *now, const char *case_id,
                            const char *event_id, json_t **out, char *err, size_t errlen)
{
    static const spec_t spec[] = {
        {"service_item", A_STR, 1, 0, 50, tb_validate_item_code},
        {"applicant_name", A_STR, 1, 0, 256, NULL},
        {"applicant_code", A_STR, 1, 0, 18, NULL},
        {"applicant_code_type", A_STR, 1, 0, 3, v_code_type},
        {"mode", A_STR, 1, 0, 16, v_mode},
        {"handling", A_ARR, 1, 0, 0, NULL},
        {"deadline", A_STR, 1, 0, 10, tb_validate_date},
        {"materials", A_ARR, 0, 0, 0, NULL},
        {"detail", A_TEXT, 0, 0, 4096, NULL},
    };
    char why[256] = "";
    tb_err_t rc;
    *out = NULL;
    if ((rc = check_args(args, spec, NSPEC(spec), 1, err, errlen)) != TB_OK)
        return rc;
    if (tb_validate_holder(str_of(args, "applicant_code_type"), str_of(args, "applicant_code"), why, sizeof why) !=
        TB_OK) {
        tb_seterr(err, errlen, "applicant_code: %s", why[0] ? why : "invalid for its applicant_code_type");
        return TB_ERR_INVALID;
    }
    const json_t *h = json_object_get(args, "handling");
    size_t nh = json_array_size(h);
    if (nh == 0 || nh > 32) {
        tb_seterr(err, errlen, "handling: expected 1 to 32 node ids");
        return TB_ERR_INVALID;
    }
    for (size_t i = 0; i < nh; i++) {
        const char *id = json_string_value(json_array_get(h, i));
        if (!id || !domain_valid_name(id, 64)) {
            tb_seterr(err, errlen, "handling[%zu]: expected a node id, 1 to 64 characters of [A-Za-z0-9_.-]", i);
            return TB_ERR_INVALID;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(id, json_string_value(json_array_get(h, j))) == 0) {
                tb_seterr(err, errlen, "handling[%zu]: %s is listed twice", i, id);
                return TB_ERR_INVALID;
            }
    }
    const char *mode = str_of(args, "mode");
    const char *lead = json_string_value(json_array_get(h, 0));
    if (strcmp(mode, "online") == 0 && (nh != 1 || strcmp(lead, node_id) != 0)) {
        tb_seterr(err, errlen, "mode: online means this node (%s) handles the case alone: handling = [\"%s\"]",
                  node_id, node_id);
        return TB_ERR_INVALID;
    }
    if (strcmp(mode, "proxy") == 0 && (nh != 1 || strcmp(lead, node_id) == 0)) {
        tb_seterr(err, errlen, "mode: proxy means one other node handles the case: handling = [that node]");
        return TB_ERR_INVALID;
    }
    if (strcmp(mode, "joint") == 0 && nh < 2) {
        tb_seterr(err, errlen, "mode: joint needs two or more handling nodes");
        return TB_ERR_INVALID;
    }
    const json_t *m = json_object_get(args, "materials");
    if (m && !json_is_null(m) && (rc = check_materials(m, err, errlen)) != TB_OK)
        return rc;

    json_t *body = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "case_id", case_id, "event_id", event_id, "action",
                             "submit", "by_node", node_id, "at", now, "accepting", node_id);
    if (!body)
        return TB_ERR_NOMEM;
    copy_fields(body, args, spec, NSPEC(spec));
    *out = body;
    return TB_OK;
}

tb_err_t domain_case_event(const json_t *args, int rate, const char *node_id, const char *now,
                           const char *event_id, json_t **out, char *err, size_t errlen)
{
    static const spec_t act_spec[] = {
        {"case_id", A_STR, 1, 0, 128, v_case_id},
        {"action", A_STR, 1, 0, 16, v_action},
        {"detail", A_TEXT, 0, 0, 4096, NULL},
        {"result", A_STR_OR_OBJ, 0, 0, 16384, NULL},
    };
    static const spec_t rate_spec[] = {
        {"case_id", A_STR, 1, 0, 128, v_case_id},
        {"score", A_INT, 1, 1, 5, NULL},
        {"comment", A_TEXT, 0, 0, 4096, NULL},
    };
    tb_err_t rc;
    *out = NULL;
    if (rate)
        rc = check_args(args, rate_spec, NSPEC(rate_spec), 1, err, errlen);
    else
        rc = check_args(args, act_spec, NSPEC(act_spec), 1, err, errlen);
    if (rc != TB_OK)
        return rc;
    const char *action = rate ? "rate" : str_of(args, "action");
    json_t *body = json_pack("{s:s, s:s, s:s, s:s, s:s}", "case_id", str_of(args, "case_id"), "event_id", event_id,
                             "action", action, "by_node", node_id, "at", now);
    if (!body)
        return TB_ERR_NOMEM;
    if (rate) {
        json_object_set(body, "score", json_object_get(args, "score"));
        if (str_of(args, "comment"))
            json_object_set(body, "detail", json_object_get(args, "comment"));
    } else {
        copy_fields(body, args, act_spec + 2, 2);
        if (strcmp(action, "part_done") == 0)
            json_object_set_new(body, "part", json_string(node_id));
    }
    *out = body;
    return TB_OK;
}

/* ------------------------------------------------------------------------
 * Supervision
 * ------------------------------------------------------------------------ */

tb_err_t domain_supitem(const json_t *args, const char *node_id, const char *now, json_t **out, char *err,
                        size_t errlen)
{
    static const spec_t spec[] = {
        {"code", A_STR, 1, 0, 50, tb_validate_item_code},
        {"name", A_STR, 1, 0, 256, NULL},
        {"level", A_STR, 1, 0, 16, v_level},
        {"parent", A_STR, 0, 0, 50, tb_validate_item_code},
        {"region", A_STR, 1, 0, 6, tb_validate_region},
    };
    tb_err_t rc;
    *out = NULL;
    if ((rc = check_args(args, spec, NSPEC(spec), 1, err, errlen)) != TB_OK)
        return rc;
    const char *parent = str_of(args, "parent");
    if (parent && strcmp(parent, str_of(args, "code")) == 0) {
        tb_seterr(err, errlen, "parent: an item cannot be its own parent");
        return TB_ERR_INVALID;
    }
    json_t *body = json_pack("{s:s, s:s}", "owner", node_id, "updated_at", now);
    if (!body)
        return TB_ERR_NOMEM;
    copy_fields(body, args, spec, NSPEC(spec));
    *out = body;
    return TB_OK;
}

tb_err_t domain_risk(const json_t *args, const char *node_id, const char *now, const char *id, json_t **out,
                     char *err, size_t errlen)
{
    static const spec_t spec[] = {
        {"level", A_INT, 1, 1, 4, NULL},
        {"title", A_STR, 1, 0, 256, NULL},
        {"detail", A_TEXT, 1, 0, 8192, NULL},
        {"region", A_STR, 0, 0, 6, tb_validate_region},
    };
    tb_err_t rc;
    *out = NULL;
    if ((rc = check_args(args, spec, NSPEC(spec), 1, err, errlen)) != TB_OK)
        return rc;
    json_t *body = json_pack("{s:s, s:s, s:s}", "risk_id", id, "issued_by", node_id, "at", now);
    if (!body)
        return TB_ERR_NOMEM;
    copy_fields(body, args, spec, NSPEC(spec));
    *out = body;
    return TB_OK;
}

tb_err_t domain_complaint(const json_t *args, const char *node_id, const char *now, const char *id,
                          json_t **out, char *err, size_t errlen)
{
    static const spec_t spec[] = {
        {"region", A_STR, 1, 0, 64, v_node},
        {"kind", A_STR, 1, 0, 16, v_complaint_kind},
        {"subject", A_STR, 1, 0, 256, NULL},
        {"detail", A_TEXT, 1, 0, 8192, NULL},
    };
    tb_err_t rc;
    *out = NULL;
    if ((rc = check_args(args, spec, NSPEC(spec), 1, err, errlen)) != TB_OK)
        return rc;
    json_t *body = json_pack("{s:s, s:s, s:s}", "complaint_id", id, "filed_by", node_id, "at", now);
    if (!body)
        return TB_ERR_NOMEM;
    copy_fields(body, args, spec, NSPEC(spec));
    *out = body;
    return TB_OK;
}

tb_err_t domain_receipt(const json_t *args, const json_t *complaint, const char *node_id, const char *now,
                        json_t **out, char *err, size_t errlen)
{
    static const spec_t spec[] = {
        {"complaint_id", A_STR, 1, 0, 128, v_case_id},
        {"note", A_TEXT, 0, 0, 4096, NULL},
    };
    tb_err_t rc;
    *out = NULL;
    if ((rc = check_args(args, spec, NSPEC(spec), 1, err, errlen)) != TB_OK)
        return rc;
    const char *region = str_of(complaint, "region"), *filed_by = str_of(complaint, "filed_by");
    const char *id = str_of(args, "complaint_id");
    if (!region || strcmp(region, node_id) != 0) {
        tb_seterr(err, errlen, "only the responsible node %s may acknowledge complaint %s",
                  region ? region : "(none)", id);
        return TB_ERR_REFUSED;
    }
    if (!filed_by) {
        tb_seterr(err, errlen, "complaint %s has no filed_by", id);
        return TB_ERR_INVALID;
    }
    json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "complaint_id", id, "by", node_id, "filed_by", filed_by,
                             "at", now);
    if (!body)
        return TB_ERR_NOMEM;
    copy_fields(body, args, spec + 1, 1);
    *out = body;
    return TB_OK;
}
