/*
 * Outbound HTTP(S) on the worker's event loop.
 *
 * One libcurl multi handle per worker in "multi socket" mode: curl says
 * which sockets to watch (the socket callback) and when to wake it up (the
 * timer callback); nginx events and one nginx timer call
 * curl_multi_socket_action() back. Names are resolved on curl's resolver
 * thread; connections, and HTTP/2 streams on them, are reused through the
 * multi handle's connection cache, TLS sessions through a share handle.
 * Easy handles are reused too: a finished one is reset and kept in a small
 * per-worker list.
 *
 * curl's sockets are wrapped in ngx_connection_t with level-triggered
 * events: curl reads one buffer per call and would stall on an
 * edge-triggered event with more data pending. The fds stay curl's; curl
 * closes them through the close-socket callback, which frees the wrapper.
 *
 * curl before 8.5 (Debian 12 has 7.88) closes a socket it gave up
 * connecting to (connect timeout, the losing happy eyeballs attempt)
 * without announcing the REMOVE first; the REMOVE follows later. 7.88 to
 * 8.1 close such a never connected socket without the close-socket
 * callback too (curl commit a70d97c), and the resolver thread's socketpair,
 * also watched, never goes through it. So until a socket is known to be a
 * connected one (see ngx_astralform_http_sock_t), its wrapper remembers
 * which socket it watches (its inode): epoll is not told about a socket
 * that is gone, and a new socket is not handed to curl under a number that
 * curl and nginx still hold for the old one.
 *
 * A connected socket, once curl lets it go idle in the connection cache
 * (REMOVE), keeps its wrapper and its read event: the next transfer on it
 * costs neither an nginx connection nor an epoll_ctl(). An idle socket that
 * turns readable (the peer closed it) has its read event removed right
 * away, curl does not watch it and level-triggered epoll would report it
 * again and again.
 *
 * No caller code runs inside libcurl: finished transfers are collected
 * after curl_multi_socket_action() returns and are taken out of the multi
 * handle before done() is called, so done() may start or cancel transfers.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <curl/curl.h>

#include "ngx_astralform_http.h"
#include "ngx_astralform_upstream.h"


#define NGX_ASTRALFORM_HTTP_CHUNK        4096
#define NGX_ASTRALFORM_HTTP_MAX_HEADERS  (64 * 1024)
#define NGX_ASTRALFORM_HTTP_MAXCONNECTS  64
#define NGX_ASTRALFORM_HTTP_HELD         4
#define NGX_ASTRALFORM_HTTP_EASIES       64


/* an easy handle cancelled while libcurl was on the stack */
typedef struct {
    CURL                         *easy;
    struct curl_slist            *slist;
    ngx_queue_t                   queue;
} ngx_astralform_http_orphan_t;


/*
 * By fd number: what is known about curl's socket at that number.
 *
 * curl reads only from a connected socket, and closes a connected socket
 * only through the close-socket callback, in 7.88 as well. A socket that
 * curl waits to read from, and that is (by its inode) the one
 * open_socket() made at that number, is "confirmed": until close_socket()
 * is called for it, the number is that socket and needs no fstat(), and its
 * wrapper may outlive a REMOVE.
 *
 * Wrapper states: watched (curl has announced the socket and not removed
 * it), idle (confirmed, removed: in the worker's idle queue), closed
 * (closed before its REMOVE: no events, the number stays held until the
 * REMOVE frees the wrapper).
 */
typedef struct {
    ngx_connection_t             *connection;  /* the wrapper, or NULL */
    ngx_file_uniq_t               ino;         /* of the socket it watches */
    ngx_file_uniq_t               made;        /* of the socket open_socket()
                                                  made here, 0: none */
    unsigned                      confirmed:1;
    unsigned                      watched:1;
    unsigned                      closed:1;
} ngx_astralform_http_sock_t;


typedef struct {
    CURLM                        *multi;
    CURLSH                       *share;
    ngx_astralform_http_conf_t    conf;
    ngx_log_t                    *log;
    ngx_event_t                   timer;
    ngx_connection_t              dummy;       /* ev->data of the timer */
    ngx_queue_t                   running;
    ngx_queue_t                   failed;      /* no nginx connection */
    ngx_queue_t                   orphans;
    ngx_queue_t                   idle;        /* wrappers of idle sockets */
    ngx_astralform_http_sock_t   *socks;
    ngx_uint_t                    nsocks;
    ngx_uint_t                    nrunning;
    ngx_uint_t                    in_curl;
    CURL                         *easies[NGX_ASTRALFORM_HTTP_EASIES];
    ngx_uint_t                    neasies;     /* reset, for reuse */
} ngx_astralform_http_worker_t;


static CURL *ngx_astralform_http_get_easy(void);
static void ngx_astralform_http_put_easy(CURL *easy, CURLMcode removed);
static ngx_int_t ngx_astralform_http_clear_easy(CURL *easy);
static ngx_int_t ngx_astralform_http_setup_easy(CURL *easy);
static ngx_int_t ngx_astralform_http_run(ngx_astralform_http_req_t *hr);
static ngx_int_t ngx_astralform_http_setup(ngx_astralform_http_req_t *hr,
    CURL *easy);
static ngx_int_t ngx_astralform_http_set_method(ngx_astralform_http_req_t *hr,
    CURL *easy);
static ngx_int_t ngx_astralform_http_set_headers(
    ngx_astralform_http_req_t *hr, CURL *easy);
static ngx_int_t ngx_astralform_http_valid(u_char *p, size_t len);
static ngx_astralform_http_sock_t *ngx_astralform_http_sock(curl_socket_t s);
static curl_socket_t ngx_astralform_http_open_socket(void *clientp,
    curlsocktype purpose, struct curl_sockaddr *addr);
static int ngx_astralform_http_close_socket(void *clientp,
    curl_socket_t s);
static int ngx_astralform_http_socket(CURL *easy, curl_socket_t s, int what,
    void *userp, void *socketp);
static ngx_connection_t *ngx_astralform_http_wrap(curl_socket_t s);
static ngx_int_t ngx_astralform_http_owned(ngx_connection_t *c);
static ngx_int_t ngx_astralform_http_watch(ngx_event_t *ev, ngx_int_t event,
    ngx_uint_t on);
static void ngx_astralform_http_quiet(ngx_connection_t *c, ngx_uint_t flags);
static void ngx_astralform_http_forget(ngx_connection_t *c);
static void ngx_astralform_http_removed(ngx_connection_t *c);
static void ngx_astralform_http_unwrap(ngx_connection_t *c);
static void ngx_astralform_http_release_idle(ngx_uint_t all);
static void ngx_astralform_http_no_connection(CURL *easy);
static int ngx_astralform_http_timer(CURLM *multi, long timeout_ms,
    void *userp);
static void ngx_astralform_http_read_handler(ngx_event_t *ev);
static void ngx_astralform_http_write_handler(ngx_event_t *ev);
static void ngx_astralform_http_timer_handler(ngx_event_t *ev);
static void ngx_astralform_http_expire_handler(ngx_event_t *ev);
static void ngx_astralform_http_action(curl_socket_t s, int mask);
static void ngx_astralform_http_collect(void);
static void ngx_astralform_http_finish(ngx_astralform_http_req_t *hr,
    CURLcode code);
static ngx_int_t ngx_astralform_http_retry(ngx_astralform_http_req_t *hr,
    CURLcode code);
static ngx_astralform_http_error_e ngx_astralform_http_map(
    ngx_astralform_http_req_t *hr, CURLcode code);
static ngx_int_t ngx_astralform_http_body(ngx_astralform_http_req_t *hr);
static void ngx_astralform_http_release(ngx_astralform_http_req_t *hr);
static void ngx_astralform_http_orphan(ngx_astralform_http_req_t *hr);
static void ngx_astralform_http_reap_orphans(void);
static size_t ngx_astralform_http_write(char *ptr, size_t size, size_t nmemb,
    void *userdata);
static size_t ngx_astralform_http_header(char *buf, size_t size,
    size_t nitems, void *userdata);
static void ngx_astralform_http_cleanup(void *data);


static ngx_astralform_http_worker_t  ngx_astralform_http_worker;


