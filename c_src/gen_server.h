/* gen_server.h — the worker behaviour and the worker-type registry. */
#ifndef DSUP_GEN_SERVER_H
#define DSUP_GEN_SERVER_H

#include "dsup.h"
#include "proc.h"

/* Types the node uses itself (dsup_node): not listed by which_workers. */
int dsup_register_internal_type(const dsup_worker_type *t);
/* [{Type, LiveCount}] for every user-visible type. */
int dsup_which_workers(ei_x_buff *x);
/* Spawn returning the process: 0; -1 init refused (reason set); -2 unknown type. */
int dsup_spawn_proc(const char *type_name, const dsup_term *args, dsup_proc *link_to, dsup_proc **out,
                    ei_x_buff *reason);

#endif
