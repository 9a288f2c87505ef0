/* tb_lightnode.c -- a light node for integration tests and benchmarks: speaks
 * the node side of the wire protocol honestly (signed batches, acks, verified
 * and acked deliveries) without PostgreSQL. Single thread, one zmq_poll loop.
 *
 *   tb_lightnode publish   COMMON --key K --cert C --dest D --batches N --entries M
 *                          [--entry-bytes 512] [--window 8] [--first-seq S] [--resend-ms 3000]
 *                          [--prebuild [--go-file PATH]] [--send-log PATH]
 *   tb_lightnode subscribe COMMON [--expect-batches N | --expect-entries N]
 *                          [--idle-exit-ms MS] [--no-verify] [--arrival-log PATH]
 *   tb_lightnode both      COMMON + the options of both, on one connection
 *   COMMON: --endpoint tcp://H:P --hub-public Z85 --curve-dir DIR (curve.key, curve.pub)
 *           --node ID [--timeout-ms 60000] [--ca CA.crt] [--json] [--failover-ms 2000]
 *   --endpoint may be given several times (hubs of one active / standby
 *   group, same CURVE key): the node connects to the first; when it gets no
 *   Welcome, or hears nothing, for --failover-ms it moves to the next (round
 *   robin, a fresh socket) and, once welcomed, resends every unacked batch.
 *   Each move is printed ("failover from=... to=...") and counted (failovers).
 *
 * publish: N batches of M RecordUpsert entries (catalog "bench", key
 *   "<node>-<seq>-<i>", origin = node, hlc increasing, body
 *   {"t":<CLOCK_REALTIME ms>,"seq":S,"i":I,"pad":"xx.."} padded to --entry-bytes),
 *   each batch signed once (tb_batch_sign) and built only when the window has
 *   room, in one reused payload buffer. Seqs are S, S+1, ...; the default S
 *   is CLOCK_REALTIME ms << 8, so a later run of the same node starts above
 *   every seq an earlier run used (unless that run sent more than 256 batches
 *   per millisecond) and a hub that deduplicates per-sender seqs does not take
 *   its batches for replays. At most --window batches are unacked; a batch not
 *   acked within --resend-ms is sent again, byte for byte. A Nack is printed
 *   and counted; "overloaded" and "storage" ones are retried after
 *   --resend-ms, the others end that batch.
 *   --prebuild (a benchmark's load generator): all N batches are built and
 *   signed before the first is sent (N x the batch size of memory), so the
 *   sending itself costs no signing; their bodies carry "t":0 (the build
 *   time would not be a send time; see --send-log). "prebuilt batches=N"
 *   is printed on stderr when they are ready; with --go-file nothing is sent
 *   until PATH exists (several publishers start together).
 *   --send-log PATH: "seq first_send_realtime_ms" per batch, written at exit.
 * subscribe: each Deliver is verified against the directory of the Welcome
 *   (each directory certificate checked against --ca when given), decoded and
 *   checked for per-sender seq order, then acked with DeliverAck(hub_seq). A
 *   redelivery (a (sender, seq) already taken, under the same hub_seq or a
 *   new one) is a duplicate: acked, not counted again. A refused delivery (bad signature, unknown or
 *   revoked signer, addressed elsewhere) is counted and, like a real node,
 *   not acked. Ends at the expected count, after --idle-exit-ms without a
 *   delivery, or at --timeout-ms. --arrival-log PATH: "sender seq
 *   realtime_ms entries" per batch taken (not for duplicates), written at
 *   exit: joined with the publishers' --send-log it gives the send ->
 *   delivery latency of prebuilt batches.
 * Always: Hello until a Welcome, Heartbeat every second, Hello again after
 * 5 s without any frame from the hub; after that new Welcome every unacked
 * batch is resent.
 *
 * Output: one summary line on stdout, or with --json one object with node,
 * mode, batches_sent, entries_sent, acks, nacks, resends, batches_received,
 * entries_received, duplicates, out_of_order, bad_signatures, seconds,
 * entries_per_s, first_ms, last_ms, p50_ms, p99_ms (plus misaddressed, exit).
 *   first_ms / last_ms: CLOCK_REALTIME ms of the first batch sent or delivery
 *     received, and of the last ack or delivery (so runs of several processes
 *     can be combined); seconds: the span between them.
 *   entries_per_s: entries acked (publish) or received (subscribe, both) / seconds.
 *   p50_ms / p99_ms: send -> ack per batch (publish); per entry, arrival
 *     minus the "t" of its body (subscribe, both: publisher on the same clock).
 *     null when there is no sample.
 * Exit: 0 done; 2 usage or setup error; 3 timeout (not everything acked or
 * received); 4 protocol problem (nack, bad signature, out-of-order or
 * misaddressed delivery); 1 internal error (memory, socket).
 */
#include <errno.h>
#include <inttypes.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "config.h"
#include "crypto.h"
#include "pki.h"
#include "wire.h"

#define HELLO_EVERY_MS 1000
#define HEARTBEAT_MS 1000
#define HUB_SILENT_MS 5000
#define LINGER_MS 2000       /* queued DeliverAcks still leave after the last delivery */
#define HIST_MS 65536        /* latency histogram: 1 ms buckets, the last one collects the rest */
#define MAX_REPORTS 20       /* problems printed on stderr; all are counted */
#define RECV_BURST 1024
#define ENTRY_OVERHEAD 512   /* bound of a RecordUpsert's fields besides the body */

enum { RC_OK = 0, RC_INTERNAL = 1, RC_USAGE = 2, RC_TIMEOUT = 3, RC_PROTO = 4 };

/* ---- options (table-driven) ---- */

enum { M_PUB = 1, M_SUB = 2, M_ALL = 3 };

typedef struct {
    int pub, sub;
    const char *mode, *endpoints[8], *hub_public, *curve_dir, *node, *ca, *key, *cert, *dest;
    uint64_t timeout_ms, batches, entries, entry_bytes, window, first_seq, resend_ms;
    uint64_t expect_batches, expect_entries, idle_exit_ms, failover_ms;
    size_t nendpoints;
    const char *go_file, *send_log, *arrival_log;
    int json, no_verify, prebuild;
} opts_t;

typedef enum { O_STR, O_NUM, O_FLAG } okind_t;

typedef struct {
    const char *name;
    okind_t kind;
    size_t off;
    uint64_t min, max;
    unsigned modes;
} optdef_t;

#define OSTR(n, f, m) { n, O_STR, offsetof(opts_t, f), 0, 0, m }
#define ONUM(n, f, lo, hi, m) { n, O_NUM, offsetof(opts_t, f), lo, hi, m }
#define OFLAG(n, f, m) { n, O_FLAG, offsetof(opts_t, f), 0, 0, m }
static const optdef_t optdefs[] = {
    OSTR("--endpoint", endpoints, M_ALL),
    ONUM("--failover-ms", failover_ms, 200, 600000, M_ALL),
    OSTR("--hub-public", hub_public, M_ALL),
    OSTR("--curve-dir", curve_dir, M_ALL),
    OSTR("--node", node, M_ALL),
    OSTR("--ca", ca, M_ALL),
    ONUM("--timeout-ms", timeout_ms, 1, 86400000, M_ALL),
    OFLAG("--json", json, M_ALL),
    OSTR("--key", key, M_PUB),
    OSTR("--cert", cert, M_PUB),
    OSTR("--dest", dest, M_PUB),
    ONUM("--batches", batches, 1, UINT32_MAX, M_PUB),
    ONUM("--entries", entries, 1, 1000000, M_PUB),
    ONUM("--entry-bytes", entry_bytes, 1, 16u << 20, M_PUB),
    ONUM("--window", window, 1, 65536, M_PUB),
    ONUM("--first-seq", first_seq, 1, UINT64_MAX / 2, M_PUB),
    ONUM("--resend-ms", resend_ms, 10, 3600000, M_PUB),
    ONUM("--expect-batches", expect_batches, 1, UINT64_MAX, M_SUB),
    ONUM("--expect-entries", expect_entries, 1, UINT64_MAX, M_SUB),
    ONUM("--idle-exit-ms", idle_exit_ms, 1, 86400000, M_SUB),
    OFLAG("--prebuild", prebuild, M_PUB),
    OSTR("--go-file", go_file, M_PUB),
    OSTR("--send-log", send_log, M_PUB),
    OFLAG("--no-verify", no_verify, M_SUB),
    OSTR("--arrival-log", arrival_log, M_SUB),
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: tb_lightnode publish|subscribe|both COMMON [options]\n"
            "  COMMON:    --endpoint tcp://H:P --hub-public Z85 --curve-dir DIR --node ID\n"
            "             [--timeout-ms 60000] [--ca CA.crt] [--json]\n"
            "  publish:   --key K --cert C --dest D --batches N --entries M [--entry-bytes 512]\n"
            "             [--window 8] [--first-seq S (default: realtime ms << 8)] [--resend-ms 3000]\n"
            "             [--prebuild [--go-file PATH]] [--send-log PATH]\n"
            "  subscribe: [--expect-batches N | --expect-entries N] [--idle-exit-ms MS] [--no-verify]\n"
            "             [--arrival-log PATH]\n"
            "  both:      the options of publish and subscribe, on one connection\n"
            "exit: 0 done, 2 usage, 3 timeout, 4 protocol problem (nack, bad signature, out of order)\n");
}

