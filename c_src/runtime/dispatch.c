/* dispatch.c — what an incoming control message does to local processes.
 * Signals to pids or names that do not exist get the BEAM's answers:
 * LINK -> EXIT noproc, MONITOR_P -> MONITOR_P_EXIT noproc, sends dropped.
 *
 * Names a peer sends are looked up, never interned: a name nobody holds
 * cannot be registered. Node names of the pids in a message are charged to
 * the sending peer (intern.h); past its quota the message is dropped.
 *
 * The sender of a link, unlink, monitor, demonitor or exit signal must be a
 * process of the peer that sends it (erts checks the same: a dist entry
 * accepts those signals only from pids of its own node). A peer naming a
 * process of ours or of a third node as the sender is forging signals:
 * its connection is closed. */
#include <string.h>

#include "intern.h"
#include "log.h"
#include "ratelimit.h"
#include "node.h"
#include "node_ctrl.h"
#include "proc.h"
#include "term.h"

static dsup_term slice_term(dsup_slice s) { return (dsup_term){ s.ptr, s.len }; }

static dsup_proc *local_target(dsup_node *node, const dsup_ctrl *k, const char **by_name)
{
    *by_name = NULL;
    if (k->to_is_name) {
        const char *name = dsup_intern_find(node->names, k->to_name.ptr, k->to_name.len);
        *by_name = name;
        return dsup_proc_whereis(node, name);
    }
    dsup_pid to;
    if (dsup_pid_from_wire(node, &k->to, &to) < 0)
        return NULL;
    return dsup_proc_lookup(node, &to);
}

static int decode_ref(dsup_node *node, dsup_slice s, dsup_ref *ref)
{
    int i = 0;
    return dsup_decode_ref(node, s.ptr, &i, ref);
}

static void answer_noproc_link(dsup_node *node, const dsup_ctrl *k, const char *peer)
{
    dsup_ctrl r;
    memset(&r, 0, sizeof r);
    r.op = DSUP_OP_EXIT;
    r.from = k->to;
    r.to = k->from;
    dsup_term reason = dsup_reason_atom(node, "noproc");
    r.reason.ptr = reason.buf;
    r.reason.len = (uint32_t)reason.len;
    dsup_node_send_ctrl(node, peer, &r);
}

static void answer_noproc_monitor(dsup_node *node, const dsup_ctrl *k, const char *peer)
{
    dsup_ctrl r;
    memset(&r, 0, sizeof r);
    r.op = DSUP_OP_MONITOR_P_EXIT;
    if (k->to_is_name) {
        r.from_is_name = 1;
        r.from_name = k->to_name;
    } else {
        r.from = k->to;
    }
    r.to = k->from;
    r.ref = k->ref;
    dsup_term reason = dsup_reason_atom(node, "noproc");
    r.reason.ptr = reason.buf;
    r.reason.len = (uint32_t)reason.len;
    dsup_node_send_ctrl(node, peer, &r);
}

/* 1 when the control message's `from` pid is a process of the sending
 * peer, for the signals whose sender erts checks the same way. */
static int sender_is_peer(const dsup_conn *c, const dsup_ctrl *k)
{
    switch (k->op) {
    case DSUP_OP_LINK:
    case DSUP_OP_UNLINK:
    case DSUP_OP_UNLINK_ID:
    case DSUP_OP_EXIT:
    case DSUP_OP_EXIT_TT:
    case DSUP_OP_EXIT2:
    case DSUP_OP_EXIT2_TT:
    case DSUP_OP_MONITOR_P:
    case DSUP_OP_DEMONITOR_P:
        break;
    default:
        return 1;
    }
    size_t n = strlen(c->peer);
    return k->from.node_len == n && memcmp(k->from.node, c->peer, n) == 0;
}

static void dispatch(dsup_conn *c, const dsup_ctrl *k);

int dsup_node_dispatch(dsup_conn *c, const dsup_ctrl *k)
{
    if (!sender_is_peer(c, k)) {
        unsigned dropped = 0;
        if (dsup_ratelimit_ok(&c->node->forged_log, dsup_node_now(c->node), &dropped))
            LOG_WARN("%s: control message (op %d) names a process of %.*s as its sender; "
                     "closing the connection%s",
                     c->peer, k->op, (int)k->from.node_len, k->from.node,
                     dropped ? " (more not logged)" : "");
        c->error = "forged sender pid";
        return -1;
    }
    dsup_intern_set_peer(c->node->names, c->peer);
    dispatch(c, k);
    dsup_intern_set_peer(c->node->names, NULL);
    return 0;
}

