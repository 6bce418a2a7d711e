/*
 * Which node is the master of what.
 *
 * single:   the configured Redis.
 * sentinel: following the Sentinel client guidelines: ask the sentinels in
 *           turn (the last one that answered first) for the master's
 *           address, confirm with ROLE that it is a master, and only then
 *           route to it; do that again whenever the master's connection
 *           ends, a command is answered READONLY, LOADING or MASTERDOWN, or
 *           a sentinel publishes +switch-master (one subscribed connection
 *           per worker). Until a master is confirmed, commands wait (within
 *           their timeout) in the pending queue.
 * cluster:  the slot map from CLUSTER SLOTS, asked of the seed nodes and of
 *           every node learnt since, in turn; one pipelined connection per
 *           master. A MOVED reply updates one slot at once and re-reads the
 *           whole map in the background; a lost master re-reads it too.
 *
 * Discovery runs one round at a time; a failed round is retried after a
 * growing delay (50 ms to 1 s). Sentinels and nodes hand out addresses:
 * only numeric ones are connected to (no name lookup on a worker).
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <hiredis/async.h>

#include "ngx_astralform_redis.h"
#include "ngx_astralform_redis_internal.h"


static void ngx_astralform_redis_discover_timer(ngx_event_t *ev);
static void ngx_astralform_redis_discover_failed(const char *why);
static void ngx_astralform_redis_ask_sentinel(void);
static void ngx_astralform_redis_sentinel_reply(redisReply *reply,
    void *data);
static void ngx_astralform_redis_role_reply(redisReply *reply, void *data);
static void ngx_astralform_redis_subscribe(ngx_astralform_redis_node_t *s);
static void ngx_astralform_redis_switch_master(redisAsyncContext *ac,
    void *r, void *privdata);
static void ngx_astralform_redis_ask_slots(void);
static void ngx_astralform_redis_slots_reply(redisReply *reply, void *data);
static ngx_uint_t ngx_astralform_redis_crc16(u_char *p, size_t len);


static ngx_str_t  ngx_astralform_redis_keyless[] = {
    ngx_string("PING"), ngx_string("ROLE"), ngx_string("ECHO"),
    ngx_string("TIME"), ngx_string("INFO"), ngx_null_string
};


ngx_int_t
ngx_astralform_redis_topology_init(ngx_cycle_t *cycle)
{
    ngx_uint_t                      i;
    ngx_astralform_redis_addr_t    *seed;
    ngx_astralform_redis_conf_t    *conf;
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    conf = rw->conf;

    rw->discover_ev.handler = ngx_astralform_redis_discover_timer;
    rw->discover_ev.data = &rw->dummy;
    rw->discover_ev.log = cycle->log;
    rw->discover_ev.cancelable = 1;

    if (conf->mode == NGX_ASTRALFORM_REDIS_SINGLE) {
        if (conf->unix_path.len) {
            rw->single = ngx_astralform_redis_node(conf->unix_path.data,
                                                   conf->unix_path.len, 0,
                                                   NGX_ASTRALFORM_REDIS_DATA);
        } else {
            rw->single = ngx_astralform_redis_node(conf->host.data,
                                                   conf->host.len,
                                                   conf->port,
                                                   NGX_ASTRALFORM_REDIS_DATA);
        }

        if (rw->single == NULL) {
            return NGX_ERROR;
        }

        rw->single->name = conf->addr;

        /* connect early so the first request does not pay for it */
        (void) ngx_astralform_redis_node_ready(rw->single);

        return NGX_OK;
    }

    seed = conf->seeds->elts;

    if (conf->mode == NGX_ASTRALFORM_REDIS_SENTINEL) {
        rw->sentinels = ngx_pcalloc(cycle->pool, conf->seeds->nelts
                                    * sizeof(ngx_astralform_redis_node_t *));
        if (rw->sentinels == NULL) {
            return NGX_ERROR;
        }
    } else {
        rw->slots = ngx_pcalloc(cycle->pool, NGX_ASTRALFORM_REDIS_SLOTS
                                * sizeof(ngx_astralform_redis_node_t *));
        if (rw->slots == NULL) {
            return NGX_ERROR;
        }
    }

    for (i = 0; i < conf->seeds->nelts; i++) {
        if (conf->mode == NGX_ASTRALFORM_REDIS_SENTINEL) {
            rw->sentinels[i] = ngx_astralform_redis_node(seed[i].host.data,
                                              seed[i].host.len, seed[i].port,
                                              NGX_ASTRALFORM_REDIS_SENTINEL);
            if (rw->sentinels[i] == NULL) {
                return NGX_ERROR;
            }

        } else if (ngx_astralform_redis_node(seed[i].host.data,
                                             seed[i].host.len, seed[i].port,
                                             NGX_ASTRALFORM_REDIS_DATA)
                   == NULL)
        {
            return NGX_ERROR;
        }
    }

    ngx_astralform_redis_discover();

    return NGX_OK;
}


