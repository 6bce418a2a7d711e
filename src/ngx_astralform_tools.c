/*
 * POST /v1/projects/{pid}/tools/call: find the tool, check the agent may
 * use it, validate the arguments, pick the end user's credential, build
 * the provider request from the catalog, send it on the event loop, and
 * map the provider's answer (and its error styles) to the gateway's.
 */


#include "ngx_astralform.h"
#include "ngx_astralform_tokens.h"
#include "ngx_astralform_oauth.h"
#include "ngx_astralform_schema.h"
#include "ngx_astralform_mcp_client.h"
#include "ngx_astralform_scrub.h"
#include "ngx_astralform_json_check.h"


#define NGX_ASTRALFORM_ERROR_BODY_MAX  4096
#define NGX_ASTRALFORM_RETRY_DEFAULT   30


typedef struct {
    ngx_astralform_connector_t  *conn;
    json_t                      *tool;        /* catalog definition */
    json_t                      *arguments;
    ngx_astralform_token_t      *tok;         /* the user's record, if any */
    ngx_str_t                    credential;  /* what goes to the provider */
    const char                  *why;         /* of an auth_required */
    ngx_str_t                    guess;       /* connector id prefetched */
    ngx_str_t                    prefetched;  /* its record for the user */
    unsigned                     has_record:1;
    unsigned                     retried:1;
} ngx_astralform_call_t;


static void ngx_astralform_call_prefetch(ngx_astralform_ctx_t *ctx,
    ngx_astralform_call_t *call);
static void ngx_astralform_call_prefetched(redisReply *reply, void *data);
static void ngx_astralform_call_resolved(ngx_astralform_ctx_t *ctx);
static ngx_int_t ngx_astralform_call_find(ngx_astralform_ctx_t *ctx,
    ngx_astralform_call_t *call, ngx_str_t *name, ngx_str_t *mcp_tool);
static void ngx_astralform_call_token(ngx_astralform_ctx_t *ctx,
    ngx_int_t rc, ngx_astralform_token_t *tok);
static void ngx_astralform_call_refreshed(ngx_astralform_ctx_t *ctx,
    ngx_int_t rc, ngx_astralform_token_t *tok);
static void ngx_astralform_call_send(ngx_astralform_ctx_t *ctx);
static ngx_int_t ngx_astralform_call_request(ngx_astralform_ctx_t *ctx,
    ngx_astralform_http_req_t *hr);
static ngx_int_t ngx_astralform_call_path_check(ngx_astralform_ctx_t *ctx,
    ngx_astralform_call_t *call, u_char *err, size_t size);
static ngx_int_t ngx_astralform_call_url(ngx_astralform_ctx_t *ctx,
    ngx_astralform_call_t *call, ngx_str_t *url);
static ngx_int_t ngx_astralform_call_body(ngx_astralform_ctx_t *ctx,
    ngx_astralform_call_t *call, ngx_astralform_http_req_t *hr);
static void ngx_astralform_call_done(ngx_astralform_http_req_t *hr);
static ngx_uint_t ngx_astralform_call_auth_failed(ngx_astralform_call_t *call,
    ngx_astralform_http_req_t *hr, json_t *body);
static ngx_int_t ngx_astralform_call_rate_limited(ngx_astralform_ctx_t *ctx,
    ngx_astralform_http_req_t *hr);
static ngx_int_t ngx_astralform_call_provider_error(ngx_astralform_ctx_t *ctx,
    ngx_uint_t status, ngx_uint_t provider_status, json_t *body,
    ngx_str_t *raw, const char *what);
static void ngx_astralform_call_auth_required(ngx_astralform_ctx_t *ctx,
    const char *why);
static void ngx_astralform_call_auth_url(ngx_astralform_ctx_t *ctx,
    ngx_int_t rc, ngx_str_t *url);
static ngx_int_t ngx_astralform_value_text(ngx_pool_t *pool, json_t *v,
    ngx_str_t *out);
static u_char *ngx_astralform_escape(ngx_pool_t *pool, ngx_str_t *s,
    size_t *len);


/* Slack answers HTTP 200 with these when the token is not good */
static const char  *ngx_astralform_slack_auth_errors[] = {
    "invalid_auth", "not_authed", "token_revoked", "token_expired",
    "account_inactive", NULL
};


ngx_int_t
ngx_astralform_tools_call_handler(ngx_astralform_ctx_t *ctx)
{
    json_t                 *name, *args;
    ngx_astralform_call_t  *call;

    name = json_object_get(ctx->body, "name");
    args = json_object_get(ctx->body, "arguments");

    if (!json_is_string(name) || json_string_length(name) == 0) {
        return ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request",
                                         "\"name\" must be the tool's name");
    }

    if (args != NULL && !json_is_object(args) && !json_is_null(args)) {
        return ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST,
                                         "invalid_arguments",
                                         "\"arguments\" must be an object");
    }

    call = ngx_pcalloc(ctx->request->pool, sizeof(ngx_astralform_call_t));
    if (call == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    call->arguments = json_is_object(args) ? args : NULL;
    ctx->data = call;

    ctx->tool.data = (u_char *) json_string_value(name);
    ctx->tool.len = json_string_length(name);

    ngx_astralform_call_prefetch(ctx, call);

    return ngx_astralform_load_project(ctx, 1, ngx_astralform_call_resolved);
}


