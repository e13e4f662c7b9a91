/* term_skip.c — bounds-checked validating walk over one term in the Erlang
 * external term format (erts/doc/src/erl_ext_dist.xml), no version byte.
 *
 * Every length is checked against the bytes that remain before it is used;
 * element counts are checked against the remaining bytes (each term takes at
 * least one byte) before any loop, so a huge declared count fails at once and
 * the total work is linear in the input.
 *
 * Nesting is unlimited (the BEAM's term_to_binary and binary_to_term have no
 * depth limit either) and costs no C stack: the external format is prefix
 * order, so one counter of "terms still to read" replaces a stack of open
 * containers. Only what must know when a child ends gets a frame on a heap
 * stack: a NEW_FUN (its Size is checked), a map of two or more pairs (its
 * keys must differ, see below) and, inside such a key, a list.
 *
 * Accepted: SMALL_INTEGER, INTEGER, FLOAT (31 bytes, NUL-terminated text),
 * NEW_FLOAT, ATOM / SMALL_ATOM (latin1, <= 255 bytes), ATOM_UTF8 /
 * SMALL_ATOM_UTF8 (valid UTF-8, <= 255 characters), PID / NEW_PID, PORT /
 * NEW_PORT / V4_PORT, REFERENCE / NEW_REFERENCE / NEWER_REFERENCE (<= 5 id
 * words), SMALL_TUPLE / LARGE_TUPLE, MAP, NIL, STRING, LIST (with tail),
 * BINARY, BIT_BINARY (len >= 1, bits 1..8), SMALL_BIG / LARGE_BIG, NEW_FUN
 * (Size must match its contents), EXPORT (arity 0..255).
 * Rejected: ATOM_CACHE_REF (we never advertise the atom cache), COMPRESSED
 * (no inflating of untrusted input), LOCAL_EXT, the obsolete FUN_EXT, and
 * anything unknown.
 *
 * At least as strict as the strictest supported release (OTP 25 and 27; the
 * unit tests ask each release's binary_to_term): a term dsup relays must be
 * one every peer accepts and handles. Hence, stricter than OTP 25:
 *   - a zero-length BIT_BINARY (OTP 25 decodes it as <<>>, OTP 27 refuses);
 *   - an EXPORT arity above 255 (both decode it; OTP 27.3 crashes the VM
 *     when such a fun is printed or hashed, OTP 25 reports a wrong arity);
 *   - a NEW_/NEWER_REFERENCE with no ID words (both read past the term).
 * Also refused as both releases do: NaN and infinite NEW_FLOATs, and maps
 * with two equal keys (0.0 and -0.0 count as equal, as on OTP 25).
 * Nothing the BEAM itself encodes is refused. */
#include "ctrl.h"
#include "term_canon.h"
#include "term_next.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

long dsup__utf8_chars(const uint8_t *s, size_t n);
int dsup__atom(const char *buf, size_t len, size_t *pos, const char **text, size_t *text_len);
int dsup__pid(const char *buf, size_t len, size_t *pos, dsup_wire_pid *out);


#define LITTLE_ENDIAN_HOST (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)

#define NEED(n) do { if ((size_t)(n) > len - p) return -1; } while (0)

/* Count UTF-8 characters of s[0..n), strictly (no overlong forms, no
 * surrogates, nothing above U+10FFFF). -1 when invalid. Also used by ctrl.c. */
