/*
 * The public endpoint: the content handler, the router, project key checks
 * and request bodies (the answers are ngx_astralform_answer.c's).
 *
 * Life cycle: the content handler takes one reference on the request
 * (directly, or through ngx_http_read_client_request_body) and returns
 * NGX_DONE; whatever a handler does, synchronously or after Redis and
 * provider callbacks, it ends with exactly one ngx_astralform_finish().
 */


#include "ngx_astralform.h"
#include "ngx_astralform_revocations.h"


typedef enum {
    NGX_ASTRALFORM_AUTH_NONE = 0,   /* public */
    NGX_ASTRALFORM_AUTH_ANY,        /* any project's key */
    NGX_ASTRALFORM_AUTH_PROJECT,    /* a key of the project in the path */
    NGX_ASTRALFORM_AUTH_FORM        /* public, a browser form's body */
} ngx_astralform_auth_e;


typedef ngx_int_t (*ngx_astralform_handler_pt)(ngx_astralform_ctx_t *ctx);


typedef struct {
    ngx_uint_t                   methods;
    const char                  *path[NGX_ASTRALFORM_MAX_SEGMENTS];
    ngx_astralform_auth_e        auth;
    ngx_astralform_handler_pt    handler;
} ngx_astralform_route_t;


typedef struct {
    ngx_uint_t                   method;
    ngx_astralform_handler_pt    handler;
    const char                 **fields;
} ngx_astralform_body_t;


/*
 * Request bodies: a member not listed is refused, naming it and the
 * listed ones (a typo must not silently drop a setting).  The same lists
 * are in docs/openapi.json (t/098-openapi.t checks them).
 */
static const char  *ngx_astralform_connector_body[] = {
    "connector_slug", "id", "oauth_client_id", "oauth_client_secret",
    "api_key", "mcp_url", "oauth_scopes", "require_auth",
    "allow_end_user_auth", NULL
};

static const char  *ngx_astralform_agent_body[] = { "connectors", NULL };
static const char  *ngx_astralform_call_body[] = { "name", "arguments", NULL };
static const char  *ngx_astralform_key_body[] = { "api_key", NULL };
static const char  *ngx_astralform_authorize_body[] = { "return_url", NULL };


static ngx_int_t ngx_astralform_split(ngx_http_request_t *r,
    ngx_astralform_ctx_t *ctx);
static ngx_astralform_route_t *ngx_astralform_route(
    ngx_astralform_ctx_t *ctx, ngx_uint_t *path_matched);
static ngx_int_t ngx_astralform_identity(ngx_astralform_ctx_t *ctx,
    const char *name, ngx_str_t *dst);
static ngx_int_t ngx_astralform_authenticate(ngx_astralform_ctx_t *ctx,
    ngx_astralform_route_t *route);
static void ngx_astralform_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_astralform_parse_body(ngx_astralform_ctx_t *ctx);
static void ngx_astralform_dispatch(ngx_astralform_ctx_t *ctx);
static ngx_int_t ngx_astralform_health_handler(ngx_astralform_ctx_t *ctx);
static void ngx_astralform_health_reply(redisReply *reply, void *data);
static json_t *ngx_astralform_health_json(const char *status,
    const char *redis);
static void ngx_astralform_ctx_cleanup(void *data);
static const char *ngx_astralform_unknown_field(json_t *body,
    const char **known);
static ngx_int_t ngx_astralform_unknown_field_error(
    ngx_astralform_ctx_t *ctx, const char *field, const char **known);