ngx_astralform_http_req_t *
ngx_astralform_http_create(ngx_pool_t *pool, ngx_log_t *log)
{
    ngx_pool_cleanup_t         *cln;
    ngx_astralform_http_req_t  *hr;

    hr = ngx_pcalloc(pool, sizeof(ngx_astralform_http_req_t));
    if (hr == NULL) {
        return NULL;
    }

    if (ngx_array_init(&hr->headers, pool, 8, sizeof(ngx_str_t)) != NGX_OK
        || ngx_array_init(&hr->resp_headers, pool, 16,
                          sizeof(ngx_table_elt_t))
           != NGX_OK)
    {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_astralform_http_cleanup;
    cln->data = hr;

    ngx_str_set(&hr->method, "GET");
    hr->pool = pool;
    hr->log = log;

    return hr;
}


ngx_int_t
ngx_astralform_http_add_header(ngx_astralform_http_req_t *hr,
    ngx_str_t *name, ngx_str_t *value)
{
    u_char     *p;
    ngx_str_t  *h;

    if (name->len == 0
        || ngx_strlchr(name->data, name->data + name->len, ':') != NULL
        || ngx_astralform_http_valid(name->data, name->len) != NGX_OK
        || ngx_astralform_http_valid(value->data, value->len) != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(hr->pool, name->len + sizeof(": ") - 1 + value->len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    h = ngx_array_push(&hr->headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->data = p;
    p = ngx_cpymem(p, name->data, name->len);

    /* "Name;" is how curl sends an empty header, "Name:" would drop it */

    if (value->len == 0) {
        *p++ = ';';

    } else {
        *p++ = ':'; *p++ = ' ';
        p = ngx_cpymem(p, value->data, value->len);
    }

    h->len = p - h->data;

    return NGX_OK;
}


ngx_int_t
ngx_astralform_http_start(ngx_astralform_http_req_t *hr)
{
    ngx_int_t                      rc;
    ngx_astralform_http_worker_t  *w;

    w = &ngx_astralform_http_worker;

    if (w->multi == NULL || hr->running || hr->done == NULL
        || hr->url.len == 0)
    {
        ngx_log_error(NGX_LOG_ALERT, hr->log, 0,
                      "astralform: outbound request cannot start");
        return NGX_ERROR;
    }

    hr->retried = 0;
    hr->native = 0;
    hr->deadline = ngx_current_msec
                   + (hr->timeout ? hr->timeout : w->conf.timeout);

    rc = ngx_astralform_upstream_start(hr);

    if (rc != NGX_DECLINED) {
        hr->native = (rc == NGX_OK);
        return rc;
    }

    return ngx_astralform_http_run(hr);
}


/* one attempt: the first, or the retry on a fresh connection */

static ngx_int_t
ngx_astralform_http_run(ngx_astralform_http_req_t *hr)
{
    CURL                          *easy;
    CURLMcode                      mc;
    ngx_astralform_http_worker_t  *w;

    w = &ngx_astralform_http_worker;

    hr->error = NGX_ASTRALFORM_HTTP_OK;
    hr->status = 0;
    hr->resp_headers.nelts = 0;
    ngx_str_set(&hr->resp_body, "");
    hr->chunks = NULL;
    hr->received = 0;
    hr->header_bytes = 0;
    hr->too_large = 0;
    hr->no_connection = 0;

    ngx_astralform_http_set_host(hr);

    if (hr->errbuf == NULL) {
        hr->errbuf = ngx_pnalloc(hr->pool, CURL_ERROR_SIZE);
        if (hr->errbuf == NULL) {
            return NGX_ERROR;
        }
    }

    hr->errbuf[0] = '\0';

    easy = ngx_astralform_http_get_easy();
    if (easy == NULL) {
        ngx_log_error(NGX_LOG_ERR, hr->log, 0,
                      "astralform: cannot set up a curl easy handle");
        return NGX_ERROR;
    }

    hr->easy = easy;

    if (ngx_astralform_http_setup(hr, easy) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, hr->log, 0,
                      "astralform: cannot set up upstream request to \"%V\"",
                      &hr->host);
        mc = CURLM_OK;
        goto failed;
    }

    w->in_curl++;
    mc = curl_multi_add_handle(w->multi, easy);
    w->in_curl--;

    if (mc != CURLM_OK) {
        ngx_log_error(NGX_LOG_ALERT, hr->log, 0,
                      "astralform: curl_multi_add_handle() failed: %s",
                      curl_multi_strerror(mc));
        goto failed;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, hr->log, 0,
                   "astralform http start: %V %V", &hr->method, &hr->host);

    hr->running = 1;
    ngx_queue_insert_tail(&w->running, &hr->queue);

    hr->expire.handler = ngx_astralform_http_expire_handler;
    hr->expire.data = hr;
    hr->expire.log = hr->log;
    hr->expire.cancelable = 1;

    ngx_add_timer(&hr->expire,
                  (ngx_msec_int_t) (hr->deadline - ngx_current_msec) > 0
                  ? hr->deadline - ngx_current_msec : 1);

    /* in-flight transfers hold a graceful shutdown, as proxied ones do */

    w->nrunning++;
    w->timer.cancelable = 0;

    return NGX_OK;

failed:

    ngx_astralform_http_put_easy(easy, mc);
    ngx_free(hr->slist);
    hr->easy = NULL;
    hr->slist = NULL;

    return NGX_ERROR;
}


/*
 * A fresh or reset easy handle, the options every transfer shares already
 * set: ngx_astralform_http_setup() adds those of the request.
 */

static CURL *
ngx_astralform_http_get_easy(void)
{
    CURL                          *easy;
    ngx_astralform_http_worker_t  *w;

    w = &ngx_astralform_http_worker;

    /* a kept handle still has the shared options */
    if (w->neasies) {
        return w->easies[--w->neasies];
    }

    easy = curl_easy_init();
    if (easy == NULL) {
        return NULL;
    }

    if (ngx_astralform_http_setup_easy(easy) != NGX_OK) {
        curl_easy_cleanup(easy);
        return NULL;
    }

    return easy;
}


/*
 * removed: what curl_multi_remove_handle() returned for the handle (CURLM_OK
 * for one never added); otherwise it may still be in the multi handle, and
 * only curl_easy_cleanup() copes with that. Its connection went back to the
 * multi handle's cache with the remove.
 */

static void
ngx_astralform_http_put_easy(CURL *easy, CURLMcode removed)
{
    ngx_astralform_http_worker_t  *w;

    w = &ngx_astralform_http_worker;

    if (removed != CURLM_OK || w->neasies == NGX_ASTRALFORM_HTTP_EASIES
        || ngx_astralform_http_clear_easy(easy) != NGX_OK)
    {
        curl_easy_cleanup(easy);
        return;
    }

    w->easies[w->neasies++] = easy;
}


/*
 * What ngx_astralform_http_setup() set for one request, undone, so that a
 * kept handle needs only the next request's options: cheaper than
 * curl_easy_reset() and the shared options again. The pointers into the
 * request's pool go, the URL (it may carry a key) and the copied body are
 * freed (CURLOPT_POSTFIELDS drops the copy), and GET is the method again.
 */

static ngx_int_t
ngx_astralform_http_clear_easy(CURL *easy)
{
    if (curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_URL, NULL) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_WRITEDATA, NULL) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_HEADERDATA, NULL) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_HTTPHEADER, NULL) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, NULL) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_POSTFIELDS, NULL) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                            (curl_off_t) -1) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_NOBODY, 0L) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 0L) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_FRESH_CONNECT, 0L) != CURLE_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_astralform_http_setup_easy(CURL *easy)
{
    ngx_astralform_http_worker_t  *w;

    w = &ngx_astralform_http_worker;

    /*
     * No redirects: a provider's redirect goes back to the caller, which
     * knows whether the credentials it added may follow it. Proxies from
     * the environment are honoured: nginx clears the environment of its
     * workers, so one only applies if the operator writes "env https_proxy;"
     * and that is the only way to route the egress through a proxy.
     */

    if (curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION,
                         ngx_astralform_http_open_socket)
        != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION,
                            ngx_astralform_http_close_socket)
           != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_DEFAULT_PROTOCOL, "https")
           != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https")
           != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK
        /* the path goes out as built: libcurl removes no dot segment */
        || curl_easy_setopt(easy, CURLOPT_PATH_AS_IS, 1L) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                            (long) w->conf.connect_timeout)
           != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_USERAGENT, "astralform")
           != CURLE_OK)
    {
        return NGX_ERROR;
    }

    /*
     * A resolve still running on curl's thread when the transfer ends
     * (timeout, cancel) is left to finish on its own: without this, curl
     * joins the thread and blocks the worker for as long as getaddrinfo()
     * takes.
     */

