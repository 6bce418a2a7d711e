/*
 * Outbound HTTP(S) on the worker's event loop: over nginx's own connections
 * (ngx_astralform_upstream.c) where it can, else one libcurl multi handle
 * per worker, its sockets and timer driven by nginx events.
 */

#ifndef _NGX_ASTRALFORM_HTTP_H_INCLUDED_
#define _NGX_ASTRALFORM_HTTP_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


typedef enum {
    NGX_ASTRALFORM_HTTP_OK = 0,         /* an HTTP answer (any status) */
    NGX_ASTRALFORM_HTTP_TIMEOUT,        /* connect or total timeout */
    NGX_ASTRALFORM_HTTP_CONNECT,        /* resolve, connect or TLS failure */
    NGX_ASTRALFORM_HTTP_TOO_LARGE,      /* body over max_response */
    NGX_ASTRALFORM_HTTP_FAILED          /* anything else (reset, garbage) */
} ngx_astralform_http_error_e;


typedef struct ngx_astralform_http_req_s  ngx_astralform_http_req_t;

typedef void (*ngx_astralform_http_done_pt)(ngx_astralform_http_req_t *hr);


#define NGX_ASTRALFORM_HTTP_CLIENT_NGINX  0   /* own connections, else curl */
#define NGX_ASTRALFORM_HTTP_CLIENT_CURL   1   /* libcurl for every call */


typedef struct {
    ngx_uint_t                   client;         /* astralform_http_client */
    ngx_msec_t                   connect_timeout;
    ngx_msec_t                   timeout;
    size_t                       max_response;
    ngx_str_t                    ca_file;        /* empty: system CAs */
    ngx_uint_t                   max_host_connections;
} ngx_astralform_http_conf_t;


struct ngx_astralform_http_req_s {
    /* set by the caller before ngx_astralform_http_start() */
    ngx_str_t                    method;         /* "GET", "POST", ... */
    ngx_str_t                    url;            /* absolute http(s) URL */
    ngx_array_t                  headers;        /* of ngx_str_t
                                                    "Name: value" */
    ngx_str_t                    body;           /* may be empty */
    ngx_msec_t                   timeout;        /* 0: the configured one */
    ngx_astralform_http_done_pt  done;           /* called once, unless
                                                    cancelled */
    void                        *data;           /* the caller's */

    /* filled in before done() is called */
    ngx_astralform_http_error_e  error;
    ngx_uint_t                   status;         /* HTTP status, 0 if none */
    ngx_array_t                  resp_headers;   /* of ngx_table_elt_t, names
                                                    as sent */
    ngx_str_t                    resp_body;      /* in hr->pool */

    /* private */
    ngx_pool_t                  *pool;
    ngx_log_t                   *log;
    void                        *upstream;       /* nginx's connections:
                                                    ngx_astralform_up_req_t */
    void                        *easy;           /* CURL * */
    void                        *slist;          /* struct curl_slist * */
    ngx_chain_t                 *chunks;
    size_t                       received;
    size_t                       header_bytes;
    ngx_str_t                    host;           /* for logs: no userinfo,
                                                    path or query */
    char                        *errbuf;         /* CURL_ERROR_SIZE */
    ngx_queue_t                  queue;          /* in the worker's list */
    ngx_msec_t                   deadline;       /* of the first attempt */
    ngx_event_t                  expire;         /* at the deadline */
    unsigned                     running:1;
    unsigned                     native:1;       /* on nginx's connections */
    unsigned                     retried:1;      /* on a fresh connection */
    unsigned                     too_large:1;
    unsigned                     no_connection:1;
};


/*
 * Creates a request whose memory (and the response) lives in pool; a pool
 * cleanup cancels the transfer if the pool goes first (client went away).
 * The method defaults to GET.
 *
 * add_header() copies "Name: value"; an empty value sends an empty header.
 * Entries pushed to hr->headers directly follow curl's rules ("Name:" drops
 * a header curl would send itself).
 *
 * start() returns NGX_OK when the transfer is under way: done() is then
 * called exactly once, later, from the event loop (never from inside
 * start()), unless the request is cancelled first. On NGX_ERROR done() is
 * never called. A request may be started again once done() was called.
 * POST, PUT and PATCH always send hr->body (Content-Length: 0 if empty),
 * other methods only when it is not empty; the body is copied at start().
 *
 * A transfer that fails on a reused connection before any byte of the
 * answer came (the provider closed a kept-alive connection as it was used,
 * and libcurl did not retry it itself) is retried once on a fresh
 * connection, within the original timeout: GET, HEAD, PUT, DELETE, OPTIONS
 * and TRACE always, other methods only when nothing of the request had been
 * sent. done() sees only the last attempt. The timeout holds for the
 * request as a whole, also over libcurl's own retries (which restart its
 * timer).
 *
 * resp_body is decoded: curl offers gzip, br and zstd and undoes them, so
 * Content-Encoding and Content-Length in resp_headers describe the wire.
 *
 * cancel() may be called at any time, also from a done() callback; done()
 * is not called for a cancelled request.
 */
ngx_astralform_http_req_t *ngx_astralform_http_create(ngx_pool_t *pool,
    ngx_log_t *log);
ngx_int_t ngx_astralform_http_add_header(ngx_astralform_http_req_t *hr,
    ngx_str_t *name, ngx_str_t *value);
ngx_int_t ngx_astralform_http_start(ngx_astralform_http_req_t *hr);
void ngx_astralform_http_cancel(ngx_astralform_http_req_t *hr);
ngx_str_t *ngx_astralform_http_resp_header(ngx_astralform_http_req_t *hr,
    const char *name);

/*
 * conf must be merged; it is copied. Nothing is set up in helper processes
 * (cache manager, loader).
 * exit_process() cancels what is still running, without calling done().
 */
ngx_int_t ngx_astralform_http_init_process(ngx_cycle_t *cycle,
    ngx_astralform_http_conf_t *conf);
void ngx_astralform_http_exit_process(ngx_cycle_t *cycle);


#endif /* _NGX_ASTRALFORM_HTTP_H_INCLUDED_ */
