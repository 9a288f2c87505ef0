/* daemon.c -- argument parsing, signals and log setup shared by the daemons. */
#include "daemon.h"

#include <stdio.h>
#include <string.h>
#include <tongban/tongban.h>

#include "log.h"

static volatile sig_atomic_t *stop_flag;
static volatile sig_atomic_t *reload_flag;

static void on_signal(int sig)
{
    (void)sig;
    if (stop_flag) *stop_flag = 1;
}

static void on_hup(int sig)
{
    (void)sig;
    if (reload_flag) *reload_flag = 1;
}

void tb_daemon_sighup(volatile sig_atomic_t *reload)
{
    reload_flag = reload;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_hup;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGHUP, &sa, NULL);
}

void tb_daemon_signals(volatile sig_atomic_t *stop)
{
    stop_flag = stop;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static void usage(FILE *out, const char *prog, const char *summary)
{
    fprintf(out,
            "usage: %s -c FILE [--check-config]\n"
            "       %s --help | --version\n\n"
            "%s\n\n"
            "  -c, --config FILE   the YAML configuration (see config/ for examples)\n"
            "      --check-config  validate FILE, print every problem as FILE:LINE, and exit\n"
            "  -h, --help          this text\n"
            "  -V, --version       print the version and exit\n\n"
            "exit codes: 0 clean stop or config valid, 1 runtime failure,\n"
            "            2 usage error, 3 configuration invalid\n",
            prog, prog, summary);
}

int tb_daemon_args(int argc, char **argv, const char *prog, const char *summary,
                   tb_daemon_args_t *out, int *done)
{
    memset(out, 0, sizeof *out);
    *done = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout, prog, summary);
            *done = 1;
            return 0;
        } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("%s %s (protocol %d)\n", prog, TB_VERSION_STRING, TB_PROTOCOL_VERSION);
            *done = 1;
            return 0;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: %s needs a FILE argument\n", prog, a);
                return TB_EXIT_USAGE;
            }
            out->config = argv[++i];
        } else if (strcmp(a, "--check-config") == 0) {
            out->check_config = 1;
        } else {
            fprintf(stderr, "%s: unknown argument \"%s\" (try --help)\n", prog, a);
            return TB_EXIT_USAGE;
        }
    }
    if (!out->config) {
        fprintf(stderr, "%s: no configuration given: use -c FILE (try --help)\n", prog);
        return TB_EXIT_USAGE;
    }
    return 0;
}

void tb_daemon_print_errors(const tb_config_errors_t *errs)
{
    for (size_t i = 0; i < errs->count; i++) fprintf(stderr, "%s\n", errs->lines[i]);
}

void tb_daemon_log_setup(const tb_log_config_t *log)
{
    tb_log_level_t level = TB_LOG_INFO;
    tb_log_format_t format = TB_LOG_LOGFMT;
    tb_log_level_parse(log->level, &level);
    tb_log_format_parse(log->format, &format);
    tb_log_setup(level, format, stderr);
}
