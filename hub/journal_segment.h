/* journal_segment.h -- journal files byte by byte: segments, records, hashes, anchor; one segment's recovery scan.
 *
 * hub/journal.c keeps the journal as a whole (the list of segments, fds,
 * appends, sync, readers, gc) and calls this module for every byte it
 * writes or checks; journal.h describes the format, journal_segment.c has
 * the byte offsets. Nothing else in the hub includes this header.
 *
 * Every constant, struct and function here is part of the frozen on-disk
 * format or of its recovery: changing what a function writes or accepts
 * needs a new segment version (see journal.h).
 */
#ifndef TB_JOURNAL_SEGMENT_H
#define TB_JOURNAL_SEGMENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <tongban/tongban.h>

#include "journal.h"

#define JSEG_VERSION 2u                /* written; JSEG_VERSION_OLD is still read */
#define JSEG_VERSION_OLD 1u
#define JSEG_HDR 24u                   /* segment header */
#define JSEG_SUFFIX ".tbj"
#define JSEG_DIGITS 20                 /* digits of the first hub_seq in a segment's name */
#define JSEG_FRAME 8u                  /* u32 body length + u32 CRC32C */
#define JSEG_BODY_FIXED 64u            /* body bytes besides sender, dest and batch */
#define JSEG_BODY_MIN (JSEG_BODY_FIXED + 2u)  /* sender and dest are at least 1 byte */
#define JSEG_BODY_MAX ((uint64_t)JSEG_BODY_FIXED + 2u * JOURNAL_MAX_NAME + JOURNAL_MAX_BATCH)
#define JSEG_HEAD_BODY_MAX (JSEG_BODY_FIXED + 2u * JOURNAL_MAX_NAME)  /* body bytes before the batch */
#define JSEG_HEAD_MAX (JSEG_FRAME + JSEG_HEAD_BODY_MAX)                 /* 582 */
#define JSEG_HASH_LEN 32u

/* SHA-256 state reused for every record hash (OpenSSL's fetched digest and
 * one context). Opaque. */
typedef struct jseg_sha jseg_sha_t;

/* One entry of a segment's sparse index. */
typedef struct {
    uint64_t seq, off;
} jseg_idx_t;

/* One segment in memory. The journal owns fd, dirty and last_use (its fd
 * cache); the scan and jseg_index_add fill the rest. */
typedef struct {
    uint64_t first_seq;
    uint64_t last_seq;      /* first_seq - 1 while empty */
    uint64_t size;          /* valid bytes: header + records */
    int64_t last_ms;        /* accepted_ms of the last record */
    uint32_t version;       /* JSEG_VERSION or JSEG_VERSION_OLD: which record hash */
    int fd;                 /* -1 when closed (sealed segments are opened on demand) */
    int dirty;              /* written since the last fdatasync */
    uint64_t last_use;
    jseg_idx_t *idx;        /* sparse index: hub_seq -> offset */
    size_t nidx, capidx;
} jseg_t;

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
} jseg_body_t;

/* Sequential reader of one file for the recovery scan. */
typedef struct {
    int fd;
    uint64_t fsize;
    uint8_t *buf;           /* freed by the scan's owner */
    size_t cap;
    uint64_t base;
    size_t len;
} jseg_sbuf_t;

/* State of the recovery scan, carried from one segment to the next. The
 * owner zeroes it, sets sha, opts and sb.fd = -1, reads the anchor into it
 * (jseg_anchor_read), sets nleft / have_prev / prev, calls jseg_scan for
 * every segment in order and frees sb.buf. */
typedef struct {
    jseg_sha_t *sha;
    const journal_opts_t *opts;
    journal_report_t rep;   /* records, first_seq, truncated_bytes */
    int have_anchor;
    uint64_t anchor_seq;
    uint8_t anchor_hash[JSEG_HASH_LEN];
    size_t nleft;           /* leading segments left over from an interrupted gc */
    uint64_t expect;        /* next hub_seq */
    uint8_t prev[JSEG_HASH_LEN]; /* hash of the previous record, if have_prev */
    int have_prev;
    int have_last;          /* location of the last record (to hash it if !verify_chain) */
    uint64_t last_first, last_off;
    uint32_t last_len, last_version;
    jseg_sbuf_t sb;
    char rsender[JOURNAL_MAX_NAME + 1], rdest[JOURNAL_MAX_NAME + 1];  /* of the record given to on_record */
} jseg_scan_t;

/* ---- bytes ---- */

/* Returns the little-endian u32 at p. */
uint32_t jseg_get32(const uint8_t *p);
/* Returns the little-endian u64 at p. */
uint64_t jseg_get64(const uint8_t *p);
/* Returns the CRC32C (Castagnoli) of p[0..n). */
uint32_t jseg_crc32c(const uint8_t *p, size_t n);

/* ---- record hash ---- */

/* Returns a new SHA-256 state, or NULL if OpenSSL has no SHA-256 or is out
 * of memory. */
jseg_sha_t *jseg_sha_new(void);
/* Frees *self and sets it to NULL (NULL-safe). */
void jseg_sha_destroy(jseg_sha_t **self);

