/* errbuf.h -- filling the caller's one-line error buffer. */
#ifndef TB_ERRBUF_H
#define TB_ERRBUF_H

#include <stddef.h>

/* Writes a formatted line into err (if err != NULL and errlen > 0). */
void tb_seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
