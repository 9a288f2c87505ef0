/* journal.c -- the hub's segmented, CRC-framed, hash-chained append-only journal.
 *
 * The format of the files (segments, records, record hash, anchor) is in
 * journal.h; journal_segment.c has the byte offsets, encodes and decodes
 * them and scans one segment at recovery. This file is the journal as a
 * whole: the directory and its lock, the list of segments and their fds,
 * appends, sync, readers and gc.
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
#include "journal_segment.h"
#include "wire.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define RBUF_KEEP (8u << 20)        /* shared read buffer shrinks back to this */
#define MAX_OPEN_FDS 64u            /* read fds kept open for sealed segments */

struct journal {
    char *dir;
    int dirfd;              /* flock()ed */
    uint64_t segment_bytes;
    jseg_t *segs;           /* ascending; the last one is the active segment */
    size_t nsegs, capsegs;
    uint64_t last_seq, durable_seq;
    uint8_t last_hash[JSEG_HASH_LEN];
    uint64_t total_bytes;
    int dir_dirty;
    int failed;             /* sticky after a failed fdatasync / ftruncate */
    char failmsg[PATH_MAX + 256];
    size_t open_fds;
    uint64_t tick;
    uint8_t whead[JSEG_HEAD_MAX];  /* frame + body head of the record being appended */
    uint8_t *rbuf;          /* shared read buffer of the readers */
    size_t rbuf_cap;
    char rsender[JOURNAL_MAX_NAME + 1], rdest[JOURNAL_MAX_NAME + 1];
    uint64_t read_bytes;
    size_t nreaders;
    jseg_sha_t *sha;
};

struct journal_reader {
    journal_t *j;
    uint64_t next_seq;      /* hub_seq of the next record to examine */
    uint64_t seg_first;     /* segment (by first hub_seq) that off refers to */
    uint64_t off;
};

static const uint8_t zero_hash[JSEG_HASH_LEN];

/* ---- small helpers ---- */

/* Writes the path of the segment starting at first into buf. Returns buf. */
static char *seg_path(const journal_t *j, uint64_t first, char *buf, size_t len)
{
    return jseg_path(j->dir, first, buf, len);
}

/* ---- segments ---- */

/* Makes room for n segments. Returns 0, or -1 if out of memory. */
static int segs_reserve(journal_t *j, size_t n)
{
    if (n <= j->capsegs) return 0;
    size_t cap = j->capsegs ? j->capsegs * 2 : 16;
    while (cap < n) cap *= 2;
    jseg_t *ns = realloc(j->segs, cap * sizeof *ns);
    if (!ns) return -1;
    j->segs = ns;
    j->capsegs = cap;
    return 0;
}

/* Closes s's fd if open. Returns nothing. */
static void seg_close(journal_t *j, jseg_t *s)
{
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
        j->open_fds--;
    }
}

/* Closes the least recently used read fd of a clean sealed segment. Returns nothing. */
static void evict_one(journal_t *j)
{
    jseg_t *victim = NULL;
    for (size_t i = 0; i + 1 < j->nsegs; i++) {
        jseg_t *s = &j->segs[i];
        if (s->fd >= 0 && !s->dirty && (!victim || s->last_use < victim->last_use)) victim = s;
    }
    if (victim) seg_close(j, victim);
}

/* Returns an fd to read s (opening it on demand), or -1 with err set. */
static int seg_fd(journal_t *j, jseg_t *s, char *err, size_t errlen)
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
    uint8_t hdr[JSEG_HDR];
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
    jseg_header_encode(hdr, first);
    struct iovec iov = { hdr, JSEG_HDR };
    if (jseg_pwritev_all(fd, &iov, 1, 0) < 0) {
        int e = errno;
        close(fd);
        unlink(path);
        tb_seterr(err, errlen, "%s: cannot write segment header: %s", path, strerror(e));
        return TB_ERR_IO;
    }
    jseg_t *s = &j->segs[j->nsegs++];
    memset(s, 0, sizeof *s);
    s->first_seq = first;
    s->last_seq = first - 1;
    s->size = JSEG_HDR;
    s->version = JSEG_VERSION;
    s->fd = fd;
    s->dirty = 1;
    s->last_use = ++j->tick;
    j->open_fds++;
    j->total_bytes += JSEG_HDR;
    j->dir_dirty = 1;
    if (j->open_fds > MAX_OPEN_FDS) evict_one(j);
    return TB_OK;
}

