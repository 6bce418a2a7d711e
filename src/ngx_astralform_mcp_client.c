/*
 * Remote MCP connectors: the gateway as an MCP client of streamable-HTTP
 * servers (MCP 2025-03-26 and 2025-06-18).
 *
 * Every exchange is a POST of one JSON-RPC message to the connector's
 * mcp_url; the answer is application/json or a text/event-stream that
 * carries the response among other events. A server session starts with
 * initialize and the notifications/initialized notification; its
 * Mcp-Session-Id (and the negotiated MCP-Protocol-Version) go on every
 * later request. A 404 to a request that carried a session id means the
 * server forgot the session: it is initialized again, once.
 *
 * Sessions, and the tools a server listed, are kept per worker in a small
 * LRU cache keyed by project, connector id and URL. Sessions are cheap to
 * recreate, so sharing them between workers (or instances, through Redis)
 * would buy little and cost a lock on every call; keeping them in the
 * worker that uses them is the nginx way. Each cache entry has its own
 * small pool, destroyed when the entry leaves the cache, so the memory is
 * bounded by the number of entries.
 *
 * Outbound requests go through the worker's libcurl multi handle
 * (ngx_astralform_http.c), which never follows redirects and caps the
 * response size: the only server ever contacted is the configured URL.
 */


#include "ngx_astralform.h"
#include "ngx_astralform_mcp_client.h"
#include "ngx_astralform_jsonrpc.h"
#include "ngx_astralform_sse.h"


#define NGX_ASTRALFORM_MCP_CLIENT           "astralform-gateway"
#define NGX_ASTRALFORM_MCP_CLIENT_VERSION   "1.0.0"

#define NGX_ASTRALFORM_MCP_MAX_SERVERS      64
#define NGX_ASTRALFORM_MCP_TOOLS_TTL        30000
#define NGX_ASTRALFORM_MCP_IDLE             300000
#define NGX_ASTRALFORM_MCP_MAX_PAGES        16
#define NGX_ASTRALFORM_MCP_MAX_TOOLS        1024
#define NGX_ASTRALFORM_MCP_MAX_SID          256
#define NGX_ASTRALFORM_MCP_MAX_PROTOCOL     32
#define NGX_ASTRALFORM_MCP_FIRE_TIMEOUT     5000
#define NGX_ASTRALFORM_MCP_MAX_ECHO         4096
#define NGX_ASTRALFORM_MCP_RETRY            30
#define NGX_ASTRALFORM_MCP_TEXT             160


typedef enum {
    NGX_ASTRALFORM_MCP_OK = 0,
    NGX_ASTRALFORM_MCP_RPC,             /* a JSON-RPC error object */
    NGX_ASTRALFORM_MCP_STATUS,          /* an HTTP status we cannot use */
    NGX_ASTRALFORM_MCP_LIMITED,         /* 429 */
    NGX_ASTRALFORM_MCP_TIMEOUT,
    NGX_ASTRALFORM_MCP_TRANSPORT,       /* connect, reset, too large */
    NGX_ASTRALFORM_MCP_PROTOCOL,        /* not MCP as we speak it */
    NGX_ASTRALFORM_MCP_LOCAL            /* out of memory, cannot start */
} ngx_astralform_mcp_failure_e;


typedef enum {
    NGX_ASTRALFORM_MCP_INITIALIZE = 0,
    NGX_ASTRALFORM_MCP_INITIALIZED,
    NGX_ASTRALFORM_MCP_REQUEST
} ngx_astralform_mcp_state_e;


/* one server as this worker knows it: its session and its tools */
typedef struct {
    ngx_queue_t                    queue;       /* LRU, recent first */
    ngx_pool_t                    *pool;        /* holds this entry */
    ngx_str_t                      project;
    ngx_str_t                      connector;
    ngx_str_t                      url;
    ngx_str_t                      sid;         /* in sid_data */
    ngx_str_t                      protocol;    /* in protocol_data */
    json_t                        *tools;       /* the server's, or NULL */
    ngx_msec_t                     tools_expire;
    ngx_msec_t                     used;
    ngx_uint_t                     refs;        /* operations using it */
    ngx_queue_t                    waiting;     /* ops awaiting the session
                                                   another one sets up */
    ngx_str_t                      reg_key;     /* {P}:mcp_sessions:<C> */
    ngx_str_t                      reg_field;
    unsigned                       ready:1;     /* initialized */
    unsigned                       initializing:1;
    u_char                         sid_data[NGX_ASTRALFORM_MCP_MAX_SID];
    u_char                         protocol_data[
                                       NGX_ASTRALFORM_MCP_MAX_PROTOCOL];
} ngx_astralform_mcp_server_t;


typedef struct {
    ngx_queue_t                    servers;
    ngx_uint_t                     nservers;
    ngx_uint_t                     last_id;     /* JSON-RPC ids */
    unsigned                       init:1;
} ngx_astralform_mcp_cache_t;


typedef struct ngx_astralform_mcp_op_s  ngx_astralform_mcp_op_t;

typedef void (*ngx_astralform_mcp_op_pt)(ngx_astralform_mcp_op_t *op);


/* one method call on one server for one request, session set-up included */
struct ngx_astralform_mcp_op_s {
    ngx_astralform_ctx_t          *ctx;
    ngx_astralform_connector_t    *conn;
    ngx_astralform_mcp_server_t   *server;
    ngx_astralform_http_req_t     *hr;
    ngx_astralform_mcp_op_pt       done;
    void                          *data;

    const char                    *method;      /* tools/list, tools/call */
    json_t                        *params;
    json_t                        *result;      /* tools/call */
    json_t                        *tools;       /* tools/list, all pages */
    json_t                        *rpc_error;

    ngx_astralform_mcp_state_e     state;
    ngx_uint_t                     rpc_id;      /* of the request in flight */
    ngx_uint_t                     pages;
    ngx_msec_t                     deadline;

    ngx_str_t                      sid;
    ngx_str_t                      protocol;

    ngx_astralform_mcp_failure_e   failure;
    ngx_uint_t                     status;
    u_char                         text[NGX_ASTRALFORM_MCP_TEXT];

    ngx_queue_t                    wait;        /* in server->waiting */

    unsigned                       own_session:1;   /* not in the cache */
    unsigned                       waiting:1;
    unsigned                       initializer:1;   /* of server's session */
    unsigned                       sent_sid:1;
    unsigned                       retried:1;
    unsigned                       in_flight:1;
    unsigned                       finished:1;
};


typedef struct {
    ngx_astralform_ctx_t          *ctx;
    ngx_astralform_step_pt         done;
    ngx_uint_t                     pending;
    json_t                       **found;       /* per connector */
} ngx_astralform_mcp_list_t;


static void ngx_astralform_mcp_list_op_done(ngx_astralform_mcp_op_t *op);
static void ngx_astralform_mcp_list_dec(ngx_astralform_mcp_list_t *list);
static void ngx_astralform_mcp_list_cleanup(void *data);
static json_t *ngx_astralform_mcp_tools_json(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, json_t *tools);
static void ngx_astralform_mcp_call_done(ngx_astralform_mcp_op_t *op);
static json_t *ngx_astralform_mcp_failure_json(ngx_astralform_mcp_op_t *op,
    ngx_uint_t *status, const char **code);
static ngx_astralform_mcp_op_t *ngx_astralform_mcp_op_create(
    ngx_astralform_ctx_t *ctx, ngx_astralform_connector_t *conn,
    const char *method, json_t *params, ngx_astralform_mcp_op_pt done);
static ngx_int_t ngx_astralform_mcp_op_start(ngx_astralform_mcp_op_t *op);
static ngx_int_t ngx_astralform_mcp_send(ngx_astralform_mcp_op_t *op);
static void ngx_astralform_mcp_handler(ngx_astralform_http_req_t *hr);
static void ngx_astralform_mcp_session_lost(ngx_astralform_mcp_op_t *op);
static void ngx_astralform_mcp_initialize_result(ngx_astralform_mcp_op_t *op,
    json_t *result);
static void ngx_astralform_mcp_request_result(ngx_astralform_mcp_op_t *op,
    json_t *result);
static json_t *ngx_astralform_mcp_response(ngx_astralform_mcp_op_t *op);
static json_t *ngx_astralform_mcp_sse(ngx_astralform_mcp_op_t *op,
    ngx_str_t *body);
static json_t *ngx_astralform_mcp_match(ngx_astralform_mcp_op_t *op,
    json_t *json);