#if (LIBCURL_VERSION_NUM >= 0x075700)
    if (curl_easy_setopt(easy, CURLOPT_QUICK_EXIT, 1L) != CURLE_OK) {
        return NGX_ERROR;
    }
#endif

    /*
     * TLS peer and host verification are curl's defaults and stay on.
     * HTTP/2 is offered over TLS (PIPEWAIT: see ngx_astralform_http_setup()).
     */

    if (curl_easy_setopt(easy, CURLOPT_HTTP_VERSION,
                         (long) CURL_HTTP_VERSION_2TLS)
        != CURLE_OK)
    {
        return NGX_ERROR;
    }

    if (w->conf.ca_file.len
        && curl_easy_setopt(easy, CURLOPT_CAINFO,
                            (char *) w->conf.ca_file.data)
           != CURLE_OK)
    {
        return NGX_ERROR;
    }

    /*
     * Set again after every reset: the reset keeps the share attached but
     * drops the session cache size that goes with it.
     */

    if (w->share != NULL
        && curl_easy_setopt(easy, CURLOPT_SHARE, w->share) != CURLE_OK)
    {
        return NGX_ERROR;
    }

    /*
     * The body is capped after decoding, in the write callback; a declared
     * Content-Length over the cap fails before the body is read.
     */

    if (w->conf.max_response != NGX_MAX_SIZE_T_VALUE
        && curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE,
                            (curl_off_t) w->conf.max_response)
           != CURLE_OK)
    {
        return NGX_ERROR;
    }

    if (curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "") != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION,
                            ngx_astralform_http_write)
           != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION,
                            ngx_astralform_http_header)
           != CURLE_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the options of this request, on a handle from get_easy() */

static ngx_int_t
ngx_astralform_http_setup(ngx_astralform_http_req_t *hr, CURL *easy)
{
    char        *url;
    ngx_msec_t   timeout;

    url = ngx_pnalloc(hr->pool, hr->url.len + 1);
    if (url == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(url, hr->url.data, hr->url.len);
    url[hr->url.len] = '\0';

    /* what is left of the first attempt's time: a retry gets no more */

    timeout = (ngx_msec_int_t) (hr->deadline - ngx_current_msec) > 0
              ? hr->deadline - ngx_current_msec : 1;

    if (hr->retried
        && curl_easy_setopt(easy, CURLOPT_FRESH_CONNECT, 1L) != CURLE_OK)
    {
        return NGX_ERROR;
    }

    if (curl_easy_setopt(easy, CURLOPT_URL, url) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_PRIVATE, hr) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, hr->errbuf)
           != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) timeout)
           != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_WRITEDATA, hr) != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_HEADERDATA, hr) != CURLE_OK)
    {
        return NGX_ERROR;
    }

    /*
     * A burst of HTTPS requests to a host waits for the first handshake
     * (ALPN) to share one HTTP/2 connection. Not with plain http: curl
     * would only learn "no multiplexing" from the first response, and a
     * slow one would hold the whole burst.
     */

    if ((hr->url.len < sizeof("http://") - 1
         || ngx_strncasecmp(hr->url.data, (u_char *) "http://",
                            sizeof("http://") - 1)
            != 0)
        && curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L) != CURLE_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_astralform_http_set_method(hr, easy) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_astralform_http_set_headers(hr, easy);
}


static ngx_int_t
ngx_astralform_http_set_method(ngx_astralform_http_req_t *hr, CURL *easy)
{
    char        *method;
    ngx_str_t   *m;
    ngx_uint_t   i, send_body;

    m = &hr->method;

    if (m->len == 0 || (m->len == 3 && ngx_strncmp(m->data, "GET", 3) == 0))
    {
        if (hr->body.len == 0) {
            return NGX_OK;
        }

        ngx_str_set(m, "GET");
    }

    if (m->len == 4 && ngx_strncmp(m->data, "HEAD", 4) == 0) {
        return curl_easy_setopt(easy, CURLOPT_NOBODY, 1L) == CURLE_OK
               ? NGX_OK : NGX_ERROR;
    }

    /* the method goes verbatim into the request line */

    for (i = 0; i < m->len; i++) {
        if (m->data[i] < 'A' || m->data[i] > 'Z') {
            return NGX_ERROR;
        }
    }

    send_body = hr->body.len
                || (m->len == 4 && ngx_strncmp(m->data, "POST", 4) == 0)
                || (m->len == 3 && ngx_strncmp(m->data, "PUT", 3) == 0)
                || (m->len == 5 && ngx_strncmp(m->data, "PATCH", 5) == 0);

    /*
     * The body is copied: curl may still read it after a cancel that
     * happens while the caller's pool is being destroyed.
     */

    if (send_body
        && (curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                             (curl_off_t) hr->body.len)
            != CURLE_OK
            || curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS,
                                hr->body.len ? (char *) hr->body.data : "")
               != CURLE_OK))
    {
        return NGX_ERROR;
    }

    if (m->len == 4 && ngx_strncmp(m->data, "POST", 4) == 0) {
        return NGX_OK;
    }

    method = ngx_pnalloc(hr->pool, m->len + 1);
    if (method == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(method, m->data, m->len);
    method[m->len] = '\0';

    return curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method) == CURLE_OK
           ? NGX_OK : NGX_ERROR;
}


/*
 * The header list is built in one allocation, nodes first, then the lines:
 * struct curl_slist is public and curl only reads the list. It is freed
 * with ngx_free(), after the handle left the multi handle (an orphan's
 * goes with the orphan: curl may still send the request).
 */

static ngx_int_t
ngx_astralform_http_set_headers(ngx_astralform_http_req_t *hr, CURL *easy)
{
    u_char             *p;
    size_t              size;
    ngx_str_t          *h;
    ngx_uint_t          i, n;
    struct curl_slist  *list;

    h = hr->headers.elts;
    n = hr->headers.nelts;

    /* an empty Expect stops curl from waiting for "100 Continue" */

    size = (n + 1) * sizeof(struct curl_slist) + sizeof("Expect:");

    for (i = 0; i < n; i++) {
        if (ngx_astralform_http_valid(h[i].data, h[i].len) != NGX_OK) {
            return NGX_ERROR;
        }

        size += h[i].len + 1;
    }

    list = ngx_alloc(size, hr->log);
    if (list == NULL) {
        return NGX_ERROR;
    }

    hr->slist = list;
    p = (u_char *) &list[n + 1];

    for (i = 0; i < n; i++) {
        list[i].data = (char *) p;
        list[i].next = &list[i + 1];
        p = ngx_cpymem(p, h[i].data, h[i].len);
        *p++ = '\0';
    }

    list[n].data = (char *) p;
    list[n].next = NULL;
    ngx_memcpy(p, "Expect:", sizeof("Expect:"));

    return curl_easy_setopt(easy, CURLOPT_HTTPHEADER, list) == CURLE_OK
           ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_astralform_http_valid(u_char *p, size_t len)
{
    u_char  *last;

    for (last = p + len; p < last; p++) {
        if (*p == CR || *p == LF || *p == '\0') {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


void
ngx_astralform_http_set_host(ngx_astralform_http_req_t *hr)
{
    u_char  *p, *start, *last;

    /* host[:port] only: userinfo, path and query may carry credentials */

    start = hr->url.data;
    last = start + hr->url.len;

    for (p = start; p < last; p++) {
        if (*p == ':' || *p == '/' || *p == '?' || *p == '#') {
            break;
        }
    }

    if (last - p >= 3 && p[0] == ':' && p[1] == '/' && p[2] == '/') {
        start = p + 3;
    }

    for (p = start; p < last; p++) {
        if (*p == '/' || *p == '?' || *p == '#') {
            break;
        }
    }

    last = p;

    for (p = last; p > start; p--) {
        if (p[-1] == '@') {
            start = p;
            break;
        }
    }

    if (start == last) {
        ngx_str_set(&hr->host, "-");
        return;
    }

    hr->host.data = start;
    hr->host.len = last - start;
}


void
ngx_astralform_http_cancel(ngx_astralform_http_req_t *hr)
{
    if (!hr->running) {
        return;
    }

    if (hr->native) {
        ngx_astralform_upstream_cancel(hr);
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, hr->log, 0,
                   "astralform http cancel: %V %V", &hr->method, &hr->host);

    if (ngx_astralform_http_worker.in_curl) {
        ngx_astralform_http_orphan(hr);
        return;
    }

    ngx_astralform_http_release(hr);
}


ngx_str_t *
ngx_astralform_http_resp_header(ngx_astralform_http_req_t *hr,
    const char *name)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);
    h = hr->resp_headers.elts;

    for (i = 0; i < hr->resp_headers.nelts; i++) {
        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i].value;
        }
    }

    return NULL;
}


