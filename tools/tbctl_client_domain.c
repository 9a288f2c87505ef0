/* tbctl_client_domain.c -- tbctl's domain commands on a node's client API:
 * licence (issue, update, suspend, resume, revoke, get, find, verify),
 * case (submit, act, rate, get, history, list, attach, attachment), supitem, risk and
 * complaint. Built only on libtongban's public API, like tbctl_client.c
 * (the command line, the connection, records, events, validate). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <tongban/tongban.h>

#include "tbctl_client_internal.h"

/* The object of --json-file F and the --field entries on top of it, as
 * JSON text (malloc'ed), or NULL (message printed; *rc the exit code). */
static char *fields_object(args_t *a, int *rc)
{
    json_error_t jerr;
    json_t *o = NULL;
    char *text = NULL;
    const char *file = tbctl_opt(a, "--json-file");

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

static void print_licence(const json_t *l)
{
    static const char *const keys[] = { "status", "revision", "type_name", "holder_name", "holder_code",
                                        "valid_from", "valid_to", "issuer_node", NULL };
    char lead[512];
    snprintf(lead, sizeof lead, "licence %s", tbctl_str(l, "identifier"));
    tbctl_print_kv(lead, l, keys);
}

static void print_case(const json_t *cs)
{
    static const char *const keys[] = { "state", "mode", "service_item", "accepting", "handling",
                                        "deadline", "overdue", "rating", NULL };
    char lead[256];
    snprintf(lead, sizeof lead, "case %s", tbctl_str(cs, "case_id"));
    tbctl_print_kv(lead, cs, keys);
}

static int show_licence(args_t *a, tb_client_t *c, tb_err_t e, tb_licence_t *l, int json)
{
    if (e != TB_OK) return tbctl_failed(a, c, e);
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
    int ask = tbctl_flag(a, "--ask-issuer"), timeout = 0, n;
    const char *t = tbctl_opt(a, "--timeout-ms");
    const char *p[1];
    tb_verify_result_t v;

    if (t && tbctl_parse_int(a->cmd, "--timeout-ms", t, 1, 60000, &timeout)) return X_USAGE;
    if ((n = tbctl_positionals(a, p, 1)) != 1) {
        if (n >= 0) fprintf(stderr, "tbctl %s: the licence identifier is required\n", a->cmd);
        return X_USAGE;
    }
    tb_err_t e = tb_licence_verify(c, p[0], ask ? TB_VERIFY_ASK_ISSUER : 0, timeout, &v);
    if (e != TB_OK && !tb_client_result(c)) return tbctl_failed(a, c, e);
    if (json) {
        tbctl_print_result(c);
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
    return e == TB_OK ? X_OK : tbctl_failed(a, c, e);
}

int tbctl_cmd_licence(args_t *a, tb_client_t *c, const char *sub, int json)
{
    const char *p[1];
    tb_licence_t *l = NULL;
    int n, rc;
    char *text;
    tb_err_t e;

    if (strcmp(sub, "issue") == 0 || strcmp(sub, "update") == 0) {
        int update = sub[0] == 'u';
        if (!(text = fields_object(a, &rc))) return rc;
        n = tbctl_positionals(a, p, update);
        if (n != update) {
            if (n >= 0) fprintf(stderr, "tbctl %s: %s\n", a->cmd, update ? "the licence identifier is required" : "no positional argument expected");
            free(text);
            return X_USAGE;
        }
        e = update ? tb_licence_update(c, p[0], text, &l) : tb_licence_issue(c, text, &l);
        free(text);
        return show_licence(a, c, e, l, json);
    }
    const char *reason = tbctl_opt(a, "--reason");
    if (strcmp(sub, "verify") == 0) {
        if (reason) {
            fprintf(stderr, "tbctl %s: --reason does not apply\n", a->cmd);
            return X_USAGE;
        }
        return cmd_verify(a, c, json);
    }
    if ((n = tbctl_positionals(a, p, 1)) != 1) {
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
        if ((e = tb_licence_find(c, p[0], &text)) != TB_OK) return tbctl_failed(a, c, e);
        if (json) {
            tbctl_print_result(c);
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
    if (e != TB_OK) return tbctl_failed(a, c, e);
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

int tbctl_cmd_case(args_t *a, tb_client_t *c, const char *sub, int json)
{
    const char *p[2];
    tb_case_t *cs = NULL;
    char *text = NULL;
    int n, rc;
    tb_err_t e;

    if (strcmp(sub, "submit") == 0) {
        if (!(text = fields_object(a, &rc))) return rc;
        if (tbctl_positionals(a, p, 0) < 0) {
            free(text);
            return X_USAGE;
        }
        e = tb_case_submit(c, text, &cs);
        free(text);
        return show_case(a, c, e, cs, json);
    }
    if (strcmp(sub, "act") == 0) {
        const char *detail = tbctl_opt(a, "--detail"), *result = tbctl_opt(a, "--result");
        tb_case_action_t act;
        if ((n = tbctl_positionals(a, p, 2)) != 2) {
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
        const char *comment = tbctl_opt(a, "--comment");
        int score;
        if ((n = tbctl_positionals(a, p, 2)) != 2) {
            if (n >= 0) fprintf(stderr, "tbctl %s: CASE and SCORE are required\n", a->cmd);
            return X_USAGE;
        }
        if (tbctl_parse_int(a->cmd, "SCORE", p[1], 1, 5, &score)) return X_USAGE;
        e = tb_case_rate(c, p[0], score, comment, &cs);
        return show_case(a, c, e, cs, json);
    }
    if (strcmp(sub, "list") == 0) {
        const char *state = tbctl_opt(a, "--state");
        int overdue = tbctl_flag(a, "--overdue");
        if (tbctl_positionals(a, p, 0) < 0) return X_USAGE;
        if ((e = tb_case_list(c, state, overdue, &text)) != TB_OK) return tbctl_failed(a, c, e);
        if (json) {
            tbctl_print_result(c);
        } else {
            json_t *r = json_loads(text, 0, NULL), *arr = json_object_get(r, "cases");
            for (size_t i = 0; i < json_array_size(arr); i++) print_case(json_array_get(arr, i));
            if (json_array_size(arr) == 0) printf("no case\n");
            json_decref(r);
        }
        tb_free(text);
        return X_OK;
    }
    if (strcmp(sub, "attach") == 0) {
        char sha[65];
        const char *name = tbctl_opt(a, "--name");
        if ((n = tbctl_positionals(a, p, 2)) != 2) {
            if (n >= 0) fprintf(stderr, "tbctl %s: CASE and FILE are required\n", a->cmd);
            return X_USAGE;
        }
        if ((e = tb_case_attach_file(c, p[0], p[1], name, sha)) != TB_OK)
            return tbctl_failed(a, c, e);
        if (json)
            tbctl_print_result(c);
        else
            printf("attached %s sha256=%s\n", p[1], sha);
        return X_OK;
    }
    if (strcmp(sub, "attachment") == 0) {
        const char *out = tbctl_opt(a, "--out");
        if ((n = tbctl_positionals(a, p, 2)) != 2) {
            if (n >= 0) fprintf(stderr, "tbctl %s: CASE and SHA256 are required\n", a->cmd);
            return X_USAGE;
        }
        if (out) {
            if ((e = tb_case_fetch_attachment(c, p[0], p[1], out)) != TB_OK) return tbctl_failed(a, c, e);
            printf("wrote %s sha256=%s\n", out, p[1]);
            return X_OK;
        }
        if ((e = tb_case_attachment_status(c, p[0], p[1], &text)) != TB_OK) return tbctl_failed(a, c, e);
        if (json) {
            tbctl_print_result(c);
        } else {
            json_t *r = json_loads(text, 0, NULL);
            printf("attachment %s size=%lld have=%zu/%lld complete=%s\n", p[1],
                   (long long)json_integer_value(json_object_get(r, "size")), json_array_size(json_object_get(r, "have")),
                   (long long)json_integer_value(json_object_get(r, "count")),
                   json_is_true(json_object_get(r, "complete")) ? "yes" : "no");
            json_decref(r);
        }
        tb_free(text);
        return X_OK;
    }
    if ((n = tbctl_positionals(a, p, 1)) != 1) {
        if (n >= 0) fprintf(stderr, "tbctl %s: CASE is required\n", a->cmd);
        return X_USAGE;
    }
    if (strcmp(sub, "get") == 0) {
        e = tb_case_get(c, p[0], &cs);
        return show_case(a, c, e, cs, json);
    }
    if (strcmp(sub, "history") == 0) {
        if ((e = tb_case_history(c, p[0], &text)) != TB_OK) return tbctl_failed(a, c, e);
        if (json) {
            tbctl_print_result(c);
        } else {
            static const char *const keys[] = { "by_node", "part", "detail", "result", "score", NULL };
            json_t *r = json_loads(text, 0, NULL), *arr = json_object_get(r, "events");
            for (size_t i = 0; i < json_array_size(arr); i++) {
                json_t *ev = json_array_get(arr, i);
                char lead[256];
                snprintf(lead, sizeof lead, "%s %s", tbctl_str(ev, "at"), tbctl_str(ev, "action"));
                tbctl_print_kv(lead, ev, keys);
            }
            json_decref(r);
        }
        tb_free(text);
        return X_OK;
    }
    fprintf(stderr, "tbctl case: unknown command \"%s\" (try --help)\n", sub);
    return X_USAGE;
}

int tbctl_cmd_supitem(args_t *a, tb_client_t *c, const char *sub, int json)
{
    const char *p[1], *level = tbctl_opt(a, "--level");
    char *text = NULL;
    tb_err_t e;

    if (strcmp(sub, "put") == 0) {
        const char *name = tbctl_opt(a, "--name"), *region = tbctl_opt(a, "--region"), *parent = tbctl_opt(a, "--parent");
        const char *code = tbctl_opt(a, "--code");
        int n = tbctl_positionals(a, p, code ? 0 : 1);
        if (code) p[0] = code;
        if (n < 0 || (!code && n != 1) || !name || !level || !region) {
            if (n >= 0) fprintf(stderr, "tbctl %s: CODE, --name, --level and --region are required\n", a->cmd);
            return X_USAGE;
        }
        if ((e = tb_supitem_put(c, p[0], name, level, parent, region, &text)) != TB_OK) return tbctl_failed(a, c, e);
        if (json) {
            tbctl_print_result(c);
        } else {
            static const char *const keys[] = { "name", "level", "parent", "region", "owner", NULL };
            json_t *r = json_loads(text, 0, NULL);
            char lead[300];
            snprintf(lead, sizeof lead, "supitem %s", p[0]);
            tbctl_print_kv(lead, r, keys);
            json_decref(r);
        }
        tb_free(text);
        return X_OK;
    }
    if (strcmp(sub, "list") == 0) {
        if (tbctl_positionals(a, p, 0) < 0) return X_USAGE;
        if ((e = tb_supitem_list(c, level, &text)) != TB_OK) return tbctl_failed(a, c, e);
        if (json) {
            tbctl_print_result(c);
        } else {
            static const char *const keys[] = { "name", "level", "parent", "region", "owner", NULL };
            json_t *r = json_loads(text, 0, NULL), *arr = json_object_get(r, "items");
            for (size_t i = 0; i < json_array_size(arr); i++) {
                json_t *it = json_array_get(arr, i);
                char lead[300];
                snprintf(lead, sizeof lead, "supitem %s", tbctl_str(it, "code"));
                tbctl_print_kv(lead, it, keys);
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

int tbctl_cmd_risk(args_t *a, tb_client_t *c, const char *sub, int json)
{
    const char *p[1], *lv = tbctl_opt(a, "--level"), *title = tbctl_opt(a, "--title"), *detail = tbctl_opt(a, "--detail"),
                      *region = tbctl_opt(a, "--region");
    char *id = NULL;
    int level;
    tb_err_t e;

    if (strcmp(sub, "publish") != 0) {
        fprintf(stderr, "tbctl risk: unknown command \"%s\" (try --help)\n", sub);
        return X_USAGE;
    }
    if (tbctl_positionals(a, p, 0) < 0) return X_USAGE;
    if (!lv || !title || !detail) {
        fprintf(stderr, "tbctl %s: --level, --title and --detail are required\n", a->cmd);
        return X_USAGE;
    }
    if (tbctl_parse_int(a->cmd, "--level", lv, 1, 4, &level)) return X_USAGE;
    if ((e = tb_risk_publish(c, level, title, detail, region, &id)) != TB_OK) return tbctl_failed(a, c, e);
    if (json) tbctl_print_result(c);
    else printf("risk %s published (level %d)\n", id, level);
    tb_free(id);
    return X_OK;
}

int tbctl_cmd_complaint(args_t *a, tb_client_t *c, const char *sub, int json)
{
    const char *p[1];
    char *text = NULL;
    int n;
    tb_err_t e;

    if (strcmp(sub, "file") == 0) {
        const char *region = tbctl_opt(a, "--region"), *kind = tbctl_opt(a, "--kind"), *subject = tbctl_opt(a, "--subject"),
                   *detail = tbctl_opt(a, "--detail");
        if (tbctl_positionals(a, p, 0) < 0) return X_USAGE;
        if (!region || !kind || !subject || !detail) {
            fprintf(stderr, "tbctl %s: --region, --kind, --subject and --detail are required\n", a->cmd);
            return X_USAGE;
        }
        if ((e = tb_complaint_file(c, region, kind, subject, detail, &text)) != TB_OK) return tbctl_failed(a, c, e);
        if (json) tbctl_print_result(c);
        else printf("complaint %s filed with %s\n", text, region);
        tb_free(text);
        return X_OK;
    }
    const char *note = strcmp(sub, "ack") == 0 ? tbctl_opt(a, "--note") : NULL;
    if ((n = tbctl_positionals(a, p, 1)) != 1) {
        if (n >= 0) fprintf(stderr, "tbctl %s: the complaint id is required\n", a->cmd);
        return X_USAGE;
    }
    if (strcmp(sub, "ack") == 0) {
        if ((e = tb_complaint_ack(c, p[0], note)) != TB_OK) return tbctl_failed(a, c, e);
        if (json) tbctl_print_result(c);
        else printf("complaint %s acknowledged\n", p[0]);
        return X_OK;
    }
    if (strcmp(sub, "get") == 0) {
        if ((e = tb_complaint_get(c, p[0], &text)) != TB_OK) return tbctl_failed(a, c, e);
        if (json) {
            tbctl_print_result(c);
        } else {
            static const char *const keys[] = { "kind", "region", "filed_by", "subject", "at", NULL };
            json_t *r = json_loads(text, 0, NULL), *rc = json_object_get(r, "receipt");
            char lead[300];
            snprintf(lead, sizeof lead, "complaint %s", p[0]);
            tbctl_print_kv(lead, r, keys);
            if (json_is_object(rc)) {
                static const char *const rkeys[] = { "by", "at", "note", NULL };
                tbctl_print_kv("receipt", rc, rkeys);
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

