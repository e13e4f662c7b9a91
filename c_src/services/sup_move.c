/* sup_move.c — one move of a live child to another host (move_child,
 * rebalance, and the moves of a graceful stop: sup_handoff.c takes those).
 *
 * Exactly one registered copy, for every observer: the old copy stops
 * first (its pid leaves the name's pg group as it ends, and our scope
 * writes the leave to every peer). An observer X may still apply the new
 * copy's join (written by the NEW node over its own link to X) before our
 * leave (written over ours): links are independent. So before asking for
 * the new copy we pass a barrier: a call to net_kernel on every connected
 * node ({is_auth, Node}, answered `yes` by BEAM and dsup nodes alike). A
 * node answers after everything we wrote it before, our leave included, is
 * in its scope's mailbox, so the join that follows lands behind it. One
 * barrier covers every move started in the same batch; a barrier that is
 * not answered within SUP_BARRIER_MS (a peer that went away) lets the
 * moves go anyway.
 *
 * The gap (the name without a pid) is one barrier round trip plus the
 * start: a move queued while a barrier is in flight keeps its old copy
 * running (serving calls) until the next barrier opens, and only then is
 * its state taken and the copy stopped, so no move waits out two barriers
 * unregistered.
 *
 * Then {start_handoff, Name, SpecMap, State} goes to the new host as a
 * gen_server call; its reply ends the move: relayed to the move_child
 * caller, or counted by the rebalance throttle. The name's moving mark
 * ({'$dsup_moving', Name}, sup_handoff.c) stays until the new host says
 * {'$dsup', {moved_visible, Name}}, which it sends after a barrier of its
 * own (the same queue, MOVE_NOTIFY): then every peer has the new copy's
 * join in its scope's mailbox ahead of our leave of the mark. The new
 * host's barrier is off the throttle's path. A mark also goes when the
 * new host leaves, or after SUP_MARK_MAX_MS (a host that never says). */
#include <stdlib.h>
#include <string.h>

#include "intern.h"
#include "xalloc.h"
#include "log.h"
#include "node.h"
#include "sup.h"
#include "term.h"

#define SUP_BARRIER_MS 2000
#define SUP_MARK_MAX_MS 5000

typedef enum {
    MOVE_CALL,                    /* move_child / rebalance / graceful stop: start_handoff call */
    MOVE_NOTIFY,                  /* the target's side: req is a message to `to` */
    MOVE_MARKED                   /* moved; the mark waits for moved_visible */
} move_kind;

typedef struct sup_move {
    move_kind kind;
    dsup_ref tag, mref;
    const char *node;             /* interned, held (NULL for MOVE_NOTIFY) */
    dsup_term name;               /* MOVE_CALL, MOVE_MARKED: the child's name (copy) */
    dsup_term req;                /* the request (copy); MOVE_CALL: taken when its barrier opens */
    dsup_saved_from *from;        /* move_child's caller, or NULL (rebalance) */
    dsup_pid to;                  /* MOVE_NOTIFY: the mover's instance */
    uint64_t until_ms;            /* MOVE_MARKED: leave the mark by then at the latest */
    int graceful;                 /* a graceful stop's move: not the rebalance throttle's */
    struct sup_move *next;
} sup_move;

typedef struct sup_moves {
    sup_move *waiting;            /* for the next barrier (MOVE_CALL: old copy still running) */
    sup_move *barred;             /* behind the barrier in flight */
    sup_move *inflight;           /* start_handoff sent */
    sup_move *marked;             /* moved, mark held until moved_visible */
    uv_timer_t *mark_timer;       /* sweeps `marked` past until_ms */
    dsup_ref barrier_tag;
    int barrier_open, barrier_left;
    uint64_t barrier_t0;          /* uv_hrtime() when the open barrier was sent */
    uint64_t nbar, bar_sum_us, bar_max_us; /* barrier round trips, for the rebalance log */
    uv_timer_t *barrier_timer;
} sup_moves;

