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
 * needs the config loader, through the callback it passes.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <tongban/tongban.h>

/* Exit codes (documented in --help and docs/integrator-guide.md): the
 * class of the call's tb_err_t, so scripts can tell them apart. */
enum {
    X_OK = 0,
    X_FAILED = 1,        /* any other failure (database, protocol, i/o, ...);
                            validate: the value is not valid                        */
    X_USAGE = 2,         /* bad command line, or TB_ERR_INVALID: a field is missing
                            or malformed (the message names it)                     */
    X_REFUSED = 3,       /* TB_ERR_REFUSED / TB_ERR_PERM: not this node, an illegal
                            transition, a revoked licence, permission              */
    X_NOTFOUND = 4,      /* TB_ERR_NOTFOUND                                         */
    X_DUPLICATE = 5,     /* TB_ERR_DUPLICATE                                        */
    X_UNAVAILABLE = 6,   /* TB_ERR_UNAVAILABLE / TB_ERR_TIMEOUT: the node, its
                            PostgreSQL, or a check that cannot be made now         */
    X_BADSEAL = 7        /* TB_ERR_BADSIG: licence verify, the copy's seal fails    */
};
#define X_INVALID X_USAGE

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

typedef struct {
    const char *cmd;           /* "licence issue", for messages */
    int argc;
    char **argv;
    int *used;
} args_t;

/* The value of "--name VALUE" (first occurrence), or NULL; consumed. */
static const char *opt(args_t *a, const char *name)
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
static int flag(args_t *a, const char *name)
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
static int positionals(args_t *a, const char **pos, int max)
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

static int parse_int(const char *cmd, const char *what, const char *s, long lo, long hi, int *out)
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

/* The object of --json-file F and the --field entries on top of it, as
 * JSON text (malloc'ed), or NULL (message printed; *rc the exit code). */
static char *fields_object(args_t *a, int *rc)
{
    json_error_t jerr;
    json_t *o = NULL;
    char *text = NULL;
    const char *file = opt(a, "--json-file");

    *rc = X_USAGE;
    if (file) {
        o = strcmp(file, "-") == 0 ? json_loadf(stdin, JSON_REJECT_DUPLICATES, &jerr)
                                   : json_load_file(file, JSON_REJECT_DUPLICATES, &jerr);
        if (!o || !json_is_object(o)) {
            fprintf(stderr, "tbctl %s: %s: %s\n", a->cmd, file, o ? "expected a JSON object" : jerr.text);
            *rc = X_INVALID;
            goto fail;
        }
    } else if (!(o = json_object())) {
        *rc = X_FAILED;
        goto fail;
    }
    int nfields = 0;
    for (int i = 0; i < a->argc; i++) {
        if (a->used[i] || strcmp(a->argv[i], "--field") != 0) continue;
        if (i + 1 >= a->argc) {
            fprintf(stderr, "tbctl %s: --field needs K=V or K:=JSON\n", a->cmd);
            goto fail;
        }
        a->used[i] = a->used[i + 1] = 1;
        const char *kv = a->argv[i + 1], *eq = strchr(kv, '=');
        if (!eq || eq == kv || (eq == kv + 1 && kv[0] == ':')) {
            fprintf(stderr, "tbctl %s: --field \"%s\": expected K=V or K:=JSON\n", a->cmd, kv);
            goto fail;
        }
        int raw = eq[-1] == ':';
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)(eq - kv - raw), kv);
        json_t *v = raw ? json_loads(eq + 1, JSON_DECODE_ANY, &jerr) : json_string(eq + 1);
        if (!v) {
            fprintf(stderr, "tbctl %s: --field %s: %s\n", a->cmd, key, raw ? jerr.text : "not UTF-8 text");
            *rc = X_INVALID;
            goto fail;
        }
        json_object_set_new(o, key, v);
        nfields++;
    }
    if (!file && nfields == 0) {
        fprintf(stderr, "tbctl %s: give the fields: --json-file F or --field K=V ...\n", a->cmd);
        goto fail;
    }
    if (!(text = json_dumps(o, JSON_COMPACT))) *rc = X_FAILED;
fail:
    json_decref(o);
    return text;
}

/* ---- connection ---- */

/* Opens the client from -c / --api / --server-key / --client-key /
 * --call-timeout-ms. Returns X_OK with *c set, or the exit code (message
 * printed). */
