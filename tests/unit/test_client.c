/* test_client.c -- libtongban's client without a node: open/argument
 * errors, a node that is not there, and an in-test ROUTER thread speaking
 * the API framing (one packed ApiRequest / ApiReply per frame) that answers
 * with the wrong id first, garbage, errors, silence, verify results, event
 * batches; CURVE over tcp, with and without the server's consent. */
#include "tbtest.h"

#include <tongban/tongban.h>

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "api.pb-c.h"

/* Returns 1 if s contains sub. */
static int has(const char *s, const char *sub)
{
    return s && sub && strstr(s, sub) != NULL;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the in-test node: a ROUTER thread answering by op ---- */

typedef struct {
    void *ctx;
    void *router;
    void *zap;                 /* REP on the ZAP endpoint when zap_deny */
    pthread_t th;
    pthread_mutex_t mu;
    char endpoint[512];
    /* what the last requests carried (under mu) */
    char last_op[64];
    char last_args[4096];
    int events_next_calls;
    char ack_args[512];
    int zap_requests;
    /* a request left unanswered: its late reply goes out before the next one */
    int have_silent;
    uint64_t silent_id;
    zmq_msg_t silent_rid;
} server_t;

static void send_frames(void *s, zmq_msg_t *rid, const void *data, size_t len)
{
    zmq_msg_t copy;
    zmq_msg_init(&copy);
    zmq_msg_copy(&copy, rid);
    zmq_msg_send(&copy, s, ZMQ_SNDMORE);
    zmq_send(s, data, len, 0);
}

static void reply(server_t *sv, zmq_msg_t *rid, uint64_t id, int status, const char *error, const char *result)
{
    Tongban__ApiReply r = TONGBAN__API_REPLY__INIT;
    r.id = id;
    r.status = status;
    r.error = (char *)(error ? error : "");
    r.result = (char *)(result ? result : "");
    size_t n = tongban__api_reply__get_packed_size(&r);
    uint8_t *buf = malloc(n + 1);
    tongban__api_reply__pack(&r, buf);
    send_frames(sv->router, rid, buf, n);
    free(buf);
}

static const char *LICENCE_JSON =
    "{\"identifier\":\"1.2.156.3005.2.X.91110000MA01XXXX0X.1.001.A\",\"holder_name\":\"张三\","
    "\"status\":\"valid\",\"revision\":3,\"issuer_node\":\"110000\"}";

/* Answers one request; returns 0 to go on, 1 to stop. */
static int answer(server_t *sv, zmq_msg_t *rid, const Tongban__ApiRequest *q)
{
    const char *op = q->op;
    json_t *args = json_loads(q->args, 0, NULL);
    int stop = 0;

    pthread_mutex_lock(&sv->mu);
    snprintf(sv->last_op, sizeof sv->last_op, "%s", op);
    snprintf(sv->last_args, sizeof sv->last_args, "%s", q->args);
    pthread_mutex_unlock(&sv->mu);
    if (sv->have_silent) {                    /* the late answer to the silent request */
        reply(sv, &sv->silent_rid, sv->silent_id, 0, NULL, "{\"which\":\"late\"}");
        zmq_msg_close(&sv->silent_rid);
        sv->have_silent = 0;
    }
    if (strcmp(op, "test.echo") == 0) {
        reply(sv, rid, q->id, 0, NULL, q->args);
    } else if (strcmp(op, "test.wrong_id") == 0) {
        reply(sv, rid, q->id + 1000, 0, NULL, "{\"which\":\"wrong\"}");
        reply(sv, rid, q->id - 1, 0, NULL, "{\"which\":\"older\"}");
        reply(sv, rid, q->id, 0, NULL, "{\"which\":\"right\"}");
    } else if (strcmp(op, "test.garbage") == 0) {
        static const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 };
        send_frames(sv->router, rid, junk, sizeof junk);
    } else if (strcmp(op, "test.refused") == 0) {
        reply(sv, rid, q->id, 14 /* TB_ERR_REFUSED */,
              "case.act: accept refused: only the lead handling node (440000) may accept", NULL);
    } else if (strcmp(op, "test.badjson") == 0) {
        reply(sv, rid, q->id, 0, NULL, "{not json");
    } else if (strcmp(op, "test.badstatus") == 0) {
        reply(sv, rid, q->id, 999, "from the future", NULL);
    } else if (strcmp(op, "test.silent") == 0) {
        zmq_msg_init(&sv->silent_rid);
        zmq_msg_copy(&sv->silent_rid, rid);
        sv->silent_id = q->id;
        sv->have_silent = 1;
    } else if (strcmp(op, "licence.get") == 0) {
        reply(sv, rid, q->id, 0, NULL, LICENCE_JSON);
    } else if (strcmp(op, "licence.verify") == 0) {
        const char *id = json_string_value(json_object_get(args, "identifier"));
        if (id && strcmp(id, "revoked") == 0)
            reply(sv, rid, q->id, 0, NULL,
                  "{\"identifier\":\"revoked\",\"verdict\":\"revoked\",\"seal_ok\":true,\"status\":\"revoked\","
                  "\"valid_from\":\"2024-01-01\",\"valid_to\":\"2029-12-31\",\"revision\":4,"
                  "\"issuer_node\":\"440000\",\"source\":\"issuer\",\"local_age_s\":42,\"issuer\":\"answered\","
                  "\"detail\":\"revoked by the issuer\\non 2025-01-02\"}");
        else if (id && strcmp(id, "offline") == 0)
            reply(sv, rid, q->id, 0, NULL,
                  "{\"identifier\":\"offline\",\"verdict\":\"valid\",\"seal_ok\":true,\"status\":\"valid\","
                  "\"valid_from\":\"2024-01-01\",\"valid_to\":\"\",\"revision\":1,\"issuer_node\":\"310000\","
                  "\"source\":\"local\",\"local_age_s\":3600,\"issuer\":\"timeout\",\"detail\":\"\"}");
        else if (id && strcmp(id, "forged") == 0)
            reply(sv, rid, q->id, 0, NULL,
                  "{\"verdict\":\"bad_seal\",\"seal_ok\":false,\"source\":\"local\",\"issuer\":\"not_asked\"}");
        else
            reply(sv, rid, q->id, 11 /* TB_ERR_NOTFOUND */, "licence.verify: no licence nowhere here",
                  "{\"verdict\":\"unknown\",\"seal_ok\":false,\"source\":\"local\",\"issuer\":\"unavailable\"}");
    } else if (strcmp(op, "events.next") == 0) {
        pthread_mutex_lock(&sv->mu);
        sv->events_next_calls++;
        pthread_mutex_unlock(&sv->mu);
        if (!json_object_get(args, "after"))
            reply(sv, rid, q->id, 0, NULL,
                  "{\"events\":[{\"id\":7,\"at\":\"2025-01-01T00:00:00Z\",\"kind\":\"licence\",\"key\":\"L1\","
                  "\"origin\":\"110000\",\"body\":{\"status\":\"valid\"}},"
                  "{\"id\":9,\"at\":\"2025-01-01T00:00:01Z\",\"kind\":\"case_event\",\"key\":\"C1/E1\","
                  "\"origin\":\"440000\",\"body\":{\"action\":\"submit\"}}],\"last_id\":9}");
        else
            reply(sv, rid, q->id, 0, NULL, "{\"events\":[],\"last_id\":9}");
    } else if (strcmp(op, "events.ack") == 0) {
        pthread_mutex_lock(&sv->mu);
        snprintf(sv->ack_args, sizeof sv->ack_args, "%s", q->args);
        pthread_mutex_unlock(&sv->mu);
        reply(sv, rid, q->id, 0, NULL, "{\"cursor\":\"app\",\"last_id\":9}");
    } else if (strcmp(op, "case.act") == 0) {
        reply(sv, rid, q->id, 0, NULL,
              "{\"case_id\":\"110000-20250101-0123456789ab\",\"state\":\"accepted\",\"overdue\":true}");
    } else if (strcmp(op, "risk.publish") == 0) {
        reply(sv, rid, q->id, 0, NULL, "{\"risk_id\":\"R-1\",\"level\":2}");
    } else if (strcmp(op, "test.quit") == 0) {
        reply(sv, rid, q->id, 0, NULL, "{}");
        stop = 1;
    } else {
        reply(sv, rid, q->id, 1 /* TB_ERR_INVALID */, "unknown op", NULL);
    }
    json_decref(args);
    return stop;
}

