/* tbctl.c -- the operators' and integrators' command line.
 *
 *   tbctl pki init-ca --dir DIR [--name NAME] [--alg ALG] [--days N]
 *   tbctl pki issue --ca DIR --node ID [--alg ALG] [--days N] --out DIR
 *   tbctl pki curve --out DIR
 *   tbctl hub status [--json] | revoke NODE | reload   (-c hub.yaml | --admin PATH)
 *   tbctl node status [--json] | dead-letters [--json] | retry ID |
 *              refused [--json] | retry-refused ID |
 *              resync --catalog C --from NODE           (-c node.yaml | --admin PATH)
 *   tbctl record|licence|case|supitem|risk|complaint|events|validate|api-endpoint ...
 *              the node's client API and the validators: tools/tbctl_client.c
 *
 * Exit codes: 0 success, 1 the operation failed, 2 usage error (or invalid
 * input), 3 refused (node retry-refused: the delivery is still refused); the
 * client API commands use 3..7 (see tbctl_client.c and --help).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <tongban/tongban.h>

#include <zmq.h>

#include "config.h"
#include "crypto.h"
#include "pki.h"

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_REFUSED = 3 };

/* tools/tbctl_client.c: the client API commands, on libtongban's public API. */
typedef int (*tbctl_api_resolver_t)(const char *cfgpath, char *endpoint, size_t eplen, char *server_key_path,
                                    size_t sklen);
int tbctl_client_main(int argc, char **argv, tbctl_api_resolver_t resolve);
int tbctl_client_handles(const char *group);
void tbctl_client_usage(FILE *out);

static void usage(FILE *out)
{
    fprintf(out,
            "usage: tbctl COMMAND [OPTIONS]\n\n"
            "PKI (national CA and node enrolment):\n"
            "  tbctl pki init-ca --dir DIR [--name NAME] [--alg ed25519|p256|sm2] [--days N]\n"
            "      create the national CA: DIR/ca.key (0600) and DIR/ca.crt\n"
            "  tbctl pki issue --ca DIR --node ID [--alg ed25519|p256|sm2] [--days N] --out DIR\n"
            "      enrol a node: DIR/node.key (0600), DIR/node.crt (CN=ID), DIR/ca.crt,\n"
            "      DIR/curve.key (0600) and DIR/curve.pub (the CURVE transport keys)\n"
            "  tbctl pki curve --out DIR\n"
            "      create only a CURVE key pair (e.g. for the hub): DIR/curve.key, DIR/curve.pub\n\n"
            "Hub operations (through the hub's admin socket, which only its user can open):\n"
            "  tbctl hub status [--json] (-c HUB.yaml | --admin PATH)\n"
            "      nodes online/offline, last seen, cursor, backlog, rates, rejects, journal\n"
            "  tbctl hub revoke NODE (-c HUB.yaml | --admin PATH)\n"
            "      revoke NODE: its connection is closed, its key refused, every node told\n"
            "  tbctl hub reload (-c HUB.yaml | --admin PATH)\n"
            "      re-read the registry (nodes, topics, subscriptions, ACLs), like SIGHUP\n\n"
            "Node operations (through the node's admin socket):\n"
            "  tbctl node status [--json] (-c NODE.yaml | --admin PATH)\n"
            "      hub connection, outbox depth and age, batches in flight, last ack,\n"
            "      inbound activity, dead letters, refused deliveries, certificate expiry\n"
            "  tbctl node dead-letters [--json] (-c NODE.yaml | --admin PATH)\n"
            "      entries that could not be applied, with the reason\n"
            "  tbctl node retry ID (-c NODE.yaml | --admin PATH)\n"
            "      apply dead letter ID again (after fixing its cause)\n"
            "  tbctl node refused [--json] (-c NODE.yaml | --admin PATH)\n"
            "      deliveries this node refused (unknown or revoked signer, bad signature,\n"
            "      misaddressed), parked with the reason so the others flow on\n"
            "  tbctl node retry-refused ID (-c NODE.yaml | --admin PATH)\n"
            "      verify parked delivery ID again and apply it; still refused: exit 3\n"
            "  tbctl node resync --catalog C --from NODE (-c NODE.yaml | --admin PATH)\n"
            "      initial load / resync: NODE sends its catalog C again (\"*\" = all);\n"
            "      shows progress until the rows have arrived\n\n");
    tbctl_client_usage(out);
    fprintf(out,
            "  tbctl --help | --version\n\n"
            "exit codes: 0 success, 1 operation failed (validate: the value is not valid),\n"
            "  2 usage error or invalid input (a field missing or malformed: the message names it);\n"
            "  3 refused (node retry-refused: the delivery is still refused);\n"
            "  client API: 3 refused (not this node, illegal transition, revoked, permission),\n"
            "  4 not found, 5 duplicate, 6 unavailable or timed out (the node, its database),\n"
            "  7 bad seal (licence verify: the copy does not verify)\n");
}