/*
 * The user's record is read in the same Redis round trip as the project:
 * a catalog tool's connector id is known before the project is loaded in
 * the usual case (the config connector of that slug, or the slug itself,
 * the default id). A wrong guess only costs the usual second read.
 */
static void
ngx_astralform_call_prefetch(ngx_astralform_ctx_t *ctx,
    ngx_astralform_call_t *call)
{
    ngx_str_t                    argv[3];
    ngx_uint_t                   i;
    ngx_astralform_def_t        *def, *found;
    ngx_astralform_connector_t  *conn;

    if (ctx->user.len == 0) {
        return;
    }

    found = NULL;
    def = ctx->amcf->catalog.defs.elts;

    for (i = 0; i < ctx->amcf->catalog.defs.nelts; i++) {
        if (def[i].tools != NULL
            && ngx_astralform_catalog_tool(&def[i], &ctx->tool) != NULL)
        {
            found = &def[i];
            break;
        }
    }

    if (found == NULL) {
        return;
    }

    call->guess = found->slug;
    conn = ctx->project->connectors.elts;

    for (i = 0; i < ctx->project->connectors.nelts; i++) {
        if (conn[i].def == found) {
            call->guess = conn[i].id;
            break;
        }
    }

    ngx_str_set(&argv[0], "HGET");
    argv[2] = ctx->user;

    if (ngx_astralform_key(ctx, &argv[1], "tokens", &call->guess) != NGX_OK
        || ngx_astralform_redis(ctx, ngx_astralform_call_prefetched, 3, argv)
           != NGX_OK)
    {
        ngx_str_null(&call->guess);
        ctx->failed = 0;
    }
}


static void
ngx_astralform_call_prefetched(redisReply *reply, void *data)
{
    ngx_astralform_ctx_t *ctx = data;

    ngx_astralform_call_t  *call;

    call = ctx->data;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ctx->failed = 1;

    } else if (reply->type == REDIS_REPLY_STRING) {
        call->prefetched.data = ngx_pnalloc(ctx->request->pool, reply->len);

        if (call->prefetched.data == NULL) {
            ctx->failed = 1;

        } else {
            call->prefetched.len = reply->len;
            ngx_memcpy(call->prefetched.data, reply->str, reply->len);
            call->has_record = 1;
        }
    }

    ngx_astralform_step_done(ctx);
}


static void
ngx_astralform_call_resolved(ngx_astralform_ctx_t *ctx)
{
    u_char                  err[256];
    json_t                 *empty;
    ngx_int_t               rc;
    ngx_str_t               mcp_tool;
    ngx_astralform_call_t  *call;

    call = ctx->data;

    if (ngx_astralform_call_find(ctx, call, &ctx->tool, &mcp_tool)
        != NGX_OK)
    {
        ngx_astralform_finish(ctx,
            ngx_astralform_send_error(ctx, NGX_HTTP_NOT_FOUND, "unknown_tool",
                                      "no enabled connector of this "
                                      "project has a tool \"%V\"",
                                      &ctx->tool));
        return;
    }

    ctx->connector_id = call->conn->id;

    if (!ngx_astralform_connector_visible(ctx, call->conn)) {
        ngx_astralform_finish(ctx,
            ngx_astralform_send_error(ctx, NGX_HTTP_FORBIDDEN,
                                      "tool_not_assigned",
                                      "tool \"%V\" is not assigned to agent "
                                      "\"%V\"", &ctx->tool, &ctx->agent));
        return;
    }

    if (call->conn->def->type == NGX_ASTRALFORM_REMOTE_MCP) {
        rc = ngx_astralform_mcp_call_tool(ctx, call->conn, &mcp_tool,
                                          call->arguments);
        if (rc != NGX_DONE) {
            ngx_astralform_finish(ctx, rc);
        }
        return;
    }

    empty = NULL;
    if (call->arguments == NULL) {
        empty = json_object();
        call->arguments = empty;
        ctx->result = empty;     /* released with the request */
    }

    rc = ngx_astralform_schema_check(ctx->request->pool,
                                     json_object_get(call->tool,
                                                     "input_schema"),
                                     call->arguments, err, sizeof(err));
    if (rc != NGX_OK) {
        ngx_astralform_finish(ctx, rc == NGX_ERROR
            ? NGX_HTTP_INTERNAL_SERVER_ERROR
            : ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST,
                                        "invalid_arguments", "%s", err));
        return;
    }

    rc = ngx_astralform_call_path_check(ctx, call, err, sizeof(err));
    if (rc != NGX_OK) {
        ngx_astralform_finish(ctx, rc == NGX_ERROR
            ? NGX_HTTP_INTERNAL_SERVER_ERROR
            : ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST,
                                        "invalid_arguments", "%s", err));
        return;
    }

    if (ctx->user.len) {
        if (call->conn->def->type == NGX_ASTRALFORM_OAUTH
            || call->conn->allow_end_user_auth)
        {
            if (call->guess.len == call->conn->id.len
                && ngx_strncmp(call->guess.data, call->conn->id.data,
                               call->guess.len) == 0)
            {
                ngx_astralform_token_use(ctx, call->conn,
                                         call->has_record ? &call->prefetched
                                                          : NULL,
                                         ngx_astralform_call_token);
                return;
            }

            ngx_astralform_token_get(ctx, call->conn,
                                     ngx_astralform_call_token);
            return;
        }

    } else if (call->conn->def->type == NGX_ASTRALFORM_OAUTH) {
        ngx_astralform_finish(ctx,
            ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST,
                                      "user_required",
                                      "tool \"%V\" acts for an end user: "
                                      "send X-Astralform-User", &ctx->tool));
        return;
    }

    ngx_astralform_call_token(ctx, NGX_DECLINED, NULL);
}


