/*
 * Provider answers, and the end user's stored token record, through a
 * catalog tool call: ngx_astralform_tools_call_handler() (the mapping of
 * the answer is static in src/ngx_astralform_tools.c: call_done,
 * call_auth_failed, call_rate_limited, call_provider_error) with the
 * record read by ngx_astralform_token_get() and opened by
 * ngx_astralform_token_open() (src/ngx_astralform_tokens.c).
 *
 * Input, sections separated by "\n%%\n":
 *
 *   0: "TOOL [FLAGS]\nARGUMENTS-JSON"
 *   1: the token record as JSON, sealed at run time for (p1, connector,
 *      user) ("$C" becomes the connector id); "-" for none; "raw:BYTES"
 *      stores BYTES unsealed
 *   2...: the provider's answers in order, each
 *      "STATUS|timeout|connect|large|failed\nName: value\n...\n\nBODY"
 *
 * FLAGS (strtoul): bits 0-1 the outcome of a refresh (0 fresh token,
 * 1 refresh failed for good, 2 store unavailable), bit 2 the connect URL
 * cannot be made, bit 3 no X-Astralform-User, bit 4 Redis down, bits 8-11
 * the client goes away after that many events, bits 16-31 seed the order
 * of events.
 *
 * Beyond the gateway's oracles, the answer must follow the design's
 * mapping: a provider timeout is 504 provider_timeout, a transport
 * failure 502 provider_error, a 429 is 429 rate_limited with a
 * retry_after of 0 or more, a 5xx is 502 provider_error with provider_status.
 */


#include "fuzz_gateway.h"


static ngx_str_t  fz_default_token = ngx_string(
    "{\"type\":\"oauth\",\"access_token\":\"AT-CANARY-$C-1\","
    "\"refresh_token\":\"RT-CANARY-$C-1\",\"expires_at\":0,"
    "\"scope\":\"read\",\"token_type\":\"bearer\"}");


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_gw_init();
    return 0;
}


static ngx_str_t *
fz_last_answer(void)
{
    if (fz_world.next_answer == 0) {
        return NULL;
    }

    return &fz_world.answers[fz_world.next_answer - 1];
}


/* whether the answer's body is JSON with "ok": false */
static ngx_uint_t
fz_ok_false(ngx_str_t *answer)
{
    u_char      *p;
    json_t      *json;
    ngx_uint_t   rc;

    p = (u_char *) memmem(answer->data, answer->len, "\n\n", 2);
    if (p == NULL) {
        return 0;
    }

    p += 2;
    json = json_loadb((char *) p, answer->data + answer->len - p, 0, NULL);
    rc = json_is_false(json_object_get(json, "ok"));
    json_decref(json);

    return rc;
}


