/*
 * The MCP streamable HTTP transport (revision 2025-11-25, negotiating
 * 2025-06-18 and 2025-03-26) and its sessions, for the agents' and the
 * admins' servers.
 *
 * One POST carries one JSON-RPC message: a request is answered with one
 * application/json message, a notification or a response with 202. GET
 * (a server stream) is 405: the servers never speak first. DELETE ends
 * the session.
 *
 * initialize issues an Mcp-Session-Id of 256 random bits; the session
 * (negotiated version, client capabilities, user, agent) is a Redis string
 * {P}:mcp:<id> whose TTL slides on every use, so any worker of any
 * instance serves any session.
 *
 * notifications/cancelled may land on another instance than the call it
 * cancels: it leaves {P}:mcp:<id>:cancel:<request id> in Redis, and a
 * running call looks for it every NGX_ASTRALFORM_MCP_CANCEL_POLL ms; a
 * cancelled call is answered at once, which frees the request and so
 * aborts its provider request (pool cleanups). When nginx keeps the
 * finalized request a while (a lingering close, a slow reader), what the
 * provider call answers later is dropped (ngx_astralform_finish()).
 */


#include "ngx_astralform.h"
#include "ngx_astralform_mcp_server.h"


#define NGX_ASTRALFORM_MCP_CANCEL_POLL  250
#define NGX_ASTRALFORM_MCP_ID_MAX       64


static ngx_int_t ngx_astralform_mcp_origin_ok(ngx_astralform_ctx_t *ctx);
static ngx_int_t ngx_astralform_mcp_session_header(
    ngx_astralform_mcp_t *mcp);
static ngx_int_t ngx_astralform_mcp_version_ok(ngx_str_t *v);
static ngx_int_t ngx_astralform_mcp_delete(ngx_astralform_mcp_t *mcp);
static void ngx_astralform_mcp_deleted(redisReply *reply, void *data);
static ngx_int_t ngx_astralform_mcp_initialize(ngx_astralform_mcp_t *mcp);
static void ngx_astralform_mcp_created(redisReply *reply, void *data);
static void ngx_astralform_mcp_loaded(redisReply *reply, void *data);
static ngx_int_t ngx_astralform_mcp_session_use(ngx_astralform_mcp_t *mcp);
static ngx_int_t ngx_astralform_mcp_dispatch(ngx_astralform_mcp_t *mcp);
static ngx_int_t ngx_astralform_mcp_cancelled(ngx_astralform_mcp_t *mcp,
    json_t *params);
static void ngx_astralform_mcp_cancel_poll(ngx_event_t *ev);
static void ngx_astralform_mcp_cancel_reply(redisReply *reply, void *data);
static ngx_int_t ngx_astralform_mcp_id_text(ngx_astralform_mcp_t *mcp,
    json_t *id, ngx_str_t *out);
static ngx_int_t ngx_astralform_mcp_send(ngx_astralform_mcp_t *mcp,
    ngx_uint_t status, json_t *message);
static ngx_int_t ngx_astralform_mcp_fail(ngx_astralform_mcp_t *mcp,
    ngx_uint_t status, ngx_int_t code, const char *message);
static ngx_int_t ngx_astralform_mcp_empty(ngx_astralform_ctx_t *ctx,
    ngx_uint_t status);
static ngx_int_t ngx_astralform_mcp_header(ngx_http_request_t *r,
    const char *name, ngx_str_t *value);
static void ngx_astralform_mcp_cleanup(void *data);


