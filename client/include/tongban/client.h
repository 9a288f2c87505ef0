/* client.h -- libtongban's client: talk to the local tongban-node's API.
 *
 * A tb_client_t is one connection to one node's API endpoint (a ZeroMQ
 * DEALER socket; docs/client-api.md is the contract of every operation, its
 * JSON arguments and result). On top of the raw call, tb_call(), come typed
 * helpers for records, electronic licences, cross-region cases, supervision
 * and the node's event stream.
 *
 * Conventions, for every function below:
 *  - it returns TB_OK or an error (tb_err_t); a handle or string it hands out
 *    through an out-parameter is set on TB_OK and set to NULL on failure
 *    (out-parameters documented "may be NULL" are then simply not filled);
 *  - tb_client_error() says, in one line, why the last call on that client
 *    failed: the node's own error text (which names the field or rule) or the
 *    local reason (not reachable, timed out, malformed reply, bad argument);
 *  - every call can fail with TB_ERR_INVALID (bad argument, checked locally
 *    or by the node), TB_ERR_NOMEM, TB_ERR_UNAVAILABLE (no connection to the
 *    node within the timeout, or the node's PostgreSQL is away),
 *    TB_ERR_TIMEOUT (the request was sent but no reply came in time),
 *    TB_ERR_PROTO (the reply is not a well-formed ApiReply / JSON object) and
 *    TB_ERR_DB (the node's database failed); other codes are listed where
 *    they are specific;
 *  - strings handed out as char * are malloc'ed: release them with tb_free();
 *    const char * results belong to their handle (valid until it is freed,
 *    or for the client, until its next call);
 *  - JSON arguments are UTF-8 text of a JSON object.
 *
 * Threads: a client handle -- and the event and result handles made from it
 * -- must be used by one thread at a time (no internal locking); separate
 * handles are independent and may be used from different threads.
 */
#ifndef TONGBAN_CLIENT_H
#define TONGBAN_CLIENT_H

#include <stddef.h>

#include <tongban/tongban.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* The connection                                                      */
/* ------------------------------------------------------------------ */

typedef struct tb_client tb_client_t;

/* Options of tb_client_open; a zeroed struct (or a NULL pointer) means the
 * defaults. */
typedef struct {
    int timeout_ms;              /* wait for each reply, 1..600000; 0 = 5000          */
    const char *server_key;      /* the node's CURVE public key (Z85, 40 characters):
                                    required for tcp://, turns CURVE on for ipc://   */
    const char *client_public;   /* this client's CURVE key pair (Z85); the secret is */
    const char *client_secret;   /* required with server_key, the public one is derived
                                    from it when NULL (and checked against it if set) */
    char *errbuf;                /* if non-NULL: tb_client_open writes one line here  */
    size_t errlen;               /* saying why it failed (size of errbuf)             */
} tb_client_opts_t;

/* Opens a client of the node API at endpoint: "ipc://PATH" (the default of a
 * node is ipc://<directory of node.admin>/tongban-node-<id>.api, see
 * api.listen in the operator guide) or "tcp://HOST:PORT" (CURVE: give the
 * node's public key and a key pair whose public key is in the node's
 * api.clients). Does not wait for the node: the connection is made in the
 * background and each call waits for it up to the timeout, so a client may
 * be opened before its node starts. *out is set on TB_OK (NULL otherwise).
 * Errors: TB_ERR_INVALID (endpoint or key malformed, tcp:// without keys),
 * TB_ERR_NOMEM, TB_ERR_IO (ZeroMQ refused the socket or endpoint). */
TB_EXPORT tb_err_t tb_client_open(const char *endpoint, const tb_client_opts_t *opts,
                                  tb_client_t **out);

/* Closes the client and sets *c to NULL; unsent or unanswered requests are
 * dropped. NULL-safe (c or *c NULL: nothing happens). Event cursors opened
 * on it (tb_events_open) must be closed first. */
TB_EXPORT void tb_client_close(tb_client_t **c);

/* One line saying why the last call on c failed ("" if it succeeded; a
 * static text if c is NULL). Valid until the next call on c. */
TB_EXPORT const char *tb_client_error(const tb_client_t *c);

/* The result JSON of the last reply the node sent on c (also with an
 * error, when the node attached one), as the node sent it; NULL if the last
 * call got no reply or a reply without a result. Lets a caller of a typed
 * helper see every field of the answer. Valid until the next call on c. */
