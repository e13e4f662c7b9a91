/* sup.c — a DistributedSupervisor instance on this node.
 *
 * The instance is a C process registered as Name that traps exits and is
 * linked to its local children. It takes part in the pg scope Name.Scope:
 * its own pid is in group '$dsup_hosts' (which makes this node a placement
 * target), each child's pid is in the group named by the child's name (the
 * registry: whereis is a pg lookup). The ring holds the nodes of the hosts.
 *
 * Failover: when the last host on a node leaves (node lost, or instance
 * stopped), every surviving instance takes the lost node off its ring and,
 * for each cached child that lived there, the child's own ring owner (by
 * name) restarts it, unless it is temporary or already running elsewhere. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "crash_report.h"
#include "err.h"
#include "xalloc.h"
#include "gen_server.h"
#include "intern.h"
#include "log.h"
#include "metrics.h"
#include "node.h"
#include "sup.h"
#include "sup_heal.h"
#include "term.h"
#include "term_text.h"


/* ---- hosts and the ring ---------------------------------------------------- */

const dsup_pid *sup_host_on(dsup_sup *s, const char *node)
{
    const dsup_pid *pids;
    size_t n = dsup_pg_members(s->scope, dsup_reason_atom(s->node, SUP_HOSTS_GROUP), &pids); /* atom cached */
    for (size_t i = 0; i < n; i++)
        if (pids[i].node == node)
            return &pids[i];
    return NULL;
}

/* The instance's `nodes` option admits this node (no option: every node). */
int sup_node_allowed(dsup_sup *s, const char *node)
{
    if (!s->nodes)
        return 1;
    for (int i = 0; i < s->nnodes; i++)
        if (s->nodes[i] == node)
            return 1;
    return 0;
}

static void emit_node(dsup_sup *s, const char *what, const char *node)
{
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 3);
    dsup_x_encode_atom(x, what);
    dsup_x_encode_atom(x, node);
    ei_x_encode_empty_list(x);
    sup_emit(s, x);
    dsup_term_scratch_release(x);
}

static void host_joined(dsup_sup *s, const dsup_pid *host)
{
    if (sup_node_allowed(s, host->node) && !dsup_ring_has_node(s->ring, host->node)) {
        dsup_ring_add_node(s->ring, host->node, 0);
        if (s->monitor_nodes == 1 && host->node != s->node->name)
            emit_node(s, "node_up", host->node);
        if (s->rebalance && host->node != s->node->name && !s->stopping)
            sup_rebalance_host_joined(s, host->node);
    }
    if (!dsup_pid_eq(host, dsup_self(s->proc)))
        sup_send_snapshot(s, host);
    sup_pending_child_retry(s); /* a host that can run a pending child? */
    sup_quorum_check(s);
    sup_replica_ring_changed(s);
}

/* Ask ourselves to fail over once the scope has applied the whole change
 * (a lost node's members leave in one burst). */
static void schedule_failover(dsup_sup *s, const char *node)
{
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "$dsup_failover");
    dsup_x_encode_atom(x, node);
    dsup_send(s->proc, dsup_self(s->proc), x);
    dsup_term_scratch_release(x);
}

/* A host that stops gracefully stops its children before it leaves the
 * hosts group: their pg leaves are not terminations (child_left must not
 * drop them); the failover on its leave restarts them. */
void sup_note_terminating(dsup_sup *s, const char *node)
{
    for (int i = 0; i < s->nterminating; i++)
        if (s->terminating[i] == node)
            return;
    if (!node || s->nterminating == (int)(sizeof s->terminating / sizeof s->terminating[0]))
        return;
    dsup_intern_hold(node);
    s->terminating[s->nterminating++] = node;
}

static int is_terminating(dsup_sup *s, const char *node)
{
    for (int i = 0; i < s->nterminating; i++)
        if (s->terminating[i] == node)
            return 1;
    return 0;
}

static void forget_terminating(dsup_sup *s, const char *node)
{
    for (int i = 0; i < s->nterminating; i++)
        if (s->terminating[i] == node) {
            dsup_intern_release(node);
            s->terminating[i] = s->terminating[--s->nterminating];
            return;
        }
}

static void host_left(dsup_sup *s, const dsup_pid *host)
{
    if (sup_host_on(s, host->node))
        return; /* another instance pid on that node remains */
    forget_terminating(s, host->node); /* its failover is scheduled below */
    sup_move_host_left(s, host->node);  /* moving marks of moves to it */
    if (dsup_ring_has_node(s->ring, host->node)) {
        dsup_ring_remove_node(s->ring, host->node);
        if (s->monitor_nodes == 1)
            emit_node(s, "node_down", host->node);
    }
    sup_quorum_check(s);
    if (host->node != s->node->name && !s->stopping)
        schedule_failover(s, host->node);
    sup_replica_ring_changed(s); /* its replicas' places go to the next hosts */
}

/* The copy our table names for `name` left the name's pg group while its
 * host stays: the child is gone, and its child_down may have been lost with
 * a connection (a host that was cut off, or paused past the tick time, comes
 * back and pg syncs, but the messages sent meanwhile are gone). Checked from
 * the mailbox, after the whole pg change: when the host itself left, the
 * failover handles its children instead. */
static void check_left_later(dsup_sup *s, dsup_term name, const dsup_pid *pid)
{
    sup_child *c = sup_child_by_name(s, name);
    if (!c || c->local || !dsup_pid_eq(&c->pid, pid) || !sup_host_on(s, pid->node))
        return;
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 3);
    dsup_x_encode_atom(x, "$dsup_left");
    dsup_x_encode_term(x, name);
    dsup_x_encode_pid(x, pid);
    dsup_send(s->proc, dsup_self(s->proc), x);
    dsup_term_scratch_release(x);
}

static void child_left(dsup_sup *s, dsup_term name, dsup_term pid_t)
{
    dsup_pid pid;
    int i = 0;
    if (dsup_decode_pid(s->node, pid_t.buf, &i, &pid) < 0)
        return;
    sup_child *c = sup_child_by_name(s, name);
    if (!c || c->local || !dsup_pid_eq(&c->pid, &pid) || !sup_host_on(s, pid.node) ||
        is_terminating(s, pid.node))
        return;
    const dsup_pid *members;
    size_t n = dsup_pg_members(s->scope, name, &members);
    for (size_t k = 0; k < n; k++)
        if (dsup_pid_eq(&members[k], &pid))
            return; /* back in the group meanwhile */
    if (sup_cache_repoint(s, c, NULL))
        return;
    sup_emit_process_stop(s, sup_child_name(c), &pid);
    sup_cache_drop(s, c);
}

