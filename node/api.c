/* api.c -- the node's client API server: the socket (ipc 0660, or tcp with
 * CURVE and a ZAP allow-list), the dispatch of every operation of
 * docs/client-api.md onto the domain functions of the node's PostgreSQL,
 * and the requests that wait (licence verification at the issuer,
 * events.next with wait_ms). See api.h for the framing. */
#include "api.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api.pb-c.h"
#include "domain.h"
#include "errbuf.h"
#include "log.h"
#include "node_internal.h"
#include "pki.h"
#include "store_domain.h"
#include "wire.h"

static const char *comp = "api";

#define PARKED (-1)            /* an op's return: answered later */
#define MAX_CLIENT_KEYS 10000
#define ERRLEN 600

typedef struct {
    uint8_t rid[256];          /* ZeroMQ routing ids are at most 255 bytes */
    size_t rid_len;
    int delim;                 /* a REQ client: echo the empty delimiter */
    uint64_t id;
    char op[40];
    uint64_t t0;
} req_t;

enum { P_FREE = 0, P_VERIFY, P_EVENTS };

typedef struct {
    int kind;
    req_t rq;
    uint64_t deadline;
    /* P_VERIFY: the local answer so far, replaced by the issuer's */
    uint64_t query_id;
    char issuer[TB_ID_MAX + 1];
    long timeout_ms;
    json_t *result;
    tb_err_t status;
    char error[ERRLEN];
    /* P_EVENTS */
    char *cursor, *after;
    char max[16];
    uint64_t next_check;
} park_t;

struct api {
    node_t *node;
    void *sock, *zap;
    char endpoint[TB_PATH_MAX + 16];
    int tcp;
    uint8_t (*keys)[32];       /* tcp: the admitted client public keys */
    size_t nkeys;
    park_t park[API_MAX_PARKED];
    int wake;                  /* waiting events.next look again at the next timer */
    int backlog;               /* the budget ran out with requests waiting */
    int wrote;                 /* requests wrote to the database (events.next looks again) */
    int used_db;               /* requests used the database since api_used_db */
    api_stats_t st;
};

/* ------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------ */