/* The ZAP handler of a server that refuses every client. */
static void zap_deny(server_t *sv)
{
    zmq_msg_t part;
    char version[8] = "", reqid[64] = "";
    size_t reqid_len = 0;
    int i = 0, more = 1;
    while (more) {
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, sv->zap, 0) < 0) { zmq_msg_close(&part); return; }
        if (i == 0) snprintf(version, sizeof version, "%.*s", (int)zmq_msg_size(&part), (char *)zmq_msg_data(&part));
        if (i == 1 && zmq_msg_size(&part) <= sizeof reqid) {
            reqid_len = zmq_msg_size(&part);
            memcpy(reqid, zmq_msg_data(&part), reqid_len);
        }
        more = zmq_msg_more(&part);
        zmq_msg_close(&part);
        i++;
    }
    sv->zap_requests++;
    zmq_send(sv->zap, version, strlen(version), ZMQ_SNDMORE);
    zmq_send(sv->zap, reqid, reqid_len, ZMQ_SNDMORE);
    zmq_send(sv->zap, "400", 3, ZMQ_SNDMORE);
    zmq_send(sv->zap, "not in api.clients", 18, ZMQ_SNDMORE);
    zmq_send(sv->zap, "", 0, ZMQ_SNDMORE);
    zmq_send(sv->zap, "", 0, 0);
}

