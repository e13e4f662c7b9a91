/* Examples.RateLimiter — a token bucket, as a C worker.
 *
 *   {:ok, pid} = GenServer.call({:dsup_node, node}, {:spawn, Examples.RateLimiter,
 *                                                    [rate: 10, burst: 20]})
 *   GenServer.call(pid, {:take, 1})     # {:ok, remaining} | {:error, {:retry_after_ms, t}}
 *   GenServer.call(pid, {:acquire, 1})  # waits until the tokens are there: {:ok, remaining}
 *   :sys.get_state(pid)                 # %{rate: 10, burst: 20, tokens: 19, ...}
 *
 * Init args (keyword list): rate — tokens added per second (default 10),
 * burst — bucket size (default = rate). The bucket starts full.
 * K must be an integer 1..burst: {error, badarg} / {error, {exceeds_burst, Burst}}.
 *
 * Tokens are refilled lazily from a monotonic clock on each call (no timer
 * ticking while idle). `acquire` callers wait in FIFO order: their `from` is
 * saved and answered later, when a dsup_send_after timer fires. A `take`
 * never jumps that queue. Arithmetic is in integers (1 token = 1e9 units), so
 * waiting exactly retry_after_ms always suffices. */
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "dsup.h"
#include "examples.h"

#define UNIT 1000000000ull /* units per token */
#define MAX_PARAM 1000000000L

typedef struct waiter {
    dsup_saved_from *from;
    long k;
    struct waiter *next;
} waiter;

typedef struct limiter {
    uint64_t rate;   /* tokens per second */
    uint64_t burst;  /* bucket size, tokens */
    uint64_t units;  /* tokens * UNIT */
    uint64_t last_ns;
    waiter *head, *tail;
    long nwaiting;
    uint64_t queued; /* tokens the waiters want, in total */
    uint64_t timer;  /* dsup_send_after id while armed, else 0 */
    uint64_t granted, refused;
} limiter;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void refill(limiter *l)
{
    uint64_t now = now_ns(), dt = now - l->last_ns, cap = l->burst * UNIT;
    l->last_ns = now;
    uint64_t missing = cap - l->units;
    /* dt * rate can overflow for a long idle time: compare first */
    if (dt >= (missing + l->rate - 1) / l->rate)
        l->units = cap;
    else
        l->units += dt * l->rate;
}

/* Milliseconds until `k` more tokens than the waiters want are there. */
static uint64_t retry_after_ms(const limiter *l, uint64_t k)
{
    uint64_t need = (l->queued + k) * UNIT;
    if (need <= l->units)
        return 0;
    uint64_t per_ms = l->rate * 1000000ull; /* units per ms */
    return (need - l->units + per_ms - 1) / per_ms;
}

/* A positive integer no larger than max, else -1. */
static long decode_count(dsup_term t, long max)
{
    long v;
    int i = 0;
    if (ei_decode_long(t.buf, &i, &v) < 0 || v < 1 || v > max)
        return -1;
    return v;
}

static int refuse_init(dsup_proc *self, const char *key)
{
    ei_x_buff x;
    ei_x_new(&x);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "bad_arg");
    ei_x_encode_atom(&x, key);
    dsup_stop(self, (dsup_term){ x.buff, (size_t)x.index }); /* copied */
    ei_x_free(&x);
    return -1;
}

static int rl_init(dsup_proc *self, dsup_term args, void **state)
{
    long rate = 10, burst = -1;
    dsup_term v;
    if (dsup_term_keyfind(args, "rate", &v) && (rate = decode_count(v, MAX_PARAM)) < 0)
        return refuse_init(self, "rate");
    if (dsup_term_keyfind(args, "burst", &v) && (burst = decode_count(v, MAX_PARAM)) < 0)
        return refuse_init(self, "burst");
    limiter *l = calloc(1, sizeof *l);
    if (!l) {
        dsup_stop_atom(self, "enomem");
        return -1;
    }
    l->rate = (uint64_t)rate;
    l->burst = (uint64_t)(burst > 0 ? burst : rate);
    l->units = l->burst * UNIT;
    l->last_ns = now_ns();
    *state = l;
    return 0;
}

static void encode_ok(ei_x_buff *x, const limiter *l)
{
    ei_x_encode_tuple_header(x, 2);
    ei_x_encode_atom(x, "ok");
    ei_x_encode_ulonglong(x, l->units / UNIT);
}

/* {error, Why} */
static void encode_error(ei_x_buff *x, const char *why)
{
    ei_x_encode_tuple_header(x, 2);
    ei_x_encode_atom(x, "error");
    ei_x_encode_atom(x, why);
}

/* {error, {Tag, N}} */
static void encode_error_n(ei_x_buff *x, const char *tag, uint64_t n)
{
    ei_x_encode_tuple_header(x, 2);
    ei_x_encode_atom(x, "error");
    ei_x_encode_tuple_header(x, 2);
    ei_x_encode_atom(x, tag);
    ei_x_encode_ulonglong(x, n);
}

