/* fuzz_validate.c -- libFuzzer target: the identifier validators and check
 * characters of <tongban/validate.h>.
 *
 * The input, as a NUL-terminated copy, goes to every validator and check
 * character function; split at its first '\n' it is also a (code_type,
 * code) pair for tb_validate_holder. Properties:
 *   - each validator returns TB_OK with why = "" or TB_ERR_INVALID with a
 *     one-line why naming the kind; the same with why NULL and with a tiny
 *     heap buffer (ASan sees any overrun);
 *   - an accepted code has the check character the check functions give,
 *     and a check character made for the input makes a valid code (USCC
 *     always; licence identifier unless its issuer code is refused);
 *   - tb_validate_holder agrees with the validator its type names.
 * Must never crash or leak.
 *
 * Seeds: fuzz/corpus/fuzz_validate (valid and near-valid codes of each kind).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tongban/validate.h>

#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef tb_err_t (*validator_t)(const char *s, char *why, size_t whylen);

/* Runs v on s with a full buffer, without one and with a tiny one; checks
 * the contract and returns the result. */
static tb_err_t run(validator_t v, const char *s, const char *what, size_t tiny)
{
    char why[512];
    memset(why, 'Q', sizeof why);
    tb_err_t rc = v(s, why, sizeof why);
    FUZZ_ASSERT(rc == TB_OK || rc == TB_ERR_INVALID);
    FUZZ_ASSERT(memchr(why, '\0', sizeof why) != NULL);
    if (rc == TB_OK) {
        FUZZ_ASSERT(why[0] == '\0');
    } else {
        FUZZ_ASSERT(strncmp(why, what, strlen(what)) == 0);
        FUZZ_ASSERT(strchr(why, '\n') == NULL);
        FUZZ_ASSERT(strlen(why) > strlen(what) + 2);
    }
    FUZZ_ASSERT(v(s, NULL, 0) == rc);
    FUZZ_ASSERT(v(s, NULL, 64) == rc);
    char *small = malloc(tiny);
    FUZZ_ASSERT(small != NULL);
    FUZZ_ASSERT(v(s, small, tiny) == rc);
    FUZZ_ASSERT(strlen(small) < tiny);
    FUZZ_ASSERT(strncmp(small, why, tiny - 1) == 0);
    free(small);
    return rc;
}

/* The citizen ID and its check character. */
static void citizen(const char *s, size_t tiny)
{
    tb_err_t rc = run(tb_validate_citizen_id, s, "citizen ID", tiny);
    char c = tb_citizen_id_check_char(s);
    FUZZ_ASSERT(c == 0 || (c >= '0' && c <= '9') || c == 'X');
    if (rc == TB_OK) {
        FUZZ_ASSERT(strlen(s) == 18 && c == s[17]);
        char area[7];
        memcpy(area, s, 6);
        area[6] = '\0';
        FUZZ_ASSERT(tb_validate_region(area, NULL, 0) == TB_OK);
        char date[11] = {s[6], s[7], s[8], s[9], '-', s[10], s[11], '-', s[12], s[13], '\0'};
        FUZZ_ASSERT(tb_validate_date(date, NULL, 0) == TB_OK);
    }
    FUZZ_ASSERT(tb_validate_holder("111", s, NULL, 0) == rc);
}

/* The USCC and its check character: any 17 characters the check function
 * takes, completed by it, make a valid code. */
static void uscc(const char *s, size_t tiny)
{
    tb_err_t rc = run(tb_validate_uscc, s, "unified social credit code", tiny);
    char c = tb_uscc_check_char(s);
    FUZZ_ASSERT(rc != TB_OK || (strlen(s) == 18 && c == s[17]));
    if (c) {
        char code[19];
        memcpy(code, s, 17);
        code[17] = c;
        code[18] = '\0';
        FUZZ_ASSERT(tb_validate_uscc(code, NULL, 0) == TB_OK);
        FUZZ_ASSERT(rc == TB_OK || strlen(s) != 18 || s[17] != c);
    }
    FUZZ_ASSERT(tb_validate_holder("001", s, NULL, 0) == rc);
}

/* The licence identifier and its check character. */
static void licence(const char *s, size_t tiny)
{
    tb_err_t rc = run(tb_validate_licence_id, s, "licence identifier", tiny);
    size_t n = strlen(s);
    if (rc == TB_OK) {
        FUZZ_ASSERT(n >= 2 && s[n - 2] == '.');
        char *body = malloc(n - 1);
        FUZZ_ASSERT(body != NULL);
        memcpy(body, s, n - 2);
        body[n - 2] = '\0';
        FUZZ_ASSERT(tb_licence_id_check_char(body) == s[n - 1]);
        free(body);
    }
    char c = tb_licence_id_check_char(s);
    if (c) {
        FUZZ_ASSERT((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z'));
        char *id = malloc(n + 3), why[512];
        FUZZ_ASSERT(id != NULL);
        memcpy(id, s, n);
        id[n] = '.';
        id[n + 1] = c;
        id[n + 2] = '\0';
        if (tb_validate_licence_id(id, why, sizeof why) != TB_OK)
            FUZZ_ASSERT(strstr(why, "issuing authority code") != NULL);
        free(id);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    FUZZ_ASSERT(s != NULL);
    if (size) memcpy(s, data, size);
    s[size] = '\0';
    size_t tiny = 1 + (size ? data[size - 1] % 24u : 0u);

    citizen(s, tiny);
    uscc(s, tiny);
    licence(s, tiny);
    tb_err_t rc = run(tb_validate_region, s, "region", tiny);
    FUZZ_ASSERT(rc != TB_OK || strlen(s) == 6);
    rc = run(tb_validate_date, s, "date", tiny);
    FUZZ_ASSERT(rc != TB_OK || strlen(s) == 10);
    rc = run(tb_validate_item_code, s, "item code", tiny);
    FUZZ_ASSERT(rc != TB_OK || (strlen(s) >= 1 && strlen(s) <= 50));

    /* split at the first '\n': code_type, then code */
    char *nl = memchr(s, '\n', size);
    const char *type = s, *code = "";
    if (nl) {
        *nl = '\0';
        code = nl + 1;
    }
    char why[512];
    rc = tb_validate_holder(type, code, why, sizeof why);
    FUZZ_ASSERT(rc == TB_OK || rc == TB_ERR_INVALID);
    FUZZ_ASSERT(rc == TB_OK ? why[0] == '\0' : (why[0] != '\0' && strchr(why, '\n') == NULL));
    if (strcmp(type, "111") == 0) FUZZ_ASSERT(rc == tb_validate_citizen_id(code, NULL, 0));
    else if (strcmp(type, "001") == 0) FUZZ_ASSERT(rc == tb_validate_uscc(code, NULL, 0));
    else FUZZ_ASSERT(rc == TB_ERR_INVALID && strstr(why, "holder code type") == why);
    FUZZ_ASSERT(tb_validate_holder(type, code, NULL, 0) == rc);
    char *small = malloc(tiny);
    FUZZ_ASSERT(small != NULL);
    FUZZ_ASSERT(tb_validate_holder(type, code, small, tiny) == rc);
    FUZZ_ASSERT(strlen(small) < tiny);
    free(small);

    free(s);
    return 0;
}
