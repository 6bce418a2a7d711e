/*
 * The configuration cache: server-assisted client-side caching (Redis 6+
 * CLIENT TRACKING, RESP2), per worker, bounded by
 * astralform_config_cache_size (LRU by bytes).
 *
 * Each data node (the Redis, the Sentinel's master, a Cluster master) has a
 * tracker: a second connection that asks CLIENT ID, then SUBSCRIBEs to
 * __redis__:invalidate. Once it is subscribed, the node's command
 * connection sends CLIENT TRACKING on REDIRECT <id> OPTIN; once Redis said
 * OK, a cacheable read goes out as "CLIENT CACHING yes" and the read,
 * pipelined, so Redis remembers the key and tells the tracker when anyone
 * changes it: ["message", "__redis__:invalidate", [key, ...]], or a nil
 * list for "everything" (FLUSHALL).
 *
 * The invalidation travels on the other socket and may come before the
 * read's own reply: a read first leaves a placeholder (pending, with a
 * generation); an invalidation of its key or a flush removes it; the reply
 * is kept only if the same placeholder is still there. A cached answer is
 * served only after the tracker's socket was read: Redis writes the
 * invalidations in the event-loop round that answers the write, so a
 * change answered through any instance has its invalidation in our socket
 * by the time a later call is handled, whatever order epoll reports.
 *
 * Everything a node cached is dropped when either connection ends (a new
 * tracker has a new id: tracking is asked again with it), when the
 * Sentinel names another master and when the Cluster's slot map changes.
 * Until Redis confirmed tracking on a node, its reads are not cached; if
 * Redis refuses (too old, an ACL), that is logged once and the worker reads
 * uncached from then on.
 *
 * What is cached is Redis's reply as Redis holds it: connector JSON with
 * sealed secrets, never a decrypted one.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <hiredis/async.h>

#include "ngx_astralform_redis.h"
#include "ngx_astralform_redis_internal.h"


/* one Redis key of a node: the reads of it that are cached */
typedef struct {
    ngx_str_node_t                sn;          /* sn.str: the key */
    ngx_queue_t                   entries;
    size_t                        size;
} ngx_astralform_redis_ckey_t;


/* one read of a key, by its other arguments */
typedef struct {
    ngx_queue_t                   lru;
    ngx_queue_t                   sibling;     /* the key's entries */
    ngx_astralform_redis_node_t  *node;
    ngx_astralform_redis_ckey_t  *ckey;
    ngx_str_t                     args;
    redisReply                   *reply;       /* NULL: a placeholder */
    size_t                        size;
    ngx_uint_t                    gen;
    ngx_uint_t                    refs;        /* answering from it now */
    unsigned                      dead:1;
} ngx_astralform_redis_entry_t;


/* what a tracked read in flight needs to find its placeholder again */
struct ngx_astralform_redis_cid_s {
    ngx_str_t                     key;
    ngx_str_t                     args;
};


static ngx_int_t ngx_astralform_redis_cache_args(ngx_uint_t argc,
    ngx_str_t *argv, ngx_str_t *out);
static ngx_astralform_redis_ckey_t *ngx_astralform_redis_cache_key(
    ngx_astralform_redis_node_t *node, ngx_str_t *key);
static ngx_astralform_redis_entry_t *ngx_astralform_redis_cache_find(
    ngx_astralform_redis_ckey_t *ckey, ngx_str_t *args);
static ngx_astralform_redis_entry_t *ngx_astralform_redis_cache_placeholder(
    ngx_astralform_redis_node_t *node, ngx_str_t *key, ngx_str_t *args);
static void ngx_astralform_redis_cache_kill(ngx_astralform_redis_entry_t *e);
static void ngx_astralform_redis_cache_free(ngx_astralform_redis_entry_t *e);
static void ngx_astralform_redis_cache_invalidate(
    ngx_astralform_redis_node_t *node, u_char *key, size_t len);
static void ngx_astralform_redis_cache_evict(void);
static size_t ngx_astralform_redis_cache_size(redisReply *r);
static void ngx_astralform_redis_cache_drain(
    ngx_astralform_redis_node_t *node);
