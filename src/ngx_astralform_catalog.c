/*
 * The catalog: connector definitions are data, loaded and checked once at
 * configuration time so a bad file fails `nginx -t` with the file, the field
 * and the problem, and requests never parse a definition again.
 */


#include <ngx_config.h>
#include <ngx_core.h>

#include "ngx_astralform_catalog.h"


static char *ngx_astralform_catalog_file(ngx_conf_t *cf,
    ngx_astralform_catalog_t *cat, ngx_str_t *name);
static const char *ngx_astralform_catalog_check(ngx_astralform_catalog_t *cat,
    json_t *json, ngx_astralform_def_t *def, const char **field);
static const char *ngx_astralform_catalog_check_tool(json_t *tool,
    const char **field);
static ngx_int_t ngx_astralform_catalog_endpoint(ngx_pool_t *pool,
    ngx_str_t *dst, json_t *obj, const char *key);
static void ngx_astralform_catalog_cleanup(void *data);
static int ngx_astralform_catalog_cmp(const void *a, const void *b);


static const char  *ngx_astralform_types[] = {
    "oauth", "api_key", "remote_mcp", NULL
};


ngx_int_t
ngx_astralform_catalog_init(ngx_conf_t *cf, ngx_astralform_catalog_t *cat)
{
    ngx_pool_cleanup_t  *cln;

    if (ngx_array_init(&cat->defs, cf->pool, 8, sizeof(ngx_astralform_def_t))
        != NGX_OK
        || ngx_array_init(&cat->overrides, cf->pool, 4,
                          sizeof(ngx_astralform_override_t))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* jansson owns the definitions' memory: release it with the cycle */
    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_astralform_catalog_cleanup;
    cln->data = cat;

    return NGX_OK;
}


char *
ngx_astralform_catalog_load(ngx_conf_t *cf, ngx_astralform_catalog_t *cat,
    ngx_str_t *path)
{
    char             *rv;
    ngx_dir_t         dir;
    ngx_str_t         full, name;
    ngx_file_info_t   fi;

    full = *path;

    if (ngx_conf_full_name(cf->cycle, &full, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (ngx_file_info(full.data, &fi) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"astralform_catalog\" cannot read \"%V\"",
                           &full);
        return NGX_CONF_ERROR;
    }

    if (!ngx_is_dir(&fi)) {
        return ngx_astralform_catalog_file(cf, cat, &full);
    }

    if (ngx_open_dir(&full, &dir) == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"astralform_catalog\" cannot open \"%V\"",
                           &full);
        return NGX_CONF_ERROR;
    }

    rv = NGX_CONF_OK;

    for ( ;; ) {
        ngx_set_errno(0);

        if (ngx_read_dir(&dir) == NGX_ERROR) {
            break;
        }

        name.len = ngx_de_namelen(&dir);
        if (name.len < 6
            || ngx_strncmp(ngx_de_name(&dir) + name.len - 5, ".json", 5) != 0)
        {
            continue;
        }

        name.len += full.len + 1;
        name.data = ngx_pnalloc(cf->pool, name.len + 1);
        if (name.data == NULL) {
            rv = NGX_CONF_ERROR;
            break;
        }
        ngx_sprintf(name.data, "%V/%s%Z", &full, ngx_de_name(&dir));

        rv = ngx_astralform_catalog_file(cf, cat, &name);
        if (rv != NGX_CONF_OK) {
            break;
        }
    }

    ngx_close_dir(&dir);

    return rv;
}


static char *
ngx_astralform_catalog_file(ngx_conf_t *cf, ngx_astralform_catalog_t *cat,
    ngx_str_t *name)
{
    json_t                *json;
    ngx_str_t             *urls[4];
    ngx_uint_t             i;
    const char            *err, *field;
    json_error_t           jerr;
    ngx_astralform_def_t  *def;

    json = json_load_file((char *) name->data, JSON_REJECT_DUPLICATES, &jerr);
    if (json == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"astralform_catalog\" file \"%V\" is not valid "
                           "JSON: %s at line %d", name, jerr.text, jerr.line);
        return NGX_CONF_ERROR;
    }

    def = ngx_array_push(&cat->defs);
    if (def == NULL) {
        json_decref(json);
        return NGX_CONF_ERROR;
    }

    ngx_memzero(def, sizeof(ngx_astralform_def_t));
    def->json = json;

    field = "";
    err = ngx_astralform_catalog_check(cat, json, def, &field);

    if (err != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"astralform_catalog\" file \"%V\": field "
                           "\"%s\" %s", name, field, err);
        return NGX_CONF_ERROR;
    }

    if (ngx_astralform_catalog_endpoint(cf->pool, &def->api_base, def->api,
                                        "base_url") != NGX_OK
        || ngx_astralform_catalog_endpoint(cf->pool, &def->authorize_url,
                                           def->oauth, "authorize_url")
           != NGX_OK
        || ngx_astralform_catalog_endpoint(cf->pool, &def->token_url,
                                           def->oauth, "token_url") != NGX_OK
        || ngx_astralform_catalog_endpoint(cf->pool, &def->revoke_url,
                                           def->oauth, "revoke_url")
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    urls[0] = &def->api_base;
    urls[1] = &def->authorize_url;
    urls[2] = &def->token_url;
    urls[3] = &def->revoke_url;

    /* tool paths are appended to the API base: it cannot end in a query */
    if (def->api_base.len
        && (ngx_strlchr(def->api_base.data,
                        def->api_base.data + def->api_base.len, '?')
            || ngx_strlchr(def->api_base.data,
                           def->api_base.data + def->api_base.len, '#')))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"astralform_catalog\" file \"%V\": field "
                           "\"api.base_url\" must not have a query or "
                           "fragment", name);
        return NGX_CONF_ERROR;
    }

    for (i = 0; i < 4; i++) {
        if (urls[i]->len && ngx_astralform_valid_url(urls[i]) != NGX_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"astralform_catalog\" file \"%V\": \"%V\" "
                               "is not an absolute http(s) URL", name, urls[i]);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static const char *
ngx_astralform_catalog_check(ngx_astralform_catalog_t *cat, json_t *json,
    ngx_astralform_def_t *def, const char **field)
{
    size_t                 i, j;
    json_t                *v, *tool;
    ngx_uint_t             t, k;
    const char            *s, *err;
    ngx_astralform_def_t  *defs;

    if (!json_is_object(json)) {
        return "must be an object";
    }

    *field = "slug";
    s = ngx_astralform_json_value(json, "slug");
    if (s == NULL || *s == '\0') {
        return "must be a non-empty string";
    }

    for (i = 0; s[i]; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')
              || s[i] == '_'))
        {
            return "may only hold a-z, 0-9 and \"_\"";
        }
    }

    def->slug.data = (u_char *) s;
    def->slug.len = i;

    defs = cat->defs.elts;
    for (k = 0; k + 1 < cat->defs.nelts; k++) {
        if (defs[k].slug.len == def->slug.len
            && ngx_strncmp(defs[k].slug.data, s, i) == 0)
        {
            return "is a duplicate of another catalog file's slug";
        }
    }

    *field = "name";
    s = ngx_astralform_json_value(json, "name");
    if (s == NULL) {
        return "must be a string";
    }
    def->name.data = (u_char *) s;
    def->name.len = ngx_strlen(s);

    *field = "type";
    s = ngx_astralform_json_value(json, "type");
    if (s == NULL) {
        return "must be a string";
    }

    for (t = 0; ngx_astralform_types[t]; t++) {
        if (ngx_strcmp(s, ngx_astralform_types[t]) == 0) {
            break;
        }
    }

    if (ngx_astralform_types[t] == NULL) {
        return "must be \"oauth\", \"api_key\" or \"remote_mcp\"";
    }
    def->type = t;

    *field = "category";
    v = json_object_get(json, "category");
    if (v != NULL && !json_is_string(v)) {
        return "must be a string";
    }

    def->oauth = json_object_get(json, "oauth");
    def->api = json_object_get(json, "api");
    def->tools = json_object_get(json, "tools");

    if (def->type == NGX_ASTRALFORM_REMOTE_MCP) {
        def->tools = NULL;
        def->api = NULL;
        def->oauth = NULL;
        return NULL;
    }

    if (def->type == NGX_ASTRALFORM_OAUTH) {
        *field = "oauth";
        if (!json_is_object(def->oauth)) {
            return "must be an object for an oauth connector";
        }

        *field = "oauth.authorize_url";
        if (ngx_astralform_json_value(def->oauth, "authorize_url") == NULL) {
            return "must be a URL";
        }

        *field = "oauth.token_url";
        if (ngx_astralform_json_value(def->oauth, "token_url") == NULL) {
            return "must be a URL";
        }

    } else {
        def->oauth = NULL;
    }

    *field = "api.base_url";
    if (!json_is_object(def->api)
        || ngx_astralform_json_value(def->api, "base_url") == NULL)
    {
        return "must be a URL";
    }

    *field = "tools";
    if (!json_is_array(def->tools) || json_array_size(def->tools) == 0) {
        return "must be a non-empty array";
    }

    json_array_foreach(def->tools, i, tool) {
        err = ngx_astralform_catalog_check_tool(tool, field);
        if (err != NULL) {
            return err;
        }

        /* tool names are global: the agent calls them by name alone */
        for (j = 0; j < i; j++) {
            if (ngx_strcmp(ngx_astralform_json_value(
                               json_array_get(def->tools, j), "name"),
                           ngx_astralform_json_value(tool, "name"))
                == 0)
            {
                *field = ngx_astralform_json_value(tool, "name");
                return "is a tool name the file already has";
            }
        }

        for (k = 0; k + 1 < cat->defs.nelts; k++) {
            json_array_foreach(defs[k].tools, j, v) {
                if (ngx_strcmp(ngx_astralform_json_value(v, "name"),
                               ngx_astralform_json_value(tool, "name"))
                    == 0)
                {
                    *field = ngx_astralform_json_value(tool, "name");
                    return "is a tool name another connector already has";
                }
            }
        }
    }

    return NULL;
}


