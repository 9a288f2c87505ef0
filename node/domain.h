/* domain.h -- the domain objects of the client API (docs/client-api.md):
 * seals over canonical bytes, the check of received tb.* entries, and the
 * pure half of the operations (argument validation, body building, the
 * verdict of a licence). No I/O here: node/api.c does the sockets and the
 * database, this module decides what the bodies are.
 *
 * Functions that can fail return a tb_err_t and write one line into err
 * ("FIELD: what is wrong" for arguments).
 */
#ifndef TB_DOMAIN_H
#define TB_DOMAIN_H

#include <jansson.h>
#include <stddef.h>
#include <tongban/tongban.h>

#include "crypto.h"

typedef enum { DOMAIN_LICENCE = 0, DOMAIN_CASE_EVENT = 1 } domain_kind_t;

#define DOMAIN_MAX_MATERIALS 100
#define DOMAIN_MAX_MATERIAL_BYTES (64LL << 20)

/* ---- seals ---- */

/* The canonical bytes a seal of kind signs:
 *   "tongban-licence-seal/1\n" | "tongban-case-event-seal/1\n"
 *   then "<field>=<byte length>:<value>\n" for every field of the kind in
 *   the documented order. Values: a string as is; an integer in decimal;
 *   absent or null empty; an array's elements joined with ","  (each a
 *   string or integer without ","; materials as name|sha256|size|ref, the
 *   parts without "," or "|"); any other value (object, boolean, real) as
 *   its compact JSON text with keys sorted bytewise.
 * A body that has no single canonical form (a "," inside an array element,
 * a non-integer revision / score / size) is TB_ERR_INVALID: the encoding
 * stays injective. *out is malloc'ed (NUL-terminated too), *len its length. */
tb_err_t tb_seal_bytes(domain_kind_t kind, const json_t *body, char **out, size_t *len, char *err,
                       size_t errlen);

/* Seals body in place: signs its canonical bytes with signer and sets
 * body.seal = {"alg", "signer": node_id, "key_id": hex SHA-256 of cert's
 * DER, "sig": base64}. An existing seal is replaced. */
tb_err_t domain_seal(tb_signer_t *signer, const tb_cert_t *cert, const char *node_id, domain_kind_t kind,
                     json_t *body, char *err, size_t errlen);

/* Checks body.seal against signer_cert: the seal's signer must be the
 * certificate's node, alg and key_id the certificate's, and the signature
 * must verify over the canonical bytes. TB_OK, TB_ERR_BADSIG (does not
 * verify, other signer or certificate) or TB_ERR_INVALID (no or malformed
 * seal, body without canonical form), with why. */
tb_err_t domain_verify_seal(domain_kind_t kind, const json_t *body, const tb_cert_t *signer_cert, char *why,
                            size_t whylen);

/* ---- received entries ---- */

/* The certificate of node_id from the directory, or NULL if unknown;
 * *revoked set to 1 if the node is revoked. */
typedef const tb_cert_t *(*domain_cert_fn)(void *arg, const char *node_id, int *revoked);

/* The check of one received entry of a "tb." catalog before it is applied
 * (body NULL: a delete). The record's origin must be the batch's sender;
 * the catalog must be one of the domain's; a tb.licence or tb.case_event
 * upsert must be a JSON object under its own key (identifier /
 * case_id/event_id) whose authority (issuer_node / by_node) is the sender,
 * with a seal by the sender that verifies against the sender's certificate
 * from lookup (not revoked). Returns 0 if the entry may be applied, 1 with
 * the reason in why if not. */
int domain_check_entry(domain_cert_fn lookup, void *arg, const char *sender, const char *catalog,
                       const char *key, const char *origin, const char *body, char *why, size_t whylen);

/* ---- time and identifiers ---- */

/* Now as RFC 3339 UTC with milliseconds, "2026-01-31T08:00:00.123Z" (out >= 32). */
char *domain_now(char *out, size_t len);
/* Today's date in China (UTC+8), "YYYY-MM-DD" (dash = 1) or "YYYYMMDD". */
char *domain_today(char *out, size_t len, int dash);
/* nbytes random bytes as lowercase hex into out (>= 2 * nbytes + 1).
 * TB_OK or TB_ERR_CRYPTO. */
tb_err_t domain_random_hex(char *out, size_t len, size_t nbytes);

/* ---- operations: validate the arguments, build the body ---- */

/* licence.issue: validates args (every field of the contract; unknown
 * fields refused) and builds the unsealed licence: the content fields +
 * status "valid", status_reason "", status_at now, revision 1,
 * issuer_node. *out is a new reference. */
tb_err_t domain_licence_issue(const json_t *args, const char *node_id, const char *now, json_t **out,
                              char *err, size_t errlen);

/* licence.update: applies the content fields of args (null removes an
 * optional one) to the current body cur (changed in place), checks the
 * result and increments revision. The caller checked the issuer. */
tb_err_t domain_licence_update(json_t *cur, const json_t *args, char *err, size_t errlen);

/* licence.suspend / resume / revoke (action "suspend" | "resume" |
 * "revoke"): checks the transition from cur's status (TB_ERR_REFUSED if
 * illegal) and the reason, sets status, status_reason, status_at and
 * revision + 1 in cur. */
tb_err_t domain_licence_status(json_t *cur, const char *action, const json_t *args, const char *now,
                               char *err, size_t errlen);

/* The verdict of a licence on date today ("YYYY-MM-DD"): "revoked",
 * "suspended", "expired", "not_yet_valid", "valid" or "unknown" (a status
 * this node does not know). Does not look at the seal. */
const char *domain_licence_verdict(const json_t *lic, const char *today);

/* case.submit: validates args and builds the submit event of case_id
 * (accepting = node_id). */
tb_err_t domain_case_submit(const json_t *args, const char *node_id, const char *now, const char *case_id,
                            const char *event_id, json_t **out, char *err, size_t errlen);

/* case.act (action from args) and case.rate (action "rate"; rate = 1):
 * validates args and builds the event. */
tb_err_t domain_case_event(const json_t *args, int rate, const char *node_id, const char *now,
                           const char *event_id, json_t **out, char *err, size_t errlen);

/* supitem.put, risk.publish, complaint.file: validate args and build the
 * body (id: the new risk / complaint id; unused for supitem). */
tb_err_t domain_supitem(const json_t *args, const char *node_id, const char *now, json_t **out, char *err,
                        size_t errlen);
tb_err_t domain_risk(const json_t *args, const char *node_id, const char *now, const char *id, json_t **out,
                     char *err, size_t errlen);
tb_err_t domain_complaint(const json_t *args, const char *node_id, const char *now, const char *id,
                          json_t **out, char *err, size_t errlen);
/* complaint.ack: the receipt of complaint (its stored body) by node_id. */
tb_err_t domain_receipt(const json_t *args, const json_t *complaint, const char *node_id, const char *now,
                        json_t **out, char *err, size_t errlen);

/* Argument helpers shared with api.c: 1 if s is 1..max bytes of
 * [A-Za-z0-9_.-] (ids, case ids, cursor names), else 0. */
int domain_valid_name(const char *s, size_t max);

#endif
