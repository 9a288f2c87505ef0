/* metrics.h -- a small metrics registry (counters, gauges, histograms with
 * fixed buckets) rendered in the Prometheus text exposition format 0.0.4.
 *
 * A family is declared once (name, kind, help; a histogram also gets its
 * bucket bounds) and is referred to by the small integer id the declaration
 * returns -- ids are 0, 1, 2, ... in declaration order, so a caller can keep
 * them in an enum. A series of a family is named by its label string,
 * rendered once by the caller with tb_metrics_labels() (e.g. node="110000");
 * NULL or "" is the series without labels. Series are created on first use
 * and rendered in creation order.
 *
 * Not thread-safe: one thread (the daemon's loop) owns a registry. To serve
 * it from another thread, render it to text and hand the text over (see
 * httpd.h).
 *
 *   tb_metrics_t *m;
 *   int in;
 *   tb_metrics_new(&m);
 *   tb_metrics_declare(m, "tongban_hub_batches_in_total", TB_METRIC_COUNTER,
 *                      "Batches accepted from each node.", &in);
 *   char l[128];
 *   tb_metrics_labels(l, sizeof l, "node", "110000", NULL);
 *   tb_metrics_add(m, in, l, 1);
 *   char *text; size_t len;
 *   tb_metrics_render(m, &text, &len);     (free(text) when done)
 *   tb_metrics_destroy(&m);
 */
#ifndef TB_METRICS_H
#define TB_METRICS_H

#include <stddef.h>
#include <tongban/tongban.h>

typedef struct tb_metrics tb_metrics_t;

typedef enum { TB_METRIC_COUNTER, TB_METRIC_GAUGE, TB_METRIC_HISTOGRAM } tb_metric_kind_t;

#define TB_METRICS_MAX_BUCKETS 32      /* bounds of one histogram, +Inf not counted */

/* Creates an empty registry. Returns TB_OK or TB_ERR_NOMEM. */
tb_err_t tb_metrics_new(tb_metrics_t **out);
/* Frees the registry and nulls *self; NULL-safe. */
void tb_metrics_destroy(tb_metrics_t **self);

/* Declares a counter or a gauge. name must match [a-zA-Z_:][a-zA-Z0-9_:]*
 * and not be declared yet; help is one line of text (escaped on output).
 * Fills *id. Returns TB_OK, TB_ERR_INVALID (bad name, duplicate, kind
 * TB_METRIC_HISTOGRAM) or TB_ERR_NOMEM. */
tb_err_t tb_metrics_declare(tb_metrics_t *self, const char *name, tb_metric_kind_t kind,
                            const char *help, int *id);
/* Declares a histogram with nbounds (1..TB_METRICS_MAX_BUCKETS) finite,
 * strictly increasing upper bounds; the +Inf bucket is implicit. Returns as
 * tb_metrics_declare. */
tb_err_t tb_metrics_declare_histogram(tb_metrics_t *self, const char *name, const char *help,
                                      const double *bounds, size_t nbounds, int *id);

/* Sets a counter or gauge series to v (a counter whose source of truth is
 * kept elsewhere, e.g. in a stats struct, is set this way). Returns TB_OK,
 * TB_ERR_INVALID (unknown id, a histogram, a negative or NaN counter value)
 * or TB_ERR_NOMEM. */
tb_err_t tb_metrics_set(tb_metrics_t *self, int id, const char *labels, double v);
/* Adds delta to a counter (delta >= 0) or a gauge. Returns as tb_metrics_set. */
tb_err_t tb_metrics_add(tb_metrics_t *self, int id, const char *labels, double delta);
/* Records one observation in a histogram series. Returns TB_OK,
 * TB_ERR_INVALID (unknown id, not a histogram, NaN) or TB_ERR_NOMEM. */
tb_err_t tb_metrics_observe(tb_metrics_t *self, int id, const char *labels, double v);
/* Creates the series at zero if it does not exist yet, so that it is
 * rendered before its first event. Returns as tb_metrics_set. */
tb_err_t tb_metrics_touch(tb_metrics_t *self, int id, const char *labels);
/* Reads a counter or gauge series (a histogram: its count). Returns TB_OK,
 * TB_ERR_NOTFOUND (no such series) or TB_ERR_INVALID (unknown id). */
tb_err_t tb_metrics_get(const tb_metrics_t *self, int id, const char *labels, double *v);

/* Renders every family: "# HELP", "# TYPE", then one line per series (a
 * histogram: _bucket{le=...} cumulative, _sum, _count). *text is
 * NUL-terminated and malloc'd (free it); *len excludes the NUL. A family
 * without series renders only its HELP and TYPE lines. Returns TB_OK or
 * TB_ERR_NOMEM. */
tb_err_t tb_metrics_render(const tb_metrics_t *self, char **text, size_t *len);

/* Writes the label string name1="value1",name2="value2",... for the
 * NULL-terminated list of name, value pairs into buf, escaping backslash,
 * double quote and newline in the values. Label names must match
 * [a-zA-Z_][a-zA-Z0-9_]* and not start with "__". Returns 0, or -1 if a
 * name is invalid or buf is too small (buf is then ""). */
int tb_metrics_labels(char *buf, size_t len, ...) __attribute__((sentinel));

/* Seconds on the monotonic clock, for timing what a histogram observes:
 * t0 = tb_metrics_now(); ...; tb_metrics_observe(m, id, l, tb_metrics_now() - t0). */
double tb_metrics_now(void);

/* Writes v as a sample value: integers without a fraction, "+Inf",
 * "-Inf", "NaN", other values with the fewest digits that read back
 * exactly. Returns buf. */
char *tb_metrics_format_value(double v, char *buf, size_t len);

#endif
