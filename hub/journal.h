/* journal.h -- the hub's durable, segmented, hash-chained batch journal.
 *
 * Every batch the hub accepts is appended here verbatim and acknowledged to
 * its sender only after journal_sync(); delivery readers then walk the
 * journal per destination, and the chain of SHA-256 hashes makes it the
 * tamper-evident audit trail. Not thread-safe: one hub loop owns it.
 *
 * On disk (all integers little-endian):
 *
 *   <dir>                                   flock()ed while open (one process at a time)
 *   <dir>/<first hub_seq, 20 digits>.tbj   segment files, e.g. 00000000000000000001.tbj
 *   <dir>/anchor                            written by journal_gc (absent before)
 *
 *   segment header (24 bytes): "TBJ1", u32 version (2; 1 is still read), u64 first hub_seq,
 *                              u32 reserved (0), u32 CRC32C of bytes 0..19
 *   record:  u32 body length, u32 CRC32C(body), body
 *   body:    u64 hub_seq, i64 accepted_ms, u8[32] prev_hash,
 *            u16 sender_len, sender, u64 sender_seq,
 *            u16 dest_len, dest, u32 batch_len, batch
 *   anchor (52 bytes): "TBA1", u32 version (1), u64 hub_seq of the last
 *                      removed record, u8[32] its hash, u32 CRC32C of bytes 0..47
 *
 * prev_hash is the hash of the record before it (32 zero bytes for hub_seq
 * 1, the anchor's hash for the first record kept after journal_gc; the
 * anchor holds the hash of the last removed record as its own segment's
 * version computes it, so the anchor format did not change). A record's
 * hash depends on the version of its segment; head is the body up to the
 * batch (hub_seq .. batch_len: 64 + sender_len + dest_len bytes):
 *
 *   version 1:  SHA-256(body), i.e. SHA-256(head || batch)
 *   version 2:  SHA-256(head || 0x01 || u32 body_off || u32 body_len ||
 *                       batch[0, body_off) || SHA-256(body) ||
 *                       batch[body_off + body_len, batch_len))
 *               if batch holds a SignedBatch body (below), else
 *               SHA-256(head || 0x00 || batch)
 *
 * The body of a SignedBatch: batch is read as protobuf fields from its
 * first byte to its last, each a tag varint (field number = tag >> 3, any;
 * wire type = tag & 7) and a value: wire type 0 a varint, 1 eight
 * bytes, 2 a length varint and that many bytes, 5 four bytes (a varint is
 * at most 10 bytes and its value fits in 64 bits). If every field reads so
 * and the last one ends exactly at the end of batch, the body is the value
 * of the last field with number 1 and wire type 2: body_len bytes (0 is
 * allowed) at offset body_off of batch. Otherwise, or without such a
 * field, batch holds no body. The rule is frozen here: it takes the same
 * body as tb_signed_batch_view (common/wire.c) wherever that one succeeds,
 * but does not follow changes to it; changing it needs a new segment
 * version.
 *
 * Why version 2: the hub's signature check (prehash) has SHA-256(body)
 * already, and journal_append can use it instead of hashing nearly all of
 * the batch again. Every byte of the record is still committed to: head
 * fixes batch_len, the form byte and body_off / body_len fix where each
 * piece of the input comes from, so two records with the same hash input
 * differ at most in bodies with the same SHA-256. (Replacing the body by
 * its digest without them is not enough: a second batch that holds the
 * first one's digest in an earlier field 1 and its own body in a later one
 * can give the same input; so can a batch with no body whose bytes are the
 * substituted form of another.)
 *
 * New segments are always version 2; a version 1 segment left by an older
 * release takes appends only while it is empty, otherwise the first append
 * rolls to a new segment. So a journal may hold version 1 segments followed
 * by version 2 ones, and the chain runs across them. Releases that only
 * know version 1 refuse version 2 segments ("unsupported segment version
 * 2"): after the upgrade there is no going back without the old files.
 *
 * CRC32C is the Castagnoli CRC (iSCSI, ext4). sender and dest are 1..255
 * bytes, batch at most 1 GiB.
 *
 * Recovery at journal_open: a torn tail (an incomplete or CRC-failing
 * record at the end of the last segment with no valid record after it) is
 * truncated away, and a last segment whose header never reached the disk
 * (shorter than the header, or nothing but zero bytes) is removed; any
 * other damage (bad CRC in the middle, gap in hub_seq, broken chain, bad
 * segment header) fails the open with TB_ERR_PROTO and an error naming the
 * file, the byte offset and the fault, and changes nothing on disk.
 */