TB_EXPORT const char *tb_client_result(const tb_client_t *c);

/* Reads a CURVE key file as `tbctl pki curve` writes it (40 Z85 characters
 * and a newline) into out (41 bytes, NUL-terminated). With is_secret the
 * file must not be readable by group or others. Errors: TB_ERR_IO (cannot
 * read), TB_ERR_PERM (secret key file too open), TB_ERR_INVALID (not a Z85
 * key); why (if non-NULL) gets one line naming the file. */
TB_EXPORT tb_err_t tb_client_read_key(const char *path, int is_secret, char out[41],
                                      char *why, size_t whylen);

/* The raw call: sends op (e.g. "licence.get") with args_json (a JSON object;
 * NULL = {}) and waits for the reply. On TB_OK *result_json (if result_json
 * is non-NULL) is the result object as text. On failure it is the result the
 * node attached to its error, if any (e.g. licence.verify), else NULL.
 * Returns the node's status (any tb_err_t, see docs/client-api.md) or a
 * local error. Free *result_json with tb_free. */
TB_EXPORT tb_err_t tb_call(tb_client_t *c, const char *op, const char *args_json,
                           char **result_json);

/* Releases a string handed out by libtongban. NULL-safe. */
TB_EXPORT void tb_free(void *p);

/* ------------------------------------------------------------------ */
/* Records: the shared data of plain catalogs (not starting with "tb.")  */
/* ------------------------------------------------------------------ */

/* Creates or replaces (catalog, key) with body_json (any JSON value; an
 * object is advised). The new version is in tb_client_result(). */
TB_EXPORT tb_err_t tb_record_put(tb_client_t *c, const char *catalog, const char *key,
                                 const char *body_json);

/* Reads (catalog, key): *body_json = its body (free with tb_free); version,
 * origin and updated_at are in tb_client_result(). TB_ERR_NOTFOUND if
 * there is no such record. */
TB_EXPORT tb_err_t tb_record_get(tb_client_t *c, const char *catalog, const char *key,
                                 char **body_json);

/* Deletes (catalog, key) everywhere it was sent. TB_ERR_NOTFOUND if there
 * is no such record. */
TB_EXPORT tb_err_t tb_record_delete(tb_client_t *c, const char *catalog, const char *key);

/* ------------------------------------------------------------------ */
/* Electronic licences (tb.licence)                                     */
/* ------------------------------------------------------------------ */

/* A licence as the node returned it (every field, status, revision, seal). */
typedef struct tb_licence tb_licence_t;

/* Issues a licence on this node (its issuer): fields_json is the object of
 * licence.issue (identifier, type_code, ..., see docs/client-api.md). The
 * node validates every identifier and date and seals it. *out (may be NULL)
 * is the stored licence. TB_ERR_INVALID names the bad field;
 * TB_ERR_DUPLICATE if the identifier exists. */
TB_EXPORT tb_err_t tb_licence_issue(tb_client_t *c, const char *fields_json, tb_licence_t **out);

/* Changes content fields of licence id (fields_json: the fields to change;
 * not the identifier or issuer fields); revision + 1, resealed. *out (may
 * be NULL) is the new licence. TB_ERR_REFUSED on a node that did not issue
 * it; TB_ERR_NOTFOUND if unknown. */
TB_EXPORT tb_err_t tb_licence_update(tb_client_t *c, const char *id, const char *fields_json,
                                     tb_licence_t **out);

/* Status changes, on the issuing node only (TB_ERR_REFUSED elsewhere, or for
 * a change the rules forbid: a revoked licence never changes again).
 * reason is required for suspend and revoke, optional (NULL) for resume.
 * *out (may be NULL) is the new licence. */
TB_EXPORT tb_err_t tb_licence_suspend(tb_client_t *c, const char *id, const char *reason,
                                      tb_licence_t **out);
TB_EXPORT tb_err_t tb_licence_resume(tb_client_t *c, const char *id, const char *reason,
                                     tb_licence_t **out);
TB_EXPORT tb_err_t tb_licence_revoke(tb_client_t *c, const char *id, const char *reason,
                                     tb_licence_t **out);

/* The node's copy of licence id. TB_ERR_NOTFOUND if it has none. */
TB_EXPORT tb_err_t tb_licence_get(tb_client_t *c, const char *id, tb_licence_t **out);

