/* node_ctrl.c — the node's own services:
 *  - `dsup_node`, a registered C process: {spawn, Type, Args}, which_workers;
 *  - the names the BEAM expects on every node: net_kernel (is_auth, so that
 *    net_adm:ping answers pong), rex (features_request, and rpc calls, of
 *    which erlang:nodes/0,1 is answered and the rest refused cleanly),
 *    global_name_server (its init_connect is ignored, never crashed on);
 *  - transitive connections: on each new connection, and every 10 s, ask
 *    peers for their connected nodes and connect to those we lack. */
#include "node_ctrl.h"

#include <stdio.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "gen_server.h"
#include "intern.h"
#include "log.h"
#include "metrics.h"
#include "node.h"
#include "node_hooks.h"
#include "peer_rel.h"
#include "proc.h"
#include "term.h"
#include "xalloc.h"

#define NODES_QUERY_MS 10000

/* One node's (node->ctrl). */
struct dsup_node_ctrl {
    dsup_proc *proc;              /* the dsup_node process, once started */
    uv_timer_t query_timer;
    int timer_on;
    const char *n_net_kernel, *n_rex, *n_global;
};

/* ---- the dsup_node process ------------------------------------------------ */

static dsup_call_ret ctrl_call(dsup_proc *self, void *state, dsup_term req, const dsup_from *from,
                               ei_x_buff *reply)
{
    dsup_term el[4];
    int ar;
    if (dsup_term_tagged(req, "spawn", &ar, el, 4) && ar == 3) {
        char type[MAXATOMLEN_UTF8];
        int i = 0;
        if (ei_decode_atom(el[1].buf, &i, type) < 0) {
            ei_x_encode_tuple_header(reply, 2);
            dsup_x_encode_atom(reply, "error");
            ei_x_encode_tuple_header(reply, 2);
            dsup_x_encode_atom(reply, "bad_type");
            dsup_x_encode_term(reply, el[1]);
            return DSUP_REPLY;
        }
        ei_x_buff *why = dsup_term_scratch(self->node);
        dsup_pid pid;
        if (dsup_spawn(self->node, type, &el[2], NULL, &pid, why) == 0) {
            ei_x_encode_tuple_header(reply, 2);
            dsup_x_encode_atom(reply, "ok");
            dsup_x_encode_pid(reply, &pid);
        } else {
            ei_x_encode_tuple_header(reply, 2);
            dsup_x_encode_atom(reply, "error");
            ei_x_append_buf(reply, why->buff, why->index);
        }
        dsup_term_scratch_release(why);
        return DSUP_REPLY;
    }
    /* pg_*, start_supervisor, ...: the services' own calls (node_hooks.h) */
    if (dsup_node_calls_run(self->node, req, reply))
        return DSUP_REPLY;
    if (dsup_term_is_atom(req, "which_workers")) {
        dsup_which_workers(self->node, reply);
        return DSUP_REPLY;
    }
    if (dsup_term_is_atom(req, "memory")) {
        /* [{allocated, Bytes}, {processes, N}, {names, N}]: malloc's bytes
         * in use, heap and mmapped chunks (mallinfo2), for measuring the cost
         * of a child more finely than RSS can; entries of the name table
         * (what a name flood would grow). */
        struct mallinfo2 mi = mallinfo2();
        dsup_intern_stats st;
        dsup_intern_get_stats(self->node->names, &st);
        ei_x_encode_list_header(reply, 3);
        ei_x_encode_tuple_header(reply, 2);
        dsup_x_encode_atom(reply, "allocated");
        /* chunks malloc mmapped count too: where a large buffer lands (heap
         * or its own mapping) depends on the heap's layout, not on its use */
        ei_x_encode_ulong(reply, (unsigned long)(mi.uordblks + mi.hblkhd));
        ei_x_encode_tuple_header(reply, 2);
        dsup_x_encode_atom(reply, "processes");
        ei_x_encode_ulong(reply, dsup_proc_count(self->node));
        ei_x_encode_tuple_header(reply, 2);
        dsup_x_encode_atom(reply, "names");
        ei_x_encode_ulong(reply, st.entries);
        ei_x_encode_empty_list(reply);
        return DSUP_REPLY;
    }
    if (dsup_term_is_atom(req, "node_info")) {
        /* [{name, N}, {visible, B}, {processes, Count}] (README: Wire API) */
        ei_x_encode_list_header(reply, 3);
        ei_x_encode_tuple_header(reply, 2);
        dsup_x_encode_atom(reply, "name");
        dsup_x_encode_atom(reply, self->node->name);
        ei_x_encode_tuple_header(reply, 2);
        dsup_x_encode_atom(reply, "visible");
        ei_x_encode_boolean(reply, self->node->visible);
        ei_x_encode_tuple_header(reply, 2);
        dsup_x_encode_atom(reply, "processes");
        ei_x_encode_ulong(reply, dsup_proc_count(self->node));
        ei_x_encode_empty_list(reply);
        return DSUP_REPLY;
    }
    ei_x_encode_tuple_header(reply, 2);
    dsup_x_encode_atom(reply, "error");
    ei_x_encode_tuple_header(reply, 2);
    dsup_x_encode_atom(reply, "unknown_call");
    dsup_x_encode_term(reply, req);
    return DSUP_REPLY;
}

