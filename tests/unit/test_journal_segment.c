/* test_journal_segment.c -- the journal's segment format module (hub/journal_segment.c).
 *
 * Bytes and CRC32C, the SignedBatch body rule and the record hash (against
 * journal_ref.h), record heads and their parser, the segment header, the
 * sparse index, the I/O helpers, the anchor file, and the recovery scan of
 * one segment (torn tail, damage, hash chain, anchor, version 1, unwritten
 * segment) on segment files built here. */
#include "tbtest.h"

#include "journal_ref.h"
#include "journal_segment.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <openssl/evp.h>

/* ---- references and helpers ---- */

/* Returns the CRC32C of p[0..n), computed a bit at a time. */
static uint32_t ref_crc(const uint8_t *p, size_t n)
{
    uint32_t c = ~0u;
    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++) c = c & 1u ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    }
    return ~c;
}

/* Stores v little-endian in w bytes at p. Returns nothing. */
static void le(uint8_t *p, uint64_t v, int w)
{
    for (int i = 0; i < w; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Returns the w-byte little-endian value at p. */
static uint64_t unle(const uint8_t *p, int w)
{
    uint64_t v = 0;
    for (int i = w - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* Fills p with n bytes derived from seed. Returns p. */
static uint8_t *noise(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed * 6364136223846793005ull + 1442695040888963407ull;
    for (size_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        p[i] = (uint8_t)(x >> 56);
    }
    return p;
}

/* Builds a SignedBatch (field 1 body of n bytes, field 2 a 64-byte signature,
 * field 4 alg 1) in out. Returns its length; *off is where the body starts. */
static size_t signed_batch(uint8_t *out, size_t n, uint64_t seed, size_t *off)
{
    size_t i = 0;
    out[i++] = 0x0a;
    for (size_t v = n; ; v >>= 7) {
        out[i++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        if (v <= 0x7f) break;
    }
    *off = i;
    noise(out + i, n, seed);
    i += n;
    out[i++] = 0x12;
    out[i++] = 64;
    noise(out + i, 64, ~seed);
    i += 64;
    out[i++] = 0x20;
    out[i++] = 1;
    return i;
}

/* Writes len bytes to path (replacing it). Returns 0 or -1. */
static int write_file(const char *path, const uint8_t *b, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int ok = fd >= 0 && write(fd, b, len) == (ssize_t)len;
    if (fd >= 0) close(fd);
    return ok ? 0 : -1;
}

/* Returns the size of path, or -1 if it does not exist. */
static long long size_of(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* A segment file being built in memory. */
typedef struct {
    uint8_t b[64 * 1024];
    size_t len;
    uint64_t off[64];       /* offset of each record */
    size_t n;
    uint8_t prev[32];       /* hash of the last record (reference) */
} seg_img_t;

/* Starts img with the header of a segment starting at first, version 1 or 2. Returns nothing. */
static void img_start(seg_img_t *img, uint64_t first, uint32_t version, const uint8_t prev[32])
{
    memset(img, 0, sizeof *img);
    jseg_header_encode(img->b, first);
    if (version != JSEG_VERSION) {
        le(img->b + 4, version, 4);
        le(img->b + 20, ref_crc(img->b, 20), 4);
    }
    img->len = JSEG_HDR;
    if (prev) memcpy(img->prev, prev, 32);
}

/* Appends record seq (batch: n bytes from seed, or a SignedBatch if sig)
 * chained to img->prev and advances img->prev by the reference hash. Returns nothing. */
static void img_add(seg_img_t *img, uint32_t version, uint64_t seq, size_t n, uint64_t seed, int sig)
{
    uint8_t batch[4096];
    size_t off = 0, len = sig ? signed_batch(batch, n, seed, &off) : n;
    if (!sig) noise(batch, n, seed);
    char sender[16], dest[16];
    snprintf(sender, sizeof sender, "s%" PRIu64, seq);
    snprintf(dest, sizeof dest, "d%" PRIu64, seq % 3);
    jrec_t rec = { .hub_seq = seq, .accepted_ms = 1700000000000 + (int64_t)seq, .sender = sender,
                   .sender_seq = seq * 10, .dest = dest, .batch = batch, .batch_len = len };
    size_t h = jseg_record_head(img->b + img->len, &rec, img->prev);
    memcpy(img->b + img->len + h, batch, len);
    uint8_t *body = img->b + img->len + JSEG_FRAME;
    CHECK(jref_hash(version, body, h - JSEG_FRAME, h - JSEG_FRAME + len, img->prev) == 0);
    img->off[img->n++] = img->len;
    img->len += h + len;
}

/* What on_record saw. */
typedef struct {
    uint64_t n, last_seq;
    int bad;
} seen_t;

/* on_record: hub_seq strictly increasing, sender and dest as img_add writes them. */
static void on_rec(void *arg, const jrec_t *rec)
{
    seen_t *s = arg;
    char want[16];
    snprintf(want, sizeof want, "s%" PRIu64, rec->hub_seq);
    if (rec->hub_seq <= s->last_seq || strcmp(rec->sender, want) != 0 || rec->sender_seq != rec->hub_seq * 10 ||
        rec->accepted_ms != 1700000000000 + (int64_t)rec->hub_seq)
        s->bad++;
    snprintf(want, sizeof want, "d%" PRIu64, rec->hub_seq % 3);
    if (strcmp(rec->dest, want) != 0) s->bad++;
    s->last_seq = rec->hub_seq;
    s->n++;
}

/* One scan of one segment with its own state. */
typedef struct {
    jseg_scan_t sc;
    journal_opts_t opts;
    jseg_t seg;
    seen_t seen;
    int dropped;
    char err[1024];
} run_t;

/* Prepares r for scanning the segment starting at first with chain
 * verification verify; the chain starts at the zero hash. Returns nothing. */
static void run_init(run_t *r, jseg_sha_t *sha, uint64_t first, int verify)
{
    memset(r, 0, sizeof *r);
    journal_opts_init(&r->opts);
    r->opts.verify_chain = verify;
    r->opts.on_record = on_rec;
    r->opts.arg = &r->seen;
    r->sc.sha = sha;
    r->sc.opts = &r->opts;
    r->sc.sb.fd = -1;
    r->sc.have_prev = 1;
    r->seg.first_seq = first;
    r->seg.last_seq = first - 1;
    r->seg.fd = -1;
}

/* Scans r's segment (the i-th, is_last) in dir. Returns what jseg_scan returned. */
static tb_err_t run_scan(run_t *r, const char *dir, size_t i, int is_last)
{
    tb_err_t rc = jseg_scan(&r->sc, dir, &r->seg, i, is_last, &r->dropped, r->err, sizeof r->err);
    return rc;
}

/* Frees what a run allocated. Returns nothing. */
static void run_free(run_t *r)
{
    free(r->sc.sb.buf);
    free(r->seg.idx);
    r->sc.sb.buf = NULL;
    r->seg.idx = NULL;
}

/* Writes img as the segment of dir starting at first. Returns the path (static per call site: copy it). */
static const char *put_seg(const char *dir, uint64_t first, const seg_img_t *img, char *path, size_t len)
{
    jseg_path(dir, first, path, len);
    CHECK(write_file(path, img->b, img->len) == 0);
    return path;
}

/* ---- tests ---- */

/* Little-endian reads and CRC32C against the bit-by-bit reference. */
static void test_bytes(void)
{
    uint8_t b[8] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x88 };
    CHECK(jseg_get32(b) == 0x04030201u);
    CHECK(jseg_get64(b) == 0x8807060504030201ull);
    CHECK(jseg_crc32c((const uint8_t *)"123456789", 9) == 0xE3069283u);
    CHECK(jseg_crc32c(b, 0) == 0);
    uint8_t buf[3000];
    noise(buf, sizeof buf, 42);
    for (size_t n = 0; n < sizeof buf; n += 37) CHECK_MSG(jseg_crc32c(buf, n) == ref_crc(buf, n), "n=%zu", n);
}

/* The SignedBatch body rule: plain batches, edge cases, and random bytes against journal_ref.h. */
static void test_find_body(void)
{
    uint8_t b[512];
    size_t off = 99, len = 99, roff = 0, rlen = 0;
    size_t n = signed_batch(b, 300, 7, &off);
    size_t want_off = off;
    CHECK(jseg_find_body(b, n, &off, &len) == 1 && off == want_off && len == 300);
    CHECK(jseg_find_body(b, 0, &off, &len) == 0);
    /* no field 1 */
    const uint8_t nobody[] = { 0x12, 0x02, 'x', 'y', 0x20, 0x01 };
    CHECK(jseg_find_body(nobody, sizeof nobody, &off, &len) == 0);
    /* field 1 as a varint is no body */
    const uint8_t varint1[] = { 0x08, 0x05 };
    CHECK(jseg_find_body(varint1, sizeof varint1, &off, &len) == 0);
    /* the last field 1 wins; an empty body counts */
    const uint8_t two[] = { 0x0a, 0x02, 'a', 'b', 0x12, 0x01, 'z', 0x0a, 0x00 };
    CHECK(jseg_find_body(two, sizeof two, &off, &len) == 1 && off == 9 && len == 0);
    const uint8_t two2[] = { 0x0a, 0x02, 'a', 'b', 0x0a, 0x03, 'c', 'd', 'e', 0x15, 1, 2, 3, 4 };
    CHECK(jseg_find_body(two2, sizeof two2, &off, &len) == 1 && off == 6 && len == 3);
    /* a field running past the end, a fixed64 cut short, wire type 3, an 11-byte varint */
    const uint8_t overrun[] = { 0x0a, 0x05, 'a', 'b' };
    const uint8_t short64[] = { 0x0a, 0x01, 'a', 0x09, 1, 2, 3 };
    const uint8_t group[] = { 0x0a, 0x01, 'a', 0x0b };
    const uint8_t longv[] = { 0x0a, 0x01, 'a', 0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02 };
    CHECK(jseg_find_body(overrun, sizeof overrun, &off, &len) == 0);
    CHECK(jseg_find_body(short64, sizeof short64, &off, &len) == 0);
    CHECK(jseg_find_body(group, sizeof group, &off, &len) == 0);
    CHECK(jseg_find_body(longv, sizeof longv, &off, &len) == 0);
    /* random mutations of a SignedBatch: the same answer as the reference */
    int found = 0;
    for (uint64_t seed = 1; seed <= 3000; seed++) {
        uint8_t m[512];
        size_t mn = signed_batch(m, seed % 200, seed, &off);
        uint8_t r[4];
        noise(r, sizeof r, seed * 31);
        m[r[0] % mn] ^= (uint8_t)(1u << (r[1] % 8));
        if (seed % 3 == 0) mn -= r[2] % 4 < mn ? r[2] % 4 : 0;
        int a = jseg_find_body(m, mn, &off, &len), e = jref_body(m, mn, &roff, &rlen);
        CHECK_MSG(a == e && (!a || (off == roff && len == rlen)), "seed %" PRIu64 ": %d/%d", seed, a, e);
        found += a;
    }
    CHECK(found > 100 && found < 3000);   /* both kinds of batch were tried */
}

/* A record head: the documented bytes, a CRC over head and batch, and jseg_parse_head reading it back. */
static void test_record_head(void)
{
    uint8_t out[JSEG_HEAD_MAX + 16], prev[32], batch[100];
    noise(prev, 32, 1);
    noise(batch, sizeof batch, 2);
    jrec_t rec = { .hub_seq = 0x0102030405060708ull, .accepted_ms = -5, .sender = "110000", .sender_seq = 77,
                   .dest = "topic:population", .batch = batch, .batch_len = sizeof batch };
    size_t h = jseg_record_head(out, &rec, prev);
    size_t s = 6, d = 16, head = JSEG_BODY_FIXED + s + d;
    CHECK(h == JSEG_FRAME + head);
    const uint8_t *b = out + JSEG_FRAME;
    CHECK(unle(out, 4) == head + sizeof batch);
    CHECK(unle(b, 8) == 0x0102030405060708ull);
    CHECK((int64_t)unle(b + 8, 8) == -5);
    CHECK(memcmp(b + 16, prev, 32) == 0);
    CHECK(unle(b + 48, 2) == s && memcmp(b + 50, "110000", s) == 0);
    CHECK(unle(b + 50 + s, 8) == 77);
    CHECK(unle(b + 58 + s, 2) == d && memcmp(b + 60 + s, "topic:population", d) == 0);
    CHECK(unle(b + 60 + s + d, 4) == sizeof batch);
    uint8_t whole[JSEG_HEAD_MAX + 100];
    memcpy(whole, b, head);
    memcpy(whole + head, batch, sizeof batch);
    CHECK(unle(out + 4, 4) == ref_crc(whole, head + sizeof batch));

    jseg_body_t p;
    uint32_t len = (uint32_t)(head + sizeof batch);
    CHECK(jseg_parse_head(whole, head + sizeof batch, len, &p) == NULL);
    CHECK(p.seq == rec.hub_seq && p.ms == -5 && p.prev == whole + 16 && p.slen == s && p.dlen == d);
    CHECK(p.sender == whole + 50 && p.dest == whole + 60 + s && p.sender_seq == 77);
    CHECK(p.blen == sizeof batch && p.batch_off == head);
    /* avail may stop at the end of the head */
    CHECK(jseg_parse_head(whole, head, len, &p) == NULL);

    /* malformed heads: each check names its fault */
    const char *why;
    CHECK((why = jseg_parse_head(whole, 10, len, &p)) && strcmp(why, "short head") == 0);
    CHECK((why = jseg_parse_head(whole, head, JSEG_BODY_MIN - 1, &p)) && strcmp(why, "body too short") == 0);
    CHECK((why = jseg_parse_head(whole, head, len + 1, &p)) && strstr(why, "batch length"));
    CHECK((why = jseg_parse_head(whole, head - 1, len, &p)) && strstr(why, "dest overruns"));
    uint8_t bad[sizeof whole];
    memcpy(bad, whole, sizeof bad);
    le(bad + 48, 0, 2);
    CHECK((why = jseg_parse_head(bad, head, len, &p)) && strcmp(why, "bad sender length") == 0);
    le(bad + 48, 256, 2);
    CHECK((why = jseg_parse_head(bad, head, len, &p)) && strcmp(why, "bad sender length") == 0);
    memcpy(bad, whole, sizeof bad);
    le(bad + 58 + s, 0, 2);
    CHECK((why = jseg_parse_head(bad, head, len, &p)) && strcmp(why, "bad dest length") == 0);
    memcpy(bad, whole, sizeof bad);
    bad[52] = 0;
    CHECK((why = jseg_parse_head(bad, head, len, &p)) && strstr(why, "NUL byte"));
}

/* Record hashes of both versions and both forms against journal_ref.h, and when the caller's digest counts. */
static void test_record_hash(void)
{
    jseg_sha_t *sha = jseg_sha_new();
    CHECK(sha != NULL);
    if (!sha) return;
    uint8_t body[4096], got[32], want[32], dig[32], wrong[32];
    size_t head = 80;
    noise(body, head, 3);
    size_t off = 0, n = signed_batch(body + head, 1000, 4, &off);
    unsigned int dl = 0;
    CHECK(EVP_Digest(body + head + off, 1000, dig, &dl, EVP_sha256(), NULL) == 1);
    memset(wrong, 0xAB, sizeof wrong);

    /* version 2 with a SignedBatch body: computed or the caller's (right) digest give the reference */
    CHECK(jref_hash(2, body, head, head + n, want) == 0);
    CHECK(jseg_record_hash(sha, 2, body, head, body + head, n, NULL, got) == 0 && memcmp(got, want, 32) == 0);
    CHECK(jseg_record_hash(sha, 2, body, head, body + head, n, dig, got) == 0 && memcmp(got, want, 32) == 0);
    /* a wrong digest goes into the hash as it is */
    CHECK(jseg_record_hash(sha, 2, body, head, body + head, n, wrong, got) == 0 && memcmp(got, want, 32) != 0);
    /* version 1: SHA-256 of the body, the digest ignored */
    CHECK(jref_hash(1, body, head, head + n, want) == 0);
    CHECK(jseg_record_hash(sha, 1, body, head, body + head, n, wrong, got) == 0 && memcmp(got, want, 32) == 0);
    CHECK(EVP_Digest(body, head + n, dig, &dl, EVP_sha256(), NULL) == 1 && memcmp(dig, want, 32) == 0);
    /* version 2 without a body, and an empty batch */
    noise(body + head, 500, 5);
    body[head] = 0x0b;   /* wire type 3: not a SignedBatch */
    CHECK(jref_hash(2, body, head, head + 500, want) == 0);
    CHECK(jseg_record_hash(sha, 2, body, head, body + head, 500, wrong, got) == 0 && memcmp(got, want, 32) == 0);
    CHECK(jref_hash(2, body, head, head, want) == 0);
    CHECK(jseg_record_hash(sha, 2, body, head, body + head, 0, NULL, got) == 0 && memcmp(got, want, 32) == 0);
    /* tb_signed_batch_view refuses a key id with a NUL byte: the digest is not used */
    const uint8_t nulkey[] = { 0x0a, 0x03, 'a', 'b', 'c', 0x1a, 0x01, 0x00 };
    memcpy(body + head, nulkey, sizeof nulkey);
    CHECK(jref_hash(2, body, head, head + sizeof nulkey, want) == 0);
    CHECK(jseg_record_hash(sha, 2, body, head, body + head, sizeof nulkey, wrong, got) == 0 &&
          memcmp(got, want, 32) == 0);
    jseg_sha_destroy(&sha);
    CHECK(sha == NULL);
    jseg_sha_destroy(&sha);   /* NULL-safe */
    jseg_sha_destroy(NULL);
}

/* Segment header, file name and sparse index. */
static void test_header_path_index(void)
{
    uint8_t h[JSEG_HDR];
    jseg_header_encode(h, 12345);
    CHECK(memcmp(h, "TBJ1", 4) == 0 && unle(h + 4, 4) == 2 && unle(h + 8, 8) == 12345 && unle(h + 16, 4) == 0);
    CHECK(unle(h + 20, 4) == ref_crc(h, 20));

    char p[64];
    CHECK(strcmp(jseg_path("/j", 1, p, sizeof p), "/j/00000000000000000001.tbj") == 0);
    CHECK(strcmp(jseg_path("d", 18446744073709551615ull, p, sizeof p), "d/18446744073709551615.tbj") == 0);

    jseg_t s;
    memset(&s, 0, sizeof s);
    s.first_seq = 1001;
    uint64_t off = JSEG_HDR;
    for (uint64_t seq = 1001; seq < 1001 + 1000; seq++) {
        CHECK(jseg_index_add(&s, seq, off) == 0);
        off += 100;
    }
    /* every 256th record: 1001, 1257, 1513, 1769 */
    CHECK(s.nidx == 4);
    CHECK(s.nidx >= 2 && s.idx[0].seq == 1001 && s.idx[0].off == JSEG_HDR && s.idx[1].seq == 1257 &&
          s.idx[1].off == JSEG_HDR + 256 * 100);
    /* or 1 MiB after the last entry */
    CHECK(jseg_index_add(&s, 2001, s.idx[s.nidx - 1].off + (1u << 20) - 1) == 0 && s.nidx == 4);
    CHECK(jseg_index_add(&s, 2002, s.idx[s.nidx - 1].off + (1u << 20)) == 0 && s.nidx == 5);
    CHECK(s.idx[4].seq == 2002);
    free(s.idx);
}

/* pwritev_all over several pieces, pread_full and its end-of-file error. */
static void test_io(void)
{
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("jsegio"));
    snprintf(path, sizeof path, "%s/f", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0);
    if (fd < 0) return;
    uint8_t a[100], b[70000], back[70100];
    noise(a, sizeof a, 8);
    noise(b, sizeof b, 9);
    struct iovec iov[4] = { { NULL, 0 }, { a, sizeof a }, { NULL, 0 }, { b, sizeof b } };
    CHECK(jseg_pwritev_all(fd, iov, 4, 10) == 0);
    CHECK(size_of(path) == 10 + (long long)sizeof a + (long long)sizeof b);
    CHECK(jseg_pread_full(fd, back, sizeof a + sizeof b, 10) == 0);
    CHECK(memcmp(back, a, sizeof a) == 0 && memcmp(back + sizeof a, b, sizeof b) == 0);
    errno = EINVAL;
    CHECK(jseg_pread_full(fd, back, 20, 10 + sizeof a + sizeof b - 10) == -1 && errno == 0);
    CHECK(strcmp(jseg_ioerr(0), "unexpected end of file") == 0);
    CHECK(strcmp(jseg_ioerr(ENOSPC), strerror(ENOSPC)) == 0);
    close(fd);
    CHECK(jseg_pread_full(fd, back, 1, 0) == -1 && errno == EBADF);
    tbtest_rmtree(dir);
}

/* The anchor file: written, read back, absent, damaged; a leftover anchor.tmp is removed. */
static void test_anchor(void)
{
    char dir[512], path[600], err[1024] = "";
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("jseganchor"));
    jseg_scan_t sc;
    memset(&sc, 0, sizeof sc);
    CHECK(jseg_anchor_read(&sc, dir, err, sizeof err) == TB_OK && sc.have_anchor == 0);

    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    uint8_t h[32];
    noise(h, 32, 11);
    CHECK(jseg_anchor_write(dir, dfd, 4242, h, err, sizeof err) == TB_OK);
    snprintf(path, sizeof path, "%s/anchor", dir);
    CHECK(size_of(path) == 52);
    snprintf(path, sizeof path, "%s/anchor.tmp", dir);
    CHECK(size_of(path) == -1);
    CHECK(write_file(path, h, 3) == 0);   /* a gc that died before its rename */
    CHECK(jseg_anchor_read(&sc, dir, err, sizeof err) == TB_OK);
    CHECK(sc.have_anchor == 1 && sc.anchor_seq == 4242 && memcmp(sc.anchor_hash, h, 32) == 0);
    CHECK(size_of(path) == -1);

    /* the bytes: magic, version, seq, hash, CRC */
    uint8_t a[52];
    snprintf(path, sizeof path, "%s/anchor", dir);
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0 && jseg_pread_full(fd, a, 52, 0) == 0);
    if (fd >= 0) close(fd);
    CHECK(memcmp(a, "TBA1", 4) == 0 && unle(a + 4, 4) == 1 && unle(a + 8, 8) == 4242);
    CHECK(memcmp(a + 16, h, 32) == 0 && unle(a + 48, 4) == ref_crc(a, 48));

    a[20] ^= 1;
    CHECK(write_file(path, a, 52) == 0);
    memset(&sc, 0, sizeof sc);
    CHECK(jseg_anchor_read(&sc, dir, err, sizeof err) == TB_ERR_PROTO && strstr(err, "bad anchor file"));
    CHECK(write_file(path, a, 51) == 0);
    CHECK(jseg_anchor_read(&sc, dir, err, sizeof err) == TB_ERR_PROTO && strstr(err, "51 bytes, expected 52"));
    CHECK(jseg_anchor_write(dir, dfd, 0, h, err, sizeof err) == TB_OK);
    CHECK(jseg_anchor_read(&sc, dir, err, sizeof err) == TB_ERR_PROTO && strstr(err, "hub_seq 0"));
    CHECK(jseg_anchor_write("/nonexistent/dir", dfd, 1, h, err, sizeof err) == TB_ERR_IO &&
          strstr(err, "/nonexistent/dir/anchor.tmp"));
    if (dfd >= 0) close(dfd);
    tbtest_rmtree(dir);
}

/* A clean segment: every record reported, the segment's state, the chain hash, the index; hash_record_at. */
static void test_scan_clean(void)
{
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("jsegscan"));
    jseg_sha_t *sha = jseg_sha_new();
    static seg_img_t img;
    img_start(&img, 1, JSEG_VERSION, NULL);
    for (uint64_t q = 1; q <= 20; q++) img_add(&img, 2, q, 50 + q * 13, q, q % 2);
    put_seg(dir, 1, &img, path, sizeof path);

    run_t r;
    run_init(&r, sha, 1, 1);
    tb_err_t rc = run_scan(&r, dir, 0, 1);
    CHECK_MSG(rc == TB_OK, "%s: %s", tb_strerror(rc), r.err);
    CHECK(r.dropped == 0);
    CHECK(r.seen.n == 20 && r.seen.bad == 0 && r.seen.last_seq == 20);
    CHECK(r.sc.rep.records == 20 && r.sc.rep.first_seq == 1 && r.sc.rep.truncated_bytes == 0);
    CHECK(r.sc.expect == 21 && r.seg.last_seq == 20 && r.seg.size == img.len && r.seg.version == 2);
    CHECK(r.seg.last_ms == 1700000000020);
    CHECK(memcmp(r.sc.prev, img.prev, 32) == 0);   /* the chain, hashed as the reference does */
    CHECK(r.seg.nidx == 1 && r.seg.idx && r.seg.idx[0].seq == 1 && r.seg.idx[0].off == JSEG_HDR);
    CHECK(r.sc.have_last && r.sc.last_first == 1 && r.sc.last_off == img.off[19] && r.sc.last_version == 2);
    CHECK(r.sc.last_len == img.len - img.off[19] - JSEG_FRAME);

    uint8_t h[32];
    char err[1024] = "";
    CHECK(jseg_hash_record_at(sha, dir, 1, r.sc.last_off, r.sc.last_len, 2, h, err, sizeof err) == TB_OK);
    CHECK(memcmp(h, img.prev, 32) == 0);
    CHECK(jseg_hash_record_at(sha, dir, 1, r.sc.last_off, r.sc.last_len, 1, h, err, sizeof err) == TB_OK);
    CHECK(memcmp(h, img.prev, 32) != 0);   /* another version, another hash */
    CHECK(jseg_hash_record_at(sha, dir, 1, img.off[3] + 1, 100, 2, h, err, sizeof err) == TB_ERR_PROTO &&
          strstr(err, "malformed record"));
    CHECK(jseg_hash_record_at(sha, dir, 2, img.off[3], 100, 2, h, err, sizeof err) == TB_ERR_IO &&
          strstr(err, "00000000000000000002.tbj"));
    run_free(&r);

    /* without verify_chain the chain hash is not computed, and on_record may be NULL */
    run_init(&r, sha, 1, 0);
    r.opts.on_record = NULL;
    CHECK(run_scan(&r, dir, 0, 1) == TB_OK && r.sc.expect == 21 && r.sc.rep.records == 20 && r.seen.n == 0);
    run_free(&r);
    jseg_sha_destroy(&sha);
    tbtest_rmtree(dir);
}

/* A torn tail is cut from the last segment only; damage with valid records after it is refused. */
static void test_scan_tail(void)
{
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("jsegtail"));
    jseg_sha_t *sha = jseg_sha_new();
    static seg_img_t img, torn;
    img_start(&img, 1, JSEG_VERSION, NULL);
    for (uint64_t q = 1; q <= 5; q++) img_add(&img, 2, q, 200, q, 0);
    run_t r;

    /* a partial frame after the last record */
    torn = img;
    memset(torn.b + torn.len, 0x5A, 6);
    torn.len += 6;
    put_seg(dir, 1, &torn, path, sizeof path);
    run_init(&r, sha, 1, 1);
    CHECK_MSG(run_scan(&r, dir, 0, 1) == TB_OK, "%s", r.err);
    CHECK(r.sc.rep.truncated_bytes == 6 && r.seg.size == img.len && size_of(path) == (long long)img.len);
    CHECK(r.seen.n == 5 && r.seg.last_seq == 5);
    run_free(&r);

    /* the same in a sealed segment is damage, and nothing is cut */
    put_seg(dir, 1, &torn, path, sizeof path);
    run_init(&r, sha, 1, 1);
    CHECK(run_scan(&r, dir, 0, 0) == TB_ERR_PROTO && strstr(r.err, "in a sealed segment") &&
          strstr(r.err, "incomplete record frame"));
    CHECK(size_of(path) == (long long)torn.len);
    run_free(&r);

    /* a flipped byte in the last record: a torn tail */
    torn = img;
    torn.b[torn.off[4] + JSEG_FRAME + 70] ^= 0x10;
    put_seg(dir, 1, &torn, path, sizeof path);
    run_init(&r, sha, 1, 1);
    CHECK_MSG(run_scan(&r, dir, 0, 1) == TB_OK, "%s", r.err);
    CHECK(r.seg.last_seq == 4 && r.seg.size == img.off[4] && r.sc.rep.truncated_bytes == img.len - img.off[4]);
    run_free(&r);

    /* a flipped byte in the middle record, valid records after it */
    torn = img;
    torn.b[torn.off[2] + JSEG_FRAME + 70] ^= 0x10;
    put_seg(dir, 1, &torn, path, sizeof path);
    run_init(&r, sha, 1, 1);
    CHECK(run_scan(&r, dir, 0, 1) == TB_ERR_PROTO && strstr(r.err, "CRC mismatch") &&
          strstr(r.err, "valid records follow"));
    char want[64];
    snprintf(want, sizeof want, "offset %" PRIu64 ":", torn.off[2]);
    CHECK_MSG(strstr(r.err, want) != NULL, "%s", r.err);
    CHECK(size_of(path) == (long long)img.len);
    run_free(&r);

    /* an absurd record length */
    torn = img;
    le(torn.b + torn.off[1], 3, 4);
    put_seg(dir, 1, &torn, path, sizeof path);
    run_init(&r, sha, 1, 1);
    CHECK(run_scan(&r, dir, 0, 1) == TB_ERR_PROTO && strstr(r.err, "invalid record length 3"));
    run_free(&r);

    /* a header that never reached the disk: the last segment is removed */
    uint8_t zeros[100] = { 0 };
    CHECK(write_file(path, zeros, sizeof zeros) == 0);
    run_init(&r, sha, 1, 1);
    CHECK_MSG(run_scan(&r, dir, 0, 1) == TB_OK, "%s", r.err);
    CHECK(r.dropped == 1 && size_of(path) == -1 && r.sc.rep.truncated_bytes == 100);
    run_free(&r);
    /* ... but not a sealed one */
    CHECK(write_file(path, zeros, 10) == 0);
    run_init(&r, sha, 1, 1);
    CHECK(run_scan(&r, dir, 0, 0) == TB_ERR_PROTO && strstr(r.err, "segment header incomplete") && !r.dropped);
    run_free(&r);
    jseg_sha_destroy(&sha);
    tbtest_rmtree(dir);
}

