/* journal_segment.c -- journal files byte by byte: segments, records, hashes, anchor; one segment's recovery scan.
 *
 * Storage format (all integers little-endian; see also journal.h):
 *
 *   <dir>/00000000000000000001.tbj   segments, named by the first hub_seq they hold
 *   <dir>/anchor                     hash of the last record removed by journal_gc
 *
 *   segment header, 24 bytes:
 *     0  "TBJ1"
 *     4  u32 version = 2 (segments of version 1 are still read: see the hash)
 *     8  u64 first hub_seq (equal to the file name)
 *    16  u32 reserved = 0
 *    20  u32 CRC32C of bytes 0..19
 *   record:
 *     0  u32 body length
 *     4  u32 CRC32C of the body
 *     8  body:
 *          0      u64 hub_seq
 *          8      i64 accepted_ms (CLOCK_REALTIME)
 *         16      u8[32] prev_hash = hash of the previous record (below)
 *                 (zeros before hub_seq 1; the anchor hash after journal_gc)
 *         48      u16 sender_len (1..255), sender
 *         50+s    u64 sender_seq
 *         58+s    u16 dest_len (1..255), dest
 *         60+s+d  u32 batch_len (<= 1 GiB), batch (the signed bytes, verbatim)
 *   anchor, 52 bytes:
 *     0  "TBA1", 4 u32 version = 1, 8 u64 hub_seq of the last removed record,
 *    16  u8[32] its hash, 48 u32 CRC32C of bytes 0..47
 *
 *   record hash, by the version of the segment holding the record (head =
 *   body bytes 0 .. 64+s+d, i.e. everything before the batch):
 *     version 1: SHA-256(body) = SHA-256(head || batch)
 *     version 2: SHA-256(head || 0x00 || batch) when jseg_find_body() finds
 *                no SignedBatch body in batch, else SHA-256(head || 0x01 ||
 *                u32 body_off || u32 body_len || batch[0, body_off) ||
 *                SHA-256(body) || batch[body_off + body_len, batch_len))
 *   jseg_find_body() is the rule of journal.h. Version 2 lets journal_append
 *   take the digest of the body that the hub's signature check computed
 *   anyway instead of hashing nearly all the bytes again; every byte is
 *   still committed to (journal.h says why the form byte, offset and length
 *   are there).
 *
 * The recovery scan reads one segment through a 1 MiB window and checks
 * each record's length, CRC, structure, hub_seq continuity and (optionally)
 * hash chain; a framing/CRC failure at the end of the last segment with no
 * valid record after it is a torn tail and is cut away (as is a last
 * segment whose header never reached the disk: shorter than a header, or
 * all zeros); everything else is damage. What the scan needs of the
 * journal as a whole -- the anchor, the next hub_seq, the previous hash --
 * comes in jseg_scan_t (journal_segment.h); journal.c runs it.
 */
#include "errbuf.h"
#include "journal_segment.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <isa-l/crc.h>
#include <openssl/evp.h>

#include "log.h"
#include "wire.h"

#define SEG_MAGIC "TBJ1"
#define ANCHOR_MAGIC "TBA1"
#define ANCHOR_VERSION 1u
#define ANCHOR_LEN 52u
#define ANCHOR_NAME "anchor"
#define ANCHOR_TMP "anchor.tmp"
#define INDEX_EVERY_RECORDS 256u
#define INDEX_EVERY_BYTES (1u << 20)
#define SCAN_WINDOW (1u << 20)
#define SEARCH_SEQ_RANGE (1u << 20) /* hub_seq window accepted when looking past damage */

struct jseg_sha {
    EVP_MD *md;
    EVP_MD_CTX *mdctx;
};

static const uint8_t zero_hash[JSEG_HASH_LEN];

/* ---- bytes ---- */

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
uint32_t jseg_get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
uint64_t jseg_get64(const uint8_t *p) { return (uint64_t)jseg_get32(p) | (uint64_t)jseg_get32(p + 4) << 32; }

/* CRC32C (Castagnoli). ISA-L's crc32_iscsi(buf, len, init) neither inverts
 * the initial value nor the result, so the standard CRC32C of a buffer is
 * crc32_iscsi(buf, len, 0xFFFFFFFF) ^ 0xFFFFFFFF (checked on this machine:
 * "123456789" -> 0xE3069283), and a buffer in pieces is chained by passing
 * the raw (non-inverted) result of one call as init of the next.
 * Returns the raw running value after p[0..n). */
static uint32_t crc_update(uint32_t raw, const uint8_t *p, size_t n)
{
    while (n > 0) {
        int chunk = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        raw = crc32_iscsi((unsigned char *)(uintptr_t)p, chunk, raw);
        p += chunk;
        n -= (size_t)chunk;
    }
    return raw;
}
#define CRC_INIT 0xFFFFFFFFu
/* Returns the CRC32C of p[0..n). */
uint32_t jseg_crc32c(const uint8_t *p, size_t n) { return crc_update(CRC_INIT, p, n) ^ 0xFFFFFFFFu; }

