/* errbuf.h -- filling the caller's one-line error buffer. */
#ifndef TB_ERRBUF_H
#define TB_ERRBUF_H

#include <stddef.h>

/* Writes a formatted line into err (if err != NULL and errlen > 0). */
void tb_seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The same, kept to one line: newlines, carriage returns and tabs (e.g. in
 * a PostgreSQL message with DETAIL) become spaces, trailing spaces go. */
void tb_seterr_line(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