/* 0 when group is none of the scope's own groups: '$dsup_hosts',
 * '$dsup_observers', {'$dsup_type', T}, {'$dsup_moving', Name} all are an
 * atom, or a tuple that starts with one, whose text starts with '$'. Asked of
 * every join, mostly of children's names, which the first bytes turn away;
 * 1 (maybe) sends the group through the exact checks. */
static int maybe_own_group(dsup_term group)
{
    const uint8_t *b = (const uint8_t *)group.buf;
    size_t len = group.len, at = 0;
    if (len && b[0] == 131)
        at = 1; /* as sup_place_is_capability_group: tolerate a version byte */
    if (len < at + 3)
        return 1;
    if (b[at] == 104) /* SMALL_TUPLE_EXT */
        at += 2;
    else if (b[at] == 105) /* LARGE_TUPLE_EXT */
        at += 5;
    if (len < at + 4)
        return 1;
    switch (b[at]) {
    case 100: /* ATOM_EXT */
    case 118: /* ATOM_UTF8_EXT */
        return b[at + 3] == '$';
    case 115: /* SMALL_ATOM_EXT */
    case 119: /* SMALL_ATOM_UTF8_EXT */
        return b[at + 2] == '$';
    }
    return 0;
}

/* An event of one of the scope's own groups: handled, 1; 0 when group is
 * none of them (a child's name). */
static int own_group_event(dsup_sup *s, int event, dsup_term group, const dsup_pid *pids, size_t n)
{
    int hosts = dsup_term_is_atom(group, SUP_HOSTS_GROUP);
    int capability = !hosts && sup_place_is_capability_group(group);
    if (hosts || capability)
        sup_place_forget(s, 0); /* first: what follows may place children */
    if (!s->proc)
        return 1;
    if (hosts) {
        for (size_t i = 0; i < n; i++)
            (event == DSUP_PG_JOIN ? host_joined : host_left)(s, &pids[i]);
        return 1;
    }
    if (dsup_term_is_atom(group, SUP_OBSERVERS_GROUP)) {
        if (event == DSUP_PG_JOIN)
            for (size_t i = 0; i < n; i++)
                sup_send_snapshot(s, &pids[i]);
        return 1;
    }
    if (sup_handoff_is_mark(group)) /* a name moving (sup_handoff.c): not a child */
        return 1;
    if (capability) {
        /* A host's capabilities may arrive after the host itself: a pg sync
         * lists groups in any order. A pending child may be placeable now. */
        if (event == DSUP_PG_JOIN && !s->stopping)
            sup_pending_child_retry(s);
        sup_replica_ring_changed(s); /* the capable hosts, so the replicas, changed */
        return 1;
    }
    return 0;
}

static void on_scope_event(void *arg, dsup_pg *scope, int event, dsup_term group, const dsup_pid *pids, size_t n)
{
    dsup_sup *s = arg;
    /* a child's name, the usual join, is turned away by its first bytes */
    if (maybe_own_group(group) && own_group_event(s, event, group, pids, n))
        return;
    if (!s->proc || s->stopping)
        return;
    if (event == DSUP_PG_JOIN)
        sup_resolve_duplicate(s, group);
    else if (event == DSUP_PG_LEAVE)
        for (size_t i = 0; i < n; i++)
            check_left_later(s, group, &pids[i]);
}

/* ---- local children --------------------------------------------------------- */

static void reply_error2(ei_x_buff *reply, const char *tag, dsup_term detail)
{
    ei_x_encode_tuple_header(reply, 2);
    dsup_x_encode_atom(reply, "error");
    ei_x_encode_tuple_header(reply, 2);
    dsup_x_encode_atom(reply, tag);
    dsup_x_encode_term(reply, detail);
}

/* A copy of spec named by a fresh reference (spec is consumed): a child
 * started without a name, named before placement since placement is by name. */
dsup_child_spec *sup_spec_named_by_ref(dsup_sup *s, dsup_child_spec *spec)
{
    dsup_ref ref;
    dsup_node_make_ref(s->node, &ref);
    ei_x_buff *x = dsup_term_scratch(s->node);
    dsup_x_encode_ref(x, &ref);
    dsup_child_spec *named = dsup_spec_with_name(spec, (dsup_term){ x->buff, (size_t)x->index });
    dsup_term_scratch_release(x);
    free(spec);
    return named;
}

/* A name no child may have: the scope's own groups ({reserved_name, Name}),
 * or a term the ring cannot place, a fun ({bad_child_name, Name}: libring's
 * phash2 of a fun depends on the node that made it). Encodes the error and
 * returns -1, else 0. */
int sup_check_child_name(dsup_sup *s, dsup_term name, ei_x_buff *reply)
{
    uint32_t h;
    if (dsup_term_is_atom(name, SUP_HOSTS_GROUP) || dsup_term_is_atom(name, SUP_OBSERVERS_GROUP) ||
        sup_place_is_capability_group(name)) {
        reply_error2(reply, "reserved_name", name);
        return -1;
    }
    if (dsup_ring_key_hash(s->ring, name.buf, name.len, &h) < 0) {
        reply_error2(reply, "bad_child_name", name);
        return -1;
    }
    return 0;
}

/* When a live copy of `name` exists anywhere: encode {error,
 * {already_started, Pid}} and return 1. */
int sup_reply_if_running(dsup_sup *s, dsup_term name, ei_x_buff *reply)
{
    const dsup_pid *live;
    if (dsup_pg_members(s->scope, name, &live) == 0)
        return 0;
    ei_x_encode_tuple_header(reply, 2);
    dsup_x_encode_atom(reply, "error");
    ei_x_encode_tuple_header(reply, 2);
    dsup_x_encode_atom(reply, "already_started");
    dsup_x_encode_pid(reply, &live[0]);
    return 1;
}

/* Start a child here. Takes ownership of spec. Encodes the reply:
 * {ok, Pid, Name} | {error, {already_started, Pid}} | {error, Reason}. */
