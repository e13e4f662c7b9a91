/* sup_shared.c — the specs of an instance's child table, without names,
 * shared: the children of one type nearly always have the same type, args,
 * restart and shutdown, and a child's name is its record's key already. So
 * an idle child costs no spec allocation of its own (README, Memory per
 * child). One entry per distinct spec in s->specs, keyed by its bytes
 * (restart, beam, shutdown, type, args); the spec's type and args point at
 * that key (or at a registered worker type's name), and the entry goes with
 * its last child. */
#include <stdlib.h>
#include <string.h>

#include "sup.h"
#include "xalloc.h"

typedef struct sup_shared_spec {
    dsup_child_spec spec;         /* first: c->shared points here */
    uint32_t refs;
    uint32_t klen;                /* its entry's key length (the key is found from the value) */
} sup_shared_spec;

#define KEY_HEAD 10 /* restart, beam, shutdown (8 bytes) */

static size_t key_len(const dsup_child_spec *spec, size_t *tlen)
{
    *tlen = strlen(spec->type) + 1;
    return KEY_HEAD + *tlen + spec->args.len;
}

static void key_write(char *k, const dsup_child_spec *spec, size_t tlen)
{
    int64_t sh = spec->shutdown;
    k[0] = (char)spec->restart;
    k[1] = (char)spec->beam;
    memcpy(k + 2, &sh, 8);
    memcpy(k + KEY_HEAD, spec->type, tlen);
    if (spec->args.len)
        memcpy(k + KEY_HEAD + tlen, spec->args.buf, spec->args.len);
}

static int same(const dsup_child_spec *a, const dsup_child_spec *b)
{
    return a->restart == b->restart && a->beam == b->beam && a->shutdown == b->shutdown &&
           a->args.len == b->args.len && (a->type == b->type || strcmp(a->type, b->type) == 0) &&
           (a->args.len == 0 || memcmp(a->args.buf, b->args.buf, a->args.len) == 0);
}

const dsup_child_spec *sup_spec_share(dsup_sup *s, const dsup_child_spec *spec)
{
    /* a batch's children, and most starts, have the last one's spec */
    if (s->spec_last && same(s->spec_last, spec)) {
        ((sup_shared_spec *)s->spec_last)->refs++;
        return s->spec_last;
    }
    size_t tlen, klen = key_len(spec, &tlen);
    char stack[256];
    char *k = klen <= sizeof stack ? stack : dsup_xmalloc(klen);
    key_write(k, spec, tlen);
    int created;
    dsup_dict_ent *e = dsup_dict_upsert_inline(&s->specs, k, klen, sizeof(sup_shared_spec), &created);
    if (k != stack)
        free(k);
    if (!e)
        return NULL;
    sup_shared_spec *ss = e->val;
    if (created) {
        const dsup_worker_type *known = dsup_find_worker_type(spec->type);
        ss->spec = *spec;
        ss->spec.type = known ? known->name : e->key + KEY_HEAD; /* a registered type's name lives as long as the node */
        ss->spec.name = (dsup_term){ NULL, 0 };
        ss->spec.name_view = 0;
        ss->spec.args = (dsup_term){ e->key + KEY_HEAD + tlen, spec->args.len };
        ss->klen = (uint32_t)klen;
    }
    ss->refs++;
    s->spec_last = &ss->spec;
    return &ss->spec;
}

void sup_spec_unshare(dsup_sup *s, const dsup_child_spec *shared)
{
    if (!shared)
        return;
    sup_shared_spec *ss = (sup_shared_spec *)shared;
    if (--ss->refs)
        return;
    if (s->spec_last == shared)
        s->spec_last = NULL;
    dsup_dict_remove(&s->specs, dsup_dict_inline_key(ss, ss->klen), ss->klen);
}

int sup_child_set_spec(dsup_sup *s, sup_child *c, dsup_child_spec *spec)
{
    const dsup_child_spec *sh = sup_spec_share(s, spec);
    free(spec);
    if (!sh)
        return -1;
    sup_spec_unshare(s, c->shared);
    c->shared = sh;
    return 0;
}

void sup_spec_shared_free(dsup_sup *s)
{
    dsup_dict_free(&s->specs, NULL);
    s->spec_last = NULL;
}
