/* dedup.c -- per-sender memory of accepted batch seqs (see dedup.h). */
#include "dedup.h"

#include "crypto.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t seq;           /* 0 = empty slot */
    uint8_t digest[16];
} slot_t;

struct dedup {
    slot_t ring[DEDUP_RING];   /* insertion order; next write at `next` */
    size_t next, count;
    uint64_t high;
};

dedup_t *dedup_new(void)
{
    return calloc(1, sizeof(dedup_t));
}

void dedup_destroy(dedup_t **self)
{
    if (!self || !*self) return;
    free(*self);
    *self = NULL;
}

void dedup_digest(const uint8_t *sig, size_t len, uint8_t out[16])
{
    uint8_t full[TB_SHA256_LEN];
    memset(out, 0, 16);
    if (tb_sha256(sig, len, full) == TB_OK) memcpy(out, full, 16);
}

/* Smallest seq still in the ring (0 if empty). */
static uint64_t ring_min(const dedup_t *self)
{
    uint64_t m = 0;
    for (size_t i = 0; i < self->count; i++) {
        uint64_t s = self->ring[i].seq;
        if (s && (m == 0 || s < m)) m = s;
    }
    return m;
}

dedup_result_t dedup_check(const dedup_t *self, uint64_t seq, const uint8_t digest[16])
{
    for (size_t i = 0; i < self->count; i++) {
        if (self->ring[i].seq == seq)
            return memcmp(self->ring[i].digest, digest, 16) == 0 ? DEDUP_SAME : DEDUP_CONFLICT;
    }
    if (seq > self->high) return DEDUP_NEW;
    uint64_t lo = ring_min(self);
    if (self->count < DEDUP_RING) return DEDUP_NEW;   /* we remember everything ever accepted */
    return seq >= lo ? DEDUP_NEW : DEDUP_OLD;
}

void dedup_record(dedup_t *self, uint64_t seq, const uint8_t digest[16])
{
    slot_t *s = &self->ring[self->next];
    s->seq = seq;
    memcpy(s->digest, digest, 16);
    self->next = (self->next + 1) % DEDUP_RING;
    if (self->count < DEDUP_RING) self->count++;
    if (seq > self->high) self->high = seq;
}

uint64_t dedup_high(const dedup_t *self)
{
    return self->high;
}

void dedup_skip(dedup_t *self, uint64_t seq)
{
    if (seq > self->high) self->high = seq;
}