static int bad_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int bad_usage(const char *fmt, ...)
{
    va_list ap;
    fputs("tb_lightnode: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs(" (try --help)\n", stderr);
    return RC_USAGE;
}

/* Decimal uint64 only: no sign, no spaces, no trailing text. Returns 0 or -1. */
static int parse_u64(const char *s, uint64_t *out)
{
    if (*s < '0' || *s > '9') return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

static int valid_dest(const char *d)
{
    return tb_config_valid_id(d) || (strncmp(d, "topic:", 6) == 0 && tb_config_valid_id(d + 6));
}

/* Fills o from argv. Returns -1 to go on, or an exit code (0 for --help). */
static int parse_args(int argc, char **argv, opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->timeout_ms = 60000;
    o->entry_bytes = 512;
    o->window = 8;
    o->resend_ms = 3000;
    o->failover_ms = 2000;
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return RC_OK;
    }
    if (argc < 2) {
        usage(stderr);
        return RC_USAGE;
    }
    o->mode = argv[1];
    o->pub = strcmp(o->mode, "publish") == 0 || strcmp(o->mode, "both") == 0;
    o->sub = strcmp(o->mode, "subscribe") == 0 || strcmp(o->mode, "both") == 0;
    if (!o->pub && !o->sub) return bad_usage("unknown mode \"%s\": publish, subscribe or both", o->mode);
    unsigned have = (o->pub ? M_PUB : 0u) | (o->sub ? M_SUB : 0u);
    for (int i = 2; i < argc; i++) {
        const optdef_t *d = NULL;
        for (size_t k = 0; k < sizeof optdefs / sizeof optdefs[0]; k++)
            if (strcmp(argv[i], optdefs[k].name) == 0) d = &optdefs[k];
        if (!d) return bad_usage("unknown option \"%s\"", argv[i]);
        if (!(d->modes & have)) return bad_usage("%s does not apply to %s", d->name, o->mode);
        char *field = (char *)o + d->off;
        if (d->kind == O_FLAG) {
            *(int *)field = 1;
            continue;
        }
        if (i + 1 >= argc) return bad_usage("%s needs a value", d->name);
        const char *v = argv[++i];
        if (d->kind == O_STR && d->off == offsetof(opts_t, endpoints)) {
            if (o->nendpoints == sizeof o->endpoints / sizeof o->endpoints[0])
                return bad_usage("--endpoint: at most %zu", sizeof o->endpoints / sizeof o->endpoints[0]);
            o->endpoints[o->nendpoints++] = v;
            continue;
        }
        if (d->kind == O_STR) {
            *(const char **)field = v;
            continue;
        }
        uint64_t x;
        if (parse_u64(v, &x) != 0 || x < d->min || x > d->max)
            return bad_usage("%s: \"%s\" is not a number in %" PRIu64 "..%" PRIu64, d->name, v, d->min,
                             d->max);
        *(uint64_t *)field = x;
    }
    if (!o->nendpoints || !o->hub_public || !o->curve_dir || !o->node)
        return bad_usage("--endpoint, --hub-public, --curve-dir and --node are required");
    if (strlen(o->hub_public) != 40) return bad_usage("--hub-public: expected a 40-character Z85 key");
    if (!tb_config_valid_id(o->node)) return bad_usage("--node: \"%s\" is not a node id", o->node);
    if (o->pub) {
        if (!o->key || !o->cert || !o->dest || !o->batches || !o->entries)
            return bad_usage("%s needs --key, --cert, --dest, --batches and --entries", o->mode);
        if (!valid_dest(o->dest)) return bad_usage("--dest: \"%s\" is not a node id or topic:<name>", o->dest);
        if (o->entries * (o->entry_bytes + ENTRY_OVERHEAD) > (1u << 30))
            return bad_usage("--entries x --entry-bytes: a batch over 1 GiB");
    }
    if (o->expect_batches && o->expect_entries)
        return bad_usage("--expect-batches and --expect-entries exclude each other");
    if (o->go_file && !o->prebuild) return bad_usage("--go-file needs --prebuild");
    return -1;
}

/* ---- the light node ---- */

typedef struct {
    char id[TB_ID_MAX + 1];
    tb_cert_t *cert;
    int revoked;
} dirent_t;

typedef struct {
    char id[TB_ID_MAX + 1];
    int any;
    uint64_t last_seq;
} sender_t;

typedef struct {
    uint64_t a, b;                /* a == 0: empty slot */
} seenkey_t;

typedef struct {                  /* open-addressing set of seen hub_seqs and (sender, seq) */
    seenkey_t *v;
    size_t cap, n;
} seen_t;

typedef struct {
    int busy;                     /* built and not yet acked (or finally refused) */
    int sent_once;
    uint64_t seq;
    uint8_t *frame;               /* serialised Frame{batch}, resent as-is */
    size_t len, entries;
    uint64_t first_ms, sent_ms;   /* monotonic; sent_ms 0 = (re)send now */
} slot_t;

typedef struct {
    size_t sender;                /* index into senders */
    uint64_t seq, real_ms, entries;
} arrival_t;

typedef struct chunk {
    struct chunk *next;
    max_align_t data[];
} chunk_t;

typedef struct {                  /* protobuf-c allocator: bump pointer, reset per frame */
    uint8_t *buf;
    size_t cap, used, extra_bytes;
    chunk_t *extra;
} arena_t;

typedef struct {
    uint64_t batches_sent, entries_sent, acks, entries_acked, nacks, resends;
    uint64_t batches_received, entries_received, duplicates, out_of_order, bad_signatures,
        misaddressed;
    int have_first, have_last;
    uint64_t first_mono, last_mono, first_real, last_real;
} stats_t;

typedef struct {
    const opts_t *o;
    void *ctx, *sock;
    tb_signer_t *signer;
    tb_cert_t *cert, *ca;
    dirent_t *dir;
    size_t ndir, dircap, dirhit;
    int welcomed, ever_welcomed, blocked;
    uint64_t ooo_resend_ms;       /* last resend of everything after Nack out_of_order */
    uint64_t start_ms, welcome_ms, last_heard_ms, last_hello_ms, last_hb_ms;
    /* failover between --endpoint values */
    size_t ep;                    /* index of the current endpoint */
    uint64_t ep_since_ms;         /* connected to it since */
    uint64_t failovers;
    char secret[41], public[41];
    /* publish */
    slot_t *slots;
    uint64_t seq0, seq_end, next_seq, oldest, hlc;
    Tongban__Entry *ents;
    Tongban__Entry **eptrs;
    uint8_t *ids, *payload;
    char *body;
    uint8_t **pre_frame;          /* --prebuild: frame of seq0 + k, until it moves to its slot */
    size_t *pre_len;
    int go;                       /* sending allowed (no --go-file, or it exists) */
    double prebuild_cpu_s;        /* --prebuild: CPU seconds of the process until the batches were ready */
    uint64_t *sent_real;          /* --send-log: realtime ms of the first send of seq0 + k */
    /* subscribe */
    uint64_t *dacks;              /* DeliverAcks waiting for room in the socket */
    size_t ndacks, dackcap;
    seen_t seen;
    sender_t *senders;
    size_t nsenders, sendercap;
    uint64_t last_delivery_ms;
    arrival_t *arrivals;          /* --arrival-log */
    size_t narrivals, arrivalcap;
    arena_t arena;
    ProtobufCAllocator alloc;
    /* results */
    stats_t st;
    uint64_t *hist, nsamples;
    unsigned reports;
} ln_t;

#define REPORT(self, ...) \
    do { if ((self)->reports++ < MAX_REPORTS) fprintf(stderr, __VA_ARGS__); } while (0)

static uint64_t now_real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* CPU seconds (user + system) of this process so far. */
static double cpu_now_s(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0.0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void note_first(ln_t *self, uint64_t now)
{
    if (self->st.have_first) return;
    self->st.have_first = 1;
    self->st.first_mono = now;
    self->st.first_real = now_real_ms();
}

static void note_last(ln_t *self, uint64_t now)
{
    note_first(self, now);
    self->st.have_last = 1;
    self->st.last_mono = now;
    self->st.last_real = now_real_ms();
}

static void hist_add(ln_t *self, uint64_t ms)
{
    self->hist[ms < HIST_MS ? ms : HIST_MS - 1]++;
    self->nsamples++;
}

/* The pct-th percentile in ms, -1 without samples. */
static long hist_pct(const ln_t *self, unsigned pct)
{
    if (!self->nsamples) return -1;
    uint64_t want = (self->nsamples * pct + 99) / 100, acc = 0;
    if (!want) want = 1;
    for (long i = 0; i < HIST_MS; i++)
        if ((acc += self->hist[i]) >= want) return i;
    return HIST_MS - 1;
}

/* ---- protobuf-c arena: no allocation per entry when decoding frames ---- */

static void *arena_alloc(void *data, size_t size)
{
    arena_t *a = data;
    size = (size + 15) & ~(size_t)15;
    if (size <= a->cap - a->used) {
        void *p = a->buf + a->used;
        a->used += size;
        return p;
    }
    chunk_t *c = malloc(sizeof *c + size);
    if (!c) return NULL;
    c->next = a->extra;
    a->extra = c;
    a->extra_bytes += size;
    return c->data;
}

static void arena_free(void *data, void *p)
{
    (void)data;
    (void)p;                      /* everything goes at arena_reset */
}

/* Frees what overflowed and grows the block so the next frame fits in it. */
static void arena_reset(arena_t *a)
{
    if (a->extra) {
        size_t want = (a->cap + a->extra_bytes) * 2;
        while (a->extra) {
            chunk_t *c = a->extra;
            a->extra = c->next;
            free(c);
        }
        a->extra_bytes = 0;
        uint8_t *b = malloc(want);
        if (b) {
            free(a->buf);
            a->buf = b;
            a->cap = want;
        }
    }
    a->used = 0;
}

/* ---- seen set ---- */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

static int seen_has(const seen_t *s, uint64_t a, uint64_t b)
{
    if (!s->cap) return 0;
    size_t m = s->cap - 1;
    for (size_t i = (size_t)mix(a * 0x9e3779b97f4a7c15ULL ^ mix(b)) & m;; i = (i + 1) & m) {
        if (!s->v[i].a) return 0;
        if (s->v[i].a == a && s->v[i].b == b) return 1;
    }
}

static void seen_put(seenkey_t *v, size_t cap, uint64_t a, uint64_t b)
{
    size_t m = cap - 1, i = (size_t)mix(a * 0x9e3779b97f4a7c15ULL ^ mix(b)) & m;
    while (v[i].a && !(v[i].a == a && v[i].b == b)) i = (i + 1) & m;
    v[i].a = a;
    v[i].b = b;
}

/* Adds (a, b), a != 0. Returns 0, or -1 when out of memory. */
static int seen_add(seen_t *s, uint64_t a, uint64_t b)
{
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4096;
        seenkey_t *v = calloc(cap, sizeof *v);
        if (!v) return -1;
        for (size_t i = 0; i < s->cap; i++)
            if (s->v[i].a) seen_put(v, cap, s->v[i].a, s->v[i].b);
        free(s->v);
        s->v = v;
        s->cap = cap;
    }
    if (seen_has(s, a, b)) return 0;
    seen_put(s->v, s->cap, a, b);
    s->n++;
    return 0;
}

/* Seen keys: (2 + sender index, seq) for every batch taken, (1, hub_seq) for
 * refused deliveries only. A valid delivery is always verified before it is
 * called a duplicate: an in-memory hub restarts its hub_seq at 1. */
#define KEY_HUB_SEQ 1u

/* ---- directory ---- */

static void dir_clear(ln_t *self)
{
    for (size_t i = 0; i < self->ndir; i++) tb_cert_destroy(&self->dir[i].cert);
    self->ndir = 0;
    self->dirhit = 0;
}

/* Adds or replaces a directory entry; entries that do not check are left out. */
static void dir_put(ln_t *self, const Tongban__DirectoryEntry *e)
{
    char err[TB_ERRLEN];
    tb_cert_t *c = NULL;
    if (!e->node_id || !tb_config_valid_id(e->node_id)) return;
    dirent_t *d = NULL;
    for (size_t i = 0; i < self->ndir; i++)
        if (strcmp(self->dir[i].id, e->node_id) == 0) d = &self->dir[i];
    if (d && e->revoked) d->revoked = 1;
    if (tb_cert_load_pem(e->certificate_pem.data, e->certificate_pem.len, &c, err, sizeof err) != TB_OK) {
        REPORT(self, "tb_lightnode %s: directory entry %s left out: %s\n", self->o->node, e->node_id, err);
        return;
    }
    if (strcmp(tb_cert_node_id(c), e->node_id) != 0) {
        REPORT(self, "tb_lightnode %s: directory entry %s left out: certificate names \"%s\"\n",
               self->o->node, e->node_id, tb_cert_node_id(c));
        tb_cert_destroy(&c);
        return;
    }
    if (self->ca && tb_cert_verify_issued_by(c, self->ca, err, sizeof err) != TB_OK) {
        REPORT(self, "tb_lightnode %s: directory entry %s left out: %s\n", self->o->node, e->node_id, err);
        tb_cert_destroy(&c);
        return;
    }
    if (!d) {
        if (self->ndir == self->dircap) {
            size_t cap = self->dircap ? self->dircap * 2 : 16;
            dirent_t *v = realloc(self->dir, cap * sizeof *v);
            if (!v) {
                tb_cert_destroy(&c);
                return;
            }
            self->dir = v;
            self->dircap = cap;
        }
        d = &self->dir[self->ndir++];
        snprintf(d->id, sizeof d->id, "%s", e->node_id);
    } else {
        tb_cert_destroy(&d->cert);
    }
    d->cert = c;
    d->revoked = e->revoked;
}

static const dirent_t *dir_by_key_id(ln_t *self, const char *key_id)
{
    if (self->dirhit < self->ndir && strcmp(tb_cert_key_id(self->dir[self->dirhit].cert), key_id) == 0)
        return &self->dir[self->dirhit];
    for (size_t i = 0; i < self->ndir; i++)
        if (strcmp(tb_cert_key_id(self->dir[i].cert), key_id) == 0) {
            self->dirhit = i;
            return &self->dir[i];
        }
    return NULL;
}

/* ---- sending ---- */

/* Sends one serialised frame without blocking. Returns 0; 1 when the socket
 * is full (try again on POLLOUT); -1 on another error. */
static int send_raw(ln_t *self, const void *buf, size_t len)
{
    if (zmq_send(self->sock, buf, len, ZMQ_DONTWAIT) >= 0) return 0;
    if (errno == EAGAIN || errno == EINTR) {
        self->blocked = 1;
        return 1;
    }
    return -1;
}

static void send_frame(ln_t *self, const Tongban__Frame *f)
{
    uint8_t *buf;
    size_t len;
    if (tb_frame_pack(f, &buf, &len) != TB_OK) return;
    send_raw(self, buf, len);     /* Hello / Heartbeat: a lost one is sent again by the timer */
    free(buf);
}

static void send_hello(ln_t *self, uint64_t now)
{
    Tongban__Hello h = TONGBAN__HELLO__INIT;
    h.node_id = (char *)self->o->node;
    h.protocol = TB_PROTOCOL_VERSION;
    h.software = "tb_lightnode/" TB_VERSION_STRING;
    Tongban__Frame f = TONGBAN__FRAME__INIT;
    f.kind_case = TONGBAN__FRAME__KIND_HELLO;
    f.hello = &h;
    send_frame(self, &f);
    self->last_hello_ms = now;
}

static void send_heartbeat(ln_t *self, uint64_t now)
{
    Tongban__Heartbeat hb = TONGBAN__HEARTBEAT__INIT;
    hb.time_ms = now;
    Tongban__Frame f = TONGBAN__FRAME__INIT;
    f.kind_case = TONGBAN__FRAME__KIND_HEARTBEAT;
    f.heartbeat = &hb;
    send_frame(self, &f);
    self->last_hb_ms = now;
}

/* Sends the queued DeliverAcks, in order, as far as the socket takes them. */
static void flush_dacks(ln_t *self)
{
    size_t i = 0;
    for (; i < self->ndacks; i++) {
        Tongban__DeliverAck da = TONGBAN__DELIVER_ACK__INIT;
        da.hub_seq = self->dacks[i];
        Tongban__Frame f = TONGBAN__FRAME__INIT;
        f.kind_case = TONGBAN__FRAME__KIND_DELIVER_ACK;
        f.deliver_ack = &da;
        uint8_t buf[32];          /* tag + len + tag + varint: at most 13 bytes */
        if (send_raw(self, buf, tongban__frame__pack(&f, buf)) != 0) break;
    }
    if (i == 0) return;   /* nothing sent; dacks may still be NULL (UBSan: memmove(NULL, ...)) */
    memmove(self->dacks, self->dacks + i, (self->ndacks - i) * sizeof *self->dacks);
    self->ndacks -= i;
}

static int queue_dack(ln_t *self, uint64_t hub_seq)
{
    if (self->ndacks == self->dackcap) {
        size_t cap = self->dackcap ? self->dackcap * 2 : 256;
        uint64_t *v = realloc(self->dacks, cap * sizeof *v);
        if (!v) return -1;
        self->dacks = v;
        self->dackcap = cap;
    }
    self->dacks[self->ndacks++] = hub_seq;
    return 0;
}

/* ---- publishing ---- */

#define PUT_LIT(p, lit) (memcpy((p), (lit), sizeof(lit) - 1), sizeof(lit) - 1)

static size_t put_u64(char *p, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do tmp[n++] = (char)('0' + v % 10); while ((v /= 10) != 0);
    for (size_t i = 0; i < n; i++) p[i] = tmp[n - 1 - i];
    return n;
}

static size_t body_cap(const opts_t *o)
{
    return (o->entry_bytes > 128 ? (size_t)o->entry_bytes : 128) + 1;
}

static slot_t *slot_of(ln_t *self, uint64_t seq)
{
    return &self->slots[(seq - self->seq0) % self->o->window];
}

static int pub_init(ln_t *self, char *err, size_t errlen)
{
    const opts_t *o = self->o;
    size_t m = (size_t)o->entries;
    self->ents = calloc(m, sizeof *self->ents);
    self->eptrs = calloc(m, sizeof *self->eptrs);
    self->ids = malloc(m * 16);
    self->body = malloc(body_cap(o));
    self->payload = malloc(m * (body_cap(o) + ENTRY_OVERHEAD));
    self->slots = calloc((size_t)o->window, sizeof *self->slots);
    if (!self->ents || !self->eptrs || !self->ids || !self->body || !self->payload || !self->slots) {
        snprintf(err, errlen, "out of memory for %zu entries of %" PRIu64 " bytes", m, o->entry_bytes);
        return -1;
    }
    for (size_t i = 0; i < m; i++) {
        tongban__entry__init(&self->ents[i]);
        self->ents[i].id.data = self->ids + 16 * i;
        self->ents[i].id.len = 16;
        self->ents[i].type = TONGBAN__ENTRY_TYPE__RECORD_UPSERT;
        self->eptrs[i] = &self->ents[i];
    }
    self->seq0 = o->first_seq ? o->first_seq : now_real_ms() << 8;
    self->seq_end = self->seq0 + o->batches;
    self->next_seq = self->oldest = self->seq0;
    self->hlc = now_real_ms() << 16;
    self->go = !o->go_file;
    if (o->send_log && !(self->sent_real = calloc((size_t)o->batches, sizeof *self->sent_real))) {
        snprintf(err, errlen, "out of memory for the send log of %" PRIu64 " batches", o->batches);
        return -1;
    }
    return 0;
}

/* The JSON body of entry i: {"t":..,"seq":..,"i":..,"pad":"x.."} padded to
 * --entry-bytes (longer when that is below the fixed part). */
static void make_body(ln_t *self, uint64_t t, uint64_t seq, uint64_t i)
{
    char *p = self->body;
    p += PUT_LIT(p, "{\"t\":");
    p += put_u64(p, t);
    p += PUT_LIT(p, ",\"seq\":");
    p += put_u64(p, seq);
    p += PUT_LIT(p, ",\"i\":");
    p += put_u64(p, i);
    p += PUT_LIT(p, ",\"pad\":\"");
    size_t used = (size_t)(p - self->body) + 2;
    if (self->o->entry_bytes > used) {
        memset(p, 'x', (size_t)self->o->entry_bytes - used);
        p += self->o->entry_bytes - used;
    }
    *p++ = '"';
    *p++ = '}';
    *p = '\0';
}

/* Builds and signs batch seq (bodies with "t":t) as a serialised
 * Frame{batch} in *frame (malloc'ed). Returns 0, or -1 with err. */
static int build_frame(ln_t *self, uint64_t seq, uint64_t t, uint8_t **frame, size_t *len, char *err,
                       size_t errlen)
{
    const opts_t *o = self->o;
    size_t m = (size_t)o->entries, off = 0;
    char key[TB_ID_MAX + 48];
    if (RAND_bytes(self->ids, (int)(m * 16)) != 1) {
        snprintf(err, errlen, "RAND_bytes failed");
        return -1;
    }
    Tongban__RecordUpsert u = TONGBAN__RECORD_UPSERT__INIT;
    u.catalog = "bench";
    u.key = key;
    u.version = 1;
    u.body = self->body;
    u.origin = (char *)o->node;
    for (size_t i = 0; i < m; i++) {
        char *k = key;
        size_t nl = strlen(o->node);
        memcpy(k, o->node, nl);
        k += nl;
        *k++ = '-';
        k += put_u64(k, seq);
        *k++ = '-';
        k += put_u64(k, i);
        *k = '\0';
        make_body(self, t, seq, i);
        u.hlc = ++self->hlc;
        size_t plen = tongban__record_upsert__pack(&u, self->payload + off);
        self->ents[i].payload.data = self->payload + off;
        self->ents[i].payload.len = plen;
        off += plen;
    }
    Tongban__Batch b = TONGBAN__BATCH__INIT;
    b.sender = (char *)o->node;
    b.seq = seq;
    b.prev_seq = seq > self->seq0 ? seq - 1 : 0;   /* the hub keeps our batches in order */
    b.dest = (char *)o->dest;
    b.hlc = self->hlc;
    b.n_entries = m;
    b.entries = self->eptrs;
    uint8_t *sb = NULL;
    size_t sblen = 0;
    if (tb_batch_sign(&b, self->signer, self->cert, &sb, &sblen, err, errlen) != TB_OK) return -1;
    tb_err_t rc = tb_frame_wrap(TONGBAN__FRAME__KIND_BATCH, sb, sblen, frame, len);
    free(sb);
    if (rc != TB_OK) {
        snprintf(err, errlen, "out of memory for a batch of %zu bytes", sblen);
        return -1;
    }
    return 0;
}

/* --prebuild: builds and signs every batch now. Returns 0, or -1 with err. */
static int prebuild(ln_t *self, char *err, size_t errlen)
{
    size_t n = (size_t)self->o->batches, bytes = 0;
    uint64_t t0 = tb_now_ms();
    self->pre_frame = calloc(n, sizeof *self->pre_frame);
    self->pre_len = calloc(n, sizeof *self->pre_len);
    if (!self->pre_frame || !self->pre_len) {
        snprintf(err, errlen, "out of memory for %zu prebuilt batches", n);
        return -1;
    }
    for (size_t k = 0; k < n; k++) {
        if (build_frame(self, self->seq0 + k, 0, &self->pre_frame[k], &self->pre_len[k], err, errlen) != 0)
            return -1;
        bytes += self->pre_len[k];
    }
    self->prebuild_cpu_s = cpu_now_s();
    fprintf(stderr, "tb_lightnode %s: prebuilt batches=%zu bytes=%zu ms=%" PRIu64 "\n", self->o->node, n, bytes,
            tb_now_ms() - t0);
    return 0;
}

/* Puts batch seq (prebuilt, or built and signed now) into sl. Returns 0, or -1 with err. */
static int build_batch(ln_t *self, slot_t *sl, uint64_t seq, char *err, size_t errlen)
{
    if (self->pre_frame) {
        size_t k = (size_t)(seq - self->seq0);
        sl->frame = self->pre_frame[k];
        sl->len = self->pre_len[k];
        self->pre_frame[k] = NULL;     /* the slot owns it now */
    } else if (build_frame(self, seq, now_real_ms(), &sl->frame, &sl->len, err, errlen) != 0) {
        return -1;
    }
    sl->busy = 1;
    sl->sent_once = 0;
    sl->seq = seq;
    sl->entries = (size_t)self->o->entries;
    sl->first_ms = sl->sent_ms = 0;
    return 0;
}

static int send_slot(ln_t *self, slot_t *sl, uint64_t now)
{
    int rc = send_raw(self, sl->frame, sl->len);
    if (rc != 0) return rc;
    if (sl->sent_once) {
        self->st.resends++;
    } else {
        sl->sent_once = 1;
        sl->first_ms = now;
        if (self->sent_real) self->sent_real[sl->seq - self->seq0] = now_real_ms();
        self->st.batches_sent++;
        self->st.entries_sent += sl->entries;
        note_first(self, now);
    }
    sl->sent_ms = now;
    return 0;
}

/* Sends, in seq order, the batches never sent or whose ack is overdue. */
static void pub_pump(ln_t *self, uint64_t now)
{
    for (uint64_t s = self->oldest; s < self->next_seq; s++) {
        slot_t *sl = slot_of(self, s);
        if (!sl->busy || (sl->sent_ms && now - sl->sent_ms < self->o->resend_ms)) continue;
        if (send_slot(self, sl, now) != 0) return;
    }
}

/* Builds (and sends) new batches while the window has room. Returns 0 or -1. */
static int pub_fill(ln_t *self)
{
    char err[TB_ERRLEN];
    while (self->next_seq < self->seq_end && self->next_seq - self->oldest < self->o->window) {
        slot_t *sl = slot_of(self, self->next_seq);
        if (build_batch(self, sl, self->next_seq, err, sizeof err) != 0) {
            fprintf(stderr, "tb_lightnode %s: batch %" PRIu64 ": %s\n", self->o->node, self->next_seq, err);
            return -1;
        }
        self->next_seq++;
        if (!self->blocked) send_slot(self, sl, tb_now_ms());
    }
    return 0;
}

static void pub_finish(ln_t *self, slot_t *sl)
{
    free(sl->frame);
    sl->frame = NULL;
    sl->busy = 0;
    while (self->oldest < self->next_seq && !slot_of(self, self->oldest)->busy) self->oldest++;
}

static slot_t *pub_find(ln_t *self, uint64_t seq)
{
    if (!self->slots || seq < self->oldest || seq >= self->next_seq) return NULL;
    slot_t *sl = slot_of(self, seq);
    return sl->busy && sl->seq == seq ? sl : NULL;
}

static void on_ack(ln_t *self, uint64_t seq, uint64_t now)
{
    slot_t *sl = pub_find(self, seq);
    if (!sl) return;              /* a second ack after a resend */
    self->st.acks++;
    self->st.entries_acked += sl->entries;
    if (!self->o->sub) hist_add(self, now - sl->first_ms);
    note_last(self, now);
    pub_finish(self, sl);
}

static void on_nack(ln_t *self, const Tongban__Nack *k, uint64_t now)
{
    self->st.nacks++;
    REPORT(self, "tb_lightnode %s: nack seq=%" PRIu64 " reason=%s detail=\"%s\"\n", self->o->node, k->seq,
           tb_nack_reason_name(k->reason), k->detail ? k->detail : "");
    if (k->reason == TONGBAN__NACK_REASON__NACK_OUT_OF_ORDER) {
        self->st.nacks--;         /* not a refusal: an earlier batch was lost on the way */
        /* at most once per resend_ms, like the node: a predecessor nacked
         * "storage" waits for its retry, and the window's other Nacks follow */
        if (self->ooo_resend_ms && now - self->ooo_resend_ms < self->o->resend_ms) return;
        self->ooo_resend_ms = now;
        for (uint64_t s = self->oldest; s < self->next_seq; s++) {
            slot_t *sl = slot_of(self, s);
            if (sl->busy) sl->sent_ms = 0;   /* resent in seq order by pub_pump */
        }
        return;
    }
    slot_t *sl = pub_find(self, k->seq);
    if (!sl) return;
    if (k->reason == TONGBAN__NACK_REASON__NACK_OVERLOADED || k->reason == TONGBAN__NACK_REASON__NACK_STORAGE)
        sl->sent_ms = now;        /* transient: resent after resend_ms */
    else
        pub_finish(self, sl);
}

/* ---- subscribing ---- */

/* Returns the "t" (CLOCK_REALTIME ms) at the start of a RecordUpsert body
 * written by a publisher of this tool, or 0. Scans the wire bytes in place. */
static uint64_t entry_time(const uint8_t *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint64_t tag = 0, v = 0;
        for (unsigned sh = 0; i < len && sh < 64; sh += 7) {
            tag |= (uint64_t)(p[i] & 0x7f) << sh;
            if (!(p[i++] & 0x80)) break;
        }
        switch (tag & 7) {
        case 0:
            while (i < len && (p[i++] & 0x80)) {}
            break;
        case 1: i += 8; break;
        case 5: i += 4; break;
        case 2:
            for (unsigned sh = 0; i < len && sh < 64; sh += 7) {
                v |= (uint64_t)(p[i] & 0x7f) << sh;
                if (!(p[i++] & 0x80)) break;
            }
            if (v > len - i) return 0;
            if ((tag >> 3) == 4) {  /* RecordUpsert.body */
                const char *s = (const char *)p + i;
                uint64_t t = 0;
                if (v < 6 || memcmp(s, "{\"t\":", 5) != 0) return 0;
                for (size_t j = 5; j < v && j < 25 && s[j] >= '0' && s[j] <= '9'; j++)
                    t = t * 10 + (uint64_t)(s[j] - '0');
                return t;
            }
            i += (size_t)v;
            break;
        default: return 0;
        }
    }
    return 0;
}

