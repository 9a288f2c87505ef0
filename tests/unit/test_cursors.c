/* test_cursors.c -- delivery cursors: round trip, atomic replace, damage detection, missing file. */
#include "tbtest.h"

#include "cursors.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Reads a whole file as a NUL-terminated string. Returns it (malloc'ed) or NULL. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b) b[n] = '\0';
    fclose(f);
    return b;
}

/* Writes s to path. Returns 0 or -1. */
static int spit(const char *path, const char *s)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t n = strlen(s), w = fwrite(s, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

/* Opens path expecting success. Returns the set or NULL. */
static cursors_t *copen(const char *path)
{
    cursors_t *c = NULL;
    char err[512] = "";
    tb_err_t rc = cursors_open(path, &c, err, sizeof err);
    CHECK_MSG(rc == TB_OK && c, "cursors_open: %s", err);
    return c;
}

/* Opens path expecting TB_ERR_PROTO with err containing the path and needle. */
static void expect_damaged(const char *path, const char *needle)
{
    cursors_t *c = NULL;
    char err[512] = "";
    tb_err_t rc = cursors_open(path, &c, err, sizeof err);
    CHECK_MSG(rc == TB_ERR_PROTO, "got %s (%s)", tb_strerror(rc), err);
    CHECK(c == NULL);
    CHECK_MSG(strstr(err, path) && strstr(err, needle), "error \"%s\" lacks \"%s\"", err, needle);
    cursors_destroy(&c);
}

static void test_missing_and_roundtrip(const char *dir)
{
    char path[600], err[512];
    snprintf(path, sizeof path, "%s/cursors", dir);
    cursors_t *c = copen(path);
    if (!c) return;
    CHECK(cursors_count(c) == 0 && cursors_get(c, "110000") == 0 && !cursors_dirty(c));
    CHECK(cursors_save(c, err, sizeof err) == TB_OK);
    CHECK(access(path, F_OK) != 0);   /* nothing to save: no file written */

    char id[32];
    for (int i = 0; i < 72; i++) {
        snprintf(id, sizeof id, "%d", 110000 + i * 10000);
        CHECK(cursors_set(c, id, (uint64_t)i * 1000 + 7) == TB_OK);
    }
    CHECK(cursors_set(c, "topic:licences/320000", UINT64_MAX) == TB_OK);
    CHECK(cursors_set(c, "110000", 5) == TB_OK);   /* overwrite */
    CHECK(cursors_set(c, "bad id", 1) == TB_ERR_INVALID);
    CHECK(cursors_set(c, "", 1) == TB_ERR_INVALID);
    CHECK(cursors_set(c, "tab\tid", 1) == TB_ERR_INVALID);
    CHECK(cursors_count(c) == 73 && cursors_dirty(c));
    CHECK(cursors_save(c, err, sizeof err) == TB_OK);
    CHECK(!cursors_dirty(c));
    cursors_destroy(&c);
    CHECK(c == NULL);
    cursors_destroy(&c);   /* NULL-safe */

    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);

    c = copen(path);
    if (!c) return;
    CHECK(cursors_count(c) == 73 && !cursors_dirty(c));
    CHECK(cursors_get(c, "110000") == 5);
    for (int i = 1; i < 72; i++) {
        snprintf(id, sizeof id, "%d", 110000 + i * 10000);
        CHECK(cursors_get(c, id) == (uint64_t)i * 1000 + 7);
    }
    CHECK(cursors_get(c, "topic:licences/320000") == UINT64_MAX);
    CHECK(cursors_get(c, "999999") == 0);
    const char *ids[] = { "120000", "130000", "topic:licences/320000" };
    CHECK(cursors_min(c, ids, 3) == 1007);
    const char *ids2[] = { "120000", "nobody" };
    CHECK(cursors_min(c, ids2, 2) == 0);
    CHECK(cursors_min(c, ids, 0) == 0);
    cursors_destroy(&c);
}

