/* sup_rebalance.c — with `rebalance: true`, a host that joins the ring
 * receives the local children whose ring owner it now is, each moved with
 * its state (sup_handoff.c), at most `rebalance_moves` at a time.
 *
 * Each instance moves only its own children, so the moved set is exactly
 * the children whose libring owner changed to the new host. A move
 * (sup_move.c) ends with the new host's reply to its start_handoff call, or
 * the loss of that host, and lets the next one start. The owner is looked up again when a move
 * starts: a child whose owner changed meanwhile moves to the current owner,
 * or stays when that is us. */
#include <stdlib.h>
#include <string.h>

#include "intern.h"
#include "xalloc.h"
#include "log.h"
#include "node.h"
#include "sup.h"
#include "term.h"

typedef struct sup_rebalance {
    dsup_term *queue;             /* names (copies) waiting to move */
    size_t head, n, cap;
    int ninflight;
    size_t moved, failed;
    uint64_t started_ms;
} sup_rebalance;

static sup_rebalance *rb_of(dsup_sup *s)
{
    if (!s->rb)
        s->rb = dsup_xcalloc(1, sizeof *s->rb);
    return s->rb;
}

static int enqueue(sup_rebalance *rb, dsup_term name)
{
    if (rb->n == rb->cap) {
        if (rb->head > 0) { /* slide the live part down before growing */
            memmove(rb->queue, rb->queue + rb->head, (rb->n - rb->head) * sizeof *rb->queue);
            rb->n -= rb->head;
            rb->head = 0;
        }
        if (rb->n == rb->cap) {
            size_t nc = rb->cap ? rb->cap * 2 : 64;
            dsup_term *nq = dsup_xrealloc(rb->queue, nc * sizeof *nq);
            rb->queue = nq;
            rb->cap = nc;
        }
    }
    rb->queue[rb->n] = dsup_term_dup(name);
    if (!rb->queue[rb->n].buf)
        return -1;
    rb->n++;
    return 0;
}

/* Start the move of `name` to its current owner; 1 if a move is in flight. */
static int start_move(dsup_sup *s, sup_rebalance *rb, dsup_term name)
{
    sup_child *c = sup_child_by_name(s, name);
    if (!c || !c->local || c->terminating || !c->shared)
        return 0;
    const char *owner = dsup_ring_node_for(s->ring, name.buf, name.len);
    owner = owner ? dsup_intern_find(s->node->names, owner, strlen(owner)) : NULL;
    if (!owner || owner == s->node->name || !sup_host_on(s, owner))
        return 0;
    rb->ninflight++;
    sup_move_start(s, c, owner, NULL);
    return 1;
}

static void pump(dsup_sup *s)
{
    sup_rebalance *rb = s->rb;
    if (!rb || !s->proc || s->stopping)
        return;
    while (rb->ninflight < s->rebalance_moves && rb->head < rb->n) {
        dsup_term name = rb->queue[rb->head++];
        rb->moved += (size_t)start_move(s, rb, name);
        dsup_term_free(&name);
    }
    if (rb->ninflight == 0 && rb->head == rb->n && rb->n) {
        uint64_t nb, avg, max;
        sup_move_barrier_stats(s, &nb, &avg, &max);
        LOG_INFO("%s: rebalance moved %zu children in %llu ms (%zu did not start there); %llu barriers, "
                 "round trip mean %llu us, max %llu us",
                 s->name, rb->moved, (unsigned long long)(dsup_node_now(s->node) - rb->started_ms), rb->failed,
                 (unsigned long long)nb, (unsigned long long)avg, (unsigned long long)max);
        rb->head = rb->n = 0;
        rb->moved = rb->failed = 0;
    }
}

typedef struct collect_ctx {
    dsup_sup *s;
    sup_rebalance *rb;
    const char *node;
    size_t n;
} collect_ctx;

static void collect(sup_child *c, void *arg)
{
    collect_ctx *k = arg;
    if (!c->local || c->terminating || !c->shared)
        return;
    const char *owner = dsup_ring_node_for(k->s->ring, sup_child_name(c).buf, sup_child_name(c).len);
    if (owner && strcmp(owner, k->node) == 0 && enqueue(k->rb, sup_child_name(c)) == 0)
        k->n++;
}

void sup_rebalance_host_joined(dsup_sup *s, const char *node)
{
    sup_rebalance *rb = rb_of(s);
    if (!rb)
        return;
    if (rb->head == rb->n && rb->ninflight == 0)
        rb->started_ms = dsup_node_now(s->node);
    collect_ctx k = { s, rb, node, 0 };
    sup_foreach_child(s, collect, &k);
    if (k.n) {
        LOG_INFO("%s: %s joined: moving it %zu children (%d at a time)", s->name, node, k.n, s->rebalance_moves);
        /* An empty barrier first: a node that just joined is still taking in
         * the scope's sync and the instances' snapshots, and would answer the
         * first moves' barrier only after that, with their names unregistered
         * meanwhile. The first moves queue behind this one, their old copies
         * still serving, and are taken when it passed. */
        sup_move_barrier(s);
    }
    pump(s);
}

void sup_rebalance_moved(dsup_sup *s, int ok)
{
    sup_rebalance *rb = s->rb;
    if (!rb || rb->ninflight == 0)
        return;
    rb->ninflight--;
    rb->failed += !ok;
    pump(s);
}

void sup_rebalance_free(dsup_sup *s)
{
    sup_rebalance *rb = s->rb;
    if (!rb)
        return;
    for (size_t i = rb->head; i < rb->n; i++)
        dsup_term_free(&rb->queue[i]);
    free(rb->queue);
    free(rb);
    s->rb = NULL;
}
