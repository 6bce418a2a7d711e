/*
 * Redis replies: the fuzzer's bytes go through hiredis's reader
 * (redisReaderCreate, redisReaderFeed, redisReaderGetReply) exactly as the
 * async context reads them off the socket, and each reply answers the
 * next command the module sends, whatever it was, so every reply
 * callback sees every shape (nil, error, integer, status, string, array,
 * nested, and NULL: the connection dropped once the replies run out).
 *
 * The callbacks reached, through public entry points only:
 *   ngx_astralform_load_project(): connectors_reply (HGETALL of the
 *     project's connectors: the static connector_parse of
 *     src/ngx_astralform_store.c) and assignment_reply (HGET of an agent);
 *   ngx_astralform_token_get(): token_got (the sealed record: opened,
 *     re-sealed when old) in src/ngx_astralform_tokens.c;
 *   the connector handlers: enabled, updated, disabled (the EVAL reply
 *     with the tokens handed to revocation), agents_saved.
 *
 * Input: "MODE [FLAGS]\n%%\nRESP-BYTES", MODE one of list, get, tools,
 * call, enable, patch, delete, assign, agents. FLAGS bits 16-31 seed the
 * order of concurrent events. The MCP servers and providers reached answer
 * well (fz_canned_answer).
 */


#include "fuzz_gateway.h"


#define FZ_MAX_REPLIES  32


static redisReply  *fz_replies[FZ_MAX_REPLIES];
static ngx_uint_t   fz_nreplies;
static ngx_uint_t   fz_next_reply;


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_gw_init();
    return 0;
}


static redisReply *
fz_next(ngx_uint_t argc, ngx_str_t *argv)
{
    if (fz_next_reply < fz_nreplies) {
        return fz_replies[fz_next_reply++];
    }

    return NULL;
}


/*
 * Debian's hiredis 0.14 has no limit on a multi-bulk count: "*2000000000"
 * allocates 16 GB before any element arrives. Redis is the gateway's own
 * store, so such counts are left out rather than reported.
 */
static ngx_uint_t
fz_huge_count(ngx_str_t *resp)
{
    u_char  *p, *last;
    size_t   n;

    last = resp->data + resp->len;

    for (p = resp->data; p < last; p++) {
        if (*p != '*') {
            continue;
        }

        for (n = 0, p++; p < last && *p >= '0' && *p <= '9'; p++) {
            n = n * 10 + (*p - '0');
            if (n > 100000) {
                return 1;
            }
        }
    }

    return 0;
}


typedef struct {
    const char                  *mode;
    ngx_uint_t                   method;
    const char                  *path;
    ngx_astralform_key_role_e    role;
    const char                  *user;
    const char                  *agent;
    const char                  *body;
    fz_handler_pt                handler;
} fz_mode_t;


