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
#define NGX_ASTRALFORM_REDIS_TRACKER      3   /* a data node's invalidations */

/* a data node's client-side caching, ngx_astralform_redis_cache.c */
#define NGX_ASTRALFORM_REDIS_TRACKING_OFF    0
#define NGX_ASTRALFORM_REDIS_TRACKING_ASKED  1
#define NGX_ASTRALFORM_REDIS_TRACKING_ON     2


typedef struct ngx_astralform_redis_node_s  ngx_astralform_redis_node_t;
typedef struct ngx_astralform_redis_cid_s   ngx_astralform_redis_cid_t;


struct ngx_astralform_redis_node_s {
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

    /* DATA: its tracker and the keys cached; TRACKER: whose it is */
    ngx_astralform_redis_node_t  *tracker;
    ngx_astralform_redis_node_t  *owner;
    ngx_rbtree_t                  keys;
    ngx_rbtree_node_t             keys_sentinel;
    long long                     client_id;   /* TRACKER: CLIENT ID */
    ngx_uint_t                    tracking;    /* DATA: TRACKING_* */
    ngx_uint_t                    track_gen;   /* DATA: bumped when lost */
    ngx_uint_t                    track_asked; /* DATA: gen when asked */
    unsigned                      subscribed:1;  /* TRACKER */
};


struct ngx_astralform_redis_op_s {
    ngx_queue_t                   queue;       /* node's inflight, pending */
    ngx_msec_t                    deadline;
    ngx_astralform_redis_pt       handler;     /* NULL once cancelled */
    void                         *data;
    ngx_pool_cleanup_t           *cln;
    char                         *cmd;         /* formatted, for a retry */
    int                           len;
    ngx_int_t                     slot;        /* -1: no key */
    ngx_uint_t                    tries;
    ngx_astralform_redis_node_t  *node;
    ngx_astralform_redis_op_t    *wait;        /* its WAIT, in flight */
    redisReply                   *held;        /* the reply WAIT holds */
    ngx_astralform_redis_cid_t   *cache;       /* a tracked read's entry */
    ngx_uint_t                    cache_gen;   /* its placeholder's */
    u_char                        name[16];    /* the command, for logs */
    unsigned                      internal:1;
    unsigned                      write:1;
    unsigned                      asking:1;
};


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

    ngx_queue_t                   lru;         /* cache entries, newest 1st */
    size_t                        cache_used;  /* bytes */
    ngx_uint_t                    cache_gen;
    unsigned                      cache_refused:1;
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
ngx_astralform_redis_op_t *ngx_astralform_redis_submit(ngx_pool_t *pool,
    ngx_log_t *log, ngx_astralform_redis_pt handler, void *data,
    ngx_uint_t argc, ngx_str_t *argv, ngx_astralform_redis_cid_t *cid,
    ngx_uint_t gen);
redisReply *ngx_astralform_redis_copy(redisReply *r);

/* ngx_astralform_redis_cache.c */
void ngx_astralform_redis_cache_init(void);
void ngx_astralform_redis_cache_node(ngx_astralform_redis_node_t *node);
ngx_int_t ngx_astralform_redis_cache_setup(
    ngx_astralform_redis_node_t *node);
void ngx_astralform_redis_cache_track(ngx_astralform_redis_node_t *node);
ngx_int_t ngx_astralform_redis_cache_caching(
    ngx_astralform_redis_node_t *node);
void ngx_astralform_redis_cache_lost(ngx_astralform_redis_node_t *node);
void ngx_astralform_redis_cache_flush(ngx_astralform_redis_node_t *node);
void ngx_astralform_redis_cache_reply(ngx_astralform_redis_op_t *op,
    redisReply *reply);
void ngx_astralform_redis_cache_free_cid(ngx_astralform_redis_cid_t *cid);

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
