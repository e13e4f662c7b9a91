/* unit_loop.h — running a uv loop in unit tests that bring up real nodes. */
#ifndef DSUP_UNIT_LOOP_H
#define DSUP_UNIT_LOOP_H

#include <stdint.h>
#include <uv.h>

static void unit_on_wake(uv_timer_t *t) { (void)t; }

/* Run `loop` until cond(arg) holds (1) or ms pass (0). */
static inline int unit_run_until(uv_loop_t *loop, int (*cond)(void *arg), void *arg, unsigned ms)
{
    uv_timer_t wake; /* bounds each loop turn: the deadline is checked at least this often */
    uv_timer_init(loop, &wake);
    uv_timer_start(&wake, unit_on_wake, 20, 20);
    uv_update_time(loop);
    uint64_t deadline = uv_now(loop) + ms;
    int ok;
    while (!(ok = cond(arg)) && uv_now(loop) < deadline)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&wake, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ok;
}

#endif
