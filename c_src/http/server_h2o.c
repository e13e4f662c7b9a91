/* server_h2o.c — the HTTP endpoints served by h2o (libh2o, its libuv
 * binding) on the node's own loop: a request renders from the live tables
 * into one reused buffer, which h2o copies into the response, and returns;
 * nothing blocks and nothing runs on another thread. */
#define H2O_USE_LIBUV 1
#include <h2o.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http.h"
#include "xalloc.h"
#include "log.h"
#include "metrics.h"
#include "node.h"

/* Accepted connections, so that shutdown can let the loop end under them. */
typedef struct http_conn {
    uv_tcp_t tcp;
    struct dsup_http_server *srv;
    struct http_conn *prev, *next;
} http_conn;

/* Handles h2o_context_init made (its timers and the async of its message
 * queue): at shutdown they must not keep the loop alive. Found by looking
 * at the loop's handles before and after. */
#define MAX_H2O_HANDLES 32
typedef struct handle_set {
    uv_handle_t *h[MAX_H2O_HANDLES];
    size_t n;
    int overflow;
} handle_set;

/* One node's server (node->http). h2o's context and configuration live as
 * long as the process: their handles stay on the loop (unreferenced) after
 * the node stops, so the struct is kept until the process ends (see
 * dsup_http_free). */
struct dsup_http_server {
    dsup_node *node;
    char bind_host[64];
    int bind_port;
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    uv_tcp_t listener;
    int serving, started;
    dsup_buf body;
    http_conn *conns;
    handle_set before, h2o_handles;
};

/* h2o calls its handler with the handler struct: ours carries the node. */
typedef struct node_handler {
    h2o_handler_t super;
    struct dsup_http_server *srv;
} node_handler;

static struct dsup_http_server *server_of(dsup_node *node)
{
    if (!node->http) {
        node->http = dsup_xcalloc(1, sizeof *node->http);
        node->http->node = node;
        node->http->bind_port = -1;
    }
    return node->http;
}

static void collect(uv_handle_t *h, void *arg)
{
    handle_set *s = arg;
    if (s->n < MAX_H2O_HANDLES)
        s->h[s->n++] = h;
    else
        s->overflow = 1;
}

static int in_set(const handle_set *s, const uv_handle_t *h)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->h[i] == h)
            return 1;
    return 0;
}

static void collect_new(uv_handle_t *h, void *arg)
{
    struct dsup_http_server *S = arg;
    if (!in_set(&S->before, h) && S->h2o_handles.n < MAX_H2O_HANDLES)
        S->h2o_handles.h[S->h2o_handles.n++] = h;
}

int dsup_http_configure(dsup_node *node, const char *arg, char *err, size_t errcap)
{
    struct dsup_http_server *S = server_of(node);
    const char *colon = strrchr(arg, ':');
    char *end;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    size_t hlen = colon ? (size_t)(colon - arg) : 0;
    if (!colon || !colon[1] || *end || port < 0 || port > 65535 || hlen == 0 || hlen >= sizeof S->bind_host) {
        snprintf(err, errcap, "expected ADDR:PORT (e.g. 127.0.0.1:9100 or [::1]:9100), got '%s'", arg);
        return -1;
    }
    memcpy(S->bind_host, arg, hlen);
    S->bind_host[hlen] = 0;
    /* [::1]:9100 */
    if (S->bind_host[0] == '[' && S->bind_host[hlen - 1] == ']') {
        memmove(S->bind_host, S->bind_host + 1, hlen - 2);
        S->bind_host[hlen - 2] = 0;
    }
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    if (uv_ip4_addr(S->bind_host, 0, &a4) != 0 && uv_ip6_addr(S->bind_host, 0, &a6) != 0) {
        snprintf(err, errcap, "'%s' is not an IPv4 or IPv6 address (no host names: nothing may block)", S->bind_host);
        return -1;
    }
    S->bind_port = (int)port;
    return 0;
}

