/* journal.c -- the hub's segmented, CRC-framed, hash-chained append-only journal.
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
 *     version 2: SHA-256(head || 0x00 || batch) when find_body() finds no
 *                SignedBatch body in batch, else SHA-256(head || 0x01 ||
 *                u32 body_off || u32 body_len || batch[0, body_off) ||
 *                SHA-256(body) || batch[body_off + body_len, batch_len))
 *   find_body() is the rule of journal.h. Version 2 lets journal_append
 *   take the digest of the body that the hub's signature check computed
 *   anyway instead of hashing nearly all the bytes again; every byte is
 *   still committed to (journal.h says why the form byte, offset and length
 *   are there).
 *
 * Appends go through one pwritev() per record (frame + fixed part of the body
 * from a small buffer, the batch straight from the caller: no copy) at the
 * end of the active segment; journal_sync fdatasync()s the segments written
 * since the last sync. Readers pread at most 582 bytes (the largest
 * possible record head) into the journal's one shared buffer, ask the
 * filter, and pread the rest of the record only if it is wanted. A sparse in-memory index per segment (every 256th
 * record or 1 MiB) lets a reader start in the middle of a segment quickly.
 *
 * Recovery: segments are scanned in order; each record's length, CRC,
 * structure, hub_seq continuity and (optionally) hash chain are checked. A
 * framing/CRC failure at the end of the last segment with no valid record
 * after it is a torn tail and is cut away (as is a last segment whose
 * header never reached the disk: shorter than a header, or all zeros);
 * everything else is damage and fails the open. (A flipped byte in the
 * very last record of the journal cannot be told from a torn write: it is
 * cut as a torn tail and logged.) Every segment is
 * fdatasync()ed during the scan, so what open found is durable. A failed
 * fdatasync later is sticky (the kernel may have dropped the dirty pages:
 * retrying could report success for lost data), so appends are refused
 * until the journal is reopened and re-read from disk.
 * journal_gc writes the anchor before unlinking segments; an
 * interrupted gc leaves segments whose records are all <= the anchor, which
 * the next open verifies against the anchor and then removes.
 */
#include "errbuf.h"
#include "journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <isa-l/crc.h>
#include <openssl/evp.h>

#include "log.h"
#include "wire.h"

#define SEG_MAGIC "TBJ1"
#define SEG_VERSION 2u                /* written; SEG_VERSION_OLD is still read */
#define SEG_VERSION_OLD 1u
#define SEG_HDR 24u
#define SEG_SUFFIX ".tbj"
#define SEG_DIGITS 20
#define ANCHOR_MAGIC "TBA1"
#define ANCHOR_VERSION 1u
#define ANCHOR_LEN 52u
#define ANCHOR_NAME "anchor"
#define ANCHOR_TMP "anchor.tmp"
#define FRAME 8u                    /* u32 body length + u32 CRC32C */
#define BODY_FIXED 64u              /* body bytes besides sender, dest and batch */
#define BODY_MIN (BODY_FIXED + 2u)  /* sender and dest are at least 1 byte */
#define BODY_MAX ((uint64_t)BODY_FIXED + 2u * JOURNAL_MAX_NAME + JOURNAL_MAX_BATCH)
#define HEAD_BODY_MAX (BODY_FIXED + 2u * JOURNAL_MAX_NAME)  /* body bytes before the batch */
#define HEAD_MAX (FRAME + HEAD_BODY_MAX)                       /* 582 */
#define HASH_LEN 32u
#define INDEX_EVERY_RECORDS 256u
#define INDEX_EVERY_BYTES (1u << 20)
#define SCAN_WINDOW (1u << 20)
#define RBUF_KEEP (8u << 20)        /* shared read buffer shrinks back to this */
#define MAX_OPEN_FDS 64u            /* read fds kept open for sealed segments */
#define SEARCH_SEQ_RANGE (1u << 20) /* hub_seq window accepted when looking past damage */

typedef struct {
    uint64_t seq, off;
} idxent_t;

typedef struct {
    uint64_t first_seq;
    uint64_t last_seq;      /* first_seq - 1 while empty */
    uint64_t size;          /* valid bytes: header + records */
    int64_t last_ms;        /* accepted_ms of the last record */
    uint32_t version;       /* SEG_VERSION or SEG_VERSION_OLD: which record hash */
    int fd;                 /* -1 when closed (sealed segments are opened on demand) */
    int dirty;              /* written since the last fdatasync */
    uint64_t last_use;
    idxent_t *idx;          /* sparse index: hub_seq -> offset */
    size_t nidx, capidx;
} seg_t;

struct journal {
    char *dir;
    int dirfd;              /* flock()ed */
    uint64_t segment_bytes;
    seg_t *segs;            /* ascending; the last one is the active segment */
    size_t nsegs, capsegs;
    uint64_t last_seq, durable_seq;
    uint8_t last_hash[HASH_LEN];
    uint64_t total_bytes;
    int dir_dirty;
    int failed;             /* sticky after a failed fdatasync / ftruncate */
    char failmsg[PATH_MAX + 256];
    size_t open_fds;
    uint64_t tick;
    uint8_t whead[HEAD_MAX];  /* frame + body head of the record being appended */
    uint8_t *rbuf;          /* shared read buffer of the readers */
    size_t rbuf_cap;
    char rsender[JOURNAL_MAX_NAME + 1], rdest[JOURNAL_MAX_NAME + 1];
    uint64_t read_bytes;
    size_t nreaders;
    EVP_MD *md;
    EVP_MD_CTX *mdctx;
};

struct journal_reader {
    journal_t *j;
    uint64_t next_seq;      /* hub_seq of the next record to examine */
    uint64_t seg_first;     /* segment (by first hub_seq) that off refers to */
    uint64_t off;
};

/* Parsed head of a record body (pointers into the body). */
typedef struct {
    uint64_t seq;
    int64_t ms;
    const uint8_t *prev;
    const uint8_t *sender;
    uint16_t slen;
    uint64_t sender_seq;
    const uint8_t *dest;
    uint16_t dlen;
    uint32_t blen;
    uint32_t batch_off;     /* offset of the batch in the body */
} body_t;

/* Sequential reader of one file for the recovery scan. */
typedef struct {
    int fd;
    uint64_t fsize;
    uint8_t *buf;
    size_t cap;
    uint64_t base;
    size_t len;
} sbuf_t;

/* State of the recovery scan. */
typedef struct {
    journal_t *j;
    const journal_opts_t *opts;
    journal_report_t rep;
    int have_anchor;
    uint64_t anchor_seq;
    uint8_t anchor_hash[HASH_LEN];
    size_t nleft;           /* leading segments left over from an interrupted gc */
    uint64_t expect;        /* next hub_seq */
    uint8_t prev[HASH_LEN]; /* hash of the previous record, if have_prev */
    int have_prev;
    int have_last;          /* location of the last record (to hash it if !verify_chain) */
    uint64_t last_first, last_off;
    uint32_t last_len, last_version;
    sbuf_t sb;
} scan_t;

static const uint8_t zero_hash[HASH_LEN];

/* ---- small helpers ---- */


static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }

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
static uint32_t crc32c(const uint8_t *p, size_t n) { return crc_update(CRC_INIT, p, n) ^ 0xFFFFFFFFu; }

