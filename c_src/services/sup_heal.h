/* sup_heal.h — the node as the supervisor instances' parent: an instance
 * that ends while the node runs (restart intensity reached, or killed) is
 * restarted with exponential backoff; beyond the node's own intensity the
 * node exits non-zero for its service manager to restart it. */
#ifndef DSUP_SUP_HEAL_H
#define DSUP_SUP_HEAL_H

#include "sup.h"

/* --max-instance-restarts N in --max-instance-seconds S: more instance
 * restarts than N within S seconds (all instances of the node together)
 * stop the node with DSUP_EXIT_SOFTWARE. */
extern int dsup_heal_max_restarts;
extern int dsup_heal_max_seconds;
#define DSUP_HEAL_DEFAULT_MAX_RESTARTS 3
#define DSUP_HEAL_DEFAULT_MAX_SECONDS 60
#define DSUP_EXIT_SOFTWARE 70 /* EX_SOFTWARE, sysexits(3) */

/* Backoff before an instance restart: BASE ms, doubled for each restart of
 * that instance within the node's window, at most MAX ms. */
#define DSUP_HEAL_BACKOFF_BASE_MS 250
#define DSUP_HEAL_BACKOFF_MAX_MS 30000

/* Hooks (sup.c): an instance started with these options (kept for its
 * restarts); an instance process ended with reason. */
void sup_heal_started(dsup_sup *s, const dsup_term *opts);
void sup_heal_ended(dsup_sup *s, dsup_term reason);
/* A child spec the ending instance could not restart (its init failed until
 * the intensity was reached), or of one of its local children when its
 * restart takes over its records (sup_cache_release): the restarted
 * instance starts it unless it runs somewhere. Takes ownership. */
void sup_heal_keep(dsup_sup *s, dsup_child_spec *spec);

#endif
