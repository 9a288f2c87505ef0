/* adminsock.c -- the daemons' local operator channel (see adminsock.h). */
#include "adminsock.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <zmq.h>

#include "errbuf.h"

tb_err_t tb_admin_bind(void *ctx, const char *path, void **out, char *err, size_t errlen)
{
    char ep[1100];
    snprintf(ep, sizeof ep, "ipc://%s", path);
    void *s = zmq_socket(ctx, ZMQ_REP);
    int zero = 0;
    if (s) zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    mode_t old = umask(0077);        /* the socket file is created 0600 */
    int rc = s ? zmq_bind(s, ep) : -1;
    umask(old);
    if (rc != 0) {
        tb_seterr(err, errlen, "cannot open the admin socket %s: %s", ep, zmq_strerror(errno));
        if (s) zmq_close(s);
        return TB_ERR_IO;
    }
    chmod(path, 0600);
    *out = s;
    return TB_OK;
}

int tb_admin_recv(void *sock, char *buf, size_t len)
{
    int n = zmq_recv(sock, buf, len - 1, ZMQ_DONTWAIT);
    if (n < 0) return -1;
    if (n > (int)len - 1) n = (int)len - 1;
    buf[n] = '\0';
    int more = 0;
    size_t ml = sizeof more;
    zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &ml);
    while (more) {      /* a request is one frame: drop the rest */
        char junk[64];
        zmq_recv(sock, junk, sizeof junk, 0);
        zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &ml);
    }
    return 0;
}
