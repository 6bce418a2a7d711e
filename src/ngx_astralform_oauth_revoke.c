/*
 * Best-effort revocation at the provider of tokens deleted here (a user's
 * connection, or every token of a connector), per the catalog's
 * revoke_style: after the answer, a few at a time, in a pool of their own,
 * within astralform_revoke_timeout.
 */


#include "ngx_astralform.h"
#include "ngx_astralform_oauth.h"
#include "ngx_astralform_oauth_internal.h"


#define NGX_ASTRALFORM_OAUTH_REVOKERS    8


typedef struct {
    ngx_str_t                     user;
    ngx_str_t                     access_token;
    ngx_str_t                     refresh_token;
} ngx_astralform_revoke_job_t;


/* revocations after the answer: memory of their own, freed by the last */
typedef struct {
    ngx_pool_t                   *pool;
    ngx_log_t                    *log;
    ngx_astralform_def_t         *def;
    ngx_str_t                     connector;
    ngx_str_t                     client_id;
    ngx_str_t                     secret;
    ngx_array_t                   jobs;         /* of revoke_job_t */
    ngx_uint_t                    next;
    ngx_uint_t                    running;
    ngx_uint_t                    failed;
    ngx_msec_t                    deadline;
} ngx_astralform_revoke_t;


static void ngx_astralform_revoke_next(ngx_astralform_revoke_t *rv);
static ngx_int_t ngx_astralform_revoke_start(ngx_astralform_revoke_t *rv,
    ngx_astralform_revoke_job_t *job, ngx_msec_t timeout);
static void ngx_astralform_revoke_done(ngx_astralform_http_req_t *hr);
static void ngx_astralform_revoke_wipe(void *data);


void
ngx_astralform_revoke_tokens(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, redisReply *tokens)
{
    size_t                        i;
    ngx_str_t                     user, blob, secret;
    ngx_int_t                     rc;
    ngx_pool_t                   *pool;
    ngx_pool_cleanup_t           *cln;
    ngx_astralform_def_t         *def;
    ngx_astralform_token_t        tok;
    ngx_astralform_revoke_t      *rv;
    ngx_astralform_revoke_job_t  *job;

    def = conn->def;

    if (tokens == NULL || tokens->type != REDIS_REPLY_ARRAY
        || tokens->elements < 2 || def->type != NGX_ASTRALFORM_OAUTH
        || def->revoke_url.len == 0)
    {
        return;
    }

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    rv = ngx_pcalloc(pool, sizeof(ngx_astralform_revoke_t));
    cln = ngx_pool_cleanup_add(pool, 0);

    if (rv == NULL || cln == NULL
        || ngx_array_init(&rv->jobs, pool, tokens->elements / 2,
                          sizeof(ngx_astralform_revoke_job_t))
           != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return;
    }

    cln->handler = ngx_astralform_revoke_wipe;
    cln->data = rv;

    rv->pool = pool;
    rv->log = ngx_cycle->log;
    rv->def = def;
    rv->deadline = ngx_current_msec + ctx->amcf->revoke_timeout;

    if (ngx_astralform_oauth_pdup(pool, &rv->connector, (char *) conn->id.data,
                                  conn->id.len) != NGX_OK
        || ngx_astralform_oauth_pdup(pool, &rv->client_id,
                                     (char *) conn->client_id.data,
                                     conn->client_id.len) != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return;
    }

    rc = ngx_astralform_connector_secret(ctx, conn, "oauth_client_secret",
                                         &secret);

    if (rc == NGX_OK
        && ngx_astralform_oauth_pdup(pool, &rv->secret, (char *) secret.data,
                                     secret.len) != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return;
    }

    for (i = 0; i + 1 < tokens->elements; i += 2) {
        if (tokens->element[i]->type != REDIS_REPLY_STRING
            || tokens->element[i + 1]->type != REDIS_REPLY_STRING)
        {
            continue;
        }

        user.data = (u_char *) tokens->element[i]->str;
        user.len = tokens->element[i]->len;
        blob.data = (u_char *) tokens->element[i + 1]->str;
        blob.len = tokens->element[i + 1]->len;

        if (ngx_astralform_token_open(ctx, conn, &user, &blob, &tok, NULL)
            != NGX_OK
            || tok.is_api_key)
        {
            continue;
        }

        job = ngx_array_push(&rv->jobs);
        if (job == NULL) {
            break;
        }

        if (ngx_astralform_oauth_pdup(pool, &job->user, (char *) user.data,
                                      user.len) != NGX_OK
            || ngx_astralform_oauth_pdup(pool, &job->access_token,
                                         (char *) tok.access_token.data,
                                         tok.access_token.len) != NGX_OK
            || ngx_astralform_oauth_pdup(pool, &job->refresh_token,
                                         (char *) tok.refresh_token.data,
                                         tok.refresh_token.len) != NGX_OK)
        {
            rv->jobs.nelts--;
            break;
        }
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ctx->request->connection->log, 0,
                   "astralform revoke: %ui tokens of connector \"%V\"",
                   rv->jobs.nelts, &conn->id);

    ngx_astralform_revoke_next(rv);
}


