/* sup_spec.c — child specs as distributed_supervisor callers write them:
 *   Module                       init args [], a fresh ref as the name
 *   {Module, Opts}               Opts a keyword list: name:, restart:,
 *                                shutdown: are taken out, the rest are the
 *                                init args; any other term is the init arg
 *   #{id, start := {M, F, A}, restart, shutdown}   a Supervisor.child_spec()
 * and back to the child_spec() map that `children` reports. */
#include "sup_spec.h"
#include "xalloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"
#include "term.h"

static const char nil_term[] = { 106 };

/* A proper list of {atom, _} pairs: 1, with *n set. */
static int is_keyword(dsup_term t, int *n)
{
    int i = 0, type, size;
    if (ei_get_type(t.buf, &i, &type, &size) < 0)
        return 0;
    if (type == ERL_NIL_EXT) {
        *n = 0;
        return 1;
    }
    if (type != ERL_LIST_EXT || ei_decode_list_header(t.buf, &i, n) < 0)
        return 0;
    for (int k = 0; k < *n; k++) {
        int s = i;
        if (dsup_term_next(t.buf, &i) < 0)
            return 0;
        dsup_term kv[2];
        dsup_term el = { t.buf + s, (size_t)(i - s) };
        int j = 0;
        const char *a;
        size_t al;
        if (dsup_term_tuple(el, kv, 2) != 2 || dsup_term_atom_text(kv[0].buf, &j, &a, &al) < 0)
            return 0;
    }
    /* proper tail */
    return (size_t)i < t.len && (unsigned char)t.buf[i] == 106;
}

static int parse_restart(dsup_term t, int *restart)
{
    if (dsup_term_is_atom(t, "permanent"))
        *restart = DSUP_RESTART_PERMANENT;
    else if (dsup_term_is_atom(t, "transient"))
        *restart = DSUP_RESTART_TRANSIENT;
    else if (dsup_term_is_atom(t, "temporary"))
        *restart = DSUP_RESTART_TEMPORARY;
    else
        return -1;
    return 0;
}

static int parse_shutdown(dsup_term t, long *shutdown)
{
    if (dsup_term_is_atom(t, "brutal_kill")) {
        *shutdown = DSUP_SHUTDOWN_BRUTAL;
        return 0;
    }
    if (dsup_term_is_atom(t, "infinity")) {
        *shutdown = DSUP_SHUTDOWN_INFINITY;
        return 0;
    }
    int i = 0;
    long v;
    if (ei_decode_long(t.buf, &i, &v) < 0 || v < 0)
        return -1;
    *shutdown = v;
    return 0;
}

/* Pull name/restart/shutdown out of a keyword list; the other pairs are
 * written to `rest` as a keyword list. */
static int take_options(dsup_node *node, dsup_term kw, int n, dsup_term *name, int *restart, long *shutdown,
                        ei_x_buff *rest)
{
    int i = 0, dummy;
    if (n)
        ei_decode_list_header(kw.buf, &i, &dummy);
    int kept = 0;
    ei_x_buff *tmp = dsup_term_scratch(node);
    for (int k = 0; k < n; k++) {
        int s = i;
        dsup_term_next(kw.buf, &i);
        dsup_term el = { kw.buf + s, (size_t)(i - s) };
        dsup_term kv[2];
        dsup_term_tuple(el, kv, 2);
        if (dsup_term_is_atom(kv[0], "name")) {
            *name = kv[1];
        } else if (dsup_term_is_atom(kv[0], "restart")) {
            if (parse_restart(kv[1], restart) < 0)
                goto bad;
        } else if (dsup_term_is_atom(kv[0], "shutdown")) {
            if (parse_shutdown(kv[1], shutdown) < 0)
                goto bad;
        } else {
            dsup_x_encode_term(tmp, el);
            kept++;
        }
    }
    if (kept)
        ei_x_encode_list_header(rest, kept);
    ei_x_append_buf(rest, tmp->buff, tmp->index);
    ei_x_encode_empty_list(rest);
    dsup_term_scratch_release(tmp);
    return 0;
bad:
    dsup_term_scratch_release(tmp);
    return -1;
}

