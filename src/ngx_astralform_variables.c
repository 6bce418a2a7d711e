/*
 * nginx variables for the access log: who called what and how it went,
 * one line per request, never a secret.
 *
 *   log_format astralform '$remote_addr [$time_local] "$request" $status '
 *       'project=$astralform_project agent=$astralform_agent '
 *       'user=$astralform_user connector=$astralform_connector '
 *       'tool=$astralform_tool provider_status=$astralform_provider_status '
 *       'error=$astralform_error';
 */


#include "ngx_astralform.h"


static ngx_int_t ngx_astralform_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_astralform_provider_status_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_astralform_vars[] = {

    { ngx_string("astralform_agent"), NULL, ngx_astralform_variable,
      offsetof(ngx_astralform_ctx_t, agent), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("astralform_user"), NULL, ngx_astralform_variable,
      offsetof(ngx_astralform_ctx_t, user), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("astralform_connector"), NULL, ngx_astralform_variable,
      offsetof(ngx_astralform_ctx_t, connector_id),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("astralform_tool"), NULL, ngx_astralform_variable,
      offsetof(ngx_astralform_ctx_t, tool), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("astralform_error"), NULL, ngx_astralform_variable,
      offsetof(ngx_astralform_ctx_t, error), NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("astralform_project"), NULL, ngx_astralform_variable,
      (uintptr_t) -1, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("astralform_provider_status"), NULL,
      ngx_astralform_provider_status_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_astralform_variables_add(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_astralform_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_astralform_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    ngx_str_t             *s;
    ngx_astralform_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_astralform_module);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (data == (uintptr_t) -1) {
        s = ctx->project ? &ctx->project->id : NULL;
    } else {
        s = (ngx_str_t *) ((char *) ctx + data);
    }

    if (s == NULL || s->len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s->len;
    v->data = s->data;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_astralform_provider_status_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                *p;
    ngx_astralform_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_astralform_module);

    if (ctx == NULL || ctx->provider_status == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(p, "%ui", ctx->provider_status) - p;
    v->data = p;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}
