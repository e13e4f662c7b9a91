/* term.c — helpers over ei's external term format used by workers and by
 * the node itself. Terms handed to these were validated on arrival
 * (dsup_term_skip), so decoding here may trust lengths. */
#include "term.h"
#include "xalloc.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctrl.h"
#include "term_next.h"
#include "intern.h"
#include "node.h"

/* ---- scratch pool --------------------------------------------------------- */

#define POOL 32

typedef struct atom_cache {
    const char *name;
    size_t len;
    char enc[];
} atom_cache;

/* One node's (node->terms). */
struct dsup_terms {
    dsup_node *node;
    struct scratch *pool[POOL];
    int npool;
    /* Each entry is its own allocation: terms handed out point into it. */
    atom_cache **atoms;
    size_t natoms, capatoms;
    /* by the caller's pointer (nearly always a literal), checked by text:
     * the services ask for the same few group atoms several times a child */
    struct { const char *p; const atom_cache *a; } hot[32];
};

/* A pooled buffer knows its pool, so releasing one needs no context. */
typedef struct scratch {
    ei_x_buff x;
    struct dsup_terms *owner;
} scratch;

void dsup_terms_init(dsup_node *node)
{
    node->terms = dsup_xcalloc(1, sizeof *node->terms);
    node->terms->node = node;
}

void dsup_terms_free(dsup_node *node)
{
    struct dsup_terms *T = node->terms;
    if (!T)
        return;
    for (int i = 0; i < T->npool; i++) {
        ei_x_free(&T->pool[i]->x);
        free(T->pool[i]);
    }
    for (size_t i = 0; i < T->natoms; i++)
        free(T->atoms[i]);
    free(T->atoms);
    free(T);
    node->terms = NULL;
}

ei_x_buff *dsup_term_scratch(dsup_node *node)
{
    struct dsup_terms *T = node->terms;
    scratch *sc;
    if (T->npool > 0) {
        sc = T->pool[--T->npool];
    } else {
        sc = dsup_xmalloc(sizeof *sc);
        ei_x_new(&sc->x);
        sc->owner = T;
    }
    sc->x.index = 0;
    return &sc->x;
}

void dsup_term_scratch_release(ei_x_buff *x)
{
    scratch *sc = (scratch *)(void *)x; /* x is its first member */
    struct dsup_terms *T = sc->owner;
    if (x->buffsz > (1 << 20)) {
        /* One large message must not pin its size in the pool. */
        ei_x_free(x);
        ei_x_new(x);
    }
    if (T->npool < POOL) {
        T->pool[T->npool++] = sc;
        return;
    }
    ei_x_free(x);
    free(sc);
}

dsup_term dsup_term_of_x(const ei_x_buff *x)
{
    dsup_term t = { x->buff, (size_t)x->index };
    if (t.len > 0 && (unsigned char)t.buf[0] == 131) {
        t.buf++;
        t.len--;
    }
    return t;
}

void dsup_x_grow(ei_x_buff *x, size_t more)
{
    size_t need = (size_t)x->index + more + 100; /* ei reallocs unless 100 bytes stay free */
    if (need <= (size_t)x->buffsz)
        return;
    size_t sz = 2 * (size_t)x->buffsz;
    if (sz < need + 128)
        sz = need + 128;
    if (sz > INT_MAX)
        return; /* ei's own growth reports the failure */
    x->buff = dsup_xrealloc(x->buff, sz); /* ei's buffers are malloc's */
    x->buffsz = (int)sz;
}

int dsup_x_append_slow(ei_x_buff *x, const void *buf, size_t len)
{
    dsup_x_grow(x, len);
    if ((size_t)x->index + len > (size_t)x->buffsz)
        return ei_x_append_buf(x, buf, (int)len); /* (growth gave up: ei reports it) */
    memcpy(x->buff + x->index, buf, len);
    x->index += (int)len;
    return 0;
}

/* ---- cached atoms -------------------------------------------------------------- */

static int atom_text_is(const atom_cache *a, const char *atom)
{
    size_t n = a->len - 2;
    return strncmp(a->enc + 2, atom, n) == 0 && atom[n] == 0;
}

