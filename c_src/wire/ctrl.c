/* ctrl.c — distribution framing, control-message decode and encode.
 *
 * Decode never trusts the peer: the control tuple and the message are first
 * walked by dsup_term_skip (bounds, tags; any depth, no recursion), and the fields are then
 * read with the bounds-checked parsers of term_skip.c, limited to the
 * control term's extent. Nothing is allocated; the result points into the
 * caller's payload. Encode appends to a dsup_buf and allocates nothing else. */
#include "ctrl.h"

#include <string.h>

/* Bounds-checked parsers shared with term_skip.c (internal). */
int dsup__atom(const char *buf, size_t len, size_t *pos, const char **text, size_t *text_len);
int dsup__pid(const char *buf, size_t len, size_t *pos, dsup_wire_pid *out);
long dsup__utf8_chars(const uint8_t *s, size_t n);

enum {
    VERSION = 131,
    PASS_THROUGH = 'p',
    T_NEWER_REFERENCE = 90, T_NEW_PID = 88,
    T_SMALL_INTEGER = 97, T_INTEGER = 98, T_REFERENCE = 101,
    T_SMALL_TUPLE = 104, T_LARGE_TUPLE = 105, T_SMALL_BIG = 110, T_LARGE_BIG = 111,
    T_NEW_REFERENCE = 114, T_SMALL_ATOM = 115, T_ATOM_UTF8 = 118, T_SMALL_ATOM_UTF8 = 119,
};

/* ------------------------------------------------------------------ framing */

int dsup_frame_next(const char *buf, size_t len, size_t max_frame, size_t *frame_len)
{
    if (len < 4)
        return DSUP_FRAME_NEED_MORE;
    uint32_t n = dsup_get_u32be(buf);
    if (n > max_frame)
        return DSUP_FRAME_TOO_BIG;
    if (n > len - 4)
        return DSUP_FRAME_NEED_MORE;
    *frame_len = (size_t)n + 4;
    return DSUP_FRAME_OK;
}

int dsup_frame_tick(dsup_buf *out)
{
    return dsup_buf_put_u32be(out, 0);
}

/* ---------------------------------------------------------------- op table */

/* Arity of the control tuple (op included) and whether a message follows;
 * 0 when the op is not one we know. */
static int op_info(int op, int *has_msg)
{
    *has_msg = 0;
    switch (op) {
    case DSUP_OP_NODE_LINK:
        return 1;
    case DSUP_OP_LINK:
    case DSUP_OP_UNLINK:
    case DSUP_OP_GROUP_LEADER:
        return 3;
    case DSUP_OP_SEND:
    case DSUP_OP_SEND_SENDER:
        *has_msg = 1;
        return 3;
    case DSUP_OP_REG_SEND:
    case DSUP_OP_SEND_TT:
    case DSUP_OP_SEND_SENDER_TT:
        *has_msg = 1;
        return 4;
    case DSUP_OP_REG_SEND_TT:
        *has_msg = 1;
        return 5;
    case DSUP_OP_EXIT:
    case DSUP_OP_EXIT2:
    case DSUP_OP_MONITOR_P:
    case DSUP_OP_DEMONITOR_P:
    case DSUP_OP_UNLINK_ID:
    case DSUP_OP_UNLINK_ID_ACK:
        return 4;
    case DSUP_OP_EXIT_TT:
    case DSUP_OP_EXIT2_TT:
    case DSUP_OP_MONITOR_P_EXIT:
        return 5;
    default:
        return 0;
    }
}

/* ------------------------------------------------------------------ decode */

struct rd {
    const char *b;
    size_t      end; /* end of the control term */
    size_t      p;
};

static int rd_pid(struct rd *r, dsup_wire_pid *out)
{
    return dsup__pid(r->b, r->end, &r->p, out);
}

static int rd_atom(struct rd *r, dsup_slice *out)
{
    const char *t;
    size_t n;
    if (dsup__atom(r->b, r->end, &r->p, &t, &n))
        return -1;
    out->ptr = t;
    out->len = (uint32_t)n;
    return 0;
}

static int rd_any(struct rd *r, dsup_slice *out)
{
    size_t start = r->p;
    if (dsup_term_skip(r->b, r->end, &r->p))
        return -1;
    out->ptr = r->b + start;
    out->len = (uint32_t)(r->p - start);
    return 0;
}

static int rd_pid_or_atom(struct rd *r, dsup_wire_pid *pid, dsup_slice *name, int *is_name)
{
    if (r->p >= r->end)
        return -1;
    uint8_t tag = (uint8_t)r->b[r->p];
    if (tag == 103 || tag == T_NEW_PID)
        return rd_pid(r, pid);
    *is_name = 1;
    return rd_atom(r, name);
}