ngx_int_t
ngx_astralform_http_init_process(ngx_cycle_t *cycle,
    ngx_astralform_http_conf_t *conf)
{
    u_char                        *p;
    curl_version_info_data        *vi;
    ngx_astralform_http_worker_t  *w;

    w = &ngx_astralform_http_worker;

    /* the cache manager and loader make no outbound requests */

    if (conf == NULL || ngx_process == NGX_PROCESS_HELPER) {
        return NGX_OK;
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "astralform: curl_global_init() failed");
        return NGX_ERROR;
    }

    vi = curl_version_info(CURLVERSION_NOW);

    if (!(vi->features & CURL_VERSION_ASYNCHDNS)) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "astralform: libcurl %s resolves names synchronously, "
                      "a slow DNS server will stall the worker",
                      vi->version);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, cycle->log, 0,
                   "astralform http: libcurl %s, http2:%d", vi->version,
                   (vi->features & CURL_VERSION_HTTP2) != 0);

    w->conf = *conf;
    w->log = cycle->log;

    if (conf->ca_file.len) {
        p = ngx_pnalloc(cycle->pool, conf->ca_file.len + 1);
        if (p == NULL) {
            goto failed;
        }

        ngx_memcpy(p, conf->ca_file.data, conf->ca_file.len);
        p[conf->ca_file.len] = '\0';
        w->conf.ca_file.data = p;
    }

    if (w->conf.max_response == 0) {
        w->conf.max_response = NGX_MAX_SIZE_T_VALUE;
    }

    ngx_queue_init(&w->running);
    ngx_queue_init(&w->failed);
    ngx_queue_init(&w->orphans);
    ngx_queue_init(&w->idle);

    w->dummy.fd = (ngx_socket_t) -1;
    w->timer.handler = ngx_astralform_http_timer_handler;
    w->timer.data = &w->dummy;
    w->timer.log = cycle->log;
    w->timer.cancelable = 1;

    w->multi = curl_multi_init();
    if (w->multi == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "astralform: curl_multi_init() failed");
        goto failed;
    }

    /*
     * MAXCONNECTS bounds the idle connections a worker keeps (curl's
     * default grows with the number of transfers ever added).
     */

    if (curl_multi_setopt(w->multi, CURLMOPT_SOCKETFUNCTION,
                          ngx_astralform_http_socket)
        != CURLM_OK
        || curl_multi_setopt(w->multi, CURLMOPT_TIMERFUNCTION,
                             ngx_astralform_http_timer)
           != CURLM_OK
        || curl_multi_setopt(w->multi, CURLMOPT_PIPELINING,
                             (long) CURLPIPE_MULTIPLEX)
           != CURLM_OK
        || curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS,
                             (long) NGX_ASTRALFORM_HTTP_MAXCONNECTS)
           != CURLM_OK
        || (w->conf.max_host_connections
            && curl_multi_setopt(w->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                                 (long) w->conf.max_host_connections)
               != CURLM_OK))
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "astralform: curl_multi_setopt() failed");
        goto failed;
    }

    /*
     * Every transfer has its own easy handle; sharing TLS sessions lets a
     * new connection to a known host resume instead of a full handshake.
     * Without the share handle that only costs handshakes.
     */

    w->share = curl_share_init();

    if (w->share != NULL
        && curl_share_setopt(w->share, CURLSHOPT_SHARE,
                             CURL_LOCK_DATA_SSL_SESSION)
           != CURLSHE_OK)
    {
        curl_share_cleanup(w->share);
        w->share = NULL;
    }

    /* w->conf: its ca_file is NUL-terminated */

    if (ngx_astralform_upstream_init_process(cycle, &w->conf) != NGX_OK) {
        goto failed;
    }

    return NGX_OK;

failed:

    if (w->multi != NULL) {
        curl_multi_cleanup(w->multi);
        w->multi = NULL;
    }

    curl_global_cleanup();

    return NGX_ERROR;
}


void
ngx_astralform_http_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                     i;
    ngx_queue_t                   *q;
    ngx_connection_t              *c;
    ngx_astralform_http_worker_t  *w;

    w = &ngx_astralform_http_worker;

    if (w->multi == NULL) {
        return;
    }

    ngx_astralform_upstream_exit_process(cycle);

    while (!ngx_queue_empty(&w->running)) {
        q = ngx_queue_head(&w->running);
        ngx_astralform_http_cancel(
                    ngx_queue_data(q, ngx_astralform_http_req_t, queue));
    }

    while (!ngx_queue_empty(&w->failed)) {
        q = ngx_queue_head(&w->failed);
        ngx_astralform_http_cancel(
                    ngx_queue_data(q, ngx_astralform_http_req_t, queue));
    }

    ngx_astralform_http_reap_orphans();

    /* reset handles still hold the share */

    while (w->neasies) {
        curl_easy_cleanup(w->easies[--w->neasies]);
    }

    /* closes the cached connections, close_socket() frees their wrappers */

    w->in_curl++;
    curl_multi_cleanup(w->multi);
    w->in_curl--;

    w->multi = NULL;

    /* wrappers of sockets curl neither removed nor closed: bookkeeping */

    for (i = 0; i < w->nsocks; i++) {
        c = w->socks[i].connection;

        if (c == NULL) {
            continue;
        }

        if (!w->socks[i].watched && !w->socks[i].closed) {
            ngx_queue_remove(&c->queue);
        }

        w->socks[i].watched = 1;
        w->socks[i].closed = 1;
        ngx_astralform_http_unwrap(c);
    }

    if (w->share != NULL) {
        curl_share_cleanup(w->share);
        w->share = NULL;
    }

    if (w->timer.timer_set) {
        ngx_del_timer(&w->timer);
    }

    if (w->timer.posted) {
        ngx_delete_posted_event(&w->timer);
    }

    if (w->socks != NULL) {
        ngx_free(w->socks);
        w->socks = NULL;
        w->nsocks = 0;
    }

    curl_global_cleanup();
}


/* the entry for fd number s, the table grown to hold it; NULL: no memory */

static ngx_astralform_http_sock_t *
ngx_astralform_http_sock(curl_socket_t s)
{
    size_t                         n;
    ngx_astralform_http_sock_t    *socks;
    ngx_astralform_http_worker_t  *w;

    w = &ngx_astralform_http_worker;

    if ((ngx_uint_t) s < w->nsocks) {
        return &w->socks[s];
    }

    n = ngx_max((size_t) s + 1, 2 * w->nsocks);
    n = ngx_max(n, 64);

    socks = ngx_alloc(n * sizeof(ngx_astralform_http_sock_t), w->log);
    if (socks == NULL) {
        return NULL;
    }

    if (w->socks != NULL) {
        ngx_memcpy(socks, w->socks,
                   w->nsocks * sizeof(ngx_astralform_http_sock_t));
        ngx_free(w->socks);
    }

    ngx_memzero(&socks[w->nsocks],
                (n - w->nsocks) * sizeof(ngx_astralform_http_sock_t));

    w->socks = socks;
    w->nsocks = n;

    return &socks[s];
}