dsup_term dsup_reason_atom(dsup_node *node, const char *atom)
{
    struct dsup_terms *T = node->terms;
    size_t h = ((uintptr_t)atom >> 3 ^ (uintptr_t)atom >> 9) % (sizeof T->hot / sizeof T->hot[0]);
    const atom_cache *c = T->hot[h].a;
    if (T->hot[h].p == atom && c && atom_text_is(c, atom))
        return (dsup_term){ c->enc, c->len };
    const char *n = dsup_intern_str(node->names, atom);
    for (size_t i = 0; i < T->natoms; i++)
        if (T->atoms[i]->name == n) {
            if (strlen(atom) < 256) { /* (a longer one is cut: its text differs) */
                T->hot[h].p = atom;
                T->hot[h].a = T->atoms[i];
            }
            return (dsup_term){ T->atoms[i]->enc, T->atoms[i]->len };
        }
    size_t len = strlen(atom);
    if (len > 255)
        len = 255;
    if (T->natoms == T->capatoms) {
        size_t nc = T->capatoms ? T->capatoms * 2 : 16;
        atom_cache **na = dsup_xrealloc(T->atoms, nc * sizeof *na);
        T->atoms = na;
        T->capatoms = nc;
    }
    atom_cache *a = dsup_xmalloc(sizeof *a + len + 2);
    a->name = n;
    a->enc[0] = (char)119; /* SMALL_ATOM_UTF8_EXT */
    a->enc[1] = (char)len;
    memcpy(a->enc + 2, atom, len);
    a->len = len + 2;
    T->atoms[T->natoms++] = a;
    return (dsup_term){ a->enc, a->len };
}

/* ---- pids and refs ---------------------------------------------------------------- */

static void put_u32(char *d, uint32_t v) { dsup_set_u32be(d, v); }

static int append_atom(ei_x_buff *x, const char *s)
{
    size_t n = strlen(s);
    char h[3];
    if (n < 256) {
        /* one append, not two: atoms are in every signal and reply */
        char a[2 + 255];
        a[0] = (char)119;
        a[1] = (char)n;
        memcpy(a + 2, s, n);
        return dsup_x_append(x, a, n + 2);
    } else {
        h[0] = (char)118;
        h[1] = (char)(n >> 8);
        h[2] = (char)n;
        if (ei_x_append_buf(x, h, 3) < 0)
            return -1;
    }
    return ei_x_append_buf(x, s, (int)n);
}

int dsup_x_encode_atom(ei_x_buff *x, const char *name) { return append_atom(x, name); }

int dsup_x_encode_pid(ei_x_buff *x, const dsup_pid *pid)
{
    size_t n = strlen(pid->node);
    if (n < 256) { /* the usual node name: written in place, no copy through the stack */
        dsup_x_reserve(x, 15 + n);
        if ((size_t)x->index + 15 + n <= (size_t)x->buffsz) {
            char *b = x->buff + x->index;
            b[0] = 88; /* NEW_PID_EXT */
            b[1] = (char)119;
            b[2] = (char)n;
            memcpy(b + 3, pid->node, n);
            put_u32(b + 3 + n, pid->num);
            put_u32(b + 7 + n, pid->serial);
            put_u32(b + 11 + n, pid->creation);
            x->index += (int)(15 + n);
            return 0;
        }
    }
    char t = 88;
    char tail[12];
    put_u32(tail, pid->num);
    put_u32(tail + 4, pid->serial);
    put_u32(tail + 8, pid->creation);
    if (dsup_x_append(x, &t, 1) < 0 || append_atom(x, pid->node) < 0)
        return -1;
    return dsup_x_append(x, tail, 12);
}

int dsup_x_encode_ref(ei_x_buff *x, const dsup_ref *ref)
{
    char h[3] = { 90, 0, (char)ref->len }; /* NEWER_REFERENCE_EXT */
    char tail[24];
    put_u32(tail, ref->creation);
    for (uint32_t i = 0; i < ref->len; i++)
        put_u32(tail + 4 + 4 * i, ref->n[i]);
    if (ei_x_append_buf(x, h, 3) < 0 || append_atom(x, ref->node) < 0)
        return -1;
    return ei_x_append_buf(x, tail, (int)(4 + 4 * ref->len));
}

