/*
 * A gateway without nginx's HTTP core, Redis or the network, for the
 * harnesses that drive the module through its public entry points
 * (request handlers, ngx_astralform_load_project(), token and MCP calls).
 *
 * The module files are linked unchanged, the answer functions
 * (ngx_astralform_answer.c) included; fuzz_gateway.c stands in for
 *
 *   - nginx's HTTP core under them (ngx_http_send_header,
 *     ngx_http_output_filter, ngx_http_finalize_request): the answer is
 *     recorded and checked;
 *   - ngx_astralform_redis_send(): the command is queued; its reply comes
 *     later from the event loop, from a policy (canned, or fuzzer bytes
 *     through hiredis's reader);
 *   - ngx_astralform_http_*: the request is checked and queued; its answer
 *     comes later from the fuzzer ("STATUS\nHeader: v\n\nbody");
 *   - the OAuth entry points tools.c calls (connect URL, refresh) and
 *     provider-side revocation.
 *
 * Each keeps the contract of the real one (ngx_astralform_http.h,
 * ngx_astralform_redis.h): callbacks never run inside the call that
 * started the work, and never after the pool given to it was destroyed.
 * The request pool is destroyed when the request is finalized, as nginx
 * does once the answer is out, so a module touching a finished request is
 * caught by AddressSanitizer.
 *
 * Oracles (each a crash with a message): a request finalized twice or
 * never, an answer sent twice (or the module's alert that it dropped
 * one), an answer that is not one JSON object, an error answer without
 * "error" and "message", a secret of the test world (any "-CANARY-" string) in a log
 * line or an answer when the input did not hold it, a credential sent to
 * a host other than its connector's, a header with CR, LF or NUL, an
 * unbounded number of outbound operations for one input.
 */

#ifndef _FUZZ_GATEWAY_H_INCLUDED_
#define _FUZZ_GATEWAY_H_INCLUDED_


#include "ngx_astralform.h"
#include "ngx_astralform_tokens.h"
#include "ngx_astralform_oauth.h"
#include "ngx_astralform_mcp_client.h"
#include "fuzz_util.h"
#include "ngx_shim.h"


#define FZ_PROJECT      "p1"
#define FZ_MAX_EVENTS   256


typedef ngx_int_t (*fz_handler_pt)(ngx_astralform_ctx_t *ctx);


typedef struct {
    ngx_http_request_t          *r;
    ngx_astralform_ctx_t        *ctx;
    ngx_int_t                    rc;            /* as finalized */
    ngx_uint_t                   status;        /* of the answer sent */
    char                        *answer;        /* its JSON, malloc()ed */
    unsigned                     finished:1;
    unsigned                     freed:1;
    unsigned                     in_handler:1;
    unsigned                     body_read:1;   /* POST/PUT/PATCH */
} fz_req_t;


/* how the next Redis command is answered; NULL is a dropped connection */
typedef redisReply *(*fz_redis_policy_pt)(ngx_uint_t argc, ngx_str_t *argv);


typedef enum {
    FZ_TOKEN_NONE = 0,      /* HGET answers nil */
    FZ_TOKEN_SEALED,        /* token_plain, sealed for the asker */
    FZ_TOKEN_RAW            /* token_raw as stored bytes */
} fz_token_mode_e;


typedef struct {
    ngx_astralform_main_conf_t  *amcf;
    ngx_astralform_project_t    *project;       /* of new requests */
    ngx_astralform_project_t    *home;          /* p1 */

    /* per input */
    ngx_astralform_def_t        *extra_def;     /* not in the catalog */
    fz_redis_policy_pt           redis;         /* NULL: canned answers */
    ngx_uint_t                   redis_down;    /* sends fail */
    json_t                      *redis_connectors;  /* id -> stored JSON */
    ngx_str_t                    assignment;    /* HGET agents, or nil */
    fz_token_mode_e              token_mode;
    ngx_str_t                    token_plain;
    ngx_str_t                    token_raw;
    ngx_int_t                    refresh_rc;    /* OK, DECLINED, ERROR */
    ngx_int_t                    connect_rc;    /* OK, ERROR */
    ngx_str_t                 *(*answer)(ngx_astralform_http_req_t *hr);
    ngx_str_t                   *answers;       /* HTTP answers in order */
    ngx_uint_t                   nanswers;
    ngx_uint_t                   next_answer;
    uint32_t                     schedule;      /* event order seed */
    ngx_uint_t                   check_hosts;   /* destinations known */
    const uint8_t               *input;
    size_t                       input_len;

    /* what happened, for the harness */
    ngx_uint_t                   http_started;
    ngx_uint_t                   redis_sent;
    ngx_uint_t                   events;
} fz_world_t;


extern fz_world_t  fz_world;
extern ngx_log_t   fz_log;


/* once, from LLVMFuzzerInitialize(): the catalog, keys, project p1 */
void fz_gw_init(void);

/* per input */
void fz_gw_begin(const uint8_t *data, size_t size);
void fz_gw_end(void);

/*
 * A request of project p1. path is what follows /v1/projects/p1/
 * ("tools/call", "connectors/ID"...); method is NGX_HTTP_*; role is
 * NGX_ASTRALFORM_KEY_ADMIN or _AGENT; user and agent may be NULL.
 */
fz_req_t *fz_req(ngx_uint_t method, const char *path,
    ngx_astralform_key_role_e role, const char *user, const char *agent);
void fz_dispatch(fz_req_t *req, fz_handler_pt handler);

/* the client goes away: the request pool is destroyed unanswered */
void fz_req_abort(fz_req_t *req);

/* runs queued callbacks until none is left (or abort_after of them) */
void fz_run(ngx_uint_t abort_after, fz_req_t *abort_req);

/* the HTTP answers of this input: sections of the fuzzer's input */
void fz_answers(ngx_str_t *answers, ngx_uint_t n);

/* answers by what was asked: MCP servers and providers that work */
ngx_str_t *fz_canned_answer(ngx_astralform_http_req_t *hr);

/* a reply from RESP bytes (hiredis's reader), or NULL */
redisReply *fz_reply(const char *resp, size_t len);

/* seals plain as the token record of (p1, connector, user) */
ngx_int_t fz_seal_token(ngx_pool_t *pool, ngx_str_t *connector,
    ngx_str_t *user, ngx_str_t *plain, ngx_str_t *blob);

ngx_astralform_def_t *fz_def(const char *slug);

/* whether this input holds s (an oracle may not apply then) */
ngx_uint_t fz_input_has(const char *s);


#endif /* _FUZZ_GATEWAY_H_INCLUDED_ */
