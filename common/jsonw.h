/* jsonw.h -- a small JSON writer into a growing buffer (for status replies).
 *
 * Calls never fail visibly: on allocation failure the writer goes into an
 * error state and jsonw_take returns NULL.
 */
#ifndef TB_JSONW_H
#define TB_JSONW_H

#include <stddef.h>

typedef struct {
    char *buf;
    size_t len, cap;
    int failed;
    int need_comma;
} jsonw_t;

void jsonw_init(jsonw_t *w);
void jsonw_obj_begin(jsonw_t *w, const char *key);    /* key NULL inside arrays / at top */
void jsonw_obj_end(jsonw_t *w);
void jsonw_arr_begin(jsonw_t *w, const char *key);
void jsonw_arr_end(jsonw_t *w);
void jsonw_str(jsonw_t *w, const char *key, const char *value);
void jsonw_u64(jsonw_t *w, const char *key, unsigned long long value);
void jsonw_i64(jsonw_t *w, const char *key, long long value);
void jsonw_dbl(jsonw_t *w, const char *key, double value);
void jsonw_bool(jsonw_t *w, const char *key, int value);
/* Appends printf output verbatim (for text, not JSON). */
void jsonw_raw(jsonw_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Returns the NUL-terminated text (caller frees) or NULL after a failure. */
char *jsonw_take(jsonw_t *w);

#endif
