/* api_internal.h -- what the api*.c modules of the node's client API share
 * (not a public interface: node.c uses api.h only).
 *
 *   api.c             the server: socket, ZAP, framing, dispatch, parked
 *                     requests, timers, stats, the store helpers
 *   api_args.c        pure: request decoding and per-op argument checks
 *                     (no database, no socket; fuzzed by fuzz/fuzz_api.c)
 *   api_licence.c     licence.* and the verify flow at the issuer
 *   api_case.c        case.*
 *   api_supervision.c record.*, supitem.*, risk.*, complaint.*, events.*
 */
#ifndef TB_API_INTERNAL_H
#define TB_API_INTERNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "domain.h"
#include "node_internal.h"

#define PARKED (-1)            /* an op's return: answered later */
#define ERRLEN 600
#define API_ATTACH_CHUNK 262144L                /* bytes of one tb.chunk (the last may be shorter) */
#define API_ATTACH_MAX_BYTES 67108864LL         /* largest attachment: 64 MiB */
#define API_ATTACH_MAX_CHUNKS 256LL             /* API_ATTACH_MAX_BYTES / API_ATTACH_CHUNK */

typedef struct {
    uint8_t rid[256];          /* ZeroMQ routing ids are at most 255 bytes */
    size_t rid_len;
    int delim;                 /* a REQ client: echo the empty delimiter */
    uint64_t id;
    char op[40];
    uint64_t t0;
} req_t;

enum { P_FREE = 0, P_VERIFY, P_EVENTS };

typedef struct {
    int kind;
    req_t rq;
    uint64_t deadline;
    /* P_VERIFY: the local answer so far, replaced by the issuer's */
    uint64_t query_id;
    char issuer[TB_ID_MAX + 1];
    long timeout_ms;
    json_t *result;
    tb_err_t status;
    char error[ERRLEN];
    /* P_EVENTS */
    char *cursor, *after;
    char max[16];
    uint64_t next_check;
} park_t;

struct api {
    node_t *node;
    void *sock, *zap;
    char endpoint[TB_PATH_MAX + 16];
    int tcp;
    uint8_t (*keys)[32];       /* tcp: the admitted client public keys */
    size_t nkeys;
    park_t park[API_MAX_PARKED];
    int wake;                  /* waiting events.next look again at the next timer */
    int backlog;               /* the budget ran out with requests waiting */
    int wrote;                 /* requests wrote to the database (events.next looks again) */
    int used_db;               /* requests used the database since api_used_db */
    api_stats_t st;
};

/* ------------------------------------------------------------------------
 * Pure part (api_args.c): decoding and argument checks
 * ------------------------------------------------------------------------ */

/* The operations of docs/client-api.md, in the order of api_ops[]. */
typedef enum {
    API_OP_RECORD_PUT,
    API_OP_RECORD_GET,
    API_OP_RECORD_DELETE,
    API_OP_LICENCE_ISSUE,
    API_OP_LICENCE_UPDATE,
    API_OP_LICENCE_SUSPEND,
    API_OP_LICENCE_RESUME,
    API_OP_LICENCE_REVOKE,
    API_OP_LICENCE_GET,
    API_OP_LICENCE_FIND,
    API_OP_LICENCE_VERIFY,
    API_OP_CASE_SUBMIT,
    API_OP_CASE_ACT,
    API_OP_CASE_RATE,
    API_OP_CASE_GET,
    API_OP_CASE_HISTORY,
    API_OP_CASE_LIST,
    API_OP_SUPITEM_PUT,
    API_OP_SUPITEM_LIST,
    API_OP_RISK_PUBLISH,
    API_OP_COMPLAINT_FILE,
    API_OP_COMPLAINT_ACK,
    API_OP_COMPLAINT_GET,
    API_OP_EVENTS_NEXT,
    API_OP_EVENTS_ACK,
    API_OP_CASE_ATTACH,
    API_OP_CASE_ATTACHMENT,
    API_OP_CASE_ATTACHMENT_CHUNK,
    API_OP__COUNT
} api_op_t;

