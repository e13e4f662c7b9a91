/* sup_cache.c — the cluster-wide child table of an instance, kept in step
 * by messages between instances (hosts and shim observers):
 *   {'$dsup', {child_up, Name, Pid, SpecMap | undefined}}
 *   {'$dsup', {child_down, Name, Pid, Reason}}
 *   {'$dsup', {snapshot, Node, [{Name, Pid, SpecMap | undefined}]}}
 *   {'$dsup', {children_up, [{Name, Pid, SpecMap | undefined}]}}  (a batch start)
 *   {'$dsup', {node_terminate, Node, Reason, Statuses}}
 * and the listener events derived from it. */
#include <stdlib.h>
#include <string.h>

#include "intern.h"
#include "log.h"
#include "node.h"
#include "sup.h"
#include "sup_heal.h"
#include "term.h"
#include "xalloc.h"

static uint64_t pid_hash(const void *k)
{
    const dsup_pid *p = k;
    uint64_t h = (uintptr_t)p->node ^ ((uint64_t)p->num << 32) ^ ((uint64_t)p->serial << 17) ^ p->creation;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    return h ^ (h >> 33);
}
static const void *child_pid(const void *e) { return &(*(sup_child *const *)e)->pid; }
static int pid_eq(const void *a, const void *b) { return dsup_pid_eq(a, b); }
/* 8 bytes a child, plus its index slots: cheaper than a dict entry. */
static const dsup_ivec_type by_pid_t = { sizeof(sup_child *), pid_hash, child_pid, pid_eq };

sup_child *sup_child_by_name(dsup_sup *s, dsup_term name)
{
    return s->records ? dsup_pg_attached(s->scope, name) : NULL;
}

size_t sup_child_count(const dsup_sup *s) { return s->records ? dsup_pg_attached_count(s->scope) : 0; }

typedef struct each_ctx {
    void (*fn)(sup_child *c, void *arg);
    void *arg;
} each_ctx;

static void each_attached(void *att, void *arg)
{
    each_ctx *k = arg;
    k->fn(att, k->arg);
}

void sup_foreach_child(dsup_sup *s, void (*fn)(sup_child *c, void *arg), void *arg)
{
    each_ctx k = { fn, arg };
    if (s->records)
        dsup_pg_foreach_attached(s->scope, each_attached, &k);
}

sup_child *sup_child_by_pid(dsup_sup *s, const dsup_pid *pid)
{
    long i = dsup_ivec_find(&s->by_pid, &by_pid_t, pid);
    return i < 0 ? NULL : *(sup_child **)dsup_ivec_at(&s->by_pid, &by_pid_t, (uint32_t)i);
}

static void unindex_pid(dsup_sup *s, const dsup_pid *pid)
{
    long i = dsup_ivec_find(&s->by_pid, &by_pid_t, pid);
    if (i >= 0)
        dsup_ivec_remove_at(&s->by_pid, &by_pid_t, (uint32_t)i);
}

/* What the cache records for a child whose host shares no spec. */
static const dsup_child_spec unknown_spec = { .type = "undefined", .restart = DSUP_RESTART_TEMPORARY,
                                              .args = { "\x6a", 1 } };

/* Insert or replace the entry for `name` with spec's shared copy (NULL:
 * keep the entry's spec, or record an unknown one); spec stays the
 * caller's. The sup_child is attached to the pg group of the child's name
 * (made when missing: its join may come later), whose key is its name. */
static sup_child *put(dsup_sup *s, dsup_term name, const dsup_pid *pid, const dsup_child_spec *spec, int local)
{
    /* one look-up: the record, made when new */
    int created;
    sup_child *c = s->records ? dsup_pg_attach(s->scope, name, &created) : NULL;
    if (!c)
        return NULL;
    if (!created) {
        unindex_pid(s, &c->pid);
        dsup_pid_release(&c->pid);
        const dsup_child_spec *sh = spec ? sup_spec_share(s, spec) : NULL;
        if (sh) { /* out of memory: the old one stays */
            sup_spec_unshare(s, c->shared);
            c->shared = sh;
        }
    } else {
        c->shared = sup_spec_share(s, spec ? spec : &unknown_spec);
        if (!c->shared) {
            dsup_pg_detach(s->scope, c);
            return NULL;
        }
    }
    c->pid = *pid;
    dsup_pid_hold(&c->pid); /* the cache outlives the message that told us */
    c->local = local != 0;
    dsup_ivec_push(&s->by_pid, &by_pid_t, &c);
    sup_pending_child_forget(s, sup_child_name(c)); /* it runs now */
    return c;
}

