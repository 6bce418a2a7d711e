/*
 * Provider calls over nginx's own connections (ngx_astralform_upstream.h).
 *
 * Why: a tool call spent more in libcurl (URL parsing, header lists, its
 * own connection checks: four recvfrom() and two poll() per call) than in
 * all of the module's own work; nginx's upstream machinery does one
 * send and the reads the answer needs. bench/run.sh measures both.
 *
 * One request, in phases: take a kept connection of the origin, or resolve
 * (a literal address needs none), connect, TLS handshake; send the request
 * in one write; read the head into a buffer of its own, then the body into
 * one buffer (its size known from Content-Length) or a growing one
 * (chunked, decoded in place, or until the close). A connection is kept
 * when the answer's framing ended exactly where the connection's data
 * did and the provider did not ask to close it.
 *
 * A kept connection sits in the worker's idle list, newest first, with a
 * read handler that closes it when the provider does (or sends anything)
 * and an idle timer; c->idle lets a graceful shutdown close it. A request
 * that fails on a kept connection before any byte of the answer came is
 * retried once on a fresh one, with the rules and the time budget the
 * libcurl path has (ngx_astralform_http.h).
 *
 * done() is never called from inside start(): a failure found there (a
 * connect() refused at once, a cached name that does not resolve) is
 * reported from a posted event.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <ngx_http.h>

#include "ngx_astralform_upstream.h"
#include "ngx_astralform_http1.h"


#define NGX_ASTRALFORM_UP_HEAD          4096       /* first head buffer */
#define NGX_ASTRALFORM_UP_MAX_HEAD      (64 * 1024)
#define NGX_ASTRALFORM_UP_BODY          16384      /* first body buffer */
#define NGX_ASTRALFORM_UP_IDLE          64         /* kept, per worker */
#define NGX_ASTRALFORM_UP_IDLE_TIMEOUT  50000      /* below providers' 60 s */
#define NGX_ASTRALFORM_UP_REQUESTS      1000       /* per connection */
#define NGX_ASTRALFORM_UP_PEEK_AFTER    1000       /* ms idle: check first */
#define NGX_ASTRALFORM_UP_INTERIM       8          /* 1xx before the answer */
#define NGX_ASTRALFORM_UP_KEY           (sizeof("s:[]:65535") + 255)


typedef enum {
    NGX_ASTRALFORM_UP_RESOLVE = 0,
    NGX_ASTRALFORM_UP_CONNECT,
    NGX_ASTRALFORM_UP_SEND,
    NGX_ASTRALFORM_UP_HEAD_PHASE,
    NGX_ASTRALFORM_UP_BODY_PHASE,
    NGX_ASTRALFORM_UP_POSTED              /* done() waits for an event */
} ngx_astralform_up_phase_e;


/* a connection to one origin; lives in its c->pool */
typedef struct {
    ngx_connection_t               *connection;
    ngx_queue_t                     queue;         /* in the idle list */
    ngx_log_t                       log;           /* the worker's */
    ngx_msec_t                      idle_since;
    ngx_uint_t                      requests;
    size_t                          key_len;
    u_char                          key[NGX_ASTRALFORM_UP_KEY];
} ngx_astralform_up_conn_t;


/* one request's state, in hr->pool */
typedef struct {
    ngx_astralform_http_req_t      *hr;
    ngx_astralform_up_conn_t       *conn;
    ngx_resolver_ctx_t             *resolve;
    ngx_peer_connection_t           peer;
    ngx_sockaddr_t                  sockaddr;
    socklen_t                       socklen;
    ngx_str_t                       name;          /* host, no brackets */
    u_char                         *cname;         /* name, NUL-terminated */
    in_port_t                       port;
    u_char                          key[NGX_ASTRALFORM_UP_KEY];
    size_t                          key_len;
    ngx_buf_t                       out;           /* the request */
    u_char                         *head;
    size_t                          head_size;
    size_t                          head_len;
    size_t                          head_seen;
    ngx_astralform_http1_head_t     h;
    ngx_astralform_http1_chunked_t  chunked;
    u_char                         *body;
    size_t                          body_size;
    size_t                          body_len;
    ngx_astralform_up_phase_e       phase;
    ngx_uint_t                      interim;       /* 1xx answers read */
    ngx_event_t                     posted;
    const char                     *why;           /* of a failure, logged */
    unsigned                        ssl:1;
    unsigned                        literal:1;     /* name is an address */
    unsigned                        reused:1;
    unsigned                        sent:1;        /* of the request */
    unsigned                        got:1;         /* of the answer */
    unsigned                        head_request:1;
    unsigned                        starting:1;
} ngx_astralform_up_req_t;


typedef struct {
    ngx_astralform_http_conf_t      conf;
    ngx_log_t                      *log;
    ngx_ssl_t                       ssl;
    ngx_resolver_t                 *resolver;      /* http{} "resolver" */
    ngx_msec_t                      resolver_timeout;
    ngx_queue_t                     idle;          /* newest first */
    ngx_queue_t                     running;       /* of hr->queue */
    ngx_uint_t                      nidle;
    unsigned                        enabled:1;
} ngx_astralform_up_worker_t;


static ngx_int_t ngx_astralform_up_parse_url(ngx_astralform_up_req_t *ur,
    ngx_str_t *path);
static ngx_int_t ngx_astralform_up_build(ngx_astralform_up_req_t *ur,
    ngx_str_t *path);
static ngx_uint_t ngx_astralform_up_own_header(ngx_str_t *h,
    ngx_uint_t *given);
static void ngx_astralform_up_run(ngx_astralform_up_req_t *ur);
static ngx_astralform_up_conn_t *ngx_astralform_up_take_idle(
    ngx_astralform_up_req_t *ur);
static void ngx_astralform_up_resolve(ngx_astralform_up_req_t *ur);
static void ngx_astralform_up_resolved(ngx_resolver_ctx_t *ctx);
static void ngx_astralform_up_connect(ngx_astralform_up_req_t *ur);
static void ngx_astralform_up_connected(ngx_event_t *ev);
static void ngx_astralform_up_handshake(ngx_astralform_up_req_t *ur);
static void ngx_astralform_up_handshaked(ngx_connection_t *c);
static void ngx_astralform_up_start_send(ngx_astralform_up_req_t *ur);
static void ngx_astralform_up_write_handler(ngx_event_t *ev);
static void ngx_astralform_up_read_handler(ngx_event_t *ev);
static ngx_int_t ngx_astralform_up_read_head(ngx_astralform_up_req_t *ur,
    ngx_connection_t *c);
static ngx_int_t ngx_astralform_up_got_head(ngx_astralform_up_req_t *ur);
static ngx_int_t ngx_astralform_up_read_body(ngx_astralform_up_req_t *ur,
    ngx_connection_t *c);
static ngx_int_t ngx_astralform_up_body_room(ngx_astralform_up_req_t *ur);
static ngx_int_t ngx_astralform_up_take_body(ngx_astralform_up_req_t *ur,
    size_t n);
