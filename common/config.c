/* config.c -- YAML configuration of the hub and the node: one schema table per
 * kind of file and one generic walker that applies it to the libyaml document.
 *
 * A schema is a table of fields {key path, type, offset, size, required,
 * bounds, default, validator}. Dotted key paths ("hub.endpoint") are nested
 * mappings; F_LIST fields hold a YAML sequence, either of mappings (with their
 * own sub-schema) or of scalars (with an item field). The walker only descends
 * where the schema says so, marks every YAML node it visits (so an alias, i.e.
 * a node reached twice, is refused instead of walked again) and collects all
 * problems as "FILE:LINE: KEY.PATH: message" lines sorted by line.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config_valid.h"

#define MAX_FILE_BYTES (1024 * 1024)  /* a config file is a few KiB; refuse a huge one */
#define MAX_ERRORS 100                /* stored error lines; the rest are counted */
#define KEY_SHOW_MAX 64               /* bytes of an unknown key echoed in a message */
#define PATH_BUF 256                  /* dotted key paths of messages */
#define MAX_DEPTH 32                  /* nesting of collections; the schemas need 4 */

/* ---- schema ---- */

typedef enum { F_STRING, F_PATH, F_INT, F_ENUM, F_LIST } ftype_t;

typedef struct field field_t;
typedef struct {
    const field_t *fields;
    size_t count;
} schema_t;

struct field {
    const char *key;              /* dotted path inside the mapping (NULL: a list item) */
    ftype_t type;
    size_t off;                   /* offset of the value; F_LIST: of the array pointer */
    size_t size;                  /* buffer size; F_LIST: size of one item */
    int required;
    long min, max;                /* F_INT bounds; F_LIST: min is the least count */
    const char *def;              /* default of F_STRING / F_ENUM */
    long idef;                    /* default of F_INT */
    int (*check)(const char *);   /* validator of a string value */
    const char *expect;           /* message when check fails */
    const char *const *choices;   /* F_ENUM: NULL-terminated */
    size_t count_off;             /* F_LIST: offset of the size_t count */
    const schema_t *sub;          /* F_LIST of mappings */
    const field_t *item;          /* F_LIST of scalars */
    const char *unique;           /* in list items: values must differ ("node id") */
    int empty_ok;                 /* F_STRING: "" or null is accepted, stored as "" */
    const char *alt;              /* required unless this other key (same schema) is given */
};

#define AT(T, m) .off = offsetof(T, m), .size = sizeof(((T *)0)->m)
#define EXPECT_ID "expected 1 to 64 characters of [A-Za-z0-9_.-]"
#define EXPECT_Z85 "expected a 40-character Z85 key"
#define EXPECT_EP "expected tcp://host:port"
#define EXPECT_HTTP "expected HOST:PORT"
#define EXPECT_API "expected tcp://HOST:PORT or ipc:///ABSOLUTE/PATH (at most 107 bytes)"

/* http.listen of both daemons: optional, "" or absent = no HTTP endpoint. */
#define HTTP_FIELDS(T)                                                                   \
    { .key = "http.listen", .type = F_STRING, AT(T, http_listen),                        \
      .check = tb_config_valid_http_listen, .expect = EXPECT_HTTP, .empty_ok = 1 }

static const char *const log_levels[] = { "debug", "info", "warn", "error", NULL };
static const char *const log_formats[] = { "logfmt", "json", NULL };

#define LOG_FIELDS(T)                                                                    \
    { .key = "log.level", .type = F_ENUM, AT(T, log.level), .def = "info", .choices = log_levels }, \
    { .key = "log.format", .type = F_ENUM, AT(T, log.format), .def = "logfmt", .choices = log_formats }

#define INT_FIELD(k, T, m, lo, hi, d) \
    { .key = k, .type = F_INT, AT(T, m), .min = lo, .max = hi, .idef = d }

static const char *const entry_type_names[] = {
    "record_upsert", "record_delete", "licence_issue", "licence_revoke", "case_submit",
    "case_update", "case_rating", "risk_alert", "complaint", NULL,
};

static const field_t topic_name_item = {
    .type = F_STRING, .size = sizeof(((tb_hub_node_config_t *)0)->subscribe[0]),
    .check = tb_config_valid_id, .expect = "expected a topic name (without \"topic:\")",
};
static const field_t entry_type_item = {
    .type = F_ENUM, .size = sizeof(((tb_hub_node_config_t *)0)->may_send[0]),
    .choices = entry_type_names,
};
static const field_t acl_dest_item = {
    .type = F_STRING, .size = sizeof(((tb_hub_node_config_t *)0)->may_send_to[0]),
    .check = tb_config_valid_acl_dest, .expect = "expected a node id, topic:<name> or \"*\"",
};
static const field_t publisher_item = {
    .type = F_STRING, .size = sizeof(((tb_hub_topic_config_t *)0)->publishers[0]),
    .check = tb_config_valid_id_or_star, .expect = "expected a node id or \"*\"",
};

#define LIST_OF(k, T, m, cnt, itm) \
    { .key = k, .type = F_LIST, .off = offsetof(T, m), .size = sizeof(((T *)0)->m[0]), \
      .count_off = offsetof(T, cnt), .item = &itm }

static const field_t topic_fields[] = {
    { .key = "name", .type = F_STRING, AT(tb_hub_topic_config_t, name), .required = 1,
      .check = tb_config_valid_id, .expect = EXPECT_ID, .unique = "topic name" },
    { .key = "publishers", .type = F_LIST, .off = offsetof(tb_hub_topic_config_t, publishers),
      .size = sizeof(((tb_hub_topic_config_t *)0)->publishers[0]),
      .count_off = offsetof(tb_hub_topic_config_t, publisher_count), .required = 1, .min = 1,
      .item = &publisher_item },
};
static const schema_t topic_schema = { topic_fields, sizeof topic_fields / sizeof *topic_fields };

