/* wire.c -- frame packing, sending and the sign/verify of batches. */
#include "wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

tb_err_t tb_frame_pack(const Tongban__Frame *f, uint8_t **buf, size_t *len)
{
    size_t n = tongban__frame__get_packed_size(f);
    uint8_t *b = malloc(n ? n : 1);
    if (!b) return TB_ERR_NOMEM;
    *len = tongban__frame__pack(f, b);
    *buf = b;
    return TB_OK;
}

static void free_buf(void *data, void *hint)
{
    (void)hint;
    free(data);
}

tb_err_t tb_frame_send(void *sock, const uint8_t *rid, size_t rid_len,
                       const Tongban__Frame *f, int flags)
{
    uint8_t *buf;
    size_t len;
    if (tb_frame_pack(f, &buf, &len) != TB_OK) return TB_ERR_NOMEM;
    if (rid && zmq_send(sock, rid, rid_len, flags | ZMQ_SNDMORE) < 0) {
        int e = errno;
        free(buf);
        return (e == EHOSTUNREACH || e == EAGAIN) ? TB_ERR_UNAVAILABLE : TB_ERR_IO;
    }
    zmq_msg_t msg;
    zmq_msg_init_data(&msg, buf, len, free_buf, NULL);   /* takes buf */
    if (zmq_msg_send(&msg, sock, flags) < 0) {
        int e = errno;
        zmq_msg_close(&msg);
        return (e == EHOSTUNREACH || e == EAGAIN) ? TB_ERR_UNAVAILABLE : TB_ERR_IO;
    }
    return TB_OK;
}

Tongban__SigAlg tb_alg_to_wire(tb_alg_t alg)
{
    switch (alg) {
    case TB_ALG_ED25519: return TONGBAN__SIG_ALG__SIG_ALG_ED25519;
    case TB_ALG_P256: return TONGBAN__SIG_ALG__SIG_ALG_P256;
    case TB_ALG_SM2: return TONGBAN__SIG_ALG__SIG_ALG_SM2;
    case TB_ALG_NONE: break;
    }
    return TONGBAN__SIG_ALG__SIG_ALG_UNSPECIFIED;
}

tb_alg_t tb_alg_from_wire(Tongban__SigAlg alg)
{
    switch (alg) {
    case TONGBAN__SIG_ALG__SIG_ALG_ED25519: return TB_ALG_ED25519;
    case TONGBAN__SIG_ALG__SIG_ALG_P256: return TB_ALG_P256;
    case TONGBAN__SIG_ALG__SIG_ALG_SM2: return TB_ALG_SM2;
    default: break;
    }
    return TB_ALG_NONE;
}

/* What an Ed25519 batch signature covers (prehash SHA-256): this context,
 * its NUL included, then SHA-256(body). The context keeps the message apart
 * from anything else the same key signs (licence seals). */
static const char PREHASH_CTX[] = "tongban/batch/sha256";
#define PREHASH_MSG_LEN (sizeof PREHASH_CTX + TB_SHA256_LEN)

/* msg = PREHASH_CTX || SHA-256(body); the digest is msg + sizeof PREHASH_CTX. */
static tb_err_t prehash_message(const uint8_t *body, size_t len, uint8_t msg[PREHASH_MSG_LEN])
{
    memcpy(msg, PREHASH_CTX, sizeof PREHASH_CTX);
    return tb_sha256(body, len, msg + sizeof PREHASH_CTX);
}

