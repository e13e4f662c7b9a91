/* sup_quorum.c — the opt-in quorum mode of a supervisor instance (option
 * `quorum`): a side of a partition that holds fewer hosts than the quorum
 * (a majority of the configured hosts) stops its children and refuses
 * starts until it holds a quorum again. Without the option both sides stay
 * available and duplicates are resolved after the heal (README, "Partitions
 * and failures").
 *
 * The specs of children stopped this way, and of orphans seen while fenced,
 * are held; once a quorum is back (and pg had a moment to sync with the
 * returning hosts) each one that no host runs is started again on its ring
 * owner. So a cluster that lost its quorum everywhere (too many hosts died)
 * gets its children back when enough hosts return. */
#include <stdlib.h>
#include <string.h>

#include "intern.h"
#include "log.h"
#include "node.h"
#include "sup.h"
#include "term.h"
#include "xalloc.h"

#define RESTORE_DELAY_MS 1000 /* let pg sync with the hosts that came back */
#define RESTORE_TRIES 30      /* then a held child whose owner never took it is dropped */

int sup_quorum_ok(dsup_sup *s)
{
    return !s->quorum || dsup_ring_node_count(s->ring) >= (size_t)s->quorum;
}

/* Keep a spec (taken over) to start once a quorum is back. */
void sup_quorum_hold(dsup_sup *s, dsup_child_spec *spec)
{
    if (s->nheld == s->capheld) {
        size_t nc = s->capheld ? s->capheld * 2 : 64;
        s->held = dsup_xrealloc(s->held, nc * sizeof *s->held);
        s->capheld = nc;
    }
    s->held[s->nheld++] = spec;
}

typedef struct pid_list {
    dsup_pid *pids;
    size_t n, cap;
} pid_list;

static void collect_local_pid(sup_child *c, void *arg)
{
    pid_list *l = arg;
    if (!c->local || c->terminating)
        return;
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        l->pids = dsup_xrealloc(l->pids, nc * sizeof *l->pids);
        l->cap = nc;
    }
    l->pids[l->n++] = c->pid;
}

static void fence(dsup_sup *s)
{
    s->fenced = 1;
    pid_list l = { NULL, 0, 0 };
    sup_foreach_child(s, collect_local_pid, &l);
    LOG_WARN("%s: %zu of the %d hosts a quorum needs: stopping %zu local children, refusing starts",
             s->name, dsup_ring_node_count(s->ring), s->quorum, l.n);
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "shutdown");
    dsup_x_encode_atom(x, "no_quorum");
    dsup_term reason = { x->buff, (size_t)x->index };
    for (size_t i = 0; i < l.n; i++) {
        sup_child *c = sup_child_by_pid(s, &l.pids[i]);
        if (!c || !c->local || c->terminating)
            continue;
        if (c->shared->restart != DSUP_RESTART_TEMPORARY) {
            dsup_child_spec *spec = dsup_spec_with_name(c->shared, sup_child_name(c));
            if (spec)
                sup_quorum_hold(s, spec);
        }
        sup_stop_child(s, c, reason);
    }
    dsup_term_scratch_release(x);
    free(l.pids);
}

static void schedule_restore(dsup_sup *s)
{
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 1);
    dsup_x_encode_atom(x, "$dsup_quorum_restore");
    dsup_send_after(s->proc, RESTORE_DELAY_MS, x);
    dsup_term_scratch_release(x);
}

static void unfence(dsup_sup *s)
{
    s->fenced = 0;
    s->restore_tries = 0;
    LOG_INFO("%s: quorum back (%zu hosts); starts accepted, %zu held children restored in %d ms",
             s->name, dsup_ring_node_count(s->ring), s->nheld, RESTORE_DELAY_MS);
    schedule_restore(s);
}

/* After any change of the ring. */
void sup_quorum_check(dsup_sup *s)
{
    if (!s->quorum || s->stopping || !s->proc)
        return;
    int ok = sup_quorum_ok(s);
    if (!ok && !s->fenced)
        fence(s);
    else if (ok && s->fenced)
        unfence(s);
}

/* Start each held child that no host runs, on its ring owner: here, or by
 * asking the owner (which may not hold a quorum yet, when its connections
 * come back later than ours: such specs stay held and are asked again each
 * second, until a copy runs somewhere or RESTORE_TRIES passes went by). */
void sup_quorum_restore(dsup_sup *s)
{
    if (s->fenced || s->stopping)
        return; /* lost it again meanwhile: keep holding */
    size_t started = 0, asked = 0, kept = 0, n = s->nheld;
    int last = ++s->restore_tries >= RESTORE_TRIES;
    for (size_t i = 0; i < n; i++) {
        dsup_child_spec *spec = s->held[i];
        const dsup_pid *members;
        if (sup_child_by_name(s, spec->name) || dsup_pg_members(s->scope, spec->name, &members) > 0) {
            free(spec);
            continue;
        }
        const char *owner = dsup_ring_node_for(s->ring, spec->name.buf, spec->name.len);
        owner = owner ? dsup_intern_find(s->node->names, owner, strlen(owner)) : NULL; /* ring nodes are hosts: held */
        const dsup_pid *host = owner ? sup_host_on(s, owner) : NULL;
        if (owner == s->node->name) {
            ei_x_buff *x = dsup_term_scratch(s->node);
            if (sup_start_local(s, spec, x) == 0) /* takes the spec */
                started++;
            dsup_term_scratch_release(x);
            continue;
        }
        if (host) {
            /* a call whose answer we ignore: already_started when another
             * holder asked first; the pg group shows the result */
            dsup_ref tag;
            dsup_node_make_ref(s->node, &tag);
            ei_x_buff *x = dsup_term_scratch(s->node);
            ei_x_encode_tuple_header(x, 3);
            dsup_x_encode_atom(x, "$gen_call");
            ei_x_encode_tuple_header(x, 2);
            dsup_x_encode_pid(x, dsup_self(s->proc));
            dsup_x_encode_ref(x, &tag);
            ei_x_encode_tuple_header(x, 3);
            dsup_x_encode_atom(x, "start_child_here");
            dsup_x_encode_term(x, spec->name);
            dsup_spec_encode_map(x, spec, 1);
            dsup_send(s->proc, host, x);
            dsup_term_scratch_release(x);
            asked++;
        }
        if (last) {
            free(spec);
            continue;
        }
        s->held[kept++] = spec;
    }
    s->nheld = kept;
    if (started || asked)
        LOG_INFO("%s: held children: %zu started here, %zu asked of their owners, %zu still held", s->name,
                 started, asked, kept);
    if (kept)
        schedule_restore(s);
}

void sup_quorum_free(dsup_sup *s)
{
    for (size_t i = 0; i < s->nheld; i++)
        free(s->held[i]);
    free(s->held);
    s->held = NULL;
    s->nheld = s->capheld = 0;
}
