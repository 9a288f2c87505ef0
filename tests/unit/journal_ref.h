/* journal_ref.h -- a second, independent reading of the hub journal's record
 * hash as journal.h defines it (segment versions 1 and 2), for the journal's
 * unit tests and its fuzz target: they check hub/journal.c and
 * hub/journal_segment.c (where the hash is computed) against this, not
 * against itself. Header-only (static functions). */
#ifndef TB_JOURNAL_REF_H
#define TB_JOURNAL_REF_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

/* Reads a varint as journal.h defines it (at most 10 bytes, value within
 * 64 bits) from p[0..n). Returns the bytes it took, 0 if it is not one. */
static inline size_t jref_varint(const uint8_t *p, size_t n, uint64_t *v)
{
    *v = 0;
    for (size_t i = 0; i < n && i < 10; i++) {
        if (i == 9 && p[i] > 1) return 0;
        *v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) return i + 1;
    }
    return 0;
}

/* The SignedBatch body of a batch by the rule of journal.h (the last field 1
 * of wire type 2 in a well-formed field walk). Returns 1 and its offset and
 * length, or 0 if the batch holds none. */
static inline int jref_body(const uint8_t *b, size_t len, size_t *off, size_t *blen)
{
    size_t i = 0, k;
    int found = 0;
    while (i < len) {
        uint64_t tag, v;
        if (!(k = jref_varint(b + i, len - i, &tag))) return 0;
        i += k;
        switch (tag & 7) {
        case 0:
            if (!(k = jref_varint(b + i, len - i, &v))) return 0;
            i += k;
            break;
        case 1:
        case 5:
            if (len - i < ((tag & 7) == 1 ? 8u : 4u)) return 0;
            i += (tag & 7) == 1 ? 8 : 4;
            break;
        case 2:
            if (!(k = jref_varint(b + i, len - i, &v)) || v > len - i - k) return 0;
            i += k;
            if (tag >> 3 == 1) {
                found = 1;
                *off = i;
                *blen = (size_t)v;
            }
            i += (size_t)v;
            break;
        default:
            return 0;
        }
    }
    return found;
}

/* The hash of a record whose body (len bytes) is a head of head_len bytes
 * and a batch, in a segment of that version, into out. Version 1: SHA-256
 * of the body. Version 2: SHA-256 of head, then 0x00 and the batch, or --
 * when the batch holds a SignedBatch body -- 0x01, the body's offset and
 * length (u32 little-endian), the batch with the body replaced by its
 * SHA-256. Returns 0, or -1 if OpenSSL failed. */
static inline int jref_hash(uint32_t version, const uint8_t *body, size_t head_len, size_t len, uint8_t out[32])
{
    const uint8_t *batch = body + head_len;
    size_t blen = len - head_len, off = 0, n = 0;
    unsigned int olen = 0;
    uint8_t mid[9] = { 0x01 }, d[32];
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1;
    if (version == 1) {
        ok = ok && EVP_DigestUpdate(c, body, len) == 1;
    } else if (!jref_body(batch, blen, &off, &n)) {
        ok = ok && EVP_DigestUpdate(c, body, head_len) == 1 && EVP_DigestUpdate(c, "\0", 1) == 1 &&
             EVP_DigestUpdate(c, batch, blen) == 1;
    } else {
        for (int i = 0; i < 4; i++) {
            mid[1 + i] = (uint8_t)(off >> (8 * i));
            mid[5 + i] = (uint8_t)(n >> (8 * i));
        }
        ok = ok && EVP_Digest(batch + off, n, d, &olen, EVP_sha256(), NULL) == 1 && olen == 32 &&
             EVP_DigestUpdate(c, body, head_len) == 1 && EVP_DigestUpdate(c, mid, sizeof mid) == 1 &&
             EVP_DigestUpdate(c, batch, off) == 1 && EVP_DigestUpdate(c, d, sizeof d) == 1 &&
             EVP_DigestUpdate(c, batch + off + n, blen - off - n) == 1;
    }
    ok = ok && EVP_DigestFinal_ex(c, out, &olen) == 1 && olen == 32;
    EVP_MD_CTX_free(c);
    return ok ? 0 : -1;
}

#endif