int sup_start_local(dsup_sup *s, dsup_child_spec *spec, ei_x_buff *reply)
{
    return sup_start_local_handoff(s, spec, NULL, reply);
}

/* A new child joins its name's pg group, which is how whereis finds it. A
 * child that could not join would run invisible to every node, so it is
 * killed instead (its EXIT finds no entry and is ignored) and the caller
 * reports the failure. Returns 0 or the dsup_err of the join. */
static int join_or_kill(dsup_sup *s, sup_child *c)
{
    assert(c->local);
    int rc = dsup_pg_join(s->scope, sup_child_name(c), &c->pid, 1);
    if (rc < 0) {
        LOG_ERROR("%s: a new child could not join its pg group (%s): stopping it", s->name, dsup_strerror(rc));
        dsup_exit(s->proc, &c->pid, dsup_reason_atom(s->node, "kill"));
    }
    /* The child table and pg agree: a local child is a member of its name. */
    assert(rc < 0 || dsup_pg_local_members(s->scope, sup_child_name(c), NULL, 0) >= 1);
    return rc;
}

static void encode_join_failed(ei_x_buff *x, int rc)
{
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "pg_join_failed");
    dsup_x_encode_atom(x, dsup_err_name(rc));
}

/* The same, as the arriving end of a move: init sees `handoff` (NULL: none). */
int sup_start_local_handoff(dsup_sup *s, dsup_child_spec *spec, const dsup_term *handoff, ei_x_buff *reply)
{
    if (spec->name.len == 0 && !(spec = sup_spec_named_by_ref(s, spec)))
        return -1;
    if (sup_check_child_name(s, spec->name, reply) < 0 || sup_reply_if_running(s, spec->name, reply)) {
        free(spec);
        return -1;
    }
    return sup_start_local_checked(s, spec, handoff, reply);
}

int sup_start_local_checked(dsup_sup *s, dsup_child_spec *spec, const dsup_term *handoff, ei_x_buff *reply)
{
    if (spec->beam) { /* a BEAM module's child: Elixir hosts run those */
        ei_x_buff *t = dsup_term_scratch(s->node);
        dsup_x_encode_atom(t, spec->type);
        reply_error2(reply, "unknown_worker", dsup_term_of_x(t));
        dsup_term_scratch_release(t);
        free(spec);
        return -1;
    }
    dsup_proc *child;
    ei_x_buff *why = dsup_term_scratch(s->node);
    int rc = dsup_spawn_child_handoff(spec->type, &spec->args, handoff, s->proc, &child, why);
    if (rc == DSUP_EUNKNOWN_TYPE) {
        ei_x_buff *t = dsup_term_scratch(s->node); /* not dsup_reason_atom: it keeps what it encodes */
        dsup_x_encode_atom(t, spec->type);
        reply_error2(reply, "unknown_worker", dsup_term_of_x(t));
        dsup_term_scratch_release(t);
    } else if (rc < 0) {
        ei_x_encode_tuple_header(reply, 2);
        dsup_x_encode_atom(reply, "error");
        ei_x_append_buf(reply, why->buff, why->index);
    }
    dsup_term_scratch_release(why);
    if (rc < 0) {
        free(spec);
        return -1;
    }
    dsup_pid pid = dsup_proc_pid(child);
    sup_child *c = sup_cache_put(s, spec->name, &pid, spec, 1); /* takes spec */
    if (!c) { /* the table refused (cannot happen short of a full dict): no orphan either */
        dsup_exit(s->proc, &pid, dsup_reason_atom(s->node, "kill"));
        rc = DSUP_ENOMEM;
    } else if ((rc = join_or_kill(s, c)) < 0) {
        sup_cache_drop(s, c);
    }
    if (rc < 0) {
        ei_x_encode_tuple_header(reply, 2);
        dsup_x_encode_atom(reply, "error");
        encode_join_failed(reply, rc);
        return -1;
    }
    sup_send_child_up(s, c, NULL);
    sup_emit_process_start(s, sup_child_name(c), &pid);
    ei_x_encode_tuple_header(reply, 3);
    dsup_x_encode_atom(reply, "ok");
    dsup_x_encode_pid(reply, &pid);
    dsup_x_encode_term(reply, sup_child_name(c));
    return 0;
}

static void on_kill_timer(uv_timer_t *t)
{
    dsup_pid *pid = t->data;
    dsup_node *node = dsup_node_of_name(pid->node); /* a local child: our own name */
    dsup_proc *p = dsup_proc_lookup(node, pid);
    if (p)
        dsup_proc_exit(p, dsup_reason_atom(node, "killed"));
}

/* The stops table is keyed by the record's address: records stay where
 * they are (dict entries are never moved) until sup_cache_drop. */
sup_child_stop *sup_child_stopping(dsup_sup *s, sup_child *c)
{
    dsup_dict_ent *e = dsup_dict_upsert_inline(&s->stops, &c, sizeof c, sizeof(sup_child_stop), NULL);
    assert(e); /* the dict allocates with dsup_xmalloc */
    c->has_stop = 1;
    return dsup_dict_val(e);
}

sup_child_stop *sup_child_stop_of(dsup_sup *s, const sup_child *c)
{
    if (!c->has_stop)
        return NULL;
    dsup_dict_ent *e = dsup_dict_find(&s->stops, &c, sizeof c);
    return e ? dsup_dict_val(e) : NULL;
}

void sup_child_stop_free(dsup_sup *s, sup_child *c)
{
    sup_child_stop *st = sup_child_stop_of(s, c);
    if (st) {
        if (st->kill_timer)
            uv_close((uv_handle_t *)st->kill_timer, (uv_close_cb)free);
        dsup_from_discard(st->from);
        dsup_dict_delete(&s->stops, &c, sizeof c);
        if (!s->stops.count) /* its slots go too: a mass stop (shutdown, a fence) leaves nothing */
            dsup_dict_free(&s->stops, NULL);
    }
    c->has_stop = 0;
}

/* Stop a local child the way its spec says (brutal_kill, a timeout then
 * kill, or infinity); the EXIT that follows finishes the job. */
