/* node_hooks.c — small fixed tables of registered hooks (a handful of
 * services register once each; a full table is a programming error). */
#include "node_hooks.h"

#include <assert.h>

#include "log.h"

#define MAX_HOOKS 16

static struct {
    dsup_node_hook_fn fn;
    void *arg;
} hooks[MAX_HOOKS];
static int nhooks;

static dsup_node_call_fn calls[MAX_HOOKS];
static int ncalls;

int dsup_node_hook_add(dsup_node_hook_fn fn, void *arg)
{
    for (int i = 0; i < nhooks; i++)
        if (hooks[i].fn == fn && hooks[i].arg == arg)
            return 0;
    if (nhooks == MAX_HOOKS) {
        LOG_ERROR("BUG: more than %d node hooks", MAX_HOOKS);
        return -1;
    }
    hooks[nhooks].fn = fn;
    hooks[nhooks].arg = arg;
    nhooks++;
    return 0;
}

void dsup_node_hooks_run(dsup_node_event ev, const char *peer, int value)
{
    if (ev == DSUP_NODE_STOPPING) {
        for (int i = nhooks; i-- > 0;)
            hooks[i].fn(hooks[i].arg, ev, peer, value);
        return;
    }
    for (int i = 0; i < nhooks; i++)
        hooks[i].fn(hooks[i].arg, ev, peer, value);
}

int dsup_node_call_add(dsup_node_call_fn fn)
{
    for (int i = 0; i < ncalls; i++)
        if (calls[i] == fn)
            return 0;
    if (ncalls == MAX_HOOKS) {
        LOG_ERROR("BUG: more than %d dsup_node call handlers", MAX_HOOKS);
        return -1;
    }
    calls[ncalls++] = fn;
    return 0;
}

int dsup_node_calls_run(dsup_term req, ei_x_buff *reply)
{
    for (int i = 0; i < ncalls; i++)
        if (calls[i](req, reply))
            return 1;
    return 0;
}

static dsup_proc_exit_fn exit_hook;

void dsup_proc_set_exit_hook(dsup_proc_exit_fn fn)
{
    assert(!exit_hook || exit_hook == fn); /* one service hangs data off processes */
    exit_hook = fn;
}

void dsup_proc_run_exit_hook(struct dsup_proc *p)
{
    if (exit_hook)
        exit_hook(p);
}
