/* fuzz_journal.c -- libFuzzer target: journal recovery (journal_open) on
 * arbitrary segment bytes.
 *
 * The first input byte chooses how the rest becomes files in a fresh temp
 * directory (see journal.h for the format):
 *   bits 0-1  0: the bytes are the segment 00000000000000000001.tbj as they are
 *             1: a valid segment header, then the bytes
 *             2: a valid header, then records cut from the bytes (u16 length,
 *                body) with correct CRCs: the fuzzer reaches the body checks;
 *                a length past the end leaves a torn record
 *             3: a valid header, then well-formed records (hub_seq, hash chain,
 *                CRC all right) whose sender, dest and batch come from the
 *                bytes (u8 sender_len, u8 dest_len, u16 batch_len, data):
 *                recovery, on_record and the readers on real data; the
 *                segment is version 2 (a batch that holds a SignedBatch body
 *                is hashed through its digest)
 *   bit 2     open with verify_chain = 0
 *   bit 3     mode 3: records after the second in a second segment, and
 *             the first segment is version 1 (an older release's)
 *   bit 4     an anchor file: mode 3 starts after it (hub_seq and hash from
 *             the bytes), or with bit 3 names the first segment's last record
 *             (a gc interrupted before unlinking); other modes take its hub_seq
 *             and hash from the input (CRC fixed)
 *   bit 5     mode 3: the rest of the input appended raw after the records
 *   bit 6     segment_bytes 4 KiB, so that the append below rolls a segment
 *   bit 7     journal_gc of everything before the reopen
 * journal_open must return TB_OK or an error, never crash or leak. When it
 * opens, every record is read back through a reader, one record is appended
 * and synced (then gc'ed with bit 7), and a second journal_open must
 * succeed and find it.
 *
 * Seeds: fuzz/corpus/fuzz_journal.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <isa-l/crc.h>
#include <openssl/evp.h>

#include "fuzz_util.h"
#include "journal.h"
#include "../tests/unit/journal_ref.h"
#include "log.h"

#define SEG_HDR 24u
#define FRAME 8u
#define HASH_LEN 32u
#define ANCHOR_LEN 52u

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* TB_FUZZ_VERBOSE=1 (set once at start-up): print what journal_open said,
 * and the journal's log lines, to check what a seed reaches. */
static int g_verbose;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    g_verbose = getenv("TB_FUZZ_VERBOSE") != NULL;
    tb_log_setup(TB_LOG_DEBUG, TB_LOG_LOGFMT, g_verbose ? stderr : fuzz_devnull());
    return 0;
}

/* ---- building files ---- */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} buf_t;

/* Appends n bytes to b. Aborts when out of memory (inputs are small). */
static void put(buf_t *b, const void *data, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        b->p = realloc(b->p, cap);
        FUZZ_ASSERT(b->p != NULL);
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void put_le(buf_t *b, uint64_t v, int bytes)
{
    uint8_t t[8];
    for (int i = 0; i < bytes; i++) t[i] = (uint8_t)(v >> (8 * i));
    put(b, t, (size_t)bytes);
}

static uint32_t crc32c(const uint8_t *p, size_t n)
{
    return crc32_iscsi((unsigned char *)(uintptr_t)p, (int)n, 0xFFFFFFFFu) ^ 0xFFFFFFFFu;
}

/* A segment header of that version for first. */
static void put_header(buf_t *b, uint64_t first, uint32_t version)
{
    size_t at = b->len;
    put(b, "TBJ1", 4);
    put_le(b, version, 4);
    put_le(b, first, 8);
    put_le(b, 0, 4);
    put_le(b, crc32c(b->p + at, 20), 4);
}

/* The hash of a record: body = head (head_len bytes) and batch, in a
 * segment of that version (journal.h; the reference in journal_ref.h). */
static void record_hash(uint32_t version, const uint8_t *body, size_t head_len, size_t len, uint8_t out[HASH_LEN])
{
    FUZZ_ASSERT(jref_hash(version, body, head_len, len, out) == 0);
}

/* Appends a frame (length, CRC) and body. */
static void put_record(buf_t *b, const uint8_t *body, size_t len)
{
    put_le(b, len, 4);
    put_le(b, crc32c(body, len), 4);
    put(b, body, len);
}

/* Consumes up to n bytes of the input cursor; returns how many were taken. */
static size_t take(const uint8_t **p, const uint8_t *end, size_t n, const uint8_t **out)
{
    size_t have = (size_t)(end - *p);
    if (n > have) n = have;
    *out = *p;
    *p += n;
    return n;
}

/* Writes <dir>/<first, 20 digits>.tbj. */
static void write_segment(const char *dir, uint64_t first, const buf_t *b)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%020llu.tbj", dir, (unsigned long long)first);
    FUZZ_ASSERT(fuzz_write_file(path, b->p ? b->p : (const uint8_t *)"", b->len) == 0);
}

