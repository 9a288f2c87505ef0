/* zap.c -- ZAP (RFC 27) request handling: admit registered CURVE keys only. */
#include "zap.h"

#include <stdio.h>
#include <string.h>
#include <zmq.h>

#define ZAP_FRAMES 7

static void send_reply(void *zap, const zmq_msg_t *reqid, const char *code, const char *text,
                       const char *user)
{
    zmq_send(zap, "1.0", 3, ZMQ_SNDMORE);
    if (reqid)
        zmq_send(zap, zmq_msg_data((zmq_msg_t *)reqid), zmq_msg_size((zmq_msg_t *)reqid), ZMQ_SNDMORE);
    else
        zmq_send(zap, "", 0, ZMQ_SNDMORE);
    zmq_send(zap, code, strlen(code), ZMQ_SNDMORE);
    zmq_send(zap, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(zap, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(zap, "", 0, 0);
}

int zap_handle(void *zap, zap_lookup_fn lookup, void *arg, char *who, size_t wholen)
{
    zmq_msg_t part[ZAP_FRAMES + 1];
    int nparts = 0, more = 1, rc = -1;
    if (who && wholen) who[0] = '\0';
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, zap, 0) < 0) {
            zmq_msg_close(&m);
            goto done;
        }
        more = zmq_msg_more(&m);
        if (nparts < ZAP_FRAMES + 1) part[nparts++] = m;
        else zmq_msg_close(&m);
    }
    if (nparts < 6) {
        /* a REP must answer before it can receive again: 400, with the
         * request id when there is one */
        send_reply(zap, nparts >= 2 ? &part[1] : NULL, "400", "malformed ZAP request", "");
        goto done;
    }
    const char *mech = zmq_msg_data(&part[5]);
    size_t mlen = zmq_msg_size(&part[5]);
    int is_curve = mlen == 5 && memcmp(mech, "CURVE", 5) == 0;
    if (nparts != ZAP_FRAMES || !is_curve || zmq_msg_size(&part[6]) != 32) {
        send_reply(zap, &part[1], "400", "CURVE with a 32-byte key required", "");
        rc = -1;
        goto done;
    }
    const uint8_t *key = zmq_msg_data(&part[6]);
    if (who && wholen) {
        char z85[41];
        zmq_z85_encode(z85, key, 32);
        snprintf(who, wholen, "address=%.*s key=%s", (int)zmq_msg_size(&part[3]),
                 (const char *)zmq_msg_data(&part[3]), z85);
    }
    const char *node = lookup(arg, key);
    if (node) {
        send_reply(zap, &part[1], "200", "OK", node);
        rc = 1;
    } else {
        send_reply(zap, &part[1], "400", "unregistered key", "");
        rc = 0;
    }
done:
    for (int i = 0; i < nparts; i++) zmq_msg_close(&part[i]);
    return rc;
}