/* The licences of a holder (citizen ID or USCC): *json = {"licences": [...]}
 * (possibly empty). */
TB_EXPORT tb_err_t tb_licence_find(tb_client_t *c, const char *holder_code, char **json);

/* A top-level field of the licence as a string ("status", "holder_name",
 * ...), or NULL if absent, not a string, or lic is NULL. */
TB_EXPORT const char *tb_licence_field(const tb_licence_t *lic, const char *name);
/* Its revision (1 when issued, + 1 per change); 0 if absent or lic NULL. */
TB_EXPORT int tb_licence_revision(const tb_licence_t *lic);
/* The whole licence as compact JSON text ("" if lic is NULL). */
TB_EXPORT const char *tb_licence_json(const tb_licence_t *lic);
/* Frees *lic and sets it to NULL. NULL-safe. */
TB_EXPORT void tb_licence_free(tb_licence_t **lic);

typedef enum {
    TB_VERDICT_VALID,
    TB_VERDICT_SUSPENDED,
    TB_VERDICT_REVOKED,
    TB_VERDICT_EXPIRED,
    TB_VERDICT_NOT_YET_VALID,
    TB_VERDICT_BAD_SEAL,          /* the seal does not verify: do not trust the copy */
    TB_VERDICT_UNKNOWN            /* no copy here and no answer from the issuer      */
} tb_verdict_t;

/* Ask the issuing node (through the hub) for the licence's current state. */
#define TB_VERIFY_ASK_ISSUER 1

typedef struct {
    tb_verdict_t verdict;
    int seal_ok;                  /* 1: the seal of the copy judged verifies          */
    int authoritative;            /* 1: the issuer answered (source issuer), or this
                                     node is the issuer                              */
    int issuer_unavailable;       /* 1: the issuer was asked but is offline or silent:
                                     the verdict is from the local copy              */
    long long local_age_s;        /* seconds since the local copy was last updated
                                     (-1 if not reported)                            */
    int revision;                 /* revision of the copy judged (0 if unknown)       */
    char issuer_node[64];         /* the issuing node's id                            */
    char source[16];              /* "local" | "issuer"                               */
    char issuer[16];              /* "answered" | "unavailable" | "timeout" |
                                     "not_asked" | "self"                            */
    char status[16];              /* the licence's status field ("valid", ...)       */
    char valid_from[16];          /* YYYY-MM-DD                                       */
    char valid_to[16];            /* YYYY-MM-DD, "" if open-ended                     */
    char detail[256];             /* the node's explanation, one line                 */
} tb_verify_result_t;

/* Verifies licence identifier: its seal, status and dates, from the node's
 * copy or -- with TB_VERIFY_ASK_ISSUER -- from the issuer, waiting up to
 * timeout_ms for it (0 = the client's timeout; 1..60000). The call itself
 * waits up to the issuer's timeout plus the client's. *out is filled
 * whenever the node answered with a verdict, also along with an error:
 * TB_OK for the verdicts valid, suspended, revoked, expired, not_yet_valid
 * (an answer: check out->verdict); TB_ERR_BADSIG with verdict bad_seal;
 * TB_ERR_NOTFOUND with verdict unknown when there is no such licence;
 * TB_ERR_UNAVAILABLE with verdict unknown when it cannot be checked now
 * (e.g. the issuer's certificate is not known yet). Also TB_ERR_INVALID
 * (flags, timeout, identifier) and the common errors (out->verdict is then
 * TB_VERDICT_UNKNOWN). */
TB_EXPORT tb_err_t tb_licence_verify(tb_client_t *c, const char *identifier, int flags,
                                     int timeout_ms, tb_verify_result_t *out);

/* "valid", "suspended", "revoked", "expired", "not_yet_valid", "bad_seal",
 * "unknown" (static; "unknown" for a value out of range). */
TB_EXPORT const char *tb_verdict_name(tb_verdict_t v);

/* ------------------------------------------------------------------ */
/* Cross-region cases (tb.case_event)                                   */
/* ------------------------------------------------------------------ */

/* A case as the node returned it (case.get shape). */
typedef struct tb_case tb_case_t;