#ifndef TB_JOURNAL_H
#define TB_JOURNAL_H

#include <stddef.h>
#include <stdint.h>
#include <tongban/tongban.h>

#define JOURNAL_MAX_NAME  255u                  /* sender / dest, bytes */
#define JOURNAL_MAX_BATCH (1024u * 1024u * 1024u)  /* 1 GiB */
#define JOURNAL_DEFAULT_SEGMENT_BYTES (64u * 1024u * 1024u)

typedef struct journal journal_t;
typedef struct journal_reader journal_reader_t;

typedef struct {
    uint64_t hub_seq;          /* 1, 2, 3, ... gapless over the life of the journal */
    int64_t accepted_ms;       /* wall clock (CLOCK_REALTIME) at append */
    const char *sender;        /* NUL-terminated, valid until the next read/append */
    uint64_t sender_seq;
    const char *dest;          /* node id or "topic:<name>" */
    const uint8_t *batch;      /* the signed batch bytes, verbatim */
    size_t batch_len;
} jrec_t;

typedef struct {
    uint64_t segment_bytes;    /* roll to a new segment past this size; 0 = default 64 MiB */
    int verify_chain;          /* 1 (default): recompute the hash chain of every record at open */
    void (*on_record)(void *arg, const jrec_t *rec);  /* called for each valid record at open (may be NULL) */
    void *arg;
} journal_opts_t;

typedef struct {
    uint64_t records, segments, bytes;
    uint64_t truncated_bytes;  /* torn tail cut away */
    uint64_t first_seq, last_seq;  /* first / last record present (0 if none; last_seq
                                      is the anchor's hub_seq if gc left no record) */
} journal_report_t;

/* Fills opts with the defaults (segment_bytes 64 MiB, verify_chain 1, no
 * callback). A zeroed journal_opts_t means verify_chain = 0. */
void journal_opts_init(journal_opts_t *opts);

/* Opens (creating dir and the first segment if needed) and recovers the
 * journal in dir; opts NULL means the defaults. Calls opts->on_record for
 * every record in hub_seq order. Returns TB_OK and *out; TB_ERR_PROTO if the
 * journal is damaged (err: file, offset, what), TB_ERR_IO on a system error
 * or if another process has it open, TB_ERR_NOMEM, TB_ERR_INVALID. report
 * (may be NULL) is filled on success. */
tb_err_t journal_open(const char *dir, const journal_opts_t *opts, journal_t **out,
                      journal_report_t *report, char *err, size_t errlen);

/* Syncs, closes and frees *self and sets it to NULL (NULL-safe). Readers
 * must be destroyed first. */
void journal_destroy(journal_t **self);

/* Appends one record (one write call) and returns its number in *hub_seq
 * (may be NULL). Not durable until journal_sync.
 *
 * body_sha256 may be NULL (the journal hashes what it needs itself) or the
 * SHA-256 of the body that tb_signed_batch_view (common/wire.h) locates in
 * these same bytes batch[0, len), which the caller computed anyway (the
 * hub's prehash signature check): the journal then does not hash the body
 * again. The caller guarantees the digest is right -- a wrong one is written
 * into the chain and the next journal_open reports the chain broken. It is
 * ignored when tb_signed_batch_view does not take the bytes or finds a
 * different body than the journal's own rule (see the format above), and
 * for a record going into a version 1 segment.
 *
 * Returns TB_OK; TB_ERR_INVALID for an empty or over-long sender/dest or a
 * batch over 1 GiB; TB_ERR_IO if the write failed (e.g. disk full: the
 * segment is cut back, nothing was appended and a later call may succeed)
 * or the journal has failed an fdatasync earlier (then only reopening
 * helps); TB_ERR_CRYPTO if SHA-256 failed. */
