/* phash2.c — erlang:phash2/1,2 (make_hash2) over the external term format.
 *
 * The BEAM walks the in-memory term depth first; for every container the
 * order in which it visits children (tuple elements 1..N, list elements then
 * tail, map pairs key-then-value) is the order of the external encoding, so
 * one forward scan of the bytes with a stack of open containers reproduces
 * make_hash2() exactly. Constants, MIX and the per-type rules are those of
 * make_hash2_helper() in erts (utils.c, OTP 22..25; erl_term_hashing.c from
 * OTP 26). See phash2.h for the interface. */
#include "phash2.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* External term format tags (erts/doc/src/erl_ext_dist.xml). */
enum {
    VERSION_MAGIC        = 131,
    NEW_FLOAT_EXT        = 70,
    BIT_BINARY_EXT       = 77,
    COMPRESSED           = 80,
    ATOM_CACHE_REF       = 82,
    NEW_PID_EXT          = 88,
    NEW_PORT_EXT         = 89,
    NEWER_REFERENCE_EXT  = 90,
    SMALL_INTEGER_EXT    = 97,
    INTEGER_EXT          = 98,
    FLOAT_EXT            = 99,
    ATOM_EXT             = 100,
    REFERENCE_EXT        = 101,
    PORT_EXT             = 102,
    PID_EXT              = 103,
    SMALL_TUPLE_EXT      = 104,
    LARGE_TUPLE_EXT      = 105,
    NIL_EXT              = 106,
    STRING_EXT           = 107,
    LIST_EXT             = 108,
    BINARY_EXT           = 109,
    SMALL_BIG_EXT        = 110,
    LARGE_BIG_EXT        = 111,
    NEW_FUN_EXT          = 112,
    EXPORT_EXT           = 113,
    NEW_REFERENCE_EXT    = 114,
    SMALL_ATOM_EXT       = 115,
    MAP_EXT              = 116,
    FUN_EXT              = 117,
    ATOM_UTF8_EXT        = 118,
    SMALL_ATOM_UTF8_EXT  = 119,
    V4_PORT_EXT          = 120,
};

/* (HCONST * {2, ..., 19}) mod 2^32, as in erts. */
#define HCONST    0x9e3779b9u
#define HCONST_2  0x3c6ef372u
#define HCONST_3  0xdaa66d2bu
#define HCONST_4  0x78dde6e4u
#define HCONST_5  0x1715609du
#define HCONST_6  0xb54cda56u
#define HCONST_7  0x5384540fu
#define HCONST_9  0x8ff34781u
#define HCONST_10 0x2e2ac13au
#define HCONST_11 0xcc623af3u
#define HCONST_12 0x6a99b4acu
#define HCONST_13 0x08d12e65u
#define HCONST_14 0xa708a81eu
#define HCONST_15 0x454021d7u
#define HCONST_16 0xe3779b90u
#define HCONST_19 0xbe1e08bbu

#define NIL_DEF   0x2u            /* erl_term.h */
#define NIL_FIRST 3468870702u     /* phash2([]) when [] is hashed first */

/* Bob Jenkins' mix, as in erts. */
#define MIX(a, b, c)                                   \
    do {                                               \
        a -= b; a -= c; a ^= (c >> 13);                \
        b -= c; b -= a; b ^= (a << 8);                 \
        c -= a; c -= b; c ^= (b >> 13);                \
        a -= b; a -= c; a ^= (c >> 12);                \
        b -= c; b -= a; b ^= (a << 16);                \
        c -= a; c -= b; c ^= (b >> 5);                 \
        a -= b; a -= c; a ^= (c >> 3);                 \
        b -= c; b -= a; b ^= (a << 10);                \
        c -= a; c -= b; c ^= (b >> 15);                \
    } while (0)

/* UINT32_HASH_2(x, y, k): mix two words into the running hash. */
static inline uint32_t h2(uint32_t hash, uint32_t x, uint32_t y, uint32_t k)
{
    uint32_t a = k + x, b = k + y;
    MIX(a, b, hash);
    return hash;
}