/* What a check needs from the node besides the arguments (api_ops[].needs):
 * the handler's context is prepared before the check, in this order. */
enum {
    API_NEED_NOW = 1,          /* ctx.now: domain_now()                            */
    API_NEED_ID = 2,           /* ctx.id: "<node>-<12 hex>" (risk, complaint)      */
    API_NEED_CASE_ID = 4,      /* ctx.id: "<node>-<YYYYMMDD>-<12 hex>" (case.submit) */
    API_NEED_EVENT_ID = 8      /* ctx.event_id: 16 hex (case.submit, act, rate)    */
};

/* The node-side inputs of a check (all NUL-terminated; unused ones NULL). */
typedef struct {
    const char *node_id;       /* this node (issuer_node, accepting, filed_by...)  */
    const char *now;           /* RFC 3339 UTC timestamp                           */
    const char *id;            /* the new case / risk / complaint id               */
    const char *event_id;      /* the new case event id                            */
} api_ctx_t;

/* The checked arguments of one request. Strings and value point into the
 * args object (valid while it lives); body is owned (api_args_free). */
typedef struct {
    const json_t *args;        /* the whole arguments object                       */
    const char *catalog, *key; /* record.*                                         */
    const json_t *value;       /* record.put: body (any JSON value)                */
    const char *identifier;    /* licence.* but issue                              */
    const char *holder_code;   /* licence.find                                     */
    long long timeout_ms;      /* licence.verify                                   */
    int ask_issuer;            /* licence.verify                                   */
    const char *case_id;       /* case.get, case.history, case.attach*             */
    const char *sha256;        /* case.attach*: 64 lowercase hex                   */
    const char *data;          /* case.attach: base64 of one chunk                 */
    long long size, index;     /* case.attach: whole size; chunk index (attach*)   */
    const char *state;         /* case.list (NULL: any)                            */
    const char *overdue;       /* case.list: "true", "false" or NULL               */
    const char *level;         /* supitem.list (NULL: any)                         */
    const char *complaint_id;  /* complaint.ack, complaint.get                     */
    const char *cursor;        /* events.*                                         */
    long long max, wait_ms, after, id;   /* events.next (after -1: none); events.ack id */
    const char *new_id;        /* ctx->id, ctx->event_id (the handler's keys)     */
    const char *event_id;
    json_t *body;              /* the body built by domain_* (licence.issue,
                                * case.submit/act/rate, supitem.put, risk.publish,
                                * complaint.file)                                  */
} api_args_t;

typedef tb_err_t (*api_check_fn)(const json_t *args, const api_ctx_t *ctx, api_args_t *out, char *err,
                                 size_t errlen);

typedef struct {
    const char *name;          /* "licence.issue" */
    api_check_fn check;
    unsigned needs;            /* API_NEED_* */
} api_op_spec_t;

extern const api_op_spec_t api_ops[API_OP__COUNT];

/* The op named name, or -1. */
int api_op_find(const char *name);

/* A decoded request (api_request_decode). */
typedef struct {
    uint64_t id;
    int has_id;                /* id is known (always after TB_OK; after
                                * TB_ERR_PROTO if the frame starts with it) */
    int op;                    /* api_op_t, -1 if unknown */
    char op_name[40];          /* the op as sent, for log lines: [A-Za-z0-9._] or '?' */
    json_t *args;              /* the arguments object (TB_OK only; owned) */
} api_request_t;

/* Decodes one ApiRequest frame. Returns TB_OK with out filled (args
 * owned: api_request_clear), TB_ERR_PROTO (not a packed ApiRequest:
 * out->has_id tells whether the id could be read) or TB_ERR_INVALID
 * (unknown op, args not a JSON object) with id/op_name set; err gets one
 * line on error. */
tb_err_t api_request_decode(const uint8_t *data, size_t len, api_request_t *out, char *err, size_t errlen);
void api_request_clear(api_request_t *r);

/* Runs op's check: TB_OK with out filled (api_args_free after), or
 * TB_ERR_INVALID (or the domain_* error) with one line in err naming the
 * field. Touches neither the store nor the network. */
