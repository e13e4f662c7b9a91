/* xalloc.c — allocation that never returns NULL (xalloc.h says why). */
#include "xalloc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

size_t dsup_oom_format(char *out, size_t cap, size_t n, const char *file, int line)
{
    int k = snprintf(out, cap, "dsup: out of memory allocating %zu bytes (%s:%d)\n", n, file, line);
    if (k < 0)
        return 0;
    return (size_t)k < cap ? (size_t)k : cap ? cap - 1 : 0;
}

/* Straight to stderr with write(2): the logger may itself need memory, and
 * a process out of memory should say why before it dies. */
static void oom(size_t n, const char *file, int line)
{
    char msg[512];
    size_t len = dsup_oom_format(msg, sizeof msg, n, file, line);
    ssize_t w = write(STDERR_FILENO, msg, len);
    (void)w;
    abort();
}

void *dsup_xmalloc_at(size_t n, const char *file, int line)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n, file, line);
    return p;
}

void *dsup_xcalloc_at(size_t nmemb, size_t size, const char *file, int line)
{
    if (size && nmemb > SIZE_MAX / size)
        oom(SIZE_MAX, file, line);
    void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);
    if (!p)
        oom(nmemb * size, file, line);
    return p;
}

void *dsup_xrealloc_at(void *p, size_t n, const char *file, int line)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n, file, line);
    return q;
}

char *dsup_xstrdup_at(const char *s, const char *file, int line)
{
    size_t n = strlen(s) + 1;
    char *p = dsup_xmalloc_at(n, file, line);
    memcpy(p, s, n);
    return p;
}