static void
fz_check_mapping(fz_req_t *req)
{
    json_t     *ans, *retry;
    ngx_str_t  *last, line;
    ngx_int_t   status;
    const char *err;

    last = fz_last_answer();

    if (last == NULL || req->answer == NULL || fz_world.http_started == 0) {
        return;
    }

    ans = json_loads(req->answer, JSON_ALLOW_NUL, NULL);
    err = json_string_value(json_object_get(ans, "error"));

    line = *last;
    fz_line(last, &line, &(ngx_str_t) { 0, NULL });

    if (line.len && line.data[line.len - 1] == '\r') {
        line.len--;
    }

#define fz_is(lit)                                                           \
    (line.len == sizeof(lit) - 1 && memcmp(line.data, lit, line.len) == 0)

    if (fz_is("timeout")) {
        if (req->status != 504 || err == NULL
            || strcmp(err, "provider_timeout") != 0)
        {
            fz_fail("a provider timeout answered %u %s",
                    (unsigned) req->status, req->answer);
        }

    } else if (fz_is("connect") || fz_is("failed") || fz_is("large")) {
        if (req->status != 502 || err == NULL
            || strcmp(err, "provider_error") != 0)
        {
            fz_fail("a transport failure answered %u %s",
                    (unsigned) req->status, req->answer);
        }

    } else if (!fz_ok_false(last)) {
        /* (Slack's {"ok":false,"error":"invalid_auth"} is an auth failure
         * whatever the status) */
        status = ngx_atoi(line.data, line.len);

        if (status == 429) {
            retry = json_object_get(ans, "retry_after");

            if (req->status != 429 || err == NULL
                || strcmp(err, "rate_limited") != 0
                || !json_is_integer(retry) || json_integer_value(retry) < 0)
            {
                fz_fail("a provider 429 answered %u %s",
                        (unsigned) req->status, req->answer);
            }

        } else if (status >= 500 && status <= 999) {
            if (req->status != 502 || err == NULL
                || strcmp(err, "provider_error") != 0
                || json_integer_value(json_object_get(ans, "provider_status"))
                   != status)
            {
                fz_fail("a provider %ld answered %u %s", (long) status,
                        (unsigned) req->status, req->answer);
            }
        }
    }

#undef fz_is

    json_decref(ans);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char            *tool, *end, flagtext[32];
    json_t          *body, *args;
    fz_req_t        *req;
    ngx_str_t        line, rest, *rec;
    ngx_uint_t       flags, abort_after;
    fz_sections_t    sec;

    fz_split(data, size, &sec);
    fz_line(&sec.s[0], &line, &rest);

    end = memchr(line.data, ' ', line.len);
    flags = 0;

    if (end != NULL) {
        ngx_str_t  f;

        f.data = (u_char *) end + 1;
        f.len = line.data + line.len - f.data;
        f.len = ngx_min(f.len, sizeof(flagtext) - 1);
        ngx_memcpy(flagtext, f.data, f.len);
        flagtext[f.len] = '\0';
        flags = strtoul(flagtext, NULL, 0);

        line.len = (u_char *) end - line.data;
    }

    args = rest.len ? json_loadb((char *) rest.data, rest.len,
                                 JSON_REJECT_DUPLICATES, NULL)
                    : json_object();
    if (args == NULL) {
        return 0;
    }

    tool = fz_strdup(&line);
    body = json_pack("{s:s, s:o}", "name", tool, "arguments", args);
    free(tool);

    if (body == NULL) {
        return 0;
    }

    fz_gw_begin(data, size);

    switch (flags & 3) {
    case 0:
        fz_world.refresh_rc = NGX_OK;
        break;
    case 1:
        fz_world.refresh_rc = NGX_DECLINED;
        break;
    default:
        fz_world.refresh_rc = NGX_ERROR;
    }

    fz_world.connect_rc = (flags & 4) ? NGX_ERROR : NGX_OK;
    fz_world.redis_down = (flags & 16) ? 1 : 0;
    fz_world.schedule = (uint32_t) (flags >> 16);
    abort_after = (flags >> 8) & 0xf;

    fz_world.token_mode = FZ_TOKEN_SEALED;
    fz_world.token_plain = fz_default_token;

    if (sec.n > 1) {
        rec = &sec.s[1];

        if (rec->len == 1 && rec->data[0] == '-') {
            fz_world.token_mode = FZ_TOKEN_NONE;

        } else if (rec->len >= 4 && memcmp(rec->data, "raw:", 4) == 0) {
            fz_world.token_mode = FZ_TOKEN_RAW;
            fz_world.token_raw.data = rec->data + 4;
            fz_world.token_raw.len = rec->len - 4;

        } else {
            fz_world.token_plain = *rec;
        }
    }

    if (sec.n > 2) {
        fz_answers(&sec.s[2], sec.n - 2);
    }

    req = fz_req(NGX_HTTP_POST, "tools/call", NGX_ASTRALFORM_KEY_AGENT,
                 (flags & 8) ? NULL : "user-1", NULL);
    req->ctx->body = body;

    fz_dispatch(req, ngx_astralform_tools_call_handler);
    fz_run(abort_after, abort_after ? req : NULL);

    if (!abort_after) {
        fz_check_mapping(req);
    }

    fz_gw_end();

    return 0;
}