void sup_stop_child(dsup_sup *s, sup_child *c, dsup_term reason)
{
    if (c->terminating)
        return;
    c->terminating = 1;
    if (c->shared->shutdown == DSUP_SHUTDOWN_BRUTAL) {
        dsup_exit(s->proc, &c->pid, dsup_reason_atom(s->node, "kill"));
        return;
    }
    dsup_exit(s->proc, &c->pid, reason);
    if (c->shared->shutdown > 0) {
        sup_child_stop *st = sup_child_stopping(s, c);
        if (!st->kill_timer) {
            st->kill_timer = dsup_xmalloc(sizeof *st->kill_timer);
            uv_timer_init(s->node->loop, st->kill_timer);
        }
        st->kill_timer->data = &c->pid;
        uv_timer_start(st->kill_timer, on_kill_timer, (uint64_t)c->shared->shutdown, 0);
    }
}

static int restart_allowed(dsup_sup *s)
{
    uint64_t now = dsup_node_now(s->node);
    uint64_t window = (uint64_t)s->max_seconds * 1000;
    int recent = 0;
    for (int i = 0; i < s->nrestarts; i++)
        if (now - s->restarts[i] <= window)
            s->restarts[recent++] = s->restarts[i];
    s->nrestarts = recent;
    if (recent >= s->max_restarts)
        return 0;
    s->restarts[s->nrestarts++] = now;
    return 1;
}

static int is_shutdown_reason(dsup_term r)
{
    dsup_term el[2];
    int ar;
    return dsup_term_is_atom(r, "normal") || dsup_term_is_atom(r, "shutdown") ||
           (dsup_term_tagged(r, "shutdown", &ar, el, 2) && ar == 2);
}

static void sup_shutdown_instance(dsup_sup *s, const char *why);

static void send_retry(dsup_sup *s, const dsup_child_spec *spec)
{
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 3);
    dsup_x_encode_atom(x, "$dsup_retry");
    dsup_x_encode_term(x, spec->name); /* a parsed spec map has no name */
    dsup_spec_encode_map(x, spec, 1);
    dsup_send(s->proc, dsup_self(s->proc), x);
    dsup_term_scratch_release(x);
}

/* {'$dsup_retry', Name, Spec}: a restart whose init failed, tried again
 * from the loop; each try counts toward the intensity, as in OTP. Consumes
 * spec. */
static void retry_start(dsup_sup *s, dsup_child_spec *spec)
{
    if (!restart_allowed(s)) {
        sup_start_failed_report(s, spec, dsup_reason_atom(s->node, "reached_max_restart_intensity"), "give_up");
        LOG_ERROR("%s: reached maximum restart intensity (%d in %d s); shutting down", s->name,
                  s->max_restarts, s->max_seconds);
        sup_heal_keep(s, spec); /* the restarted instance tries it again */
        sup_shutdown_instance(s, "reached_max_restart_intensity");
        return;
    }
    dsup_child_spec *again = dsup_spec_with_name(spec, spec->name);
    ei_x_buff *x = dsup_term_scratch(s->node);
    dsup_term el[2]; /* the reply: {error, Reason} */
    int ar;
    if (sup_start_local(s, spec, x) < 0 && again &&
        dsup_term_tuple((dsup_term){ x->buff, (size_t)x->index }, el, 2) == 2 &&
        !dsup_term_tagged(el[1], "already_started", &ar, NULL, 0)) {
        sup_start_failed_report(s, again, el[1], "retry");
        send_retry(s, again);
    }
    dsup_term_scratch_release(x);
    free(again);
}

/* A local child exited. */
static void child_exited(dsup_sup *s, sup_child *c, dsup_term reason)
{
    assert(c->local && sup_child_by_pid(s, &c->pid) == c);
    dsup_pid old = c->pid;
    dsup_metrics_child_exit(s->node, s->name, c->shared->type, sup_child_name(c), &old, reason, c->terminating || s->stopping);
    if (c->terminating || s->stopping) {
        sup_crash_report(s, c, reason, SUP_ACT_STOPPED);
        sup_child_stop *st = sup_child_stop_of(s, c);
        if (st && st->from) {
            ei_x_buff *x = dsup_term_scratch(s->node);
            dsup_x_encode_atom(x, "ok");
            dsup_reply(st->from, x);
            st->from = NULL;
            dsup_term_scratch_release(x);
        }
        if (!s->stopping)
            sup_broadcast_child_down(s, c, reason);
        if (!s->stopping && sup_cache_repoint(s, c, NULL))
            return; /* a duplicate's survivor lives on elsewhere */
        sup_emit_process_stop(s, sup_child_name(c), &old);
        sup_cache_drop(s, c);
        return;
    }
    int restart = c->shared->restart == DSUP_RESTART_PERMANENT ||
                  (c->shared->restart == DSUP_RESTART_TRANSIENT && !is_shutdown_reason(reason));
    int allowed = restart && restart_allowed(s);
    sup_crash_report(s, c, reason, !restart ? SUP_ACT_NONE : allowed ? SUP_ACT_RESTART : SUP_ACT_GIVE_UP);
    if (!restart) {
        sup_broadcast_child_down(s, c, reason);
        sup_emit_process_stop(s, sup_child_name(c), &old);
        sup_cache_drop(s, c);
        return;
    }
    if (!allowed) {
        LOG_ERROR("%s: reached maximum restart intensity (%d in %d s); shutting down", s->name,
                  s->max_restarts, s->max_seconds);
        /* The entry stays (no child_down): the ring owners' failover, or the
         * restarted instance (sup_heal.c), starts the child again. */
        sup_shutdown_instance(s, "reached_max_restart_intensity");
        return;
    }
    dsup_proc *child;
    ei_x_buff *why = dsup_term_scratch(s->node);
    if (dsup_spawn_child(c->shared->type, &c->shared->args, s->proc, &child, why) < 0) {
        /* init refused: count it as a restart and try again from the loop. */
        dsup_child_spec cs = sup_child_spec(c);
        sup_start_failed_report(s, &cs, (dsup_term){ why->buff, (size_t)why->index }, "retry");
        dsup_term_scratch_release(why);
        dsup_child_spec *spec = dsup_spec_with_name(c->shared, sup_child_name(c));
        sup_emit_process_stop(s, sup_child_name(c), &old);
        sup_cache_drop(s, c);
        if (spec)
            send_retry(s, spec);
        free(spec);
        return;
    }
    dsup_term_scratch_release(why);
    dsup_pid pid = dsup_proc_pid(child);
    dsup_metrics_sup(s->node, s->name, c->shared->type)->restarts++;
    sup_emit_process_stop(s, sup_child_name(c), &old);
    sup_cache_put(s, sup_child_name(c), &pid, NULL, 1);
    int rc = join_or_kill(s, c);
    if (rc < 0) {
        /* As a refused init: reported, the entry dropped, retried later. */
        ei_x_buff *x = dsup_term_scratch(s->node);
        encode_join_failed(x, rc);
        dsup_child_spec cs = sup_child_spec(c);
        sup_start_failed_report(s, &cs, dsup_term_of_x(x), "retry");
        dsup_term_scratch_release(x);
        dsup_child_spec *spec = dsup_spec_with_name(c->shared, sup_child_name(c));
        sup_cache_drop(s, c);
        if (spec)
            send_retry(s, spec);
        free(spec);
        return;
    }
    sup_send_child_up(s, c, NULL);
    sup_emit_process_start(s, sup_child_name(c), &pid);
}

