/* fuzz_frame.c -- libFuzzer target: the hub's receive path on arbitrary bytes.
 *
 * Per input, as hub.c's on_router / on_batch do (minus the registry and the
 * sockets):
 *   1. tb_frame_inner; for a batch frame (field 3) tongban__signed_batch__unpack
 *      and tb_batch_verify against a certificate made at start-up;
 *   2. the same SignedBatch re-signed with that certificate's key (the fuzzer
 *      cannot forge signatures), so that tb_batch_verify succeeds whenever the
 *      body is a Batch from the certificate's node, and the checks the hub makes
 *      before the registry run on the decoded Batch: dedup, FIFO (prev_seq),
 *      destination syntax, entry types and payloads;
 *   3. tongban__frame__unpack of the whole input, every kind walked as the hub
 *      or a node would, and pack(unpack(x)) stable under a second round
 *      (for frames without unknown fields: see repack_stable);
 *   4. tb_frame_wrap and tb_frame_deliver round trips of the input as inner
 *      bytes: tb_frame_inner must give back exactly what was wrapped, and a
 *      Deliver decodes iff the input decodes as a SignedBatch.
 * Must never crash or leak; FUZZ_ASSERT marks the properties.
 *
 * Seeds: fuzz/corpus/fuzz_frame (made by fuzz/gen_corpus).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "dedup.h"
#include "fuzz_util.h"
#include "log.h"
#include "pki.h"
#include "wire.h"

#define FUZZ_NODE "110000"

/* libFuzzer's entry points take no context: the signing key and certificate
 * made once by LLVMFuzzerInitialize live here, read-only afterwards. */
static tb_signer_t *g_signer;
static tb_cert_t *g_cert;
static int g_verbose;   /* TB_FUZZ_VERBOSE=1: print what tb_batch_verify said */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char dir[512], ca[600], node[600], path[700], err[TB_ERRLEN] = "";
    g_verbose = getenv("TB_FUZZ_VERBOSE") != NULL;
    tb_log_setup(TB_LOG_DEBUG, TB_LOG_LOGFMT, g_verbose ? stderr : fuzz_devnull());
    if (fuzz_mkdtemp("frame", dir, sizeof dir) != 0) {
        perror("fuzz_frame: mkdtemp");
        exit(2);
    }
    snprintf(ca, sizeof ca, "%s/ca", dir);
    snprintf(node, sizeof node, "%s/node", dir);
    tb_err_t rc = tb_pki_init_ca(ca, "fuzz CA", TB_ALG_ED25519, 30, err, sizeof err);
    if (rc == TB_OK) rc = tb_pki_issue(ca, FUZZ_NODE, TB_ALG_ED25519, 30, node, err, sizeof err);
    if (rc == TB_OK) {
        snprintf(path, sizeof path, "%s/node.key", node);
        rc = tb_signer_load(path, &g_signer, err, sizeof err);
    }
    if (rc == TB_OK) {
        snprintf(path, sizeof path, "%s/node.crt", node);
        rc = tb_cert_load_file(path, &g_cert, err, sizeof err);
    }
    fuzz_rmtree(dir);
    if (rc != TB_OK) {
        fprintf(stderr, "fuzz_frame: cannot make the test certificate: %s\n", err);
        exit(2);
    }
    return 0;
}

