/* httpd.c -- /metrics, /healthz and the daemon's documents over
 * libmicrohttpd, serving the snapshot the daemon's loop publishes, with an
 * optional access token and TLS (see httpd.h for the threading model). */
#include "httpd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define REASON_MAX 256
#define CONN_MEMORY 16384         /* per connection: request line + headers */
#define THREAD_STACK (512 * 1024)
#define LISTEN_BACKLOG 16
#define ROUTES_MAX 16
#define ROUTE_PATH_MAX 64
#define ROUTE_TYPE_MAX 64
#define COOKIE "tb_token"
#define AUTH_LOG_EVERY_MS 10000   /* refused requests: one log line per this long */
#define CSP "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; " \
            "form-action 'none'; frame-ancestors 'none'"

static const char *comp = "http";

/* A document other than /metrics and /healthz. */
typedef struct {
    char path[ROUTE_PATH_MAX];
    char type[ROUTE_TYPE_MAX];
    int dynamic;                  /* put by the loop (copied, no-store); else static */
    const char *body;             /* static: the caller's; dynamic: dyn (NULL until put) */
    char *dyn;
    size_t len, cap;
    char etag[24];                /* static: "\"<fnv-1a 64 hex>\"" */
} route_t;

struct tb_httpd {
    struct MHD_Daemon *mhd;
    tb_httpd_opts_t opts;         /* token, tls_*: NULL here (ours are below) */
    int port;
    char *token;                  /* NULL: open */
    size_t token_len;
    char *cookie;                 /* the Set-Cookie value carrying the token */
    char *tls_cert, *tls_key;     /* NULL: plain HTTP */
    pthread_mutex_t mu;
    pthread_cond_t cond;          /* signalled on every publish and on stop */
    /* under mu: */
    char *text;                   /* latest metrics text (NUL-terminated) */
    size_t len, cap;
    int healthy;
    char reason[REASON_MAX];
    uint64_t gen;                 /* publishes so far; 0: nothing yet */
    uint64_t published_ms;        /* monotonic ms of the last publish */
    int wanted;                   /* a request waits for a fresh snapshot */
    int stopping;
    route_t routes[ROUTES_MAX];   /* appended only: a route_t * stays valid */
    size_t nroutes;
    uint64_t auth_logged_ms;      /* last "unauthorized" log line */
    unsigned long auth_refused;   /* refusals since then */
};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void tb_httpd_opts_init(tb_httpd_opts_t *o)
{
    o->max_connections = 8;
    o->timeout_s = 5;
    o->fresh_wait_ms = 250;
    o->publish_every_ms = 1000;
    o->stale_after_ms = 15000;
    o->token = NULL;
    o->tls_cert_pem = NULL;
    o->tls_key_pem = NULL;
}

int tb_httpd_tls_supported(void)
{
    return MHD_is_feature_supported(MHD_FEATURE_TLS) == MHD_YES;
}

int tb_httpd_tls(const tb_httpd_t *self)
{
    return self && self->tls_cert;
}

/* ---- the HTTP side (libmicrohttpd's threads) ---- */

static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512], q[600];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    tb_log(TB_LOG_WARN, comp, "httpd_warning", "detail=%s", tb_log_quote(msg, q, sizeof q));
}

/* The headers of every answer. */
static void common_headers(struct MHD_Response *r)
{
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(r, "Content-Security-Policy", CSP);
}

/* Queues r (destroyed here) with status and the common headers; cache is
 * the Cache-Control value; allow: add "Allow: GET, HEAD"; cookie: a
 * Set-Cookie value or NULL. */
static enum MHD_Result queue(struct MHD_Connection *c, unsigned status, struct MHD_Response *r,
                             const char *type, const char *cache, int allow, const char *cookie)
{
    if (!r) return MHD_NO;
    if (type) MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, cache);
    if (allow) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    if (cookie) MHD_add_response_header(r, MHD_HTTP_HEADER_SET_COOKIE, cookie);
    common_headers(r);
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

/* Answers with a copy of body, not to be cached. */
static enum MHD_Result reply_c(struct MHD_Connection *c, unsigned status, const char *type,
                               const char *body, size_t len, int allow, const char *cookie)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    return queue(c, status, r, type, "no-store", allow, cookie);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
                             const char *body, size_t len, int allow)
{
    return reply_c(c, status, type, body, len, allow, NULL);
}