static void connect_to_listed(dsup_node *dn, dsup_term nodes)
{
    int i = 0, n, type, size;
    if (ei_get_type(nodes.buf, &i, &type, &size) < 0 || type != ERL_LIST_EXT)
        return;
    if (ei_decode_list_header(nodes.buf, &i, &n) < 0)
        return;
    for (int k = 0; k < n; k++) {
        const char *name;
        size_t len;
        if (dsup_term_atom_text(nodes.buf, &i, &name, &len) < 0)
            return;
        const char *node = dsup_intern_peer(dn->names, name, len); /* the connection holds it */
        if (node && node != dn->name && !dsup_node_conn(dn, node, 0)) {
            LOG_DEBUG("connecting to %s, a peer's peer", node);
            dsup_node_conn(dn, node, 1);
        }
    }
}

/* A BEAM peer's OTP release decides how atom child names hash on the ring
 * (term_to_binary of atoms changed in OTP 26), unless --ring-atoms said. */
static void learn_release(dsup_node *node, const char *peer, dsup_term release)
{
    char rel[16];
    int i = 0, type, size;
    /* "25" (a short string); anything else, e.g. {badrpc, _} from another
     * C-node, is ignored. Check the size before ei copies it. */
    if (ei_get_type(release.buf, &i, &type, &size) < 0 || type != ERL_STRING_EXT || size <= 0 ||
        size >= (int)sizeof rel || ei_decode_string(release.buf, &i, rel) < 0)
        return;
    int otp = atoi(rel);
    if (otp <= 0)
        return;
    if (peer)
        dsup_metrics_peer(node, peer)->otp_release = otp;
    dsup_node_hooks_run(node, DSUP_NODE_PEER_RELEASE, peer, otp);
}

/* Answers to our rex calls: {dsup_nodes, [Node]} and
 * {{dsup_otp_release, Peer}, "25"} (the tag names the peer: its release is
 * shown per peer on the status page). */
static void ctrl_info(dsup_proc *self, void *state, dsup_term msg)
{
    if (dsup_peer_rel_answer(self->node, msg))
        return;
    dsup_term el[2], tag[2];
    if (dsup_term_tuple(msg, el, 2) != 2)
        return;
    if (dsup_term_is_atom(el[0], "dsup_nodes")) {
        connect_to_listed(self->node, el[1]);
    } else if (dsup_term_tuple(el[0], tag, 2) == 2 && dsup_term_is_atom(tag[0], "dsup_otp_release")) {
        char peer[MAXATOMLEN_UTF8];
        int i = 0;
        learn_release(self->node,
                      ei_decode_atom(tag[1].buf, &i, peer) == 0 ? dsup_intern_find(self->node->names, peer, strlen(peer))
                                                                : NULL,
                      el[1]);
    }
}

/* Every dsup_node call is timed for the call-latency histogram (metrics.c). */
static dsup_call_ret ctrl_call_timed(dsup_proc *self, void *state, dsup_term req, const dsup_from *from,
                                     ei_x_buff *reply)
{
    uint64_t t0 = uv_hrtime();
    dsup_call_ret r = ctrl_call(self, state, req, from, reply);
    dsup_metrics_node_call(self->node, t0);
    return r;
}

static const dsup_worker_type ctrl_type = {
    .name = "dsup_node",
    .handle_call = ctrl_call_timed,
    .handle_info = ctrl_info,
};

/* ---- transitive connections ------------------------------------------------- */

/* gen_server:call({rex, Peer}, {call, erlang, F, [Arg], GL}) with a plain
 * atom tag, answered as {Tag, Result} to dsup_node. */
/* with_peer: the reply's tag is {tag, peer}, to tell whose answer it is. */
static void rex_call(dsup_node *node, const char *peer, const char *tag, int with_peer, const char *fun,
                     const char *arg)
{
    dsup_proc *ctrl = node->ctrl->proc;
    if (!ctrl)
        return;
    ei_x_buff *x = dsup_term_scratch(node);
    ei_x_encode_tuple_header(x, 3);
    dsup_x_encode_atom(x, "$gen_call");
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_pid(x, dsup_self(ctrl));
    if (with_peer)
        ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, tag);
    if (with_peer)
        dsup_x_encode_atom(x, peer);
    ei_x_encode_tuple_header(x, 5);
    dsup_x_encode_atom(x, "call");
    dsup_x_encode_atom(x, "erlang");
    dsup_x_encode_atom(x, fun);
    ei_x_encode_list_header(x, 1);
    dsup_x_encode_atom(x, arg);
    ei_x_encode_empty_list(x);
    dsup_x_encode_pid(x, dsup_self(ctrl));
    dsup_send_named(ctrl, "rex", peer, x);
    dsup_term_scratch_release(x);
}

