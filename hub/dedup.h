/* dedup.h -- recognising a resent batch: per sender, the seqs accepted lately
 * and a digest of each one's signature.
 *
 * A node resends a batch whose Ack it did not get; the hub must ack it again
 * without storing a second copy, and must never accept a *different* batch
 * under a seq it already stored (reject and alarm). The signature digest
 * tells the two apart: resends are byte-identical, so their signatures are
 * too; a different body under the same key cannot carry the same signature.
 *
 * Remembered: the last DEDUP_RING accepted seqs of the sender and the highest
 * seq ever accepted. A seq below the ring's oldest is an old resend (acked
 * again); a seq inside the ring's range that is not in it is a hole (e.g. an
 * earlier Nack) and may still be accepted.
 */
#ifndef TB_DEDUP_H
#define TB_DEDUP_H

#include <stddef.h>
#include <stdint.h>

#define DEDUP_RING 1024

typedef enum {
    DEDUP_NEW = 0,        /* never accepted: store it */
    DEDUP_SAME,           /* accepted before with the same signature: ack again */
    DEDUP_CONFLICT,       /* accepted before with a different signature: refuse, alarm */
    DEDUP_OLD             /* older than anything remembered: assume accepted, ack again */
} dedup_result_t;

typedef struct dedup dedup_t;

/* Returns a new empty tracker, or NULL when out of memory. */
dedup_t *dedup_new(void);
void dedup_destroy(dedup_t **self);

/* Digest of a signature (first 16 bytes of its SHA-256) as used below. */
void dedup_digest(const uint8_t *sig, size_t len, uint8_t out[16]);

/* Classifies (seq, digest) without changing anything. */
dedup_result_t dedup_check(const dedup_t *self, uint64_t seq, const uint8_t digest[16]);

/* Remembers that seq was accepted with digest. */
void dedup_record(dedup_t *self, uint64_t seq, const uint8_t digest[16]);

/* Remembers that seq was refused for good: later seqs may name it as their
 * predecessor. A resend of it is classified DEDUP_NEW (and refused again). */
void dedup_skip(dedup_t *self, uint64_t seq);

/* Highest seq ever accepted or refused for good (0 if none). */
uint64_t dedup_high(const dedup_t *self);

#endif
