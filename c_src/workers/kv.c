/* kv — a small key/value store: {put, K, V} -> ok, {get, K} -> {ok, V} |
 * not_found, {delete, K} -> ok, keys -> [K]. Keys and values are any terms,
 * kept encoded; keys compare by their encoding. :sys.get_state shows a map. */
#include <stdlib.h>
#include <string.h>

#include "dsup.h"
#include "xalloc.h"
#include "workers.h"

typedef struct kv_ent {
    dsup_term key, val;
    struct kv_ent *next;
} kv_ent;

typedef struct kv {
    kv_ent **slots;
    size_t nslots, count;
} kv;

static void kv_free(kv *s);

static size_t hash(dsup_term k)
{
    size_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < k.len; i++)
        h = (h ^ (unsigned char)k.buf[i]) * 1099511628211ULL;
    return h;
}

static kv_ent **find(kv *s, dsup_term k)
{
    kv_ent **e = &s->slots[hash(k) & (s->nslots - 1)];
    while (*e && !dsup_term_eq((*e)->key, k))
        e = &(*e)->next;
    return e;
}

static void grow(kv *s)
{
    size_t n = s->nslots * 2;
    kv_ent **ns = dsup_xcalloc(n, sizeof *ns);
    for (size_t i = 0; i < s->nslots; i++) {
        for (kv_ent *e = s->slots[i], *next; e; e = next) {
            next = e->next;
            size_t j = hash(e->key) & (n - 1);
            e->next = ns[j];
            ns[j] = e;
        }
    }
    free(s->slots);
    s->slots = ns;
    s->nslots = n;
}

static void put(kv *s, dsup_term k, dsup_term v);

/* A handoff term is the map kv_state encodes: #{Key => Value}. */
static int load_map(kv *s, dsup_term m)
{
    int i = 0, arity;
    if (ei_decode_map_header(m.buf, &i, &arity) < 0)
        return -1;
    for (int k = 0; k < arity; k++) {
        int ks = i, vs;
        if (ei_skip_term(m.buf, &i) < 0)
            return -1;
        vs = i;
        if (ei_skip_term(m.buf, &i) < 0 || (size_t)i > m.len)
            return -1;
        put(s, (dsup_term){ m.buf + ks, (size_t)(vs - ks) }, (dsup_term){ m.buf + vs, (size_t)(i - vs) });
    }
    return 0;
}

static int kv_init(dsup_proc *self, dsup_term args, void **state)
{
    kv *s = dsup_xcalloc(1, sizeof *s);
    s->nslots = 16;
    s->slots = dsup_xcalloc(s->nslots, sizeof *s->slots);
    *state = s; /* set before a refusal: terminate is not called, so free here */
    dsup_term h;
    if (!s->slots || (dsup_handoff_state(self, &h) && load_map(s, h) < 0)) {
        kv_free(s);
        *state = NULL;
        dsup_stop_atom(self, "bad_handoff");
        return -1;
    }
    return 0;
}

static void put(kv *s, dsup_term k, dsup_term v)
{
    kv_ent **e = find(s, k);
    if (*e) {
        dsup_term_free(&(*e)->val);
        (*e)->val = dsup_term_dup(v);
        return;
    }
    kv_ent *n = dsup_xcalloc(1, sizeof *n);
    n->key = dsup_term_dup(k);
    n->val = dsup_term_dup(v);
    *e = n;
    if (++s->count > s->nslots)
        grow(s);
}

static dsup_call_ret kv_call(dsup_proc *self, void *state, dsup_term req, const dsup_from *from,
                             ei_x_buff *reply)
{
    kv *s = state;
    dsup_term el[3];
    int ar;
    if (dsup_term_tagged(req, "put", &ar, el, 3) && ar == 3) {
        put(s, el[1], el[2]);
        dsup_x_encode_atom(reply, "ok");
    } else if (dsup_term_tagged(req, "get", &ar, el, 3) && ar == 2) {
        kv_ent *e = *find(s, el[1]);
        if (e) {
            ei_x_encode_tuple_header(reply, 2);
            dsup_x_encode_atom(reply, "ok");
            dsup_x_encode_term(reply, e->val);
        } else {
            dsup_x_encode_atom(reply, "not_found");
        }
    } else if (dsup_term_tagged(req, "delete", &ar, el, 3) && ar == 2) {
        kv_ent **e = find(s, el[1]);
        if (*e) {
            kv_ent *d = *e;
            *e = d->next;
            dsup_term_free(&d->key);
            dsup_term_free(&d->val);
            free(d);
            s->count--;
        }
        dsup_x_encode_atom(reply, "ok");
    } else if (dsup_term_is_atom(req, "keys")) {
        if (s->count)
            ei_x_encode_list_header(reply, (long)s->count);
        for (size_t i = 0; i < s->nslots; i++)
            for (kv_ent *e = s->slots[i]; e; e = e->next)
                dsup_x_encode_term(reply, e->key);
        ei_x_encode_empty_list(reply);
    } else {
        ei_x_encode_tuple_header(reply, 2);
        dsup_x_encode_atom(reply, "error");
        dsup_x_encode_atom(reply, "unknown_call");
    }
    return DSUP_REPLY;
}

static void kv_terminate(dsup_proc *self, void *state, dsup_term reason)
{
    kv_free(state);
}

static void kv_free(kv *s)
{
    for (size_t i = 0; s->slots && i < s->nslots; i++) {
        for (kv_ent *e = s->slots[i], *next; e; e = next) {
            next = e->next;
            dsup_term_free(&e->key);
            dsup_term_free(&e->val);
            free(e);
        }
    }
    free(s->slots);
    free(s);
}

static int kv_state(dsup_proc *self, void *state, ei_x_buff *out)
{
    kv *s = state;
    ei_x_encode_map_header(out, (long)s->count);
    for (size_t i = 0; i < s->nslots; i++) {
        for (kv_ent *e = s->slots[i]; e; e = e->next) {
            dsup_x_encode_term(out, e->key);
            dsup_x_encode_term(out, e->val);
        }
    }
    return 0;
}

const dsup_worker_type dsup_worker_kv = {
    .name = "kv",
    .init = kv_init,
    .handle_call = kv_call,
    .terminate = kv_terminate,
    .encode_state = kv_state,
    .handoff_state = kv_state, /* the same map moves with the child */
};
