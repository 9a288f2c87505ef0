/* store_schema.h -- the SQL text of the node's PostgreSQL store: the
 * versioned schema migrations and the statements store.c prepares once per
 * connection. Only the store's modules use it (store.c, and through
 * store_internal.h store_outbox.c and store_apply.c); the C logic lives
 * there. */
#ifndef TB_STORE_SCHEMA_H
#define TB_STORE_SCHEMA_H

#include <stddef.h>

/* One schema change, applied in its own transaction with its
 * tongban.schema_migrations row. Never edit a released one: append. */
typedef struct {
    int version;
    const char *description;
    const char *sql;
} tb_migration_t;

/* In version order; the last one's version is TB_SCHEMA_VERSION (store.h). */
extern const tb_migration_t tb_store_migrations[];
extern const size_t tb_store_migration_count;

/* Creates schema tongban and tongban.schema_migrations if absent. */
extern const char tb_store_bootstrap_sql[];

/* Advisory lock key for schema changes and node claim ("tongban" in ASCII). */
#define TB_STORE_MIGRATE_LOCK_SQL "SELECT pg_advisory_xact_lock(32773617270022510)"

/* Statements prepared once per connection (PQprepare under .name). */
enum {
    S_OUTBOX_DESTS,
    S_OUTBOX_TAKE,
    S_NEXT_SEQ,
    S_SENT_INSERT,
    S_ACK,
    S_REFUSE,
    S_INBOX_INSERT,
    S_INBOX_INSERT_MANY,
    S_APPLY_UPSERT,
    S_APPLY_UPSERT_UNIQUE,
    S_APPLY_DELETE,
    S_DEAD_INSERT,
    S__COUNT
};

typedef struct {
    const char *name;
    const char *sql;
} tb_stmt_t;

extern const tb_stmt_t tb_store_stmts[S__COUNT];

#endif