static const char *
ngx_astralform_catalog_check_tool(json_t *tool, const char **field)
{
    size_t       i;
    json_t      *schema, *props, *list, *v;
    const char  *s, *m, **lists, *fields[] = { "query", "body", NULL };

    *field = "tools[].name";
    if (!json_is_object(tool)
        || ngx_astralform_json_value(tool, "name") == NULL)
    {
        return "must be a string";
    }

    *field = ngx_astralform_json_value(tool, "name");

    m = ngx_astralform_json_value(tool, "method");
    if (m == NULL
        || (ngx_strcmp(m, "GET") && ngx_strcmp(m, "POST")
            && ngx_strcmp(m, "PUT") && ngx_strcmp(m, "PATCH")
            && ngx_strcmp(m, "DELETE")))
    {
        return "needs a \"method\" of GET, POST, PUT, PATCH or DELETE";
    }

    s = ngx_astralform_json_value(tool, "path");
    if (s == NULL || s[0] == '/') {
        return "needs a relative \"path\" (no leading \"/\")";
    }

    /* arguments go to the query through "query": the path is a path */
    for (i = 0; s[i]; i++) {
        if ((u_char) s[i] <= ' ' || s[i] == 0x7f || s[i] == '?'
            || s[i] == '#' || s[i] == '\\')
        {
            return "has a \"path\" with a space, control byte, \"?\", "
                   "\"#\" or \"\\\"";
        }
    }

    if (ngx_astralform_json_value(tool, "description") == NULL) {
        return "needs a \"description\"";
    }

    schema = json_object_get(tool, "input_schema");
    if (!json_is_object(schema)
        || ngx_strcmp(ngx_astralform_json_value(schema, "type") ?
                      ngx_astralform_json_value(schema, "type") : "",
                      "object") != 0)
    {
        return "needs an \"input_schema\" of type \"object\"";
    }

    props = json_object_get(schema, "properties");
    if (props != NULL && !json_is_object(props)) {
        return "has \"input_schema.properties\" that is not an object";
    }

    for (lists = fields; *lists; lists++) {
        list = json_object_get(tool, *lists);
        if (list == NULL) {
            continue;
        }

        if (!json_is_array(list)) {
            return "has a \"query\" or \"body\" that is not an array";
        }

        json_array_foreach(list, i, v) {
            if (!json_is_string(v)
                || json_object_get(props, json_string_value(v)) == NULL)
            {
                return "places an argument the input_schema does not define";
            }
        }
    }

    s = ngx_astralform_json_value(tool, "body_format");
    if (s != NULL && ngx_strcmp(s, "json") && ngx_strcmp(s, "form")) {
        return "has a \"body_format\" other than \"json\" or \"form\"";
    }

    return NULL;
}