/* Arm the timer for the first waiter, unless it is armed already. */
static void arm(dsup_proc *self, limiter *l)
{
    if (l->timer || !l->head)
        return;
    uint64_t need = (uint64_t)l->head->k * UNIT, per_ms = l->rate * 1000000ull;
    uint64_t ms = need > l->units ? (need - l->units + per_ms - 1) / per_ms : 0;
    ei_x_buff msg;
    ei_x_new(&msg);
    ei_x_encode_tuple_header(&msg, 2);
    ei_x_encode_atom(&msg, "$rate_limiter");
    ei_x_encode_atom(&msg, "refill");
    l->timer = dsup_send_after(self, (unsigned)(ms > 0xffffffffull ? 0xffffffffull : ms), &msg);
    ei_x_free(&msg);
}

/* Answer the waiters that can be served now, in order. */
static void serve(dsup_proc *self, limiter *l)
{
    ei_x_buff x;
    ei_x_new(&x);
    while (l->head && l->units >= (uint64_t)l->head->k * UNIT) {
        waiter *w = l->head;
        l->head = w->next;
        if (!l->head)
            l->tail = NULL;
        l->nwaiting--;
        l->queued -= (uint64_t)w->k;
        l->units -= (uint64_t)w->k * UNIT;
        l->granted++;
        dsup_x_reset(&x);
        encode_ok(&x, l);
        dsup_reply(w->from, &x); /* frees the saved from */
        free(w);
    }
    ei_x_free(&x);
    arm(self, l);
}

static dsup_call_ret rl_call(dsup_proc *self, void *state, dsup_term req, const dsup_from *from,
                             ei_x_buff *reply)
{
    limiter *l = state;
    dsup_term el[2];
    int ar;
    int take = dsup_term_tagged(req, "take", &ar, el, 2) && ar == 2;
    int acquire = !take && dsup_term_tagged(req, "acquire", &ar, el, 2) && ar == 2;
    if (!take && !acquire) {
        encode_error(reply, "unknown_call");
        return DSUP_REPLY;
    }
    long k = decode_count(el[1], MAX_PARAM);
    if (k < 0) {
        encode_error(reply, "badarg");
        return DSUP_REPLY;
    }
    if ((uint64_t)k > l->burst) {
        encode_error_n(reply, "exceeds_burst", l->burst);
        return DSUP_REPLY;
    }
    refill(l);
    uint64_t ms = retry_after_ms(l, (uint64_t)k);
    if (ms == 0) {
        l->units -= (uint64_t)k * UNIT;
        l->granted++;
        encode_ok(reply, l);
        return DSUP_REPLY;
    }
    if (take) {
        l->refused++;
        encode_error_n(reply, "retry_after_ms", ms);
        return DSUP_REPLY;
    }
    /* acquire: queue the caller and answer from serve() later */
    waiter *w = calloc(1, sizeof *w);
    if (!w || !(w->from = dsup_from_save(from))) {
        free(w);
        encode_error(reply, "enomem");
        return DSUP_REPLY;
    }
    w->k = k;
    if (l->tail)
        l->tail->next = w;
    else
        l->head = w;
    l->tail = w;
    l->nwaiting++;
    l->queued += (uint64_t)k;
    arm(self, l);
    return DSUP_NOREPLY;
}

static void rl_info(dsup_proc *self, void *state, dsup_term msg)
{
    limiter *l = state;
    dsup_term el[2];
    int ar;
    if (dsup_term_tagged(msg, "$rate_limiter", &ar, el, 2) && ar == 2 &&
        dsup_term_is_atom(el[1], "refill")) {
        l->timer = 0;
        refill(l);
        serve(self, l);
    }
}

static void rl_terminate(dsup_proc *self, void *state, dsup_term reason)
{
    limiter *l = state;
    if (!l)
        return;
    if (l->timer)
        dsup_cancel_timer(self, l->timer);
    /* The waiting callers see the exit through their call's monitor. */
    while (l->head) {
        waiter *w = l->head;
        l->head = w->next;
        dsup_from_discard(w->from);
        free(w);
    }
    free(l);
}

static int rl_state(dsup_proc *self, void *state, ei_x_buff *out)
{
    limiter *l = state;
    refill(l);
    ei_x_encode_map_header(out, 6);
    ei_x_encode_atom(out, "rate");
    ei_x_encode_ulonglong(out, l->rate);
    ei_x_encode_atom(out, "burst");
    ei_x_encode_ulonglong(out, l->burst);
    ei_x_encode_atom(out, "tokens");
    ei_x_encode_ulonglong(out, l->units / UNIT);
    ei_x_encode_atom(out, "waiting");
    ei_x_encode_long(out, l->nwaiting);
    ei_x_encode_atom(out, "granted");
    ei_x_encode_ulonglong(out, l->granted);
    ei_x_encode_atom(out, "refused");
    ei_x_encode_ulonglong(out, l->refused);
    return 0;
}

const dsup_worker_type examples_rate_limiter = {
    .name = "Elixir.Examples.RateLimiter",
    .init = rl_init,
    .handle_call = rl_call,
    .handle_info = rl_info,
    .terminate = rl_terminate,
    .encode_state = rl_state,
};
