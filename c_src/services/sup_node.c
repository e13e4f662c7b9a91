/* sup_node.c — how the supervisor service plugs into the node: the
 * `start_supervisor` call of dsup_node, and the node events it needs
 * (connections, peers' releases, the graceful stop), registered as hooks
 * (node_hooks.h) so that the runtime never calls the service by name. */
#include "node_ctrl.h"
#include "node_hooks.h"
#include "sup.h"
#include "term.h"
#include "xalloc.h"
#include <stdlib.h>

int dsup_sup_reserved_name(const char *name)
{
    /* An instance registered as a built-in name would never get its messages. */
    return dsup_node_ctrl_is_special_text(name);
}

static void encode_error2(ei_x_buff *reply, const char *tag, dsup_term detail_or_null, const char *atom)
{
    ei_x_encode_tuple_header(reply, 2);
    dsup_x_encode_atom(reply, "error");
    ei_x_encode_tuple_header(reply, 2);
    dsup_x_encode_atom(reply, tag);
    if (atom)
        dsup_x_encode_atom(reply, atom);
    else
        dsup_x_encode_term(reply, detail_or_null);
}

/* {start_supervisor, Name, Opts} -> {ok, Pid} | {error, Reason} */
static int start_supervisor_call(dsup_node *node, dsup_term req, ei_x_buff *reply)
{
    dsup_term el[4];
    int ar;
    if (!dsup_term_tagged(req, "start_supervisor", &ar, el, 4) || ar != 3)
        return 0;
    char name[MAXATOMLEN_UTF8];
    int i = 0;
    dsup_sup *s;
    if (ei_decode_atom(el[1].buf, &i, name) < 0) {
        encode_error2(reply, "bad_option", (dsup_term){ 0 }, "name");
        return 1;
    }
    if (dsup_sup_reserved_name(name)) {
        encode_error2(reply, "reserved_name", el[1], NULL);
        return 1;
    }
    ei_x_buff *why = dsup_term_scratch(node);
    if (dsup_sup_start(node, name, &el[2], &s, why) == 0) {
        ei_x_encode_tuple_header(reply, 2);
        dsup_x_encode_atom(reply, "ok");
        dsup_x_encode_pid(reply, dsup_self(s->proc));
    } else {
        ei_x_encode_tuple_header(reply, 2);
        dsup_x_encode_atom(reply, "error");
        ei_x_append_buf(reply, why->buff, why->index);
    }
    dsup_term_scratch_release(why);
    return 1;
}

static void service_free(dsup_node *node)
{
    sup_free_all(node);
    sup_report_free(node);
    sup_heal_free(node);
    sup_place_free(node);
    free(node->sup);
    node->sup = NULL;
}

static void on_node_event(dsup_node *node, void *arg, dsup_node_event ev, const char *peer, int value)
{
    switch (ev) {
    case DSUP_NODE_CONN_UP:
        dsup_sup_conn_event(node, peer, 1);
        break;
    case DSUP_NODE_CONN_DOWN:
        dsup_sup_conn_event(node, peer, 0);
        break;
    case DSUP_NODE_PEER_RELEASE:
        dsup_sup_peer_release(node, value);
        break;
    case DSUP_NODE_STOPPING:
        /* children handed over, the ring left first; a move barrier holds
         * the node's stop until the peers saw the old copies leave */
        if (dsup_sup_shutdown_all(node, dsup_node_stop_release) > 0)
            dsup_node_stop_hold(node);
        sup_report_stop(node);
        sup_heal_stop(node);
        break;
    case DSUP_NODE_CLOSE:
        service_free(node);
        break;
    default:
        break;
    }
}

int dsup_sup_service_init(dsup_node *node)
{
    struct dsup_sup_service *S = node->sup = dsup_xcalloc(1, sizeof *S);
    /* The command line's choices (process-wide options), then per node. */
    S->ring_enc = dsup_ring_default_atom_encoding;
    S->ring_explicit = dsup_ring_atoms_explicit;
    return dsup_node_call_add(node, start_supervisor_call) < 0 || dsup_node_hook_add(node, on_node_event, NULL) < 0
               ? -1
               : 0;
}