typedef enum {
    TB_CASE_WITHDRAW,             /* accepting node, from submitted                  */
    TB_CASE_ACCEPT,               /* lead handling node, from submitted              */
    TB_CASE_REJECT,               /* lead handling, from submitted/accepted/in_progress */
    TB_CASE_START,                /* lead handling, from accepted                    */
    TB_CASE_PART_DONE,            /* each handling node once (joint), in_progress    */
    TB_CASE_DECIDE,               /* lead handling, from in_progress                 */
    TB_CASE_DELIVER               /* accepting node, from decided                    */
} tb_case_action_t;

/* Files a case on this node (the accepting node): submit_json is the object
 * of case.submit (service_item, applicant_*, mode, handling, deadline,
 * materials?, detail?). *out (may be NULL) is the new case. */
TB_EXPORT tb_err_t tb_case_submit(tb_client_t *c, const char *submit_json, tb_case_t **out);

/* Moves case case_id by action; detail and result are optional (NULL).
 * *out (may be NULL) is the case afterwards. TB_ERR_REFUSED (naming the
 * rule) for an illegal transition: wrong state or wrong party. */
TB_EXPORT tb_err_t tb_case_act(tb_client_t *c, const char *case_id, tb_case_action_t action,
                               const char *detail, const char *result, tb_case_t **out);

/* Rates a delivered case for the applicant (score 1..5; comment optional).
 * *out may be NULL. TB_ERR_REFUSED if not delivered or not the accepting
 * node. */
TB_EXPORT tb_err_t tb_case_rate(tb_client_t *c, const char *case_id, int score,
                                const char *comment, tb_case_t **out);

/* The case. TB_ERR_NOTFOUND if the node does not know it. */
TB_EXPORT tb_err_t tb_case_get(tb_client_t *c, const char *case_id, tb_case_t **out);

/* Its signed events in order: *json = {"events": [...]}. */
TB_EXPORT tb_err_t tb_case_history(tb_client_t *c, const char *case_id, char **json);

/* The cases this node takes part in: state (NULL = any) and, with
 * overdue_only, only overdue ones. *json = {"cases": [...]}. */
TB_EXPORT tb_err_t tb_case_list(tb_client_t *c, const char *state, int overdue_only, char **json);

/* Uploads file path as an attachment of case case_id (a party of the case
 * on this node; the case's materials must name the file's SHA-256): hashes
 * it (SHA-256) into sha256_hex_out (65 bytes) and sends it in chunks of
 * 256 KiB (case.attach), skipping those the node already has, so a failed
 * upload resumes. name (NULL: the file's base name) is informational. At
 * most 64 MiB. TB_ERR_REFUSED if the materials do not name the hash. */
TB_EXPORT tb_err_t tb_case_attach_file(tb_client_t *c, const char *case_id, const char *path,
                                       const char *name, char sha256_hex_out[65]);

/* The attachment's status on this node: *json = {case_id, sha256, size,
 * count, have: [chunk indexes], complete}. TB_ERR_NOTFOUND: no such case. */
TB_EXPORT tb_err_t tb_case_attachment_status(tb_client_t *c, const char *case_id, const char *sha256,
                                             char **json);

/* Writes attachment sha256 (64 lowercase hex) of case case_id, as this node
 * has it, to out_path and checks its SHA-256: TB_ERR_UNAVAILABLE ("have N
 * of M chunks") while chunks are missing, TB_ERR_BADSIG if the bytes do not
 * hash to sha256 (out_path is then left with them, for inspection). */
TB_EXPORT tb_err_t tb_case_fetch_attachment(tb_client_t *c, const char *case_id, const char *sha256,
                                            const char *out_path);

/* Fields of a case handle; NULL / 0 / "" when absent or cs is NULL. */
TB_EXPORT const char *tb_case_id(const tb_case_t *cs);
TB_EXPORT const char *tb_case_state(const tb_case_t *cs);
TB_EXPORT int tb_case_overdue(const tb_case_t *cs);          /* 1 if overdue     */
TB_EXPORT const char *tb_case_json(const tb_case_t *cs);     /* compact JSON text */
/* Frees *cs and sets it to NULL. NULL-safe. */
TB_EXPORT void tb_case_free(tb_case_t **cs);

/* "withdraw", "accept", ... (the wire names; static; NULL if out of range). */
TB_EXPORT const char *tb_case_action_name(tb_case_action_t a);
/* The action of a wire name; TB_ERR_INVALID if name is none of them. */
TB_EXPORT tb_err_t tb_case_action_parse(const char *name, tb_case_action_t *out);

/* ------------------------------------------------------------------ */
/* Supervision: items, risk warnings, complaints                        */
/* ------------------------------------------------------------------ */

