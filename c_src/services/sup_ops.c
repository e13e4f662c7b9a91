/* sup_ops.c — the instance's wire API, gen_server:call({Name, Node}, Msg):
 *   {start_child, Spec, Node | undefined | nil} -> {ok, Pid, Name} | {error, _}
 *   {start_children_here, [{Name, SpecMap}]} -> [{ok, Pid, Name} | {error, _}] (sup_batch.c)
 *   {start_children, [Spec]} -> the same, each Spec placed as start_child places it (sup_batch.c)
 *   {terminate_child, Pid}   -> ok | {error, not_found}
 *   children                 -> #{Name => {Pid, ChildSpecMap}}
 *   local_children           -> [Pid]
 *   {whereis, Name}          -> Pid | undefined
 *   {whois, Pid}             -> Name | nil
 *   count_children           -> [{specs,N},{active,N},{supervisors,0},{workers,N}]
 *   which_children           -> [{undefined, Pid, worker, [Type]}]
 *   nodes                    -> [Node]
 *   {node_for, Key}          -> Node | undefined
 *   {move_child, Name, Node} -> {ok, Pid, Name} | {error, _}   (sup_handoff.c)
 *   {checkpoint_of, Name}    -> {ok, Term} | none             (sup_checkpoint.c)
 *   replica_info             -> #{replicas, local, specs, stubs, pass_active} (sup_replica.c)
 * A start or terminate that belongs to another node is forwarded to the
 * instance there; its answer is relayed without blocking this one. */
#include <stdlib.h>
#include <string.h>

#include "intern.h"
#include "xalloc.h"
#include "node.h"
#include "sup.h"
#include "term.h"

void sup_error_atom(ei_x_buff *x, const char *what)
{
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "error");
    dsup_x_encode_atom(x, what);
}

void sup_error_pair(ei_x_buff *x, const char *what, dsup_term detail)
{
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "error");
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, what);
    dsup_x_encode_term(x, detail);
}

/* No host runs spec's type: {error, {unknown_worker, Type}} while the ring
 * has hosts, {error, no_nodes} when it has none. */
void sup_error_no_owner(dsup_sup *s, const dsup_child_spec *spec, ei_x_buff *x)
{
    if (dsup_ring_node_count(s->ring)) {
        ei_x_buff *t = dsup_term_scratch(s->node); /* not dsup_reason_atom: it keeps what it encodes */
        dsup_x_encode_atom(t, spec->type);
        sup_error_pair(x, "unknown_worker", dsup_term_of_x(t));
        dsup_term_scratch_release(t);
    } else {
        sup_error_atom(x, "no_nodes");
    }
}

/* {error, {nodedown, Node}} (a peer names the node: not a dsup_reason_atom). */
static void error_nodedown(ei_x_buff *x, const char *node)
{
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "error");
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "nodedown");
    dsup_x_encode_atom(x, node);
}

/* ---- forwarding ------------------------------------------------------------- */

int sup_forward(dsup_sup *s, const char *node, dsup_term request, const dsup_from *from, int is_terminate)
{
    const dsup_pid *host = sup_host_on(s, node);
    if (!host)
        return -1;
    sup_pending *p = s->pending_spare; /* a finished forward's, or a new one */
    if (p) {
        s->pending_spare = p->next;
        s->npending_spare--;
        memset(p, 0, sizeof *p);
    } else {
        p = dsup_xcalloc(1, sizeof *p);
    }
    dsup_pid target = *host;
    dsup_node_make_ref(s->node, &p->tag);
    dsup_monitor(s->proc, &target, &p->mref);
    p->node = node;
    dsup_intern_hold(node);
    p->is_terminate = is_terminate;
    p->from = dsup_from_save(from);
    p->next = s->pending;
    s->pending = p;
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 3);
    dsup_x_encode_atom(x, "$gen_call");
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_pid(x, dsup_self(s->proc));
    dsup_x_encode_ref(x, &p->tag);
    dsup_x_encode_term(x, request);
    dsup_send(s->proc, &target, x);
    dsup_term_scratch_release(x);
    return 0;
}

/* Keep a few finished forwards for the next ones: no malloc per forward. */
static void pending_done(dsup_sup *s, sup_pending *p)
{
    dsup_intern_release(p->node);
    if (s->npending_spare >= SUP_PENDING_SPARE) {
        free(p);
        return;
    }
    p->next = s->pending_spare;
    s->pending_spare = p;
    s->npending_spare++;
}

