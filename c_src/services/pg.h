/* pg.h — node-internal hooks of the pg scope peer (the API is in dsup.h). */
#ifndef DSUP_PG_H
#define DSUP_PG_H

#include "dsup.h"

/* A connection came up: discover peer scopes on that node. */
void dsup_pg_conn_up(dsup_node *node, const char *peer);
/* A local process ends: it leaves its groups in every scope. */
struct dsup_proc;
void dsup_pg_proc_exit(struct dsup_proc *p);
/* Node shutdown: stop the discovery timer. */
void dsup_pg_stop_all(dsup_node *node);
/* The node's scope list (node->pg): made by dsup_pg_service_init, freed at close. */
void dsup_pg_service_init_state(dsup_node *node);
void dsup_pg_service_free(dsup_node *node);
/* pg requests to dsup_node (pg_ctrl.c): 1 when handled, reply encoded. */
int dsup_pg_ctrl_call(dsup_node *node, dsup_term req, ei_x_buff *reply);
/* The service's place in the node: registers the calls above, the exit hook
 * and the connection and stop hooks (node_hooks.h). Called once at start by
 * the command line (and by dsup_pg_scope when the node runs without it). */
int dsup_pg_service_init(dsup_node *node);

#endif
