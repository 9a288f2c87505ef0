/* test_journal.c -- the hub journal: format, append/sync/read, recovery (torn
 * tail vs damage), hash chain, segment rolling, gc with anchor, disk full,
 * and a quick throughput measurement (skipped when TB_SKIP_PERF is set). */
#include "tbtest.h"

#include "journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#define SEG_HDR 24
#define FRAME 8
#define BODY_FIXED 64

/* ---- independent reference implementations ---- */

/* Returns the CRC32C of p[0..n), bit by bit (reflected polynomial 0x82F63B78). */
static uint32_t crc32c_ref(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

/* Writes SHA-256(p[0..n)) into out. Returns nothing. */
static void sha256(const uint8_t *p, size_t n, uint8_t out[32])
{
    unsigned int len = 0;
    CHECK(EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) == 1 && len == 32);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }

/* ---- helpers ---- */

/* Fills buf with len pseudo-random bytes determined by seed. Returns buf. */
static uint8_t *fill(uint8_t *buf, size_t len, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf[i] = (uint8_t)x;
    }
    return buf;
}

/* Returns the monotonic clock in seconds. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Returns the wall clock in ms. */
static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Reads a whole file. Returns a malloc'ed buffer (len in *len) or NULL. */
static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* Writes len bytes to path (replacing it). Returns 0 or -1. */
static int spit(const char *path, const uint8_t *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(b, 1, len, f);
    return fclose(f) == 0 && w == len ? 0 : -1;
}

/* Returns the size of path, or -1. */
static long long fsize(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* Returns 1 if path exists. */
static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* XORs the byte at off of path with x. Returns 0 or -1. */
static int flip(const char *path, long long off, uint8_t x)
{
    int fd = open(path, O_RDWR);
    uint8_t b = 0;
    int ok = fd >= 0 && pread(fd, &b, 1, off) == 1;
    b ^= x;
    ok = ok && pwrite(fd, &b, 1, off) == 1;
    if (fd >= 0) close(fd);
    return ok ? 0 : -1;
}

/* Writes the path of the segment starting at first into buf. Returns buf. */
static char *segfile(char *buf, size_t len, const char *dir, uint64_t first)
{
    snprintf(buf, len, "%s/%020" PRIu64 ".tbj", dir, first);
    return buf;
}

/* Lists the first hub_seq of every segment file in dir (sorted). Returns the count. */
static size_t list_segs(const char *dir, uint64_t *out, size_t max)
{
    size_t n = 0;
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l == 24 && strcmp(de->d_name + 20, ".tbj") == 0 && n < max) out[n++] = strtoull(de->d_name, NULL, 10);
    }
    if (d) closedir(d);
    for (size_t i = 1; i < n; i++)
        for (size_t k = i; k > 0 && out[k - 1] > out[k]; k--) {
            uint64_t t = out[k];
            out[k] = out[k - 1];
            out[k - 1] = t;
        }
    return n;
}

/* Walks the records of a segment file: offsets into offs. Returns the count. */
static size_t rec_offsets(const char *path, long long *offs, size_t max)
{
    size_t len = 0, n = 0;
    uint8_t *b = slurp(path, &len);
    if (!b) return 0;
    size_t off = SEG_HDR;
    while (off + FRAME <= len && n < max) {
        uint32_t l = rd32(b + off);
        if (off + FRAME + l > len) break;
        offs[n++] = (long long)off;
        off += FRAME + l;
    }
    free(b);
    return n;
}

/* Opens dir with segment size segbytes (0 = default) and chain verification. Returns the journal or NULL. */
static journal_t *jopen(const char *dir, uint64_t segbytes, journal_report_t *rep)
{
    journal_opts_t o;
    journal_t *j = NULL;
    char err[1024] = "";
    journal_opts_init(&o);
    o.segment_bytes = segbytes;
    tb_err_t rc = journal_open(dir, &o, &j, rep, err, sizeof err);
    CHECK_MSG(rc == TB_OK, "journal_open(%s): %s: %s", dir, tb_strerror(rc), err);
    return j;
}

/* Appends a record with a batch of len bytes derived from seed. Returns the hub_seq (0 on failure). */
static uint64_t put(journal_t *j, const char *sender, uint64_t sseq, const char *dest, size_t len, uint64_t seed)
{
    uint8_t *b = malloc(len ? len : 1);
    uint64_t hs = 0;
    char err[1024] = "";
    fill(b, len, seed);
    tb_err_t rc = journal_append(j, sender, sseq, dest, b, len, &hs, err, sizeof err);
    CHECK_MSG(rc == TB_OK, "append: %s: %s", tb_strerror(rc), err);
    free(b);
    return rc == TB_OK ? hs : 0;
}

/* Syncs j and checks it worked. Returns nothing. */
static void jsync(journal_t *j)
{
    char err[1024] = "";
    tb_err_t rc = journal_sync(j, err, sizeof err);
    CHECK_MSG(rc == TB_OK, "sync: %s", err);
}

/* Returns 1 if rec's batch is len bytes derived from seed. */
static int batch_is(const jrec_t *rec, size_t len, uint64_t seed)
{
    if (rec->batch_len != len) return 0;
    uint8_t *b = malloc(len ? len : 1);
    fill(b, len, seed);
    int ok = memcmp(b, rec->batch, len) == 0;
    free(b);
    return ok;
}

/* Tries to open dir; expects failure with code want and err containing each of the NULL-terminated needles. */
static void expect_open_fails(const char *dir, int verify, tb_err_t want, ...)
{
    journal_opts_t o;
    journal_t *j = NULL;
    char err[1024] = "";
    va_list ap;
    journal_opts_init(&o);
    o.verify_chain = verify;
    tb_err_t rc = journal_open(dir, &o, &j, NULL, err, sizeof err);
    CHECK_MSG(rc == want, "open %s: got %s (%s), want %s", dir, tb_strerror(rc), err, tb_strerror(want));
    CHECK(j == NULL);
    va_start(ap, want);
    const char *needle;
    while ((needle = va_arg(ap, const char *)) != NULL)
        CHECK_MSG(strstr(err, needle) != NULL, "error \"%s\" lacks \"%s\"", err, needle);
    va_end(ap);
    journal_destroy(&j);
}

/* Reads every durable record after after_seq; returns how many, checking hub_seq continuity. */
static uint64_t count_all(journal_t *j, uint64_t after_seq)
{
    journal_reader_t *r = NULL;
    char err[1024] = "";
    uint64_t n = 0, expect = after_seq + 1;
    tb_err_t rc = journal_reader_new(j, after_seq, &r, err, sizeof err);
    CHECK_MSG(rc == TB_OK, "reader_new: %s", err);
    for (;;) {
        jrec_t rec;
        int got = 0;
        if (!r || journal_reader_next(r, NULL, NULL, &rec, &got, err, sizeof err) != TB_OK) {
            CHECK_MSG(0, "reader_next: %s", err);
            break;
        }
        if (!got) break;
        CHECK(rec.hub_seq == expect);
        expect++;
        n++;
    }
    journal_reader_destroy(&r);
    return n;
}