static int connect_node(args_t *a, tbctl_api_resolver_t resolve, tb_client_t **c)
{
    const char *cfg = opt(a, "-c");
    if (!cfg) cfg = opt(a, "--config");
    const char *api = opt(a, "--api");
    const char *skey = opt(a, "--server-key");
    const char *ckey = opt(a, "--client-key");
    const char *tmo = opt(a, "--call-timeout-ms");
    char ep[1100], skpath[PATH_MAX] = "", server[41], secret[41], public[41], path[PATH_MAX + 16], why[512];
    tb_client_opts_t o = { .errbuf = why, .errlen = sizeof why };
    struct stat st;
    tb_err_t e;

    *c = NULL;
    if (tmo && parse_int(a->cmd, "--call-timeout-ms", tmo, 1, 600000, &o.timeout_ms)) return X_USAGE;
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
static int failed(const args_t *a, tb_client_t *c, tb_err_t e)
{
    const char *msg = tb_client_error(c);
    fprintf(stderr, "tbctl %s: %s (%s)\n", a->cmd, msg && *msg ? msg : tb_strerror(e), tb_strerror(e));
    return exit_of(e);
}

/* --json: the node's result as one line. */
static void print_result(tb_client_t *c)
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

static const char *str(const json_t *o, const char *key)
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
static void print_kv(const char *lead, const json_t *o, const char *const *keys)
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

static void print_licence(const json_t *l)
{
    static const char *const keys[] = { "status", "revision", "type_name", "holder_name", "holder_code",
                                        "valid_from", "valid_to", "issuer_node", NULL };
    char lead[512];
    snprintf(lead, sizeof lead, "licence %s", str(l, "identifier"));
    print_kv(lead, l, keys);
}

static void print_case(const json_t *cs)
{
    static const char *const keys[] = { "state", "mode", "service_item", "accepting", "handling",
                                        "deadline", "overdue", "rating", NULL };
    char lead[256];
    snprintf(lead, sizeof lead, "case %s", str(cs, "case_id"));
    print_kv(lead, cs, keys);
}

/* ---- the commands ---- */

static int cmd_record(args_t *a, tb_client_t *c, const char *sub, int json)
{
    const char *p[3];
    const char *file = strcmp(sub, "put") == 0 ? opt(a, "--json-file") : NULL;
    int n = positionals(a, p, 3);
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
        if (e != TB_OK) return failed(a, c, e);
        if (json) {
            print_result(c);
        } else {
            json_t *r = result_of(c);
            printf("record %s/%s version=%lld\n", p[0], p[1],
                   (long long)json_integer_value(json_object_get(r, "version")));
            json_decref(r);
        }
        return X_OK;
    }
    if (strcmp(sub, "get") == 0 && n == 2) {
        if ((e = tb_record_get(c, p[0], p[1], &body)) != TB_OK) return failed(a, c, e);
        json_t *r = result_of(c);
        if (json) {
            print_result(c);
        } else {
            static const char *const keys[] = { "version", "origin", "updated_at", NULL };
            char lead[600];
            snprintf(lead, sizeof lead, "record %s/%s", p[0], p[1]);
            print_kv(lead, r, keys);
            printf("%s\n", body);
        }
        json_decref(r);
        tb_free(body);
        return X_OK;
    }
    if (strcmp(sub, "delete") == 0 && n == 2) {
        if ((e = tb_record_delete(c, p[0], p[1])) != TB_OK) return failed(a, c, e);
        if (json) print_result(c);
        else printf("record %s/%s deleted\n", p[0], p[1]);
        return X_OK;
    }
    fprintf(stderr, "tbctl %s: wrong arguments (try --help)\n", a->cmd);
    return X_USAGE;
}

static int show_licence(args_t *a, tb_client_t *c, tb_err_t e, tb_licence_t *l, int json)
{
    if (e != TB_OK) return failed(a, c, e);
    if (json) {
        printf("%s\n", tb_licence_json(l));
    } else {
        json_t *v = json_loads(tb_licence_json(l), 0, NULL);
        print_licence(v);
        json_decref(v);
    }
    tb_licence_free(&l);
    return X_OK;
}

