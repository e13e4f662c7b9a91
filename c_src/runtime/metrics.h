/* metrics.h — the node's metrics registry: counters bumped on hot paths (one
 * add each, no allocation after a peer or worker type is first seen),
 * histograms with fixed buckets, and small rings of recent events for the
 * status page. Everything else (children, processes, pg, queues) is read
 * from the live tables at scrape time (http/expo.c, http/status.c).
 * Single-threaded: only the loop thread touches it. */
#ifndef DSUP_METRICS_H
#define DSUP_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "dsup.h"

/* Each node keeps its own (node->metrics): made at node init, freed at close. */
void dsup_metrics_init(dsup_node *node);
void dsup_metrics_free(dsup_node *node);

/* ---- histograms ----------------------------------------------------------- */

#define DSUP_HIST_MAX 16
typedef struct dsup_hist {
    const double *le;               /* upper bounds in seconds, ascending */
    const char *const *le_txt;      /* the same as text, for the exposition */
    int n;                          /* number of bounds (+Inf is implicit) */
    uint64_t bucket[DSUP_HIST_MAX]; /* non-cumulative counts; [n] = above the last */
    uint64_t count;
    double sum;                     /* seconds */
} dsup_hist;

void dsup_hist_observe(dsup_hist *h, double seconds);

/* ---- per peer (kept across reconnects: counters stay monotonic) ----------- */

enum {
    DSUP_HS_COOKIE, DSUP_HS_TIMEOUT, DSUP_HS_VERSION, DSUP_HS_FLAGS, DSUP_HS_NAME,
    DSUP_HS_SIMULTANEOUS, DSUP_HS_STATUS, DSUP_HS_CLOSED, DSUP_HS_PROTOCOL, DSUP_HS_NCLASS
};
extern const char *const dsup_hs_class_names[DSUP_HS_NCLASS];

typedef struct dsup_peer_stats {
    const char *peer;               /* interned node name, held (intern.h); "" for peers not
                                       named yet (or past DSUP_METRICS_MAX_PEERS) */
    uint64_t bytes_in, bytes_out, msgs_in, msgs_out;
    uint64_t ticks_missed;          /* tick periods in which nothing arrived */
    int otp_release;                /* the peer's, when it answered (BEAM peers); 0 unknown */
    uint64_t ups, downs;
    uint64_t hs_fail[DSUP_HS_NCLASS];
    struct dsup_peer_stats *next;
} dsup_peer_stats;

/* The record of `peer` (NULL: the shared one for peers not yet named).
 * Never NULL: on allocation failure, or past DSUP_METRICS_MAX_PEERS names
 * (peers can make the node dial names they list), the shared record. */
#define DSUP_METRICS_MAX_PEERS 256
dsup_peer_stats *dsup_metrics_peer(dsup_node *node, const char *peer);
/* The record of a connection's peer, looked up once per connection (not per
 * frame): the peer's name does not change once it is known. */
struct dsup_conn;
dsup_peer_stats *dsup_metrics_conn(struct dsup_conn *c);
dsup_peer_stats *dsup_metrics_peers(dsup_node *node);   /* list head, for scrapes */
void dsup_metrics_hs_failure(dsup_node *node, const char *peer, const char *why);
/* A connection came up ("up"), was lost ("down") or failed during setup. */
void dsup_metrics_conn_event(dsup_node *node, const char *peer, const char *event, const char *detail);

/* ---- per supervisor instance and worker type ------------------------------ */

enum { DSUP_CRASH_KILLED, DSUP_CRASH_NOCONNECTION, DSUP_CRASH_TIMEOUT, DSUP_CRASH_ERROR, DSUP_CRASH_NCLASS };
extern const char *const dsup_crash_class_names[DSUP_CRASH_NCLASS];

/* Names copied: a spec's type is not always an interned string. Looked up
 * only when a child exits (rare next to messages). */
typedef struct dsup_sup_stats {
    char instance[256], type[256];
    uint64_t restarts;
    uint64_t crashes[DSUP_CRASH_NCLASS];
    struct dsup_sup_stats *next;
} dsup_sup_stats;

dsup_sup_stats *dsup_metrics_sup(dsup_node *node, const char *instance, const char *type);
dsup_sup_stats *dsup_metrics_sups(dsup_node *node);
/* A local child of `instance` ended with `reason`. Normal and shutdown exits,
 * and exits the supervisor asked for (`expected`), are not crashes. */
void dsup_metrics_child_exit(dsup_node *node, const char *instance, const char *type, dsup_term name, const dsup_pid *pid,
                             dsup_term reason, int expected);

/* ---- node-wide ------------------------------------------------------------- */

typedef struct dsup_node_metrics {
    dsup_hist loop_lag;             /* event-loop lag, sampled every LAG_PERIOD */
    dsup_hist node_call;            /* handle_call time of the dsup_node process */
    dsup_hist worker_call;          /* handle_call time of every C worker */
    dsup_hist http_render;          /* time to render an HTTP response (on the loop) */
    uint64_t started_ms;            /* wall clock at start */
    uint64_t http_requests;
} dsup_node_metrics;
dsup_node_metrics *dsup_metrics_of(dsup_node *node);

/* Start the loop-lag sampler (a timer on the loop; unref'd). */
void dsup_metrics_start(dsup_node *node);
void dsup_metrics_stop(dsup_node *node);
/* Time a dsup_node call: t0 from uv_hrtime() before it. */
void dsup_metrics_node_call(dsup_node *node, uint64_t t0);

/* ---- recent events (rings, newest last) ----------------------------------- */

#define DSUP_RECENT 32
/* Copies, not interned pointers: a name nothing holds is freed (intern.h). */
typedef struct dsup_crash_report {
    uint64_t at_ms;                 /* wall clock */
    char instance[128], type[96];
    char name[96], pid[300], reason[200];
} dsup_crash_report;

typedef struct dsup_conn_event {
    uint64_t at_ms;
    char peer[256];
    const char *event;              /* static string */
    char detail[128];
} dsup_conn_event;

/* i-th most recent (0 = newest), NULL past the end. */
const dsup_crash_report *dsup_metrics_crash(dsup_node *node, size_t i);
const dsup_conn_event *dsup_metrics_conn_ev(dsup_node *node, size_t i);

uint64_t dsup_wall_ms(void);

#endif