/* ---- tests ---- */

static void test_crc_reference(void)
{
    CHECK(crc32c_ref((const uint8_t *)"123456789", 9) == 0xE3069283u);
}

/* The bytes on disk are exactly the documented format. */
static void test_format(void)
{
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("jfmt"));
    int64_t t0 = wall_ms();
    journal_t *j = jopen(dir, 0, NULL);
    if (!j) return;
    uint8_t big[1000];
    uint64_t hs = 0;
    CHECK(journal_append(j, "110000", 7, "320000", (const uint8_t *)"hello", 5, &hs, NULL, 0) == TB_OK && hs == 1);
    CHECK(journal_append(j, "110000", 8, "topic:licences", fill(big, sizeof big, 3), sizeof big, &hs, NULL, 0)
          == TB_OK && hs == 2);
    jsync(j);
    journal_destroy(&j);
    CHECK(j == NULL);
    int64_t t1 = wall_ms();

    size_t len = 0;
    uint8_t *b = slurp(segfile(path, sizeof path, dir, 1), &len);
    CHECK(b != NULL);
    if (!b) return;
    size_t r1 = FRAME + BODY_FIXED + 6 + 6 + 5, r2 = FRAME + BODY_FIXED + 6 + 14 + 1000;
    CHECK(len == SEG_HDR + r1 + r2);
    CHECK(memcmp(b, "TBJ1", 4) == 0 && rd32(b + 4) == 1 && rd64(b + 8) == 1 && rd32(b + 16) == 0);
    CHECK(rd32(b + 20) == crc32c_ref(b, 20));
    const uint8_t *f = b + SEG_HDR, *body = f + FRAME;
    CHECK(rd32(f) == r1 - FRAME);
    CHECK(rd32(f + 4) == crc32c_ref(body, r1 - FRAME));
    CHECK(rd64(body) == 1);
    CHECK((int64_t)rd64(body + 8) >= t0 && (int64_t)rd64(body + 8) <= t1);
    static const uint8_t zeros[32];
    CHECK(memcmp(body + 16, zeros, 32) == 0);
    CHECK(body[48] == 6 && body[49] == 0 && memcmp(body + 50, "110000", 6) == 0);
    CHECK(rd64(body + 56) == 7);
    CHECK(body[64] == 6 && memcmp(body + 66, "320000", 6) == 0);
    CHECK(rd32(body + 72) == 5 && memcmp(body + 76, "hello", 5) == 0);
    uint8_t h1[32];
    sha256(body, r1 - FRAME, h1);
    const uint8_t *f2 = f + r1, *body2 = f2 + FRAME;
    CHECK(rd32(f2 + 4) == crc32c_ref(body2, r2 - FRAME));
    CHECK(rd64(body2) == 2);
    CHECK(memcmp(body2 + 16, h1, 32) == 0);
    CHECK(memcmp(body2 + 76 + 8, big, sizeof big) == 0);
    free(b);
    tbtest_rmtree(dir);
}

/* Exact bytes back, sizes from 0 to 300 kB; reader positions and limits. */
static void test_roundtrip(void)
{
    char dir[512], err[1024];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("jrt"));
    journal_t *j = jopen(dir, 0, NULL);
    if (!j) return;
    size_t sizes[50];
    for (int i = 0; i < 50; i++) {
        sizes[i] = i == 0 ? 0 : i == 17 ? 300000 : (size_t)(i * 37 % 2000);
        char sender[16], dest[32];
        snprintf(sender, sizeof sender, "%d", 110000 + i % 3);
        snprintf(dest, sizeof dest, i % 2 ? "topic:t%d" : "n%d", i % 5);
        CHECK(put(j, sender, 1000 + (uint64_t)i, dest, sizes[i], (uint64_t)i) == (uint64_t)i + 1);
    }
    jsync(j);
    CHECK(journal_last_seq(j) == 50 && journal_durable_seq(j) == 50);
    journal_reader_t *r = NULL;
    CHECK(journal_reader_new(j, 0, &r, err, sizeof err) == TB_OK);
    for (int i = 0; i < 50 && r; i++) {
        jrec_t rec;
        int got = 0;
        CHECK(journal_reader_next(r, NULL, NULL, &rec, &got, err, sizeof err) == TB_OK && got == 1);
        if (!got) break;
        char sender[16], dest[32];
        snprintf(sender, sizeof sender, "%d", 110000 + i % 3);
        snprintf(dest, sizeof dest, i % 2 ? "topic:t%d" : "n%d", i % 5);
        CHECK(rec.hub_seq == (uint64_t)i + 1);
        CHECK(strcmp(rec.sender, sender) == 0 && strcmp(rec.dest, dest) == 0);
        CHECK(rec.sender_seq == 1000 + (uint64_t)i);
        CHECK(batch_is(&rec, sizes[i], (uint64_t)i));
        CHECK(journal_reader_pos(r) == (uint64_t)i + 1);
    }
    jrec_t rec;
    int got = 1;
    CHECK(r && journal_reader_next(r, NULL, NULL, &rec, &got, err, sizeof err) == TB_OK && got == 0);
    journal_reader_destroy(&r);
    CHECK(r == NULL);
    /* start in the middle, at the end, past the end */
    CHECK(journal_reader_new(j, 25, &r, err, sizeof err) == TB_OK);
    CHECK(r && journal_reader_next(r, NULL, NULL, &rec, &got, err, sizeof err) == TB_OK && got && rec.hub_seq == 26);
    journal_reader_destroy(&r);
    CHECK(journal_reader_new(j, 50, &r, err, sizeof err) == TB_OK);
    CHECK(r && journal_reader_next(r, NULL, NULL, &rec, &got, err, sizeof err) == TB_OK && got == 0);
    journal_reader_destroy(&r);
    CHECK(journal_reader_new(j, 51, &r, err, sizeof err) == TB_ERR_INVALID && r == NULL);
    journal_destroy(&j);
    journal_destroy(&j);  /* NULL-safe */
    tbtest_rmtree(dir);
}

/* Readers see only synced records. */
static void test_unsynced_invisible(void)
{
    char dir[512], err[1024];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("junsync"));
    journal_t *j = jopen(dir, 0, NULL);
    if (!j) return;
    for (int i = 0; i < 5; i++) put(j, "a", (uint64_t)i, "b", 100, (uint64_t)i);
    jsync(j);
    for (int i = 5; i < 8; i++) put(j, "a", (uint64_t)i, "b", 100, (uint64_t)i);
    CHECK(journal_last_seq(j) == 8 && journal_durable_seq(j) == 5);
    journal_reader_t *r = NULL;
    CHECK(journal_reader_new(j, 0, &r, err, sizeof err) == TB_OK);
    jrec_t rec;
    int got, n = 0;
    while (r && journal_reader_next(r, NULL, NULL, &rec, &got, err, sizeof err) == TB_OK && got) n++;
    CHECK(n == 5);
    CHECK(journal_reader_pos(r) == 5);
    jsync(j);
    CHECK(journal_durable_seq(j) == 8);
    while (r && journal_reader_next(r, NULL, NULL, &rec, &got, err, sizeof err) == TB_OK && got) {
        n++;
        CHECK(rec.hub_seq == (uint64_t)n && batch_is(&rec, 100, (uint64_t)n - 1));
    }
    CHECK(n == 8);
    journal_reader_destroy(&r);
    journal_destroy(&j);
    tbtest_rmtree(dir);
}

