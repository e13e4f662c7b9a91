/* sched.c — time and threads for workers: erlang:send_after for C
 * processes, and slow work on libuv's thread pool with the result handed
 * back on the loop thread. */
#include <stdlib.h>
#include <string.h>

#include "node.h"
#include "xalloc.h"
#include "proc.h"
#include "term.h"

typedef struct send_timer {
    uv_timer_t timer;
    dsup_node *node;
    uint64_t id;
    dsup_pid to;
    dsup_term msg;
    struct send_timer *prev, *next;
} send_timer;

/* One node's (node->sched). */
struct dsup_sched {
    send_timer *timers;
    uint64_t next_timer_id;
};

void dsup_sched_init(dsup_node *node)
{
    node->sched = dsup_xcalloc(1, sizeof *node->sched);
    node->sched->next_timer_id = 1;
}

/* After dsup_sched_close_all's handles closed. */
void dsup_sched_free(dsup_node *node)
{
    free(node->sched);
    node->sched = NULL;
}

static void timer_unlink(struct dsup_sched *S, send_timer *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        S->timers = t->next;
    if (t->next)
        t->next->prev = t->prev;
}

static void timer_free(uv_handle_t *h)
{
    send_timer *t = h->data;
    dsup_term_free(&t->msg);
    free(t);
}

static void on_timer(uv_timer_t *h)
{
    send_timer *t = h->data;
    timer_unlink(t->node->sched, t);
    dsup_proc_send(t->node, NULL, &t->to, t->msg);
    uv_close((uv_handle_t *)h, timer_free);
}

uint64_t dsup_send_after(dsup_proc *self, unsigned ms, const ei_x_buff *msg)
{
    send_timer *t = dsup_xcalloc(1, sizeof *t);
    t->msg = dsup_term_dup(dsup_term_of_x(msg));
    t->to = dsup_proc_pid(self);
    struct dsup_sched *S = self->node->sched;
    t->node = self->node;
    t->id = S->next_timer_id++;
    uv_timer_init(self->node->loop, &t->timer);
    t->timer.data = t;
    t->next = S->timers;
    if (S->timers)
        S->timers->prev = t;
    S->timers = t;
    uv_timer_start(&t->timer, on_timer, ms, 0);
    return t->id;
}

int dsup_cancel_timer(dsup_proc *self, uint64_t id)
{
    if (!self)
        return DSUP_EINVAL;
    struct dsup_sched *S = self->node->sched;
    for (send_timer *t = S->timers; t; t = t->next) {
        if (t->id == id) {
            timer_unlink(S, t);
            uv_close((uv_handle_t *)&t->timer, timer_free);
            return 0;
        }
    }
    return DSUP_ENOTFOUND;
}

typedef struct work {
    uv_work_t req;
    dsup_node *node;
    dsup_pid owner;
    void *arg;
    void (*work)(void *arg);
    void (*done)(dsup_proc *self, void *arg, int status);
} work;

static void run_work(uv_work_t *r)
{
    work *w = r->data;
    w->work(w->arg);
}

static void after_work(uv_work_t *r, int status)
{
    work *w = r->data;
    dsup_proc *p = dsup_proc_lookup(w->node, &w->owner);
    if (p) {
        p->in_callback++;
        w->done(p, w->arg, status);
        p->in_callback--;
        dsup_proc_after_callback(p);
    } else {
        w->done(NULL, w->arg, status);
    }
    free(w);
}

int dsup_queue_work(dsup_proc *self, void *arg, void (*fn)(void *arg),
                    void (*done)(dsup_proc *self, void *arg, int status))
{
    if (!self || !fn || !done)
        return DSUP_EINVAL;
    work *w = dsup_xcalloc(1, sizeof *w);
    w->node = self->node;
    w->owner = dsup_proc_pid(self);
    w->arg = arg;
    w->work = fn;
    w->done = done;
    w->req.data = w;
    if (uv_queue_work(self->node->loop, &w->req, run_work, after_work) < 0) {
        free(w);
        return DSUP_ESYSTEM;
    }
    return 0;
}

void dsup_sched_close_all(dsup_node *node)
{
    struct dsup_sched *S = node->sched;
    while (S->timers) {
        send_timer *t = S->timers;
        timer_unlink(S, t);
        uv_close((uv_handle_t *)&t->timer, timer_free);
    }
}
