/* sched.h — timers and thread-pool work for workers (API in dsup.h). */
#ifndef DSUP_SCHED_H
#define DSUP_SCHED_H

/* Cancel every pending send_after timer (node shutdown). */
void dsup_sched_close_all(void);

#endif
