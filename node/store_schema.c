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

/* Row triggers whose WHEN condition names records.catalog, created by
 * migrations 7 and 8; migration 10 drops them and creates them again
 * (same text) around the column's collation change: PostgreSQL refuses to
 * alter a column a trigger condition uses. */
#define TRG_DOMAIN_RULES \
    "CREATE TRIGGER records_zz_domain_insert BEFORE INSERT ON tongban.records\n" \
    "  FOR EACH ROW WHEN (NEW.catalog LIKE 'tb.%') EXECUTE FUNCTION tongban.domain_rules();\n" \
    "CREATE TRIGGER records_zz_domain_update BEFORE UPDATE ON tongban.records\n" \
    "  FOR EACH ROW WHEN (NEW.catalog LIKE 'tb.%') EXECUTE FUNCTION tongban.domain_rules();\n" \
    "CREATE TRIGGER records_zz_domain_delete BEFORE DELETE ON tongban.records\n" \
    "  FOR EACH ROW WHEN (OLD.catalog LIKE 'tb.%') EXECUTE FUNCTION tongban.domain_rules();\n"
#define TRG_LICENCE_HOLDERS \
    "CREATE TRIGGER records_licence_holders AFTER INSERT OR UPDATE ON tongban.records\n" \
    "  FOR EACH ROW WHEN (NEW.catalog = 'tb.licence') EXECUTE FUNCTION tongban.licence_holders_sync();\n" \
    "CREATE TRIGGER records_licence_holders_delete AFTER DELETE ON tongban.records\n" \
    "  FOR EACH ROW WHEN (OLD.catalog = 'tb.licence') EXECUTE FUNCTION tongban.licence_holders_sync();\n"
