/* loadgen.c -- the bench's load generator: commits transactions of new rows
 * into tongban.records on a node's PostgreSQL, as an application would, as
 * fast as it can or at a steady rate.
 *
 *   tb_loadgen --conninfo CONNINFO --rows N [--rows-per-txn 1000]
 *              [--body-bytes 512] [--catalog bench] [--prefix KEYPREFIX]
 *              [--rate ROWS_PER_S]
 *
 * Each transaction is one parameterised INSERT ... SELECT over
 * generate_series (autocommit), so the rows are built by the server; the
 * capture trigger of tongban.records then writes the outbox in the same
 * transaction, which is the loader's own work and counts. Keys are
 * "<prefix>-<n>", n = 1..N; bodies are JSON objects
 * {"i": n, "t": <clock_timestamp() in epoch ms>, "pad": "xx.."} padded to
 * about --body-bytes bytes of text. With --rate, transactions start on a
 * fixed schedule (rows-per-txn / rate seconds apart, no drift); without it,
 * back to back.
 *
 * Output: one JSON line {"rows", "txns", "seconds", "rows_per_s",
 * "start_ms", "end_ms", "txn_p50_ms", "txn_p99_ms", "txn_max_ms", "behind_ms"}:
 * start_ms / end_ms are CLOCK_REALTIME ms before the first transaction and
 * after the last commit; txn_* is the time of one INSERT + commit;
 * behind_ms is how late the last scheduled transaction started (--rate);
 * cpu_s is this process's own CPU time (user + system), the server's work
 * for it is in its backend.
 * Exit: 0 done, 1 database error, 2 usage.
 */
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define HIST_MS 100000

typedef struct {
    const char *conninfo, *catalog, *prefix;
    uint64_t rows, rows_per_txn, body_bytes, rate;
} opts_t;

static const char insert_sql[] =
    "INSERT INTO tongban.records (catalog, key, body)"
    " SELECT $1, $2 || '-' || g, jsonb_build_object('i', g,"
    "        't', floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint,"
    "        'pad', repeat('x', $5::int))"
    "   FROM generate_series($3::bigint, $4::bigint) g";

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t real_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_until_us(uint64_t t)
{
    uint64_t now = mono_us();
    if (t <= now) return;
    struct timespec ts = { (time_t)((t - now) / 1000000u), (long)((t - now) % 1000000u) * 1000 };
    nanosleep(&ts, NULL);
}

static int parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (*s < '0' || *s > '9') return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static long pct(const uint64_t *h, uint64_t n, unsigned p)
{
    uint64_t want = (n * p + 99) / 100, acc = 0;
    if (!n) return 0;
    if (!want) want = 1;
    for (long i = 0; i < HIST_MS; i++)
        if ((acc += h[i]) >= want) return i;
    return HIST_MS - 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: tb_loadgen --conninfo CONNINFO --rows N [--rows-per-txn 1000] [--body-bytes 512]\n"
               "                  [--catalog bench] [--prefix KEYPREFIX] [--rate ROWS_PER_S]\n");
}

int main(int argc, char **argv)
{
    opts_t o = { NULL, "bench", "k", 0, 1000, 512, 0 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        int bad = 0;
        if (strcmp(a, "--conninfo") == 0) o.conninfo = v;
        else if (strcmp(a, "--catalog") == 0) o.catalog = v;
        else if (strcmp(a, "--prefix") == 0) o.prefix = v;
        else if (strcmp(a, "--rows") == 0) bad = parse_u64(v, 1, UINT32_MAX, &o.rows);
        else if (strcmp(a, "--rows-per-txn") == 0) bad = parse_u64(v, 1, 1000000, &o.rows_per_txn);
        else if (strcmp(a, "--body-bytes") == 0) bad = parse_u64(v, 64, 1u << 20, &o.body_bytes);
        else if (strcmp(a, "--rate") == 0) bad = parse_u64(v, 1, 10000000, &o.rate);
        else bad = 1;
        if (bad) {
            fprintf(stderr, "tb_loadgen: bad option %s %s\n", a, v);
            usage(stderr);
            return 2;
        }
    }
    if (!o.conninfo || !o.rows) {
        usage(stderr);
        return 2;
    }

    int rc = 1;
    uint64_t *hist = calloc(HIST_MS, sizeof *hist);
    PGconn *pg = PQconnectdb(o.conninfo);
    PGresult *res = NULL;
    if (!hist) goto done;
    if (PQstatus(pg) != CONNECTION_OK) {
        fprintf(stderr, "tb_loadgen: cannot connect: %s", PQerrorMessage(pg));
        goto done;
    }
    res = PQprepare(pg, "ins", insert_sql, 5, NULL);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        fprintf(stderr, "tb_loadgen: prepare: %s", PQerrorMessage(pg));
        goto done;
    }
    PQclear(res);
    res = NULL;

    /* {"i": N, "t": 13 digits, "pad": ""} is about 40 characters */
    uint64_t pad = o.body_bytes > 48 ? o.body_bytes - 48 : 1;
    char from[24], to[24], padbuf[24];
    snprintf(padbuf, sizeof padbuf, "%" PRIu64, pad);
    const char *params[5] = { o.catalog, o.prefix, from, to, padbuf };
    uint64_t interval_us = o.rate ? o.rows_per_txn * 1000000u / o.rate : 0;
    uint64_t t0 = mono_us(), start_ms = real_ms(), txns = 0, behind_us = 0;
    for (uint64_t first = 1; first <= o.rows; first += o.rows_per_txn) {
        uint64_t last = first + o.rows_per_txn - 1;
        if (last > o.rows) last = o.rows;
        if (o.rate) {
            uint64_t due = t0 + txns * interval_us;
            sleep_until_us(due);
            uint64_t now = mono_us();
            behind_us = now > due ? now - due : 0;
        }
        snprintf(from, sizeof from, "%" PRIu64, first);
        snprintf(to, sizeof to, "%" PRIu64, last);
        uint64_t a = mono_us();
        res = PQexecPrepared(pg, "ins", 5, params, NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            fprintf(stderr, "tb_loadgen: insert rows %s..%s: %s", from, to, PQerrorMessage(pg));
            goto done;
        }
        PQclear(res);
        res = NULL;
        uint64_t ms = (mono_us() - a) / 1000u;
        hist[ms < HIST_MS ? ms : HIST_MS - 1]++;
        txns++;
    }
    uint64_t end_ms = real_ms();
    double secs = (double)(mono_us() - t0) / 1e6;
    long mx = 0;
    for (long i = HIST_MS - 1; i >= 0; i--)
        if (hist[i]) {
            mx = i;
            break;
        }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                 (double)ru.ru_stime.tv_usec / 1e6;
    printf("{\"rows\":%" PRIu64 ",\"txns\":%" PRIu64 ",\"seconds\":%.3f,\"rows_per_s\":%.0f,\"start_ms\":%" PRIu64
           ",\"end_ms\":%" PRIu64 ",\"txn_p50_ms\":%ld,\"txn_p99_ms\":%ld,\"txn_max_ms\":%ld,\"behind_ms\":%.1f"
           ",\"cpu_s\":%.3f}\n",
           o.rows, txns, secs, secs > 0 ? (double)o.rows / secs : 0.0, start_ms, end_ms, pct(hist, txns, 50),
           pct(hist, txns, 99), mx, (double)behind_us / 1000.0, cpu);
    rc = 0;
done:
    PQclear(res);
    PQfinish(pg);
    free(hist);
    return rc;
}
