/*
 * MCP streamable-HTTP answers (application/json and text/event-stream)
 * through the remote MCP client (src/ngx_astralform_mcp_client.c): the
 * public ngx_astralform_mcp_call_tool() (by a tools/call of a remote_mcp
 * tool) and ngx_astralform_mcp_list_tools() (by the tool list), which
 * reach the static mcp_handler, mcp_response, mcp_sse (with the event
 * stream reader of src/ngx_astralform_sse.c and the message check of
 * src/ngx_astralform_jsonrpc.c), mcp_match, initialize_result,
 * request_result, session_lost, failure_json, echo and the per-worker
 * session cache.
 *
 * Input, sections separated by "\n%%\n":
 *
 *   0: "MODE [TOOL [FLAGS]]\nARGUMENTS-JSON"
 *      MODE call   one tools/call of TOOL (default docs_search)
 *           call2  two in a row: the second reuses the cached session
 *           both   two at once, sharing the cache entry
 *           list   the tool list of an agent (every MCP server in turn)
 *   1...: the servers' answers, in the order the requests go out, each
 *      "STATUS|timeout|connect|large|failed\nName: value\n...\n\nBODY";
 *      "$ID" in BODY becomes the JSON-RPC id of the request answered
 *
 * FLAGS (strtoul): bits 0-7 the client goes away after that many events,
 * bit 8 two more MCP connectors enabled through the API (kb, wiki),
 * bits 16-31 seed the order in which concurrent answers arrive.
 */


#include "fuzz_gateway.h"


static ngx_astralform_project_t  fz_mcp_project;


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    ngx_uint_t                   i;
    ngx_astralform_connector_t  *conn, *c;

    fz_gw_init();

    /* p1 with its MCP server only: the catalog tools are not the point */

    fz_mcp_project = *fz_world.home;
    ngx_array_init(&fz_mcp_project.connectors, ngx_create_pool(1024, &fz_log),
                   2, sizeof(ngx_astralform_connector_t));

    conn = fz_world.home->connectors.elts;

    for (i = 0; i < fz_world.home->connectors.nelts; i++) {
        if (conn[i].def->type == NGX_ASTRALFORM_REMOTE_MCP) {
            c = ngx_array_push(&fz_mcp_project.connectors);
            *c = conn[i];
        }
    }

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


static fz_req_t *
fz_call_req(const char *tool, ngx_str_t *args)
{
    json_t    *a, *body;
    fz_req_t  *req;

    a = args->len ? json_loadb((char *) args->data, args->len,
                               JSON_REJECT_DUPLICATES, NULL)
                  : json_object();

    body = json_pack("{s:s, s:o?}", "name", tool, "arguments", a);
    if (body == NULL) {
        return NULL;
    }

    req = fz_req(NGX_HTTP_POST, "tools/call", NGX_ASTRALFORM_KEY_AGENT,
                 "user-1", "agent-1");
    req->ctx->body = body;

    return req;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char           *mode, *tool, *flagword;
    fz_req_t       *a, *b;
    ngx_str_t       line, args;
    ngx_uint_t      flags, abort_after;
    fz_sections_t   sec;

    fz_split(data, size, &sec);
    fz_line(&sec.s[0], &line, &args);

    mode = fz_word(&line);
    tool = fz_word(&line);
    flagword = fz_word(&line);

    flags = flagword ? strtoul(flagword, NULL, 0) : 0;
    abort_after = flags & 0xff;

    if (mode == NULL) {
        goto done;
    }

    fz_gw_begin(data, size);

    fz_world.schedule = (uint32_t) (flags >> 16);
    fz_world.project = &fz_mcp_project;

    if (flags & 0x100) {
        fz_world.redis_connectors = json_pack("{s:s, s:s}",
            "kb", "{\"connector_slug\":\"remote_mcp\","
                  "\"mcp_url\":\"https://mcp.kb.test/mcp\"}",
            "wiki", "{\"connector_slug\":\"remote_mcp\","
                    "\"mcp_url\":\"http://mcp.wiki.test:8080/v1/mcp?x=1\"}");
    }

    if (sec.n > 1) {
        fz_answers(&sec.s[1], sec.n - 1);
    }

    if (tool == NULL) {
        tool = strdup("docs_search");
    }

    if (strcmp(mode, "list") == 0) {
        a = fz_req(NGX_HTTP_GET, "tools", NGX_ASTRALFORM_KEY_AGENT, NULL,
                   "agent-1");
        fz_dispatch(a, ngx_astralform_tools_list_handler);
        fz_run(abort_after, a);

    } else if (strcmp(mode, "call") == 0) {
        a = fz_call_req(tool, &args);
        if (a != NULL) {
            fz_dispatch(a, ngx_astralform_tools_call_handler);
            fz_run(abort_after, a);
        }

    } else if (strcmp(mode, "call2") == 0) {
        a = fz_call_req(tool, &args);
        if (a != NULL) {
            fz_dispatch(a, ngx_astralform_tools_call_handler);
            fz_run(abort_after, a);

            b = fz_call_req(tool, &args);
            fz_dispatch(b, ngx_astralform_tools_call_handler);
            fz_run(0, NULL);
        }

    } else if (strcmp(mode, "both") == 0) {
        a = fz_call_req(tool, &args);
        if (a != NULL) {
            b = fz_call_req(tool, &args);
            fz_dispatch(a, ngx_astralform_tools_call_handler);
            fz_dispatch(b, ngx_astralform_tools_call_handler);
            fz_run(abort_after, a);
        }
    }

    fz_gw_end();

done:

    free(mode);
    free(tool);
    free(flagword);

    return 0;
}