/* The instance ends: its forwards in flight are dropped unanswered (each
 * caller monitors the instance and sees it end, as with a gen_server). */
void sup_pending_end(dsup_sup *s)
{
    while (s->pending) {
        sup_pending *p = s->pending;
        s->pending = p->next;
        dsup_from_discard(p->from);
        dsup_intern_release(p->node);
        free(p);
    }
}

void sup_pending_free_spare(dsup_sup *s)
{
    while (s->pending_spare) {
        sup_pending *p = s->pending_spare;
        s->pending_spare = p->next;
        free(p);
    }
    s->npending_spare = 0;
}

static sup_pending *take_pending(dsup_sup *s, const dsup_ref *ref, int by_mref)
{
    for (sup_pending **pp = &s->pending; *pp; pp = &(*pp)->next) {
        sup_pending *p = *pp;
        if (dsup_ref_eq(by_mref ? &p->mref : &p->tag, ref)) {
            *pp = p->next;
            return p;
        }
    }
    return NULL;
}

/* {Tag, Reply} from a forwarded call: relay it. */
int sup_pending_reply(dsup_sup *s, dsup_term msg)
{
    if (!s->pending)
        return 0;
    dsup_term el[2];
    dsup_ref ref;
    int i = 0;
    if (dsup_term_tuple(msg, el, 2) != 2 || dsup_decode_ref(s->node, el[0].buf, &i, &ref) < 0)
        return 0;
    sup_pending *p = take_pending(s, &ref, 0);
    if (!p)
        return 0;
    dsup_demonitor(s->proc, &p->mref);
    ei_x_buff *x = dsup_term_scratch(s->node);
    dsup_x_encode_term(x, el[1]);
    dsup_reply(p->from, x);
    dsup_term_scratch_release(x);
    pending_done(s, p);
    return 1;
}

/* The instance we forwarded to went away before answering. */
int sup_pending_down(dsup_sup *s, const dsup_ref *mref)
{
    sup_pending *p = take_pending(s, mref, 1);
    if (!p)
        return 0;
    ei_x_buff *x = dsup_term_scratch(s->node);
    if (p->is_terminate)
        sup_error_atom(x, "not_found"); /* the child went with its node */
    else
        error_nodedown(x, p->node);
    dsup_reply(p->from, x);
    dsup_term_scratch_release(x);
    pending_done(s, p);
    return 1;
}

/* ---- start_child --------------------------------------------------------------- */

static const char *node_arg(dsup_sup *s, dsup_term t)
{
    if (dsup_term_is_atom(t, "undefined") || dsup_term_is_atom(t, "nil"))
        return NULL;
    int i = 0;
    const char *a;
    size_t n;
    if (dsup_term_atom_text(t.buf, &i, &a, &n) < 0)
        return "";
    a = dsup_intern_peer(s->node->names, a, n); /* counted: a pending forward holds it */
    return a ? a : "";
}

static dsup_call_ret start_child(dsup_sup *s, dsup_term spec_t, dsup_term node_t, const dsup_from *from,
                                 ei_x_buff *reply)
{
    dsup_child_spec *spec;
    /* its name a view of the frame: the child table's key is the only copy */
    if (dsup_spec_parse_view(s->node, spec_t, &spec) < 0) {
        sup_error_pair(reply, "incorrect_spec", spec_t);
        return DSUP_REPLY;
    }
    const char *node = node_arg(s, node_t);
    if (node && !*node) {
        free(spec);
        sup_error_pair(reply, "incorrect_node", node_t);
        return DSUP_REPLY;
    }
    if (spec->name.len == 0 && !(spec = sup_spec_named_by_ref(s, spec))) {
        sup_error_atom(reply, "enomem");
        return DSUP_REPLY;
    }
    if (sup_check_child_name(s, spec->name, reply) < 0 || sup_reply_if_running(s, spec->name, reply)) {
        free(spec);
        return DSUP_REPLY;
    }
    if (s->fenced) {
        free(spec);
        sup_error_atom(reply, "no_quorum");
        return DSUP_REPLY;
    }
    const char *const *owner = NULL; /* the placement, when made here */
    if (!node) {
        /* the owner among the hosts that can run the type (sup_place.c) */
        node = sup_place_owner(s, spec, 1);
        if (!node) {
            sup_error_no_owner(s, spec, reply);
            free(spec);
            return DSUP_REPLY;
        }
        owner = &node;
    }
    if (node == s->node->name) /* checked and placed above: not again */
        return sup_start_claimed_checked(s, spec, owner, from, reply);
    /* {start_child_here, Name, SpecMap} to the instance on `node`. */
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 3);
    dsup_x_encode_atom(x, "start_child_here");
    dsup_x_encode_term(x, spec->name);
    dsup_spec_encode_map(x, spec, 1);
    int rc = sup_forward(s, node, (dsup_term){ x->buff, (size_t)x->index }, from, 0);
    dsup_term_scratch_release(x);
    free(spec);
    if (rc < 0) {
        error_nodedown(reply, node);
        return DSUP_REPLY;
    }
    return DSUP_NOREPLY;
}