static int rd_ref(struct rd *r, dsup_slice *out)
{
    if (r->p >= r->end)
        return -1;
    uint8_t tag = (uint8_t)r->b[r->p];
    if (tag != T_REFERENCE && tag != T_NEW_REFERENCE && tag != T_NEWER_REFERENCE)
        return -1;
    return rd_any(r, out);
}

/* A non-negative integer of at most 64 bits: SMALL_INTEGER_EXT,
 * INTEGER_EXT, or SMALL_BIG_EXT / LARGE_BIG_EXT with <= 8 digit bytes. */
static int rd_u64(struct rd *r, uint64_t *out)
{
    const uint8_t *b = (const uint8_t *)r->b;
    size_t p = r->p, left = r->end - r->p, n;
    if (left < 1)
        return -1;
    switch (b[p]) {
    case T_SMALL_INTEGER:
        if (left < 2)
            return -1;
        *out = b[p + 1];
        r->p = p + 2;
        return 0;
    case T_INTEGER: {
        if (left < 5)
            return -1;
        int32_t v = (int32_t)dsup_get_u32be(b + p + 1);
        if (v < 0)
            return -1;
        *out = (uint64_t)v;
        r->p = p + 5;
        return 0;
    }
    case T_SMALL_BIG:
        if (left < 3)
            return -1;
        n = b[p + 1];
        p += 2;
        break;
    case T_LARGE_BIG:
        if (left < 6)
            return -1;
        n = dsup_get_u32be(b + p + 1);
        p += 5;
        break;
    default:
        return -1;
    }
    /* p is at the sign byte */
    if (n > 8 || b[p] != 0 || n > r->end - p - 1)
        return -1;
    p++;
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;)
        v = (v << 8) | b[p + i];
    *out = v;
    r->p = p + n;
    return 0;
}

#define BAD(msg) do { if (err) *err = (msg); return DSUP_CTRL_MALFORMED; } while (0)

int dsup_ctrl_decode(const char *payload, size_t len, dsup_ctrl *out, const char **err)
{
    const uint8_t *b = (const uint8_t *)payload;
    memset(out, 0, sizeof *out);
    if (err)
        *err = NULL;

    if (len < 1 || b[0] != PASS_THROUGH)
        BAD("payload does not start with 'p'");
    if (len < 2 || b[1] != VERSION)
        BAD("bad version byte before control tuple");

    struct rd r = { payload, 2, 2 };
    if (dsup_term_skip(payload, len, &r.end))
        BAD("malformed control term");

    /* Tuple header and op (the term is validated: the header bytes exist). */
    size_t arity;
    if (b[r.p] == T_SMALL_TUPLE) {
        arity = b[r.p + 1];
        r.p += 2;
    } else if (b[r.p] == T_LARGE_TUPLE) {
        arity = dsup_get_u32be(b + r.p + 1);
        r.p += 5;
    } else {
        BAD("control message is not a tuple");
    }
    if (arity == 0)
        BAD("empty control tuple");
    if (b[r.p] != T_SMALL_INTEGER)
        BAD("control op is not a small integer");
    int op = b[r.p + 1];
    r.p += 2;
    out->op = op;

    int has_msg;
    int want = op_info(op, &has_msg);
    if (!want) {
        /* Unknown op: whatever follows must still be one well-formed term. */
        size_t p = r.end;
        if (p < len) {
            if (b[p] != VERSION)
                BAD("bad version byte before message");
            p++;
            if (dsup_term_skip(payload, len, &p))
                BAD("malformed message term");
            if (p != len)
                BAD("trailing bytes after message");
        }
        return DSUP_CTRL_UNKNOWN_OP;
    }
    if (arity != (size_t)want)
        BAD("wrong control tuple arity");

    dsup_slice unused;
    int rc = 0;
    switch (op) {
    case DSUP_OP_NODE_LINK:
        break;
    case DSUP_OP_LINK:
    case DSUP_OP_UNLINK:
    case DSUP_OP_GROUP_LEADER:
    case DSUP_OP_SEND_SENDER:
        rc = rd_pid(&r, &out->from) || rd_pid(&r, &out->to);
        break;
    case DSUP_OP_SEND_SENDER_TT:
        rc = rd_pid(&r, &out->from) || rd_pid(&r, &out->to) || rd_any(&r, &out->token);
        break;
    case DSUP_OP_SEND:
        rc = rd_any(&r, &unused) || rd_pid(&r, &out->to);
        break;
    case DSUP_OP_SEND_TT:
        rc = rd_any(&r, &unused) || rd_pid(&r, &out->to) || rd_any(&r, &out->token);
        break;
    case DSUP_OP_REG_SEND:
    case DSUP_OP_REG_SEND_TT:
        out->to_is_name = 1;
        rc = rd_pid(&r, &out->from) || rd_any(&r, &unused) || rd_atom(&r, &out->to_name) ||
             (op == DSUP_OP_REG_SEND_TT && rd_any(&r, &out->token));
        break;
    case DSUP_OP_EXIT:
    case DSUP_OP_EXIT2:
        rc = rd_pid(&r, &out->from) || rd_pid(&r, &out->to) || rd_any(&r, &out->reason);
        break;
    case DSUP_OP_EXIT_TT:
    case DSUP_OP_EXIT2_TT:
        rc = rd_pid(&r, &out->from) || rd_pid(&r, &out->to) || rd_any(&r, &out->token) ||
             rd_any(&r, &out->reason);
        break;
    case DSUP_OP_MONITOR_P:
    case DSUP_OP_DEMONITOR_P:
        rc = rd_pid(&r, &out->from) ||
             rd_pid_or_atom(&r, &out->to, &out->to_name, &out->to_is_name) ||
             rd_ref(&r, &out->ref);
        break;
    case DSUP_OP_MONITOR_P_EXIT:
        rc = rd_pid_or_atom(&r, &out->from, &out->from_name, &out->from_is_name) ||
             rd_pid(&r, &out->to) || rd_ref(&r, &out->ref) || rd_any(&r, &out->reason);
        break;
    case DSUP_OP_UNLINK_ID:
    case DSUP_OP_UNLINK_ID_ACK:
        rc = rd_u64(&r, &out->id) || rd_pid(&r, &out->from) || rd_pid(&r, &out->to);
        break;
    }
    if (rc)
        BAD("wrong element type in control tuple");
    if (r.p != r.end)
        BAD("control tuple size mismatch");

    size_t p = r.end;
    if (has_msg) {
        if (p >= len || b[p] != VERSION)
            BAD("missing message or bad version byte before it");
        p++;
        size_t start = p;
        if (dsup_term_skip(payload, len, &p))
            BAD("malformed message term");
        if (p != len)
            BAD("trailing bytes after message");
        out->msg.ptr = payload + start;
        out->msg.len = (uint32_t)(p - start);
    } else if (p != len) {
        BAD("trailing bytes after control tuple");
    }
    return DSUP_CTRL_OK;
}