static curl_socket_t
ngx_astralform_http_open_socket(void *clientp, curlsocktype purpose,
    struct curl_sockaddr *addr)
{
    ngx_uint_t                     n;
    curl_socket_t                  s, held[NGX_ASTRALFORM_HTTP_HELD];
    ngx_file_info_t                fi;
    ngx_astralform_http_sock_t    *sock;
    ngx_astralform_http_worker_t  *w;

    w = &ngx_astralform_http_worker;

    s = socket(addr->family, addr->socktype, addr->protocol);

    /*
     * A wrapper still at this number belongs to a socket curl closed
     * without a REMOVE. curl would take the new socket for the old one and
     * never announce it: it gets another number, the stale entries go with
     * the REMOVE that is still to come.
     */

    for (n = 0;
         s != CURL_SOCKET_BAD && n < NGX_ASTRALFORM_HTTP_HELD
         && (ngx_uint_t) s < w->nsocks && w->socks[s].connection != NULL;
         n++)
    {
        held[n] = s;
        s = fcntl(s, F_DUPFD, 0);
    }

    if (n) {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, w->log, 0,
                       "astralform http: fd:%d is still held, using fd:%d",
                       held[0], s);
    }

    while (n) {
        (void) close(held[--n]);
    }

    if (s == CURL_SOCKET_BAD) {
        return s;
    }

    /*
     * Its inode tells this socket from whatever gets the number if curl
     * closes it without close_socket() (see ngx_astralform_http_sock_t).
     * Without it the socket is never confirmed: only slower.
     */

    sock = ngx_astralform_http_sock(s);

    if (sock != NULL) {

        if (sock->confirmed) {
            ngx_log_error(NGX_LOG_ALERT, w->log, 0,
                          "astralform: fd:%d was closed without "
                          "the close-socket callback", s);
            sock->confirmed = 0;
        }

        sock->made = ngx_fd_info(s, &fi) != NGX_FILE_ERROR
                     ? ngx_file_uniq(&fi) : 0;
    }

    return s;
}


static int
ngx_astralform_http_close_socket(void *clientp, curl_socket_t s)
{
    ngx_connection_t              *c;
    ngx_astralform_http_sock_t    *sock;
    ngx_astralform_http_worker_t  *w;

    w = &ngx_astralform_http_worker;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, w->log, 0,
                   "astralform http: closing fd:%d", s);

    if ((ngx_uint_t) s < w->nsocks) {
        sock = &w->socks[s];
        c = sock->connection;

        if (c != NULL && !sock->closed) {

            if (!sock->watched) {
                /* idle in curl's cache until now */
                ngx_astralform_http_unwrap(c);

            } else {

                /*
                 * Not removed first (curl announces the REMOVE before the
                 * close only when the closing handle is in the multi
                 * handle): the wrapper stays, without events, holding the
                 * number until the REMOVE.
                 */

                ngx_astralform_http_quiet(c,
                               ngx_astralform_http_owned(c) == NGX_OK
                               ? 0 : NGX_CLOSE_EVENT);
                sock->closed = 1;
            }
        }

        sock->confirmed = 0;
        sock->made = 0;
    }

    if (ngx_close_socket(s) == -1) {
        ngx_log_error(NGX_LOG_ALERT, w->log, ngx_socket_errno,
                      ngx_close_socket_n " fd:%d failed", s);
        return 1;
    }

    return 0;
}


static int
ngx_astralform_http_socket(CURL *easy, curl_socket_t s, int what,
    void *userp, void *socketp)
{
    ngx_connection_t              *c;
    ngx_astralform_http_sock_t    *sock;
    ngx_astralform_http_worker_t  *w;

    w = &ngx_astralform_http_worker;
    c = socketp;

    if (what == CURL_POLL_REMOVE) {
        if (c != NULL) {
            ngx_astralform_http_removed(c);
        }

        return 0;
    }

    /*
     * Returning -1 would abort every transfer of the multi handle: a
     * socket nginx cannot watch fails only the transfer it belongs to.
     */

    if (c == NULL) {
        c = ngx_astralform_http_wrap(s);
        if (c == NULL) {
            ngx_astralform_http_no_connection(easy);
            return 0;
        }

        (void) curl_multi_assign(w->multi, s, c);

    } else if (ngx_astralform_http_owned(c) != NGX_OK) {

        /* the number names another socket now, the old one took its events */

        ngx_astralform_http_forget(c);
    }

    /*
     * The wrapper's inode is the socket's at this point: fstat()ed in
     * wrap(), owned() or forget(), unless the socket is confirmed already.
     */

    sock = &w->socks[s];

    if (!sock->confirmed && (what & CURL_POLL_IN)
        && sock->made != 0 && sock->ino == sock->made)
    {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, w->log, 0,
                       "astralform http: fd:%d is connected", s);

        sock->confirmed = 1;
    }

    if (ngx_astralform_http_watch(c->read, NGX_READ_EVENT,
                                  what & CURL_POLL_IN)
        != NGX_OK
        || ngx_astralform_http_watch(c->write, NGX_WRITE_EVENT,
                                     what & CURL_POLL_OUT)
           != NGX_OK)
    {
        ngx_astralform_http_unwrap(c);
        (void) curl_multi_assign(w->multi, s, NULL);
        ngx_astralform_http_no_connection(easy);
    }

    return 0;
}


static ngx_connection_t *
ngx_astralform_http_wrap(curl_socket_t s)
{
    ngx_connection_t              *c;
    ngx_file_info_t                fi;
    ngx_file_uniq_t                ino;
    ngx_astralform_http_sock_t    *sock;
    ngx_astralform_http_worker_t  *w;

    w = &ngx_astralform_http_worker;

    sock = ngx_astralform_http_sock(s);
    if (sock == NULL) {
        return NULL;
    }

    c = sock->connection;

    if (c != NULL) {

        if (sock->confirmed && !sock->closed) {

            /* a cached connection's socket back at work, events and all */

            if (!sock->watched) {
                ngx_queue_remove(&c->queue);
                sock->watched = 1;
            }

            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, w->log, 0,
                           "astralform http: watching fd:%d again", s);

            return c;
        }

        /* a wrapper left at this number watched a socket that is gone */

        ngx_astralform_http_unwrap(c);
    }

    ino = 0;

    if (!sock->confirmed) {
        if (ngx_fd_info(s, &fi) == NGX_FILE_ERROR) {
            ngx_log_error(NGX_LOG_ALERT, w->log, ngx_errno,
                          "astralform: fstat(%d) failed", s);
            return NULL;
        }

        ino = ngx_file_uniq(&fi);
    }

    /* an idle socket does without its wrapper rather than a transfer */

    if (ngx_cycle->free_connections == NULL) {
        ngx_astralform_http_release_idle(0);
    }

    c = ngx_get_connection(s, w->log);
    if (c == NULL) {
        return NULL;
    }

    c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);
    c->read->handler = ngx_astralform_http_read_handler;
    c->write->handler = ngx_astralform_http_write_handler;
    c->read->log = c->log;
    c->write->log = c->log;

    sock = &w->socks[s];
    sock->connection = c;
    sock->ino = ino;
    sock->watched = 1;
    sock->closed = 0;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, w->log, 0,
                   "astralform http: watching fd:%d", s);

    return c;
}


/* whether c->fd still is the socket c was made for */

static ngx_int_t
ngx_astralform_http_owned(ngx_connection_t *c)
{
    ngx_file_info_t                fi;
    ngx_astralform_http_sock_t    *sock;
    ngx_astralform_http_worker_t  *w;

    w = &ngx_astralform_http_worker;

    if (c->fd == (ngx_socket_t) -1 || (ngx_uint_t) c->fd >= w->nsocks) {
        return NGX_DECLINED;
    }

    sock = &w->socks[c->fd];

    if (sock->connection != c || sock->closed) {
        return NGX_DECLINED;
    }

    if (sock->confirmed) {
        return NGX_OK;
    }

    if (ngx_fd_info(c->fd, &fi) == NGX_FILE_ERROR
        || ngx_file_uniq(&fi) != sock->ino)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_astralform_http_watch(ngx_event_t *ev, ngx_int_t event, ngx_uint_t on)
{
    /* flags 0: level-triggered, also with epoll */

    if (on && !ev->active) {
        return ngx_add_event(ev, event, 0);
    }

    if (!on && ev->active) {
        return ngx_del_event(ev, event, 0);
    }

    return NGX_OK;
}


/* flags: NGX_CLOSE_EVENT when the fd is not (or no longer) the socket */

static void
ngx_astralform_http_quiet(ngx_connection_t *c, ngx_uint_t flags)
{
    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, flags);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, flags);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }
}