/*
 * Catalog tools are found by name first; then remote MCP tools by
 * "<id>_<tool>", the longest matching id winning, so that with "kb" and
 * "kb_x" enabled "kb_x_search" goes to "kb_x" whatever the store's order.
 * Returns NGX_OK, or NGX_DECLINED when no enabled connector has it.
 */
static ngx_int_t
ngx_astralform_call_find(ngx_astralform_ctx_t *ctx,
    ngx_astralform_call_t *call, ngx_str_t *name, ngx_str_t *mcp_tool)
{
    ngx_uint_t                   i;
    ngx_astralform_connector_t  *conn, *best;

    conn = ctx->connectors.elts;

    for (i = 0; i < ctx->connectors.nelts; i++) {
        if (conn[i].def->type == NGX_ASTRALFORM_REMOTE_MCP) {
            continue;
        }

        call->tool = ngx_astralform_catalog_tool(conn[i].def, name);
        if (call->tool != NULL) {
            call->conn = &conn[i];
            return NGX_OK;
        }
    }

    best = NULL;

    for (i = 0; i < ctx->connectors.nelts; i++) {
        if (conn[i].def->type == NGX_ASTRALFORM_REMOTE_MCP
            && name->len > conn[i].id.len + 1
            && ngx_strncmp(name->data, conn[i].id.data, conn[i].id.len) == 0
            && name->data[conn[i].id.len] == '_'
            && (best == NULL || conn[i].id.len > best->id.len))
        {
            best = &conn[i];
        }
    }

    if (best == NULL) {
        return NGX_DECLINED;
    }

    call->conn = best;
    mcp_tool->data = name->data + best->id.len + 1;
    mcp_tool->len = name->len - best->id.len - 1;

    return NGX_OK;
}


static void
ngx_astralform_call_token(ngx_astralform_ctx_t *ctx, ngx_int_t rc,
    ngx_astralform_token_t *tok)
{
    ngx_int_t               src;
    ngx_astralform_call_t  *call;

    call = ctx->data;

    if (rc == NGX_ERROR) {
        ngx_astralform_store_unavailable(ctx);
        return;
    }

    if (rc == NGX_OK) {
        call->tok = tok;

        if (tok->is_api_key) {
            call->credential = tok->api_key;
            ngx_astralform_call_send(ctx);
            return;
        }

        call->credential = tok->access_token;

        if (ngx_astralform_token_expiring(ctx, tok)
            && tok->refresh_token.len)
        {
            ngx_astralform_oauth_refresh(ctx, call->conn, tok,
                                         ngx_astralform_call_refreshed);
            return;
        }

        ngx_astralform_call_send(ctx);
        return;
    }

    /* nothing stored for the user */

    if (call->conn->def->type == NGX_ASTRALFORM_API_KEY) {
        src = ngx_astralform_connector_secret(ctx, call->conn, "api_key",
                                              &call->credential);
        if (src == NGX_ERROR) {
            ngx_astralform_finish(ctx,
                ngx_astralform_send_error(ctx,
                                          NGX_HTTP_INTERNAL_SERVER_ERROR,
                                          "secret_unavailable",
                                          "the API key of connector \"%V\" "
                                          "does not open with the configured "
                                          "keys", &call->conn->id));
            return;
        }

        if (src == NGX_OK) {
            ngx_astralform_call_send(ctx);
            return;
        }
    }

    if (call->conn->require_auth) {
        ngx_astralform_call_auth_required(ctx, "has not connected");
        return;
    }

    /* require_auth off: the call goes out without a credential */
    ngx_astralform_call_send(ctx);
}