static void dispatch(dsup_conn *c, const dsup_ctrl *k)
{
    dsup_node *node = c->node;
    const char *by_name;
    dsup_proc *p;
    dsup_pid from;
    dsup_ref ref;

    switch (k->op) {
    case DSUP_OP_SEND:
    case DSUP_OP_SEND_TT:
    case DSUP_OP_SEND_SENDER:
    case DSUP_OP_SEND_SENDER_TT:
        p = local_target(node, k, &by_name);
        if (p)
            dsup_proc_deliver(p, slice_term(k->msg));
        return;

    case DSUP_OP_REG_SEND:
    case DSUP_OP_REG_SEND_TT: {
        const char *name = dsup_intern_find(node->names, k->to_name.ptr, k->to_name.len);
        if (!name) {
            LOG_DEBUG("message from %s to unknown name '%.*s' dropped", c->peer, (int)k->to_name.len,
                      k->to_name.ptr);
            return;
        }
        if (dsup_pid_from_wire(node, &k->from, &from) < 0)
            return;
        if (dsup_node_ctrl_special(node, name, &from, slice_term(k->msg)))
            return;
        p = dsup_proc_whereis(node, name);
        if (p)
            dsup_proc_deliver(p, slice_term(k->msg));
        else
            LOG_DEBUG("message from %s to unknown name '%s' dropped", c->peer, name);
        return;
    }

    case DSUP_OP_LINK:
        p = local_target(node, k, &by_name);
        if (dsup_pid_from_wire(node, &k->from, &from) < 0)
            return;
        if (p)
            dsup_proc_sig_link(p, &from);
        else
            answer_noproc_link(node, k, c->peer);
        return;

    case DSUP_OP_UNLINK:
    case DSUP_OP_UNLINK_ID:
        p = local_target(node, k, &by_name);
        if (dsup_pid_from_wire(node, &k->from, &from) < 0)
            return;
        if (p)
            dsup_proc_sig_unlink(p, &from);
        if (k->op == DSUP_OP_UNLINK_ID) {
            /* Acknowledge before any other signal from that pid's target. */
            dsup_ctrl r;
            memset(&r, 0, sizeof r);
            r.op = DSUP_OP_UNLINK_ID_ACK;
            r.id = k->id;
            r.from = k->to;
            r.to = k->from;
            dsup_node_send_ctrl(node, c->peer, &r);
        }
        return;

    case DSUP_OP_UNLINK_ID_ACK:
        return;

    case DSUP_OP_EXIT:
    case DSUP_OP_EXIT_TT:
    case DSUP_OP_EXIT2:
    case DSUP_OP_EXIT2_TT:
        p = local_target(node, k, &by_name);
        if (p && dsup_pid_from_wire(node, &k->from, &from) == 0)
            dsup_proc_sig_exit(p, &from, slice_term(k->reason),
                               k->op == DSUP_OP_EXIT || k->op == DSUP_OP_EXIT_TT);
        return;

    case DSUP_OP_MONITOR_P:
        p = local_target(node, k, &by_name);
        if (dsup_pid_from_wire(node, &k->from, &from) < 0 || decode_ref(node, k->ref, &ref) < 0)
            return;
        if (p)
            dsup_proc_sig_monitor(p, &from, &ref, by_name);
        else if (!dsup_node_ctrl_is_special(node, by_name))
            answer_noproc_monitor(node, k, c->peer);
        return;

    case DSUP_OP_DEMONITOR_P:
        p = local_target(node, k, &by_name);
        if (p && dsup_pid_from_wire(node, &k->from, &from) == 0 && decode_ref(node, k->ref, &ref) == 0)
            dsup_proc_sig_demonitor(p, &from, &ref);
        return;

    case DSUP_OP_MONITOR_P_EXIT: {
        dsup_pid to;
        if (dsup_pid_from_wire(node, &k->to, &to) < 0 || decode_ref(node, k->ref, &ref) < 0)
            return;
        p = dsup_proc_lookup(node, &to);
        if (!p)
            return;
        if (k->from_is_name) {
            /* Our monitor by that name holds it; an unknown name matches none. */
            const char *name = dsup_intern_find(node->names, k->from_name.ptr, k->from_name.len);
            if (name)
                dsup_proc_sig_down(p, &ref, NULL, name, c->peer, slice_term(k->reason));
        } else if (dsup_pid_from_wire(node, &k->from, &from) == 0) {
            dsup_proc_sig_down(p, &ref, &from, NULL, NULL, slice_term(k->reason));
        }
        return;
    }

    default:
        /* NODE_LINK, GROUP_LEADER: nothing to do for a C-node. */
        return;
    }
}
