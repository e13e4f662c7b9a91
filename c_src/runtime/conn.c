/* conn.c — a distribution connection's I/O.
 *
 * Reads land in one growable buffer per connection and frames are decoded in
 * place; writes are appended to `wq` and handed to libuv by swapping `wq`
 * with `wflight`, so steady-state traffic allocates nothing per message and
 * many small frames coalesce into one write. */
#include "conn.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "log.h"
#include "metrics.h"

#define READ_CHUNK 65536
/* Handshake packets are small (send_name is the largest: 15 + 255 bytes):
 * an unauthenticated peer gets a small read buffer and no more. */
#define HS_READ_CHUNK 1024
#define HS_MAX_PACKET 512
/* Buffers grown past this by one large message are given back once drained,
 * so one 32 MiB echo does not keep 32 MiB per direction for the connection's life. */
#define SHRINK_ABOVE (1u << 20)

const char *dsup_conn_label(const dsup_conn *c)
{
    if (c->peer)
        return c->peer;
    if (c->hs_name[0])
        return c->hs_name;
    return c->addr_text[0] ? c->addr_text : "?";
}

/* Give a drained buffer back when one large message grew it; returns 1 when
 * memory was released. */
static int shrink_if_large(dsup_buf *b)
{
    if (b->len || b->cap <= SHRINK_ABOVE)
        return 0;
    dsup_buf_free(b);
    return 1;
}

static void release_memory(void)
{
#ifdef __GLIBC__
    /* glibc keeps freed large blocks in the heap (its mmap threshold adapts
     * upward); hand them back to the OS. Runs only after a large message. */
    malloc_trim(0);
#endif
}

dsup_conn *dsup_conn_new(dsup_node *node)
{
    dsup_conn *c = dsup_xcalloc(1, sizeof *c);
    c->node = node;
    uv_tcp_init(node->loop, &c->tcp);
    c->tcp.data = c;
    c->last_rx_ms = dsup_node_now(node);
    return c;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    dsup_conn *c = h->data;
    if (dsup_buf_reserve(&c->rbuf, c->state == CONN_UP ? READ_CHUNK : HS_READ_CHUNK)) {
        b->base = NULL;
        b->len = 0;
        return;
    }
    b->base = c->rbuf.data + c->rbuf.len;
    b->len = c->rbuf.cap - c->rbuf.len;
}

/* Handshake packets: 2-byte length. Returns bytes consumed, or -1. */
static ssize_t read_handshake(dsup_conn *c, const char *p, size_t len)
{
    size_t off = 0;
    while (c->state == CONN_HANDSHAKE && len - off >= 2) {
        size_t n = dsup_get_u16be(p + off);
        if (n > HS_MAX_PACKET) {
            c->error = "handshake packet too large";
            return -1;
        }
        if (len - off - 2 < n)
            break;
        if (dsup_hs_packet(c, (const uint8_t *)p + off + 2, n) < 0)
            return -1;
        off += 2 + n;
    }
    return (ssize_t)off;
}

/* Frames after the handshake. Returns bytes consumed, or -1 (closed). */
static ssize_t read_frames(dsup_conn *c, const char *p, size_t len)
{
    size_t off = 0;
    while (c->state == CONN_UP) {
        size_t flen;
        int r = dsup_frame_next(p + off, len - off, c->node->max_frame, &flen);
        if (r == DSUP_FRAME_NEED_MORE)
            break;
        if (r == DSUP_FRAME_TOO_BIG) {
            LOG_WARN("%s: frame of %u bytes exceeds the limit of %zu bytes", c->peer,
                     dsup_get_u32be(p + off), c->node->max_frame);
            return -1;
        }
        if (flen > 4) {
            dsup_metrics_conn(c)->msgs_in++;
            dsup_ctrl ctrl;
            const char *err = NULL;
            int d = dsup_ctrl_decode(p + off + 4, flen - 4, &ctrl, &err);
            if (d == DSUP_CTRL_MALFORMED) {
                LOG_WARN("%s: malformed frame (%zu bytes): %s; closing the connection", c->peer,
                         flen, err ? err : "bad term");
                return -1;
            }
            if (d == DSUP_CTRL_UNKNOWN_OP)
                LOG_INFO("%s: ignoring control message with unknown op %d", c->peer, ctrl.op);
            else if (dsup_node_dispatch(c, &ctrl) < 0)
                return -1;
        }
        off += flen;
    }
    return (ssize_t)off;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    dsup_conn *c = s->data;
    if (n < 0) {
        if (dsup_hs_waiting_for_theirs(c)) {
            /* The peer closes the attempt it refused with "nok"; this one
             * keeps our queue until their connection is proven (then the
             * queue moves there) or the setup deadline passes. */
            LOG_DEBUG("%s closed our refused attempt; waiting for its connection to be proven",
                      c->peer);
            uv_read_stop(s);
            return;
        }
        if (c->state == CONN_HANDSHAKE && c->outbound && n == UV_EOF)
            dsup_conn_close(c, dsup_hs_closed_reason(c));
        else
            dsup_conn_close(c, n == UV_EOF ? "closed by peer" : uv_strerror((int)n));
        return;
    }
    if (n == 0)
        return;
    c->rbuf.len += (size_t)n;
    dsup_metrics_conn(c)->bytes_in += (uint64_t)n;
    c->last_rx_ms = dsup_node_now(c->node);
    size_t off = 0;
    for (;;) {
        ssize_t used;
        if (c->state == CONN_HANDSHAKE)
            used = read_handshake(c, c->rbuf.data + off, c->rbuf.len - off);
        else if (c->state == CONN_UP)
            used = read_frames(c, c->rbuf.data + off, c->rbuf.len - off);
        else
            break;
        if (used < 0) {
            dsup_conn_close(c, c->error ? c->error : "protocol error");
            return;
        }
        if (used == 0)
            break;
        off += (size_t)used;
    }
    if (c->state == CONN_CLOSING)
        return;
    dsup_buf_consume(&c->rbuf, off);
    if (shrink_if_large(&c->rbuf))
        release_memory();
    /* Replies produced while handling this batch go out now, in one write. */
    dsup_node_flush_all(c->node);
}