static void ask_nodes(dsup_node *node, const char *peer)
{
    rex_call(node, peer, "dsup_nodes", 0, "nodes", "connected");
}

static void on_query_timer(uv_timer_t *t)
{
    dsup_node *node = t->data;
    for (size_t i = 0; i < node->nconns; i++)
        if (node->conns[i]->state == CONN_UP)
            ask_nodes(node, node->conns[i]->peer);
}

void dsup_node_ctrl_conn_up(dsup_node *node, const char *peer)
{
    ask_nodes(node, peer);
    rex_call(node, peer, "dsup_otp_release", 1, "system_info", "otp_release");
    dsup_peer_rel_ask(node->ctrl->proc, peer);
    dsup_node_hooks_run(node, DSUP_NODE_CONN_UP, peer, 0);
}

void dsup_node_ctrl_conn_down(dsup_node *node, const char *peer)
{
    dsup_node_hooks_run(node, DSUP_NODE_CONN_DOWN, peer, 0);
}

/* ---- names the BEAM expects ------------------------------------------------------ */

static void reply_to(dsup_node *node, const dsup_pid *to, dsup_term tag, void (*enc)(ei_x_buff *x, void *arg),
                     void *arg)
{
    ei_x_buff *x = dsup_term_scratch(node);
    ei_x_encode_tuple_header(x, 2);
    ei_x_append_buf(x, tag.buf, (int)tag.len);
    enc(x, arg);
    dsup_proc_send(node, NULL, to, (dsup_term){ x->buff, (size_t)x->index });
    dsup_term_scratch_release(x);
}

static void enc_yes(ei_x_buff *x, void *arg) { dsup_x_encode_atom(x, "yes"); }

static void enc_nodes(ei_x_buff *x, void *arg)
{
    dsup_node *node = arg;
    size_t n = 0;
    for (size_t i = 0; i < node->nconns; i++)
        if (node->conns[i]->state == CONN_UP)
            n++;
    if (n)
        ei_x_encode_list_header(x, (long)n);
    for (size_t i = 0; i < node->nconns; i++)
        if (node->conns[i]->state == CONN_UP)
            dsup_x_encode_atom(x, node->conns[i]->peer);
    ei_x_encode_empty_list(x);
}

static void enc_badrpc(ei_x_buff *x, void *arg)
{
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "badrpc");
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "dsup_node");
    dsup_x_encode_atom(x, "rpc_not_supported_on_c_node");
}

static int gen_call_parts(dsup_node *node, dsup_term msg, dsup_pid *from, dsup_term *tag, dsup_term *req)
{
    dsup_term el[3], fr[2];
    int ar, i = 0;
    if (!dsup_term_tagged(msg, "$gen_call", &ar, el, 3) || ar != 3)
        return -1;
    if (dsup_term_tuple(el[1], fr, 2) != 2 || dsup_decode_pid(node, fr[0].buf, &i, from) < 0)
        return -1;
    *tag = fr[1];
    *req = el[2];
    return 0;
}

void dsup_node_ctrl_init(dsup_node *node)
{
    struct dsup_node_ctrl *C = node->ctrl = dsup_xcalloc(1, sizeof *C);
    /* Pinned before any peer can name them: a lookup of a name never
     * inserts (intern.h), so these must exist for REG_SEND to find them. */
    C->n_net_kernel = dsup_intern_str(node->names, "net_kernel");
    C->n_rex = dsup_intern_str(node->names, "rex");
    C->n_global = dsup_intern_str(node->names, "global_name_server");
}

void dsup_node_ctrl_free(dsup_node *node)
{
    free(node->ctrl);
    node->ctrl = NULL;
}

int dsup_node_ctrl_is_special(const dsup_node *node, const char *name)
{
    const struct dsup_node_ctrl *C = node->ctrl;
    return name && (name == C->n_net_kernel || name == C->n_rex || name == C->n_global);
}

int dsup_node_ctrl_is_special_text(const char *name)
{
    return strcmp(name, "net_kernel") == 0 || strcmp(name, "rex") == 0 || strcmp(name, "global_name_server") == 0 ||
           strcmp(name, "dsup_node") == 0;
}

