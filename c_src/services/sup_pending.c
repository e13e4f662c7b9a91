/* sup_pending.c — children that no surviving host can run.
 *
 * When a node is lost and no host left can run one of its permanent or
 * transient children (its C type is loaded nowhere else, or it is a BEAM
 * child and no Elixir host is left), every instance keeps the child as
 * pending: all of them decide alike, since placement is a pure function of
 * what pg shows. When a host joins, each instance holding pending children
 * hands each one whose owner now exists to that owner
 * ({'$dsup', {start_pending, Name, SpecMap}}; the owner starts it unless a
 * copy already runs), and forgets it once the child is up (sup_cache_put). */
#include <stdlib.h>
#include <string.h>

#include <ei.h>

#include "log.h"
#include "xalloc.h"
#include "node.h"
#include "sup.h"
#include "term.h"

static void emit_pending(dsup_sup *s, const dsup_child_spec *spec)
{
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 3);
    dsup_x_encode_atom(x, "process_pending");
    dsup_x_encode_term(x, spec->name);
    dsup_x_encode_atom(x, spec->type);
    sup_emit(s, x);
    dsup_term_scratch_release(x);
}

void sup_pending_child_add(dsup_sup *s, const dsup_child_spec *from)
{
    dsup_child_spec *spec = dsup_spec_with_name(from, from->name);
    if (!spec)
        return;
    int created;
    dsup_dict_ent *e = dsup_dict_upsert(&s->pending_children, spec->name.buf, spec->name.len, &created);
    if (!e) {
        free(spec);
        return;
    }
    free(dsup_dict_get(e));
    dsup_dict_set(e, spec);
    char *txt = NULL;
    int i = 0;
    ei_s_print_term(&txt, spec->name.buf, &i);
    LOG_WARN("%s: no host can run %s for child %s: pending until one joins", s->name, spec->type,
             txt ? txt : "?");
    free(txt);
    emit_pending(s, spec);
}

void sup_pending_child_forget(dsup_sup *s, dsup_term name)
{
    if (s->pending_children.count)
        free(dsup_dict_remove(&s->pending_children, name.buf, name.len));
}

size_t sup_pending_child_count(dsup_sup *s) { return s->pending_children.count; }

static void encode_one(dsup_dict_ent *e, void *arg)
{
    const dsup_child_spec *spec = dsup_dict_get(e);
    dsup_x_encode_term(arg, spec->name);
    dsup_spec_encode_map(arg, spec, 0);
}

void sup_pending_child_encode(dsup_sup *s, ei_x_buff *x)
{
    ei_x_encode_map_header(x, (long)s->pending_children.count);
    dsup_dict_foreach(&s->pending_children, encode_one, x);
}

typedef struct retry_ctx {
    dsup_sup *s;
    dsup_child_spec **mine;
    size_t n, cap;
} retry_ctx;

static void retry_one(dsup_dict_ent *e, void *arg)
{
    retry_ctx *r = arg;
    const dsup_child_spec *spec = dsup_dict_get(e);
    const char *owner = sup_place_owner(r->s, spec, 0);
    if (!owner)
        return;
    if (owner == r->s->node->name) {
        if (r->n == r->cap) {
            size_t nc = r->cap ? r->cap * 2 : 16;
            dsup_child_spec **nl = dsup_xrealloc(r->mine, nc * sizeof *nl);
            r->mine = nl;
            r->cap = nc;
        }
        r->mine[r->n++] = dsup_spec_with_name(spec, spec->name);
        return;
    }
    const dsup_pid *host = sup_host_on(r->s, owner);
    if (!host)
        return;
    ei_x_buff *x = dsup_term_scratch(r->s->node);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "$dsup");
    ei_x_encode_tuple_header(x, 3);
    dsup_x_encode_atom(x, "start_pending");
    dsup_x_encode_term(x, spec->name);
    dsup_spec_encode_map(x, spec, 1);
    dsup_send(r->s->proc, host, x);
    dsup_term_scratch_release(x);
}

void sup_pending_child_retry(dsup_sup *s)
{
    if (!s->pending_children.count || s->stopping)
        return;
    retry_ctx r = { s, NULL, 0, 0 };
    dsup_dict_foreach(&s->pending_children, retry_one, &r);
    for (size_t i = 0; i < r.n; i++) {
        if (!r.mine[i])
            continue;
        ei_x_buff *x = dsup_term_scratch(s->node);
        /* takes the spec; on success the cache forgets the pending entry */
        if (sup_start_local(s, r.mine[i], x) < 0)
            LOG_WARN("%s: a pending child was not started here (refused, or a copy runs already)", s->name);
        dsup_term_scratch_release(x);
    }
    free(r.mine);
}

/* {start_pending, Name, SpecMap} from another instance: we are the owner. */
void sup_pending_child_start(dsup_sup *s, dsup_term name, dsup_term spec_t)
{
    dsup_child_spec *spec, *named;
    if (s->stopping || dsup_spec_parse(s->node, spec_t, &spec) < 0)
        return;
    named = dsup_spec_with_name(spec, name);
    free(spec);
    if (!named)
        return;
    ei_x_buff *x = dsup_term_scratch(s->node);
    sup_start_local(s, named, x); /* refuses a copy already running */
    dsup_term_scratch_release(x);
}

void sup_pending_child_free_all(dsup_sup *s) { dsup_dict_free(&s->pending_children, free); }
