/* crash_report.c — one line per worker exit, like OTP's crash report and
 * supervisor report rolled into one:
 *   crash report: supervisor=S child=C type=T pid=<0.N.M> reason=R action=A
 *   child stopped: ... (normal, shutdown or {shutdown, _}: at info)
 *   crash report: ... start failed: reason=R action=retry|give_up
 * and, to Elixir observers that joined '$dsup_crash_reports' in the
 * instance's scope, {'$dsup', {crash_report, #{instance, node, child, type,
 * pid, reason, action, level}}}.
 *
 * A crash loop must not flood the log: each instance has a token bucket
 * (SUP_REPORT_BURST lines, refilled one a second). Suppressed reports cost a
 * counter increment; they are summed up in one warning (and one
 * {'$dsup', {crash_reports_suppressed, Instance, Node, Count}}) every
 * SUP_REPORT_SUMMARY_MS while suppression lasts. The bucket lives with the
 * instance's name, so it survives the instance's restarts. */
#include <stdlib.h>
#include <string.h>

#include "crash_report.h"
#include "xalloc.h"
#include "log.h"
#include "node.h"
#include "term.h"
#include "term_text.h"

typedef struct sup_report_limiter {
    dsup_node *node;
    const char *instance; /* interned: compared by pointer */
    int tokens;
    uint64_t refilled_at;
    unsigned long suppressed;
    uv_timer_t summary;
    int timer_ready;
    struct sup_report_limiter *next;
} limiter;

/* The buckets live in the node's sup service (node->sup->limiters). */
static limiter *limiter_for(dsup_node *node, const char *instance)
{
    for (limiter *l = node->sup->limiters; l; l = l->next)
        if (l->instance == instance)
            return l;
    limiter *l = dsup_xcalloc(1, sizeof *l); /* once per instance name, never per report */
    if (!l)
        return NULL;
    l->node = node;
    l->instance = instance;
    l->tokens = SUP_REPORT_BURST;
    l->refilled_at = dsup_node_now(node);
    l->next = node->sup->limiters;
    node->sup->limiters = l;
    return l;
}

static int take_token(limiter *l)
{
    uint64_t now = dsup_node_now(l->node);
    uint64_t gained = (now - l->refilled_at) / SUP_REPORT_REFILL_MS;
    if (gained) {
        l->tokens = l->tokens + gained >= SUP_REPORT_BURST ? SUP_REPORT_BURST : l->tokens + (int)gained;
        l->refilled_at = l->tokens == SUP_REPORT_BURST ? now : l->refilled_at + gained * SUP_REPORT_REFILL_MS;
    }
    if (l->tokens == 0)
        return 0;
    l->tokens--;
    return 1;
}

static void send_to_subscribers(dsup_sup *s, ei_x_buff *msg)
{
    if (!s || !s->proc)
        return;
    const dsup_pid *pids;
    size_t n = dsup_pg_members(s->scope, dsup_reason_atom(s->node, SUP_CRASH_REPORTS_GROUP), &pids);
    for (size_t i = 0; i < n; i++)
        dsup_send(s->proc, &pids[i], msg);
}

static int has_subscribers(dsup_sup *s)
{
    const dsup_pid *pids;
    return s->proc && dsup_pg_members(s->scope, dsup_reason_atom(s->node, SUP_CRASH_REPORTS_GROUP), &pids) > 0;
}

static void on_summary(uv_timer_t *t)
{
    limiter *l = t->data;
    if (!l->suppressed)
        return;
    LOG_WARN("%s: %lu worker exit reports suppressed in the last %d s (rate limit: %d lines, then 1 a second)",
             l->instance, l->suppressed, SUP_REPORT_SUMMARY_MS / 1000, SUP_REPORT_BURST);
    ei_x_buff *x = dsup_term_scratch(l->node);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "$dsup");
    ei_x_encode_tuple_header(x, 4);
    dsup_x_encode_atom(x, "crash_reports_suppressed");
    dsup_x_encode_atom(x, l->instance);
    dsup_x_encode_atom(x, l->node->name);
    ei_x_encode_ulong(x, l->suppressed);
    send_to_subscribers(dsup_sup_find(l->node, l->instance), x);
    dsup_term_scratch_release(x);
    l->suppressed = 0;
}

