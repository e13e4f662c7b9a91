/* out.c — appending text, JSON strings and Prometheus label values. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "http/http.h"

void out_printf(dsup_buf *b, const char *fmt, ...)
{
    /* One pass when it fits in the room reserved (nearly always). */
    if (dsup_buf_reserve(b, 256))
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= b->cap - b->len) {
        if (dsup_buf_reserve(b, (size_t)n + 1))
            return;
        va_start(ap, fmt);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    b->len += (size_t)n;
}

void out_str(dsup_buf *b, const char *s) { dsup_buf_append(b, s, strlen(s)); }

/* Length of the valid UTF-8 sequence at p (1-4), or 0. */
static size_t utf8_len(const unsigned char *p)
{
    if (p[0] < 0x80)
        return 1;
    size_t n = p[0] >= 0xf0 && p[0] <= 0xf4 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 && p[0] < 0xe0 ? 2 : 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

/* A JSON string. Names can hold any bytes (a child named by a binary):
 * bytes that are not UTF-8 become U+FFFD so that the document stays valid. */
void out_json_str(dsup_buf *b, const char *s)
{
    dsup_buf_put_u8(b, '"');
    s = s ? s : "";
    size_t plain = 0;
    while (s[plain] && s[plain] != '"' && s[plain] != '\\' && (unsigned char)s[plain] >= 0x20 &&
           (unsigned char)s[plain] < 0x80)
        plain++;
    dsup_buf_append(b, s, plain);
    for (const unsigned char *p = (const unsigned char *)s + plain; *p;) {
        size_t n = utf8_len(p);
        if (*p == '"' || *p == '\\') {
            dsup_buf_put_u8(b, '\\');
            dsup_buf_put_u8(b, *p);
        } else if (*p < 0x20) {
            out_printf(b, "\\u%04x", *p);
        } else if (n == 0) {
            out_str(b, "\\ufffd");
            n = 1;
        } else {
            dsup_buf_append(b, p, n);
        }
        p += n ? n : 1;
    }
    dsup_buf_put_u8(b, '"');
}

void out_label(dsup_buf *b, const char *s)
{
    s = s ? s : "";
    size_t plain = strcspn(s, "\"\\\n");
    dsup_buf_append(b, s, plain);
    for (const char *p = s + plain; *p; p++) {
        if (*p == '"' || *p == '\\')
            dsup_buf_put_u8(b, '\\');
        if (*p == '\n')
            out_str(b, "\\n");
        else
            dsup_buf_put_u8(b, (uint8_t)*p);
    }
}
