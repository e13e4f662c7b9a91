/* expo.c — /metrics in the Prometheus text exposition format (0.0.4).
 * Counters come from metrics.c; gauges are read from the live tables now. */
#include <fcntl.h>
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "epmd.h"
#include "gen_server.h"
#include "http/http.h"
#include "xalloc.h"
#include "metrics.h"
#include "node.h"
#include "proc.h"
#include "sup.h"

#ifndef DSUP_VERSION
#define DSUP_VERSION "unknown"
#endif

/* Scrapes come often (every 10 ms in the benchmark): text is appended
 * piecewise and integers converted by hand, printf only for fractions. */
static void family(dsup_buf *b, const char *name, const char *type, const char *help)
{
    out_str(b, "# HELP ");
    out_str(b, name);
    out_str(b, " ");
    out_str(b, help);
    out_str(b, "\n# TYPE ");
    out_str(b, name);
    out_str(b, " ");
    out_str(b, type);
    out_str(b, "\n");
}

static void out_u64(dsup_buf *b, uint64_t v)
{
    char t[24], *p = t + sizeof t;
    do
        *--p = (char)('0' + v % 10);
    while (v /= 10);
    dsup_buf_append(b, p, (size_t)(t + sizeof t - p));
}

/* Up to three labels; a NULL key ends them. */
typedef struct lbl {
    const char *k[3], *v[3];
} lbl;
#define L0 ((lbl){ { NULL }, { NULL } })
#define L1(a, x) ((lbl){ { a }, { x } })
#define L2(a, x, b, y) ((lbl){ { a, b }, { x, y } })
#define L3(a, x, b, y, c, z) ((lbl){ { a, b, c }, { x, y, z } })

static void labels(dsup_buf *b, lbl l, const char *extra_k, const char *extra_v)
{
    int n = 0;
    for (int i = 0; i < 3 && l.k[i]; i++, n++) {
        out_str(b, n ? "," : "{");
        out_str(b, l.k[i]);
        out_str(b, "=\"");
        out_label(b, l.v[i]);
        out_str(b, "\"");
    }
    if (extra_k) {
        out_str(b, n ? "," : "{");
        out_str(b, extra_k);
        out_str(b, "=\"");
        out_str(b, extra_v);
        out_str(b, "\"");
        n++;
    }
    if (n)
        out_str(b, "}");
}

static void sample(dsup_buf *b, const char *name, lbl l, double v)
{
    out_str(b, name);
    labels(b, l, NULL, NULL);
    /* Counts print as integers (exact below 2^53); the rest shortest-exact. */
    if (v >= 0 && v < 9007199254740992.0 && v == (double)(uint64_t)v) {
        out_str(b, " ");
        out_u64(b, (uint64_t)v);
        out_str(b, "\n");
    } else {
        out_printf(b, " %.9g\n", v);
    }
}

static void histogram(dsup_buf *b, const char *name, const char *help, const dsup_hist *h)
{
    family(b, name, "histogram", help);
    uint64_t cum = 0;
    for (int i = 0; i <= h->n; i++) {
        cum += h->bucket[i];
        out_str(b, name);
        out_str(b, "_bucket{le=\"");
        out_str(b, i < h->n ? h->le_txt[i] : "+Inf");
        out_str(b, "\"} ");
        out_u64(b, i < h->n ? cum : h->count);
        out_str(b, "\n");
    }
    out_printf(b, "%s_sum %.17g\n", name, h->sum);
    out_str(b, name);
    out_str(b, "_count ");
    out_u64(b, h->count);
    out_str(b, "\n");
}

static const char *conn_state_name(conn_state s)
{
    switch (s) {
    case CONN_RESOLVING: return "resolving";
    case CONN_EPMD: return "epmd";
    case CONN_CONNECTING: return "connecting";
    case CONN_HANDSHAKE: return "handshake";
    case CONN_UP: return "up";
    default: return "closing";
    }
}

/* The best connection to `peer` (up wins), or NULL. */
static const dsup_conn *conn_of(dsup_node *node, const char *peer)
{
    const dsup_conn *best = NULL;
    for (size_t i = 0; i < node->nconns; i++) {
        const dsup_conn *c = node->conns[i];
        if (c->peer == peer && (!best || c->state == CONN_UP))
            best = c;
    }
    return best;
}

