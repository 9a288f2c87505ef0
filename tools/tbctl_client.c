/* tbctl_client.c -- tbctl's commands on a node's client API (records,
 * licences, cases, supervision, events) and on the identifier validators.
 * Built only on libtongban's public API (tongban/tongban.h) and jansson:
 * what an integrator can do with the library, an operator can do here.
 *
 *   tbctl record|licence|case|supitem|risk|complaint|events ... (-c NODE.yaml | --api ENDPOINT)
 *   tbctl validate KIND VALUE | check-char KIND PREFIX
 *
 * tools/tbctl.c dispatches here (tbctl_client_main) and lists the help
 * (tbctl_client_usage); it resolves -c NODE.yaml to the API endpoint, which
 * needs the config loader, through the callback it passes. The domain
 * groups (licence, case, supitem, risk, complaint) are in
 * tbctl_client_domain.c; what both share is in tbctl_client_internal.h.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <tongban/tongban.h>

#include "tbctl_client_internal.h"


/* Resolves -c NODE.yaml (tbctl.c: uses the config loader). Fills endpoint
 * and, for a tcp:// api.listen, server_key_path (the node's curve.pub;
 * else ""). Returns 0, or -1 with the config errors printed. */
typedef int (*tbctl_api_resolver_t)(const char *cfgpath, char *endpoint, size_t eplen, char *server_key_path,
                                    size_t sklen);

int tbctl_client_main(int argc, char **argv, tbctl_api_resolver_t resolve);
int tbctl_client_handles(const char *group);
void tbctl_client_usage(FILE *out);

void tbctl_client_usage(FILE *out)
{
    fprintf(out,
            "Client API of a node (as libtongban; every command takes -c NODE.yaml or --api ENDPOINT,\n"
            "for tcp:// also --server-key KEY|FILE and --client-key DIR|FILE, and --call-timeout-ms N;\n"
            "--json prints the node's result as one line of JSON):\n"
            "  tbctl record put CATALOG KEY (BODY_JSON | --json-file F) | get CATALOG KEY | delete CATALOG KEY\n"
            "  tbctl licence issue (--json-file F | --field K=V ... | --field K:=JSON ...)\n"
            "  tbctl licence update ID (--json-file F | --field ...) | get ID | find HOLDER_CODE\n"
            "  tbctl licence suspend ID --reason R | resume ID [--reason R] | revoke ID --reason R\n"
            "  tbctl licence verify ID [--ask-issuer] [--timeout-ms N]\n"
            "      verdict=valid|suspended|revoked|expired|not_yet_valid|bad_seal|unknown seal=ok|bad\n"
            "      source=local|issuer issuer=answered|unavailable|timeout|not_asked|self age_s=N\n"
            "      (exit 0 for every verdict the node could give; bad_seal 7, unknown 4 or 6)\n"
            "  tbctl case submit (--json-file F | --field ...) | get CASE | history CASE\n"
            "  tbctl case act CASE withdraw|accept|reject|start|part_done|decide|deliver [--detail D] [--result R]\n"
            "  tbctl case rate CASE SCORE [--comment C] | list [--state S] [--overdue]\n"
            "  tbctl case attach CASE FILE [--name N] | attachment CASE SHA256 [--out FILE]\n"
            "  tbctl supitem put (CODE | --code CODE) --name N --level national|provincial|city|county\n"
            "      --region R [--parent P]\n"
            "  tbctl supitem list [--level L]\n"
            "  tbctl risk publish --level 1..4 --title T --detail D [--region R]\n"
            "  tbctl complaint file --region NODE --kind complaint|report --subject S --detail D\n"
            "  tbctl complaint ack ID [--note N] | get ID\n"
            "  tbctl events next --cursor NAME [--max N] [--wait-ms N] [--ack]\n"
            "      up to N events (default 100) after the cursor's durable position, one per line\n"
            "      (--json: {\"events\":[...],\"last_id\":N}); none within --wait-ms (default 0):\n"
            "      nothing (or no events), exit 0; --ack moves the cursor past the last one shown\n"
            "  tbctl events ack --cursor NAME --id N\n"
            "      move the cursor's durable position to N (never back)\n"
            "  tbctl api-endpoint -c NODE.yaml\n"
            "      print the node's client API endpoint (api.listen or its default)\n"
            "  --field K=V sets a string field, K:=JSON any JSON value (e.g. --field 'handling:=[\"440000\"]');\n"
            "  --json-file F (- = stdin) gives the whole object; --field entries are applied on top\n\n"
            "Identifiers (offline):\n"
            "  tbctl validate citizen-id|uscc|licence-id|region|date VALUE\n"
            "      prints ok, or what is wrong (exit 1)\n"
            "  tbctl validate check-char citizen-id|uscc|licence-id PREFIX\n"
            "      prints the code completed with its check character (PREFIX: the first 17\n"
            "      characters, or for a licence identifier everything before \".<check>\")\n\n");
}

