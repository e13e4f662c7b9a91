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
/* pg requests to dsup_node (pg_ctrl.c): 1 when handled, reply encoded. */
int dsup_pg_ctrl_call(dsup_term req, ei_x_buff *reply);
/* The service's place in the node: registers the calls above, the exit hook
 * and the connection and stop hooks (node_hooks.h). Called once at start by
 * the command line (and by dsup_pg_scope when the node runs without it). */
int dsup_pg_service_init(void);

#endif
