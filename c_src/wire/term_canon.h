/* term_canon.h — internal: canonical hashing of terms in the external
 * format, for dsup_term_skip's refusal of maps with equal keys.
 *
 * binary_to_term refuses a map with two equal keys (OTP 25 also counts 0.0
 * and -0.0 as equal; so do we: the strictest). Equal keys may be encoded
 * differently (1 as SMALL_INTEGER or INTEGER or a big, atoms latin1 or UTF-8,
 * a list as STRING or in LIST segments, a map's pairs in any order), so each
 * key of a map with two or more pairs is hashed over a canonical token
 * stream: a keyed 64-bit hash, seeded at random per process; two keys with
 * equal hashes are taken as equal (a false match between different keys has
 * odds of about n^2 / 2^65). The stream is built in the same single pass,
 * bottom up: a map inside a key adds one token made of its pairs' hashes
 * (summed: any order), so every byte is hashed once and the work stays
 * linear however keys nest. (A key that is one atom of at most 7 ASCII
 * bytes skips the hash: term_skip.c's RAW_KEY.) Funs inside keys are hashed by their bytes (two
 * encodings of one fun may then count as different keys: never a false
 * refusal). */
#ifndef DSUP_TERM_CANON_H
#define DSUP_TERM_CANON_H

#include <stddef.h>
#include <stdint.h>

enum { CANON_INT = 1, CANON_FLOAT, CANON_ATOM, CANON_BITS, CANON_PID, CANON_PORT, CANON_REF,
       CANON_TUPLE, CANON_NIL, CANON_CONS, CANON_MAP, CANON_FUN, CANON_EXPORT };

/* Random per process (an attacker cannot aim at collisions). */
extern uint64_t dsup__canon_seed0, dsup__canon_seed1;
void dsup__canon_seed_once(void);

static inline uint64_t dsup__canon_mix(uint64_t h, uint64_t w)
{
    __uint128_t m = (__uint128_t)(h ^ dsup__canon_seed0 ^ 0xA0761D6478BD642FULL) *
                    (w ^ dsup__canon_seed1 ^ 0xE7037ED1A0B428DBULL);
    return (uint64_t)m ^ (uint64_t)(m >> 64) ^ h;
}

static inline void dsup__canon_feed(uint64_t *h, uint64_t w) { *h = dsup__canon_mix(*h, w); }

/* n bytes (length first); the last byte ANDed with last_mask. */
void dsup__canon_bytes(uint64_t *h, const uint8_t *s, size_t n, uint8_t last_mask);
/* The (validated) atom whose tag is at b[p], as UTF-8: one token of
 * CANON_ATOM and its length, then its bytes (term_skip.c feeds a short one
 * in line: keep the two alike). */
void dsup__canon_atom(uint64_t *h, const uint8_t *b, size_t p);
/* An integer: sign and little-endian magnitude (high zero bytes ignored). */
void dsup__canon_int(uint64_t *h, int neg, const uint8_t *mag_le, size_t n);
void dsup__canon_small(uint64_t *h, int64_t v);
void dsup__canon_double(uint64_t *h, double d);

#endif
