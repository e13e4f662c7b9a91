/* sup_claim.c — one winner per child name, whatever node each caller names.
 *
 * A start on a node that is not the name's owner (its ring owner among the
 * hosts able to run it, sup_place.c) first asks the owner (the arbiter) to
 * reserve the name; only a granted reservation starts the
 * child, and the arbiter answers every other claimant with the winner's pid:
 *
 *   target -> arbiter  {'$dsup', {reserve, Name, Tag, TargetInst}}
 *   arbiter -> target  {'$dsup', {reserve_reply, Name, Tag, ArbiterInst,
 *                                 ok | {already_started, Pid}}}
 *   target -> arbiter  {'$dsup', {release, Name, Tag, Pid | failed}}
 *
 * The arbiter refuses a name that has a live copy (pg) or a confirmed claim;
 * while a reservation is open, further claimants wait in a queue and get the
 * winner's pid once the holder confirms (or the next one is granted when the
 * holder's start failed). A reservation the holder never confirms expires
 * after CLAIM_TTL_MS; one whose holder's node is lost is dropped at once.
 * A target whose arbiter is lost asks the new ring owner. Starts on the
 * owner itself take the fast path: no open reservation, start at once (the
 * local pg join makes the name visible to every later claim at once).
 *
 * Limits (README "How instances cooperate"): each side of a partition
 * arbitrates for itself (the duplicate rule keeps one copy after heal), and
 * during a ring change an in-flight reservation at the old owner does not
 * bind the new one (same rule). */
#include <stdlib.h>
#include <string.h>

#include "intern.h"
#include "xalloc.h"
#include "log.h"
#include "node.h"
#include "sup.h"
#include "term.h"

#define CLAIM_TTL_MS 5000    /* an open or confirmed claim with no news */
#define WAIT_TTL_MS 15000    /* a target gives up on a silent arbiter */
#define SWEEP_MS 1000

typedef struct claim_waiter {
    dsup_pid inst;
    uint64_t tag;
} claim_waiter;

/* Arbiter side, stored inline in s->claims under the child's name. */
typedef struct sup_claim {
    dsup_pid holder;             /* the instance starting the child */
    uint64_t tag;
    uint64_t deadline;
    int confirmed;               /* the holder started it: child is its pid */
    dsup_pid child;
    claim_waiter *waiters;
    int nwaiters;
} sup_claim;

/* Target side: a start waiting for the arbiter's word. */
struct sup_claim_wait {
    uint64_t tag;
    const char *arbiter;         /* node asked */
    uint64_t deadline;
    dsup_child_spec *spec;       /* named */
    dsup_saved_from *from;
    struct sup_claim_wait *next;
};

enum { GRANTED, TAKEN, QUEUED };

/* ---- messages --------------------------------------------------------------- */

static void dsup_msg_header(ei_x_buff *x, const char *what, int arity)
{
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "$dsup");
    ei_x_encode_tuple_header(x, arity);
    dsup_x_encode_atom(x, what);
}

static void send_reserve(dsup_sup *s, const dsup_pid *arbiter, dsup_term name, uint64_t tag)
{
    ei_x_buff *x = dsup_term_scratch(s->node);
    dsup_msg_header(x, "reserve", 4);
    dsup_x_encode_term(x, name);
    ei_x_encode_ulonglong(x, tag);
    dsup_x_encode_pid(x, dsup_self(s->proc));
    dsup_send(s->proc, arbiter, x);
    dsup_term_scratch_release(x);
}

/* taken NULL: ok, else {already_started, *taken}. */
static void send_reserve_reply(dsup_sup *s, const dsup_pid *to, dsup_term name, uint64_t tag, const dsup_pid *taken)
{
    ei_x_buff *x = dsup_term_scratch(s->node);
    dsup_msg_header(x, "reserve_reply", 5);
    dsup_x_encode_term(x, name);
    ei_x_encode_ulonglong(x, tag);
    dsup_x_encode_pid(x, dsup_self(s->proc));
    if (taken) {
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_atom(x, "already_started");
        dsup_x_encode_pid(x, taken);
    } else {
        dsup_x_encode_atom(x, "ok");
    }
    dsup_send(s->proc, to, x);
    dsup_term_scratch_release(x);
}

