/* peer_rel.c — which release each BEAM peer runs, for the replies whose
 * format changed between releases, decided per calling node.
 *
 * The rule (sys system replies of a gen_server):
 *   sys:get_state/1,2 and sys:replace_state/2,3 of the CALLER's stdlib take
 *   the process's reply as {ok, State} from stdlib 5.1 (OTP 26.1) on, and as
 *   the bare State before (OTP 25, and OTP 26.0 with stdlib 5.0.x: the major
 *   release alone cannot tell 26.0 from 26.1). Errors are {error, Reason} in
 *   both. So the reply format follows the caller's node, not ours.
 *
 * On every new connection dsup asks the peer's rex for its stdlib version
 *   {call, application, get_key, [stdlib, vsn], GL} -> {ok, "5.1"}
 * with the tag {dsup_stdlib_vsn, Node}, and caches the answer on the
 * connection (dsup_conn.peer_stdlib), so a peer restarted on another release
 * is asked again. A reply due before the answer is held (it only happens when
 * a sys call opens the connection) and sent when the answer comes; a peer
 * whose rex cannot say (not a BEAM) gets the pre-26.1 format after
 * HOLD_MS. */
#include "peer_rel.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

#include "intern.h"
#include "log.h"
#include "node.h"
#include "proc.h"
#include "term.h"

#define HOLD_MS 3000
#define STDLIB_OK_WRAP ((5u << 16) | (1u << 8)) /* 5.1: OTP 26.1 */

typedef struct held_reply {
    const char *peer; /* interned */
    dsup_pid to;
    uint64_t deadline;
    size_t tag_len, body_len;
    char *bytes; /* tag, then body */
} held_reply;

/* One node's (node->peer_rel). */
struct dsup_peer_rel {
    dsup_node *node;
    held_reply *held;
    size_t nheld, capheld;
    uv_timer_t hold_timer;
    int timer_ready, stopped;
    uint64_t last_warn;
};

void dsup_peer_rel_init(dsup_node *node)
{
    node->peer_rel = dsup_xcalloc(1, sizeof *node->peer_rel);
    node->peer_rel->node = node;
}

/* After dsup_peer_rel_stop's handle closed. */
void dsup_peer_rel_free(dsup_node *node)
{
    struct dsup_peer_rel *R = node->peer_rel;
    if (!R)
        return;
    for (size_t i = 0; i < R->nheld; i++)
        free(R->held[i].bytes);
    free(R->held);
    free(R);
    node->peer_rel = NULL;
}

uint32_t dsup_peer_stdlib(dsup_node *node, const char *peer)
{
    dsup_conn *c = dsup_node_conn(node, peer, 0);
    return c ? c->peer_stdlib : 0;
}

int dsup_peer_stdlib_wants_ok(uint32_t vsn) { return vsn != DSUP_STDLIB_UNKNOWN && vsn >= STDLIB_OK_WRAP; }

int dsup_peer_sys_ok_wrapped(dsup_node *node, const char *peer)
{
    uint32_t v = dsup_peer_stdlib(node, peer);
    if (v == 0)
        return -1;
    return dsup_peer_stdlib_wants_ok(v);
}

/* "5.0.2" / "6.2.2.1" -> major<<16 | minor<<8 | patch (each capped at 255);
 * 0 when it does not start with a number. */
uint32_t dsup_peer_parse_vsn(const char *s, size_t n)
{
    uint32_t part[3] = { 0, 0, 0 };
    size_t i = 0;
    int k = 0, digits = 0;
    for (; i < n && k < 3; i++) {
        char ch = s[i];
        if (ch >= '0' && ch <= '9') {
            part[k] = part[k] * 10 + (uint32_t)(ch - '0');
            if (part[k] > 255)
                part[k] = 255;
            digits++;
        } else if (ch == '.' && digits) {
            k++;
            digits = 0;
        } else {
            break;
        }
    }
    if (part[0] == 0 && !(n > 0 && s[0] >= '0' && s[0] <= '9'))
        return 0;
    uint32_t v = (part[0] << 16) | (part[1] << 8) | part[2];
    return v ? v : 0;
}

static void send_reply(dsup_node *node, const dsup_pid *to, const char *tag, size_t tag_len, const char *body,
                       size_t body_len, int wrap)
{
    ei_x_buff *x = dsup_term_scratch(node);
    ei_x_encode_tuple_header(x, 2);
    ei_x_append_buf(x, tag, (int)tag_len);
    if (wrap) {
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_atom(x, "ok");
    }
    ei_x_append_buf(x, body, (int)body_len);
    dsup_proc_send(node, NULL, to, (dsup_term){ x->buff, (size_t)x->index });
    dsup_term_scratch_release(x);
}

/* Send the held replies for `peer` (all peers when NULL) whose answer is in
 * or whose time is up. */
static void release_held(struct dsup_peer_rel *R, const char *peer, int force_due)
{
    dsup_node *node = R->node;
    uint64_t now = dsup_node_now(node);
    size_t k = 0;
    for (size_t i = 0; i < R->nheld; i++) {
        held_reply *h = &R->held[i];
        int wrap = dsup_peer_sys_ok_wrapped(node, h->peer);
        int due = force_due && now >= h->deadline;
        if ((peer && h->peer != peer) || (wrap < 0 && !due)) {
            R->held[k++] = *h;
            continue;
        }
        dsup_conn *c = dsup_node_conn(node, h->peer, 0);
        if (c && c->state == CONN_UP) {
            if (wrap < 0 && (R->last_warn == 0 || now - R->last_warn >= 10000)) { /* rate-limited */
                R->last_warn = now;
                LOG_WARN("%s did not say which stdlib it runs: sys reply sent in the pre-OTP-26.1 form",
                         h->peer);
            }
            send_reply(node, &h->to, h->bytes, h->tag_len, h->bytes + h->tag_len, h->body_len, wrap > 0);
        }
        dsup_intern_release(h->peer);
        free(h->bytes);
    }
    R->nheld = k;
    if (R->nheld == 0 && R->timer_ready)
        uv_timer_stop(&R->hold_timer);
}