sup_child *sup_cache_put(dsup_sup *s, dsup_term name, const dsup_pid *pid, dsup_child_spec *spec, int local)
{
    sup_child *c = put(s, name, pid, spec, local);
    free(spec);
    return c;
}

void sup_cache_drop(dsup_sup *s, sup_child *c)
{
    unindex_pid(s, &c->pid);
    dsup_pid_release(&c->pid);
    sup_child_stop_free(s, c);
    sup_spec_unshare(s, c->shared);
    /* c goes with its group when that has no member, else is zeroed */
    dsup_pg_detach(s->scope, c);
}

int sup_cache_claim(dsup_sup *s)
{
    int rc = dsup_pg_set_attach_size(s->scope, sizeof(sup_child));
    if (rc < 0)
        return rc;
    for (dsup_sup *o = dsup_sups_of(s->node); o; o = o->next) {
        if (o == s || !o->records || (o->scope != s->scope && o->name != s->name))
            continue;
        if (o->proc && o->scope == s->scope)
            return DSUP_EEXIST; /* a live instance of another name with the same scope */
        if (!o->proc) /* ended: its restart (of the same name, or on the same scope) carries on */
            sup_cache_release(o);
    }
    s->records = 1;
    return 0;
}

typedef struct child_list {
    sup_child **list;
    size_t n;
} child_list;

static void collect_child(sup_child *c, void *arg)
{
    child_list *l = arg;
    l->list[l->n++] = c;
}

void sup_cache_release(dsup_sup *s)
{
    if (!s->records)
        return;
    child_list l = { dsup_xmalloc((sup_child_count(s) + 1) * sizeof(sup_child *)), 0 };
    sup_foreach_child(s, collect_child, &l);
    for (size_t i = 0; i < l.n; i++) {
        sup_child *c = l.list[i];
        if (c->local) {
            dsup_child_spec cs = sup_child_spec(c);
            dsup_child_spec *copy = dsup_spec_with_name(&cs, cs.name);
            if (copy)
                sup_heal_keep(s, copy);
        }
        sup_cache_drop(s, c);
    }
    free(l.list);
    s->records = 0;
}

static void free_child(sup_child *c, void *arg)
{
    dsup_sup *s = arg;
    sup_spec_unshare(s, c->shared);
    dsup_pid_release(&c->pid);
    sup_child_stop_free(s, c);
    dsup_pg_detach(s->scope, c);
}

void sup_cache_free(dsup_sup *s)
{
    sup_foreach_child(s, free_child, s);
    s->records = 0;
}

/* The entry's pid is gone. When pg still has a live copy of the name (a
 * restart whose child_up overtook the old copy's news, or the survivor of a
 * duplicate), point the entry at it and return 1; else 0, and the caller
 * drops the entry. Copies on `lost_node` do not count. */
int sup_cache_repoint(dsup_sup *s, sup_child *c, const char *lost_node)
{
    const dsup_pid *pids;
    size_t n = dsup_pg_members(s->scope, sup_child_name(c), &pids);
    for (size_t i = 0; i < n; i++) {
        if (dsup_pid_eq(&pids[i], &c->pid) || pids[i].node == lost_node)
            continue;
        dsup_pid old = c->pid, now = pids[i];
        unindex_pid(s, &c->pid);
        dsup_pid_release(&c->pid);
        c->pid = now;
        dsup_pid_hold(&c->pid);
        c->local = now.node == s->node->name;
        dsup_ivec_push(&s->by_pid, &by_pid_t, &c);
        sup_emit_process_stop(s, sup_child_name(c), &old);
        sup_emit_process_start(s, sup_child_name(c), &now);
        return 1;
    }
    return 0;
}

/* ---- events ---------------------------------------------------------------- */