static void reply(h2o_req_t *req, int status, const char *reason, const char *type, const char *data, size_t len)
{
    req->res.status = status;
    req->res.reason = reason;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, type, strlen(type));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_send_inline(req, data, len);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    struct dsup_http_server *S = ((node_handler *)self)->srv;
    dsup_node *node = S->node;
    dsup_metrics_of(node)->http_requests++;
    int get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"));
    int head = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    if (!get && !head) {
        reply(req, 405, "Method Not Allowed", "text/plain; charset=utf-8", H2O_STRLIT("GET only\n"));
        return 0;
    }
    h2o_iovec_t p = req->path_normalized;
    S->body.len = 0;
    uint64_t t0 = uv_hrtime();
    if (h2o_memis(p.base, p.len, H2O_STRLIT("/metrics"))) {
        dsup_http_metrics(node, &S->body);
        reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", S->body.data, S->body.len);
    } else if (h2o_memis(p.base, p.len, H2O_STRLIT("/healthz"))) {
        int st = dsup_http_health(node, &S->body);
        reply(req, st, st == 200 ? "OK" : "Service Unavailable", "text/plain; charset=utf-8", S->body.data, S->body.len);
    } else if (h2o_memis(p.base, p.len, H2O_STRLIT("/status.json"))) {
        char q[256] = "", lim[16] = "";
        const char *qs = req->query_at != SIZE_MAX ? req->path.base + req->query_at + 1 : "";
        size_t qlen = req->query_at != SIZE_MAX ? req->path.len - req->query_at - 1 : 0;
        dsup_http_query_param(qs, qlen, "q", q, sizeof q);
        size_t limit = DSUP_HTTP_CHILDREN_LIMIT;
        if (dsup_http_query_param(qs, qlen, "limit", lim, sizeof lim) == 0 && atol(lim) > 0)
            limit = (size_t)atol(lim);
        dsup_http_status_json(node, &S->body, q, limit);
        reply(req, 200, "OK", "application/json", S->body.data, S->body.len);
    } else if (h2o_memis(p.base, p.len, H2O_STRLIT("/status")) || h2o_memis(p.base, p.len, H2O_STRLIT("/"))) {
        reply(req, 200, "OK", "text/html; charset=utf-8", dsup_status_html, dsup_status_html_len);
    } else {
        reply(req, 404, "Not Found", "text/plain; charset=utf-8",
              H2O_STRLIT("not found: try /metrics, /status, /status.json, /healthz\n"));
    }
    dsup_hist_observe(&dsup_metrics_of(node)->http_render, (double)(uv_hrtime() - t0) / 1e9);
    /* A big page (thousands of children) leaves a big buffer: give it back. */
    if (S->body.cap > (1u << 20))
        dsup_buf_free(&S->body);
    return 0;
}

static void on_conn_closed(uv_handle_t *h)
{
    http_conn *c = (http_conn *)h;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
}

static void on_accept(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    struct dsup_http_server *S = server->data;
    http_conn *c = dsup_xcalloc(1, sizeof *c);
    uv_tcp_init(server->loop, &c->tcp);
    c->srv = S;
    c->next = S->conns;
    if (S->conns)
        S->conns->prev = c;
    S->conns = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_conn_closed);
    h2o_accept(&S->accept_ctx, sock);
}

int dsup_http_start(dsup_node *node)
{
    struct dsup_http_server *S = node->http;
    if (!S || S->bind_port < 0)
        return 0;
    uv_loop_t *loop = node->loop;
    S->started = 1;
    dsup_metrics_start(node);
    h2o_config_init(&S->config);
    h2o_hostconf_t *host = h2o_config_register_host(&S->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    node_handler *h = (node_handler *)h2o_create_handler(path, sizeof *h);
    h->super.on_req = on_req;
    h->srv = S;
    uv_walk(loop, collect, &S->before);
    h2o_context_init(&S->ctx, loop, &S->config);
    if (!S->before.overflow)
        uv_walk(loop, collect_new, S);
    S->accept_ctx.ctx = &S->ctx;
    S->accept_ctx.hosts = S->config.hosts;

    struct sockaddr_storage a;
    if (uv_ip4_addr(S->bind_host, S->bind_port, (struct sockaddr_in *)&a) != 0)
        uv_ip6_addr(S->bind_host, S->bind_port, (struct sockaddr_in6 *)&a);
    uv_tcp_init(loop, &S->listener);
    S->listener.data = S;
    int rc = uv_tcp_bind(&S->listener, (const struct sockaddr *)&a, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&S->listener, 128, on_accept);
    if (rc < 0) {
        LOG_ERROR("--http %s:%d: cannot listen: %s", S->bind_host, S->bind_port, uv_strerror(rc));
        uv_close((uv_handle_t *)&S->listener, NULL);
        return -1;
    }
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&S->listener, (struct sockaddr *)&bound, &len);
    int port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    S->serving = 1;
    LOG_INFO("http: S->serving /metrics /status /status.json /healthz on %s:%d (h2o %s)", S->bind_host, port,
             H2O_VERSION);
    /* Tests and tools learn a port 0 choice from this line. */
    printf("dsup-node http %s:%d\n", S->bind_host, port);
    fflush(stdout);
    return 0;
}


void dsup_http_stop(dsup_node *node)
{
    dsup_metrics_stop(node);
    struct dsup_http_server *S = node->http;
    if (!S || !S->serving)
        return;
    S->serving = 0;
    uv_close((uv_handle_t *)&S->listener, NULL);
    h2o_context_request_shutdown(&S->ctx);
    /* Open keep-alive connections must not hold the node's exit back. */
    for (http_conn *c = S->conns; c; c = c->next)
        uv_unref((uv_handle_t *)&c->tcp);
    for (size_t i = 0; i < S->h2o_handles.n; i++)
        uv_unref(S->h2o_handles.h[i]);
}

/* Node close. A node that served keeps its struct: h2o's context and its
 * (unreferenced) handles stay on the loop until the process ends; it is
 * left reachable from the loop's handles, not freed under them. */
void dsup_http_free(dsup_node *node)
{
    struct dsup_http_server *S = node->http;
    node->http = NULL;
    if (!S)
        return;
    dsup_buf_free(&S->body);
    if (!S->started)
        free(S);
}
