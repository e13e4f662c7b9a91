/* sys_debug.c — sys:statistics and sys:log for C workers, in the shapes of
 * stdlib's sys.erl (identical in OTP 25 and 27):
 *
 *   {statistics, true|false}  -> ok
 *   {statistics, get}         -> {ok, [{start_time, LocalDT}, {current_time, LocalDT},
 *                                      {reductions, N}, {messages_in, N},
 *                                      {messages_out, N}]} | {ok, no_statistics}
 *   {log, true|{true,N}|false} -> ok      {log, get} -> {ok, [Event]} (oldest first)
 *   no_debug                   -> ok      anything unknown -> unknown_debug
 *
 * Events are gen_server's: {in, Msg}, {out, Reply, From, State},
 * {noreply, State}; messages_in counts {in, ...}, messages_out {out, ...}, as
 * sys:handle_debug does. A C worker has no reductions: its counter adds, per
 * callback run, 1 plus the whole microseconds spent in it (grows with every
 * message handled, and with the work done).
 *
 * OTP's trace, log print and log_to_file write *DBG* lines through the
 * process's group leader (or a file it opens); a C worker has neither, so
 * switching them on is refused with {error, {not_supported, What}}, and
 * {install, _} (an Erlang fun to run per event) likewise. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "xalloc.h"
#include "proc.h"
#include "sys_debug.h"
#include "term.h"

#define LOG_DEFAULT 10  /* sys:log(P, true), as OTP */
#define LOG_LIMIT 1000  /* {true, N} above this is refused: N slots are allocated */
#define SLOT_KEEP 65536 /* a slot larger than this is not kept for a small event */

struct dsup_sys_dbg {
    int stats_on;
    time_t start;
    uint64_t work, in, out; /* work: reductions-equivalent */
    uint32_t log_max;   /* 0: not logging */
    uint32_t log_next;  /* ring slot written next */
    uint32_t log_count;
    dsup_buf *log;      /* log_max slots, each one encoded event, reused */
};

void dsup_gs_encode_state(dsup_proc *p, ei_x_buff *x)
{
    if (p->type->encode_state)
        p->type->encode_state(p, p->state, x);
    else
        dsup_x_encode_atom(x, "undefined");
}

static void free_log(dsup_sys_dbg *d)
{
    for (uint32_t i = 0; i < d->log_max; i++)
        dsup_buf_free(&d->log[i]);
    free(d->log);
    d->log = NULL;
    d->log_max = d->log_next = d->log_count = 0;
}

void dsup_sys_dbg_free(dsup_sys_dbg *d)
{
    if (!d)
        return;
    free_log(d);
    free(d);
}

static void encode_local_time(ei_x_buff *x, time_t t)
{
    struct tm tm;
    localtime_r(&t, &tm); /* erlang:localtime(): same machine, same TZ rules */
    ei_x_encode_tuple_header(x, 2);
    ei_x_encode_tuple_header(x, 3);
    ei_x_encode_long(x, tm.tm_year + 1900);
    ei_x_encode_long(x, tm.tm_mon + 1);
    ei_x_encode_long(x, tm.tm_mday);
    ei_x_encode_tuple_header(x, 3);
    ei_x_encode_long(x, tm.tm_hour);
    ei_x_encode_long(x, tm.tm_min);
    ei_x_encode_long(x, tm.tm_sec);
}

static void encode_tagged2(ei_x_buff *x, const char *tag, const char *what)
{
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, tag);
    dsup_x_encode_atom(x, what);
}

static void refuse(ei_x_buff *x, const char *what)
{
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "error");
    encode_tagged2(x, "not_supported", what);
}

static void encode_stats(const dsup_sys_dbg *d, ei_x_buff *x)
{
    ei_x_encode_list_header(x, 5);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "start_time");
    encode_local_time(x, d->start);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "current_time");
    encode_local_time(x, time(NULL));
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "reductions");
    ei_x_encode_ulong(x, (unsigned long)d->work);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "messages_in");
    ei_x_encode_ulong(x, (unsigned long)d->in);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "messages_out");
    ei_x_encode_ulong(x, (unsigned long)d->out);
    ei_x_encode_empty_list(x);
}

