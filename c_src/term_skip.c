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
 * containers. Only NEW_FUN needs to remember where it must end (its Size is
 * checked); those ends go on a small heap stack.
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
 * Nothing the BEAM itself encodes is refused. */
#include "ctrl.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

long dsup__utf8_chars(const uint8_t *s, size_t n);
int dsup__atom(const char *buf, size_t len, size_t *pos, const char **text, size_t *text_len);
int dsup__pid(const char *buf, size_t len, size_t *pos, dsup_wire_pid *out);

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

#define NEED(n) do { if ((size_t)(n) > len - p) return -1; } while (0)

/* Count UTF-8 characters of s[0..n), strictly (no overlong forms, no
 * surrogates, nothing above U+10FFFF). -1 when invalid. Also used by ctrl.c. */
long dsup__utf8_chars(const uint8_t *s, size_t n)
{
    long chars = 0;
    size_t i = 0;
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

/* Exported for ctrl.c: parse a PID_EXT / NEW_PID_EXT at *pos. */
int dsup__pid(const char *buf, size_t len, size_t *pos, dsup_wire_pid *out)
{
    const uint8_t *b = (const uint8_t *)buf;
    size_t p = *pos;
    NEED(1);
    uint8_t tag = b[p++];
    if (tag != T_PID && tag != T_NEW_PID)
        return -1;
    const char *node;
    size_t node_len;
    if (dsup__atom(buf, len, &p, &node, &node_len))
        return -1;
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

/* The ends of the NEW_FUNs being walked: where each must end, and the
 * value of `left` (terms still to read) at which its free variables are done. */
struct fun_end {
    size_t   end;
    uint64_t left_after;
};

struct fun_stack {
    struct fun_end *st;
    size_t n, cap;
    struct fun_end inl[8];
};

static int fun_push(struct fun_stack *s, size_t end, uint64_t left_after)
{
    if (s->n == s->cap) {
        size_t nc = s->cap * 2;
        struct fun_end *ns = s->st == s->inl ? malloc(nc * sizeof *ns) : realloc(s->st, nc * sizeof *ns);
        if (!ns)
            return -1;
        if (s->st == s->inl)
            memcpy(ns, s->inl, s->n * sizeof *ns);
        s->st = ns;
        s->cap = nc;
    }
    s->st[s->n].end = end;
    s->st[s->n].left_after = left_after;
    s->n++;
    return 0;
}

static int walk(const char *buf, size_t len, size_t *pos, struct fun_stack *funs);

int dsup_term_skip(const char *buf, size_t len, size_t *pos)
{
    struct fun_stack funs = { .cap = 8 };
    funs.st = funs.inl;
    int rc = walk(buf, len, pos, &funs);
    if (funs.st != funs.inl)
        free(funs.st);
    return rc;
}

static int walk(const char *buf, size_t len, size_t *pos, struct fun_stack *funs)
{
    const uint8_t *b = (const uint8_t *)buf;
    size_t p = *pos;
    uint64_t left = 1; /* terms still to read: the term itself */

    if (p > len)
        return -1;
    for (;;) {
        /* Funs whose free variables are all read must end exactly here. */
        while (funs->n > 0 && funs->st[funs->n - 1].left_after == left) {
            if (p != funs->st[funs->n - 1].end)
                return -1;
            funs->n--;
        }
        if (left == 0)
            break;
        left--;

        uint64_t children = 0; /* elements this term adds to read */
        size_t end = 0;
        size_t n;
        NEED(1);
        uint8_t tag = b[p++];
        switch (tag) {
        case T_SMALL_INTEGER:
            NEED(1);
            p += 1;
            break;
        case T_INTEGER:
            NEED(4);
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
            p += 31;
            break;
        }
        case T_NEW_FLOAT:
            NEED(8);
            p += 8;
            break;
        case T_ATOM:
        case T_SMALL_ATOM:
        case T_ATOM_UTF8:
        case T_SMALL_ATOM_UTF8:
            p--;
            if (dsup__atom(buf, len, &p, NULL, NULL))
                return -1;
            break;
        case T_PID:
        case T_NEW_PID:
            p--;
            if (dsup__pid(buf, len, &p, NULL))
                return -1;
            break;
        case T_PORT:      /* Node, ID:32, Creation:8 */
        case T_NEW_PORT:  /* Node, ID:32, Creation:32 */
        case T_V4_PORT:   /* Node, ID:64, Creation:32 */
        case T_REFERENCE: /* Node, ID:32, Creation:8 */
            if (dsup__atom(buf, len, &p, NULL, NULL))
                return -1;
            n = tag == T_PORT || tag == T_REFERENCE ? 5 : tag == T_NEW_PORT ? 8 : 12;
            NEED(n);
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
            n = (tag == T_NEW_REFERENCE ? 1 : 4) + 4 * n;
            NEED(n);
            p += n;
            break;
        case T_SMALL_TUPLE:
            NEED(1);
            children = b[p++];
            break;
        case T_LARGE_TUPLE:
            NEED(4);
            children = dsup_get_u32be(b + p);
            p += 4;
            break;
        case T_MAP:
            NEED(4);
            children = 2 * (uint64_t)dsup_get_u32be(b + p);
            p += 4;
            break;
        case T_NIL:
            break;
        case T_STRING:
            NEED(2);
            n = dsup_get_u16be(b + p);
            p += 2;
            NEED(n);
            p += n;
            break;
        case T_LIST:
            NEED(4);
            children = (uint64_t)dsup_get_u32be(b + p) + 1; /* elements + tail */
            p += 4;
            break;
        case T_BINARY:
            NEED(4);
            n = dsup_get_u32be(b + p);
            p += 4;
            NEED(n);
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
            p += n;
            break;
        }
        case T_SMALL_BIG:
            NEED(2);
            n = b[p];
            p += 2; /* n, sign */
            NEED(n);
            p += n;
            break;
        case T_LARGE_BIG:
            NEED(5);
            n = dsup_get_u32be(b + p);
            p += 5;
            NEED(n);
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
            break;
        }
        case T_EXPORT: /* Module, Function atoms, Arity (SMALL_)INTEGER_EXT 0..255 */
            if (dsup__atom(buf, len, &p, NULL, NULL) ||
                dsup__atom(buf, len, &p, NULL, NULL))
                return -1;
            NEED(1);
            if (b[p] == T_INTEGER) {
                NEED(5);
                if (dsup_get_u32be(b + p + 1) > 255)
                    return -1; /* see the top comment */
            }
            if (skip_fixint(b, len, &p))
                return -1;
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
            if (end && fun_push(funs, end, left))
                return -1;
            left += children;
        }
        /* (a NEW_FUN without free variables was checked to end at p above) */
    }
    *pos = p;
    return 0;
}
