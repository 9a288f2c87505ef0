/* config_valid.h -- the value validators of the configuration: ids,
 * destinations, endpoints, listen addresses, keys and tokens.
 *
 * Each takes a NUL-terminated string and returns 1 if it is valid, 0 if
 * not; none allocates, looks a name up or keeps state. config.c's schema
 * tables point at them (the message shown when one says no lives there);
 * the daemons and tools check ids and destinations from the wire with the
 * same rules. Every one but tb_config_valid_http_token refuses NULL.
 */
#ifndef TB_CONFIG_VALID_H
#define TB_CONFIG_VALID_H

#include <stddef.h>

/* Validators shared with other modules. Return 1 if valid, 0 if not. */
int tb_config_valid_id(const char *s);          /* [A-Za-z0-9_.-]{1,64}            */
int tb_config_valid_dest(const char *s);        /* node id or topic:<id>           */
int tb_config_valid_endpoint(const char *s);    /* tcp://host:port, port 1..65535  */

/* http.listen: "PORT" (host 127.0.0.1), "IPv4:PORT" or "[IPv6]:PORT", port
 * 1..65535; literal addresses only (no name lookup). Returns 1 and fills
 * host (without brackets; hostlen >= 46) and port if valid, 0 if not. host
 * and port may be NULL to only validate. */
int tb_config_parse_http_listen(const char *s, char *host, size_t hostlen, int *port);

/* 1 if host (an address as tb_config_parse_http_listen gives it) is a
 * loopback address (127.0.0.0/8, ::1, ::ffff:127.x.y.z), else 0. */
int tb_config_loopback_host(const char *host);

/* The validators of single schema fields. Return 1 if valid, 0 if not. */

/* A route's catalog: a catalog name (the syntax of an id) or "*". */
int tb_config_valid_catalog(const char *s);

/* A topic publisher: a node id or "*". */
int tb_config_valid_id_or_star(const char *s);

/* A destination an ACL may name: a node id, topic:<name>, or "*". */
int tb_config_valid_acl_dest(const char *s);

/* A CURVE key: 40 characters of the Z85 alphabet whose 5-character groups
 * each fit in 32 bits, i.e. what zmq_z85_decode accepts for 32 bytes. */
int tb_config_valid_z85(const char *s);

/* Where a node connects: tb_config_valid_endpoint without the "*" host. */
int tb_config_valid_connect_endpoint(const char *s);

/* http.listen: tb_config_parse_http_listen without the outputs. */
int tb_config_valid_http_listen(const char *s);

/* api.listen: tcp://HOST:PORT (HOST may be "*") or ipc:// with an absolute
 * path of 2 to 107 bytes (what fits a Unix socket address), no control
 * characters, not ending in '/'. */
int tb_config_valid_api_listen(const char *s);

/* http.token: at least 16 characters of [A-Za-z0-9._~-] (they travel in a
 * header, a URL and a cookie unescaped). No upper bound here: the loader
 * refuses what does not fit the field. s must not be NULL. */
int tb_config_valid_http_token(const char *s);

#endif
