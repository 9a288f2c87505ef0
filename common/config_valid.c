/* config_valid.c -- the value validators of the configuration (ids,
 * destinations, endpoints, listen addresses, keys, tokens): pure functions
 * of one string, referenced by config.c's schema tables and used on wire
 * values by the daemons and tools.
 */
#include "config_valid.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"                   /* TB_ID_MAX */

/* 1 if ch may appear in an id ([A-Za-z0-9_.-]), else 0. */
static int id_char(int ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '.' || ch == '-';
}

int tb_config_valid_id(const char *s)
{
    size_t n = 0;
    if (!s) return 0;
    for (; s[n]; n++)
        if (n >= TB_ID_MAX || !id_char((unsigned char)s[n])) return 0;
    return n > 0;
}

int tb_config_valid_dest(const char *s)
{
    if (!s) return 0;
    if (strncmp(s, "topic:", 6) == 0) return tb_config_valid_id(s + 6);
    return tb_config_valid_id(s);
}

/* A topic publisher: a node id or "*". */
int tb_config_valid_id_or_star(const char *s)
{
    return s && (strcmp(s, "*") == 0 || tb_config_valid_id(s));
}

/* A route's catalog: a catalog name (same syntax as an id) or "*". The same
 * acceptance set as tb_config_valid_id_or_star; a separate name so the schema
 * table and the callers say what they check. */
int tb_config_valid_catalog(const char *s)
{
    return tb_config_valid_id_or_star(s);
}

/* A destination an ACL may name: a node id, topic:<name>, or "*". */
int tb_config_valid_acl_dest(const char *s)
{
    return s && (strcmp(s, "*") == 0 || tb_config_valid_dest(s));
}

/* 40 characters of the Z85 alphabet whose 5-character groups each fit in 32
 * bits, i.e. what zmq_z85_decode accepts for a 32-byte CURVE key. */
int tb_config_valid_z85(const char *s)
{
    static const char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   ".-:+=^!/*?&<>()[]{}@%$#";
    uint64_t group = 0;
    size_t n = 0;
    if (!s) return 0;
    for (; s[n]; n++) {
        const char *d = strchr(alphabet, s[n]);
        if (n >= 40 || !d) return 0;
        group = group * 85 + (uint64_t)(d - alphabet);
        if (n % 5 == 4) {
            if (group > UINT32_MAX) return 0;
            group = 0;
        }
    }
    return n == 40;
}

/* Host name (RFC 1123 labels) or dotted-quad IPv4, n bytes at h. Returns 1
 * if valid, 0 if not. */
static int valid_host(const char *h, size_t n)
{
    char buf[256];
    struct in_addr a4;
    size_t label = 0;
    int numeric = 1;                     /* the current label is all digits */
    if (n == 0 || n > 253) return 0;
    for (size_t i = 0; i <= n; i++) {
        int ch = i < n ? (unsigned char)h[i] : '.';
        if (ch == '.') {
            if (label == 0 || label > 63 || h[i - 1] == '-') return 0;
            if (i == n) break;
            label = 0;
            numeric = 1;
            continue;
        }
        int alnum = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        if (!alnum && ch != '-') return 0;
        if (ch == '-' && label == 0) return 0;
        if (ch < '0' || ch > '9') numeric = 0;
        label++;
    }
    if (!numeric) return 1;
    /* The last label is all digits: it must be an IPv4 address. */
    memcpy(buf, h, n);
    buf[n] = '\0';
    return inet_pton(AF_INET, buf, &a4) == 1;
}

/* 1 if p is all decimal digits (at most 5) with a value 1..65535, else 0. */
static int valid_port(const char *p)
{
    size_t n = strspn(p, "0123456789");
    if (n == 0 || n > 5 || p[n] != '\0') return 0;
    char *end;
    long v = strtol(p, &end, 10);
    return *end == '\0' && v >= 1 && v <= 65535;
}

/* tcp://HOST:PORT with HOST a name, IPv4, [IPv6] or, if allow_wildcard, "*".
 * Returns 1 if valid, 0 if not. */
