/* store_array.c -- array parameters for the store's multi-row statements
 * (store_internal.h): a growable buffer, text array literals and the binary
 * (array_recv) form, and tb_store_text_array (store.h). */
#include "store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"

/* ------------------------------------------------------------------------
 * Small helpers: growable buffer, array literals.
 * ------------------------------------------------------------------------ */

static int sb_reserve(sbuf_t *b, size_t extra)
{
    if (b->oom)
        return -1;
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static void sb_putc(sbuf_t *b, char c)
{
    if (sb_reserve(b, 1) == 0) {
        b->p[b->len++] = c;
        b->p[b->len] = '\0';
    }
}

void store_arr_open(sbuf_t *b)
{
    b->len = 0;
    b->items = 0;
    sb_putc(b, '{');
}

static void arr_sep(sbuf_t *b)
{
    if (b->items++)
        sb_putc(b, ',');
}

/* Appends one text element: double-quoted, '"' and '\\' escaped; NULL as NULL. */
void store_arr_text(sbuf_t *b, const char *s)
{
    arr_sep(b);
    if (!s) {
        if (sb_reserve(b, 4) == 0) {
            memcpy(b->p + b->len, "NULL", 5);
            b->len += 4;
        }
        return;
    }
    size_t n = strlen(s);
    if (sb_reserve(b, 2 * n + 2) != 0)
        return;
    char *w = b->p + b->len;
    *w++ = '"';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\')
            *w++ = '\\';
        *w++ = s[i];
    }
    *w++ = '"';
    *w = '\0';
    b->len = (size_t)(w - b->p);
}

void store_arr_i64(sbuf_t *b, int64_t v)
{
    arr_sep(b);
    if (sb_reserve(b, 24) == 0)
        b->len += (size_t)snprintf(b->p + b->len, 25, "%" PRId64, v);
}

/* Appends one bytea element in hex input form: "\\x0a1b" in the literal
 * (the backslash escaped for the array parser, then bytea's \x hex). */
void store_arr_hex(sbuf_t *b, const uint8_t *data, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    arr_sep(b);
    if (sb_reserve(b, 2 * n + 5) != 0)
        return;
    char *w = b->p + b->len;
    memcpy(w, "\"\\\\x", 4);
    w += 4;
    for (size_t i = 0; i < n; i++) {
        *w++ = hex[data[i] >> 4];
        *w++ = hex[data[i] & 15];
    }
    *w++ = '"';
    *w = '\0';
    b->len = (size_t)(w - b->p);
}

void store_arr_close(sbuf_t *b)
{
    sb_putc(b, '}');
}

/* Binary (COPY/array_recv) form of a one-dimensional array, for parameters
 * sent with format 1: ndim, flags (has nulls), element type, length, lower
 * bound, then per element its byte length (-1: NULL) and bytes. The server
 * takes the bytes as they are: no array literal to parse and unescape. */
static void put_be32(char *w, uint32_t v)
{
    w[0] = (char)(v >> 24);
    w[1] = (char)(v >> 16);
    w[2] = (char)(v >> 8);
    w[3] = (char)v;
}

void store_bin_open(sbuf_t *b, uint32_t elem_oid)
{
    b->len = 0;
    b->items = 0;
    if (sb_reserve(b, 20) != 0)
        return;
    put_be32(b->p, 1);          /* ndim */
    put_be32(b->p + 4, 0);      /* flags: no NULL so far */
    put_be32(b->p + 8, elem_oid);
    put_be32(b->p + 12, 0);     /* length, set by store_bin_close */
    put_be32(b->p + 16, 1);     /* lower bound */
    b->len = 20;
}

void store_bin_text(sbuf_t *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n > INT32_MAX - 64 || sb_reserve(b, 4 + n) != 0) {
        b->oom = 1;
        return;
    }
    b->items++;
    if (!s) {
        put_be32(b->p + 4, 1);
        put_be32(b->p + b->len, UINT32_MAX); /* -1: NULL */
        b->len += 4;
        return;
    }
    put_be32(b->p + b->len, (uint32_t)n);
    memcpy(b->p + b->len + 4, s, n);
    b->len += 4 + n;
}

void store_bin_i64(sbuf_t *b, int64_t v)
{
    if (sb_reserve(b, 12) != 0)
        return;
    b->items++;
    put_be32(b->p + b->len, 8);
    put_be32(b->p + b->len + 4, (uint32_t)((uint64_t)v >> 32));
    put_be32(b->p + b->len + 8, (uint32_t)v);
    b->len += 12;
}

/* Sets the element count; a result PostgreSQL cannot take as one
 * parameter (over 1 GB) counts as out of memory. */
void store_bin_close(sbuf_t *b)
{
    if (b->oom)
        return;
    if (b->len > (size_t)INT32_MAX / 2 || b->items > INT32_MAX) {
        b->oom = 1;
        return;
    }
    put_be32(b->p + 12, (uint32_t)b->items);
}

char *tb_store_text_array(const char *const *v, size_t n)
{
    sbuf_t b = {0};
    store_arr_open(&b);
    for (size_t i = 0; i < n; i++)
        store_arr_text(&b, v[i]);
    store_arr_close(&b);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
