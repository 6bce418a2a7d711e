/*
 * API request bodies: parsed as ngx_astralform_api.c parses them (jansson,
 * JSON_REJECT_DUPLICATES, an object), then handed to the real handlers
 * with the gateway's surroundings as test doubles (fuzz_gateway.c):
 *
 *   POST tools/call            ngx_astralform_tools_call_handler(): tool
 *                              lookup, input_schema check, credential,
 *                              request templating, provider answer mapping
 *   POST connectors            ngx_astralform_connectors_handler(): the
 *   PATCH connectors/ID        connector fields (id, secrets sealed,
 *                              scopes string or array, flags, mcp_url)
 *   PUT agents/AID/connectors  ngx_astralform_agents_handler()
 *
 * Input: "METHOD PATH [USER [AGENT]]\nBODY". Redis answers are canned
 * (project p1: the config connectors of fuzz_gateway.c plus "kb", a remote
 * MCP server enabled through the API; end users hold a sealed token);
 * providers answer 200 with a small JSON document.
 */


#include "fuzz_gateway.h"


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_gw_init();
    return 0;
}


static char *
fz_word(ngx_str_t *line)
{
    u_char     *sp;
    ngx_str_t   w;

    while (line->len && line->data[0] == ' ') {
        line->data++;
        line->len--;
    }

    if (line->len == 0) {
        return NULL;
    }

    sp = memchr(line->data, ' ', line->len);
    w.data = line->data;
    w.len = (sp ? sp : line->data + line->len) - line->data;

    line->data += w.len;
    line->len -= w.len;

    return fz_strdup(&w);
}


/* the non-empty "/"-separated segments of path: the count, the first 4 */
static ngx_uint_t
fz_segments(char *path, char seg[4][64])
{
    char        *p;
    size_t       len;
    ngx_uint_t   n;

    n = 0;
    p = path;

    while (*p) {
        len = strcspn(p, "/");

        if (len > 0) {
            if (n < 4) {
                len = len < 63 ? len : 63;
                memcpy(seg[n], p, len);
                seg[n][len] = '\0';
            }

            n++;
        }

        p += strcspn(p, "/");
        if (*p == '/') {
            p++;
        }
    }

    return n;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char           *method, *path, *user, *agent, seg[4][64];
    u_char          msg[512];
    json_t         *body;
    fz_req_t       *req;
    ngx_str_t       all, line, rest;
    ngx_uint_t      m, n;
    json_error_t    jerr;
    fz_handler_pt   handler;
    ngx_astralform_key_role_e  role;

    all.data = (u_char *) data;
    all.len = size;
    fz_line(&all, &line, &rest);

    method = fz_word(&line);
    path = fz_word(&line);
    user = fz_word(&line);
    agent = fz_word(&line);

    if (method == NULL || path == NULL) {
        goto done;
    }

    if (strcmp(method, "POST") == 0) {
        m = NGX_HTTP_POST;
    } else if (strcmp(method, "PUT") == 0) {
        m = NGX_HTTP_PUT;
    } else if (strcmp(method, "PATCH") == 0) {
        m = NGX_HTTP_PATCH;
    } else {
        goto done;
    }

    /* only what the router of ngx_astralform_api.c sends to each */

    n = fz_segments(path, seg);

    if (n == 2 && strcmp(seg[0], "tools") == 0
        && strcmp(seg[1], "call") == 0 && m == NGX_HTTP_POST)
    {
        handler = ngx_astralform_tools_call_handler;
        role = NGX_ASTRALFORM_KEY_AGENT;

    } else if (n == 1 && strcmp(seg[0], "connectors") == 0
               && m == NGX_HTTP_POST)
    {
        handler = ngx_astralform_connectors_handler;
        role = NGX_ASTRALFORM_KEY_ADMIN;

    } else if (n == 2 && strcmp(seg[0], "connectors") == 0
               && m == NGX_HTTP_PATCH)
    {
        handler = ngx_astralform_connectors_handler;
        role = NGX_ASTRALFORM_KEY_ADMIN;

    } else if (n == 3 && strcmp(seg[0], "agents") == 0
               && strcmp(seg[2], "connectors") == 0 && m == NGX_HTTP_PUT)
    {
        handler = ngx_astralform_agents_handler;
        role = NGX_ASTRALFORM_KEY_ADMIN;

    } else {
        goto done;
    }

    /* as ngx_astralform_parse_body() */

    body = json_loadb((char *) rest.data, rest.len, JSON_REJECT_DUPLICATES,
                      &jerr);

    if (body == NULL) {
        ngx_snprintf(msg, sizeof(msg), "the body is not valid JSON: %s "
                     "(at character %d)%Z", jerr.text, jerr.position);
        goto done;
    }

    if (!json_is_object(body)) {
        json_decref(body);
        goto done;
    }

    fz_gw_begin(data, size);

    fz_world.redis_connectors = json_pack(
        "{s:s}", "kb",
        "{\"connector_slug\":\"remote_mcp\","
        "\"mcp_url\":\"https://mcp.kb.test/mcp\",\"require_auth\":false}");

    fz_world.token_mode = FZ_TOKEN_SEALED;
    ngx_str_set(&fz_world.token_plain,
                "{\"type\":\"oauth\",\"access_token\":\"AT-CANARY-$C-1\","
                "\"refresh_token\":\"RT-CANARY-$C-1\","
                "\"expires_at\":0,\"scope\":\"chat:write\"}");

    fz_world.answer = fz_canned_answer;

    req = fz_req(m, path, role, user, agent);
    req->ctx->body = body;

    fz_dispatch(req, handler);
    fz_run(0, NULL);

    fz_gw_end();

done:

    free(method);
    free(path);
    free(user);
    free(agent);

    return 0;
}