/* child NULL: failed. */
static void send_release(dsup_sup *s, const dsup_pid *arbiter, dsup_term name, uint64_t tag, const dsup_pid *child)
{
    ei_x_buff *x = dsup_term_scratch(s->node);
    dsup_msg_header(x, "release", 4);
    dsup_x_encode_term(x, name);
    ei_x_encode_ulonglong(x, tag);
    if (child)
        dsup_x_encode_pid(x, child);
    else
        dsup_x_encode_atom(x, "failed");
    dsup_send(s->proc, arbiter, x);
    dsup_term_scratch_release(x);
}

static void reply_already_started(dsup_sup *s, dsup_saved_from *from, const dsup_pid *pid)
{
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "error");
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "already_started");
    dsup_x_encode_pid(x, pid);
    dsup_reply(from, x);
    dsup_term_scratch_release(x);
}

/* ---- the sweep timer ------------------------------------------------------------ */

static void on_sweep(uv_timer_t *t);

static void arm_sweep(dsup_sup *s)
{
    if (!s->claim_timer) {
        s->claim_timer = dsup_xmalloc(sizeof *s->claim_timer);
        uv_timer_init(s->node->loop, s->claim_timer);
        s->claim_timer->data = s;
    }
    if (!uv_is_active((uv_handle_t *)s->claim_timer))
        uv_timer_start(s->claim_timer, on_sweep, SWEEP_MS, SWEEP_MS);
}

/* ---- arbiter ---------------------------------------------------------------------- */

/* Pids stored in a claim outlive the message that brought them: they hold
 * their node's name (intern.h) until the claim lets them go. */
static void pid_set(dsup_pid *slot, const dsup_pid *v)
{
    dsup_pid_hold(v);
    dsup_pid_release(slot);
    *slot = *v;
}

static void waiters_free(sup_claim *c)
{
    for (int i = 0; i < c->nwaiters; i++)
        dsup_pid_release(&c->waiters[i].inst);
    free(c->waiters);
    c->waiters = NULL;
    c->nwaiters = 0;
}

static sup_claim *claim_of(dsup_sup *s, dsup_term name)
{
    dsup_dict_ent *e = dsup_dict_find(&s->claims, name.buf, name.len);
    return e ? dsup_dict_val(e) : NULL;
}

static void claim_drop(dsup_sup *s, dsup_term name)
{
    dsup_dict_ent *e = dsup_dict_find(&s->claims, name.buf, name.len);
    if (!e)
        return;
    sup_claim *c = dsup_dict_val(e);
    waiters_free(c);
    dsup_pid_release(&c->holder);
    dsup_pid_release(&c->child);
    dsup_dict_delete(&s->claims, e->key, e->klen); /* frees the inline claim */
}

/* A claim for `name` by instance `inst` under `tag`: GRANTED (a reservation
 * is open for it), TAKEN (*taken set: the live or confirmed copy) or
 * QUEUED (answered when the open reservation ends). */
static int claim_request(dsup_sup *s, dsup_term name, const dsup_pid *inst, uint64_t tag, dsup_pid *taken)
{
    const dsup_pid *live;
    if (dsup_pg_members(s->scope, name, &live) > 0) {
        *taken = live[0];
        return TAKEN;
    }
    sup_claim *c = claim_of(s, name);
    if (c && c->confirmed) {
        *taken = c->child;
        return TAKEN;
    }
    if (c) {
        if (dsup_pid_eq(&c->holder, inst) && c->tag == tag)
            return GRANTED; /* asked twice (a retry): still its */
        claim_waiter *w = dsup_xrealloc(c->waiters, ((size_t)c->nwaiters + 1) * sizeof *w);
        c->waiters = w;
        dsup_pid_hold(inst);
        w[c->nwaiters++] = (claim_waiter){ *inst, tag };
        return QUEUED;
    }
    dsup_dict_ent *e = dsup_dict_upsert_inline(&s->claims, name.buf, name.len, sizeof *c, NULL);
    if (!e)
        return QUEUED;
    c = dsup_dict_val(e);
    memset(c, 0, sizeof *c);
    pid_set(&c->holder, inst);
    c->tag = tag;
    c->deadline = dsup_node_now(s->node) + CLAIM_TTL_MS;
    arm_sweep(s);
    return GRANTED;
}