void sup_emit(dsup_sup *s, ei_x_buff *event)
{
    dsup_term ev = { event->buff, (size_t)event->index };
    for (sup_sub *u = s->subs; u; u = u->next)
        u->fn(u->arg, s, ev);
    if (!s->nlisteners)
        return;
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 3);
    dsup_x_encode_atom(x, "distributed_supervisor");
    dsup_x_encode_atom(x, s->name);
    dsup_x_encode_term(x, ev);
    for (int i = 0; i < s->nlisteners; i++) {
        sup_listener *l = &s->listeners[i];
        if (l->name)
            dsup_send_named(s->proc, l->name, l->node, x);
        else
            dsup_send(s->proc, &l->pid, x);
    }
    dsup_term_scratch_release(x);
}

void sup_emit_process_start(dsup_sup *s, dsup_term name, const dsup_pid *pid)
{
    if (!s->subs && !s->nlisteners)
        return;
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 3);
    dsup_x_encode_atom(x, "process_start");
    dsup_x_encode_term(x, name);
    dsup_x_encode_pid(x, pid);
    sup_emit(s, x);
    dsup_term_scratch_release(x);
}

void sup_emit_process_stop(dsup_sup *s, dsup_term name, const dsup_pid *pid)
{
    if (!s->subs && !s->nlisteners)
        return;
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 3);
    dsup_x_encode_atom(x, "process_stop");
    dsup_x_encode_term(x, name);
    ei_x_encode_list_header(x, 1);
    dsup_x_encode_pid(x, pid);
    ei_x_encode_empty_list(x);
    sup_emit(s, x);
    dsup_term_scratch_release(x);
}

/* ---- messages between instances ---------------------------------------------- */

static void send_to_group(dsup_sup *s, const char *group, ei_x_buff *msg)
{
    dsup_term g = dsup_reason_atom(s->node, group);
    const dsup_pid *pids;
    size_t n = dsup_pg_members(s->scope, g, &pids);
    for (size_t i = 0; i < n; i++)
        if (!dsup_pid_eq(&pids[i], dsup_self(s->proc)))
            dsup_send(s->proc, &pids[i], msg);
}

void sup_broadcast(dsup_sup *s, ei_x_buff *msg)
{
    send_to_group(s, SUP_HOSTS_GROUP, msg);
    send_to_group(s, SUP_OBSERVERS_GROUP, msg);
}

static void encode_spec_or_undefined(dsup_sup *s, ei_x_buff *x, const sup_child *c)
{
    if (s->cache_children && sup_spec_full(c->shared)) {
        dsup_child_spec cs = sup_child_spec(c);
        dsup_spec_encode_map(x, &cs, 1);
    } else {
        dsup_x_encode_atom(x, "undefined");
    }
}

/* Which form of c's spec an instance gets: the whole spec (its replicas,
 * and Elixir instances, which keep every spec), or a stub (the other C
 * hosts able to run it: members of its type's group). Hosts that cannot
 * run it get the whole spec and let it go in their replica pass. */
typedef struct spec_route {
    const char *reps[SUP_REPLICAS_MAX];
    size_t nreps;
    const dsup_pid *typed;        /* {'$dsup_type', Type} members */
    size_t ntyped;
    int stubs;                    /* 0: everyone gets the same */
} spec_route;

/* The members of {'$dsup_type', Type}: a pointer into pg's table, valid
 * until that group changes. */
static void route_lookup_typed(dsup_sup *s, const char *type, spec_route *r)
{
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, SUP_TYPE_TAG);
    dsup_x_encode_atom(x, type);
    r->ntyped = dsup_pg_members(s->scope, (dsup_term){ x->buff, (size_t)x->index }, &r->typed);
    dsup_term_scratch_release(x);
}

static void route_init(dsup_sup *s, const sup_child *c, spec_route *r)
{
    r->stubs = s->cache_children && c->local && sup_spec_full(c->shared) && !c->shared->beam;
    r->nreps = r->ntyped = 0;
    r->typed = NULL;
    if (!r->stubs)
        return;
    r->nreps = sup_replica_nodes(s, c, r->reps);
    if (!s->up_batch) /* a batch looks the type's hosts up at its end */
        route_lookup_typed(s, c->shared->type, r);
}