static inline uint32_t h1(uint32_t hash, uint32_t x, uint32_t k)
{
    return h2(hash, x, 0, k);
}

/* block_hash(): Jenkins' lookup2 over a byte block, seeded with initval. */
static uint32_t block_hash(const uint8_t *k, size_t len, uint32_t initval)
{
    uint32_t a = HCONST, b = HCONST, c = initval;
    size_t n = len;
    while (n >= 12) {
        a += k[0] + ((uint32_t)k[1] << 8) + ((uint32_t)k[2] << 16) + ((uint32_t)k[3] << 24);
        b += k[4] + ((uint32_t)k[5] << 8) + ((uint32_t)k[6] << 16) + ((uint32_t)k[7] << 24);
        c += k[8] + ((uint32_t)k[9] << 8) + ((uint32_t)k[10] << 16) + ((uint32_t)k[11] << 24);
        MIX(a, b, c);
        k += 12;
        n -= 12;
    }
    c += (uint32_t)len;
    switch (n) { /* all cases fall through */
    case 11: c += (uint32_t)k[10] << 24; /* fall through */
    case 10: c += (uint32_t)k[9] << 16;  /* fall through */
    case 9:  c += (uint32_t)k[8] << 8;   /* fall through */
    case 8:  b += (uint32_t)k[7] << 24;  /* fall through */
    case 7:  b += (uint32_t)k[6] << 16;  /* fall through */
    case 6:  b += (uint32_t)k[5] << 8;   /* fall through */
    case 5:  b += k[4];                  /* fall through */
    case 4:  a += (uint32_t)k[3] << 24;  /* fall through */
    case 3:  a += (uint32_t)k[2] << 16;  /* fall through */
    case 2:  a += (uint32_t)k[1] << 8;   /* fall through */
    case 1:  a += k[0];                  /* fall through */
    default: break;
    }
    MIX(a, b, c);
    return c;
}

uint32_t dsup_make_hash2_binary(const void *data, size_t n)
{
    uint32_t con = HCONST_13; /* + hash, which is 0 for a top-level term */
    return n == 0 ? con : block_hash(data, n, con);
}

/* ---- atoms ---------------------------------------------------------- */

/* hashpjw over the UTF-8 name, with the "latin1 clutch" that folds the
 * two-byte sequences C2/C3 xx back to one latin1 byte (erts atom.c). */
uint32_t dsup_phash2_atom_hvalue(const char *name, size_t len)
{
    const uint8_t *p = (const uint8_t *)name;
    uint32_t h = 0, g;
    while (len--) {
        uint8_t v = *p++;
        if (len && (v & 0xFE) == 0xC2 && (*p & 0xC0) == 0x80) {
            v = (uint8_t)((v << 6) | (*p & 0x3F));
            p++;
            len--;
        }
        h = (h << 4) + v;
        if ((g = h & 0xf0000000u)) {
            h ^= (g >> 24);
            h ^= g;
        }
    }
    return h;
}

/* Same hash for latin1 text: each byte is one character, which is exactly
 * what the clutch recovers from its UTF-8 form. */
static uint32_t atom_hvalue_latin1(const uint8_t *p, size_t len)
{
    uint32_t h = 0, g;
    while (len--) {
        h = (h << 4) + *p++;
        if ((g = h & 0xf0000000u)) {
            h ^= (g >> 24);
            h ^= g;
        }
    }
    return h;
}

int dsup_phash2_atom_text_check(const char *text, size_t len)
{
    const uint8_t *s = (const uint8_t *)text;
    size_t i = 0;
    int chars = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c < 0x80) {
            need = 0;
        } else if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0) lo = 0xA0;       /* overlong */
            else if (c == 0xED) hi = 0x9F;  /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0) lo = 0x90;       /* overlong */
            else if (c == 0xF4) hi = 0x8F;  /* > 0x10FFFF */
        } else {
            return -1;
        }
        if (len - i - 1 < need)
            return -1;
        for (size_t j = 1; j <= need; j++) {
            uint8_t cc = s[i + j];
            if (j == 1 ? (cc < lo || cc > hi) : ((cc & 0xC0) != 0x80))
                return -1;
        }
        i += need + 1;
        if (++chars > 255)
            return -1;
    }
    return chars;
}