typedef struct {
    const char *want;
    int calls;
} filt_t;

/* Filter: wants dest == f->want; counts calls. Returns 1 to read the record. */
static int want_dest(void *arg, const char *dest)
{
    filt_t *f = arg;
    f->calls++;
    return strcmp(dest, f->want) == 0;
}

/* A filtered reader does not read the batch bytes of the records it skips. */
static void test_filter_skips(void)
{
    char dir[512], err[1024];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("jfilt"));
    journal_t *j = jopen(dir, 0, NULL);
    if (!j) return;
    for (int i = 0; i < 20; i++)
        put(j, "s", (uint64_t)i, i % 2 ? "B" : "A", i % 2 ? 65536 : 100, (uint64_t)i);
    jsync(j);
    uint64_t before = journal_read_bytes(j);
    filt_t f = { "A", 0 };
    journal_reader_t *r = NULL;
    CHECK(journal_reader_new(j, 0, &r, err, sizeof err) == TB_OK);
    jrec_t rec;
    int got, n = 0;
    while (r && journal_reader_next(r, want_dest, &f, &rec, &got, err, sizeof err) == TB_OK && got) {
        CHECK(strcmp(rec.dest, "A") == 0);
        CHECK(rec.hub_seq == (uint64_t)(2 * n + 1));
        CHECK(batch_is(&rec, 100, (uint64_t)(2 * n)));
        n++;
    }
    CHECK(n == 10);
    CHECK(f.calls == 20);
    CHECK(journal_reader_pos(r) == 20);
    uint64_t used = journal_read_bytes(j) - before;
    /* one head read of at most 582 bytes per record (the A records fit in it); the 640 kB of B is never read */
    CHECK_MSG(used <= 20 * 582, "read %" PRIu64 " bytes", used);
    journal_reader_destroy(&r);
    /* and the other destination gets its big batches */
    f.want = "B";
    f.calls = 0;
    before = journal_read_bytes(j);
    CHECK(journal_reader_new(j, 0, &r, err, sizeof err) == TB_OK);
    n = 0;
    while (r && journal_reader_next(r, want_dest, &f, &rec, &got, err, sizeof err) == TB_OK && got) {
        CHECK(batch_is(&rec, 65536, (uint64_t)(2 * n + 1)));
        n++;
    }
    CHECK(n == 10);
    CHECK(journal_read_bytes(j) - before >= 10 * 65536);
    journal_reader_destroy(&r);
    journal_destroy(&j);
    tbtest_rmtree(dir);
}

/* Segments roll at segment_bytes, are named by their first hub_seq, and readers start anywhere. */
static void test_rolling(void)
{
    char dir[512], path[600], err[1024];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("jroll"));
    journal_t *j = jopen(dir, 8192, NULL);
    if (!j) return;
    for (int i = 0; i < 40; i++) put(j, "s", (uint64_t)i, "d", 1000, (uint64_t)i);
    uint64_t big = put(j, "s", 40, "d", 20000, 40);   /* larger than a segment: alone in one */
    put(j, "s", 41, "d", 1000, 41);
    jsync(j);
    uint64_t firsts[64];
    size_t n = list_segs(dir, firsts, 64);
    CHECK(n == journal_segments(j));
    CHECK(n >= 7);
    long long total = 0;
    for (size_t i = 0; i < n; i++) {
        long long offs[64];
        segfile(path, sizeof path, dir, firsts[i]);
        long long sz = fsize(path);
        total += sz;
        size_t nr = rec_offsets(path, offs, 64);
        CHECK(nr >= 1);
        size_t len = 0;
        uint8_t *b = slurp(path, &len);
        CHECK(b && rd64(b + offs[0] + FRAME) == firsts[i]);   /* named after its first record */
        free(b);
        if (firsts[i] == big) CHECK(nr == 1 && sz > 8192);
        else CHECK_MSG(sz <= 8192, "%s is %lld bytes", path, sz);
    }
    CHECK((uint64_t)total == journal_bytes(j));
    CHECK(firsts[0] == 1 && firsts[n - 1] == 42);
    /* a reader can start after any record */
    for (uint64_t after = 0; after <= 42; after++) {
        journal_reader_t *r = NULL;
        jrec_t rec;
        int got = 0;
        CHECK(journal_reader_new(j, after, &r, err, sizeof err) == TB_OK);
        CHECK(r && journal_reader_next(r, NULL, NULL, &rec, &got, err, sizeof err) == TB_OK);
        size_t blen = after + 1 == big ? 20000 : 1000;
        if (after < 42) CHECK_MSG(got && rec.hub_seq == after + 1 && batch_is(&rec, blen, after),
                                  "after %" PRIu64, after);
        else CHECK(!got);
        journal_reader_destroy(&r);
    }
    CHECK(count_all(j, 0) == 42);
    journal_destroy(&j);
    journal_report_t rep;
    j = jopen(dir, 8192, &rep);
    CHECK(rep.segments == n && rep.records == 42 && rep.bytes == (uint64_t)total);
    CHECK(count_all(j, 0) == 42);
    journal_destroy(&j);
    tbtest_rmtree(dir);
}

typedef struct {
    int n;
    uint64_t seq[64];
    char sender[64][16], dest[64][16];
    uint64_t sseq[64];
    int batch_ok[64];
} seen_t;

/* on_record callback: remembers what it saw. */
static void on_rec(void *arg, const jrec_t *rec)
{
    seen_t *s = arg;
    if (s->n >= 64) return;
    s->seq[s->n] = rec->hub_seq;
    snprintf(s->sender[s->n], 16, "%s", rec->sender);
    snprintf(s->dest[s->n], 16, "%s", rec->dest);
    s->sseq[s->n] = rec->sender_seq;
    s->batch_ok[s->n] = batch_is(rec, 300 + rec->hub_seq, rec->hub_seq);
    s->n++;
}