static void ngx_astralform_up_fail(ngx_astralform_up_req_t *ur,
    ngx_astralform_http_error_e error, const char *why);
static void ngx_astralform_up_finish(ngx_astralform_up_req_t *ur,
    ngx_astralform_http_error_e error);
static void ngx_astralform_up_posted_handler(ngx_event_t *ev);
static void ngx_astralform_up_end(ngx_astralform_up_req_t *ur);
static void ngx_astralform_up_keep(ngx_astralform_up_conn_t *conn);
static void ngx_astralform_up_idle_handler(ngx_event_t *ev);
static ngx_uint_t ngx_astralform_up_quiet(ngx_connection_t *c);
static void ngx_astralform_up_dummy_handler(ngx_event_t *ev);
static void ngx_astralform_up_close(ngx_astralform_up_conn_t *conn);
static void ngx_astralform_up_expire_handler(ngx_event_t *ev);


static ngx_astralform_up_worker_t  ngx_astralform_up_worker;


ngx_int_t
ngx_astralform_upstream_start(ngx_astralform_http_req_t *hr)
{
    ngx_str_t                    path;
    ngx_astralform_up_req_t     *ur;
    ngx_astralform_up_worker_t  *w;

    w = &ngx_astralform_up_worker;

    if (!w->enabled) {
        return NGX_DECLINED;
    }

    ur = hr->upstream;

    if (ur == NULL) {
        ur = ngx_pcalloc(hr->pool, sizeof(ngx_astralform_up_req_t));
        if (ur == NULL) {
            return NGX_ERROR;
        }

    } else {
        ngx_memzero(ur, sizeof(ngx_astralform_up_req_t));
    }

    ur->hr = hr;

    ngx_astralform_http_set_host(hr);

    if (ngx_astralform_up_parse_url(ur, &path) != NGX_OK) {
        return NGX_DECLINED;
    }

    if (ngx_astralform_up_build(ur, &path) != NGX_OK) {
        return NGX_ERROR;
    }

    hr->upstream = ur;
    hr->error = NGX_ASTRALFORM_HTTP_OK;
    hr->status = 0;
    hr->resp_headers.nelts = 0;
    ngx_str_set(&hr->resp_body, "");

    ur->posted.handler = ngx_astralform_up_posted_handler;
    ur->posted.data = ur;
    ur->posted.log = hr->log;

    hr->expire.handler = ngx_astralform_up_expire_handler;
    hr->expire.data = ur;
    hr->expire.log = hr->log;

    /* a call in flight holds a graceful shutdown, as a proxied one does */
    hr->expire.cancelable = 0;

    ngx_add_timer(&hr->expire,
                  (ngx_msec_int_t) (hr->deadline - ngx_current_msec) > 0
                  ? hr->deadline - ngx_current_msec : 1);

    hr->running = 1;
    ngx_queue_insert_tail(&w->running, &hr->queue);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, hr->log, 0,
                   "astralform upstream start: %V %V", &hr->method,
                   &hr->host);

    ur->starting = 1;
    ngx_astralform_up_run(ur);
    ur->starting = 0;

    return NGX_OK;
}


/*
 * scheme://host[:port][/path][?query][#fragment] with printable ASCII only;
 * anything else (userinfo, an IDN, a space) is left to libcurl's rules.
 */

static ngx_int_t
ngx_astralform_up_parse_url(ngx_astralform_up_req_t *ur, ngx_str_t *path)
{
    u_char                      *p, *last, *host, *host_end, *port;
    size_t                       n;
    ngx_int_t                    num;
    ngx_addr_t                   addr;
    ngx_astralform_http_req_t   *hr;
    ngx_astralform_up_worker_t  *w;

    hr = ur->hr;
    w = &ngx_astralform_up_worker;
    p = hr->url.data;
    last = p + hr->url.len;

    for (n = 0; n < hr->url.len; n++) {
        if (p[n] <= 0x20 || p[n] >= 0x7f) {
            return NGX_DECLINED;
        }
    }

    if (last - p > 8 && ngx_strncasecmp(p, (u_char *) "https://", 8) == 0) {
        ur->ssl = 1;
        ur->port = 443;
        p += 8;

    } else if (last - p > 7
               && ngx_strncasecmp(p, (u_char *) "http://", 7) == 0)
    {
        ur->port = 80;
        p += 7;

    } else {
        return NGX_DECLINED;
    }

    host = p;

    while (p < last && *p != '/' && *p != '?' && *p != '#') {
        if (*p == '@' || *p == '%') {
            return NGX_DECLINED;
        }

        p++;
    }

    host_end = p;
    port = NULL;

    if (host < host_end && *host == '[') {
        p = ngx_strlchr(host, host_end, ']');
        if (p == NULL) {
            return NGX_DECLINED;
        }

        ur->name.data = host + 1;
        ur->name.len = p - host - 1;
        p++;

        if (p < host_end) {
            if (*p != ':') {
                return NGX_DECLINED;
            }

            port = p + 1;
        }

    } else {
        p = ngx_strlchr(host, host_end, ':');
        ur->name.data = host;
        ur->name.len = (p ? p : host_end) - host;
        port = p ? p + 1 : NULL;
    }

    if (port != NULL) {
        num = ngx_atoi(port, host_end - port);
        if (num < 1 || num > 65535) {
            return NGX_DECLINED;
        }

        ur->port = (in_port_t) num;
    }

    if (ur->name.len == 0 || ur->name.len > 253) {
        return NGX_DECLINED;
    }

    /* an address needs no resolver; a name only letters, digits, - . _ */

    if (ngx_parse_addr(hr->pool, &addr, ur->name.data, ur->name.len)
        == NGX_OK)
    {
        ngx_memcpy(&ur->sockaddr, addr.sockaddr, addr.socklen);
        ur->socklen = addr.socklen;
        ngx_inet_set_port(&ur->sockaddr.sockaddr, ur->port);
        ur->literal = 1;

    } else {
        if (w->resolver == NULL) {
            return NGX_DECLINED;
        }

        for (n = 0; n < ur->name.len; n++) {
            if (!(isalnum(ur->name.data[n]) || ur->name.data[n] == '-'
                  || ur->name.data[n] == '.' || ur->name.data[n] == '_'))
            {
                return NGX_DECLINED;
            }
        }
    }

    ur->cname = ngx_pnalloc(hr->pool, ur->name.len + 1);
    if (ur->cname == NULL) {
        return NGX_DECLINED;
    }

    (void) ngx_cpystrn(ur->cname, ur->name.data, ur->name.len + 1);

    /* the origin: a kept connection serves only its own */

    ur->key_len = ngx_snprintf(ur->key, NGX_ASTRALFORM_UP_KEY, "%c:%V:%d",
                               ur->ssl ? 's' : 'p', &ur->name,
                               (int) ur->port)
                  - ur->key;

    /* the path goes out as written; the fragment stays here */

    p = host_end;

    while (host_end < last && *host_end != '#') {
        host_end++;
    }

    path->data = p;
    path->len = host_end - p;

    return NGX_OK;
}


