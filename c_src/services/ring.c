/* ring.c — libring 1.7 HashRing in C. See ring.h. */
#include "ring.h"
#include "xalloc.h"
#include "phash2.h"

#include <stdlib.h>
#include <string.h>

struct dsup_ring {
    dsup_ring_point *pts;  /* sorted by hash, hashes unique */
    size_t npts, pcap;
    char **names;          /* insertion order; node index = position */
    size_t nnodes, ncap;
    int atom_enc;
    uint64_t gen;          /* dsup_ring_gen */
};

static uint64_t next_gen(void)
{
    static uint64_t gen;
    return __atomic_add_fetch(&gen, 1, __ATOMIC_RELAXED);
}

int dsup_ring_default_atom_encoding = DSUP_RING_ATOM_EXT;

dsup_ring *dsup_ring_new(void)
{
    dsup_ring *r = dsup_xcalloc(1, sizeof *r);
    if (r) {
        r->gen = next_gen();
        r->atom_enc = DSUP_RING_ATOM_EXT;
        dsup_ring_set_atom_encoding(r, dsup_ring_default_atom_encoding);
    }
    return r;
}

void dsup_ring_free(dsup_ring *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nnodes; i++)
        free(r->names[i]);
    free(r->names);
    free(r->pts);
    free(r);
}

static long find_node(const dsup_ring *r, const char *node)
{
    for (size_t i = 0; i < r->nnodes; i++)
        if (strcmp(r->names[i], node) == 0)
            return (long)i;
    return -1;
}

int dsup_ring_has_node(const dsup_ring *r, const char *node)
{
    return r && node && find_node(r, node) >= 0;
}

const char *dsup_ring_name(const dsup_ring *r, const char *node)
{
    long i = r && node ? find_node(r, node) : -1;
    return i < 0 ? NULL : r->names[i];
}

uint64_t dsup_ring_gen(const dsup_ring *r) { return r ? r->gen : 0; }

/* First index with pts[i].hash >= h (n when none). Branch-free halving:
 * the compare compiles to a conditional move, so random keys do not pay
 * for a mispredicted branch at every level. */
