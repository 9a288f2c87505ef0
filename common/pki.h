/* pki.h -- the national CA and node enrolment (used by `tbctl pki`).
 *
 * Layout written by tb_pki_init_ca(dir):   dir/ca.key (0600), dir/ca.crt
 * Layout written by tb_pki_issue(out):     out/node.key (0600), out/node.crt,
 *   out/ca.crt (copy of the CA certificate),
 *   out/curve.key (0600: the CURVE secret key, Z85, one line),
 *   out/curve.pub (the CURVE public key, Z85, one line).
 * Existing files are never overwritten (TB_ERR_DUPLICATE).
 */
#ifndef TB_PKI_H
#define TB_PKI_H

#include "crypto.h"

/* Creates a CA key of alg and a self-signed CA certificate valid `days`
 * (subject CN=<name>, O=tongban). */
tb_err_t tb_pki_init_ca(const char *dir, const char *name, tb_alg_t alg, int days,
                        char *err, size_t errlen);

/* Issues a node: signing key of alg, certificate CN=<node_id> signed by the CA
 * in ca_dir, valid `days`, and a CURVE key pair. node_id: 1..64 chars of
 * [A-Za-z0-9_.-]. */
tb_err_t tb_pki_issue(const char *ca_dir, const char *node_id, tb_alg_t alg, int days,
                      const char *out_dir, char *err, size_t errlen);

/* Creates a CURVE key pair: secret_path (0600) and public_path, Z85 text. */
tb_err_t tb_pki_curve_keypair(const char *secret_path, const char *public_path,
                              char *err, size_t errlen);

/* Reads a Z85 CURVE key file (40 chars + optional newline) into out (41 bytes).
 * Secret key files with group/other permission bits are refused (TB_ERR_PERM)
 * when is_secret. */
tb_err_t tb_pki_read_z85(const char *path, int is_secret, char out[41], char *err, size_t errlen);

#endif
