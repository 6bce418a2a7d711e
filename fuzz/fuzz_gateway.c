/*
 * The gateway's surroundings as test doubles (see fuzz_gateway.h).
 */


#include "fuzz_gateway.h"
#include "ngx_astralform_revocations.h"


#define FZ_MAX_REQS  4


typedef enum {
    FZ_EV_REDIS = 0,
    FZ_EV_HTTP,
    FZ_EV_CALL
} fz_ev_kind_e;


typedef struct fz_event_s  fz_event_t;

typedef void (*fz_call_pt)(fz_event_t *ev);


/* lives in the pool that owns the work: its cleanup cancels the event */
typedef struct {
    fz_event_t                  *ev;
} fz_bind_t;


struct fz_event_s {
    fz_event_t                  *next;
    fz_ev_kind_e                 kind;
    fz_bind_t                   *bind;
    unsigned                     cancelled:1;

    /* Redis */
    ngx_astralform_redis_pt      handler;
    void                        *data;
    ngx_uint_t                   argc;
    ngx_str_t                   *argv;

    /* HTTP */
    ngx_astralform_http_req_t   *hr;

    /* a deferred call */
    fz_call_pt                   call;
    ngx_astralform_ctx_t        *ctx;
    void                        *a;
    void                        *b;
    void                        *c;
};


struct ngx_astralform_redis_op_s {
    fz_bind_t                    bind;
};


fz_world_t                  fz_world;
ngx_log_t                   fz_log;

static ngx_cycle_t          fz_cycle;
static ngx_pool_t          *fz_conf_pool;
static ngx_pool_t          *fz_pool;            /* per input */
static fz_event_t          *fz_head;
static fz_req_t             fz_reqs[FZ_MAX_REQS];
static ngx_uint_t           fz_nreqs;
static ngx_uint_t           fz_input_canary;

static ngx_astralform_main_conf_t  fz_amcf;
static ngx_astralform_project_t    fz_project;


static void fz_log_hook(ngx_uint_t level, u_char *msg, size_t len);
static void fz_check_secret(const char *where, const void *p, size_t len);
static void fz_unbind(void *data);
static fz_event_t *fz_event(fz_ev_kind_e kind, fz_bind_t *bind);
static fz_event_t *fz_call(ngx_pool_t *pool, fz_call_pt call);
static void fz_req_free(fz_req_t *req);
static void fz_ctx_cleanup(void *data);
static void fz_redis_run(fz_event_t *ev);
static redisReply *fz_redis_default(ngx_uint_t argc, ngx_str_t *argv);
static void fz_http_check(ngx_astralform_http_req_t *hr);
static void fz_http_run(fz_event_t *ev);
static void fz_http_host(ngx_astralform_http_req_t *hr);
static void fz_connect_run(fz_event_t *ev);
static void fz_refresh_run(fz_event_t *ev);
static void fz_config_connector(const char *slug, const char *id,
    const char *secret, const char *api_key, const char *mcp_url);
static uint32_t fz_rand(void);
static void fz_subst(ngx_str_t *in, ngx_str_t *value, ngx_str_t *out);


/* the world */

void
fz_gw_init(void)
{
    ngx_str_t   path;
    ngx_conf_t  cf;
    static u_char  root[4096];

    fz_init();

    fz_log.log_level = NGX_LOG_DEBUG_ALL;
    ngx_shim_log_hook = fz_log_hook;

    fz_conf_pool = ngx_create_pool(4096, &fz_log);

    ngx_snprintf(root, sizeof(root) - 1, "%s/%Z", fz_root());
    fz_cycle.conf_prefix.data = root;
    fz_cycle.conf_prefix.len = ngx_strlen(root);
    fz_cycle.prefix = fz_cycle.conf_prefix;
    fz_cycle.pool = fz_conf_pool;
    fz_cycle.log = &fz_log;
    ngx_cycle = &fz_cycle;

    ngx_memzero(&cf, sizeof(ngx_conf_t));
    cf.pool = fz_conf_pool;
    cf.temp_pool = fz_conf_pool;
    cf.cycle = &fz_cycle;
    cf.log = &fz_log;

    /* the configuration as ngx_astralform_module.c leaves it */

    ngx_str_set(&fz_amcf.prefix, "astralform:");
    ngx_str_set(&fz_amcf.public_url, "https://gw.example.test");
    fz_amcf.http.connect_timeout = 5000;
    fz_amcf.http.timeout = 30000;
    fz_amcf.http.max_response = 4 * 1024 * 1024;
    fz_amcf.max_body_size = 64 * 1024;
    fz_amcf.session_ttl = 600000;
    fz_amcf.state_ttl = 600000;
    fz_amcf.refresh_skew = 60000;
    fz_amcf.revoke_timeout = 5000;
    fz_amcf.enabled = 1;

    if (ngx_array_init(&fz_amcf.keys, fz_conf_pool, 2,
                       sizeof(ngx_astralform_key_t)) != NGX_OK
        || ngx_array_init(&fz_amcf.projects, fz_conf_pool, 1,
                          sizeof(ngx_astralform_project_t)) != NGX_OK
        || ngx_astralform_catalog_init(&cf, &fz_amcf.catalog) != NGX_OK)
    {
        fz_fail("out of memory");
    }

    fz_load_key(&fz_amcf.keys, "k1", "master.key");
    fz_load_key(&fz_amcf.keys, "k0", "old.key");

    ngx_str_set(&path, "conf/connectors");
    if (ngx_astralform_catalog_load(&cf, &fz_amcf.catalog, &path)
        != NGX_CONF_OK
        || ngx_astralform_catalog_finish(&cf, &fz_amcf.catalog) != NGX_OK)
    {
        fz_fail("the catalog does not load: %s", ngx_shim_conf_error);
    }

    /* project p1 and what nginx.conf enables for it */

    ngx_str_set(&fz_project.id, FZ_PROJECT);

    if (ngx_array_init(&fz_project.connectors, fz_conf_pool, 8,
                       sizeof(ngx_astralform_connector_t)) != NGX_OK)
    {
        fz_fail("out of memory");
    }

    fz_config_connector("slack", "slack", "CS-CANARY-slack-1", NULL, NULL);
    fz_config_connector("notion", "notion", "CS-CANARY-notion-1", NULL,
                        NULL);
    fz_config_connector("github", "github", "CS-CANARY-github-1", NULL,
                        NULL);
    fz_config_connector("openweather", "openweather", NULL,
                        "AK-CANARY-openweather-1", NULL);
    fz_config_connector("remote_mcp", "docs", NULL, NULL,
                        "https://mcp.docs.test/mcp");

    *(ngx_astralform_project_t *) ngx_array_push(&fz_amcf.projects)
        = fz_project;

    fz_world.amcf = &fz_amcf;
    fz_world.project = &fz_project;
    fz_world.home = &fz_project;
}


