/* Examples.Hasher — slow, CPU-bound calls answered later, off the event loop.
 *
 *   {:ok, pid} = GenServer.call({:dsup_node, node}, {:spawn, Examples.Hasher, []})
 *   GenServer.call(pid, {:nth_prime, 1000})          # {:ok, 7919}
 *   GenServer.call(pid, {:fnv1a, "data", 3})         # {:ok, 64-bit integer}
 *   GenServer.call(pid, :ping)                       # :pong, even while the above run
 *   :sys.get_state(pid)                              # %{in_flight: 0, completed: 2}
 *
 * {nth_prime, N} (1..10_000_000) finds the N-th prime by trial division.
 * {fnv1a, Binary, Rounds} (Rounds 1..1_000_000) runs 64-bit FNV-1a over
 * Binary Rounds times, carrying the hash from round to round:
 *   h = 14695981039346656037; repeat Rounds: for each byte B: h = (h bxor B) * 1099511628211 mod 2^64
 *
 * Pattern: handle_call saves `from` (dsup_from_save) and copies what the job
 * needs out of the request (the request term dies with the callback), then
 * dsup_queue_work runs the job on libuv's thread pool and returns
 * DSUP_NOREPLY. The loop stays free for other calls. The done callback runs
 * on the loop thread and answers with dsup_reply. If the worker died
 * meanwhile, done gets self == NULL: discard the saved from and free. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dsup.h"
#include "examples.h"

enum { JOB_PRIME, JOB_FNV };

typedef struct job {
    int kind;
    unsigned long n;       /* N, or Rounds */
    unsigned char *data;   /* fnv1a input (a copy) */
    long len;
    uint64_t result;
    dsup_saved_from *from;
} job;

typedef struct hasher {
    long in_flight;
    unsigned long completed;
} hasher;

static uint64_t nth_prime(unsigned long n)
{
    if (n == 1)
        return 2;
    unsigned long found = 1;
    for (uint64_t c = 3;; c += 2) {
        int prime = 1;
        for (uint64_t d = 3; d * d <= c; d += 2)
            if (c % d == 0) {
                prime = 0;
                break;
            }
        if (prime && ++found == n)
            return c;
    }
}

static uint64_t fnv1a(const unsigned char *p, long len, unsigned long rounds)
{
    uint64_t h = 14695981039346656037ull;
    while (rounds--)
        for (long i = 0; i < len; i++)
            h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* On a thread-pool thread: touch only the job. */
static void run_job(void *arg)
{
    job *j = arg;
    j->result = j->kind == JOB_PRIME ? nth_prime(j->n) : fnv1a(j->data, j->len, j->n);
}

static void free_job(job *j)
{
    free(j->data);
    free(j);
}

/* Back on the loop thread. */
static void job_done(dsup_proc *self, void *arg, int status)
{
    job *j = arg;
    if (!self) { /* the worker is gone, and so is its caller's interest */
        dsup_from_discard(j->from);
        free_job(j);
        return;
    }
    hasher *h = dsup_state(self);
    h->in_flight--;
    h->completed++;
    ei_x_buff x;
    ei_x_new(&x);
    ei_x_encode_tuple_header(&x, 2);
    if (status == 0) {
        ei_x_encode_atom(&x, "ok");
        ei_x_encode_ulonglong(&x, j->result);
    } else { /* uv cancelled the work */
        ei_x_encode_atom(&x, "error");
        ei_x_encode_atom(&x, "cancelled");
    }
    dsup_reply(j->from, &x); /* frees the saved from */
    ei_x_free(&x);
    free_job(j);
}

static int hasher_init(dsup_proc *self, dsup_term args, void **state)
{
    *state = calloc(1, sizeof(hasher));
    if (!*state) {
        dsup_stop_atom(self, "enomem");
        return -1;
    }
    return 0;
}

static int decode_ulong(dsup_term t, unsigned long max, unsigned long *out)
{
    long v;
    int i = 0;
    if (ei_decode_long(t.buf, &i, &v) < 0 || v < 1 || (unsigned long)v > max)
        return -1;
    *out = (unsigned long)v;
    return 0;
}

/* The job for a request, or NULL for a bad one. */
static job *parse(dsup_term req)
{
    dsup_term el[3];
    int ar;
    job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    if (dsup_term_tagged(req, "nth_prime", &ar, el, 3) && ar == 2 &&
        decode_ulong(el[1], 10000000, &j->n) == 0) {
        j->kind = JOB_PRIME;
        return j;
    }
    if (dsup_term_tagged(req, "fnv1a", &ar, el, 3) && ar == 3 &&
        decode_ulong(el[2], 1000000, &j->n) == 0) {
        int type, size, i = 0;
        if (ei_get_type(el[1].buf, &i, &type, &size) == 0 && type == ERL_BINARY_EXT) {
            j->kind = JOB_FNV;
            j->data = malloc(size ? (size_t)size : 1);
            if (j->data && ei_decode_binary(el[1].buf, &i, j->data, &j->len) == 0)
                return j;
        }
    }
    free_job(j);
    return NULL;
}

static dsup_call_ret hasher_call(dsup_proc *self, void *state, dsup_term req, const dsup_from *from,
                                 ei_x_buff *reply)
{
    hasher *h = state;
    if (dsup_term_is_atom(req, "ping")) {
        ei_x_encode_atom(reply, "pong");
        return DSUP_REPLY;
    }
    job *j = parse(req);
    if (!j) {
        ei_x_encode_tuple_header(reply, 2);
        ei_x_encode_atom(reply, "error");
        ei_x_encode_atom(reply, "badarg");
        return DSUP_REPLY;
    }
    j->from = dsup_from_save(from);
    if (!j->from || dsup_queue_work(self, j, run_job, job_done) < 0) {
        dsup_from_discard(j->from);
        free_job(j);
        ei_x_encode_tuple_header(reply, 2);
        ei_x_encode_atom(reply, "error");
        ei_x_encode_atom(reply, "busy");
        return DSUP_REPLY;
    }
    h->in_flight++;
    return DSUP_NOREPLY;
}

static void hasher_terminate(dsup_proc *self, void *state, dsup_term reason)
{
    free(state); /* running jobs are freed by job_done(NULL, ...) */
}

static int hasher_state(dsup_proc *self, void *state, ei_x_buff *out)
{
    hasher *h = state;
    ei_x_encode_map_header(out, 2);
    ei_x_encode_atom(out, "in_flight");
    ei_x_encode_long(out, h->in_flight);
    ei_x_encode_atom(out, "completed");
    ei_x_encode_ulong(out, h->completed);
    return 0;
}

const dsup_worker_type examples_hasher = {
    .name = "Elixir.Examples.Hasher",
    .init = hasher_init,
    .handle_call = hasher_call,
    .terminate = hasher_terminate,
    .encode_state = hasher_state,
};