static ngx_astralform_route_t  ngx_astralform_routes[] = {

    { NGX_HTTP_GET|NGX_HTTP_HEAD, { "v1", "health", NULL },
      NGX_ASTRALFORM_AUTH_NONE, ngx_astralform_health_handler },

    { NGX_HTTP_GET|NGX_HTTP_HEAD, { "v1", "openapi.json", NULL },
      NGX_ASTRALFORM_AUTH_NONE, ngx_astralform_openapi_handler },

    { NGX_HTTP_GET, { "v1", "connectors", NULL },
      NGX_ASTRALFORM_AUTH_ANY, ngx_astralform_catalog_handler },

    { NGX_HTTP_GET, { "v1", "connectors", "oauth", "authorize", NULL },
      NGX_ASTRALFORM_AUTH_NONE, ngx_astralform_oauth_authorize_handler },

    { NGX_HTTP_GET, { "v1", "connectors", "oauth", "callback", NULL },
      NGX_ASTRALFORM_AUTH_NONE, ngx_astralform_oauth_callback_handler },

    { NGX_HTTP_GET|NGX_HTTP_POST,
      { "v1", "projects", "*", "connectors", NULL },
      NGX_ASTRALFORM_AUTH_PROJECT, ngx_astralform_connectors_handler },

    { NGX_HTTP_GET|NGX_HTTP_PATCH|NGX_HTTP_DELETE,
      { "v1", "projects", "*", "connectors", "*", NULL },
      NGX_ASTRALFORM_AUTH_PROJECT, ngx_astralform_connectors_handler },

    { NGX_HTTP_GET|NGX_HTTP_PUT,
      { "v1", "projects", "*", "agents", "*", "connectors", NULL },
      NGX_ASTRALFORM_AUTH_PROJECT, ngx_astralform_agents_handler },

    { NGX_HTTP_GET, { "v1", "projects", "*", "tools", NULL },
      NGX_ASTRALFORM_AUTH_PROJECT, ngx_astralform_tools_list_handler },

    { NGX_HTTP_POST, { "v1", "projects", "*", "tools", "call", NULL },
      NGX_ASTRALFORM_AUTH_PROJECT, ngx_astralform_tools_call_handler },

    { NGX_HTTP_GET,
      { "v1", "projects", "*", "users", "*", "connections", NULL },
      NGX_ASTRALFORM_AUTH_PROJECT, ngx_astralform_connections_handler },

    { NGX_HTTP_PUT|NGX_HTTP_DELETE,
      { "v1", "projects", "*", "users", "*", "connections", "*", NULL },
      NGX_ASTRALFORM_AUTH_PROJECT, ngx_astralform_connections_handler },

    { NGX_HTTP_POST,
      { "v1", "projects", "*", "users", "*", "connections", "*",
        "authorize", NULL },
      NGX_ASTRALFORM_AUTH_PROJECT, ngx_astralform_connections_handler },

    { NGX_HTTP_GET,
      { "v1", "projects", "*", "connectors", "*", "revocations", NULL },
      NGX_ASTRALFORM_AUTH_PROJECT, ngx_astralform_revocations_handler },

    { NGX_HTTP_GET, { "v1", "projects", "*", "agents", NULL },
      NGX_ASTRALFORM_AUTH_PROJECT, ngx_astralform_agents_list_handler },

    { NGX_HTTP_GET, { "v1", "projects", "*", "diagnose", NULL },
      NGX_ASTRALFORM_AUTH_PROJECT, ngx_astralform_diagnose_handler },

    { NGX_HTTP_POST, { "v1", "connectors", "oauth", "authorize", NULL },
      NGX_ASTRALFORM_AUTH_FORM, ngx_astralform_oauth_authorize_handler },

    { NGX_HTTP_GET|NGX_HTTP_POST|NGX_HTTP_DELETE,
      { "v1", "projects", "*", "mcp", NULL },
      NGX_ASTRALFORM_AUTH_PROJECT, ngx_astralform_mcp_agent_handler },

    { NGX_HTTP_GET|NGX_HTTP_POST|NGX_HTTP_DELETE, { "v1", "mcp", NULL },
      NGX_ASTRALFORM_AUTH_ANY, ngx_astralform_mcp_admin_handler },

    { 0, { NULL }, 0, NULL }
};


