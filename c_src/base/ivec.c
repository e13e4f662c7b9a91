/* ivec.c — see ivec.h. The index is linear probing with backward-shift
 * deletion; it is built when the vector outgrows IVEC_SMALL and rebuilt
 * when it doubles. */
#include "ivec.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

static uint32_t home(const dsup_ivec_hdr *h, uint64_t hash) { return (uint32_t)(hash & (h->nslots - 1)); }

static uint64_t elem_hash(const dsup_ivec_type *t, const void *e) { return t->hash(t->key_of(e)); }

static void *at(const dsup_ivec_hdr *h, const dsup_ivec_type *t, uint32_t i)
{
    return (char *)h->v + (size_t)i * t->size;
}

static int rebuild(dsup_ivec_hdr *h, const dsup_ivec_type *t, uint32_t nslots)
{
    uint32_t *s = dsup_xcalloc(nslots, sizeof *s);
    free(h->slots);
    h->slots = s;
    h->nslots = nslots;
    for (uint32_t i = 0; i < h->n; i++) {
        uint32_t j = home(h, elem_hash(t, at(h, t, i)));
        while (h->slots[j])
            j = (j + 1) & (nslots - 1);
        h->slots[j] = i + 1;
    }
    return 0;
}

long dsup_ivec_find(const dsup_ivec *a, const dsup_ivec_type *t, const void *key)
{
    const dsup_ivec_hdr *h = a->h;
    if (!h)
        return -1;
    if (!h->slots) {
        for (uint32_t i = 0; i < h->n; i++)
            if (t->eq(t->key_of(at(h, t, i)), key))
                return i;
        return -1;
    }
    for (uint32_t j = home(h, t->hash(key)); h->slots[j]; j = (j + 1) & (h->nslots - 1)) {
        uint32_t i = h->slots[j] - 1;
        if (t->eq(t->key_of(at(h, t, i)), key))
            return i;
    }
    return -1;
}

int dsup_ivec_push(dsup_ivec *a, const dsup_ivec_type *t, const void *elem)
{
    dsup_ivec_hdr *h = a->h;
    if (!h || h->n == h->cap) {
        uint32_t nc = h ? h->cap * 2 : 1;
        dsup_ivec_hdr *nh = dsup_xrealloc(h, sizeof *nh + (size_t)nc * t->size);
        if (!h)
            memset(nh, 0, sizeof *nh);
        nh->cap = nc;
        a->h = h = nh;
    }
    memcpy(at(h, t, h->n), elem, t->size);
    h->n++;
    /* Index load stays between 0.375 and 0.75: 4-byte slots, 5-11 bytes an
     * element (a supervisor indexes 100,000s of children). */
    if (h->n > IVEC_SMALL && (!h->slots || (uint64_t)h->n * 4 > (uint64_t)h->nslots * 3)) {
        uint32_t ns = 32;
        while (ns < h->n * 2)
            ns *= 2;
        if (rebuild(h, t, ns) < 0) {
            h->n--;
            return -1;
        }
        return 0;
    }
    if (h->slots) {
        uint32_t j = home(h, elem_hash(t, elem));
        while (h->slots[j])
            j = (j + 1) & (h->nslots - 1);
        h->slots[j] = h->n;
    }
    return 0;
}

/* The slot that holds element index i. */
static uint32_t slot_of(const dsup_ivec_hdr *h, const dsup_ivec_type *t, uint32_t i)
{
    uint32_t j = home(h, elem_hash(t, at(h, t, i)));
    while (h->slots[j] != i + 1)
        j = (j + 1) & (h->nslots - 1);
    return j;
}

static void slot_delete(dsup_ivec_hdr *h, const dsup_ivec_type *t, uint32_t j)
{
    h->slots[j] = 0;
    uint32_t k = j;
    for (;;) {
        k = (k + 1) & (h->nslots - 1);
        if (!h->slots[k])
            return;
        uint32_t hk = home(h, elem_hash(t, at(h, t, h->slots[k] - 1)));
        int movable = (j <= k) ? (hk <= j || hk > k) : (hk <= j && hk > k);
        if (movable) {
            h->slots[j] = h->slots[k];
            h->slots[k] = 0;
            j = k;
        }
    }
}

void dsup_ivec_remove_at_keep(dsup_ivec *a, const dsup_ivec_type *t, uint32_t i)
{
    dsup_ivec_hdr *h = a->h;
    uint32_t last = h->n - 1;
    if (h->slots) {
        slot_delete(h, t, slot_of(h, t, i));
        if (i != last)
            h->slots[slot_of(h, t, last)] = i + 1;
    }
    if (i != last)
        memcpy(at(h, t, i), at(h, t, last), t->size);
    h->n--;
}

void dsup_ivec_remove_at(dsup_ivec *a, const dsup_ivec_type *t, uint32_t i)
{
    dsup_ivec_remove_at_keep(a, t, i);
    if (a->h->n == 0)
        dsup_ivec_free(a); /* a process's last link or monitor: give the memory back */
}

void dsup_ivec_free(dsup_ivec *a)
{
    if (a->h)
        free(a->h->slots);
    free(a->h);
    a->h = NULL;
}
