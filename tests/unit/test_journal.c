/* test_journal.c -- the hub journal: format, append/sync/read, recovery (torn
 * tail vs damage), hash chain (version 2 records with SignedBatch bodies,
 * the caller's body digest, version 1 segments of older releases), segment
 * rolling, gc with anchor, disk full, and a quick throughput measurement
 * (skipped when TB_SKIP_PERF is set). */
#include "tbtest.h"

#include "journal.h"
#include "journal_ref.h"
#include "wire.h"

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
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static void wr32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void wr64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }

/* Writes SHA-256 of the concatenation of n (const uint8_t *, size_t) pieces into out. Returns nothing. */
static void sha256_cat(uint8_t out[32], int n, ...)
{
    unsigned int len = 0;
    va_list ap;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const uint8_t *p = va_arg(ap, const uint8_t *);
        size_t l = va_arg(ap, size_t);
        ok = ok && EVP_DigestUpdate(c, p, l) == 1;
    }
    va_end(ap);
    CHECK(ok && EVP_DigestFinal_ex(c, out, &len) == 1 && len == 32);
    EVP_MD_CTX_free(c);
}

/* The hash of a record (its body, n bytes) in a segment of version 1 or 2,
 * as journal.h defines it (the reference in journal_ref.h). Returns nothing. */
static void ref_hash(int version, const uint8_t *body, size_t n, uint8_t out[32])
{
    size_t s = rd16(body + 48), d = rd16(body + 58 + s), head = BODY_FIXED + s + d;
    CHECK(jref_hash((uint32_t)version, body, head, n, out) == 0);
}

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