/* which body a row's method takes (rows not listed: any JSON object) */
static ngx_astralform_body_t  ngx_astralform_bodies[] = {
    { NGX_HTTP_POST, ngx_astralform_connectors_handler,
      ngx_astralform_connector_body },
    { NGX_HTTP_PATCH, ngx_astralform_connectors_handler,
      ngx_astralform_connector_body },
    { NGX_HTTP_PUT, ngx_astralform_agents_handler,
      ngx_astralform_agent_body },
    { NGX_HTTP_POST, ngx_astralform_tools_call_handler,
      ngx_astralform_call_body },
    { NGX_HTTP_PUT, ngx_astralform_connections_handler,
      ngx_astralform_key_body },
    { NGX_HTTP_POST, ngx_astralform_connections_handler,
      ngx_astralform_authorize_body },
    { 0, NULL, NULL }
};


ngx_int_t
ngx_astralform_api_handler(ngx_http_request_t *r)
{
    ngx_int_t                rc;
    ngx_uint_t               matched;
    ngx_pool_cleanup_t      *cln;
    ngx_astralform_ctx_t    *ctx;
    ngx_astralform_route_t  *route;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_astralform_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->amcf = ngx_http_get_module_main_conf(r, ngx_astralform_module);
    ngx_http_set_ctx(r, ctx, ngx_astralform_module);

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    cln->handler = ngx_astralform_ctx_cleanup;
    cln->data = ctx;

    /* every path below answers through ngx_astralform_finish() */
    r->main->count++;

    route = NULL;
    matched = 0;

    /* a path of too many segments is no endpoint: route stays NULL */
    if (ngx_astralform_split(r, ctx) == NGX_OK) {
        route = ngx_astralform_route(ctx, &matched);
    }

    /* the callback reads its code first, then blanks it itself */
    if (route == NULL
        || route->handler != ngx_astralform_oauth_callback_handler)
    {
        ngx_astralform_redact_code(r);
    }

    if (route == NULL) {
        if (matched) {
            rc = ngx_astralform_send_error(ctx, NGX_HTTP_NOT_ALLOWED,
                                           "method_not_allowed",
                                           "method %V is not allowed here",
                                           &r->method_name);
        } else {
            rc = ngx_astralform_send_error(ctx, NGX_HTTP_NOT_FOUND,
                                           "not_found", "no such endpoint");
        }
        goto done;
    }

    if (ngx_astralform_identity(ctx, "X-Astralform-User", &ctx->user)
        != NGX_OK
        || ngx_astralform_identity(ctx, "X-Astralform-Agent", &ctx->agent)
           != NGX_OK)
    {
        rc = ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST,
                                       "invalid_header",
                                       "X-Astralform-User and "
                                       "X-Astralform-Agent must be 1 to %d "
                                       "letters, digits or \"._:@-\"",
                                       NGX_ASTRALFORM_MAX_IDENTITY);
        goto done;
    }

    switch (ngx_astralform_authenticate(ctx, route)) {

    case NGX_OK:
        break;

    case NGX_HTTP_NOT_FOUND:
        rc = ngx_astralform_send_error(ctx, NGX_HTTP_NOT_FOUND,
                                       "project_not_found",
                                       "no such project");
        goto done;

    default:
        rc = ngx_astralform_send_error(ctx, NGX_HTTP_UNAUTHORIZED,
                                       "invalid_api_key",
                                       "send a valid project key as "
                                       "\"Authorization: Bearer KEY\"");
        goto done;
    }

    /* the header's form was checked above: only a mismatch is left */
    if (ngx_astralform_request_agent(ctx) != NGX_OK) {
        rc = ngx_astralform_send_error(ctx, NGX_HTTP_FORBIDDEN,
                                       "agent_mismatch",
                                       "this key belongs to agent \"%V\": "
                                       "send X-Astralform-Agent: %V or no "
                                       "X-Astralform-Agent at all",
                                       &ctx->key_agent, &ctx->key_agent);
        goto done;
    }

    ctx->data = route;
    ctx->form = (route->auth == NGX_ASTRALFORM_AUTH_FORM);

    /* JSON-RPC: the MCP transport answers a bad body in its own terms */
    ctx->any_body = route->handler == ngx_astralform_mcp_agent_handler
                    || route->handler == ngx_astralform_mcp_admin_handler;

    if (!(r->method & (NGX_HTTP_POST|NGX_HTTP_PUT|NGX_HTTP_PATCH))) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            ngx_astralform_finish(ctx, rc);
            return NGX_DONE;
        }

        ngx_astralform_dispatch(ctx);
        return NGX_DONE;
    }

    if (r->headers_in.content_length_n > (off_t) ctx->amcf->max_body_size) {
        rc = ngx_astralform_body_too_large(ctx);
        goto done;
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_astralform_body_handler);

    /* the body read holds its own reference; give ours back */
    r->main->count--;

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;

