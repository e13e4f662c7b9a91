/* buf.c — growable byte buffer. Capacity doubles, never shrinks: buffers are
 * long-lived (one per connection direction) and reused for every frame. */
#include "buf.h"
#include "xalloc.h"

#include <stdlib.h>
#include <string.h>

int dsup_buf_reserve(dsup_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    size_t need = b->len + extra;
    if (need < b->len)
        return -1; /* overflow */
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    char *p = dsup_xrealloc(b->data, cap);
    b->data = p;
    b->cap = cap;
    return 0;
}

int dsup_buf_append(dsup_buf *b, const void *p, size_t n)
{
    if (dsup_buf_reserve(b, n))
        return -1;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int dsup_buf_put_u8(dsup_buf *b, uint8_t v) { return dsup_buf_append(b, &v, 1); }

int dsup_buf_put_u16be(dsup_buf *b, uint16_t v)
{
    uint8_t d[2] = { (uint8_t)(v >> 8), (uint8_t)v };
    return dsup_buf_append(b, d, 2);
}

int dsup_buf_put_u32be(dsup_buf *b, uint32_t v)
{
    uint8_t d[4];
    dsup_set_u32be(d, v);
    return dsup_buf_append(b, d, 4);
}

int dsup_buf_put_u64be(dsup_buf *b, uint64_t v)
{
    if (dsup_buf_put_u32be(b, (uint32_t)(v >> 32)))
        return -1;
    return dsup_buf_put_u32be(b, (uint32_t)v);
}

void dsup_buf_consume(dsup_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

void dsup_buf_free(dsup_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
