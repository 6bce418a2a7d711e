/*
 * Redis on the worker's event loop: nodes, operations, redirections.
 *
 * Each node (a Redis, a Sentinel, a Cluster master) is one hiredis async
 * context per worker, pipelined: commands go out in order and replies come
 * back in order, so the operations in flight on a node are a FIFO queue.
 * hiredis 0.14 has no command timeouts: a watchdog timer per node follows
 * the oldest operation and, when it is overdue, drops the connection (a
 * Redis that does not answer the oldest command will not answer the newer
 * ones either); hiredis then calls every pending callback with a NULL
 * reply. Reconnection is lazy, after a backoff, so a dead Redis costs a
 * request one refused connect at most.
 *
 * Which node a command goes to is the topology's business
 * (ngx_astralform_redis_topology.c), by the slot of the command's key (see
 * the rule in ngx_astralform_redis.h). An operation keeps its formatted
 * command, so that the replies meaning "not here" are handled here, in one
 * place, and the caller only ever sees the final answer: MOVED and ASK
 * (Cluster) re-send it where Redis says; READONLY, LOADING, MASTERDOWN,
 * CLUSTERDOWN and TRYAGAIN (a command Redis did not run) park it until the
 * topology has found the master again, within the timeout. A command whose
 * connection broke in flight may have run: it is answered NULL (503),
 * never retried.
 *
 * With wait_replicas=N every write is followed, in the same pipeline, by
 * WAIT N timeout; its caller is answered once WAIT has answered.
 *
 * The sockets are wrapped in ngx_connection_t and use level-triggered
 * events: hiredis reads one buffer per call and would stall on an
 * edge-triggered event with more data pending.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <hiredis/async.h>

#include "ngx_astralform_redis.h"
#include "ngx_astralform_redis_internal.h"


#define NGX_ASTRALFORM_REDIS_MAX_ARGS     512
#define NGX_ASTRALFORM_REDIS_MAX_TRIES    5


static ngx_int_t ngx_astralform_redis_connect(
    ngx_astralform_redis_node_t *node);
static ngx_int_t ngx_astralform_redis_setup(ngx_astralform_redis_node_t *node);
static ngx_int_t ngx_astralform_redis_attach(redisAsyncContext *ac);
static void ngx_astralform_redis_add_read(void *privdata);
static void ngx_astralform_redis_del_read(void *privdata);
static void ngx_astralform_redis_add_write(void *privdata);
static void ngx_astralform_redis_del_write(void *privdata);
static void ngx_astralform_redis_cleanup(void *privdata);
static void ngx_astralform_redis_read_handler(ngx_event_t *ev);
static void ngx_astralform_redis_write_handler(ngx_event_t *ev);
static void ngx_astralform_redis_on_connect(const redisAsyncContext *ac,
    int status);
static void ngx_astralform_redis_on_disconnect(const redisAsyncContext *ac,
    int status);
static ngx_astralform_redis_op_t *ngx_astralform_redis_op(ngx_log_t *log,
    ngx_uint_t argc, ngx_str_t *argv);
static void ngx_astralform_redis_op_free(ngx_astralform_redis_op_t *op);
static ngx_int_t ngx_astralform_redis_put(ngx_astralform_redis_node_t *node,
    ngx_astralform_redis_op_t *op);
static ngx_int_t ngx_astralform_redis_queue(ngx_astralform_redis_node_t *node,
    ngx_astralform_redis_op_t *op);
static void ngx_astralform_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static ngx_int_t ngx_astralform_redis_redirect(ngx_astralform_redis_op_t *op,
    redisReply *reply);
static ngx_int_t ngx_astralform_redis_moved_to(ngx_astralform_redis_op_t *op,
    redisReply *reply, ngx_uint_t ask);
static void ngx_astralform_redis_park(ngx_astralform_redis_op_t *op);
static void ngx_astralform_redis_deliver(ngx_astralform_redis_op_t *op,
    redisReply *reply);
static void ngx_astralform_redis_wait_reply(redisReply *reply, void *data);
static void ngx_astralform_redis_auth_reply(redisReply *reply, void *data);
static void ngx_astralform_redis_select_reply(redisReply *reply, void *data);
static void ngx_astralform_redis_setup_reply(redisReply *reply,
    ngx_astralform_redis_node_t *node, const char *cmd);
static void ngx_astralform_redis_cancel(void *data);
static void ngx_astralform_redis_arm(ngx_astralform_redis_node_t *node);
static void ngx_astralform_redis_watchdog(ngx_event_t *ev);
static void ngx_astralform_redis_pending_timer(ngx_event_t *ev);
static void ngx_astralform_redis_arm_pending(void);
static void ngx_astralform_redis_drop(ngx_astralform_redis_node_t *node,
    const char *why);
static void ngx_astralform_redis_backoff(ngx_astralform_redis_node_t *node);
static ngx_uint_t ngx_astralform_redis_is_write(ngx_str_t *name);
static ngx_int_t ngx_astralform_redis_single(ngx_conf_t *cf,
    ngx_astralform_redis_conf_t *conf, ngx_str_t *value);
static ngx_int_t ngx_astralform_redis_addr(ngx_conf_t *cf,
    ngx_str_t *value, ngx_int_t default_port,
    ngx_astralform_redis_addr_t *addr);
static ngx_int_t ngx_astralform_redis_addrs(ngx_conf_t *cf,
    ngx_astralform_redis_conf_t *conf, ngx_str_t *list,
    ngx_int_t default_port);
static ngx_int_t ngx_astralform_redis_secret_file(ngx_conf_t *cf,
    char *what, ngx_str_t *value, ngx_str_t *out);


ngx_astralform_redis_worker_t  ngx_astralform_rw;


/* commands that never write: no WAIT after them */
static ngx_str_t  ngx_astralform_redis_reads[] = {
    ngx_string("GET"), ngx_string("HGET"), ngx_string("HGETALL"),
    ngx_string("HMGET"), ngx_string("HEXISTS"), ngx_string("HLEN"),
    ngx_string("HKEYS"), ngx_string("HVALS"), ngx_string("HSCAN"),
    ngx_string("EXISTS"), ngx_string("TTL"), ngx_string("PTTL"),
    ngx_string("TYPE"), ngx_string("MGET"), ngx_string("STRLEN"),
    ngx_string("SMEMBERS"), ngx_string("SISMEMBER"), ngx_string("SCARD"),
    ngx_string("SSCAN"), ngx_string("ZRANGE"), ngx_string("ZSCORE"),
    ngx_string("ZCARD"), ngx_string("ZSCAN"), ngx_string("LRANGE"),
    ngx_string("LLEN"), ngx_string("XRANGE"), ngx_string("XLEN"),
    ngx_string("SCAN"), ngx_string("PING"), ngx_string("ROLE"),
    ngx_string("ECHO"), ngx_string("TIME"), ngx_string("INFO"),
    ngx_string("EVAL_RO"), ngx_string("EVALSHA_RO"), ngx_string("FCALL_RO"),
    ngx_null_string
};


