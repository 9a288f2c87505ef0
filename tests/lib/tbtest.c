/* tbtest.c -- assertion tally and temp-dir helpers for the unit tests. */
#include "tbtest.h"

#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int tbtest_failures;
int tbtest_checks;

const char *tbtest_tmpdir(const char *tag)
{
    static char buf[512];
    const char *base = getenv("TMPDIR");
    snprintf(buf, sizeof buf, "%s/tbtest-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        exit(2);
    }
    return buf;
}

void tbtest_rmtree(const char *path)
{
    pid_t pid = fork();
    if (pid == 0) {
        execlp("rm", "rm", "-rf", "--", path, (char *)NULL);
        _exit(127);
    }
    if (pid > 0) waitpid(pid, NULL, 0);
}

int tbtest_done(const char *name)
{
    printf("%s: %d checks, %d failures\n", name, tbtest_checks, tbtest_failures);
    return tbtest_failures ? 1 : 0;
}
