/*
 * Tool arguments against a tool's JSON input schema.
 */

#ifndef _NGX_ASTRALFORM_SCHEMA_H_INCLUDED_
#define _NGX_ASTRALFORM_SCHEMA_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <jansson.h>


/*
 * NGX_OK when value satisfies schema; NGX_DECLINED with a sentence naming
 * the argument and the problem in err; NGX_ERROR when out of memory.
 */
ngx_int_t ngx_astralform_schema_check(ngx_pool_t *pool, json_t *schema,
    json_t *value, u_char *err, size_t size);


#endif /* _NGX_ASTRALFORM_SCHEMA_H_INCLUDED_ */