done:

    ngx_astralform_finish(ctx, rc);
    return NGX_DONE;
}


static ngx_int_t
ngx_astralform_split(ngx_http_request_t *r, ngx_astralform_ctx_t *ctx)
{
    u_char  *p, *last, *slash;

    p = r->uri.data;
    last = r->uri.data + r->uri.len;

    while (p < last) {
        if (*p == '/') {
            p++;
            continue;
        }

        if (ctx->nseg == NGX_ASTRALFORM_MAX_SEGMENTS) {
            return NGX_ERROR;
        }

        slash = ngx_strlchr(p, last, '/');
        if (slash == NULL) {
            slash = last;
        }

        ctx->seg[ctx->nseg].data = p;
        ctx->seg[ctx->nseg].len = slash - p;
        ctx->nseg++;

        p = slash;
    }

    return NGX_OK;
}


static ngx_astralform_route_t *
ngx_astralform_route(ngx_astralform_ctx_t *ctx, ngx_uint_t *path_matched)
{
    size_t                   len;
    ngx_uint_t               i, n;
    const char              *pat;
    ngx_astralform_route_t  *route;

    *path_matched = 0;

    for (route = ngx_astralform_routes; route->handler; route++) {

        for (i = 0; route->path[i] != NULL; i++) {
            if (i == ctx->nseg) {
                break;
            }

            pat = route->path[i];
            if (pat[0] == '*' && pat[1] == '\0') {
                continue;
            }

            len = ngx_strlen(pat);
            if (ctx->seg[i].len != len
                || ngx_strncmp(ctx->seg[i].data, pat, len) != 0)
            {
                break;
            }
        }

        n = i;

        if (route->path[n] != NULL || n != ctx->nseg) {
            continue;
        }

        *path_matched = 1;

        if (route->methods & ctx->request->method) {
            return route;
        }
    }

    return NULL;
}


static ngx_int_t
ngx_astralform_identity(ngx_astralform_ctx_t *ctx, const char *name,
    ngx_str_t *dst)
{
    ngx_str_t   hname, *value;

    hname.data = (u_char *) name;
    hname.len = ngx_strlen(name);

    value = ngx_astralform_header(ctx->request, &hname);
    if (value == NULL) {
        return NGX_OK;
    }

    if (!ngx_astralform_valid_identity(value)) {
        return NGX_ERROR;
    }

    *dst = *value;

    return NGX_OK;
}


/*
 * A valid key of another project gets 404: other projects do not exist.
 * Returns NGX_OK, NGX_HTTP_UNAUTHORIZED or NGX_HTTP_NOT_FOUND.
 */