/* `view`: the name is not copied, the spec points at it (name_view). */
static dsup_child_spec *build(const char *type, int restart, long shutdown, dsup_term name, int view,
                              dsup_term args)
{
    /* The type's text lives in the spec too (peers choose it, so it is not
     * kept in the name table), unless it names a registered worker type,
     * whose name lives as long as the node; args [] points at a constant.
     * A cached counter spec is then 56 bytes, one 64-byte malloc chunk
     * (README, Memory per child). */
    static const char nil[] = { 106 };
    const dsup_worker_type *known = dsup_find_worker_type(type);
    size_t tlen = known ? 0 : strlen(type) + 1;
    int nil_args = args.len == 1 && args.buf[0] == nil[0];
    size_t alen = nil_args ? 0 : args.len;
    view = view && name.len;
    size_t nlen = view ? 0 : name.len;
    dsup_child_spec *s = dsup_xmalloc(sizeof *s + nlen + alen + tlen);
    char *p = (char *)(s + 1);
    s->type = known ? known->name : memcpy(p + nlen + alen, type, tlen);
    s->restart = restart;
    s->beam = 0;
    s->shared_refs = 0;
    s->name_view = (unsigned char)view;
    s->shutdown = shutdown;
    if (nlen)
        memcpy(p, name.buf, nlen);
    s->name = (dsup_term){ view ? name.buf : p, name.len };
    if (alen)
        memcpy(p + nlen, args.buf, alen);
    s->args = (dsup_term){ nil_args ? nil : p + nlen, args.len };
    return s;
}

/* The atom's text, NUL-terminated in `buf` (the spec copies it, or points
 * at a registered type's name): no name-table entry made per parse. */
#define TYPE_MAX 1024 /* 255 characters of up to 4 UTF-8 bytes, and the NUL */
static const char *atom_of(dsup_term t, char buf[TYPE_MAX])
{
    int i = 0;
    const char *a;
    size_t al;
    if (t.len < 2 || dsup_term_atom_text(t.buf, &i, &a, &al) < 0 || (size_t)i != t.len || al >= TYPE_MAX)
        return NULL;
    memcpy(buf, a, al);
    buf[al] = 0;
    return buf;
}

/* The value of atom key `key` in a map term: 1 and *val, else 0. */
static int map_get(dsup_term map, const char *key, dsup_term *val)
{
    int i = 0, arity;
    if (map.len < 1 || (unsigned char)map.buf[0] != 116 || ei_decode_map_header(map.buf, &i, &arity) < 0)
        return 0;
    for (int k = 0; k < arity; k++) {
        int ks = i;
        if (ei_skip_term(map.buf, &i) < 0)
            return 0;
        int vs = i;
        if (ei_skip_term(map.buf, &i) < 0 || (size_t)i > map.len)
            return 0;
        if (dsup_term_is_atom((dsup_term){ map.buf + ks, (size_t)(vs - ks) }, key)) {
            *val = (dsup_term){ map.buf + vs, (size_t)(i - vs) };
            return 1;
        }
    }
    return 0;
}

/* {Module, Arg} or a start tuple's args, with defaults already set. */
/* `named`: the child's name when the caller fixed it (a start between
 * instances), over any name: option; NULL to read it from the options. */
static dsup_child_spec *from_module_arg(dsup_node *node, const char *type, dsup_term arg, int restart,
                                        long shutdown, const dsup_term *named, int view)
{
    dsup_term name = { NULL, 0 };
    int n;
    dsup_child_spec *s = NULL;
    if (is_keyword(arg, &n)) {
        ei_x_buff *rest = dsup_term_scratch(node); /* pooled: no allocation per start */
        if (take_options(node, arg, n, &name, &restart, &shutdown, rest) == 0)
            s = build(type, restart, shutdown, named ? *named : name, view,
                      (dsup_term){ rest->buff, (size_t)rest->index });
        dsup_term_scratch_release(rest);
        return s;
    }
    return build(type, restart, shutdown, named ? *named : name, view, arg);
}

