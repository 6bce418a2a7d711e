/*
 * Redis on the worker's event loop: pipelined hiredis async connections,
 * their sockets driven by nginx events, timeouts by nginx timers; one
 * Redis, a Sentinel-managed master, or a Cluster, the callers need not know
 * which.
 *
 * THE ONE RULE for a command sent through ngx_astralform_redis_send(): its
 * key is where Redis's command table puts the first key, so the routing
 * layer can see it without knowing the command:
 *
 *   - argv[1] for every command that has a key (GET, HSET, DEL, ...);
 *   - argv[3], the first of KEYS, for EVAL, EVALSHA, EVAL_RO, EVALSHA_RO,
 *     FCALL, FCALL_RO (argv[2] is numkeys, at least 1);
 *   - no key at all only for PING, ROLE, ECHO, TIME, INFO (any master).
 *
 * Every other key the command or script touches (further KEYS, never keys
 * built inside a script) carries the same {PID} hash tag as that first
 * key: in a Cluster a command runs on the master of its key's slot, and
 * must not span slots.
 */

#ifndef _NGX_ASTRALFORM_REDIS_H_INCLUDED_
#define _NGX_ASTRALFORM_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <hiredis/hiredis.h>


#define NGX_ASTRALFORM_REDIS_SINGLE    0
#define NGX_ASTRALFORM_REDIS_SENTINEL  1
#define NGX_ASTRALFORM_REDIS_CLUSTER   2


typedef struct {
    ngx_str_t                 name;          /* as configured, for logs */
    ngx_str_t                 host;          /* numeric, resolved at conf */
    ngx_int_t                 port;
} ngx_astralform_redis_addr_t;


typedef struct {
    ngx_str_t                 addr;          /* as configured, for logs */
    ngx_str_t                 host;          /* numeric, resolved at conf */
    ngx_int_t                 port;
    ngx_str_t                 unix_path;
    ngx_int_t                 db;
    ngx_str_t                 password;
    ngx_msec_t                connect_timeout;
    ngx_msec_t                timeout;

    ngx_uint_t                mode;
    ngx_array_t              *seeds;         /* sentinels or cluster nodes */
    ngx_str_t                 master_name;   /* sentinel */
    ngx_str_t                 sentinel_password;
    ngx_uint_t                wait_replicas;
    ngx_msec_t                wait_timeout;
    size_t                    cache_size;    /* 0: no configuration cache */
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

/*
 * A read of the project's configuration (argv[1] its key, the command a
 * read): NGX_OK when answered from this worker's cache, the handler then
 * called before this returns; NGX_AGAIN when sent as by
 * ngx_astralform_redis_send(), the handler called later; NGX_ERROR when
 * nothing was sent, the handler never called. See
 * ngx_astralform_redis_cache.c for what keeps the cache exact.
 */
ngx_int_t ngx_astralform_redis_cached(ngx_pool_t *pool, ngx_log_t *log,
    ngx_astralform_redis_pt handler, void *data, ngx_uint_t argc,
    ngx_str_t *argv);

/* for /v1/health: "single", "sentinel" or "cluster" */
const char *ngx_astralform_redis_mode_name(void);
/* the writable masters known now ("ip:port"), at most max of them */
ngx_uint_t ngx_astralform_redis_masters(ngx_str_t *out, ngx_uint_t max);
/* cluster: every slot has a master; otherwise: a master is known */
ngx_uint_t ngx_astralform_redis_complete(void);

/* value[0..n-1]: the address or sentinel=/cluster=, then key=value */
char *ngx_astralform_redis_parse(ngx_conf_t *cf,
    ngx_astralform_redis_conf_t *conf, ngx_str_t *value, ngx_uint_t n);
ngx_int_t ngx_astralform_redis_init_process(ngx_cycle_t *cycle,
    ngx_astralform_redis_conf_t *conf);
void ngx_astralform_redis_exit_process(ngx_cycle_t *cycle);


#endif /* _NGX_ASTRALFORM_REDIS_H_INCLUDED_ */
