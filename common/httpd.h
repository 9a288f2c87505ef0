/* httpd.h -- the daemons' local HTTP endpoint: GET /metrics (Prometheus text
 * format 0.0.4) and GET /healthz, served by libmicrohttpd.
 *
 * Threads. libmicrohttpd runs its own threads (one listening, one per
 * connection, at most max_connections); the daemon's state stays owned by
 * its single loop thread. The loop *publishes* a snapshot -- the rendered
 * metrics text and a health verdict -- with tb_httpd_publish(); the HTTP
 * threads only ever copy the latest snapshot, under a mutex private to this
 * module. So that a scrape sees the state as of the scrape and not as of the
 * last periodic publish, a request first raises a "wanted" flag and waits up
 * to fresh_wait_ms for the next publish; the loop polls tb_httpd_due() from
 * its timer (every 100 ms or less) and publishes when it is true (a request
 * is waiting, or publish_every_ms has passed). If the loop is busy or stuck,
 * the request is answered with the latest snapshot once the wait is over.
 *
 * Responses: GET or HEAD /metrics -> 200 text/plain; version=0.0.4, or 503
 * before the first snapshot. GET or HEAD /healthz -> 200 "ok", or 503 and a
 * one-line reason: the one the loop gave, "starting" before the first
 * snapshot, or "stalled" when the loop has not published for
 * stale_after_ms. Another path: 404; another method: 405 (Allow: GET,
 * HEAD); a GET with a body: 400. Request bodies are never read. The
 * connection count, per-connection memory (headers) and idle time are
 * small and bounded; connections are kept alive between requests.
 */
#ifndef TB_HTTPD_H
#define TB_HTTPD_H

#include <stddef.h>
#include <tongban/tongban.h>

typedef struct tb_httpd tb_httpd_t;

typedef struct {
    unsigned max_connections;     /* concurrent connections, default 8 */
    unsigned timeout_s;           /* idle connection timeout, default 5 */
    unsigned fresh_wait_ms;       /* a request waits this long for a fresh snapshot, default 250; 0: never */
    unsigned publish_every_ms;    /* tb_httpd_due() at least this often, default 1000 */
    unsigned stale_after_ms;      /* /healthz says "stalled" past this, default 15000; 0: never */
} tb_httpd_opts_t;

/* Fills o with the defaults above. */
void tb_httpd_opts_init(tb_httpd_opts_t *o);

/* Binds host (an IPv4 or IPv6 literal; NULL: 127.0.0.1) on port (0: a
 * port chosen by the kernel, see tb_httpd_port) and starts serving; opts may
 * be NULL for the defaults. Returns TB_OK, TB_ERR_INVALID (bad address or
 * port), TB_ERR_IO (socket, bind, listen or libmicrohttpd failure; err says
 * which, e.g. "http 127.0.0.1:9740: bind: Address already in use") or
 * TB_ERR_NOMEM. */
tb_err_t tb_httpd_new(const char *host, int port, const tb_httpd_opts_t *opts, tb_httpd_t **out,
                      char *err, size_t errlen);

/* Stops serving (waits for the HTTP threads), frees, nulls *self; NULL-safe. */
void tb_httpd_destroy(tb_httpd_t **self);

/* The port actually bound. */
int tb_httpd_port(const tb_httpd_t *self);

/* For the loop: returns 1 when a snapshot should be published now (a
 * request is waiting for one, none was published yet, or publish_every_ms
 * has passed since the last), else 0. NULL-safe (0). */
int tb_httpd_due(tb_httpd_t *self);

/* For the loop: replaces the snapshot with a copy of metrics (len bytes,
 * Prometheus text) and the health verdict (healthy, or not and why: reason
 * is one line, cut at 255 bytes) and wakes the waiting requests. Returns
 * TB_OK or TB_ERR_NOMEM (the old snapshot is then kept). NULL-safe (TB_OK). */
tb_err_t tb_httpd_publish(tb_httpd_t *self, const char *metrics, size_t len, int healthy,
                          const char *reason);

#endif
