/* tb_testpeer.c -- a light peer for tests: speaks the node side of the wire
 * protocol to a real hub, honestly or with a chosen fault.
 *
 *   tb_testpeer hello    COMMON                     Welcome expected (exit 0), none -> exit 3
 *   tb_testpeer tampered COMMON --key K --cert C --dest D
 *        a correctly signed batch with one body byte flipped after signing;
 *        exit 0 when the hub answers Nack(bad_signature)
 *   tb_testpeer forge-sender COMMON --key K --cert C --dest D --claim ID
 *        a batch that claims another sender; exit 0 on Nack(wrong_sender)
 *   tb_testpeer resend COMMON --key K --cert C --dest D
 *        a valid batch sent twice, byte-identical; exit 0 when both are acked
 * COMMON: --endpoint E --hub-public Z85 --curve-dir DIR --node ID [--timeout-ms N]
 * Other outcomes exit 4; usage errors 2.
 */
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "crypto.h"
#include "pki.h"
#include "wire.h"

static const char *opt(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 2; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) return argv[i + 1];
    return def;
}

/* Waits for one frame; returns it or NULL on timeout. */
static Tongban__Frame *recv_frame(void *s, long timeout_ms, Tongban__Frame__KindCase want)
{
    uint64_t end = tb_now_ms() + (uint64_t)timeout_ms;
    while (tb_now_ms() < end) {
        zmq_pollitem_t it = { s, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll(&it, 1, 100) <= 0) continue;
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s, 0) < 0) { zmq_msg_close(&m); continue; }
        Tongban__Frame *f = tongban__frame__unpack(NULL, zmq_msg_size(&m), zmq_msg_data(&m));
        zmq_msg_close(&m);
        if (f && (want == TONGBAN__FRAME__KIND__NOT_SET || f->kind_case == want)) return f;
        if (f) tongban__frame__free_unpacked(f, NULL);
    }
    return NULL;
}

