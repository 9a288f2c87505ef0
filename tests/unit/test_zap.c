/* test_zap.c -- the hub's ZAP handler against real CURVE handshakes and hand-made requests. */
#include "tbtest.h"

#include "zap.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <zmq.h>

/* Returns 1 if s contains sub. */
static int has(const char *s, const char *sub)
{
    return s && strstr(s, sub) != NULL;
}

/* The registry: one known client key. */
typedef struct {
    uint8_t key[32];
    int calls;
} registry_t;

static const char *lookup(void *arg, const uint8_t key[32])
{
    registry_t *r = arg;
    r->calls++;
    return memcmp(key, r->key, 32) == 0 ? "110000" : NULL;
}

/* No linger, and a receive never blocks for more than 2 s (a broken
 * handler fails the test instead of hanging it). */
static void linger0(void *sock)
{
    int zero = 0, to = 2000;
    zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(sock, ZMQ_RCVTIMEO, &to, sizeof to);
}

/* A DEALER that speaks CURVE to the server key with its own key pair. */
static void *curve_client(void *ctx, const char *server_pub, const char *pub, const char *sec,
                          const char *endpoint)
{
    void *d = zmq_socket(ctx, ZMQ_DEALER);
    linger0(d);
    zmq_setsockopt(d, ZMQ_CURVE_SERVERKEY, server_pub, 40);
    zmq_setsockopt(d, ZMQ_CURVE_PUBLICKEY, pub, 40);
    zmq_setsockopt(d, ZMQ_CURVE_SECRETKEY, sec, 40);
    CHECK(zmq_connect(d, endpoint) == 0);
    return d;
}

/* Waits up to ms for input on sock. Returns 1 if there is some. */
static int readable(void *sock, long ms)
{
    zmq_pollitem_t it = { sock, 0, ZMQ_POLLIN, 0 };
    return zmq_poll(&it, 1, ms) == 1 && (it.revents & ZMQ_POLLIN);
}

/* Sends the given parts as one multipart message. */
static void send_parts(void *sock, const char *const *parts, const size_t *lens, int n)
{
    for (int i = 0; i < n; i++) zmq_send(sock, parts[i], lens[i], i + 1 < n ? ZMQ_SNDMORE : 0);
}

/* Receives a whole reply into parts (up to 8 of 64 bytes, NUL-terminated).
 * Returns the number of parts, or -1 if none came within 1 s. */
static int recv_reply(void *sock, char parts[8][64], size_t lens[8])
{
    if (!readable(sock, 1000)) return -1;
    int n = 0, more = 1;
    while (more) {
        char buf[64];
        int r = zmq_recv(sock, buf, sizeof buf - 1, 0);
        if (r < 0) return -1;
        if (n < 8) {
            size_t l = (size_t)r < sizeof buf - 1 ? (size_t)r : sizeof buf - 1;
            memcpy(parts[n], buf, l);
            parts[n][l] = '\0';
            lens[n] = (size_t)r;
        }
        n++;
        size_t ml = sizeof more;
        zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &ml);
    }
    return n;
}

/* Real handshakes: a registered key gets in with its node id as User-Id,
 * an unknown key does not get a single message through. */