static void
fz_config_connector(const char *slug, const char *id, const char *secret,
    const char *api_key, const char *mcp_url)
{
    ngx_astralform_connector_t  *conn;

    conn = ngx_array_push(&fz_project.connectors);
    ngx_memzero(conn, sizeof(ngx_astralform_connector_t));

    conn->def = fz_def(slug);
    if (conn->def == NULL) {
        fz_fail("the catalog has no \"%s\"", slug);
    }

    conn->id.data = (u_char *) id;
    conn->id.len = strlen(id);

    if (conn->def->type == NGX_ASTRALFORM_OAUTH) {
        ngx_str_set(&conn->client_id, "client-id-1");
    }

    if (secret != NULL) {
        conn->client_secret.data = (u_char *) secret;
        conn->client_secret.len = strlen(secret);
    }

    if (api_key != NULL) {
        conn->api_key.data = (u_char *) api_key;
        conn->api_key.len = strlen(api_key);
    }

    if (mcp_url != NULL) {
        conn->mcp_url.data = (u_char *) mcp_url;
        conn->mcp_url.len = strlen(mcp_url);
    }

    conn->require_auth = 1;
    conn->allow_end_user_auth = 1;
    conn->from_config = 1;
}


ngx_astralform_def_t *
fz_def(const char *slug)
{
    ngx_str_t  s;

    s.data = (u_char *) slug;
    s.len = strlen(slug);

    return ngx_astralform_catalog_find(&fz_amcf.catalog, &s);
}


void
fz_gw_begin(const uint8_t *data, size_t size)
{
    ngx_astralform_main_conf_t  *amcf;
    ngx_astralform_project_t    *project;

    amcf = fz_world.amcf;
    project = fz_world.home ? fz_world.home : fz_world.project;

    ngx_memzero(&fz_world, sizeof(fz_world_t));

    fz_world.amcf = amcf;
    fz_world.project = project;
    fz_world.home = project;
    fz_world.refresh_rc = NGX_OK;
    fz_world.connect_rc = NGX_OK;
    fz_world.check_hosts = 1;
    fz_world.input = data;
    fz_world.input_len = size;

    fz_input_canary = memmem(data, size, "CANARY", 6) != NULL;

    fz_pool = ngx_create_pool(4096, &fz_log);

    /* the worker's cycle pool: what a worker keeps (the MCP cache) */
    fz_cycle.pool = ngx_create_pool(4096, &fz_log);
    ngx_cycle = &fz_cycle;

    fz_head = NULL;
    fz_nreqs = 0;
}


void
fz_gw_end(void)
{
    ngx_uint_t  i;
    fz_event_t *ev;

    for (i = 0; i < fz_nreqs; i++) {
        if (!fz_reqs[i].finished && !fz_reqs[i].freed) {
            fz_fail("a request was never finalized: it would hang");
        }

        free(fz_reqs[i].answer);
        fz_reqs[i].answer = NULL;
    }

    while (fz_head != NULL) {
        ev = fz_head;
        fz_head = ev->next;
        fz_fail("an operation was left queued");
    }

    /* the worker exits: the MCP cache goes with the cycle pool */
    ngx_destroy_pool(fz_cycle.pool);
    fz_cycle.pool = fz_conf_pool;

    json_decref(fz_world.redis_connectors);
    fz_world.redis_connectors = NULL;

    ngx_destroy_pool(fz_pool);
    fz_pool = NULL;
}


ngx_uint_t
fz_input_has(const char *s)
{
    return fz_contains(fz_world.input, fz_world.input_len, s);
}


static void
fz_log_hook(ngx_uint_t level, u_char *msg, size_t len)
{
    if (fz_verbose) {
        fprintf(stderr, "log[%lu]: %.*s\n", (unsigned long) level, (int) len,
                msg);
    }

    fz_check_secret("a log line", msg, len);

    /* the module's word for a request answered or finalized twice */
    if (level == NGX_LOG_ALERT) {
        fz_fail("an alert in the log: %.*s", (int) len, msg);
    }
}


static void
fz_check_secret(const char *where, const void *p, size_t len)
{
    /* every secret of the test world is "XX-CANARY-slug-N" */
    if (!fz_input_canary && fz_contains(p, len, "-CANARY-")) {
        fz_fail("a secret in %s: %.*s", where, (int) len, (char *) p);
    }
}


static uint32_t
fz_rand(void)
{
    uint32_t  x;

    x = fz_world.schedule;

    if (x == 0) {
        return 0;
    }

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    fz_world.schedule = x;

    return x;
}


/* requests */