/* ---- failover ------------------------------------------------------------------ */

typedef struct orphan_ctx {
    dsup_sup *s;
    sup_child **list;
    size_t n, cap;
    const char *memo_node[16];    /* nodes already looked up in '$dsup_hosts' */
    const dsup_pid *memo_host[16];
    int nmemo;
} orphan_ctx;

/* Whether c's copy ran on a host that is gone: its node has no instance in
 * '$dsup_hosts', or one of another incarnation (restarted under the name). */
static int on_lost_host(orphan_ctx *o, const sup_child *c)
{
    const char *node = c->pid.node;
    if (node == o->s->node->name)
        return 0;
    const dsup_pid *host = NULL;
    int k = 0;
    while (k < o->nmemo && o->memo_node[k] != node)
        k++;
    if (k < o->nmemo) {
        host = o->memo_host[k];
    } else {
        host = sup_host_on(o->s, node);
        if (o->nmemo < 16) {
            o->memo_node[o->nmemo] = node;
            o->memo_host[o->nmemo++] = host;
        }
    }
    return !host || host->creation != c->pid.creation;
}

static void collect_orphan(sup_child *c, void *arg)
{
    orphan_ctx *o = arg;
    if (!on_lost_host(o, c))
        return;
    if (o->n == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 64;
        sup_child **nl = dsup_xrealloc(o->list, nc * sizeof *nl);
        o->list = nl;
        o->cap = nc;
    }
    o->list[o->n++] = c;
}

/* The children of every host that is gone (not only `lost`: when several
 * hosts die at once, an orphan's owner on our ring may be one that is
 * dying too; such an orphan stays in the table, pointing at its dead copy,
 * until its owner's child_up replaces it, or until the failover of that
 * owner finds it again). */
void sup_failover(dsup_sup *s, const char *lost)
{
    /* a host that came back meanwhile (same incarnation) has no orphans;
     * one restarted under its name has the old incarnation's */
    orphan_ctx o = { .s = s };
    sup_foreach_child(s, collect_orphan, &o);
    size_t restarted = 0, pending = 0, nlost = 0;
    for (size_t i = 0; i < o.n; i++) {
        sup_child *c = o.list[i];
        if (sup_cache_repoint(s, c, lost))
            continue; /* already running elsewhere: keep knowing it */
        int keep = s->cache_children && c->shared->restart != DSUP_RESTART_TEMPORARY &&
                   strcmp(c->shared->type, "undefined") != 0;
        /* the owner among the hosts able to run it (sup_place.c) */
        dsup_child_spec cs = sup_child_spec(c);
        const char *owner = keep ? sup_place_owner(s, &cs, 0) : NULL;
        if (keep && owner && owner != s->node->name && !s->fenced)
            continue; /* its owner restarts it (the entry stays until its child_up) */
        if (keep && !sup_spec_full(c->shared)) {
            /* A stub: we are not one of its replicas. Ours to restart, yet
             * its host and all its replicas are gone (more than `replicas`
             * hosts lost at once): nobody can. */
            if (owner == s->node->name && !s->fenced) {
                char nm[256];
                dsup_term_text(sup_child_name(c), nm, sizeof nm);
                LOG_WARN("%s: child %s (type %s) of lost host %s cannot be restored: its host and its %d "
                         "replicas are gone", s->name, nm, c->shared->type, c->pid.node, s->replicas);
                nlost++;
            }
            keep = 0; /* pending or fenced: the replicas hold it */
        }
        dsup_child_spec *spec = NULL;
        if (keep && !owner) {
            sup_pending_child_add(s, &cs);
            pending++;
        } else if (keep) {
            /* ours, or fenced (quorum mode): held until a quorum is back */
            spec = dsup_spec_with_name(c->shared, sup_child_name(c));
        }
        dsup_pid old = c->pid;
        dsup_term ckpt = spec ? sup_checkpoint_take(s, spec->name, &old) : (dsup_term){ NULL, 0 };
        sup_emit_process_stop(s, sup_child_name(c), &old);
        sup_cache_drop(s, c);
        if (spec && s->fenced) {
            sup_quorum_hold(s, spec);
        } else if (spec && sup_claim_busy(s, spec->name)) {
            sup_claim_restart(s, spec); /* a start elsewhere holds the name: after it, if it fails */
        } else if (spec) {
            ei_x_buff *x = dsup_term_scratch(s->node);
            if (sup_start_local_handoff(s, spec, ckpt.buf ? &ckpt : NULL, x) == 0) /* its last checkpoint */
                restarted++;
            dsup_term_scratch_release(x);
        }
        dsup_term_free(&ckpt);
    }
    free(o.list);
    if (o.n)
        LOG_INFO("%s: %s lost; %zu children of lost hosts, %zu restarted here, %zu pending, %zu not "
                 "restorable", s->name, lost, o.n, restarted, pending, nlost);
}

/* ---- the instance process ------------------------------------------------------- */

/* {Ref, Reply}: the answer to one of our own calls whose tag is a reference
 * (forwarded calls, moves): none of the atom tags below can match it, so it
 * skips them (one per forwarded start_child). */
