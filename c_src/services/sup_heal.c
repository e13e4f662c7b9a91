/* sup_heal.c — the node restarts its supervisor instances, as an OTP
 * parent supervisor restarts a child supervisor (README "Escalation").
 *
 * An instance that reaches its restart intensity shuts down: it leaves the
 * ring, the other hosts take over its children (failover), and its process
 * ends. When an instance process ends while the node is not stopping, for
 * any reason, the node starts it again under the same name, with the same
 * options and so the same pg scope, after a backoff (DSUP_HEAL_BACKOFF_*):
 * it rejoins '$dsup_hosts' and the ring. Its former local children that
 * run nowhere (no pg member), because no other host could take them (it was
 * the only host, or cache_children is off), start again in the new
 * instance; temporary children stay stopped.
 *
 * The node has an intensity of its own: more than dsup_heal_max_restarts
 * instance restarts within dsup_heal_max_seconds stop the node (a clean
 * shutdown: children handed over, connections closed) with exit status
 * DSUP_EXIT_SOFTWARE, for the service manager to restart it. */
#include <stdlib.h>
#include <string.h>

#include "crash_report.h"
#include "xalloc.h"
#include "log.h"
#include "node.h"
#include "sup_heal.h"
#include "term.h"
#include "term_text.h"

int dsup_heal_max_restarts = DSUP_HEAL_DEFAULT_MAX_RESTARTS;
int dsup_heal_max_seconds = DSUP_HEAL_DEFAULT_MAX_SECONDS;

#define RECENT 8 /* per instance, enough to reach the backoff cap */

typedef struct heal_rec {
    dsup_node *node;
    const char *name;      /* interned instance name */
    dsup_term opts;        /* owned copy of the start options; len 0: none */
    dsup_sup *ended;       /* the instance that ended, until restarted */
    dsup_child_spec **kept; /* specs it could not restart (sup_heal_keep) */
    size_t nkept;
    uint64_t recent[RECENT];
    int nrecent;
    int scheduled, exit_node;
    uv_timer_t timer;
    int timer_ready;
    struct heal_rec *next;
} heal_rec;

/* One node's (node->sup->heal). */
struct sup_heal_state {
    heal_rec *recs;
    uint64_t *node_times; /* a ring of the node's recent instance restarts */
    int node_ntimes, node_cap;
};

static struct sup_heal_state *heal_of(dsup_node *node)
{
    if (!node->sup->heal)
        node->sup->heal = dsup_xcalloc(1, sizeof *node->sup->heal);
    return node->sup->heal;
}

static heal_rec *rec_for(dsup_node *node, const char *name, int create)
{
    struct sup_heal_state *H = heal_of(node);
    for (heal_rec *r = H->recs; r; r = r->next)
        if (r->name == name)
            return r;
    heal_rec *r = create ? dsup_xcalloc(1, sizeof *r) : NULL;
    if (!r)
        return NULL;
    r->node = node;
    r->name = name;
    r->next = H->recs;
    H->recs = r;
    return r;
}

void sup_heal_keep(dsup_sup *s, dsup_child_spec *spec)
{
    heal_rec *r = rec_for(s->node, s->name, 1);
    dsup_child_spec **k = r ? dsup_xrealloc(r->kept, (r->nkept + 1) * sizeof *k) : NULL;
    if (!k) {
        free(spec);
        return;
    }
    r->kept = k;
    r->kept[r->nkept++] = spec;
}

void sup_heal_started(dsup_sup *s, const dsup_term *opts)
{
    heal_rec *r = rec_for(s->node, s->name, 1);
    if (!r || (opts && opts->buf == r->opts.buf)) /* a restart with the kept options */
        return;
    dsup_term_free(&r->opts);
    r->opts = (dsup_term){ NULL, 0 };
    if (opts && opts->len)
        r->opts = dsup_term_dup(*opts);
}

/* Drop restarts older than the window from `times`; 1 and record `now`
 * when fewer than max remain. */
static int window_allows(uint64_t *times, int *n, int cap, int max, uint64_t now)
{
    uint64_t window = (uint64_t)dsup_heal_max_seconds * 1000;
    int kept = 0;
    for (int i = 0; i < *n; i++)
        if (now - times[i] <= window)
            times[kept++] = times[i];
    *n = kept;
    if (kept >= max)
        return 0;
    if (kept == cap) { /* only the per-instance ring can be full: forget the oldest */
        memmove(times, times + 1, (size_t)(cap - 1) * sizeof *times);
        kept = --*n;
    }
    times[(*n)++] = now;
    return 1;
}

static int node_restart_allowed(dsup_node *node, uint64_t now)
{
    struct sup_heal_state *H = heal_of(node);
    if (H->node_cap < dsup_heal_max_restarts + 1) {
        uint64_t *t = dsup_xrealloc(H->node_times, (size_t)(dsup_heal_max_restarts + 1) * sizeof *t);
        H->node_times = t;
        H->node_cap = dsup_heal_max_restarts + 1;
    }
    return window_allows(H->node_times, &H->node_ntimes, H->node_cap, dsup_heal_max_restarts, now);
}

/* ---- the restart ----------------------------------------------------------- */

/* Start the child of `spec` in `now` unless it runs somewhere: 1 started,
 * 0 running elsewhere, -1 failed (reported). */