static int valid_endpoint(const char *s, int allow_wildcard)
{
    const char *host, *colon;
    if (!s || strncmp(s, "tcp://", 6) != 0) return 0;
    host = s + 6;
    if (*host == '[') {
        char buf[INET6_ADDRSTRLEN];
        struct in6_addr a6;
        const char *close = strchr(host, ']');
        if (!close || close[1] != ':') return 0;
        size_t n = (size_t)(close - host - 1);
        if (n == 0 || n >= sizeof buf) return 0;
        memcpy(buf, host + 1, n);
        buf[n] = '\0';
        if (inet_pton(AF_INET6, buf, &a6) != 1) return 0;
        colon = close + 1;
    } else {
        colon = strrchr(host, ':');
        if (!colon) return 0;
        size_t n = (size_t)(colon - host);
        if (n == 1 && host[0] == '*') {
            if (!allow_wildcard) return 0;
        } else if (!valid_host(host, n)) {
            return 0;
        }
    }
    return valid_port(colon + 1);
}

int tb_config_valid_endpoint(const char *s)
{
    return valid_endpoint(s, 1);
}

/* Where a node connects: no "*". */
int tb_config_valid_connect_endpoint(const char *s)
{
    return valid_endpoint(s, 0);
}

int tb_config_parse_http_listen(const char *s, char *host, size_t hostlen, int *port)
{
    char buf[INET6_ADDRSTRLEN];
    const char *p;
    struct in6_addr a6;
    struct in_addr a4;
    if (!s || !*s) return 0;
    if (valid_port(s)) {                      /* bare port: loopback */
        snprintf(buf, sizeof buf, "127.0.0.1");
        p = s;
    } else if (s[0] == '[') {
        const char *close = strchr(s, ']');
        size_t n = close ? (size_t)(close - s - 1) : 0;
        if (!close || close[1] != ':' || n == 0 || n >= sizeof buf) return 0;
        memcpy(buf, s + 1, n);
        buf[n] = '\0';
        if (inet_pton(AF_INET6, buf, &a6) != 1) return 0;
        p = close + 2;
    } else {
        const char *colon = strchr(s, ':');
        size_t n = colon ? (size_t)(colon - s) : 0;
        if (!colon || n == 0 || n >= sizeof buf) return 0;
        memcpy(buf, s, n);
        buf[n] = '\0';
        if (inet_pton(AF_INET, buf, &a4) != 1) return 0;
        p = colon + 1;
    }
    if (!valid_port(p)) return 0;
    if (host) {
        if (strlen(buf) >= hostlen) return 0;
        snprintf(host, hostlen, "%s", buf);
    }
    if (port) *port = (int)strtol(p, NULL, 10);
    return 1;
}

int tb_config_valid_http_listen(const char *s)
{
    return tb_config_parse_http_listen(s, NULL, 0, NULL);
}

int tb_config_loopback_host(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (!host) return 0;
    if (inet_pton(AF_INET, host, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) != 1) return 0;
    if (IN6_IS_ADDR_LOOPBACK(&a6)) return 1;
    return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
}

/* api.listen: tcp://HOST:PORT (HOST may be "*") or ipc:// with an absolute
 * path that fits a Unix socket address (107 bytes). */
int tb_config_valid_api_listen(const char *s)
{
    if (!s) return 0;
    if (strncmp(s, "tcp://", 6) == 0) return tb_config_valid_endpoint(s);
    if (strncmp(s, "ipc:///", 7) != 0) return 0;
    size_t n = strlen(s + 6);
    if (n < 2 || n > 107) return 0;
    for (const char *p = s + 6; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7F) return 0;
    return s[strlen(s) - 1] != '/';
}

/* http.token: it travels in a header, a URL and a cookie, so only
 * characters that need no escaping anywhere; long enough not to be guessed. */
int tb_config_valid_http_token(const char *s)
{
    size_t n = strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-");
    return n >= 16 && s[n] == '\0';
}