/* Writes <dir>/anchor naming (seq, hash). */
static void write_anchor(const char *dir, uint64_t seq, const uint8_t hash[HASH_LEN])
{
    char path[700];
    buf_t a = { 0 };
    put(&a, "TBA1", 4);
    put_le(&a, 1, 4);
    put_le(&a, seq, 8);
    put(&a, hash, HASH_LEN);
    put_le(&a, crc32c(a.p, 48), 4);
    snprintf(path, sizeof path, "%s/anchor", dir);
    FUZZ_ASSERT(fuzz_write_file(path, a.p, a.len) == 0);
    free(a.p);
}

/* Mode 3: well-formed records from the input. */
static void build_records(const char *dir, uint8_t ctl, const uint8_t *p, const uint8_t *end)
{
    uint64_t seq = 1;
    uint8_t prev[HASH_LEN] = { 0 }, cut_hash[HASH_LEN];
    int split = (ctl & 0x08) != 0, anchor = (ctl & 0x10) != 0;
    /* anchor + split: a gc interrupted after writing the anchor, which names
     * the first segment's last record (that segment is still there) */
    int leftover = anchor && split;
    if (anchor && !leftover) {
        const uint8_t *a;
        size_t n = take(&p, end, 2 + HASH_LEN, &a);
        seq = 2 + (n >= 2 ? (uint64_t)(a[0] | a[1] << 8) : 0);
        if (n > 2) memcpy(prev, a + 2, n - 2);
        write_anchor(dir, seq - 1, prev);
    }
    buf_t recs[2] = { { 0 }, { 0 } };
    uint64_t first[2] = { seq, 0 };
    size_t nrec = 0;
    buf_t body = { 0 };
    while (end - p >= 4 && nrec < 64) {
        size_t slen = p[0], dlen = p[1], blen = (size_t)(p[2] | p[3] << 8);
        p += 4;
        const uint8_t *sp, *dp, *bp;
        slen = take(&p, end, slen, &sp);
        dlen = take(&p, end, dlen, &dp);
        blen = take(&p, end, blen, &bp);
        int k = split && nrec >= 2;   /* two records, then the rest in a second segment */
        if (k == 1 && first[1] == 0) {
            first[1] = seq;
            memcpy(cut_hash, prev, HASH_LEN);
        }
        body.len = 0;
        put_le(&body, seq, 8);
        put_le(&body, 1700000000000ull + seq, 8);
        put(&body, prev, HASH_LEN);
        put_le(&body, slen, 2);
        put(&body, sp, slen);
        put_le(&body, 7, 8);
        put_le(&body, dlen, 2);
        put(&body, dp, dlen);
        put_le(&body, blen, 4);
        put(&body, bp, blen);
        record_hash(split && k == 0 ? 1 : 2, body.p, body.len - blen, body.len, prev);
        put_record(&recs[k], body.p, body.len);
        seq++;
        nrec++;
    }
    free(body.p);
    if (leftover && first[1] != 0) write_anchor(dir, first[1] - 1, cut_hash);
    for (int k = 0; k < 2; k++) {
        if (k == 1 && first[1] == 0) break;
        buf_t seg = { 0 };
        put_header(&seg, first[k], split && k == 0 ? 1 : 2);
        put(&seg, recs[k].p, recs[k].len);
        if ((ctl & 0x20) && (k == 1 || first[1] == 0)) put(&seg, p, (size_t)(end - p));
        write_segment(dir, first[k], &seg);
        free(seg.p);
    }
    free(recs[0].p);
    free(recs[1].p);
}

/* Modes 0-2: one segment 1 from the input. */
static void build_raw(const char *dir, uint8_t ctl, const uint8_t *p, const uint8_t *end)
{
    int mode = ctl & 3;
    if (ctl & 0x10) {
        const uint8_t *a;
        uint8_t hash[HASH_LEN] = { 0 };
        size_t n = take(&p, end, 8 + HASH_LEN, &a);
        uint64_t aseq = 0;
        for (size_t i = 0; i < 8 && i < n; i++) aseq |= (uint64_t)a[i] << (8 * i);
        if (n > 8) memcpy(hash, a + 8, n - 8);
        write_anchor(dir, aseq, hash);
    }
    buf_t seg = { 0 };
    if (mode >= 1) put_header(&seg, 1, 2);
    if (mode == 2) {
        while (end - p >= 2) {
            size_t len = (size_t)(p[0] | p[1] << 8);
            p += 2;
            if (len > (size_t)(end - p)) {        /* torn: a frame for more than follows */
                put_le(&seg, len, 4);
                put_le(&seg, 0, 4);
                put(&seg, p, (size_t)(end - p));
                p = end;
                break;
            }
            put_record(&seg, p, len);
            p += len;
        }
    }
    put(&seg, p, (size_t)(end - p));
    write_segment(dir, 1, &seg);
    free(seg.p);
}

/* ---- the journal on what was built ---- */

typedef struct {
    uint64_t n, last;
} seen_t;

