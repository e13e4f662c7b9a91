/* test_intern.c — the reference-counted name table (c_src/intern.c):
 * lookups that do not insert, holds and releases, freeing at the end of the
 * loop turn, the per-peer quota, and growth and shrinking under churn. */
#include "unit_helpers.h"

#include "intern.h"

/* The table under test (a node owns one; here nobody does). */
static dsup_intern_tab *T;

static const char *peer_name(const char *s) { return dsup_intern_peer(T, s, strlen(s)); }
static const char *find(const char *s) { return dsup_intern_find(T, s, strlen(s)); }

static void test_find_never_inserts(void **st)
{
    dsup_intern_stats a, b;
    dsup_intern_get_stats(T, &a);
    assert_null(find("never-seen"));
    assert_null(find("never-seen"));
    dsup_intern_get_stats(T, &b);
    assert_int_equal(a.entries, b.entries);
}

static void test_counted_lives_until_turn_end(void **st)
{
    const char *n = peer_name("transient@host");
    assert_non_null(n);
    assert_string_equal(n, "transient@host");
    /* Same pointer for the same text, and still there within the turn. */
    assert_ptr_equal(peer_name("transient@host"), n);
    assert_ptr_equal(find("transient@host"), n);
    assert_false(dsup_intern_is_pinned(n));
    dsup_intern_sweep(T);
    assert_null(find("transient@host"));
}

/* Repeated lookups hit the last names found (intern.c recent_find): a name
 * freed by the sweep is forgotten there too, and a name of the same length
 * or with the same prefix is never taken for a recent one. */
static void test_recent_names(void **st)
{
    const char *a = peer_name("node_a@host");
    const char *b = peer_name("node_b@host");
    assert_ptr_not_equal(a, b);
    dsup_intern_hold(a);
    assert_ptr_equal(peer_name("node_a@host"), a);
    assert_ptr_equal(peer_name("node_b@host"), b);
    const char *a2 = peer_name("node_a@host2");
    assert_non_null(a2);
    assert_ptr_not_equal(a2, a);
    assert_string_equal(a2, "node_a@host2");
    dsup_intern_sweep(T); /* b and a2 go, a is held */
    assert_null(find("node_b@host"));
    assert_null(find("node_a@host2"));
    assert_ptr_equal(find("node_a@host"), a);
    const char *b2 = peer_name("node_b@host");
    assert_non_null(b2);
    assert_string_equal(b2, "node_b@host");
    assert_ptr_equal(find("node_b@host"), b2);
    assert_ptr_equal(peer_name("node_a@host"), a);
    dsup_intern_release(a);
    dsup_intern_sweep(T);
    assert_null(find("node_a@host"));
    assert_null(find("node_b@host"));
}

static void test_hold_and_release(void **st)
{
    const char *n = peer_name("held@host");
    dsup_intern_hold(n);
    dsup_intern_hold(n);
    assert_int_equal(dsup_intern_refs(n), 2);
    dsup_intern_sweep(T);
    assert_ptr_equal(find("held@host"), n);
    dsup_intern_release(n);
    dsup_intern_sweep(T);
    assert_ptr_equal(find("held@host"), n);
    dsup_intern_release(n);
    /* Released in the middle of a turn: still readable until the sweep. */
    assert_ptr_equal(find("held@host"), n);
    assert_string_equal(n, "held@host");
    /* Held again before the turn ends: it survives. */
    dsup_intern_hold(n);
    dsup_intern_sweep(T);
    assert_ptr_equal(find("held@host"), n);
    dsup_intern_release(n);
    dsup_intern_sweep(T);
    assert_null(find("held@host"));
}

static void test_pinned(void **st)
{
    const char *p = dsup_intern_str(T, "pinned@host");
    assert_true(dsup_intern_is_pinned(p));
    dsup_intern_hold(p);
    dsup_intern_release(p);
    dsup_intern_release(p); /* no-op on pinned entries */
    dsup_intern_sweep(T);
    assert_ptr_equal(find("pinned@host"), p);
    assert_ptr_equal(peer_name("pinned@host"), p);

    /* Pinning a counted entry keeps the pointer and makes it permanent. */
    const char *c = peer_name("was-counted");
    assert_ptr_equal(dsup_intern(T, "was-counted", 11), c);
    assert_true(dsup_intern_is_pinned(c));
    dsup_intern_sweep(T);
    assert_ptr_equal(find("was-counted"), c);
}