#define MAX_INSTANCES 64

static void sup_families(dsup_node *node, dsup_buf *b)
{
    /* One sample per instance name: a stopped instance stays listed (0)
     * until one of that name runs again. */
    family(b, "dsup_instance_up", "gauge", "1 while the supervisor instance runs on this node");
    for (dsup_sup *s = dsup_sups_of(node); s; s = s->next) {
        dsup_sup *first = dsup_sup_find(node, s->name);
        if (!first)
            for (first = dsup_sups_of(node); first->name != s->name; first = first->next)
                ;
        if (first == s)
            sample(b, "dsup_instance_up", L1("supervisor", s->name), s->proc && !s->stopping);
    }
    family(b, "dsup_instance_children", "gauge", "children the instance knows of, cluster-wide");
    for (dsup_sup *s = dsup_sups_of(node); s; s = s->next)
        if (s->proc)
            sample(b, "dsup_instance_children", L1("supervisor", s->name), (double)sup_child_count(s));
    family(b, "dsup_instance_ring_nodes", "gauge", "nodes on the instance's hash ring");
    for (dsup_sup *s = dsup_sups_of(node); s; s = s->next)
        if (s->proc)
            sample(b, "dsup_instance_ring_nodes", L1("supervisor", s->name), (double)dsup_ring_node_count(s->ring));
    /* Children are counted once per instance, printed as two families. */
    static struct inst_counts {
        const char *name;
        http_type_count t[HTTP_MAX_TYPES];
        size_t n;
    } ic[MAX_INSTANCES];
    size_t ninst = 0;
    for (dsup_sup *s = dsup_sups_of(node); s && ninst < MAX_INSTANCES; s = s->next)
        if (s->proc) {
            ic[ninst].name = s->name;
            ic[ninst].n = http_count_children(s, ic[ninst].t, HTTP_MAX_TYPES);
            ninst++;
        }
    for (int pending = 0; pending < 2; pending++) {
        const char *name = pending ? "dsup_children_pending" : "dsup_children_running";
        family(b, name, "gauge",
               pending ? "children waiting: being terminated here, or their host is disconnected"
                       : "children running on this node, per instance and worker type");
        for (size_t k = 0; k < ninst; k++)
            for (size_t i = 0; i < ic[k].n; i++)
                sample(b, name, L2("supervisor", ic[k].name, "type", ic[k].t[i].type),
                       (double)(pending ? ic[k].t[i].pending : ic[k].t[i].running));
    }
    family(b, "dsup_child_restarts_total", "counter", "children restarted by the instance on this node");
    for (dsup_sup_stats *st = dsup_metrics_sups(node); st; st = st->next)
        sample(b, "dsup_child_restarts_total", L2("supervisor", st->instance, "type", st->type), (double)st->restarts);
    family(b, "dsup_child_crashes_total", "counter", "abnormal exits of local children, by reason class");
    for (dsup_sup_stats *st = dsup_metrics_sups(node); st; st = st->next)
        for (int k = 0; k < DSUP_CRASH_NCLASS; k++)
            sample(b, "dsup_child_crashes_total",
                   L3("supervisor", st->instance, "type", st->type, "reason", dsup_crash_class_names[k]),
                   (double)st->crashes[k]);
}

