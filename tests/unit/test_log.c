/* test_log.c -- logfmt and JSON log lines, level filtering, value quoting. */
#include "tbtest.h"

#include "log.h"

#include <stdlib.h>
#include <string.h>

/* Returns 1 if s contains sub. */
static int has(const char *s, const char *sub)
{
    return s && strstr(s, sub) != NULL;
}

/* ---- capturing the log ---- */

static char *cap_buf;
static size_t cap_len;
static FILE *cap_file;

/* Sends the log at level/format into a fresh memory stream. */
static void cap_start(tb_log_level_t level, tb_log_format_t format)
{
    cap_buf = NULL;
    cap_len = 0;
    cap_file = open_memstream(&cap_buf, &cap_len);
    CHECK(cap_file != NULL);
    tb_log_setup(level, format, cap_file);
}

/* Ends the capture and returns what was logged (malloc'ed; caller frees). */
static char *cap_end(void)
{
    tb_log_setup(TB_LOG_INFO, TB_LOG_LOGFMT, stderr);
    if (cap_file) fclose(cap_file);
    cap_file = NULL;
    return cap_buf;
}

/* Returns 1 if s is a timestamp like 2026-11-29T10:00:00.123Z (len 24). */
static int is_ts(const char *s, size_t len)
{
    const char *pat = "dddd-dd-ddTdd:dd:dd.dddZ";
    if (len != strlen(pat)) return 0;
    for (size_t i = 0; i < len; i++) {
        if (pat[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != pat[i]) return 0;
    }
    return 1;
}

/* ---- a small JSON checker: one object whose members are all strings ---- */

#define JMAX 32
typedef struct {
    int n;
    char key[JMAX][128];
    char val[JMAX][2048];
} jobj_t;

/* Parses a JSON string at *p into out (decoded, \u00XX only as one byte).
 * Returns 0 and advances *p, or -1 if it is not a valid JSON string. */
static int jstring(const char **p, char *out, size_t cap)
{
    const char *s = *p;
    size_t o = 0;
    if (*s++ != '"') return -1;
    for (;;) {
        unsigned char c = (unsigned char)*s++;
        if (c == '\0' || c < 0x20) return -1;
        if (c == '"') break;
        if (c == '\\') {
            char e = *s++;
            switch (e) {
            case '"': case '\\': case '/': c = (unsigned char)e; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'u': {
                unsigned v = 0;
                for (int i = 0; i < 4; i++) {
                    char h = *s++;
                    v <<= 4;
                    if (h >= '0' && h <= '9') v |= (unsigned)(h - '0');
                    else if (h >= 'a' && h <= 'f') v |= (unsigned)(h - 'a' + 10);
                    else if (h >= 'A' && h <= 'F') v |= (unsigned)(h - 'A' + 10);
                    else return -1;
                }
                c = v < 0x100 ? (unsigned char)v : '?';
                break;
            }
            default: return -1;
            }
        }
        if (o + 1 < cap) out[o++] = (char)c;
    }
    out[o] = '\0';
    *p = s;
    return 0;
}

/* Parses line as exactly "{...}\n" with string members only. Returns 0 or -1. */
static int jparse(const char *line, jobj_t *j)
{
    const char *p = line;
    j->n = 0;
    if (*p++ != '{') return -1;
    if (*p == '}') return strcmp(p, "}\n") == 0 ? 0 : -1;
    for (;;) {
        if (j->n == JMAX) return -1;
        if (jstring(&p, j->key[j->n], sizeof j->key[0]) != 0) return -1;
        if (*p++ != ':') return -1;
        if (jstring(&p, j->val[j->n], sizeof j->val[0]) != 0) return -1;
        j->n++;
        if (*p == ',') { p++; continue; }
        if (*p == '}') break;
        return -1;
    }
    return strcmp(p, "}\n") == 0 ? 0 : -1;
}

/* The value of member key, or NULL. */
static const char *jget(const jobj_t *j, const char *key)
{
    for (int i = 0; i < j->n; i++)
        if (strcmp(j->key[i], key) == 0) return j->val[i];
    return NULL;
}

/* Returns 1 if member key exists with value val. */
static int jis(const jobj_t *j, const char *key, const char *val)
{
    const char *v = jget(j, key);
    return v && strcmp(v, val) == 0;
}

/* ---- tests ---- */

static void test_logfmt(void)
{
    cap_start(TB_LOG_INFO, TB_LOG_LOGFMT);
    tb_log(TB_LOG_WARN, "hub", "batch_rejected", "node=%s seq=%d reason=%s", "110000", 42, "bad_signature");
    char *out = cap_end();
    CHECK(out != NULL);
    if (!out) return;
    /* exactly one line */
    CHECK(cap_len > 0 && out[cap_len - 1] == '\n' && strchr(out, '\n') == out + cap_len - 1);
    CHECK(strncmp(out, "ts=", 3) == 0);
    const char *sp = strchr(out, ' ');
    CHECK_MSG(sp && is_ts(out + 3, (size_t)(sp - out - 3)), "%s", out);
    CHECK_MSG(sp && strcmp(sp, " level=warn comp=hub event=batch_rejected node=110000 seq=42 "
                               "reason=bad_signature\n") == 0, "%s", out);
    free(out);

    /* no key/value part: no trailing blank */
    cap_start(TB_LOG_INFO, TB_LOG_LOGFMT);
    tb_log(TB_LOG_ERROR, "node", "stopped", "%s", "");
    out = cap_end();
    CHECK_MSG(out && has(out, " level=error comp=node event=stopped\n"), "%s", out ? out : "");
    free(out);

    /* a key/value part longer than the internal buffer is cut, the line still ends */
    char big[5000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cap_start(TB_LOG_INFO, TB_LOG_LOGFMT);
    tb_log(TB_LOG_INFO, "hub", "big", "v=%s", big);
    tb_log(TB_LOG_INFO, "hub", "after", "n=1");
    out = cap_end();
    CHECK(out && cap_len > 2000 && cap_len < 2300);
    CHECK(out && has(out, "event=big v=xxx"));
    CHECK(out && has(out, "x\nts=") && has(out, " event=after n=1\n"));
    free(out);
}

/* Lines below the level are dropped; each level's name is written. */
static void test_levels(void)
{
    cap_start(TB_LOG_INFO, TB_LOG_LOGFMT);
    tb_log(TB_LOG_DEBUG, "t", "d", "n=1");
    tb_log(TB_LOG_INFO, "t", "i", "n=2");
    tb_log(TB_LOG_WARN, "t", "w", "n=3");
    tb_log(TB_LOG_ERROR, "t", "e", "n=4");
    char *out = cap_end();
    CHECK(out && !has(out, "event=d"));
    CHECK(out && has(out, "level=info comp=t event=i n=2\n"));
    CHECK(out && has(out, "level=warn comp=t event=w n=3\n"));
    CHECK(out && has(out, "level=error comp=t event=e n=4\n"));
    free(out);

    cap_start(TB_LOG_DEBUG, TB_LOG_LOGFMT);
    tb_log(TB_LOG_DEBUG, "t", "d", "n=1");
    out = cap_end();
    CHECK(out && has(out, "level=debug comp=t event=d n=1\n"));
    free(out);

    cap_start(TB_LOG_ERROR, TB_LOG_JSON);
    tb_log(TB_LOG_WARN, "t", "w", "n=3");
    tb_log(TB_LOG_INFO, "t", "i", "n=2");
    out = cap_end();
    CHECK(out && cap_len == 0);
    free(out);
}

/* Quotes s into a 256-byte buffer and compares. */
static int quotes_to(const char *s, const char *want)
{
    char buf[256];
    const char *r = tb_log_quote(s, buf, sizeof buf);
    int ok = r == buf && strcmp(buf, want) == 0;
    if (!ok) fprintf(stderr, "  tb_log_quote(\"%s\") gave [%s], wanted [%s]\n", s, buf, want);
    return ok;
}

static void test_quote(void)
{
    /* bare */
    CHECK(quotes_to("110000", "110000"));
    CHECK(quotes_to("topic:licences", "topic:licences"));
    CHECK(quotes_to("a/b.c-d_e", "a/b.c-d_e"));
    CHECK(quotes_to("\xe5\x8c\x97\xe4\xba\xac", "\xe5\x8c\x97\xe4\xba\xac"));   /* UTF-8 passes */
    /* quoted */
    CHECK(quotes_to("", "\"\""));
    CHECK(quotes_to("two words", "\"two words\""));
    CHECK(quotes_to(" lead", "\" lead\""));
    CHECK(quotes_to("k=v", "\"k=v\""));
    CHECK(quotes_to("say \"hi\"", "\"say \\\"hi\\\"\""));
    CHECK(quotes_to("C:\\dir", "\"C:\\\\dir\""));
    CHECK(quotes_to("\"", "\"\\\"\""));
    CHECK(quotes_to("\\", "\"\\\\\""));
    /* control characters never reach the line raw */
    CHECK(quotes_to("a\nb", "\"a?b\""));
    CHECK(quotes_to("tab\there", "\"tab?here\""));
    CHECK(quotes_to("cr\r", "\"cr?\""));
    CHECK(quotes_to("del\x7f", "\"del?\""));
    CHECK(quotes_to("\x1b[31m", "\"?[31m\""));

    /* small buffers: never past len, always terminated, quotes balanced and
     * escapes whole once there is room for both quotes */
    const char *inputs[] = { "110000", "", "two words", "say \"hi\" now", "\\\\\\\\", "a\nb\tc",
                             "x=\"y\\z\"", "\"\"\"\"\"\"" };
    for (size_t k = 0; k < sizeof inputs / sizeof inputs[0]; k++) {
        for (size_t len = 0; len <= 40; len++) {
            char buf[48];
            memset(buf, 0xA5, sizeof buf);
            char *r = tb_log_quote(inputs[k], buf, len);
            CHECK(r == buf);
            int canary = 1;
            for (size_t i = len; i < sizeof buf; i++) canary &= (unsigned char)buf[i] == 0xA5;
            CHECK_MSG(canary, "input %zu len %zu wrote past the buffer", k, len);
            if (len == 0) continue;
            size_t n = strnlen(buf, len);
            CHECK_MSG(n < len, "input %zu len %zu not terminated", k, len);
            if (n >= len || buf[0] != '"' || len < 3) continue;
            CHECK_MSG(n >= 2 && buf[n - 1] == '"', "input %zu len %zu: [%s] unbalanced", k, len, buf);
            for (size_t i = 1; i + 1 < n; i++) {
                if (buf[i] == '\\') {
                    CHECK_MSG(i + 2 < n && (buf[i + 1] == '\\' || buf[i + 1] == '"'),
                              "input %zu len %zu: [%s] broken escape", k, len, buf);
                    i++;
                } else {
                    CHECK_MSG(buf[i] != '"', "input %zu len %zu: [%s] stray quote", k, len, buf);
                }
            }
        }
    }
    /* truncation keeps a prefix of the full quoting */
    char full[64], part[10];
    tb_log_quote("say \"hi\" now", full, sizeof full);
    tb_log_quote("say \"hi\" now", part, sizeof part);
    CHECK(strcmp(full, "\"say \\\"hi\\\" now\"") == 0);
    CHECK_MSG(strncmp(part, full, strlen(part) - 1) == 0, "[%s] vs [%s]", part, full);
}

static void test_json(void)
{
    char q1[128], q2[128], q3[128];
    cap_start(TB_LOG_INFO, TB_LOG_JSON);
    tb_log(TB_LOG_WARN, "hub", "batch_rejected", "node=%s seq=%d detail=%s path=%s ctl=%s raw=%s empty=%s flag",
           "110000", 42, tb_log_quote("bad \"sig\" here", q1, sizeof q1),
           tb_log_quote("C:\\dir x", q2, sizeof q2), tb_log_quote("a\nb", q3, sizeof q3),
           "a\"b\\c", "\"\"");
    char *out = cap_end();
    CHECK(out != NULL);
    if (!out) return;
    CHECK(out[0] == '{' && cap_len >= 3 && strcmp(out + cap_len - 2, "}\n") == 0);
    CHECK(strchr(out, '\n') == out + cap_len - 1);
    jobj_t *j = calloc(1, sizeof *j);
    if (!j) { free(out); return; }
    CHECK_MSG(jparse(out, j) == 0, "not JSON: %s", out);
    CHECK(j->n == 12);
    CHECK(j->n >= 4 && strcmp(j->key[0], "ts") == 0 && strcmp(j->key[1], "level") == 0 &&
          strcmp(j->key[2], "comp") == 0 && strcmp(j->key[3], "event") == 0);
    const char *ts = jget(j, "ts");
    CHECK_MSG(ts && is_ts(ts, strlen(ts)), "ts %s", ts ? ts : "(none)");
    CHECK(jis(j, "level", "warn"));
    CHECK(jis(j, "comp", "hub"));
    CHECK(jis(j, "event", "batch_rejected"));
    CHECK(jis(j, "node", "110000"));
    CHECK(jis(j, "seq", "42"));              /* values are strings, numbers too */
    CHECK_MSG(jis(j, "detail", "bad \"sig\" here"), "detail=%s", jget(j, "detail"));
    CHECK_MSG(jis(j, "path", "C:\\dir x"), "path=%s", jget(j, "path"));
    CHECK(jis(j, "ctl", "a?b"));
    CHECK_MSG(jis(j, "raw", "a\"b\\c"), "raw=%s", jget(j, "raw"));
    CHECK(jis(j, "empty", ""));
    CHECK(jis(j, "flag", ""));
    free(out);

    /* no key/value part at all */
    cap_start(TB_LOG_INFO, TB_LOG_JSON);
    tb_log(TB_LOG_INFO, "node", "stopped", "%s", "");
    out = cap_end();
    CHECK(out && jparse(out, j) == 0 && j->n == 4 && jis(j, "event", "stopped"));
    free(out);

    /* a line cut inside a quoted value right after a backslash is still JSON */
    char kv[2100];
    size_t pre = strlen("v=\"");
    memcpy(kv, "v=\"", pre);
    memset(kv + pre, 'y', 2046 - pre);
    memcpy(kv + 2046, "\\\\zz\"", 6);        /* kv[2046] is the last byte kept */
    cap_start(TB_LOG_INFO, TB_LOG_JSON);
    tb_log(TB_LOG_INFO, "t", "cut", "%s", kv);
    out = cap_end();
    CHECK_MSG(out && jparse(out, j) == 0, "cut line is not JSON: ...%s",
              out && cap_len > 40 ? out + cap_len - 40 : "");
    const char *v = jget(j, "v");
    CHECK(v && strlen(v) >= 2040 && v[0] == 'y');
    free(out);

    /* raw control characters and a bare backslash in values written
     * without tb_log_quote */
    cap_start(TB_LOG_INFO, TB_LOG_JSON);
    tb_log(TB_LOG_INFO, "t", "ctl", "a=\"x\ty\" b=p\x01q\x1f c=\"C:\\dir\\\\n\"");
    out = cap_end();
    CHECK_MSG(out && jparse(out, j) == 0, "not JSON: %s", out ? out : "");
    CHECK(jis(j, "a", "x\ty"));
    CHECK(jis(j, "b", "p\x01q\x1f"));
    CHECK_MSG(jis(j, "c", "C:\\dir\\n"), "c=%s", jget(j, "c"));
    free(out);
    free(j);
}

static void test_parse(void)
{
    const char *names[4] = { "debug", "info", "warn", "error" };
    const tb_log_level_t levels[4] = { TB_LOG_DEBUG, TB_LOG_INFO, TB_LOG_WARN, TB_LOG_ERROR };
    for (int i = 0; i < 4; i++) {
        tb_log_level_t l = (tb_log_level_t)99;
        CHECK(tb_log_level_parse(names[i], &l) == 0 && l == levels[i]);
    }
    const char *bad_levels[] = { "", "warning", "trace", "info ", "fatal", "err" };
    for (size_t i = 0; i < sizeof bad_levels / sizeof bad_levels[0]; i++) {
        tb_log_level_t l = TB_LOG_WARN;
        CHECK_MSG(tb_log_level_parse(bad_levels[i], &l) == -1, "[%s] accepted", bad_levels[i]);
        CHECK(l == TB_LOG_WARN);   /* untouched on failure */
    }
    tb_log_format_t f = TB_LOG_JSON;
    CHECK(tb_log_format_parse("logfmt", &f) == 0 && f == TB_LOG_LOGFMT);
    CHECK(tb_log_format_parse("json", &f) == 0 && f == TB_LOG_JSON);
    const char *bad_formats[] = { "", "text", "JSONL", "json ", "log" };
    for (size_t i = 0; i < sizeof bad_formats / sizeof bad_formats[0]; i++) {
        f = TB_LOG_JSON;
        CHECK_MSG(tb_log_format_parse(bad_formats[i], &f) == -1, "[%s] accepted", bad_formats[i]);
        CHECK(f == TB_LOG_JSON);
    }
}

int main(void)
{
    test_logfmt();
    test_levels();
    test_quote();
    test_json();
    test_parse();
    tb_log_setup(TB_LOG_INFO, TB_LOG_LOGFMT, stderr);
    return tbtest_done("test_log");
}