ngx_int_t
ngx_astralform_redis_init_process(ngx_cycle_t *cycle,
    ngx_astralform_redis_conf_t *conf)
{
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    ngx_memzero(rw, sizeof(ngx_astralform_redis_worker_t));

    rw->conf = conf;
    rw->log = cycle->log;
    rw->discover_backoff = NGX_ASTRALFORM_REDIS_BACKOFF_MIN;
    ngx_queue_init(&rw->pending);
    ngx_astralform_redis_cache_init();

    if (ngx_array_init(&rw->nodes, cycle->pool, 8,
                       sizeof(ngx_astralform_redis_node_t *))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    rw->dummy.fd = (ngx_socket_t) -1;
    rw->pending_ev.handler = ngx_astralform_redis_pending_timer;
    rw->pending_ev.data = &rw->dummy;
    rw->pending_ev.log = cycle->log;
    rw->pending_ev.cancelable = 1;

    return ngx_astralform_redis_topology_init(cycle);
}


void
ngx_astralform_redis_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                      i;
    ngx_queue_t                    *q;
    redisAsyncContext              *ac;
    ngx_astralform_redis_op_t      *op;
    ngx_astralform_redis_node_t   **node;
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    if (rw->conf == NULL) {
        return;
    }

    while (!ngx_queue_empty(&rw->pending)) {
        q = ngx_queue_head(&rw->pending);
        ngx_queue_remove(q);
        op = ngx_queue_data(q, ngx_astralform_redis_op_t, queue);
        ngx_astralform_redis_deliver(op, NULL);
    }

    if (rw->pending_ev.timer_set) {
        ngx_del_timer(&rw->pending_ev);
    }

    if (rw->discover_ev.timer_set) {
        ngx_del_timer(&rw->discover_ev);
    }

    node = rw->nodes.elts;

    for (i = 0; i < rw->nodes.nelts; i++) {
        if (node[i]->watchdog.timer_set) {
            ngx_del_timer(&node[i]->watchdog);
        }

        ac = node[i]->ac;

        if (ac != NULL) {
            node[i]->ac = NULL;
            redisAsyncFree(ac);
        }
    }

    rw->conf = NULL;
}


ngx_uint_t
ngx_astralform_redis_is_up(void)
{
    ngx_astralform_redis_node_t  *node;

    node = ngx_astralform_rw.conf ? ngx_astralform_redis_route(-1) : NULL;

    return node != NULL && node->ac != NULL && node->connected;
}


ngx_astralform_redis_op_t *
ngx_astralform_redis_send(ngx_pool_t *pool, ngx_log_t *log,
    ngx_astralform_redis_pt handler, void *data, ngx_uint_t argc,
    ngx_str_t *argv)
{
    return ngx_astralform_redis_submit(pool, log, handler, data, argc, argv,
                                       NULL, 0);
}


/*
 * With cid, a read the cache waits for: "CLIENT CACHING yes" goes right
 * before it, so Redis tracks its key. The op owns cid.
 */
ngx_astralform_redis_op_t *
ngx_astralform_redis_submit(ngx_pool_t *pool, ngx_log_t *log,
    ngx_astralform_redis_pt handler, void *data, ngx_uint_t argc,
    ngx_str_t *argv, ngx_astralform_redis_cid_t *cid, ngx_uint_t gen)
{
    ngx_pool_cleanup_t             *cln;
    ngx_astralform_redis_op_t      *op;
    ngx_astralform_redis_node_t    *node;
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    if (rw->conf == NULL || argc == 0) {
        goto failed;
    }

    cln = NULL;

    if (pool != NULL) {
        cln = ngx_pool_cleanup_add(pool, 0);
        if (cln == NULL) {
            goto failed;
        }
    }

    op = ngx_astralform_redis_op(log, argc, argv);
    if (op == NULL) {
        goto failed;
    }

    op->handler = handler;
    op->data = data;
    op->slot = (rw->conf->mode == NGX_ASTRALFORM_REDIS_CLUSTER)
               ? ngx_astralform_redis_keyslot(argc, argv) : -1;
    op->write = ngx_astralform_redis_is_write(&argv[0]);

    node = ngx_astralform_redis_route(op->slot);

    if (node == NULL) {
        if (!rw->discovering) {
            /* nothing known, nothing being found: answer at once */
            ngx_astralform_redis_discover();
        }

        if (!rw->discovering) {
            ngx_astralform_redis_op_free(op);
            goto failed;
        }

        ngx_astralform_redis_park(op);

    } else {
        if (cid != NULL
            && ngx_astralform_redis_node_ready(node) == NGX_OK
            && ngx_astralform_redis_cache_caching(node) == NGX_OK)
        {
            op->cache = cid;
            op->cache_gen = gen;
            cid = NULL;
        }

        if (ngx_astralform_redis_put(node, op) != NGX_OK) {
            ngx_astralform_redis_op_free(op);
            goto failed;
        }
    }

    if (cid != NULL) {
        ngx_astralform_redis_cache_free_cid(cid);
    }

    op->cln = cln;

    if (cln != NULL) {
        cln->handler = ngx_astralform_redis_cancel;
        cln->data = op;
    }

    return op;

failed:

    if (cid != NULL) {
        ngx_astralform_redis_cache_free_cid(cid);
    }

    return NULL;
}


/* a command of the topology or of the connection setup, to one node */
ngx_astralform_redis_op_t *
ngx_astralform_redis_internal(ngx_astralform_redis_node_t *node,
    ngx_astralform_redis_pt handler, void *data, ngx_uint_t argc,
    ngx_str_t *argv)
{
    ngx_astralform_redis_op_t  *op;

    if (ngx_astralform_redis_node_ready(node) != NGX_OK) {
        return NULL;
    }

    op = ngx_astralform_redis_op(ngx_astralform_rw.log, argc, argv);
    if (op == NULL) {
        return NULL;
    }

    op->handler = handler;
    op->data = data;
    op->slot = -1;
    op->internal = 1;

    if (ngx_astralform_redis_queue(node, op) != NGX_OK) {
        ngx_astralform_redis_op_free(op);
        return NULL;
    }

    return op;
}


/*
 * The operation and its command in RESP, in one allocation: formatting
 * here is a few copies, hiredis' redisFormatCommandArgv() ~2.8k
 * instructions a command.
 */