/* the master for a key's slot (-1: no key, any master); NULL: none known */
ngx_astralform_redis_node_t *
ngx_astralform_redis_route(ngx_int_t slot)
{
    ngx_uint_t                      i;
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    switch (rw->conf->mode) {

    case NGX_ASTRALFORM_REDIS_SINGLE:
        return rw->single;

    case NGX_ASTRALFORM_REDIS_SENTINEL:
        return rw->master;

    default:
        if (rw->covered == 0) {
            return NULL;
        }

        if (slot >= 0) {
            return rw->slots[slot];
        }

        for (i = 0; i < NGX_ASTRALFORM_REDIS_SLOTS; i++) {
            if (rw->slots[i] != NULL) {
                return rw->slots[i];
            }
        }

        return NULL;
    }
}


ngx_uint_t
ngx_astralform_redis_masters(ngx_str_t *out, ngx_uint_t max)
{
    ngx_uint_t                      i, j, n;
    ngx_astralform_redis_node_t    *node, *seen[64];
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    if (rw->conf == NULL) {
        return 0;
    }

    if (rw->conf->mode != NGX_ASTRALFORM_REDIS_CLUSTER) {
        node = ngx_astralform_redis_route(-1);

        if (node == NULL || max == 0) {
            return 0;
        }

        out[0] = node->name;
        return 1;
    }

    n = 0;

    for (i = 0; i < NGX_ASTRALFORM_REDIS_SLOTS && n < max && n < 64; i++) {
        node = rw->slots[i];

        if (node == NULL) {
            continue;
        }

        for (j = 0; j < n; j++) {
            if (seen[j] == node) {
                break;
            }
        }

        if (j == n) {
            seen[n] = node;
            out[n++] = node->name;
        }
    }

    return n;
}


ngx_uint_t
ngx_astralform_redis_complete(void)
{
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    if (rw->conf == NULL) {
        return 0;
    }

    if (rw->conf->mode == NGX_ASTRALFORM_REDIS_CLUSTER) {
        return rw->covered == NGX_ASTRALFORM_REDIS_SLOTS;
    }

    return ngx_astralform_redis_route(-1) != NULL;
}


void
ngx_astralform_redis_discover(void)
{
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    if (rw->conf->mode == NGX_ASTRALFORM_REDIS_SINGLE || rw->discovering) {
        return;
    }

    if (rw->discover_ev.timer_set) {
        ngx_del_timer(&rw->discover_ev);
    }

    rw->discovering = 1;
    rw->asked = 0;

    if (rw->conf->mode == NGX_ASTRALFORM_REDIS_SENTINEL) {
        ngx_astralform_redis_ask_sentinel();

    } else {
        ngx_astralform_redis_ask_slots();
    }
}


