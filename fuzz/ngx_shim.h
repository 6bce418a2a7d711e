/*
 * The nginx core subset the fuzzers link instead of nginx (ngx_shim.c).
 */

#ifndef _NGX_SHIM_H_INCLUDED_
#define _NGX_SHIM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* every formatted log line and configuration error goes through this */
typedef void (*ngx_shim_log_pt)(ngx_uint_t level, u_char *msg, size_t len);

extern ngx_shim_log_pt  ngx_shim_log_hook;
extern u_char           ngx_shim_conf_error[NGX_MAX_CONF_ERRSTR];


void ngx_shim_init(time_t now, ngx_msec_t msec);


#endif /* _NGX_SHIM_H_INCLUDED_ */
