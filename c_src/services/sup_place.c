/* sup_place.c — placement by capability in a mixed BEAM/C cluster.
 *
 * Every host says what it can run through pg, which every node (C and
 * Elixir) sees the same way: a C instance joins {'$dsup_type', Type} for
 * each worker type this node registered (built-ins and plugins), an Elixir
 * host joins '$dsup_beam' (it runs BEAM modules); both join '$dsup_hosts'
 * after those. A pg sync may still list '$dsup_hosts' first, so a host can
 * be seen before its capabilities: pending children are retried on both
 * joins (sup.c). Only hosts (members of '$dsup_hosts') are candidates.
 *
 * The candidates for a child of type T: the hosts in {'$dsup_type', T};
 * for a BEAM child (spec->beam), or a new start of a type no C host
 * advertises, the hosts in '$dsup_beam'. The owner is libring over the
 * candidates' nodes: the instance's ring when the candidates are all of its
 * nodes (a homogeneous cluster places exactly as before), else a ring of
 * the candidates added in sorted order. The shim computes the same. */
#include <stdlib.h>
#include <string.h>

#include "gen_server.h"
#include "intern.h"
#include "log.h"
#include "node.h"
#include "sup.h"
#include "xalloc.h"
#include "term.h"

#define MAX_CANDIDATES 64

static void encode_type_group(ei_x_buff *x, const char *type)
{
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, SUP_TYPE_TAG);
    dsup_x_encode_atom(x, type);
}

void sup_place_advertise(dsup_sup *s, int join)
{
    const char *names[256];
    size_t n = dsup_worker_type_names(names, 256);
    if (n > 256)
        n = 256;
    for (size_t i = 0; i < n; i++) {
        ei_x_buff *x = dsup_term_scratch(s->node);
        encode_type_group(x, names[i]);
        dsup_term g = { x->buff, (size_t)x->index };
        int rc;
        if (join && (rc = dsup_pg_join(s->scope, g, &s->proc->pid, 1)) < 0)
            LOG_ERROR("%s: cannot advertise capability %s (%s)", s->name, names[i], dsup_strerror(rc));
        else if (!join)
            dsup_pg_leave(s->scope, g, &s->proc->pid, 1);
        dsup_term_scratch_release(x);
    }
}

int sup_place_is_capability_group(dsup_term group)
{
    dsup_term el[2];
    int ar;
    return dsup_term_is_atom(group, SUP_BEAM_GROUP) ||
           (dsup_term_tagged(group, SUP_TYPE_TAG, &ar, el, 2) && ar == 2);
}

/* The distinct nodes of the group's members that are hosts (and allowed),
 * sorted by name. */
static size_t member_nodes(dsup_sup *s, dsup_term group, const char **out)
{
    const dsup_pid *pids;
    size_t n = dsup_pg_members(s->scope, group, &pids), k = 0;
    for (size_t i = 0; i < n && k < MAX_CANDIDATES; i++) {
        const char *node = pids[i].node;
        size_t j = 0;
        while (j < k && out[j] != node)
            j++;
        if (j < k || !sup_node_allowed(s, node) || !sup_host_on(s, node))
            continue;
        /* insertion sort: a handful of nodes */
        size_t at = k++;
        while (at > 0 && strcmp(out[at - 1], node) > 0) {
            out[at] = out[at - 1];
            at--;
        }
        out[at] = node;
    }
    return k;
}

static size_t candidates_now(dsup_sup *s, const char *type, int beam, int fresh, const char **out);

/* The last answer of candidates(), kept for the batch start under way:
 * inside one (a single call, one loop turn) pg's capability and host
 * groups cannot change (its own joins are children's names), and each of
 * its children asks for its type's candidates twice (owner, replicas). */
typedef struct cand_memo {
    const dsup_sup *s;
    uint64_t batch;
    char type[256];              /* a copy: the asker's spec may go first */
    int beam, fresh;
    size_t n;
    const char *c[MAX_CANDIDATES];
} cand_memo;

static cand_memo *memo_of(dsup_node *node);

