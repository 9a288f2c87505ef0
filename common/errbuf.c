/* errbuf.c -- filling the caller's one-line error buffer. */
#include "errbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void tb_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void tb_seterr_line(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    for (char *p = err; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t') *p = ' ';
    size_t n = strlen(err);
    while (n > 0 && err[n - 1] == ' ') err[--n] = '\0';
}
