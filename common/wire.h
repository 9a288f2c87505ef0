/* wire.h -- frames on the ZeroMQ sockets: pack/unpack, signed batches.
 *
 * A message between node (DEALER) and hub (ROUTER) is one serialised
 * tongban.Frame; the ROUTER side sees [routing-id, frame]. A SignedBatch's
 * signature covers the exact bytes of its serialised Batch.
 */
#ifndef TB_WIRE_H
#define TB_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <tongban/tongban.h>

#include "crypto.h"
#include "tongban.pb-c.h"

/* Serialises f into a malloc'ed buffer. Returns TB_OK or TB_ERR_NOMEM. */
tb_err_t tb_frame_pack(const Tongban__Frame *f, uint8_t **buf, size_t *len);

/* Sends f on sock as one message (prefixed by a routing-id frame when rid
 * != NULL). flags: e.g. ZMQ_DONTWAIT. Returns TB_OK, TB_ERR_UNAVAILABLE
 * (EHOSTUNREACH / EAGAIN: peer gone or not ready) or TB_ERR_IO. */
tb_err_t tb_frame_send(void *sock, const uint8_t *rid, size_t rid_len,
                       const Tongban__Frame *f, int flags);

/* Wraps already-serialised inner bytes as the Frame field `field` (a
 * length-delimited submessage) without re-encoding them: used to send a
 * stored SignedBatch (field 3) as-is. Returns a malloc'ed buffer. */
tb_err_t tb_frame_wrap(uint32_t field, const uint8_t *inner, size_t inner_len,
                       uint8_t **buf, size_t *len);

/* Finds the single length-delimited field of a serialised Frame (our frames
 * carry exactly one member of the oneof): sets *field and points *inner at
 * its bytes inside buf. Returns TB_OK or TB_ERR_PROTO if buf is not one
 * length-delimited field. Used to journal a SignedBatch verbatim without
 * re-encoding it. */
tb_err_t tb_frame_inner(const uint8_t *buf, size_t len, uint32_t *field, const uint8_t **inner,
                        size_t *inner_len);

/* Parses a serialised Frame{deliver{hub_seq, batch}} without copying:
 * sets *hub_seq and points *sb at the SignedBatch bytes inside buf.
 * Returns TB_OK, or TB_ERR_PROTO if buf is not such a frame. */
tb_err_t tb_frame_parse_deliver(const uint8_t *buf, size_t len, uint64_t *hub_seq,
                                const uint8_t **sb, size_t *sb_len);

/* Builds the serialised Frame{deliver{hub_seq, batch = <signed batch bytes>}}
 * without re-encoding the signed batch. Returns a malloc'ed buffer. */
tb_err_t tb_frame_deliver(uint64_t hub_seq, const uint8_t *signed_batch, size_t sb_len,
                          uint8_t **buf, size_t *len);

/* Sends an already-serialised frame (copying it), with an optional routing id. */
tb_err_t tb_frame_send_raw(void *sock, const uint8_t *rid, size_t rid_len,
                           const uint8_t *buf, size_t len, int flags);

/* Builds the SignedBatch for batch: packs the Batch, signs the bytes (an
 * Ed25519 key signs their SHA-256 digest: prehash), fills alg, prehash and
 * signer_key_id from cert, and returns the serialised SignedBatch
 * (malloc'ed) in *out. */
tb_err_t tb_batch_sign(const Tongban__Batch *batch, tb_signer_t *signer, const tb_cert_t *cert,
                       uint8_t **out, size_t *out_len, char *err, size_t errlen);

/* Checks a SignedBatch against the signer's certificate: algorithm and key
 * id match the certificate, the signature verifies over body (or, prehash
 * SHA-256 with Ed25519, over its digest; both forms are accepted), the body
 * decodes as a Batch whose sender is the certificate's node id. On TB_OK
 * *batch is the decoded Batch (free with tongban__batch__free_unpacked).
 * Errors: TB_ERR_PROTO (malformed / mismatch), TB_ERR_BADSIG, TB_ERR_CRYPTO. */
tb_err_t tb_batch_verify(const Tongban__SignedBatch *sb, const tb_cert_t *cert,
                         Tongban__Batch **batch, char *err, size_t errlen);

/* A SignedBatch read in place (no copy, no allocation): pointers into the
 * serialised bytes. key_id is not NUL-terminated. */
