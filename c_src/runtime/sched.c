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
    uint64_t id;
    dsup_pid to;
    dsup_term msg;
    struct send_timer *prev, *next;
} send_timer;

static send_timer *timers;
static uint64_t next_timer_id = 1;

static void timer_unlink(send_timer *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        timers = t->next;
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
    timer_unlink(t);
    dsup_proc_send(NULL, &t->to, t->msg);
    uv_close((uv_handle_t *)h, timer_free);
}

uint64_t dsup_send_after(dsup_proc *self, unsigned ms, const ei_x_buff *msg)
{
    send_timer *t = dsup_xcalloc(1, sizeof *t);
    t->msg = dsup_term_dup(dsup_term_of_x(msg));
    t->to = *dsup_self(self);
    t->id = next_timer_id++;
    uv_timer_init(g_node->loop, &t->timer);
    t->timer.data = t;
    t->next = timers;
    if (timers)
        timers->prev = t;
    timers = t;
    uv_timer_start(&t->timer, on_timer, ms, 0);
    return t->id;
}

int dsup_cancel_timer(uint64_t id)
{
    for (send_timer *t = timers; t; t = t->next) {
        if (t->id == id) {
            timer_unlink(t);
            uv_close((uv_handle_t *)&t->timer, timer_free);
            return 0;
        }
    }
    return DSUP_ENOTFOUND;
}

typedef struct work {
    uv_work_t req;
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
    dsup_proc *p = dsup_proc_lookup(&w->owner);
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
    w->owner = *dsup_self(self);
    w->arg = arg;
    w->work = fn;
    w->done = done;
    w->req.data = w;
    if (uv_queue_work(g_node->loop, &w->req, run_work, after_work) < 0) {
        free(w);
        return DSUP_ESYSTEM;
    }
    return 0;
}

void dsup_sched_close_all(void)
{
    while (timers) {
        send_timer *t = timers;
        timer_unlink(t);
        uv_close((uv_handle_t *)&t->timer, timer_free);
    }
}