static void ngx_astralform_mcp_fail(ngx_astralform_mcp_op_t *op,
    ngx_astralform_mcp_failure_e failure, const char *fmt, ...);
static void ngx_astralform_mcp_op_finish(ngx_astralform_mcp_op_t *op);
static void ngx_astralform_mcp_op_cleanup(void *data);
static void ngx_astralform_mcp_cancelled(ngx_astralform_mcp_op_t *op);
static ngx_str_t *ngx_astralform_mcp_host(ngx_astralform_mcp_op_t *op);
static ngx_int_t ngx_astralform_mcp_headers(ngx_astralform_http_req_t *hr,
    ngx_str_t *sid, ngx_str_t *protocol);
static ngx_int_t ngx_astralform_mcp_set_body(ngx_astralform_http_req_t *hr,
    json_t *json);
static ngx_int_t ngx_astralform_mcp_copy(ngx_pool_t *pool, ngx_str_t *dst,
    ngx_str_t *src);
static ngx_uint_t ngx_astralform_mcp_valid_sid(ngx_str_t *sid);
static json_t *ngx_astralform_mcp_retry_after(ngx_astralform_http_req_t *hr);
static json_t *ngx_astralform_mcp_echo(ngx_str_t *body);
static void ngx_astralform_mcp_fire(ngx_str_t *url, const char *method,
    ngx_str_t *sid, ngx_str_t *protocol, json_t *body);
static void ngx_astralform_mcp_fire_done(ngx_astralform_http_req_t *hr);
static ngx_astralform_mcp_server_t *ngx_astralform_mcp_server_get(
    ngx_astralform_ctx_t *ctx, ngx_astralform_connector_t *conn);
static void ngx_astralform_mcp_server_release(
    ngx_astralform_mcp_server_t *server);
static void ngx_astralform_mcp_server_forget(
    ngx_astralform_mcp_server_t *server, ngx_str_t *sid);
static void ngx_astralform_mcp_server_free(
    ngx_astralform_mcp_server_t *server, ngx_uint_t close);
static void ngx_astralform_mcp_sweep(void);
static void ngx_astralform_mcp_init_done(ngx_astralform_mcp_op_t *op);
static void ngx_astralform_mcp_register(ngx_astralform_mcp_op_t *op,
    ngx_astralform_mcp_server_t *server);
static void ngx_astralform_mcp_unregister(
    ngx_astralform_mcp_server_t *server);
static void ngx_astralform_mcp_taken(redisReply *reply, void *data);
static void ngx_astralform_mcp_redis_ignore(redisReply *reply, void *data);
static void ngx_astralform_mcp_cache_cleanup(void *data);
static ngx_uint_t ngx_astralform_mcp_server_of(
    ngx_astralform_mcp_server_t *server, ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn);


static ngx_astralform_mcp_cache_t  ngx_astralform_mcp_cache;


void
ngx_astralform_mcp_list_tools(ngx_astralform_ctx_t *ctx,
    ngx_astralform_step_pt done)
{
    ngx_uint_t                    i;
    ngx_pool_cleanup_t           *cln;
    ngx_astralform_mcp_op_t      *op;
    ngx_astralform_mcp_list_t    *list;
    ngx_astralform_connector_t   *conn;
    ngx_astralform_mcp_server_t  *server;

    if (!json_is_array(ctx->result)) {
        done(ctx);
        return;
    }

    list = ngx_pcalloc(ctx->request->pool, sizeof(ngx_astralform_mcp_list_t));
    if (list == NULL) {
        done(ctx);
        return;
    }

    list->found = ngx_pcalloc(ctx->request->pool,
                              (ctx->connectors.nelts + 1) * sizeof(json_t *));
    if (list->found == NULL) {
        done(ctx);
        return;
    }

    cln = ngx_pool_cleanup_add(ctx->request->pool, 0);
    if (cln == NULL) {
        done(ctx);
        return;
    }

    cln->handler = ngx_astralform_mcp_list_cleanup;
    cln->data = list;

    list->ctx = ctx;
    list->done = done;

    /* the loop holds one reference: no done() before it ends */
    list->pending = 1;

    conn = ctx->connectors.elts;

    for (i = 0; i < ctx->connectors.nelts; i++) {
        if (conn[i].def->type != NGX_ASTRALFORM_REMOTE_MCP
            || conn[i].mcp_url.len == 0
            || !ngx_astralform_connector_visible(ctx, &conn[i]))
        {
            continue;
        }

        server = ngx_astralform_mcp_server_get(ctx, &conn[i]);

        if (server != NULL && server->tools != NULL
            && (ngx_msec_int_t) (server->tools_expire - ngx_current_msec)
               > 0)
        {
            list->found[i] = ngx_astralform_mcp_tools_json(ctx, &conn[i],
                                                           server->tools);
            ngx_astralform_mcp_server_release(server);
            continue;
        }

        if (server != NULL) {
            ngx_astralform_mcp_server_release(server);
        }

        op = ngx_astralform_mcp_op_create(ctx, &conn[i], "tools/list", NULL,
                                          ngx_astralform_mcp_list_op_done);
        if (op == NULL) {
            ngx_log_error(NGX_LOG_ERR, ctx->request->connection->log, 0,
                          "astralform: MCP connector \"%V\" of project "
                          "\"%V\" skipped in the tool list: out of memory",
                          &conn[i].id, &ctx->project->id);
            continue;
        }

        op->data = list;
        list->pending++;

        if (ngx_astralform_mcp_op_start(op) != NGX_OK) {
            ngx_astralform_mcp_fail(op, NGX_ASTRALFORM_MCP_LOCAL,
                                    "the request could not be started");
        }
    }

    ngx_astralform_mcp_list_dec(list);
}


static void
ngx_astralform_mcp_list_op_done(ngx_astralform_mcp_op_t *op)
{
    ngx_uint_t                  i;
    ngx_astralform_ctx_t       *ctx;
    ngx_astralform_mcp_list_t  *list;

    list = op->data;
    ctx = list->ctx;
    i = op->conn - (ngx_astralform_connector_t *) ctx->connectors.elts;

    if (op->failure == NGX_ASTRALFORM_MCP_OK) {
        if (op->server != NULL) {
            json_decref(op->server->tools);
            op->server->tools = json_incref(op->tools);
            op->server->tools_expire = ngx_current_msec
                                       + NGX_ASTRALFORM_MCP_TOOLS_TTL;
        }

        list->found[i] = ngx_astralform_mcp_tools_json(ctx, op->conn,
                                                       op->tools);

    } else {
        /* never a header or a body here: only what went wrong, and where */
        ngx_log_error(NGX_LOG_ERR, ctx->request->connection->log, 0,
                      "astralform: MCP connector \"%V\" of project \"%V\" "
                      "at \"%V\" skipped in the tool list: %s",
                      &op->conn->id, &ctx->project->id,
                      ngx_astralform_mcp_host(op), op->text);
    }

    ngx_astralform_mcp_list_dec(list);
}


/* the tool list goes out in connector order, whatever answered first */
static void
ngx_astralform_mcp_list_dec(ngx_astralform_mcp_list_t *list)
{
    ngx_uint_t             i;
    ngx_astralform_ctx_t  *ctx;

    if (--list->pending) {
        return;
    }

    ctx = list->ctx;

    for (i = 0; i < ctx->connectors.nelts; i++) {
        if (list->found[i] != NULL) {
            json_array_extend(ctx->result, list->found[i]);
            json_decref(list->found[i]);
            list->found[i] = NULL;
        }
    }

    list->done(ctx);
}


/* the answers in hand, when the request goes before all came in */
static void
ngx_astralform_mcp_list_cleanup(void *data)
{
    ngx_astralform_mcp_list_t  *list = data;

    ngx_uint_t  i;

    for (i = 0; i < list->ctx->connectors.nelts; i++) {
        json_decref(list->found[i]);
        list->found[i] = NULL;
    }
}


