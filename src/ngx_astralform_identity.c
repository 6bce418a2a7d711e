/*
 * Who is calling: the project key a request carries (its project, its role,
 * and the agent an astralform_agent key is bound to), and the agent of the
 * request, which every row that honours assignments asks for.
 *
 * A key bound to an agent *is* that agent: without X-Astralform-Agent the
 * request is that agent's, and naming another agent is refused. The
 * project-wide agent_key_file keys are trusted backends: they name any
 * agent, or none (then no assignment applies).
 */


#include "ngx_astralform.h"


static ngx_uint_t ngx_astralform_keys_match(ngx_array_t *keys,
    ngx_str_t *bearer);


/*
 * Every key of every project and agent is compared, in constant time, so
 * neither the answer nor its timing tells which key a wrong one came close
 * to. NGX_OK with ctx->project, ctx->role and ctx->key_agent set, or
 * NGX_DECLINED for a key nobody has.
 */
ngx_int_t
ngx_astralform_key_owner(ngx_astralform_ctx_t *ctx, ngx_str_t *bearer)
{
    ngx_str_t                  *bound;
    ngx_uint_t                  i, j;
    ngx_astralform_agent_t     *agent;
    ngx_astralform_project_t   *project, *owner;
    ngx_astralform_key_role_e   role;

    owner = NULL;
    bound = NULL;
    role = NGX_ASTRALFORM_KEY_NONE;
    project = ctx->amcf->projects.elts;

    for (i = 0; i < ctx->amcf->projects.nelts; i++) {

        if (ngx_astralform_keys_match(&project[i].admin_keys, bearer)) {
            owner = &project[i];
            role = NGX_ASTRALFORM_KEY_ADMIN;
        }

        if (ngx_astralform_keys_match(&project[i].agent_keys, bearer)) {
            owner = &project[i];
            role = NGX_ASTRALFORM_KEY_AGENT;
        }

        agent = project[i].agents.elts;

        for (j = 0; j < project[i].agents.nelts; j++) {
            if (ngx_astralform_keys_match(&agent[j].keys, bearer)) {
                owner = &project[i];
                role = NGX_ASTRALFORM_KEY_AGENT;
                bound = &agent[j].id;
            }
        }
    }

    if (owner == NULL) {
        return NGX_DECLINED;
    }

    ctx->project = owner;
    ctx->role = role;

    if (bound != NULL) {
        ctx->key_agent = *bound;
    }

    return NGX_OK;
}


/* no early exit: every key costs the same */
static ngx_uint_t
ngx_astralform_keys_match(ngx_array_t *keys, ngx_str_t *bearer)
{
    ngx_str_t   *key;
    ngx_uint_t   i, found;

    found = 0;
    key = keys->elts;

    for (i = 0; i < keys->nelts; i++) {
        found |= ngx_astralform_secret_eq(bearer, &key[i]);
    }

    return found;
}


/*
 * The agent of this request, after ngx_astralform_key_owner(): the agent
 * the key is bound to, or the one a project-wide key names in
 * X-Astralform-Agent (empty: none named). NGX_OK with ctx->agent set,
 * NGX_DECLINED when a bound key names another agent (403 agent_mismatch),
 * NGX_ERROR when the header is not a valid agent id (400 invalid_header).
 */
ngx_int_t
ngx_astralform_request_agent(ngx_astralform_ctx_t *ctx)
{
    ngx_str_t   name, *value;

    ngx_str_set(&name, "X-Astralform-Agent");
    value = ngx_astralform_header(ctx->request, &name);

    if (value != NULL && !ngx_astralform_valid_identity(value)) {
        return NGX_ERROR;
    }

    if (ctx->key_agent.len == 0) {
        if (value != NULL) {
            ctx->agent = *value;

        } else {
            ngx_str_null(&ctx->agent);
        }

        return NGX_OK;
    }

    if (value != NULL
        && (value->len != ctx->key_agent.len
            || ngx_strncmp(value->data, ctx->key_agent.data, value->len)
               != 0))
    {
        return NGX_DECLINED;
    }

    ctx->agent = ctx->key_agent;

    return NGX_OK;
}


/* an end user or agent id: 1 to 128 of A-Z a-z 0-9 _ - . @ : */
ngx_uint_t
ngx_astralform_valid_identity(ngx_str_t *id)
{
    u_char      c;
    ngx_uint_t  i;

    if (id->len == 0 || id->len > NGX_ASTRALFORM_MAX_IDENTITY) {
        return 0;
    }

    for (i = 0; i < id->len; i++) {
        c = id->data[i];

        if (!(isalnum(c) || c == '_' || c == '-' || c == '.' || c == '@'
              || c == ':'))
        {
            return 0;
        }
    }

    return 1;
}


ngx_str_t *
ngx_astralform_header(ngx_http_request_t *r, ngx_str_t *name)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == name->len
            && ngx_strncasecmp(h[i].key.data, name->data, name->len) == 0)
        {
            return &h[i].value;
        }
    }
}