/* ------------------------------------------------------------------ encode */

int dsup_encode_atom(dsup_buf *out, const char *name, size_t len)
{
    long chars = dsup__utf8_chars((const uint8_t *)name, len);
    if (chars >= 0) {
        if (chars > 255)
            return -1;
        if (len <= 255) {
            if (dsup_buf_put_u8(out, T_SMALL_ATOM_UTF8) || dsup_buf_put_u8(out, (uint8_t)len))
                return -1;
        } else if (dsup_buf_put_u8(out, T_ATOM_UTF8) || dsup_buf_put_u16be(out, (uint16_t)len)) {
            return -1;
        }
    } else {
        /* Not UTF-8: the bytes came from a latin1 atom (ATOM_EXT /
         * SMALL_ATOM_EXT on the wire); keep them latin1. */
        if (len > 255 || dsup_buf_put_u8(out, T_SMALL_ATOM) || dsup_buf_put_u8(out, (uint8_t)len))
            return -1;
    }
    return dsup_buf_append(out, name, len);
}

int dsup_encode_wire_pid(dsup_buf *out, const dsup_wire_pid *p)
{
    if (dsup_buf_put_u8(out, T_NEW_PID) || dsup_encode_atom(out, p->node, p->node_len) ||
        dsup_buf_put_u32be(out, p->num) || dsup_buf_put_u32be(out, p->serial) ||
        dsup_buf_put_u32be(out, p->creation))
        return -1;
    return 0;
}

/* A required encoded term. 131 is never a term tag: a leading version byte
 * (a buffer from ei_x_new_with_version) is dropped rather than sent twice. */
static int put_term(dsup_buf *out, const dsup_slice *s)
{
    const char *p = s->ptr;
    size_t n = s->len;
    if (p && n && (uint8_t)p[0] == VERSION) {
        p++;
        n--;
    }
    if (!p || n == 0)
        return -1;
    return dsup_buf_append(out, p, n);
}

static int put_name(dsup_buf *out, const dsup_slice *s)
{
    if (!s->ptr && s->len)
        return -1;
    return dsup_encode_atom(out, s->ptr ? s->ptr : "", s->len);
}