static dsup_call_ret start_child_here(dsup_sup *s, dsup_term name, dsup_term spec_t, const dsup_from *from,
                                      ei_x_buff *reply)
{
    dsup_child_spec *named; /* its name a view of the frame, as in start_child */
    if (dsup_spec_parse_named_view(s->node, spec_t, name, &named) < 0) {
        sup_error_pair(reply, "incorrect_spec", spec_t);
        return DSUP_REPLY;
    }
    if (s->fenced) {
        free(named);
        sup_error_atom(reply, "no_quorum");
        return DSUP_REPLY;
    }
    return sup_start_claimed(s, named, from, reply);
}

/* ---- terminate_child ------------------------------------------------------------ */

static dsup_call_ret terminate_child(dsup_sup *s, dsup_term req, dsup_term pid_t, const dsup_from *from,
                                     ei_x_buff *reply)
{
    dsup_pid pid;
    int i = 0;
    if (dsup_decode_pid(s->node, pid_t.buf, &i, &pid) < 0) {
        sup_error_atom(reply, "not_found");
        return DSUP_REPLY;
    }
    sup_child *c = sup_child_by_pid(s, &pid);
    if (c && c->local) {
        if (c->terminating) {
            sup_error_atom(reply, "not_found");
            return DSUP_REPLY;
        }
        sup_child_stopping(s, c)->from = dsup_from_save(from);
        sup_stop_child(s, c, dsup_reason_atom(s->node, "shutdown"));
        return DSUP_NOREPLY;
    }
    if (pid.node != s->node->name && sup_forward(s, pid.node, req, from, 1) == 0)
        return DSUP_NOREPLY;
    sup_error_atom(reply, "not_found");
    return DSUP_REPLY;
}

/* ---- queries --------------------------------------------------------------------- */

typedef struct enc_ctx {
    ei_x_buff *x;
    int local_only;
    int what;
} enc_ctx;

enum { ENC_CHILDREN, ENC_PIDS, ENC_WHICH };

static void enc_child(sup_child *ch, void *arg)
{
    enc_ctx *c = arg;
    if (c->local_only && !ch->local)
        return;
    switch (c->what) {
    case ENC_CHILDREN:
        dsup_x_encode_term(c->x, sup_child_name(ch));
        ei_x_encode_tuple_header(c->x, 2);
        dsup_x_encode_pid(c->x, &ch->pid);
        if (!sup_spec_full(ch->shared)) {
            dsup_x_encode_atom(c->x, "undefined");
        } else {
            dsup_child_spec cs = sup_child_spec(ch);
            dsup_spec_encode_map(c->x, &cs, 0);
        }
        break;
    case ENC_PIDS:
        dsup_x_encode_pid(c->x, &ch->pid);
        break;
    case ENC_WHICH:
        ei_x_encode_tuple_header(c->x, 4);
        dsup_x_encode_atom(c->x, "undefined");
        dsup_x_encode_pid(c->x, &ch->pid);
        dsup_x_encode_atom(c->x, "worker");
        ei_x_encode_list_header(c->x, 1);
        dsup_x_encode_atom(c->x, ch->shared->type);
        ei_x_encode_empty_list(c->x);
        break;
    }
}

static void encode_children(dsup_sup *s, ei_x_buff *x, int what, int local_only)
{
    size_t n = local_only ? sup_local_count(s) : sup_child_count(s);
    enc_ctx c = { x, local_only, what };
    if (what == ENC_CHILDREN) {
        ei_x_encode_map_header(x, (long)n);
        sup_foreach_child(s, enc_child, &c);
        return;
    }
    if (n)
        ei_x_encode_list_header(x, (long)n);
    sup_foreach_child(s, enc_child, &c);
    ei_x_encode_empty_list(x);
}

static void encode_kv(ei_x_buff *x, const char *k, size_t v)
{
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, k);
    ei_x_encode_ulong(x, v);
}