tb_err_t api_args_check(int op, const json_t *args, const api_ctx_t *ctx, api_args_t *out, char *err,
                        size_t errlen);
void api_args_free(api_args_t *a);

/* Makes s one printable line: control characters become spaces. Returns s. */
char *api_one_line(char *s);

/* Argument helpers (also used by the handlers). */
tb_err_t api_need_str(const json_t *args, const char *name, size_t max, const char **out, char *err,
                      size_t errlen);
tb_err_t api_opt_int(const json_t *args, const char *name, long long lo, long long hi, long long def,
                     long long *out, char *err, size_t errlen);
tb_err_t api_need_name(const json_t *args, const char *name, size_t max, const char **out, char *err,
                       size_t errlen);

/* The string member k of o, or NULL. */
static inline const char *jstr(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* ------------------------------------------------------------------------
 * Server helpers (api.c)
 * ------------------------------------------------------------------------ */

extern const char *const api_comp;   /* "api": log component */

/* This node's id. */
const char *api_me(const api_t *self);
/* The directory certificate of node id (NULL: unknown); *revoked. arg is the node_t. */
const tb_cert_t *api_dir_cert(void *arg, const char *id, int *revoked);
/* tongban.<fn>(args) in the node's database; *out (may be NULL) gets its JSON result. */
tb_err_t api_db(api_t *self, const char *fn, const char *const *args, int n, json_t **out, char *err,
                size_t errlen);
/* A domain write (domain_insert / domain_put) of body under catalog/key. */
tb_err_t api_db_write(api_t *self, const char *fn, const char *catalog, const char *key, const json_t *body,
                      char *err, size_t errlen);
/* domain_seal with the node's key, then api_db_write. */
tb_err_t api_seal_and_write(api_t *self, domain_kind_t kind, const char *fn, const char *catalog,
                            const char *key, json_t *body, char *err, size_t errlen);
/* The body inside a domain function's result, without the meta members. */
json_t *api_unwrap(const json_t *r, double *age);
/* Answers rq: status, the error line (status != 0) and result (may be NULL). */
void api_finish(api_t *self, const req_t *rq, tb_err_t status, const char *error, const json_t *result);
park_t *api_park_new(api_t *self, const req_t *rq, int kind, uint64_t deadline);
void api_park_free(park_t *p);

/* ------------------------------------------------------------------------
 * Handlers: TB_OK / an error with err set / PARKED
 * ------------------------------------------------------------------------ */

typedef int (*api_op_fn)(api_t *self, const req_t *rq, api_args_t *a, uint64_t now, json_t **res, char *err,
                         size_t errlen);

/* api_licence.c */
int api_op_licence_issue(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);
int api_op_licence_update(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);
int api_op_licence_suspend(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);
int api_op_licence_resume(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);
int api_op_licence_revoke(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);
int api_op_licence_get(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);
int api_op_licence_find(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);
int api_op_licence_verify(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);
/* The issuer's Reply to parked verify p; its deadline passed. Both answer and free p. */
void api_verify_answered(api_t *self, park_t *p, const Tongban__Reply *r);
void api_verify_timeout(api_t *self, park_t *p);

/* api_case.c */
int api_op_case_submit(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);
int api_op_case_act(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);
int api_op_case_rate(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);
int api_op_case_get(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);
int api_op_case_history(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);
int api_op_case_list(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);

/* api_case.c: attachments */
int api_op_case_attach(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);
int api_op_case_attachment(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);
int api_op_case_attachment_chunk(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);

/* api_supervision.c */
int api_op_record_put(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);
int api_op_record_get(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);
int api_op_record_delete(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);
int api_op_supitem_put(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);
int api_op_supitem_list(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);
int api_op_risk_publish(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);
int api_op_complaint_file(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);
int api_op_complaint_ack(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);
int api_op_complaint_get(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);
int api_op_events_next(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);
int api_op_events_ack(api_t *, const req_t *, api_args_t *, uint64_t, json_t **, char *, size_t);
/* A waiting events.next looks again: answers (and frees p) if something came or its time is up. */
void api_events_recheck(api_t *self, park_t *p, uint64_t now);

#endif
