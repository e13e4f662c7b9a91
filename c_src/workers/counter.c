/* counter — an integer with get / inc / {add, K}; `checkpoint` publishes
 * the value (dsup_checkpoint: a kill -9 of the host restarts it from it);
 * counts info messages;
 * `stop` answers ok then stops normally; {crash, Reason} stops with Reason
 * without answering. Init args: [{value, N}]. */
#include "dsup.h"
#include "workers.h"

typedef struct counter {
    long value;
    long infos;
} counter;

/* The state lives with the process (state_size): nothing to allocate or free.
 * A handoff (the value the previous copy had) wins over the init args. */
static int counter_init(dsup_proc *self, dsup_term args, void **state)
{
    counter *c = *state;
    dsup_term v;
    if (dsup_handoff_state(self, &v) || dsup_term_keyfind(args, "value", &v)) {
        int i = 0;
        if (ei_decode_long(v.buf, &i, &c->value) < 0) {
            dsup_stop_atom(self, "badarg");
            return -1;
        }
    }
    return 0;
}

static dsup_call_ret counter_call(dsup_proc *self, void *state, dsup_term req, const dsup_from *from,
                                  ei_x_buff *reply)
{
    counter *c = state;
    dsup_term el[3];
    int ar;
    if (dsup_term_is_atom(req, "get")) {
        ei_x_encode_long(reply, c->value);
    } else if (dsup_term_is_atom(req, "info_count")) {
        ei_x_encode_long(reply, c->infos);
    } else if (dsup_term_tagged(req, "add", &ar, el, 3) && ar == 2) {
        long k;
        int i = 0;
        if (ei_decode_long(el[1].buf, &i, &k) < 0) {
            ei_x_encode_tuple_header(reply, 2);
            dsup_x_encode_atom(reply, "error");
            dsup_x_encode_atom(reply, "badarg");
        } else {
            c->value += k;
            ei_x_encode_long(reply, c->value);
        }
    } else if (dsup_term_is_atom(req, "checkpoint")) {
        char buf[16]; /* publish the value for a crash: one small integer term */
        int n = 0;
        ei_encode_long(buf, &n, c->value);
        int rc = dsup_checkpoint(self, (dsup_term){ buf, (size_t)n });
        dsup_x_encode_atom(reply, rc == 0 ? "ok" : "not_supervised");
    } else if (dsup_term_is_atom(req, "stop")) {
        dsup_x_encode_atom(reply, "ok");
        dsup_stop_atom(self, "normal");
    } else if (dsup_term_tagged(req, "crash", &ar, el, 3) && ar == 2) {
        dsup_stop(self, el[1]);
        return DSUP_NOREPLY;
    } else {
        ei_x_encode_tuple_header(reply, 2);
        dsup_x_encode_atom(reply, "error");
        dsup_x_encode_atom(reply, "unknown_call");
    }
    return DSUP_REPLY;
}

static void counter_cast(dsup_proc *self, void *state, dsup_term msg)
{
    counter *c = state;
    if (dsup_term_is_atom(msg, "inc"))
        c->value++;
}

static void counter_info(dsup_proc *self, void *state, dsup_term msg)
{
    ((counter *)state)->infos++;
}

static int counter_state(dsup_proc *self, void *state, ei_x_buff *out)
{
    return ei_x_encode_long(out, ((counter *)state)->value);
}

static int counter_replace(dsup_proc *self, void **state, dsup_term t)
{
    long v;
    int i = 0;
    if (ei_decode_long(t.buf, &i, &v) < 0)
        return -1;
    ((counter *)*state)->value = v;
    return 0;
}

/* Handoff and :sys.get_state carry the same term: the value. */
const dsup_worker_type dsup_worker_counter = {
    .name = "counter",
    .init = counter_init,
    .handle_call = counter_call,
    .handle_cast = counter_cast,
    .handle_info = counter_info,
    .encode_state = counter_state,
    .replace_state = counter_replace,
    .handoff_state = counter_state,
    .state_size = sizeof(counter),
};
