/* xalloc.h — the node's one allocation rule (README, Architecture): every
 * allocation goes through these wrappers, which never return NULL. Out of
 * memory is not a condition the node can recover from piecemeal (a half-built
 * table is worse than a restart by the supervisor above it), so they log
 * "out of memory allocating N bytes (file:line)" and abort().
 *
 * Sizes a peer controls (frame lengths, list arities, term copies) are
 * bounded BEFORE they reach these wrappers, so a peer cannot make the node
 * abort by announcing a huge size. The one exception: the stacks of the term
 * walkers (wire/term_skip.c, wire/phash2.c) grow with a term's nesting,
 * which a peer chooses (gigabytes of frames for a --max-frame term), so
 * they use plain checked realloc and fail the term instead. */
#ifndef DSUP_XALLOC_H
#define DSUP_XALLOC_H

#include <stddef.h>

void *dsup_xmalloc_at(size_t n, const char *file, int line);
void *dsup_xcalloc_at(size_t nmemb, size_t size, const char *file, int line);
void *dsup_xrealloc_at(void *p, size_t n, const char *file, int line);
char *dsup_xstrdup_at(const char *s, const char *file, int line);

#define dsup_xmalloc(n)      dsup_xmalloc_at((n), __FILE__, __LINE__)
#define dsup_xcalloc(n, sz)  dsup_xcalloc_at((n), (sz), __FILE__, __LINE__)
#define dsup_xrealloc(p, n)  dsup_xrealloc_at((p), (n), __FILE__, __LINE__)
#define dsup_xstrdup(s)      dsup_xstrdup_at((s), __FILE__, __LINE__)

/* The abort path, exposed so the unit test can check the message without
 * exhausting memory: writes the line into out (cap bytes), returns length. */
size_t dsup_oom_format(char *out, size_t cap, size_t n, const char *file, int line);

#endif