static void *server_loop(void *arg)
{
    server_t *sv = arg;
    for (;;) {
        zmq_pollitem_t it[2] = { { sv->router, 0, ZMQ_POLLIN, 0 }, { sv->zap, 0, ZMQ_POLLIN, 0 } };
        int rc = zmq_poll(it, sv->zap ? 2 : 1, 15000);
        if (rc < 0 && errno == EINTR) continue;
        if (rc <= 0) break;                   /* a test that forgot to stop us */
        if (sv->zap && (it[1].revents & ZMQ_POLLIN)) zap_deny(sv);
        if (!(it[0].revents & ZMQ_POLLIN)) continue;
        zmq_msg_t rid, body;
        zmq_msg_init(&rid);
        zmq_msg_init(&body);
        zmq_msg_recv(&rid, sv->router, 0);
        zmq_msg_recv(&body, sv->router, 0);
        Tongban__ApiRequest *q = tongban__api_request__unpack(NULL, zmq_msg_size(&body), zmq_msg_data(&body));
        int stop = q ? answer(sv, &rid, q) : 0;
        if (q) tongban__api_request__free_unpacked(q, NULL);
        zmq_msg_close(&rid);
        zmq_msg_close(&body);
        if (stop) break;
    }
    if (sv->have_silent) zmq_msg_close(&sv->silent_rid);
    return NULL;
}

/* Starts a server on endpoint (ipc path or tcp://127.0.0.1:*); with
 * server_secret, CURVE; with deny, a ZAP handler refusing everyone. */
static void server_start(server_t *sv, const char *endpoint, const char *server_secret, int deny)
{
    memset(sv, 0, sizeof *sv);
    pthread_mutex_init(&sv->mu, NULL);
    sv->ctx = zmq_ctx_new();
    if (deny) {
        sv->zap = zmq_socket(sv->ctx, ZMQ_REP);
        CHECK(zmq_bind(sv->zap, "inproc://zeromq.zap.01") == 0);
    }
    sv->router = zmq_socket(sv->ctx, ZMQ_ROUTER);
    int zero = 0, one = 1;
    zmq_setsockopt(sv->router, ZMQ_LINGER, &zero, sizeof zero);
    if (server_secret) {
        zmq_setsockopt(sv->router, ZMQ_CURVE_SERVER, &one, sizeof one);
        zmq_setsockopt(sv->router, ZMQ_CURVE_SECRETKEY, server_secret, 41);
    }
    CHECK(zmq_bind(sv->router, endpoint) == 0);
    size_t len = sizeof sv->endpoint;
    zmq_getsockopt(sv->router, ZMQ_LAST_ENDPOINT, sv->endpoint, &len);
    pthread_create(&sv->th, NULL, server_loop, sv);
}

static void server_stop(server_t *sv, tb_client_t *c)
{
    if (c) CHECK(tb_call(c, "test.quit", NULL, NULL) == TB_OK);
    pthread_join(sv->th, NULL);
    zmq_close(sv->router);
    if (sv->zap) zmq_close(sv->zap);
    zmq_ctx_term(sv->ctx);
    pthread_mutex_destroy(&sv->mu);
}

static void last_args(server_t *sv, char *buf, size_t len)
{
    pthread_mutex_lock(&sv->mu);
    snprintf(buf, len, "%s", sv->last_args);
    pthread_mutex_unlock(&sv->mu);
}

/* ---- tests ---- */

