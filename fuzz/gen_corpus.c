/* gen_corpus.c -- writes the seed inputs of the fuzz targets: real frames
 * (signed by a throw-away CA and node "110000") and tiny journals.
 *
 *   gen_corpus OUTDIR   writes OUTDIR/fuzz_frame/<kind>.bin and
 *                       OUTDIR/fuzz_journal/<case>.bin
 *
 * Run once by hand; the output is committed in fuzz/corpus/ (fuzz_config's
 * seeds are copies of the example configs). See fuzz/README.md.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "journal.h"
#include "log.h"
#include "pki.h"
#include "wire.h"

#define NODE "110000"

typedef struct {
    const char *out;
    tb_signer_t *signer;
    tb_cert_t *cert;
    int failed;
} gen_t;

/* Writes OUTDIR/sub/name. */
static void emit(gen_t *g, const char *sub, const char *name, const uint8_t *data, size_t len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", g->out, sub);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", g->out, sub, name);
    if (fuzz_write_file(path, data, len) != 0) {
        fprintf(stderr, "gen_corpus: %s: %s\n", path, strerror(errno));
        g->failed = 1;
    } else {
        chmod(path, 0644);
    }
}

static void emit_frame(gen_t *g, const char *name, const Tongban__Frame *f)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    if (tb_frame_pack(f, &buf, &len) != TB_OK) {
        g->failed = 1;
        return;
    }
    emit(g, "fuzz_frame", name, buf, len);
    free(buf);
}

/* Serialises a payload message into a malloc'ed buffer. */
#define PACK(type, msg, outp, lenp) do { \
    *(lenp) = tongban__##type##__get_packed_size(msg); \
    *(outp) = malloc(*(lenp) ? *(lenp) : 1); \
    if (!*(outp)) abort(); \
    tongban__##type##__pack(msg, *(outp)); } while (0)

/* A signed batch of n_up upserts and n_del deletes to dest: *out malloc'ed. */
static int signed_batch(gen_t *g, const char *dest, uint64_t seq, uint64_t prev, int n_up, int n_del,
                        uint8_t **out, size_t *out_len)
{
    char err[TB_ERRLEN];
    Tongban__Entry e[8], *ep[8];
    uint8_t ids[8][16], *payloads[8] = { 0 };
    size_t n = 0;
    for (int i = 0; i < n_up + n_del && n < 8; i++, n++) {
        tongban__entry__init(&e[n]);
        for (int k = 0; k < 16; k++) ids[n][k] = (uint8_t)(seq * 16 + n + (size_t)k);
        e[n].id.data = ids[n];
        e[n].id.len = 16;
        size_t plen = 0;
        if (i < n_up) {
            Tongban__RecordUpsert u = TONGBAN__RECORD_UPSERT__INIT;
            u.catalog = "enterprise_registry";
            u.key = i ? "91110000MA01" : "91310000X7";
            u.version = 3;
            u.body = "{\"name\":\"Example Co.\",\"capital\":1000000}";
            u.origin = NODE;
            u.hlc = (1ull << 40) + seq;
            PACK(record_upsert, &u, &payloads[n], &plen);
            e[n].type = TONGBAN__ENTRY_TYPE__RECORD_UPSERT;
        } else {
            Tongban__RecordDelete d = TONGBAN__RECORD_DELETE__INIT;
            d.catalog = "enterprise_registry";
            d.key = "91440000Z9";
            d.version = 4;
            d.origin = NODE;
            d.hlc = (1ull << 40) + seq + 1;
            PACK(record_delete, &d, &payloads[n], &plen);
            e[n].type = TONGBAN__ENTRY_TYPE__RECORD_DELETE;
        }
        e[n].payload.data = payloads[n];
        e[n].payload.len = plen;
        ep[n] = &e[n];
    }
    Tongban__Batch b = TONGBAN__BATCH__INIT;
    b.sender = NODE;
    b.seq = seq;
    b.prev_seq = prev;
    b.dest = (char *)dest;
    b.hlc = (1ull << 40) + seq + 1;
    b.n_entries = n;
    b.entries = ep;
    tb_err_t rc = tb_batch_sign(&b, g->signer, g->cert, out, out_len, err, sizeof err);
    for (size_t i = 0; i < n; i++) free(payloads[i]);
    if (rc != TB_OK) {
        fprintf(stderr, "gen_corpus: sign: %s\n", err);
        g->failed = 1;
        return -1;
    }
    return 0;
}