static ngx_astralform_redis_op_t *
ngx_astralform_redis_op(ngx_log_t *log, ngx_uint_t argc, ngx_str_t *argv)
{
    u_char                     *p;
    size_t                      len;
    ngx_uint_t                  i;
    ngx_astralform_redis_op_t  *op;

    if (argc == 0 || argc > NGX_ASTRALFORM_REDIS_MAX_ARGS) {
        return NULL;
    }

    /* *<argc>\r\n, then $<len>\r\n<arg>\r\n each */
    len = 1 + NGX_INT_T_LEN + 2;
    for (i = 0; i < argc; i++) {
        len += 1 + NGX_SIZE_T_LEN + 2 + argv[i].len + 2;
    }

    if (len > NGX_MAX_INT32_VALUE) {
        return NULL;
    }

    op = ngx_alloc(sizeof(ngx_astralform_redis_op_t) + len, log);
    if (op == NULL) {
        return NULL;
    }

    ngx_memzero(op, sizeof(ngx_astralform_redis_op_t));

    op->cmd = (char *) (op + 1);
    p = ngx_sprintf((u_char *) op->cmd, "*%ui\r\n", argc);

    for (i = 0; i < argc; i++) {
        p = ngx_sprintf(p, "$%uz\r\n", argv[i].len);
        p = ngx_cpymem(p, argv[i].data, argv[i].len);
        *p++ = CR; *p++ = LF;
    }

    op->len = (int) (p - (u_char *) op->cmd);

    ngx_cpystrn(op->name, argv[0].data,
                ngx_min(argv[0].len + 1, sizeof(op->name)));

    return op;
}


static void
ngx_astralform_redis_op_free(ngx_astralform_redis_op_t *op)
{
    if (op->held != NULL) {
        freeReplyObject(op->held);
    }

    if (op->cache != NULL) {
        ngx_astralform_redis_cache_free_cid(op->cache);
    }

    ngx_free(op);
}


/* an operation of a caller to the node that has its key */
static ngx_int_t
ngx_astralform_redis_put(ngx_astralform_redis_node_t *node,
    ngx_astralform_redis_op_t *op)
{
    u_char                         *p;
    ngx_str_t                       argv[3];
    ngx_astralform_redis_op_t      *w;
    ngx_astralform_redis_conf_t    *conf = ngx_astralform_rw.conf;
    u_char                          n[NGX_INT_T_LEN], t[NGX_INT_T_LEN];

    if (ngx_astralform_redis_node_ready(node) != NGX_OK) {
        return NGX_ERROR;
    }

    if (op->asking) {
        op->asking = 0;
        ngx_str_set(&argv[0], "ASKING");

        if (ngx_astralform_redis_internal(node, NULL, NULL, 1, argv)
            == NULL)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_astralform_redis_queue(node, op) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!op->write || conf->wait_replicas == 0) {
        return NGX_OK;
    }

    ngx_str_set(&argv[0], "WAIT");
    p = ngx_sprintf(n, "%ui", conf->wait_replicas);
    argv[1].data = n;
    argv[1].len = p - n;
    p = ngx_sprintf(t, "%M", conf->wait_timeout);
    argv[2].data = t;
    argv[2].len = p - t;

    w = ngx_astralform_redis_internal(node, ngx_astralform_redis_wait_reply,
                                      op, 3, argv);

    /* without its WAIT, the write is answered as it is */
    op->wait = w;

    return NGX_OK;
}


static ngx_int_t
ngx_astralform_redis_queue(ngx_astralform_redis_node_t *node,
    ngx_astralform_redis_op_t *op)
{
    if (redisAsyncFormattedCommand(node->ac, ngx_astralform_redis_reply, op,
                                   op->cmd, op->len)
        != REDIS_OK)
    {
        return NGX_ERROR;
    }

    op->node = node;
    op->deadline = ngx_current_msec + ngx_astralform_rw.conf->timeout;

    ngx_queue_insert_tail(&node->inflight, &op->queue);

    if (!node->watchdog.timer_set) {
        ngx_astralform_redis_arm(node);
    }

    return NGX_OK;
}


/* the connection to node is there or on its way; not while backing off */
ngx_int_t
ngx_astralform_redis_node_ready(ngx_astralform_redis_node_t *node)
{
    if (node->ac != NULL) {
        return node->closing ? NGX_ERROR : NGX_OK;
    }

    if ((ngx_msec_int_t) (ngx_current_msec - node->retry_at) < 0) {
        return NGX_ERROR;
    }

    return ngx_astralform_redis_connect(node);
}


/* the node this worker talks to at host:port for that kind of use */
ngx_astralform_redis_node_t *
ngx_astralform_redis_node(u_char *host, size_t len, ngx_int_t port,
    ngx_uint_t kind)
{
    u_char                          *p;
    ngx_uint_t                       i;
    ngx_astralform_redis_node_t     *node, **np;
    ngx_astralform_redis_worker_t   *rw = &ngx_astralform_rw;

    if (len >= NGX_SOCKADDR_STRLEN) {
        return NULL;
    }

    np = rw->nodes.elts;

    for (i = 0; i < rw->nodes.nelts; i++) {
        node = np[i];

        if (node->kind == kind && node->port == port
            && ngx_strlen(node->host) == len
            && ngx_strncmp(node->host, host, len) == 0)
        {
            return node;
        }
    }

    node = ngx_pcalloc(ngx_cycle->pool, sizeof(ngx_astralform_redis_node_t));
    if (node == NULL) {
        return NULL;
    }

    np = ngx_array_push(&rw->nodes);
    if (np == NULL) {
        return NULL;
    }

    *np = node;

    ngx_memcpy(node->host, host, len);
    node->port = port;
    node->kind = kind;
    node->backoff = NGX_ASTRALFORM_REDIS_BACKOFF_MIN;
    ngx_queue_init(&node->inflight);

    node->name.data = ngx_pnalloc(ngx_cycle->pool, len + NGX_INT_T_LEN + 3);
    if (node->name.data == NULL) {
        return NULL;
    }

    if (port == 0) {
        p = ngx_sprintf(node->name.data, "unix:%*s", len, host);

    } else if (ngx_strlchr(host, host + len, ':') != NULL) {
        p = ngx_sprintf(node->name.data, "[%*s]:%i", len, host, port);

    } else {
        p = ngx_sprintf(node->name.data, "%*s:%i", len, host, port);
    }

    node->name.len = p - node->name.data;

    node->dummy.fd = (ngx_socket_t) -1;
    node->dummy.data = node;
    node->watchdog.handler = ngx_astralform_redis_watchdog;
    node->watchdog.data = &node->dummy;
    node->watchdog.log = rw->log;
    node->watchdog.cancelable = 1;

    ngx_astralform_redis_cache_node(node);

    return node;
}