int dsup_x_encode_term(ei_x_buff *x, dsup_term t)
{
    if (t.len > 0 && (unsigned char)t.buf[0] == 131) {
        t.buf++;
        t.len--;
    }
    return dsup_x_append(x, t.buf, t.len);
}

int dsup_decode_pid(dsup_node *dn, const char *buf, int *index, dsup_pid *pid)
{
    const unsigned char *p = (const unsigned char *)buf + *index;
    int tag = p[0];
    if (tag != 88 && tag != 103)
        return -1;
    int i = *index + 1;
    const char *node;
    size_t nlen;
    if (dsup_term_atom_text(buf, &i, &node, &nlen) < 0)
        return -1;
    const unsigned char *q = (const unsigned char *)buf + i;
    pid->node = dsup_intern_peer(dn->names, node, nlen);
    if (!pid->node)
        return -1;
    pid->num = dsup_get_u32be(q);
    pid->serial = dsup_get_u32be(q + 4);
    if (tag == 88) {
        pid->creation = dsup_get_u32be(q + 8);
        *index = i + 12;
    } else {
        pid->creation = q[8];
        *index = i + 9;
    }
    return 0;
}

int dsup_decode_ref(dsup_node *dn, const char *buf, int *index, dsup_ref *ref)
{
    const unsigned char *p = (const unsigned char *)buf + *index;
    int tag = p[0];
    if (tag != 90 && tag != 114)
        return -1;
    size_t n = dsup_get_u16be(p + 1);
    if (n < 1 || n > 5)
        return -1;
    int i = *index + 3;
    const char *node;
    size_t nlen;
    if (dsup_term_atom_text(buf, &i, &node, &nlen) < 0)
        return -1;
    const unsigned char *q = (const unsigned char *)buf + i;
    ref->node = dsup_intern_peer(dn->names, node, nlen);
    if (!ref->node)
        return -1;
    if (tag == 90) {
        ref->creation = dsup_get_u32be(q);
        q += 4;
        i += 4;
    } else {
        ref->creation = q[0];
        q += 1;
        i += 1;
    }
    ref->len = (uint32_t)n;
    memset(ref->n, 0, sizeof ref->n);
    for (size_t k = 0; k < n; k++)
        ref->n[k] = dsup_get_u32be(q + 4 * k);
    *index = i + (int)(4 * n);
    return 0;
}

/* The node names of decoded pids and refs are counted entries that live
 * until the end of the loop turn unless held (see intern.h). */
void dsup_pid_hold(const dsup_pid *pid) { dsup_intern_hold(pid->node); }
void dsup_pid_release(const dsup_pid *pid) { dsup_intern_release(pid->node); }
void dsup_ref_hold(const dsup_ref *ref) { dsup_intern_hold(ref->node); }
void dsup_ref_release(const dsup_ref *ref) { dsup_intern_release(ref->node); }

int dsup_ref_eq(const dsup_ref *a, const dsup_ref *b)
{
    if (a->node != b->node || a->creation != b->creation)
        return 0;
    /* Words past the shorter length count as zero, as the BEAM compares them. */
    uint32_t n = a->len > b->len ? a->len : b->len;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t x = i < a->len ? a->n[i] : 0, y = i < b->len ? b->n[i] : 0;
        if (x != y)
            return 0;
    }
    return 1;
}

void dsup_pid_to_wire(const dsup_pid *p, dsup_wire_pid *w)
{
    w->node = p->node;
    w->node_len = (uint16_t)strlen(p->node);
    w->num = p->num;
    w->serial = p->serial;
    w->creation = p->creation;
}

int dsup_pid_from_wire(dsup_node *node, const dsup_wire_pid *w, dsup_pid *p)
{
    p->node = dsup_intern_peer(node->names, w->node, w->node_len);
    p->num = w->num;
    p->serial = w->serial;
    p->creation = w->creation;
    return p->node ? 0 : -1;
}

/* ---- inspecting terms ----------------------------------------------------------- */

