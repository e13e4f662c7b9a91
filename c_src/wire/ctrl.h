/* ctrl.h — Erlang distribution framing and control-message codec.
 *
 * After the handshake every frame on the wire is
 *     Len:32/big | 'p' (112) | 131 ControlTuple | [131 Message]
 * and Len == 0 is a tick. A peer's bytes are untrusted: everything here is
 * bounds-checked and never reads past the frame. Decoding is zero-copy: the
 * slices in dsup_ctrl point into the caller's frame buffer and are valid until
 * it is reused. */
#ifndef DSUP_CTRL_H
#define DSUP_CTRL_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Control-message operations (erts/doc/src/erl_dist_protocol.xml). */
enum dsup_ctrl_op {
    DSUP_OP_LINK = 1,
    DSUP_OP_SEND = 2,
    DSUP_OP_EXIT = 3,
    DSUP_OP_UNLINK = 4,
    DSUP_OP_NODE_LINK = 5,
    DSUP_OP_REG_SEND = 6,
    DSUP_OP_GROUP_LEADER = 7,
    DSUP_OP_EXIT2 = 8,
    DSUP_OP_SEND_TT = 12,
    DSUP_OP_EXIT_TT = 13,
    DSUP_OP_REG_SEND_TT = 16,
    DSUP_OP_EXIT2_TT = 18,
    DSUP_OP_MONITOR_P = 19,
    DSUP_OP_DEMONITOR_P = 20,
    DSUP_OP_MONITOR_P_EXIT = 21,
    DSUP_OP_SEND_SENDER = 22,
    DSUP_OP_SEND_SENDER_TT = 23,
    DSUP_OP_UNLINK_ID = 35,
    DSUP_OP_UNLINK_ID_ACK = 36,
};

/* One encoded term inside a frame, without the 131 version byte. */
typedef struct dsup_slice {
    const char *ptr;
    uint32_t    len;
} dsup_slice;

/* A pid as it appears on the wire (PID_EXT / NEW_PID_EXT); `node` points at
 * the node name's bytes (not NUL-terminated). */
typedef struct dsup_wire_pid {
    const char *node;
    uint16_t    node_len;
    uint32_t    num, serial, creation;
} dsup_wire_pid;

/* A decoded control message. Which fields are set depends on `op`:
 *   LINK, UNLINK          from, to
 *   SEND(_TT)             to (+ token), msg                     (from unused: '' on the wire)
 *   SEND_SENDER(_TT)      from, to (+ token), msg
 *   REG_SEND(_TT)         from, to_name (+ token), msg
 *   EXIT(_TT), EXIT2(_TT) from, to, reason (+ token)
 *   MONITOR_P             from, to | to_name, ref
 *   DEMONITOR_P           from, to | to_name, ref
 *   MONITOR_P_EXIT        from | from_name, to, ref, reason
 *   UNLINK_ID(_ACK)       id, from, to
 *   NODE_LINK, GROUP_LEADER: accepted and ignored by the node. */
typedef struct dsup_ctrl {
    int           op;
    dsup_wire_pid from;
    dsup_wire_pid to;
    int           to_is_name;    /* to_name is set instead of to */
    int           from_is_name;  /* from_name is set instead of from (MONITOR_P_EXIT) */
    dsup_slice    to_name;       /* atom text (ptr/len of the name bytes) */
    dsup_slice    from_name;     /* atom text */
    dsup_slice    ref;           /* the encoded reference term */
    dsup_slice    reason;        /* encoded term */
    dsup_slice    token;         /* trace token (encoded term), _TT variants */
    uint64_t      id;            /* UNLINK_ID */
    dsup_slice    msg;           /* encoded message term; ptr NULL when the op carries none */
} dsup_ctrl;

/* Result of dsup_frame_next. */
enum {
    DSUP_FRAME_NEED_MORE = 0, /* not a whole frame yet */
    DSUP_FRAME_OK = 1,        /* *frame_len bytes (4-byte length included) form one frame */
    DSUP_FRAME_TOO_BIG = -1,  /* declared length exceeds max_frame */
};