/* Waits (mu held) up to fresh_wait_ms for a publish newer than the one
 * current on entry. */
static void wait_fresh(tb_httpd_t *self)
{
    if (!self->opts.fresh_wait_ms || self->stopping) return;
    uint64_t gen0 = self->gen;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    uint64_t ns = (uint64_t)until.tv_nsec + (uint64_t)self->opts.fresh_wait_ms * 1000000u;
    until.tv_sec += (time_t)(ns / 1000000000u);
    until.tv_nsec = (long)(ns % 1000000000u);
    self->wanted = 1;
    while (self->gen == gen0 && !self->stopping)
        if (pthread_cond_timedwait(&self->cond, &self->mu, &until) == ETIMEDOUT) break;
}

static enum MHD_Result serve_metrics(tb_httpd_t *self, struct MHD_Connection *c, const char *cookie)
{
    static const char none[] = "no metrics yet: the daemon is starting\n";
    pthread_mutex_lock(&self->mu);
    wait_fresh(self);
    enum MHD_Result rc;
    if (self->gen == 0)
        rc = reply_c(c, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", none, sizeof none - 1, 0, cookie);
    else
        rc = reply_c(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", self->text, self->len, 0, cookie);
    pthread_mutex_unlock(&self->mu);
    return rc;
}

static enum MHD_Result serve_health(tb_httpd_t *self, struct MHD_Connection *c)
{
    char body[REASON_MAX + 80];
    unsigned status = MHD_HTTP_SERVICE_UNAVAILABLE;
    pthread_mutex_lock(&self->mu);
    wait_fresh(self);
    uint64_t age = self->gen ? mono_ms() - self->published_ms : 0;
    if (self->gen == 0) {
        snprintf(body, sizeof body, "starting: no status from the daemon yet\n");
    } else if (self->opts.stale_after_ms && age > self->opts.stale_after_ms) {
        snprintf(body, sizeof body, "stalled: the daemon loop has not reported for %llu ms\n",
                 (unsigned long long)age);
    } else if (self->healthy) {
        snprintf(body, sizeof body, "ok\n");
        status = MHD_HTTP_OK;
    } else {
        snprintf(body, sizeof body, "%s\n", self->reason);
    }
    pthread_mutex_unlock(&self->mu);
    return reply(c, status, "text/plain; charset=utf-8", body, strlen(body), 0);
}

/* A static or dynamic document (route pointers stay valid: routes are only
 * appended, under mu). */
static enum MHD_Result serve_route(tb_httpd_t *self, struct MHD_Connection *c, route_t *rt,
                                   const char *cookie)
{
    static const char none[] = "not available yet: the daemon is starting\n";
    struct MHD_Response *r;
    if (!rt->dynamic) {
        const char *inm = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
        int same = inm && strcmp(inm, rt->etag) == 0;
        r = MHD_create_response_from_buffer(same ? 0 : rt->len, (void *)rt->body, MHD_RESPMEM_PERSISTENT);
        if (r) MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, rt->etag);
        return queue(c, same ? MHD_HTTP_NOT_MODIFIED : MHD_HTTP_OK, r, same ? NULL : rt->type, "no-cache", 0,
                     cookie);
    }
    pthread_mutex_lock(&self->mu);
    wait_fresh(self);
    enum MHD_Result rc;
    if (!rt->body)
        rc = reply_c(c, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", none, sizeof none - 1, 0, cookie);
    else
        rc = reply_c(c, MHD_HTTP_OK, rt->type, rt->body, rt->len, 0, cookie);
    pthread_mutex_unlock(&self->mu);
    return rc;
}

/* Constant-time comparison of given with the token: the time depends only
 * on the token's length. */
static int token_eq(const tb_httpd_t *self, const char *given, size_t n)
{
    unsigned d = n != self->token_len;
    for (size_t i = 0; i < self->token_len; i++) {
        unsigned char g = (unsigned char)given[i < n ? i : 0];
        d |= (unsigned)(g ^ (unsigned char)self->token[i]);
    }
    return n > 0 && d == 0;
}

/* Decodes standard base64 (with padding) of in into out (outlen bytes);
 * returns the length or -1. */
static long b64_decode(const char *in, unsigned char *out, size_t outlen)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(in), o = 0;
    uint32_t acc = 0;
    int bits = 0;
    if (n % 4) return -1;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '=') {
            if (i + 2 < n || (i + 1 < n && in[i + 1] != '=')) return -1;
            break;
        }
        const char *p = strchr(alpha, in[i]);
        if (!p || !in[i]) return -1;
        acc = (acc << 6) | (uint32_t)(p - alpha);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= outlen) return -1;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    return (long)o;
}

