/*
 * The public endpoint: the content handler, the router, project key checks,
 * request bodies, and the JSON answers every handler sends.
 *
 * Life cycle: the content handler takes one reference on the request
 * (directly, or through ngx_http_read_client_request_body) and returns
 * NGX_DONE; whatever a handler does, synchronously or after Redis and
 * provider callbacks, it ends with exactly one ngx_astralform_finish().
 */


#include "ngx_astralform.h"


#define NGX_ASTRALFORM_MAX_IDENTITY  128


typedef enum {
    NGX_ASTRALFORM_AUTH_NONE = 0,   /* public */
    NGX_ASTRALFORM_AUTH_ANY,        /* any project's key */
    NGX_ASTRALFORM_AUTH_PROJECT     /* a key of the project in the path */
} ngx_astralform_auth_e;


typedef ngx_int_t (*ngx_astralform_handler_pt)(ngx_astralform_ctx_t *ctx);


typedef struct {
    ngx_uint_t                   methods;
    const char                  *path[NGX_ASTRALFORM_MAX_SEGMENTS];
    ngx_astralform_auth_e        auth;
    ngx_astralform_handler_pt    handler;
} ngx_astralform_route_t;


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
static ngx_int_t ngx_astralform_answer_divert(ngx_astralform_ctx_t *ctx,
    ngx_uint_t status, json_t *head, const char *member, ngx_str_t *raw);
static void ngx_astralform_ctx_cleanup(void *data);


static ngx_astralform_route_t  ngx_astralform_routes[] = {

    { NGX_HTTP_GET, { "v1", "health", NULL },
      NGX_ASTRALFORM_AUTH_NONE, ngx_astralform_health_handler },

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

    { NGX_HTTP_GET, { "v1", "projects", "*", "agents", NULL },
      NGX_ASTRALFORM_AUTH_PROJECT, ngx_astralform_agents_list_handler },

    { NGX_HTTP_GET, { "v1", "projects", "*", "diagnose", NULL },
      NGX_ASTRALFORM_AUTH_PROJECT, ngx_astralform_diagnose_handler },

    { NGX_HTTP_GET|NGX_HTTP_POST|NGX_HTTP_DELETE,
      { "v1", "projects", "*", "mcp", NULL },
      NGX_ASTRALFORM_AUTH_PROJECT, ngx_astralform_mcp_agent_handler },

    { NGX_HTTP_GET|NGX_HTTP_POST|NGX_HTTP_DELETE, { "v1", "mcp", NULL },
      NGX_ASTRALFORM_AUTH_ANY, ngx_astralform_mcp_admin_handler },

    { 0, { NULL }, 0, NULL }
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

    if (ngx_astralform_split(r, ctx) != NGX_OK) {
        rc = ngx_astralform_send_error(ctx, NGX_HTTP_NOT_FOUND, "not_found",
                                       "no such endpoint");
        goto done;
    }

    route = ngx_astralform_route(ctx, &matched);

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

    ctx->data = route->handler;

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
        rc = ngx_astralform_send_error(ctx,
                                       NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                       "body_too_large",
                                       "the request body is larger than "
                                       "%uz bytes",
                                       ctx->amcf->max_body_size);
        r->keepalive = 0;
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


/* an end user or agent id: 1 to 128 of A-Z a-z 0-9 _ - . @ : */
ngx_uint_t
ngx_astralform_valid_identity(ngx_str_t *id)
{
    u_char      c;
    ngx_uint_t  i;

    if (id->len == 0 || id->len > NGX_ASTRALFORM_MAX_IDENTITY) {
        return 0;
    }

    for (i = 0; i < id->len; i++) {
        c = id->data[i];

        if (!(isalnum(c) || c == '_' || c == '-' || c == '.' || c == '@'
              || c == ':'))
        {
            return 0;
        }
    }

    return 1;
}


ngx_str_t *
ngx_astralform_header(ngx_http_request_t *r, ngx_str_t *name)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == name->len
            && ngx_strncasecmp(h[i].key.data, name->data, name->len) == 0)
        {
            return &h[i].value;
        }
    }
}


/*
 * Every key of every project is compared, in constant time, so neither
 * the answer nor its timing tells which project a wrong key came close to.
 * A valid key of another project gets 404: other projects do not exist.
 * Returns NGX_OK, NGX_HTTP_UNAUTHORIZED or NGX_HTTP_NOT_FOUND.
 */
