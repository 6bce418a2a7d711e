/*
 * The confirmation step of a connect link. A connect link is a bearer
 * link: whoever opens it first would connect their own account under the
 * link's user. So opening it (GET) only shows a page naming the project,
 * the connector and the user, and spends nothing; the page's form POSTs
 * back and only that POST spends the session and sends the browser to the
 * provider (ngx_astralform_oauth.c).
 *
 * The POST is CSRF-safe: it must carry a token that is an HMAC (key
 * derived from the sealing key) of the session and of a random value kept
 * in an HttpOnly, SameSite=Strict cookie set with the page, so only the
 * browser that was shown the page can confirm it; a cross-site
 * Sec-Fetch-Site or a foreign Origin is refused outright. The token is
 * one-time: the session it names is deleted by the POST.
 *
 * The page has no script, a strict policy (form-action: the gateway and
 * the provider's consent origin only) and is never framed; every name on
 * it is HTML-escaped.
 */


#include "ngx_astralform.h"
#include "ngx_astralform_oauth.h"
#include "ngx_astralform_oauth_internal.h"


#define NGX_ASTRALFORM_CONFIRM_COOKIE    "astralform_confirm_"
#define NGX_ASTRALFORM_CONFIRM_ID        12      /* session chars in name */
#define NGX_ASTRALFORM_CONFIRM_NONCE     16      /* random bytes */
#define NGX_ASTRALFORM_CONFIRM_PURPOSE   "astralform connect confirmation v1"
#define NGX_ASTRALFORM_CONFIRM_PATH      "/v1/connectors/oauth/authorize"


static ngx_int_t ngx_astralform_confirm_cookie_name(ngx_pool_t *pool,
    ngx_str_t *session, ngx_str_t *name);
static ngx_int_t ngx_astralform_confirm_token(ngx_astralform_ctx_t *ctx,
    ngx_str_t *session, ngx_str_t *nonce, ngx_str_t *token);
static ngx_int_t ngx_astralform_confirm_nonce(ngx_astralform_ctx_t *ctx,
    ngx_str_t *name, ngx_str_t *nonce);
static ngx_int_t ngx_astralform_confirm_csp(ngx_astralform_ctx_t *ctx,
    ngx_astralform_flow_t *flow);
static ngx_int_t ngx_astralform_confirm_same_origin(ngx_astralform_ctx_t *ctx);
static u_char *ngx_astralform_confirm_escape(u_char *p, ngx_str_t *s);
static size_t ngx_astralform_confirm_escaped_len(ngx_str_t *s);


