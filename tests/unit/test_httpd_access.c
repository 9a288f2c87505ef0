/* test_httpd_access.c -- what the HTTP endpoint serves besides /metrics and
 * /healthz, and who may read it: static documents (type, ETag, 304, HEAD),
 * dynamic documents put by the loop (503 until the first put, fresh wait),
 * security headers on every answer, the access token (bearer, basic,
 * ?token= and its cookie; wrong, prefix, longer and empty tokens refused;
 * /healthz always open), bad options; and the hub's http.token /
 * http.tls_cert / http.tls_key keys with the rule that a non-loopback
 * http.listen needs a token. */
#define _GNU_SOURCE        /* strcasestr */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "config.h"
#include "httpd.h"
#include "tbtest.h"

#define TOKEN "Tok-en_0123456789.abc~"

typedef struct {
    int status;                   /* 0: no HTTP answer */
    char head[4096];
    char *body;
    size_t body_len;
} resp_t;

/* GET (or method) path with extra header lines (each ending in \r\n) on a
 * new connection to 127.0.0.1:port; reads the whole answer. */
static void request(int port, const char *method, const char *path, const char *headers, resp_t *r)
{
    char raw[2048];
    memset(r, 0, sizeof *r);
    int n = snprintf(raw, sizeof raw, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s\r\n", method,
                     path, headers ? headers : "");
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct timeval tv = { 5, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        CHECK_MSG(0, "connect: %s", strerror(errno));
        if (fd >= 0) close(fd);
        return;
    }
    CHECK(send(fd, raw, (size_t)n, MSG_NOSIGNAL) == n);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    for (ssize_t got; buf && len < cap && (got = recv(fd, buf + len, cap - len, 0)) > 0;) len += (size_t)got;
    close(fd);
    if (!buf) return;
    buf[len] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.", 7) == 0 && end) {
        r->status = atoi(buf + 9);
        snprintf(r->head, sizeof r->head, "%.*s", (int)(end - buf), buf);
        r->body_len = len - (size_t)(end + 4 - buf);
        r->body = strdup(end + 4);
    }
    free(buf);
}

static void resp_free(resp_t *r)
{
    free(r->body);
    r->body = NULL;
}

static int has(const resp_t *r, const char *line)
{
    return strcasestr(r->head, line) != NULL;
}

static int secured(const resp_t *r)
{
    return has(r, "X-Content-Type-Options: nosniff") && has(r, "X-Frame-Options: DENY") &&
           has(r, "Content-Security-Policy: default-src 'self'") && has(r, "Referrer-Policy: no-referrer");
}

static tb_httpd_t *start(const char *token, int *port)
{
    tb_httpd_opts_t o;
    tb_httpd_opts_init(&o);
    o.fresh_wait_ms = 0;
    o.token = token;
    tb_httpd_t *h = NULL;
    char err[256] = "";
    CHECK_MSG(tb_httpd_new("127.0.0.1", 0, &o, &h, err, sizeof err) == TB_OK, "%s", err);
    *port = tb_httpd_port(h);
    return h;
}

static const char page[] = "<!doctype html><p>hello</p>\n";

