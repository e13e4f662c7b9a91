/* children.c — reading the supervisor tables, the connection table and the
 * node's health for the renderers (at request time, never on a hot path). */
#include <stdio.h>
#include <string.h>

#include "epmd.h"
#include "http/http.h"
#include "node.h"
#include "sup.h"

int http_peer_up(dsup_node *node, const char *peer)
{
    for (size_t i = 0; node && i < node->nconns; i++)
        if (node->conns[i]->peer == peer && node->conns[i]->state == CONN_UP)
            return 1;
    return 0;
}

const char *http_child_type(dsup_node *node, const sup_child *c)
{
    if (c->local) {
        dsup_proc *p = dsup_proc_lookup(node, &c->pid);
        if (p && p->type)
            return p->type->name;
    }
    return c->shared ? c->shared->type : "undefined";
}

int http_child_pending(dsup_node *node, const sup_child *c)
{
    if (c->local)
        return c->terminating;
    return c->pid.node != node->name && !http_peer_up(node, c->pid.node);
}

typedef struct count_ctx {
    dsup_node *node;
    http_type_count *out;
    size_t n, max;
} count_ctx;

static void count_one(sup_child *c, void *arg)
{
    count_ctx *x = arg;
    int pending = http_child_pending(x->node, c);
    if (!c->local && !pending)
        return; /* runs on another node: counted there */
    const char *type = http_child_type(x->node, c);
    size_t i = 0;
    while (i < x->n && strcmp(x->out[i].type, type))
        i++;
    if (i == x->n) {
        if (x->n == x->max)
            return;
        x->out[x->n++] = (http_type_count){ type, 0, 0 };
    }
    if (pending)
        x->out[i].pending++;
    else
        x->out[i].running++;
}

size_t http_count_children(dsup_sup *s, http_type_count *out, size_t max)
{
    count_ctx x = { s->node, out, 0, max };
    sup_foreach_child(s, count_one, &x);
    return x.n;
}

/* An instance named `name` runs now (a stopped one stays listed). */
static int instance_runs(dsup_node *node, const char *name)
{
    for (dsup_sup *s = dsup_sups_of(node); s; s = s->next)
        if (strcmp(s->name, name) == 0 && s->proc && !s->stopping)
            return 1;
    return 0;
}

const char *http_unhealthy(dsup_node *node, char *buf, size_t cap)
{
    if (!node || node->stopping)
        return "node is stopping";
    if (!dsup_epmd_registered(node->epmd))
        return "not registered with epmd";
    /* Every --supervisor instance, and every instance started since. */
    for (int i = 0; i < node->nsups; i++) {
        char name[300];
        snprintf(name, sizeof name, "%s", node->sups[i]);
        char *comma = strchr(name, ',');
        if (comma)
            *comma = 0;
        char abuf[300];
        const char *atom = dsup_atom_from_cli(name, abuf, sizeof abuf);
        if (atom && !instance_runs(node, atom)) {
            snprintf(buf, cap, "supervisor instance %s is not running", atom);
            return buf;
        }
    }
    for (dsup_sup *s = dsup_sups_of(node); s; s = s->next)
        if (!instance_runs(node, s->name)) {
            snprintf(buf, cap, "supervisor instance %s is not running", s->name);
            return buf;
        }
    return NULL;
}

int dsup_http_health(dsup_node *node, dsup_buf *out)
{
    char buf[400];
    const char *why = http_unhealthy(node, buf, sizeof buf);
    out_printf(out, "%s\n", why ? why : "ok");
    return why ? 503 : 200;
}
