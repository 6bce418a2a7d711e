/*
 * Troubleshooting: why does an agent not get a connector's tools, or why
 * does a call answer auth_required? Three checks for one connector, agent
 * and end user, each with "ok" and a hint that says what to do:
 *
 *   is_enabled     the project has the connector
 *   assigned       the agent may use it (no agent given: not checked)
 *   authenticated  the user's credential is there and usable, or the
 *                  connector needs none (no user given: not checked)
 *
 * "ok" is null for a check that was not run. The HTTP row and the admin
 * MCP tool astralform_connector_status both run ngx_astralform_diagnose().
 */


#include "ngx_astralform.h"
#include "ngx_astralform_tokens.h"


static void ngx_astralform_diagnose_loaded(ngx_astralform_ctx_t *ctx);
static void ngx_astralform_diagnose_token(ngx_astralform_ctx_t *ctx,
    ngx_int_t rc, ngx_astralform_token_t *tok);
static json_t *ngx_astralform_diagnose_assigned(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn);
static json_t *ngx_astralform_diagnose_auth(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_astralform_token_t *tok);
static void ngx_astralform_diagnose_send(ngx_astralform_ctx_t *ctx,
    json_t *enabled, json_t *assigned, json_t *auth);
static json_t *ngx_astralform_check(int ok, const char *fmt, ...);
static ngx_int_t ngx_astralform_diagnose_arg(ngx_astralform_ctx_t *ctx,
    const char *name, ngx_str_t *dst);


ngx_int_t
ngx_astralform_diagnose_handler(ngx_astralform_ctx_t *ctx)
{
    if (!ngx_astralform_is_admin(ctx)) {
        return ngx_astralform_admin_required(ctx);
    }

    if (ngx_astralform_diagnose_arg(ctx, "connector", &ctx->connector_id)
        != NGX_OK
        || ngx_astralform_diagnose_arg(ctx, "agent", &ctx->agent) != NGX_OK
        || ngx_astralform_diagnose_arg(ctx, "user", &ctx->user) != NGX_OK
        || ctx->connector_id.len == 0)
    {
        return ngx_astralform_send_error(ctx, NGX_HTTP_BAD_REQUEST,
                                         "invalid_request",
                                         "give connector=ID, and optionally "
                                         "agent=ID and user=ID (1 to 128 "
                                         "letters, digits or \"._:@-\")");
    }

    return ngx_astralform_diagnose(ctx);
}


/* ctx->connector_id, ctx->agent and ctx->user (may be empty) are set */
ngx_int_t
ngx_astralform_diagnose(ngx_astralform_ctx_t *ctx)
{
    return ngx_astralform_load_project(ctx, 1,
                                       ngx_astralform_diagnose_loaded);
}


static void
ngx_astralform_diagnose_loaded(ngx_astralform_ctx_t *ctx)
{
    ngx_astralform_connector_t  *conn;

    conn = ngx_astralform_find_connector(ctx, &ctx->connector_id);

    if (conn == NULL) {
        ngx_astralform_diagnose_send(ctx,
            ngx_astralform_check(0, "the project has no connector \"%V\": "
                                 "enable it with POST /v1/projects/%V/"
                                 "connectors (or astralform_connector in "
                                 "nginx.conf)", &ctx->connector_id,
                                 &ctx->project->id),
            ngx_astralform_check(-1, "enable the connector first"),
            ngx_astralform_check(-1, "enable the connector first"));
        return;
    }

    ctx->data = conn;

    if (ctx->user.len && conn->def->type != NGX_ASTRALFORM_REMOTE_MCP) {
        ngx_astralform_token_get(ctx, conn, ngx_astralform_diagnose_token);
        return;
    }

    ngx_astralform_diagnose_token(ctx, NGX_DECLINED, NULL);
}


static void
ngx_astralform_diagnose_token(ngx_astralform_ctx_t *ctx, ngx_int_t rc,
    ngx_astralform_token_t *tok)
{
    ngx_astralform_connector_t  *conn;

    if (rc == NGX_ERROR) {
        ngx_astralform_store_unavailable(ctx);
        return;
    }

    conn = ctx->data;

    ngx_astralform_diagnose_send(ctx,
        ngx_astralform_check(1, "enabled (source \"%s\")",
                             conn->from_config ? "config" : "api"),
        ngx_astralform_diagnose_assigned(ctx, conn),
        ngx_astralform_diagnose_auth(ctx, conn, rc == NGX_OK ? tok : NULL));
}


static json_t *
ngx_astralform_diagnose_assigned(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn)
{
    if (ctx->agent.len == 0) {
        return ngx_astralform_check(-1, "give agent= to check an agent's "
                                    "assignment");
    }

    if (ctx->assignment == NULL) {
        return ngx_astralform_check(1, "agent \"%V\" has no assignment, so "
                                    "it sees every enabled connector",
                                    &ctx->agent);
    }

    if (ngx_astralform_connector_visible(ctx, conn)) {
        return ngx_astralform_check(1, "agent \"%V\" is assigned \"%V\" "
                                    "(source \"%s\")", &ctx->agent,
                                    &conn->id,
                                    ctx->assignment_set ? "api" : "config");
    }

    return ngx_astralform_check(0, "agent \"%V\" is not assigned \"%V\": "
                                "add it with PUT /v1/projects/%V/agents/%V/"
                                "connectors", &ctx->agent, &conn->id,
                                &ctx->project->id, &ctx->agent);
}


