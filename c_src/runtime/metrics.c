/* metrics.c — counters, histograms and recent-event rings (see metrics.h). */
#include "metrics.h"
#include "xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <uv.h>

#include "intern.h"
#include "node.h"
#include "term_text.h"

#define NELEM(a) ((int)(sizeof a / sizeof *a))
static const double lag_le[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5 };
static const char *const lag_txt[] = { "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
                                       "0.05",   "0.1",   "0.25",   "0.5",   "1",    "2.5" };
static const double call_le[] = { 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
                                  0.0025,  0.005,    0.01,    0.025,  0.05,    0.1 };
static const char *const call_txt[] = { "1e-05", "2.5e-05", "5e-05", "0.0001", "0.00025", "0.0005", "0.001",
                                        "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1" };
_Static_assert(NELEM(lag_le) == NELEM(lag_txt) && NELEM(call_le) == NELEM(call_txt), "bucket texts");

/* One node's (node->metrics). */
struct dsup_metrics_st {
    dsup_node_metrics m;
    dsup_peer_stats unnamed;
    dsup_peer_stats *peers;
    size_t npeers;
    dsup_peer_stats *last_peer;   /* most lookups repeat the last peer */
    dsup_crash_report crashes[DSUP_RECENT];
    size_t ncrashes;
    dsup_conn_event conn_events[DSUP_RECENT];
    size_t nconn_events;
    dsup_sup_stats *sups;
    uv_timer_t lag_timer;
    uint64_t lag_due_ns;
    int lag_on;
};

void dsup_metrics_init(dsup_node *node)
{
    struct dsup_metrics_st *M = node->metrics = dsup_xcalloc(1, sizeof *M);
    M->m = (dsup_node_metrics){
        .loop_lag = { .le = lag_le, .le_txt = lag_txt, .n = NELEM(lag_le) },
        .node_call = { .le = call_le, .le_txt = call_txt, .n = NELEM(call_le) },
        .worker_call = { .le = call_le, .le_txt = call_txt, .n = NELEM(call_le) },
        .http_render = { .le = call_le, .le_txt = call_txt, .n = NELEM(call_le) },
    };
    M->unnamed.peer = "";
    M->peers = M->last_peer = &M->unnamed;
    M->m.started_ms = dsup_wall_ms();
}

/* After dsup_metrics_stop's handle closed. */
void dsup_metrics_free(dsup_node *node)
{
    struct dsup_metrics_st *M = node->metrics;
    if (!M)
        return;
    for (dsup_peer_stats *p = M->peers, *next; p && p != &M->unnamed; p = next) {
        next = p->next;
        dsup_intern_release(p->peer);
        free(p);
    }
    for (dsup_sup_stats *st = M->sups, *next; st; st = next) {
        next = st->next;
        free(st);
    }
    free(M);
    node->metrics = NULL;
}

dsup_node_metrics *dsup_metrics_of(dsup_node *node) { return &node->metrics->m; }

uint64_t dsup_wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

void dsup_hist_observe(dsup_hist *h, double s)
{
    int i = 0;
    while (i < h->n && s > h->le[i])
        i++;
    h->bucket[i]++;
    h->count++;
    h->sum += s;
}

/* ---- peers ---------------------------------------------------------------- */

const char *const dsup_hs_class_names[DSUP_HS_NCLASS] = {
    "cookie", "timeout", "version", "flags", "name", "simultaneous", "status", "closed", "protocol",
};

dsup_peer_stats *dsup_metrics_peer(dsup_node *node, const char *peer)
{
    struct dsup_metrics_st *M = node->metrics;
    if (!peer)
        return &M->unnamed;
    if (M->last_peer->peer == peer)
        return M->last_peer;
    for (dsup_peer_stats *p = M->peers; p; p = p->next)
        if (p->peer == peer)
            return M->last_peer = p;
    dsup_peer_stats *p = M->npeers < DSUP_METRICS_MAX_PEERS ? dsup_xcalloc(1, sizeof *p) : NULL;
    if (!p)
        return &M->unnamed;
    M->npeers++;
    dsup_intern_hold(peer); /* the record keeps the name as long as it lives */
    p->peer = peer;
    p->next = M->peers;
    M->peers = p;
    return M->last_peer = p;
}

