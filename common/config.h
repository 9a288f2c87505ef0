/* config.h -- YAML configuration of the hub and the node, loaded with libyaml
 * into typed structs and validated against a table-driven schema.
 *
 * Every problem is reported as one line "FILE:LINE: KEY.PATH: what is wrong"
 * (e.g. "node.yaml:7: hub.endpoint: expected tcp://host:port"). Unknown keys,
 * missing required keys, wrong types and out-of-range numbers are errors.
 * The loader collects *all* problems (so --check-config can print every one);
 * the return value says whether there was at least one.
 */
#ifndef TB_CONFIG_H
#define TB_CONFIG_H

#include <stddef.h>
#include <tongban/tongban.h>

#define TB_ID_MAX 64           /* node ids, topic names */
#define TB_DEST_MAX (TB_ID_MAX + 6)   /* a node id or "topic:" + a topic name */
#define TB_PATH_MAX 1024

/* The value validators (tb_config_valid_id, tb_config_valid_dest,
 * tb_config_valid_endpoint, tb_config_parse_http_listen,
 * tb_config_loopback_host, ...) live in config_valid.h. */
#include "config_valid.h"

/* A list of problems found while loading (each a complete line, no '\n'). */
typedef struct {
    char **lines;
    size_t count;
} tb_config_errors_t;
void tb_config_errors_free(tb_config_errors_t *errs);

/* ---- shared sections ---- */
typedef struct {
    char level[16];            /* debug|info|warn|error      default info   */
    char format[16];           /* logfmt|json                default logfmt */
} tb_log_config_t;

/* ---- tongban-hub ---- */
typedef struct {
    char id[TB_ID_MAX + 1];               /* node id == certificate CN       (required) */
    char curve_public[41];                /* Z85 CURVE public key, 40 chars  (required) */
    char certificate[TB_PATH_MAX];        /* path to the node's X.509 PEM    (required) */
    char (*subscribe)[TB_ID_MAX + 1];     /* topics this node receives (names without "topic:") */
    size_t subscribe_count;
    char (*may_send)[32];                 /* entry types it may send (record_upsert, ...); none listed = all */
    size_t may_send_count;
    char (*may_send_to)[TB_DEST_MAX + 1]; /* node ids / topic:<name> / "*"; none listed = any node */
    size_t may_send_to_count;
} tb_hub_node_config_t;

typedef struct {
    char name[TB_ID_MAX + 1];             /* topic name, without "topic:" (required)        */
    char (*publishers)[TB_ID_MAX + 1];    /* node ids allowed to publish, or "*" (>= 1)      */
    size_t publisher_count;
} tb_hub_topic_config_t;

typedef struct {
    char id[TB_ID_MAX + 1];               /* hub.id              default "hub"                 */
    char listen[256];                     /* hub.listen          tcp://host:port (required)   */
    char curve_secret[TB_PATH_MAX];       /* hub.curve_secret    path, Z85 file (required)    */
    char ca_certificate[TB_PATH_MAX];     /* hub.ca_certificate  path (required)              */
    char data_dir[TB_PATH_MAX];           /* hub.data_dir        path (required)              */
    long max_message_bytes;               /* limits.max_message_bytes 1024..1<<30, default 16 MiB */
    long heartbeat_ms;                    /* limits.heartbeat_ms 100..600000, default 1000    */
    long heartbeat_timeout_ms;            /* limits.heartbeat_timeout_ms 300..3600000, default 5000 */
    long deliver_window;                  /* limits.deliver_window 1..1024, default 16         */
    long redeliver_ms;                    /* limits.redeliver_ms 100..3600000, default 5000    */
    char admin[TB_PATH_MAX];              /* hub.admin  admin socket path, default <data_dir>/admin.sock */
    char http_listen[64];                 /* http.listen  /metrics and /healthz: HOST:PORT or PORT
                                             (127.0.0.1), "" = disabled (default)             */
    char http_token[257];                 /* http.token  access token of every HTTP path but
                                             /healthz; "" = none (default); required when
                                             http.listen is not a loopback address            */
    char http_tls_cert[TB_PATH_MAX];      /* http.tls_cert  PEM certificate (chain): HTTPS; with
                                             http.tls_key; "" = plain HTTP (default)          */
    char http_tls_key[TB_PATH_MAX];       /* http.tls_key   PEM private key of http.tls_cert  */
    long segment_mb;                      /* journal.segment_mb 1..4096, default 64            */
    long retention_hours;                 /* journal.retention_hours 0..876000, default 168    */
    char store[16];                       /* store  journal (default) | postgresql             */
    char pg_conninfo[1024];               /* postgresql.conninfo  libpq string (required with
                                             store: postgresql; may list several hosts)        */
    long pg_lock_key;                     /* postgresql.lock_key  advisory lock key, default 7478017 */
    long pg_timeout_ms;                   /* postgresql.timeout_ms 200..600000, default 3000: bound
                                             of every PostgreSQL round trip                    */
    long pg_check_ms;                     /* postgresql.check_ms 100..60000, default 500: lock
                                             session check / standby lock attempt period       */
    char advertise[256];                  /* hub.advertise  endpoint shown to operators, default
                                             hub.listen                                        */
    tb_log_config_t log;
    tb_hub_topic_config_t *topics;        /* topics: list (may be empty); names unique         */
    size_t topic_count;
    tb_hub_node_config_t *nodes;          /* nodes: list (required, >= 1 entry); ids unique */
    size_t node_count;
} tb_hub_config_t;

