/*
 * Redis on the worker's event loop.
 *
 * One hiredis async context per worker, pipelined: commands go out in order
 * and replies come back in order, so the operations in flight are a FIFO
 * queue. hiredis 0.14 has no command timeouts: a single watchdog timer
 * follows the oldest operation and, when it is overdue, drops the whole
 * connection (a Redis that does not answer the oldest command will not
 * answer the newer ones either); hiredis then calls every pending callback
 * with a NULL reply. Reconnection is lazy, on the next command, after a
 * backoff, so a dead Redis costs a request one refused connect at most.
 *
 * The socket is wrapped in an ngx_connection_t and uses level-triggered
 * events: hiredis reads one buffer per call and would stall on an
 * edge-triggered event with more data pending.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <hiredis/async.h>

#include "ngx_astralform_redis.h"


#define NGX_ASTRALFORM_REDIS_BACKOFF_MIN  50
#define NGX_ASTRALFORM_REDIS_BACKOFF_MAX  1000
#define NGX_ASTRALFORM_REDIS_MAX_ARGS     32


struct ngx_astralform_redis_op_s {
    ngx_queue_t                   queue;
    ngx_msec_t                    deadline;
    ngx_astralform_redis_pt       handler;     /* NULL once cancelled */
    void                         *data;
    ngx_pool_cleanup_t           *cln;
};


typedef struct {
    ngx_astralform_redis_conf_t  *conf;
    ngx_log_t                    *log;
    redisAsyncContext            *ac;
    ngx_queue_t                   inflight;
    ngx_event_t                   watchdog;
    ngx_connection_t              dummy;       /* ev->data of the timer */
    ngx_msec_t                    connect_deadline;
    ngx_msec_t                    retry_at;
    ngx_msec_t                    backoff;
    unsigned                      connected:1;
    unsigned                      flushing:1;  /* in the write handler */
} ngx_astralform_redis_worker_t;


static ngx_int_t ngx_astralform_redis_connect(void);
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
static ngx_astralform_redis_op_t *ngx_astralform_redis_queue(
    ngx_pool_t *pool, ngx_log_t *log, ngx_astralform_redis_pt handler,
    void *data, ngx_uint_t argc, ngx_str_t *argv);
static void ngx_astralform_redis_reply(redisAsyncContext *ac, void *r,
    void *privdata);
static void ngx_astralform_redis_setup_reply(redisReply *reply, void *data);
static void ngx_astralform_redis_cancel(void *data);
static void ngx_astralform_redis_arm(void);
static void ngx_astralform_redis_watchdog(ngx_event_t *ev);
static void ngx_astralform_redis_drop(const char *why);
static void ngx_astralform_redis_backoff(void);


static ngx_astralform_redis_worker_t  ngx_astralform_rw;


ngx_int_t
ngx_astralform_redis_init_process(ngx_cycle_t *cycle,
    ngx_astralform_redis_conf_t *conf)
{
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    ngx_memzero(rw, sizeof(ngx_astralform_redis_worker_t));

    rw->conf = conf;
    rw->log = cycle->log;
    rw->backoff = NGX_ASTRALFORM_REDIS_BACKOFF_MIN;
    ngx_queue_init(&rw->inflight);

    rw->dummy.fd = (ngx_socket_t) -1;
    rw->watchdog.handler = ngx_astralform_redis_watchdog;
    rw->watchdog.data = &rw->dummy;
    rw->watchdog.log = cycle->log;
    rw->watchdog.cancelable = 1;

    /* connect early so the first request does not pay for it */
    (void) ngx_astralform_redis_connect();

    return NGX_OK;
}


void
ngx_astralform_redis_exit_process(ngx_cycle_t *cycle)
{
    redisAsyncContext  *ac;

    ac = ngx_astralform_rw.ac;

    if (ngx_astralform_rw.watchdog.timer_set) {
        ngx_del_timer(&ngx_astralform_rw.watchdog);
    }

    if (ac != NULL) {
        ngx_astralform_rw.ac = NULL;
        redisAsyncFree(ac);
    }

    ngx_astralform_rw.conf = NULL;
}


ngx_uint_t
ngx_astralform_redis_is_up(void)
{
    return ngx_astralform_rw.ac != NULL && ngx_astralform_rw.connected;
}


ngx_astralform_redis_op_t *
ngx_astralform_redis_send(ngx_pool_t *pool, ngx_log_t *log,
    ngx_astralform_redis_pt handler, void *data, ngx_uint_t argc,
    ngx_str_t *argv)
{
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    if (rw->conf == NULL) {
        return NULL;
    }

    if (rw->ac == NULL) {
        if ((ngx_msec_int_t) (ngx_current_msec - rw->retry_at) < 0) {
            return NULL;
        }

        if (ngx_astralform_redis_connect() != NGX_OK) {
            return NULL;
        }
    }

    return ngx_astralform_redis_queue(pool, log, handler, data, argc, argv);
}


