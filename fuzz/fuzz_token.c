/*
 * OAuth token endpoint answers (JSON, or a form as GitHub answers without
 * Accept: application/json; errors in a 200 as Slack and GitHub report
 * them; nested token fields as Slack's authed_user.access_token) through
 * ngx_astralform_oauth_exchange_start() (src/ngx_astralform_oauth_token.c:
 * the static exchange_done, exchange_fields, json_path, scopes,
 * form_decode and grant_dead), for the code grant of the callback and the
 * refresh grant.
 *
 * Input: "SLUG [FLAGS]\n%%\nANSWER", SLUG one of the catalog's oauth
 * connectors (slack, notion, github), ANSWER as the other harnesses:
 * "STATUS|timeout|connect|large|failed\nName: value\n...\n\nBODY".
 * FLAGS bit 0: the refresh grant (else the authorization code grant).
 *
 * Oracles, beyond the gateway's: done() is called exactly once when the
 * exchange started and never when it did not; rc is OK, DECLINED or ERROR
 * with a NUL-terminated reason; an OK record has an access token and an
 * expiry that is 0 or after the time it was obtained; the client secret,
 * the code and the refresh token appear in no log line.
 */


#include "fuzz_gateway.h"
#include "ngx_astralform_oauth_internal.h"


static ngx_uint_t  fz_done;


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_gw_init();
    return 0;
}


static void
fz_exchanged(ngx_astralform_exchange_t *ex)
{
    ngx_astralform_token_t  *tok;

    fz_done++;

    if (ex->rc != NGX_OK && ex->rc != NGX_DECLINED && ex->rc != NGX_ERROR) {
        fz_fail("exchange: rc %ld", (long) ex->rc);
    }

    if (memchr(ex->reason, '\0', sizeof(ex->reason)) == NULL) {
        fz_fail("exchange: the reason is not NUL-terminated");
    }

    if (ex->rc != NGX_OK) {
        return;
    }

    tok = &ex->tok;

    if (tok->access_token.len == 0 || tok->is_api_key) {
        fz_fail("exchange: an OK record without an access token");
    }

    if (tok->expires_at < 0
        || (tok->expires_at != 0 && tok->expires_at < tok->obtained_at))
    {
        fz_fail("exchange: expires_at %lld before obtained_at %lld",
                (long long) tok->expires_at, (long long) tok->obtained_at);
    }

    if (fz_verbose) {
        fprintf(stderr, "token: access %.*s refresh %.*s scope \"%.*s\" "
                "type %.*s account %.*s expires_at %lld\n",
                (int) tok->access_token.len, tok->access_token.data,
                (int) tok->refresh_token.len, tok->refresh_token.data,
                (int) tok->scope.len, tok->scope.data,
                (int) tok->token_type.len, tok->token_type.data,
                (int) tok->account_id.len, tok->account_id.data,
                (long long) tok->expires_at);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                      *sp;
    json_t                      *params;
    fz_req_t                    *req;
    ngx_int_t                    rc;
    ngx_str_t                    line, rest, slug;
    ngx_uint_t                   i, flags;
    fz_sections_t                sec;
    ngx_astralform_exchange_t   *ex;
    ngx_astralform_connector_t  *conn, *c;
    char                         flagtext[32];

    fz_split(data, size, &sec);
    fz_line(&sec.s[0], &line, &rest);

    sp = memchr(line.data, ' ', line.len);
    slug.data = line.data;
    slug.len = (sp ? sp : line.data + line.len) - line.data;

    flags = 0;
    if (sp != NULL) {
        i = ngx_min((size_t) (line.data + line.len - sp - 1),
                    sizeof(flagtext) - 1);
        ngx_memcpy(flagtext, sp + 1, i);
        flagtext[i] = '\0';
        flags = strtoul(flagtext, NULL, 0);
    }

    conn = NULL;
    c = fz_world.home->connectors.elts;

    for (i = 0; i < fz_world.home->connectors.nelts; i++) {
        if (c[i].def->type == NGX_ASTRALFORM_OAUTH
            && c[i].id.len == slug.len
            && ngx_strncmp(c[i].id.data, slug.data, slug.len) == 0)
        {
            conn = &c[i];
        }
    }

    if (conn == NULL) {
        return 0;
    }

    fz_gw_begin(data, size);

    if (sec.n > 1) {
        fz_answers(&sec.s[1], sec.n - 1);
    }

    req = fz_req(NGX_HTTP_GET, "connectors/oauth/callback",
                 NGX_ASTRALFORM_KEY_NONE, "user-1", NULL);

    ex = ngx_pcalloc(req->r->pool, sizeof(ngx_astralform_exchange_t));
    ex->ctx = req->ctx;
    ex->conn = conn;
    ex->done = fz_exchanged;
    ex->refresh = flags & 1;

    if (ex->refresh) {
        params = json_pack("{s:s, s:s+}", "grant_type", "refresh_token",
                           "refresh_token", "RT-CANARY-",
                           (char *) conn->def->slug.data);
    } else {
        params = json_pack("{s:s, s:s+, s:s, s:s}",
                           "grant_type", "authorization_code",
                           "code", "AC-CANARY-", (char *) conn->def->slug.data,
                           "redirect_uri", "https://gw.example.test/v1/"
                                           "connectors/oauth/callback",
                           "code_verifier", "verifier-1");
    }

    fz_done = 0;

    rc = ngx_astralform_oauth_exchange_start(ex, params);
    json_decref(params);

    if (rc == NGX_OK) {
        fz_run(0, NULL);

        if (fz_done != 1) {
            fz_fail("exchange: done() called %lu times",
                    (unsigned long) fz_done);
        }

    } else {
        fz_run(0, NULL);

        if (fz_done != 0) {
            fz_fail("exchange: done() after a failed start");
        }
    }

    /* what follows (store, answer) is not this harness's: the client goes */
    fz_req_abort(req);

    fz_gw_end();

    return 0;
}