dsup_peer_stats *dsup_metrics_conn(struct dsup_conn *c)
{
    if (c->stats)
        return c->stats;
    dsup_peer_stats *p = dsup_metrics_peer(c->node, c->peer);
    if (c->peer)
        c->stats = p; /* before the peer is known: the unnamed record, not kept */
    return p;
}

dsup_peer_stats *dsup_metrics_peers(dsup_node *node) { return node->metrics->peers; }

/* Reasons as handshake.c and node.c word them. */
static int hs_class(const char *why)
{
    static const struct { const char *word; int cls; } map[] = {
        { "cookie", DSUP_HS_COOKIE },  { "timed out", DSUP_HS_TIMEOUT },   { "version", DSUP_HS_VERSION },
        { "flag", DSUP_HS_FLAGS },     { "closed", DSUP_HS_CLOSED },       { "simultaneous", DSUP_HS_SIMULTANEOUS },
        { "name", DSUP_HS_NAME },      { "status", DSUP_HS_STATUS },
    };
    for (size_t i = 0; why && i < sizeof map / sizeof *map; i++)
        if (strstr(why, map[i].word))
            return map[i].cls;
    return DSUP_HS_PROTOCOL;
}

/* ---- rings ------------------------------------------------------------------ */

const dsup_crash_report *dsup_metrics_crash(dsup_node *node, size_t i)
{
    struct dsup_metrics_st *M = node->metrics;
    return i < M->ncrashes && i < DSUP_RECENT ? &M->crashes[(M->ncrashes - 1 - i) % DSUP_RECENT] : NULL;
}

const dsup_conn_event *dsup_metrics_conn_ev(dsup_node *node, size_t i)
{
    struct dsup_metrics_st *M = node->metrics;
    return i < M->nconn_events && i < DSUP_RECENT ? &M->conn_events[(M->nconn_events - 1 - i) % DSUP_RECENT] : NULL;
}

void dsup_metrics_conn_event(dsup_node *node, const char *peer, const char *event, const char *detail)
{
    struct dsup_metrics_st *M = node->metrics;
    dsup_peer_stats *ps = dsup_metrics_peer(node, peer);
    if (!strcmp(event, "up"))
        ps->ups++;
    else if (!strcmp(event, "down"))
        ps->downs++;
    dsup_conn_event *e = &M->conn_events[M->nconn_events++ % DSUP_RECENT];
    e->at_ms = dsup_wall_ms();
    snprintf(e->peer, sizeof e->peer, "%s", peer ? peer : "");
    e->event = event;
    snprintf(e->detail, sizeof e->detail, "%s", detail ? detail : "");
}

void dsup_metrics_hs_failure(dsup_node *node, const char *peer, const char *why)
{
    dsup_metrics_peer(node, peer)->hs_fail[hs_class(why)]++;
    dsup_metrics_conn_event(node, peer, "handshake failed", why);
}

/* ---- supervisors -------------------------------------------------------------- */

const char *const dsup_crash_class_names[DSUP_CRASH_NCLASS] = { "killed", "noconnection", "timeout", "error" };

dsup_sup_stats *dsup_metrics_sup(dsup_node *node, const char *instance, const char *type)
{
    struct dsup_metrics_st *M = node->metrics;
    for (dsup_sup_stats *s = M->sups; s; s = s->next)
        if (!strcmp(s->instance, instance) && !strcmp(s->type, type))
            return s;
    dsup_sup_stats *s = dsup_xcalloc(1, sizeof *s);
    snprintf(s->instance, sizeof s->instance, "%s", instance);
    snprintf(s->type, sizeof s->type, "%s", type);
    s->next = M->sups;
    M->sups = s;
    return s;
}

