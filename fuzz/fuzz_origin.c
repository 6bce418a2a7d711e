/*
 * Destination hygiene: ngx_astralform_url_in_origins()
 * (src/ngx_astralform_catalog.c), which decides whether an OAuth
 * return_url may be redirected to (astralform_return_origin) and whether an
 * API-set MCP server URL is allowed (astralform_mcp_allowed_origin), and
 * ngx_astralform_valid_url(), checked against an independent URL parser:
 * libcurl's (the one that will connect).
 *
 * Input: "URL" against the fixed origins below, or
 * "ORIGIN\n%%\nURL" against that origin alone (as an operator wrote it).
 *
 * Oracle: a URL accepted for an origin must, parsed by curl, have the
 * origin's scheme, host and port; a URL valid_url() accepts must parse with
 * curl and have a host.
 */


#include "fuzz_util.h"
#include "ngx_shim.h"
#include "ngx_astralform_catalog.h"

#include <curl/curl.h>


static ngx_log_t     fz_log;
static ngx_array_t  *fz_origins;

static const char  *fz_fixed[] = {
    "https://app.example.com",
    "http://localhost:3000",
    "https://mcp.corp.example:8443",
    "https://[2001:db8::1]",
    NULL
};


typedef struct {
    char   *scheme;
    char   *host;
    char   *port;
} fz_parts_t;


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    ngx_str_t    *o;
    ngx_uint_t    i;

    fz_init();

    fz_log.log_level = NGX_LOG_DEBUG_ALL;
    fz_origins = ngx_array_create(ngx_create_pool(1024, &fz_log), 4,
                                  sizeof(ngx_str_t));

    for (i = 0; fz_fixed[i]; i++) {
        o = ngx_array_push(fz_origins);
        o->data = (u_char *) fz_fixed[i];
        o->len = strlen(fz_fixed[i]);
    }

    curl_global_init(CURL_GLOBAL_NOTHING);

    return 0;
}


static ngx_int_t
fz_parse(const char *url, fz_parts_t *parts)
{
    CURLU      *h;
    CURLUcode   rc;

    ngx_memzero(parts, sizeof(fz_parts_t));

    h = curl_url();
    if (h == NULL) {
        fz_fail("out of memory");
    }

    rc = curl_url_set(h, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME);

    if (rc == CURLUE_OK) {
        curl_url_get(h, CURLUPART_SCHEME, &parts->scheme, 0);
        curl_url_get(h, CURLUPART_HOST, &parts->host, 0);
        curl_url_get(h, CURLUPART_PORT, &parts->port, CURLU_DEFAULT_PORT);
    }

    curl_url_cleanup(h);

    return rc == CURLUE_OK && parts->host != NULL ? NGX_OK : NGX_ERROR;
}


static void
fz_free(fz_parts_t *parts)
{
    curl_free(parts->scheme);
    curl_free(parts->host);
    curl_free(parts->port);
}


static ngx_uint_t
fz_same(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcasecmp(a, b) == 0;
}


static void
fz_check(ngx_array_t *origins, ngx_str_t *url)
{
    char        *u, *o;
    ngx_str_t   *origin;
    ngx_uint_t   i, match;
    fz_parts_t   up, op;

    if (ngx_astralform_url_in_origins(origins, url) != NGX_OK) {
        return;
    }

    u = fz_strdup(url);

    if (fz_parse(u, &up) != NGX_OK) {
        fz_fail("url_in_origins accepts \"%s\", which curl cannot parse", u);
    }

    origin = origins->elts;
    match = 0;

    for (i = 0; i < origins->nelts; i++) {
        o = fz_strdup(&origin[i]);

        if (fz_parse(o, &op) == NGX_OK
            && fz_same(up.scheme, op.scheme) && fz_same(up.host, op.host)
            && fz_same(up.port, op.port))
        {
            match = 1;
        }

        fz_free(&op);
        free(o);
    }

    if (!match) {
        fz_fail("url_in_origins accepts \"%s\": curl reads %s://%s:%s", u,
                up.scheme, up.host, up.port);
    }

    fz_free(&up);
    free(u);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char           *u;
    ngx_str_t      *o;
    ngx_pool_t     *pool;
    fz_parts_t      up;
    ngx_array_t    *one;
    fz_sections_t   sec;

    fz_split(data, size, &sec);

    if (memchr(data, '\0', size) != NULL) {
        return 0;       /* the URLs come from C strings or JSON strings */
    }

    if (sec.n == 1) {
        fz_check(fz_origins, &sec.s[0]);

        /* valid_url: what catalog endpoints and API-set URLs must be */
        if (ngx_astralform_valid_url(&sec.s[0]) == NGX_OK
            && !fz_known("valid-url"))
        {
            u = fz_strdup(&sec.s[0]);
            if (fz_parse(u, &up) != NGX_OK) {
                fz_fail("valid_url accepts \"%s\", which curl cannot parse "
                        "into a host", u);
            }
            fz_free(&up);
            free(u);
        }

        return 0;
    }

    /*
     * what the directives take (static ngx_astralform_return_origin() of
     * ngx_astralform_module.c): a valid URL without a "/" after "://"
     */
    if (ngx_astralform_valid_url(&sec.s[0]) != NGX_OK
        || memchr((u_char *) memchr(sec.s[0].data, ':', sec.s[0].len) + 3,
                  '/', sec.s[0].data + sec.s[0].len
                       - ((u_char *) memchr(sec.s[0].data, ':', sec.s[0].len)
                          + 3))
           != NULL)
    {
        return 0;
    }

    /* and one a client can use (see valid-url for the others) */
    u = fz_strdup(&sec.s[0]);
    if (fz_parse(u, &up) != NGX_OK) {
        fz_free(&up);
        free(u);
        return 0;
    }
    fz_free(&up);
    free(u);

    pool = ngx_create_pool(1024, &fz_log);
    one = ngx_array_create(pool, 1, sizeof(ngx_str_t));
    o = ngx_array_push(one);
    *o = sec.s[0];

    fz_check(one, &sec.s[1]);

    ngx_destroy_pool(pool);

    return 0;
}