/* Does the request carry the token? *via_query is set when it came as
 * ?token= (the answer then sets the cookie). */
static int authorized(tb_httpd_t *self, struct MHD_Connection *c, int *via_query)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    *via_query = 0;
    if (h && strncasecmp(h, "Bearer ", 7) == 0) {
        h += 7;
        while (*h == ' ') h++;
        if (token_eq(self, h, strlen(h))) return 1;
    } else if (h && strncasecmp(h, "Basic ", 6) == 0) {
        unsigned char dec[512];
        h += 6;
        while (*h == ' ') h++;
        long n = b64_decode(h, dec, sizeof dec);
        const unsigned char *colon = n > 0 ? memchr(dec, ':', (size_t)n) : NULL;
        int ok = colon && token_eq(self, (const char *)colon + 1, (size_t)(dec + n - colon - 1));
        memset(dec, 0, sizeof dec);
        if (ok) return 1;
    }
    const char *q = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token");
    if (q && token_eq(self, q, strlen(q))) {
        *via_query = 1;
        return 1;
    }
    const char *k = MHD_lookup_connection_value(c, MHD_COOKIE_KIND, COOKIE);
    return k && token_eq(self, k, strlen(k));
}

/* 401, logged at most once per AUTH_LOG_EVERY_MS (with the count since). */
static enum MHD_Result refuse(tb_httpd_t *self, struct MHD_Connection *c, const char *url)
{
    static const char body[] =
        "unauthorized: send \"Authorization: Bearer TOKEN\" or open the page with ?token=TOKEN\n";
    pthread_mutex_lock(&self->mu);
    uint64_t now = mono_ms();
    unsigned long n = ++self->auth_refused;
    int log = now - self->auth_logged_ms >= AUTH_LOG_EVERY_MS || self->auth_logged_ms == 0;
    if (log) {
        self->auth_logged_ms = now;
        self->auth_refused = 0;
    }
    pthread_mutex_unlock(&self->mu);
    if (log) {
        char addr[INET6_ADDRSTRLEN] = "?", q[160];
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr) {
            const struct sockaddr *sa = ci->client_addr;
            if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, addr, sizeof addr);
            else if (sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, addr, sizeof addr);
        }
        tb_log(TB_LOG_WARN, comp, "http_unauthorized", "client=%s path=%s refused=%lu", addr,
               tb_log_quote(url, q, sizeof q), n);
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(sizeof body - 1, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (r) {
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"tongban\"");
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Basic realm=\"tongban\", charset=\"UTF-8\"");
    }
    return queue(c, MHD_HTTP_UNAUTHORIZED, r, "text/plain; charset=utf-8", "no-store", 0, NULL);
}

/* The route serving url, or NULL. */
static route_t *find_route(tb_httpd_t *self, const char *url)
{
    route_t *rt = NULL;
    pthread_mutex_lock(&self->mu);
    for (size_t i = 0; i < self->nroutes; i++)
        if (strcmp(self->routes[i].path, url) == 0) rt = &self->routes[i];
    pthread_mutex_unlock(&self->mu);
    return rt;
}

/* A GET or HEAD is answered on the handler's second call, once libmicrohttpd
 * has the whole request, so that the connection can be kept alive. Anything
 * else -- another method, a GET announcing a body -- is answered on the
 * first call, from the headers: the body is never read and libmicrohttpd
 * closes the connection after the answer. */