static const field_t hub_node_fields[] = {
    { .key = "id", .type = F_STRING, AT(tb_hub_node_config_t, id), .required = 1,
      .check = tb_config_valid_id, .expect = EXPECT_ID, .unique = "node id" },
    { .key = "curve_public", .type = F_STRING, AT(tb_hub_node_config_t, curve_public), .required = 1,
      .check = tb_config_valid_z85, .expect = EXPECT_Z85, .unique = "CURVE public key" },
    { .key = "certificate", .type = F_PATH, AT(tb_hub_node_config_t, certificate), .required = 1 },
    LIST_OF("subscribe", tb_hub_node_config_t, subscribe, subscribe_count, topic_name_item),
    LIST_OF("may_send", tb_hub_node_config_t, may_send, may_send_count, entry_type_item),
    LIST_OF("may_send_to", tb_hub_node_config_t, may_send_to, may_send_to_count, acl_dest_item),
};
static const schema_t hub_node_schema = { hub_node_fields, sizeof hub_node_fields / sizeof *hub_node_fields };

/* hub store: the embedded journal, or PostgreSQL (high availability). */
static const char *const hub_stores[] = { "journal", "postgresql", NULL };

static const field_t hub_fields[] = {
    { .key = "hub.id", .type = F_STRING, AT(tb_hub_config_t, id), .def = "hub",
      .check = tb_config_valid_id, .expect = EXPECT_ID },
    { .key = "hub.listen", .type = F_STRING, AT(tb_hub_config_t, listen), .required = 1,
      .check = tb_config_valid_endpoint, .expect = EXPECT_EP },
    { .key = "hub.curve_secret", .type = F_PATH, AT(tb_hub_config_t, curve_secret), .required = 1 },
    { .key = "hub.ca_certificate", .type = F_PATH, AT(tb_hub_config_t, ca_certificate), .required = 1 },
    { .key = "hub.data_dir", .type = F_PATH, AT(tb_hub_config_t, data_dir), .required = 1 },
    INT_FIELD("limits.max_message_bytes", tb_hub_config_t, max_message_bytes, 1024, 1L << 30, 16L << 20),
    INT_FIELD("limits.heartbeat_ms", tb_hub_config_t, heartbeat_ms, 100, 600000, 1000),
    INT_FIELD("limits.heartbeat_timeout_ms", tb_hub_config_t, heartbeat_timeout_ms, 300, 3600000, 5000),
    INT_FIELD("limits.deliver_window", tb_hub_config_t, deliver_window, 1, 1024, 16),
    INT_FIELD("limits.redeliver_ms", tb_hub_config_t, redeliver_ms, 100, 3600000, 5000),
    { .key = "hub.admin", .type = F_PATH, AT(tb_hub_config_t, admin) },
    INT_FIELD("journal.segment_mb", tb_hub_config_t, segment_mb, 1, 4096, 64),
    INT_FIELD("journal.retention_hours", tb_hub_config_t, retention_hours, 0, 876000, 168),
    { .key = "store", .type = F_ENUM, AT(tb_hub_config_t, store), .def = "journal", .choices = hub_stores },
    { .key = "postgresql.conninfo", .type = F_STRING, AT(tb_hub_config_t, pg_conninfo), .empty_ok = 1 },
    INT_FIELD("postgresql.lock_key", tb_hub_config_t, pg_lock_key, 1, 2147483647L, 7478017),
    INT_FIELD("postgresql.timeout_ms", tb_hub_config_t, pg_timeout_ms, 200, 600000, 3000),
    INT_FIELD("postgresql.check_ms", tb_hub_config_t, pg_check_ms, 100, 60000, 500),
    { .key = "hub.advertise", .type = F_STRING, AT(tb_hub_config_t, advertise), .empty_ok = 1 },
    HTTP_FIELDS(tb_hub_config_t),
    { .key = "http.token", .type = F_STRING, AT(tb_hub_config_t, http_token),
      .check = tb_config_valid_http_token, .empty_ok = 1,
      .expect = "expected 16 to 256 characters of [A-Za-z0-9._~-] (e.g. openssl rand -hex 32)" },
    { .key = "http.tls_cert", .type = F_PATH, AT(tb_hub_config_t, http_tls_cert), .empty_ok = 1 },
    { .key = "http.tls_key", .type = F_PATH, AT(tb_hub_config_t, http_tls_key), .empty_ok = 1 },
    LOG_FIELDS(tb_hub_config_t),
    { .key = "topics", .type = F_LIST, .off = offsetof(tb_hub_config_t, topics),
      .size = sizeof(tb_hub_topic_config_t), .count_off = offsetof(tb_hub_config_t, topic_count),
      .sub = &topic_schema },
    { .key = "nodes", .type = F_LIST, .off = offsetof(tb_hub_config_t, nodes),
      .size = sizeof(tb_hub_node_config_t), .count_off = offsetof(tb_hub_config_t, node_count),
      .required = 1, .min = 1, .sub = &hub_node_schema },
};
static const schema_t hub_schema = { hub_fields, sizeof hub_fields / sizeof *hub_fields };

static const field_t route_dest_item = {
    .type = F_STRING, .size = sizeof(((tb_route_config_t *)0)->to[0]),
    .check = tb_config_valid_dest, .expect = "expected a node id or topic:<name>",
};
static const field_t route_fields[] = {
    { .key = "catalog", .type = F_STRING, AT(tb_route_config_t, catalog), .required = 1,
      .check = tb_config_valid_catalog, .expect = "expected a catalog name or \"*\"" },
    { .key = "to", .type = F_LIST, .off = offsetof(tb_route_config_t, to),
      .size = sizeof(((tb_route_config_t *)0)->to[0]), .count_off = offsetof(tb_route_config_t, to_count),
      .required = 1, .min = 1, .item = &route_dest_item },
};
static const schema_t route_schema = { route_fields, sizeof route_fields / sizeof *route_fields };

