/*
 * A provider's answer checked as JSON without building it.
 *
 * A successful tool call passes the provider's bytes through unchanged
 * (they only need to be one valid JSON text, and a top-level "ok" may say
 * the call failed); jansson builds the whole tree for that, ~180
 * instructions a byte of a Slack channel list. This checks in one pass
 * with no allocation, and answers only what it can vouch for exactly as
 * jansson would: NGX_OK for a text jansson accepts, NGX_ERROR for one it
 * rejects, NGX_DECLINED where only jansson knows (a number it may find too
 * big, \u0000, deeper nesting than jansson allows).
 */

#ifndef _NGX_ASTRALFORM_JSON_CHECK_H_INCLUDED_
#define _NGX_ASTRALFORM_JSON_CHECK_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <jansson.h>


/*
 * key: a top-level member whose type is wanted (the last of that name,
 * as jansson keeps), reported in *type; -1 when the text is not an object
 * or has no such member. key may be NULL.
 */
ngx_int_t ngx_astralform_json_check(u_char *p, size_t len, const char *key,
    int *type);


#endif /* _NGX_ASTRALFORM_JSON_CHECK_H_INCLUDED_ */