char *
ngx_astralform_catalog_override(ngx_conf_t *cf, ngx_astralform_catalog_t *cat,
    ngx_str_t *value, ngx_uint_t n)
{
    u_char                     *eq;
    ngx_uint_t                  i;
    ngx_astralform_override_t  *ov;

    if (n < 3) {
        return "needs at least one key=value endpoint";
    }

    for (i = 2; i < n; i++) {
        eq = ngx_strlchr(value[i].data, value[i].data + value[i].len, '=');
        if (eq == NULL) {
            goto invalid;
        }

        ov = ngx_array_push(&cat->overrides);
        if (ov == NULL) {
            return NGX_CONF_ERROR;
        }

        ov->slug = value[1];
        ov->name.data = value[i].data;
        ov->name.len = eq - value[i].data;
        ov->value.data = eq + 1;
        ov->value.len = value[i].data + value[i].len - eq - 1;
        ov->file = cf->conf_file->file.name.data;
        ov->line = cf->conf_file->line;

        if (!(ngx_astralform_str_is(&ov->name, "api_base")
              || ngx_astralform_str_is(&ov->name, "authorize_url")
              || ngx_astralform_str_is(&ov->name, "token_url")
              || ngx_astralform_str_is(&ov->name, "revoke_url")))
        {
            goto invalid;
        }

        if (ngx_astralform_valid_url(&ov->value) != NGX_OK
            || (ngx_astralform_str_is(&ov->name, "api_base")
                && (ngx_strlchr(ov->value.data,
                                ov->value.data + ov->value.len, '?')
                    || ngx_strlchr(ov->value.data,
                                   ov->value.data + ov->value.len, '#'))))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"astralform_provider\" has a bad URL in "
                               "\"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"astralform_provider\" has an invalid parameter "
                       "\"%V\" (api_base=, authorize_url=, token_url= or "
                       "revoke_url=)", &value[i]);
    return NGX_CONF_ERROR;
}