#define NODE_PATH(k, m) { .key = k, .type = F_PATH, AT(tb_node_config_t, m), .required = 1 }
#define MAX_HUB_ENDPOINTS 16          /* hubs of one active / standby group */
static const field_t hub_endpoint_item = {
    .type = F_STRING, .size = sizeof(((tb_node_config_t *)0)->hub_endpoints[0]),
    .check = tb_config_valid_connect_endpoint, .expect = EXPECT_EP,
};
static const field_t node_fields[] = {
    { .key = "node.id", .type = F_STRING, AT(tb_node_config_t, id), .required = 1,
      .check = tb_config_valid_id, .expect = EXPECT_ID },
    { .key = "node.admin", .type = F_PATH, AT(tb_node_config_t, admin) },
    NODE_PATH("keys.signing_key", signing_key),
    NODE_PATH("keys.certificate", certificate),
    NODE_PATH("keys.ca_certificate", ca_certificate),
    NODE_PATH("keys.curve_secret", curve_secret),
    NODE_PATH("keys.curve_public", curve_public),
    { .key = "hub.endpoint", .type = F_STRING, AT(tb_node_config_t, hub_endpoint), .required = 1,
      .check = tb_config_valid_connect_endpoint, .expect = EXPECT_EP, .alt = "hub.endpoints" },
    { .key = "hub.endpoints", .type = F_LIST, .off = offsetof(tb_node_config_t, hub_endpoints),
      .size = sizeof(((tb_node_config_t *)0)->hub_endpoints[0]),
      .count_off = offsetof(tb_node_config_t, hub_endpoint_count), .min = 1, .item = &hub_endpoint_item },
    { .key = "hub.curve_public", .type = F_STRING, AT(tb_node_config_t, hub_curve_public), .required = 1,
      .check = tb_config_valid_z85, .expect = EXPECT_Z85 },
    INT_FIELD("hub.connect_timeout_ms", tb_node_config_t, hub_connect_timeout_ms, 1000, 86400000, 15000),
    { .key = "postgresql.conninfo", .type = F_STRING, AT(tb_node_config_t, pg_conninfo), .required = 1 },
    INT_FIELD("batch.max_entries", tb_node_config_t, batch_max_entries, 1, 100000, 1000),
    INT_FIELD("batch.max_bytes", tb_node_config_t, batch_max_bytes, 65536, 67108864, 4194304),
    INT_FIELD("batch.max_delay_ms", tb_node_config_t, batch_max_delay_ms, 0, 60000, 20),
    INT_FIELD("batch.window", tb_node_config_t, batch_window, 1, 1024, 8),
    INT_FIELD("batch.poll_ms", tb_node_config_t, poll_ms, 10, 600000, 1000),
    INT_FIELD("batch.resend_ms", tb_node_config_t, resend_ms, 100, 3600000, 5000),
    INT_FIELD("retention.inbox_days", tb_node_config_t, retention_inbox_days, 0, 36500, 30),
    INT_FIELD("retention.tombstone_days", tb_node_config_t, retention_tombstone_days, 0, 36500, 30),
    INT_FIELD("retention.events_days", tb_node_config_t, retention_events_days, 0, 36500, 30),
    INT_FIELD("retention.events_idle_cursor_days", tb_node_config_t, retention_idle_cursor_days, 0, 36500, 0),
    INT_FIELD("retention.dead_letters_applied_days", tb_node_config_t, retention_dead_letters_days, 0, 36500, 30),
    INT_FIELD("retention.interval_s", tb_node_config_t, retention_interval_s, 10, 86400, 300),
    HTTP_FIELDS(tb_node_config_t),
    { .key = "api.listen", .type = F_STRING, AT(tb_node_config_t, api_listen),
      .check = tb_config_valid_api_listen, .expect = EXPECT_API, .empty_ok = 1 },
    { .key = "api.clients", .type = F_PATH, AT(tb_node_config_t, api_clients), .empty_ok = 1 },
    LOG_FIELDS(tb_node_config_t),
    { .key = "routes", .type = F_LIST, .off = offsetof(tb_node_config_t, routes),
      .size = sizeof(tb_route_config_t), .count_off = offsetof(tb_node_config_t, route_count),
      .sub = &route_schema },
};
static const schema_t node_schema = { node_fields, sizeof node_fields / sizeof *node_fields };

/* ---- load context and error collection ---- */

typedef struct {
    size_t line;                  /* 1-based; 0 = none */
    char *text;
} errline_t;

typedef struct {
    const char *file;             /* path as given, prefix of every message */
    char *dir;                    /* directory of the file ("" if none) */
    yaml_document_t *doc;
    unsigned char *visited;       /* per YAML node index: already walked */
    size_t nnodes;
    errline_t *errs;
    size_t nerr, cap, dropped;
    int nomem;
} ctx_t;

