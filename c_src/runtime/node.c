/* node.c — node lifecycle and the connection table: listen, register with
 * epmd, connect on demand (resolve -> epmd PORT_PLEASE2 -> TCP -> handshake),
 * reconnect to --connect nodes with backoff, ticks, setup deadlines, the caps
 * on unauthenticated connections, orderly shutdown. */
#include "node.h"
#include "xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "epmd.h"
#include "intern.h"
#include "log.h"
#include "metrics.h"
#include "node_ctrl.h"
#include "node_hooks.h"
#include "peer_rel.h"
#include "proc.h"
#include "ratelimit.h"
#include "sched.h"
#include "term.h"

const char *dsup_node_name(const dsup_node *node) { return node ? node->name : NULL; }

void dsup_node_make_ref(dsup_node *node, dsup_ref *ref)
{
    /* Three words like a BEAM ref; the counter never repeats within a run. */
    uint32_t *n = node->ref_n;
    if (++n[0] == 0 && ++n[1] == 0)
        ++n[2];
    ref->node = node->name;
    ref->creation = node->creation;
    ref->len = 3;
    ref->n[0] = n[0] & 0x3ffff;
    ref->n[1] = n[1] ^ (n[0] >> 18);
    ref->n[2] = n[2];
    ref->n[3] = ref->n[4] = 0;
}

/* ---- deferred work: local signals and flushes run from an idle handle ------ */

static void on_idle(uv_idle_t *h)
{
    dsup_node *node = h->data;
    dsup_proc_run_queue(node);
    dsup_node_flush_all(node);
    if (!dsup_proc_run_queue(node)) {
        uv_idle_stop(h);
        node->idle_on = 0;
    }
}

void dsup_node_wake(dsup_node *node)
{
    if (!node->idle_on) {
        node->idle_on = 1;
        uv_idle_start(&node->idle, on_idle);
    }
}

/* ---- connection table ---------------------------------------------------- */

static int conns_add(dsup_conn *c)
{
    dsup_node *node = c->node;
    if (node->nconns == node->capconns) {
        size_t nc = node->capconns ? node->capconns * 2 : 16;
        dsup_conn **n = dsup_xrealloc(node->conns, nc * sizeof *n);
        node->conns = n;
        node->capconns = nc;
    }
    node->conns[node->nconns++] = c;
    return 0;
}

void dsup_node_conn_remove(dsup_conn *c)
{
    dsup_node *node = c->node;
    for (size_t i = 0; i < node->nconns; i++) {
        if (node->conns[i] == c) {
            node->conns[i] = node->conns[--node->nconns];
            break;
        }
    }
    dsup_buf_free(&c->rbuf);
    dsup_buf_free(&c->wq);
    dsup_buf_free(&c->wflight);
    /* Whoever set c->peer held it (checked: a handshake that failed early
     * may leave a name that is not in the table). */
    if (c->peer && dsup_intern_find(node->names, c->peer, strlen(c->peer)) == c->peer)
        dsup_intern_release(c->peer);
    free(c);
}

/* By name text, for names not interned (yet): only connections whose peer
 * is known (outbound, or inbound and proven) count. */
static dsup_conn *find_conn_named(dsup_node *node, const char *name, const dsup_conn *except)
{
    dsup_conn *best = NULL;
    for (size_t i = 0; i < node->nconns; i++) {
        dsup_conn *c = node->conns[i];
        if (c == except || !c->peer || c->state == CONN_CLOSING || strcmp(c->peer, name) != 0)
            continue;
        if (c->state == CONN_UP)
            return c;
        best = c;
    }
    return best;
}

static dsup_conn *find_conn(dsup_node *node, const char *peer, const dsup_conn *except)
{
    dsup_conn *best = NULL;
    for (size_t i = 0; i < node->nconns; i++) {
        dsup_conn *c = node->conns[i];
        if (c == except || c->peer != peer || c->state == CONN_CLOSING)
            continue;
        if (c->state == CONN_UP)
            return c;
        best = c;
    }
    return best;
}

void dsup_node_mark_dirty(dsup_conn *c)
{
    if (c->dirty)
        return;
    dsup_node *node = c->node;
    if (node->nflush == node->capflush) {
        size_t nc = node->capflush ? node->capflush * 2 : 16;
        dsup_conn **n = dsup_xrealloc(node->flush, nc * sizeof *n);
        node->flush = n;
        node->capflush = nc;
    }
    c->dirty = 1;
    node->flush[node->nflush++] = c;
    dsup_node_wake(node);
}

