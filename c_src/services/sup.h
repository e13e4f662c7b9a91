/* sup.h — the distributed supervisor instance (sup.c, sup_ops.c). */
#ifndef DSUP_SUP_H
#define DSUP_SUP_H

#include <uv.h>

#include "dict.h"
#include "ivec.h"
#include "node.h"
#include "ratelimit.h"
#include "dsup.h"
#include "pg.h"
#include "proc.h"
#include "ring.h"
#include "sup_spec.h"

/* What a child's termination needs while it runs, off the record. */
typedef struct sup_child_stop {
    dsup_saved_from *from;        /* who asked (terminate_child), answered on EXIT */
    uv_timer_t *kill_timer;       /* shutdown timeout, then kill */
} sup_child_stop;

/* One per child in the cluster, attached to the pg group of its name in the
 * instance's scope (dsup_pg_attach): 40 bytes after the group's 32, in the
 * group's own dict entry, 16 + the padded name + 32 + 40 = a 112-byte malloc
 * chunk for a name of up to 16 bytes (README, Memory per child). Its name is
 * the group's key (sup_child_name); its spec without the name is shared with every child of
 * the same type, args, restart and shutdown (sup_shared.c): no allocation of
 * its own. What a termination needs lives in the instance's side table
 * (sup_child_stopping) while it runs. */
typedef struct sup_child {
    const dsup_child_spec *shared; /* name-less, shared (sup_spec_share): full, or a
                                      stub / type undefined (sup_spec_full) */
    dsup_pid pid;
    uint32_t replica_sig;         /* local: the replica set its spec was sent to (sup_replica.c) */
    unsigned local : 1;
    unsigned terminating : 1;     /* terminate_child in progress */
    unsigned has_stop : 1;        /* an entry in the instance's stops table */
} sup_child;

/* Every child on every node has one: a byte more moves it to the next
 * 16-byte chunk (README, Memory per child). */
_Static_assert(sizeof(sup_child) <= 40, "sup_child must stay at 40 bytes (README, Memory per child)");

/* The child's name: the key of the group it is attached to. */
static inline dsup_term sup_child_name(const sup_child *c) { return dsup_pg_attached_key(c); }
/* The child's spec with its name, by value (views: good while c is). */
static inline dsup_child_spec sup_child_spec(const sup_child *c)
{
    dsup_child_spec v = *c->shared;
    v.name = sup_child_name(c);
    return v;
}

/* c's termination state in s's stops table, made on first use. */
sup_child_stop *sup_child_stopping(dsup_sup *s, sup_child *c);
/* ... or NULL when it has none. */
sup_child_stop *sup_child_stop_of(dsup_sup *s, const sup_child *c);
/* End c's termination state, if any: its kill timer closes, an unanswered
 * caller is dropped. Before the record goes. */
void sup_child_stop_free(dsup_sup *s, sup_child *c);

/* A call forwarded to the instance on another node, answered when it is. */
typedef struct sup_pending {
    dsup_ref tag;
    dsup_ref mref;
    const char *node;
    int is_terminate;             /* the answer if that node goes: not_found, else nodedown */
    dsup_saved_from *from;
    struct sup_pending *next;
} sup_pending;

typedef struct sup_listener {
    dsup_pid pid;                 /* when name is NULL */
    const char *name;             /* a registered name ... */
    const char *node;             /* ... on this node */
} sup_listener;

typedef struct sup_sub {
    dsup_sup_event_fn fn;
    void *arg;
    struct sup_sub *next;
} sup_sub;

