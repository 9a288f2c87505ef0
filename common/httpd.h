/* httpd.h -- the daemons' local HTTP endpoint: GET /metrics (Prometheus text
 * format 0.0.4) and GET /healthz, plus any documents the daemon adds (the
 * hub's console: static files compiled into the binary and /api/status),
 * served by libmicrohttpd.
 *
 * Threads. libmicrohttpd runs its own threads (one listening, one per
 * connection, at most max_connections); the daemon's state stays owned by
 * its single loop thread. The loop *publishes* a snapshot -- the rendered
 * metrics text and a health verdict -- with tb_httpd_publish(), and any
 * dynamic documents with tb_httpd_put() just before; the HTTP threads only
 * ever copy the latest snapshot, under a mutex private to this module. So
 * that a scrape sees the state as of the scrape and not as of the last
 * periodic publish, a request first raises a "wanted" flag and waits up to
 * fresh_wait_ms for the next publish; the loop polls tb_httpd_due() from its
 * timer (every 100 ms or less) and publishes when it is true (a request is
 * waiting, or publish_every_ms has passed). If the loop is busy or stuck,
 * the request is answered with the latest snapshot once the wait is over.
 *
 * Responses: GET or HEAD /metrics -> 200 text/plain; version=0.0.4, or 503
 * before the first snapshot. GET or HEAD /healthz -> 200 "ok", or 503 and a
 * one-line reason: the one the loop gave, "starting" before the first
 * snapshot, or "stalled" when the loop has not published for
 * stale_after_ms. A static document: 200 with an ETag and "Cache-Control:
 * no-cache" (304 to a matching If-None-Match). A dynamic document: like
 * /metrics (fresh wait, "no-store"), 503 until its first put. Another
 * path: 404; another method: 405 (Allow: GET, HEAD); a GET with a body:
 * 400. Request bodies are never read. The connection count, per-connection
 * memory (headers) and idle time are small and bounded; connections are
 * kept alive between requests. Every response carries
 * X-Content-Type-Options: nosniff, X-Frame-Options: DENY, Referrer-Policy:
 * no-referrer and a Content-Security-Policy allowing only the server's own
 * scripts, styles and fetches.
 *
 * Access. With opts.token set, every path except /healthz answers 401
 * unless the request carries the token: "Authorization: Bearer TOKEN",
 * HTTP basic with TOKEN as the password (any user name), the query
 * parameter ?token=TOKEN (the answer then sets an HttpOnly, SameSite=Strict
 * cookie holding it, so that a page opened once with ?token= can load its
 * scripts and poll without it), or that cookie. Tokens are compared in
 * constant time. With opts.tls_cert_pem and tls_key_pem the endpoint speaks
 * only HTTPS (libmicrohttpd with GnuTLS; see tb_httpd_tls_supported).
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
    const char *token;            /* NULL or "": no access control; else required (copied) */
    const char *tls_cert_pem;     /* with tls_key_pem: HTTPS with this PEM certificate (chain), copied */
    const char *tls_key_pem;      /* PEM private key, copied (and wiped when freed) */
} tb_httpd_opts_t;

/* Fills o with the defaults above (no token, no TLS). */
void tb_httpd_opts_init(tb_httpd_opts_t *o);

/* Returns 1 if this libmicrohttpd can serve HTTPS, else 0. */
int tb_httpd_tls_supported(void);

/* Binds host (an IPv4 or IPv6 literal; NULL: 127.0.0.1) on port (0: a
 * port chosen by the kernel, see tb_httpd_port) and starts serving; opts may
 * be NULL for the defaults. Returns TB_OK, TB_ERR_INVALID (bad address or
 * port, TLS asked of a libmicrohttpd without it, only one of the TLS
 * PEMs), TB_ERR_IO (socket, bind, listen or libmicrohttpd failure -- a PEM
 * GnuTLS refuses among them; err says which, e.g. "http 127.0.0.1:9740:
 * bind: Address already in use") or TB_ERR_NOMEM. */
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

/* Serves body (len bytes of storage that outlives self, e.g. compiled into
 * the binary: not copied) at path (e.g. "/" or "/console.js", at most 63
 * bytes) as type. Returns TB_OK, TB_ERR_INVALID (bad path or type, path
 * already served) or TB_ERR_NOMEM (no room: at most 16 documents). */
tb_err_t tb_httpd_add_static(tb_httpd_t *self, const char *path, const char *type, const void *body,
                             size_t len);

/* For the loop: replaces the dynamic document at path with a copy of body
 * (len bytes) served as type; the first call declares it. body NULL
 * declares it without content (503 until the next put). Call it before
 * tb_httpd_publish(): a request waiting for a fresh snapshot is woken by
 * the publish. Returns TB_OK, TB_ERR_INVALID (bad path or type, path
 * served as a static document) or TB_ERR_NOMEM (the old content is kept).
 * NULL-safe (TB_OK). */
tb_err_t tb_httpd_put(tb_httpd_t *self, const char *path, const char *type, const char *body, size_t len);

/* 1 if the endpoint speaks HTTPS, 0 if plain HTTP (or self is NULL). */
int tb_httpd_tls(const tb_httpd_t *self);

#endif