/* Reads a varint at p[*i] (< len). Returns 0, or -1. */
static int rd_varint(const uint8_t *p, size_t len, size_t *i, uint64_t *v)
{
    *v = 0;
    for (unsigned sh = 0; *i < len && sh < 64; sh += 7) {
        uint8_t c = p[(*i)++];
        *v |= (uint64_t)(c & 0x7f) << sh;
        if (!(c & 0x80)) return 0;
    }
    return -1;
}

/* Skips a value of wire type wt at p[*i]. Returns 0, or -1. */
static int rd_skip(const uint8_t *p, size_t len, size_t *i, unsigned wt)
{
    uint64_t v;
    switch (wt) {
    case 0: return rd_varint(p, len, i, &v);
    case 1: if (len - *i < 8) return -1; *i += 8; return 0;
    case 5: if (len - *i < 4) return -1; *i += 4; return 0;
    case 2:
        if (rd_varint(p, len, i, &v) != 0 || v > len - *i) return -1;
        *i += (size_t)v;
        return 0;
    default: return -1;
    }
}

/* The latency samples of a verified Batch read in place (tb_batch_view
 * took it, so it is well-formed): arrival real minus the "t" of each
 * RecordUpsert entry's body, as the decoded path does. */
static void body_times(ln_t *self, const uint8_t *p, size_t len, uint64_t real)
{
    size_t i = 0;
    uint64_t tag, n;
    while (i < len && rd_varint(p, len, &i, &tag) == 0) {
        if (tag != ((5u << 3) | 2u)) {
            if (rd_skip(p, len, &i, (unsigned)(tag & 7)) != 0) return;
            continue;
        }
        if (rd_varint(p, len, &i, &n) != 0 || n > len - i) return;
        const uint8_t *e = p + i, *payload = NULL;
        size_t elen = (size_t)n, k = 0, plen = 0;
        uint64_t type = 0, etag, v;
        i += elen;
        while (k < elen && rd_varint(e, elen, &k, &etag) == 0) {
            if (etag == ((2u << 3) | 0u)) {
                if (rd_varint(e, elen, &k, &type) != 0) break;
            } else if (etag == ((3u << 3) | 2u)) {
                if (rd_varint(e, elen, &k, &v) != 0 || v > elen - k) break;
                payload = e + k;
                plen = (size_t)v;
                k += plen;
            } else if (rd_skip(e, elen, &k, (unsigned)(etag & 7)) != 0) {
                break;
            }
        }
        if (type != TONGBAN__ENTRY_TYPE__RECORD_UPSERT || !payload) continue;
        uint64_t t = entry_time(payload, plen);
        if (t) hist_add(self, real > t ? real - t : 0);
    }
}