static int parse(dsup_node *node, dsup_term spec, const dsup_term *named, int view, dsup_child_spec **out)
{
    char tbuf[TYPE_MAX];
    const dsup_term none = { NULL, 0 };
    dsup_term name = named ? *named : none;
    *out = NULL;
    const char *type = atom_of(spec, tbuf);
    if (type) {
        *out = build(type, DSUP_RESTART_PERMANENT, 5000, name, view, (dsup_term){ nil_term, 1 });
        return *out ? 0 : -1;
    }
    dsup_term el[3];
    if (dsup_term_tuple(spec, el, 2) == 2 && (type = atom_of(el[0], tbuf))) {
        *out = from_module_arg(node, type, el[1], DSUP_RESTART_PERMANENT, 5000, named, view);
        return *out ? 0 : -1;
    }
    /* A map child spec. */
    int i = 0, arity;
    if (spec.len < 1 || (unsigned char)spec.buf[0] != 116 || ei_decode_map_header(spec.buf, &i, &arity) < 0)
        return -1;
    dsup_term start = { NULL, 0 }, restart_t = { NULL, 0 }, shutdown_t = { NULL, 0 }, exact = { NULL, 0 };
    dsup_term beam = { NULL, 0 };
    for (int k = 0; k < arity; k++) {
        int ks = i;
        dsup_term_next(spec.buf, &i);
        dsup_term key = { spec.buf + ks, (size_t)(i - ks) };
        int vs = i;
        dsup_term_next(spec.buf, &i);
        dsup_term val = { spec.buf + vs, (size_t)(i - vs) };
        /* the key's text once, then by length: one compare per key */
        int ki = 0;
        const char *kt;
        size_t kl;
        if (dsup_term_atom_text(key.buf, &ki, &kt, &kl) < 0)
            continue;
#define KEY_IS(lit) (kl == sizeof lit - 1 && memcmp(kt, lit, kl) == 0)
        if (KEY_IS("start"))
            start = val;
        else if (KEY_IS("restart"))
            restart_t = val;
        else if (KEY_IS("shutdown"))
            shutdown_t = val;
        else if (KEY_IS("args"))
            exact = val;
        else if (KEY_IS("beam"))
            beam = val;
#undef KEY_IS
    }
    int restart = DSUP_RESTART_PERMANENT;
    long shutdown = 5000;
    if ((restart_t.buf && parse_restart(restart_t, &restart) < 0) ||
        (shutdown_t.buf && parse_shutdown(shutdown_t, &shutdown) < 0))
        return -1;
    if (beam.buf) {
        /* A BEAM child (an Elixir host's): kept as its own map, typed by
         * the module its start tuple names. */
        dsup_term inner;
        if (!map_get(beam, "start", &inner) || dsup_term_tuple(inner, el, 3) != 3 ||
            !(type = atom_of(el[0], tbuf)))
            return -1;
        *out = build(type, restart, shutdown, name, view, beam);
        if (*out)
            (*out)->beam = 1;
        return *out ? 0 : -1;
    }
    if (!start.buf)
        return -1;
    int fi = 0;
    const char *fn;
    size_t fl;
    if (dsup_term_tuple(start, el, 3) != 3 || !(type = atom_of(el[0], tbuf)) ||
        dsup_term_atom_text(el[1].buf, &fi, &fn, &fl) < 0) /* the function: any atom, not kept */
        return -1;
    if (exact.buf) {
        /* Between instances the init arg travels as is (`args`), so no
         * reading of the start args can change it on the way. */
        *out = build(type, restart, shutdown, name, view, exact);
        return *out ? 0 : -1;
    }
    /* start args: [KW] or [X] is the one init arg; a keyword list as a whole
     * (Elixir's `start: {M, :start_link, name: X}`) is the options. */
    dsup_term args = el[2];
    int n;
    char small_int[2];
    if (!is_keyword(args, &n)) {
        int j = 0, len, type_, size;
        if (ei_get_type(args.buf, &j, &type_, &size) == 0 && type_ == ERL_STRING_EXT && size == 1) {
            /* [42] travels as the string "*": the one arg is the integer. */
            small_int[0] = 97; /* SMALL_INTEGER_EXT */
            small_int[1] = args.buf[3];
            args = (dsup_term){ small_int, 2 };
        } else if (ei_decode_list_header(args.buf, &j, &len) == 0 && len == 1) {
            int s0 = j;
            dsup_term_next(args.buf, &j);
            args = (dsup_term){ args.buf + s0, (size_t)(j - s0) };
        }
    }
    *out = from_module_arg(node, type, args, restart, shutdown, named, view);
    return *out ? 0 : -1;
}

