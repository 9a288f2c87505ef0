/* store_internal.h -- what the modules of the node's store share, and only
 * they include (store.c, store_array.c, store_outbox.c, store_apply.c,
 * store_dead.c): struct tb_store and the small helpers. The public API is
 * store.h; the sibling modules built on it (store_domain.c, store_refused.c,
 * store_prune.c) use tb_store_conn and tb_store_fail instead (store_prune.c
 * also store_parse_i64). */
#ifndef TB_STORE_INTERNAL_H
#define TB_STORE_INTERNAL_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "store_schema.h"

struct tb_store {
    PGconn *conn;
    char node_id[TB_ID_MAX + 1];
    tb_entry_check_fn check; /* received tb.* entries (may be NULL) */
    void *check_arg;
    size_t batch_max_bytes;  /* tb_store_batch_begin's byte budget (0: the default) */
    char *conninfo;          /* for the maintenance connection */
    PGconn *maint;           /* VACUUM runs here, asynchronously (NULL until first needed) */
};

/* ------------------------------------------------------------------------
 * store.c: errors, statements, parsing. Failures are reported with
 * tb_store_fail (store.h).
 * ------------------------------------------------------------------------ */

/* Rolls back the open transaction, if any (and the connection is up). */
void store_rollback(tb_store_t *self);
void store_pg_reason(tb_store_t *self, const PGresult *res, char *buf, size_t len);
int store_data_error(tb_store_t *self, const PGresult *res);
tb_err_t store_check_conn(tb_store_t *self, const char *what, char *err, size_t errlen);
tb_err_t store_exec_simple(tb_store_t *self, const char *sql, const char *what, char *err, size_t errlen);
/* 0 and *out set if s is a whole base-10 int64, -1 otherwise. */
int store_parse_i64(const char *s, int64_t *out);
/* Logs a PostgreSQL notice (PQsetNoticeProcessor). */
void store_notice_processor(void *arg, const char *message);

/* 1 if res is a successful command or query result. */
static inline int store_res_ok(const PGresult *res)
{
    ExecStatusType st = PQresultStatus(res);
    return res && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
}

/* Runs the prepared statement s (S_* of store_schema.h). */
static inline PGresult *store_exec_stmt(tb_store_t *self, int s, int n, const char *const *vals,
                                        const int *lens, const int *fmts, int resfmt)
{
    return PQexecPrepared(self->conn, tb_store_stmts[s].name, n, vals, lens, fmts, resfmt);
}

/* ------------------------------------------------------------------------
 * store_array.c: array parameters in a growable buffer, as text literals
 * (store_arr_*) or in binary form for format-1 parameters (store_bin_*).
 * Out of memory sets oom (a buffer once out of memory stays so), which
 * the caller checks before using p.
 * ------------------------------------------------------------------------ */

typedef struct {
    char *p;
    size_t len, cap;
    size_t items;  /* elements written into the current array literal */
    int oom;
} sbuf_t;

void store_arr_open(sbuf_t *b);
void store_arr_text(sbuf_t *b, const char *s);
void store_arr_i64(sbuf_t *b, int64_t v);
void store_arr_hex(sbuf_t *b, const uint8_t *data, size_t n);
void store_arr_close(sbuf_t *b);

/* Element types of store_bin_open (pg_type OIDs). */
#define OID_INT8 20
#define OID_TEXT 25

void store_bin_open(sbuf_t *b, uint32_t elem_oid);
void store_bin_text(sbuf_t *b, const char *s);
void store_bin_i64(sbuf_t *b, int64_t v);
void store_bin_close(sbuf_t *b);

/* ------------------------------------------------------------------------
 * store_apply.c: entries and the multi-row statements, for the retry of a
 * dead letter (store_dead.c).
 * ------------------------------------------------------------------------ */

/* The name of an EntryType value, NULL if unknown. */
const char *store_entry_type_name(int type);
void store_free_entry(int type, void *msg);
void *store_decode_entry(int type, const uint8_t *data, size_t len, char *why, size_t whylen);
int store_entry_refused(tb_store_t *self, const char *sender, int type, const void *msg, char *why,
                        size_t whylen);
PGresult *store_run_stmt(tb_store_t *self, int type, void *const *msgs, const size_t *idx, size_t k,
                         int *oom);

#endif