static void test_peer_quota(void **st)
{
    /* The peer's own name is counted and held, as a connection holds it. */
    const char *peer = peer_name("flooder@host");
    dsup_intern_hold(peer);
    const char *other = peer_name("other@host");
    dsup_intern_hold(other);
    dsup_intern_set_quota(T, 10);
    dsup_intern_stats s0, s1;
    dsup_intern_get_stats(T, &s0);

    dsup_intern_set_peer(T, peer);
    const char *mine[10];
    char buf[32];
    for (int i = 0; i < 10; i++) {
        snprintf(buf, sizeof buf, "q%d@host", i);
        mine[i] = peer_name(buf);
        assert_non_null(mine[i]);
        dsup_intern_hold(mine[i]);
    }
    assert_int_equal(dsup_intern_peer_count(T, "flooder@host"), 10);
    assert_null(peer_name("q10@host"));
    assert_null(find("q10@host"));
    /* Names that exist are still found: the quota refuses only new ones. */
    assert_ptr_equal(peer_name("q3@host"), mine[3]);
    assert_ptr_equal(peer_name("pinned@host"), find("pinned@host"));
    dsup_intern_get_stats(T, &s1);
    assert_int_equal(s1.refused, s0.refused + 1);

    /* Another peer is not locked out. */
    dsup_intern_set_peer(T, other);
    const char *o = peer_name("q10@host");
    assert_non_null(o);
    dsup_intern_set_peer(T, NULL);

    /* A freed name gives the quota back at the end of the turn. */
    dsup_intern_release(mine[0]);
    dsup_intern_set_peer(T, peer);
    assert_null(peer_name("q11@host"));
    dsup_intern_set_peer(T, NULL);
    dsup_intern_sweep(T);
    assert_int_equal(dsup_intern_peer_count(T, "flooder@host"), 9);
    dsup_intern_set_peer(T, peer);
    assert_non_null(peer_name("q11@host"));
    dsup_intern_set_peer(T, NULL);

    /* A peer's entry outlives its connection while names it created live. */
    dsup_intern_release(peer);
    dsup_intern_sweep(T);
    assert_ptr_equal(find("flooder@host"), peer);
    for (int i = 1; i < 10; i++)
        dsup_intern_release(mine[i]);
    dsup_intern_sweep(T);
    assert_null(find("q5@host"));
    assert_null(find("flooder@host"));
    dsup_intern_release(other);
    dsup_intern_sweep(T);
    assert_null(find("other@host"));
    dsup_intern_set_quota(T, DSUP_INTERN_DEFAULT_QUOTA);
}

#define CHURN 200000

static void test_growth_and_shrink(void **st)
{
    dsup_intern_stats s0, s;
    dsup_intern_sweep(T);
    dsup_intern_get_stats(T, &s0);
    const char **n = malloc(CHURN * sizeof *n);
    char buf[32];
    for (int i = 0; i < CHURN; i++) {
        snprintf(buf, sizeof buf, "n%d@churn", i);
        n[i] = peer_name(buf);
        assert_non_null(n[i]);
        if (i % 2 == 0)
            dsup_intern_hold(n[i]);
    }
    dsup_intern_get_stats(T, &s);
    assert_int_equal(s.entries, s0.entries + CHURN);
    assert_true(s.slots >= 2 * s.entries);
    /* Half were held: the other half goes at the turn's end. */
    dsup_intern_sweep(T);
    dsup_intern_get_stats(T, &s);
    assert_int_equal(s.entries, s0.entries + CHURN / 2);
    for (int i = 0; i < CHURN; i++) {
        snprintf(buf, sizeof buf, "n%d@churn", i);
        if (i % 2 == 0)
            assert_ptr_equal(find(buf), n[i]);
        else
            assert_null(find(buf));
    }
    for (int i = 0; i < CHURN; i += 2)
        dsup_intern_release(n[i]);
    dsup_intern_sweep(T);
    dsup_intern_get_stats(T, &s);
    assert_int_equal(s.entries, s0.entries);
    assert_int_equal(s.pending, 0);
    /* The table gave its slots back. */
    assert_true(s.slots <= (s0.slots > 256 ? s0.slots : 256) * 2);
    assert_non_null(find("pinned@host"));
    free(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find_never_inserts),
        cmocka_unit_test(test_counted_lives_until_turn_end),
        cmocka_unit_test(test_recent_names),
        cmocka_unit_test(test_hold_and_release),
        cmocka_unit_test(test_pinned),
        cmocka_unit_test(test_peer_quota),
        cmocka_unit_test(test_growth_and_shrink),
    };
    T = dsup_intern_new(NULL);
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    dsup_intern_free(T);
    return rc;
}