/* a server's tools as the API lists them: "<id>_<name>" */
static json_t *
ngx_astralform_mcp_tools_json(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, json_t *tools)
{
    u_char      *p;
    size_t       i, len;
    json_t      *list, *tool, *desc, *schema, *item;
    const char  *name;

    list = json_array();
    if (list == NULL) {
        return NULL;
    }

    json_array_foreach(tools, i, tool) {
        name = ngx_astralform_json_value(tool, "name");
        len = json_string_length(json_object_get(tool, "name"));

        p = ngx_pnalloc(ctx->request->pool, conn->id.len + 1 + len);
        if (p == NULL) {
            break;
        }

        ngx_memcpy(p, conn->id.data, conn->id.len);
        p[conn->id.len] = '_';
        ngx_memcpy(p + conn->id.len + 1, name, len);

        desc = json_object_get(tool, "description");
        if (!json_is_string(desc)) {
            desc = json_object_get(tool, "title");
        }

        schema = json_object_get(tool, "inputSchema");

        item = json_pack("{s:s%, s:o, s:o, s:o}",
                         "name", p, conn->id.len + 1 + len,
                         "description",
                         json_is_string(desc) ? json_incref(desc)
                                              : json_string(""),
                         "input_schema",
                         json_is_object(schema)
                         ? json_incref(schema)
                         : json_pack("{s:s}", "type", "object"),
                         "connector", ngx_astralform_json_string(&conn->id));
        if (item != NULL) {
            json_array_append_new(list, item);
        }
    }

    return list;
}


/*
 * A tool result with isError true is still a 200 with the result: the
 * tool ran and failed, and its error text is meant for the agent (the
 * model reads it and may try again). Only a failure to get a result at
 * all (HTTP, JSON-RPC, timeout) is an error answer of the gateway.
 */
ngx_int_t
ngx_astralform_mcp_call_tool(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_str_t *tool, json_t *arguments)
{
    u_char                   *p;
    json_t                   *params;
    ngx_astralform_mcp_op_t  *op;

    if (ctx->connector_id.len == 0) {
        ctx->connector_id = conn->id;
    }

    if (ctx->tool.len == 0) {
        p = ngx_pnalloc(ctx->request->pool, conn->id.len + 1 + tool->len);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->tool.data = p;
        p = ngx_cpymem(p, conn->id.data, conn->id.len);
        *p++ = '_';
        p = ngx_cpymem(p, tool->data, tool->len);
        ctx->tool.len = p - ctx->tool.data;
    }

    if (arguments != NULL && !json_is_object(arguments)) {
        return ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST,
                                         "invalid_arguments",
                                         "\"arguments\" must be an object");
    }

    /* a stored record without its URL (edited by hand): no server to ask,
     * as the tool list already skips it */
    if (conn->mcp_url.len == 0) {
        return ngx_astralform_send_error(ctx, NGX_HTTP_BAD_GATEWAY,
                                         "provider_error",
                                         "the remote_mcp connector \"%V\" "
                                         "has no mcp_url", &conn->id);
    }

    params = json_pack("{s:s%, s:o}", "name", tool->data, tool->len,
                       "arguments",
                       arguments != NULL ? json_incref(arguments)
                                         : json_object());
    if (params == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    op = ngx_astralform_mcp_op_create(ctx, conn, "tools/call", params,
                                      ngx_astralform_mcp_call_done);
    if (op == NULL) {
        json_decref(params);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_astralform_mcp_op_start(op) != NGX_OK) {
        /* the pool cleanup gives the cache entry back */
        return ngx_astralform_send_error(ctx, NGX_HTTP_BAD_GATEWAY,
                                         "provider_error",
                                         "the request to the MCP server of "
                                         "\"%V\" could not be started",
                                         &conn->id);
    }

    return NGX_DONE;
}


static void
ngx_astralform_mcp_call_done(ngx_astralform_mcp_op_t *op)
{
    json_t                *extra;
    ngx_uint_t             status;
    const char            *code;
    ngx_astralform_ctx_t  *ctx;

    ctx = op->ctx;
    ctx->provider_status = op->status;

    if (op->failure == NGX_ASTRALFORM_MCP_OK) {
        ngx_astralform_finish(ctx,
            ngx_astralform_send_json(ctx, NGX_HTTP_OK,
                json_pack("{s:o, s:o, s:O}",
                          "tool", ngx_astralform_json_string(&ctx->tool),
                          "connector",
                          ngx_astralform_json_string(&op->conn->id),
                          "result", op->result)));
        return;
    }

    ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                  "astralform: MCP connector \"%V\" of project \"%V\" at "
                  "\"%V\" failed a tool call: %s", &op->conn->id,
                  &ctx->project->id, ngx_astralform_mcp_host(op), op->text);

    extra = ngx_astralform_mcp_failure_json(op, &status, &code);

    if (status == NGX_HTTP_GATEWAY_TIME_OUT) {
        ngx_astralform_finish(ctx,
            ngx_astralform_send_error_with(ctx, status, extra, code,
                                           "the MCP server of \"%V\" did "
                                           "not answer in time",
                                           &op->conn->id));
        return;
    }

    if (status == NGX_HTTP_TOO_MANY_REQUESTS) {
        ngx_astralform_finish(ctx,
            ngx_astralform_send_error_with(ctx, status, extra, code,
                                           "the MCP server of \"%V\" is "
                                           "rate limiting, retry later",
                                           &op->conn->id));
        return;
    }

    ngx_astralform_finish(ctx,
        ngx_astralform_send_error_with(ctx, status, extra, code,
                                       "the MCP server of \"%V\" failed: "
                                       "%s", &op->conn->id, op->text));
}


/*
 * The members an error answer adds to {"error","message"}, named as for
 * catalog tools: connector, provider_status, provider_body (the answer,
 * or the JSON-RPC error object), retry_after.
 */
static json_t *
ngx_astralform_mcp_failure_json(ngx_astralform_mcp_op_t *op,
    ngx_uint_t *status, const char **code)
{
    json_t  *extra, *body;

    *status = NGX_HTTP_BAD_GATEWAY;
    *code = "provider_error";
    body = NULL;

    switch (op->failure) {

    case NGX_ASTRALFORM_MCP_TIMEOUT:
        *status = NGX_HTTP_GATEWAY_TIME_OUT;
        *code = "provider_timeout";
        return json_pack("{s:o}", "connector",
                         ngx_astralform_json_string(&op->conn->id));

    case NGX_ASTRALFORM_MCP_LIMITED:
        *status = NGX_HTTP_TOO_MANY_REQUESTS;
        *code = "rate_limited";
        return json_pack("{s:o, s:o, s:I}",
                         "connector",
                         ngx_astralform_json_string(&op->conn->id),
                         "retry_after",
                         ngx_astralform_mcp_retry_after(op->hr),
                         "provider_status", (json_int_t) op->status);

    case NGX_ASTRALFORM_MCP_LOCAL:
        *status = NGX_HTTP_INTERNAL_SERVER_ERROR;
        *code = "internal_error";
        return NULL;

    case NGX_ASTRALFORM_MCP_RPC:
        body = json_incref(op->rpc_error);
        break;

    case NGX_ASTRALFORM_MCP_STATUS:
    case NGX_ASTRALFORM_MCP_PROTOCOL:
        body = ngx_astralform_mcp_echo(&op->hr->resp_body);
        break;

    default: /* NGX_ASTRALFORM_MCP_TRANSPORT */
        break;
    }

    extra = json_pack("{s:o, s:I, s:o}",
                      "connector", ngx_astralform_json_string(&op->conn->id),
                      "provider_status",
                      (json_int_t) (op->failure == NGX_ASTRALFORM_MCP_TRANSPORT
                                    ? 0 : op->status),
                      "provider_body", body != NULL ? body : json_null());

    return extra;
}


static ngx_astralform_mcp_op_t *
ngx_astralform_mcp_op_create(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, const char *method, json_t *params,
    ngx_astralform_mcp_op_pt done)
{
    ngx_pool_t               *pool;
    ngx_pool_cleanup_t       *cln;
    ngx_astralform_mcp_op_t  *op;

    pool = ctx->request->pool;

    op = ngx_pcalloc(pool, sizeof(ngx_astralform_mcp_op_t));
    if (op == NULL) {
        return NULL;
    }

    op->sid.data = ngx_pnalloc(pool, NGX_ASTRALFORM_MCP_MAX_SID
                                     + NGX_ASTRALFORM_MCP_MAX_PROTOCOL);
    if (op->sid.data == NULL) {
        return NULL;
    }

    op->protocol.data = op->sid.data + NGX_ASTRALFORM_MCP_MAX_SID;

    /* before the HTTP request's: cleanups run last registered first */

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_astralform_mcp_op_cleanup;
    cln->data = op;

    op->ctx = ctx;
    op->conn = conn;
    op->method = method;
    op->params = params;
    op->done = done;

    op->hr = ngx_astralform_http_create(pool, ctx->request->connection->log);
    if (op->hr == NULL) {
        op->params = NULL;
        op->finished = 1;
        return NULL;
    }

    op->hr->data = op;
    op->hr->done = ngx_astralform_mcp_handler;
    ngx_str_set(&op->hr->method, "POST");
    op->hr->url = conn->mcp_url;

    return op;
}


