/* test_sup_spec.c — who owns a parsed spec's name (sup_spec.h).
 *
 * The start path parses a spec with its name as a view of the frame
 * (dsup_spec_parse_view / _named_view), so that the child table's key is
 * the only copy of the name (sup_cache.c); a spec kept beyond the message is
 * made to own its name (dsup_spec_keep); the ordinary parse copies it. The
 * type's text is copied, not entered in the node's name table (no entry made
 * and swept per parse). The terms are the real erl's term_to_binary. */
#include "unit_helpers.h"

#include <uv.h>

#include "dsup.h"
#include "intern.h"
#include "node.h"
#include "sup_spec.h"

/* erl's external format of each expression, hex, one a line: the bytes
 * after the version byte. */
static size_t from_erl(const char *exprs, char bufs[][256], size_t *lens, size_t max)
{
    char expr[1024];
    snprintf(expr, sizeof expr,
             "[io:format(\"~s~n\", [binary:encode_hex(binary:part(B, 1, byte_size(B) - 1))]) "
             "|| B <- [term_to_binary(T) || T <- [%s]]], halt().",
             exprs);
    char *res = unit_erl(expr);
    assert_non_null(res);
    size_t n = 0;
    char *line = res;
    while (n < max && *line) {
        char *end = strchr(line, '\n');
        assert_non_null(end);
        size_t hl = (size_t)(end - line);
        assert_true(hl % 2 == 0 && hl / 2 <= 256);
        for (size_t i = 0; i < hl / 2; i++) {
            unsigned v;
            assert_int_equal(sscanf(line + 2 * i, "%2x", &v), 1);
            bufs[n][i] = (char)v;
        }
        lens[n++] = hl / 2;
        line = end + 1;
    }
    free(res);
    return n;
}

static int inside(dsup_term part, const char *buf, size_t len)
{
    return part.buf >= buf && part.buf + part.len <= buf + len;
}

static void test_name_ownership(void **st)
{
    (void)st;
    char t[4][256];
    size_t l[4];
    assert_int_equal(from_erl("{ts_type, [{name, {c, 7}}, {foo, 1}]}, {c, 7}, "
                              "#{id => x, start => {ts_type, start_link, [[{foo, 1}]]}}, {c, 8}",
                              t, l, 4),
                     4);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    dsup_node_config c = { .name = "ss_a@127.0.0.1", .cookie = "sup-spec", .no_epmd = 1 };
    dsup_node *N = dsup_node_new(&loop, &c);
    assert_non_null(N);
    dsup_intern_stats before, after;
    dsup_intern_get_stats(N->names, &before);

    /* The view: the name is the frame's bytes, nothing of it copied. */
    dsup_term kw = { t[0], l[0] }, name7 = { t[1], l[1] };
    dsup_child_spec *v;
    assert_int_equal(dsup_spec_parse_view(N, kw, &v), 0);
    assert_true(v->name_view);
    assert_true(inside(v->name, t[0], l[0]));
    assert_int_equal(v->name.len, name7.len);
    assert_memory_equal(v->name.buf, name7.buf, name7.len);
    assert_string_equal(v->type, "ts_type");
    assert_false(inside((dsup_term){ v->type, 8 }, t[0], l[0])); /* the type is the spec's */

    /* The ordinary parse copies it into the spec: the same spec otherwise. */
    dsup_child_spec *o;
    assert_int_equal(dsup_spec_parse(N, kw, &o), 0);
    assert_false(o->name_view);
    assert_false(inside(o->name, t[0], l[0]));
    assert_memory_equal(o->name.buf, name7.buf, name7.len);
    assert_int_equal(o->args.len, v->args.len);
    assert_memory_equal(o->args.buf, v->args.buf, v->args.len);
    assert_int_equal(o->restart, v->restart);
    assert_int_equal(o->shutdown, v->shutdown);
    assert_int_equal(dsup_spec_keep(o) == o, 1); /* owns its name already: itself */
    free(o);

    /* Kept beyond the message: a copy that owns its name; the frame may go. */
    dsup_child_spec *k = dsup_spec_keep(v);
    assert_false(k->name_view);
    memset(t[0], 0, l[0]);
    assert_memory_equal(k->name.buf, name7.buf, name7.len);
    assert_string_equal(k->type, "ts_type");
    free(k);

    /* A map spec named by the caller (start_child_here): the same. */
    dsup_term map = { t[2], l[2] }, name8 = { t[3], l[3] };
    dsup_child_spec *m;
    assert_int_equal(dsup_spec_parse_named_view(N, map, name8, &m), 0);
    assert_true(m->name_view);
    assert_ptr_equal(m->name.buf, name8.buf);
    free(m);

    /* No name-table entry was made for the type on any of these parses (not
     * even one the end of the loop turn would sweep). */
    dsup_intern_get_stats(N->names, &after);
    assert_int_equal(after.entries, before.entries);
    assert_null(dsup_intern_find(N->names, "ts_type", 7));

    dsup_node_free(N);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_ownership),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
