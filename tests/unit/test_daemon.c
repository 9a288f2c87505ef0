/* test_daemon.c -- the daemons' command line and signal flags. */
#include "tbtest.h"

#include "daemon.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[512];

/* Returns 1 if s contains sub. */
static int has(const char *s, const char *sub)
{
    return s && strstr(s, sub) != NULL;
}

/* What one tb_daemon_args call returned and printed. */
typedef struct {
    int rc, done;
    tb_daemon_args_t a;
    char out[4096], err[4096];
} run_t;

/* Reads the file at path into buf (NUL-terminated, truncated to cap - 1). */
static void slurp(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, cap - 1, f) : 0;
    buf[n] = '\0';
    if (f) fclose(f);
}

/* Calls tb_daemon_args on args (NULL-terminated) with stdout and stderr
 * sent to files, and collects what it printed. */
static void run(run_t *r, const char *const *args)
{
    int argc = 0;
    while (args[argc]) argc++;
    char outp[600], errp[600];
    snprintf(outp, sizeof outp, "%s/out", tmpdir);
    snprintf(errp, sizeof errp, "%s/err", tmpdir);
    fflush(stdout);
    fflush(stderr);
    int so = dup(1), se = dup(2);
    int fo = open(outp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int fe = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(so >= 0 && se >= 0 && fo >= 0 && fe >= 0);
    dup2(fo, 1);
    dup2(fe, 2);
    close(fo);
    close(fe);

    memset(&r->a, 0x5a, sizeof r->a);   /* must be reset by the call */
    r->done = 7;
    r->rc = tb_daemon_args(argc, (char **)args, "tongban-hub", "The tongban hub: routes signed batches.",
                           &r->a, &r->done);

    fflush(stdout);
    fflush(stderr);
    dup2(so, 1);
    dup2(se, 2);
    close(so);
    close(se);
    slurp(outp, r->out, sizeof r->out);
    slurp(errp, r->err, sizeof r->err);
}

static void test_help_version(void)
{
    run_t *r = calloc(1, sizeof *r);
    if (!r) return;
    const char *helps[][3] = { { "tongban-hub", "--help", NULL }, { "tongban-hub", "-h", NULL } };
    for (int i = 0; i < 2; i++) {
        run(r, helps[i]);
        CHECK(r->rc == 0 && r->done == 1);
        CHECK_MSG(has(r->out, "usage: tongban-hub -c FILE [--check-config]"), "%s", r->out);
        CHECK(has(r->out, "The tongban hub: routes signed batches."));
        CHECK(has(r->out, "--check-config") && has(r->out, "exit codes"));
        CHECK(r->err[0] == '\0');
    }
    const char *versions[][3] = { { "tongban-hub", "--version", NULL }, { "tongban-hub", "-V", NULL } };
    char want[128];
    snprintf(want, sizeof want, "tongban-hub %s (protocol %d)\n", TB_VERSION_STRING, TB_PROTOCOL_VERSION);
    for (int i = 0; i < 2; i++) {
        run(r, versions[i]);
        CHECK(r->rc == 0 && r->done == 1);
        CHECK_MSG(strcmp(r->out, want) == 0, "[%s]", r->out);
        CHECK(r->err[0] == '\0');
    }
    /* --help wins over a valid config, wherever it is */
    const char *late[] = { "tongban-hub", "-c", "hub.yaml", "--help", NULL };
    run(r, late);
    CHECK(r->rc == 0 && r->done == 1 && has(r->out, "usage:"));
    free(r);
}

static void test_config(void)
{
    run_t *r = calloc(1, sizeof *r);
    if (!r) return;
    const char *a1[] = { "tongban-hub", "-c", "/etc/tongban/hub.yaml", NULL };
    run(r, a1);
    CHECK(r->rc == 0 && r->done == 0);
    CHECK(r->a.config == a1[2]);
    CHECK(r->a.check_config == 0);
    CHECK(r->out[0] == '\0' && r->err[0] == '\0');

    const char *a2[] = { "tongban-hub", "--check-config", "--config", "hub.yaml", NULL };
    run(r, a2);
    CHECK(r->rc == 0 && r->done == 0);
    CHECK(r->a.config && strcmp(r->a.config, "hub.yaml") == 0);
    CHECK(r->a.check_config == 1);

    const char *a3[] = { "tongban-hub", "-c", "hub.yaml", "--check-config", NULL };
    run(r, a3);
    CHECK(r->rc == 0 && r->a.check_config == 1);

    /* the last -c wins; a file name that looks like an option is still a file */
    const char *a4[] = { "tongban-hub", "-c", "one.yaml", "-c", "--check-config", NULL };
    run(r, a4);
    CHECK(r->rc == 0 && r->a.config && strcmp(r->a.config, "--check-config") == 0);
    CHECK(r->a.check_config == 0);
    free(r);
}

static void test_usage_errors(void)
{
    run_t *r = calloc(1, sizeof *r);
    if (!r) return;
    const char *none[] = { "tongban-hub", NULL };
    run(r, none);
    CHECK(r->rc == TB_EXIT_USAGE && r->done == 0);
    CHECK_MSG(has(r->err, "tongban-hub: no configuration given") && has(r->err, "-c FILE"), "%s", r->err);
    CHECK(r->out[0] == '\0');

    const char *only_check[] = { "tongban-hub", "--check-config", NULL };
    run(r, only_check);
    CHECK(r->rc == TB_EXIT_USAGE && has(r->err, "no configuration given"));

    const char *unknown[] = { "tongban-hub", "-c", "hub.yaml", "--bogus", NULL };
    run(r, unknown);
    CHECK(r->rc == TB_EXIT_USAGE && r->done == 0);
    CHECK_MSG(has(r->err, "unknown argument \"--bogus\""), "%s", r->err);

    /* unknown before --help: the error, no help */
    const char *unknown_help[] = { "tongban-hub", "-x", "--help", NULL };
    run(r, unknown_help);
    CHECK(r->rc == TB_EXIT_USAGE && r->done == 0 && r->out[0] == '\0' && has(r->err, "\"-x\""));

    const char *positional[] = { "tongban-hub", "hub.yaml", NULL };
    run(r, positional);
    CHECK(r->rc == TB_EXIT_USAGE && has(r->err, "\"hub.yaml\""));

    const char *no_value[][3] = { { "tongban-hub", "-c", NULL }, { "tongban-hub", "--config", NULL } };
    for (int i = 0; i < 2; i++) {
        run(r, no_value[i]);
        CHECK(r->rc == TB_EXIT_USAGE && r->done == 0);
        char want[64];
        snprintf(want, sizeof want, "%s needs a FILE argument", no_value[i][1]);
        CHECK_MSG(has(r->err, want), "%s", r->err);
    }
    CHECK(TB_EXIT_USAGE == 2);   /* documented in README and the usage text */
    free(r);
}

static void test_signals(void)
{
    volatile sig_atomic_t stop = 0;
    tb_daemon_signals(&stop);
    CHECK(raise(SIGPIPE) == 0);   /* ignored: still here */
    CHECK(stop == 0);
    CHECK(raise(SIGTERM) == 0);
    CHECK(stop == 1);
    stop = 0;
    CHECK(raise(SIGINT) == 0);
    CHECK(stop == 1);
    struct sigaction sa;
    CHECK(sigaction(SIGTERM, NULL, &sa) == 0 && !(sa.sa_flags & SA_RESTART));
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "%s", tbtest_tmpdir("daemon"));
    test_help_version();
    test_config();
    test_usage_errors();
    test_signals();
    tbtest_rmtree(tmpdir);
    return tbtest_done("test_daemon");
}
