/* tb_hostile.c -- a hostile peer for tests/security: each mode attacks a
 * running hub one way and checks that the hub refuses it the expected way
 * (and still serves the attacker's next valid batch when it may).
 *
 *   tb_hostile MODE --endpoint tcp://H:P --hub-public Z85 [--timeout-ms 5000]
 *                   [--curve-dir DIR --node ID --key K --cert C --dest D] [options]
 *   --curve-dir/--node/--key/--cert: the registered identity the attack uses;
 *   --dest: a registered node that receives the valid "control" batches.
 *
 * Modes (expected reaction of the hub in brackets):
 *   unregistered-key [--count 5]   fresh CURVE keys, each claiming --node in a
 *       Hello, plus one client with --node's public key but not its secret
 *       [ZAP 400 for each fresh key, handshake failure for the stolen key]
 *   sign-as-other --other-node Y --other-key K --other-cert C
 *       on --node's own connection: a batch claiming Y signed with Y's key;
 *       one claiming --node signed with Y's key; one claiming Y signed with its
 *       own key; one signed by Y under --node's key id; a Hello naming Y
 *       [wrong_sender x4 (two of them signed with Y's key: impersonation), bad_signature x1;
 *        nothing stored as Y]
 *   modified-body                  valid signature, body changed after signing
 *       (byte flip, seq, dest, extra entry, cut) or signature flipped
 *       [bad_signature x6]
 *   replay                         batch A acked; A again (same bytes); B, C;
 *       A again; A' and B' (same seqs, other content, validly signed); A on a
 *       new connection [3 dedup acks without storage, replay_mismatch x2]
 *   revoked --exec CMD [--bystander-dir DIR --bystander-node B]
 *       two connections of --node, a batch acked on the newer one, which
 *       then closes; 8 connections of B (an honest node) open meanwhile;
 *       CMD (e.g. tbctl hub revoke); then on the older connection a batch
 *       and a Hello, and a fresh connection [Nack(revoked) or disconnection,
 *       no Welcome, ZAP 400; B's connections untouched]
 *   acl                            --node may only send record_upsert:
 *       licence_issue, type 0, type 99, a mixed batch [acl x4]
 *   oversize --max-bytes N         a message of N+4 KiB, one of 8 MiB
 *       [connection dropped by ZMQ_MAXMSGSIZE]; then N-1.5 KiB is acked
 *   random-bytes [--count 200]     random frames of 0..60000 bytes, plus raw
 *       TCP connections writing random bytes [each undecodable one Nacked
 *       malformed and counted, TCP garbage closed]
 *   truncated [--step 7]           a valid frame cut every --step bytes; the
 *       SignedBatch inside cut; a cut Batch body validly signed
 *       [Nack(malformed) for each]
 *   frame-count                    multipart messages of 2, 3, 16 parts
 *       [dropped and counted malformed, no answer]
 *   flood [--count 200] [--registered 50 --bystander-dir DIR --bystander-node B]
 *         [--idle-tcp 100]  in parallel: fresh unregistered keys, clients
 *       without CURVE, connections of the registered node B, idle TCP
 *       connections; meanwhile a new connection of --node must be welcomed
 *       and its batch acked [ZAP 400 / handshake failure; B welcomed]
 *
 * Most modes end with a valid "control" batch on the attacker's connection
 * that must be acked (not unregistered-key and revoked, which have no
 * admitted connection left): the hub still serves it, and every answer to
 * what was sent before has arrived (the hub answers a connection in order).
 *
 * Output: one JSON line {"mode","node","inputs","refused","seen":{OUTCOME:N},
 * "expect":{STATUS_PATH:"=N"|">=N"},"ok","problems"}. "expect" lists the
 * changes of `tbctl hub status --json` this run must have caused
 * (totals.X, rejected.X, node.ID.X); the test compares before and after.
 * Exit: 0 the hub reacted as expected, 1 it did not, 2 usage or setup error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "crypto.h"
#include "pki.h"
#include "wire.h"

#define MAX_SEEN 48
#define MON_EVENTS                                                                              \
    (ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |                     \
     ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_DISCONNECTED)
#define RECONNECT_MS 100
#define HUGE_BYTES (8u << 20)

enum { RC_OK = 0, RC_FAIL = 1, RC_USAGE = 2 };
enum { CLS_SILENT, CLS_UNDECODABLE, CLS_BATCH, CLS_VALID };

typedef struct {
    const char *mode, *endpoint, *hub_public, *curve_dir, *node, *key, *cert, *dest;
    const char *other_node, *other_key, *other_cert, *exec_cmd, *bystander_dir, *bystander_node;
    long timeout_ms, count, max_bytes, step, registered, idle_tcp;
} opts_t;

typedef struct {
    int kind;                 /* Tongban__Frame__KindCase, -1 undecodable */
    uint64_t seq;             /* Ack / Nack */
    int reason;               /* Nack */
} reply_t;

/* One DEALER connection to the hub with its monitor and what came back. */
typedef struct {
    void *sock, *mon;
    int handshakes, auth_failed, auth_status, hs_failed, disconnected;
    reply_t *replies;
    size_t nreplies, cap;
} conn_t;

typedef struct {
    opts_t o;
    void *ctx;
    int have_curve;
    char sk[41], pk[41];
    tb_signer_t *signer, *other_signer;
    tb_cert_t *cert, *other_cert;
    uint64_t seq;
    unsigned nmon;
    long inputs, refused;
    char seen_name[MAX_SEEN][48];
    long seen_n[MAX_SEEN];
    size_t nseen;
    char expect[2048];
    char problems[2048];
    int ok;
} hx_t;

/* Batch contents: every entry a RecordUpsert; type of entry 0 and of the others. */
typedef struct {
    const char *sender, *dest, *tag;
    uint64_t seq, prev;
    int type, type2;
    size_t entries, pad;
} bspec_t;

/* ---- bookkeeping ---- */

static void seen(hx_t *self, const char *what, long n)
{
    for (size_t i = 0; i < self->nseen; i++)
        if (strcmp(self->seen_name[i], what) == 0) {
            self->seen_n[i] += n;
            return;
        }
    if (self->nseen == MAX_SEEN) return;
    size_t len = strlen(what);
    if (len >= sizeof self->seen_name[0]) len = sizeof self->seen_name[0] - 1;
    memcpy(self->seen_name[self->nseen], what, len);
    self->seen_name[self->nseen][len] = '\0';
    self->seen_n[self->nseen++] = n;
}

static void problem(hx_t *self, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(hx_t *self, const char *fmt, ...)
{
    size_t used = strlen(self->problems);
    if (used && used + 2 < sizeof self->problems) {
        memcpy(self->problems + used, "; ", 3);
        used += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(self->problems + used, sizeof self->problems - used, fmt, ap);
    va_end(ap);
    self->ok = 0;
}

/* Records an expected status change: path ("rejected.acl", "node.x.batches_in"), op "=" or ">=". */
static void expect(hx_t *self, const char *path, const char *op, long n)
{
    size_t used = strlen(self->expect);
    snprintf(self->expect + used, sizeof self->expect - used, "%s\"%s\":\"%s%ld\"", used ? "," : "", path,
             op, n);
}

static void expect_node(hx_t *self, const char *node, const char *field, const char *op, long n)
{
    char path[128];
    snprintf(path, sizeof path, "node.%s.%s", node, field);
    expect(self, path, op, n);
}

static uint64_t next_seq(hx_t *self)
{
    return self->seq++;
}

static void put_json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

/* ---- connections ---- */

static int conn_open(hx_t *self, conn_t *c, const char *sk, const char *pk, int reconnect_ms)
{
    memset(c, 0, sizeof *c);
    c->sock = zmq_socket(self->ctx, ZMQ_DEALER);
    if (!c->sock) return -1;
    int zero = 0;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(c->sock, ZMQ_RECONNECT_IVL, &reconnect_ms, sizeof reconnect_ms);
    if (sk) {
        zmq_setsockopt(c->sock, ZMQ_CURVE_SERVERKEY, self->o.hub_public, 40);
        zmq_setsockopt(c->sock, ZMQ_CURVE_SECRETKEY, sk, 40);
        zmq_setsockopt(c->sock, ZMQ_CURVE_PUBLICKEY, pk, 40);
    }
    char addr[64];
    snprintf(addr, sizeof addr, "inproc://hostile-mon-%u", self->nmon++);
    if (zmq_socket_monitor(c->sock, addr, MON_EVENTS) != 0) return -1;
    c->mon = zmq_socket(self->ctx, ZMQ_PAIR);
    if (!c->mon) return -1;
    zmq_setsockopt(c->mon, ZMQ_LINGER, &zero, sizeof zero);
    if (zmq_connect(c->mon, addr) != 0) return -1;   /* before any event can happen */
    return zmq_connect(c->sock, self->o.endpoint);
}

static void conn_close(conn_t *c)
{
    if (c->sock) {
        zmq_socket_monitor(c->sock, NULL, 0);
        zmq_close(c->sock);
    }
    if (c->mon) zmq_close(c->mon);
    free(c->replies);
    memset(c, 0, sizeof *c);
}

static void push_reply(conn_t *c, reply_t r)
{
    if (c->nreplies == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        reply_t *n = realloc(c->replies, cap * sizeof *n);
        if (!n) return;
        c->replies = n;
        c->cap = cap;
    }
    c->replies[c->nreplies++] = r;
}

/* Takes whatever the socket and its monitor have (no waiting). */
static void conn_take(conn_t *c)
{
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        uint16_t ev = 0;
        uint32_t val = 0;
        if (zmq_msg_size(&m) >= 6) {
            memcpy(&ev, zmq_msg_data(&m), 2);
            memcpy(&val, (uint8_t *)zmq_msg_data(&m) + 2, 4);
        }
        int more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        while (more) {   /* the endpoint part */
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, c->mon, 0) < 0) more = 0;
            else more = zmq_msg_more(&m);
            zmq_msg_close(&m);
        }
        switch (ev) {
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED: c->handshakes++; break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH: c->auth_failed++; c->auth_status = (int)val; break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL: c->hs_failed++; break;
        case ZMQ_EVENT_DISCONNECTED: c->disconnected++; break;
        default: break;
        }
    }
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        reply_t r = { -1, 0, 0 };
        Tongban__Frame *f = tongban__frame__unpack(NULL, zmq_msg_size(&m), zmq_msg_data(&m));
        zmq_msg_close(&m);
        if (f) {
            r.kind = (int)f->kind_case;
            if (f->kind_case == TONGBAN__FRAME__KIND_ACK) r.seq = f->ack->seq;
            if (f->kind_case == TONGBAN__FRAME__KIND_NACK) {
                r.seq = f->nack->seq;
                r.reason = (int)f->nack->reason;
            }
            tongban__frame__free_unpacked(f, NULL);
        }
        push_reply(c, r);
    }
}