static int is_call_answer(dsup_term msg)
{
    const unsigned char *p = (const unsigned char *)msg.buf;
    return msg.len > 3 && p[0] == 104 && p[1] == 2 && (p[2] == 90 || p[2] == 114 || p[2] == 101);
}

static void sup_info(dsup_proc *self, void *state, dsup_term msg)
{
    dsup_sup *s = state;
    dsup_term el[6];
    int ar;
    if (is_call_answer(msg)) {
        if (!sup_pending_reply(s, msg))
            sup_move_reply(s, msg);
        return;
    }
    if (dsup_term_tagged(msg, "EXIT", &ar, el, 3) && ar == 3) {
        dsup_pid pid;
        int i = 0;
        if (dsup_decode_pid(s->node, el[1].buf, &i, &pid) < 0)
            return;
        sup_child *c = sup_child_by_pid(s, &pid);
        if (c && c->local)
            child_exited(s, c, el[2]);
        return;
    }
    if (dsup_term_tagged(msg, "$dsup", &ar, el, 2) && ar == 2) {
        if (!sup_claim_msg(s, el[1]) && !sup_handoff_msg(s, el[1]) && !sup_checkpoint_msg(s, el[1]))
            sup_on_child_msg(s, el[1]);
        return;
    }
    if (dsup_term_tagged(msg, "DOWN", &ar, el, 5) && ar == 5) {
        dsup_ref ref;
        int i = 0;
        if (dsup_decode_ref(s->node, el[1].buf, &i, &ref) == 0 && !sup_pending_down(s, &ref))
            sup_move_down(s, &ref);
        return;
    }
    if (dsup_term_tagged(msg, "$dsup_failover", &ar, el, 2) && ar == 2) {
        const char *node;
        size_t len;
        int i = 0;
        /* A node whose name nobody holds has no children to fail over and
         * holds no reservation. */
        if (dsup_term_atom_text(el[1].buf, &i, &node, &len) == 0 && (node = dsup_intern_find(s->node->names, node, len))) {
            sup_claim_node_lost(s, node); /* even when it came back: a new instance */
            sup_failover(s, node);
        }
        return;
    }
    if (dsup_term_tagged(msg, "$dsup_left", &ar, el, 3) && ar == 3) {
        child_left(s, el[1], el[2]);
        return;
    }
    if (dsup_term_is_atom(msg, "$dsup_quorum_restore") ||
        (dsup_term_tagged(msg, "$dsup_quorum_restore", &ar, el, 1) && ar == 1)) {
        sup_quorum_restore(s);
        return;
    }
    if (dsup_term_tagged(msg, "$dsup_retry", &ar, el, 3) && ar == 3) {
        dsup_child_spec *spec, *named = NULL;
        if (dsup_spec_parse(s->node, el[2], &spec) == 0) {
            named = dsup_spec_with_name(spec, el[1]);
            free(spec);
        }
        if (named)
            retry_start(s, named);
        return;
    }
    if (sup_batch_reply(s, msg) || sup_pending_reply(s, msg) || sup_move_reply(s, msg))
        return;
}

typedef struct stop_ctx {
    dsup_sup *s;
    sup_child **list;
    size_t n;
} stop_ctx;

static void collect_local(sup_child *ch, void *arg)
{
    stop_ctx *c = arg;
    if (ch->local)
        c->list[c->n++] = ch;
}

typedef struct kill_ctx {
    dsup_proc *self;
    dsup_term reason;
} kill_ctx;

static void signal_local_child(sup_child *c, void *arg)
{
    kill_ctx *k = arg;
    if (c->local)
        dsup_exit_linked(k->self, &c->pid, k->reason);
}

/* Our children are linked to us without link records: when we end for any
 * reason (even `kill` from outside), they get our exit signal as from a link. */
static void sup_terminate(dsup_proc *self, void *state, dsup_term reason)
{
    dsup_sup *s = state;
    if (!s->stopping && is_shutdown_reason(reason)) {
        /* gen_server:stop of the instance: hand the children that carry
         * their state over now (no barrier: we are ending), the others
         * come back by the survivors' failover as before. */
        s->stopping = 1;
        stop_ctx c = { s, dsup_xmalloc((sup_child_count(s) + 1) * sizeof(sup_child *)), 0 };
        if (c.list) {
            sup_foreach_child(s, collect_local, &c);
            sup_handoff_on_stop(s, c.list, c.n, 0);
        }
        free(c.list);
    }
    kill_ctx k = { self, reason };
    sup_foreach_child(s, signal_local_child, &k);
    sup_claim_shutdown(s);
    sup_rebalance_free(s);
    sup_move_free(s);
    sup_checkpoint_free(s);
    sup_replica_free(s);
    sup_pending_end(s);
    s->proc = NULL; /* the struct lives on in node->sup for pending lookups */
    sup_heal_ended(s, reason); /* the node restarts the instance */
}

static int sup_state(dsup_proc *self, void *state, ei_x_buff *out)
{
    dsup_sup *s = state;
    ei_x_encode_tuple_header(out, 3);
    dsup_x_encode_atom(out, "distributed_supervisor");
    dsup_x_encode_atom(out, s->name);
    ei_x_encode_ulong(out, sup_child_count(s));
    return 0;
}

static int sup_init(dsup_proc *self, dsup_term args, void **state)
{
    dsup_trap_exit(self, 1);
    return 0;
}

static const dsup_worker_type sup_type = {
    .name = "distributed_supervisor",
    .init = sup_init,
    .handle_call = sup_handle_call,
    .handle_info = sup_info,
    .terminate = sup_terminate,
    .encode_state = sup_state,
};

/* ---- starting and stopping -------------------------------------------------------- */

dsup_sup *dsup_sup_find(dsup_node *node, const char *name)
{
    if (!node || !name || !node->sup)
        return NULL;
    const char *n = dsup_intern_find(node->names, name, strlen(name)); /* no instance has a name nobody holds */
    for (dsup_sup *s = node->sup->sups; s; s = s->next)
        if (s->name == n && s->proc)
            return s;
    return NULL;
}

static void free_sup(dsup_sup *s)
{
    sup_pending_child_free_all(s);
    sup_quorum_free(s);
    sup_batch_free(s);
    while (s->nterminating)
        forget_terminating(s, s->terminating[0]);
    dsup_ring_free(s->ring);
    sup_place_forget(s, 1);
    sup_pending_free_spare(s);
    sup_opts_release(s);
    dsup_intern_release(s->name);
    free(s->restarts);
    free(s);
}

