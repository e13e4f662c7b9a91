/* echo — answers every call with the request itself. The smallest worker,
 * and the one the call benchmarks use. */
#include "dsup.h"
#include "workers.h"

static dsup_call_ret echo_call(dsup_proc *self, void *state, dsup_term req, const dsup_from *from,
                               ei_x_buff *reply)
{
    dsup_x_encode_term(reply, req);
    return DSUP_REPLY;
}

static int echo_state(dsup_proc *self, void *state, ei_x_buff *out)
{
    return dsup_x_encode_atom(out, "echo");
}

const dsup_worker_type dsup_worker_echo = {
    .name = "echo",
    .handle_call = echo_call,
    .encode_state = echo_state,
};