/* Waits up to wait_ms for anything on any of n connections, then takes it. */
static void pump_many(conn_t *cs, size_t n, long wait_ms)
{
    zmq_pollitem_t *it = calloc(2 * n, sizeof *it);
    if (!it) return;
    for (size_t i = 0; i < n; i++) {
        it[2 * i].socket = cs[i].sock;
        it[2 * i].events = ZMQ_POLLIN;
        it[2 * i + 1].socket = cs[i].mon;
        it[2 * i + 1].events = ZMQ_POLLIN;
    }
    if (zmq_poll(it, (int)(2 * n), wait_ms) > 0)
        for (size_t i = 0; i < n; i++)
            if ((it[2 * i].revents | it[2 * i + 1].revents) & ZMQ_POLLIN) conn_take(&cs[i]);
    free(it);
}

/* Replies of kind (and seq, for Ack/Nack) received so far. */
static size_t count_replies(const conn_t *c, int kind, uint64_t seq)
{
    size_t n = 0;
    for (size_t i = 0; i < c->nreplies; i++)
        if (c->replies[i].kind == kind &&
            ((kind != TONGBAN__FRAME__KIND_ACK && kind != TONGBAN__FRAME__KIND_NACK) || c->replies[i].seq == seq))
            n++;
    return n;
}

static const reply_t *find_nack(const conn_t *c, uint64_t seq)
{
    for (size_t i = 0; i < c->nreplies; i++)
        if (c->replies[i].kind == TONGBAN__FRAME__KIND_NACK && c->replies[i].seq == seq) return &c->replies[i];
    return NULL;
}

typedef int (*until_fn)(const conn_t *c, const void *arg);

/* Pumps c until done(c, arg) or timeout_ms. Returns 1 when done. */
static int wait_until(conn_t *c, long timeout_ms, until_fn done, const void *arg)
{
    uint64_t end = tb_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        conn_take(c);
        if (done(c, arg)) return 1;
        uint64_t now = tb_now_ms();
        if (now >= end) return 0;
        pump_many(c, 1, (long)(end - now) < 100 ? (long)(end - now) : 100);
    }
}

typedef struct {
    int kind;
    uint64_t seq;
    size_t at_least;
} want_t;

static int got_reply(const conn_t *c, const void *arg)
{
    const want_t *w = arg;
    return count_replies(c, w->kind, w->seq) >= w->at_least;
}

/* Ack or Nack for seq, at least `acks` Acks, or a disconnection past `disc`. */
typedef struct {
    uint64_t seq;
    size_t acks;
    int disc;
} answer_t;

static int got_answer(const conn_t *c, const void *arg)
{
    const answer_t *a = arg;
    return count_replies(c, TONGBAN__FRAME__KIND_ACK, a->seq) >= a->acks || find_nack(c, a->seq) ||
           (a->disc >= 0 && c->disconnected > a->disc);
}

static int got_handshakes(const conn_t *c, const void *arg)
{
    return c->handshakes >= *(const int *)arg;
}

/* A connection attempt has its outcome: welcomed, refused or dropped. */
static int conn_final(const conn_t *c)
{
    return c->auth_failed || c->hs_failed || c->disconnected || count_replies(c, TONGBAN__FRAME__KIND_WELCOME, 0);
}

