/* ring.h — the consistent-hash ring of libring 1.7 (HashRing), key for key.
 *
 * Algorithm (bitwalker/libring lib/ring.ex):
 *  - a node (an atom here) gets `weight` points (default 128) at
 *    phash2({Node, I}, 4294967295) for I in 1..weight;
 *  - points are unique: libring inserts them into a gb_tree and ignores
 *    {key_exists, _}, so on a collision the point stays with whoever got it
 *    first (the earlier node, or the smaller I of the same node). Removing a
 *    node drops its points and does NOT give collided points back to the
 *    other node: the ring depends on the order of adds and removes, exactly
 *    as libring's does;
 *  - a key maps to the first point >= phash2(Key, 4294967295), wrapping to
 *    the smallest point;
 *  - an atom key is hashed as phash2(term_to_binary(Atom), 4294967295)
 *    (libring's "convert atoms to binaries" clause), and term_to_binary of
 *    an atom depends on the OTP release: ATOM_EXT (latin1) up to OTP 25,
 *    SMALL_ATOM_UTF8_EXT from OTP 26. Pick the release of the BEAM peers
 *    with dsup_ring_set_atom_encoding().
 *
 * Lookups do a binary search over one sorted array of {hash, node index}
 * and do not allocate (see phash2.h for the one exception: keys nested
 * deeper than DSUP_PHASH2_INLINE_DEPTH). A ring is not thread-safe; guard
 * writers against readers yourself.
 */
#ifndef DSUP_RING_H
#define DSUP_RING_H

#include <stddef.h>
#include <stdint.h>

#define DSUP_RING_DEFAULT_WEIGHT 128
#define DSUP_RING_HASH_RANGE     4294967295u /* libring's @hash_range, 2^32-1 */

#define DSUP_RING_EINVAL    (-1) /* bad argument: not a valid atom text */
#define DSUP_RING_ENOTFOUND (-2) /* remove: node not on the ring */
#define DSUP_RING_ENOMEM    (-3)

/* How an atom KEY is turned into term_to_binary(Atom) before hashing. */
enum {
    DSUP_RING_ATOM_EXT  = 0, /* OTP <= 25 (default): ATOM_EXT when every
                                character is latin1, else SMALL_ATOM_UTF8_EXT
                                (ATOM_UTF8_EXT past 255 bytes) */
    DSUP_RING_ATOM_UTF8 = 1, /* OTP >= 26: always SMALL_ATOM_UTF8_EXT
                                (ATOM_UTF8_EXT past 255 bytes) */
    DSUP_RING_ATOM_PLAIN = 2 /* no conversion: phash2(Atom) itself, as
                                libring versions without the atom clause */
};

/* The atom encoding new rings start with (DSUP_RING_ATOM_EXT unless the
 * program sets it, e.g. from a command-line option, before making rings). */
extern int dsup_ring_default_atom_encoding;

typedef struct dsup_ring dsup_ring;

typedef struct dsup_ring_point {
    uint32_t hash; /* phash2({Node, I}, 4294967295) */
    uint32_t node; /* index into the ring's node table (insertion order) */
} dsup_ring_point;

dsup_ring *dsup_ring_new(void);
void dsup_ring_free(dsup_ring *ring);

/* Add node `node` (the atom's text, UTF-8, at most 255 characters) with
 * `weight` points (weight <= 0 means 128). Adding a node already on the
 * ring is a no-op. Returns 0, DSUP_RING_EINVAL or DSUP_RING_ENOMEM. */
int dsup_ring_add_node(dsup_ring *ring, const char *node, int weight);

/* Remove a node and its points. Returns 0, or DSUP_RING_ENOTFOUND when the
 * node is not on the ring (the ring is unchanged, as in libring). */
int dsup_ring_remove_node(dsup_ring *ring, const char *node);

int dsup_ring_has_node(const dsup_ring *ring, const char *node);
/* The ring's own copy of `node`'s name (the pointer node_for and nodes_for
 * return for it), NULL when it is not on the ring. */
const char *dsup_ring_name(const dsup_ring *ring, const char *node);
/* Changes whenever nodes are added or removed, and differs between rings
 * (one counter for all): a caller keeping something it derived from a ring
 * (such as its name pointers) knows when that is stale. 0 for NULL. */
uint64_t dsup_ring_gen(const dsup_ring *ring);

/* The nodes, in libring's HashRing.nodes/1 order: most recently added
 * first. node_at returns NULL past the end. Returned strings live until the
 * node is removed or the ring is freed. */
size_t dsup_ring_node_count(const dsup_ring *ring);
const char *dsup_ring_node_at(const dsup_ring *ring, size_t i);

/* The node owning an ei-encoded key (with or without the 131 version
 * byte); NULL on an empty ring or a key that cannot be hashed. */
const char *dsup_ring_node_for(const dsup_ring *ring, const char *key, size_t len);

/* Up to n distinct nodes for a key, walking the ring clockwise from the
 * key's point and wrapping around, first the owner (== node_for). Returns
 * how many were stored in out: min(n, node_count) unless some node has no
 * point left. libring 1.7's key_to_nodes/3 stops at the largest point
 * instead of wrapping (libring issue #39) and does not apply the atom-key
 * conversion; we follow its documented intent ("count results or the number
 * of nodes"), so the first node always agrees with node_for. */
size_t dsup_ring_nodes_for(const dsup_ring *ring, const char *key, size_t len,
                           const char **out, size_t n);

void dsup_ring_set_atom_encoding(dsup_ring *ring, int enc);
int dsup_ring_atom_encoding(const dsup_ring *ring);

/* The ring's point for a key: phash2(Key, 4294967295) after the atom-key
 * conversion. Returns 0 or a negative DSUP_PHASH2_E*. */
int dsup_ring_key_hash(const dsup_ring *ring, const char *key, size_t len, uint32_t *hash);

/* The sorted points (for tests and diagnostics). */
size_t dsup_ring_point_count(const dsup_ring *ring);
const dsup_ring_point *dsup_ring_points(const dsup_ring *ring);

#endif
