/* proc.h — local processes: the pid table, registered names, links,
 * monitors and exit signals, with BEAM semantics.
 *
 * Signals between local processes go through a queue drained on the loop
 * (never a nested callback), so a worker's callback never runs inside
 * another's. Signals to remote pids become control messages. */
#ifndef DSUP_PROC_H
#define DSUP_PROC_H

#include "buf.h"
#include "dsup.h"
#include "ivec.h"

/* How a process handles what arrives: the gen_server behaviour
 * (gen_server.c) for workers. */
typedef struct dsup_proc_class {
    void (*message)(dsup_proc *p, dsup_term msg);
    void (*exiting)(dsup_proc *p, dsup_term reason);   /* free resources */
} dsup_proc_class;

typedef struct dsup_monitor_rec {
    dsup_ref ref;
    dsup_pid pid;            /* the other side (watcher or target) */
    const char *name;        /* monitored by name: the name (interned) */
    const char *name_node;   /* ... on this node */
} dsup_monitor_rec;

struct dsup_proc {
    dsup_pid pid;
    uint32_t key;
    const char *reg_name;
    const dsup_proc_class *cls;
    const dsup_worker_type *type;
    void *state;
    dsup_ivec links;              /* dsup_pid */
    dsup_ivec watchers;           /* dsup_monitor_rec: monitors others hold on us */
    dsup_ivec watching;           /* dsup_monitor_rec: monitors we hold on others */
    unsigned trap_exit : 1;
    unsigned suspended : 1;
    unsigned dead : 1;
    unsigned has_parent : 1;
    unsigned started : 1;         /* init succeeded: terminate will be called */
    unsigned parent_link : 1;     /* linked to `parent` without link records:
                                     a supervisor keeps its children itself */
    int in_callback;
    dsup_pid parent;
    struct dsup_pg_memb *pg_memb; /* pg groups this process is in (pg.c) */
    dsup_term stop_reason;        /* heap copy set by dsup_stop; buf NULL = not stopping */
    void *beh;                    /* behaviour-private data */
};

void dsup_proc_table_init(void);
dsup_proc *dsup_proc_new(const dsup_proc_class *cls);
dsup_proc *dsup_proc_lookup(const dsup_pid *pid);
dsup_proc *dsup_proc_whereis(const char *name);
int dsup_proc_register(dsup_proc *p, const char *name);
size_t dsup_proc_count(void);
/* Call fn for every live process (used on connection loss and shutdown). */
void dsup_proc_foreach(void (*fn)(dsup_proc *p, void *arg), void *arg);

/* Deliver a message to a local process (runs its handler now: call only
 * from the loop, never from inside another process's callback). */
void dsup_proc_deliver(dsup_proc *p, dsup_term msg);
/* Queue a message for a local pid; it is handled from the loop. */
int dsup_proc_enqueue(const dsup_pid *to, dsup_term msg);
/* Drain queued local signals. Returns 1 when anything ran. */
int dsup_proc_run_queue(void);

/* The process ends now with `reason`: links, monitors, name, memory. */
void dsup_proc_exit(dsup_proc *p, dsup_term reason);
/* After a callback: if it called dsup_stop, end the process. */
void dsup_proc_after_callback(dsup_proc *p);

/* Signals arriving at local process `p` from pid `from` (any node). */
void dsup_proc_sig_link(dsup_proc *p, const dsup_pid *from);
void dsup_proc_sig_unlink(dsup_proc *p, const dsup_pid *from);
/* Link broken because `from` exited (is_link 1: EXIT), exit/2 (0: EXIT2),
 * or a child spawned with dsup_spawn_child ended (2: to its parent). */
void dsup_proc_sig_exit(dsup_proc *p, const dsup_pid *from, dsup_term reason, int is_link);
void dsup_proc_sig_monitor(dsup_proc *p, const dsup_pid *watcher, const dsup_ref *ref, const char *by_name);
void dsup_proc_sig_demonitor(dsup_proc *p, const dsup_pid *watcher, const dsup_ref *ref);
/* A monitor `p` held fired: deliver {'DOWN', Ref, process, Who, Reason}. */
void dsup_proc_sig_down(dsup_proc *p, const dsup_ref *ref, const dsup_pid *who, const char *who_name,
                        const char *who_node, dsup_term reason);
/* A node was lost: drop links/monitors to its pids, fire noconnection. */
void dsup_proc_node_down(const char *node);

/* The exit signal a link carries, from self to `to`. */
void dsup_exit_linked(dsup_proc *self, const dsup_pid *to, dsup_term reason);

/* Send an encoded message from `from` (may be NULL: the node itself). */
int dsup_proc_send(const dsup_pid *from, const dsup_pid *to, dsup_term msg);

/* Encoded reasons used internally. */
dsup_term dsup_reason_atom(const char *atom);

#endif