void dsup_node_flush_all(dsup_node *node)
{
    for (size_t i = 0; i < node->nflush; i++) {
        dsup_conn *c = node->flush[i];
        c->dirty = 0;
        dsup_conn_flush(c);
    }
    node->nflush = 0;
}

/* ---- outbound connections ------------------------------------------------- */

typedef struct reconnect {
    dsup_node *node;
    const char *peer;
    uv_timer_t timer;
    unsigned backoff_ms;
    char last_error[160];   /* the failure last logged at warning level */
    struct reconnect *next;
} reconnect;

static void set_error(dsup_conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errbuf, sizeof c->errbuf, fmt, ap);
    va_end(ap);
    c->error = c->errbuf;
}

static void connect_failed(dsup_conn *c, const char *why)
{
    c->pending_cb = 0;
    if (c->state == CONN_CLOSING) {
        if (c->freed_when_done)
            dsup_node_conn_remove(c);
        return;
    }
    dsup_conn_close(c, why);
}

static void on_tcp_connected(uv_connect_t *req, int status)
{
    dsup_conn *c = req->data;
    c->pending_cb = 0;
    if (c->state == CONN_CLOSING) {
        if (c->freed_when_done)
            dsup_node_conn_remove(c);
        return;
    }
    if (status < 0) {
        set_error(c, "TCP connect to its distribution port failed: %s", uv_strerror(status));
        dsup_conn_close(c, c->error);
        return;
    }
    dsup_hs_start_outbound(c);
}

static void on_port(void *arg, int status, int port, int version)
{
    dsup_conn *c = arg;
    if (c->state == CONN_CLOSING) {
        connect_failed(c, "closed");
        return;
    }
    if (status == DSUP_EPMD_NOT_REGISTERED || (status == 0 && port <= 0)) {
        connect_failed(c, "the name is not registered with epmd on the peer's host");
        return;
    }
    if (status < 0) {
        set_error(c, "epmd on the peer's host did not answer: %s",
                  status == UV_ETIMEDOUT ? "timed out" : uv_strerror(status));
        connect_failed(c, c->error);
        return;
    }
    if (version < 6) {
        connect_failed(c, "peer only speaks distribution protocol version 5");
        return;
    }
    struct sockaddr_storage a = c->addr;
    if (a.ss_family == AF_INET)
        ((struct sockaddr_in *)&a)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)&a)->sin6_port = htons((uint16_t)port);
    dsup_conn_enter(c, CONN_CONNECTING);
    c->creq.data = c;
    int rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&a, on_tcp_connected);
    if (rc < 0)
        connect_failed(c, uv_strerror(rc));
}

static void ask_epmd(dsup_conn *c)
{
    char alive[256];
    const char *at = strchr(c->peer, '@');
    size_t n = (size_t)(at - c->peer);
    memcpy(alive, c->peer, n);
    alive[n] = 0;
    dsup_node *node = c->node;
    int port = dsup_node_static_port(node, c->peer);
    if (port > 0) { /* told, not asked (dsup_node_set_peer_port) */
        dsup_conn_enter(c, CONN_EPMD);
        on_port(c, 0, port, 6);
        return;
    }
    dsup_conn_enter(c, CONN_EPMD);
    if (dsup_epmd_port_please(c->node->loop, &c->addr, alive, node->setup_ms, on_port, c) < 0)
        connect_failed(c, "could not reach epmd");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    dsup_conn *c = req->data;
    if (status < 0 || !res) {
        if (res)
            uv_freeaddrinfo(res);
        connect_failed(c, "cannot resolve the peer's host");
        return;
    }
    memcpy(&c->addr, res->ai_addr, res->ai_addrlen);
    uv_freeaddrinfo(res);
    if (c->state == CONN_CLOSING) {
        connect_failed(c, "closed");
        return;
    }
    ask_epmd(c);
}

static dsup_conn *start_outbound(dsup_node *node, const char *peer)
{
    const char *at = strchr(peer, '@');
    if (!at || at == peer || !at[1] || at - peer > 255)
        return NULL;
    dsup_conn *c = dsup_conn_new(node);
    if (!c)
        return NULL;
    c->outbound = 1;
    c->setup_deadline_ms = dsup_node_now(node) + node->setup_ms;
    if (conns_add(c) < 0) {
        free(c);
        return NULL;
    }
    c->peer = peer;
    dsup_intern_hold(peer);
    LOG_DEBUG("connecting to %s", peer);
    c->pending_cb = 1;
    const char *host = at + 1;
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    if (uv_ip4_addr(host, 0, &a4) == 0) {
        memcpy(&c->addr, &a4, sizeof a4);
        ask_epmd(c);
    } else if (uv_ip6_addr(host, 0, &a6) == 0) {
        memcpy(&c->addr, &a6, sizeof a6);
        ask_epmd(c);
    } else {
        dsup_conn_enter(c, CONN_RESOLVING);
        c->gai.data = c;
        struct addrinfo hints;
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        if (uv_getaddrinfo(node->loop, &c->gai, on_resolved, host, NULL, &hints) < 0)
            connect_failed(c, "cannot resolve the peer's host");
    }
    return c;
}