/*
 * The request head and body in one buffer: one write. The caller's
 * headers follow libcurl's conventions ("Name;" sends an empty header,
 * "Name:" drops one the client would add); Content-Length and
 * Transfer-Encoding are this client's alone.
 */

static ngx_int_t
ngx_astralform_up_build(ngx_astralform_up_req_t *ur, ngx_str_t *path)
{
    u_char                     *p, *last;
    size_t                      size;
    ngx_str_t                  *m, *h, host;
    ngx_uint_t                  i, send_body, given, absolute;
    ngx_astralform_http_req_t  *hr;

    /* bits of "given": what the caller set of the client's own headers */

    enum { given_host = 1, given_ua = 2, given_accept = 4,
           given_encoding = 8, given_type = 16 };

    hr = ur->hr;
    m = &hr->method;

    if (m->len == 0) {
        ngx_str_set(m, "GET");
    }

    for (i = 0; i < m->len; i++) {
        if (m->data[i] < 'A' || m->data[i] > 'Z') {
            return NGX_ERROR;
        }
    }

    ur->head_request = (m->len == 4 && ngx_strncmp(m->data, "HEAD", 4) == 0);

    send_body = !ur->head_request
                && (hr->body.len
                    || (m->len == 4 && ngx_strncmp(m->data, "POST", 4) == 0)
                    || (m->len == 3 && ngx_strncmp(m->data, "PUT", 3) == 0)
                    || (m->len == 5
                        && ngx_strncmp(m->data, "PATCH", 5) == 0));

    /* Host: the name as in the URL, the port if not the scheme's own */

    host = hr->host;

    absolute = (path->len == 0 || path->data[0] != '/');

    size = m->len + 1 + absolute + path->len + sizeof(" HTTP/1.1" CRLF) - 1
           + sizeof("Host: " CRLF) - 1 + host.len
           + sizeof("User-Agent: astralform" CRLF) - 1
           + sizeof("Accept: */*" CRLF) - 1
           + sizeof("Accept-Encoding: identity" CRLF) - 1
           + sizeof("Content-Type: application/x-www-form-urlencoded" CRLF)
           - 1
           + sizeof("Content-Length: " CRLF) - 1 + NGX_SIZE_T_LEN
           + sizeof(CRLF) - 1 + (send_body ? hr->body.len : 0);

    h = hr->headers.elts;
    given = 0;

    for (i = 0; i < hr->headers.nelts; i++) {
        size += h[i].len + sizeof(CRLF) - 1;
        (void) ngx_astralform_up_own_header(&h[i], &given);
    }

    p = ngx_pnalloc(hr->pool, size);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ur->out.start = p;
    ur->out.pos = p;

    p = ngx_cpymem(p, m->data, m->len);
    *p++ = ' ';

    if (absolute) {
        *p++ = '/';
    }

    p = ngx_cpymem(p, path->data, path->len);
    p = ngx_cpymem(p, " HTTP/1.1" CRLF, sizeof(" HTTP/1.1" CRLF) - 1);

    if (!(given & given_host)) {
        p = ngx_sprintf(p, "Host: %V" CRLF, &host);
    }

    if (!(given & given_ua)) {
        p = ngx_cpymem(p, "User-Agent: astralform" CRLF,
                       sizeof("User-Agent: astralform" CRLF) - 1);
    }

    if (!(given & given_accept)) {
        p = ngx_cpymem(p, "Accept: */*" CRLF, sizeof("Accept: */*" CRLF) - 1);
    }

    /* an answer is not decoded here: none is offered */

    if (!(given & given_encoding)) {
        p = ngx_cpymem(p, "Accept-Encoding: identity" CRLF,
                       sizeof("Accept-Encoding: identity" CRLF) - 1);
    }

    if (send_body && !(given & given_type)) {
        p = ngx_cpymem(p,
                  "Content-Type: application/x-www-form-urlencoded" CRLF,
                  sizeof("Content-Type: application/x-www-form-urlencoded"
                         CRLF) - 1);
    }

    for (i = 0; i < hr->headers.nelts; i++) {
        last = h[i].data + h[i].len;

        if (ngx_astralform_up_own_header(&h[i], NULL)) {
            continue;
        }

        if (h[i].len && last[-1] == ';'
            && ngx_strlchr(h[i].data, last, ':') == NULL)
        {
            p = ngx_cpymem(p, h[i].data, h[i].len - 1);
            *p++ = ':';

        } else {
            p = ngx_cpymem(p, h[i].data, h[i].len);
        }

        *p++ = CR; *p++ = LF;
    }

    if (send_body) {
        p = ngx_sprintf(p, "Content-Length: %uz" CRLF CRLF, hr->body.len);
        p = ngx_cpymem(p, hr->body.data, hr->body.len);

    } else {
        *p++ = CR; *p++ = LF;
    }

    ur->out.last = p;

    return NGX_OK;
}


/*
 * Whether a caller's header is one this client writes itself, or drops
 * ("Name:"); given collects the names of those the caller set.
 */

static ngx_uint_t
ngx_astralform_up_own_header(ngx_str_t *h, ngx_uint_t *given)
{
    static struct {
        ngx_str_t   name;
        ngx_uint_t  bit;
    } own[] = {
        { ngx_string("Host"), 1 },
        { ngx_string("User-Agent"), 2 },
        { ngx_string("Accept"), 4 },
        { ngx_string("Accept-Encoding"), 8 },
        { ngx_string("Content-Type"), 16 },
        { ngx_string("Content-Length"), 0 },
        { ngx_string("Transfer-Encoding"), 0 },
        { ngx_string("Expect"), 0 }
    };

    u_char      *p, *last;
    size_t       len;
    ngx_uint_t   i;

    last = h->data + h->len;

    for (p = h->data; p < last && *p != ':' && *p != ';'; p++) {
        /* the name */
    }

    len = p - h->data;

    for (i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
        if (own[i].name.len != len
            || ngx_strncasecmp(h->data, own[i].name.data, len) != 0)
        {
            continue;
        }

        if (given != NULL) {
            *given |= own[i].bit;
        }

        /* framing is ours; a drop sends nothing; a value replaces ours */

        return own[i].bit == 0 || (p < last && *p == ':' && p + 1 == last);
    }

    /* "Name:" of any other header: curl would drop it, nothing to send */

    return p < last && *p == ':' && p + 1 == last;
}


/* an attempt: on a kept connection if there is one, else a new one */