/* no more commands to node; those in flight are still answered */
void
ngx_astralform_redis_node_close(ngx_astralform_redis_node_t *node)
{
    if (node->ac != NULL && !node->closing) {
        node->closing = 1;
        redisAsyncDisconnect(node->ac);
    }
}


/* host came from a reply: connect only to an address, never look it up */
ngx_uint_t
ngx_astralform_redis_numeric(u_char *host, size_t len)
{
#if (NGX_HAVE_INET6)
    u_char  addr6[16];
#endif

    if (len == 0) {
        return 0;
    }

    if (ngx_inet_addr(host, len) != INADDR_NONE) {
        return 1;
    }

#if (NGX_HAVE_INET6)
    if (ngx_inet6_addr(host, len, addr6) == NGX_OK) {
        return 1;
    }
#endif

    return 0;
}


static ngx_int_t
ngx_astralform_redis_connect(ngx_astralform_redis_node_t *node)
{
    redisAsyncContext              *ac;
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    /* node->host is numeric: no name lookup happens here */
    if (node->port == 0) {
        ac = redisAsyncConnectUnix((char *) node->host);

    } else {
        ac = redisAsyncConnect((char *) node->host, (int) node->port);
    }

    if (ac == NULL || ac->err) {
        ngx_log_error(NGX_LOG_ERR, rw->log, 0,
                      "astralform: could not connect to redis \"%V\": %s",
                      &node->name, ac ? ac->errstr : "out of memory");
        if (ac != NULL) {
            redisAsyncFree(ac);
        }
        ngx_astralform_redis_backoff(node);
        return NGX_ERROR;
    }

    ac->data = node;

    if (ngx_astralform_redis_attach(ac) != NGX_OK) {
        redisAsyncFree(ac);
        ngx_astralform_redis_backoff(node);
        return NGX_ERROR;
    }

    redisAsyncSetConnectCallback(ac, ngx_astralform_redis_on_connect);
    redisAsyncSetDisconnectCallback(ac, ngx_astralform_redis_on_disconnect);

    node->ac = ac;
    node->closing = 0;

    /* a unix socket may connect at once; hiredis then never calls back */
    node->connected = (ac->c.flags & REDIS_CONNECTED) ? 1 : 0;
    node->connect_deadline = ngx_current_msec + rw->conf->connect_timeout;
    ngx_astralform_redis_arm(node);

    if (ngx_astralform_redis_setup(node) != NGX_OK) {
        ngx_astralform_redis_drop(node, "could not be set up");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* queued ahead of every other command: hiredis keeps the order */
static ngx_int_t
ngx_astralform_redis_setup(ngx_astralform_redis_node_t *node)
{
    u_char                       *p, db[NGX_INT_T_LEN];
    ngx_str_t                     argv[2];
    ngx_astralform_redis_conf_t  *conf = ngx_astralform_rw.conf;

    argv[1] = (node->kind == NGX_ASTRALFORM_REDIS_DATA
               || node->kind == NGX_ASTRALFORM_REDIS_TRACKER)
              ? conf->password : conf->sentinel_password;

    if (argv[1].len) {
        ngx_str_set(&argv[0], "AUTH");

        if (ngx_astralform_redis_internal(node,
                                          ngx_astralform_redis_auth_reply,
                                          node, 2, argv)
            == NULL)
        {
            return NGX_ERROR;
        }
    }

    if (conf->db && node->kind == NGX_ASTRALFORM_REDIS_DATA) {
        ngx_str_set(&argv[0], "SELECT");
        p = ngx_sprintf(db, "%i", conf->db);
        argv[1].data = db;
        argv[1].len = p - db;

        if (ngx_astralform_redis_internal(node,
                                          ngx_astralform_redis_select_reply,
                                          node, 2, argv)
            == NULL)
        {
            return NGX_ERROR;
        }
    }

    return ngx_astralform_redis_cache_setup(node);
}


static ngx_int_t
ngx_astralform_redis_attach(redisAsyncContext *ac)
{
    ngx_connection_t  *c;

    c = ngx_get_connection(ac->c.fd, ngx_astralform_rw.log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = ac;
    c->read->handler = ngx_astralform_redis_read_handler;
    c->write->handler = ngx_astralform_redis_write_handler;
    c->read->log = c->log;
    c->write->log = c->log;

    ac->ev.data = c;
    ac->ev.addRead = ngx_astralform_redis_add_read;
    ac->ev.delRead = ngx_astralform_redis_del_read;
    ac->ev.addWrite = ngx_astralform_redis_add_write;
    ac->ev.delWrite = ngx_astralform_redis_del_write;
    ac->ev.cleanup = ngx_astralform_redis_cleanup;

    return NGX_OK;
}


static void
ngx_astralform_redis_add_read(void *privdata)
{
    ngx_connection_t  *c = privdata;

    if (!c->read->active) {
        (void) ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT);
    }
}


static void
ngx_astralform_redis_del_read(void *privdata)
{
    ngx_connection_t  *c = privdata;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }
}


/*
 * A connected socket is nearly always writable: rather than wait a loop
 * round for epoll to say so, flush once this round's events are handled,
 * so every command queued in the round goes out in one write. Only a
 * partial write (or a connect in progress) waits for writability.
 */
static void
ngx_astralform_redis_add_write(void *privdata)
{
    ngx_connection_t             *c = privdata;
    redisAsyncContext            *ac = c->data;
    ngx_astralform_redis_node_t  *node = ac->data;

    if ((ac->c.flags & REDIS_CONNECTED) && !node->flushing) {
        if (!c->write->posted) {
            ngx_post_event(c->write, &ngx_posted_events);
        }
        return;
    }

    if (!c->write->active) {
        (void) ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);
    }
}


static void
ngx_astralform_redis_del_write(void *privdata)
{
    ngx_connection_t             *c = privdata;
    redisAsyncContext            *ac = c->data;
    ngx_astralform_redis_node_t  *node = ac->data;

    if (c->write->posted && !node->flushing) {
        ngx_delete_posted_event(c->write);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }
}


/*
 * hiredis is about to close the fd and free the context: give the nginx
 * connection back without closing the fd (hiredis owns it), and let the
 * topology know, later (hiredis is still tearing down).
 */
static void
ngx_astralform_redis_cleanup(void *privdata)
{
    ngx_connection_t             *c = privdata;
    redisAsyncContext            *ac = c->data;
    ngx_astralform_redis_node_t  *node = ac->data;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;

    if (node->ac == ac) {
        node->ac = NULL;
        node->connected = 0;
        node->closing = 0;

        if (node->watchdog.timer_set) {
            ngx_del_timer(&node->watchdog);
        }

        ngx_astralform_redis_cache_lost(node);

        if (ngx_astralform_rw.conf != NULL) {
            ngx_astralform_redis_lost(node);
        }
    }
}