static void test_documents(void)
{
    int port;
    tb_httpd_t *h = start(NULL, &port);
    if (!h) return;
    resp_t r;
    CHECK(tb_httpd_add_static(h, "/", "text/html; charset=utf-8", page, sizeof page - 1) == TB_OK);
    CHECK(tb_httpd_add_static(h, "/a.js", "text/javascript", "x()", 3) == TB_OK);
    CHECK(tb_httpd_add_static(h, "/", "text/html", page, 1) == TB_ERR_INVALID);        /* taken */
    static const char *const badpaths[] = { "", "x", "/metrics", "/healthz", "/a b", "/a?b", "/a#b", "/%41", NULL };
    for (int i = 0; badpaths[i]; i++)
        CHECK_MSG(tb_httpd_add_static(h, badpaths[i], "text/plain", "x", 1) == TB_ERR_INVALID, "%s", badpaths[i]);
    CHECK(tb_httpd_add_static(h, "/b", "", "x", 1) == TB_ERR_INVALID);
    CHECK(tb_httpd_add_static(h, "/b", "text/plain\r\nX-Evil: 1", "x", 1) == TB_ERR_INVALID);
    CHECK(tb_httpd_add_static(NULL, "/b", "text/plain", "x", 1) == TB_ERR_INVALID);

    request(port, "GET", "/", NULL, &r);
    CHECK(r.status == 200 && r.body && strcmp(r.body, page) == 0);
    CHECK(has(&r, "Content-Type: text/html; charset=utf-8") && has(&r, "Cache-Control: no-cache") && secured(&r));
    char etag[64] = "", hdr[128];
    const char *e = strcasestr(r.head, "ETag: ");
    if (e) sscanf(e + 6, "%63[^\r\n]", etag);
    CHECK_MSG(etag[0] == '"' && strlen(etag) == 18, "ETag [%s]", etag);
    resp_free(&r);
    snprintf(hdr, sizeof hdr, "If-None-Match: %s\r\n", etag);
    request(port, "GET", "/", hdr, &r);
    CHECK_MSG(r.status == 304 && r.body_len == 0 && has(&r, etag), "%d", r.status);
    resp_free(&r);
    request(port, "GET", "/", "If-None-Match: \"0000000000000000\"\r\n", &r);
    CHECK(r.status == 200);
    resp_free(&r);
    request(port, "HEAD", "/a.js", NULL, &r);
    CHECK(r.status == 200 && r.body_len == 0 && has(&r, "Content-Length: 3"));
    resp_free(&r);
    request(port, "GET", "/a.js?v=1", NULL, &r);                 /* a query string is ignored */
    CHECK(r.status == 200 && r.body && strcmp(r.body, "x()") == 0);
    resp_free(&r);

    /* a dynamic document: declared, 503, then what the loop put */
    CHECK(tb_httpd_put(h, "/api/status", "application/json", NULL, 0) == TB_OK);
    request(port, "GET", "/api/status", NULL, &r);
    CHECK(r.status == 503 && secured(&r));
    resp_free(&r);
    CHECK(tb_httpd_put(h, "/api/status", "application/json", "{\"a\":1}", 7) == TB_OK);
    CHECK(tb_httpd_publish(h, "m 1\n", 4, 1, NULL) == TB_OK);
    request(port, "GET", "/api/status", NULL, &r);
    CHECK(r.status == 200 && r.body && strcmp(r.body, "{\"a\":1}") == 0);
    CHECK(has(&r, "Content-Type: application/json") && has(&r, "Cache-Control: no-store") && secured(&r));
    resp_free(&r);
    CHECK(tb_httpd_put(h, "/api/status", "application/json", "{\"a\":22}", 8) == TB_OK);
    request(port, "GET", "/api/status", NULL, &r);
    CHECK(r.status == 200 && r.body && strcmp(r.body, "{\"a\":22}") == 0);
    resp_free(&r);
    CHECK(tb_httpd_put(h, "/", "text/html", "x", 1) == TB_ERR_INVALID);   /* a static path */
    CHECK(tb_httpd_put(h, "/metrics", "text/plain", "x", 1) == TB_ERR_INVALID);
    CHECK(tb_httpd_put(NULL, "/x", "text/plain", "x", 1) == TB_OK);

    /* every answer carries the security headers; other paths 404 */
    request(port, "GET", "/metrics", NULL, &r);
    CHECK(r.status == 200 && secured(&r));
    resp_free(&r);
    request(port, "GET", "/nope", NULL, &r);
    CHECK(r.status == 404 && secured(&r));
    resp_free(&r);
    request(port, "POST", "/api/status", NULL, &r);
    CHECK(r.status == 405 && secured(&r));
    resp_free(&r);

    /* at most 16 documents */
    int added = 0;
    for (int i = 0; i < 20; i++) {
        char p[16];
        snprintf(p, sizeof p, "/f%d", i);
        if (tb_httpd_add_static(h, p, "text/plain", "x", 1) == TB_OK) added++;
        else CHECK(tb_httpd_add_static(h, p, "text/plain", "x", 1) == TB_ERR_NOMEM);
    }
    CHECK_MSG(added == 16 - 3, "added %d", added);
    CHECK(tb_httpd_tls(h) == 0 && tb_httpd_tls(NULL) == 0);
    tb_httpd_destroy(&h);
}

