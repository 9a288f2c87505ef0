/* log.c -- structured logging: logfmt by default, JSON on request. */
#include "log.h"

#include <stdarg.h>
#include <string.h>
#include <time.h>

/* Set once from main() (tb_log_setup) before threads start; read-only after. */
static tb_log_level_t min_level = TB_LOG_INFO;
static tb_log_format_t out_format = TB_LOG_LOGFMT;
static FILE *out_file;

static const char *level_names[] = { "debug", "info", "warn", "error" };

void tb_log_setup(tb_log_level_t level, tb_log_format_t format, FILE *out)
{
    min_level = level;
    out_format = format;
    out_file = out;
}

int tb_log_level_parse(const char *s, tb_log_level_t *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, level_names[i]) == 0) {
            *out = (tb_log_level_t)i;
            return 0;
        }
    }
    return -1;
}

int tb_log_format_parse(const char *s, tb_log_format_t *out)
{
    if (strcmp(s, "logfmt") == 0) { *out = TB_LOG_LOGFMT; return 0; }
    if (strcmp(s, "json") == 0) { *out = TB_LOG_JSON; return 0; }
    return -1;
}

char *tb_log_quote(const char *s, char *buf, size_t len)
{
    if (len == 0) return buf;
    int bare = *s != '\0';
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f) { bare = 0; break; }
    }
    size_t o = 0;
    if (!bare && o + 1 < len) buf[o++] = '"';
    for (const char *p = s; *p && o + 3 < len; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') { buf[o++] = '\\'; buf[o++] = (char)c; }
        else if (c < ' ' || c == 0x7f) buf[o++] = '?';
        else buf[o++] = (char)c;
    }
    if (!bare && o + 1 < len) buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

/* Writes byte c inside a JSON string: '"', '\\' and control characters escaped. */
static void json_putc(unsigned char c, FILE *out)
{
    if (c == '"' || c == '\\') { fputc('\\', out); fputc(c, out); }
    else if (c < 0x20) fprintf(out, "\\u%04x", c);
    else fputc(c, out);
}

/* Appends the logfmt pairs in kv to out as JSON members. Inside a quoted
 * value only \" and \\ are escapes (as tb_log_quote writes them); any other
 * byte, a lone backslash included, is taken literally and re-escaped for JSON. */
static void kv_to_json(const char *kv, FILE *out)
{
    const char *p = kv;
    while (*p) {
        while (*p == ' ') p++;
        if (!*p) break;
        fputs(",\"", out);
        while (*p && *p != '=' && *p != ' ') json_putc((unsigned char)*p++, out);
        fputs("\":\"", out);
        if (*p == '=') {
            p++;
            if (*p == '"') {
                p++;
                while (*p && *p != '"') {
                    if (*p == '\\' && (p[1] == '"' || p[1] == '\\')) p++;
                    json_putc((unsigned char)*p++, out);
                }
                if (*p == '"') p++;
            } else {
                while (*p && *p != ' ') json_putc((unsigned char)*p++, out);
            }
        }
        fputc('"', out);
    }
}

void tb_log(tb_log_level_t level, const char *comp, const char *event, const char *fmt, ...)
{
    if (level < min_level) return;
    FILE *out = out_file ? out_file : stderr;
    char kv[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(kv, sizeof kv, fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%03ldZ", ts.tv_nsec / 1000000);

    flockfile(out);
    if (out_format == TB_LOG_JSON) {
        fprintf(out, "{\"ts\":\"%s\",\"level\":\"%s\",\"comp\":\"%s\",\"event\":\"%s\"",
                when, level_names[level], comp, event);
        kv_to_json(kv, out);
        fputs("}\n", out);
    } else {
        fprintf(out, "ts=%s level=%s comp=%s event=%s%s%s\n", when, level_names[level], comp, event,
                kv[0] ? " " : "", kv);
    }
    fflush(out);
    funlockfile(out);
}