/* Returns the wall clock in milliseconds since the epoch. */
static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Writes SHA-256(a || b) into out. Returns 0, or -1 if OpenSSL failed. */
static int sha256_2(journal_t *j, const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
                    uint8_t out[HASH_LEN])
{
    unsigned int n = 0;
    if (EVP_DigestInit_ex(j->mdctx, j->md, NULL) != 1) return -1;
    if (EVP_DigestUpdate(j->mdctx, a, alen) != 1) return -1;
    if (blen > 0 && EVP_DigestUpdate(j->mdctx, b, blen) != 1) return -1;
    if (EVP_DigestFinal_ex(j->mdctx, out, &n) != 1 || n != HASH_LEN) return -1;
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
static int find_body(const uint8_t *batch, size_t len, size_t *off, size_t *blen)
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
 * if that is the body find_body finds, else the digest is computed here.
 * Returns 0, or -1 if OpenSSL failed. */
static int record_hash(journal_t *j, uint32_t version, const uint8_t *head, size_t head_len,
                       const uint8_t *batch, size_t len, const uint8_t *body_sha256, uint8_t out[HASH_LEN])
{
    static const uint8_t whole = 0x00;
    size_t off = 0, blen = 0;
    unsigned int n = 0;
    if (version == SEG_VERSION_OLD) return sha256_2(j, head, head_len, batch, len, out);
    if (len == 0 || !find_body(batch, len, &off, &blen)) {
        if (EVP_DigestInit_ex(j->mdctx, j->md, NULL) != 1 || EVP_DigestUpdate(j->mdctx, head, head_len) != 1 ||
            EVP_DigestUpdate(j->mdctx, &whole, 1) != 1 ||
            (len > 0 && EVP_DigestUpdate(j->mdctx, batch, len) != 1) ||
            EVP_DigestFinal_ex(j->mdctx, out, &n) != 1 || n != HASH_LEN)
            return -1;
        return 0;
    }
    uint8_t digest[HASH_LEN], mid[9];
    tb_signed_batch_view_t v;
    if (body_sha256 && tb_signed_batch_view(batch, len, &v) == TB_OK && v.body == batch + off &&
        v.body_len == blen) {
        memcpy(digest, body_sha256, HASH_LEN);
    } else if (sha256_2(j, batch + off, blen, NULL, 0, digest) < 0) {
        return -1;
    }
    mid[0] = 0x01;
    put32(mid + 1, (uint32_t)off);   /* batch <= 1 GiB */
    put32(mid + 5, (uint32_t)blen);
    size_t tail = off + blen;
    if (EVP_DigestInit_ex(j->mdctx, j->md, NULL) != 1 || EVP_DigestUpdate(j->mdctx, head, head_len) != 1 ||
        EVP_DigestUpdate(j->mdctx, mid, sizeof mid) != 1 ||
        (off > 0 && EVP_DigestUpdate(j->mdctx, batch, off) != 1) ||
        EVP_DigestUpdate(j->mdctx, digest, HASH_LEN) != 1 ||
        (tail < len && EVP_DigestUpdate(j->mdctx, batch + tail, len - tail) != 1) ||
        EVP_DigestFinal_ex(j->mdctx, out, &n) != 1 || n != HASH_LEN)
        return -1;
    return 0;
}

/* Reads exactly n bytes at off. Returns 0, or -1 with errno set (0 at end of file). */
static int pread_full(int fd, void *buf, size_t n, uint64_t off)
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
static const char *ioerr(int e)
{
    return e ? strerror(e) : "unexpected end of file";
}

/* Writes all iov (cnt entries, modified) at off, continuing after short
 * writes. Returns 0, or -1 with errno set. */
static int pwritev_all(int fd, struct iovec *iov, int cnt, uint64_t off)
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

/* Writes the path of the segment starting at first into buf. Returns buf. */
static char *seg_path(const journal_t *j, uint64_t first, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%0*" PRIu64 SEG_SUFFIX, j->dir, SEG_DIGITS, first);
    return buf;
}

/* ---- body parsing ---- */

/* Parses the head of a body of length len from its first avail bytes
 * (avail >= min(len, HEAD_BODY_MAX)). Returns NULL and fills out, or a
 * static description of what is malformed. */
static const char *parse_head(const uint8_t *b, size_t avail, uint32_t len, body_t *out)
{
    if (len < BODY_MIN) return "body too short";
    if (avail < 50) return "short head";
    out->seq = get64(b);
    out->ms = (int64_t)get64(b + 8);
    out->prev = b + 16;
    out->slen = get16(b + 48);
    if (out->slen == 0 || out->slen > JOURNAL_MAX_NAME) return "bad sender length";
    size_t s = out->slen;
    if (60 + s > len || 60 + s > avail) return "sender overruns the body";
    out->sender = b + 50;
    out->sender_seq = get64(b + 50 + s);
    out->dlen = get16(b + 58 + s);
    if (out->dlen == 0 || out->dlen > JOURNAL_MAX_NAME) return "bad dest length";
    size_t d = out->dlen;
    if (BODY_FIXED + s + d > len || BODY_FIXED + s + d > avail) return "dest overruns the body";
    out->dest = b + 60 + s;
    out->blen = get32(b + 60 + s + d);
    out->batch_off = (uint32_t)(BODY_FIXED + s + d);
    if ((uint64_t)BODY_FIXED + s + d + out->blen != len) return "batch length does not match the record length";
    if (memchr(out->sender, 0, s) || memchr(out->dest, 0, d)) return "NUL byte in sender or dest";
    return NULL;
}

/* ---- segments ---- */

/* Makes room for n segments. Returns 0, or -1 if out of memory. */
static int segs_reserve(journal_t *j, size_t n)
{
    if (n <= j->capsegs) return 0;
    size_t cap = j->capsegs ? j->capsegs * 2 : 16;
    while (cap < n) cap *= 2;
    seg_t *ns = realloc(j->segs, cap * sizeof *ns);
    if (!ns) return -1;
    j->segs = ns;
    j->capsegs = cap;
    return 0;
}

/* Closes s's fd if open. Returns nothing. */
static void seg_close(journal_t *j, seg_t *s)
{
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
        j->open_fds--;
    }
}

/* Records (seq, off) in s's sparse index when due. Returns 0, or -1 if out of memory. */
static int seg_index_add(seg_t *s, uint64_t seq, uint64_t off)
{
    if (s->nidx > 0 && (seq - s->first_seq) % INDEX_EVERY_RECORDS != 0 &&
        off - s->idx[s->nidx - 1].off < INDEX_EVERY_BYTES)
        return 0;
    if (s->nidx == s->capidx) {
        size_t cap = s->capidx ? s->capidx * 2 : 8;
        idxent_t *ni = realloc(s->idx, cap * sizeof *ni);
        if (!ni) return -1;
        s->idx = ni;
        s->capidx = cap;
    }
    s->idx[s->nidx].seq = seq;
    s->idx[s->nidx].off = off;
    s->nidx++;
    return 0;
}

/* Closes the least recently used read fd of a clean sealed segment. Returns nothing. */
static void evict_one(journal_t *j)
{
    seg_t *victim = NULL;
    for (size_t i = 0; i + 1 < j->nsegs; i++) {
        seg_t *s = &j->segs[i];
        if (s->fd >= 0 && !s->dirty && (!victim || s->last_use < victim->last_use)) victim = s;
    }
    if (victim) seg_close(j, victim);
}