/* applies astralform_provider once every catalog file is in */
ngx_int_t
ngx_astralform_catalog_finish(ngx_conf_t *cf, ngx_astralform_catalog_t *cat)
{
    ngx_str_t                  *dst;
    ngx_uint_t                  i;
    ngx_astralform_def_t       *def;
    ngx_astralform_override_t  *ov;

    ngx_qsort(cat->defs.elts, cat->defs.nelts, sizeof(ngx_astralform_def_t),
              ngx_astralform_catalog_cmp);

    ov = cat->overrides.elts;

    for (i = 0; i < cat->overrides.nelts; i++) {
        def = ngx_astralform_catalog_find(cat, &ov[i].slug);
        if (def == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "\"astralform_provider\" names the unknown "
                          "connector \"%V\" in %s:%ui", &ov[i].slug,
                          ov[i].file, ov[i].line);
            return NGX_ERROR;
        }

        if (ngx_astralform_str_is(&ov[i].name, "api_base")) {
            dst = &def->api_base;
        } else if (ngx_astralform_str_is(&ov[i].name, "authorize_url")) {
            dst = &def->authorize_url;
        } else if (ngx_astralform_str_is(&ov[i].name, "token_url")) {
            dst = &def->token_url;
        } else {
            dst = &def->revoke_url;
        }

        *dst = ov[i].value;
    }

    return NGX_OK;
}


ngx_astralform_def_t *
ngx_astralform_catalog_find(ngx_astralform_catalog_t *cat, ngx_str_t *slug)
{
    ngx_uint_t             i;
    ngx_astralform_def_t  *def;

    def = cat->defs.elts;

    for (i = 0; i < cat->defs.nelts; i++) {
        if (def[i].slug.len == slug->len
            && ngx_strncmp(def[i].slug.data, slug->data, slug->len) == 0)
        {
            return &def[i];
        }
    }

    return NULL;
}


json_t *
ngx_astralform_catalog_tool(ngx_astralform_def_t *def, ngx_str_t *name)
{
    size_t       i;
    json_t      *tool;
    const char  *s;

    json_array_foreach(def->tools, i, tool) {
        s = ngx_astralform_json_value(tool, "name");

        if (ngx_strlen(s) == name->len
            && ngx_strncmp(s, name->data, name->len) == 0)
        {
            return tool;
        }
    }

    return NULL;
}


const char *
ngx_astralform_type_name(ngx_astralform_type_e type)
{
    return ngx_astralform_types[type];
}


