/* buf.h — a growable byte buffer, reused across messages so the hot path
 * does not malloc once it has reached its working size. */
#ifndef DSUP_BUF_H
#define DSUP_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct dsup_buf {
    char  *data;
    size_t len;   /* bytes in use */
    size_t cap;   /* bytes allocated */
} dsup_buf;

/* Make room for `extra` more bytes past len. 0, or -1 when out of memory. */
int  dsup_buf_reserve(dsup_buf *b, size_t extra);
int  dsup_buf_append(dsup_buf *b, const void *p, size_t n);
int  dsup_buf_put_u8(dsup_buf *b, uint8_t v);
int  dsup_buf_put_u16be(dsup_buf *b, uint16_t v);
int  dsup_buf_put_u32be(dsup_buf *b, uint32_t v);
int  dsup_buf_put_u64be(dsup_buf *b, uint64_t v);
/* Drop the first n bytes (after a partial parse). */
void dsup_buf_consume(dsup_buf *b, size_t n);
void dsup_buf_free(dsup_buf *b);

static inline uint16_t dsup_get_u16be(const void *p) {
    const uint8_t *s = p; return (uint16_t)((s[0] << 8) | s[1]);
}
static inline uint32_t dsup_get_u32be(const void *p) {
    const uint8_t *s = p;
    return ((uint32_t)s[0] << 24) | ((uint32_t)s[1] << 16) | ((uint32_t)s[2] << 8) | s[3];
}
static inline uint64_t dsup_get_u64be(const void *p) {
    const uint8_t *s = p;
    return ((uint64_t)dsup_get_u32be(s) << 32) | dsup_get_u32be(s + 4);
}
static inline void dsup_set_u32be(void *p, uint32_t v) {
    uint8_t *d = p;
    d[0] = (uint8_t)(v >> 24); d[1] = (uint8_t)(v >> 16); d[2] = (uint8_t)(v >> 8); d[3] = (uint8_t)v;
}

#endif
