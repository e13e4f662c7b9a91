/* sup_opts.c — the options of DistributedSupervisor.start_link/1, checked
 * before anything starts: an unknown or ill-typed one is
 * {error, {bad_option, Key}}.
 *   name             atom (must match the instance name when given)
 *   'cache_children?' boolean (default true)
 *   nodes            [atom] (default []: every node running the instance)
 *   monitor_nodes    false | true | cluster (default false)
 *   listeners        Pid | atom | {atom, Node} | a list of them: event sinks
 *                    ({distributed_supervisor, Name, Event} messages)
 *   max_restarts     non-negative integer (default 3)
 *   max_seconds      positive integer (default 5)
 *   rebalance        boolean (default false): a joining host receives, with
 *                    their state, the local children it now owns
 *   rebalance_moves  1..10000 (default 8): such moves in flight at once
 *   replicas         1..16 (default 2): the hosts besides a child's own that
 *                    keep its spec for failover (sup_replica.c)
 *   quorum           false (default) | N (positive integer: the configured
 *                    number of hosts) | true (N = length of `nodes`): a side
 *                    with fewer than N div 2 + 1 hosts stops its children and
 *                    refuses starts (sup_quorum.c) */
#include <stdlib.h>
#include <string.h>

#include "intern.h"
#include "xalloc.h"
#include "node.h"
#include "sup.h"
#include "term.h"

static int bad(ei_x_buff *err, dsup_term key)
{
    if (err) {
        err->index = 0;
        ei_x_encode_tuple_header(err, 2);
        dsup_x_encode_atom(err, "bad_option");
        dsup_x_encode_term(err, key);
    }
    return -1;
}

static const char *atom_text(dsup_sup *s, dsup_term t)
{
    int i = 0;
    const char *a;
    size_t n;
    if (t.len < 2 || dsup_term_atom_text(t.buf, &i, &a, &n) < 0 || (size_t)i != t.len)
        return NULL;
    /* Counted: a peer's start_supervisor chooses these; the instance holds
     * what it keeps (sup_opts_release gives it back). */
    return dsup_intern_peer(s->node->names, a, n);
}

static int get_long(dsup_term t, long *v)
{
    int i = 0;
    return ei_decode_long(t.buf, &i, v) == 0 && (size_t)i == t.len ? 0 : -1;
}

/* Elements of a proper list (or one term when `single_ok`). */
static int list_elems(dsup_term t, dsup_term **out, int *n, int single_ok)
{
    int i = 0, type, size;
    *out = NULL;
    *n = 0;
    if (ei_get_type(t.buf, &i, &type, &size) < 0)
        return -1;
    if (type == ERL_NIL_EXT)
        return 0;
    if (type != ERL_LIST_EXT) {
        if (!single_ok)
            return -1;
        *out = dsup_xmalloc(sizeof **out);
        **out = t;
        *n = 1;
        return 0;
    }
    /* The arity is the peer's: each element takes at least a byte. */
    if (ei_decode_list_header(t.buf, &i, n) < 0 || *n < 0 || (size_t)*n > t.len - (size_t)i)
        return -1;
    *out = dsup_xmalloc((size_t)*n * sizeof **out);
    for (int k = 0; k < *n; k++) {
        int s = i;
        if (dsup_term_next(t.buf, &i) < 0)
            return -1;
        (*out)[k] = (dsup_term){ t.buf + s, (size_t)(i - s) };
    }
    return (size_t)i < t.len && (unsigned char)t.buf[i] == 106 ? 0 : -1;
}

static void release_nodes(dsup_sup *s)
{
    for (int j = 0; s->nodes && j < s->nnodes; j++)
        dsup_intern_release(s->nodes[j]);
    free(s->nodes);
    s->nodes = NULL;
    s->nnodes = 0;
}

static void release_listeners(dsup_sup *s)
{
    for (int j = 0; s->listeners && j < s->nlisteners; j++) {
        sup_listener *l = &s->listeners[j];
        if (l->name) {
            dsup_intern_release(l->name);
            dsup_intern_release(l->node);
        } else {
            dsup_pid_release(&l->pid);
        }
    }
    free(s->listeners);
    s->listeners = NULL;
    s->nlisteners = 0;
}

void sup_opts_release(dsup_sup *s)
{
    release_nodes(s);
    release_listeners(s);
}

static int parse_listener(dsup_sup *s, dsup_term t, sup_listener *l)
{
    memset(l, 0, sizeof *l);
    int i = 0;
    if (dsup_decode_pid(s->node, t.buf, &i, &l->pid) == 0) {
        dsup_pid_hold(&l->pid);
        return 0;
    }
    if ((l->name = atom_text(s, t))) {
        l->node = s->node->name;
        dsup_intern_hold(l->name);
        return 0;
    }
    dsup_term el[2];
    if (dsup_term_tuple(t, el, 2) == 2 && (l->name = atom_text(s, el[0])) && (l->node = atom_text(s, el[1]))) {
        dsup_intern_hold(l->name);
        dsup_intern_hold(l->node);
        return 0;
    }
    l->name = l->node = NULL;
    return -1;
}