static void
ngx_astralform_call_refreshed(ngx_astralform_ctx_t *ctx, ngx_int_t rc,
    ngx_astralform_token_t *tok)
{
    ngx_astralform_call_t  *call;

    call = ctx->data;

    if (rc == NGX_OK) {
        call->tok = tok;
        call->credential = tok->access_token;
        ngx_astralform_call_send(ctx);
        return;
    }

    if (rc == NGX_DECLINED) {
        ngx_astralform_call_auth_required(ctx, "must connect again");
        return;
    }

    /* the refresh could not run now: a token not yet expired still works */
    if (call->tok != NULL && !call->retried
        && call->tok->expires_at > ngx_time())
    {
        ngx_astralform_call_send(ctx);
        return;
    }

    ngx_astralform_finish(ctx,
        ngx_astralform_send_error(ctx, NGX_HTTP_BAD_GATEWAY,
                                  "provider_error",
                                  "the token of connector \"%V\" could not "
                                  "be refreshed now", &call->conn->id));
}


static void
ngx_astralform_call_send(ngx_astralform_ctx_t *ctx)
{
    ngx_int_t                   rc;
    ngx_astralform_call_t      *call;
    ngx_astralform_http_req_t  *hr;

    call = ctx->data;

    hr = ngx_astralform_http_create(ctx->request->pool,
                                    ctx->request->connection->log);
    if (hr == NULL) {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    rc = ngx_astralform_call_request(ctx, hr);
    if (rc != NGX_OK) {
        /* e.g. a stored credential with CR/LF, refused as a header */
        ngx_astralform_finish(ctx,
            ngx_astralform_send_error(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                      "request_failed",
                                      "the request to %V could not be "
                                      "built", &call->conn->def->name));
        return;
    }

    hr->done = ngx_astralform_call_done;
    hr->data = ctx;

    if (ngx_astralform_http_start(hr) != NGX_OK) {
        ngx_astralform_finish(ctx,
            ngx_astralform_send_error(ctx, NGX_HTTP_BAD_GATEWAY,
                                      "provider_error",
                                      "the request to the provider could "
                                      "not start"));
    }
}


/* the provider request, built from the catalog definition */
static ngx_int_t
ngx_astralform_call_request(ngx_astralform_ctx_t *ctx,
    ngx_astralform_http_req_t *hr)
{
    json_t                 *auth, *headers, *v;
    ngx_str_t               name, value, prefix;
    const char             *key, *in;
    ngx_astralform_call_t  *call;

    call = ctx->data;

    /* whatever the provider echoes, these never go back to the agent */
    if (ngx_astralform_scrub_add(ctx->request->pool, &ctx->secrets,
                                 &call->credential) != NGX_OK
        || ngx_astralform_scrub_add(ctx->request->pool, &ctx->secrets,
                                    &call->conn->client_secret) != NGX_OK
        || ngx_astralform_scrub_add(ctx->request->pool, &ctx->secrets,
                                    &call->conn->api_key) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    hr->method.data = (u_char *) ngx_astralform_json_value(call->tool,
                                                           "method");
    hr->method.len = ngx_strlen(hr->method.data);

    if (ngx_astralform_call_url(ctx, call, &hr->url) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    headers = json_object_get(call->conn->def->api, "headers");

    json_object_foreach(headers, key, v) {
        name.data = (u_char *) key;
        name.len = ngx_strlen(key);
        value.data = (u_char *) json_string_value(v);
        value.len = json_string_length(v);

        if (value.data != NULL
            && ngx_astralform_http_add_header(hr, &name, &value) != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    auth = json_object_get(call->conn->def->api, "auth");
    in = ngx_astralform_json_value(auth, "in");

    if (call->credential.len && (in == NULL || ngx_strcmp(in, "header") == 0))
    {
        name.data = (u_char *) ngx_astralform_json_value(auth, "name");
        if (name.data == NULL) {
            ngx_str_set(&name, "Authorization");
        } else {
            name.len = ngx_strlen(name.data);
        }

        prefix.data = (u_char *) ngx_astralform_json_value(auth, "prefix");
        prefix.len = prefix.data ? ngx_strlen(prefix.data) : 0;
        if (auth == NULL) {
            ngx_str_set(&prefix, "Bearer ");
        }

        value.len = prefix.len + call->credential.len;
        value.data = ngx_pnalloc(ctx->request->pool, value.len);
        if (value.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        ngx_sprintf(value.data, "%V%V", &prefix, &call->credential);

        if (ngx_astralform_http_add_header(hr, &name, &value) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (ngx_astralform_call_body(ctx, call, hr) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_OK;
}


/*
 * A path segment that the arguments make "", "." or ".." would move the
 * call to another path (libcurl and servers remove dot segments, so
 * "repos/{owner}/{repo}" with both ".." is "/"), whatever the catalog's
 * schema allows: refused, naming the argument. NGX_DECLINED with err set.
 */
static ngx_int_t
ngx_astralform_call_path_check(ngx_astralform_ctx_t *ctx,
    ngx_astralform_call_t *call, u_char *err, size_t size)
{
    u_char      *p, *close, *seg;
    size_t       i, total;
    json_t      *v;
    ngx_str_t    text, arg, first;
    const char  *path;
    ngx_uint_t   args, nondot;

    path = ngx_astralform_json_value(call->tool, "path");
    if (path == NULL) {
        return NGX_OK;
    }

    for (seg = (u_char *) path; *seg; /* void */) {
        total = 0;
        nondot = 0;
        args = 0;
        ngx_str_null(&first);

        for (p = seg; *p && *p != '/'; /* void */) {
            close = (*p == '{') ? (u_char *) ngx_strchr(p, '}') : NULL;

            if (close == NULL) {
                nondot |= (*p != '.');
                total++;
                p++;
                continue;
            }

            arg.data = p + 1;
            arg.len = close - p - 1;

            if (args++ == 0) {
                first = arg;
            }

            v = call->arguments ? json_object_getn(call->arguments,
                                                   (char *) arg.data,
                                                   arg.len)
                                : NULL;

            if (v != NULL && !json_is_null(v)) {
                if (ngx_astralform_value_text(ctx->request->pool, v, &text)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }

                for (i = 0; i < text.len; i++) {
                    nondot |= (text.data[i] != '.');
                }

                total += text.len;
            }

            p = close + 1;
        }

        if (args && !nondot && total <= 2) {
            ngx_snprintf(err, size, "argument \"%V\" fills a path segment "
                         "and cannot be empty, \".\" or \"..\"%Z", &first);
            return NGX_DECLINED;
        }

        seg = *p ? p + 1 : p;
    }

    return NGX_OK;
}


/*
 * base_url + path with {arg} filled in + ?query. Every argument is
 * percent-encoded as a URI component, so no argument can leave the path
 * segment it was put in, nor change the host the credential goes to.
 */
static ngx_int_t
ngx_astralform_call_url(ngx_astralform_ctx_t *ctx,
    ngx_astralform_call_t *call, ngx_str_t *url)
{
    u_char                 *p, *close, *esc;
    size_t                  i, len;
    json_t                 *query, *v, *auth;
    ngx_str_t               text, arg;
    ngx_buf_t              *b;
    ngx_pool_t             *pool;
    const char             *path, *name, *in;
    ngx_uint_t              first;

    pool = ctx->request->pool;
    path = ngx_astralform_json_value(call->tool, "path");

    b = ngx_create_temp_buf(pool, 8192);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->last = ngx_cpymem(b->last, call->conn->def->api_base.data,
                         call->conn->def->api_base.len);

    for (p = (u_char *) path; *p; /* void */) {
        close = NULL;

        if (*p == '{') {
            close = (u_char *) ngx_strchr(p, '}');
        }

        if (close == NULL) {
            if (b->last == b->end) {
                return NGX_ERROR;
            }
            *b->last++ = *p++;
            continue;
        }

        arg.data = p + 1;
        arg.len = close - p - 1;

        v = NULL;
        if (call->arguments != NULL) {
            v = json_object_getn(call->arguments, (char *) arg.data, arg.len);
        }

        if (v != NULL) {
            if (ngx_astralform_value_text(pool, v, &text) != NGX_OK) {
                return NGX_ERROR;
            }

            esc = ngx_astralform_escape(pool, &text, &len);
            if (esc == NULL || (size_t) (b->end - b->last) < len) {
                return NGX_ERROR;
            }
            b->last = ngx_cpymem(b->last, esc, len);
        }

        p = close + 1;
    }

    first = 1;
    query = json_object_get(call->tool, "query");

    json_array_foreach(query, i, v) {
        name = json_string_value(v);
        v = call->arguments ? json_object_get(call->arguments, name) : NULL;

        if (v == NULL || json_is_null(v)) {
            continue;
        }

        if (ngx_astralform_value_text(pool, v, &text) != NGX_OK) {
            return NGX_ERROR;
        }

        esc = ngx_astralform_escape(pool, &text, &len);
        if (esc == NULL
            || (size_t) (b->end - b->last) < len + ngx_strlen(name) + 2)
        {
            return NGX_ERROR;
        }

        *b->last++ = first ? '?' : '&';
        b->last = ngx_cpymem(b->last, name, ngx_strlen(name));
        *b->last++ = '=';
        b->last = ngx_cpymem(b->last, esc, len);
        first = 0;
    }

    auth = json_object_get(call->conn->def->api, "auth");
    in = ngx_astralform_json_value(auth, "in");

    if (call->credential.len && in != NULL && ngx_strcmp(in, "query") == 0) {
        name = ngx_astralform_json_value(auth, "name");

        esc = ngx_astralform_escape(pool, &call->credential, &len);
        if (name == NULL || esc == NULL
            || (size_t) (b->end - b->last) < len + ngx_strlen(name) + 2)
        {
            return NGX_ERROR;
        }

        *b->last++ = first ? '?' : '&';
        b->last = ngx_cpymem(b->last, name, ngx_strlen(name));
        *b->last++ = '=';
        b->last = ngx_cpymem(b->last, esc, len);
    }

    url->data = b->pos;
    url->len = b->last - b->pos;

    return NGX_OK;
}


static ngx_int_t
ngx_astralform_call_body(ngx_astralform_ctx_t *ctx,
    ngx_astralform_call_t *call, ngx_astralform_http_req_t *hr)
{
    u_char      *p, *esc;
    char        *text;
    size_t       i, len;
    json_t      *list, *body, *v, *fixed;
    ngx_str_t    name, value, val;
    ngx_buf_t   *b;
    const char  *format, *key;

    list = json_object_get(call->tool, "body");
    fixed = json_object_get(call->tool, "body_fixed");

    if (json_array_size(list) == 0 && !json_is_object(fixed)) {
        return NGX_OK;
    }

    format = ngx_astralform_json_value(call->tool, "body_format");

    body = json_is_object(fixed) ? json_deep_copy(fixed) : json_object();
    if (body == NULL) {
        return NGX_ERROR;
    }

    json_array_foreach(list, i, v) {
        key = json_string_value(v);
        v = json_object_get(call->arguments, key);

        if (v != NULL) {
            json_object_set(body, key, v);
        }
    }

    ngx_str_set(&name, "Content-Type");

    if (format != NULL && ngx_strcmp(format, "form") == 0) {
        b = ngx_create_temp_buf(ctx->request->pool, 16384);
        if (b == NULL) {
            json_decref(body);
            return NGX_ERROR;
        }

        json_object_foreach(body, key, v) {
            if (ngx_astralform_value_text(ctx->request->pool, v, &val)
                != NGX_OK)
            {
                json_decref(body);
                return NGX_ERROR;
            }

            esc = ngx_astralform_escape(ctx->request->pool, &val, &len);
            if (esc == NULL
                || (size_t) (b->end - b->last) < len + ngx_strlen(key) + 2)
            {
                json_decref(body);
                return NGX_ERROR;
            }

            if (b->last != b->pos) {
                *b->last++ = '&';
            }
            b->last = ngx_cpymem(b->last, key, ngx_strlen(key));
            *b->last++ = '=';
            b->last = ngx_cpymem(b->last, esc, len);
        }

        json_decref(body);

        hr->body.data = b->pos;
        hr->body.len = b->last - b->pos;
        ngx_str_set(&value, "application/x-www-form-urlencoded");

        return ngx_astralform_http_add_header(hr, &name, &value);
    }

    text = json_dumps(body, JSON_COMPACT);
    json_decref(body);

    if (text == NULL) {
        return NGX_ERROR;
    }

    len = ngx_strlen(text);
    p = ngx_pnalloc(ctx->request->pool, len);
    if (p == NULL) {
        ngx_free(text);
        return NGX_ERROR;
    }

    ngx_memcpy(p, text, len);
    ngx_free(text);

    hr->body.data = p;
    hr->body.len = len;

    /* Slack warns about JSON posted without a charset */
    ngx_str_set(&value, "application/json; charset=utf-8");

    return ngx_astralform_http_add_header(hr, &name, &value);
}


static void
ngx_astralform_call_done(ngx_astralform_http_req_t *hr)
{
    int                     ok;
    json_t                 *body, *head;
    ngx_int_t               rc;
    ngx_uint_t              valid;
    ngx_astralform_ctx_t   *ctx;
    ngx_astralform_call_t  *call;

    ctx = hr->data;
    call = ctx->data;

    ctx->provider_status = hr->status;

    switch (hr->error) {

    case NGX_ASTRALFORM_HTTP_OK:
        break;

    case NGX_ASTRALFORM_HTTP_TIMEOUT:
        ngx_astralform_finish(ctx,
            ngx_astralform_send_error_with(ctx, NGX_HTTP_GATEWAY_TIME_OUT,
                json_pack("{s:o}", "connector",
                          ngx_astralform_json_string(&call->conn->id)),
                "provider_timeout", "%V did not answer in time",
                &call->conn->def->name));
        return;

    default:
        ngx_astralform_finish(ctx,
            ngx_astralform_call_provider_error(ctx, NGX_HTTP_BAD_GATEWAY, 0,
                NULL, NULL,
                hr->error == NGX_ASTRALFORM_HTTP_TOO_LARGE
                ? "answered more than the gateway accepts"
                : "could not be reached or broke the connection"));
        return;
    }

    /*
     * A success is passed through as the provider wrote it: checked as
     * JSON, not built (a large answer costs jansson far more than the
     * rest of the call). Failures, and what only jansson can judge, are
     * parsed as before.
     */
    body = NULL;
    valid = hr->status < 400
            && ngx_astralform_json_check(hr->resp_body.data,
                                         hr->resp_body.len, "ok", &ok)
               == NGX_OK
            && ok != JSON_FALSE;

    if (!valid) {
        body = json_loadb((char *) hr->resp_body.data, hr->resp_body.len, 0,
                          NULL);
    }

    if (ngx_astralform_call_auth_failed(call, hr, body)) {
        json_decref(body);

        if (!call->retried && call->tok != NULL && !call->tok->is_api_key)
        {
            /*
             * One refresh and one retry, then the user must reconnect.
             * Without a refresh token the refresh fails for good and
             * deletes the dead record, so the connection shows missing.
             */
            call->retried = 1;
            ngx_astralform_oauth_refresh(ctx, call->conn, call->tok,
                                         ngx_astralform_call_refreshed);
            return;
        }

        ngx_astralform_call_auth_required(ctx, "was refused by the "
                                          "provider");
        return;
    }

    rc = ngx_astralform_call_rate_limited(ctx, hr);
    if (rc != NGX_DECLINED) {
        json_decref(body);
        ngx_astralform_finish(ctx, rc);
        return;
    }

    if (hr->status >= 400
        || (json_is_false(json_object_get(body, "ok"))
            && ngx_strcmp(ngx_astralform_json_value(call->conn->def->api,
                                                    "error_style")
                          ? ngx_astralform_json_value(call->conn->def->api,
                                                      "error_style")
                          : "", "slack_ok") == 0))
    {
        ngx_astralform_finish(ctx,
            ngx_astralform_call_provider_error(ctx, NGX_HTTP_BAD_GATEWAY,
                                               hr->status, body,
                                               &hr->resp_body,
                                               "answered with an error"));
        return;
    }

    head = json_pack("{s:o, s:o}",
                     "tool", ngx_astralform_json_string(&ctx->tool),
                     "connector", ngx_astralform_json_string(&call->conn->id));

    if (body == NULL && !valid) {
        /* not JSON: the text, as a JSON string */
        json_object_set_new(head, "result",
                            json_stringn((char *) hr->resp_body.data,
                                         hr->resp_body.len));
        ngx_astralform_finish(ctx,
                              ngx_astralform_send_json(ctx, NGX_HTTP_OK, head));
        return;
    }

    /* parsed, so valid: the provider's own bytes go out unchanged */
    json_decref(body);

    ngx_astralform_finish(ctx,
        ngx_astralform_send_json_raw(ctx, NGX_HTTP_OK, head, "result",
                                     &hr->resp_body));
}


static ngx_uint_t
ngx_astralform_call_auth_failed(ngx_astralform_call_t *call,
    ngx_astralform_http_req_t *hr, json_t *body)
{
    ngx_uint_t   i;
    const char  *style, *err;

    if (hr->status == NGX_HTTP_UNAUTHORIZED) {
        return 1;
    }

    style = ngx_astralform_json_value(call->conn->def->api, "error_style");

    if (style == NULL || ngx_strcmp(style, "slack_ok") != 0
        || !json_is_false(json_object_get(body, "ok")))
    {
        return 0;
    }

    err = ngx_astralform_json_value(body, "error");
    if (err == NULL) {
        return 0;
    }

    for (i = 0; ngx_astralform_slack_auth_errors[i]; i++) {
        if (ngx_strcmp(err, ngx_astralform_slack_auth_errors[i]) == 0) {
            return 1;
        }
    }

    return 0;
}


/*
 * 429 with Retry-After (seconds or an HTTP date) or GitHub's 403 with
 * x-ratelimit-remaining: 0 and x-ratelimit-reset (epoch seconds).
 */
static ngx_int_t
ngx_astralform_call_rate_limited(ngx_astralform_ctx_t *ctx,
    ngx_astralform_http_req_t *hr)
{
    time_t                  at;
    ngx_int_t               retry;
    ngx_str_t              *h, *remaining;
    ngx_astralform_call_t  *call;

    call = ctx->data;
    remaining = ngx_astralform_http_resp_header(hr, "x-ratelimit-remaining");

    if (hr->status != NGX_HTTP_TOO_MANY_REQUESTS
        && !(hr->status == NGX_HTTP_FORBIDDEN && remaining != NULL
             && remaining->len == 1 && remaining->data[0] == '0'))
    {
        return NGX_DECLINED;
    }

    retry = NGX_ASTRALFORM_RETRY_DEFAULT;

    h = ngx_astralform_http_resp_header(hr, "retry-after");

    if (h != NULL) {
        retry = ngx_atoi(h->data, h->len);

        if (retry == NGX_ERROR) {
            at = ngx_parse_http_time(h->data, h->len);
            retry = at == NGX_ERROR ? NGX_ASTRALFORM_RETRY_DEFAULT
                                    : ngx_max(at - ngx_time(), 1);
        }

    } else {
        h = ngx_astralform_http_resp_header(hr, "x-ratelimit-reset");

        if (h != NULL) {
            at = ngx_atotm(h->data, h->len);
            if (at != NGX_ERROR) {
                retry = ngx_max(at - ngx_time(), 1);
            }
        }
    }

    return ngx_astralform_send_error_with(ctx, NGX_HTTP_TOO_MANY_REQUESTS,
               json_pack("{s:o, s:I, s:I}",
                         "connector",
                         ngx_astralform_json_string(&call->conn->id),
                         "retry_after", (json_int_t) retry,
                         "provider_status", (json_int_t) hr->status),
               "rate_limited", "%V is rate limiting these calls; retry "
               "after %i seconds", &call->conn->def->name, retry);
}


static ngx_int_t
ngx_astralform_call_provider_error(ngx_astralform_ctx_t *ctx,
    ngx_uint_t status, ngx_uint_t provider_status, json_t *body,
    ngx_str_t *raw, const char *what)
{
    json_t                 *extra;
    ngx_astralform_call_t  *call;

    call = ctx->data;

    if (body == NULL && raw != NULL && raw->len) {
        body = json_stringn((char *) raw->data,
                            ngx_min(raw->len,
                                    NGX_ASTRALFORM_ERROR_BODY_MAX));
    }

    extra = json_pack("{s:o, s:I, s:o}",
                      "connector", ngx_astralform_json_string(&call->conn->id),
                      "provider_status", (json_int_t) provider_status,
                      "provider_body", body ? body : json_null());

    return ngx_astralform_send_error_with(ctx, status, extra,
                                          "provider_error", "%V %s",
                                          &call->conn->def->name, what);
}


static void
ngx_astralform_call_auth_required(ngx_astralform_ctx_t *ctx, const char *why)
{
    ngx_astralform_call_t  *call;

    call = ctx->data;
    call->why = why;

    if (call->conn->def->type == NGX_ASTRALFORM_OAUTH
        && call->conn->allow_end_user_auth && ctx->user.len)
    {
        ngx_astralform_oauth_connect_url(ctx, call->conn, NULL,
                                         ngx_astralform_call_auth_url);
        return;
    }

    ngx_astralform_finish(ctx,
        ngx_astralform_send_error_with(ctx, NGX_HTTP_UNAUTHORIZED,
            json_pack("{s:o}", "connector",
                      ngx_astralform_json_string(&call->conn->id)),
            "auth_required",
            call->conn->def->type == NGX_ASTRALFORM_API_KEY
            && call->conn->allow_end_user_auth
            ? "the end user %s %V: set their API key with PUT "
              "/v1/projects/{pid}/users/{uid}/connections/{id}"
            : "the end user %s %V and end-user authorization is off",
            why, &call->conn->def->name));
}


static void
ngx_astralform_call_auth_url(ngx_astralform_ctx_t *ctx, ngx_int_t rc,
    ngx_str_t *url)
{
    ngx_astralform_call_t       *call;
    ngx_astralform_connector_t  *conn;

    if (rc == NGX_BUSY) {
        ngx_astralform_finish(ctx,
            ngx_astralform_quota_exceeded(ctx,
                                          NGX_ASTRALFORM_QUOTA_SESSIONS));
        return;
    }

    if (rc != NGX_OK) {
        ngx_astralform_store_unavailable(ctx);
        return;
    }

    call = ctx->data;
    conn = call->conn;

    ngx_astralform_finish(ctx,
        ngx_astralform_send_error_with(ctx, NGX_HTTP_UNAUTHORIZED,
            json_pack("{s:o, s:o}",
                      "connector", ngx_astralform_json_string(&conn->id),
                      "authorization_url", ngx_astralform_json_string(url)),
            "auth_required",
            "the end user %s %V: show them authorization_url, then retry",
            call->why, &conn->def->name));
}


/* a JSON value as it goes into a URL: strings bare, the rest as JSON */
static ngx_int_t
ngx_astralform_value_text(ngx_pool_t *pool, json_t *v, ngx_str_t *out)
{
    char  *text;

    if (json_is_string(v)) {
        out->data = (u_char *) json_string_value(v);
        out->len = json_string_length(v);
        return NGX_OK;
    }

    text = json_dumps(v, JSON_COMPACT|JSON_ENCODE_ANY);
    if (text == NULL) {
        return NGX_ERROR;
    }

    out->len = ngx_strlen(text);
    out->data = ngx_pnalloc(pool, out->len);
    if (out->data != NULL) {
        ngx_memcpy(out->data, text, out->len);
    }

    ngx_free(text);

    return out->data ? NGX_OK : NGX_ERROR;
}


static u_char *
ngx_astralform_escape(ngx_pool_t *pool, ngx_str_t *s, size_t *len)
{
    u_char  *p;
    size_t   n;

    n = ngx_escape_uri(NULL, s->data, s->len, NGX_ESCAPE_URI_COMPONENT);

    p = ngx_pnalloc(pool, s->len + 2 * n);
    if (p == NULL) {
        return NULL;
    }

    *len = (u_char *) ngx_escape_uri(p, s->data, s->len,
                                     NGX_ESCAPE_URI_COMPONENT) - p;

    return p;
}
