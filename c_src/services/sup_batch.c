/* sup_batch.c — many starts in one call, one reply:
 *   {start_children_here, [{Name, SpecMap}]} -> [{ok, Pid, Name} | {error, _}]
 * Each element is started here exactly as {start_child_here, Name, SpecMap}
 * is (sup_start_claimed: the name's owner arbitrates), and its result takes
 * its place in the reply list, in input order. A start that must wait for
 * an arbiter answers a `from` of our own, {Self, {'$dsup_batch', Id, I}}: that
 * answer comes back here as a message (sup_batch_reply) and the batch
 * replies once every slot is filled.
 *
 * The children started during the call are announced in one message to
 * every other instance, {'$dsup', {children_up, [{Name, Pid, SpecMap}]}},
 * not one child_up each (sup_cache.c collects them between sup_up_batch_begin
 * and _end; each instance gets every spec in the form replication gives it). */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "node.h"
#include "sup.h"
#include "term.h"
#include "xalloc.h"

typedef struct sup_batch {
    uint64_t id;
    dsup_saved_from *from;
    size_t n, left;
    size_t *off, *len;            /* slot i's reply bytes in buf; len 0: not yet */
    ei_x_buff buf;
    struct sup_batch *next;
} sup_batch;

static void batch_free(sup_batch *b)
{
    dsup_from_discard(b->from);
    free(b->off);
    ei_x_free(&b->buf);
    free(b);
}

static void slot_set(sup_batch *b, size_t i, dsup_term reply)
{
    b->off[i] = (size_t)b->buf.index;
    ei_x_append_buf(&b->buf, reply.buf, (int)reply.len);
    b->len[i] = reply.len;
}

static void encode_results(sup_batch *b, ei_x_buff *x)
{
    if (b->n)
        ei_x_encode_list_header(x, (long)b->n);
    for (size_t i = 0; i < b->n; i++)
        ei_x_append_buf(x, b->buf.buff + b->off[i], (int)b->len[i]);
    ei_x_encode_empty_list(x);
}

static void error_pair(ei_x_buff *x, const char *what, dsup_term detail)
{
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "error");
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, what);
    dsup_x_encode_term(x, detail);
}

/* One element: its reply in `one` (DSUP_REPLY) or a deferred answer to the
 * batch's own from for slot i. */
static dsup_call_ret start_one(dsup_sup *s, sup_batch *b, size_t i, dsup_term el, ei_x_buff *one)
{
    dsup_term t[2];
    dsup_child_spec *spec;
    if (dsup_term_tuple(el, t, 2) != 2 || t[0].len == 0) {
        error_pair(one, "incorrect_spec", el);
        return DSUP_REPLY;
    }
    if (dsup_spec_parse_named(s->node, t[1], t[0], &spec) < 0) {
        error_pair(one, "incorrect_spec", t[1]);
        return DSUP_REPLY;
    }
    if (s->fenced) {
        free(spec);
        ei_x_encode_tuple_header(one, 2);
        dsup_x_encode_atom(one, "error");
        dsup_x_encode_atom(one, "no_quorum");
        return DSUP_REPLY;
    }
    /* the tag {'$dsup_batch', Id, I} comes back with the deferred answer */
    ei_x_buff *tag = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(tag, 3);
    dsup_x_encode_atom(tag, "$dsup_batch");
    ei_x_encode_ulonglong(tag, b->id);
    ei_x_encode_ulong(tag, (unsigned long)i);
    dsup_from from = { *dsup_self(s->proc), dsup_term_of_x(tag) };
    dsup_call_ret r = sup_start_claimed(s, spec, &from, one);
    dsup_term_scratch_release(tag);
    if (r == DSUP_REPLY && one->index == 0) { /* sup_start_claimed's enomem */
        ei_x_encode_tuple_header(one, 2);
        dsup_x_encode_atom(one, "error");
        dsup_x_encode_atom(one, "enomem");
    }
    return r;
}

dsup_call_ret sup_start_children_here(dsup_sup *s, dsup_term list, const dsup_from *from, ei_x_buff *reply)
{
    int i = 0, n = 0, type, size;
    if (ei_get_type(list.buf, &i, &type, &size) < 0 || (type != ERL_LIST_EXT && type != ERL_NIL_EXT) ||
        ei_decode_list_header(list.buf, &i, &n) < 0) {
        error_pair(reply, "incorrect_spec", list);
        return DSUP_REPLY;
    }
    static uint64_t seq;
    sup_batch *b = dsup_xcalloc(1, sizeof *b);
    b->id = ++seq;
    b->n = b->left = (size_t)n;
    b->off = dsup_xcalloc(2 * (size_t)n + 1, sizeof *b->off);
    b->len = b->off + n;
    ei_x_new(&b->buf);
    ei_x_buff *one = dsup_term_scratch(s->node);
    sup_up_batch_begin(s);
    for (size_t k = 0; k < (size_t)n; k++) {
        int st = i;
        if (dsup_term_next(list.buf, &i) < 0)
            break; /* validated on arrival: cannot happen */
        one->index = 0;
        if (start_one(s, b, k, (dsup_term){ list.buf + st, (size_t)(i - st) }, one) == DSUP_REPLY) {
            slot_set(b, k, dsup_term_of_x(one));
            b->left--;
        }
    }
    sup_up_batch_end(s);
    dsup_term_scratch_release(one);
    if (b->left == 0) {
        encode_results(b, reply);
        batch_free(b);
        return DSUP_REPLY;
    }
    b->from = dsup_from_save(from);
    b->next = s->batches;
    s->batches = b;
    return DSUP_NOREPLY;
}

/* {{'$dsup_batch', Id, I}, Reply}: a deferred start of a batch answered. */
int sup_batch_reply(dsup_sup *s, dsup_term msg)
{
    dsup_term el[2], tag[3];
    int ar;
    if (!s->batches || dsup_term_tuple(msg, el, 2) != 2 || !dsup_term_tagged(el[0], "$dsup_batch", &ar, tag, 3) ||
        ar != 3)
        return 0;
    unsigned long long id;
    unsigned long idx;
    int i = 0, j = 0;
    if (ei_decode_ulonglong(tag[1].buf, &i, &id) < 0 || ei_decode_ulong(tag[2].buf, &j, &idx) < 0)
        return 1;
    for (sup_batch **pp = &s->batches; *pp; pp = &(*pp)->next) {
        sup_batch *b = *pp;
        if (b->id != id)
            continue;
        if (idx >= b->n || b->len[idx])
            return 1;
        slot_set(b, idx, el[1]);
        if (--b->left == 0) {
            *pp = b->next;
            ei_x_buff *x = dsup_term_scratch(s->node);
            encode_results(b, x);
            dsup_reply(b->from, x);
            b->from = NULL;
            dsup_term_scratch_release(x);
            batch_free(b);
        }
        return 1;
    }
    return 1; /* a batch the instance no longer waits for */
}

void sup_batch_free(dsup_sup *s)
{
    while (s->batches) {
        sup_batch *b = s->batches;
        s->batches = b->next;
        batch_free(b);
    }
}