int dsup_conn_start(dsup_conn *c)
{
    /* Now that the socket exists: no Nagle delay on small frames. */
    uv_tcp_nodelay(&c->tcp, 1);
    return uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

/* ---- writing ------------------------------------------------------------ */

typedef struct hs_write {
    uv_write_t req;
    char data[];
} hs_write;

static void on_hs_written(uv_write_t *w, int status)
{
    free(w);
}

int dsup_conn_write_hs(dsup_conn *c, const void *body, size_t n)
{
    hs_write *w = dsup_xmalloc(sizeof *w + n + 2);
    w->data[0] = (char)(n >> 8);
    w->data[1] = (char)n;
    memcpy(w->data + 2, body, n);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)(n + 2));
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_hs_written);
    if (rc < 0) {
        free(w);
        return -1;
    }
    return 0;
}

static void on_written(uv_write_t *w, int status)
{
    dsup_conn *c = w->data;
    c->writing = 0;
    c->wflight.len = 0;
    /* When closing, libuv cancels writes before the close callback frees c. */
    if (c->state == CONN_CLOSING)
        return;
    if (status < 0) {
        dsup_conn_close(c, uv_strerror(status));
        return;
    }
    int shrunk = shrink_if_large(&c->wflight);
    shrunk |= shrink_if_large(&c->wq);
    if (shrunk)
        release_memory();
    if (c->wq.len)
        dsup_conn_flush(c);
}

void dsup_conn_flush(dsup_conn *c)
{
    if (c->overflow && c->state != CONN_CLOSING) {
        LOG_WARN("%s does not read: %zu bytes queued exceed --max-out-queue %zu; disconnecting",
                 dsup_conn_label(c), c->wq.len + c->wflight.len, c->node->max_out_queue);
        dsup_conn_close(c, "output queue limit exceeded");
        return;
    }
    if (c->writing || c->state != CONN_UP || c->wq.len == 0)
        return;
    /* Swap the buffers: wq keeps collecting while wflight is written. */
    dsup_buf t = c->wflight;
    c->wflight = c->wq;
    c->wq = t;
    c->wq.len = 0;
    c->wrote_since_tick = 1;
    dsup_metrics_conn(c)->bytes_out += c->wflight.len;
    uv_buf_t b = uv_buf_init(c->wflight.data, (unsigned)c->wflight.len);
    c->wreq.data = c;
    c->writing = 1;
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc < 0) {
        c->writing = 0;
        dsup_conn_close(c, uv_strerror(rc));
    }
}

/* ---- closing ------------------------------------------------------------ */

static void on_closed(uv_handle_t *h)
{
    dsup_conn *c = h->data;
    c->freed_when_done = 1;
    if (!c->pending_cb)
        dsup_node_conn_remove(c);
}

void dsup_conn_close(dsup_conn *c, const char *why)
{
    if (c->state == CONN_CLOSING)
        return;
    int was_up = c->state == CONN_UP;
    if (c->state == CONN_HANDSHAKE) /* why: handshake.c's reason (c->error) or the close's */
        dsup_metrics_hs_failure(c->node, c->peer, why);
    if (was_up)
        dsup_metrics_conn_event(c->node, c->peer, "down", why);
    dsup_conn_enter(c, CONN_CLOSING);
    if (!c->error)
        c->error = why;
    if (was_up)
        LOG_INFO("connection to %s lost: %s", c->peer ? c->peer : "?", why);
    else
        LOG_DEBUG("connection %s%s closed during setup: %s", c->outbound ? "to " : "from ",
                  dsup_conn_label(c), why);
    dsup_node_conn_closed(c);
    if (!uv_is_closing((uv_handle_t *)&c->tcp))
        uv_close((uv_handle_t *)&c->tcp, on_closed);
}