static ngx_int_t
ngx_astralform_authenticate(ngx_astralform_ctx_t *ctx,
    ngx_astralform_route_t *route)
{
    ngx_str_t           *auth, bearer, *pid;
    ngx_http_request_t  *r;

    if (route->auth == NGX_ASTRALFORM_AUTH_NONE
        || route->auth == NGX_ASTRALFORM_AUTH_FORM)
    {
        return NGX_OK;
    }

    r = ctx->request;
    auth = r->headers_in.authorization ? &r->headers_in.authorization->value
                                       : NULL;

    if (auth == NULL || auth->len <= 7
        || ngx_strncasecmp(auth->data, (u_char *) "Bearer ", 7) != 0)
    {
        return NGX_HTTP_UNAUTHORIZED;
    }

    bearer.data = auth->data + 7;
    bearer.len = auth->len - 7;

    if (ngx_astralform_key_owner(ctx, &bearer) != NGX_OK) {
        return NGX_HTTP_UNAUTHORIZED;
    }

    if (route->auth == NGX_ASTRALFORM_AUTH_ANY) {
        return NGX_OK;
    }

    pid = &ctx->seg[2];

    if (pid->len != ctx->project->id.len
        || ngx_strncmp(pid->data, ctx->project->id.data, pid->len) != 0)
    {
        ctx->project = NULL;
        return NGX_HTTP_NOT_FOUND;
    }

    return NGX_OK;
}


/* the first member of the body not in known (NULL-terminated), or NULL */
static const char *
ngx_astralform_unknown_field(json_t *body, const char **known)
{
    ngx_uint_t   i;
    const char  *key;
    json_t      *v;

    json_object_foreach(body, key, v) {
        for (i = 0; known[i] != NULL; i++) {
            if (ngx_strcmp(key, known[i]) == 0) {
                break;
            }
        }

        if (known[i] == NULL) {
            return key;
        }
    }

    return NULL;
}


/* 400 invalid_request naming the field and the ones the row takes */
static ngx_int_t
ngx_astralform_unknown_field_error(ngx_astralform_ctx_t *ctx,
    const char *field, const char **known)
{
    u_char      list[256], *p, *last;
    ngx_uint_t  i;

    p = list;
    last = list + sizeof(list) - 1;

    for (i = 0; known[i] != NULL; i++) {
        p = ngx_slprintf(p, last, "%s\"%s\"", i ? ", " : "", known[i]);
    }

    *p = '\0';

    return ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST,
                                     "invalid_request",
                                     "unknown field \"%s\" in the body; "
                                     "this endpoint takes %s", field, list);
}


static void
ngx_astralform_body_handler(ngx_http_request_t *r)
{
    ngx_astralform_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_astralform_module);

    /* a browser form: its handler reads the body itself */
    if (ctx->form) {
        ngx_astralform_dispatch(ctx);
        return;
    }

    /* NGX_DONE: the body was refused and answered */
    if (ngx_astralform_parse_body(ctx) == NGX_OK) {
        ngx_astralform_dispatch(ctx);
    }
}


/*
 * The request body in one piece of memory (empty when there is none).
 * NGX_DECLINED: larger than astralform_max_body_size.
 */
ngx_int_t
ngx_astralform_request_body(ngx_astralform_ctx_t *ctx, ngx_str_t *body)
{
    u_char              *p;
    size_t               len;
    ssize_t              n;
    ngx_buf_t           *b;
    ngx_chain_t         *cl;
    ngx_http_request_t  *r;

    r = ctx->request;
    ngx_str_null(body);

    if (r->request_body == NULL) {
        return NGX_OK;
    }

    len = 0;
    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
    }

    if (len > ctx->amcf->max_body_size) {
        return NGX_DECLINED;
    }

    if (len == 0) {
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    len = 0;
    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            /* a body over client_body_buffer_size went to a temp file */
            n = ngx_read_file(b->file, p + len, b->file_last - b->file_pos,
                              b->file_pos);
            if (n == NGX_ERROR) {
                return NGX_ERROR;
            }
            len += n;

        } else if (b->last != b->pos) {
            /* the last buffer of a chunked body may be empty, pos NULL */
            len = ngx_cpymem(p + len, b->pos, b->last - b->pos) - p;
        }
    }

    body->data = p;
    body->len = len;

    return NGX_OK;
}