/* NGX_OK: under way, done() is called later; NGX_ERROR: nothing sent */
static ngx_int_t
ngx_astralform_mcp_op_start(ngx_astralform_mcp_op_t *op)
{
    ngx_astralform_mcp_server_t  *server;

    op->deadline = ngx_current_msec + op->ctx->amcf->http.timeout;

    server = ngx_astralform_mcp_server_get(op->ctx, op->conn);
    op->server = server;

    if (server != NULL && server->ready) {
        ngx_memcpy(op->sid.data, server->sid.data, server->sid.len);
        op->sid.len = server->sid.len;
        ngx_memcpy(op->protocol.data, server->protocol.data,
                   server->protocol.len);
        op->protocol.len = server->protocol.len;
        op->state = NGX_ASTRALFORM_MCP_REQUEST;

    } else if (server != NULL && server->initializing) {
        /* concurrent first calls share the session one of them sets up */
        ngx_queue_insert_tail(&server->waiting, &op->wait);
        op->waiting = 1;
        return NGX_OK;

    } else {
        if (server != NULL) {
            server->initializing = 1;
            op->initializer = 1;
        }

        op->state = NGX_ASTRALFORM_MCP_INITIALIZE;
    }

    return ngx_astralform_mcp_send(op);
}


/*
 * The session op set up for the cache is usable (or op gave up): the
 * operations that waited for it go on, with it or, when there is none,
 * with a set-up of their own (the first of them for the cache again).
 */
static void
ngx_astralform_mcp_init_done(ngx_astralform_mcp_op_t *op)
{
    ngx_queue_t                   waiting, *q;
    ngx_astralform_mcp_op_t      *w;
    ngx_astralform_mcp_server_t  *server;

    if (!op->initializer) {
        return;
    }

    op->initializer = 0;
    server = op->server;
    server->initializing = 0;

    if (ngx_queue_empty(&server->waiting)) {
        return;
    }

    /* taken off first: a start may queue the others again */

    waiting = server->waiting;
    waiting.next->prev = &waiting;
    waiting.prev->next = &waiting;
    ngx_queue_init(&server->waiting);

    while (!ngx_queue_empty(&waiting)) {
        q = ngx_queue_head(&waiting);
        ngx_queue_remove(q);

        w = ngx_queue_data(q, ngx_astralform_mcp_op_t, wait);
        w->waiting = 0;

        /* the server entry is held already: start without a new ref */

        if (server->ready) {
            ngx_memcpy(w->sid.data, server->sid.data, server->sid.len);
            w->sid.len = server->sid.len;
            ngx_memcpy(w->protocol.data, server->protocol.data,
                       server->protocol.len);
            w->protocol.len = server->protocol.len;
            w->state = NGX_ASTRALFORM_MCP_REQUEST;

        } else if (server->initializing) {
            ngx_queue_insert_tail(&server->waiting, &w->wait);
            w->waiting = 1;
            continue;

        } else {
            server->initializing = 1;
            w->initializer = 1;
            w->state = NGX_ASTRALFORM_MCP_INITIALIZE;
        }

        if (ngx_astralform_mcp_send(w) != NGX_OK) {
            ngx_astralform_mcp_fail(w, NGX_ASTRALFORM_MCP_LOCAL,
                                    "the request could not be started");
        }
    }
}


/* sends the message of op's state */
static ngx_int_t
ngx_astralform_mcp_send(ngx_astralform_mcp_op_t *op)
{
    json_t                     *msg, *params;
    ngx_int_t                   rc;
    ngx_str_t                  *v;
    ngx_msec_int_t              left;
    ngx_astralform_http_req_t  *hr;

    hr = op->hr;

    left = (ngx_msec_int_t) (op->deadline - ngx_current_msec);
    hr->timeout = left > 0 ? (ngx_msec_t) left : 1;

    op->rpc_id = 0;
    op->sent_sid = 0;

    switch (op->state) {

    case NGX_ASTRALFORM_MCP_INITIALIZE:
        op->sid.len = 0;
        op->protocol.len = 0;
        op->rpc_id = ++ngx_astralform_mcp_cache.last_id;

        v = &ngx_astralform_mcp_client_versions[0];

        msg = ngx_astralform_jsonrpc_request(
                  json_integer((json_int_t) op->rpc_id), "initialize",
                  json_pack("{s:s%, s:{}, s:{s:s, s:s}}",
                            "protocolVersion", v->data, v->len,
                            "capabilities",
                            "clientInfo",
                            "name", NGX_ASTRALFORM_MCP_CLIENT,
                            "version", NGX_ASTRALFORM_MCP_CLIENT_VERSION));
        break;

    case NGX_ASTRALFORM_MCP_INITIALIZED:
        msg = ngx_astralform_jsonrpc_request(NULL,
                                             "notifications/initialized",
                                             NULL);
        break;

    default: /* NGX_ASTRALFORM_MCP_REQUEST */

        /* ids are unique in the worker, so in every session it uses */
        op->rpc_id = ++ngx_astralform_mcp_cache.last_id;

        params = op->params ? json_incref(op->params) : json_object();

        msg = ngx_astralform_jsonrpc_request(
                  json_integer((json_int_t) op->rpc_id), op->method, params);
    }

    if (msg == NULL) {
        return NGX_ERROR;
    }

    hr->headers.nelts = 0;

    if (op->state != NGX_ASTRALFORM_MCP_INITIALIZE && op->sid.len) {
        op->sent_sid = 1;
    }

    rc = ngx_astralform_mcp_set_body(hr, msg);
    json_decref(msg);

    if (rc != NGX_OK
        || ngx_astralform_mcp_headers(hr, op->sent_sid ? &op->sid : NULL,
                                      op->protocol.len ? &op->protocol
                                                       : NULL)
           != NGX_OK
        || ngx_astralform_http_start(hr) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, hr->log, 0,
                   "astralform mcp: \"%V\" state:%d id:%ui",
                   &op->conn->id, op->state, op->rpc_id);

    op->in_flight = 1;

    return NGX_OK;
}


static void
ngx_astralform_mcp_handler(ngx_astralform_http_req_t *hr)
{
    json_t                   *msg, *err, *result;
    ngx_astralform_mcp_op_t  *op;

    op = hr->data;
    op->in_flight = 0;
    op->status = hr->status;

    switch (hr->error) {

    case NGX_ASTRALFORM_HTTP_OK:
        break;

    case NGX_ASTRALFORM_HTTP_TIMEOUT:
        ngx_astralform_mcp_cancelled(op);
        ngx_astralform_mcp_fail(op, NGX_ASTRALFORM_MCP_TIMEOUT,
                                "no answer in time");
        return;

    case NGX_ASTRALFORM_HTTP_CONNECT:
        ngx_astralform_mcp_fail(op, NGX_ASTRALFORM_MCP_TRANSPORT,
                                "the server cannot be reached");
        return;

    case NGX_ASTRALFORM_HTTP_TOO_LARGE:
        ngx_astralform_mcp_fail(op, NGX_ASTRALFORM_MCP_TRANSPORT,
                                "the answer is too large");
        return;

    default:
        ngx_astralform_mcp_fail(op, NGX_ASTRALFORM_MCP_TRANSPORT,
                                "the answer broke off");
        return;
    }

    if (hr->status == NGX_HTTP_NOT_FOUND && op->sent_sid) {
        ngx_astralform_mcp_session_lost(op);
        return;
    }

    if (hr->status == NGX_HTTP_TOO_MANY_REQUESTS) {
        ngx_astralform_mcp_fail(op, NGX_ASTRALFORM_MCP_LIMITED,
                                "HTTP 429 (rate limited)");
        return;
    }

    if (hr->status < 200 || hr->status > 299) {
        ngx_astralform_mcp_fail(op, NGX_ASTRALFORM_MCP_STATUS,
                                "HTTP %ui", hr->status);
        return;
    }

    if (op->state == NGX_ASTRALFORM_MCP_INITIALIZED) {
        /* 202 Accepted, by the specification; any 2xx will do */
        op->state = NGX_ASTRALFORM_MCP_REQUEST;

        ngx_astralform_mcp_init_done(op);

        if (ngx_astralform_mcp_send(op) != NGX_OK) {
            ngx_astralform_mcp_fail(op, NGX_ASTRALFORM_MCP_LOCAL,
                                    "the request could not be started");
        }

        return;
    }

    msg = ngx_astralform_mcp_response(op);
    if (msg == NULL) {
        /* failed with the reason */
        return;
    }

    err = json_object_get(msg, "error");

    if (err != NULL) {
        op->rpc_error = json_incref(err);
        json_decref(msg);

        ngx_astralform_mcp_fail(op, NGX_ASTRALFORM_MCP_RPC,
                                "JSON-RPC error %L",
                                (int64_t) json_integer_value(json_object_get(
                                    op->rpc_error, "code")));
        return;
    }

    result = json_incref(json_object_get(msg, "result"));
    json_decref(msg);

    if (!json_is_object(result)) {
        json_decref(result);
        ngx_astralform_mcp_fail(op, NGX_ASTRALFORM_MCP_PROTOCOL,
                                "the JSON-RPC result is not an object");
        return;
    }

    if (op->state == NGX_ASTRALFORM_MCP_INITIALIZE) {
        ngx_astralform_mcp_initialize_result(op, result);

    } else {
        ngx_astralform_mcp_request_result(op, result);
    }

    json_decref(result);
}