static void test_open_and_arguments(void)
{
    tb_client_t *c = (tb_client_t *)1;
    char why[256];
    tb_client_opts_t o = { .errbuf = why, .errlen = sizeof why };

    CHECK(tb_client_open(NULL, &o, &c) == TB_ERR_INVALID && c == NULL && has(why, "ipc://"));
    CHECK(tb_client_open("http://x", &o, &c) == TB_ERR_INVALID && c == NULL);
    CHECK(tb_client_open("ipc://", &o, &c) == TB_ERR_INVALID);
    CHECK(tb_client_open("tcp://127.0.0.1:1", &o, &c) == TB_ERR_INVALID && has(why, "server_key"));
    o.server_key = "tooshort";
    o.client_secret = "x";
    CHECK(tb_client_open("tcp://127.0.0.1:1", &o, &c) == TB_ERR_INVALID && has(why, "server_key"));
    char pub[41], sec[41], pub2[41], sec2[41];
    zmq_curve_keypair(pub, sec);
    zmq_curve_keypair(pub2, sec2);
    o.server_key = pub;
    CHECK(tb_client_open("tcp://127.0.0.1:1", &o, &c) == TB_ERR_INVALID && has(why, "client_secret"));
    o.client_secret = sec;
    o.client_public = pub2;                   /* not sec's public key */
    CHECK(tb_client_open("tcp://127.0.0.1:1", &o, &c) == TB_ERR_INVALID && has(why, "does not belong"));
    o.client_public = NULL;
    o.timeout_ms = -1;
    CHECK(tb_client_open("tcp://127.0.0.1:1", &o, &c) == TB_ERR_INVALID && has(why, "timeout_ms"));
    o.timeout_ms = 0;
    CHECK(tb_client_open("tcp://127.0.0.1:1", &o, &c) == TB_OK && c != NULL && why[0] == '\0');
    tb_client_close(&c);
    CHECK(c == NULL);
    CHECK(tb_client_open("ipc:///nonexistent/dir/x.api", NULL, NULL) == TB_ERR_INVALID);

    /* NULL-safety of the frees and accessors */
    tb_client_close(NULL);
    tb_client_close(&c);
    tb_licence_t *l = NULL;
    tb_licence_free(&l);
    tb_licence_free(NULL);
    tb_case_t *cs = NULL;
    tb_case_free(&cs);
    tb_events_t *ev = NULL;
    tb_events_close(&ev);
    tb_free(NULL);
    CHECK(tb_client_error(NULL) != NULL && tb_client_result(NULL) == NULL);
    CHECK(tb_licence_field(NULL, "status") == NULL && tb_licence_revision(NULL) == 0);
    CHECK(strcmp(tb_licence_json(NULL), "") == 0 && tb_case_id(NULL) == NULL && tb_event_id(NULL) == 0);
    CHECK(tb_call(NULL, "x", NULL, NULL) == TB_ERR_INVALID);
    CHECK(strcmp(tb_verdict_name(TB_VERDICT_NOT_YET_VALID), "not_yet_valid") == 0);
    CHECK(strcmp(tb_verdict_name((tb_verdict_t)99), "unknown") == 0);
    tb_case_action_t a;
    CHECK(tb_case_action_parse("part_done", &a) == TB_OK && a == TB_CASE_PART_DONE);
    CHECK(tb_case_action_parse("rate", &a) == TB_ERR_INVALID);
    CHECK(strcmp(tb_case_action_name(TB_CASE_DELIVER), "deliver") == 0 && tb_case_action_name((tb_case_action_t)42) == NULL);
}

static void test_read_key(const char *dir)
{
    char path[600], key[41], why[256], pub[41], sec[41];
    zmq_curve_keypair(pub, sec);
    snprintf(path, sizeof path, "%s/curve.key", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "%s\n", sec);
    fclose(f);
    chmod(path, 0644);
    CHECK(tb_client_read_key(path, 1, key, why, sizeof why) == TB_ERR_PERM && has(why, "too open"));
    CHECK(tb_client_read_key(path, 0, key, why, sizeof why) == TB_OK && strcmp(key, sec) == 0);
    chmod(path, 0600);
    CHECK(tb_client_read_key(path, 1, key, why, sizeof why) == TB_OK && strcmp(key, sec) == 0);
    f = fopen(path, "w");
    fprintf(f, "not a key\n");
    fclose(f);
    CHECK(tb_client_read_key(path, 1, key, why, sizeof why) == TB_ERR_INVALID && has(why, "Z85"));
    snprintf(path, sizeof path, "%s/missing.key", dir);
    CHECK(tb_client_read_key(path, 1, key, why, sizeof why) == TB_ERR_IO && has(why, "missing.key"));
}

