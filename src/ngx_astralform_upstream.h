/*
 * Provider calls over nginx's own connections: HTTP/1.1 on ngx_event_connect
 * _peer(), TLS through ngx_ssl with verification and SNI, names through the
 * http{} "resolver", kept-alive connections in a per-worker pool by origin.
 * ngx_astralform_http.c hands a request here when it can be served so and
 * keeps libcurl for the rest (see ngx_astralform_upstream_start()); the
 * caller's interface (ngx_astralform_http.h) is the same for both.
 */

#ifndef _NGX_ASTRALFORM_UPSTREAM_H_INCLUDED_
#define _NGX_ASTRALFORM_UPSTREAM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_astralform_http.h"


/*
 * Starts hr here, or NGX_DECLINED when libcurl is to carry it: a URL with
 * userinfo or bytes outside printable ASCII, a host name with no http{}
 * "resolver", an egress proxy in the environment, a per-host connection
 * cap, or "astralform_http_client curl". Otherwise as
 * ngx_astralform_http_start().
 */
ngx_int_t ngx_astralform_upstream_start(ngx_astralform_http_req_t *hr);
void ngx_astralform_upstream_cancel(ngx_astralform_http_req_t *hr);

ngx_int_t ngx_astralform_upstream_init_process(ngx_cycle_t *cycle,
    ngx_astralform_http_conf_t *conf);
void ngx_astralform_upstream_exit_process(ngx_cycle_t *cycle);

/* shared with ngx_astralform_http.c */
void ngx_astralform_http_set_host(ngx_astralform_http_req_t *hr);
ngx_uint_t ngx_astralform_http_idempotent(ngx_str_t *method);


#endif /* _NGX_ASTRALFORM_UPSTREAM_H_INCLUDED_ */
