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
 * and _end; each instance gets every spec in the form replication gives it).
 *
 *   {start_children, [Spec]} -> [{ok, Pid, Name} | {error, _}]
 * The same with placement done here: each Spec is parsed and placed as
 * {start_child, Spec, undefined} is (sup_place_owner: the capable hosts'
 * ring), the ones this node owns start as above, and each other owner gets
 * ONE {start_children_here, Items} for its group, forwarded like a single
 * start (sup_forward: monitored, never waited for). Its answer, or
 * {error, {nodedown, Node}} when the owner goes away, comes back to the
 * batch as {{'$dsup_batch', Id, G, group}, Reply} and fills the group's
 * slots; the caller gets one reply, in input order. */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "node.h"
#include "sup.h"
#include "sup_spec.h"
#include "term.h"
#include "xalloc.h"

typedef struct sup_batch {
    uint64_t id;
    dsup_saved_from *from;
    size_t n, left;
    size_t *off, *len;            /* slot i's reply bytes in buf; len 0: not yet */
    size_t *gslot, *gstart;       /* start_children: group g's slots are
                                     gslot[gstart[g] .. gstart[g + 1]) */
    size_t ngroups;
    ei_x_buff *buf;               /* pooled (dsup_term_scratch): warm across batches */
    struct sup_batch *next;
} sup_batch;

static sup_batch *batch_new(dsup_sup *s, size_t n)
{
    sup_batch *b = dsup_xcalloc(1, sizeof *b);
    b->id = ++s->node->sup->batch_seq; /* ids unique on the node */
    b->n = b->left = n;
    /* one allocation for every per-slot array: off, len, gslot, gstart */
    b->off = dsup_xcalloc(4 * n + 2, sizeof *b->off);
    b->len = b->off + n;
    b->gslot = b->len + n;
    b->gstart = b->gslot + n;
    b->buf = dsup_term_scratch(s->node);
    return b;
}

static void batch_free(sup_batch *b)
{
    dsup_from_discard(b->from);
    free(b->off);
    dsup_term_scratch_release(b->buf);
    free(b);
}

static void slot_set(sup_batch *b, size_t i, dsup_term reply)
{
    b->off[i] = (size_t)b->buf->index;
    dsup_x_append(b->buf, reply.buf, reply.len);
    b->len[i] = reply.len;
}

static void encode_results(sup_batch *b, ei_x_buff *x)
{
    dsup_x_reserve(x, (size_t)b->buf->index + 8);
    if (b->n)
        ei_x_encode_list_header(x, (long)b->n);
    for (size_t i = 0; i < b->n; i++)
        ei_x_append_buf(x, b->buf->buff + b->off[i], (int)b->len[i]);
    ei_x_encode_empty_list(x);
}

/* The batch's list: its length in *n, *i at its first element; -1 when
 * `list` is not a list. */
static int batch_list(dsup_term list, int *i, int *n)
{
    int type, size;
    if (ei_get_type(list.buf, i, &type, &size) < 0 || (type != ERL_LIST_EXT && type != ERL_NIL_EXT))
        return -1;
    return ei_decode_list_header(list.buf, i, n) < 0 ? -1 : 0;
}

/* Slot i's start here (consumes spec): its reply in `one` (DSUP_REPLY) or a
 * deferred answer to the batch's own from for slot i. */