dsup_conn *dsup_node_conn(dsup_node *node, const char *peer, int connect)
{
    if (!peer || peer == node->name)
        return NULL;
    dsup_conn *c = find_conn(node, peer, NULL);
    if (c || !connect || node->stopping)
        return c;
    return start_outbound(node, peer);
}

/* After a frame was appended to c->wq from `before`: enforce the output
 * bound, count it, schedule the flush. */
static int frame_queued(dsup_node *node, dsup_conn *c, size_t before)
{
    /* A peer that does not read must not grow the node without bound. One
     * frame alone may exceed the bound (it passed --max-frame on its way). */
    size_t queued = c->wq.len + c->wflight.len;
    if (queued > node->max_out_queue && queued > c->wq.len - before) {
        c->overflow = 1;
        c->wq.len = before;
        dsup_node_mark_dirty(c); /* closed from the flush, outside the sender's call */
        return DSUP_ENOTCONN;
    }
    dsup_metrics_conn(c)->msgs_out++;
    if (c->state == CONN_UP)
        dsup_node_mark_dirty(c);
    return 0;
}

static int queue_ctrl(dsup_node *node, dsup_conn *c, const dsup_ctrl *ctrl)
{
    if (dsup_log_level <= DSUP_LOG_DEBUG && ctrl->msg.ptr) {
        /* Debug builds of our own bugs: never put a malformed term on the wire. */
        size_t pos = 0;
        if (dsup_term_skip(ctrl->msg.ptr, ctrl->msg.len, &pos) < 0 || pos != ctrl->msg.len) {
            LOG_ERROR("BUG: malformed outgoing message (op %d, %u bytes) to %s", ctrl->op, ctrl->msg.len,
                      c->peer);
            return DSUP_EINVAL;
        }
    }
    if (c->overflow)
        return DSUP_ENOTCONN; /* cut at the next flush; drop like a send to a dead node */
    size_t before = c->wq.len;
    if (dsup_ctrl_encode(&c->wq, ctrl) < 0)
        return DSUP_EINVAL;
    return frame_queued(node, c, before);
}

int dsup_node_send_ctrl(dsup_node *node, const char *peer, const dsup_ctrl *ctrl)
{
    dsup_conn *c = dsup_node_conn(node, peer, 1);
    if (!c)
        return DSUP_ENOTCONN; /* like erlang:send to a bad node: dropped */
    return queue_ctrl(node, c, ctrl);
}

int dsup_node_send_to_pid(dsup_node *node, const dsup_pid *to, dsup_term msg)
{
    dsup_conn *c = dsup_node_conn(node, to->node, 1);
    if (!c)
        return DSUP_ENOTCONN;
    /* The message goes last in the frame, without its version byte (as
     * dsup_ctrl_encode puts it): what precedes it depends only on `to`. */
    const char *m = msg.buf;
    size_t ml = msg.len;
    if (m && ml && (uint8_t)m[0] == 131) {
        m++;
        ml--;
    }
    if (c->send_head.len && dsup_pid_eq(&c->send_head.to, to) && ml && !c->overflow &&
        dsup_log_level > DSUP_LOG_DEBUG) {
        size_t hl = c->send_head.len, before = c->wq.len;
        if (hl + ml > UINT32_MAX || dsup_buf_reserve(&c->wq, 4 + hl + ml) < 0)
            return DSUP_EINVAL;
        char *f = c->wq.data + before;
        dsup_set_u32be(f, (uint32_t)(hl + ml));
        memcpy(f + 4, c->send_head.head, hl);
        memcpy(f + 4 + hl, m, ml);
        c->wq.len = before + 4 + hl + ml;
        return frame_queued(node, c, before);
    }
    dsup_ctrl ctrl;
    memset(&ctrl, 0, sizeof ctrl);
    ctrl.op = DSUP_OP_SEND;
    dsup_pid_to_wire(to, &ctrl.to);
    ctrl.msg.ptr = msg.buf;
    ctrl.msg.len = (uint32_t)msg.len;
    size_t before = c->wq.len;
    int rc = queue_ctrl(node, c, &ctrl);
    size_t flen = c->wq.len - before;
    c->send_head.len = 0;
    if (rc == 0 && ml && flen > 4 + ml && flen - 4 - ml <= sizeof c->send_head.head) {
        c->send_head.to = *to;
        c->send_head.len = (uint16_t)(flen - 4 - ml);
        memcpy(c->send_head.head, c->wq.data + before + 4, c->send_head.len);
    }
    return rc;
}

