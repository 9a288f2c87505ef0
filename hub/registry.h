/* registry.h -- who may connect to the hub and what each node may send:
 * nodes (CURVE key, certificate, topic subscriptions, ACL), topics (who may
 * publish) and the revoked nodes.
 *
 * Loaded from the hub's YAML (tb_hub_config_t); every certificate is checked
 * against the national CA and must name its node. Revocations are kept in a
 * file of their own (one "id unix_ms" line each) so that `tbctl hub revoke`
 * survives restarts and reloads.
 */
#ifndef TB_REGISTRY_H
#define TB_REGISTRY_H

#include <stddef.h>
#include <stdint.h>
#include <tongban/tongban.h>

#include "config.h"
#include "crypto.h"
#include "tongban.pb-c.h"

typedef struct {
    char id[TB_ID_MAX + 1];
    uint8_t curve_pub[32];
    tb_cert_t *cert;
    char (*subs)[TB_ID_MAX + 1];          /* subscribed topic names */
    size_t nsubs;
    uint32_t may_send;                    /* bit (1 << EntryType) per allowed type */
    char (*send_to)[TB_DEST_MAX + 1];     /* allowed destinations; nsend_to == 0: any node */
    size_t nsend_to;
    int64_t revoked_ms;                   /* 0 = not revoked; else when (unix ms) */
} reg_node_t;

typedef struct {
    char name[TB_ID_MAX + 1];
    char (*pubs)[TB_ID_MAX + 1];          /* node ids or "*" */
    size_t npubs;
} reg_topic_t;

typedef struct {
    tb_cert_t *ca;
    reg_node_t *nodes;
    size_t n;
    reg_topic_t *topics;
    size_t ntopics;
    char revoked_path[TB_PATH_MAX];
} registry_t;

/* Builds the registry from cfg and the revocation file revoked_path (missing
 * = nobody revoked). TB_ERR_CERT / TB_ERR_IO / TB_ERR_CONFIG with err naming
 * the file. */
tb_err_t registry_load(const tb_hub_config_t *cfg, const char *revoked_path, registry_t **out,
                       char *err, size_t errlen);
void registry_destroy(registry_t **self);

/* Lookups; NULL when unknown. */
reg_node_t *registry_node(const registry_t *self, const char *id);
reg_node_t *registry_by_key(const registry_t *self, const uint8_t key[32]);
const reg_topic_t *registry_topic(const registry_t *self, const char *name);

/* 1 if node receives dest: dest is its id, or topic:<t> with t subscribed. */
int registry_wants(const reg_node_t *node, const char *dest);

/* Checks a verified batch from sender against the registry: destination
 * known (a registered node other than the sender, or a declared topic),
 * sender allowed to send there (may_send_to, topic publishers) and every
 * entry type allowed (may_send). Returns NACK_UNSPECIFIED (0) when allowed,
 * else the reason, with detail filled for the sender's operator. */
Tongban__NackReason registry_check(const registry_t *self, const reg_node_t *sender,
                                   const Tongban__Batch *b, char *detail, size_t len);

/* The destination half of registry_check (dest known, sender allowed to
 * send there). Returns NACK_UNSPECIFIED (0) when allowed, else the reason. */
Tongban__NackReason registry_check_dest(const registry_t *self, const reg_node_t *sender, const char *dest,
                                        char *detail, size_t len);

/* 1 if sender may send entries of every type whose bit (1 << type) is set
 * in types (the entry half of registry_check, without the detail), else 0. */
int registry_types_allowed(const reg_node_t *sender, uint32_t types);

/* Marks id revoked now and rewrites the revocation file atomically.
 * TB_ERR_NOTFOUND for an unknown node; TB_ERR_IO if the file cannot be written. */
tb_err_t registry_revoke(registry_t *self, const char *id, char *err, size_t errlen);

#endif
