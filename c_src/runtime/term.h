/* term.h — internal term helpers beyond the public ones in dsup.h:
 * a pool of reusable encode buffers and cached encodings of common atoms. */
#ifndef DSUP_TERM_H
#define DSUP_TERM_H

#include <string.h>

#include "dsup.h"

/* The invariant every dsup_term (dsup.h) keeps: buf[0..len) is exactly ONE
 * encoded term, no version byte, nothing after it. Every term the node
 * makes is such a slice: a message is the rest of its frame after
 * dsup_term_skip checked that nothing trails it (ctrl.c), an element is
 * [start, end) of a dsup_term_next step or of dsup_term_tuple, a built term
 * is an ei_x_buff that holds one encoded term (dsup_term_of_x). Code that
 * slices a term must keep it so: dsup_term_tuple takes the last element's
 * end from t.len without stepping over it (trailing bytes would become part
 * of that element; a t that ends before its last element starts gives -1). */

/* A reset ei_x_buff from a pool; give it back with release. Buffers keep
 * their memory, so encoding a signal or reply allocates nothing once warm. */
ei_x_buff *dsup_term_scratch(dsup_node *node);
/* Back to the pool of the node it came from. */
void dsup_term_scratch_release(ei_x_buff *x);
/* The node's pool and atom cache (node->terms): made at node init, freed at close. */
void dsup_terms_init(dsup_node *node);
void dsup_terms_free(dsup_node *node);

/* Room for `more` bytes after x's index, growing it by doubling: ei grows
 * an ei_x_buff ~100 bytes at a time (one realloc per 100 bytes, quadratic
 * copying for a batch's messages). The dsup_x_encode_* helpers call it;
 * call it before building a large buffer from ei_x_encode_* calls. */
void dsup_x_grow(ei_x_buff *x, size_t more);
static inline void dsup_x_reserve(ei_x_buff *x, size_t more)
{
    /* in line: asked for every atom, pid and term encoded (several per
     * child of a batch), nearly always with the room there */
    if ((size_t)x->index + more + 100 > (size_t)x->buffsz) /* ei reallocs unless 100 bytes stay free */
        dsup_x_grow(x, more);
}
/* ei_x_append_buf with dsup_x_reserve's growth. */
int dsup_x_append_slow(ei_x_buff *x, const void *buf, size_t len);
static inline int dsup_x_append(ei_x_buff *x, const void *buf, size_t len)
{
    if ((size_t)x->index + len + 100 > (size_t)x->buffsz)
        return dsup_x_append_slow(x, buf, len);
    /* the room is there: what ei_x_append_buf does after its own check,
     * without its second look at the size (atoms, pids, terms: every reply) */
    memcpy(x->buff + x->index, buf, len);
    x->index += (int)len;
    return 0;
}
/* The term an ei_x_buff holds, skipping a leading version byte. */
dsup_term dsup_term_of_x(const ei_x_buff *x);
/* The encoded atom (cached for the life of the node). */
dsup_term dsup_reason_atom(dsup_node *node, const char *atom);

/* Read an atom's text at buf[*index] without copying: sets *name and *len.
 * The term must already be validated. -1 when not an atom. In line: the
 * services read several atoms per child of a batch. */
static inline int dsup_term_atom_text(const char *buf, int *index, const char **name, size_t *len)
{
    const unsigned char *p = (const unsigned char *)buf + *index;
    switch (p[0]) {
    case 100: /* ATOM_EXT */
    case 118: /* ATOM_UTF8_EXT */
        *len = (size_t)p[1] << 8 | p[2];
        *name = (const char *)p + 3;
        *index += 3 + (int)*len;
        return 0;
    case 115: /* SMALL_ATOM_EXT */
    case 119: /* SMALL_ATOM_UTF8_EXT */
        *len = p[1];
        *name = (const char *)p + 2;
        *index += 2 + (int)*len;
        return 0;
    }
    return -1;
}

#endif
