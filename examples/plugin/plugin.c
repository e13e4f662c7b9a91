/* The example plugin: load it with
 *
 *   dsup-node --name dsup@127.0.0.1 --load build/examples/dsup_examples.so
 *
 * dsup-node dlopens the .so and calls its dsup_plugin_init(), which registers
 * the worker types and returns the ABI version it was compiled against
 * (a node older than that ABI version refuses the plugin and exits).
 * Build it with -fPIC -shared against include/dsup.h and erl_interface's
 * headers only; the dsup_* and ei_* functions come from the node itself. */
#include "dsup.h"
#include "examples.h"

static int register_type(const dsup_worker_type *t)
{
    /* Registering the same struct twice (the .so loaded twice) returns 0. */
    if (dsup_register_worker_type(t) == 0)
        return 0;
    dsup_log(DSUP_LOG_ERROR, "examples plugin: cannot register worker type %s (name taken)", t->name);
    return -1;
}

__attribute__((visibility("default"))) int dsup_plugin_init(void)
{
    /* The node only checks the return value against DSUP_ABI_VERSION, so a
     * failure can only be reported as "wrong version" (-1 here). */
    if (register_type(&examples_rate_limiter) < 0 || register_type(&examples_hasher) < 0)
        return -1;
    return DSUP_ABI_VERSION;
}

/* Make sure a mismatch between this prototype and the one the node calls
 * through is caught at compile time. */
static const dsup_plugin_init_fn check_init_type __attribute__((unused)) = dsup_plugin_init;
