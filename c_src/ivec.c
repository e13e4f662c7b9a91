/* ivec.c — see ivec.h. The index is linear probing with backward-shift
 * deletion; it is built when the vector outgrows IVEC_SMALL and rebuilt
 * when it doubles. */
#include "ivec.h"

#include <stdlib.h>
#include <string.h>

static uint32_t home(const dsup_ivec *a, uint64_t h) { return (uint32_t)(h & (a->nslots - 1)); }

static uint64_t elem_hash(const dsup_ivec_type *t, const void *e) { return t->hash(t->key_of(e)); }

static int rebuild(dsup_ivec *a, const dsup_ivec_type *t, uint32_t nslots)
{
    uint32_t *s = calloc(nslots, sizeof *s);
    if (!s)
        return -1;
    free(a->slots);
    a->slots = s;
    a->nslots = nslots;
    for (uint32_t i = 0; i < a->n; i++) {
        uint32_t j = home(a, elem_hash(t, dsup_ivec_at(a, t, i)));
        while (a->slots[j])
            j = (j + 1) & (nslots - 1);
        a->slots[j] = i + 1;
    }
    return 0;
}

long dsup_ivec_find(const dsup_ivec *a, const dsup_ivec_type *t, const void *key)
{
    if (!a->slots) {
        for (uint32_t i = 0; i < a->n; i++)
            if (t->eq(t->key_of(dsup_ivec_at(a, t, i)), key))
                return i;
        return -1;
    }
    for (uint32_t j = home(a, t->hash(key)); a->slots[j]; j = (j + 1) & (a->nslots - 1)) {
        uint32_t i = a->slots[j] - 1;
        if (t->eq(t->key_of(dsup_ivec_at(a, t, i)), key))
            return i;
    }
    return -1;
}

int dsup_ivec_push(dsup_ivec *a, const dsup_ivec_type *t, const void *elem)
{
    if (a->n == a->cap) {
        uint32_t nc = a->cap ? a->cap * 2 : 1;
        void *nv = realloc(a->v, (size_t)nc * t->size);
        if (!nv)
            return -1;
        a->v = nv;
        a->cap = nc;
    }
    memcpy(dsup_ivec_at(a, t, a->n), elem, t->size);
    a->n++;
    if (a->n > IVEC_SMALL && (!a->slots || a->n * 2 > a->nslots)) {
        uint32_t ns = 32;
        while (ns < a->n * 4)
            ns *= 2;
        if (rebuild(a, t, ns) < 0) {
            a->n--;
            return -1;
        }
        return 0;
    }
    if (a->slots) {
        uint32_t j = home(a, elem_hash(t, elem));
        while (a->slots[j])
            j = (j + 1) & (a->nslots - 1);
        a->slots[j] = a->n;
    }
    return 0;
}

/* The slot that holds element index i. */
static uint32_t slot_of(const dsup_ivec *a, const dsup_ivec_type *t, uint32_t i)
{
    uint32_t j = home(a, elem_hash(t, dsup_ivec_at(a, t, i)));
    while (a->slots[j] != i + 1)
        j = (j + 1) & (a->nslots - 1);
    return j;
}

static void slot_delete(dsup_ivec *a, const dsup_ivec_type *t, uint32_t j)
{
    a->slots[j] = 0;
    uint32_t k = j;
    for (;;) {
        k = (k + 1) & (a->nslots - 1);
        if (!a->slots[k])
            return;
        uint32_t h = home(a, elem_hash(t, dsup_ivec_at(a, t, a->slots[k] - 1)));
        int movable = (j <= k) ? (h <= j || h > k) : (h <= j && h > k);
        if (movable) {
            a->slots[j] = a->slots[k];
            a->slots[k] = 0;
            j = k;
        }
    }
}

void dsup_ivec_remove_at(dsup_ivec *a, const dsup_ivec_type *t, uint32_t i)
{
    uint32_t last = a->n - 1;
    if (a->slots) {
        slot_delete(a, t, slot_of(a, t, i));
        if (i != last)
            a->slots[slot_of(a, t, last)] = i + 1;
    }
    if (i != last)
        memcpy(dsup_ivec_at(a, t, i), dsup_ivec_at(a, t, last), t->size);
    a->n--;
}

void dsup_ivec_free(dsup_ivec *a)
{
    free(a->v);
    free(a->slots);
    memset(a, 0, sizeof *a);
}
