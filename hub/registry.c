/* registry.c -- the hub's registry of nodes, topics, ACLs and revocations. */
#include "registry.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "wire.h"

static const char *const type_names[] = {
    "", "record_upsert", "record_delete", "licence_issue", "licence_revoke", "case_submit",
    "case_update", "case_rating", "risk_alert", "complaint",
};
#define N_TYPES (sizeof type_names / sizeof *type_names)

/* Reads "id unix_ms" lines; unknown ids are ignored (node removed since). */
static tb_err_t load_revoked(registry_t *self, char *err, size_t errlen)
{
    FILE *f = fopen(self->revoked_path, "r");
    if (!f) {
        if (errno == ENOENT) return TB_OK;
        snprintf(err, errlen, "%s: %s", self->revoked_path, strerror(errno));
        return TB_ERR_IO;
    }
    char line[256];
    int lineno = 0;
    tb_err_t rc = TB_OK;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char id[TB_ID_MAX + 1];
        long long when;
        if (line[0] == '#' || line[0] == '\n') continue;
        if (sscanf(line, "%64s %lld", id, &when) != 2 || when <= 0) {
            snprintf(err, errlen, "%s:%d: expected \"NODE_ID UNIX_MS\"", self->revoked_path, lineno);
            rc = TB_ERR_CONFIG;
            break;
        }
        reg_node_t *n = registry_node(self, id);
        if (n) n->revoked_ms = when;
    }
    fclose(f);
    return rc;
}

static void free_node(reg_node_t *n)
{
    tb_cert_destroy(&n->cert);
    free(n->subs);
    free(n->send_to);
}

void registry_destroy(registry_t **selfp)
{
    registry_t *self = selfp ? *selfp : NULL;
    if (!self) return;
    for (size_t i = 0; i < self->n; i++) free_node(&self->nodes[i]);
    free(self->nodes);
    for (size_t i = 0; i < self->ntopics; i++) free(self->topics[i].pubs);
    free(self->topics);
    tb_cert_destroy(&self->ca);
    free(self);
    *selfp = NULL;
}

/* Copies a config list of fixed-size strings. */
static void *dup_list(const void *src, size_t count, size_t size)
{
    if (count == 0) return NULL;
    void *p = malloc(count * size);
    if (p) memcpy(p, src, count * size);
    return p;
}

tb_err_t registry_load(const tb_hub_config_t *cfg, const char *revoked_path, registry_t **out,
                       char *err, size_t errlen)
{
    tb_err_t rc = TB_ERR_NOMEM;
    registry_t *self = calloc(1, sizeof *self);
    if (!self) return TB_ERR_NOMEM;
    snprintf(self->revoked_path, sizeof self->revoked_path, "%s", revoked_path);
    if ((rc = tb_cert_load_file(cfg->ca_certificate, &self->ca, err, errlen)) != TB_OK) goto fail;
    self->nodes = calloc(cfg->node_count ? cfg->node_count : 1, sizeof *self->nodes);
    self->topics = calloc(cfg->topic_count ? cfg->topic_count : 1, sizeof *self->topics);
    if (!self->nodes || !self->topics) { rc = TB_ERR_NOMEM; goto fail; }
    for (size_t i = 0; i < cfg->topic_count; i++) {
        reg_topic_t *t = &self->topics[self->ntopics++];
        snprintf(t->name, sizeof t->name, "%s", cfg->topics[i].name);
        t->pubs = dup_list(cfg->topics[i].publishers, cfg->topics[i].publisher_count, sizeof *t->pubs);
        t->npubs = cfg->topics[i].publisher_count;
    }
    for (size_t i = 0; i < cfg->node_count; i++) {
        const tb_hub_node_config_t *c = &cfg->nodes[i];
        reg_node_t *n = &self->nodes[self->n++];
        snprintf(n->id, sizeof n->id, "%s", c->id);
        if (!zmq_z85_decode(n->curve_pub, c->curve_public)) {
            snprintf(err, errlen, "node %s: curve_public is not a valid Z85 key", c->id);
            rc = TB_ERR_CONFIG;
            goto fail;
        }
        if ((rc = tb_cert_load_file(c->certificate, &n->cert, err, errlen)) != TB_OK) goto fail;
        char e2[TB_ERRLEN];
        if (tb_cert_verify_issued_by(n->cert, self->ca, e2, sizeof e2) != TB_OK) {
            snprintf(err, errlen, "%s: not issued by the national CA %s: %s", c->certificate,
                     cfg->ca_certificate, e2);
            rc = TB_ERR_CERT;
            goto fail;
        }
        if (strcmp(tb_cert_node_id(n->cert), c->id) != 0) {
            snprintf(err, errlen, "%s: certificate is for node \"%s\", registry says \"%s\"",
                     c->certificate, tb_cert_node_id(n->cert), c->id);
            rc = TB_ERR_CERT;
            goto fail;
        }
        n->subs = dup_list(c->subscribe, c->subscribe_count, sizeof *n->subs);
        n->nsubs = c->subscribe_count;
        n->send_to = dup_list(c->may_send_to, c->may_send_to_count, sizeof *n->send_to);
        n->nsend_to = c->may_send_to_count;
        if (c->may_send_count == 0) {
            n->may_send = ~(uint32_t)0;
        } else {
            for (size_t k = 0; k < c->may_send_count; k++)
                for (size_t t = 1; t < N_TYPES; t++)
                    if (strcmp(c->may_send[k], type_names[t]) == 0) n->may_send |= 1u << t;
        }
        for (size_t k = 0; k < n->nsubs; k++)
            if (!registry_topic(self, n->subs[k])) {
                snprintf(err, errlen, "node %s subscribes to topic \"%s\", which is not declared under topics:",
                         c->id, n->subs[k]);
                rc = TB_ERR_CONFIG;
                goto fail;
            }
    }
    if ((rc = load_revoked(self, err, errlen)) != TB_OK) goto fail;
    *out = self;
    return TB_OK;
fail:
    registry_destroy(&self);
    return rc;
}