/* Returns an fd to read s (opening it on demand), or -1 with err set. */
static int seg_fd(journal_t *j, seg_t *s, char *err, size_t errlen)
{
    char path[PATH_MAX];
    s->last_use = ++j->tick;
    if (s->fd >= 0) return s->fd;
    if (j->open_fds >= MAX_OPEN_FDS) evict_one(j);
    int fd = open(seg_path(j, s->first_seq, path, sizeof path), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        tb_seterr(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    s->fd = fd;
    j->open_fds++;
    return fd;
}

/* Returns the index of the last segment whose first_seq <= seq (0 if none). */
static size_t seg_find(const journal_t *j, uint64_t seq)
{
    size_t lo = 0, hi = j->nsegs;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (j->segs[mid].first_seq <= seq) lo = mid;
        else hi = mid;
    }
    return lo;
}

/* Returns the index of the segment starting at first, or -1 if there is none. */
static long seg_find_exact(const journal_t *j, uint64_t first)
{
    if (j->nsegs == 0) return -1;
    size_t i = seg_find(j, first);
    return j->segs[i].first_seq == first ? (long)i : -1;
}

/* Creates the segment starting at first as the new active segment (header
 * written, not yet synced). Returns TB_OK, TB_ERR_NOMEM or TB_ERR_IO. */
static tb_err_t seg_create(journal_t *j, uint64_t first, char *err, size_t errlen)
{
    char path[PATH_MAX];
    uint8_t hdr[SEG_HDR];
    if (segs_reserve(j, j->nsegs + 1) < 0) {
        tb_seterr(err, errlen, "%s: out of memory", j->dir);
        return TB_ERR_NOMEM;
    }
    seg_path(j, first, path, sizeof path);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        tb_seterr(err, errlen, "%s: cannot create segment: %s", path, strerror(errno));
        return TB_ERR_IO;
    }
    memcpy(hdr, SEG_MAGIC, 4);
    put32(hdr + 4, SEG_VERSION);
    put64(hdr + 8, first);
    put32(hdr + 16, 0);
    put32(hdr + 20, crc32c(hdr, 20));
    struct iovec iov = { hdr, SEG_HDR };
    if (pwritev_all(fd, &iov, 1, 0) < 0) {
        int e = errno;
        close(fd);
        unlink(path);
        tb_seterr(err, errlen, "%s: cannot write segment header: %s", path, strerror(e));
        return TB_ERR_IO;
    }
    seg_t *s = &j->segs[j->nsegs++];
    memset(s, 0, sizeof *s);
    s->first_seq = first;
    s->last_seq = first - 1;
    s->size = SEG_HDR;
    s->version = SEG_VERSION;
    s->fd = fd;
    s->dirty = 1;
    s->last_use = ++j->tick;
    j->open_fds++;
    j->total_bytes += SEG_HDR;
    j->dir_dirty = 1;
    if (j->open_fds > MAX_OPEN_FDS) evict_one(j);
    return TB_OK;
}

/* Removes the active segment again (its first append failed). Returns nothing. */
static void seg_drop_last(journal_t *j)
{
    char path[PATH_MAX];
    seg_t *s = &j->segs[j->nsegs - 1];
    seg_close(j, s);
    unlink(seg_path(j, s->first_seq, path, sizeof path));
    j->total_bytes -= s->size;
    free(s->idx);
    j->nsegs--;
    j->dir_dirty = 1;
}

/* Finds the offset of record seq in s (s->size if seq is past its end).
 * Returns TB_OK, TB_ERR_IO or TB_ERR_PROTO. */
static tb_err_t seg_locate(journal_t *j, seg_t *s, uint64_t seq, uint64_t *out, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (seq > s->last_seq) {
        *out = s->size;
        return TB_OK;
    }
    uint64_t cur = s->first_seq, off = SEG_HDR;
    if (s->nidx > 0) {
        size_t lo = 0, hi = s->nidx;
        while (hi - lo > 1) {
            size_t mid = lo + (hi - lo) / 2;
            if (s->idx[mid].seq <= seq) lo = mid;
            else hi = mid;
        }
        cur = s->idx[lo].seq;
        off = s->idx[lo].off;
    }
    int fd = seg_fd(j, s, err, errlen);
    if (fd < 0) return TB_ERR_IO;
    while (cur < seq) {
        uint8_t fr[4];
        if (pread_full(fd, fr, sizeof fr, off) < 0) {
            int e = errno;
            tb_seterr(err, errlen, "%s: offset %" PRIu64 ": %s", seg_path(j, s->first_seq, path, sizeof path),
                   off, ioerr(e));
            return TB_ERR_IO;
        }
        j->read_bytes += sizeof fr;
        uint32_t len = get32(fr);
        if (len < BODY_MIN || off + FRAME + len > s->size) {
            tb_seterr(err, errlen, "%s: offset %" PRIu64 ": bad record length %" PRIu32 " (record %" PRIu64 ")",
                   seg_path(j, s->first_seq, path, sizeof path), off, len, cur);
            return TB_ERR_PROTO;
        }
        off += FRAME + len;
        cur++;
    }
    *out = off;
    return TB_OK;
}

/* ---- anchor ---- */

/* Reads <dir>/anchor into sc if it exists. Returns TB_OK, TB_ERR_IO or TB_ERR_PROTO. */
static tb_err_t anchor_read(scan_t *sc, char *err, size_t errlen)
{
    journal_t *j = sc->j;
    char path[PATH_MAX];
    uint8_t a[ANCHOR_LEN + 1];
    struct stat st;
    tb_err_t rc = TB_OK;
    snprintf(path, sizeof path, "%s/" ANCHOR_TMP, j->dir);
    unlink(path);  /* a gc that died before its rename */
    snprintf(path, sizeof path, "%s/" ANCHOR_NAME, j->dir);
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
    if (pread_full(fd, a, ANCHOR_LEN, 0) < 0) {
        tb_seterr(err, errlen, "%s: %s", path, ioerr(errno));
        rc = TB_ERR_IO;
        goto done;
    }
    if (memcmp(a, ANCHOR_MAGIC, 4) != 0 || get32(a + 4) != ANCHOR_VERSION || crc32c(a, 48) != get32(a + 48)) {
        tb_seterr(err, errlen, "%s: bad anchor file (magic, version or CRC): journal damaged", path);
        rc = TB_ERR_PROTO;
        goto done;
    }
    sc->have_anchor = 1;
    sc->anchor_seq = get64(a + 8);
    memcpy(sc->anchor_hash, a + 16, HASH_LEN);
    if (sc->anchor_seq == 0) {
        tb_seterr(err, errlen, "%s: anchor names hub_seq 0: journal damaged", path);
        rc = TB_ERR_PROTO;
    }
done:
    close(fd);
    return rc;
}

/* Atomically replaces <dir>/anchor with (seq, hash). Returns TB_OK or TB_ERR_IO. */
static tb_err_t anchor_write(journal_t *j, uint64_t seq, const uint8_t hash[HASH_LEN], char *err, size_t errlen)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    uint8_t a[ANCHOR_LEN];
    memcpy(a, ANCHOR_MAGIC, 4);
    put32(a + 4, ANCHOR_VERSION);
    put64(a + 8, seq);
    memcpy(a + 16, hash, HASH_LEN);
    put32(a + 48, crc32c(a, 48));
    snprintf(tmp, sizeof tmp, "%s/" ANCHOR_TMP, j->dir);
    snprintf(path, sizeof path, "%s/" ANCHOR_NAME, j->dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        tb_seterr(err, errlen, "%s: %s", tmp, strerror(errno));
        return TB_ERR_IO;
    }
    struct iovec iov = { a, ANCHOR_LEN };
    if (pwritev_all(fd, &iov, 1, 0) < 0 || fsync(fd) < 0) {
        tb_seterr(err, errlen, "%s: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        return TB_ERR_IO;
    }
    close(fd);
    if (rename(tmp, path) < 0 || fsync(j->dirfd) < 0) {
        tb_seterr(err, errlen, "%s: %s", path, strerror(errno));
        unlink(tmp);
        return TB_ERR_IO;
    }
    return TB_OK;
}

/* ---- recovery scan ---- */