ngx_int_t
ngx_astralform_mcp_serve(ngx_astralform_ctx_t *ctx,
    ngx_astralform_mcp_server_t *server)
{
    json_t                    *msg;
    u_char                     text[128], *last;
    ngx_http_request_t        *r;
    ngx_pool_cleanup_t        *cln;
    ngx_astralform_mcp_t      *mcp;
    ngx_astralform_jsonrpc_t   rpc;

    r = ctx->request;

    mcp = ngx_pcalloc(r->pool, sizeof(ngx_astralform_mcp_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (mcp == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    mcp->ctx = ctx;
    mcp->server = server;
    ctx->door = mcp;

    cln->handler = ngx_astralform_mcp_cleanup;
    cln->data = mcp;

    /* a browser page on another site must not drive a local gateway */
    if (ngx_astralform_mcp_origin_ok(ctx) != NGX_OK) {
        return ngx_astralform_mcp_fail(mcp, NGX_HTTP_FORBIDDEN,
                   NGX_ASTRALFORM_JSONRPC_INVALID_REQUEST,
                   "Forbidden: the Origin is not allowed "
                   "(astralform_mcp_client_origin)");
    }

    if (r->method == NGX_HTTP_GET) {
        if (ngx_astralform_mcp_header(r, "Allow", NULL) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_astralform_mcp_fail(mcp, NGX_HTTP_NOT_ALLOWED,
                   NGX_ASTRALFORM_JSONRPC_INVALID_REQUEST,
                   "Method not allowed: this server opens no stream; "
                   "POST messages");
    }

    if (ngx_astralform_mcp_session_header(mcp) != NGX_OK) {
        return ngx_astralform_mcp_fail(mcp, NGX_HTTP_NOT_FOUND,
                   NGX_ASTRALFORM_JSONRPC_INVALID_REQUEST,
                   "Session not found");
    }

    if (r->method == NGX_HTTP_DELETE) {
        return ngx_astralform_mcp_delete(mcp);
    }

    /* POST: one message; the body is ours to release */
    msg = ctx->body;
    ctx->body = NULL;
    mcp->message = msg;

    if (msg == NULL) {
        return ngx_astralform_mcp_fail(mcp, NGX_HTTP_BAD_REQUEST,
                   NGX_ASTRALFORM_JSONRPC_PARSE_ERROR,
                   "Parse error: the body is not a JSON-RPC message");
    }

    if (json_is_array(msg)) {
        return ngx_astralform_mcp_fail(mcp, NGX_HTTP_BAD_REQUEST,
                   NGX_ASTRALFORM_JSONRPC_INVALID_REQUEST,
                   "Invalid Request: JSON-RPC batches are not supported; "
                   "send one message per POST");
    }

    if (ngx_astralform_jsonrpc_parse(msg, &rpc) != NGX_OK) {
        mcp->id = rpc.id;
        last = ngx_snprintf(text, sizeof(text) - 1, "Invalid Request: %s",
                            rpc.invalid);
        *last = '\0';

        return ngx_astralform_mcp_fail(mcp, NGX_HTTP_BAD_REQUEST,
                   NGX_ASTRALFORM_JSONRPC_INVALID_REQUEST, (char *) text);
    }

    mcp->id = rpc.id;

    if (rpc.kind == NGX_ASTRALFORM_JSONRPC_REQUEST
        && ngx_strcmp(rpc.method, "initialize") == 0)
    {
        return ngx_astralform_mcp_initialize(mcp);
    }

    if (mcp->session_id.len == 0) {
        return ngx_astralform_mcp_fail(mcp, NGX_HTTP_BAD_REQUEST,
                   NGX_ASTRALFORM_JSONRPC_INVALID_REQUEST,
                   "Bad Request: Mcp-Session-Id header is required "
                   "(send initialize first)");
    }

    return ngx_astralform_mcp_session_use(mcp);
}


/* no Origin (not a browser) is fine; a present one must be allowed */
static ngx_int_t
ngx_astralform_mcp_origin_ok(ngx_astralform_ctx_t *ctx)
{
    ngx_str_t   name, *origin, own;
    u_char     *p, *last;

    ngx_str_set(&name, "Origin");

    origin = ngx_astralform_header(ctx->request, &name);
    if (origin == NULL) {
        return NGX_OK;
    }

    if (ngx_astralform_url_in_origins(ctx->amcf->mcp_client_origins, origin)
        == NGX_OK)
    {
        return NGX_OK;
    }

    /* the gateway's own origin, as astralform_public_url gives it */
    own = ctx->amcf->public_url;
    p = ngx_strlchr(own.data, own.data + own.len, ':');

    if (p != NULL && own.data + own.len - p > 3) {
        last = ngx_strlchr(p + 3, own.data + own.len, '/');
        if (last != NULL) {
            own.len = last - own.data;
        }

        if (origin->len == own.len
            && ngx_strncasecmp(origin->data, own.data, own.len) == 0)
        {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/* NGX_ERROR: a session id no server issued (the caller answers 404) */
static ngx_int_t
ngx_astralform_mcp_session_header(ngx_astralform_mcp_t *mcp)
{
    size_t              i;
    ngx_str_t          *v, name;
    ngx_astralform_ctx_t  *ctx;

    ctx = mcp->ctx;
    ngx_str_set(&name, "Mcp-Session-Id");

    v = ngx_astralform_header(ctx->request, &name);
    if (v == NULL) {
        return NGX_OK;
    }

    if (v->len == 0 || v->len > NGX_ASTRALFORM_MCP_ID_MAX) {
        return NGX_ERROR;
    }

    for (i = 0; i < v->len; i++) {
        if (!(isalnum(v->data[i]) || v->data[i] == '-'
              || v->data[i] == '_'))
        {
            return NGX_ERROR;
        }
    }

    mcp->session_id = *v;

    return ngx_astralform_key(ctx, &mcp->session_key, "mcp", v);
}


static ngx_int_t
ngx_astralform_mcp_version_ok(ngx_str_t *v)
{
    return ngx_astralform_mcp_version(ngx_astralform_mcp_server_versions,
                                      v->data, v->len)
           ? NGX_OK : NGX_DECLINED;
}


static ngx_int_t
ngx_astralform_mcp_delete(ngx_astralform_mcp_t *mcp)
{
    ngx_str_t  argv[2];

    if (mcp->session_id.len == 0) {
        return ngx_astralform_mcp_fail(mcp, NGX_HTTP_BAD_REQUEST,
                   NGX_ASTRALFORM_JSONRPC_INVALID_REQUEST,
                   "Bad Request: Mcp-Session-Id header is required");
    }

    ngx_str_set(&argv[0], "DEL");
    argv[1] = mcp->session_key;

    if (ngx_astralform_redis_send(mcp->ctx->request->pool,
                                  mcp->ctx->request->connection->log,
                                  ngx_astralform_mcp_deleted, mcp, 2, argv)
        == NULL)
    {
        return ngx_astralform_wait(mcp->ctx);
    }

    return NGX_DONE;
}


static void
ngx_astralform_mcp_deleted(redisReply *reply, void *data)
{
    ngx_astralform_mcp_t *mcp = data;

    ngx_astralform_ctx_t  *ctx;

    ctx = mcp->ctx;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        ngx_astralform_store_unavailable(ctx);
        return;
    }

    if (reply->integer == 0) {
        ngx_astralform_finish(ctx,
            ngx_astralform_mcp_fail(mcp, NGX_HTTP_NOT_FOUND,
                                    NGX_ASTRALFORM_JSONRPC_INVALID_REQUEST,
                                    "Session not found"));
        return;
    }

    ngx_astralform_finish(ctx, ngx_astralform_mcp_empty(ctx, NGX_HTTP_OK));
}


static ngx_int_t
ngx_astralform_mcp_initialize(ngx_astralform_mcp_t *mcp)
{
    char                  *text;
    json_t                *params, *caps, *session;
    ngx_str_t              version, argv[5], id;
    ngx_http_request_t    *r;
    ngx_astralform_ctx_t  *ctx;

    ctx = mcp->ctx;
    r = ctx->request;

    params = json_object_get(mcp->message, "params");
    caps = json_object_get(params, "capabilities");

    version.data = (u_char *) ngx_astralform_json_value(params,
                                                        "protocolVersion");
    version.len = version.data ? ngx_strlen(version.data) : 0;

    if (!json_is_object(params) || version.len == 0) {
        return ngx_astralform_mcp_error(mcp,
                   NGX_ASTRALFORM_JSONRPC_INVALID_PARAMS, NULL,
                   "initialize needs params.protocolVersion");
    }

    /* an unknown version gets ours: the client decides whether it copes */
    if (ngx_astralform_mcp_version_ok(&version) != NGX_OK) {
        version = ngx_astralform_mcp_server_versions[0];
    }

    if (ngx_astralform_random_token(r->pool, &id, 32) != NGX_OK
        || ngx_astralform_key(ctx, &mcp->session_key, "mcp", &id) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    mcp->session_id = id;

    session = json_pack("{s:s, s:s%, s:O, s:o, s:o}",
                        "kind", mcp->server->kind,
                        "version", version.data, version.len,
                        "capabilities", json_is_object(caps) ? caps
                                                             : json_null(),
                        "user", ctx->user.len
                                ? ngx_astralform_json_string(&ctx->user)
                                : json_null(),
                        "agent", ctx->agent.len
                                 ? ngx_astralform_json_string(&ctx->agent)
                                 : json_null());
    if (session == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    mcp->session = session;

    text = json_dumps(session, JSON_COMPACT);
    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&argv[0], "SET");
    argv[1] = mcp->session_key;
    argv[2].data = (u_char *) text;
    argv[2].len = ngx_strlen(text);
    ngx_str_set(&argv[3], "PX");
    argv[4].data = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (argv[4].data == NULL) {
        ngx_free(text);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    argv[4].len = ngx_sprintf(argv[4].data, "%M", ctx->amcf->mcp_session_ttl)
                  - argv[4].data;

    if (ngx_astralform_redis_send(r->pool, r->connection->log,
                                  ngx_astralform_mcp_created, mcp, 5, argv)
        == NULL)
    {
        ngx_free(text);
        return ngx_astralform_wait(ctx);
    }

    ngx_free(text);

    return NGX_DONE;
}


static void
ngx_astralform_mcp_created(redisReply *reply, void *data)
{
    ngx_astralform_mcp_t *mcp = data;

    json_t                *result;
    ngx_astralform_ctx_t  *ctx;

    ctx = mcp->ctx;

    if (reply == NULL || reply->type != REDIS_REPLY_STATUS) {
        ngx_astralform_store_unavailable(ctx);
        return;
    }

    if (ngx_astralform_mcp_header(ctx->request, "Mcp-Session-Id",
                                  &mcp->session_id)
        != NGX_OK)
    {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    result = json_pack("{s:O, s:{s:{s:b}}, s:{s:s, s:s, s:s}, s:s}",
                       "protocolVersion",
                       json_object_get(mcp->session, "version"),
                       "capabilities", "tools", "listChanged", 0,
                       "serverInfo",
                       "name", "astralform",
                       "title", mcp->server->title,
                       "version", "1.0.0",
                       "instructions", mcp->server->instructions);

    ngx_astralform_finish(ctx, ngx_astralform_mcp_result(mcp, result));
}


/* loads the session, sliding its TTL, then dispatches the message */
static ngx_int_t
ngx_astralform_mcp_session_use(ngx_astralform_mcp_t *mcp)
{
    ngx_str_t              argv[4], v;
    ngx_http_request_t    *r;

    r = mcp->ctx->request;

    ngx_str_set(&v, "MCP-Protocol-Version");

    if (ngx_astralform_header(r, &v) != NULL
        && ngx_astralform_mcp_version_ok(ngx_astralform_header(r, &v))
           != NGX_OK)
    {
        return ngx_astralform_mcp_fail(mcp, NGX_HTTP_BAD_REQUEST,
                   NGX_ASTRALFORM_JSONRPC_INVALID_REQUEST,
                   "Bad Request: unsupported MCP-Protocol-Version "
                   "(supported: 2025-11-25, 2025-06-18, 2025-03-26)");
    }

    ngx_str_set(&argv[0], "GETEX");
    argv[1] = mcp->session_key;
    ngx_str_set(&argv[2], "PX");
    argv[3].data = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (argv[3].data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    argv[3].len = ngx_sprintf(argv[3].data, "%M",
                              mcp->ctx->amcf->mcp_session_ttl)
                  - argv[3].data;

    if (ngx_astralform_redis_send(r->pool, r->connection->log,
                                  ngx_astralform_mcp_loaded, mcp, 4, argv)
        == NULL)
    {
        return ngx_astralform_wait(mcp->ctx);
    }

    return NGX_DONE;
}


static void
ngx_astralform_mcp_loaded(redisReply *reply, void *data)
{
    ngx_astralform_mcp_t *mcp = data;

    json_t                *v;
    ngx_int_t              rc;
    ngx_str_t              s;
    ngx_astralform_ctx_t  *ctx;

    ctx = mcp->ctx;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_astralform_store_unavailable(ctx);
        return;
    }

    if (reply->type == REDIS_REPLY_STRING) {
        mcp->session = json_loadb(reply->str, reply->len, 0, NULL);
    }

    /* a session of the other endpoint is not one of this endpoint */
    if (!json_is_object(mcp->session)
        || ngx_strcmp(ngx_astralform_json_value(mcp->session, "kind") ?: "",
                      mcp->server->kind) != 0)
    {
        ngx_astralform_finish(ctx,
            ngx_astralform_mcp_fail(mcp, NGX_HTTP_NOT_FOUND,
                                    NGX_ASTRALFORM_JSONRPC_INVALID_REQUEST,
                                    "Session not found"));
        return;
    }

    /* the session is bound to the user and agent it was opened for */
    v = json_object_get(mcp->session, "user");
    s.data = (u_char *) json_string_value(v);
    s.len = s.data ? json_string_length(v) : 0;

    if (ctx->user.len && (ctx->user.len != s.len
                          || ngx_strncmp(ctx->user.data, s.data, s.len) != 0))
    {
        ngx_astralform_finish(ctx,
            ngx_astralform_mcp_fail(mcp, NGX_HTTP_FORBIDDEN,
                                    NGX_ASTRALFORM_JSONRPC_INVALID_REQUEST,
                                    "Forbidden: X-Astralform-User differs "
                                    "from the session's"));
        return;
    }

    ctx->user = s;

    v = json_object_get(mcp->session, "agent");
    ctx->agent.data = (u_char *) json_string_value(v);
    ctx->agent.len = ctx->agent.data ? json_string_length(v) : 0;

    mcp->url_elicitation = json_is_object(json_object_get(
                               json_object_get(
                                   json_object_get(mcp->session,
                                                   "capabilities"),
                                   "elicitation"),
                               "url"));

    rc = ngx_astralform_mcp_dispatch(mcp);

    if (rc != NGX_DONE) {
        ngx_astralform_finish(ctx, rc);
    }
}


static ngx_int_t
ngx_astralform_mcp_dispatch(ngx_astralform_mcp_t *mcp)
{
    json_t      *params;
    const char  *method;

    method = ngx_astralform_json_value(mcp->message, "method");
    params = json_object_get(mcp->message, "params");

    if (method == NULL) {
        /* a response to a request we never send: accepted, ignored */
        return ngx_astralform_mcp_empty(mcp->ctx, NGX_HTTP_ACCEPTED);
    }

    if (mcp->id == NULL) {
        if (ngx_strcmp(method, "notifications/cancelled") == 0) {
            return ngx_astralform_mcp_cancelled(mcp, params);
        }

        return ngx_astralform_mcp_empty(mcp->ctx, NGX_HTTP_ACCEPTED);
    }

    if (ngx_strcmp(method, "ping") == 0) {
        return ngx_astralform_mcp_result(mcp, json_object());
    }

    if (ngx_strcmp(method, "tools/list") == 0) {
        return mcp->server->tools_list(mcp);
    }

    if (ngx_strcmp(method, "tools/call") == 0) {
        if (!json_is_object(params)
            || !json_is_string(json_object_get(params, "name")))
        {
            return ngx_astralform_mcp_error(mcp,
                       NGX_ASTRALFORM_JSONRPC_INVALID_PARAMS, NULL,
                       "tools/call needs params.name");
        }

        return mcp->server->tools_call(mcp, params);
    }

    if (ngx_strcmp(method, "initialize") == 0) {
        return ngx_astralform_mcp_error(mcp,
                   NGX_ASTRALFORM_JSONRPC_INVALID_REQUEST, NULL,
                   "the session is already initialized");
    }

    return ngx_astralform_mcp_error(mcp, NGX_ASTRALFORM_JSONRPC_NO_METHOD,
                                    NULL, "Method not found: %s", method);
}


static ngx_int_t
ngx_astralform_mcp_cancelled(ngx_astralform_mcp_t *mcp, json_t *params)
{
    ngx_str_t              argv[5], id;
    ngx_http_request_t    *r;
    ngx_astralform_ctx_t  *ctx;

    ctx = mcp->ctx;
    r = ctx->request;

    if (ngx_astralform_mcp_id_text(mcp, json_object_get(params, "requestId"),
                                   &id)
        != NGX_OK)
    {
        return ngx_astralform_mcp_empty(ctx, NGX_HTTP_ACCEPTED);
    }

    ngx_str_set(&argv[0], "SET");
    if (ngx_astralform_key(ctx, &argv[1], "mcp", &id) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    ngx_str_set(&argv[2], "1");
    ngx_str_set(&argv[3], "EX");
    ngx_str_set(&argv[4], "60");

    (void) ngx_astralform_redis_send(r->pool, r->connection->log,
                                     ngx_astralform_mcp_cancel_reply, NULL,
                                     5, argv);

    return ngx_astralform_mcp_empty(ctx, NGX_HTTP_ACCEPTED);
}


void
ngx_astralform_mcp_watch_cancel(ngx_astralform_mcp_t *mcp)
{
    ngx_str_t            id;
    ngx_http_request_t  *r;

    r = mcp->ctx->request;

    if (ngx_astralform_mcp_id_text(mcp, mcp->id, &id) != NGX_OK
        || ngx_astralform_key(mcp->ctx, &mcp->cancel_key, "mcp", &id)
           != NGX_OK)
    {
        return;
    }

    /* the connection in data: a debug build logs ev->data's fd */
    mcp->cancel_ev.handler = ngx_astralform_mcp_cancel_poll;
    mcp->cancel_ev.data = r->connection;
    mcp->cancel_ev.log = r->connection->log;
    mcp->cancel_ev.cancelable = 1;

    ngx_add_timer(&mcp->cancel_ev, NGX_ASTRALFORM_MCP_CANCEL_POLL);
}


static void
ngx_astralform_mcp_cancel_poll(ngx_event_t *ev)
{
    ngx_str_t              argv[2];
    ngx_astralform_mcp_t  *mcp;

    mcp = (ngx_astralform_mcp_t *)
          ((u_char *) ev - offsetof(ngx_astralform_mcp_t, cancel_ev));

    ngx_str_set(&argv[0], "EXISTS");
    argv[1] = mcp->cancel_key;

    if (ngx_astralform_redis_send(mcp->ctx->request->pool, ev->log,
                                  ngx_astralform_mcp_cancel_reply, mcp, 2,
                                  argv)
        == NULL)
    {
        ngx_add_timer(ev, NGX_ASTRALFORM_MCP_CANCEL_POLL);
    }
}


static void
ngx_astralform_mcp_cancel_reply(redisReply *reply, void *data)
{
    ngx_astralform_mcp_t *mcp = data;

    ngx_connection_t      *c;
    ngx_astralform_ctx_t  *ctx;

    if (mcp == NULL || mcp->answered) {
        return;
    }

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER
        || reply->integer == 0)
    {
        ngx_add_timer(&mcp->cancel_ev, NGX_ASTRALFORM_MCP_CANCEL_POLL);
        return;
    }

    ctx = mcp->ctx;
    c = ctx->request->connection;

    ngx_log_error(NGX_LOG_INFO, c->log, 0,
                  "astralform: mcp call cancelled by the client");

    /* answering frees the request: its provider request is aborted */
    ctx->answer = NULL;
    ctx->cancelled = 1;

    ngx_astralform_finish(ctx,
        ngx_astralform_mcp_error(mcp, NGX_ASTRALFORM_JSONRPC_CANCELLED, NULL,
                                 "Request cancelled"));

    ngx_http_run_posted_requests(c);
}


/* "<session>:cancel:<request id as JSON>": one session cannot cancel
 * another's calls */
static ngx_int_t
ngx_astralform_mcp_id_text(ngx_astralform_mcp_t *mcp, json_t *id,
    ngx_str_t *out)
{
    char  *text;

    if (!ngx_astralform_jsonrpc_valid_id(id)) {
        return NGX_ERROR;
    }

    text = json_dumps(id, JSON_COMPACT|JSON_ENCODE_ANY);
    if (text == NULL) {
        return NGX_ERROR;
    }

    out->len = ngx_strlen(text);
    out->data = ngx_pnalloc(mcp->ctx->request->pool,
                            mcp->session_id.len + out->len
                            + sizeof(":cancel:") - 1);
    if (out->data == NULL) {
        ngx_free(text);
        return NGX_ERROR;
    }

    out->len = ngx_sprintf(out->data, "%V:cancel:%s", &mcp->session_id,
                           text)
               - out->data;
    ngx_free(text);

    return NGX_OK;
}


ngx_int_t
ngx_astralform_mcp_result(ngx_astralform_mcp_t *mcp, json_t *result)
{
    if (result == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_astralform_mcp_send(mcp, NGX_HTTP_OK,
                                   ngx_astralform_jsonrpc_result(mcp->id,
                                                                 result));
}


ngx_int_t
ngx_astralform_mcp_error(ngx_astralform_mcp_t *mcp, ngx_int_t code,
    json_t *data, const char *fmt, ...)
{
    u_char   msg[512], *last;
    va_list  args;

    va_start(args, fmt);
    last = ngx_vslprintf(msg, msg + sizeof(msg), fmt, args);
    va_end(args);

    return ngx_astralform_mcp_send(mcp, NGX_HTTP_OK,
               ngx_astralform_jsonrpc_error(mcp->id, code, msg, last - msg,
                                            data));
}


/* a transport-level refusal: the HTTP status says it, the body too */
static ngx_int_t
ngx_astralform_mcp_fail(ngx_astralform_mcp_t *mcp, ngx_uint_t status,
    ngx_int_t code, const char *message)
{
    mcp->ctx->error.data = (u_char *) "mcp_transport";
    mcp->ctx->error.len = sizeof("mcp_transport") - 1;

    return ngx_astralform_mcp_send(mcp, status,
               ngx_astralform_jsonrpc_error(mcp->id, code, (u_char *) message,
                                            ngx_strlen(message), NULL));
}


static ngx_int_t
ngx_astralform_mcp_send(ngx_astralform_mcp_t *mcp, ngx_uint_t status,
    json_t *message)
{
    if (mcp->cancel_ev.timer_set) {
        ngx_del_timer(&mcp->cancel_ev);
    }

    mcp->answered = 1;

    return ngx_astralform_send_json(mcp->ctx, status, message);
}


static ngx_int_t
ngx_astralform_mcp_empty(ngx_astralform_ctx_t *ctx, ngx_uint_t status)
{
    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = ctx->request;

    r->headers_out.status = status;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    return ngx_http_send_special(r, NGX_HTTP_LAST);
}


/* Allow (value NULL) or another response header */
static ngx_int_t
ngx_astralform_mcp_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);

    if (value != NULL) {
        h->value = *value;

    } else {
        ngx_str_set(&h->value, "POST, DELETE");
    }

    return NGX_OK;
}


static void
ngx_astralform_mcp_cleanup(void *data)
{
    ngx_astralform_mcp_t *mcp = data;

    if (mcp->cancel_ev.timer_set) {
        ngx_del_timer(&mcp->cancel_ev);
    }

    json_decref(mcp->message);
    json_decref(mcp->session);
}