/* ---- the reader ------------------------------------------------------ */

typedef struct {
    const uint8_t *b;
    size_t len;
    size_t pos;
} rd_t;

#define AVAIL(r, n) ((r)->len - (r)->pos >= (size_t)(n))

static inline uint16_t get16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t get64(const uint8_t *p) { return ((uint64_t)get32(p) << 32) | get32(p + 4); }

/* Parse an atom whose tag has already been consumed; give its hvalue. */
static int read_atom_body(rd_t *r, uint8_t tag, uint32_t *hv)
{
    size_t n;
    if (tag == ATOM_EXT || tag == ATOM_UTF8_EXT) {
        if (!AVAIL(r, 2)) return DSUP_PHASH2_EBADARG;
        n = get16(r->b + r->pos);
        r->pos += 2;
    } else {
        if (!AVAIL(r, 1)) return DSUP_PHASH2_EBADARG;
        n = r->b[r->pos++];
    }
    if (!AVAIL(r, n)) return DSUP_PHASH2_EBADARG;
    const uint8_t *s = r->b + r->pos;
    if (tag == ATOM_EXT || tag == SMALL_ATOM_EXT) {
        if (n > 255) return DSUP_PHASH2_EBADARG;
        if (hv) *hv = atom_hvalue_latin1(s, n);
    } else {
        if (dsup_phash2_atom_text_check((const char *)s, n) < 0)
            return DSUP_PHASH2_EBADARG;
        if (hv) *hv = dsup_phash2_atom_hvalue((const char *)s, n);
    }
    r->pos += n;
    return 0;
}

static int is_atom_tag(uint8_t t)
{
    return t == ATOM_EXT || t == SMALL_ATOM_EXT || t == ATOM_UTF8_EXT || t == SMALL_ATOM_UTF8_EXT;
}

static int read_atom(rd_t *r, uint32_t *hv)
{
    if (!AVAIL(r, 1)) return DSUP_PHASH2_EBADARG;
    uint8_t t = r->b[r->pos++];
    if (!is_atom_tag(t)) return DSUP_PHASH2_EBADARG;
    return read_atom_body(r, t, hv);
}

/* FLOAT_EXT: 31 bytes of "%.20e" text, NUL padded. Accepts what erts'
 * sys_chars_to_double() accepts: [+-]D+[.,]D+([eE][+-]?D+)? then NUL, with
 * a finite result. */
static int parse_float_ext(const uint8_t *p, double *out)
{
    char buf[32];
    memcpy(buf, p, 31);
    buf[31] = 0;
    char *s = buf, *dp, *end;
#define DIGIT(c) ((c) >= '0' && (c) <= '9')
    if (*s == '+' || *s == '-') s++;
    if (!DIGIT(*s)) return -1;
    while (DIGIT(*s)) s++;
    if (*s != '.' && *s != ',') return -1;
    dp = s++;
    if (!DIGIT(*s)) return -1;
    while (DIGIT(*s)) s++;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-') s++;
        if (!DIGIT(*s)) return -1;
        while (DIGIT(*s)) s++;
    }
    if (*s) return -1;
#undef DIGIT
    /* Whichever radix character the C locale wants. */
    *dp = '.';
    double d = strtod(buf, &end);
    if (end != s) {
        *dp = ',';
        d = strtod(buf, &end);
        if (end != s) return -1;
    }
    if (!isfinite(d)) return -1;
    *out = d;
    return 0;
}

/* ---- integers ---------------------------------------------------------- */

/* -2^27 <= v < 2^27: the BEAM hashes these as 32-bit signed (SINT32_HASH). */
static inline int is_ssmall28(int64_t v) { return v >= -(1 << 27) && v < (1 << 27); }

static uint32_t hash_sint32(uint32_t hash, int32_t y)
{
    if (y < 0)
        hash = h1(hash, (uint32_t)(-y), HCONST); /* negatives are mixed twice */
    return h1(hash, (uint32_t)y, HCONST);
}