fz_req_t *
fz_req(ngx_uint_t method, const char *path, ngx_astralform_key_role_e role,
    const char *user, const char *agent)
{
    u_char                *p, *last, *slash;
    fz_req_t              *req;
    ngx_pool_t            *pool;
    ngx_pool_cleanup_t    *cln;
    ngx_connection_t      *c;
    ngx_http_request_t    *r;
    ngx_astralform_ctx_t  *ctx;

    if (fz_nreqs == FZ_MAX_REQS) {
        fz_fail("harness: too many requests");
    }

    req = &fz_reqs[fz_nreqs++];
    ngx_memzero(req, sizeof(fz_req_t));

    pool = ngx_create_pool(4096, &fz_log);
    r = calloc(1, sizeof(ngx_http_request_t));
    c = calloc(1, sizeof(ngx_connection_t));
    if (pool == NULL || r == NULL || c == NULL) {
        fz_fail("out of memory");
    }

    c->log = &fz_log;
    c->data = req;
    c->pool = pool;

    r->pool = pool;
    r->connection = c;
    r->main = r;
    r->count = 1;
    r->method = method;

    /* what ngx_astralform_header() reads, what the answers add to */
    if (ngx_list_init(&r->headers_in.headers, pool, 4,
                      sizeof(ngx_table_elt_t)) != NGX_OK
        || ngx_list_init(&r->headers_out.headers, pool, 4,
                         sizeof(ngx_table_elt_t)) != NGX_OK)
    {
        fz_fail("out of memory");
    }

    switch (method) {
    case NGX_HTTP_GET:
        ngx_str_set(&r->method_name, "GET");
        break;
    case NGX_HTTP_POST:
        ngx_str_set(&r->method_name, "POST");
        break;
    case NGX_HTTP_PUT:
        ngx_str_set(&r->method_name, "PUT");
        break;
    case NGX_HTTP_PATCH:
        ngx_str_set(&r->method_name, "PATCH");
        break;
    default:
        ngx_str_set(&r->method_name, "DELETE");
    }

    req->r = r;
    req->body_read = (method & (NGX_HTTP_POST|NGX_HTTP_PUT|NGX_HTTP_PATCH))
                     ? 1 : 0;

    ctx = ngx_pcalloc(pool, sizeof(ngx_astralform_ctx_t));
    req->ctx = ctx;

    ctx->request = r;
    ctx->amcf = fz_world.amcf;
    ctx->project = fz_world.project;
    ctx->role = role;

    if (user != NULL) {
        ctx->user.data = (u_char *) user;
        ctx->user.len = strlen(user);
    }

    if (agent != NULL) {
        ctx->agent.data = (u_char *) agent;
        ctx->agent.len = strlen(agent);
    }

    ngx_str_set(&ctx->seg[0], "v1");
    ngx_str_set(&ctx->seg[1], "projects");
    ctx->seg[2] = fz_world.project->id;
    ctx->nseg = 3;

    p = ngx_pnalloc(pool, strlen(path));
    last = ngx_cpymem(p, path, strlen(path));

    /* as ngx_astralform_split(): empty segments do not count */
    while (p < last && ctx->nseg < NGX_ASTRALFORM_MAX_SEGMENTS) {
        if (*p == '/') {
            p++;
            continue;
        }

        slash = memchr(p, '/', last - p);
        ctx->seg[ctx->nseg].data = p;
        ctx->seg[ctx->nseg].len = (slash ? slash : last) - p;
        ctx->nseg++;
        p = slash ? slash + 1 : last;
    }

    /* as ngx_astralform_api_handler(): jansson memory goes with r */
    cln = ngx_pool_cleanup_add(pool, 0);
    cln->handler = fz_ctx_cleanup;
    cln->data = ctx;

    return req;
}


static void
fz_ctx_cleanup(void *data)
{
    ngx_astralform_ctx_t  *ctx = data;

    json_decref(ctx->body);
    json_decref(ctx->result);
}


void
fz_dispatch(fz_req_t *req, fz_handler_pt handler)
{
    ngx_int_t  rc;

    req->in_handler = 1;

    rc = handler(req->ctx);

    /* as ngx_astralform_dispatch() */
    if (rc != NGX_DONE) {
        ngx_astralform_finish(req->ctx, rc);
    }

    req->in_handler = 0;

    /* a GET handler runs inside the content handler: freed on return */
    if (req->finished && !req->freed) {
        fz_req_free(req);
    }
}


void
fz_req_abort(fz_req_t *req)
{
    if (!req->finished && !req->freed) {
        fz_req_free(req);
    }
}


static void
fz_req_free(fz_req_t *req)
{
    ngx_http_request_t  *r;

    r = req->r;
    req->freed = 1;

    ngx_destroy_pool(r->pool);
    free(r->connection);
    free(r);

    req->r = NULL;
    req->ctx = NULL;
}


/*
 * nginx's HTTP core, as the module's answers (ngx_astralform_answer.c)
 * reach it: the header, the body (one JSON object), the finalization.
 * The oracles sit here, under the module's real answer functions.
 */

ngx_int_t
ngx_http_discard_request_body(ngx_http_request_t *r)
{
    return NGX_OK;
}


ngx_int_t
ngx_http_send_header(ngx_http_request_t *r)
{
    fz_req_t  *req;

    req = r->connection->data;

    if (req->finished) {
        fz_fail("an answer after the request was finalized");
    }

    if (r->header_sent) {
        fz_fail("a second answer for one request: %u after %u",
                (unsigned) r->headers_out.status, (unsigned) req->status);
    }

    r->header_sent = 1;
    req->status = r->headers_out.status;

    return NGX_OK;
}


ngx_int_t
ngx_http_output_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    char         *text;
    size_t        len;
    json_t       *json, *err, *msg;
    fz_req_t     *req;
    ngx_chain_t  *cl;

    req = r->connection->data;

    if (!r->header_sent || req->answer != NULL) {
        fz_fail("an answer body without its header, or a second one");
    }

    len = 0;
    for (cl = in; cl; cl = cl->next) {
        len += cl->buf->last - cl->buf->pos;
    }

    text = malloc(len + 1);
    if (text == NULL) {
        fz_fail("out of memory");
    }

    len = 0;
    for (cl = in; cl; cl = cl->next) {
        memcpy(text + len, cl->buf->pos, cl->buf->last - cl->buf->pos);
        len += cl->buf->last - cl->buf->pos;
    }

    if (len == 0 || text[len - 1] != '\n') {
        fz_fail("an answer that does not end with a newline");
    }

    text[--len] = '\0';
    req->answer = text;

    fz_check_secret("an answer", text, len);

    if (fz_verbose) {
        fprintf(stderr, "answer %u: %s\n", (unsigned) req->status, text);
    }

    /* a provider's raw bytes spliced in must leave one JSON object
     * ("\u0000" is JSON: an answer may quote such bytes) */
    json = json_loadb(text, len, JSON_ALLOW_NUL, NULL);
    if (!json_is_object(json)) {
        fz_fail("an answer that is not one JSON object: %.*s",
                (int) ngx_min(len, 300), text);
    }

    if (req->status >= 400) {
        err = json_object_get(json, "error");
        msg = json_object_get(json, "message");

        if ((!json_is_string(err) || !json_is_string(msg))
            && !fz_known("error-shape"))
        {
            fz_fail("an error answer (%u) without \"error\" and "
                    "\"message\"", (unsigned) req->status);
        }
    }

    json_decref(json);

    return NGX_OK;
}


