/*
 * Small helpers shared by the harnesses.
 */


#include "fuzz_util.h"
#include "ngx_shim.h"
#include "ngx_astralform_crypto.h"

#include <dirent.h>


#ifndef FUZZ_ROOT
#define FUZZ_ROOT "."
#endif


int  fz_verbose;


void
fz_init(void)
{
    /* 2025-11-27 00:00:00 UTC: tokens expire the same way on every run */
    ngx_shim_init(1764201600, 1000);

    fz_verbose = getenv("FUZZ_VERBOSE") != NULL;
}


void
fz_split(const uint8_t *data, size_t size, fz_sections_t *out)
{
    u_char  *p, *last, *sep;

    p = (u_char *) data;
    last = p + size;
    out->n = 0;

    while (out->n < FZ_MAX_SECTIONS - 1) {
        sep = (u_char *) memmem(p, last - p, FZ_SEP, FZ_SEP_LEN);
        if (sep == NULL) {
            break;
        }

        out->s[out->n].data = p;
        out->s[out->n].len = sep - p;
        out->n++;
        p = sep + FZ_SEP_LEN;
    }

    out->s[out->n].data = p;
    out->s[out->n].len = last - p;
    out->n++;
}


void
fz_line(ngx_str_t *s, ngx_str_t *line, ngx_str_t *rest)
{
    u_char  *lf;

    lf = memchr(s->data, '\n', s->len);

    line->data = s->data;
    line->len = lf ? (size_t) (lf - s->data) : s->len;

    rest->data = lf ? lf + 1 : s->data + s->len;
    rest->len = s->data + s->len - rest->data;
}


char *
fz_strdup(ngx_str_t *s)
{
    char  *p;

    p = malloc(s->len + 1);
    if (p == NULL) {
        fz_fail("out of memory");
    }

    memcpy(p, s->data, s->len);
    p[s->len] = '\0';

    return p;
}


const char *
fz_root(void)
{
    const char  *root;

    root = getenv("FUZZ_ROOT");

    return root ? root : FUZZ_ROOT;
}


static int
fz_json_name(const struct dirent *de)
{
    size_t  len;

    len = strlen(de->d_name);

    return len > 5 && strcmp(de->d_name + len - 5, ".json") == 0;
}


json_t *
fz_catalog_files(void)
{
    int             i, n;
    char            path[4096];
    json_t         *list, *json;
    json_error_t    err;
    struct dirent **names;

    snprintf(path, sizeof(path), "%s/conf/connectors", fz_root());

    n = scandir(path, &names, fz_json_name, alphasort);
    if (n < 0) {
        fz_fail("cannot read the catalog folder %s (set FUZZ_ROOT)", path);
    }

    list = json_array();

    for (i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "%s/conf/connectors/%s", fz_root(),
                 names[i]->d_name);
        free(names[i]);

        json = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
        if (json == NULL) {
            fz_fail("%s: %s", path, err.text);
        }

        json_array_append_new(list, json);
    }

    free(names);

    return list;
}


void
fz_fail(const char *fmt, ...)
{
    va_list  args;

    fprintf(stderr, "\n==FUZZ== finding: ");
    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);
    fprintf(stderr, "\n");

    abort();
}


ngx_uint_t
fz_contains(const void *hay, size_t len, const char *needle)
{
    if (len == 0 || hay == NULL) {
        return 0;
    }

    return memmem(hay, len, needle, strlen(needle)) != NULL;
}


void
fz_load_key(ngx_array_t *ring, const char *id, const char *file)
{
    char                   path[4096], hex[64];
    FILE                  *f;
    ngx_int_t              hi, lo;
    ngx_uint_t             i;
    ngx_astralform_key_t  *key;

    snprintf(path, sizeof(path), "%s/t/fixtures/%s", fz_root(), file);

    f = fopen(path, "r");
    if (f == NULL || fread(hex, 1, sizeof(hex), f) != sizeof(hex)) {
        fz_fail("cannot read the test key %s", path);
    }
    fclose(f);

    key = ngx_array_push(ring);
    if (key == NULL) {
        fz_fail("out of memory");
    }

    key->id.data = (u_char *) id;
    key->id.len = strlen(id);

    for (i = 0; i < NGX_ASTRALFORM_KEY_LEN; i++) {
        hi = ngx_hextoi((u_char *) &hex[2 * i], 1);
        lo = ngx_hextoi((u_char *) &hex[2 * i + 1], 1);
        if (hi == NGX_ERROR || lo == NGX_ERROR) {
            fz_fail("%s is not 64 hex characters", path);
        }
        key->key[i] = (u_char) (hi * 16 + lo);
    }
}


/* FUZZ_KNOWN="a,b": oracles of reported, unfixed findings stay quiet */
ngx_uint_t
fz_known(const char *tag)
{
    char        *known, *p;
    size_t       len;

    known = getenv("FUZZ_KNOWN");
    if (known == NULL) {
        return 0;
    }

    len = strlen(tag);

    for (p = known; (p = strstr(p, tag)) != NULL; p += len) {
        if ((p == known || p[-1] == ',') && (p[len] == ',' || p[len] == '\0'))
        {
            return 1;
        }
    }

    return 0;
}