/* ---- inbound connections ----------------------------------------------------- */

static int same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return 0;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    if (a->ss_family == AF_INET6)
        return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                       &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr));
    return 0;
}

static int unauthenticated(const dsup_conn *c)
{
    return !c->outbound && c->state == CONN_HANDSHAKE && !c->peer;
}

/* Make room for one more unauthenticated connection from `c`'s address:
 * past a cap, the oldest such connection (from that address, or from any)
 * is dropped. A slow peer thus loses its slot to new attempts, and a
 * legitimate handshake (milliseconds) gets through a slow-loris. */
static void enforce_handshake_caps(dsup_conn *c)
{
    dsup_node *node = c->node;
    size_t total = 0, same = 0;
    dsup_conn *oldest = NULL, *oldest_same = NULL;
    for (size_t i = 0; i < node->nconns; i++) {
        dsup_conn *o = node->conns[i];
        if (o == c || !unauthenticated(o))
            continue;
        total++;
        if (!oldest || o->setup_deadline_ms < oldest->setup_deadline_ms)
            oldest = o;
        if (same_addr(&o->addr, &c->addr)) {
            same++;
            if (!oldest_same || o->setup_deadline_ms < oldest_same->setup_deadline_ms)
                oldest_same = o;
        }
    }
    dsup_conn *victim = NULL;
    const char *which = NULL;
    if (same >= node->max_handshakes_per_addr) {
        victim = oldest_same;
        which = "--max-handshakes-per-addr";
    } else if (total >= node->max_handshakes) {
        victim = oldest;
        which = "--max-handshakes";
    }
    if (!victim)
        return;
    unsigned dropped;
    if (dsup_ratelimit_ok(&node->refuse_log, dsup_node_now(node), &dropped))
        LOG_WARN("too many unauthenticated connections (%zu in handshake, %zu from %s; %s): "
                 "dropping the oldest, from %s%s", total + 1, same + 1, c->addr_text, which,
                 victim->addr_text, dropped ? " (more drops not logged)" : "");
    dsup_conn_close(victim, "dropped: too many connections in handshake");
}

static void on_accept(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    dsup_node *node = server->data;
    dsup_conn *c = dsup_conn_new(node);
    if (!c)
        return;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) < 0 || conns_add(c) < 0) {
        uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
        return;
    }
    dsup_conn_enter(c, CONN_HANDSHAKE);
    c->hs_step = 0;
    /* Fixed when the connection arrives: bytes trickling in do not move it. */
    c->setup_deadline_ms = dsup_node_now(node) + node->setup_ms;
    int alen = sizeof c->addr;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&c->addr, &alen) == 0) {
        if (c->addr.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&c->addr, c->addr_text, sizeof c->addr_text);
        else
            uv_ip4_name((struct sockaddr_in *)&c->addr, c->addr_text, sizeof c->addr_text);
    }
    enforce_handshake_caps(c);
    if (dsup_conn_start(c) < 0)
        dsup_conn_close(c, "read failed");
}

/* Decide on an inbound send_name claiming `name` (text, not interned):
 * 1 ok, 3 ok_simultaneous, 0 nok (our own attempt wins), 2 alive. Nothing
 * else changes here: the claim is not proven yet (dsup_node_peer_proven). */
int dsup_node_accept_peer(dsup_conn *c, const char *name)
{
    dsup_node *node = c->node;
    if (strcmp(name, node->name) == 0)
        return 0;
    dsup_conn *other = find_conn_named(node, name, c);
    if (!other)
        return 1;
    if (other->state == CONN_UP)
        return 2;
    /* Both sides are connecting: the node with the greater name keeps its
     * own attempt, as net_kernel decides. */
    return strcmp(node->name, name) > 0 ? 0 : 3;
}