static sup_moves *moves_of(dsup_sup *s)
{
    if (!s->moves)
        s->moves = dsup_xcalloc(1, sizeof *s->moves);
    return s->moves;
}

static void free_move(sup_move *m)
{
    if (m->node)
        dsup_intern_release(m->node);
    dsup_term_free(&m->name);
    dsup_term_free(&m->req);
    dsup_from_discard(m->from);
    free(m);
}

static void reply_error(dsup_sup *s, dsup_saved_from *from, const char *what, const char *node)
{
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "error");
    if (node) {
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_atom(x, what);
        dsup_x_encode_atom(x, node);
    } else {
        dsup_x_encode_atom(x, what);
    }
    dsup_reply(from, x);
    dsup_term_scratch_release(x);
}

/* The barrier is passed: ask the new hosts. */
static void send_barred(dsup_sup *s)
{
    sup_moves *mv = s->moves;
    sup_move *list = mv->barred;
    mv->barred = NULL;
    while (list) {
        sup_move *m = list;
        list = m->next;
        if (m->kind == MOVE_NOTIFY) {
            ei_x_buff *x = dsup_term_scratch(s->node);
            dsup_x_encode_term(x, m->req);
            dsup_send(s->proc, &m->to, x);
            dsup_term_scratch_release(x);
            free_move(m);
            continue;
        }
        if (m->kind == MOVE_CALL && !m->req.buf) { /* not taken: not_found */
            free_move(m);
            continue;
        }
        const dsup_pid *host = sup_host_on(s, m->node);
        if (!host) { /* the target left meanwhile: the child is lost (README) */
            LOG_WARN("%s: %s left before a child moved to it arrived", s->name, m->node);
            sup_handoff_mark(s, m->name, 0);
            if (m->from) {
                reply_error(s, m->from, "nodedown", m->node);
                m->from = NULL;
            } else if (!m->graceful) {
                sup_rebalance_moved(s, 0);
            }
            free_move(m);
            continue;
        }
        dsup_pid to = *host;
        dsup_monitor(s->proc, &to, &m->mref);
        ei_x_buff *x = dsup_term_scratch(s->node);
        ei_x_encode_tuple_header(x, 3);
        dsup_x_encode_atom(x, "$gen_call");
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_pid(x, dsup_self(s->proc));
        dsup_x_encode_ref(x, &m->tag);
        dsup_x_encode_term(x, m->req);
        dsup_send(s->proc, &to, x);
        dsup_term_scratch_release(x);
        m->next = mv->inflight;
        mv->inflight = m;
    }
}

static void barrier_passed(dsup_sup *s);

/* A stopping instance finishes once no move of its own is left: barrier
 * passed, every start_handoff answered, every mark released. May end the
 * instance (sup_move_free): call it last. */
static void maybe_finish(dsup_sup *s)
{
    sup_moves *mv = s->moves;
    if (s->stopping && !s->finished && !mv->barrier_open && !mv->waiting && !mv->barred && !mv->inflight &&
        !mv->marked)
        sup_shutdown_finish(s);
}

static void on_barrier_timeout(uv_timer_t *t)
{
    dsup_sup *s = t->data;
    if (s->proc && s->moves && s->moves->barrier_open) {
        LOG_WARN("%s: %d nodes did not answer the move barrier in %d ms; moving anyway", s->name,
                 s->moves->barrier_left, SUP_BARRIER_MS);
        barrier_passed(s);
    }
}

/* A queued move_child/rebalance move whose barrier opens now: take its
 * state and stop the old copy (sup_handoff_take). A child that ended or
 * moved meanwhile is not moved: the caller gets not_found, the throttle a
 * failure. */