/* Reopening rebuilds the state, reports every record in order, and hub_seq continues. */
static void test_reopen(void)
{
    char dir[512], err[1024];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("jreopen"));
    journal_t *j = jopen(dir, 4096, NULL);
    if (!j) return;
    for (uint64_t i = 1; i <= 30; i++) {
        char s[8], d[8];
        snprintf(s, sizeof s, "s%d", (int)(i % 3));
        snprintf(d, sizeof d, "d%d", (int)(i % 4));
        CHECK(put(j, s, i * 10, d, 300 + i, i) == i);
    }
    size_t nseg = journal_segments(j);
    CHECK(nseg >= 3);
    journal_destroy(&j);   /* syncs */

    seen_t seen;
    memset(&seen, 0, sizeof seen);
    journal_opts_t o;
    journal_opts_init(&o);
    o.segment_bytes = 4096;
    o.on_record = on_rec;
    o.arg = &seen;
    journal_report_t rep;
    CHECK(journal_open(dir, &o, &j, &rep, err, sizeof err) == TB_OK);
    CHECK(seen.n == 30);
    for (int i = 0; i < seen.n; i++) {
        char s[8], d[8];
        snprintf(s, sizeof s, "s%d", (i + 1) % 3);
        snprintf(d, sizeof d, "d%d", (i + 1) % 4);
        CHECK(seen.seq[i] == (uint64_t)i + 1);
        CHECK(strcmp(seen.sender[i], s) == 0 && strcmp(seen.dest[i], d) == 0);
        CHECK(seen.sseq[i] == (uint64_t)(i + 1) * 10 && seen.batch_ok[i]);
    }
    CHECK(rep.records == 30 && rep.first_seq == 1 && rep.last_seq == 30 && rep.truncated_bytes == 0);
    CHECK(rep.segments == nseg && journal_segments(j) == nseg);
    CHECK(journal_last_seq(j) == 30 && journal_durable_seq(j) == 30);
    CHECK(put(j, "s1", 310, "d3", 331, 31) == 31);
    journal_destroy(&j);

    /* without chain verification at open the chain still continues correctly */
    memset(&seen, 0, sizeof seen);
    o.verify_chain = 0;
    CHECK(journal_open(dir, &o, &j, &rep, err, sizeof err) == TB_OK);
    CHECK(seen.n == 31 && rep.last_seq == 31);
    CHECK(put(j, "s2", 320, "d0", 332, 32) == 32);
    journal_destroy(&j);
    j = jopen(dir, 4096, &rep);   /* verifies the whole chain */
    CHECK(rep.records == 32 && rep.last_seq == 32);
    CHECK(count_all(j, 0) == 32);

    /* a second process (or handle) cannot open it meanwhile */
    expect_open_fails(dir, 1, TB_ERR_IO, "in use", (const char *)NULL);
    journal_destroy(&j);
    tbtest_rmtree(dir);
}

/* A torn tail is cut and appends continue with a valid chain. */
static void test_torn_tail(void)
{
    char dir[512], path[600], err[1024];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("jtorn"));
    journal_t *j = jopen(dir, 16384, NULL);
    if (!j) return;
    for (uint64_t i = 1; i <= 40; i++) put(j, "s", i, "d", 500, i);   /* several segments */
    journal_destroy(&j);
    uint64_t firsts[32];
    size_t n = list_segs(dir, firsts, 32);
    CHECK(n >= 2);
    segfile(path, sizeof path, dir, firsts[n - 1]);
    long long offs[64];
    size_t nr = rec_offsets(path, offs, 64);
    long long size0 = fsize(path);
    CHECK(nr >= 2);

    /* 1. cut in the middle of the last record */
    CHECK(truncate(path, offs[nr - 1] + 100) == 0);
    journal_report_t rep;
    j = jopen(dir, 16384, &rep);
    if (!j) return;
    CHECK(rep.truncated_bytes == 100);
    CHECK(rep.records == 39 && rep.last_seq == 39 && journal_last_seq(j) == 39);
    CHECK(fsize(path) == offs[nr - 1]);
    CHECK(put(j, "s", 1040, "d", 500, 1040) == 40);
    jsync(j);
    journal_destroy(&j);
    j = jopen(dir, 16384, &rep);
    CHECK(rep.records == 40 && rep.truncated_bytes == 0);
    CHECK(fsize(path) == size0);
    journal_reader_t *r = NULL;
    jrec_t rec;
    int got = 0;
    CHECK(journal_reader_new(j, 39, &r, err, sizeof err) == TB_OK);
    CHECK(r && journal_reader_next(r, NULL, NULL, &rec, &got, err, sizeof err) == TB_OK && got);
    CHECK(got && rec.hub_seq == 40 && rec.sender_seq == 1040 && batch_is(&rec, 500, 1040));
    journal_reader_destroy(&r);
    journal_destroy(&j);

    /* 2. garbage after the last record */
    uint8_t junk[777];
    fill(junk, sizeof junk, 99);
    FILE *f = fopen(path, "ab");
    CHECK(f && fwrite(junk, 1, sizeof junk, f) == sizeof junk);
    if (f) fclose(f);
    j = jopen(dir, 16384, &rep);
    CHECK(rep.truncated_bytes == 777 && rep.records == 40);
    CHECK(fsize(path) == size0);
    CHECK(put(j, "s", 41, "d", 500, 41) == 41);
    journal_destroy(&j);

    /* 3. zeros after the last record (file grown but data never written) */
    long long size1 = fsize(path);
    CHECK(truncate(path, size1 + 4096) == 0);
    j = jopen(dir, 16384, &rep);
    CHECK(rep.truncated_bytes == 4096 && rep.records == 41);
    journal_destroy(&j);

    /* 4. only part of a frame */
    CHECK(truncate(path, size1 + 5) == 0);
    j = jopen(dir, 16384, &rep);
    CHECK(rep.truncated_bytes == 5 && rep.records == 41);
    CHECK(count_all(j, 0) == 41);
    journal_destroy(&j);

    /* 5. a segment file created by a roll with its header never written */
    char empty[600];
    segfile(empty, sizeof empty, dir, 42);
    CHECK(spit(empty, (const uint8_t *)"TBJ", 3) == 0);
    j = jopen(dir, 16384, &rep);
    CHECK(rep.truncated_bytes == 3 && rep.records == 41);
    CHECK(!exists(empty));
    CHECK(put(j, "s", 42, "d", 500, 42) == 42);
    journal_destroy(&j);
    j = jopen(dir, 16384, &rep);
    CHECK(rep.records == 42 && rep.truncated_bytes == 0);
    size_t nseg = journal_segments(j);
    journal_destroy(&j);

    /* 5b. the same with its size on disk but only zeros in it */
    uint8_t zeros[SEG_HDR + 600];
    memset(zeros, 0, sizeof zeros);
    CHECK(spit(segfile(empty, sizeof empty, dir, 43), zeros, sizeof zeros) == 0);
    j = jopen(dir, 16384, &rep);
    CHECK(rep.truncated_bytes == sizeof zeros && rep.records == 42 && !exists(empty));
    journal_destroy(&j);
    /* but one byte that is not zero makes it a damaged header */
    zeros[100] = 1;
    CHECK(spit(empty, zeros, sizeof zeros) == 0);
    expect_open_fails(dir, 1, TB_ERR_PROTO, empty, "bad segment header", (const char *)NULL);
    CHECK(unlink(empty) == 0);

    /* 6. a segment with its header but no record yet becomes the active one */
    uint8_t hdr[SEG_HDR] = { 'T', 'B', 'J', '1', 1, 0, 0, 0, 43 };
    wr32(hdr + 20, crc32c_ref(hdr, 20));
    CHECK(spit(segfile(empty, sizeof empty, dir, 43), hdr, sizeof hdr) == 0);
    j = jopen(dir, 16384, &rep);
    CHECK(rep.records == 42 && rep.segments == nseg + 1 && rep.truncated_bytes == 0);
    CHECK(put(j, "s", 43, "d", 500, 43) == 43);
    jsync(j);
    CHECK(fsize(empty) == SEG_HDR + FRAME + BODY_FIXED + 2 + 500);
    journal_destroy(&j);
    j = jopen(dir, 16384, &rep);
    CHECK(rep.records == 43 && rep.segments == nseg + 1);
    CHECK(count_all(j, 0) == 43);
    journal_destroy(&j);
    tbtest_rmtree(dir);
}

