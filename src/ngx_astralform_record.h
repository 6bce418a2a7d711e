/*
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


#endif /* _NGX_ASTRALFORM_RECORD_H_INCLUDED_ */