void
ngx_astralform_oauth_confirm_page(ngx_astralform_ctx_t *ctx,
    ngx_astralform_flow_t *flow)
{
    u_char              *page, *p;
    size_t               len;
    ngx_str_t            name, nonce, token, action, *strs[7];
    ngx_uint_t           i;
    ngx_pool_t          *pool;
    ngx_http_request_t  *r;

    static ngx_str_t  none = ngx_string("-");

    r = ctx->request;
    pool = r->pool;

    if (ngx_astralform_confirm_cookie_name(pool, &flow->session, &name)
        != NGX_OK
        || ngx_astralform_confirm_nonce(ctx, &name, &nonce) != NGX_OK
        || ngx_astralform_confirm_token(ctx, &flow->session, &nonce, &token)
           != NGX_OK
        || ngx_astralform_confirm_csp(ctx, flow) != NGX_OK)
    {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    /* the cookie the POST must bring back */

    flow->cookie.len = name.len + nonce.len
                       + sizeof("=; Path=" NGX_ASTRALFORM_CONFIRM_PATH
                                "; Max-Age=; HttpOnly; SameSite=Strict; "
                                "Secure")
                       + NGX_TIME_T_LEN;
    flow->cookie.data = ngx_pnalloc(pool, flow->cookie.len);

    action.len = ctx->amcf->public_url.len
                 + sizeof(NGX_ASTRALFORM_CONFIRM_PATH) - 1;
    action.data = ngx_pnalloc(pool, action.len);

    if (flow->cookie.data == NULL || action.data == NULL) {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ngx_sprintf(flow->cookie.data, "%V=%V; Path="
                    NGX_ASTRALFORM_CONFIRM_PATH "; Max-Age=%T; HttpOnly; "
                    "SameSite=Strict", &name, &nonce,
                    (time_t) (ctx->amcf->session_ttl / 1000));

    if (ctx->amcf->public_url.len > 8
        && ngx_strncasecmp(ctx->amcf->public_url.data, (u_char *) "https:",
                           6) == 0)
    {
        p = ngx_cpymem(p, "; Secure", 8);
    }

    flow->cookie.len = p - flow->cookie.data;

    ngx_sprintf(action.data, "%V" NGX_ASTRALFORM_CONFIRM_PATH,
                &ctx->amcf->public_url);

    /* the page: every value escaped, no script */

    strs[0] = &flow->conn->def->name;
    strs[1] = &flow->conn->def->name;
    strs[2] = &ctx->project->id;
    strs[3] = &ctx->user;
    strs[4] = ctx->agent.len ? &ctx->agent : &none;
    strs[5] = &action;
    strs[6] = &flow->conn->def->name;

    len = 1024 + 6 * flow->session.len + token.len;

    for (i = 0; i < 7; i++) {
        len += ngx_astralform_confirm_escaped_len(strs[i]);
    }

    page = ngx_pnalloc(pool, len);
    if (page == NULL) {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ngx_cpymem(page, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n"
                   "<meta charset=\"utf-8\">\n<meta name=\"viewport\" "
                   "content=\"width=device-width, initial-scale=1\">\n"
                   "<title>Connect ", sizeof("<!DOCTYPE html>\n<html "
                   "lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta "
                   "name=\"viewport\" content=\"width=device-width, "
                   "initial-scale=1\">\n<title>Connect ") - 1);
    p = ngx_astralform_confirm_escape(p, strs[0]);
    p = ngx_sprintf(p, "?</title>\n</head>\n<body style=\"font-family: "
                    "sans-serif; max-width: 36em; margin: 4em auto; "
                    "padding: 0 1em\">\n<h1>Connect ");
    p = ngx_astralform_confirm_escape(p, strs[1]);
    p = ngx_sprintf(p, "?</h1>\n<p>The application <strong>");
    p = ngx_astralform_confirm_escape(p, strs[2]);
    p = ngx_sprintf(p, "</strong> asks to connect your account for its user "
                    "<strong>");
    p = ngx_astralform_confirm_escape(p, strs[3]);
    p = ngx_sprintf(p, "</strong> (agent <strong>");
    p = ngx_astralform_confirm_escape(p, strs[4]);
    p = ngx_sprintf(p, "</strong>).</p>\n<p>Continue only if you asked for "
                    "this yourself, just now, in that application. If "
                    "someone sent you this link, close this window.</p>\n"
                    "<form method=\"post\" action=\"");
    p = ngx_astralform_confirm_escape(p, strs[5]);
    p = ngx_sprintf(p, "\">\n<input type=\"hidden\" name=\"session\" "
                    "value=\"");
    p = ngx_astralform_confirm_escape(p, &flow->session);
    p = ngx_sprintf(p, "\">\n<input type=\"hidden\" name=\"csrf\" "
                    "value=\"%V\">\n<button type=\"submit\">Continue to ",
                    &token);
    p = ngx_astralform_confirm_escape(p, strs[6]);
    p = ngx_sprintf(p, "</button>\n</form>\n</body>\n</html>\n");

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "astralform: user \"%V\" of project \"%V\" shown the "
                  "confirmation for \"%V\"", &ctx->user, &ctx->project->id,
                  &flow->connector);

    ngx_astralform_oauth_html(ctx, NGX_HTTP_OK, page, p - page);
}


ngx_int_t
ngx_astralform_oauth_confirm_check(ngx_astralform_ctx_t *ctx,
    ngx_astralform_flow_t *flow, ngx_str_t *session)
{
    ngx_int_t   rc;
    ngx_str_t   body;

    if (ngx_astralform_confirm_same_origin(ctx) != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, ctx->request->connection->log, 0,
                      "astralform: cross-site connect confirmation refused");

        ngx_astralform_oauth_page(ctx, NGX_HTTP_FORBIDDEN,
                                  "confirmation_failed",
                                  "Please confirm again",
                                  "This confirmation was sent by another "
                                  "site. Open the connect link again.");
        return NGX_DONE;
    }

    rc = ngx_astralform_request_body(ctx, &body);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_null(session);

    if (rc == NGX_OK
        && ngx_astralform_oauth_form_arg(ctx->request->pool, &body,
                                         "session", session) == NGX_OK
        && ngx_astralform_oauth_form_arg(ctx->request->pool, &body,
                                         "csrf", &flow->csrf) == NGX_OK)
    {
        return NGX_OK;
    }

    /* the caller answers invalid_session for an empty session */
    ngx_str_null(session);

    return NGX_OK;
}


ngx_int_t
ngx_astralform_oauth_confirm_token_ok(ngx_astralform_ctx_t *ctx,
    ngx_astralform_flow_t *flow)
{
    ngx_str_t   name, nonce, token;

    if (ngx_astralform_confirm_cookie_name(ctx->request->pool,
                                           &flow->session, &name)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_parse_multi_header_lines(&ctx->request->headers_in.cookies,
                                          &name, &nonce)
        == NGX_DECLINED
        || nonce.len == 0
        || ngx_astralform_confirm_token(ctx, &flow->session, &nonce, &token)
           != NGX_OK)
    {
        return NGX_DECLINED;
    }

    return ngx_astralform_secret_eq(&token, &flow->csrf) ? NGX_OK
                                                         : NGX_DECLINED;
}


/* astralform_confirm_<12 chars of the session id> */
static ngx_int_t
ngx_astralform_confirm_cookie_name(ngx_pool_t *pool, ngx_str_t *session,
    ngx_str_t *name)
{
    u_char  *dot;
    size_t   n;

    dot = ngx_strlchr(session->data, session->data + session->len, '.');
    if (dot == NULL) {
        return NGX_ERROR;
    }

    dot++;
    n = ngx_min((size_t) (session->data + session->len - dot),
                NGX_ASTRALFORM_CONFIRM_ID);

    name->len = sizeof(NGX_ASTRALFORM_CONFIRM_COOKIE) - 1 + n;
    name->data = ngx_pnalloc(pool, name->len);
    if (name->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(name->data, NGX_ASTRALFORM_CONFIRM_COOKIE "%*s", n, dot);

    return NGX_OK;
}


/* HMAC(session "|" nonce): ties the token to the session and the cookie */
static ngx_int_t
ngx_astralform_confirm_token(ngx_astralform_ctx_t *ctx, ngx_str_t *session,
    ngx_str_t *nonce, ngx_str_t *token)
{
    ngx_str_t  data;

    data.len = session->len + 1 + nonce->len;
    data.data = ngx_pnalloc(ctx->request->pool, data.len);
    if (data.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(data.data, "%V|%V", session, nonce);

    return ngx_astralform_mac_b64url(ctx->request->pool, &ctx->amcf->keys,
                                     NGX_ASTRALFORM_CONFIRM_PURPOSE, &data,
                                     token);
}


/* the browser's nonce when it already has one (two tabs), else a new one */
static ngx_int_t
ngx_astralform_confirm_nonce(ngx_astralform_ctx_t *ctx, ngx_str_t *name,
    ngx_str_t *nonce)
{
    u_char      c;
    ngx_uint_t  i;

    if (ngx_http_parse_multi_header_lines(&ctx->request->headers_in.cookies,
                                          name, nonce)
        != NGX_DECLINED
        && nonce->len == ngx_base64_encoded_length(
                             NGX_ASTRALFORM_CONFIRM_NONCE) - 2)
    {
        for (i = 0; i < nonce->len; i++) {
            c = nonce->data[i];

            if (!(isalnum(c) || c == '-' || c == '_')) {
                break;
            }
        }

        if (i == nonce->len) {
            return NGX_OK;
        }
    }

    return ngx_astralform_random_token(ctx->request->pool, nonce,
                                       NGX_ASTRALFORM_CONFIRM_NONCE);
}


/* the form may only go to the gateway; its redirect, to the provider */
static ngx_int_t
ngx_astralform_confirm_csp(ngx_astralform_ctx_t *ctx,
    ngx_astralform_flow_t *flow)
{
    u_char     *p;
    ngx_str_t   gateway, provider;

    if (ngx_astralform_oauth_origin(&ctx->amcf->public_url, &gateway)
        != NGX_OK
        || ngx_astralform_oauth_origin(&flow->conn->def->authorize_url,
                                       &provider)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    flow->csp.len = sizeof("default-src 'none'; style-src 'unsafe-inline'; "
                           "frame-ancestors 'none'; base-uri 'none'; "
                           "form-action 'self'  ") - 1
                    + gateway.len + provider.len;
    flow->csp.data = ngx_pnalloc(ctx->request->pool, flow->csp.len);
    if (flow->csp.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(flow->csp.data, "default-src 'none'; style-src "
                    "'unsafe-inline'; frame-ancestors 'none'; base-uri "
                    "'none'; form-action 'self' %V %V", &gateway, &provider);
    flow->csp.len = p - flow->csp.data;

    return NGX_OK;
}


/*
 * Sec-Fetch-Site, when the browser sends it, must be same-origin; Origin,
 * when sent, must be the gateway's public origin. A browser without
 * either still needs the cookie and the token.
 */
static ngx_int_t
ngx_astralform_confirm_same_origin(ngx_astralform_ctx_t *ctx)
{
    ngx_str_t   name, *v, gateway;

    ngx_str_set(&name, "Sec-Fetch-Site");
    v = ngx_astralform_header(ctx->request, &name);

    if (v != NULL && !ngx_astralform_str_is(v, "same-origin")) {
        return NGX_DECLINED;
    }

    ngx_str_set(&name, "Origin");
    v = ngx_astralform_header(ctx->request, &name);

    if (v == NULL) {
        return NGX_OK;
    }

    if (ngx_astralform_oauth_origin(&ctx->amcf->public_url, &gateway)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (v->len != gateway.len
        || ngx_strncasecmp(v->data, gateway.data, v->len) != 0)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static u_char *
ngx_astralform_confirm_escape(u_char *p, ngx_str_t *s)
{
    return (u_char *) ngx_escape_html(p, s->data, s->len);
}


static size_t
ngx_astralform_confirm_escaped_len(ngx_str_t *s)
{
    return s->len + ngx_escape_html(NULL, s->data, s->len);
}