static long sender_index(ln_t *self, const char *id)
{
    for (size_t i = 0; i < self->nsenders; i++)
        if (strcmp(self->senders[i].id, id) == 0) return (long)i;
    if (self->nsenders == self->sendercap) {
        size_t cap = self->sendercap ? self->sendercap * 2 : 16;
        sender_t *v = realloc(self->senders, cap * sizeof *v);
        if (!v) return -1;
        self->senders = v;
        self->sendercap = cap;
    }
    sender_t *s = &self->senders[self->nsenders];
    memset(s, 0, sizeof *s);
    snprintf(s->id, sizeof s->id, "%.*s", (int)(sizeof s->id - 1), id);
    return (long)self->nsenders++;
}

/* Verifies, checks and acks one delivery. Returns 0, or -1 when out of memory. */
static int on_deliver(ln_t *self, const Tongban__Deliver *dv, uint64_t now)
{
    char err[TB_ERRLEN];
    const char *why = NULL;
    const Tongban__SignedBatch *sb = dv->batch;
    Tongban__Batch *b = NULL;
    tb_batch_view_t bv;           /* the verified batch when read in place (b == NULL) */
    const char *bsender = NULL, *bdest = NULL;
    int arena_batch = 0, misaddressed = 0, rc = 0;
    if (!sb) {
        why = "deliver without a batch";
    } else if (self->o->no_verify) {
        b = tongban__batch__unpack(&self->alloc, sb->body.len, sb->body.data);
        arena_batch = 1;
        if (!b || !b->sender || !tb_config_valid_id(b->sender)) why = "undecodable batch";
    } else {
        const dirent_t *d = sb->signer_key_id ? dir_by_key_id(self, sb->signer_key_id) : NULL;
        if (!d) why = "signer not in the directory";
        else if (d->revoked) why = "signer revoked";
        else if (tb_batch_verify_view(sb, d->cert, &bv, &b, err, sizeof err) != TB_OK) why = err;
    }
    if (!why) {
        bsender = b ? b->sender : bv.sender;
        bdest = b ? b->dest : bv.dest;
    }
    if (!why && (!bdest || (strcmp(bdest, self->o->node) != 0 && strncmp(bdest, "topic:", 6) != 0))) {
        snprintf(err, sizeof err, "addressed to \"%.64s\"", bdest ? bdest : "");
        why = err;
        misaddressed = 1;
    }
    if (why) {                    /* not acked; counted once however often the hub redelivers it */
        if (!seen_has(&self->seen, KEY_HUB_SEQ, dv->hub_seq)) {
            if (misaddressed) self->st.misaddressed++;
            else self->st.bad_signatures++;
            REPORT(self, "tb_lightnode %s: delivery hub_seq=%" PRIu64 " refused: %s\n", self->o->node,
                   dv->hub_seq, why);
            rc = seen_add(&self->seen, KEY_HUB_SEQ, dv->hub_seq);
        }
        goto done;
    }
    const uint64_t bseq = b ? b->seq : bv.seq;
    const size_t bentries = b ? b->n_entries : bv.n_entries;
    long si = sender_index(self, bsender);
    if (si < 0) { rc = -1; goto done; }
    sender_t *s = &self->senders[si];
    uint64_t skey = 2u + (uint64_t)si;
    if (seen_has(&self->seen, skey, bseq)) {
        self->st.duplicates++;
    } else {
        if (s->any && bseq <= s->last_seq) {
            self->st.out_of_order++;
            REPORT(self, "tb_lightnode %s: out of order from %s: seq %" PRIu64 " (hub_seq %" PRIu64
                   ") after %" PRIu64 "\n", self->o->node, bsender, bseq, dv->hub_seq, s->last_seq);
        } else {
            s->any = 1;
            s->last_seq = bseq;
        }
        if (seen_add(&self->seen, skey, bseq) != 0) { rc = -1; goto done; }
        self->st.batches_received++;
        self->st.entries_received += bentries;
        if (self->o->arrival_log) {
            if (self->narrivals == self->arrivalcap) {
                size_t cap = self->arrivalcap ? self->arrivalcap * 2 : 1024;
                arrival_t *v = realloc(self->arrivals, cap * sizeof *v);
                if (!v) { rc = -1; goto done; }
                self->arrivals = v;
                self->arrivalcap = cap;
            }
            arrival_t *a = &self->arrivals[self->narrivals++];
            a->sender = (size_t)si;
            a->seq = bseq;
            a->real_ms = now_real_ms();
            a->entries = bentries;
        }
        uint64_t real = now_real_ms();
        if (b) {
            for (size_t i = 0; i < bentries; i++) {
                const Tongban__Entry *e = b->entries[i];
                if (e->type != TONGBAN__ENTRY_TYPE__RECORD_UPSERT) continue;
                uint64_t t = entry_time(e->payload.data, e->payload.len);
                if (t) hist_add(self, real > t ? real - t : 0);
            }
        } else {
            body_times(self, sb->body.data, sb->body.len, real);
        }
        self->last_delivery_ms = now;
        note_last(self, now);
    }
    rc = queue_dack(self, dv->hub_seq);
done:
    if (b) tongban__batch__free_unpacked(b, arena_batch ? &self->alloc : NULL);
    return rc;
}

