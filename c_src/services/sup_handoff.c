/* sup_handoff.c — moving a child to another node with its state (issue 16).
 *
 * A move takes the child's handoff term (the type's handoff_state callback;
 * `none` when the type has none or it fails), stops the old copy (its pid
 * leaves the name's pg group at once, as the process ends), and only then
 * tells the instance on the new node, which starts the new copy with the
 * term (init reads it with dsup_handoff_state) and joins it to the group.
 * The leave is written to the connection before the start request, so no
 * peer ever sees two registered copies; between the two a name has no
 * registered pid for about one network hop (see README "Moving children").
 *
 * Messages, on top of "How instances cooperate":
 *   {'$dsup', {handoff, Name, SpecMap, {state, T} | none}}   an instance
 *       stopped by gen_server:stop hands its children to the names' ring
 *       owners among the remaining hosts with this message, at once;
 *       a graceful stop of the node (SIGTERM, dsup_shutdown) sends the
 *       start_handoff call below instead, after the barrier of sup_move.c,
 *       and leaves '$dsup_hosts' only once every target said moved_visible
 *       (so the receiver has started the child before it runs its failover
 *       for our node, and callers by name never lose the moving mark);
 *   gen_server:call {start_handoff, Name, SpecMap, {state, T} | none}
 *       -> {ok, Pid, Name} | {error, _}: the start on the target of a move
 *       (move_child, rebalance), sent after a barrier (sup_move.c);
 *   {'$dsup', {moved_visible, Name}}   the target to the mover, after a
 *       barrier of the target's: the mover leaves the name's moving mark
 *       {'$dsup_moving', Name} (a pg group of the mover's instance pid,
 *       joined before the old copy stopped);
 *   gen_server:call {move_child, Name, Node} -> {ok, Pid, Name} | {error, _}
 *       (the public call, accepted by any instance: forwarded to the node
 *       where the child runs). */
#include <stdlib.h>
#include <string.h>

#include "intern.h"
#include "log.h"
#include "node.h"
#include "ratelimit.h"
#include "sup.h"
#include "term.h"

/* Append {state, T} or `none` for local child c. */
static void encode_handoff(sup_child *c, ei_x_buff *x)
{
    dsup_node *node = dsup_node_of_name(c->pid.node); /* a local child */
    dsup_proc *p = dsup_proc_lookup(node, &c->pid);
    if (p && p->started && p->type && p->type->handoff_state) {
        int start = x->index;
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_atom(x, "state");
        if (p->type->handoff_state(p, p->state, x) == 0)
            return;
        x->index = start; /* the type declined: move by restart */
    }
    dsup_x_encode_atom(x, "none");
}

/* {'$dsup_moving', Name}: the "moving" mark of a name. */
static void encode_mark(ei_x_buff *x, dsup_term name)
{
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, SUP_MOVING_TAG);
    dsup_x_encode_term(x, name);
}

void sup_handoff_mark(dsup_sup *s, dsup_term name, int moving)
{
    if (!s->proc)
        return;
    ei_x_buff *x = dsup_term_scratch(s->node);
    encode_mark(x, name);
    if (moving)
        dsup_pg_join(s->scope, dsup_term_of_x(x), dsup_self(s->proc), 1);
    else
        dsup_pg_leave(s->scope, dsup_term_of_x(x), dsup_self(s->proc), 1);
    dsup_term_scratch_release(x);
}

int sup_handoff_is_mark(dsup_term group)
{
    int ar;
    return dsup_term_tagged(group, SUP_MOVING_TAG, &ar, NULL, 0) && ar == 2;
}

/* Stop the old copy now: it leaves its pg groups as it ends. Its EXIT then
 * reaches us as a requested stop (no restart; child_down when not stopping).
 * The reason {shutdown, {moved, Node}} tells a caller whose call was still
 * unanswered that it was not handled (the state was taken just now, in this
 * same callback) and may be sent again to the new copy: the shim does. */
