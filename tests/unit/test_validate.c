/* test_validate.c -- <tongban/validate.h>: the identifier validators and
 * check characters. For each validator: fixed vectors checked by hand,
 * codes generated with the check-character functions, and every kind of
 * error with the reason it gives. */
#include "tbtest.h"

#include <tongban/validate.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

typedef tb_err_t (*validator_t)(const char *s, char *why, size_t whylen);

/* Returns 1 if s contains sub. */
static int has(const char *s, const char *sub)
{
    return s && strstr(s, sub) != NULL;
}

/* Checks that v accepts s and leaves why empty. */
static void ok(validator_t v, const char *s)
{
    char why[256] = "stale";
    tb_err_t rc = v(s, why, sizeof why);
    CHECK_MSG(rc == TB_OK, "\"%s\" refused: %s", s ? s : "(NULL)", why);
    CHECK_MSG(why[0] == '\0', "\"%s\": why not cleared: %s", s ? s : "(NULL)", why);
}

/* Checks that v refuses s with a one-line why that starts with what and
 * contains sub. */
static void nok(validator_t v, const char *s, const char *what, const char *sub)
{
    char why[256] = "";
    tb_err_t rc = v(s, why, sizeof why);
    CHECK_MSG(rc == TB_ERR_INVALID, "\"%s\" accepted (rc %d)", s ? s : "(NULL)", (int)rc);
    CHECK_MSG(strncmp(why, what, strlen(what)) == 0 && has(why, sub),
              "\"%s\": why is \"%s\", expected \"%s: ...%s...\"", s ? s : "(NULL)", why, what, sub);
    CHECK_MSG(strchr(why, '\n') == NULL, "\"%s\": why has a newline", s ? s : "(NULL)");
}

/* Writes into out (>= 9 bytes) the date days_from_now days from today in
 * UTC+8 as YYYYMMDD. */