static void
ngx_astralform_redis_read_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c = ev->data;

    redisAsyncHandleRead(c->data);
}


static void
ngx_astralform_redis_write_handler(ngx_event_t *ev)
{
    ngx_connection_t             *c = ev->data;
    redisAsyncContext            *ac = c->data;
    ngx_astralform_redis_node_t  *node = ac->data;

    node->flushing = 1;
    redisAsyncHandleWrite(ac);
    node->flushing = 0;
}


static void
ngx_astralform_redis_on_connect(const redisAsyncContext *ac, int status)
{
    ngx_astralform_redis_node_t  *node = ac->data;

    if (status != REDIS_OK) {
        ngx_log_error(NGX_LOG_ERR, ngx_astralform_rw.log, 0,
                      "astralform: could not connect to redis \"%V\": %s",
                      &node->name, ac->errstr);
        ngx_astralform_redis_backoff(node);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_astralform_rw.log, 0,
                   "astralform: connected to redis \"%V\"", &node->name);

    if (node->ac == ac) {
        node->connected = 1;
        node->backoff = NGX_ASTRALFORM_REDIS_BACKOFF_MIN;
        ngx_astralform_redis_arm(node);
    }
}


static void
ngx_astralform_redis_on_disconnect(const redisAsyncContext *ac, int status)
{
    ngx_astralform_redis_node_t  *node = ac->data;

    if (status != REDIS_OK) {
        ngx_log_error(NGX_LOG_ERR, ngx_astralform_rw.log, 0,
                      "astralform: redis \"%V\" connection lost: %s",
                      &node->name, ac->errstr);
        ngx_astralform_redis_backoff(node);
    }
}


static void
ngx_astralform_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    redisReply                 *reply = r;
    ngx_astralform_redis_op_t  *op = privdata;

    ngx_queue_remove(&op->queue);
    ngx_astralform_redis_arm(op->node);

    if (op->cache != NULL) {
        ngx_astralform_redis_cache_reply(op, reply);
    }

    if (op->internal || op->handler == NULL) {
        ngx_astralform_redis_deliver(op, reply);
        return;
    }

    if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        if (ngx_astralform_redis_redirect(op, reply) == NGX_OK) {
            return;
        }

        /* the text Redis gave, never the command's arguments */
        ngx_log_error(NGX_LOG_ERR, ngx_astralform_rw.log, 0,
                      "astralform: redis \"%V\" answered %s with an error: "
                      "%*s", &op->node->name, op->name,
                      ngx_min(reply->len, 256), reply->str);

    } else if (reply != NULL && op->wait != NULL) {
        op->held = ngx_astralform_redis_copy(reply);

        if (op->held != NULL) {
            return;
        }
    }

    ngx_astralform_redis_deliver(op, reply);
}


/* NGX_OK: op is on its way again (re-sent or parked) */
static ngx_int_t
ngx_astralform_redis_redirect(ngx_astralform_redis_op_t *op,
    redisReply *reply)
{
    u_char                       *s;
    size_t                        len;
    ngx_uint_t                    mode;
    ngx_astralform_redis_node_t  *node;

    s = (u_char *) reply->str;
    len = reply->len;
    mode = ngx_astralform_rw.conf->mode;
    node = op->node;

    if (mode == NGX_ASTRALFORM_REDIS_SINGLE
        || op->tries++ >= NGX_ASTRALFORM_REDIS_MAX_TRIES)
    {
        return NGX_DECLINED;
    }

    if (mode == NGX_ASTRALFORM_REDIS_CLUSTER) {
        if (len > 6 && ngx_strncmp(s, "MOVED ", 6) == 0) {
            return ngx_astralform_redis_moved_to(op, reply, 0);
        }

        if (len > 4 && ngx_strncmp(s, "ASK ", 4) == 0) {
            return ngx_astralform_redis_moved_to(op, reply, 1);
        }
    }

    if (!((len >= 8 && ngx_strncmp(s, "READONLY", 8) == 0)
          || (len >= 7 && ngx_strncmp(s, "LOADING", 7) == 0)
          || (len >= 10 && ngx_strncmp(s, "MASTERDOWN", 10) == 0)
          || (len >= 11 && ngx_strncmp(s, "CLUSTERDOWN", 11) == 0)
          || (len >= 8 && ngx_strncmp(s, "TRYAGAIN", 8) == 0)))
    {
        return NGX_DECLINED;
    }

    /* Redis did not run it: find the master again, then re-send */

    ngx_log_error(NGX_LOG_WARN, ngx_astralform_rw.log, 0,
                  "astralform: redis \"%V\" answered %s with \"%*s\", "
                  "looking for the master again", &node->name, op->name,
                  ngx_min(len, 128), s);

    if (op->wait != NULL) {
        op->wait->data = NULL;
        op->wait = NULL;
    }

    if (mode == NGX_ASTRALFORM_REDIS_SENTINEL
        && ngx_astralform_rw.master == node)
    {
        ngx_astralform_rw.master = NULL;
        ngx_astralform_redis_node_close(node);
    }

    ngx_astralform_redis_park(op);
    ngx_astralform_redis_discover();

    return NGX_OK;
}


/* "MOVED 3999 127.0.0.1:6381" or "ASK 3999 127.0.0.1:6381" */
static ngx_int_t
ngx_astralform_redis_moved_to(ngx_astralform_redis_op_t *op,
    redisReply *reply, ngx_uint_t ask)
{
    u_char                       *p, *last, *host, *colon;
    ngx_int_t                     slot, port;
    ngx_astralform_redis_node_t  *node;

    p = (u_char *) reply->str + (ask ? 4 : 6);
    last = (u_char *) reply->str + reply->len;

    host = ngx_strlchr(p, last, ' ');
    if (host == NULL) {
        return NGX_DECLINED;
    }

    slot = ngx_atoi(p, host - p);
    host++;

    for (colon = last - 1; colon > host && *colon != ':'; colon--) {
        /* void */
    }

    port = ngx_atoi(colon + 1, last - colon - 1);

    if (slot == NGX_ERROR || slot >= NGX_ASTRALFORM_REDIS_SLOTS
        || port == NGX_ERROR || port < 1 || port > 65535
        || !ngx_astralform_redis_numeric(host, colon - host))
    {
        return NGX_DECLINED;
    }

    node = ngx_astralform_redis_node(host, colon - host, port,
                                     NGX_ASTRALFORM_REDIS_DATA);
    if (node == NULL) {
        return NGX_DECLINED;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_astralform_rw.log, 0,
                   "astralform: redis slot %i %s to \"%V\"", slot,
                   ask ? "asked" : "moved", &node->name);

    if (op->wait != NULL) {
        op->wait->data = NULL;
        op->wait = NULL;
    }

    if (!ask) {
        ngx_astralform_redis_moved(slot, node);
    }

    op->asking = ask;

    if (ngx_astralform_redis_put(node, op) != NGX_OK) {
        ngx_astralform_redis_deliver(op, NULL);
    }

    return NGX_OK;
}


