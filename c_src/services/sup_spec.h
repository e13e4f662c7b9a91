/* sup_spec.h — parsing and printing child specs (sup_spec.c). */
#ifndef DSUP_SUP_SPEC_H
#define DSUP_SUP_SPEC_H

#include "dsup.h"

enum { DSUP_RESTART_PERMANENT = 0, DSUP_RESTART_TRANSIENT = 1, DSUP_RESTART_TEMPORARY = 2 };
#define DSUP_SHUTDOWN_BRUTAL (-1L)
#define DSUP_SHUTDOWN_INFINITY (-2L)

/* One allocation: the struct, then the name and args bytes. free() it.
 * The name is either inside that allocation or a view of bytes that outlive
 * the spec: the child table's key (dsup_spec_with_name_view), or the message
 * being handled (name_view set, dsup_spec_parse_view): such a spec must not
 * outlive the handling of that message unless dsup_spec_keep copies it.
 *
 * The child table keeps no spec per child: a sup_child's `shared` is a
 * name-less spec (name len 0, one allocation as above) shared by the
 * instance's children with the same type, restart, shutdown, beam and args
 * and counted in shared_refs by those that hold it: the last one frees it
 * (sup_shared.c: sup_spec_share / sup_spec_unshare); never free() it. The child's name is its entry's key: sup_child_spec(c)
 * gives the whole spec by value, valid while the child's entry is. */
typedef struct dsup_child_spec {
    const char *type;  /* worker type (atom text, inside this allocation) */
    signed char restart;     /* DSUP_RESTART_* */
    unsigned char beam;      /* a BEAM module's child, hosted by Elixir nodes: `args`
                                is its whole child-spec map (sup_place.c) */
    unsigned char name_view; /* name points outside the allocation */
    uint32_t shared_refs;    /* a shared spec's children (sup_shared.c); 0 for any other */
    long shutdown;     /* ms, or DSUP_SHUTDOWN_* */
    dsup_term name;    /* len 0 when the caller gave none */
    dsup_term args;    /* init args */
} dsup_child_spec;

/* 0 and *out, or -1 for a spec of none of the accepted forms. */
int dsup_spec_parse(dsup_node *node, dsup_term spec, dsup_child_spec **out);
/* The same, with `name` as the child's name (one allocation, no copy). */
int dsup_spec_parse_named(dsup_node *node, dsup_term spec, dsup_term name, dsup_child_spec **out);
/* The same, but the name stays a view of `spec`'s bytes (name_view set
 * when the spec names its child): no copy of the name for a spec the child
 * table takes while the message is handled (sup_cache_put). */
int dsup_spec_parse_view(dsup_node *node, dsup_term spec, dsup_child_spec **out);
int dsup_spec_parse_named_view(dsup_node *node, dsup_term spec, dsup_term name, dsup_child_spec **out);
/* A spec that owns its name, to keep beyond the message (consumes s; s
 * itself when it owns it already). NULL when out of memory. */
dsup_child_spec *dsup_spec_keep(dsup_child_spec *s);
/* A copy with `name` as the child's name. */
dsup_child_spec *dsup_spec_with_name(const dsup_child_spec *s, dsup_term name);
/* The same, but `name` is not copied: the spec refers to those bytes (the
 * cache's key), which must outlive it. */
dsup_child_spec *dsup_spec_with_name_view(const dsup_child_spec *s, dsup_term name);
/* #{id, start => {Type, start_link, [Args]}, restart, shutdown, type, modules};
 * `wire` adds `args => Args` (the exact init arg) for messages between
 * instances: [Args] alone cannot tell a keyword list from one {k, v} arg.
 * A BEAM child's spec is its own map as is, and on the wire
 * #{beam => Map, restart => R, shutdown => S}. */
void dsup_spec_encode_map(ei_x_buff *x, const dsup_child_spec *s, int wire);

#endif
