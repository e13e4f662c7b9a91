/* sup_move.c — one move of a live child to another host (move_child and
 * rebalance; the graceful-stop handoff is in sup_handoff.c).
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
 * Then {start_handoff, Name, SpecMap, State} goes to the new host as a
 * gen_server call; its reply ends the move: relayed to the move_child
 * caller, or counted by the rebalance throttle. */
#include <stdlib.h>
#include <string.h>

#include "intern.h"
#include "xalloc.h"
#include "log.h"
#include "node.h"
#include "sup.h"
#include "term.h"

#define SUP_BARRIER_MS 2000

typedef struct sup_move {
    dsup_ref tag, mref;
    const char *node;             /* interned, held */
    dsup_term req;                /* the start_handoff request (copy) */
    dsup_saved_from *from;        /* move_child's caller, or NULL (rebalance) */
    int plain;                    /* req is a plain message (graceful stop), no reply */
    struct sup_move *next;
} sup_move;

typedef struct sup_moves {
    sup_move *waiting;            /* old copy stopped, no barrier sent yet */
    sup_move *barred;             /* behind the barrier in flight */
    sup_move *inflight;           /* start_handoff sent */
    dsup_ref barrier_tag;
    int barrier_open, barrier_left;
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
    dsup_intern_release(m->node);
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
        const dsup_pid *host = sup_host_on(s, m->node);
        if (!host) { /* the target left meanwhile: the child is lost (README) */
            LOG_WARN("%s: %s left before a child moved to it arrived", s->name, m->node);
            if (m->from) {
                reply_error(s, m->from, "nodedown", m->node);
                m->from = NULL;
            } else if (!m->plain) {
                sup_rebalance_moved(s, 0);
            }
            free_move(m);
            continue;
        }
        dsup_pid to = *host;
        if (m->plain) {
            ei_x_buff *x = dsup_term_scratch(s->node);
            dsup_x_encode_term(x, m->req);
            dsup_send(s->proc, &to, x);
            dsup_term_scratch_release(x);
            free_move(m);
            continue;
        }
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

static void on_barrier_timeout(uv_timer_t *t)
{
    dsup_sup *s = t->data;
    if (s->proc && s->moves && s->moves->barrier_open) {
        LOG_WARN("%s: %d nodes did not answer the move barrier in %d ms; moving anyway", s->name,
                 s->moves->barrier_left, SUP_BARRIER_MS);
        barrier_passed(s);
    }
}

/* Open a barrier for the waiting moves (none open). */
static void open_barrier(dsup_sup *s)
{
    sup_moves *mv = s->moves;
    mv->barred = mv->waiting;
    mv->waiting = NULL;
    dsup_node_make_ref(s->node, &mv->barrier_tag);
    mv->barrier_open = 1;
    mv->barrier_left = 0;
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
    if (mv->barrier_timer)
        uv_timer_stop(mv->barrier_timer);
    send_barred(s);
    if (mv->waiting)
        open_barrier(s);
    else if (s->stopping && !s->finished)
        sup_shutdown_finish(s);
}

void sup_move_send_after_barrier(dsup_sup *s, const char *node, const ei_x_buff *msg)
{
    sup_moves *mv = moves_of(s);
    sup_move *m = mv ? dsup_xcalloc(1, sizeof *m) : NULL;
    if (m)
        m->req = dsup_term_dup(dsup_term_of_x(msg));
    if (!m || !m->req.buf) {
        LOG_ERROR("%s: out of memory handing a child over; it is lost", s->name);
        free(m);
        return;
    }
    m->plain = 1;
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
    ei_x_buff *x = dsup_term_scratch(s->node);
    sup_handoff_take(c, x); /* encodes the request and stops the old copy */
    if (m)
        m->req = dsup_term_dup(dsup_term_of_x(x));
    dsup_term_scratch_release(x);
    if (!m || !m->req.buf) {
        LOG_ERROR("%s: out of memory moving a child; it is lost", s->name);
        free(m);
        if (from) {
            dsup_saved_from *f = dsup_from_save(from);
            reply_error(s, f, "enomem", NULL);
        }
        return;
    }
    dsup_node_make_ref(s->node, &m->tag);
    m->node = node;
    dsup_intern_hold(node);
    m->from = from ? dsup_from_save(from) : NULL;
    m->next = mv->waiting;
    mv->waiting = m;
    if (!mv->barrier_open)
        open_barrier(s);
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
    } else {
        sup_rebalance_moved(s, ok);
    }
    free_move(m);
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
    if (mv->barrier_timer)
        uv_close((uv_handle_t *)mv->barrier_timer, (uv_close_cb)free);
    free(mv);
    s->moves = NULL;
}