static void
ngx_astralform_http_forget(ngx_connection_t *c)
{
    ngx_file_info_t                fi;
    ngx_astralform_http_sock_t    *sock;
    ngx_astralform_http_worker_t  *w;

    /*
     * The socket was closed behind our back (or by close_socket() before
     * its REMOVE): the kernel dropped its epoll registration, only nginx's
     * bookkeeping is left to clear.
     */

    w = &ngx_astralform_http_worker;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "astralform http: fd:%d was closed by libcurl", c->fd);

    ngx_astralform_http_quiet(c, NGX_CLOSE_EVENT);

    if ((ngx_uint_t) c->fd < w->nsocks && w->socks[c->fd].connection == c) {
        sock = &w->socks[c->fd];
        sock->closed = 0;
        sock->ino = ngx_fd_info(c->fd, &fi) != NGX_FILE_ERROR
                    ? ngx_file_uniq(&fi) : 0;
    }
}


/* CURL_POLL_REMOVE */

static void
ngx_astralform_http_removed(ngx_connection_t *c)
{
    ngx_astralform_http_sock_t    *sock;
    ngx_astralform_http_worker_t  *w;

    w = &ngx_astralform_http_worker;

    if (c->fd == (ngx_socket_t) -1 || (ngx_uint_t) c->fd >= w->nsocks) {
        return;
    }

    sock = &w->socks[c->fd];

    if (sock->connection != c || sock->closed || !sock->confirmed
        || !sock->watched)
    {
        ngx_astralform_http_unwrap(c);
        return;
    }

    /*
     * Idle in curl's connection cache: the wrapper and the read event stay
     * (see the read handler), a write event would fire at once.
     */

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "astralform http: fd:%d is idle", c->fd);

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    sock->watched = 0;
    ngx_queue_insert_head(&w->idle, &c->queue);

    /* idle sockets hold no connections nginx runs short of */

    if (ngx_cycle->free_connection_n < ngx_cycle->connection_n / 16) {
        ngx_astralform_http_release_idle(1);
    }
}


static void
ngx_astralform_http_unwrap(ngx_connection_t *c)
{
    ngx_astralform_http_sock_t    *sock;
    ngx_astralform_http_worker_t  *w;

    w = &ngx_astralform_http_worker;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "astralform http: releasing fd:%d", c->fd);

    ngx_astralform_http_quiet(c, ngx_astralform_http_owned(c) == NGX_OK
                                 ? 0 : NGX_CLOSE_EVENT);

    if ((ngx_uint_t) c->fd < w->nsocks && w->socks[c->fd].connection == c) {
        sock = &w->socks[c->fd];

        if (!sock->watched && !sock->closed) {
            ngx_queue_remove(&c->queue);
        }

        sock->connection = NULL;
        sock->watched = 0;
        sock->closed = 0;
    }

    ngx_free_connection(c);

    /*
     * The fd stays open, it is curl's. fd -1 makes events for it already
     * fetched in this loop iteration stale, as ngx_close_connection() does.
     */

    c->fd = (ngx_socket_t) -1;
}


/* the oldest idle wrapper, or all; their sockets stay in curl's cache */

static void
ngx_astralform_http_release_idle(ngx_uint_t all)
{
    ngx_queue_t                   *q;
    ngx_astralform_http_worker_t  *w;

    w = &ngx_astralform_http_worker;

    while (!ngx_queue_empty(&w->idle)) {
        q = ngx_queue_last(&w->idle);
        ngx_astralform_http_unwrap(ngx_queue_data(q, ngx_connection_t, queue));

        if (!all) {
            break;
        }
    }
}


static void
ngx_astralform_http_no_connection(CURL *easy)
{
    char                       *priv;
    ngx_astralform_http_req_t  *hr;

    priv = NULL;

    if (easy == NULL
        || curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv) != CURLE_OK
        || priv == NULL)
    {
        return;
    }

    hr = (ngx_astralform_http_req_t *) priv;

    if (!hr->running || hr->no_connection) {
        return;
    }

    /* finished once curl_multi_socket_action() has returned */

    hr->no_connection = 1;
    ngx_queue_remove(&hr->queue);
    ngx_queue_insert_tail(&ngx_astralform_http_worker.failed, &hr->queue);
}


static int
ngx_astralform_http_timer(CURLM *multi, long timeout_ms, void *userp)
{
    ngx_event_t  *ev;

    ev = &ngx_astralform_http_worker.timer;

    /*
     * Deleted first: ngx_add_timer() keeps an old timer that is less than
     * 300ms away from the new one. 0 fires on the next loop iteration,
     * never from inside this callback.
     */

    if (ev->timer_set) {
        ngx_del_timer(ev);
    }

    if (timeout_ms >= 0) {
        ngx_add_timer(ev, (ngx_msec_t) timeout_ms);
    }

    return 0;
}


static void
ngx_astralform_http_read_handler(ngx_event_t *ev)
{
    ngx_connection_t            *c;
    ngx_astralform_http_sock_t  *sock;

    c = ev->data;
    sock = &ngx_astralform_http_worker.socks[c->fd];

    if (!sock->watched || sock->closed) {

        /*
         * Idle in curl's cache and readable: the peer closed it, or sent
         * what nobody asked for. Level-triggered, it would be reported
         * on every iteration; curl finds out when it takes the socket.
         */

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                       "astralform http: idle fd:%d is readable", c->fd);

        if (ev->active && !sock->closed) {
            (void) ngx_del_event(ev, NGX_READ_EVENT, 0);
        }

        return;
    }

    ngx_astralform_http_action(c->fd, CURL_CSELECT_IN);
}


static void
ngx_astralform_http_write_handler(ngx_event_t *ev)
{
    ngx_connection_t            *c;
    ngx_astralform_http_sock_t  *sock;

    c = ev->data;
    sock = &ngx_astralform_http_worker.socks[c->fd];

    if (!sock->watched || sock->closed) {
        if (ev->active && !sock->closed) {
            (void) ngx_del_event(ev, NGX_WRITE_EVENT, 0);
        }

        return;
    }

    ngx_astralform_http_action(c->fd, CURL_CSELECT_OUT);
}


static void
ngx_astralform_http_timer_handler(ngx_event_t *ev)
{
    ngx_astralform_http_action(CURL_SOCKET_TIMEOUT, 0);
}


static void
ngx_astralform_http_action(curl_socket_t s, int mask)
{
    int                            running;
    CURLMcode                      mc;
    ngx_astralform_http_worker_t  *w;

    w = &ngx_astralform_http_worker;

    w->in_curl++;
    mc = curl_multi_socket_action(w->multi, s, mask, &running);
    w->in_curl--;

    if (mc != CURLM_OK) {
        ngx_log_error(NGX_LOG_ALERT, w->log, 0,
                      "astralform: curl_multi_socket_action() failed: %s",
                      curl_multi_strerror(mc));
    }

    ngx_astralform_http_collect();
}


static void
ngx_astralform_http_collect(void)
{
    int                            pending;
    char                          *priv;
    CURL                          *easy;
    CURLMsg                       *msg;
    CURLcode                       code;
    ngx_queue_t                   *q;
    ngx_astralform_http_worker_t  *w;

    w = &ngx_astralform_http_worker;

    ngx_astralform_http_reap_orphans();

    /*
     * done() may add and remove handles; curl_multi_remove_handle() also
     * drops the messages of the handle removed, so the loop stays valid.
     */

    for ( ;; ) {
        msg = curl_multi_info_read(w->multi, &pending);
        if (msg == NULL) {
            break;
        }

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        easy = msg->easy_handle;
        code = msg->data.result;
        priv = NULL;

        if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv) != CURLE_OK
            || priv == NULL)
        {
            /* an orphan that could not be queued */
            (void) curl_multi_remove_handle(w->multi, easy);
            curl_easy_cleanup(easy);
            continue;
        }

        ngx_astralform_http_finish((ngx_astralform_http_req_t *) priv, code);
    }

    while (!ngx_queue_empty(&w->failed)) {
        q = ngx_queue_head(&w->failed);
        ngx_astralform_http_finish(
                    ngx_queue_data(q, ngx_astralform_http_req_t, queue),
                    CURLE_COULDNT_CONNECT);
    }
}