static void stop_old_copy(sup_child *c, const char *node)
{
    c->terminating = 1;
    dsup_node *me = dsup_node_of_name(c->pid.node); /* a local child */
    dsup_proc *p = dsup_proc_lookup(me, &c->pid);
    if (!p)
        return;
    ei_x_buff *x = dsup_term_scratch(me);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "shutdown");
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "moved");
    dsup_x_encode_atom(x, node);
    dsup_proc_exit(p, dsup_term_of_x(x));
    dsup_term_scratch_release(x);
}

/* {handoff|start_handoff, Name, SpecMap, State} for local child c, then stop it. */
static void encode_move(sup_child *c, const char *tag, ei_x_buff *x)
{
    ei_x_encode_tuple_header(x, 4);
    dsup_x_encode_atom(x, tag);
    dsup_x_encode_term(x, sup_child_name(c));
    dsup_child_spec cs = sup_child_spec(c);
    dsup_spec_encode_map(x, &cs, 1);
    encode_handoff(c, x);
}

void sup_handoff_take(dsup_sup *s, sup_child *c, const char *node, ei_x_buff *x)
{
    encode_move(c, "start_handoff", x);
    /* The mark joins before the pid leaves, from the same scope: every
     * observer learns the name is moving no later than it loses its pid. */
    sup_handoff_mark(s, sup_child_name(c), 1);
    stop_old_copy(c, node);
}

int sup_handoff_on_stop(dsup_sup *s, sup_child **list, size_t n, int barrier)
{
    size_t moved = 0;
    ei_x_buff *x = dsup_term_scratch(s->node);
    for (size_t i = 0; i < n; i++) {
        sup_child *c = list[i];
        dsup_proc *p = dsup_proc_lookup(s->node, &c->pid);
        if (!p || c->terminating)
            continue;
        /* A temporary child is not brought back when its node stops (as
         * before handoff existed); move_child and rebalance do move it. */
        dsup_child_spec cs = sup_child_spec(c);
        const char *node = p->type && p->type->handoff_state && c->shared->restart != DSUP_RESTART_TEMPORARY
                               ? sup_place_successor(s, &cs, s->node->name)
                               : NULL;
        const dsup_pid *host = node ? sup_host_on(s, node) : NULL;
        if (!host) {
            /* moves by restart: the survivors' failover, once we left */
            if (barrier) {
                c->terminating = 1;
                dsup_proc_exit(p, dsup_reason_atom(s->node, "shutdown"));
            }
            continue;
        }
        dsup_x_reset(x);
        if (barrier) { /* a start_handoff call, as move_child's: the mark waits for moved_visible */
            encode_move(c, "start_handoff", x);
        } else {
            ei_x_encode_tuple_header(x, 2);
            dsup_x_encode_atom(x, "$dsup");
            encode_move(c, "handoff", x);
        }
        sup_handoff_mark(s, sup_child_name(c), 1);
        stop_old_copy(c, node);
        if (barrier) {
            sup_move_queue_taken(s, sup_child_name(c), node, x);
        } else { /* the instance is ending now: its mark goes with it */
            dsup_pid to = *host;
            dsup_send(s->proc, &to, x);
        }
        moved++;
    }
    dsup_term_scratch_release(x);
    if (moved)
        LOG_INFO("%s: handing %zu children over with their state", s->name, moved);
    if (n == 0 || !barrier)
        return 0;
    /* Every peer must see our children leave before the new copies (or the
     * failover's restarts, after we leave the hosts) join. */
    sup_move_barrier(s);
    return !s->finished;
}

/* Start the arriving copy; encodes the start's reply into `reply`. */
static int start_arriving(dsup_sup *s, dsup_term name, dsup_term spec_t, dsup_term state_t, ei_x_buff *reply)
{
    dsup_child_spec *spec, *named;
    dsup_term el[3];
    int ar;
    const dsup_term *handoff = NULL;
    if (dsup_term_tagged(state_t, "state", &ar, el, 3) && ar == 2)
        handoff = &el[1];
    else if (!dsup_term_is_atom(state_t, "none"))
        goto bad;
    if (dsup_spec_parse(s->node, spec_t, &spec) < 0)
        goto bad;
    named = dsup_spec_with_name(spec, name);
    free(spec);
    if (!named)
        goto bad;
    return sup_start_local_handoff(s, named, handoff, reply);
bad:
    ei_x_encode_tuple_header(reply, 2);
    dsup_x_encode_atom(reply, "error");
    dsup_x_encode_atom(reply, "bad_handoff");
    return -1;
}