dsup_call_ret sup_handle_call(dsup_proc *self, void *state, dsup_term req, const dsup_from *from,
                              ei_x_buff *reply)
{
    dsup_sup *s = state;
    dsup_term el[4];
    int ar;
    if (s->stopping) {
        sup_error_atom(reply, "shutting_down");
        return DSUP_REPLY;
    }
    if (dsup_term_tagged(req, "start_child", &ar, el, 4) && (ar == 3 || ar == 2))
        return start_child(s, el[1], ar == 3 ? el[2] : dsup_reason_atom(s->node, "undefined"), from, reply);
    if (dsup_term_tagged(req, "start_child_here", &ar, el, 4) && ar == 3)
        return start_child_here(s, el[1], el[2], from, reply);
    if (dsup_term_tagged(req, "start_children_here", &ar, el, 4) && ar == 2)
        return sup_start_children_here(s, el[1], from, reply);
    if (dsup_term_tagged(req, "start_children", &ar, el, 4) && ar == 2)
        return sup_start_children(s, el[1], from, reply);
    if (dsup_term_tagged(req, "terminate_child", &ar, el, 4) && ar == 2)
        return terminate_child(s, req, el[1], from, reply);
    dsup_call_ret moved;
    if (sup_handoff_call(s, req, from, reply, &moved))
        return moved;
    if (sup_replica_call(s, req, reply))
        return DSUP_REPLY;
    if (dsup_term_is_atom(req, "children")) {
        encode_children(s, reply, ENC_CHILDREN, 0);
    } else if (dsup_term_is_atom(req, "local_children")) {
        encode_children(s, reply, ENC_PIDS, 1);
    } else if (dsup_term_is_atom(req, "which_children")) {
        encode_children(s, reply, ENC_WHICH, 0);
    } else if (dsup_term_is_atom(req, "count_children")) {
        size_t n = sup_child_count(s);
        ei_x_encode_list_header(reply, 4);
        encode_kv(reply, "specs", n + sup_pending_child_count(s)); /* pending: specs, not active */
        encode_kv(reply, "active", n);
        encode_kv(reply, "supervisors", 0);
        encode_kv(reply, "workers", n);
        ei_x_encode_empty_list(reply);
    } else if (dsup_term_tagged(req, "whereis", &ar, el, 4) && ar == 2) {
        const dsup_pid *pids;
        if (dsup_pg_members(s->scope, el[1], &pids) > 0)
            dsup_x_encode_pid(reply, &pids[0]);
        else
            dsup_x_encode_atom(reply, "undefined");
    } else if (dsup_term_tagged(req, "whois", &ar, el, 4) && ar == 2) {
        dsup_pid pid;
        int i = 0;
        sup_child *c = dsup_decode_pid(s->node, el[1].buf, &i, &pid) == 0 ? sup_child_by_pid(s, &pid) : NULL;
        if (c)
            dsup_x_encode_term(reply, sup_child_name(c));
        else
            dsup_x_encode_atom(reply, "nil");
    } else if (dsup_term_is_atom(req, "status")) {
        sup_encode_status(s, reply); /* sup_status.c */
    } else if (dsup_term_is_atom(req, "nodes")) {
        size_t n = dsup_ring_node_count(s->ring);
        if (n)
            ei_x_encode_list_header(reply, (long)n);
        for (size_t i = 0; i < n; i++)
            dsup_x_encode_atom(reply, dsup_ring_node_at(s->ring, i));
        ei_x_encode_empty_list(reply);
    } else if (dsup_term_is_atom(req, "pending_children")) {
        sup_pending_child_encode(s, reply);
    } else if (dsup_term_tagged(req, "node_for", &ar, el, 4) && ar == 3) {
        const char *type, *node = NULL;
        char tbuf[256]; /* the type's text, not interned: a caller's atom */
        size_t tl;
        int i = 0;
        if (dsup_term_atom_text(el[2].buf, &i, &type, &tl) == 0 && tl < sizeof tbuf) {
            memcpy(tbuf, type, tl);
            tbuf[tl] = 0;
            node = sup_place_owner_for_type(s, tbuf, el[1]);
        }
        dsup_x_encode_atom(reply, node ? node : "undefined");
    } else if (dsup_term_tagged(req, "node_for", &ar, el, 4) && ar == 2) {
        const char *node = dsup_ring_node_for(s->ring, el[1].buf, el[1].len);
        dsup_x_encode_atom(reply, node ? node : "undefined");
    } else {
        sup_error_pair(reply, "unknown_call", req);
    }
    return DSUP_REPLY;
}