static void peer_families(dsup_node *node, dsup_buf *b)
{
    family(b, "dsup_peer_connected", "gauge", "1 when the distribution connection is up; state says where it is");
    for (dsup_peer_stats *p = dsup_metrics_peers(node); p; p = p->next) {
        if (!p->peer[0])
            continue;
        const dsup_conn *c = conn_of(node, p->peer);
        sample(b, "dsup_peer_connected",
               L3("peer", p->peer, "state", c ? conn_state_name(c->state) : "down", "visible",
                  c && c->state == CONN_UP ? ((c->peer_flags & DFLAG_PUBLISHED) ? "true" : "false") : "unknown"),
               c && c->state == CONN_UP);
    }
    static const struct { const char *name, *help; size_t off; } ctr[] = {
        { "dsup_peer_received_bytes_total", "bytes read from the peer", offsetof(dsup_peer_stats, bytes_in) },
        { "dsup_peer_sent_bytes_total", "bytes written to the peer", offsetof(dsup_peer_stats, bytes_out) },
        { "dsup_peer_received_messages_total", "control messages from the peer", offsetof(dsup_peer_stats, msgs_in) },
        { "dsup_peer_sent_messages_total", "control messages queued to the peer", offsetof(dsup_peer_stats, msgs_out) },
        { "dsup_peer_ticks_missed_total", "tick checks that found the peer silent for two tick periods",
          offsetof(dsup_peer_stats, ticks_missed) },
        { "dsup_peer_connects_total", "times the connection came up", offsetof(dsup_peer_stats, ups) },
        { "dsup_peer_disconnects_total", "times an up connection was lost", offsetof(dsup_peer_stats, downs) },
    };
    for (size_t k = 0; k < sizeof ctr / sizeof *ctr; k++) {
        family(b, ctr[k].name, "counter", ctr[k].help);
        for (dsup_peer_stats *p = dsup_metrics_peers(node); p; p = p->next)
            if (p->peer[0])
                sample(b, ctr[k].name, L1("peer", p->peer), (double)*(const uint64_t *)((const char *)p + ctr[k].off));
    }
    family(b, "dsup_peer_otp_release", "gauge", "the OTP release a BEAM peer reported (rex)");
    for (dsup_peer_stats *p = dsup_metrics_peers(node); p; p = p->next)
        if (p->peer[0] && p->otp_release)
            sample(b, "dsup_peer_otp_release", L1("peer", p->peer), p->otp_release);
    family(b, "dsup_peer_write_queue_bytes", "gauge", "bytes queued or in flight to the peer");
    for (size_t i = 0; i < node->nconns; i++) {
        const dsup_conn *c = node->conns[i];
        if (c->peer && c == conn_of(node, c->peer))
            sample(b, "dsup_peer_write_queue_bytes", L1("peer", c->peer), (double)(c->wq.len + c->wflight.len));
    }
    family(b, "dsup_handshake_failures_total", "counter", "failed handshakes by reason (peer \"\": not yet named)");
    for (dsup_peer_stats *p = dsup_metrics_peers(node); p; p = p->next)
        for (int k = 0; k < DSUP_HS_NCLASS; k++)
            if (p->hs_fail[k] || p->peer[0])
                sample(b, "dsup_handshake_failures_total", L2("peer", p->peer, "reason", dsup_hs_class_names[k]),
                       (double)p->hs_fail[k]);
}

typedef struct pg_count {
    size_t groups, members;
} pg_count;

static void pg_count_one(void *arg, dsup_term group, size_t members)
{
    pg_count *c = arg;
    c->groups++;
    c->members += members;
}

#define MAX_SCOPES 256
typedef struct scope_counts {
    const char *name[MAX_SCOPES];
    pg_count c[MAX_SCOPES];
    size_t n;
} scope_counts;

static void pg_scope(dsup_node *node, scope_counts *sc, const char *name)
{
    for (size_t i = 0; i < sc->n; i++)
        if (!strcmp(sc->name[i], name))
            return;
    dsup_pg *pg = dsup_pg_find(node, name);
    if (!pg || sc->n == MAX_SCOPES)
        return;
    sc->name[sc->n] = name;
    sc->c[sc->n] = (pg_count){ 0, 0 };
    dsup_pg_which_groups(pg, pg_count_one, &sc->c[sc->n]);
    sc->n++;
}

static void largest_queue(dsup_proc *p, void *arg)
{
    size_t *max = arg, n = dsup_gs_queue_len(p);
    if (n > *max)
        *max = n;
}

