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

tb_err_t tb_batch_sign(const Tongban__Batch *batch, tb_signer_t *signer, const tb_cert_t *cert,
                       uint8_t **out, size_t *out_len, char *err, size_t errlen)
{
    tb_err_t rc = TB_ERR_NOMEM;
    uint8_t *body = NULL, *sig = NULL;
    size_t siglen = 0;
    size_t blen = tongban__batch__get_packed_size(batch);
    body = malloc(blen ? blen : 1);
    if (!body) goto done;
    blen = tongban__batch__pack(batch, body);
    rc = tb_signer_sign(signer, body, blen, &sig, &siglen, err, errlen);
    if (rc != TB_OK) goto done;

    Tongban__SignedBatch sb = TONGBAN__SIGNED_BATCH__INIT;
    sb.body.data = body;
    sb.body.len = blen;
    sb.signature.data = sig;
    sb.signature.len = siglen;
    sb.signer_key_id = (char *)tb_cert_key_id(cert);
    sb.alg = tb_alg_to_wire(tb_signer_alg(signer));
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

tb_err_t tb_batch_verify(const Tongban__SignedBatch *sb, const tb_cert_t *cert,
                         Tongban__Batch **batch, char *err, size_t errlen)
{
    *batch = NULL;
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
    tb_err_t rc = tb_cert_verify(cert, sb->body.data, sb->body.len, sb->signature.data,
                                 sb->signature.len, err, errlen);
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
