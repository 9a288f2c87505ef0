/* raw_relay.c -- the transport's ceiling: a bare libzmq ROUTER relay between
 * DEALER senders and one DEALER receiver on tcp loopback, no CURVE, no
 * storage, no protobuf. The bench's raw_zmq_relay scenario; hub_relay is
 * compared with it.
 *
 *   tb_raw_relay [--senders 2] [--messages 200000] [--size 512]
 *                [--window 8000] [--ack-every 1000] [--timeout-ms 120000]
 *
 * Shape (chosen to match the hub path, see bench/README.md):
 *   sender i (DEALER "S<i>") --[ "R" | payload ]--> relay (ROUTER)
 *   relay --[ "S<i>" | payload ]--> receiver (DEALER "R")
 *   receiver --[ "S<i>" | u64 count ]--> relay --[ "R" | count ]--> sender i
 * The receiver acks every --ack-every messages of a sender (cumulative
 * count, like a DeliverAck per 1,000-entry batch); a sender keeps at most
 * --window messages unacked (8 batches x 1,000 entries in the hub path). The
 * relay only swaps the routing frames (zero-copy zmq_msg_t forwarding), with
 * ROUTER_MANDATORY like the hub. Each role has its own zmq context (own I/O
 * thread), as separate processes would.
 *
 * Output: one JSON line {"messages", "bytes", "seconds", "msgs_per_s",
 * "mib_per_s", "p50_ms", "p99_ms", "max_ms", "rss_mib"}: seconds from the
 * first send to the last message received; latency per message, send to
 * receive; rss_mib the peak RSS of the whole process (relay, senders and
 * receiver; the 8 MB latency histogram is only touched where used).
 * Exit: 0 done, 1 failure or timeout, 2 usage.
 */
#define _GNU_SOURCE             /* pthread_tryjoin_np */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#define MAX_SENDERS 64
#define HIST_US 1000000          /* latency histogram: 1 us buckets up to 1 s */
#define HWM 1000000

typedef struct {
    unsigned senders;
    uint64_t messages, size, window, ack_every, timeout_ms;
} opts_t;

typedef struct {
    const opts_t *o;
    char endpoint[256];
    atomic_int relay_ready, receiver_ready, stop, failed;
    atomic_uint_fast64_t first_send_ns;  /* 0 until the first send */
    uint64_t last_recv_ns;
    uint64_t *hist;              /* receiver's latency histogram (us) */
    uint64_t received;
} bench_t;

typedef struct {
    bench_t *b;
    unsigned idx;
} sender_arg_t;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (*s < '0' || *s > '9') return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static void fail(bench_t *b, const char *what)
{
    fprintf(stderr, "tb_raw_relay: %s: %s\n", what, zmq_strerror(errno));
    atomic_store(&b->failed, 1);
    atomic_store(&b->stop, 1);
}

static void set_common(void *s)
{
    int hwm = HWM, zero = 0;
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
}

/* ---- relay: receive [from | to | body], send [to | from | body] ---- */