/* Headers, hub_seq gaps, the hash chain, the anchor and a version 1 segment. */
static void test_scan_chain(void)
{
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("jsegchain"));
    jseg_sha_t *sha = jseg_sha_new();
    static seg_img_t img, bad;
    run_t r;

    /* a segment after an anchor at 9: its first prev_hash must be the anchor's */
    uint8_t ah[32];
    noise(ah, 32, 99);
    img_start(&img, 10, JSEG_VERSION, ah);
    for (uint64_t q = 10; q < 16; q++) img_add(&img, 2, q, 120, q, 1);
    put_seg(dir, 10, &img, path, sizeof path);
    run_init(&r, sha, 10, 1);
    r.sc.have_anchor = 1;
    r.sc.anchor_seq = 9;
    memcpy(r.sc.anchor_hash, ah, 32);
    memcpy(r.sc.prev, ah, 32);
    CHECK_MSG(run_scan(&r, dir, 0, 1) == TB_OK, "%s", r.err);
    CHECK(r.seen.n == 6 && r.sc.rep.first_seq == 10 && memcmp(r.sc.prev, img.prev, 32) == 0);
    run_free(&r);
    run_init(&r, sha, 10, 0);   /* checked even without verify_chain */
    r.sc.have_anchor = 1;
    r.sc.anchor_seq = 9;
    ah[0] ^= 1;
    memcpy(r.sc.anchor_hash, ah, 32);
    CHECK(run_scan(&r, dir, 0, 1) == TB_ERR_PROTO && strstr(r.err, "hash chain broken at record 10") &&
          strstr(r.err, "the anchor file"));
    run_free(&r);
    /* without an anchor the segment should start at 1 */
    run_init(&r, sha, 10, 1);
    CHECK(run_scan(&r, dir, 0, 1) == TB_ERR_PROTO && strstr(r.err, "expected 1 and there is no anchor file"));
    run_free(&r);

    /* a record whose prev_hash is wrong (CRC fixed up) */
    img_start(&img, 1, JSEG_VERSION, NULL);
    for (uint64_t q = 1; q <= 4; q++) img_add(&img, 2, q, 120, q, 1);
    bad = img;
    uint8_t *b3 = bad.b + bad.off[2];
    b3[JSEG_FRAME + 20] ^= 1;
    uint32_t blen = (uint32_t)unle(b3, 4);
    le(b3 + 4, ref_crc(b3 + JSEG_FRAME, blen), 4);
    put_seg(dir, 1, &bad, path, sizeof path);
    run_init(&r, sha, 1, 1);
    CHECK(run_scan(&r, dir, 0, 1) == TB_ERR_PROTO && strstr(r.err, "hash chain broken at record 3") &&
          strstr(r.err, "not the hash of record 2"));
    run_free(&r);
    run_init(&r, sha, 1, 0);
    CHECK_MSG(run_scan(&r, dir, 0, 1) == TB_OK && r.seen.n == 4, "%s", r.err);   /* not verified */
    run_free(&r);

    /* a gap in hub_seq inside the segment */
    bad = img;
    b3 = bad.b + bad.off[2];
    le(b3 + JSEG_FRAME, 7, 8);
    le(b3 + 4, ref_crc(b3 + JSEG_FRAME, blen), 4);
    put_seg(dir, 1, &bad, path, sizeof path);
    run_init(&r, sha, 1, 1);
    CHECK(run_scan(&r, dir, 0, 1) == TB_ERR_PROTO && strstr(r.err, "expected 3, found 7"));
    run_free(&r);

    /* segment headers: magic, CRC, version, name vs content */
    bad = img;
    bad.b[0] = 'X';
    put_seg(dir, 1, &bad, path, sizeof path);
    run_init(&r, sha, 1, 1);
    CHECK(run_scan(&r, dir, 0, 1) == TB_ERR_PROTO && strstr(r.err, "magic is not TBJ1"));
    run_free(&r);
    bad = img;
    bad.b[17] = 1;
    put_seg(dir, 1, &bad, path, sizeof path);
    run_init(&r, sha, 1, 1);
    CHECK(run_scan(&r, dir, 0, 1) == TB_ERR_PROTO && strstr(r.err, "bad segment header (CRC mismatch)"));
    run_free(&r);
    bad = img;
    le(bad.b + 4, 3, 4);
    le(bad.b + 20, ref_crc(bad.b, 20), 4);
    put_seg(dir, 1, &bad, path, sizeof path);
    run_init(&r, sha, 1, 1);
    CHECK(run_scan(&r, dir, 0, 1) == TB_ERR_PROTO && strstr(r.err, "unsupported segment version 3"));
    run_free(&r);
    jseg_path(dir, 1, path, sizeof path);
    unlink(path);
    put_seg(dir, 2, &img, path, sizeof path);   /* a header for 1 in the file of 2 */
    run_init(&r, sha, 2, 1);
    r.sc.expect = 2;
    CHECK(run_scan(&r, dir, 1, 1) == TB_ERR_PROTO && strstr(r.err, "the file name says 2"));
    run_free(&r);
    unlink(path);

    /* a version 1 segment of an older release, then a version 2 one chained to it */
    img_start(&img, 1, JSEG_VERSION_OLD, NULL);
    for (uint64_t q = 1; q <= 3; q++) img_add(&img, 1, q, 300, q, 1);
    put_seg(dir, 1, &img, path, sizeof path);
    bad = img;   /* only its prev is wanted */
    img_start(&img, 4, JSEG_VERSION, bad.prev);
    for (uint64_t q = 4; q <= 6; q++) img_add(&img, 2, q, 300, q, 1);
    put_seg(dir, 4, &img, path, sizeof path);
    run_init(&r, sha, 1, 1);
    CHECK_MSG(run_scan(&r, dir, 0, 0) == TB_OK, "%s", r.err);
    CHECK(r.seg.version == 1 && r.seg.last_seq == 3 && memcmp(r.sc.prev, bad.prev, 32) == 0);
    free(r.seg.idx);
    memset(&r.seg, 0, sizeof r.seg);
    r.seg.first_seq = 4;
    r.seg.last_seq = 3;
    CHECK_MSG(run_scan(&r, dir, 1, 1) == TB_OK, "%s", r.err);
    CHECK(r.seg.version == 2 && r.seg.last_seq == 6 && r.seen.n == 6 && r.seen.bad == 0);
    CHECK(memcmp(r.sc.prev, img.prev, 32) == 0);
    run_free(&r);
    /* the next segment must start where the last one ended */
    run_init(&r, sha, 4, 1);
    r.sc.expect = 5;
    CHECK(run_scan(&r, dir, 1, 1) == TB_ERR_PROTO && strstr(r.err, "gap in hub_seq: segment starts at 4"));
    run_free(&r);
    jseg_sha_destroy(&sha);
    tbtest_rmtree(dir);
}

int main(void)
{
    test_bytes();
    test_find_body();
    test_record_head();
    test_record_hash();
    test_header_path_index();
    test_io();
    test_anchor();
    test_scan_clean();
    test_scan_tail();
    test_scan_chain();
    return tbtest_done("test_journal_segment");
}
