/* hub_ingest.c -- the hub's ingest path: a Batch frame from a node, until it
 * is journaled and acked.
 *
 * Each batch's signature, sender and ACL are verified; a duplicate is acked
 * again; FIFO per sender: a batch is accepted only after its predecessor.
 * An accepted batch is journaled verbatim, and its Ack waits for the group
 * commit after the receive burst (hub_flush: one fsync, or one PostgreSQL
 * commit, for everything journaled in it): a batch is acked only once it is
 * durable. A refused batch is answered with a Nack that says why. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "hub_internal.h"
#include "log.h"
#include "wire.h"

static const char *comp = "hub";

static void send_nack(hub_t *self, peer_t *p, uint64_t seq, Tongban__NackReason reason,
                      const char *detail)
{
    Tongban__Nack nack = TONGBAN__NACK__INIT;
    nack.seq = seq;
    nack.reason = reason;
    nack.detail = (char *)detail;
    Tongban__Frame f = TONGBAN__FRAME__INIT;
    f.kind_case = TONGBAN__FRAME__KIND_NACK;
    f.nack = &nack;
    hub_send_to(self, p, &f);
    if ((unsigned)reason < 16) self->stats.rejected[reason]++;
    if ((unsigned)reason < 16) p->rejected_by[reason]++;
    p->rejected++;
}

/* hub_internal.h */
void hub_reject(hub_t *self, peer_t *p, uint64_t seq, Tongban__NackReason reason, const char *detail)
{
    /* A verified batch refused for good (policy) no longer holds back its
     * successors. Unverified seqs never move the sender's state. */
    if (seq && (reason == TONGBAN__NACK_REASON__NACK_ACL ||
                reason == TONGBAN__NACK_REASON__NACK_UNKNOWN_DEST))
        dedup_skip(p->dedup, seq);
    char q[TB_ERRLEN + 8];
    tb_log(reason == TONGBAN__NACK_REASON__NACK_REPLAY_MISMATCH ? TB_LOG_ERROR : TB_LOG_WARN, comp,
           "batch_rejected", "node=%s seq=%llu reason=%s detail=%s%s", p->id,
           (unsigned long long)seq, tb_nack_reason_name(reason), tb_log_quote(detail, q, sizeof q),
           reason == TONGBAN__NACK_REASON__NACK_REPLAY_MISMATCH ? " alarm=1" : "");
    send_nack(self, p, seq, reason, detail);
}

static void queue_ack(hub_t *self, peer_t *p, uint64_t seq)
{
    if (self->nacks == self->acks_cap) {
        size_t cap = self->acks_cap ? self->acks_cap * 2 : 256;
        ack_wait_t *a = realloc(self->acks, cap * sizeof *a);
        if (!a) return;   /* the sender resends; the resend is deduplicated */
        self->acks = a;
        self->acks_cap = cap;
    }
    self->acks[self->nacks].peer = p;
    self->acks[self->nacks].seq = seq;
    self->nacks++;
}

/* 1 if sb carries the key id of another registered node's certificate:
 * p presents a batch signed by someone else (impersonation), not merely
 * an outdated certificate of its own. */
static int signed_by_other(hub_t *self, const peer_t *p, const Tongban__SignedBatch *sb)
{
    if (!sb->signer_key_id) return 0;
    for (size_t i = 0; i < self->reg->n; i++) {
        const reg_node_t *n = &self->reg->nodes[i];
        if (n != p->reg && strcmp(tb_cert_key_id(n->cert), sb->signer_key_id) == 0) return 1;
    }
    return 0;
}

#define KEY_ID_MAX 127   /* a key id is 64 hex digits; longer ones take the decoding path */