/* Removes the active segment again (its first append failed). Returns nothing. */
static void seg_drop_last(journal_t *j)
{
    char path[PATH_MAX];
    jseg_t *s = &j->segs[j->nsegs - 1];
    seg_close(j, s);
    unlink(seg_path(j, s->first_seq, path, sizeof path));
    j->total_bytes -= s->size;
    free(s->idx);
    j->nsegs--;
    j->dir_dirty = 1;
}

/* Finds the offset of record seq in s (s->size if seq is past its end).
 * Returns TB_OK, TB_ERR_IO or TB_ERR_PROTO. */
static tb_err_t seg_locate(journal_t *j, jseg_t *s, uint64_t seq, uint64_t *out, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (seq > s->last_seq) {
        *out = s->size;
        return TB_OK;
    }
    uint64_t cur = s->first_seq, off = JSEG_HDR;
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
        if (jseg_pread_full(fd, fr, sizeof fr, off) < 0) {
            int e = errno;
            tb_seterr(err, errlen, "%s: offset %" PRIu64 ": %s", seg_path(j, s->first_seq, path, sizeof path),
                   off, jseg_ioerr(e));
            return TB_ERR_IO;
        }
        j->read_bytes += sizeof fr;
        uint32_t len = jseg_get32(fr);
        if (len < JSEG_BODY_MIN || off + JSEG_FRAME + len > s->size) {
            tb_seterr(err, errlen, "%s: offset %" PRIu64 ": bad record length %" PRIu32 " (record %" PRIu64 ")",
                   seg_path(j, s->first_seq, path, sizeof path), off, len, cur);
            return TB_ERR_PROTO;
        }
        off += JSEG_FRAME + len;
        cur++;
    }
    *out = off;
    return TB_OK;
}