int sup_parse_opts(dsup_sup *s, dsup_term opts, ei_x_buff *err)
{
    dsup_term *items;
    int n;
    if (list_elems(opts, &items, &n, 0) < 0) {
        free(items);
        return bad(err, opts);
    }
    int rc = 0;
    for (int k = 0; k < n && rc == 0; k++) {
        dsup_term kv[2];
        if (dsup_term_tuple(items[k], kv, 2) != 2 || !atom_text(s, kv[0])) {
            rc = bad(err, items[k]);
            break;
        }
        dsup_term key = kv[0], v = kv[1];
        long num;
        if (dsup_term_is_atom(key, "name")) {
            if (atom_text(s, v) != s->name)
                rc = bad(err, key);
        } else if (dsup_term_is_atom(key, "cache_children?") || dsup_term_is_atom(key, "cache_children")) {
            if (dsup_term_is_atom(v, "true"))
                s->cache_children = 1;
            else if (dsup_term_is_atom(v, "false"))
                s->cache_children = 0;
            else
                rc = bad(err, key);
        } else if (dsup_term_is_atom(key, "monitor_nodes")) {
            if (dsup_term_is_atom(v, "false"))
                s->monitor_nodes = 0;
            else if (dsup_term_is_atom(v, "true"))
                s->monitor_nodes = 1;
            else if (dsup_term_is_atom(v, "cluster"))
                s->monitor_nodes = 2;
            else
                rc = bad(err, key);
        } else if (dsup_term_is_atom(key, "nodes")) {
            dsup_term *ns;
            int nn;
            if (list_elems(v, &ns, &nn, 0) < 0) {
                rc = bad(err, key);
            } else if (nn > 0) {
                release_nodes(s);
                s->nodes = dsup_xcalloc((size_t)nn, sizeof *s->nodes);
                s->nnodes = nn;
                for (int j = 0; j < nn && rc == 0; j++)
                    if (!s->nodes || !(s->nodes[j] = atom_text(s, ns[j])) || !strchr(s->nodes[j], '@')) {
                        if (s->nodes)
                            s->nodes[j] = NULL; /* not held */
                        rc = bad(err, key);
                    } else {
                        dsup_intern_hold(s->nodes[j]);
                    }
            }
            free(ns);
        } else if (dsup_term_is_atom(key, "listeners")) {
            dsup_term *ls;
            int nl;
            if (list_elems(v, &ls, &nl, 1) < 0) {
                rc = bad(err, key);
            } else {
                release_listeners(s);
                s->listeners = dsup_xcalloc((size_t)(nl ? nl : 1), sizeof *s->listeners);
                s->nlisteners = nl;
                for (int j = 0; j < nl && rc == 0; j++)
                    if (!s->listeners || parse_listener(s, ls[j], &s->listeners[j]) < 0)
                        rc = bad(err, key);
            }
            free(ls);
        } else if (dsup_term_is_atom(key, "max_restarts")) {
            if (get_long(v, &num) < 0 || num < 0 || num > 1000000)
                rc = bad(err, key);
            else
                s->max_restarts = (int)num;
        } else if (dsup_term_is_atom(key, "quorum")) {
            if (dsup_term_is_atom(v, "false"))
                s->quorum = 0;
            else if (dsup_term_is_atom(v, "true"))
                s->quorum = -1; /* from `nodes`, once every option is read */
            else if (get_long(v, &num) < 0 || num <= 0 || num > 100000)
                rc = bad(err, key);
            else
                s->quorum = (int)num / 2 + 1;
        } else if (dsup_term_is_atom(key, "max_seconds")) {
            if (get_long(v, &num) < 0 || num <= 0 || num > 86400 * 365)
                rc = bad(err, key);
            else
                s->max_seconds = (int)num;
        } else if (dsup_term_is_atom(key, "rebalance")) {
            if (dsup_term_is_atom(v, "true"))
                s->rebalance = 1;
            else if (dsup_term_is_atom(v, "false"))
                s->rebalance = 0;
            else
                rc = bad(err, key);
        } else if (dsup_term_is_atom(key, "rebalance_moves")) {
            if (get_long(v, &num) < 0 || num < 1 || num > 10000)
                rc = bad(err, key);
            else
                s->rebalance_moves = (int)num;
        } else if (dsup_term_is_atom(key, "replicas")) {
            if (get_long(v, &num) < 0 || num < 1 || num > SUP_REPLICAS_MAX)
                rc = bad(err, key);
            else
                s->replicas = (int)num;
        } else {
            rc = bad(err, key);
        }
    }
    free(items);
    if (rc == 0 && s->quorum == -1) {
        if (s->nnodes == 0) /* `quorum: true` needs the configured `nodes` */
            return bad(err, dsup_reason_atom(s->node, "quorum"));
        s->quorum = s->nnodes / 2 + 1;
    }
    return rc;
}