static int route_stub(const spec_route *r, const dsup_pid *to)
{
    if (!r->stubs || sup_replica_has(r->reps, r->nreps, to->node))
        return 0;
    for (size_t i = 0; i < r->ntyped; i++)
        if (r->typed[i].node == to->node)
            return 1;
    return 0;
}

static void encode_spec_for(dsup_sup *s, ei_x_buff *x, const sup_child *c, const spec_route *r, const dsup_pid *to)
{
    if (route_stub(r, to))
        sup_encode_stub(s, x, c->shared);
    else
        encode_spec_or_undefined(s, x, c);
}

static void encode_child_up(dsup_sup *s, ei_x_buff *x, sup_child *c, int stub)
{
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "$dsup");
    ei_x_encode_tuple_header(x, 4);
    dsup_x_encode_atom(x, "child_up");
    dsup_x_encode_term(x, sup_child_name(c));
    dsup_x_encode_pid(x, &c->pid);
    if (stub)
        sup_encode_stub(s, x, c->shared);
    else
        encode_spec_or_undefined(s, x, c);
}

static void send_child_up_group(dsup_sup *s, const char *group, sup_child *c, const spec_route *r,
                                ei_x_buff *full, ei_x_buff *stub)
{
    const dsup_pid *pids;
    size_t n = dsup_pg_members(s->scope, dsup_reason_atom(s->node, group), &pids);
    for (size_t i = 0; i < n; i++)
        if (!dsup_pid_eq(&pids[i], dsup_self(s->proc))) {
            int st = route_stub(r, &pids[i]);
            if (st && !stub->index)
                encode_child_up(s, stub, c, 1);
            dsup_send(s->proc, &pids[i], st ? stub : full);
        }
}

/* ---- a batch start's announcements (sup_batch.c) -------------------------
 * The children a batch starts are announced at its end, one
 * {'$dsup', {children_up, [{Name, Pid, Spec}]}} per instance, each child's
 * spec in the form that instance gets (route_stub), so replication holds
 * for batches too. The type group's members are looked up again at the end
 * (the batch's starts may have changed pg's table under the pointer). */
typedef struct up_entry {
    spec_route r;
    size_t full_off, full_len, stub_off, stub_len;
    size_t type_off;             /* the type's text (NUL-terminated) in buf */
} up_entry;

struct sup_up_batch {
    ei_x_buff *buf;              /* {Name, Pid, Spec} tuples, full and stub forms (pooled) */
    up_entry *v;
    size_t n, cap;
};

static void up_tuple(ei_x_buff *x, dsup_sup *s, const sup_child *c, int stub)
{
    ei_x_encode_tuple_header(x, 3);
    dsup_x_encode_term(x, sup_child_name(c));
    dsup_x_encode_pid(x, &c->pid);
    if (stub)
        sup_encode_stub(s, x, c->shared);
    else
        encode_spec_or_undefined(s, x, c);
}

static void up_batch_add(struct sup_up_batch *b, dsup_sup *s, const sup_child *c, const spec_route *r)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 64;
        b->v = dsup_xrealloc(b->v, b->cap * sizeof *b->v);
    }
    up_entry *e = &b->v[b->n++];
    e->r = *r;
    e->full_off = (size_t)b->buf->index;
    up_tuple(b->buf, s, c, 0);
    e->full_len = (size_t)b->buf->index - e->full_off;
    e->stub_off = e->stub_len = 0;
    e->r.typed = NULL;
    e->r.ntyped = 0;
    e->type_off = (size_t)b->buf->index;
    dsup_x_append(b->buf, c->shared->type, strlen(c->shared->type) + 1);
    if (r->stubs) {
        e->stub_off = (size_t)b->buf->index;
        up_tuple(b->buf, s, c, 1);
        e->stub_len = (size_t)b->buf->index - e->stub_off;
    }
}

void sup_up_batch_begin(dsup_sup *s, size_t n)
{
    struct sup_up_batch *b = dsup_xcalloc(1, sizeof *b);
    b->buf = dsup_term_scratch(s->node);
    b->cap = n; /* the batch's size: no growing on the way */
    b->v = n ? dsup_xmalloc(n * sizeof *b->v) : NULL;
    s->up_batch = b;
}

