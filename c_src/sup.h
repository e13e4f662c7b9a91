/* sup.h — the distributed supervisor instance (sup.c, sup_ops.c). */
#ifndef DSUP_SUP_H
#define DSUP_SUP_H

#include <uv.h>

#include "dict.h"
#include "ivec.h"
#include "dsup.h"
#include "proc.h"
#include "ring.h"
#include "sup_spec.h"

typedef struct sup_child {
    dsup_child_spec *spec;        /* NULL when the host did not share it (cache off) */
    dsup_pid pid;
    int local;
    int terminating;              /* terminate_child in progress */
    dsup_saved_from *term_from;   /* who asked, answered on EXIT */
    uv_timer_t *kill_timer;       /* shutdown timeout, then kill */
} sup_child;

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
    const char *name;             /* the instance atom, also its registered name */
    const char *scope_name;       /* Name.Scope */
    dsup_proc *proc;
    dsup_pg *scope;
    dsup_ring *ring;
    dsup_dict by_name;            /* child name bytes -> sup_child, stored inline (whole cluster) */
    dsup_ivec by_pid;             /* sup_child*, indexed by the child's pid */
    int cache_children;
    int monitor_nodes;            /* 0 false, 1 true, 2 cluster */
    const char **nodes;           /* restrict the ring to these (interned); NULL = all hosts */
    int nnodes;
    sup_listener *listeners;
    int nlisteners;
    int max_restarts, max_seconds;
    uint64_t *restarts;           /* times of recent restarts, a ring of max_restarts+1 */
    int nrestarts;
    sup_pending *pending;
    sup_sub *subs;
    int stopping;
    int quorum;                   /* hosts a side needs to run children (0: no quorum mode) */
    int fenced;                   /* fewer hosts than quorum: children stopped, starts refused */
    dsup_child_spec **held;       /* to start again once a quorum is back (sup_quorum.c) */
    size_t nheld, capheld;
    int restore_tries;            /* restore passes since the quorum came back */
    struct dsup_sup *next;
};

/* Group names inside the scope that are not children. */
#define SUP_HOSTS_GROUP "$dsup_hosts"         /* C instances: placement targets */
#define SUP_OBSERVERS_GROUP "$dsup_observers" /* shim instances: follow the cache */

extern dsup_sup *dsup_sups;

/* sup_cache.c: the cluster-wide child table and events */
sup_child *sup_child_by_name(dsup_sup *s, dsup_term name);
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

/* sup.c */
dsup_child_spec *sup_spec_named_by_ref(dsup_child_spec *spec);
int sup_reply_if_running(dsup_sup *s, dsup_term name, ei_x_buff *reply);
int sup_start_local(dsup_sup *s, dsup_child_spec *spec, ei_x_buff *reply);
const dsup_pid *sup_host_on(dsup_sup *s, const char *node);
void sup_stop_child(dsup_sup *s, sup_child *c, dsup_term reason);
void sup_failover(dsup_sup *s, const char *lost_node);

/* sup_ops.c: the gen_server:call API */
dsup_call_ret sup_handle_call(dsup_proc *self, void *state, dsup_term req, const dsup_from *from,
                              ei_x_buff *reply);
int sup_forward(dsup_sup *s, const char *node, dsup_term request, const dsup_from *from, int is_terminate);
int sup_pending_reply(dsup_sup *s, dsup_term msg);
int sup_pending_down(dsup_sup *s, const dsup_ref *mref);

/* Node-wide hooks (node.c, node_ctrl.c). */
void dsup_sup_shutdown_all(void);
void dsup_sup_conn_event(const char *node, int up);
/* A BEAM peer runs this OTP release: default the atom-key hashing to it. */
void dsup_sup_peer_release(int otp);
extern int dsup_ring_atoms_explicit;   /* --ring-atoms given */

/* sup_quorum.c: the opt-in quorum mode */
int sup_quorum_ok(dsup_sup *s);
void sup_quorum_check(dsup_sup *s);
void sup_quorum_hold(dsup_sup *s, dsup_child_spec *spec);
void sup_quorum_restore(dsup_sup *s);
void sup_quorum_free(dsup_sup *s);

/* sup_opts.c */
int sup_parse_opts(dsup_sup *s, dsup_term opts, ei_x_buff *err);

#endif
