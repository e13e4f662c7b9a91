/* phash2.h — erlang:phash2/1,2 over terms in the external term format.
 *
 * Bit-exact with the BEAM's make_hash2() (erts/emulator/beam/utils.c up to
 * OTP 25, erl_term_hashing.c from OTP 26; the function is frozen because
 * phash2 is documented as portable across releases and machines).
 *
 *   phash2(Term)        == dsup_phash2(enc, len, 1u << 27, &h)   (range 2^27)
 *   phash2(Term, Range) == dsup_phash2(enc, len, Range, &h)      (1..2^32-1)
 *   phash2(Term, 1 bsl 32) == dsup_phash2(enc, len, 0, &h)       (0 means 2^32)
 *
 * The input is untrusted: every read is bounds-checked against len, nesting
 * is walked with an explicit stack (no recursion), and no byte past len is
 * ever touched. Hashing allocates nothing unless the term nests deeper than
 * DSUP_PHASH2_INLINE_DEPTH containers; deeper terms grow a heap stack.
 *
 * Hashable: atoms (all four atom tags, latin1 and UTF-8), integers of any
 * size, floats (FLOAT_EXT and NEW_FLOAT_EXT; -0.0 hashes as 0.0), binaries
 * and bitstrings, lists (STRING_EXT, LIST_EXT, improper tails, NIL), tuples,
 * maps (order-independent), pids, ports, references (all encodings) and
 * export funs (EXPORT_EXT). Local funs (NEW_FUN_EXT, FUN_EXT) cannot be
 * hashed from their encoding alone and give DSUP_PHASH2_EUNHASHABLE.
 * Compressed terms (tag 80) and atom cache references (tag 82) are not
 * supported and give DSUP_PHASH2_EBADARG.
 *
 * Leniency: the BEAM's binary_to_term rejects some terms this code still
 * hashes (maps with duplicate keys, out-of-range pid/ref numbers of the old
 * encodings); for every term binary_to_term accepts, the hash is the BEAM's.
 */
#ifndef DSUP_PHASH2_H
#define DSUP_PHASH2_H

#include <stddef.h>
#include <stdint.h>

#define DSUP_PHASH2_EBADARG     (-1) /* malformed or unsupported encoding */
#define DSUP_PHASH2_EUNHASHABLE (-2) /* contains a local fun */
#define DSUP_PHASH2_ENOMEM      (-3) /* nesting deeper than the inline stack and malloc failed */

#define DSUP_PHASH2_RANGE_1     (1u << 27) /* the range of erlang:phash2/1 */
#define DSUP_PHASH2_INLINE_DEPTH 128

/* phash2(Term, Range). `term` is exactly one encoded term, with or without
 * the leading 131 version byte (trailing bytes are an error). range 0 means
 * 2^32. On success stores the hash in *out and returns 0; otherwise returns
 * a negative DSUP_PHASH2_E* and leaves *out untouched. */
int dsup_phash2(const char *term, size_t len, uint32_t range, uint32_t *out);

/* The raw 32-bit make_hash2() value of the term that starts at term[0]
 * (optional 131 version byte). Bytes after the term are allowed: *used (if
 * not NULL) receives the number of bytes the term occupied, version byte
 * included. Returns 0 or a negative DSUP_PHASH2_E*. */
int dsup_make_hash2(const char *term, size_t len, uint32_t *hash, size_t *used);

/* Reduce a make_hash2() value to a phash2 range (0 means 2^32). */
static inline uint32_t dsup_phash2_reduce(uint32_t hash, uint32_t range)
{
    return range ? hash % range : hash;
}

/* make_hash2() of the binary <<data:n/binary>> (hashing a binary needs no
 * encoding; used by the ring for term_to_binary(Atom) keys). */
uint32_t dsup_make_hash2_binary(const void *data, size_t n);

/* The atom table hash (hashpjw with the "latin1 clutch", erts atom.c) of
 * an atom whose text is UTF-8. It is also phash2 of the atom itself. */
uint32_t dsup_phash2_atom_hvalue(const char *utf8, size_t len);

/* Check that text is valid UTF-8 (no overlongs, surrogates, or code points
 * above 0x10FFFF) and at most 255 characters, as the BEAM demands of atom
 * text. Returns the character count, or -1. */
int dsup_phash2_atom_text_check(const char *utf8, size_t len);

#endif
