/* store_schema.c -- the SQL of the node's PostgreSQL store: schema
 * migrations (applied in order by store.c, each in its own transaction
 * under an advisory lock) and the statements store.c prepares. Never edit
 * a released migration: append a new one and bump TB_SCHEMA_VERSION. */
#include "store_schema.h"

/* ------------------------------------------------------------------------
 * Schema migrations
 * ------------------------------------------------------------------------ */

/* Session-level guard shared by every capture trigger: the node sets
 * tongban.applying = 'on' (SET LOCAL) while it applies remote changes. */
#define NOT_APPLYING "current_setting('tongban.applying', true) IS DISTINCT FROM 'on'"

const tb_migration_t tb_store_migrations[] = {
    {1, "records, routes, outbox, sent batches, inbox, node state, capture triggers",
     "CREATE TABLE tongban.node_state ("
     "  singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),"
     "  node_id text NOT NULL,"
     "  next_seq bigint NOT NULL DEFAULT 1 CHECK (next_seq > 0));\n"

     "CREATE FUNCTION tongban.local_node() RETURNS text LANGUAGE sql STABLE AS"
     "  $$ SELECT node_id FROM tongban.node_state $$;\n"
     /* milliseconds since the epoch << 16: the low 16 bits are the HLC counter */
     "CREATE FUNCTION tongban.hlc_now() RETURNS bigint LANGUAGE sql VOLATILE AS"
     "  $$ SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint << 16 $$;\n"

     "CREATE TABLE tongban.records ("
     "  catalog text NOT NULL,"
     "  key text NOT NULL,"
     "  body jsonb NOT NULL,"
     "  version bigint NOT NULL DEFAULT 1,"
     "  origin text NOT NULL DEFAULT tongban.local_node(),"
     "  hlc bigint NOT NULL DEFAULT tongban.hlc_now(),"
     "  updated_at timestamptz NOT NULL DEFAULT now(),"
     "  PRIMARY KEY (catalog, key));\n"

     "CREATE TABLE tongban.routes ("
     "  catalog text NOT NULL,"
     "  dest text NOT NULL,"
     "  PRIMARY KEY (catalog, dest));\n"

     "CREATE TABLE tongban.outbox ("
     "  id bigserial PRIMARY KEY,"
     "  dest text NOT NULL,"
     "  op char(1) NOT NULL CHECK (op IN ('U', 'D')),"
     "  catalog text NOT NULL,"
     "  key text NOT NULL,"
     "  body jsonb,"
     "  version bigint NOT NULL,"
     "  origin text NOT NULL,"
     "  hlc bigint NOT NULL,"
     "  created_at timestamptz NOT NULL DEFAULT now());\n"
     "CREATE INDEX outbox_dest_id ON tongban.outbox (dest, id);\n"

     "CREATE TABLE tongban.sent_batches ("
     "  seq bigint PRIMARY KEY,"
     "  dest text NOT NULL,"
     "  signed bytea NOT NULL,"
     "  created_at timestamptz NOT NULL DEFAULT now());\n"

     "CREATE TABLE tongban.inbox ("
     "  sender text NOT NULL,"
     "  seq bigint NOT NULL,"
     "  applied_at timestamptz NOT NULL DEFAULT now(),"
     "  PRIMARY KEY (sender, seq));\n"

     /* local updates always move the record's clock forward */
     "CREATE FUNCTION tongban.records_before_update() RETURNS trigger LANGUAGE plpgsql AS $$\n"
     "BEGIN\n"
     "  IF NEW.catalog IS DISTINCT FROM OLD.catalog OR NEW.key IS DISTINCT FROM OLD.key THEN\n"
     "    RAISE EXCEPTION 'tongban.records: catalog and key cannot be changed (delete and insert instead)'\n"
     "      USING ERRCODE = 'feature_not_supported';\n"
     "  END IF;\n"
     "  NEW.hlc := greatest(tongban.hlc_now(), OLD.hlc + 1);\n"
     "  NEW.origin := tongban.local_node();\n"
     "  NEW.version := OLD.version + 1;\n"
     "  NEW.updated_at := now();\n"
     "  RETURN NEW;\n"
     "END $$;\n"
     "CREATE TRIGGER records_before_update BEFORE UPDATE ON tongban.records"
     "  FOR EACH ROW WHEN (" NOT_APPLYING ")"
     "  EXECUTE FUNCTION tongban.records_before_update();\n"

     /* capture: one outbox row per (changed row x matching destination) */
     "CREATE FUNCTION tongban.capture_upsert() RETURNS trigger LANGUAGE plpgsql AS $$\n"
     "BEGIN\n"
     "  INSERT INTO tongban.outbox (dest, op, catalog, key, body, version, origin, hlc)\n"
     "  SELECT r.dest, 'U', n.catalog, n.key, n.body, n.version, n.origin, n.hlc\n"
     "    FROM new_rows n JOIN tongban.routes r ON (r.catalog = n.catalog OR r.catalog = '*');\n"
     "  IF FOUND THEN PERFORM pg_notify('tongban_outbox', ''); END IF;\n"
     "  RETURN NULL;\n"
     "END $$;\n"
     "CREATE FUNCTION tongban.capture_delete() RETURNS trigger LANGUAGE plpgsql AS $$\n"
     "DECLARE\n"
     "  me text := tongban.local_node();\n"
     "  now_hlc bigint := tongban.hlc_now();\n"
     "BEGIN\n"
     "  INSERT INTO tongban.outbox (dest, op, catalog, key, body, version, origin, hlc)\n"
     "  SELECT r.dest, 'D', o.catalog, o.key, NULL, o.version + 1, me, greatest(now_hlc, o.hlc + 1)\n"
     "    FROM old_rows o JOIN tongban.routes r ON (r.catalog = o.catalog OR r.catalog = '*');\n"
     "  IF FOUND THEN PERFORM pg_notify('tongban_outbox', ''); END IF;\n"
     "  RETURN NULL;\n"
     "END $$;\n"
     "CREATE TRIGGER records_capture_insert AFTER INSERT ON tongban.records"
     "  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT WHEN (" NOT_APPLYING ")"
     "  EXECUTE FUNCTION tongban.capture_upsert();\n"
     "CREATE TRIGGER records_capture_update AFTER UPDATE ON tongban.records"
     "  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT WHEN (" NOT_APPLYING ")"
     "  EXECUTE FUNCTION tongban.capture_upsert();\n"
     "CREATE TRIGGER records_capture_delete AFTER DELETE ON tongban.records"
     "  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT WHEN (" NOT_APPLYING ")"
     "  EXECUTE FUNCTION tongban.capture_delete();\n"

     /* TRUNCATE fires no row capture: refuse it rather than diverge silently */
     "CREATE FUNCTION tongban.records_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$\n"
     "BEGIN\n"
     "  RAISE EXCEPTION 'TRUNCATE of tongban.records is not replicated; use DELETE'\n"
     "    USING ERRCODE = 'feature_not_supported';\n"
     "END $$;\n"
     "CREATE TRIGGER records_no_truncate BEFORE TRUNCATE ON tongban.records"
     "  FOR EACH STATEMENT WHEN (" NOT_APPLYING ")"
     "  EXECUTE FUNCTION tongban.records_no_truncate();\n"},
    {2, "refused_batches: batches the hub refused for good, kept for the operator",
     "CREATE TABLE tongban.refused_batches ("
     "  seq bigint PRIMARY KEY,"
     "  dest text NOT NULL,"
     "  signed bytea NOT NULL,"
     "  reason text NOT NULL,"
     "  detail text NOT NULL,"
     "  refused_at timestamptz NOT NULL DEFAULT now());\n"},

    /* Tombstones: a deleted key remembers (version, origin, hlc) of its
     * delete, so an older upsert arriving late cannot bring it back.
     * A local DELETE writes one (always, routed or not); a local INSERT of
     * a key with a tombstone is moved past it (hlc and version) and drops
     * it -- statement-level, and the tombstone lookup is the only cost on
     * the common path (no tombstone: one semi-join of the transition table). */
    {3, "tombstones: deletes remembered so a late upsert cannot resurrect a record",
     "CREATE TABLE tongban.tombstones ("
     "  catalog text NOT NULL,"
     "  key text NOT NULL,"
     "  version bigint NOT NULL,"
     "  origin text NOT NULL,"
     "  hlc bigint NOT NULL,"
     "  deleted_at timestamptz NOT NULL DEFAULT now(),"
     "  PRIMARY KEY (catalog, key));\n"
     "CREATE INDEX tombstones_deleted_at ON tongban.tombstones (deleted_at);\n"

     "CREATE OR REPLACE FUNCTION tongban.capture_delete() RETURNS trigger LANGUAGE plpgsql AS $$\n"
     "DECLARE\n"
     "  me text := tongban.local_node();\n"
     "  now_hlc bigint := tongban.hlc_now();\n"
     "BEGIN\n"
     "  WITH d AS MATERIALIZED (\n"
     "    SELECT o.catalog, o.key, o.version + 1 AS version, greatest(now_hlc, o.hlc + 1) AS hlc FROM old_rows o),\n"
     "  t AS (\n"
     "    INSERT INTO tongban.tombstones AS t (catalog, key, version, origin, hlc)\n"
     "    SELECT d.catalog, d.key, d.version, me, d.hlc FROM d\n"
     "    ON CONFLICT (catalog, key) DO UPDATE\n"
     "      SET version = EXCLUDED.version, origin = EXCLUDED.origin, hlc = EXCLUDED.hlc, deleted_at = now()\n"
     "      WHERE (EXCLUDED.hlc, EXCLUDED.origin COLLATE \"C\") > (t.hlc, t.origin COLLATE \"C\"))\n"
     "  INSERT INTO tongban.outbox (dest, op, catalog, key, body, version, origin, hlc)\n"
     "  SELECT r.dest, 'D', d.catalog, d.key, NULL, d.version, me, d.hlc\n"
     "    FROM d JOIN tongban.routes r ON (r.catalog = d.catalog OR r.catalog = '*');\n"
     "  IF FOUND THEN PERFORM pg_notify('tongban_outbox', ''); END IF;\n"
     "  RETURN NULL;\n"
     "END $$;\n"

     "CREATE FUNCTION tongban.capture_insert() RETURNS trigger LANGUAGE plpgsql AS $$\n"
     "DECLARE\n"
     "  was text;\n"
     "BEGIN\n"
     "  IF EXISTS (SELECT 1 FROM new_rows n\n"
     "               JOIN tongban.tombstones t ON t.catalog = n.catalog AND t.key = n.key) THEN\n"
     /* re-insert of deleted keys: newer than the delete, whatever the clocks
      * say; the fix-up UPDATE is not itself captured (applying = on) */
     "    was := current_setting('tongban.applying', true);\n"
     "    PERFORM set_config('tongban.applying', 'on', true);\n"
     "    UPDATE tongban.records r\n"
     "       SET hlc = greatest(r.hlc, t.hlc + 1), version = greatest(r.version, t.version + 1)\n"
     "      FROM new_rows n JOIN tongban.tombstones t ON t.catalog = n.catalog AND t.key = n.key\n"
     "     WHERE r.catalog = n.catalog AND r.key = n.key AND (r.hlc <= t.hlc OR r.version <= t.version);\n"
     "    DELETE FROM tongban.tombstones t USING new_rows n WHERE t.catalog = n.catalog AND t.key = n.key;\n"
     "    PERFORM set_config('tongban.applying', coalesce(was, ''), true);\n"
     "    INSERT INTO tongban.outbox (dest, op, catalog, key, body, version, origin, hlc)\n"
     "    SELECT rt.dest, 'U', r.catalog, r.key, r.body, r.version, r.origin, r.hlc\n"
     "      FROM new_rows n JOIN tongban.records r ON r.catalog = n.catalog AND r.key = n.key\n"
     "      JOIN tongban.routes rt ON (rt.catalog = r.catalog OR rt.catalog = '*');\n"
     "  ELSE\n"
     "    INSERT INTO tongban.outbox (dest, op, catalog, key, body, version, origin, hlc)\n"
     "    SELECT r.dest, 'U', n.catalog, n.key, n.body, n.version, n.origin, n.hlc\n"
     "      FROM new_rows n JOIN tongban.routes r ON (r.catalog = n.catalog OR r.catalog = '*');\n"
     "  END IF;\n"
     "  IF FOUND THEN PERFORM pg_notify('tongban_outbox', ''); END IF;\n"
     "  RETURN NULL;\n"
     "END $$;\n"
     "DROP TRIGGER records_capture_insert ON tongban.records;\n"
     "CREATE TRIGGER records_capture_insert AFTER INSERT ON tongban.records"
     "  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT WHEN (" NOT_APPLYING ")"
     "  EXECUTE FUNCTION tongban.capture_insert();\n"},

    /* Dead letters: entries of an applied batch that PostgreSQL refused
     * (constraint, invalid JSON...) or that could not be decoded, kept for
     * the operator with the signed original batch (once per batch). */
    {4, "dead letters: entries that could not be applied, with the signed batch",
     "CREATE TABLE tongban.dead_letter_batches ("
     "  sender text NOT NULL,"
     "  seq bigint NOT NULL,"
     "  signed bytea,"
     "  received_at timestamptz NOT NULL DEFAULT now(),"
     "  PRIMARY KEY (sender, seq));\n"
     "CREATE TABLE tongban.dead_letters ("
     "  id bigserial PRIMARY KEY,"
     "  sender text NOT NULL,"
     "  seq bigint NOT NULL,"
     "  entry_index int NOT NULL CHECK (entry_index >= 0),"
     "  entry_id bytea NOT NULL,"
     "  entry_type int NOT NULL,"
     "  payload bytea NOT NULL,"
     "  reason text NOT NULL,"
     "  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'applied', 'failed')),"
     "  retries int NOT NULL DEFAULT 0,"
     "  created_at timestamptz NOT NULL DEFAULT now(),"
     "  retried_at timestamptz,"
     "  UNIQUE (sender, seq, entry_index),"
     "  FOREIGN KEY (sender, seq) REFERENCES tongban.dead_letter_batches (sender, seq));\n"
     "CREATE INDEX dead_letters_open ON tongban.dead_letters (id) WHERE status <> 'applied';\n"},

    /* the status query's "last applied" is max(applied_at): an index makes it O(1) */
    {5, "inbox(applied_at) index for the status query",
     "CREATE INDEX inbox_applied_at ON tongban.inbox (applied_at);\n"},

    /* A signed batch is ~600 KB of mostly distinct bytes (random entry ids,
     * signatures, bodies) that lives a few milliseconds until the hub's ack:
     * pglz-compressing it on every insert was the largest single cost of the
     * sender's PostgreSQL backend (~40% of its CPU). Stored out of line,
     * uncompressed (EXTERNAL) -- also where refused batches move to. */
    {6, "signed batches stored uncompressed (TOAST storage EXTERNAL)",
     "ALTER TABLE tongban.sent_batches ALTER COLUMN signed SET STORAGE EXTERNAL;\n"
     "ALTER TABLE tongban.refused_batches ALTER COLUMN signed SET STORAGE EXTERNAL;\n"},
};