static void report(ctx_t *c, size_t line, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Records "FILE:LINE: PATH: message" (LINE and PATH left out when 0 / empty). */
static void report(ctx_t *c, size_t line, const char *path, const char *fmt, ...)
{
    char msg[512], where[64];
    va_list ap;
    if (c->nerr >= MAX_ERRORS) {
        c->dropped++;
        return;
    }
    if (c->nerr == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 16;
        errline_t *n = realloc(c->errs, ncap * sizeof *n);
        if (!n) {
            c->nomem = 1;
            return;
        }
        c->errs = n;
        c->cap = ncap;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    where[0] = '\0';
    if (line) snprintf(where, sizeof where, ":%zu", line);
    int has_path = path && *path;
    int len = snprintf(NULL, 0, "%s%s: %s%s%s", c->file, where, has_path ? path : "",
                       has_path ? ": " : "", msg);
    char *text = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (!text) {
        c->nomem = 1;
        return;
    }
    snprintf(text, (size_t)len + 1, "%s%s: %s%s%s", c->file, where, has_path ? path : "",
             has_path ? ": " : "", msg);
    c->errs[c->nerr].line = line;
    c->errs[c->nerr].text = text;
    c->nerr++;
}

static size_t line_of(const yaml_node_t *n)
{
    return n->start_mark.line + 1;
}

/* Marks node index i as walked; returns 0 if it already was (an alias). */
static int visit(ctx_t *c, int i)
{
    if (i < 1 || (size_t)i > c->nnodes) return 0;
    if (c->visited[i - 1]) return 0;
    c->visited[i - 1] = 1;
    return 1;
}

static int is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
    const char *v = (const char *)n->data.scalar.value;
    return n->data.scalar.length == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

/* "a" + "b" -> "a.b"; "" + "b" -> "b". Returns 0, or -1 if cut to fit. */
static int join(char *out, size_t len, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), dot = la > 0;
    if (la + dot + lb >= len) {
        out[0] = '\0';
        return -1;
    }
    memmove(out, a, la);
    if (dot) out[la] = '.';
    memcpy(out + la + dot, b, lb + 1);
    return 0;
}

/* An unknown key made printable: control bytes as '?', cut at KEY_SHOW_MAX
 * bytes on a UTF-8 character boundary. */
static void show_key(char *out, const unsigned char *k, size_t n)
{
    size_t i, m = n;
    if (m > KEY_SHOW_MAX) {
        m = KEY_SHOW_MAX;
        while (m > 0 && (k[m] & 0xC0) == 0x80) m--;
    }
    for (i = 0; i < m; i++) out[i] = (k[i] < 0x20 || k[i] == 0x7F) ? '?' : (char)k[i];
    strcpy(out + i, m < n ? "..." : "");
}

/* ---- applying the schema ---- */

static void apply_field(ctx_t *c, const field_t *f, char *base, yaml_node_t *v, const char *path);
static void walk_obj(ctx_t *c, const schema_t *s, char *base, yaml_node_t *map, const char *path,
                     size_t line, size_t *lines);

static void apply_defaults(const schema_t *s, char *base)
{
    for (size_t i = 0; i < s->count; i++) {
        const field_t *f = &s->fields[i];
        if (f->type == F_INT)
            memcpy(base + f->off, &f->idef, sizeof(long));
        else if (f->def && f->type != F_LIST)
            snprintf(base + f->off, f->size, "%s", f->def);
    }
}

static void free_obj(const schema_t *s, char *base)
{
    for (size_t i = 0; i < s->count; i++) {
        const field_t *f = &s->fields[i];
        char *arr;
        size_t n;
        if (f->type != F_LIST) continue;
        memcpy(&arr, base + f->off, sizeof arr);
        memcpy(&n, base + f->count_off, sizeof n);
        if (arr && f->sub)
            for (size_t j = 0; j < n; j++) free_obj(f->sub, arr + j * f->size);
        free(arr);
        arr = NULL;
        n = 0;
        memcpy(base + f->off, &arr, sizeof arr);
        memcpy(base + f->count_off, &n, sizeof n);
    }
}

static void apply_enum(ctx_t *c, const field_t *f, char *base, yaml_node_t *v, const char *path)
{
    char list[128] = "";
    for (const char *const *e = f->choices; *e; e++) {
        size_t n = strlen(*e);
        if (v->type == YAML_SCALAR_NODE && v->data.scalar.length == n &&
            memcmp(v->data.scalar.value, *e, n) == 0) {
            snprintf(base + f->off, f->size, "%s", *e);
            return;
        }
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%s", e == f->choices ? "" : ", ", *e);
    }
    report(c, line_of(v), path, "expected one of %s", list);
}

/* F_STRING and F_PATH: no NUL, no control characters (tab and newlines are
 * allowed in plain strings such as a conninfo), not empty, fits, passes the
 * validator; a relative F_PATH is stored resolved against the file's dir. */
static void apply_string(ctx_t *c, const field_t *f, char *base, yaml_node_t *v, const char *path)
{
    size_t line = line_of(v);
    if (f->empty_ok && v->type == YAML_SCALAR_NODE && (is_null(v) || v->data.scalar.length == 0)) {
        base[f->off] = '\0';
        return;
    }
    if (v->type != YAML_SCALAR_NODE || is_null(v)) {
        report(c, line, path, "expected a string");
        return;
    }
    const char *s = (const char *)v->data.scalar.value;
    size_t n = v->data.scalar.length;
    if (memchr(s, '\0', n)) {
        report(c, line, path, "contains a NUL character");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        int ws = ch == '\t' || ch == '\n' || ch == '\r';
        if ((ch < 0x20 || ch == 0x7F) && (f->type == F_PATH || !ws)) {
            report(c, line, path, "contains a control character");
            return;
        }
    }
    if (n == 0) {
        report(c, line, path, "must not be empty");
        return;
    }
    if (f->type == F_PATH && s[0] != '/' && c->dir[0]) {
        size_t dl = strlen(c->dir);
        int slash = c->dir[dl - 1] != '/';
        if (dl + (size_t)slash + n >= f->size) {
            report(c, line, path, "longer than %zu characters once resolved", f->size - 1);
            return;
        }
        snprintf(base + f->off, f->size, "%s%s%s", c->dir, slash ? "/" : "", s);
        return;
    }
    if (n >= f->size) {
        report(c, line, path, "longer than %zu characters", f->size - 1);
        return;
    }
    if (f->check && !f->check(s)) {
        report(c, line, path, "%s", f->expect);
        return;
    }
    memcpy(base + f->off, s, n + 1);
}

static void apply_int(ctx_t *c, const field_t *f, char *base, yaml_node_t *v, const char *path)
{
    size_t line = line_of(v);
    if (v->type != YAML_SCALAR_NODE || v->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || is_null(v)) {
        report(c, line, path, "expected an integer");
        return;
    }
    const char *s = (const char *)v->data.scalar.value;
    char *end;
    if (memchr(s, '\0', v->data.scalar.length) || !(s[0] == '-' || s[0] == '+' || (s[0] >= '0' && s[0] <= '9'))) {
        report(c, line, path, "expected an integer");
        return;
    }
    errno = 0;
    long val = strtol(s, &end, 10);
    if (end == s || *end != '\0') {
        report(c, line, path, "expected an integer");
        return;
    }
    if (errno == ERANGE || val < f->min || val > f->max) {
        report(c, line, path, "must be between %ld and %ld", f->min, f->max);
        return;
    }
    memcpy(base + f->off, &val, sizeof val);
}

typedef struct {
    const char *val;
    size_t idx;
} uval_t;

static int uval_cmp(const void *a, const void *b)
{
    const uval_t *x = a, *y = b;
    int r = strcmp(x->val, y->val);
    return r ? r : (x->idx > y->idx) - (x->idx < y->idx);
}

/* Reports every item whose .unique field repeats an earlier item's value,
 * sorting (value, index) pairs rather than comparing all pairs. lines holds
 * sub->count value lines per item. */
static void check_unique(ctx_t *c, const field_t *f, const char *arr, size_t n, const size_t *lines,
                         const char *path)
{
    const schema_t *sub = f->sub;
    for (size_t k = 0; k < sub->count; k++) {
        const field_t *u = &sub->fields[k];
        uval_t *vals;
        size_t m = 0;
        if (!u->unique) continue;
        if (!(vals = malloc(n * sizeof *vals))) {
            c->nomem = 1;
            return;
        }
        for (size_t i = 0; i < n; i++) {
            const char *val = arr + i * f->size + u->off;
            if (*val) vals[m++] = (uval_t){ val, i };
        }
        qsort(vals, m, sizeof *vals, uval_cmp);
        for (size_t j = 1; j < m; j++) {
            char ipath[PATH_BUF], upath[PATH_BUF];
            if (strcmp(vals[j].val, vals[j - 1].val) != 0) continue;
            snprintf(ipath, sizeof ipath, "%s[%zu]", path, vals[j].idx);
            join(upath, sizeof upath, ipath, u->key);
            report(c, lines[vals[j].idx * sub->count + k], upath, "duplicate %s \"%s\"", u->unique,
                   vals[j].val);
        }
        free(vals);
    }
}

/* A sequence into a calloc'ed array (pointer and count stored together, so
 * free_obj can always release it); mapping items are walked with f->sub,
 * scalar items applied with f->item. */
static void apply_list(ctx_t *c, const field_t *f, char *base, yaml_node_t *v, const char *path)
{
    char ipath[PATH_BUF];
    size_t *lines = NULL;
    if (is_null(v)) return;                 /* empty list; required ones were caught before */
    if (v->type != YAML_SEQUENCE_NODE) {
        report(c, line_of(v), path, "expected a list");
        return;
    }
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if ((long)n < f->min)
        report(c, line_of(v), path, "must have at least %ld %s", f->min, f->min == 1 ? "entry" : "entries");
    if (n == 0) return;
    char *arr = calloc(n, f->size);
    if (f->sub) lines = calloc(n * f->sub->count, sizeof *lines);
    if (!arr || (f->sub && !lines)) {
        c->nomem = 1;
        goto done;
    }
    memcpy(base + f->off, &arr, sizeof arr);
    memcpy(base + f->count_off, &n, sizeof n);
    for (size_t i = 0; i < n; i++) {
        int idx = v->data.sequence.items.start[i];
        yaml_node_t *it = yaml_document_get_node(c->doc, idx);
        char *item = arr + i * f->size;
        snprintf(ipath, sizeof ipath, "%s[%zu]", path, i);
        if (!it || !visit(c, idx)) {
            report(c, line_of(v), ipath, "aliases are not supported");
        } else if (!f->sub) {
            apply_field(c, f->item, item, it, ipath);
        } else if (it->type != YAML_MAPPING_NODE) {
            report(c, line_of(it), ipath, "expected a mapping");
        } else {
            apply_defaults(f->sub, item);
            walk_obj(c, f->sub, item, it, ipath, line_of(it), lines + i * f->sub->count);
        }
    }
    if (f->sub) check_unique(c, f, arr, n, lines, path);
    arr = NULL;                              /* owned by base now */
done:
    free(arr);
    free(lines);
}

static void apply_field(ctx_t *c, const field_t *f, char *base, yaml_node_t *v, const char *path)
{
    switch (f->type) {
    case F_STRING:
    case F_PATH: apply_string(c, f, base, v, path); break;
    case F_ENUM: apply_enum(c, f, base, v, path); break;
    case F_INT: apply_int(c, f, base, v, path); break;
    case F_LIST: apply_list(c, f, base, v, path); break;
    }
}

/* Per walk_obj: which fields were given (bit 0) and which sections were
 * opened (bit 1 + depth, on the first field of the section), plus the line
 * of the innermost given section of each field. */
typedef struct {
    const schema_t *s;
    char *base;
    unsigned char *seen;
    size_t *secline;
    size_t *lines;
} walk_t;

static int field_index(const schema_t *s, const char *name)
{
    for (size_t i = 0; i < s->count; i++)
        if (s->fields[i].key && strcmp(s->fields[i].key, name) == 0) return (int)i;
    return -1;
}

/* Index of the first field inside section name (prefix "name."), or -1. */
static int section_index(const schema_t *s, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < s->count; i++)
        if (s->fields[i].key && strncmp(s->fields[i].key, name, n) == 0 && s->fields[i].key[n] == '.')
            return (int)i;
    return -1;
}