static void
ngx_astralform_up_run(ngx_astralform_up_req_t *ur)
{
    ur->conn = ur->hr->retried ? NULL : ngx_astralform_up_take_idle(ur);

    if (ur->conn != NULL) {
        ur->reused = 1;
        ngx_astralform_up_start_send(ur);
        return;
    }

    if (ur->literal) {
        ngx_astralform_up_connect(ur);
        return;
    }

    ngx_astralform_up_resolve(ur);
}


static ngx_astralform_up_conn_t *
ngx_astralform_up_take_idle(ngx_astralform_up_req_t *ur)
{
    ngx_queue_t                 *q, *next;
    ngx_connection_t            *c;
    ngx_astralform_up_conn_t    *conn;
    ngx_astralform_up_worker_t  *w;

    w = &ngx_astralform_up_worker;

    for (q = ngx_queue_head(&w->idle);
         q != ngx_queue_sentinel(&w->idle);
         q = next)
    {
        next = ngx_queue_next(q);
        conn = ngx_queue_data(q, ngx_astralform_up_conn_t, queue);

        if (conn->key_len != ur->key_len
            || ngx_memcmp(conn->key, ur->key, ur->key_len) != 0)
        {
            continue;
        }

        c = conn->connection;

        /*
         * A connection idle for a while may have been closed by a provider
         * whose FIN this worker has not read yet: one look saves a POST
         * that could not be retried. A busy one is used as it is.
         */

        if (ngx_current_msec - conn->idle_since
            >= NGX_ASTRALFORM_UP_PEEK_AFTER
            && !ngx_astralform_up_quiet(c))
        {
            ngx_astralform_up_close(conn);
            continue;
        }

        ngx_queue_remove(q);
        w->nidle--;

        if (c->read->timer_set) {
            ngx_del_timer(c->read);
        }

        c->idle = 0;
        c->read->handler = ngx_astralform_up_read_handler;
        c->write->handler = ngx_astralform_up_write_handler;
        c->data = ur;
        conn->requests++;

        return conn;
    }

    return NULL;
}


static void
ngx_astralform_up_resolve(ngx_astralform_up_req_t *ur)
{
    ngx_resolver_ctx_t          *ctx, temp;
    ngx_astralform_up_worker_t  *w;

    w = &ngx_astralform_up_worker;
    ur->phase = NGX_ASTRALFORM_UP_RESOLVE;

    temp.name = ur->name;

    ctx = ngx_resolve_start(w->resolver, &temp);

    if (ctx == NULL || ctx == NGX_NO_RESOLVER) {
        ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_CONNECT,
                               "the resolver cannot be used");
        return;
    }

    ctx->name = ur->name;
    ctx->handler = ngx_astralform_up_resolved;
    ctx->data = ur;
    ctx->timeout = w->resolver_timeout;

    ur->resolve = ctx;

    /* a cached name calls the handler from in here */

    if (ngx_resolve_name(ctx) != NGX_OK) {
        ur->resolve = NULL;
        ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_CONNECT,
                               "the resolver failed");
    }
}


static void
ngx_astralform_up_resolved(ngx_resolver_ctx_t *ctx)
{
    ngx_uint_t                i;
    ngx_astralform_up_req_t  *ur;

    ur = ctx->data;
    ur->resolve = NULL;

    if (ctx->state || ctx->naddrs == 0) {
        ngx_log_error(NGX_LOG_ERR, ur->hr->log, 0,
                      "astralform: \"%V\" could not be resolved (%i: %s)",
                      &ctx->name, ctx->state,
                      ngx_resolver_strerror(ctx->state));
        ngx_resolve_name_done(ctx);
        ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_CONNECT,
                               "the name could not be resolved");
        return;
    }

    /* spread new connections over the addresses */

    i = ngx_random() % ctx->naddrs;

    ngx_memcpy(&ur->sockaddr, ctx->addrs[i].sockaddr, ctx->addrs[i].socklen);
    ur->socklen = ctx->addrs[i].socklen;
    ngx_inet_set_port(&ur->sockaddr.sockaddr, ur->port);

    ngx_resolve_name_done(ctx);

    ngx_astralform_up_connect(ur);
}


static void
ngx_astralform_up_connect(ngx_astralform_up_req_t *ur)
{
    ngx_int_t                    rc;
    ngx_pool_t                  *pool;
    ngx_connection_t            *c;
    ngx_astralform_up_conn_t    *conn;
    ngx_astralform_up_worker_t  *w;

    w = &ngx_astralform_up_worker;
    ur->phase = NGX_ASTRALFORM_UP_CONNECT;
    ur->reused = 0;

    ngx_memzero(&ur->peer, sizeof(ngx_peer_connection_t));
    ur->peer.sockaddr = &ur->sockaddr.sockaddr;
    ur->peer.socklen = ur->socklen;
    ur->peer.name = &ur->hr->host;
    ur->peer.get = ngx_event_get_peer;
    ur->peer.log = ur->hr->log;
    ur->peer.log_error = NGX_ERROR_ERR;

    rc = ngx_event_connect_peer(&ur->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        ur->peer.connection = NULL;
        ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_CONNECT,
                               "connect() failed");
        return;
    }

    c = ur->peer.connection;

    pool = ngx_create_pool(512, w->log);
    conn = pool ? ngx_pcalloc(pool, sizeof(ngx_astralform_up_conn_t)) : NULL;

    if (conn == NULL) {
        if (pool != NULL) {
            ngx_destroy_pool(pool);
        }

        ngx_close_connection(c);
        ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_FAILED,
                               "out of memory");
        return;
    }

    /* the connection may outlive the request: its log is the worker's */

    conn->connection = c;
    conn->log = *w->log;
    conn->requests = 1;
    conn->key_len = ur->key_len;
    ngx_memcpy(conn->key, ur->key, ur->key_len);

    c->pool = pool;
    c->log = &conn->log;
    c->read->log = c->log;
    c->write->log = c->log;
    c->data = ur;
    c->read->handler = ngx_astralform_up_connected;
    c->write->handler = ngx_astralform_up_connected;

    ur->conn = conn;

    if (rc == NGX_AGAIN) {
        ngx_add_timer(c->write, w->conf.connect_timeout);
        return;
    }

    ngx_astralform_up_connected(c->write);
}


static void
ngx_astralform_up_connected(ngx_event_t *ev)
{
    int                       err;
    socklen_t                 len;
    ngx_connection_t         *c;
    ngx_astralform_up_req_t  *ur;

    c = ev->data;
    ur = c->data;

    if (ev->timedout) {
        ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_TIMEOUT,
                               "connect() timed out");
        return;
    }

    if (c->close) {
        ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_FAILED,
                               "the worker is shutting down");
        return;
    }

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        ngx_log_error(NGX_LOG_ERR, ur->hr->log, err,
                      "astralform: connect() to \"%V\" failed",
                      &ur->hr->host);
        ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_CONNECT,
                               "connect() failed");
        return;
    }

    /* connected: a second event before the next step sets its own */

    c->read->handler = ngx_astralform_up_dummy_handler;
    c->write->handler = ngx_astralform_up_dummy_handler;

    if (ur->ssl) {
        ngx_astralform_up_handshake(ur);
        return;
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    ngx_astralform_up_start_send(ur);
}