static ngx_int_t
ngx_astralform_authenticate(ngx_astralform_ctx_t *ctx,
    ngx_astralform_route_t *route)
{
    ngx_str_t                  *auth, bearer, *key, *pid;
    ngx_uint_t                  i, j, k;
    ngx_array_t                *keys[2];
    ngx_http_request_t         *r;
    ngx_astralform_project_t   *project, *owner;
    ngx_astralform_key_role_e   role;

    if (route->auth == NGX_ASTRALFORM_AUTH_NONE) {
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

    owner = NULL;
    role = NGX_ASTRALFORM_KEY_NONE;
    project = ctx->amcf->projects.elts;

    for (i = 0; i < ctx->amcf->projects.nelts; i++) {
        keys[0] = &project[i].admin_keys;
        keys[1] = &project[i].agent_keys;

        for (k = 0; k < 2; k++) {
            key = keys[k]->elts;

            for (j = 0; j < keys[k]->nelts; j++) {
                if (ngx_astralform_secret_eq(&bearer, &key[j])) {
                    owner = &project[i];
                    role = k == 0 ? NGX_ASTRALFORM_KEY_ADMIN
                                  : NGX_ASTRALFORM_KEY_AGENT;
                }
            }
        }
    }

    if (owner == NULL) {
        return NGX_HTTP_UNAUTHORIZED;
    }

    ctx->role = role;
    ctx->project = owner;

    if (route->auth == NGX_ASTRALFORM_AUTH_ANY) {
        return NGX_OK;
    }

    pid = &ctx->seg[2];

    if (pid->len != owner->id.len
        || ngx_strncmp(pid->data, owner->id.data, pid->len) != 0)
    {
        ctx->project = NULL;
        return NGX_HTTP_NOT_FOUND;
    }

    return NGX_OK;
}


ngx_int_t
ngx_astralform_admin_required(ngx_astralform_ctx_t *ctx)
{
    return ngx_astralform_send_error(ctx, NGX_HTTP_FORBIDDEN,
                                     "admin_required",
                                     "this needs the project's admin key");
}


static void
ngx_astralform_body_handler(ngx_http_request_t *r)
{
    ngx_astralform_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_astralform_module);

    /* NGX_DONE: the body was refused and answered */
    if (ngx_astralform_parse_body(ctx) == NGX_OK) {
        ngx_astralform_dispatch(ctx);
    }
}


/* NGX_OK with ctx->body set, or NGX_DONE with the request answered */
static ngx_int_t
ngx_astralform_parse_body(ngx_astralform_ctx_t *ctx)
{
    u_char              *p;
    size_t               len;
    ssize_t              n;
    ngx_int_t            rc;
    ngx_buf_t           *b;
    ngx_chain_t         *cl;
    json_error_t         jerr;
    ngx_http_request_t  *r;

    r = ctx->request;

    if (r->request_body == NULL) {
        goto empty;
    }

    len = 0;
    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
    }

    if (len > ctx->amcf->max_body_size) {
        r->keepalive = 0;
        rc = ngx_astralform_send_error(ctx,
                                       NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                       "body_too_large",
                                       "the request body is larger than "
                                       "%uz bytes",
                                       ctx->amcf->max_body_size);
        goto failed;
    }

    if (len == 0) {
        goto empty;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto failed;
    }

    len = 0;
    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            /* a body over client_body_buffer_size went to a temp file */
            n = ngx_read_file(b->file, p + len, b->file_last - b->file_pos,
                              b->file_pos);
            if (n == NGX_ERROR) {
                rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
                goto failed;
            }
            len += n;

        } else if (b->last != b->pos) {
            /* the last buffer of a chunked body may be empty, pos NULL */
            len = ngx_cpymem(p + len, b->pos, b->last - b->pos) - p;
        }
    }

    ctx->body = json_loadb((char *) p, len, JSON_REJECT_DUPLICATES, &jerr);

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
    ngx_int_t                  rc;
    ngx_astralform_handler_pt  handler;

    handler = (ngx_astralform_handler_pt) ctx->data;
    ctx->data = NULL;

    /*
     * Notice a client that goes away while Redis or a provider is being
     * waited for: the request is then finalized and its pool cleanups
     * cancel the work in flight.
     */
    ctx->request->read_event_handler = ngx_http_test_reading;

    rc = handler(ctx);

    /* NGX_DONE: the handler finishes later, from a callback */
    if (rc != NGX_DONE) {
        ngx_astralform_finish(ctx, rc);
    }
}


void
ngx_astralform_finish(ngx_astralform_ctx_t *ctx, ngx_int_t rc)
{
    ngx_http_finalize_request(ctx->request, rc);
}


json_t *
ngx_astralform_error_json(ngx_astralform_ctx_t *ctx, const char *code,
    const char *fmt, va_list args)
{
    u_char   msg[512], *last, *p;
    json_t  *json, *text;

    last = ngx_vslprintf(msg, msg + sizeof(msg) - 1, fmt, args);
    *last = '\0';

    ctx->error.data = (u_char *) code;
    ctx->error.len = ngx_strlen(code);

    json = json_object();
    if (json == NULL) {
        return NULL;
    }

    json_object_set_new(json, "error", json_string(code));

    /* a message quoting the caller's bytes may not be UTF-8: mask those */
    text = json_stringn((char *) msg, last - msg);

    if (text == NULL) {
        for (p = msg; p < last; p++) {
            if (*p >= 0x80 || *p < 0x20) {
                *p = '?';
            }
        }

        text = json_stringn((char *) msg, last - msg);
    }

    json_object_set_new(json, "message", text);

    return json;
}