static void mark_section(walk_t *w, const char *name, size_t line, int suppress)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < w->s->count; i++) {
        const char *k = w->s->fields[i].key;
        if (!k || strncmp(k, name, n) != 0 || k[n] != '.') continue;
        w->secline[i] = line;
        if (suppress) w->seen[i] |= 1;
    }
}

static void walk_section(ctx_t *c, walk_t *w, yaml_node_t *map, const char *path, const char *section)
{
    yaml_node_pair_t *p;
    for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, p->value);
        char name[PATH_BUF], epath[PATH_BUF], shown[KEY_SHOW_MAX + 4];
        if (!k || !v) continue;
        if (!visit(c, p->key)) {                /* the alias' own line is unknown */
            int fresh = p->value >= 1 && (size_t)p->value <= c->nnodes && !c->visited[p->value - 1];
            report(c, fresh ? line_of(v) : line_of(map), path, "aliases are not supported");
            continue;
        }
        if (k->type != YAML_SCALAR_NODE) {
            report(c, line_of(k), path, "keys must be strings");
            continue;
        }
        const unsigned char *kv = k->data.scalar.value;
        size_t kl = k->data.scalar.length;
        int idx = -1, sec = -1;
        name[0] = '\0';
        if (kl > 0 && kl < 64 && !memchr(kv, '\0', kl) && !memchr(kv, '.', kl)) {
            join(name, sizeof name, section, (const char *)kv);
            idx = field_index(w->s, name);
            if (idx < 0) sec = section_index(w->s, name);
        }
        if (idx < 0 && sec < 0) {
            show_key(shown, kv, kl);
            char full[PATH_BUF];
            join(full, sizeof full, section, shown);
            join(epath, sizeof epath, path, full);
            report(c, line_of(k), epath, "unknown key");
            continue;
        }
        join(epath, sizeof epath, path, name);
        if (sec >= 0) {
            int depth = 0;
            for (const char *q = name; *q; q++) depth += *q == '.';
            unsigned char bit = (unsigned char)(2u << (depth < 6 ? depth : 6));
            if (w->seen[sec] & bit) {
                report(c, line_of(k), epath, "duplicate key");
                continue;
            }
            w->seen[sec] |= bit;
            if (!visit(c, p->value)) {
                report(c, line_of(k), epath, "aliases are not supported");
                mark_section(w, name, line_of(k), 1);
                continue;
            }
            if (is_null(v)) {
                mark_section(w, name, line_of(k), 0);
            } else if (v->type != YAML_MAPPING_NODE) {
                report(c, line_of(v), epath, "expected a mapping");
                mark_section(w, name, line_of(k), 1);
            } else {
                mark_section(w, name, line_of(k), 0);
                walk_section(c, w, v, path, name);
            }
            continue;
        }
        const field_t *f = &w->s->fields[idx];
        if (w->seen[idx] & 1) {
            report(c, line_of(k), epath, "duplicate key");
            continue;
        }
        w->seen[idx] |= 1;
        if (w->lines) w->lines[idx] = line_of(v);
        if (!visit(c, p->value)) {
            report(c, line_of(k), epath, "aliases are not supported");
            continue;
        }
        if (f->required && is_null(v)) {
            report(c, line_of(k), epath, "required key missing");
            continue;
        }
        apply_field(c, f, w->base, v, epath);
    }
}

