/* ratelimit.h — a log line per event, but at most `burst` per window, so a
 * peer that floods us with bad attempts cannot flood the log: the lines left
 * out are counted and the count is reported with the next line let through. */
#ifndef DSUP_RATELIMIT_H
#define DSUP_RATELIMIT_H

#include <stdint.h>

typedef struct dsup_ratelimit {
    uint64_t window_start;
    unsigned in_window;
    unsigned suppressed;
} dsup_ratelimit;

#define DSUP_RATELIMIT_WINDOW_MS 10000
#define DSUP_RATELIMIT_BURST 10

/* 1 when a line may be logged now; *dropped gets the lines left out since
 * the last one that was logged. */
static inline int dsup_ratelimit_ok(dsup_ratelimit *r, uint64_t now, unsigned *dropped)
{
    if (now - r->window_start >= DSUP_RATELIMIT_WINDOW_MS) {
        r->window_start = now;
        r->in_window = 0;
    }
    if (r->in_window >= DSUP_RATELIMIT_BURST) {
        r->suppressed++;
        return 0;
    }
    r->in_window++;
    *dropped = r->suppressed;
    r->suppressed = 0;
    return 1;
}

#endif
