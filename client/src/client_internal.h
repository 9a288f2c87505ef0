/* client_internal.h -- what the client_*.c files of libtongban share: the
 * client handle and the request/reply call under the typed helpers.
 * Not installed; every symbol here is hidden in libtongban.so. */
#ifndef TB_CLIENT_INTERNAL_H
#define TB_CLIENT_INTERNAL_H

#include <stdint.h>

#include <jansson.h>

#include <tongban/tongban.h>

#define TBC_ERRLEN 512
#define TBC_MAX_MSG (16 * 1024 * 1024)   /* ZMQ_MAXMSGSIZE of requests and replies */

struct tb_client {
    void *ctx;                 /* own ZeroMQ context                               */
    void *sock;                /* DEALER connected to the node's API               */
    void *mon;                 /* PAIR receiving the socket monitor's events       */
    char *endpoint;
    int timeout_ms;
    uint64_t next_id;          /* request ids: 1, 2, ... (monotonic per handle)    */
    int connected;             /* monitor: a connection is up                      */
    unsigned retries;          /* monitor: connection attempts refused / retried   */
    char mon_fail[160];        /* monitor: the last handshake failure, explained   */
    char *result;              /* the last reply's result text (tb_client_result)  */
    char err[TBC_ERRLEN];      /* tb_client_error                                  */
};

/* Sets c's error line (printf-style) and returns e, for `return tbc_fail(...)`. */
tb_err_t tbc_fail(tb_client_t *c, tb_err_t e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sends op with args (JSON text of an object) and waits up to wait_ms for
 * the reply with this request's id. Returns the node's status or a local
 * error; *result (if non-NULL) gets the parsed result object whenever the
 * reply carried one (also with an error status), else NULL. Sets c->err on
 * failure and c->result to the reply's result text. */
tb_err_t tbc_request(tb_client_t *c, const char *op, const char *args, int wait_ms,
                     json_t **result);

/* As tbc_request with args as a JSON object, which is consumed (decref'ed)
 * whatever happens (NULL: TB_ERR_NOMEM). */
tb_err_t tbc_call(tb_client_t *c, const char *op, json_t *args, int wait_ms, json_t **result);

/* Builds the arguments object from (const char *key, const char *value)
 * pairs ending with a NULL key; a NULL value leaves its key out. Returns
 * TB_OK with *out set, or TB_ERR_INVALID (a value is not UTF-8) /
 * TB_ERR_NOMEM with c's error set. */
tb_err_t tbc_args(tb_client_t *c, json_t **out, ...);

/* Starts a call: clears the error and the last result; returns TB_OK, or
 * TB_ERR_INVALID if c is NULL. */
tb_err_t tbc_begin(tb_client_t *c);

/* Checks a required string argument (non-NULL, non-empty). Returns TB_OK
 * or TB_ERR_INVALID with the error naming what. */
tb_err_t tbc_need(tb_client_t *c, const char *what, const char *s);

/* obj[key] = string val (skipped when val is NULL). Returns 0, or -1 if
 * val is not UTF-8 (c's error set) or memory ran out. */
int tbc_set_str(tb_client_t *c, json_t *obj, const char *key, const char *val);

/* Parses text as a JSON object for argument `what`; NULL (error set) if it
 * is not one. */
json_t *tbc_parse_object(tb_client_t *c, const char *what, const char *text);

/* A malloc'ed compact JSON text of v ("null" if v is NULL); NULL if out of
 * memory. */
char *tbc_dump(const json_t *v);

/* *out = a malloc'ed copy of the string member key of obj. Returns TB_OK,
 * TB_ERR_PROTO if it is absent or not a string, TB_ERR_NOMEM (c's error set). */
tb_err_t tbc_dup_member(tb_client_t *c, const char *op, const json_t *obj, const char *key, char **out);

/* Decodes one reply frame (a packed ApiReply) for the request want_id of
 * op. *stale = 1 (and TB_OK, nothing else set) if it answers another
 * request; else as tbc_request: the node's status or TB_ERR_PROTO /
 * TB_ERR_NOMEM, c's error and c->result set, *result (if non-NULL) the
 * parsed result object or NULL. c->result must be NULL on entry. */
tb_err_t tbc_reply_frame(tb_client_t *c, const char *op, const void *data, size_t len, uint64_t want_id,
                         int *stale, json_t **result);

/* Fills out from a licence.verify result. TB_OK, or TB_ERR_PROTO (c's
 * error set) if it has no verdict of the contract. */
tb_err_t tbc_parse_verify(tb_client_t *c, const json_t *res, tb_verify_result_t *out);

/* Parses the events array of an events.next result into a new batch of
 * *out_n events (ids increasing, all after `after`). TB_OK (*out_n may be
 * 0), or TB_ERR_PROTO / TB_ERR_NOMEM with c's error set. Free the batch
 * with tbc_events_free; its events point into res, which must outlive it. */
tb_err_t tbc_events_parse(tb_client_t *c, json_t *res, long long after, tb_event_t **out, size_t *out_n);
void tbc_events_free(tb_event_t *b, size_t n);
/* The i-th event of a batch. */
const tb_event_t *tbc_event_at(const tb_event_t *b, size_t i);

#endif