/* TLS 1.2+, the certificate verified against the name or address */

static void
ngx_astralform_up_handshake(ngx_astralform_up_req_t *ur)
{
    SSL                         *ssl;
    ngx_int_t                    rc;
    ngx_connection_t            *c;
    X509_VERIFY_PARAM           *param;
    ngx_astralform_up_worker_t  *w;

    w = &ngx_astralform_up_worker;
    c = ur->conn->connection;

    if (ngx_ssl_create_connection(&w->ssl, c, NGX_SSL_BUFFER|NGX_SSL_CLIENT)
        != NGX_OK)
    {
        ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_CONNECT,
                               "TLS could not be set up");
        return;
    }

    ssl = c->ssl->connection;
    param = SSL_get0_param(ssl);

    if (ur->literal) {
        rc = X509_VERIFY_PARAM_set1_ip_asc(param, (char *) ur->cname);

    } else {
        X509_VERIFY_PARAM_set_hostflags(param,
                                        X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        rc = SSL_set1_host(ssl, (char *) ur->cname)
             && SSL_set_tlsext_host_name(ssl, (char *) ur->cname);
    }

    if (rc != 1) {
        ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_CONNECT,
                               "TLS could not be set up");
        return;
    }

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        if (!c->write->timer_set) {
            ngx_add_timer(c->write, w->conf.connect_timeout);
        }

        c->ssl->handler = ngx_astralform_up_handshaked;
        return;
    }

    ngx_astralform_up_handshaked(c);
}


static void
ngx_astralform_up_handshaked(ngx_connection_t *c)
{
    long                      verify;
    ngx_astralform_up_req_t  *ur;

    ur = c->data;

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (c->read->timedout || c->write->timedout) {
        ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_TIMEOUT,
                               "the TLS handshake timed out");
        return;
    }

    if (!c->ssl->handshaked) {
        verify = SSL_get_verify_result(c->ssl->connection);

        if (verify != X509_V_OK) {
            ngx_log_error(NGX_LOG_ERR, ur->hr->log, 0,
                          "astralform: the certificate of \"%V\" was not "
                          "verified: %s", &ur->hr->host,
                          X509_verify_cert_error_string(verify));
        }

        ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_CONNECT,
                               "the TLS handshake failed");
        return;
    }

    c->read->handler = ngx_astralform_up_read_handler;
    c->write->handler = ngx_astralform_up_write_handler;

    ngx_astralform_up_start_send(ur);
}


static void
ngx_astralform_up_start_send(ngx_astralform_up_req_t *ur)
{
    ngx_connection_t  *c;

    c = ur->conn->connection;

    c->read->handler = ngx_astralform_up_read_handler;
    c->write->handler = ngx_astralform_up_write_handler;

    ur->phase = NGX_ASTRALFORM_UP_SEND;
    ur->out.pos = ur->out.start;

    ngx_astralform_up_write_handler(c->write);
}


static void
ngx_astralform_up_write_handler(ngx_event_t *ev)
{
    ssize_t                   n;
    ngx_connection_t         *c;
    ngx_astralform_up_req_t  *ur;

    c = ev->data;
    ur = c->data;

    if (c->close) {
        ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_FAILED,
                               "the worker is shutting down");
        return;
    }

    if (ur->phase != NGX_ASTRALFORM_UP_SEND) {
        return;
    }

    while (ur->out.pos < ur->out.last) {
        n = c->send(c, ur->out.pos, ur->out.last - ur->out.pos);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_FAILED,
                                       "the request could not be sent");
            }

            return;
        }

        if (n <= 0) {
            ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_FAILED,
                                   "the request could not be sent");
            return;
        }

        ur->sent = 1;
        ur->out.pos += n;
    }

    ur->phase = NGX_ASTRALFORM_UP_HEAD_PHASE;

    /* no read() that can only say EAGAIN: wait unless the answer is there */

    if (c->read->ready) {
        ngx_astralform_up_read_handler(c->read);
        return;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_FAILED,
                               "the answer could not be read");
    }
}


static void
ngx_astralform_up_read_handler(ngx_event_t *ev)
{
    ngx_int_t                 rc;
    ngx_connection_t         *c;
    ngx_astralform_up_req_t  *ur;

    c = ev->data;
    ur = c->data;

    /* worker_shutdown_timeout: the calls still running end here */

    if (c->close) {
        ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_FAILED,
                               "the worker is shutting down");
        return;
    }

    if (ur->phase == NGX_ASTRALFORM_UP_SEND) {
        return;                          /* an early answer waits its turn */
    }

    do {
        rc = (ur->phase == NGX_ASTRALFORM_UP_HEAD_PHASE)
             ? ngx_astralform_up_read_head(ur, c)
             : ngx_astralform_up_read_body(ur, c);

    } while (rc == NGX_OK);

    if (rc == NGX_AGAIN && ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_FAILED,
                               "the answer could not be read");
    }
}


/* NGX_OK: go on reading; NGX_AGAIN: wait; NGX_DONE: the request ended */

static ngx_int_t
ngx_astralform_up_read_head(ngx_astralform_up_req_t *ur, ngx_connection_t *c)
{
    u_char      *p;
    size_t       end;
    ssize_t      n;
    ngx_pool_t  *pool;

    pool = ur->hr->pool;

    if (ur->head_len == ur->head_size) {
        if (ur->head_size >= NGX_ASTRALFORM_UP_MAX_HEAD) {
            ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_TOO_LARGE,
                                   "response headers larger than 64k");
            return NGX_DONE;
        }

        ur->head_size = ur->head_size ? 2 * ur->head_size
                                      : NGX_ASTRALFORM_UP_HEAD;

        p = ngx_pnalloc(pool, ur->head_size);
        if (p == NULL) {
            ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_FAILED,
                                   "out of memory");
            return NGX_DONE;
        }

        if (ur->head_len) {
            ngx_memcpy(p, ur->head, ur->head_len);
            (void) ngx_pfree(pool, ur->head);
        }

        ur->head = p;
    }

    n = c->recv(c, ur->head + ur->head_len, ur->head_size - ur->head_len);

    if (n == NGX_AGAIN) {
        return NGX_AGAIN;
    }

    if (n == 0 || n == NGX_ERROR) {
        ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_FAILED,
                               n == 0 ? "the provider closed the connection "
                                        "without an answer"
                                      : "the answer could not be read");
        return NGX_DONE;
    }

    ur->got = 1;
    ur->head_len += n;

    end = ngx_astralform_http1_head_end(ur->head, ur->head_len,
                                        ur->head_seen);

    if (end == 0) {
        ur->head_seen = ur->head_len;
        return NGX_OK;
    }

    ur->head_seen = end;

    return ngx_astralform_up_got_head(ur);
}


