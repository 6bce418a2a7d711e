/*
 * Credential scrubbing of what the gateway returns (ngx_astralform_scrub.c).
 */

#ifndef _NGX_ASTRALFORM_SCRUB_H_INCLUDED_
#define _NGX_ASTRALFORM_SCRUB_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <jansson.h>


/* registers the forms of secret (shorter than 8 bytes: not scrubbed) */
ngx_int_t ngx_astralform_scrub_add(ngx_pool_t *pool, ngx_array_t **forms,
    ngx_str_t *secret);
/* NGX_OK with out redacted, NGX_DECLINED when nothing matched */
ngx_int_t ngx_astralform_scrub_text(ngx_pool_t *pool, ngx_array_t *forms,
    ngx_str_t *in, ngx_str_t *out);
/* in place; NGX_OK when anything was redacted */
ngx_int_t ngx_astralform_scrub_json(ngx_pool_t *pool, ngx_array_t *forms,
    json_t *json);


#endif /* _NGX_ASTRALFORM_SCRUB_H_INCLUDED_ */