/*
 * The server answered 404 to our session id: it forgot the session
 * (restart, expiry). Take the session another request already set up
 * again, or initialize a new one; once per operation.
 */
static void
ngx_astralform_mcp_session_lost(ngx_astralform_mcp_op_t *op)
{
    ngx_astralform_mcp_server_t  *server;

    server = op->server;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, op->hr->log, 0,
                   "astralform mcp: \"%V\" session lost", &op->conn->id);

    if (server != NULL) {
        ngx_astralform_mcp_server_forget(server, &op->sid);
    }

    if (op->retried) {
        ngx_astralform_mcp_fail(op, NGX_ASTRALFORM_MCP_STATUS,
                                "HTTP 404 (the session was lost again)");
        return;
    }

    op->retried = 1;

    /* the server has forgotten it: nothing to delete */
    op->own_session = 0;

    if (server != NULL && server->ready) {
        ngx_memcpy(op->sid.data, server->sid.data, server->sid.len);
        op->sid.len = server->sid.len;
        ngx_memcpy(op->protocol.data, server->protocol.data,
                   server->protocol.len);
        op->protocol.len = server->protocol.len;
        op->state = NGX_ASTRALFORM_MCP_REQUEST;

    } else {
        op->state = NGX_ASTRALFORM_MCP_INITIALIZE;
    }

    if (ngx_astralform_mcp_send(op) != NGX_OK) {
        ngx_astralform_mcp_fail(op, NGX_ASTRALFORM_MCP_LOCAL,
                                "the request could not be started");
    }
}


static void
ngx_astralform_mcp_initialize_result(ngx_astralform_mcp_op_t *op,
    json_t *result)
{
    ngx_str_t                    *sid, version, *v;
    ngx_astralform_mcp_server_t  *server;

    /* no Mcp-Session-Id: a stateless server */

    sid = ngx_astralform_http_resp_header(op->hr, "Mcp-Session-Id");

    if (sid != NULL) {
        if (!ngx_astralform_mcp_valid_sid(sid)) {
            ngx_astralform_mcp_fail(op, NGX_ASTRALFORM_MCP_PROTOCOL,
                                    "the server sent an invalid "
                                    "Mcp-Session-Id");
            return;
        }

        /* ours until the cache takes it: deleted if anything fails */

        ngx_memcpy(op->sid.data, sid->data, sid->len);
        op->sid.len = sid->len;
        op->own_session = 1;
    }

    version.data = (u_char *) ngx_astralform_json_value(result,
                                                        "protocolVersion");
    version.len = version.data ? ngx_strlen(version.data) : 0;

    v = ngx_astralform_mcp_version(ngx_astralform_mcp_client_versions,
                                   version.data, version.len);

    if (v == NULL) {
        ngx_astralform_mcp_fail(op, NGX_ASTRALFORM_MCP_PROTOCOL,
                                "the server speaks an MCP version this "
                                "gateway does not");
        return;
    }

    ngx_memcpy(op->protocol.data, v->data, v->len);
    op->protocol.len = v->len;

    /*
     * The first session set up is kept for the worker; a request that
     * set up another one at the same time uses its own and deletes it
     * when done, so no session is left behind on the server.
     */

    server = op->server;

    if (server != NULL && !server->ready) {
        ngx_memcpy(server->sid.data, op->sid.data, op->sid.len);
        server->sid.len = op->sid.len;
        ngx_memcpy(server->protocol.data, op->protocol.data,
                   op->protocol.len);
        server->protocol.len = op->protocol.len;
        server->ready = 1;
        op->own_session = 0;

        ngx_astralform_mcp_register(op, server);
    }

    op->state = NGX_ASTRALFORM_MCP_INITIALIZED;

    if (ngx_astralform_mcp_send(op) != NGX_OK) {
        ngx_astralform_mcp_fail(op, NGX_ASTRALFORM_MCP_LOCAL,
                                "the request could not be started");
    }
}


static void
ngx_astralform_mcp_request_result(ngx_astralform_mcp_op_t *op,
    json_t *result)
{
    size_t   i;
    json_t  *tools, *tool, *cursor;

    if (ngx_strcmp(op->method, "tools/call") == 0) {
        op->result = json_incref(result);
        op->failure = NGX_ASTRALFORM_MCP_OK;
        ngx_astralform_mcp_op_finish(op);
        return;
    }

    /* tools/list */

    tools = json_object_get(result, "tools");
    if (!json_is_array(tools)) {
        ngx_astralform_mcp_fail(op, NGX_ASTRALFORM_MCP_PROTOCOL,
                                "the tools/list result has no tools");
        return;
    }

    if (op->tools == NULL) {
        op->tools = json_array();
        if (op->tools == NULL) {
            ngx_astralform_mcp_fail(op, NGX_ASTRALFORM_MCP_LOCAL,
                                    "out of memory");
            return;
        }
    }

    json_array_foreach(tools, i, tool) {
        if (json_array_size(op->tools) == NGX_ASTRALFORM_MCP_MAX_TOOLS) {
            break;
        }

        if (json_is_string(json_object_get(tool, "name"))
            && json_string_length(json_object_get(tool, "name")) > 0)
        {
            json_array_append(op->tools, tool);
        }
    }

    op->pages++;
    cursor = json_object_get(result, "nextCursor");

    if (!json_is_string(cursor) || json_string_length(cursor) == 0) {
        op->failure = NGX_ASTRALFORM_MCP_OK;
        ngx_astralform_mcp_op_finish(op);
        return;
    }

    /* a server that pages for ever gets the first pages listed */

    if (op->pages == NGX_ASTRALFORM_MCP_MAX_PAGES
        || json_array_size(op->tools) == NGX_ASTRALFORM_MCP_MAX_TOOLS)
    {
        ngx_log_error(NGX_LOG_WARN, op->hr->log, 0,
                      "astralform: MCP connector \"%V\" at \"%V\" lists "
                      "more than %ui tools or pages, the rest is left out",
                      &op->conn->id, ngx_astralform_mcp_host(op),
                      (ngx_uint_t) NGX_ASTRALFORM_MCP_MAX_TOOLS);
        op->failure = NGX_ASTRALFORM_MCP_OK;
        ngx_astralform_mcp_op_finish(op);
        return;
    }

    json_decref(op->params);
    op->params = json_pack("{s:O}", "cursor", cursor);

    if (op->params == NULL || ngx_astralform_mcp_send(op) != NGX_OK) {
        ngx_astralform_mcp_fail(op, NGX_ASTRALFORM_MCP_LOCAL,
                                "the request could not be started");
    }
}


/* the JSON-RPC response to op's request, or NULL after failing op */
static json_t *
ngx_astralform_mcp_response(ngx_astralform_mcp_op_t *op)
{
    json_t                     *json, *msg;
    ngx_str_t                  *type;
    ngx_astralform_http_req_t  *hr;

    hr = op->hr;
    type = ngx_astralform_http_resp_header(hr, "Content-Type");

    if (type != NULL
        && type->len >= sizeof("text/event-stream") - 1
        && ngx_strncasecmp(type->data, (u_char *) "text/event-stream",
                           sizeof("text/event-stream") - 1)
           == 0)
    {
        msg = ngx_astralform_mcp_sse(op, &hr->resp_body);

    } else {
        json = json_loadb((char *) hr->resp_body.data, hr->resp_body.len,
                          0, NULL);
        if (json == NULL) {
            ngx_astralform_mcp_fail(op, NGX_ASTRALFORM_MCP_PROTOCOL,
                                    "the answer is not JSON");
            return NULL;
        }

        msg = ngx_astralform_mcp_match(op, json);
        json_decref(json);
    }

    if (msg == NULL) {
        ngx_astralform_mcp_fail(op, NGX_ASTRALFORM_MCP_PROTOCOL,
                                "the answer holds no response to the "
                                "request");
    }

    return msg;
}


