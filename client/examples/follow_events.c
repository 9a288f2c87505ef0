/* follow_events.c -- libtongban example: follow the node's event stream
 * with a durable cursor. Every tb.* change on the node (licences, case
 * events, risks, complaints, supervision items; local or received) is an
 * event; the cursor named on the command line remembers, in the node's
 * database, how far this application got, so a restart resumes there.
 *
 *   cc -o follow_events follow_events.c $(pkg-config --cflags --libs tongban)
 *   ./follow_events ipc:///tmp/tongban-node-110000.api my_app [MAX]
 *
 * Stops on Ctrl-C (or after MAX events). Delivery is at-least-once: an event
 * handled but not yet acknowledged when the program dies comes again, so
 * make the handling idempotent (e.g. keyed by the event id).
 */
#define _POSIX_C_SOURCE 200809L   /* sigaction, nanosleep under -std=c11 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tongban/tongban.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* The application's work for one event; returns 0 when it is done (committed). */
static int handle(const tb_event_t *e)
{
    printf("%lld %s %-12s %-40s from %s\n  %s\n", tb_event_id(e), tb_event_at(e), tb_event_kind(e), tb_event_key(e),
           tb_event_origin(e), tb_event_body(e));
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    tb_client_t *c = NULL;
    tb_events_t *ev = NULL;
    const tb_event_t *e;
    char why[256];
    long max = argc > 3 ? strtol(argv[3], NULL, 10) : 0, seen = 0;
    int rc = 0;

    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s ENDPOINT CURSOR_NAME [MAX]\n", argv[0]);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    tb_client_opts_t opts = { .errbuf = why, .errlen = sizeof why };
    if (tb_client_open(argv[1], &opts, &c) != TB_OK) {
        fprintf(stderr, "open %s: %s\n", argv[1], why);
        return 1;
    }
    if (tb_events_open(c, argv[2], &ev) != TB_OK) {
        fprintf(stderr, "events: %s\n", tb_client_error(c));
        tb_client_close(&c);
        return 1;
    }
    while (!stop && (max <= 0 || seen < max)) {
        /* waits up to 10 s on the node for the next event (a long poll) */
        tb_err_t err = tb_events_next(ev, 10000, &e);
        if (err == TB_ERR_TIMEOUT && tb_client_result(c)) continue;   /* nothing new yet */
        if (err == TB_ERR_UNAVAILABLE || err == TB_ERR_TIMEOUT) {      /* node away: retry */
            fprintf(stderr, "waiting for the node: %s\n", tb_client_error(c));
            struct timespec ts = { 2, 0 };
            nanosleep(&ts, NULL);
            continue;
        }
        if (err != TB_OK) {
            fprintf(stderr, "events: %s: %s\n", tb_strerror(err), tb_client_error(c));
            rc = 1;
            break;
        }
        if (handle(e) != 0) break;            /* not done: do not ack, it comes again */
        /* persist the position: after a restart the stream resumes after e */
        if ((err = tb_events_ack(ev, e)) != TB_OK)
            fprintf(stderr, "ack %lld: %s (it may come again)\n", tb_event_id(e), tb_client_error(c));
        seen++;
    }
    tb_events_close(&ev);
    tb_client_close(&c);
    return rc;
}