/* Points *out at n bytes at off of the scanned file (off + n <= fsize),
 * reading a window as needed. Returns 0, or -1 with errno set. */
static int sb_get(sbuf_t *sb, uint64_t off, size_t n, const uint8_t **out)
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
    if (pread_full(sb->fd, sb->buf, rd, off) < 0) return -1;
    sb->base = off;
    sb->len = rd;
    *out = sb->buf;
    return 0;
}

/* Looks for a record with a plausible frame, a hub_seq in [seq_lo,
 * seq_lo + SEARCH_SEQ_RANGE) and a matching CRC starting anywhere at or
 * after from. Returns 1 and *at if found, 0 if none, -1 on a read error. */
static int find_valid_after(sbuf_t *sb, uint64_t from, uint64_t seq_lo, uint64_t *at)
{
    for (uint64_t p = from; p + FRAME + BODY_MIN <= sb->fsize; p++) {
        const uint8_t *h, *b;
        if (sb_get(sb, p, FRAME + 8, &h) < 0) return -1;
        uint32_t len = get32(h);
        if (len < BODY_MIN || len > BODY_MAX || len > sb->fsize - p - FRAME) continue;
        uint64_t seq = get64(h + FRAME);
        if (seq < seq_lo || seq - seq_lo >= SEARCH_SEQ_RANGE) continue;
        uint32_t crc = get32(h + 4);
        if (sb_get(sb, p + FRAME, len, &b) < 0) return -1;
        if (crc32c(b, len) == crc) {
            *at = p;
            return 1;
        }
    }
    return 0;
}

/* Returns 1 if the scanned file holds only zero bytes (an unwritten
 * segment whose size reached the disk before its data), 0 if not, -1 on a
 * read error. */