void
ngx_http_finalize_request(ngx_http_request_t *r, ngx_int_t rc)
{
    fz_req_t  *req;

    req = r->connection->data;

    if (req->finished) {
        fz_fail("a request finalized twice (rc %ld, then %ld)",
                (long) req->rc, (long) rc);
    }

    if (rc == NGX_DONE) {
        fz_fail("a request finalized with NGX_DONE");
    }

    if (req->answer == NULL && rc == NGX_OK) {
        fz_fail("a request finalized without an answer");
    }

    if (fz_verbose && req->answer == NULL) {
        fprintf(stderr, "finalized %ld without a JSON answer\n", (long) rc);
    }

    /* "Errors are always JSON": only running out of memory may skip it */
    if (req->answer == NULL && !fz_known("json-500")) {
        fz_fail("a request finalized with %ld and no JSON answer",
                (long) rc);
    }

    req->finished = 1;
    req->rc = rc;

    /*
     * nginx frees the request once the answer is out, unless the content
     * handler is still on the stack (the GET case)
     */

    if (!req->in_handler || req->body_read) {
        fz_req_free(req);
    }
}


/* the event loop */

static void
fz_unbind(void *data)
{
    fz_bind_t  *bind = data;

    if (bind->ev != NULL) {
        bind->ev->cancelled = 1;
        bind->ev->bind = NULL;
        bind->ev = NULL;
    }
}


static fz_event_t *
fz_event(fz_ev_kind_e kind, fz_bind_t *bind)
{
    fz_event_t  *ev, **last;

    ev = calloc(1, sizeof(fz_event_t));
    if (ev == NULL) {
        fz_fail("out of memory");
    }

    ev->kind = kind;
    ev->bind = bind;
    bind->ev = ev;

    for (last = &fz_head; *last; last = &(*last)->next) { /* void */ }
    *last = ev;

    return ev;
}


static fz_event_t *
fz_call(ngx_pool_t *pool, fz_call_pt call)
{
    fz_bind_t           *bind;
    fz_event_t          *ev;
    ngx_pool_cleanup_t  *cln;

    bind = ngx_pcalloc(pool, sizeof(fz_bind_t));
    cln = ngx_pool_cleanup_add(pool, 0);
    if (bind == NULL || cln == NULL) {
        fz_fail("out of memory");
    }

    cln->handler = fz_unbind;
    cln->data = bind;

    ev = fz_event(FZ_EV_CALL, bind);
    ev->call = call;

    return ev;
}


void
fz_run(ngx_uint_t abort_after, fz_req_t *abort_req)
{
    ngx_uint_t    n, k, i;
    fz_event_t   *ev, **prev, *cand[FZ_MAX_EVENTS];
    fz_event_t  **link[FZ_MAX_EVENTS];
    ngx_uint_t    seen_redis;

    while (fz_head != NULL) {

        if (abort_after && fz_world.events == abort_after
            && abort_req != NULL)
        {
            fz_req_abort(abort_req);
        }

        /* Redis answers in order; the rest in any order */

        n = 0;
        seen_redis = 0;

        for (prev = &fz_head; *prev && n < FZ_MAX_EVENTS;
             prev = &(*prev)->next)
        {
            if ((*prev)->kind == FZ_EV_REDIS && !(*prev)->cancelled) {
                if (seen_redis) {
                    continue;
                }
                seen_redis = 1;
            }

            cand[n] = *prev;
            link[n] = prev;
            n++;
        }

        k = n > 1 ? fz_rand() % n : 0;
        ev = cand[k];
        *link[k] = ev->next;

        if (!ev->cancelled) {
            if (++fz_world.events > FZ_MAX_EVENTS) {
                fz_fail("more than %d outbound operations for one input",
                        FZ_MAX_EVENTS);
            }

            if (ev->bind != NULL) {
                ev->bind->ev = NULL;
                ev->bind = NULL;
            }

            switch (ev->kind) {
            case FZ_EV_REDIS:
                fz_redis_run(ev);
                break;
            case FZ_EV_HTTP:
                fz_http_run(ev);
                break;
            default:
                ev->call(ev);
            }
        }

        for (i = 0; i < ev->argc; i++) {
            free(ev->argv[i].data);
        }
        free(ev->argv);
        free(ev);
    }
}


/* Redis */

ngx_astralform_redis_op_t *
ngx_astralform_redis_send(ngx_pool_t *pool, ngx_log_t *log,
    ngx_astralform_redis_pt handler, void *data, ngx_uint_t argc,
    ngx_str_t *argv)
{
    ngx_uint_t                  i;
    fz_event_t                 *ev;
    ngx_pool_cleanup_t         *cln;
    ngx_astralform_redis_op_t  *op;

    if (fz_world.redis_down) {
        return NULL;
    }

    if (pool == NULL) {
        /* fire and forget: no reply is ever delivered, the bytes checked */
        for (i = 0; i < argc; i++) {
            fz_check_secret("a Redis command", argv[i].data, argv[i].len);
        }

        return (ngx_astralform_redis_op_t *) &fz_world;
    }

    op = ngx_pcalloc(pool, sizeof(ngx_astralform_redis_op_t));
    cln = ngx_pool_cleanup_add(pool, 0);
    if (op == NULL || cln == NULL) {
        return NULL;
    }

    cln->handler = fz_unbind;
    cln->data = &op->bind;

    ev = fz_event(FZ_EV_REDIS, &op->bind);
    ev->handler = handler;
    ev->data = data;
    ev->argc = argc;
    ev->argv = calloc(argc, sizeof(ngx_str_t));

    for (i = 0; i < argc; i++) {
        /* redisAsyncCommandArgv() copies: so must we */
        ev->argv[i].data = malloc(argv[i].len + 1);
        if (argv[i].len) {
            ngx_memcpy(ev->argv[i].data, argv[i].data, argv[i].len);
        }
        ev->argv[i].data[argv[i].len] = '\0';
        ev->argv[i].len = argv[i].len;

        fz_check_secret("a Redis command", argv[i].data, argv[i].len);
    }

    fz_world.redis_sent++;

    return op;
}


