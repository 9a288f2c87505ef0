/* hubstore.c -- the switch between the journal and the PostgreSQL store. */
#include "hubstore.h"

#include <stdlib.h>

#include "errbuf.h"

struct hubstore {
    journal_t *j;
    pgstore_t *pg;
};

struct hubstore_reader {
    journal_reader_t *jr;
    pgstore_reader_t *pr;
};

static hubstore_t *wrap(journal_t *j, pgstore_t *pg)
{
    hubstore_t *self = calloc(1, sizeof *self);
    if (!self) return NULL;
    self->j = j;
    self->pg = pg;
    return self;
}

hubstore_t *hubstore_journal(journal_t *j) { return wrap(j, NULL); }
hubstore_t *hubstore_pg(pgstore_t *pg) { return wrap(NULL, pg); }

void hubstore_destroy(hubstore_t **selfp)
{
    hubstore_t *self = selfp ? *selfp : NULL;
    if (!self) return;
    journal_destroy(&self->j);
    pgstore_destroy(&self->pg);
    free(self);
    *selfp = NULL;
}

int hubstore_is_pg(const hubstore_t *self) { return self && self->pg; }
const char *hubstore_kind(const hubstore_t *self) { return self && self->pg ? "postgresql" : "journal"; }
int hubstore_broken(const hubstore_t *self) { return self && self->pg && pgstore_broken(self->pg); }

tb_err_t hubstore_append(hubstore_t *self, const char *sender, uint64_t sender_seq, const char *dest,
                         const uint8_t *batch, size_t len, const uint8_t *body_sha256, uint64_t *hub_seq,
                         char *err, size_t errlen)
{
    return self->pg ? pgstore_append(self->pg, sender, sender_seq, dest, batch, len, hub_seq, err, errlen)
                    : journal_append(self->j, sender, sender_seq, dest, batch, len, body_sha256, hub_seq,
                                     err, errlen);
}

tb_err_t hubstore_sync(hubstore_t *self, char *err, size_t errlen)
{
    return self->pg ? pgstore_commit(self->pg, err, errlen) : journal_sync(self->j, err, errlen);
}

uint64_t hubstore_last_seq(const hubstore_t *self)
{
    return !self ? 0 : self->pg ? pgstore_last_seq(self->pg) : journal_last_seq(self->j);
}

uint64_t hubstore_durable_seq(const hubstore_t *self)
{
    return !self ? 0 : self->pg ? pgstore_durable_seq(self->pg) : journal_durable_seq(self->j);
}

uint64_t hubstore_bytes(const hubstore_t *self)
{
    return !self ? 0 : self->pg ? pgstore_bytes(self->pg) : journal_bytes(self->j);
}

size_t hubstore_segments(const hubstore_t *self)
{
    return !self || self->pg ? 0 : journal_segments(self->j);
}

tb_err_t hubstore_reader_new(hubstore_t *self, uint64_t after_seq, const char *const *dests, size_t n,
                             hubstore_reader_t **out, char *err, size_t errlen)
{
    tb_err_t rc;
    hubstore_reader_t *r = calloc(1, sizeof *r);
    if (!r) {
        tb_seterr(err, errlen, "out of memory");
        return TB_ERR_NOMEM;
    }
    rc = self->pg ? pgstore_reader_new(self->pg, after_seq, dests, n, &r->pr, err, errlen)
                  : journal_reader_new(self->j, after_seq, &r->jr, err, errlen);
    if (rc != TB_OK) {
        free(r);
        return rc;
    }
    *out = r;
    return TB_OK;
}

tb_err_t hubstore_reader_next(hubstore_reader_t *r, int (*want)(void *arg, const char *dest), void *arg,
                              jrec_t *rec, int *got, char *err, size_t errlen)
{
    return r->pr ? pgstore_reader_next(r->pr, rec, got, err, errlen)
                 : journal_reader_next(r->jr, want, arg, rec, got, err, errlen);
}

uint64_t hubstore_reader_pos(const hubstore_reader_t *r)
{
    return r->pr ? pgstore_reader_pos(r->pr) : journal_reader_pos(r->jr);
}

void hubstore_reader_destroy(hubstore_reader_t **rp)
{
    hubstore_reader_t *r = rp ? *rp : NULL;
    if (!r) return;
    journal_reader_destroy(&r->jr);
    pgstore_reader_destroy(&r->pr);
    free(r);
    *rp = NULL;
}

tb_err_t hubstore_gc(hubstore_t *self, uint64_t min_acked, int64_t retention_ms, size_t *removed, char *err,
                     size_t errlen)
{
    return self->pg ? pgstore_gc(self->pg, min_acked, retention_ms, removed, err, errlen)
                    : journal_gc(self->j, min_acked, retention_ms, removed, err, errlen);
}

tb_err_t hubstore_cursors_save(hubstore_t *self, cursors_t *c, char *err, size_t errlen)
{
    return self->pg ? pgstore_cursors_save(self->pg, c, err, errlen) : cursors_save(c, err, errlen);
}

tb_err_t hubstore_revoke(hubstore_t *self, registry_t *reg, const char *id, char *err, size_t errlen)
{
    tb_err_t rc = registry_revoke(reg, id, err, errlen);
    if (rc != TB_OK || !self->pg) return rc;
    reg_node_t *n = registry_node(reg, id);
    return pgstore_revoke(self->pg, id, n ? n->revoked_ms : 0, err, errlen);
}

tb_err_t hubstore_revoked_load(hubstore_t *self, registry_t *reg, char *err, size_t errlen)
{
    return self && self->pg ? pgstore_revoked_load(self->pg, reg, err, errlen) : TB_OK;
}

int64_t hubstore_epoch(const hubstore_t *self)
{
    return self && self->pg ? pgstore_epoch(self->pg) : 0;
}