/*
 * The response to op's request among the events of a text/event-stream
 * answer (ngx_astralform_sse.c): the server's notifications and requests
 * are skipped.
 */
static json_t *
ngx_astralform_mcp_sse(ngx_astralform_mcp_op_t *op, ngx_str_t *body)
{
    json_t                *json, *msg;
    ngx_str_t              data;
    ngx_astralform_sse_t   sse;

    if (ngx_astralform_sse_init(&sse, op->ctx->request->pool, body)
        != NGX_OK)
    {
        return NULL;
    }

    while (ngx_astralform_sse_next(&sse, &data) == NGX_OK) {
        json = json_loadb((char *) data.data, data.len, 0, NULL);
        if (json == NULL) {
            continue;
        }

        msg = ngx_astralform_mcp_match(op, json);
        json_decref(json);

        if (msg != NULL) {
            return msg;
        }
    }

    return NULL;
}


/* the response with op's id in a message or a batch, with a reference */
static json_t *
ngx_astralform_mcp_match(ngx_astralform_mcp_op_t *op, json_t *json)
{
    size_t                     i;
    json_t                    *item, *msg;
    ngx_astralform_jsonrpc_t   rpc;

    if (json_is_array(json)) {
        json_array_foreach(json, i, item) {
            msg = ngx_astralform_mcp_match(op, item);
            if (msg != NULL) {
                return msg;
            }
        }

        return NULL;
    }

    /* requests and notifications of the server are skipped */

    if (ngx_astralform_jsonrpc_parse(json, &rpc) != NGX_OK
        || rpc.kind != NGX_ASTRALFORM_JSONRPC_RESPONSE
        || !json_is_integer(rpc.id)
        || (ngx_uint_t) json_integer_value(rpc.id) != op->rpc_id)
    {
        return NULL;
    }

    return json_incref(json);
}


static void
ngx_astralform_mcp_fail(ngx_astralform_mcp_op_t *op,
    ngx_astralform_mcp_failure_e failure, const char *fmt, ...)
{
    u_char   *last;
    va_list   args;

    va_start(args, fmt);
    last = ngx_vslprintf(op->text, op->text + NGX_ASTRALFORM_MCP_TEXT - 1,
                         fmt, args);
    va_end(args);

    *last = '\0';

    op->failure = failure;

    ngx_astralform_mcp_op_finish(op);
}


static void
ngx_astralform_mcp_op_finish(ngx_astralform_mcp_op_t *op)
{
    ngx_astralform_mcp_server_t  *server;

    op->finished = 1;

    if (op->own_session && op->sid.len) {
        ngx_astralform_mcp_fire(&op->conn->mcp_url, "DELETE", &op->sid,
                                &op->protocol, NULL);
        op->own_session = 0;
    }

    ngx_astralform_mcp_init_done(op);

    server = op->server;

    /* may finalize the request and free op; the entry stays held */

    op->done(op);

    if (server != NULL) {
        ngx_astralform_mcp_server_release(server);
    }
}


/* the request went away (or is done): give back what op still holds */
static void
ngx_astralform_mcp_op_cleanup(void *data)
{
    ngx_astralform_mcp_op_t  *op = data;

    if (!op->finished) {
        op->finished = 1;

        /* the HTTP request's own cleanup has cancelled the transfer */

        if (op->in_flight) {
            ngx_astralform_mcp_cancelled(op);
        }

        if (op->own_session && op->sid.len) {
            ngx_astralform_mcp_fire(&op->conn->mcp_url, "DELETE", &op->sid,
                                    &op->protocol, NULL);
        }

        if (op->waiting) {
            ngx_queue_remove(&op->wait);
            op->waiting = 0;
        }

        if (op->server != NULL) {
            ngx_astralform_mcp_init_done(op);
            ngx_astralform_mcp_server_release(op->server);
        }
    }

    op->server = NULL;

    json_decref(op->params);
    json_decref(op->result);
    json_decref(op->tools);
    json_decref(op->rpc_error);

    op->params = NULL;
    op->result = NULL;
    op->tools = NULL;
    op->rpc_error = NULL;
}


/* a tools/call given up: tell the server, so that it can stop the work */
static void
ngx_astralform_mcp_cancelled(ngx_astralform_mcp_op_t *op)
{
    json_t  *msg;

    if (op->state != NGX_ASTRALFORM_MCP_REQUEST || op->rpc_id == 0
        || ngx_strcmp(op->method, "tools/call") != 0)
    {
        return;
    }

    msg = ngx_astralform_jsonrpc_request(NULL, "notifications/cancelled",
              json_pack("{s:I, s:s}",
                        "requestId", (json_int_t) op->rpc_id,
                        "reason", "the gateway gave up waiting"));

    if (msg != NULL) {
        ngx_astralform_mcp_fire(&op->conn->mcp_url, "POST",
                                op->sid.len ? &op->sid : NULL,
                                op->protocol.len ? &op->protocol : NULL,
                                msg);
        json_decref(msg);
    }
}


/* host[:port] of the server, for logs: never the path or credentials */
static ngx_str_t *
ngx_astralform_mcp_host(ngx_astralform_mcp_op_t *op)
{
    static ngx_str_t  unknown = ngx_string("-");

    if (op->hr == NULL || op->hr->host.len == 0) {
        return &unknown;
    }

    return &op->hr->host;
}


