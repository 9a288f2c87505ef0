/* client.c -- libtongban's connection to a node's API: open/close, the
 * request/reply exchange (one packed ApiRequest frame out on a DEALER, one
 * packed ApiReply frame back, matched by id), tb_call and the small JSON
 * helpers the typed calls (client_*.c) share. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <zmq.h>

#include "api.pb-c.h"
#include "client_internal.h"

#define DEFAULT_TIMEOUT_MS 5000
#define MAX_TIMEOUT_MS 600000
#define MONITOR_EP "inproc://tb-client-monitor"   /* per context, so per handle */

/* ---- small helpers ---- */

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Writes one line into buf: control characters (newlines) become spaces. */
static void vline(char *buf, size_t len, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));
static void vline(char *buf, size_t len, const char *fmt, va_list ap)
{
    if (!buf || len == 0) return;
    vsnprintf(buf, len, fmt, ap);
    for (char *p = buf; *p; p++)
        if ((unsigned char)*p < 0x20) *p = ' ';
}

static void line(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void line(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline(buf, len, fmt, ap);
    va_end(ap);
}

tb_err_t tbc_fail(tb_client_t *c, tb_err_t e, const char *fmt, ...)
{
    if (!c) return e;
    va_list ap;
    va_start(ap, fmt);
    vline(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    return e;
}

tb_err_t tbc_begin(tb_client_t *c)
{
    if (!c) return TB_ERR_INVALID;
    c->err[0] = '\0';
    free(c->result);
    c->result = NULL;
    return TB_OK;
}

tb_err_t tbc_need(tb_client_t *c, const char *what, const char *s)
{
    if (s && *s) return TB_OK;
    return tbc_fail(c, TB_ERR_INVALID, "%s is required (got %s)", what, s ? "an empty string" : "NULL");
}

int tbc_set_str(tb_client_t *c, json_t *obj, const char *key, const char *val)
{
    if (!val) return 0;
    json_t *s = json_string(val);
    if (!s) {
        tbc_fail(c, TB_ERR_INVALID, "%s: not valid UTF-8 text", key);
        return -1;
    }
    return json_object_set_new(obj, key, s) == 0 ? 0 : -1;
}

json_t *tbc_parse_object(tb_client_t *c, const char *what, const char *text)
{
    json_error_t jerr;
    if (!text) {
        tbc_fail(c, TB_ERR_INVALID, "%s is required (got NULL)", what);
        return NULL;
    }
    json_t *v = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!v) {
        tbc_fail(c, TB_ERR_INVALID, "%s: not JSON: %s (line %d, column %d)", what, jerr.text, jerr.line,
                 jerr.column);
        return NULL;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        tbc_fail(c, TB_ERR_INVALID, "%s: expected a JSON object", what);
        return NULL;
    }
    return v;
}

tb_err_t tbc_args(tb_client_t *c, json_t **out, ...)
{
    va_list ap;
    json_t *o = json_object();
    tb_err_t e = TB_OK;

    *out = NULL;
    if (!o) return tbc_fail(c, TB_ERR_NOMEM, "out of memory");
    va_start(ap, out);
    for (const char *k; (k = va_arg(ap, const char *)) != NULL;) {
        const char *v = va_arg(ap, const char *);
        if (e == TB_OK && tbc_set_str(c, o, k, v) != 0)
            e = c->err[0] ? TB_ERR_INVALID : tbc_fail(c, TB_ERR_NOMEM, "out of memory");
    }
    va_end(ap);
    if (e != TB_OK) {
        json_decref(o);
        return e;
    }
    *out = o;
    return TB_OK;
}

char *tbc_dump(const json_t *v)
{
    if (!v) return strdup("null");
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

tb_err_t tbc_dup_member(tb_client_t *c, const char *op, const json_t *obj, const char *key, char **out)
{
    const char *s = json_string_value(json_object_get(obj, key));
    *out = NULL;
    if (!s) return tbc_fail(c, TB_ERR_PROTO, "%s: the node's result has no string \"%s\"", op, key);
    if (!(*out = strdup(s))) return tbc_fail(c, TB_ERR_NOMEM, "%s: out of memory", op);
    return TB_OK;
}

void tb_free(void *p)
{
    free(p);
}

/* ---- keys ---- */

static int z85_key_ok(const char *k)
{
    uint8_t raw[32];
    return k && strlen(k) == 40 && zmq_z85_decode(raw, k) != NULL;
}

tb_err_t tb_client_read_key(const char *path, int is_secret, char out[41], char *why, size_t whylen)
{
    tb_err_t rc = TB_ERR_IO;
    char buf[64];
    size_t n = 0;
    struct stat st;

    if (why && whylen) why[0] = '\0';
    if (!path || !out) {
        line(why, whylen, "tb_client_read_key: NULL argument");
        return TB_ERR_INVALID;
    }
    out[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        line(why, whylen, "%s: %s", path, strerror(errno));
        return TB_ERR_IO;
    }
    if (fstat(fd, &st) != 0) {
        line(why, whylen, "%s: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        line(why, whylen, "%s: not a regular file", path);
        goto done;
    }
    if (is_secret && (st.st_mode & 077)) {
        line(why, whylen, "%s: permissions %04o are too open for a secret key (chmod 600)", path,
             (unsigned)(st.st_mode & 07777));
        rc = TB_ERR_PERM;
        goto done;
    }
    while (n < sizeof buf) {
        ssize_t r = read(fd, buf + n, sizeof buf - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            line(why, whylen, "%s: %s", path, strerror(errno));
            goto done;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    rc = TB_ERR_INVALID;
    if (!(n == 40 || (n == 41 && buf[40] == '\n') || (n == 42 && buf[40] == '\r' && buf[41] == '\n'))) {
        line(why, whylen, "%s: not a Z85 CURVE key (expected 40 characters and a newline)", path);
        goto done;
    }
    buf[40] = '\0';
    if (!z85_key_ok(buf)) {
        line(why, whylen, "%s: not a Z85 CURVE key (bad character)", path);
        goto done;
    }
    memcpy(out, buf, 41);
    rc = TB_OK;
done:
    close(fd);
    return rc;
}

/* ---- open / close ---- */

static tb_err_t open_fail(const tb_client_opts_t *o, tb_err_t e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static tb_err_t open_fail(const tb_client_opts_t *o, tb_err_t e, const char *fmt, ...)
{
    if (o && o->errbuf && o->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vline(o->errbuf, o->errlen, fmt, ap);
        va_end(ap);
    }
    return e;
}

/* Sets the CURVE options of a client socket from o. Returns TB_OK or
 * TB_ERR_INVALID (errbuf of o written). */
static tb_err_t set_curve(void *s, const tb_client_opts_t *o)
{
    char pub[41];
    if (!z85_key_ok(o->server_key))
        return open_fail(o, TB_ERR_INVALID, "server_key: expected the node's CURVE public key, 40 Z85 characters");
    if (!z85_key_ok(o->client_secret))
        return open_fail(o, TB_ERR_INVALID,
                         "client_secret: a CURVE secret key (40 Z85 characters) is required with server_key");
    if (zmq_curve_public(pub, o->client_secret) != 0)
        return open_fail(o, TB_ERR_INVALID, "client_secret: cannot derive its public key: %s", zmq_strerror(errno));
    if (o->client_public && strcmp(o->client_public, pub) != 0)
        return open_fail(o, TB_ERR_INVALID, "client_public does not belong to client_secret (its public key is %s)",
                         pub);
    if (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, o->server_key, 41) != 0 ||
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pub, 41) != 0 ||
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, o->client_secret, 41) != 0)
        return open_fail(o, TB_ERR_INVALID, "CURVE keys refused by ZeroMQ: %s", zmq_strerror(errno));
    return TB_OK;
}

tb_err_t tb_client_open(const char *endpoint, const tb_client_opts_t *opts, tb_client_t **out)
{
    static const tb_client_opts_t none = { 0 };
    const tb_client_opts_t *o = opts ? opts : &none;
    tb_err_t e = TB_ERR_INVALID;
    tb_client_t *c = NULL;

    if (o->errbuf && o->errlen) o->errbuf[0] = '\0';
    if (!out) return open_fail(o, TB_ERR_INVALID, "tb_client_open: out is NULL");
    *out = NULL;
    int is_ipc = endpoint && strncmp(endpoint, "ipc://", 6) == 0 && endpoint[6];
    int is_tcp = endpoint && strncmp(endpoint, "tcp://", 6) == 0 && endpoint[6];
    if (!is_ipc && !is_tcp)
        return open_fail(o, TB_ERR_INVALID, "endpoint \"%s\": expected ipc://PATH or tcp://HOST:PORT",
                         endpoint ? endpoint : "(null)");
    if (strlen(endpoint) > 1024) return open_fail(o, TB_ERR_INVALID, "endpoint: longer than 1024 characters");
    if (o->timeout_ms < 0 || o->timeout_ms > MAX_TIMEOUT_MS)
        return open_fail(o, TB_ERR_INVALID, "timeout_ms: expected 0 (default) or 1..%d, got %d", MAX_TIMEOUT_MS,
                         o->timeout_ms);
    if (is_tcp && !o->server_key)
        return open_fail(o, TB_ERR_INVALID,
                         "%s: tcp:// endpoints use CURVE: give server_key (the node's public key) and client_secret",
                         endpoint);

    c = calloc(1, sizeof *c);
    if (!c || !(c->endpoint = strdup(endpoint))) {
        e = open_fail(o, TB_ERR_NOMEM, "out of memory");
        goto fail;
    }
    c->timeout_ms = o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
    c->ctx = zmq_ctx_new();
    if (!c->ctx || !(c->sock = zmq_socket(c->ctx, ZMQ_DEALER)) || !(c->mon = zmq_socket(c->ctx, ZMQ_PAIR))) {
        e = open_fail(o, TB_ERR_IO, "ZeroMQ: %s", zmq_strerror(errno));
        goto fail;
    }
    int zero = 0, one = 1;
    int64_t maxmsg = TBC_MAX_MSG;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(c->mon, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(c->sock, ZMQ_IMMEDIATE, &one, sizeof one);
    zmq_setsockopt(c->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (o->server_key && (e = set_curve(c->sock, o)) != TB_OK) goto fail;
    int events = ZMQ_EVENT_CONNECTED | ZMQ_EVENT_CONNECT_RETRIED | ZMQ_EVENT_DISCONNECTED |
                 ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                 ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
    if (zmq_socket_monitor(c->sock, MONITOR_EP, events) != 0 || zmq_connect(c->mon, MONITOR_EP) != 0) {
        e = open_fail(o, TB_ERR_IO, "ZeroMQ socket monitor: %s", zmq_strerror(errno));
        goto fail;
    }
    if (zmq_connect(c->sock, endpoint) != 0) {
        int err = errno;
        e = err == EINVAL || err == EPROTONOSUPPORT || err == ENOCOMPATPROTO ? TB_ERR_INVALID : TB_ERR_IO;
        open_fail(o, e, "%s: %s", endpoint, zmq_strerror(err));
        goto fail;
    }
    *out = c;
    return TB_OK;
fail:
    tb_client_close(&c);
    return e;
}

void tb_client_close(tb_client_t **cp)
{
    if (!cp || !*cp) return;
    tb_client_t *c = *cp;
    if (c->sock && c->mon) zmq_socket_monitor(c->sock, NULL, 0);
    if (c->mon) zmq_close(c->mon);
    if (c->sock) zmq_close(c->sock);
    if (c->ctx) zmq_ctx_term(c->ctx);
    free(c->endpoint);
    free(c->result);
    free(c);
    *cp = NULL;
}

const char *tb_client_error(const tb_client_t *c)
{
    return c ? c->err : "no client (NULL handle)";
}

const char *tb_client_result(const tb_client_t *c)
{
    return c ? c->result : NULL;
}

/* ---- the exchange ---- */

/* Reads the monitor's pending events into c's connection state. */
static void mon_drain(tb_client_t *c)
{
    for (;;) {
        zmq_msg_t m;
        uint16_t ev = 0;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        if (zmq_msg_size(&m) >= 6) memcpy(&ev, zmq_msg_data(&m), sizeof ev);
        int more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        while (more) {                       /* the endpoint frame (multi-part is atomic) */
            zmq_msg_init(&m);
            more = zmq_msg_recv(&m, c->mon, 0) >= 0 && zmq_msg_more(&m);
            zmq_msg_close(&m);
        }
        switch (ev) {
        case ZMQ_EVENT_CONNECTED: c->connected = 1; break;
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: c->connected = 1; c->mon_fail[0] = '\0'; break;
        case ZMQ_EVENT_DISCONNECTED: c->connected = 0; break;
        case ZMQ_EVENT_CONNECT_RETRIED: c->retries++; break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
            snprintf(c->mon_fail, sizeof c->mon_fail,
                     "the node refused this client's CURVE key (is its public key in the node's api.clients?)");
            break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            snprintf(c->mon_fail, sizeof c->mon_fail,
                     "the connection's handshake failed (wrong server key, or CURVE on one side only?)");
            break;
        default: break;
        }
    }
}

/* For ipc://PATH: fails at once when PATH is missing or not usable, rather
 * than waiting out the timeout. */
static tb_err_t ipc_precheck(tb_client_t *c)
{
    if (strncmp(c->endpoint, "ipc://", 6) != 0) return TB_OK;
    const char *path = c->endpoint + 6;
    struct stat st;
    if (path[0] == '@') return TB_OK;        /* Linux abstract namespace: nothing to check */
    if (stat(path, &st) != 0) {
        if (errno == EACCES)
            return tbc_fail(c, TB_ERR_PERM, "%s: permission denied on its directory", path);
        return tbc_fail(c, TB_ERR_UNAVAILABLE, "no node API socket at %s (%s): is the node running, is the endpoint right?",
                        path, strerror(errno));
    }
    if (!S_ISSOCK(st.st_mode)) return tbc_fail(c, TB_ERR_UNAVAILABLE, "%s is not a socket", path);
    if (access(path, R_OK | W_OK) != 0 && errno == EACCES)
        return tbc_fail(c, TB_ERR_PERM,
                        "%s: permission denied (the API socket is mode 0660: run as the node's user or a member of its group)",
                        path);
    return TB_OK;
}

/* Waits until c->sock can send (a connection is up) or the deadline; then
 * sends m. Returns TB_OK, or TB_ERR_UNAVAILABLE / TB_ERR_REFUSED / TB_ERR_IO. */
static tb_err_t send_when_connected(tb_client_t *c, const char *op, zmq_msg_t *m, long long deadline, int wait_ms)
{
    for (;;) {
        mon_drain(c);
        if (strstr(c->mon_fail, "refused this client's CURVE key"))
            return tbc_fail(c, TB_ERR_REFUSED, "%s: %s", c->endpoint, c->mon_fail);
        zmq_pollitem_t it[2] = { { c->sock, 0, ZMQ_POLLOUT, 0 }, { c->mon, 0, ZMQ_POLLIN, 0 } };
        long long left = deadline - now_ms();
        if (left <= 0) break;
        if (zmq_poll(it, 2, (long)left) < 0) {
            if (errno == EINTR) continue;
            return tbc_fail(c, TB_ERR_IO, "%s: %s: zmq_poll: %s", op, c->endpoint, zmq_strerror(errno));
        }
        if (!(it[0].revents & ZMQ_POLLOUT)) continue;
        if (zmq_msg_send(m, c->sock, ZMQ_DONTWAIT) >= 0) return TB_OK;
        if (errno != EAGAIN && errno != EINTR)
            return tbc_fail(c, TB_ERR_IO, "%s: sending to %s: %s", op, c->endpoint, zmq_strerror(errno));
    }
    return tbc_fail(c, TB_ERR_UNAVAILABLE, "%s: node API at %s not reachable within %d ms: %s", op, c->endpoint,
                    wait_ms,
                    c->mon_fail[0] ? c->mon_fail
                    : c->retries   ? "connection refused (is the node running?)"
                                   : "no connection");
}

/* Handles the reply that matches our id. */
static tb_err_t take_reply(tb_client_t *c, const char *op, const Tongban__ApiReply *r, json_t **result)
{
    json_t *res = NULL;
    if (r->result && r->result[0]) {
        json_error_t jerr;
        res = json_loads(r->result, 0, &jerr);
        if (!res || !json_is_object(res)) {
            json_decref(res);
            return tbc_fail(c, TB_ERR_PROTO, "%s: the node's result is not a JSON object (%s)", op,
                            res ? "another JSON value" : jerr.text);
        }
        if (!(c->result = strdup(r->result))) {
            json_decref(res);
            return tbc_fail(c, TB_ERR_NOMEM, "%s: out of memory", op);
        }
    }
    tb_err_t e;
    if (r->status == 0) {
        e = TB_OK;
        if (!res && !(res = json_object())) return tbc_fail(c, TB_ERR_NOMEM, "%s: out of memory", op);
    } else if (r->status > 0 && r->status < TB_ERR__COUNT) {
        e = (tb_err_t)r->status;
        if (r->error && r->error[0]) tbc_fail(c, e, "%s", r->error);
        else tbc_fail(c, e, "%s: %s (the node gave no detail)", op, tb_strerror(e));
    } else {
        e = tbc_fail(c, TB_ERR_PROTO, "%s: the node answered with unknown status %d: %s", op, (int)r->status,
                     r->error ? r->error : "");
    }
    if (result) *result = res;
    else json_decref(res);
    return e;
}

tb_err_t tbc_reply_frame(tb_client_t *c, const char *op, const void *data, size_t len, uint64_t want_id,
                         int *stale, json_t **result)
{
    *stale = 0;
    if (result) *result = NULL;
    Tongban__ApiReply *r = tongban__api_reply__unpack(NULL, len, data);
    if (!r)
        return tbc_fail(c, TB_ERR_PROTO, "%s: undecodable reply from %s (%zu bytes; not an ApiReply frame)", op,
                        c->endpoint ? c->endpoint : "the node", len);
    if (r->id != want_id) {                  /* a late answer to an earlier request */
        tongban__api_reply__free_unpacked(r, NULL);
        *stale = 1;
        return TB_OK;
    }
    tb_err_t e = take_reply(c, op, r, result);
    tongban__api_reply__free_unpacked(r, NULL);
    return e;
}

tb_err_t tbc_request(tb_client_t *c, const char *op, const char *args, int wait_ms, json_t **result)
{
    Tongban__ApiRequest req = TONGBAN__API_REQUEST__INIT;
    zmq_msg_t m;
    tb_err_t e;

    if (result) *result = NULL;
    free(c->result);
    c->result = NULL;
    long long start = now_ms(), deadline = start + wait_ms;
    req.id = ++c->next_id;
    req.op = (char *)op;
    req.args = (char *)args;
    size_t n = tongban__api_request__get_packed_size(&req);
    if (n > TBC_MAX_MSG)
        return tbc_fail(c, TB_ERR_INVALID, "%s: the request is %zu bytes, more than the 16 MiB limit", op, n);
    if ((e = ipc_precheck(c)) != TB_OK) return e;
    if (zmq_msg_init_size(&m, n) != 0) return tbc_fail(c, TB_ERR_NOMEM, "%s: out of memory", op);
    tongban__api_request__pack(&req, zmq_msg_data(&m));
    e = send_when_connected(c, op, &m, deadline, wait_ms);
    zmq_msg_close(&m);
    if (e != TB_OK) return e;

    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0) break;
        zmq_pollitem_t it = { c->sock, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll(&it, 1, (long)left) < 0) {
            if (errno == EINTR) continue;
            return tbc_fail(c, TB_ERR_IO, "%s: zmq_poll: %s", op, zmq_strerror(errno));
        }
        if (!(it.revents & ZMQ_POLLIN)) continue;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            continue;
        }
        int more = zmq_msg_more(&m), stale = 0;
        size_t len = zmq_msg_size(&m);
        if (more) {                          /* a reply is one frame: drop the rest */
            zmq_msg_close(&m);
            while (more) {
                zmq_msg_init(&m);
                more = zmq_msg_recv(&m, c->sock, 0) >= 0 && zmq_msg_more(&m);
                zmq_msg_close(&m);
            }
            return tbc_fail(c, TB_ERR_PROTO, "%s: undecodable reply from %s (%zu bytes; not an ApiReply frame)", op,
                            c->endpoint, len);
        }
        e = tbc_reply_frame(c, op, zmq_msg_data(&m), len, req.id, &stale, result);
        zmq_msg_close(&m);
        if (stale) continue;
        return e;
    }
    return tbc_fail(c, TB_ERR_TIMEOUT,
                    "%s: no reply from %s within %d ms (the request was sent; the node may still carry it out)", op,
                    c->endpoint, wait_ms);
}

tb_err_t tbc_call(tb_client_t *c, const char *op, json_t *args, int wait_ms, json_t **result)
{
    if (result) *result = NULL;
    if (!args) return tbc_fail(c, TB_ERR_NOMEM, "%s: out of memory", op);
    char *text = json_dumps(args, JSON_COMPACT);
    json_decref(args);
    if (!text) return tbc_fail(c, TB_ERR_NOMEM, "%s: out of memory", op);
    tb_err_t e = tbc_request(c, op, text, wait_ms, result);
    free(text);
    return e;
}

tb_err_t tb_call(tb_client_t *c, const char *op, const char *args_json, char **result_json)
{
    json_t *res = NULL;
    tb_err_t e;

    if (result_json) *result_json = NULL;
    if ((e = tbc_begin(c)) != TB_OK) return e;
    if ((e = tbc_need(c, "op", op)) != TB_OK) return e;
    if (args_json) {
        json_t *a = tbc_parse_object(c, "args_json", args_json);
        if (!a) return TB_ERR_INVALID;
        json_decref(a);
    }
    e = tbc_request(c, op, args_json ? args_json : "{}", c->timeout_ms, &res);
    if (res && result_json) {
        *result_json = strdup(c->result ? c->result : "{}");
        if (!*result_json) e = tbc_fail(c, TB_ERR_NOMEM, "%s: out of memory", op);
    }
    json_decref(res);
    return e;
}
