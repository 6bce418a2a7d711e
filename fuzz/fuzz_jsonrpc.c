/*
 * JSON-RPC messages as the MCP servers receive them (one POST body) and
 * as the MCP client reads a remote server's answer (a message or a
 * batch), through ngx_astralform_jsonrpc_parse()
 * (src/ngx_astralform_jsonrpc.c), then the answers built for them.
 *
 * Input: the body, parsed as the gateway parses one
 * (JSON_REJECT_DUPLICATES); bytes that are not JSON still go through the
 * error builder as the message of an error (masked where not UTF-8).
 *
 * Oracles, besides the sanitizers: a message accepted is what JSON-RPC
 * 2.0 says it is (a request has a string or integer id and a string
 * method, a notification no id, a response an id and exactly one of a
 * result and an error with an integer code and a string message; params
 * are absent, an object or an array); a refusal says why and keeps only a
 * usable id; every answer built for a message (result, error, the
 * request again) is itself a message of the right kind, with the same id.
 */


#include "fuzz_util.h"
#include "ngx_shim.h"
#include "ngx_astralform_jsonrpc.h"


#define FZ_MSG_SIZE  512        /* as ngx_astralform_mcp_error() */


static void fz_check(json_t *json);
static void fz_answer(json_t *answer, ngx_astralform_jsonrpc_kind_e kind,
    json_t *id, const char *what);


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_init();

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char      msg[FZ_MSG_SIZE];
    size_t      i, len;
    json_t     *json, *item;
    ngx_str_t  *v;

    json = json_loadb((const char *) data, size, JSON_REJECT_DUPLICATES,
                      NULL);

    if (json == NULL) {
        /* the peer's bytes quoted in an error message */
        len = ngx_min(size, sizeof(msg));
        ngx_memcpy(msg, data, len);

        fz_answer(ngx_astralform_jsonrpc_error(NULL,
                      NGX_ASTRALFORM_JSONRPC_PARSE_ERROR, msg, len, NULL),
                  NGX_ASTRALFORM_JSONRPC_RESPONSE, NULL, "a parse error");
        return 0;
    }

    if (json_is_string(json)) {
        /* a protocol version, as MCP-Protocol-Version or protocolVersion */
        v = ngx_astralform_mcp_version(ngx_astralform_mcp_server_versions,
                                       (u_char *) json_string_value(json),
                                       json_string_length(json));

        if (v != NULL && (v->len != json_string_length(json)
                          || memcmp(v->data, json_string_value(json), v->len)
                             != 0))
        {
            fz_fail("a protocol version taken for another");
        }
    }

    if (json_is_array(json)) {
        /* a batch, as the client reads one */
        json_array_foreach(json, i, item) {
            fz_check(item);
        }
    }

    fz_check(json);

    json_decref(json);

    return 0;
}