int tbctl_client_handles(const char *group)
{
    static const char *const groups[] = { "record", "licence", "case", "supitem", "risk",
                                          "complaint", "events", "validate", "api-endpoint", NULL };
    for (int i = 0; groups[i]; i++)
        if (strcmp(group, groups[i]) == 0) return 1;
    return 0;
}

static int exit_of(tb_err_t e)
{
    switch (e) {
    case TB_OK: return X_OK;
    case TB_ERR_INVALID: return X_INVALID;
    case TB_ERR_NOTFOUND: return X_NOTFOUND;
    case TB_ERR_REFUSED:
    case TB_ERR_PERM: return X_REFUSED;
    case TB_ERR_DUPLICATE: return X_DUPLICATE;
    case TB_ERR_UNAVAILABLE:
    case TB_ERR_TIMEOUT: return X_UNAVAILABLE;
    case TB_ERR_BADSIG: return X_BADSEAL;
    default: return X_FAILED;
    }
}

/* ---- the command line ---- */


/* The value of "--name VALUE" (first occurrence), or NULL; consumed. */
const char *tbctl_opt(args_t *a, const char *name)
{
    for (int i = 0; i < a->argc; i++) {
        if (!a->used[i] && strcmp(a->argv[i], name) == 0 && i + 1 < a->argc) {
            a->used[i] = a->used[i + 1] = 1;
            return a->argv[i + 1];
        }
    }
    return NULL;
}

/* 1 if the flag is present; consumed. */
int tbctl_flag(args_t *a, const char *name)
{
    int on = 0;
    for (int i = 0; i < a->argc; i++) {
        if (!a->used[i] && strcmp(a->argv[i], name) == 0) {
            a->used[i] = 1;
            on = 1;
        }
    }
    return on;
}

/* Collects the positional arguments (unconsumed, not options) into pos
 * (at most max); returns their count, or -1 (message printed) if an
 * unknown option or too many arguments remain. Call after every opt/flag. */
int tbctl_positionals(args_t *a, const char **pos, int max)
{
    int n = 0;
    for (int i = 0; i < a->argc; i++) {
        if (a->used[i]) continue;
        const char *s = a->argv[i];
        if (s[0] == '-' && s[1] && !(s[1] >= '0' && s[1] <= '9')) {
            fprintf(stderr, "tbctl %s: unknown option \"%s\" (try --help)\n", a->cmd, s);
            return -1;
        }
        if (n == max) {
            fprintf(stderr, "tbctl %s: unexpected argument \"%s\" (try --help)\n", a->cmd, s);
            return -1;
        }
        pos[n++] = s;
        a->used[i] = 1;
    }
    return n;
}

