/* A worker type for the tests whose init can be made to fail: after a call
 * {fail_next, N} to any flaky worker, the next N inits of flaky workers
 * refuse to start (reason init_refused), so a test can make restarts fail
 * a known number of times. Calls: {fail_next, N} -> ok; {crash, Reason}
 * stops with Reason (no reply); anything else is echoed. */
#include "dsup.h"

static long fail_next; /* one event loop thread: no lock */

static int flaky_init(dsup_proc *self, dsup_term args, void **state)
{
    if (fail_next > 0) {
        fail_next--;
        dsup_stop_atom(self, "init_refused");
        return -1;
    }
    return 0;
}

static dsup_call_ret flaky_call(dsup_proc *self, void *state, dsup_term req, const dsup_from *from,
                                ei_x_buff *reply)
{
    dsup_term el[2];
    int ar, i = 0;
    if (dsup_term_tagged(req, "crash", &ar, el, 2) && ar == 2) {
        dsup_stop(self, el[1]);
        return DSUP_NOREPLY;
    }
    if (dsup_term_tagged(req, "fail_next", &ar, el, 2) && ar == 2 && ei_decode_long(el[1].buf, &i, &fail_next) == 0) {
        dsup_x_encode_atom(reply, "ok");
        return DSUP_REPLY;
    }
    dsup_x_encode_term(reply, req);
    return DSUP_REPLY;
}

static const dsup_worker_type flaky = { .name = "flaky", .init = flaky_init, .handle_call = flaky_call };

__attribute__((visibility("default"))) int dsup_plugin_init(void)
{
    return dsup_register_worker_type(&flaky) < 0 ? -1 : DSUP_ABI_VERSION;
}