/* Integers outside the 28-bit range: the magnitude in 64-bit digits, low
 * half then high half of each, with a sign-dependent constant. This is both
 * NOT_SSMALL28_HASH for smalls and the bignum rule (D_EXP == 64), so a value
 * hashes the same however it was encoded. */
static uint32_t hash_i64(uint32_t hash, int64_t v)
{
    if (is_ssmall28(v))
        return hash_sint32(hash, (int32_t)v);
    uint64_t t = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    return h2(hash, (uint32_t)t, (uint32_t)(t >> 32), v < 0 ? HCONST_10 : HCONST_11);
}

/* A bignum: n little-endian magnitude bytes at m. */
static uint32_t hash_big(uint32_t hash, const uint8_t *m, size_t n, int neg)
{
    while (n > 0 && m[n - 1] == 0)
        n--;
    if (n <= 8) {
        uint64_t t = 0;
        for (size_t i = n; i > 0; i--)
            t = (t << 8) | m[i - 1];
        if (t < ((uint64_t)1 << 27) || (neg && t == ((uint64_t)1 << 27)))
            return hash_sint32(hash, neg ? -(int32_t)t : (int32_t)t);
    }
    uint32_t con = neg ? HCONST_10 : HCONST_11;
    for (size_t i = 0; i < n; i += 8) {
        uint32_t w[2] = {0, 0};
        for (size_t j = 0; j < 8 && i + j < n; j++)
            w[j / 4] |= (uint32_t)m[i + j] << (8 * (j % 4));
        hash = h2(hash, w[0], w[1], con);
    }
    return hash;
}

/* If the element at r->pos is an integer in 0..255 (a "byte" for the string
 * optimisation), return it and set *adv to its encoded size; else -1. Never
 * reports errors: a malformed element is left for the main loop. */
static int peek_byte(const rd_t *r, size_t *adv)
{
    size_t avail = r->len - r->pos;
    const uint8_t *p = r->b + r->pos;
    if (avail < 1) return -1;
    switch (p[0]) {
    case SMALL_INTEGER_EXT:
        if (avail < 2) return -1;
        *adv = 2;
        return p[1];
    case INTEGER_EXT: {
        if (avail < 5) return -1;
        int32_t v = (int32_t)get32(p + 1);
        if (v < 0 || v > 255) return -1;
        *adv = 5;
        return v;
    }
    case SMALL_BIG_EXT:
    case LARGE_BIG_EXT: {
        size_t hdr = p[0] == SMALL_BIG_EXT ? 3 : 6;
        if (avail < hdr) return -1;
        size_t n = p[0] == SMALL_BIG_EXT ? p[1] : get32(p + 1);
        uint8_t sign = p[hdr - 1];
        if (avail - hdr < n) return -1;
        const uint8_t *m = p + hdr;
        unsigned v = 0;
        for (size_t i = 0; i < n; i++) {
            if (i == 0) v = m[0];
            else if (m[i]) return -1;
        }
        if (sign && v) return -1;
        *adv = hdr + n;
        return (int)v;
    }
    default:
        return -1;
    }
}

/* The arity of EXPORT_EXT: the BEAM takes any integer encoding of a
 * non-negative small (< 2^59) and hashes its low 32 bits. */