static dsup_call_ret start_spec(dsup_sup *s, sup_batch *b, size_t i, dsup_child_spec *spec, ei_x_buff *one)
{
    if (s->fenced) {
        free(spec);
        sup_error_atom(one, "no_quorum");
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
    if (r == DSUP_REPLY && one->index == 0) /* sup_start_claimed's enomem */
        sup_error_atom(one, "enomem");
    return r;
}

/* One {Name, SpecMap} element of start_children_here. */
static dsup_call_ret start_one(dsup_sup *s, sup_batch *b, size_t i, dsup_term el, ei_x_buff *one)
{
    dsup_term t[2];
    dsup_child_spec *spec;
    if (dsup_term_tuple(el, t, 2) != 2 || t[0].len == 0) {
        sup_error_pair(one, "incorrect_spec", el);
        return DSUP_REPLY;
    }
    if (dsup_spec_parse_named(s->node, t[1], t[0], &spec) < 0) {
        sup_error_pair(one, "incorrect_spec", t[1]);
        return DSUP_REPLY;
    }
    return start_spec(s, b, i, spec, one);
}

/* Every slot filled: the reply now. Else the batch waits for its deferred
 * slots (sup_batch_reply). */
static dsup_call_ret reply_or_wait(dsup_sup *s, sup_batch *b, const dsup_from *from, ei_x_buff *reply)
{
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

dsup_call_ret sup_start_children_here(dsup_sup *s, dsup_term list, const dsup_from *from, ei_x_buff *reply)
{
    int i = 0, n = 0;
    if (batch_list(list, &i, &n) < 0) {
        sup_error_pair(reply, "incorrect_spec", list);
        return DSUP_REPLY;
    }
    sup_batch *b = batch_new(s, (size_t)n);
    ei_x_buff *one = dsup_term_scratch(s->node);
    sup_up_batch_begin(s, (size_t)n);
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
    return reply_or_wait(s, b, from, reply);
}

/* ---- start_children: placement here ------------------------------------- */

/* Parse and place one Spec as start_child does: 0 with *spec and *owner, or
 * -1 with the slot's error in `one`. */
static int place_one(dsup_sup *s, dsup_term el, dsup_child_spec **spec, const char **owner, ei_x_buff *one)
{
    dsup_child_spec *sp;
    if (dsup_spec_parse(s->node, el, &sp) < 0) {
        sup_error_pair(one, "incorrect_spec", el);
        return -1;
    }
    if (sp->name.len == 0 && !(sp = sup_spec_named_by_ref(s, sp))) {
        sup_error_atom(one, "enomem");
        return -1;
    }
    if (sup_check_child_name(s, sp->name, one) < 0 || sup_reply_if_running(s, sp->name, one)) {
        free(sp);
        return -1;
    }
    if (s->fenced) {
        free(sp);
        sup_error_atom(one, "no_quorum");
        return -1;
    }
    /* the owner among the hosts that can run the type (sup_place.c) */
    const char *node = sup_place_owner(s, sp, 1);
    if (!node) {
        sup_error_no_owner(s, sp, one);
        free(sp);
        return -1;
    }
    *spec = sp;
    *owner = node;
    return 0;
}

/* Group g's slots get `reply` each: an owner that could not answer. */
static void group_fill(sup_batch *b, size_t g, dsup_term reply)
{
    for (size_t k = b->gstart[g]; k < b->gstart[g + 1]; k++) {
        slot_set(b, b->gslot[k], reply);
        b->left--;
    }
}

/* Group g to its owner `node`, ONE {start_children_here, [{Name, SpecMap}]}
 * answered to {Self, {'$dsup_batch', Id, G, group}}. Consumes the specs. */
static void forward_group(dsup_sup *s, sup_batch *b, size_t g, const char *node, dsup_child_spec **specs)
{
    size_t k0 = b->gstart[g], k1 = b->gstart[g + 1];
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "start_children_here");
    ei_x_encode_list_header(x, (long)(k1 - k0));
    for (size_t k = k0; k < k1; k++) {
        dsup_child_spec *sp = specs[b->gslot[k]];
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_term(x, sp->name);
        dsup_spec_encode_map(x, sp, 1);
        free(sp);
        specs[b->gslot[k]] = NULL;
    }
    ei_x_encode_empty_list(x);
    ei_x_buff *tag = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(tag, 4);
    dsup_x_encode_atom(tag, "$dsup_batch");
    ei_x_encode_ulonglong(tag, b->id);
    ei_x_encode_ulong(tag, (unsigned long)g);
    dsup_x_encode_atom(tag, "group");
    dsup_from from = { *dsup_self(s->proc), dsup_term_of_x(tag) };
    if (sup_forward(s, node, dsup_term_of_x(x), &from, 0) < 0) {
        x->index = 0; /* the owner left between placement and now */
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_atom(x, "error");
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_atom(x, "nodedown");
        dsup_x_encode_atom(x, node);
        group_fill(b, g, dsup_term_of_x(x));
    }
    dsup_term_scratch_release(tag);
    dsup_term_scratch_release(x);
}

dsup_call_ret sup_start_children(dsup_sup *s, dsup_term list, const dsup_from *from, ei_x_buff *reply)
{
    int i = 0, n = 0;
    if (batch_list(list, &i, &n) < 0) {
        sup_error_pair(reply, "incorrect_spec", list);
        return DSUP_REPLY;
    }
    sup_batch *b = batch_new(s, (size_t)n);
    /* per call, not per child: each slot's spec and group, each group's owner */
    dsup_child_spec **specs = dsup_xcalloc((size_t)n + 1, sizeof *specs);
    size_t *group = dsup_xcalloc(2 * (size_t)n + 1, sizeof *group); /* then the cursors */
    const char **owners = dsup_xcalloc((size_t)n + 1, sizeof *owners);
    ei_x_buff *one = dsup_term_scratch(s->node);
    for (size_t k = 0; k < (size_t)n; k++) {
        int st = i;
        if (dsup_term_next(list.buf, &i) < 0)
            break; /* validated on arrival: cannot happen */
        const char *owner;
        one->index = 0;
        if (place_one(s, (dsup_term){ list.buf + st, (size_t)(i - st) }, &specs[k], &owner, one) < 0) {
            slot_set(b, k, dsup_term_of_x(one));
            b->left--;
            continue;
        }
        size_t g = 0; /* a handful of owners: a linear look-up */
        while (g < b->ngroups && owners[g] != owner)
            g++;
        if (g == b->ngroups)
            owners[b->ngroups++] = owner;
        group[k] = g;
        b->gstart[g + 1]++;
    }
    /* counting sort of the placed slots by group, input order kept within */
    for (size_t g = 0; g < b->ngroups; g++)
        b->gstart[g + 1] += b->gstart[g];
    size_t *next = group + n; /* each group's cursor */
    memcpy(next, b->gstart, b->ngroups * sizeof *next);
    for (size_t k = 0; k < (size_t)n; k++)
        if (specs[k])
            b->gslot[next[group[k]]++] = k;
    /* the other owners first, so that they start while this node does */
    for (size_t g = 0; g < b->ngroups; g++)
        if (owners[g] != s->node->name)
            forward_group(s, b, g, owners[g], specs);
    sup_up_batch_begin(s, (size_t)n);
    for (size_t g = 0; g < b->ngroups; g++) {
        if (owners[g] != s->node->name)
            continue;
        for (size_t k = b->gstart[g]; k < b->gstart[g + 1]; k++) {
            size_t slot = b->gslot[k];
            one->index = 0;
            if (start_spec(s, b, slot, specs[slot], one) == DSUP_REPLY) {
                slot_set(b, slot, dsup_term_of_x(one));
                b->left--;
            }
        }
    }
    sup_up_batch_end(s);
    dsup_term_scratch_release(one);
    free(specs);
    free(group);
    free(owners);
    return reply_or_wait(s, b, from, reply);
}

/* Group g's answer: its list of results (one per slot, in the group's
 * order), else one reply for every slot ({error, {nodedown, Node}}). */
static void group_answer(sup_batch *b, size_t g, dsup_term reply)
{
    size_t k0 = b->gstart[g], k1 = b->gstart[g + 1];
    int i = 0, n = -1, type, size;
    if (ei_get_type(reply.buf, &i, &type, &size) == 0 && (type == ERL_LIST_EXT || type == ERL_NIL_EXT) &&
        ei_decode_list_header(reply.buf, &i, &n) < 0)
        n = -1;
    if (n < 0 || (size_t)n != k1 - k0) {
        if (n >= 0)
            LOG_WARN("a start_children_here answer of %d results for %zu starts: given to each", n, k1 - k0);
        group_fill(b, g, reply);
        return;
    }
    for (size_t k = k0; k < k1; k++) {
        int st = i;
        if (dsup_term_next(reply.buf, &i) < 0)
            break; /* validated on arrival */
        slot_set(b, b->gslot[k], (dsup_term){ reply.buf + st, (size_t)(i - st) });
        b->left--;
    }
}

/* {{'$dsup_batch', Id, I}, Reply}: a deferred start of a batch answered;
 * {{'$dsup_batch', Id, G, group}, Reply}: a forwarded group's answer. */
int sup_batch_reply(dsup_sup *s, dsup_term msg)
{
    dsup_term el[2], tag[4];
    int ar;
    if (!s->batches || dsup_term_tuple(msg, el, 2) != 2 || !dsup_term_tagged(el[0], "$dsup_batch", &ar, tag, 4) ||
        (ar != 3 && ar != 4))
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
        if (ar == 4) {
            if (idx >= b->ngroups || b->gstart[idx] == b->gstart[idx + 1] || b->len[b->gslot[b->gstart[idx]]])
                return 1;
            group_answer(b, idx, el[1]);
        } else {
            if (idx >= b->n || b->len[idx])
                return 1;
            slot_set(b, idx, el[1]);
            b->left--;
        }
        if (b->left == 0) {
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