int dsup_term_is_atom(dsup_term t, const char *name)
{
    if (t.len < 2)
        return 0;
    int i = 0;
    const char *s;
    size_t n;
    if (dsup_term_atom_text(t.buf, &i, &s, &n) < 0 || (size_t)i > t.len)
        return 0;
    /* no strlen: most calls ask for a name the atom is not, and differ at
     * once (services test a message against one tag after another) */
    for (size_t k = 0; k < n; k++)
        if (s[k] != name[k] || !name[k])
            return 0;
    return name[n] == 0;
}

int dsup_term_next(const char *buf, int *index)
{
    /* The term was validated on arrival: no length bound is needed, and
     * dsup_term_skip walks any depth without recursion. */
    size_t pos = (size_t)*index;
    if (*index < 0 || dsup__term_step(buf, &pos) < 0 || pos > INT_MAX)
        return -1;
    *index = (int)pos;
    return 0;
}

/* A dsup_term is exactly one term (term.h): the last element ends where t
 * does, so it is not stepped over (a batch's list of 1,000 specs would be
 * walked once more per dispatch), nor is anything past elems[max-1]. */
int dsup_term_tuple(dsup_term t, dsup_term *elems, int max)
{
    const unsigned char *b = (const unsigned char *)t.buf;
    size_t pos;
    uint32_t arity;
    if (t.len < 2)
        return -1;
    if (b[0] == 104) { /* SMALL_TUPLE_EXT */
        arity = b[1];
        pos = 2;
    } else if (b[0] == 105 && t.len >= 5) { /* LARGE_TUPLE_EXT */
        arity = dsup_get_u32be(b + 1);
        pos = 5;
    } else {
        return -1;
    }
    if (arity > INT_MAX)
        return -1;
    uint32_t want = max < 0 ? 0 : (uint32_t)max < arity ? (uint32_t)max : arity;
    for (uint32_t k = 0; k < want; k++) {
        size_t start = pos;
        if (k + 1 == arity) {
            if (start >= t.len)
                return -1; /* t is shorter than its tuple: not one term */
            pos = t.len;
        } else if (dsup__term_step(t.buf, &pos) < 0) {
            return -1;
        }
        elems[k].buf = t.buf + start;
        elems[k].len = pos - start;
    }
    return (int)arity;
}

int dsup_term_tagged(dsup_term t, const char *tag, int *arity, dsup_term *elems, int max)
{
    if (t.len < 3)
        return 0;
    /* Cheap precheck before splitting: first element must be the atom. */
    const unsigned char *p = (const unsigned char *)t.buf;
    int hdr = p[0] == 104 ? 2 : p[0] == 105 ? 5 : 0;
    if (!hdr || t.len <= (size_t)hdr)
        return 0;
    dsup_term first = { t.buf + hdr, t.len - (size_t)hdr };
    if (!dsup_term_is_atom(first, tag))
        return 0;
    int a = dsup_term_tuple(t, elems, max);
    if (a < 0)
        return 0;
    *arity = a;
    return 1;
}

int dsup_term_keyfind(dsup_term list, const char *key, dsup_term *value)
{
    int i = 0, n, type, size;
    if (ei_get_type(list.buf, &i, &type, &size) < 0)
        return 0;
    if (type == ERL_NIL_EXT || type != ERL_LIST_EXT)
        return 0;
    if (ei_decode_list_header(list.buf, &i, &n) < 0)
        return 0;
    for (int k = 0; k < n; k++) {
        int start = i;
        if (dsup_term_next(list.buf, &i) < 0)
            return 0;
        dsup_term el = { list.buf + start, (size_t)(i - start) };
        dsup_term kv[2];
        if (dsup_term_tuple(el, kv, 2) == 2 && dsup_term_is_atom(kv[0], key)) {
            *value = kv[1];
            return 1;
        }
    }
    return 0;
}

int dsup_term_eq(dsup_term a, dsup_term b)
{
    return a.len == b.len && memcmp(a.buf, b.buf, a.len) == 0;
}

dsup_term dsup_term_dup(dsup_term t)
{
    char *c = dsup_xmalloc(t.len ? t.len : 1);
    memcpy(c, t.buf, t.len);
    return (dsup_term){ c, t.len };
}

void dsup_term_free(dsup_term *t)
{
    free((void *)t->buf);
    t->buf = NULL;
    t->len = 0;
}