static void
ngx_astralform_redis_park(ngx_astralform_redis_op_t *op)
{
    op->node = NULL;
    op->deadline = ngx_current_msec + ngx_astralform_rw.conf->timeout;
    ngx_queue_insert_tail(&ngx_astralform_rw.pending, &op->queue);

    if (!ngx_astralform_rw.pending_ev.timer_set) {
        ngx_astralform_redis_arm_pending();
    }
}


/* the topology knows more: the parked operations go where they belong */
void
ngx_astralform_redis_flush_pending(void)
{
    ngx_queue_t                     parked, *q;
    ngx_astralform_redis_op_t      *op;
    ngx_astralform_redis_node_t    *node;
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    if (ngx_queue_empty(&rw->pending)) {
        return;
    }

    ngx_queue_init(&parked);
    ngx_queue_add(&parked, &rw->pending);
    ngx_queue_init(&rw->pending);

    while (!ngx_queue_empty(&parked)) {
        q = ngx_queue_head(&parked);
        ngx_queue_remove(q);
        op = ngx_queue_data(q, ngx_astralform_redis_op_t, queue);

        if (op->handler == NULL) {
            ngx_astralform_redis_op_free(op);
            continue;
        }

        node = ngx_astralform_redis_route(op->slot);

        if (node == NULL) {
            ngx_queue_insert_tail(&rw->pending, &op->queue);
            continue;
        }

        if (ngx_astralform_redis_put(node, op) != NGX_OK) {
            ngx_astralform_redis_deliver(op, NULL);
        }
    }

    ngx_astralform_redis_arm_pending();
}


/* the final answer: to the caller (unless cancelled), then op is freed */
static void
ngx_astralform_redis_deliver(ngx_astralform_redis_op_t *op,
    redisReply *reply)
{
    void                     *data;
    ngx_astralform_redis_pt   handler;

    if (op->cln != NULL) {
        op->cln->handler = NULL;
    }

    if (op->wait != NULL) {
        op->wait->data = NULL;
    }

    handler = op->handler;
    data = op->data;

    if (handler != NULL) {
        handler(reply, data);
    }

    ngx_astralform_redis_op_free(op);
}


/*
 * Fewer replicas than asked for: the write is on the master only, and a
 * failover now would lose it. It is answered as failed (NULL, 503), so no
 * caller reports as stored what may vanish; the caller's retry rewrites it.
 */
static void
ngx_astralform_redis_wait_reply(redisReply *reply, void *data)
{
    ngx_astralform_redis_op_t  *op = data;

    ngx_astralform_redis_conf_t  *conf = ngx_astralform_rw.conf;

    if (op == NULL) {
        return;                      /* its write was answered already */
    }

    op->wait = NULL;

    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER
        && reply->integer >= (long long) conf->wait_replicas)
    {
        ngx_astralform_redis_deliver(op, op->held);
        return;
    }

    ngx_log_error(NGX_LOG_WARN, ngx_astralform_rw.log, 0,
                  "astralform: redis \"%V\": %s reached %L of %ui replicas "
                  "within %M ms, answered as failed", &op->node->name,
                  op->name,
                  (reply && reply->type == REDIS_REPLY_INTEGER)
                  ? (int64_t) reply->integer : (int64_t) 0,
                  conf->wait_replicas, conf->wait_timeout);

    ngx_astralform_redis_deliver(op, NULL);
}


/* hiredis frees a reply after its callback: WAIT and the cache keep it */
redisReply *
ngx_astralform_redis_copy(redisReply *r)
{
    size_t       i;
    redisReply  *c;

    c = ngx_calloc(sizeof(redisReply), ngx_astralform_rw.log);
    if (c == NULL) {
        return NULL;
    }

    c->type = r->type;
    c->integer = r->integer;

    if (r->str != NULL) {
        c->str = ngx_alloc(r->len + 1, ngx_astralform_rw.log);
        if (c->str == NULL) {
            freeReplyObject(c);
            return NULL;
        }

        ngx_memcpy(c->str, r->str, r->len);
        c->str[r->len] = '\0';
        c->len = r->len;
    }

    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
        c->element = ngx_calloc(r->elements * sizeof(redisReply *),
                                ngx_astralform_rw.log);
        if (c->element == NULL) {
            freeReplyObject(c);
            return NULL;
        }

        c->elements = r->elements;

        for (i = 0; i < r->elements; i++) {
            c->element[i] = ngx_astralform_redis_copy(r->element[i]);
            if (c->element[i] == NULL) {
                freeReplyObject(c);
                return NULL;
            }
        }
    }

    return c;
}


static void
ngx_astralform_redis_auth_reply(redisReply *reply, void *data)
{
    ngx_astralform_redis_setup_reply(reply, data, "AUTH");
}


static void
ngx_astralform_redis_select_reply(redisReply *reply, void *data)
{
    ngx_astralform_redis_setup_reply(reply, data, "SELECT");
}


static void
ngx_astralform_redis_setup_reply(redisReply *reply,
    ngx_astralform_redis_node_t *node, const char *cmd)
{
    if (reply != NULL && reply->type != REDIS_REPLY_ERROR) {
        return;
    }

    ngx_log_error(NGX_LOG_ERR, ngx_astralform_rw.log, 0,
                  "astralform: redis \"%V\" refused %s: %s", &node->name,
                  cmd, reply ? reply->str : "no reply");

    if (reply != NULL) {
        ngx_astralform_redis_node_close(node);
        ngx_astralform_redis_backoff(node);
    }
}


/* the pool the op was sent for is going away: never call it back */
static void
ngx_astralform_redis_cancel(void *data)
{
    ngx_astralform_redis_op_t  *op = data;

    op->handler = NULL;
    op->cln = NULL;
}