/* Compares segments by first_seq, for qsort. Returns <0, 0 or >0. */
static int seg_cmp(const void *a, const void *b)
{
    uint64_t x = ((const jseg_t *)a)->first_seq, y = ((const jseg_t *)b)->first_seq;
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
        if (strlen(n) != JSEG_DIGITS + strlen(JSEG_SUFFIX) || strcmp(n + JSEG_DIGITS, JSEG_SUFFIX) != 0) continue;
        int digits = 1;
        for (int k = 0; k < JSEG_DIGITS; k++) digits &= n[k] >= '0' && n[k] <= '9';
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
        jseg_t *s = &j->segs[j->nsegs++];
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
    jseg_scan_t sc;
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
    if (strlen(dir) + JSEG_DIGITS + 16 >= PATH_MAX) {
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
    j->sha = jseg_sha_new();
    if (!j->sha) {
        tb_seterr(err, errlen, "%s: SHA-256 is not available from OpenSSL", dir);
        rc = TB_ERR_CRYPTO;
        goto fail;
    }
    if ((rc = lock_dir(j, err, errlen)) != TB_OK) goto fail;
    sc.sha = j->sha;
    sc.opts = opts;
    if ((rc = jseg_anchor_read(&sc, j->dir, err, errlen)) != TB_OK) goto fail;
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
        memcpy(sc.prev, sc.anchor_hash, JSEG_HASH_LEN);
    }

    for (size_t i = 0; i < j->nsegs; i++) {
        int dropped = 0;
        if ((rc = jseg_scan(&sc, j->dir, &j->segs[i], i, i + 1 == j->nsegs, &dropped, err, errlen)) != TB_OK)
            goto fail;
        if (dropped) {  /* only ever the last one */
            j->nsegs--;
            j->dir_dirty = 1;
        }
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
        memcpy(j->last_hash, sc.have_anchor ? sc.anchor_hash : zero_hash, JSEG_HASH_LEN);
    } else if (opts->verify_chain) {
        memcpy(j->last_hash, sc.prev, JSEG_HASH_LEN);
    } else if ((rc = jseg_hash_record_at(j->sha, j->dir, sc.last_first, sc.last_off, sc.last_len,
                                         sc.last_version, j->last_hash, err, errlen)) != TB_OK) {
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
        jseg_t *a = &j->segs[j->nsegs - 1];
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
    jseg_sha_destroy(&j->sha);
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
    int64_t ms = tb_wall_ms();
    uint8_t *h = self->whead, *b = h + JSEG_FRAME;
    jrec_t rec = { .hub_seq = seq, .accepted_ms = ms, .sender = sender, .sender_seq = sender_seq,
                   .dest = dest, .batch = batch, .batch_len = len };
    size_t head_body = jseg_record_head(h, &rec, self->last_hash) - JSEG_FRAME;
    uint32_t body_len = (uint32_t)(head_body + len);

    uint64_t reclen = JSEG_FRAME + (uint64_t)body_len;
    jseg_t *s = &self->segs[self->nsegs - 1];
    int created = 0;
    /* roll when full, and off a segment of the old version (left by an
     * older release) once it holds records: new records get the cheaper hash */
    int roll = s->last_seq >= s->first_seq &&
               (s->size + reclen > self->segment_bytes || s->version != JSEG_VERSION);
    uint8_t hash[JSEG_HASH_LEN];
    if (jseg_record_hash(self->sha, roll ? JSEG_VERSION : s->version, b, head_body, batch, len, body_sha256,
                         hash) < 0) {
        tb_seterr(err, errlen, "journal_append: SHA-256 failed");
        return TB_ERR_CRYPTO;
    }
    if (roll) {
        tb_err_t rc = seg_create(self, seq, err, errlen);
        if (rc != TB_OK) return rc;
        created = 1;
        s = &self->segs[self->nsegs - 1];
    }
    struct iovec iov[2] = { { h, JSEG_FRAME + head_body }, { (void *)(uintptr_t)batch, len } };
    if (jseg_pwritev_all(s->fd, iov, 2, s->size) < 0) {
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
    if (jseg_index_add(s, seq, s->size) < 0) {
        /* the index is only a shortcut: readers walk from the previous entry */
    }
    s->size += reclen;
    s->last_seq = seq;
    s->last_ms = ms;
    s->dirty = 1;
    self->total_bytes += reclen;
    self->last_seq = seq;
    memcpy(self->last_hash, hash, JSEG_HASH_LEN);
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
        jseg_t *s = &self->segs[i];
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
    jseg_t *s = &self->segs[seg_find(self, next)];
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
        jseg_t *s = &j->segs[i];
        if (r->next_seq > s->last_seq) {
            if ((size_t)i + 1 >= j->nsegs || j->segs[i + 1].first_seq != r->next_seq) {
                tb_seterr(err, errlen, "%s: no segment holds record %" PRIu64, j->dir, r->next_seq);
                return TB_ERR_PROTO;
            }
            r->seg_first = j->segs[i + 1].first_seq;
            r->off = JSEG_HDR;
            continue;
        }
        int fd = seg_fd(j, s, err, errlen);
        if (fd < 0) return TB_ERR_IO;
        uint64_t left = s->size - r->off;
        size_t hn = left < JSEG_HEAD_MAX ? (size_t)left : JSEG_HEAD_MAX;
        if (hn < JSEG_FRAME + JSEG_BODY_MIN) {
            tb_seterr(err, errlen, "%s: offset %" PRIu64 ": record %" PRIu64 " runs past the end of the segment",
                   seg_path(j, s->first_seq, path, sizeof path), r->off, r->next_seq);
            return TB_ERR_PROTO;
        }
        if (rbuf_reserve(j, JSEG_HEAD_MAX) < 0) {
            tb_seterr(err, errlen, "%s: out of memory", j->dir);
            return TB_ERR_NOMEM;
        }
        if (jseg_pread_full(fd, j->rbuf, hn, r->off) < 0) {
            int e = errno;
            tb_seterr(err, errlen, "%s: offset %" PRIu64 ": %s",
                   seg_path(j, s->first_seq, path, sizeof path), r->off, jseg_ioerr(e));
            return TB_ERR_IO;
        }
        j->read_bytes += hn;
        uint32_t len = jseg_get32(j->rbuf), crc = jseg_get32(j->rbuf + 4);
        if (len < JSEG_BODY_MIN || len > JSEG_BODY_MAX || JSEG_FRAME + (uint64_t)len > left) {
            tb_seterr(err, errlen, "%s: offset %" PRIu64 ": bad record length %" PRIu32 " (record %" PRIu64 ")",
                   seg_path(j, s->first_seq, path, sizeof path), r->off, len, r->next_seq);
            return TB_ERR_PROTO;
        }
        jseg_body_t p;
        const char *why = jseg_parse_head(j->rbuf + JSEG_FRAME, hn - JSEG_FRAME, len, &p);
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
            r->off += JSEG_FRAME + len;
            continue;
        }
        size_t total = JSEG_FRAME + (size_t)len;
        if (total > hn) {
            if (rbuf_reserve(j, total) < 0) {
                tb_seterr(err, errlen, "%s: out of memory for a record of %zu bytes", j->dir, total);
                return TB_ERR_NOMEM;
            }
            if (jseg_pread_full(fd, j->rbuf + hn, total - hn, r->off + hn) < 0) {
                int e = errno;
                tb_seterr(err, errlen, "%s: offset %" PRIu64 ": %s",
                       seg_path(j, s->first_seq, path, sizeof path), r->off + hn, jseg_ioerr(e));
                return TB_ERR_IO;
            }
            j->read_bytes += total - hn;
        }
        const uint8_t *body = j->rbuf + JSEG_FRAME;
        if (jseg_crc32c(body, len) != crc) {
            tb_seterr(err, errlen, "%s: offset %" PRIu64 ": CRC mismatch (record %" PRIu64 "): journal damaged",
                   seg_path(j, s->first_seq, path, sizeof path), r->off, r->next_seq);
            return TB_ERR_PROTO;
        }
        jseg_parse_head(body, len < JSEG_HEAD_BODY_MAX ? len : JSEG_HEAD_BODY_MAX, len, &p);  /* rbuf may have moved */
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
static tb_err_t first_prev_hash(journal_t *j, jseg_t *s, uint8_t out[JSEG_HASH_LEN], char *err, size_t errlen)
{
    char path[PATH_MAX];
    uint8_t h[JSEG_FRAME + 48];
    seg_path(j, s->first_seq, path, sizeof path);
    int fd = seg_fd(j, s, err, errlen);
    if (fd < 0) return TB_ERR_IO;
    if (jseg_pread_full(fd, h, sizeof h, JSEG_HDR) < 0) {
        tb_seterr(err, errlen, "%s: offset %u: %s", path, JSEG_HDR, jseg_ioerr(errno));
        return TB_ERR_IO;
    }
    if (jseg_get64(h + JSEG_FRAME) != s->first_seq) {
        tb_seterr(err, errlen, "%s: offset %u: expected record %" PRIu64 ", found %" PRIu64 ": journal damaged",
               path, JSEG_HDR, s->first_seq, jseg_get64(h + JSEG_FRAME));
        return TB_ERR_PROTO;
    }
    memcpy(out, h + JSEG_FRAME + 16, JSEG_HASH_LEN);
    return TB_OK;
}

tb_err_t journal_gc(journal_t *self, uint64_t min_acked, int64_t retention_ms, size_t *removed,
                    char *err, size_t errlen)
{
    char path[PATH_MAX], q[PATH_MAX + 8];
    uint8_t hash[JSEG_HASH_LEN];
    tb_err_t rc = TB_OK;
    size_t k = 0, done = 0;
    if (removed) *removed = 0;
    if (!self) return TB_ERR_INVALID;
    if (self->failed) {
        tb_seterr(err, errlen, "%s", self->failmsg);
        return TB_ERR_IO;
    }
    int64_t now = tb_wall_ms();
    while (k + 1 < self->nsegs) {
        const jseg_t *s = &self->segs[k];
        if (s->last_seq < s->first_seq || s->last_seq > min_acked || s->last_seq > self->durable_seq ||
            s->dirty || now - s->last_ms < retention_ms)
            break;
        k++;
    }
    if (k == 0) return TB_OK;
    uint64_t anchor_seq = self->segs[k - 1].last_seq;
    jseg_t *next = &self->segs[k];
    if (next->last_seq >= next->first_seq) rc = first_prev_hash(self, next, hash, err, errlen);
    else memcpy(hash, self->last_hash, JSEG_HASH_LEN);  /* the active segment is still empty */
    if (rc != TB_OK) return rc;
    if ((rc = jseg_anchor_write(self->dir, self->dirfd, anchor_seq, hash, err, errlen)) != TB_OK) return rc;
    for (; done < k; done++) {
        jseg_t *s = &self->segs[done];
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