/* the configuration cache is the connection layer's: here every read goes */
ngx_int_t
ngx_astralform_redis_cached(ngx_pool_t *pool, ngx_log_t *log,
    ngx_astralform_redis_pt handler, void *data, ngx_uint_t argc,
    ngx_str_t *argv)
{
    return ngx_astralform_redis_send(pool, log, handler, data, argc, argv)
           ? NGX_AGAIN : NGX_ERROR;
}


static void
fz_redis_run(fz_event_t *ev)
{
    redisReply  *reply;

    reply = fz_world.redis ? fz_world.redis(ev->argc, ev->argv)
                           : fz_redis_default(ev->argc, ev->argv);

    ev->handler(reply, ev->data);

    /* hiredis frees the reply once the callback returns */
    if (reply != NULL) {
        freeReplyObject(reply);
    }
}


redisReply *
fz_reply(const char *resp, size_t len)
{
    void         *reply;
    redisReader  *reader;

    reader = redisReaderCreate();
    if (reader == NULL) {
        fz_fail("out of memory");
    }

    reply = NULL;

    if (redisReaderFeed(reader, resp, len) != REDIS_OK
        || redisReaderGetReply(reader, &reply) != REDIS_OK)
    {
        reply = NULL;
    }

    redisReaderFree(reader);

    return reply;
}


static ngx_uint_t
fz_kind_is(ngx_str_t *key, const char *kind)
{
    u_char  *p;
    size_t   len;

    p = (u_char *) memmem(key->data, key->len, "}:", 2);
    if (p == NULL) {
        return 0;
    }

    p += 2;
    len = strlen(kind);

    return (size_t) (key->data + key->len - p) >= len
           && ngx_strncmp(p, kind, len) == 0
           && (p + len == key->data + key->len || p[len] == ':');
}


static redisReply *
fz_redis_default(ngx_uint_t argc, ngx_str_t *argv)
{
    char         *resp, *p;
    size_t        size, n;
    json_t       *v;
    ngx_str_t    *cmd, *key, conn, blob, plain;
    const char   *id;
    redisReply   *reply;

    cmd = &argv[0];
    key = argc > 1 ? &argv[1] : NULL;

#define fz_is(s, lit)                                                        \
    ((s)->len == sizeof(lit) - 1 && ngx_strncmp((s)->data, lit,             \
                                                sizeof(lit) - 1) == 0)

    if (fz_is(cmd, "HGETALL") && key && fz_kind_is(key, "connectors")) {
        size = 64;
        json_object_foreach(fz_world.redis_connectors, id, v) {
            size += strlen(id) + 64 + (json_is_string(v)
                                       ? json_string_length(v) : 4096);
        }

        resp = malloc(size);
        p = resp + sprintf(resp, "*%zu\r\n",
                           2 * json_object_size(fz_world.redis_connectors));

        json_object_foreach(fz_world.redis_connectors, id, v) {
            n = json_string_length(v);
            p += sprintf(p, "$%zu\r\n%s\r\n$%zu\r\n", strlen(id), id, n);
            memcpy(p, json_string_value(v), n);
            p += n;
            p += sprintf(p, "\r\n");
        }

        reply = fz_reply(resp, p - resp);
        free(resp);
        return reply;
    }

    if (fz_is(cmd, "HGETALL")) {
        return fz_reply("*0\r\n", 4);
    }

    if (fz_is(cmd, "HGET") && key && fz_kind_is(key, "agents")) {
        if (fz_world.assignment.data == NULL) {
            return fz_reply("$-1\r\n", 5);
        }

        resp = malloc(fz_world.assignment.len + 32);
        n = sprintf(resp, "$%zu\r\n", fz_world.assignment.len);
        memcpy(resp + n, fz_world.assignment.data, fz_world.assignment.len);
        n += fz_world.assignment.len;
        n += sprintf(resp + n, "\r\n");
        reply = fz_reply(resp, n);
        free(resp);
        return reply;
    }

    if (fz_is(cmd, "HGET") && key && fz_kind_is(key, "tokens") && argc > 2) {

        if (fz_world.token_mode == FZ_TOKEN_NONE) {
            return fz_reply("$-1\r\n", 5);
        }

        if (fz_world.token_mode == FZ_TOKEN_RAW) {
            blob = fz_world.token_raw;

        } else {
            p = (char *) memmem(key->data, key->len, "}:tokens:", 9);
            conn.data = (u_char *) p + 9;
            conn.len = key->data + key->len - conn.data;

            fz_subst(&fz_world.token_plain, &conn, &plain);

            if (fz_seal_token(fz_pool, &conn, &argv[2], &plain, &blob)
                != NGX_OK)
            {
                fz_fail("cannot seal a token record");
            }
        }

        resp = malloc(blob.len + 32);
        n = sprintf(resp, "$%zu\r\n", blob.len);
        memcpy(resp + n, blob.data, blob.len);
        n += blob.len;
        n += sprintf(resp + n, "\r\n");
        reply = fz_reply(resp, n);
        free(resp);
        return reply;
    }

    if (fz_is(cmd, "HGET") || fz_is(cmd, "GET")) {
        return fz_reply("$-1\r\n", 5);
    }

    if (fz_is(cmd, "EVAL") && argc > 1
        && fz_contains(argv[1].data, argv[1].len, "HGETALL"))
    {
        /* disabling: {removed, tokens} */
        static const char  disabled[] =
            "*2\r\n:1\r\n*2\r\n$2\r\nu1\r\n$8\r\nv1.k1.xx\r\n";

        return fz_reply(disabled, sizeof(disabled) - 1);
    }

    return fz_reply(":1\r\n", 4);

#undef fz_is
}


/* in, with every "$C" replaced by value, in fz_pool */
static void
fz_subst(ngx_str_t *in, ngx_str_t *value, ngx_str_t *out)
{
    u_char  *p, *last, *d;
    size_t   n;

    n = in->len;
    last = in->data + in->len;

    for (p = in->data; p + 1 < last; p++) {
        if (p[0] == '$' && p[1] == 'C') {
            n += value->len;
        }
    }

    d = ngx_pnalloc(fz_pool, n + 1);
    out->data = d;

    for (p = in->data; p < last; /* void */) {
        if (p + 1 < last && p[0] == '$' && p[1] == 'C') {
            d = ngx_cpymem(d, value->data, value->len);
            p += 2;
        } else {
            *d++ = *p++;
        }
    }

    out->len = d - out->data;
}