static void node_families(dsup_node *node, dsup_buf *b)
{
    family(b, "dsup_node_info", "gauge", "the node's name and version");
    char otp[16];
    snprintf(otp, sizeof otp, "%d", DSUP_OTP_RELEASE);
    sample(b, "dsup_node_info", L3("node", node->name, "version", DSUP_VERSION, "otp_release", otp), 1);
    family(b, "dsup_uptime_seconds", "gauge", "seconds since the node started");
    sample(b, "dsup_uptime_seconds", L0, (double)(dsup_wall_ms() - dsup_metrics_of(node)->started_ms) / 1000.0);
    family(b, "dsup_epmd_registered", "gauge", "1 while epmd holds the node's registration");
    sample(b, "dsup_epmd_registered", L0, dsup_epmd_registered(node->epmd));
    family(b, "dsup_processes", "gauge", "local processes (workers, instances, scopes)");
    sample(b, "dsup_processes", L0, (double)dsup_proc_count(node));
    family(b, "dsup_run_queue_length", "gauge", "local signals waiting to be handled");
    sample(b, "dsup_run_queue_length", L0, (double)dsup_proc_queue_len(node));
    size_t maxq = 0;
    dsup_proc_foreach(node, largest_queue, &maxq);
    family(b, "dsup_largest_message_queue", "gauge", "the longest message queue of a local process");
    sample(b, "dsup_largest_message_queue", L0, (double)maxq);

    /* statm kept open: one pread per scrape. */
    static int statm = -2;
    if (statm == -2)
        statm = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    long rss_pages = 0, size_pages = 0;
    char sbuf[128];
    ssize_t sn = statm >= 0 ? pread(statm, sbuf, sizeof sbuf - 1, 0) : -1;
    if (sn > 0) {
        sbuf[sn] = 0;
        if (sscanf(sbuf, "%ld %ld", &size_pages, &rss_pages) != 2)
            rss_pages = 0;
    }
    family(b, "dsup_resident_memory_bytes", "gauge", "resident set size of the node");
    sample(b, "dsup_resident_memory_bytes", L0, (double)rss_pages * (double)sysconf(_SC_PAGESIZE));
    struct mallinfo2 mi = mallinfo2();
    family(b, "dsup_malloc_in_use_bytes", "gauge", "bytes the node has allocated and not freed (malloc)");
    sample(b, "dsup_malloc_in_use_bytes", L0, (double)(mi.uordblks + mi.hblkhd));
    family(b, "dsup_malloc_heap_bytes", "gauge", "bytes malloc holds from the system (arena and mmap)");
    sample(b, "dsup_malloc_heap_bytes", L0, (double)(mi.arena + mi.hblkhd));

    histogram(b, "dsup_event_loop_lag_seconds", "how late a 100 ms loop timer fires", &dsup_metrics_of(node)->loop_lag);
    histogram(b, "dsup_node_call_duration_seconds", "time the dsup_node process takes to handle a call",
              &dsup_metrics_of(node)->node_call);
    histogram(b, "dsup_worker_call_duration_seconds", "time C workers take in handle_call",
              &dsup_metrics_of(node)->worker_call);

    scope_counts *scp = dsup_xcalloc(1, sizeof *scp); /* 6 KB: off the stack; one a scrape */
    for (int i = 0; i < node->nscopes; i++)
        pg_scope(node, scp, node->scopes[i]);
    for (dsup_sup *s = dsup_sups_of(node); s; s = s->next)
        if (s->proc)
            pg_scope(node, scp, s->scope_name);
    histogram(b, "dsup_http_render_seconds", "time the node spends rendering one HTTP response",
              &dsup_metrics_of(node)->http_render);
    family(b, "dsup_pg_groups", "gauge", "pg groups per scope");
    for (size_t i = 0; i < scp->n; i++)
        sample(b, "dsup_pg_groups", L1("scope", scp->name[i]), (double)scp->c[i].groups);
    family(b, "dsup_pg_members", "gauge", "pg group members (pids, with repeats) per scope");
    for (size_t i = 0; i < scp->n; i++)
        sample(b, "dsup_pg_members", L1("scope", scp->name[i]), (double)scp->c[i].members);
    family(b, "dsup_http_requests_total", "counter", "requests served by this endpoint");
    sample(b, "dsup_http_requests_total", L0, (double)dsup_metrics_of(node)->http_requests);
    free(scp);
}

void dsup_http_metrics(dsup_node *node, dsup_buf *b)
{
    node_families(node, b);
    sup_families(node, b);
    peer_families(node, b);
}
