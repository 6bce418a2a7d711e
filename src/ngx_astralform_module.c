/*
 * ngx_astralform_module: directives and configuration only. Requests are
 * routed in ngx_astralform_api.c.
 */


#include "ngx_astralform.h"
#include "ngx_astralform_revocations.h"
#include "ngx_astralform_dashboard.h"


#define NGX_ASTRALFORM_MIN_API_KEY   16
#define NGX_ASTRALFORM_GOOD_API_KEY  32
#define NGX_ASTRALFORM_KEY_VARIETY   10     /* distinct characters */


/* an astralform_connector line, resolved once every directive is read */
typedef struct {
    ngx_str_t                     project;
    ngx_str_t                     slug;
    ngx_astralform_connector_t    conn;
    ngx_uint_t                    has_id;
    u_char                       *file;
    ngx_uint_t                    line;
} ngx_astralform_pending_t;


/* an astralform_agent line, resolved once every project is known */
typedef struct {
    ngx_str_t                     project;
    ngx_astralform_agent_t        agent;
    u_char                       *file;
    ngx_uint_t                    line;
} ngx_astralform_pending_agent_t;


typedef struct {
    ngx_array_t                   pending;   /* ngx_astralform_pending_t */
    ngx_array_t                   agents;    /* pending_agent_t */
} ngx_astralform_conf_ctx_t;


/* a key and who has it, to find a key given twice */
typedef struct {
    ngx_str_t                    *key;
    ngx_str_t                     owner;     /* for the message */
} ngx_astralform_key_use_t;


static void *ngx_astralform_create_main_conf(ngx_conf_t *cf);
static char *ngx_astralform_init_main_conf(ngx_conf_t *cf, void *conf);
static ngx_int_t ngx_astralform_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_astralform_init_process(ngx_cycle_t *cycle);
static void ngx_astralform_exit_process(ngx_cycle_t *cycle);
static void ngx_astralform_main_conf_cleanup(void *data);