/* As term_to_binary does: SMALL_INTEGER, INTEGER (signed 32), SMALL_BIG. */
static int put_u64(dsup_buf *out, uint64_t v)
{
    if (v <= 255)
        return dsup_buf_put_u8(out, T_SMALL_INTEGER) || dsup_buf_put_u8(out, (uint8_t)v);
    if (v <= 0x7fffffff)
        return dsup_buf_put_u8(out, T_INTEGER) || dsup_buf_put_u32be(out, (uint32_t)v);
    uint8_t d[11];
    size_t n = 0;
    d[0] = T_SMALL_BIG;
    d[2] = 0; /* sign */
    while (v) {
        d[3 + n++] = (uint8_t)v;
        v >>= 8;
    }
    d[1] = (uint8_t)n;
    return dsup_buf_append(out, d, 3 + n);
}

static const char empty_atom[2] = { (char)T_SMALL_ATOM_UTF8, 0 };

static int encode_body(dsup_buf *out, const dsup_ctrl *c, int arity)
{
    uint8_t hdr[4] = { T_SMALL_TUPLE, (uint8_t)arity, T_SMALL_INTEGER, (uint8_t)c->op };
    if (dsup_buf_append(out, hdr, 4))
        return -1;
    switch (c->op) {
    case DSUP_OP_NODE_LINK:
        return 0;
    case DSUP_OP_LINK:
    case DSUP_OP_UNLINK:
    case DSUP_OP_GROUP_LEADER:
    case DSUP_OP_SEND_SENDER:
        return dsup_encode_wire_pid(out, &c->from) || dsup_encode_wire_pid(out, &c->to);
    case DSUP_OP_SEND_SENDER_TT:
        return dsup_encode_wire_pid(out, &c->from) || dsup_encode_wire_pid(out, &c->to) ||
               put_term(out, &c->token);
    case DSUP_OP_SEND:
        return dsup_buf_append(out, empty_atom, 2) || dsup_encode_wire_pid(out, &c->to);
    case DSUP_OP_SEND_TT:
        return dsup_buf_append(out, empty_atom, 2) || dsup_encode_wire_pid(out, &c->to) ||
               put_term(out, &c->token);
    case DSUP_OP_REG_SEND:
        return dsup_encode_wire_pid(out, &c->from) || dsup_buf_append(out, empty_atom, 2) ||
               put_name(out, &c->to_name);
    case DSUP_OP_REG_SEND_TT:
        return dsup_encode_wire_pid(out, &c->from) || dsup_buf_append(out, empty_atom, 2) ||
               put_name(out, &c->to_name) || put_term(out, &c->token);
    case DSUP_OP_EXIT:
    case DSUP_OP_EXIT2:
        return dsup_encode_wire_pid(out, &c->from) || dsup_encode_wire_pid(out, &c->to) ||
               put_term(out, &c->reason);
    case DSUP_OP_EXIT_TT:
    case DSUP_OP_EXIT2_TT:
        return dsup_encode_wire_pid(out, &c->from) || dsup_encode_wire_pid(out, &c->to) ||
               put_term(out, &c->token) || put_term(out, &c->reason);
    case DSUP_OP_MONITOR_P:
    case DSUP_OP_DEMONITOR_P:
        return dsup_encode_wire_pid(out, &c->from) ||
               (c->to_is_name ? put_name(out, &c->to_name) : dsup_encode_wire_pid(out, &c->to)) ||
               put_term(out, &c->ref);
    case DSUP_OP_MONITOR_P_EXIT:
        return (c->from_is_name ? put_name(out, &c->from_name)
                                : dsup_encode_wire_pid(out, &c->from)) ||
               dsup_encode_wire_pid(out, &c->to) || put_term(out, &c->ref) ||
               put_term(out, &c->reason);
    case DSUP_OP_UNLINK_ID:
    case DSUP_OP_UNLINK_ID_ACK:
        return put_u64(out, c->id) || dsup_encode_wire_pid(out, &c->from) ||
               dsup_encode_wire_pid(out, &c->to);
    }
    return -1;
}

int dsup_ctrl_encode(dsup_buf *out, const dsup_ctrl *c)
{
    int has_msg;
    int arity = op_info(c->op, &has_msg);
    if (!arity)
        return -1;
    if (has_msg && !c->msg.ptr)
        return -1;
    size_t start = out->len;
    static const uint8_t head[6] = { 0, 0, 0, 0, PASS_THROUGH, VERSION };
    if (dsup_buf_append(out, head, sizeof head) || encode_body(out, c, arity))
        goto fail;
    if (has_msg && (dsup_buf_put_u8(out, VERSION) || put_term(out, &c->msg)))
        goto fail;
    size_t n = out->len - start - 4;
    if (n > UINT32_MAX)
        goto fail;
    dsup_set_u32be(out->data + start, (uint32_t)n);
    return 0;
fail:
    out->len = start;
    return -1;
}