/* Nothing listens: a missing socket file fails at once, a stale one
 * (a socket nobody accepts on) within the timeout. */
static void test_nothing_listens(const char *dir)
{
    char ep[700], path[600];
    tb_client_t *c = NULL;
    tb_client_opts_t o = { .timeout_ms = 300 };

    snprintf(ep, sizeof ep, "ipc://%s/nobody.api", dir);
    CHECK(tb_client_open(ep, &o, &c) == TB_OK);
    long long t0 = now_ms();
    tb_err_t e = tb_call(c, "record.get", "{\"catalog\":\"a\",\"key\":\"b\"}", NULL);
    long long took = now_ms() - t0;
    CHECK_MSG(e == TB_ERR_UNAVAILABLE || e == TB_ERR_TIMEOUT, "got %s", tb_strerror(e));
    CHECK_MSG(took < 3000, "took %lld ms", took);
    CHECK(has(tb_client_error(c), "nobody.api"));
    tb_client_close(&c);

    snprintf(path, sizeof path, "%s/stale.api", dir);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    CHECK(strlen(path) < sizeof sa.sun_path);
    memcpy(sa.sun_path, path, strlen(path) + 1 < sizeof sa.sun_path ? strlen(path) + 1 : sizeof sa.sun_path - 1);
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    close(fd);                                /* leaves a socket file nobody listens on */
    snprintf(ep, sizeof ep, "ipc://%s", path);
    CHECK(tb_client_open(ep, &o, &c) == TB_OK);
    t0 = now_ms();
    e = tb_call(c, "record.get", "{\"catalog\":\"a\",\"key\":\"b\"}", NULL);
    took = now_ms() - t0;
    CHECK_MSG(e == TB_ERR_UNAVAILABLE || e == TB_ERR_TIMEOUT, "got %s", tb_strerror(e));
    CHECK_MSG(took >= 250 && took < 3000, "took %lld ms", took);
    CHECK_MSG(has(tb_client_error(c), "not reachable"), "%s", tb_client_error(c));
    tb_client_close(&c);
}