tb_err_t journal_append(journal_t *self, const char *sender, uint64_t sender_seq,
                        const char *dest, const uint8_t *batch, size_t len,
                        const uint8_t *body_sha256, uint64_t *hub_seq, char *err, size_t errlen);

/* fdatasync()s every segment written since the last sync (and the
 * directory after a segment was created); afterwards every appended record
 * is durable and visible to readers. Returns TB_OK or TB_ERR_IO (sticky:
 * after a failed fdatasync the journal refuses appends until reopened). */
tb_err_t journal_sync(journal_t *self, char *err, size_t errlen);

/* Returns the hub_seq of the last appended record (0 if none). */
uint64_t journal_last_seq(const journal_t *self);
/* Returns the hub_seq of the last synced record (0 if none). */
uint64_t journal_durable_seq(const journal_t *self);
/* Returns the total size in bytes of all segment files. */
uint64_t journal_bytes(const journal_t *self);
/* Returns the number of segment files. */
size_t journal_segments(const journal_t *self);
/* Returns the number of bytes readers have read from disk so far (a
 * statistic; shows that filtered-out batches are not read). */
uint64_t journal_read_bytes(const journal_t *self);

/* Readers see only durable records (hub_seq <= journal_durable_seq).
 * Creates a reader whose next record has hub_seq > after_seq. Returns TB_OK;
 * TB_ERR_NOTFOUND if record after_seq + 1 was removed by journal_gc;
 * TB_ERR_INVALID if after_seq > journal_last_seq; TB_ERR_NOMEM; TB_ERR_IO. */
tb_err_t journal_reader_new(journal_t *self, uint64_t after_seq, journal_reader_t **out,
                            char *err, size_t errlen);

/* Reads the next durable record whose dest the filter wants (want NULL =
 * all). Records the filter rejects are skipped without reading their batch
 * bytes. Sets *got = 1 and fills rec, or *got = 0 at the end of durable
 * data. rec's pointers stay valid until the next journal_reader_next or
 * journal_append call on this journal (one shared read buffer). Returns
 * TB_OK; TB_ERR_PROTO if the record on disk is damaged (err: file, offset);
 * TB_ERR_NOTFOUND if the reader's next record was removed by journal_gc;
 * TB_ERR_IO; TB_ERR_NOMEM. On error the reader does not move. */
tb_err_t journal_reader_next(journal_reader_t *r, int (*want)(void *arg, const char *dest),
                             void *arg, jrec_t *rec, int *got, char *err, size_t errlen);

/* Returns the hub_seq of the last record examined (read or skipped), or
 * after_seq if none yet. */
uint64_t journal_reader_pos(const journal_reader_t *r);

/* Frees *r and sets it to NULL (NULL-safe). */
void journal_reader_destroy(journal_reader_t **r);

/* Removes whole segments whose every record has hub_seq <= min_acked, is
 * durable, and that were closed more than retention_ms ago (wall clock of
 * their last record); never the active segment, and only a prefix of the
 * journal. Before removing, writes the hash of the last removed record
 * atomically to <dir>/anchor, which the first remaining record's prev_hash
 * must match. Returns TB_OK and the number of segments removed in *removed
 * (may be NULL); TB_ERR_IO (err names the file). */
tb_err_t journal_gc(journal_t *self, uint64_t min_acked, int64_t retention_ms,
                    size_t *removed, char *err, size_t errlen);

#endif
