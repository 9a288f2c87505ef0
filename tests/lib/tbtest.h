/* tbtest.h -- the few assertion helpers every unit test uses.
 *
 * CHECK(cond) records a failure (with file:line and the expression) and
 * carries on; tbtest_done() prints the tally and returns the exit status.
 */
#ifndef TB_TBTEST_H
#define TB_TBTEST_H

#include <stdio.h>

extern int tbtest_failures;
extern int tbtest_checks;

#define CHECK(cond) do { tbtest_checks++; if (!(cond)) { tbtest_failures++; \
    fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); } } while (0)
#define CHECK_MSG(cond, ...) do { tbtest_checks++; if (!(cond)) { tbtest_failures++; \
    fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

/* Creates a fresh temp directory (mkdtemp under $TMPDIR or /tmp) and returns
 * its path (static buffer per call: copy it). */
const char *tbtest_tmpdir(const char *tag);
/* Removes a directory tree (rm -rf). */
void tbtest_rmtree(const char *path);
/* Prints "name: N checks, M failures" and returns 0 or 1 for main(). */
int tbtest_done(const char *name);

#endif