static void suppress(limiter *l)
{
    l->suppressed++;
    if (!l->timer_ready) {
        uv_timer_init(l->node->loop, &l->summary);
        uv_unref((uv_handle_t *)&l->summary); /* never keeps a stopping node alive */
        l->summary.data = l;
        l->timer_ready = 1;
    }
    if (!uv_is_active((uv_handle_t *)&l->summary))
        uv_timer_start(&l->summary, on_summary, SUP_REPORT_SUMMARY_MS, 0);
}

static int is_normal_reason(dsup_term r)
{
    dsup_term el[2];
    int ar;
    return dsup_term_is_atom(r, "normal") || dsup_term_is_atom(r, "shutdown") ||
           (dsup_term_tagged(r, "shutdown", &ar, el, 2) && ar == 2);
}

static const char *const action_names[] = { "restart", "none", "give_up", "stopped" };

static void send_report(dsup_sup *s, const sup_child *c, dsup_term reason, sup_action action, int level)
{
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "$dsup");
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "crash_report");
    ei_x_encode_map_header(x, 8);
    dsup_x_encode_atom(x, "instance");
    dsup_x_encode_atom(x, s->name);
    dsup_x_encode_atom(x, "node");
    dsup_x_encode_atom(x, s->node->name);
    dsup_x_encode_atom(x, "child");
    dsup_x_encode_term(x, sup_child_name(c));
    dsup_x_encode_atom(x, "type");
    dsup_x_encode_atom(x, c->shared->type);
    dsup_x_encode_atom(x, "pid");
    dsup_x_encode_pid(x, &c->pid);
    dsup_x_encode_atom(x, "reason");
    dsup_x_encode_term(x, reason);
    dsup_x_encode_atom(x, "action");
    dsup_x_encode_atom(x, action_names[action]);
    dsup_x_encode_atom(x, "level");
    dsup_x_encode_atom(x, level == DSUP_LOG_ERROR ? "error" : "info");
    send_to_subscribers(s, x);
    dsup_term_scratch_release(x);
}

void sup_crash_report(dsup_sup *s, const sup_child *c, dsup_term reason, sup_action action)
{
    int level = action == SUP_ACT_STOPPED ? DSUP_LOG_DEBUG
                : is_normal_reason(reason) ? DSUP_LOG_INFO
                                           : DSUP_LOG_ERROR;
    int to_log = level >= dsup_log_level;
    int to_observers = level != DSUP_LOG_DEBUG && has_subscribers(s);
    if (!to_log && !to_observers)
        return;
    limiter *l = limiter_for(s->node, s->name);
    if (l && !take_token(l)) {
        suppress(l);
        return;
    }
    if (to_observers)
        send_report(s, c, reason, action, level);
    if (!to_log)
        return;
    char name[256], why[516];
    dsup_term_text(sup_child_name(c), name, sizeof name);
    dsup_term_text(reason, why, sizeof why);
    char intensity[96] = "";
    if (action == SUP_ACT_GIVE_UP)
        snprintf(intensity, sizeof intensity, " (reached maximum restart intensity, %d in %d s)", s->max_restarts,
                 s->max_seconds);
    dsup_log(level, "%s: supervisor=%s child=%s type=%s pid=<0.%u.%u> reason=%s action=%s%s",
             level == DSUP_LOG_ERROR ? "crash report" : "child stopped", s->name, name, c->shared->type,
             c->pid.num, c->pid.serial, why, action_names[action], intensity);
}

void sup_start_failed_report(dsup_sup *s, const dsup_child_spec *spec, dsup_term why, const char *action)
{
    if (DSUP_LOG_ERROR < dsup_log_level)
        return;
    limiter *l = limiter_for(s->node, s->name);
    if (l && !take_token(l)) {
        suppress(l);
        return;
    }
    char name[256], reason[516];
    dsup_term_text(spec->name, name, sizeof name);
    dsup_term_text(why, reason, sizeof reason);
    LOG_ERROR("crash report: supervisor=%s child=%s type=%s start failed: reason=%s action=%s", s->name, name,
              spec->type, reason, action);
}

/* Node stop: the summary timers close (their handles are in the buckets). */
void sup_report_stop(dsup_node *node)
{
    for (limiter *l = node->sup->limiters; l; l = l->next)
        if (l->timer_ready && !uv_is_closing((uv_handle_t *)&l->summary))
            uv_close((uv_handle_t *)&l->summary, NULL);
}

void sup_report_free(dsup_node *node)
{
    for (limiter *l = node->sup->limiters, *next; l; l = next) {
        next = l->next;
        free(l);
    }
    node->sup->limiters = NULL;
}