static fz_mode_t  fz_modes[] = {
    { "list", NGX_HTTP_GET, "connectors", NGX_ASTRALFORM_KEY_ADMIN, NULL,
      NULL, NULL, ngx_astralform_connectors_handler },
    { "get", NGX_HTTP_GET, "connectors/kb", NGX_ASTRALFORM_KEY_ADMIN, NULL,
      NULL, NULL, ngx_astralform_connectors_handler },
    { "tools", NGX_HTTP_GET, "tools", NGX_ASTRALFORM_KEY_AGENT, NULL,
      "agent-1", NULL, ngx_astralform_tools_list_handler },
    { "call", NGX_HTTP_POST, "tools/call", NGX_ASTRALFORM_KEY_AGENT,
      "user-1", "agent-1",
      "{\"name\":\"slack_list_channels\",\"arguments\":{}}",
      ngx_astralform_tools_call_handler },
    { "callmcp", NGX_HTTP_POST, "tools/call", NGX_ASTRALFORM_KEY_AGENT,
      "user-1", NULL, "{\"name\":\"kb_search\",\"arguments\":{}}",
      ngx_astralform_tools_call_handler },
    { "callkey", NGX_HTTP_POST, "tools/call", NGX_ASTRALFORM_KEY_AGENT,
      "user-1", NULL,
      "{\"name\":\"openweather_current\",\"arguments\":{\"q\":\"Oslo\"}}",
      ngx_astralform_tools_call_handler },
    { "enable", NGX_HTTP_POST, "connectors", NGX_ASTRALFORM_KEY_ADMIN, NULL,
      NULL, "{\"connector_slug\":\"remote_mcp\",\"id\":\"new1\","
            "\"mcp_url\":\"https://mcp.new.test/mcp\"}",
      ngx_astralform_connectors_handler },
    { "patch", NGX_HTTP_PATCH, "connectors/kb", NGX_ASTRALFORM_KEY_ADMIN,
      NULL, NULL, "{\"require_auth\":false}",
      ngx_astralform_connectors_handler },
    { "delete", NGX_HTTP_DELETE, "connectors/kb", NGX_ASTRALFORM_KEY_ADMIN,
      NULL, NULL, NULL, ngx_astralform_connectors_handler },
    { "assign", NGX_HTTP_PUT, "agents/agent-1/connectors",
      NGX_ASTRALFORM_KEY_ADMIN, NULL, NULL,
      "{\"connectors\":[\"slack\",\"kb\"]}", ngx_astralform_agents_handler },
    { "agents", NGX_HTTP_GET, "agents/agent-1/connectors",
      NGX_ASTRALFORM_KEY_ADMIN, NULL, NULL, NULL,
      ngx_astralform_agents_handler },
    { NULL, 0, NULL, 0, NULL, NULL, NULL, NULL }
};


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char         *sp;
    void           *reply;
    fz_req_t       *req;
    fz_mode_t      *m;
    ngx_str_t       line, rest, word;
    ngx_uint_t      i, flags;
    redisReader    *reader;
    fz_sections_t   sec;
    char            flagtext[32];

    fz_split(data, size, &sec);

    if (sec.n < 2 || fz_huge_count(&sec.s[1])) {
        return 0;
    }

    fz_line(&sec.s[0], &line, &rest);

    sp = memchr(line.data, ' ', line.len);
    word.data = line.data;
    word.len = (sp ? sp : line.data + line.len) - line.data;

    flags = 0;
    if (sp != NULL) {
        i = ngx_min((size_t) (line.data + line.len - sp - 1),
                    sizeof(flagtext) - 1);
        ngx_memcpy(flagtext, sp + 1, i);
        flagtext[i] = '\0';
        flags = strtoul(flagtext, NULL, 0);
    }

    for (m = fz_modes; m->mode; m++) {
        if (strlen(m->mode) == word.len
            && ngx_strncmp(m->mode, word.data, word.len) == 0)
        {
            break;
        }
    }

    if (m->mode == NULL) {
        return 0;
    }

    /* the replies, as the async context's reader produces them */

    reader = redisReaderCreate();
    if (reader == NULL) {
        fz_fail("out of memory");
    }

    fz_nreplies = 0;
    fz_next_reply = 0;

    if (redisReaderFeed(reader, (char *) sec.s[1].data, sec.s[1].len)
        == REDIS_OK)
    {
        while (fz_nreplies < FZ_MAX_REPLIES) {
            reply = NULL;

            if (redisReaderGetReply(reader, &reply) != REDIS_OK
                || reply == NULL)
            {
                break;
            }

            fz_replies[fz_nreplies++] = reply;
        }
    }

    redisReaderFree(reader);

    fz_gw_begin(data, size);

    fz_world.redis = fz_next;
    fz_world.answer = fz_canned_answer;
    fz_world.schedule = (uint32_t) (flags >> 16);

    /* mcp_url, secrets and ids come from the store: no host to check */
    fz_world.check_hosts = 0;

    req = fz_req(m->method, m->path, m->role, m->user, m->agent);

    if (m->body != NULL) {
        req->ctx->body = json_loads(m->body, JSON_REJECT_DUPLICATES, NULL);
    }

    fz_dispatch(req, m->handler);
    fz_run(0, NULL);

    fz_gw_end();

    /* replies the module did not ask for; the rest hiredis freed */
    for (i = fz_next_reply; i < fz_nreplies; i++) {
        freeReplyObject(fz_replies[i]);
    }

    return 0;
}
