/* gen_server.h — the worker behaviour and the worker-type registry. */
#ifndef DSUP_GEN_SERVER_H
#define DSUP_GEN_SERVER_H

#include "dsup.h"
#include "proc.h"

/* Types the node uses itself (dsup_node): not listed by which_workers. */
int dsup_register_internal_type(const dsup_worker_type *t);
/* The names of the user-visible types (up to max in out); returns how many there are. */
size_t dsup_worker_type_names(const char **out, size_t max);
/* [{Type, LiveCount}] for every user-visible type. */
int dsup_which_workers(dsup_node *node, ei_x_buff *x);
/* Spawn returning the process: 0; -1 init refused (reason set); -2 unknown type. */
int dsup_spawn_proc(dsup_node *node, const char *type_name, const dsup_term *args, dsup_proc *link_to,
                    dsup_proc **out, ei_x_buff *reason);

/* Spawn a child of `parent` (a supervisor): linked both ways, but without
 * link records — the parent must keep its children and signal them when it
 * ends (its EXIT still arrives). Saves ~100 bytes per child. */
int dsup_spawn_child(const char *type_name, const dsup_term *args, dsup_proc *parent, dsup_proc **out,
                     ei_x_buff *reason);
/* Messages held back by a worker (metrics: largest message queue). */
size_t dsup_gs_queue_len(const dsup_proc *p);
/* The same, started as a move: init sees `handoff` through
 * dsup_handoff_state() (NULL: a fresh start). */
int dsup_spawn_child_handoff(const char *type_name, const dsup_term *args, const dsup_term *handoff,
                             dsup_proc *parent, dsup_proc **out, ei_x_buff *reason);

#endif