/* an absolute http(s) URL with a host and no whitespace */
ngx_int_t
ngx_astralform_valid_url(ngx_str_t *url)
{
    u_char           *p, *host, *last;
    u_char            addr6[NGX_INET6_ADDRSTRLEN + 1];
    ngx_int_t         n;
    ngx_uint_t        i;
    struct in6_addr   in6;

    if (url->len > 7 && ngx_strncasecmp(url->data, (u_char *) "http://", 7)
                        == 0)
    {
        host = url->data + 7;

    } else if (url->len > 8
               && ngx_strncasecmp(url->data, (u_char *) "https://", 8) == 0)
    {
        host = url->data + 8;

    } else {
        return NGX_ERROR;
    }

    for (i = 0; i < url->len; i++) {
        if (url->data[i] <= ' ' || url->data[i] == 0x7f
            || url->data[i] == '"' || url->data[i] == '\\')
        {
            return NGX_ERROR;
        }
    }

    /* the authority: host[:port] or [ipv6][:port], nothing else */
    last = host;
    while (last < url->data + url->len && *last != '/' && *last != '?'
           && *last != '#')
    {
        last++;
    }

    p = host;

    if (p < last && *p == '[') {
        p = ngx_strlchr(host, last, ']');

        /* a real IPv6 address, as curl will read it */
        if (p == NULL || p - host - 1 >= (ssize_t) sizeof(addr6)
            || p == host + 1)
        {
            return NGX_ERROR;
        }

        ngx_memcpy(addr6, host + 1, p - host - 1);
        addr6[p - host - 1] = '\0';

        if (inet_pton(AF_INET6, (char *) addr6, &in6) != 1) {
            return NGX_ERROR;
        }

        p++;

    } else {
        /* letters, digits, "-", ".", "_": no userinfo, no encoded host */
        while (p < last && (isalnum(*p) || *p == '-' || *p == '.'
                            || *p == '_'))
        {
            p++;
        }

        if (p == host) {
            return NGX_ERROR;
        }
    }

    if (p == last) {
        return NGX_OK;
    }

    if (*p != ':') {
        return NGX_ERROR;
    }

    /* what curl would read as another port (or none) is refused */
    n = ngx_atoi(p + 1, last - p - 1);
    if (n < 1 || n > 65535) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Whether url is on one of origins ("https://host[:port]", as configured):
 * the origin exactly, then nothing or a path, query or fragment. Userinfo,
 * backslashes, encoded slashes and whitespace are refused outright.
 */
ngx_int_t
ngx_astralform_url_in_origins(ngx_array_t *origins, ngx_str_t *url)
{
    u_char      *p, *last, *end;
    ngx_str_t   *origin;
    ngx_uint_t   i;

    if (origins == NULL || url->len == 0 || url->len > 2048) {
        return NGX_DECLINED;
    }

    last = url->data + url->len;

    for (p = url->data; p < last; p++) {
        if (*p <= ' ' || *p >= 0x7f || *p == '\\' || *p == '"' || *p == '<'
            || *p == '>' || *p == '`')
        {
            return NGX_DECLINED;
        }

        if (*p == '%' && last - p >= 3
            && ((p[1] == '2' && (p[2] == 'f' || p[2] == 'F'))
                || (p[1] == '5' && (p[2] == 'c' || p[2] == 'C'))))
        {
            return NGX_DECLINED;
        }
    }

    origin = origins->elts;

    for (i = 0; i < origins->nelts; i++) {
        if (url->len < origin[i].len
            || ngx_strncasecmp(url->data, origin[i].data, origin[i].len) != 0)
        {
            continue;
        }

        /* "https://a.example.com.evil" or "...com:8443" is another host */
        end = url->data + origin[i].len;

        if (end == last || *end == '/' || *end == '?' || *end == '#') {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_astralform_catalog_endpoint(ngx_pool_t *pool, ngx_str_t *dst, json_t *obj,
    const char *key)
{
    const char  *s;

    s = obj ? ngx_astralform_json_value(obj, key) : NULL;

    if (s == NULL) {
        ngx_str_null(dst);
        return NGX_OK;
    }

    dst->data = (u_char *) s;
    dst->len = ngx_strlen(s);

    return NGX_OK;
}


static void
ngx_astralform_catalog_cleanup(void *data)
{
    ngx_astralform_catalog_t  *cat = data;

    ngx_uint_t             i;
    ngx_astralform_def_t  *def;

    def = cat->defs.elts;

    for (i = 0; i < cat->defs.nelts; i++) {
        json_decref(def[i].json);
    }
}


static int
ngx_astralform_catalog_cmp(const void *a, const void *b)
{
    const ngx_astralform_def_t  *x = a, *y = b;

    return (int) ngx_memn2cmp(x->slug.data, y->slug.data, x->slug.len,
                              y->slug.len);
}
