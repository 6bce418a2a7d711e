/*
 * Between the Redis connection layer (ngx_astralform_redis.c: nodes,
 * operations, redirections) and the topology (ngx_astralform_redis_topology.c:
 * which node is the master of what, from Sentinel or CLUSTER SLOTS).
 */

#ifndef _NGX_ASTRALFORM_REDIS_INTERNAL_H_INCLUDED_
#define _NGX_ASTRALFORM_REDIS_INTERNAL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <hiredis/async.h>

#include "ngx_astralform_redis.h"


#define NGX_ASTRALFORM_REDIS_SLOTS        16384
#define NGX_ASTRALFORM_REDIS_BACKOFF_MIN  50
#define NGX_ASTRALFORM_REDIS_BACKOFF_MAX  1000

/* what a node is for: its AUTH password and whether it is routed to */
#define NGX_ASTRALFORM_REDIS_DATA         0
#define NGX_ASTRALFORM_REDIS_SENTINEL     1
#define NGX_ASTRALFORM_REDIS_SUBSCRIBER   2


typedef struct {
    ngx_str_t                     name;        /* "ip:port", for logs */
    u_char                        host[NGX_SOCKADDR_STRLEN + 1];
    ngx_int_t                     port;        /* 0: host is a unix path */
    ngx_uint_t                    kind;
    redisAsyncContext            *ac;
    ngx_queue_t                   inflight;
    ngx_event_t                   watchdog;
    ngx_connection_t              dummy;       /* ev->data of the timer */
    ngx_msec_t                    connect_deadline;
    ngx_msec_t                    retry_at;
    ngx_msec_t                    backoff;
    unsigned                      connected:1;
    unsigned                      closing:1;
    unsigned                      flushing:1;  /* in the write handler */
} ngx_astralform_redis_node_t;


typedef struct {
    ngx_astralform_redis_conf_t  *conf;
    ngx_log_t                    *log;
    ngx_array_t                   nodes;       /* of node_t * */

    ngx_astralform_redis_node_t  *single;
    ngx_astralform_redis_node_t  *master;      /* sentinel: ROLE said so */
    ngx_astralform_redis_node_t  *sub;         /* +switch-master */
    ngx_astralform_redis_node_t **sentinels;
    ngx_uint_t                    preferred;   /* the last that answered */
    ngx_uint_t                    asked;       /* in this round */

    ngx_astralform_redis_node_t **slots;       /* cluster */
    ngx_uint_t                    covered;

    ngx_queue_t                   pending;     /* ops waiting for a master */
    ngx_event_t                   pending_ev;
    ngx_event_t                   discover_ev;
    ngx_connection_t              dummy;
    ngx_msec_t                    discover_backoff;
    unsigned                      discovering:1;
} ngx_astralform_redis_worker_t;


extern ngx_astralform_redis_worker_t  ngx_astralform_rw;


/* ngx_astralform_redis.c */
ngx_astralform_redis_node_t *ngx_astralform_redis_node(u_char *host,
    size_t len, ngx_int_t port, ngx_uint_t kind);
ngx_int_t ngx_astralform_redis_node_ready(ngx_astralform_redis_node_t *node);
void ngx_astralform_redis_node_close(ngx_astralform_redis_node_t *node);
ngx_astralform_redis_op_t *ngx_astralform_redis_internal(
    ngx_astralform_redis_node_t *node, ngx_astralform_redis_pt handler,
    void *data, ngx_uint_t argc, ngx_str_t *argv);
void ngx_astralform_redis_flush_pending(void);
ngx_uint_t ngx_astralform_redis_numeric(u_char *host, size_t len);

/* ngx_astralform_redis_topology.c */
ngx_int_t ngx_astralform_redis_topology_init(ngx_cycle_t *cycle);
ngx_astralform_redis_node_t *ngx_astralform_redis_route(ngx_int_t slot);
void ngx_astralform_redis_discover(void);
void ngx_astralform_redis_discover_later(ngx_msec_t delay);
void ngx_astralform_redis_lost(ngx_astralform_redis_node_t *node);
void ngx_astralform_redis_moved(ngx_int_t slot,
    ngx_astralform_redis_node_t *node);
ngx_int_t ngx_astralform_redis_keyslot(ngx_uint_t argc, ngx_str_t *argv);


#endif /* _NGX_ASTRALFORM_REDIS_INTERNAL_H_INCLUDED_ */