static char *ngx_astralform_config_cache_size(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_astralform_redis_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_astralform_key_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_astralform_public_url(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_astralform_catalog_directive(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_astralform_provider(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_astralform_project(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_astralform_connector(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_astralform_return_origin(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_astralform_agent(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_astralform_api(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_astralform_dashboard(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

static ngx_int_t ngx_astralform_read_keys(ngx_conf_t *cf, ngx_str_t *path,
    ngx_array_t *keys);
static ngx_int_t ngx_astralform_check_key(ngx_conf_t *cf, ngx_str_t *path,
    ngx_str_t *key, ngx_uint_t line);
static ngx_int_t ngx_astralform_resolve_agent(ngx_conf_t *cf,
    ngx_astralform_main_conf_t *amcf, ngx_astralform_pending_agent_t *p);
static ngx_int_t ngx_astralform_unique_keys(ngx_conf_t *cf,
    ngx_astralform_main_conf_t *amcf);
static ngx_int_t ngx_astralform_key_uses(ngx_pool_t *pool,
    ngx_array_t *uses, ngx_array_t *keys, ngx_astralform_project_t *project,
    ngx_str_t *agent, const char *what);
static ngx_int_t ngx_astralform_valid_id(ngx_str_t *id);
static ngx_array_t *ngx_astralform_split_list(ngx_conf_t *cf,
    ngx_str_t *param, ngx_str_t *list);
static ngx_int_t ngx_astralform_resolve_connector(ngx_conf_t *cf,
    ngx_astralform_main_conf_t *amcf, ngx_astralform_pending_t *p);
static ngx_astralform_project_t *ngx_astralform_find_project(
    ngx_astralform_main_conf_t *amcf, ngx_str_t *id);
static u_char *ngx_astralform_known_slugs(ngx_astralform_main_conf_t *amcf,
    u_char *buf, size_t size);


/* who carries provider calls: see ngx_astralform_upstream.h */
static ngx_conf_enum_t  ngx_astralform_http_clients[] = {
    { ngx_string("nginx"), NGX_ASTRALFORM_HTTP_CLIENT_NGINX },
    { ngx_string("curl"), NGX_ASTRALFORM_HTTP_CLIENT_CURL },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_astralform_commands[] = {

    { ngx_string("astralform_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_astralform_redis_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("astralform_config_cache_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_astralform_config_cache_size,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("astralform_redis_prefix"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_astralform_main_conf_t, prefix),
      NULL },

    { ngx_string("astralform_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_astralform_key_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("astralform_public_url"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_astralform_public_url,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("astralform_catalog"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_astralform_catalog_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("astralform_provider"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_astralform_provider,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("astralform_project"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE23,
      ngx_astralform_project,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("astralform_connector"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_astralform_connector,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("astralform_return_origin"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_astralform_return_origin,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_astralform_main_conf_t, return_origins),
      NULL },

    { ngx_string("astralform_mcp_allowed_origin"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_astralform_return_origin,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_astralform_main_conf_t, mcp_origins),
      NULL },

    { ngx_string("astralform_mcp_client_origin"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_astralform_return_origin,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_astralform_main_conf_t, mcp_client_origins),
      NULL },

    { ngx_string("astralform_mcp_session_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_astralform_main_conf_t, mcp_session_ttl),
      NULL },

    { ngx_string("astralform_http_client"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_astralform_main_conf_t, http.client),
      &ngx_astralform_http_clients },

    { ngx_string("astralform_http_ca_file"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_astralform_main_conf_t, http.ca_file),
      NULL },

    { ngx_string("astralform_http_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_astralform_main_conf_t, http.connect_timeout),
      NULL },

    { ngx_string("astralform_http_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_astralform_main_conf_t, http.timeout),
      NULL },

    { ngx_string("astralform_http_max_response_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_astralform_main_conf_t, http.max_response),
      NULL },

    { ngx_string("astralform_http_max_host_connections"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_astralform_main_conf_t, http.max_host_connections),
      NULL },

    { ngx_string("astralform_max_body_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_astralform_main_conf_t, max_body_size),
      NULL },

    { ngx_string("astralform_session_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_astralform_main_conf_t, session_ttl),
      NULL },

    { ngx_string("astralform_state_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_astralform_main_conf_t, state_ttl),
      NULL },

    { ngx_string("astralform_refresh_skew"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_astralform_main_conf_t, refresh_skew),
      NULL },

    { ngx_string("astralform_revoke_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_astralform_main_conf_t, revoke_timeout),
      NULL },

    { ngx_string("astralform_refresh_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_astralform_main_conf_t, refresh_timeout),
      NULL },

    { ngx_string("astralform_agent"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE3,
      ngx_astralform_agent,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("astralform_max_credentials"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_astralform_main_conf_t, max_credentials),
      NULL },

    { ngx_string("astralform_max_pending_sessions"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_astralform_main_conf_t, max_pending_sessions),
      NULL },

    { ngx_string("astralform_max_value_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_astralform_main_conf_t, max_value_size),
      NULL },

    { ngx_string("astralform_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_astralform_api,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("astralform_dashboard"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_astralform_dashboard,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_astralform_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_astralform_postconfiguration,      /* postconfiguration */

    ngx_astralform_create_main_conf,       /* create main configuration */
    ngx_astralform_init_main_conf,         /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_astralform_module = {
    NGX_MODULE_V1,
    &ngx_astralform_module_ctx,            /* module context */
    ngx_astralform_commands,               /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_astralform_init_process,           /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_astralform_exit_process,           /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_astralform_create_main_conf(ngx_conf_t *cf)
{
    ngx_pool_cleanup_t          *cln;
    ngx_astralform_conf_ctx_t   *cctx;
    ngx_astralform_main_conf_t  *amcf;

    amcf = ngx_pcalloc(cf->pool, sizeof(ngx_astralform_main_conf_t));
    if (amcf == NULL) {
        return NULL;
    }

    cctx = ngx_pcalloc(cf->pool, sizeof(ngx_astralform_conf_ctx_t));
    if (cctx == NULL) {
        return NULL;
    }

    if (ngx_array_init(&amcf->keys, cf->pool, 2,
                       sizeof(ngx_astralform_key_t)) != NGX_OK
        || ngx_array_init(&amcf->projects, cf->pool, 4,
                          sizeof(ngx_astralform_project_t)) != NGX_OK
        || ngx_array_init(&cctx->pending, cf->pool, 4,
                          sizeof(ngx_astralform_pending_t)) != NGX_OK
        || ngx_array_init(&cctx->agents, cf->pool, 4,
                          sizeof(ngx_astralform_pending_agent_t)) != NGX_OK
        || ngx_astralform_catalog_init(cf, &amcf->catalog) != NGX_OK)
    {
        return NULL;
    }

    amcf->conf_ctx = cctx;

    /* the key ring is wiped when this configuration is released */
    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        return NULL;
    }
    cln->handler = ngx_astralform_main_conf_cleanup;
    cln->data = amcf;

    amcf->redis.connect_timeout = NGX_CONF_UNSET_MSEC;
    amcf->redis.timeout = NGX_CONF_UNSET_MSEC;
    amcf->redis.cache_size = NGX_CONF_UNSET_SIZE;
    amcf->http.client = NGX_CONF_UNSET_UINT;
    amcf->http.connect_timeout = NGX_CONF_UNSET_MSEC;
    amcf->http.timeout = NGX_CONF_UNSET_MSEC;
    amcf->http.max_response = NGX_CONF_UNSET_SIZE;
    amcf->http.max_host_connections = NGX_CONF_UNSET_UINT;
    amcf->max_body_size = NGX_CONF_UNSET_SIZE;
    amcf->session_ttl = NGX_CONF_UNSET_MSEC;
    amcf->mcp_session_ttl = NGX_CONF_UNSET_MSEC;
    amcf->state_ttl = NGX_CONF_UNSET_MSEC;
    amcf->refresh_skew = NGX_CONF_UNSET_MSEC;
    amcf->revoke_timeout = NGX_CONF_UNSET_MSEC;
    amcf->refresh_timeout = NGX_CONF_UNSET_MSEC;
    amcf->max_credentials = NGX_CONF_UNSET_UINT;
    amcf->max_pending_sessions = NGX_CONF_UNSET_UINT;
    amcf->max_value_size = NGX_CONF_UNSET_SIZE;

    return amcf;
}


static char *
ngx_astralform_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_astralform_main_conf_t *amcf = conf;

    ngx_str_t                        addr;
    ngx_uint_t                       i;
    ngx_astralform_pending_t        *p;
    ngx_astralform_conf_ctx_t       *cctx;
    ngx_astralform_pending_agent_t  *pa;

    if (amcf->prefix.data == NULL) {
        ngx_str_set(&amcf->prefix, "astralform:");
    }

    if (amcf->redis.addr.data == NULL) {
        ngx_str_set(&addr, "127.0.0.1:6379");
        if (ngx_astralform_redis_parse(cf, &amcf->redis, &addr, 1)
            != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    ngx_conf_init_msec_value(amcf->redis.connect_timeout, 500);
    ngx_conf_init_msec_value(amcf->redis.timeout, 1000);
    ngx_conf_init_size_value(amcf->redis.cache_size, 1024 * 1024);
    ngx_conf_init_uint_value(amcf->http.client,
                             NGX_ASTRALFORM_HTTP_CLIENT_NGINX);
    ngx_conf_init_msec_value(amcf->http.connect_timeout, 5000);
    ngx_conf_init_msec_value(amcf->http.timeout, 30000);
    ngx_conf_init_size_value(amcf->http.max_response, 4 * 1024 * 1024);
    ngx_conf_init_uint_value(amcf->http.max_host_connections, 0);
    ngx_conf_init_size_value(amcf->max_body_size, 64 * 1024);
    ngx_conf_init_msec_value(amcf->session_ttl, 600000);
    ngx_conf_init_msec_value(amcf->mcp_session_ttl, 3600000);
    ngx_conf_init_msec_value(amcf->state_ttl, 600000);
    ngx_conf_init_msec_value(amcf->refresh_skew, 60000);
    ngx_conf_init_msec_value(amcf->revoke_timeout, 5000);
    ngx_conf_init_msec_value(amcf->refresh_timeout, 60000);
    ngx_conf_init_uint_value(amcf->max_credentials, 10000);
    ngx_conf_init_uint_value(amcf->max_pending_sessions, 1000);
    ngx_conf_init_size_value(amcf->max_value_size, 2048);

    if (amcf->http.ca_file.len
        && ngx_conf_full_name(cf->cycle, &amcf->http.ca_file, 1) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ngx_astralform_catalog_finish(cf, &amcf->catalog) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    cctx = amcf->conf_ctx;
    p = cctx->pending.elts;

    for (i = 0; i < cctx->pending.nelts; i++) {
        if (ngx_astralform_resolve_connector(cf, amcf, &p[i]) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    pa = cctx->agents.elts;

    for (i = 0; i < cctx->agents.nelts; i++) {
        if (ngx_astralform_resolve_agent(cf, amcf, &pa[i]) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    if (ngx_astralform_unique_keys(cf, amcf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (amcf->projects.nelts == 0) {
        return NGX_CONF_OK;
    }

    if (amcf->keys.nelts == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "no \"astralform_key\" is defined: projects need a key "
                      "to seal their secrets");
        return NGX_CONF_ERROR;
    }

    if (amcf->public_url.len == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "no \"astralform_public_url\" is defined: OAuth needs "
                      "it for the redirect URI");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_astralform_postconfiguration(ngx_conf_t *cf)
{
    if (ngx_astralform_errors_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_astralform_variables_add(cf);
}


static ngx_int_t
ngx_astralform_init_process(ngx_cycle_t *cycle)
{
    ngx_astralform_main_conf_t  *amcf;

    amcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_astralform_module);

    if (amcf == NULL || !amcf->enabled) {
        return NGX_OK;
    }

    if (ngx_astralform_http_init_process(cycle, &amcf->http) != NGX_OK) {
        return NGX_ERROR;
    }

    /* one line a start or reload, from the first worker */
    if (ngx_process == NGX_PROCESS_WORKER && ngx_worker == 0) {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "astralform " NGX_ASTRALFORM_VERSION " started: "
                      "%ui projects, %ui catalog connectors, redis \"%V\"",
                      amcf->projects.nelts, amcf->catalog.defs.nelts,
                      &amcf->redis.addr);
    }

    if (ngx_astralform_redis_init_process(cycle, &amcf->redis) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_astralform_revocations_init_process(cycle);
}


static void
ngx_astralform_exit_process(ngx_cycle_t *cycle)
{
    ngx_astralform_main_conf_t  *amcf;

    amcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_astralform_module);

    if (amcf == NULL || !amcf->enabled) {
        return;
    }

    ngx_astralform_http_exit_process(cycle);
    ngx_astralform_redis_exit_process(cycle);
    ngx_astralform_crypto_exit();
}


static void
ngx_astralform_main_conf_cleanup(void *data)
{
    ngx_astralform_main_conf_t  *amcf = data;

    ngx_astralform_keys_wipe(&amcf->keys);
}


/* a size, or 0 / "off": no cache, every configuration read goes to Redis */
static char *
ngx_astralform_config_cache_size(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_astralform_main_conf_t *amcf = conf;

    ssize_t     size;
    ngx_str_t  *value;

    if (amcf->redis.cache_size != NGX_CONF_UNSET_SIZE) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        amcf->redis.cache_size = 0;
        return NGX_CONF_OK;
    }

    size = ngx_parse_size(&value[1]);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"astralform_config_cache_size\" takes a size "
                           "or \"off\", not \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    amcf->redis.cache_size = size;

    return NGX_CONF_OK;
}


static char *
ngx_astralform_redis_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_astralform_main_conf_t *amcf = conf;

    if (amcf->redis.addr.data != NULL) {
        return "is duplicate";
    }

    return ngx_astralform_redis_parse(cf, &amcf->redis,
                                      (ngx_str_t *) cf->args->elts + 1,
                                      cf->args->nelts - 1);
}


static char *
ngx_astralform_key_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_astralform_main_conf_t *amcf = conf;

    ngx_str_t             *value;
    ngx_uint_t             i;
    ngx_astralform_key_t  *key;

    value = cf->args->elts;
    key = amcf->keys.elts;

    for (i = 0; i < amcf->keys.nelts; i++) {
        if (key[i].id.len == value[1].len
            && ngx_strncmp(key[i].id.data, value[1].data, value[1].len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate \"astralform_key\" id \"%V\"",
                               &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    key = ngx_array_push(&amcf->keys);
    if (key == NULL) {
        return NGX_CONF_ERROR;
    }

    return ngx_astralform_key_load(cf, key, &value[1], &value[2]);
}


static char *
ngx_astralform_public_url(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_astralform_main_conf_t *amcf = conf;

    u_char     *p;
    ngx_str_t  *value;

    if (amcf->public_url.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;
    amcf->public_url = value[1];

    while (amcf->public_url.len
           && amcf->public_url.data[amcf->public_url.len - 1] == '/')
    {
        amcf->public_url.len--;
    }

    if (ngx_astralform_valid_url(&amcf->public_url) != NGX_OK
        || ngx_strlchr(amcf->public_url.data,
                       amcf->public_url.data + amcf->public_url.len, '?'))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"astralform_public_url\" must be an absolute "
                           "http(s) URL without a query, not \"%V\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    /* the API's paths are absolute: a path here would break every link */
    p = ngx_strlchr(amcf->public_url.data,
                    amcf->public_url.data + amcf->public_url.len, ':');
    if (p != NULL
        && ngx_strlchr(p + 3, amcf->public_url.data + amcf->public_url.len,
                       '/') != NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"astralform_public_url\" must be an origin "
                           "such as https://gw.example.com, without a path: "
                           "the API is served under /v1/, not \"%V\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_astralform_catalog_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_astralform_main_conf_t *amcf = conf;

    ngx_str_t  *value;

    value = cf->args->elts;

    return ngx_astralform_catalog_load(cf, &amcf->catalog, &value[1]);
}


static char *
ngx_astralform_provider(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_astralform_main_conf_t *amcf = conf;

    return ngx_astralform_catalog_override(cf, &amcf->catalog,
                                           cf->args->elts, cf->args->nelts);
}


static char *
ngx_astralform_project(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_astralform_main_conf_t *amcf = conf;

    ngx_str_t                 *value, path;
    ngx_uint_t                 i;
    ngx_astralform_project_t  *project;

    value = cf->args->elts;

    if (ngx_astralform_valid_id(&value[1]) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"astralform_project\" id \"%V\" must be 1 to 64 "
                           "letters, digits, \"_\" or \"-\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (ngx_astralform_find_project(amcf, &value[1]) != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate \"astralform_project\" \"%V\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    project = ngx_array_push(&amcf->projects);
    if (project == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(project, sizeof(ngx_astralform_project_t));
    project->id = value[1];

    if (ngx_array_init(&project->admin_keys, cf->pool, 2, sizeof(ngx_str_t))
        != NGX_OK
        || ngx_array_init(&project->agent_keys, cf->pool, 2,
                          sizeof(ngx_str_t)) != NGX_OK
        || ngx_array_init(&project->connectors, cf->pool, 4,
                          sizeof(ngx_astralform_connector_t)) != NGX_OK
        || ngx_array_init(&project->agents, cf->pool, 2,
                          sizeof(ngx_astralform_agent_t)) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "admin_key_file=", 15) == 0) {
            path.data = value[i].data + 15;
            path.len = value[i].len - 15;

            if (ngx_astralform_read_keys(cf, &path, &project->admin_keys)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

        } else if (ngx_strncmp(value[i].data, "agent_key_file=", 15) == 0) {
            path.data = value[i].data + 15;
            path.len = value[i].len - 15;

            if (ngx_astralform_read_keys(cf, &path, &project->agent_keys)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"astralform_project\" has an invalid "
                               "parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    if (project->admin_keys.nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"astralform_project\" \"%V\" needs "
                           "admin_key_file=", &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_astralform_connector(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_astralform_main_conf_t *amcf = conf;

    u_char                      *eq;
    ngx_str_t                   *value, name, v;
    ngx_uint_t                   i;
    ngx_astralform_pending_t    *p;
    ngx_astralform_conf_ctx_t   *cctx;
    ngx_astralform_connector_t  *conn;

    cctx = amcf->conf_ctx;
    value = cf->args->elts;

    p = ngx_array_push(&cctx->pending);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(p, sizeof(ngx_astralform_pending_t));
    p->project = value[1];
    p->slug = value[2];
    p->file = cf->conf_file->file.name.data;
    p->line = cf->conf_file->line;

    conn = &p->conn;
    conn->id = value[2];
    conn->require_auth = 1;
    conn->allow_end_user_auth = 1;
    conn->from_config = 1;

    for (i = 3; i < cf->args->nelts; i++) {
        eq = ngx_strlchr(value[i].data, value[i].data + value[i].len, '=');
        if (eq == NULL) {
            goto invalid;
        }

        name.data = value[i].data;
        name.len = eq - value[i].data;
        v.data = eq + 1;
        v.len = value[i].data + value[i].len - v.data;

        if (ngx_astralform_str_is(&name, "id")) {
            if (ngx_astralform_valid_id(&v) != NGX_OK) {
                goto invalid;
            }
            conn->id = v;
            p->has_id = 1;

        } else if (ngx_astralform_str_is(&name, "client_id")) {
            conn->client_id = v;

        } else if (ngx_astralform_str_is(&name, "client_secret_file")) {
            if (ngx_astralform_read_secret_file(cf, &v, &conn->client_secret,
                                                1)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

        } else if (ngx_astralform_str_is(&name, "api_key_file")) {
            if (ngx_astralform_read_secret_file(cf, &v, &conn->api_key, 1)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

        } else if (ngx_astralform_str_is(&name, "mcp_url")) {
            if (ngx_astralform_valid_url(&v) != NGX_OK) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"astralform_connector\" has a bad URL "
                                   "in \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }
            conn->mcp_url = v;

        } else if (ngx_astralform_str_is(&name, "scopes")) {
            conn->scopes = ngx_astralform_split_list(cf, &value[i], &v);
            if (conn->scopes == NULL) {
                return NGX_CONF_ERROR;
            }

        } else if (ngx_astralform_str_is(&name, "agents")) {
            conn->agents = ngx_astralform_split_list(cf, &value[i], &v);
            if (conn->agents == NULL) {
                return NGX_CONF_ERROR;
            }

        } else if (ngx_astralform_str_is(&name, "require_auth")
                   || ngx_astralform_str_is(&name, "allow_end_user_auth"))
        {
            if (!ngx_astralform_str_is(&v, "on")
                && !ngx_astralform_str_is(&v, "off"))
            {
                goto invalid;
            }

            if (ngx_astralform_str_is(&name, "require_auth")) {
                conn->require_auth = ngx_astralform_str_is(&v, "on");
            } else {
                conn->allow_end_user_auth = ngx_astralform_str_is(&v, "on");
            }

        } else {
            goto invalid;
        }
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"astralform_connector\" has an invalid parameter "
                       "\"%V\"", &value[i]);
    return NGX_CONF_ERROR;
}


/* the checks that need the whole configuration: catalog, projects, ids */
static ngx_int_t
ngx_astralform_resolve_connector(ngx_conf_t *cf,
    ngx_astralform_main_conf_t *amcf, ngx_astralform_pending_t *p)
{
    u_char                       known[512];
    const char                  *problem;
    ngx_uint_t                   i;
    ngx_astralform_project_t    *project;
    ngx_astralform_connector_t  *conn, *other;

    conn = &p->conn;
    problem = NULL;

    project = ngx_astralform_find_project(amcf, &p->project);
    conn->def = ngx_astralform_catalog_find(&amcf->catalog, &p->slug);

    if (project == NULL) {
        problem = "names an unknown project";

    } else if (conn->def == NULL) {
        problem = "names a connector slug the catalog does not have";

    } else if (conn->def->type == NGX_ASTRALFORM_OAUTH
               && (conn->client_id.len == 0 || conn->client_secret.len == 0))
    {
        problem = "needs client_id= and client_secret_file= for an oauth "
                  "connector";

    } else if (conn->def->type == NGX_ASTRALFORM_REMOTE_MCP
               && (conn->mcp_url.len == 0 || !p->has_id))
    {
        problem = "needs mcp_url= and id= for a remote_mcp connector";

    } else if (conn->def->type == NGX_ASTRALFORM_API_KEY
               && conn->api_key.len == 0 && !conn->allow_end_user_auth)
    {
        problem = "needs api_key_file= when end users may not bring their "
                  "own key";
    }

    if (problem == NULL) {
        other = project->connectors.elts;

        for (i = 0; i < project->connectors.nelts; i++) {
            if (other[i].id.len == conn->id.len
                && ngx_strncmp(other[i].id.data, conn->id.data,
                               conn->id.len) == 0)
            {
                problem = "repeats a connector id of the project";
                break;
            }

            /* catalog tool names are global: one instance of a slug */
            if (other[i].def == conn->def
                && conn->def->type != NGX_ASTRALFORM_REMOTE_MCP)
            {
                problem = "enables a catalog connector the project already "
                          "has (its tool names would collide)";
                break;
            }
        }
    }

    if (problem != NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"astralform_connector %V %V\" %s%s in %s:%ui",
                      &p->project, &p->slug, problem,
                      conn->def == NULL && project != NULL
                      ? ngx_astralform_known_slugs(amcf, known,
                                                   sizeof(known))
                      : (u_char *) "",
                      p->file, p->line);
        return NGX_ERROR;
    }

    other = ngx_array_push(&project->connectors);
    if (other == NULL) {
        return NGX_ERROR;
    }

    *other = *conn;

    return NGX_OK;
}


/* a list of origins: astralform_return_origin, astralform_mcp_allowed_origin */
static char *
ngx_astralform_return_origin(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    u_char        *p;
    ngx_str_t     *value, *origin;
    ngx_uint_t     i;
    ngx_array_t  **list;

    value = cf->args->elts;
    list = (ngx_array_t **) ((char *) conf + cmd->offset);

    if (*list == NULL) {
        *list = ngx_array_create(cf->pool, 4, sizeof(ngx_str_t));
        if (*list == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    for (i = 1; i < cf->args->nelts; i++) {
        p = NULL;

        /* an origin is scheme://host[:port] and nothing more */
        if (ngx_astralform_valid_url(&value[i]) == NGX_OK) {
            p = ngx_strlchr(value[i].data, value[i].data + value[i].len, ':');
            p = ngx_strlchr(p + 3, value[i].data + value[i].len, '/');
        }

        if (ngx_astralform_valid_url(&value[i]) != NGX_OK || p != NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" must be an origin such as "
                               "https://app.example.com, not \"%V\"",
                               &cmd->name, &value[i]);
            return NGX_CONF_ERROR;
        }

        origin = ngx_array_push(*list);
        if (origin == NULL) {
            return NGX_CONF_ERROR;
        }

        *origin = value[i];
    }

    return NGX_CONF_OK;
}


static char *
ngx_astralform_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t    *clcf;
    ngx_astralform_main_conf_t  *amcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    if (clcf->handler != NULL) {
        return "is duplicate";
    }

    clcf->handler = ngx_astralform_api_handler;

    amcf = ngx_http_conf_get_module_main_conf(cf, ngx_astralform_module);
    amcf->enabled = 1;

    return NGX_CONF_OK;
}


static char *
ngx_astralform_dashboard(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    if (clcf->handler != NULL) {
        return "is duplicate";
    }

    clcf->handler = ngx_astralform_dashboard_handler;

    return NGX_CONF_OK;
}


/* a key file holds one key a line; several lines allow rotation */
static ngx_int_t
ngx_astralform_read_keys(ngx_conf_t *cf, ngx_str_t *path, ngx_array_t *keys)
{
    u_char      *p, *last, *eol;
    ngx_str_t    raw, *key;
    ngx_uint_t   line;

    if (ngx_astralform_read_secret_file(cf, path, &raw, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    p = raw.data;
    last = raw.data + raw.len;

    for (line = 1; p < last; line++) {
        eol = ngx_strlchr(p, last, '\n');
        if (eol == NULL) {
            eol = last;
        }

        key = ngx_array_push(keys);
        if (key == NULL) {
            return NGX_ERROR;
        }

        key->data = p;
        key->len = eol - p;

        if (key->len && key->data[key->len - 1] == '\r') {
            key->len--;
        }

        if (ngx_astralform_check_key(cf, path, key, line) != NGX_OK) {
            return NGX_ERROR;
        }

        p = eol + 1;
    }

    return NGX_OK;
}


/*
 * A key is compared byte for byte with what follows "Bearer ": a byte
 * order mark, a NUL, a space or a control character is an editor's or a
 * script's accident that no client would send, so it fails the start.
 * A short key or one of few distinct characters is a guessable one.
 */
static ngx_int_t
ngx_astralform_check_key(ngx_conf_t *cf, ngx_str_t *path, ngx_str_t *key,
    ngx_uint_t line)
{
    u_char       c, seen[256];
    ngx_str_t   *directive;
    ngx_uint_t   i, blank, variety;
    const char  *problem;

    directive = cf->args->elts;
    problem = NULL;
    blank = 0;
    variety = 0;
    ngx_memzero(seen, sizeof(seen));

    for (i = 0; i < key->len; i++) {
        c = key->data[i];

        if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
            blank++;

        } else if (c == '\0') {
            problem = "that holds a NUL byte";
            break;

        } else if (c < 0x20 || c >= 0x7f) {
            problem = "that holds a control or non-ASCII byte";
        }

        if (!seen[c]) {
            seen[c] = 1;
            variety++;
        }
    }

    if (key->len >= 3 && ngx_strncmp(key->data, "\xef\xbb\xbf", 3) == 0) {
        problem = "that starts with a UTF-8 byte order mark";

    } else if (key->len && blank == key->len) {
        problem = "that is only whitespace";

    } else if (problem == NULL && blank) {
        problem = "that holds whitespace";

    } else if (problem == NULL && key->len < NGX_ASTRALFORM_MIN_API_KEY) {
        problem = "shorter than 16 characters";
    }

    if (problem != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" has a key in \"%V\" %s (line %ui)",
                           &directive[0], path, problem, line);
        return NGX_ERROR;
    }

    if (key->len < NGX_ASTRALFORM_GOOD_API_KEY
        || variety < NGX_ASTRALFORM_KEY_VARIETY)
    {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"%V\" has a weak key in \"%V\" (line %ui): "
                           "use %d or more random characters",
                           &directive[0], path, line,
                           NGX_ASTRALFORM_GOOD_API_KEY);
    }

    return NGX_OK;
}


/* astralform_agent PROJECT AGENT_ID key_file=PATH */
static char *
ngx_astralform_agent(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_astralform_main_conf_t *amcf = conf;

    ngx_str_t                       *value, path;
    ngx_astralform_conf_ctx_t       *cctx;
    ngx_astralform_pending_agent_t  *p;

    cctx = amcf->conf_ctx;
    value = cf->args->elts;

    if (!ngx_astralform_valid_identity(&value[2])) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"astralform_agent\" id \"%V\" must be 1 to 128 "
                           "letters, digits or \"._:@-\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    if (value[3].len <= 9 || ngx_strncmp(value[3].data, "key_file=", 9) != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"astralform_agent\" has an invalid parameter "
                           "\"%V\": it takes key_file=PATH", &value[3]);
        return NGX_CONF_ERROR;
    }

    p = ngx_array_push(&cctx->agents);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(p, sizeof(ngx_astralform_pending_agent_t));
    p->project = value[1];
    p->agent.id = value[2];
    p->file = cf->conf_file->file.name.data;
    p->line = cf->conf_file->line;

    if (ngx_array_init(&p->agent.keys, cf->pool, 2, sizeof(ngx_str_t))
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    path.data = value[3].data + 9;
    path.len = value[3].len - 9;

    if (ngx_astralform_read_keys(cf, &path, &p->agent.keys) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_astralform_resolve_agent(ngx_conf_t *cf,
    ngx_astralform_main_conf_t *amcf, ngx_astralform_pending_agent_t *p)
{
    const char                *problem;
    ngx_uint_t                 i;
    ngx_astralform_agent_t    *agent;
    ngx_astralform_project_t  *project;

    problem = NULL;
    project = ngx_astralform_find_project(amcf, &p->project);

    if (project == NULL) {
        problem = "names an unknown project";

    } else {
        agent = project->agents.elts;

        for (i = 0; i < project->agents.nelts; i++) {
            if (agent[i].id.len == p->agent.id.len
                && ngx_strncmp(agent[i].id.data, p->agent.id.data,
                               p->agent.id.len) == 0)
            {
                problem = "is duplicate: give one key_file= several lines "
                          "to rotate keys";
                break;
            }
        }
    }

    if (problem != NULL) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"astralform_agent %V %V\" %s in %s:%ui",
                      &p->project, &p->agent.id, problem, p->file, p->line);
        return NGX_ERROR;
    }

    agent = ngx_array_push(&project->agents);
    if (agent == NULL) {
        return NGX_ERROR;
    }

    *agent = p->agent;

    return NGX_OK;
}


/*
 * One key, one owner: a key of two projects, or of an agent and a
 * project-wide list, would make who is calling depend on the order of
 * the configuration.
 */
static ngx_int_t
ngx_astralform_unique_keys(ngx_conf_t *cf, ngx_astralform_main_conf_t *amcf)
{
    ngx_uint_t                 i, j;
    ngx_array_t                uses;
    ngx_astralform_agent_t    *agent;
    ngx_astralform_project_t  *project;
    ngx_astralform_key_use_t  *u;

    if (ngx_array_init(&uses, cf->temp_pool, 16,
                       sizeof(ngx_astralform_key_use_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    project = amcf->projects.elts;

    for (i = 0; i < amcf->projects.nelts; i++) {
        if (ngx_astralform_key_uses(cf->temp_pool, &uses,
                                    &project[i].admin_keys, &project[i],
                                    NULL, "admin_key_file=")
            != NGX_OK
            || ngx_astralform_key_uses(cf->temp_pool, &uses,
                                       &project[i].agent_keys, &project[i],
                                       NULL, "agent_key_file=")
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        agent = project[i].agents.elts;

        for (j = 0; j < project[i].agents.nelts; j++) {
            if (ngx_astralform_key_uses(cf->temp_pool, &uses, &agent[j].keys,
                                        &project[i], &agent[j].id,
                                        "astralform_agent")
                != NGX_OK)
            {
                return NGX_ERROR;
            }
        }
    }

    u = uses.elts;

    for (i = 0; i < uses.nelts; i++) {
        for (j = i + 1; j < uses.nelts; j++) {
            if (u[i].key->len != u[j].key->len
                || ngx_memcmp(u[i].key->data, u[j].key->data, u[i].key->len)
                   != 0)
            {
                continue;
            }

            ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                          "one key is given twice, in %V and in %V: every "
                          "project and agent needs keys of its own",
                          &u[i].owner, &u[j].owner);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_astralform_key_uses(ngx_pool_t *pool, ngx_array_t *uses,
    ngx_array_t *keys, ngx_astralform_project_t *project, ngx_str_t *agent,
    const char *what)
{
    u_char                    *p;
    ngx_str_t                 *key, owner;
    ngx_uint_t                 i;
    ngx_astralform_key_use_t  *u;

    if (keys->nelts == 0) {
        return NGX_OK;
    }

    /* "astralform_agent p1 a1" or "astralform_project p1 agent_key_file=" */
    owner.data = ngx_pnalloc(pool, sizeof("\"astralform_project  \"")
                                   + project->id.len + ngx_strlen(what)
                                   + (agent ? agent->len : 0));
    if (owner.data == NULL) {
        return NGX_ERROR;
    }

    if (agent != NULL) {
        p = ngx_sprintf(owner.data, "\"%s %V %V\"", what, &project->id,
                        agent);
    } else {
        p = ngx_sprintf(owner.data, "\"astralform_project %V %s\"",
                        &project->id, what);
    }

    owner.len = p - owner.data;
    key = keys->elts;

    for (i = 0; i < keys->nelts; i++) {
        u = ngx_array_push(uses);
        if (u == NULL) {
            return NGX_ERROR;
        }

        u->key = &key[i];
        u->owner = owner;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_astralform_valid_id(ngx_str_t *id)
{
    ngx_uint_t  i;

    if (id->len == 0 || id->len > 64) {
        return NGX_ERROR;
    }

    for (i = 0; i < id->len; i++) {
        if (!(isalnum(id->data[i]) || id->data[i] == '_'
              || id->data[i] == '-'))
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* " (known: a, b, c)" for a message about an unknown slug */
static u_char *
ngx_astralform_known_slugs(ngx_astralform_main_conf_t *amcf, u_char *buf,
    size_t size)
{
    u_char                *p, *last;
    ngx_uint_t             i;
    ngx_astralform_def_t  *def;

    p = buf;
    last = buf + size - 2;
    def = amcf->catalog.defs.elts;

    p = ngx_slprintf(p, last, " (known:");

    for (i = 0; i < amcf->catalog.defs.nelts; i++) {
        p = ngx_slprintf(p, last, "%s %V", i ? "," : "", &def[i].slug);
    }

    if (i == 0) {
        p = ngx_slprintf(p, last, " none: check astralform_catalog");
    }

    *p++ = ')';
    *p = '\0';

    return buf;
}


/* "a,b,c": every item non-empty (a stray comma is a typo, not a wish) */
static ngx_array_t *
ngx_astralform_split_list(ngx_conf_t *cf, ngx_str_t *param, ngx_str_t *list)
{
    u_char       *p, *last, *comma;
    ngx_str_t    *item;
    ngx_array_t  *a;

    a = ngx_array_create(cf->pool, 4, sizeof(ngx_str_t));
    if (a == NULL) {
        return NULL;
    }

    p = list->data;
    last = list->data + list->len;

    for ( ;; ) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        if (comma == p) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"astralform_connector\" has an empty item "
                               "in \"%V\": separate items with one comma",
                               param);
            return NULL;
        }

        item = ngx_array_push(a);
        if (item == NULL) {
            return NULL;
        }
        item->data = p;
        item->len = comma - p;

        if (comma == last) {
            return a;
        }

        p = comma + 1;
    }
}


static ngx_astralform_project_t *
ngx_astralform_find_project(ngx_astralform_main_conf_t *amcf, ngx_str_t *id)
{
    return ngx_astralform_project_find(amcf, id);
}