static void
ngx_astralform_http_finish(ngx_astralform_http_req_t *hr, CURLcode code)
{
    long         status;
    const char  *err;

    if (ngx_astralform_http_retry(hr, code) == NGX_OK) {
        return;
    }

    status = 0;
    (void) curl_easy_getinfo(hr->easy, CURLINFO_RESPONSE_CODE, &status);

    ngx_astralform_http_release(hr);

    hr->status = status > 0 ? (ngx_uint_t) status : 0;
    hr->error = ngx_astralform_http_map(hr, code);

    if (ngx_astralform_http_body(hr) != NGX_OK) {
        hr->error = NGX_ASTRALFORM_HTTP_FAILED;
        ngx_cpystrn((u_char *) hr->errbuf, (u_char *) "out of memory",
                    CURL_ERROR_SIZE);
    }

    ngx_log_debug5(NGX_LOG_DEBUG_HTTP, hr->log, 0,
                   "astralform http done: %V %V status:%ui error:%d "
                   "body:%uz", &hr->method, &hr->host, hr->status,
                   hr->error, hr->resp_body.len);

    if (hr->error == NGX_ASTRALFORM_HTTP_TOO_LARGE) {

        if (hr->header_bytes > NGX_ASTRALFORM_HTTP_MAX_HEADERS) {
            ngx_log_error(NGX_LOG_ERR, hr->log, 0,
                          "astralform: upstream request to \"%V\" failed: "
                          "response headers larger than %uz bytes",
                          &hr->host, (size_t) NGX_ASTRALFORM_HTTP_MAX_HEADERS);

        } else {
            ngx_log_error(NGX_LOG_ERR, hr->log, 0,
                          "astralform: upstream request to \"%V\" failed: "
                          "response larger than %uz bytes", &hr->host,
                          ngx_astralform_http_worker.conf.max_response);
        }

    } else if (hr->error != NGX_ASTRALFORM_HTTP_OK) {

        if (hr->no_connection) {
            err = "worker_connections are not enough";

        } else if (hr->errbuf[0] != '\0') {
            err = hr->errbuf;

        } else {
            err = curl_easy_strerror(code);
        }

        ngx_log_error(NGX_LOG_ERR, hr->log, 0,
                      "astralform: upstream request to \"%V\" failed: %s",
                      &hr->host, err);
    }

    hr->done(hr);
}


/*
 * The request's deadline passed and curl has not ended it: libcurl 7.88
 * starts its timer again when it retries a dead connection itself.
 */

static void
ngx_astralform_http_expire_handler(ngx_event_t *ev)
{
    ngx_astralform_http_req_t  *hr;

    hr = ev->data;

    if (!hr->running) {
        return;
    }

    ngx_snprintf((u_char *) hr->errbuf, CURL_ERROR_SIZE,
                 "Operation timed out after %M milliseconds%Z",
                 hr->timeout ? hr->timeout
                             : ngx_astralform_http_worker.conf.timeout);

    ngx_astralform_http_finish(hr, CURLE_OPERATION_TIMEDOUT);
}


/*
 * A provider may close a kept-alive connection just as a request goes out
 * on it (keepalive_timeout, keepalive_requests). libcurl 7.88 retries that
 * itself when the send fails while the request is written, or when the
 * read fails or finds the end with nothing received; what it leaves is a
 * send that fails once the transfer is under way (the rest of a body, an
 * HTTP/2 frame) and an HTTP/2 connection gone before the stream's answer.
 * Those are retried here, once, on a fresh connection, as nginx's upstream
 * retries them (proxy_next_upstream error): only if the connection was
 * reused, no byte of the answer came, and the method is idempotent or
 * nothing of the request was sent. curl counts what it sent of the request
 * (REQUEST_SIZE: the head, SIZE_UPLOAD: the body), not what the provider
 * read, so a POST that sent anything is not retried. The retry has what
 * is left of the first attempt's timeout.
 *
 * NGX_OK: the request runs again, done() comes with the retry's outcome.
 */

static ngx_int_t
ngx_astralform_http_retry(ngx_astralform_http_req_t *hr, CURLcode code)
{
    long         connects, head;
    curl_off_t   body;
    const char  *err;

    if (hr->retried || hr->no_connection || hr->too_large
        || hr->header_bytes || hr->received)
    {
        return NGX_DECLINED;
    }

    switch (code) {

    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        break;

    default:
        return NGX_DECLINED;
    }

    connects = 1;

    if (curl_easy_getinfo(hr->easy, CURLINFO_NUM_CONNECTS, &connects)
        != CURLE_OK
        || connects != 0)
    {
        return NGX_DECLINED;
    }

    if (!ngx_astralform_http_idempotent(&hr->method)) {
        head = 1;
        body = 1;

        if (curl_easy_getinfo(hr->easy, CURLINFO_REQUEST_SIZE, &head)
            != CURLE_OK
            || curl_easy_getinfo(hr->easy, CURLINFO_SIZE_UPLOAD_T, &body)
               != CURLE_OK
            || head != 0 || body != 0)
        {
            return NGX_DECLINED;
        }
    }

    if ((ngx_msec_int_t) (hr->deadline - ngx_current_msec) <= 0) {
        return NGX_DECLINED;
    }

    err = hr->errbuf[0] != '\0' ? hr->errbuf : curl_easy_strerror(code);

    ngx_log_error(NGX_LOG_INFO, hr->log, 0,
                  "astralform: upstream request to \"%V\" failed on a "
                  "reused connection (%s), retrying on a fresh one",
                  &hr->host, err);

    ngx_astralform_http_release(hr);

    hr->retried = 1;

    if (ngx_astralform_http_run(hr) == NGX_OK) {
        return NGX_OK;
    }

    /* run() logged why */

    hr->error = NGX_ASTRALFORM_HTTP_FAILED;

    hr->done(hr);

    return NGX_OK;
}


/* RFC 9110, 9.2.2 */