int dsup_node_peer_proven(dsup_conn *c)
{
    /* Counted, not pinned: a cookie holder connecting under ever new names
     * must not grow the table for good; the connection holds its name and
     * releases it when it closes. */
    c->peer = dsup_intern_peer(c->node->names, c->hs_name, strlen(c->hs_name));
    if (!c->peer)
        return -1;
    dsup_intern_hold(c->peer);
    dsup_conn *other = find_conn(c->node, c->peer, c);
    if (!other)
        return 0;
    if (other->state == CONN_UP) {
        /* A new incarnation that proved the cookie replaces the old one. */
        dsup_conn_close(other, "replaced by a new (authenticated) connection from the same node");
        return 0;
    }
    /* Simultaneous connect, theirs wins: what we queued for them moves here. */
    dsup_buf t = c->wq;
    c->wq = other->wq;
    other->wq = t;
    other->wq.len = 0;
    dsup_conn_close(other, "simultaneous connect, theirs wins");
    return 0;
}

static reconnect *find_reconnect(dsup_node *node, const char *peer)
{
    for (reconnect *r = node->reconnects; r; r = r->next)
        if (r->peer == peer)
            return r;
    return NULL;
}

void dsup_node_conn_up(dsup_conn *c)
{
    dsup_conn_enter(c, CONN_UP);
    c->was_up = 1;
    c->wrote_since_tick = 0;
    LOG_INFO("connected to %s (%s)", c->peer, c->outbound ? "outbound" : "inbound");
    dsup_metrics_conn_event(c->node, c->peer, "up", c->outbound ? "outbound" : "inbound");
    reconnect *r = find_reconnect(c->node, c->peer);
    if (r) {
        r->backoff_ms = 100;
        r->last_error[0] = 0;
    }
    dsup_node_ctrl_conn_up(c->node, c->peer);
    if (c->wq.len)
        dsup_node_mark_dirty(c);
}

/* An outbound setup failed: say why at warning once per peer and reason
 * (a --connect target retries forever), at debug while it repeats. */
static void dial_failed(dsup_conn *c)
{
    const char *why = c->error ? c->error : "connection setup failed";
    if (strcmp(why, "simultaneous connect, theirs wins") == 0)
        return;
    reconnect *r = find_reconnect(c->node, c->peer);
    if (r) {
        if (strcmp(r->last_error, why) != 0) {
            LOG_WARN("cannot connect to %s: %s (retrying)", c->peer, why);
            snprintf(r->last_error, sizeof r->last_error, "%s", why);
        } else {
            LOG_DEBUG("cannot connect to %s: %s (retrying)", c->peer, why);
        }
        return;
    }
    unsigned dropped;
    if (dsup_ratelimit_ok(&c->node->dial_fail_log, dsup_node_now(c->node), &dropped))
        LOG_WARN("cannot connect to %s: %s%s", c->peer, why,
                 dropped ? " (more failures not logged)" : "");
}

static void on_reconnect_timer(uv_timer_t *t)
{
    reconnect *r = t->data;
    dsup_node_conn(r->node, r->peer, 1);
}

void dsup_node_conn_closed(dsup_conn *c)
{
    dsup_node *node = c->node;
    if (c->dirty) {
        for (size_t i = 0; i < node->nflush; i++)
            if (node->flush[i] == c) {
                node->flush[i] = node->flush[--node->nflush];
                break;
            }
        c->dirty = 0;
    }
    if (!c->peer)
        return;
    if (c->outbound && !c->was_up && !node->stopping)
        dial_failed(c);
    /* Only the loss of the connection that was up means the node is gone. */
    dsup_conn *other = find_conn(node, c->peer, c);
    if (c->was_up && !(other && other->state == CONN_UP)) {
        dsup_proc_node_down(node, c->peer);
        dsup_node_ctrl_conn_down(node, c->peer);
    }
    reconnect *r = find_reconnect(node, c->peer);
    if (r && !node->stopping && !uv_is_active((uv_handle_t *)&r->timer)) {
        uv_timer_start(&r->timer, on_reconnect_timer, r->backoff_ms, 0);
        r->backoff_ms = r->backoff_ms * 2 > 5000 ? 5000 : r->backoff_ms * 2;
    }
}

int dsup_node_add_connect_target(dsup_node *node, const char *peer_name)
{
    const char *peer = dsup_intern_str(node->names, peer_name);
    if (!peer || !strchr(peer, '@'))
        return -1;
    if (find_reconnect(node, peer))
        return 0;
    reconnect *r = dsup_xcalloc(1, sizeof *r);
    r->node = node;
    r->peer = peer;
    r->backoff_ms = 100;
    uv_timer_init(node->loop, &r->timer);
    r->timer.data = r;
    r->next = node->reconnects;
    node->reconnects = r;
    dsup_node_conn(node, peer, 1);
    return 0;
}

