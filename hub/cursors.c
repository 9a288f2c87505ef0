/* cursors.c -- per-destination delivery cursors, saved atomically to one checksummed text file. */
#include "errbuf.h"
#include "cursors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <isa-l/crc.h>

#define HEADER "tongban-cursors 1"
#define MAX_FILE (64u * 1024u * 1024u)

typedef struct {
    char *id;
    uint64_t seq;
} entry_t;

struct cursors {
    char *path;
    entry_t *v;             /* sorted by id */
    size_t n, cap;
    int dirty;
};


/* Returns the CRC32C of p[0..n) (ISA-L's crc32_iscsi neither pre- nor
 * post-inverts, hence the two XORs; "123456789" gives 0xE3069283). */
static uint32_t crc32c(const void *p, size_t n)
{
    return crc32_iscsi((unsigned char *)(uintptr_t)p, (int)n, 0xFFFFFFFFu) ^ 0xFFFFFFFFu;
}

/* Returns 1 if id[0..len) is a valid id (1..255 bytes, no space or control character). */
static int id_ok(const char *id, size_t len)
{
    if (len == 0 || len > CURSORS_MAX_ID) return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c <= 0x20 || c == 0x7f) return 0;
    }
    return 1;
}

/* Finds id. Returns its index and sets *found, or the insertion point. */
static size_t find(const cursors_t *self, const char *id, int *found)
{
    size_t lo = 0, hi = self->n;
    *found = 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(self->v[mid].id, id);
        if (c == 0) {
            *found = 1;
            return mid;
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Inserts (id, seq) at index at. Returns 0, or -1 if out of memory. */
static int insert_at(cursors_t *self, size_t at, const char *id, size_t idlen, uint64_t seq)
{
    if (self->n == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 16;
        entry_t *nv = realloc(self->v, cap * sizeof *nv);
        if (!nv) return -1;
        self->v = nv;
        self->cap = cap;
    }
    char *copy = strndup(id, idlen);
    if (!copy) return -1;
    memmove(self->v + at + 1, self->v + at, (self->n - at) * sizeof *self->v);
    self->v[at].id = copy;
    self->v[at].seq = seq;
    self->n++;
    return 0;
}

/* Parses an unsigned decimal s[0..len) (no sign, no spaces) into *out.
 * Returns 0, or -1 if it is not one or is out of range. */
static int parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 20) return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Parses exactly 8 lowercase hex digits. Returns 0, or -1. */
static int parse_hex32(const char *s, size_t len, uint32_t *out)
{
    uint32_t v = 0;
    if (len != 8) return -1;
    for (size_t i = 0; i < 8; i++) {
        int c = s[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else return -1;
        v = v << 4 | (uint32_t)d;
    }
    *out = v;
    return 0;
}

/* Parses the file content buf[0..len) into self. Returns TB_OK,
 * TB_ERR_PROTO (err: file and line) or TB_ERR_NOMEM. */
static tb_err_t parse(cursors_t *self, const char *buf, size_t len, char *err, size_t errlen)
{
    const char *path = self->path;
    size_t pos = 0, lineno = 0;
    int ended = 0;
    while (pos < len) {
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', len - pos);
        lineno++;
        if (!nl) {
            tb_seterr(err, errlen, "%s: line %zu: truncated (no newline at the end): cursors file damaged",
                   path, lineno);
            return TB_ERR_PROTO;
        }
        size_t ll = (size_t)(nl - line);
        if (ended) {
            tb_seterr(err, errlen, "%s: line %zu: data after the end line: cursors file damaged", path, lineno);
            return TB_ERR_PROTO;
        }
        if (lineno == 1) {
            if (ll != strlen(HEADER) || memcmp(line, HEADER, ll) != 0) {
                tb_seterr(err, errlen, "%s: line 1: not a cursors file (expected \"" HEADER "\")", path);
                return TB_ERR_PROTO;
            }
            pos += ll + 1;
            continue;
        }
        /* three space-separated fields */
        const char *sp1 = memchr(line, ' ', ll);
        const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(nl - sp1 - 1)) : NULL;
        if (!sp1 || !sp2 || memchr(sp2 + 1, ' ', (size_t)(nl - sp2 - 1))) {
            tb_seterr(err, errlen, "%s: line %zu: expected \"<id> <hub_seq> <crc32c>\": cursors file damaged",
                   path, lineno);
            return TB_ERR_PROTO;
        }
        size_t f1 = (size_t)(sp1 - line), f2 = (size_t)(sp2 - sp1 - 1), f3 = (size_t)(nl - sp2 - 1);
        uint64_t num;
        uint32_t crc;
        if (parse_u64(sp1 + 1, f2, &num) < 0 || parse_hex32(sp2 + 1, f3, &crc) < 0) {
            tb_seterr(err, errlen, "%s: line %zu: bad number: cursors file damaged", path, lineno);
            return TB_ERR_PROTO;
        }
        if (f1 == 3 && memcmp(line, "end", 3) == 0) {
            if (crc != crc32c(buf, pos)) {
                tb_seterr(err, errlen, "%s: line %zu: checksum of the file does not match: cursors file damaged",
                       path, lineno);
                return TB_ERR_PROTO;
            }
            if (num != self->n) {
                tb_seterr(err, errlen, "%s: line %zu: end line says %" PRIu64 " cursors, found %zu:"
                       " cursors file damaged", path, lineno, num, self->n);
                return TB_ERR_PROTO;
            }
            ended = 1;
            pos += ll + 1;
            continue;
        }
        if (crc != crc32c(line, (size_t)(sp2 - line))) {
            tb_seterr(err, errlen, "%s: line %zu: checksum mismatch: cursors file damaged", path, lineno);
            return TB_ERR_PROTO;
        }
        if (!id_ok(line, f1)) {
            tb_seterr(err, errlen, "%s: line %zu: bad id: cursors file damaged", path, lineno);
            return TB_ERR_PROTO;
        }
        char id[CURSORS_MAX_ID + 1];
        memcpy(id, line, f1);
        id[f1] = '\0';
        int found;
        size_t at = find(self, id, &found);
        if (found) {
            tb_seterr(err, errlen, "%s: line %zu: duplicate id %s: cursors file damaged", path, lineno, id);
            return TB_ERR_PROTO;
        }
        if (insert_at(self, at, id, f1, num) < 0) {
            tb_seterr(err, errlen, "%s: out of memory", path);
            return TB_ERR_NOMEM;
        }
        pos += ll + 1;
    }
    if (!ended) {
        tb_seterr(err, errlen, "%s: line %zu: no end line (file truncated): cursors file damaged", path, lineno + 1);
        return TB_ERR_PROTO;
    }
    return TB_OK;
}

tb_err_t cursors_open(const char *path, cursors_t **out, char *err, size_t errlen)
{
    cursors_t *self = NULL;
    char *buf = NULL;
    int fd = -1;
    tb_err_t rc = TB_OK;
    struct stat st;
    if (!path || !*path || !out) {
        tb_seterr(err, errlen, "cursors_open: no path");
        return TB_ERR_INVALID;
    }
    *out = NULL;
    self = calloc(1, sizeof *self);
    if (!self || !(self->path = strdup(path))) {
        tb_seterr(err, errlen, "%s: out of memory", path);
        rc = TB_ERR_NOMEM;
        goto done;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) goto done;  /* no cursors yet */
        tb_seterr(err, errlen, "%s: %s", path, strerror(errno));
        rc = TB_ERR_IO;
        goto done;
    }
    if (fstat(fd, &st) < 0) {
        tb_seterr(err, errlen, "%s: %s", path, strerror(errno));
        rc = TB_ERR_IO;
        goto done;
    }
    if (st.st_size > MAX_FILE) {
        tb_seterr(err, errlen, "%s: %lld bytes is too big for a cursors file", path, (long long)st.st_size);
        rc = TB_ERR_PROTO;
        goto done;
    }
    size_t len = (size_t)st.st_size, got = 0;
    buf = malloc(len + 1);
    if (!buf) {
        tb_seterr(err, errlen, "%s: out of memory", path);
        rc = TB_ERR_NOMEM;
        goto done;
    }
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            tb_seterr(err, errlen, "%s: %s", path, r < 0 ? strerror(errno) : "file shrank while reading");
            rc = TB_ERR_IO;
            goto done;
        }
        got += (size_t)r;
    }
    rc = parse(self, buf, len, err, errlen);