/* ---- receiving ---- */

static void on_welcome(ln_t *self, const Tongban__Welcome *w, uint64_t now)
{
    dir_clear(self);
    if (w->directory)
        for (size_t i = 0; i < w->directory->n_nodes; i++) dir_put(self, w->directory->nodes[i]);
    if (w->protocol != TB_PROTOCOL_VERSION)
        REPORT(self, "tb_lightnode %s: hub speaks protocol %u, this tool %d\n", self->o->node, w->protocol,
               TB_PROTOCOL_VERSION);
    if (self->welcomed) return;   /* the answer to a repeated Hello */
    size_t unacked = 0;
    for (uint64_t s = self->oldest; s < self->next_seq; s++) {
        slot_t *sl = slot_of(self, s);
        if (sl->busy) {
            sl->sent_ms = 0;      /* everything unacked goes again */
            unacked++;
        }
    }
    fprintf(stderr, "tb_lightnode %s: %s hub=%s endpoint=%s directory=%zu unacked=%zu at_ms=%" PRIu64 "\n",
            self->o->node, self->ever_welcomed ? "welcomed again" : "welcomed", w->hub_id ? w->hub_id : "",
            self->o->endpoints[self->ep], self->ndir, unacked, now_real_ms());
    if (!self->ever_welcomed) self->welcome_ms = now;
    self->welcomed = self->ever_welcomed = 1;
}

