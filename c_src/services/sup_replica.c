/* sup_replica.c — child specs kept on k ring successors, not on every host.
 *
 * A child's spec lives on its host and on its replicas: the next k
 * (`replicas`, default 2) distinct hosts able to run it clockwise from its
 * name's point, without its host (sup_place_successors). With libring the
 * owner of a dead host's key among the survivors is the first surviving
 * host clockwise, so it is a replica whenever at most k hosts die at once,
 * and failover (sup.c) restarts the orphan from its own copy of the spec.
 * Every other C host keeps a stub, {stub, Type, Restart}: enough for
 * whereis/whois/which_children and for the failover to know whose orphan
 * it is; `children` shows `undefined` for it. Elixir instances get every
 * spec, as before (they cache everything).
 *
 * After a ring change (a host joins or leaves, a host's capabilities
 * arrive) a pass walks the table, a batch per loop turn:
 *  - each local child whose replica set changed sends its spec to its
 *    replicas as {'$dsup', {replica, Name, Pid, SpecMap}} (the receiver
 *    upgrades its stub; idempotent);
 *  - each full spec of another host's child that this node is no longer a
 *    replica of becomes a stub, but only SUP_REPL_DROP_MS after the last
 *    change, so a joining host has had its snapshots before anyone lets go.
 * A joining host gets the specs it is a replica of in each host's snapshot. */
#include <stdlib.h>
#include <string.h>

#include "intern.h"
#include "log.h"
#include "node.h"
#include "sup.h"
#include "term.h"
#include "xalloc.h"

#define SUP_REPL_DEBOUNCE_MS 20
#define SUP_REPL_DROP_MS 3000
#define SUP_REPL_BATCH 2048        /* table entries visited per loop turn */

typedef struct sup_repl {
    uv_timer_t *timer;
    uint64_t changed_at;           /* loop ms of the last ring change */
    size_t slot, nslots;           /* the pass's cursor into the scope's group slots */
    int drops;                     /* this pass may drop specs */
    int active;                    /* a pass is under way */
} sup_repl;

int sup_spec_full(const dsup_child_spec *spec)
{
    /* twice per child started: most types differ from it at the first byte */
    return spec && spec->args.len > 0 && (spec->type[0] != 'u' || strcmp(spec->type, "undefined") != 0);
}

size_t sup_replica_nodes(dsup_sup *s, const sup_child *c, const char **out)
{
    dsup_child_spec cs = sup_child_spec(c);
    return sup_place_successors(s, &cs, c->pid.node, out, (size_t)s->replicas);
}

uint32_t sup_replica_sig(const char **nodes, size_t n)
{
    /* Asked for every child started: the names' bytes 8 at a time. */
    uint64_t h = 1469598103934665603ULL ^ n;
    for (size_t i = 0; i < n; i++) {
        const char *p = nodes[i];
        size_t len = strlen(p);
        for (; len >= 8; p += 8, len -= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            h = (h ^ w) * 0xFF51AFD7ED558CCDULL;
            h ^= h >> 32;
        }
        uint64_t w = 0; /* the tail, with its length: ["ab", "c"] and ["a", "bc"] differ */
        memcpy(&w, p, len);
        h = (h ^ w ^ ((uint64_t)len << 56)) * 0xFF51AFD7ED558CCDULL;
        h ^= h >> 32;
    }
    h *= 0xC4CEB9FE1A85EC53ULL;
    return (uint32_t)(h ^ (h >> 29)) | 1; /* 0: never sent */
}

int sup_replica_has(const char *const *nodes, size_t n, const char *node)
{
    for (size_t i = 0; i < n; i++)
        if (nodes[i] == node)
            return 1;
    return 0;
}