/* ---- ticks --------------------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
    dsup_node *node = t->data;
    uint64_t now = dsup_node_now(node);
    for (size_t i = 0; i < node->nconns; i++) {
        dsup_conn *c = node->conns[i];
        if (c->state != CONN_UP)
            continue; /* setup deadlines: on_setup_timer */
        if (now - c->last_rx_ms > node->ticktime_ms / 2) /* silent for two tick periods */
            dsup_metrics_conn(c)->ticks_missed++;
        if (now - c->last_rx_ms > node->ticktime_ms) {
            dsup_conn_close(c, "net_tick_timeout");
            continue;
        }
        if (!c->wrote_since_tick && !c->writing && c->wq.len == 0) {
            dsup_frame_tick(&c->wq);
            dsup_node_mark_dirty(c);
        }
        c->wrote_since_tick = 0;
    }
}

/* ---- setup deadlines ------------------------------------------------------------- */

static const char *setup_phase(const dsup_conn *c)
{
    switch (c->state) {
    case CONN_RESOLVING: return "resolving the host";
    case CONN_EPMD: return "asking epmd for the port";
    case CONN_CONNECTING: return "TCP connect";
    default: return "handshake";
    }
}

/* Like net_setuptime: a setup not done by its deadline is dropped, however
 * its bytes trickle in. */
static void on_setup_timer(uv_timer_t *t)
{
    dsup_node *node = t->data;
    uint64_t now = dsup_node_now(node);
    for (size_t i = node->nconns; i-- > 0;) {
        if (i >= node->nconns)
            continue; /* a close below removed entries */
        dsup_conn *c = node->conns[i];
        if (c->state == CONN_UP || c->state == CONN_CLOSING || now < c->setup_deadline_ms)
            continue;
        if (!c->outbound) {
            unsigned dropped;
            if (dsup_ratelimit_ok(&node->deadline_log, now, &dropped))
                LOG_WARN("handshake from %s not done within --setup-time %.1f s: closed%s",
                         dsup_conn_label(c), node->setup_ms / 1000.0,
                         dropped ? " (more drops not logged)" : "");
        }
        set_error(c, "connection setup timed out after %.1f s (%s)", node->setup_ms / 1000.0,
                  setup_phase(c));
        dsup_conn_close(c, c->error);
    }
}

/* ---- start and stop ------------------------------------------------------------- */

static void on_registered(void *arg, int status, uint32_t creation)
{
    dsup_node *node = arg;
    if (status < 0) {
        node->exit_status = 1;
        dsup_shutdown(node);
        return;
    }
    node->creation = creation;
    dsup_node_ctrl_ready(node);
}

static void on_signal(uv_signal_t *s, int signum)
{
    LOG_INFO("signal %d: shutting down", signum);
    dsup_shutdown(s->data);
}

static void close_handle(uv_handle_t *h)
{
    if (h->loop && !uv_is_closing(h))
        uv_close(h, NULL);
}

static void exit_one(dsup_proc *p, void *arg) { dsup_proc_exit(p, dsup_reason_atom(p->node, "shutdown")); }

static void on_shutdown_written(uv_shutdown_t *req, int status)
{
    dsup_conn *c = req->data;
    free(req);
    dsup_conn_close(c, "node shutting down");
}

static void close_conn_gracefully(dsup_conn *c)
{
    if (c->state != CONN_UP) {
        dsup_conn_close(c, "node shutting down");
        return;
    }
    dsup_conn_flush(c);
    uv_shutdown_t *req = dsup_xmalloc(sizeof *req);
    if (!req || uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown_written) < 0) {
        free(req);
        dsup_conn_close(c, "node shutting down");
        return;
    }
    req->data = c;
}

static void on_stop_deadline(uv_timer_t *t)
{
    dsup_node *node = t->data;
    LOG_WARN("shutdown took too long; closing what is left");
    for (size_t i = node->nconns; i-- > 0;)
        if (i < node->nconns && node->conns[i]->state != CONN_CLOSING)
            dsup_conn_close(node->conns[i], "node shutting down");
    if (node->own_loop)
        uv_stop(node->loop);
}

static void shutdown_rest(dsup_node *node);

void dsup_shutdown(dsup_node *node)
{
    if (!node || node->stopping)
        return;
    node->stopping = 1;
    node->up = 0;
    if (!node->started) { /* never started: nothing runs to stop */
        node->stopped = 1;
        return;
    }
    dsup_node_ctrl_stopping(node);
    /* The layers above stop, newest first: the HTTP endpoints, then the
     * supervisors hand their children over (they leave the ring first). A
     * layer that must wait for its peers (a move barrier, a few seconds at
     * most) holds the stop and releases it from the loop. */
    node->stop_hooks_ran = 1;
    dsup_node_hooks_run(node, DSUP_NODE_STOPPING, NULL, 0);
    if (node->stop_holds == 0)
        shutdown_rest(node);
}

