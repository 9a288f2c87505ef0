/* tbctl_client_internal.h -- what tbctl_client.c (plumbing, records,
 * events, validate) and tbctl_client_domain.c (licences, cases,
 * supervision) share. tbctl only; not installed. */
#ifndef TBCTL_CLIENT_INTERNAL_H
#define TBCTL_CLIENT_INTERNAL_H

#include <jansson.h>
#include <tongban/tongban.h>

/* Exit codes (documented in --help and docs/integrator-guide.md): the
 * class of the call's tb_err_t, so scripts can tell them apart. */
enum {
    X_OK = 0,
    X_FAILED = 1,        /* any other failure (database, protocol, i/o, ...);
                            validate: the value is not valid                        */
    X_USAGE = 2,         /* bad command line, or TB_ERR_INVALID: a field is missing
                            or malformed (the message names it)                     */
    X_REFUSED = 3,       /* TB_ERR_REFUSED / TB_ERR_PERM: not this node, an illegal
                            transition, a revoked licence, permission              */
    X_NOTFOUND = 4,      /* TB_ERR_NOTFOUND                                         */
    X_DUPLICATE = 5,     /* TB_ERR_DUPLICATE                                        */
    X_UNAVAILABLE = 6,   /* TB_ERR_UNAVAILABLE / TB_ERR_TIMEOUT: the node, its
                            PostgreSQL, or a check that cannot be made now         */
    X_BADSEAL = 7        /* TB_ERR_BADSIG: licence verify, the copy's seal fails    */
};
#define X_INVALID X_USAGE

typedef struct {
    const char *cmd;           /* "licence issue", for messages */
    int argc;
    char **argv;
    int *used;
} args_t;

/* The value of "--name VALUE" (first occurrence), or NULL; consumed. */
const char *tbctl_opt(args_t *a, const char *name);
/* 1 if the flag --name is present (consumed), else 0. */
int tbctl_flag(args_t *a, const char *name);
/* The unconsumed arguments into pos (at most max): their number, or -1
 * (message printed) if there are more or an unknown option remains. */
int tbctl_positionals(args_t *a, const char **pos, int max);
/* s as an int in [lo, hi]: 0, or -1 with a message naming what. */
int tbctl_parse_int(const char *cmd, const char *what, const char *s, long lo, long hi, int *out);
/* Prints the failure of the last call and returns its exit code. */
int tbctl_failed(const args_t *a, tb_client_t *c, tb_err_t e);
/* --json: the node's result as one line. */
void tbctl_print_result(tb_client_t *c);
/* The string member key of o, or "". */
const char *tbctl_str(const json_t *o, const char *key);
/* lead, then key=value for each of keys present in o, one line. */
void tbctl_print_kv(const char *lead, const json_t *o, const char *const *keys);

/* tbctl_client_domain.c: the commands of the groups licence, case,
 * supitem, risk, complaint. Return the exit code. */
int tbctl_cmd_licence(args_t *a, tb_client_t *c, const char *sub, int json);
int tbctl_cmd_case(args_t *a, tb_client_t *c, const char *sub, int json);
int tbctl_cmd_supitem(args_t *a, tb_client_t *c, const char *sub, int json);
int tbctl_cmd_risk(args_t *a, tb_client_t *c, const char *sub, int json);
int tbctl_cmd_complaint(args_t *a, tb_client_t *c, const char *sub, int json);

#endif