static int cmd_verify(args_t *a, tb_client_t *c, int json)
{
    int ask = flag(a, "--ask-issuer"), timeout = 0, n;
    const char *t = opt(a, "--timeout-ms");
    const char *p[1];
    tb_verify_result_t v;

    if (t && parse_int(a->cmd, "--timeout-ms", t, 1, 60000, &timeout)) return X_USAGE;
    if ((n = positionals(a, p, 1)) != 1) {
        if (n >= 0) fprintf(stderr, "tbctl %s: the licence identifier is required\n", a->cmd);
        return X_USAGE;
    }
    tb_err_t e = tb_licence_verify(c, p[0], ask ? TB_VERIFY_ASK_ISSUER : 0, timeout, &v);
    if (e != TB_OK && !tb_client_result(c)) return failed(a, c, e);
    if (json) {
        print_result(c);
    } else {
        printf("verdict=%s seal=%s source=%s issuer=%s", tb_verdict_name(v.verdict), v.seal_ok ? "ok" : "bad",
               v.source[0] ? v.source : "-", v.issuer[0] ? v.issuer : "-");
        if (v.local_age_s >= 0) printf(" age_s=%lld", v.local_age_s);
        if (v.issuer_node[0]) printf(" issuer_node=%s", v.issuer_node);
        if (v.revision) printf(" revision=%d", v.revision);
        if (v.detail[0]) printf(" detail=\"%s\"", v.detail);
        printf("\n");
    }
    /* every verdict that is an answer (valid, suspended, revoked, expired,
       not_yet_valid) exits 0; bad_seal 7, unknown 4 or 6 */
    return e == TB_OK ? X_OK : failed(a, c, e);
}

static int cmd_licence(args_t *a, tb_client_t *c, const char *sub, int json)
{
    const char *p[1];
    tb_licence_t *l = NULL;
    int n, rc;
    char *text;
    tb_err_t e;

    if (strcmp(sub, "issue") == 0 || strcmp(sub, "update") == 0) {
        int update = sub[0] == 'u';
        if (!(text = fields_object(a, &rc))) return rc;
        n = positionals(a, p, update);
        if (n != update) {
            if (n >= 0) fprintf(stderr, "tbctl %s: %s\n", a->cmd, update ? "the licence identifier is required" : "no positional argument expected");
            free(text);
            return X_USAGE;
        }
        e = update ? tb_licence_update(c, p[0], text, &l) : tb_licence_issue(c, text, &l);
        free(text);
        return show_licence(a, c, e, l, json);
    }
    const char *reason = opt(a, "--reason");
    if (strcmp(sub, "verify") == 0) {
        if (reason) {
            fprintf(stderr, "tbctl %s: --reason does not apply\n", a->cmd);
            return X_USAGE;
        }
        return cmd_verify(a, c, json);
    }
    if ((n = positionals(a, p, 1)) != 1) {
        if (n >= 0) fprintf(stderr, "tbctl %s: the licence identifier (or holder code) is required\n", a->cmd);
        return X_USAGE;
    }
    if (strcmp(sub, "suspend") == 0 || strcmp(sub, "revoke") == 0) {
        if (!reason) {
            fprintf(stderr, "tbctl %s: --reason R is required\n", a->cmd);
            return X_USAGE;
        }
        e = sub[0] == 's' ? tb_licence_suspend(c, p[0], reason, &l) : tb_licence_revoke(c, p[0], reason, &l);
        return show_licence(a, c, e, l, json);
    }
    if (strcmp(sub, "resume") == 0) {
        e = tb_licence_resume(c, p[0], reason, &l);
        return show_licence(a, c, e, l, json);
    }
    if (reason) {
        fprintf(stderr, "tbctl %s: --reason does not apply\n", a->cmd);
        return X_USAGE;
    }
    if (strcmp(sub, "get") == 0) {
        e = tb_licence_get(c, p[0], &l);
        return show_licence(a, c, e, l, json);
    }
    if (strcmp(sub, "find") == 0) {
        if ((e = tb_licence_find(c, p[0], &text)) != TB_OK) return failed(a, c, e);
        if (json) {
            print_result(c);
        } else {
            json_t *r = json_loads(text, 0, NULL), *arr = json_object_get(r, "licences");
            for (size_t i = 0; i < json_array_size(arr); i++) print_licence(json_array_get(arr, i));
            if (json_array_size(arr) == 0) printf("no licence of holder %s\n", p[0]);
            json_decref(r);
        }
        tb_free(text);
        return X_OK;
    }
    fprintf(stderr, "tbctl licence: unknown command \"%s\" (try --help)\n", sub);
    return X_USAGE;
}

static int show_case(args_t *a, tb_client_t *c, tb_err_t e, tb_case_t *cs, int json)
{
    if (e != TB_OK) return failed(a, c, e);
    if (json) {
        printf("%s\n", tb_case_json(cs));
    } else {
        json_t *v = json_loads(tb_case_json(cs), 0, NULL);
        print_case(v);
        json_decref(v);
    }
    tb_case_free(&cs);
    return X_OK;
}