done:
    if (fd >= 0) close(fd);
    free(buf);
    if (rc != TB_OK) cursors_destroy(&self);
    *out = self;
    return rc;
}

uint64_t cursors_get(const cursors_t *self, const char *id)
{
    int found;
    if (!self || !id) return 0;
    size_t at = find(self, id, &found);
    return found ? self->v[at].seq : 0;
}

tb_err_t cursors_set(cursors_t *self, const char *id, uint64_t hub_seq)
{
    int found;
    if (!self || !id || !id_ok(id, strlen(id))) return TB_ERR_INVALID;
    size_t at = find(self, id, &found);
    if (found) {
        if (self->v[at].seq != hub_seq) {
            self->v[at].seq = hub_seq;
            self->dirty = 1;
        }
        return TB_OK;
    }
    if (insert_at(self, at, id, strlen(id), hub_seq) < 0) return TB_ERR_NOMEM;
    self->dirty = 1;
    return TB_OK;
}

/* Appends a formatted string to a growing buffer. Returns 0, or -1 if out of memory. */
static int bprintf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int bprintf(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(*buf ? *buf + *len : NULL, *buf ? *cap - *len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return -1;
        if (*buf && (size_t)n < *cap - *len) {
            *len += (size_t)n;
            return 0;
        }
        size_t ncap = *cap ? *cap * 2 : 4096;
        while (ncap < *len + (size_t)n + 1) ncap *= 2;
        char *nb = realloc(*buf, ncap);
        if (!nb) return -1;
        *buf = nb;
        *cap = ncap;
    }
}

