/* test_config.c -- the YAML config loader: the shipped examples load, every
 * broken file under tests/unit/data/config yields exactly its error lines,
 * hostile input (huge, deep, aliased, binary, mutated) never crashes. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "tbtest.h"

#define DATA TB_SOURCE_DIR "/tests/unit/data/config"

typedef enum { HUB, NODE } kind_t;

/* Loads path as kind, frees the struct, returns rc; errs is filled. */
static tb_err_t load_kind(kind_t kind, const char *path, tb_config_errors_t *errs)
{
    tb_err_t rc;
    if (kind == HUB) {
        tb_hub_config_t cfg;
        rc = tb_hub_config_load(path, &cfg, errs);
        tb_hub_config_free(&cfg);
        tb_hub_config_free(&cfg);               /* idempotent */
    } else {
        tb_node_config_t cfg;
        rc = tb_node_config_load(path, &cfg, errs);
        tb_node_config_free(&cfg);
        tb_node_config_free(&cfg);
    }
    return rc;
}

static void dump(const char *what, const tb_config_errors_t *errs)
{
    fprintf(stderr, "  %s:\n", what);
    for (size_t i = 0; i < errs->count; i++) fprintf(stderr, "    %s\n", errs->lines[i]);
}

/* Loads path and compares the errors with want (NULL-terminated), each
 * written without the "PATH:" prefix, e.g. "7: hub.endpoint: expected ...". */
static void expect_at(kind_t kind, const char *path, tb_err_t want_rc, const char *const *want)
{
    tb_config_errors_t errs = { 0 };
    tb_err_t rc = load_kind(kind, path, &errs);
    size_t n = 0;
    int ok = 1;
    while (want[n]) n++;
    CHECK_MSG(rc == want_rc, "%s: rc %d (%s), want %d", path, rc, tb_strerror(rc), want_rc);
    if (errs.count != n) ok = 0;
    for (size_t i = 0; ok && i < n; i++) {
        char line[2048];
        snprintf(line, sizeof line, "%s:%s", path, want[i]);
        if (strcmp(errs.lines[i], line) != 0) ok = 0;
    }
    CHECK_MSG(ok, "%s: unexpected errors", path);
    if (!ok) {
        dump("got", &errs);
        fprintf(stderr, "  want:\n");
        for (size_t i = 0; i < n; i++) fprintf(stderr, "    %s:%s\n", path, want[i]);
    }
    tb_config_errors_free(&errs);
    CHECK(errs.lines == NULL && errs.count == 0);
}

static void expect_file(kind_t kind, const char *name, const char *const *want)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", DATA, name);
    expect_at(kind, path, want[0] ? TB_ERR_CONFIG : TB_OK, want);
}

#define ERRS(...) ((const char *const[]){ __VA_ARGS__, NULL })
#define NO_ERRS ((const char *const[]){ NULL })

static void test_examples(void)
{
    tb_hub_config_t hub;
    tb_node_config_t node;
    tb_config_errors_t errs = { 0 };
    const char *dir = TB_SOURCE_DIR "/config";

    CHECK(tb_hub_config_load(TB_SOURCE_DIR "/config/hub.yaml", &hub, &errs) == TB_OK);
    if (errs.count) dump("hub.yaml", &errs);
    CHECK(errs.count == 0);
    CHECK(strcmp(hub.id, "hub") == 0);
    CHECK(strcmp(hub.listen, "tcp://*:7400") == 0);
    char want[2048];
    snprintf(want, sizeof want, "%s/pki/hub.curve.secret", dir);
    CHECK(strcmp(hub.curve_secret, want) == 0);
    snprintf(want, sizeof want, "%s/data", dir);
    CHECK(strcmp(hub.data_dir, want) == 0);
    CHECK(hub.max_message_bytes == 16777216);
    CHECK(hub.heartbeat_timeout_ms == 5000);
    CHECK(hub.deliver_window == 16);
    CHECK(strcmp(hub.log.level, "info") == 0 && strcmp(hub.log.format, "logfmt") == 0);
    CHECK(hub.node_count == 3);
    if (hub.node_count == 3) {
        CHECK(strcmp(hub.nodes[0].id, "110000") == 0);
        CHECK(strcmp(hub.nodes[1].curve_public, "Ep}hfgOq9Tei^?+y8YXeZCQqQ1>9xEhiaMu:!/>O") == 0);
        snprintf(want, sizeof want, "%s/pki/nodes/440000.pem", dir);
        CHECK(strcmp(hub.nodes[2].certificate, want) == 0);
    }
    tb_hub_config_free(&hub);
    CHECK(hub.nodes == NULL && hub.node_count == 0);
    tb_config_errors_free(&errs);

    CHECK(tb_node_config_load(TB_SOURCE_DIR "/config/node.yaml", &node, &errs) == TB_OK);
    if (errs.count) dump("node.yaml", &errs);
    CHECK(errs.count == 0);
    CHECK(strcmp(node.id, "110000") == 0);
    snprintf(want, sizeof want, "%s/pki/node.key", dir);
    CHECK(strcmp(node.signing_key, want) == 0);
    snprintf(want, sizeof want, "%s/pki/node.curve.public", dir);
    CHECK(strcmp(node.curve_public, want) == 0);
    CHECK(strcmp(node.hub_endpoint, "tcp://hub.example.gov.cn:7400") == 0);
    CHECK(strcmp(node.hub_curve_public, "n#Xq%x<mHRN&Tc(o#E&J7zZMd-4^{vz/@{=!+<I$") == 0);
    CHECK(strncmp(node.pg_conninfo, "host=/var/run/postgresql dbname=tongban", 39) == 0);
    CHECK(node.batch_max_entries == 1000 && node.batch_max_delay_ms == 20);
    CHECK(node.batch_window == 8 && node.poll_ms == 1000 && node.resend_ms == 5000);
    CHECK(node.retention_inbox_days == 30 && node.retention_tombstone_days == 30 && node.retention_events_days == 30);
    CHECK(node.retention_idle_cursor_days == 0 && node.retention_dead_letters_days == 30);
    CHECK(node.retention_interval_s == 300);
    CHECK(node.route_count == 3);
    if (node.route_count == 3) {
        CHECK(strcmp(node.routes[0].catalog, "enterprise_registry") == 0);
        CHECK(node.routes[0].to_count == 2);
        CHECK(node.routes[0].to_count == 2 && strcmp(node.routes[0].to[1], "440000") == 0);
        CHECK(strcmp(node.routes[2].catalog, "*") == 0);
        CHECK(node.routes[2].to_count == 1 && strcmp(node.routes[2].to[0], "topic:audit") == 0);
    }
    tb_node_config_free(&node);
    tb_node_config_free(&node);
    CHECK(node.routes == NULL && node.route_count == 0);
    tb_config_errors_free(&errs);
}

