/* main.c -- tongban-hub: parse arguments, load config, run the hub loop. */
#include <stdio.h>

#include "crypto.h"
#include "daemon.h"
#include "hub.h"
#include "log.h"

int main(int argc, char **argv)
{
    tb_daemon_args_t args;
    int done;
    int rc = tb_daemon_args(argc, argv, "tongban-hub",
                            "The national hub of tongban: routes signed batches between nodes.",
                            &args, &done);
    if (rc || done) return rc;

    tb_hub_config_t cfg;
    tb_config_errors_t errs = { 0 };
    tb_err_t e = tb_hub_config_load(args.config, &cfg, &errs);
    if (e != TB_OK) {
        tb_daemon_print_errors(&errs);
        tb_config_errors_free(&errs);
        tb_hub_config_free(&cfg);
        return TB_EXIT_CONFIG;
    }
    tb_config_errors_free(&errs);
    if (args.check_config) {
        printf("%s: OK (%zu nodes)\n", args.config, cfg.node_count);
        tb_hub_config_free(&cfg);
        return TB_EXIT_OK;
    }
    tb_daemon_log_setup(&cfg.log);

    static volatile sig_atomic_t stop, reload;
    tb_daemon_signals(&stop);
    tb_daemon_sighup(&reload);
    char err[TB_ERRLEN] = "";
    hub_t *hub = NULL;
    e = hub_new(&cfg, args.config, &hub, err, sizeof err);
    if (e != TB_OK) {
        fprintf(stderr, "tongban-hub: %s\n", err);
        tb_hub_config_free(&cfg);
        return TB_EXIT_FAIL;
    }
    e = hub_run(hub, &stop, &reload);
    hub_destroy(&hub);
    tb_hub_config_free(&cfg);
    return e == TB_OK ? TB_EXIT_OK : TB_EXIT_FAIL;
}
