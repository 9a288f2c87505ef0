/* api.c -- the node's client API server: the socket (ipc 0660, or tcp with
 * CURVE and a ZAP allow-list), the framing, the dispatch of every operation
 * of docs/client-api.md (arguments checked by api_args.c, then the handler
 * of api_licence.c / api_case.c / api_supervision.c), the requests that
 * wait (licence verification at the issuer, events.next with wait_ms), the
 * timers and the stats. See api.h for the framing, api_internal.h for the
 * modules. */
#include "api.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api.pb-c.h"
#include "api_internal.h"
#include "domain.h"
#include "errbuf.h"
#include "log.h"
#include "node_internal.h"
#include "pki.h"
#include "store_domain.h"
#include "wire.h"

const char *const api_comp = "api";

#define MAX_CLIENT_KEYS 10000

/* ------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------ */

const char *api_me(const api_t *self)
{
    return self->node->cfg->id;
}

/* The directory certificate of node id (NULL: unknown); *revoked. */
const tb_cert_t *api_dir_cert(void *arg, const char *id, int *revoked)
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


/* Calls tongban.<fn>(args) in the node's database; *out (may be NULL) gets
 * its JSON result. PostgreSQL away: TB_ERR_UNAVAILABLE (and the node
 * reconnects); other errors as the store reports them. */
tb_err_t api_db(api_t *self, const char *fn, const char *const *args, int n, json_t **out, char *err,
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
tb_err_t api_db_write(api_t *self, const char *fn, const char *catalog, const char *key, const json_t *body,
                         char *err, size_t errlen)
{
    char *text = json_dumps(body, JSON_COMPACT);
    if (!text) {
        tb_seterr(err, errlen, "out of memory");
        return TB_ERR_NOMEM;
    }
    const char *a[3] = {catalog, key, text};
    tb_err_t rc = api_db(self, fn, a, 3, NULL, err, errlen);
    free(text);
    if (rc == TB_OK)
        self->wrote = 1;
    return rc;
}

tb_err_t api_seal_and_write(api_t *self, domain_kind_t kind, const char *fn, const char *catalog, const char *key,
                            json_t *body, char *err, size_t errlen)
{
    node_t *node = self->node;
    tb_err_t rc = domain_seal(node->signer, node->cert, api_me(self), kind, body, err, errlen);
    if (rc != TB_OK)
        return rc;
    return api_db_write(self, fn, catalog, key, body, err, errlen);
}

/* The object inside a domain function's result: {"body": {...}, meta...}
 * or the body itself with meta members (updated_at, local_age_s) beside
 * its own. Returns a new reference to the body without them; *age gets
 * local_age_s (-1 if absent). */
json_t *api_unwrap(const json_t *r, double *age)
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
        tb_log(TB_LOG_DEBUG, api_comp, "api_reply_failed", "node=%s op=%s id=%llu error=\"%s\"", api_me(self), rq->op,
               (unsigned long long)rq->id, zmq_strerror(errno));
    }
}