static void on_hold_timer(uv_timer_t *t) { release_held(t->data, NULL, 1); }

int dsup_peer_sys_reply(dsup_node *node, const dsup_pid *to, dsup_term tag, dsup_term body)
{
    struct dsup_peer_rel *R = node->peer_rel;
    int wrap = dsup_peer_sys_ok_wrapped(node, to->node);
    if (wrap >= 0 || R->stopped) { /* known, or the node is stopping: no holding */
        send_reply(node, to, tag.buf, tag.len, body.buf, body.len, wrap > 0);
        return 0;
    }
    if (R->nheld == R->capheld) {
        size_t nc = R->capheld ? R->capheld * 2 : 8;
        held_reply *n = dsup_xrealloc(R->held, nc * sizeof *n);
        R->held = n;
        R->capheld = nc;
    }
    char *bytes = dsup_xmalloc(tag.len + body.len);
    memcpy(bytes, tag.buf, tag.len);
    memcpy(bytes + tag.len, body.buf, body.len);
    dsup_intern_hold(to->node);
    R->held[R->nheld++] = (held_reply){ to->node, *to, dsup_node_now(node) + HOLD_MS, tag.len, body.len, bytes };
    LOG_DEBUG("sys reply to %s held until its stdlib version is known", to->node);
    if (!R->timer_ready) {
        uv_timer_init(node->loop, &R->hold_timer);
        R->hold_timer.data = R;
        uv_unref((uv_handle_t *)&R->hold_timer);
        R->timer_ready = 1;
    }
    if (!uv_is_active((uv_handle_t *)&R->hold_timer))
        uv_timer_start(&R->hold_timer, on_hold_timer, 250, 250);
    return 0;
}

void dsup_peer_rel_ask(dsup_proc *self, const char *peer)
{
    if (!self || !peer)
        return;
    ei_x_buff *x = dsup_term_scratch(self->node);
    ei_x_encode_tuple_header(x, 3);
    dsup_x_encode_atom(x, "$gen_call");
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_pid(x, dsup_self(self));
    ei_x_encode_tuple_header(x, 2); /* the tag names the peer: answers carry no node */
    dsup_x_encode_atom(x, "dsup_stdlib_vsn");
    dsup_x_encode_atom(x, peer);
    ei_x_encode_tuple_header(x, 5);
    dsup_x_encode_atom(x, "call");
    dsup_x_encode_atom(x, "application");
    dsup_x_encode_atom(x, "get_key");
    ei_x_encode_list_header(x, 2);
    dsup_x_encode_atom(x, "stdlib");
    dsup_x_encode_atom(x, "vsn");
    ei_x_encode_empty_list(x);
    dsup_x_encode_pid(x, dsup_self(self));
    dsup_send_named(self, "rex", peer, x);
    dsup_term_scratch_release(x);
}

int dsup_peer_rel_answer(dsup_node *node, dsup_term msg)
{
    dsup_term el[2], tag[2], res[2];
    if (dsup_term_tuple(msg, el, 2) != 2 || dsup_term_tuple(el[0], tag, 2) != 2 ||
        !dsup_term_is_atom(tag[0], "dsup_stdlib_vsn"))
        return 0;
    const char *name;
    size_t len;
    int i = 0;
    if (dsup_term_atom_text(tag[1].buf, &i, &name, &len) < 0)
        return 1;
    dsup_conn *c = dsup_node_conn(node, dsup_intern_find(node->names, name, len), 0);
    if (!c)
        return 1;
    uint32_t v = 0;
    int type, size;
    i = 0;
    /* {ok, "5.1"}: check the string's size before reading it */
    if (dsup_term_tagged(el[1], "ok", &type, res, 2) && type == 2 &&
        ei_get_type(res[1].buf, &i, &type, &size) == 0 && type == ERL_STRING_EXT && size > 0 &&
        size < 64 && (size_t)size + 3 <= res[1].len)
        v = dsup_peer_parse_vsn(res[1].buf + 3, (size_t)size);
    c->peer_stdlib = v ? v : DSUP_STDLIB_UNKNOWN;
    if (v)
        LOG_DEBUG("%s runs stdlib %u.%u.%u: sys replies %s", c->peer, v >> 16, (v >> 8) & 255, v & 255,
                  v >= STDLIB_OK_WRAP ? "as {ok, State}" : "bare");
    else
        LOG_DEBUG("%s did not say which stdlib it runs: sys replies in the pre-OTP-26.1 form", c->peer);
    release_held(node->peer_rel, c->peer, 0);
    return 1;
}

void dsup_peer_rel_stop(dsup_node *node)
{
    struct dsup_peer_rel *R = node->peer_rel;
    R->stopped = 1;
    for (size_t i = 0; i < R->nheld; i++) {
        dsup_intern_release(R->held[i].peer);
        free(R->held[i].bytes);
    }
    R->nheld = 0;
    if (R->timer_ready && !uv_is_closing((uv_handle_t *)&R->hold_timer))
        uv_close((uv_handle_t *)&R->hold_timer, NULL);
}