/* Split a byte stream into frames. A tick is a frame of total length 4.
 * max_frame bounds the declared length (the 4 length bytes not counted); it
 * is checked as soon as the 4 length bytes are there. */
int dsup_frame_next(const char *buf, size_t len, size_t max_frame, size_t *frame_len);

/* Result of dsup_ctrl_decode. */
enum {
    DSUP_CTRL_OK = 0,
    DSUP_CTRL_UNKNOWN_OP = 1, /* well-formed, but an op this node does not handle: log, drop */
    DSUP_CTRL_MALFORMED = -1, /* close the connection */
};

/* Decode a frame's payload (the bytes after the 4-byte length, starting with
 * 'p'; a tick has no payload and must not be passed here). On
 * DSUP_CTRL_MALFORMED, *err (if non-NULL) names what was wrong, as a static
 * string. The message term, when present, is validated too, and must end
 * exactly at `len`. On DSUP_CTRL_UNKNOWN_OP, out->op holds the op number.
 * REG_SEND(_TT) also sets to_is_name. */
int dsup_ctrl_decode(const char *payload, size_t len, dsup_ctrl *out, const char **err);

/* Append one whole frame (length, 'p', 131 control tuple, [131 message]) for
 * `c` to `out`. Uses the same fields as decode; `msg.ptr` (a term without
 * version byte) is appended when the op carries a message. Pids are written
 * as NEW_PID_EXT, atoms as SMALL_ATOM_UTF8_EXT / ATOM_UTF8_EXT (see
 * dsup_encode_atom), Unused as '', UNLINK_ID's id as SMALL_INTEGER_EXT /
 * INTEGER_EXT / SMALL_BIG_EXT like term_to_binary. ref, reason, token and msg
 * are required (non-empty encoded terms, no version byte; a leading 131 is
 * tolerated and dropped) by the ops that carry them; they are copied as they
 * are, not validated. to_is_name /
 * from_is_name are honoured only by (DE)MONITOR_P / MONITOR_P_EXIT.
 * 0, or -1 (out of memory, unknown op, missing slice, atom too long); on -1
 * `out` is left as it was. */
int dsup_ctrl_encode(dsup_buf *out, const dsup_ctrl *c);

/* Append a tick (4 zero bytes). */
int dsup_frame_tick(dsup_buf *out);

/* Bounds-checked walk over one encoded term (no version byte) starting at
 * *pos: validates every tag and length and advances *pos past it. 0, or -1
 * when malformed (*pos unchanged). Nesting depth is unlimited and uses no C
 * stack (time and memory are linear in the bytes). Rejects ATOM_CACHE_REF,
 * COMPRESSED (not inflated), LOCAL_EXT, the obsolete FUN_EXT, and what some
 * supported OTP release refuses or mishandles (term_skip.c lists them).
 * After it succeeds, ei_decode_* may be used on the term safely (but not
 * ei_skip_term or ei_print_term on deep terms: they recurse; use
 * dsup_term_next). */
int dsup_term_skip(const char *buf, size_t len, size_t *pos);
/* Internal: advance *pos past one term already validated by dsup_term_skip
 * (no bounds, no map-key check); what dsup_term_next uses. */
int dsup__term_next(const char *buf, size_t *pos);

/* Write a wire pid (NEW_PID_EXT) into out. */
int dsup_encode_wire_pid(dsup_buf *out, const dsup_wire_pid *p);
/* Write an atom (SMALL_ATOM_UTF8_EXT or ATOM_UTF8_EXT by length). Bytes that
 * are not valid UTF-8 are taken as latin1 (they came from an ATOM_EXT /
 * SMALL_ATOM_EXT) and written as SMALL_ATOM_EXT. -1 when longer than 255
 * characters or out of memory. */
int dsup_encode_atom(dsup_buf *out, const char *name, size_t len);

#endif
