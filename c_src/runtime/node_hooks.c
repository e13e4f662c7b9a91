/* node_hooks.c — small fixed tables of registered hooks (a handful of
 * services register once each; a full table is a programming error). */
#include "node_hooks.h"
#include "node.h"
#include "proc.h"
#include "xalloc.h"
#include <stdlib.h>

#include <assert.h>

#include "log.h"

#define MAX_HOOKS 16

/* One node's (node->hooks). */
struct dsup_hooks {
    struct {
        dsup_node_hook_fn fn;
        void *arg;
    } hooks[MAX_HOOKS];
    int nhooks;
    dsup_node_call_fn calls[MAX_HOOKS];
    int ncalls;
    dsup_proc_exit_fn exit_hook;
};

void dsup_node_hooks_init(dsup_node *node) { node->hooks = dsup_xcalloc(1, sizeof *node->hooks); }

void dsup_node_hooks_free(dsup_node *node)
{
    free(node->hooks);
    node->hooks = NULL;
}

int dsup_node_hook_add(dsup_node *node, dsup_node_hook_fn fn, void *arg)
{
    struct dsup_hooks *H = node->hooks;
    for (int i = 0; i < H->nhooks; i++)
        if (H->hooks[i].fn == fn && H->hooks[i].arg == arg)
            return 0;
    if (H->nhooks == MAX_HOOKS) {
        LOG_ERROR("BUG: more than %d node hooks", MAX_HOOKS);
        return -1;
    }
    H->hooks[H->nhooks].fn = fn;
    H->hooks[H->nhooks].arg = arg;
    H->nhooks++;
    return 0;
}

void dsup_node_hooks_run(dsup_node *node, dsup_node_event ev, const char *peer, int value)
{
    struct dsup_hooks *H = node->hooks;
    if (ev == DSUP_NODE_STOPPING || ev == DSUP_NODE_CLOSE) {
        for (int i = H->nhooks; i-- > 0;)
            H->hooks[i].fn(node, H->hooks[i].arg, ev, peer, value);
        return;
    }
    for (int i = 0; i < H->nhooks; i++)
        H->hooks[i].fn(node, H->hooks[i].arg, ev, peer, value);
}

int dsup_node_call_add(dsup_node *node, dsup_node_call_fn fn)
{
    struct dsup_hooks *H = node->hooks;
    for (int i = 0; i < H->ncalls; i++)
        if (H->calls[i] == fn)
            return 0;
    if (H->ncalls == MAX_HOOKS) {
        LOG_ERROR("BUG: more than %d dsup_node call handlers", MAX_HOOKS);
        return -1;
    }
    H->calls[H->ncalls++] = fn;
    return 0;
}

int dsup_node_calls_run(dsup_node *node, dsup_term req, ei_x_buff *reply)
{
    struct dsup_hooks *H = node->hooks;
    for (int i = 0; i < H->ncalls; i++)
        if (H->calls[i](node, req, reply))
            return 1;
    return 0;
}

void dsup_proc_set_exit_hook(dsup_node *node, dsup_proc_exit_fn fn)
{
    struct dsup_hooks *H = node->hooks;
    assert(!H->exit_hook || H->exit_hook == fn); /* one service hangs data off processes */
    H->exit_hook = fn;
}

void dsup_proc_run_exit_hook(struct dsup_proc *p)
{
    dsup_proc_exit_fn fn = p->node->hooks->exit_hook;
    if (fn)
        fn(p);
}