/* Writes v as a protobuf varint at p. Returns its length. */
static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    do {
        p[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return n;
}

/* Builds a SignedBatch as nodes send them -- body (n bytes from seed),
 * signature (64 bytes), key id, alg, prehash -- in out (n + 200 bytes).
 * Returns its length and the offset of the body in *body_off. */
static size_t mk_signed(uint8_t *out, size_t n, uint64_t seed, size_t *body_off)
{
    size_t i = 0;
    out[i++] = 0x0a;
    i += put_varint(out + i, n);
    *body_off = i;
    fill(out + i, n, seed);
    i += n;
    out[i++] = 0x12;
    out[i++] = 64;
    fill(out + i, 64, seed ^ 0x5151);
    i += 64;
    out[i++] = 0x1a;
    out[i++] = 64;
    memset(out + i, 'a', 64);
    i += 64;
    out[i++] = 0x20;   /* alg: Ed25519 */
    out[i++] = 1;
    out[i++] = 0x28;   /* prehash: SHA-256 */
    out[i++] = 1;
    return i;
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
    tb_err_t rc = journal_append(j, sender, sseq, dest, b, len, NULL, &hs, err, sizeof err);
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

/* The bytes on disk are exactly the documented format, the hash of each
 * form of version 2 record included. */
static void test_format(void)
{
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("jfmt"));
    int64_t t0 = wall_ms();
    journal_t *j = jopen(dir, 0, NULL);
    if (!j) return;
    uint8_t big[1000], sb[3000 + 200], dig[32];
    size_t boff = 0, sblen = mk_signed(sb, 3000, 9, &boff);
    sha256(sb + boff, 3000, dig);
    uint64_t hs = 0;
    CHECK(journal_append(j, "110000", 7, "320000", (const uint8_t *)"hello", 5, NULL, &hs, NULL, 0) == TB_OK &&
          hs == 1);
    CHECK(journal_append(j, "110000", 8, "topic:licences", fill(big, sizeof big, 3), sizeof big, NULL, &hs, NULL,
                         0) == TB_OK && hs == 2);
    CHECK(journal_append(j, "110000", 9, "320000", sb, sblen, dig, &hs, NULL, 0) == TB_OK && hs == 3);
    CHECK(journal_append(j, "110000", 10, "320000", (const uint8_t *)"x", 1, NULL, &hs, NULL, 0) == TB_OK &&
          hs == 4);
    jsync(j);
    journal_destroy(&j);
    CHECK(j == NULL);
    int64_t t1 = wall_ms();

    size_t len = 0;
    uint8_t *b = slurp(segfile(path, sizeof path, dir, 1), &len);
    CHECK(b != NULL);
    if (!b) return;
    size_t r1 = FRAME + BODY_FIXED + 6 + 6 + 5, r2 = FRAME + BODY_FIXED + 6 + 14 + 1000;
    size_t r3 = FRAME + BODY_FIXED + 6 + 6 + sblen, r4 = FRAME + BODY_FIXED + 6 + 6 + 1;
    CHECK(len == SEG_HDR + r1 + r2 + r3 + r4);
    CHECK(memcmp(b, "TBJ1", 4) == 0 && rd32(b + 4) == 2 && rd64(b + 8) == 1 && rd32(b + 16) == 0);
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
    /* "hello" is no SignedBatch ('l' = field 13, wire type 4): the whole batch, after 0x00 */
    size_t o = 0, l = 0;
    CHECK(!jref_body((const uint8_t *)"hello", 5, &o, &l));
    uint8_t h1[32], h[32];
    static const uint8_t whole = 0x00;
    sha256_cat(h1, 3, body, (size_t)76, &whole, (size_t)1, body + 76, (size_t)5);
    const uint8_t *f2 = f + r1, *body2 = f2 + FRAME;
    CHECK(rd32(f2 + 4) == crc32c_ref(body2, r2 - FRAME));
    CHECK(rd64(body2) == 2);
    CHECK(memcmp(body2 + 16, h1, 32) == 0);
    CHECK(memcmp(body2 + 76 + 8, big, sizeof big) == 0);
    /* record 3 holds a SignedBatch: its body is replaced by its digest, after 0x01, offset, length */
    const uint8_t *body3 = f2 + r2 + FRAME, *batch3 = body3 + BODY_FIXED + 12;
    CHECK(rd64(body3) == 3 && rd32(body3 + BODY_FIXED + 8) == sblen && memcmp(batch3, sb, sblen) == 0);
    CHECK(jref_body(batch3, sblen, &o, &l) && o == boff && l == 3000);
    uint8_t mid[9] = { 0x01 };
    wr32(mid + 1, (uint32_t)boff);
    wr32(mid + 5, 3000);
    sha256_cat(h, 5, body3, (size_t)BODY_FIXED + 12, mid, sizeof mid, batch3, boff, dig, (size_t)32,
               batch3 + boff + 3000, sblen - boff - 3000);
    const uint8_t *body4 = body3 + r3;
    CHECK(rd64(body4) == 4 && memcmp(body4 + 16, h, 32) == 0);
    ref_hash(2, body2, r2 - FRAME, h);
    CHECK(memcmp(body3 + 16, h, 32) == 0);
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

/* ---- version 2 records, the caller's digest, version 1 segments ---- */

/* The batch of record seq in the tests below (buf: 1000 bytes): every
 * third one plain bytes, the others SignedBatches. Returns its length. */
static size_t batch_for(uint64_t seq, uint8_t *buf)
{
    size_t off;
    if (seq % 3 == 0) {
        fill(buf, 500, seq);
        return 500;
    }
    return mk_signed(buf, 400 + (size_t)seq % 200, seq, &off);
}

/* Appends batch_for(seq) as record seq, with the body's digest if digest
 * and it holds a body. Returns nothing. */
static void append_for(journal_t *j, uint64_t seq, int digest)
{
    uint8_t batch[1000], dig[32];
    size_t off = 0, bl = 0, n = batch_for(seq, batch);
    uint64_t hs = 0;
    char err[1024] = "";
    int has = jref_body(batch, n, &off, &bl);
    if (has) sha256(batch + off, bl, dig);
    tb_err_t rc = journal_append(j, "110000", seq * 10, "320000", batch, n, digest && has ? dig : NULL, &hs, err,
                                 sizeof err);
    CHECK_MSG(rc == TB_OK && hs == seq, "append %" PRIu64 ": %s: %s", seq, tb_strerror(rc), err);
}

/* Reads every record after after_seq and checks it is batch_for(hub_seq), up to last. Returns nothing. */
static void check_batches(journal_t *j, uint64_t after_seq, uint64_t last)
{
    journal_reader_t *r = NULL;
    char err[1024] = "";
    uint8_t buf[1000];
    uint64_t expect = after_seq + 1;
    CHECK(journal_reader_new(j, after_seq, &r, err, sizeof err) == TB_OK);
    for (;;) {
        jrec_t rec;
        int got = 0;
        if (!r || journal_reader_next(r, NULL, NULL, &rec, &got, err, sizeof err) != TB_OK || !got) break;
        size_t n = batch_for(expect, buf);
        CHECK(rec.hub_seq == expect && rec.sender_seq == expect * 10);
        CHECK(rec.batch_len == n && memcmp(rec.batch, buf, n) == 0);
        expect++;
    }
    CHECK_MSG(expect == last + 1, "read up to %" PRIu64 ", want %" PRIu64, expect - 1, last);
    journal_reader_destroy(&r);
}

/* Returns the version in the header of the segment starting at first (0 if unreadable). */
static uint32_t seg_version(const char *dir, uint64_t first)
{
    char path[600];
    uint8_t h[8];
    int fd = open(segfile(path, sizeof path, dir, first), O_RDONLY);
    int ok = fd >= 0 && pread(fd, h, sizeof h, 0) == (ssize_t)sizeof h;
    if (fd >= 0) close(fd);
    return ok ? rd32(h + 4) : 0;
}

/* Writes the segment starting at first in version 1, the format of older
 * releases (built here, not by the journal), with records first ..
 * first + n - 1 holding batch_for(seq); prev is the hash before the first
 * record and becomes the hash of the last. Returns nothing. */
static void write_v1_segment(const char *dir, uint64_t first, uint64_t n, uint8_t prev[32])
{
    char path[600];
    size_t len = SEG_HDR;
    uint8_t *b = calloc(1, SEG_HDR + n * 1200), batch[1000];
    if (!b) {
        CHECK(0);
        return;
    }
    memcpy(b, "TBJ1", 4);
    wr32(b + 4, 1);
    wr64(b + 8, first);
    wr32(b + 20, crc32c_ref(b, 20));
    for (uint64_t seq = first; seq < first + n; seq++) {
        size_t bl = batch_for(seq, batch), nb = BODY_FIXED + 12 + bl;
        uint8_t *body = b + len + FRAME;
        wr64(body, seq);
        wr64(body + 8, (uint64_t)wall_ms());
        memcpy(body + 16, prev, 32);
        body[48] = 6;
        memcpy(body + 50, "110000", 6);
        wr64(body + 56, seq * 10);
        body[64] = 6;
        memcpy(body + 66, "320000", 6);
        wr32(body + 72, (uint32_t)bl);
        memcpy(body + 76, batch, bl);
        wr32(b + len, (uint32_t)nb);
        wr32(b + len + 4, crc32c_ref(body, nb));
        sha256(body, nb, prev);   /* version 1: SHA-256 of the whole body */
        len += FRAME + nb;
    }
    CHECK(spit(segfile(path, sizeof path, dir, first), b, len) == 0);
    free(b);
}

/* Checks that in segment file path every record's prev_hash is the version
 * `version` hash of the record before it (the first against *prev), and
 * leaves the hash of the last in *prev. Returns the number of records. */
static size_t check_links(const char *path, int version, uint8_t prev[32])
{
    size_t len = 0, n = 0;
    uint8_t *b = slurp(path, &len);
    for (size_t off = SEG_HDR; b && off + FRAME <= len; n++) {
        uint32_t bl = rd32(b + off);
        const uint8_t *body = b + off + FRAME;
        CHECK_MSG(memcmp(body + 16, prev, 32) == 0, "%s: record %" PRIu64 ": prev_hash", path, rd64(body));
        ref_hash(version, body, bl, prev);
        off += FRAME + bl;
    }
    free(b);
    return n;
}

/* Version 2 records of every shape chain and read back; the caller's
 * digest is used when the view finds the same body (a wrong one breaks
 * the chain), ignored otherwise, and gives the same bytes as no digest. */
static void test_v2_digest(void)
{
    char dir[512], path[600], err[1024];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("jv2"));
    journal_t *j = jopen(dir, 0, NULL);
    if (!j) return;
    /* batches: the same through the journal with and without a digest */
    enum { NB = 16 };
    uint8_t *bs[NB];
    size_t lens[NB], off = 0;
    static const size_t sizes[] = { 0, 1, 127, 128, 20000 };
    for (int i = 0; i < NB; i++) bs[i] = calloc(1, 21000);
    int k = 0;
    for (; k < 5; k++) lens[k] = mk_signed(bs[k], sizes[k], (uint64_t)k, &off);
    lens[k] = mk_signed(bs[k], 300, 5, &off) - 136;   /* only the body field (no signature etc.) */
    k++;
    /* two body fields: the last one counts */
    lens[k] = mk_signed(bs[k], 50, 6, &off);
    lens[k] += mk_signed(bs[k] + lens[k], 70, 7, &off);
    k++;
    memcpy(bs[k], "\x08\x05\x12\x03" "abc", 7);            /* field 1 as a varint: no body */
    lens[k++] = 7;
    memcpy(bs[k], "\x12\x03" "abc\x7a\x02zz", 9);          /* no field 1 at all */
    lens[k++] = 9;
    lens[k] = mk_signed(bs[k], 1000, 8, &off) - 900;       /* cut in the body: no body */
    k++;
    memcpy(bs[k], "\x0a\x01q\x20\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 14);  /* varint over 64 bits */
    lens[k++] = 14;
    lens[k++] = 0;                                          /* empty */
    fill(bs[k], 3000, 99);                                  /* random bytes */
    lens[k++] = 3000;
    memcpy(bs[k], "\x0a\x05hello\x08\x01", 9);  /* a body, but field 1 also as a varint: the view says no */
    lens[k++] = 9;
    lens[k] = mk_signed(bs[k], 500, 10, &off);            /* an unknown field after the body */
    memcpy(bs[k] + lens[k], "\x7a\x03xyz", 5);
    lens[k] += 5;
    k++;
    memcpy(bs[k], "\x82\x00\x01z\x0a\x03" "abc", 9);       /* field 0 (a tag of two bytes) first */
    lens[k++] = 9;
    CHECK(k == NB);
    static const int has_body[NB] = { 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1 };
    for (int i = 0; i < NB; i++) {
        size_t bo = 0, bl = 0;
        CHECK_MSG(jref_body(bs[i], lens[i], &bo, &bl) == has_body[i], "batch %d", i);
        if (i == 6) CHECK(bo == 50 + 136 + 2 + 2 && bl == 70);
        /* where the view succeeds it finds the same body (journal.h), so the digest is taken */
        tb_signed_batch_view_t v;
        if (tb_signed_batch_view(bs[i], lens[i], &v) == TB_OK && v.body_len > 0)
            CHECK_MSG(has_body[i] && v.body == bs[i] + bo && v.body_len == bl, "batch %d", i);
        CHECK_MSG((i == 7 || (i >= 9 && i <= 10) || i == 12 || i == 13) ==
                  (tb_signed_batch_view(bs[i], lens[i], &v) != TB_OK), "batch %d", i);
    }
    for (int i = 0; i < 2 * NB; i++) {
        const uint8_t *b = bs[i % NB];
        size_t n = lens[i % NB], bo = 0, bl = 0;
        uint8_t dig[32];
        int has = jref_body(b, n, &bo, &bl);
        if (has) sha256(b + bo, bl, dig);
        CHECK(journal_append(j, "110000", (uint64_t)i + 1, "320000", b, n, has && i < NB ? dig : NULL, NULL, err,
                             sizeof err) == TB_OK);
    }
    journal_destroy(&j);
    uint8_t prev[32] = { 0 };
    CHECK(check_links(segfile(path, sizeof path, dir, 1), 2, prev) == 2 * NB);
    journal_report_t rep;
    j = jopen(dir, 0, &rep);
    CHECK(rep.records == 2 * NB);
    journal_reader_t *r = NULL;
    jrec_t rec;
    int got = 0, i = 0;
    CHECK(journal_reader_new(j, 0, &r, err, sizeof err) == TB_OK);
    for (; r && journal_reader_next(r, NULL, NULL, &rec, &got, err, sizeof err) == TB_OK && got; i++)
        CHECK(rec.batch_len == lens[i % NB] && memcmp(rec.batch, bs[i % NB], lens[i % NB]) == 0);
    CHECK(i == 2 * NB);
    journal_reader_destroy(&r);
    journal_destroy(&j);
    tbtest_rmtree(dir);

    /* a wrong digest is written into the chain where the view finds that body, ignored elsewhere */
    static const uint8_t wrong[32] = { 0x55 };
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("jv2wrong"));
    j = jopen(dir, 0, NULL);
    for (uint64_t s = 1; s <= 3; s++) append_for(j, s, 1);
    for (int w = 7; w < 14; w++)   /* no body (7-12), or one the view does not take (13) */
        CHECK(journal_append(j, "110000", 1, "320000", bs[w], lens[w], wrong, NULL, err, sizeof err) == TB_OK);
    append_for(j, 11, 0);   /* the last record's hash is recomputed at open: not the one to test */
    journal_destroy(&j);
    j = jopen(dir, 0, &rep);
    uint64_t last = journal_last_seq(j);
    CHECK(j && last == 11);
    CHECK(j && journal_append(j, "110000", 1, "320000", bs[4], lens[4], wrong, NULL, err, sizeof err) == TB_OK);
    CHECK(j && journal_append(j, "110000", 1, "320000", bs[0], lens[0], NULL, NULL, err, sizeof err) == TB_OK);
    journal_destroy(&j);
    char want[64];
    snprintf(want, sizeof want, "hash chain broken at record %" PRIu64, last + 2);
    expect_open_fails(dir, 1, TB_ERR_PROTO, want, (const char *)NULL);
    tbtest_rmtree(dir);

    /* byte for byte the same journal with and without the digests, when the clock agrees */
    int compared = 0;
    for (int attempt = 0; attempt < 20 && !compared; attempt++) {
        char da[512], db[512], pa[600], pb[600];
        snprintf(da, sizeof da, "%s", tbtest_tmpdir("jv2a"));
        snprintf(db, sizeof db, "%s", tbtest_tmpdir("jv2b"));
        journal_t *ja = jopen(da, 0, NULL), *jb = jopen(db, 0, NULL);
        int64_t t = wall_ms();
        while (wall_ms() == t) {
        }
        for (uint64_t s = 1; s <= 8 && ja && jb; s++) {
            append_for(ja, s, 1);
            append_for(jb, s, 0);
        }
        journal_destroy(&ja);
        journal_destroy(&jb);
        size_t la = 0, lb = 0;
        uint8_t *a = slurp(segfile(pa, sizeof pa, da, 1), &la), *b = slurp(segfile(pb, sizeof pb, db, 1), &lb);
        CHECK(a && b && la == lb);   /* lengths do not depend on the clock */
        int same_ms = a && b && la == lb;
        for (size_t o = SEG_HDR; same_ms && o + FRAME <= la; o += FRAME + rd32(a + o))
            same_ms = rd64(a + o + FRAME + 8) == rd64(b + o + FRAME + 8);
        if (same_ms) {
            compared = 1;
            CHECK(memcmp(a, b, la) == 0);
        }
        free(a);
        free(b);
        tbtest_rmtree(da);
        tbtest_rmtree(db);
    }
    if (!compared) printf("test_journal: digest vs no digest: not compared byte for byte (the clock moved)\n");
    for (i = 0; i < NB; i++) free(bs[i]);
}

/* In a version 2 segment, a changed byte of a record holding a
 * SignedBatch -- in the body (hashed through its digest), the signature,
 * the head -- is found: by the CRC, or with the CRC fixed by the chain;
 * also a batch built so that replacing the body by its digest alone,
 * without form byte, offset and length, would hash the same. */
static void test_v2_tamper(void)
{
    char dir[512], path[600], want[200];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("jv2tamper"));
    journal_t *j = jopen(dir, 0, NULL);
    if (!j) return;
    /* raw1 (record 10) and raw2: 0a 64 body1 7a 64 [66 bytes, 0a 64, D2] 12 40 sig and
     * 0a 64 [D1, 7a 64, 66 bytes] 0a 64 body2 12 40 sig, where Dn = SHA-256(bodyn) */
    uint8_t raw1[270], raw2[270], b1[100], b2[100], d1[32], d2[32], pad[66];
    fill(b1, sizeof b1, 1);
    fill(b2, sizeof b2, 2);
    fill(pad, sizeof pad, 3);
    sha256(b1, sizeof b1, d1);
    sha256(b2, sizeof b2, d2);
    uint8_t *p = raw1;
    memcpy(p, "\x0a\x64", 2), p += 2, memcpy(p, b1, 100), p += 100, memcpy(p, "\x7a\x64", 2), p += 2;
    memcpy(p, pad, 66), p += 66, memcpy(p, "\x0a\x64", 2), p += 2, memcpy(p, d2, 32), p += 32;
    memcpy(p, "\x12\x40", 2), p += 2, fill(p, 64, 4);
    p = raw2;
    memcpy(p, "\x0a\x64", 2), p += 2, memcpy(p, d1, 32), p += 32, memcpy(p, "\x7a\x64", 2), p += 2;
    memcpy(p, pad, 66), p += 66, memcpy(p, "\x0a\x64", 2), p += 2, memcpy(p, b2, 100), p += 100;
    memcpy(p, "\x12\x40", 2), p += 2, fill(p, 64, 4);
    size_t o1 = 0, l1 = 0, o2 = 0, l2 = 0;
    CHECK(jref_body(raw1, 270, &o1, &l1) && o1 == 2 && l1 == 100);
    CHECK(jref_body(raw2, 270, &o2, &l2) && o2 == 104 && l2 == 100);
    uint8_t n1[32], n2[32];
    sha256_cat(n1, 3, raw1, o1, d1, (size_t)32, raw1 + o1 + l1, 270 - o1 - l1);
    sha256_cat(n2, 3, raw2, o2, d2, (size_t)32, raw2 + o2 + l2, 270 - o2 - l2);
    CHECK(memcmp(raw1, raw2, 270) != 0 && memcmp(n1, n2, 32) == 0);   /* the substitution alone collides */

    for (uint64_t s = 1; s <= 20; s++) {
        uint8_t dig[32];
        if (s == 10) {
            CHECK(journal_append(j, "s", s, "d", raw1, sizeof raw1, d1, NULL, NULL, 0) == TB_OK);
            continue;
        }
        uint8_t sb[2000 + 200];
        size_t bo = 0, n = mk_signed(sb, 2000, s, &bo);
        sha256(sb + bo, 2000, dig);
        CHECK(journal_append(j, "s", s, "d", sb, n, dig, NULL, NULL, 0) == TB_OK);
    }
    journal_destroy(&j);
    segfile(path, sizeof path, dir, 1);
    CHECK(seg_version(dir, 1) == 2);
    long long offs[32];
    CHECK(rec_offsets(path, offs, 32) == 20);
    size_t len0 = 0;
    uint8_t *orig = slurp(path, &len0);
    long long batch9 = offs[8] + FRAME + BODY_FIXED + 2;   /* record 9: 0a d0 0f, body, 12 40 sig, ... */
    char crc_want[200];
    snprintf(crc_want, sizeof crc_want, "offset %lld: CRC mismatch (record 9)", offs[8]);
    snprintf(want, sizeof want, "offset %lld: hash chain broken at record 10", offs[9]);
    static const long long at[] = { 3 + 1000, 3 + 2000 + 2 + 10, 3, 1 };   /* body, signature, tag, length */
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        CHECK(flip(path, batch9 + at[i], 0x10) == 0);
        expect_open_fails(dir, 1, TB_ERR_PROTO, path, crc_want, "valid records follow", (const char *)NULL);
        CHECK(flip(path, batch9 + at[i], 0x10) == 0);
        tamper(path, offs[8], batch9 + at[i], 0x10);
        expect_open_fails(dir, 1, TB_ERR_PROTO, path, want, (const char *)NULL);
        CHECK(spit(path, orig, len0) == 0);
    }
    tamper(path, offs[8], offs[8] + FRAME + 50, 0x01);   /* sender_seq, in the head */
    expect_open_fails(dir, 1, TB_ERR_PROTO, want, (const char *)NULL);
    CHECK(spit(path, orig, len0) == 0);

    /* raw2 in place of raw1 (record 10) */
    long long batch10 = offs[9] + FRAME + BODY_FIXED + 2;
    CHECK(memcmp(orig + batch10, raw1, sizeof raw1) == 0);
    uint8_t *swapped = malloc(len0);
    if (swapped) {
        memcpy(swapped, orig, len0);
        memcpy(swapped + batch10, raw2, sizeof raw2);
        uint32_t bl = rd32(swapped + offs[9]);
        wr32(swapped + offs[9] + 4, crc32c_ref(swapped + offs[9] + FRAME, bl));
        CHECK(spit(path, swapped, len0) == 0);
        snprintf(want, sizeof want, "offset %lld: hash chain broken at record 11", offs[10]);
        expect_open_fails(dir, 1, TB_ERR_PROTO, path, want, (const char *)NULL);
        free(swapped);
    }
    CHECK(spit(path, orig, len0) == 0);
    journal_report_t rep;
    j = jopen(dir, 0, &rep);
    CHECK(rep.records == 20);
    journal_destroy(&j);
    free(orig);
    tbtest_rmtree(dir);
}