static size_t lower_bound(const dsup_ring_point *p, size_t n, uint32_t h)
{
    if (n == 0)
        return 0;
    const dsup_ring_point *base = p;
    while (n > 1) {
        size_t half = n / 2;
        base = base[half].hash < h ? base + half : base;
        n -= half;
    }
    return (size_t)(base - p) + (base->hash < h);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* phash2({Node, I}, 4294967295): encode the tuple and hash it, so the point
 * hash goes through the same code as every other term. */
static uint32_t point_hash(const char *node, size_t len, uint32_t i)
{
    uint8_t buf[16 + 1020];
    size_t k = 0;
    buf[k++] = 131;
    buf[k++] = 104; /* SMALL_TUPLE_EXT */
    buf[k++] = 2;
    if (len <= 255) {
        buf[k++] = 119; /* SMALL_ATOM_UTF8_EXT */
        buf[k++] = (uint8_t)len;
    } else {
        buf[k++] = 118; /* ATOM_UTF8_EXT */
        buf[k++] = (uint8_t)(len >> 8);
        buf[k++] = (uint8_t)len;
    }
    memcpy(buf + k, node, len);
    k += len;
    buf[k++] = 98; /* INTEGER_EXT (i <= INT_MAX) */
    buf[k++] = (uint8_t)(i >> 24);
    buf[k++] = (uint8_t)(i >> 16);
    buf[k++] = (uint8_t)(i >> 8);
    buf[k++] = (uint8_t)i;
    uint32_t h = 0;
    (void)dsup_phash2((const char *)buf, k, DSUP_RING_HASH_RANGE, &h);
    return h;
}

int dsup_ring_add_node(dsup_ring *r, const char *node, int weight)
{
    if (!r || !node)
        return DSUP_RING_EINVAL;
    size_t len = strlen(node);
    if (len > 1020 || dsup_phash2_atom_text_check(node, len) < 0)
        return DSUP_RING_EINVAL;
    if (find_node(r, node) >= 0)
        return 0;
    if (weight <= 0)
        weight = DSUP_RING_DEFAULT_WEIGHT;

    /* The node's points in order I = 1..weight; a later I that collides
     * with an earlier one of the same node or with a point already on the
     * ring is dropped (gb_trees:insert raising key_exists). Only the hash
     * matters for same-node duplicates, so sort and unique. */
    uint32_t *cand = dsup_xmalloc((size_t)weight * sizeof *cand);
    char *name = dsup_xmalloc(len + 1);
    memcpy(name, node, len + 1);
    for (int i = 1; i <= weight; i++)
        cand[i - 1] = point_hash(node, len, (uint32_t)i);
    qsort(cand, (size_t)weight, sizeof *cand, cmp_u32);
    size_t nc = 0;
    for (size_t i = 0; i < (size_t)weight; i++) {
        if (nc && cand[nc - 1] == cand[i])
            continue;
        size_t at = lower_bound(r->pts, r->npts, cand[i]);
        if (at < r->npts && r->pts[at].hash == cand[i])
            continue;
        cand[nc++] = cand[i];
    }

    if (r->nnodes == r->ncap) {
        size_t ncap = r->ncap ? r->ncap * 2 : 8;
        char **nn = dsup_xrealloc(r->names, ncap * sizeof *nn);
        r->names = nn;
        r->ncap = ncap;
    }
    if (r->npts + nc > r->pcap) {
        size_t pcap = r->pcap ? r->pcap : 256;
        while (pcap < r->npts + nc)
            pcap *= 2;
        dsup_ring_point *np = dsup_xrealloc(r->pts, pcap * sizeof *np);
        r->pts = np;
        r->pcap = pcap;
    }

    /* Merge the new points in from the back. */
    uint32_t idx = (uint32_t)r->nnodes;
    size_t i = r->npts, j = nc, k = r->npts + nc;
    while (j > 0) {
        if (i > 0 && r->pts[i - 1].hash > cand[j - 1]) {
            r->pts[--k] = r->pts[--i];
        } else {
            --k;
            r->pts[k].hash = cand[--j];
            r->pts[k].node = idx;
        }
    }
    r->npts += nc;
    r->names[r->nnodes++] = name;
    r->gen = next_gen();
    free(cand);
    return 0;
}

int dsup_ring_remove_node(dsup_ring *r, const char *node)
{
    if (!r || !node)
        return DSUP_RING_EINVAL;
    long at = find_node(r, node);
    if (at < 0)
        return DSUP_RING_ENOTFOUND;
    uint32_t k = (uint32_t)at;
    size_t o = 0;
    for (size_t i = 0; i < r->npts; i++) {
        dsup_ring_point p = r->pts[i];
        if (p.node == k)
            continue;
        if (p.node > k)
            p.node--;
        r->pts[o++] = p;
    }
    r->npts = o;
    free(r->names[k]);
    memmove(&r->names[k], &r->names[k + 1], (r->nnodes - k - 1) * sizeof *r->names);
    r->nnodes--;
    r->gen = next_gen();
    return 0;
}

size_t dsup_ring_node_count(const dsup_ring *r)
{
    return r ? r->nnodes : 0;
}

const char *dsup_ring_node_at(const dsup_ring *r, size_t i)
{
    if (!r || i >= r->nnodes)
        return NULL;
    return r->names[r->nnodes - 1 - i]; /* newest first, like HashRing.nodes/1 */
}

void dsup_ring_set_atom_encoding(dsup_ring *r, int enc)
{
    if (r && (enc == DSUP_RING_ATOM_EXT || enc == DSUP_RING_ATOM_UTF8 || enc == DSUP_RING_ATOM_PLAIN))
        r->atom_enc = enc;
}

int dsup_ring_atom_encoding(const dsup_ring *r)
{
    return r ? r->atom_enc : DSUP_RING_ATOM_EXT;
}

/* If the key is exactly one atom, write term_to_binary(Atom) as the chosen
 * OTP release would into buf (at most 1 + 3 + 1020 bytes) and return its
 * length; 0 when the key is not an atom; -1 when it is a malformed atom. */
static int atom_key_t2b(const uint8_t *k, size_t len, int enc, uint8_t *buf)
{
    uint8_t tag = k[0];
    size_t hdr, n;
    int latin1_in;
    switch (tag) {
    case 100: hdr = 3; latin1_in = 1; break; /* ATOM_EXT */
    case 115: hdr = 2; latin1_in = 1; break; /* SMALL_ATOM_EXT */
    case 118: hdr = 3; latin1_in = 0; break; /* ATOM_UTF8_EXT */
    case 119: hdr = 2; latin1_in = 0; break; /* SMALL_ATOM_UTF8_EXT */
    default: return 0;
    }
    if (len < hdr)
        return -1;
    n = hdr == 3 ? ((size_t)k[1] << 8 | k[2]) : k[1];
    if (len != hdr + n)
        return -1;
    const uint8_t *s = k + hdr;

    /* The atom's text as UTF-8, and whether every character is latin1. */
    uint8_t utf8[1020];
    size_t ulen = 0;
    int all_latin1 = 1;
    if (latin1_in) {
        if (n > 255)
            return -1;
        for (size_t i = 0; i < n; i++) {
            if (s[i] < 0x80) {
                utf8[ulen++] = s[i];
            } else {
                utf8[ulen++] = (uint8_t)(0xC0 | (s[i] >> 6));
                utf8[ulen++] = (uint8_t)(0x80 | (s[i] & 0x3F));
            }
        }
    } else {
        if (n > sizeof utf8 || dsup_phash2_atom_text_check((const char *)s, n) < 0)
            return -1;
        memcpy(utf8, s, n);
        ulen = n;
        for (size_t i = 0; i < n; i++)
            if (s[i] >= 0x80 && s[i] != 0xC2 && s[i] != 0xC3 && (s[i] & 0xC0) != 0x80)
                all_latin1 = 0;
    }

    size_t o = 0;
    buf[o++] = 131;
    if (enc == DSUP_RING_ATOM_EXT && all_latin1) {
        /* ATOM_EXT with the latin1 characters */
        size_t cnt = 0;
        uint8_t *lenp = buf + o;
        o += 3;
        buf[1] = 100;
        for (size_t i = 0; i < ulen; i++, cnt++) {
            if (utf8[i] < 0x80)
                buf[o++] = utf8[i];
            else {
                buf[o++] = (uint8_t)(((utf8[i] & 0x03) << 6) | (utf8[i + 1] & 0x3F));
                i++;
            }
        }
        lenp[1] = (uint8_t)(cnt >> 8);
        lenp[2] = (uint8_t)cnt;
        return (int)o;
    }
    if (ulen <= 255) {
        buf[o++] = 119;
        buf[o++] = (uint8_t)ulen;
    } else {
        buf[o++] = 118;
        buf[o++] = (uint8_t)(ulen >> 8);
        buf[o++] = (uint8_t)ulen;
    }
    memcpy(buf + o, utf8, ulen);
    return (int)(o + ulen);
}

/* The last key hashed: one start asks for its name's hash several times
 * (name check, placement, arbitration), a phash2 walk each. */
static _Thread_local struct {
    uint8_t key[64];
    size_t len;
    int enc;
    uint32_t hash;
} last_key;

static int key_hash(const dsup_ring *r, const char *key, size_t len, uint32_t *hash);

int dsup_ring_key_hash(const dsup_ring *r, const char *key, size_t len, uint32_t *hash)
{
    if (!r || !key || len == 0)
        return DSUP_PHASH2_EBADARG;
    if (len == last_key.len && r->atom_enc == last_key.enc && memcmp(key, last_key.key, len) == 0) {
        *hash = last_key.hash;
        return 0;
    }
    int rc = key_hash(r, key, len, hash);
    if (rc == 0 && len <= sizeof last_key.key) {
        memcpy(last_key.key, key, len);
        last_key.len = len;
        last_key.enc = r->atom_enc;
        last_key.hash = *hash;
    }
    return rc;
}

static int key_hash(const dsup_ring *r, const char *key, size_t len, uint32_t *hash)
{
    const uint8_t *k = (const uint8_t *)key;
    if (r->atom_enc != DSUP_RING_ATOM_PLAIN) {
        uint8_t buf[4 + 1020];
        size_t off = k[0] == 131 ? 1 : 0;
        if (off >= len)
            return DSUP_PHASH2_EBADARG;
        int n = atom_key_t2b(k + off, len - off, r->atom_enc, buf);
        if (n < 0)
            return DSUP_PHASH2_EBADARG;
        if (n > 0) {
            *hash = dsup_make_hash2_binary(buf, (size_t)n) % DSUP_RING_HASH_RANGE;
            return 0;
        }
    }
    return dsup_phash2(key, len, DSUP_RING_HASH_RANGE, hash);
}

static long owner_index(const dsup_ring *r, const char *key, size_t len)
{
    uint32_t h;
    if (!r || r->npts == 0 || dsup_ring_key_hash(r, key, len, &h) != 0)
        return -1;
    size_t at = lower_bound(r->pts, r->npts, h);
    return at == r->npts ? 0 : (long)at;
}

const char *dsup_ring_node_for(const dsup_ring *r, const char *key, size_t len)
{
    long at = owner_index(r, key, len);
    return at < 0 ? NULL : r->names[r->pts[at].node];
}

size_t dsup_ring_nodes_for(const dsup_ring *r, const char *key, size_t len,
                           const char **out, size_t n)
{
    long at = owner_index(r, key, len);
    if (at < 0 || !out || n == 0)
        return 0;
    if (n > r->nnodes)
        n = r->nnodes;
    size_t got = 0;
    uint32_t seen[64];     /* node indices found so far, for small n */
    for (size_t step = 0; step < r->npts && got < n; step++) {
        uint32_t node = r->pts[((size_t)at + step) % r->npts].node;
        const char *name = r->names[node];
        int dup = 0;
        for (size_t j = 0; j < got; j++) {
            if (j < 64 ? seen[j] == node : out[j] == name) {
                dup = 1;
                break;
            }
        }
        if (dup)
            continue;
        if (got < 64)
            seen[got] = node;
        out[got++] = name;
    }
    return got;
}

size_t dsup_ring_point_count(const dsup_ring *r)
{
    return r ? r->npts : 0;
}

const dsup_ring_point *dsup_ring_points(const dsup_ring *r)
{
    return r ? r->pts : NULL;
}
