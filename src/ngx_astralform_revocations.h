/*
 * Durable revocation at the provider of tokens deleted here: a connector
 * disabled, a user disconnected. The tokens move, sealed as they were, to
 * a batch in Redis that any worker of any instance drains in the
 * background (see ngx_astralform_revocations.c).
 */

#ifndef _NGX_ASTRALFORM_REVOCATIONS_H_INCLUDED_
#define _NGX_ASTRALFORM_REVOCATIONS_H_INCLUDED_


#include "ngx_astralform.h"


/* where a deletion moves the tokens it revokes: the scripts' arguments */
typedef struct {
    ngx_str_t                     id;           /* the batch */
    ngx_str_t                     tokens;       /* {P}:revoke_tokens:<B> */
    ngx_str_t                     batch;        /* {P}:revoke_batch:<B> */
    ngx_str_t                     batches;      /* {P}:revoke_batches */
    ngx_str_t                     counters;     /* {P}:revocations:<C> */
    ngx_str_t                     meta;         /* what the drain needs */
    ngx_str_t                     revocable;    /* "1" or "0" */
} ngx_astralform_spool_t;


/*
 * The Lua that files the batch of a deletion; expects the spool's keys as
 * KEYS[n..n+3] (tokens, batch, batches, counters) and its id, meta and the
 * count moved in local variables bid, meta, moved
 */
#define NGX_ASTRALFORM_SPOOL_LUA(n)                                          \
    "local t = redis.call('TIME') "                                          \
    "redis.call('HSET', KEYS[" #n "+1], 'meta', meta) "                      \
    "redis.call('ZADD', KEYS[" #n "+2], t[1] * 1000, bid) "                  \
    "redis.call('HINCRBY', KEYS[" #n "+3], 'total', moved) "


ngx_int_t ngx_astralform_spool_init(ngx_astralform_ctx_t *ctx,
    ngx_astralform_connector_t *conn, ngx_astralform_spool_t *spool);

/* this worker looks for work now rather than at its next tick */
void ngx_astralform_revocations_kick(void);

/* GET /v1/projects/{pid}/connectors/{id}/revocations */
ngx_int_t ngx_astralform_revocations_handler(ngx_astralform_ctx_t *ctx);

ngx_int_t ngx_astralform_revocations_init_process(ngx_cycle_t *cycle);


#endif /* _NGX_ASTRALFORM_REVOCATIONS_H_INCLUDED_ */