tb_err_t tb_batch_sign(const Tongban__Batch *batch, tb_signer_t *signer, const tb_cert_t *cert,
                       uint8_t **out, size_t *out_len, char *err, size_t errlen)
{
    tb_err_t rc = TB_ERR_NOMEM;
    uint8_t *body = NULL, *sig = NULL;
    size_t siglen = 0;
    size_t blen = tongban__batch__get_packed_size(batch);
    /* Ed25519 signs the body's digest: pure Ed25519 would hash the whole
     * body twice with SHA-512, and every verifier once more. */
    const int prehash = tb_signer_alg(signer) == TB_ALG_ED25519;
    uint8_t msg[PREHASH_MSG_LEN];
    body = malloc(blen ? blen : 1);
    if (!body) goto done;
    blen = tongban__batch__pack(batch, body);
    if (prehash && prehash_message(body, blen, msg) != TB_OK) {
        snprintf(err, errlen, "batch signing: SHA-256 failed");
        rc = TB_ERR_CRYPTO;
        goto done;
    }
    rc = prehash ? tb_signer_sign(signer, msg, sizeof msg, &sig, &siglen, err, errlen)
                 : tb_signer_sign(signer, body, blen, &sig, &siglen, err, errlen);
    if (rc != TB_OK) goto done;

    Tongban__SignedBatch sb = TONGBAN__SIGNED_BATCH__INIT;
    sb.body.data = body;
    sb.body.len = blen;
    sb.signature.data = sig;
    sb.signature.len = siglen;
    sb.signer_key_id = (char *)tb_cert_key_id(cert);
    sb.alg = tb_alg_to_wire(tb_signer_alg(signer));
    sb.prehash = prehash ? TONGBAN__PREHASH__PREHASH_SHA256 : TONGBAN__PREHASH__PREHASH_NONE;
    size_t n = tongban__signed_batch__get_packed_size(&sb);
    *out = malloc(n ? n : 1);
    if (!*out) { rc = TB_ERR_NOMEM; goto done; }
    *out_len = tongban__signed_batch__pack(&sb, *out);
    rc = TB_OK;
done:
    free(body);
    free(sig);
    return rc;
}

/* The signature checks of tb_batch_verify and tb_batch_verify_view: the
 * algorithm and key id are the certificate's, the signature verifies over
 * the body or, with prehash, over its digest (then copied to digest and
 * *has_digest set). */
static tb_err_t verify_signature(const Tongban__SignedBatch *sb, const tb_cert_t *cert,
                                 uint8_t digest[TB_SHA256_LEN], int *has_digest, char *err, size_t errlen)
{
    *has_digest = 0;
    if (tb_alg_from_wire(sb->alg) != tb_cert_alg(cert)) {
        snprintf(err, errlen, "batch algorithm %d does not match the %s certificate of %s",
                 (int)sb->alg, tb_alg_name(tb_cert_alg(cert)), tb_cert_node_id(cert));
        return TB_ERR_PROTO;
    }
    if (!sb->signer_key_id || strcmp(sb->signer_key_id, tb_cert_key_id(cert)) != 0) {
        snprintf(err, errlen, "signer key id does not match the current certificate of %s",
                 tb_cert_node_id(cert));
        return TB_ERR_PROTO;
    }
    if (sb->prehash == TONGBAN__PREHASH__PREHASH_NONE)
        return tb_cert_verify(cert, sb->body.data, sb->body.len, sb->signature.data, sb->signature.len,
                              err, errlen);
    if (sb->prehash != TONGBAN__PREHASH__PREHASH_SHA256 || tb_cert_alg(cert) != TB_ALG_ED25519) {
        snprintf(err, errlen, "batch prehash %d is not defined for %s signatures", (int)sb->prehash,
                 tb_alg_name(tb_cert_alg(cert)));
        return TB_ERR_PROTO;
    }
    uint8_t msg[PREHASH_MSG_LEN];
    if (prehash_message(sb->body.data, sb->body.len, msg) != TB_OK) {
        snprintf(err, errlen, "batch check: SHA-256 failed");
        return TB_ERR_CRYPTO;
    }
    tb_err_t rc = tb_cert_verify(cert, msg, sizeof msg, sb->signature.data, sb->signature.len, err, errlen);
    if (rc != TB_OK) return rc;
    memcpy(digest, msg + sizeof PREHASH_CTX, TB_SHA256_LEN);
    *has_digest = 1;
    return TB_OK;
}

tb_err_t tb_batch_verify(const Tongban__SignedBatch *sb, const tb_cert_t *cert,
                         Tongban__Batch **batch, char *err, size_t errlen)
{
    uint8_t digest[TB_SHA256_LEN];
    int has_digest;
    *batch = NULL;
    tb_err_t rc = verify_signature(sb, cert, digest, &has_digest, err, errlen);
    if (rc != TB_OK) return rc;
    Tongban__Batch *b = tongban__batch__unpack(NULL, sb->body.len, sb->body.data);
    if (!b) {
        snprintf(err, errlen, "signed body is not a valid Batch");
        return TB_ERR_PROTO;
    }
    if (!b->sender || strcmp(b->sender, tb_cert_node_id(cert)) != 0) {
        snprintf(err, errlen, "batch sender \"%s\" is not the signer %s",
                 b->sender ? b->sender : "", tb_cert_node_id(cert));
        tongban__batch__free_unpacked(b, NULL);
        return TB_ERR_PROTO;
    }
    *batch = b;
    return TB_OK;
}

