/*
 * Revocation of one token at the provider, per the catalog's revoke_style
 * (the durable queue that drives it is ngx_astralform_revocations.c).
 * The outcome is one of: revoked, refused for good (a 4xx other than
 * 429: retrying would not help), or try again later (429, 5xx, no answer).
 */


#include "ngx_astralform.h"
#include "ngx_astralform_oauth.h"
#include "ngx_astralform_oauth_internal.h"


static void ngx_astralform_revoke_done(ngx_astralform_http_req_t *hr);
static ngx_int_t ngx_astralform_revoke_outcome(ngx_astralform_revocation_t *rv,
    ngx_astralform_http_req_t *hr);


/* Slack answers HTTP 200 with these for a token that is already dead */
static const char  *ngx_astralform_revoke_dead[] = {
    "invalid_auth", "not_authed", "token_revoked", "token_expired",
    "account_inactive", NULL
};


ngx_int_t
ngx_astralform_oauth_revoke(ngx_astralform_revocation_t *rv)
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
        value.len = sizeof("Bearer ") - 1 + rv->access_token.len;
        value.data = ngx_pnalloc(rv->pool, value.len);
        if (value.data == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(value.data, "Bearer %V", &rv->access_token);
        ngx_str_set(&name, "Authorization");

        if (ngx_astralform_http_add_header(hr, &name, &value) != NGX_OK) {
            return NGX_ERROR;
        }

        ngx_astralform_oauth_wipe(&value);

        json = json_pack("{s:o}", "token",
                         ngx_astralform_json_string(&rv->access_token));

    } else if (ngx_strcmp(style, "basic_json") == 0
               || ngx_strcmp(style, "github_grant") == 0)
    {
        if (rv->secret.len == 0) {
            return NGX_ERROR;
        }

        json = json_pack("{s:o}",
                         style[0] == 'b' ? "token" : "access_token",
                         ngx_astralform_json_string(&rv->access_token));

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
        token = rv->refresh_token.len ? &rv->refresh_token
                                       : &rv->access_token;

        json = json_pack("{s:o, s:s}", "token",
                         ngx_astralform_json_string(token),
                         "token_type_hint",
                         rv->refresh_token.len ? "refresh_token"
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

    hr->timeout = rv->timeout;
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
    ngx_astralform_revocation_t *rv = hr->data;

    rv->status = hr->status;
    rv->rc = ngx_astralform_revoke_outcome(rv, hr);

    if (rv->rc != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, rv->log, 0,
                      "astralform: token revocation at \"%V\" answered "
                      "%s%ui, %s", &hr->host,
                      hr->error == NGX_ASTRALFORM_HTTP_OK ? "HTTP " : "error ",
                      hr->error == NGX_ASTRALFORM_HTTP_OK
                          ? hr->status : (ngx_uint_t) hr->error,
                      rv->rc == NGX_AGAIN ? "will try again" : "given up");
    }

    ngx_explicit_memzero(hr->resp_body.data, hr->resp_body.len);

    rv->done(rv);
}


static ngx_int_t
ngx_astralform_revoke_outcome(ngx_astralform_revocation_t *rv,
    ngx_astralform_http_req_t *hr)
{
    json_t       *body;
    ngx_int_t     rc;
    ngx_uint_t    i;
    const char   *error;

    if (hr->error != NGX_ASTRALFORM_HTTP_OK) {
        return NGX_AGAIN;
    }

    if (hr->status == 429 || hr->status >= 500) {
        return NGX_AGAIN;
    }

    if (hr->status < 200 || hr->status >= 300) {
        return NGX_DECLINED;
    }

    body = json_loadb((char *) hr->resp_body.data, hr->resp_body.len, 0,
                      NULL);

    if (!json_is_false(json_object_get(body, "ok"))) {
        json_decref(body);
        return NGX_OK;
    }

    /* Slack: 200 with "ok": false */

    error = json_string_value(json_object_get(body, "error"));
    rc = NGX_DECLINED;

    if (error != NULL && ngx_strcmp(error, "ratelimited") == 0) {
        rc = NGX_AGAIN;
    }

    for (i = 0; error != NULL && ngx_astralform_revoke_dead[i]; i++) {
        if (ngx_strcmp(error, ngx_astralform_revoke_dead[i]) == 0) {
            rc = NGX_OK;
        }
    }

    json_decref(body);

    return rc;
}