/* Handles one frame from the hub. Returns 0, or -1 on a fatal error. */
static int on_message(ln_t *self, const uint8_t *data, size_t len, uint64_t now)
{
    int rc = 0;
    self->last_heard_ms = now;
    if (self->o->sub && !self->o->no_verify) {
        /* a Deliver read in place: no copy of the batch (anything unusual is decoded below) */
        uint64_t hub_seq;
        const uint8_t *sbp;
        size_t sblen;
        char key_id[128];
        Tongban__SignedBatch sb;
        if (tb_frame_parse_deliver(data, len, &hub_seq, &sbp, &sblen) == TB_OK &&
            tb_signed_batch_read(sbp, sblen, &sb, key_id, sizeof key_id) == TB_OK) {
            Tongban__Deliver dv = TONGBAN__DELIVER__INIT;
            dv.hub_seq = hub_seq;
            dv.batch = &sb;
            rc = on_deliver(self, &dv, now);
            goto done;
        }
    }
    Tongban__Frame *f = tongban__frame__unpack(&self->alloc, len, data);
    if (!f) {
        REPORT(self, "tb_lightnode %s: undecodable frame of %zu bytes\n", self->o->node, len);
        goto done;
    }
    switch (f->kind_case) {
    case TONGBAN__FRAME__KIND_WELCOME: on_welcome(self, f->welcome, now); break;
    case TONGBAN__FRAME__KIND_ACK: on_ack(self, f->ack->seq, now); break;
    case TONGBAN__FRAME__KIND_NACK: on_nack(self, f->nack, now); break;
    case TONGBAN__FRAME__KIND_DELIVER:
        if (self->o->sub) rc = on_deliver(self, f->deliver, now);
        break;
    case TONGBAN__FRAME__KIND_DIRECTORY:
        for (size_t i = 0; i < f->directory->n_nodes; i++) dir_put(self, f->directory->nodes[i]);
        break;
    case TONGBAN__FRAME__KIND_HEARTBEAT: break;
    default:
        REPORT(self, "tb_lightnode %s: unexpected frame kind %d\n", self->o->node, (int)f->kind_case);
        break;
    }
    tongban__frame__free_unpacked(f, &self->alloc);
done:
    arena_reset(&self->arena);
    return rc;
}