int sup_handoff_msg(dsup_sup *s, dsup_term ev)
{
    dsup_term el[5];
    int ar;
    if (dsup_term_tagged(ev, "moved_visible", &ar, el, 5) && ar == 2) {
        sup_move_visible(s, el[1]);
        return 1;
    }
    if (!dsup_term_tagged(ev, "handoff", &ar, el, 5) || ar != 4)
        return 0;
    ei_x_buff *x = dsup_term_scratch(s->node);
    if (start_arriving(s, el[1], el[2], el[3], x) < 0) {
        unsigned dropped;
        if (dsup_ratelimit_ok(&s->node->sup->handoff_refuse_log, dsup_node_now(s->node), &dropped)) {
            char *why = NULL;
            int i = 0;
            ei_s_print_term(&why, x->buff, &i);
            LOG_WARN("%s: a child handed over to us did not start: %s (%u similar lines suppressed)", s->name,
                     why ? why : "?", dropped);
            free(why);
        }
    }
    dsup_term_scratch_release(x);
    return 1;
}

/* {move_child, Name, Node}: here when the child runs here, else forwarded. */
static dsup_call_ret move_child(dsup_sup *s, dsup_term req, dsup_term name, dsup_term node_t, const dsup_from *from,
                                ei_x_buff *reply)
{
    const char *node, *text;
    size_t len;
    int i = 0;
    if (dsup_term_atom_text(node_t.buf, &i, &text, &len) < 0 || !(node = dsup_intern_find(s->node->names, text, len)) ||
        !sup_host_on(s, node)) {
        ei_x_encode_tuple_header(reply, 2);
        dsup_x_encode_atom(reply, "error");
        ei_x_encode_tuple_header(reply, 2);
        dsup_x_encode_atom(reply, "no_host");
        dsup_x_encode_term(reply, node_t);
        return DSUP_REPLY;
    }
    sup_child *c = sup_child_by_name(s, name);
    if (!c || c->terminating) {
        sup_error_atom(reply, "not_found");
        return DSUP_REPLY;
    }
    if (!c->local) {
        if (sup_forward(s, c->pid.node, req, from, 1) == 0)
            return DSUP_NOREPLY;
        sup_error_atom(reply, "not_found");
        return DSUP_REPLY;
    }
    if (node == s->node->name) { /* already there */
        ei_x_encode_tuple_header(reply, 3);
        dsup_x_encode_atom(reply, "ok");
        dsup_x_encode_pid(reply, &c->pid);
        dsup_x_encode_term(reply, sup_child_name(c));
        return DSUP_REPLY;
    }
    /* The target's reply ({ok, NewPid, Name} | {error, _}) goes to the caller. */
    sup_move_start(s, c, node, from);
    return DSUP_NOREPLY;
}

int sup_handoff_call(dsup_sup *s, dsup_term req, const dsup_from *from, ei_x_buff *reply, dsup_call_ret *ret)
{
    dsup_term el[5];
    int ar;
    if (dsup_term_tagged(req, "move_child", &ar, el, 5) && ar == 3) {
        *ret = move_child(s, req, el[1], el[2], from, reply);
        return 1;
    }
    if (dsup_term_tagged(req, "checkpoint_of", &ar, el, 5) && ar == 2) {
        sup_checkpoint_encode(s, el[1], reply);
        *ret = DSUP_REPLY;
        return 1;
    }
    if (dsup_term_tagged(req, "start_handoff", &ar, el, 5) && ar == 4) {
        /* Answered now; once a barrier of ours passed (every peer has our
         * join of the new copy in its scope's mailbox) the mover hears
         * moved_visible and leaves the name's moving mark, which then lands
         * behind the join everywhere (sup_move.c). */
        if (start_arriving(s, el[1], el[2], el[3], reply) == 0 &&
            sup_move_notify_after_barrier(s, &from->pid, el[1]) < 0)
            LOG_WARN("%s: out of memory: the mover of a child keeps its moving mark for 5 s", s->name);
        *ret = DSUP_REPLY;
        return 1;
    }
    return 0;
}
