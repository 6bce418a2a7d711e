/*
 * Flat JSON, read and written fast: the shapes on the hot path of every
 * tool call.
 *
 * A reader for the gateway's own flat JSON records (an end user's sealed
 * credential, once opened), on the hot path of every tool call.
 *
 * jansson builds a hash table and a malloc'd copy of every string to read
 * six fields; this reads them in place, into the buffer they came in (the
 * unsealed plaintext, which its pool wipes), with no allocation. It knows
 * only what the gateway writes: one object of strings, integers, booleans
 * and nulls, ASCII strings with the short escapes. Anything else
 * (nesting, a fraction, \u, a byte over 0x7f) is NGX_DECLINED, and the
 * caller reads it with jansson, so an unusual record still opens.
 */

#ifndef _NGX_ASTRALFORM_RECORD_H_INCLUDED_
#define _NGX_ASTRALFORM_RECORD_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <jansson.h>


typedef struct {
    const char  *key;
    ngx_str_t   *str;      /* set when the value is a string */
    int64_t     *num;      /* set when the value is an integer */
} ngx_astralform_record_field_t;


/*
 * Fields not present, or of another type, are left as they were. The
 * buffer is modified (strings are unescaped in place) and the strings
 * found point into it. fields ends with a NULL key.
 */
ngx_int_t ngx_astralform_record_read(u_char *buf, size_t len,
    ngx_astralform_record_field_t *fields);


/*
 * A flat object (string, integer, boolean and null members) as compact
 * JSON, byte for byte what json_dumps(JSON_COMPACT) writes, in a pool
 * buffer with "room" bytes to spare after it;
 * anything else (a nested value, a real) is NGX_DECLINED for jansson.
 * jansson's dump costs ~10k instructions for a two-member object (its
 * cycle check formats a key per container).
 */
ngx_int_t ngx_astralform_record_write(ngx_pool_t *pool, json_t *obj,
    size_t room, ngx_str_t *out);


#endif /* _NGX_ASTRALFORM_RECORD_H_INCLUDED_ */