/* ---- record hash ---- */

jseg_sha_t *jseg_sha_new(void)
{
    jseg_sha_t *self = calloc(1, sizeof *self);
    if (!self) return NULL;
    self->md = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    self->mdctx = EVP_MD_CTX_new();
    if (!self->md || !self->mdctx) jseg_sha_destroy(&self);
    return self;
}

void jseg_sha_destroy(jseg_sha_t **self)
{
    if (!self || !*self) return;
    EVP_MD_CTX_free((*self)->mdctx);
    EVP_MD_free((*self)->md);
    free(*self);
    *self = NULL;
}

/* Writes SHA-256(a || b) into out. Returns 0, or -1 if OpenSSL failed. */
static int sha256_2(jseg_sha_t *sha, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                    uint8_t out[JSEG_HASH_LEN])
{
    unsigned int n = 0;
    if (EVP_DigestInit_ex(sha->mdctx, sha->md, NULL) != 1) return -1;
    if (EVP_DigestUpdate(sha->mdctx, a, alen) != 1) return -1;
    if (blen > 0 && EVP_DigestUpdate(sha->mdctx, b, blen) != 1) return -1;
    if (EVP_DigestFinal_ex(sha->mdctx, out, &n) != 1 || n != JSEG_HASH_LEN) return -1;
    return 0;
}

/* Reads a protobuf varint at *p (at most 10 bytes, value within 64 bits)
 * and advances *p. Returns 0, or -1. */