static void test_framing(const char *dir)
{
    server_t sv;
    char ep[600], *res = NULL, args[4096];
    tb_client_t *c = NULL;
    tb_client_opts_t o = { .timeout_ms = 500 };

    snprintf(ep, sizeof ep, "ipc://%s/node.api", dir);
    server_start(&sv, ep, NULL, 0);
    CHECK(tb_client_open(ep, &o, &c) == TB_OK);

    /* a round trip; the args travel as given */
    CHECK(tb_call(c, "test.echo", "{\"a\": [1, 2]}", &res) == TB_OK);
    CHECK(res && strcmp(res, "{\"a\": [1, 2]}") == 0);
    CHECK(tb_client_result(c) && strcmp(tb_client_result(c), res) == 0 && tb_client_error(c)[0] == '\0');
    tb_free(res);
    CHECK(tb_call(c, "test.echo", "[1]", &res) == TB_ERR_INVALID && res == NULL && has(tb_client_error(c), "object"));
    CHECK(tb_call(c, "test.echo", "{\"a\":", &res) == TB_ERR_INVALID && has(tb_client_error(c), "not JSON"));
    CHECK(tb_call(c, "", NULL, &res) == TB_ERR_INVALID);

    /* replies with other ids (later and earlier) are skipped */
    CHECK(tb_call(c, "test.wrong_id", NULL, &res) == TB_OK);
    CHECK_MSG(res && has(res, "right"), "%s", res ? res : "(null)");
    tb_free(res);

    /* garbage: protocol error, and the client still works after it */
    CHECK(tb_call(c, "test.garbage", NULL, &res) == TB_ERR_PROTO && res == NULL);
    CHECK(has(tb_client_error(c), "undecodable"));
    CHECK(tb_call(c, "test.badjson", NULL, &res) == TB_ERR_PROTO && has(tb_client_error(c), "not a JSON object"));
    CHECK(tb_call(c, "test.badstatus", NULL, &res) == TB_ERR_PROTO && has(tb_client_error(c), "999"));
    CHECK(tb_call(c, "test.echo", "{\"n\":1}", &res) == TB_OK && has(res, "\"n\":1"));
    tb_free(res);

    /* the node's error: status and its text */
    CHECK(tb_call(c, "test.refused", NULL, &res) == TB_ERR_REFUSED && res == NULL);
    CHECK(strcmp(tb_client_error(c), "case.act: accept refused: only the lead handling node (440000) may accept") == 0);
    CHECK(tb_client_result(c) == NULL);

    /* silence: a timeout within the bound; the late reply is discarded later */
    long long t0 = now_ms();
    CHECK(tb_call(c, "test.silent", NULL, &res) == TB_ERR_TIMEOUT && res == NULL);
    long long took = now_ms() - t0;
    CHECK_MSG(took >= 450 && took < 3000, "took %lld ms", took);
    CHECK(has(tb_client_error(c), "no reply"));
    CHECK(tb_call(c, "test.echo", "{\"after\":\"silence\"}", &res) == TB_OK);
    CHECK_MSG(res && has(res, "silence") && !has(res, "late"), "%s", res ? res : "(null)");
    tb_free(res);

    /* typed calls: a licence handle */
    tb_licence_t *l = NULL;
    CHECK(tb_licence_get(c, "1.2.156.3005.2.X.91110000MA01XXXX0X.1.001.A", &l) == TB_OK && l);
    CHECK(strcmp(tb_licence_field(l, "holder_name"), "张三") == 0);
    CHECK(tb_licence_field(l, "revision") == NULL && tb_licence_revision(l) == 3);
    CHECK(has(tb_licence_json(l), "\"issuer_node\":\"110000\""));
    tb_licence_free(&l);
    CHECK(l == NULL);
    last_args(&sv, args, sizeof args);
    CHECK(has(args, "\"identifier\":\"1.2.156.3005.2.X.91110000MA01XXXX0X.1.001.A\""));
    CHECK(tb_licence_issue(c, "{\"identifier\":", &l) == TB_ERR_INVALID && l == NULL);
    CHECK(tb_licence_suspend(c, "L1", NULL, &l) == TB_ERR_INVALID && has(tb_client_error(c), "reason"));
    CHECK(tb_licence_update(c, "L1", "{\"identifier\":\"L2\"}", &l) == TB_ERR_INVALID && has(tb_client_error(c), "differs"));

    /* a case action: what goes out, what comes back */
    tb_case_t *cs = NULL;
    CHECK(tb_case_act(c, "110000-20250101-0123456789ab", TB_CASE_ACCEPT, "ok", NULL, &cs) == TB_OK && cs);
    CHECK(strcmp(tb_case_state(cs), "accepted") == 0 && tb_case_overdue(cs) == 1);
    CHECK(strcmp(tb_case_id(cs), "110000-20250101-0123456789ab") == 0);
    tb_case_free(&cs);
    last_args(&sv, args, sizeof args);
    CHECK(has(args, "\"action\":\"accept\"") && has(args, "\"detail\":\"ok\"") && !has(args, "result"));
    CHECK(tb_case_rate(c, "x", 6, NULL, NULL) == TB_ERR_INVALID && has(tb_client_error(c), "score"));

    char *risk = NULL;
    CHECK(tb_risk_publish(c, 2, "title", "detail", NULL, &risk) == TB_OK && risk && strcmp(risk, "R-1") == 0);
    tb_free(risk);
    last_args(&sv, args, sizeof args);
    CHECK(has(args, "\"level\":2") && !has(args, "region"));
    CHECK(has(tb_client_result(c), "\"level\":2"));
    CHECK(tb_risk_publish(c, 5, "t", "d", NULL, &risk) == TB_ERR_INVALID && risk == NULL);

    server_stop(&sv, c);
    tb_client_close(&c);
}