#define TRG_CHUNK_RULES \
    "CREATE TRIGGER records_zzz_chunk BEFORE INSERT OR UPDATE ON tongban.records\n" \
    "  FOR EACH ROW WHEN (NEW.catalog = 'tb.chunk') EXECUTE FUNCTION tongban.chunk_rules();\n" \
    "CREATE TRIGGER records_zzz_chunk_delete BEFORE DELETE ON tongban.records\n" \
    "  FOR EACH ROW WHEN (OLD.catalog = 'tb.chunk') EXECUTE FUNCTION tongban.chunk_rules();\n"

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

    /* The domain layer of docs/client-api.md on top of tongban.records.
     * Objects are rows of catalogs tb.*; capture routes them to the
     * configured routes plus tongban.domain_dests(catalog, body), each dest
     * once. BEFORE ROW triggers (records_zz_domain_*, after
     * records_before_update) enforce the rules -- authority = origin,
     * licence status and revision, the case state machine -- on local writes
     * and received entries alike, and apply each case event to
     * tongban.cases in the same step (an AFTER ROW trigger would run at the
     * end of the statement, too late for the next event of a multi-row
     * apply). Every tb.* change is appended to tongban.events. Ordinary
     * catalogs pay the WHEN of each tb.* row trigger and one partial-index
     * predicate per row, and two filtered scans of the transition table per
     * statement; nothing indexes body, so their updates stay HOT.
     * The read / write functions return jsonb (NULL: no such object), for
     * store_domain.c. */
    {7, "domain objects (tb.* catalogs): routing, rules, cases, events, read functions",
     /* ---- small helpers ---- */
     "CREATE FUNCTION tongban.rfc3339(t timestamptz) RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS\n"
     "  $$ SELECT to_char($1 AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') $$;\n"
     /* NULL (not an error) for text that is not a time / date */
     "CREATE FUNCTION tongban.domain_ts(t text) RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$\n"
     "BEGIN\n"
     "  IF $1 IS NULL\n"
     "     OR $1 !~ '^\\d{4}-\\d\\d-\\d\\d[T ]\\d\\d:\\d\\d:\\d\\d(\\.\\d{1,9})?(Z|z|[+-]\\d\\d(:?\\d\\d)?)$' THEN\n"
     "    RETURN NULL;\n"
     "  END IF;\n"
     "  RETURN $1::timestamptz;\n"
     "EXCEPTION WHEN data_exception THEN\n"
     "  RETURN NULL;\n"
     "END $$;\n"
     "CREATE FUNCTION tongban.domain_date(t text) RETURNS date LANGUAGE plpgsql STABLE AS $$\n"
     "BEGIN\n"
     "  IF $1 IS NULL OR $1 !~ '^\\d{4}-\\d\\d-\\d\\d$' THEN\n"
     "    RETURN NULL;\n"
     "  END IF;\n"
     "  RETURN $1::date;\n"
     "EXCEPTION WHEN data_exception THEN\n"
     "  RETURN NULL;\n"
     "END $$;\n"
     /* the body field naming the node that has authority over an object */
     "CREATE FUNCTION tongban.domain_authority_field(catalog text) RETURNS text\n"
     "LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$\n"
     "  SELECT CASE $1 WHEN 'tb.licence' THEN 'issuer_node' WHEN 'tb.case_event' THEN 'by_node'\n"
     "                 WHEN 'tb.risk' THEN 'issued_by' WHEN 'tb.complaint' THEN 'filed_by'\n"
     "                 WHEN 'tb.complaint_receipt' THEN 'by' WHEN 'tb.supitem' THEN 'owner' END $$;\n"

     /* ---- cases: one row per cross-region case, kept by the case event rules ---- */
     "CREATE TABLE tongban.cases (\n"
     "  case_id text PRIMARY KEY,\n"
     "  service_item text,\n"
     "  applicant_name text,\n"
     "  applicant_code text,\n"
     "  applicant_code_type text,\n"
     "  mode text NOT NULL CHECK (mode IN ('online', 'proxy', 'joint')),\n"
     "  accepting text NOT NULL,\n"
     "  handling text[] NOT NULL,\n"
     "  deadline date NOT NULL,\n"
     "  state text NOT NULL CHECK (state IN ('submitted', 'accepted', 'in_progress', 'decided', 'delivered',\n"
     "                                       'rated', 'rejected', 'withdrawn')),\n"
     "  parts_done text[] NOT NULL DEFAULT '{}',\n"
     "  result jsonb,\n"
     "  rating int CHECK (rating BETWEEN 1 AND 5),\n"
     "  rating_comment text,\n"
     "  submitted_at timestamptz NOT NULL,\n"
     "  updated_at timestamptz NOT NULL DEFAULT now(),\n"
     "  last_event_at timestamptz NOT NULL);\n"
     "CREATE INDEX cases_state ON tongban.cases (state);\n"
     "CREATE INDEX cases_open_deadline ON tongban.cases (deadline)\n"
     "  WHERE state NOT IN ('delivered', 'rated', 'rejected', 'withdrawn');\n"
     /* overdue: the deadline day (UTC+8) is over and the case is still open */
     "CREATE FUNCTION tongban.case_overdue(deadline date, state text) RETURNS boolean\n"
     "LANGUAGE sql STABLE PARALLEL SAFE AS $$\n"
     "  SELECT $2 NOT IN ('delivered', 'rated', 'rejected', 'withdrawn')\n"
     "     AND now() >= (($1 + 1)::timestamp AT TIME ZONE 'Asia/Shanghai') $$;\n"

     /* ---- routing: where a tb.* row goes besides the configured routes ---- */
     "CREATE FUNCTION tongban.domain_dests(catalog text, body jsonb) RETURNS text[]\n"
     "LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$\n"
     "DECLARE\n"
     "  d text[];\n"
     "BEGIN\n"
     "  CASE $1\n"
     "    WHEN 'tb.licence' THEN d := ARRAY['topic:licences'];\n"
     "    WHEN 'tb.risk' THEN d := ARRAY['topic:risk'];\n"
     "    WHEN 'tb.supitem' THEN d := ARRAY['topic:supervision'];\n"
     "    WHEN 'tb.complaint' THEN d := ARRAY[$2->>'region'];\n"
     "    WHEN 'tb.complaint_receipt' THEN d := ARRAY[$2->>'filed_by'];\n"
     "    WHEN 'tb.case_event' THEN\n"
     "      IF $2->>'action' = 'submit' THEN\n"
     "        d := ARRAY[$2->>'accepting'];\n"
     "        IF jsonb_typeof($2->'handling') = 'array' THEN\n"
     "          d := d || ARRAY(SELECT jsonb_array_elements_text($2->'handling'));\n"
     "        END IF;\n"
     "      ELSE\n"
     "        SELECT c.accepting || c.handling INTO d FROM tongban.cases c WHERE c.case_id = $2->>'case_id';\n"
     "      END IF;\n"
     "    ELSE\n"
     "      RETURN '{}';\n"
     "  END CASE;\n"
     "  RETURN ARRAY(SELECT DISTINCT x FROM unnest(d) x\n"
     "                WHERE x <> '' AND x IS DISTINCT FROM tongban.local_node() ORDER BY x);\n"
     "END $$;\n"
     /* routes naming this tb.* catalog and its domain destinations, each
      * once; a "*" route means every ordinary catalog: a case event sent
      * to a node that is no party of the case would only be refused there */
     "CREATE FUNCTION tongban.domain_route(catalog text, body jsonb) RETURNS SETOF text LANGUAGE sql STABLE AS $$\n"
     "  SELECT r.dest FROM tongban.routes r WHERE r.catalog = $1\n"
     "  UNION\n"
     "  SELECT unnest(tongban.domain_dests($1, $2)) $$;\n"

     /* The capture functions of migrations 1 and 3 with a second, tb.*-only
      * branch: ordinary rows take the same join as before (plus one filter),
      * tb.* rows go to routes and domain destinations, each once. */
     "CREATE OR REPLACE FUNCTION tongban.capture_upsert() RETURNS trigger LANGUAGE plpgsql AS $$\n"
     "BEGIN\n"
     "  INSERT INTO tongban.outbox (dest, op, catalog, key, body, version, origin, hlc)\n"
     "  SELECT r.dest, 'U', n.catalog, n.key, n.body, n.version, n.origin, n.hlc\n"
     "    FROM new_rows n JOIN tongban.routes r ON (r.catalog = n.catalog OR r.catalog = '*')\n"
     "   WHERE n.catalog NOT LIKE 'tb.%'\n"
     "  UNION ALL\n"
     "  SELECT x.dest, 'U', n.catalog, n.key, n.body, n.version, n.origin, n.hlc\n"
     "    FROM new_rows n CROSS JOIN LATERAL tongban.domain_route(n.catalog, n.body) x (dest)\n"
     "   WHERE n.catalog LIKE 'tb.%';\n"
     "  IF FOUND THEN PERFORM pg_notify('tongban_outbox', ''); END IF;\n"
     "  RETURN NULL;\n"
     "END $$;\n"
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
     "  SELECT r.dest, 'D', d.catalog, d.key, NULL::jsonb, d.version, me, d.hlc\n"
     "    FROM d JOIN tongban.routes r ON (r.catalog = d.catalog OR r.catalog = '*')\n"
     "   WHERE d.catalog NOT LIKE 'tb.%'\n"
     "  UNION ALL\n"
     "  SELECT x.dest, 'D', o.catalog, o.key, NULL, o.version + 1, me, greatest(now_hlc, o.hlc + 1)\n"
     "    FROM old_rows o CROSS JOIN LATERAL tongban.domain_route(o.catalog, o.body) x (dest)\n"
     "   WHERE o.catalog LIKE 'tb.%';\n"
     "  IF FOUND THEN PERFORM pg_notify('tongban_outbox', ''); END IF;\n"
     "  RETURN NULL;\n"
     "END $$;\n"
     "CREATE OR REPLACE FUNCTION tongban.capture_insert() RETURNS trigger LANGUAGE plpgsql AS $$\n"
     "DECLARE\n"
     "  was text;\n"
     "BEGIN\n"
     "  IF EXISTS (SELECT 1 FROM new_rows n\n"
     "               JOIN tongban.tombstones t ON t.catalog = n.catalog AND t.key = n.key) THEN\n"
         /* the clock fix-up is neither captured (applying) nor an event (clock_fixup) */
     "    was := current_setting('tongban.applying', true);\n"
     "    PERFORM set_config('tongban.applying', 'on', true);\n"
     "    PERFORM set_config('tongban.clock_fixup', 'on', true);\n"
     "    UPDATE tongban.records r\n"
     "       SET hlc = greatest(r.hlc, t.hlc + 1), version = greatest(r.version, t.version + 1)\n"
     "      FROM new_rows n JOIN tongban.tombstones t ON t.catalog = n.catalog AND t.key = n.key\n"
     "     WHERE r.catalog = n.catalog AND r.key = n.key AND (r.hlc <= t.hlc OR r.version <= t.version);\n"
     "    DELETE FROM tongban.tombstones t USING new_rows n WHERE t.catalog = n.catalog AND t.key = n.key;\n"
     "    PERFORM set_config('tongban.clock_fixup', '', true);\n"
     "    PERFORM set_config('tongban.applying', coalesce(was, ''), true);\n"
     "    INSERT INTO tongban.outbox (dest, op, catalog, key, body, version, origin, hlc)\n"
     "    SELECT rt.dest, 'U', r.catalog, r.key, r.body, r.version, r.origin, r.hlc\n"
     "      FROM new_rows n JOIN tongban.records r ON r.catalog = n.catalog AND r.key = n.key\n"
     "      JOIN tongban.routes rt ON (rt.catalog = r.catalog OR rt.catalog = '*')\n"
     "     WHERE n.catalog NOT LIKE 'tb.%'\n"
     "    UNION ALL\n"
     "    SELECT x.dest, 'U', r.catalog, r.key, r.body, r.version, r.origin, r.hlc\n"
     "      FROM new_rows n JOIN tongban.records r ON r.catalog = n.catalog AND r.key = n.key\n"
     "      CROSS JOIN LATERAL tongban.domain_route(r.catalog, r.body) x (dest)\n"
     "     WHERE n.catalog LIKE 'tb.%';\n"
     "  ELSE\n"
     "    INSERT INTO tongban.outbox (dest, op, catalog, key, body, version, origin, hlc)\n"
     "    SELECT r.dest, 'U', n.catalog, n.key, n.body, n.version, n.origin, n.hlc\n"
     "      FROM new_rows n JOIN tongban.routes r ON (r.catalog = n.catalog OR r.catalog = '*')\n"
     "     WHERE n.catalog NOT LIKE 'tb.%'\n"
     "    UNION ALL\n"
     "    SELECT x.dest, 'U', n.catalog, n.key, n.body, n.version, n.origin, n.hlc\n"
     "      FROM new_rows n CROSS JOIN LATERAL tongban.domain_route(n.catalog, n.body) x (dest)\n"
     "     WHERE n.catalog LIKE 'tb.%';\n"
     "  END IF;\n"
     "  IF FOUND THEN PERFORM pg_notify('tongban_outbox', ''); END IF;\n"
     "  RETURN NULL;\n"
     "END $$;\n"

     /* ---- rules, on local writes and remote applies alike ---- */
     /* licence content and status rules; prev is the stored body (NULL on insert) */
     "CREATE FUNCTION tongban.licence_check(k text, b jsonb, prev jsonb) RETURNS void LANGUAGE plpgsql AS $$\n"
     "DECLARE\n"
     "  e text := 'tb.licence ' || $1 || ': ';\n"
     "  st text := $2->>'status';\n"
     "  ost text := $3->>'status';\n"
     "  rev bigint;\n"
     "  orev bigint;\n"
     "BEGIN\n"
     "  IF $2->>'identifier' IS DISTINCT FROM $1 THEN\n"
     "    RAISE EXCEPTION '%identifier must equal the key (identifier = %)', e,\n"
     "      coalesce($2->>'identifier', 'absent')\n"
     "      USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  IF st IS NULL OR st NOT IN ('valid', 'suspended', 'revoked') THEN\n"
     "    RAISE EXCEPTION '%status must be valid, suspended or revoked (status = %)', e, coalesce(st, 'absent')\n"
     "      USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  IF jsonb_typeof($2->'revision') IS DISTINCT FROM 'number' OR $2->>'revision' !~ '^[1-9][0-9]{0,17}$' THEN\n"
     "    RAISE EXCEPTION '%revision must be a positive integer (revision = %)', e,\n"
     "      coalesce($2->>'revision', 'absent')\n"
     "      USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  rev := ($2->>'revision')::bigint;\n"
     "  IF jsonb_typeof($2->'seal') IS DISTINCT FROM 'object' THEN\n"
     "    RAISE EXCEPTION '%seal is required', e USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  IF $3 IS NULL THEN\n"
     "    RETURN;\n"
     "  END IF;\n"
     "  IF ost = 'revoked' THEN\n"
     "    RAISE EXCEPTION '%a revoked licence is final (no change after revoke)', e\n"
     "      USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  orev := CASE WHEN $3->>'revision' ~ '^[0-9]{1,18}$' THEN ($3->>'revision')::bigint ELSE 0 END;\n"
     "  IF rev <= orev THEN\n"
     "    RAISE EXCEPTION '%revision must increase (% -> %)', e, orev, rev USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  IF NOT (st = ost OR st = 'revoked' OR (ost IN ('valid', 'suspended') AND st IN ('valid', 'suspended')))\n"
     "  THEN\n"
     "    RAISE EXCEPTION '%status cannot move from % to %', e, coalesce(ost, 'absent'), st\n"
     "      USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "END $$;\n"

     /* A case event: checks it is a legal transition of its case (state
      * machine of docs/client-api.md) and applies it to tongban.cases. Called
      * from the BEFORE INSERT rule, not an AFTER trigger: AFTER ROW triggers
      * run at the end of the statement, so in a multi-row apply (one batch
      * carrying accept, start, decide of one case) each event must see the
      * state the previous row left. */
     "CREATE FUNCTION tongban.case_event_apply(k text, b jsonb) RETURNS void LANGUAGE plpgsql AS $$\n"
     "DECLARE\n"
     "  e text := 'tb.case_event ' || $1 || ': ';\n"
     "  cid text := $2->>'case_id';\n"
     "  act text := $2->>'action';\n"
     "  who text := $2->>'by_node';\n"
     "  at timestamptz := tongban.domain_ts($2->>'at');\n"
     "  c tongban.cases;\n"
     "  h text[];\n"
     "  n int;\n"
     "  m text := $2->>'mode';\n"
     "  dl date;\n"
     "  lead text;\n"
     "  party text;\n"
     "  who_ok boolean;\n"
     "  froms text[];\n"
     "  target text;\n"
     "  missing text[];\n"
     "BEGIN\n"
     "  IF coalesce(cid, '') = '' OR coalesce($2->>'event_id', '') = '' THEN\n"
     "    RAISE EXCEPTION '%case_id and event_id are required', e USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  IF $1 IS DISTINCT FROM cid || '/' || ($2->>'event_id') THEN\n"
     "    RAISE EXCEPTION '%key must be <case_id>/<event_id> (%/%)', e, cid, $2->>'event_id'\n"
     "      USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  IF at IS NULL THEN\n"
     "    RAISE EXCEPTION '%at must be an RFC 3339 time (at = %)', e, coalesce($2->>'at', 'absent')\n"
     "      USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  IF $2 ? 'materials' AND (jsonb_typeof($2->'materials') IS DISTINCT FROM 'array'\n"
     "                           OR jsonb_array_length($2->'materials') > 100) THEN\n"
     "    RAISE EXCEPTION '%materials must be an array of at most 100', e USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"

     "  IF act = 'submit' THEN\n"
     "    IF EXISTS (SELECT 1 FROM tongban.cases x WHERE x.case_id = cid) THEN\n"
     "      RAISE EXCEPTION '%submit: case % already exists', e, cid USING ERRCODE = 'check_violation';\n"
     "    END IF;\n"
     "    IF $2->>'accepting' IS DISTINCT FROM who THEN\n"
     "      RAISE EXCEPTION '%submit must be by the accepting node (accepting = %, by_node = %)', e,\n"
     "        coalesce($2->>'accepting', 'absent'), who USING ERRCODE = 'check_violation';\n"
     "    END IF;\n"
     "    IF jsonb_typeof($2->'handling') IS DISTINCT FROM 'array'\n"
     "       OR EXISTS (SELECT 1 FROM jsonb_array_elements($2->'handling') j\n"
     "                   WHERE jsonb_typeof(j) <> 'string' OR j #>> '{}' = '') THEN\n"
     "      RAISE EXCEPTION '%handling must be an array of node ids', e USING ERRCODE = 'check_violation';\n"
     "    END IF;\n"
     "    h := ARRAY(SELECT jsonb_array_elements_text($2->'handling'));\n"
     "    n := cardinality(h);\n"
     "    IF n = 0 OR (SELECT count(DISTINCT x) FROM unnest(h) x) <> n THEN\n"
     "      RAISE EXCEPTION '%handling must list one or more distinct nodes', e USING ERRCODE = 'check_violation';\n"
     "    END IF;\n"
     "    IF m = 'online' THEN\n"
     "      IF n <> 1 OR h[1] <> who THEN\n"
     "        RAISE EXCEPTION '%online mode needs exactly one handling node, the accepting node'\n"
     "          ' (accepting = %, handling = %)', e, who, array_to_string(h, ',') USING ERRCODE = 'check_violation';\n"
     "      END IF;\n"
     "    ELSIF m = 'proxy' THEN\n"
     "      IF n <> 1 OR h[1] = who THEN\n"
     "        RAISE EXCEPTION '%proxy mode needs exactly one handling node other than the accepting node'\n"
     "          ' (accepting = %, handling = %)', e, who, array_to_string(h, ',') USING ERRCODE = 'check_violation';\n"
     "      END IF;\n"
     "    ELSIF m = 'joint' THEN\n"
     "      IF n < 2 THEN\n"
     "        RAISE EXCEPTION '%joint mode needs two or more handling nodes (handling = %)', e,\n"
     "          array_to_string(h, ',') USING ERRCODE = 'check_violation';\n"
     "      END IF;\n"
     "    ELSE\n"
     "      RAISE EXCEPTION '%mode must be online, proxy or joint (mode = %)', e, coalesce(m, 'absent')\n"
     "        USING ERRCODE = 'check_violation';\n"
     "    END IF;\n"
     "    dl := tongban.domain_date($2->>'deadline');\n"
     "    IF dl IS NULL THEN\n"
     "      RAISE EXCEPTION '%deadline must be a date YYYY-MM-DD (deadline = %)', e,\n"
     "        coalesce($2->>'deadline', 'absent') USING ERRCODE = 'check_violation';\n"
     "    END IF;\n"
     "    INSERT INTO tongban.cases (case_id, service_item, applicant_name, applicant_code, applicant_code_type,\n"
     "                               mode, accepting, handling, deadline, state, submitted_at, last_event_at)\n"
     "    VALUES (cid, $2->>'service_item', $2->>'applicant_name', $2->>'applicant_code',\n"
     "            $2->>'applicant_code_type', m, who, h, dl, 'submitted', at, at);\n"
     "    RETURN;\n"
     "  END IF;\n"

     "  SELECT * INTO c FROM tongban.cases x WHERE x.case_id = cid FOR UPDATE;\n"
     "  IF NOT FOUND THEN\n"
     "    RAISE EXCEPTION '%', e || format('%s needs case %s, which is unknown here (no submit seen)',\n"
     "                                     coalesce(act, 'event'), cid) USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  lead := c.handling[1];\n"
     "  CASE act\n"
     "    WHEN 'withdraw' THEN\n"
     "      who_ok := who = c.accepting; party := 'the accepting node ' || c.accepting;\n"
     "      froms := '{submitted}'; target := 'withdrawn';\n"
     "    WHEN 'accept' THEN\n"
     "      who_ok := who = lead; party := 'the lead handling node ' || lead;\n"
     "      froms := '{submitted}'; target := 'accepted';\n"
     "    WHEN 'reject' THEN\n"
     "      who_ok := who = lead; party := 'the lead handling node ' || lead;\n"
     "      froms := '{submitted,accepted,in_progress}'; target := 'rejected';\n"
     "    WHEN 'start' THEN\n"
     "      who_ok := who = lead; party := 'the lead handling node ' || lead;\n"
     "      froms := '{accepted}'; target := 'in_progress';\n"
     "    WHEN 'part_done' THEN\n"
     "      who_ok := who = ANY (c.handling);\n"
     "      party := 'a handling node (' || array_to_string(c.handling, ',') || ')';\n"
     "      froms := '{in_progress}'; target := 'in_progress';\n"
     "    WHEN 'decide' THEN\n"
     "      who_ok := who = lead; party := 'the lead handling node ' || lead;\n"
     "      froms := '{in_progress}'; target := 'decided';\n"
     "    WHEN 'deliver' THEN\n"
     "      who_ok := who = c.accepting; party := 'the accepting node ' || c.accepting;\n"
     "      froms := '{decided}'; target := 'delivered';\n"
     "    WHEN 'rate' THEN\n"
     "      who_ok := who = c.accepting; party := 'the accepting node ' || c.accepting;\n"
     "      froms := '{delivered}'; target := 'rated';\n"
     "    ELSE\n"
     "      RAISE EXCEPTION '%unknown action % (submit, withdraw, accept, reject, start, part_done, decide,'\n"
     "        ' deliver, rate)', e, coalesce(act, 'absent') USING ERRCODE = 'check_violation';\n"
     "  END CASE;\n"
     "  IF NOT coalesce(who_ok, false) THEN\n"
     "    RAISE EXCEPTION '%', e || format('%s must be by %s (by_node = %s)', act, party, coalesce(who, 'absent'))\n"
     "      USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  IF NOT c.state = ANY (froms) THEN\n"
     "    RAISE EXCEPTION '%', e || format('%s needs state %s, case %s is %s', act, array_to_string(froms, ' or '),\n"
     "                                     cid, c.state) USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  IF act = 'part_done' THEN\n"
     "    IF c.mode <> 'joint' THEN\n"
     "      RAISE EXCEPTION '%part_done is for joint mode only (mode = %)', e, c.mode\n"
     "        USING ERRCODE = 'check_violation';\n"
     "    END IF;\n"
     "    IF who = ANY (c.parts_done) THEN\n"
     "      RAISE EXCEPTION '%part_done of % is already recorded (once per handling node)', e, who\n"
     "        USING ERRCODE = 'check_violation';\n"
     "    END IF;\n"
     "  ELSIF act = 'decide' AND c.mode = 'joint' THEN\n"
     "    missing := ARRAY(SELECT x FROM unnest(c.handling) x WHERE NOT x = ANY (c.parts_done));\n"
     "    IF cardinality(missing) > 0 THEN\n"
     "      RAISE EXCEPTION '%decide in joint mode needs part_done of every handling node (missing %)', e,\n"
     "        array_to_string(missing, ',') USING ERRCODE = 'check_violation';\n"
     "    END IF;\n"
     "  ELSIF act = 'rate' AND coalesce($2->>'score', '') !~ '^[1-5]$' THEN\n"
     "    RAISE EXCEPTION '%rate needs a score of 1..5 (score = %)', e, coalesce($2->>'score', 'absent')\n"
     "      USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  UPDATE tongban.cases x\n"
     "     SET state = target,\n"
     "         parts_done = CASE WHEN act = 'part_done' THEN x.parts_done || who ELSE x.parts_done END,\n"
     "         result = CASE WHEN act = 'decide' THEN $2->'result' ELSE x.result END,\n"
     "         rating = CASE WHEN act = 'rate' THEN ($2->>'score')::int ELSE x.rating END,\n"
     "         rating_comment = CASE WHEN act = 'rate' THEN coalesce($2->>'comment', $2->>'detail')\n"
     "                               ELSE x.rating_comment END,\n"
     "         updated_at = now(),\n"
     "         last_event_at = greatest(x.last_event_at, at)\n"
     "   WHERE x.case_id = cid;\n"
     "END $$;\n"

     /* BEFORE INSERT / UPDATE / DELETE of a tb.* row. Named records_zz_* so it
      * fires after records_before_update (which makes a local update's origin
      * the local node). Not guarded by tongban.applying: a received entry that
      * breaks a rule becomes a dead letter with this message. */
     "CREATE FUNCTION tongban.domain_rules() RETURNS trigger LANGUAGE plpgsql AS $$\n"
     "DECLARE\n"
     "  f text;\n"
     "  auth text;\n"
     "  prev jsonb;\n"
     "BEGIN\n"
     "  IF TG_OP = 'DELETE' THEN\n"
     "    IF OLD.catalog = 'tb.case_event' THEN\n"
     "      RAISE EXCEPTION '% %: case events are immutable (delete refused)', OLD.catalog, OLD.key\n"
     "        USING ERRCODE = 'check_violation';\n"
     "    END IF;\n"
     "    RETURN OLD;\n"
     "  END IF;\n"
     "  f := tongban.domain_authority_field(NEW.catalog);\n"
     "  IF f IS NULL THEN\n"
     "    RETURN NEW;\n"
     "  END IF;\n"
     "  IF TG_OP = 'UPDATE' THEN\n"
         /* only the clock moved (a re-insert after a delete): not a change */
     "    IF NEW.body = OLD.body AND NEW.origin = OLD.origin THEN\n"
     "      RETURN NEW;\n"
     "    END IF;\n"
     "    IF NEW.catalog = 'tb.case_event' THEN\n"
     "      RAISE EXCEPTION '% %: case events are immutable (update refused)', NEW.catalog, NEW.key\n"
     "        USING ERRCODE = 'check_violation';\n"
     "    END IF;\n"
     "  ELSE\n"
         /* an insert of a key that exists is an upsert's proposal (ON CONFLICT:
          * the update is checked, if the clocks let it happen) or a unique
          * violation. A case event: the same event again is a no-op, another
          * body is refused. The case row is locked first so events of one case
          * are checked one transaction at a time. */
     "    IF NEW.catalog = 'tb.case_event' AND NEW.body->>'action' IS DISTINCT FROM 'submit' THEN\n"
     "      PERFORM 1 FROM tongban.cases c WHERE c.case_id = NEW.body->>'case_id' FOR UPDATE;\n"
     "    END IF;\n"
     "    SELECT r.body INTO prev FROM tongban.records r WHERE r.catalog = NEW.catalog AND r.key = NEW.key;\n"
     "    IF FOUND THEN\n"
     "      IF NEW.catalog <> 'tb.case_event' THEN\n"
     "        RETURN NEW;\n"
     "      ELSIF prev = NEW.body THEN\n"
     "        RETURN NULL;\n"
     "      END IF;\n"
     "      RAISE EXCEPTION '% %: case events are immutable (the key exists with another body)', NEW.catalog,\n"
     "        NEW.key USING ERRCODE = 'check_violation';\n"
     "    END IF;\n"
     "  END IF;\n"
     "  IF jsonb_typeof(NEW.body) IS DISTINCT FROM 'object' THEN\n"
     "    RAISE EXCEPTION '% %: body must be a JSON object', NEW.catalog, NEW.key\n"
     "      USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  auth := NEW.body->>f;\n"
     "  IF coalesce(auth, '') = '' THEN\n"
     "    RAISE EXCEPTION '% %: % (the authority) is required', NEW.catalog, NEW.key, f\n"
     "      USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  IF TG_OP = 'UPDATE' AND auth IS DISTINCT FROM OLD.body->>f THEN\n"
     "    RAISE EXCEPTION '% %: the authority cannot change (% % -> %)', NEW.catalog, NEW.key, f,\n"
     "      coalesce(OLD.body->>f, 'absent'), auth USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  IF NEW.origin IS DISTINCT FROM auth THEN\n"
     "    RAISE EXCEPTION '% %: origin % is not the authority (% = %)', NEW.catalog, NEW.key, NEW.origin, f, auth\n"
     "      USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  IF NEW.catalog = 'tb.licence' THEN\n"
     "    PERFORM tongban.licence_check(NEW.key, NEW.body, CASE WHEN TG_OP = 'UPDATE' THEN OLD.body END);\n"
     "  ELSIF NEW.catalog = 'tb.case_event' THEN\n"
     "    PERFORM tongban.case_event_apply(NEW.key, NEW.body);\n"
     "  END IF;\n"
     "  RETURN NEW;\n"
     "END $$;\n"
     TRG_DOMAIN_RULES

     /* ---- events: every tb.* change, local or received, for applications ---- */
     "CREATE TABLE tongban.events (\n"
     "  id bigserial PRIMARY KEY,\n"
     "  at timestamptz NOT NULL DEFAULT now(),\n"
     "  kind text NOT NULL,\n"
     "  key text NOT NULL,\n"
     "  origin text NOT NULL,\n"
     "  op char(1) NOT NULL CHECK (op IN ('I', 'U', 'D')),\n"
     "  body jsonb);\n"
     "CREATE TABLE tongban.event_cursors (\n"
     "  name text PRIMARY KEY,\n"
     "  last_id bigint NOT NULL DEFAULT 0 CHECK (last_id >= 0),\n"
     "  updated_at timestamptz NOT NULL DEFAULT now());\n"
     /* statement-level: one filtered scan of the transition table per statement */
     "CREATE FUNCTION tongban.events_capture_new() RETURNS trigger LANGUAGE plpgsql AS $$\n"
     "BEGIN\n"
     "  INSERT INTO tongban.events (kind, key, origin, op, body)\n"
     "  SELECT substr(n.catalog, 4), n.key, n.origin, left(TG_OP, 1), n.body\n"
     "    FROM new_rows n WHERE n.catalog LIKE 'tb.%';\n"
     "  IF FOUND THEN PERFORM pg_notify('tongban_events', ''); END IF;\n"
     "  RETURN NULL;\n"
     "END $$;\n"
     "CREATE FUNCTION tongban.events_capture_old() RETURNS trigger LANGUAGE plpgsql AS $$\n"
     "BEGIN\n"
     "  INSERT INTO tongban.events (kind, key, origin, op, body)\n"
     "  SELECT substr(o.catalog, 4), o.key, o.origin, 'D', o.body FROM old_rows o WHERE o.catalog LIKE 'tb.%';\n"
     "  IF FOUND THEN PERFORM pg_notify('tongban_events', ''); END IF;\n"
     "  RETURN NULL;\n"
     "END $$;\n"
     "CREATE TRIGGER records_events_insert AFTER INSERT ON tongban.records\n"
     "  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tongban.events_capture_new();\n"
     "CREATE TRIGGER records_events_update AFTER UPDATE ON tongban.records\n"
     "  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT\n"
     "  WHEN (current_setting('tongban.clock_fixup', true) IS DISTINCT FROM 'on')\n"
     "  EXECUTE FUNCTION tongban.events_capture_new();\n"
     "CREATE TRIGGER records_events_delete AFTER DELETE ON tongban.records\n"
     "  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tongban.events_capture_old();\n"

     /* ---- indexes for the read functions ---- */
     /* Case events by case: a partial index on key (bytewise, for the
      * <case_id>/ prefix range). Key and catalog never change in place, so
      * updates of ordinary rows stay HOT. */
     "CREATE INDEX records_case_event_key ON tongban.records (key text_pattern_ops)\n"
     "  WHERE catalog = 'tb.case_event';\n"
     /* Licences by holder: a side table kept by row triggers, not an index
      * on records ((body->>'holder_code')): any index over body, even one
      * partial to tb.licence, makes every body update of every catalog a
      * non-HOT update (a new primary-key entry per updated row). */
     "CREATE TABLE tongban.licence_holders (\n"
     "  identifier text PRIMARY KEY,\n"
     "  holder_code text NOT NULL);\n"
     "CREATE INDEX licence_holders_code ON tongban.licence_holders (holder_code);\n"
     "CREATE FUNCTION tongban.licence_holders_sync() RETURNS trigger LANGUAGE plpgsql AS $$\n"
     "BEGIN\n"
     "  IF TG_OP = 'DELETE' OR coalesce(NEW.body->>'holder_code', '') = '' THEN\n"
     "    DELETE FROM tongban.licence_holders h WHERE h.identifier = coalesce(NEW.key, OLD.key);\n"
     "  ELSE\n"
     "    INSERT INTO tongban.licence_holders AS h (identifier, holder_code)\n"
     "    VALUES (NEW.key, NEW.body->>'holder_code')\n"
     "    ON CONFLICT (identifier) DO UPDATE SET holder_code = EXCLUDED.holder_code\n"
     "      WHERE h.holder_code IS DISTINCT FROM EXCLUDED.holder_code;\n"
     "  END IF;\n"
     "  RETURN NULL;\n"
     "END $$;\n"
     TRG_LICENCE_HOLDERS

     /* ---- read and write functions (jsonb; NULL when the object does not exist) ---- */
     "CREATE FUNCTION tongban.record_json(r tongban.records) RETURNS jsonb LANGUAGE sql STABLE AS $$\n"
     "  SELECT jsonb_build_object('catalog', $1.catalog, 'key', $1.key, 'version', $1.version, 'origin', $1.origin,\n"
     "                            'body', $1.body, 'updated_at', tongban.rfc3339($1.updated_at)) $$;\n"
     "CREATE FUNCTION tongban.record_args(fn text, catalog text, key text, body jsonb, tb boolean) RETURNS void\n"
     "LANGUAGE plpgsql STABLE AS $$\n"
     "BEGIN\n"
     "  IF coalesce($2, '') = '' OR coalesce($3, '') = '' THEN\n"
     "    RAISE EXCEPTION '%: catalog and key are required', $1 USING ERRCODE = 'invalid_parameter_value';\n"
     "  END IF;\n"
     "  IF $4 IS NULL AND $1 <> 'record_delete' THEN\n"
     "    RAISE EXCEPTION '%: body is required', $1 USING ERRCODE = 'invalid_parameter_value';\n"
     "  END IF;\n"
     "  IF $5 AND $2 NOT LIKE 'tb.%' THEN\n"
     "    RAISE EXCEPTION '% %: % is for the tb.* catalogs (use record_put)', $2, $3, $1\n"
     "      USING ERRCODE = 'check_violation';\n"
     "  ELSIF NOT $5 AND $2 LIKE 'tb.%' THEN\n"
     "    RAISE EXCEPTION '% %: catalogs starting with tb. are written by the domain operations only', $2, $3\n"
     "      USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "END $$;\n"
     "CREATE FUNCTION tongban.record_get(catalog text, key text) RETURNS jsonb LANGUAGE sql STABLE AS $$\n"
     "  SELECT tongban.record_json(r) FROM tongban.records r WHERE r.catalog = $1 AND r.key = $2 $$;\n"
     "CREATE FUNCTION tongban.record_put(catalog text, key text, body jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$\n"
     "#variable_conflict use_column\n"
     "BEGIN\n"
     "  PERFORM tongban.record_args('record_put', $1, $2, $3, false);\n"
     "  INSERT INTO tongban.records AS t (catalog, key, body) VALUES ($1, $2, $3)\n"
     "  ON CONFLICT (catalog, key) DO UPDATE SET body = EXCLUDED.body;\n"
     "  RETURN tongban.record_get($1, $2);\n"
     "END $$;\n"
     "CREATE FUNCTION tongban.record_delete(catalog text, key text) RETURNS jsonb LANGUAGE plpgsql AS $$\n"
     "#variable_conflict use_column\n"
     "BEGIN\n"
     "  PERFORM tongban.record_args('record_delete', $1, $2, NULL, false);\n"
     "  DELETE FROM tongban.records t WHERE t.catalog = $1 AND t.key = $2;\n"
     "  IF NOT FOUND THEN\n"
     "    RETURN NULL;\n"
     "  END IF;\n"
     "  RETURN jsonb_build_object('catalog', $1, 'key', $2);\n"
     "END $$;\n"
     "CREATE FUNCTION tongban.domain_insert(catalog text, key text, body jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$\n"
     "#variable_conflict use_column\n"
     "DECLARE\n"
     "  r tongban.records;\n"
     "BEGIN\n"
     "  PERFORM tongban.record_args('domain_insert', $1, $2, $3, true);\n"
     "  SELECT * INTO r FROM tongban.records t WHERE t.catalog = $1 AND t.key = $2;\n"
     "  IF FOUND THEN\n"
     "    IF $1 = 'tb.case_event' AND r.body = $3 THEN\n"
     "      RETURN tongban.record_json(r);\n"
     "    END IF;\n"
     "    RAISE EXCEPTION '% %: already exists', $1, $2 USING ERRCODE = 'unique_violation';\n"
     "  END IF;\n"
     "  INSERT INTO tongban.records (catalog, key, body) VALUES ($1, $2, $3);\n"
     "  RETURN tongban.record_get($1, $2);\n"
     "END $$;\n"
     "CREATE FUNCTION tongban.domain_put(catalog text, key text, body jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$\n"
     "#variable_conflict use_column\n"
     "BEGIN\n"
     "  PERFORM tongban.record_args('domain_put', $1, $2, $3, true);\n"
     "  INSERT INTO tongban.records AS t (catalog, key, body) VALUES ($1, $2, $3)\n"
     "  ON CONFLICT (catalog, key) DO UPDATE SET body = EXCLUDED.body;\n"
     "  RETURN tongban.record_get($1, $2);\n"
     "END $$;\n"

     "CREATE FUNCTION tongban.licence_json(r tongban.records) RETURNS jsonb LANGUAGE sql STABLE AS $$\n"
     "  SELECT $1.body || jsonb_build_object('updated_at', tongban.rfc3339($1.updated_at),\n"
     "                                       'local_age_s', round(extract(epoch FROM now() - $1.updated_at), 3)) $$;\n"
     "CREATE FUNCTION tongban.licence_get(identifier text) RETURNS jsonb LANGUAGE sql STABLE AS $$\n"
     "  SELECT tongban.licence_json(r) FROM tongban.records r WHERE r.catalog = 'tb.licence' AND r.key = $1 $$;\n"
     "CREATE FUNCTION tongban.licence_find(holder_code text) RETURNS jsonb LANGUAGE sql STABLE AS $$\n"
     "  SELECT jsonb_build_object('licences', coalesce(jsonb_agg(tongban.licence_json(r) ORDER BY r.key), '[]'))\n"
     "    FROM tongban.licence_holders h JOIN tongban.records r ON r.catalog = 'tb.licence' AND r.key = h.identifier\n"
     "   WHERE h.holder_code = $1 $$;\n"

     "CREATE FUNCTION tongban.case_json(c tongban.cases) RETURNS jsonb LANGUAGE sql STABLE AS $$\n"
     "  SELECT jsonb_build_object('case_id', $1.case_id, 'state', $1.state, 'mode', $1.mode,\n"
     "           'service_item', $1.service_item, 'applicant_name', $1.applicant_name,\n"
     "           'applicant_code', $1.applicant_code, 'applicant_code_type', $1.applicant_code_type,\n"
     "           'accepting', $1.accepting, 'handling', to_jsonb($1.handling), 'deadline', $1.deadline,\n"
     "           'overdue', tongban.case_overdue($1.deadline, $1.state), 'parts_done', to_jsonb($1.parts_done),\n"
     "           'result', $1.result, 'rating', $1.rating, 'rating_comment', $1.rating_comment,\n"
     "           'submitted_at', tongban.rfc3339($1.submitted_at), 'updated_at', tongban.rfc3339($1.updated_at),\n"
     "           'last_event_at', tongban.rfc3339($1.last_event_at)) $$;\n"
     "CREATE FUNCTION tongban.case_get(case_id text) RETURNS jsonb LANGUAGE sql STABLE AS $$\n"
     "  SELECT tongban.case_json(c) FROM tongban.cases c WHERE c.case_id = $1 $$;\n"
     "CREATE FUNCTION tongban.case_list(state text, overdue boolean) RETURNS jsonb LANGUAGE sql STABLE AS $$\n"
     "  SELECT jsonb_build_object('cases',\n"
     "           coalesce(jsonb_agg(tongban.case_json(c) ORDER BY c.submitted_at, c.case_id), '[]'))\n"
     "    FROM tongban.cases c\n"
     "   WHERE ($1 IS NULL OR c.state = $1) AND ($2 IS NULL OR tongban.case_overdue(c.deadline, c.state) = $2) $$;\n"
     /* in (at, event_id) order: the same on every node */
     "CREATE FUNCTION tongban.case_history(case_id text) RETURNS jsonb LANGUAGE sql STABLE AS $$\n"
     "  SELECT jsonb_build_object('events', coalesce(\n"
     "           (SELECT jsonb_agg(r.body ORDER BY (r.body->>'at')::timestamptz, r.body->>'event_id' COLLATE \"C\")\n"
     "              FROM tongban.records r\n"
     "             WHERE r.catalog = 'tb.case_event' AND r.key ~>=~ ($1 || '/') AND r.key ~<~ ($1 || '0')), '[]'))\n"
     "   WHERE EXISTS (SELECT 1 FROM tongban.cases c WHERE c.case_id = $1) $$;\n"

     "CREATE FUNCTION tongban.events_next(cursor text, after bigint, max int) RETURNS jsonb\n"
     "LANGUAGE plpgsql STABLE AS $$\n"
     "DECLARE\n"
     "  start bigint;\n"
     "  lim int := coalesce($3, 100);\n"
     "BEGIN\n"
     "  IF coalesce($1, '') = '' THEN\n"
     "    RAISE EXCEPTION 'events_next: cursor is required' USING ERRCODE = 'invalid_parameter_value';\n"
     "  END IF;\n"
     "  IF lim < 1 OR lim > 1000 THEN\n"
     "    RAISE EXCEPTION 'events_next: max must be 1..1000 (max = %)', lim\n"
     "      USING ERRCODE = 'invalid_parameter_value';\n"
     "  END IF;\n"
     "  start := coalesce($2, (SELECT c.last_id FROM tongban.event_cursors c WHERE c.name = $1), 0);\n"
     "  IF start < 0 THEN\n"
     "    RAISE EXCEPTION 'events_next: after must be >= 0 (after = %)', start\n"
     "      USING ERRCODE = 'invalid_parameter_value';\n"
     "  END IF;\n"
     "  RETURN (SELECT jsonb_build_object('events', coalesce(jsonb_agg(jsonb_build_object('id', e.id,\n"
     "                    'at', tongban.rfc3339(e.at), 'kind', e.kind, 'key', e.key, 'origin', e.origin, 'op', e.op,\n"
     "                    'body', e.body) ORDER BY e.id), '[]'), 'last_id', coalesce(max(e.id), start))\n"
     "            FROM (SELECT * FROM tongban.events v WHERE v.id > start ORDER BY v.id LIMIT lim) e);\n"
     "END $$;\n"
     "CREATE FUNCTION tongban.events_ack(cursor text, id bigint) RETURNS jsonb LANGUAGE plpgsql AS $$\n"
     "#variable_conflict use_column\n"
     "DECLARE\n"
     "  top bigint;\n"
     "  l bigint;\n"
     "BEGIN\n"
     "  IF coalesce($1, '') = '' THEN\n"
     "    RAISE EXCEPTION 'events_ack: cursor is required' USING ERRCODE = 'invalid_parameter_value';\n"
     "  END IF;\n"
     "  top := coalesce((SELECT max(v.id) FROM tongban.events v), 0);\n"
     "  IF $2 IS NULL OR $2 < 0 OR $2 > top THEN\n"
     "    RAISE EXCEPTION 'events_ack: id must be 0..% (the last event), not %', top, coalesce($2::text, 'absent')\n"
     "      USING ERRCODE = 'invalid_parameter_value';\n"
     "  END IF;\n"
     "  INSERT INTO tongban.event_cursors AS c (name, last_id, updated_at) VALUES ($1, $2, now())\n"
     "  ON CONFLICT (name) DO UPDATE SET last_id = greatest(c.last_id, EXCLUDED.last_id), updated_at = now()\n"
     "  RETURNING c.last_id INTO l;\n"
     "  RETURN jsonb_build_object('cursor', $1, 'last_id', l);\n"
     "END $$;\n"

     "CREATE FUNCTION tongban.supitem_list(level text) RETURNS jsonb LANGUAGE sql STABLE AS $$\n"
     "  SELECT jsonb_build_object('items', coalesce(jsonb_agg(r.body ORDER BY r.key), '[]'))\n"
     "    FROM tongban.records r WHERE r.catalog = 'tb.supitem' AND ($1 IS NULL OR r.body->>'level' = $1) $$;\n"
     "CREATE FUNCTION tongban.complaint_get(id text) RETURNS jsonb LANGUAGE sql STABLE AS $$\n"
     "  SELECT r.body || jsonb_build_object('receipt',\n"
     "           (SELECT x.body FROM tongban.records x WHERE x.catalog = 'tb.complaint_receipt' AND x.key = $1))\n"
     "    FROM tongban.records r WHERE r.catalog = 'tb.complaint' AND r.key = $1 $$;\n"},

    /* Attachments of cases (docs/client-api.md, "Attachments"): the bytes of
     * a material travel as tb.chunk rows <case_id>/<sha256>/<index 6 digits>
     * of at most 256 KiB each (base64 in the body), routed like case events
     * (the parties of the case but this node), written once by a party
     * (origin = by_node) for a sha256 that the case's submit event names in
     * materials. Their events carry the body without data. */
    {8, "case attachments: tb.chunk routing, rules, status and read functions",
     "CREATE OR REPLACE FUNCTION tongban.domain_authority_field(catalog text) RETURNS text\n"
     "LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$\n"
     "  SELECT CASE $1 WHEN 'tb.licence' THEN 'issuer_node' WHEN 'tb.case_event' THEN 'by_node'\n"
     "                 WHEN 'tb.risk' THEN 'issued_by' WHEN 'tb.complaint' THEN 'filed_by'\n"
     "                 WHEN 'tb.complaint_receipt' THEN 'by' WHEN 'tb.supitem' THEN 'owner'\n"
     "                 WHEN 'tb.chunk' THEN 'by_node' END $$;\n"
     "CREATE OR REPLACE FUNCTION tongban.domain_dests(catalog text, body jsonb) RETURNS text[]\n"
     "LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$\n"
     "DECLARE\n"
     "  d text[];\n"
     "BEGIN\n"
     "  CASE $1\n"
     "    WHEN 'tb.licence' THEN d := ARRAY['topic:licences'];\n"
     "    WHEN 'tb.risk' THEN d := ARRAY['topic:risk'];\n"
     "    WHEN 'tb.supitem' THEN d := ARRAY['topic:supervision'];\n"
     "    WHEN 'tb.complaint' THEN d := ARRAY[$2->>'region'];\n"
     "    WHEN 'tb.complaint_receipt' THEN d := ARRAY[$2->>'filed_by'];\n"
     "    WHEN 'tb.case_event' THEN\n"
     "      IF $2->>'action' = 'submit' THEN\n"
     "        d := ARRAY[$2->>'accepting'];\n"
     "        IF jsonb_typeof($2->'handling') = 'array' THEN\n"
     "          d := d || ARRAY(SELECT jsonb_array_elements_text($2->'handling'));\n"
     "        END IF;\n"
     "      ELSE\n"
     "        SELECT c.accepting || c.handling INTO d FROM tongban.cases c WHERE c.case_id = $2->>'case_id';\n"
     "      END IF;\n"
     "    WHEN 'tb.chunk' THEN\n"
     "      SELECT c.accepting || c.handling INTO d FROM tongban.cases c WHERE c.case_id = $2->>'case_id';\n"
     "    ELSE\n"
     "      RETURN '{}';\n"
     "  END CASE;\n"
     "  RETURN ARRAY(SELECT DISTINCT x FROM unnest(d) x\n"
     "                WHERE x <> '' AND x IS DISTINCT FROM tongban.local_node() ORDER BY x);\n"
     "END $$;\n"
     /* events of chunks: the body without its data (the bytes are read with attachment_get) */
     "CREATE OR REPLACE FUNCTION tongban.events_capture_new() RETURNS trigger LANGUAGE plpgsql AS $$\n"
     "BEGIN\n"
     "  INSERT INTO tongban.events (kind, key, origin, op, body)\n"
     "  SELECT substr(n.catalog, 4), n.key, n.origin, left(TG_OP, 1),\n"
     "         CASE WHEN n.catalog = 'tb.chunk' THEN n.body - 'data' ELSE n.body END\n"
     "    FROM new_rows n WHERE n.catalog LIKE 'tb.%';\n"
     "  IF FOUND THEN PERFORM pg_notify('tongban_events', ''); END IF;\n"
     "  RETURN NULL;\n"
     "END $$;\n"
     "CREATE OR REPLACE FUNCTION tongban.events_capture_old() RETURNS trigger LANGUAGE plpgsql AS $$\n"
     "BEGIN\n"
     "  INSERT INTO tongban.events (kind, key, origin, op, body)\n"
     "  SELECT substr(o.catalog, 4), o.key, o.origin, 'D',\n"
     "         CASE WHEN o.catalog = 'tb.chunk' THEN o.body - 'data' ELSE o.body END\n"
     "    FROM old_rows o WHERE o.catalog LIKE 'tb.%';\n"
     "  IF FOUND THEN PERFORM pg_notify('tongban_events', ''); END IF;\n"
     "  RETURN NULL;\n"
     "END $$;\n"
     "CREATE INDEX records_chunk_key ON tongban.records (key text_pattern_ops) WHERE catalog = 'tb.chunk';\n"
     /* the submit event's materials entry of sha256 in case cid (NULL: none) */
     "CREATE FUNCTION tongban.case_material(cid text, sha256 text) RETURNS jsonb LANGUAGE sql STABLE AS $$\n"
     "  SELECT m FROM tongban.records r CROSS JOIN LATERAL jsonb_array_elements(\n"
     "           CASE WHEN jsonb_typeof(r.body->'materials') = 'array' THEN r.body->'materials' ELSE '[]' END) m\n"
     "   WHERE r.catalog = 'tb.case_event' AND r.key ~>=~ ($1 || '/') AND r.key ~<~ ($1 || '0')\n"
     "     AND r.body->>'action' = 'submit' AND m->>'sha256' = $2 LIMIT 1 $$;\n"
     /* BEFORE INSERT / UPDATE / DELETE of a tb.chunk row, after
      * records_zz_domain_* (which checked origin = by_node) */
     "CREATE FUNCTION tongban.chunk_rules() RETURNS trigger LANGUAGE plpgsql AS $$\n"
     "DECLARE\n"
     "  e text;\n"
     "  b jsonb;\n"
     "  cid text;\n"
     "  sha text;\n"
     "  ix bigint;\n"
     "  cnt bigint;\n"
     "  sz bigint;\n"
     "  want bigint;\n"
     "  got bigint;\n"
     "  c tongban.cases;\n"
     "BEGIN\n"
     "  IF TG_OP = 'DELETE' THEN\n"
     "    RAISE EXCEPTION 'tb.chunk %: chunks are immutable (delete refused)', OLD.key\n"
     "      USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  b := NEW.body;\n"
     "  e := 'tb.chunk ' || NEW.key || ': ';\n"
     "  IF TG_OP = 'UPDATE' THEN\n"
     "    IF NEW.body = OLD.body AND NEW.origin = OLD.origin THEN\n"
     "      RETURN NEW;\n"
     "    END IF;\n"
     "    RAISE EXCEPTION '%chunks are immutable (update refused)', e USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  cid := b->>'case_id';\n"
     "  sha := b->>'sha256';\n"
     "  IF coalesce(cid, '') = '' OR coalesce(sha, '') !~ '^[0-9a-f]{64}$' THEN\n"
     "    RAISE EXCEPTION '%case_id and sha256 (64 lowercase hex) are required', e USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  IF coalesce(b->>'index', '') !~ '^[0-9]{1,9}$' OR coalesce(b->>'count', '') !~ '^[0-9]{1,9}$'\n"
     "     OR coalesce(b->>'size', '') !~ '^[0-9]{1,12}$' OR jsonb_typeof(b->'data') IS DISTINCT FROM 'string' THEN\n"
     "    RAISE EXCEPTION '%index, count, size (integers) and data (base64) are required', e\n"
     "      USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  ix := (b->>'index')::bigint;\n"
     "  cnt := (b->>'count')::bigint;\n"
     "  sz := (b->>'size')::bigint;\n"
     "  IF sz < 1 OR sz > 67108864 THEN\n"
     "    RAISE EXCEPTION '%size must be 1..67108864 bytes (64 MiB), not %', e, sz USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  IF cnt <> (sz + 262143) / 262144 THEN\n"
     "    RAISE EXCEPTION '%count must be ceil(size / 262144) = %, not %', e, (sz + 262143) / 262144, cnt\n"
     "      USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  IF ix >= cnt THEN\n"
     "    RAISE EXCEPTION '%index must be below count (% >= %)', e, ix, cnt USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  IF NEW.key IS DISTINCT FROM cid || '/' || sha || '/' || lpad(ix::text, 6, '0') THEN\n"
     "    RAISE EXCEPTION '%key must be <case_id>/<sha256>/<index, 6 digits>', e USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  want := CASE WHEN ix < cnt - 1 THEN 262144 ELSE sz - (cnt - 1) * 262144 END;\n"
     "  BEGIN\n"
     "    got := length(decode(b->>'data', 'base64'));\n"
     "  EXCEPTION WHEN data_exception OR invalid_parameter_value THEN\n"
     "    RAISE EXCEPTION '%data is not base64', e USING ERRCODE = 'check_violation';\n"
     "  END;\n"
     "  IF got <> want THEN\n"
     "    RAISE EXCEPTION '%data has % bytes, chunk % of % must have %', e, got, ix, cnt, want\n"
     "      USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  SELECT * INTO c FROM tongban.cases x WHERE x.case_id = cid;\n"
     "  IF NOT FOUND THEN\n"
     "    RAISE EXCEPTION '%no case % on this node', e, cid USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  IF NOT (b->>'by_node' = c.accepting OR b->>'by_node' = ANY (c.handling)) THEN\n"
     "    RAISE EXCEPTION '%by_node % is no party of case %', e, b->>'by_node', cid USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  IF tongban.case_material(cid, sha) IS NULL THEN\n"
     "    RAISE EXCEPTION '%the materials of case % name no sha256 %', e, cid, sha USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  RETURN NEW;\n"
     "END $$;\n"
     TRG_CHUNK_RULES
     /* {case_id, sha256, size, count, have: [index...], complete}; NULL when
      * the case is unknown; refused when neither chunks nor the materials
      * know sha256 */
     "CREATE FUNCTION tongban.attachment_status(case_id text, sha256 text) RETURNS jsonb\n"
     "LANGUAGE plpgsql STABLE AS $$\n"
     "DECLARE\n"
     "  have jsonb;\n"
     "  n bigint;\n"
     "  sz bigint;\n"
     "  m jsonb;\n"
     "BEGIN\n"
     "  IF NOT EXISTS (SELECT 1 FROM tongban.cases c WHERE c.case_id = $1) THEN\n"
     "    RETURN NULL;\n"
     "  END IF;\n"
     "  SELECT coalesce(jsonb_agg((r.body->>'index')::bigint ORDER BY r.key), '[]'), count(*),\n"
     "         max((r.body->>'size')::bigint)\n"
     "    INTO have, n, sz\n"
     "    FROM tongban.records r\n"
     "   WHERE r.catalog = 'tb.chunk' AND r.key ~>=~ ($1 || '/' || $2 || '/') AND r.key ~<~ ($1 || '/' || $2 || '0');\n"
     "  IF sz IS NULL THEN\n"
     "    m := tongban.case_material($1, $2);\n"
     "    IF m IS NULL THEN\n"
     "      RAISE EXCEPTION 'case %: its materials name no sha256 % (attach only listed materials)', $1, $2\n"
     "        USING ERRCODE = 'check_violation';\n"
     "    END IF;\n"
     "    IF coalesce(m->>'size', '') !~ '^[0-9]{1,12}$' OR (m->>'size')::bigint NOT BETWEEN 1 AND 67108864 THEN\n"
     "      RAISE EXCEPTION 'case %: material % gives no size of 1..67108864 bytes (size = %)', $1, $2,\n"
     "        coalesce(m->>'size', 'absent') USING ERRCODE = 'check_violation';\n"
     "    END IF;\n"
     "    sz := (m->>'size')::bigint;\n"
     "  END IF;\n"
     "  RETURN jsonb_build_object('case_id', $1, 'sha256', $2, 'size', sz, 'count', (sz + 262143) / 262144,\n"
     "                            'have', have, 'complete', n = (sz + 262143) / 262144);\n"
     "END $$;\n"
     "CREATE FUNCTION tongban.attachment_get(case_id text, sha256 text, index text) RETURNS jsonb\n"
     "LANGUAGE sql STABLE AS $$\n"
     "  SELECT r.body FROM tongban.records r\n"
     "   WHERE r.catalog = 'tb.chunk' AND $3 ~ '^[0-9]{1,6}$' AND r.key = $1 || '/' || $2 || '/' || lpad($3, 6, '0') $$;\n"
     /* case.attach: one chunk by this node (the same chunk again is a no-op);
      * size must be the one the materials entry gives, if it gives one.
      * Returns the attachment's status; NULL when the case is unknown. */
     "CREATE FUNCTION tongban.attachment_put(case_id text, sha256 text, size text, index text, data text)\n"
     "RETURNS jsonb LANGUAGE plpgsql AS $$\n"
     "DECLARE\n"
     "  m jsonb;\n"
     "  b jsonb;\n"
     "  prev jsonb;\n"
     "  k text;\n"
     "  sz bigint;\n"
     "BEGIN\n"
     "  IF coalesce($3, '') !~ '^[0-9]{1,12}$' OR coalesce($4, '') !~ '^[0-9]{1,6}$' THEN\n"
     "    RAISE EXCEPTION 'attachment_put: size and index must be integers' USING ERRCODE = 'invalid_parameter_value';\n"
     "  END IF;\n"
     "  IF NOT EXISTS (SELECT 1 FROM tongban.cases c WHERE c.case_id = $1) THEN\n"
     "    RETURN NULL;\n"
     "  END IF;\n"
     "  m := tongban.case_material($1, $2);\n"
     "  IF m IS NULL THEN\n"
     "    RAISE EXCEPTION 'case %: its materials name no sha256 % (attach only listed materials)', $1, $2\n"
     "      USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  sz := $3::bigint;\n"
     "  IF m ? 'size' AND m->>'size' IS DISTINCT FROM sz::text THEN\n"
     "    RAISE EXCEPTION 'case %: material % has size %, not %', $1, $2, m->>'size', sz\n"
     "      USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  b := jsonb_build_object('case_id', $1, 'sha256', $2, 'index', $4::bigint, 'count', (sz + 262143) / 262144,\n"
     "                          'size', sz, 'data', $5, 'by_node', tongban.local_node());\n"
     "  k := $1 || '/' || $2 || '/' || lpad(($4::bigint)::text, 6, '0');\n"
     "  SELECT r.body INTO prev FROM tongban.records r WHERE r.catalog = 'tb.chunk' AND r.key = k;\n"
     "  IF NOT FOUND THEN\n"
     "    INSERT INTO tongban.records (catalog, key, body) VALUES ('tb.chunk', k, b);\n"
     "  ELSIF prev->>'data' IS DISTINCT FROM $5 OR prev->>'size' IS DISTINCT FROM sz::text THEN\n"
     "    RAISE EXCEPTION 'tb.chunk %: chunks are immutable (stored with other bytes)', k\n"
     "      USING ERRCODE = 'check_violation';\n"
     "  END IF;\n"
     "  RETURN tongban.attachment_status($1, $2);\n"
     "END $$;\n"},

    /* Deliveries the node refused (undecodable, signer unknown or revoked,
     * bad signature, addressed elsewhere): kept byte for byte with the
     * reason and acked, so the hub's stream to this node moves on
     * (store_refused.h). sender and seq are what the batch claims, NULL
     * when it cannot be decoded; hub_seq NULL only beyond bigint. A
     * redelivery of one already parked (its ack lost) adds no row. */
    {9, "refused_deliveries: deliveries refused by this node, parked with the reason",
     "CREATE TABLE tongban.refused_deliveries ("
     "  id bigserial PRIMARY KEY,"
     "  hub_seq bigint,"
     "  sender text,"
     "  seq bigint,"
     "  reason text NOT NULL,"
     "  delivery bytea NOT NULL,"
     "  retries int NOT NULL DEFAULT 0,"
     "  refused_at timestamptz NOT NULL DEFAULT now(),"
     "  retried_at timestamptz);\n"
     "CREATE UNIQUE INDEX refused_deliveries_once ON tongban.refused_deliveries (hub_seq, (sha256(delivery)));\n"},

    /* Identifiers compared bytewise. Catalogs, keys, destinations and
     * senders are identifiers, not prose: under the database's default
     * collation (C.UTF-8, zh_CN.UTF-8, ...) every key comparison in the
     * primary keys went through strcoll, ~8-10 % of PostgreSQL's work per
     * record on both ends of a sync. Bytewise order is UTF-8 code point
     * order, which is what C.UTF-8 gives too; only a database with a
     * language collation sees ORDER BY key change. No table is rewritten,
     * the indexes on these columns are rebuilt. */
    {10, "identifier columns (catalog, key, dest, sender) compared bytewise: COLLATE \"C\"",
     "DROP TRIGGER records_zz_domain_insert ON tongban.records;\n"
     "DROP TRIGGER records_zz_domain_update ON tongban.records;\n"
     "DROP TRIGGER records_zz_domain_delete ON tongban.records;\n"
     "DROP TRIGGER records_licence_holders ON tongban.records;\n"
     "DROP TRIGGER records_licence_holders_delete ON tongban.records;\n"
     "DROP TRIGGER records_zzz_chunk ON tongban.records;\n"
     "DROP TRIGGER records_zzz_chunk_delete ON tongban.records;\n"
     "ALTER TABLE tongban.records ALTER COLUMN catalog TYPE text COLLATE \"C\",\n"
     "                            ALTER COLUMN key TYPE text COLLATE \"C\";\n"
     "ALTER TABLE tongban.tombstones ALTER COLUMN catalog TYPE text COLLATE \"C\",\n"
     "                               ALTER COLUMN key TYPE text COLLATE \"C\";\n"
     "ALTER TABLE tongban.outbox ALTER COLUMN dest TYPE text COLLATE \"C\";\n"
     "ALTER TABLE tongban.routes ALTER COLUMN catalog TYPE text COLLATE \"C\",\n"
     "                           ALTER COLUMN dest TYPE text COLLATE \"C\";\n"
     "ALTER TABLE tongban.inbox ALTER COLUMN sender TYPE text COLLATE \"C\";\n"
     TRG_DOMAIN_RULES
     TRG_LICENCE_HOLDERS
     TRG_CHUNK_RULES},

    /* Retention (store_prune.c, housekeep.c). The inbox is pruned, so it
     * alone can no longer tell that a batch was applied: per sender, the
     * highest seq pruned is kept as a watermark, and a BEFORE INSERT
     * trigger skips an inbox row at or below it (RETURN NULL: the apply's
     * ON CONFLICT DO NOTHING then reports it as a duplicate, the batch is
     * not applied again). Only rows older than the retention are pruned,
     * never a sender's newest, never one at or above the seq of a delivery
     * of that sender still parked in refused_deliveries, so every seq at or
     * below a watermark was applied or will never arrive. Applied dead
     * letters are found by retried_at (an index of those only). */
    {11, "retention: inbox watermarks per sender, applied dead letters by age",
     "CREATE TABLE tongban.inbox_watermarks ("
     "  sender text COLLATE \"C\" PRIMARY KEY,"
     "  seq bigint NOT NULL,"
     "  pruned_at timestamptz NOT NULL DEFAULT now());\n"
     "CREATE FUNCTION tongban.inbox_watermark_check() RETURNS trigger LANGUAGE plpgsql AS $$\n"
     "DECLARE\n"
     "  w bigint;\n"
     "BEGIN\n"
     "  SELECT m.seq INTO w FROM tongban.inbox_watermarks m WHERE m.sender = NEW.sender COLLATE \"C\";\n"
     "  IF w IS NOT NULL AND NEW.seq <= w THEN\n"
     "    RAISE NOTICE 'inbox: batch %/% is at or below the watermark % of its pruned inbox rows: already applied',\n"
     "      NEW.sender, NEW.seq, w;\n"
     "    RETURN NULL;\n"
     "  END IF;\n"
     "  RETURN NEW;\n"
     "END $$;\n"
     "CREATE TRIGGER inbox_watermark BEFORE INSERT ON tongban.inbox\n"
     "  FOR EACH ROW EXECUTE FUNCTION tongban.inbox_watermark_check();\n"
     "CREATE INDEX dead_letters_applied ON tongban.dead_letters (retried_at) WHERE status = 'applied';\n"},
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
     * key. Within those, only the rows while the running sum of body sizes
     * stays within $3 bytes (the first row always): a batch of attachment
     * chunks (~350 KB each) must stay far below the hub's message limit.
     * A body under 2,000 bytes stored uncompressed counts its stored size
     * (jsonb, about its text; no conversion); only larger or compressed
     * ones pay a conversion to text, so ordinary rows cost one window sum.
     * Only the node deletes outbox rows; the caller's transaction
     * commits the deletion together with the signed batch. The rows come
     * back in no particular order: store_outbox.c sorts them by id. */
    [S_OUTBOX_TAKE] = {"tb_outbox_take",
        "WITH d AS (DELETE FROM tongban.outbox"
        "  WHERE ctid = ANY (ARRAY (SELECT w.ctid FROM"
        "    (SELECT o.ctid, row_number() OVER (ORDER BY o.id) AS n,"
        "            sum(coalesce(CASE WHEN pg_column_size(o.body) < 2000 AND pg_column_compression(o.body) IS NULL"
        "                              THEN pg_column_size(o.body) ELSE octet_length(o.body::text) END, 0))"
        "              OVER (ORDER BY o.id) AS run"
        "       FROM (SELECT ctid, id, body FROM tongban.outbox WHERE dest = $1 ORDER BY id LIMIT $2::bigint) o) w"
        "    WHERE w.n = 1 OR w.run <= $3::bigint))"
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
    /* a group of batches in one statement: the pairs that were not there */
    [S_INBOX_INSERT_MANY] = {"tb_inbox_insert_many",
        "INSERT INTO tongban.inbox (sender, seq)"
        " SELECT u.sender, u.seq FROM unnest($1::text[], $2::bigint[]) AS u (sender, seq)"
        " ON CONFLICT DO NOTHING RETURNING sender, seq"},
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