static void expect(int port, const char *path, const char *headers, int want, const char *what)
{
    resp_t r;
    request(port, "GET", path, headers, &r);
    CHECK_MSG(r.status == want, "%s: %s: %d, want %d", what, path, r.status, want);
    if (want == 401) CHECK(has(&r, "WWW-Authenticate: Bearer realm=\"tongban\"") && secured(&r));
    resp_free(&r);
}

static void test_token(void)
{
    int port;
    tb_httpd_t *h = start(TOKEN, &port);
    if (!h) return;
    CHECK(tb_httpd_add_static(h, "/", "text/html; charset=utf-8", page, sizeof page - 1) == TB_OK);
    CHECK(tb_httpd_put(h, "/api/status", "application/json", "{}", 2) == TB_OK);
    CHECK(tb_httpd_publish(h, "m 1\n", 4, 1, NULL) == TB_OK);
    static const char *const paths[] = { "/", "/api/status", "/metrics", "/nope", NULL };
    for (int i = 0; paths[i]; i++) {
        int found = strcmp(paths[i], "/nope") != 0 ? 200 : 404;
        expect(port, paths[i], NULL, 401, "no credentials");
        expect(port, paths[i], "Authorization: Bearer " TOKEN "\r\n", found, "bearer");
        expect(port, paths[i], "Authorization: bearer  " TOKEN "\r\n", found, "bearer, any case, spaces");
        expect(port, paths[i], "Authorization: Bearer " TOKEN "x\r\n", 401, "longer");
        expect(port, paths[i], "Authorization: Bearer Tok-en_0123456789.abc\r\n", 401, "prefix");
        expect(port, paths[i], "Authorization: Bearer Tok-en_0123456789.abX~\r\n", 401, "one byte off");
        expect(port, paths[i], "Authorization: Bearer \r\n", 401, "empty");
        expect(port, paths[i], "Authorization: Token " TOKEN "\r\n", 401, "another scheme");
        /* basic: any user, the token as the password ("op:" TOKEN in base64) */
        expect(port, paths[i], "Authorization: Basic b3A6VG9rLWVuXzAxMjM0NTY3ODkuYWJjfg==\r\n", found, "basic");
        expect(port, paths[i], "Authorization: Basic b3A6VG9rLWVuXzAxMjM0NTY3ODkuYWJj\r\n", 401, "basic prefix");
        expect(port, paths[i], "Authorization: Basic !!!!\r\n", 401, "basic garbage");
        expect(port, paths[i], "Cookie: tb_token=" TOKEN "\r\n", found, "cookie");
        expect(port, paths[i], "Cookie: other=1; tb_token=" TOKEN "x\r\n", 401, "wrong cookie");
    }
    /* ?token= works and sets the cookie */
    resp_t r;
    request(port, "GET", "/?token=" TOKEN, NULL, &r);
    CHECK(r.status == 200 && r.body && strcmp(r.body, page) == 0);
    CHECK_MSG(has(&r, "Set-Cookie: tb_token=" TOKEN "; Path=/; HttpOnly; SameSite=Strict\r") ||
              has(&r, "Set-Cookie: tb_token=" TOKEN "; Path=/; HttpOnly; SameSite=Strict"), "%s", r.head);
    CHECK(!has(&r, "Secure"));
    resp_free(&r);
    request(port, "GET", "/api/status?token=" TOKEN "&x=1", NULL, &r);
    CHECK(r.status == 200 && has(&r, "Set-Cookie: tb_token="));
    resp_free(&r);
    request(port, "GET", "/api/status", "Authorization: Bearer " TOKEN "\r\n", &r);
    CHECK(r.status == 200 && !has(&r, "Set-Cookie"));            /* only a URL token becomes a cookie */
    resp_free(&r);
    expect(port, "/?token=Tok-en_0123456789.abc", NULL, 401, "query prefix");
    expect(port, "/?token=", NULL, 401, "empty query");
    /* /healthz stays open */
    request(port, "GET", "/healthz", NULL, &r);
    CHECK(r.status == 200 && r.body && strcmp(r.body, "ok\n") == 0);
    resp_free(&r);
    tb_httpd_destroy(&h);
}