void dsup_node_stop_hold(dsup_node *node) { node->stop_holds++; }

void dsup_node_stop_release(dsup_node *node)
{
    if (node->stop_holds > 0 && --node->stop_holds == 0 && node->stop_hooks_ran)
        shutdown_rest(node);
}

static void shutdown_rest(dsup_node *node)
{
    /* Workers end first, so their EXIT/DOWN signals reach the peers. */
    dsup_proc_foreach(node, exit_one, NULL);
    dsup_proc_run_queue(node);
    for (size_t i = node->nconns; i-- > 0;)
        close_conn_gracefully(node->conns[i]);
    dsup_epmd_unregister(node->epmd);
    dsup_sched_close_all(node);
    for (reconnect *r = node->reconnects; r; r = r->next)
        close_handle((uv_handle_t *)&r->timer);
    close_handle((uv_handle_t *)&node->listener);
    close_handle((uv_handle_t *)&node->tick_timer);
    close_handle((uv_handle_t *)&node->setup_timer);
    close_handle((uv_handle_t *)&node->idle);
    dsup_intern_detach(node->names);
    close_handle((uv_handle_t *)&node->sigint);
    close_handle((uv_handle_t *)&node->sigterm);
    uv_timer_init(node->loop, &node->stop_deadline);
    node->stop_deadline.data = node;
    uv_timer_start(&node->stop_deadline, on_stop_deadline, 3000, 0);
    uv_unref((uv_handle_t *)&node->stop_deadline);
    node->stopped = 1;
}

int dsup_node_is_up(const dsup_node *node) { return node && node->up; }
int dsup_node_port(const dsup_node *node) { return node ? node->port : -1; }
int dsup_node_is_stopped(const dsup_node *node) { return node && node->stopped && node->nconns == 0; }

/* ---- the node as an object ----------------------------------------------------------- */

typedef struct dsup_static_port {
    const char *peer; /* pinned */
    int port;
    struct dsup_static_port *next;
} dsup_static_port;

int dsup_node_static_port(const dsup_node *node, const char *peer)
{
    for (const dsup_static_port *sp = node->static_ports; sp; sp = sp->next)
        if (sp->peer == peer)
            return sp->port;
    return 0;
}

int dsup_node_set_peer_port(dsup_node *node, const char *peer, int port)
{
    const char *at = peer ? strchr(peer, '@') : NULL;
    if (!node || !at || at == peer || !at[1] || at - peer > 255 || port <= 0 || port > 65535)
        return DSUP_EINVAL;
    const char *name = dsup_intern_str(node->names, peer);
    for (dsup_static_port *sp = node->static_ports; sp; sp = sp->next)
        if (sp->peer == name) {
            sp->port = port;
            return 0;
        }
    dsup_static_port *sp = dsup_xcalloc(1, sizeof *sp);
    sp->peer = name;
    sp->port = port;
    sp->next = node->static_ports;
    node->static_ports = sp;
    return 0;
}

dsup_node *dsup_node_alloc(uv_loop_t *loop)
{
    dsup_node *node = dsup_xcalloc(1, sizeof *node);
    node->loop = loop;
    node->ticktime_ms = 60000;
    node->max_frame = 128u << 20;
    node->names = dsup_intern_new(node);
    dsup_terms_init(node);
    dsup_node_hooks_init(node);
    dsup_metrics_init(node);
    dsup_proc_table_init(node);
    dsup_sched_init(node);
    dsup_peer_rel_init(node);
    dsup_node_ctrl_init(node);
    ei_x_new(&node->scratch);
    return node;
}

void dsup_node_free(dsup_node *node)
{
    if (!node)
        return;
    if (node->started) {
        dsup_shutdown(node);
        /* Connections close over a few loop turns (on_stop_deadline bounds it). */
        while (!dsup_node_is_stopped(node))
            uv_run(node->loop, UV_RUN_ONCE);
        close_handle((uv_handle_t *)&node->stop_deadline);
        /* Close callbacks of what the node and its layers closed. */
        uv_run(node->loop, UV_RUN_NOWAIT);
        uv_run(node->loop, UV_RUN_NOWAIT);
    }
    /* Processes still there (never started, or spawned while stopping) end
     * while the services they belong to still exist. */
    if (node->procs) {
        dsup_proc_foreach(node, exit_one, NULL);
        dsup_proc_run_queue(node);
    }
    /* The layers above free their state first, newest first; a handle
     * they close then is done with before the tables go. */
    dsup_node_hooks_run(node, DSUP_NODE_CLOSE, NULL, 0);
    if (node->started)
        uv_run(node->loop, UV_RUN_NOWAIT);
    dsup_proc_table_free(node);
    dsup_sched_free(node);
    dsup_peer_rel_free(node);
    dsup_node_ctrl_free(node);
    dsup_metrics_free(node);
    dsup_epmd_reg_free(node->epmd);
    for (reconnect *r = node->reconnects, *next; r; r = next) {
        next = r->next;
        free(r);
    }
    for (dsup_static_port *sp = node->static_ports, *next; sp; sp = next) {
        next = sp->next;
        free(sp);
    }
    free(node->conns);
    free(node->flush);
    ei_x_free(&node->scratch);
    dsup_terms_free(node);
    dsup_node_hooks_free(node);
    dsup_intern_free(node->names);
    free(node);
}