static void test_verify(const char *dir)
{
    server_t sv;
    char ep[600], args[4096];
    tb_client_t *c = NULL;
    tb_client_opts_t o = { .timeout_ms = 500 };
    tb_verify_result_t v;

    snprintf(ep, sizeof ep, "ipc://%s/verify.api", dir);
    server_start(&sv, ep, NULL, 0);
    CHECK(tb_client_open(ep, &o, &c) == TB_OK);

    CHECK(tb_licence_verify(c, "revoked", TB_VERIFY_ASK_ISSUER, 2000, &v) == TB_OK);
    CHECK(v.verdict == TB_VERDICT_REVOKED && v.seal_ok == 1 && v.authoritative == 1 && v.issuer_unavailable == 0);
    CHECK(v.local_age_s == 42 && v.revision == 4);
    CHECK(strcmp(v.issuer_node, "440000") == 0 && strcmp(v.source, "issuer") == 0 && strcmp(v.issuer, "answered") == 0);
    CHECK(strcmp(v.status, "revoked") == 0 && strcmp(v.valid_to, "2029-12-31") == 0);
    CHECK(strcmp(v.detail, "revoked by the issuer on 2025-01-02") == 0);   /* one line */
    last_args(&sv, args, sizeof args);
    CHECK_MSG(has(args, "\"ask_issuer\":true") && has(args, "\"timeout_ms\":2000"), "%s", args);

    CHECK(tb_licence_verify(c, "offline", TB_VERIFY_ASK_ISSUER, 0, &v) == TB_OK);
    CHECK(v.verdict == TB_VERDICT_VALID && v.authoritative == 0 && v.issuer_unavailable == 1);
    CHECK(v.local_age_s == 3600 && strcmp(v.issuer_node, "310000") == 0 && v.valid_to[0] == '\0');
    last_args(&sv, args, sizeof args);
    CHECK_MSG(has(args, "\"timeout_ms\":500"), "%s", args);   /* 0 = the client's timeout */

    CHECK(tb_licence_verify(c, "forged", 0, 0, &v) == TB_OK);
    CHECK(v.verdict == TB_VERDICT_BAD_SEAL && v.seal_ok == 0 && v.local_age_s == -1 && v.issuer_unavailable == 0);
    last_args(&sv, args, sizeof args);
    CHECK(has(args, "\"ask_issuer\":false") && !has(args, "timeout_ms"));

    /* an error with a result: both the status and the verdict */
    CHECK(tb_licence_verify(c, "nothing", TB_VERIFY_ASK_ISSUER, 100, &v) == TB_ERR_NOTFOUND);
    CHECK(v.verdict == TB_VERDICT_UNKNOWN && v.issuer_unavailable == 1);
    CHECK(has(tb_client_error(c), "no licence nowhere"));

    CHECK(tb_licence_verify(c, "x", 2, 0, &v) == TB_ERR_INVALID && has(tb_client_error(c), "flags"));
    CHECK(tb_licence_verify(c, "x", 0, 60001, &v) == TB_ERR_INVALID);
    CHECK(tb_licence_verify(c, "x", 0, 0, NULL) == TB_ERR_INVALID);

    server_stop(&sv, c);
    tb_client_close(&c);
}

static void test_events(const char *dir)
{
    server_t sv;
    char ep[600];
    tb_client_t *c = NULL;
    tb_events_t *ev = NULL;
    const tb_event_t *e = NULL;
    tb_client_opts_t o = { .timeout_ms = 500 };

    snprintf(ep, sizeof ep, "ipc://%s/events.api", dir);
    server_start(&sv, ep, NULL, 0);
    CHECK(tb_client_open(ep, &o, &c) == TB_OK);
    CHECK(tb_events_open(c, "", &ev) == TB_ERR_INVALID && ev == NULL);
    CHECK(tb_events_open(c, "app", &ev) == TB_OK && ev);

    /* two events in one reply, handed out one by one */
    CHECK(tb_events_next(ev, 100, &e) == TB_OK && e);
    CHECK(tb_event_id(e) == 7 && strcmp(tb_event_kind(e), "licence") == 0 && strcmp(tb_event_key(e), "L1") == 0);
    CHECK(strcmp(tb_event_origin(e), "110000") == 0 && strcmp(tb_event_at(e), "2025-01-01T00:00:00Z") == 0);
    CHECK(strcmp(tb_event_body(e), "{\"status\":\"valid\"}") == 0 && has(tb_event_json(e), "\"id\":7"));
    char args[4096];
    last_args(&sv, args, sizeof args);
    CHECK_MSG(has(args, "\"cursor\":\"app\"") && has(args, "\"max\":100") && has(args, "\"wait_ms\":100") &&
              !has(args, "after"), "%s", args);
    CHECK(tb_events_next(ev, 100, &e) == TB_OK && tb_event_id(e) == 9 && strcmp(tb_event_kind(e), "case_event") == 0);
    pthread_mutex_lock(&sv.mu);
    int calls = sv.events_next_calls;
    pthread_mutex_unlock(&sv.mu);
    CHECK(calls == 1);

    /* ack persists the cursor at the event handed out */
    CHECK(tb_events_ack(ev, e) == TB_OK);
    pthread_mutex_lock(&sv.mu);
    CHECK_MSG(has(sv.ack_args, "\"cursor\":\"app\"") && has(sv.ack_args, "\"id\":9"), "%s", sv.ack_args);
    pthread_mutex_unlock(&sv.mu);
    CHECK(tb_events_ack(ev, NULL) == TB_ERR_INVALID);
    CHECK(tb_events_ack_id(ev, 0) == TB_ERR_INVALID);
    CHECK(tb_events_ack_id(ev, 8) == TB_OK);
    pthread_mutex_lock(&sv.mu);
    CHECK_MSG(has(sv.ack_args, "\"id\":8"), "%s", sv.ack_args);
    pthread_mutex_unlock(&sv.mu);

    /* the next fetch starts after the last event handed out; none: timeout, with an answer */
    CHECK(tb_events_next(ev, 50, &e) == TB_ERR_TIMEOUT && e == NULL);
    CHECK(tb_client_result(c) != NULL && has(tb_client_error(c), "no event"));
    last_args(&sv, args, sizeof args);
    CHECK_MSG(has(args, "\"after\":9"), "%s", args);
    CHECK(tb_events_next(ev, 30001, &e) == TB_ERR_INVALID);
    CHECK(tb_events_next(NULL, 0, &e) == TB_ERR_INVALID);

    tb_events_close(&ev);
    CHECK(ev == NULL);
    server_stop(&sv, c);
    tb_client_close(&c);
}