static void test_minimal(void)
{
    tb_hub_config_t hub;
    tb_node_config_t node;
    tb_config_errors_t errs = { 0 };

    CHECK(tb_hub_config_load(DATA "/hub_minimal.yaml", &hub, &errs) == TB_OK);
    if (errs.count) dump("hub_minimal.yaml", &errs);
    CHECK(strcmp(hub.id, "hub") == 0);
    CHECK(strcmp(hub.curve_secret, "/etc/tongban/hub.curve.secret") == 0);   /* absolute: kept */
    CHECK(strcmp(hub.ca_certificate, DATA "/pki/ca.pem") == 0);
    CHECK(strcmp(hub.data_dir, DATA "/../state") == 0);
    CHECK(hub.max_message_bytes == 16L * 1024 * 1024);
    CHECK(hub.heartbeat_ms == 1000 && hub.heartbeat_timeout_ms == 5000);
    CHECK(hub.deliver_window == 16 && hub.redeliver_ms == 5000);
    CHECK(strcmp(hub.log.level, "info") == 0 && strcmp(hub.log.format, "logfmt") == 0);
    CHECK(hub.node_count == 1 && strcmp(hub.nodes[0].id, "n1") == 0);
    CHECK(hub.node_count == 1 && strcmp(hub.nodes[0].certificate, "/srv/pki/n1.pem") == 0);
    tb_hub_config_free(&hub);
    tb_config_errors_free(&errs);

    CHECK(tb_node_config_load(DATA "/node_minimal.yaml", &node, &errs) == TB_OK);
    if (errs.count) dump("node_minimal.yaml", &errs);
    CHECK(strcmp(node.id, "node-1") == 0);
    CHECK(strcmp(node.signing_key, DATA "/pki/node.key") == 0);
    CHECK(strcmp(node.certificate, "/etc/tongban/node.pem") == 0);
    CHECK(strcmp(node.hub_endpoint, "tcp://[2001:db8::1]:7400") == 0);
    CHECK(node.batch_max_entries == 1000 && node.batch_max_delay_ms == 20 && node.batch_window == 8);
    CHECK(node.poll_ms == 1000 && node.resend_ms == 5000);
    /* retention: absent, the defaults */
    CHECK(node.retention_inbox_days == 30 && node.retention_tombstone_days == 30 && node.retention_events_days == 30);
    CHECK(node.retention_idle_cursor_days == 0 && node.retention_dead_letters_days == 30);
    CHECK(node.retention_interval_s == 300);
    CHECK(strcmp(node.log.level, "info") == 0 && strcmp(node.log.format, "logfmt") == 0);
    CHECK(node.route_count == 0 && node.routes == NULL);
    tb_node_config_free(&node);
    tb_config_errors_free(&errs);

    /* errs may be NULL */
    CHECK(tb_node_config_load(DATA "/node_minimal.yaml", &node, NULL) == TB_OK);
    tb_node_config_free(&node);
    CHECK(tb_node_config_load(DATA "/node_many_errors.yaml", &node, NULL) == TB_ERR_CONFIG);
    tb_node_config_free(&node);

    /* free on a zeroed struct */
    memset(&hub, 0, sizeof hub);
    tb_hub_config_free(&hub);
    tb_hub_config_free(NULL);
    memset(&node, 0, sizeof node);
    tb_node_config_free(&node);
    tb_node_config_free(NULL);
    tb_config_errors_free(NULL);
}

