/* dict.h — a hash table keyed by byte strings (chained, doubling), after
 * redis's dict.c. Used where keys are encoded terms or small structs. */
#ifndef DSUP_DICT_H
#define DSUP_DICT_H

#include <stddef.h>
#include <stdint.h>

/* 16 bytes of header (README, Memory per child: every child has a record
 * entry on every node). The value follows the key, padded to 8 bytes: in an
 * inline dict (dsup_dict_upsert_inline) the value itself, in a pointer dict
 * (dsup_dict_upsert) an 8-byte slot holding the pointer. A dict is one kind
 * or the other, fixed by its first upsert. */
typedef struct dsup_dict_ent {
    struct dsup_dict_ent *next;
    uint32_t hash;
    uint32_t klen;
    char key[];                 /* the key bytes, then the value */
} dsup_dict_ent;

typedef struct dsup_dict {
    dsup_dict_ent **slots;
    size_t nslots, count;
    int kind;                   /* DSUP_DICT_* : 0 until the first upsert */
} dsup_dict;

enum { DSUP_DICT_POINTERS = 1, DSUP_DICT_INLINE = 2 };

/* Where an entry's value starts: the key rounded up to 8 bytes. */
static inline size_t dsup_dict_val_off(size_t klen) { return (klen + 7) & ~(size_t)7; }
/* An inline entry's value (also the address of a pointer entry's slot). */
static inline void *dsup_dict_val(const dsup_dict_ent *e)
{
    return (char *)e->key + dsup_dict_val_off(e->klen);
}
/* A pointer entry's pointer (NULL when just created), and setting it. */
static inline void *dsup_dict_get(const dsup_dict_ent *e) { return *(void **)dsup_dict_val(e); }
static inline void dsup_dict_set(dsup_dict_ent *e, void *v) { *(void **)dsup_dict_val(e) = v; }

/* The table's hash of len bytes (also intern.c's, for node names). */
uint32_t dsup_hash_bytes(const void *key, size_t len);
/* The entry for key, or NULL. */
dsup_dict_ent *dsup_dict_find(const dsup_dict *d, const void *key, size_t klen);
/* Pointer dicts: the entry for key, created (pointer NULL) when missing;
 * NULL when out of memory. */
dsup_dict_ent *dsup_dict_upsert(dsup_dict *d, const void *key, size_t klen, int *created);
/* Inline dicts: a new entry also holds `vsize` zeroed bytes for the value
 * (dsup_dict_val): the value lives and dies with the entry (one allocation
 * instead of two; never free it yourself). */
dsup_dict_ent *dsup_dict_upsert_inline(dsup_dict *d, const void *key, size_t klen, size_t vsize, int *created);
/* The key bytes of an inline entry, from its value and key length: a value
 * need not keep a pointer to its key. */
static inline const char *dsup_dict_inline_key(const void *val, size_t klen)
{
    return (const char *)val - dsup_dict_val_off(klen);
}
/* Remove key's entry and return its value: a pointer dict's pointer (yours
 * now), an inline dict's NULL (the value died with its entry). NULL when
 * absent; dsup_dict_delete says whether it was there. */
void *dsup_dict_remove(dsup_dict *d, const void *key, size_t klen);
/* Remove key's entry; 1 when there was one. */
int dsup_dict_delete(dsup_dict *d, const void *key, size_t klen);
/* Visit every entry; fn may not add or remove entries. */
void dsup_dict_foreach(const dsup_dict *d, void (*fn)(dsup_dict_ent *e, void *arg), void *arg);
/* Free every entry; free_val (may be NULL) first gets each value: a pointer
 * dict's pointer (to free), an inline dict's value (to release what it
 * holds, not itself). */
void dsup_dict_free(dsup_dict *d, void (*free_val)(void *val));

#endif