/* Damage that is not a torn tail fails the open, naming file and offset, and changes nothing. */
static void test_damage(void)
{
    char dir[512], path[600], want[700];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("jdamage"));
    journal_t *j = jopen(dir, 16384, NULL);
    if (!j) return;
    for (uint64_t i = 1; i <= 40; i++) put(j, "s", i, "d", 500, i);
    journal_destroy(&j);
    uint64_t firsts[32];
    size_t n = list_segs(dir, firsts, 32);
    CHECK(n >= 2);
    long long offs[64];

    /* 1. flipped byte in a batch in the middle of the last segment */
    segfile(path, sizeof path, dir, firsts[n - 1]);
    size_t nr = rec_offsets(path, offs, 64);
    CHECK(nr >= 4);
    long long size0 = fsize(path);
    size_t k = nr / 2;
    CHECK(flip(path, offs[k] + FRAME + BODY_FIXED + 2 + 200, 0x40) == 0);
    snprintf(want, sizeof want, "offset %lld: CRC mismatch (record %" PRIu64 ")", offs[k], firsts[n - 1] + k);
    expect_open_fails(dir, 1, TB_ERR_PROTO, path, want, "valid records follow", (const char *)NULL);
    CHECK(fsize(path) == size0);   /* nothing cut */
    CHECK(flip(path, offs[k] + FRAME + BODY_FIXED + 2 + 200, 0x40) == 0);

    /* 2. flipped byte in a length field */
    CHECK(flip(path, offs[k] + 1, 0x10) == 0);
    snprintf(want, sizeof want, "offset %lld:", offs[k]);
    expect_open_fails(dir, 1, TB_ERR_PROTO, path, want, "journal damaged", (const char *)NULL);
    CHECK(fsize(path) == size0);
    CHECK(flip(path, offs[k] + 1, 0x10) == 0);

    /* 3. the last record of a sealed segment (would be a torn tail if it were the last segment) */
    segfile(path, sizeof path, dir, firsts[0]);
    nr = rec_offsets(path, offs, 64);
    CHECK(flip(path, offs[nr - 1] + FRAME + 20, 0x01) == 0);
    snprintf(want, sizeof want, "offset %lld: CRC mismatch (record %zu) in a sealed segment", offs[nr - 1], nr);
    expect_open_fails(dir, 1, TB_ERR_PROTO, path, want, (const char *)NULL);
    CHECK(flip(path, offs[nr - 1] + FRAME + 20, 0x01) == 0);

    /* 4. bad segment header */
    CHECK(flip(path, 1, 0x20) == 0);
    expect_open_fails(dir, 1, TB_ERR_PROTO, path, "offset 0: bad segment header", (const char *)NULL);
    CHECK(flip(path, 1, 0x20) == 0);

    /* 5. a missing middle segment is a gap; a missing first one too */
    if (n >= 3) {
        char moved[700];
        segfile(path, sizeof path, dir, firsts[1]);
        snprintf(moved, sizeof moved, "%s.away", path);
        CHECK(rename(path, moved) == 0);
        expect_open_fails(dir, 1, TB_ERR_PROTO, "gap in hub_seq", (const char *)NULL);
        CHECK(rename(moved, path) == 0);
    }
    {
        char moved[700];
        segfile(path, sizeof path, dir, firsts[0]);
        snprintf(moved, sizeof moved, "%s.away", path);
        CHECK(rename(path, moved) == 0);
        expect_open_fails(dir, 1, TB_ERR_PROTO, "no anchor file", (const char *)NULL);
        CHECK(rename(moved, path) == 0);
    }

    /* all undone: it opens and holds everything */
    journal_report_t rep;
    j = jopen(dir, 16384, &rep);
    CHECK(rep.records == 40 && rep.truncated_bytes == 0);

    /* 6. bit rot after open is caught by the reader's CRC check */
    segfile(path, sizeof path, dir, firsts[0]);
    nr = rec_offsets(path, offs, 64);
    CHECK(flip(path, offs[1] + FRAME + 100, 0x08) == 0);
    journal_reader_t *r = NULL;
    jrec_t rec;
    int got = 0;
    char err[1024] = "";
    CHECK(journal_reader_new(j, 0, &r, err, sizeof err) == TB_OK);
    CHECK(r && journal_reader_next(r, NULL, NULL, &rec, &got, err, sizeof err) == TB_OK && got);
    CHECK(r && journal_reader_next(r, NULL, NULL, &rec, &got, err, sizeof err) == TB_ERR_PROTO);
    snprintf(want, sizeof want, "offset %lld: CRC mismatch (record 2)", offs[1]);
    CHECK_MSG(strstr(err, want) && strstr(err, path), "%s", err);
    CHECK(journal_reader_pos(r) == 1);   /* did not move */
    journal_reader_destroy(&r);
    CHECK(flip(path, offs[1] + FRAME + 100, 0x08) == 0);
    journal_destroy(&j);
    tbtest_rmtree(dir);
}

/* Rewrites byte off of path XOR x and recomputes the CRC of the record at rec_off. */
static void tamper(const char *path, long long rec_off, long long off, uint8_t x)
{
    size_t len = 0;
    uint8_t *b = slurp(path, &len);
    if (!b) {
        CHECK(0);
        return;
    }
    b[off] ^= x;
    uint32_t blen = rd32(b + rec_off);
    wr32(b + rec_off + 4, crc32c_ref(b + rec_off + FRAME, blen));
    CHECK(spit(path, b, len) == 0);
    free(b);
}

