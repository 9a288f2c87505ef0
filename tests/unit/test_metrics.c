/* test_metrics.c -- the metrics registry: label escaping, value formatting,
 * exact rendering, histogram buckets / sum / count, refusal of bad names and
 * label strings, and a parse-back of everything rendered with a checker of
 * the Prometheus text format 0.0.4; also the node's metrics (metrics_node.c)
 * rendered from a node_stats_t. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "metrics_node.h"
#include "tbtest.h"

/* ---- a checker of the text format ---- */

#define MAXFAM 256

typedef struct {
    char name[128];
    char type[16];
    int has_help, has_type, closed;
} cfam_t;

typedef struct {
    cfam_t fam[MAXFAM];
    int nfam;
    int cur;                      /* index of the family whose lines are being read, -1 none */
    size_t samples;
    char err[256];
    /* histogram state of the current series */
    char hseries[512];
    double hlast;
    int hinf_seen;
    double hinf;
} checker_t;

static int cfail(checker_t *c, size_t line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int cfail(checker_t *c, size_t line, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(c->err, sizeof c->err, "line %zu: ", line);
    va_start(ap, fmt);
    vsnprintf(c->err + n, sizeof c->err - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static int is_name(const char *s, size_t n, int colon)
{
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' || (colon && ch == ':') ||
                 (i > 0 && ch >= '0' && ch <= '9');
        if (!ok) return 0;
    }
    return 1;
}

static int parse_value(const char *s, double *v)
{
    if (strcmp(s, "+Inf") == 0) { *v = INFINITY; return 0; }
    if (strcmp(s, "-Inf") == 0) { *v = -INFINITY; return 0; }
    if (strcmp(s, "NaN") == 0) { *v = NAN; return 0; }
    char *end;
    *v = strtod(s, &end);
    return end != s && *end == '\0' ? 0 : -1;
}

static cfam_t *cfam(checker_t *c, const char *name, size_t n)
{
    for (int i = 0; i < c->nfam; i++)
        if (strlen(c->fam[i].name) == n && memcmp(c->fam[i].name, name, n) == 0) return &c->fam[i];
    if (c->nfam == MAXFAM || n >= sizeof c->fam[0].name) return NULL;
    cfam_t *f = &c->fam[c->nfam++];
    memset(f, 0, sizeof *f);
    memcpy(f->name, name, n);
    return f;
}

/* Which family a sample name belongs to (histogram suffixes stripped). */
static cfam_t *owner(checker_t *c, const char *name, size_t n, const char **suffix)
{
    static const char *const sfx[] = { "_bucket", "_sum", "_count" };
    *suffix = "";
    for (int k = 0; k < 3; k++) {
        size_t l = strlen(sfx[k]);
        if (n > l && memcmp(name + n - l, sfx[k], l) == 0) {
            for (int i = 0; i < c->nfam; i++)
                if (strcmp(c->fam[i].type, "histogram") == 0 && strlen(c->fam[i].name) == n - l &&
                    memcmp(c->fam[i].name, name, n - l) == 0) {
                    *suffix = sfx[k];
                    return &c->fam[i];
                }
        }
    }
    return cfam(c, name, n);
}

/* Parses {a="x",b="y"} at *p; copies the label set without le into rest
 * and le's raw value into le. Returns 0 or -1. */
static int parse_labels(const char **pp, char *rest, size_t restlen, char *le, size_t lelen)
{
    const char *p = *pp;
    size_t ro = 0;
    rest[0] = le[0] = '\0';
    if (*p != '{') return 0;
    p++;
    char seen[16][64];
    int nseen = 0;
    while (*p != '}') {
        const char *n0 = p;
        while (*p && *p != '=') p++;
        if (*p != '=' || !is_name(n0, (size_t)(p - n0), 0) || p - n0 >= 64) return -1;
        for (int i = 0; i < nseen; i++)
            if (strlen(seen[i]) == (size_t)(p - n0) && memcmp(seen[i], n0, (size_t)(p - n0)) == 0) return -1;
        if (nseen < 16) {
            memcpy(seen[nseen], n0, (size_t)(p - n0));
            seen[nseen++][p - n0] = '\0';
        }
        int is_le = p - n0 == 2 && n0[0] == 'l' && n0[1] == 'e';
        p++;
        if (*p != '"') return -1;
        const char *v0 = ++p;
        for (; *p && *p != '"'; p++) {
            if (*p == '\n') return -1;
            if (*p == '\\') {
                if (p[1] != '\\' && p[1] != '"' && p[1] != 'n') return -1;
                p++;
            }
        }
        if (*p != '"') return -1;
        if (is_le) {
            snprintf(le, lelen, "%.*s", (int)(p - v0), v0);
        } else {
            int w = snprintf(rest + ro, restlen - ro, "%s%.*s", ro ? "," : "", (int)(p + 1 - n0), n0);
            if (w < 0 || (size_t)w >= restlen - ro) return -1;
            ro += (size_t)w;
        }
        p++;
        if (*p == ',') {
            p++;
            if (*p == '}') break;         /* a trailing comma is allowed */
        } else if (*p != '}') {
            return -1;
        }
    }
    *pp = p + 1;
    return 0;
}

/* Checks text; returns the number of samples, or -1 with c->err set. */
static long check_text(checker_t *c, const char *text)
{
    memset(c, 0, sizeof *c);
    c->cur = -1;
    size_t lineno = 0;
    const char *p = text;
    if (*text && text[strlen(text) - 1] != '\n') return cfail(c, 0, "no final newline");
    while (*p) {
        char line[4096];
        const char *nl = strchr(p, '\n');
        size_t n = (size_t)(nl - p);
        lineno++;
        if (n >= sizeof line) return cfail(c, lineno, "line too long");
        memcpy(line, p, n);
        line[n] = '\0';
        p = nl + 1;
        if (n == 0) continue;
        if (line[0] == '#') {
            char kw[8], name[256];
            int off = 0;
            if (sscanf(line, "# %7s %255s %n", kw, name, &off) < 2) continue;   /* a plain comment */
            if (strcmp(kw, "HELP") != 0 && strcmp(kw, "TYPE") != 0) continue;
            if (!is_name(name, strlen(name), 1)) return cfail(c, lineno, "bad name %s", name);
            cfam_t *f = cfam(c, name, strlen(name));
            if (!f) return cfail(c, lineno, "too many families");
            if (f->closed) return cfail(c, lineno, "%s: lines of a family are not together", name);
            int idx = (int)(f - c->fam);
            if (c->cur >= 0 && c->cur != idx) c->fam[c->cur].closed = 1;
            c->cur = idx;
            if (strcmp(kw, "HELP") == 0) {
                if (f->has_help++) return cfail(c, lineno, "%s: second HELP", name);
                for (const char *h = line + off; *h; h++)
                    if (*h == '\\' && h[1] != '\\' && h[1] != 'n') return cfail(c, lineno, "bad escape in HELP");
                    else if (*h == '\\') h++;
            } else {
                if (f->has_type++) return cfail(c, lineno, "%s: second TYPE", name);
                const char *t = line + off;
                if (strcmp(t, "counter") && strcmp(t, "gauge") && strcmp(t, "histogram") && strcmp(t, "summary") &&
                    strcmp(t, "untyped"))
                    return cfail(c, lineno, "%s: bad type %s", name, t);
                snprintf(f->type, sizeof f->type, "%s", t);
            }
            continue;
        }
        const char *q = line;
        while (*q && *q != '{' && *q != ' ') q++;
        const char *suffix;
        if (!is_name(line, (size_t)(q - line), 1)) return cfail(c, lineno, "bad sample name");
        cfam_t *f = owner(c, line, (size_t)(q - line), &suffix);
        if (!f) return cfail(c, lineno, "too many families");
        if (f->closed) return cfail(c, lineno, "%s: lines of a family are not together", f->name);
        int idx = (int)(f - c->fam);
        if (c->cur >= 0 && c->cur != idx) c->fam[c->cur].closed = 1;
        c->cur = idx;
        char rest[1024], le[64];
        if (parse_labels(&q, rest, sizeof rest, le, sizeof le) != 0) return cfail(c, lineno, "bad labels");
        if (*q != ' ') return cfail(c, lineno, "no space before the value");
        q++;
        char val[64];
        const char *sp = strchr(q, ' ');
        size_t vl = sp ? (size_t)(sp - q) : strlen(q);
        if (vl == 0 || vl >= sizeof val) return cfail(c, lineno, "bad value");
        memcpy(val, q, vl);
        val[vl] = '\0';
        double v;
        if (parse_value(val, &v) != 0) return cfail(c, lineno, "bad value %s", val);
        if (sp) {                              /* an optional timestamp: an integer */
            char *end;
            strtoll(sp + 1, &end, 10);
            if (*end) return cfail(c, lineno, "bad timestamp");
        }
        if (strcmp(f->type, "counter") == 0 && (v < 0 || isnan(v)))
            return cfail(c, lineno, "negative counter");
        if (strcmp(f->type, "histogram") == 0) {
            if (!*suffix) return cfail(c, lineno, "histogram sample without _bucket/_sum/_count");
            if (strcmp(suffix, "_bucket") == 0) {
                double b;
                if (!le[0] || parse_value(le, &b) != 0) return cfail(c, lineno, "bucket without a valid le");
                if (strcmp(rest, c->hseries) != 0 || c->hinf_seen) {
                    size_t rl = strlen(rest);
                    if (rl >= sizeof c->hseries) rl = sizeof c->hseries - 1;
                    memcpy(c->hseries, rest, rl);
                    c->hseries[rl] = '\0';
                    c->hlast = -1;
                    c->hinf_seen = 0;
                }
                if (v < c->hlast) return cfail(c, lineno, "buckets not cumulative");
                c->hlast = v;
                if (isinf(b)) {
                    c->hinf_seen = 1;
                    c->hinf = v;
                }
            } else if (le[0]) {
                return cfail(c, lineno, "le outside _bucket");
            } else if (strcmp(suffix, "_count") == 0) {
                if (!c->hinf_seen || strcmp(rest, c->hseries) != 0 || c->hinf != v)
                    return cfail(c, lineno, "_count differs from the +Inf bucket");
            }
        } else if (le[0] && strcmp(f->type, "histogram") == 0) {
            return cfail(c, lineno, "unexpected le");
        }
        c->samples++;
    }
    return (long)c->samples;
}

/* Finds the value of the sample line "series value" in text; NAN if absent. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ') return strtod(p + n + 1, NULL);
    }
    return NAN;
}

/* ---- tests ---- */

static void test_labels(void)
{
    char b[128];
    CHECK(tb_metrics_labels(b, sizeof b, "node", "110000", (char *)NULL) == 0);
    CHECK(strcmp(b, "node=\"110000\"") == 0);
    CHECK(tb_metrics_labels(b, sizeof b, "a", "x\"y\\z\nw", "b_2", "", (char *)NULL) == 0);
    CHECK_MSG(strcmp(b, "a=\"x\\\"y\\\\z\\nw\",b_2=\"\"") == 0, "%s", b);
    CHECK(tb_metrics_labels(b, sizeof b, "u", "\xe5\x8c\x97\xe4\xba\xac", (char *)NULL) == 0);
    CHECK(strcmp(b, "u=\"\xe5\x8c\x97\xe4\xba\xac\"") == 0);
    CHECK(tb_metrics_labels(b, sizeof b, (char *)NULL) == 0 && b[0] == '\0');
    /* bad names */
    CHECK(tb_metrics_labels(b, sizeof b, "1x", "v", (char *)NULL) == -1 && b[0] == '\0');
    CHECK(tb_metrics_labels(b, sizeof b, "a-b", "v", (char *)NULL) == -1);
    CHECK(tb_metrics_labels(b, sizeof b, "a:b", "v", (char *)NULL) == -1);
    CHECK(tb_metrics_labels(b, sizeof b, "__name__", "v", (char *)NULL) == -1);
    CHECK(tb_metrics_labels(b, sizeof b, "", "v", (char *)NULL) == -1);
    /* exact fit and one byte short: n="vv" is 6 characters + NUL */
    CHECK(tb_metrics_labels(b, 7, "n", "vv", (char *)NULL) == 0 && strcmp(b, "n=\"vv\"") == 0);
    CHECK(tb_metrics_labels(b, 6, "n", "vv", (char *)NULL) == -1 && b[0] == '\0');
    CHECK(tb_metrics_labels(b, 8, "n", "v\"", (char *)NULL) == 0 && strcmp(b, "n=\"v\\\"\"") == 0);
    CHECK(tb_metrics_labels(b, 7, "n", "v\"", (char *)NULL) == -1);
    CHECK(tb_metrics_labels(b, 13, "a", "1", "b", "2", (char *)NULL) == 0 && strcmp(b, "a=\"1\",b=\"2\"") == 0);
    CHECK(tb_metrics_labels(b, 12, "a", "1", "b", "2", (char *)NULL) == 0);
    CHECK(tb_metrics_labels(b, 11, "a", "1", "b", "2", (char *)NULL) == -1 && b[0] == '\0');
}

static void test_values(void)
{
    char b[64];
    CHECK(strcmp(tb_metrics_format_value(0, b, sizeof b), "0") == 0);
    CHECK(strcmp(tb_metrics_format_value(-0.0, b, sizeof b), "0") == 0);
    CHECK(strcmp(tb_metrics_format_value(42, b, sizeof b), "42") == 0);
    CHECK(strcmp(tb_metrics_format_value(-7, b, sizeof b), "-7") == 0);
    CHECK(strcmp(tb_metrics_format_value(9007199254740991.0, b, sizeof b), "9007199254740991") == 0);
    CHECK(strcmp(tb_metrics_format_value(0.005, b, sizeof b), "0.005") == 0);
    CHECK(strcmp(tb_metrics_format_value(0.1, b, sizeof b), "0.1") == 0);
    CHECK(strcmp(tb_metrics_format_value(2.5, b, sizeof b), "2.5") == 0);
    CHECK(strcmp(tb_metrics_format_value(1e300, b, sizeof b), "1e+300") == 0);
    CHECK(strcmp(tb_metrics_format_value(INFINITY, b, sizeof b), "+Inf") == 0);
    CHECK(strcmp(tb_metrics_format_value(-INFINITY, b, sizeof b), "-Inf") == 0);
    CHECK(strcmp(tb_metrics_format_value(NAN, b, sizeof b), "NaN") == 0);
    /* round trip of values that need 17 digits */
    double v = 0.1 + 0.2;
    CHECK(strtod(tb_metrics_format_value(v, b, sizeof b), NULL) == v);
    v = 1.0 / 3.0;
    CHECK(strtod(tb_metrics_format_value(v, b, sizeof b), NULL) == v);
}

static void test_declare(void)
{
    tb_metrics_t *m = NULL;
    int id = -1, id2 = -1;
    CHECK(tb_metrics_new(&m) == TB_OK && m);
    CHECK(tb_metrics_declare(m, "a_total", TB_METRIC_COUNTER, "A.", &id) == TB_OK && id == 0);
    CHECK(tb_metrics_declare(m, "ns:b", TB_METRIC_GAUGE, "B.", &id2) == TB_OK && id2 == 1);
    CHECK(tb_metrics_declare(m, "a_total", TB_METRIC_GAUGE, "again", &id) == TB_ERR_INVALID);
    CHECK(tb_metrics_declare(m, "1abc", TB_METRIC_GAUGE, "", &id) == TB_ERR_INVALID);
    CHECK(tb_metrics_declare(m, "a-b", TB_METRIC_GAUGE, "", &id) == TB_ERR_INVALID);
    CHECK(tb_metrics_declare(m, "", TB_METRIC_GAUGE, "", &id) == TB_ERR_INVALID);
    CHECK(tb_metrics_declare(m, NULL, TB_METRIC_GAUGE, "", &id) == TB_ERR_INVALID);
    CHECK(tb_metrics_declare(m, "h", TB_METRIC_HISTOGRAM, "", &id) == TB_ERR_INVALID);
    double unsorted[] = { 1, 0.5 }, dup[] = { 1, 1 }, nan_[] = { NAN }, inf[] = { 1, INFINITY };
    double ok[] = { 0.1, 1 };
    CHECK(tb_metrics_declare_histogram(m, "h1", "", unsorted, 2, &id) == TB_ERR_INVALID);
    CHECK(tb_metrics_declare_histogram(m, "h1", "", dup, 2, &id) == TB_ERR_INVALID);
    CHECK(tb_metrics_declare_histogram(m, "h1", "", nan_, 1, &id) == TB_ERR_INVALID);
    CHECK(tb_metrics_declare_histogram(m, "h1", "", inf, 2, &id) == TB_ERR_INVALID);
    CHECK(tb_metrics_declare_histogram(m, "h1", "", ok, 0, &id) == TB_ERR_INVALID);
    CHECK(tb_metrics_declare_histogram(m, "h1", "", ok, TB_METRICS_MAX_BUCKETS + 1, &id) == TB_ERR_INVALID);
    CHECK(tb_metrics_declare_histogram(m, "h1", "", ok, 2, &id) == TB_OK && id == 2);

    /* kinds and values */
    CHECK(tb_metrics_add(m, 0, NULL, -1) == TB_ERR_INVALID);           /* counters only go up */
    CHECK(tb_metrics_set(m, 0, NULL, -1) == TB_ERR_INVALID);
    CHECK(tb_metrics_set(m, 0, NULL, NAN) == TB_ERR_INVALID);
    CHECK(tb_metrics_add(m, 1, NULL, -1) == TB_OK);                    /* gauges go both ways */
    CHECK(tb_metrics_observe(m, 0, NULL, 1) == TB_ERR_INVALID);
    CHECK(tb_metrics_set(m, 2, NULL, 1) == TB_ERR_INVALID);
    CHECK(tb_metrics_observe(m, 2, NULL, NAN) == TB_ERR_INVALID);
    CHECK(tb_metrics_set(m, 3, NULL, 1) == TB_ERR_INVALID);            /* unknown ids */
    CHECK(tb_metrics_set(m, -1, NULL, 1) == TB_ERR_INVALID);
    CHECK(tb_metrics_set(NULL, 0, NULL, 1) == TB_ERR_INVALID);

    /* pre-rendered label strings are checked when a series is created */
    CHECK(tb_metrics_set(m, 1, "node=110000", 1) == TB_ERR_INVALID);
    CHECK(tb_metrics_set(m, 1, "node=\"a", 1) == TB_ERR_INVALID);
    CHECK(tb_metrics_set(m, 1, "node=\"a\"x", 1) == TB_ERR_INVALID);
    CHECK(tb_metrics_set(m, 1, "node=\"a\\x\"", 1) == TB_ERR_INVALID);
    CHECK(tb_metrics_set(m, 1, "node=\"a\nb\"", 1) == TB_ERR_INVALID);
    CHECK(tb_metrics_set(m, 1, "__n=\"a\"", 1) == TB_ERR_INVALID);
    CHECK(tb_metrics_set(m, 1, "n=\"a\",", 1) == TB_ERR_INVALID);
    CHECK(tb_metrics_observe(m, 2, "le=\"1\"", 1) == TB_ERR_INVALID);  /* the histogram's own label */
    CHECK(tb_metrics_set(m, 1, "le=\"1\"", 1) == TB_OK);               /* fine on a gauge */
    CHECK(tb_metrics_set(m, 1, "a=\"1\",b=\"x\\\"y\"", 2) == TB_OK);

    double v = 0;
    CHECK(tb_metrics_get(m, 1, "le=\"1\"", &v) == TB_OK && v == 1);
    CHECK(tb_metrics_get(m, 1, "nope=\"1\"", &v) == TB_ERR_NOTFOUND);
    CHECK(tb_metrics_get(m, 1, NULL, &v) == TB_OK && v == -1);
    CHECK(tb_metrics_get(m, 1, "", &v) == TB_OK && v == -1);            /* NULL and "" are the same series */
    tb_metrics_destroy(&m);
    CHECK(m == NULL);
    tb_metrics_destroy(&m);
    tb_metrics_destroy(NULL);
}

static void test_render_exact(void)
{
    tb_metrics_t *m = NULL;
    int c, g, h, e;
    char *text = NULL;
    size_t len = 0;
    double bounds[] = { 0.0625, 0.25, 1 };   /* binary fractions: the sum is exact */
    CHECK(tb_metrics_new(&m) == TB_OK);
    CHECK(tb_metrics_render(m, &text, &len) == TB_OK && text && len == 0 && text[0] == '\0');
    free(text);
    CHECK(tb_metrics_declare(m, "t_batches_total", TB_METRIC_COUNTER, "Batches in.\nSecond \\ line.", &c) == TB_OK);
    CHECK(tb_metrics_declare(m, "t_journal_bytes", TB_METRIC_GAUGE, "Bytes.", &g) == TB_OK);
    CHECK(tb_metrics_declare_histogram(m, "t_apply_seconds", "Apply time.", bounds, 3, &h) == TB_OK);
    CHECK(tb_metrics_declare(m, "t_empty", TB_METRIC_GAUGE, "Nothing yet.", &e) == TB_OK);
    char a[64], b[64];
    tb_metrics_labels(a, sizeof a, "node", "a", (char *)NULL);
    tb_metrics_labels(b, sizeof b, "node", "b\"\\", (char *)NULL);
    CHECK(tb_metrics_add(m, c, a, 10) == TB_OK);
    CHECK(tb_metrics_add(m, c, b, 1) == TB_OK);
    CHECK(tb_metrics_add(m, c, a, 5) == TB_OK);
    CHECK(tb_metrics_set(m, g, NULL, 1234567) == TB_OK);
    /* bounds are inclusive (le): 0.0625 falls into the first bucket */
    CHECK(tb_metrics_observe(m, h, NULL, 0.0625) == TB_OK);
    CHECK(tb_metrics_observe(m, h, NULL, 0.03125) == TB_OK);
    CHECK(tb_metrics_observe(m, h, NULL, 0.5) == TB_OK);
    CHECK(tb_metrics_observe(m, h, NULL, 7) == TB_OK);             /* only in +Inf */
    CHECK(tb_metrics_touch(m, h, a) == TB_OK);                      /* an empty series */
    CHECK(tb_metrics_render(m, &text, &len) == TB_OK);
    const char *want =
        "# HELP t_batches_total Batches in.\\nSecond \\\\ line.\n"
        "# TYPE t_batches_total counter\n"
        "t_batches_total{node=\"a\"} 15\n"
        "t_batches_total{node=\"b\\\"\\\\\"} 1\n"
        "# HELP t_journal_bytes Bytes.\n"
        "# TYPE t_journal_bytes gauge\n"
        "t_journal_bytes 1234567\n"
        "# HELP t_apply_seconds Apply time.\n"
        "# TYPE t_apply_seconds histogram\n"
        "t_apply_seconds_bucket{le=\"0.0625\"} 2\n"
        "t_apply_seconds_bucket{le=\"0.25\"} 2\n"
        "t_apply_seconds_bucket{le=\"1\"} 3\n"
        "t_apply_seconds_bucket{le=\"+Inf\"} 4\n"
        "t_apply_seconds_sum 7.59375\n"
        "t_apply_seconds_count 4\n"
        "t_apply_seconds_bucket{node=\"a\",le=\"0.0625\"} 0\n"
        "t_apply_seconds_bucket{node=\"a\",le=\"0.25\"} 0\n"
        "t_apply_seconds_bucket{node=\"a\",le=\"1\"} 0\n"
        "t_apply_seconds_bucket{node=\"a\",le=\"+Inf\"} 0\n"
        "t_apply_seconds_sum{node=\"a\"} 0\n"
        "t_apply_seconds_count{node=\"a\"} 0\n"
        "# HELP t_empty Nothing yet.\n"
        "# TYPE t_empty gauge\n";
    CHECK_MSG(text && strcmp(text, want) == 0, "got:\n%s", text ? text : "(null)");
    CHECK(text && len == strlen(text));
    checker_t ck;
    CHECK_MSG(check_text(&ck, text) == 15, "%s", ck.err);
    double v = 0;
    CHECK(tb_metrics_get(m, h, NULL, &v) == TB_OK && v == 4);
    free(text);
    tb_metrics_destroy(&m);
}

/* The checker itself must refuse what is not the format. */
static void test_checker(void)
{
    static const char *const bad[] = {
        "a 1",                                         /* no final newline */
        "a{x=\"1} 1\n",                                /* unterminated label value */
        "a{x=1} 1\n",                                  /* unquoted */
        "a{x=\"\\q\"} 1\n",                            /* bad escape */
        "a{x=\"1\",x=\"2\"} 1\n",                      /* duplicate label */
        "a one\n",                                     /* bad value */
        "1a 1\n",                                      /* bad name */
        "# TYPE a counter\na -1\n",                    /* negative counter */
        "# TYPE a gauge\n# TYPE a gauge\na 1\n",       /* two TYPE lines */
        "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n",   /* a family split up */
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n",
        "# TYPE h histogram\nh_bucket 1\n",
        "# TYPE h histogram\nh 1\n",
        NULL,
    };
    checker_t ck;
    for (int i = 0; bad[i]; i++) CHECK_MSG(check_text(&ck, bad[i]) < 0, "accepted: %s", bad[i]);
    CHECK(check_text(&ck, "# a plain comment\n# TYPE a gauge\na{x=\"1\",} 1 1700000000000\n\na 2\n") == 2);
}

/* Many series with hostile label values all parse back. */
static void test_many(void)
{
    tb_metrics_t *m = NULL;
    int c, h;
    double bounds[] = { 1, 2, 4, 8, 16 };
    CHECK(tb_metrics_new(&m) == TB_OK);
    CHECK(tb_metrics_declare(m, "x_total", TB_METRIC_COUNTER, "X with \\ and\nnewline.", &c) == TB_OK);
    CHECK(tb_metrics_declare_histogram(m, "x_seconds", "", bounds, 5, &h) == TB_OK);
    for (int i = 0; i < 1000; i++) {
        char v[64], l[160];
        snprintf(v, sizeof v, "n%d\"\\\n{}=,%s", i, i % 2 ? "\xe7\x9c\x81" : "");
        CHECK(tb_metrics_labels(l, sizeof l, "node", v, "kind", "k", (char *)NULL) == 0);
        CHECK(tb_metrics_add(m, c, l, i) == TB_OK);
        if (i < 100)
            for (int k = 0; k < 20; k++) CHECK(tb_metrics_observe(m, h, l, (double)(k % 20)) == TB_OK);
    }
    char *text = NULL;
    size_t len = 0;
    CHECK(tb_metrics_render(m, &text, &len) == TB_OK);
    checker_t ck;
    long n = check_text(&ck, text);
    CHECK_MSG(n == 1000 + 100 * 8, "%ld samples: %s", n, ck.err);
    CHECK(sample(text, "x_total{node=\"n999\\\"\\\\\\n{}=,\xe7\x9c\x81\",kind=\"k\"}") == 999);
    /* k % 20 for k < 20: 0..19: le=1 has {0,1}, le=16 has 0..16, +Inf all 20; sum 190 */
    CHECK(sample(text, "x_seconds_bucket{node=\"n0\\\"\\\\\\n{}=,\",kind=\"k\",le=\"1\"}") == 2);
    CHECK(sample(text, "x_seconds_bucket{node=\"n0\\\"\\\\\\n{}=,\",kind=\"k\",le=\"16\"}") == 17);
    CHECK(sample(text, "x_seconds_bucket{node=\"n0\\\"\\\\\\n{}=,\",kind=\"k\",le=\"+Inf\"}") == 20);
    CHECK(sample(text, "x_seconds_sum{node=\"n0\\\"\\\\\\n{}=,\",kind=\"k\"}") == 190);
    free(text);
    tb_metrics_destroy(&m);
}

static void test_node_metrics(void)
{
    tb_node_config_t cfg;
    memset(&cfg, 0, sizeof cfg);
    snprintf(cfg.id, sizeof cfg.id, "110000");
    node_metrics_t *nm = NULL;
    char err[256] = "";
    CHECK(node_metrics_new(&cfg, &nm, err, sizeof err) == TB_OK && nm);
    CHECK(node_metrics_port(nm) == 0);                   /* http.listen empty: no endpoint */
    node_stats_t s;
    memset(&s, 0, sizeof s);
    s.batches_sent = 10;
    s.records_sent = 1000;
    s.acks = 9;
    s.nacks = 3;
    s.batches_applied = 4;
    s.records_applied = 400;
    s.duplicates = 1;
    s.rejected_in = 2;
    s.deliveries_parked = 2;
    s.parked_applied = 1;
    s.pg_errors = 5;
    node_metrics_nack(nm, "acl");
    node_metrics_nack(nm, "acl");
    node_metrics_nack(nm, "storage");
    node_metrics_apply(nm, 0.003);
    node_metrics_apply(nm, 0.2);
    node_gauges_t g = { .hub_connected = 1, .pg_connected = 1, .outbox_unacked = 1, .cert = NULL };
    char *text = NULL;
    size_t len = 0;
    CHECK(node_metrics_render(nm, &s, &g, &text, &len) == TB_OK && text);
    checker_t ck;
    CHECK_MSG(text && check_text(&ck, text) > 0, "%s", ck.err);
    CHECK(sample(text, "tongban_node_batches_sent_total") == 10);
    CHECK(sample(text, "tongban_node_records_sent_total") == 1000);
    CHECK(sample(text, "tongban_node_acks_total") == 9);
    CHECK(sample(text, "tongban_node_nacks_total{reason=\"acl\"}") == 2);
    CHECK(sample(text, "tongban_node_nacks_total{reason=\"storage\"}") == 1);
    CHECK(sample(text, "tongban_node_nacks_total{reason=\"bad_signature\"}") == 0);
    CHECK(sample(text, "tongban_node_batches_applied_total") == 4);
    CHECK(sample(text, "tongban_node_records_applied_total") == 400);
    CHECK(sample(text, "tongban_node_duplicates_total") == 1);
    CHECK(sample(text, "tongban_node_rejected_in_total") == 2);
    CHECK(sample(text, "tongban_node_deliveries_parked_total") == 2);
    CHECK(sample(text, "tongban_node_parked_applied_total") == 1);
    CHECK(strstr(text, "# TYPE tongban_node_deliveries_parked_total counter\n") != NULL);
    CHECK(sample(text, "tongban_node_pg_errors_total") == 5);
    CHECK(sample(text, "tongban_node_outbox_unacked_batches") == 1);
    CHECK(sample(text, "tongban_node_hub_connected") == 1);
    CHECK(sample(text, "tongban_node_pg_connected") == 1);
    CHECK(sample(text, "tongban_node_apply_seconds_bucket{le=\"0.005\"}") == 1);
    CHECK(sample(text, "tongban_node_apply_seconds_bucket{le=\"0.25\"}") == 2);
    CHECK(sample(text, "tongban_node_apply_seconds_count") == 2);
    CHECK(fabs(sample(text, "tongban_node_apply_seconds_sum") - 0.203) < 1e-9);
    CHECK(isnan(sample(text, "tongban_node_cert_days_left")));   /* no certificate given */
    CHECK(sample(text, "process_start_time_seconds") > 1.6e9);
    CHECK(strstr(text, "tongban_node_build_info{version=\"") != NULL);
    CHECK(strstr(text, "# TYPE tongban_node_apply_seconds histogram\n") != NULL);
    /* the housekeeping's series exist from the start (no counters given: 0) */
    CHECK(sample(text, "tongban_node_pruned_rows_total{table=\"inbox\"}") == 0);
    CHECK(sample(text, "tongban_node_pruned_rows_total{table=\"dead_letter_batches\"}") == 0);
    CHECK(strstr(text, "# TYPE tongban_node_pruned_rows_total counter\n") != NULL);
    CHECK(sample(text, "tongban_node_housekeeping_errors_total") == 0);
    free(text);

    char why[128];
    CHECK(node_metrics_health(&g, why, sizeof why) == 1 && strcmp(why, "ok") == 0);
    g.hub_connected = 0;
    CHECK(node_metrics_health(&g, why, sizeof why) == 0 && strstr(why, "hub not connected"));
    g.pg_connected = 0;
    CHECK(node_metrics_health(&g, why, sizeof why) == 0 && strstr(why, "postgresql") && strstr(why, "hub"));
    g.hub_connected = 1;
    CHECK(node_metrics_health(&g, why, sizeof why) == 0 && strcmp(why, "postgresql not connected") == 0);

    node_metrics_destroy(&nm);
    CHECK(nm == NULL);
    node_metrics_destroy(&nm);
    node_metrics_nack(NULL, "acl");                  /* NULL-safe */
    node_metrics_apply(NULL, 1);
    node_metrics_tick(NULL, &s, &g);

    snprintf(cfg.http_listen, sizeof cfg.http_listen, "localhost:1");
    CHECK(node_metrics_new(&cfg, &nm, err, sizeof err) == TB_ERR_CONFIG && nm == NULL);
    CHECK(strstr(err, "http.listen") != NULL);
}

int main(void)
{
    test_labels();
    test_values();
    test_declare();
    test_render_exact();
    test_checker();
    test_many();
    test_node_metrics();
    return tbtest_done("test_metrics");
}