static int send_msg(hx_t *self, conn_t *c, const uint8_t *buf, size_t len, int more)
{
    if (zmq_send(c->sock, len ? buf : (const uint8_t *)"", len, (more ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT) < 0) {
        problem(self, "send failed: %s", zmq_strerror(errno));
        return -1;
    }
    return 0;
}

static int send_frame(hx_t *self, conn_t *c, const Tongban__Frame *f, int more)
{
    uint8_t *buf;
    size_t len;
    if (tb_frame_pack(f, &buf, &len) != TB_OK) return -1;
    int rc = send_msg(self, c, buf, len, more);
    free(buf);
    return rc;
}

static uint8_t *hello_frame(const char *node, size_t *len)
{
    Tongban__Hello h = TONGBAN__HELLO__INIT;
    h.node_id = (char *)node;
    h.protocol = TB_PROTOCOL_VERSION;
    h.software = "tb_hostile";
    Tongban__Frame f = TONGBAN__FRAME__INIT;
    f.kind_case = TONGBAN__FRAME__KIND_HELLO;
    f.hello = &h;
    uint8_t *buf = NULL;
    return tb_frame_pack(&f, &buf, len) == TB_OK ? buf : NULL;
}

static int send_hello(hx_t *self, conn_t *c, const char *node)
{
    size_t len;
    uint8_t *buf = hello_frame(node, &len);
    int rc = buf ? send_msg(self, c, buf, len, 0) : -1;
    free(buf);
    return rc;
}

/* Hello as --node, then waits for one more Welcome. Returns 0 when welcomed. */
static int welcome(hx_t *self, conn_t *c)
{
    conn_take(c);
    want_t w = { TONGBAN__FRAME__KIND_WELCOME, 0, count_replies(c, TONGBAN__FRAME__KIND_WELCOME, 0) + 1 };
    if (send_hello(self, c, self->o.node) != 0) return -1;
    if (wait_until(c, self->o.timeout_ms, got_reply, &w)) return 0;
    problem(self, "%s not welcomed within %ld ms", self->o.node, self->o.timeout_ms);
    return -1;
}

/* ---- batches ---- */

static uint32_t tag_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

/* Packs the Batch of s (deterministic: same spec, same bytes). Malloc'ed; NULL on OOM. */
static uint8_t *pack_body(const bspec_t *s, size_t *len)
{
    size_t n = s->entries ? s->entries : 1, cap = s->pad + 256;
    Tongban__Entry *ents = calloc(n, sizeof *ents);
    Tongban__Entry **ptrs = calloc(n, sizeof *ptrs);
    uint8_t *ids = calloc(n, 16), *pay = malloc(n * (cap + 512)), *out = NULL;
    char *json = malloc(cap), key[160];
    if (!ents || !ptrs || !ids || !pay || !json) goto done;
    size_t off = 0;
    uint32_t th = tag_hash(s->tag);
    for (size_t i = 0; i < n; i++) {
        int w = snprintf(json, cap, "{\"tag\":\"%.64s\",\"seq\":%" PRIu64 ",\"i\":%zu,\"pad\":\"", s->tag,
                         s->seq, i);
        size_t jl = (size_t)w;
        memset(json + jl, 'x', s->pad);
        jl += s->pad;
        memcpy(json + jl, "\"}", 3);
        snprintf(key, sizeof key, "%.64s-%" PRIu64 "-%zu", s->tag, s->seq, i);
        Tongban__RecordUpsert u = TONGBAN__RECORD_UPSERT__INIT;
        u.catalog = "hostile";
        u.key = key;
        u.version = 1;
        u.body = json;
        u.origin = (char *)s->sender;
        u.hlc = s->seq + i;
        size_t pl = tongban__record_upsert__pack(&u, pay + off);
        uint64_t sq = s->seq;
        uint32_t ii = (uint32_t)i;
        memcpy(ids + 16 * i, &sq, 8);
        memcpy(ids + 16 * i + 8, &ii, 4);
        memcpy(ids + 16 * i + 12, &th, 4);
        tongban__entry__init(&ents[i]);
        ents[i].id.data = ids + 16 * i;
        ents[i].id.len = 16;
        ents[i].type = (Tongban__EntryType)(i && s->type2 ? s->type2 : s->type);
        ents[i].payload.data = pay + off;
        ents[i].payload.len = pl;
        off += pl;
        ptrs[i] = &ents[i];
    }
    Tongban__Batch b = TONGBAN__BATCH__INIT;
    b.sender = (char *)s->sender;
    b.seq = s->seq;
    b.prev_seq = s->prev;
    b.dest = (char *)s->dest;
    b.hlc = s->seq + n;
    b.n_entries = n;
    b.entries = ptrs;
    size_t bl = tongban__batch__get_packed_size(&b);
    out = malloc(bl ? bl : 1);
    if (out) *len = tongban__batch__pack(&b, out);
done:
    free(ents);
    free(ptrs);
    free(ids);
    free(pay);
    free(json);
    return out;
}

/* The signature of signer over body (malloc'ed). */
static uint8_t *sign_body(hx_t *self, tb_signer_t *signer, const uint8_t *body, size_t blen, size_t *siglen)
{
    char err[TB_ERRLEN];
    uint8_t *sig = NULL;
    if (tb_signer_sign(signer, body, blen, &sig, siglen, err, sizeof err) != TB_OK) {
        problem(self, "signing failed: %s", err);
        return NULL;
    }
    return sig;
}

/* Frame{batch = SignedBatch{body, sig, key_id, alg}}, serialised (malloc'ed). */
static uint8_t *sb_frame(const uint8_t *body, size_t blen, const uint8_t *sig, size_t siglen, const char *key_id,
                         tb_alg_t alg, size_t *len, uint8_t **sb_out, size_t *sb_len)
{
    Tongban__SignedBatch sb = TONGBAN__SIGNED_BATCH__INIT;
    sb.body.data = (uint8_t *)body;
    sb.body.len = blen;
    sb.signature.data = (uint8_t *)sig;
    sb.signature.len = siglen;
    sb.signer_key_id = (char *)key_id;
    sb.alg = tb_alg_to_wire(alg);
    size_t n = tongban__signed_batch__get_packed_size(&sb);
    uint8_t *raw = malloc(n ? n : 1), *frame = NULL;
    if (!raw) return NULL;
    n = tongban__signed_batch__pack(&sb, raw);
    if (tb_frame_wrap(TONGBAN__FRAME__KIND_BATCH, raw, n, &frame, len) != TB_OK) frame = NULL;
    if (sb_out) {
        *sb_out = raw;
        *sb_len = n;
    } else {
        free(raw);
    }
    return frame;
}

/* A valid frame of s signed by signer under cert's key id (malloc'ed). */
static uint8_t *batch_frame(hx_t *self, const bspec_t *s, tb_signer_t *signer, const tb_cert_t *cert, size_t *len)
{
    size_t blen = 0, siglen = 0;
    uint8_t *body = pack_body(s, &blen), *frame = NULL;
    uint8_t *sig = body ? sign_body(self, signer, body, blen, &siglen) : NULL;
    if (sig) frame = sb_frame(body, blen, sig, siglen, tb_cert_key_id(cert), tb_signer_alg(signer), len, NULL, NULL);
    free(body);
    free(sig);
    return frame;
}

static bspec_t spec(hx_t *self, const char *tag)
{
    bspec_t s = { self->o.node, self->o.dest, tag, next_seq(self), 0, TONGBAN__ENTRY_TYPE__RECORD_UPSERT, 0, 1, 32 };
    return s;
}

/* Sends one valid batch of --node to --dest and waits for its Ack: the hub
 * still serves this connection, and every answer to what was sent before
 * has arrived. Returns 0 when acked. */
static int control(hx_t *self, conn_t *c, size_t pad)
{
    bspec_t s = spec(self, "control");
    s.pad = pad;
    size_t len;
    uint8_t *f = batch_frame(self, &s, self->signer, self->cert, &len);
    if (!f || send_msg(self, c, f, len, 0) != 0) {
        free(f);
        return -1;
    }
    free(f);
    want_t w = { TONGBAN__FRAME__KIND_ACK, s.seq, 1 };
    if (wait_until(c, self->o.timeout_ms, got_reply, &w)) {
        seen(self, "control_acked", 1);
        return 0;
    }
    const reply_t *n = find_nack(c, s.seq);
    problem(self, "control batch seq %" PRIu64 " of %zu bytes not acked (%s): the hub stopped serving %s", s.seq,
            len, n ? tb_nack_reason_name((Tongban__NackReason)n->reason) : "no answer", self->o.node);
    return -1;
}

/* Which way the hub's accept path takes a message (mirrors on_router). */
static int classify(const uint8_t *buf, size_t len)
{
    uint32_t field;
    const uint8_t *inner;
    size_t ilen;
    static const uint8_t empty[1];
    if (tb_frame_inner(buf, len, &field, &inner, &ilen) == TB_OK && field == TONGBAN__FRAME__KIND_BATCH)
        return CLS_BATCH;
    Tongban__Frame *f = tongban__frame__unpack(NULL, len, len ? buf : empty);
    if (!f) return CLS_UNDECODABLE;
    int k = (int)f->kind_case;
    tongban__frame__free_unpacked(f, NULL);
    return k == TONGBAN__FRAME__KIND__NOT_SET ? CLS_SILENT : CLS_VALID;
}

/* Tallies every Nack received: "nack:<reason>"; returns how many. */
static long tally_nacks(hx_t *self, const conn_t *c, const char *only_reason)
{
    long n = 0;
    for (size_t i = 0; i < c->nreplies; i++) {
        if (c->replies[i].kind != TONGBAN__FRAME__KIND_NACK) continue;
        const char *r = tb_nack_reason_name((Tongban__NackReason)c->replies[i].reason);
        char name[48];
        snprintf(name, sizeof name, "nack:%s", r);
        seen(self, name, 1);
        if (only_reason && strcmp(r, only_reason) != 0)
            problem(self, "Nack(%s) where %s was expected", r, only_reason);
        n++;
    }
    return n;
}

/* Replies other than Welcome / DirectoryUpdate / the control Acks. */
static size_t unexpected_answers(const conn_t *c)
{
    size_t n = 0;
    for (size_t i = 0; i < c->nreplies; i++) {
        int k = c->replies[i].kind;
        if (k == TONGBAN__FRAME__KIND_HEARTBEAT || k == TONGBAN__FRAME__KIND_NACK || k == TONGBAN__FRAME__KIND_REPLY ||
            k == TONGBAN__FRAME__KIND_DELIVER || k == -1)
            n++;
    }
    return n;
}

static int open_registered(hx_t *self, conn_t *c)
{
    if (conn_open(self, c, self->sk, self->pk, RECONNECT_MS) != 0) {
        problem(self, "cannot open a connection: %s", zmq_strerror(errno));
        return -1;
    }
    return welcome(self, c);
}

/* ---- raw TCP ---- */

static int tcp_connect(hx_t *self)
{
    const char *ep = self->o.endpoint;
    if (strncmp(ep, "tcp://", 6) != 0) return -1;
    char host[64];
    const char *colon = strrchr(ep + 6, ':');
    if (!colon || (size_t)(colon - (ep + 6)) >= sizeof host) return -1;
    memcpy(host, ep + 6, (size_t)(colon - (ep + 6)));
    host[colon - (ep + 6)] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (*end || port <= 0 || port > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1) return -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* 1 when the peer closed fd within timeout_ms (EOF or reset). */
static int tcp_closed_by_peer(int fd, long timeout_ms)
{
    uint64_t end = tb_now_ms() + (uint64_t)timeout_ms;
    char buf[512];
    while (tb_now_ms() < end) {
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll(&p, 1, 100) <= 0) continue;
        ssize_t n = recv(fd, buf, sizeof buf, 0);   /* the hub's greeting first */
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) return 1;
    }
    return 0;
}

/* ---- modes ---- */