/* The children_up message for `to`, each entry in the form `to` gets;
 * `to` NULL: every entry in its full form. */
static void up_batch_encode(const struct sup_up_batch *b, const dsup_pid *to, ei_x_buff *x)
{
    x->index = 0;
    dsup_x_reserve(x, (size_t)b->buf->index + 64); /* every entry at most once */
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "$dsup");
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "children_up");
    ei_x_encode_list_header(x, (long)b->n);
    for (size_t i = 0; i < b->n; i++) {
        const up_entry *e = &b->v[i];
        int st = to && route_stub(&e->r, to);
        ei_x_append_buf(x, b->buf->buff + (st ? e->stub_off : e->full_off), (int)(st ? e->stub_len : e->full_len));
    }
    ei_x_encode_empty_list(x);
}

static int up_batch_stubs_for(const struct sup_up_batch *b, const dsup_pid *to)
{
    for (size_t i = 0; i < b->n; i++)
        if (route_stub(&b->v[i].r, to))
            return 1;
    return 0;
}

static void up_batch_send_group(dsup_sup *s, const struct sup_up_batch *b, const char *group, ei_x_buff *full,
                                ei_x_buff *own)
{
    const dsup_pid *pids;
    size_t n = dsup_pg_members(s->scope, dsup_reason_atom(s->node, group), &pids);
    for (size_t i = 0; i < n; i++) {
        if (dsup_pid_eq(&pids[i], dsup_self(s->proc)))
            continue;
        if (up_batch_stubs_for(b, &pids[i])) {
            up_batch_encode(b, &pids[i], own);
            dsup_send(s->proc, &pids[i], own);
        } else {
            if (!full->index) /* the all-full form, encoded once for everyone who gets it */
                up_batch_encode(b, NULL, full);
            dsup_send(s->proc, &pids[i], full);
        }
    }
}

void sup_up_batch_end(dsup_sup *s)
{
    struct sup_up_batch *b = s->up_batch;
    if (!b)
        return;
    s->up_batch = NULL;
    const char *last_type = NULL; /* a batch is mostly of one type: one look-up per run of it */
    spec_route *last = NULL;
    for (size_t i = 0; i < b->n; i++) {
        spec_route *r = &b->v[i].r;
        const char *type = b->buf->buff + b->v[i].type_off;
        if (!r->stubs)
            continue;
        if (last && strcmp(type, last_type) == 0) {
            r->typed = last->typed;
            r->ntyped = last->ntyped;
            continue;
        }
        route_lookup_typed(s, type, r);
        last = r;
        last_type = type;
    }
    if (b->n) {
        ei_x_buff *full = dsup_term_scratch(s->node), *own = dsup_term_scratch(s->node);
        full->index = 0;
        up_batch_send_group(s, b, SUP_HOSTS_GROUP, full, own);
        up_batch_send_group(s, b, SUP_OBSERVERS_GROUP, full, own);
        dsup_term_scratch_release(own);
        dsup_term_scratch_release(full);
    }
    dsup_term_scratch_release(b->buf);
    free(b->v);
    free(b);
}

/* {'$dsup', {child_up, ...}} to every other instance; c's replicas (and
 * Elixir instances) get its spec, the other C hosts a stub. */
void sup_send_child_up(dsup_sup *s, sup_child *c, const dsup_pid *to)
{
    spec_route r;
    route_init(s, c, &r);
    if (r.stubs)
        c->replica_sig = sup_replica_sig(r.reps, r.nreps);
    if (!to && s->up_batch) {
        up_batch_add(s->up_batch, s, c, &r);
        return;
    }
    ei_x_buff *full = dsup_term_scratch(s->node), *stub = dsup_term_scratch(s->node);
    encode_child_up(s, full, c, 0);
    if (to) {
        int st = route_stub(&r, to);
        if (st)
            encode_child_up(s, stub, c, 1);
        dsup_send(s->proc, to, st ? stub : full);
    } else {
        send_child_up_group(s, SUP_HOSTS_GROUP, c, &r, full, stub);
        send_child_up_group(s, SUP_OBSERVERS_GROUP, c, &r, full, stub);
    }
    dsup_term_scratch_release(stub);
    dsup_term_scratch_release(full);
}