const size_t tb_store_migration_count = sizeof tb_store_migrations / sizeof tb_store_migrations[0];

const char tb_store_bootstrap_sql[] =
    "CREATE SCHEMA IF NOT EXISTS tongban;\n"
    "CREATE TABLE IF NOT EXISTS tongban.schema_migrations ("
    "  version int PRIMARY KEY,"
    "  description text NOT NULL,"
    "  applied_at timestamptz NOT NULL DEFAULT now());\n";

/* ------------------------------------------------------------------------
 * Statements prepared once per connection.
 * ------------------------------------------------------------------------ */

const tb_stmt_t tb_store_stmts[S__COUNT] = {
    /* Takes (deletes and returns) the oldest rows of one destination in one
     * statement: a TID scan on the ctids of the first $2 rows in id order,
     * instead of a SELECT and then a DELETE of 1,000 ids through the primary
     * key. Only the node deletes outbox rows; the caller's transaction
     * commits the deletion together with the signed batch. The rows come
     * back in no particular order: store.c sorts them by id. */
    [S_OUTBOX_TAKE] = {"tb_outbox_take",
        "WITH d AS (DELETE FROM tongban.outbox"
        "  WHERE ctid = ANY (ARRAY (SELECT ctid FROM tongban.outbox WHERE dest = $1 ORDER BY id LIMIT $2::bigint))"
        "  RETURNING id, op, catalog, key, body, version, origin, hlc)"
        " SELECT id, op, catalog, key, body::text, version, origin, hlc FROM d"},
    /* destinations with outbox rows: a loose index scan over outbox(dest, id),
     * O(destinations) even with a deep backlog; prepared because the node
     * runs it before every cut */
    [S_OUTBOX_DESTS] = {"tb_outbox_dests",
        "WITH RECURSIVE d AS ("
        "  (SELECT dest FROM tongban.outbox ORDER BY dest LIMIT 1)"
        "  UNION ALL"
        "  SELECT (SELECT o.dest FROM tongban.outbox o WHERE o.dest > d.dest ORDER BY o.dest LIMIT 1)"
        "    FROM d WHERE d.dest IS NOT NULL)"
        " SELECT dest FROM d WHERE dest IS NOT NULL"},
    [S_NEXT_SEQ] = {"tb_next_seq",
        "UPDATE tongban.node_state SET next_seq = next_seq + 1 RETURNING next_seq - 1"},
    [S_SENT_INSERT] = {"tb_sent_insert",
        "INSERT INTO tongban.sent_batches (seq, dest, signed) VALUES ($1::bigint, $2, $3::bytea)"},
    [S_ACK] = {"tb_ack", "DELETE FROM tongban.sent_batches WHERE seq = ANY ($1::bigint[])"},
    [S_REFUSE] = {"tb_refuse",
        "WITH moved AS (DELETE FROM tongban.sent_batches WHERE seq = $1::bigint RETURNING seq, dest, signed)"
        " INSERT INTO tongban.refused_batches (seq, dest, signed, reason, detail)"
        " SELECT seq, dest, signed, $2, $3 FROM moved ON CONFLICT (seq) DO NOTHING"},
    [S_INBOX_INSERT] = {"tb_inbox_insert",
        "INSERT INTO tongban.inbox (sender, seq) VALUES ($1, $2::bigint) ON CONFLICT DO NOTHING"},
    /* DISTINCT ON keeps one row per key (the newest) so ON CONFLICT never
     * touches a row twice; the WHERE makes it last-writer-wins. Origins are
     * compared bytewise (COLLATE "C") so every node breaks ties alike,
     * whatever its database's collation. A tombstone as new as or newer than
     * the upsert blocks it (a delete wins a tie). A tombstone the upsert
     * overtakes is left in place (dominated by the record, harmless) until
     * the purge: dropping it here would cost a materialised CTE per batch. */
    /* The same when the caller has checked that every (catalog, key) of the
     * run is distinct: no DISTINCT ON, no sort. */
    [S_APPLY_UPSERT_UNIQUE] = {"tb_apply_upsert_unique",
        "INSERT INTO tongban.records AS r (catalog, key, body, version, origin, hlc)"
        " SELECT u.catalog, u.key, u.body::jsonb, u.version, u.origin, u.hlc"
        "   FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[])"
        "        AS u (catalog, key, body, version, origin, hlc)"
        "  WHERE NOT EXISTS (SELECT 1 FROM tongban.tombstones t WHERE t.catalog = u.catalog AND t.key = u.key"
        "                       AND (t.hlc, t.origin COLLATE \"C\") >= (u.hlc, u.origin COLLATE \"C\"))"
        " ON CONFLICT (catalog, key) DO UPDATE"
        "    SET body = EXCLUDED.body, version = EXCLUDED.version, origin = EXCLUDED.origin,"
        "        hlc = EXCLUDED.hlc, updated_at = now()"
        "  WHERE (EXCLUDED.hlc, EXCLUDED.origin COLLATE \"C\") > (r.hlc, r.origin COLLATE \"C\")"},
    [S_APPLY_UPSERT] = {"tb_apply_upsert",
        "INSERT INTO tongban.records AS r (catalog, key, body, version, origin, hlc)"
        " SELECT DISTINCT ON (u.catalog, u.key) u.catalog, u.key, u.body::jsonb, u.version, u.origin, u.hlc"
        "   FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[])"
        "        WITH ORDINALITY AS u (catalog, key, body, version, origin, hlc, ord)"
        "  WHERE NOT EXISTS (SELECT 1 FROM tongban.tombstones t WHERE t.catalog = u.catalog AND t.key = u.key"
        "                       AND (t.hlc, t.origin COLLATE \"C\") >= (u.hlc, u.origin COLLATE \"C\"))"
        "  ORDER BY u.catalog, u.key, u.hlc DESC, u.origin COLLATE \"C\" DESC, u.ord DESC"
        " ON CONFLICT (catalog, key) DO UPDATE"
        "    SET body = EXCLUDED.body, version = EXCLUDED.version, origin = EXCLUDED.origin,"
        "        hlc = EXCLUDED.hlc, updated_at = now()"
        "  WHERE (EXCLUDED.hlc, EXCLUDED.origin COLLATE \"C\") > (r.hlc, r.origin COLLATE \"C\")"},
    /* A delete as new or newer than the record removes it and leaves (or
     * moves forward) the key's tombstone; a delete older than the record
     * changes nothing. */
    [S_APPLY_DELETE] = {"tb_apply_delete",
        "WITH d AS MATERIALIZED ("
        "  SELECT DISTINCT ON (d.catalog, d.key) d.catalog, d.key, d.version, d.origin, d.hlc"
        "    FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[])"
        "         WITH ORDINALITY AS d (catalog, key, version, origin, hlc, ord)"
        "   ORDER BY d.catalog, d.key, d.hlc DESC, d.origin COLLATE \"C\" DESC, d.ord DESC),"
        " gone AS ("
        "  DELETE FROM tongban.records r USING d WHERE r.catalog = d.catalog AND r.key = d.key"
        "     AND (d.hlc, d.origin COLLATE \"C\") >= (r.hlc, r.origin COLLATE \"C\"))"
        " INSERT INTO tongban.tombstones AS t (catalog, key, version, origin, hlc)"
        " SELECT d.catalog, d.key, d.version, d.origin, d.hlc FROM d"
        "  WHERE NOT EXISTS (SELECT 1 FROM tongban.records r WHERE r.catalog = d.catalog AND r.key = d.key"
        "                       AND (r.hlc, r.origin COLLATE \"C\") > (d.hlc, d.origin COLLATE \"C\"))"
        " ON CONFLICT (catalog, key) DO UPDATE"
        "    SET version = EXCLUDED.version, origin = EXCLUDED.origin, hlc = EXCLUDED.hlc, deleted_at = now()"
        "  WHERE (EXCLUDED.hlc, EXCLUDED.origin COLLATE \"C\") > (t.hlc, t.origin COLLATE \"C\")"},
    /* the batch (with its signed bytes, NULL if the caller had none) once,
     * then its failed entries; entry ids and payloads come as bytea[] */
    [S_DEAD_INSERT] = {"tb_dead_insert",
        "WITH b AS ("
        "  INSERT INTO tongban.dead_letter_batches (sender, seq, signed) VALUES ($1, $2::bigint, $3::bytea)"
        "  ON CONFLICT (sender, seq) DO NOTHING)"
        " INSERT INTO tongban.dead_letters (sender, seq, entry_index, entry_id, entry_type, payload, reason)"
        " SELECT $1, $2::bigint, u.i, u.id, u.t, u.p, u.r"
        "   FROM unnest($4::int[], $5::bytea[], $6::int[], $7::bytea[], $8::text[]) AS u (i, id, t, p, r)"},
};