void
ngx_astralform_redis_discover_later(ngx_msec_t delay)
{
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    if (rw->conf->mode == NGX_ASTRALFORM_REDIS_SINGLE || rw->discovering
        || rw->discover_ev.timer_set)
    {
        return;
    }

    ngx_add_timer(&rw->discover_ev, delay);
}


static void
ngx_astralform_redis_discover_timer(ngx_event_t *ev)
{
    if (ngx_astralform_rw.conf != NULL) {
        ngx_astralform_redis_discover();
    }
}


static void
ngx_astralform_redis_discover_failed(const char *why)
{
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    ngx_log_error(NGX_LOG_ERR, rw->log, 0,
                  "astralform: redis \"%V\": %s, trying again in %M ms",
                  &rw->conf->addr, why, rw->discover_backoff);

    rw->discovering = 0;
    ngx_astralform_redis_discover_later(rw->discover_backoff);
    rw->discover_backoff = ngx_min(rw->discover_backoff * 2,
                                   NGX_ASTRALFORM_REDIS_BACKOFF_MAX);
}


/* a node's connection ended: what it was for must be found again */
void
ngx_astralform_redis_lost(ngx_astralform_redis_node_t *node)
{
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    switch (rw->conf->mode) {

    case NGX_ASTRALFORM_REDIS_SENTINEL:
        if (node == rw->sub) {
            rw->sub = NULL;
            ngx_astralform_redis_discover_later(1);

        } else if (node == rw->master) {
            rw->master = NULL;
            ngx_astralform_redis_discover_later(1);
        }
        break;

    case NGX_ASTRALFORM_REDIS_CLUSTER:
        if (node->kind == NGX_ASTRALFORM_REDIS_DATA) {
            ngx_astralform_redis_discover_later(rw->discover_backoff);
        }
        break;

    default:
        break;
    }
}


/* MOVED: that slot is the node's now; the rest of the map may be stale */
void
ngx_astralform_redis_moved(ngx_int_t slot, ngx_astralform_redis_node_t *node)
{
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    if (rw->slots[slot] == NULL) {
        rw->covered++;
    }

    if (rw->slots[slot] != node) {
        ngx_astralform_redis_cache_flush(NULL);
    }

    rw->slots[slot] = node;

    ngx_astralform_redis_discover();
}


/* --- Sentinel ------------------------------------------------------------ */


static void
ngx_astralform_redis_ask_sentinel(void)
{
    ngx_str_t                       argv[3];
    ngx_uint_t                      i, n;
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    n = rw->conf->seeds->nelts;

    ngx_str_set(&argv[0], "SENTINEL");
    ngx_str_set(&argv[1], "get-master-addr-by-name");
    argv[2] = rw->conf->master_name;

    while (rw->asked < n) {
        i = (rw->preferred + rw->asked) % n;

        if (ngx_astralform_redis_internal(rw->sentinels[i],
                                          ngx_astralform_redis_sentinel_reply,
                                          (void *) (uintptr_t) i, 3, argv)
            != NULL)
        {
            return;
        }

        rw->asked++;
    }

    ngx_astralform_redis_discover_failed("no sentinel answered");
}