/* fsyncs the directory holding path. Returns 0, or -1 with errno set. */
static int fsync_parent(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

tb_err_t cursors_save(cursors_t *self, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int fd = -1;
    tb_err_t rc = TB_OK;
    if (!self) return TB_ERR_INVALID;
    if (!self->dirty) return TB_OK;
    if (!self->path) {
        tb_seterr(err, errlen, "cursors kept in memory only have no file");
        return TB_ERR_INVALID;
    }
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", self->path) >= sizeof tmp) {
        tb_seterr(err, errlen, "%s: path too long", self->path);
        return TB_ERR_INVALID;
    }
    if (bprintf(&buf, &len, &cap, HEADER "\n") < 0) goto nomem;
    for (size_t i = 0; i < self->n; i++) {
        size_t start = len;
        if (bprintf(&buf, &len, &cap, "%s %" PRIu64, self->v[i].id, self->v[i].seq) < 0) goto nomem;
        uint32_t crc = crc32c(buf + start, len - start);
        if (bprintf(&buf, &len, &cap, " %08" PRIx32 "\n", crc) < 0) goto nomem;
    }
    uint32_t all = crc32c(buf, len);
    if (bprintf(&buf, &len, &cap, "end %zu %08" PRIx32 "\n", self->n, all) < 0) goto nomem;

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        tb_seterr(err, errlen, "%s: %s", tmp, strerror(errno));
        rc = TB_ERR_IO;
        goto done;
    }
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            tb_seterr(err, errlen, "%s: %s", tmp, w < 0 ? strerror(errno) : "short write");
            rc = TB_ERR_IO;
            goto done;
        }
        off += (size_t)w;
    }
    if (fsync(fd) < 0) {
        tb_seterr(err, errlen, "%s: fsync: %s", tmp, strerror(errno));
        rc = TB_ERR_IO;
        goto done;
    }
    int cr = close(fd);
    fd = -1;
    if (cr < 0) {
        tb_seterr(err, errlen, "%s: close: %s", tmp, strerror(errno));
        rc = TB_ERR_IO;
        goto done;
    }
    if (rename(tmp, self->path) < 0) {
        tb_seterr(err, errlen, "%s: rename from %s: %s", self->path, tmp, strerror(errno));
        rc = TB_ERR_IO;
        goto done;
    }
    if (fsync_parent(self->path) < 0) {
        /* The new file is in place; only its durability across a crash is unsure. */
        tb_seterr(err, errlen, "%s: fsync of the directory: %s", self->path, strerror(errno));
        rc = TB_ERR_IO;
        goto done;
    }
    self->dirty = 0;
    goto done;
nomem:
    tb_seterr(err, errlen, "%s: out of memory", self->path);
    rc = TB_ERR_NOMEM;
done:
    if (fd >= 0) close(fd);
    if (rc != TB_OK && rc != TB_ERR_NOMEM) unlink(tmp);
    free(buf);
    return rc;
}

uint64_t cursors_min(const cursors_t *self, const char *const *ids, size_t n)
{
    if (!self || !ids || n == 0) return 0;
    uint64_t m = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        uint64_t c = cursors_get(self, ids[i]);
        if (c < m) m = c;
    }
    return m;
}

size_t cursors_count(const cursors_t *self) { return self ? self->n : 0; }

int cursors_dirty(const cursors_t *self) { return self ? self->dirty : 0; }

void cursors_destroy(cursors_t **self)
{
    if (!self || !*self) return;
    cursors_t *c = *self;
    for (size_t i = 0; i < c->n; i++) free(c->v[i].id);
    free(c->v);
    free(c->path);
    free(c);
    *self = NULL;
}

cursors_t *cursors_new_memory(void)
{
    return calloc(1, sizeof(cursors_t));
}

void cursors_each(const cursors_t *self, void (*fn)(void *arg, const char *id, uint64_t hub_seq), void *arg)
{
    for (size_t i = 0; self && i < self->n; i++) fn(arg, self->v[i].id, self->v[i].seq);
}

void cursors_mark_saved(cursors_t *self)
{
    if (self) self->dirty = 0;
}