static ngx_int_t
ngx_astralform_mcp_headers(ngx_astralform_http_req_t *hr, ngx_str_t *sid,
    ngx_str_t *protocol)
{
    ngx_str_t  name, value;

    ngx_str_set(&name, "Content-Type");
    ngx_str_set(&value, "application/json");

    if (ngx_astralform_http_add_header(hr, &name, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_str_set(&name, "Accept");
    ngx_str_set(&value, "application/json, text/event-stream");

    if (ngx_astralform_http_add_header(hr, &name, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    if (sid != NULL) {
        ngx_str_set(&name, "Mcp-Session-Id");

        if (ngx_astralform_http_add_header(hr, &name, sid) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (protocol != NULL) {
        ngx_str_set(&name, "MCP-Protocol-Version");

        if (ngx_astralform_http_add_header(hr, &name, protocol) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_astralform_mcp_set_body(ngx_astralform_http_req_t *hr, json_t *json)
{
    char  *text;

    if (json == NULL) {
        ngx_str_null(&hr->body);
        return NGX_OK;
    }

    text = json_dumps(json, JSON_COMPACT);
    if (text == NULL) {
        return NGX_ERROR;
    }

    hr->body.len = ngx_strlen(text);
    hr->body.data = ngx_pnalloc(hr->pool, hr->body.len);

    if (hr->body.data == NULL) {
        ngx_free(text);
        return NGX_ERROR;
    }

    ngx_memcpy(hr->body.data, text, hr->body.len);
    ngx_free(text);

    return NGX_OK;
}


static ngx_int_t
ngx_astralform_mcp_copy(ngx_pool_t *pool, ngx_str_t *dst, ngx_str_t *src)
{
    dst->len = src->len;

    if (src->len == 0) {
        dst->data = NULL;
        return NGX_OK;
    }

    dst->data = ngx_pnalloc(pool, src->len);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src->data, src->len);

    return NGX_OK;
}


/* visible ASCII, as the specification says, and short enough to keep */
static ngx_uint_t
ngx_astralform_mcp_valid_sid(ngx_str_t *sid)
{
    ngx_uint_t  i;

    if (sid->len == 0 || sid->len > NGX_ASTRALFORM_MCP_MAX_SID) {
        return 0;
    }

    for (i = 0; i < sid->len; i++) {
        if (sid->data[i] < 0x21 || sid->data[i] > 0x7e) {
            return 0;
        }
    }

    return 1;
}


/* Retry-After in seconds (a delta or a date), a default when not given */
static json_t *
ngx_astralform_mcp_retry_after(ngx_astralform_http_req_t *hr)
{
    time_t      t;
    ngx_int_t   n;
    ngx_str_t  *v;

    n = NGX_ASTRALFORM_MCP_RETRY;
    v = ngx_astralform_http_resp_header(hr, "Retry-After");

    if (v != NULL && v->len) {
        n = ngx_atoi(v->data, v->len);

        if (n == NGX_ERROR) {
            t = ngx_parse_http_time(v->data, v->len);
            n = t == NGX_ERROR ? NGX_ASTRALFORM_MCP_RETRY
                               : ngx_max(t - ngx_time(), 1);
        }
    }

    return json_integer(n);
}


/* a body for an error answer: its JSON, or its start as a string */
static json_t *
ngx_astralform_mcp_echo(ngx_str_t *body)
{
    size_t   len, max;
    json_t  *s;

    if (body->len == 0) {
        return NULL;
    }

    s = json_loadb((char *) body->data, body->len, JSON_DECODE_ANY, NULL);
    if (s != NULL) {
        return s;
    }

    max = ngx_min(body->len, NGX_ASTRALFORM_MCP_MAX_ECHO);

    /* a cut in the middle of a UTF-8 sequence: drop its bytes */

    for (len = max; /* void */; len--) {
        s = json_stringn((char *) body->data, len);
        if (s != NULL || len == 0 || max - len == 3) {
            break;
        }
    }

    return s;
}


/*
 * A request nobody waits for (DELETE of a session, a cancellation): its
 * own pool, as the request that wanted it may be gone before it ends.
 * Skipped when the worker is shutting down, not to hold the exit.
 */
static void
ngx_astralform_mcp_fire(ngx_str_t *url, const char *method, ngx_str_t *sid,
    ngx_str_t *protocol, json_t *body)
{
    ngx_str_t                   m, s, v;
    ngx_pool_t                 *pool;
    ngx_astralform_http_req_t  *hr;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    pool = ngx_create_pool(2048, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    hr = ngx_astralform_http_create(pool, pool->log);
    if (hr == NULL) {
        goto failed;
    }

    m.data = (u_char *) method;
    m.len = ngx_strlen(method);

    s.len = 0;
    v.len = 0;

    if (ngx_astralform_mcp_copy(pool, &hr->method, &m) != NGX_OK
        || ngx_astralform_mcp_copy(pool, &hr->url, url) != NGX_OK
        || (sid != NULL && ngx_astralform_mcp_copy(pool, &s, sid) != NGX_OK)
        || (protocol != NULL
            && ngx_astralform_mcp_copy(pool, &v, protocol) != NGX_OK)
        || ngx_astralform_mcp_set_body(hr, body) != NGX_OK
        || ngx_astralform_mcp_headers(hr, s.len ? &s : NULL,
                                      v.len ? &v : NULL)
           != NGX_OK)
    {
        goto failed;
    }

    hr->timeout = NGX_ASTRALFORM_MCP_FIRE_TIMEOUT;
    hr->done = ngx_astralform_mcp_fire_done;

    if (ngx_astralform_http_start(hr) == NGX_OK) {
        return;
    }

failed:

    ngx_destroy_pool(pool);
}


static void
ngx_astralform_mcp_fire_done(ngx_astralform_http_req_t *hr)
{
    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, hr->log, 0,
                   "astralform mcp: %V to \"%V\" answered %ui",
                   &hr->method, &hr->host, hr->status);

    ngx_destroy_pool(hr->pool);
}


/*
 * The cache entry of conn's server, with a reference, created when
 * missing; NULL when memory runs out (the caller goes on uncached).
 */
static ngx_astralform_mcp_server_t *
ngx_astralform_mcp_server_get(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn)
{
    ngx_pool_t                   *pool;
    ngx_queue_t                  *q, *next;
    ngx_pool_cleanup_t           *cln;
    ngx_astralform_mcp_cache_t   *cache;
    ngx_astralform_mcp_server_t  *server;

    cache = &ngx_astralform_mcp_cache;

    if (!cache->init) {
        ngx_queue_init(&cache->servers);

        /* the worker's exit destroys the cycle's pool, entries with it */

        cln = ngx_pool_cleanup_add(ngx_cycle->pool, 0);
        if (cln == NULL) {
            return NULL;
        }

        cln->handler = ngx_astralform_mcp_cache_cleanup;
        cln->data = cache;
        cache->init = 1;
    }

    for (q = ngx_queue_head(&cache->servers);
         q != ngx_queue_sentinel(&cache->servers);
         q = next)
    {
        next = ngx_queue_next(q);
        server = ngx_queue_data(q, ngx_astralform_mcp_server_t, queue);

        if (!ngx_astralform_mcp_server_of(server, ctx, conn)) {
            continue;
        }

        if (server->url.len == conn->mcp_url.len
            && ngx_strncmp(server->url.data, conn->mcp_url.data,
                           server->url.len) == 0)
        {
            ngx_queue_remove(q);
            ngx_queue_insert_head(&cache->servers, q);
            server->refs++;
            server->used = ngx_current_msec;
            return server;
        }

        /* the connector moved to another URL: close the old session */

        if (server->refs == 0) {
            ngx_astralform_mcp_server_free(server, 1);
        }
    }

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    server = ngx_pcalloc(pool, sizeof(ngx_astralform_mcp_server_t));
    if (server == NULL
        || ngx_astralform_mcp_copy(pool, &server->project, &ctx->project->id)
           != NGX_OK
        || ngx_astralform_mcp_copy(pool, &server->connector, &conn->id)
           != NGX_OK
        || ngx_astralform_mcp_copy(pool, &server->url, &conn->mcp_url)
           != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return NULL;
    }

    server->pool = pool;
    ngx_queue_init(&server->waiting);
    server->sid.data = server->sid_data;
    server->protocol.data = server->protocol_data;
    server->refs = 1;
    server->used = ngx_current_msec;

    ngx_queue_insert_head(&cache->servers, &server->queue);
    cache->nservers++;

    ngx_astralform_mcp_sweep();

    return server;
}


static void
ngx_astralform_mcp_server_release(ngx_astralform_mcp_server_t *server)
{
    server->refs--;
    server->used = ngx_current_msec;

    ngx_astralform_mcp_sweep();
}


/* the server answered 404 to sid: the entry's session, if it is that one */
static void
ngx_astralform_mcp_server_forget(ngx_astralform_mcp_server_t *server,
    ngx_str_t *sid)
{
    if (server->ready && server->sid.len == sid->len
        && ngx_strncmp(server->sid.data, sid->data, sid->len) == 0)
    {
        ngx_astralform_mcp_unregister(server);
        server->ready = 0;
        server->sid.len = 0;
        server->protocol.len = 0;
    }
}


static void
ngx_astralform_mcp_server_free(ngx_astralform_mcp_server_t *server,
    ngx_uint_t close)
{
    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "astralform mcp: dropping server \"%V\" of \"%V\"",
                   &server->connector, &server->project);

    if (close && server->ready && server->sid.len) {
        ngx_astralform_mcp_fire(&server->url, "DELETE", &server->sid,
                                &server->protocol, NULL);
        ngx_astralform_mcp_unregister(server);
    }

    ngx_queue_remove(&server->queue);
    ngx_astralform_mcp_cache.nservers--;

    json_decref(server->tools);
    ngx_destroy_pool(server->pool);
}


/* over the bound, or idle for long: the least recently used go */
static void
ngx_astralform_mcp_sweep(void)
{
    ngx_queue_t                  *q, *prev;
    ngx_astralform_mcp_cache_t   *cache;
    ngx_astralform_mcp_server_t  *server;

    cache = &ngx_astralform_mcp_cache;

    for (q = ngx_queue_last(&cache->servers);
         q != ngx_queue_sentinel(&cache->servers);
         q = prev)
    {
        prev = ngx_queue_prev(q);
        server = ngx_queue_data(q, ngx_astralform_mcp_server_t, queue);

        if (server->refs) {
            continue;
        }

        if (cache->nservers > NGX_ASTRALFORM_MCP_MAX_SERVERS
            || ngx_current_msec - server->used > NGX_ASTRALFORM_MCP_IDLE)
        {
            ngx_astralform_mcp_server_free(server, 1);
            continue;
        }

        /* the rest were used more recently */

        if (cache->nservers <= NGX_ASTRALFORM_MCP_MAX_SERVERS) {
            break;
        }
    }
}


static void
ngx_astralform_mcp_cache_cleanup(void *data)
{
    ngx_astralform_mcp_cache_t  *cache = data;

    ngx_queue_t                  *q;
    ngx_astralform_mcp_server_t  *server;

    while (!ngx_queue_empty(&cache->servers)) {
        q = ngx_queue_head(&cache->servers);
        server = ngx_queue_data(q, ngx_astralform_mcp_server_t, queue);
        ngx_astralform_mcp_server_free(server, 0);
    }

    cache->init = 0;
}


/* whether a cached server is the one of this project's connector */

static ngx_uint_t
ngx_astralform_mcp_server_of(ngx_astralform_mcp_server_t *server,
    ngx_astralform_ctx_t *ctx, ngx_astralform_connector_t *conn)
{
    return server->project.len == ctx->project->id.len
           && ngx_strncmp(server->project.data, ctx->project->id.data,
                          server->project.len) == 0
           && server->connector.len == conn->id.len
           && ngx_strncmp(server->connector.data, conn->id.data,
                          conn->id.len) == 0;
}


/*
 * The session the worker keeps for a server, recorded in Redis, sealed (an
 * Mcp-Session-Id lets whoever holds it act in the session), so that
 * disabling the connector closes the sessions of every worker of every
 * instance at once, not at their idle sweep.
 */
static void
ngx_astralform_mcp_register(ngx_astralform_mcp_op_t *op,
    ngx_astralform_mcp_server_t *server)
{
    char                  *text;
    json_t                *json;
    ngx_str_t              key, aad, plain, blob, argv[4];
    ngx_pool_t            *pool;
    ngx_astralform_ctx_t  *ctx;

    if (server->sid.len == 0) {
        /* a stateless server: nothing to close */
        return;
    }

    ctx = op->ctx;
    pool = ctx->request->pool;

    json = json_pack("{s:s%, s:s%, s:s%}",
                     "url", server->url.data, server->url.len,
                     "sid", server->sid.data, server->sid.len,
                     "protocol", server->protocol.data, server->protocol.len);
    text = json ? json_dumps(json, JSON_COMPACT) : NULL;
    json_decref(json);

    if (text == NULL) {
        return;
    }

    plain.data = (u_char *) text;
    plain.len = ngx_strlen(text);

    if (ngx_astralform_key(ctx, &key, "mcp_sessions", &op->conn->id)
        == NGX_OK
        && ngx_astralform_mcp_copy(server->pool, &server->reg_key, &key)
           == NGX_OK
        && ngx_astralform_random_token(server->pool, &server->reg_field, 12)
           == NGX_OK
        && ngx_astralform_aad(pool, &aad, &ctx->project->id, &op->conn->id,
                              "mcp_session", NULL) == NGX_OK
        && ngx_astralform_seal(pool, &ctx->amcf->keys, &aad, &plain, &blob)
           == NGX_OK)
    {
        ngx_str_set(&argv[0], "HSET");
        argv[1] = key;
        argv[2] = server->reg_field;
        argv[3] = blob;

        /* best effort: without it, the idle sweep closes the session */
        (void) ngx_astralform_redis_send(NULL, ngx_cycle->log,
                                         ngx_astralform_mcp_redis_ignore,
                                         NULL, 4, argv);

        /* the records of workers that died go in a day */
        ngx_str_set(&argv[0], "EXPIRE");
        ngx_str_set(&argv[2], "86400");
        (void) ngx_astralform_redis_send(NULL, ngx_cycle->log,
                                         ngx_astralform_mcp_redis_ignore,
                                         NULL, 3, argv);

    } else {
        server->reg_field.len = 0;
    }

    ngx_explicit_memzero(text, plain.len);
    ngx_free(text);
}


static void
ngx_astralform_mcp_unregister(ngx_astralform_mcp_server_t *server)
{
    ngx_str_t  argv[3];

    if (server->reg_field.len == 0) {
        return;
    }

    ngx_str_set(&argv[0], "HDEL");
    argv[1] = server->reg_key;
    argv[2] = server->reg_field;

    (void) ngx_astralform_redis_send(NULL, ngx_cycle->log,
                                     ngx_astralform_mcp_redis_ignore, NULL,
                                     3, argv);

    server->reg_field.len = 0;
}


/* every recorded session of a disabled connector, taken in one step */
static const char  ngx_astralform_mcp_take_lua[] =
    "local v = redis.call('HVALS', KEYS[1]) "
    "redis.call('DEL', KEYS[1]) "
    "return v";


typedef struct {
    ngx_astralform_ctx_t          *ctx;
    ngx_str_t                      connector;
} ngx_astralform_mcp_close_t;


void
ngx_astralform_mcp_close_sessions(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn)
{
    ngx_str_t                     argv[4];
    ngx_pool_t                   *pool;
    ngx_queue_t                  *q, *next;
    ngx_astralform_mcp_cache_t   *cache;
    ngx_astralform_mcp_close_t   *cl;
    ngx_astralform_mcp_server_t  *server;

    cache = &ngx_astralform_mcp_cache;

    /* this worker's entries go quietly: the record closes their sessions */

    for (q = cache->init ? ngx_queue_head(&cache->servers) : NULL;
         q != NULL && q != ngx_queue_sentinel(&cache->servers);
         q = next)
    {
        next = ngx_queue_next(q);
        server = ngx_queue_data(q, ngx_astralform_mcp_server_t, queue);

        if (!ngx_astralform_mcp_server_of(server, ctx, conn)) {
            continue;
        }

        server->ready = 0;
        server->sid.len = 0;
        server->reg_field.len = 0;

        if (server->refs == 0) {
            ngx_astralform_mcp_server_free(server, 0);
        }
    }

    /* the answer goes first: the closing lives in a pool of its own */

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    cl = ngx_palloc(pool, sizeof(ngx_astralform_mcp_close_t));
    if (cl == NULL) {
        goto failed;
    }

    cl->ctx = ngx_astralform_ctx_detached(pool, ctx->amcf, ctx->project);

    if (cl->ctx == NULL
        || ngx_astralform_str_copy(pool, &cl->connector, &conn->id) != NGX_OK
        || ngx_astralform_key(cl->ctx, &argv[3], "mcp_sessions", &conn->id)
           != NGX_OK)
    {
        goto failed;
    }

    ngx_str_set(&argv[0], "EVAL");
    argv[1].data = (u_char *) ngx_astralform_mcp_take_lua;
    argv[1].len = sizeof(ngx_astralform_mcp_take_lua) - 1;
    ngx_str_set(&argv[2], "1");

    if (ngx_astralform_redis_send(pool, pool->log, ngx_astralform_mcp_taken,
                                  cl, 4, argv)
        != NULL)
    {
        return;
    }

failed:

    ngx_destroy_pool(pool);
}


static void
ngx_astralform_mcp_taken(redisReply *reply, void *data)
{
    ngx_astralform_mcp_close_t *cl = data;

    size_t                 i;
    json_t                *json;
    ngx_str_t              aad, blob, plain, url, sid, protocol;
    ngx_uint_t             closed;
    ngx_pool_t            *pool;
    ngx_astralform_ctx_t  *ctx;

    ctx = cl->ctx;
    pool = ctx->request->pool;
    closed = 0;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || ngx_astralform_aad(pool, &aad, &ctx->project->id, &cl->connector,
                              "mcp_session", NULL) != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return;
    }

    for (i = 0; i < reply->elements; i++) {
        if (reply->element[i]->type != REDIS_REPLY_STRING) {
            continue;
        }

        blob.data = (u_char *) reply->element[i]->str;
        blob.len = reply->element[i]->len;

        if (ngx_astralform_open(pool, &ctx->amcf->keys, &aad, &blob, &plain,
                                NULL)
            != NGX_OK)
        {
            continue;
        }

        json = json_loadb((char *) plain.data, plain.len, 0, NULL);
        ngx_explicit_memzero(plain.data, plain.len);

        url.data = (u_char *) ngx_astralform_json_value(json, "url");
        sid.data = (u_char *) ngx_astralform_json_value(json, "sid");
        protocol.data = (u_char *) ngx_astralform_json_value(json,
                                                             "protocol");

        if (url.data != NULL && sid.data != NULL && protocol.data != NULL) {
            url.len = ngx_strlen(url.data);
            sid.len = ngx_strlen(sid.data);
            protocol.len = ngx_strlen(protocol.data);

            ngx_astralform_mcp_fire(&url, "DELETE", &sid, &protocol, NULL);
            closed++;
        }

        json_decref(json);
    }

    ngx_log_error(NGX_LOG_INFO, pool->log, 0,
                  "astralform: closed %ui sessions of remote MCP connector "
                  "\"%V\"", closed, &cl->connector);

    ngx_destroy_pool(pool);
}


static void
ngx_astralform_mcp_redis_ignore(redisReply *reply, void *data)
{
}