static ngx_uint_t ngx_astralform_redis_cache_closed(
    ngx_astralform_redis_node_t *node);
static void ngx_astralform_redis_cache_tracking_reply(redisReply *reply,
    void *data);
static void ngx_astralform_redis_cache_caching_reply(redisReply *reply,
    void *data);
static void ngx_astralform_redis_cache_id_reply(redisReply *reply,
    void *data);
static void ngx_astralform_redis_cache_message(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_astralform_redis_cache_refused(
    ngx_astralform_redis_node_t *node, const char *cmd, redisReply *reply);


void
ngx_astralform_redis_cache_init(void)
{
    ngx_queue_init(&ngx_astralform_rw.lru);
    ngx_astralform_rw.cache_used = 0;
}


/* a new node: its key tree; a data node, its tracker too */
void
ngx_astralform_redis_cache_node(ngx_astralform_redis_node_t *node)
{
    ngx_astralform_redis_node_t  *t;

    ngx_rbtree_init(&node->keys, &node->keys_sentinel,
                    ngx_str_rbtree_insert_value);

    if (node->kind != NGX_ASTRALFORM_REDIS_DATA
        || ngx_astralform_rw.conf->cache_size == 0)
    {
        return;
    }

    t = ngx_astralform_redis_node(node->host, ngx_strlen(node->host),
                                  node->port, NGX_ASTRALFORM_REDIS_TRACKER);
    if (t == NULL) {
        return;                        /* that node is read uncached */
    }

    t->owner = node;
    t->name = node->name;
    node->tracker = t;
}


ngx_int_t
ngx_astralform_redis_cached(ngx_pool_t *pool, ngx_log_t *log,
    ngx_astralform_redis_pt handler, void *data, ngx_uint_t argc,
    ngx_str_t *argv)
{
    ngx_str_t                       args;
    ngx_int_t                       slot;
    ngx_astralform_redis_cid_t     *cid;
    ngx_astralform_redis_node_t    *node;
    ngx_astralform_redis_ckey_t    *ckey;
    ngx_astralform_redis_entry_t   *e;
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    if (rw->conf == NULL) {
        return NGX_ERROR;
    }

    if (rw->conf->cache_size == 0 || rw->cache_refused || argc < 2) {
        goto uncached;
    }

    slot = (rw->conf->mode == NGX_ASTRALFORM_REDIS_CLUSTER)
           ? ngx_astralform_redis_keyslot(argc, argv) : -1;

    node = ngx_astralform_redis_route(slot);

    if (node == NULL || node->tracker == NULL) {
        goto uncached;
    }

    if (node->tracking != NGX_ASTRALFORM_REDIS_TRACKING_ON) {
        ngx_astralform_redis_cache_track(node);
        goto uncached;
    }

    /* what was changed before now is in the tracker's socket: read it */
    ngx_astralform_redis_cache_drain(node);

    if (node->tracking != NGX_ASTRALFORM_REDIS_TRACKING_ON
        || ngx_astralform_redis_cache_closed(node)
        || ngx_astralform_redis_cache_args(argc, argv, &args) != NGX_OK)
    {
        goto uncached;
    }

    ckey = ngx_astralform_redis_cache_key(node, &argv[1]);
    e = ckey ? ngx_astralform_redis_cache_find(ckey, &args) : NULL;

    if (e != NULL && e->reply != NULL) {
        ngx_free(args.data);

        ngx_queue_remove(&e->lru);
        ngx_queue_insert_head(&rw->lru, &e->lru);

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, log, 0,
                       "astralform: config cache hit \"%V\"", &argv[1]);

        /* the handler may change the cache: e lives until it returns */
        e->refs++;
        handler(e->reply, data);

        if (--e->refs == 0 && e->dead) {
            ngx_astralform_redis_cache_free(e);
        }

        return NGX_OK;
    }

    e = ngx_astralform_redis_cache_placeholder(node, &argv[1], &args);

    cid = (e != NULL)
          ? ngx_alloc(sizeof(ngx_astralform_redis_cid_t) + argv[1].len, log)
          : NULL;

    if (cid == NULL) {
        ngx_free(args.data);
        goto uncached;
    }

    cid->key.data = (u_char *) cid + sizeof(ngx_astralform_redis_cid_t);
    cid->key.len = argv[1].len;
    ngx_memcpy(cid->key.data, argv[1].data, argv[1].len);
    cid->args = args;

    /* the op owns cid from here, whatever happens */
    return ngx_astralform_redis_submit(pool, log, handler, data, argc, argv,
                                       cid, e->gen)
           ? NGX_AGAIN : NGX_ERROR;

uncached:

    return ngx_astralform_redis_send(pool, log, handler, data, argc, argv)
           ? NGX_AGAIN : NGX_ERROR;
}