static void claim_confirmed(dsup_sup *s, dsup_term name, sup_claim *c, const dsup_pid *child);

/* The open reservation ended without a child: grant the next claimant, or
 * forget the name. */
static void claim_failed(dsup_sup *s, dsup_term name, sup_claim *c)
{
    const dsup_pid *live;
    if (dsup_pg_members(s->scope, name, &live) > 0) {
        dsup_pid winner = live[0];
        claim_confirmed(s, name, c, &winner); /* a copy appeared meanwhile: it wins */
        return;
    }
    if (c->nwaiters == 0) {
        claim_drop(s, name);
        return;
    }
    claim_waiter next = c->waiters[0];
    memmove(c->waiters, c->waiters + 1, (size_t)(c->nwaiters - 1) * sizeof *c->waiters);
    c->nwaiters--;
    dsup_pid_release(&c->holder); /* the waiter's hold passes to the holder slot */
    c->holder = next.inst;
    c->tag = next.tag;
    c->deadline = dsup_node_now(s->node) + CLAIM_TTL_MS;
    send_reserve_reply(s, &next.inst, name, next.tag, NULL);
}

/* The holder started the child: every waiter lost to it. */
static void claim_confirmed(dsup_sup *s, dsup_term name, sup_claim *c, const dsup_pid *child)
{
    for (int i = 0; i < c->nwaiters; i++)
        send_reserve_reply(s, &c->waiters[i].inst, name, c->waiters[i].tag, child);
    waiters_free(c);
    const dsup_pid *live;
    size_t n = dsup_pg_members(s->scope, name, &live);
    for (size_t i = 0; i < n; i++)
        if (dsup_pid_eq(&live[i], child)) {
            claim_drop(s, name); /* pg has it: the registry answers from now on */
            return;
        }
    c->confirmed = 1;
    pid_set(&c->child, child);
    c->deadline = dsup_node_now(s->node) + CLAIM_TTL_MS;
}

static void on_reserve(dsup_sup *s, dsup_term name, uint64_t tag, const dsup_pid *inst)
{
    dsup_pid taken;
    int r = claim_request(s, name, inst, tag, &taken);
    if (r != QUEUED)
        send_reserve_reply(s, inst, name, tag, r == TAKEN ? &taken : NULL);
}

static void on_release(dsup_sup *s, dsup_term name, uint64_t tag, dsup_term result)
{
    sup_claim *c = claim_of(s, name);
    if (!c || c->confirmed || c->tag != tag)
        return; /* expired meanwhile */
    dsup_pid child;
    int i = 0;
    if (dsup_decode_pid(s->node, result.buf, &i, &child) == 0)
        claim_confirmed(s, name, c, &child);
    else
        claim_failed(s, name, c);
}

int sup_claim_busy(dsup_sup *s, dsup_term name)
{
    return claim_of(s, name) != NULL;
}

/* ---- target ------------------------------------------------------------------------ */

static void wait_free(sup_claim_wait *w)
{
    dsup_intern_release(w->arbiter);
    dsup_from_discard(w->from);
    free(w->spec);
    free(w);
}

static sup_claim_wait *wait_take(dsup_sup *s, uint64_t tag)
{
    for (sup_claim_wait **pp = &s->claim_waits; *pp; pp = &(*pp)->next)
        if ((*pp)->tag == tag) {
            sup_claim_wait *w = *pp;
            *pp = w->next;
            return w;
        }
    return NULL;
}

