/* pg.h — node-internal hooks of the pg scope peer (the API is in dsup.h). */
#ifndef DSUP_PG_H
#define DSUP_PG_H

#include "dsup.h"

/* A connection came up: discover peer scopes on that node. */
void dsup_pg_conn_up(const char *node);
/* A local process ends: it leaves its groups in every scope. */
struct dsup_proc;
void dsup_pg_proc_exit(struct dsup_proc *p);
/* Node shutdown: stop the discovery timer. */
void dsup_pg_stop_all(void);

#endif
