/*
 * What the OAuth files share, and nothing else includes:
 *
 *   ngx_astralform_oauth.c          connect sessions, authorize, callback
 *   ngx_astralform_oauth_token.c    the provider's token endpoint
 *   ngx_astralform_oauth_refresh.c  refresh under a Redis lock
 *   ngx_astralform_oauth_revoke.c   revocation at the provider
 *   ngx_astralform_oauth_page.c     browser answers
 *   ngx_astralform_oauth_util.c     helpers
 *
 * The rest of the module uses ngx_astralform_oauth.h.
 */

#ifndef _NGX_ASTRALFORM_OAUTH_INTERNAL_H_INCLUDED_
#define _NGX_ASTRALFORM_OAUTH_INTERNAL_H_INCLUDED_


#include "ngx_astralform.h"
#include "ngx_astralform_oauth.h"


typedef struct ngx_astralform_exchange_s  ngx_astralform_exchange_t;

typedef void (*ngx_astralform_exchange_pt)(ngx_astralform_exchange_t *ex);


/* one call of a provider's token endpoint */
struct ngx_astralform_exchange_s {
    ngx_astralform_ctx_t         *ctx;
    ngx_astralform_connector_t   *conn;
    ngx_astralform_http_req_t    *hr;
    ngx_astralform_exchange_pt    done;
    void                         *data;
    ngx_msec_t                    timeout;
    ngx_uint_t                    refresh;

    /*
     * NGX_OK: tok is filled; NGX_DECLINED: the grant is dead (refresh) or
     * the provider refused (code); NGX_ERROR: unavailable, try again later
     */
    ngx_int_t                     rc;
    ngx_uint_t                    timed_out;
    u_char                        reason[64];
    ngx_astralform_token_t        tok;
};


/* a browser flow, from the session or the state record (ctx->data) */
typedef struct {
    ngx_str_t                     id;           /* STATE */
    ngx_str_t                     connector;
    ngx_str_t                     return_url;
    ngx_str_t                     verifier;
    ngx_str_t                     binding;
    ngx_str_t                     issuer;
    ngx_str_t                     token_url;
    ngx_str_t                     code;
    ngx_str_t                     error;
    ngx_str_t                     iss;
    ngx_str_t                     cookie;       /* name=value */
    ngx_str_t                     location;
    ngx_str_t                     blob;         /* the state as read */
    ngx_str_t                     csp;          /* page policy, or the
                                                   default */
    ngx_str_t                     session;      /* "<PID>.<SID>" */
    ngx_str_t                     csrf;         /* the form's token */
    ngx_astralform_connector_t   *conn;
    ngx_astralform_exchange_t     ex;
    unsigned                      has_iss:1;
    unsigned                      confirmed:1;  /* the POST of the page */
} ngx_astralform_flow_t;


/*
 * token: calls conn's token endpoint with the grant's params (the client's
 * credentials are added here); ex->done(ex) follows unless NGX_ERROR
 */
ngx_int_t ngx_astralform_oauth_exchange_start(ngx_astralform_exchange_t *ex,
    json_t *params);

/* page: answer the browser and finish the request */
void ngx_astralform_oauth_page(ngx_astralform_ctx_t *ctx,
    ngx_uint_t status, const char *error, const char *title,
    const char *fmt, ...);
void ngx_astralform_oauth_redirect(ngx_astralform_ctx_t *ctx,
    ngx_str_t *location, ngx_str_t *cookie);

/* confirm: the page naming what is being connected, and its POST */
void ngx_astralform_oauth_confirm_page(ngx_astralform_ctx_t *ctx,
    ngx_astralform_flow_t *flow);
/* the POST: NGX_OK with the form's session, or an answer (NGX_DONE, 500) */
ngx_int_t ngx_astralform_oauth_confirm_check(ngx_astralform_ctx_t *ctx,
    ngx_astralform_flow_t *flow, ngx_str_t *session);
/* the form's token against the browser's cookie, once ctx->project is set */
ngx_int_t ngx_astralform_oauth_confirm_token_ok(ngx_astralform_ctx_t *ctx,
    ngx_astralform_flow_t *flow);
/* an HTML answer (the text is the caller's, already escaped) */
void ngx_astralform_oauth_html(ngx_astralform_ctx_t *ctx, ngx_uint_t status,
    u_char *html, size_t len);

/* "https://host:port" of an absolute URL (ngx_astralform_oauth.c) */
ngx_int_t ngx_astralform_oauth_origin(ngx_str_t *url, ngx_str_t *origin);

/* util */
const char *ngx_astralform_oauth_str(ngx_astralform_def_t *def,
    const char *key, const char *dflt);
ngx_uint_t ngx_astralform_oauth_flag(ngx_astralform_def_t *def,
    const char *key, ngx_uint_t dflt);
ngx_int_t ngx_astralform_oauth_pdup(ngx_pool_t *pool, ngx_str_t *dst,
    const char *src, size_t len);
ngx_int_t ngx_astralform_oauth_form_encode(ngx_pool_t *pool,
    json_t *params, ngx_str_t *out);
size_t ngx_astralform_oauth_url_escape(u_char *dst, u_char *src,
    size_t len);
ngx_int_t ngx_astralform_oauth_unescape(ngx_pool_t *pool, ngx_str_t *src,
    ngx_str_t *dst);
ngx_int_t ngx_astralform_oauth_form_arg(ngx_pool_t *pool, ngx_str_t *body,
    const char *name, ngx_str_t *value);
ngx_int_t ngx_astralform_oauth_basic_auth(ngx_pool_t *pool, ngx_str_t *id,
    ngx_str_t *secret, ngx_str_t *out);
ngx_uint_t ngx_astralform_oauth_str_eq(ngx_str_t *a, ngx_str_t *b);
void ngx_astralform_oauth_wipe(ngx_str_t *s);


#endif /* _NGX_ASTRALFORM_OAUTH_INTERNAL_H_INCLUDED_ */