struct dsup_sup {
    dsup_node *node;
    const char *name;             /* the instance atom, also its registered name */
    const char *scope_name;       /* Name.Scope */
    dsup_proc *proc;
    dsup_pg *scope;
    dsup_ring *ring;
    int records;                  /* the records (sup_child) attached to the scope's groups are
                                     this instance's (whole cluster): a restarted instance of the
                                     same scope takes them from the ended one (sup_cache_release) */
    dsup_ivec by_pid;             /* sup_child*, indexed by the child's pid */
    dsup_dict stops;              /* sup_child* (its address) -> sup_child_stop, inline: only
                                     while a termination runs (sup_child_stopping) */
    dsup_child_spec **spec_cache; /* the children's shared specs made last, by hash (sup_shared.c) */
    const dsup_child_spec *spec_last; /* the last one shared: a batch's next child has it */
    int cache_children;
    int replicas;                 /* k: hosts besides the child's own that keep its spec */
    struct sup_repl *repl;        /* the replica pass after ring changes (sup_replica.c) */
    struct sup_stub_memo {        /* the last {stub, Type, Restart} encoded (sup_encode_stub) */
        char type[64];
        int restart;
        size_t len;               /* 0: none */
        char bytes[160];
    } stub_memo;
    int monitor_nodes;            /* 0 false, 1 true, 2 cluster */
    const char **nodes;           /* restrict the ring to these (interned); NULL = all hosts */
    int nnodes;
    sup_listener *listeners;
    int nlisteners;
    int max_restarts, max_seconds;
    uint64_t *restarts;           /* times of recent restarts, a ring of max_restarts+1 */
    int nrestarts;
    sup_pending *pending;
    sup_pending *pending_spare;   /* finished forwards kept for the next (SUP_PENDING_SPARE) */
    int npending_spare;
    dsup_dict pending_children;   /* name -> dsup_child_spec*: no host can run them (sup_pending.c) */
    dsup_dict claims;             /* names reserved here as their arbiter (sup_claim.c) */
    struct sup_claim_wait *claim_waits; /* starts here waiting for an arbiter */
    uint64_t claim_seq;
    uv_timer_t *claim_timer;      /* expiry sweep while either is non-empty */
    sup_sub *subs;
    int rebalance;                /* move children to a joining host (sup_rebalance.c) */
    int rebalance_moves;          /* ... at most this many in flight */
    struct sup_rebalance *rb;
    struct sup_moves *moves;      /* moves in progress (sup_move.c) */
    struct sup_ckpt *ckpt;        /* checkpoints sent and kept (sup_checkpoint.c) */
    struct sup_batch *batches;    /* batch starts waiting for an arbiter (sup_batch.c) */
    struct sup_up_batch *up_batch; /* set during a batch start: its child_up announcements
                                      collect here, sent as children_up at its end (sup_cache.c) */
    int stopping;
    const char *terminating[8];   /* hosts that announced node_terminate (held names): their
                                     children leave pg before the host does; failover has them */
    int nterminating;
    int quorum;                   /* hosts a side needs to run children (0: no quorum mode) */
    int fenced;                   /* fewer hosts than quorum: children stopped, starts refused */
    dsup_child_spec **held;       /* to start again once a quorum is back (sup_quorum.c) */
    size_t nheld, capheld;
    int restore_tries;            /* restore passes since the quorum came back */
    int finished;                 /* sup_shutdown_finish ran */
    const char *stop_why;         /* static text: the instance's exit reason */
    uint64_t place_gen;           /* changes of the hosts and their capabilities (sup_place.c) */
    struct sup_place_memo *place_memo; /* candidates by type, good for one place_gen */
    struct dsup_sup *next;
};

/* Group names inside the scope that are not children. */
#define SUP_HOSTS_GROUP "$dsup_hosts"         /* C instances: placement targets */
#define SUP_OBSERVERS_GROUP "$dsup_observers" /* shim instances: follow the cache */
#define SUP_BEAM_GROUP "$dsup_beam"           /* Elixir hosts: run BEAM modules */
#define SUP_TYPE_TAG "$dsup_type"             /* {'$dsup_type', Type}: C hosts of Type */
#define SUP_MOVING_TAG "$dsup_moving"         /* {'$dsup_moving', Name}: Name is moving */

/* One node's instances and the service's state (node->sup), made by
 * dsup_sup_service_init, freed when the node closes. */
