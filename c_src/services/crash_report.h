/* crash_report.h — what a supervisor instance says when one of its workers
 * exits (OTP's crash and supervisor reports, as one log line each). */
#ifndef DSUP_CRASH_REPORT_H
#define DSUP_CRASH_REPORT_H

#include "sup.h"

/* What the instance does about the exit. */
typedef enum sup_action {
    SUP_ACT_RESTART,   /* restarts the child here */
    SUP_ACT_NONE,      /* does not restart it (temporary, or transient that stopped normally) */
    SUP_ACT_GIVE_UP,   /* restart intensity reached: the instance shuts down (and is restarted) */
    SUP_ACT_STOPPED,   /* the instance stopped it (terminate_child, shutdown, duplicate) */
} sup_action;

/* Rate limit, per instance: a burst of SUP_REPORT_BURST lines, then one a
 * second; what is suppressed is summed up every SUP_REPORT_SUMMARY_MS. */
#define SUP_REPORT_BURST 10
#define SUP_REPORT_REFILL_MS 1000
#define SUP_REPORT_SUMMARY_MS 5000

/* Group of the instance's pg scope whose members (Elixir observers that
 * opted in) receive {'$dsup', {crash_report, Report}}. */
#define SUP_CRASH_REPORTS_GROUP "$dsup_crash_reports"

/* Report the exit of local child c (c->pid is the pid that exited), before
 * the instance acts. An abnormal reason is logged at error, normal,
 * shutdown and {shutdown, _} at info, SUP_ACT_STOPPED at debug. */
void sup_crash_report(dsup_sup *s, const sup_child *c, dsup_term reason, sup_action action);

/* A (re)start of the child of `spec` failed with `why` (its init's error);
 * `action`: "retry" or "give_up". At error, same rate limit:
 *   crash report: supervisor=S child=C type=T start failed: reason=R action=A */
void sup_start_failed_report(dsup_sup *s, const dsup_child_spec *spec, dsup_term why, const char *action);

#endif
