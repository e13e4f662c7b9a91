/* status.c — /status.json: what the status page shows, for scripts too. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "epmd.h"
#include "http/http.h"
#include "metrics.h"
#include "node.h"
#include "sup.h"
#include "term_text.h"
#include "xalloc.h"

#ifndef DSUP_VERSION
#define DSUP_VERSION "unknown"
#endif

static void kv_str(dsup_buf *b, const char *k, const char *v, int comma)
{
    out_json_str(b, k);
    out_str(b, ":");
    out_json_str(b, v);
    if (comma)
        out_str(b, ",");
}

static void kv_num(dsup_buf *b, const char *k, double v, int comma)
{
    out_json_str(b, k);
    out_printf(b, ":%.15g%s", v, comma ? "," : "");
}

static void term_text(char *out, size_t cap, dsup_term t)
{
    /* Atoms (most child names) without ei's printer and its allocation. */
    int i = 0;
    if (cap >= MAXATOMLEN_UTF8 && ei_decode_atom(t.buf, &i, out) == 0 && i == (int)t.len)
        return;
    dsup_term_text(t, out, cap);
}

static void peers(dsup_node *node, dsup_buf *b)
{
    out_str(b, "\"peers\":[");
    int first = 1;
    for (dsup_peer_stats *p = dsup_metrics_peers(node); p; p = p->next) {
        if (!p->peer[0])
            continue;
        const dsup_conn *c = NULL;
        for (size_t i = 0; i < node->nconns; i++)
            if (node->conns[i]->peer == p->peer && (!c || node->conns[i]->state == CONN_UP))
                c = node->conns[i];
        int up = c && c->state == CONN_UP;
        out_str(b, first ? "{" : ",{");
        first = 0;
        kv_str(b, "name", p->peer, 1);
        kv_str(b, "state", up ? "up" : c ? "connecting" : "down", 1);
        kv_str(b, "kind", !up ? "" : (c->peer_flags & DFLAG_PUBLISHED) ? "visible" : "hidden", 1);
        kv_str(b, "direction", c ? (c->outbound ? "outbound" : "inbound") : "", 1);
        kv_num(b, "otp_release", p->otp_release, 1);
        kv_num(b, "bytes_in", (double)p->bytes_in, 1);
        kv_num(b, "bytes_out", (double)p->bytes_out, 1);
        kv_num(b, "msgs_in", (double)p->msgs_in, 1);
        kv_num(b, "msgs_out", (double)p->msgs_out, 1);
        kv_num(b, "write_queue", c ? (double)(c->wq.len + c->wflight.len) : 0, 1);
        kv_num(b, "ticks_missed", (double)p->ticks_missed, 1);
        kv_num(b, "connects", (double)p->ups, 0);
        out_str(b, "}");
    }
    out_str(b, "],");
}

typedef struct host_count {
    const char *host[256];
    size_t n[256];
    size_t nhosts;
} host_count;

static void count_host(sup_child *c, void *arg)
{
    host_count *h = arg;
    size_t i = 0;
    while (i < h->nhosts && h->host[i] != c->pid.node)
        i++;
    if (i == h->nhosts) {
        if (h->nhosts == 256)
            return;
        h->host[h->nhosts] = c->pid.node;
        h->n[h->nhosts++] = 0;
    }
    h->n[i]++;
}

static void instances(dsup_node *node, dsup_buf *b)
{
    out_str(b, "\"instances\":[");
    int first = 1;
    for (dsup_sup *s = dsup_sups_of(node); s; s = s->next) {
        if (!s->proc && dsup_sup_find(node, s->name))
            continue; /* an older, stopped instance of a name that runs again */
        out_str(b, first ? "{" : ",{");
        first = 0;
        kv_str(b, "name", s->name, 1);
        out_printf(b, "\"up\":%s,", s->proc && !s->stopping ? "true" : "false");
        kv_str(b, "scope", s->scope_name, 1);
        kv_num(b, "children", (double)sup_child_count(s), 1);
        out_str(b, "\"ring\":[");
        for (size_t i = 0; s->proc && i < dsup_ring_node_count(s->ring); i++) {
            if (i)
                out_str(b, ",");
            out_json_str(b, dsup_ring_node_at(s->ring, i));
        }
        out_str(b, "],\"per_host\":{");
        host_count *hp = dsup_xcalloc(1, sizeof *hp); /* off the stack; one a render */
        if (s->proc)
            sup_foreach_child(s, count_host, hp);
        for (size_t i = 0; i < hp->nhosts; i++) {
            if (i)
                out_str(b, ",");
            kv_num(b, hp->host[i], (double)hp->n[i], 0);
        }
        free(hp);
        out_str(b, "}}");
    }
    out_str(b, "],");
}

