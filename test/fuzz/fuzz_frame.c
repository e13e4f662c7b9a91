/* fuzz_frame.c — libFuzzer target for the distribution framing and the
 * control-message codec.
 *
 * The input is a byte stream as read from a connection: it is split with
 * dsup_frame_next, and every payload (copied to a buffer of exactly its size
 * so ASan sees any overread) is decoded. Every OK decode must re-encode, and
 * the re-encoding must be one frame that decodes to the same fields and
 * re-encodes to the same bytes. dsup_term_skip also runs over the raw input.
 *
 *   make fuzz FUZZ_SECONDS=60 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctrl.h"

#define MAX_FRAME (1u << 20)

#define CHECK(cond) do { \
        if (!(cond)) { fprintf(stderr, "fuzz_frame: check failed: %s (line %d)\n", #cond, __LINE__); \
            abort(); } } while (0)

static int same_bytes(const char *a, size_t al, const char *b, size_t bl)
{
    return al == bl && (al == 0 || memcmp(a, b, al) == 0);
}

static int same_slice(const dsup_slice *a, const dsup_slice *b)
{
    if (!a->ptr || !b->ptr)
        return !a->ptr && !b->ptr;
    return same_bytes(a->ptr, a->len, b->ptr, b->len);
}

static int same_pid(const dsup_wire_pid *a, const dsup_wire_pid *b)
{
    if (!a->node || !b->node)
        return !a->node && !b->node;
    return same_bytes(a->node, a->node_len, b->node, b->node_len) && a->num == b->num &&
           a->serial == b->serial && a->creation == b->creation;
}

static void check_roundtrip(const dsup_ctrl *c, dsup_buf *enc, dsup_buf *enc2)
{
    enc->len = 0;
    CHECK(dsup_ctrl_encode(enc, c) == 0); /* everything we decode we can encode */

    size_t fl = 0;
    CHECK(dsup_frame_next(enc->data, enc->len, MAX_FRAME + 64 * 1024, &fl) == DSUP_FRAME_OK);
    CHECK(fl == enc->len && fl > 4);

    char *pl = malloc(fl - 4);
    CHECK(pl);
    memcpy(pl, enc->data + 4, fl - 4);
    dsup_ctrl d;
    const char *err = NULL;
    int rc = dsup_ctrl_decode(pl, fl - 4, &d, &err);
    if (rc != DSUP_CTRL_OK)
        fprintf(stderr, "re-decode failed: %s\n", err ? err : "?");
    CHECK(rc == DSUP_CTRL_OK);
    CHECK(d.op == c->op);
    CHECK(same_pid(&d.from, &c->from));
    CHECK(same_pid(&d.to, &c->to));
    CHECK(d.to_is_name == c->to_is_name);
    CHECK(d.from_is_name == c->from_is_name);
    CHECK(same_slice(&d.to_name, &c->to_name));
    CHECK(same_slice(&d.from_name, &c->from_name));
    CHECK(same_slice(&d.ref, &c->ref));
    CHECK(same_slice(&d.reason, &c->reason));
    CHECK(same_slice(&d.token, &c->token));
    CHECK(same_slice(&d.msg, &c->msg));
    CHECK(d.id == c->id);

    /* Encoding is a function of the fields: a second round gives the same bytes. */
    enc2->len = 0;
    CHECK(dsup_ctrl_encode(enc2, &d) == 0);
    CHECK(same_bytes(enc->data, enc->len, enc2->data, enc2->len));
    free(pl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static dsup_buf enc, enc2; /* reused, like the node's buffers */
    const char *in = (const char *)data;
    size_t off = 0;

    while (off < size) {
        size_t fl = 0;
        int r = dsup_frame_next(in + off, size - off, MAX_FRAME, &fl);
        if (r != DSUP_FRAME_OK)
            break;
        CHECK(fl >= 4 && fl <= size - off);
        if (fl > 4) {
            size_t n = fl - 4;
            char *pl = malloc(n);
            CHECK(pl);
            memcpy(pl, in + off + 4, n);
            dsup_ctrl c;
            const char *err = NULL;
            int rc = dsup_ctrl_decode(pl, n, &c, &err);
            CHECK(rc == DSUP_CTRL_OK || rc == DSUP_CTRL_UNKNOWN_OP || rc == DSUP_CTRL_MALFORMED);
            if (rc == DSUP_CTRL_MALFORMED)
                CHECK(err != NULL);
            if (rc == DSUP_CTRL_OK) {
                CHECK(!c.msg.ptr || (c.msg.ptr > pl && c.msg.ptr + c.msg.len == pl + n));
                check_roundtrip(&c, &enc, &enc2);
            }
            free(pl);
        }
        off += fl;
    }

    /* The term walker alone, over the raw input. */
    char *raw = malloc(size ? size : 1);
    CHECK(raw);
    if (size)
        memcpy(raw, data, size);
    size_t pos = 0;
    if (dsup_term_skip(raw, size, &pos) == 0)
        CHECK(pos > 0 && pos <= size);
    else
        CHECK(pos == 0);
    free(raw);
    return 0;
}