/* Creates or changes supervision item code (owner = this node): level is
 * national|provincial|city|county, parent optional (NULL), region the
 * 6-digit division code. *json (may be NULL) is the stored item. */
TB_EXPORT tb_err_t tb_supitem_put(tb_client_t *c, const char *code, const char *name,
                                  const char *level, const char *parent, const char *region,
                                  char **json);

/* The supervision items this node has, of one level (NULL = all):
 * *json = {"items": [...]}. */
TB_EXPORT tb_err_t tb_supitem_list(tb_client_t *c, const char *level, char **json);

/* Publishes a risk warning to every region: level 1..4, title and detail
 * required, region optional (NULL). *risk_id (may be NULL) is its id. */
TB_EXPORT tb_err_t tb_risk_publish(tb_client_t *c, int level, const char *title,
                                   const char *detail, const char *region, char **risk_id);

/* Files a complaint or report with the responsible node region: kind is
 * "complaint" or "report". *complaint_id (may be NULL) is its id. */
TB_EXPORT tb_err_t tb_complaint_file(tb_client_t *c, const char *region, const char *kind,
                                     const char *subject, const char *detail,
                                     char **complaint_id);

/* Acknowledges complaint id on the responsible node (note optional); the
 * receipt travels back to the filing node. TB_ERR_REFUSED elsewhere. */
TB_EXPORT tb_err_t tb_complaint_ack(tb_client_t *c, const char *id, const char *note);

/* The complaint with its receipt (null until acknowledged): *json. */
TB_EXPORT tb_err_t tb_complaint_get(tb_client_t *c, const char *id, char **json);

/* ------------------------------------------------------------------ */
/* Events: every tb.* change on the node, with a durable cursor          */
/* ------------------------------------------------------------------ */

typedef struct tb_events tb_events_t;
typedef struct tb_event tb_event_t;

/* Opens the event stream of cursor_name (the application's name for its
 * position, kept by the node in tongban.event_cursors). Nothing is sent
 * yet: the first tb_events_next starts after the cursor's durable position.
 * The client must stay open while ev is used. */
TB_EXPORT tb_err_t tb_events_open(tb_client_t *c, const char *cursor_name, tb_events_t **out);

/* The next event, in id order: fetched from the node in batches of up to
 * 100 and handed out one at a time. When none is buffered, asks the node
 * and waits up to wait_ms (0..30000) for one. *out stays valid until a
 * later tb_events_next hands out another event (a call that fails or finds
 * none leaves it valid, so it can still be acked), or tb_events_close.
 * TB_ERR_TIMEOUT if no event came
 * within wait_ms (tb_client_result() is then non-NULL: the node answered
 * with no event; NULL if the node itself did not answer). Delivery is
 * at-least-once: after a restart the events after the last ack come again. */
TB_EXPORT tb_err_t tb_events_next(tb_events_t *ev, int wait_ms, const tb_event_t **out);

/* Persists the cursor at e (e and everything before it are done; the
 * position never moves back). Ack after the event's work is committed. */
TB_EXPORT tb_err_t tb_events_ack(tb_events_t *ev, const tb_event_t *e);

/* The same by event id (e.g. one the application stored): the cursor
 * moves to id (never back). TB_ERR_INVALID if id <= 0. */
TB_EXPORT tb_err_t tb_events_ack_id(tb_events_t *ev, long long id);

/* Closes the stream (not the client) and sets *ev to NULL. NULL-safe. */
TB_EXPORT void tb_events_close(tb_events_t **ev);

/* Fields of an event (0 / NULL if e is NULL): */
TB_EXPORT long long tb_event_id(const tb_event_t *e);        /* increasing id        */
TB_EXPORT const char *tb_event_kind(const tb_event_t *e);    /* "licence", "case_event", ... */
TB_EXPORT const char *tb_event_key(const tb_event_t *e);     /* the record's key     */
TB_EXPORT const char *tb_event_origin(const tb_event_t *e);  /* the node that made it */
TB_EXPORT const char *tb_event_at(const tb_event_t *e);      /* RFC 3339 UTC         */
TB_EXPORT const char *tb_event_body(const tb_event_t *e);    /* the body, JSON text  */
TB_EXPORT const char *tb_event_json(const tb_event_t *e);    /* the whole event, JSON */

#ifdef __cplusplus
}
#endif
#endif