static int send_hello(void *s, const char *node)
{
    Tongban__Hello h = TONGBAN__HELLO__INIT;
    h.node_id = (char *)node;
    h.protocol = TB_PROTOCOL_VERSION;
    h.software = "tb_testpeer";
    Tongban__Frame f = TONGBAN__FRAME__INIT;
    f.kind_case = TONGBAN__FRAME__KIND_HELLO;
    f.hello = &h;
    return tb_frame_send(s, NULL, 0, &f, 0) == TB_OK ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: tb_testpeer hello|tampered|forge-sender --endpoint E --hub-public Z "
                        "--curve-dir DIR --node ID [...]\n");
        return 2;
    }
    const char *mode = argv[1];
    const char *endpoint = opt(argc, argv, "--endpoint", NULL);
    const char *hubpub = opt(argc, argv, "--hub-public", NULL);
    const char *cdir = opt(argc, argv, "--curve-dir", NULL);
    const char *node = opt(argc, argv, "--node", NULL);
    long timeout = strtol(opt(argc, argv, "--timeout-ms", "5000"), NULL, 10);
    if (!endpoint || !hubpub || !cdir || !node || strlen(hubpub) != 40) {
        fprintf(stderr, "tb_testpeer: --endpoint, --hub-public (40 chars), --curve-dir, --node required\n");
        return 2;
    }
    char path[1024], sk[41], pk[41], err[TB_ERRLEN];
    snprintf(path, sizeof path, "%s/curve.key", cdir);
    if (tb_pki_read_z85(path, 1, sk, err, sizeof err) != TB_OK) { fprintf(stderr, "%s\n", err); return 2; }
    snprintf(path, sizeof path, "%s/curve.pub", cdir);
    if (tb_pki_read_z85(path, 0, pk, err, sizeof err) != TB_OK) { fprintf(stderr, "%s\n", err); return 2; }

    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, hubpub, 40);
    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, sk, 40);
    zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, pk, 40);
    zmq_connect(s, endpoint);
    int rc = 4;
    Tongban__Frame *f = NULL;
    tb_signer_t *signer = NULL;
    tb_cert_t *cert = NULL;
    uint8_t *sb = NULL;
    size_t sblen = 0;

    send_hello(s, node);
    f = recv_frame(s, timeout, TONGBAN__FRAME__KIND_WELCOME);
    if (!f) {
        printf("no welcome within %ld ms\n", timeout);
        rc = 3;
        goto done;
    }
    tongban__frame__free_unpacked(f, NULL);
    f = NULL;
    if (strcmp(mode, "hello") == 0) {
        printf("welcome\n");
        rc = 0;
        goto done;
    }

    int tamper = strcmp(mode, "tampered") == 0;
    int forge = strcmp(mode, "forge-sender") == 0;
    int resend = strcmp(mode, "resend") == 0;
    const char *key = opt(argc, argv, "--key", NULL), *crt = opt(argc, argv, "--cert", NULL);
    const char *dest = opt(argc, argv, "--dest", NULL), *claim = opt(argc, argv, "--claim", NULL);
    if ((!tamper && !forge && !resend) || !key || !crt || !dest || (forge && !claim)) {
        fprintf(stderr, "tb_testpeer: unknown mode or missing --key/--cert/--dest/--claim\n");
        rc = 2;
        goto done;
    }
    if (tb_signer_load(key, &signer, err, sizeof err) != TB_OK ||
        tb_cert_load_file(crt, &cert, err, sizeof err) != TB_OK) {
        fprintf(stderr, "%s\n", err);
        rc = 2;
        goto done;
    }
    Tongban__RecordUpsert u = TONGBAN__RECORD_UPSERT__INIT;
    u.catalog = "tamper";
    u.key = "t1";
    u.version = 1;
    u.body = "{\"forged\":true}";
    u.origin = (char *)node;
    u.hlc = 1;
    uint8_t payload[256], id[16];
    size_t plen = tongban__record_upsert__pack(&u, payload);
    RAND_bytes(id, sizeof id);
    Tongban__Entry e = TONGBAN__ENTRY__INIT;
    e.id.data = id;
    e.id.len = 16;
    e.type = TONGBAN__ENTRY_TYPE__RECORD_UPSERT;
    e.payload.data = payload;
    e.payload.len = plen;
    Tongban__Entry *ep = &e;
    Tongban__Batch b = TONGBAN__BATCH__INIT;
    b.sender = (char *)(forge ? claim : node);
    b.seq = resend ? (uint64_t)tb_now_ms() << 8 : (uint64_t)1 << 40;
    b.dest = (char *)dest;
    b.hlc = 1;
    b.n_entries = 1;
    b.entries = &ep;
    if (tb_batch_sign(&b, signer, cert, &sb, &sblen, err, sizeof err) != TB_OK) {
        fprintf(stderr, "%s\n", err);
        rc = 2;
        goto done;
    }
    Tongban__SignedBatch *parsed = tongban__signed_batch__unpack(NULL, sblen, sb);
    if (tamper) parsed->body.data[parsed->body.len - 3] ^= 0x01;   /* inside the JSON body */
    Tongban__Frame out = TONGBAN__FRAME__INIT;
    out.kind_case = TONGBAN__FRAME__KIND_BATCH;
    out.batch = parsed;
    tb_frame_send(s, NULL, 0, &out, 0);
    if (resend) {
        int acks = 0;
        for (int round = 0; round < 2; round++) {
            if (round == 1) tb_frame_send(s, NULL, 0, &out, 0);
            f = recv_frame(s, timeout, TONGBAN__FRAME__KIND__NOT_SET);
            while (f && f->kind_case != TONGBAN__FRAME__KIND_ACK && f->kind_case != TONGBAN__FRAME__KIND_NACK) {
                tongban__frame__free_unpacked(f, NULL);
                f = recv_frame(s, timeout, TONGBAN__FRAME__KIND__NOT_SET);
            }
            if (f && f->kind_case == TONGBAN__FRAME__KIND_ACK && f->ack->seq == b.seq) acks++;
            if (f) tongban__frame__free_unpacked(f, NULL);
            f = NULL;
        }
        tongban__signed_batch__free_unpacked(parsed, NULL);
        printf("acks=%d seq=%llu\n", acks, (unsigned long long)b.seq);
        rc = acks == 2 ? 0 : 4;
        goto done;
    }
    tongban__signed_batch__free_unpacked(parsed, NULL);

    f = recv_frame(s, timeout, TONGBAN__FRAME__KIND__NOT_SET);
    while (f && f->kind_case != TONGBAN__FRAME__KIND_NACK && f->kind_case != TONGBAN__FRAME__KIND_ACK) {
        tongban__frame__free_unpacked(f, NULL);
        f = recv_frame(s, timeout, TONGBAN__FRAME__KIND__NOT_SET);
    }
    if (!f) {
        printf("no answer within %ld ms\n", timeout);
        goto done;
    }
    if (f->kind_case == TONGBAN__FRAME__KIND_ACK) {
        printf("ack seq=%llu\n", (unsigned long long)f->ack->seq);
        goto done;
    }
    printf("nack reason=%s detail=\"%s\"\n", tb_nack_reason_name(f->nack->reason),
           f->nack->detail ? f->nack->detail : "");
    if ((tamper && f->nack->reason == TONGBAN__NACK_REASON__NACK_BAD_SIGNATURE) ||
        (forge && f->nack->reason == TONGBAN__NACK_REASON__NACK_WRONG_SENDER))
        rc = 0;
done:
    if (f) tongban__frame__free_unpacked(f, NULL);
    free(sb);
    tb_signer_destroy(&signer);
    tb_cert_destroy(&cert);
    zmq_close(s);
    zmq_ctx_term(ctx);
    return rc;
}
