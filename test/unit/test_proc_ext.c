/* test_proc_ext.c — a process's rarely used parts (links, monitors, stop
 * reason, behaviour extras) live behind one pointer that stays NULL until
 * one is used (proc.h, dsup_proc_ext), and a process keeps no pid of its own
 * (built from its key), so that an idle child with 16 bytes of state is one
 * 80-byte malloc chunk (issue 19, README "Memory per child").
 *
 * One node on a real uv loop (listening on loopback, no epmd): an idle worker
 * has no extras and fits the chunk; a monitor and a link make the extras once
 * and they are kept (the same allocation) across demonitor/unlink and a
 * second monitor (a child gives an emptied watchers vector back, a
 * registered process keeps it); stops and exit signals behave as before: DOWN and EXIT
 * carry the reason given to dsup_stop, a stop in init is the spawn's error,
 * a kill ends a process that never had extras. dsup_self still hands out a
 * pointer that stays valid while the process lives, makes no extras, and a
 * process that takes the place (and memory) of an ended one has its own pid.
 * Under ASan, LeakSanitizer checks that the extras and dsup_self's pids are
 * freed with the process. */
#include "unit_helpers.h"
#include "unit_loop.h"

#include <malloc.h>
#include <uv.h>

#include "dsup.h"
#include "node.h"
#include "proc.h"

#define DEADLINE_MS 10000

static uv_loop_t loop;
static dsup_node *N;

/* Run the loop until cond(arg) holds (1) or ms pass (0). */
static int run_until(int (*cond)(void *arg), void *arg, unsigned ms) { return unit_run_until(&loop, cond, arg, ms); }

/* ---- a probe: traps exits, keeps every message ------------------------------- */

#define MAX_MSGS 16
static dsup_term msgs[MAX_MSGS];
static int nmsgs;

static int probe_init(dsup_proc *self, dsup_term args, void **state)
{
    dsup_trap_exit(self, 1);
    return 0;
}

static void probe_info(dsup_proc *self, void *state, dsup_term msg)
{
    if (nmsgs < MAX_MSGS)
        msgs[nmsgs++] = dsup_term_dup(msg);
}

static const dsup_worker_type probe_type = { .name = "pe_probe", .init = probe_init, .handle_info = probe_info };

/* ---- the worker: 16 bytes of state, like the built-in counter ------------------ */

typedef struct pe_state {
    long a, b;
} pe_state;

/* {stop, Reason} -> ok, then it stops with Reason. */
static dsup_call_ret worker_call(dsup_proc *self, void *state, dsup_term req, const dsup_from *from,
                                 ei_x_buff *reply)
{
    dsup_term el[3];
    int ar;
    if (dsup_term_tagged(req, "stop", &ar, el, 3) && ar == 2)
        dsup_stop(self, el[1]);
    dsup_x_encode_atom(reply, "ok");
    return DSUP_REPLY;
}

static const dsup_worker_type worker_type = {
    .name = "pe_worker", .state_size = sizeof(pe_state), .handle_call = worker_call
};

/* Refuses to start: dsup_stop in init gives the spawn its reason. */
static int refuser_init(dsup_proc *self, dsup_term args, void **state)
{
    dsup_stop_atom(self, "pe_no");
    return -1;
}

static const dsup_worker_type refuser_type = { .name = "pe_refuser", .init = refuser_init };

/* ---- helpers ------------------------------------------------------------------ */

static int node_up(void *arg) { return dsup_node_is_up(N); }
static int node_stopped(void *arg) { return dsup_node_is_stopped(N); }

static dsup_proc *spawn(const char *type, dsup_pid *pid)
{
    ei_x_buff why;
    ei_x_new(&why);
    assert_int_equal(dsup_spawn(N, type, NULL, NULL, pid, &why), DSUP_OK);
    ei_x_free(&why);
    dsup_proc *p = dsup_proc_lookup(N, pid);
    assert_non_null(p);
    return p;
}

typedef struct want_msg {
    const char *tag; /* DOWN or EXIT */
    int arity;
    const char *reason;
} want_msg;