static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_len, void **state)
{
    static const char nf[] = "not found\n";
    static const char na[] = "method not allowed: GET or HEAD\n";
    static const char nb[] = "bad request: a GET has no body\n";
    static int marker;
    tb_httpd_t *self = cls;
    (void)version;
    (void)upload;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", na, sizeof na - 1, 1);
    if (*state == NULL) {                 /* headers only so far */
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if ((cl && strcmp(cl, "0") != 0) ||
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING))
            return reply(c, MHD_HTTP_BAD_REQUEST, "text/plain; charset=utf-8", nb, sizeof nb - 1, 0);
        *state = &marker;
        return MHD_YES;
    }
    if (*upload_len) return MHD_NO;       /* a body after all: drop the connection */
    if (strcmp(url, "/healthz") == 0) return serve_health(self, c);
    int via_query = 0;
    if (self->token && !authorized(self, c, &via_query)) return refuse(self, c, url);
    /* A token that came in the URL becomes a cookie, so that the page's own
     * requests (scripts, styles, polls) carry it without the URL. */
    const char *cookie = via_query ? self->cookie : NULL;
    if (strcmp(url, "/metrics") == 0) return serve_metrics(self, c, cookie);
    route_t *rt = find_route(self, url);
    if (rt) return serve_route(self, c, rt, cookie);
    return reply(c, MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8", nf, sizeof nf - 1, 0);
}

/* ---- the loop side ---- */

int tb_httpd_due(tb_httpd_t *self)
{
    if (!self) return 0;
    pthread_mutex_lock(&self->mu);
    int due = self->wanted || self->gen == 0 || mono_ms() - self->published_ms >= self->opts.publish_every_ms;
    pthread_mutex_unlock(&self->mu);
    return due;
}

tb_err_t tb_httpd_publish(tb_httpd_t *self, const char *metrics, size_t len, int healthy,
                          const char *reason)
{
    if (!self) return TB_OK;
    if (!metrics) len = 0;
    pthread_mutex_lock(&self->mu);
    if (len + 1 > self->cap) {
        char *t = realloc(self->text, len + 1);
        if (!t) {
            pthread_mutex_unlock(&self->mu);
            return TB_ERR_NOMEM;
        }
        self->text = t;
        self->cap = len + 1;
    }
    if (len) memcpy(self->text, metrics, len);
    self->text[len] = '\0';
    self->len = len;
    self->healthy = healthy;
    snprintf(self->reason, sizeof self->reason, "%s", reason && *reason ? reason : "unhealthy");
    self->reason[strcspn(self->reason, "\r\n")] = '\0';
    self->gen++;
    self->published_ms = mono_ms();
    self->wanted = 0;
    pthread_cond_broadcast(&self->cond);
    pthread_mutex_unlock(&self->mu);
    return TB_OK;
}

/* Checks path and type of a new or updated document. */
static int valid_route(const char *path, const char *type)
{
    if (!path || path[0] != '/' || strlen(path) >= ROUTE_PATH_MAX || !type || !*type ||
        strlen(type) >= ROUTE_TYPE_MAX)
        return 0;
    if (strcmp(path, "/metrics") == 0 || strcmp(path, "/healthz") == 0) return 0;
    for (const char *p = path; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '?' || *p == '#' || *p == '%' || *p == 0x7f) return 0;
    for (const char *p = type; *p; p++)
        if ((unsigned char)*p < ' ' || *p == 0x7f) return 0;
    return 1;
}

/* The route at path (mu held), or NULL. */
static route_t *route_at(tb_httpd_t *self, const char *path)
{
    for (size_t i = 0; i < self->nroutes; i++)
        if (strcmp(self->routes[i].path, path) == 0) return &self->routes[i];
    return NULL;
}

tb_err_t tb_httpd_add_static(tb_httpd_t *self, const char *path, const char *type, const void *body,
                             size_t len)
{
    if (!self || !valid_route(path, type) || (!body && len)) return TB_ERR_INVALID;
    uint64_t h = 0xcbf29ce484222325ull;          /* FNV-1a 64 of the body: the ETag */
    for (size_t i = 0; i < len; i++) h = (h ^ ((const unsigned char *)body)[i]) * 0x100000001b3ull;
    tb_err_t rc = TB_OK;
    pthread_mutex_lock(&self->mu);
    if (route_at(self, path)) {
        rc = TB_ERR_INVALID;
    } else if (self->nroutes == ROUTES_MAX) {
        rc = TB_ERR_NOMEM;
    } else {
        route_t *rt = &self->routes[self->nroutes];
        memset(rt, 0, sizeof *rt);
        snprintf(rt->path, sizeof rt->path, "%s", path);
        snprintf(rt->type, sizeof rt->type, "%s", type);
        rt->body = body ? body : "";
        rt->len = len;
        snprintf(rt->etag, sizeof rt->etag, "\"%016llx\"", (unsigned long long)h);
        self->nroutes++;
    }
    pthread_mutex_unlock(&self->mu);
    return rc;
}

