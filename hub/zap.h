/* zap.h -- the ZeroMQ Authentication Protocol handler of the hub.
 *
 * libzmq asks inproc://zeromq.zap.01 about every CURVE handshake; we answer
 * 200 with the node id as User-Id for a registered public key, 400 for any
 * other key. Without a handler libzmq would admit anyone who knows the
 * hub's public key.
 */
#ifndef TB_ZAP_H
#define TB_ZAP_H

#include <stddef.h>
#include <stdint.h>

/* Returns the node id for a 32-byte CURVE public key, or NULL to deny. */
typedef const char *(*zap_lookup_fn)(void *arg, const uint8_t key[32]);

/* Handles one pending ZAP request on the REP socket zap. Returns 1 if the
 * client was admitted, 0 if denied, -1 if the request was malformed or the
 * socket failed. who (if non-NULL) receives "address=<ip> key=<z85>" text. */
int zap_handle(void *zap, zap_lookup_fn lookup, void *arg, char *who, size_t wholen);

#endif
