/* main.c -- tongban-node: parse arguments, load config, run the node loop. */
#include <stdio.h>

#include "crypto.h"
#include "daemon.h"
#include "log.h"
#include "node.h"

int main(int argc, char **argv)
{
    tb_daemon_args_t args;
    int done;
    int rc = tb_daemon_args(argc, argv, "tongban-node",
                            "A tongban node: syncs its PostgreSQL with other nodes through the hub.",
                            &args, &done);
    if (rc || done) return rc;

    tb_node_config_t cfg;
    tb_config_errors_t errs = { 0 };
    tb_err_t e = tb_node_config_load(args.config, &cfg, &errs);
    if (e != TB_OK) {
        tb_daemon_print_errors(&errs);
        tb_config_errors_free(&errs);
        tb_node_config_free(&cfg);
        return TB_EXIT_CONFIG;
    }
    tb_config_errors_free(&errs);
    if (args.check_config) {
        printf("%s: OK (node %s, %zu routes)\n", args.config, cfg.id, cfg.route_count);
        tb_node_config_free(&cfg);
        return TB_EXIT_OK;
    }
    tb_daemon_log_setup(&cfg.log);

    static volatile sig_atomic_t stop, reload;
    tb_daemon_signals(&stop);
    tb_daemon_sighup(&reload);
    char err[TB_ERRLEN] = "";
    node_t *node = NULL;
    e = node_new(&cfg, &node, err, sizeof err);
    if (e != TB_OK) {
        fprintf(stderr, "tongban-node: %s\n", err);
        tb_node_config_free(&cfg);
        return TB_EXIT_FAIL;
    }
    e = node_run(node, &stop, &reload, args.config);
    node_destroy(&node);
    tb_node_config_free(&cfg);
    return e == TB_OK ? TB_EXIT_OK : TB_EXIT_FAIL;
}
