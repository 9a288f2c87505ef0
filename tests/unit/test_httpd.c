/* test_httpd.c -- the /metrics + /healthz endpoint over a raw socket client:
 * status codes (200, 503, 404, 405), headers, HEAD, the snapshot handed
 * over by a "loop" thread and waited for by a scrape, staleness, the
 * connection limit and idle timeout, oversized headers, bind errors and
 * re-binding after a stop; and the http.listen configuration key. */
#define _GNU_SOURCE        /* strcasestr */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "httpd.h"
#include "tbtest.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* Connects to host:port (IPv4 or IPv6 literal), 5 s receive timeout. */
static int dial(const char *host, int port)
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
    } else {
        inet_pton(AF_INET6, host, &a6->sin6_addr);
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        sl = sizeof *a6;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = { 5, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&ss, sl) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

typedef struct {
    int status;                   /* 0: no HTTP answer */
    char head[4096];
    char *body;
    size_t body_len;
} resp_t;

/* Reads the whole answer on fd (until EOF) into r. */
static void slurp(int fd, resp_t *r)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap + 1);
    memset(r, 0, sizeof *r);
    if (!buf) return;
    for (;;) {
        if (n == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) break;
            buf = nb;
            cap *= 2;
        }
        ssize_t got = recv(fd, buf + n, cap - n, 0);
        if (got <= 0) break;
        n += (size_t)got;
    }
    buf[n] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.", 7) == 0 && end) {
        r->status = atoi(buf + 9);
        size_t hl = (size_t)(end - buf);
        snprintf(r->head, sizeof r->head, "%.*s", (int)(hl < sizeof r->head ? hl : sizeof r->head - 1), buf);
        r->body_len = n - hl - 4;
        r->body = malloc(r->body_len + 1);
        if (r->body) {
            memcpy(r->body, end + 4, r->body_len);
            r->body[r->body_len] = '\0';
        }
    }
    free(buf);
}

/* Sends raw on a new connection and reads the answer. */
static void request_raw(const char *host, int port, const char *raw, size_t len, resp_t *r)
{
    memset(r, 0, sizeof *r);
    int fd = dial(host, port);
    CHECK(fd >= 0);
    if (fd < 0) return;
    size_t off = 0;
    while (off < len) {
        ssize_t w = send(fd, raw + off, len - off, MSG_NOSIGNAL);
        if (w <= 0) break;
        off += (size_t)w;
    }
    slurp(fd, r);
    close(fd);
}