/* on_record: hub_seq strictly increasing, strings non-empty. */
static void on_record(void *arg, const jrec_t *rec)
{
    seen_t *s = arg;
    FUZZ_ASSERT(rec->sender && rec->sender[0] && rec->dest && rec->dest[0]);
    FUZZ_ASSERT(s->n == 0 || rec->hub_seq == s->last + 1);
    FUZZ_ASSERT(rec->batch_len == 0 || rec->batch != NULL);
    s->n++;
    s->last = rec->hub_seq;
}

/* Reads every durable record after `after`; returns how many, or -1 on an error. */
static long read_all(journal_t *j, uint64_t after)
{
    char err[512];
    journal_reader_t *r = NULL;
    long n = 0;
    tb_err_t rc = journal_reader_new(j, after, &r, err, sizeof err);
    if (rc != TB_OK) return -1;
    uint64_t want = after + 1;
    for (;;) {
        jrec_t rec;
        int got = 0;
        rc = journal_reader_next(r, NULL, NULL, &rec, &got, err, sizeof err);
        if (rc != TB_OK) {
            n = -1;
            break;
        }
        if (!got) break;
        FUZZ_ASSERT(rec.hub_seq == want);
        want++;
        n++;
    }
    journal_reader_destroy(&r);
    FUZZ_ASSERT(r == NULL);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char dir[512], err[1024];
    if (size == 0) return 0;
    uint8_t ctl = data[0];
    if (fuzz_mkdtemp("journal", dir, sizeof dir) != 0) {
        perror("fuzz_journal: mkdtemp");
        abort();
    }
    if ((ctl & 3) == 3) build_records(dir, ctl, data + 1, data + size);
    else build_raw(dir, ctl, data + 1, data + size);

    journal_opts_t opts;
    seen_t seen = { 0, 0 };
    journal_opts_init(&opts);
    if (ctl & 0x04) opts.verify_chain = 0;
    if (ctl & 0x40) opts.segment_bytes = 4096;
    opts.on_record = on_record;
    opts.arg = &seen;
    journal_t *j = NULL;
    journal_report_t rep;
    err[0] = '\0';
    tb_err_t rc = journal_open(dir, &opts, &j, &rep, err, sizeof err);
    FUZZ_ASSERT((rc == TB_OK) == (j != NULL));
    if (g_verbose)
        fprintf(stderr, "fuzz_journal: ctl=0x%02x open: %s%s%s records=%llu\n", ctl, tb_strerror(rc),
                rc ? ": " : "", rc ? err : "", (unsigned long long)(rc ? 0 : rep.records));
    if (rc != TB_OK) {
        FUZZ_ASSERT(rc == TB_ERR_PROTO || rc == TB_ERR_IO || rc == TB_ERR_NOMEM || rc == TB_ERR_CRYPTO);
        FUZZ_ASSERT(err[0] != '\0');
        fuzz_rmtree(dir);
        return 0;
    }
    uint64_t last = journal_last_seq(j);
    FUZZ_ASSERT(rep.last_seq == last && journal_durable_seq(j) == last);
    FUZZ_ASSERT(seen.n == rep.records);
    FUZZ_ASSERT(rep.records == 0 || (rep.first_seq + rep.records - 1 == last && seen.last == last));
    if (rep.records > 0) {
        long n = read_all(j, rep.first_seq - 1);
        FUZZ_ASSERT(n >= 0 && (uint64_t)n == rep.records);
    }

    /* one more record, synced; a reopen must find it */
    static const uint8_t batch[] = "fuzz batch";
    uint64_t hub_seq = 0;
    rc = journal_append(j, "110000", 1, "topic:fuzz", batch, sizeof batch, NULL, &hub_seq, err, sizeof err);
    FUZZ_ASSERT(rc == TB_OK && hub_seq == last + 1);
    FUZZ_ASSERT(journal_sync(j, err, sizeof err) == TB_OK);
    FUZZ_ASSERT(read_all(j, last) == 1);
    FUZZ_ASSERT(journal_segments(j) >= 1 && journal_bytes(j) >= SEG_HDR);
    if (ctl & 0x80) {
        size_t removed = 0;
        rc = journal_gc(j, hub_seq, 0, &removed, err, sizeof err);
        if (rc != TB_OK) fprintf(stderr, "fuzz_journal: gc failed: %s\n", err);
        FUZZ_ASSERT(rc == TB_OK);
        FUZZ_ASSERT(journal_segments(j) >= 1 && read_all(j, last) == 1);
    }
    journal_destroy(&j);
    FUZZ_ASSERT(j == NULL);

    opts.on_record = NULL;
    rc = journal_open(dir, &opts, &j, &rep, err, sizeof err);
    if (rc != TB_OK) fprintf(stderr, "fuzz_journal: reopen failed: %s\n", err);
    FUZZ_ASSERT(rc == TB_OK);
    FUZZ_ASSERT(journal_last_seq(j) == hub_seq);
    journal_destroy(&j);
    fuzz_rmtree(dir);
    return 0;
}