/* Start the child of a granted claim, answer the caller and the arbiter. */
static void start_granted(dsup_sup *s, sup_claim_wait *w, const dsup_pid *arbiter)
{
    dsup_term name = w->spec->name;
    ei_x_buff *key = dsup_term_scratch(s->node), *x = dsup_term_scratch(s->node);
    dsup_x_encode_term(key, name); /* sup_start_local consumes the spec */
    dsup_child_spec *spec = w->spec;
    w->spec = NULL;
    dsup_term k = { key->buff, (size_t)key->index };
    sup_child *c;
    if (sup_start_local(s, spec, x) == 0 && (c = sup_child_by_name(s, k)))
        send_release(s, arbiter, k, w->tag, &c->pid);
    else
        send_release(s, arbiter, k, w->tag, NULL);
    dsup_reply(w->from, x);
    w->from = NULL;
    dsup_term_scratch_release(x);
    dsup_term_scratch_release(key);
    wait_free(w);
}

/* Ask the name's current owner for w (or answer at once when the name is
 * taken or nobody can arbitrate). The arbiter is the name's owner among the
 * hosts able to run it, sup_place_owner(s, w->spec, 1) (sup_place.c): in a
 * mixed cluster that is where the child goes. Consumes w unless it waits. */
static void place_at(dsup_sup *s, sup_claim_wait *w, const char *owner)
{
    dsup_term name = w->spec->name;
    const dsup_pid *arbiter = owner ? sup_host_on(s, owner) : NULL;
    if (!arbiter) {
        /* No owner on the ring (an instance outside its own `nodes`): no
         * arbiter either; start as before arbitration existed. */
        ei_x_buff *x = dsup_term_scratch(s->node);
        dsup_child_spec *spec = w->spec;
        w->spec = NULL;
        sup_start_local(s, spec, x);
        dsup_reply(w->from, x);
        w->from = NULL;
        dsup_term_scratch_release(x);
        wait_free(w);
        return;
    }
    w->arbiter = arbiter->node;
    dsup_intern_hold(w->arbiter);
    w->deadline = dsup_node_now(s->node) + WAIT_TTL_MS;
    w->next = s->claim_waits;
    s->claim_waits = w;
    arm_sweep(s);
    send_reserve(s, arbiter, name, w->tag);
}

static void place(dsup_sup *s, sup_claim_wait *w)
{
    place_at(s, w, sup_place_owner(s, w->spec, 1));
}

dsup_call_ret sup_start_claimed(dsup_sup *s, dsup_child_spec *spec, const dsup_from *from, ei_x_buff *reply)
{
    if (spec->name.len == 0 && !(spec = sup_spec_named_by_ref(s, spec)))
        return DSUP_REPLY;
    if (sup_check_child_name(s, spec->name, reply) < 0 || sup_reply_if_running(s, spec->name, reply)) {
        free(spec);
        return DSUP_REPLY;
    }
    return sup_start_claimed_checked(s, spec, NULL, from, reply);
}

/* The checks and the placement are made once per start (by the caller, or
 * by sup_start_claimed): nothing runs between them and the start. */
dsup_call_ret sup_start_claimed_checked(dsup_sup *s, dsup_child_spec *spec, const char *const *known_owner,
                                        const dsup_from *from, ei_x_buff *reply)
{
    if (spec->beam || !dsup_find_worker_type(spec->type)) {
        /* not ours to run (a BEAM module, or a type this node lacks): the
         * refusal needs no arbiter, and the arbiter of a BEAM child is an
         * Elixir host, which does not arbitrate */
        sup_start_local_checked(s, spec, NULL, reply);
        return DSUP_REPLY;
    }
    const char *owner = known_owner ? *known_owner : sup_place_owner(s, spec, 1);
    if (!owner || (strcmp(owner, s->node->name) == 0 && !claim_of(s, spec->name))) {
        sup_start_local_checked(s, spec, NULL, reply); /* we arbitrate, and nobody else holds it */
        return DSUP_REPLY;
    }
    sup_claim_wait *w = dsup_xcalloc(1, sizeof *w);
    w->tag = ++s->claim_seq;
    w->spec = dsup_spec_keep(spec); /* waits beyond this message */
    w->from = dsup_from_save(from);
    place_at(s, w, owner);
    return DSUP_NOREPLY;
}

