/* jsonw.c -- minimal streaming JSON writer (escapes strings per RFC 8259). */
#include "jsonw.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void jsonw_init(jsonw_t *w)
{
    memset(w, 0, sizeof *w);
}

static void put(jsonw_t *w, const char *s, size_t n)
{
    if (w->failed) return;
    if (w->len + n + 1 > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n + 1) cap *= 2;
        char *b = realloc(w->buf, cap);
        if (!b) {
            w->failed = 1;
            return;
        }
        w->buf = b;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

static void puts_(jsonw_t *w, const char *s)
{
    put(w, s, strlen(s));
}

static void quoted(jsonw_t *w, const char *s)
{
    put(w, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            put(w, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            put(w, esc, 6);
        } else {
            put(w, (const char *)p, 1);
        }
    }
    put(w, "\"", 1);
}

static void key(jsonw_t *w, const char *k)
{
    if (w->need_comma) put(w, ",", 1);
    w->need_comma = 1;
    if (k) {
        quoted(w, k);
        put(w, ":", 1);
    }
}

void jsonw_obj_begin(jsonw_t *w, const char *k)
{
    key(w, k);
    put(w, "{", 1);
    w->need_comma = 0;
}

void jsonw_obj_end(jsonw_t *w)
{
    put(w, "}", 1);
    w->need_comma = 1;
}

void jsonw_arr_begin(jsonw_t *w, const char *k)
{
    key(w, k);
    put(w, "[", 1);
    w->need_comma = 0;
}

void jsonw_arr_end(jsonw_t *w)
{
    put(w, "]", 1);
    w->need_comma = 1;
}

void jsonw_str(jsonw_t *w, const char *k, const char *v)
{
    key(w, k);
    quoted(w, v ? v : "");
}

void jsonw_u64(jsonw_t *w, const char *k, unsigned long long v)
{
    char b[32];
    key(w, k);
    snprintf(b, sizeof b, "%llu", v);
    puts_(w, b);
}

void jsonw_i64(jsonw_t *w, const char *k, long long v)
{
    char b[32];
    key(w, k);
    snprintf(b, sizeof b, "%lld", v);
    puts_(w, b);
}

void jsonw_dbl(jsonw_t *w, const char *k, double v)
{
    char b[48];
    key(w, k);
    if (v != v || v > 1e300 || v < -1e300) v = 0;   /* JSON has no NaN / inf */
    snprintf(b, sizeof b, "%.3f", v);
    puts_(w, b);
}

void jsonw_bool(jsonw_t *w, const char *k, int v)
{
    key(w, k);
    puts_(w, v ? "true" : "false");
}

void jsonw_raw(jsonw_t *w, const char *fmt, ...)
{
    char b[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    put(w, b, (size_t)n < sizeof b ? (size_t)n : sizeof b - 1);
}

char *jsonw_take(jsonw_t *w)
{
    if (w->failed) {
        free(w->buf);
        w->buf = NULL;
        return NULL;
    }
    if (!w->buf) put(w, "", 0);
    char *b = w->buf;
    w->buf = NULL;
    return b;
}