long dsup__utf8_chars(const uint8_t *s, size_t n)
{
    /* Nearly every atom is all ASCII, and short: test the high bits first,
     * 8 bytes a step, and walk the characters only when one is set. */
    size_t a = 0;
    for (; n - a >= 8; a += 8) {
        uint64_t w;
        memcpy(&w, s + a, 8);
        if (w & 0x8080808080808080ULL)
            break;
    }
    if (n - a < 8) { /* the rest: the last 8 bytes again when n >= 8, else 4, 2, 1 */
        uint64_t acc = 0;
        if (n >= 8) {
            memcpy(&acc, s + n - 8, 8);
        } else {
            size_t j = a;
            uint32_t v4;
            uint16_t v2;
            if (n - j >= 4) {
                memcpy(&v4, s + j, 4);
                acc |= v4;
                j += 4;
            }
            if (n - j >= 2) {
                memcpy(&v2, s + j, 2);
                acc |= v2;
                j += 2;
            }
            if (j < n)
                acc |= s[j];
        }
        if (!(acc & 0x8080808080808080ULL))
            return (long)n;
    }
    long chars = (long)a;
    size_t i = a;
    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            chars++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            k = 1; cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            k = 2; cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            k = 3; cp = c & 0x07;
        } else {
            return -1;
        }
        if (n - i - 1 < k)
            return -1;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return -1;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return -1;
        i += k + 1;
        chars++;
    }
    return chars;
}

/* Exported for ctrl.c (declared there): parse one atom at *pos, any of the
 * four atom encodings; returns its text slice. */
int dsup__atom(const char *buf, size_t len, size_t *pos, const char **text, size_t *text_len)
{
    const uint8_t *b = (const uint8_t *)buf;
    size_t p = *pos, n;
    NEED(1);
    uint8_t tag = b[p++];
    switch (tag) {
    case T_ATOM:
    case T_ATOM_UTF8:
        NEED(2);
        n = dsup_get_u16be(b + p);
        p += 2;
        break;
    case T_SMALL_ATOM:
    case T_SMALL_ATOM_UTF8:
        NEED(1);
        n = b[p++];
        break;
    default:
        return -1;
    }
    NEED(n);
    if (tag == T_ATOM_UTF8 || tag == T_SMALL_ATOM_UTF8) {
        long chars = dsup__utf8_chars(b + p, n);
        if (chars < 0 || chars > 255)
            return -1;
    } else if (n > 255) {
        return -1;
    }
    if (text)
        *text = buf + p;
    if (text_len)
        *text_len = n;
    *pos = p + n;
    return 0;
}

/* No byte of s[0..n) has its high bit set; `avail` (>= n) bytes may be read
 * from s: the last part word is then one masked load, not a byte loop. */
static inline int all_ascii(const uint8_t *s, size_t n, size_t avail)
{
    uint64_t acc = 0, w;
    size_t i = 0;
    for (; n - i >= 8; i += 8) {
        memcpy(&w, s + i, 8);
        acc |= w;
    }
    if (i < n) {
        if (LITTLE_ENDIAN_HOST && avail - i >= 8) {
            memcpy(&w, s + i, 8);
            acc |= w & (~0ULL >> (64 - 8 * (n - i))); /* the first n - i bytes */
        } else {
            for (; i < n; i++)
                acc |= s[i];
        }
    }
    return !(acc & 0x8080808080808080ULL);
}

/* The usual atom, a SMALL_ATOM_UTF8 of ASCII text, in line: 1 and *pos
 * past it; 0 for anything else (dsup__atom then checks it in full). */
static inline int small_ascii_atom(const uint8_t *b, size_t len, size_t *pos)
{
    size_t p = *pos;
    if (len - p < 2 || b[p] != T_SMALL_ATOM_UTF8)
        return 0;
    size_t n = b[p + 1];
    if (n > len - p - 2 || !all_ascii(b + p + 2, n, len - p - 2))
        return 0;
    *pos = p + 2 + n;
    return 1;
}

/* A PID_EXT / NEW_PID_EXT at *pos (in line: a batch's messages carry
 * about ten pids per child). */