static void test_handshakes(void *ctx, registry_t *reg)
{
    char spub[41], ssec[41], apub[41], asec[41], xpub[41], xsec[41];
    CHECK(zmq_curve_keypair(spub, ssec) == 0);
    CHECK(zmq_curve_keypair(apub, asec) == 0);
    CHECK(zmq_curve_keypair(xpub, xsec) == 0);
    CHECK(zmq_z85_decode(reg->key, apub) != NULL);

    void *zap = zmq_socket(ctx, ZMQ_REP);
    linger0(zap);
    CHECK(zmq_bind(zap, "inproc://zeromq.zap.01") == 0);
    void *router = zmq_socket(ctx, ZMQ_ROUTER);
    linger0(router);
    int one = 1;
    zmq_setsockopt(router, ZMQ_CURVE_SERVER, &one, sizeof one);
    zmq_setsockopt(router, ZMQ_CURVE_SECRETKEY, ssec, 40);
    zmq_setsockopt(router, ZMQ_ZAP_DOMAIN, "tongban", 7);
    CHECK(zmq_bind(router, "tcp://127.0.0.1:*") == 0);
    char endpoint[256] = "";
    size_t elen = sizeof endpoint;
    CHECK(zmq_getsockopt(router, ZMQ_LAST_ENDPOINT, endpoint, &elen) == 0);
    CHECK(has(endpoint, "tcp://127.0.0.1:"));

    /* the registered client */
    void *a = curve_client(ctx, spub, apub, asec, endpoint);
    CHECK(zmq_send(a, "hello", 5, 0) == 5);
    char who[128] = "unset";
    CHECK(readable(zap, 5000));
    int rc = zap_handle(zap, lookup, reg, who, sizeof who);
    CHECK_MSG(rc == 1, "zap_handle for a registered key returned %d", rc);
    CHECK(reg->calls == 1);
    char want[64];
    snprintf(want, sizeof want, "key=%s", apub);
    CHECK_MSG(has(who, want) && has(who, "127.0.0.1"), "who: %s", who);

    CHECK(readable(router, 5000));
    zmq_msg_t msg;
    zmq_msg_init(&msg);
    int n = zmq_msg_recv(&msg, router, 0);   /* routing id */
    CHECK(n > 0 && zmq_msg_more(&msg));
    zmq_msg_close(&msg);
    zmq_msg_init(&msg);
    n = zmq_msg_recv(&msg, router, 0);
    CHECK(n == 5 && memcmp(zmq_msg_data(&msg), "hello", 5) == 0);
    const char *uid = n >= 0 ? zmq_msg_gets(&msg, "User-Id") : NULL;
    CHECK_MSG(uid && strcmp(uid, "110000") == 0, "User-Id %s", uid ? uid : "(none)");
    zmq_msg_close(&msg);

    /* the unregistered client: denied, and nothing from it reaches the
     * ROUTER (answer any retries of its handshake while we wait) */
    void *x = curve_client(ctx, spub, xpub, xsec, endpoint);
    CHECK(zmq_send(x, "intruder", 8, ZMQ_DONTWAIT) == 8 || zmq_errno() == EAGAIN);
    CHECK(readable(zap, 5000));
    strcpy(who, "unset");
    rc = zap_handle(zap, lookup, reg, who, sizeof who);
    CHECK_MSG(rc == 0, "zap_handle for an unknown key returned %d", rc);
    snprintf(want, sizeof want, "key=%s", xpub);
    CHECK_MSG(has(who, want), "who: %s", who);
    int got = 0, denied = 0, other = 0;
    for (int i = 0; i < 10; i++) {
        zmq_pollitem_t items[2] = { { zap, 0, ZMQ_POLLIN, 0 }, { router, 0, ZMQ_POLLIN, 0 } };
        if (zmq_poll(items, 2, 50) <= 0) continue;
        if (items[0].revents & ZMQ_POLLIN) {
            if (zap_handle(zap, lookup, reg, who, sizeof who) == 0) denied++;
            else other++;
        }
        if (items[1].revents & ZMQ_POLLIN) {
            got++;
            zmq_msg_init(&msg);
            zmq_msg_recv(&msg, router, ZMQ_DONTWAIT);
            zmq_msg_close(&msg);
        }
    }
    CHECK_MSG(got == 0, "the ROUTER received %d parts from an unregistered key", got);
    CHECK(other == 0);
    CHECK(reg->calls == 2 + denied);

    /* the admitted client still works */
    CHECK(zmq_send(a, "again", 5, 0) == 5);
    CHECK(readable(router, 2000));
    char buf[16];
    CHECK(zmq_recv(router, buf, sizeof buf, 0) > 0);
    CHECK(zmq_recv(router, buf, sizeof buf, 0) == 5 && memcmp(buf, "again", 5) == 0);

    zmq_close(a);
    zmq_close(x);
    zmq_close(router);
    zmq_close(zap);
}

/* Hand-made requests on a REP of our own: the reply format, and malformed
 * requests answered 400 without taking the socket down. */