const char *tb_nack_reason_name(Tongban__NackReason r)
{
    switch (r) {
    case TONGBAN__NACK_REASON__NACK_MALFORMED: return "malformed";
    case TONGBAN__NACK_REASON__NACK_BAD_SIGNATURE: return "bad_signature";
    case TONGBAN__NACK_REASON__NACK_WRONG_SENDER: return "wrong_sender";
    case TONGBAN__NACK_REASON__NACK_UNKNOWN_CERT: return "unknown_cert";
    case TONGBAN__NACK_REASON__NACK_REVOKED: return "revoked";
    case TONGBAN__NACK_REASON__NACK_ACL: return "acl";
    case TONGBAN__NACK_REASON__NACK_UNKNOWN_DEST: return "unknown_dest";
    case TONGBAN__NACK_REASON__NACK_REPLAY_MISMATCH: return "replay_mismatch";
    case TONGBAN__NACK_REASON__NACK_OVERLOADED: return "overloaded";
    case TONGBAN__NACK_REASON__NACK_STORAGE: return "storage";
    case TONGBAN__NACK_REASON__NACK_OUT_OF_ORDER: return "out_of_order";
    default: break;
    }
    return "unspecified";
}

int tb_nack_is_permanent(Tongban__NackReason r)
{
    switch (r) {
    case TONGBAN__NACK_REASON__NACK_OVERLOADED:
    case TONGBAN__NACK_REASON__NACK_STORAGE:
    case TONGBAN__NACK_REASON__NACK_OUT_OF_ORDER:
    case TONGBAN__NACK_REASON__NACK_UNSPECIFIED:
        return 0;
    default:
        return 1;
    }
}

uint64_t tb_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Appends v as a protobuf varint; returns bytes written (<= 10). */
static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

tb_err_t tb_frame_wrap(uint32_t field, const uint8_t *inner, size_t inner_len,
                       uint8_t **buf, size_t *len)
{
    uint8_t *b = malloc(inner_len + 20);
    if (!b) return TB_ERR_NOMEM;
    size_t n = put_varint(b, ((uint64_t)field << 3) | 2u);
    n += put_varint(b + n, inner_len);
    memcpy(b + n, inner, inner_len);
    *buf = b;
    *len = n + inner_len;
    return TB_OK;
}

tb_err_t tb_frame_deliver(uint64_t hub_seq, const uint8_t *signed_batch, size_t sb_len,
                          uint8_t **buf, size_t *len)
{
    /* Deliver = {1: varint hub_seq, 2: bytes signed batch} */
    uint8_t head[32];
    size_t h = 0;
    head[h++] = (1u << 3) | 0u;
    h += put_varint(head + h, hub_seq);
    head[h++] = (2u << 3) | 2u;
    h += put_varint(head + h, sb_len);
    size_t inner_len = h + sb_len;
    uint8_t *b = malloc(inner_len + 20);
    if (!b) return TB_ERR_NOMEM;
    size_t n = put_varint(b, (6u << 3) | 2u);     /* Frame.deliver = 6 */
    n += put_varint(b + n, inner_len);
    memcpy(b + n, head, h);
    memcpy(b + n + h, signed_batch, sb_len);
    *buf = b;
    *len = n + inner_len;
    return TB_OK;
}

tb_err_t tb_frame_send_raw(void *sock, const uint8_t *rid, size_t rid_len,
                           const uint8_t *buf, size_t len, int flags)
{
    if (rid && zmq_send(sock, rid, rid_len, flags | ZMQ_SNDMORE) < 0)
        return (errno == EHOSTUNREACH || errno == EAGAIN) ? TB_ERR_UNAVAILABLE : TB_ERR_IO;
    if (zmq_send(sock, buf, len, flags) < 0)
        return (errno == EHOSTUNREACH || errno == EAGAIN) ? TB_ERR_UNAVAILABLE : TB_ERR_IO;
    return TB_OK;
}