/* A failover restart of a name that a start elsewhere holds a reservation
 * for: it waits behind that start like any claimant (with no caller to
 * answer) and runs only if that start fails. Consumes spec. */
void sup_claim_restart(dsup_sup *s, dsup_child_spec *spec)
{
    sup_claim_wait *w = dsup_xcalloc(1, sizeof *w);
    w->tag = ++s->claim_seq;
    w->spec = spec;
    place(s, w);
}

static void on_reserve_reply(dsup_sup *s, dsup_term name, uint64_t tag, const dsup_pid *arbiter, dsup_term result)
{
    sup_claim_wait *w = wait_take(s, tag);
    int granted = dsup_term_is_atom(result, "ok");
    if (!w) {
        if (granted)
            send_release(s, arbiter, name, tag, NULL); /* we gave up: free it */
        return;
    }
    if (granted) {
        start_granted(s, w, arbiter);
        return;
    }
    dsup_term el[2];
    int ar, i = 0;
    dsup_pid winner;
    if (dsup_term_tagged(result, "already_started", &ar, el, 2) && ar == 2 &&
        dsup_decode_pid(s->node, el[1].buf, &i, &winner) == 0) {
        reply_already_started(s, w->from, &winner);
        w->from = NULL;
    }
    wait_free(w);
}

/* ---- lost nodes, expiry ------------------------------------------------------------- */

typedef struct lost_ctx {
    dsup_sup *s;
    const char *node;            /* NULL: expiry sweep */
    uint64_t now;
    ei_x_buff *names;            /* names whose reservation ended, encoded one after another */
} lost_ctx;

static void scan_claim(dsup_dict_ent *e, void *arg)
{
    lost_ctx *l = arg;
    sup_claim *c = dsup_dict_val(e);
    int k = 0;
    for (int i = 0; i < c->nwaiters; i++)
        if (c->waiters[i].inst.node != l->node)
            c->waiters[k++] = c->waiters[i];
    c->nwaiters = k;
    int ended = l->node ? (c->confirmed ? c->child.node : c->holder.node) == l->node : c->deadline <= l->now;
    if (ended)
        ei_x_append_buf(l->names, e->key, (int)e->klen);
}

/* Reservations held by `node` (or past their deadline when node is NULL)
 * end: claims as failed (the next claimant is granted), confirmed ones are
 * forgotten (pg answers). Collected first: the dict cannot change while it
 * is walked. */
static void end_claims(dsup_sup *s, const char *node)
{
    if (s->claims.count == 0)
        return;
    ei_x_buff *names = dsup_term_scratch(s->node);
    lost_ctx l = { s, node, dsup_node_now(s->node), names };
    dsup_dict_foreach(&s->claims, scan_claim, &l);
    for (int i = 0; i < names->index;) {
        int st = i;
        if (dsup_term_next(names->buff, &i) < 0)
            break;
        dsup_term name = { names->buff + st, (size_t)(i - st) };
        sup_claim *c = claim_of(s, name);
        if (!c)
            continue;
        if (!node)
            LOG_WARN("%s: a reservation of a child name expired (its holder on %s never confirmed)", s->name,
                     c->holder.node);
        if (c->confirmed)
            claim_drop(s, name);
        else
            claim_failed(s, name, c);
    }
    dsup_term_scratch_release(names);
}

