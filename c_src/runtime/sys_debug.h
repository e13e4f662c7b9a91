/* sys_debug.h — a C worker's sys debug options (sys:statistics, sys:log,
 * sys:no_debug), answered in OTP's shapes (stdlib's sys.erl). The record
 * exists only while an option is on: a worker without one pays one branch
 * per message. */
#ifndef DSUP_SYS_DEBUG_H
#define DSUP_SYS_DEBUG_H

#include <stdint.h>

#include "dsup.h"

typedef struct dsup_sys_dbg dsup_sys_dbg;

/* The reply to {debug, Cmd}, encoded into x; creates or frees *d as options
 * go on and off. Refused (OTP would print on the process's group leader, a
 * C worker has none): trace, log print, log_to_file, install, remove. */
void dsup_sys_debug_cmd(dsup_sys_dbg **d, dsup_term cmd, ei_x_buff *x);

/* Events, as gen_server reports them to sys:handle_debug. */
void dsup_sys_dbg_in(dsup_sys_dbg *d, dsup_proc *p, dsup_term msg);
void dsup_sys_dbg_out(dsup_sys_dbg *d, dsup_proc *p, dsup_term reply, dsup_term from);
void dsup_sys_dbg_noreply(dsup_sys_dbg *d, dsup_proc *p);
/* A callback ran for ns: the reductions-equivalent work measure. */
void dsup_sys_dbg_work(dsup_sys_dbg *d, uint64_t ns);

/* get_status: the Dbg element ([] when d is NULL) and "Logged events". */
void dsup_sys_dbg_encode_opts(const dsup_sys_dbg *d, const dsup_pid *self, ei_x_buff *x);
void dsup_sys_dbg_encode_logged(const dsup_sys_dbg *d, ei_x_buff *x);
void dsup_sys_dbg_free(dsup_sys_dbg *d);

/* The worker's state as get_state shows it (gen_server.c). */
void dsup_gs_encode_state(dsup_proc *p, ei_x_buff *x);

#endif