static void mode_unregistered(hx_t *self)
{
    long n = self->o.count > 0 ? self->o.count : 5;
    size_t total = (size_t)n + (self->have_curve ? 1 : 0);
    conn_t *cs = calloc(total, sizeof *cs);
    if (!cs) return;
    for (size_t i = 0; i < total; i++) {
        char pub[41], sec[41];
        zmq_curve_keypair(pub, sec);
        int stolen = i == (size_t)n;   /* the registered public key, a secret of our own */
        if (conn_open(self, &cs[i], sec, stolen ? self->pk : pub, -1) != 0) {
            problem(self, "cannot open a connection: %s", zmq_strerror(errno));
            goto done;
        }
        send_hello(self, &cs[i], self->o.node);
    }
    self->inputs = (long)total;
    uint64_t end = tb_now_ms() + (uint64_t)self->o.timeout_ms;
    for (;;) {
        size_t final = 0;
        for (size_t i = 0; i < total; i++) final += conn_final(&cs[i]) ? 1 : 0;
        if (final == total || tb_now_ms() >= end) break;
        pump_many(cs, total, 100);
    }
    for (size_t i = 0; i < total; i++) {
        conn_t *c = &cs[i];
        int stolen = i == (size_t)n;
        if (count_replies(c, TONGBAN__FRAME__KIND_WELCOME, 0)) {
            seen(self, "welcomed", 1);
            problem(self, "%s was welcomed", stolen ? "a client without the secret key" : "an unregistered key");
        } else if (c->auth_failed) {
            char name[48];
            snprintf(name, sizeof name, "auth_failed:%d", c->auth_status);
            seen(self, name, 1);
            self->refused++;
            if (stolen) problem(self, "the stolen public key reached ZAP");
        } else if (c->hs_failed || c->disconnected) {
            seen(self, "handshake_failed", 1);
            self->refused++;
            if (!stolen) problem(self, "an unregistered key failed the handshake before ZAP");
        } else {
            seen(self, "no_answer", 1);
            problem(self, "no outcome within %ld ms", self->o.timeout_ms);
        }
    }
    expect(self, "totals.zap_denied", "=", n);
done:
    for (size_t i = 0; i < total; i++) conn_close(&cs[i]);
    free(cs);
}

static void mode_sign_as_other(hx_t *self)
{
    const char *me = self->o.node, *other = self->o.other_node;
    conn_t c = { 0 };
    if (open_registered(self, &c) != 0) goto done;
    struct {
        const char *what, *sender;
        tb_signer_t *signer;
        tb_cert_t *cert;
        const char *key_id;
        Tongban__NackReason want;
        uint64_t seq;
    } v[] = {
        { "claims other, signed by other", other, self->other_signer, self->other_cert, NULL,
          TONGBAN__NACK_REASON__NACK_WRONG_SENDER, 0 },
        { "claims self, signed by other", me, self->other_signer, self->other_cert, NULL,
          TONGBAN__NACK_REASON__NACK_WRONG_SENDER, 0 },
        { "claims other, signed by self", other, self->signer, self->cert, NULL,
          TONGBAN__NACK_REASON__NACK_WRONG_SENDER, 0 },
        { "claims other, signed by other under self's key id", other, self->other_signer, self->other_cert,
          tb_cert_key_id(self->cert), TONGBAN__NACK_REASON__NACK_BAD_SIGNATURE, 0 },
    };
    size_t nv = sizeof v / sizeof v[0];
    for (size_t i = 0; i < nv; i++) {
        bspec_t s = spec(self, "impersonation");
        s.sender = v[i].sender;
        v[i].seq = s.seq;
        size_t blen, siglen, len;
        uint8_t *body = pack_body(&s, &blen), *sig = body ? sign_body(self, v[i].signer, body, blen, &siglen) : NULL;
        uint8_t *f = sig ? sb_frame(body, blen, sig, siglen, v[i].key_id ? v[i].key_id : tb_cert_key_id(v[i].cert),
                                    tb_signer_alg(v[i].signer), &len, NULL, NULL)
                         : NULL;
        if (f) send_msg(self, &c, f, len, 0);
        free(body);
        free(sig);
        free(f);
    }
    send_hello(self, &c, other);       /* a Hello naming the other node */
    self->inputs = (long)nv + 1;
    if (control(self, &c, 32) != 0) goto done;
    for (size_t i = 0; i < nv; i++) {
        const reply_t *r = find_nack(&c, v[i].seq);
        if (count_replies(&c, TONGBAN__FRAME__KIND_ACK, v[i].seq)) {
            seen(self, "ack", 1);
            problem(self, "accepted: %s", v[i].what);
        } else if (!r) {
            seen(self, "no_answer", 1);
            problem(self, "no answer: %s", v[i].what);
        } else {
            char name[48];
            snprintf(name, sizeof name, "nack:%s", tb_nack_reason_name((Tongban__NackReason)r->reason));
            seen(self, name, 1);
            self->refused++;
            if (r->reason != (int)v[i].want)
                problem(self, "%s: Nack(%s), expected %s", v[i].what,
                        tb_nack_reason_name((Tongban__NackReason)r->reason), tb_nack_reason_name(v[i].want));
        }
    }
    const reply_t *h = find_nack(&c, 0);
    if (h && h->reason == TONGBAN__NACK_REASON__NACK_WRONG_SENDER) {
        seen(self, "nack:wrong_sender", 1);
        self->refused++;
    } else {
        problem(self, "a Hello naming %s was not refused with wrong_sender", other);
    }
    expect(self, "rejected.unknown_cert", "=", 0);
    expect(self, "rejected.wrong_sender", "=", 4);   /* signed by another registered node = impersonation */
    expect(self, "rejected.bad_signature", "=", 1);
    expect_node(self, other, "batches_in", "=", 0);
    expect_node(self, me, "batches_in", "=", 1);
    expect_node(self, me, "rejected", "=", 5);
done:
    conn_close(&c);
}

static void mode_modified_body(hx_t *self)
{
    conn_t c = { 0 };
    if (open_registered(self, &c) != 0) goto done;
    const char *what[] = { "byte flipped", "seq changed", "dest changed", "entry added", "last byte cut",
                           "signature flipped" };
    size_t nv = sizeof what / sizeof what[0];
    for (size_t i = 0; i < nv; i++) {
        bspec_t s = spec(self, "modified");
        s.entries = 2;
        size_t blen, blen2 = 0, siglen, len;
        uint8_t *body = pack_body(&s, &blen), *body2 = NULL;
        uint8_t *sig = body ? sign_body(self, self->signer, body, blen, &siglen) : NULL;
        if (!sig) {
            free(body);
            goto done;
        }
        bspec_t m = s;
        switch (i) {
        case 0: body[blen - 3] ^= 0x01; break;        /* inside the JSON of the last entry */
        case 1: m.seq = s.seq + 1000000; break;
        case 2: m.dest = self->o.other_node ? self->o.other_node : "topic:hostile"; break;
        case 3: m.entries = 3; break;
        case 4: blen--; break;
        case 5: sig[0] ^= 0x01; break;
        default: break;
        }
        if (i >= 1 && i <= 3) body2 = pack_body(&m, &blen2);
        uint8_t *f = sb_frame(body2 ? body2 : body, body2 ? blen2 : blen, sig, siglen, tb_cert_key_id(self->cert),
                              tb_signer_alg(self->signer), &len, NULL, NULL);
        if (f) send_msg(self, &c, f, len, 0);
        free(f);
        free(body);
        free(body2);
        free(sig);
    }
    self->inputs = (long)nv;
    if (control(self, &c, 32) != 0) goto done;
    long nacks = tally_nacks(self, &c, "bad_signature");
    self->refused = nacks;
    if (nacks != (long)nv) problem(self, "%ld Nacks for %zu modified batches", nacks, nv);
    if (count_replies(&c, TONGBAN__FRAME__KIND_ACK, 0) || c.nreplies > (size_t)nacks + 2)
        problem(self, "unexpected answers besides the Nacks");
    expect(self, "rejected.bad_signature", "=", (long)nv);
    expect_node(self, self->o.node, "batches_in", "=", 1);
done:
    conn_close(&c);
}

/* Sends f and waits for its answer; returns 'A' (acks reached), 'N', 'D' (dropped) or 0. */
static int send_and_wait(hx_t *self, conn_t *c, const uint8_t *f, size_t len, uint64_t seq, size_t acks, int watch_disc)
{
    conn_take(c);
    answer_t a = { seq, acks, watch_disc ? c->disconnected : -1 };
    if (send_msg(self, c, f, len, 0) != 0) return 0;
    if (!wait_until(c, self->o.timeout_ms, got_answer, &a)) return 0;
    if (count_replies(c, TONGBAN__FRAME__KIND_ACK, seq) >= acks) return 'A';
    if (find_nack(c, seq)) return 'N';
    return 'D';
}