static void test_broken_files(void)
{
    expect_file(HUB, "hub_unknown_key.yaml",
                ERRS("3: hub.colour: unknown key", "7: limit: unknown key",
                     "13: nodes[0].role: unknown key"));
    expect_file(NODE, "node_wrong_type.yaml",
                ERRS("2: node.id: expected a string", "4: keys.signing_key: expected a string",
                     "9: hub: expected a mapping", "13: batch.window: expected an integer",
                     "14: batch.poll_ms: expected an integer", "15: batch.max_entries: expected an integer",
                     "16: log.level: expected one of debug, info, warn, error",
                     "16: log.format: expected one of logfmt, json", "17: routes: expected a list"));
    expect_file(HUB, "hub_out_of_range.yaml",
                ERRS("7: limits.max_message_bytes: must be between 1024 and 1073741824",
                     "8: limits.heartbeat_ms: must be between 100 and 600000",
                     "9: limits.heartbeat_timeout_ms: must be between 300 and 3600000",
                     "11: limits.redeliver_ms: expected an integer"));
    expect_file(NODE, "node_missing.yaml",
                ERRS("1: node.id: required key missing", "1: keys.signing_key: required key missing",
                     "1: keys.certificate: required key missing",
                     "1: keys.ca_certificate: required key missing",
                     "1: keys.curve_secret: required key missing",
                     "1: keys.curve_public: required key missing", "2: node.name: unknown key",
                     "3: hub.curve_public: required key missing",
                     "5: postgresql.conninfo: required key missing"));
    expect_file(HUB, "hub_missing_nodes.yaml",
                ERRS("1: nodes: required key missing", "2: hub.listen: required key missing",
                     "2: hub.curve_secret: required key missing",
                     "2: hub.ca_certificate: required key missing",
                     "2: hub.data_dir: required key missing"));
    expect_file(HUB, "hub_duplicate_nodes.yaml",
                ERRS("13: nodes[2].id: duplicate node id \"110000\"",
                     "16: nodes[3].id: required key missing",
                     "16: nodes[3].curve_public: duplicate CURVE public key "
                     "\":9Y}G-b6Kt^-:BVMO=<Z&9Z*a)9!v1<jZIf{+]/C\"",
                     "18: nodes[4]: expected a mapping"));
    expect_file(HUB, "hub_bad_z85.yaml",
                ERRS("8: nodes[0].curve_public: expected a 40-character Z85 key",
                     "11: nodes[1].curve_public: expected a 40-character Z85 key",
                     "14: nodes[2].curve_public: longer than 40 characters",
                     "17: nodes[3].curve_public: expected a 40-character Z85 key"));
    expect_file(HUB, "hub_empty_nodes.yaml",
                ERRS("2: hub.listen: expected tcp://host:port", "6: nodes: must have at least 1 entry"));
    expect_file(NODE, "node_bad_endpoint.yaml", ERRS("10: hub.endpoint: expected tcp://host:port"));
    expect_file(NODE, "node_bad_routes.yaml",
                ERRS("16: routes[0].to[1]: expected a node id or topic:<name>",
                     "16: routes[0].to[2]: expected a node id or topic:<name>",
                     "17: routes[1].catalog: expected a catalog name or \"*\"",
                     "18: routes[1].to: must have at least 1 entry",
                     "19: routes[2].to: required key missing", "21: routes[3].to: expected a list",
                     "23: routes[4].to[1]: expected a string", "23: routes[4].to[2]: expected a string"));
    expect_file(NODE, "node_many_errors.yaml",
                ERRS("2: node.id: expected 1 to 64 characters of [A-Za-z0-9_.-]",
                     "9: keys.certificate: duplicate key", "11: hub.endpoint: expected tcp://host:port",
                     "16: batch.window: must be between 1 and 1024", "17: batch.colour: unknown key",
                     "19: log.level: expected one of debug, info, warn, error", "23: node: duplicate key"));
    expect_file(NODE, "not_mapping.yaml", ERRS("3: expected a mapping of settings at the top level"));
    expect_file(HUB, "not_mapping.yaml", ERRS("3: expected a mapping of settings at the top level"));
    expect_file(NODE, "syntax_error.yaml",
                ERRS("3: yaml: did not find expected key while parsing a block mapping"));
    expect_file(NODE, "empty.yaml", ERRS("1: empty configuration: expected a mapping of settings"));
    expect_file(NODE, "node_aliases.yaml",
                ERRS("13: postgresql.conninfo: aliases are not supported",
                     "15: routes[0].to[0]: aliases are not supported",
                     "15: routes[1]: aliases are not supported"));
    expect_file(NODE, "node_recursive_alias.yaml",
                ERRS("1: routes[0]: aliases are not supported",
                     "1: node.id: required key missing", "1: keys.signing_key: required key missing",
                     "1: keys.certificate: required key missing",
                     "1: keys.ca_certificate: required key missing",
                     "1: keys.curve_secret: required key missing",
                     "1: keys.curve_public: required key missing",
                     "1: hub.endpoint: required key missing", "1: hub.curve_public: required key missing",
                     "1: postgresql.conninfo: required key missing"));
    expect_file(NODE, "node_nulls.yaml",
                ERRS("2: node.id: required key missing", "4: keys.signing_key: required key missing",
                     "13: postgresql.conninfo: must not be empty", "15: batch.window: expected an integer",
                     "17: log.format: expected one of logfmt, json"));
    expect_file(NODE, "node_too_long.yaml",
                ERRS("2: node.id: longer than 64 characters",
                     "11: hub.curve_public: longer than 40 characters"));
}

