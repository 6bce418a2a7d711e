/*
 * Catalog definition files through the catalog checker
 * ngx_astralform_catalog_load() (src/ngx_astralform_catalog.c), as
 * "astralform_catalog" does at configuration time: the fuzzer's bytes are
 * written to a file and loaded with a minimal ngx_conf_t after the
 * shipped catalog (conf/connectors), so duplicate slugs and tool names
 * are checked against real definitions.
 *
 * A definition the checker accepts is then used: each of its tools (at
 * most four) is called through ngx_astralform_tools_call_handler() with
 * the arguments of section 1, which runs the catalog's path, query and
 * body templating (static call_url and call_body in
 * src/ngx_astralform_tools.c), the credential placement (api.auth) and
 * the fixed headers.
 *
 * Input: "DEFINITION-JSON\n%%\nARGUMENTS-JSON" (the second part optional).
 *
 * Oracles, beyond the gateway's: a refused file's message names the
 * directive; the checker's view of an accepted file (slug, type, tools,
 * endpoints) matches the file; arguments never add a "/", "?" or "#" to
 * the URL (each goes percent-encoded into its own segment), nor does the
 * URL end up with two query strings.
 */


#include "fuzz_gateway.h"

#include <unistd.h>


#define FZ_MAX_TOOLS  4


static void fz_unlink(void);


static ngx_array_t   fz_base;        /* the shipped definitions */
static char          fz_file[256];


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    ngx_uint_t             i;
    ngx_astralform_def_t  *def, *copy;

    fz_gw_init();

    def = fz_world.amcf->catalog.defs.elts;

    ngx_array_init(&fz_base, ngx_create_pool(1024, &fz_log),
                   fz_world.amcf->catalog.defs.nelts,
                   sizeof(ngx_astralform_def_t));

    for (i = 0; i < fz_world.amcf->catalog.defs.nelts; i++) {
        copy = ngx_array_push(&fz_base);
        *copy = def[i];
    }

    snprintf(fz_file, sizeof(fz_file), "/tmp/astralform-fuzz-catalog-%d.json",
             (int) getpid());

    atexit(fz_unlink);

    return 0;
}


static void
fz_unlink(void)
{
    unlink(fz_file);
}


static void
fz_check_def(ngx_astralform_def_t *def)
{
    json_t      *json;
    ngx_str_t   *url[4];
    ngx_uint_t   i;
    const char  *slug;

    json = def->json;
    slug = json_string_value(json_object_get(json, "slug"));

    if (slug == NULL || def->slug.len != strlen(slug)
        || ngx_strncmp(def->slug.data, slug, def->slug.len) != 0)
    {
        fz_fail("the checker accepted a slug it does not hold");
    }

    for (i = 0; i < def->slug.len; i++) {
        if (!(islower(def->slug.data[i]) || isdigit(def->slug.data[i])
              || def->slug.data[i] == '_'))
        {
            fz_fail("the checker accepted the slug \"%s\"", slug);
        }
    }

    if (def->type != NGX_ASTRALFORM_REMOTE_MCP
        && (!json_is_array(def->tools) || json_array_size(def->tools) == 0
            || def->api_base.len == 0))
    {
        fz_fail("the checker accepted a connector without tools or API");
    }

    /* tools are called by name alone: a second one would be unreachable */
    for (i = 0; i < json_array_size(def->tools); i++) {
        size_t       k;
        const char  *a, *b;

        a = json_string_value(json_object_get(json_array_get(def->tools, i),
                                              "name"));

        for (k = 0; k < i; k++) {
            b = json_string_value(json_object_get(
                    json_array_get(def->tools, k), "name"));

            if (a != NULL && b != NULL && strcmp(a, b) == 0
                && !fz_known("catalog-dup-tool"))
            {
                fz_fail("the checker accepted two tools named \"%s\" in "
                        "one file", a);
            }
        }
    }

    url[0] = &def->api_base;
    url[1] = &def->authorize_url;
    url[2] = &def->token_url;
    url[3] = &def->revoke_url;

    for (i = 0; i < 4; i++) {
        if (url[i]->len && ngx_astralform_valid_url(url[i]) != NGX_OK) {
            fz_fail("the checker accepted the endpoint \"%.*s\"",
                    (int) url[i]->len, url[i]->data);
        }
    }
}


