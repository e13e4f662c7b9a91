/* workers.h — the built-in worker types (echo, counter, kv). */
#ifndef DSUP_WORKERS_H
#define DSUP_WORKERS_H

#include "dsup.h"

extern const dsup_worker_type dsup_worker_echo;
extern const dsup_worker_type dsup_worker_counter;
extern const dsup_worker_type dsup_worker_kv;

/* Register all built-in types (idempotent). */
void dsup_register_builtin_workers(void);

#endif