/* "CLIENT CACHING yes" right before op, on node; NGX_ERROR: not tracked */
ngx_int_t
ngx_astralform_redis_cache_caching(ngx_astralform_redis_node_t *node)
{
    ngx_str_t  argv[3];

    if (node->tracking != NGX_ASTRALFORM_REDIS_TRACKING_ON) {
        return NGX_ERROR;
    }

    ngx_str_set(&argv[0], "CLIENT");
    ngx_str_set(&argv[1], "CACHING");
    ngx_str_set(&argv[2], "yes");

    return ngx_astralform_redis_internal(node,
                                   ngx_astralform_redis_cache_caching_reply,
                                   node, 3, argv)
           ? NGX_OK : NGX_ERROR;
}


/* the reply of a tracked read: kept if its placeholder is still there */
void
ngx_astralform_redis_cache_reply(ngx_astralform_redis_op_t *op,
    redisReply *reply)
{
    size_t                          size;
    redisReply                     *copy;
    ngx_astralform_redis_cid_t     *cid;
    ngx_astralform_redis_node_t    *node;
    ngx_astralform_redis_ckey_t    *ckey;
    ngx_astralform_redis_entry_t   *e;
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    cid = op->cache;
    op->cache = NULL;
    node = op->node;

    if (rw->conf == NULL || node == NULL) {
        goto done;
    }

    ckey = ngx_astralform_redis_cache_key(node, &cid->key);
    e = ckey ? ngx_astralform_redis_cache_find(ckey, &cid->args) : NULL;

    if (e == NULL || e->reply != NULL || e->gen != op->cache_gen) {
        goto done;                     /* invalidated, flushed, or newer */
    }

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR || op->tries
        || node->tracking != NGX_ASTRALFORM_REDIS_TRACKING_ON)
    {
        ngx_astralform_redis_cache_kill(e);
        goto done;
    }

    size = ngx_astralform_redis_cache_size(reply);

    if (e->size + size > rw->conf->cache_size) {
        ngx_astralform_redis_cache_kill(e);
        goto done;
    }

    copy = ngx_astralform_redis_copy(reply);
    if (copy == NULL) {
        ngx_astralform_redis_cache_kill(e);
        goto done;
    }

    e->reply = copy;
    e->size += size;
    ckey->size += size;
    rw->cache_used += size;

    ngx_astralform_redis_cache_evict();

done:

    ngx_astralform_redis_cache_free_cid(cid);
}


void
ngx_astralform_redis_cache_free_cid(ngx_astralform_redis_cid_t *cid)
{
    ngx_free(cid->args.data);
    ngx_free(cid);
}


/* the arguments but the key, each as 4 bytes of length and its bytes */
static ngx_int_t
ngx_astralform_redis_cache_args(ngx_uint_t argc, ngx_str_t *argv,
    ngx_str_t *out)
{
    u_char      *p;
    size_t       len;
    uint32_t     n;
    ngx_uint_t   i;

    len = 0;

    for (i = 0; i < argc; i++) {
        if (i != 1) {
            len += sizeof(uint32_t) + argv[i].len;
        }
    }

    out->data = ngx_alloc(len, ngx_astralform_rw.log);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    out->len = len;
    p = out->data;

    for (i = 0; i < argc; i++) {
        if (i == 1) {
            continue;
        }

        n = (uint32_t) argv[i].len;
        p = ngx_cpymem(p, &n, sizeof(uint32_t));
        p = ngx_cpymem(p, argv[i].data, argv[i].len);
    }

    return NGX_OK;
}


