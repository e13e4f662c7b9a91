/* sup_shared.c — the specs of an instance's child table, without names,
 * shared: the children of one type nearly always have the same type, args,
 * restart and shutdown, and a child's name is its record's key already. So
 * an idle child costs no spec allocation of its own (README, Memory per
 * child). One spec per distinct (type, restart, shutdown, beam, args) in
 * s->specs, an index of pointers (8 B and an index slot each: a spec held
 * by one child alone costs about what its own copy did); it goes with its
 * last child. */
#include <stdlib.h>
#include <string.h>

#include "sup.h"
#include "xalloc.h"

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL; /* FNV-1a */
    return h;
}

static uint64_t spec_hash(const void *key)
{
    const dsup_child_spec *s = key;
    int64_t sh = s->shutdown;
    unsigned char rb[2] = { (unsigned char)s->restart, s->beam };
    uint64_t h = mix(0xcbf29ce484222325ULL, s->type, strlen(s->type));
    h = mix(h, rb, 2);
    h = mix(h, &sh, sizeof sh);
    h = mix(h, s->args.buf, s->args.len);
    h ^= h >> 33;
    return h;
}

static const void *spec_of(const void *elem) { return *(const dsup_child_spec *const *)elem; }

static int same(const void *ka, const void *kb)
{
    const dsup_child_spec *a = ka, *b = kb;
    return a->restart == b->restart && a->beam == b->beam && a->shutdown == b->shutdown &&
           a->args.len == b->args.len && (a->type == b->type || strcmp(a->type, b->type) == 0) &&
           (a->args.len == 0 || memcmp(a->args.buf, b->args.buf, a->args.len) == 0);
}

static const dsup_ivec_type specs_t = { sizeof(dsup_child_spec *), spec_hash, spec_of, same };

const dsup_child_spec *sup_spec_share(dsup_sup *s, const dsup_child_spec *spec)
{
    /* a batch's children, and most starts, have the last one's spec */
    dsup_child_spec *sh = (dsup_child_spec *)s->spec_last;
    if (!sh || !same(sh, spec)) {
        long i = dsup_ivec_find(&s->specs, &specs_t, spec);
        if (i >= 0) {
            sh = *(dsup_child_spec **)dsup_ivec_at(&s->specs, &specs_t, (uint32_t)i);
        } else {
            /* one allocation, no name; a registered type's name and args []
             * are not copied (sup_spec.c) */
            if (!(sh = dsup_spec_with_name_view(spec, (dsup_term){ NULL, 0 })))
                return NULL;
            if (dsup_ivec_push(&s->specs, &specs_t, &sh) < 0) {
                free(sh);
                return NULL;
            }
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
    long i = dsup_ivec_find(&s->specs, &specs_t, sh);
    if (i >= 0)
        dsup_ivec_remove_at(&s->specs, &specs_t, (uint32_t)i);
    free(sh);
}

void sup_spec_shared_free(dsup_sup *s)
{
    for (uint32_t i = 0; i < dsup_ivec_len(&s->specs); i++)
        free(*(dsup_child_spec **)dsup_ivec_at(&s->specs, &specs_t, i));
    dsup_ivec_free(&s->specs);
    s->spec_last = NULL;
}
