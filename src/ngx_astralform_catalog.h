/*
 * The catalog: connector definitions loaded from JSON files at
 * configuration time (conf/connectors/FORMAT.md describes them).
 */

#ifndef _NGX_ASTRALFORM_CATALOG_H_INCLUDED_
#define _NGX_ASTRALFORM_CATALOG_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <jansson.h>


#define ngx_astralform_json_value(json, key)                                 \
    json_string_value(json_object_get(json, key))

#define ngx_astralform_str_is(s, lit)                                        \
    ((s)->len == sizeof(lit) - 1                                             \
     && ngx_strncmp((s)->data, lit, sizeof(lit) - 1) == 0)


typedef enum {
    NGX_ASTRALFORM_OAUTH = 0,
    NGX_ASTRALFORM_API_KEY,
    NGX_ASTRALFORM_REMOTE_MCP
} ngx_astralform_type_e;


typedef struct {
    ngx_str_t                  slug;
    ngx_str_t                  name;
    ngx_astralform_type_e      type;
    json_t                    *json;       /* the whole definition */
    json_t                    *oauth;      /* object, or NULL */
    json_t                    *api;        /* object, or NULL */
    json_t                    *tools;      /* array, or NULL */

    /* endpoints after astralform_provider overrides */
    ngx_str_t                  api_base;
    ngx_str_t                  authorize_url;
    ngx_str_t                  token_url;
    ngx_str_t                  revoke_url;
} ngx_astralform_def_t;


typedef struct {
    ngx_str_t                  slug;
    ngx_str_t                  name;       /* api_base, token_url, ... */
    ngx_str_t                  value;
    u_char                    *file;
    ngx_uint_t                 line;
} ngx_astralform_override_t;


typedef struct {
    ngx_array_t                defs;       /* ngx_astralform_def_t */
    ngx_array_t                overrides;  /* ngx_astralform_override_t */
} ngx_astralform_catalog_t;


ngx_int_t ngx_astralform_catalog_init(ngx_conf_t *cf,
    ngx_astralform_catalog_t *cat);
char *ngx_astralform_catalog_load(ngx_conf_t *cf,
    ngx_astralform_catalog_t *cat, ngx_str_t *path);
char *ngx_astralform_catalog_override(ngx_conf_t *cf,
    ngx_astralform_catalog_t *cat, ngx_str_t *value, ngx_uint_t n);
ngx_int_t ngx_astralform_catalog_finish(ngx_conf_t *cf,
    ngx_astralform_catalog_t *cat);

ngx_astralform_def_t *ngx_astralform_catalog_find(
    ngx_astralform_catalog_t *cat, ngx_str_t *slug);
json_t *ngx_astralform_catalog_tool(ngx_astralform_def_t *def,
    ngx_str_t *name);
const char *ngx_astralform_type_name(ngx_astralform_type_e type);
ngx_int_t ngx_astralform_valid_url(ngx_str_t *url);
ngx_int_t ngx_astralform_url_in_origins(ngx_array_t *origins, ngx_str_t *url);


#endif /* _NGX_ASTRALFORM_CATALOG_H_INCLUDED_ */