static ngx_astralform_redis_ckey_t *
ngx_astralform_redis_cache_key(ngx_astralform_redis_node_t *node,
    ngx_str_t *key)
{
    return (ngx_astralform_redis_ckey_t *)
           ngx_str_rbtree_lookup(&node->keys, key,
                                 ngx_crc32_short(key->data, key->len));
}


static ngx_astralform_redis_entry_t *
ngx_astralform_redis_cache_find(ngx_astralform_redis_ckey_t *ckey,
    ngx_str_t *args)
{
    ngx_queue_t                   *q;
    ngx_astralform_redis_entry_t  *e;

    for (q = ngx_queue_head(&ckey->entries);
         q != ngx_queue_sentinel(&ckey->entries);
         q = ngx_queue_next(q))
    {
        e = ngx_queue_data(q, ngx_astralform_redis_entry_t, sibling);

        if (e->args.len == args->len
            && ngx_memcmp(e->args.data, args->data, args->len) == 0)
        {
            return e;
        }
    }

    return NULL;
}


/*
 * The entry a read about to be sent fills: a new placeholder, or the
 * pending one with a new generation (the newest read wins). Takes args.
 */
static ngx_astralform_redis_entry_t *
ngx_astralform_redis_cache_placeholder(ngx_astralform_redis_node_t *node,
    ngx_str_t *key, ngx_str_t *args)
{
    size_t                          size;
    ngx_astralform_redis_ckey_t    *ckey;
    ngx_astralform_redis_entry_t   *e;
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    ckey = ngx_astralform_redis_cache_key(node, key);

    if (ckey != NULL) {
        e = ngx_astralform_redis_cache_find(ckey, args);

        if (e != NULL) {
            e->gen = ++rw->cache_gen;
            return e;                  /* args are copied in the cid */
        }

    } else {
        size = sizeof(ngx_astralform_redis_ckey_t) + key->len;

        ckey = ngx_alloc(size, rw->log);
        if (ckey == NULL) {
            return NULL;
        }

        ckey->sn.str.data = (u_char *) ckey
                            + sizeof(ngx_astralform_redis_ckey_t);
        ckey->sn.str.len = key->len;
        ngx_memcpy(ckey->sn.str.data, key->data, key->len);
        ckey->sn.node.key = ngx_crc32_short(key->data, key->len);
        ckey->size = size;
        ngx_queue_init(&ckey->entries);

        ngx_rbtree_insert(&node->keys, &ckey->sn.node);
        rw->cache_used += size;
    }

    size = sizeof(ngx_astralform_redis_entry_t) + args->len;

    e = ngx_calloc(sizeof(ngx_astralform_redis_entry_t), rw->log);
    if (e != NULL) {
        e->args.data = ngx_alloc(args->len, rw->log);
    }

    if (e == NULL || e->args.data == NULL) {
        if (ngx_queue_empty(&ckey->entries)) {
            ngx_rbtree_delete(&node->keys, &ckey->sn.node);
            rw->cache_used -= ckey->size;
            ngx_free(ckey);
        }

        ngx_free(e);
        return NULL;
    }

    e->args.len = args->len;
    ngx_memcpy(e->args.data, args->data, args->len);
    e->node = node;
    e->ckey = ckey;
    e->size = size;
    e->gen = ++rw->cache_gen;

    ngx_queue_insert_tail(&ckey->entries, &e->sibling);
    ngx_queue_insert_head(&rw->lru, &e->lru);
    ckey->size += size;
    rw->cache_used += size;

    ngx_astralform_redis_cache_evict();

    /* the newest entry is never evicted: it is at the head */
    return e;
}