/* ---- generated files ---- */

static char tmp[512];

static void write_file(const char *name, const void *data, size_t len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    FILE *fp = fopen(path, "wb");
    CHECK(fp != NULL);
    if (!fp) return;
    CHECK(fwrite(data, 1, len, fp) == len);
    fclose(fp);
}

static void expect_tmp(kind_t kind, const char *name, const char *text, tb_err_t want_rc,
                       const char *const *want)
{
    char path[1024];
    if (text) write_file(name, text, strlen(text));
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    expect_at(kind, path, want_rc, want);
}

static const char node_ok[] =
    "node: {id: n1}\n"
    "keys: {signing_key: k, certificate: c, ca_certificate: ca, curve_secret: s, curve_public: p}\n"
    "hub: {endpoint: 'tcp://h:1', curve_public: 'n#Xq%x<mHRN&Tc(o#E&J7zZMd-4^{vz/@{=!+<I$'}\n"
    "postgresql: {conninfo: dbname=x}\n";

static char *concat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 1);
    if (!s) abort();
    memcpy(s, a, la);
    memcpy(s + la, b, lb + 1);
    return s;
}

static void test_generated(void)
{
    char path[1024];
    char *s;

    snprintf(tmp, sizeof tmp, "%s", tbtest_tmpdir("config"));

    /* missing file, a directory */
    expect_tmp(NODE, "nope.yaml", NULL, TB_ERR_IO, ERRS(" No such file or directory"));
    snprintf(path, sizeof path, "%s/sub", tmp);
    CHECK(mkdir(path, 0700) == 0);
    expect_tmp(HUB, "sub", NULL, TB_ERR_IO, ERRS(" Is a directory"));

    /* relative paths against the file's directory; the examples load as-is */
    {
        tb_node_config_t cfg;
        tb_config_errors_t errs = { 0 };
        write_file("n.yaml", node_ok, strlen(node_ok));
        snprintf(path, sizeof path, "%s/n.yaml", tmp);
        CHECK(tb_node_config_load(path, &cfg, &errs) == TB_OK);
        if (errs.count) dump("n.yaml", &errs);
        char want[1100];
        snprintf(want, sizeof want, "%s/ca", tmp);
        CHECK(strcmp(cfg.ca_certificate, want) == 0);
        tb_node_config_free(&cfg);
        tb_config_errors_free(&errs);
    }

    /* a file name without a directory: relative paths stay relative */
    {
        char cwd[1024];
        tb_node_config_t cfg;
        CHECK(getcwd(cwd, sizeof cwd) != NULL);
        CHECK(chdir(tmp) == 0);
        CHECK(tb_node_config_load("n.yaml", &cfg, NULL) == TB_OK);
        CHECK(strcmp(cfg.signing_key, "k") == 0);
        tb_node_config_free(&cfg);
        CHECK(chdir(cwd) == 0);
    }

    /* hub.endpoints: every hub of an active / standby group, or hub.endpoint, not both */
    {
        static const char base[] =
            "node: {id: n1}\n"
            "keys: {signing_key: k, certificate: c, ca_certificate: ca, curve_secret: s, curve_public: p}\n"
            "postgresql: {conninfo: dbname=x}\n";
        tb_node_config_t cfg;
        tb_config_errors_t errs = { 0 };
        s = concat(base, "hub: {endpoints: ['tcp://a:1', 'tcp://b:2'], curve_public: 'n#Xq%x<mHRN&Tc(o#E&J7zZMd-4^{vz/@{=!+<I$'}\n");
        write_file("eps.yaml", s, strlen(s));
        free(s);
        snprintf(path, sizeof path, "%s/eps.yaml", tmp);
        CHECK(tb_node_config_load(path, &cfg, &errs) == TB_OK);
        if (errs.count) dump("eps.yaml", &errs);
        CHECK(cfg.hub_endpoint_count == 2 && strcmp(cfg.hub_endpoints[1], "tcp://b:2") == 0);
        CHECK(strcmp(cfg.hub_endpoint, "tcp://a:1") == 0);      /* the first, for old readers */
        tb_node_config_free(&cfg);
        tb_config_errors_free(&errs);

        write_file("ep1.yaml", node_ok, strlen(node_ok));        /* hub.endpoint alone: a list of one */
        snprintf(path, sizeof path, "%s/ep1.yaml", tmp);
        CHECK(tb_node_config_load(path, &cfg, &errs) == TB_OK);
        CHECK(cfg.hub_endpoint_count == 1 && strcmp(cfg.hub_endpoints[0], "tcp://h:1") == 0);
        tb_node_config_free(&cfg);
        tb_config_errors_free(&errs);

        s = concat(base, "hub: {endpoint: 'tcp://a:1', endpoints: ['tcp://b:2'], curve_public: 'n#Xq%x<mHRN&Tc(o#E&J7zZMd-4^{vz/@{=!+<I$'}\n");
        expect_tmp(NODE, "eps_both.yaml", s, TB_ERR_CONFIG,
                   ERRS("4: hub.endpoints: give either hub.endpoint (one hub) or hub.endpoints (every hub of the group), not both (hub.endpoint is on line 4)"));
        free(s);
        s = concat(base, "hub: {endpoints: ['tcp://a:1', 'tcp://a:1'], curve_public: 'n#Xq%x<mHRN&Tc(o#E&J7zZMd-4^{vz/@{=!+<I$'}\n");
        expect_tmp(NODE, "eps_dup.yaml", s, TB_ERR_CONFIG, ERRS("4: hub.endpoints[1]: duplicate endpoint \"tcp://a:1\""));
        free(s);
    }

    /* multiple documents, flow-style plain topic dest */
    s = concat(node_ok, "routes: [{catalog: c, to: [topic:t, n2]}]\n---\nnode: {id: n2}\n");
    expect_tmp(NODE, "multi.yaml", s, TB_ERR_CONFIG, ERRS("7: only one YAML document is allowed"));
    free(s);

    s = concat(node_ok, "---\n[\n");
    expect_tmp(NODE, "multi_bad.yaml", s, TB_ERR_CONFIG,
               ERRS("7: yaml: did not find expected node content while parsing a flow node"));
    free(s);

    /* aliases of a key and of a section; the section's keys are not then missing */
    expect_tmp(NODE, "alias_key.yaml",
               "node: &n {id: n1}\n"
               "keys: {signing_key: k, certificate: c, ca_certificate: ca, curve_secret: s, curve_public: p}\n"
               "hub: *n\n"
               "&p postgresql: {conninfo: x}\n"
               "*p : {conninfo: y}\n",
               TB_ERR_CONFIG, ERRS("3: hub: aliases are not supported", "5: aliases are not supported"));

    expect_tmp(NODE, "anchor.yaml", "node: &a {id: n1}\nkeys: &a {}\nhub: *b\n", TB_ERR_CONFIG,
               ERRS("2: yaml: found duplicate anchor; first occurrence at line 1, second occurrence here"));
    expect_tmp(NODE, "undefined.yaml", "node: {id: n1}\nhub: *b\n", TB_ERR_CONFIG,
               ERRS("2: yaml: found undefined alias"));

    /* NUL and control characters, tabs in a conninfo are fine */
    s = concat(node_ok, "routes:\n  - {catalog: \"a\\0b\", to: [x]}\n");
    expect_tmp(NODE, "nul.yaml", s, TB_ERR_CONFIG, ERRS("6: routes[0].catalog: contains a NUL character"));
    free(s);
    expect_tmp(NODE, "ctl.yaml",
               "node: {id: n1}\n"
               "keys: {signing_key: \"k\\x01\", certificate: c, ca_certificate: ca, curve_secret: s, "
               "curve_public: p}\n"
               "hub: {endpoint: 'tcp://h:1', curve_public: 'n#Xq%x<mHRN&Tc(o#E&J7zZMd-4^{vz/@{=!+<I$'}\n"
               "postgresql: {conninfo: \"dbname=x\\tuser=y\"}\n",
               TB_ERR_CONFIG, ERRS("2: keys.signing_key: contains a control character"));

    /* invalid UTF-8 */
    s = concat(node_ok, "batch:\n  window: \xff\xfe\n");
    expect_tmp(NODE, "utf8.yaml", s, TB_ERR_CONFIG, ERRS("6: yaml: invalid leading UTF-8 octet"));
    free(s);

    /* tabs used as indentation */
    expect_tmp(NODE, "tab.yaml", "node:\n\tid: n1\n", TB_ERR_CONFIG,
               ERRS("2: yaml: found character that cannot start any token while scanning for the next token"));

    /* non-scalar key, merge key */
    s = concat(node_ok, "? [a]\n: b\n<<: {x: 1}\n");
    expect_tmp(NODE, "keys.yaml", s, TB_ERR_CONFIG,
               ERRS("5: keys must be strings", "7: <<: unknown key"));
    free(s);

    /* huge scalars: a 400 KB unknown key, a 400 KB number, a 2 KB conninfo */
    {
        size_t big = 400 * 1024;
        char *id = malloc(big + 1);
        if (!id) abort();
        memset(id, 'a', big);
        id[big] = '\0';
        char *doc = malloc(big * 2 + 4096);
        if (!doc) abort();
        int n = snprintf(doc, big * 2 + 4096, "%s? %s\n: 1\nbatch: {window: ", node_ok, id);
        memset(doc + n, '9', big);
        strcpy(doc + n + big, "}\n");
        char key[128];
        snprintf(key, sizeof key, "5: %.64s...: unknown key", id);
        expect_tmp(NODE, "huge.yaml", doc, TB_ERR_CONFIG,
                   ERRS(key, "7: batch.window: must be between 1 and 1024"));
        snprintf(doc, big * 2 + 4096, "%s", node_ok);
        char *p = strstr(doc, "dbname=x");
        memset(id, 'c', 2000);
        snprintf(p, 3000, "dbname=%.2000s}\n", id);
        expect_tmp(NODE, "long.yaml", doc, TB_ERR_CONFIG,
                   ERRS("4: postgresql.conninfo: longer than 1023 characters"));
        free(id);
        free(doc);
    }

    /* a resolved path that no longer fits */
    {
        char doc[4096], name[1100];
        memset(name, 'p', 1020);
        name[1020] = '\0';
        snprintf(doc, sizeof doc,
                 "node: {id: n1}\n"
                 "keys: {signing_key: %s, certificate: /%s, ca_certificate: ca, curve_secret: s, "
                 "curve_public: p}\n"
                 "hub: {endpoint: 'tcp://h:1', curve_public: 'n#Xq%%x<mHRN&Tc(o#E&J7zZMd-4^{vz/@{=!+<I$'}\n"
                 "postgresql: {conninfo: dbname=x}\n", name, name);
        expect_tmp(NODE, "resolve.yaml", doc, TB_ERR_CONFIG,
                   ERRS("2: keys.signing_key: longer than 1023 characters once resolved"));
    }

    /* deep nesting: refused before libyaml composes it (its scanner is
     * quadratic in the depth of flow collections) */
    {
        size_t depth = 400000;
        char *doc = malloc(depth * 2 + 64);
        if (!doc) abort();
        char *p = doc + sprintf(doc, "node: {id: n1}\nroutes: ");
        memset(p, '[', depth);
        memset(p + depth, ']', depth);
        strcpy(p + 2 * depth, "\n");
        write_file("deep.yaml", doc, strlen(doc));
        free(doc);
        expect_tmp(NODE, "deep.yaml", NULL, TB_ERR_CONFIG,
                   ERRS("2: collections nested deeper than 32 levels"));
        expect_tmp(NODE, "deep_block.yaml",
                   "routes:\n- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - x\n",
                   TB_ERR_CONFIG, ERRS("2: collections nested deeper than 32 levels"));
        /* 32 levels are fine for the parser; the schema refuses them */
        expect_tmp(NODE, "deep_ok.yaml",
                   "node: {id: n1}\n"
                   "keys: {signing_key: k, certificate: c, ca_certificate: ca, curve_secret: s, curve_public: p}\n"
                   "hub: {endpoint: 'tcp://h:1', curve_public: 'n#Xq%x<mHRN&Tc(o#E&J7zZMd-4^{vz/@{=!+<I$'}\n"
                   "postgresql: {conninfo: dbname=x}\n"
                   "routes: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
                   TB_ERR_CONFIG, ERRS("5: routes[0]: expected a mapping"));
    }

    /* billion laughs: every alias refused, nothing expanded */
    {
        char doc[4096];
        int n = snprintf(doc, sizeof doc, "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for (int i = 1; i < 30; i++) {
            char *prev = doc + n;
            n += snprintf(prev, sizeof doc - (size_t)n, "a%d: &a%d [", i, i);
            for (int j = 0; j < 10; j++)
                n += snprintf(doc + n, sizeof doc - (size_t)n, "%s*a%d", j ? ", " : "", i - 1);
            n += snprintf(doc + n, sizeof doc - (size_t)n, "]\n");
        }
        n += snprintf(doc + n, sizeof doc - (size_t)n, "routes: [{catalog: x, to: *a29}]\n");
        CHECK((size_t)n < sizeof doc);
        tb_config_errors_t errs = { 0 };
        write_file("laughs.yaml", doc, (size_t)n);
        snprintf(path, sizeof path, "%s/laughs.yaml", tmp);
        CHECK(load_kind(NODE, path, &errs) == TB_ERR_CONFIG);
        CHECK(errs.count > 30 && errs.count <= 101);
        tb_config_errors_free(&errs);
    }

    /* too many errors: capped, with a tally */
    {
        size_t cap = 300 * 16 + 1;
        char *doc = malloc(cap);
        if (!doc) abort();
        size_t n = 0;
        for (int i = 0; i < 300; i++) n += (size_t)snprintf(doc + n, cap - n, "k%d: 1\n", i);
        tb_config_errors_t errs = { 0 };
        write_file("many.yaml", doc, n);
        snprintf(path, sizeof path, "%s/many.yaml", tmp);
        CHECK(load_kind(NODE, path, &errs) == TB_ERR_CONFIG);
        CHECK(errs.count == 101);
        if (errs.count == 101) {
            char want[1100];
            snprintf(want, sizeof want, "%s:1: k0: unknown key", path);
            CHECK(strcmp(errs.lines[0], want) == 0);
            snprintf(want, sizeof want, "%s: 209 more errors not shown", path);
            CHECK_MSG(strcmp(errs.lines[100], want) == 0, "%s", errs.lines[100]);
        }
        tb_config_errors_free(&errs);
        free(doc);
    }

    /* a file over 1 MiB */
    {
        size_t big = 1024 * 1024 + 1;
        char *doc = malloc(big);
        if (!doc) abort();
        memset(doc, '#', big);
        write_file("big.yaml", doc, big);
        free(doc);
        expect_tmp(HUB, "big.yaml", NULL, TB_ERR_CONFIG, ERRS(" larger than 1048576 bytes"));
    }
}