int dsup_spec_parse(dsup_node *node, dsup_term spec, dsup_child_spec **out)
{
    return parse(node, spec, NULL, 0, out);
}

int dsup_spec_parse_named(dsup_node *node, dsup_term spec, dsup_term name, dsup_child_spec **out)
{
    return parse(node, spec, &name, 0, out);
}

int dsup_spec_parse_view(dsup_node *node, dsup_term spec, dsup_child_spec **out)
{
    return parse(node, spec, NULL, 1, out);
}

int dsup_spec_parse_named_view(dsup_node *node, dsup_term spec, dsup_term name, dsup_child_spec **out)
{
    return parse(node, spec, &name, 1, out);
}

dsup_child_spec *dsup_spec_keep(dsup_child_spec *s)
{
    if (!s->name_view)
        return s;
    dsup_child_spec *n = dsup_spec_with_name(s, s->name);
    free(s);
    return n;
}

dsup_child_spec *dsup_spec_with_name(const dsup_child_spec *s, dsup_term name)
{
    dsup_child_spec *n = build(s->type, s->restart, s->shutdown, name, 0, s->args);
    if (n)
        n->beam = s->beam;
    return n;
}

dsup_child_spec *dsup_spec_with_name_view(const dsup_child_spec *s, dsup_term name)
{
    dsup_child_spec *n = build(s->type, s->restart, s->shutdown, (dsup_term){ NULL, 0 }, 0, s->args);
    if (n) {
        n->name = name;
        n->beam = s->beam;
    }
    return n;
}

static const char *restart_name(int r)
{
    return r == DSUP_RESTART_TRANSIENT ? "transient" : r == DSUP_RESTART_TEMPORARY ? "temporary" : "permanent";
}

static void encode_shutdown(ei_x_buff *x, long shutdown)
{
    if (shutdown == DSUP_SHUTDOWN_BRUTAL)
        dsup_x_encode_atom(x, "brutal_kill");
    else if (shutdown == DSUP_SHUTDOWN_INFINITY)
        dsup_x_encode_atom(x, "infinity");
    else
        ei_x_encode_long(x, shutdown);
}

/* ---- the map in one append: every start announces its spec ---------------- */

static char *put_raw(char *p, const void *b, size_t n)
{
    memcpy(p, b, n);
    return p + n;
}
#define PUT_LIT(p, lit) put_raw(p, lit, sizeof lit - 1)
/* an atom key or value as SMALL_ATOM_UTF8_EXT: tag, length, text */
#define ATOM_LIT(text) "\x77" text
static char *put_atom(char *p, const char *a, size_t n)
{
    *p++ = (char)119;
    *p++ = (char)n;
    return put_raw(p, a, n);
}
static char *put_u32(char *p, uint8_t tag, uint32_t v)
{
    *p++ = (char)tag;
    dsup_set_u32be(p, v);
    return p + 4;
}

/* The non-BEAM map (see below) built on the stack and appended once: the
 * same bytes as the ei_x_encode_* calls would write. 0, or -1 when a part
 * does not fit its short form (the caller encodes it field by field). */