/* hub_internal.h */
void hub_on_batch(hub_t *self, peer_t *p, const uint8_t *raw, size_t raw_len)
{
    char err[TB_ERRLEN] = "";
    Tongban__Batch *b = NULL;
    /* The batch is read in place where it can be (no copy of the body, no
     * decoding of its entries: the signature covers the bytes, the ACL
     * needs only each entry's type); anything unusual is decoded by
     * protobuf-c as before, which decides. */
    Tongban__SignedBatch view_sb = TONGBAN__SIGNED_BATCH__INIT, *sbu = NULL;
    const Tongban__SignedBatch *sb = &view_sb;
    char key_id[KEY_ID_MAX + 1];
    tb_batch_view_t bv;
    if (tb_signed_batch_read(raw, raw_len, &view_sb, key_id, sizeof key_id) != TB_OK) {
        if (!(sbu = tongban__signed_batch__unpack(NULL, raw_len, raw))) {
            hub_reject(self, p, 0, TONGBAN__NACK_REASON__NACK_MALFORMED, "undecodable SignedBatch");
            return;
        }
        sb = sbu;
    }
    if (hub_peer_revoked(p)) {
        hub_reject(self, p, 0, TONGBAN__NACK_REASON__NACK_REVOKED, "this node is revoked");
        goto done;
    }
    tb_err_t rc = tb_batch_verify_view(sb, p->reg->cert, &bv, &b, err, sizeof err);
    if (rc != TB_OK) {
        uint64_t seq = 0;
        Tongban__Batch *peek = tongban__batch__unpack(NULL, sb->body.len, sb->body.data);
        if (peek) {
            seq = peek->seq;
            tongban__batch__free_unpacked(peek, NULL);
        }
        Tongban__NackReason r = rc == TB_ERR_BADSIG ? TONGBAN__NACK_REASON__NACK_BAD_SIGNATURE
                               : strstr(err, "sender") ? TONGBAN__NACK_REASON__NACK_WRONG_SENDER
                               : strstr(err, "key id") ? (signed_by_other(self, p, sb)
                                                              ? TONGBAN__NACK_REASON__NACK_WRONG_SENDER
                                                              : TONGBAN__NACK_REASON__NACK_UNKNOWN_CERT)
                                                       : TONGBAN__NACK_REASON__NACK_MALFORMED;
        hub_reject(self, p, seq, r, err);
        goto done;
    }
    const uint64_t seq = bv.seq;
    const char *dest = b ? b->dest : bv.dest;
    uint8_t digest[16];
    dedup_digest(sb->signature.data, sb->signature.len, digest);
    switch (dedup_check(p->dedup, seq, digest)) {
    case DEDUP_SAME:
    case DEDUP_OLD:
        self->stats.duplicates++;
        tb_log(TB_LOG_INFO, comp, "duplicate_batch", "node=%s seq=%llu action=ack_again", p->id,
               (unsigned long long)seq);
        queue_ack(self, p, seq);
        goto done;
    case DEDUP_CONFLICT:
        hub_reject(self, p, seq, TONGBAN__NACK_REASON__NACK_REPLAY_MISMATCH,
               "a different batch was already accepted under this seq");
        goto done;
    case DEDUP_NEW:
        break;
    }
    /* FIFO per sender: a batch is accepted only after its predecessor, so a
     * batch lost in flight (hub crash) cannot be overtaken by later ones. */
    /* With no memory of this sender at all (a new hub data directory, or
     * its old batches collected), there is nothing to order against:
     * accept, and order from here on. */
    if (bv.prev_seq && dedup_high(p->dedup) != 0 && bv.prev_seq > dedup_high(p->dedup)) {
        char detail[96];
        snprintf(detail, sizeof detail, "predecessor %llu not accepted yet: resend from %llu",
                 (unsigned long long)bv.prev_seq, (unsigned long long)dedup_high(p->dedup) + 1);
        hub_reject(self, p, seq, TONGBAN__NACK_REASON__NACK_OUT_OF_ORDER, detail);
        goto done;
    }
    Tongban__NackReason why;
    if (b) {
        why = registry_check(self->reg, p->reg, b, err, sizeof err);
    } else if (registry_types_allowed(p->reg, bv.types)) {
        why = registry_check_dest(self->reg, p->reg, dest, err, sizeof err);
    } else {
        /* refused: decoded, for the same detail (which entry, which type) */
        b = tongban__batch__unpack(NULL, sb->body.len, sb->body.data);
        why = b ? registry_check(self->reg, p->reg, b, err, sizeof err) : TONGBAN__NACK_REASON__NACK_ACL;
        if (!b) snprintf(err, sizeof err, "%s may not send entries of these types", p->id);
    }
    if (why != TONGBAN__NACK_REASON__NACK_UNSPECIFIED) {
        hub_reject(self, p, seq, why, err);
        goto done;
    }
    uint64_t hub_seq = 0;
    /* the body's SHA-256 when the signature covered it (prehash): the
     * journal's chain takes it instead of hashing the body again */
    rc = hubstore_append(self->store, p->id, seq, dest, raw, raw_len, bv.has_body_sha256 ? bv.body_sha256 : NULL,
                         &hub_seq, err, sizeof err);
    if (rc != TB_OK) {
        if (!self->storage_failed)
            tb_log(TB_LOG_ERROR, comp, "journal_append_failed", "error=\"%s\"", err);
        self->storage_failed = 1;
        hub_reject(self, p, seq, TONGBAN__NACK_REASON__NACK_STORAGE, err);
        goto done;
    }
    if (self->storage_failed) {
        tb_log(TB_LOG_INFO, comp, "journal_writable_again", "hub_seq=%llu", (unsigned long long)hub_seq);
        self->storage_failed = 0;
    }
    dedup_record(p->dedup, seq, digest);
    queue_ack(self, p, seq);
    for (size_t i = 0; i < self->npeers; i++) {
        peer_t *d = &self->peers[i];
        if (d != p && d->reg && registry_wants(d->reg, dest)) {
            d->backlog_batches++;
            d->backlog_bytes += raw_len;
        }
    }
    p->batches_in++;
    p->records_in += bv.n_entries;
    self->stats.batches_in++;
    self->stats.records_in += bv.n_entries;
    tb_log(TB_LOG_DEBUG, comp, "batch_accepted", "node=%s seq=%llu dest=%s entries=%zu hub_seq=%llu",
           p->id, (unsigned long long)seq, dest, bv.n_entries, (unsigned long long)hub_seq);
done:
    if (b) tongban__batch__free_unpacked(b, NULL);
    if (sbu) tongban__signed_batch__free_unpacked(sbu, NULL);
}