/* Random mutations of the examples: any result but a crash, a leak or a
 * malformed error line. */
/* retention.*: values within range load, 0 is "keep forever", every key
 * out of range or of the wrong type is an error naming file, line and key. */
static void test_retention(void)
{
    char path[1024];
    char *s = concat(node_ok,
                     "retention:\n"
                     "  inbox_days: 7\n"
                     "  tombstone_days: 0\n"
                     "  events_days: 36500\n"
                     "  events_idle_cursor_days: 90\n"
                     "  dead_letters_applied_days: 1\n"
                     "  interval_s: 10\n");
    write_file("ret.yaml", s, strlen(s));
    free(s);
    snprintf(path, sizeof path, "%s/ret.yaml", tmp);
    tb_node_config_t cfg;
    tb_config_errors_t errs = { 0 };
    CHECK(tb_node_config_load(path, &cfg, &errs) == TB_OK);
    if (errs.count) dump("ret.yaml", &errs);
    CHECK(cfg.retention_inbox_days == 7 && cfg.retention_tombstone_days == 0);
    CHECK(cfg.retention_events_days == 36500 && cfg.retention_idle_cursor_days == 90);
    CHECK(cfg.retention_dead_letters_days == 1 && cfg.retention_interval_s == 10);
    tb_node_config_free(&cfg);
    tb_config_errors_free(&errs);

    /* the node_ok part is 4 lines: retention: is line 5 */
    s = concat(node_ok,
               "retention:\n"
               "  inbox_days: -1\n"
               "  tombstone_days: 36501\n"
               "  events_days: 1e3\n"
               "  events_idle_cursor_days: \"7\"\n"
               "  dead_letters_applied_days: 99999999999999999999\n"
               "  interval_s: 9\n"
               "  keep: forever\n");
    expect_tmp(NODE, "ret_bad.yaml", s, TB_ERR_CONFIG,
               ERRS("6: retention.inbox_days: must be between 0 and 36500",
                    "7: retention.tombstone_days: must be between 0 and 36500",
                    "8: retention.events_days: expected an integer",
                    "9: retention.events_idle_cursor_days: expected an integer",
                    "10: retention.dead_letters_applied_days: must be between 0 and 36500",
                    "11: retention.interval_s: must be between 10 and 86400",
                    "12: retention.keep: unknown key"));
    free(s);
    s = concat(node_ok, "retention:\n  interval_s: 86401\n");
    expect_tmp(NODE, "ret_iv.yaml", s, TB_ERR_CONFIG, ERRS("6: retention.interval_s: must be between 10 and 86400"));
    free(s);
    s = concat(node_ok, "retention: 30\n");
    expect_tmp(NODE, "ret_scalar.yaml", s, TB_ERR_CONFIG, ERRS("5: retention: expected a mapping"));
    free(s);
}