static int cmd_case(args_t *a, tb_client_t *c, const char *sub, int json)
{
    const char *p[2];
    tb_case_t *cs = NULL;
    char *text = NULL;
    int n, rc;
    tb_err_t e;

    if (strcmp(sub, "submit") == 0) {
        if (!(text = fields_object(a, &rc))) return rc;
        if (positionals(a, p, 0) < 0) {
            free(text);
            return X_USAGE;
        }
        e = tb_case_submit(c, text, &cs);
        free(text);
        return show_case(a, c, e, cs, json);
    }
    if (strcmp(sub, "act") == 0) {
        const char *detail = opt(a, "--detail"), *result = opt(a, "--result");
        tb_case_action_t act;
        if ((n = positionals(a, p, 2)) != 2) {
            if (n >= 0) fprintf(stderr, "tbctl %s: CASE and ACTION are required\n", a->cmd);
            return X_USAGE;
        }
        if (tb_case_action_parse(p[1], &act) != TB_OK) {
            fprintf(stderr, "tbctl %s: unknown action \"%s\" (withdraw, accept, reject, start, part_done, decide, deliver)\n",
                    a->cmd, p[1]);
            return X_USAGE;
        }
        e = tb_case_act(c, p[0], act, detail, result, &cs);
        return show_case(a, c, e, cs, json);
    }
    if (strcmp(sub, "rate") == 0) {
        const char *comment = opt(a, "--comment");
        int score;
        if ((n = positionals(a, p, 2)) != 2) {
            if (n >= 0) fprintf(stderr, "tbctl %s: CASE and SCORE are required\n", a->cmd);
            return X_USAGE;
        }
        if (parse_int(a->cmd, "SCORE", p[1], 1, 5, &score)) return X_USAGE;
        e = tb_case_rate(c, p[0], score, comment, &cs);
        return show_case(a, c, e, cs, json);
    }
    if (strcmp(sub, "list") == 0) {
        const char *state = opt(a, "--state");
        int overdue = flag(a, "--overdue");
        if (positionals(a, p, 0) < 0) return X_USAGE;
        if ((e = tb_case_list(c, state, overdue, &text)) != TB_OK) return failed(a, c, e);
        if (json) {
            print_result(c);
        } else {
            json_t *r = json_loads(text, 0, NULL), *arr = json_object_get(r, "cases");
            for (size_t i = 0; i < json_array_size(arr); i++) print_case(json_array_get(arr, i));
            if (json_array_size(arr) == 0) printf("no case\n");
            json_decref(r);
        }
        tb_free(text);
        return X_OK;
    }
    if ((n = positionals(a, p, 1)) != 1) {
        if (n >= 0) fprintf(stderr, "tbctl %s: CASE is required\n", a->cmd);
        return X_USAGE;
    }
    if (strcmp(sub, "get") == 0) {
        e = tb_case_get(c, p[0], &cs);
        return show_case(a, c, e, cs, json);
    }
    if (strcmp(sub, "history") == 0) {
        if ((e = tb_case_history(c, p[0], &text)) != TB_OK) return failed(a, c, e);
        if (json) {
            print_result(c);
        } else {
            static const char *const keys[] = { "by_node", "part", "detail", "result", "score", NULL };
            json_t *r = json_loads(text, 0, NULL), *arr = json_object_get(r, "events");
            for (size_t i = 0; i < json_array_size(arr); i++) {
                json_t *ev = json_array_get(arr, i);
                char lead[256];
                snprintf(lead, sizeof lead, "%s %s", str(ev, "at"), str(ev, "action"));
                print_kv(lead, ev, keys);
            }
            json_decref(r);
        }
        tb_free(text);
        return X_OK;
    }
    fprintf(stderr, "tbctl case: unknown command \"%s\" (try --help)\n", sub);
    return X_USAGE;
}

