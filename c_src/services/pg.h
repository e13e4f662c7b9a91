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

/* Data attached to groups: the single owner of a scope (a supervisor
 * instance and its scope Name.Scope) keeps a fixed-size record per group
 * inside the group's own allocation (README, Memory per child). A group
 * whose record is held stays while it has no member, yet pg does not see
 * it (no sync, no which_groups, no count): it is a group only with members.
 * pg itself never reads the bytes. */
/* Every group of s gets size more bytes (rounded up to 8), zeroed: set
 * once (the same size again is 0); groups made before are moved. 0 or
 * DSUP_EINVAL. */
int dsup_pg_set_attach_size(dsup_pg *s, size_t size);
/* group's attached bytes, the group made (empty) when missing, and held;
 * *created (may be NULL): 1 when they were not held (zeroed). NULL when s
 * has no attachment or out of memory. */
void *dsup_pg_attach(dsup_pg *s, dsup_term group, int *created);
/* The attached bytes of group when held, else NULL. */
void *dsup_pg_attached(dsup_pg *s, dsup_term group);
/* No longer held: zeroed, and the group goes if it has no member. att is
 * not to be used again. */
void dsup_pg_detach(dsup_pg *s, void *att);
/* The key (encoded group term) of the group att is attached to. */
dsup_term dsup_pg_attached_key(const void *att);
/* What s keeps: the groups pg sees (with members), all its entries (held
 * ones without members too), the held ones. */
void dsup_pg_counts(const dsup_pg *s, size_t *groups, size_t *entries, size_t *held);
/* How many groups are held. */
size_t dsup_pg_attached_count(const dsup_pg *s);
/* Each held group's bytes; fn may detach the one it is given, nothing else
 * (no attach, join or leave). */
void dsup_pg_foreach_attached(dsup_pg *s, void (*fn)(void *att, void *arg), void *arg);
/* The same a slot at a time (an incremental pass): how many slots, and the
 * held groups of one slot (returns how many groups it visited). A change
 * of the slot count means the table was resized: start over. */
size_t dsup_pg_attached_slots(const dsup_pg *s);
size_t dsup_pg_attached_visit_slot(dsup_pg *s, size_t slot, void (*fn)(void *att, void *arg), void *arg);

#endif