/* Finds the SignedBatch body of batch[0, len) by the frozen rule of
 * journal.h. Returns 1 and the body's offset and length, or 0 if the batch
 * holds none. */
int jseg_find_body(const uint8_t *batch, size_t len, size_t *off, size_t *blen);

/* Writes the hash of a record into out: head is its body up to the batch,
 * version that of its segment. body_sha256 (may be NULL) is the caller's
 * SHA-256 of the body tb_signed_batch_view finds in batch; it is used only
 * if that is the body jseg_find_body finds, else the digest is computed
 * here. Returns 0, or -1 if OpenSSL failed. */
int jseg_record_hash(jseg_sha_t *sha, uint32_t version, const uint8_t *head, size_t head_len,
                     const uint8_t *batch, size_t len, const uint8_t *body_sha256, uint8_t out[JSEG_HASH_LEN]);

/* ---- records and headers ---- */

/* Parses the head of a body of length len from its first avail bytes
 * (avail >= min(len, JSEG_HEAD_BODY_MAX)). Returns NULL and fills out, or a
 * static description of what is malformed. */
const char *jseg_parse_head(const uint8_t *b, size_t avail, uint32_t len, jseg_body_t *out);

/* Writes the frame and the body head of rec (whose sender and dest the
 * caller has checked: 1..JOURNAL_MAX_NAME bytes, batch_len at most
 * JOURNAL_MAX_BATCH) with prev_hash prev into out; the frame's CRC covers
 * rec->batch too, which follows the head on disk. Returns the bytes
 * written, JSEG_FRAME + the body head. */
size_t jseg_record_head(uint8_t out[JSEG_HEAD_MAX], const jrec_t *rec, const uint8_t prev[JSEG_HASH_LEN]);

/* Writes the header of a segment of version JSEG_VERSION starting at hub_seq
 * first into hdr. Returns nothing. */
void jseg_header_encode(uint8_t hdr[JSEG_HDR], uint64_t first);

/* Writes the path of the segment of dir starting at first into buf.
 * Returns buf. */
char *jseg_path(const char *dir, uint64_t first, char *buf, size_t len);

/* Records (seq, off) in s's sparse index when due (every 256th record or
 * 1 MiB). Returns 0, or -1 if out of memory. */
int jseg_index_add(jseg_t *s, uint64_t seq, uint64_t off);

/* ---- file I/O ---- */

/* Reads exactly n bytes at off. Returns 0, or -1 with errno set (0 at end of file). */
int jseg_pread_full(int fd, void *buf, size_t n, uint64_t off);
/* Writes all iov (cnt entries, modified) at off, continuing after short
 * writes. Returns 0, or -1 with errno set. */
int jseg_pwritev_all(int fd, struct iovec *iov, int cnt, uint64_t off);
/* Returns the text of errno e, or "unexpected end of file" when e is 0. */
const char *jseg_ioerr(int e);

/* ---- anchor ---- */

/* Removes a leftover <dir>/anchor.tmp and reads <dir>/anchor into sc
 * (have_anchor, anchor_seq, anchor_hash) if it exists. Returns TB_OK,
 * TB_ERR_IO or TB_ERR_PROTO. */
tb_err_t jseg_anchor_read(jseg_scan_t *sc, const char *dir, char *err, size_t errlen);

/* Atomically replaces <dir>/anchor with (seq, hash), fsyncing the file and
 * dirfd (dir opened). Returns TB_OK or TB_ERR_IO. */
tb_err_t jseg_anchor_write(const char *dir, int dirfd, uint64_t seq, const uint8_t hash[JSEG_HASH_LEN],
                           char *err, size_t errlen);

/* ---- recovery ---- */

/* Scans segment s of dir, the i-th of the journal (is_last: the last one):
 * checks its header and every record (CRC, structure, hub_seq continuity,
 * hash chain per sc->opts->verify_chain), cuts a torn tail of the last
 * segment, fills s (version, last_seq, size, last_ms, index), advances sc
 * and calls sc->opts->on_record for every record not before the anchor;
 * fdatasyncs the file. Sets *dropped if the (last) segment was removed for
 * a torn header. Returns TB_OK, TB_ERR_PROTO (damage, err names file +
 * offset), TB_ERR_IO, TB_ERR_NOMEM, TB_ERR_CRYPTO. */
tb_err_t jseg_scan(jseg_scan_t *sc, const char *dir, jseg_t *s, size_t i, int is_last, int *dropped,
                   char *err, size_t errlen);

/* Hashes the record at (first, off, len) of dir, in a segment of that
 * version, into out. Returns TB_OK, TB_ERR_IO, TB_ERR_NOMEM, TB_ERR_PROTO
 * or TB_ERR_CRYPTO. */
tb_err_t jseg_hash_record_at(jseg_sha_t *sha, const char *dir, uint64_t first, uint64_t off, uint32_t len,
                             uint32_t version, uint8_t out[JSEG_HASH_LEN], char *err, size_t errlen);

#endif