static void request(int port, const char *method, const char *path, resp_t *r)
{
    char raw[512];
    int n = snprintf(raw, sizeof raw, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", method, path);
    request_raw("127.0.0.1", port, raw, (size_t)n, r);
}

static void resp_free(resp_t *r)
{
    free(r->body);
    r->body = NULL;
}

static int has_header(const resp_t *r, const char *line)
{
    return strcasestr(r->head, line) != NULL;
}

/* ---- tests ---- */

static void test_basics(void)
{
    tb_httpd_opts_t o;
    tb_httpd_opts_init(&o);
    CHECK(o.max_connections == 8 && o.timeout_s == 5 && o.fresh_wait_ms == 250);
    o.fresh_wait_ms = 0;                    /* no loop thread here */
    tb_httpd_t *h = NULL;
    char err[256] = "";
    CHECK_MSG(tb_httpd_new("127.0.0.1", 0, &o, &h, err, sizeof err) == TB_OK, "%s", err);
    if (!h) return;
    int port = tb_httpd_port(h);
    CHECK(port > 0 && port < 65536);
    resp_t r;

    /* before the first snapshot */
    CHECK(tb_httpd_due(h) == 1);
    request(port, "GET", "/metrics", &r);
    CHECK(r.status == 503);
    resp_free(&r);
    request(port, "GET", "/healthz", &r);
    CHECK(r.status == 503 && r.body && strncmp(r.body, "starting", 8) == 0);
    resp_free(&r);

    const char *text = "# HELP a_total A.\n# TYPE a_total counter\na_total 1\n";
    CHECK(tb_httpd_publish(h, text, strlen(text), 1, NULL) == TB_OK);
    CHECK(tb_httpd_due(h) == 0);            /* just published, nobody waiting */
    request(port, "GET", "/metrics", &r);
    CHECK(r.status == 200);
    CHECK(r.body && strcmp(r.body, text) == 0);
    CHECK(has_header(&r, "Content-Type: text/plain; version=0.0.4; charset=utf-8"));
    CHECK(has_header(&r, "Cache-Control: no-store"));
    resp_free(&r);
    request(port, "GET", "/metrics?name[]=a_total", &r);    /* a query string is ignored */
    CHECK(r.status == 200 && r.body && strcmp(r.body, text) == 0);
    resp_free(&r);
    request(port, "HEAD", "/metrics", &r);
    CHECK(r.status == 200 && r.body_len == 0);
    resp_free(&r);
    request(port, "GET", "/healthz", &r);
    CHECK(r.status == 200 && r.body && strcmp(r.body, "ok\n") == 0);
    resp_free(&r);

    /* unhealthy: 503 and the reason, on one line */
    CHECK(tb_httpd_publish(h, text, strlen(text), 0, "journal not writable\nsecond line") == TB_OK);
    request(port, "GET", "/healthz", &r);
    CHECK(r.status == 503 && r.body && strcmp(r.body, "journal not writable\n") == 0);
    resp_free(&r);
    request(port, "GET", "/metrics", &r);          /* metrics are still served */
    CHECK(r.status == 200);
    resp_free(&r);

    /* other paths and methods */
    static const char *const paths[] = { "/", "/metric", "/metrics/", "/healthz/x", "/../metrics", "//metrics", NULL };
    for (int i = 0; paths[i]; i++) {
        request(port, "GET", paths[i], &r);
        CHECK_MSG(r.status == 404, "%s: %d", paths[i], r.status);
        resp_free(&r);
    }
    static const char *const methods[] = { "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", NULL };
    for (int i = 0; methods[i]; i++) {
        request(port, methods[i], "/metrics", &r);
        CHECK_MSG(r.status == 405, "%s: %d", methods[i], r.status);
        CHECK(has_header(&r, "Allow: GET, HEAD"));
        resp_free(&r);
    }
    /* a POST with a body that is never read */
    {
        char raw[8192];
        int n = snprintf(raw, sizeof raw, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n");
        memset(raw + n, 'x', 100);
        request_raw("127.0.0.1", port, raw, (size_t)n + 100, &r);
        CHECK(r.status == 405);
        resp_free(&r);
    }
    /* a GET with a body is refused */
    {
        const char *g = "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
        request_raw("127.0.0.1", port, g, strlen(g), &r);
        CHECK_MSG(r.status == 400, "%d", r.status);
        resp_free(&r);
    }
    /* garbage and oversized headers get no 200 */
    request_raw("127.0.0.1", port, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11, &r);   /* a TLS hello */
    CHECK(r.status != 200);
    resp_free(&r);
    {
        size_t big = 64 * 1024;
        char *raw = malloc(big + 256);
        CHECK(raw != NULL);
        if (raw) {
            int n = snprintf(raw, 256, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ");
            memset(raw + n, 'a', big);
            memcpy(raw + n + big, "\r\n\r\n", 4);
            request_raw("127.0.0.1", port, raw, (size_t)n + big + 4, &r);
            CHECK_MSG(r.status != 200, "oversized header answered %d", r.status);
            resp_free(&r);
            free(raw);
        }
    }
    /* a large snapshot arrives whole */
    {
        size_t n = 2 * 1024 * 1024;
        char *t = malloc(n + 1);
        CHECK(t != NULL);
        if (t) {
            for (size_t i = 0; i < n; i++) t[i] = (char)('a' + i % 26);
            t[n - 1] = '\n';
            CHECK(tb_httpd_publish(h, t, n, 1, NULL) == TB_OK);
            request(port, "GET", "/metrics", &r);
            CHECK(r.status == 200 && r.body_len == n && r.body && memcmp(r.body, t, n) == 0);
            resp_free(&r);
            free(t);
        }
    }

    /* the port is taken while it runs; free again once stopped */
    tb_httpd_t *h2 = NULL;
    CHECK(tb_httpd_new("127.0.0.1", port, &o, &h2, err, sizeof err) == TB_ERR_IO && h2 == NULL);
    CHECK_MSG(strstr(err, "Address already in use") && strstr(err, "bind"), "%s", err);
    tb_httpd_destroy(&h);
    CHECK(h == NULL);
    tb_httpd_destroy(&h);
    tb_httpd_destroy(NULL);
    CHECK_MSG(tb_httpd_new("127.0.0.1", port, &o, &h2, err, sizeof err) == TB_OK, "rebind: %s", err);
    tb_httpd_destroy(&h2);

    /* bad arguments */
    CHECK(tb_httpd_new("localhost", 0, &o, &h2, err, sizeof err) == TB_ERR_INVALID && h2 == NULL);
    CHECK(tb_httpd_new("127.0.0.1", 70000, &o, &h2, err, sizeof err) == TB_ERR_INVALID);
    CHECK(tb_httpd_new("127.0.0.1", -1, &o, &h2, err, sizeof err) == TB_ERR_INVALID);
    CHECK(tb_httpd_new("192.0.2.1", 0, &o, &h2, err, sizeof err) == TB_ERR_IO);   /* not a local address */
    CHECK_MSG(strstr(err, "192.0.2.1") != NULL, "%s", err);
    CHECK(tb_httpd_due(NULL) == 0 && tb_httpd_publish(NULL, "x", 1, 1, NULL) == TB_OK && tb_httpd_port(NULL) == 0);
}

/* The daemon's loop, played by a thread: publishes "gen N" whenever due. */
typedef struct {
    tb_httpd_t *h;
    int stop;                     /* both accessed with __atomic builtins */
    int gen;
} loop_t;

static void *loop_main(void *arg)
{
    loop_t *l = arg;
    while (!__atomic_load_n(&l->stop, __ATOMIC_SEQ_CST)) {
        if (tb_httpd_due(l->h)) {
            char t[64];
            int n = snprintf(t, sizeof t, "gen %d\n", __atomic_add_fetch(&l->gen, 1, __ATOMIC_SEQ_CST));
            tb_httpd_publish(l->h, t, (size_t)n, 1, NULL);
        }
        sleep_ms(10);
    }
    return NULL;
}

typedef struct {
    int port, status;
} scrape_t;

/* A scrape from another thread (no CHECK here: the tally is not shared). */
static void *scrape_main(void *arg)
{
    scrape_t *s = arg;
    resp_t r;
    const char *req = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    int fd = dial("127.0.0.1", s->port);
    s->status = 0;
    if (fd < 0) return NULL;
    if (send(fd, req, strlen(req), MSG_NOSIGNAL) == (ssize_t)strlen(req)) {
        slurp(fd, &r);
        s->status = r.status;
        resp_free(&r);
    }
    close(fd);
    return NULL;
}

static void test_fresh(void)
{
    tb_httpd_opts_t o;
    tb_httpd_opts_init(&o);
    o.publish_every_ms = 60000;             /* only the first snapshot and on demand */
    o.fresh_wait_ms = 2000;
    tb_httpd_t *h = NULL;
    char err[256];
    CHECK_MSG(tb_httpd_new("127.0.0.1", 0, &o, &h, err, sizeof err) == TB_OK, "%s", err);
    if (!h) return;
    int port = tb_httpd_port(h);
    loop_t l = { h, 0, 0 };
    pthread_t th;
    CHECK(pthread_create(&th, NULL, loop_main, &l) == 0);
    while (__atomic_load_n(&l.gen, __ATOMIC_SEQ_CST) < 1) sleep_ms(5);
    sleep_ms(100);
    CHECK(__atomic_load_n(&l.gen, __ATOMIC_SEQ_CST) == 1);   /* nothing more until asked */
    resp_t r;
    for (int i = 2; i <= 4; i++) {
        double t0 = now_s();
        request(port, "GET", i == 3 ? "/healthz" : "/metrics", &r);
        double dt = now_s() - t0;
        char want[32];
        snprintf(want, sizeof want, i == 3 ? "ok\n" : "gen %d\n", i);
        CHECK_MSG(r.status == 200 && r.body && strcmp(r.body, want) == 0, "%d: %s", r.status, r.body ? r.body : "");
        CHECK_MSG(dt < 1.0, "a fresh snapshot took %.3f s", dt);
        resp_free(&r);
    }
    CHECK(__atomic_load_n(&l.gen, __ATOMIC_SEQ_CST) == 4);
    /* several scrapes at once are all answered */
    pthread_t cl[6];
    scrape_t sc[6];
    for (int i = 0; i < 6; i++) {
        sc[i].port = port;
        sc[i].status = -1;
        CHECK(pthread_create(&cl[i], NULL, scrape_main, &sc[i]) == 0);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(cl[i], NULL);
        CHECK_MSG(sc[i].status == 200, "concurrent scrape %d: %d", i, sc[i].status);
    }
    __atomic_store_n(&l.stop, 1, __ATOMIC_SEQ_CST);
    pthread_join(th, NULL);

    /* no loop: the request waits fresh_wait_ms, then gets the latest snapshot */
    tb_httpd_destroy(&h);
    o.fresh_wait_ms = 300;
    o.stale_after_ms = 600;
    CHECK_MSG(tb_httpd_new("127.0.0.1", 0, &o, &h, err, sizeof err) == TB_OK, "%s", err);
    if (!h) return;
    port = tb_httpd_port(h);
    CHECK(tb_httpd_publish(h, "old 1\n", 6, 1, "") == TB_OK);
    CHECK(tb_httpd_due(h) == 0);
    double t0 = now_s();
    request(port, "GET", "/metrics", &r);
    double dt = now_s() - t0;
    CHECK(r.status == 200 && r.body && strcmp(r.body, "old 1\n") == 0);
    CHECK_MSG(dt >= 0.25 && dt < 2.0, "waited %.3f s", dt);
    resp_free(&r);
    CHECK(tb_httpd_due(h) == 1);            /* still wanted */
    sleep_ms(400);                          /* + this request's wait: ~1 s since the publish */
    request(port, "GET", "/healthz", &r);
    CHECK_MSG(r.status == 503 && r.body && strncmp(r.body, "stalled", 7) == 0, "%d %s", r.status, r.body ? r.body : "");
    resp_free(&r);
    CHECK(tb_httpd_publish(h, "new 1\n", 6, 1, "") == TB_OK);
    CHECK(tb_httpd_due(h) == 0);
    request(port, "GET", "/healthz", &r);
    CHECK(r.status == 200);
    resp_free(&r);
    tb_httpd_destroy(&h);
}

static void test_limits(void)
{
    tb_httpd_opts_t o;
    tb_httpd_opts_init(&o);
    o.max_connections = 2;
    o.timeout_s = 1;
    o.fresh_wait_ms = 0;
    tb_httpd_t *h = NULL;
    char err[256];
    CHECK_MSG(tb_httpd_new("127.0.0.1", 0, &o, &h, err, sizeof err) == TB_OK, "%s", err);
    if (!h) return;
    int port = tb_httpd_port(h);
    CHECK(tb_httpd_publish(h, "x 1\n", 4, 1, NULL) == TB_OK);

    /* two idle connections fill the server: a third is turned away */
    int a = dial("127.0.0.1", port), b = dial("127.0.0.1", port);
    CHECK(a >= 0 && b >= 0);
    sleep_ms(200);
    resp_t r;
    request(port, "GET", "/metrics", &r);
    CHECK_MSG(r.status == 0, "over the limit: %d", r.status);
    resp_free(&r);

    /* idle connections are closed after timeout_s */
    double t0 = now_s();
    char c;
    ssize_t got = recv(a, &c, 1, 0);
    double dt = now_s() - t0;
    CHECK_MSG(got == 0 || (got < 0 && errno == ECONNRESET), "idle connection not closed (%zd, %s)", got,
              got < 0 ? strerror(errno) : "");
    CHECK_MSG(dt < 4.0, "closed after %.1f s", dt);
    close(a);
    close(b);
    sleep_ms(300);
    request(port, "GET", "/metrics", &r);
    CHECK(r.status == 200);
    resp_free(&r);

    /* a keep-alive connection serves one request after the other */
    int k = dial("127.0.0.1", port);
    CHECK(k >= 0);
    if (k >= 0) {
        const char *first = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        const char *second = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        char buf[1024];
        CHECK(send(k, first, strlen(first), MSG_NOSIGNAL) == (ssize_t)strlen(first));
        size_t n = 0;
        while (n < sizeof buf - 1 && !(n > 4 && strstr(buf, "\r\n\r\nok\n"))) {
            ssize_t m = recv(k, buf + n, sizeof buf - 1 - n, 0);
            if (m <= 0) break;
            n += (size_t)m;
            buf[n] = '\0';
        }
        buf[n] = '\0';
        CHECK_MSG(strncmp(buf, "HTTP/1.1 200", 12) == 0 && strstr(buf, "\r\n\r\nok\n"), "[%s]", buf);
        CHECK(send(k, second, strlen(second), MSG_NOSIGNAL) == (ssize_t)strlen(second));
        slurp(k, &r);
        CHECK(r.status == 200 && r.body && strcmp(r.body, "x 1\n") == 0);
        resp_free(&r);
        close(k);
    }
    tb_httpd_destroy(&h);
}

static void test_ipv6(void)
{
    tb_httpd_t *h = NULL;
    char err[256];
    tb_httpd_opts_t o;
    tb_httpd_opts_init(&o);
    o.fresh_wait_ms = 0;
    if (tb_httpd_new("::1", 0, &o, &h, err, sizeof err) != TB_OK) {
        printf("test_httpd: no IPv6 loopback here, skipped (%s)\n", err);
        return;
    }
    CHECK(tb_httpd_publish(h, "v6 1\n", 5, 1, NULL) == TB_OK);
    resp_t r;
    const char *req = "GET /metrics HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n";
    request_raw("::1", tb_httpd_port(h), req, strlen(req), &r);
    CHECK(r.status == 200 && r.body && strcmp(r.body, "v6 1\n") == 0);
    resp_free(&r);
    tb_httpd_destroy(&h);
}

/* ---- http.listen in the configuration ---- */

static char tmp[512];

static void write_file(const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

#define HUB_BASE                                                                              \
    "hub:\n"                                                                                  \
    "  listen: tcp://127.0.0.1:7400\n"                                                        \
    "  curve_secret: /x/s\n"                                                                  \
    "  ca_certificate: /x/ca.pem\n"                                                           \
    "  data_dir: /x/d\n"                                                                      \
    "nodes:\n"                                                                                \
    "  - {id: n1, curve_public: 'bQJ4%-NXD^S<J)Qo34%/LL5<12yCsdHeeepL@&q*', certificate: /x/n1.pem}\n"

/* Loads HUB_BASE + extra; want_listen NULL: expects exactly the error
 * "PATH:9: http.listen: expected HOST:PORT". */
static void hub_case(const char *extra, const char *want_listen)
{
    char text[2048], path[1024];
    snprintf(text, sizeof text, "%s%s", HUB_BASE, extra);
    write_file("hub.yaml", text);
    snprintf(path, sizeof path, "%s/hub.yaml", tmp);
    tb_hub_config_t cfg;
    tb_config_errors_t errs = { 0 };
    tb_err_t rc = tb_hub_config_load(path, &cfg, &errs);
    if (want_listen) {
        CHECK_MSG(rc == TB_OK && errs.count == 0, "%s: %s", extra, errs.count ? errs.lines[0] : tb_strerror(rc));
        CHECK_MSG(strcmp(cfg.http_listen, want_listen) == 0, "%s: got \"%s\"", extra, cfg.http_listen);
    } else {
        char want[1100];
        snprintf(want, sizeof want, "%s:9: http.listen: expected HOST:PORT", path);
        CHECK_MSG(rc == TB_ERR_CONFIG && errs.count == 1 && strcmp(errs.lines[0], want) == 0, "%s: %s", extra,
                  errs.count ? errs.lines[0] : "no error");
    }
    tb_config_errors_free(&errs);
    tb_hub_config_free(&cfg);
}

static void test_config(void)
{
    snprintf(tmp, sizeof tmp, "%s", tbtest_tmpdir("httpd"));
    hub_case("", "");                                        /* absent: disabled */
    hub_case("http:\n  listen: \"\"\n", "");                 /* empty: disabled */
    hub_case("http:\n  listen:\n", "");                      /* null: disabled */
    hub_case("http:\n", "");
    hub_case("http:\n  listen: 127.0.0.1:9740\n", "127.0.0.1:9740");
    hub_case("http:\n  listen: \"9740\"\n", "9740");
    hub_case("http:\n  listen: 9740\n", "9740");
    hub_case("http:\n  listen: 0.0.0.0:1\n  token: 0123456789abcdef\n", "0.0.0.0:1");   /* not loopback: a token */
    hub_case("http:\n  listen: '[::1]:65535'\n", "[::1]:65535");
    static const char *const bad[] = {
        "localhost:9740", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "0", "65536", "':9740'",
        "'127.0.0.1:'", "1.2.3:80", "999.1.1.1:80", "'[::1]80'", "'[::1'", "'[]:80'", "'::1:80'", "'*:80'",
        "tcp://127.0.0.1:80", "127.0.0.1:80x", "' 9740'", "'+80'", "127.0.0.1:-1", NULL,
    };
    for (int i = 0; bad[i]; i++) {
        char extra[128];
        snprintf(extra, sizeof extra, "http:\n  listen: %s\n", bad[i]);
        hub_case(extra, NULL);
    }
    /* unknown keys in the section are refused like everywhere else */
    {
        char path[1024];
        write_file("hub2.yaml", HUB_BASE "http:\n  port: 80\n");
        snprintf(path, sizeof path, "%s/hub2.yaml", tmp);
        tb_hub_config_t cfg;
        tb_config_errors_t errs = { 0 };
        CHECK(tb_hub_config_load(path, &cfg, &errs) == TB_ERR_CONFIG && errs.count == 1 &&
              strstr(errs.lines[0], ":9: http.port: unknown key"));
        tb_config_errors_free(&errs);
        tb_hub_config_free(&cfg);
    }
    /* the node has the same key */
    {
        char path[1024];
        write_file("node.yaml",
                   "node: {id: n1}\n"
                   "keys: {signing_key: k, certificate: c, ca_certificate: ca, curve_secret: s, curve_public: p}\n"
                   "hub: {endpoint: 'tcp://h:1', curve_public: 'n#Xq%x<mHRN&Tc(o#E&J7zZMd-4^{vz/@{=!+<I$'}\n"
                   "postgresql: {conninfo: dbname=x}\n"
                   "http: {listen: 'localhost:1'}\n");
        snprintf(path, sizeof path, "%s/node.yaml", tmp);
        tb_node_config_t cfg;
        tb_config_errors_t errs = { 0 };
        char want[1100];
        snprintf(want, sizeof want, "%s:5: http.listen: expected HOST:PORT", path);
        CHECK(tb_node_config_load(path, &cfg, &errs) == TB_ERR_CONFIG && errs.count == 1 &&
              strcmp(errs.lines[0], want) == 0);
        tb_config_errors_free(&errs);
        tb_node_config_free(&cfg);
        write_file("node.yaml",
                   "node: {id: n1}\n"
                   "keys: {signing_key: k, certificate: c, ca_certificate: ca, curve_secret: s, curve_public: p}\n"
                   "hub: {endpoint: 'tcp://h:1', curve_public: 'n#Xq%x<mHRN&Tc(o#E&J7zZMd-4^{vz/@{=!+<I$'}\n"
                   "postgresql: {conninfo: dbname=x}\n"
                   "http: {listen: '9741'}\n");
        CHECK(tb_node_config_load(path, &cfg, &errs) == TB_OK && strcmp(cfg.http_listen, "9741") == 0);
        tb_config_errors_free(&errs);
        tb_node_config_free(&cfg);
    }
    /* the shipped examples leave it disabled */
    {
        tb_hub_config_t hub;
        tb_node_config_t node;
        CHECK(tb_hub_config_load(TB_SOURCE_DIR "/config/hub.yaml", &hub, NULL) == TB_OK && hub.http_listen[0] == '\0');
        tb_hub_config_free(&hub);
        CHECK(tb_node_config_load(TB_SOURCE_DIR "/config/node.yaml", &node, NULL) == TB_OK &&
              node.http_listen[0] == '\0');
        tb_node_config_free(&node);
    }
    /* the parser the daemons use */
    char host[64];
    int port = 0;
    CHECK(tb_config_parse_http_listen("9740", host, sizeof host, &port) == 1 && strcmp(host, "127.0.0.1") == 0 &&
          port == 9740);
    CHECK(tb_config_parse_http_listen("10.1.2.3:80", host, sizeof host, &port) == 1 && strcmp(host, "10.1.2.3") == 0 &&
          port == 80);
    CHECK(tb_config_parse_http_listen("[::1]:443", host, sizeof host, &port) == 1 && strcmp(host, "::1") == 0 &&
          port == 443);
    CHECK(tb_config_parse_http_listen("[2001:db8::1]:1", host, 4, &port) == 0);          /* host does not fit */
    CHECK(tb_config_parse_http_listen("", host, sizeof host, &port) == 0);
    CHECK(tb_config_parse_http_listen(NULL, host, sizeof host, &port) == 0);
    CHECK(tb_config_parse_http_listen("80", NULL, 0, NULL) == 1);
    tbtest_rmtree(tmp);
}

int main(void)
{
    test_config();
    test_basics();
    test_fresh();
    test_limits();
    test_ipv6();
    return tbtest_done("test_httpd");
}