typedef struct {
    const uint8_t *body, *sig;
    size_t body_len, sig_len;
    const char *key_id;           /* "" (length 0) when absent */
    size_t key_id_len;
    int32_t alg, prehash;
} tb_signed_batch_view_t;

/* Reads a serialised SignedBatch in place. Returns TB_OK only for a plain
 * encoding that tongban__signed_batch__unpack decodes to the same values
 * (last occurrence of a field wins, unknown fields skipped, key id without
 * NUL bytes); TB_ERR_PROTO for anything else, malformed or merely unusual:
 * decode those with tongban__signed_batch__unpack, which decides. */
tb_err_t tb_signed_batch_view(const uint8_t *buf, size_t len, tb_signed_batch_view_t *v);

/* Reads buf in place (tb_signed_batch_view) into *sb, whose body and
 * signature then point into buf and whose key id is copied into key_id
 * (key_id_size bytes, NUL-terminated). Returns TB_OK, or TB_ERR_PROTO when
 * the view does not take buf or the key id does not fit: decode it with
 * tongban__signed_batch__unpack. */
tb_err_t tb_signed_batch_read(const uint8_t *buf, size_t len, Tongban__SignedBatch *sb, char *key_id,
                              size_t key_id_size);

#define TB_VIEW_NAME_MAX 255

/* The fields of a serialised Batch a router needs, read in place: the
 * entries are walked (each one checked to be well-formed) but not decoded. */
typedef struct {
    char sender[TB_VIEW_NAME_MAX + 1], dest[TB_VIEW_NAME_MAX + 1];
    uint64_t seq, hlc, prev_seq;
    size_t n_entries;
    uint32_t types;               /* bit t set: some entry has type t (every type < 32) */
    /* set by tb_batch_verify_view when the signature covered the body's
     * digest (prehash): SHA-256 of the body, for the journal's chain */
    uint8_t body_sha256[32];
    int has_body_sha256;
} tb_batch_view_t;

/* Reads a serialised Batch in place into *v. Returns TB_OK only when
 * tongban__batch__unpack would decode it to the same values (sender and
 * dest of at most TB_VIEW_NAME_MAX bytes without NUL bytes, every entry
 * type < 32); TB_ERR_PROTO otherwise (decode it to find out). */
tb_err_t tb_batch_view(const uint8_t *body, size_t len, tb_batch_view_t *v);

/* tb_batch_verify without decoding the entries when it can: the same
 * checks and error messages. On TB_OK *view is filled and *batch is NULL,
 * or -- for a body tb_batch_view does not take -- *batch is the decoded
 * Batch (free it) and *view holds its seqs, counts and types, with sender
 * and dest empty (use (*batch)->sender / dest). */
tb_err_t tb_batch_verify_view(const Tongban__SignedBatch *sb, const tb_cert_t *cert, tb_batch_view_t *view,
                              Tongban__Batch **batch, char *err, size_t errlen);

/* Sends Frame{deliver{hub_seq, batch = <signed batch bytes>}} on sock (after
 * a routing-id frame when rid != NULL), building it straight in the message
 * (one copy of the batch). *len: the frame's size. Returns as tb_frame_send. */
tb_err_t tb_frame_send_deliver(void *sock, const uint8_t *rid, size_t rid_len, uint64_t hub_seq,
                               const uint8_t *signed_batch, size_t sb_len, int flags, size_t *len);

/* tb_alg_t <-> wire SigAlg. */
Tongban__SigAlg tb_alg_to_wire(tb_alg_t alg);
tb_alg_t tb_alg_from_wire(Tongban__SigAlg alg);

/* Short stable name of a Nack reason, for logs and counters. */
const char *tb_nack_reason_name(Tongban__NackReason r);

/* 1 if a batch refused for reason r will be refused again when resent
 * unchanged (bad signature, ACL, unknown destination, ...); 0 if resending
 * may succeed (storage, overload, out of order). */
int tb_nack_is_permanent(Tongban__NackReason r);

/* Monotonic milliseconds: for intervals and deadlines. */
uint64_t tb_now_ms(void);

/* Wall-clock (CLOCK_REALTIME) milliseconds since the Unix epoch: for
 * timestamps that are stored or shown. Steps with the system clock. */
static inline int64_t tb_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