ngx_int_t
ngx_astralform_body_too_large(ngx_astralform_ctx_t *ctx)
{
    ctx->request->keepalive = 0;

    return ngx_astralform_send_error(ctx, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                     "body_too_large",
                                     "the request body is larger than "
                                     "%uz bytes", ctx->amcf->max_body_size);
}


/* NGX_OK with ctx->body set, or NGX_DONE with the request answered */
static ngx_int_t
ngx_astralform_parse_body(ngx_astralform_ctx_t *ctx)
{
    ngx_int_t     rc;
    ngx_str_t     body;
    json_error_t  jerr;

    switch (ngx_astralform_request_body(ctx, &body)) {

    case NGX_OK:
        break;

    case NGX_DECLINED:
        rc = ngx_astralform_body_too_large(ctx);
        goto failed;

    default:
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto failed;
    }

    if (body.len == 0) {
        goto empty;
    }

    ctx->body = json_loadb((char *) body.data, body.len,
                           JSON_REJECT_DUPLICATES, &jerr);

    if (ctx->any_body) {
        return NGX_OK;
    }

    if (ctx->body == NULL) {
        /* jansson's text may quote the body (a secret): position only */
        rc = ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST,
                                       "invalid_json",
                                       "the body is not valid JSON (line %d, "
                                       "column %d)", jerr.line, jerr.column);
        goto failed;
    }

    if (json_is_object(ctx->body)) {
        return NGX_OK;
    }

empty:

    if (ctx->any_body) {
        return NGX_OK;
    }

    rc = ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST, "invalid_json",
                                   "the body must be a JSON object");

failed:

    ngx_astralform_finish(ctx, rc);
    return NGX_DONE;
}


static void
ngx_astralform_dispatch(ngx_astralform_ctx_t *ctx)
{
    ngx_int_t                rc;
    const char              *field;
    ngx_astralform_body_t   *body;
    ngx_astralform_route_t  *route;

    route = ctx->data;
    ctx->data = NULL;

    /*
     * Notice a client that goes away while Redis or a provider is being
     * waited for: the request is then finalized and its pool cleanups
     * cancel the work in flight.
     */
    ctx->request->read_event_handler = ngx_http_test_reading;

    field = NULL;

    for (body = ngx_astralform_bodies; ctx->body && body->handler; body++) {
        if (body->handler == route->handler
            && body->method == ctx->request->method)
        {
            field = ngx_astralform_unknown_field(ctx->body, body->fields);
            break;
        }
    }

    rc = field ? ngx_astralform_unknown_field_error(ctx, field, body->fields)
               : route->handler(ctx);

    /* NGX_DONE: the handler finishes later, from a callback */
    if (rc != NGX_DONE) {
        ngx_astralform_finish(ctx, rc);
    }
}


static ngx_int_t
ngx_astralform_health_handler(ngx_astralform_ctx_t *ctx)
{
    ngx_str_t  argv[1];

    /* ROLE, not PING: a replica answers PING too, but takes no write */
    ngx_str_set(&argv[0], "ROLE");

    if (ngx_astralform_redis(ctx, ngx_astralform_health_reply, 1, argv)
        != NGX_OK)
    {
        ngx_astralform_health_reply(NULL, ctx);
    }

    return NGX_DONE;
}


static void
ngx_astralform_health_reply(redisReply *reply, void *data)
{
    ngx_astralform_ctx_t *ctx = data;

    char        *redis, *message;
    json_t      *json;
    redisReply  *role;

    role = (reply != NULL && reply->type == REDIS_REPLY_ARRAY
            && reply->elements > 0
            && reply->element[0]->type == REDIS_REPLY_STRING)
           ? reply->element[0] : NULL;

    if (role != NULL && ngx_strcmp(role->str, "master") == 0
        && ngx_astralform_redis_complete())
    {
        json = ngx_astralform_health_json("ok", "up");
        ngx_astralform_finish(ctx, ngx_astralform_send_json(ctx, NGX_HTTP_OK,
                                                             json));
        return;
    }

    if (role != NULL && ngx_strcmp(role->str, "master") == 0) {
        redis = "partial";
        message = "not every cluster slot has a reachable master";

    } else if (role != NULL) {
        redis = "read-only";
        message = "redis is a replica: the gateway has no writable master";

    } else if (reply != NULL) {
        redis = "error";
        message = "redis refused ROLE (see the error log)";

    } else {
        redis = "down";
        message = "redis does not answer";
    }

    json = ngx_astralform_health_json("unavailable", redis);

    ngx_astralform_finish(ctx,
        ngx_astralform_send_error_with(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       json, "store_unavailable", message));
}