static inline int pid_at(const char *buf, size_t len, size_t *pos, dsup_wire_pid *out)
{
    const uint8_t *b = (const uint8_t *)buf;
    size_t p = *pos;
    NEED(1);
    uint8_t tag = b[p++];
    if (tag != T_PID && tag != T_NEW_PID)
        return -1;
    const char *node;
    size_t node_len, at = p;
    if (small_ascii_atom(b, len, &p)) {
        node = buf + at + 2;
        node_len = p - at - 2;
    } else if (dsup__atom(buf, len, &p, &node, &node_len)) {
        return -1;
    }
    size_t clen = tag == T_PID ? 1 : 4;
    NEED(8 + clen);
    if (out) {
        out->node = node;
        out->node_len = (uint16_t)node_len;
        out->num = dsup_get_u32be(b + p);
        out->serial = dsup_get_u32be(b + p + 4);
        out->creation = tag == T_PID ? b[p + 8] : dsup_get_u32be(b + p + 8);
    }
    *pos = p + 8 + clen;
    return 0;
}

/* Exported for ctrl.c. */
int dsup__pid(const char *buf, size_t len, size_t *pos, dsup_wire_pid *out)
{
    return pid_at(buf, len, pos, out);
}

/* SMALL_INTEGER_EXT or INTEGER_EXT (used inside NEW_FUN_EXT). */
static int skip_fixint(const uint8_t *b, size_t len, size_t *pos)
{
    size_t p = *pos;
    NEED(1);
    if (b[p] == T_SMALL_INTEGER) {
        NEED(2);
        *pos = p + 2;
        return 0;
    }
    if (b[p] == T_INTEGER) {
        NEED(5);
        *pos = p + 5;
        return 0;
    }
    return -1;
}

/* ---- duplicate map keys: see term_canon.h ----------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- the walk -------------------------------------------------------------------- */

enum { F_FUN, F_MAP, F_LIST };

/* Open containers that need to know when a child is done: a NEW_FUN (must
 * end at `end`), a map of two or more pairs (its keys' hashes), a list inside
 * a key (a CONS token before each element). `boundary` is the value of `left`
 * (terms still to read) at which the frame's current child is complete. */
struct frame {
    uint64_t boundary;
    uint64_t todo;     /* map: children, list: elements still to complete */
    uint64_t npairs;   /* map */
    size_t   end;      /* fun */
    size_t   keys;     /* map: where its key hashes start in the walker's key stack */
    uint64_t acc;      /* map: sum of its pairs' hashes (when inside a key) */
    uint64_t key_h;    /* map: the current pair's key hash */
    uint64_t parent_h; /* map: the stream it interrupted */
    uint8_t  kind;
    uint8_t  in_key;   /* map: started inside a key (its hash goes on to the parent stream) */
};

struct walker {
    struct frame *fr;
    size_t nfr, capfr;
    uint64_t *keys;
    size_t nkeys, capkeys;
    uint64_t h;      /* the current key stream */
    int hashing;     /* inside a key of a map with two or more pairs */
    size_t key_at;   /* where the current key of the top map starts: the term
                        there IS the key (an atom there is the whole key) */
    int raw;         /* h is the current key's final value (RAW_KEY) */
    struct frame inl[8];
    uint64_t kinl[32]; /* small maps' keys need no allocation */
};

static struct frame *push(struct walker *w, uint8_t kind, uint64_t boundary)
{
    if (w->nfr == w->capfr) {
        size_t nc = w->capfr * 2;
        /* The one exception to xalloc.h's rule: the depth is the peer's (up
         * to --max-frame bytes of nesting, gigabytes of frames), so failing
         * here fails the term (its connection closes) instead of aborting. */
        struct frame *ns = w->fr == w->inl ? malloc(nc * sizeof *ns) : realloc(w->fr, nc * sizeof *ns);
        if (!ns)
            return NULL;
        if (w->fr == w->inl)
            memcpy(ns, w->inl, w->nfr * sizeof *ns);
        w->fr = ns;
        w->capfr = nc;
    }
    struct frame *f = &w->fr[w->nfr++];
    memset(f, 0, sizeof *f);
    f->kind = kind;
    f->boundary = boundary;
    return f;
}

