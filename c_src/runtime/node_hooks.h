/* node_hooks.h — what the layers above the runtime hear of the node.
 *
 * Services (pg, the supervisor instances), the HTTP endpoints and the
 * command line register here; the runtime calls them without knowing their
 * names, so no runtime file includes a header of a higher layer (README,
 * Architecture). Hooks live as long as the node. */
#ifndef DSUP_NODE_HOOKS_H
#define DSUP_NODE_HOOKS_H

#include "dsup.h"

typedef enum dsup_node_event {
    DSUP_NODE_READY,        /* registered with epmd, dsup_node runs: start what was asked for */
    DSUP_NODE_STOPPING,     /* a graceful stop begins (hooks run newest first) */
    DSUP_NODE_CONN_UP,      /* `peer` is connected */
    DSUP_NODE_CONN_DOWN,    /* `peer` is gone */
    DSUP_NODE_PEER_RELEASE, /* `peer` runs OTP release `value` */
    DSUP_NODE_CLOSE,        /* the node is being freed: free your state (newest first) */
} dsup_node_event;

typedef void (*dsup_node_hook_fn)(dsup_node *node, void *arg, dsup_node_event ev, const char *peer, int value);
/* The node's hook tables (node->hooks): made at node init, freed at close. */
void dsup_node_hooks_init(dsup_node *node);
void dsup_node_hooks_free(dsup_node *node);
/* 0, or -1 when out of memory. */
int dsup_node_hook_add(dsup_node *node, dsup_node_hook_fn fn, void *arg);
/* Run every hook for ev (STOPPING: newest first, so what started last stops
 * first; otherwise in registration order). */
void dsup_node_hooks_run(dsup_node *node, dsup_node_event ev, const char *peer, int value);

/* A STOPPING hook that must wait (e.g. for peers to see its children
 * leave) holds the stop and releases it later from the loop; the node goes
 * on stopping once every hold is released (node.c). */
void dsup_node_stop_hold(dsup_node *node);
void dsup_node_stop_release(dsup_node *node);

/* A gen_server:call to dsup_node that an upper layer answers: return 1 when
 * req was yours (the reply term encoded into `reply`), 0 to pass it on. */
typedef int (*dsup_node_call_fn)(dsup_node *node, dsup_term req, ei_x_buff *reply);
int dsup_node_call_add(dsup_node *node, dsup_node_call_fn fn);
int dsup_node_calls_run(dsup_node *node, dsup_term req, ei_x_buff *reply);

/* What a process leaves behind when it exits, for the one service that
 * hangs data off it (pg: its memberships, proc->pg_memb). */
struct dsup_proc;
typedef void (*dsup_proc_exit_fn)(struct dsup_proc *p);
void dsup_proc_set_exit_hook(dsup_node *node, dsup_proc_exit_fn fn);
/* proc.c, for an exiting process that has such data. */
void dsup_proc_run_exit_hook(struct dsup_proc *p);

#endif