/* Edits with a recomputed CRC break the hash chain. */
static void test_chain(void)
{
    char dir[512], path[600], want[200];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("jchain"));
    journal_t *j = jopen(dir, 0, NULL);
    if (!j) return;
    for (uint64_t i = 1; i <= 20; i++) put(j, "s", i, "d", 400, i);
    journal_destroy(&j);
    segfile(path, sizeof path, dir, 1);
    long long offs[64];
    CHECK(rec_offsets(path, offs, 64) == 20);
    size_t len0 = 0;
    uint8_t *orig = slurp(path, &len0);

    /* 1. a byte of prev_hash of record 12 */
    tamper(path, offs[11], offs[11] + FRAME + 16 + 5, 0x01);
    snprintf(want, sizeof want, "offset %lld: hash chain broken at record 12", offs[11]);
    expect_open_fails(dir, 1, TB_ERR_PROTO, path, want, (const char *)NULL);
    journal_opts_t o;
    journal_opts_init(&o);
    o.verify_chain = 0;   /* the CRCs are all fine: only the chain check finds it */
    journal_report_t rep;
    char err[1024] = "";
    CHECK(journal_open(dir, &o, &j, &rep, err, sizeof err) == TB_OK && rep.records == 20);
    journal_destroy(&j);
    CHECK(spit(path, orig, len0) == 0);

    /* 2. the last record: not mistaken for a torn tail */
    tamper(path, offs[19], offs[19] + FRAME + 16, 0x80);
    expect_open_fails(dir, 1, TB_ERR_PROTO, "hash chain broken at record 20", (const char *)NULL);
    CHECK(fsize(path) == (long long)len0);
    CHECK(spit(path, orig, len0) == 0);

    /* 3. content changed (batch byte of record 5): record 6 no longer links */
    tamper(path, offs[4], offs[4] + FRAME + BODY_FIXED + 2 + 50, 0x02);
    expect_open_fails(dir, 1, TB_ERR_PROTO, "hash chain broken at record 6", (const char *)NULL);
    CHECK(spit(path, orig, len0) == 0);

    /* 4. first record's prev_hash must be zero */
    tamper(path, offs[0], offs[0] + FRAME + 16 + 31, 0x01);
    expect_open_fails(dir, 0, TB_ERR_PROTO, "hash chain broken at record 1", (const char *)NULL);
    CHECK(spit(path, orig, len0) == 0);

    j = jopen(dir, 0, &rep);
    CHECK(rep.records == 20);
    journal_destroy(&j);
    free(orig);
    tbtest_rmtree(dir);
}

/* gc removes only fully-acked, old-enough, durable, non-active segments; the chain stays verifiable. */
static void test_gc(void)
{
    char dir[512], path[600], err[1024];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("jgc"));
    journal_t *j = jopen(dir, 4096, NULL);
    if (!j) return;
    for (uint64_t i = 1; i <= 20; i++) put(j, "s", i, "d", 1000, i);
    jsync(j);
    uint64_t firsts[32];
    size_t n = list_segs(dir, firsts, 32);
    CHECK(n == 7);   /* 3 records of 1,074 bytes per 4,096-byte segment */
    CHECK(n == 7 && firsts[1] == 4 && firsts[2] == 7 && firsts[6] == 19);
    journal_reader_t *r0 = NULL;
    CHECK(journal_reader_new(j, 0, &r0, err, sizeof err) == TB_OK);
    char anchor[600];
    snprintf(anchor, sizeof anchor, "%s/anchor", dir);

    size_t removed = 99;
    CHECK(journal_gc(j, 20, 3600 * 1000, &removed, err, sizeof err) == TB_OK && removed == 0);  /* too recent */
    CHECK(journal_gc(j, 2, 0, &removed, err, sizeof err) == TB_OK && removed == 0);  /* segment 1 holds 3 */
    CHECK(!exists(anchor));
    CHECK(journal_gc(j, 7, 0, &removed, err, sizeof err) == TB_OK && removed == 2);  /* 1-3, 4-6; not 7-9 */
    CHECK(!exists(segfile(path, sizeof path, dir, 1)) && !exists(segfile(path, sizeof path, dir, 4)));
    CHECK(exists(segfile(path, sizeof path, dir, 7)));
    CHECK(exists(anchor) && fsize(anchor) == 52);
    CHECK(journal_segments(j) == 5);
    journal_reader_t *r = NULL;
    CHECK(journal_reader_new(j, 5, &r, err, sizeof err) == TB_ERR_NOTFOUND && r == NULL);
    CHECK(journal_reader_new(j, 6, &r, err, sizeof err) == TB_OK);
    jrec_t rec;
    int got = 0;
    CHECK(r && journal_reader_next(r, NULL, NULL, &rec, &got, err, sizeof err) == TB_OK && got && rec.hub_seq == 7);
    journal_reader_destroy(&r);
    CHECK(r0 && journal_reader_next(r0, NULL, NULL, &rec, &got, err, sizeof err) == TB_ERR_NOTFOUND);
    journal_reader_destroy(&r0);

    /* the anchor's hash is the hash of record 6 = prev_hash of record 7 */
    size_t al = 0, l7 = 0;
    uint8_t *a = slurp(anchor, &al), *s7 = slurp(segfile(path, sizeof path, dir, 7), &l7);
    CHECK(a && s7 && memcmp(a, "TBA1", 4) == 0 && rd64(a + 8) == 6 && rd32(a + 48) == crc32c_ref(a, 48));
    CHECK(a && s7 && memcmp(a + 16, s7 + SEG_HDR + FRAME + 16, 32) == 0);
    free(s7);

    /* nothing not yet durable goes, and never the active segment */
    for (uint64_t i = 21; i <= 24; i++) put(j, "s", i, "d", 1000, i);   /* rolls, unsynced */
    CHECK(journal_gc(j, UINT64_MAX, 0, &removed, err, sizeof err) == TB_OK && removed == 4);  /* 7..18 */
    CHECK(journal_segments(j) == 2 && exists(segfile(path, sizeof path, dir, 19)));
    jsync(j);
    CHECK(journal_gc(j, UINT64_MAX, 0, &removed, err, sizeof err) == TB_OK && removed == 1);
    CHECK(journal_segments(j) == 1 && exists(segfile(path, sizeof path, dir, 22)));
    CHECK(journal_gc(j, UINT64_MAX, 0, &removed, err, sizeof err) == TB_OK && removed == 0);
    CHECK(put(j, "s", 25, "d", 1000, 25) == 25);
    journal_destroy(&j);

    journal_report_t rep;
    j = jopen(dir, 4096, &rep);   /* chain verified against the anchor */
    CHECK(rep.records == 4 && rep.first_seq == 22 && rep.last_seq == 25);
    CHECK(count_all(j, 21) == 4);
    CHECK(put(j, "s", 26, "d", 1000, 26) == 26);
    journal_destroy(&j);

    /* a tampered anchor is refused */
    size_t alen = 0;
    uint8_t *a2 = slurp(anchor, &alen);
    CHECK(a2 && alen == 52);
    if (a2) {
        a2[20] ^= 1;
        wr32(a2 + 48, crc32c_ref(a2, 48));
        CHECK(spit(anchor, a2, alen) == 0);
        expect_open_fails(dir, 1, TB_ERR_PROTO, "anchor", "chain", (const char *)NULL);
        expect_open_fails(dir, 0, TB_ERR_PROTO, "anchor", (const char *)NULL);
        a2[20] ^= 1;
        wr32(a2 + 48, crc32c_ref(a2, 48));
        CHECK(spit(anchor, a2, alen) == 0);
        a2[10] ^= 1;   /* CRC no longer matches */
        CHECK(spit(anchor, a2, alen) == 0);
        expect_open_fails(dir, 1, TB_ERR_PROTO, "bad anchor", (const char *)NULL);
        a2[10] ^= 1;
        CHECK(spit(anchor, a2, alen) == 0);
        free(a2);
    }
    free(a);
    tbtest_rmtree(dir);

    /* an interrupted gc (anchor written, segments still there) is finished at open */
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("jgc2"));
    j = jopen(dir, 4096, NULL);
    for (uint64_t i = 1; i <= 20; i++) put(j, "s", i, "d", 1000, i);
    jsync(j);
    size_t l1 = 0, l4 = 0;   /* copies of what gc removes */
    uint8_t *s1 = slurp(segfile(path, sizeof path, dir, 1), &l1);
    uint8_t *s4 = slurp(segfile(path, sizeof path, dir, 4), &l4);
    CHECK(journal_gc(j, 7, 0, &removed, err, sizeof err) == TB_OK && removed == 2);
    journal_destroy(&j);
    CHECK(s4 && spit(segfile(path, sizeof path, dir, 4), s4, l4) == 0);   /* 1 went, 4 did not */
    j = jopen(dir, 4096, &rep);
    CHECK(rep.records == 14 && rep.first_seq == 7);
    CHECK(!exists(segfile(path, sizeof path, dir, 4)));
    journal_destroy(&j);
    CHECK(s1 && spit(segfile(path, sizeof path, dir, 1), s1, l1) == 0);   /* neither went */
    CHECK(s4 && spit(segfile(path, sizeof path, dir, 4), s4, l4) == 0);
    j = jopen(dir, 4096, &rep);
    CHECK(rep.records == 14 && rep.first_seq == 7 && journal_segments(j) == 5);
    CHECK(!exists(segfile(path, sizeof path, dir, 1)) && !exists(segfile(path, sizeof path, dir, 4)));
    journal_destroy(&j);
    /* a leftover segment that does not hash to the anchor is refused */
    if (s4) {
        long long offs[8];
        CHECK(spit(segfile(path, sizeof path, dir, 4), s4, l4) == 0);
        CHECK(rec_offsets(path, offs, 8) == 3);   /* records 4, 5, 6: change 6 */
        tamper(path, offs[2], offs[2] + FRAME + BODY_FIXED + 2 + 10, 0x04);
        expect_open_fails(dir, 0, TB_ERR_PROTO, "anchor", (const char *)NULL);
        unlink(path);
    }
    free(s1);
    free(s4);
    tbtest_rmtree(dir);
}

