/* api_licence.c -- the client API's licence operations (licence.issue,
 * update, suspend, resume, revoke, get, find, verify) and the verify flow:
 * the local copy's seal and verdict, then, when asked, the issuer's answer
 * to a "licence_status" query (parked until it comes or times out); and
 * this node's answer to such queries as the issuer (api_on_query). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "errbuf.h"
#include "log.h"

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
    tb_err_t rc = api_db(self, "licence_get", a, 1, &r, err, errlen);
    if (rc == TB_ERR_NOTFOUND)
        tb_seterr(err, errlen, "no licence %s on this node", id);
    if (rc != TB_OK)
        return rc;
    *lic = api_unwrap(r, age);
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

int api_op_licence_issue(api_t *self, const req_t *rq, api_args_t *a, uint64_t now, json_t **res, char *err,
                         size_t errlen)
{
    json_t *body = a->body;    /* built by the check (domain_licence_issue) */
    (void)rq;
    (void)now;
    a->body = NULL;
    const char *id = jstr(body, "identifier");
    tb_err_t rc = api_seal_and_write(self, DOMAIN_LICENCE, "domain_insert", "tb.licence", id, body, err, errlen);
    if (rc == TB_ERR_DUPLICATE)
        tb_seterr(err, errlen, "licence %s already exists", id);
    if (rc == TB_OK)
        *res = body;
    else
        json_decref(body);
    return rc;
}

/* update, suspend, resume, revoke: on the issuing node only. */
static int licence_change(api_t *self, const api_args_t *a, const char *action, json_t **res, char *err,
                          size_t errlen)
{
    const char *id = a->identifier;
    const json_t *args = a->args;
    json_t *lic = NULL;
    char at[40];
    tb_err_t rc;
    if ((rc = licence_load(self, id, &lic, NULL, NULL, err, errlen)) != TB_OK)
        return rc;
    const char *issuer = jstr(lic, "issuer_node");
    if (!issuer || strcmp(issuer, api_me(self)) != 0) {
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
    rc = api_seal_and_write(self, DOMAIN_LICENCE, "domain_put", "tb.licence", id, lic, err, errlen);
    if (rc == TB_OK) {
        *res = lic;
        lic = NULL;
    }
done:
    json_decref(lic);
    return rc;
}

#define LICENCE_CHANGE(fn, action)                                                                           \
    int fn(api_t *self, const req_t *rq, api_args_t *a, uint64_t now, json_t **res, char *err, size_t errlen) \
    {                                                                                                        \
        (void)rq;                                                                                            \
        (void)now;                                                                                           \
        return licence_change(self, a, action, res, err, errlen);                                            \
    }
LICENCE_CHANGE(api_op_licence_update, "update")
LICENCE_CHANGE(api_op_licence_suspend, "suspend")
LICENCE_CHANGE(api_op_licence_resume, "resume")
LICENCE_CHANGE(api_op_licence_revoke, "revoke")

int api_op_licence_get(api_t *self, const req_t *rq, api_args_t *a, uint64_t now, json_t **res, char *err,
                       size_t errlen)
{
    const char *id = a->identifier;
    json_t *lic = NULL, *raw = NULL;
    tb_err_t rc;
    (void)rq;
    (void)now;
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

int api_op_licence_find(api_t *self, const req_t *rq, api_args_t *a, uint64_t now, json_t **res, char *err,
                        size_t errlen)
{
    (void)rq;
    (void)now;
    const char *q[1] = {a->holder_code};
    return api_db(self, "licence_find", q, 1, res, err, errlen);
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
    cert = strcmp(issuer, api_me(self)) == 0 ? self->node->cert : api_dir_cert(self->node, issuer, &revoked);
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

int api_op_licence_verify(api_t *self, const req_t *rq, api_args_t *a, uint64_t now, json_t **res, char *err,
                          size_t errlen)
{
    const char *id = a->identifier;
    long long timeout = a->timeout_ms;
    int ask = a->ask_issuer;
    json_t *lic = NULL;
    double age = -1;
    char why[ERRLEN], today[16];
    tb_err_t rc = licence_load(self, id, &lic, &age, NULL, err, errlen);
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
    int self_issued = issuer && strcmp(issuer, api_me(self)) == 0;
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
    park_t *p = api_park_new(self, rq, P_VERIFY, now + (uint64_t)timeout);
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
    tb_log(TB_LOG_DEBUG, api_comp, "licence_status_asked", "node=%s issuer=%s licence=%s query=%llu",
           api_me(self), issuer,
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
    api_finish(self, &p->rq, rc, err, p->result);
    api_park_free(p);
}

/* A Reply's body as one printable line in out; returns its length. */
static size_t reply_text(const Tongban__Reply *r, char *out, size_t len)
{
    size_t n = r->body.len < len - 1 ? r->body.len : len - 1;
    if (n) memcpy(out, r->body.data, n);   /* an empty body may have no data at all */
    out[n] = '\0';
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)out[i] < 0x20)
            out[i] = ' ';
    return n;
}

/* The issuer's answer to a parked verify. */
void api_verify_answered(api_t *self, park_t *p, const Tongban__Reply *r)
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
        json_t *lic = json_is_object(doc) ? api_unwrap(doc, NULL) : NULL;
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

/* A parked verify past its deadline: the local answer, saying so. */
void api_verify_timeout(api_t *self, park_t *p)
{
    const char *d = jstr(p->result, "detail");
    char ldet[ERRLEN];
    snprintf(ldet, sizeof ldet, "%s", d ? d : "");
    json_object_set_new(p->result, "issuer", json_string("timeout"));
    set_detail(p->result, "%s%sno answer from the issuer %s within %ld ms: local answer", ldet, ldet[0] ? "; " : "",
               p->issuer, p->timeout_ms);
    verify_finish(self, p);
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
    } else if (!jstr(lic, "issuer_node") || strcmp(jstr(lic, "issuer_node"), api_me(self)) != 0) {
        snprintf(msg, sizeof msg, "not the issuer of licence %s", id);
        node_send_reply(node, q, TONGBAN__REPLY_STATUS__REPLY_ERROR, msg);
    } else {
        char *text = json_dumps(raw, JSON_COMPACT);
        node_send_reply(node, q, text ? TONGBAN__REPLY_STATUS__REPLY_OK : TONGBAN__REPLY_STATUS__REPLY_UNAVAILABLE,
                        text ? text : "out of memory");
        free(text);
        self->st.queries_answered++;
    }
    tb_log(TB_LOG_DEBUG, api_comp, "licence_status_answered", "node=%s asker=%s licence=%s status=%s",
           api_me(self), from, id,
           tb_strerror(rc));
    json_decref(lic);
    json_decref(raw);
}