/* {"status":..,"redis":..,"mode":..,"master":..} ("masters":[..]) */
static json_t *
ngx_astralform_health_json(const char *status, const char *redis)
{
    json_t      *json, *list;
    ngx_str_t    masters[32];
    ngx_uint_t   i, n;
    const char  *mode;

    mode = ngx_astralform_redis_mode_name();
    n = ngx_astralform_redis_masters(masters, 32);

    json = json_pack("{s:s, s:s, s:s}", "status", status, "redis", redis,
                     "mode", mode);
    if (json == NULL) {
        return NULL;
    }

    if (ngx_strcmp(mode, "cluster") == 0) {
        list = json_array();

        for (i = 0; i < n; i++) {
            json_array_append_new(list,
                json_stringn((char *) masters[i].data, masters[i].len));
        }

        json_object_set_new(json, "masters", list);

    } else if (n) {
        json_object_set_new(json, "master",
            json_stringn((char *) masters[0].data, masters[0].len));
    }

    json_object_set_new(json, "version", json_string(NGX_ASTRALFORM_VERSION));

    return json;
}


ngx_int_t
ngx_astralform_catalog_handler(ngx_astralform_ctx_t *ctx)
{
    size_t                 j;
    json_t                *list, *item, *tools, *tool, *scopes;
    ngx_uint_t             i;
    ngx_astralform_def_t  *def;

    list = json_array();
    def = ctx->amcf->catalog.defs.elts;

    for (i = 0; i < ctx->amcf->catalog.defs.nelts; i++) {
        tools = json_array();

        json_array_foreach(def[i].tools, j, tool) {
            json_array_append_new(tools, json_pack("{s:O, s:O, s:O}",
                "name", json_object_get(tool, "name"),
                "description", json_object_get(tool, "description"),
                "input_schema", json_object_get(tool, "input_schema")));
        }

        item = json_pack("{s:s%, s:s%, s:s, s:O?, s:O?, s:o}",
                         "slug", def[i].slug.data, def[i].slug.len,
                         "name", def[i].name.data, def[i].name.len,
                         "type", ngx_astralform_type_name(def[i].type),
                         "category", json_object_get(def[i].json, "category"),
                         "description",
                         json_object_get(def[i].json, "description"),
                         "tools", tools);

        /* what the dashboard's Enable form prefills and shows */
        if (item != NULL && def[i].oauth != NULL) {
            scopes = json_object_get(def[i].oauth, "default_scopes");
            json_object_set_new(item, "default_scopes",
                                json_is_array(scopes) ? json_copy(scopes)
                                                      : json_array());

            /* exactly what the OAuth flow sends (ngx_astralform_oauth.c) */
            json_object_set_new(item, "redirect_uri",
                                json_pack("s%+", ctx->amcf->public_url.data,
                                          ctx->amcf->public_url.len,
                                          "/v1/connectors/oauth/callback"));
        }

        json_array_append_new(list, item);
    }

    return ngx_astralform_send_json(ctx, NGX_HTTP_OK,
                                    json_pack("{s:o}", "connectors", list));
}


/* jansson memory is malloc()ed: release it with the request */
static void
ngx_astralform_ctx_cleanup(void *data)
{
    ngx_astralform_ctx_t  *ctx = data;

    json_decref(ctx->body);
    json_decref(ctx->result);
}