static void take_now(dsup_sup *s, sup_move *m)
{
    sup_child *c = sup_child_by_name(s, m->name);
    if (!c || !c->local || c->terminating || !c->shared) {
        if (m->from) {
            reply_error(s, m->from, "not_found", NULL);
            m->from = NULL;
        } else {
            sup_rebalance_moved(s, 0);
        }
        return;
    }
    ei_x_buff *x = dsup_term_scratch(s->node);
    sup_handoff_take(s, c, m->node, x); /* encodes the request, marks, stops the old copy */
    m->req = dsup_term_dup(dsup_term_of_x(x));
    dsup_term_scratch_release(x);
    if (!m->req.buf) {
        LOG_ERROR("%s: out of memory moving a child; it is lost", s->name);
        sup_handoff_mark(s, m->name, 0);
        if (m->from) {
            reply_error(s, m->from, "enomem", NULL);
            m->from = NULL;
        } else {
            sup_rebalance_moved(s, 0);
        }
    }
}

/* Open a barrier for the waiting moves (none open). */
static void open_barrier(dsup_sup *s)
{
    sup_moves *mv = s->moves;
    mv->barred = mv->waiting;
    mv->waiting = NULL;
    dsup_node_make_ref(s->node, &mv->barrier_tag);
    mv->barrier_open = 1; /* before take_now: a throttle refilled from it queues behind */
    mv->barrier_t0 = uv_hrtime();
    mv->barrier_left = 0;
    for (sup_move *m = mv->barred; m; m = m->next)
        if (m->kind == MOVE_CALL && !m->req.buf)
            take_now(s, m);
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 3);
    dsup_x_encode_atom(x, "$gen_call");
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_pid(x, dsup_self(s->proc));
    dsup_x_encode_ref(x, &mv->barrier_tag);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "is_auth");
    dsup_x_encode_atom(x, s->node->name);
    for (size_t i = 0; i < s->node->nconns; i++) {
        dsup_conn *c = s->node->conns[i];
        if (c->state == CONN_UP && c->peer) {
            dsup_send_named(s->proc, "net_kernel", c->peer, x);
            mv->barrier_left++;
        }
    }
    dsup_term_scratch_release(x);
    if (mv->barrier_left == 0) {
        barrier_passed(s);
        return;
    }
    if (!mv->barrier_timer && (mv->barrier_timer = dsup_xmalloc(sizeof *mv->barrier_timer))) {
        uv_timer_init(s->node->loop, mv->barrier_timer);
        mv->barrier_timer->data = s;
    }
    if (mv->barrier_timer)
        uv_timer_start(mv->barrier_timer, on_barrier_timeout, SUP_BARRIER_MS, 0);
}

static void barrier_passed(dsup_sup *s)
{
    sup_moves *mv = s->moves;
    mv->barrier_open = 0;
    uint64_t us = (uv_hrtime() - mv->barrier_t0) / 1000;
    mv->nbar++;
    mv->bar_sum_us += us;
    if (us > mv->bar_max_us)
        mv->bar_max_us = us;
    if (mv->barrier_timer)
        uv_timer_stop(mv->barrier_timer);
    send_barred(s);
    if (mv->waiting)
        open_barrier(s);
    else
        maybe_finish(s);
}

void sup_move_queue_taken(dsup_sup *s, dsup_term name, const char *node, const ei_x_buff *req)
{
    sup_moves *mv = moves_of(s);
    sup_move *m = mv ? dsup_xcalloc(1, sizeof *m) : NULL;
    if (m) {
        m->req = dsup_term_dup(dsup_term_of_x(req));
        m->name = dsup_term_dup(name);
    }
    if (!m || !m->req.buf || !m->name.buf) {
        LOG_ERROR("%s: out of memory handing a child over; it is lost", s->name);
        if (m) {
            dsup_term_free(&m->req);
            dsup_term_free(&m->name);
        }
        free(m);
        sup_handoff_mark(s, name, 0);
        return;
    }
    m->kind = MOVE_CALL;
    m->graceful = 1;
    dsup_node_make_ref(s->node, &m->tag);
    m->node = node;
    dsup_intern_hold(node);
    m->next = mv->waiting;
    mv->waiting = m;
}

void sup_move_barrier(dsup_sup *s)
{
    sup_moves *mv = moves_of(s);
    if (!mv) {
        if (s->stopping)
            sup_shutdown_finish(s);
        return;
    }
    if (!mv->barrier_open)
        open_barrier(s);
}