static int push_key(struct walker *w, uint64_t k)
{
    if (w->nkeys == w->capkeys) {
        size_t nc = w->capkeys * 2;
        /* peer-sized, as in push() */
        uint64_t *nk = w->keys == w->kinl ? malloc(nc * sizeof *nk) : realloc(w->keys, nc * sizeof *nk);
        if (!nk)
            return -1;
        if (w->keys == w->kinl)
            memcpy(nk, w->kinl, w->nkeys * sizeof *nk);
        w->keys = nk;
        w->capkeys = nc;
    }
    w->keys[w->nkeys++] = k;
    return 0;
}

#define KEY_INIT 0x243F6A8885A308D3ULL

/* The top frame's current child is complete (left == its boundary). -1 when
 * the term is refused (a fun of the wrong size, duplicate map keys). */
static int child_done(struct walker *w, size_t p)
{
    struct frame *f = &w->fr[w->nfr - 1];
    if (f->kind == F_FUN) {
        if (p != f->end)
            return -1;
        w->nfr--;
        return 0;
    }
    if (f->kind == F_LIST) {
        if (--f->todo == 0) {
            w->nfr--; /* the tail follows, unwrapped: [a | [b]] hashes as [a, b] */
            return 0;
        }
        f->boundary--;
        dsup__canon_feed(&w->h, CANON_CONS);
        return 0;
    }
    /* a map: a key or a value is done */
    uint64_t done = 2 * f->npairs - f->todo;
    if (done % 2 == 0) {
        f->key_h = w->raw ? w->h : dsup__canon_mix(w->h, CANON_MAP);
        w->raw = 0;
        if (push_key(w, f->key_h))
            return -1;
    } else if (f->in_key) { /* (a value is hashed only inside a key) */
        f->acc += dsup__canon_mix(f->key_h, dsup__canon_mix(w->h, CANON_MAP));
    }
    if (--f->todo > 0) {
        f->boundary--;
        w->h = KEY_INIT;
        w->hashing = done % 2 == 1 || f->in_key; /* next: a key, or a value inside a key */
        if (done % 2 == 1)
            w->key_at = p;
        return 0;
    }
    uint64_t *k = w->keys + f->keys;
    if (f->npairs <= 32) { /* the usual small map: compare every pair */
        for (uint64_t i = 1; i < f->npairs; i++)
            for (uint64_t j = 0; j < i; j++)
                if (k[i] == k[j])
                    return -1; /* two equal keys */
    } else {
        qsort(k, f->npairs, sizeof *k, cmp_u64);
        for (uint64_t i = 1; i < f->npairs; i++)
            if (k[i] == k[i - 1])
                return -1;
    }
    w->nkeys = f->keys;
    w->h = f->parent_h;
    w->hashing = f->in_key;
    if (w->hashing) {
        dsup__canon_feed(&w->h, CANON_MAP);
        dsup__canon_feed(&w->h, f->npairs);
        dsup__canon_feed(&w->h, f->acc);
    }
    w->nfr--;
    return 0;
}

static int walk(const char *buf, size_t len, size_t *pos, struct walker *w);

static int skip(const char *buf, size_t len, size_t *pos)
{
    struct walker w;
    w.fr = w.inl;
    w.nfr = 0;
    w.capfr = 8;
    w.keys = w.kinl;
    w.nkeys = 0;
    w.capkeys = 32;
    w.h = 0;
    w.hashing = 0;
    w.key_at = SIZE_MAX;
    w.raw = 0;
    dsup__canon_seed_once();
    int rc = walk(buf, len, pos, &w);
    if (w.fr != w.inl)
        free(w.fr);
    if (w.keys != w.kinl)
        free(w.keys);
    return rc;
}

int dsup_term_skip(const char *buf, size_t len, size_t *pos) { return skip(buf, len, pos); }