static void *relay_main(void *arg)
{
    bench_t *b = arg;
    void *ctx = zmq_ctx_new();
    void *r = zmq_socket(ctx, ZMQ_ROUTER);
    int one = 1;
    set_common(r);
    zmq_setsockopt(r, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    if (zmq_bind(r, "tcp://127.0.0.1:*") != 0) {
        fail(b, "relay bind");
        goto done;
    }
    size_t len = sizeof b->endpoint;
    zmq_getsockopt(r, ZMQ_LAST_ENDPOINT, b->endpoint, &len);
    atomic_store(&b->relay_ready, 1);
    zmq_msg_t part[3];
    while (!atomic_load(&b->stop)) {
        zmq_pollitem_t it = { r, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll(&it, 1, 100) <= 0) continue;
        for (int burst = 0; burst < 1024; burst++) {
            int n = 0, more = 1;
            while (more && n < 3) {
                zmq_msg_init(&part[n]);
                if (zmq_msg_recv(&part[n], r, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
                    zmq_msg_close(&part[n]);
                    goto next;
                }
                more = zmq_msg_more(&part[n]);
                n++;
            }
            if (n == 2 && !more) {              /* receiver's hello */
                atomic_store(&b->receiver_ready, 1);
            } else if (n == 3 && !more) {
                /* [to | from | body] out of [from | to | body] */
                if (zmq_msg_send(&part[1], r, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
                    zmq_msg_send(&part[0], r, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
                    zmq_msg_send(&part[2], r, ZMQ_DONTWAIT) < 0) {
                    fail(b, "relay send");
                    for (int i = 0; i < n; i++) zmq_msg_close(&part[i]);
                    goto done;
                }
                n = 0;                          /* sent messages are emptied by zmq */
            }
            for (int i = 0; i < n; i++) zmq_msg_close(&part[i]);
            while (more) {                      /* drop anything malformed */
                zmq_msg_t m;
                zmq_msg_init(&m);
                zmq_msg_recv(&m, r, 0);
                more = zmq_msg_more(&m);
                zmq_msg_close(&m);
            }
        }
    next:;
    }
done:
    zmq_close(r);
    zmq_ctx_term(ctx);
    return NULL;
}

/* ---- sender: a window of unacked messages, acks are cumulative counts ---- */

static void *sender_main(void *arg)
{
    sender_arg_t *sa = arg;
    bench_t *b = sa->b;
    const opts_t *o = b->o;
    char id[16];
    snprintf(id, sizeof id, "S%u", sa->idx);
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    set_common(s);
    zmq_setsockopt(s, ZMQ_ROUTING_ID, id, strlen(id));
    uint8_t *payload = calloc(1, o->size);
    if (!payload || zmq_connect(s, b->endpoint) != 0) {
        fail(b, "sender setup");
        goto done;
    }
    memset(payload, 'x', o->size);
    uint64_t sent = 0, acked = 0;
    while (acked < o->messages && !atomic_load(&b->stop)) {
        while (sent < o->messages && sent - acked < o->window) {
            uint64_t t = now_ns();
            memcpy(payload, &t, sizeof t);                  /* send time, for latency */
            if (o->size >= 12) memcpy(payload + 8, &sa->idx, 4);
            if (zmq_send(s, "R", 1, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) break;
            if (zmq_send(s, payload, o->size, 0) < 0) {
                fail(b, "sender send");
                goto done;
            }
            uint_fast64_t zero = 0;
            atomic_compare_exchange_strong(&b->first_send_ns, &zero, t);
            sent++;
        }
        int can_send = sent < o->messages && sent - acked < o->window;
        zmq_pollitem_t it = { s, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll(&it, 1, can_send ? 0 : 100) < 0 && errno != EINTR) {
            fail(b, "sender poll");
            goto done;
        }
        for (;;) {
            char from[8];
            uint64_t cnt;
            if (zmq_recv(s, from, sizeof from, ZMQ_DONTWAIT) < 0) break;
            if (zmq_recv(s, &cnt, sizeof cnt, 0) == (int)sizeof cnt && cnt > acked) acked = cnt;
        }
    }
done:
    free(payload);
    zmq_close(s);
    zmq_ctx_term(ctx);
    return NULL;
}

/* ---- receiver: count, latency, ack every --ack-every per sender ---- */

static void *receiver_main(void *arg)
{
    bench_t *b = arg;
    const opts_t *o = b->o;
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    set_common(s);
    zmq_setsockopt(s, ZMQ_ROUTING_ID, "R", 1);
    uint64_t count[MAX_SENDERS] = {0};
    uint64_t total = o->messages * o->senders;
    uint8_t *buf = malloc(o->size);
    if (!buf || zmq_connect(s, b->endpoint) != 0) {
        fail(b, "receiver setup");
        goto done;
    }
    while (!atomic_load(&b->receiver_ready) && !atomic_load(&b->stop)) {
        zmq_send(s, "hello", 5, 0);           /* until the relay has seen us */
        struct timespec ts = { 0, 20 * 1000000 };
        nanosleep(&ts, NULL);
    }
    while (b->received < total && !atomic_load(&b->stop)) {
        zmq_pollitem_t it = { s, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll(&it, 1, 100) <= 0) continue;
        for (int burst = 0; burst < 1024; burst++) {
            char from[16];
            int fl = zmq_recv(s, from, sizeof from, ZMQ_DONTWAIT);
            if (fl < 0) break;
            int n = zmq_recv(s, buf, o->size, 0);
            uint64_t now = now_ns();
            if (n != (int)o->size || fl < 2 || fl > 8) continue;
            uint64_t t;
            uint32_t idx;
            memcpy(&t, buf, sizeof t);
            memcpy(&idx, buf + 8, sizeof idx);
            if (idx >= o->senders) continue;
            uint64_t us = now > t ? (now - t) / 1000 : 0;
            b->hist[us < HIST_US ? us : HIST_US - 1]++;
            b->received++;
            b->last_recv_ns = now;
            uint64_t c = ++count[idx];
            if (c % o->ack_every == 0 || c == o->messages) {
                zmq_send(s, from, (size_t)fl, ZMQ_SNDMORE);
                zmq_send(s, &c, sizeof c, 0);
            }
        }
    }
    {
        /* the last acks must leave before the socket closes */
        int linger = 1000;
        zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    }
done:
    free(buf);
    zmq_close(s);
    zmq_ctx_term(ctx);
    return NULL;
}

static double pct_ms(const uint64_t *hist, uint64_t n, unsigned pct)
{
    uint64_t want = (n * pct + 99) / 100, acc = 0;
    if (!want) want = 1;
    for (uint64_t i = 0; i < HIST_US; i++)
        if ((acc += hist[i]) >= want) return (double)i / 1000.0;
    return (double)HIST_US / 1000.0;
}

static double max_ms(const uint64_t *hist)
{
    for (uint64_t i = HIST_US; i-- > 0;)
        if (hist[i]) return (double)i / 1000.0;
    return 0;
}

/* Peak resident set of this process (all roles), MiB; 0 if unknown. */
static double vm_hwm_mib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kib = 0;
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) kib = strtod(line + 6, NULL);
    fclose(f);
    return kib / 1024.0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: tb_raw_relay [--senders 2] [--messages 200000 (per sender)] [--size 512]\n"
               "                    [--window 8000] [--ack-every 1000] [--timeout-ms 120000]\n");
}

int main(int argc, char **argv)
{
    opts_t o = { 2, 200000, 512, 8000, 1000, 120000 };
    for (int i = 1; i < argc; i++) {
        uint64_t v = 0;
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            usage(stderr);
            return 2;
        }
        const char *val = argv[++i];
        int bad = 0;
        if (strcmp(a, "--senders") == 0) {
            bad = parse_u64(val, 1, MAX_SENDERS, &v);
            o.senders = (unsigned)v;
        } else if (strcmp(a, "--messages") == 0) bad = parse_u64(val, 1, UINT32_MAX, &o.messages);
        else if (strcmp(a, "--size") == 0) bad = parse_u64(val, 12, 1u << 24, &o.size);
        else if (strcmp(a, "--window") == 0) bad = parse_u64(val, 1, 1000000, &o.window);
        else if (strcmp(a, "--ack-every") == 0) bad = parse_u64(val, 1, 1000000, &o.ack_every);
        else if (strcmp(a, "--timeout-ms") == 0) bad = parse_u64(val, 1, 86400000, &o.timeout_ms);
        else bad = 1;
        if (bad) {
            fprintf(stderr, "tb_raw_relay: bad option %s %s\n", a, val);
            usage(stderr);
            return 2;
        }
    }
    if (o.ack_every > o.window) o.ack_every = o.window;

    bench_t b;
    memset(&b, 0, sizeof b);
    b.o = &o;
    b.hist = calloc(HIST_US, sizeof *b.hist);
    if (!b.hist) return 1;
    pthread_t relay, recv, snd[MAX_SENDERS];
    sender_arg_t sa[MAX_SENDERS];
    pthread_create(&relay, NULL, relay_main, &b);
    while (!atomic_load(&b.relay_ready) && !atomic_load(&b.stop)) {
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    pthread_create(&recv, NULL, receiver_main, &b);
    while (!atomic_load(&b.receiver_ready) && !atomic_load(&b.stop)) {
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
    }
    for (unsigned i = 0; i < o.senders; i++) {
        sa[i].b = &b;
        sa[i].idx = i;
        pthread_create(&snd[i], NULL, sender_main, &sa[i]);
    }
    /* watchdog: the receiver ends when it has everything */
    uint64_t start = now_ns(), total = o.messages * o.senders;
    int timed_out = 0, joined = 0;
    while (!atomic_load(&b.stop)) {
        struct timespec ts = { 0, 10 * 1000000 };
        nanosleep(&ts, NULL);
        if (now_ns() - start > o.timeout_ms * 1000000u) {
            timed_out = 1;
            atomic_store(&b.stop, 1);
        }
        if (pthread_tryjoin_np(recv, NULL) == 0) {
            joined = 1;
            break;
        }
    }
    if (!joined) pthread_join(recv, NULL);
    /* senders end on their last ack; then the relay */
    for (unsigned i = 0; i < o.senders; i++) {
        if (timed_out) atomic_store(&b.stop, 1);
        pthread_join(snd[i], NULL);
    }
    atomic_store(&b.stop, 1);
    pthread_join(relay, NULL);

    int ok = !atomic_load(&b.failed) && !timed_out && b.received == total;
    uint64_t first = atomic_load(&b.first_send_ns);
    double secs = b.received && b.last_recv_ns > first ? (double)(b.last_recv_ns - first) / 1e9 : 0;
    double rate = secs > 0 ? (double)b.received / secs : 0;
    printf("{\"messages\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"senders\":%u,\"window\":%" PRIu64
           ",\"seconds\":%.3f,\"msgs_per_s\":%.0f,\"mib_per_s\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f"
           ",\"max_ms\":%.3f,\"rss_mib\":%.1f,\"ok\":%s}\n",
           b.received, o.size, o.senders, o.window, secs, rate, rate * (double)o.size / 1048576.0,
           b.received ? pct_ms(b.hist, b.received, 50) : 0, b.received ? pct_ms(b.hist, b.received, 99) : 0,
           max_ms(b.hist), vm_hwm_mib(), ok ? "true" : "false");
    if (!ok)
        fprintf(stderr, "tb_raw_relay: %s: received %" PRIu64 " of %" PRIu64 "\n",
                timed_out ? "timed out" : "failed", b.received, total);
    free(b.hist);
    return ok ? 0 : 1;
}