dsup_sup_stats *dsup_metrics_sups(dsup_node *node) { return node->metrics->sups; }

static void print_term(char *out, size_t cap, dsup_term t)
{
    if (t.len)
        dsup_term_text(t, out, cap);
    else if (cap)
        out[0] = 0;
}

void dsup_metrics_child_exit(dsup_node *node, const char *instance, const char *type, dsup_term name, const dsup_pid *pid,
                             dsup_term reason, int expected)
{
    dsup_term el[2];
    int ar;
    if (expected || dsup_term_is_atom(reason, "normal") || dsup_term_is_atom(reason, "shutdown") ||
        (dsup_term_tagged(reason, "shutdown", &ar, el, 2) && ar == 2))
        return;
    int cls = dsup_term_is_atom(reason, "killed")         ? DSUP_CRASH_KILLED
              : dsup_term_is_atom(reason, "noconnection") ? DSUP_CRASH_NOCONNECTION
              : dsup_term_is_atom(reason, "timeout")      ? DSUP_CRASH_TIMEOUT
                                                          : DSUP_CRASH_ERROR;
    struct dsup_metrics_st *M = node->metrics;
    dsup_metrics_sup(node, instance, type)->crashes[cls]++;
    /* A crash is rare next to messages: a report with printed terms is affordable. */
    dsup_crash_report *r = &M->crashes[M->ncrashes++ % DSUP_RECENT];
    r->at_ms = dsup_wall_ms();
    snprintf(r->instance, sizeof r->instance, "%s", instance);
    snprintf(r->type, sizeof r->type, "%s", type);
    print_term(r->name, sizeof r->name, name);
    snprintf(r->pid, sizeof r->pid, "<%s.%u.%u>", pid->node, pid->num, pid->serial);
    print_term(r->reason, sizeof r->reason, reason);
}

/* ---- loop lag and call latency ------------------------------------------------ */

#define LAG_PERIOD_MS 100

static void on_lag_timer(uv_timer_t *t)
{
    /* How late this callback runs past when it was due: time the loop spent
     * busy elsewhere. uv_hrtime, not uv_now: the loop's cached time is the
     * start of this iteration, which hides the lag. */
    struct dsup_metrics_st *M = t->data;
    uint64_t now = uv_hrtime();
    dsup_hist_observe(&M->m.loop_lag, now > M->lag_due_ns ? (double)(now - M->lag_due_ns) / 1e9 : 0.0);
    M->lag_due_ns = now + LAG_PERIOD_MS * 1000000ull;
}

void dsup_metrics_start(dsup_node *node)
{
    struct dsup_metrics_st *M = node->metrics;
    M->m.started_ms = dsup_wall_ms();
    if (M->lag_on)
        return;
    uv_timer_init(node->loop, &M->lag_timer);
    M->lag_timer.data = M;
    uv_timer_start(&M->lag_timer, on_lag_timer, LAG_PERIOD_MS, LAG_PERIOD_MS);
    uv_unref((uv_handle_t *)&M->lag_timer);
    M->lag_due_ns = uv_hrtime() + LAG_PERIOD_MS * 1000000ull;
    M->lag_on = 1;
}

void dsup_metrics_stop(dsup_node *node)
{
    struct dsup_metrics_st *M = node->metrics;
    if (M->lag_on && !uv_is_closing((uv_handle_t *)&M->lag_timer))
        uv_close((uv_handle_t *)&M->lag_timer, NULL);
    M->lag_on = 0;
}

void dsup_metrics_node_call(dsup_node *node, uint64_t t0)
{
    dsup_hist_observe(&node->metrics->m.node_call, (double)(uv_hrtime() - t0) / 1e9);
}