int dsup_sup_start(dsup_node *node, const char *name, const dsup_term *opts, dsup_sup **out, ei_x_buff *err)
{
    if (!node || !name || !*name) {
        if (err) {
            err->index = 0;
            dsup_x_encode_atom(err, "badarg");
        }
        return DSUP_EINVAL;
    }
    if (!node->creation || node->stopping || !node->sup) {
        if (err) {
            err->index = 0;
            dsup_x_encode_atom(err, "cannot_start");
        }
        return DSUP_ENOTUP;
    }
    dsup_register_internal_type(&sup_type); /* the same struct again is a no-op */
    /* Counted and held by the instance: a start that fails gives it back. */
    const char *n = dsup_intern_peer(node->names, name, strlen(name));
    if (!n) {
        if (err) {
            err->index = 0;
            dsup_x_encode_atom(err, "system_limit");
        }
        return DSUP_EINVAL;
    }
    dsup_proc *existing = dsup_proc_whereis(node, n);
    if (existing) {
        if (err) {
            err->index = 0;
            ei_x_encode_tuple_header(err, 2);
            dsup_x_encode_atom(err, "already_started");
            dsup_pid pid = dsup_proc_pid(existing);
            dsup_x_encode_pid(err, &pid);
        }
        return DSUP_EEXIST;
    }
    dsup_sup *s = dsup_xcalloc(1, sizeof *s);
    s->node = node;
    s->name = n;
    dsup_intern_hold(n);
    s->cache_children = 1;
    s->max_restarts = 3;
    s->max_seconds = 5;
    s->rebalance_moves = SUP_REBALANCE_MOVES_DEFAULT;
    s->replicas = SUP_REPLICAS_DEFAULT;
    static const char nil[] = { 106 };
    if (sup_parse_opts(s, opts ? *opts : (dsup_term){ nil, 1 }, err) < 0) {
        free_sup(s);
        return DSUP_EINVAL;
    }
    s->restarts = dsup_xcalloc((size_t)s->max_restarts + 1, sizeof *s->restarts);
    char scope[300];
    /* Module.concat(Name, Scope): 'Elixir.MyApp.DistSup.Scope', and for a
     * plain atom name 'Elixir.name.Scope' — the atom the shim uses too. */
    snprintf(scope, sizeof scope, "%s%s.Scope", strncmp(name, "Elixir.", 7) == 0 ? "" : "Elixir.", name);
    s->scope_name = dsup_intern_str(s->node->names, scope);
    s->ring = dsup_ring_new();
    dsup_ring_set_atom_encoding(s->ring, node->sup->ring_enc);
    s->scope = dsup_pg_scope(node, scope);
    /* its records are attached to the scope's groups (sup_cache.c): two live
     * instances cannot share a scope (`Foo` and `Elixir.Foo` both name
     * 'Elixir.Foo.Scope') */
    int claim = s->scope ? sup_cache_claim(s) : DSUP_ENOTUP;
    if (claim == DSUP_EEXIST) {
        LOG_WARN("%s: not started: its pg scope %s belongs to another running instance", name, scope);
        if (err) {
            err->index = 0;
            ei_x_encode_tuple_header(err, 2);
            dsup_x_encode_atom(err, "scope_in_use");
            dsup_x_encode_atom(err, scope);
        }
        free_sup(s);
        return DSUP_EEXIST;
    }
    if (claim < 0 || dsup_spawn_proc(node, "distributed_supervisor", NULL, NULL, &s->proc, NULL) < 0) {
        if (err) {
            err->index = 0;
            dsup_x_encode_atom(err, "cannot_start");
        }
        free_sup(s);
        return DSUP_ENOTUP; /* no scope: the node is not up, or is stopping */
    }
    s->proc->state = s;
    int rc = dsup_proc_register(s->proc, n);
    assert(rc == 0); /* the name was free (whereis above) and the loop is single-threaded */
    s->next = node->sup->sups;
    node->sup->sups = s;
    /* Hosts already known in the scope form the ring; then we join. */
    const dsup_pid *hosts;
    size_t nh = dsup_pg_members(s->scope, dsup_reason_atom(s->node, SUP_HOSTS_GROUP), &hosts);
    for (size_t i = 0; i < nh; i++)
        if (sup_node_allowed(s, hosts[i].node))
            dsup_ring_add_node(s->ring, hosts[i].node, 0);
    s->place_gen = 1; /* the subscription keeps it current */
    dsup_pg_subscribe(s->scope, on_scope_event, s);
    sup_place_advertise(s, 1); /* capabilities before the host: never seen without them */
    /* Cannot fail (a live local process, a valid group), and must not:
     * without it no node places children here. */
    rc = dsup_pg_join(s->scope, dsup_reason_atom(s->node, SUP_HOSTS_GROUP), dsup_self(s->proc), 1);
    assert(rc == 0);
    (void)rc;
    sup_quorum_check(s); /* quorum mode: fenced until enough hosts are seen */
    LOG_INFO("distributed supervisor %s started (scope %s)", n, scope);
    sup_heal_started(s, opts);
    if (out)
        *out = s;
    return 0;
}

/* {node_terminate, Node, Reason, [{status, Pid, {module, Type}, [State]}]} */
static void broadcast_node_terminate(dsup_sup *s, const char *reason, sup_child **list, size_t n)
{
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "$dsup");
    int ev_start = x->index;
    ei_x_encode_tuple_header(x, 4);
    dsup_x_encode_atom(x, "node_terminate");
    dsup_x_encode_atom(x, s->node->name);
    dsup_x_encode_atom(x, reason);
    if (n)
        ei_x_encode_list_header(x, (long)n);
    for (size_t i = 0; i < n; i++) {
        dsup_proc *p = dsup_proc_lookup(s->node, &list[i]->pid);
        ei_x_encode_tuple_header(x, 4);
        dsup_x_encode_atom(x, "status");
        dsup_x_encode_pid(x, &list[i]->pid);
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_atom(x, "module");
        dsup_x_encode_atom(x, list[i]->shared->type);
        ei_x_encode_list_header(x, 1);
        if (p && p->type && p->type->encode_state)
            p->type->encode_state(p, p->state, x);
        else
            dsup_x_encode_atom(x, "undefined");
        ei_x_encode_empty_list(x);
    }
    ei_x_encode_empty_list(x);
    sup_broadcast(s, x);
    ei_x_buff *ev = dsup_term_scratch(s->node);
    ei_x_append_buf(ev, x->buff + ev_start, x->index - ev_start);
    sup_emit(s, ev);
    dsup_term_scratch_release(ev);
    dsup_term_scratch_release(x);
}

