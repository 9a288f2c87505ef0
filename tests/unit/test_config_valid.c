/* test_config_valid.c -- the configuration's value validators, called
 * directly: what each accepts and refuses, at the edges of every length,
 * range and alphabet (the loader's messages are test_config.c's concern). */
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "config.h"
#include "config_valid.h"
#include "tbtest.h"

typedef int (*valid_fn)(const char *);

/* One input and the answer wanted of fn; the failure names both. */
#define EXPECT(fn, s, want) expect(#fn, fn, s, want)
#define OK(fn, s) EXPECT(fn, s, 1)
#define BAD(fn, s) EXPECT(fn, s, 0)

static void expect(const char *name, valid_fn fn, const char *s, int want)
{
    int got = fn(s);
    CHECK_MSG(got == want, "%s(\"%s\") = %d, want %d", name, s ? s : "(null)", got, want);
}

/* n copies of ch after prefix and before suffix, in buf (static: copy or
 * use before the next call). Returns buf. */
static const char *build(const char *prefix, char ch, size_t n, const char *suffix)
{
    static char buf[1024];
    size_t p = strlen(prefix);
    if (p + n + strlen(suffix) >= sizeof buf) return "";
    memcpy(buf, prefix, p);
    memset(buf + p, ch, n);
    strcpy(buf + p + n, suffix);
    return buf;
}

static void test_id(void)
{
    OK(tb_config_valid_id, "a");
    OK(tb_config_valid_id, "110000");
    OK(tb_config_valid_id, "Node_1.test-A");
    OK(tb_config_valid_id, "-");
    OK(tb_config_valid_id, "..");
    OK(tb_config_valid_id, build("", 'x', TB_ID_MAX, ""));
    BAD(tb_config_valid_id, build("", 'x', TB_ID_MAX + 1, ""));
    BAD(tb_config_valid_id, "");
    BAD(tb_config_valid_id, NULL);
    const char *bad[] = { "a b", "a/b", "a:b", "*", "a*", "topic:x", "a\tb", "a\n", "a@b", "a+b",
                          "\xe5\x8c\x97\xe4\xba\xac", "a\x7f", "\xff" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) BAD(tb_config_valid_id, bad[i]);
}

static void test_dest(void)
{
    OK(tb_config_valid_dest, "310000");
    OK(tb_config_valid_dest, "topic:population");
    OK(tb_config_valid_dest, build("topic:", 't', TB_ID_MAX, ""));
    BAD(tb_config_valid_dest, build("topic:", 't', TB_ID_MAX + 1, ""));
    BAD(tb_config_valid_dest, "topic:");
    BAD(tb_config_valid_dest, "topic:topic:x");
    BAD(tb_config_valid_dest, "topic:a b");
    BAD(tb_config_valid_dest, "Topic :x");
    BAD(tb_config_valid_dest, "topic:*");
    BAD(tb_config_valid_dest, "*");
    BAD(tb_config_valid_dest, "");
    BAD(tb_config_valid_dest, NULL);
    /* "Topic:x" is not the prefix (case matters) and ':' is not in an id */
    BAD(tb_config_valid_dest, "Topic:x");
}

/* The three "... or *" validators: only a lone "*" is the wildcard. */
static void test_star(void)
{
    const valid_fn fns[] = { tb_config_valid_catalog, tb_config_valid_id_or_star, tb_config_valid_acl_dest };
    const char *names[] = { "tb_config_valid_catalog", "tb_config_valid_id_or_star", "tb_config_valid_acl_dest" };
    for (size_t i = 0; i < 3; i++) {
        expect(names[i], fns[i], "*", 1);
        expect(names[i], fns[i], "person", 1);
        expect(names[i], fns[i], build("", 'c', TB_ID_MAX, ""), 1);
        expect(names[i], fns[i], build("", 'c', TB_ID_MAX + 1, ""), 0);
        expect(names[i], fns[i], "**", 0);
        expect(names[i], fns[i], "* ", 0);
        expect(names[i], fns[i], " *", 0);
        expect(names[i], fns[i], "a*", 0);
        expect(names[i], fns[i], "", 0);
        expect(names[i], fns[i], NULL, 0);
    }
    /* only an ACL destination may name a topic */
    OK(tb_config_valid_acl_dest, "topic:alerts");
    BAD(tb_config_valid_catalog, "topic:alerts");
    BAD(tb_config_valid_id_or_star, "topic:alerts");
    BAD(tb_config_valid_acl_dest, "topic:*");
    BAD(tb_config_valid_acl_dest, "topic:");
}

