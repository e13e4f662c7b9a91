/* http.h — the node's HTTP endpoints (--http ADDR:PORT): /metrics
 * (Prometheus text format), /status (an HTML page), /status.json, /healthz.
 *
 * The renderers (expo.c, status.c) only read the node's tables and need no
 * HTTP library; server_h2o.c serves them with h2o on the node's own libuv
 * loop. Built without h2o, server_none.c refuses --http with a clear error. */
#ifndef DSUP_HTTP_H
#define DSUP_HTTP_H

#include <stddef.h>
#include <uv.h>

#include "buf.h"
#include "dsup.h"

/* --http ADDR:PORT from the command line: checked now, served once the node
 * runs. -1 with a one-line reason in `err` when malformed or not built in. */
int dsup_http_configure(dsup_node *node, const char *addr_port, char *err, size_t errcap);
/* Start serving if configured (0 when not); -1 when it cannot listen. */
int dsup_http_start(dsup_node *node);
/* Stop listening and close the connections (node shutdown). */
void dsup_http_stop(dsup_node *node);
/* Node close: the server's memory (node->http). */
void dsup_http_free(dsup_node *node);

/* Renderers: append the body to `out`. */
void dsup_http_metrics(dsup_node *node, dsup_buf *out);
/* /status.json: `q` (may be NULL) keeps the children whose name, pid or
 * type contains it (case-insensitive); at most `limit` are listed, with the
 * counts of all and of the matching ones, so that a node with very many
 * children is never rendered whole on the loop. */
#define DSUP_HTTP_CHILDREN_LIMIT 2000
void dsup_http_status_json(dsup_node *node, dsup_buf *out, const char *q, size_t limit);
/* The value of `key` in a query string ("a=1&q=x%20y"), %-decoded. */
int dsup_http_query_param(const char *query, size_t len, const char *key, char *out, size_t cap);
/* 200 (body "ok") or 503 (body: the reason). */
int dsup_http_health(dsup_node *node, dsup_buf *out);

extern const char dsup_status_html[];
extern const size_t dsup_status_html_len;

/* children.c: what the renderers share about supervisor children */
struct dsup_sup;
struct sup_child;
typedef struct http_type_count {
    const char *type;
    size_t running, pending;
} http_type_count;
#define HTTP_MAX_TYPES 64
/* Counts of this node's children of `s` per worker type; returns how many types. */
size_t http_count_children(struct dsup_sup *s, http_type_count *out, size_t max);
/* The type of a child (its live process's type when local). */
const char *http_child_type(dsup_node *node, const struct sup_child *c);
/* Waiting: being terminated here, or its host is not connected (failover due). */
int http_child_pending(dsup_node *node, const struct sup_child *c);
/* 1 when a distribution connection to `node` is up. */
int http_peer_up(dsup_node *node, const char *peer);
/* The node is healthy: NULL, else why not. */
const char *http_unhealthy(dsup_node *node, char *buf, size_t cap);

/* out.c: small writers */
void out_printf(dsup_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void out_str(dsup_buf *b, const char *s);
void out_json_str(dsup_buf *b, const char *s);    /* a quoted JSON string */
void out_label(dsup_buf *b, const char *s);       /* a Prometheus label value, unquoted */

#endif
