/* term.h — internal term helpers beyond the public ones in dsup.h:
 * a pool of reusable encode buffers and cached encodings of common atoms. */
#ifndef DSUP_TERM_H
#define DSUP_TERM_H

#include "dsup.h"

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
void dsup_x_reserve(ei_x_buff *x, size_t more);
/* ei_x_append_buf with dsup_x_reserve's growth. */
int dsup_x_append(ei_x_buff *x, const void *buf, size_t len);
/* The term an ei_x_buff holds, skipping a leading version byte. */
dsup_term dsup_term_of_x(const ei_x_buff *x);
/* The encoded atom (cached for the life of the node). */
dsup_term dsup_reason_atom(dsup_node *node, const char *atom);

/* Read an atom's text at buf[*index] without copying: sets *name and *len.
 * The term must already be validated. -1 when not an atom. */
int dsup_term_atom_text(const char *buf, int *index, const char **name, size_t *len);

#endif