void sup_claim_node_lost(dsup_sup *s, const char *node)
{
    end_claims(s, node);
    /* Starts that asked the lost node ask the name's new owner. */
    sup_claim_wait *redo = NULL;
    for (sup_claim_wait **pp = &s->claim_waits; *pp;) {
        sup_claim_wait *w = *pp;
        if (w->arbiter == node) {
            *pp = w->next;
            w->next = redo;
            redo = w;
        } else {
            pp = &w->next;
        }
    }
    while (redo) {
        sup_claim_wait *w = redo;
        redo = w->next;
        w->next = NULL;
        const dsup_pid *live;
        if (dsup_pg_members(s->scope, w->spec->name, &live) > 0) {
            reply_already_started(s, w->from, &live[0]);
            w->from = NULL;
            wait_free(w);
            continue;
        }
        dsup_intern_release(w->arbiter); /* place() names (and holds) the new one */
        w->arbiter = NULL;
        place(s, w);
    }
}

static void on_sweep(uv_timer_t *t)
{
    dsup_sup *s = t->data;
    end_claims(s, NULL);
    uint64_t now = dsup_node_now(s->node);
    for (sup_claim_wait **pp = &s->claim_waits; *pp;) {
        sup_claim_wait *w = *pp;
        if (w->deadline > now) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        LOG_WARN("%s: no answer from %s about a child name in %d ms", s->name, w->arbiter, WAIT_TTL_MS);
        ei_x_buff *x = dsup_term_scratch(s->node);
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_atom(x, "error");
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_atom(x, "nodedown");
        dsup_x_encode_atom(x, w->arbiter);
        dsup_reply(w->from, x);
        w->from = NULL;
        dsup_term_scratch_release(x);
        wait_free(w);
    }
    if (s->claims.count == 0 && !s->claim_waits)
        uv_timer_stop(t);
}

void sup_claim_shutdown(dsup_sup *s)
{
    while (s->claim_waits) {
        sup_claim_wait *w = s->claim_waits;
        s->claim_waits = w->next;
        ei_x_buff *x = dsup_term_scratch(s->node);
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_atom(x, "error");
        dsup_x_encode_atom(x, "shutting_down");
        dsup_reply(w->from, x);
        w->from = NULL;
        dsup_term_scratch_release(x);
        wait_free(w);
    }
    ei_x_buff *names = dsup_term_scratch(s->node);
    lost_ctx l = { s, NULL, UINT64_MAX, names };
    dsup_dict_foreach(&s->claims, scan_claim, &l);
    for (int i = 0; i < names->index;) {
        int st = i;
        if (dsup_term_next(names->buff, &i) < 0)
            break;
        claim_drop(s, (dsup_term){ names->buff + st, (size_t)(i - st) });
    }
    dsup_term_scratch_release(names);
    if (s->claim_timer) {
        uv_close((uv_handle_t *)s->claim_timer, (uv_close_cb)free);
        s->claim_timer = NULL;
    }
}

/* ---- incoming ------------------------------------------------------------------------- */

int sup_claim_msg(dsup_sup *s, dsup_term ev)
{
    dsup_term el[6];
    int ar, i = 0;
    unsigned long long tag;
    dsup_pid pid;
    if (dsup_term_tagged(ev, "reserve", &ar, el, 6) && ar == 4) {
        if (ei_decode_ulonglong(el[2].buf, &i, &tag) == 0 && (i = 0, dsup_decode_pid(s->node, el[3].buf, &i, &pid)) == 0)
            on_reserve(s, el[1], tag, &pid);
        return 1;
    }
    if (dsup_term_tagged(ev, "reserve_reply", &ar, el, 6) && ar == 5) {
        if (ei_decode_ulonglong(el[2].buf, &i, &tag) == 0 && (i = 0, dsup_decode_pid(s->node, el[3].buf, &i, &pid)) == 0)
            on_reserve_reply(s, el[1], tag, &pid, el[4]);
        return 1;
    }
    if (dsup_term_tagged(ev, "release", &ar, el, 6) && ar == 4) {
        if (ei_decode_ulonglong(el[2].buf, &i, &tag) == 0)
            on_release(s, el[1], tag, el[3]);
        return 1;
    }
    return 0;
}