static void
ngx_astralform_redis_arm(ngx_astralform_redis_node_t *node)
{
    ngx_msec_t                  deadline;
    ngx_msec_int_t              left;
    ngx_astralform_redis_op_t  *op;

    if (node->ac != NULL && !node->connected) {
        deadline = node->connect_deadline;

    } else if (!ngx_queue_empty(&node->inflight)) {
        op = ngx_queue_data(ngx_queue_head(&node->inflight),
                            ngx_astralform_redis_op_t, queue);
        deadline = op->deadline;

    } else {
        if (node->watchdog.timer_set) {
            ngx_del_timer(&node->watchdog);
        }
        return;
    }

    /* commands in flight hold a graceful shutdown (reload, quit) */
    node->watchdog.cancelable = ngx_queue_empty(&node->inflight) ? 1 : 0;

    left = (ngx_msec_int_t) (deadline - ngx_current_msec);
    ngx_add_timer(&node->watchdog, left > 0 ? (ngx_msec_t) left : 1);
}


static void
ngx_astralform_redis_watchdog(ngx_event_t *ev)
{
    ngx_connection_t             *c = ev->data;
    ngx_astralform_redis_op_t    *op;
    ngx_astralform_redis_node_t  *node = c->data;

    if (node->ac == NULL) {
        return;
    }

    if (!node->connected) {
        ngx_astralform_redis_drop(node, "connect timed out");
        return;
    }

    if (ngx_queue_empty(&node->inflight)) {
        return;
    }

    op = ngx_queue_data(ngx_queue_head(&node->inflight),
                        ngx_astralform_redis_op_t, queue);

    if ((ngx_msec_int_t) (op->deadline - ngx_current_msec) > 0) {
        ngx_astralform_redis_arm(node);
        return;
    }

    ngx_astralform_redis_drop(node, "timed out");
}


static void
ngx_astralform_redis_arm_pending(void)
{
    ngx_msec_int_t                  left;
    ngx_astralform_redis_op_t      *op;
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    if (ngx_queue_empty(&rw->pending)) {
        if (rw->pending_ev.timer_set) {
            ngx_del_timer(&rw->pending_ev);
        }
        return;
    }

    op = ngx_queue_data(ngx_queue_head(&rw->pending),
                        ngx_astralform_redis_op_t, queue);

    rw->pending_ev.cancelable = 0;

    left = (ngx_msec_int_t) (op->deadline - ngx_current_msec);
    ngx_add_timer(&rw->pending_ev, left > 0 ? (ngx_msec_t) left : 1);
}


/* parked operations whose master was not found in time: NULL (503) */
static void
ngx_astralform_redis_pending_timer(ngx_event_t *ev)
{
    ngx_queue_t                    *q;
    ngx_uint_t                      n;
    ngx_astralform_redis_op_t      *op;
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    n = 0;

    while (!ngx_queue_empty(&rw->pending)) {
        q = ngx_queue_head(&rw->pending);
        op = ngx_queue_data(q, ngx_astralform_redis_op_t, queue);

        if ((ngx_msec_int_t) (op->deadline - ngx_current_msec) > 0) {
            break;
        }

        ngx_queue_remove(q);
        n += (op->handler != NULL);
        ngx_astralform_redis_deliver(op, NULL);
    }

    if (n) {
        ngx_log_error(NGX_LOG_ERR, rw->log, 0,
                      "astralform: redis \"%V\": no master found within "
                      "%M ms, %ui commands failed", &rw->conf->addr,
                      rw->conf->timeout, n);
    }

    ngx_astralform_redis_arm_pending();
}


/* fails every operation in flight on node with a NULL reply */
static void
ngx_astralform_redis_drop(ngx_astralform_redis_node_t *node,
    const char *why)
{
    redisAsyncContext  *ac;

    ngx_log_error(NGX_LOG_ERR, ngx_astralform_rw.log, 0,
                  "astralform: redis \"%V\" %s", &node->name, why);

    ac = node->ac;
    ngx_astralform_redis_backoff(node);

    if (ac != NULL) {
        redisAsyncFree(ac);
    }
}


static void
ngx_astralform_redis_backoff(ngx_astralform_redis_node_t *node)
{
    node->retry_at = ngx_current_msec + node->backoff;
    node->backoff = ngx_min(node->backoff * 2,
                            NGX_ASTRALFORM_REDIS_BACKOFF_MAX);
}


static ngx_uint_t
ngx_astralform_redis_is_write(ngx_str_t *name)
{
    ngx_str_t  *r;

    for (r = ngx_astralform_redis_reads; r->len; r++) {
        if (r->len == name->len
            && ngx_strncasecmp(r->data, name->data, name->len) == 0)
        {
            return 0;
        }
    }

    return 1;
}


const char *
ngx_astralform_redis_mode_name(void)
{
    static const char  *names[] = { "single", "sentinel", "cluster" };

    return names[ngx_astralform_rw.conf ? ngx_astralform_rw.conf->mode : 0];
}