/* Argument limits. */
static void test_limits(void)
{
    char dir[512], err[1024];
    char name256[257], name255[256];
    memset(name256, 'x', 256);
    name256[256] = '\0';
    memset(name255, 'y', 255);
    name255[255] = '\0';
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("jlim"));
    journal_t *j = jopen(dir, 0, NULL);
    if (!j) return;
    uint8_t b[8] = { 0 };
    uint64_t hs = 0;
    CHECK(journal_append(j, "", 1, "d", b, 8, &hs, err, sizeof err) == TB_ERR_INVALID);
    CHECK(journal_append(j, name256, 1, "d", b, 8, &hs, err, sizeof err) == TB_ERR_INVALID);
    CHECK(journal_append(j, "s", 1, name256, b, 8, &hs, err, sizeof err) == TB_ERR_INVALID);
    CHECK(journal_append(j, "s", 1, "d", b, (size_t)JOURNAL_MAX_BATCH + 1, &hs, err, sizeof err) == TB_ERR_INVALID);
    CHECK(strstr(err, "1 GiB") || strstr(err, "exceeds"));
    CHECK(journal_append(j, "s", 1, "d", NULL, 8, &hs, err, sizeof err) == TB_ERR_INVALID);
    CHECK(journal_last_seq(j) == 0);
    CHECK(journal_append(j, name255, 1, name255, b, 8, &hs, err, sizeof err) == TB_OK && hs == 1);
    jsync(j);
    journal_destroy(&j);
    journal_report_t rep;
    j = jopen(dir, 0, &rep);
    CHECK(rep.records == 1);
    journal_reader_t *r = NULL;
    jrec_t rec;
    int got = 0;
    CHECK(journal_reader_new(j, 0, &r, err, sizeof err) == TB_OK);
    CHECK(r && journal_reader_next(r, NULL, NULL, &rec, &got, err, sizeof err) == TB_OK && got);
    CHECK(got && strcmp(rec.sender, name255) == 0 && strcmp(rec.dest, name255) == 0 && rec.batch_len == 8);
    journal_reader_destroy(&r);
    journal_destroy(&j);
    tbtest_rmtree(dir);
}

/* Disk full (tmpfs of 1 MiB, ballast_len of it taken by a file that is deleted later to
 * free space): the failed append leaves the journal consistent and usable. With a tiny
 * segment_bytes every record opens a new segment, so the failure hits a fresh segment. */
