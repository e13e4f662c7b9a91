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
        if (join && (rc = dsup_pg_join(s->scope, g, dsup_self(s->proc), 1)) < 0)
            LOG_ERROR("%s: cannot advertise capability %s (%s)", s->name, names[i], dsup_strerror(rc));
        else if (!join)
            dsup_pg_leave(s->scope, g, dsup_self(s->proc), 1);
        dsup_term_scratch_release(x);
    }
}

int sup_place_is_capability_group(dsup_term group)
{
    /* Asked of every join, mostly of children's names: the first bytes turn
     * away all but atoms and pairs that start with an atom of the tag's length. */
    const uint8_t *b = (const uint8_t *)group.buf;
    size_t len = group.len;
    if (len && b[0] == 131) {
        b++;
        len--;
    }
    if (len < 4)
        return 0;
    if (b[0] == 104 || b[0] == 105) { /* SMALL_TUPLE_EXT, LARGE_TUPLE_EXT */
        size_t at = b[0] == 104 ? 2 : 5;
        if (len < at + 3 || (b[0] == 104 ? b[1] : (size_t)b[1] << 24 | (size_t)b[2] << 16 | b[3] << 8 | b[4]) != 2)
            return 0;
        const size_t tl = sizeof SUP_TYPE_TAG - 1;
        if ((b[at] == 115 || b[at] == 119) && b[at + 1] != tl) /* SMALL_ATOM(_UTF8)_EXT */
            return 0;
        if ((b[at] == 100 || b[at] == 118) && ((size_t)b[at + 1] << 8 | b[at + 2]) != tl) /* ATOM(_UTF8)_EXT */
            return 0;
    } else if (b[0] != 100 && b[0] != 115 && b[0] != 118 && b[0] != 119) {
        return 0;
    }
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

/* The candidates of the last few (type, beam, fresh) asked, good until the
 * hosts or their capabilities change: s->place_gen counts those changes
 * (sup.c bumps it from the scope subscription, which pg calls on every join
 * and leave, before anything else reacts to the change; 0 when the instance
 * no longer follows the scope). A start looks its type's hosts up once per
 * change then, not two pg lookups per host per child.
 * With them, what placement derives from the rings (ring_for): whether they
 * are all of the instance's ring's nodes, and each one's name as the ring
 * that places them has it, so the nodes a ring returns map to the interned
 * candidates by pointer; good while those rings' dsup_ring_gen holds. */
#define MEMO_SLOTS 4
#define MEMO_TYPE_MAX 48
typedef struct cand_memo {
    uint64_t gen;                 /* the s->place_gen it was made at; 0: unused */
    char type[MEMO_TYPE_MAX];     /* "" for a BEAM child (its type plays no part) */
    unsigned char beam, fresh;
    size_t n;
    const char *nodes[MAX_CANDIDATES];
    uint64_t all_gen;             /* s->ring's gen when `all` was found; 0: not yet */
    int all;                      /* the nodes are exactly s->ring's */
    uint64_t map_gen;             /* gen of the ring rnames are from; 0: none */
    const char *rnames[MAX_CANDIDATES]; /* nodes[i] as that ring has it (NULL: not on it) */
} cand_memo;
struct sup_place_memo {
    cand_memo m[MEMO_SLOTS];
    unsigned next;
};

static void memo_fill(dsup_sup *s, cand_memo *e, const char *type, int beam, int fresh)
{
    e->n = candidates_now(s, type, beam, fresh, e->nodes);
    e->all_gen = e->map_gen = 0; /* found again on first use */
    e->all = 0;
}

/* The candidates for (type, beam, fresh): a memo slot, or `tmp` filled when
 * they cannot be kept. */
static cand_memo *candidates(dsup_sup *s, const char *type, int beam, int fresh, cand_memo *tmp)
{
    if (beam)
        type = "";
    size_t tl = strlen(type);
    if (!s->place_gen || tl >= MEMO_TYPE_MAX) {
        memo_fill(s, tmp, type, beam, fresh);
        return tmp;
    }
    if (!s->place_memo)
        s->place_memo = dsup_xcalloc(1, sizeof *s->place_memo);
    cand_memo *m = s->place_memo->m;
    for (size_t i = 0; i < MEMO_SLOTS; i++)
        if (m[i].gen == s->place_gen && m[i].beam == !!beam && m[i].fresh == !!fresh &&
            memcmp(m[i].type, type, tl + 1) == 0)
            return &m[i];
    cand_memo *e = &m[s->place_memo->next++ % MEMO_SLOTS];
    memo_fill(s, e, type, beam, fresh);
    e->gen = s->place_gen;
    memcpy(e->type, type, tl + 1);
    e->beam = !!beam;
    e->fresh = !!fresh;
    return e;
}

void sup_place_forget(dsup_sup *s, int for_good)
{
    if (for_good) {
        free(s->place_memo);
        s->place_memo = NULL;
        s->place_gen = 0;
    } else if (s->place_gen) {
        s->place_gen++;
    }
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
};

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

/* The ring that places m's candidates: the instance's when they are all of
 * its nodes (a homogeneous cluster places exactly as before), else a ring of
 * the candidates (put it back with ring_done). m->rnames is made valid for it. */
static dsup_ring *ring_for(dsup_sup *s, cand_memo *m)
{
    uint64_t sgen = dsup_ring_gen(s->ring);
    if (m->all_gen != sgen) {
        int all = m->n == dsup_ring_node_count(s->ring);
        for (size_t i = 0; all && i < m->n; i++)
            all = dsup_ring_has_node(s->ring, m->nodes[i]);
        m->all = all;
        m->all_gen = sgen;
    }
    dsup_ring *r = m->all ? s->ring : ring_of(s->node, m->nodes, m->n, dsup_ring_atom_encoding(s->ring));
    uint64_t rgen = dsup_ring_gen(r);
    if (r && m->map_gen != rgen) {
        for (size_t i = 0; i < m->n; i++)
            m->rnames[i] = dsup_ring_name(r, m->nodes[i]);
        m->map_gen = rgen;
    }
    return r;
}

static void ring_done(dsup_sup *s, const cand_memo *m, dsup_ring *r)
{
    if (r && r != s->ring && m->n > 8)
        dsup_ring_free(r); /* ring_of did not keep it */
}

/* The interned candidate for a node name a ring of ring_for returned. */
static const char *candidate_of(const cand_memo *m, const char *ring_name)
{
    for (size_t i = 0; ring_name && i < m->n; i++)
        if (m->rnames[i] == ring_name)
            return m->nodes[i];
    return NULL;
}

static const char *owner_of(dsup_sup *s, cand_memo *m, dsup_term key)
{
    if (!m->n)
        return NULL;
    dsup_ring *r = ring_for(s, m);
    const char *owner = r ? candidate_of(m, dsup_ring_node_for(r, key.buf, key.len)) : NULL;
    ring_done(s, m, r);
    return owner;
}

const char *sup_place_owner(dsup_sup *s, const dsup_child_spec *spec, int fresh)
{
    cand_memo tmp;
    return owner_of(s, candidates(s, spec->type, spec->beam, fresh, &tmp), spec->name);
}

const char *sup_place_owner_for_type(dsup_sup *s, const char *type, dsup_term key)
{
    cand_memo tmp;
    return owner_of(s, candidates(s, type, 0, 1, &tmp), key);
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
 * point, mapped to m's interned candidates (r from ring_for(m)), or to any
 * interned host when m is NULL, skipping `skip` and those already listed. */
static size_t append_clockwise(dsup_sup *s, dsup_ring *r, dsup_term key, const cand_memo *m,
                               const char *skip, const char **out, size_t n, size_t max)
{
    const char *walk[MAX_CANDIDATES];
    /* every node of a candidates' ring is one: max plus `skip` will do */
    size_t want = m ? max - n + 1 : dsup_ring_node_count(r);
    if (want > MAX_CANDIDATES)
        want = MAX_CANDIDATES;
    size_t k = dsup_ring_nodes_for(r, key.buf, key.len, walk, want);
    for (size_t i = 0; i < k && n < max; i++) {
        const char *node = NULL;
        if (m)
            node = candidate_of(m, walk[i]);
        else if ((node = dsup_intern_find(s->node->names, walk[i], strlen(walk[i]))) && !sup_host_on(s, node))
            node = NULL;
        if (node && node != skip && !listed(out, n, node))
            out[n++] = node;
    }
    return n;
}

/* Up to max hosts able to run spec, clockwise from its name's point, without skip. */
static size_t capable_clockwise(dsup_sup *s, const dsup_child_spec *spec, const char *skip, const char **out,
                                size_t max)
{
    cand_memo tmp;
    cand_memo *m = candidates(s, spec->type, spec->beam, 0, &tmp);
    size_t n = 0;
    if (m->n) {
        dsup_ring *r = ring_for(s, m);
        if (r)
            n = append_clockwise(s, r, spec->name, m, skip, out, n, max);
        ring_done(s, m, r);
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
        n = append_clockwise(s, s->ring, spec->name, NULL, skip, out, n, max);
    return n;
}