static void mode_replay(hx_t *self)
{
    conn_t c, c2;
    memset(&c2, 0, sizeof c2);
    if (open_registered(self, &c) != 0) goto done;
    bspec_t sa = spec(self, "replay-a"), sbb = spec(self, "replay-b"), sc = spec(self, "replay-c");
    sbb.prev = sa.seq;
    sc.prev = sbb.seq;
    bspec_t sa2 = sa, sb2 = sbb;
    sa2.tag = "replay-a-other";
    sb2.tag = "replay-b-other";
    size_t la, lb, lc, la2, lb2;
    uint8_t *fa = batch_frame(self, &sa, self->signer, self->cert, &la);
    uint8_t *fb = batch_frame(self, &sbb, self->signer, self->cert, &lb);
    uint8_t *fc = batch_frame(self, &sc, self->signer, self->cert, &lc);
    uint8_t *fa2 = batch_frame(self, &sa2, self->signer, self->cert, &la2);
    uint8_t *fb2 = batch_frame(self, &sb2, self->signer, self->cert, &lb2);
    if (!fa || !fb || !fc || !fa2 || !fb2) goto free_frames;
    if (send_and_wait(self, &c, fa, la, sa.seq, 1, 0) != 'A') {
        problem(self, "the original batch was not acked");
        goto free_frames;
    }
    /* 1: the same bytes at once; 2: again after B and C */
    int r = send_and_wait(self, &c, fa, la, sa.seq, 2, 0);
    self->inputs++;
    if (r == 'A') {
        seen(self, "ack_again(dedup)", 1);
        self->refused++;
    } else {
        problem(self, "an identical resend was not acked again (%c)", r ? r : '0');
    }
    if (send_and_wait(self, &c, fb, lb, sbb.seq, 1, 0) != 'A' || send_and_wait(self, &c, fc, lc, sc.seq, 1, 0) != 'A')
        problem(self, "the batches after the original were not acked");
    r = send_and_wait(self, &c, fa, la, sa.seq, 3, 0);
    self->inputs++;
    if (r == 'A') {
        seen(self, "ack_again(dedup)", 1);
        self->refused++;
    } else {
        problem(self, "the old batch replayed later was not acked as a duplicate (%c)", r ? r : '0');
    }
    /* 3, 4: other content under seqs already taken */
    const bspec_t *sp[] = { &sa2, &sb2 };
    const uint8_t *fp[] = { fa2, fb2 };
    size_t lp[] = { la2, lb2 };
    for (size_t i = 0; i < 2; i++) {
        self->inputs++;
        r = send_and_wait(self, &c, fp[i], lp[i], sp[i]->seq, 4, 0);
        const reply_t *n = find_nack(&c, sp[i]->seq);
        if (r == 'N' && n->reason == TONGBAN__NACK_REASON__NACK_REPLAY_MISMATCH) {
            seen(self, "nack:replay_mismatch", 1);
            self->refused++;
        } else {
            problem(self, "other content under seq %" PRIu64 ": %s", sp[i]->seq,
                    n ? tb_nack_reason_name((Tongban__NackReason)n->reason) : r == 'A' ? "acked" : "no answer");
        }
    }
    /* 5: the original on a new connection */
    self->inputs++;
    if (open_registered(self, &c2) == 0) {
        if (send_and_wait(self, &c2, fa, la, sa.seq, 1, 0) == 'A') {
            seen(self, "ack_again(dedup)", 1);
            self->refused++;
        } else {
            problem(self, "the replay on a new connection was not acked as a duplicate");
        }
    }
    expect_node(self, self->o.node, "batches_in", "=", 3);
    expect(self, "totals.duplicates", ">=", 3);
    expect(self, "rejected.replay_mismatch", "=", 2);
free_frames:
    free(fa);
    free(fb);
    free(fc);
    free(fa2);
    free(fb2);
done:
    conn_close(&c);
    conn_close(&c2);
}

/* Sends a Heartbeat and waits for the answer. Returns 0 when answered. */
static int heartbeat(hx_t *self, conn_t *c)
{
    Tongban__Heartbeat hb = TONGBAN__HEARTBEAT__INIT;
    Tongban__Frame f = TONGBAN__FRAME__INIT;
    f.kind_case = TONGBAN__FRAME__KIND_HEARTBEAT;
    f.heartbeat = &hb;
    conn_take(c);
    want_t w = { TONGBAN__FRAME__KIND_HEARTBEAT, 0, count_replies(c, TONGBAN__FRAME__KIND_HEARTBEAT, 0) + 1 };
    if (send_frame(self, c, &f, 0) != 0) return -1;
    return wait_until(c, self->o.timeout_ms, got_reply, &w) ? 0 : -1;
}

static void mode_revoked(hx_t *self)
{
    enum { NBYSTANDERS = 8 };
    conn_t older, newest, fresh, by[NBYSTANDERS];
    size_t nby = 0;
    memset(&older, 0, sizeof older);
    memset(&newest, 0, sizeof newest);
    memset(&fresh, 0, sizeof fresh);
    uint8_t *f1 = NULL, *f2 = NULL;
    /* two connections of the node; the hub knows the newest one's socket */
    if (open_registered(self, &older) != 0 || open_registered(self, &newest) != 0) goto done;
    bspec_t s1 = spec(self, "before-revocation"), s2 = spec(self, "after-revocation");
    size_t l1, l2;
    f1 = batch_frame(self, &s1, self->signer, self->cert, &l1);
    f2 = batch_frame(self, &s2, self->signer, self->cert, &l2);
    if (!f1 || !f2) goto done;
    if (send_and_wait(self, &newest, f1, l1, s1.seq, 1, 0) != 'A') {
        problem(self, "%s could not send before its revocation", self->o.node);
        goto done;
    }
    /* the newest connection goes away; honest connections of another node
     * (--bystander-*) take the socket numbers the hub frees */
    conn_close(&newest);
    usleep(300 * 1000);
    if (self->o.bystander_dir) {
        char path[1024], sk[41], pk[41], err[TB_ERRLEN];
        snprintf(path, sizeof path, "%s/curve.key", self->o.bystander_dir);
        int ok = tb_pki_read_z85(path, 1, sk, err, sizeof err) == TB_OK;
        snprintf(path, sizeof path, "%s/curve.pub", self->o.bystander_dir);
        ok = ok && tb_pki_read_z85(path, 0, pk, err, sizeof err) == TB_OK;
        if (!ok) {
            problem(self, "bystander keys: %s", err);
            goto done;
        }
        for (; nby < NBYSTANDERS; nby++) {
            if (conn_open(self, &by[nby], sk, pk, RECONNECT_MS) != 0) break;
            want_t w = { TONGBAN__FRAME__KIND_WELCOME, 0, 1 };
            send_hello(self, &by[nby], self->o.bystander_node);
            if (!wait_until(&by[nby], self->o.timeout_ms, got_reply, &w)) {
                problem(self, "bystander %s not welcomed", self->o.bystander_node);
                nby++;
                goto done;
            }
        }
    }
    int rc = system(self->o.exec_cmd);
    if (rc != 0) {
        problem(self, "--exec failed (status %d)", rc);
        goto done;
    }
    /* 1: a batch on the connection the node still holds */
    self->inputs++;
    int r = send_and_wait(self, &older, f2, l2, s2.seq, 1, 1);
    const reply_t *n = find_nack(&older, s2.seq);
    if (!n && (n = find_nack(&older, 0)) != NULL && r != 'A') r = 'N';   /* refused before its seq was read */
    if (r == 'A') {
        seen(self, "batch:ack", 1);
        problem(self, "a batch sent after the revocation was acked");
    } else if (r == 'N' && n->reason == TONGBAN__NACK_REASON__NACK_REVOKED) {
        seen(self, "batch:nack:revoked", 1);
        self->refused++;
    } else if (r == 'D' || older.disconnected) {
        seen(self, "batch:disconnected", 1);
        self->refused++;
    } else {
        seen(self, r == 'N' ? "batch:nack:other" : "batch:no_answer", 1);
        problem(self, "a batch after the revocation: neither Nack(revoked) nor disconnection");
    }
    /* 2: a Hello on that connection: no Welcome (no directory) for a revoked node */
    self->inputs++;
    size_t welcomes = count_replies(&older, TONGBAN__FRAME__KIND_WELCOME, 0);
    want_t w2 = { TONGBAN__FRAME__KIND_WELCOME, 0, welcomes + 1 };
    send_hello(self, &older, self->o.node);
    if (wait_until(&older, 1000, got_reply, &w2)) {
        seen(self, "hello:welcomed", 1);
        problem(self, "the revoked node was welcomed again on a connection it kept");
    } else {
        seen(self, older.disconnected ? "hello:disconnected" : "hello:no_answer", 1);
        self->refused++;
    }
    /* 3: a fresh connection with the revoked keys */
    self->inputs++;
    if (conn_open(self, &fresh, self->sk, self->pk, -1) == 0) {
        send_hello(self, &fresh, self->o.node);
        uint64_t end = tb_now_ms() + (uint64_t)self->o.timeout_ms;
        while (!conn_final(&fresh) && tb_now_ms() < end) pump_many(&fresh, 1, 100);
        if (count_replies(&fresh, TONGBAN__FRAME__KIND_WELCOME, 0)) {
            seen(self, "fresh:welcomed", 1);
            problem(self, "the revoked node was welcomed on a new connection");
        } else if (fresh.auth_failed) {
            char name[48];
            snprintf(name, sizeof name, "fresh:auth_failed:%d", fresh.auth_status);
            seen(self, name, 1);
            self->refused++;
        } else {
            seen(self, "fresh:no_answer", 1);
            problem(self, "a new connection of the revoked node: no ZAP refusal");
        }
    }
    /* the other node's connections are untouched by this revocation */
    long cut = 0;
    for (size_t i = 0; i < nby; i++) {
        conn_take(&by[i]);
        if (by[i].disconnected || heartbeat(self, &by[i]) != 0) cut++;
    }
    if (nby) seen(self, "bystander_connections_cut", cut);
    if (cut)
        problem(self, "revoking %s cut %ld of %zu connections of %s", self->o.node, cut, nby, self->o.bystander_node);
    expect_node(self, self->o.node, "batches_in", "=", 1);
    expect(self, "totals.zap_denied", ">=", 1);
    expect(self, "rejected.revoked", ">=", 1);
done:
    free(f1);
    free(f2);
    for (size_t i = 0; i < nby; i++) conn_close(&by[i]);
    conn_close(&older);
    conn_close(&newest);
    conn_close(&fresh);
}

