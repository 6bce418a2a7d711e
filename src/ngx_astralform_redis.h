/*
 * Redis on the worker's event loop: one pipelined hiredis async connection
 * per worker, its socket driven by nginx events, timeouts by nginx timers.
 */

#ifndef _NGX_ASTRALFORM_REDIS_H_INCLUDED_
#define _NGX_ASTRALFORM_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <hiredis/hiredis.h>


typedef struct {
    ngx_str_t                 addr;          /* as configured, for logs */
    ngx_str_t                 host;          /* numeric, resolved at conf */
    ngx_int_t                 port;
    ngx_str_t                 unix_path;
    ngx_int_t                 db;
    ngx_str_t                 password;
    ngx_msec_t                connect_timeout;
    ngx_msec_t                timeout;
} ngx_astralform_redis_conf_t;


/*
 * reply is NULL when Redis is unreachable, timed out, or the connection
 * dropped. Never called after ngx_astralform_redis_send() returned NULL,
 * nor after the pool given to it was destroyed.
 */
typedef void (*ngx_astralform_redis_pt)(redisReply *reply, void *data);

typedef struct ngx_astralform_redis_op_s  ngx_astralform_redis_op_t;


ngx_astralform_redis_op_t *ngx_astralform_redis_send(ngx_pool_t *pool,
    ngx_log_t *log, ngx_astralform_redis_pt handler, void *data,
    ngx_uint_t argc, ngx_str_t *argv);
ngx_uint_t ngx_astralform_redis_is_up(void);

/* value[0] is the address, value[1..n-1] the key=value parameters */
char *ngx_astralform_redis_parse(ngx_conf_t *cf,
    ngx_astralform_redis_conf_t *conf, ngx_str_t *value, ngx_uint_t n);
ngx_int_t ngx_astralform_redis_init_process(ngx_cycle_t *cycle,
    ngx_astralform_redis_conf_t *conf);
void ngx_astralform_redis_exit_process(ngx_cycle_t *cycle);


#endif /* _NGX_ASTRALFORM_REDIS_H_INCLUDED_ */