/* Applies schema s to mapping map (NULL: absent), filling base. path prefixes
 * messages ("" or "nodes[2]"); line is where a missing key is reported unless
 * its section is present; lines (may be NULL) gets the line of each value. */
static void walk_obj(ctx_t *c, const schema_t *s, char *base, yaml_node_t *map, const char *path,
                     size_t line, size_t *lines)
{
    walk_t w = { s, base, calloc(s->count, 1), calloc(s->count, sizeof(size_t)), lines };
    char epath[PATH_BUF];
    if (!w.seen || !w.secline) {
        c->nomem = 1;
        goto done;
    }
    if (map) walk_section(c, &w, map, path, "");
    for (size_t i = 0; i < s->count; i++) {
        if (!s->fields[i].required || (w.seen[i] & 1)) continue;
        int alt = s->fields[i].alt ? field_index(s, s->fields[i].alt) : -1;
        if (alt >= 0 && (w.seen[alt] & 1)) continue;
        join(epath, sizeof epath, path, s->fields[i].key);
        report(c, w.secline[i] ? w.secline[i] : line, epath, "required key missing");
    }
done:
    free(w.seen);
    free(w.secline);
}

/* ---- rules across keys ---- */

/* The value node of root's "section.key" (NULL: absent); *line gets its
 * line, else the section's, else 1. */
static yaml_node_t *find_key(ctx_t *c, yaml_node_t *root, const char *section, const char *key, size_t *line)
{
    const char *want[2] = { section, key };
    yaml_node_t *map = root;
    *line = 1;
    for (int d = 0; d < 2; d++) {
        yaml_node_t *found = NULL;
        if (!map || map->type != YAML_MAPPING_NODE) return NULL;
        for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
            if (k && k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, want[d]) == 0) {
                found = yaml_document_get_node(c->doc, p->value);
                break;
            }
        }
        if (!found) return NULL;
        *line = line_of(found);
        map = found;
    }
    return map;
}

/* The hub's HTTP endpoint is never open to other machines by accident: a
 * listen address other than loopback needs http.token; TLS needs both the
 * certificate and the key. */
static void check_hub_http(ctx_t *c, const tb_hub_config_t *cfg, yaml_node_t *root)
{
    char host[64];
    size_t line, tline;
    yaml_node_t *tok = find_key(c, root, "http", "token", &tline);
    int bad_token = tok && tok->type == YAML_SCALAR_NODE && tok->data.scalar.length > 0 && !is_null(tok);
    if (cfg->http_listen[0] && !cfg->http_token[0] && !bad_token &&   /* a bad one is reported already */
        tb_config_parse_http_listen(cfg->http_listen, host, sizeof host, NULL) && !tb_config_loopback_host(host)) {
        find_key(c, root, "http", "listen", &line);
        report(c, line, "http.token",
               "required when http.listen (%s) is not a loopback address: without it anyone who reaches "
               "the port reads the federation's status", cfg->http_listen);
    }
    if (!cfg->http_tls_cert[0] != !cfg->http_tls_key[0]) {
        const char *given = cfg->http_tls_cert[0] ? "tls_cert" : "tls_key";
        find_key(c, root, "http", given, &line);
        report(c, line, cfg->http_tls_cert[0] ? "http.tls_key" : "http.tls_cert", "required with http.%s", given);
    }
    if (strcmp(cfg->store, "postgresql") == 0 && !cfg->pg_conninfo[0]) {
        line = 1;
        for (yaml_node_pair_t *p = root && root->type == YAML_MAPPING_NODE ? root->data.mapping.pairs.start : NULL;
             p && p < root->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
            if (k && k->type == YAML_SCALAR_NODE && strcmp((const char *)k->data.scalar.value, "store") == 0)
                line = line_of(k);
        }
        report(c, line, "postgresql.conninfo", "required with store: postgresql (a libpq connection string)");
    }
}

/* A tcp:// client API is served with CURVE to the keys in api.clients:
 * without that file anyone who reaches the port could connect. */
static void check_node_api(ctx_t *c, const tb_node_config_t *cfg, yaml_node_t *root)
{
    size_t line;
    if (strncmp(cfg->api_listen, "tcp://", 6) == 0 && !cfg->api_clients[0]) {
        find_key(c, root, "api", "listen", &line);
        report(c, line, "api.clients",
               "required when api.listen (%s) is tcp://: the file of Z85 public keys of the clients "
               "allowed to connect", cfg->api_listen);
    }
}