static json_t *
ngx_astralform_diagnose_auth(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_astralform_token_t *tok)
{
    json_t      *check, *row, *status;
    const char  *s;

    if (conn->def->type == NGX_ASTRALFORM_REMOTE_MCP) {
        check = ngx_astralform_check(1, "a remote MCP server needs no "
                                     "end-user credential");
        goto done;
    }

    if (ctx->user.len == 0) {
        check = ngx_astralform_check(-1, "give user= to check an end "
                                     "user's connection");
        goto done;
    }

    row = ngx_astralform_connection_json(ctx, conn, tok);
    if (row == NULL) {
        return NULL;
    }

    status = json_object_get(row, "status");
    s = json_string_value(status);

    if (ngx_strcmp(s, "connected") == 0) {
        check = ngx_astralform_check(1, json_is_true(
                                       json_object_get(row, "refreshable"))
                                     ? "user \"%V\" is connected; the token "
                                       "is refreshed before it expires"
                                     : "user \"%V\" is connected",
                                     &ctx->user);

    } else if (!conn->require_auth) {
        check = ngx_astralform_check(1, "user \"%V\" is %s, but "
                                     "require_auth is off: calls go out "
                                     "without their credential",
                                     &ctx->user, s);

    } else if (!conn->allow_end_user_auth) {
        check = ngx_astralform_check(0, "user \"%V\" is %s and end-user "
                                     "authorization is off: turn on "
                                     "allow_end_user_auth (PATCH /v1/"
                                     "projects/%V/connectors/%V)",
                                     &ctx->user, s, &ctx->project->id,
                                     &conn->id);

    } else if (conn->def->type == NGX_ASTRALFORM_API_KEY) {
        check = ngx_astralform_check(0, "user \"%V\" is %s: set their API "
                                     "key with PUT /v1/projects/%V/users/%V/"
                                     "connections/%V", &ctx->user, s,
                                     &ctx->project->id, &ctx->user,
                                     &conn->id);

    } else {
        check = ngx_astralform_check(0, "user \"%V\" is %s: have them "
                                     "open the authorization_url of POST "
                                     "/v1/projects/%V/users/%V/connections/"
                                     "%V/authorize (a tool call answers "
                                     "auth_required with that link)",
                                     &ctx->user, s, &ctx->project->id,
                                     &ctx->user, &conn->id);
    }

    if (check != NULL) {
        json_object_set(check, "status", status);
        json_object_set(check, "expires_at",
                        json_object_get(row, "expires_at"));
    }

    json_decref(row);

done:

    if (check != NULL) {
        json_object_set_new(check, "require_auth",
                            json_boolean(conn->require_auth));
    }

    return check;
}


static void
ngx_astralform_diagnose_send(ngx_astralform_ctx_t *ctx, json_t *enabled,
    json_t *assigned, json_t *auth)
{
    int      ok;
    json_t  *json;

    if (enabled == NULL || assigned == NULL || auth == NULL) {
        json_decref(enabled);
        json_decref(assigned);
        json_decref(auth);
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ok = !json_is_false(json_object_get(enabled, "ok"))
         && !json_is_false(json_object_get(assigned, "ok"))
         && !json_is_false(json_object_get(auth, "ok"));

    json = json_pack("{s:o, s:o, s:o, s:b, s:{s:o, s:o, s:o}}",
                     "connector",
                     ngx_astralform_json_string(&ctx->connector_id),
                     "agent", ctx->agent.len
                              ? ngx_astralform_json_string(&ctx->agent)
                              : json_null(),
                     "user", ctx->user.len
                             ? ngx_astralform_json_string(&ctx->user)
                             : json_null(),
                     "ok", ok,
                     "checks",
                     "is_enabled", enabled,
                     "assigned", assigned,
                     "authenticated", auth);

    ngx_astralform_finish(ctx,
                          ngx_astralform_send_json(ctx, NGX_HTTP_OK, json));
}


/* {"ok": true|false|null (ok < 0: not checked), "hint": "..."} */
static json_t *
ngx_astralform_check(int ok, const char *fmt, ...)
{
    u_char   hint[512], *last;
    va_list  args;

    va_start(args, fmt);
    last = ngx_vslprintf(hint, hint + sizeof(hint), fmt, args);
    va_end(args);

    return json_pack("{s:o, s:s%}",
                     "ok", ok < 0 ? json_null() : json_boolean(ok),
                     "hint", hint, (size_t) (last - hint));
}


/* an optional query argument holding an id; NGX_ERROR when not one */
static ngx_int_t
ngx_astralform_diagnose_arg(ngx_astralform_ctx_t *ctx, const char *name,
    ngx_str_t *dst)
{
    u_char     *p;
    ngx_str_t   value;

    ngx_str_null(dst);

    if (ngx_http_arg(ctx->request, (u_char *) name, ngx_strlen(name), &value)
        != NGX_OK)
    {
        return NGX_OK;
    }

    p = ngx_pnalloc(ctx->request->pool, value.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    dst->data = p;
    ngx_unescape_uri(&p, &value.data, value.len, NGX_UNESCAPE_URI);
    dst->len = p - dst->data;

    if (!ngx_astralform_valid_identity(dst)) {
        return NGX_ERROR;
    }

    return NGX_OK;
}