static void
ngx_astralform_redis_sentinel_reply(redisReply *reply, void *data)
{
    ngx_uint_t                      i = (uintptr_t) data;
    ngx_int_t                       port;
    ngx_str_t                       argv[1];
    redisReply                     *h, *p;
    ngx_astralform_redis_node_t    *s, *node;
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    if (rw->conf == NULL) {
        return;
    }

    s = rw->sentinels[i];

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_STRING)
    {
        ngx_log_error(NGX_LOG_WARN, rw->log, 0,
                      "astralform: sentinel \"%V\" does not name a master "
                      "\"%V\": %s", &s->name, &rw->conf->master_name,
                      reply == NULL ? "no reply"
                      : reply->type == REDIS_REPLY_ERROR ? reply->str
                      : "unknown master");
        rw->asked++;
        ngx_astralform_redis_ask_sentinel();
        return;
    }

    h = reply->element[0];
    p = reply->element[1];
    port = ngx_atoi((u_char *) p->str, p->len);

    if (port == NGX_ERROR || port < 1 || port > 65535
        || !ngx_astralform_redis_numeric((u_char *) h->str, h->len))
    {
        ngx_log_error(NGX_LOG_ERR, rw->log, 0,
                      "astralform: sentinel \"%V\" names master \"%*s:%*s\", "
                      "not an address (announce IP addresses)", &s->name,
                      ngx_min(h->len, 64), h->str, ngx_min(p->len, 8),
                      p->str);
        rw->asked++;
        ngx_astralform_redis_ask_sentinel();
        return;
    }

    /* the guidelines: the sentinel that answered is asked first next time */
    rw->preferred = i;
    ngx_astralform_redis_subscribe(s);

    node = ngx_astralform_redis_node((u_char *) h->str, h->len, port,
                                     NGX_ASTRALFORM_REDIS_DATA);

    ngx_str_set(&argv[0], "ROLE");

    if (node == NULL
        || ngx_astralform_redis_internal(node,
                                         ngx_astralform_redis_role_reply,
                                         node, 1, argv)
           == NULL)
    {
        ngx_astralform_redis_discover_failed("the master named by the "
                                             "sentinels is unreachable");
    }
}


static void
ngx_astralform_redis_role_reply(redisReply *reply, void *data)
{
    ngx_astralform_redis_node_t  *node = data;

    ngx_uint_t                      i;
    redisReply                     *role;
    ngx_astralform_redis_node_t   **np;
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    if (rw->conf == NULL) {
        return;
    }

    role = (reply != NULL && reply->type == REDIS_REPLY_ARRAY
            && reply->elements > 0) ? reply->element[0] : NULL;

    if (role == NULL || role->type != REDIS_REPLY_STRING
        || role->len != 6 || ngx_strncmp(role->str, "master", 6) != 0)
    {
        /* no reply: why (refused, timed out) is logged already */
        if (reply != NULL) {
            ngx_log_error(NGX_LOG_WARN, rw->log, 0,
                          "astralform: redis \"%V\" named by the sentinels "
                          "is not a master (%s)", &node->name,
                          role && role->type == REDIS_REPLY_STRING
                          ? role->str : reply->type == REDIS_REPLY_ERROR
                          ? reply->str : "no role");
        }

        ngx_astralform_redis_discover_failed("no master confirmed");
        return;
    }

    if (rw->master != node) {
        ngx_log_error(NGX_LOG_NOTICE, rw->log, 0,
                      "astralform: redis master \"%V\" is \"%V\"",
                      &rw->conf->master_name, &node->name);

        /* what any master told the cache is from before the switch */
        ngx_astralform_redis_cache_flush(NULL);
    }

    rw->master = node;
    rw->discovering = 0;
    rw->discover_backoff = NGX_ASTRALFORM_REDIS_BACKOFF_MIN;

    /* a demoted master keeps answering what is in flight, then goes */
    np = rw->nodes.elts;

    for (i = 0; i < rw->nodes.nelts; i++) {
        if (np[i] != node && np[i]->kind == NGX_ASTRALFORM_REDIS_DATA) {
            ngx_astralform_redis_node_close(np[i]);

            if (np[i]->tracker != NULL) {
                ngx_astralform_redis_node_close(np[i]->tracker);
            }
        }
    }

    ngx_astralform_redis_flush_pending();
}


static void
ngx_astralform_redis_subscribe(ngx_astralform_redis_node_t *s)
{
    ngx_astralform_redis_node_t    *sub;
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    if (rw->sub != NULL) {
        return;
    }

    sub = ngx_astralform_redis_node(s->host, ngx_strlen(s->host), s->port,
                                    NGX_ASTRALFORM_REDIS_SUBSCRIBER);

    if (sub == NULL || ngx_astralform_redis_node_ready(sub) != NGX_OK) {
        return;
    }

    if (redisAsyncCommand(sub->ac, ngx_astralform_redis_switch_master, NULL,
                          "SUBSCRIBE +switch-master")
        != REDIS_OK)
    {
        return;
    }

    rw->sub = sub;
}