/* Logged events oldest first (newest_first: as OTP keeps them in Dbg). */
static void encode_events(const dsup_sys_dbg *d, ei_x_buff *x, int newest_first, const dsup_pid *self)
{
    if (!d || !d->log_count) {
        ei_x_encode_empty_list(x);
        return;
    }
    ei_x_encode_list_header(x, d->log_count);
    uint32_t oldest = (d->log_next + d->log_max - d->log_count) % d->log_max;
    for (uint32_t k = 0; k < d->log_count; k++) {
        uint32_t i = newest_first ? (d->log_next + d->log_max - 1 - k) % d->log_max : (oldest + k) % d->log_max;
        dsup_term ev = { d->log[i].data, d->log[i].len };
        if (self) { /* OTP: {Event, Pid, FormatFun}; there is no fun here */
            ei_x_encode_tuple_header(x, 3);
            dsup_x_encode_term(x, ev);
            dsup_x_encode_pid(x, self);
            dsup_x_encode_atom(x, "dsup");
        } else {
            dsup_x_encode_term(x, ev);
        }
    }
    ei_x_encode_empty_list(x);
}

void dsup_sys_dbg_encode_logged(const dsup_sys_dbg *d, ei_x_buff *x) { encode_events(d, x, 0, NULL); }

void dsup_sys_dbg_encode_opts(const dsup_sys_dbg *d, const dsup_pid *self, ei_x_buff *x)
{
    if (!d) {
        ei_x_encode_empty_list(x);
        return;
    }
    int n = (d->log_max > 0) + d->stats_on;
    if (n)
        ei_x_encode_list_header(x, n);
    if (d->log_max) {
        /* sys.erl's ring: [Free | Events] until full, then a queue of
         * lists; written here as its form on the event that fills it,
         * [[Events]], which sys reads back the same. Newest first. */
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_atom(x, "log");
        ei_x_encode_list_header(x, 1);
        if (d->log_count < d->log_max) {
            ei_x_encode_ulong(x, d->log_max - d->log_count);
            encode_events(d, x, 1, self);
        } else {
            encode_events(d, x, 1, self);
            ei_x_encode_empty_list(x);
        }
    }
    if (d->stats_on) { /* {statistics, {StartTime, {reductions, R0}, In, Out}} */
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_atom(x, "statistics");
        ei_x_encode_tuple_header(x, 4);
        encode_local_time(x, d->start);
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_atom(x, "reductions");
        ei_x_encode_long(x, 0);
        ei_x_encode_ulong(x, (unsigned long)d->in);
        ei_x_encode_ulong(x, (unsigned long)d->out);
    }
    ei_x_encode_empty_list(x);
}

static dsup_sys_dbg *ensure(dsup_sys_dbg **d)
{
    if (!*d)
        *d = dsup_xcalloc(1, sizeof **d);
    return *d;
}

/* Nothing on any more: the worker goes back to paying nothing. */
static void maybe_drop(dsup_sys_dbg **d)
{
    if (*d && !(*d)->stats_on && !(*d)->log_max) {
        dsup_sys_dbg_free(*d);
        *d = NULL;
    }
}

static int start_log(dsup_sys_dbg **d, long n)
{
    if (*d && (*d)->log_max)
        return 0; /* already on: kept as it is, as OTP's install_debug does */
    dsup_sys_dbg *s = ensure(d);
    if (!s || !(s->log = dsup_xcalloc((size_t)n, sizeof *s->log))) {
        maybe_drop(d);
        return -1;
    }
    s->log_max = (uint32_t)n;
    return 0;
}