static ngx_int_t
ngx_astralform_redis_connect(void)
{
    u_char                          host[NGX_SOCKADDR_STRLEN + 1];
    u_char                          path[NGX_MAX_PATH + 1];
    ngx_str_t                       argv[2];
    redisAsyncContext              *ac;
    ngx_astralform_redis_conf_t    *conf;
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    conf = rw->conf;

    if (conf->unix_path.len) {
        ngx_cpystrn(path, conf->unix_path.data,
                    ngx_min(conf->unix_path.len + 1, sizeof(path)));
        ac = redisAsyncConnectUnix((char *) path);

    } else {
        /* conf->host is numeric: no name lookup happens here */
        ngx_cpystrn(host, conf->host.data,
                    ngx_min(conf->host.len + 1, sizeof(host)));
        ac = redisAsyncConnect((char *) host, (int) conf->port);
    }

    if (ac == NULL || ac->err) {
        ngx_log_error(NGX_LOG_ERR, rw->log, 0,
                      "astralform: could not connect to redis \"%V\": %s",
                      &conf->addr, ac ? ac->errstr : "out of memory");
        if (ac != NULL) {
            redisAsyncFree(ac);
        }
        ngx_astralform_redis_backoff();
        return NGX_ERROR;
    }

    if (ngx_astralform_redis_attach(ac) != NGX_OK) {
        redisAsyncFree(ac);
        ngx_astralform_redis_backoff();
        return NGX_ERROR;
    }

    redisAsyncSetConnectCallback(ac, ngx_astralform_redis_on_connect);
    redisAsyncSetDisconnectCallback(ac, ngx_astralform_redis_on_disconnect);

    rw->ac = ac;

    /* a unix socket may connect at once; hiredis then never calls back */
    rw->connected = (ac->c.flags & REDIS_CONNECTED) ? 1 : 0;
    rw->connect_deadline = ngx_current_msec + conf->connect_timeout;
    ngx_astralform_redis_arm();

    /* queued ahead of every request command: hiredis keeps the order */

    if (conf->password.len) {
        ngx_str_set(&argv[0], "AUTH");
        argv[1] = conf->password;

        if (ngx_astralform_redis_queue(NULL, rw->log,
                                       ngx_astralform_redis_setup_reply,
                                       "AUTH", 2, argv)
            == NULL)
        {
            return NGX_ERROR;
        }
    }

    if (conf->db) {
        ngx_str_set(&argv[0], "SELECT");
        argv[1].data = ngx_pnalloc(ngx_cycle->pool, NGX_INT_T_LEN);
        if (argv[1].data == NULL) {
            return NGX_ERROR;
        }
        argv[1].len = ngx_sprintf(argv[1].data, "%i", conf->db)
                      - argv[1].data;

        if (ngx_astralform_redis_queue(NULL, rw->log,
                                       ngx_astralform_redis_setup_reply,
                                       "SELECT", 2, argv)
            == NULL)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
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
    ngx_connection_t   *c = privdata;
    redisAsyncContext  *ac = c->data;

    if ((ac->c.flags & REDIS_CONNECTED) && !ngx_astralform_rw.flushing) {
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
    ngx_connection_t  *c = privdata;

    if (c->write->posted && !ngx_astralform_rw.flushing) {
        ngx_delete_posted_event(c->write);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }
}


/*
 * hiredis is about to close the fd and free the context: give the nginx
 * connection back without closing the fd (hiredis owns it).
 */
static void
ngx_astralform_redis_cleanup(void *privdata)
{
    ngx_connection_t  *c = privdata;

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

    if (ngx_astralform_rw.ac == c->data) {
        ngx_astralform_rw.ac = NULL;
        ngx_astralform_rw.connected = 0;
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
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
    ngx_connection_t  *c = ev->data;

    ngx_astralform_rw.flushing = 1;
    redisAsyncHandleWrite(c->data);
    ngx_astralform_rw.flushing = 0;
}


static void
ngx_astralform_redis_on_connect(const redisAsyncContext *ac, int status)
{
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    if (status != REDIS_OK) {
        ngx_log_error(NGX_LOG_ERR, rw->log, 0,
                      "astralform: could not connect to redis \"%V\": %s",
                      &rw->conf->addr, ac->errstr);
        ngx_astralform_redis_backoff();
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rw->log, 0,
                   "astralform: connected to redis \"%V\"", &rw->conf->addr);

    if (rw->ac == ac) {
        rw->connected = 1;
        rw->backoff = NGX_ASTRALFORM_REDIS_BACKOFF_MIN;
        ngx_astralform_redis_arm();
    }
}


static void
ngx_astralform_redis_on_disconnect(const redisAsyncContext *ac, int status)
{
    if (status != REDIS_OK) {
        ngx_log_error(NGX_LOG_ERR, ngx_astralform_rw.log, 0,
                      "astralform: redis \"%V\" connection lost: %s",
                      &ngx_astralform_rw.conf->addr, ac->errstr);
        ngx_astralform_redis_backoff();
    }
}


static ngx_astralform_redis_op_t *
ngx_astralform_redis_queue(ngx_pool_t *pool, ngx_log_t *log,
    ngx_astralform_redis_pt handler, void *data, ngx_uint_t argc,
    ngx_str_t *argv)
{
    size_t                          lens[NGX_ASTRALFORM_REDIS_MAX_ARGS];
    ngx_uint_t                      i;
    const char                     *args[NGX_ASTRALFORM_REDIS_MAX_ARGS];
    ngx_pool_cleanup_t             *cln;
    ngx_astralform_redis_op_t      *op;
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    if (argc > NGX_ASTRALFORM_REDIS_MAX_ARGS) {
        return NULL;
    }

    cln = NULL;

    if (pool != NULL) {
        cln = ngx_pool_cleanup_add(pool, 0);
        if (cln == NULL) {
            return NULL;
        }
    }

    op = ngx_alloc(sizeof(ngx_astralform_redis_op_t), log);
    if (op == NULL) {
        return NULL;
    }

    for (i = 0; i < argc; i++) {
        args[i] = (const char *) argv[i].data;
        lens[i] = argv[i].len;
    }

    if (redisAsyncCommandArgv(rw->ac, ngx_astralform_redis_reply, op,
                              (int) argc, args, lens)
        != REDIS_OK)
    {
        ngx_free(op);
        return NULL;
    }

    op->handler = handler;
    op->data = data;
    op->deadline = ngx_current_msec + rw->conf->timeout;
    op->cln = cln;

    if (cln != NULL) {
        cln->handler = ngx_astralform_redis_cancel;
        cln->data = op;
    }

    ngx_queue_insert_tail(&rw->inflight, &op->queue);

    if (!rw->watchdog.timer_set) {
        ngx_astralform_redis_arm();
    }

    return op;
}


static void
ngx_astralform_redis_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    void                       *data;
    ngx_astralform_redis_pt     handler;
    ngx_astralform_redis_op_t  *op = privdata;

    ngx_queue_remove(&op->queue);

    if (op->cln != NULL) {
        op->cln->handler = NULL;
    }

    handler = op->handler;
    data = op->data;
    ngx_free(op);

    ngx_astralform_redis_arm();

    if (handler != NULL) {
        handler(r, data);
    }
}


static void
ngx_astralform_redis_setup_reply(redisReply *reply, void *data)
{
    const char  *cmd = data;

    if (reply != NULL && reply->type != REDIS_REPLY_ERROR) {
        return;
    }

    ngx_log_error(NGX_LOG_ERR, ngx_astralform_rw.log, 0,
                  "astralform: redis \"%V\" refused %s: %s",
                  &ngx_astralform_rw.conf->addr, cmd,
                  reply ? reply->str : "no reply");

    if (reply != NULL && ngx_astralform_rw.ac != NULL) {
        redisAsyncDisconnect(ngx_astralform_rw.ac);
        ngx_astralform_redis_backoff();
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
ngx_astralform_redis_arm(void)
{
    ngx_msec_t                      deadline;
    ngx_msec_int_t                  left;
    ngx_astralform_redis_op_t      *op;
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    if (rw->ac != NULL && !rw->connected) {
        deadline = rw->connect_deadline;

    } else if (!ngx_queue_empty(&rw->inflight)) {
        op = ngx_queue_data(ngx_queue_head(&rw->inflight),
                            ngx_astralform_redis_op_t, queue);
        deadline = op->deadline;

    } else {
        if (rw->watchdog.timer_set) {
            ngx_del_timer(&rw->watchdog);
        }
        return;
    }

    /* commands in flight hold a graceful shutdown (reload, quit) */
    rw->watchdog.cancelable = ngx_queue_empty(&rw->inflight) ? 1 : 0;

    left = (ngx_msec_int_t) (deadline - ngx_current_msec);
    ngx_add_timer(&rw->watchdog, left > 0 ? (ngx_msec_t) left : 1);
}


static void
ngx_astralform_redis_watchdog(ngx_event_t *ev)
{
    ngx_astralform_redis_op_t      *op;
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    if (rw->ac == NULL) {
        return;
    }

    if (!rw->connected) {
        ngx_astralform_redis_drop("connect timed out");
        return;
    }

    if (ngx_queue_empty(&rw->inflight)) {
        return;
    }

    op = ngx_queue_data(ngx_queue_head(&rw->inflight),
                        ngx_astralform_redis_op_t, queue);

    if ((ngx_msec_int_t) (op->deadline - ngx_current_msec) > 0) {
        ngx_astralform_redis_arm();
        return;
    }

    ngx_astralform_redis_drop("timed out");
}


/* fails every operation in flight with a NULL reply */
static void
ngx_astralform_redis_drop(const char *why)
{
    redisAsyncContext              *ac;
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    ngx_log_error(NGX_LOG_ERR, rw->log, 0,
                  "astralform: redis \"%V\" %s", &rw->conf->addr, why);

    ac = rw->ac;
    rw->ac = NULL;
    rw->connected = 0;
    ngx_astralform_redis_backoff();

    redisAsyncFree(ac);
}


static void
ngx_astralform_redis_backoff(void)
{
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    rw->retry_at = ngx_current_msec + rw->backoff;
    rw->backoff = ngx_min(rw->backoff * 2, NGX_ASTRALFORM_REDIS_BACKOFF_MAX);
}


char *
ngx_astralform_redis_parse(ngx_conf_t *cf, ngx_astralform_redis_conf_t *conf,
    ngx_str_t *value, ngx_uint_t n)
{
    u_char     *p;
    ssize_t     size;
    ngx_str_t   v, path;
    ngx_url_t   u;
    ngx_uint_t  i;
    ngx_file_t  file;
    u_char      buf[512];

    conf->addr = value[0];

    if (ngx_strncmp(value[0].data, "unix:", 5) == 0) {
        conf->unix_path.data = value[0].data + 5;
        conf->unix_path.len = value[0].len - 5;

        if (conf->unix_path.len == 0) {
            return "has an empty unix socket path";
        }

    } else {
        ngx_memzero(&u, sizeof(ngx_url_t));
        u.url = value[0];
        u.default_port = 6379;

        /* resolved here, once, so no request ever waits for DNS */
        if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"astralform_redis\" has a bad address "
                               "\"%V\": %s", &value[0],
                               u.err ? u.err : "host not found");
            return NGX_CONF_ERROR;
        }

        /* a forgotten port is more often a typo than a wish for 6379 */
        if (u.no_port) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"astralform_redis\" address \"%V\" has no "
                               "port: write \"%V:6379\" (or unix:/path)",
                               &value[0], &value[0]);
            return NGX_CONF_ERROR;
        }

        conf->host.data = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN);
        if (conf->host.data == NULL) {
            return NGX_CONF_ERROR;
        }
        conf->host.len = ngx_sock_ntop(u.addrs[0].sockaddr,
                                       u.addrs[0].socklen, conf->host.data,
                                       NGX_SOCKADDR_STRLEN, 0);
        conf->port = u.port;
    }

    for (i = 1; i < n; i++) {
        v = value[i];

        if (ngx_strncmp(v.data, "db=", 3) == 0) {
            conf->db = ngx_atoi(v.data + 3, v.len - 3);
            if (conf->db == NGX_ERROR) {
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
            path.data = v.data + 14;
            path.len = v.len - 14;

            if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
                return NGX_CONF_ERROR;
            }

            ngx_memzero(&file, sizeof(ngx_file_t));
            file.name = path;
            file.log = cf->log;
            file.fd = ngx_open_file(path.data, NGX_FILE_RDONLY,
                                    NGX_FILE_OPEN, 0);
            if (file.fd == NGX_INVALID_FILE) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                                   "\"astralform_redis\" cannot read "
                                   "password_file \"%V\"", &path);
                return NGX_CONF_ERROR;
            }

            size = ngx_read_file(&file, buf, sizeof(buf) - 1, 0);
            ngx_close_file(file.fd);

            if (size <= 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"astralform_redis\" password_file "
                                   "\"%V\" is empty", &path);
                return NGX_CONF_ERROR;
            }

            p = buf + size;
            while (p > buf && (p[-1] == '\n' || p[-1] == '\r')) {
                p--;
            }

            conf->password.len = p - buf;
            conf->password.data = ngx_pnalloc(cf->pool, conf->password.len);
            if (conf->password.data == NULL) {
                return NGX_CONF_ERROR;
            }
            ngx_memcpy(conf->password.data, buf, conf->password.len);
            ngx_explicit_memzero(buf, sizeof(buf));

        } else {
            goto invalid;
        }
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"astralform_redis\" has an invalid parameter \"%V\"",
                       &value[i]);
    return NGX_CONF_ERROR;
}