static void test_enospc(uint64_t segbytes, size_t reclen, size_t ballast_len)
{
    char mnt[512], dir[600], ballast[600], err[1024];
    snprintf(mnt, sizeof mnt, "%s", tbtest_tmpdir("jfull"));
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=1m,mode=0700") != 0) {
        printf("test_journal: SKIP disk-full test: cannot mount a tmpfs on %s: %s\n", mnt, strerror(errno));
        tbtest_rmtree(mnt);
        return;
    }
    snprintf(dir, sizeof dir, "%s/journal", mnt);
    snprintf(ballast, sizeof ballast, "%s/ballast", mnt);
    uint8_t *bb = calloc(1, ballast_len);
    CHECK(bb && spit(ballast, bb, ballast_len) == 0);
    free(bb);

    journal_t *j = jopen(dir, segbytes, NULL);
    if (!j) goto out;
    uint64_t ok = 0;
    tb_err_t rc = TB_OK;
    uint8_t *batch = malloc(reclen);
    for (int i = 0; i < 1000; i++) {
        uint64_t hs = 0;
        fill(batch, reclen, (uint64_t)i + 1);
        rc = journal_append(j, "s", (uint64_t)i + 1, "d", batch, reclen, &hs, err, sizeof err);
        if (rc != TB_OK) break;
        jsync(j);
        ok = hs;
    }
    CHECK_MSG(rc == TB_ERR_IO, "append never failed: %s", tb_strerror(rc));
    CHECK_MSG(strstr(err, "No space left on device") && strstr(err, dir), "%s", err);
    CHECK(ok > 20 && journal_last_seq(j) == ok && journal_durable_seq(j) == ok);
    printf("test_journal: segment_bytes %" PRIu64 ", %zu-byte batches: disk full after %" PRIu64 " records: %s\n",
           segbytes, reclen, ok, err);
    /* still full: fails again, cleanly */
    fill(batch, reclen, ok + 1);
    CHECK(journal_append(j, "s", ok + 1, "d", batch, reclen, NULL, err, sizeof err) == TB_ERR_IO);
    CHECK(journal_last_seq(j) == ok);
    CHECK(journal_sync(j, err, sizeof err) == TB_OK);
    {
        uint64_t firsts[1024];
        size_t n = list_segs(dir, firsts, 1024);
        long long total = 0;
        char p[700];
        for (size_t i = 0; i < n; i++) total += fsize(segfile(p, sizeof p, dir, firsts[i]));
        CHECK(n == journal_segments(j) && (uint64_t)total == journal_bytes(j));   /* cut back */
    }
    CHECK(count_all(j, 0) == ok);
    journal_destroy(&j);

    journal_report_t rep;
    j = jopen(dir, segbytes, &rep);
    CHECK(rep.records == ok && rep.truncated_bytes == 0);
    if (j) {
        journal_reader_t *r = NULL;
        jrec_t rec;
        int got = 0;
        uint64_t n = 0;
        CHECK(journal_reader_new(j, 0, &r, err, sizeof err) == TB_OK);
        while (r && journal_reader_next(r, NULL, NULL, &rec, &got, err, sizeof err) == TB_OK && got) {
            n++;
            if (!batch_is(&rec, reclen, n)) {
                CHECK_MSG(0, "record %" PRIu64 " differs", n);
                break;
            }
        }
        CHECK(n == ok);
        journal_reader_destroy(&r);
        /* space comes back */
        CHECK(unlink(ballast) == 0);
        uint64_t hs = 0;
        fill(batch, reclen, ok + 1);
        CHECK(journal_append(j, "s", ok + 1, "d", batch, reclen, &hs, err, sizeof err) == TB_OK && hs == ok + 1);
        jsync(j);
        journal_destroy(&j);
        j = jopen(dir, segbytes, &rep);
        CHECK(rep.records == ok + 1 && rep.truncated_bytes == 0);
        journal_destroy(&j);
    }
    free(batch);
out:
    journal_destroy(&j);
    CHECK(umount2(mnt, 0) == 0);
    tbtest_rmtree(mnt);
}

/* Throughput figures (printed, not asserted). */
static void test_perf(void)
{
    char dir[512], err[1024];
    if (getenv("TB_SKIP_PERF")) {
        printf("test_journal: perf skipped (TB_SKIP_PERF)\n");
        return;
    }
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("jperf"));
    journal_t *j = jopen(dir, 0, NULL);
    if (!j) return;
    uint8_t batch[600];
    fill(batch, sizeof batch, 1);
    const int N = 100000;
    double t_app = 0, t_sync = 0, t0 = now_s();
    for (int i = 0; i < N; i++) {
        double a = now_s();
        batch[0] = (uint8_t)i;
        if (journal_append(j, "110000", (uint64_t)i, i % 2 ? "320000" : "440000", batch, sizeof batch, NULL,
                           err, sizeof err) != TB_OK) {
            CHECK_MSG(0, "%s", err);
            break;
        }
        double b = now_s();
        t_app += b - a;
        if ((i + 1) % 100 == 0) {
            jsync(j);
            t_sync += now_s() - b;
        }
    }
    double el = now_s() - t0;
    double mb = (double)journal_bytes(j) / 1e6;
    printf("test_journal: append %d x 600 B, sync every 100: %.0f records/s, %.1f MB/s on disk "
           "(%.2f s: %.2f s in append, %.2f s in %d fdatasyncs = %.2f ms each)\n",
           N, N / el, mb / el, el, t_app, t_sync, N / 100, t_sync * 1000.0 / (N / 100));

    /* 1,000 records of 600 B (600 kB), one group commit */
    double a = now_s();
    for (int i = 0; i < 1000; i++)
        journal_append(j, "110000", (uint64_t)i, "320000", batch, sizeof batch, NULL, NULL, 0);
    double b = now_s();
    jsync(j);
    double c = now_s();
    printf("test_journal: 1,000 x 600 B + 1 sync: append %.2f ms, fdatasync %.2f ms\n",
           (b - a) * 1000.0, (c - b) * 1000.0);

    journal_reader_t *r = NULL;
    jrec_t rec;
    int got = 0;
    uint64_t n = 0, bytes = 0;
    t0 = now_s();
    CHECK(journal_reader_new(j, 0, &r, err, sizeof err) == TB_OK);
    while (r && journal_reader_next(r, NULL, NULL, &rec, &got, err, sizeof err) == TB_OK && got) {
        n++;
        bytes += rec.batch_len;
    }
    el = now_s() - t0;
    CHECK(n == (uint64_t)N + 1000);
    printf("test_journal: full reader scan: %.0f records/s, %.1f MB/s of batches\n", n / el, bytes / el / 1e6);
    journal_reader_destroy(&r);
    filt_t f = { "320000", 0 };
    t0 = now_s();
    n = 0;
    CHECK(journal_reader_new(j, 0, &r, err, sizeof err) == TB_OK);
    while (r && journal_reader_next(r, want_dest, &f, &rec, &got, err, sizeof err) == TB_OK && got) n++;
    el = now_s() - t0;
    printf("test_journal: filtered reader scan (half wanted): %.0f records examined/s\n", (double)f.calls / el);
    journal_reader_destroy(&r);
    journal_destroy(&j);

    journal_report_t rep;
    t0 = now_s();
    j = jopen(dir, 0, &rep);
    el = now_s() - t0;
    printf("test_journal: open/recovery with verify_chain: %.0f ms for %" PRIu64 " records (%.1f MB)\n",
           el * 1000.0, rep.records, rep.bytes / 1e6);
    journal_destroy(&j);
    journal_opts_t o;
    journal_opts_init(&o);
    o.verify_chain = 0;
    t0 = now_s();
    CHECK(journal_open(dir, &o, &j, &rep, err, sizeof err) == TB_OK);
    el = now_s() - t0;
    printf("test_journal: open/recovery without verify_chain: %.0f ms\n", el * 1000.0);
    journal_destroy(&j);
    tbtest_rmtree(dir);
}

int main(void)
{
    test_crc_reference();
    test_format();
    test_roundtrip();
    test_unsynced_invisible();
    test_filter_skips();
    test_rolling();
    test_reopen();
    test_torn_tail();
    test_damage();
    test_chain();
    test_gc();
    test_limits();
    test_enospc(256 * 1024, 8000, 128 * 1024);   /* fails in the middle of a segment */
    test_enospc(1, 8000, 128 * 1024);            /* fails writing a new segment's header */
    test_enospc(1, 5000, 132 * 1024);            /* header fits, its first record does not */
    test_perf();
    return tbtest_done("test_journal");
}
