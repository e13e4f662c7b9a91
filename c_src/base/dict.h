/* dict.h — a hash table keyed by byte strings (chained, doubling), after
 * redis's dict.c. Used where keys are encoded terms or small structs. */
#ifndef DSUP_DICT_H
#define DSUP_DICT_H

#include <stddef.h>
#include <stdint.h>

/* 24 bytes of header: the registry has two entries per child. */
typedef struct dsup_dict_ent {
    struct dsup_dict_ent *next;
    void *val;
    uint32_t hash;
    uint32_t klen;
    char key[];                 /* the key bytes are stored inline */
} dsup_dict_ent;

typedef struct dsup_dict {
    dsup_dict_ent **slots;
    size_t nslots, count;
} dsup_dict;

/* The table's hash of len bytes (also intern.c's, for node names). */
uint32_t dsup_hash_bytes(const void *key, size_t len);
/* The entry for key, or NULL. */
dsup_dict_ent *dsup_dict_find(const dsup_dict *d, const void *key, size_t klen);
/* The entry for key, created (val NULL) when missing; NULL when out of memory. */
dsup_dict_ent *dsup_dict_upsert(dsup_dict *d, const void *key, size_t klen, int *created);
/* Like upsert, but a new entry also holds `vsize` zeroed bytes for the value
 * and e->val points at them: the value lives and dies with the entry (one
 * allocation instead of two; do not free val yourself). */
dsup_dict_ent *dsup_dict_upsert_inline(dsup_dict *d, const void *key, size_t klen, size_t vsize, int *created);
/* The key bytes of an inline entry (dsup_dict_upsert_inline), from its
 * value and key length: a value need not keep a pointer to its key. */
static inline const char *dsup_dict_inline_key(const void *val, size_t klen)
{
    return (const char *)val - ((klen + 7) & ~(size_t)7);
}
/* Remove and return the value (NULL when absent). */
void *dsup_dict_remove(dsup_dict *d, const void *key, size_t klen);
/* Visit every entry; fn may not add or remove entries. */
void dsup_dict_foreach(const dsup_dict *d, void (*fn)(dsup_dict_ent *e, void *arg), void *arg);
void dsup_dict_free(dsup_dict *d, void (*free_val)(void *val));

#endif
