/*
 * The files compiled into the module (scripts/assets.pl): the dashboard
 * (html/) and the API description (docs/openapi.json).
 */

#ifndef _NGX_ASTRALFORM_DASHBOARD_H_INCLUDED_
#define _NGX_ASTRALFORM_DASHBOARD_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


typedef struct {
    ngx_str_t                     name;      /* "html/app.js" */
    ngx_str_t                     type;
    ngx_str_t                     etag;
    u_char                       *data;
    size_t                        len;
} ngx_astralform_asset_t;


ngx_int_t ngx_astralform_dashboard_handler(ngx_http_request_t *r);


#endif /* _NGX_ASTRALFORM_DASHBOARD_H_INCLUDED_ */