static int cmd_supitem(args_t *a, tb_client_t *c, const char *sub, int json)
{
    const char *p[1], *level = opt(a, "--level");
    char *text = NULL;
    tb_err_t e;

    if (strcmp(sub, "put") == 0) {
        const char *name = opt(a, "--name"), *region = opt(a, "--region"), *parent = opt(a, "--parent");
        const char *code = opt(a, "--code");
        int n = positionals(a, p, code ? 0 : 1);
        if (code) p[0] = code;
        if (n < 0 || (!code && n != 1) || !name || !level || !region) {
            if (n >= 0) fprintf(stderr, "tbctl %s: CODE, --name, --level and --region are required\n", a->cmd);
            return X_USAGE;
        }
        if ((e = tb_supitem_put(c, p[0], name, level, parent, region, &text)) != TB_OK) return failed(a, c, e);
        if (json) {
            print_result(c);
        } else {
            static const char *const keys[] = { "name", "level", "parent", "region", "owner", NULL };
            json_t *r = json_loads(text, 0, NULL);
            char lead[300];
            snprintf(lead, sizeof lead, "supitem %s", p[0]);
            print_kv(lead, r, keys);
            json_decref(r);
        }
        tb_free(text);
        return X_OK;
    }
    if (strcmp(sub, "list") == 0) {
        if (positionals(a, p, 0) < 0) return X_USAGE;
        if ((e = tb_supitem_list(c, level, &text)) != TB_OK) return failed(a, c, e);
        if (json) {
            print_result(c);
        } else {
            static const char *const keys[] = { "name", "level", "parent", "region", "owner", NULL };
            json_t *r = json_loads(text, 0, NULL), *arr = json_object_get(r, "items");
            for (size_t i = 0; i < json_array_size(arr); i++) {
                json_t *it = json_array_get(arr, i);
                char lead[300];
                snprintf(lead, sizeof lead, "supitem %s", str(it, "code"));
                print_kv(lead, it, keys);
            }
            if (json_array_size(arr) == 0) printf("no supervision item\n");
            json_decref(r);
        }
        tb_free(text);
        return X_OK;
    }
    fprintf(stderr, "tbctl supitem: unknown command \"%s\" (try --help)\n", sub);
    return X_USAGE;
}

static int cmd_risk(args_t *a, tb_client_t *c, const char *sub, int json)
{
    const char *p[1], *lv = opt(a, "--level"), *title = opt(a, "--title"), *detail = opt(a, "--detail"),
                      *region = opt(a, "--region");
    char *id = NULL;
    int level;
    tb_err_t e;

    if (strcmp(sub, "publish") != 0) {
        fprintf(stderr, "tbctl risk: unknown command \"%s\" (try --help)\n", sub);
        return X_USAGE;
    }
    if (positionals(a, p, 0) < 0) return X_USAGE;
    if (!lv || !title || !detail) {
        fprintf(stderr, "tbctl %s: --level, --title and --detail are required\n", a->cmd);
        return X_USAGE;
    }
    if (parse_int(a->cmd, "--level", lv, 1, 4, &level)) return X_USAGE;
    if ((e = tb_risk_publish(c, level, title, detail, region, &id)) != TB_OK) return failed(a, c, e);
    if (json) print_result(c);
    else printf("risk %s published (level %d)\n", id, level);
    tb_free(id);
    return X_OK;
}

static int cmd_complaint(args_t *a, tb_client_t *c, const char *sub, int json)
{
    const char *p[1];
    char *text = NULL;
    int n;
    tb_err_t e;

    if (strcmp(sub, "file") == 0) {
        const char *region = opt(a, "--region"), *kind = opt(a, "--kind"), *subject = opt(a, "--subject"),
                   *detail = opt(a, "--detail");
        if (positionals(a, p, 0) < 0) return X_USAGE;
        if (!region || !kind || !subject || !detail) {
            fprintf(stderr, "tbctl %s: --region, --kind, --subject and --detail are required\n", a->cmd);
            return X_USAGE;
        }
        if ((e = tb_complaint_file(c, region, kind, subject, detail, &text)) != TB_OK) return failed(a, c, e);
        if (json) print_result(c);
        else printf("complaint %s filed with %s\n", text, region);
        tb_free(text);
        return X_OK;
    }
    const char *note = strcmp(sub, "ack") == 0 ? opt(a, "--note") : NULL;
    if ((n = positionals(a, p, 1)) != 1) {
        if (n >= 0) fprintf(stderr, "tbctl %s: the complaint id is required\n", a->cmd);
        return X_USAGE;
    }
    if (strcmp(sub, "ack") == 0) {
        if ((e = tb_complaint_ack(c, p[0], note)) != TB_OK) return failed(a, c, e);
        if (json) print_result(c);
        else printf("complaint %s acknowledged\n", p[0]);
        return X_OK;
    }
    if (strcmp(sub, "get") == 0) {
        if ((e = tb_complaint_get(c, p[0], &text)) != TB_OK) return failed(a, c, e);
        if (json) {
            print_result(c);
        } else {
            static const char *const keys[] = { "kind", "region", "filed_by", "subject", "at", NULL };
            json_t *r = json_loads(text, 0, NULL), *rc = json_object_get(r, "receipt");
            char lead[300];
            snprintf(lead, sizeof lead, "complaint %s", p[0]);
            print_kv(lead, r, keys);
            if (json_is_object(rc)) {
                static const char *const rkeys[] = { "by", "at", "note", NULL };
                print_kv("receipt", rc, rkeys);
            } else {
                printf("receipt none yet\n");
            }
            json_decref(r);
        }
        tb_free(text);
        return X_OK;
    }
    fprintf(stderr, "tbctl complaint: unknown command \"%s\" (try --help)\n", sub);
    return X_USAGE;
}