char *
ngx_astralform_redis_parse(ngx_conf_t *cf, ngx_astralform_redis_conf_t *conf,
    ngx_str_t *value, ngx_uint_t n)
{
    ngx_str_t   v;
    ngx_int_t   k;
    ngx_uint_t  i;

    conf->addr = value[0];

    for (i = 0; i < n; i++) {
        v = value[i];

        if (ngx_strncmp(v.data, "sentinel=", 9) == 0
            || ngx_strncmp(v.data, "cluster=", 8) == 0)
        {
            if (conf->seeds != NULL) {
                goto invalid;
            }

            k = (v.data[0] == 's') ? 9 : 8;
            conf->mode = (k == 9) ? NGX_ASTRALFORM_REDIS_SENTINEL
                                  : NGX_ASTRALFORM_REDIS_CLUSTER;
            v.data += k;
            v.len -= k;

            if (ngx_astralform_redis_addrs(cf, conf, &v,
                                           (k == 9) ? 26379 : 6379)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

        } else if (ngx_strncmp(v.data, "master=", 7) == 0) {
            conf->master_name.data = v.data + 7;
            conf->master_name.len = v.len - 7;

            if (conf->master_name.len == 0) {
                goto invalid;
            }

        } else if (ngx_strncmp(v.data, "db=", 3) == 0) {
            conf->db = ngx_atoi(v.data + 3, v.len - 3);
            if (conf->db == NGX_ERROR) {
                goto invalid;
            }

        } else if (ngx_strncmp(v.data, "wait_replicas=", 14) == 0) {
            k = ngx_atoi(v.data + 14, v.len - 14);
            if (k == NGX_ERROR) {
                goto invalid;
            }
            conf->wait_replicas = k;

        } else if (ngx_strncmp(v.data, "wait_timeout=", 13) == 0) {
            v.data += 13;
            v.len -= 13;
            conf->wait_timeout = ngx_parse_time(&v, 0);
            if (conf->wait_timeout == (ngx_msec_t) NGX_ERROR
                || conf->wait_timeout == 0)
            {
                goto invalid;
            }

        } else if (ngx_strncmp(v.data, "connect_timeout=", 16) == 0) {
            v.data += 16;
            v.len -= 16;
            conf->connect_timeout = ngx_parse_time(&v, 0);
            if (conf->connect_timeout == (ngx_msec_t) NGX_ERROR) {
                goto invalid;
            }

        } else if (ngx_strncmp(v.data, "timeout=", 8) == 0) {
            v.data += 8;
            v.len -= 8;
            conf->timeout = ngx_parse_time(&v, 0);
            if (conf->timeout == (ngx_msec_t) NGX_ERROR) {
                goto invalid;
            }

        } else if (ngx_strncmp(v.data, "password_file=", 14) == 0) {
            v.data += 14;
            v.len -= 14;

            if (ngx_astralform_redis_secret_file(cf, "password_file", &v,
                                                 &conf->password)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

        } else if (ngx_strncmp(v.data, "sentinel_password_file=", 23) == 0) {
            v.data += 23;
            v.len -= 23;

            if (ngx_astralform_redis_secret_file(cf,
                                                 "sentinel_password_file", &v,
                                                 &conf->sentinel_password)
                != NGX_OK)
            {
                return NGX_CONF_ERROR;
            }

        } else if (i == 0) {
            if (v.len == 5 && ngx_strncmp(v.data, "unix:", 5) == 0) {
                return "has an empty unix socket path";
            }

            if (ngx_astralform_redis_single(cf, conf, &v) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

        } else {
            goto invalid;
        }
    }

    if (conf->mode == NGX_ASTRALFORM_REDIS_SENTINEL
        && conf->master_name.len == 0)
    {
        return "needs \"master=\" with \"sentinel=\"";
    }

    if (conf->mode != NGX_ASTRALFORM_REDIS_SENTINEL
        && (conf->master_name.len || conf->sentinel_password.len))
    {
        return "takes \"master=\" and \"sentinel_password_file=\" only "
               "with \"sentinel=\"";
    }

    if (conf->mode == NGX_ASTRALFORM_REDIS_CLUSTER && conf->db) {
        return "cannot select a \"db=\" in a cluster (only db 0 exists)";
    }

    if (conf->mode != NGX_ASTRALFORM_REDIS_SINGLE
        && (conf->host.len || conf->unix_path.len))
    {
        return "takes either an address or \"sentinel=\" or \"cluster=\"";
    }

    if (conf->wait_replicas && conf->wait_timeout == 0) {
        conf->wait_timeout = 100;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"astralform_redis\" has an invalid parameter \"%V\"",
                       &value[i]);
    return NGX_CONF_ERROR;
}


/* the one Redis: "unix:/path" or host[:port] */
static ngx_int_t
ngx_astralform_redis_single(ngx_conf_t *cf,
    ngx_astralform_redis_conf_t *conf, ngx_str_t *value)
{
    ngx_astralform_redis_addr_t  addr;

    if (ngx_strncmp(value->data, "unix:", 5) == 0) {
        conf->unix_path.data = value->data + 5;
        conf->unix_path.len = value->len - 5;
        return NGX_OK;
    }

    if (ngx_astralform_redis_addr(cf, value, 6379, &addr) != NGX_OK) {
        return NGX_ERROR;
    }

    conf->host = addr.host;
    conf->port = addr.port;

    return NGX_OK;
}


static ngx_int_t
ngx_astralform_redis_addr(ngx_conf_t *cf, ngx_str_t *value,
    ngx_int_t default_port, ngx_astralform_redis_addr_t *addr)
{
    ngx_url_t  u;

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url = *value;
    u.default_port = default_port;

    /* resolved here, once, so no request ever waits for DNS */
    if (value->len == 0 || ngx_parse_url(cf->pool, &u) != NGX_OK
        || u.naddrs == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"astralform_redis\" has a bad address "
                           "\"%V\": %s", value,
                           u.err ? u.err : "host not found");
        return NGX_ERROR;
    }

    /* a forgotten port is more often a typo than a wish for the default */
    if (u.no_port) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"astralform_redis\" address \"%V\" has no "
                           "port: write \"%V:%i\" (or unix:/path)",
                           value, value, default_port);
        return NGX_ERROR;
    }

    addr->name = *value;

    addr->host.data = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN);
    if (addr->host.data == NULL) {
        return NGX_ERROR;
    }

    addr->host.len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen,
                                   addr->host.data, NGX_SOCKADDR_STRLEN, 0);
    addr->port = u.port;

    return NGX_OK;
}


/* "h:p,h:p": the sentinels or the cluster's seed nodes */
static ngx_int_t
ngx_astralform_redis_addrs(ngx_conf_t *cf, ngx_astralform_redis_conf_t *conf,
    ngx_str_t *list, ngx_int_t default_port)
{
    u_char                       *p, *last, *comma;
    ngx_str_t                     one;
    ngx_astralform_redis_addr_t  *addr;

    conf->seeds = ngx_array_create(cf->pool, 4,
                                   sizeof(ngx_astralform_redis_addr_t));
    if (conf->seeds == NULL) {
        return NGX_ERROR;
    }

    p = list->data;
    last = list->data + list->len;

    while (p < last) {
        comma = ngx_strlchr(p, last, ',');
        if (comma == NULL) {
            comma = last;
        }

        one.data = p;
        one.len = comma - p;

        addr = ngx_array_push(conf->seeds);
        if (addr == NULL) {
            return NGX_ERROR;
        }

        if (ngx_astralform_redis_addr(cf, &one, default_port, addr)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        p = comma + 1;
    }

    if (conf->seeds->nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"astralform_redis\" has an empty address list");
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_astralform_redis_secret_file(ngx_conf_t *cf, char *what,
    ngx_str_t *value, ngx_str_t *out)
{
    u_char      *p;
    ssize_t      size;
    ngx_str_t    path;
    ngx_file_t   file;
    u_char       buf[512];

    path = *value;

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = path;
    file.log = cf->log;
    file.fd = ngx_open_file(path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           "\"astralform_redis\" cannot read %s \"%V\"",
                           what, &path);
        return NGX_ERROR;
    }

    size = ngx_read_file(&file, buf, sizeof(buf) - 1, 0);
    ngx_close_file(file.fd);

    p = buf + (size > 0 ? size : 0);
    while (p > buf && (p[-1] == '\n' || p[-1] == '\r')) {
        p--;
    }

    if (p == buf) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"astralform_redis\" %s \"%V\" is empty",
                           what, &path);
        return NGX_ERROR;
    }

    out->len = p - buf;
    out->data = ngx_pnalloc(cf->pool, out->len);
    if (out->data == NULL) {
        ngx_explicit_memzero(buf, sizeof(buf));
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, buf, out->len);
    ngx_explicit_memzero(buf, sizeof(buf));

    return NGX_OK;
}
