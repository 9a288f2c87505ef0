/* metrics.c -- counters, gauges and fixed-bucket histograms, rendered as
 * Prometheus text exposition format 0.0.4. Families live in an array (the id
 * is the index), series in a per-family array searched linearly: a daemon has
 * a few dozen families and at most a few hundred series, rendered about once
 * a second. */
#include "metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    char *labels;                 /* pre-rendered, "" for none */
    double value;                 /* counter, gauge */
    uint64_t *buckets;            /* histogram: nbounds + 1 counts, not cumulative */
    double sum;
    uint64_t count;
} series_t;

typedef struct {
    char *name, *help;
    tb_metric_kind_t kind;
    double *bounds;
    size_t nbounds;
    series_t *series;
    size_t nseries, cap;
    size_t next;                  /* where the next lookup starts: callers that set
                                     the series in the same order each time find
                                     each one at once */
} family_t;

struct tb_metrics {
    family_t *fam;
    size_t nfam, cap;
};

/* ---- names and labels ---- */

static int name_char(int ch, int first, int colon)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_' ||
           (colon && ch == ':') || (!first && ch >= '0' && ch <= '9');
}

/* Metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) or, with colon 0, label name. */
static int valid_name(const char *s, size_t n, int colon)
{
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (!name_char((unsigned char)s[i], i == 0, colon)) return 0;
    return 1;
}

/* A pre-rendered label string: name="value"(,name="value")*, values with
 * only \\, \" and \n as escapes and no raw newline; names unique per line
 * would need a set -- duplicates are the caller's bug and left to it. With
 * forbid_le, a label named "le" (the histogram's own) is refused. */
static int valid_labels(const char *s, int forbid_le)
{
    if (!s || !*s) return 1;
    for (;;) {
        const char *eq = strchr(s, '=');
        if (!eq || !valid_name(s, (size_t)(eq - s), 0)) return 0;
        if (eq - s >= 2 && s[0] == '_' && s[1] == '_') return 0;
        if (forbid_le && eq - s == 2 && s[0] == 'l' && s[1] == 'e') return 0;
        if (eq[1] != '"') return 0;
        const char *p = eq + 2;
        for (; *p && *p != '"'; p++) {
            if (*p == '\n') return 0;
            if (*p == '\\') {
                if (p[1] != '\\' && p[1] != '"' && p[1] != 'n') return 0;
                p++;
            }
        }
        if (*p != '"') return 0;
        p++;
        if (*p == '\0') return 1;
        if (*p != ',') return 0;
        s = p + 1;
    }
}

int tb_metrics_labels(char *buf, size_t len, ...)
{
    va_list ap;
    size_t o = 0;
    int ok = 1;
    if (!buf || len == 0) return -1;
    va_start(ap, len);
    for (const char *name; ok && (name = va_arg(ap, const char *)) != NULL;) {
        const char *value = va_arg(ap, const char *);
        size_t n = strlen(name);
        /* [,]name=" now, and room for the closing quote and the NUL */
        if (!value || !valid_name(name, n, 0) || (n >= 2 && name[0] == '_' && name[1] == '_') ||
            o + (o ? 1 : 0) + n + 2 + 2 > len) {
            ok = 0;
            break;
        }
        if (o) buf[o++] = ',';
        memcpy(buf + o, name, n);
        o += n;
        buf[o++] = '=';
        buf[o++] = '"';
        for (const char *v = value; *v; v++) {
            const char *esc = *v == '\\' ? "\\\\" : *v == '"' ? "\\\"" : *v == '\n' ? "\\n" : NULL;
            size_t need = esc ? 2 : 1;
            if (o + need + 2 > len) {         /* room for the closing quote and the NUL */
                ok = 0;
                break;
            }
            if (esc) {
                memcpy(buf + o, esc, 2);
                o += 2;
            } else {
                buf[o++] = *v;
            }
        }
        if (!ok || o + 2 > len) {
            ok = 0;
            break;
        }
        buf[o++] = '"';
    }
    va_end(ap);
    buf[ok ? o : 0] = '\0';
    return ok ? 0 : -1;
}

char *tb_metrics_format_value(double v, char *buf, size_t len)
{
    if (isnan(v)) {
        snprintf(buf, len, "NaN");
    } else if (isinf(v)) {
        snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
    } else if (v > -9007199254740992.0 && v < 9007199254740992.0 && v == (double)(long long)v) {
        snprintf(buf, len, "%lld", (long long)v);
    } else {
        snprintf(buf, len, "%.15g", v);
        if (strtod(buf, NULL) != v) snprintf(buf, len, "%.17g", v);
    }
    return buf;
}

double tb_metrics_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- registry ---- */

tb_err_t tb_metrics_new(tb_metrics_t **out)
{
    tb_metrics_t *self = calloc(1, sizeof *self);
    if (!self) return TB_ERR_NOMEM;
    *out = self;
    return TB_OK;
}