struct dsup_sup_service {
    dsup_sup *sups;               /* every instance, ended ones too (pending lookups) */
    void (*shutdown_then)(dsup_node *node);
    int shutdown_waiting;
    uv_timer_t shutdown_timer;
    int shutdown_timer_on;
    int ring_enc;                 /* how atom child names hash (--ring-atoms, or learnt) */
    int ring_explicit, ring_seen;
    struct sup_report_limiter *limiters; /* crash_report.c */
    struct sup_heal_state *heal;  /* sup_heal.c */
    struct sup_ring_cache *place; /* sup_place.c */
    dsup_ratelimit ckpt_full_log; /* sup_checkpoint.c */
    dsup_ratelimit handoff_refuse_log; /* sup_handoff.c */
    uint64_t batch_seq;           /* sup_batch.c: the last batch id */
};
/* The instances of a node (NULL before the service starts). */
static inline dsup_sup *dsup_sups_of(const dsup_node *node) { return node->sup ? node->sup->sups : NULL; }
/* Each file's share of the service state, at the node's stop and close. */
void sup_report_stop(dsup_node *node);
void sup_report_free(dsup_node *node);
void sup_heal_stop(dsup_node *node);
void sup_heal_free(dsup_node *node);
void sup_place_free(dsup_node *node);
void sup_free_all(dsup_node *node);

/* sup_cache.c: the cluster-wide child table and events */
sup_child *sup_child_by_name(dsup_sup *s, dsup_term name);
/* How many records, and each one (fn may drop the one it is given with
 * sup_cache_drop, nothing else). */
size_t sup_child_count(const dsup_sup *s);
void sup_foreach_child(dsup_sup *s, void (*fn)(sup_child *c, void *arg), void *arg);
/* The instance takes its scope's records (they may not be another live
 * instance's): 0, or DSUP_EEXIST / DSUP_EINVAL. */
int sup_cache_claim(dsup_sup *s);
/* An ended instance lets go of its records: its local children's specs go
 * to the node's restart of it (sup_heal_keep), the rest is forgotten. */
void sup_cache_release(dsup_sup *s);
/* Node close: free every record. */
void sup_cache_free(dsup_sup *s);
sup_child *sup_child_by_pid(dsup_sup *s, const dsup_pid *pid);
sup_child *sup_cache_put(dsup_sup *s, dsup_term name, const dsup_pid *pid, dsup_child_spec *spec, int local);
void sup_cache_drop(dsup_sup *s, sup_child *c);
size_t sup_local_count(dsup_sup *s);
int sup_cache_repoint(dsup_sup *s, sup_child *c, const char *lost_node);
void sup_emit(dsup_sup *s, ei_x_buff *event);
void sup_emit_process_start(dsup_sup *s, dsup_term name, const dsup_pid *pid);
void sup_emit_process_stop(dsup_sup *s, dsup_term name, const dsup_pid *pid);
void sup_broadcast(dsup_sup *s, ei_x_buff *msg);
void sup_send_child_up(dsup_sup *s, sup_child *c, const dsup_pid *to);
void sup_broadcast_child_down(dsup_sup *s, sup_child *c, dsup_term reason);
void sup_send_snapshot(dsup_sup *s, const dsup_pid *to);
void sup_on_child_msg(dsup_sup *s, dsup_term event);
/* The copy of `name` that must survive among duplicates (see sup_cache.c). */
int sup_resolve_duplicate(dsup_sup *s, dsup_term name);

/* sup_shared.c: an instance's specs without names, shared by the children
 * with the same type, restart, shutdown, beam and args, reference-counted
 * (see sup_spec.h). */
/* spec's shared copy, one reference more; NULL when out of memory. spec
 * stays the caller's. */
const dsup_child_spec *sup_spec_share(dsup_sup *s, const dsup_child_spec *spec);
/* One reference less; the last frees it. NULL is ignored. */
void sup_spec_unshare(dsup_sup *s, const dsup_child_spec *shared);
/* The instance's struct goes: its cache of specs (its children, which
 * held them, are gone). */
void sup_spec_shared_free(dsup_sup *s);

/* sup.c */
dsup_child_spec *sup_spec_named_by_ref(dsup_sup *s, dsup_child_spec *spec);
int sup_check_child_name(dsup_sup *s, dsup_term name, ei_x_buff *reply);
int sup_reply_if_running(dsup_sup *s, dsup_term name, ei_x_buff *reply);
int sup_start_local(dsup_sup *s, dsup_child_spec *spec, ei_x_buff *reply);
int sup_start_local_handoff(dsup_sup *s, dsup_child_spec *spec, const dsup_term *handoff, ei_x_buff *reply);
/* sup_start_local_handoff without its checks, for a start that made them in
 * this same event (spec named, sup_check_child_name and sup_reply_if_running
 * passed): nothing can have changed since, so they are not repeated. */