/* keeps a few revocations in flight; frees everything after the last */
static void
ngx_astralform_revoke_next(ngx_astralform_revoke_t *rv)
{
    ngx_msec_int_t                left;
    ngx_astralform_revoke_job_t  *job;

    job = rv->jobs.elts;

    while (rv->next < rv->jobs.nelts
           && rv->running < NGX_ASTRALFORM_OAUTH_REVOKERS)
    {
        left = (ngx_msec_int_t) (rv->deadline - ngx_current_msec);

        if (left <= 0) {
            break;
        }

        if (ngx_astralform_revoke_start(rv, &job[rv->next], (ngx_msec_t) left)
            == NGX_OK)
        {
            rv->running++;

        } else {
            rv->failed++;
        }

        rv->next++;
    }

    if (rv->running) {
        return;
    }

    if (rv->next < rv->jobs.nelts || rv->failed) {
        ngx_log_error(NGX_LOG_WARN, rv->log, 0,
                      "astralform: %ui of %ui tokens of connector \"%V\" "
                      "were not revoked at the provider (deleted here)",
                      rv->jobs.nelts - rv->next + rv->failed,
                      rv->jobs.nelts, &rv->connector);
    }

    ngx_destroy_pool(rv->pool);
}


static ngx_int_t
ngx_astralform_revoke_start(ngx_astralform_revoke_t *rv,
    ngx_astralform_revoke_job_t *job, ngx_msec_t timeout)
{
    u_char                     *p, *brace;
    char                       *text;
    json_t                     *json;
    ngx_str_t                   name, value, basic, *token;
    ngx_uint_t                  form;
    const char                 *style, *auth;
    ngx_astralform_def_t       *def;
    ngx_astralform_http_req_t  *hr;

    def = rv->def;

    hr = ngx_astralform_http_create(rv->pool, rv->log);
    if (hr == NULL) {
        return NGX_ERROR;
    }

    style = ngx_astralform_oauth_str(def, "revoke_style", "rfc7009");
    auth = ngx_astralform_oauth_str(def, "client_auth", "basic");

    /* token_form and RFC 7009 send a form, the others JSON */
    form = ngx_strcmp(style, "basic_json") != 0
           && ngx_strcmp(style, "github_grant") != 0;

    ngx_str_set(&hr->method, "POST");
    hr->url = def->revoke_url;
    ngx_str_null(&basic);
    json = NULL;

    if (ngx_strcmp(style, "token_form") == 0) {
        /* Slack: the token revokes itself */
        value.len = sizeof("Bearer ") - 1 + job->access_token.len;
        value.data = ngx_pnalloc(rv->pool, value.len);
        if (value.data == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(value.data, "Bearer %V", &job->access_token);
        ngx_str_set(&name, "Authorization");

        if (ngx_astralform_http_add_header(hr, &name, &value) != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_astralform_oauth_wipe(&value);

        json = json_pack("{s:o}", "token",
                         ngx_astralform_json_string(&job->access_token));

    } else if (ngx_strcmp(style, "basic_json") == 0
               || ngx_strcmp(style, "github_grant") == 0)
    {
        if (rv->secret.len == 0) {
            return NGX_ERROR;
        }

        json = json_pack("{s:o}",
                         style[0] == 'b' ? "token" : "access_token",
                         ngx_astralform_json_string(&job->access_token));

        if (style[0] == 'g') {
            ngx_str_set(&hr->method, "DELETE");

            brace = ngx_strnstr(def->revoke_url.data, "{client_id}",
                                def->revoke_url.len);

            if (brace != NULL) {
                hr->url.len = def->revoke_url.len - 11
                              + 3 * rv->client_id.len;
                hr->url.data = ngx_pnalloc(rv->pool, hr->url.len);
                if (hr->url.data == NULL) {
                    json_decref(json);
                    return NGX_ERROR;
                }

                p = ngx_cpymem(hr->url.data, def->revoke_url.data,
                               brace - def->revoke_url.data);
                p += ngx_astralform_oauth_url_escape(p, rv->client_id.data,
                                                     rv->client_id.len);
                p = ngx_cpymem(p, brace + 11, def->revoke_url.data
                                              + def->revoke_url.len
                                              - brace - 11);
                hr->url.len = p - hr->url.data;
            }
        }

        if (ngx_astralform_oauth_basic_auth(rv->pool, &rv->client_id,
                                            &rv->secret, &basic)
            != NGX_OK)
        {
            json_decref(json);
            return NGX_ERROR;
        }

    } else {
        /* RFC 7009: the refresh token, when there is one, ends the grant */
        token = job->refresh_token.len ? &job->refresh_token
                                       : &job->access_token;

        json = json_pack("{s:o, s:s}", "token",
                         ngx_astralform_json_string(token),
                         "token_type_hint",
                         job->refresh_token.len ? "refresh_token"
                                                : "access_token");

        if (json != NULL && rv->secret.len && ngx_strcmp(auth, "basic") == 0)
        {
            if (ngx_astralform_oauth_basic_auth(rv->pool, &rv->client_id,
                                                &rv->secret, &basic) != NGX_OK)
            {
                json_decref(json);
                return NGX_ERROR;
            }

        } else if (json != NULL) {
            json_object_set_new(json, "client_id",
                                ngx_astralform_json_string(&rv->client_id));

            if (rv->secret.len && ngx_strcmp(auth, "none") != 0) {
                json_object_set_new(json, "client_secret",
                                    ngx_astralform_json_string(&rv->secret));
            }
        }
    }

    if (json == NULL) {
        return NGX_ERROR;
    }

    if (basic.len) {
        ngx_str_set(&name, "Authorization");
        if (ngx_astralform_http_add_header(hr, &name, &basic) != NGX_OK) {
            json_decref(json);
            return NGX_ERROR;
        }
    }

    if (form) {
        if (ngx_astralform_oauth_form_encode(rv->pool, json, &hr->body)
            != NGX_OK)
        {
            json_decref(json);
            return NGX_ERROR;
        }

        ngx_str_set(&value, "application/x-www-form-urlencoded");

    } else {
        text = json_dumps(json, JSON_COMPACT);
        if (text == NULL
            || ngx_astralform_strdup(rv->pool, &hr->body, text) != NGX_OK)
        {
            ngx_free(text);
            json_decref(json);
            return NGX_ERROR;
        }

        ngx_explicit_memzero(text, ngx_strlen(text));
        ngx_free(text);

        ngx_str_set(&value, "application/json");
    }

    json_decref(json);

    ngx_str_set(&name, "Content-Type");
    if (ngx_astralform_http_add_header(hr, &name, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_str_set(&name, "Accept");
    ngx_str_set(&value, "application/json");
    if (ngx_astralform_http_add_header(hr, &name, &value) != NGX_OK) {
        return NGX_ERROR;
    }

    hr->timeout = timeout;
    hr->done = ngx_astralform_revoke_done;
    hr->data = rv;

    if (ngx_astralform_http_start(hr) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_astralform_oauth_wipe(&hr->body);

    return NGX_OK;
}


static void
ngx_astralform_revoke_done(ngx_astralform_http_req_t *hr)
{
    ngx_astralform_revoke_t *rv = hr->data;

    rv->running--;

    if (hr->error == NGX_ASTRALFORM_HTTP_OK
        && (hr->status < 200 || hr->status >= 300))
    {
        ngx_log_error(NGX_LOG_WARN, rv->log, 0,
                      "astralform: token revocation at \"%V\" for connector "
                      "\"%V\" answered HTTP %ui", &hr->host, &rv->connector,
                      hr->status);
    }

    if (hr->error != NGX_ASTRALFORM_HTTP_OK) {
        rv->failed++;
    }

    ngx_explicit_memzero(hr->resp_body.data, hr->resp_body.len);

    ngx_astralform_revoke_next(rv);
}


static void
ngx_astralform_revoke_wipe(void *data)
{
    ngx_astralform_revoke_t  *rv = data;

    ngx_uint_t                    i;
    ngx_astralform_revoke_job_t  *job;

    ngx_astralform_oauth_wipe(&rv->secret);

    job = rv->jobs.elts;

    for (i = 0; i < rv->jobs.nelts; i++) {
        ngx_astralform_oauth_wipe(&job[i].access_token);
        ngx_astralform_oauth_wipe(&job[i].refresh_token);
    }
}