/* Journals of older releases: version 1 segments are read with their own
 * hash (the whole body, SignedBatch or not), the next append rolls to a
 * version 2 segment, the chain runs across, tampering on either side is
 * found, and gc's anchor holds the version 1 hash of the last removed
 * record. */
static void test_v1_segments(void)
{
    char dir[512], path[600], want[200], err[1024];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("jv1"));
    uint8_t prev[32] = { 0 }, h10[32];
    write_v1_segment(dir, 1, 5, prev);
    write_v1_segment(dir, 6, 5, prev);
    memcpy(h10, prev, 32);
    journal_report_t rep;
    journal_t *j = jopen(dir, 0, &rep);
    if (!j) return;
    CHECK(rep.records == 10 && rep.segments == 2 && rep.truncated_bytes == 0);
    for (uint64_t s = 11; s <= 16; s++) append_for(j, s, (int)(s % 2));
    jsync(j);
    CHECK(journal_segments(j) == 3);
    check_batches(j, 0, 16);
    journal_destroy(&j);
    CHECK(seg_version(dir, 1) == 1 && seg_version(dir, 6) == 1 && seg_version(dir, 11) == 2);
    memset(prev, 0, sizeof prev);
    CHECK(check_links(segfile(path, sizeof path, dir, 1), 1, prev) == 5);
    CHECK(check_links(segfile(path, sizeof path, dir, 6), 1, prev) == 5);
    CHECK(memcmp(prev, h10, 32) == 0);
    CHECK(check_links(segfile(path, sizeof path, dir, 11), 2, prev) == 6);
    j = jopen(dir, 0, &rep);
    CHECK(rep.records == 16 && rep.segments == 3);
    journal_destroy(&j);

    /* tampering in the version 1 part: in a SignedBatch body, within and across segments */
    static const struct { uint64_t first, rec, next; } cases[] = { { 1, 2, 3 }, { 1, 5, 6 }, { 6, 10, 11 } };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long long offs[8];
        size_t len0 = 0;
        segfile(path, sizeof path, dir, cases[i].first);
        uint8_t *orig = slurp(path, &len0);
        CHECK(rec_offsets(path, offs, 8) == 5);
        size_t k = (size_t)(cases[i].rec - cases[i].first);
        tamper(path, offs[k], offs[k] + FRAME + BODY_FIXED + 12 + 3 + 100, 0x20);
        snprintf(want, sizeof want, "hash chain broken at record %" PRIu64, cases[i].next);
        expect_open_fails(dir, 1, TB_ERR_PROTO, want, (const char *)NULL);
        CHECK(orig && spit(path, orig, len0) == 0);
        free(orig);
    }

    /* gc takes the version 1 segments; the anchor holds record 10's version 1 hash */
    size_t l6 = 0, removed = 0;
    uint8_t *s6 = slurp(segfile(path, sizeof path, dir, 6), &l6);
    j = jopen(dir, 0, NULL);
    CHECK(j && journal_gc(j, 16, 0, &removed, err, sizeof err) == TB_OK && removed == 2);
    journal_destroy(&j);
    char anchor[600];
    snprintf(anchor, sizeof anchor, "%s/anchor", dir);
    size_t al = 0;
    uint8_t *a = slurp(anchor, &al);
    CHECK(a && al == 52 && rd64(a + 8) == 10 && memcmp(a + 16, h10, 32) == 0);
    free(a);
    j = jopen(dir, 0, &rep);
    CHECK(rep.records == 6 && rep.first_seq == 11);
    journal_destroy(&j);
    /* a gc interrupted before unlinking segment 6: it is checked against the anchor, then removed */
    CHECK(s6 && spit(segfile(path, sizeof path, dir, 6), s6, l6) == 0);
    j = jopen(dir, 0, &rep);
    CHECK(rep.records == 6 && rep.first_seq == 11 && !exists(path));
    journal_destroy(&j);
    if (s6) {
        long long offs[8];
        CHECK(spit(path, s6, l6) == 0);
        CHECK(rec_offsets(path, offs, 8) == 5);
        tamper(path, offs[4], offs[4] + FRAME + BODY_FIXED + 12 + 3 + 5, 0x01);
        expect_open_fails(dir, 1, TB_ERR_PROTO, "does not hash to the anchor", (const char *)NULL);
        unlink(path);
    }
    free(s6);
    tbtest_rmtree(dir);

    /* an empty version 1 segment takes one record (version 1 hash), then the journal rolls */
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("jv1empty"));
    memset(prev, 0, sizeof prev);
    write_v1_segment(dir, 1, 0, prev);
    j = jopen(dir, 0, &rep);
    CHECK(rep.records == 0);
    append_for(j, 1, 1);
    append_for(j, 2, 1);
    journal_destroy(&j);
    CHECK(seg_version(dir, 1) == 1 && seg_version(dir, 2) == 2);
    CHECK(check_links(segfile(path, sizeof path, dir, 1), 1, prev) == 1);
    CHECK(check_links(segfile(path, sizeof path, dir, 2), 2, prev) == 1);
    tbtest_rmtree(dir);

    /* without chain verification at open, the last record's hash is taken by its segment's version */
    for (int last_v1 = 1; last_v1 >= 0; last_v1--) {
        snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("jv1noverify"));
        memset(prev, 0, sizeof prev);
        write_v1_segment(dir, 1, 4, prev);
        if (!last_v1) {
            j = jopen(dir, 0, NULL);
            append_for(j, 5, 1);
            journal_destroy(&j);
        }
        journal_opts_t o;
        journal_opts_init(&o);
        o.verify_chain = 0;
        CHECK(journal_open(dir, &o, &j, &rep, err, sizeof err) == TB_OK);
        uint64_t next = journal_last_seq(j) + 1;
        append_for(j, next, 1);
        journal_destroy(&j);
        j = jopen(dir, 0, &rep);
        CHECK(rep.records == next);
        check_batches(j, 0, next);
        journal_destroy(&j);
        tbtest_rmtree(dir);
    }
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
    CHECK(journal_append(j, "", 1, "d", b, 8, NULL, &hs, err, sizeof err) == TB_ERR_INVALID);
    CHECK(journal_append(j, name256, 1, "d", b, 8, NULL, &hs, err, sizeof err) == TB_ERR_INVALID);
    CHECK(journal_append(j, "s", 1, name256, b, 8, NULL, &hs, err, sizeof err) == TB_ERR_INVALID);
    CHECK(journal_append(j, "s", 1, "d", b, (size_t)JOURNAL_MAX_BATCH + 1, NULL, &hs, err, sizeof err) ==
          TB_ERR_INVALID);
    CHECK(strstr(err, "1 GiB") || strstr(err, "exceeds"));
    CHECK(journal_append(j, "s", 1, "d", NULL, 8, NULL, &hs, err, sizeof err) == TB_ERR_INVALID);
    CHECK(journal_last_seq(j) == 0);
    CHECK(journal_append(j, name255, 1, name255, b, 8, NULL, &hs, err, sizeof err) == TB_OK && hs == 1);
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
        rc = journal_append(j, "s", (uint64_t)i + 1, "d", batch, reclen, NULL, &hs, err, sizeof err);
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
    CHECK(journal_append(j, "s", ok + 1, "d", batch, reclen, NULL, NULL, err, sizeof err) == TB_ERR_IO);
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
        CHECK(journal_append(j, "s", ok + 1, "d", batch, reclen, NULL, &hs, err, sizeof err) == TB_OK && hs == ok + 1);
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
        if (journal_append(j, "110000", (uint64_t)i, i % 2 ? "320000" : "440000", batch, sizeof batch, NULL, NULL,
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
        journal_append(j, "110000", (uint64_t)i, "320000", batch, sizeof batch, NULL, NULL, NULL, 0);
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

    /* a SignedBatch the size of bench hub_relay's (1,000 entries of 512 bytes):
     * the journal hashing its body, or given the digest the signature check made */
    enum { BODY = 560000, M = 40 };
    size_t boff = 0;
    uint8_t *sb = malloc(BODY + 200), dig[32];
    if (!sb) return;
    size_t sblen = mk_signed(sb, BODY, 7, &boff);
    sha256(sb + boff, BODY, dig);
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("jperf2"));
    j = jopen(dir, 0, NULL);
    double t_with[2] = { 0, 0 };
    for (int i = 0; j && i < 2 * M; i++) {
        int with = i % 2;   /* alternate, so that both see the same page cache and disk */
        a = now_s();
        CHECK(journal_append(j, "110000", (uint64_t)i, "320000", sb, sblen, with ? dig : NULL, NULL, err,
                             sizeof err) == TB_OK);
        t_with[with] += now_s() - a;
        if (i % 10 == 9) jsync(j);
    }
    printf("test_journal: append of a %zu-byte SignedBatch: %.0f us hashing the body, %.0f us given its digest"
           " (mean of %d each, write to the page cache included)\n",
           sblen, t_with[0] * 1e6 / M, t_with[1] * 1e6 / M, M);
    journal_destroy(&j);
    free(sb);
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
    test_v2_digest();
    test_v2_tamper();
    test_v1_segments();
    test_gc();
    test_limits();
    test_enospc(256 * 1024, 8000, 128 * 1024);   /* fails in the middle of a segment */
    test_enospc(1, 8000, 128 * 1024);            /* fails writing a new segment's header */
    test_enospc(1, 5000, 132 * 1024);            /* header fits, its first record does not */
    test_perf();
    return tbtest_done("test_journal");
}
