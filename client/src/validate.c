/* validate.c -- validators and check characters of the government
 * identifiers tongban carries (citizen ID, unified social credit code,
 * electronic licence identifier, region, date, service item code).
 *
 * Each identifier has a file-local checker taking (pointer, length) that
 * returns 0, or -1 with a reason (no "what" prefix) in a caller's buffer;
 * the public functions add the prefix ("citizen ID: ...") into why.
 * Pure C11: no allocation, no locale, no global state.
 */
#include <tongban/validate.h>

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

#define REASON_LEN 256   /* a reason, nested ones included */

/* A field of a dotted identifier: n bytes at p (not NUL-terminated). */
typedef struct {
    const char *p;
    size_t n;
} span_t;

/* ---- reasons ---- */

static int bad(char *r, size_t rlen, const char *fmt, ...) PRINTF_LIKE(3, 4);

/* Writes the reason into r (rlen bytes, truncated) and returns -1. */
static int bad(char *r, size_t rlen, const char *fmt, ...)
{
    if (r && rlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r, rlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Returns c shown for a message: 'c' when printable ASCII, else "byte 0xNN"
 * (buf holds at least 12 bytes). */
static const char *show(char c, char *buf, size_t len)
{
    unsigned char u = (unsigned char)c;
    if (u > 0x20 && u < 0x7f) snprintf(buf, len, "'%c'", c);
    else if (u == ' ') snprintf(buf, len, "a space");
    else snprintf(buf, len, "byte 0x%02X", (unsigned)u);
    return buf;
}

/* Turns a checker's result into the public answer: TB_OK with why = "", or
 * TB_ERR_INVALID with why = "<what>: <reason>". */
static tb_err_t verdict(int rc, const char *what, const char *reason, char *why, size_t whylen)
{
    if (rc == 0) {
        if (why && whylen) why[0] = '\0';
        return TB_OK;
    }
    if (why && whylen) snprintf(why, whylen, "%s: %s", what, reason);
    return TB_ERR_INVALID;
}

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int is_upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

static int is_lower(char c)
{
    return c >= 'a' && c <= 'z';
}

/* ---- dates ---- */

static int is_leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Returns the number of days of month m (1..12) of year y. */
static int days_in(int y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Returns the value of the n digits at s (the caller checked they are digits). */
static int digits_value(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) v = v * 10 + (s[i] - '0');
    return v;
}

/* Today's date in China (UTC+8) as y*10000 + m*100 + d, from time(); 0 if
 * the clock cannot be read. Days-to-civil conversion after H. Hinnant's
 * public-domain algorithm, so no gmtime (not thread-safe) is needed. */
static long today_utc8(void)
{
    time_t t = time(NULL);
    if (t == (time_t)-1) return 0;
    long long secs = (long long)t + 8 * 3600;
    long long z = secs / 86400;
    if (secs % 86400 < 0) z--;
    z += 719468;
    long long era = (z >= 0 ? z : z - 146096) / 146097;
    long long doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    long long mp = (5 * doy + 2) / 153;
    long long d = doy - (153 * mp + 2) / 5 + 1;
    long long m = mp < 10 ? mp + 3 : mp - 9;
    long long y = yoe + era * 400 + (m <= 2);
    return (long)(y * 10000 + m * 100 + d);
}

/* ---- regions ---- */

/* The 32 provincial-level prefixes: 31 provinces, autonomous regions and
 * municipalities, and 66 for the Xinjiang Production and Construction Corps. */
static const unsigned char provinces[] = {
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41,
    42, 43, 44, 45, 46, 50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 66,
};

/* Returns 1 if the two digits at s are a provincial-level prefix. */
static int province_ok(const char *s)
{
    int p = digits_value(s, 2);
    for (size_t i = 0; i < sizeof provinces; i++)
        if (provinces[i] == p) return 1;
    return 0;
}

#define PROVINCE_LIST "11-15, 21-23, 31-37, 41-46, 50-54, 61-66"

/* ---- citizen ID (GB 11643) ---- */

static const int cid_weights[17] = {7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2};

/* Returns the MOD 11-2 check character of the 17 digits at s. */
static char cid_check(const char *s)
{
    int sum = 0;
    for (int i = 0; i < 17; i++) sum += (s[i] - '0') * cid_weights[i];
    return "10X98765432"[sum % 11];
}

/* Checks a citizen ID; returns 0 or -1 with the reason in r. */
static int cid_reason(const char *s, char *r, size_t rlen)
{
    char c1[16];
    if (!s) return bad(r, rlen, "missing (NULL)");
    size_t n = strlen(s);
    if (n != 18) return bad(r, rlen, "length is %zu, expected 18", n);
    for (size_t i = 0; i < 17; i++)
        if (!is_digit(s[i]))
            return bad(r, rlen, "character %zu is %s, expected a digit (only the check character may be X)",
                       i + 1, show(s[i], c1, sizeof c1));
    if (s[17] == 'x')
        return bad(r, rlen, "check character is a lowercase 'x', it must be an uppercase 'X'");
    if (!is_digit(s[17]) && s[17] != 'X')
        return bad(r, rlen, "check character is %s, expected a digit or X", show(s[17], c1, sizeof c1));
    if (!province_ok(s))
        return bad(r, rlen, "area code %.6s: %.2s is not a provincial-level prefix (" PROVINCE_LIST ")", s, s);
    int y = digits_value(s + 6, 4), m = digits_value(s + 10, 2), d = digits_value(s + 12, 2);
    if (m < 1 || m > 12 || d < 1 || d > days_in(y, m))
        return bad(r, rlen, "birth date %.8s is not a real date", s + 6);
    long birth = (long)y * 10000 + m * 100 + d, today = today_utc8();
    if (birth < 19000101L) return bad(r, rlen, "birth date %.8s is before 1900-01-01", s + 6);
    if (today && birth > today) return bad(r, rlen, "birth date %.8s is in the future (today is %ld-%02ld-%02ld)", s + 6,
                   today / 10000, today / 100 % 100, today % 100);
    char want = cid_check(s);
    if (s[17] != want) return bad(r, rlen, "check character is %c, expected %c", s[17], want);
    return 0;
}

tb_err_t tb_validate_citizen_id(const char *s, char *why, size_t whylen)
{
    char r[REASON_LEN];
    return verdict(cid_reason(s, r, sizeof r), "citizen ID", r, why, whylen);
}

char tb_citizen_id_check_char(const char *first17)
{
    if (!first17) return 0;
    for (int i = 0; i < 17; i++)
        if (!is_digit(first17[i])) return 0;   /* also stops at the NUL of a short string */
    return cid_check(first17);
}

/* ---- unified social credit code (GB 32100-2015) ---- */

static const char uscc_alphabet[] = "0123456789ABCDEFGHJKLMNPQRTUWXY";
static const int uscc_weights[17] = {1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28};

/* Returns the value 0..30 of c in the USCC alphabet, or -1. */
static int uscc_value(char c)
{
    if (c == '\0') return -1;
    const char *p = strchr(uscc_alphabet, c);
    return p ? (int)(p - uscc_alphabet) : -1;
}

/* Returns the check character of the first 17 characters at s (alphabet
 * already checked). */
static char uscc_check(const char *s)
{
    int sum = 0;
    for (int i = 0; i < 17; i++) sum += uscc_value(s[i]) * uscc_weights[i];
    int c = 31 - sum % 31;
    return uscc_alphabet[c == 31 ? 0 : c];
}

/* Checks the n characters at s as a USCC: length, alphabet, area code and,
 * if with_check, the check character. Returns 0 or -1 with the reason in r. */
static int uscc_reason(const char *s, size_t n, int with_check, char *r, size_t rlen)
{
    char c1[16];
    if (!s) return bad(r, rlen, "missing (NULL)");
    if (n != 18) return bad(r, rlen, "length is %zu, expected 18", n);
    for (size_t i = 0; i < 18; i++) {
        char c = s[i];
        if (uscc_value(c) >= 0) continue;
        if (c == 'I' || c == 'O' || c == 'S' || c == 'V' || c == 'Z')
            return bad(r, rlen, "character %zu is '%c', a letter the code never uses (no I, O, S, V, Z)", i + 1, c);
        if (is_lower(c))
            return bad(r, rlen, "character %zu is lowercase '%c', letters must be uppercase", i + 1, c);
        return bad(r, rlen, "character %zu is %s, expected 0-9 or A-Z except I, O, S, V, Z",
                   i + 1, show(c, c1, sizeof c1));
    }
    for (size_t i = 2; i < 8; i++)
        if (!is_digit(s[i]))
            return bad(r, rlen, "area code (characters 3-8) must be digits, character %zu is %s",
                       i + 1, show(s[i], c1, sizeof c1));
    if (with_check) {
        char want = uscc_check(s);
        if (s[17] != want) return bad(r, rlen, "check character is %c, expected %c", s[17], want);
    }
    return 0;
}

tb_err_t tb_validate_uscc(const char *s, char *why, size_t whylen)
{
    char r[REASON_LEN];
    int rc = uscc_reason(s, s ? strlen(s) : 0, 1, r, sizeof r);
    return verdict(rc, "unified social credit code", r, why, whylen);
}

char tb_uscc_check_char(const char *first17)
{
    if (!first17) return 0;
    for (int i = 0; i < 17; i++)   /* stops at the NUL of a short string */
        if (uscc_value(first17[i]) < 0 || (i >= 2 && i < 8 && !is_digit(first17[i]))) return 0;
    return uscc_check(first17);
}

/* ---- electronic licence identifier (GB/T 36904) ----
 *
 * Check character: ISO 7064 hybrid MOD 37,36 over 0-9A-Z (values 0..35):
 * p = 36; for each character s = (p + v) mod 36, 0 -> 36, p = 2s mod 37;
 * check value = (37 - p) mod 36 (the value that brings (p + v) mod 36 to 1).
 *
 * Input variant: the four fields after the fixed 1.2.156.3005.2 prefix --
 * licence type code, issuing authority code, serial, version --
 * concatenated without their dots. This is the variant that gives DOMAIN.md's
 * example 1.2.156.3005.2.11100000000013338W032.11220000013544541J.2430599.001.F
 * its 'F' (the example is the test vector in tests/unit/test_validate.c);
 * the others tried do not: all fields with the prefix 'W', without the
 * version 'G', type + issuer 'R', issuer + serial + version '0'.
 * A lowercase letter of the serial counts as its uppercase letter (the
 * MOD 37,36 alphabet has no lowercase; the example does not settle this).
 */

#define LICENCE_PREFIX "1.2.156.3005.2."
#define LICENCE_MAX_FIELD 32

static const char m36_alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/* Returns the MOD 37,36 value of c (0..35), or -1. */
static int m36_value(char c)
{
    if (is_digit(c)) return c - '0';
    if (is_upper(c)) return c - 'A' + 10;
    if (is_lower(c)) return c - 'a' + 10;
    return -1;
}

/* Returns the check character of the nf fields f (characters checked). */
static char m37_36_check(const span_t *f, int nf)
{
    int p = 36;
    for (int k = 0; k < nf; k++)
        for (size_t i = 0; i < f[k].n; i++) {
            int s = (p + m36_value(f[k].p[i])) % 36;
            if (s == 0) s = 36;
            p = (s * 2) % 37;
        }
    return m36_alphabet[(37 - p) % 36];
}

/* Splits s at '.' into at most max fields. Returns the number of fields, or
 * max + 1 if there are more. */
static int split_dots(const char *s, span_t *f, int max)
{
    int nf = 0;
    for (;;) {
        const char *dot = strchr(s, '.');
        size_t n = dot ? (size_t)(dot - s) : strlen(s);
        if (nf == max) return max + 1;
        f[nf].p = s;
        f[nf].n = n;
        nf++;
        if (!dot) return nf;
        s = dot + 1;
    }
}

/* Checks a field of 1..LICENCE_MAX_FIELD characters, uppercase letters and
 * digits (and lowercase letters if lower_ok). Returns 0 or -1 with reason. */
static int alnum_field(const span_t *f, const char *name, int lower_ok, char *r, size_t rlen)
{
    char c1[16];
    if (f->n < 1 || f->n > LICENCE_MAX_FIELD)
        return bad(r, rlen, "%s has %zu characters, expected 1..%d", name, f->n, LICENCE_MAX_FIELD);
    for (size_t i = 0; i < f->n; i++) {
        char c = f->p[i];
        if (is_digit(c) || is_upper(c) || (lower_ok && is_lower(c))) continue;
        return bad(r, rlen, "%s: character %zu is %s, expected 0-9%s", name, i + 1,
                   show(c, c1, sizeof c1), lower_ok ? ", A-Z or a-z" : " or A-Z");
    }
    return 0;
}

/* Parses s as a licence identifier with (with_check) or without its final
 * ".<check>": prefix, field count, each field's length and alphabet, the
 * issuer as a USCC (its own check character only if with_check), then the
 * check character. Returns 0 or -1 with the reason in r. */
static int licence_reason(const char *s, int with_check, char *r, size_t rlen)
{
    char c1[16], sub[REASON_LEN];
    span_t f[5];
    int want_nf = with_check ? 5 : 4;
    if (!s) return bad(r, rlen, "missing (NULL)");
    if (strncmp(s, LICENCE_PREFIX, strlen(LICENCE_PREFIX)) != 0)
        return bad(r, rlen, "does not start with " LICENCE_PREFIX);
    int nf = split_dots(s + strlen(LICENCE_PREFIX), f, want_nf);
    if (nf != want_nf)
        return bad(r, rlen, "expected %s after " LICENCE_PREFIX ", found %s%d dot-separated fields",
                   with_check ? "5 fields (type code, issuing authority code, serial, version, check character)"
                              : "4 fields (type code, issuing authority code, serial, version)",
                   nf > want_nf ? "more than " : "", nf > want_nf ? want_nf : nf);
    if (alnum_field(&f[0], "licence type code", 0, r, rlen) != 0) return -1;
    if (uscc_reason(f[1].p, f[1].n, with_check, sub, sizeof sub) != 0)
        return bad(r, rlen, "issuing authority code is not a valid unified social credit code: %s", sub);
    if (alnum_field(&f[2], "serial", 1, r, rlen) != 0) return -1;
    if (f[3].n != 3) return bad(r, rlen, "version has %zu characters, expected 3 digits", f[3].n);
    for (size_t i = 0; i < 3; i++)
        if (!is_digit(f[3].p[i]))
            return bad(r, rlen, "version: character %zu is %s, expected a digit", i + 1,
                       show(f[3].p[i], c1, sizeof c1));
    if (!with_check) return 0;
    if (f[4].n != 1) return bad(r, rlen, "check character field has %zu characters, expected 1", f[4].n);
    char got = f[4].p[0];
    if (!is_digit(got) && !is_upper(got))
        return bad(r, rlen, "check character is %s, expected 0-9 or A-Z", show(got, c1, sizeof c1));
    char want = m37_36_check(f, 4);
    if (got != want) return bad(r, rlen, "check character is %c, expected %c", got, want);
    return 0;
}

tb_err_t tb_validate_licence_id(const char *s, char *why, size_t whylen)
{
    char r[REASON_LEN];
    return verdict(licence_reason(s, 1, r, sizeof r), "licence identifier", r, why, whylen);
}

char tb_licence_id_check_char(const char *id_without_check)
{
    span_t f[5];
    if (licence_reason(id_without_check, 0, NULL, 0) != 0) return 0;
    split_dots(id_without_check + strlen(LICENCE_PREFIX), f, 4);
    return m37_36_check(f, 4);
}

/* ---- region, date, item code ---- */

/* Checks a 6-digit administrative division code. Returns 0 or -1 with reason. */
static int region_reason(const char *s, char *r, size_t rlen)
{
    char c1[16];
    if (!s) return bad(r, rlen, "missing (NULL)");
    size_t n = strlen(s);
    if (n != 6) return bad(r, rlen, "length is %zu, expected 6 digits", n);
    for (size_t i = 0; i < 6; i++)
        if (!is_digit(s[i]))
            return bad(r, rlen, "character %zu is %s, expected a digit", i + 1, show(s[i], c1, sizeof c1));
    if (!province_ok(s))
        return bad(r, rlen, "%.6s: %.2s is not a provincial-level prefix (" PROVINCE_LIST ")", s, s);
    return 0;
}

tb_err_t tb_validate_region(const char *s, char *why, size_t whylen)
{
    char r[REASON_LEN];
    return verdict(region_reason(s, r, sizeof r), "region", r, why, whylen);
}

/* Checks a YYYY-MM-DD date, year 1900..2199. Returns 0 or -1 with reason. */
static int date_reason(const char *s, char *r, size_t rlen)
{
    char c1[16];
    if (!s) return bad(r, rlen, "missing (NULL)");
    size_t n = strlen(s);
    if (n != 10) return bad(r, rlen, "length is %zu, expected YYYY-MM-DD", n);
    for (size_t i = 0; i < 10; i++) {
        int dash = i == 4 || i == 7;
        if (dash ? s[i] != '-' : !is_digit(s[i]))
            return bad(r, rlen, "character %zu is %s, expected %s (YYYY-MM-DD)", i + 1,
                       show(s[i], c1, sizeof c1), dash ? "'-'" : "a digit");
    }
    int y = digits_value(s, 4), m = digits_value(s + 5, 2), d = digits_value(s + 8, 2);
    if (y < 1900 || y > 2199) return bad(r, rlen, "year %04d is outside 1900..2199", y);
    if (m < 1 || m > 12) return bad(r, rlen, "month %02d does not exist", m);
    if (d < 1 || d > days_in(y, m))
        return bad(r, rlen, "day %02d does not exist in %04d-%02d%s", d, y, m,
                   m == 2 && d == 29 ? " (not a leap year)" : "");
    return 0;
}

tb_err_t tb_validate_date(const char *s, char *why, size_t whylen)
{
    char r[REASON_LEN];
    return verdict(date_reason(s, r, sizeof r), "date", r, why, whylen);
}

#define ITEM_CODE_MAX 50

/* Checks a service item code. Returns 0 or -1 with reason. */
static int item_reason(const char *s, char *r, size_t rlen)
{
    char c1[16];
    if (!s) return bad(r, rlen, "missing (NULL)");
    size_t n = strlen(s);
    if (n == 0) return bad(r, rlen, "is empty");
    if (n > ITEM_CODE_MAX) return bad(r, rlen, "length is %zu, at most %d", n, ITEM_CODE_MAX);
    for (size_t i = 0; i < n; i++)
        if (!is_digit(s[i]) && !is_upper(s[i]) && !is_lower(s[i]) && s[i] != '-')
            return bad(r, rlen, "character %zu is %s, expected 0-9, A-Z, a-z or '-'", i + 1,
                       show(s[i], c1, sizeof c1));
    return 0;
}

tb_err_t tb_validate_item_code(const char *s, char *why, size_t whylen)
{
    char r[REASON_LEN];
    return verdict(item_reason(s, r, sizeof r), "item code", r, why, whylen);
}

/* ---- holder code by type ---- */

/* Copies s into buf as a short printable quote: at most 16 characters,
 * others as \xNN, "..." when cut. Returns buf. */
static const char *quote(const char *s, char *buf, size_t len)
{
    size_t o = 0;
    int i = 0;
    buf[o++] = '"';
    for (; s[i] && i < 16 && o + 8 < len; i++) {
        unsigned char u = (unsigned char)s[i];
        if (u >= 0x20 && u < 0x7f && u != '"' && u != '\\') buf[o++] = (char)u;
        else o += (size_t)snprintf(buf + o, len - o, "\\x%02X", (unsigned)u);
    }
    if (s[i] && o + 5 < len) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o++] = '"';
    buf[o] = '\0';
    return buf;
}

tb_err_t tb_validate_holder(const char *code_type, const char *code, char *why, size_t whylen)
{
    char q[96];
    if (!code_type) return verdict(-1, "holder code type", "missing (NULL)", why, whylen);
    if (strcmp(code_type, "111") == 0) return tb_validate_citizen_id(code, why, whylen);
    if (strcmp(code_type, "001") == 0) return tb_validate_uscc(code, why, whylen);
    if (why && whylen)
        snprintf(why, whylen, "holder code type %s is not supported (111 citizen ID, 001 unified social credit code)",
                 quote(code_type, q, sizeof q));
    return TB_ERR_INVALID;
}