/* out of the cache; freed now unless a hit is answering from it */
static void
ngx_astralform_redis_cache_kill(ngx_astralform_redis_entry_t *e)
{
    ngx_astralform_redis_ckey_t    *ckey;
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    ckey = e->ckey;

    ngx_queue_remove(&e->lru);
    ngx_queue_remove(&e->sibling);
    ckey->size -= e->size;
    rw->cache_used -= e->size;
    e->dead = 1;
    e->ckey = NULL;

    if (ngx_queue_empty(&ckey->entries)) {
        ngx_rbtree_delete(&e->node->keys, &ckey->sn.node);
        rw->cache_used -= ckey->size;
        ngx_free(ckey);
    }

    if (e->refs == 0) {
        ngx_astralform_redis_cache_free(e);
    }
}


static void
ngx_astralform_redis_cache_free(ngx_astralform_redis_entry_t *e)
{
    if (e->reply != NULL) {
        freeReplyObject(e->reply);
    }

    ngx_free(e->args.data);
    ngx_free(e);
}


static void
ngx_astralform_redis_cache_invalidate(ngx_astralform_redis_node_t *node,
    u_char *key, size_t len)
{
    ngx_str_t                      k;
    ngx_astralform_redis_ckey_t   *ckey;
    ngx_astralform_redis_entry_t  *e;

    k.data = key;
    k.len = len;

    ckey = ngx_astralform_redis_cache_key(node, &k);
    if (ckey == NULL) {
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_astralform_rw.log, 0,
                   "astralform: config cache invalidated \"%V\"", &k);

    /* the last one frees ckey */
    while (ckey != NULL) {
        e = ngx_queue_data(ngx_queue_head(&ckey->entries),
                           ngx_astralform_redis_entry_t, sibling);
        ckey = (ngx_queue_next(&e->sibling)
                == ngx_queue_sentinel(&ckey->entries)) ? NULL : ckey;
        ngx_astralform_redis_cache_kill(e);
    }
}


/* everything node cached (NULL: every node) */
void
ngx_astralform_redis_cache_flush(ngx_astralform_redis_node_t *node)
{
    ngx_queue_t                    *q, *next;
    ngx_astralform_redis_entry_t   *e;
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    if (rw->lru.next == NULL) {
        return;                        /* before init */
    }

    for (q = ngx_queue_head(&rw->lru);
         q != ngx_queue_sentinel(&rw->lru);
         q = next)
    {
        next = ngx_queue_next(q);
        e = ngx_queue_data(q, ngx_astralform_redis_entry_t, lru);

        if (node == NULL || e->node == node) {
            ngx_astralform_redis_cache_kill(e);
        }
    }
}


/* least recently used first, while over the size */
static void
ngx_astralform_redis_cache_evict(void)
{
    ngx_queue_t                    *q, *prev;
    ngx_astralform_redis_entry_t   *e;
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    for (q = ngx_queue_last(&rw->lru);
         rw->cache_used > rw->conf->cache_size
         && q != ngx_queue_sentinel(&rw->lru)
         && q != ngx_queue_head(&rw->lru);
         q = prev)
    {
        prev = ngx_queue_prev(q);
        e = ngx_queue_data(q, ngx_astralform_redis_entry_t, lru);
        ngx_astralform_redis_cache_kill(e);
    }
}


static size_t
ngx_astralform_redis_cache_size(redisReply *r)
{
    size_t  i, size;

    size = sizeof(redisReply) + (r->str ? r->len + 1 : 0)
           + r->elements * sizeof(redisReply *);

    if (r->type == REDIS_REPLY_ARRAY) {
        for (i = 0; i < r->elements; i++) {
            size += ngx_astralform_redis_cache_size(r->element[i]);
        }
    }

    return size;
}


/* invalidations waiting in the tracker's socket are applied now */
static void
ngx_astralform_redis_cache_drain(ngx_astralform_redis_node_t *node)
{
    ngx_astralform_redis_node_t  *t = node->tracker;

    if (t->ac != NULL && t->subscribed && !t->closing) {
        redisAsyncHandleRead(t->ac);
    }
}