ngx_uint_t
ngx_astralform_http_idempotent(ngx_str_t *m)
{
    static ngx_str_t  methods[] = {
        ngx_string("GET"), ngx_string("HEAD"), ngx_string("PUT"),
        ngx_string("DELETE"), ngx_string("OPTIONS"), ngx_string("TRACE")
    };

    ngx_uint_t  i;

    if (m->len == 0) {
        return 1;
    }

    for (i = 0; i < sizeof(methods) / sizeof(ngx_str_t); i++) {
        if (m->len == methods[i].len
            && ngx_strncmp(m->data, methods[i].data, m->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static ngx_astralform_http_error_e
ngx_astralform_http_map(ngx_astralform_http_req_t *hr, CURLcode code)
{
    if (hr->no_connection) {
        return NGX_ASTRALFORM_HTTP_CONNECT;
    }

    switch (code) {

    case CURLE_OK:
        return NGX_ASTRALFORM_HTTP_OK;

    case CURLE_OPERATION_TIMEDOUT:
        return NGX_ASTRALFORM_HTTP_TIMEOUT;

    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CLIENTCERT:
        return NGX_ASTRALFORM_HTTP_CONNECT;

    case CURLE_FILESIZE_EXCEEDED:
        hr->too_large = 1;
        return NGX_ASTRALFORM_HTTP_TOO_LARGE;

    case CURLE_WRITE_ERROR:
        return hr->too_large ? NGX_ASTRALFORM_HTTP_TOO_LARGE
                             : NGX_ASTRALFORM_HTTP_FAILED;

    default:
        return NGX_ASTRALFORM_HTTP_FAILED;
    }
}


static ngx_int_t
ngx_astralform_http_body(ngx_astralform_http_req_t *hr)
{
    u_char       *p;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (hr->chunks == NULL) {
        return NGX_OK;
    }

    if (hr->error == NGX_ASTRALFORM_HTTP_OK && hr->chunks->next == NULL) {
        b = hr->chunks->buf;
        hr->resp_body.data = b->pos;
        hr->resp_body.len = b->last - b->pos;
        hr->chunks = NULL;
        return NGX_OK;
    }

    p = NULL;

    if (hr->error == NGX_ASTRALFORM_HTTP_OK) {
        p = ngx_pnalloc(hr->pool, hr->received);
        if (p == NULL) {
            return NGX_ERROR;
        }

        hr->resp_body.data = p;
        hr->resp_body.len = hr->received;
    }

    /* a partial body is of no use; large chunks go back to the system */

    for (cl = hr->chunks; cl; cl = cl->next) {
        b = cl->buf;

        if (p != NULL) {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
        }

        (void) ngx_pfree(hr->pool, b->start);
    }

    hr->chunks = NULL;

    return NGX_OK;
}


static void
ngx_astralform_http_release(ngx_astralform_http_req_t *hr)
{
    CURLMcode                      mc;
    ngx_astralform_http_worker_t  *w;

    w = &ngx_astralform_http_worker;

    w->in_curl++;
    mc = curl_multi_remove_handle(w->multi, hr->easy);
    w->in_curl--;

    ngx_astralform_http_put_easy(hr->easy, mc);
    ngx_free(hr->slist);

    hr->easy = NULL;
    hr->slist = NULL;
    hr->running = 0;
    ngx_queue_remove(&hr->queue);

    if (hr->expire.timer_set) {
        ngx_del_timer(&hr->expire);
    }

    if (--w->nrunning == 0) {
        w->timer.cancelable = 1;
    }
}


static void
ngx_astralform_http_orphan(ngx_astralform_http_req_t *hr)
{
    CURL                          *easy;
    ngx_astralform_http_orphan_t  *o;
    ngx_astralform_http_worker_t  *w;

    /*
     * curl_multi_remove_handle() is refused while libcurl is on the stack
     * (only nginx reclaiming connections for a new socket gets here). The
     * handle stays in the multi until the current call returns, but must
     * not touch hr again: its memory goes with the caller's pool.
     */

    w = &ngx_astralform_http_worker;
    easy = hr->easy;

    (void) curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    (void) curl_easy_setopt(easy, CURLOPT_WRITEDATA, NULL);
    (void) curl_easy_setopt(easy, CURLOPT_HEADERDATA, NULL);
    (void) curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);

    o = ngx_alloc(sizeof(ngx_astralform_http_orphan_t), w->log);

    if (o != NULL) {
        o->easy = easy;
        o->slist = hr->slist;
        ngx_queue_insert_tail(&w->orphans, &o->queue);
    }

    hr->easy = NULL;
    hr->slist = NULL;
    hr->running = 0;
    ngx_queue_remove(&hr->queue);

    if (hr->expire.timer_set) {
        ngx_del_timer(&hr->expire);
    }

    if (--w->nrunning == 0) {
        w->timer.cancelable = 1;
    }
}


static void
ngx_astralform_http_reap_orphans(void)
{
    ngx_queue_t                   *q;
    ngx_astralform_http_orphan_t  *o;
    ngx_astralform_http_worker_t  *w;

    w = &ngx_astralform_http_worker;

    while (!ngx_queue_empty(&w->orphans)) {
        q = ngx_queue_head(&w->orphans);
        ngx_queue_remove(q);
        o = ngx_queue_data(q, ngx_astralform_http_orphan_t, queue);

        (void) curl_multi_remove_handle(w->multi, o->easy);
        curl_easy_cleanup(o->easy);
        ngx_free(o->slist);
        ngx_free(o);
    }
}


static size_t
ngx_astralform_http_write(char *ptr, size_t size, size_t nmemb,
    void *userdata)
{
    size_t                      len, room, n;
    ngx_buf_t                  *b;
    curl_off_t                  clen;
    ngx_chain_t                *cl, **ll;
    ngx_astralform_http_req_t  *hr;

    hr = userdata;

    /* any value other than len fails the transfer with CURLE_WRITE_ERROR */

    if (hr == NULL) {
        return 0;
    }

    len = size * nmemb;
    room = ngx_astralform_http_worker.conf.max_response - hr->received;

    if (len > room) {
        hr->too_large = 1;
        return 0;
    }

    if (len == 0) {
        return 0;
    }

    b = NULL;

    for (ll = &hr->chunks; *ll; ll = &(*ll)->next) {
        b = (*ll)->buf;
    }

    if (b == NULL || (size_t) (b->end - b->last) < len) {

        /* doubling chunks, the first one sized by Content-Length if any */

        n = ngx_max(hr->received, NGX_ASTRALFORM_HTTP_CHUNK);

        if (hr->received == 0
            && curl_easy_getinfo(hr->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T,
                                 &clen)
               == CURLE_OK
            && clen > 0 && (uint64_t) clen <= room)
        {
            n = ngx_max(n, (size_t) clen);
        }

        n = ngx_max(ngx_min(n, room), len);

        b = ngx_create_temp_buf(hr->pool, n);
        if (b == NULL) {
            return 0;
        }

        cl = ngx_alloc_chain_link(hr->pool);
        if (cl == NULL) {
            return 0;
        }

        cl->buf = b;
        cl->next = NULL;
        *ll = cl;
    }

    b->last = ngx_cpymem(b->last, ptr, len);
    hr->received += len;

    return len;
}


static size_t
ngx_astralform_http_header(char *buf, size_t size, size_t nitems,
    void *userdata)
{
    size_t                      len;
    u_char                     *p, *last, *colon, *name_end, *value;
    ngx_table_elt_t            *h;
    ngx_astralform_http_req_t  *hr;

    hr = userdata;

    if (hr == NULL) {
        return 0;
    }

    len = size * nitems;

    hr->header_bytes += len;

    if (hr->header_bytes > NGX_ASTRALFORM_HTTP_MAX_HEADERS) {
        hr->too_large = 1;
        return 0;
    }

    p = (u_char *) buf;
    last = p + len;

    /*
     * A status line starts a response: only the last one's headers are
     * kept (after "100 Continue", "103 Early Hints", a proxy's CONNECT).
     */

    if (len >= 5 && ngx_strncmp(p, "HTTP/", 5) == 0) {
        hr->resp_headers.nelts = 0;
        return len;
    }

    while (last > p && (last[-1] == CR || last[-1] == LF)) {
        last--;
    }

    colon = ngx_strlchr(p, last, ':');

    /* the empty line, obsolete line folding */

    if (colon == NULL || colon == p || *p == ' ' || *p == '\t') {
        return len;
    }

    name_end = colon;

    while (name_end > p && (name_end[-1] == ' ' || name_end[-1] == '\t')) {
        name_end--;
    }

    value = colon + 1;

    while (value < last && (*value == ' ' || *value == '\t')) {
        value++;
    }

    while (last > value && (last[-1] == ' ' || last[-1] == '\t')) {
        last--;
    }

    h = ngx_array_push(&hr->resp_headers);
    if (h == NULL) {
        return 0;
    }

    h->key.len = name_end - p;
    h->value.len = last - value;

    h->key.data = ngx_pnalloc(hr->pool,
                              2 * h->key.len + h->value.len + 3);
    if (h->key.data == NULL) {
        return 0;
    }

    h->value.data = h->key.data + h->key.len + 1;
    h->lowcase_key = h->value.data + h->value.len + 1;

    ngx_memcpy(h->key.data, p, h->key.len);
    h->key.data[h->key.len] = '\0';
    ngx_memcpy(h->value.data, value, h->value.len);
    h->value.data[h->value.len] = '\0';

    h->hash = ngx_hash_strlow(h->lowcase_key, h->key.data, h->key.len);
    h->lowcase_key[h->key.len] = '\0';

    return len;
}


static void
ngx_astralform_http_cleanup(void *data)
{
    ngx_astralform_http_req_t  *hr = data;

    ngx_astralform_http_cancel(hr);
}
