/*
 * ngx_astralform_module: the connector gateway for AI agents.
 * Types shared by every part of the module.
 */

#ifndef _NGX_ASTRALFORM_H_INCLUDED_
#define _NGX_ASTRALFORM_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>

#include "ngx_astralform_http.h"
#include "ngx_astralform_redis.h"
#include "ngx_astralform_crypto.h"
#include "ngx_astralform_catalog.h"


#define NGX_ASTRALFORM_MAX_SEGMENTS  10

#define NGX_ASTRALFORM_VERSION       "0.10.0"


/* A connector enabled for a project (from nginx.conf or from Redis). */
typedef struct {
    ngx_str_t                     id;
    ngx_astralform_def_t         *def;
    ngx_str_t                     client_id;
    ngx_str_t                     client_secret;   /* plain (config) */
    ngx_str_t                     api_key;         /* plain (config) */
    ngx_str_t                     sealed_secret;   /* sealed (API) */
    ngx_str_t                     sealed_api_key;  /* sealed (API) */
    ngx_str_t                     mcp_url;
    ngx_str_t                     stored;          /* JSON as in Redis (API) */
    ngx_array_t                  *scopes;          /* of ngx_str_t */
    ngx_array_t                  *agents;          /* of ngx_str_t (config) */
    ngx_flag_t                    require_auth;
    ngx_flag_t                    allow_end_user_auth;
    unsigned                      from_config:1;
} ngx_astralform_connector_t;


/* an agent whose keys are bound to it (astralform_agent) */
typedef struct {
    ngx_str_t                     id;
    ngx_array_t                   keys;            /* of ngx_str_t */
} ngx_astralform_agent_t;


typedef struct {
    ngx_str_t                     id;
    ngx_array_t                   admin_keys;      /* of ngx_str_t */
    ngx_array_t                   agent_keys;      /* of ngx_str_t */
    ngx_array_t                   connectors;      /* config connectors */
    ngx_array_t                   agents;          /* ngx_astralform_agent_t */
} ngx_astralform_project_t;


typedef struct {
    ngx_str_t                     prefix;          /* Redis key prefix */
    ngx_astralform_redis_conf_t   redis;
    ngx_array_t                   keys;            /* ngx_astralform_key_t */
    ngx_str_t                     public_url;
    ngx_astralform_catalog_t      catalog;
    ngx_array_t                   projects;        /* ngx_astralform_project_t */
    ngx_array_t                  *return_origins;  /* of ngx_str_t */
    ngx_array_t                  *mcp_origins;     /* of ngx_str_t */
    ngx_array_t                  *mcp_client_origins; /* of ngx_str_t */
    ngx_msec_t                    mcp_session_ttl;
    ngx_astralform_http_conf_t    http;
    size_t                        max_body_size;
    ngx_msec_t                    session_ttl;
    ngx_msec_t                    state_ttl;
    ngx_msec_t                    refresh_skew;
    ngx_msec_t                    revoke_timeout;
    ngx_msec_t                    refresh_timeout;
    ngx_uint_t                    max_credentials;   /* per project */
    ngx_uint_t                    max_pending_sessions;
    size_t                        max_value_size;
    ngx_flag_t                    enabled;         /* any astralform_api */
    void                         *conf_ctx;        /* parsing state */
} ngx_astralform_main_conf_t;


typedef enum {
    NGX_ASTRALFORM_KEY_NONE = 0,
    NGX_ASTRALFORM_KEY_AGENT,
    NGX_ASTRALFORM_KEY_ADMIN
} ngx_astralform_key_role_e;


typedef struct ngx_astralform_ctx_s  ngx_astralform_ctx_t;

typedef void (*ngx_astralform_step_pt)(ngx_astralform_ctx_t *ctx);

/* takes an answer (json released by it) instead of the HTTP client */
typedef ngx_int_t (*ngx_astralform_answer_pt)(ngx_astralform_ctx_t *ctx,
    ngx_uint_t status, json_t *json);


/* Per-request state carried between the asynchronous steps. */
struct ngx_astralform_ctx_s {
    ngx_http_request_t           *request;
    ngx_astralform_main_conf_t   *amcf;
    ngx_astralform_project_t     *project;
    ngx_astralform_key_role_e     role;

    ngx_str_t                     seg[NGX_ASTRALFORM_MAX_SEGMENTS];
    ngx_uint_t                    nseg;

    ngx_str_t                     user;            /* X-Astralform-User */
    ngx_str_t                     agent;           /* the request's agent,
                                                      see request_agent() */
    ngx_str_t                     key_agent;       /* the agent the key is
                                                      bound to, or empty */
    json_t                       *body;            /* parsed request body */

    /* the project's connectors, config ones first, then Redis ones */
    ngx_array_t                   connectors;      /* of connector_t */
    ngx_array_t                  *assignment;      /* of ngx_str_t, or NULL */
    unsigned                      assignment_set:1;

    ngx_uint_t                    pending;         /* Redis replies awaited */
    ngx_uint_t                    failed;          /* a reply was NULL */
    ngx_astralform_step_pt        next;            /* after pending == 0 */