static int pb_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < 10 && *p < end; i++) {
        uint8_t c = *(*p)++;
        if (i == 9 && c > 1) return -1;
        v |= (uint64_t)(c & 0x7f) << (7 * i);
        if (!(c & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* The version 2 rule that finds the body of a SignedBatch in a batch (part
 * of the on-disk format, so it is kept here, frozen, and not taken from
 * common/wire.c, whose reader may change): the batch is read as a sequence
 * of protobuf fields up to its end -- a tag varint (field number tag >> 3,
 * any), then by wire type 0 a varint, 1 eight bytes, 2 a length varint and
 * that many bytes, 5 four bytes; any other wire type, a longer varint or a
 * field running past the end and the batch has no body -- and the body is
 * the value of the last field 1 of wire type 2 (none: no body). Wherever
 * tb_signed_batch_view succeeds, this finds the same body (that reader
 * takes fewer encodings). Returns 1 and the body's offset and length, or 0. */
int jseg_find_body(const uint8_t *batch, size_t len, size_t *off, size_t *blen)
{
    const uint8_t *p = batch, *end = batch + len;
    int found = 0;
    while (p < end) {
        uint64_t tag, n;
        if (pb_varint(&p, end, &tag) != 0) return 0;
        switch (tag & 7) {
        case 0:
            if (pb_varint(&p, end, &n) != 0) return 0;
            break;
        case 1:
        case 5: {
            size_t w = (tag & 7) == 1 ? 8 : 4;
            if ((size_t)(end - p) < w) return 0;
            p += w;
            break;
        }
        case 2:
            if (pb_varint(&p, end, &n) != 0 || n > (uint64_t)(end - p)) return 0;
            if ((tag >> 3) == 1) {
                found = 1;
                *off = (size_t)(p - batch);
                *blen = (size_t)n;
            }
            p += n;
            break;
        default:
            return 0;
        }
    }
    return found;
}

/* Writes the hash of a record into out: head is its body up to the batch,
 * version that of its segment. body_sha256 (may be NULL) is the caller's
 * SHA-256 of the body tb_signed_batch_view finds in batch; it is used only
 * if that is the body jseg_find_body finds, else the digest is computed here.
 * Returns 0, or -1 if OpenSSL failed. */
int jseg_record_hash(jseg_sha_t *sha, uint32_t version, const uint8_t *head, size_t head_len,
                     const uint8_t *batch, size_t len, const uint8_t *body_sha256, uint8_t out[JSEG_HASH_LEN])
{
    static const uint8_t whole = 0x00;
    size_t off = 0, blen = 0;
    unsigned int n = 0;
    if (version == JSEG_VERSION_OLD) return sha256_2(sha, head, head_len, batch, len, out);
    if (len == 0 || !jseg_find_body(batch, len, &off, &blen)) {
        if (EVP_DigestInit_ex(sha->mdctx, sha->md, NULL) != 1 || EVP_DigestUpdate(sha->mdctx, head, head_len) != 1 ||
            EVP_DigestUpdate(sha->mdctx, &whole, 1) != 1 ||
            (len > 0 && EVP_DigestUpdate(sha->mdctx, batch, len) != 1) ||
            EVP_DigestFinal_ex(sha->mdctx, out, &n) != 1 || n != JSEG_HASH_LEN)
            return -1;
        return 0;
    }
    uint8_t digest[JSEG_HASH_LEN], mid[9];
    tb_signed_batch_view_t v;
    if (body_sha256 && tb_signed_batch_view(batch, len, &v) == TB_OK && v.body == batch + off &&
        v.body_len == blen) {
        memcpy(digest, body_sha256, JSEG_HASH_LEN);
    } else if (sha256_2(sha, batch + off, blen, NULL, 0, digest) < 0) {
        return -1;
    }
    mid[0] = 0x01;
    put32(mid + 1, (uint32_t)off);   /* batch <= 1 GiB */
    put32(mid + 5, (uint32_t)blen);
    size_t tail = off + blen;
    if (EVP_DigestInit_ex(sha->mdctx, sha->md, NULL) != 1 || EVP_DigestUpdate(sha->mdctx, head, head_len) != 1 ||
        EVP_DigestUpdate(sha->mdctx, mid, sizeof mid) != 1 ||
        (off > 0 && EVP_DigestUpdate(sha->mdctx, batch, off) != 1) ||
        EVP_DigestUpdate(sha->mdctx, digest, JSEG_HASH_LEN) != 1 ||
        (tail < len && EVP_DigestUpdate(sha->mdctx, batch + tail, len - tail) != 1) ||
        EVP_DigestFinal_ex(sha->mdctx, out, &n) != 1 || n != JSEG_HASH_LEN)
        return -1;
    return 0;
}

/* ---- file I/O ---- */

/* Reads exactly n bytes at off. Returns 0, or -1 with errno set (0 at end of file). */
int jseg_pread_full(int fd, void *buf, size_t n, uint64_t off)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) {
            errno = 0;
            return -1;
        }
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

/* Returns the text of errno, or "unexpected end of file" when errno is 0. */
const char *jseg_ioerr(int e)
{
    return e ? strerror(e) : "unexpected end of file";
}

/* Writes all iov (cnt entries, modified) at off, continuing after short
 * writes. Returns 0, or -1 with errno set. */
int jseg_pwritev_all(int fd, struct iovec *iov, int cnt, uint64_t off)
{
    while (cnt > 0 && iov->iov_len == 0) { iov++; cnt--; }
    while (cnt > 0) {
        ssize_t w = pwritev(fd, iov, cnt, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        off += (uint64_t)w;
        size_t left = (size_t)w;
        while (cnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

/* ---- records, headers, index ---- */

/* Writes the path of the segment of dir starting at first into buf. Returns buf. */
char *jseg_path(const char *dir, uint64_t first, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%0*" PRIu64 JSEG_SUFFIX, dir, JSEG_DIGITS, first);
    return buf;
}

/* Parses the head of a body of length len from its first avail bytes
 * (avail >= min(len, JSEG_HEAD_BODY_MAX)). Returns NULL and fills out, or a
 * static description of what is malformed. */
const char *jseg_parse_head(const uint8_t *b, size_t avail, uint32_t len, jseg_body_t *out)
{
    if (len < JSEG_BODY_MIN) return "body too short";
    if (avail < 50) return "short head";
    out->seq = jseg_get64(b);
    out->ms = (int64_t)jseg_get64(b + 8);
    out->prev = b + 16;
    out->slen = get16(b + 48);
    if (out->slen == 0 || out->slen > JOURNAL_MAX_NAME) return "bad sender length";
    size_t s = out->slen;
    if (60 + s > len || 60 + s > avail) return "sender overruns the body";
    out->sender = b + 50;
    out->sender_seq = jseg_get64(b + 50 + s);
    out->dlen = get16(b + 58 + s);
    if (out->dlen == 0 || out->dlen > JOURNAL_MAX_NAME) return "bad dest length";
    size_t d = out->dlen;
    if (JSEG_BODY_FIXED + s + d > len || JSEG_BODY_FIXED + s + d > avail) return "dest overruns the body";
    out->dest = b + 60 + s;
    out->blen = jseg_get32(b + 60 + s + d);
    out->batch_off = (uint32_t)(JSEG_BODY_FIXED + s + d);
    if ((uint64_t)JSEG_BODY_FIXED + s + d + out->blen != len) return "batch length does not match the record length";
    if (memchr(out->sender, 0, s) || memchr(out->dest, 0, d)) return "NUL byte in sender or dest";
    return NULL;
}

/* Writes frame + body head of rec into out (see journal_segment.h). Returns
 * the bytes written. */
size_t jseg_record_head(uint8_t out[JSEG_HEAD_MAX], const jrec_t *rec, const uint8_t prev[JSEG_HASH_LEN])
{
    size_t slen = strlen(rec->sender), dlen = strlen(rec->dest), len = rec->batch_len;
    uint8_t *h = out, *b = h + JSEG_FRAME;
    size_t head_body = JSEG_BODY_FIXED + slen + dlen;
    uint32_t body_len = (uint32_t)(head_body + len);
    put64(b, rec->hub_seq);
    put64(b + 8, (uint64_t)rec->accepted_ms);
    memcpy(b + 16, prev, JSEG_HASH_LEN);
    put16(b + 48, (uint16_t)slen);
    memcpy(b + 50, rec->sender, slen);
    put64(b + 50 + slen, rec->sender_seq);
    put16(b + 58 + slen, (uint16_t)dlen);
    memcpy(b + 60 + slen, rec->dest, dlen);
    put32(b + 60 + slen + dlen, (uint32_t)len);
    uint32_t crc = crc_update(CRC_INIT, b, head_body);
    if (len > 0) crc = crc_update(crc, rec->batch, len);
    put32(h, body_len);
    put32(h + 4, crc ^ 0xFFFFFFFFu);
    return JSEG_FRAME + head_body;
}

/* Writes a version JSEG_VERSION segment header for first into out. Returns nothing. */
void jseg_header_encode(uint8_t hdr[JSEG_HDR], uint64_t first)
{
    memcpy(hdr, SEG_MAGIC, 4);
    put32(hdr + 4, JSEG_VERSION);
    put64(hdr + 8, first);
    put32(hdr + 16, 0);
    put32(hdr + 20, jseg_crc32c(hdr, 20));
}

/* Records (seq, off) in s's sparse index when due. Returns 0, or -1 if out of memory. */
int jseg_index_add(jseg_t *s, uint64_t seq, uint64_t off)
{
    if (s->nidx > 0 && (seq - s->first_seq) % INDEX_EVERY_RECORDS != 0 &&
        off - s->idx[s->nidx - 1].off < INDEX_EVERY_BYTES)
        return 0;
    if (s->nidx == s->capidx) {
        size_t cap = s->capidx ? s->capidx * 2 : 8;
        jseg_idx_t *ni = realloc(s->idx, cap * sizeof *ni);
        if (!ni) return -1;
        s->idx = ni;
        s->capidx = cap;
    }
    s->idx[s->nidx].seq = seq;
    s->idx[s->nidx].off = off;
    s->nidx++;
    return 0;
}

/* ---- anchor ---- */

/* Reads <dir>/anchor into sc if it exists. Returns TB_OK, TB_ERR_IO or TB_ERR_PROTO. */
tb_err_t jseg_anchor_read(jseg_scan_t *sc, const char *dir, char *err, size_t errlen)
{
    char path[PATH_MAX];
    uint8_t a[ANCHOR_LEN + 1];
    struct stat st;
    tb_err_t rc = TB_OK;
    snprintf(path, sizeof path, "%s/" ANCHOR_TMP, dir);
    unlink(path);  /* a gc that died before its rename */
    snprintf(path, sizeof path, "%s/" ANCHOR_NAME, dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) return TB_OK;
        tb_seterr(err, errlen, "%s: %s", path, strerror(errno));
        return TB_ERR_IO;
    }
    if (fstat(fd, &st) < 0) {
        tb_seterr(err, errlen, "%s: %s", path, strerror(errno));
        rc = TB_ERR_IO;
        goto done;
    }
    if (st.st_size != ANCHOR_LEN) {
        tb_seterr(err, errlen, "%s: anchor file is %lld bytes, expected %u: journal damaged",
               path, (long long)st.st_size, ANCHOR_LEN);
        rc = TB_ERR_PROTO;
        goto done;
    }
    if (jseg_pread_full(fd, a, ANCHOR_LEN, 0) < 0) {
        tb_seterr(err, errlen, "%s: %s", path, jseg_ioerr(errno));
        rc = TB_ERR_IO;
        goto done;
    }
    if (memcmp(a, ANCHOR_MAGIC, 4) != 0 || jseg_get32(a + 4) != ANCHOR_VERSION ||
        jseg_crc32c(a, 48) != jseg_get32(a + 48)) {
        tb_seterr(err, errlen, "%s: bad anchor file (magic, version or CRC): journal damaged", path);
        rc = TB_ERR_PROTO;
        goto done;
    }
    sc->have_anchor = 1;
    sc->anchor_seq = jseg_get64(a + 8);
    memcpy(sc->anchor_hash, a + 16, JSEG_HASH_LEN);
    if (sc->anchor_seq == 0) {
        tb_seterr(err, errlen, "%s: anchor names hub_seq 0: journal damaged", path);
        rc = TB_ERR_PROTO;
    }
done:
    close(fd);
    return rc;
}

/* Atomically replaces <dir>/anchor with (seq, hash); dirfd is dir, opened.
 * Returns TB_OK or TB_ERR_IO. */
tb_err_t jseg_anchor_write(const char *dir, int dirfd, uint64_t seq, const uint8_t hash[JSEG_HASH_LEN],
                           char *err, size_t errlen)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    uint8_t a[ANCHOR_LEN];
    memcpy(a, ANCHOR_MAGIC, 4);
    put32(a + 4, ANCHOR_VERSION);
    put64(a + 8, seq);
    memcpy(a + 16, hash, JSEG_HASH_LEN);
    put32(a + 48, jseg_crc32c(a, 48));
    snprintf(tmp, sizeof tmp, "%s/" ANCHOR_TMP, dir);
    snprintf(path, sizeof path, "%s/" ANCHOR_NAME, dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        tb_seterr(err, errlen, "%s: %s", tmp, strerror(errno));
        return TB_ERR_IO;
    }
    struct iovec iov = { a, ANCHOR_LEN };
    if (jseg_pwritev_all(fd, &iov, 1, 0) < 0 || fsync(fd) < 0) {
        tb_seterr(err, errlen, "%s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return TB_ERR_IO;
    }
    close(fd);
    if (rename(tmp, path) < 0 || fsync(dirfd) < 0) {
        tb_seterr(err, errlen, "%s: %s", path, strerror(errno));
        unlink(tmp);
        return TB_ERR_IO;
    }
    return TB_OK;
}

/* ---- recovery scan ---- */

/* Points *out at n bytes at off of the scanned file (off + n <= fsize),
 * reading a window as needed. Returns 0, or -1 with errno set. */
static int sb_get(jseg_sbuf_t *sb, uint64_t off, size_t n, const uint8_t **out)
{
    if (sb->len > 0 && off >= sb->base && off + n <= sb->base + sb->len) {
        *out = sb->buf + (off - sb->base);
        return 0;
    }
    size_t want = n < SCAN_WINDOW ? SCAN_WINDOW : n;
    if (want > sb->cap) {
        uint8_t *nb = realloc(sb->buf, want);
        if (!nb) {
            errno = ENOMEM;
            return -1;
        }
        sb->buf = nb;
        sb->cap = want;
    }
    uint64_t avail = sb->fsize - off;
    size_t rd = avail < want ? (size_t)avail : want;
    sb->len = 0;
    if (jseg_pread_full(sb->fd, sb->buf, rd, off) < 0) return -1;
    sb->base = off;
    sb->len = rd;
    *out = sb->buf;
    return 0;
}

/* Looks for a record with a plausible frame, a hub_seq in [seq_lo,
 * seq_lo + SEARCH_SEQ_RANGE) and a matching CRC starting anywhere at or
 * after from. Returns 1 and *at if found, 0 if none, -1 on a read error. */
static int find_valid_after(jseg_sbuf_t *sb, uint64_t from, uint64_t seq_lo, uint64_t *at)
{
    for (uint64_t p = from; p + JSEG_FRAME + JSEG_BODY_MIN <= sb->fsize; p++) {
        const uint8_t *h, *b;
        if (sb_get(sb, p, JSEG_FRAME + 8, &h) < 0) return -1;
        uint32_t len = jseg_get32(h);
        if (len < JSEG_BODY_MIN || len > JSEG_BODY_MAX || len > sb->fsize - p - JSEG_FRAME) continue;
        uint64_t seq = jseg_get64(h + JSEG_FRAME);
        if (seq < seq_lo || seq - seq_lo >= SEARCH_SEQ_RANGE) continue;
        uint32_t crc = jseg_get32(h + 4);
        if (sb_get(sb, p + JSEG_FRAME, len, &b) < 0) return -1;
        if (jseg_crc32c(b, len) == crc) {
            *at = p;
            return 1;
        }
    }
    return 0;
}

/* Returns 1 if the scanned file holds only zero bytes (an unwritten
 * segment whose size reached the disk before its data), 0 if not, -1 on a
 * read error. */
static int all_zero(jseg_sbuf_t *sb)
{
    for (uint64_t off = 0; off < sb->fsize;) {
        const uint8_t *p;
        size_t n = sb->fsize - off < SCAN_WINDOW ? (size_t)(sb->fsize - off) : SCAN_WINDOW;
        if (sb_get(sb, off, n, &p) < 0) return -1;
        for (size_t k = 0; k < n; k++)
            if (p[k]) return 0;
        off += n;
    }
    return 1;
}

/* Checks the hash chain at one record (of a segment of that version) and
 * advances sc->prev. Returns TB_OK, TB_ERR_PROTO (err: file, offset, what)
 * or TB_ERR_CRYPTO. */
static tb_err_t check_chain(jseg_scan_t *sc, uint32_t version, const char *path, uint64_t off, const uint8_t *body,
                            const jseg_body_t *p, char *err, size_t errlen)
{
    uint64_t first_kept = sc->have_anchor ? sc->anchor_seq + 1 : 1;
    int verify = sc->opts->verify_chain;
    if (p->seq == first_kept) {
        const uint8_t *want = sc->have_anchor ? sc->anchor_hash : zero_hash;
        if (memcmp(p->prev, want, JSEG_HASH_LEN) != 0) {
            tb_seterr(err, errlen, "%s: offset %" PRIu64 ": hash chain broken at record %" PRIu64
                   ": prev_hash does not match %s: journal damaged or tampered with", path, off, p->seq,
                   sc->have_anchor ? "the anchor file" : "the zero hash of the first record");
            return TB_ERR_PROTO;
        }
    } else if (verify && sc->have_prev && memcmp(p->prev, sc->prev, JSEG_HASH_LEN) != 0) {
        tb_seterr(err, errlen, "%s: offset %" PRIu64 ": hash chain broken at record %" PRIu64
               ": prev_hash is not the hash of record %" PRIu64 ": journal damaged or tampered with",
               path, off, p->seq, p->seq - 1);
        return TB_ERR_PROTO;
    }
    if (verify || (sc->have_anchor && p->seq == sc->anchor_seq)) {
        if (jseg_record_hash(sc->sha, version, body, p->batch_off, body + p->batch_off, p->blen, NULL,
                             sc->prev) < 0) {
            tb_seterr(err, errlen, "%s: SHA-256 failed", path);
            return TB_ERR_CRYPTO;
        }
        sc->have_prev = 1;
        if (sc->have_anchor && p->seq == sc->anchor_seq && memcmp(sc->prev, sc->anchor_hash, JSEG_HASH_LEN) != 0) {
            tb_seterr(err, errlen, "%s: offset %" PRIu64 ": hash chain broken: record %" PRIu64
                   " does not hash to the anchor file's hash: journal damaged or tampered with",
                   path, off, p->seq);
            return TB_ERR_PROTO;
        }
    }
    return TB_OK;
}

/* Cuts path back to size off and syncs it. Returns TB_OK or TB_ERR_IO. */
static tb_err_t truncate_tail(const char *path, uint64_t off, char *err, size_t errlen)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0 || ftruncate(fd, (off_t)off) < 0 || fsync(fd) < 0) {
        tb_seterr(err, errlen, "%s: cannot cut the torn tail at offset %" PRIu64 ": %s", path, off, strerror(errno));
        if (fd >= 0) close(fd);
        return TB_ERR_IO;
    }
    close(fd);
    return TB_OK;
}

/* Checks one segment header against what the scan expects. Returns TB_OK
 * or TB_ERR_PROTO / TB_ERR_IO. */
static tb_err_t check_header(jseg_scan_t *sc, jseg_t *s, size_t i, int fd, const char *path, char *err,
                             size_t errlen)
{
    uint8_t hdr[JSEG_HDR];
    if (jseg_pread_full(fd, hdr, JSEG_HDR, 0) < 0) {
        tb_seterr(err, errlen, "%s: %s", path, jseg_ioerr(errno));
        return TB_ERR_IO;
    }
    if (memcmp(hdr, SEG_MAGIC, 4) != 0) {
        tb_seterr(err, errlen, "%s: offset 0: bad segment header (magic is not " SEG_MAGIC "): journal damaged", path);
        return TB_ERR_PROTO;
    }
    if (jseg_crc32c(hdr, 20) != jseg_get32(hdr + 20)) {
        tb_seterr(err, errlen, "%s: offset 0: bad segment header (CRC mismatch): journal damaged", path);
        return TB_ERR_PROTO;
    }
    uint32_t version = jseg_get32(hdr + 4);
    if (version != JSEG_VERSION && version != JSEG_VERSION_OLD) {
        tb_seterr(err, errlen, "%s: offset 4: unsupported segment version %" PRIu32, path, version);
        return TB_ERR_PROTO;
    }
    s->version = version;
    uint64_t first = jseg_get64(hdr + 8);
    if (first != s->first_seq) {
        tb_seterr(err, errlen, "%s: offset 8: bad segment header: it says first hub_seq %" PRIu64
               " but the file name says %" PRIu64 ": journal damaged", path, first, s->first_seq);
        return TB_ERR_PROTO;
    }
    if (first != sc->expect) {
        if (i == 0 && !sc->have_anchor)
            tb_seterr(err, errlen, "%s: first segment starts at hub_seq %" PRIu64 ", expected 1 and there is"
                   " no anchor file: segments missing, journal damaged", path, first);
        else
            tb_seterr(err, errlen, "%s: gap in hub_seq: segment starts at %" PRIu64 ", expected %" PRIu64
                   ": segments missing, journal damaged", path, first, sc->expect);
        return TB_ERR_PROTO;
    }
    if (i == sc->nleft && sc->have_anchor && first != sc->anchor_seq + 1) {
        tb_seterr(err, errlen, "%s: first segment after the anchor starts at hub_seq %" PRIu64
               " but the anchor file is at hub_seq %" PRIu64 ": journal damaged", path, first, sc->anchor_seq);
        return TB_ERR_PROTO;
    }
    return TB_OK;
}

/* Scans segment s, the i-th: checks every record, cuts a torn tail of the
 * last segment, fills the segment's state and calls on_record. Sets
 * *dropped if the (last) segment was removed for a torn header. Returns
 * TB_OK, TB_ERR_PROTO (damage, err names file + offset), TB_ERR_IO,
 * TB_ERR_NOMEM, TB_ERR_CRYPTO. */
tb_err_t jseg_scan(jseg_scan_t *sc, const char *dir, jseg_t *s, size_t i, int is_last, int *dropped,
                   char *err, size_t errlen)
{
    int leftover = i < sc->nleft;
    char path[PATH_MAX], q[PATH_MAX + 8];
    struct stat st;
    tb_err_t rc = TB_OK;
    uint64_t nrec = 0;
    *dropped = 0;
    jseg_path(dir, s->first_seq, path, sizeof path);
    if (i == 0) sc->expect = sc->nleft ? s->first_seq : sc->have_anchor ? sc->anchor_seq + 1 : 1;

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) < 0) {
        tb_seterr(err, errlen, "%s: %s", path, strerror(errno));
        rc = TB_ERR_IO;
        goto done;
    }
    uint64_t fsize = (uint64_t)st.st_size;
    sc->sb.fd = fd;
    sc->sb.fsize = fsize;
    sc->sb.base = 0;
    sc->sb.len = 0;
    int unwritten = fsize < JSEG_HDR;
    if (!unwritten && is_last && s->first_seq == sc->expect) {
        int z = all_zero(&sc->sb);
        if (z < 0) goto ioerror;
        unwritten = z;
    }
    if (unwritten) {
        if (is_last && s->first_seq == sc->expect) {
            /* Created by a roll just before a crash, never synced: nothing acked was in it. */
            if (unlink(path) < 0) {
                tb_seterr(err, errlen, "%s: %s", path, strerror(errno));
                rc = TB_ERR_IO;
                goto done;
            }
            tb_log(TB_LOG_WARN, "journal", "torn_segment", "file=%s bytes=%" PRIu64 " reason=unwritten",
                   tb_log_quote(path, q, sizeof q), fsize);
            sc->rep.truncated_bytes += fsize;
            *dropped = 1;
            goto done;
        }
        tb_seterr(err, errlen, "%s: offset 0: segment header incomplete (%" PRIu64 " bytes): journal damaged",
               path, fsize);
        rc = TB_ERR_PROTO;
        goto done;
    }
    if ((rc = check_header(sc, s, i, fd, path, err, errlen)) != TB_OK) goto done;

    uint64_t off = JSEG_HDR;
    while (off < fsize) {
        const char *damage = NULL;
        char dbuf[128];
        const uint8_t *fr, *body = NULL;
        uint32_t len = 0;
        if (fsize - off < JSEG_FRAME) {
            damage = "incomplete record frame";
        } else {
            if (sb_get(&sc->sb, off, JSEG_FRAME, &fr) < 0) goto ioerror;
            len = jseg_get32(fr);
            uint32_t crc = jseg_get32(fr + 4);
            if (len < JSEG_BODY_MIN || len > JSEG_BODY_MAX) {
                snprintf(dbuf, sizeof dbuf, "invalid record length %" PRIu32, len);
                damage = dbuf;
            } else if (len > fsize - off - JSEG_FRAME) {
                snprintf(dbuf, sizeof dbuf, "incomplete record (length %" PRIu32 ", %" PRIu64 " bytes left)",
                         len, fsize - off - JSEG_FRAME);
                damage = dbuf;
            } else {
                if (sb_get(&sc->sb, off + JSEG_FRAME, len, &body) < 0) goto ioerror;
                if (jseg_crc32c(body, len) != crc) damage = "CRC mismatch";
            }
        }
        if (damage) {
            if (!is_last) {
                tb_seterr(err, errlen, "%s: offset %" PRIu64 ": %s (record %" PRIu64 ") in a sealed segment:"
                       " journal damaged", path, off, damage, sc->expect);
                rc = TB_ERR_PROTO;
                goto done;
            }
            uint64_t at = 0;
            int f = find_valid_after(&sc->sb, off + 1, sc->expect, &at);
            if (f < 0) goto ioerror;
            if (f > 0) {
                tb_seterr(err, errlen, "%s: offset %" PRIu64 ": %s (record %" PRIu64 "), valid records follow"
                       " at offset %" PRIu64 ": journal damaged", path, off, damage, sc->expect, at);
                rc = TB_ERR_PROTO;
                goto done;
            }
            if ((rc = truncate_tail(path, off, err, errlen)) != TB_OK) goto done;
            tb_log(TB_LOG_WARN, "journal", "torn_tail", "file=%s offset=%" PRIu64 " cut_bytes=%" PRIu64
                   " reason=\"%s\"", tb_log_quote(path, q, sizeof q), off, fsize - off, damage);
            sc->rep.truncated_bytes += fsize - off;
            fsize = off;
            break;
        }
        jseg_body_t p;
        const char *why = jseg_parse_head(body, len < JSEG_HEAD_BODY_MAX ? len : JSEG_HEAD_BODY_MAX, len, &p);
        if (why) {
            tb_seterr(err, errlen, "%s: offset %" PRIu64 ": malformed record %" PRIu64 " (%s) despite a valid CRC:"
                   " journal damaged", path, off, sc->expect, why);
            rc = TB_ERR_PROTO;
            goto done;
        }
        if (p.seq != sc->expect) {
            tb_seterr(err, errlen, "%s: offset %" PRIu64 ": gap in hub_seq: expected %" PRIu64 ", found %" PRIu64
                   ": journal damaged", path, off, sc->expect, p.seq);
            rc = TB_ERR_PROTO;
            goto done;
        }
        if ((rc = check_chain(sc, s->version, path, off, body, &p, err, errlen)) != TB_OK) goto done;
        if (!leftover) {
            if (sc->rep.records++ == 0) sc->rep.first_seq = p.seq;
            if (sc->opts->on_record) {
                jrec_t rec;
                memcpy(sc->rsender, p.sender, p.slen);
                sc->rsender[p.slen] = '\0';
                memcpy(sc->rdest, p.dest, p.dlen);
                sc->rdest[p.dlen] = '\0';
                rec.hub_seq = p.seq;
                rec.accepted_ms = p.ms;
                rec.sender = sc->rsender;
                rec.sender_seq = p.sender_seq;
                rec.dest = sc->rdest;
                rec.batch = body + p.batch_off;
                rec.batch_len = p.blen;
                sc->opts->on_record(sc->opts->arg, &rec);
            }
        }
        if (jseg_index_add(s, p.seq, off) < 0) {
            tb_seterr(err, errlen, "%s: out of memory", path);
            rc = TB_ERR_NOMEM;
            goto done;
        }
        s->last_ms = p.ms;
        sc->have_last = 1;
        sc->last_first = s->first_seq;
        sc->last_off = off;
        sc->last_len = len;
        sc->last_version = s->version;
        sc->expect++;
        off += JSEG_FRAME + len;
        nrec++;
    }
    if (nrec == 0 && !is_last) {
        tb_seterr(err, errlen, "%s: sealed segment holds no records: journal damaged", path);
        rc = TB_ERR_PROTO;
        goto done;
    }
    s->last_seq = sc->expect - 1;
    s->size = fsize;
    if (fdatasync(fd) < 0) {   /* what an earlier process wrote may still be only in the page cache */
        tb_seterr(err, errlen, "%s: fdatasync: %s", path, strerror(errno));
        rc = TB_ERR_IO;
    }
    goto done;
ioerror:
    rc = errno == ENOMEM ? TB_ERR_NOMEM : TB_ERR_IO;
    tb_seterr(err, errlen, "%s: %s", path, jseg_ioerr(errno));
done:
    if (fd >= 0) close(fd);
    return rc;
}

/* Hashes the record at (first, off, len), in a segment of that version,
 * into out. Returns TB_OK, TB_ERR_IO, TB_ERR_NOMEM, TB_ERR_PROTO or
 * TB_ERR_CRYPTO. */
tb_err_t jseg_hash_record_at(jseg_sha_t *sha, const char *dir, uint64_t first, uint64_t off, uint32_t len,
                             uint32_t version, uint8_t out[JSEG_HASH_LEN], char *err, size_t errlen)
{
    char path[PATH_MAX];
    tb_err_t rc = TB_OK;
    jseg_body_t p;
    const char *why = NULL;
    uint8_t *buf = malloc(len);
    int fd = open(jseg_path(dir, first, path, sizeof path), O_RDONLY | O_CLOEXEC);
    if (!buf) {
        tb_seterr(err, errlen, "%s: out of memory", path);
        rc = TB_ERR_NOMEM;
    } else if (fd < 0 || jseg_pread_full(fd, buf, len, off + JSEG_FRAME) < 0) {
        tb_seterr(err, errlen, "%s: offset %" PRIu64 ": %s", path, off, jseg_ioerr(errno));
        rc = TB_ERR_IO;
    } else if ((why = jseg_parse_head(buf, len < JSEG_HEAD_BODY_MAX ? len : JSEG_HEAD_BODY_MAX, len, &p)) != NULL) {
        tb_seterr(err, errlen, "%s: offset %" PRIu64 ": malformed record (%s)", path, off, why);
        rc = TB_ERR_PROTO;  /* the scan parsed it: changed on disk since */
    } else if (jseg_record_hash(sha, version, buf, p.batch_off, buf + p.batch_off, p.blen, NULL, out) < 0) {
        tb_seterr(err, errlen, "SHA-256 failed");
        rc = TB_ERR_CRYPTO;
    }
    if (fd >= 0) close(fd);
    free(buf);
    return rc;
}