void dsup_sys_debug_cmd(dsup_sys_dbg **d, dsup_term cmd, ei_x_buff *x)
{
    dsup_term el[3];
    int ar;
    if (dsup_term_is_atom(cmd, "no_debug")) {
        dsup_sys_dbg_free(*d);
        *d = NULL;
        dsup_x_encode_atom(x, "ok");
        return;
    }
    if (!dsup_term_tagged(cmd, "statistics", &ar, el, 3) && !dsup_term_tagged(cmd, "log", &ar, el, 3) &&
        !dsup_term_tagged(cmd, "trace", &ar, el, 3) && !dsup_term_tagged(cmd, "log_to_file", &ar, el, 3) &&
        !dsup_term_tagged(cmd, "install", &ar, el, 3) && !dsup_term_tagged(cmd, "remove", &ar, el, 3)) {
        dsup_x_encode_atom(x, "unknown_debug");
        return;
    }
    if (ar != 2) {
        dsup_x_encode_atom(x, "unknown_debug");
        return;
    }
    dsup_term arg = el[1];
    const char *off = "false";
    if (dsup_term_tagged(cmd, "statistics", &ar, el, 3)) {
        if (dsup_term_is_atom(arg, "true")) {
            dsup_sys_dbg *s = ensure(d);
            if (s && !s->stats_on) { /* already on: kept, as OTP does */
                s->stats_on = 1;
                s->start = time(NULL);
                s->work = s->in = s->out = 0;
            }
            dsup_x_encode_atom(x, s ? "ok" : "unknown_debug");
        } else if (dsup_term_is_atom(arg, "false")) {
            if (*d)
                (*d)->stats_on = 0;
            maybe_drop(d);
            dsup_x_encode_atom(x, "ok");
        } else if (dsup_term_is_atom(arg, "get")) {
            ei_x_encode_tuple_header(x, 2);
            dsup_x_encode_atom(x, "ok");
            if (*d && (*d)->stats_on)
                encode_stats(*d, x);
            else
                dsup_x_encode_atom(x, "no_statistics");
        } else {
            dsup_x_encode_atom(x, "unknown_debug");
        }
        return;
    }
    if (dsup_term_tagged(cmd, "log", &ar, el, 3)) {
        dsup_term n[3];
        int nar;
        long max = 0;
        if (dsup_term_is_atom(arg, "true"))
            max = LOG_DEFAULT;
        else if (dsup_term_tagged(arg, "true", &nar, n, 3) && nar == 2) {
            int i = 0;
            if (ei_decode_long(n[1].buf, &i, &max) < 0 || max < 1)
                max = -1;
        }
        if (max > LOG_LIMIT) {
            ei_x_encode_tuple_header(x, 2);
            dsup_x_encode_atom(x, "error");
            ei_x_encode_tuple_header(x, 2);
            dsup_x_encode_atom(x, "log_too_long");
            ei_x_encode_long(x, LOG_LIMIT);
        } else if (max > 0) {
            dsup_x_encode_atom(x, start_log(d, max) == 0 ? "ok" : "unknown_debug");
        } else if (dsup_term_is_atom(arg, "false")) {
            if (*d)
                free_log(*d);
            maybe_drop(d);
            dsup_x_encode_atom(x, "ok");
        } else if (dsup_term_is_atom(arg, "get")) {
            ei_x_encode_tuple_header(x, 2);
            dsup_x_encode_atom(x, "ok");
            dsup_sys_dbg_encode_logged(*d, x);
        } else if (dsup_term_is_atom(arg, "print")) {
            refuse(x, "print");
        } else {
            dsup_x_encode_atom(x, "unknown_debug");
        }
        return;
    }
    if (dsup_term_tagged(cmd, "remove", &ar, el, 3)) {
        dsup_x_encode_atom(x, "ok"); /* nothing can have been installed */
        return;
    }
    const char *what = dsup_term_tagged(cmd, "trace", &ar, el, 3)         ? "trace"
                       : dsup_term_tagged(cmd, "log_to_file", &ar, el, 3) ? "log_to_file"
                                                                          : "install";
    if (strcmp(what, "install") != 0 && dsup_term_is_atom(arg, off))
        dsup_x_encode_atom(x, "ok"); /* switching off what is never on */
    else
        refuse(x, what);
}

/* ---- events -------------------------------------------------------------------- */

static void log_event(dsup_sys_dbg *d, const ei_x_buff *ev)
{
    dsup_buf *slot = &d->log[d->log_next];
    /* The slot's memory is reused (no allocation once warm); one huge
     * message must not pin its size in the slot for the log's life. */
    if (slot->cap > SLOT_KEEP && (size_t)ev->index < slot->cap / 4)
        dsup_buf_free(slot);
    slot->len = 0;
    if (dsup_buf_append(slot, ev->buff, (size_t)ev->index) < 0)
        return;
    d->log_next = (d->log_next + 1) % d->log_max;
    if (d->log_count < d->log_max)
        d->log_count++;
}

void dsup_sys_dbg_in(dsup_sys_dbg *d, dsup_proc *p, dsup_term msg)
{
    d->in += d->stats_on;
    if (!d->log_max)
        return;
    ei_x_buff *x = dsup_term_scratch(p->node);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "in");
    dsup_x_encode_term(x, msg);
    log_event(d, x);
    dsup_term_scratch_release(x);
}

void dsup_sys_dbg_out(dsup_sys_dbg *d, dsup_proc *p, dsup_term reply, dsup_term from)
{
    d->out += d->stats_on;
    if (!d->log_max)
        return;
    ei_x_buff *x = dsup_term_scratch(p->node);
    ei_x_encode_tuple_header(x, 4);
    dsup_x_encode_atom(x, "out");
    dsup_x_encode_term(x, reply);
    dsup_x_encode_term(x, from);
    dsup_gs_encode_state(p, x);
    log_event(d, x);
    dsup_term_scratch_release(x);
}

void dsup_sys_dbg_noreply(dsup_sys_dbg *d, dsup_proc *p)
{
    if (!d->log_max)
        return;
    ei_x_buff *x = dsup_term_scratch(p->node);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "noreply");
    dsup_gs_encode_state(p, x);
    log_event(d, x);
    dsup_term_scratch_release(x);
}

void dsup_sys_dbg_work(dsup_sys_dbg *d, uint64_t ns)
{
    if (d->stats_on)
        d->work += 1 + ns / 1000;
}