static void test_z85(void)
{
    /* the CURVE public key of the ZeroMQ documentation (zmq_curve) */
    OK(tb_config_valid_z85, "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID");
    /* whatever libzmq encodes from 32 bytes is accepted */
    unsigned char key[32];
    char z[41];
    for (int pattern = 0; pattern < 3; pattern++) {
        for (int i = 0; i < 32; i++)
            key[i] = (unsigned char)(pattern == 0 ? 0x00 : pattern == 1 ? 0xFF : i * 37 + 11);
        CHECK(zmq_z85_encode(z, key, sizeof key) != NULL);
        OK(tb_config_valid_z85, z);
        /* all 0xFF bytes: every group is UINT32_MAX, the largest accepted */
        if (pattern == 1) CHECK(strcmp(z, "%nSc0%nSc0%nSc0%nSc0%nSc0%nSc0%nSc0%nSc0") == 0);
    }
    /* one more than UINT32_MAX in the first and in the last group */
    BAD(tb_config_valid_z85, build("%nSc1", '0', 35, ""));
    BAD(tb_config_valid_z85, build("", '0', 35, "%nSc1"));
    BAD(tb_config_valid_z85, build("", '#', 40, ""));     /* 85^5 - 1 per group */
    OK(tb_config_valid_z85, build("", '0', 40, ""));
    BAD(tb_config_valid_z85, build("", '0', 39, ""));
    BAD(tb_config_valid_z85, build("", '0', 41, ""));
    BAD(tb_config_valid_z85, build("", '0', 80, ""));
    BAD(tb_config_valid_z85, "");
    BAD(tb_config_valid_z85, NULL);
    /* characters outside the Z85 alphabet, at the end of a valid length */
    const char notz85[] = " ,;\"'\\_|~`\t";
    for (size_t i = 0; i < sizeof notz85 - 1; i++) {
        char s[2] = { notz85[i], '\0' };
        BAD(tb_config_valid_z85, build("", '0', 39, s));
    }
    BAD(tb_config_valid_z85, build("", '0', 39, "\xc3"));
}

/* tcp:// endpoints: tb_config_valid_endpoint (where to listen) and
 * tb_config_valid_connect_endpoint (where a node connects) differ on "*". */