void sup_encode_stub(dsup_sup *s, ei_x_buff *x, const dsup_child_spec *spec)
{
    /* A batch's children are mostly of one type: the last stub's bytes do
     * (keyed by content: a shared spec's address may be reused). */
    struct sup_stub_memo *last = &s->stub_memo;
    size_t tl = strlen(spec->type);
    if (last->len && last->restart == (int)spec->restart && tl < sizeof last->type &&
        memcmp(last->type, spec->type, tl + 1) == 0) {
        dsup_x_append(x, last->bytes, last->len);
        return;
    }
    int start = x->index;
    ei_x_encode_tuple_header(x, 3);
    dsup_x_encode_atom(x, "stub");
    dsup_x_encode_atom(x, spec->type);
    dsup_x_encode_atom(x, spec->restart == DSUP_RESTART_TRANSIENT   ? "transient"
                          : spec->restart == DSUP_RESTART_TEMPORARY ? "temporary"
                                                                    : "permanent");
    size_t n = (size_t)(x->index - start);
    last->len = 0;
    if (tl < sizeof last->type && n <= sizeof last->bytes) {
        memcpy(last->type, spec->type, tl + 1);
        last->restart = (int)spec->restart;
        memcpy(last->bytes, x->buff + start, n);
        last->len = n;
    }
}

/* ---- the pass ------------------------------------------------------------------ */

/* An Elixir host (in '$dsup_beam'): it has every spec from child_up. */
static int is_beam_host(dsup_sup *s, const char *node)
{
    const dsup_pid *pids;
    size_t n = dsup_pg_members(s->scope, dsup_reason_atom(s->node, SUP_BEAM_GROUP), &pids);
    for (size_t i = 0; i < n; i++)
        if (pids[i].node == node)
            return 1;
    return 0;
}

static void send_replica(dsup_sup *s, sup_child *c, const char *node)
{
    const dsup_pid *to = sup_host_on(s, node);
    if (!to || is_beam_host(s, node))
        return;
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "$dsup");
    ei_x_encode_tuple_header(x, 4);
    dsup_x_encode_atom(x, "replica");
    dsup_x_encode_term(x, sup_child_name(c));
    dsup_x_encode_pid(x, &c->pid);
    dsup_child_spec cs = sup_child_spec(c);
    dsup_spec_encode_map(x, &cs, 1);
    dsup_send(s->proc, to, x);
    dsup_term_scratch_release(x);
}

static void downgrade(dsup_sup *s, sup_child *c)
{
    dsup_child_spec stub = *c->shared;
    stub.args = (dsup_term){ NULL, 0 };
    const dsup_child_spec *n = sup_spec_share(s, &stub);
    if (!n)
        return;
    sup_spec_unshare(s, c->shared);
    c->shared = n;
}

static void visit(dsup_sup *s, sup_child *c, int drops)
{
    const char *reps[SUP_REPLICAS_MAX];
    if (c->local) {
        if (!s->cache_children || !sup_spec_full(c->shared))
            return;
        size_t n = sup_replica_nodes(s, c, reps);
        uint32_t sig = sup_replica_sig(reps, n);
        if (sig == c->replica_sig)
            return;
        for (size_t i = 0; i < n; i++)
            send_replica(s, c, reps[i]);
        c->replica_sig = sig;
        return;
    }
    /* a spec of a child elsewhere: let it go when no longer a replica (its
     * host alive: an orphan's spec stays for the failover) */
    const dsup_pid *host;
    if (!drops || !sup_spec_full(c->shared) || !(host = sup_host_on(s, c->pid.node)) ||
        host->creation != c->pid.creation)
        return;
    size_t n = sup_replica_nodes(s, c, reps);
    if (!sup_replica_has(reps, n, s->node->name))
        downgrade(s, c);
}

typedef struct visit_ctx {
    dsup_sup *s;
    int drops;
} visit_ctx;

static void visit_one(void *att, void *arg)
{
    visit_ctx *v = arg;
    visit(v->s, att, v->drops);
}

