/* issue_and_verify.c -- libtongban example: mint valid identifiers, issue an
 * electronic licence on this node, verify it, revoke it, verify it again.
 *
 *   cc -o issue_and_verify issue_and_verify.c $(pkg-config --cflags --libs tongban)
 *   ./issue_and_verify ipc:///tmp/tongban-node-110000.api
 *
 * The node must be the licence's issuer (licence.issue seals with the
 * node's key). Exit status 0 when every step did what was expected.
 */
#define _POSIX_C_SOURCE 200809L   /* gmtime_r under -std=c11 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <tongban/tongban.h>

/* Completes a code with its check character (prefix + check) into out. */
static int complete(char *out, size_t len, const char *prefix, char check, int dotted)
{
    if (!check) return -1;
    int n = dotted ? snprintf(out, len, "%s.%c", prefix, check) : snprintf(out, len, "%s%c", prefix, check);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

static void show_verdict(const char *what, const tb_verify_result_t *v)
{
    printf("%s: verdict=%s seal=%s source=%s issuer=%s age_s=%lld%s%s\n", what, tb_verdict_name(v->verdict),
           v->seal_ok ? "ok" : "bad", v->source, v->issuer, v->local_age_s, v->detail[0] ? " detail=" : "",
           v->detail);
}

int main(int argc, char **argv)
{
    char holder[32], issuer[32], prefix[160], id[160], fields[2048];
    tb_client_t *c = NULL;
    tb_licence_t *lic = NULL;
    tb_verify_result_t v;
    tb_err_t e;
    int rc = 1;

    if (argc != 2) {
        fprintf(stderr, "usage: %s ENDPOINT   (e.g. ipc:///tmp/tongban-node-110000.api)\n", argv[0]);
        return 2;
    }

    /* 1. identifiers: a citizen as holder, an authority as issuer, the licence id */
    if (complete(holder, sizeof holder, "11010519491231002", tb_citizen_id_check_char("11010519491231002"), 0) ||
        complete(issuer, sizeof issuer, "11110000000013338", tb_uscc_check_char("11110000000013338"), 0))
        return 1;
    snprintf(prefix, sizeof prefix, "1.2.156.3005.2.11100000000013338W032.%s.%ld.001", issuer, (long)time(NULL));
    if (complete(id, sizeof id, prefix, tb_licence_id_check_char(prefix), 1)) return 1;
    char why[256];
    if (tb_validate_licence_id(id, why, sizeof why) != TB_OK) {
        fprintf(stderr, "%s\n", why);
        return 1;
    }
    /* valid from today (the date in China, UTC+8) to the end of the year in ten years */
    char today[16], until[24];
    time_t now = time(NULL) + 8 * 3600;
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(today, sizeof today, "%Y-%m-%d", &tm);
    snprintf(until, sizeof until, "%d-12-31", tm.tm_year + 1900 + 10);
    snprintf(fields, sizeof fields,
             "{\"identifier\":\"%s\",\"type_code\":\"11100000000013338W032\",\"type_name\":\"居民身份证明\","
             "\"number\":\"EX-%ld\",\"name\":\"居民身份证明\",\"issue_date\":\"%s\","
             "\"issuer_name\":\"北京市公安局\",\"issuer_code\":\"%s\",\"jurisdiction\":\"110000\","
             "\"holder_name\":\"张三\",\"holder_code\":\"%s\",\"holder_code_type\":\"111\","
             "\"valid_from\":\"%s\",\"valid_to\":\"%s\"}",
             id, (long)time(NULL), today, issuer, holder, today, until);

    /* 2. connect (nothing is sent yet; each call waits up to 5 s for the node) */
    tb_client_opts_t opts = { .timeout_ms = 5000, .errbuf = why, .errlen = sizeof why };
    if ((e = tb_client_open(argv[1], &opts, &c)) != TB_OK) {
        fprintf(stderr, "open %s: %s\n", argv[1], why);
        return 1;
    }

    /* 3. issue: the node validates every field, seals and publishes it */
    if ((e = tb_licence_issue(c, fields, &lic)) != TB_OK) {
        fprintf(stderr, "issue: %s: %s\n", tb_strerror(e), tb_client_error(c));
        goto done;
    }
    printf("issued %s revision %d status %s by %s\n", tb_licence_field(lic, "identifier"), tb_licence_revision(lic),
           tb_licence_field(lic, "status"), tb_licence_field(lic, "issuer_node"));
    tb_licence_free(&lic);

    /* 4. verify from the local copy, then at the issuer (here: ourselves) */
    if ((e = tb_licence_verify(c, id, 0, 0, &v)) != TB_OK) {
        fprintf(stderr, "verify: %s: %s\n", tb_strerror(e), tb_client_error(c));
        goto done;
    }
    show_verdict("verify (local)", &v);
    if (v.verdict != TB_VERDICT_VALID || !v.seal_ok) goto done;

    /* 5. revoke (only the issuing node may) and verify again, asking the issuer */
    if ((e = tb_licence_revoke(c, id, "example: issued in error", &lic)) != TB_OK) {
        fprintf(stderr, "revoke: %s: %s\n", tb_strerror(e), tb_client_error(c));
        goto done;
    }
    printf("revoked: status %s revision %d\n", tb_licence_field(lic, "status"), tb_licence_revision(lic));
    tb_licence_free(&lic);
    e = tb_licence_verify(c, id, TB_VERIFY_ASK_ISSUER, 3000, &v);
    if (e != TB_OK) {
        fprintf(stderr, "verify: %s: %s\n", tb_strerror(e), tb_client_error(c));
        goto done;
    }
    show_verdict("verify (issuer)", &v);
    if (v.verdict != TB_VERDICT_REVOKED) goto done;

    /* 6. a revoked licence never changes again: the node refuses */
    e = tb_licence_resume(c, id, NULL, NULL);
    printf("resume after revoke: %s (%s)\n", tb_strerror(e), tb_client_error(c));
    rc = e == TB_ERR_REFUSED ? 0 : 1;
done:
    tb_licence_free(&lic);
    tb_client_close(&c);
    return rc;
}