/*
 * Redis closed the command connection (killed, idle timeout) and the event
 * loop has not seen it yet: Redis no longer sends invalidations for it.
 */
static ngx_uint_t
ngx_astralform_redis_cache_closed(ngx_astralform_redis_node_t *node)
{
    u_char   c;
    ssize_t  n;

    if (node->ac == NULL || node->closing) {
        return 1;
    }

    n = recv(node->ac->c.fd, &c, 1, MSG_PEEK|MSG_DONTWAIT);

    return n == 0 || (n == -1 && ngx_socket_errno != NGX_EAGAIN
                      && ngx_socket_errno != NGX_EINTR);
}


/* a node's connection is (re)set up: tracker, or tracking asked again */
ngx_int_t
ngx_astralform_redis_cache_setup(ngx_astralform_redis_node_t *node)
{
    ngx_str_t  argv[2];

    if (node->kind == NGX_ASTRALFORM_REDIS_DATA) {
        ngx_astralform_redis_cache_track(node);
        return NGX_OK;
    }

    if (node->kind != NGX_ASTRALFORM_REDIS_TRACKER) {
        return NGX_OK;
    }

    ngx_str_set(&argv[0], "CLIENT");
    ngx_str_set(&argv[1], "ID");

    if (ngx_astralform_redis_internal(node,
                                      ngx_astralform_redis_cache_id_reply,
                                      node, 2, argv)
        == NULL)
    {
        return NGX_ERROR;
    }

    /* hiredis keeps this callback for every message of the channel */
    if (redisAsyncCommand(node->ac, ngx_astralform_redis_cache_message, node,
                          "SUBSCRIBE __redis__:invalidate")
        != REDIS_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* tracking on node's command connection, once its tracker is subscribed */
void
ngx_astralform_redis_cache_track(ngx_astralform_redis_node_t *node)
{
    u_char                       *p, id[NGX_INT64_LEN];
    ngx_str_t                     argv[6];
    ngx_astralform_redis_node_t  *t;

    t = node->tracker;

    if (t == NULL || ngx_astralform_rw.cache_refused
        || node->tracking != NGX_ASTRALFORM_REDIS_TRACKING_OFF)
    {
        return;
    }

    if (!t->subscribed) {
        if (t->ac == NULL) {
            /* connects; once subscribed, it asks for tracking */
            (void) ngx_astralform_redis_node_ready(t);
        }
        return;
    }

    if (node->ac == NULL || node->closing) {
        return;                    /* asked when the connection is set up */
    }

    ngx_str_set(&argv[0], "CLIENT");
    ngx_str_set(&argv[1], "TRACKING");
    ngx_str_set(&argv[2], "on");
    ngx_str_set(&argv[3], "REDIRECT");
    p = ngx_sprintf(id, "%L", (int64_t) t->client_id);
    argv[4].data = id;
    argv[4].len = p - id;
    ngx_str_set(&argv[5], "OPTIN");

    if (ngx_astralform_redis_internal(node,
                                   ngx_astralform_redis_cache_tracking_reply,
                                   node, 6, argv)
        != NULL)
    {
        node->tracking = NGX_ASTRALFORM_REDIS_TRACKING_ASKED;
        node->track_asked = node->track_gen;
    }
}


/* a connection of node ended: what it cached can no longer be trusted */
void
ngx_astralform_redis_cache_lost(ngx_astralform_redis_node_t *node)
{
    if (node->kind == NGX_ASTRALFORM_REDIS_TRACKER) {
        node->subscribed = 0;
        node->client_id = 0;
        node = node->owner;

    } else if (node->kind != NGX_ASTRALFORM_REDIS_DATA) {
        return;
    }

    ngx_astralform_redis_cache_flush(node);
    node->tracking = NGX_ASTRALFORM_REDIS_TRACKING_OFF;
    node->track_gen++;
}


static void
ngx_astralform_redis_cache_tracking_reply(redisReply *reply, void *data)
{
    ngx_astralform_redis_node_t  *node = data;

    if (ngx_astralform_rw.conf == NULL
        || node->track_asked != node->track_gen
        || node->tracking != NGX_ASTRALFORM_REDIS_TRACKING_ASKED)
    {
        return;                        /* lost since it was asked */
    }

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        node->tracking = NGX_ASTRALFORM_REDIS_TRACKING_OFF;
        ngx_astralform_redis_cache_refused(node, "CLIENT TRACKING", reply);
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_astralform_rw.log, 0,
                   "astralform: redis \"%V\" tracks for client %L",
                   &node->name, (int64_t) node->tracker->client_id);

    node->tracking = NGX_ASTRALFORM_REDIS_TRACKING_ON;
}


/* a read that Redis may not have tracked: trust nothing of node */
static void
ngx_astralform_redis_cache_caching_reply(redisReply *reply, void *data)
{
    ngx_astralform_redis_node_t  *node = data;

    if (ngx_astralform_rw.conf == NULL || reply == NULL
        || reply->type != REDIS_REPLY_ERROR)
    {
        return;                        /* NULL: the connection went */
    }

    ngx_log_error(NGX_LOG_WARN, ngx_astralform_rw.log, 0,
                  "astralform: redis \"%V\" refused CLIENT CACHING: %*s",
                  &node->name, ngx_min(reply->len, 128), reply->str);

    /* as if the connection had gone: tracking is asked for again */
    ngx_astralform_redis_cache_lost(node);
}


static void
ngx_astralform_redis_cache_id_reply(redisReply *reply, void *data)
{
    ngx_astralform_redis_node_t  *t = data;

    if (ngx_astralform_rw.conf == NULL || reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_INTEGER) {
        t->client_id = reply->integer;
        return;
    }

    ngx_astralform_redis_cache_refused(t, "CLIENT ID", reply);
    ngx_astralform_redis_node_close(t);
}


/*
 * ["subscribe", channel, n], then ["message", channel, [key, ...]] or
 * ["message", channel, nil] (everything); NULL when the connection ends.
 */
static void
ngx_astralform_redis_cache_message(redisAsyncContext *ac, void *r,
    void *privdata)
{
    size_t                        i;
    redisReply                   *reply = r, *kind, *keys;
    ngx_astralform_redis_node_t  *t = privdata;

    if (reply == NULL || ngx_astralform_rw.conf == NULL || t->ac != ac
        || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3
        || reply->element[0]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    kind = reply->element[0];
    keys = reply->element[2];

    if (ngx_strcmp(kind->str, "subscribe") == 0) {
        if (t->client_id == 0) {
            return;
        }

        t->subscribed = 1;
        ngx_astralform_redis_cache_track(t->owner);
        return;
    }

    if (ngx_strcmp(kind->str, "message") != 0) {
        return;
    }

    if (keys->type != REDIS_REPLY_ARRAY) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_astralform_rw.log, 0,
                       "astralform: redis \"%V\" flushed: config cache "
                       "emptied", &t->name);
        ngx_astralform_redis_cache_flush(t->owner);
        return;
    }

    for (i = 0; i < keys->elements; i++) {
        if (keys->element[i]->type == REDIS_REPLY_STRING) {
            ngx_astralform_redis_cache_invalidate(t->owner,
                                       (u_char *) keys->element[i]->str,
                                       keys->element[i]->len);
        }
    }
}


/* once per worker: from then on the configuration is read uncached */
static void
ngx_astralform_redis_cache_refused(ngx_astralform_redis_node_t *node,
    const char *cmd, redisReply *reply)
{
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    if (reply == NULL || rw->cache_refused) {
        return;
    }

    rw->cache_refused = 1;
    ngx_astralform_redis_cache_flush(NULL);

    ngx_log_error(NGX_LOG_NOTICE, rw->log, 0,
                  "astralform: redis \"%V\" refused %s (%*s): the "
                  "configuration is read uncached "
                  "(\"astralform_config_cache_size\")", &node->name, cmd,
                  ngx_min(reply->len, 128), reply->str);
}
