/* httpd.c -- /metrics and /healthz over libmicrohttpd, serving the snapshot
 * the daemon's loop publishes (see httpd.h for the threading model). */
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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define REASON_MAX 256
#define CONN_MEMORY 16384         /* per connection: request line + headers */
#define THREAD_STACK (512 * 1024)
#define LISTEN_BACKLOG 16

static const char *comp = "http";

struct tb_httpd {
    struct MHD_Daemon *mhd;
    tb_httpd_opts_t opts;
    int port;
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

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
                             const char *body, size_t len, int allow)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (allow) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
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

static enum MHD_Result serve_metrics(tb_httpd_t *self, struct MHD_Connection *c)
{
    static const char none[] = "no metrics yet: the daemon is starting\n";
    pthread_mutex_lock(&self->mu);
    wait_fresh(self);
    enum MHD_Result rc;
    if (self->gen == 0)
        rc = reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", none, sizeof none - 1, 0);
    else
        rc = reply(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", self->text, self->len, 0);
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

/* A GET or HEAD is answered on the handler's second call, once libmicrohttpd
 * has the whole request, so that the connection can be kept alive. Anything
 * else -- another method, a GET announcing a body -- is answered on the
 * first call, from the headers: the body is never read and libmicrohttpd
 * closes the connection after the answer. */
static enum MHD_Result handle(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_len, void **state)
{
    static const char nf[] = "not found: try /metrics or /healthz\n";
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
    if (strcmp(url, "/metrics") == 0) return serve_metrics(self, c);
    if (strcmp(url, "/healthz") == 0) return serve_health(self, c);
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

/* ---- setup ---- */

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
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&self->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&self->mu, NULL);

    tb_err_t rc = open_listener(host, port, &fd, &is6, err, errlen);
    if (rc != TB_OK) goto fail;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        self->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                    : ((struct sockaddr_in *)&ss)->sin_port);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG | (is6 ? MHD_USE_IPv6 : 0);
    self->mhd = MHD_start_daemon(flags, 0, NULL, NULL, handle, self,
                                 MHD_OPTION_EXTERNAL_LOGGER, mhd_log, (void *)NULL,   /* first */
                                 MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
                                 MHD_OPTION_CONNECTION_LIMIT, self->opts.max_connections,
                                 MHD_OPTION_CONNECTION_TIMEOUT, self->opts.timeout_s,
                                 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY,
                                 MHD_OPTION_THREAD_STACK_SIZE, (size_t)THREAD_STACK,
                                 MHD_OPTION_END);
    if (!self->mhd) {
        snprintf(err, errlen, "http %s:%d: libmicrohttpd did not start: %s", host, self->port,
                 errno ? strerror(errno) : "unknown error");
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
    free(self);
    *selfp = NULL;
}

int tb_httpd_port(const tb_httpd_t *self)
{
    return self ? self->port : 0;
}