int sup_start_local_checked(dsup_sup *s, dsup_child_spec *spec, const dsup_term *handoff, ei_x_buff *reply);
const dsup_pid *sup_host_on(dsup_sup *s, const char *node);
void sup_stop_child(dsup_sup *s, sup_child *c, dsup_term reason);
void sup_failover(dsup_sup *s, const char *lost_node);

/* sup_status.c: the reply to `status` (children, pending, restarts here) */
void sup_encode_status(dsup_sup *s, ei_x_buff *x);

/* sup_ops.c: the gen_server:call API */
dsup_call_ret sup_handle_call(dsup_proc *self, void *state, dsup_term req, const dsup_from *from,
                              ei_x_buff *reply);
int sup_forward(dsup_sup *s, const char *node, dsup_term request, const dsup_from *from, int is_terminate);
int sup_pending_reply(dsup_sup *s, dsup_term msg);
int sup_pending_down(dsup_sup *s, const dsup_ref *mref);
#define SUP_PENDING_SPARE 32
void sup_pending_free_spare(dsup_sup *s);
void sup_pending_end(dsup_sup *s);   /* the instance ends: drop its forwards in flight */

/* sup_node.c: the service's place in the node. Registers the start_supervisor
 * call and the node hooks below; the command line calls it once at start. */
int dsup_sup_service_init(dsup_node *node);
/* Names an instance may not take (the node's built-in processes). */
int dsup_sup_reserved_name(const char *name);
/* Stop every instance; returns how many still hand children over, and
 * calls `then` from the loop once they are done (nothing when 0). */
int dsup_sup_shutdown_all(dsup_node *node, void (*then)(dsup_node *node));
/* sup.c: the end of an instance's graceful stop, after the handoffs. */
void sup_shutdown_finish(dsup_sup *s);
void dsup_sup_conn_event(dsup_node *node, const char *peer, int up);
/* A BEAM peer runs this OTP release: default the atom-key hashing to it. */
void dsup_sup_peer_release(dsup_node *node, int otp);
extern int dsup_ring_atoms_explicit;   /* --ring-atoms given (the command line's, read at node start) */

/* sup_place.c: placement by capability */
void sup_place_advertise(dsup_sup *s, int join);
int sup_place_is_capability_group(dsup_term group);
/* The owner of spec's name among the hosts able to run it (interned), or
 * NULL. `fresh`: a new start, whose type may be a BEAM module. */
const char *sup_place_owner(dsup_sup *s, const dsup_child_spec *spec, int fresh);
const char *sup_place_owner_for_type(dsup_sup *s, const char *type, dsup_term key);
/* Up to max distinct hosts able to run spec, clockwise from its name's
 * point, without `skip` (its host); padded with the ring's other hosts
 * when too few are capable. Interned names; returns how many. */
size_t sup_place_successors(dsup_sup *s, const dsup_child_spec *spec, const char *skip, const char **out,
                            size_t max);
/* The host that takes spec's child over when `skip` (its host) leaves: the
 * owner of its name among the other hosts able to run it (what failover
 * picks), or NULL when there is none. Interned. */
const char *sup_place_successor(dsup_sup *s, const dsup_child_spec *spec, const char *skip);
/* The hosts or their capabilities changed (for_good 0), or the instance
 * stops following its scope and keeps nothing (1). */
void sup_place_forget(dsup_sup *s, int for_good);

/* sup_replica.c: specs kept on k ring successors (default 2) */
#define SUP_REPLICAS_DEFAULT 2
#define SUP_REPLICAS_MAX 16
/* A spec the cache can start the child from (a replica's or our own); a
 * non-replica keeps a stub (type and restart, no args) or none. */
int sup_spec_full(const dsup_child_spec *spec);
/* The replicas of c's spec: up to s->replicas hosts (interned). */
size_t sup_replica_nodes(dsup_sup *s, const sup_child *c, const char **out);
uint32_t sup_replica_sig(const char **nodes, size_t n);
int sup_replica_has(const char *const *nodes, size_t n, const char *node);
/* Whether the instance `pid` is a C host (it gets stubs; Elixir instances
 * keep every spec, as before). */
