/* daemon.h -- what both daemons' main() share: argument parsing, signal
 * flags, logging setup from the config. Exit codes (documented in README):
 *   0 clean stop / config OK, 1 runtime failure, 2 usage error,
 *   3 configuration invalid.
 */
#ifndef TB_DAEMON_H
#define TB_DAEMON_H

#include <signal.h>

#include "config.h"

enum { TB_EXIT_OK = 0, TB_EXIT_FAIL = 1, TB_EXIT_USAGE = 2, TB_EXIT_CONFIG = 3 };

typedef struct {
    const char *config;       /* -c / --config FILE */
    int check_config;         /* --check-config */
} tb_daemon_args_t;

/* Parses argv. Handles --help / --version itself (prints, returns 0 with
 * *done = 1). Returns 0 on success, TB_EXIT_USAGE on bad usage (message
 * printed to stderr). */
int tb_daemon_args(int argc, char **argv, const char *prog, const char *summary,
                   tb_daemon_args_t *out, int *done);

/* Installs SIGINT/SIGTERM handlers that set *stop (no SA_RESTART, so a
 * blocking poll returns) and ignores SIGPIPE. */
void tb_daemon_signals(volatile sig_atomic_t *stop);

/* Installs a SIGHUP handler that sets *reload (no SA_RESTART). */
void tb_daemon_sighup(volatile sig_atomic_t *reload);

/* Prints every config problem to stderr, one per line. */
void tb_daemon_print_errors(const tb_config_errors_t *errs);

/* Applies the log section (level, format) of a loaded config. */
void tb_daemon_log_setup(const tb_log_config_t *log);

#endif