/* Reads a varint at *p (< end); returns 0 on success, -1 if malformed. */
static int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 64 && *p < end; shift += 7) {
        uint8_t b = *(*p)++;
        r |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

tb_err_t tb_frame_inner(const uint8_t *buf, size_t len, uint32_t *field, const uint8_t **inner,
                        size_t *inner_len)
{
    const uint8_t *p = buf, *end = buf + len;
    uint64_t tag, n;
    if (get_varint(&p, end, &tag) != 0 || (tag & 7) != 2 || (tag >> 3) == 0 || (tag >> 3) > UINT32_MAX)
        return TB_ERR_PROTO;
    if (get_varint(&p, end, &n) != 0 || n != (uint64_t)(end - p)) return TB_ERR_PROTO;
    *field = (uint32_t)(tag >> 3);
    *inner = p;
    *inner_len = (size_t)n;
    return TB_OK;
}

tb_err_t tb_frame_parse_deliver(const uint8_t *buf, size_t len, uint64_t *hub_seq,
                                const uint8_t **sb, size_t *sb_len)
{
    uint32_t field;
    const uint8_t *in;
    size_t in_len;
    if (tb_frame_inner(buf, len, &field, &in, &in_len) != TB_OK || field != 6) return TB_ERR_PROTO;
    const uint8_t *p = in, *end = in + in_len;
    int have_seq = 0, have_sb = 0;
    *hub_seq = 0;
    while (p < end) {
        uint64_t tag, v;
        if (get_varint(&p, end, &tag) != 0) return TB_ERR_PROTO;
        if ((tag >> 3) == 1 && (tag & 7) == 0) {
            if (get_varint(&p, end, &v) != 0) return TB_ERR_PROTO;
            *hub_seq = v;
            have_seq = 1;
        } else if ((tag >> 3) == 2 && (tag & 7) == 2) {
            if (get_varint(&p, end, &v) != 0 || v > (uint64_t)(end - p)) return TB_ERR_PROTO;
            *sb = p;
            *sb_len = (size_t)v;
            p += v;
            have_sb = 1;
        } else {
            return TB_ERR_PROTO;
        }
    }
    (void)have_seq;   /* proto3 omits a zero hub_seq */
    return have_sb ? TB_OK : TB_ERR_PROTO;
}

/* ---- reading in place ---- */

/* get_varint, refusing a 10-byte varint with more than 64 bits (where
 * decoders may differ). Returns 0, or -1. */
static int get_varint64(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    const uint8_t *start = *p;
    if (get_varint(p, end, v) != 0) return -1;
    return *p - start < 10 || start[9] <= 1 ? 0 : -1;
}

/* A length prefix (at most 5 bytes, as protobuf-c reads them) that fits in
 * the rest of the buffer. Returns 0, or -1. */
static int get_len(const uint8_t **p, const uint8_t *end, uint64_t *n)
{
    const uint8_t *start = *p;
    if (get_varint(p, end, n) != 0 || *p - start > 5 || *n > (uint64_t)(end - *p)) return -1;
    return 0;
}

/* Skips the value of a field of wire type wt at *p. Returns 0, or -1 for a
 * truncated value or a wire type protobuf-c would not skip the same way. */
static int skip_value(const uint8_t **p, const uint8_t *end, unsigned wt)
{
    uint64_t v;
    switch (wt) {
    case 0: return get_varint64(p, end, &v);
    case 1:
        if (end - *p < 8) return -1;
        *p += 8;
        return 0;
    case 5:
        if (end - *p < 4) return -1;
        *p += 4;
        return 0;
    case 2:
        if (get_len(p, end, &v) != 0) return -1;
        *p += v;
        return 0;
    default: return -1;          /* groups and reserved wire types: let protobuf-c decide */
    }
}

/* Reads the tag at *p: field number and wire type. Returns 0, or -1. */
static int get_tag(const uint8_t **p, const uint8_t *end, uint32_t *field, unsigned *wt)
{
    uint64_t tag;
    const uint8_t *start = *p;
    /* protobuf-c: at most 5 bytes, and the first one must hold field bits */
    if (*p >= end || (**p & 0xf8) == 0) return -1;
    if (get_varint(p, end, &tag) != 0 || *p - start > 5 || (tag >> 3) > 0x1fffffff) return -1;
    *field = (uint32_t)(tag >> 3);
    *wt = (unsigned)(tag & 7);
    return 0;
}

/* Reads a length-delimited value at *p. Returns 0, or -1. */
static int get_bytes(const uint8_t **p, const uint8_t *end, const uint8_t **data, size_t *len)
{
    uint64_t n;
    if (get_len(p, end, &n) != 0) return -1;
    *data = *p;
    *len = (size_t)n;
    *p += n;
    return 0;
}

/* Reads an enum (int32 on the wire as a varint): protobuf-c keeps its low
 * 32 bits; only values it keeps unchanged and that are >= 0 are taken here. */
static int get_enum(const uint8_t **p, const uint8_t *end, int32_t *out)
{
    uint64_t v;
    if (get_varint64(p, end, &v) != 0 || v > INT32_MAX) return -1;
    *out = (int32_t)v;
    return 0;
}

tb_err_t tb_signed_batch_view(const uint8_t *buf, size_t len, tb_signed_batch_view_t *v)
{
    static const uint8_t none[1] = { 0 };
    const uint8_t *p = buf, *end = buf + len, *d;
    size_t n;
    memset(v, 0, sizeof *v);
    v->body = v->sig = none;
    v->key_id = "";
    while (p < end) {
        uint32_t field;
        unsigned wt;
        if (get_tag(&p, end, &field, &wt) != 0) return TB_ERR_PROTO;
        if (field >= 1 && field <= 3) {
            if (wt != 2 || get_bytes(&p, end, &d, &n) != 0) return TB_ERR_PROTO;
            if (field == 1) { v->body = d; v->body_len = n; }
            else if (field == 2) { v->sig = d; v->sig_len = n; }
            else {
                if (memchr(d, 0, n)) return TB_ERR_PROTO;
                v->key_id = (const char *)d;
                v->key_id_len = n;
            }
        } else if (field == 4 || field == 5) {
            if (wt != 0 || get_enum(&p, end, field == 4 ? &v->alg : &v->prehash) != 0) return TB_ERR_PROTO;
        } else if (skip_value(&p, end, wt) != 0) {
            return TB_ERR_PROTO;
        }
    }
    return TB_OK;
}

tb_err_t tb_signed_batch_read(const uint8_t *buf, size_t len, Tongban__SignedBatch *sb, char *key_id,
                              size_t key_id_size)
{
    tb_signed_batch_view_t v;
    if (tb_signed_batch_view(buf, len, &v) != TB_OK || v.key_id_len >= key_id_size) return TB_ERR_PROTO;
    memcpy(key_id, v.key_id, v.key_id_len);
    key_id[v.key_id_len] = '\0';
    tongban__signed_batch__init(sb);
    sb->body.data = (uint8_t *)(uintptr_t)v.body;
    sb->body.len = v.body_len;
    sb->signature.data = (uint8_t *)(uintptr_t)v.sig;
    sb->signature.len = v.sig_len;
    sb->signer_key_id = key_id;
    sb->alg = (Tongban__SigAlg)v.alg;
    sb->prehash = (Tongban__Prehash)v.prehash;
    return TB_OK;
}

/* Copies a string field into out (TB_VIEW_NAME_MAX + 1 bytes). Returns 0, or
 * -1 when it is too long or holds a NUL byte. */
static int view_name(char *out, const uint8_t *d, size_t n)
{
    if (n > TB_VIEW_NAME_MAX || memchr(d, 0, n)) return -1;
    memcpy(out, d, n);
    out[n] = '\0';
    return 0;
}

/* Walks one serialised Entry; sets *type (0 when absent). Returns 0, or -1. */
static int view_entry(const uint8_t *p, const uint8_t *end, int32_t *type)
{
    const uint8_t *d;
    size_t n;
    *type = 0;
    while (p < end) {
        uint32_t field;
        unsigned wt;
        if (get_tag(&p, end, &field, &wt) != 0) return -1;
        if (field == 1 || field == 3) {
            if (wt != 2 || get_bytes(&p, end, &d, &n) != 0) return -1;
        } else if (field == 2) {
            if (wt != 0 || get_enum(&p, end, type) != 0) return -1;
        } else if (skip_value(&p, end, wt) != 0) {
            return -1;
        }
    }
    return 0;
}

tb_err_t tb_batch_view(const uint8_t *body, size_t len, tb_batch_view_t *v)
{
    const uint8_t *p = body, *end = body + len, *d;
    size_t n;
    memset(v, 0, sizeof *v);
    while (p < end) {
        uint32_t field;
        unsigned wt;
        uint64_t x;
        if (get_tag(&p, end, &field, &wt) != 0) return TB_ERR_PROTO;
        switch (field) {
        case 1:
        case 3:
            if (wt != 2 || get_bytes(&p, end, &d, &n) != 0 ||
                view_name(field == 1 ? v->sender : v->dest, d, n) != 0)
                return TB_ERR_PROTO;
            break;
        case 2:
        case 4:
        case 6:
            if (wt != 0 || get_varint64(&p, end, &x) != 0) return TB_ERR_PROTO;
            if (field == 2) v->seq = x;
            else if (field == 4) v->hlc = x;
            else v->prev_seq = x;
            break;
        case 5: {
            int32_t t;
            if (wt != 2 || get_bytes(&p, end, &d, &n) != 0 || view_entry(d, d + n, &t) != 0 || t >= 32)
                return TB_ERR_PROTO;
            v->types |= 1u << t;
            v->n_entries++;
            break;
        }
        default:
            if (skip_value(&p, end, wt) != 0) return TB_ERR_PROTO;
            break;
        }
    }
    return TB_OK;
}

tb_err_t tb_batch_verify_view(const Tongban__SignedBatch *sb, const tb_cert_t *cert, tb_batch_view_t *view,
                              Tongban__Batch **batch, char *err, size_t errlen)
{
    uint8_t digest[TB_SHA256_LEN];
    int has_digest;
    *batch = NULL;
    tb_err_t rc = verify_signature(sb, cert, digest, &has_digest, err, errlen);
    if (rc != TB_OK) return rc;
    const char *sender;
    if (tb_batch_view(sb->body.data, sb->body.len, view) == TB_OK) {
        sender = view->sender;
    } else {
        Tongban__Batch *b = tongban__batch__unpack(NULL, sb->body.len, sb->body.data);
        if (!b) {
            snprintf(err, errlen, "signed body is not a valid Batch");
            return TB_ERR_PROTO;
        }
        memset(view, 0, sizeof *view);
        view->seq = b->seq;
        view->hlc = b->hlc;
        view->prev_seq = b->prev_seq;
        view->n_entries = b->n_entries;
        for (size_t i = 0; i < b->n_entries; i++) {
            int t = (int)b->entries[i]->type;
            view->types |= t >= 0 && t < 32 ? 1u << t : 1u;   /* out of range: as type 0, refused */
        }
        *batch = b;
        sender = b->sender;
    }
    memcpy(view->body_sha256, digest, sizeof view->body_sha256);
    view->has_body_sha256 = has_digest;
    if (!sender || strcmp(sender, tb_cert_node_id(cert)) != 0) {
        snprintf(err, errlen, "batch sender \"%s\" is not the signer %s", sender ? sender : "",
                 tb_cert_node_id(cert));
        if (*batch) tongban__batch__free_unpacked(*batch, NULL);
        *batch = NULL;
        return TB_ERR_PROTO;
    }
    return TB_OK;
}

tb_err_t tb_frame_send_deliver(void *sock, const uint8_t *rid, size_t rid_len, uint64_t hub_seq,
                               const uint8_t *signed_batch, size_t sb_len, int flags, size_t *len)
{
    /* Frame{6: Deliver{1: varint hub_seq, 2: bytes signed batch}}, as tb_frame_deliver */
    uint8_t head[48];
    size_t h = 0, inner = 0;
    uint8_t tmp[32];
    tmp[inner++] = (1u << 3) | 0u;
    inner += put_varint(tmp + inner, hub_seq);
    tmp[inner++] = (2u << 3) | 2u;
    inner += put_varint(tmp + inner, sb_len);
    h = put_varint(head, (6u << 3) | 2u);
    h += put_varint(head + h, inner + sb_len);
    memcpy(head + h, tmp, inner);
    h += inner;
    zmq_msg_t msg;
    if (zmq_msg_init_size(&msg, h + sb_len) != 0) return TB_ERR_NOMEM;
    uint8_t *b = zmq_msg_data(&msg);
    memcpy(b, head, h);
    memcpy(b + h, signed_batch, sb_len);
    if (len) *len = h + sb_len;
    int e = 0;
    if (rid && zmq_send(sock, rid, rid_len, flags | ZMQ_SNDMORE) < 0) e = errno;
    else if (zmq_msg_send(&msg, sock, flags) < 0) e = errno;
    else return TB_OK;
    zmq_msg_close(&msg);
    return (e == EHOSTUNREACH || e == EAGAIN) ? TB_ERR_UNAVAILABLE : TB_ERR_IO;
}
