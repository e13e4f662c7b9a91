/* term_canon.c — canonical hashing of terms for dsup_term_skip's map-key
 * check (term_canon.h says what and why).
 *
 * The token stream of a term does not depend on how it was encoded:
 * integers as sign and magnitude, floats by value (-0.0 as 0.0), atoms as
 * UTF-8, bitstrings by their used bits, lists as CONS tokens (STRING_EXT and
 * LIST segments alike), pids/ports/refs by node, numbers and creation. */
#include "term_canon.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"

uint64_t dsup__canon_seed0, dsup__canon_seed1;

void dsup__canon_seed_once(void)
{
    if (dsup__canon_seed0 | dsup__canon_seed1)
        return;
    uint64_t s[2] = { 0, 0 };
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(s, sizeof s, 1, f) != 1) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s[0] = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ULL ^ (uint64_t)(uintptr_t)&s;
        s[1] = (uint64_t)ts.tv_sec * 0xC2B2AE3D27D4EB4FULL ^ (uint64_t)getpid();
    }
    if (f)
        fclose(f);
    dsup__canon_seed0 = s[0] | 1;
    dsup__canon_seed1 = s[1];
}

/* n bytes as words, no length (the caller fed it) */
static void words(uint64_t *h, const uint8_t *s, size_t n, uint8_t last_mask)
{
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        if (n == 8)
            w &= ~((uint64_t)(uint8_t)~last_mask << 56); /* little-endian last byte */
        dsup__canon_feed(h, w);
        s += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, s, n);
        w &= ~((uint64_t)(uint8_t)~last_mask << (8 * (n - 1)));
        dsup__canon_feed(h, w);
    }
}

void dsup__canon_bytes(uint64_t *h, const uint8_t *s, size_t n, uint8_t last_mask)
{
    dsup__canon_feed(h, n);
    words(h, s, n, last_mask);
}

void dsup__canon_atom(uint64_t *h, const uint8_t *b, size_t p)
{
    uint8_t tag = b[p];
    size_t n, off;
    if (tag == 100 || tag == 118) { /* ATOM_EXT, ATOM_UTF8_EXT */
        n = dsup_get_u16be(b + p + 1);
        off = p + 3;
    } else {                        /* SMALL_ATOM_EXT, SMALL_ATOM_UTF8_EXT */
        n = b[p + 1];
        off = p + 2;
    }
    if (tag == 118 || tag == 119) {
        dsup__canon_feed(h, CANON_ATOM | (uint64_t)n << 8); /* one token: the type and length */
        words(h, b + off, n, 0xFF);
        return;
    }
    uint8_t u[510]; /* latin1 -> UTF-8 */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = b[off + i];
        if (c < 0x80) {
            u[k++] = c;
        } else {
            u[k++] = (uint8_t)(0xC0 | (c >> 6));
            u[k++] = (uint8_t)(0x80 | (c & 0x3F));
        }
    }
    dsup__canon_feed(h, CANON_ATOM | (uint64_t)k << 8);
    words(h, u, k, 0xFF);
}

void dsup__canon_int(uint64_t *h, int neg, const uint8_t *mag_le, size_t n)
{
    while (n > 0 && mag_le[n - 1] == 0)
        n--;
    dsup__canon_feed(h, CANON_INT | (uint64_t)(n > 0 && neg) << 8);
    dsup__canon_bytes(h, mag_le, n, 0xFF);
}

void dsup__canon_small(uint64_t *h, int64_t v)
{
    uint8_t m[8];
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    for (int i = 0; i < 8; i++)
        m[i] = (uint8_t)(u >> (8 * i));
    dsup__canon_int(h, v < 0, m, 8);
}

void dsup__canon_double(uint64_t *h, double d)
{
    uint64_t bits;
    if (d == 0)
        d = 0; /* -0.0 counts as 0.0 (OTP 25's map keys) */
    memcpy(&bits, &d, 8);
    dsup__canon_feed(h, CANON_FLOAT);
    dsup__canon_feed(h, bits);
}