/* ---- tongban-node ---- */
typedef struct {
    char catalog[TB_ID_MAX + 1];          /* catalog name or "*" (required)                  */
    char (*to)[TB_DEST_MAX + 1];          /* destinations: node ids or "topic:<name>" (>= 1) */
    size_t to_count;
} tb_route_config_t;

typedef struct {
    char id[TB_ID_MAX + 1];               /* node.id   [A-Za-z0-9_.-]{1,64} (required)       */
    char admin[TB_PATH_MAX];              /* node.admin  admin socket path (ipc, 0600);
                                             default /tmp/tongban-node-<id>.sock              */
    char signing_key[TB_PATH_MAX];        /* keys.signing_key   path (required)              */
    char certificate[TB_PATH_MAX];        /* keys.certificate   path (required)              */
    char ca_certificate[TB_PATH_MAX];     /* keys.ca_certificate path (required)             */
    char curve_secret[TB_PATH_MAX];       /* keys.curve_secret  path (required)              */
    char curve_public[TB_PATH_MAX];       /* keys.curve_public  path (required)              */
    char hub_endpoint[256];               /* hub.endpoint  tcp://host:port; after loading
                                             always hub_endpoints[0]                          */
    char (*hub_endpoints)[256];           /* hub.endpoints  every hub of an active / standby
                                             group, tried in turn; exactly one of hub.endpoint
                                             and hub.endpoints is given. After loading it holds
                                             hub.endpoint alone when that was given (>= 1)    */
    size_t hub_endpoint_count;
    char hub_curve_public[41];            /* hub.curve_public  Z85, 40 chars (required)      */
    long hub_connect_timeout_ms;          /* hub.connect_timeout_ms 1000..86400000, default 15000:
                                             exit if the hub never answered in this time      */
    char pg_conninfo[1024];               /* postgresql.conninfo libpq string (required)     */
    long batch_max_entries;               /* batch.max_entries 1..100000, default 1000       */
    long batch_max_bytes;                 /* batch.max_bytes 64 KiB..64 MiB, default 4 MiB   */
    long batch_max_delay_ms;              /* batch.max_delay_ms 0..60000, default 20         */
    long batch_window;                    /* batch.window 1..1024, default 8                 */
    long poll_ms;                         /* batch.poll_ms 10..600000, default 1000          */
    long resend_ms;                       /* batch.resend_ms 100..3600000, default 5000      */
    /* retention.*: the housekeeping of the tables that grow with traffic
     * (node/housekeep.h); the *_days are 0..36500, 0 = keep forever */
    long retention_inbox_days;            /* retention.inbox_days, default 30                */
    long retention_tombstone_days;        /* retention.tombstone_days, default 30            */
    long retention_events_days;           /* retention.events_days, default 30               */
    long retention_idle_cursor_days;      /* retention.events_idle_cursor_days, default 0:
                                             a cursor idle this long stops holding events  */
    long retention_dead_letters_days;     /* retention.dead_letters_applied_days, default 30 */
    long retention_interval_s;            /* retention.interval_s 10..86400, default 300     */
    char http_listen[64];                 /* http.listen  as for the hub; "" = disabled      */
    char api_listen[TB_PATH_MAX + 8];     /* api.listen  client API endpoint: ipc:///PATH or
                                             tcp://HOST:PORT; "" = the default (see
                                             tb_node_api_endpoint)                            */
    char api_clients[TB_PATH_MAX];        /* api.clients  file of Z85 CURVE public keys allowed
                                             to use a tcp:// api.listen (required then)       */
    tb_log_config_t log;
    tb_route_config_t *routes;            /* routes: list (may be empty)                     */
    size_t route_count;
} tb_node_config_t;

/* Load and validate. On TB_ERR_CONFIG (or TB_ERR_IO for an unreadable file)
 * errs holds every problem; the struct is then partially filled and must
 * still be released with the matching _free. Relative paths in the file are
 * resolved against the directory of the file. */
tb_err_t tb_hub_config_load(const char *path, tb_hub_config_t *out, tb_config_errors_t *errs);
void tb_hub_config_free(tb_hub_config_t *cfg);

tb_err_t tb_node_config_load(const char *path, tb_node_config_t *out, tb_config_errors_t *errs);
void tb_node_config_free(tb_node_config_t *cfg);

/* The admin socket path (node.admin / hub.admin, or its default:
 * <data_dir>/admin.sock for the hub, /tmp/tongban-node-<id>.sock for a
 * node) written into buf. The one place that rule lives: the daemons bind
 * it, tbctl connects to it. Returns buf. */
char *tb_hub_admin_path(const tb_hub_config_t *cfg, char *buf, size_t len);
char *tb_node_admin_path(const tb_node_config_t *cfg, char *buf, size_t len);

/* The node's client API endpoint: api.listen, or its default
 * ipc://<directory of the admin socket path>/tongban-node-<id>.api, written
 * into buf. The node binds it; libtongban / tbctl connect to it. Returns buf. */
char *tb_node_api_endpoint(const tb_node_config_t *cfg, char *buf, size_t len);

#endif