static void test_endpoint(void)
{
    const char *both_ok[] = {
        "tcp://hub.example.gov.cn:7400", "tcp://127.0.0.1:1", "tcp://localhost:65535", "tcp://a-b.c:80",
        "tcp://1a.b:80", "tcp://HUB:80", "tcp://h:00080", "tcp://[::1]:7400", "tcp://[2001:db8::1]:7400",
        "tcp://[::ffff:10.0.0.1]:80",
    };
    const char *both_bad[] = {
        "", "tcp://", "tcp://host", "tcp://host:", "tcp://:7400", "tcp://host:0", "tcp://host:65536",
        "tcp://host:99999", "tcp://host:000080", "tcp://host:-1", "tcp://host:+80", "tcp://host:80x",
        "tcp://host:80 ", "tcp://host:80/", "udp://host:80", "TCP://host:80", "ipc:///tmp/x", " tcp://host:80",
        "tcp://ho st:80", "tcp://-host:80", "tcp://host-.x:80", "tcp://a..b:80", "tcp://a.:80", "tcp://.a:80",
        "tcp://a_b:80", "tcp://999.1.1.1:80", "tcp://1.2.3:80", "tcp://a.1:80", "tcp://123:80",
        "tcp://::1:80", "tcp://[::1]80", "tcp://[::1:80", "tcp://[]:80", "tcp://[zz::1]:80",
        "tcp://[127.0.0.1]:80", "tcp://[fe80::1%eth0]:80", "tcp://[::1]:0", "tcp://[::1]:65536",
        "tcp://**:80", "tcp://*.example:80", "tcp://[*]:80",
    };
    for (size_t i = 0; i < sizeof both_ok / sizeof *both_ok; i++) {
        OK(tb_config_valid_endpoint, both_ok[i]);
        OK(tb_config_valid_connect_endpoint, both_ok[i]);
    }
    for (size_t i = 0; i < sizeof both_bad / sizeof *both_bad; i++) {
        BAD(tb_config_valid_endpoint, both_bad[i]);
        BAD(tb_config_valid_connect_endpoint, both_bad[i]);
    }
    BAD(tb_config_valid_endpoint, NULL);
    BAD(tb_config_valid_connect_endpoint, NULL);
    /* the wildcard: where to listen, never where to connect */
    OK(tb_config_valid_endpoint, "tcp://*:7400");
    BAD(tb_config_valid_connect_endpoint, "tcp://*:7400");
    BAD(tb_config_valid_endpoint, "tcp://*:0");
    OK(tb_config_valid_endpoint, "tcp://0.0.0.0:7400");
    OK(tb_config_valid_endpoint, "tcp://[::]:7400");

    /* a label of 63 characters, not 64; a name of 253 bytes, not 254 */
    OK(tb_config_valid_endpoint, build("tcp://", 'a', 63, ".b:80"));
    BAD(tb_config_valid_endpoint, build("tcp://", 'a', 64, ".b:80"));
    char host[300] = "tcp://";
    for (int i = 0; i < 3; i++) strcat(host, build("", 'h', 63, "."));   /* 192 bytes */
    strcat(host, build("", 'h', 61, ":80"));                             /* 253 */
    OK(tb_config_valid_endpoint, host);
    strcpy(host + strlen(host) - 3, "h:80");                             /* 254 */
    BAD(tb_config_valid_endpoint, host);
    /* bracket contents longer than any IPv6 address */
    BAD(tb_config_valid_endpoint, build("tcp://[", '1', 46, "]:80"));
}

static void test_http_listen(void)
{
    char host[64];
    int port;

    CHECK(tb_config_parse_http_listen("9740", host, sizeof host, &port) == 1 && strcmp(host, "127.0.0.1") == 0 &&
          port == 9740);
    CHECK(tb_config_parse_http_listen("1", host, sizeof host, &port) == 1 && port == 1);
    CHECK(tb_config_parse_http_listen("65535", host, sizeof host, &port) == 1 && port == 65535);
    CHECK(tb_config_parse_http_listen("0.0.0.0:80", host, sizeof host, &port) == 1 &&
          strcmp(host, "0.0.0.0") == 0 && port == 80);
    CHECK(tb_config_parse_http_listen("[::1]:443", host, sizeof host, &port) == 1 && strcmp(host, "::1") == 0 &&
          port == 443);
    CHECK(tb_config_parse_http_listen("[::]:8080", host, sizeof host, &port) == 1 && strcmp(host, "::") == 0 &&
          port == 8080);
    /* host needs strlen + 1 bytes */
    CHECK(tb_config_parse_http_listen("10.1.2.3:80", host, 9, &port) == 1 && strcmp(host, "10.1.2.3") == 0);
    CHECK(tb_config_parse_http_listen("10.1.2.3:80", host, 8, NULL) == 0);
    CHECK(tb_config_parse_http_listen("80", NULL, 0, NULL) == 1);

    /* refused: nothing is written */
    const char *bad[] = {
        "", "0", "65536", "123456", "-1", "+80", "80 ", " 80", "127.0.0.1:0", "127.0.0.1:65536",
        "127.0.0.1:", ":80", "127.0.0.1", "localhost:80", "hub.example:80", "*:80", "1.2.3:80",
        "::1:80", "[::1]", "[::1]80", "[::1:80", "[]:80", "[zz::1]:80", "[127.0.0.1]:80",
        "tcp://127.0.0.1:80", "127.0.0.1:80:80",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        strcpy(host, "untouched");
        port = -1;
        int got = tb_config_parse_http_listen(bad[i], host, sizeof host, &port);
        CHECK_MSG(got == 0 && port == -1 && strcmp(host, "untouched") == 0, "parse_http_listen(\"%s\") = %d",
                  bad[i], got);
        BAD(tb_config_valid_http_listen, bad[i]);
    }
    CHECK(tb_config_parse_http_listen(NULL, host, sizeof host, &port) == 0);
    BAD(tb_config_valid_http_listen, NULL);
    OK(tb_config_valid_http_listen, "9740");
    OK(tb_config_valid_http_listen, "192.0.2.1:65535");
    OK(tb_config_valid_http_listen, "[2001:db8::1]:1");
}

