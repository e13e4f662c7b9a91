/* term_next.h — internal: stepping over one term that was validated on
 * arrival (dsup_term_skip), in line for the hot callers (dsup_term_next,
 * dsup_term_tuple, dsup__term_next). Also the external format's tags. */
#ifndef DSUP_TERM_NEXT_H
#define DSUP_TERM_NEXT_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum {
    T_NEW_FLOAT = 70, T_BIT_BINARY = 77, T_COMPRESSED = 80, T_ATOM_CACHE_REF = 82,
    T_NEW_PID = 88, T_NEW_PORT = 89, T_NEWER_REFERENCE = 90,
    T_SMALL_INTEGER = 97, T_INTEGER = 98, T_FLOAT = 99, T_ATOM = 100,
    T_REFERENCE = 101, T_PORT = 102, T_PID = 103, T_SMALL_TUPLE = 104,
    T_LARGE_TUPLE = 105, T_NIL = 106, T_STRING = 107, T_LIST = 108,
    T_BINARY = 109, T_SMALL_BIG = 110, T_LARGE_BIG = 111, T_NEW_FUN = 112,
    T_EXPORT = 113, T_NEW_REFERENCE = 114, T_SMALL_ATOM = 115, T_MAP = 116,
    T_FUN = 117, T_ATOM_UTF8 = 118, T_SMALL_ATOM_UTF8 = 119, T_V4_PORT = 120,
    T_LOCAL = 121,
};

/* The length of the atom at b (any of the four encodings), tag included. */
static inline size_t dsup__atom_size(const uint8_t *b)
{
    return (b[0] == T_ATOM || b[0] == T_ATOM_UTF8) ? 3 + (size_t)dsup_get_u16be(b + 1) : 2 + (size_t)b[1];
}

/* For terms that were validated on arrival: no bound, no key check, no
 * UTF-8 walk, no frames. Every service steps through tuples, lists and maps
 * with this, many times per message, so it is one flat loop over a count of
 * "terms still to read" (the format is prefix order) with a fixed size or a
 * length field for every leaf; a NEW_FUN is stepped over by its Size. */
static inline __attribute__((always_inline)) int dsup__term_step(const char *buf, size_t *pos)
{
    const uint8_t *b = (const uint8_t *)buf;
    size_t p = *pos;
    uint64_t left = 1;
    do {
        left--;
        switch (b[p]) {
        case T_SMALL_INTEGER: p += 2; break;
        case T_INTEGER: p += 5; break;
        case T_FLOAT: p += 32; break;
        case T_NEW_FLOAT: p += 9; break;
        case T_ATOM:
        case T_ATOM_UTF8:
        case T_SMALL_ATOM:
        case T_SMALL_ATOM_UTF8: p += dsup__atom_size(b + p); break;
        case T_PID: p += 1 + dsup__atom_size(b + p + 1) + 9; break;
        case T_NEW_PID: p += 1 + dsup__atom_size(b + p + 1) + 12; break;
        case T_PORT:
        case T_REFERENCE: p += 1 + dsup__atom_size(b + p + 1) + 5; break;
        case T_NEW_PORT: p += 1 + dsup__atom_size(b + p + 1) + 8; break;
        case T_V4_PORT: p += 1 + dsup__atom_size(b + p + 1) + 12; break;
        case T_NEW_REFERENCE:
        case T_NEWER_REFERENCE: {
            size_t n = dsup_get_u16be(b + p + 1);
            size_t cre = b[p] == T_NEW_REFERENCE ? 1 : 4;
            p += 3;
            p += dsup__atom_size(b + p) + cre + 4 * n;
            break;
        }
        case T_SMALL_TUPLE: left += b[p + 1]; p += 2; break;
        case T_LARGE_TUPLE: left += dsup_get_u32be(b + p + 1); p += 5; break;
        case T_MAP: left += 2 * (uint64_t)dsup_get_u32be(b + p + 1); p += 5; break;
        case T_NIL: p += 1; break;
        case T_STRING: p += 3 + (size_t)dsup_get_u16be(b + p + 1); break;
        case T_LIST: left += (uint64_t)dsup_get_u32be(b + p + 1) + 1; p += 5; break; /* + tail */
        case T_BINARY: p += 5 + (size_t)dsup_get_u32be(b + p + 1); break;
        case T_BIT_BINARY: p += 6 + (size_t)dsup_get_u32be(b + p + 1); break;
        case T_SMALL_BIG: p += 3 + (size_t)b[p + 1]; break;
        case T_LARGE_BIG: p += 6 + (size_t)dsup_get_u32be(b + p + 1); break;
        case T_NEW_FUN: p += 1 + (size_t)dsup_get_u32be(b + p + 1); break; /* Size counts itself */
        case T_EXPORT:
            p += 1;
            p += dsup__atom_size(b + p);
            p += dsup__atom_size(b + p);
            p += b[p] == T_SMALL_INTEGER ? 2 : 5;
            break;
        default:
            return -1; /* not a validated term */
        }
    } while (left);
    *pos = p;
    return 0;
}

#endif