tb_err_t tb_httpd_put(tb_httpd_t *self, const char *path, const char *type, const char *body, size_t len)
{
    if (!self) return TB_OK;
    if (!valid_route(path, type)) return TB_ERR_INVALID;
    tb_err_t rc = TB_OK;
    pthread_mutex_lock(&self->mu);
    route_t *rt = route_at(self, path);
    if (rt && !rt->dynamic) {
        rc = TB_ERR_INVALID;
        goto done;
    }
    if (!rt) {
        if (self->nroutes == ROUTES_MAX) {
            rc = TB_ERR_NOMEM;
            goto done;
        }
        rt = &self->routes[self->nroutes++];
        memset(rt, 0, sizeof *rt);
        snprintf(rt->path, sizeof rt->path, "%s", path);
        rt->dynamic = 1;
    }
    snprintf(rt->type, sizeof rt->type, "%s", type);
    if (!body) goto done;
    if (len + 1 > rt->cap) {
        char *t = realloc(rt->dyn, len + 1);
        if (!t) {
            rc = TB_ERR_NOMEM;
            goto done;
        }
        rt->dyn = t;
        rt->cap = len + 1;
    }
    if (len) memcpy(rt->dyn, body, len);
    rt->dyn[len] = '\0';
    rt->len = len;
    rt->body = rt->dyn;
done:
    pthread_mutex_unlock(&self->mu);
    return rc;
}

/* ---- setup ---- */

/* A token goes into a header, a URL and a cookie: 1 to 256 characters
 * of [A-Za-z0-9._~-] (the configuration asks for at least 16). */
