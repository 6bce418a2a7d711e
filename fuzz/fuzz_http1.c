/*
 * HTTP/1.1 response framing of the gateway's own provider connections
 * (src/ngx_astralform_http1.c).
 *
 * Input: any bytes, as what a provider sends on a connection: a head, then
 * (if the head parses) a body read as chunked coding.
 *
 * Oracles: the end of the head is found at the same place whether the
 * bytes come at once or in two reads (split where the first byte says);
 * a parsed head has a status of 100-599, NUL-terminated names and values
 * inside the head, and a framing that fits the status; the chunked
 * decoder gives the same body, verdict and rest fed at once as fed one
 * byte at a time, and never a body longer than its input.
 */


#include "fuzz_util.h"
#include "ngx_shim.h"
#include "ngx_astralform_http1.h"


static void fz_head(u_char *buf, size_t size, ngx_pool_t *pool);
static void fz_chunked(const u_char *data, size_t size);


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_init();

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char      *buf;
    ngx_pool_t  *pool;

    pool = ngx_create_pool(4096, NULL);
    if (pool == NULL) {
        return 0;
    }

    /* a copy of its own size, so that ASan sees any read past the end */
    buf = malloc(size ? size : 1);
    if (buf == NULL) {
        ngx_destroy_pool(pool);
        return 0;
    }

    ngx_memcpy(buf, data, size);

    fz_head(buf, size, pool);
    fz_chunked(data, size);

    free(buf);
    ngx_destroy_pool(pool);

    return 0;
}


static void
fz_head(u_char *buf, size_t size, ngx_pool_t *pool)
{
    size_t                        end, split, part;
    ngx_int_t                     rc;
    ngx_uint_t                    i;
    ngx_array_t                   headers;
    ngx_table_elt_t              *h;
    ngx_astralform_http1_head_t   head;

    end = ngx_astralform_http1_head_end(buf, size, 0);

    split = size ? buf[0] % (size + 1) : 0;
    part = ngx_astralform_http1_head_end(buf, split, 0);

    if (part == 0) {
        part = ngx_astralform_http1_head_end(buf, size, split);
    }

    if (part != end) {
        fz_fail("head end %zu at once, %zu in two reads split at %zu",
                end, part, split);
    }

    if (end == 0) {
        return;
    }

    if (end > size) {
        fz_fail("head end %zu past the %zu bytes", end, size);
    }

    if (ngx_array_init(&headers, pool, 4, sizeof(ngx_table_elt_t)) != NGX_OK)
    {
        return;
    }

    rc = ngx_astralform_http1_parse_head(buf, end, size % 2, &head,
                                         &headers);

    if (rc != NGX_OK) {
        return;
    }

    if (head.status < 100 || head.status > 599) {
        fz_fail("status %lu", (unsigned long) head.status);
    }

    if ((head.status < 200 || head.status == 204 || head.status == 304)
        && head.body != NGX_ASTRALFORM_HTTP1_NONE)
    {
        fz_fail("status %lu with a body", (unsigned long) head.status);
    }

    if ((head.body == NGX_ASTRALFORM_HTTP1_LENGTH)
        != (head.content_length >= 0))
    {
        fz_fail("framing %d with content_length %lld", (int) head.body,
                (long long) head.content_length);
    }

    if (head.body == NGX_ASTRALFORM_HTTP1_EOF && head.keepalive) {
        fz_fail("a body to the close on a kept connection");
    }

    h = headers.elts;

    for (i = 0; i < headers.nelts; i++) {
        if (h[i].key.data < buf || h[i].value.data + h[i].value.len
                                   >= buf + end
            || h[i].key.data[h[i].key.len] != '\0'
            || h[i].value.data[h[i].value.len] != '\0'
            || h[i].key.len == 0)
        {
            fz_fail("header %lu is not a terminated piece of the head",
                    (unsigned long) i);
        }
    }
}


static void
fz_chunked(const u_char *data, size_t size)
{
    u_char                          *all, *one;
    size_t                           len, rest, n, total, one_rest;
    ngx_int_t                        rc, rc1;
    ngx_astralform_http1_chunked_t   ctx;

    all = malloc(size ? size : 1);
    one = malloc(size ? size : 1);

    if (all == NULL || one == NULL) {
        free(all);
        free(one);
        return;
    }

    ngx_memcpy(all, data, size);
    ngx_memzero(&ctx, sizeof(ctx));
    len = size;
    rc = ngx_astralform_http1_chunked(&ctx, all, &len, &rest);

    if (rc != NGX_ERROR && (len > size || rest > size)) {
        fz_fail("chunked: %zu body bytes and %zu rest of %zu", len, rest,
                size);
    }

    /* the same bytes one at a time, each decoded where it lands */

    ngx_memzero(&ctx, sizeof(ctx));
    total = 0;
    one_rest = 0;
    rc1 = NGX_AGAIN;

    for (n = 0; n < size && rc1 == NGX_AGAIN; n++) {
        size_t  l = 1;

        one[total] = data[n];
        rc1 = ngx_astralform_http1_chunked(&ctx, one + total, &l, &one_rest);
        total += l;
    }

    one_rest += size - n;

    if (rc != rc1 || (rc != NGX_ERROR
                      && (len != total || rest != one_rest
                          || ngx_memcmp(all, one, len) != 0)))
    {
        fz_fail("chunked: at once %d (%zu, rest %zu), byte by byte %d "
                "(%zu, rest %zu)", (int) rc, len, rest, (int) rc1, total,
                one_rest);
    }

    free(all);
    free(one);
}