void sup_broadcast_child_down(dsup_sup *s, sup_child *c, dsup_term reason)
{
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "$dsup");
    ei_x_encode_tuple_header(x, 4);
    dsup_x_encode_atom(x, "child_down");
    dsup_x_encode_term(x, sup_child_name(c));
    dsup_x_encode_pid(x, &c->pid);
    dsup_x_encode_term(x, reason);
    sup_broadcast(s, x);
    dsup_term_scratch_release(x);
}

typedef struct snap_ctx {
    dsup_sup *s;
    ei_x_buff *x;
    size_t n;
    const dsup_pid *to;
} snap_ctx;

static void count_local(sup_child *c, void *arg) { *(size_t *)arg += c->local; }

size_t sup_local_count(dsup_sup *s)
{
    size_t n = 0;
    sup_foreach_child(s, count_local, &n);
    return n;
}

static void encode_local(sup_child *ch, void *arg)
{
    snap_ctx *c = arg;
    if (!ch->local)
        return;
    spec_route r;
    route_init(c->s, ch, &r);
    ei_x_encode_tuple_header(c->x, 3);
    dsup_x_encode_term(c->x, sup_child_name(ch));
    dsup_x_encode_pid(c->x, &ch->pid);
    encode_spec_for(c->s, c->x, ch, &r, c->to);
}

void sup_send_snapshot(dsup_sup *s, const dsup_pid *to)
{
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "$dsup");
    ei_x_encode_tuple_header(x, 3);
    dsup_x_encode_atom(x, "snapshot");
    dsup_x_encode_atom(x, s->node->name);
    snap_ctx c = { s, x, sup_local_count(s), to };
    if (c.n) {
        ei_x_encode_list_header(x, (long)c.n);
        sup_foreach_child(s, encode_local, &c);
    }
    ei_x_encode_empty_list(x);
    dsup_send(s->proc, to, x);
    dsup_term_scratch_release(x);
}

/* ---- duplicates ----------------------------------------------------------------- */

/* The node, among those holding a copy of `name`, that a ring of just these
 * nodes places the name on: the first of them clockwise from the name's
 * point. It depends only on the set of holders, never on this node's ring,
 * which may not agree with a peer's while a partition heals; so the holder
 * that every view would pick keeps its copy, whatever each node has seen
 * (with two views that ranked holders differently, both copies could stop).
 * When the name's ring owner holds a copy, it is that copy. NULL on error. */
static const char *keeper_node(dsup_sup *s, dsup_term name, const dsup_pid *pids, size_t n)
{
    dsup_ring *r = dsup_ring_new();
    if (!r)
        return NULL;
    dsup_ring_set_atom_encoding(r, dsup_ring_atom_encoding(s->ring));
    /* added in name order: on a point collision the smaller name keeps it */
    const char **sorted = dsup_xmalloc(n * sizeof *sorted);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < k && sorted[j] != pids[i].node)
            j++;
        if (j < k)
            continue;
        j = k++;
        while (j > 0 && strcmp(sorted[j - 1], pids[i].node) > 0) {
            sorted[j] = sorted[j - 1];
            j--;
        }
        sorted[j] = pids[i].node;
    }
    for (size_t i = 0; i < k; i++)
        dsup_ring_add_node(r, sorted[i], 0);
    free(sorted);
    const char *owner = dsup_ring_node_for(r, name.buf, name.len);
    owner = owner ? dsup_intern_find(s->node->names, owner, strlen(owner)) : NULL; /* the ring keeps its own copies; hosts are held */
    dsup_ring_free(r);
    return owner;
}

/* Among live copies of `name` (pg members), the survivor is the copy on
 * keeper_node(). Every instance applies the same rule to its own copies, so
 * exactly one copy survives. Returns 1 when a local copy was stopped. */