static void mode_acl(hx_t *self)
{
    conn_t c = { 0 };
    if (open_registered(self, &c) != 0) goto done;
    if (control(self, &c, 32) != 0) goto done;      /* record_upsert is allowed */
    struct {
        const char *what;
        int type, type2;
        uint64_t seq;
    } v[] = {
        { "licence_issue", TONGBAN__ENTRY_TYPE__LICENCE_ISSUE, 0, 0 },
        { "type 0 (unspecified)", TONGBAN__ENTRY_TYPE__ENTRY_TYPE_UNSPECIFIED, 0, 0 },
        { "type 99 (unknown)", 99, 0, 0 },
        { "record_upsert then licence_revoke", TONGBAN__ENTRY_TYPE__RECORD_UPSERT, TONGBAN__ENTRY_TYPE__LICENCE_REVOKE, 0 },
    };
    size_t nv = sizeof v / sizeof v[0];
    for (size_t i = 0; i < nv; i++) {
        bspec_t s = spec(self, "acl");
        s.type = v[i].type;
        s.type2 = v[i].type2;
        s.entries = v[i].type2 ? 2 : 1;
        v[i].seq = s.seq;
        size_t len;
        uint8_t *f = batch_frame(self, &s, self->signer, self->cert, &len);
        if (f) send_msg(self, &c, f, len, 0);
        free(f);
    }
    self->inputs = (long)nv;
    if (control(self, &c, 32) != 0) goto done;
    for (size_t i = 0; i < nv; i++) {
        const reply_t *r = find_nack(&c, v[i].seq);
        if (r && r->reason == TONGBAN__NACK_REASON__NACK_ACL) {
            seen(self, "nack:acl", 1);
            self->refused++;
        } else {
            seen(self, r ? "nack:other" : count_replies(&c, TONGBAN__FRAME__KIND_ACK, v[i].seq) ? "ack" : "no_answer", 1);
            problem(self, "%s: %s", v[i].what,
                    r ? tb_nack_reason_name((Tongban__NackReason)r->reason) : "not refused with acl");
        }
    }
    expect(self, "rejected.acl", "=", (long)nv);
    expect_node(self, self->o.node, "batches_in", "=", 2);
done:
    conn_close(&c);
}

static void mode_oversize(hx_t *self)
{
    conn_t c = { 0 };
    long max = self->o.max_bytes;
    if (open_registered(self, &c) != 0) goto done;
    size_t pads[] = { (size_t)max + 4096, HUGE_BYTES };
    for (size_t i = 0; i < 2; i++) {
        bspec_t s = spec(self, "oversize");
        s.pad = pads[i];
        size_t len;
        uint8_t *f = batch_frame(self, &s, self->signer, self->cert, &len);
        if (!f) goto done;
        self->inputs++;
        int r = send_and_wait(self, &c, f, len, s.seq, 1, 1);
        free(f);
        if (r == 'D') {
            seen(self, "disconnected", 1);
            self->refused++;
        } else {
            seen(self, r == 'A' ? "ack" : r == 'N' ? "nack" : "no_answer", 1);
            problem(self, "a message of %zu bytes (limit %ld): %s", len, max,
                    r == 'A' ? "acked" : r == 'N' ? "Nacked, the connection stays" : "neither answered nor dropped");
        }
        int want = c.handshakes + 1;        /* the DEALER reconnects by itself */
        if (!wait_until(&c, self->o.timeout_ms, got_handshakes, &want) || welcome(self, &c) != 0) {
            problem(self, "%s could not reconnect after the oversize message", self->o.node);
            goto done;
        }
    }
    /* just under the limit (CURVE adds ~33 bytes to a frame): accepted */
    control(self, &c, (size_t)max - 1536);
    expect_node(self, self->o.node, "batches_in", "=", 1);
done:
    conn_close(&c);
}

static void mode_random(hx_t *self)
{
    static const size_t sizes[] = { 0, 1, 2, 3, 4, 5, 7, 8, 13, 16, 31, 64, 100, 255, 256, 1000, 4096, 30000, 60000 };
    conn_t c = { 0 };
    long n = self->o.count > 0 ? self->o.count : 200, cls[4] = { 0 };
    size_t cap = self->o.max_bytes > 0 ? (size_t)self->o.max_bytes - 1024 : 60000;
    uint8_t *buf = malloc(60000);
    if (!buf || open_registered(self, &c) != 0) goto done;
    for (long i = 0; i < n; i++) {
        size_t len = sizes[(size_t)i % (sizeof sizes / sizeof sizes[0])];
        if (len > cap) len = cap;
        int k = CLS_VALID;
        for (int tries = 0; tries < 100 && k == CLS_VALID; tries++) {
            RAND_bytes(buf, (int)len);
            k = classify(buf, len);
        }
        if (k == CLS_VALID) continue;   /* a well-formed frame by chance: not garbage */
        cls[k]++;
        send_msg(self, &c, buf, len, 0);
    }
    self->inputs = cls[CLS_SILENT] + cls[CLS_UNDECODABLE] + cls[CLS_BATCH];
    if (control(self, &c, 32) != 0) goto done;
    long nacks = tally_nacks(self, &c, NULL);
    seen(self, "dropped_silently(no kind)", cls[CLS_SILENT]);
    self->refused = nacks + cls[CLS_SILENT];
    if (nacks != cls[CLS_UNDECODABLE] + cls[CLS_BATCH])
        problem(self, "%ld Nacks for %ld undecodable frames and %ld garbled batches", nacks, cls[CLS_UNDECODABLE],
                cls[CLS_BATCH]);
    expect(self, "totals.malformed_frames", "=", cls[CLS_UNDECODABLE] + cls[CLS_SILENT]);
    expect(self, "rejected.malformed", ">=", cls[CLS_UNDECODABLE]);
    expect_node(self, self->o.node, "rejected", "=", cls[CLS_UNDECODABLE] + cls[CLS_BATCH]);
    expect_node(self, self->o.node, "batches_in", "=", 1);
    /* random bytes straight on TCP, before any ZMTP greeting */
    long ntcp = n / 10 > 5 ? n / 10 : 5;
    for (long i = 0; i < ntcp; i++) {
        int fd = tcp_connect(self);
        self->inputs++;
        if (fd < 0) {
            problem(self, "TCP connect to %s failed: %s", self->o.endpoint, strerror(errno));
            break;
        }
        size_t len = 64 + (size_t)i * 397 % 4032;
        RAND_bytes(buf, (int)len);
        ssize_t w = send(fd, buf, len, MSG_NOSIGNAL);
        (void)w;
        if (tcp_closed_by_peer(fd, self->o.timeout_ms)) {
            seen(self, "tcp_closed", 1);
            self->refused++;
        } else {
            seen(self, "tcp_left_open", 1);
            problem(self, "the hub kept a TCP connection open after %zu random bytes", len);
        }
        close(fd);
    }
done:
    free(buf);
    conn_close(&c);
}