static int cmd_events(args_t *a, tb_client_t *c, const char *sub, int json)
{
    const char *p[1], *cursor = opt(a, "--cursor");
    tb_events_t *ev = NULL;
    tb_err_t err;
    int rc = X_OK;

    if (strcmp(sub, "ack") == 0) {
        const char *ids = opt(a, "--id");
        char *end;
        long long id = ids ? strtoll(ids, &end, 10) : 0;
        if (positionals(a, p, 0) < 0) return X_USAGE;
        if (!cursor || !ids || !*ids || *end || id <= 0) {
            fprintf(stderr, "tbctl %s: --cursor NAME and --id N (N >= 1) are required\n", a->cmd);
            return X_USAGE;
        }
        if ((err = tb_events_open(c, cursor, &ev)) != TB_OK || (err = tb_events_ack_id(ev, id)) != TB_OK)
            rc = failed(a, c, err);
        else if (json) print_result(c);
        else printf("cursor %s at %lld\n", cursor, id);
        tb_events_close(&ev);
        return rc;
    }
    if (strcmp(sub, "next") != 0) {
        fprintf(stderr, "tbctl events: unknown command \"%s\" (try --help)\n", sub);
        return X_USAGE;
    }
    const char *mx = opt(a, "--max"), *wt = opt(a, "--wait-ms");
    int ack = flag(a, "--ack"), max = 100, wait = 0, got = 0;
    const tb_event_t *e = NULL, *last = NULL;
    json_t *all = json ? json_array() : NULL;
    long long last_id = -1;

    if (positionals(a, p, 0) < 0) return X_USAGE;
    if (!cursor) {
        fprintf(stderr, "tbctl %s: --cursor NAME is required\n", a->cmd);
        return X_USAGE;
    }
    if ((mx && parse_int(a->cmd, "--max", mx, 1, 1000, &max)) ||
        (wt && parse_int(a->cmd, "--wait-ms", wt, 0, 30000, &wait))) {
        json_decref(all);
        return X_USAGE;
    }
    if ((err = tb_events_open(c, cursor, &ev)) != TB_OK) {
        json_decref(all);
        return failed(a, c, err);
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
            rc = failed(a, c, err);
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
        if ((err = tb_events_ack(ev, last)) != TB_OK) rc = failed(a, c, err);
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
    int n = positionals(a, p, 3);
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
    const char *p[1], *cfg = opt(a, "-c");
    char ep[1100], sk[PATH_MAX];
    if (!cfg) cfg = opt(a, "--config");
    if (positionals(a, p, 0) < 0) return X_USAGE;
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
    int json = flag(&a, "--json");
    if ((rc = connect_node(&a, resolve, &c)) != X_OK) goto done;
    const char *group = argv[0], *sub = argv[1];
    if (strcmp(group, "record") == 0) rc = cmd_record(&a, c, sub, json);
    else if (strcmp(group, "licence") == 0) rc = cmd_licence(&a, c, sub, json);
    else if (strcmp(group, "case") == 0) rc = cmd_case(&a, c, sub, json);
    else if (strcmp(group, "supitem") == 0) rc = cmd_supitem(&a, c, sub, json);
    else if (strcmp(group, "risk") == 0) rc = cmd_risk(&a, c, sub, json);
    else if (strcmp(group, "complaint") == 0) rc = cmd_complaint(&a, c, sub, json);
    else if (strcmp(group, "events") == 0) rc = cmd_events(&a, c, sub, json);
done:
    tb_client_close(&c);
    free(a.used);
    return rc;
}