int sup_resolve_duplicate(dsup_sup *s, dsup_term name)
{
    const dsup_pid *pids;
    size_t n = dsup_pg_members(s->scope, name, &pids);
    if (n < 2)
        return 0;
    const char *owner = keeper_node(s, name, pids, n);
    if (!owner)
        return 0;
    const dsup_pid *keep = NULL;
    for (size_t i = 0; i < n && !keep; i++)
        if (pids[i].node == owner)
            keep = &pids[i];
    if (!keep)
        return 0;
    int stopped = 0;
    dsup_pid victims[8];
    size_t nv = 0;
    for (size_t i = 0; i < n && nv < 8; i++)
        if (pids[i].node == s->node->name && !dsup_pid_eq(&pids[i], keep))
            victims[nv++] = pids[i];
    for (size_t i = 0; i < nv; i++) {
        sup_child *c = sup_child_by_pid(s, &victims[i]);
        /* A copy already being stopped (an earlier pg join or child_up of
         * the same name) is not stopped, nor logged, again. */
        if (!c || !c->local || c->terminating)
            continue;
        LOG_INFO("%s: duplicate child, stopping the local copy (the one on %s stays)", s->name, keep->node);
        ei_x_buff *x = dsup_term_scratch(s->node);
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_atom(x, "shutdown");
        dsup_x_encode_atom(x, "duplicate");
        sup_stop_child(s, c, (dsup_term){ x->buff, (size_t)x->index });
        dsup_term_scratch_release(x);
        stopped = 1;
    }
    return stopped;
}

/* ---- incoming {'$dsup', Event} ---------------------------------------------------- */

static int is_stub(dsup_term t)
{
    dsup_term el[3];
    int ar;
    return dsup_term_tagged(t, "stub", &ar, el, 3);
}

/* {stub, Type, Restart}: 0 and *out (args empty: not startable; its type
 * in tname), or -1. */
static int parse_stub(dsup_term t, dsup_child_spec *out, char tname[256])
{
    dsup_term el[3];
    int ar, i = 0;
    const char *type;
    size_t len;
    if (!dsup_term_tagged(t, "stub", &ar, el, 3) || ar != 3 || dsup_term_atom_text(el[1].buf, &i, &type, &len) < 0 ||
        len == 0 || len > 255)
        return -1;
    memcpy(tname, type, len);
    tname[len] = 0;
    dsup_child_spec stub = { .type = tname, .restart = DSUP_RESTART_PERMANENT };
    if (dsup_term_is_atom(el[2], "transient"))
        stub.restart = DSUP_RESTART_TRANSIENT;
    else if (dsup_term_is_atom(el[2], "temporary"))
        stub.restart = DSUP_RESTART_TEMPORARY;
    *out = stub;
    return 0;
}

static void remote_child_up(dsup_sup *s, dsup_term name, dsup_term pid_t, dsup_term spec_t)
{
    dsup_pid pid;
    int i = 0;
    if (dsup_decode_pid(s->node, pid_t.buf, &i, &pid) < 0)
        return;
    sup_child *old = sup_child_by_name(s, name);
    if (old && dsup_pid_eq(&old->pid, &pid)) {
        dsup_child_spec *full;
        /* known, as a stub: a snapshot naming us a replica brings the spec */
        if (!old->local && !sup_spec_full(old->shared) && !dsup_term_is_atom(spec_t, "undefined") &&
            !is_stub(spec_t) && dsup_spec_parse(s->node, spec_t, &full) == 0)
            sup_cache_put(s, name, &pid, full, 0);
        return;
    }
    if (old && old->local) {
        /* Two live copies: resolve once both are in pg; keep ours for now. */
        sup_resolve_duplicate(s, name);
        return;
    }
    /* a stub (most children, for a host not their replica) is shared
     * from the stack: no allocation */
    dsup_child_spec stub, *spec = NULL;
    char tname[256];
    int undef = dsup_term_is_atom(spec_t, "undefined"), stubbed = !undef && parse_stub(spec_t, &stub, tname) == 0;
    if (!undef && !stubbed && dsup_spec_parse(s->node, spec_t, &spec) < 0)
        spec = NULL;
    dsup_pid oldpid;
    int had = old != NULL;
    if (had)
        oldpid = old->pid;
    sup_child *c = put(s, name, &pid, stubbed ? &stub : spec, 0);
    free(spec);
    if (!c)
        return;
    if (had)
        sup_emit_process_stop(s, sup_child_name(c), &oldpid);
    sup_emit_process_start(s, sup_child_name(c), &pid);
}

