/* fuzz_util.h -- small helpers shared by the libFuzzer targets: temp
 * directories (on $TMPDIR, /dev/shm when available), whole-file writes, tree
 * removal, a quiet log sink and an assertion that libFuzzer reports as a crash.
 */
#ifndef TB_FUZZ_UTIL_H
#define TB_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* A property of the code under test does not hold: print and abort (libFuzzer
 * saves the input as crash-*). Active in every build. */
#define FUZZ_ASSERT(cond) do { if (!(cond)) { \
    fprintf(stderr, "FUZZ_ASSERT failed %s:%d: %s\n", __FILE__, __LINE__, #cond); abort(); } } while (0)

/* Creates a fresh directory <base>/tbfuzz-<tag>-XXXXXX, base being
 * $TB_FUZZ_TMPDIR, else /dev/shm if writable, else $TMPDIR or /tmp. Copies
 * the path into buf (len >= 256). Returns 0, or -1 (errno set). */
int fuzz_mkdtemp(const char *tag, char *buf, size_t len);

/* Removes path and everything below it (no symlinks followed). Returns nothing. */
void fuzz_rmtree(const char *path);

/* Creates or truncates path (mode 0600) and writes len bytes. Returns 0 or -1. */
int fuzz_write_file(const char *path, const void *data, size_t len);

/* A FILE that discards what is written (opened once, never closed), for
 * tb_log_setup: the logging code runs on fuzzed strings without noise. */
FILE *fuzz_devnull(void);

#endif