    /* what the access log variables report */
    ngx_str_t                     connector_id;
    ngx_str_t                     tool;
    ngx_str_t                     error;
    ngx_uint_t                    provider_status;

    json_t                       *result;          /* answer being built;
                                                      released with r */
    void                         *data;            /* the handler's own */

    ngx_array_t                  *secrets;         /* scrub forms of the
                                                      credentials sent */
    ngx_buf_t                    *envelope;        /* nginx's own error,
                                                      as JSON */
    unsigned                      answered:1;      /* the module answered */
    unsigned                      form:1;          /* body: a browser form */
    ngx_astralform_answer_pt      answer;          /* another door's */
    void                         *door;            /* that door's state */
    unsigned                      any_body:1;
    unsigned                      finalized:1;     /* ngx_astralform_finish()
                                                      ran */
    unsigned                      cancelled:1;     /* answered while its work
                                                      ran (MCP cancel) */
};


extern ngx_module_t  ngx_astralform_module;


/* api: answers, errors, the request life cycle */
ngx_int_t ngx_astralform_send_json(ngx_astralform_ctx_t *ctx,
    ngx_uint_t status, json_t *json);
ngx_int_t ngx_astralform_send_json_raw(ngx_astralform_ctx_t *ctx,
    ngx_uint_t status, json_t *head, const char *member, ngx_str_t *raw);
ngx_int_t ngx_astralform_send_error(ngx_astralform_ctx_t *ctx,
    ngx_uint_t status, const char *code, const char *fmt, ...);
/* the error object, merged with extra members (extra is released) */
ngx_int_t ngx_astralform_send_error_with(ngx_astralform_ctx_t *ctx,
    ngx_uint_t status, json_t *extra, const char *code, const char *fmt, ...);
json_t *ngx_astralform_error_json(ngx_astralform_ctx_t *ctx,
    const char *code, const char *fmt, va_list args);
void ngx_astralform_finish(ngx_astralform_ctx_t *ctx, ngx_int_t rc);
void ngx_astralform_store_unavailable(ngx_astralform_ctx_t *ctx);
void ngx_astralform_discard_body(ngx_http_request_t *r, ngx_uint_t status);
/* the body read, in one piece; NGX_DECLINED when over the size limit */
ngx_int_t ngx_astralform_request_body(ngx_astralform_ctx_t *ctx,
    ngx_str_t *body);
ngx_int_t ngx_astralform_body_too_large(ngx_astralform_ctx_t *ctx);
/* errors: nginx's own error answers in astralform_api locations as JSON */
ngx_int_t ngx_astralform_errors_init(ngx_conf_t *cf);
/* the 403 admin_required answer, for: if (!is_admin) return ...; */
ngx_int_t ngx_astralform_admin_required(ngx_astralform_ctx_t *ctx);
#define ngx_astralform_is_admin(ctx)                                         \
    ((ctx)->role == NGX_ASTRALFORM_KEY_ADMIN)
ngx_str_t *ngx_astralform_header(ngx_http_request_t *r, ngx_str_t *name);
/* an answer's header, and a body held in memory that outlives r */
ngx_int_t ngx_astralform_out_header(ngx_http_request_t *r, const char *name,
    ngx_str_t *value);
ngx_int_t ngx_astralform_send_body(ngx_http_request_t *r, u_char *data,
    size_t len);

/* store: the Redis key layout and project state */
ngx_int_t ngx_astralform_key(ngx_astralform_ctx_t *ctx, ngx_str_t *out,
    const char *kind, ngx_str_t *sub);
ngx_int_t ngx_astralform_redis(ngx_astralform_ctx_t *ctx,
    ngx_astralform_redis_pt handler, ngx_uint_t argc, ngx_str_t *argv);
ngx_int_t ngx_astralform_hash_cas(ngx_astralform_ctx_t *ctx, ngx_str_t *key,
    ngx_str_t *field, ngx_str_t *expect, ngx_str_t *value,
    ngx_astralform_redis_pt handler, void *data);
ngx_int_t ngx_astralform_wait(ngx_astralform_ctx_t *ctx);
void ngx_astralform_step_done(ngx_astralform_ctx_t *ctx);
ngx_int_t ngx_astralform_load_project(ngx_astralform_ctx_t *ctx,
    ngx_uint_t with_assignment, ngx_astralform_step_pt next);
ngx_astralform_connector_t *ngx_astralform_find_connector(
    ngx_astralform_ctx_t *ctx, ngx_str_t *id);
ngx_int_t ngx_astralform_connector_not_found(ngx_astralform_ctx_t *ctx,
    ngx_str_t *id);