static int drain(ln_t *self)
{
    for (int i = 0; i < RECV_BURST; i++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, self->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        }
        int rc = on_message(self, zmq_msg_data(&m), zmq_msg_size(&m), tb_now_ms());
        zmq_msg_close(&m);
        if (rc != 0) return -1;
        flush_dacks(self);
    }
    return 0;
}

/* ---- the loop ---- */

static int pub_done(const ln_t *self)
{
    return !self->o->pub || (self->next_seq == self->seq_end && self->oldest == self->seq_end);
}

static int sub_expects(const ln_t *self)
{
    return self->o->expect_batches || self->o->expect_entries;
}

static int sub_reached(const ln_t *self)
{
    const opts_t *o = self->o;
    return o->expect_batches ? self->st.batches_received >= o->expect_batches
                             : self->st.entries_received >= o->expect_entries;
}

static int finished(const ln_t *self, uint64_t now)
{
    if (!pub_done(self)) return 0;
    if (!self->o->sub) return 1;
    if (sub_expects(self) && sub_reached(self)) return 1;
    if (self->o->idle_exit_ms && self->ever_welcomed) {
        uint64_t since = self->last_delivery_ms ? self->last_delivery_ms : self->welcome_ms;
        if (now - since >= self->o->idle_exit_ms) return 1;
    }
    return 0;
}

static int ln_connect(ln_t *self, char *err, size_t errlen);

/* Moves to the next endpoint: a fresh socket (nothing queued for the old
 * hub survives), Hello at once; unacked batches go again after the Welcome. */
static void failover(ln_t *self, uint64_t now, const char *why)
{
    char err[256];
    size_t from = self->ep;
    self->ep = (self->ep + 1) % self->o->nendpoints;
    fprintf(stderr, "tb_lightnode %s: failover from=%s to=%s reason=%s\n", self->o->node,
            self->o->endpoints[from], self->o->endpoints[self->ep], why);
    self->failovers++;
    zmq_close(self->sock);
    self->sock = NULL;
    self->ndacks = 0;             /* for the old hub; the new one redelivers */
    if (ln_connect(self, err, sizeof err) != 0) {
        fprintf(stderr, "tb_lightnode %s: %s\n", self->o->node, err);
        return;
    }
    self->ep_since_ms = now;
    self->welcomed = 0;
    self->last_heard_ms = now;
    send_hello(self, now);
}

static void on_timer(ln_t *self, uint64_t now)
{
    if (self->o->nendpoints > 1) {
        if (!self->welcomed && now - self->ep_since_ms >= self->o->failover_ms) {
            failover(self, now, "no_welcome");
            return;
        }
        if (self->welcomed && now - self->last_heard_ms > self->o->failover_ms) {
            failover(self, now, "hub_silent");
            return;
        }
    }
    if (!self->welcomed) {
        if (now - self->last_hello_ms >= HELLO_EVERY_MS) send_hello(self, now);
    } else if (now - self->last_heard_ms > HUB_SILENT_MS) {
        fprintf(stderr, "tb_lightnode %s: hub silent for %" PRIu64 " ms, sending Hello again\n",
                self->o->node, now - self->last_heard_ms);
        self->welcomed = 0;
        send_hello(self, now);
    } else if (now - self->last_hb_ms >= HEARTBEAT_MS) {
        send_heartbeat(self, now);
    }
}

/* Runs until done, timeout or *stop. Returns the exit code. */
static int ln_run(ln_t *self, volatile sig_atomic_t *stop)
{
    const opts_t *o = self->o;
    uint64_t now = self->start_ms = tb_now_ms();
    while (!*stop && !finished(self, now) && now - self->start_ms < o->timeout_ms) {
        self->blocked = 0;
        on_timer(self, now);
        if (!self->sock) return RC_INTERNAL;
        flush_dacks(self);
        if (o->pub && !self->go && access(o->go_file, F_OK) == 0) self->go = 1;
        if (o->pub && self->welcomed && !self->blocked && self->go) {
            pub_pump(self, now);
            if (pub_fill(self) != 0) return RC_INTERNAL;
        }
        zmq_pollitem_t it = { self->sock, 0, (short)(ZMQ_POLLIN | (self->blocked ? ZMQ_POLLOUT : 0)), 0 };
        if (zmq_poll(&it, 1, self->go ? 50 : 2) < 0 && errno != EINTR) {
            fprintf(stderr, "tb_lightnode %s: zmq_poll: %s\n", o->node, zmq_strerror(errno));
            return RC_INTERNAL;
        }
        if ((it.revents & ZMQ_POLLIN) && drain(self) != 0) {
            fprintf(stderr, "tb_lightnode %s: receive failed: %s\n", o->node, zmq_strerror(errno));
            return RC_INTERNAL;
        }
        now = tb_now_ms();
    }
    /* The last DeliverAcks must reach the hub, or it never acks their senders. */
    uint64_t end = tb_now_ms() + 1000;
    while (self->ndacks && tb_now_ms() < end) {
        zmq_pollitem_t it = { self->sock, 0, ZMQ_POLLOUT, 0 };
        zmq_poll(&it, 1, 50);
        flush_dacks(self);
    }
    if (self->st.nacks || self->st.bad_signatures || self->st.out_of_order || self->st.misaddressed)
        return RC_PROTO;
    if (!self->ever_welcomed || !pub_done(self) || (o->sub && sub_expects(self) && !sub_reached(self)))
        return RC_TIMEOUT;
    return RC_OK;
}

static void fmt_opt(char *buf, size_t len, int have, long long v)
{
    if (have) snprintf(buf, len, "%lld", v);
    else snprintf(buf, len, "null");
}

static void ln_report(const ln_t *self, int rc)
{
    const opts_t *o = self->o;
    const stats_t *st = &self->st;
    double secs = st->have_last ? (double)(st->last_mono - st->first_mono) / 1000.0 : 0.0;
    uint64_t counted = o->sub ? st->entries_received : st->entries_acked;
    double eps = secs > 0 ? (double)counted / secs : 0.0;
    long p50 = hist_pct(self, 50), p99 = hist_pct(self, 99);
    char first[24], last[24], s50[24], s99[24];
    fmt_opt(first, sizeof first, st->have_first, (long long)st->first_real);
    fmt_opt(last, sizeof last, st->have_last, (long long)st->last_real);
    fmt_opt(s50, sizeof s50, p50 >= 0, p50);
    fmt_opt(s99, sizeof s99, p99 >= 0, p99);
    if (o->json)
        printf("{\"node\":\"%s\",\"mode\":\"%s\",\"batches_sent\":%" PRIu64 ",\"entries_sent\":%" PRIu64
               ",\"acks\":%" PRIu64 ",\"nacks\":%" PRIu64 ",\"resends\":%" PRIu64
               ",\"batches_received\":%" PRIu64 ",\"entries_received\":%" PRIu64 ",\"duplicates\":%" PRIu64
               ",\"out_of_order\":%" PRIu64 ",\"bad_signatures\":%" PRIu64
               ",\"seconds\":%.3f,\"entries_per_s\":%.0f,\"first_ms\":%s,\"last_ms\":%s,\"p50_ms\":%s"
               ",\"p99_ms\":%s,\"misaddressed\":%" PRIu64 ",\"failovers\":%" PRIu64
               ",\"cpu_s\":%.3f,\"prebuild_cpu_s\":%.3f,\"exit\":%d}\n",
               o->node, o->mode, st->batches_sent, st->entries_sent, st->acks, st->nacks, st->resends,
               st->batches_received, st->entries_received, st->duplicates, st->out_of_order,
               st->bad_signatures, secs, eps, first, last, s50, s99, st->misaddressed, self->failovers,
               cpu_now_s(), self->prebuild_cpu_s, rc);
    else
        printf("tb_lightnode node=%s mode=%s batches_sent=%" PRIu64 " entries_sent=%" PRIu64 " acks=%" PRIu64
               " nacks=%" PRIu64 " resends=%" PRIu64 " batches_received=%" PRIu64 " entries_received=%" PRIu64
               " duplicates=%" PRIu64 " out_of_order=%" PRIu64 " bad_signatures=%" PRIu64
               " misaddressed=%" PRIu64 " seconds=%.3f entries_per_s=%.0f p50_ms=%s p99_ms=%s exit=%d\n",
               o->node, o->mode, st->batches_sent, st->entries_sent, st->acks, st->nacks, st->resends,
               st->batches_received, st->entries_received, st->duplicates, st->out_of_order,
               st->bad_signatures, st->misaddressed, secs, eps, s50, s99, rc);
    fflush(stdout);
}