static void test_bad_opts(void)
{
    tb_httpd_opts_t o;
    tb_httpd_t *h = NULL;
    char err[512] = "";
    tb_httpd_opts_init(&o);
    CHECK(o.token == NULL && o.tls_cert_pem == NULL && o.tls_key_pem == NULL);
    o.token = "has space";
    CHECK(tb_httpd_new("127.0.0.1", 0, &o, &h, err, sizeof err) == TB_ERR_INVALID && !h);
    CHECK_MSG(strstr(err, "token"), "%s", err);
    o.token = "";                                          /* "" is no token */
    CHECK(tb_httpd_new("127.0.0.1", 0, &o, &h, err, sizeof err) == TB_OK && h);
    tb_httpd_destroy(&h);
    o.tls_cert_pem = "-----BEGIN CERTIFICATE-----\n";
    CHECK(tb_httpd_new("127.0.0.1", 0, &o, &h, err, sizeof err) == TB_ERR_INVALID && !h);
    CHECK_MSG(strstr(err, "TLS") || strstr(err, "without TLS"), "%s", err);
    o.tls_key_pem = "-----BEGIN PRIVATE KEY-----\nnot a key\n";
    tb_err_t rc = tb_httpd_new("127.0.0.1", 0, &o, &h, err, sizeof err);
    if (tb_httpd_tls_supported())
        CHECK_MSG(rc == TB_ERR_IO && !h && strstr(err, "TLS certificate or key"), "%d %s", rc, err);
    else
        CHECK_MSG(rc == TB_ERR_INVALID && strstr(err, "without TLS"), "%s", err);
    tb_httpd_destroy(&h);
}

/* ---- the hub's keys ---- */

static char tmp[512];

#define HUB_BASE                                                                              \
    "hub:\n"                                                                                  \
    "  listen: tcp://127.0.0.1:7400\n"                                                        \
    "  curve_secret: /x/s\n"                                                                  \
    "  ca_certificate: /x/ca.pem\n"                                                           \
    "  data_dir: /x/d\n"                                                                      \
    "nodes:\n"                                                                                \
    "  - {id: n1, curve_public: 'bQJ4%-NXD^S<J)Qo34%/LL5<12yCsdHeeepL@&q*', certificate: /x/n1.pem}\n"

/* Loads HUB_BASE + http; want NULL: valid, else the only error is
 * "PATH:" want. */
static void hub_case(const char *http, const char *want)
{
    char path[1024], text[2048];
    snprintf(path, sizeof path, "%s/hub.yaml", tmp);
    snprintf(text, sizeof text, "%s%s", HUB_BASE, http);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
    tb_hub_config_t cfg;
    tb_config_errors_t errs = { 0 };
    tb_err_t rc = tb_hub_config_load(path, &cfg, &errs);
    if (!want) {
        CHECK_MSG(rc == TB_OK && errs.count == 0, "%s: %s", http, errs.count ? errs.lines[0] : tb_strerror(rc));
    } else {
        char full[1200];
        snprintf(full, sizeof full, "%s:%s", path, want);
        CHECK_MSG(rc == TB_ERR_CONFIG && errs.count == 1 && strncmp(errs.lines[0], full, strlen(full)) == 0,
                  "%s: got %s, want %s", http, errs.count ? errs.lines[0] : "no error", full);
    }
    tb_config_errors_free(&errs);
    tb_hub_config_free(&cfg);
}