/* The probe got {Tag, ..., Reason} with Reason the atom wanted. */
static int got(void *arg)
{
    const want_msg *w = arg;
    for (int k = 0; k < nmsgs; k++) {
        dsup_term el[5];
        int ar;
        if (dsup_term_tagged(msgs[k], w->tag, &ar, el, 5) && ar == w->arity &&
            dsup_term_is_atom(el[ar - 1], w->reason))
            return 1;
    }
    return 0;
}

static int gone(void *arg) { return dsup_proc_lookup(N, arg) == NULL; }

/* ---- the test ------------------------------------------------------------------ */

static void test_extras_made_on_first_use_and_kept(void **st)
{
    assert_int_equal(dsup_register_worker_type(&probe_type), DSUP_OK);
    assert_int_equal(dsup_register_worker_type(&worker_type), DSUP_OK);
    assert_int_equal(dsup_register_worker_type(&refuser_type), DSUP_OK);
    assert_int_equal(uv_loop_init(&loop), 0);
    dsup_node_config c = { .name = "pe_a@127.0.0.1", .cookie = "proc-ext", .listen_address = "127.0.0.1",
                           .no_epmd = 1 };
    N = dsup_node_new(&loop, &c);
    assert_non_null(N);
    assert_int_equal(dsup_node_start(N), 0);
    assert_true(run_until(node_up, NULL, DEADLINE_MS));

    /* An idle worker: no extras; it and its 16 B of state are one 72-byte
     * request, which glibc serves from an 80-byte chunk (72 usable). */
    dsup_pid wpid, ppid;
    dsup_proc *w = spawn("pe_worker", &wpid);
    dsup_proc *pr = spawn("pe_probe", &ppid);
    assert_null(w->ext);
    assert_null(pr->ext); /* trap_exit is a bit, not an extra */
    assert_int_equal(malloc_usable_size(w), 72);
    assert_ptr_equal(dsup_state(w), (char *)w + sizeof *w);

    /* dsup_self: the spawned pid, the same pointer on every call, still
     * right after another process asked; no extras for it. */
    const dsup_pid *wself = dsup_self(w);
    assert_true(dsup_pid_eq(wself, &wpid));
    assert_ptr_equal(wself->node, N->name);
    assert_int_equal(wself->creation, N->creation);
    const dsup_pid *pself = dsup_self(pr);
    assert_true(dsup_pid_eq(pself, &ppid));
    assert_false(dsup_pid_eq(pself, wself));
    assert_true(dsup_pid_eq(wself, &wpid));
    assert_ptr_equal(dsup_self(w), wself);
    assert_ptr_equal(dsup_self(pr), pself);
    assert_null(w->ext);

    /* A monitor makes the extras of both sides; a demonitor keeps them. */
    dsup_ref ref;
    assert_int_equal(dsup_monitor(pr, &wpid, &ref), 0);
    assert_non_null(w->ext);
    assert_non_null(pr->ext);
    dsup_proc_ext *wx = w->ext, *px = pr->ext;
    assert_int_equal(dsup_proc_watcher_count(w), 1);
    assert_int_equal(dsup_demonitor(pr, &ref), 0);
    assert_int_equal(dsup_proc_watcher_count(w), 0);
    assert_ptr_equal(w->ext, wx);
    assert_null(wx->watchers.h); /* a child gives its emptied watchers vector back */

    /* A registered process (an instance: called on every start) keeps it:
     * monitor and demonitor again allocate nothing. */
    dsup_pid rpid0;
    dsup_proc *rw = spawn("pe_worker", &rpid0);
    assert_int_equal(dsup_proc_register(rw, "pe_named"), 0);
    dsup_ref rref;
    assert_int_equal(dsup_monitor(pr, &rpid0, &rref), 0);
    assert_int_equal(dsup_demonitor(pr, &rref), 0);
    assert_int_equal(dsup_proc_watcher_count(rw), 0);
    dsup_ivec_hdr *kept = rw->ext->watchers.h;
    assert_non_null(kept);
    assert_int_equal(dsup_monitor(pr, &rpid0, &rref), 0);
    assert_ptr_equal(rw->ext->watchers.h, kept);
    assert_int_equal(dsup_proc_watcher_count(rw), 1);
    assert_int_equal(dsup_demonitor(pr, &rref), 0);
    assert_ptr_equal(rw->ext->watchers.h, kept);
    /* (freed with the process: LeakSanitizer checks it under ASan) */
    assert_int_equal(dsup_exit(pr, &rpid0, dsup_reason_atom(N, "kill")), 0);
    assert_true(run_until(gone, &rpid0, DEADLINE_MS));

    assert_int_equal(dsup_monitor(pr, &wpid, &ref), 0);
    assert_ptr_equal(w->ext, wx); /* the second call made nothing new */
    assert_ptr_equal(pr->ext, px);
    assert_int_equal(dsup_proc_watcher_count(w), 1);

    /* A link, an unlink, a link again: the same extras. */
    assert_int_equal(dsup_link(pr, &wpid), 0);
    assert_int_equal(dsup_proc_link_count(w), 1);
    assert_int_equal(dsup_proc_link_count(pr), 1);
    assert_int_equal(dsup_unlink(pr, &wpid), 0);
    assert_int_equal(dsup_proc_link_count(w), 0);
    assert_int_equal(dsup_link(pr, &wpid), 0);
    assert_ptr_equal(w->ext, wx);
    assert_null(dsup_proc_stop_reason(w));

    /* The worker stops with a reason of the caller's ({stop, pe_bye}): the
     * probe gets the reply, then DOWN and EXIT with that reason. */
    ei_x_buff m;
    ei_x_new(&m);
    ei_x_encode_tuple_header(&m, 3);
    dsup_x_encode_atom(&m, "$gen_call");
    ei_x_encode_tuple_header(&m, 2);
    dsup_x_encode_pid(&m, &ppid);
    ei_x_encode_long(&m, 1);
    ei_x_encode_tuple_header(&m, 2);
    dsup_x_encode_atom(&m, "stop");
    dsup_x_encode_atom(&m, "pe_bye");
    assert_int_equal(dsup_send(pr, &wpid, &m), 0);
    want_msg down = { "DOWN", 5, "pe_bye" }, ex = { "EXIT", 3, "pe_bye" };
    assert_true(run_until(got, &down, DEADLINE_MS));
    assert_true(run_until(got, &ex, DEADLINE_MS));
    assert_null(dsup_proc_lookup(N, &wpid));
    /* The probe's monitor went with the DOWN, its link with the EXIT. */
    assert_int_equal(dsup_proc_link_count(pr), 0);
    assert_ptr_equal(pr->ext, px);

    /* dsup_stop in init: the spawn fails with that reason. */
    ei_x_buff why;
    ei_x_new(&why);
    dsup_pid rpid;
    assert_int_equal(dsup_spawn(N, "pe_refuser", NULL, NULL, &rpid, &why), DSUP_EREFUSED);
    assert_true(dsup_term_is_atom((dsup_term){ why.buff, (size_t)why.index }, "pe_no"));
    ei_x_free(&why);

    /* A kill ends a worker that never had extras. */
    dsup_pid w2pid;
    dsup_proc *w2 = spawn("pe_worker", &w2pid);
    assert_null(w2->ext);
    assert_true(dsup_pid_eq(dsup_self(w2), &w2pid));
    assert_int_equal(dsup_exit(pr, &w2pid, dsup_reason_atom(N, "kill")), 0);
    assert_true(run_until(gone, &w2pid, DEADLINE_MS));
    /* Processes that come after (one likely in w2's memory) have their own
     * pids, from dsup_self too. */
    for (int k = 0; k < 3; k++) {
        dsup_pid w3pid;
        dsup_proc *w3 = spawn("pe_worker", &w3pid);
        assert_false(dsup_pid_eq(&w3pid, &w2pid));
        assert_true(dsup_pid_eq(dsup_self(w3), &w3pid));
        assert_int_equal(dsup_exit(pr, &w3pid, dsup_reason_atom(N, "kill")), 0);
        assert_true(run_until(gone, &w3pid, DEADLINE_MS));
    }

    ei_x_free(&m);
    dsup_shutdown(N);
    assert_true(run_until(node_stopped, NULL, DEADLINE_MS));
    dsup_node_free(N);
    for (int k = 0; k < nmsgs; k++)
        dsup_term_free(&msgs[k]);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_extras_made_on_first_use_and_kept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