ngx_uint_t ngx_astralform_connector_visible(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn);
json_t *ngx_astralform_connector_json(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn);
json_t *ngx_astralform_connector_tools(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn);
void ngx_astralform_connector_reseal(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn);
/* the longest end user or agent id */
#define NGX_ASTRALFORM_MAX_IDENTITY  128
ngx_uint_t ngx_astralform_valid_identity(ngx_str_t *id);
/* work that outlives its request: a pool of its own, the same steps */
ngx_astralform_ctx_t *ngx_astralform_ctx_detached(ngx_pool_t *pool,
    ngx_astralform_main_conf_t *amcf, ngx_astralform_project_t *project);
ngx_astralform_project_t *ngx_astralform_project_find(
    ngx_astralform_main_conf_t *amcf, ngx_str_t *id);
ngx_int_t ngx_astralform_connector_copy(ngx_pool_t *pool,
    ngx_astralform_connector_t *dst, ngx_astralform_connector_t *src);
ngx_int_t ngx_astralform_str_copy(ngx_pool_t *pool, ngx_str_t *dst,
    ngx_str_t *src);
ngx_int_t ngx_astralform_aad(ngx_pool_t *pool, ngx_str_t *out,
    ngx_str_t *project, ngx_str_t *connector, const char *what,
    ngx_str_t *user);

/* identity: the caller's key, and the agent of the request */
ngx_int_t ngx_astralform_key_owner(ngx_astralform_ctx_t *ctx,
    ngx_str_t *bearer);
ngx_int_t ngx_astralform_request_agent(ngx_astralform_ctx_t *ctx);

/* quotas: per project bounds on what one tenant may store in Redis */
ngx_int_t ngx_astralform_quota_hset(ngx_astralform_ctx_t *ctx,
    ngx_str_t *key, ngx_str_t *field, ngx_str_t *value,
    ngx_astralform_redis_pt handler, void *data);
ngx_int_t ngx_astralform_quota_session(ngx_astralform_ctx_t *ctx,
    ngx_str_t *sid, ngx_str_t *value, ngx_astralform_redis_pt handler,
    void *data);
void ngx_astralform_quota_session_done(ngx_astralform_ctx_t *ctx,
    ngx_str_t *sid);
#define NGX_ASTRALFORM_QUOTA_CREDENTIALS  0
#define NGX_ASTRALFORM_QUOTA_SESSIONS     1
void ngx_astralform_quota_log(ngx_astralform_ctx_t *ctx, ngx_uint_t which);
/* the 429 quota_exceeded answer, naming the directive to raise */
ngx_int_t ngx_astralform_quota_exceeded(ngx_astralform_ctx_t *ctx,
    ngx_uint_t which);
ngx_int_t ngx_astralform_value_too_large(ngx_astralform_ctx_t *ctx,
    const char *member);

/* handlers, one file per concern */
ngx_int_t ngx_astralform_connectors_handler(ngx_astralform_ctx_t *ctx);
ngx_int_t ngx_astralform_agents_handler(ngx_astralform_ctx_t *ctx);
ngx_int_t ngx_astralform_tools_list_handler(ngx_astralform_ctx_t *ctx);
ngx_int_t ngx_astralform_tools_call_handler(ngx_astralform_ctx_t *ctx);
ngx_int_t ngx_astralform_connections_handler(ngx_astralform_ctx_t *ctx);
ngx_int_t ngx_astralform_oauth_authorize_handler(ngx_astralform_ctx_t *ctx);
ngx_int_t ngx_astralform_oauth_callback_handler(ngx_astralform_ctx_t *ctx);
ngx_int_t ngx_astralform_openapi_handler(ngx_astralform_ctx_t *ctx);
ngx_int_t ngx_astralform_agents_list_handler(ngx_astralform_ctx_t *ctx);
ngx_int_t ngx_astralform_diagnose_handler(ngx_astralform_ctx_t *ctx);
/* the troubleshooting checks of ctx->connector_id, ctx->agent, ctx->user */
ngx_int_t ngx_astralform_diagnose(ngx_astralform_ctx_t *ctx);
/* blanks every "code=" argument (any case) in what the logs show */
void ngx_astralform_redact_code(ngx_http_request_t *r);
ngx_int_t ngx_astralform_catalog_handler(ngx_astralform_ctx_t *ctx);
ngx_int_t ngx_astralform_mcp_agent_handler(ngx_astralform_ctx_t *ctx);
ngx_int_t ngx_astralform_mcp_admin_handler(ngx_astralform_ctx_t *ctx);

ngx_int_t ngx_astralform_api_handler(ngx_http_request_t *r);
ngx_int_t ngx_astralform_variables_add(ngx_conf_t *cf);


/* small helpers */
typedef struct {
    const char                   *key;
    ngx_str_t                    *dst;
} ngx_astralform_json_str_t;

/* copies each listed member (absent: empty) of a JSON object into pool */
ngx_int_t ngx_astralform_json_strings(ngx_pool_t *pool, json_t *json,
    ngx_astralform_json_str_t *fields);

ngx_int_t ngx_astralform_strdup(ngx_pool_t *pool, ngx_str_t *dst,
    const char *src);
json_t *ngx_astralform_json_string(ngx_str_t *s);


#endif /* _NGX_ASTRALFORM_H_INCLUDED_ */