static size_t candidates(dsup_sup *s, const char *type, int beam, int fresh, const char **out)
{
    uint64_t batch = sup_up_batch_id(s);
    size_t tlen = strlen(type);
    if (!batch || tlen >= sizeof ((cand_memo *)0)->type)
        return candidates_now(s, type, beam, fresh, out);
    cand_memo *m = memo_of(s->node) + (fresh != 0); /* owner and replicas ask alternately */
    if (!(m->s == s && m->batch == batch && m->beam == beam && m->fresh == fresh && strcmp(m->type, type) == 0)) {
        m->n = candidates_now(s, type, beam, fresh, m->c);
        m->s = s;
        m->batch = batch;
        memcpy(m->type, type, tlen + 1);
        m->beam = beam;
        m->fresh = fresh;
    }
    memcpy(out, m->c, m->n * sizeof *out);
    return m->n;
}

static size_t candidates_now(dsup_sup *s, const char *type, int beam, int fresh, const char **out)
{
    if (!beam) {
        ei_x_buff *x = dsup_term_scratch(s->node);
        encode_type_group(x, type);
        size_t n = member_nodes(s, (dsup_term){ x->buff, (size_t)x->index }, out);
        dsup_term_scratch_release(x);
        if (n || !fresh)
            return n;
    }
    return member_nodes(s, dsup_reason_atom(s->node, SUP_BEAM_GROUP), out);
}

/* Rings of candidate sets, by set: a set's ring never changes (sorted adds). */
typedef struct ring_cache {
    const char *nodes[8];
    size_t n;
    int enc;
    dsup_ring *ring;
} ring_cache;
/* One node's (node->sup->place). */
struct sup_ring_cache {
    ring_cache rings[8];
    unsigned next_slot;
    cand_memo memo[2];           /* by `fresh` */
};

static cand_memo *memo_of(dsup_node *node)
{
    if (!node->sup->place)
        node->sup->place = dsup_xcalloc(1, sizeof *node->sup->place);
    return node->sup->place->memo;
}

static dsup_ring *ring_of(dsup_node *node, const char **nodes, size_t n, int enc)
{
    if (!node->sup->place)
        node->sup->place = dsup_xcalloc(1, sizeof *node->sup->place);
    ring_cache *rings = node->sup->place->rings;
    enum { NRINGS = sizeof node->sup->place->rings / sizeof node->sup->place->rings[0] };
    for (size_t i = 0; i < NRINGS; i++) {
        ring_cache *r = &rings[i];
        if (r->ring && r->n == n && r->enc == enc && memcmp(r->nodes, nodes, n * sizeof *nodes) == 0)
            return r->ring;
    }
    dsup_ring *ring = dsup_ring_new();
    if (!ring)
        return NULL;
    dsup_ring_set_atom_encoding(ring, enc);
    for (size_t i = 0; i < n; i++)
        dsup_ring_add_node(ring, nodes[i], 0);
    if (n > 8)
        return ring; /* not cached: the caller frees rings it did not get from here */
    ring_cache *r = &rings[node->sup->place->next_slot++ % NRINGS];
    dsup_ring_free(r->ring);
    /* the key is the names' pointers: hold them, or a freed name's address
     * could come back as another node's */
    for (size_t i = 0; i < r->n; i++)
        dsup_intern_release(r->nodes[i]);
    for (size_t i = 0; i < n; i++)
        dsup_intern_hold(nodes[i]);
    memcpy(r->nodes, nodes, n * sizeof *nodes);
    r->n = n;
    r->enc = enc;
    r->ring = ring;
    return ring;
}

static const char *owner_of(dsup_sup *s, const char **c, size_t n, dsup_term key)
{
    if (!n)
        return NULL;
    int all = n == dsup_ring_node_count(s->ring);
    for (size_t i = 0; all && i < n; i++)
        all = dsup_ring_has_node(s->ring, c[i]);
    const char *owner;
    if (all) {
        owner = dsup_ring_node_for(s->ring, key.buf, key.len);
    } else {
        dsup_ring *r = ring_of(s->node, c, n, dsup_ring_atom_encoding(s->ring));
        owner = r ? dsup_ring_node_for(r, key.buf, key.len) : NULL;
        /* the candidates' own (interned) name: rings keep copies */
        for (size_t i = 0; owner && i < n; i++)
            if (strcmp(c[i], owner) == 0) {
                owner = c[i];
                break;
            }
        if (r && n > 8)
            dsup_ring_free(r);
        return owner;
    }
    for (size_t i = 0; owner && i < n; i++)
        if (strcmp(c[i], owner) == 0)
            return c[i];
    return NULL;
}