static int carry_one(dsup_sup *now, const dsup_child_spec *spec)
{
    const dsup_pid *live;
    if (spec->restart == DSUP_RESTART_TEMPORARY || !sup_spec_full(spec))
        return -2;
    if (dsup_pg_members(now->scope, spec->name, &live) > 0)
        return 0;
    dsup_child_spec *copy = dsup_spec_with_name(spec, spec->name);
    ei_x_buff *x = dsup_term_scratch(now->node);
    int rc = copy ? sup_start_local(now, copy, x) : -1;
    dsup_term el[2];
    if (rc < 0 && dsup_term_tuple((dsup_term){ x->buff, (size_t)x->index }, el, 2) == 2)
        sup_start_failed_report(now, spec, el[1], "give_up");
    dsup_term_scratch_release(x);
    return rc < 0 ? -1 : 1;
}

/* Start in `now` the former local children of the ended instance (the
 * specs it kept, and those of its records, which `now` took from it:
 * sup_cache_release) that run nowhere. */
static void carry_over(heal_rec *r, dsup_sup *now)
{
    size_t started = 0, elsewhere = 0;
    for (size_t i = 0; i < r->nkept; i++) {
        int rc = carry_one(now, r->kept[i]);
        started += rc == 1;
        elsewhere += rc == 0;
    }
    for (size_t i = 0; i < r->nkept; i++)
        free(r->kept[i]);
    free(r->kept);
    r->kept = NULL;
    r->nkept = 0;
    LOG_INFO("%s: instance restarted; %zu of its former children started again here, %zu run elsewhere", now->name,
             started, elsewhere);
}

static void schedule(heal_rec *r, const char *why);

static void on_timer(uv_timer_t *t)
{
    heal_rec *r = t->data;
    dsup_node *node = r->node;
    r->scheduled = 0;
    if (node->stopping)
        return;
    if (r->exit_node) {
        dsup_shutdown(node);
        return;
    }
    /* Started again meanwhile (a start_supervisor call): adopt that one. */
    dsup_sup *now = dsup_sup_find(node, r->name);
    ei_x_buff *err = dsup_term_scratch(node);
    int rc = now ? 0 : dsup_sup_start(node, r->name, r->opts.len ? &r->opts : NULL, &now, err);
    if (rc < 0) {
        char txt[512];
        dsup_term_text((dsup_term){ err->buff, (size_t)err->index }, txt, sizeof txt);
        LOG_ERROR("%s: instance restart failed (%s)", r->name, err->index ? txt : "cannot start");
        dsup_term_scratch_release(err);
        schedule(r, "restart_failed");
        return;
    }
    dsup_term_scratch_release(err);
    if (r->ended)
        carry_over(r, now);
    r->ended = NULL;
}

static void schedule(heal_rec *r, const char *why)
{
    if (r->scheduled)
        return;
    dsup_node *node = r->node;
    uint64_t now = dsup_node_now(node);
    unsigned delay = 0;
    if (!node_restart_allowed(node, now)) {
        LOG_ERROR("node reached maximum instance restart intensity (%d in %d s): instance %s ended (%s); "
                  "exiting with status %d for the service manager to restart the node",
                  dsup_heal_max_restarts, dsup_heal_max_seconds, r->name, why, DSUP_EXIT_SOFTWARE);
        node->exit_status = DSUP_EXIT_SOFTWARE;
        r->exit_node = 1;
    } else {
        /* doubled for each earlier restart of this instance in the window */
        window_allows(r->recent, &r->nrecent, RECENT, RECENT + 1, now);
        uint64_t d = DSUP_HEAL_BACKOFF_BASE_MS;
        for (int k = r->nrecent - 1; k > 0 && d < DSUP_HEAL_BACKOFF_MAX_MS; k--)
            d *= 2;
        delay = (unsigned)(d < DSUP_HEAL_BACKOFF_MAX_MS ? d : DSUP_HEAL_BACKOFF_MAX_MS);
        LOG_WARN("%s: instance ended (%s); restarting it in %u ms (node restart %d of %d allowed in %d s)", r->name,
                 why, delay, heal_of(node)->node_ntimes, dsup_heal_max_restarts, dsup_heal_max_seconds);
    }
    if (!r->timer_ready) {
        uv_timer_init(node->loop, &r->timer);
        uv_unref((uv_handle_t *)&r->timer); /* a stopping node does not wait for it */
        r->timer.data = r;
        r->timer_ready = 1;
    }
    r->scheduled = 1;
    uv_timer_start(&r->timer, on_timer, delay, 0);
}

void sup_heal_ended(dsup_sup *s, dsup_term reason)
{
    if (s->node->stopping)
        return;
    heal_rec *r = rec_for(s->node, s->name, 0);
    if (!r)
        return;
    r->ended = s;
    char txt[512];
    schedule(r, dsup_term_text(reason, txt, sizeof txt));
}

/* Node stop: no instance restarts any more; their timers close. */
void sup_heal_stop(dsup_node *node)
{
    if (!node->sup->heal)
        return;
    for (heal_rec *r = node->sup->heal->recs; r; r = r->next)
        if (r->timer_ready && !uv_is_closing((uv_handle_t *)&r->timer))
            uv_close((uv_handle_t *)&r->timer, NULL);
}

void sup_heal_free(dsup_node *node)
{
    struct sup_heal_state *H = node->sup->heal;
    if (!H)
        return;
    for (heal_rec *r = H->recs, *next; r; r = next) {
        next = r->next;
        dsup_term_free(&r->opts);
        for (size_t i = 0; i < r->nkept; i++)
            free(r->kept[i]);
        free(r->kept);
        free(r);
    }
    free(H->node_times);
    free(H);
    node->sup->heal = NULL;
}