/* "message" "+switch-master" "<name> <old-ip> <old-port> <ip> <port>" */
static void
ngx_astralform_redis_switch_master(redisAsyncContext *ac, void *r,
    void *privdata)
{
    u_char                         *p, *last;
    redisReply                     *reply = r, *msg;
    ngx_str_t                      *name;
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    if (reply == NULL || rw->conf == NULL
        || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3
        || reply->element[0]->type != REDIS_REPLY_STRING
        || ngx_strcmp(reply->element[0]->str, "message") != 0
        || reply->element[2]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    msg = reply->element[2];
    name = &rw->conf->master_name;
    p = (u_char *) msg->str;
    last = p + msg->len;

    if ((size_t) (last - p) <= name->len || p[name->len] != ' '
        || ngx_strncmp(p, name->data, name->len) != 0)
    {
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, rw->log, 0,
                  "astralform: sentinel: +switch-master %*s",
                  ngx_min(msg->len, 128), msg->str);

    /* where to go is confirmed as on any reconnect: sentinels, then ROLE */
    rw->master = NULL;
    rw->discovering = 0;
    ngx_astralform_redis_discover();
}


/* --- Cluster ------------------------------------------------------------- */


static void
ngx_astralform_redis_ask_slots(void)
{
    ngx_str_t                       argv[2];
    ngx_astralform_redis_node_t   **np;
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    ngx_str_set(&argv[0], "CLUSTER");
    ngx_str_set(&argv[1], "SLOTS");

    np = rw->nodes.elts;

    while (rw->asked < rw->nodes.nelts) {
        if (np[rw->asked]->kind == NGX_ASTRALFORM_REDIS_DATA
            && ngx_astralform_redis_internal(np[rw->asked],
                                             ngx_astralform_redis_slots_reply,
                                             np[rw->asked], 2, argv)
               != NULL)
        {
            return;
        }

        rw->asked++;
    }

    ngx_astralform_redis_discover_failed("no cluster node gave its slots");
}


/* [[start, end, [ip, port, id], replica...], ...] */
static void
ngx_astralform_redis_slots_reply(redisReply *reply, void *data)
{
    ngx_astralform_redis_node_t  *from = data;

    u_char                         *host;
    size_t                          len, i;
    ngx_int_t                       start, end, s;
    redisReply                     *e, *m;
    ngx_astralform_redis_node_t    *node;
    ngx_astralform_redis_worker_t  *rw = &ngx_astralform_rw;

    if (rw->conf == NULL) {
        return;
    }

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements == 0)
    {
        ngx_log_error(NGX_LOG_WARN, rw->log, 0,
                      "astralform: redis \"%V\" gave no slot map: %s",
                      &from->name,
                      reply == NULL ? "no reply"
                      : reply->type == REDIS_REPLY_ERROR ? reply->str
                      : "no slots");
        rw->asked++;
        ngx_astralform_redis_ask_slots();
        return;
    }

    /* a slot that moved: its keys' invalidations now come from elsewhere */
    ngx_astralform_redis_cache_flush(NULL);

    ngx_memzero(rw->slots,
                NGX_ASTRALFORM_REDIS_SLOTS * sizeof(ngx_astralform_redis_node_t *));
    rw->covered = 0;

    for (i = 0; i < reply->elements; i++) {
        e = reply->element[i];

        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3
            || e->element[0]->type != REDIS_REPLY_INTEGER
            || e->element[1]->type != REDIS_REPLY_INTEGER
            || e->element[2]->type != REDIS_REPLY_ARRAY
            || e->element[2]->elements < 2
            || e->element[2]->element[0]->type != REDIS_REPLY_STRING
            || e->element[2]->element[1]->type != REDIS_REPLY_INTEGER)
        {
            continue;
        }

        start = (ngx_int_t) e->element[0]->integer;
        end = (ngx_int_t) e->element[1]->integer;
        m = e->element[2];

        host = (u_char *) m->element[0]->str;
        len = m->element[0]->len;

        /* an empty address: the node that answered */
        if (len == 0) {
            host = from->host;
            len = ngx_strlen(from->host);
        }

        if (start < 0 || end >= NGX_ASTRALFORM_REDIS_SLOTS || start > end
            || !ngx_astralform_redis_numeric(host, len))
        {
            continue;
        }

        node = ngx_astralform_redis_node(host, len,
                                         (ngx_int_t) m->element[1]->integer,
                                         NGX_ASTRALFORM_REDIS_DATA);
        if (node == NULL) {
            continue;
        }

        for (s = start; s <= end; s++) {
            rw->slots[s] = node;
        }

        rw->covered += end - start + 1;
    }

    rw->discovering = 0;
    rw->discover_backoff = NGX_ASTRALFORM_REDIS_BACKOFF_MIN;

    if (rw->covered < NGX_ASTRALFORM_REDIS_SLOTS) {
        ngx_log_error(NGX_LOG_WARN, rw->log, 0,
                      "astralform: redis cluster \"%V\": %ui of %d slots "
                      "have a master", &rw->conf->addr, rw->covered,
                      NGX_ASTRALFORM_REDIS_SLOTS);
    }

    ngx_astralform_redis_flush_pending();
}