static ngx_int_t
ngx_astralform_up_got_head(ngx_astralform_up_req_t *ur)
{
    size_t                       end, rest;
    ngx_int_t                    rc;
    ngx_astralform_http_req_t   *hr;
    ngx_astralform_up_worker_t  *w;

    hr = ur->hr;
    w = &ngx_astralform_up_worker;
    end = ur->head_seen;

    hr->resp_headers.nelts = 0;

    rc = ngx_astralform_http1_parse_head(ur->head, end, ur->head_request,
                                         &ur->h, &hr->resp_headers);

    if (rc != NGX_OK) {
        ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_FAILED,
                               rc == NGX_ABORT ? "out of memory"
                                               : "not an HTTP/1.x answer");
        return NGX_DONE;
    }

    rest = ur->head_len - end;

    /* an interim answer (100 Continue, 103): the real one follows */

    if (ur->h.status < 200) {
        if (ur->h.status == 101) {
            ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_FAILED,
                                   "an unasked protocol switch");
            return NGX_DONE;
        }

        /* each would reset the head's cap: a stream of them is refused */

        if (++ur->interim > NGX_ASTRALFORM_UP_INTERIM) {
            ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_FAILED,
                                   "too many interim answers");
            return NGX_DONE;
        }

        ngx_memmove(ur->head, ur->head + end, rest);
        ur->head_len = rest;
        ur->head_seen = 0;
        hr->resp_headers.nelts = 0;

        end = ngx_astralform_http1_head_end(ur->head, rest, 0);
        if (end == 0) {
            ur->head_seen = rest;
            return NGX_OK;
        }

        ur->head_seen = end;

        return ngx_astralform_up_got_head(ur);
    }

    hr->status = ur->h.status;

    if (ur->h.encoded) {
        ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_FAILED,
                               "an answer in a content coding that was not "
                               "offered");
        return NGX_DONE;
    }

    ur->phase = NGX_ASTRALFORM_UP_BODY_PHASE;

    switch (ur->h.body) {

    case NGX_ASTRALFORM_HTTP1_NONE:
        if (rest) {
            ur->h.keepalive = 0;
        }

        ngx_astralform_up_finish(ur, NGX_ASTRALFORM_HTTP_OK);
        return NGX_DONE;

    case NGX_ASTRALFORM_HTTP1_LENGTH:
        if ((uint64_t) ur->h.content_length > w->conf.max_response) {
            ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_TOO_LARGE,
                                   NULL);
            return NGX_DONE;
        }

        ur->body_size = (size_t) ur->h.content_length;
        break;

    default:
        ur->body_size = NGX_ASTRALFORM_UP_BODY;
        break;
    }

    ur->body = ngx_pnalloc(hr->pool, ngx_max(ur->body_size, 1));
    if (ur->body == NULL) {
        ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_FAILED,
                               "out of memory");
        return NGX_DONE;
    }

    /* what came after the head is the body's start */

    if (ur->h.body == NGX_ASTRALFORM_HTTP1_LENGTH
        && rest > ur->body_size)
    {
        ur->h.keepalive = 0;
        rest = ur->body_size;
    }

    while (rest) {
        if (ngx_astralform_up_body_room(ur) != NGX_OK) {
            return NGX_DONE;
        }

        end = ngx_min(rest, ur->body_size - ur->body_len);
        ngx_memcpy(ur->body + ur->body_len, ur->head + ur->head_len - rest,
                   end);
        rest -= end;

        rc = ngx_astralform_up_take_body(ur, end);

        if (rc == NGX_DONE) {
            if (rest) {
                ur->h.keepalive = 0;
            }

            ngx_astralform_up_finish(ur, NGX_ASTRALFORM_HTTP_OK);
            return NGX_DONE;
        }

        if (rc == NGX_ERROR) {
            return NGX_DONE;
        }
    }

    if (ur->h.body == NGX_ASTRALFORM_HTTP1_LENGTH
        && ur->body_len == ur->body_size)
    {
        ngx_astralform_up_finish(ur, NGX_ASTRALFORM_HTTP_OK);
        return NGX_DONE;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_astralform_up_read_body(ngx_astralform_up_req_t *ur, ngx_connection_t *c)
{
    ssize_t    n;
    ngx_int_t  rc;

    if (ngx_astralform_up_body_room(ur) != NGX_OK) {
        return NGX_DONE;
    }

    n = c->recv(c, ur->body + ur->body_len, ur->body_size - ur->body_len);

    if (n == NGX_AGAIN) {
        return NGX_AGAIN;
    }

    if (n == 0 && ur->h.body == NGX_ASTRALFORM_HTTP1_EOF) {
        ngx_astralform_up_finish(ur, NGX_ASTRALFORM_HTTP_OK);
        return NGX_DONE;
    }

    if (n == 0 || n == NGX_ERROR) {
        ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_FAILED,
                               n == 0 ? "the provider closed the connection "
                                        "before the end of the answer"
                                      : "the answer could not be read");
        return NGX_DONE;
    }

    rc = ngx_astralform_up_take_body(ur, n);

    if (rc == NGX_DONE) {
        ngx_astralform_up_finish(ur, NGX_ASTRALFORM_HTTP_OK);
        return NGX_DONE;
    }

    return rc == NGX_ERROR ? NGX_DONE : NGX_OK;
}


/* room for more of an unsized body: the buffer doubles, within the cap */

static ngx_int_t
ngx_astralform_up_body_room(ngx_astralform_up_req_t *ur)
{
    u_char                      *p;
    size_t                       size, cap;
    ngx_astralform_up_worker_t  *w;

    w = &ngx_astralform_up_worker;

    if (ur->body_len < ur->body_size
        || ur->h.body == NGX_ASTRALFORM_HTTP1_LENGTH)
    {
        return NGX_OK;
    }

    /* chunked framing needs room beyond the body's own bytes */

    cap = w->conf.max_response;
    cap = (cap > NGX_MAX_SIZE_T_VALUE / 2) ? cap : cap + 4096;

    if (ur->body_size >= cap) {
        ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_TOO_LARGE, NULL);
        return NGX_ERROR;
    }

    size = ngx_min(2 * ur->body_size, cap);

    p = ngx_pnalloc(ur->hr->pool, size);
    if (p == NULL) {
        ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_FAILED,
                               "out of memory");
        return NGX_ERROR;
    }

    ngx_memcpy(p, ur->body, ur->body_len);
    (void) ngx_pfree(ur->hr->pool, ur->body);

    ur->body = p;
    ur->body_size = size;

    return NGX_OK;
}


/*
 * n bytes were added at body + body_len. NGX_DONE: the body ended;
 * NGX_OK: more to come; NGX_ERROR: failed (and reported).
 */

