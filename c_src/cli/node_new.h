/* node_new.h — a whole node (runtime, pg, supervisors) made as a library
 * object: dsup_node_new (dsup.h) and the command line share this. */
#ifndef DSUP_NODE_NEW_H
#define DSUP_NODE_NEW_H

#include "dsup.h"

/* Plug the services (pg, the supervisor instances) into a node made by
 * dsup_node_alloc, lowest first. 0, or -1 (a hook table is full). */
int dsup_node_services_init(dsup_node *node);

#endif