/*
 * The slot of a command's key (the rule in ngx_astralform_redis.h); -1 for
 * a command without one. A {tag} in the key hashes alone.
 */
ngx_int_t
ngx_astralform_redis_keyslot(ngx_uint_t argc, ngx_str_t *argv)
{
    u_char     *p, *last, *open, *close;
    ngx_str_t  *name, *key, *k;

    name = &argv[0];

    if ((name->len == 4 && ngx_strncasecmp(name->data, (u_char *) "EVAL", 4)
         == 0)
        || (name->len >= 5
            && (ngx_strncasecmp(name->data, (u_char *) "EVAL", 4) == 0
                || ngx_strncasecmp(name->data, (u_char *) "FCALL", 5) == 0)))
    {
        if (argc < 4 || ngx_atoi(argv[2].data, argv[2].len) < 1) {
            return -1;
        }

        key = &argv[3];

    } else {
        for (k = ngx_astralform_redis_keyless; k->len; k++) {
            if (k->len == name->len
                && ngx_strncasecmp(k->data, name->data, name->len) == 0)
            {
                return -1;
            }
        }

        if (argc < 2) {
            return -1;
        }

        key = &argv[1];
    }

    p = key->data;
    last = key->data + key->len;

    open = ngx_strlchr(p, last, '{');

    if (open != NULL) {
        close = ngx_strlchr(open + 1, last, '}');

        if (close != NULL && close > open + 1) {
            p = open + 1;
            last = close;
        }
    }

    return ngx_astralform_redis_crc16(p, last - p)
           & (NGX_ASTRALFORM_REDIS_SLOTS - 1);
}


/* CRC-16/XMODEM (polynomial 0x1021), as Redis Cluster hashes keys */
static ngx_uint_t
ngx_astralform_redis_crc16(u_char *p, size_t len)
{
    ngx_uint_t  crc, bit;

    crc = 0;

    while (len--) {
        crc ^= (ngx_uint_t) *p++ << 8;

        for (bit = 0; bit < 8; bit++) {
            crc = (crc & 0x8000) ? ((crc << 1) ^ 0x1021) : (crc << 1);
            crc &= 0xffff;
        }
    }

    return crc;
}