static void frames(gen_t *g)
{
    Tongban__Frame f = TONGBAN__FRAME__INIT;

    Tongban__Hello hello = TONGBAN__HELLO__INIT;
    hello.node_id = NODE;
    hello.protocol = 1;
    hello.software = "tongban-node 0.1.0";
    f.kind_case = TONGBAN__FRAME__KIND_HELLO;
    f.hello = &hello;
    emit_frame(g, "hello.bin", &f);

    size_t pemlen = 0;
    const char *pem = tb_cert_pem(g->cert, &pemlen);
    Tongban__DirectoryEntry de[2] = { TONGBAN__DIRECTORY_ENTRY__INIT, TONGBAN__DIRECTORY_ENTRY__INIT };
    Tongban__DirectoryEntry *dep[2] = { &de[0], &de[1] };
    de[0].node_id = NODE;
    de[0].certificate_pem.data = (uint8_t *)pem;
    de[0].certificate_pem.len = pemlen;
    de[1].node_id = "310000";
    de[1].revoked = 1;
    Tongban__DirectoryUpdate dir = TONGBAN__DIRECTORY_UPDATE__INIT;
    dir.n_nodes = 2;
    dir.nodes = dep;
    Tongban__Welcome w = TONGBAN__WELCOME__INIT;
    w.hub_id = "hub";
    w.protocol = 1;
    w.directory = &dir;
    f.kind_case = TONGBAN__FRAME__KIND_WELCOME;
    f.welcome = &w;
    emit_frame(g, "welcome.bin", &f);
    f.kind_case = TONGBAN__FRAME__KIND_DIRECTORY;
    f.directory = &dir;
    emit_frame(g, "directory.bin", &f);

    Tongban__Ack ack = TONGBAN__ACK__INIT;
    ack.seq = 42;
    f.kind_case = TONGBAN__FRAME__KIND_ACK;
    f.ack = &ack;
    emit_frame(g, "ack.bin", &f);

    Tongban__Nack nack = TONGBAN__NACK__INIT;
    nack.seq = 43;
    nack.reason = TONGBAN__NACK_REASON__NACK_OUT_OF_ORDER;
    nack.detail = "predecessor 42 not accepted yet: resend from 42";
    f.kind_case = TONGBAN__FRAME__KIND_NACK;
    f.nack = &nack;
    emit_frame(g, "nack.bin", &f);

    Tongban__DeliverAck da = TONGBAN__DELIVER_ACK__INIT;
    da.hub_seq = 1000;
    f.kind_case = TONGBAN__FRAME__KIND_DELIVER_ACK;
    f.deliver_ack = &da;
    emit_frame(g, "deliver_ack.bin", &f);

    Tongban__Heartbeat hb = TONGBAN__HEARTBEAT__INIT;
    hb.time_ms = 1764410000000ull;
    f.kind_case = TONGBAN__FRAME__KIND_HEARTBEAT;
    f.heartbeat = &hb;
    emit_frame(g, "heartbeat.bin", &f);

    Tongban__Query qy = TONGBAN__QUERY__INIT;
    qy.id = 7;
    qy.dest = "310000";
    qy.kind = "licence_status";
    qy.body.data = (uint8_t *)"{\"licence\":\"L-2024-001\"}";
    qy.body.len = strlen((const char *)qy.body.data);
    f.kind_case = TONGBAN__FRAME__KIND_QUERY;
    f.query = &qy;
    emit_frame(g, "query.bin", &f);

    Tongban__Reply rp = TONGBAN__REPLY__INIT;
    rp.id = 7;
    rp.status = TONGBAN__REPLY_STATUS__REPLY_OK;
    rp.body.data = (uint8_t *)"{\"valid\":true}";
    rp.body.len = strlen((const char *)rp.body.data);
    rp.to = NODE;
    f.kind_case = TONGBAN__FRAME__KIND_REPLY;
    f.reply = &rp;
    emit_frame(g, "reply.bin", &f);

    /* batch frames, built as the node sends them: the signed bytes wrapped */
    struct {
        const char *name, *dest;
        uint64_t seq, prev;
        int up, del;
    } bs[] = {
        { "batch_node.bin", "310000", 1, 0, 2, 1 },
        { "batch_topic.bin", "topic:population", 2, 1, 1, 0 },
        { "batch_empty.bin", "440000", 3, 2, 0, 0 },
    };
    for (size_t i = 0; i < sizeof bs / sizeof bs[0]; i++) {
        uint8_t *sb = NULL, *buf = NULL;
        size_t sblen = 0, len = 0;
        if (signed_batch(g, bs[i].dest, bs[i].seq, bs[i].prev, bs[i].up, bs[i].del, &sb, &sblen) != 0) continue;
        if (tb_frame_wrap(TONGBAN__FRAME__KIND_BATCH, sb, sblen, &buf, &len) == TB_OK) {
            emit(g, "fuzz_frame", bs[i].name, buf, len);
            free(buf);
        }
        if (i == 0 && tb_frame_deliver(17, sb, sblen, &buf, &len) == TB_OK) {
            emit(g, "fuzz_frame", "deliver.bin", buf, len);
            free(buf);
        }
        free(sb);
    }
}

