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
#include "node.h"

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

/* What an idle child never uses, kept apart so that it costs such a child
 * one pointer (dsup_proc.ext): allocated at the first link, monitor, stop or
 * behaviour extra (dsup_proc_ext_get), freed when the process ends, kept
 * meanwhile (a process called once is likely called again: one allocation
 * per process at most, never one per message). A supervised child keeps no
 * link record (parent_link) and is never monitored until called. */
typedef struct dsup_proc_ext {
    dsup_ivec links;              /* dsup_pid */
    dsup_ivec watchers;           /* dsup_monitor_rec: monitors others hold on us */
    dsup_ivec watching;           /* dsup_monitor_rec: monitors we hold on others */
    dsup_term *stop_reason;       /* set by dsup_stop (one allocation); NULL = not stopping */
    void *beh;                    /* behaviour-private data (gen_server.c) */
} dsup_proc_ext;

/* Laid out without padding holes: there is one per child, and children are
 * many (README, Memory per child: 56 bytes + the worker's state, one
 * allocation; with a counter's 16 bytes, 72 + malloc's 8-B header fill an
 * 80-byte chunk). What the pid says is not kept twice: a local pid's node
 * name and creation are the node's (set once, before any process), so only
 * its number and serial are kept, as the table key (dsup_proc_pid builds the
 * pid); the parent is on this node too (dsup_proc_parent). */
struct dsup_proc {
    dsup_node *node;              /* the node it runs on */
    const dsup_worker_type *type;
    void *state;
    struct dsup_pg_memb *pg_memb; /* pg groups this process is in: opaque here, owned by
                                     the pg service through its exit hook (node_hooks.h) */
    dsup_proc_ext *ext;           /* links, monitors, stop reason, behaviour extras:
                                     NULL until one is used */
    uint32_t key;                 /* the pid's number (15 bits) and serial (13): the table key */
    uint32_t parent_key;          /* the parent (has_parent): a local process's key */
    uint16_t in_callback;
    unsigned trap_exit : 1;
    unsigned suspended : 1;
    unsigned dead : 1;
    unsigned has_parent : 1;
    unsigned started : 1;         /* init succeeded: terminate will be called */
    unsigned parent_link : 1;     /* linked to `parent` without link records:
                                     a supervisor keeps its children itself */
    unsigned state_inline : 1;    /* state lives after this struct (state_size) */
    unsigned registered : 1;      /* has a name in the name table (names are rare:
                                     the name is not kept here) */
    unsigned self_kept : 1;       /* dsup_self made a pid that lives as long as the process
                                     (in the node's table of them, proc.c) */
};

/* Issue 19 (<= 256 B per idle child): a counter child is this struct + its
 * 16 B of state in one allocation, which must stay in glibc's 80-B chunk
 * (56 + 16 + 8 B header). A field added here costs every child 16 B. */
_Static_assert(sizeof(struct dsup_proc) <= 56, "struct dsup_proc outgrew 56 bytes (README, Memory per child)");

/* The extras, allocated on first use (never NULL: aborts out of memory). */
dsup_proc_ext *dsup_proc_ext_get(dsup_proc *p);

/* The reason dsup_stop set, or NULL when the process is not stopping. */
static inline const dsup_term *dsup_proc_stop_reason(const dsup_proc *p)
{
    return p->ext ? p->ext->stop_reason : NULL;
}

/* The behaviour's private data (NULL until set). */
static inline void *dsup_proc_beh(const dsup_proc *p) { return p->ext ? p->ext->beh : NULL; }

/* Links and monitors others hold on p (tests, introspection). */
uint32_t dsup_proc_link_count(const dsup_proc *p);
uint32_t dsup_proc_watcher_count(const dsup_proc *p);

/* The process table's key: the pid's number (15 bits) and serial (13). */
static inline uint32_t dsup_proc_key(const dsup_proc *p) { return p->key; }

/* The pid of the local process with this key: the node's name and creation
 * (the creation is set once, when the node registers, before any process). */
static inline dsup_pid dsup_proc_pid_of_key(const dsup_node *node, uint32_t key)
{
    return (dsup_pid){ node->name, key & 0x7fff, key >> 15, node->creation };
}

/* The process's pid, built from its key (not kept: 24 bytes a child). */
static inline dsup_pid dsup_proc_pid(const dsup_proc *p) { return dsup_proc_pid_of_key(p->node, p->key); }

/* The parent's pid (has_parent): a process on this node, kept as its 4-byte
 * key instead of a 24-byte pid. */
static inline dsup_pid dsup_proc_parent(const dsup_proc *p) { return dsup_proc_pid_of_key(p->node, p->parent_key); }

void dsup_proc_table_init(dsup_node *node);
/* Ends what is left and frees the table (node close). */
void dsup_proc_table_free(dsup_node *node);
/* How processes handle messages and their end: one class for every process
 * (gen_server.c sets it), so a process does not carry a pointer to it. */
void dsup_proc_set_class(dsup_node *node, const dsup_proc_class *cls);
/* A new process; `extra` zeroed bytes follow the struct (8-aligned) for
 * worker state of a fixed size (dsup_worker_type.state_size). */
dsup_proc *dsup_proc_new(dsup_node *node, size_t extra);
dsup_proc *dsup_proc_lookup(const dsup_node *node, const dsup_pid *pid);
dsup_proc *dsup_proc_whereis(const dsup_node *node, const char *name);
int dsup_proc_register(dsup_proc *p, const char *name);
size_t dsup_proc_count(const dsup_node *node);
/* Call fn for every live process (used on connection loss and shutdown). */
void dsup_proc_foreach(dsup_node *node, void (*fn)(dsup_proc *p, void *arg), void *arg);

/* Deliver a message to a local process (runs its handler now: call only
 * from the loop, never from inside another process's callback). */
void dsup_proc_deliver(dsup_proc *p, dsup_term msg);
/* Queue a message for a local pid; it is handled from the loop. */
int dsup_proc_enqueue(dsup_node *node, const dsup_pid *to, dsup_term msg);
/* Signals waiting in the local queue: the node's run queue (metrics). */
size_t dsup_proc_queue_len(const dsup_node *node);
/* Drain queued local signals. Returns 1 when anything ran. */
int dsup_proc_run_queue(dsup_node *node);

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
void dsup_proc_node_down(dsup_node *node, const char *peer);

/* The exit signal a link carries, from self to `to`. */
void dsup_exit_linked(dsup_proc *self, const dsup_pid *to, dsup_term reason);

/* Send an encoded message from `from` (may be NULL: the node itself). */
int dsup_proc_send(dsup_node *node, const dsup_pid *from, const dsup_pid *to, dsup_term msg);

/* Encoded reasons used internally. */
dsup_term dsup_reason_atom(dsup_node *node, const char *atom);

#endif