void sup_move_start(dsup_sup *s, sup_child *c, const char *node, const dsup_from *from)
{
    sup_moves *mv = moves_of(s);
    sup_move *m = mv ? dsup_xcalloc(1, sizeof *m) : NULL;
    if (m)
        m->name = dsup_term_dup(sup_child_name(c));
    if (!m || !m->name.buf) {
        LOG_ERROR("%s: out of memory moving a child; it stays", s->name);
        free(m);
        if (from)
            reply_error(s, dsup_from_save(from), "enomem", NULL);
        else
            sup_rebalance_moved(s, 0);
        return;
    }
    m->kind = MOVE_CALL;
    dsup_node_make_ref(s->node, &m->tag);
    m->node = node;
    dsup_intern_hold(node);
    m->from = from ? dsup_from_save(from) : NULL;
    m->next = mv->waiting;
    mv->waiting = m;
    if (!mv->barrier_open)
        open_barrier(s);
}

int sup_move_notify_after_barrier(dsup_sup *s, const dsup_pid *mover, dsup_term name)
{
    sup_moves *mv = moves_of(s);
    sup_move *m = mv ? dsup_xcalloc(1, sizeof *m) : NULL;
    if (!m)
        return -1;
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "$dsup");
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "moved_visible");
    dsup_x_encode_term(x, name);
    m->req = dsup_term_dup(dsup_term_of_x(x));
    dsup_term_scratch_release(x);
    if (!m->req.buf) {
        free(m);
        return -1;
    }
    m->kind = MOVE_NOTIFY;
    m->to = *mover;
    m->next = mv->waiting;
    mv->waiting = m;
    if (!mv->barrier_open)
        open_barrier(s);
    return 0;
}

/* ---- marks held after a move ------------------------------------------------ */

static void unmark(dsup_sup *s, sup_move **pp)
{
    sup_move *m = *pp;
    *pp = m->next;
    sup_handoff_mark(s, m->name, 0);
    free_move(m);
}

static void on_mark_timer(uv_timer_t *t)
{
    dsup_sup *s = t->data;
    if (!s->proc || !s->moves)
        return;
    uint64_t now = dsup_node_now(s->node);
    for (sup_move **pp = &s->moves->marked; *pp;) {
        if ((*pp)->until_ms <= now) {
            LOG_DEBUG("%s: no moved_visible from %s in %d ms: leaving the moving mark", s->name, (*pp)->node,
                      SUP_MARK_MAX_MS);
            unmark(s, pp);
        } else {
            pp = &(*pp)->next;
        }
    }
    if (!s->moves->marked)
        uv_timer_stop(t);
    maybe_finish(s);
}

/* A successful move: hold its mark until the target says moved_visible. */
static void hold_mark(dsup_sup *s, sup_move *m)
{
    sup_moves *mv = s->moves;
    dsup_term_free(&m->req);
    m->kind = MOVE_MARKED;
    m->until_ms = dsup_node_now(s->node) + SUP_MARK_MAX_MS;
    m->next = mv->marked;
    mv->marked = m;
    if (!mv->mark_timer && (mv->mark_timer = dsup_xmalloc(sizeof *mv->mark_timer))) {
        uv_timer_init(s->node->loop, mv->mark_timer);
        mv->mark_timer->data = s;
    }
    if (mv->mark_timer && !uv_is_active((uv_handle_t *)mv->mark_timer))
        uv_timer_start(mv->mark_timer, on_mark_timer, 1000, 1000);
}

void sup_move_visible(dsup_sup *s, dsup_term name)
{
    for (sup_move **pp = s->moves ? &s->moves->marked : NULL; pp && *pp; pp = &(*pp)->next)
        if (dsup_term_eq((*pp)->name, name)) {
            unmark(s, pp);
            maybe_finish(s);
            return;
        }
}

void sup_move_host_left(dsup_sup *s, const char *node)
{
    for (sup_move **pp = s->moves ? &s->moves->marked : NULL; pp && *pp;) {
        if ((*pp)->node == node)
            unmark(s, pp);
        else
            pp = &(*pp)->next;
    }
    if (s->moves)
        maybe_finish(s);
}