/* A journal of n records written by the real code; returns the segment bytes. */
static uint8_t *seg_bytes(gen_t *g, int n, size_t *len)
{
    char dir[512], path[700], err[512];
    uint8_t *out = NULL;
    journal_t *j = NULL;
    if (fuzz_mkdtemp("gen", dir, sizeof dir) != 0) {
        g->failed = 1;
        return NULL;
    }
    if (journal_open(dir, NULL, &j, NULL, err, sizeof err) != TB_OK) {
        fprintf(stderr, "gen_corpus: journal_open: %s\n", err);
        g->failed = 1;
        goto done;
    }
    for (int i = 0; i < n; i++) {
        static const uint8_t batch[] = "\x0a\x04body\x12\x03sig";
        if (journal_append(j, NODE, (uint64_t)i + 1, i % 2 ? "topic:population" : "310000", batch,
                           sizeof batch - 1, NULL, NULL, err, sizeof err) != TB_OK) {
            fprintf(stderr, "gen_corpus: journal_append: %s\n", err);
            g->failed = 1;
        }
    }
    journal_sync(j, err, sizeof err);
    journal_destroy(&j);
    snprintf(path, sizeof path, "%s/00000000000000000001.tbj", dir);
    FILE *fp = fopen(path, "rb");
    if (fp) {
        out = malloc(65536);
        *len = out ? fread(out, 1, 65536, fp) : 0;
        fclose(fp);
    }
done:
    fuzz_rmtree(dir);
    return out;
}

