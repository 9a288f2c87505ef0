/* file_case.c -- libtongban example: file a cross-region case (异地代收代办:
 * received here, handled by another region), look at it and its signed
 * history, list the overdue cases, and withdraw it again.
 *
 *   cc -o file_case file_case.c $(pkg-config --cflags --libs tongban)
 *   ./file_case ipc:///tmp/tongban-node-110000.api 440000
 *
 * This node is the accepting node; HANDLING_NODE (another node id) decides.
 * The handling node sees the case arrive as a case_event (follow_events.c)
 * and moves it on with tb_case_act(..., TB_CASE_ACCEPT, ...).
 */
#define _POSIX_C_SOURCE 200809L   /* gmtime_r under -std=c11 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tongban/tongban.h>

int main(int argc, char **argv)
{
    char why[256], applicant[32], deadline[16], submit[2048], *json = NULL;
    tb_client_t *c = NULL;
    tb_case_t *cs = NULL;
    tb_err_t e;
    int rc = 1;

    if (argc != 3) {
        fprintf(stderr, "usage: %s ENDPOINT HANDLING_NODE   (e.g. ipc:///tmp/tongban-node-110000.api 440000)\n",
                argv[0]);
        return 2;
    }
    /* the applicant's citizen ID (check character computed) and a deadline 20 days ahead */
    snprintf(applicant, sizeof applicant, "44030519850704123%c", tb_citizen_id_check_char("44030519850704123"));
    time_t t = time(NULL) + 20 * 86400;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(deadline, sizeof deadline, "%Y-%m-%d", &tm);
    snprintf(submit, sizeof submit,
             "{\"service_item\":\"11440000MB2D27065J-0001\",\"applicant_name\":\"李四\","
             "\"applicant_code\":\"%s\",\"applicant_code_type\":\"111\",\"mode\":\"proxy\","
             "\"handling\":[\"%s\"],\"deadline\":\"%s\",\"detail\":\"户籍迁移 (example)\","
             "\"materials\":[{\"name\":\"申请表.pdf\",\"sha256\":"
             "\"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\",\"size\":48213,"
             "\"ref\":\"https://files.example.gov.cn/cases/form-0001.pdf\"}]}",
             applicant, argv[2], deadline);

    tb_client_opts_t opts = { .errbuf = why, .errlen = sizeof why };
    if (tb_client_open(argv[1], &opts, &c) != TB_OK) {
        fprintf(stderr, "open %s: %s\n", argv[1], why);
        return 1;
    }

    /* submit: this node is the accepting node; the case id is made by it */
    if ((e = tb_case_submit(c, submit, &cs)) != TB_OK) {
        fprintf(stderr, "submit: %s: %s\n", tb_strerror(e), tb_client_error(c));
        goto done;
    }
    char id[128];
    snprintf(id, sizeof id, "%s", tb_case_id(cs));
    printf("case %s: state %s, overdue %s\n", id, tb_case_state(cs), tb_case_overdue(cs) ? "yes" : "no");
    tb_case_free(&cs);

    /* only the lead handling node may accept: here the node refuses */
    e = tb_case_act(c, id, TB_CASE_ACCEPT, NULL, NULL, NULL);
    printf("accept on the accepting node: %s (%s)\n", tb_strerror(e), tb_client_error(c));
    if (e != TB_ERR_REFUSED) goto done;

    /* its signed history and the overdue cases of this node */
    if ((e = tb_case_history(c, id, &json)) != TB_OK) {
        fprintf(stderr, "history: %s\n", tb_client_error(c));
        goto done;
    }
    printf("history: %s\n", json);
    tb_free(json);
    json = NULL;
    if ((e = tb_case_list(c, NULL, 1, &json)) != TB_OK) {
        fprintf(stderr, "list: %s\n", tb_client_error(c));
        goto done;
    }
    printf("overdue cases: %s\n", json);

    /* the applicant changes their mind: the accepting node withdraws it */
    if ((e = tb_case_act(c, id, TB_CASE_WITHDRAW, "example: withdrawn by the applicant", NULL, &cs)) != TB_OK) {
        fprintf(stderr, "withdraw: %s: %s\n", tb_strerror(e), tb_client_error(c));
        goto done;
    }
    printf("case %s: state %s\n", tb_case_id(cs), tb_case_state(cs));
    rc = strcmp(tb_case_state(cs), "withdrawn") == 0 ? 0 : 1;
done:
    tb_free(json);
    tb_case_free(&cs);
    tb_client_close(&c);
    return rc;
}