void sup_move_barrier_stats(dsup_sup *s, uint64_t *n, uint64_t *avg_us, uint64_t *max_us)
{
    sup_moves *mv = s->moves;
    *n = mv ? mv->nbar : 0;
    *avg_us = *n ? mv->bar_sum_us / *n : 0;
    *max_us = mv ? mv->bar_max_us : 0;
    if (mv)
        mv->nbar = mv->bar_sum_us = mv->bar_max_us = 0;
}

static sup_move *take(sup_move **list, const dsup_ref *ref, int by_mref)
{
    for (sup_move **pp = list; *pp; pp = &(*pp)->next) {
        sup_move *m = *pp;
        if (dsup_ref_eq(by_mref ? &m->mref : &m->tag, ref)) {
            *pp = m->next;
            return m;
        }
    }
    return NULL;
}

static void finished(dsup_sup *s, sup_move *m, dsup_term reply)
{
    int ar;
    int ok = !dsup_term_tagged(reply, "error", &ar, NULL, 0);
    if (!ok) {
        char *why = NULL;
        int j = 0;
        ei_s_print_term(&why, reply.buf, &j);
        LOG_WARN("%s: a moved child did not start on %s: %s", s->name, m->node, why ? why : "?");
        free(why);
    }
    if (m->from) {
        ei_x_buff *x = dsup_term_scratch(s->node);
        dsup_x_encode_term(x, reply);
        dsup_reply(m->from, x);
        m->from = NULL;
        dsup_term_scratch_release(x);
    } else if (!m->graceful) {
        sup_rebalance_moved(s, ok);
    }
    if (ok && s->proc) {
        hold_mark(s, m); /* until the new copy's join is everywhere */
    } else {
        sup_handoff_mark(s, m->name, 0); /* no new copy: callers give up */
        free_move(m);
    }
    maybe_finish(s);
}

int sup_move_reply(dsup_sup *s, dsup_term msg)
{
    sup_moves *mv = s->moves;
    if (!mv)
        return 0;
    dsup_term el[2];
    dsup_ref ref;
    int i = 0;
    if (dsup_term_tuple(msg, el, 2) != 2 || dsup_decode_ref(s->node, el[0].buf, &i, &ref) < 0)
        return 0;
    if (mv->barrier_open && dsup_ref_eq(&ref, &mv->barrier_tag)) {
        if (--mv->barrier_left <= 0)
            barrier_passed(s);
        return 1;
    }
    sup_move *m = take(&mv->inflight, &ref, 0);
    if (!m)
        return 0;
    dsup_demonitor(s->proc, &m->mref);
    finished(s, m, el[1]);
    return 1;
}

int sup_move_down(dsup_sup *s, const dsup_ref *mref)
{
    sup_move *m = s->moves ? take(&s->moves->inflight, mref, 1) : NULL;
    if (!m)
        return 0;
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "error");
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "nodedown");
    dsup_x_encode_atom(x, m->node);
    finished(s, m, dsup_term_of_x(x));
    dsup_term_scratch_release(x);
    return 1;
}

static void free_list(dsup_sup *s, sup_move *m)
{
    while (m) {
        sup_move *next = m->next;
        if (m->from)
            reply_error(s, m->from, "shutting_down", NULL);
        m->from = NULL;
        free_move(m);
        m = next;
    }
}

void sup_move_free(dsup_sup *s)
{
    sup_moves *mv = s->moves;
    if (!mv)
        return;
    free_list(s, mv->waiting);
    free_list(s, mv->barred);
    free_list(s, mv->inflight);
    free_list(s, mv->marked);
    if (mv->mark_timer)
        uv_close((uv_handle_t *)mv->mark_timer, (uv_close_cb)free);
    if (mv->barrier_timer)
        uv_close((uv_handle_t *)mv->barrier_timer, (uv_close_cb)free);
    free(mv);
    s->moves = NULL;
}
