/* store_domain.h -- the node's door to the domain functions of its
 * PostgreSQL store (schema migration 7, store_schema.c): licences, cases,
 * supervision items, complaints, records and events live in
 * tongban.records (catalogs tb.*) and side tables kept by triggers, and are
 * read and written through SQL functions tongban.<fn>(text...) -> jsonb:
 *
 *   record_get(catalog, key)            record_put(catalog, key, body)
 *   record_delete(catalog, key)         domain_insert(catalog, key, body)
 *   domain_put(catalog, key, body)      licence_get(identifier)
 *   licence_find(holder_code)           case_get(case_id)
 *   case_list(state, overdue)           case_history(case_id)
 *   events_next(cursor, after, max)     events_ack(cursor, id)
 *   supitem_list(level)                 complaint_get(id)
 *   domain_dests(catalog, body)         (text[], not jsonb: not for this call)
 *
 * The rules of docs/client-api.md (authority, licence status and revision,
 * the case state machine) are enforced by triggers in the database, on
 * local writes and received batches alike; a broken rule is SQLSTATE 23514
 * with "<catalog> <key>: <rule>" as the message.
 */
#ifndef TB_STORE_DOMAIN_H
#define TB_STORE_DOMAIN_H

#include <stddef.h>

#include "store.h"

/* Most arguments tb_store_json_call passes. */
#define TB_STORE_JSON_MAX_ARGS 8

/* Calls tongban.<fn>(args[0], ..., args[nargs-1]) -- text parameters that
 * PostgreSQL casts to the function's argument types; args[i] may be NULL
 * (SQL NULL) -- in its own implicit transaction. fn must match [a-z_]+ (at
 * most 63 characters) and nargs be 0..TB_STORE_JSON_MAX_ARGS, else
 * TB_ERR_INVALID.
 *
 * TB_OK: *out = the jsonb result as malloc'ed JSON text (caller frees).
 * TB_ERR_NOTFOUND: the function returned NULL (the object does not exist).
 * Errors (*out = NULL, err = "<fn>: <PostgreSQL primary message>", one line):
 *   23514 check_violation, P0001 raise_exception  -> TB_ERR_REFUSED
 *   23505 unique_violation                        -> TB_ERR_DUPLICATE
 *   class 22 data exception (e.g. invalid json)   -> TB_ERR_INVALID
 *   connection lost (class 08, or the connection is down) -> TB_ERR_UNAVAILABLE;
 *     as for every store call, the caller then drops the store (node_store_lost)
 *   anything else                                 -> TB_ERR_DB
 * A transaction left open on the connection is rolled back on error. */
tb_err_t tb_store_json_call(tb_store_t *st, const char *fn, const char *const *args, int nargs, char **out,
                            char *err, size_t errlen);

#endif
