/* adminsock.h -- the daemons' local operator channel: a ZeroMQ REP socket on
 * an ipc:// path created with mode 0600, so only the daemon's own user (and
 * root) can talk to it. One text request, one reply. */
#ifndef TB_ADMINSOCK_H
#define TB_ADMINSOCK_H

#include <stddef.h>
#include <tongban/tongban.h>

/* Binds a REP socket of ctx on ipc://path (0600). TB_OK and *out, or
 * TB_ERR_IO with err naming the endpoint. */
tb_err_t tb_admin_bind(void *ctx, const char *path, void **out, char *err, size_t errlen);

/* Receives one request without waiting into buf (NUL-terminated, cut to
 * len - 1 bytes; extra frames are dropped). Returns 0, or -1 if none. */
int tb_admin_recv(void *sock, char *buf, size_t len);

#endif