int dsup__term_next(const char *buf, size_t *pos) { return dsup__term_step(buf, pos); }

/* A map key that is one atom of at most 7 ASCII bytes (nearly every key
 * dsup sees: a spec's id, start, args, ...) is its own key value, no hash:
 * its text in the low 7 bytes, its length in the top one. Equal keys get
 * equal values whatever the encoding (latin1 or UTF-8, small or not: the
 * same ASCII text), different ones different values; a hashed key matches
 * one only by chance (the hash's secret seed), as two hashed keys do. */
#define RAW_KEY(text, n) ((text) | (uint64_t)(n) << 56)

/* `left` never gets this high (it is at most the bytes left + 1). */
#define NO_FRAME UINT64_MAX

/* The (validated, size bytes) atom at a as RAW_KEY when its text is at
 * most 7 ASCII bytes (in any of the four encodings: ASCII is the same in
 * latin1 and UTF-8): 1 and *out set; else 0. */
static inline int short_ascii_text(const uint8_t *a, size_t size, uint64_t *out)
{
    size_t off = (a[0] == T_ATOM || a[0] == T_ATOM_UTF8) ? 3 : 2, n = size - off;
    uint64_t t = 0;
    if (n > 7)
        return 0;
    memcpy(&t, a + off, n);
    if (!LITTLE_ENDIAN_HOST || (t & 0x8080808080808080ULL))
        return 0;
    *out = RAW_KEY(t, n);
    return 1;
}

static inline uint64_t top_boundary(const struct walker *w)
{
    return w->nfr ? w->fr[w->nfr - 1].boundary : NO_FRAME;
}

