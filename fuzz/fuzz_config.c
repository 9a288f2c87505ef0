/* fuzz_config.c -- libFuzzer target: the YAML configuration loader.
 *
 * The input is written to <tmp>/fuzz.yaml and loaded with tb_hub_config_load
 * and tb_node_config_load; both results are freed. Properties: TB_OK iff no
 * error line; otherwise TB_ERR_CONFIG (or NOMEM) with at least one line,
 * each naming the file and holding no newline (config.h's promise). The
 * input is also run, as a string, through the public validators.
 *
 * Seeds: fuzz/corpus/fuzz_config (the example configs and small variants).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_util.h"

/* libFuzzer's entry points take no context: the directory and file path
 * made once by LLVMFuzzerInitialize. */
static char g_dir[512], g_path[600];

/* atexit: removes the temp directory. */
static void cleanup(void)
{
    fuzz_rmtree(g_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (fuzz_mkdtemp("config", g_dir, sizeof g_dir) != 0) {
        perror("fuzz_config: mkdtemp");
        exit(2);
    }
    atexit(cleanup);
    snprintf(g_path, sizeof g_path, "%s/fuzz.yaml", g_dir);
    return 0;
}

/* Checks the loader's contract on one result. */
static void check_result(tb_err_t rc, const tb_config_errors_t *errs)
{
    if (rc == TB_OK) {
        FUZZ_ASSERT(errs->count == 0 && errs->lines == NULL);
        return;
    }
    FUZZ_ASSERT(rc == TB_ERR_CONFIG || rc == TB_ERR_NOMEM || rc == TB_ERR_IO);
    if (rc == TB_ERR_CONFIG) FUZZ_ASSERT(errs->count > 0);
    for (size_t i = 0; i < errs->count; i++) {
        FUZZ_ASSERT(errs->lines[i] != NULL);
        FUZZ_ASSERT(strncmp(errs->lines[i], g_path, strlen(g_path)) == 0);
        FUZZ_ASSERT(strchr(errs->lines[i], '\n') == NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fuzz_write_file(g_path, data, size) != 0) {
        perror(g_path);
        abort();
    }
    tb_config_errors_t errs;
    tb_hub_config_t hub;
    tb_err_t rc = tb_hub_config_load(g_path, &hub, &errs);
    check_result(rc, &errs);
    if (rc == TB_OK) {
        FUZZ_ASSERT(hub.node_count >= 1 && hub.nodes != NULL);
        for (size_t i = 0; i < hub.node_count; i++) FUZZ_ASSERT(tb_config_valid_id(hub.nodes[i].id));
    }
    tb_config_errors_free(&errs);
    tb_hub_config_free(&hub);

    tb_node_config_t node;
    rc = tb_node_config_load(g_path, &node, &errs);
    check_result(rc, &errs);
    if (rc == TB_OK) {
        FUZZ_ASSERT(tb_config_valid_id(node.id));
        FUZZ_ASSERT(tb_config_valid_endpoint(node.hub_endpoint));
        for (size_t i = 0; i < node.route_count; i++)
            for (size_t k = 0; k < node.routes[i].to_count; k++)
                FUZZ_ASSERT(tb_config_valid_dest(node.routes[i].to[k]));
    }
    tb_config_errors_free(&errs);
    tb_node_config_free(&node);

    /* the validators on the raw input as one string */
    char *s = malloc(size + 1);
    FUZZ_ASSERT(s != NULL);
    if (size) memcpy(s, data, size);
    s[size] = '\0';
    (void)tb_config_valid_id(s);
    (void)tb_config_valid_dest(s);
    (void)tb_config_valid_endpoint(s);
    free(s);
    return 0;
}