ngx_int_t
fz_seal_token(ngx_pool_t *pool, ngx_str_t *connector, ngx_str_t *user,
    ngx_str_t *plain, ngx_str_t *blob)
{
    ngx_str_t  aad;

    if (ngx_astralform_aad(pool, &aad, &fz_world.project->id, connector,
                           "token", user) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_astralform_seal(pool, &fz_world.amcf->keys, &aad, plain,
                               blob);
}


/* outbound HTTP */

ngx_astralform_http_req_t *
ngx_astralform_http_create(ngx_pool_t *pool, ngx_log_t *log)
{
    fz_bind_t                  *bind;
    ngx_pool_cleanup_t         *cln;
    ngx_astralform_http_req_t  *hr;

    hr = ngx_pcalloc(pool, sizeof(ngx_astralform_http_req_t));
    bind = ngx_pcalloc(pool, sizeof(fz_bind_t));
    if (hr == NULL || bind == NULL) {
        return NULL;
    }

    if (ngx_array_init(&hr->headers, pool, 8, sizeof(ngx_str_t)) != NGX_OK
        || ngx_array_init(&hr->resp_headers, pool, 16,
                          sizeof(ngx_table_elt_t))
           != NGX_OK)
    {
        return NULL;
    }

    /* the pool going first cancels the transfer */
    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = fz_unbind;
    cln->data = bind;

    ngx_str_set(&hr->method, "GET");
    hr->pool = pool;
    hr->log = log;
    hr->easy = bind;

    return hr;
}


static ngx_int_t
fz_header_valid(u_char *p, size_t len)
{
    size_t  i;

    for (i = 0; i < len; i++) {
        if (p[i] == CR || p[i] == LF || p[i] == '\0') {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_astralform_http_add_header(ngx_astralform_http_req_t *hr,
    ngx_str_t *name, ngx_str_t *value)
{
    u_char     *p;
    ngx_str_t  *h;

    if (name->len == 0 || memchr(name->data, ':', name->len) != NULL
        || fz_header_valid(name->data, name->len) != NGX_OK
        || fz_header_valid(value->data, value->len) != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(hr->pool, name->len + 2 + value->len);
    h = ngx_array_push(&hr->headers);
    if (p == NULL || h == NULL) {
        return NGX_ERROR;
    }

    h->data = p;
    p = ngx_cpymem(p, name->data, name->len);

    if (value->len == 0) {
        *p++ = ';';

    } else {
        *p++ = ':';
        *p++ = ' ';
        p = ngx_cpymem(p, value->data, value->len);
    }

    h->len = p - h->data;

    return NGX_OK;
}


ngx_int_t
ngx_astralform_http_start(ngx_astralform_http_req_t *hr)
{
    fz_event_t  *ev;

    if (hr->running || hr->done == NULL) {
        fz_fail("an outbound request started twice or without done() "
                "(running %d, done %p)", (int) hr->running, hr->done);
    }

    if (hr->url.len == 0) {
        /* as the real one: an alert, and no transfer */
        ngx_log_error(NGX_LOG_ALERT, hr->log, 0,
                      "astralform: outbound request cannot start");
        return NGX_ERROR;
    }

    fz_http_check(hr);
    fz_http_host(hr);

    hr->error = NGX_ASTRALFORM_HTTP_OK;
    hr->status = 0;
    hr->resp_headers.nelts = 0;
    ngx_str_set(&hr->resp_body, "");

    ev = fz_event(FZ_EV_HTTP, hr->easy);
    ev->hr = hr;
    hr->running = 1;

    fz_world.http_started++;

    return NGX_OK;
}


void
ngx_astralform_http_cancel(ngx_astralform_http_req_t *hr)
{
    fz_unbind(hr->easy);
    hr->running = 0;
}


ngx_str_t *
ngx_astralform_http_resp_header(ngx_astralform_http_req_t *hr,
    const char *name)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_table_elt_t  *h;

    len = strlen(name);
    h = hr->resp_headers.elts;

    for (i = 0; i < hr->resp_headers.nelts; i++) {
        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i].value;
        }
    }

    return NULL;
}


/* host[:port] for the logs, as the real one sets it */
static void
fz_http_host(ngx_astralform_http_req_t *hr)
{
    u_char  *p, *start, *last;

    start = hr->url.data;
    last = start + hr->url.len;

    p = (u_char *) memmem(start, last - start, "://", 3);
    if (p != NULL) {
        start = p + 3;
    }

    for (p = start; p < last && *p != '/' && *p != '?' && *p != '#'; p++) {
        /* void */
    }

    last = p;

    for (p = last; p > start; p--) {
        if (p[-1] == '@') {
            start = p;
            break;
        }
    }

    if (start == last) {
        ngx_str_set(&hr->host, "-");
        return;
    }

    hr->host.data = start;
    hr->host.len = last - start;
}


/* the request as it would leave: headers clean, credentials at home */
static void
fz_http_check(ngx_astralform_http_req_t *hr)
{
    u_char                *p, *end, *q;
    size_t                 i;
    ngx_str_t             *h, slug, *base[3];
    ngx_uint_t             k, ok;
    ngx_astralform_def_t  *def;

    if (fz_verbose) {
        fprintf(stderr, "http: %.*s %.*s\n", (int) hr->method.len,
                hr->method.data, (int) hr->url.len, hr->url.data);
    }

    if (!fz_world.check_hosts) {
        /* the URL came from the store (fuzz_redis): only headers count */
        goto headers;
    }

    if (!(hr->url.len > 7
          && (ngx_strncasecmp(hr->url.data, (u_char *) "https://", 8) == 0
              || ngx_strncasecmp(hr->url.data, (u_char *) "http://", 7)
                 == 0)))
    {
        fz_fail("an outbound URL that is not http(s): %.*s",
                (int) hr->url.len, hr->url.data);
    }

    for (i = 0; i < hr->url.len && !fz_known("url-bytes"); i++) {
        if (hr->url.data[i] <= ' ' || hr->url.data[i] == 0x7f) {
            fz_fail("an outbound URL with a space or control byte: %.*s",
                    (int) hr->url.len, hr->url.data);
        }
    }

headers:

    h = hr->headers.elts;

    for (i = 0; i < hr->headers.nelts; i++) {
        if (fz_header_valid(h[i].data, h[i].len) != NGX_OK) {
            fz_fail("an outbound header with CR, LF or NUL");
        }

        if (fz_verbose) {
            fprintf(stderr, "  %.*s\n", (int) h[i].len, h[i].data);
        }
    }

    if (!fz_world.check_hosts || fz_input_canary) {
        return;
    }

    /* a credential of connector X ("...-CANARY-X-...") only goes to X */

    for (k = 0; k < hr->headers.nelts + 2; k++) {
        if (k < hr->headers.nelts) {
            p = h[k].data;
            end = p + h[k].len;
        } else if (k == hr->headers.nelts) {
            p = hr->url.data;
            end = p + hr->url.len;
        } else {
            if (hr->body.len == 0) {
                break;
            }

            p = hr->body.data;
            end = p + hr->body.len;
        }

        while (p != NULL && p < end
               && (p = (u_char *) memmem(p, end - p, "-CANARY-", 8)) != NULL)
        {
            p += 8;

            for (q = p; q < end && (islower(*q) || isdigit(*q) || *q == '_');
                 q++)
            {
                /* void */
            }

            slug.data = p;
            slug.len = q - p;

            def = ngx_astralform_catalog_find(&fz_world.amcf->catalog,
                                              &slug);

            if (def == NULL && fz_world.extra_def != NULL
                && fz_world.extra_def->slug.len == slug.len
                && ngx_strncmp(fz_world.extra_def->slug.data, slug.data,
                               slug.len) == 0)
            {
                def = fz_world.extra_def;
            }

            if (def == NULL) {
                fz_fail("a credential of an unknown connector goes out");
            }

            base[0] = &def->api_base;
            base[1] = &def->token_url;
            base[2] = &def->revoke_url;
            ok = 0;

            for (i = 0; i < 3; i++) {
                if (base[i]->len && hr->url.len >= base[i]->len
                    && ngx_strncmp(hr->url.data, base[i]->data,
                                   base[i]->len) == 0)
                {
                    ok = 1;
                }
            }

            if (!ok) {
                fz_fail("a credential of \"%.*s\" goes to %.*s",
                        (int) slug.len, slug.data, (int) hr->url.len,
                        hr->url.data);
            }
        }
    }
}


/* "STATUS|timeout|connect|large|failed\nName: value\n...\n\nbody" */
static void
fz_http_run(fz_event_t *ev)
{
    u_char                     *p, *last, *lf, *colon, *b, *src;
    size_t                      n, idlen;
    json_t                     *sent;
    ngx_str_t                  *s, line;
    ngx_int_t                   status;
    json_int_t                  id;
    ngx_table_elt_t            *h;
    ngx_astralform_http_req_t  *hr;
    char                        idtext[32];

    hr = ev->hr;
    hr->running = 0;

    if (fz_world.answer != NULL) {
        s = fz_world.answer(hr);

    } else if (fz_world.next_answer < fz_world.nanswers) {
        s = &fz_world.answers[fz_world.next_answer++];

    } else {
        s = NULL;
    }

    if (s == NULL) {
        hr->error = NGX_ASTRALFORM_HTTP_FAILED;
        hr->done(hr);
        return;
    }

    p = s->data;
    last = p + s->len;

    lf = memchr(p, '\n', last - p);
    line.data = p;
    line.len = (lf ? lf : last) - p;
    p = lf ? lf + 1 : last;

    if (line.len && line.data[line.len - 1] == '\r') {
        line.len--;
    }

#define fz_word(lit)                                                         \
    (line.len == sizeof(lit) - 1 && ngx_strncmp(line.data, lit,              \
                                               sizeof(lit) - 1) == 0)

    if (fz_word("timeout")) {
        hr->error = NGX_ASTRALFORM_HTTP_TIMEOUT;
        hr->done(hr);
        return;
    }

    if (fz_word("connect")) {
        hr->error = NGX_ASTRALFORM_HTTP_CONNECT;
        hr->done(hr);
        return;
    }

    if (fz_word("large")) {
        hr->error = NGX_ASTRALFORM_HTTP_TOO_LARGE;
        hr->done(hr);
        return;
    }

    if (fz_word("failed")) {
        hr->error = NGX_ASTRALFORM_HTTP_FAILED;
        hr->done(hr);
        return;
    }

#undef fz_word

    status = ngx_atoi(line.data, line.len);
    hr->status = (status >= 100 && status <= 999) ? (ngx_uint_t) status : 200;

    /* headers, until an empty line */

    while (p < last) {
        lf = memchr(p, '\n', last - p);
        line.data = p;
        line.len = (lf ? lf : last) - p;
        p = lf ? lf + 1 : last;

        if (line.len && line.data[line.len - 1] == '\r') {
            line.len--;
        }

        if (line.len == 0) {
            break;
        }

        colon = memchr(line.data, ':', line.len);
        if (colon == NULL || colon == line.data) {
            continue;
        }

        h = ngx_array_push(&hr->resp_headers);
        if (h == NULL) {
            fz_fail("out of memory");
        }

        ngx_memzero(h, sizeof(ngx_table_elt_t));
        h->hash = 1;
        h->key.len = colon - line.data;
        h->key.data = ngx_pnalloc(hr->pool, h->key.len);
        ngx_memcpy(h->key.data, line.data, h->key.len);

        colon++;
        while (colon < line.data + line.len && *colon == ' ') {
            colon++;
        }

        h->value.len = line.data + line.len - colon;
        h->value.data = ngx_pnalloc(hr->pool, h->value.len);
        ngx_memcpy(h->value.data, colon, h->value.len);
    }

    /* the body, with the JSON-RPC id of the request for "$ID" */

    id = 0;
    sent = json_loadb((char *) hr->body.data, hr->body.len, 0, NULL);
    if (json_is_integer(json_object_get(sent, "id"))) {
        id = json_integer_value(json_object_get(sent, "id"));
    }
    json_decref(sent);

    idlen = snprintf(idtext, sizeof(idtext), "%lld", (long long) id);

    n = 0;
    for (src = p; src < last; n++) {
        if (last - src >= 3 && ngx_strncmp(src, "$ID", 3) == 0) {
            n += idlen - 1;
            src += 3;
        } else {
            src++;
        }
    }

    if (n == 0) {
        ngx_str_set(&hr->resp_body, "");

    } else {
        /* exact size, not NUL-terminated: as the real one */
        b = ngx_pnalloc(hr->pool, n);
        hr->resp_body.data = b;
        hr->resp_body.len = n;

        for (src = p; src < last; /* void */) {
            if (last - src >= 3 && ngx_strncmp(src, "$ID", 3) == 0) {
                b = ngx_cpymem(b, idtext, idlen);
                src += 3;
            } else {
                *b++ = *src++;
            }
        }
    }

    hr->done(hr);
}


/* a well-behaved MCP server and provider, by what was asked */
ngx_str_t *
fz_canned_answer(ngx_astralform_http_req_t *hr)
{
    static ngx_str_t  provider = ngx_string(
        "200\nContent-Type: application/json\n\n"
        "{\"ok\":true,\"channels\":[],\"results\":[]}");
    static ngx_str_t  initialize = ngx_string(
        "200\nContent-Type: application/json\nMcp-Session-Id: s-1\n\n"
        "{\"jsonrpc\":\"2.0\",\"id\":$ID,\"result\":"
        "{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{}}}");
    static ngx_str_t  accepted = ngx_string("202\n\n");
    static ngx_str_t  list = ngx_string(
        "200\nContent-Type: text/event-stream\n\n"
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":$ID,"
        "\"result\":{\"tools\":[{\"name\":\"search\","
        "\"description\":\"Search\",\"inputSchema\":{\"type\":"
        "\"object\"}}]}}\n\n");
    static ngx_str_t  call = ngx_string(
        "200\nContent-Type: text/event-stream\n\n"
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":$ID,"
        "\"result\":{\"content\":[{\"type\":\"text\","
        "\"text\":\"ok\"}]}}\n\n");

    if (!fz_contains(hr->url.data, hr->url.len, "mcp")) {
        return &provider;
    }

    if (fz_contains(hr->body.data, hr->body.len, "\"initialize\"")) {
        return &initialize;
    }

    if (fz_contains(hr->body.data, hr->body.len, "tools/list")) {
        return &list;
    }

    if (fz_contains(hr->body.data, hr->body.len, "tools/call")) {
        return &call;
    }

    return &accepted;
}


void
fz_answers(ngx_str_t *answers, ngx_uint_t n)
{
    fz_world.answers = answers;
    fz_world.nanswers = n;
    fz_world.next_answer = 0;
}


/* OAuth: what tools.c asks of ngx_astralform_oauth.c */

void
ngx_astralform_oauth_connect_url(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_str_t *return_url,
    ngx_astralform_url_pt handler)
{
    fz_event_t  *ev;

    ev = fz_call(ctx->request->pool, fz_connect_run);
    ev->ctx = ctx;
    ev->a = (void *) handler;
    ev->b = conn;
}


static void
fz_connect_run(fz_event_t *ev)
{
    ngx_str_t                    *url;
    ngx_astralform_url_pt         handler;
    ngx_astralform_connector_t   *conn;

    handler = (ngx_astralform_url_pt) ev->a;
    conn = ev->b;

    if (fz_world.connect_rc != NGX_OK) {
        handler(ev->ctx, NGX_ERROR, NULL);
        return;
    }

    url = ngx_palloc(ev->ctx->request->pool, sizeof(ngx_str_t));
    url->len = sizeof("https://gw.example.test/v1/connectors/oauth/"
                      "authorize?session=") - 1 + conn->id.len;
    url->data = ngx_pnalloc(ev->ctx->request->pool, url->len);
    ngx_sprintf(url->data, "https://gw.example.test/v1/connectors/oauth/"
                "authorize?session=%V", &conn->id);

    handler(ev->ctx, NGX_OK, url);
}


void
ngx_astralform_oauth_refresh(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_astralform_token_t *tok,
    ngx_astralform_token_pt handler)
{
    fz_event_t  *ev;

    if (tok == NULL) {
        fz_fail("a refresh without the record read");
    }

    ev = fz_call(ctx->request->pool, fz_refresh_run);
    ev->ctx = ctx;
    ev->a = (void *) handler;
    ev->b = conn;
    ev->c = tok;
}


static void
fz_refresh_run(fz_event_t *ev)
{
    ngx_pool_t                  *pool;
    ngx_astralform_token_t      *tok, *fresh;
    ngx_astralform_token_pt      handler;
    ngx_astralform_connector_t  *conn;

    handler = (ngx_astralform_token_pt) ev->a;
    conn = ev->b;
    tok = ev->c;
    pool = ev->ctx->request->pool;

    /* without a refresh token it fails for good (the record is deleted) */

    if (tok->refresh_token.len == 0) {
        handler(ev->ctx, NGX_DECLINED, NULL);
        return;
    }

    if (fz_world.refresh_rc != NGX_OK) {
        handler(ev->ctx, fz_world.refresh_rc, NULL);
        return;
    }

    fresh = ngx_pcalloc(pool, sizeof(ngx_astralform_token_t));
    *fresh = *tok;

    fresh->access_token.len = sizeof("AT-CANARY--2") - 1
                              + conn->def->slug.len;
    fresh->access_token.data = ngx_pnalloc(pool, fresh->access_token.len);
    ngx_sprintf(fresh->access_token.data, "AT-CANARY-%V-2",
                &conn->def->slug);
    fresh->expires_at = ngx_time() + 3600;
    fresh->obtained_at = ngx_time();

    handler(ev->ctx, NGX_OK, fresh);
}


/* the durable revocation queue: its script arguments, nothing drained */
ngx_int_t
ngx_astralform_spool_init(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_astralform_spool_t *spool)
{
    if (conn->def == NULL) {
        fz_fail("a spool without a catalog connector");
    }

    ngx_str_set(&spool->id, "fuzz-batch");
    ngx_str_set(&spool->tokens, "fuzz:{p}:revoke_tokens:fuzz-batch");
    ngx_str_set(&spool->batch, "fuzz:{p}:revoke_batch:fuzz-batch");
    ngx_str_set(&spool->batches, "fuzz:{p}:revoke_batches");
    ngx_str_set(&spool->counters, "fuzz:{p}:revocations");
    ngx_str_set(&spool->meta, "{}");
    ngx_str_set(&spool->revocable, "1");

    return NGX_OK;
}


void
ngx_astralform_revocations_kick(void)
{
}