static void test_loopback(void)
{
    const char *yes[] = { "127.0.0.1", "127.0.0.0", "127.255.255.255", "::1", "::ffff:127.0.0.2" };
    const char *no[] = { "", "0.0.0.0", "126.255.255.255", "128.0.0.1", "10.0.0.1", "::", "::2",
                         "::ffff:10.0.0.1", "::ffff:128.0.0.1", "[::1]", "localhost", "127.0.0.1:80", "127.1" };
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++) OK(tb_config_loopback_host, yes[i]);
    for (size_t i = 0; i < sizeof no / sizeof *no; i++) BAD(tb_config_loopback_host, no[i]);
    BAD(tb_config_loopback_host, NULL);
}

static void test_api_listen(void)
{
    OK(tb_config_valid_api_listen, "ipc:///a");                     /* the shortest path, 2 bytes */
    OK(tb_config_valid_api_listen, "ipc:///run/tongban/node.api");
    OK(tb_config_valid_api_listen, "ipc:///tmp/a b");
    OK(tb_config_valid_api_listen, build("ipc:///", 'p', 106, ""));  /* 107 bytes */
    BAD(tb_config_valid_api_listen, build("ipc:///", 'p', 107, ""));
    OK(tb_config_valid_api_listen, "tcp://*:5555");
    OK(tb_config_valid_api_listen, "tcp://127.0.0.1:5555");
    OK(tb_config_valid_api_listen, "tcp://[::1]:5555");
    const char *bad[] = {
        "", "ipc://", "ipc:///", "ipc://relative/x", "ipc:///tmp/", "ipc:///tmp/x/", "ipc:///tmp/\x01x",
        "ipc:///tmp/x\x7f", "ipc:///tmp/\tx", "IPC:///tmp/x", "tcp://*:0", "tcp://host", "tcp://[::1]:65536",
        "udp://host:80", "/tmp/x", "inproc://x",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) BAD(tb_config_valid_api_listen, bad[i]);
    BAD(tb_config_valid_api_listen, NULL);
}

static void test_http_token(void)
{
    OK(tb_config_valid_http_token, "0123456789abcdef");             /* 16 */
    OK(tb_config_valid_http_token, "AZaz09._~-AZaz09._~-");
    OK(tb_config_valid_http_token, build("", 'f', 64, ""));         /* openssl rand -hex 32 */
    OK(tb_config_valid_http_token, build("", 'f', 256, ""));
    BAD(tb_config_valid_http_token, build("", 'f', 15, ""));
    BAD(tb_config_valid_http_token, "");
    const char bad[] = "+/= %&?#:;\"'<>@\\\t\x7f\xc3";
    for (size_t i = 0; i < sizeof bad - 1; i++) {
        char s[2] = { bad[i], '\0' };
        BAD(tb_config_valid_http_token, build("", 'f', 16, s));     /* at the end */
        char t[40];
        snprintf(t, sizeof t, "%s%s", s, build("", 'f', 16, ""));   /* at the start */
        BAD(tb_config_valid_http_token, t);
    }
}

int main(void)
{
    test_id();
    test_dest();
    test_star();
    test_z85();
    test_endpoint();
    test_http_listen();
    test_loopback();
    test_api_listen();
    test_http_token();
    return tbtest_done("test_config_valid");
}
