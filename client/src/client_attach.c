/* client_attach.c -- the attachments of a case (case.attach,
 * case.attachment, case.attachment_chunk): a file is hashed (SHA-256,
 * OpenSSL EVP) and uploaded in chunks of 256 KiB, skipping the chunks the
 * node already has; fetching writes the chunks in order and checks the
 * whole file's hash. */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"

#define CHUNK 262144L                  /* bytes per chunk (the node's tb.chunk) */
#define MAX_BYTES 67108864L            /* the largest attachment: 64 MiB        */

static void hex(const unsigned char *d, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

/* The status of the attachment (case.attachment): *res owned by the caller. */
static tb_err_t status(tb_client_t *c, const char *case_id, const char *sha, json_t **res)
{
    json_t *args;
    tb_err_t e;
    *res = NULL;
    if ((e = tbc_args(c, &args, "case_id", case_id, "sha256", sha, (const char *)NULL)) != TB_OK) return e;
    if ((e = tbc_call(c, "case.attachment", args, c->timeout_ms, res)) != TB_OK) return e;
    if (!json_is_array(json_object_get(*res, "have")) || !json_is_integer(json_object_get(*res, "count"))) {
        json_decref(*res);
        *res = NULL;
        return tbc_fail(c, TB_ERR_PROTO, "case.attachment: the node's result has no have / count");
    }
    return TB_OK;
}

tb_err_t tb_case_attachment_status(tb_client_t *c, const char *case_id, const char *sha256, char **json)
{
    tb_err_t e;
    json_t *st = NULL;
    if (json) *json = NULL;
    if ((e = tbc_begin(c)) != TB_OK || (e = tbc_need(c, "case_id", case_id)) != TB_OK ||
        (e = tbc_need(c, "sha256", sha256)) != TB_OK)
        return e;
    if ((e = status(c, case_id, sha256, &st)) == TB_OK && json && !(*json = tbc_dump(st)))
        e = tbc_fail(c, TB_ERR_NOMEM, "out of memory");
    json_decref(st);
    return e;
}

tb_err_t tb_case_attach_file(tb_client_t *c, const char *case_id, const char *path, const char *name,
                             char sha256_hex_out[65])
{
    tb_err_t e;
    FILE *f = NULL;
    unsigned char *buf = NULL, md[EVP_MAX_MD_SIZE];
    char *b64 = NULL, sha[65];
    char *have = NULL;
    json_t *st = NULL;
    unsigned mdlen = 0;
    long size = 0, count, i;
    if ((e = tbc_begin(c)) != TB_OK || (e = tbc_need(c, "case_id", case_id)) != TB_OK ||
        (e = tbc_need(c, "path", path)) != TB_OK)
        return e;
    if (!sha256_hex_out) return tbc_fail(c, TB_ERR_INVALID, "sha256_hex_out: required");
    sha256_hex_out[0] = '\0';
    if (!name) {
        const char *slash = strrchr(path, '/');
        name = slash ? slash + 1 : path;
    }
    if (!(f = fopen(path, "rb"))) return tbc_fail(c, TB_ERR_IO, "%s: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        e = tbc_fail(c, TB_ERR_IO, "%s: cannot find its size: %s", path, strerror(errno));
        goto done;
    }
    if (size < 1 || size > MAX_BYTES) {
        e = tbc_fail(c, TB_ERR_INVALID, "%s: %ld bytes, an attachment has 1 to %ld", path, size, MAX_BYTES);
        goto done;
    }
    count = (size + CHUNK - 1) / CHUNK;
    if (!(buf = malloc(CHUNK)) || !(b64 = malloc((CHUNK + 2) / 3 * 4 + 1)) || !(have = calloc((size_t)count, 1))) {
        e = tbc_fail(c, TB_ERR_NOMEM, "out of memory");
        goto done;
    }
    /* pass 1: the hash */
    EVP_MD_CTX *md_ctx = EVP_MD_CTX_new();
    int ok = md_ctx && EVP_DigestInit_ex(md_ctx, EVP_sha256(), NULL) == 1;
    for (i = 0; ok && i < count; i++) {
        size_t want = (size_t)(i < count - 1 ? CHUNK : size - (count - 1) * CHUNK);
        if (fread(buf, 1, want, f) != want) {
            EVP_MD_CTX_free(md_ctx);
            e = tbc_fail(c, TB_ERR_IO, "%s: short read (the file changed?)", path);
            goto done;
        }
        ok = EVP_DigestUpdate(md_ctx, buf, want) == 1;
    }
    ok = ok && EVP_DigestFinal_ex(md_ctx, md, &mdlen) == 1 && mdlen == 32;
    EVP_MD_CTX_free(md_ctx);
    if (!ok) {
        e = tbc_fail(c, TB_ERR_CRYPTO, "SHA-256 of %s failed", path);
        goto done;
    }
    hex(md, 32, sha);
    /* the chunks the node has (resume) */
    if ((e = status(c, case_id, sha, &st)) != TB_OK) goto done;
    const json_t *h = json_object_get(st, "have");
    for (size_t k = 0; k < json_array_size(h); k++) {
        json_int_t x = json_integer_value(json_array_get(h, k));
        if (x >= 0 && x < count) have[x] = 1;
    }
    /* pass 2: the missing chunks */
    for (i = 0; i < count; i++) {
        size_t want = (size_t)(i < count - 1 ? CHUNK : size - (count - 1) * CHUNK);
        if (have[i]) continue;
        if (fseek(f, i * CHUNK, SEEK_SET) != 0 || fread(buf, 1, want, f) != want) {
            e = tbc_fail(c, TB_ERR_IO, "%s: short read (the file changed?)", path);
            goto done;
        }
        EVP_EncodeBlock((unsigned char *)b64, buf, (int)want);
        json_t *args;
        if ((e = tbc_args(c, &args, "case_id", case_id, "name", name, "sha256", sha, "data", b64,
                          (const char *)NULL)) != TB_OK)
            goto done;
        if (json_object_set_new(args, "size", json_integer(size)) != 0 ||
            json_object_set_new(args, "chunk_index", json_integer(i)) != 0) {
            json_decref(args);
            e = tbc_fail(c, TB_ERR_NOMEM, "out of memory");
            goto done;
        }
        if ((e = tbc_call(c, "case.attach", args, c->timeout_ms, NULL)) != TB_OK) goto done;
    }
    memcpy(sha256_hex_out, sha, 65);
done:
    json_decref(st);
    free(have);
    free(b64);
    free(buf);
    if (f) fclose(f);
    return e;
}

tb_err_t tb_case_fetch_attachment(tb_client_t *c, const char *case_id, const char *sha256, const char *out_path)
{
    tb_err_t e;
    json_t *st = NULL, *ch = NULL;
    FILE *f = NULL;
    unsigned char *buf = NULL, md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    char got[65];
    EVP_MD_CTX *md_ctx = NULL;
    if ((e = tbc_begin(c)) != TB_OK || (e = tbc_need(c, "case_id", case_id)) != TB_OK ||
        (e = tbc_need(c, "sha256", sha256)) != TB_OK || (e = tbc_need(c, "out_path", out_path)) != TB_OK)
        return e;
    if ((e = status(c, case_id, sha256, &st)) != TB_OK) return e;
    json_int_t count = json_integer_value(json_object_get(st, "count"));
    json_int_t size = json_integer_value(json_object_get(st, "size"));
    size_t have = json_array_size(json_object_get(st, "have"));
    if (!json_is_true(json_object_get(st, "complete"))) {
        e = tbc_fail(c, TB_ERR_UNAVAILABLE, "attachment %s of case %s: have %zu of %lld chunks", sha256, case_id,
                     have, (long long)count);
        goto done;
    }
    if (count < 1 || size < 1 || size > MAX_BYTES || count != (size + CHUNK - 1) / CHUNK) {
        e = tbc_fail(c, TB_ERR_PROTO, "case.attachment: size %lld and count %lld do not agree", (long long)size,
                     (long long)count);
        goto done;
    }
    if (!(buf = malloc(CHUNK + 4)) || !(md_ctx = EVP_MD_CTX_new()) ||
        EVP_DigestInit_ex(md_ctx, EVP_sha256(), NULL) != 1) {
        e = tbc_fail(c, TB_ERR_NOMEM, "out of memory (or no SHA-256)");
        goto done;
    }
    if (!(f = fopen(out_path, "wb"))) {
        e = tbc_fail(c, TB_ERR_IO, "%s: %s", out_path, strerror(errno));
        goto done;
    }
    for (json_int_t i = 0; i < count; i++) {
        json_t *args;
        long want = i < count - 1 ? CHUNK : (long)(size - (count - 1) * CHUNK);
        if ((e = tbc_args(c, &args, "case_id", case_id, "sha256", sha256, (const char *)NULL)) != TB_OK) goto done;
        if (json_object_set_new(args, "index", json_integer(i)) != 0) {
            json_decref(args);
            e = tbc_fail(c, TB_ERR_NOMEM, "out of memory");
            goto done;
        }
        json_decref(ch);
        ch = NULL;
        if ((e = tbc_call(c, "case.attachment_chunk", args, c->timeout_ms, &ch)) != TB_OK) goto done;
        const char *data = json_string_value(json_object_get(ch, "data"));
        size_t n = data ? strlen(data) : 0;
        if (!data || n % 4 != 0 || n > (CHUNK + 2) / 3 * 4) {
            e = tbc_fail(c, TB_ERR_PROTO, "chunk %lld: no base64 data", (long long)i);
            goto done;
        }
        int len = EVP_DecodeBlock(buf, (const unsigned char *)data, (int)n);
        if (len >= 0 && n >= 1 && data[n - 1] == '=') len--;   /* EVP_DecodeBlock counts padding as bytes */
        if (len >= 0 && n >= 2 && data[n - 2] == '=') len--;
        if (len != want) {
            e = tbc_fail(c, TB_ERR_PROTO, "chunk %lld: %d bytes, expected %ld", (long long)i, len, want);
            goto done;
        }
        if (fwrite(buf, 1, (size_t)want, f) != (size_t)want || EVP_DigestUpdate(md_ctx, buf, (size_t)want) != 1) {
            e = tbc_fail(c, TB_ERR_IO, "%s: write failed: %s", out_path, strerror(errno));
            goto done;
        }
    }
    if (fclose(f) != 0) {
        f = NULL;
        e = tbc_fail(c, TB_ERR_IO, "%s: %s", out_path, strerror(errno));
        goto done;
    }
    f = NULL;
    if (EVP_DigestFinal_ex(md_ctx, md, &mdlen) != 1 || mdlen != 32) {
        e = tbc_fail(c, TB_ERR_CRYPTO, "SHA-256 failed");
        goto done;
    }
    hex(md, 32, got);
    if (strcmp(got, sha256) != 0)
        e = tbc_fail(c, TB_ERR_BADSIG, "%s: the chunks hash to %s, not %s (a chunk was altered)", out_path, got,
                     sha256);
done:
    EVP_MD_CTX_free(md_ctx);
    if (f) fclose(f);
    free(buf);
    json_decref(ch);
    json_decref(st);
    return e;
}