static void family_fini(family_t *f)
{
    for (size_t i = 0; i < f->nseries; i++) {
        free(f->series[i].labels);
        free(f->series[i].buckets);
    }
    free(f->series);
    free(f->bounds);
    free(f->name);
    free(f->help);
}

void tb_metrics_destroy(tb_metrics_t **selfp)
{
    tb_metrics_t *self = selfp ? *selfp : NULL;
    if (!self) return;
    for (size_t i = 0; i < self->nfam; i++) family_fini(&self->fam[i]);
    free(self->fam);
    free(self);
    *selfp = NULL;
}

static tb_err_t declare(tb_metrics_t *self, const char *name, tb_metric_kind_t kind, const char *help,
                        const double *bounds, size_t nbounds, int *id)
{
    if (!self || !name || !id || !valid_name(name, strlen(name), 1)) return TB_ERR_INVALID;
    for (size_t i = 0; i < self->nfam; i++)
        if (strcmp(self->fam[i].name, name) == 0) return TB_ERR_INVALID;
    if (self->nfam == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 16;
        family_t *f = realloc(self->fam, cap * sizeof *f);
        if (!f) return TB_ERR_NOMEM;
        self->fam = f;
        self->cap = cap;
    }
    family_t *f = &self->fam[self->nfam];
    memset(f, 0, sizeof *f);
    f->kind = kind;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    if (nbounds) {
        f->bounds = malloc(nbounds * sizeof *f->bounds);
        if (f->bounds) memcpy(f->bounds, bounds, nbounds * sizeof *f->bounds);
        f->nbounds = nbounds;
    }
    if (!f->name || !f->help || (nbounds && !f->bounds)) {
        family_fini(f);
        return TB_ERR_NOMEM;
    }
    *id = (int)self->nfam++;
    return TB_OK;
}

tb_err_t tb_metrics_declare(tb_metrics_t *self, const char *name, tb_metric_kind_t kind,
                            const char *help, int *id)
{
    if (kind != TB_METRIC_COUNTER && kind != TB_METRIC_GAUGE) return TB_ERR_INVALID;
    return declare(self, name, kind, help, NULL, 0, id);
}

tb_err_t tb_metrics_declare_histogram(tb_metrics_t *self, const char *name, const char *help,
                                      const double *bounds, size_t nbounds, int *id)
{
    if (!bounds || nbounds == 0 || nbounds > TB_METRICS_MAX_BUCKETS) return TB_ERR_INVALID;
    for (size_t i = 0; i < nbounds; i++)
        if (!isfinite(bounds[i]) || (i && !(bounds[i] > bounds[i - 1]))) return TB_ERR_INVALID;
    return declare(self, name, TB_METRIC_HISTOGRAM, help, bounds, nbounds, id);
}

static family_t *family(const tb_metrics_t *self, int id)
{
    if (!self || id < 0 || (size_t)id >= self->nfam) return NULL;
    return &self->fam[id];
}

static series_t *find(const family_t *f, const char *labels)
{
    if (!labels) labels = "";
    for (size_t i = 0; i < f->nseries; i++)
        if (strcmp(f->series[i].labels, labels) == 0) return &f->series[i];
    return NULL;
}

/* Finds or creates the series; *rc says why on NULL. */
static series_t *series(family_t *f, const char *labels, tb_err_t *rc)
{
    if (!labels) labels = "";
    for (size_t k = 0; k < f->nseries; k++) {
        size_t i = (f->next + k) % f->nseries;
        if (strcmp(f->series[i].labels, labels) == 0) {
            f->next = i + 1;
            return &f->series[i];
        }
    }
    series_t *s;
    if (!valid_labels(labels, f->kind == TB_METRIC_HISTOGRAM)) {
        *rc = TB_ERR_INVALID;
        return NULL;
    }
    *rc = TB_ERR_NOMEM;
    if (f->nseries == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        series_t *n = realloc(f->series, cap * sizeof *n);
        if (!n) return NULL;
        f->series = n;
        f->cap = cap;
    }
    s = &f->series[f->nseries];
    memset(s, 0, sizeof *s);
    s->labels = strdup(labels);
    if (f->kind == TB_METRIC_HISTOGRAM) s->buckets = calloc(f->nbounds + 1, sizeof *s->buckets);
    if (!s->labels || (f->kind == TB_METRIC_HISTOGRAM && !s->buckets)) {
        free(s->labels);
        free(s->buckets);
        return NULL;
    }
    f->nseries++;
    f->next = f->nseries;
    return s;
}

tb_err_t tb_metrics_set(tb_metrics_t *self, int id, const char *labels, double v)
{
    tb_err_t rc;
    family_t *f = family(self, id);
    if (!f || f->kind == TB_METRIC_HISTOGRAM || isnan(v) || (f->kind == TB_METRIC_COUNTER && v < 0))
        return TB_ERR_INVALID;
    series_t *s = series(f, labels, &rc);
    if (!s) return rc;
    s->value = v;
    return TB_OK;
}