static void mode_truncated(hx_t *self)
{
    conn_t c = { 0 };
    long step = self->o.step > 0 ? self->o.step : 7, cls[4] = { 0 };
    uint8_t *body = NULL, *sig = NULL, *frame = NULL, *sbraw = NULL;
    if (open_registered(self, &c) != 0) goto done;
    bspec_t s = spec(self, "truncated");
    s.entries = 2;
    size_t blen, siglen, flen, sblen;
    body = pack_body(&s, &blen);
    sig = body ? sign_body(self, self->signer, body, blen, &siglen) : NULL;
    frame = sig ? sb_frame(body, blen, sig, siglen, tb_cert_key_id(self->cert), tb_signer_alg(self->signer), &flen,
                           &sbraw, &sblen)
                : NULL;
    if (!frame) goto done;
    long outer = 0, inner = 0, signedcut = 0;
    for (size_t k = 0; k < flen; k += (size_t)step) {      /* the frame cut */
        int cl = classify(frame, k);
        if (cl == CLS_VALID) continue;
        cls[cl]++;
        outer++;
        send_msg(self, &c, frame, k, 0);
    }
    for (size_t k = 0; k < sblen; k += (size_t)step) {     /* the SignedBatch cut, framed */
        uint8_t *f;
        size_t len;
        if (tb_frame_wrap(TONGBAN__FRAME__KIND_BATCH, sbraw, k, &f, &len) != TB_OK) continue;
        cls[CLS_BATCH]++;
        inner++;
        send_msg(self, &c, f, len, 0);
        free(f);
    }
    for (size_t k = 1; k < blen; k += (size_t)step) {      /* the Batch cut, validly signed */
        Tongban__Batch *b = tongban__batch__unpack(NULL, k, body);
        if (b) {   /* cut at a field boundary: still a Batch, not garbage */
            tongban__batch__free_unpacked(b, NULL);
            continue;
        }
        size_t sl, len;
        uint8_t *sg = sign_body(self, self->signer, body, k, &sl);
        uint8_t *f = sg ? sb_frame(body, k, sg, sl, tb_cert_key_id(self->cert), tb_signer_alg(self->signer), &len,
                                   NULL, NULL)
                        : NULL;
        if (f) {
            cls[CLS_BATCH]++;
            signedcut++;
            send_msg(self, &c, f, len, 0);
        }
        free(sg);
        free(f);
    }
    self->inputs = outer + inner + signedcut;
    /* the whole frame, the control: acked */
    want_t w = { TONGBAN__FRAME__KIND_ACK, s.seq, 1 };
    if (send_msg(self, &c, frame, flen, 0) != 0 || !wait_until(&c, self->o.timeout_ms, got_reply, &w)) {
        problem(self, "the uncut batch was not acked after its cut copies");
        goto done;
    }
    seen(self, "control_acked", 1);
    long nacks = tally_nacks(self, &c, "malformed");
    seen(self, "dropped_silently(empty)", cls[CLS_SILENT]);
    self->refused = nacks + cls[CLS_SILENT];
    if (nacks != cls[CLS_UNDECODABLE] + cls[CLS_BATCH])
        problem(self, "%ld Nacks for %ld cut frames, %ld cut signed batches, %ld cut bodies", nacks, outer, inner,
                signedcut);
    char name[128];
    snprintf(name, sizeof name, "cuts:frame=%ld,signed_batch=%ld,body=%ld", outer, inner, signedcut);
    seen(self, name, 0);
    expect(self, "totals.malformed_frames", "=", cls[CLS_UNDECODABLE] + cls[CLS_SILENT]);
    expect(self, "rejected.malformed", "=", cls[CLS_UNDECODABLE] + cls[CLS_BATCH]);
    expect_node(self, self->o.node, "batches_in", "=", 1);
done:
    free(body);
    free(sig);
    free(frame);
    free(sbraw);
    conn_close(&c);
}

static void mode_frame_count(hx_t *self)
{
    conn_t c = { 0 };
    if (open_registered(self, &c) != 0) goto done;
    size_t hl;
    uint8_t *hello = hello_frame(self->o.node, &hl);
    Tongban__Heartbeat hb = TONGBAN__HEARTBEAT__INIT;
    Tongban__Frame hbf = TONGBAN__FRAME__INIT;
    hbf.kind_case = TONGBAN__FRAME__KIND_HEARTBEAT;
    hbf.heartbeat = &hb;
    /* parts: 'B' a valid batch (new seq each), 'E' empty, 'H' Hello, 'T' Heartbeat */
    const char *msgs[] = { "BB", "BBB", "EB", "BE", "HH", "TTT", "BBBBBBBBBBBBBBBB" };
    size_t nm = sizeof msgs / sizeof msgs[0];
    for (size_t i = 0; i < nm; i++) {
        for (const char *p = msgs[i]; *p; p++) {
            int more = p[1] != '\0';
            if (*p == 'B') {
                bspec_t s = spec(self, "multipart");
                size_t len;
                uint8_t *f = batch_frame(self, &s, self->signer, self->cert, &len);
                if (f) send_msg(self, &c, f, len, more);
                free(f);
            } else if (*p == 'E') {
                send_msg(self, &c, NULL, 0, more);
            } else if (*p == 'H') {
                send_msg(self, &c, hello, hl, more);
            } else {
                send_frame(self, &c, &hbf, more);
            }
        }
    }
    free(hello);
    self->inputs = (long)nm;
    if (control(self, &c, 32) != 0) goto done;
    size_t odd = unexpected_answers(&c);
    if (odd || count_replies(&c, TONGBAN__FRAME__KIND_ACK, 0)) problem(self, "%zu answers to multipart messages", odd);
    size_t acks = 0;
    for (size_t i = 0; i < c.nreplies; i++) acks += c.replies[i].kind == TONGBAN__FRAME__KIND_ACK;
    if (acks != 1) problem(self, "%zu Acks: a batch inside a multipart message was accepted", acks - 1);
    self->refused = odd || acks != 1 ? 0 : (long)nm;
    seen(self, "dropped(no answer)", self->refused);
    expect(self, "totals.malformed_frames", "=", (long)nm);
    expect_node(self, self->o.node, "batches_in", "=", 1);
    expect_node(self, self->o.node, "rejected", "=", 0);
done:
    conn_close(&c);
}

static void mode_flood(hx_t *self)
{
    long n = self->o.count > 0 ? self->o.count : 200;
    long m = self->o.registered >= 0 ? self->o.registered : 50;
    long k = self->o.idle_tcp >= 0 ? self->o.idle_tcp : 100;
    size_t total = (size_t)(2 * n + m);
    conn_t *cs = calloc(total, sizeof *cs);
    conn_t probe = { 0 };
    int *fds = calloc((size_t)k + 1, sizeof *fds);
    long nfd = 0;
    char by_sk[41], by_pk[41];
    memset(&probe, 0, sizeof probe);
    if (!cs || !fds) goto done;
    if (m > 0) {   /* the registered connections are the bystander's: acks go to a node's newest one */
        char path[1024], err[TB_ERRLEN];
        snprintf(path, sizeof path, "%s/curve.key", self->o.bystander_dir ? self->o.bystander_dir : "");
        int ok = self->o.bystander_dir && tb_pki_read_z85(path, 1, by_sk, err, sizeof err) == TB_OK;
        snprintf(path, sizeof path, "%s/curve.pub", self->o.bystander_dir ? self->o.bystander_dir : "");
        if (!ok || tb_pki_read_z85(path, 0, by_pk, err, sizeof err) != TB_OK) {
            problem(self, "flood --registered needs --bystander-dir/--bystander-node");
            total = 0;
            goto done;
        }
    }
    for (long i = 0; i < k; i++) {          /* idle TCP: connect, say nothing */
        int fd = tcp_connect(self);
        if (fd >= 0) fds[nfd++] = fd;
    }
    for (size_t i = 0; i < total; i++) {
        char pub[41], sec[41];
        int rc;
        if (i < (size_t)n) {
            zmq_curve_keypair(pub, sec);
            rc = conn_open(self, &cs[i], sec, pub, -1);
        } else if (i < (size_t)(2 * n)) {
            rc = conn_open(self, &cs[i], NULL, NULL, -1);       /* no CURVE at all */
        } else {
            rc = conn_open(self, &cs[i], by_sk, by_pk, -1);
        }
        if (rc != 0) {
            problem(self, "cannot open connection %zu: %s", i, zmq_strerror(errno));
            total = i;
            break;
        }
        send_hello(self, &cs[i], i < (size_t)(2 * n) ? self->o.node : self->o.bystander_node);
    }
    self->inputs = (long)(total < (size_t)(2 * n) ? total : (size_t)(2 * n));   /* the refusable ones */
    /* while the flood is handshaking: a newcomer with a registered key is served */
    if (open_registered(self, &probe) == 0 && control(self, &probe, 32) == 0) seen(self, "probe_served", 1);
    uint64_t end = tb_now_ms() + (uint64_t)self->o.timeout_ms * 2;
    for (;;) {
        size_t final = 0;
        for (size_t i = 0; i < total; i++) final += conn_final(&cs[i]) ? 1 : 0;
        if (final == total || tb_now_ms() >= end) break;
        pump_many(cs, total, 100);
    }
    long welcomed_reg = 0;
    for (size_t i = 0; i < total; i++) {
        const conn_t *c = &cs[i];
        int reg = i >= (size_t)(2 * n);
        int w = count_replies(c, TONGBAN__FRAME__KIND_WELCOME, 0) > 0;
        if (reg) {
            welcomed_reg += w;
            continue;
        }
        if (w) {
            seen(self, "welcomed", 1);
            problem(self, "a %s client was welcomed", i < (size_t)n ? "unregistered" : "non-CURVE");
        } else if (c->auth_failed) {
            char name[48];
            snprintf(name, sizeof name, "%s:auth_failed:%d", i < (size_t)n ? "unregistered" : "no_curve",
                     c->auth_status);
            seen(self, name, 1);
            self->refused++;
        } else if (c->hs_failed || c->disconnected) {
            seen(self, i < (size_t)n ? "unregistered:handshake_failed" : "no_curve:handshake_failed", 1);
            self->refused++;
            if (i < (size_t)n) problem(self, "an unregistered key failed before ZAP");
        } else {
            seen(self, "no_outcome", 1);
            problem(self, "a flood connection had no outcome in time");
        }
    }
    seen(self, "registered:welcomed", welcomed_reg);
    seen(self, "idle_tcp:held", nfd);
    if (welcomed_reg != m) problem(self, "%ld of %ld registered connections welcomed", welcomed_reg, m);
    if (nfd != k) problem(self, "%ld of %ld idle TCP connections opened", nfd, k);
    expect(self, "totals.zap_denied", "=", n);
    expect_node(self, self->o.node, "batches_in", "=", 1);
done:
    for (size_t i = 0; cs && i < total; i++) conn_close(&cs[i]);
    conn_close(&probe);
    for (long i = 0; i < nfd; i++) close(fds[i]);
    free(cs);
    free(fds);
}

