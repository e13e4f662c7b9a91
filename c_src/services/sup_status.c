/* sup_status.c — an instance's own figures, for DistributedSupervisor.status/1:
 * gen_server:call({Name, Node}, status) ->
 *   [{node, Node}, {children, LocalChildren}, {pending, InFlightStarts},
 *    {restarts, Restarts}]
 * children: children running on this node; pending: start_child requests
 * this instance forwarded to their owner and still awaits; restarts: the
 * children it restarted since the node started (all worker types; the same
 * counter as dsup_child_restarts_total on /metrics). */
#include <string.h>

#include "metrics.h"
#include "node.h"
#include "sup.h"
#include "term.h"

static void kv(ei_x_buff *x, const char *k, unsigned long v)
{
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, k);
    ei_x_encode_ulong(x, v);
}

void sup_encode_status(dsup_sup *s, ei_x_buff *x)
{
    unsigned long pending = 0, restarts = 0;
    for (const sup_pending *p = s->pending; p; p = p->next)
        pending += !p->is_terminate;
    for (const dsup_sup_stats *st = dsup_metrics_sups(s->node); st; st = st->next)
        if (strcmp(st->instance, s->name) == 0)
            restarts += (unsigned long)st->restarts;
    ei_x_encode_list_header(x, 4);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "node");
    dsup_x_encode_atom(x, s->proc ? dsup_self(s->proc)->node : "undefined");
    kv(x, "children", (unsigned long)sup_local_count(s));
    kv(x, "pending", pending);
    kv(x, "restarts", restarts);
    ei_x_encode_empty_list(x);
}