static void
fz_check(json_t *json)
{
    u_char                    msg[FZ_MSG_SIZE], *last;
    json_t                   *error, *code, *message;
    ngx_int_t                 rc;
    ngx_astralform_jsonrpc_t  rpc;

    rc = ngx_astralform_jsonrpc_parse(json, &rpc);

    if (rc != NGX_OK) {
        if (rc != NGX_ERROR || rpc.invalid == NULL || rpc.kind != 0
            || rpc.method != NULL || rpc.result != NULL
            || rpc.error != NULL)
        {
            fz_fail("a refusal that does not say why, or says more");
        }

        if (rpc.id != NULL && !ngx_astralform_jsonrpc_valid_id(rpc.id)
            && !json_is_null(rpc.id))
        {
            fz_fail("a refusal that keeps an unusable id");
        }

        /* the server's answer: Invalid Request, with the id if usable */
        last = ngx_snprintf(msg, sizeof(msg), "Invalid Request: %s",
                            rpc.invalid);
        fz_answer(ngx_astralform_jsonrpc_error(rpc.id,
                      NGX_ASTRALFORM_JSONRPC_INVALID_REQUEST, msg,
                      last - msg, NULL),
                  NGX_ASTRALFORM_JSONRPC_RESPONSE, rpc.id, "a refusal");
        return;
    }

    if (!json_is_object(json)
        || ngx_strcmp(json_string_value(json_object_get(json, "jsonrpc"))
                      ?: "", "2.0") != 0)
    {
        fz_fail("a message accepted without \"jsonrpc\": \"2.0\"");
    }

    if (rpc.params != NULL && !json_is_object(rpc.params)
        && !json_is_array(rpc.params))
    {
        fz_fail("params that are neither an object nor an array");
    }

    switch (rpc.kind) {

    case NGX_ASTRALFORM_JSONRPC_REQUEST:
    case NGX_ASTRALFORM_JSONRPC_NOTIFICATION:

        if (rpc.method == NULL
            || !json_is_string(json_object_get(json, "method"))
            || strcmp(rpc.method, json_string_value(json_object_get(json,
                                                           "method")))
               != 0
            || rpc.params != json_object_get(json, "params")
            || rpc.result != NULL || rpc.error != NULL)
        {
            fz_fail("a request or notification read wrong");
        }

        if (rpc.kind == NGX_ASTRALFORM_JSONRPC_NOTIFICATION) {
            if (rpc.id != NULL || json_object_get(json, "id") != NULL) {
                fz_fail("a notification with an id");
            }

            fz_answer(ngx_astralform_jsonrpc_request(NULL, rpc.method,
                                                     json_incref(rpc.params)),
                      NGX_ASTRALFORM_JSONRPC_NOTIFICATION, NULL,
                      "the notification again");
            return;
        }

        if (!ngx_astralform_jsonrpc_valid_id(rpc.id)) {
            fz_fail("a request whose id is not a string or an integer");
        }

        fz_answer(ngx_astralform_jsonrpc_result(rpc.id, json_object()),
                  NGX_ASTRALFORM_JSONRPC_RESPONSE, rpc.id, "a result");

        /* as the server answers an unknown method, message cut at 512 */
        last = ngx_slprintf(msg, msg + sizeof(msg), "Method not found: %s",
                            rpc.method);
        fz_answer(ngx_astralform_jsonrpc_error(rpc.id,
                      NGX_ASTRALFORM_JSONRPC_NO_METHOD, msg, last - msg,
                      json_pack("{s:O?}", "params", rpc.params)),
                  NGX_ASTRALFORM_JSONRPC_RESPONSE, rpc.id, "an error");

        fz_answer(ngx_astralform_jsonrpc_request(json_incref(rpc.id),
                                                 rpc.method,
                                                 json_incref(rpc.params)),
                  NGX_ASTRALFORM_JSONRPC_REQUEST, rpc.id,
                  "the request again");
        return;

    case NGX_ASTRALFORM_JSONRPC_RESPONSE:

        if (rpc.id == NULL || rpc.method != NULL
            || (rpc.result == NULL) == (rpc.error == NULL)
            || (!ngx_astralform_jsonrpc_valid_id(rpc.id)
                && !(json_is_null(rpc.id) && rpc.error != NULL)))
        {
            fz_fail("a response read wrong");
        }

        if (rpc.error != NULL) {
            error = rpc.error;
            code = json_object_get(error, "code");
            message = json_object_get(error, "message");

            if (!json_is_integer(code) || !json_is_string(message)) {
                fz_fail("an error without an integer code and a message");
            }
        }

        return;

    default:
        fz_fail("a message of no kind");
    }
}


/* answer is one message of kind, with id (NULL: none or null); released */
static void
fz_answer(json_t *answer, ngx_astralform_jsonrpc_kind_e kind, json_t *id,
    const char *what)
{
    char                      *text;
    json_t                    *again;
    ngx_astralform_jsonrpc_t   rpc;

    if (answer == NULL) {
        fz_fail("%s could not be built", what);
    }

    /* what goes on the wire, read back as the peer reads it ("\u0000"
     * is JSON: a message may quote such bytes) */
    text = json_dumps(answer, JSON_COMPACT);
    json_decref(answer);

    if (text == NULL) {
        fz_fail("%s could not be written", what);
    }

    again = json_loads(text, JSON_REJECT_DUPLICATES|JSON_ALLOW_NUL, NULL);
    free(text);

    if (ngx_astralform_jsonrpc_parse(again, &rpc) != NGX_OK
        || rpc.kind != kind)
    {
        fz_fail("%s is not a JSON-RPC message of its kind: %s", what,
                rpc.invalid ? rpc.invalid : "another kind");
    }

    if (kind != NGX_ASTRALFORM_JSONRPC_NOTIFICATION
        && !json_equal(rpc.id, id ? id : json_null()))
    {
        fz_fail("%s does not carry the id of its request", what);
    }

    json_decref(again);
}