static void test_requests(void *ctx, registry_t *reg)
{
    void *rep = zmq_socket(ctx, ZMQ_REP);
    linger0(rep);
    CHECK(zmq_bind(rep, "inproc://test-zap") == 0);
    void *req = zmq_socket(ctx, ZMQ_REQ);
    linger0(req);
    CHECK(zmq_connect(req, "inproc://test-zap") == 0);
    char parts[8][64];
    size_t lens[8];
    char who[128];
    uint8_t other[32];
    memset(other, 0x42, sizeof other);

    const char *ok_req[7] = { "1.0", "req-1", "tongban", "10.1.2.3", "", "CURVE", (const char *)reg->key };
    size_t ok_len[7] = { 3, 5, 7, 8, 0, 5, 32 };
    send_parts(req, ok_req, ok_len, 7);
    CHECK(readable(rep, 1000));
    CHECK(zap_handle(rep, lookup, reg, who, sizeof who) == 1);
    CHECK_MSG(has(who, "10.1.2.3") && has(who, "key="), "who: %s", who);
    int n = recv_reply(req, parts, lens);
    CHECK(n == 6);
    if (n == 6) {
        CHECK(strcmp(parts[0], "1.0") == 0);
        CHECK(strcmp(parts[1], "req-1") == 0);
        CHECK(strcmp(parts[2], "200") == 0);
        CHECK(strcmp(parts[4], "110000") == 0);
        CHECK(lens[5] == 0);
    }

    ok_req[1] = "req-2";
    ok_req[6] = (const char *)other;
    send_parts(req, ok_req, ok_len, 7);
    CHECK(readable(rep, 1000));
    CHECK(zap_handle(rep, lookup, reg, who, sizeof who) == 0);
    n = recv_reply(req, parts, lens);
    CHECK(n == 6 && strcmp(parts[1], "req-2") == 0 && strcmp(parts[2], "400") == 0 && lens[4] == 0);

    /* malformed: another mechanism, a short key, extra parts, too few parts */
    struct {
        const char *what;
        int nparts;
        const char *mech;
        size_t keylen;
    } bad[] = {
        { "PLAIN", 7, "PLAIN", 32 },
        { "NULL", 6, "NULL", 0 },
        { "31-byte key", 7, "CURVE", 31 },
        { "33-byte key", 7, "CURVE", 33 },
        { "8 parts", 8, "CURVE", 32 },
        { "mechanism CURVEX", 7, "CURVEX", 32 },
        { "3 parts", 3, "CURVE", 32 },
        { "1 part", 1, "CURVE", 32 },
        { "PLAIN again", 7, "PLAIN", 32 },   /* the socket still answers after short requests */
    };
    uint8_t key[40];
    memcpy(key, reg->key, 32);
    memset(key + 32, 0, 8);
    int calls = reg->calls;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char rid[16];
        snprintf(rid, sizeof rid, "bad-%zu", i);
        const char *p[8] = { "1.0", rid, "tongban", "10.1.2.3", "", bad[i].mech, (const char *)key, "x" };
        size_t l[8] = { 3, strlen(rid), 7, 8, 0, strlen(bad[i].mech), bad[i].keylen, 1 };
        send_parts(req, p, l, bad[i].nparts);
        CHECK(readable(rep, 1000));
        strcpy(who, "stale");
        int rc = zap_handle(rep, lookup, reg, who, sizeof who);
        CHECK_MSG(rc == -1, "%s: zap_handle returned %d", bad[i].what, rc);
        CHECK_MSG(strcmp(who, "stale") != 0, "%s: who left as it was", bad[i].what);
        n = recv_reply(req, parts, lens);
        CHECK_MSG(n == 6 && strcmp(parts[0], "1.0") == 0 && strcmp(parts[2], "400") == 0,
                  "%s: %d reply parts, status %s", bad[i].what, n, n >= 3 ? parts[2] : "(none)");
        if (n == 6 && bad[i].nparts >= 2)
            CHECK_MSG(strcmp(parts[1], rid) == 0, "%s: request id %s", bad[i].what, parts[1]);
        if (n < 0) {
            /* a REQ without its reply is stuck: start over with a fresh one */
            zmq_close(req);
            req = zmq_socket(ctx, ZMQ_REQ);
            linger0(req);
            zmq_connect(req, "inproc://test-zap");
        }
    }
    CHECK_MSG(reg->calls == calls, "the key of a malformed request was looked up");

    /* a receive that fails (nothing pending, 50 ms timeout) still clears who */
    int to = 50;
    zmq_setsockopt(rep, ZMQ_RCVTIMEO, &to, sizeof to);
    strcpy(who, "stale");
    CHECK(zap_handle(rep, lookup, reg, who, sizeof who) == -1);
    CHECK_MSG(who[0] == '\0', "who: %s", who);
    CHECK(zap_handle(rep, lookup, reg, NULL, 0) == -1);

    zmq_close(req);
    zmq_close(rep);
}

int main(void)
{
    if (!zmq_has("curve")) {
        fprintf(stderr, "libzmq without CURVE: nothing to test\n");
        CHECK(zmq_has("curve"));
        return tbtest_done("test_zap");
    }
    void *ctx = zmq_ctx_new();
    registry_t reg;
    memset(&reg, 0, sizeof reg);
    test_handshakes(ctx, &reg);
    test_requests(ctx, &reg);
    zmq_ctx_term(ctx);
    return tbtest_done("test_zap");
}
