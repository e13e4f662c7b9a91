/* sched.h — timers and thread-pool work for workers (API in dsup.h). */
#ifndef DSUP_SCHED_H
#define DSUP_SCHED_H

#include "dsup.h"

/* The node's timer list (node->sched): made at node init, freed at close. */
void dsup_sched_init(dsup_node *node);
void dsup_sched_free(dsup_node *node);
/* Cancel every pending send_after timer (node shutdown). */
void dsup_sched_close_all(dsup_node *node);

#endif