static int read_arity(rd_t *r, uint64_t *arity)
{
    if (!AVAIL(r, 1)) return DSUP_PHASH2_EBADARG;
    const uint8_t *p = r->b + r->pos;
    size_t avail = r->len - r->pos;
    switch (p[0]) {
    case SMALL_INTEGER_EXT:
        if (avail < 2) return DSUP_PHASH2_EBADARG;
        *arity = p[1];
        r->pos += 2;
        return 0;
    case INTEGER_EXT: {
        if (avail < 5) return DSUP_PHASH2_EBADARG;
        int32_t v = (int32_t)get32(p + 1);
        if (v < 0) return DSUP_PHASH2_EBADARG;
        *arity = (uint64_t)v;
        r->pos += 5;
        return 0;
    }
    case SMALL_BIG_EXT:
    case LARGE_BIG_EXT: {
        size_t hdr = p[0] == SMALL_BIG_EXT ? 3 : 6;
        if (avail < hdr) return DSUP_PHASH2_EBADARG;
        size_t n = p[0] == SMALL_BIG_EXT ? p[1] : get32(p + 1);
        if (avail - hdr < n) return DSUP_PHASH2_EBADARG;
        const uint8_t *m = p + hdr;
        uint64_t v = 0;
        for (size_t i = n; i > 0; i--) {
            if (i > 8 ? m[i - 1] != 0 : (v >> 56) != 0)
                return DSUP_PHASH2_EBADARG;
            v = (v << 8) | m[i - 1];
        }
        if (v >= ((uint64_t)1 << 59) || (p[hdr - 1] && v))
            return DSUP_PHASH2_EBADARG;
        *arity = v;
        r->pos += hdr + n;
        return 0;
    }
    default:
        return DSUP_PHASH2_EBADARG;
    }
}

/* ---- the walk ----------------------------------------------------------- */

enum { F_TUPLE, F_LIST, F_MAP };

typedef struct {
    uint8_t kind;
    uint8_t c;        /* list: bytes gathered in sh (0..3) */
    uint8_t string;   /* list: the current segment is STRING_EXT bytes */
    uint32_t sh;      /* list: gathered bytes */
    uint64_t rem;     /* tuple: elements left; list: items left in segment;
                         map: keys + values left */
    uint32_t saved_hash, saved_xor; /* map */
} frame_t;

typedef struct {
    frame_t *st;
    size_t sp, cap;
    frame_t inl[DSUP_PHASH2_INLINE_DEPTH];
} stack_t_;

static frame_t *push(stack_t_ *s)
{
    if (s->sp == s->cap) {
        size_t ncap = s->cap * 2;
        frame_t *n;
        if (ncap > SIZE_MAX / sizeof(frame_t))
            return NULL;
        /* peer-sized (the term's nesting), as term_skip.c's walker: fail
         * the hash, never abort (the exception to xalloc.h's rule) */
        if (s->st == s->inl) {
            n = malloc(ncap * sizeof(frame_t));
            if (n) memcpy(n, s->inl, s->sp * sizeof(frame_t));
        } else {
            n = realloc(s->st, ncap * sizeof(frame_t));
        }
        if (!n)
            return NULL;
        s->st = n;
        s->cap = ncap;
    }
    frame_t *f = &s->st[s->sp++];
    memset(f, 0, sizeof *f);
    return f;
}

/* Flush the gathered bytes of a list's string run. */
static inline uint32_t list_flush(uint32_t hash, frame_t *f)
{
    if (f->c > 0)
        hash = h1(hash, f->sh, HCONST_4);
    f->c = 0;
    f->sh = 0;
    return hash;
}

static inline uint32_t list_byte(uint32_t hash, frame_t *f, uint8_t byte)
{
    f->sh = (f->sh << 8) + byte;
    if (f->c == 3) {
        hash = h1(hash, f->sh, HCONST_4);
        f->c = 0;
        f->sh = 0;
    } else {
        f->c++;
    }
    return hash;
}