/* Answers rq: status, the error line (status != 0) and result (may be NULL). */
void api_finish(api_t *self, const req_t *rq, tb_err_t status, const char *error, const json_t *result)
{
    char *text = result ? json_dumps(result, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    char line[ERRLEN];
    if ((int)status < 0 || status >= TB_ERR__COUNT)
        status = TB_ERR_INVALID;
    snprintf(line, sizeof line, "%s", error ? error : "");
    error = api_one_line(line);     /* ApiReply.error is one line (api.proto) */
    send_reply(self, rq, status, status == TB_OK ? "" : error, text);
    free(text);
    self->st.by_status[status]++;
    uint64_t ms = tb_now_ms() - rq->t0;
    if (status == TB_OK) {
        tb_log(TB_LOG_DEBUG, api_comp, "api_request", "node=%s op=%s id=%llu status=ok ms=%llu", api_me(self), rq->op,
               (unsigned long long)rq->id, (unsigned long long)ms);
        return;
    }
    char q[ERRLEN + 16];
    tb_log_level_t lvl = status == TB_ERR_REFUSED || status == TB_ERR_BADSIG ? TB_LOG_INFO
                         : status == TB_ERR_INVALID || status == TB_ERR_NOTFOUND || status == TB_ERR_DUPLICATE
                             ? TB_LOG_DEBUG
                             : TB_LOG_WARN;
    tb_log(lvl, api_comp, "api_request", "node=%s op=%s id=%llu status=%s ms=%llu error=%s", api_me(self), rq->op,
           (unsigned long long)rq->id, tb_strerror(status), (unsigned long long)ms,
           tb_log_quote(error ? error : "", q, sizeof q));
}

/* ------------------------------------------------------------------------
 * Parked requests
 * ------------------------------------------------------------------------ */

park_t *api_park_new(api_t *self, const req_t *rq, int kind, uint64_t deadline)
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

void api_park_free(park_t *p)
{
    json_decref(p->result);
    free(p->cursor);
    free(p->after);
    memset(p, 0, sizeof *p);
}

/* ------------------------------------------------------------------------
 * Dispatch
 * ------------------------------------------------------------------------ */

static const api_op_fn handlers[API_OP__COUNT] = {
    [API_OP_RECORD_PUT] = api_op_record_put,
    [API_OP_RECORD_GET] = api_op_record_get,
    [API_OP_RECORD_DELETE] = api_op_record_delete,
    [API_OP_LICENCE_ISSUE] = api_op_licence_issue,
    [API_OP_LICENCE_UPDATE] = api_op_licence_update,
    [API_OP_LICENCE_SUSPEND] = api_op_licence_suspend,
    [API_OP_LICENCE_RESUME] = api_op_licence_resume,
    [API_OP_LICENCE_REVOKE] = api_op_licence_revoke,
    [API_OP_LICENCE_GET] = api_op_licence_get,
    [API_OP_LICENCE_FIND] = api_op_licence_find,
    [API_OP_LICENCE_VERIFY] = api_op_licence_verify,
    [API_OP_CASE_SUBMIT] = api_op_case_submit,
    [API_OP_CASE_ACT] = api_op_case_act,
    [API_OP_CASE_RATE] = api_op_case_rate,
    [API_OP_CASE_GET] = api_op_case_get,
    [API_OP_CASE_HISTORY] = api_op_case_history,
    [API_OP_CASE_LIST] = api_op_case_list,
    [API_OP_SUPITEM_PUT] = api_op_supitem_put,
    [API_OP_SUPITEM_LIST] = api_op_supitem_list,
    [API_OP_RISK_PUBLISH] = api_op_risk_publish,
    [API_OP_COMPLAINT_FILE] = api_op_complaint_file,
    [API_OP_COMPLAINT_ACK] = api_op_complaint_ack,
    [API_OP_COMPLAINT_GET] = api_op_complaint_get,
    [API_OP_EVENTS_NEXT] = api_op_events_next,
    [API_OP_EVENTS_ACK] = api_op_events_ack,
    [API_OP_CASE_ATTACH] = api_op_case_attach,
    [API_OP_CASE_ATTACHMENT] = api_op_case_attachment,
    [API_OP_CASE_ATTACHMENT_CHUNK] = api_op_case_attachment_chunk,
};

/* The node-side inputs of op's check (api_ops[op].needs) in ctx, backed
 * by the buffers at, id, evid. TB_OK, or TB_ERR_CRYPTO / TB_ERR_INVALID
 * with err set. */
static tb_err_t prepare_ctx(api_t *self, int op, api_ctx_t *ctx, char *at, size_t atlen, char *id, size_t idlen,
                            char *evid, size_t evidlen, char *err, size_t errlen)
{
    unsigned needs = api_ops[op].needs;
    char rnd[16], day[16];
    memset(ctx, 0, sizeof *ctx);
    ctx->node_id = api_me(self);
    if (needs & (API_NEED_ID | API_NEED_CASE_ID)) {
        if (domain_random_hex(rnd, sizeof rnd, 6) != TB_OK) {
            tb_seterr(err, errlen, "no random bytes");
            return TB_ERR_CRYPTO;
        }
        int n = needs & API_NEED_CASE_ID
                    ? snprintf(id, idlen, "%s-%s-%s", api_me(self), domain_today(day, sizeof day, 0), rnd)
                    : snprintf(id, idlen, "%s-%s", api_me(self), rnd);
        if (n < 0 || (size_t)n >= idlen) {
            tb_seterr(err, errlen, "id longer than %zu bytes", idlen - 1);
            return TB_ERR_INVALID;
        }
        ctx->id = id;
    }
    if (needs & API_NEED_EVENT_ID) {
        if (domain_random_hex(evid, evidlen, 8) != TB_OK) {
            tb_seterr(err, errlen, "no random bytes");
            return TB_ERR_CRYPTO;
        }
        ctx->event_id = evid;
    }
    if (needs & API_NEED_NOW)
        ctx->now = domain_now(at, atlen);
    return TB_OK;
}

static void malformed(api_t *self, const char *why, size_t bytes)
{
    self->st.malformed++;
    tb_log(TB_LOG_WARN, api_comp, "api_request_rejected", "node=%s reason=%s bytes=%zu", api_me(self), why, bytes);
}

static void dispatch(api_t *self, req_t *rq, const uint8_t *data, size_t len, uint64_t now)
{
    char err[ERRLEN] = "", at[40], id[TB_ID_MAX + 32], evid[20];
    json_t *res = NULL;
    api_request_t in;
    api_args_t a;
    api_ctx_t ctx;
    rq->t0 = now;
    tb_err_t drc = api_request_decode(data, len, &in, err, sizeof err);
    rq->id = in.id;
    snprintf(rq->op, sizeof rq->op, "%s", in.op_name);
    if (drc == TB_ERR_PROTO) {
        malformed(self, "undecodable_request", len);
        if (in.has_id) {
            self->st.requests++;
            api_finish(self, rq, TB_ERR_PROTO, err, NULL);
        }
        return;
    }
    self->st.requests++;
    if (drc != TB_OK) {
        api_finish(self, rq, drc, err, NULL);
        return;
    }
    int rc = prepare_ctx(self, in.op, &ctx, at, sizeof at, id, sizeof id, evid, sizeof evid, err, sizeof err);
    if (rc == TB_OK) {
        rc = api_args_check(in.op, in.args, &ctx, &a, err, sizeof err);
        if (rc == TB_OK) {
            rc = handlers[in.op](self, rq, &a, now, &res, err, sizeof err);
            api_args_free(&a);
        }
    }
    if (rc != PARKED) {
        if (rc != TB_OK && !err[0])
            snprintf(err, sizeof err, "%s: %s", rq->op, tb_strerror((tb_err_t)rc));
        api_finish(self, rq, (tb_err_t)rc, err, res);
    }
    json_decref(res);
    api_request_clear(&in);
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
        tb_log(TB_LOG_WARN, api_comp, "api_connection_refused", "node=%s address=%s key=%s reason=%s",
               api_me(self), addr,
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
    tb_log(TB_LOG_INFO, api_comp, "api_listening", "node=%s endpoint=%s clients=%zu", cfg->id, self->endpoint,
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
            api_park_free(&self->park[i]);
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
            tb_log(TB_LOG_WARN, api_comp, "reply_ignored", "node=%s query=%llu from=%s expected=%s", api_me(self),
                   (unsigned long long)r->id, r->from, p->issuer);
            return 1;
        }
        api_verify_answered(self, p, r);
        return 1;
    }
    return 0;
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
            api_verify_timeout(self, p);
        } else if (p->kind == P_EVENTS && (wake || now >= p->next_check || now >= p->deadline)) {
            api_events_recheck(self, p, now);
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
    tb_log(TB_LOG_INFO, api_comp, "api_clients_reloaded", "node=%s clients=%zu", cfg->id, n);
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
    int refused = domain_check_entry(api_dir_cert, node, sender, catalog, key, origin, u ? u->body : NULL, why, whylen);
    if (refused) {
        char q[ERRLEN + 16];
        if (node->api)
            node->api->st.domain_refused++;
        char qc[160];
        tb_log(TB_LOG_WARN, api_comp, "domain_entry_refused", "node=%s sender=%s catalog=%s reason=%s", node->cfg->id,
               sender ? sender : "?", tb_log_quote(catalog ? catalog : "?", qc, sizeof qc),
               tb_log_quote(why, q, sizeof q));
    }
    return refused;
}