int dsup_node_start(dsup_node *node)
{
    dsup_node *n = node;
    if (!n || n->started)
        return DSUP_EINVAL;
    uv_tcp_init(n->loop, &n->listener);
    n->listener.data = n;
    struct sockaddr_storage a; /* like inet_dist_use_interface; the CLI checked the literal */
    const char *ip = n->listen_address ? n->listen_address : "0.0.0.0";
    if (uv_ip4_addr(ip, n->port, (struct sockaddr_in *)&a) != 0)
        uv_ip6_addr(ip, n->port, (struct sockaddr_in6 *)&a);
    int rc = uv_tcp_bind(&n->listener, (const struct sockaddr *)&a, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&n->listener, 128, on_accept);
    if (rc < 0) {
        LOG_ERROR("cannot listen on %s port %d: %s", ip, n->port, uv_strerror(rc));
        uv_close((uv_handle_t *)&n->listener, NULL);
        uv_run(n->loop, UV_RUN_NOWAIT);
        return DSUP_ESYSTEM;
    }
    n->started = 1;
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&n->listener, (struct sockaddr *)&bound, &len);
    n->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);

    uv_idle_init(n->loop, &n->idle);
    n->idle.data = n;
    dsup_intern_attach(n->names, n->loop);
    dsup_net_defaults(n);
    uv_timer_init(n->loop, &n->setup_timer);
    n->setup_timer.data = n;
    unsigned sweep = n->setup_ms / 8 < 50 ? 50 : n->setup_ms / 8 > 500 ? 500 : n->setup_ms / 8;
    uv_timer_start(&n->setup_timer, on_setup_timer, sweep, sweep);
    uv_timer_init(n->loop, &n->tick_timer);
    n->tick_timer.data = n;
    unsigned period = n->ticktime_ms / 4 ? n->ticktime_ms / 4 : 1;
    uv_timer_start(&n->tick_timer, on_tick, period, period);
    if (n->handle_signals) {
        uv_signal_init(n->loop, &n->sigint);
        n->sigint.data = n;
        uv_signal_start(&n->sigint, on_signal, SIGINT);
        uv_signal_init(n->loop, &n->sigterm);
        n->sigterm.data = n;
        uv_signal_start(&n->sigterm, on_signal, SIGTERM);
    }

    n->flags = DFLAG_EXTENDED_REFERENCES | DFLAG_DIST_MONITOR | DFLAG_FUN_TAGS |
               DFLAG_DIST_MONITOR_NAME | DFLAG_NEW_FUN_TAGS | DFLAG_EXTENDED_PIDS_PORTS |
               DFLAG_EXPORT_PTR_TAG | DFLAG_BIT_BINARIES | DFLAG_NEW_FLOATS | DFLAG_UNICODE_IO |
               DFLAG_SMALL_ATOM_TAGS | DFLAG_UTF8_ATOMS | DFLAG_MAP_TAG | DFLAG_BIG_CREATION |
               DFLAG_BIG_SEQTRACE_LABELS | DFLAG_HANDSHAKE_23 | DFLAG_UNLINK_ID | DFLAG_V4_NC;
    if (n->visible)
        n->flags |= DFLAG_PUBLISHED;
    if (n->no_epmd) {
        /* Peers find us through their static port table. A creation of our
         * own, never 0 (0 means "not up"), so restarted nodes differ. */
        uint32_t c = 0;
        if (uv_random(NULL, NULL, &c, sizeof c, 0, NULL) != 0)
            c = (uint32_t)uv_hrtime();
        on_registered(n, 0, c ? c : 1);
        return 0;
    }
    n->epmd = dsup_epmd_register(n->loop, n->alive, n->port, !n->visible, on_registered, n);
    return n->epmd ? 0 : DSUP_EINVAL;
}