static int encode_map_flat(ei_x_buff *x, const dsup_child_spec *s, int wire)
{
    size_t tlen = strlen(s->type);
    /* ei writes INTEGER_EXT up to 2^27 - 1 only: the same bytes as it */
    if (tlen > 255 || s->shutdown >= (1L << 27) || s->shutdown < DSUP_SHUTDOWN_INFINITY)
        return -1;
    size_t need = 160 + 2 * tlen + 2 * s->args.len + s->name.len;
    char stack[1024];
    char *buf = need <= sizeof stack ? stack : dsup_xmalloc(need), *p = buf;
    p = put_u32(p, 116, wire ? 7 : 6); /* MAP_EXT */
    if (wire) {
        p = PUT_LIT(p, ATOM_LIT("\x04" "args"));
        p = put_raw(p, s->args.buf, s->args.len);
    }
    p = PUT_LIT(p, ATOM_LIT("\x02" "id"));
    p = put_raw(p, s->name.buf, s->name.len);
    p = PUT_LIT(p, ATOM_LIT("\x07" "modules") "\x6c\0\0\0\x01"); /* LIST_EXT of 1 */
    p = put_atom(p, s->type, tlen);
    *p++ = (char)106;
    p = PUT_LIT(p, ATOM_LIT("\x07" "restart"));
    const char *r = restart_name(s->restart);
    p = put_atom(p, r, strlen(r));
    p = PUT_LIT(p, ATOM_LIT("\x08" "shutdown"));
    if (s->shutdown == DSUP_SHUTDOWN_BRUTAL)
        p = PUT_LIT(p, ATOM_LIT("\x0b" "brutal_kill"));
    else if (s->shutdown == DSUP_SHUTDOWN_INFINITY)
        p = PUT_LIT(p, ATOM_LIT("\x08" "infinity"));
    else if (s->shutdown < 256) {
        *p++ = (char)97; /* SMALL_INTEGER_EXT */
        *p++ = (char)s->shutdown;
    } else {
        p = put_u32(p, 98, (uint32_t)s->shutdown); /* INTEGER_EXT */
    }
    p = PUT_LIT(p, ATOM_LIT("\x05" "start") "\x68\x03"); /* SMALL_TUPLE_EXT of 3 */
    p = put_atom(p, s->type, tlen);
    p = PUT_LIT(p, ATOM_LIT("\x0a" "start_link") "\x6c\0\0\0\x01");
    p = put_raw(p, s->args.buf, s->args.len);
    *p++ = (char)106;
    p = PUT_LIT(p, ATOM_LIT("\x04" "type") ATOM_LIT("\x06" "worker"));
    dsup_x_append(x, buf, (size_t)(p - buf));
    if (buf != stack)
        free(buf);
    return 0;
}

static void encode_map_fields(ei_x_buff *x, const dsup_child_spec *s, int wire);

void dsup_spec_encode_map(ei_x_buff *x, const dsup_child_spec *s, int wire)
{
    if (s->beam || encode_map_flat(x, s, wire) < 0)
        encode_map_fields(x, s, wire); /* a BEAM child's map, a long type name or shutdown */
}

static void encode_map_fields(ei_x_buff *x, const dsup_child_spec *s, int wire)
{
    if (s->beam) {
        if (!wire) {
            dsup_x_encode_term(x, s->args);
            return;
        }
        ei_x_encode_map_header(x, 3);
        dsup_x_encode_atom(x, "beam");
        dsup_x_encode_term(x, s->args);
        dsup_x_encode_atom(x, "restart");
        dsup_x_encode_atom(x, restart_name(s->restart));
        dsup_x_encode_atom(x, "shutdown");
        encode_shutdown(x, s->shutdown);
        return;
    }
    ei_x_encode_map_header(x, wire ? 7 : 6);
    if (wire) {
        dsup_x_encode_atom(x, "args");
        dsup_x_encode_term(x, s->args);
    }
    dsup_x_encode_atom(x, "id");
    dsup_x_encode_term(x, s->name);
    dsup_x_encode_atom(x, "modules");
    ei_x_encode_list_header(x, 1);
    dsup_x_encode_atom(x, s->type);
    ei_x_encode_empty_list(x);
    dsup_x_encode_atom(x, "restart");
    dsup_x_encode_atom(x, restart_name(s->restart));
    dsup_x_encode_atom(x, "shutdown");
    encode_shutdown(x, s->shutdown);
    dsup_x_encode_atom(x, "start");
    ei_x_encode_tuple_header(x, 3);
    dsup_x_encode_atom(x, s->type);
    dsup_x_encode_atom(x, "start_link");
    ei_x_encode_list_header(x, 1);
    dsup_x_encode_term(x, s->args);
    ei_x_encode_empty_list(x);
    dsup_x_encode_atom(x, "type");
    dsup_x_encode_atom(x, "worker");
}