/* ---- main ---- */

static const struct {
    const char *name;
    void (*run)(hx_t *);
    int needs_identity;
} modes[] = {
    { "unregistered-key", mode_unregistered, 0 },
    { "sign-as-other", mode_sign_as_other, 1 },
    { "modified-body", mode_modified_body, 1 },
    { "replay", mode_replay, 1 },
    { "revoked", mode_revoked, 1 },
    { "acl", mode_acl, 1 },
    { "oversize", mode_oversize, 1 },
    { "random-bytes", mode_random, 1 },
    { "truncated", mode_truncated, 1 },
    { "frame-count", mode_frame_count, 1 },
    { "flood", mode_flood, 1 },
};

static int usage(const char *why)
{
    fprintf(stderr, "tb_hostile: %s\nusage: tb_hostile MODE --endpoint tcp://H:P --hub-public Z85 "
                    "[--curve-dir DIR --node ID --key K --cert C --dest D] [--timeout-ms N] [options]\nmodes:",
            why);
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) fprintf(stderr, " %s", modes[i].name);
    fprintf(stderr, "\n(see the comment at the top of tests/tools/tb_hostile.c)\n");
    return RC_USAGE;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_args(int argc, char **argv, opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->timeout_ms = 5000;
    o->registered = o->idle_tcp = -1;
    if (argc < 2) return usage("no mode");
    o->mode = argv[1];
    static const struct {
        const char *name;
        size_t off;
        int num;
        long lo, hi;
    } defs[] = {
        { "--endpoint", offsetof(opts_t, endpoint), 0, 0, 0 },
        { "--hub-public", offsetof(opts_t, hub_public), 0, 0, 0 },
        { "--curve-dir", offsetof(opts_t, curve_dir), 0, 0, 0 },
        { "--node", offsetof(opts_t, node), 0, 0, 0 },
        { "--key", offsetof(opts_t, key), 0, 0, 0 },
        { "--cert", offsetof(opts_t, cert), 0, 0, 0 },
        { "--dest", offsetof(opts_t, dest), 0, 0, 0 },
        { "--other-node", offsetof(opts_t, other_node), 0, 0, 0 },
        { "--other-key", offsetof(opts_t, other_key), 0, 0, 0 },
        { "--other-cert", offsetof(opts_t, other_cert), 0, 0, 0 },
        { "--exec", offsetof(opts_t, exec_cmd), 0, 0, 0 },
        { "--bystander-dir", offsetof(opts_t, bystander_dir), 0, 0, 0 },
        { "--bystander-node", offsetof(opts_t, bystander_node), 0, 0, 0 },
        { "--timeout-ms", offsetof(opts_t, timeout_ms), 1, 100, 600000 },
        { "--count", offsetof(opts_t, count), 1, 1, 100000 },
        { "--max-bytes", offsetof(opts_t, max_bytes), 1, 4096, 1L << 30 },
        { "--step", offsetof(opts_t, step), 1, 1, 100000 },
        { "--registered", offsetof(opts_t, registered), 1, 0, 10000 },
        { "--idle-tcp", offsetof(opts_t, idle_tcp), 1, 0, 10000 },
    };
    for (int i = 2; i < argc; i += 2) {
        size_t d = 0, nd = sizeof defs / sizeof defs[0];
        while (d < nd && strcmp(argv[i], defs[d].name) != 0) d++;
        if (d == nd) return usage("unknown option");
        if (i + 1 >= argc) return usage("an option without its value");
        char *field = (char *)o + defs[d].off;
        if (!defs[d].num) *(const char **)field = argv[i + 1];
        else if (parse_long(argv[i + 1], defs[d].lo, defs[d].hi, (long *)field) != 0)
            return usage("a number out of range");
    }
    if (!o->endpoint || !o->hub_public || strlen(o->hub_public) != 40)
        return usage("--endpoint and --hub-public (40 characters) are required");
    return -1;
}

int main(int argc, char **argv)
{
    hx_t self;
    memset(&self, 0, sizeof self);
    int rc = parse_args(argc, argv, &self.o);
    if (rc >= 0) return rc;
    const opts_t *o = &self.o;
    size_t mi = 0, nmodes = sizeof modes / sizeof modes[0];
    while (mi < nmodes && strcmp(modes[mi].name, o->mode) != 0) mi++;
    if (mi == nmodes) return usage("unknown mode");
    if (!o->node || !o->curve_dir) return usage("--node and --curve-dir are required");
    if (modes[mi].needs_identity && (!o->key || !o->cert || !o->dest))
        return usage("this mode needs --key, --cert and --dest");
    if (strcmp(o->mode, "sign-as-other") == 0 && (!o->other_node || !o->other_key || !o->other_cert))
        return usage("sign-as-other needs --other-node, --other-key and --other-cert");
    if (strcmp(o->mode, "revoked") == 0 && !o->exec_cmd) return usage("revoked needs --exec CMD");
    if (!o->bystander_dir != !o->bystander_node) return usage("--bystander-dir and --bystander-node go together");
    if (strcmp(o->mode, "oversize") == 0 && !o->max_bytes) return usage("oversize needs --max-bytes");

    char path[1024], err[TB_ERRLEN];
    snprintf(path, sizeof path, "%s/curve.key", o->curve_dir);
    if (tb_pki_read_z85(path, 1, self.sk, err, sizeof err) != TB_OK) {
        fprintf(stderr, "tb_hostile: %s\n", err);
        return RC_USAGE;
    }
    snprintf(path, sizeof path, "%s/curve.pub", o->curve_dir);
    if (tb_pki_read_z85(path, 0, self.pk, err, sizeof err) != TB_OK) {
        fprintf(stderr, "tb_hostile: %s\n", err);
        return RC_USAGE;
    }
    self.have_curve = 1;
    if (o->key && (tb_signer_load(o->key, &self.signer, err, sizeof err) != TB_OK ||
                   tb_cert_load_file(o->cert, &self.cert, err, sizeof err) != TB_OK)) {
        fprintf(stderr, "tb_hostile: %s\n", err);
        rc = RC_USAGE;
        goto out;
    }
    if (o->other_key && (tb_signer_load(o->other_key, &self.other_signer, err, sizeof err) != TB_OK ||
                         tb_cert_load_file(o->other_cert, &self.other_cert, err, sizeof err) != TB_OK)) {
        fprintf(stderr, "tb_hostile: %s\n", err);
        rc = RC_USAGE;
        goto out;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    self.seq = ((uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u) << 8;   /* as tb_lightnode */
    self.ok = 1;
    self.ctx = zmq_ctx_new();
    zmq_ctx_set(self.ctx, ZMQ_MAX_SOCKETS, 8192);
    zmq_ctx_set(self.ctx, ZMQ_IO_THREADS, 2);

    modes[mi].run(&self);

    printf("{\"mode\":\"%s\",\"node\":\"%s\",\"inputs\":%ld,\"refused\":%ld,\"seen\":{", o->mode, o->node,
           self.inputs, self.refused);
    for (size_t i = 0; i < self.nseen; i++) {
        if (i) putchar(',');
        put_json_str(self.seen_name[i]);
        printf(":%ld", self.seen_n[i]);
    }
    printf("},\"expect\":{%s},\"ok\":%s,\"problems\":", self.expect, self.ok ? "true" : "false");
    put_json_str(self.problems);
    printf("}\n");
    fflush(stdout);
    rc = self.ok ? RC_OK : RC_FAIL;
    zmq_ctx_term(self.ctx);
out:
    tb_signer_destroy(&self.signer);
    tb_signer_destroy(&self.other_signer);
    tb_cert_destroy(&self.cert);
    tb_cert_destroy(&self.other_cert);
    return rc;
}