static int all_zero(sbuf_t *sb)
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
static tb_err_t check_chain(scan_t *sc, uint32_t version, const char *path, uint64_t off, const uint8_t *body,
                            const body_t *p, char *err, size_t errlen)
{
    uint64_t first_kept = sc->have_anchor ? sc->anchor_seq + 1 : 1;
    int verify = sc->opts->verify_chain;
    if (p->seq == first_kept) {
        const uint8_t *want = sc->have_anchor ? sc->anchor_hash : zero_hash;
        if (memcmp(p->prev, want, HASH_LEN) != 0) {
            tb_seterr(err, errlen, "%s: offset %" PRIu64 ": hash chain broken at record %" PRIu64
                   ": prev_hash does not match %s: journal damaged or tampered with", path, off, p->seq,
                   sc->have_anchor ? "the anchor file" : "the zero hash of the first record");
            return TB_ERR_PROTO;
        }
    } else if (verify && sc->have_prev && memcmp(p->prev, sc->prev, HASH_LEN) != 0) {
        tb_seterr(err, errlen, "%s: offset %" PRIu64 ": hash chain broken at record %" PRIu64
               ": prev_hash is not the hash of record %" PRIu64 ": journal damaged or tampered with",
               path, off, p->seq, p->seq - 1);
        return TB_ERR_PROTO;
    }
    if (verify || (sc->have_anchor && p->seq == sc->anchor_seq)) {
        if (record_hash(sc->j, version, body, p->batch_off, body + p->batch_off, p->blen, NULL, sc->prev) < 0) {
            tb_seterr(err, errlen, "%s: SHA-256 failed", path);
            return TB_ERR_CRYPTO;
        }
        sc->have_prev = 1;
        if (sc->have_anchor && p->seq == sc->anchor_seq && memcmp(sc->prev, sc->anchor_hash, HASH_LEN) != 0) {
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
static tb_err_t check_header(scan_t *sc, size_t i, int fd, const char *path, char *err, size_t errlen)
{
    seg_t *s = &sc->j->segs[i];
    uint8_t hdr[SEG_HDR];
    if (pread_full(fd, hdr, SEG_HDR, 0) < 0) {
        tb_seterr(err, errlen, "%s: %s", path, ioerr(errno));
        return TB_ERR_IO;
    }
    if (memcmp(hdr, SEG_MAGIC, 4) != 0) {
        tb_seterr(err, errlen, "%s: offset 0: bad segment header (magic is not " SEG_MAGIC "): journal damaged", path);
        return TB_ERR_PROTO;
    }
    if (crc32c(hdr, 20) != get32(hdr + 20)) {
        tb_seterr(err, errlen, "%s: offset 0: bad segment header (CRC mismatch): journal damaged", path);
        return TB_ERR_PROTO;
    }
    uint32_t version = get32(hdr + 4);
    if (version != SEG_VERSION && version != SEG_VERSION_OLD) {
        tb_seterr(err, errlen, "%s: offset 4: unsupported segment version %" PRIu32, path, version);
        return TB_ERR_PROTO;
    }
    s->version = version;
    uint64_t first = get64(hdr + 8);
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

/* Scans segment i: checks every record, cuts a torn tail of the last
 * segment, fills the segment's state and calls on_record. Sets *dropped if
 * the (last) segment was removed for a torn header. Returns TB_OK,
 * TB_ERR_PROTO (damage, err names file + offset), TB_ERR_IO, TB_ERR_NOMEM. */
static tb_err_t scan_segment(scan_t *sc, size_t i, int *dropped, char *err, size_t errlen)
{
    journal_t *j = sc->j;
    seg_t *s = &j->segs[i];
    int is_last = i + 1 == j->nsegs, leftover = i < sc->nleft;
    char path[PATH_MAX], q[PATH_MAX + 8];
    struct stat st;
    tb_err_t rc = TB_OK;
    uint64_t nrec = 0;
    *dropped = 0;
    seg_path(j, s->first_seq, path, sizeof path);
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
    int unwritten = fsize < SEG_HDR;
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
            j->dir_dirty = 1;
            *dropped = 1;
            goto done;
        }
        tb_seterr(err, errlen, "%s: offset 0: segment header incomplete (%" PRIu64 " bytes): journal damaged",
               path, fsize);
        rc = TB_ERR_PROTO;
        goto done;
    }
    if ((rc = check_header(sc, i, fd, path, err, errlen)) != TB_OK) goto done;

    uint64_t off = SEG_HDR;
    while (off < fsize) {
        const char *damage = NULL;
        char dbuf[128];
        const uint8_t *fr, *body = NULL;
        uint32_t len = 0;
        if (fsize - off < FRAME) {
            damage = "incomplete record frame";
        } else {
            if (sb_get(&sc->sb, off, FRAME, &fr) < 0) goto ioerror;
            len = get32(fr);
            uint32_t crc = get32(fr + 4);
            if (len < BODY_MIN || len > BODY_MAX) {
                snprintf(dbuf, sizeof dbuf, "invalid record length %" PRIu32, len);
                damage = dbuf;
            } else if (len > fsize - off - FRAME) {
                snprintf(dbuf, sizeof dbuf, "incomplete record (length %" PRIu32 ", %" PRIu64 " bytes left)",
                         len, fsize - off - FRAME);
                damage = dbuf;
            } else {
                if (sb_get(&sc->sb, off + FRAME, len, &body) < 0) goto ioerror;
                if (crc32c(body, len) != crc) damage = "CRC mismatch";
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
        body_t p;
        const char *why = parse_head(body, len < HEAD_BODY_MAX ? len : HEAD_BODY_MAX, len, &p);
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
                memcpy(j->rsender, p.sender, p.slen);
                j->rsender[p.slen] = '\0';
                memcpy(j->rdest, p.dest, p.dlen);
                j->rdest[p.dlen] = '\0';
                rec.hub_seq = p.seq;
                rec.accepted_ms = p.ms;
                rec.sender = j->rsender;
                rec.sender_seq = p.sender_seq;
                rec.dest = j->rdest;
                rec.batch = body + p.batch_off;
                rec.batch_len = p.blen;
                sc->opts->on_record(sc->opts->arg, &rec);
            }
        }
        if (seg_index_add(s, p.seq, off) < 0) {
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
        off += FRAME + len;
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
    tb_seterr(err, errlen, "%s: %s", path, ioerr(errno));
done:
    if (fd >= 0) close(fd);
    return rc;
}

/* Compares segments by first_seq, for qsort. Returns <0, 0 or >0. */
static int seg_cmp(const void *a, const void *b)
{
    uint64_t x = ((const seg_t *)a)->first_seq, y = ((const seg_t *)b)->first_seq;
    return x < y ? -1 : x > y;
}

/* Lists the segment files of the directory into j->segs, sorted. Returns
 * TB_OK, TB_ERR_IO, TB_ERR_NOMEM or TB_ERR_PROTO. */
static tb_err_t list_segments(journal_t *j, char *err, size_t errlen)
{
    tb_err_t rc = TB_OK;
    int dfd = dup(j->dirfd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        tb_seterr(err, errlen, "%s: %s", j->dir, strerror(errno));
        if (dfd >= 0) close(dfd);
        return TB_ERR_IO;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *n = de->d_name;
        if (strlen(n) != SEG_DIGITS + strlen(SEG_SUFFIX) || strcmp(n + SEG_DIGITS, SEG_SUFFIX) != 0) continue;
        int digits = 1;
        for (int k = 0; k < SEG_DIGITS; k++) digits &= n[k] >= '0' && n[k] <= '9';
        if (!digits) continue;
        errno = 0;
        uint64_t first = strtoull(n, NULL, 10);
        if (errno != 0 || first == 0) {
            tb_seterr(err, errlen, "%s/%s: bad segment file name: journal damaged", j->dir, n);
            rc = TB_ERR_PROTO;
            goto done;
        }
        if (segs_reserve(j, j->nsegs + 1) < 0) {
            tb_seterr(err, errlen, "%s: out of memory", j->dir);
            rc = TB_ERR_NOMEM;
            goto done;
        }
        seg_t *s = &j->segs[j->nsegs++];
        memset(s, 0, sizeof *s);
        s->first_seq = first;
        s->last_seq = first - 1;
        s->fd = -1;
    }
    if (j->nsegs > 1) qsort(j->segs, j->nsegs, sizeof *j->segs, seg_cmp);
done:
    closedir(d);
    return rc;
}

/* Opens (creating if missing) and locks the journal directory. Returns
 * TB_OK or TB_ERR_IO. */
static tb_err_t lock_dir(journal_t *j, char *err, size_t errlen)
{
    if (mkdir(j->dir, 0700) == 0) {
        /* make the new directory's entry durable in its parent */
        char parent[PATH_MAX];
        snprintf(parent, sizeof parent, "%s/..", j->dir);
        int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (pfd >= 0) {
            fsync(pfd);
            close(pfd);
        }
    } else if (errno != EEXIST) {
        tb_seterr(err, errlen, "%s: cannot create journal directory: %s", j->dir, strerror(errno));
        return TB_ERR_IO;
    }
    j->dirfd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (j->dirfd < 0) {
        tb_seterr(err, errlen, "%s: %s", j->dir, strerror(errno));
        return TB_ERR_IO;
    }
    if (flock(j->dirfd, LOCK_EX | LOCK_NB) < 0) {
        tb_seterr(err, errlen, "%s: %s", j->dir,
               errno == EWOULDBLOCK ? "journal is in use by another process (locked)" : strerror(errno));
        return TB_ERR_IO;
    }
    return TB_OK;
}

/* Hashes the record at (first, off, len), in a segment of that version,
 * into out. Returns TB_OK, TB_ERR_IO, TB_ERR_NOMEM, TB_ERR_PROTO or
 * TB_ERR_CRYPTO. */
static tb_err_t hash_record_at(journal_t *j, uint64_t first, uint64_t off, uint32_t len, uint32_t version,
                               uint8_t out[HASH_LEN], char *err, size_t errlen)
{
    char path[PATH_MAX];
    tb_err_t rc = TB_OK;
    body_t p;
    const char *why = NULL;
    uint8_t *buf = malloc(len);
    int fd = open(seg_path(j, first, path, sizeof path), O_RDONLY | O_CLOEXEC);
    if (!buf) {
        tb_seterr(err, errlen, "%s: out of memory", path);
        rc = TB_ERR_NOMEM;
    } else if (fd < 0 || pread_full(fd, buf, len, off + FRAME) < 0) {
        tb_seterr(err, errlen, "%s: offset %" PRIu64 ": %s", path, off, ioerr(errno));
        rc = TB_ERR_IO;
    } else if ((why = parse_head(buf, len < HEAD_BODY_MAX ? len : HEAD_BODY_MAX, len, &p)) != NULL) {
        tb_seterr(err, errlen, "%s: offset %" PRIu64 ": malformed record (%s)", path, off, why);
        rc = TB_ERR_PROTO;  /* the scan parsed it: changed on disk since */
    } else if (record_hash(j, version, buf, p.batch_off, buf + p.batch_off, p.blen, NULL, out) < 0) {
        tb_seterr(err, errlen, "SHA-256 failed");
        rc = TB_ERR_CRYPTO;
    }
    if (fd >= 0) close(fd);
    free(buf);
    return rc;
}

/* ---- public API ---- */

void journal_opts_init(journal_opts_t *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->segment_bytes = JOURNAL_DEFAULT_SEGMENT_BYTES;
    opts->verify_chain = 1;
}

tb_err_t journal_open(const char *dir, const journal_opts_t *opts, journal_t **out,
                      journal_report_t *report, char *err, size_t errlen)
{
    journal_opts_t defaults;
    journal_t *j = NULL;
    scan_t sc;
    tb_err_t rc = TB_OK;
    char path[PATH_MAX], q[PATH_MAX + 8];
    memset(&sc, 0, sizeof sc);
    sc.sb.fd = -1;
    if (report) memset(report, 0, sizeof *report);
    if (!out || !dir || !*dir) {
        tb_seterr(err, errlen, "journal_open: no directory");
        return TB_ERR_INVALID;
    }
    *out = NULL;
    if (strlen(dir) + SEG_DIGITS + 16 >= PATH_MAX) {
        tb_seterr(err, errlen, "%s: directory name too long", dir);
        return TB_ERR_INVALID;
    }
    if (!opts) {
        journal_opts_init(&defaults);
        opts = &defaults;
    }
    j = calloc(1, sizeof *j);
    if (!j || !(j->dir = strdup(dir))) {
        tb_seterr(err, errlen, "%s: out of memory", dir);
        rc = TB_ERR_NOMEM;
        goto fail;
    }
    j->dirfd = -1;
    j->segment_bytes = opts->segment_bytes ? opts->segment_bytes : JOURNAL_DEFAULT_SEGMENT_BYTES;
    j->md = EVP_MD_fetch(NULL, "SHA2-256", NULL);
    j->mdctx = EVP_MD_CTX_new();
    if (!j->md || !j->mdctx) {
        tb_seterr(err, errlen, "%s: SHA-256 is not available from OpenSSL", dir);
        rc = TB_ERR_CRYPTO;
        goto fail;
    }
    if ((rc = lock_dir(j, err, errlen)) != TB_OK) goto fail;
    sc.j = j;
    sc.opts = opts;
    if ((rc = anchor_read(&sc, err, errlen)) != TB_OK) goto fail;
    if ((rc = list_segments(j, err, errlen)) != TB_OK) goto fail;
    if (sc.have_anchor && j->nsegs == 0) {
        tb_seterr(err, errlen, "%s: anchor file present but no segment: journal damaged", dir);
        rc = TB_ERR_PROTO;
        goto fail;
    }
    /* Segments an interrupted gc did not get to unlink: all their records are <= the anchor. */
    if (sc.have_anchor)
        while (sc.nleft + 1 < j->nsegs && j->segs[sc.nleft + 1].first_seq <= sc.anchor_seq + 1) sc.nleft++;
    if (!sc.have_anchor) sc.have_prev = 1;  /* zero hash before record 1 */
    else if (sc.nleft == 0) {
        sc.have_prev = 1;
        memcpy(sc.prev, sc.anchor_hash, HASH_LEN);
    }

    for (size_t i = 0; i < j->nsegs; i++) {
        int dropped = 0;
        if ((rc = scan_segment(&sc, i, &dropped, err, errlen)) != TB_OK) goto fail;
        if (dropped) j->nsegs--;  /* only ever the last one */
    }
    if (sc.nleft > 0 && (sc.nleft >= j->nsegs || sc.expect <= sc.anchor_seq)) {
        tb_seterr(err, errlen, "%s: segments before the anchor end before hub_seq %" PRIu64 ": journal damaged",
               dir, sc.anchor_seq);
        rc = TB_ERR_PROTO;
        goto fail;
    }
    j->last_seq = sc.expect - 1;
    if (j->nsegs == 0 && !sc.have_anchor) j->last_seq = 0;
    if (sc.rep.records == 0) {
        memcpy(j->last_hash, sc.have_anchor ? sc.anchor_hash : zero_hash, HASH_LEN);
    } else if (opts->verify_chain) {
        memcpy(j->last_hash, sc.prev, HASH_LEN);
    } else if ((rc = hash_record_at(j, sc.last_first, sc.last_off, sc.last_len, sc.last_version,
                                    j->last_hash, err, errlen)) != TB_OK) {
        goto fail;
    }

    /* finish an interrupted gc */
    for (size_t i = 0; i < sc.nleft; i++) {
        seg_path(j, j->segs[i].first_seq, path, sizeof path);
        if (unlink(path) < 0) {
            tb_seterr(err, errlen, "%s: cannot remove segment before the anchor: %s", path, strerror(errno));
            rc = TB_ERR_IO;
            goto fail;
        }
        tb_log(TB_LOG_INFO, "journal", "gc_completed", "file=%s anchor_seq=%" PRIu64,
               tb_log_quote(path, q, sizeof q), sc.anchor_seq);
        free(j->segs[i].idx);
        j->segs[i].idx = NULL;
        j->dir_dirty = 1;
    }
    if (sc.nleft > 0) {
        memmove(j->segs, j->segs + sc.nleft, (j->nsegs - sc.nleft) * sizeof *j->segs);
        j->nsegs -= sc.nleft;
    }

    if (j->nsegs == 0) {
        if ((rc = seg_create(j, j->last_seq + 1, err, errlen)) != TB_OK) goto fail;
    } else {
        seg_t *a = &j->segs[j->nsegs - 1];
        a->fd = open(seg_path(j, a->first_seq, path, sizeof path), O_RDWR | O_CLOEXEC);
        if (a->fd < 0) {
            tb_seterr(err, errlen, "%s: %s", path, strerror(errno));
            rc = TB_ERR_IO;
            goto fail;
        }
        j->open_fds++;
    }
    j->total_bytes = 0;
    for (size_t i = 0; i < j->nsegs; i++) j->total_bytes += j->segs[i].size;
    j->durable_seq = j->last_seq;
    j->dir_dirty = 1;
    if ((rc = journal_sync(j, err, errlen)) != TB_OK) goto fail;

    free(sc.sb.buf);
    if (report) {
        *report = sc.rep;
        report->segments = j->nsegs;
        report->bytes = j->total_bytes;
        report->last_seq = j->last_seq;
    }
    *out = j;
    return TB_OK;
fail:
    free(sc.sb.buf);
    if (j) {
        j->failed = 1;  /* no sync on this half-built journal */
        journal_destroy(&j);
    }
    return rc;
}

void journal_destroy(journal_t **self)
{
    if (!self || !*self) return;
    journal_t *j = *self;
    char err[512], q[PATH_MAX + 8];
    if (!j->failed && j->nsegs > 0 && journal_sync(j, err, sizeof err) != TB_OK)
        tb_log(TB_LOG_ERROR, "journal", "close_sync_failed", "error=%s", tb_log_quote(err, q, sizeof q));
    if (j->nreaders > 0)
        tb_log(TB_LOG_WARN, "journal", "readers_leaked", "count=%zu", j->nreaders);
    for (size_t i = 0; i < j->nsegs; i++) {
        seg_close(j, &j->segs[i]);
        free(j->segs[i].idx);
    }
    free(j->segs);
    if (j->dirfd >= 0) close(j->dirfd);  /* releases the flock */
    free(j->rbuf);
    EVP_MD_CTX_free(j->mdctx);
    EVP_MD_free(j->md);
    free(j->dir);
    free(j);
    *self = NULL;
}

tb_err_t journal_append(journal_t *self, const char *sender, uint64_t sender_seq, const char *dest,
                        const uint8_t *batch, size_t len, const uint8_t *body_sha256, uint64_t *hub_seq,
                        char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (!self || !sender || !dest || (!batch && len > 0)) {
        tb_seterr(err, errlen, "journal_append: missing argument");
        return TB_ERR_INVALID;
    }
    size_t slen = strlen(sender), dlen = strlen(dest);
    if (slen == 0 || slen > JOURNAL_MAX_NAME || dlen == 0 || dlen > JOURNAL_MAX_NAME) {
        tb_seterr(err, errlen, "journal_append: sender (%zu bytes) and dest (%zu bytes) must be 1..%u bytes",
               slen, dlen, JOURNAL_MAX_NAME);
        return TB_ERR_INVALID;
    }
    if (len > JOURNAL_MAX_BATCH) {
        tb_seterr(err, errlen, "journal_append: batch of %zu bytes exceeds the limit of %u", len, JOURNAL_MAX_BATCH);
        return TB_ERR_INVALID;
    }
    if (self->failed) {
        tb_seterr(err, errlen, "%s", self->failmsg);
        return TB_ERR_IO;
    }
    if (self->rbuf_cap > RBUF_KEEP) {  /* do not keep a huge read buffer around */
        free(self->rbuf);
        self->rbuf = NULL;
        self->rbuf_cap = 0;
    }

    uint64_t seq = self->last_seq + 1;
    int64_t ms = now_ms();
    uint8_t *h = self->whead, *b = h + FRAME;
    size_t head_body = BODY_FIXED + slen + dlen;
    uint32_t body_len = (uint32_t)(head_body + len);
    put64(b, seq);
    put64(b + 8, (uint64_t)ms);
    memcpy(b + 16, self->last_hash, HASH_LEN);
    put16(b + 48, (uint16_t)slen);
    memcpy(b + 50, sender, slen);
    put64(b + 50 + slen, sender_seq);
    put16(b + 58 + slen, (uint16_t)dlen);
    memcpy(b + 60 + slen, dest, dlen);
    put32(b + 60 + slen + dlen, (uint32_t)len);
    uint32_t crc = crc_update(CRC_INIT, b, head_body);
    if (len > 0) crc = crc_update(crc, batch, len);
    put32(h, body_len);
    put32(h + 4, crc ^ 0xFFFFFFFFu);

    uint64_t reclen = FRAME + (uint64_t)body_len;
    seg_t *s = &self->segs[self->nsegs - 1];
    int created = 0;
    /* roll when full, and off a segment of the old version (left by an
     * older release) once it holds records: new records get the cheaper hash */
    int roll = s->last_seq >= s->first_seq &&
               (s->size + reclen > self->segment_bytes || s->version != SEG_VERSION);
    uint8_t hash[HASH_LEN];
    if (record_hash(self, roll ? SEG_VERSION : s->version, b, head_body, batch, len, body_sha256, hash) < 0) {
        tb_seterr(err, errlen, "journal_append: SHA-256 failed");
        return TB_ERR_CRYPTO;
    }
    if (roll) {
        tb_err_t rc = seg_create(self, seq, err, errlen);
        if (rc != TB_OK) return rc;
        created = 1;
        s = &self->segs[self->nsegs - 1];
    }
    struct iovec iov[2] = { { h, FRAME + head_body }, { (void *)(uintptr_t)batch, len } };
    if (pwritev_all(s->fd, iov, 2, s->size) < 0) {
        int e = errno;
        seg_path(self, s->first_seq, path, sizeof path);
        tb_seterr(err, errlen, "%s: offset %" PRIu64 ": cannot append record %" PRIu64 " (%" PRIu64 " bytes): %s",
               path, s->size, seq, reclen, strerror(e));
        if (created) {
            seg_drop_last(self);
        } else if (ftruncate(s->fd, (off_t)s->size) < 0) {
            self->failed = 1;
            snprintf(self->failmsg, sizeof self->failmsg, "%s: cannot cut a failed append back to offset %"
                     PRIu64 ": %s; reopen the journal", path, s->size, strerror(errno));
        }
        return TB_ERR_IO;
    }
    if (seg_index_add(s, seq, s->size) < 0) {
        /* the index is only a shortcut: readers walk from the previous entry */
    }
    s->size += reclen;
    s->last_seq = seq;
    s->last_ms = ms;
    s->dirty = 1;
    self->total_bytes += reclen;
    self->last_seq = seq;
    memcpy(self->last_hash, hash, HASH_LEN);
    if (hub_seq) *hub_seq = seq;
    return TB_OK;
}

tb_err_t journal_sync(journal_t *self, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (!self) return TB_ERR_INVALID;
    if (self->failed) {
        tb_seterr(err, errlen, "%s", self->failmsg);
        return TB_ERR_IO;
    }
    /* Dirty segments are always a suffix: the active one and those rolled since the last sync. */
    size_t i = self->nsegs;
    while (i > 0 && self->segs[i - 1].dirty) i--;
    for (; i < self->nsegs; i++) {
        seg_t *s = &self->segs[i];
        if (fdatasync(s->fd) < 0) {
            int e = errno;
            seg_path(self, s->first_seq, path, sizeof path);
            self->failed = 1;
            snprintf(self->failmsg, sizeof self->failmsg, "%s: fdatasync failed: %s; the journal refuses"
                     " writes until it is reopened", path, strerror(e));
            tb_seterr(err, errlen, "%s", self->failmsg);
            return TB_ERR_IO;
        }
        s->dirty = 0;
    }
    if (self->dir_dirty) {
        if (fsync(self->dirfd) < 0) {
            tb_seterr(err, errlen, "%s: fsync of the directory failed: %s", self->dir, strerror(errno));
            return TB_ERR_IO;
        }
        self->dir_dirty = 0;
    }
    self->durable_seq = self->last_seq;
    return TB_OK;
}

uint64_t journal_last_seq(const journal_t *self) { return self ? self->last_seq : 0; }
uint64_t journal_durable_seq(const journal_t *self) { return self ? self->durable_seq : 0; }
uint64_t journal_bytes(const journal_t *self) { return self ? self->total_bytes : 0; }
size_t journal_segments(const journal_t *self) { return self ? self->nsegs : 0; }
uint64_t journal_read_bytes(const journal_t *self) { return self ? self->read_bytes : 0; }

/* ---- readers ---- */

tb_err_t journal_reader_new(journal_t *self, uint64_t after_seq, journal_reader_t **out,
                            char *err, size_t errlen)
{
    if (!self || !out) return TB_ERR_INVALID;
    *out = NULL;
    if (after_seq > self->last_seq) {
        tb_seterr(err, errlen, "%s: reader position %" PRIu64 " is past the last record %" PRIu64,
               self->dir, after_seq, self->last_seq);
        return TB_ERR_INVALID;
    }
    uint64_t next = after_seq + 1;
    if (next < self->segs[0].first_seq) {
        tb_seterr(err, errlen, "%s: records up to hub_seq %" PRIu64 " were removed by gc; cannot read from %" PRIu64,
               self->dir, self->segs[0].first_seq - 1, next);
        return TB_ERR_NOTFOUND;
    }
    seg_t *s = &self->segs[seg_find(self, next)];
    uint64_t off = 0;
    tb_err_t rc = seg_locate(self, s, next, &off, err, errlen);
    if (rc != TB_OK) return rc;
    journal_reader_t *r = calloc(1, sizeof *r);
    if (!r) {
        tb_seterr(err, errlen, "%s: out of memory", self->dir);
        return TB_ERR_NOMEM;
    }
    r->j = self;
    r->next_seq = next;
    r->seg_first = s->first_seq;
    r->off = off;
    self->nreaders++;
    *out = r;
    return TB_OK;
}

/* Makes the shared read buffer hold at least n bytes (keeping its content,
 * shrinking a huge one back). Returns 0, or -1 if out of memory. */
static int rbuf_reserve(journal_t *j, size_t n)
{
    size_t want = n;
    if (n <= RBUF_KEEP && j->rbuf_cap > RBUF_KEEP) want = RBUF_KEEP;
    else if (n <= j->rbuf_cap) return 0;
    else if (n < 64 * 1024) want = 64 * 1024;
    uint8_t *nb = realloc(j->rbuf, want);
    if (!nb) return -1;
    j->rbuf = nb;
    j->rbuf_cap = want;
    return 0;
}

tb_err_t journal_reader_next(journal_reader_t *r, int (*want)(void *arg, const char *dest), void *arg,
                             jrec_t *rec, int *got, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (!r || !rec || !got) return TB_ERR_INVALID;
    journal_t *j = r->j;
    *got = 0;
    for (;;) {
        if (r->next_seq > j->durable_seq) return TB_OK;
        long i = seg_find_exact(j, r->seg_first);
        if (i < 0 || r->next_seq < j->segs[0].first_seq) {
            tb_seterr(err, errlen, "%s: record %" PRIu64 " was removed by gc before this reader got to it",
                   j->dir, r->next_seq);
            return TB_ERR_NOTFOUND;
        }
        seg_t *s = &j->segs[i];
        if (r->next_seq > s->last_seq) {
            if ((size_t)i + 1 >= j->nsegs || j->segs[i + 1].first_seq != r->next_seq) {
                tb_seterr(err, errlen, "%s: no segment holds record %" PRIu64, j->dir, r->next_seq);
                return TB_ERR_PROTO;
            }
            r->seg_first = j->segs[i + 1].first_seq;
            r->off = SEG_HDR;
            continue;
        }
        int fd = seg_fd(j, s, err, errlen);
        if (fd < 0) return TB_ERR_IO;
        uint64_t left = s->size - r->off;
        size_t hn = left < HEAD_MAX ? (size_t)left : HEAD_MAX;
        if (hn < FRAME + BODY_MIN) {
            tb_seterr(err, errlen, "%s: offset %" PRIu64 ": record %" PRIu64 " runs past the end of the segment",
                   seg_path(j, s->first_seq, path, sizeof path), r->off, r->next_seq);
            return TB_ERR_PROTO;
        }
        if (rbuf_reserve(j, HEAD_MAX) < 0) {
            tb_seterr(err, errlen, "%s: out of memory", j->dir);
            return TB_ERR_NOMEM;
        }
        if (pread_full(fd, j->rbuf, hn, r->off) < 0) {
            int e = errno;
            tb_seterr(err, errlen, "%s: offset %" PRIu64 ": %s",
                   seg_path(j, s->first_seq, path, sizeof path), r->off, ioerr(e));
            return TB_ERR_IO;
        }
        j->read_bytes += hn;
        uint32_t len = get32(j->rbuf), crc = get32(j->rbuf + 4);
        if (len < BODY_MIN || len > BODY_MAX || FRAME + (uint64_t)len > left) {
            tb_seterr(err, errlen, "%s: offset %" PRIu64 ": bad record length %" PRIu32 " (record %" PRIu64 ")",
                   seg_path(j, s->first_seq, path, sizeof path), r->off, len, r->next_seq);
            return TB_ERR_PROTO;
        }
        body_t p;
        const char *why = parse_head(j->rbuf + FRAME, hn - FRAME, len, &p);
        if (!why && p.seq != r->next_seq) why = "unexpected hub_seq";
        if (why) {
            tb_seterr(err, errlen, "%s: offset %" PRIu64 ": malformed record %" PRIu64 " (%s)",
                   seg_path(j, s->first_seq, path, sizeof path), r->off, r->next_seq, why);
            return TB_ERR_PROTO;
        }
        memcpy(j->rdest, p.dest, p.dlen);
        j->rdest[p.dlen] = '\0';
        if (want && !want(arg, j->rdest)) {
            r->next_seq++;
            r->off += FRAME + len;
            continue;
        }
        size_t total = FRAME + (size_t)len;
        if (total > hn) {
            if (rbuf_reserve(j, total) < 0) {
                tb_seterr(err, errlen, "%s: out of memory for a record of %zu bytes", j->dir, total);
                return TB_ERR_NOMEM;
            }
            if (pread_full(fd, j->rbuf + hn, total - hn, r->off + hn) < 0) {
                int e = errno;
                tb_seterr(err, errlen, "%s: offset %" PRIu64 ": %s",
                       seg_path(j, s->first_seq, path, sizeof path), r->off + hn, ioerr(e));
                return TB_ERR_IO;
            }
            j->read_bytes += total - hn;
        }
        const uint8_t *body = j->rbuf + FRAME;
        if (crc32c(body, len) != crc) {
            tb_seterr(err, errlen, "%s: offset %" PRIu64 ": CRC mismatch (record %" PRIu64 "): journal damaged",
                   seg_path(j, s->first_seq, path, sizeof path), r->off, r->next_seq);
            return TB_ERR_PROTO;
        }
        parse_head(body, len < HEAD_BODY_MAX ? len : HEAD_BODY_MAX, len, &p);  /* rbuf may have moved */
        memcpy(j->rsender, p.sender, p.slen);
        j->rsender[p.slen] = '\0';
        rec->hub_seq = p.seq;
        rec->accepted_ms = p.ms;
        rec->sender = j->rsender;
        rec->sender_seq = p.sender_seq;
        rec->dest = j->rdest;
        rec->batch = body + p.batch_off;
        rec->batch_len = p.blen;
        r->next_seq++;
        r->off += total;
        *got = 1;
        return TB_OK;
    }
}

uint64_t journal_reader_pos(const journal_reader_t *r)
{
    return r ? r->next_seq - 1 : 0;
}

void journal_reader_destroy(journal_reader_t **r)
{
    if (!r || !*r) return;
    (*r)->j->nreaders--;
    free(*r);
    *r = NULL;
}

/* ---- retention ---- */

/* Reads the prev_hash of the first record of s (the hash of the record
 * before s). Returns TB_OK, TB_ERR_IO or TB_ERR_PROTO. */
static tb_err_t first_prev_hash(journal_t *j, seg_t *s, uint8_t out[HASH_LEN], char *err, size_t errlen)
{
    char path[PATH_MAX];
    uint8_t h[FRAME + 48];
    seg_path(j, s->first_seq, path, sizeof path);
    int fd = seg_fd(j, s, err, errlen);
    if (fd < 0) return TB_ERR_IO;
    if (pread_full(fd, h, sizeof h, SEG_HDR) < 0) {
        tb_seterr(err, errlen, "%s: offset %u: %s", path, SEG_HDR, ioerr(errno));
        return TB_ERR_IO;
    }
    if (get64(h + FRAME) != s->first_seq) {
        tb_seterr(err, errlen, "%s: offset %u: expected record %" PRIu64 ", found %" PRIu64 ": journal damaged",
               path, SEG_HDR, s->first_seq, get64(h + FRAME));
        return TB_ERR_PROTO;
    }
    memcpy(out, h + FRAME + 16, HASH_LEN);
    return TB_OK;
}

tb_err_t journal_gc(journal_t *self, uint64_t min_acked, int64_t retention_ms, size_t *removed,
                    char *err, size_t errlen)
{
    char path[PATH_MAX], q[PATH_MAX + 8];
    uint8_t hash[HASH_LEN];
    tb_err_t rc = TB_OK;
    size_t k = 0, done = 0;
    if (removed) *removed = 0;
    if (!self) return TB_ERR_INVALID;
    if (self->failed) {
        tb_seterr(err, errlen, "%s", self->failmsg);
        return TB_ERR_IO;
    }
    int64_t now = now_ms();
    while (k + 1 < self->nsegs) {
        const seg_t *s = &self->segs[k];
        if (s->last_seq < s->first_seq || s->last_seq > min_acked || s->last_seq > self->durable_seq ||
            s->dirty || now - s->last_ms < retention_ms)
            break;
        k++;
    }
    if (k == 0) return TB_OK;
    uint64_t anchor_seq = self->segs[k - 1].last_seq;
    seg_t *next = &self->segs[k];
    if (next->last_seq >= next->first_seq) rc = first_prev_hash(self, next, hash, err, errlen);
    else memcpy(hash, self->last_hash, HASH_LEN);  /* the active segment is still empty */
    if (rc != TB_OK) return rc;
    if ((rc = anchor_write(self, anchor_seq, hash, err, errlen)) != TB_OK) return rc;
    for (; done < k; done++) {
        seg_t *s = &self->segs[done];
        seg_path(self, s->first_seq, path, sizeof path);
        seg_close(self, s);
        if (unlink(path) < 0 && errno != ENOENT) {
            /* The anchor is written: the next open finishes the job. */
            tb_seterr(err, errlen, "%s: cannot remove segment: %s", path, strerror(errno));
            rc = TB_ERR_IO;
            break;
        }
        self->total_bytes -= s->size;
        free(s->idx);
    }
    if (done > 0) {
        memmove(self->segs, self->segs + done, (self->nsegs - done) * sizeof *self->segs);
        self->nsegs -= done;
        if (fsync(self->dirfd) < 0 && rc == TB_OK) {
            tb_seterr(err, errlen, "%s: fsync of the directory failed: %s", self->dir, strerror(errno));
            rc = TB_ERR_IO;
        }
    }
    tb_log(TB_LOG_DEBUG, "journal", "gc", "dir=%s removed=%zu anchor_seq=%" PRIu64 " first_seq=%" PRIu64,
           tb_log_quote(self->dir, q, sizeof q), done, anchor_seq, self->segs[0].first_seq);
    if (removed) *removed = done;
    return rc;
}