static void test_atomic_replace(const char *dir)
{
    char path[600], tmp[700], err[512];
    snprintf(path, sizeof path, "%s/cur2", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    cursors_t *c = copen(path);
    if (!c) return;
    CHECK(cursors_set(c, "a", 1) == TB_OK && cursors_save(c, err, sizeof err) == TB_OK);
    struct stat st1, st2;
    CHECK(stat(path, &st1) == 0);
    /* a stale temporary file from a crash in the middle of a save does not matter */
    CHECK(spit(tmp, "half a file") == 0);
    CHECK(cursors_set(c, "a", 2) == TB_OK && cursors_set(c, "b", 3) == TB_OK);
    char *before = slurp(path);
    CHECK(before && strstr(before, "a 1 "));
    CHECK(cursors_save(c, err, sizeof err) == TB_OK);
    CHECK(stat(path, &st2) == 0 && st1.st_ino != st2.st_ino);   /* renamed into place, not rewritten */
    CHECK(access(tmp, F_OK) != 0);
    char *after = slurp(path);
    CHECK(after && strncmp(after, "tongban-cursors 1\na 2 ", 22) == 0 && strstr(after, "\nb 3 ") &&
          strstr(after, "\nend 2 "));
    /* an unchanged set is not rewritten */
    CHECK(cursors_save(c, err, sizeof err) == TB_OK);
    struct stat st3;
    CHECK(stat(path, &st3) == 0 && st3.st_ino == st2.st_ino);
    cursors_destroy(&c);
    /* a save into a directory that vanished fails and keeps the set dirty */
    char gone[600];
    snprintf(gone, sizeof gone, "%s/nodir/cursors", dir);
    c = copen(gone);
    if (c) {
        CHECK(cursors_set(c, "x", 1) == TB_OK);
        CHECK(cursors_save(c, err, sizeof err) == TB_ERR_IO && strstr(err, "nodir"));
        CHECK(cursors_dirty(c));
        cursors_destroy(&c);
    }
    free(before);
    free(after);
}

static void test_damage(const char *dir)
{
    char path[600], err[512];
    snprintf(path, sizeof path, "%s/cur3", dir);
    cursors_t *c = copen(path);
    if (!c) return;
    CHECK(cursors_set(c, "110000", 12345) == TB_OK && cursors_set(c, "320000", 999) == TB_OK &&
          cursors_set(c, "440000", 77) == TB_OK);
    CHECK(cursors_save(c, err, sizeof err) == TB_OK);
    cursors_destroy(&c);
    char *good = slurp(path);
    CHECK(good != NULL);
    if (!good) return;
    char *bad = strdup(good);

    /* a digit changed in line 3 */
    char *p = strstr(bad, "320000 999");
    p[8] = '8';
    CHECK(spit(path, bad) == 0);
    expect_damaged(path, "line 3: checksum mismatch");

    /* a line lost (whole-file checksum and count) */
    strcpy(bad, good);
    p = strstr(bad, "320000 ");
    char *nl = strchr(p, '\n');
    memmove(p, nl + 1, strlen(nl + 1) + 1);
    CHECK(spit(path, bad) == 0);
    expect_damaged(path, "line 4: checksum of the file");

    /* truncated: no end line, or cut mid-line */
    strcpy(bad, good);
    *strstr(bad, "end ") = '\0';
    CHECK(spit(path, bad) == 0);
    expect_damaged(path, "no end line");
    strcpy(bad, good);
    bad[strlen(bad) - 3] = '\0';
    CHECK(spit(path, bad) == 0);
    expect_damaged(path, "line 5: truncated");

    /* wrong header, garbage line, trailing data */
    CHECK(spit(path, "tongban-cursors 2\nend 0 00000000\n") == 0);
    expect_damaged(path, "line 1:");
    strcpy(bad, good);
    p = strstr(bad, "440000");
    p[6] = 'x';
    CHECK(spit(path, bad) == 0);
    expect_damaged(path, "line 4:");
    size_t gl = strlen(good);
    char *more = malloc(gl + 16);
    memcpy(more, good, gl);
    strcpy(more + gl, "550000 1 0\n");
    CHECK(spit(path, more) == 0);
    expect_damaged(path, "line 6: data after the end line");
    free(more);

    /* an empty file is damaged too (a real save always has a header and an end line) */
    CHECK(spit(path, "") == 0);
    expect_damaged(path, "no end line");

    CHECK(spit(path, good) == 0);
    c = copen(path);
    CHECK(c && cursors_get(c, "320000") == 999 && cursors_get(c, "440000") == 77);
    cursors_destroy(&c);
    free(bad);
    free(good);
}

int main(void)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("cursors"));
    test_missing_and_roundtrip(dir);
    test_atomic_replace(dir);
    test_damage(dir);
    CHECK(cursors_open(NULL, NULL, NULL, 0) == TB_ERR_INVALID);
    tbtest_rmtree(dir);
    return tbtest_done("test_cursors");
}