/* Stop this instance: tell the others, stop the children and hand those
 * that can carry their state to their new owners (sup_handoff.c), leave the
 * ring (so the others' failover takes the other children), then stop. */
static void sup_shutdown_instance(dsup_sup *s, const char *why)
{
    if (s->stopping || !s->proc)
        return;
    s->stopping = 1;
    s->stop_why = why;
    stop_ctx c = { s, dsup_xmalloc((sup_child_count(s) + 1) * sizeof(sup_child *)), 0 };
    if (c.list)
        sup_foreach_child(s, collect_local, &c);
    broadcast_node_terminate(s, why, c.list, c.n);
    /* Only a graceful stop hands over: after reached_max_restart_intensity
     * the restarted instance brings the children back (sup_heal.c). */
    int pending = c.list && strcmp(why, "shutdown") == 0 && sup_handoff_on_stop(s, c.list, c.n, 1);
    free(c.list);
    if (!pending)
        sup_shutdown_finish(s);
}

static void on_shutdown_continue(uv_timer_t *t)
{
    dsup_node *node = t->data;
    struct dsup_sup_service *S = node->sup;
    void (*then)(dsup_node *) = S->shutdown_then;
    S->shutdown_then = NULL;
    uv_close((uv_handle_t *)t, NULL);
    if (then)
        then(node);
}

void sup_shutdown_finish(dsup_sup *s)
{
    if (!s->proc || s->finished)
        return;
    s->finished = 1;
    dsup_pg_leave(s->scope, dsup_reason_atom(s->node, SUP_HOSTS_GROUP), dsup_self(s->proc), 1);
    stop_ctx c = { s, dsup_xmalloc((sup_child_count(s) + 1) * sizeof(sup_child *)), 0 };
    if (c.list)
        sup_foreach_child(s, collect_local, &c);
    for (size_t i = 0; i < c.n; i++) {
        dsup_proc *p = dsup_proc_lookup(s->node, &c.list[i]->pid);
        if (p)
            dsup_proc_exit(p, dsup_reason_atom(s->node, "shutdown"));
    }
    free(c.list);
    dsup_pg_unsubscribe(s->scope, on_scope_event, s);
    sup_place_forget(s, 1); /* no more news of the hosts */
    /* dsup_stop ends the process now, or after the current callback when
     * we are inside one (restart intensity reached while handling an EXIT). */
    dsup_stop_atom(s->proc, s->stop_why);
    struct dsup_sup_service *S = s->node->sup;
    if (S->shutdown_then && --S->shutdown_waiting == 0) /* the node goes on from the loop */
        uv_timer_start(&S->shutdown_timer, on_shutdown_continue, 0, 0);
}

int dsup_sup_shutdown_all(dsup_node *node, void (*then)(dsup_node *node))
{
    struct dsup_sup_service *S = node->sup;
    int waiting = 0;
    for (dsup_sup *s = S->sups; s; s = s->next) {
        sup_shutdown_instance(s, "shutdown");
        waiting += s->proc && !s->finished;
    }
    if (waiting) {
        S->shutdown_then = then;
        S->shutdown_waiting = waiting;
        uv_timer_init(node->loop, &S->shutdown_timer);
        S->shutdown_timer.data = node;
        S->shutdown_timer_on = 1;
        /* The barriers give up after 2 s; this is the backstop. */
        uv_timer_start(&S->shutdown_timer, on_shutdown_continue, 4000, 0);
    }
    return waiting;
}

int dsup_ring_atoms_explicit;

void dsup_sup_peer_release(dsup_node *node, int otp)
{
    struct dsup_sup_service *S = node->sup;
    int enc = otp >= 26 ? DSUP_RING_ATOM_UTF8 : DSUP_RING_ATOM_EXT;
    if (S->ring_explicit)
        return;
    if (S->ring_seen && enc != S->ring_enc) {
        LOG_WARN("peers run OTP releases that hash atom child names differently (now OTP %d); "
                 "keeping the first one seen (use --ring-atoms to choose)", otp);
        return;
    }
    S->ring_seen = 1;
    if (enc == S->ring_enc)
        return;
    LOG_INFO("peers run OTP %d: atom child names hash as its term_to_binary writes them", otp);
    S->ring_enc = enc;
    for (dsup_sup *s = S->sups; s; s = s->next)
        dsup_ring_set_atom_encoding(s->ring, enc);
}

void dsup_sup_conn_event(dsup_node *node, const char *peer, int up)
{
    for (dsup_sup *s = dsup_sups_of(node); s; s = s->next)
        if (s->proc && s->monitor_nodes == 2)
            emit_node(s, up ? "node_up" : "node_down", peer);
}

/* Every instance's struct, at node close (their processes ended at shutdown). */
void sup_free_all(dsup_node *node)
{
    for (dsup_sup *s = dsup_sups_of(node), *next; s; s = next) {
        next = s->next;
        /* The child table (entries of other nodes' children stay after the
         * instance ended: pending lookups read them), before the scope's
         * groups (pg's close comes after ours). */
        sup_cache_free(s);
        dsup_dict_free(&s->stops, NULL); /* emptied by sup_cache_free */
        sup_spec_shared_free(s); /* after its children */
        dsup_ivec_free(&s->by_pid);
        dsup_dict_free(&s->claims, NULL);
        for (sup_sub *u = s->subs, *un; u; u = un) {
            un = u->next;
            free(u);
        }
        free_sup(s);
    }
}

int dsup_sup_subscribe(dsup_sup *s, dsup_sup_event_fn fn, void *arg)
{
    if (!s || !fn)
        return DSUP_EINVAL;
    sup_sub *u = dsup_xcalloc(1, sizeof *u);
    u->fn = fn;
    u->arg = arg;
    u->next = s->subs;
    s->subs = u;
    return 0;
}