static void test_curve(void)
{
    server_t sv;
    char spub[41], ssec[41], cpub[41], csec[41], other[41], osec[41], *res = NULL;
    tb_client_t *c = NULL;

    zmq_curve_keypair(spub, ssec);
    zmq_curve_keypair(cpub, csec);
    zmq_curve_keypair(other, osec);

    /* the right server key: a round trip over tcp with CURVE */
    server_start(&sv, "tcp://127.0.0.1:*", ssec, 0);
    tb_client_opts_t o = { .timeout_ms = 1000, .server_key = spub, .client_public = cpub, .client_secret = csec };
    CHECK(tb_client_open(sv.endpoint, &o, &c) == TB_OK);
    CHECK_MSG(tb_call(c, "test.echo", "{\"curve\":true}", &res) == TB_OK && has(res, "curve"), "%s",
              tb_client_error(c));
    tb_free(res);
    tb_client_close(&c);

    /* the wrong server key: the handshake fails, nothing is sent */
    tb_client_opts_t w = { .timeout_ms = 400, .server_key = other, .client_secret = csec };
    CHECK(tb_client_open(sv.endpoint, &w, &c) == TB_OK);
    long long t0 = now_ms();
    tb_err_t e = tb_call(c, "test.echo", "{}", &res);
    CHECK_MSG(e == TB_ERR_UNAVAILABLE && now_ms() - t0 < 3000, "%s: %s", tb_strerror(e), tb_client_error(c));
    tb_client_close(&c);
    CHECK(tb_client_open(sv.endpoint, &o, &c) == TB_OK);
    server_stop(&sv, c);
    tb_client_close(&c);

    /* a server whose ZAP handler refuses this client: refused, at once */
    server_start(&sv, "tcp://127.0.0.1:*", ssec, 1);
    o.timeout_ms = 3000;
    CHECK(tb_client_open(sv.endpoint, &o, &c) == TB_OK);
    t0 = now_ms();
    e = tb_call(c, "test.echo", "{}", &res);
    long long took = now_ms() - t0;
    CHECK_MSG(e == TB_ERR_REFUSED && has(tb_client_error(c), "api.clients"), "%s: %s", tb_strerror(e),
              tb_client_error(c));
    CHECK_MSG(took < 2500, "took %lld ms", took);
    tb_client_close(&c);
    /* stop the server with a client it admits: none -- so end its loop by closing */
    CHECK(sv.zap_requests >= 1);
    zmq_ctx_shutdown(sv.ctx);
    pthread_join(sv.th, NULL);
    zmq_close(sv.router);
    zmq_close(sv.zap);
    zmq_ctx_term(sv.ctx);
    pthread_mutex_destroy(&sv.mu);
}

int main(void)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s", tbtest_tmpdir("client"));

    test_open_and_arguments();
    test_read_key(dir);
    test_nothing_listens(dir);
    test_framing(dir);
    test_verify(dir);
    test_events(dir);
    test_curve();

    tbtest_rmtree(dir);
    return tbtest_done("test_client");
}