/* Writes --send-log / --arrival-log. Returns 0, or -1 (printed on stderr). */
static int write_logs(const ln_t *self)
{
    const opts_t *o = self->o;
    const char *path = NULL;
    FILE *f = NULL;
    int rc = 0;
    if (o->send_log && self->sent_real) {
        path = o->send_log;
        if (!(f = fopen(path, "w"))) goto fail;
        for (uint64_t k = 0; k < o->batches; k++)
            if (self->sent_real[k]) fprintf(f, "%" PRIu64 " %" PRIu64 "\n", self->seq0 + k, self->sent_real[k]);
        if (fclose(f) != 0) { f = NULL; goto fail; }
        f = NULL;
    }
    if (o->arrival_log) {
        path = o->arrival_log;
        if (!(f = fopen(path, "w"))) goto fail;
        for (size_t i = 0; i < self->narrivals; i++) {
            const arrival_t *a = &self->arrivals[i];
            fprintf(f, "%s %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", self->senders[a->sender].id, a->seq, a->real_ms,
                    a->entries);
        }
        if (fclose(f) != 0) { f = NULL; goto fail; }
        f = NULL;
    }
    return rc;
fail:
    fprintf(stderr, "tb_lightnode %s: cannot write %s: %s\n", o->node, path, strerror(errno));
    if (f) fclose(f);
    return -1;
}

static void ln_destroy(ln_t **selfp)
{
    ln_t *self = selfp ? *selfp : NULL;
    if (!self) return;
    if (self->sock) {
        int linger = self->ever_welcomed ? LINGER_MS : 0;
        zmq_setsockopt(self->sock, ZMQ_LINGER, &linger, sizeof linger);
        zmq_close(self->sock);
    }
    if (self->ctx) zmq_ctx_term(self->ctx);
    dir_clear(self);
    free(self->dir);
    if (self->slots)
        for (size_t i = 0; i < self->o->window; i++) free(self->slots[i].frame);
    if (self->pre_frame)
        for (size_t k = 0; k < self->o->batches; k++) free(self->pre_frame[k]);
    free(self->pre_frame);
    free(self->pre_len);
    free(self->sent_real);
    free(self->arrivals);
    free(self->slots);
    free(self->ents);
    free(self->eptrs);
    free(self->ids);
    free(self->payload);
    free(self->body);
    free(self->dacks);
    free(self->seen.v);
    free(self->senders);
    arena_reset(&self->arena);
    free(self->arena.buf);
    free(self->hist);
    tb_signer_destroy(&self->signer);
    tb_cert_destroy(&self->cert);
    tb_cert_destroy(&self->ca);
    memset(self->secret, 0, sizeof self->secret);
    free(self);
    *selfp = NULL;
}

/* A DEALER socket connected to the current endpoint. Returns 0, or -1 with err. */
static int ln_connect(ln_t *self, char *err, size_t errlen)
{
    const opts_t *o = self->o;
    const char *ep = o->endpoints[self->ep];
    self->sock = zmq_socket(self->ctx, ZMQ_DEALER);
    if (!self->sock) {
        snprintf(err, errlen, "zeromq setup failed: %s", zmq_strerror(errno));
        return -1;
    }
    int zero = 0, hb = HEARTBEAT_MS, hbto = HUB_SILENT_MS, ivl = 100, ivlmax = o->nendpoints > 1 ? 500 : 2000;
    int64_t maxmsg = 1 << 30;
    zmq_setsockopt(self->sock, ZMQ_CURVE_SERVERKEY, o->hub_public, 40);
    zmq_setsockopt(self->sock, ZMQ_CURVE_SECRETKEY, self->secret, 40);
    zmq_setsockopt(self->sock, ZMQ_CURVE_PUBLICKEY, self->public, 40);
    zmq_setsockopt(self->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(self->sock, ZMQ_HEARTBEAT_IVL, &hb, sizeof hb);
    zmq_setsockopt(self->sock, ZMQ_HEARTBEAT_TIMEOUT, &hbto, sizeof hbto);
    zmq_setsockopt(self->sock, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt(self->sock, ZMQ_RECONNECT_IVL_MAX, &ivlmax, sizeof ivlmax);
    zmq_setsockopt(self->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (zmq_connect(self->sock, ep) != 0) {
        snprintf(err, errlen, "cannot connect to %s: %s", ep, zmq_strerror(errno));
        zmq_close(self->sock);
        self->sock = NULL;
        return -1;
    }
    return 0;
}

/* Loads keys and certificates and connects. Returns RC_OK, or RC_USAGE /
 * RC_INTERNAL with err filled. */
static int ln_new(const opts_t *o, ln_t **out, char *err, size_t errlen)
{
    char path[4096], secret[41], public[41], e2[256];
    int rc = RC_USAGE;
    ln_t *self = calloc(1, sizeof *self);
    if (!self) return RC_INTERNAL;
    self->o = o;
    snprintf(path, sizeof path, "%s/curve.key", o->curve_dir);
    if (tb_pki_read_z85(path, 1, secret, err, errlen) != TB_OK) goto fail;
    snprintf(path, sizeof path, "%s/curve.pub", o->curve_dir);
    if (tb_pki_read_z85(path, 0, public, err, errlen) != TB_OK) goto fail;
    if (o->ca && tb_cert_load_file(o->ca, &self->ca, err, errlen) != TB_OK) goto fail;
    if (o->pub) {
        if (tb_signer_load(o->key, &self->signer, err, errlen) != TB_OK ||
            tb_cert_load_file(o->cert, &self->cert, err, errlen) != TB_OK)
            goto fail;
        if (tb_cert_matches_signer(self->cert, self->signer, e2, sizeof e2) != TB_OK) {
            snprintf(err, errlen, "%s does not belong to the key %s: %s", o->cert, o->key, e2);
            goto fail;
        }
        if (strcmp(tb_cert_node_id(self->cert), o->node) != 0) {
            snprintf(err, errlen, "%s is for node \"%s\", not \"%s\"", o->cert, tb_cert_node_id(self->cert),
                     o->node);
            goto fail;
        }
        if (self->ca && tb_cert_verify_issued_by(self->cert, self->ca, e2, sizeof e2) != TB_OK) {
            snprintf(err, errlen, "%s is not issued by %s: %s", o->cert, o->ca, e2);
            goto fail;
        }
    }
    rc = RC_INTERNAL;
    self->hist = calloc(HIST_MS, sizeof *self->hist);
    if (!self->hist) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    self->alloc.alloc = arena_alloc;
    self->alloc.free = arena_free;
    self->alloc.allocator_data = &self->arena;
    if (o->pub && pub_init(self, err, errlen) != 0) goto fail;
    if (o->pub && o->prebuild && prebuild(self, err, errlen) != 0) goto fail;

    self->ctx = zmq_ctx_new();
    if (!self->ctx) {
        snprintf(err, errlen, "zeromq setup failed: %s", zmq_strerror(errno));
        goto fail;
    }
    memcpy(self->secret, secret, sizeof secret);
    memcpy(self->public, public, sizeof public);
    memset(secret, 0, sizeof secret);
    if (ln_connect(self, err, errlen) != 0) {
        rc = RC_USAGE;
        goto fail;
    }
    self->ep_since_ms = tb_now_ms();
    *out = self;
    return RC_OK;
fail:
    memset(secret, 0, sizeof secret);
    ln_destroy(&self);
    return rc;
}

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

int main(int argc, char **argv)
{
    opts_t o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) return rc;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    char err[TB_ERRLEN] = "";
    ln_t *self = NULL;
    rc = ln_new(&o, &self, err, sizeof err);
    if (rc != RC_OK) {
        fprintf(stderr, "tb_lightnode: %s\n", err[0] ? err : "setup failed");
        return rc;
    }
    rc = ln_run(self, &stop_flag);
    ln_report(self, rc);
    if (write_logs(self) != 0 && rc == RC_OK) rc = RC_INTERNAL;
    ln_destroy(&self);
    return rc;
}