/* Case-insensitive substring (ASCII letters), as the page's search box. */
static int contains(const char *hay, const char *needle)
{
    for (; *hay; hay++) {
        size_t i = 0;
        while (needle[i] && hay[i] && tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (!needle[i])
            return 1;
    }
    return !needle[0];
}

typedef struct child_ctx {
    dsup_node *node;
    dsup_buf *b;
    const dsup_sup *s;
    const char *q;
    size_t limit, matched, total;
} child_ctx;

static void child_one(sup_child *c, void *arg)
{
    child_ctx *x = arg;
    x->total++;
    if (!x->q && x->matched >= x->limit) {
        x->matched++;
        return; /* counted, not printed */
    }
    char name[MAXATOMLEN_UTF8 + 8], pid[300];
    term_text(name, sizeof name, sup_child_name(c));
    snprintf(pid, sizeof pid, "<%s.%u.%u>", c->pid.node, c->pid.num, c->pid.serial);
    const char *type = http_child_type(x->node, c);
    if (x->q && !contains(name, x->q) && !contains(pid, x->q) && !contains(type, x->q))
        return;
    if (x->matched++ >= x->limit)
        return;
    out_str(x->b, x->matched > 1 ? ",{" : "{");
    kv_str(x->b, "instance", x->s->name, 1);
    kv_str(x->b, "name", name, 1);
    kv_str(x->b, "pid", pid, 1);
    kv_str(x->b, "host", c->pid.node, 1);
    kv_str(x->b, "type", type, 1);
    out_printf(x->b, "\"local\":%s,\"pending\":%s}", c->local ? "true" : "false",
               http_child_pending(x->node, c) ? "true" : "false");
}

static void children(dsup_node *node, dsup_buf *b, const char *q, size_t limit)
{
    out_str(b, "\"children\":[");
    child_ctx x = { node, b, NULL, q && q[0] ? q : NULL, limit, 0, 0 };
    for (dsup_sup *s = dsup_sups_of(node); s; s = s->next) {
        if (!s->proc)
            continue;
        x.s = s;
        sup_foreach_child(s, child_one, &x);
    }
    out_str(b, "],");
    kv_num(b, "children_total", (double)x.total, 1);
    kv_num(b, "children_matched", (double)x.matched, 1);
    kv_num(b, "children_limit", (double)limit, 1);
    kv_str(b, "query", x.q ? x.q : "", 1);
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

int dsup_http_query_param(const char *qs, size_t len, const char *key, char *out, size_t cap)
{
    size_t klen = strlen(key);
    for (size_t i = 0; i < len;) {
        size_t end = i;
        while (end < len && qs[end] != '&')
            end++;
        if (end - i > klen && !memcmp(qs + i, key, klen) && qs[i + klen] == '=') {
            size_t o = 0;
            for (size_t j = i + klen + 1; j < end && o + 1 < cap; j++) {
                if (qs[j] == '%' && j + 2 < end && hexval(qs[j + 1]) >= 0 && hexval(qs[j + 2]) >= 0) {
                    out[o++] = (char)(hexval(qs[j + 1]) * 16 + hexval(qs[j + 2]));
                    j += 2;
                } else {
                    out[o++] = qs[j] == '+' ? ' ' : qs[j];
                }
            }
            out[o] = 0;
            return 0;
        }
        i = end + 1;
    }
    return -1;
}

static void recent(dsup_node *node, dsup_buf *b)
{
    out_str(b, "\"crashes\":[");
    const dsup_crash_report *r;
    for (size_t i = 0; (r = dsup_metrics_crash(node, i)); i++) {
        out_str(b, i ? ",{" : "{");
        kv_num(b, "at_ms", (double)r->at_ms, 1);
        kv_str(b, "instance", r->instance, 1);
        kv_str(b, "type", r->type, 1);
        kv_str(b, "name", r->name, 1);
        kv_str(b, "pid", r->pid, 1);
        kv_str(b, "reason", r->reason, 0);
        out_str(b, "}");
    }
    out_str(b, "],\"connection_events\":[");
    const dsup_conn_event *e;
    for (size_t i = 0; (e = dsup_metrics_conn_ev(node, i)); i++) {
        out_str(b, i ? ",{" : "{");
        kv_num(b, "at_ms", (double)e->at_ms, 1);
        kv_str(b, "peer", e->peer, 1);
        kv_str(b, "event", e->event, 1);
        kv_str(b, "detail", e->detail, 0);
        out_str(b, "}");
    }
    out_str(b, "]");
}

void dsup_http_status_json(dsup_node *node, dsup_buf *b, const char *q, size_t limit)
{
    char why[400];
    const char *bad = http_unhealthy(node, why, sizeof why);
    out_str(b, "{");
    kv_str(b, "node", node->name, 1);
    kv_str(b, "version", DSUP_VERSION, 1);
    kv_num(b, "otp_release", DSUP_OTP_RELEASE, 1);
    kv_str(b, "kind", node->visible ? "visible" : "hidden", 1);
    kv_num(b, "uptime_s", (double)(dsup_wall_ms() - dsup_metrics_of(node)->started_ms) / 1000.0, 1);
    kv_num(b, "now_ms", (double)dsup_wall_ms(), 1);
    kv_num(b, "processes", (double)dsup_proc_count(node), 1);
    out_printf(b, "\"healthy\":%s,", bad ? "false" : "true");
    kv_str(b, "health", bad ? bad : "ok", 1);
    peers(node, b);
    instances(node, b);
    children(node, b, q, limit);
    recent(node, b);
    out_str(b, "}\n");
}