/* Group commit: one fsync for everything journaled in this burst, then the
 * Acks, then deliveries of what just became durable. */
void hub_flush(hub_t *self, uint64_t now)
{
    if (self->nacks == 0) return;
    char err[TB_ERRLEN];
    if (!self->store) {
        self->nacks = 0;
        return;
    }
    if (hubstore_durable_seq(self->store) < hubstore_last_seq(self->store)) {
        if (self->pg && hubstore_sync(self->store, err, sizeof err) != TB_OK) {
            /* not committed, or not known to be: nothing is acked; the
             * senders resend to whichever hub is active next, and its
             * recovery tells what was really committed */
            self->nacks = 0;
            hub_fence(self, "commit_failed", err);
            return;
        }
        if (!self->pg && hubstore_sync(self->store, err, sizeof err) != TB_OK) {
            /* After a failed fdatasync the kernel may have dropped the data
             * and a retry could falsely succeed: nothing is acked, and the
             * hub stops (fail-stop, as PostgreSQL does); recovery at the
             * next start finds out what is really on disk. */
            tb_log(TB_LOG_ERROR, comp, "journal_sync_failed", "error=\"%s\" action=stop", err);
            for (size_t i = 0; i < self->nacks; i++)
                send_nack(self, self->acks[i].peer, self->acks[i].seq,
                          TONGBAN__NACK_REASON__NACK_STORAGE, err);
            self->nacks = 0;
            self->storage_failed = 1;
            self->fatal = 1;
            return;
        }
        self->stats.syncs++;
    }
    for (size_t i = 0; i < self->nacks; i++) {
        Tongban__Ack ack = TONGBAN__ACK__INIT;
        ack.seq = self->acks[i].seq;
        Tongban__Frame f = TONGBAN__FRAME__INIT;
        f.kind_case = TONGBAN__FRAME__KIND_ACK;
        f.ack = &ack;
        if (hub_send_to(self, self->acks[i].peer, &f) == TB_OK) self->stats.acks_out++;
    }
    if (self->pg && !self->first_ack_logged && self->stats.acks_out) {
        self->first_ack_logged = 1;
        tb_log(TB_LOG_INFO, comp, "first_ack", "unix_ms=%lld ms_since_active=%llu", (long long)tb_wall_ms(),
               (unsigned long long)(tb_now_ms() - self->activated_ms));
    }
    self->nacks = 0;
    for (size_t i = 0; i < self->npeers; i++) hub_pump(self, &self->peers[i], now);
}