static void remote_child_down(dsup_sup *s, dsup_term name, dsup_term pid_t)
{
    dsup_pid pid;
    int i = 0;
    if (dsup_decode_pid(s->node, pid_t.buf, &i, &pid) < 0)
        return;
    sup_child *c = sup_child_by_name(s, name);
    if (!c || !dsup_pid_eq(&c->pid, &pid) || c->local || sup_cache_repoint(s, c, NULL))
        return;
    sup_emit_process_stop(s, sup_child_name(c), &pid);
    sup_cache_drop(s, c);
}

/* [{Name, Pid, SpecMap | undefined}] (a snapshot's or a batch's) */
static void each_child_up(dsup_sup *s, dsup_term list)
{
    int i = 0, n, type, size;
    if (ei_get_type(list.buf, &i, &type, &size) < 0 || type != ERL_LIST_EXT ||
        ei_decode_list_header(list.buf, &i, &n) < 0)
        return;
    for (int k = 0; k < n; k++) {
        /* split the element as it is stepped over: one walk, not two */
        dsup_term t[3];
        int ar, j = i;
        if (ei_decode_tuple_header(list.buf, &j, &ar) == 0 && ar == 3) {
            for (int e = 0; e < 3; e++) {
                int st = j;
                if (dsup_term_next(list.buf, &j) < 0)
                    return;
                t[e] = (dsup_term){ list.buf + st, (size_t)(j - st) };
            }
            i = j;
            remote_child_up(s, t[0], t[1], t[2]);
        } else if (dsup_term_next(list.buf, &i) < 0) {
            return;
        }
    }
}

/* {children_up, List}: 1 and *list. The list is the tuple's last element,
 * so it is the rest of `ev` (one whole term: sup.c splits it from the
 * message): a batch's list is not walked once more to find its end. */
static int children_up_list(dsup_term ev, dsup_term *list)
{
    static const char tag[] = "\x68\x02\x77\x0b" "children_up"; /* {children_up, _ as OTP writes it */
    if (ev.len > sizeof tag - 1 && memcmp(ev.buf, tag, sizeof tag - 1) == 0) {
        *list = (dsup_term){ ev.buf + sizeof tag - 1, ev.len - (sizeof tag - 1) };
        return 1;
    }
    dsup_term el[2];
    int ar;
    if (!dsup_term_tagged(ev, "children_up", &ar, el, 2) || ar != 2)
        return 0;
    *list = el[1];
    return 1;
}

void sup_on_child_msg(dsup_sup *s, dsup_term ev)
{
    dsup_term el[5];
    int ar;
    if (dsup_term_tagged(ev, "child_up", &ar, el, 5) && ar == 4) {
        remote_child_up(s, el[1], el[2], el[3]);
    } else if (dsup_term_tagged(ev, "child_down", &ar, el, 5) && ar == 4) {
        remote_child_down(s, el[1], el[2]);
    } else if (dsup_term_tagged(ev, "snapshot", &ar, el, 5) && ar == 3) {
        each_child_up(s, el[2]);
    } else if (children_up_list(ev, el)) {
        each_child_up(s, el[0]);
    } else if (sup_replica_msg(s, ev)) {
        /* handled */
    } else if (dsup_term_tagged(ev, "start_pending", &ar, el, 5) && ar == 3) {
        sup_pending_child_start(s, el[1], el[2]);
    } else if (dsup_term_tagged(ev, "node_terminate", &ar, el, 5) && ar == 4) {
        const char *node;
        size_t len;
        int i = 0;
        if (dsup_term_atom_text(el[1].buf, &i, &node, &len) == 0)
            sup_note_terminating(s, dsup_intern_find(s->node->names, node, len));
        ei_x_buff *x = dsup_term_scratch(s->node);
        dsup_x_encode_term(x, ev);
        sup_emit(s, x);
        dsup_term_scratch_release(x);
    }
}