int tbctl_parse_int(const char *cmd, const char *what, const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi) {
        fprintf(stderr, "tbctl %s: %s: expected a number %ld..%ld, got \"%s\"\n", cmd, what, lo, hi, s ? s : "");
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* ---- connection ---- */

/* Opens the client from -c / --api / --server-key / --client-key /
 * --call-timeout-ms. Returns X_OK with *c set, or the exit code (message
 * printed). */
static int connect_node(args_t *a, tbctl_api_resolver_t resolve, tb_client_t **c)
{
    const char *cfg = tbctl_opt(a, "-c");
    if (!cfg) cfg = tbctl_opt(a, "--config");
    const char *api = tbctl_opt(a, "--api");
    const char *skey = tbctl_opt(a, "--server-key");
    const char *ckey = tbctl_opt(a, "--client-key");
    const char *tmo = tbctl_opt(a, "--call-timeout-ms");
    char ep[1100], skpath[PATH_MAX] = "", server[41], secret[41], public[41], path[PATH_MAX + 16], why[512];
    tb_client_opts_t o = { .errbuf = why, .errlen = sizeof why };
    struct stat st;
    tb_err_t e;

    *c = NULL;
    if (tmo && tbctl_parse_int(a->cmd, "--call-timeout-ms", tmo, 1, 600000, &o.timeout_ms)) return X_USAGE;
    if (!api && !cfg) {
        fprintf(stderr, "tbctl %s: give the node's config (-c NODE.yaml) or --api ENDPOINT\n", a->cmd);
        return X_USAGE;
    }
    if (!api) {
        if (resolve(cfg, ep, sizeof ep, skpath, sizeof skpath) != 0) return X_FAILED;
        api = ep;
    }
    if (!skey && skpath[0]) skey = skpath;
    if (strncmp(api, "tcp://", 6) == 0 && (!skey || !ckey)) {
        fprintf(stderr, "tbctl %s: %s is served with CURVE: give --server-key (the node's curve.pub or its key) "
                "and --client-key (a key pair listed in the node's api.clients)\n", a->cmd, api);
        return X_USAGE;
    }
    if (skey) {
        if (strlen(skey) == 40 && stat(skey, &st) != 0) {
            memcpy(server, skey, 41);                              /* the key itself */
        } else if ((e = tb_client_read_key(skey, 0, server, why, sizeof why)) != TB_OK) {
            fprintf(stderr, "tbctl %s: --server-key: %s\n", a->cmd, why);
            return exit_of(e);
        }
        o.server_key = server;
    }
    if (ckey) {
        int dir = stat(ckey, &st) == 0 && S_ISDIR(st.st_mode);
        snprintf(path, sizeof path, dir ? "%s/curve.key" : "%s", ckey);
        if ((e = tb_client_read_key(path, 1, secret, why, sizeof why)) != TB_OK) {
            fprintf(stderr, "tbctl %s: --client-key: %s\n", a->cmd, why);
            return exit_of(e);
        }
        o.client_secret = secret;
        snprintf(path, sizeof path, "%s/curve.pub", ckey);
        if (dir && tb_client_read_key(path, 0, public, why, sizeof why) == TB_OK) o.client_public = public;
    }
    if ((e = tb_client_open(api, &o, c)) != TB_OK) {
        fprintf(stderr, "tbctl %s: %s\n", a->cmd, why);
        return exit_of(e);
    }
    return X_OK;
}

/* Prints the failure of the last call and returns its exit code. */
int tbctl_failed(const args_t *a, tb_client_t *c, tb_err_t e)
{
    const char *msg = tb_client_error(c);
    fprintf(stderr, "tbctl %s: %s (%s)\n", a->cmd, msg && *msg ? msg : tb_strerror(e), tb_strerror(e));
    return exit_of(e);
}

/* --json: the node's result as one line. */
void tbctl_print_result(tb_client_t *c)
{
    const char *r = tb_client_result(c);
    json_t *v = r ? json_loads(r, JSON_DECODE_ANY, NULL) : NULL;
    char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    printf("%s\n", s ? s : r ? r : "{}");
    free(s);
    json_decref(v);
}

/* The node's last result, parsed (NULL if none). */
static json_t *result_of(tb_client_t *c)
{
    const char *r = tb_client_result(c);
    return r ? json_loads(r, 0, NULL) : NULL;
}

const char *tbctl_str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* A JSON value as short text: strings bare, numbers and others compact. */
static void print_value(const json_t *v)
{
    if (json_is_string(v)) {
        fputs(json_string_value(v), stdout);
    } else if (v && !json_is_null(v)) {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (s) fputs(s, stdout);
        free(s);
    } else {
        fputs("-", stdout);
    }
}

/* key=value for each of keys present in o, space separated, one line. */
void tbctl_print_kv(const char *lead, const json_t *o, const char *const *keys)
{
    fputs(lead, stdout);
    for (int i = 0; keys[i]; i++) {
        json_t *v = json_object_get(o, keys[i]);
        if (!v) continue;
        printf(" %s=", keys[i]);
        if (json_is_array(v)) {                 /* handling: a,b */
            for (size_t j = 0; j < json_array_size(v); j++) {
                if (j) fputc(',', stdout);
                print_value(json_array_get(v, j));
            }
        } else {
            print_value(v);
        }
    }
    fputc('\n', stdout);
}

/* ---- the commands ---- */

static int cmd_record(args_t *a, tb_client_t *c, const char *sub, int json)
{
    const char *p[3];
    const char *file = strcmp(sub, "put") == 0 ? tbctl_opt(a, "--json-file") : NULL;
    int n = tbctl_positionals(a, p, 3);
    tb_err_t e;
    char *body = NULL;

    if (n < 0) return X_USAGE;
    if (strcmp(sub, "put") == 0 && ((n == 3 && !file) || (n == 2 && file))) {
        if (file) {
            json_error_t jerr;
            json_t *v = strcmp(file, "-") == 0 ? json_loadf(stdin, JSON_DECODE_ANY, &jerr)
                                               : json_load_file(file, JSON_DECODE_ANY, &jerr);
            if (!v) {
                fprintf(stderr, "tbctl %s: %s: %s\n", a->cmd, file, jerr.text);
                return X_INVALID;
            }
            body = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            json_decref(v);
        }
        e = tb_record_put(c, p[0], p[1], file ? body : p[2]);
        free(body);
        if (e != TB_OK) return tbctl_failed(a, c, e);
        if (json) {
            tbctl_print_result(c);
        } else {
            json_t *r = result_of(c);
            printf("record %s/%s version=%lld\n", p[0], p[1],
                   (long long)json_integer_value(json_object_get(r, "version")));
            json_decref(r);
        }
        return X_OK;
    }
    if (strcmp(sub, "get") == 0 && n == 2) {
        if ((e = tb_record_get(c, p[0], p[1], &body)) != TB_OK) return tbctl_failed(a, c, e);
        json_t *r = result_of(c);
        if (json) {
            tbctl_print_result(c);
        } else {
            static const char *const keys[] = { "version", "origin", "updated_at", NULL };
            char lead[600];
            snprintf(lead, sizeof lead, "record %s/%s", p[0], p[1]);
            tbctl_print_kv(lead, r, keys);
            printf("%s\n", body);
        }
        json_decref(r);
        tb_free(body);
        return X_OK;
    }
    if (strcmp(sub, "delete") == 0 && n == 2) {
        if ((e = tb_record_delete(c, p[0], p[1])) != TB_OK) return tbctl_failed(a, c, e);
        if (json) tbctl_print_result(c);
        else printf("record %s/%s deleted\n", p[0], p[1]);
        return X_OK;
    }
    fprintf(stderr, "tbctl %s: wrong arguments (try --help)\n", a->cmd);
    return X_USAGE;
}

static int cmd_events(args_t *a, tb_client_t *c, const char *sub, int json)
{
    const char *p[1], *cursor = tbctl_opt(a, "--cursor");
    tb_events_t *ev = NULL;
    tb_err_t err;
    int rc = X_OK;

    if (strcmp(sub, "ack") == 0) {
        const char *ids = tbctl_opt(a, "--id");
        char *end;
        long long id = ids ? strtoll(ids, &end, 10) : 0;
        if (tbctl_positionals(a, p, 0) < 0) return X_USAGE;
        if (!cursor || !ids || !*ids || *end || id <= 0) {
            fprintf(stderr, "tbctl %s: --cursor NAME and --id N (N >= 1) are required\n", a->cmd);
            return X_USAGE;
        }
        if ((err = tb_events_open(c, cursor, &ev)) != TB_OK || (err = tb_events_ack_id(ev, id)) != TB_OK)
            rc = tbctl_failed(a, c, err);
        else if (json) tbctl_print_result(c);
        else printf("cursor %s at %lld\n", cursor, id);
        tb_events_close(&ev);
        return rc;
    }
    if (strcmp(sub, "next") != 0) {
        fprintf(stderr, "tbctl events: unknown command \"%s\" (try --help)\n", sub);
        return X_USAGE;
    }
    const char *mx = tbctl_opt(a, "--max"), *wt = tbctl_opt(a, "--wait-ms");
    int ack = tbctl_flag(a, "--ack"), max = 100, wait = 0, got = 0;
    const tb_event_t *e = NULL, *last = NULL;
    json_t *all = json ? json_array() : NULL;
    long long last_id = -1;

    if (tbctl_positionals(a, p, 0) < 0) return X_USAGE;
    if (!cursor) {
        fprintf(stderr, "tbctl %s: --cursor NAME is required\n", a->cmd);
        return X_USAGE;
    }
    if ((mx && tbctl_parse_int(a->cmd, "--max", mx, 1, 1000, &max)) ||
        (wt && tbctl_parse_int(a->cmd, "--wait-ms", wt, 0, 30000, &wait))) {
        json_decref(all);
        return X_USAGE;
    }
    if ((err = tb_events_open(c, cursor, &ev)) != TB_OK) {
        json_decref(all);
        return tbctl_failed(a, c, err);
    }
    while (got < max) {
        err = tb_events_next(ev, got ? 0 : wait, &e);
        if (err == TB_ERR_TIMEOUT && tb_client_result(c)) {    /* the node answered: no more now */
            if (!last) {                                       /* its position, for --json */
                json_t *r = result_of(c);
                json_t *l = json_object_get(r, "last_id");
                if (json_is_integer(l)) last_id = (long long)json_integer_value(l);
                json_decref(r);
            }
            break;
        }
        if (err != TB_OK) {
            rc = tbctl_failed(a, c, err);
            break;
        }
        if (json) json_array_append_new(all, json_loads(tb_event_json(e), 0, NULL));
        else printf("%lld %s %s %s origin=%s\n", tb_event_id(e), tb_event_at(e), tb_event_kind(e), tb_event_key(e),
                    tb_event_origin(e));
        last = e;
        last_id = tb_event_id(e);
        got++;
    }
    if (json && (rc == X_OK || got)) {
        json_t *doc = json_object();
        json_object_set_new(doc, "events", all);
        all = NULL;
        if (last_id >= 0) json_object_set_new(doc, "last_id", json_integer(last_id));
        char *text = json_dumps(doc, JSON_COMPACT);
        printf("%s\n", text ? text : "{}");
        free(text);
        json_decref(doc);
    }
    json_decref(all);
    fflush(stdout);
    if (ack && last) {                        /* still valid: no other event was handed out */
        if ((err = tb_events_ack(ev, last)) != TB_OK) rc = tbctl_failed(a, c, err);
        else if (!json) fprintf(stderr, "cursor %s acknowledged up to %lld\n", cursor, last_id);
    }
    tb_events_close(&ev);
    return rc;
}

/* ---- validate (offline) ---- */

static int cmd_validate(args_t *a)
{
    const char *p[3];
    char why[256];
    int n = tbctl_positionals(a, p, 3);
    tb_err_t e;

    if (n == 3 && strcmp(p[0], "check-char") == 0) {
        const char *kind = p[1], *prefix = p[2];
        char ch = 0;
        if (strcmp(kind, "citizen-id") == 0) ch = tb_citizen_id_check_char(prefix);
        else if (strcmp(kind, "uscc") == 0) ch = tb_uscc_check_char(prefix);
        else if (strcmp(kind, "licence-id") == 0) ch = tb_licence_id_check_char(prefix);
        else {
            fprintf(stderr, "tbctl validate check-char: unknown kind \"%s\" (citizen-id, uscc, licence-id)\n", kind);
            return X_USAGE;
        }
        if (!ch) {
            fprintf(stderr, "tbctl validate check-char %s: \"%s\" is not a well-formed prefix\n", kind, prefix);
            return X_INVALID;
        }
        if (strcmp(kind, "licence-id") == 0) printf("%s.%c\n", prefix, ch);
        else printf("%.17s%c\n", prefix, ch);
        return X_OK;
    }
    if (n != 2) {
        if (n >= 0) fprintf(stderr, "tbctl validate: expected KIND VALUE or check-char KIND PREFIX (try --help)\n");
        return X_USAGE;
    }
    const char *kind = p[0], *v = p[1];
    if (strcmp(kind, "citizen-id") == 0) e = tb_validate_citizen_id(v, why, sizeof why);
    else if (strcmp(kind, "uscc") == 0) e = tb_validate_uscc(v, why, sizeof why);
    else if (strcmp(kind, "licence-id") == 0) e = tb_validate_licence_id(v, why, sizeof why);
    else if (strcmp(kind, "region") == 0) e = tb_validate_region(v, why, sizeof why);
    else if (strcmp(kind, "date") == 0) e = tb_validate_date(v, why, sizeof why);
    else {
        fprintf(stderr, "tbctl validate: unknown kind \"%s\" (citizen-id, uscc, licence-id, region, date)\n", kind);
        return X_USAGE;
    }
    if (e == TB_OK) {
        printf("ok\n");
        return X_OK;
    }
    printf("%s\n", why);
    return X_FAILED;
}

/* tbctl api-endpoint -c NODE.yaml: what -c resolves to, for scripts. */
static int cmd_api_endpoint(args_t *a, tbctl_api_resolver_t resolve)
{
    const char *p[1], *cfg = tbctl_opt(a, "-c");
    char ep[1100], sk[PATH_MAX];
    if (!cfg) cfg = tbctl_opt(a, "--config");
    if (tbctl_positionals(a, p, 0) < 0) return X_USAGE;
    if (!cfg) {
        fprintf(stderr, "tbctl api-endpoint: give the node's config (-c NODE.yaml)\n");
        return X_USAGE;
    }
    if (resolve(cfg, ep, sizeof ep, sk, sizeof sk) != 0) return X_FAILED;
    printf("%s\n", ep);
    return X_OK;
}

/* argv[0] is the group ("licence"), argv[1] the command ("issue"). */
int tbctl_client_main(int argc, char **argv, tbctl_api_resolver_t resolve)
{
    char cmd[64];
    int rc = X_USAGE;
    tb_client_t *c = NULL;
    args_t a = { cmd, 0, NULL, NULL };

    int single = strcmp(argv[0], "validate") == 0 || strcmp(argv[0], "api-endpoint") == 0;
    if (argc < 2 && !single) {
        fprintf(stderr, "tbctl %s: which command? (try --help)\n", argv[0]);
        return X_USAGE;
    }
    if (single) {
        snprintf(cmd, sizeof cmd, "%s", argv[0]);
        a.argc = argc - 1;
        a.argv = argv + 1;
    } else {
        snprintf(cmd, sizeof cmd, "%s %s", argv[0], argv[1]);
        a.argc = argc - 2;
        a.argv = argv + 2;
    }
    if (!(a.used = calloc((size_t)a.argc + 1, sizeof *a.used))) return X_FAILED;
    if (strcmp(argv[0], "validate") == 0) {
        rc = cmd_validate(&a);
        goto done;
    }
    if (strcmp(argv[0], "api-endpoint") == 0) {
        rc = cmd_api_endpoint(&a, resolve);
        goto done;
    }
    int json = tbctl_flag(&a, "--json");
    if ((rc = connect_node(&a, resolve, &c)) != X_OK) goto done;
    const char *group = argv[0], *sub = argv[1];
    if (strcmp(group, "record") == 0) rc = cmd_record(&a, c, sub, json);
    else if (strcmp(group, "licence") == 0) rc = tbctl_cmd_licence(&a, c, sub, json);
    else if (strcmp(group, "case") == 0) rc = tbctl_cmd_case(&a, c, sub, json);
    else if (strcmp(group, "supitem") == 0) rc = tbctl_cmd_supitem(&a, c, sub, json);
    else if (strcmp(group, "risk") == 0) rc = tbctl_cmd_risk(&a, c, sub, json);
    else if (strcmp(group, "complaint") == 0) rc = tbctl_cmd_complaint(&a, c, sub, json);
    else if (strcmp(group, "events") == 0) rc = cmd_events(&a, c, sub, json);
done:
    tb_client_close(&c);
    free(a.used);
    return rc;
}