static void test_mutations(void)
{
    static const char *const names[] = { "hub.yaml", "node.yaml" };
    static const char specials[] = "&*!|>'\"%@`#:-[]{},?~\t\n \\\xff\x80\x00";
    uint32_t seed = 12345;
    const char *env = getenv("TB_CONFIG_MUTATIONS");
    long iterations = env ? strtol(env, NULL, 10) : 400;
    char path[1024];
    snprintf(path, sizeof path, "%s/mut.yaml", tmp);

    for (int k = 0; k < 2; k++) {
        char src[1024];
        snprintf(src, sizeof src, "%s/config/%s", TB_SOURCE_DIR, names[k]);
        FILE *fp = fopen(src, "rb");
        CHECK(fp != NULL);
        if (!fp) continue;
        static char orig[16384];
        size_t olen = fread(orig, 1, sizeof orig, fp);
        fclose(fp);
        for (long it = 0; it < iterations; it++) {
            static char buf[32768];
            size_t len = olen;
            memcpy(buf, orig, olen);
            int edits = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 8;
            for (int e = 0; e < edits && len > 2; e++) {
                seed = seed * 1103515245u + 12345u;
                size_t pos = (seed >> 8) % len;
                seed = seed * 1103515245u + 12345u;
                char ch = specials[(seed >> 8) % (sizeof specials - 1)];
                switch ((seed >> 20) % 4) {
                case 0: buf[pos] = ch; break;
                case 1: memmove(buf + pos, buf + pos + 1, len - pos - 1); len--; break;
                case 2:
                    if (len < sizeof buf - 1) {
                        memmove(buf + pos + 1, buf + pos, len - pos);
                        buf[pos] = ch;
                        len++;
                    }
                    break;
                default: {              /* duplicate a chunk */
                    size_t n = (seed >> 4) % 64;
                    if (pos + n <= len && len + n < sizeof buf) {
                        memmove(buf + pos + n, buf + pos, len - pos);
                        len += n;
                    }
                }
                }
            }
            FILE *out = fopen(path, "wb");
            if (!out) continue;
            fwrite(buf, 1, len, out);
            fclose(out);
            for (int kind = 0; kind < 2; kind++) {
                tb_config_errors_t errs = { 0 };
                tb_err_t rc = load_kind((kind_t)kind, path, &errs);
                CHECK(rc == TB_OK || rc == TB_ERR_CONFIG);
                CHECK((rc == TB_OK) == (errs.count == 0));
                for (size_t i = 0; i < errs.count; i++)
                    CHECK(strncmp(errs.lines[i], path, strlen(path)) == 0 && !strchr(errs.lines[i], '\n'));
                tb_config_errors_free(&errs);
            }
        }
    }
}