tb_err_t tb_metrics_add(tb_metrics_t *self, int id, const char *labels, double delta)
{
    tb_err_t rc;
    family_t *f = family(self, id);
    if (!f || f->kind == TB_METRIC_HISTOGRAM || isnan(delta) || (f->kind == TB_METRIC_COUNTER && delta < 0))
        return TB_ERR_INVALID;
    series_t *s = series(f, labels, &rc);
    if (!s) return rc;
    s->value += delta;
    return TB_OK;
}

tb_err_t tb_metrics_observe(tb_metrics_t *self, int id, const char *labels, double v)
{
    tb_err_t rc;
    family_t *f = family(self, id);
    if (!f || f->kind != TB_METRIC_HISTOGRAM || isnan(v)) return TB_ERR_INVALID;
    series_t *s = series(f, labels, &rc);
    if (!s) return rc;
    size_t b = 0;
    while (b < f->nbounds && v > f->bounds[b]) b++;       /* le: v <= bound */
    s->buckets[b]++;
    s->sum += v;
    s->count++;
    return TB_OK;
}

tb_err_t tb_metrics_touch(tb_metrics_t *self, int id, const char *labels)
{
    tb_err_t rc;
    family_t *f = family(self, id);
    if (!f) return TB_ERR_INVALID;
    return series(f, labels, &rc) ? TB_OK : rc;
}

tb_err_t tb_metrics_get(const tb_metrics_t *self, int id, const char *labels, double *v)
{
    const family_t *f = family(self, id);
    if (!f || !v) return TB_ERR_INVALID;
    const series_t *s = find(f, labels);
    if (!s) return TB_ERR_NOTFOUND;
    *v = f->kind == TB_METRIC_HISTOGRAM ? (double)s->count : s->value;
    return TB_OK;
}

/* ---- rendering ---- */

typedef struct {
    char *p;
    size_t len, cap;
    int nomem;
} buf_t;

static void put(buf_t *b, const char *s, size_t n)
{
    if (b->nomem) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->len + n + 1 > cap) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->nomem = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(buf_t *b, const char *s)
{
    put(b, s, strlen(s));
}

/* HELP text: backslash and newline escaped. */
static void put_help(buf_t *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\') puts_(b, "\\\\");
        else if (*s == '\n') puts_(b, "\\n");
        else put(b, s, 1);
    }
}

/* name{labels,extra} value */
static void put_sample(buf_t *b, const char *name, const char *suffix, const char *labels,
                       const char *extra, double v)
{
    char num[64];
    puts_(b, name);
    puts_(b, suffix);
    int any = labels && *labels, more = extra && *extra;
    if (any || more) {
        puts_(b, "{");
        if (any) puts_(b, labels);
        if (any && more) puts_(b, ",");
        if (more) puts_(b, extra);
        puts_(b, "}");
    }
    puts_(b, " ");
    puts_(b, tb_metrics_format_value(v, num, sizeof num));
    puts_(b, "\n");
}

tb_err_t tb_metrics_render(const tb_metrics_t *self, char **text, size_t *len)
{
    static const char *const kinds[] = { "counter", "gauge", "histogram" };
    buf_t b = { 0 };
    if (!self || !text) return TB_ERR_INVALID;
    put(&b, "", 0);                           /* an empty registry is "" */
    for (size_t i = 0; i < self->nfam; i++) {
        const family_t *f = &self->fam[i];
        puts_(&b, "# HELP ");
        puts_(&b, f->name);
        puts_(&b, " ");
        put_help(&b, f->help);
        puts_(&b, "\n# TYPE ");
        puts_(&b, f->name);
        puts_(&b, " ");
        puts_(&b, kinds[f->kind]);
        puts_(&b, "\n");
        for (size_t k = 0; k < f->nseries; k++) {
            const series_t *s = &f->series[k];
            if (f->kind != TB_METRIC_HISTOGRAM) {
                put_sample(&b, f->name, "", s->labels, NULL, s->value);
                continue;
            }
            uint64_t cum = 0;
            char le[80], num[64];
            for (size_t j = 0; j <= f->nbounds; j++) {
                cum += s->buckets[j];
                if (j < f->nbounds)
                    snprintf(le, sizeof le, "le=\"%s\"", tb_metrics_format_value(f->bounds[j], num, sizeof num));
                else
                    snprintf(le, sizeof le, "le=\"+Inf\"");
                put_sample(&b, f->name, "_bucket", s->labels, le, (double)cum);
            }
            put_sample(&b, f->name, "_sum", s->labels, NULL, s->sum);
            put_sample(&b, f->name, "_count", s->labels, NULL, (double)s->count);
        }
    }
    if (b.nomem) {
        free(b.p);
        return TB_ERR_NOMEM;
    }
    *text = b.p;
    if (len) *len = b.len;
    return TB_OK;
}