/* Returns 1 if two serialised messages are byte-identical. */
static int same_bytes(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

/* The entry payloads a node decodes when it applies a batch. */
static void walk_entries(const Tongban__Batch *b)
{
    for (size_t i = 0; i < b->n_entries; i++) {
        const Tongban__Entry *e = b->entries[i];
        FUZZ_ASSERT(e != NULL);
        switch (e->type) {
        case TONGBAN__ENTRY_TYPE__RECORD_UPSERT: {
            Tongban__RecordUpsert *u = tongban__record_upsert__unpack(NULL, e->payload.len, e->payload.data);
            if (u) {
                FUZZ_ASSERT(u->catalog && u->key && u->body && u->origin);
                tongban__record_upsert__free_unpacked(u, NULL);
            }
            break;
        }
        case TONGBAN__ENTRY_TYPE__RECORD_DELETE: {
            Tongban__RecordDelete *d = tongban__record_delete__unpack(NULL, e->payload.len, e->payload.data);
            if (d) {
                FUZZ_ASSERT(d->catalog && d->key && d->origin);
                tongban__record_delete__free_unpacked(d, NULL);
            }
            break;
        }
        default:
            break;
        }
    }
}

/* What on_batch checks between tb_batch_verify and registry_check, on a
 * fresh per-sender dedup: a first batch is NEW, then SAME under the same
 * signature, CONFLICT under another; FIFO against dedup_high. */
static void hub_checks(const Tongban__SignedBatch *sb, const Tongban__Batch *b)
{
    char q[600];
    uint8_t digest[16], other[16];
    dedup_t *d = dedup_new();
    FUZZ_ASSERT(d != NULL);
    dedup_digest(sb->signature.data, sb->signature.len, digest);
    FUZZ_ASSERT(dedup_check(d, b->seq, digest) == DEDUP_NEW);
    int in_order = !(b->prev_seq && b->prev_seq > dedup_high(d));
    if (in_order) {
        dedup_record(d, b->seq, digest);
        FUZZ_ASSERT(dedup_check(d, b->seq, digest) == DEDUP_SAME);
        memcpy(other, digest, sizeof other);
        other[0] ^= 1;
        FUZZ_ASSERT(dedup_check(d, b->seq, other) == DEDUP_CONFLICT);
        FUZZ_ASSERT(dedup_high(d) >= b->seq);
    } else {
        dedup_skip(d, b->seq);   /* as after a permanent Nack */
        FUZZ_ASSERT(dedup_high(d) >= b->seq);
    }
    dedup_destroy(&d);
    FUZZ_ASSERT(d == NULL);

    FUZZ_ASSERT(b->sender && b->dest);
    (void)tb_config_valid_dest(b->dest);
    walk_entries(b);
    tb_log(TB_LOG_DEBUG, "hub", "batch_accepted", "node=%s seq=%llu dest=%s entries=%zu",
           tb_log_quote(b->sender, q, sizeof q), (unsigned long long)b->seq, b->dest, b->n_entries);
}

/* Verifies sb as it came, then re-signed by the fuzz certificate. */
static void verify_signed(const Tongban__SignedBatch *sb)
{
    char err[TB_ERRLEN] = "";
    Tongban__Batch *b = NULL;
    tb_err_t rc = tb_batch_verify(sb, g_cert, &b, err, sizeof err);
    FUZZ_ASSERT((rc == TB_OK) == (b != NULL));
    if (g_verbose) fprintf(stderr, "fuzz_frame: as sent: %s %s\n", tb_strerror(rc), rc ? err : "");
    if (b) {
        hub_checks(sb, b);
        tongban__batch__free_unpacked(b, NULL);
    } else {
        FUZZ_ASSERT(err[0] != '\0');
        /* on_batch peeks at the seq of a refused batch for its Nack */
        Tongban__Batch *peek = tongban__batch__unpack(NULL, sb->body.len, sb->body.data);
        if (peek) tongban__batch__free_unpacked(peek, NULL);
    }

    /* Re-signed: the verification must now fail only on the body. */
    uint8_t *sig = NULL;
    size_t siglen = 0;
    if (tb_signer_sign(g_signer, sb->body.data, sb->body.len, &sig, &siglen, err, sizeof err) != TB_OK) {
        fprintf(stderr, "fuzz_frame: signing failed: %s\n", err);
        abort();
    }
    Tongban__SignedBatch re = *sb;
    re.signature.data = sig;
    re.signature.len = siglen;
    re.signer_key_id = (char *)tb_cert_key_id(g_cert);
    re.alg = tb_alg_to_wire(tb_cert_alg(g_cert));
    re.prehash = TONGBAN__PREHASH__PREHASH_NONE;   /* signed over the body itself */
    b = NULL;
    rc = tb_batch_verify(&re, g_cert, &b, err, sizeof err);
    if (g_verbose) fprintf(stderr, "fuzz_frame: re-signed: %s %s\n", tb_strerror(rc), rc ? err : "");
    FUZZ_ASSERT(rc == TB_OK || rc == TB_ERR_PROTO);
    if (rc == TB_OK) {
        FUZZ_ASSERT(b && strcmp(b->sender, FUZZ_NODE) == 0);
        hub_checks(&re, b);
        tongban__batch__free_unpacked(b, NULL);
    }
    free(sig);
}

/* Returns 1 if m or a message inside it kept unknown fields from the wire. */
static int has_unknown_fields(const ProtobufCMessage *m)
{
    if (!m) return 0;
    if (m->n_unknown_fields > 0) return 1;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *fd = &d->fields[i];
        if (fd->type != PROTOBUF_C_TYPE_MESSAGE) continue;
        const char *base = (const char *)m + fd->offset;
        if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)((const char *)m + fd->quantifier_offset);
            ProtobufCMessage *const *v = *(ProtobufCMessage *const *const *)base;
            for (size_t k = 0; k < n; k++)
                if (has_unknown_fields(v[k])) return 1;
        } else if (has_unknown_fields(*(const ProtobufCMessage *const *)base)) {
            return 1;
        }
    }
    return 0;
}