int dsup_node_ctrl_special(dsup_node *node, const char *name, const dsup_pid *sender, dsup_term msg)
{
    if (!dsup_node_ctrl_is_special(node, name))
        return 0;
    struct dsup_node_ctrl *C = node->ctrl;
    dsup_proc *ctrl = C->proc;
    dsup_pid from;
    dsup_term tag, req, el[6];
    int ar;
    if (name == C->n_net_kernel) {
        if (gen_call_parts(node, msg, &from, &tag, &req) == 0 && dsup_term_tagged(req, "is_auth", &ar, el, 2))
            reply_to(node, &from, tag, enc_yes, NULL);
        return 1;
    }
    if (name == C->n_rex) {
        /* {Pid, features_request} -> {features_reply, Node, []} */
        if (dsup_term_tuple(msg, el, 2) == 2 && dsup_term_is_atom(el[1], "features_request")) {
            int i = 0;
            if (dsup_decode_pid(node, el[0].buf, &i, &from) < 0)
                return 1;
            ei_x_buff *x = dsup_term_scratch(node);
            ei_x_encode_tuple_header(x, 3);
            dsup_x_encode_atom(x, "features_reply");
            dsup_x_encode_atom(x, node->name);
            ei_x_encode_empty_list(x);
            dsup_proc_send(node, NULL, &from, (dsup_term){ x->buff, (size_t)x->index });
            dsup_term_scratch_release(x);
            return 1;
        }
        if (gen_call_parts(node, msg, &from, &tag, &req) == 0) {
            if (dsup_term_tagged(req, "call", &ar, el, 6) && ar == 5 && dsup_term_is_atom(el[1], "erlang") &&
                dsup_term_is_atom(el[2], "nodes"))
                reply_to(node, &from, tag, enc_nodes, node);
            else
                reply_to(node, &from, tag, enc_badrpc, NULL);
        }
        return 1;
    }
    if (name == C->n_global) {
        /* A C-node takes no part in global name registration. To a BEAM's
         * {init_connect, ...} we answer {in_sync, Node, true}: global then
         * counts us as synced, so global:sync() returns, and never adds us
         * to its partition (its names stay off this node). Everything else
         * for global is dropped, as for any unknown name. */
        dsup_term inner;
        if (ctrl && dsup_term_tagged(msg, "$gen_cast", &ar, el, 2) && ar == 2 &&
            (inner = el[1], dsup_term_tagged(inner, "init_connect", &ar, el, 5)) && ar == 4) {
            ei_x_buff *x = dsup_term_scratch(node);
            ei_x_encode_tuple_header(x, 2);
            dsup_x_encode_atom(x, "$gen_cast");
            ei_x_encode_tuple_header(x, 3);
            dsup_x_encode_atom(x, "in_sync");
            dsup_x_encode_atom(x, node->name);
            dsup_x_encode_atom(x, "true");
            dsup_send_named(ctrl, "global_name_server", sender->node, x);
            dsup_term_scratch_release(x);
        }
        return 1;
    }
    return 0;
}

/* ---- lifecycle --------------------------------------------------------------------- */

void dsup_node_ctrl_ready(dsup_node *node)
{
    struct dsup_node_ctrl *C = node->ctrl;
    dsup_register_internal_type(&ctrl_type);
    if (dsup_spawn_proc(node, "dsup_node", NULL, NULL, &C->proc, NULL) < 0 ||
        dsup_proc_register(C->proc, "dsup_node") < 0) {
        LOG_ERROR("cannot start the dsup_node process");
        dsup_shutdown(node);
        return;
    }
    uv_timer_init(node->loop, &C->query_timer);
    C->query_timer.data = node;
    C->timer_on = 1;
    uv_timer_start(&C->query_timer, on_query_timer, NODES_QUERY_MS, NODES_QUERY_MS);
    for (int i = 0; i < node->nconnect; i++)
        if (dsup_node_add_connect_target(node, node->connect[i]) < 0)
            LOG_WARN("--connect %s: not a node name", node->connect[i]);
    /* What the command line asked for (--scope, --supervisor) starts now;
     * a failure stops the node before it says it is ready. */
    dsup_node_hooks_run(node, DSUP_NODE_READY, NULL, 0);
    if (node->stopping)
        return;
    node->up = 1;
    LOG_INFO("node %s up (%s, port %d, creation %u)", node->name, node->visible ? "visible" : "hidden",
             node->port, node->creation);
    if (node->announce_ready) {
        printf("dsup-node ready %s\n", node->name);
        fflush(stdout);
    }
}

void dsup_node_ctrl_stopping(dsup_node *node)
{
    struct dsup_node_ctrl *C = node->ctrl;
    if (C->timer_on && !uv_is_closing((uv_handle_t *)&C->query_timer))
        uv_close((uv_handle_t *)&C->query_timer, NULL);
    C->proc = NULL;
    dsup_peer_rel_stop(node);
}