static const char *jstr(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static const char *me(const api_t *self)
{
    return self->node->cfg->id;
}

/* The directory certificate of node id (NULL: unknown); *revoked. */
static const tb_cert_t *dir_cert(void *arg, const char *id, int *revoked)
{
    node_t *node = arg;
    *revoked = 0;
    for (size_t i = 0; i < node->ndir; i++)
        if (strcmp(node->dir[i].id, id) == 0) {
            *revoked = node->dir[i].revoked;
            return node->dir[i].cert;
        }
    return NULL;
}

/* A required string argument of 1..max bytes without control characters. */
static tb_err_t need_str(const json_t *args, const char *name, size_t max, const char **out, char *err,
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
static tb_err_t opt_int(const json_t *args, const char *name, long long lo, long long hi, long long def,
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
static tb_err_t need_name(const json_t *args, const char *name, size_t max, const char **out, char *err,
                          size_t errlen)
{
    *out = jstr(args, name);
    if (!json_object_get(args, name) || json_is_null(json_object_get(args, name))) {
        tb_seterr(err, errlen, "%s: required", name);
        return TB_ERR_INVALID;
    }
    if (!*out || !domain_valid_name(*out, max)) {
        tb_seterr(err, errlen, "%s: expected 1 to %zu characters of [A-Za-z0-9_.-]", name, max);
        return TB_ERR_INVALID;
    }
    return TB_OK;
}

/* Calls tongban.<fn>(args) in the node's database; *out (may be NULL) gets
 * its JSON result. PostgreSQL away: TB_ERR_UNAVAILABLE (and the node
 * reconnects); other errors as the store reports them. */
static tb_err_t db(api_t *self, const char *fn, const char *const *args, int n, json_t **out, char *err,
                   size_t errlen)
{
    node_t *node = self->node;
    char *text = NULL;
    if (out)
        *out = NULL;
    if (!node->store) {
        tb_seterr(err, errlen, "PostgreSQL is not connected (the node keeps retrying)");
        return TB_ERR_UNAVAILABLE;
    }
    self->used_db = 1;
    tb_err_t rc = tb_store_json_call(node->store, fn, args, n, &text, err, errlen);
    if (rc == TB_ERR_UNAVAILABLE) {
        node_store_lost(node, fn, err);
        free(text);
        return rc;
    }
    if (rc != TB_OK) {
        free(text);
        return rc;
    }
    if (out) {
        json_error_t je;
        *out = text ? json_loads(text, JSON_DECODE_ANY, &je) : json_null();
        if (!*out) {
            tb_seterr(err, errlen, "tongban.%s: the result is not JSON: %s", fn, je.text);
            free(text);
            return TB_ERR_DB;
        }
    }
    free(text);
    return TB_OK;
}

/* A domain write (domain_insert / domain_put) of body under catalog/key. */
static tb_err_t db_write(api_t *self, const char *fn, const char *catalog, const char *key, const json_t *body,
                         char *err, size_t errlen)
{
    char *text = json_dumps(body, JSON_COMPACT);
    if (!text) {
        tb_seterr(err, errlen, "out of memory");
        return TB_ERR_NOMEM;
    }
    const char *a[3] = {catalog, key, text};
    tb_err_t rc = db(self, fn, a, 3, NULL, err, errlen);
    free(text);
    if (rc == TB_OK)
        self->wrote = 1;
    return rc;
}

/* The object inside a domain function's result: {"body": {...}, meta...}
 * or the body itself with meta members (updated_at, local_age_s) beside
 * its own. Returns a new reference to the body without them; *age gets
 * local_age_s (-1 if absent). */
static json_t *unwrap(const json_t *r, double *age)
{
    const json_t *a = json_object_get(r, "local_age_s");
    if (age)
        *age = json_is_number(a) ? json_number_value(a) : -1;
    const json_t *b = json_object_get(r, "body");
    if (json_is_object(b))
        return json_deep_copy(b);
    json_t *c = json_deep_copy(r);
    if (json_is_object(c)) {
        json_object_del(c, "updated_at");
        json_object_del(c, "local_age_s");
    }
    return c;
}

/* ------------------------------------------------------------------------
 * Replies
 * ------------------------------------------------------------------------ */

static void send_reply(api_t *self, const req_t *rq, tb_err_t status, const char *error, const char *result)
{
    Tongban__ApiReply r = TONGBAN__API_REPLY__INIT;
    r.id = rq->id;
    r.status = (int32_t)status;
    r.error = (char *)(error ? error : "");
    r.result = (char *)(result ? result : "");
    size_t len = tongban__api_reply__get_packed_size(&r);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        self->st.reply_failed++;
        return;
    }
    tongban__api_reply__pack(&r, buf);
    int ok = zmq_send(self->sock, rq->rid, rq->rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 &&
             (!rq->delim || zmq_send(self->sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0) &&
             zmq_send(self->sock, buf, len, ZMQ_DONTWAIT) >= 0;
    free(buf);
    if (!ok) {
        self->st.reply_failed++;
        tb_log(TB_LOG_DEBUG, comp, "api_reply_failed", "node=%s op=%s id=%llu error=\"%s\"", me(self), rq->op,
               (unsigned long long)rq->id, zmq_strerror(errno));
    }
}

/* Answers rq: status, the error line (status != 0) and result (may be NULL). */
static void finish(api_t *self, const req_t *rq, tb_err_t status, const char *error, const json_t *result)
{
    char *text = result ? json_dumps(result, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    if ((int)status < 0 || status >= TB_ERR__COUNT)
        status = TB_ERR_INVALID;
    send_reply(self, rq, status, status == TB_OK ? "" : error, text);
    free(text);
    self->st.by_status[status]++;
    uint64_t ms = tb_now_ms() - rq->t0;
    if (status == TB_OK) {
        tb_log(TB_LOG_DEBUG, comp, "api_request", "node=%s op=%s id=%llu status=ok ms=%llu", me(self), rq->op,
               (unsigned long long)rq->id, (unsigned long long)ms);
        return;
    }
    char q[ERRLEN + 16];
    tb_log_level_t lvl = status == TB_ERR_REFUSED || status == TB_ERR_BADSIG ? TB_LOG_INFO
                         : status == TB_ERR_INVALID || status == TB_ERR_NOTFOUND || status == TB_ERR_DUPLICATE
                             ? TB_LOG_DEBUG
                             : TB_LOG_WARN;
    tb_log(lvl, comp, "api_request", "node=%s op=%s id=%llu status=%s ms=%llu error=%s", me(self), rq->op,
           (unsigned long long)rq->id, tb_strerror(status), (unsigned long long)ms,
           tb_log_quote(error ? error : "", q, sizeof q));
}

/* ------------------------------------------------------------------------
 * Parked requests
 * ------------------------------------------------------------------------ */

static park_t *park_new(api_t *self, const req_t *rq, int kind, uint64_t deadline)
{
    for (size_t i = 0; i < API_MAX_PARKED; i++) {
        park_t *p = &self->park[i];
        if (p->kind != P_FREE)
            continue;
        memset(p, 0, sizeof *p);
        p->kind = kind;
        p->rq = *rq;
        p->deadline = deadline;
        return p;
    }
    return NULL;
}

static void park_free(park_t *p)
{
    json_decref(p->result);
    free(p->cursor);
    free(p->after);
    memset(p, 0, sizeof *p);
}

/* ------------------------------------------------------------------------
 * Records
 * ------------------------------------------------------------------------ */

typedef int (*op_fn)(api_t *self, const req_t *rq, const json_t *args, uint64_t now, json_t **res, char *err,
                     size_t errlen);

static tb_err_t record_args(const json_t *args, int write, const char **cat, const char **key, char *err,
                            size_t errlen)
{
    tb_err_t rc;
    if ((rc = need_name(args, "catalog", 64, cat, err, errlen)) != TB_OK)
        return rc;
    if (write && strncmp(*cat, "tb.", 3) == 0) {
        tb_seterr(err, errlen, "catalog: the tb.* catalogs are written through their own operations (licence.*, "
                               "case.*, supitem.*, risk.*, complaint.*)");
        return TB_ERR_INVALID;
    }
    return need_str(args, "key", 1024, key, err, errlen);
}

static int op_record_put(api_t *self, const req_t *rq, const json_t *args, uint64_t now, json_t **res, char *err,
                         size_t errlen)
{
    const char *cat, *key;
    tb_err_t rc;
    (void)rq;
    (void)now;
    if ((rc = record_args(args, 1, &cat, &key, err, errlen)) != TB_OK)
        return rc;
    const json_t *body = json_object_get(args, "body");
    if (!body) {
        tb_seterr(err, errlen, "body: required (any JSON value)");
        return TB_ERR_INVALID;
    }
    char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        return TB_ERR_NOMEM;
    const char *a[3] = {cat, key, text};
    rc = db(self, "record_put", a, 3, res, err, errlen);
    free(text);
    if (rc == TB_OK)
        self->wrote = 1;
    return rc;
}

static int op_record_get(api_t *self, const req_t *rq, const json_t *args, uint64_t now, json_t **res, char *err,
                         size_t errlen)
{
    const char *cat, *key;
    tb_err_t rc;
    (void)rq;
    (void)now;
    if ((rc = record_args(args, 0, &cat, &key, err, errlen)) != TB_OK)
        return rc;
    const char *a[2] = {cat, key};
    rc = db(self, "record_get", a, 2, res, err, errlen);
    if (rc == TB_ERR_NOTFOUND)
        tb_seterr(err, errlen, "no record %s/%s", cat, key);
    return rc;
}

static int op_record_delete(api_t *self, const req_t *rq, const json_t *args, uint64_t now, json_t **res,
                            char *err, size_t errlen)
{
    const char *cat, *key;
    tb_err_t rc;
    (void)rq;
    (void)now;
    if ((rc = record_args(args, 1, &cat, &key, err, errlen)) != TB_OK)
        return rc;
    const char *a[2] = {cat, key};
    rc = db(self, "record_delete", a, 2, NULL, err, errlen);
    if (rc == TB_ERR_NOTFOUND)
        tb_seterr(err, errlen, "no record %s/%s", cat, key);
    if (rc == TB_OK) {
        self->wrote = 1;
        *res = json_object();
    }
    return rc;
}

/* ------------------------------------------------------------------------
 * Licences
 * ------------------------------------------------------------------------ */

/* The stored licence id: *lic (new reference), *age (local_age_s, -1 if
 * unknown), *raw (the function's whole result; may be NULL). */
static tb_err_t licence_load(api_t *self, const char *id, json_t **lic, double *age, json_t **raw, char *err,
                             size_t errlen)
{
    json_t *r = NULL;
    const char *a[1] = {id};
    *lic = NULL;
    tb_err_t rc = db(self, "licence_get", a, 1, &r, err, errlen);
    if (rc == TB_ERR_NOTFOUND)
        tb_seterr(err, errlen, "no licence %s on this node", id);
    if (rc != TB_OK)
        return rc;
    *lic = unwrap(r, age);
    if (!json_is_object(*lic)) {
        json_decref(*lic);
        json_decref(r);
        *lic = NULL;
        tb_seterr(err, errlen, "tongban.licence_get: licence %s is not a JSON object", id);
        return TB_ERR_DB;
    }
    if (raw)
        *raw = r;
    else
        json_decref(r);
    return TB_OK;
}

static tb_err_t seal_and_write(api_t *self, domain_kind_t kind, const char *fn, const char *catalog,
                               const char *key, json_t *body, char *err, size_t errlen)
{
    node_t *node = self->node;
    tb_err_t rc = domain_seal(node->signer, node->cert, me(self), kind, body, err, errlen);
    if (rc != TB_OK)
        return rc;
    return db_write(self, fn, catalog, key, body, err, errlen);
}

static int op_licence_issue(api_t *self, const req_t *rq, const json_t *args, uint64_t now, json_t **res,
                            char *err, size_t errlen)
{
    char at[40];
    json_t *body = NULL;
    (void)rq;
    (void)now;
    tb_err_t rc = domain_licence_issue(args, me(self), domain_now(at, sizeof at), &body, err, errlen);
    if (rc != TB_OK)
        return rc;
    const char *id = jstr(body, "identifier");
    rc = seal_and_write(self, DOMAIN_LICENCE, "domain_insert", "tb.licence", id, body, err, errlen);
    if (rc == TB_ERR_DUPLICATE)
        tb_seterr(err, errlen, "licence %s already exists", id);
    if (rc == TB_OK)
        *res = body;
    else
        json_decref(body);
    return rc;
}

/* update, suspend, resume, revoke: on the issuing node only. */
static int licence_change(api_t *self, const json_t *args, const char *action, json_t **res, char *err,
                          size_t errlen)
{
    const char *id;
    json_t *lic = NULL;
    char at[40];
    tb_err_t rc;
    if ((rc = need_str(args, "identifier", 128, &id, err, errlen)) != TB_OK)
        return rc;
    if ((rc = licence_load(self, id, &lic, NULL, NULL, err, errlen)) != TB_OK)
        return rc;
    const char *issuer = jstr(lic, "issuer_node");
    if (!issuer || strcmp(issuer, me(self)) != 0) {
        tb_seterr(err, errlen, "only the issuing node %s may change licence %s", issuer ? issuer : "(unknown)", id);
        rc = TB_ERR_REFUSED;
        goto done;
    }
    if (strcmp(action, "update") == 0) {
        const char *status = jstr(lic, "status");
        if (status && strcmp(status, "revoked") == 0) {
            tb_seterr(err, errlen, "licence %s is revoked: a revoked licence never changes again", id);
            rc = TB_ERR_REFUSED;
            goto done;
        }
        rc = domain_licence_update(lic, args, err, errlen);
    } else {
        rc = domain_licence_status(lic, action, args, domain_now(at, sizeof at), err, errlen);
    }
    if (rc != TB_OK)
        goto done;
    rc = seal_and_write(self, DOMAIN_LICENCE, "domain_put", "tb.licence", id, lic, err, errlen);
    if (rc == TB_OK) {
        *res = lic;
        lic = NULL;
    }
done:
    json_decref(lic);
    return rc;
}

#define LICENCE_CHANGE(fn, action)                                                                           \
    static int fn(api_t *self, const req_t *rq, const json_t *args, uint64_t now, json_t **res, char *err,     \
                  size_t errlen)                                                                             \
    {                                                                                                        \
        (void)rq;                                                                                            \
        (void)now;                                                                                           \
        return licence_change(self, args, action, res, err, errlen);                                         \
    }
LICENCE_CHANGE(op_licence_update, "update")
LICENCE_CHANGE(op_licence_suspend, "suspend")
LICENCE_CHANGE(op_licence_resume, "resume")
LICENCE_CHANGE(op_licence_revoke, "revoke")

static int op_licence_get(api_t *self, const req_t *rq, const json_t *args, uint64_t now, json_t **res, char *err,
                          size_t errlen)
{
    const char *id;
    json_t *lic = NULL, *raw = NULL;
    tb_err_t rc;
    (void)rq;
    (void)now;
    if ((rc = need_str(args, "identifier", 128, &id, err, errlen)) != TB_OK)
        return rc;
    if ((rc = licence_load(self, id, &lic, NULL, &raw, err, errlen)) != TB_OK)
        return rc;
    /* the licence, with when this node last stored it */
    const char *meta[2] = {"updated_at", "local_age_s"};
    for (int i = 0; i < 2; i++)
        if (json_object_get(raw, meta[i]))
            json_object_set(lic, meta[i], json_object_get(raw, meta[i]));
    json_decref(raw);
    *res = lic;
    return TB_OK;
}

static int op_licence_find(api_t *self, const req_t *rq, const json_t *args, uint64_t now, json_t **res,
                           char *err, size_t errlen)
{
    const char *holder;
    tb_err_t rc;
    (void)rq;
    (void)now;
    if ((rc = need_str(args, "holder_code", 64, &holder, err, errlen)) != TB_OK)
        return rc;
    const char *a[1] = {holder};
    return db(self, "licence_find", a, 1, res, err, errlen);
}

/* Checks lic's seal against its issuer's certificate: 1 verifies, 0 does
 * not (why), -1 cannot be checked now (issuer's certificate unknown). */
static int licence_seal_ok(api_t *self, const json_t *lic, char *why, size_t whylen)
{
    const char *issuer = jstr(lic, "issuer_node");
    int revoked = 0;
    const tb_cert_t *cert;
    if (!issuer) {
        tb_seterr(why, whylen, "the licence has no issuer_node");
        return 0;
    }
    cert = strcmp(issuer, me(self)) == 0 ? self->node->cert : dir_cert(self->node, issuer, &revoked);
    if (!cert) {
        tb_seterr(why, whylen, "the certificate of issuer %s is not known yet (not connected to the hub?)", issuer);
        return -1;
    }
    if (revoked) {
        tb_seterr(why, whylen, "issuer %s is revoked: its seals are no longer trusted", issuer);
        return 0;
    }
    return domain_verify_seal(DOMAIN_LICENCE, lic, cert, why, whylen) == TB_OK;
}

/* The verify result of one copy (lic may be NULL: no copy). */
static json_t *verify_result(const char *id, const json_t *lic, int seal_ok, const char *verdict,
                             const char *source, double age, const char *issuer, const char *detail)
{
    json_t *r = json_object();
    if (!r)
        return NULL;
    const char *copy[] = {"status", "valid_from", "valid_to", "revision", "issuer_node"};
    json_object_set_new(r, "identifier", json_string(id));
    json_object_set_new(r, "verdict", json_string(verdict));
    json_object_set_new(r, "seal_ok", json_boolean(seal_ok));
    for (size_t i = 0; i < sizeof copy / sizeof *copy; i++) {
        json_t *v = lic ? json_object_get(lic, copy[i]) : NULL;
        json_object_set(r, copy[i], v ? v : json_null());
    }
    json_object_set_new(r, "source", json_string(source));
    json_object_set_new(r, "local_age_s", age >= 0 ? json_integer((json_int_t)(age + 0.5)) : json_null());
    json_object_set_new(r, "issuer", json_string(issuer));
    json_object_set_new(r, "detail", json_string(detail ? detail : ""));
    return r;
}

/* The status of a verify answer: bad_seal is TB_ERR_BADSIG, unknown
 * TB_ERR_NOTFOUND (no copy here, or the issuer has none) or
 * TB_ERR_UNAVAILABLE (the seal cannot be checked now); err says
 * why. Every other verdict is an answer: TB_OK. */
static tb_err_t verdict_status(const json_t *r, const char *id, char *err, size_t errlen)
{
    const char *verdict = jstr(r, "verdict"), *detail = jstr(r, "detail");
    if (strcmp(verdict, "bad_seal") == 0) {
        tb_seterr(err, errlen, "licence %s: bad seal: %s", id, detail);
        return TB_ERR_BADSIG;
    }
    if (strcmp(verdict, "unknown") == 0) {
        tb_seterr(err, errlen, "licence %s: %s", id, detail);
        const char *source = jstr(r, "source");
        int none = json_is_null(json_object_get(r, "status")) || (source && strcmp(source, "issuer") == 0);
        return none ? TB_ERR_NOTFOUND : TB_ERR_UNAVAILABLE;
    }
    return TB_OK;
}

static void set_detail(json_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_detail(json_t *r, const char *fmt, ...)
{
    char buf[ERRLEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    json_object_set_new(r, "detail", json_string(buf));
}

static int op_licence_verify(api_t *self, const req_t *rq, const json_t *args, uint64_t now, json_t **res,
                             char *err, size_t errlen)
{
    const char *id;
    long long timeout;
    json_t *lic = NULL;
    double age = -1;
    char why[ERRLEN], today[16];
    tb_err_t rc;
    if ((rc = need_str(args, "identifier", 128, &id, err, errlen)) != TB_OK ||
        (rc = opt_int(args, "timeout_ms", 1, 60000, API_VERIFY_TIMEOUT_MS, &timeout, err, errlen)) != TB_OK)
        return rc;
    const json_t *ask_v = json_object_get(args, "ask_issuer");
    if (ask_v && !json_is_boolean(ask_v) && !json_is_null(ask_v)) {
        tb_seterr(err, errlen, "ask_issuer: expected true or false");
        return TB_ERR_INVALID;
    }
    int ask = json_is_true(ask_v);
    rc = licence_load(self, id, &lic, &age, NULL, err, errlen);
    if (rc == TB_ERR_NOTFOUND) {
        /* without a copy this node does not know who the issuer is */
        *res = verify_result(id, NULL, 0, "unknown", "local", -1, "not_asked", "");
        set_detail(*res, "no copy of licence %s on this node", id);
        return TB_ERR_NOTFOUND;
    }
    if (rc != TB_OK)
        return rc;

    int ok = licence_seal_ok(self, lic, why, sizeof why);
    const char *verdict = ok == 1 ? domain_licence_verdict(lic, domain_today(today, sizeof today, 1))
                          : ok == 0 ? "bad_seal"
                                    : "unknown";
    const char *issuer = jstr(lic, "issuer_node");
    int self_issued = issuer && strcmp(issuer, me(self)) == 0;
    const char *asked = self_issued ? "self" : !ask ? "not_asked" : "unavailable";
    json_t *r = verify_result(id, lic, ok == 1, verdict, "local", age, asked, ok == 1 ? "" : why);
    json_t *local_rev = json_object_get(lic, "revision");
    json_int_t rev = json_is_integer(local_rev) ? json_integer_value(local_rev) : 0;
    json_decref(lic);
    if (!r)
        return TB_ERR_NOMEM;
    if (!ask || self_issued || !issuer) {
        *res = r;
        return verdict_status(r, id, err, errlen);
    }
    if (!self->node->welcomed) {
        set_detail(r, "%s%snot connected to the hub: the issuer %s was not asked", ok == 1 ? "" : why,
                   ok == 1 ? "" : "; ", issuer);
        *res = r;
        return verdict_status(r, id, err, errlen);
    }
    park_t *p = park_new(self, rq, P_VERIFY, now + (uint64_t)timeout);
    if (!p) {
        json_decref(r);
        tb_seterr(err, errlen, "too many requests waiting (%d): try again", API_MAX_PARKED);
        return TB_ERR_UNAVAILABLE;
    }
    p->result = r;
    p->timeout_ms = (long)timeout;
    snprintf(p->issuer, sizeof p->issuer, "%s", issuer);
    json_object_set_new(r, "local_revision", json_integer(rev));   /* removed before the answer */
    p->query_id = node_send_query(self->node, issuer, "licence_status", id);
    tb_log(TB_LOG_DEBUG, comp, "licence_status_asked", "node=%s issuer=%s licence=%s query=%llu", me(self), issuer,
           id, (unsigned long long)p->query_id);
    return PARKED;
}

/* Answers a parked verify with its result as it stands. */
static void verify_finish(api_t *self, park_t *p)
{
    char err[ERRLEN];
    json_object_del(p->result, "local_revision");
    const char *id = jstr(p->result, "identifier");
    tb_err_t rc = verdict_status(p->result, id ? id : "?", err, sizeof err);
    finish(self, &p->rq, rc, err, p->result);
    park_free(p);
}

/* A Reply's body as one printable line in out; returns its length. */
static size_t reply_text(const Tongban__Reply *r, char *out, size_t len)
{
    size_t n = r->body.len < len - 1 ? r->body.len : len - 1;
    memcpy(out, r->body.data, n);
    out[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)out[i] < 0x20)
            out[i] = ' ';
    return n;
}

/* The issuer's answer to a parked verify. */
static void verify_answered(api_t *self, park_t *p, const Tongban__Reply *r)
{
    json_t *res = p->result;
    const char *id = jstr(res, "identifier");
    const char *local_detail = jstr(res, "detail");
    char why[ERRLEN], body[512], today[16], ldet[ERRLEN];
    snprintf(ldet, sizeof ldet, "%s", local_detail ? local_detail : "");
    const char *sep = ldet[0] ? "; " : "";

    if (r->status == TONGBAN__REPLY_STATUS__REPLY_OK) {
        json_error_t je;
        json_t *doc = json_loadb((const char *)r->body.data, r->body.len, 0, &je);
        json_t *lic = json_is_object(doc) ? unwrap(doc, NULL) : NULL;
        json_decref(doc);
        const char *lid = jstr(lic, "identifier"), *lis = jstr(lic, "issuer_node");
        int ok = 0;
        if (!json_is_object(lic))
            tb_seterr(why, sizeof why, "the answer is not a licence");
        else if (!lid || strcmp(lid, id) != 0 || !lis || strcmp(lis, p->issuer) != 0)
            tb_seterr(why, sizeof why, "the answer is about another licence or issuer");
        else
            ok = licence_seal_ok(self, lic, why, sizeof why) == 1;
        if (!ok) {
            json_object_set_new(res, "issuer", json_string("answered"));
            set_detail(res, "%s%sthe issuer's answer does not verify: %s", ldet, sep, why);
        } else {
            const json_t *a = json_object_get(res, "local_age_s");
            double age = json_is_integer(a) ? (double)json_integer_value(a) : -1;
            json_int_t lrev = json_integer_value(json_object_get(res, "local_revision"));
            const json_t *irev_v = json_object_get(lic, "revision");
            json_int_t irev = json_is_integer(irev_v) ? json_integer_value(irev_v) : 0;
            const char *verdict = domain_licence_verdict(lic, domain_today(today, sizeof today, 1));
            json_t *n = verify_result(id, lic, 1, verdict, "issuer", age, "answered", "");
            if (n) {
                if (strcmp(jstr(res, "verdict"), "bad_seal") == 0)
                    set_detail(n, "the local copy's seal fails (%s); the issuer's copy (revision %lld) is the answer",
                               ldet, (long long)irev);
                else if (lrev < irev)
                    set_detail(n, "the local copy (revision %lld) is behind the issuer's (revision %lld)",
                               (long long)lrev, (long long)irev);
                else if (lrev > irev)
                    set_detail(n, "the issuer's copy (revision %lld) is older than the local copy (revision %lld)",
                               (long long)irev, (long long)lrev);
                json_decref(p->result);
                p->result = n;
            }
        }
        json_decref(lic);
    } else if (r->status == TONGBAN__REPLY_STATUS__REPLY_ERROR) {
        reply_text(r, body, sizeof body);
        if (strncmp(body, "not found", 9) == 0) {
            char was[32];
            snprintf(was, sizeof was, "%s", jstr(res, "verdict"));
            json_object_set_new(res, "verdict", json_string("unknown"));
            json_object_set_new(res, "source", json_string("issuer"));
            json_object_set_new(res, "issuer", json_string("answered"));
            set_detail(res, "the issuer %s has no licence %s (the local copy says %s)", p->issuer, id, was);
        } else {
            json_object_set_new(res, "issuer", json_string("unavailable"));
            set_detail(res, "%s%sthe issuer %s answered with an error: %s", ldet, sep, p->issuer, body);
        }
    } else if (r->status == TONGBAN__REPLY_STATUS__REPLY_UNAVAILABLE) {
        size_t n = reply_text(r, body, sizeof body);
        json_object_set_new(res, "issuer", json_string("unavailable"));
        set_detail(res, "%s%sthe issuer %s is unavailable (%s): local answer", ldet, sep, p->issuer,
                   n ? body : "not connected to the hub");
    } else {
        json_object_set_new(res, "issuer", json_string("timeout"));
        set_detail(res, "%s%sthe hub gave up waiting for the issuer %s: local answer", ldet, sep, p->issuer);
    }
    verify_finish(self, p);
}

/* ------------------------------------------------------------------------
 * Cases
 * ------------------------------------------------------------------------ */

/* Answers with the case as tongban.case_get shows it (after a write). */
static tb_err_t case_result(api_t *self, const char *case_id, json_t *fallback, json_t **res, char *err,
                            size_t errlen)
{
    const char *a[1] = {case_id};
    tb_err_t rc = db(self, "case_get", a, 1, res, err, errlen);
    if (rc != TB_OK) {     /* written, but not readable back: answer what was written */
        *res = fallback;
        return TB_OK;
    }
    json_decref(fallback);
    return TB_OK;
}

static int op_case_submit(api_t *self, const req_t *rq, const json_t *args, uint64_t now, json_t **res,
                          char *err, size_t errlen)
{
    char at[40], day[16], rnd[16], evid[20], case_id[TB_ID_MAX + 32], key[TB_ID_MAX + 64];
    json_t *ev = NULL;
    node_t *node = self->node;
    (void)rq;
    (void)now;
    if (domain_random_hex(rnd, sizeof rnd, 6) != TB_OK || domain_random_hex(evid, sizeof evid, 8) != TB_OK) {
        tb_seterr(err, errlen, "no random bytes");
        return TB_ERR_CRYPTO;
    }
    snprintf(case_id, sizeof case_id, "%s-%s-%s", me(self), domain_today(day, sizeof day, 0), rnd);
    tb_err_t rc = domain_case_submit(args, me(self), domain_now(at, sizeof at), case_id, evid, &ev, err, errlen);
    if (rc != TB_OK)
        return rc;
    /* handling nodes the hub does not know would never get the case */
    const json_t *h = json_object_get(ev, "handling");
    for (size_t i = 0; node->ndir && i < json_array_size(h); i++) {
        const char *id = json_string_value(json_array_get(h, i));
        int revoked = 0;
        if (strcmp(id, me(self)) != 0 && !dir_cert(node, id, &revoked)) {
            tb_seterr(err, errlen, "handling[%zu]: node %s is not in the hub's directory", i, id);
            json_decref(ev);
            return TB_ERR_INVALID;
        }
    }
    snprintf(key, sizeof key, "%s/%s", case_id, evid);
    if ((rc = seal_and_write(self, DOMAIN_CASE_EVENT, "domain_insert", "tb.case_event", key, ev, err, errlen)) !=
        TB_OK) {
        json_decref(ev);
        return rc;
    }
    return case_result(self, case_id, ev, res, err, errlen);
}

static int case_event(api_t *self, const json_t *args, int rate, json_t **res, char *err, size_t errlen)
{
    char at[40], evid[20], key[256];
    json_t *ev = NULL, *cur = NULL;
    const char *case_id = jstr(args, "case_id");
    if (domain_random_hex(evid, sizeof evid, 8) != TB_OK) {
        tb_seterr(err, errlen, "no random bytes");
        return TB_ERR_CRYPTO;
    }
    tb_err_t rc = domain_case_event(args, rate, me(self), domain_now(at, sizeof at), evid, &ev, err, errlen);
    if (rc != TB_OK)
        return rc;
    case_id = jstr(ev, "case_id");
    const char *a[1] = {case_id};
    if ((rc = db(self, "case_get", a, 1, &cur, err, errlen)) != TB_OK) {
        if (rc == TB_ERR_NOTFOUND)
            tb_seterr(err, errlen, "no case %s on this node", case_id);
        json_decref(ev);
        return rc;
    }
    json_decref(cur);
    snprintf(key, sizeof key, "%s/%s", case_id, evid);
    if ((rc = seal_and_write(self, DOMAIN_CASE_EVENT, "domain_insert", "tb.case_event", key, ev, err, errlen)) !=
        TB_OK) {
        json_decref(ev);
        return rc;
    }
    return case_result(self, case_id, ev, res, err, errlen);
}

static int op_case_act(api_t *self, const req_t *rq, const json_t *args, uint64_t now, json_t **res, char *err,
                       size_t errlen)
{
    (void)rq;
    (void)now;
    return case_event(self, args, 0, res, err, errlen);
}

static int op_case_rate(api_t *self, const req_t *rq, const json_t *args, uint64_t now, json_t **res, char *err,
                        size_t errlen)
{
    (void)rq;
    (void)now;
    return case_event(self, args, 1, res, err, errlen);
}

static int case_by_id(api_t *self, const json_t *args, const char *fn, json_t **res, char *err, size_t errlen)
{
    const char *case_id;
    tb_err_t rc;
    if ((rc = need_name(args, "case_id", 128, &case_id, err, errlen)) != TB_OK)
        return rc;
    const char *a[1] = {case_id};
    rc = db(self, fn, a, 1, res, err, errlen);
    if (rc == TB_ERR_NOTFOUND)
        tb_seterr(err, errlen, "no case %s on this node", case_id);
    return rc;
}

static int op_case_get(api_t *self, const req_t *rq, const json_t *args, uint64_t now, json_t **res, char *err,
                       size_t errlen)
{
    (void)rq;
    (void)now;
    return case_by_id(self, args, "case_get", res, err, errlen);
}

static int op_case_history(api_t *self, const req_t *rq, const json_t *args, uint64_t now, json_t **res,
                           char *err, size_t errlen)
{
    (void)rq;
    (void)now;
    return case_by_id(self, args, "case_history", res, err, errlen);
}

static int op_case_list(api_t *self, const req_t *rq, const json_t *args, uint64_t now, json_t **res, char *err,
                        size_t errlen)
{
    const char *state = NULL;
    tb_err_t rc;
    (void)rq;
    (void)now;
    const json_t *sv = json_object_get(args, "state"), *ov = json_object_get(args, "overdue");
    if (sv && !json_is_null(sv) && (rc = need_name(args, "state", 32, &state, err, errlen)) != TB_OK)
        return rc;
    if (ov && !json_is_null(ov) && !json_is_boolean(ov)) {
        tb_seterr(err, errlen, "overdue: expected true or false");
        return TB_ERR_INVALID;
    }
    const char *a[2] = {state, !ov || json_is_null(ov) ? NULL : json_is_true(ov) ? "true" : "false"};
    return db(self, "case_list", a, 2, res, err, errlen);
}

/* ------------------------------------------------------------------------
 * Supervision
 * ------------------------------------------------------------------------ */

static int op_supitem_put(api_t *self, const req_t *rq, const json_t *args, uint64_t now, json_t **res,
                          char *err, size_t errlen)
{
    char at[40];
    json_t *body = NULL;
    (void)rq;
    (void)now;
    tb_err_t rc = domain_supitem(args, me(self), domain_now(at, sizeof at), &body, err, errlen);
    if (rc == TB_OK)
        rc = db_write(self, "domain_put", "tb.supitem", jstr(body, "code"), body, err, errlen);
    if (rc == TB_OK)
        *res = body;
    else
        json_decref(body);
    return rc;
}

static int op_supitem_list(api_t *self, const req_t *rq, const json_t *args, uint64_t now, json_t **res,
                           char *err, size_t errlen)
{
    static const char *const levels[] = {"national", "provincial", "city", "county", NULL};
    const char *level = jstr(args, "level");
    const json_t *lv = json_object_get(args, "level");
    (void)rq;
    (void)now;
    if (lv && !json_is_null(lv)) {
        size_t i = 0;
        while (level && levels[i] && strcmp(levels[i], level) != 0)
            i++;
        if (!level || !levels[i]) {
            tb_seterr(err, errlen, "level: expected one of national, provincial, city, county");
            return TB_ERR_INVALID;
        }
    }
    const char *a[1] = {level};
    return db(self, "supitem_list", a, 1, res, err, errlen);
}

/* "<node>-<12 hex>" */
static tb_err_t new_id(api_t *self, char *out, size_t len, char *err, size_t errlen)
{
    char rnd[16];
    if (domain_random_hex(rnd, sizeof rnd, 6) != TB_OK) {
        tb_seterr(err, errlen, "no random bytes");
        return TB_ERR_CRYPTO;
    }
    int n = snprintf(out, len, "%s-%s", me(self), rnd);
    if (n < 0 || (size_t)n >= len) {
        tb_seterr(err, errlen, "id longer than %zu bytes", len - 1);
        return TB_ERR_INVALID;
    }
    return TB_OK;
}

static int op_risk_publish(api_t *self, const req_t *rq, const json_t *args, uint64_t now, json_t **res,
                           char *err, size_t errlen)
{
    char at[40], id[TB_ID_MAX + 16];
    json_t *body = NULL;
    tb_err_t rc;
    (void)rq;
    (void)now;
    if ((rc = new_id(self, id, sizeof id, err, errlen)) != TB_OK)
        return rc;
    rc = domain_risk(args, me(self), domain_now(at, sizeof at), id, &body, err, errlen);
    if (rc == TB_OK)
        rc = db_write(self, "domain_insert", "tb.risk", id, body, err, errlen);
    if (rc == TB_OK)
        *res = body;
    else
        json_decref(body);
    return rc;
}

static int op_complaint_file(api_t *self, const req_t *rq, const json_t *args, uint64_t now, json_t **res,
                             char *err, size_t errlen)
{
    char at[40], id[TB_ID_MAX + 16];
    json_t *body = NULL;
    tb_err_t rc;
    (void)rq;
    (void)now;
    if ((rc = new_id(self, id, sizeof id, err, errlen)) != TB_OK)
        return rc;
    if ((rc = domain_complaint(args, me(self), domain_now(at, sizeof at), id, &body, err, errlen)) != TB_OK)
        return rc;
    const char *region = jstr(body, "region");
    int revoked = 0;
    if (self->node->ndir && strcmp(region, me(self)) != 0 && !dir_cert(self->node, region, &revoked)) {
        tb_seterr(err, errlen, "region: node %s is not in the hub's directory", region);
        json_decref(body);
        return TB_ERR_INVALID;
    }
    rc = db_write(self, "domain_insert", "tb.complaint", id, body, err, errlen);
    if (rc == TB_OK)
        *res = body;
    else
        json_decref(body);
    return rc;
}

static int op_complaint_ack(api_t *self, const req_t *rq, const json_t *args, uint64_t now, json_t **res,
                            char *err, size_t errlen)
{
    char at[40];
    const char *id;
    json_t *cur = NULL, *body = NULL;
    tb_err_t rc;
    (void)rq;
    (void)now;
    if ((rc = need_name(args, "complaint_id", 128, &id, err, errlen)) != TB_OK)
        return rc;
    const char *a[1] = {id};
    if ((rc = db(self, "complaint_get", a, 1, &cur, err, errlen)) != TB_OK) {
        if (rc == TB_ERR_NOTFOUND)
            tb_seterr(err, errlen, "no complaint %s on this node", id);
        return rc;
    }
    json_t *complaint = unwrap(cur, NULL);
    json_decref(cur);
    rc = domain_receipt(args, complaint, me(self), domain_now(at, sizeof at), &body, err, errlen);
    json_decref(complaint);
    if (rc == TB_OK)
        rc = db_write(self, "domain_insert", "tb.complaint_receipt", id, body, err, errlen);
    if (rc == TB_ERR_DUPLICATE)
        tb_seterr(err, errlen, "complaint %s is already acknowledged", id);
    if (rc == TB_OK)
        *res = body;
    else
        json_decref(body);
    return rc;
}

static int op_complaint_get(api_t *self, const req_t *rq, const json_t *args, uint64_t now, json_t **res,
                            char *err, size_t errlen)
{
    const char *id;
    tb_err_t rc;
    (void)rq;
    (void)now;
    if ((rc = need_name(args, "complaint_id", 128, &id, err, errlen)) != TB_OK)
        return rc;
    const char *a[1] = {id};
    rc = db(self, "complaint_get", a, 1, res, err, errlen);
    if (rc == TB_ERR_NOTFOUND)
        tb_seterr(err, errlen, "no complaint %s on this node", id);
    return rc;
}

/* ------------------------------------------------------------------------
 * Events
 * ------------------------------------------------------------------------ */

/* events_next(cursor, after, max): TB_OK with *res; *empty = no events. */
static tb_err_t events_fetch(api_t *self, const char *cursor, const char *after, const char *max, json_t **res,
                             int *empty, char *err, size_t errlen)
{
    const char *a[3] = {cursor, after, max};
    tb_err_t rc = db(self, "events_next", a, 3, res, err, errlen);
    *empty = rc == TB_OK && json_array_size(json_object_get(*res, "events")) == 0;
    return rc;
}

static int op_events_next(api_t *self, const req_t *rq, const json_t *args, uint64_t now, json_t **res,
                          char *err, size_t errlen)
{
    const char *cursor;
    long long max, wait, after;
    char maxs[16], afters[24];
    int empty = 0;
    tb_err_t rc;
    if ((rc = need_name(args, "cursor", 64, &cursor, err, errlen)) != TB_OK ||
        (rc = opt_int(args, "max", 1, 1000, 100, &max, err, errlen)) != TB_OK ||
        (rc = opt_int(args, "wait_ms", 0, 30000, 0, &wait, err, errlen)) != TB_OK ||
        (rc = opt_int(args, "after", 0, INT64_MAX, -1, &after, err, errlen)) != TB_OK)
        return rc;
    snprintf(maxs, sizeof maxs, "%lld", max);
    snprintf(afters, sizeof afters, "%lld", after);
    if ((rc = events_fetch(self, cursor, after >= 0 ? afters : NULL, maxs, res, &empty, err, errlen)) != TB_OK ||
        !empty || wait == 0)
        return rc;
    park_t *p = park_new(self, rq, P_EVENTS, now + (uint64_t)wait);
    if (!p)
        return TB_OK;          /* no room to wait: the empty answer now */
    p->cursor = strdup(cursor);
    p->after = after >= 0 ? strdup(afters) : NULL;
    snprintf(p->max, sizeof p->max, "%s", maxs);
    p->next_check = now + API_EVENTS_RECHECK_MS;
    if (!p->cursor || (after >= 0 && !p->after)) {
        park_free(p);
        return TB_OK;
    }
    json_decref(*res);
    *res = NULL;
    return PARKED;
}

/* A waiting events.next looks again: answers if something came or its time is up. */
static void events_recheck(api_t *self, park_t *p, uint64_t now)
{
    json_t *res = NULL;
    int empty = 0;
    char err[ERRLEN];
    tb_err_t rc = events_fetch(self, p->cursor, p->after, p->max, &res, &empty, err, sizeof err);
    if (rc != TB_OK || !empty || now >= p->deadline) {
        finish(self, &p->rq, rc, err, rc == TB_OK ? res : NULL);
        json_decref(res);
        park_free(p);
        return;
    }
    json_decref(res);
    p->next_check = now + API_EVENTS_RECHECK_MS;
}

static int op_events_ack(api_t *self, const req_t *rq, const json_t *args, uint64_t now, json_t **res, char *err,
                         size_t errlen)
{
    const char *cursor;
    long long id;
    char ids[24];
    tb_err_t rc;
    (void)rq;
    (void)now;
    if ((rc = need_name(args, "cursor", 64, &cursor, err, errlen)) != TB_OK)
        return rc;
    if (!json_object_get(args, "id")) {
        tb_seterr(err, errlen, "id: required");
        return TB_ERR_INVALID;
    }
    if ((rc = opt_int(args, "id", 0, INT64_MAX, 0, &id, err, errlen)) != TB_OK)
        return rc;
    snprintf(ids, sizeof ids, "%lld", id);
    const char *a[2] = {cursor, ids};
    return db(self, "events_ack", a, 2, res, err, errlen);
}

/* ------------------------------------------------------------------------
 * Dispatch
 * ------------------------------------------------------------------------ */

static const struct {
    const char *name;
    op_fn fn;
} ops[] = {
    {"record.put", op_record_put},
    {"record.get", op_record_get},
    {"record.delete", op_record_delete},
    {"licence.issue", op_licence_issue},
    {"licence.update", op_licence_update},
    {"licence.suspend", op_licence_suspend},
    {"licence.resume", op_licence_resume},
    {"licence.revoke", op_licence_revoke},
    {"licence.get", op_licence_get},
    {"licence.find", op_licence_find},
    {"licence.verify", op_licence_verify},
    {"case.submit", op_case_submit},
    {"case.act", op_case_act},
    {"case.rate", op_case_rate},
    {"case.get", op_case_get},
    {"case.history", op_case_history},
    {"case.list", op_case_list},
    {"supitem.put", op_supitem_put},
    {"supitem.list", op_supitem_list},
    {"risk.publish", op_risk_publish},
    {"complaint.file", op_complaint_file},
    {"complaint.ack", op_complaint_ack},
    {"complaint.get", op_complaint_get},
    {"events.next", op_events_next},
    {"events.ack", op_events_ack},
};

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

static void malformed(api_t *self, const char *why, size_t bytes)
{
    self->st.malformed++;
    tb_log(TB_LOG_WARN, comp, "api_request_rejected", "node=%s reason=%s bytes=%zu", me(self), why, bytes);
}

static void dispatch(api_t *self, req_t *rq, const uint8_t *data, size_t len, uint64_t now)
{
    char err[ERRLEN] = "";
    json_t *args = NULL, *res = NULL;
    rq->t0 = now;
    Tongban__ApiRequest *m = tongban__api_request__unpack(NULL, len, data);
    if (!m) {
        malformed(self, "undecodable_request", len);
        snprintf(rq->op, sizeof rq->op, "?");
        if (peek_id(data, len, &rq->id)) {
            self->st.requests++;
            finish(self, rq, TB_ERR_PROTO, "the request is not a packed ApiRequest (proto/api.proto)", NULL);
        }
        return;
    }
    self->st.requests++;
    rq->id = m->id;
    snprintf(rq->op, sizeof rq->op, "%s", m->op && *m->op ? m->op : "?");
    for (char *p = rq->op; *p; p++) {    /* it goes into log lines */
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_'))
            *p = '?';
    }
    size_t i = 0, nops = sizeof ops / sizeof *ops;
    while (i < nops && (!m->op || strcmp(ops[i].name, m->op) != 0))
        i++;
    if (i == nops) {
        finish(self, rq, TB_ERR_INVALID, "op: unknown operation (see docs/client-api.md)", NULL);
        goto done;
    }
    json_error_t je;
    args = m->args && *m->args ? json_loads(m->args, 0, &je) : json_object();
    if (!json_is_object(args)) {
        snprintf(err, sizeof err, "args: expected a JSON object%s%s", args ? "" : ": ", args ? "" : je.text);
        finish(self, rq, TB_ERR_INVALID, err, NULL);
        goto done;
    }
    int rc = ops[i].fn(self, rq, args, now, &res, err, sizeof err);
    if (rc != PARKED) {
        if (rc != TB_OK && !err[0])
            snprintf(err, sizeof err, "%s: %s", rq->op, tb_strerror((tb_err_t)rc));
        finish(self, rq, (tb_err_t)rc, err, res);
    }
done:
    json_decref(res);
    json_decref(args);
    tongban__api_request__free_unpacked(m, NULL);
}

/* Receives and answers one request. Returns 0 if none was waiting. */
static int handle_one(api_t *self, uint64_t now)
{
    zmq_msg_t part[3];
    int n = 0, total = 0, more = 1;
    size_t bytes = 0;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, self->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        bytes += zmq_msg_size(&m);
        total++;
        if (n < 3)
            part[n++] = m;
        else
            zmq_msg_close(&m);
    }
    if (total == 0)
        return 0;
    req_t rq;
    memset(&rq, 0, sizeof rq);
    int body = -1;
    if (total == 2)
        body = 1;
    else if (total == 3 && zmq_msg_size(&part[1]) == 0)
        body = 2, rq.delim = 1;
    if (body < 0 || zmq_msg_size(&part[0]) > sizeof rq.rid) {
        malformed(self, total == 1 ? "no_request_frame" : "too_many_frames", bytes);
    } else {
        rq.rid_len = zmq_msg_size(&part[0]);
        memcpy(rq.rid, zmq_msg_data(&part[0]), rq.rid_len);
        dispatch(self, &rq, zmq_msg_data(&part[body]), zmq_msg_size(&part[body]), now);
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close(&part[i]);
    return 1;
}

/* ------------------------------------------------------------------------
 * ZAP: tcp:// clients are admitted by their CURVE public key
 * ------------------------------------------------------------------------ */

static int key_admitted(const api_t *self, const uint8_t *key)
{
    for (size_t i = 0; i < self->nkeys; i++)
        if (memcmp(self->keys[i], key, 32) == 0)
            return 1;
    return 0;
}

static void zap_reply(void *zap, const zmq_msg_t *reqid, const char *code, const char *text, const char *user)
{
    zmq_send(zap, "1.0", 3, ZMQ_SNDMORE);
    if (reqid)
        zmq_send(zap, zmq_msg_data((zmq_msg_t *)reqid), zmq_msg_size((zmq_msg_t *)reqid), ZMQ_SNDMORE);
    else
        zmq_send(zap, "", 0, ZMQ_SNDMORE);
    zmq_send(zap, code, strlen(code), ZMQ_SNDMORE);
    zmq_send(zap, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(zap, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(zap, "", 0, 0);
}

static void zap_handle(api_t *self)
{
    zmq_msg_t part[8];
    int n = 0, total = 0, more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, self->zap, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        total++;
        if (n < 8)
            part[n++] = m;
        else
            zmq_msg_close(&m);
    }
    if (total == 0)
        return;
    int curve = n >= 7 && zmq_msg_size(&part[5]) == 5 && memcmp(zmq_msg_data(&part[5]), "CURVE", 5) == 0 &&
                zmq_msg_size(&part[6]) == 32;
    if (curve && key_admitted(self, zmq_msg_data(&part[6]))) {
        char z85[41];
        zmq_z85_encode(z85, zmq_msg_data(&part[6]), 32);
        zap_reply(self->zap, &part[1], "200", "OK", z85);
    } else {
        char z85[41] = "-", addr[64] = "?";
        if (curve)
            zmq_z85_encode(z85, zmq_msg_data(&part[6]), 32);
        if (n >= 4)
            snprintf(addr, sizeof addr, "%.*s", (int)zmq_msg_size(&part[3]), (const char *)zmq_msg_data(&part[3]));
        self->st.zap_denied++;
        tb_log(TB_LOG_WARN, comp, "api_connection_refused", "node=%s address=%s key=%s reason=%s", me(self), addr,
               z85, curve ? "key_not_in_api_clients" : "not_curve");
        zap_reply(self->zap, n >= 2 ? &part[1] : NULL, "400", curve ? "key not in api.clients" : "CURVE required",
                  "");
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close(&part[i]);
}

/* Reads the api.clients file: one Z85 public key per line, optionally
 * followed by a "# comment"; lines that are empty or start with "#" (and
 * are not a key) are skipped. Errors: "FILE:LINE: what". */
static tb_err_t read_clients(const char *path, uint8_t (**keys)[32], size_t *nkeys, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char line[1024];
    size_t lineno = 0, n = 0;
    uint8_t(*v)[32] = NULL;
    tb_err_t rc = TB_ERR_CONFIG;
    *keys = NULL;
    *nkeys = 0;
    if (!f) {
        tb_seterr(err, errlen, "%s: %s (api.clients)", path, strerror(errno));
        return TB_ERR_CONFIG;
    }
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t len = strlen(line);
        if (len == sizeof line - 1 && line[len - 1] != '\n' && !feof(f)) {
            tb_seterr(err, errlen, "%s:%zu: line longer than %zu characters", path, lineno, sizeof line - 2);
            goto done;
        }
        char *p = line + strspn(line, " \t");
        size_t tok = strcspn(p, " \t\r\n");
        char *rest = p + tok + strspn(p + tok, " \t\r\n");
        uint8_t raw[32];
        char key[41];
        if (tok == 0)
            continue;
        if (tok == 40 && (!*rest || *rest == '#')) {
            memcpy(key, p, 40);
            key[40] = '\0';
            if (zmq_z85_decode(raw, key)) {
                if (n == MAX_CLIENT_KEYS) {
                    tb_seterr(err, errlen, "%s:%zu: more than %d keys", path, lineno, MAX_CLIENT_KEYS);
                    goto done;
                }
                uint8_t(*nv)[32] = realloc(v, (n + 1) * sizeof *v);
                if (!nv) {
                    rc = TB_ERR_NOMEM;
                    tb_seterr(err, errlen, "%s: out of memory", path);
                    goto done;
                }
                v = nv;
                memcpy(v[n++], raw, 32);
                continue;
            }
        }
        if (*p == '#')
            continue;
        tb_seterr(err, errlen, "%s:%zu: expected a 40-character Z85 CURVE public key (or a # comment)", path, lineno);
        goto done;
    }
    if (ferror(f)) {
        tb_seterr(err, errlen, "%s: %s", path, strerror(errno));
        goto done;
    }
    if (n == 0) {
        tb_seterr(err, errlen, "%s: no client public keys (one Z85 key per line): nobody could connect", path);
        goto done;
    }
    *keys = v;
    *nkeys = n;
    v = NULL;
    rc = TB_OK;
done:
    fclose(f);
    free(v);
    return rc;
}

/* ------------------------------------------------------------------------
 * Life cycle and the loop's calls
 * ------------------------------------------------------------------------ */

tb_err_t api_new(node_t *node, api_t **out, char *err, size_t errlen)
{
    const tb_node_config_t *cfg = node->cfg;
    char secret[41];
    tb_err_t rc = TB_ERR_IO;
    api_t *self = calloc(1, sizeof *self);
    *out = NULL;
    if (!self) {
        tb_seterr(err, errlen, "out of memory");
        return TB_ERR_NOMEM;
    }
    self->node = node;
    tb_node_api_endpoint(cfg, self->endpoint, sizeof self->endpoint);
    self->tcp = strncmp(self->endpoint, "tcp://", 6) == 0;
    if (self->tcp) {
        if (!cfg->api_clients[0]) {
            tb_seterr(err, errlen, "api.clients is required when api.listen (%s) is tcp://", self->endpoint);
            rc = TB_ERR_CONFIG;
            goto fail;
        }
        if ((rc = read_clients(cfg->api_clients, &self->keys, &self->nkeys, err, errlen)) != TB_OK)
            goto fail;
        if ((rc = tb_pki_read_z85(cfg->curve_secret, 1, secret, err, errlen)) != TB_OK)
            goto fail;
        rc = TB_ERR_IO;
        /* libzmq asks inproc://zeromq.zap.01 of the socket's context about
         * every CURVE handshake; without a handler it admits anyone who
         * knows the node's public key */
        self->zap = zmq_socket(node->ctx, ZMQ_REP);
        int zero = 0;
        if (self->zap)
            zmq_setsockopt(self->zap, ZMQ_LINGER, &zero, sizeof zero);
        if (!self->zap || zmq_bind(self->zap, "inproc://zeromq.zap.01") != 0) {
            tb_seterr(err, errlen, "client API: cannot bind the ZAP handler: %s", zmq_strerror(errno));
            goto fail;
        }
    }
    self->sock = zmq_socket(node->ctx, ZMQ_ROUTER);
    if (!self->sock) {
        tb_seterr(err, errlen, "client API: %s", zmq_strerror(errno));
        goto fail;
    }
    int zero = 0, one = 1;
    int64_t maxmsg = API_MAX_MSG;
    zmq_setsockopt(self->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(self->sock, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    zmq_setsockopt(self->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (self->tcp) {
        zmq_setsockopt(self->sock, ZMQ_CURVE_SERVER, &one, sizeof one);
        zmq_setsockopt(self->sock, ZMQ_CURVE_SECRETKEY, secret, 40);
        memset(secret, 0, sizeof secret);
        if (zmq_bind(self->sock, self->endpoint) != 0) {
            tb_seterr(err, errlen, "cannot bind the client API %s (api.listen): %s", self->endpoint,
                      zmq_strerror(errno));
            goto fail;
        }
    } else {
        mode_t old = umask(0007);     /* the socket file is created 0660 */
        int brc = zmq_bind(self->sock, self->endpoint);
        umask(old);
        if (brc != 0) {
            tb_seterr(err, errlen, "cannot open the client API socket %s (api.listen): %s", self->endpoint,
                      zmq_strerror(errno));
            goto fail;
        }
        chmod(self->endpoint + 6, 0660);
    }
    tb_log(TB_LOG_INFO, comp, "api_listening", "node=%s endpoint=%s clients=%zu", cfg->id, self->endpoint,
           self->tcp ? self->nkeys : (size_t)0);
    *out = self;
    return TB_OK;
fail:
    memset(secret, 0, sizeof secret);
    api_destroy(&self);
    return rc;
}

void api_destroy(api_t **selfp)
{
    api_t *self = selfp ? *selfp : NULL;
    if (!self)
        return;
    for (size_t i = 0; i < API_MAX_PARKED; i++)
        if (self->park[i].kind != P_FREE)
            park_free(&self->park[i]);
    if (self->sock)
        zmq_close(self->sock);
    if (self->zap)
        zmq_close(self->zap);
    free(self->keys);
    free(self);
    *selfp = NULL;
}

int api_poll_items(api_t *self, zmq_pollitem_t *items)
{
    int n = 0;
    if (!self)
        return 0;
    items[n++] = (zmq_pollitem_t){self->sock, 0, ZMQ_POLLIN, 0};
    if (self->zap)
        items[n++] = (zmq_pollitem_t){self->zap, 0, ZMQ_POLLIN, 0};
    return n;
}

void api_on_poll(api_t *self, const zmq_pollitem_t *items, int n, uint64_t now)
{
    if (!self)
        return;
    /* ZAP first: a handshake waits for it */
    for (int k = 0; k < n; k++)
        if (items[k].socket == self->zap && (items[k].revents & ZMQ_POLLIN))
            for (int i = 0; i < 64; i++) {
                int ev = 0;
                size_t evlen = sizeof ev;
                if (zmq_getsockopt(self->zap, ZMQ_EVENTS, &ev, &evlen) != 0 || !(ev & ZMQ_POLLIN))
                    break;
                zap_handle(self);
            }
    self->backlog = 0;
    int ready = 0;
    for (int k = 0; k < n; k++)
        ready |= items[k].socket == self->sock && (items[k].revents & ZMQ_POLLIN);
    if (!ready)
        return;
    uint64_t start = now;
    for (int i = 0; i < API_BUDGET; i++) {
        if (!handle_one(self, now))
            return;
        now = tb_now_ms();
        if (now - start >= DRAIN_BUDGET_MS)
            break;
    }
    int ev = 0;
    size_t evlen = sizeof ev;
    self->backlog = zmq_getsockopt(self->sock, ZMQ_EVENTS, &ev, &evlen) == 0 && (ev & ZMQ_POLLIN);
}

int api_backlog(const api_t *self)
{
    return self && self->backlog;
}

int api_used_db(api_t *self)
{
    if (!self)
        return 0;
    if (self->wrote)
        self->wake = 1;      /* a local write is an event too */
    int used = self->used_db;
    self->wrote = self->used_db = 0;
    return used;
}

int api_on_reply(api_t *self, const Tongban__Reply *r, uint64_t now)
{
    (void)now;
    if (!self)
        return 0;
    for (size_t i = 0; i < API_MAX_PARKED; i++) {
        park_t *p = &self->park[i];
        if (p->kind != P_VERIFY || p->query_id != r->id)
            continue;
        if (r->from && *r->from && strcmp(r->from, p->issuer) != 0) {
            tb_log(TB_LOG_WARN, comp, "reply_ignored", "node=%s query=%llu from=%s expected=%s", me(self),
                   (unsigned long long)r->id, r->from, p->issuer);
            return 1;
        }
        verify_answered(self, p, r);
        return 1;
    }
    return 0;
}

void api_on_query(api_t *self, const Tongban__Query *q)
{
    node_t *node = self->node;
    char id[160], err[ERRLEN], msg[ERRLEN + 64];
    const char *from = q->from ? q->from : "?";
    json_t *lic = NULL, *raw = NULL;
    if (q->body.len == 0 || q->body.len >= sizeof id) {
        node_send_reply(node, q, TONGBAN__REPLY_STATUS__REPLY_ERROR, "bad licence identifier");
        return;
    }
    memcpy(id, q->body.data, q->body.len);
    id[q->body.len] = '\0';
    for (size_t i = 0; i < q->body.len; i++)
        if ((unsigned char)id[i] < 0x20 || id[i] == 0x7F) {
            node_send_reply(node, q, TONGBAN__REPLY_STATUS__REPLY_ERROR, "bad licence identifier");
            return;
        }
    tb_err_t rc = licence_load(self, id, &lic, NULL, &raw, err, sizeof err);
    if (rc == TB_ERR_NOTFOUND) {
        snprintf(msg, sizeof msg, "not found: licence %s", id);
        node_send_reply(node, q, TONGBAN__REPLY_STATUS__REPLY_ERROR, msg);
    } else if (rc != TB_OK) {
        node_send_reply(node, q, TONGBAN__REPLY_STATUS__REPLY_UNAVAILABLE, "the issuer's database is unavailable");
    } else if (!jstr(lic, "issuer_node") || strcmp(jstr(lic, "issuer_node"), me(self)) != 0) {
        snprintf(msg, sizeof msg, "not the issuer of licence %s", id);
        node_send_reply(node, q, TONGBAN__REPLY_STATUS__REPLY_ERROR, msg);
    } else {
        char *text = json_dumps(raw, JSON_COMPACT);
        node_send_reply(node, q, text ? TONGBAN__REPLY_STATUS__REPLY_OK : TONGBAN__REPLY_STATUS__REPLY_UNAVAILABLE,
                        text ? text : "out of memory");
        free(text);
        self->st.queries_answered++;
    }
    tb_log(TB_LOG_DEBUG, comp, "licence_status_answered", "node=%s asker=%s licence=%s status=%s", me(self), from, id,
           tb_strerror(rc));
    json_decref(lic);
    json_decref(raw);
}

void api_wake(api_t *self)
{
    if (self)
        self->wake = 1;
}

void api_timer(api_t *self, uint64_t now)
{
    if (!self)
        return;
    int wake = self->wake;
    self->wake = 0;
    for (size_t i = 0; i < API_MAX_PARKED; i++) {
        park_t *p = &self->park[i];
        if (p->kind == P_VERIFY && now >= p->deadline) {
            self->st.parked_timeouts++;
            const char *d = jstr(p->result, "detail");
            char ldet[ERRLEN];
            snprintf(ldet, sizeof ldet, "%s", d ? d : "");
            json_object_set_new(p->result, "issuer", json_string("timeout"));
            set_detail(p->result, "%s%sno answer from the issuer %s within %ld ms: local answer", ldet,
                       ldet[0] ? "; " : "", p->issuer, p->timeout_ms);
            verify_finish(self, p);
        } else if (p->kind == P_EVENTS && (wake || now >= p->next_check || now >= p->deadline)) {
            events_recheck(self, p, now);
        }
    }
}

tb_err_t api_reload(api_t *self, const tb_node_config_t *cfg, char *err, size_t errlen)
{
    uint8_t(*keys)[32] = NULL;
    size_t n = 0;
    if (!self || !self->tcp)
        return TB_OK;
    if (!cfg->api_clients[0]) {
        tb_seterr(err, errlen, "api.clients is required when api.listen is tcp://: keeping the old list");
        return TB_ERR_CONFIG;
    }
    tb_err_t rc = read_clients(cfg->api_clients, &keys, &n, err, errlen);
    if (rc != TB_OK)
        return rc;
    free(self->keys);
    self->keys = keys;
    self->nkeys = n;
    tb_log(TB_LOG_INFO, comp, "api_clients_reloaded", "node=%s clients=%zu", cfg->id, n);
    return TB_OK;
}

void api_get_stats(const api_t *self, api_stats_t *out)
{
    memset(out, 0, sizeof *out);
    if (!self)
        return;
    *out = self->st;
    for (size_t i = 0; i < API_MAX_PARKED; i++)
        out->parked += self->park[i].kind != P_FREE;
}

int api_entry_check(void *arg, const char *sender, const Tongban__RecordUpsert *u, const Tongban__RecordDelete *d,
                    char *why, size_t whylen)
{
    node_t *node = arg;
    const char *catalog = u ? u->catalog : d ? d->catalog : NULL;
    const char *key = u ? u->key : d ? d->key : NULL;
    const char *origin = u ? u->origin : d ? d->origin : NULL;
    int refused = domain_check_entry(dir_cert, node, sender, catalog, key, origin, u ? u->body : NULL, why, whylen);
    if (refused) {
        char q[ERRLEN + 16];
        if (node->api)
            node->api->st.domain_refused++;
        char qc[160];
        tb_log(TB_LOG_WARN, comp, "domain_entry_refused", "node=%s sender=%s catalog=%s reason=%s", node->cfg->id,
               sender ? sender : "?", tb_log_quote(catalog ? catalog : "?", qc, sizeof qc),
               tb_log_quote(why, q, sizeof q));
    }
    return refused;
}
