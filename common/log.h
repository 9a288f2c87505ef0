/* log.h -- structured one-line-per-event logging (logfmt or JSON) to stderr.
 *
 * tb_log(level, component, event, "k=%s n=%d", ...) prints e.g.
 *   ts=2026-11-29T10:00:00.123Z level=warn comp=hub event=batch_rejected node=110000 reason=bad_signature
 * The key/value part is written by the caller in logfmt; in JSON mode it is
 * converted to JSON members. Values with spaces must be double-quoted by the
 * caller (tb_log_quote helps).
 */
#ifndef TB_LOG_H
#define TB_LOG_H

#include <stdio.h>

typedef enum { TB_LOG_DEBUG = 0, TB_LOG_INFO, TB_LOG_WARN, TB_LOG_ERROR } tb_log_level_t;
typedef enum { TB_LOG_LOGFMT = 0, TB_LOG_JSON } tb_log_format_t;

/* Process-wide settings, set once from main() before any thread starts. */
void tb_log_setup(tb_log_level_t level, tb_log_format_t format, FILE *out);

/* Parses "debug|info|warn|error"; returns 0 on success, -1 if unknown. */
int tb_log_level_parse(const char *s, tb_log_level_t *out);
/* Parses "logfmt|json"; returns 0 on success, -1 if unknown. */
int tb_log_format_parse(const char *s, tb_log_format_t *out);

void tb_log(tb_log_level_t level, const char *comp, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Writes s into buf as a logfmt value: bare if safe, else double-quoted with
 * '"' and '\\' escaped and control characters replaced. Returns buf. */
char *tb_log_quote(const char *s, char *buf, size_t len);

#endif