static int valid_token(const char *t)
{
    size_t n = strspn(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-");
    return n > 0 && n <= 256 && t[n] == '\0';
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* Copies the token (and builds its cookie) and the TLS PEMs into self.
 * Returns TB_OK or an error with err filled. */
static tb_err_t take_secrets(tb_httpd_t *self, const tb_httpd_opts_t *o, const char *host, int port,
                             char *err, size_t errlen)
{
    int want_tls = (o->tls_cert_pem && *o->tls_cert_pem) || (o->tls_key_pem && *o->tls_key_pem);
    if (o->token && *o->token) {
        if (!valid_token(o->token)) {
            snprintf(err, errlen, "http %s:%d: the token must be 1 to 256 characters of [A-Za-z0-9._~-]", host, port);
            return TB_ERR_INVALID;
        }
        self->token = dup_str(o->token);
        self->token_len = strlen(o->token);
        size_t n = self->token_len + 96;
        self->cookie = malloc(n);
        if (!self->token || !self->cookie) return TB_ERR_NOMEM;
        snprintf(self->cookie, n, COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict%s", self->token,
                 want_tls ? "; Secure" : "");
    }
    if (!want_tls) return TB_OK;
    if (!o->tls_cert_pem || !*o->tls_cert_pem || !o->tls_key_pem || !*o->tls_key_pem) {
        snprintf(err, errlen, "http %s:%d: TLS needs both a certificate and a private key", host, port);
        return TB_ERR_INVALID;
    }
    if (!tb_httpd_tls_supported()) {
        snprintf(err, errlen, "http %s:%d: this libmicrohttpd was built without TLS (GnuTLS): serve plain "
                 "HTTP on loopback behind a TLS-terminating reverse proxy instead", host, port);
        return TB_ERR_INVALID;
    }
    self->tls_cert = dup_str(o->tls_cert_pem);
    self->tls_key = dup_str(o->tls_key_pem);
    return self->tls_cert && self->tls_key ? TB_OK : TB_ERR_NOMEM;
}

/* Opens, binds and listens; fills *fd and *is6. Returns TB_OK or an error
 * with err filled. */
static tb_err_t open_listener(const char *host, int port, int *fd, int *is6, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        sl = sizeof *a4;
        *is6 = 0;
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        sl = sizeof *a6;
        *is6 = 1;
    } else {
        snprintf(err, errlen, "http %s:%d: not an IPv4 or IPv6 address", host, port);
        return TB_ERR_INVALID;
    }
    const char *step = "socket";
    int s = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (s < 0) goto fail;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (*is6) setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    step = "bind";
    if (bind(s, (struct sockaddr *)&ss, sl) != 0) goto fail;
    step = "listen";
    if (listen(s, LISTEN_BACKLOG) != 0) goto fail;
    *fd = s;
    return TB_OK;
fail:
    snprintf(err, errlen, "http %s%s%s:%d: %s: %s", *is6 ? "[" : "", host, *is6 ? "]" : "", port, step,
             strerror(errno));
    if (s >= 0) close(s);
    return TB_ERR_IO;
}

tb_err_t tb_httpd_new(const char *host, int port, const tb_httpd_opts_t *opts, tb_httpd_t **out,
                      char *err, size_t errlen)
{
    int fd = -1, is6 = 0;
    if (!host) host = "127.0.0.1";
    if (port < 0 || port > 65535) {
        snprintf(err, errlen, "http %s:%d: port out of range", host, port);
        return TB_ERR_INVALID;
    }
    tb_httpd_t *self = calloc(1, sizeof *self);
    if (!self) return TB_ERR_NOMEM;
    if (opts) self->opts = *opts;
    else tb_httpd_opts_init(&self->opts);
    if (!self->opts.max_connections) self->opts.max_connections = 1;
    self->opts.token = self->opts.tls_cert_pem = self->opts.tls_key_pem = NULL;   /* ours are copies */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&self->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&self->mu, NULL);

    tb_err_t rc = opts ? take_secrets(self, opts, host, port, err, errlen) : TB_OK;
    if (rc != TB_OK) goto fail;
    rc = open_listener(host, port, &fd, &is6, err, errlen);
    if (rc != TB_OK) goto fail;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        self->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                    : ((struct sockaddr_in *)&ss)->sin_port);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG | (is6 ? MHD_USE_IPv6 : 0) |
                     (self->tls_cert ? MHD_USE_TLS : 0);
    /* The TLS options come last: without TLS they end the list early. */
    errno = 0;
    self->mhd = MHD_start_daemon(flags, 0, NULL, NULL, handle, self,
                                 MHD_OPTION_EXTERNAL_LOGGER, mhd_log, (void *)NULL,   /* first */
                                 MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
                                 MHD_OPTION_CONNECTION_LIMIT, self->opts.max_connections,
                                 MHD_OPTION_CONNECTION_TIMEOUT, self->opts.timeout_s,
                                 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY,
                                 MHD_OPTION_THREAD_STACK_SIZE, (size_t)THREAD_STACK,
                                 self->tls_cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END,
                                 self->tls_cert,
                                 MHD_OPTION_HTTPS_MEM_KEY, self->tls_key,
                                 MHD_OPTION_END);
    if (!self->mhd) {
        snprintf(err, errlen, "http %s:%d: libmicrohttpd did not start: %s", host, self->port,
                 self->tls_cert ? "is the TLS certificate or key unusable? (see the http_warning above)"
                 : errno ? strerror(errno) : "unknown error");
        /* fd is not closed here: libmicrohttpd may have closed it already on
         * its failure path, and a second close could hit a descriptor another
         * thread (ZeroMQ's) has opened since. The caller exits on this error. */
        rc = TB_ERR_IO;
        goto fail;
    }
    *out = self;
    return TB_OK;
fail:
    tb_httpd_destroy(&self);
    return rc;
}

void tb_httpd_destroy(tb_httpd_t **selfp)
{
    tb_httpd_t *self = selfp ? *selfp : NULL;
    if (!self) return;
    pthread_mutex_lock(&self->mu);
    self->stopping = 1;                   /* waiting requests answer at once */
    pthread_cond_broadcast(&self->cond);
    pthread_mutex_unlock(&self->mu);
    if (self->mhd) MHD_stop_daemon(self->mhd);   /* joins its threads, closes the listener */
    pthread_cond_destroy(&self->cond);
    pthread_mutex_destroy(&self->mu);
    free(self->text);
    for (size_t i = 0; i < self->nroutes; i++) free(self->routes[i].dyn);
    if (self->token) memset(self->token, 0, self->token_len);
    if (self->cookie) memset(self->cookie, 0, strlen(self->cookie));
    if (self->tls_key) memset(self->tls_key, 0, strlen(self->tls_key));
    free(self->token);
    free(self->cookie);
    free(self->tls_cert);
    free(self->tls_key);
    free(self);
    *selfp = NULL;
}

int tb_httpd_port(const tb_httpd_t *self)
{
    return self ? self->port : 0;
}
