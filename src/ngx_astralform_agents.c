/*
 * GET /v1/projects/{pid}/agents: every agent the project knows of, with
 * the connectors it is assigned and where that assignment comes from.
 *
 * An agent is known when an assignment in Redis names it ("api"), or when
 * a config connector's agents= names it ("config"). A Redis assignment
 * wins over agents=, as it does for the tool list. "connectors" is null
 * for an agent that sees every enabled connector.
 */


#include "ngx_astralform.h"


typedef struct {
    ngx_str_t                    id;
    json_t                      *connectors;    /* array, or NULL: all */
    const char                  *source;
} ngx_astralform_agent_row_t;


static void ngx_astralform_agents_loaded(ngx_astralform_ctx_t *ctx);
static void ngx_astralform_agents_got(redisReply *reply, void *data);
static ngx_int_t ngx_astralform_agents_config(ngx_astralform_ctx_t *ctx,
    ngx_array_t *rows);
static ngx_astralform_agent_row_t *ngx_astralform_agent_row(
    ngx_array_t *rows, ngx_str_t *id);
static ngx_int_t ngx_astralform_agent_cmp(const void *one, const void *two);


ngx_int_t
ngx_astralform_agents_list_handler(ngx_astralform_ctx_t *ctx)
{
    if (!ngx_astralform_is_admin(ctx)) {
        return ngx_astralform_admin_required(ctx);
    }

    return ngx_astralform_load_project(ctx, 0, ngx_astralform_agents_loaded);
}


static void
ngx_astralform_agents_loaded(ngx_astralform_ctx_t *ctx)
{
    ngx_str_t  argv[2];

    ngx_str_set(&argv[0], "HGETALL");

    if (ngx_astralform_key(ctx, &argv[1], "agents", NULL) != NGX_OK) {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (ngx_astralform_redis(ctx, ngx_astralform_agents_got, 2, argv)
        != NGX_OK)
    {
        ngx_astralform_finish(ctx, ngx_astralform_wait(ctx));
    }
}


static void
ngx_astralform_agents_got(redisReply *reply, void *data)
{
    ngx_astralform_ctx_t *ctx = data;

    size_t                       i;
    json_t                      *list, *json;
    ngx_str_t                    id;
    ngx_array_t                 *rows;
    ngx_astralform_agent_row_t  *row;

    ctx->pending--;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        ngx_astralform_store_unavailable(ctx);
        return;
    }

    rows = ngx_array_create(ctx->request->pool, reply->elements / 2 + 4,
                            sizeof(ngx_astralform_agent_row_t));
    if (rows == NULL) {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    for (i = 0; i + 1 < reply->elements; i += 2) {
        if (reply->element[i]->type != REDIS_REPLY_STRING
            || reply->element[i + 1]->type != REDIS_REPLY_STRING)
        {
            continue;
        }

        json = json_loadb(reply->element[i + 1]->str,
                          reply->element[i + 1]->len, 0, NULL);
        if (!json_is_array(json)) {
            json_decref(json);
            continue;
        }

        row = ngx_array_push(rows);
        if (row == NULL) {
            json_decref(json);
            ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        /* hiredis owns the reply: copy the id into the pool */
        id.data = (u_char *) reply->element[i]->str;
        id.len = reply->element[i]->len;

        row->id.data = ngx_pstrdup(ctx->request->pool, &id);
        row->id.len = id.len;
        row->connectors = json;
        row->source = "api";

        if (row->id.data == NULL) {
            ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }
    }

    if (ngx_astralform_agents_config(ctx, rows) != NGX_OK) {
        ngx_astralform_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_sort(rows->elts, rows->nelts, sizeof(ngx_astralform_agent_row_t),
             ngx_astralform_agent_cmp);

    list = json_array();
    row = rows->elts;

    for (i = 0; i < rows->nelts; i++) {
        json_array_append_new(list,
            json_pack("{s:o, s:o, s:s}",
                      "id", ngx_astralform_json_string(&row[i].id),
                      "connectors", row[i].connectors ? row[i].connectors
                                                      : json_null(),
                      "source", row[i].source));
    }

    ngx_astralform_finish(ctx,
        ngx_astralform_send_json(ctx, NGX_HTTP_OK,
                                 json_pack("{s:o}", "agents", list)));
}


/* agents named by config connectors' agents=, unless Redis assigns them */
static ngx_int_t
ngx_astralform_agents_config(ngx_astralform_ctx_t *ctx, ngx_array_t *rows)
{
    ngx_str_t                   *agent;
    ngx_uint_t                   i, j;
    ngx_astralform_agent_row_t  *row;
    ngx_astralform_connector_t  *conn;

    conn = ctx->project->connectors.elts;

    for (i = 0; i < ctx->project->connectors.nelts; i++) {
        if (conn[i].agents == NULL) {
            continue;
        }

        agent = conn[i].agents->elts;

        for (j = 0; j < conn[i].agents->nelts; j++) {
            row = ngx_astralform_agent_row(rows, &agent[j]);

            if (row != NULL && ngx_strcmp(row->source, "api") == 0) {
                continue;
            }

            if (row == NULL) {
                row = ngx_array_push(rows);
                if (row == NULL) {
                    return NGX_ERROR;
                }

                row->id = agent[j];
                row->connectors = json_array();
                row->source = "config";
            }

            json_array_append_new(row->connectors,
                                  ngx_astralform_json_string(&conn[i].id));
        }
    }

    return NGX_OK;
}


static ngx_astralform_agent_row_t *
ngx_astralform_agent_row(ngx_array_t *rows, ngx_str_t *id)
{
    ngx_uint_t                   i;
    ngx_astralform_agent_row_t  *row;

    row = rows->elts;

    for (i = 0; i < rows->nelts; i++) {
        if (row[i].id.len == id->len
            && ngx_strncmp(row[i].id.data, id->data, id->len) == 0)
        {
            return &row[i];
        }
    }

    return NULL;
}


static ngx_int_t
ngx_astralform_agent_cmp(const void *one, const void *two)
{
    const ngx_astralform_agent_row_t  *a = one, *b = two;

    ngx_int_t  rc;

    rc = ngx_strncmp(a->id.data, b->id.data, ngx_min(a->id.len, b->id.len));

    if (rc != 0) {
        return rc;
    }

    return (ngx_int_t) a->id.len - (ngx_int_t) b->id.len;
}