static ngx_int_t
ngx_astralform_up_take_body(ngx_astralform_up_req_t *ur, size_t n)
{
    size_t                       rest;
    ngx_int_t                    rc;
    ngx_astralform_up_worker_t  *w;

    w = &ngx_astralform_up_worker;

    switch (ur->h.body) {

    case NGX_ASTRALFORM_HTTP1_LENGTH:
        ur->body_len += n;
        return ur->body_len == ur->body_size ? NGX_DONE : NGX_OK;

    case NGX_ASTRALFORM_HTTP1_CHUNKED:
        rc = ngx_astralform_http1_chunked(&ur->chunked,
                                          ur->body + ur->body_len, &n, &rest);
        ur->body_len += n;

        if (rc == NGX_ERROR) {
            ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_FAILED,
                                   "a broken chunked answer");
            return NGX_ERROR;
        }

        if (ur->body_len > w->conf.max_response) {
            ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_TOO_LARGE, NULL);
            return NGX_ERROR;
        }

        if (rc == NGX_OK) {
            if (rest) {
                ur->h.keepalive = 0;
            }

            return NGX_DONE;
        }

        return NGX_OK;

    default:
        ur->body_len += n;

        if (ur->body_len > w->conf.max_response) {
            ngx_astralform_up_fail(ur, NGX_ASTRALFORM_HTTP_TOO_LARGE, NULL);
            return NGX_ERROR;
        }

        return NGX_OK;
    }
}


/*
 * A failed attempt: retried once on a fresh connection if it failed on a
 * kept one before any byte of the answer (see ngx_astralform_http.h).
 */

static void
ngx_astralform_up_fail(ngx_astralform_up_req_t *ur,
    ngx_astralform_http_error_e error, const char *why)
{
    ngx_astralform_http_req_t  *hr;

    hr = ur->hr;

    if (ur->reused && !ur->got && !hr->retried
        && error == NGX_ASTRALFORM_HTTP_FAILED
        && (ngx_astralform_http_idempotent(&hr->method) || !ur->sent)
        && (ngx_msec_int_t) (hr->deadline - ngx_current_msec) > 0)
    {
        ngx_log_error(NGX_LOG_INFO, hr->log, 0,
                      "astralform: upstream request to \"%V\" failed on a "
                      "reused connection (%s), retrying on a fresh one",
                      &hr->host, why);

        ngx_astralform_up_close(ur->conn);
        ur->conn = NULL;
        ur->reused = 0;
        ur->sent = 0;
        ur->head_len = 0;
        ur->head_seen = 0;
        hr->retried = 1;

        ngx_astralform_up_run(ur);
        return;
    }

    ur->why = why;
    ur->h.keepalive = 0;

    ngx_astralform_up_finish(ur, error);
}


static void
ngx_astralform_up_finish(ngx_astralform_up_req_t *ur,
    ngx_astralform_http_error_e error)
{
    ngx_astralform_http_req_t   *hr;
    ngx_astralform_up_worker_t  *w;

    hr = ur->hr;
    w = &ngx_astralform_up_worker;

    if (ur->resolve != NULL) {
        ngx_resolve_name_done(ur->resolve);
        ur->resolve = NULL;
    }

    if (ur->conn != NULL) {
        if (error == NGX_ASTRALFORM_HTTP_OK && ur->h.keepalive) {
            ngx_astralform_up_keep(ur->conn);

        } else {
            ngx_astralform_up_close(ur->conn);
        }

        ur->conn = NULL;
    }

    hr->error = error;

    if (error == NGX_ASTRALFORM_HTTP_OK) {
        hr->resp_body.data = ur->body;
        hr->resp_body.len = ur->body_len;

    } else {
        ngx_str_set(&hr->resp_body, "");

        if (error == NGX_ASTRALFORM_HTTP_TOO_LARGE && ur->why == NULL) {
            ngx_log_error(NGX_LOG_ERR, hr->log, 0,
                          "astralform: upstream request to \"%V\" failed: "
                          "response larger than %uz bytes", &hr->host,
                          w->conf.max_response);

        } else if (ur->why != NULL) {
            ngx_log_error(NGX_LOG_ERR, hr->log, 0,
                          "astralform: upstream request to \"%V\" failed: %s",
                          &hr->host, ur->why);
        }
    }

    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, hr->log, 0,
                   "astralform upstream done: %V %V status:%ui error:%d "
                   "body:%uz", &hr->method, &hr->host, hr->status,
                   hr->error, hr->resp_body.len);

    if (hr->expire.timer_set) {
        ngx_del_timer(&hr->expire);
    }

    if (ur->starting) {
        ur->phase = NGX_ASTRALFORM_UP_POSTED;
        ngx_post_event(&ur->posted, &ngx_posted_events);
        return;
    }

    ngx_astralform_up_end(ur);
}


static void
ngx_astralform_up_posted_handler(ngx_event_t *ev)
{
    ngx_astralform_up_end(ev->data);
}


static void
ngx_astralform_up_end(ngx_astralform_up_req_t *ur)
{
    ngx_astralform_http_req_t  *hr;

    hr = ur->hr;

    hr->running = 0;
    ngx_queue_remove(&hr->queue);

    hr->done(hr);
}


void
ngx_astralform_upstream_cancel(ngx_astralform_http_req_t *hr)
{
    ngx_astralform_up_req_t  *ur;

    ur = hr->upstream;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, hr->log, 0,
                   "astralform upstream cancel: %V %V", &hr->method,
                   &hr->host);

    if (ur->resolve != NULL) {
        ngx_resolve_name_done(ur->resolve);
        ur->resolve = NULL;
    }

    if (ur->conn != NULL) {
        ngx_astralform_up_close(ur->conn);
        ur->conn = NULL;
    }

    if (ur->posted.posted) {
        ngx_delete_posted_event(&ur->posted);
    }

    if (hr->expire.timer_set) {
        ngx_del_timer(&hr->expire);
    }

    hr->running = 0;
    ngx_queue_remove(&hr->queue);
}


static void
ngx_astralform_up_expire_handler(ngx_event_t *ev)
{
    ngx_astralform_up_req_t  *ur;

    ur = ev->data;

    if (!ur->hr->running || ur->phase == NGX_ASTRALFORM_UP_POSTED) {
        return;
    }

    ngx_log_error(NGX_LOG_ERR, ur->hr->log, 0,
                  "astralform: upstream request to \"%V\" failed: timed out "
                  "after %M ms", &ur->hr->host,
                  ur->hr->timeout ? ur->hr->timeout
                                  : ngx_astralform_up_worker.conf.timeout);

    ur->why = NULL;             /* logged */
    ur->h.keepalive = 0;
    ngx_astralform_up_finish(ur, NGX_ASTRALFORM_HTTP_TIMEOUT);
}


/* into the idle list, newest first; the oldest goes when it is full */