static int walk(const char *buf, size_t len, size_t *pos, struct walker *w)
{
    const uint8_t *b = (const uint8_t *)buf;
    size_t p = *pos;
    uint64_t left = 1; /* terms still to read: the term itself */
    uint64_t *h = &w->h;
    uint64_t nb = NO_FRAME; /* the top frame's boundary, in a register */

    if (p > len)
        return -1;
    for (;;) {
        while (left == nb) {
            if (child_done(w, p))
                return -1;
            nb = top_boundary(w);
        }
        if (left == 0)
            break;
        left--;

        uint64_t children = 0; /* elements this term adds to read */
        size_t end = 0;
        size_t n;
        size_t at = p; /* where this term starts */
        int hs = w->hashing;
        NEED(1);
        uint8_t tag = b[p++];
        switch (tag) {
        case T_SMALL_INTEGER:
            NEED(1);
            if (hs)
                dsup__canon_small(h, b[p]);
            p += 1;
            break;
        case T_INTEGER:
            NEED(4);
            if (hs)
                dsup__canon_small(h, (int32_t)dsup_get_u32be(b + p));
            p += 4;
            break;
        case T_FLOAT: {
            NEED(31);
            /* Text "%.20e" padded with NULs: require the NUL so that
             * ei_decode_double's sscanf stops inside the 31 bytes. */
            int nul = 0;
            for (int i = 0; i < 31; i++) {
                uint8_t c = b[p + i];
                if (c == 0) {
                    nul = 1;
                    break;
                }
                if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' ||
                      c == '+' || c == '-' || c == ' '))
                    return -1;
            }
            if (!nul)
                return -1;
            if (hs)
                dsup__canon_double(h, strtod((const char *)b + p, NULL));
            p += 31;
            break;
        }
        case T_NEW_FLOAT: {
            NEED(8);
            uint64_t bits = ((uint64_t)dsup_get_u32be(b + p) << 32) | dsup_get_u32be(b + p + 4);
            if (((bits >> 52) & 0x7FF) == 0x7FF)
                return -1; /* NaN or infinity: no release decodes them */
            if (hs) {
                double d;
                memcpy(&d, &bits, 8);
                dsup__canon_double(h, d);
            }
            p += 8;
            break;
        }
        case T_SMALL_ATOM_UTF8:
            /* The usual atom: short ASCII, checked (and hashed, as a map
             * key) from one load; the 8 bytes after the length are in buf. */
            if (LITTLE_ENDIAN_HOST && len - p >= 9 && b[p] <= 8) {
                uint64_t wd;
                n = b[p];
                memcpy(&wd, b + p + 1, 8);
                wd &= ((uint64_t)1 << 4 * n << 4 * n) - 1; /* its n bytes (n = 8: 1 << 64 is 0) */
                if (!(wd & 0x8080808080808080ULL)) {
                    if (hs && at == w->key_at && n <= 7) { /* this atom is the key */
                        *h = RAW_KEY(wd, n); /* the whole key */
                        w->raw = 1;
                    } else if (hs) { /* the tokens dsup__canon_atom feeds */
                        dsup__canon_feed(h, CANON_ATOM | (uint64_t)n << 8);
                        if (n)
                            dsup__canon_feed(h, wd);
                    }
                    p += 1 + n;
                    break;
                }
            }
            /* fall through */
        case T_ATOM:
        case T_SMALL_ATOM:
        case T_ATOM_UTF8:
            p--;
            if (!small_ascii_atom(b, len, &p) && dsup__atom(buf, len, &p, NULL, NULL))
                return -1;
            if (hs && at == w->key_at && short_ascii_text(b + at, p - at, h)) {
                w->raw = 1; /* the whole key (see RAW_KEY) */
            } else if (hs && tag == T_SMALL_ATOM_UTF8 && b[at + 1] <= 8) {
                /* a short map key, in line: the tokens dsup__canon_atom feeds */
                uint64_t w = 0;
                n = b[at + 1];
                memcpy(&w, b + at + 2, n);
                dsup__canon_feed(h, CANON_ATOM | (uint64_t)n << 8);
                if (n)
                    dsup__canon_feed(h, w);
            } else if (hs) {
                dsup__canon_atom(h, b, at);
            }
            break;
        case T_PID:
        case T_NEW_PID: {
            dsup_wire_pid wp;
            p--;
            if (pid_at(buf, len, &p, hs ? &wp : NULL))
                return -1;
            if (hs) {
                dsup__canon_feed(h, CANON_PID);
                dsup__canon_atom(h, b, at + 1);
                dsup__canon_feed(h, ((uint64_t)wp.num << 32) | wp.serial);
                dsup__canon_feed(h, wp.creation);
            }
            break;
        }
        case T_PORT:      /* Node, ID:32, Creation:8 */
        case T_NEW_PORT:  /* Node, ID:32, Creation:32 */
        case T_V4_PORT:   /* Node, ID:64, Creation:32 */
        case T_REFERENCE: /* Node, ID:32, Creation:8 */
            if (dsup__atom(buf, len, &p, NULL, NULL))
                return -1;
            n = tag == T_PORT || tag == T_REFERENCE ? 5 : tag == T_NEW_PORT ? 8 : 12;
            NEED(n);
            if (hs) {
                dsup__canon_feed(h, tag == T_REFERENCE ? CANON_REF : CANON_PORT);
                dsup__canon_atom(h, b, at + 1);
                if (tag == T_V4_PORT) {
                    dsup__canon_feed(h, ((uint64_t)dsup_get_u32be(b + p) << 32) | dsup_get_u32be(b + p + 4));
                    dsup__canon_feed(h, dsup_get_u32be(b + p + 8));
                } else {
                    if (tag == T_REFERENCE)
                        dsup__canon_feed(h, b[p + 4]); /* creation first, as for the newer refs */
                    dsup__canon_feed(h, dsup_get_u32be(b + p));
                    if (tag == T_PORT)
                        dsup__canon_feed(h, b[p + 4]);
                    else if (tag == T_NEW_PORT)
                        dsup__canon_feed(h, dsup_get_u32be(b + p + 4));
                }
            }
            p += n;
            break;
        case T_NEW_REFERENCE:   /* Len:16, Node, Creation:8, ID:32*Len */
        case T_NEWER_REFERENCE: /* Len:16, Node, Creation:32, ID:32*Len */
            NEED(2);
            n = dsup_get_u16be(b + p);
            p += 2;
            if (n == 0 || n > 5) /* 0: see the top comment */
                return -1;
            if (dsup__atom(buf, len, &p, NULL, NULL))
                return -1;
            {
                size_t cre = tag == T_NEW_REFERENCE ? 1 : 4;
                NEED(cre + 4 * n);
                if (hs) {
                    /* words past the last non-zero one count as absent,
                     * as the BEAM compares references */
                    size_t words = n;
                    while (words > 1 && dsup_get_u32be(b + p + cre + 4 * (words - 1)) == 0)
                        words--;
                    dsup__canon_feed(h, CANON_REF);
                    dsup__canon_atom(h, b, at + 3);
                    dsup__canon_feed(h, cre == 1 ? b[p] : dsup_get_u32be(b + p));
                    for (size_t i = 0; i < words; i++)
                        dsup__canon_feed(h, dsup_get_u32be(b + p + cre + 4 * i));
                }
                p += cre + 4 * n;
            }
            break;
        case T_SMALL_TUPLE:
            NEED(1);
            children = b[p++];
            if (hs) {
                dsup__canon_feed(h, CANON_TUPLE);
                dsup__canon_feed(h, children);
            }
            break;
        case T_LARGE_TUPLE:
            NEED(4);
            children = dsup_get_u32be(b + p);
            p += 4;
            if (hs) {
                dsup__canon_feed(h, CANON_TUPLE);
                dsup__canon_feed(h, children);
            }
            break;
        case T_MAP:
            NEED(4);
            children = 2 * (uint64_t)dsup_get_u32be(b + p);
            p += 4;
            if (hs && children <= 2) {
                dsup__canon_feed(h, CANON_MAP); /* none or one pair: one order, streamed as is */
                dsup__canon_feed(h, children / 2);
            }
            break;
        case T_NIL:
            if (hs)
                dsup__canon_feed(h, CANON_NIL);
            break;
        case T_STRING:
            NEED(2);
            n = dsup_get_u16be(b + p);
            p += 2;
            NEED(n);
            if (hs) { /* as the list of small integers it is */
                for (size_t i = 0; i < n; i++) {
                    dsup__canon_feed(h, CANON_CONS);
                    dsup__canon_small(h, b[p + i]);
                }
                dsup__canon_feed(h, CANON_NIL);
            }
            p += n;
            break;
        case T_LIST:
            NEED(4);
            children = (uint64_t)dsup_get_u32be(b + p) + 1; /* elements + tail */
            p += 4;
            if (hs && children > 1)
                dsup__canon_feed(h, CANON_CONS);
            break;
        case T_BINARY:
            NEED(4);
            n = dsup_get_u32be(b + p);
            p += 4;
            NEED(n);
            if (hs) {
                dsup__canon_feed(h, CANON_BITS);
                dsup__canon_feed(h, (uint64_t)n * 8);
                dsup__canon_bytes(h, b + p, n, 0xFF);
            }
            p += n;
            break;
        case T_BIT_BINARY: {
            NEED(5);
            n = dsup_get_u32be(b + p);
            uint8_t bits = b[p + 4];
            p += 5;
            if (n == 0 || bits < 1 || bits > 8) /* len 0: see the top comment */
                return -1;
            NEED(n);
            if (hs) { /* the unused low bits of the last byte do not count */
                dsup__canon_feed(h, CANON_BITS);
                dsup__canon_feed(h, (uint64_t)(n - 1) * 8 + bits);
                dsup__canon_bytes(h, b + p, n, (uint8_t)(0xFF << (8 - bits)));
            }
            p += n;
            break;
        }
        case T_SMALL_BIG:
            NEED(2);
            n = b[p];
            p += 2; /* n, sign */
            NEED(n);
            if (hs)
                dsup__canon_int(h, b[p - 1] != 0, b + p, n);
            p += n;
            break;
        case T_LARGE_BIG:
            NEED(5);
            n = dsup_get_u32be(b + p);
            p += 5;
            NEED(n);
            if (hs)
                dsup__canon_int(h, b[p - 1] != 0, b + p, n);
            p += n;
            break;
        case T_NEW_FUN: {
            /* Size:32 Arity:8 Uniq:128 Index:32 NumFree:32 Module OldIndex
             * OldUniq Pid FreeVars...; Size counts itself. ei_decode_fun
             * copies the free variables by Size, so Size must be exact. */
            size_t start = p;
            NEED(29);
            size_t size = dsup_get_u32be(b + p);
            if (size < 29 || size > len - p)
                return -1;
            end = start + size;
            children = dsup_get_u32be(b + p + 25);
            p += 29;
            if (dsup__atom(buf, end, &p, NULL, NULL) ||
                skip_fixint(b, end, &p) || skip_fixint(b, end, &p) ||
                dsup__pid(buf, end, &p, NULL))
                return -1;
            if (children == 0 && p != end)
                return -1;
            if (children > end - p)
                return -1;
            if (hs) { /* by its bytes up to the free variables (see above) */
                dsup__canon_feed(h, CANON_FUN);
                dsup__canon_bytes(h, b + start + 4, p - start - 4, 0xFF);
            }
            break;
        }
        case T_EXPORT: /* Module, Function atoms, Arity (SMALL_)INTEGER_EXT 0..255 */
            if (dsup__atom(buf, len, &p, NULL, NULL))
                return -1;
            n = p;
            if (dsup__atom(buf, len, &p, NULL, NULL))
                return -1;
            NEED(1);
            if (b[p] == T_INTEGER) {
                NEED(5);
                if (dsup_get_u32be(b + p + 1) > 255)
                    return -1; /* see the top comment */
            }
            {
                size_t ar = p;
                if (skip_fixint(b, len, &p))
                    return -1;
                if (hs) {
                    dsup__canon_feed(h, CANON_EXPORT);
                    dsup__canon_atom(h, b, at + 1);
                    dsup__canon_atom(h, b, n);
                    dsup__canon_feed(h, b[ar] == T_SMALL_INTEGER ? b[ar + 1] : dsup_get_u32be(b + ar + 1));
                }
            }
            break;
        case T_ATOM_CACHE_REF:
        case T_COMPRESSED:
        case T_LOCAL:
        case T_FUN:
        default:
            return -1;
        }

        if (children) {
            /* Each term takes at least one byte: fail fast on huge counts
             * (this also keeps `left` far from overflowing). */
            if (children > len - p || left + children > len - p)
                return -1;
            if (end) {
                if (!push(w, F_FUN, left))
                    return -1;
                w->fr[w->nfr - 1].end = end;
                nb = left;
            } else if (tag == T_MAP && children >= 4) {
                struct frame *f = push(w, F_MAP, left + children - 1);
                if (!f)
                    return -1;
                f->npairs = children / 2;
                f->todo = children;
                f->keys = w->nkeys;
                f->in_key = (uint8_t)hs;
                f->parent_h = w->h;
                w->h = KEY_INIT; /* the first key */
                w->hashing = 1;
                w->key_at = p;
                nb = f->boundary;
            } else if (tag == T_LIST && hs && children > 1) {
                struct frame *f = push(w, F_LIST, left + children - 1);
                if (!f)
                    return -1;
                f->todo = children - 1;
                nb = f->boundary;
            }
            left += children;
        }
        /* (a NEW_FUN without free variables was checked to end at p above) */
    }
    *pos = p;
    return 0;
}