/* Finds "--name VALUE" in argv; returns VALUE or def. Marks consumed args. */
static const char *opt(int argc, char **argv, int *used, const char *name, const char *def)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], name) == 0 && i + 1 < argc) {
            used[i] = used[i + 1] = 1;
            return argv[i + 1];
        }
    }
    return def;
}

static int leftovers(int argc, char **argv, const int *used)
{
    for (int i = 0; i < argc; i++) {
        if (!used[i]) {
            fprintf(stderr, "tbctl: unexpected argument \"%s\" (try --help)\n", argv[i]);
            return 1;
        }
    }
    return 0;
}

static int parse_days(const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 1 || v > 36500) {
        fprintf(stderr, "tbctl: --days: expected a number of days between 1 and 36500, got \"%s\"\n", s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int parse_alg(const char *s, tb_alg_t *out)
{
    *out = tb_alg_parse(s);
    if (*out == TB_ALG_NONE) {
        fprintf(stderr, "tbctl: --alg: expected ed25519, p256 or sm2, got \"%s\"\n", s);
        return -1;
    }
    return 0;
}

static int cmd_pki(int argc, char **argv)
{
    if (argc < 1) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *sub = argv[0];
    argc--;
    argv++;
    int *used = calloc((size_t)argc + 1, sizeof *used);
    if (!used) return EXIT_FAILED;
    int rc = EXIT_USAGE;
    char err[TB_ERRLEN] = "";
    tb_alg_t alg;
    int days;
    if (strcmp(sub, "init-ca") == 0) {
        const char *dir = opt(argc, argv, used, "--dir", NULL);
        const char *name = opt(argc, argv, used, "--name", "tongban national CA");
        const char *a = opt(argc, argv, used, "--alg", "ed25519");
        const char *d = opt(argc, argv, used, "--days", "3650");
        if (leftovers(argc, argv, used) || parse_alg(a, &alg) || parse_days(d, &days)) goto done;
        if (!dir) { fprintf(stderr, "tbctl pki init-ca: --dir DIR is required\n"); goto done; }
        if (tb_pki_init_ca(dir, name, alg, days, err, sizeof err) != TB_OK) {
            fprintf(stderr, "tbctl pki init-ca: %s\n", err);
            rc = EXIT_FAILED;
            goto done;
        }
        printf("CA created: %s/ca.crt (%s, %d days); keep %s/ca.key offline\n", dir, a, days, dir);
        rc = EXIT_OK;
    } else if (strcmp(sub, "issue") == 0) {
        const char *ca = opt(argc, argv, used, "--ca", NULL);
        const char *node = opt(argc, argv, used, "--node", NULL);
        const char *out = opt(argc, argv, used, "--out", NULL);
        const char *a = opt(argc, argv, used, "--alg", "ed25519");
        const char *d = opt(argc, argv, used, "--days", "825");
        if (leftovers(argc, argv, used) || parse_alg(a, &alg) || parse_days(d, &days)) goto done;
        if (!ca || !node || !out) {
            fprintf(stderr, "tbctl pki issue: --ca DIR, --node ID and --out DIR are required\n");
            goto done;
        }
        if (tb_pki_issue(ca, node, alg, days, out, err, sizeof err) != TB_OK) {
            fprintf(stderr, "tbctl pki issue: %s\n", err);
            rc = EXIT_FAILED;
            goto done;
        }
        char pubpath[TB_ERRLEN], pub[41];
        snprintf(pubpath, sizeof pubpath, "%s/curve.pub", out);
        if (tb_pki_read_z85(pubpath, 0, pub, err, sizeof err) != TB_OK) {
            fprintf(stderr, "tbctl pki issue: %s\n", err);
            rc = EXIT_FAILED;
            goto done;
        }
        printf("node %s enrolled in %s (%s); register at the hub with curve_public: \"%s\"\n", node,
               out, a, pub);
        rc = EXIT_OK;
    } else if (strcmp(sub, "curve") == 0) {
        const char *out = opt(argc, argv, used, "--out", NULL);
        if (leftovers(argc, argv, used)) goto done;
        if (!out) { fprintf(stderr, "tbctl pki curve: --out DIR is required\n"); goto done; }
        char sk[TB_ERRLEN], pk[TB_ERRLEN], pub[41];
        mkdir(out, 0700);
        snprintf(sk, sizeof sk, "%s/curve.key", out);
        snprintf(pk, sizeof pk, "%s/curve.pub", out);
        if (tb_pki_curve_keypair(sk, pk, err, sizeof err) != TB_OK ||
            tb_pki_read_z85(pk, 0, pub, err, sizeof err) != TB_OK) {
            fprintf(stderr, "tbctl pki curve: %s\n", err);
            rc = EXIT_FAILED;
            goto done;
        }
        printf("CURVE key pair in %s; public key: \"%s\"\n", out, pub);
        rc = EXIT_OK;
    } else {
        fprintf(stderr, "tbctl pki: unknown command \"%s\" (try --help)\n", sub);
    }
done:
    free(used);
    return rc;
}

/* Sends one request to an admin socket (timeout_ms for the answer). With
 * out == NULL the reply is printed; else it is copied into out. Returns
 * EXIT_OK, EXIT_REFUSED if the reply is "refused: ...", or EXIT_FAILED if
 * unreachable or the reply is an error. */
static int admin_ask(const char *path, const char *request, int timeout_ms, char *out, size_t outlen)
{
    char ep[TB_PATH_MAX + 16];
    snprintf(ep, sizeof ep, "ipc://%s", path);
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_REQ);
    int zero = 0, timeout = timeout_ms;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    int rc = EXIT_FAILED;
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (access(path, F_OK) != 0) {
        fprintf(stderr, "tbctl: admin socket %s: %s (is the hub running? right -c/--admin?)\n", path,
                strerror(errno));
    } else if (zmq_connect(s, ep) != 0 || zmq_send(s, request, strlen(request), 0) < 0 ||
               zmq_msg_recv(&m, s, 0) < 0) {
        fprintf(stderr, "tbctl: no answer from the hub on %s: %s\n", ep, zmq_strerror(errno));
    } else {
        const char *r = zmq_msg_data(&m);
        size_t n = zmq_msg_size(&m);
        if (out) {
            size_t k = n < outlen - 1 ? n : outlen - 1;
            memcpy(out, r, k);
            out[k] = '\0';
        } else {
            fwrite(r, 1, n, stdout);
            if (n == 0 || r[n - 1] != '\n') fputc('\n', stdout);
        }
        rc = n >= 6 && memcmp(r, "error:", 6) == 0     ? EXIT_FAILED
             : n >= 8 && memcmp(r, "refused:", 8) == 0 ? EXIT_REFUSED
                                                       : EXIT_OK;
    }
    zmq_msg_close(&m);
    zmq_close(s);
    zmq_ctx_term(ctx);
    return rc;
}

static int admin_call(const char *path, const char *request)
{
    return admin_ask(path, request, 5000, NULL, 0);
}

/* The admin socket path from a hub (is_hub) or node config file, or the
 * usage error when neither -c nor --admin was given. Returns EXIT_OK,
 * EXIT_USAGE or EXIT_FAILED (config errors printed). */
static int admin_from_config(int is_hub, const char *sub, const char *cfgpath, char *path, size_t len)
{
    const char *kind = is_hub ? "hub" : "node";
    if (!cfgpath) {
        fprintf(stderr, "tbctl %s %s: give the %s's config (-c %s.yaml) or --admin PATH\n", kind, sub, kind,
                is_hub ? "HUB" : "NODE");
        return EXIT_USAGE;
    }
    tb_config_errors_t errs = { 0 };
    tb_err_t e;
    if (is_hub) {
        tb_hub_config_t cfg;
        e = tb_hub_config_load(cfgpath, &cfg, &errs);
        if (e == TB_OK) tb_hub_admin_path(&cfg, path, len);
        tb_hub_config_free(&cfg);
    } else {
        tb_node_config_t cfg;
        e = tb_node_config_load(cfgpath, &cfg, &errs);
        if (e == TB_OK) tb_node_admin_path(&cfg, path, len);
        tb_node_config_free(&cfg);
    }
    for (size_t i = 0; i < errs.count; i++) fprintf(stderr, "%s\n", errs.lines[i]);
    tb_config_errors_free(&errs);
    return e == TB_OK ? EXIT_OK : EXIT_FAILED;
}

/* -c NODE.yaml -> the node's client API endpoint (api.listen or its
 * default) and, for tcp://, the node's CURVE public key file (the server
 * key); a wildcard listen address is reached on loopback. Returns 0 or -1
 * (config errors printed). Passed to tbctl_client_main. */
static int api_from_config(const char *cfgpath, char *ep, size_t eplen, char *server_key, size_t sklen)
{
    tb_config_errors_t errs = { 0 };
    tb_node_config_t cfg;
    tb_err_t e = tb_node_config_load(cfgpath, &cfg, &errs);
    if (e == TB_OK) {
        char listen[TB_PATH_MAX + 64];
        tb_node_api_endpoint(&cfg, listen, sizeof listen);
        server_key[0] = '\0';
        if (strncmp(listen, "tcp://*:", 8) == 0) snprintf(ep, eplen, "tcp://127.0.0.1:%s", listen + 8);
        else if (strncmp(listen, "tcp://0.0.0.0:", 14) == 0) snprintf(ep, eplen, "tcp://127.0.0.1:%s", listen + 14);
        else snprintf(ep, eplen, "%s", listen);
        if (strncmp(listen, "tcp://", 6) == 0) snprintf(server_key, sklen, "%s", cfg.curve_public);
    }
    for (size_t i = 0; i < errs.count; i++) fprintf(stderr, "%s\n", errs.lines[i]);
    tb_config_errors_free(&errs);
    tb_node_config_free(&cfg);
    return e == TB_OK ? 0 : -1;
}

static int cmd_node(int argc, char **argv)
{
    if (argc < 1) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *sub = argv[0];
    argc--;
    argv++;
    int *used = calloc((size_t)argc + 1, sizeof *used);
    if (!used) return EXIT_FAILED;
    int rc = EXIT_USAGE, json = 0;
    const char *cfgpath = opt(argc, argv, used, "-c", NULL);
    if (!cfgpath) cfgpath = opt(argc, argv, used, "--config", NULL);
    const char *admin = opt(argc, argv, used, "--admin", NULL);
    const char *catalog = opt(argc, argv, used, "--catalog", NULL);
    const char *from = opt(argc, argv, used, "--from", NULL);
    const char *arg = NULL;
    char path[TB_PATH_MAX + 32], req[256], ans[512];
    for (int i = 0; i < argc; i++) {
        if (used[i]) continue;
        if (strcmp(argv[i], "--json") == 0) { json = 1; used[i] = 1; }
        else if (!arg && argv[i][0] != '-') { arg = argv[i]; used[i] = 1; }
    }
    if (leftovers(argc, argv, used)) goto done;
    if (!admin) {
        rc = admin_from_config(0, sub, cfgpath, path, sizeof path);
        if (rc != EXIT_OK) goto done;
        rc = EXIT_USAGE;
        admin = path;
    }
    if (strcmp(sub, "status") == 0 && !arg) {
        rc = admin_call(admin, json ? "status" : "status text");
    } else if (strcmp(sub, "dead-letters") == 0 && !arg) {
        rc = admin_call(admin, json ? "dead-letters json" : "dead-letters");
    } else if (strcmp(sub, "refused") == 0 && !arg) {
        rc = admin_call(admin, json ? "refused json" : "refused");
    } else if ((strcmp(sub, "retry") == 0 || strcmp(sub, "retry-refused") == 0) && arg) {
        int dead = strcmp(sub, "retry") == 0;
        char *end;
        errno = 0;
        long long id = strtoll(arg, &end, 10);
        if (*arg == '\0' || *end || errno || id <= 0) {
            fprintf(stderr, "tbctl node %s: expected a %s id, got \"%s\"\n", sub,
                    dead ? "dead letter" : "refused delivery", arg);
            goto done;
        }
        snprintf(req, sizeof req, "%s %lld", sub, id);
        rc = admin_call(admin, req);
    } else if (strcmp(sub, "resync") == 0 && !arg) {
        if (!tb_config_valid_catalog(catalog) || !tb_config_valid_id(from)) {
            fprintf(stderr, "tbctl node resync: --catalog NAME|* and --from NODE are required\n");
            goto done;
        }
        snprintf(req, sizeof req, "resync %s %s", catalog, from);
        rc = admin_ask(admin, req, 40000, ans, sizeof ans);
        printf("%s\n", ans);
        if (rc != EXIT_OK) goto done;
        long long want = strtoll(ans + 4, NULL, 10), have = -1, last = -1;
        int still = 0;
        snprintf(req, sizeof req, "count %s", catalog);
        /* progress until every row the owner queued is here (or no progress for 30 s) */
        while (strcmp(catalog, "*") != 0 && still < 60) {
            if (admin_ask(admin, req, 5000, ans, sizeof ans) != EXIT_OK) break;
            have = strtoll(ans, NULL, 10);
            printf("\r%s: %lld / %lld rows here", catalog, have, want);
            fflush(stdout);
            if (have >= want) break;
            still = have == last ? still + 1 : 0;
            last = have;
            struct timespec ts = { 0, 500000000 };
            nanosleep(&ts, NULL);
        }
        if (have >= 0) printf("\n%s\n", have >= want ? "resync complete" : "resync still in progress (see tbctl node status)");
        rc = EXIT_OK;
    } else {
        fprintf(stderr, "tbctl node: unknown or incomplete command \"%s\" (try --help)\n", sub);
    }
done:
    free(used);
    return rc;
}

static int cmd_hub(int argc, char **argv)
{
    if (argc < 1) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *sub = argv[0];
    argc--;
    argv++;
    int *used = calloc((size_t)argc + 1, sizeof *used);
    if (!used) return EXIT_FAILED;
    int rc = EXIT_USAGE, json = 0;
    const char *cfgpath = opt(argc, argv, used, "-c", NULL);
    if (!cfgpath) cfgpath = opt(argc, argv, used, "--config", NULL);
    const char *admin = opt(argc, argv, used, "--admin", NULL);
    const char *node = NULL;
    char path[TB_PATH_MAX + 32], req[128];
    for (int i = 0; i < argc; i++) {
        if (used[i]) continue;
        if (strcmp(argv[i], "--json") == 0) { json = 1; used[i] = 1; }
        else if (!node && strcmp(sub, "revoke") == 0 && argv[i][0] != '-') { node = argv[i]; used[i] = 1; }
    }
    if (leftovers(argc, argv, used)) goto done;
    if (!admin) {
        rc = admin_from_config(1, sub, cfgpath, path, sizeof path);
        if (rc != EXIT_OK) goto done;
        rc = EXIT_USAGE;
        admin = path;
    }
    if (strcmp(sub, "status") == 0) {
        rc = admin_call(admin, json ? "status" : "status text");
    } else if (strcmp(sub, "revoke") == 0) {
        if (!node || !tb_config_valid_id(node)) {
            fprintf(stderr, "tbctl hub revoke: expected a node id\n");
            goto done;
        }
        snprintf(req, sizeof req, "revoke %s", node);
        rc = admin_call(admin, req);
    } else if (strcmp(sub, "reload") == 0) {
        rc = admin_call(admin, "reload");
    } else {
        fprintf(stderr, "tbctl hub: unknown command \"%s\" (try --help)\n", sub);
    }
done:
    free(used);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
        printf("tbctl %s (libtongban %s)\n", TB_VERSION_STRING, tb_version());
        return EXIT_OK;
    }
    if (strcmp(argv[1], "pki") == 0) return cmd_pki(argc - 2, argv + 2);
    if (strcmp(argv[1], "hub") == 0) return cmd_hub(argc - 2, argv + 2);
    if (strcmp(argv[1], "node") == 0) return cmd_node(argc - 2, argv + 2);
    if (tbctl_client_handles(argv[1])) return tbctl_client_main(argc - 1, argv + 1, api_from_config);
    fprintf(stderr, "tbctl: unknown command \"%s\" (try --help)\n", argv[1]);
    return EXIT_USAGE;
}