static void test_config(void)
{
    snprintf(tmp, sizeof tmp, "%s", tbtest_tmpdir("httpd-access"));
    hub_case("", NULL);
    hub_case("http:\n  listen: 127.0.0.1:9740\n", NULL);
    hub_case("http:\n  listen: 127.8.9.10:9740\n", NULL);
    hub_case("http:\n  listen: '[::1]:9740'\n", NULL);
    hub_case("http:\n  listen: '[::ffff:127.0.0.1]:9740'\n", NULL);
    hub_case("http:\n  listen: 9740\n", NULL);
    hub_case("http:\n  listen: 9740\n  token: 0123456789abcdef\n", NULL);
    hub_case("http:\n  listen: 0.0.0.0:9740\n  token: 0123456789abcdef\n", NULL);
    hub_case("http:\n  listen: 0.0.0.0:9740\n",
             "9: http.token: required when http.listen (0.0.0.0:9740) is not a loopback address");
    hub_case("http:\n  listen: 10.1.2.3:9740\n", "9: http.token: required when http.listen");
    hub_case("http:\n  listen: '[::]:9740'\n", "9: http.token: required when http.listen");
    hub_case("http:\n  listen: '[::ffff:10.0.0.1]:9740'\n", "9: http.token: required when http.listen");
    hub_case("http:\n  token: ''\n  listen: 0.0.0.0:9740\n", "10: http.token: required when http.listen");
    hub_case("http:\n  listen: 0.0.0.0:9740\n  token:\n", "9: http.token: required when http.listen");
    /* a bad token is reported once, as bad */
    hub_case("http:\n  listen: 0.0.0.0:9740\n  token: short\n", "10: http.token: expected 16 to 256 characters");
    hub_case("http:\n  token: '0123456789abcdef 0'\n", "9: http.token: expected 16 to 256 characters");
    hub_case("http:\n  token: '0123456789abcdef+/'\n", "9: http.token: expected 16 to 256 characters");
    hub_case("http:\n  token: [a]\n", "9: http.token: expected a string");
    {
        char http[400], t[258];
        memset(t, 'a', 257);
        t[257] = '\0';
        snprintf(http, sizeof http, "http:\n  token: %s\n", t);
        hub_case(http, "9: http.token: longer than 256 characters");
        t[256] = '\0';
        snprintf(http, sizeof http, "http:\n  token: %s\n", t);
        hub_case(http, NULL);
    }
    /* TLS takes both files */
    hub_case("http:\n  listen: 9740\n  tls_cert: /x/c.pem\n  tls_key: /x/k.pem\n", NULL);
    hub_case("http:\n  listen: 9740\n  tls_cert: /x/c.pem\n", "10: http.tls_key: required with http.tls_cert");
    hub_case("http:\n  listen: 9740\n  tls_key: /x/k.pem\n", "10: http.tls_cert: required with http.tls_key");
    hub_case("http:\n  tlscert: x\n", "9: http.tlscert: unknown key");
    hub_case("http:\n  listen: 9740\n  tls_cert: ''\n  tls_key:\n", NULL);      /* empty: plain HTTP */
    hub_case("http:\n  tls_cert: ''\n  tls_key: /x/k.pem\n", "10: http.tls_cert: required with http.tls_key");
    {
        char path[1024];
        tb_hub_config_t cfg;
        snprintf(path, sizeof path, "%s/hub.yaml", tmp);
        hub_case("http:\n  listen: 9740\n  token: 0123456789abcdef\n  tls_cert: c.pem\n  tls_key: k.pem\n", NULL);
        CHECK(tb_hub_config_load(path, &cfg, NULL) == TB_OK);
        CHECK(strcmp(cfg.http_token, "0123456789abcdef") == 0);
        char want[1100];
        snprintf(want, sizeof want, "%s/c.pem", tmp);              /* relative to the file */
        CHECK_MSG(strcmp(cfg.http_tls_cert, want) == 0, "%s", cfg.http_tls_cert);
        tb_hub_config_free(&cfg);
    }
    /* the shipped example stays closed */
    {
        tb_hub_config_t hub;
        CHECK(tb_hub_config_load(TB_SOURCE_DIR "/config/hub.yaml", &hub, NULL) == TB_OK && hub.http_token[0] == '\0' &&
              hub.http_tls_cert[0] == '\0');
        tb_hub_config_free(&hub);
    }
    CHECK(tb_config_loopback_host("127.0.0.1") && tb_config_loopback_host("127.255.0.9") &&
          tb_config_loopback_host("::1") && tb_config_loopback_host("::ffff:127.0.0.2"));
    CHECK(!tb_config_loopback_host("0.0.0.0") && !tb_config_loopback_host("::") &&
          !tb_config_loopback_host("128.0.0.1") && !tb_config_loopback_host("::ffff:10.0.0.1") &&
          !tb_config_loopback_host("localhost") && !tb_config_loopback_host("") && !tb_config_loopback_host(NULL));
    tbtest_rmtree(tmp);
}

int main(void)
{
    test_config();
    test_documents();
    test_token();
    test_bad_opts();
    return tbtest_done("test_httpd_access");
}