/* Packs f, unpacks and packs again: the second encoding equals the first.
 * Known exception (protobuf-c 1.4): an unknown field numbered 0, accepted
 * when its tag is a non-minimal varint (80 00), is re-encoded as the tag
 * byte 00, which unpack refuses; so a frame with unknown fields may not
 * decode after re-encoding (the hub re-encodes only Query and Reply). */
static void repack_stable(const Tongban__Frame *f)
{
    uint8_t *a = NULL, *b = NULL;
    size_t alen = 0, blen = 0;
    FUZZ_ASSERT(tb_frame_pack(f, &a, &alen) == TB_OK);
    Tongban__Frame *g = tongban__frame__unpack(NULL, alen, a);
    if (!g) {
        FUZZ_ASSERT(has_unknown_fields(&f->base));
        free(a);
        return;
    }
    FUZZ_ASSERT(g->kind_case == f->kind_case);
    FUZZ_ASSERT(tb_frame_pack(g, &b, &blen) == TB_OK);
    FUZZ_ASSERT(same_bytes(a, alen, b, blen));
    tongban__frame__free_unpacked(g, NULL);
    free(a);
    free(b);
}

/* The whole input as a Frame, each kind looked at as its receiver does
 * (a batch only if the fast path did not already verify it). */
static void whole_frame(const uint8_t *data, size_t size, int batch_done)
{
    char q[600];
    Tongban__Frame *f = tongban__frame__unpack(NULL, size, data);
    if (!f) return;
    switch (f->kind_case) {
    case TONGBAN__FRAME__KIND_HELLO:
        (void)(f->hello->node_id && strcmp(f->hello->node_id, FUZZ_NODE) == 0);
        tb_log(TB_LOG_INFO, "hub", "node_welcome", "software=%s",
               tb_log_quote(f->hello->software ? f->hello->software : "", q, sizeof q));
        break;
    case TONGBAN__FRAME__KIND_WELCOME:
        if (f->welcome->directory)
            for (size_t i = 0; i < f->welcome->directory->n_nodes; i++) {
                const Tongban__DirectoryEntry *e = f->welcome->directory->nodes[i];
                tb_cert_t *c = NULL;
                if (tb_cert_load_pem(e->certificate_pem.data, e->certificate_pem.len, &c, NULL, 0) == TB_OK)
                    tb_cert_destroy(&c);
            }
        break;
    case TONGBAN__FRAME__KIND_BATCH:
        if (!batch_done) verify_signed(f->batch);
        break;
    case TONGBAN__FRAME__KIND_DELIVER:
        if (f->deliver->batch) verify_signed(f->deliver->batch);
        break;
    case TONGBAN__FRAME__KIND_NACK:
        (void)tb_nack_reason_name(f->nack->reason);
        (void)tb_nack_is_permanent(f->nack->reason);
        tb_log(TB_LOG_WARN, "node", "batch_refused", "detail=%s",
               tb_log_quote(f->nack->detail ? f->nack->detail : "", q, sizeof q));
        break;
    case TONGBAN__FRAME__KIND_QUERY:
        tb_log(TB_LOG_DEBUG, "hub", "query_unavailable", "dest=%s kind=%s",
               tb_log_quote(f->query->dest ? f->query->dest : "", q, sizeof q),
               f->query->kind ? f->query->kind : "");
        break;
    default:
        break;
    }
    repack_stable(f);
    tongban__frame__free_unpacked(f, NULL);
}

