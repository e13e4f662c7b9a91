/* dict.c — byte-keyed hash table with inline keys: one allocation per entry. */
#include "dict.h"
#include "xalloc.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* 8 bytes a step (keys are encoded names and groups, 10-40 bytes, looked
 * up several times per child started; node names in intern.c), then a
 * final mix. */
uint32_t dsup_hash_bytes(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = 1469598103934665603ULL ^ ((uint64_t)len * 0x9E3779B97F4A7C15ULL);
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDULL;
        h ^= h >> 32;
    }
    if (len) {
        uint64_t w = 0;
        memcpy(&w, p, len);
        h = (h ^ w) * 0xFF51AFD7ED558CCDULL;
        h ^= h >> 32;
    }
    h *= 0xC4CEB9FE1A85EC53ULL;
    return (uint32_t)(h ^ (h >> 29));
}

static dsup_dict_ent *find_hashed(const dsup_dict *d, const void *key, size_t klen, uint32_t h)
{
    if (!d->nslots)
        return NULL;
    for (dsup_dict_ent *e = d->slots[h & (d->nslots - 1)]; e; e = e->next)
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0)
            return e;
    return NULL;
}

dsup_dict_ent *dsup_dict_find(const dsup_dict *d, const void *key, size_t klen)
{
    return d->nslots ? find_hashed(d, key, klen, dsup_hash_bytes(key, klen)) : NULL;
}

static int grow(dsup_dict *d)
{
    size_t n = d->nslots ? d->nslots * 2 : 16;
    dsup_dict_ent **ns = dsup_xcalloc(n, sizeof *ns);
    for (size_t i = 0; i < d->nslots; i++) {
        for (dsup_dict_ent *e = d->slots[i], *next; e; e = next) {
            next = e->next;
            e->next = ns[e->hash & (n - 1)];
            ns[e->hash & (n - 1)] = e;
        }
    }
    free(d->slots);
    d->slots = ns;
    d->nslots = n;
    return 0;
}

/* vsize: the value's bytes after the padded key (a pointer's 8 for pointer dicts). */
static dsup_dict_ent *upsert(dsup_dict *d, int kind, const void *key, size_t klen, size_t vsize, int *created)
{
    assert(!d->kind || d->kind == kind); /* one kind per dict: remove and free depend on it */
    d->kind = kind;
    uint32_t h = dsup_hash_bytes(key, klen); /* once: for the lookup and the new entry */
    dsup_dict_ent *e = find_hashed(d, key, klen, h);
    if (created)
        *created = 0;
    if (e)
        return e;
    if (d->count >= d->nslots && grow(d) < 0)
        return NULL;
    size_t voff = dsup_dict_val_off(klen);
    e = dsup_xmalloc(sizeof *e + voff + vsize);
    e->hash = h;
    e->klen = (uint32_t)klen;
    memcpy(e->key, key, klen);
    memset(e->key + voff, 0, vsize);
    size_t s = e->hash & (d->nslots - 1);
    e->next = d->slots[s];
    d->slots[s] = e;
    d->count++;
    if (created)
        *created = 1;
    return e;
}

dsup_dict_ent *dsup_dict_upsert(dsup_dict *d, const void *key, size_t klen, int *created)
{
    return upsert(d, DSUP_DICT_POINTERS, key, klen, sizeof(void *), created);
}

dsup_dict_ent *dsup_dict_upsert_inline(dsup_dict *d, const void *key, size_t klen, size_t vsize, int *created)
{
    return upsert(d, DSUP_DICT_INLINE, key, klen, vsize ? vsize : 1, created);
}

/* Unlink key's entry and return it (to be freed), or NULL. */
static dsup_dict_ent *unlink_key(dsup_dict *d, const void *key, size_t klen)
{
    if (!d->nslots)
        return NULL;
    uint32_t h = dsup_hash_bytes(key, klen);
    for (dsup_dict_ent **pe = &d->slots[h & (d->nslots - 1)]; *pe; pe = &(*pe)->next) {
        dsup_dict_ent *e = *pe;
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0) {
            *pe = e->next;
            d->count--;
            return e;
        }
    }
    return NULL;
}

void *dsup_dict_remove(dsup_dict *d, const void *key, size_t klen)
{
    dsup_dict_ent *e = unlink_key(d, key, klen);
    if (!e)
        return NULL;
    void *v = d->kind == DSUP_DICT_POINTERS ? dsup_dict_get(e) : NULL;
    free(e);
    return v;
}

int dsup_dict_delete(dsup_dict *d, const void *key, size_t klen)
{
    dsup_dict_ent *e = unlink_key(d, key, klen);
    if (!e)
        return 0;
    free(e);
    return 1;
}

void dsup_dict_foreach(const dsup_dict *d, void (*fn)(dsup_dict_ent *e, void *arg), void *arg)
{
    for (size_t i = 0; i < d->nslots; i++)
        for (dsup_dict_ent *e = d->slots[i]; e; e = e->next)
            fn(e, arg);
}

void dsup_dict_free(dsup_dict *d, void (*free_val)(void *val))
{
    for (size_t i = 0; i < d->nslots; i++) {
        for (dsup_dict_ent *e = d->slots[i], *next; e; e = next) {
            next = e->next;
            if (free_val)
                free_val(d->kind == DSUP_DICT_POINTERS ? dsup_dict_get(e) : dsup_dict_val(e));
            free(e);
        }
    }
    free(d->slots);
    d->slots = NULL;
    d->nslots = d->count = 0;
    d->kind = 0;
}