reg_node_t *registry_node(const registry_t *self, const char *id)
{
    for (size_t i = 0; i < self->n; i++)
        if (strcmp(self->nodes[i].id, id) == 0) return &self->nodes[i];
    return NULL;
}

reg_node_t *registry_by_key(const registry_t *self, const uint8_t key[32])
{
    for (size_t i = 0; i < self->n; i++)
        if (memcmp(self->nodes[i].curve_pub, key, 32) == 0) return &self->nodes[i];
    return NULL;
}

const reg_topic_t *registry_topic(const registry_t *self, const char *name)
{
    for (size_t i = 0; i < self->ntopics; i++)
        if (strcmp(self->topics[i].name, name) == 0) return &self->topics[i];
    return NULL;
}

int registry_wants(const reg_node_t *node, const char *dest)
{
    if (strcmp(dest, node->id) == 0) return 1;
    if (strncmp(dest, "topic:", 6) != 0) return 0;
    for (size_t k = 0; k < node->nsubs; k++)
        if (strcmp(node->subs[k], dest + 6) == 0) return 1;
    return 0;
}

Tongban__NackReason registry_check_dest(const registry_t *self, const reg_node_t *sender, const char *dest,
                                        char *detail, size_t len)
{
    if (!dest) dest = "";
    if (strncmp(dest, "topic:", 6) == 0) {
        const reg_topic_t *t = registry_topic(self, dest + 6);
        if (!t) {
            snprintf(detail, len, "topic \"%s\" is not declared at the hub", dest + 6);
            return TONGBAN__NACK_REASON__NACK_UNKNOWN_DEST;
        }
        int ok = 0;
        for (size_t k = 0; k < t->npubs && !ok; k++)
            ok = strcmp(t->pubs[k], "*") == 0 || strcmp(t->pubs[k], sender->id) == 0;
        if (!ok) {
            snprintf(detail, len, "%s may not publish to %s", sender->id, dest);
            return TONGBAN__NACK_REASON__NACK_ACL;
        }
    } else {
        const reg_node_t *d = registry_node(self, dest);
        if (!d || d == sender) {
            snprintf(detail, len, "destination \"%s\" is not a registered node", dest);
            return TONGBAN__NACK_REASON__NACK_UNKNOWN_DEST;
        }
    }
    if (sender->nsend_to > 0) {
        int ok = 0;
        for (size_t k = 0; k < sender->nsend_to && !ok; k++)
            ok = strcmp(sender->send_to[k], "*") == 0 || strcmp(sender->send_to[k], dest) == 0;
        if (!ok) {
            snprintf(detail, len, "%s may not send to %s (may_send_to)", sender->id, dest);
            return TONGBAN__NACK_REASON__NACK_ACL;
        }
    }
    return TONGBAN__NACK_REASON__NACK_UNSPECIFIED;
}

int registry_types_allowed(const reg_node_t *sender, uint32_t types)
{
    uint32_t ok = sender->may_send & (uint32_t)((1u << N_TYPES) - 1u) & ~1u;   /* type 0 never */
    return (types & ~ok) == 0;
}

Tongban__NackReason registry_check(const registry_t *self, const reg_node_t *sender,
                                   const Tongban__Batch *b, char *detail, size_t len)
{
    const char *dest = b->dest ? b->dest : "";
    Tongban__NackReason why = registry_check_dest(self, sender, dest, detail, len);
    if (why != TONGBAN__NACK_REASON__NACK_UNSPECIFIED) return why;
    for (size_t i = 0; i < b->n_entries; i++) {
        unsigned t = (unsigned)b->entries[i]->type;
        if (t == 0 || t >= N_TYPES || !(sender->may_send & (1u << t))) {
            snprintf(detail, len, "%s may not send entries of type %s (entry %zu)", sender->id,
                     t < N_TYPES && t ? type_names[t] : "unknown", i);
            return TONGBAN__NACK_REASON__NACK_ACL;
        }
    }
    return TONGBAN__NACK_REASON__NACK_UNSPECIFIED;
}

tb_err_t registry_revoke(registry_t *self, const char *id, char *err, size_t errlen)
{
    reg_node_t *n = registry_node(self, id);
    if (!n) {
        snprintf(err, errlen, "no node \"%s\" in the registry", id);
        return TB_ERR_NOTFOUND;
    }
    if (!n->revoked_ms) n->revoked_ms = tb_wall_ms();
    char tmp[TB_PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", self->revoked_path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        if (fd >= 0) close(fd);
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        return TB_ERR_IO;
    }
    fprintf(f, "# revoked nodes: id unix_ms (written by tongban-hub)\n");
    for (size_t i = 0; i < self->n; i++)
        if (self->nodes[i].revoked_ms)
            fprintf(f, "%s %lld\n", self->nodes[i].id, (long long)self->nodes[i].revoked_ms);
    int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, self->revoked_path) != 0) {
        snprintf(err, errlen, "%s: %s", self->revoked_path, strerror(errno));
        unlink(tmp);
        return TB_ERR_IO;
    }
    return TB_OK;
}