/* tb_frame_wrap / tb_frame_deliver / tb_frame_inner agree on the input. */
static void round_trips(const uint8_t *data, size_t size)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    uint32_t field = 0, want = size ? 1u + data[0] % 11u : 3u;
    const uint8_t *inner = NULL;
    size_t inner_len = 0;

    FUZZ_ASSERT(tb_frame_wrap(want, data, size, &buf, &len) == TB_OK);
    FUZZ_ASSERT(tb_frame_inner(buf, len, &field, &inner, &inner_len) == TB_OK);
    FUZZ_ASSERT(field == want && inner_len == size && inner + size == buf + len);
    FUZZ_ASSERT(size == 0 || memcmp(inner, data, size) == 0);
    free(buf);

    uint64_t hub_seq = 0;
    for (size_t i = 0; i < 8 && i < size; i++) hub_seq = hub_seq << 8 | data[i];
    FUZZ_ASSERT(tb_frame_deliver(hub_seq, data, size, &buf, &len) == TB_OK);
    FUZZ_ASSERT(tb_frame_inner(buf, len, &field, &inner, &inner_len) == TB_OK);
    FUZZ_ASSERT(field == TONGBAN__FRAME__KIND_DELIVER && inner + inner_len == buf + len);
    Tongban__SignedBatch *sb = tongban__signed_batch__unpack(NULL, size, data);
    Tongban__Frame *f = tongban__frame__unpack(NULL, len, buf);
    FUZZ_ASSERT((sb != NULL) == (f != NULL));
    if (f) {
        FUZZ_ASSERT(f->kind_case == TONGBAN__FRAME__KIND_DELIVER);
        FUZZ_ASSERT(f->deliver->hub_seq == hub_seq && f->deliver->batch);
        size_t n1 = tongban__signed_batch__get_packed_size(sb);
        size_t n2 = tongban__signed_batch__get_packed_size(f->deliver->batch);
        FUZZ_ASSERT(n1 == n2);
        uint8_t *p1 = malloc(n1 ? n1 : 1), *p2 = malloc(n2 ? n2 : 1);
        FUZZ_ASSERT(p1 && p2);
        FUZZ_ASSERT(tongban__signed_batch__pack(sb, p1) == n1);
        FUZZ_ASSERT(tongban__signed_batch__pack(f->deliver->batch, p2) == n2);
        FUZZ_ASSERT(same_bytes(p1, n1, p2, n2));
        free(p1);
        free(p2);
        tongban__frame__free_unpacked(f, NULL);
    }
    if (sb) tongban__signed_batch__free_unpacked(sb, NULL);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* the hub's fast path: a batch frame is verified without decoding the Frame */
    uint32_t field;
    const uint8_t *inner;
    size_t inner_len;
    int batch_done = 0;
    if (tb_frame_inner(data, size, &field, &inner, &inner_len) == TB_OK) {
        FUZZ_ASSERT(field > 0 && inner >= data && inner + inner_len == data + size);
        if (field == TONGBAN__FRAME__KIND_BATCH) {
            Tongban__SignedBatch *sb = tongban__signed_batch__unpack(NULL, inner_len, inner);
            batch_done = 1;
            if (sb) {
                verify_signed(sb);
                tongban__signed_batch__free_unpacked(sb, NULL);
            }
        }
    }
    whole_frame(data, size, batch_done);
    round_trips(data, size);
    return 0;
}
