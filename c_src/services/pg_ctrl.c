/* pg_ctrl.c — pg over gen_server:call({dsup_node, Node}, ...), for tests
 * and tools:
 *   {pg_join, Scope, Group, Pid | [Pid]}  -> ok | {error, Reason}
 *   {pg_leave, Scope, Group, Pid | [Pid]} -> ok | not_joined | {error, Reason}
 *   {pg_members, Scope, Group}            -> [Pid]
 *   {pg_local_members, Scope, Group}      -> [Pid]
 *   {pg_which_groups, Scope}              -> [Group]
 *   {pg_info, Scope}                      -> #{groups, entries, held} | undefined
 *     (groups: those with members; entries: all the scope keeps, held ones
 *     too: groups with data attached, dsup_pg_attach)
 *   {pg_start_scope, Scope}               -> ok | {error, Reason} */
#include <stdlib.h>

#include "node_hooks.h"
#include "xalloc.h"
#include "pg.h"
#include "term.h"

static void error2(ei_x_buff *x, const char *what, dsup_term detail)
{
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "error");
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, what);
    dsup_x_encode_term(x, detail);
}

static dsup_pg *scope_of(dsup_node *node, dsup_term t, int create)
{
    char name[MAXATOMLEN_UTF8];
    int i = 0;
    if (ei_decode_atom(t.buf, &i, name) < 0)
        return NULL;
    return create ? dsup_pg_scope(node, name) : dsup_pg_find(node, name);
}

static int pids_of(dsup_node *node, dsup_term t, dsup_pid **out, size_t *n)
{
    int i = 0, type, size, arity;
    *out = NULL;
    *n = 0;
    if (ei_get_type(t.buf, &i, &type, &size) < 0)
        return -1;
    if (type == ERL_NIL_EXT)
        return 0;
    if (type != ERL_LIST_EXT) {
        *out = dsup_xmalloc(sizeof **out);
        *n = 1;
        return dsup_decode_pid(node, t.buf, &i, *out);
    }
    /* The arity is the peer's: each element takes at least a byte. */
    if (ei_decode_list_header(t.buf, &i, &arity) < 0 || arity < 0 || (size_t)arity > t.len - (size_t)i)
        return -1;
    *out = dsup_xmalloc((size_t)arity * sizeof **out);
    for (int k = 0; k < arity; k++)
        if (dsup_decode_pid(node, t.buf, &i, &(*out)[k]) < 0)
            return -1;
    *n = (size_t)arity;
    return 0;
}

static void encode_pid_list(ei_x_buff *x, const dsup_pid *pids, size_t n)
{
    if (n)
        ei_x_encode_list_header(x, (long)n);
    for (size_t i = 0; i < n; i++)
        dsup_x_encode_pid(x, &pids[i]);
    ei_x_encode_empty_list(x);
}

static void add_group(void *arg, dsup_term group, size_t members) { dsup_x_encode_term(arg, group); }

int dsup_pg_ctrl_call(dsup_node *node, dsup_term req, ei_x_buff *reply)
{
    dsup_term el[4];
    int ar;
    if ((dsup_term_tagged(req, "pg_join", &ar, el, 4) || dsup_term_tagged(req, "pg_leave", &ar, el, 4)) &&
        ar == 4) {
        int join = dsup_term_is_atom(el[0], "pg_join");
        dsup_pg *s = scope_of(node, el[1], join);
        dsup_pid *pids = NULL;
        size_t n;
        if (!s) {
            error2(reply, "no_scope", el[1]);
        } else if (pids_of(node, el[3], &pids, &n) < 0) {
            error2(reply, "badarg", el[3]);
        } else {
            int rc = join ? dsup_pg_join(s, el[2], pids, n) : dsup_pg_leave(s, el[2], pids, n);
            if (rc == 0)
                dsup_x_encode_atom(reply, "ok");
            else if (rc == DSUP_PG_NOT_JOINED)
                dsup_x_encode_atom(reply, "not_joined");
            else
                error2(reply, "nolocal", el[3]);
        }
        free(pids);
        return 1;
    }
    if ((dsup_term_tagged(req, "pg_members", &ar, el, 4) || dsup_term_tagged(req, "pg_local_members", &ar, el, 4)) &&
        ar == 3) {
        dsup_pg *s = scope_of(node, el[1], 0);
        if (dsup_term_is_atom(el[0], "pg_members")) {
            const dsup_pid *pids;
            size_t n = dsup_pg_members(s, el[2], &pids);
            encode_pid_list(reply, pids, n);
        } else {
            size_t n = dsup_pg_local_members(s, el[2], NULL, 0);
            dsup_pid *pids = dsup_xmalloc((n ? n : 1) * sizeof *pids);
            n = dsup_pg_local_members(s, el[2], pids, n);
            encode_pid_list(reply, pids, n);
            free(pids);
        }
        return 1;
    }
    if (dsup_term_tagged(req, "pg_which_groups", &ar, el, 2) && ar == 2) {
        dsup_pg *s = scope_of(node, el[1], 0);
        size_t n = dsup_pg_which_groups(s, NULL, NULL);
        if (n) {
            ei_x_encode_list_header(reply, (long)n);
            dsup_pg_which_groups(s, add_group, reply);
        }
        ei_x_encode_empty_list(reply);
        return 1;
    }
    if (dsup_term_tagged(req, "pg_info", &ar, el, 2) && ar == 2) {
        dsup_pg *s = scope_of(node, el[1], 0);
        size_t groups, entries, held;
        if (!s) {
            dsup_x_encode_atom(reply, "undefined");
            return 1;
        }
        dsup_pg_counts(s, &groups, &entries, &held);
        ei_x_encode_map_header(reply, 3);
        dsup_x_encode_atom(reply, "groups");
        ei_x_encode_ulong(reply, groups);
        dsup_x_encode_atom(reply, "entries");
        ei_x_encode_ulong(reply, entries);
        dsup_x_encode_atom(reply, "held");
        ei_x_encode_ulong(reply, held);
        return 1;
    }
    if (dsup_term_tagged(req, "pg_start_scope", &ar, el, 2) && ar == 2) {
        if (scope_of(node, el[1], 1))
            dsup_x_encode_atom(reply, "ok");
        else
            error2(reply, "cannot_start_scope", el[1]);
        return 1;
    }
    return 0;
}

static void on_node_event(dsup_node *node, void *arg, dsup_node_event ev, const char *peer, int value)
{
    if (ev == DSUP_NODE_CONN_UP)
        dsup_pg_conn_up(node, peer); /* discover the peer scopes on that node */
    else if (ev == DSUP_NODE_STOPPING)
        dsup_pg_stop_all(node);
    else if (ev == DSUP_NODE_CLOSE)
        dsup_pg_service_free(node);
}

int dsup_pg_service_init(dsup_node *node)
{
    dsup_pg_service_init_state(node);
    dsup_proc_set_exit_hook(node, dsup_pg_proc_exit);
    return dsup_node_call_add(node, dsup_pg_ctrl_call) < 0 || dsup_node_hook_add(node, on_node_event, NULL) < 0
               ? -1
               : 0;
}