/* hub.endpoint (one hub) or hub.endpoints (an active / standby group), not
 * both; afterwards hub_endpoints lists every hub and hub_endpoint is the
 * first, whichever was given. */
static void check_node_hub(ctx_t *c, tb_node_config_t *cfg, yaml_node_t *root)
{
    size_t line, eline;
    yaml_node_t *one = find_key(c, root, "hub", "endpoint", &line);
    yaml_node_t *many = find_key(c, root, "hub", "endpoints", &eline);
    if (one && many) {
        report(c, eline, "hub.endpoints",
               "give either hub.endpoint (one hub) or hub.endpoints (every hub of the group), not both "
               "(hub.endpoint is on line %zu)", line);
        return;
    }
    if (many && is_null(many)) {                /* "[]" is reported by apply_list */
        report(c, eline, "hub.endpoints", "must have at least 1 entry");
        return;
    }
    if (cfg->hub_endpoint_count > MAX_HUB_ENDPOINTS) {
        report(c, eline, "hub.endpoints", "at most %d endpoints", MAX_HUB_ENDPOINTS);
        return;
    }
    for (size_t i = 0; i < cfg->hub_endpoint_count; i++)
        for (size_t k = 0; k < i; k++)
            if (cfg->hub_endpoints[i][0] && strcmp(cfg->hub_endpoints[i], cfg->hub_endpoints[k]) == 0) {
                char path[64];
                snprintf(path, sizeof path, "hub.endpoints[%zu]", i);
                report(c, eline, path, "duplicate endpoint \"%s\"", cfg->hub_endpoints[i]);
            }
    if (cfg->hub_endpoint_count) {
        snprintf(cfg->hub_endpoint, sizeof cfg->hub_endpoint, "%s", cfg->hub_endpoints[0]);
    } else if (cfg->hub_endpoint[0]) {
        cfg->hub_endpoints = calloc(1, sizeof *cfg->hub_endpoints);
        if (!cfg->hub_endpoints) {
            c->nomem = 1;
            return;
        }
        snprintf(cfg->hub_endpoints[0], sizeof cfg->hub_endpoints[0], "%s", cfg->hub_endpoint);
        cfg->hub_endpoint_count = 1;
    }
}

/* ---- loading ---- */

/* Reads the whole file (at most MAX_FILE_BYTES). Returns 0, or an errno. */
static int read_file(const char *path, unsigned char **out, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    unsigned char *buf = NULL;
    size_t n = 0, cap = 0;
    int err = 0;
    if (!fp) return errno ? errno : EIO;
    for (;;) {
        if (n == cap) {
            if (cap > MAX_FILE_BYTES) {
                err = EFBIG;
                goto fail;
            }
            size_t ncap = cap ? cap * 2 : 4096;
            unsigned char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                err = ENOMEM;
                goto fail;
            }
            buf = nb;
            cap = ncap;
        }
        size_t r = fread(buf + n, 1, cap - n, fp);
        n += r;
        if (r == 0) {
            if (ferror(fp)) {
                err = errno ? errno : EIO;
                goto fail;
            }
            break;
        }
    }
    if (n > MAX_FILE_BYTES) {
        err = EFBIG;
        goto fail;
    }
    fclose(fp);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
fail:
    fclose(fp);
    free(buf);
    return err;
}

static void report_yaml(ctx_t *c, const yaml_parser_t *p, const unsigned char *buf, size_t len)
{
    size_t line = p->problem_mark.line + 1;
    if (p->error == YAML_MEMORY_ERROR) {
        c->nomem = 1;
        return;
    }
    if (p->error == YAML_READER_ERROR) {        /* no mark: count lines up to the offset */
        line = 1;
        for (size_t i = 0; i < p->problem_offset && i < len; i++) line += buf[i] == '\n';
    }
    if (p->error == YAML_COMPOSER_ERROR && p->context) {   /* "found duplicate anchor; ..." */
        report(c, line, NULL, "yaml: %s at line %zu, %s here", p->context, p->context_mark.line + 1,
               p->problem ? p->problem : "error");
        return;
    }
    report(c, line, NULL, "yaml: %s%s%s", p->problem ? p->problem : "syntax error",
           p->context ? " " : "", p->context ? p->context : "");
}

/* Streams the events of the file and refuses collections nested deeper than
 * MAX_DEPTH before the document is composed: libyaml's scanner is quadratic
 * in the depth of flow collections ("[[[[..."). Returns 0 if within bounds
 * (or on a syntax error, which the loader reports), -1 if too deep. */
static int check_depth(ctx_t *c, const unsigned char *buf, size_t len)
{
    yaml_parser_t p;
    yaml_event_t ev;
    int depth = 0, rc = 0;
    if (!yaml_parser_initialize(&p)) return 0;
    yaml_parser_set_input_string(&p, buf, len);
    for (;;) {
        if (!yaml_parser_parse(&p, &ev)) break;
        yaml_event_type_t t = ev.type;
        size_t line = ev.start_mark.line + 1;
        yaml_event_delete(&ev);
        if (t == YAML_STREAM_END_EVENT) break;
        if (t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT) {
            if (++depth > MAX_DEPTH) {
                report(c, line, NULL, "collections nested deeper than %d levels", MAX_DEPTH);
                rc = -1;
                break;
            }
        } else if (t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT) {
            depth--;
        }
    }
    yaml_parser_delete(&p);
    return rc;
}