static void journals(gen_t *g)
{
    size_t len = 0;
    uint8_t *seg = seg_bytes(g, 3, &len);
    if (!seg) return;
    uint8_t *in = malloc(len + 64);
    if (!in) {
        free(seg);
        return;
    }
    /* mode 0: the segment as written */
    in[0] = 0x00;
    memcpy(in + 1, seg, len);
    emit(g, "fuzz_journal", "segment3.bin", in, len + 1);
    /* mode 0: a torn tail (the last record cut short) */
    emit(g, "fuzz_journal", "segment3_torn.bin", in, len + 1 - 20);
    /* mode 0, verify_chain off, 4 KiB segments */
    in[0] = 0x44;
    emit(g, "fuzz_journal", "segment3_nochain.bin", in, len + 1);
    /* mode 1: header from the fuzzer, then the records of the real segment */
    in[0] = 0x01;
    memcpy(in + 1, seg + 24, len - 24);
    emit(g, "fuzz_journal", "records_after_header.bin", in, len + 1 - 24);
    free(seg);
    free(in);

    /* mode 3: well-formed records (slen, dlen, blen u16, data) */
    static const uint8_t m3[] = {
        0x03,
        6, 6, 4, 0, '1', '1', '0', '0', '0', '0', '3', '1', '0', '0', '0', '0', 'a', 'b', 'c', 'd',
        6, 16, 2, 0, '1', '1', '0', '0', '0', '0', 't', 'o', 'p', 'i', 'c', ':', 'p', 'o', 'p', 'u',
        'l', 'a', 't', 'i', 'o', 'n', 'x', 'y',
        6, 6, 0, 0, '1', '1', '0', '0', '0', '0', '4', '4', '0', '0', '0', '0',
    };
    emit(g, "fuzz_journal", "structured.bin", m3, sizeof m3);
    uint8_t m3b[sizeof m3];
    memcpy(m3b, m3, sizeof m3);
    m3b[0] = 0x0b;   /* two segments */
    emit(g, "fuzz_journal", "structured_2seg.bin", m3b, sizeof m3b);
    m3b[0] = 0x1b;   /* two segments and an anchor on the first: an interrupted gc */
    emit(g, "fuzz_journal", "structured_gc_interrupted.bin", m3b, sizeof m3b);
    m3b[0] = 0xcb;   /* two segments, 4 KiB roll, gc before the reopen */
    emit(g, "fuzz_journal", "structured_gc.bin", m3b, sizeof m3b);
    /* after an anchor at hub_seq 5 (u16 4 + 1) */
    uint8_t m3c[sizeof m3 + 34];
    m3c[0] = 0x13;
    m3c[1] = 4;
    m3c[2] = 0;
    for (int i = 0; i < 32; i++) m3c[3 + i] = (uint8_t)(0xA0 + i);
    memcpy(m3c + 35, m3 + 1, sizeof m3 - 1);
    emit(g, "fuzz_journal", "structured_anchor.bin", m3c, sizeof m3c);
    /* mode 3 with SignedBatches (body, signature): version 2 hashes their
     * body through its digest; in two segments the first is version 1 */
    uint8_t m3s[1 + 4 * (4 + 6 + 6 + 11)], *q = m3s;
    *q++ = 0x03;
    for (int i = 0; i < 4; i++) {
        static const uint8_t rec[] = { 6, 6, 11, 0, '1', '1', '0', '0', '0', '0', '3', '1', '0', '0', '0', '0',
                                       0x0a, 0x04, 'b', 'o', 'd', 'y', 0x12, 0x03, 's', 'i', 'g' };
        memcpy(q, rec, sizeof rec);
        q[20] = (uint8_t)('0' + i);   /* a different body each */
        q += sizeof rec;
    }
    emit(g, "fuzz_journal", "structured_signed.bin", m3s, sizeof m3s);
    m3s[0] = 0x0b;
    emit(g, "fuzz_journal", "structured_signed_2seg.bin", m3s, sizeof m3s);
    /* mode 2: one record body with a correct CRC but a bad sender length */
    static const uint8_t m2[] = { 0x02, 70, 0, 1, 0, 0, 0, 0, 0, 0, 0 };
    uint8_t m2b[1 + 2 + 70];
    memset(m2b, 0, sizeof m2b);
    memcpy(m2b, m2, sizeof m2);
    emit(g, "fuzz_journal", "crc_fixed.bin", m2b, sizeof m2b);
}

int main(int argc, char **argv)
{
    char dir[512], ca[600], node[600], path[700], err[TB_ERRLEN] = "";
    gen_t g = { 0 };
    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus OUTDIR\n");
        return 2;
    }
    g.out = argv[1];
    mkdir(g.out, 0755);
    tb_log_setup(TB_LOG_ERROR, TB_LOG_LOGFMT, stderr);
    if (fuzz_mkdtemp("gen", dir, sizeof dir) != 0) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(ca, sizeof ca, "%s/ca", dir);
    snprintf(node, sizeof node, "%s/node", dir);
    tb_err_t rc = tb_pki_init_ca(ca, "fuzz CA", TB_ALG_ED25519, 3650, err, sizeof err);
    if (rc == TB_OK) rc = tb_pki_issue(ca, NODE, TB_ALG_ED25519, 3650, node, err, sizeof err);
    if (rc == TB_OK) {
        snprintf(path, sizeof path, "%s/node.key", node);
        rc = tb_signer_load(path, &g.signer, err, sizeof err);
    }
    if (rc == TB_OK) {
        snprintf(path, sizeof path, "%s/node.crt", node);
        rc = tb_cert_load_file(path, &g.cert, err, sizeof err);
    }
    fuzz_rmtree(dir);
    if (rc != TB_OK) {
        fprintf(stderr, "gen_corpus: %s\n", err);
        return 1;
    }
    frames(&g);
    journals(&g);
    tb_signer_destroy(&g.signer);
    tb_cert_destroy(&g.cert);
    return g.failed;
}