static void date_from_now(int days_from_now, char *out)
{
    time_t t = time(NULL) + 8 * 3600 + (time_t)days_from_now * 86400;
    struct tm tm;
    gmtime_r(&t, &tm);
    char buf[48];
    snprintf(buf, sizeof buf, "%04d%02d%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
    memcpy(out, buf, 8);
    out[8] = '\0';
}

/* Builds a citizen ID from area (6 digits), birth (8) and seq (3) with the
 * right check character into out (>= 19 bytes). Returns out. */
static char *make_cid(const char *area, const char *birth, const char *seq, char *out)
{
    snprintf(out, 19, "%.6s%.8s%.3s", area, birth, seq);
    out[17] = tb_citizen_id_check_char(out);
    out[18] = '\0';
    return out;
}

/* ---- citizen ID ---- */

static void test_citizen_id(void)
{
    char id[32], d[16], why[256];

    /* hand-verified: the GB 11643 example; weights sum mod 11 -> X */
    ok(tb_validate_citizen_id, "11010519491231002X");
    ok(tb_validate_citizen_id, "11010119900307803X");
    CHECK(tb_citizen_id_check_char("11010519491231002") == 'X');
    CHECK(tb_citizen_id_check_char("11010519491231002X") == 'X');   /* the 18th is ignored */
    CHECK(tb_citizen_id_check_char("11010119900307777") == '4');
    CHECK(tb_citizen_id_check_char(NULL) == 0);
    CHECK(tb_citizen_id_check_char("1101051949123100") == 0);       /* 16 digits */
    CHECK(tb_citizen_id_check_char("1101051949123100A") == 0);
    CHECK(tb_citizen_id_check_char("") == 0);

    /* generated: every check value 0..10 comes up across the sequences */
    const char *areas[] = {"110105", "310115", "440305", "650102", "660000", "540102"};
    const char *births[] = {"19000101", "19491231", "20000229", "19840615", "20231130"};
    int seen[128] = {0};
    for (size_t a = 0; a < sizeof areas / sizeof *areas; a++)
        for (size_t b = 0; b < sizeof births / sizeof *births; b++)
            for (int s = 0; s < 40; s++) {
                char seq[4];
                snprintf(seq, sizeof seq, "%03d", s * 7 + 1);
                make_cid(areas[a], births[b], seq, id);
                seen[(unsigned char)id[17]] = 1;
                ok(tb_validate_citizen_id, id);
                /* every other check character is refused, naming both */
                char right = id[17];
                for (const char *c = "0123456789X"; *c; c++) {
                    if (*c == right) continue;
                    id[17] = *c;
                    char sub[64];
                    snprintf(sub, sizeof sub, "check character is %c, expected %c", *c, right);
                    if (a == 0 && b == 0 && s < 3) nok(tb_validate_citizen_id, id, "citizen ID", sub);
                    else CHECK(tb_validate_citizen_id(id, NULL, 0) == TB_ERR_INVALID);
                }
            }
    for (const char *c = "0123456789X"; *c; c++) CHECK_MSG(seen[(unsigned char)*c], "check %c never made", *c);

    /* bad check character, lowercase x */
    nok(tb_validate_citizen_id, "110105194912310021", "citizen ID", "check character is 1, expected X");
    nok(tb_validate_citizen_id, "11010519491231002x", "citizen ID", "lowercase 'x'");
    nok(tb_validate_citizen_id, "11010519491231002A", "citizen ID", "check character is 'A', expected a digit or X");

    /* wrong length */
    nok(tb_validate_citizen_id, "11010519491231002", "citizen ID", "length is 17, expected 18");
    nok(tb_validate_citizen_id, "11010519491231002X1", "citizen ID", "length is 19, expected 18");
    nok(tb_validate_citizen_id, "", "citizen ID", "length is 0");
    nok(tb_validate_citizen_id, "110105491231002", "citizen ID", "length is 15");   /* old 15-digit IDs */
    nok(tb_validate_citizen_id, NULL, "citizen ID", "missing");

    /* letters or other bytes in the body */
    nok(tb_validate_citizen_id, "1101051949A231002X", "citizen ID", "character 11 is 'A', expected a digit");
    nok(tb_validate_citizen_id, "X10105194912310021", "citizen ID", "character 1 is 'X'");
    nok(tb_validate_citizen_id, "11010519491231 02X", "citizen ID", "character 15 is a space");
    nok(tb_validate_citizen_id, "11010519491231\x01" "02X", "citizen ID", "character 15 is byte 0x01");

    /* area code: provincial prefix */
    nok(tb_validate_citizen_id, make_cid("990105", "19491231", "002", id), "citizen ID",
        "area code 990105: 99 is not a provincial-level prefix");
    nok(tb_validate_citizen_id, make_cid("000000", "19491231", "002", id), "citizen ID", "00 is not a provincial");
    nok(tb_validate_citizen_id, make_cid("710000", "19491231", "002", id), "citizen ID", "71 is not a provincial");
    nok(tb_validate_citizen_id, make_cid("100000", "19491231", "002", id), "citizen ID", "10 is not a provincial");

    /* birth date: real, 1900-01-01 .. today */
    nok(tb_validate_citizen_id, make_cid("110105", "19490230", "002", id), "citizen ID",
        "birth date 19490230 is not a real date");
    nok(tb_validate_citizen_id, make_cid("110105", "19000229", "002", id), "citizen ID", "not a real date");
    nok(tb_validate_citizen_id, make_cid("110105", "19491301", "002", id), "citizen ID", "not a real date");
    nok(tb_validate_citizen_id, make_cid("110105", "19490100", "002", id), "citizen ID", "not a real date");
    nok(tb_validate_citizen_id, make_cid("110105", "18991231", "002", id), "citizen ID",
        "birth date 18991231 is before 1900-01-01");
    nok(tb_validate_citizen_id, "440524188001010014", "citizen ID", "before 1900-01-01");   /* right check */
    nok(tb_validate_citizen_id, make_cid("110105", "21000101", "002", id), "citizen ID", "in the future");
    date_from_now(2, d);
    nok(tb_validate_citizen_id, make_cid("110105", d, "002", id), "citizen ID", "in the future");
    date_from_now(-2, d);
    ok(tb_validate_citizen_id, make_cid("110105", d, "002", id));

    /* why: NULL and short buffers are fine; truncated, still terminated */
    CHECK(tb_validate_citizen_id("110105194912310021", NULL, 0) == TB_ERR_INVALID);
    CHECK(tb_validate_citizen_id("110105194912310021", NULL, 100) == TB_ERR_INVALID);
    CHECK(tb_validate_citizen_id("11010519491231002X", NULL, 0) == TB_OK);
    memset(why, 'Z', sizeof why);
    CHECK(tb_validate_citizen_id("110105194912310021", why, 8) == TB_ERR_INVALID);
    CHECK(strcmp(why, "citizen") == 0 && why[8] == 'Z');
    why[0] = 'Z';
    CHECK(tb_validate_citizen_id("110105194912310021", why, 0) == TB_ERR_INVALID);
    CHECK(why[0] == 'Z');
}

/* ---- unified social credit code ---- */

static const char uscc_alpha[] = "0123456789ABCDEFGHJKLMNPQRTUWXY";

static void test_uscc(void)
{
    char code[32];

    /* hand-verified: weighted sums mod 31 give 3, L and J */
    ok(tb_validate_uscc, "91350100M000100Y43");
    ok(tb_validate_uscc, "91110000600037341L");
    ok(tb_validate_uscc, "11220000013544541J");   /* the issuer of DOMAIN.md's licence example */
    CHECK(tb_uscc_check_char("91350100M000100Y4") == '3');
    CHECK(tb_uscc_check_char("91350100M000100Y43") == '3');   /* the 18th is ignored */
    CHECK(tb_uscc_check_char("11220000013544541") == 'J');
    CHECK(tb_uscc_check_char(NULL) == 0);
    CHECK(tb_uscc_check_char("91350100M000100Y") == 0);     /* 16 */
    CHECK(tb_uscc_check_char("91350100M0001I0Y4") == 0);    /* I */
    CHECK(tb_uscc_check_char("913501A0M000100Y4") == 0);    /* letter in the area code */
    CHECK(tb_uscc_check_char("91350100m000100Y4") == 0);

    /* generated over the whole alphabet (an LCG picks the characters) */
    unsigned x = 12345;
    int seen[128] = {0};
    for (int n = 0; n < 2000; n++) {
        for (int i = 0; i < 17; i++) {
            x = x * 1103515245u + 12345u;
            unsigned v = (x >> 16) % 31u;
            code[i] = (i >= 2 && i < 8) ? (char)('0' + v % 10) : uscc_alpha[v];
        }
        code[17] = tb_uscc_check_char(code);
        code[18] = '\0';
        CHECK(code[17] != 0);
        seen[(unsigned char)code[17]] = 1;
        ok(tb_validate_uscc, code);
        char right = code[17];
        code[17] = uscc_alpha[(strchr(uscc_alpha, right) - uscc_alpha + 1 + n % 30) % 31];
        CHECK(tb_validate_uscc(code, NULL, 0) == TB_ERR_INVALID);
        if (n < 3) {
            char sub[64];
            snprintf(sub, sizeof sub, "check character is %c, expected %c", code[17], right);
            nok(tb_validate_uscc, code, "unified social credit code", sub);
        }
    }
    for (const char *c = uscc_alpha; *c; c++) CHECK_MSG(seen[(unsigned char)*c], "check %c never made", *c);

    /* bad check character, length */
    nok(tb_validate_uscc, "91350100M000100Y44", "unified social credit code", "check character is 4, expected 3");
    nok(tb_validate_uscc, "91350100M000100Y4", "unified social credit code", "length is 17, expected 18");
    nok(tb_validate_uscc, "91350100M000100Y433", "unified social credit code", "length is 19, expected 18");
    nok(tb_validate_uscc, "", "unified social credit code", "length is 0");
    nok(tb_validate_uscc, NULL, "unified social credit code", "missing");

    /* alphabet: I O S V Z never, lowercase never, nothing else */
    for (const char *c = "IOSVZ"; *c; c++) {
        char sub[64];
        strcpy(code, "91350100M000100Y43");
        code[8] = *c;
        snprintf(sub, sizeof sub, "character 9 is '%c'", *c);
        nok(tb_validate_uscc, code, "unified social credit code", sub);
        nok(tb_validate_uscc, code, "unified social credit code", "no I, O, S, V, Z");
        strcpy(code, "91350100M000100Y43");
        code[17] = *c;   /* not even as the check character */
        nok(tb_validate_uscc, code, "unified social credit code", "character 18");
    }
    nok(tb_validate_uscc, "91350100m000100Y43", "unified social credit code", "character 9 is lowercase 'm'");
    nok(tb_validate_uscc, "91350100M000100y43", "unified social credit code", "lowercase");
    nok(tb_validate_uscc, "91350100M-00100Y43", "unified social credit code", "character 10 is '-'");
    nok(tb_validate_uscc, "91350100M000100Y4\x80", "unified social credit code", "byte 0x80");

    /* area code (characters 3-8) must be digits, even with a right check */
    strcpy(code, "913501A0M000100Y4");
    code[17] = tb_uscc_check_char("913501A0M000100Y4");   /* refused: make it by hand */
    CHECK(code[17] == 0);
    {
        /* so make its check character here, as GB 32100 defines it */
        int sum = 0;
        static const int w[17] = {1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28};
        for (int i = 0; i < 17; i++) sum += (int)(strchr(uscc_alpha, code[i]) - uscc_alpha) * w[i];
        int c = 31 - sum % 31;
        code[17] = uscc_alpha[c == 31 ? 0 : c];
        code[18] = '\0';
    }
    nok(tb_validate_uscc, code, "unified social credit code", "area code (characters 3-8) must be digits, character 7 is 'A'");
}

/* ---- electronic licence identifier ---- */

#define EXAMPLE "1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.001.F"
#define EXAMPLE_BODY "1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.001"

/* An independent check of ISO 7064 MOD 37,36 (hybrid): the fields after
 * the prefix, dots dropped, then the check character; valid iff the last
 * step's (p + v) mod 36 is 1. Returns 1 if id's check character fits. */
static int m37_36_ok(const char *id)
{
    int p = 36, last = 0;
    for (const char *s = id + strlen("1.2.156.3005.2."); *s; s++) {
        if (*s == '.') continue;
        int v = *s >= '0' && *s <= '9' ? *s - '0' : *s >= 'a' ? *s - 'a' + 10 : *s - 'A' + 10;
        last = (p + v) % 36;
        p = (last == 0 ? 36 : last) * 2 % 37;
    }
    return last == 1;
}

/* Appends ".<check>" to body (made by tb_licence_id_check_char) into out. */
static char *make_licence(const char *body, char *out, size_t len)
{
    char c = tb_licence_id_check_char(body);
    CHECK_MSG(c != 0, "no check character for %s", body);
    int n = snprintf(out, len, "%s.%c", body, c ? c : '?');
    CHECK_MSG(n > 0 && (size_t)n < len, "licence identifier longer than %zu bytes", len - 1);
    return out;
}

static void test_licence_id(void)
{
    char id[256], body[256];

    /* DOMAIN.md's example is the test vector of the MOD 37,36 variant */
    ok(tb_validate_licence_id, EXAMPLE);
    CHECK(tb_licence_id_check_char(EXAMPLE_BODY) == 'F');
    CHECK(m37_36_ok(EXAMPLE));

    /* generated: valid, and the independent check agrees */
    const char *types[] = {"11100000000013338W032", "1", "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345", "0000"};
    const char *issuers[] = {"11220000013544541J", "91350100M000100Y43", "91110000600037341L"};
    const char *serials[] = {"2430599", "a", "Zz09", "00000000000000000000000000000000", "xyz"};
    int seen[128] = {0};
    for (size_t t = 0; t < sizeof types / sizeof *types; t++)
        for (size_t i = 0; i < sizeof issuers / sizeof *issuers; i++)
            for (size_t s = 0; s < sizeof serials / sizeof *serials; s++)
                for (int v = 0; v < 40; v += 3) {
                    snprintf(body, sizeof body, "1.2.156.3005.2.%s.%s.%s.%03d", types[t], issuers[i], serials[s], v);
                    make_licence(body, id, sizeof id);
                    ok(tb_validate_licence_id, id);
                    CHECK_MSG(m37_36_ok(id), "%s", id);
                    seen[(unsigned char)id[strlen(id) - 1]] = 1;
                    /* another check character is refused */
                    char *last = id + strlen(id) - 1, right = *last;
                    *last = right == 'Z' ? '0' : right == '9' ? 'A' : (char)(right + 1);
                    CHECK(tb_validate_licence_id(id, NULL, 0) == TB_ERR_INVALID);
                    CHECK(!m37_36_ok(id));
                }
    int nseen = 0;
    for (int c = 0; c < 128; c++) nseen += seen[c];
    CHECK_MSG(nseen >= 30, "only %d different check characters made", nseen);

    /* a lowercase serial counts as uppercase */
    CHECK(tb_licence_id_check_char("1.2.156.3005.2.1.11220000013544541J.abc.001") ==
          tb_licence_id_check_char("1.2.156.3005.2.1.11220000013544541J.ABC.001"));

    /* bad check character */
    nok(tb_validate_licence_id, EXAMPLE_BODY ".G", "licence identifier", "check character is G, expected F");
    nok(tb_validate_licence_id, EXAMPLE_BODY ".f", "licence identifier", "check character is 'f', expected 0-9 or A-Z");
    nok(tb_validate_licence_id, EXAMPLE_BODY ".FF", "licence identifier", "check character field has 2 characters");
    nok(tb_validate_licence_id, EXAMPLE_BODY ".", "licence identifier", "check character field has 0 characters");
    nok(tb_validate_licence_id, EXAMPLE_BODY, "licence identifier", "found 4 dot-separated fields");
    nok(tb_validate_licence_id, EXAMPLE ".F", "licence identifier", "more than 5");

    /* version: exactly 3 digits */
    nok(tb_validate_licence_id, "1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.01.F",
        "licence identifier", "version has 2 characters, expected 3 digits");
    CHECK(tb_licence_id_check_char("1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.01") == 0);
    nok(tb_validate_licence_id, "1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.0001.F",
        "licence identifier", "version has 4 characters");
    nok(tb_validate_licence_id, "1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.00A.F",
        "licence identifier", "version: character 3 is 'A', expected a digit");
    nok(tb_validate_licence_id, "1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599..F",
        "licence identifier", "version has 0 characters");

    /* the embedded issuing authority code must be a valid USCC, even when the
     * outer check character is right */
    const char *bad_issuer = "1.2.156.3005.2.11100000000013338W032.11220000013544541K.2430599.001";
    make_licence(bad_issuer, id, sizeof id);   /* the syntax-only check character */
    CHECK(m37_36_ok(id));
    nok(tb_validate_licence_id, id, "licence identifier",
        "issuing authority code is not a valid unified social credit code: check character is K, expected J");
    nok(tb_validate_licence_id, "1.2.156.3005.2.11100000000013338W032.11220000013544541I.2430599.001.F",
        "licence identifier", "issuing authority code is not a valid unified social credit code: character 18 is 'I'");
    nok(tb_validate_licence_id, "1.2.156.3005.2.11100000000013338W032.1122000001354454J.2430599.001.F",
        "licence identifier", "issuing authority code is not a valid unified social credit code: length is 17");
    nok(tb_validate_licence_id, "1.2.156.3005.2.11100000000013338W032.11220000013544541j.2430599.001.F",
        "licence identifier", "lowercase");
    CHECK(tb_licence_id_check_char("1.2.156.3005.2.1.11220000013544541I.2430599.001") == 0);

    /* prefix and field structure */
    nok(tb_validate_licence_id, "1.2.156.3005.3.11100000000013338W032.11220000013544541J.2430599.001.F",
        "licence identifier", "does not start with 1.2.156.3005.2.");
    nok(tb_validate_licence_id, "11100000000013338W032.11220000013544541J.2430599.001.F", "licence identifier",
        "does not start with");
    nok(tb_validate_licence_id, "", "licence identifier", "does not start with");
    nok(tb_validate_licence_id, NULL, "licence identifier", "missing");
    nok(tb_validate_licence_id, "1.2.156.3005.2.11220000013544541J.2430599.001.F", "licence identifier",
        "expected 5 fields");

    /* licence type code: 1..32 of 0-9 A-Z */
    nok(tb_validate_licence_id, "1.2.156.3005.2..11220000013544541J.2430599.001.F", "licence identifier",
        "licence type code has 0 characters, expected 1..32");
    nok(tb_validate_licence_id, "1.2.156.3005.2.ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456.11220000013544541J.2430599.001.F",
        "licence identifier", "licence type code has 33 characters");
    nok(tb_validate_licence_id, "1.2.156.3005.2.11100000000013338w032.11220000013544541J.2430599.001.F",
        "licence identifier", "licence type code: character 18 is 'w', expected 0-9 or A-Z");

    /* serial: 1..32 of 0-9 A-Z a-z */
    nok(tb_validate_licence_id, "1.2.156.3005.2.11100000000013338W032.11220000013544541J..001.F",
        "licence identifier", "serial has 0 characters");
    nok(tb_validate_licence_id, "1.2.156.3005.2.11100000000013338W032.11220000013544541J.000000000000000000000000000000000.001.F",
        "licence identifier", "serial has 33 characters");
    nok(tb_validate_licence_id, "1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430-599.001.F",
        "licence identifier", "serial: character 5 is '-', expected 0-9, A-Z or a-z");

    /* check character function: malformed input gives 0 */
    CHECK(tb_licence_id_check_char(NULL) == 0);
    CHECK(tb_licence_id_check_char("") == 0);
    CHECK(tb_licence_id_check_char(EXAMPLE) == 0);                  /* has its check already */
    CHECK(tb_licence_id_check_char(EXAMPLE_BODY ".") == 0);
    CHECK(tb_licence_id_check_char("1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599") == 0);
}

/* ---- region, date, item code, holder ---- */

static void test_region(void)
{
    static const char *prov[] = {"11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33",
                                 "34", "35", "36", "37", "41", "42", "43", "44", "45", "46", "50",
                                 "51", "52", "53", "54", "61", "62", "63", "64", "65", "66"};
    char code[16];
    CHECK(sizeof prov / sizeof *prov == 32);
    for (size_t i = 0; i < sizeof prov / sizeof *prov; i++) {
        snprintf(code, sizeof code, "%s0000", prov[i]);
        ok(tb_validate_region, code);
        snprintf(code, sizeof code, "%s0102", prov[i]);
        ok(tb_validate_region, code);
    }
    int accepted = 0;   /* exactly the 32 prefixes, nothing else */
    for (int p = 0; p < 100; p++) {
        snprintf(code, sizeof code, "%02d0000", p);
        accepted += tb_validate_region(code, NULL, 0) == TB_OK;
    }
    CHECK(accepted == 32);
    ok(tb_validate_region, "659001");
    nok(tb_validate_region, "000000", "region", "000000: 00 is not a provincial-level prefix");
    nok(tb_validate_region, "670000", "region", "67 is not a provincial-level prefix");
    nok(tb_validate_region, "710000", "region", "71 is not");
    nok(tb_validate_region, "100000", "region", "10 is not");
    nok(tb_validate_region, "999999", "region", "99 is not");
    nok(tb_validate_region, "11000", "region", "length is 5, expected 6 digits");
    nok(tb_validate_region, "1100000", "region", "length is 7");
    nok(tb_validate_region, "", "region", "length is 0");
    nok(tb_validate_region, "11000A", "region", "character 6 is 'A', expected a digit");
    nok(tb_validate_region, "-11000", "region", "character 1 is '-'");
    nok(tb_validate_region, NULL, "region", "missing");
}

static void test_date(void)
{
    ok(tb_validate_date, "2024-02-29");
    ok(tb_validate_date, "2000-02-29");
    ok(tb_validate_date, "1900-01-01");
    ok(tb_validate_date, "2199-12-31");
    ok(tb_validate_date, "2023-12-31");
    ok(tb_validate_date, "2023-04-30");
    nok(tb_validate_date, "2023-02-29", "date", "day 29 does not exist in 2023-02 (not a leap year)");
    nok(tb_validate_date, "1900-02-29", "date", "not a leap year");
    nok(tb_validate_date, "2100-02-29", "date", "not a leap year");
    nok(tb_validate_date, "2024-02-30", "date", "day 30 does not exist in 2024-02");
    nok(tb_validate_date, "2023-04-31", "date", "day 31 does not exist in 2023-04");
    nok(tb_validate_date, "2023-01-00", "date", "day 00 does not exist");
    nok(tb_validate_date, "2023-13-01", "date", "month 13 does not exist");
    nok(tb_validate_date, "2023-00-01", "date", "month 00 does not exist");
    nok(tb_validate_date, "1899-12-31", "date", "year 1899 is outside 1900..2199");
    nok(tb_validate_date, "2200-01-01", "date", "year 2200 is outside");
    nok(tb_validate_date, "0000-01-01", "date", "year 0000 is outside");
    nok(tb_validate_date, "2024-4-01", "date", "length is 9, expected YYYY-MM-DD");
    nok(tb_validate_date, "20240401", "date", "length is 8");
    nok(tb_validate_date, "2024-04-01T00:00:00Z", "date", "length is 20");
    nok(tb_validate_date, "2024/04/01", "date", "character 5 is '/', expected '-'");
    nok(tb_validate_date, "2024-0A-01", "date", "character 7 is 'A', expected a digit");
    nok(tb_validate_date, "", "date", "length is 0");
    nok(tb_validate_date, NULL, "date", "missing");
}

static void test_item_code(void)
{
    char code[64];
    ok(tb_validate_item_code, "11100000000013338W032");
    ok(tb_validate_item_code, "a");
    ok(tb_validate_item_code, "000-ABC-xyz-1");
    memset(code, 'A', 50);
    code[50] = '\0';
    ok(tb_validate_item_code, code);
    code[50] = '1';
    code[51] = '\0';
    nok(tb_validate_item_code, code, "item code", "length is 51, at most 50");
    nok(tb_validate_item_code, "", "item code", "is empty");
    nok(tb_validate_item_code, NULL, "item code", "missing");
    nok(tb_validate_item_code, "ab c", "item code", "character 3 is a space, expected 0-9, A-Z, a-z or '-'");
    nok(tb_validate_item_code, "abc_d", "item code", "character 4 is '_'");
    nok(tb_validate_item_code, "a.b", "item code", "character 2 is '.'");
    nok(tb_validate_item_code, "\xe4\xba\x8b", "item code", "character 1 is byte 0xE4");
    nok(tb_validate_item_code, "ab\n", "item code", "character 3 is byte 0x0A");
}

static void test_holder(void)
{
    char why[256];
    CHECK(tb_validate_holder("111", "11010519491231002X", why, sizeof why) == TB_OK && why[0] == '\0');
    CHECK(tb_validate_holder("001", "91350100M000100Y43", why, sizeof why) == TB_OK && why[0] == '\0');
    CHECK(tb_validate_holder("111", "91350100M000100Y43", why, sizeof why) == TB_ERR_INVALID);
    CHECK_MSG(has(why, "citizen ID: character 9 is 'M'"), "%s", why);
    CHECK(tb_validate_holder("001", "11010519491231002X", why, sizeof why) == TB_ERR_INVALID);
    CHECK_MSG(has(why, "unified social credit code: check character is X, expected"), "%s", why);
    CHECK(tb_validate_holder("111", "110105194912310021", why, sizeof why) == TB_ERR_INVALID);
    CHECK_MSG(has(why, "citizen ID: check character is 1, expected X"), "%s", why);
    CHECK(tb_validate_holder("111", NULL, why, sizeof why) == TB_ERR_INVALID);
    CHECK_MSG(has(why, "citizen ID: missing"), "%s", why);
    CHECK(tb_validate_holder("002", "91350100M000100Y43", why, sizeof why) == TB_ERR_INVALID);
    CHECK_MSG(has(why, "holder code type \"002\" is not supported (111 citizen ID, 001 unified social credit code)"),
              "%s", why);
    CHECK(tb_validate_holder("11", "11010519491231002X", why, sizeof why) == TB_ERR_INVALID);
    CHECK(tb_validate_holder("1111", "11010519491231002X", why, sizeof why) == TB_ERR_INVALID);
    CHECK(tb_validate_holder("", "11010519491231002X", why, sizeof why) == TB_ERR_INVALID);
    CHECK_MSG(has(why, "holder code type \"\" is not supported"), "%s", why);
    CHECK(tb_validate_holder(NULL, "11010519491231002X", why, sizeof why) == TB_ERR_INVALID);
    CHECK_MSG(has(why, "holder code type: missing"), "%s", why);
    /* an odd type is quoted on one line, cut after 16 characters */
    CHECK(tb_validate_holder("1\n\"2\\", "x", why, sizeof why) == TB_ERR_INVALID);
    CHECK_MSG(has(why, "\"1\\x0A\\x22" "2\\x5C\"") && !strchr(why, '\n'), "%s", why);
    CHECK(tb_validate_holder("abcdefghijklmnopqrstuvwxyz", "x", why, sizeof why) == TB_ERR_INVALID);
    CHECK_MSG(has(why, "\"abcdefghijklmnop...\""), "%s", why);
    CHECK(tb_validate_holder("002", "x", NULL, 0) == TB_ERR_INVALID);
    CHECK(tb_validate_holder(NULL, "x", NULL, 0) == TB_ERR_INVALID);
}

int main(void)
{
    test_citizen_id();
    test_uscc();
    test_licence_id();
    test_region();
    test_date();
    test_item_code();
    test_holder();
    return tbtest_done("test_validate");
}
