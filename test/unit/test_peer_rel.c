/* test_peer_rel.c — the per-caller sys reply rule (c_src/peer_rel.c).
 *
 * The stdlib version of the `erl` on PATH (each test lane runs its own: OTP
 * 25 and 27) must give the form that erl's own sys:get_state expects, which
 * the erl run reports by asking a real gen_server; the OTP 26.0 / 26.1
 * boundary (stdlib 5.0.x / 5.1, OTP release notes) is checked by value, as no
 * lane runs OTP 26. */
#include "unit_helpers.h"

#include "peer_rel.h"

static uint32_t vsn(const char *s) { return dsup_peer_parse_vsn(s, strlen(s)); }

static void test_parse(void **state)
{
    assert_int_equal(vsn("4.2"), 0x040200);
    assert_int_equal(vsn("5.0.2"), 0x050002);
    assert_int_equal(vsn("6.2.2.1"), 0x060202);
    assert_int_equal(vsn("5.1"), 0x050100);
    assert_int_equal(vsn("300.1"), 0xFF0100); /* capped, still ordered */
    assert_int_equal(vsn(""), 0);
    assert_int_equal(vsn("x5.1"), 0);
    assert_int_equal(vsn(".5"), 0);
}

static void test_rule_boundary(void **state)
{
    assert_false(dsup_peer_stdlib_wants_ok(vsn("4.3.1.4"))); /* OTP 25.3 */
    assert_false(dsup_peer_stdlib_wants_ok(vsn("5.0")));     /* OTP 26.0 */
    assert_false(dsup_peer_stdlib_wants_ok(vsn("5.0.2")));   /* OTP 26.0.2 */
    assert_true(dsup_peer_stdlib_wants_ok(vsn("5.1")));      /* OTP 26.1 */
    assert_true(dsup_peer_stdlib_wants_ok(vsn("5.2.3")));    /* OTP 26.2 */
    assert_true(dsup_peer_stdlib_wants_ok(vsn("6.2.2.1")));  /* OTP 27.3 */
    assert_false(dsup_peer_stdlib_wants_ok(DSUP_STDLIB_UNKNOWN));
}

/* This erl's stdlib version, and what its sys gets from a real gen_server
 * (rex, whose state is a map). */
static void test_rule_vs_erl(void **state)
{
    char *out = unit_erl(
        "{ok, V} = application:get_key(stdlib, vsn),"
        "{ok, Raw} = gen:call(rex, system, get_state),"
        "io:format(\"~s ~s~n\", [V, case Raw of {ok, _} -> \"ok\"; _ -> \"bare\" end]),"
        "halt().");
    assert_non_null(out);
    char v[64], form[16];
    assert_int_equal(sscanf(out, "%63s %15s", v, form), 2);
    fprintf(stderr, "erl stdlib %s: a gen_server answers get_state %s\n", v, form);
    assert_int_equal(dsup_peer_stdlib_wants_ok(vsn(v)), strcmp(form, "ok") == 0);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_rule_boundary),
        cmocka_unit_test(test_rule_vs_erl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
