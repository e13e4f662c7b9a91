/* sup_shared.c — the specs of an instance's child table, without names,
 * shared: the children of one type nearly always have the same type, args,
 * restart and shutdown, and a child's name is its record's key already. So
 * an idle child costs no spec allocation of its own (README, Memory per
 * child). A spec is counted by the children that hold it and goes with the
 * last. New children find one to share through a small direct-mapped cache
 * of the specs made last (SPEC_CACHE slots, by hash) and not through an
 * index of them all: a child whose spec is its own (args of its own) then
 * costs what its private copy did, nothing more; a common spec that lost
 * its slot to another is made again, once, by its next child. */
#include <stdlib.h>
#include <string.h>

#include "sup.h"
#include "xalloc.h"

#define SPEC_CACHE 256 /* slots, a power of two: 2 KB an instance, made at its first child */

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL; /* FNV-1a */
    return h;
}

static uint64_t spec_hash(const dsup_child_spec *s)
{
    int64_t sh = s->shutdown;
    unsigned char rb[2] = { (unsigned char)s->restart, s->beam };
    uint64_t h = mix(0xcbf29ce484222325ULL, s->type, strlen(s->type));
    h = mix(h, rb, 2);
    h = mix(h, &sh, sizeof sh);
    h = mix(h, s->args.buf, s->args.len);
    h ^= h >> 33;
    return h;
}

static int same(const dsup_child_spec *a, const dsup_child_spec *b)
{
    return a->restart == b->restart && a->beam == b->beam && a->shutdown == b->shutdown &&
           a->args.len == b->args.len && (a->type == b->type || strcmp(a->type, b->type) == 0) &&
           (a->args.len == 0 || memcmp(a->args.buf, b->args.buf, a->args.len) == 0);
}

const dsup_child_spec *sup_spec_share(dsup_sup *s, const dsup_child_spec *spec)
{
    /* a batch's children, and most starts, have the last one's spec */
    dsup_child_spec *sh = (dsup_child_spec *)s->spec_last;
    if (!sh || !same(sh, spec)) {
        if (!s->spec_cache && !(s->spec_cache = calloc(SPEC_CACHE, sizeof *s->spec_cache)))
            return NULL;
        dsup_child_spec **slot = &s->spec_cache[spec_hash(spec) & (SPEC_CACHE - 1)];
        sh = *slot;
        if (!sh || !same(sh, spec)) {
            /* one allocation, no name; a registered type's name and args []
             * are not copied (sup_spec.c). It takes the slot; the one it
             * replaces lives on with its children. */
            if (!(sh = dsup_spec_with_name_view(spec, (dsup_term){ NULL, 0 })))
                return NULL;
            *slot = sh;
        }
        s->spec_last = sh;
    }
    sh->shared_refs++;
    return sh;
}

void sup_spec_unshare(dsup_sup *s, const dsup_child_spec *shared)
{
    if (!shared)
        return;
    dsup_child_spec *sh = (dsup_child_spec *)shared;
    if (--sh->shared_refs)
        return;
    if (s->spec_last == shared)
        s->spec_last = NULL;
    if (s->spec_cache) {
        dsup_child_spec **slot = &s->spec_cache[spec_hash(sh) & (SPEC_CACHE - 1)];
        if (*slot == sh)
            *slot = NULL;
    }
    free(sh);
}

void sup_spec_shared_free(dsup_sup *s)
{
    free(s->spec_cache);
    s->spec_cache = NULL;
    s->spec_last = NULL;
}
