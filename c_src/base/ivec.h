/* ivec.h — a vector of fixed-size elements with an optional hash index.
 * Small vectors (most processes have one link and one monitor) are scanned;
 * past IVEC_SMALL elements an open-addressing index of element positions is
 * kept, so a supervisor with 100,000 linked children or a process watched by
 * many monitors finds and removes one in O(1). An empty vector is one NULL
 * pointer: it costs a process nothing until used. */
#ifndef DSUP_IVEC_H
#define DSUP_IVEC_H

#include <stddef.h>
#include <stdint.h>

#define IVEC_SMALL 8

typedef struct dsup_ivec_hdr {
    uint32_t n, cap;
    uint32_t nslots;
    uint32_t *slots;      /* element index + 1, 0 = empty; NULL while small */
    _Alignas(8) char v[];
} dsup_ivec_hdr;

typedef struct dsup_ivec {
    dsup_ivec_hdr *h;
} dsup_ivec;

/* How elements are keyed: hash of an element's key, and key equality. */
typedef struct dsup_ivec_type {
    size_t size;                                    /* element size */
    uint64_t (*hash)(const void *key);              /* key is what find() takes */
    const void *(*key_of)(const void *elem);        /* the key inside an element */
    int (*eq)(const void *key_a, const void *key_b);
} dsup_ivec_type;

static inline uint32_t dsup_ivec_len(const dsup_ivec *a) { return a->h ? a->h->n : 0; }

static inline void *dsup_ivec_at(const dsup_ivec *a, const dsup_ivec_type *t, uint32_t i)
{
    return a->h->v + (size_t)i * t->size;
}

/* Index of the element with this key, or -1. */
long dsup_ivec_find(const dsup_ivec *a, const dsup_ivec_type *t, const void *key);
/* Append a copy of elem. 0, or -1 out of memory. */
int dsup_ivec_push(dsup_ivec *a, const dsup_ivec_type *t, const void *elem);
/* Remove element i (the last one moves into its place); the last element's
 * removal frees the vector. */
void dsup_ivec_remove_at(dsup_ivec *a, const dsup_ivec_type *t, uint32_t i);
/* The same, but an emptied vector stays allocated, for one that fills and
 * empties all the time (dsup_ivec_free gives it back). */
void dsup_ivec_remove_at_keep(dsup_ivec *a, const dsup_ivec_type *t, uint32_t i);
void dsup_ivec_free(dsup_ivec *a);

#endif