static void on_tick(uv_timer_t *t)
{
    dsup_sup *s = t->data;
    sup_repl *r = s->repl;
    if (!s->proc || s->stopping) {
        r->active = 0;
        return;
    }
    uint64_t now = uv_now(s->node->loop);
    if (!r->active) {
        r->active = 1;
        r->slot = 0;
        r->nslots = dsup_pg_attached_slots(s->scope);
        r->drops = now >= r->changed_at + SUP_REPL_DROP_MS;
    }
    if (r->nslots != dsup_pg_attached_slots(s->scope)) { /* the table grew: start over (visits are idempotent) */
        r->slot = 0;
        r->nslots = dsup_pg_attached_slots(s->scope);
    }
    size_t seen = 0;
    visit_ctx v = { s, r->drops };
    while (r->slot < r->nslots && seen < SUP_REPL_BATCH)
        seen += dsup_pg_attached_visit_slot(s->scope, r->slot++, visit_one, &v) + 1;

    if (r->slot < r->nslots) {
        uv_timer_start(t, on_tick, 1, 0);
        return;
    }
    r->active = 0;
    if (!r->drops) /* once more when the drop delay has passed */
        uv_timer_start(t, on_tick, r->changed_at + SUP_REPL_DROP_MS - now + 1, 0);
}

void sup_replica_ring_changed(dsup_sup *s)
{
    if (!s->cache_children || s->stopping)
        return;
    if (!s->repl) {
        s->repl = dsup_xcalloc(1, sizeof *s->repl);
        s->repl->timer = dsup_xmalloc(sizeof *s->repl->timer);
        uv_timer_init(s->node->loop, s->repl->timer);
        s->repl->timer->data = s;
    }
    sup_repl *r = s->repl;
    r->changed_at = uv_now(s->node->loop);
    r->active = 0; /* a pass under way starts over with the new ring */
    uv_timer_start(r->timer, on_tick, SUP_REPL_DEBOUNCE_MS, 0);
}

void sup_replica_free(dsup_sup *s)
{
    if (!s->repl)
        return;
    uv_close((uv_handle_t *)s->repl->timer, (uv_close_cb)free);
    free(s->repl);
    s->repl = NULL;
}

/* ---- {replica, Name, Pid, SpecMap} ------------------------------------------------ */

int sup_replica_msg(dsup_sup *s, dsup_term ev)
{
    dsup_term el[5];
    int ar;
    if (!dsup_term_tagged(ev, "replica", &ar, el, 5) || ar != 4)
        return 0;
    dsup_pid pid;
    int i = 0;
    if (dsup_decode_pid(s->node, el[2].buf, &i, &pid) < 0)
        return 1;
    /* Only an entry for that very copy: the host sends child_up first, and
     * a child_down since then means the child is gone. */
    sup_child *c = sup_child_by_name(s, el[1]);
    if (!c || c->local || !dsup_pid_eq(&c->pid, &pid) || sup_spec_full(c->shared))
        return 1;
    dsup_child_spec *spec;
    if (dsup_spec_parse(s->node, el[3], &spec) < 0) {
        LOG_WARN("%s: replica from %s: not a child spec, ignored", s->name, pid.node);
        return 1;
    }
    sup_cache_put(s, el[1], &pid, spec, 0);
    return 1;
}

/* ---- replica_info: what this instance keeps ------------------------------------ */

typedef struct info_ctx {
    size_t local, specs, stubs;
} info_ctx;

static void count_entry(sup_child *c, void *arg)
{
    info_ctx *k = arg;
    if (c->local)
        k->local++;
    else if (sup_spec_full(c->shared))
        k->specs++;
    else
        k->stubs++;
}

static void kv(ei_x_buff *x, const char *k, size_t v)
{
    dsup_x_encode_atom(x, k);
    ei_x_encode_ulong(x, (unsigned long)v);
}

int sup_replica_call(dsup_sup *s, dsup_term req, ei_x_buff *reply)
{
    if (!dsup_term_is_atom(req, "replica_info"))
        return 0;
    info_ctx k = { 0, 0, 0 };
    sup_foreach_child(s, count_entry, &k);
    ei_x_encode_map_header(reply, 5);
    kv(reply, "replicas", (size_t)s->replicas);
    kv(reply, "local", k.local);
    kv(reply, "specs", k.specs);
    kv(reply, "stubs", k.stubs);
    dsup_x_encode_atom(reply, "pass_active");
    dsup_x_encode_atom(reply, s->repl && (s->repl->active || uv_is_active((uv_handle_t *)s->repl->timer))
                                  ? "true" : "false");
    return 1;
}
