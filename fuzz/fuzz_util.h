/*
 * Small helpers shared by the harnesses: input sections, the catalog
 * files, failing loudly.
 */

#ifndef _FUZZ_UTIL_H_INCLUDED_
#define _FUZZ_UTIL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <jansson.h>


/* sections of one input are separated by this line */
#define FZ_SEP      "\n%%\n"
#define FZ_SEP_LEN  (sizeof(FZ_SEP) - 1)

#define FZ_MAX_SECTIONS  16


typedef struct {
    ngx_str_t    s[FZ_MAX_SECTIONS];
    ngx_uint_t   n;
} fz_sections_t;


/* splits data (not copied) into at most FZ_MAX_SECTIONS sections */
void fz_split(const uint8_t *data, size_t size, fz_sections_t *out);

/* the first line of s (without LF) and the rest after it */
void fz_line(ngx_str_t *s, ngx_str_t *line, ngx_str_t *rest);

/* a NUL-terminated malloc()ed copy */
char *fz_strdup(ngx_str_t *s);

/* every catalog file of conf/connectors, in name order (jansson objects) */
json_t *fz_catalog_files(void);
const char *fz_root(void);

/* a test key of t/fixtures (64 hex characters) into a key ring */
void fz_load_key(ngx_array_t *ring, const char *id, const char *file);

/* aborts with a message: the fuzzer reports it as a crash with a stack */
void fz_fail(const char *fmt, ...)
    __attribute__((noreturn, format(printf, 1, 2)));

/* whether FUZZ_KNOWN lists tag (a finding reported and not yet fixed) */
ngx_uint_t fz_known(const char *tag);

/* memmem() over ngx_str_t */
ngx_uint_t fz_contains(const void *hay, size_t len, const char *needle);

extern int  fz_verbose;

/* the shim's clock (fixed: runs repeat) and FUZZ_VERBOSE */
void fz_init(void);


#endif /* _FUZZ_UTIL_H_INCLUDED_ */