static tb_err_t load(const char *path, const schema_t *s, void *out, size_t size,
                     tb_config_errors_t *errs)
{
    ctx_t c = { .file = path };
    yaml_parser_t parser;
    yaml_document_t doc, doc2;
    int have_parser = 0, have_doc = 0;
    unsigned char *buf = NULL;
    size_t len = 0;
    tb_err_t rc = TB_OK;

    if (errs) {
        errs->lines = NULL;
        errs->count = 0;
    }
    if (!path || !out) return TB_ERR_INVALID;
    memset(out, 0, size);
    apply_defaults(s, out);

    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) + (slash == path) : 0;
    c.dir = malloc(dl + 1);
    if (!c.dir) {
        rc = TB_ERR_NOMEM;
        goto done;
    }
    memcpy(c.dir, path, dl);
    c.dir[dl] = '\0';

    int e = read_file(path, &buf, &len);
    if (e == EFBIG) {
        report(&c, 0, NULL, "larger than %d bytes", MAX_FILE_BYTES);
        goto done;
    } else if (e) {
        report(&c, 0, NULL, "%s", strerror(e));
        rc = e == ENOMEM ? TB_ERR_NOMEM : TB_ERR_IO;
        goto done;
    }

    if (check_depth(&c, buf, len) != 0) goto done;
    if (!yaml_parser_initialize(&parser)) {
        rc = TB_ERR_NOMEM;
        goto done;
    }
    have_parser = 1;
    yaml_parser_set_input_string(&parser, buf, len);
    if (!yaml_parser_load(&parser, &doc)) {
        report_yaml(&c, &parser, buf, len);
        goto done;
    }
    have_doc = 1;
    c.doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root || is_null(root)) {
        report(&c, 1, NULL, "empty configuration: expected a mapping of settings");
        goto done;
    }
    if (root->type != YAML_MAPPING_NODE) {
        report(&c, line_of(root), NULL, "expected a mapping of settings at the top level");
        goto done;
    }
    c.nnodes = (size_t)(doc.nodes.top - doc.nodes.start);
    c.visited = calloc(c.nnodes, 1);
    if (!c.visited) {
        rc = TB_ERR_NOMEM;
        goto done;
    }
    visit(&c, 1);                              /* the root is node 1 */
    walk_obj(&c, s, out, root, "", 1, NULL);
    if (s == &hub_schema) check_hub_http(&c, out, root);
    if (s == &node_schema) {
        check_node_api(&c, out, root);
        check_node_hub(&c, out, root);
    }

    if (!yaml_parser_load(&parser, &doc2)) {
        report_yaml(&c, &parser, buf, len);
    } else {
        yaml_node_t *r2 = yaml_document_get_root_node(&doc2);
        if (r2) report(&c, line_of(r2), NULL, "only one YAML document is allowed");
        yaml_document_delete(&doc2);
    }

done:
    if (c.nomem) rc = TB_ERR_NOMEM;
    if (rc == TB_OK && (c.nerr || c.dropped)) rc = TB_ERR_CONFIG;
    if (c.dropped && c.nerr < c.cap) {
        char *t = NULL;
        int n = snprintf(NULL, 0, "%s: %zu more errors not shown", path, c.dropped);
        if (n > 0 && (t = malloc((size_t)n + 1)) != NULL) {
            snprintf(t, (size_t)n + 1, "%s: %zu more errors not shown", path, c.dropped);
            c.errs[c.nerr].line = SIZE_MAX;
            c.errs[c.nerr].text = t;
            c.nerr++;
        }
    }
    /* Stable insertion sort by line: file order. */
    for (size_t i = 1; i < c.nerr; i++) {
        errline_t x = c.errs[i];
        size_t j = i;
        for (; j > 0 && c.errs[j - 1].line > x.line; j--) c.errs[j] = c.errs[j - 1];
        c.errs[j] = x;
    }
    if (errs && c.nerr) {
        errs->lines = malloc(c.nerr * sizeof *errs->lines);
        if (errs->lines) {
            for (size_t i = 0; i < c.nerr; i++) errs->lines[i] = c.errs[i].text;
            errs->count = c.nerr;
        }
    }
    if (errs && c.nerr && !errs->lines && rc != TB_ERR_IO) rc = TB_ERR_NOMEM;
    if (!errs || !errs->lines)
        for (size_t i = 0; i < c.nerr; i++) free(c.errs[i].text);
    free(c.errs);
    free(c.visited);
    free(c.dir);
    free(buf);
    if (have_doc) yaml_document_delete(&doc);
    if (have_parser) yaml_parser_delete(&parser);
    return rc;
}

void tb_config_errors_free(tb_config_errors_t *errs)
{
    if (!errs) return;
    for (size_t i = 0; i < errs->count; i++) free(errs->lines[i]);
    free(errs->lines);
    errs->lines = NULL;
    errs->count = 0;
}

tb_err_t tb_hub_config_load(const char *path, tb_hub_config_t *out, tb_config_errors_t *errs)
{
    return load(path, &hub_schema, out, sizeof *out, errs);
}

void tb_hub_config_free(tb_hub_config_t *cfg)
{
    if (cfg) free_obj(&hub_schema, (char *)cfg);
}

tb_err_t tb_node_config_load(const char *path, tb_node_config_t *out, tb_config_errors_t *errs)
{
    return load(path, &node_schema, out, sizeof *out, errs);
}

void tb_node_config_free(tb_node_config_t *cfg)
{
    if (cfg) free_obj(&node_schema, (char *)cfg);
}

char *tb_hub_admin_path(const tb_hub_config_t *cfg, char *buf, size_t len)
{
    if (cfg->admin[0]) snprintf(buf, len, "%s", cfg->admin);
    else snprintf(buf, len, "%s/admin.sock", cfg->data_dir);
    return buf;
}

char *tb_node_admin_path(const tb_node_config_t *cfg, char *buf, size_t len)
{
    if (cfg->admin[0]) snprintf(buf, len, "%s", cfg->admin);
    else snprintf(buf, len, "/tmp/tongban-node-%s.sock", cfg->id);
    return buf;
}

char *tb_node_api_endpoint(const tb_node_config_t *cfg, char *buf, size_t len)
{
    char admin[TB_PATH_MAX + 32];
    if (cfg->api_listen[0]) {
        snprintf(buf, len, "%s", cfg->api_listen);
        return buf;
    }
    tb_node_admin_path(cfg, admin, sizeof admin);
    char *slash = strrchr(admin, '/');
    if (!slash) snprintf(buf, len, "ipc://tongban-node-%s.api", cfg->id);
    else if (slash == admin) snprintf(buf, len, "ipc:///tongban-node-%s.api", cfg->id);
    else snprintf(buf, len, "ipc://%.*s/tongban-node-%s.api", (int)(slash - admin), admin, cfg->id);
    return buf;
}