int sup_peer_is_c_host(dsup_sup *s, const dsup_pid *pid);
/* The ring or a host's capabilities changed: re-place specs (throttled). */
void sup_replica_ring_changed(dsup_sup *s);
/* {replica, Name, Pid, SpecMap}: 1 when handled. */
int sup_replica_msg(dsup_sup *s, dsup_term event);
/* replica_info -> #{replicas, local, specs (others' children), stubs,
 * pass_active}: 1 when req was that call. */
int sup_replica_call(dsup_sup *s, dsup_term req, ei_x_buff *reply);
void sup_replica_free(dsup_sup *s);
/* Encode {stub, Type, Restart} for a non-replica. */
void sup_encode_stub(dsup_sup *s, ei_x_buff *x, const dsup_child_spec *spec);

/* sup_pending.c: children no surviving host can run */
void sup_pending_child_add(dsup_sup *s, const dsup_child_spec *spec);
void sup_pending_child_forget(dsup_sup *s, dsup_term name);
size_t sup_pending_child_count(dsup_sup *s);
void sup_pending_child_encode(dsup_sup *s, ei_x_buff *x);
void sup_pending_child_retry(dsup_sup *s);
void sup_pending_child_start(dsup_sup *s, dsup_term name, dsup_term spec);
void sup_pending_child_free_all(dsup_sup *s);
/* sup_claim.c: one winner per name (the name's ring owner arbitrates) */
typedef struct sup_claim_wait sup_claim_wait;
dsup_call_ret sup_start_claimed(dsup_sup *s, dsup_child_spec *spec, const dsup_from *from, ei_x_buff *reply);
/* The same for a spec named and checked in this event (as for
 * sup_start_local_checked); owner: the name's placement, sup_place_owner(s,
 * spec, 1), when the caller computed it (NULL: not computed). */
dsup_call_ret sup_start_claimed_checked(dsup_sup *s, dsup_child_spec *spec, const char *const *owner,
                                        const dsup_from *from, ei_x_buff *reply);
int sup_claim_msg(dsup_sup *s, dsup_term event);
int sup_claim_busy(dsup_sup *s, dsup_term name);
void sup_claim_restart(dsup_sup *s, dsup_child_spec *spec);
void sup_claim_node_lost(dsup_sup *s, const char *node);
void sup_claim_shutdown(dsup_sup *s);

/* sup_handoff.c: moving children with their state */
/* Graceful stop: stop every local child and, once the peers have seen them
 * leave (a barrier), hand those whose type has handoff_state to their ring
 * successors, then sup_shutdown_finish(). 1 when that is pending, 0 when
 * the caller finishes now (nothing to wait for). barrier 0: the instance is
 * ending now (gen_server:stop): hand over at once, without the barrier. */
int sup_handoff_on_stop(dsup_sup *s, sup_child **list, size_t n, int barrier);
int sup_handoff_msg(dsup_sup *s, dsup_term event);
int sup_handoff_call(dsup_sup *s, dsup_term req, const dsup_from *from, ei_x_buff *reply, dsup_call_ret *ret);

/* sup_rebalance.c: when a host joins, move it the children it now owns */
#define SUP_REBALANCE_MOVES_DEFAULT 8
void sup_rebalance_host_joined(dsup_sup *s, const char *node);
/* A rebalance move ended (ok: the new copy started). */
void sup_rebalance_moved(dsup_sup *s, int ok);
void sup_rebalance_free(dsup_sup *s);

/* sup_move.c: move local child c to the host on node (stops c when the
 * next barrier opens, so it serves calls while earlier moves pass theirs); the
 * reply {ok, Pid, Name} | {error, _} goes to `from`, or to the rebalance
 * throttle when from is NULL. */
void sup_move_start(dsup_sup *s, sup_child *c, const char *node, const dsup_from *from);
int sup_move_reply(dsup_sup *s, dsup_term msg);
int sup_move_down(dsup_sup *s, const dsup_ref *mref);
void sup_move_free(dsup_sup *s);
/* Barrier round trips since the last call: count, mean and longest (µs);
 * resets them (the rebalance summary logs them: most of a move's gap). */