static void
ngx_astralform_up_keep(ngx_astralform_up_conn_t *conn)
{
    ngx_queue_t                 *q;
    ngx_connection_t            *c;
    ngx_astralform_up_worker_t  *w;

    w = &ngx_astralform_up_worker;
    c = conn->connection;

    /*
     * Bytes after the answer (in the socket, or read ahead into OpenSSL's
     * buffer, which no peek of the socket sees) would be read as the next
     * call's answer; a closed connection would fail the next call.
     */

    if (ngx_exiting || ngx_terminate || ngx_quit
        || conn->requests >= NGX_ASTRALFORM_UP_REQUESTS
        || c->read->timedout || c->error
        || c->read->eof || c->read->pending_eof
        || (c->ssl && (SSL_has_pending(c->ssl->connection)
                       || c->ssl->last != NGX_OK)))
    {
        ngx_astralform_up_close(conn);
        return;
    }

    if (w->nidle == NGX_ASTRALFORM_UP_IDLE) {
        q = ngx_queue_last(&w->idle);
        ngx_astralform_up_close(ngx_queue_data(q, ngx_astralform_up_conn_t,
                                               queue));
    }

    ngx_queue_insert_head(&w->idle, &conn->queue);
    w->nidle++;

    conn->idle_since = ngx_current_msec;

    c->data = conn;
    c->idle = 1;
    c->read->handler = ngx_astralform_up_idle_handler;
    c->write->handler = ngx_astralform_up_dummy_handler;

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    ngx_add_timer(c->read, NGX_ASTRALFORM_UP_IDLE_TIMEOUT);

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_astralform_up_close(conn);
        return;
    }

    /* edge-triggered: what is already there raises no event, look now */

    if (c->read->ready) {
        ngx_astralform_up_idle_handler(c->read);
    }
}


/* an idle connection with something to read was closed by its provider */

static void
ngx_astralform_up_idle_handler(ngx_event_t *ev)
{
    ngx_connection_t          *c;
    ngx_astralform_up_conn_t  *conn;

    c = ev->data;
    conn = c->data;

    if (!c->close && !ev->timedout && ngx_astralform_up_quiet(c)) {
        ev->ready = 0;

        if (ngx_handle_read_event(ev, 0) == NGX_OK) {
            return;
        }
    }

    ngx_astralform_up_close(conn);
}


/* an idle connection the provider neither closed nor sent anything on */

static ngx_uint_t
ngx_astralform_up_quiet(ngx_connection_t *c)
{
    u_char  ch;

    return recv(c->fd, (char *) &ch, 1, MSG_PEEK) == -1
           && ngx_socket_errno == NGX_EAGAIN;
}


static void
ngx_astralform_up_dummy_handler(ngx_event_t *ev)
{
}


static void
ngx_astralform_up_close(ngx_astralform_up_conn_t *conn)
{
    ngx_pool_t                  *pool;
    ngx_connection_t            *c;
    ngx_astralform_up_worker_t  *w;

    w = &ngx_astralform_up_worker;
    c = conn->connection;

    if (c->idle) {
        ngx_queue_remove(&conn->queue);
        w->nidle--;
        c->idle = 0;
    }

    if (c->ssl) {
        c->ssl->no_wait_shutdown = 1;
        c->ssl->no_send_shutdown = 1;
        (void) ngx_ssl_shutdown(c);
    }

    pool = c->pool;
    ngx_close_connection(c);
    ngx_destroy_pool(pool);
}


ngx_int_t
ngx_astralform_upstream_init_process(ngx_cycle_t *cycle,
    ngx_astralform_http_conf_t *conf)
{
    char                        *proxy;
    ngx_uint_t                   i;
    ngx_http_conf_ctx_t         *ctx;
    ngx_http_core_loc_conf_t    *clcf;
    ngx_astralform_up_worker_t  *w;

    static const char  *proxies[] = {
        "http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy",
        "ALL_PROXY"
    };

    w = &ngx_astralform_up_worker;
    w->conf = *conf;
    w->log = cycle->log;

    ngx_queue_init(&w->idle);
    ngx_queue_init(&w->running);

    if (w->conf.max_response == 0) {
        w->conf.max_response = NGX_MAX_SIZE_T_VALUE;
    }

    /*
     * libcurl carries everything when told to, when a per-host cap asks
     * for its queueing, and when the environment names an egress proxy
     * (nginx passes one to the workers only if "env" says so).
     */

    if (conf->client == NGX_ASTRALFORM_HTTP_CLIENT_CURL
        || conf->max_host_connections)
    {
        return NGX_OK;
    }

    for (i = 0; i < sizeof(proxies) / sizeof(proxies[0]); i++) {
        proxy = getenv(proxies[i]);

        if (proxy != NULL && proxy[0] != '\0') {
            ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                          "astralform: \"%s\" is set, provider calls go "
                          "through libcurl", proxies[i]);
            return NGX_OK;
        }
    }

    ctx = (ngx_http_conf_ctx_t *) cycle->conf_ctx[ngx_http_module.index];
    clcf = ctx->loc_conf[ngx_http_core_module.ctx_index];

    if (clcf->resolver != NULL && clcf->resolver->connections.nelts) {
        w->resolver = clcf->resolver;
        w->resolver_timeout = clcf->resolver_timeout != NGX_CONF_UNSET_MSEC
                              ? clcf->resolver_timeout : 30000;
    }

    w->ssl.log = cycle->log;

    if (ngx_ssl_create(&w->ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (conf->ca_file.len) {
        if (SSL_CTX_load_verify_locations(w->ssl.ctx,
                                          (char *) conf->ca_file.data, NULL)
            != 1)
        {
            ngx_ssl_error(NGX_LOG_EMERG, cycle->log, 0,
                          "astralform: cannot load \"%V\"", &conf->ca_file);
            SSL_CTX_free(w->ssl.ctx);
            return NGX_ERROR;
        }

    } else if (SSL_CTX_set_default_verify_paths(w->ssl.ctx) != 1) {
        ngx_ssl_error(NGX_LOG_EMERG, cycle->log, 0,
                      "astralform: cannot load the system CA certificates");
        SSL_CTX_free(w->ssl.ctx);
        return NGX_ERROR;
    }

    SSL_CTX_set_verify(w->ssl.ctx, SSL_VERIFY_PEER, NULL);

    w->enabled = 1;

    return NGX_OK;
}


void
ngx_astralform_upstream_exit_process(ngx_cycle_t *cycle)
{
    ngx_queue_t                 *q;
    ngx_astralform_up_worker_t  *w;

    w = &ngx_astralform_up_worker;

    if (!w->enabled) {
        return;
    }

    while (!ngx_queue_empty(&w->running)) {
        q = ngx_queue_head(&w->running);
        ngx_astralform_upstream_cancel(
                    ngx_queue_data(q, ngx_astralform_http_req_t, queue));
    }

    while (!ngx_queue_empty(&w->idle)) {
        q = ngx_queue_head(&w->idle);
        ngx_astralform_up_close(ngx_queue_data(q, ngx_astralform_up_conn_t,
                                               queue));
    }

    SSL_CTX_free(w->ssl.ctx);
    w->ssl.ctx = NULL;
    w->enabled = 0;
}