static int walk(rd_t *r, stack_t_ *s, uint32_t *out)
{
    uint32_t hash = 0, xor_pairs = 0;
    frame_t *f;

next_term:
    if (!AVAIL(r, 1))
        return DSUP_PHASH2_EBADARG;
    {
        uint8_t tag = r->b[r->pos++];
        const uint8_t *p = r->b + r->pos;
        switch (tag) {
        case SMALL_INTEGER_EXT:
            if (!AVAIL(r, 1)) return DSUP_PHASH2_EBADARG;
            hash = hash_sint32(hash, p[0]);
            r->pos += 1;
            goto done;
        case INTEGER_EXT:
            if (!AVAIL(r, 4)) return DSUP_PHASH2_EBADARG;
            hash = hash_i64(hash, (int32_t)get32(p));
            r->pos += 4;
            goto done;
        case SMALL_BIG_EXT:
        case LARGE_BIG_EXT: {
            size_t hdr = tag == SMALL_BIG_EXT ? 2 : 5;
            if (!AVAIL(r, hdr)) return DSUP_PHASH2_EBADARG;
            size_t n = tag == SMALL_BIG_EXT ? p[0] : get32(p);
            uint8_t sign = p[hdr - 1]; /* the BEAM reads any non-zero sign as negative */
            r->pos += hdr;
            if (!AVAIL(r, n)) return DSUP_PHASH2_EBADARG;
            hash = hash_big(hash, r->b + r->pos, n, sign != 0);
            r->pos += n;
            goto done;
        }
        case NEW_FLOAT_EXT:
        case FLOAT_EXT: {
            uint64_t bits;
            double d;
            if (tag == NEW_FLOAT_EXT) {
                if (!AVAIL(r, 8)) return DSUP_PHASH2_EBADARG;
                bits = get64(p);
                memcpy(&d, &bits, sizeof d);
                r->pos += 8;
            } else {
                if (!AVAIL(r, 31) || parse_float_ext(p, &d) != 0) return DSUP_PHASH2_EBADARG;
                r->pos += 31;
            }
            if (!isfinite(d)) return DSUP_PHASH2_EBADARG;
            if (d == 0.0) d = 0.0; /* -0.0 hashes as 0.0 */
            memcpy(&bits, &d, sizeof bits);
            hash = h2(hash, (uint32_t)(bits >> 32), (uint32_t)bits, HCONST_12);
            goto done;
        }
        case ATOM_EXT:
        case SMALL_ATOM_EXT:
        case ATOM_UTF8_EXT:
        case SMALL_ATOM_UTF8_EXT: {
            uint32_t hv;
            int rc = read_atom_body(r, tag, &hv);
            if (rc) return rc;
            hash = hash == 0 ? hv : h1(hash, hv, HCONST_3);
            goto done;
        }
        case NIL_EXT:
            hash = hash == 0 ? NIL_FIRST : h1(hash, NIL_DEF, HCONST_2);
            goto done;
        case STRING_EXT:
            if (!AVAIL(r, 2)) return DSUP_PHASH2_EBADARG;
            if (!(f = push(s))) return DSUP_PHASH2_ENOMEM;
            f->kind = F_LIST;
            f->string = 1;
            f->rem = get16(p);
            r->pos += 2;
            goto list_step;
        case LIST_EXT:
            if (!AVAIL(r, 4)) return DSUP_PHASH2_EBADARG;
            if (!(f = push(s))) return DSUP_PHASH2_ENOMEM;
            f->kind = F_LIST;
            f->rem = get32(p);
            r->pos += 4;
            goto list_step;
        case SMALL_TUPLE_EXT:
        case LARGE_TUPLE_EXT: {
            size_t hdr = tag == SMALL_TUPLE_EXT ? 1 : 4;
            if (!AVAIL(r, hdr)) return DSUP_PHASH2_EBADARG;
            uint32_t n = tag == SMALL_TUPLE_EXT ? p[0] : get32(p);
            r->pos += hdr;
            hash = h1(hash, n, HCONST_9);
            if (n == 0) goto done;
            if (!(f = push(s))) return DSUP_PHASH2_ENOMEM;
            f->kind = F_TUPLE;
            f->rem = n;
            goto next_term;
        }
        case MAP_EXT: {
            /* Each key-value pair is hashed from 0 on its own and the pair
             * hashes are xor-ed, so the order of pairs does not matter. */
            if (!AVAIL(r, 4)) return DSUP_PHASH2_EBADARG;
            uint32_t n = get32(p);
            r->pos += 4;
            hash = h1(hash, n, HCONST_16);
            if (n == 0) goto done;
            if (!(f = push(s))) return DSUP_PHASH2_ENOMEM;
            f->kind = F_MAP;
            f->rem = (uint64_t)n * 2;
            f->saved_hash = hash;
            f->saved_xor = xor_pairs;
            hash = 0;
            xor_pairs = 0;
            goto next_term;
        }
        case BINARY_EXT:
        case BIT_BINARY_EXT: {
            size_t hdr = tag == BINARY_EXT ? 4 : 5;
            if (!AVAIL(r, hdr)) return DSUP_PHASH2_EBADARG;
            size_t n = get32(p);
            unsigned bits = tag == BINARY_EXT ? 8 : p[4];
            r->pos += hdr;
            if (!AVAIL(r, n)) return DSUP_PHASH2_EBADARG;
            const uint8_t *d = r->b + r->pos;
            size_t sz = n;
            unsigned tail = 0;
            if (tag == BIT_BINARY_EXT) {
                if (n == 0 ? bits != 0 : (bits < 1 || bits > 8))
                    return DSUP_PHASH2_EBADARG;
                if (n > 0 && bits < 8) {
                    sz = n - 1;
                    tail = bits;
                }
            }
            uint32_t con = HCONST_13 + hash;
            if (sz == 0 && tail == 0) {
                hash = con;
            } else {
                hash = block_hash(d, sz, con);
                if (tail)
                    hash = h2(hash, tail, (uint32_t)(d[sz] >> (8 - tail)), HCONST_15);
            }
            r->pos += n;
            goto done;
        }
        case NEW_PID_EXT:
        case PID_EXT: {
            /* Only the pid number is hashed: not node, serial or creation. */
            int rc = read_atom(r, NULL);
            if (rc) return rc;
            size_t n = tag == NEW_PID_EXT ? 12 : 9;
            if (!AVAIL(r, n)) return DSUP_PHASH2_EBADARG;
            hash = h1(hash, get32(r->b + r->pos), HCONST_5);
            r->pos += n;
            goto done;
        }
        case NEW_PORT_EXT:
        case PORT_EXT:
        case V4_PORT_EXT: {
            int rc = read_atom(r, NULL);
            if (rc) return rc;
            uint64_t num;
            size_t n;
            if (tag == V4_PORT_EXT) {
                if (!AVAIL(r, 12)) return DSUP_PHASH2_EBADARG;
                num = get64(r->b + r->pos);
                n = 12;
            } else {
                n = tag == NEW_PORT_EXT ? 8 : 5;
                if (!AVAIL(r, n)) return DSUP_PHASH2_EBADARG;
                num = get32(r->b + r->pos);
            }
            hash = h2(hash, (uint32_t)num, (uint32_t)(num >> 32), HCONST_6);
            r->pos += n;
            goto done;
        }
        case REFERENCE_EXT: {
            int rc = read_atom(r, NULL);
            if (rc) return rc;
            if (!AVAIL(r, 5)) return DSUP_PHASH2_EBADARG;
            hash = h1(hash, get32(r->b + r->pos), HCONST_7);
            r->pos += 5;
            goto done;
        }
        case NEW_REFERENCE_EXT:
        case NEWER_REFERENCE_EXT: {
            /* Only the first ID word is hashed. OTP 25 decodes a zero-length
             * ID by still consuming one word and hashing the ref as 0. */
            if (!AVAIL(r, 2)) return DSUP_PHASH2_EBADARG;
            size_t words = get16(p);
            r->pos += 2;
            if (words > 5) return DSUP_PHASH2_EBADARG;
            int rc = read_atom(r, NULL);
            if (rc) return rc;
            size_t cre = tag == NEWER_REFERENCE_EXT ? 4 : 1;
            size_t ids = words ? words : 1;
            if (!AVAIL(r, cre + 4 * ids)) return DSUP_PHASH2_EBADARG;
            r->pos += cre;
            hash = h1(hash, words ? get32(r->b + r->pos) : 0, HCONST_7);
            r->pos += 4 * ids;
            goto done;
        }
        case EXPORT_EXT: {
            uint32_t hm, hf;
            int rc = read_atom(r, &hm);
            if (rc) return rc;
            if ((rc = read_atom(r, &hf))) return rc;
            uint64_t arity;
            if ((rc = read_arity(r, &arity))) return rc;
            /* Refused like dsup_term_skip does: OTP 27.3 crashes hashing it. */
            if (arity > 255) return DSUP_PHASH2_EBADARG;
            hash = h2(hash, (uint32_t)arity, hm, HCONST);
            hash = h1(hash, hf, HCONST_14);
            goto done;
        }
        case NEW_FUN_EXT:
        case FUN_EXT:
            return DSUP_PHASH2_EUNHASHABLE;
        default: /* COMPRESSED, ATOM_CACHE_REF, unknown */
            return DSUP_PHASH2_EBADARG;
        }
    }

done:
    /* A term is complete: hand control to the innermost open container. */
    if (s->sp == 0) {
        *out = hash;
        return 0;
    }
    f = &s->st[s->sp - 1];
    switch (f->kind) {
    case F_TUPLE:
        if (--f->rem == 0) {
            s->sp--;
            goto done;
        }
        goto next_term;
    case F_MAP:
        if ((--f->rem & 1) == 0) { /* a value: the pair is complete */
            xor_pairs ^= hash;
            hash = 0;
        }
        if (f->rem == 0) {
            hash = h1(f->saved_hash, xor_pairs, HCONST_19);
            xor_pairs = f->saved_xor;
            s->sp--;
            goto done;
        }
        goto next_term;
    default: /* F_LIST: a non-byte element is complete */
        goto list_step;
    }

list_step:
    /* Bytes (integers 0..255) are packed four to a word; any other element
     * flushes the run and is hashed as a term; the tail comes last. A tail
     * that is itself LIST_EXT or STRING_EXT continues the same list. */
    f = &s->st[s->sp - 1];
    for (;;) {
        if (f->string) {
            if (!AVAIL(r, f->rem)) return DSUP_PHASH2_EBADARG;
            const uint8_t *p = r->b + r->pos;
            for (size_t i = 0; i < f->rem; i++)
                hash = list_byte(hash, f, p[i]);
            r->pos += f->rem;
            hash = list_flush(hash, f);
            s->sp--;
            hash = hash == 0 ? NIL_FIRST : h1(hash, NIL_DEF, HCONST_2);
            goto done;
        }
        if (f->rem == 0) {
            if (!AVAIL(r, 1)) return DSUP_PHASH2_EBADARG;
            uint8_t t = r->b[r->pos];
            if (t == LIST_EXT) {
                if (!AVAIL(r, 5)) return DSUP_PHASH2_EBADARG;
                f->rem = get32(r->b + r->pos + 1);
                r->pos += 5;
                continue;
            }
            if (t == STRING_EXT) {
                if (!AVAIL(r, 3)) return DSUP_PHASH2_EBADARG;
                f->rem = get16(r->b + r->pos + 1);
                f->string = 1;
                r->pos += 3;
                continue;
            }
            hash = list_flush(hash, f);
            s->sp--;
            goto next_term; /* the tail */
        }
        size_t adv;
        int byte = peek_byte(r, &adv);
        f->rem--;
        if (byte >= 0) {
            r->pos += adv;
            hash = list_byte(hash, f, (uint8_t)byte);
            continue;
        }
        hash = list_flush(hash, f);
        goto next_term;
    }
}

int dsup_make_hash2(const char *term, size_t len, uint32_t *hash, size_t *used)
{
    rd_t r = {(const uint8_t *)term, len, 0};
    stack_t_ s;
    uint32_t h;
    int rc;

    if (!term || len == 0)
        return DSUP_PHASH2_EBADARG;
    if (r.b[0] == VERSION_MAGIC)
        r.pos = 1;
    s.st = s.inl;
    s.sp = 0;
    s.cap = DSUP_PHASH2_INLINE_DEPTH;
    rc = walk(&r, &s, &h);
    if (s.st != s.inl)
        free(s.st);
    if (rc == 0) {
        if (hash) *hash = h;
        if (used) *used = r.pos;
    }
    return rc;
}

int dsup_phash2(const char *term, size_t len, uint32_t range, uint32_t *out)
{
    uint32_t h;
    size_t used;
    int rc = dsup_make_hash2(term, len, &h, &used);
    if (rc)
        return rc;
    if (used != len)
        return DSUP_PHASH2_EBADARG;
    if (out)
        *out = dsup_phash2_reduce(h, range);
    return 0;
}