static void test_validators(void)
{
    char id64[65], id65[66];
    memset(id64, 'a', 64);
    id64[64] = '\0';
    memset(id65, 'a', 65);
    id65[65] = '\0';

    CHECK(tb_config_valid_id("110000"));
    CHECK(tb_config_valid_id("node-1.test_A"));
    CHECK(tb_config_valid_id(id64));
    CHECK(!tb_config_valid_id(id65));
    CHECK(!tb_config_valid_id(""));
    CHECK(!tb_config_valid_id(NULL));
    CHECK(!tb_config_valid_id("a b"));
    CHECK(!tb_config_valid_id("a/b"));
    CHECK(!tb_config_valid_id("topic:x"));
    CHECK(!tb_config_valid_id("\xe5\x8c\x97\xe4\xba\xac"));

    CHECK(tb_config_valid_dest("310000"));
    CHECK(tb_config_valid_dest("topic:population"));
    CHECK(!tb_config_valid_dest("topic:"));
    CHECK(!tb_config_valid_dest("topic:a:b"));
    CHECK(!tb_config_valid_dest("Topic :x"));
    CHECK(!tb_config_valid_dest(""));
    CHECK(!tb_config_valid_dest(NULL));

    CHECK(tb_config_valid_endpoint("tcp://hub.example.gov.cn:7400"));
    CHECK(tb_config_valid_endpoint("tcp://*:7400"));
    CHECK(tb_config_valid_endpoint("tcp://127.0.0.1:1"));
    CHECK(tb_config_valid_endpoint("tcp://localhost:65535"));
    CHECK(tb_config_valid_endpoint("tcp://[::1]:7400"));
    CHECK(tb_config_valid_endpoint("tcp://[2001:db8::1]:7400"));
    CHECK(tb_config_valid_endpoint("tcp://a-b.c:80"));
    CHECK(!tb_config_valid_endpoint(NULL));
    CHECK(!tb_config_valid_endpoint(""));
    CHECK(!tb_config_valid_endpoint("tcp://host"));
    CHECK(!tb_config_valid_endpoint("tcp://host:"));
    CHECK(!tb_config_valid_endpoint("tcp://:7400"));
    CHECK(!tb_config_valid_endpoint("tcp://host:0"));
    CHECK(!tb_config_valid_endpoint("tcp://host:65536"));
    CHECK(!tb_config_valid_endpoint("tcp://host:-1"));
    CHECK(!tb_config_valid_endpoint("tcp://host:+80"));
    CHECK(!tb_config_valid_endpoint("tcp://host:80x"));
    CHECK(!tb_config_valid_endpoint("tcp://host:123456"));
    CHECK(!tb_config_valid_endpoint("udp://host:80"));
    CHECK(!tb_config_valid_endpoint("ipc:///tmp/x"));
    CHECK(!tb_config_valid_endpoint("tcp://ho st:80"));
    CHECK(!tb_config_valid_endpoint("tcp://-host:80"));
    CHECK(!tb_config_valid_endpoint("tcp://host-.x:80"));
    CHECK(!tb_config_valid_endpoint("tcp://a..b:80"));
    CHECK(!tb_config_valid_endpoint("tcp://a.:80"));
    CHECK(!tb_config_valid_endpoint("tcp://999.1.1.1:80"));
    CHECK(!tb_config_valid_endpoint("tcp://1.2.3:80"));
    CHECK(!tb_config_valid_endpoint("tcp://::1:80"));
    CHECK(!tb_config_valid_endpoint("tcp://[::1]80"));
    CHECK(!tb_config_valid_endpoint("tcp://[::1:80"));
    CHECK(!tb_config_valid_endpoint("tcp://[]:80"));
    CHECK(!tb_config_valid_endpoint("tcp://[zz::1]:80"));
    CHECK(!tb_config_valid_endpoint("tcp://**:80"));
    CHECK(!tb_config_valid_endpoint(" tcp://host:80"));
}

int main(void)
{
    test_validators();
    test_examples();
    test_minimal();
    test_broken_files();
    test_generated();
    test_retention();
    test_mutations();
    tbtest_rmtree(tmp);
    return tbtest_done("test_config");
}