/* c in p, outside "{name}" placeholders (call_url replaces those) */
static ngx_uint_t
fz_count(u_char *p, size_t len, u_char c)
{
    u_char      *last, *close;
    ngx_uint_t   n;

    last = p + len;

    for (n = 0; p < last; p++) {
        if (*p == '{') {
            close = memchr(p, '}', last - p);
            if (close != NULL) {
                p = close;
                continue;
            }
        }

        n += (*p == c);
    }

    return n;
}


static ngx_str_t  fz_url;


static ngx_str_t *
fz_answer(ngx_astralform_http_req_t *hr)
{
    static ngx_str_t  ok = ngx_string("200\nContent-Type: application/json"
                                      "\n\n{\"ok\":true}");

    /* the request pool goes with the request: keep a copy */
    free(fz_url.data);
    fz_url.data = malloc(hr->url.len + 1);
    fz_url.len = hr->url.len;
    ngx_memcpy(fz_url.data, hr->url.data, hr->url.len);

    return &ok;
}


static void
fz_call_tools(ngx_astralform_def_t *def, ngx_str_t *args)
{
    size_t                       i, k;
    json_t                      *tool, *a, *query, *q;
    fz_req_t                    *req;
    ngx_uint_t                   plain_names;
    const char                  *path;
    ngx_array_t                 *conns;
    ngx_astralform_project_t     project;
    ngx_astralform_connector_t  *conn;

    conns = ngx_array_create(ngx_create_pool(1024, &fz_log), 1,
                             sizeof(ngx_astralform_connector_t));
    conn = ngx_array_push(conns);
    ngx_memzero(conn, sizeof(ngx_astralform_connector_t));

    conn->def = def;
    conn->id = def->slug;
    ngx_str_set(&conn->client_id, "client-id-1");
    conn->require_auth = 1;
    conn->allow_end_user_auth = 1;
    conn->from_config = 1;

    if (def->type == NGX_ASTRALFORM_API_KEY) {
        /* the service key: the end user has none (token_mode NONE) */
        conn->api_key.len = sizeof("AK-CANARY--1") - 1 + def->slug.len;
        conn->api_key.data = ngx_pnalloc(conns->pool, conn->api_key.len);
        ngx_sprintf(conn->api_key.data, "AK-CANARY-%V-1", &def->slug);
    }

    ngx_memzero(&project, sizeof(project));
    ngx_str_set(&project.id, FZ_PROJECT);
    project.connectors = *conns;

    fz_world.project = &project;
    fz_world.extra_def = def;
    fz_world.answer = fz_answer;

    fz_world.token_mode = def->type == NGX_ASTRALFORM_OAUTH
                          ? FZ_TOKEN_SEALED : FZ_TOKEN_NONE;
    ngx_str_set(&fz_world.token_plain,
                "{\"type\":\"oauth\",\"access_token\":\"AT-CANARY-$C-1\","
                "\"expires_at\":0}");

    json_array_foreach(def->tools, i, tool) {
        if (i == FZ_MAX_TOOLS) {
            break;
        }

        /* a name taken by an earlier tool calls that one */
        for (k = 0; k < i; k++) {
            if (json_equal(json_object_get(tool, "name"),
                           json_object_get(json_array_get(def->tools, k),
                                           "name")))
            {
                break;
            }
        }

        if (k < i) {
            continue;
        }

        a = args->len ? json_loadb((char *) args->data, args->len,
                                   JSON_REJECT_DUPLICATES, NULL)
                      : json_object();

        req = fz_req(NGX_HTTP_POST, "tools/call", NGX_ASTRALFORM_KEY_AGENT,
                     "user-1", NULL);
        req->ctx->body = json_pack("{s:O, s:o?}", "name",
                                   json_object_get(tool, "name"),
                                   "arguments", a);
        if (req->ctx->body == NULL) {
            fz_req_abort(req);
            continue;
        }

        fz_url.len = 0;

        fz_dispatch(req, ngx_astralform_tools_call_handler);
        fz_run(0, NULL);

        if (fz_url.len == 0 || fz_input_has("CANARY")) {
            continue;
        }

        /* the URL holds the base, the template and name=value pairs */

        path = json_string_value(json_object_get(tool, "path"));
        query = json_object_get(tool, "query");
        plain_names = 1;

        json_array_foreach(query, k, q) {
            if (strpbrk(json_string_value(q), "/?#&=") != NULL) {
                plain_names = 0;
            }
        }

        q = json_object_get(json_object_get(def->api, "auth"), "name");
        if (json_is_string(q) && strpbrk(json_string_value(q), "/?#&=")) {
            plain_names = 0;
        }

        if (!plain_names) {
            continue;
        }

        /* the query the template starts and the one call_url adds */
        if (memchr(fz_url.data, '?', fz_url.len) != NULL
            && memchr((u_char *) memchr(fz_url.data, '?', fz_url.len) + 1,
                      '?', fz_url.data + fz_url.len
                           - (u_char *) memchr(fz_url.data, '?', fz_url.len)
                           - 1)
               != NULL
            && !fz_known("url-query"))
        {
            fz_fail("a URL with two \"?\": %.*s from \"%s\"",
                    (int) fz_url.len, fz_url.data, path);
        }

        if (fz_count(fz_url.data, fz_url.len, '/')
            != fz_count(def->api_base.data, def->api_base.len, '/')
               + fz_count((u_char *) path, strlen(path), '/')
            || fz_count(fz_url.data, fz_url.len, '#')
               != fz_count(def->api_base.data, def->api_base.len, '#')
                  + fz_count((u_char *) path, strlen(path), '#'))
        {
            fz_fail("an argument left its place in the URL: %.*s from "
                    "\"%s\"", (int) fz_url.len, fz_url.data, path);
        }
    }

    free(fz_url.data);
    ngx_str_null(&fz_url);

    fz_world.project = fz_world.home;
    fz_world.extra_def = NULL;
    fz_world.answer = NULL;

    ngx_destroy_pool(conns->pool);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                        fd;
    char                      *rv;
    ngx_str_t                  path;
    ngx_uint_t                 i;
    ngx_conf_t                 cf;
    ngx_pool_t                *pool;
    fz_sections_t              sec;
    ngx_astralform_def_t      *def, *base, *mine;
    ngx_astralform_catalog_t   cat;

    fz_split(data, size, &sec);

    fd = open(fz_file, O_WRONLY|O_CREAT|O_TRUNC, 0600);
    if (fd == -1
        || write(fd, sec.s[0].data, sec.s[0].len) != (ssize_t) sec.s[0].len)
    {
        fz_fail("cannot write %s", fz_file);
    }
    close(fd);

    fz_gw_begin(data, size);

    pool = ngx_create_pool(4096, &fz_log);

    ngx_memzero(&cf, sizeof(ngx_conf_t));
    cf.pool = pool;
    cf.temp_pool = pool;
    cf.cycle = (ngx_cycle_t *) ngx_cycle;
    cf.log = &fz_log;

    if (ngx_astralform_catalog_init(&cf, &cat) != NGX_OK) {
        fz_fail("out of memory");
    }

    /* the shipped files first, each with a reference of this catalog's */

    base = fz_base.elts;

    for (i = 0; i < fz_base.nelts; i++) {
        def = ngx_array_push(&cat.defs);
        *def = base[i];
        json_incref(def->json);
    }

    path.data = (u_char *) fz_file;
    path.len = strlen(fz_file);
    ngx_shim_conf_error[0] = '\0';

    rv = ngx_astralform_catalog_load(&cf, &cat, &path);

    if (rv != NGX_CONF_OK) {
        if (strstr((char *) ngx_shim_conf_error, "\"astralform_catalog\"")
            == NULL)
        {
            fz_fail("a refused catalog file without the directive's name: "
                    "%s", ngx_shim_conf_error);
        }

        goto done;
    }

    mine = &((ngx_astralform_def_t *) cat.defs.elts)[cat.defs.nelts - 1];
    fz_check_def(mine);

    if (ngx_astralform_catalog_finish(&cf, &cat) != NGX_OK) {
        fz_fail("catalog_finish failed without overrides");
    }

    /* sorted now: find it again */

    def = NULL;

    for (i = 0; i < cat.defs.nelts; i++) {
        mine = &((ngx_astralform_def_t *) cat.defs.elts)[i];

        if (ngx_astralform_catalog_find(&cat, &mine->slug) != mine) {
            fz_fail("catalog_find does not find \"%.*s\"",
                    (int) mine->slug.len, mine->slug.data);
        }

        {
            ngx_uint_t  k, shipped;

            for (shipped = 0, k = 0; k < fz_base.nelts; k++) {
                shipped |= (mine->json == base[k].json);
            }

            if (!shipped) {
                def = mine;
            }
        }
    }

    if (def != NULL && def->type != NGX_ASTRALFORM_REMOTE_MCP) {
        fz_call_tools(def, sec.n > 1 ? &sec.s[1] : &(ngx_str_t) { 0, NULL });
    }

done:

    /* the catalog's cleanup releases every definition's reference */
    ngx_destroy_pool(pool);

    fz_gw_end();

    return 0;
}