const char *sup_place_owner(dsup_sup *s, const dsup_child_spec *spec, int fresh)
{
    const char *c[MAX_CANDIDATES];
    size_t n = candidates(s, spec->type, spec->beam, fresh, c);
    return owner_of(s, c, n, spec->name);
}

const char *sup_place_owner_for_type(dsup_sup *s, const char *type, dsup_term key)
{
    const char *c[MAX_CANDIDATES];
    size_t n = candidates(s, type, 0, 1, c);
    return owner_of(s, c, n, key);
}

void sup_place_free(dsup_node *node)
{
    struct sup_ring_cache *P = node->sup->place;
    if (!P)
        return;
    for (size_t i = 0; i < sizeof P->rings / sizeof P->rings[0]; i++) {
        dsup_ring_free(P->rings[i].ring);
        for (size_t k = 0; k < P->rings[i].n; k++)
            dsup_intern_release(P->rings[i].nodes[k]);
    }
    free(P);
    node->sup->place = NULL;
}

/* Whether `node` is already among the first n of out. */
static int listed(const char **out, size_t n, const char *node)
{
    for (size_t i = 0; i < n; i++)
        if (out[i] == node)
            return 1;
    return 0;
}

/* Append to out (up to max) the nodes of ring r for key, clockwise from its
 * point, mapped to the interned names in c[0..nc) (or any interned host when
 * c is NULL), skipping `skip` and those already listed. */
static size_t append_clockwise(dsup_sup *s, dsup_ring *r, dsup_term key, const char **c, size_t nc,
                               const char *skip, const char **out, size_t n, size_t max)
{
    const char *walk[MAX_CANDIDATES];
    /* every node of a candidates' ring is one: max plus `skip` will do */
    size_t want = c ? max - n + 1 : dsup_ring_node_count(r);
    if (want > MAX_CANDIDATES)
        want = MAX_CANDIDATES;
    size_t m = dsup_ring_nodes_for(r, key.buf, key.len, walk, want);
    for (size_t i = 0; i < m && n < max; i++) {
        const char *node = NULL;
        if (c) {
            for (size_t j = 0; j < nc && !node; j++)
                if (strcmp(c[j], walk[i]) == 0)
                    node = c[j];
        } else if ((node = dsup_intern_find(s->node->names, walk[i], strlen(walk[i]))) && !sup_host_on(s, node)) {
            node = NULL;
        }
        if (node && node != skip && !listed(out, n, node))
            out[n++] = node;
    }
    return n;
}

/* Up to max hosts able to run spec, clockwise from its name's point, without skip. */
static size_t capable_clockwise(dsup_sup *s, const dsup_child_spec *spec, const char *skip, const char **out,
                                size_t max)
{
    const char *c[MAX_CANDIDATES];
    size_t nc = candidates(s, spec->type, spec->beam, 0, c), n = 0;
    if (nc) {
        int all = nc == dsup_ring_node_count(s->ring);
        for (size_t i = 0; all && i < nc; i++)
            all = dsup_ring_has_node(s->ring, c[i]);
        dsup_ring *r = all ? s->ring : ring_of(s->node, c, nc, dsup_ring_atom_encoding(s->ring));
        if (r)
            n = append_clockwise(s, r, spec->name, c, nc, skip, out, n, max);
        if (r && !all && nc > 8)
            dsup_ring_free(r);
    }
    return n;
}

const char *sup_place_successor(dsup_sup *s, const dsup_child_spec *spec, const char *skip)
{
    const char *out[1];
    return capable_clockwise(s, spec, skip, out, 1) ? out[0] : NULL;
}

size_t sup_place_successors(dsup_sup *s, const dsup_child_spec *spec, const char *skip, const char **out,
                            size_t max)
{
    if (max > MAX_CANDIDATES)
        max = MAX_CANDIDATES;
    size_t n = capable_clockwise(s, spec, skip, out, max);
    /* too few capable hosts: pad with the others, which keep it pending */
    if (n < max)
        n = append_clockwise(s, s->ring, spec->name, NULL, 0, skip, out, n, max);
    return n;
}