void sup_move_barrier_stats(dsup_sup *s, uint64_t *n, uint64_t *avg_us, uint64_t *max_us);
/* A graceful stop's move, already taken (req: the start_handoff request,
 * the copy stopped, the name marked): sent once a barrier passes; the
 * instance finishes when every such move is answered and visible. */
void sup_move_queue_taken(dsup_sup *s, dsup_term name, const char *node, const ei_x_buff *req);
/* Open a barrier (unless one is open): a stopping instance finishes
 * (sup_shutdown_finish) once it passed and its moves are answered and
 * visible (their marks released). */
void sup_move_barrier(dsup_sup *s);
/* sup_handoff.c, for rebalance: {start_handoff, Name, SpecMap, State} for
 * local child c into x, mark the name moving and stop c with reason
 * {shutdown, {moved, Node}} (its pid leaves the registry now). */
void sup_handoff_take(dsup_sup *s, sup_child *c, const char *node, ei_x_buff *x);
/* Join (moving 1) or leave the group {'$dsup_moving', Name} with the
 * instance's pid: what the shim's call by name waits on during a move. */
void sup_handoff_mark(dsup_sup *s, dsup_term name, int moving);
int sup_handoff_is_mark(dsup_term group);
/* sup_move.c, the target of a move: send {'$dsup', {moved_visible, Name}}
 * to the mover's instance once a barrier of ours passed (0: queued). */
int sup_move_notify_after_barrier(dsup_sup *s, const dsup_pid *mover, dsup_term name);
/* The mover: the target says the new copy's join is everywhere (leave the
 * mark) / a host left (leave the marks of moves to it). */
void sup_move_visible(dsup_sup *s, dsup_term name);
void sup_move_host_left(dsup_sup *s, const char *node);

/* sup_checkpoint.c */
int sup_checkpoint_msg(dsup_sup *s, dsup_term event);
dsup_term sup_checkpoint_take(dsup_sup *s, dsup_term name, const dsup_pid *lost);
void sup_checkpoint_free(dsup_sup *s);
void sup_checkpoint_encode(dsup_sup *s, dsup_term name, ei_x_buff *reply);

/* sup.c: the instance's `nodes` option admits `node` */
int sup_node_allowed(dsup_sup *s, const char *node);
/* sup.c: a host announced node_terminate / is it one that did */
void sup_note_terminating(dsup_sup *s, const char *node);

/* sup_quorum.c: the opt-in quorum mode */
int sup_quorum_ok(dsup_sup *s);
void sup_quorum_check(dsup_sup *s);
void sup_quorum_hold(dsup_sup *s, dsup_child_spec *spec);
void sup_quorum_restore(dsup_sup *s);
void sup_quorum_free(dsup_sup *s);

/* sup_cache.c: collect the child_up announcements of a batch start, send them at its end */
/* n: how many starts the batch has (room for their announcements). */
void sup_up_batch_begin(dsup_sup *s, size_t n);
void sup_up_batch_end(dsup_sup *s);

/* sup_ops.c: error replies shared by the call handlers */
void sup_error_atom(ei_x_buff *x, const char *what);                       /* {error, What} */
void sup_error_pair(ei_x_buff *x, const char *what, dsup_term detail);     /* {error, {What, Detail}} */
void sup_error_no_owner(dsup_sup *s, const dsup_child_spec *spec, ei_x_buff *x);

/* sup_batch.c: {start_children_here, [{Name, SpecMap}]}, {start_children, [Spec]} */
dsup_call_ret sup_start_children_here(dsup_sup *s, dsup_term list, const dsup_from *from, ei_x_buff *reply);
dsup_call_ret sup_start_children(dsup_sup *s, dsup_term list, const dsup_from *from, ei_x_buff *reply);
int sup_batch_reply(dsup_sup *s, dsup_term msg);
void sup_batch_free(dsup_sup *s);

/* sup_opts.c */
int sup_parse_opts(dsup_sup *s, dsup_term opts, ei_x_buff *err);
/* Let go of the names the options keep (listeners, nodes). */
void sup_opts_release(dsup_sup *s);

#endif