ngx_int_t
ngx_astralform_send_error(ngx_astralform_ctx_t *ctx, ngx_uint_t status,
    const char *code, const char *fmt, ...)
{
    json_t   *json;
    va_list   args;

    va_start(args, fmt);
    json = ngx_astralform_error_json(ctx, code, fmt, args);
    va_end(args);

    return ngx_astralform_send_json(ctx, status, json);
}


ngx_int_t
ngx_astralform_send_error_with(ngx_astralform_ctx_t *ctx, ngx_uint_t status,
    json_t *extra, const char *code, const char *fmt, ...)
{
    json_t   *json;
    va_list   args;

    va_start(args, fmt);
    json = ngx_astralform_error_json(ctx, code, fmt, args);
    va_end(args);

    if (json != NULL && extra != NULL) {
        json_object_update(json, extra);
    }

    json_decref(extra);

    return ngx_astralform_send_json(ctx, status, json);
}


/* sends json (and releases it); answers 500 when json is NULL */
ngx_int_t
ngx_astralform_send_json(ngx_astralform_ctx_t *ctx, ngx_uint_t status,
    json_t *json)
{
    return ngx_astralform_send_json_raw(ctx, status, json, NULL, NULL);
}


/*
 * Sends the object head (and releases it) with one more member whose value
 * is raw JSON text the caller has checked: a provider's answer goes out
 * byte for byte, without being serialised again.
 */
ngx_int_t
ngx_astralform_send_json_raw(ngx_astralform_ctx_t *ctx, ngx_uint_t status,
    json_t *head, const char *member, ngx_str_t *raw)
{
    char                *text;
    size_t               len, size;
    ngx_int_t            rc;
    ngx_buf_t           *b;
    ngx_chain_t          out;
    ngx_table_elt_t     *h;
    ngx_http_request_t  *r;

    r = ctx->request;

    if (head == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ctx->answer != NULL) {
        return ngx_astralform_answer_divert(ctx, status, head, member, raw);
    }

    /* 15 digits: 48.8534 stays 48.8534, not 48.853400000000001 */
    text = json_dumps(head, JSON_COMPACT|JSON_REAL_PRECISION(15));
    json_decref(head);

    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_strlen(text);
    size = len + 1;

    if (raw != NULL) {
        size += ngx_strlen(member) + raw->len + sizeof(",\"\":") - 1;
    }

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        ngx_free(text);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (raw == NULL) {
        b->last = ngx_cpymem(b->pos, text, len);

    } else {
        /* "{...}" becomes "{...,"member":RAW}" */
        b->last = ngx_cpymem(b->pos, text, len - 1);
        if (len > 2) {
            *b->last++ = ',';
        }
        b->last = ngx_sprintf(b->last, "\"%s\":", member);
        b->last = ngx_cpymem(b->last, raw->data, raw->len);
        *b->last++ = '}';
    }

    *b->last++ = '\n';
    ngx_free(text);

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    /* answers carry per-user state: never cache them */
    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    h->hash = 1;
    ngx_str_set(&h->key, "Cache-Control");
    ngx_str_set(&h->value, "no-store");

    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * Another door (the MCP endpoints) runs a handler and turns its answer
 * into its own: the whole answer goes to ctx->answer as one object.
 */
static ngx_int_t
ngx_astralform_answer_divert(ngx_astralform_ctx_t *ctx, ngx_uint_t status,
    json_t *head, const char *member, ngx_str_t *raw)
{
    json_t                    *v;
    ngx_astralform_answer_pt   answer;

    if (raw != NULL) {
        v = json_loadb((char *) raw->data, raw->len, JSON_DECODE_ANY, NULL);
        if (v == NULL) {
            v = json_stringn((char *) raw->data, raw->len);
        }

        json_object_set_new(head, member, v);
    }

    /* what the door sends goes out as it is */
    answer = ctx->answer;
    ctx->answer = NULL;

    return answer(ctx, status, head);
}


void
ngx_astralform_store_unavailable(ngx_astralform_ctx_t *ctx)
{
    ngx_astralform_finish(ctx,
        ngx_astralform_send_error(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "store_unavailable",
                                  "the token store is unavailable, "
                                  "try again shortly"));
}


static ngx_int_t
ngx_astralform_health_handler(ngx_astralform_ctx_t *ctx)
{
    ngx_str_t  argv[1];

    ngx_str_set(&argv[0], "PING");

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

    json_t  *json;

    if (reply != NULL && reply->type == REDIS_REPLY_STATUS) {
        json = json_pack("{s:s, s:s}", "status", "ok", "redis", "up");
        ngx_astralform_finish(ctx, ngx_astralform_send_json(ctx, NGX_HTTP_OK,
                                                             json));
        return;
    }

    json = json_pack("{s:s, s:s}", "status", "unavailable", "redis", "down");

    ngx_astralform_finish(ctx,
        ngx_astralform_send_error_with(ctx, NGX_HTTP_SERVICE_UNAVAILABLE,
                                       json, "store_unavailable",
                                       "redis does not answer"));
}


ngx_int_t
ngx_astralform_catalog_handler(ngx_astralform_ctx_t *ctx)
{
    size_t                 j;
    json_t                *list, *item, *tools, *tool;
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
