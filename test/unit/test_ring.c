/* test_ring.c — dsup_ring against libring's algorithm run by the real erl.
 *
 * test/ref/ring_ref.erl replays a script of adds, removes and resets on a
 * gb_trees ring written after libring 1.7's HashRing and records, after
 * every step, the node list, every point and the owner of 100,000 keys of
 * mixed types under both atom encodings (OTP <= 25 and OTP >= 26). The same
 * script runs here on dsup_ring and every value must agree. */
#include "unit_helpers.h"

#include <sys/stat.h>

#include "phash2.h"
#include "ring.h"

#define NKEYS 100000



typedef struct {
    const unsigned char *p, *end;
} cur_t;

static uint32_t u8(cur_t *c) { assert_true(c->p + 1 <= c->end); return *c->p++; }
static uint32_t u16(cur_t *c)
{
    assert_true(c->p + 2 <= c->end);
    uint32_t v = ((uint32_t)c->p[0] << 8) | c->p[1];
    c->p += 2;
    return v;
}
static uint32_t u32(cur_t *c)
{
    assert_true(c->p + 4 <= c->end);
    uint32_t v = ((uint32_t)c->p[0] << 24) | ((uint32_t)c->p[1] << 16) | ((uint32_t)c->p[2] << 8) | c->p[3];
    c->p += 4;
    return v;
}

/* Index in the script's name table of a node name returned by the ring. */
static uint32_t name_index(char **names, size_t nnames, const char *s)
{
    if (!s)
        return 0xFFFF;
    for (size_t i = 0; i < nnames; i++)
        if (strcmp(names[i], s) == 0)
            return (uint32_t)i;
    fail_msg("ring returned an unknown node %s", s);
    return 0xFFFF;
}

/* Name index of each of the ring's current nodes, by the ring's pointers. */
typedef struct {
    const char *ptr[64];
    uint32_t idx[64];
    size_t n;
} ptrmap_t;

static void ptrmap_build(ptrmap_t *m, const dsup_ring *r, char **names, size_t nnames)
{
    m->n = dsup_ring_node_count(r);
    assert_true(m->n <= 64);
    for (size_t i = 0; i < m->n; i++) {
        m->ptr[i] = dsup_ring_node_at(r, i);
        m->idx[i] = name_index(names, nnames, m->ptr[i]);
    }
}

static uint32_t ptrmap_get(const ptrmap_t *m, const char *p)
{
    if (!p)
        return 0xFFFF;
    for (size_t i = 0; i < m->n; i++)
        if (m->ptr[i] == p)
            return m->idx[i];
    fail_msg("node_for returned a pointer that is not a ring node");
    return 0xFFFF;
}

static void test_ring_vs_libring(void **state)
{
    (void)state;
    char src[1024], out[] = "/tmp/dsup_ring_ref_XXXXXX", expr[4096];
    unit_ref_path(src, sizeof src, "ring_ref.erl");
    int fd = mkstemp(out);
    assert_true(fd >= 0);
    close(fd);
    snprintf(expr, sizeof expr,
             "{ok,M,B} = compile:file(\"%s\", [binary, return_errors]),"
             "{module,M} = code:load_binary(M, \"%s\", B),"
             "ok = M:gen(\"%s\", {7, 8, 9}, %d),"
             "halt().",
             src, src, out, NKEYS);
    char *res = unit_erl(expr);
    long nkeys_e = 0, nchecks_e = 0;
    if (!res || sscanf(res, "ok %ld %ld", &nkeys_e, &nchecks_e) != 2)
        fail_msg("ring_ref failed: %s", res ? res : "(erl did not run)");
    free(res);
    size_t len = 0;
    unsigned char *data = unit_slurp(out, &len);
    unlink(out);
    assert_non_null(data);

    cur_t c = {data, data + len};
    assert_memory_equal(c.p, "DSR1", 4);
    c.p += 4;
    size_t nnames = u16(&c);
    char **names = calloc(nnames, sizeof *names);
    for (size_t i = 0; i < nnames; i++) {
        size_t n = u16(&c);
        names[i] = calloc(1, n + 1);
        memcpy(names[i], c.p, n);
        c.p += n;
    }
    size_t nkeys = u32(&c);
    assert_int_equal(nkeys, NKEYS);
    const char **keys = calloc(nkeys, sizeof *keys);
    size_t *klen = calloc(nkeys, sizeof *klen);
    for (size_t i = 0; i < nkeys; i++) {
        klen[i] = u32(&c);
        keys[i] = (const char *)c.p;
        c.p += klen[i];
    }

    uint16_t *prev = calloc(nkeys, sizeof *prev), *cur = calloc(nkeys, sizeof *cur);
    int prev_valid = 0, last_op = 0;
    uint32_t last_node = 0;
    long checks = 0, lookups = 0, moved_add = 0, moved_remove = 0, multi = 0, bad = 0;
    dsup_ring *ring = dsup_ring_new();

    while (c.p < c.end) {
        uint32_t op = u8(&c);
        if (op == 1) {
            uint32_t ni = u16(&c), w = u32(&c);
            int had = dsup_ring_has_node(ring, names[ni]);
            assert_int_equal(dsup_ring_add_node(ring, names[ni], (int)w), 0);
            last_op = had ? 0 : 1;
            last_node = ni;
        } else if (op == 2) {
            uint32_t ni = u16(&c), was = u8(&c);
            assert_int_equal(dsup_ring_remove_node(ring, names[ni]), was ? 0 : DSUP_RING_ENOTFOUND);
            last_op = was ? 2 : 0;
            last_node = ni;
        } else if (op == 4) {
            dsup_ring_free(ring);
            ring = dsup_ring_new();
            prev_valid = 0;
        } else if (op == 3) {
            checks++;
            ptrmap_t pm;
            ptrmap_build(&pm, ring, names, nnames);
            /* nodes, newest first */
            size_t nn = u16(&c);
            assert_int_equal(dsup_ring_node_count(ring), nn);
            for (size_t i = 0; i < nn; i++)
                assert_int_equal(pm.idx[i], u16(&c));
            /* every point */
            size_t np = u32(&c);
            assert_int_equal(dsup_ring_point_count(ring), np);
            const dsup_ring_point *pts = dsup_ring_points(ring);
            for (size_t i = 0; i < np; i++) {
                uint32_t h = u32(&c), ni = u16(&c);
                assert_int_equal(pts[i].hash, h);
                /* points carry insertion-order indices; node_at is newest first */
                assert_int_equal(pm.idx[nn - 1 - pts[i].node], ni);
            }
            /* every key, both atom encodings */
            for (int enc = 0; enc < 2; enc++) {
                dsup_ring_set_atom_encoding(ring, enc == 0 ? DSUP_RING_ATOM_EXT : DSUP_RING_ATOM_UTF8);
                for (size_t k = 0; k < nkeys; k++) {
                    uint32_t want = u16(&c);
                    uint32_t got = ptrmap_get(&pm, dsup_ring_node_for(ring, keys[k], klen[k]));
                    lookups++;
                    if (got != want && bad++ < 10)
                        fprintf(stderr, "check %ld enc %d key %zu: got %u want %u\n", checks, enc, k, got, want);
                    if (enc == 0)
                        cur[k] = (uint16_t)got;
                }
            }
            dsup_ring_set_atom_encoding(ring, DSUP_RING_ATOM_EXT);
            /* add/remove moved only what libring moves: onto the added node,
             * or off the removed one */
            if (prev_valid && (last_op == 1 || last_op == 2)) {
                for (size_t k = 0; k < nkeys; k++) {
                    if (prev[k] == cur[k])
                        continue;
                    if (last_op == 1) {
                        assert_int_equal(cur[k], last_node);
                        moved_add++;
                    } else {
                        assert_int_equal(prev[k], last_node);
                        moved_remove++;
                    }
                }
            }
            memcpy(prev, cur, nkeys * sizeof *prev);
            prev_valid = 1;
            /* nodes_for: 1000 keys x 3, then 100 keys x 100 */
            for (size_t k = 0; k < 1100; k++) {
                size_t want_n = u8(&c), cnt = k < 1000 ? 3 : 100;
                const char *got[100];
                size_t n = dsup_ring_nodes_for(ring, keys[k], klen[k], got, cnt);
                assert_int_equal(n, want_n);
                for (size_t i = 0; i < want_n; i++)
                    assert_int_equal(ptrmap_get(&pm, got[i]), u16(&c));
                if (n > 0)
                    assert_ptr_equal(got[0], dsup_ring_node_for(ring, keys[k], klen[k]));
                multi++;
            }
        } else {
            fail_msg("bad op %u", op);
        }
    }
    fprintf(stderr,
            "ring: %ld checks (erl %ld), %ld node_for lookups compared, %ld nodes_for lists, "
            "%ld keys moved by adds, %ld by removes\n",
            checks, nchecks_e, lookups, multi, moved_add, moved_remove);
    assert_int_equal(bad, 0);
    assert_int_equal(checks, nchecks_e);
    assert_true(moved_add > 0 && moved_remove > 0);

    dsup_ring_free(ring);
    for (size_t i = 0; i < nnames; i++)
        free(names[i]);
    free(names);
    free(keys);
    free(klen);
    free(prev);
    free(cur);
    free(data);
}

static void test_ring_api(void **state)
{
    (void)state;
    dsup_ring *r = dsup_ring_new();
    const char *out[4];
    assert_null(dsup_ring_node_for(r, "\x83\x61\x01", 3));
    assert_int_equal(dsup_ring_nodes_for(r, "\x83\x61\x01", 3, out, 4), 0);
    assert_int_equal(dsup_ring_remove_node(r, "a@h"), DSUP_RING_ENOTFOUND);
    assert_int_equal(dsup_ring_add_node(r, "bad\xc0\x80", 0), DSUP_RING_EINVAL);
    assert_int_equal(dsup_ring_add_node(NULL, "a@h", 0), DSUP_RING_EINVAL);

    assert_int_equal(dsup_ring_add_node(r, "a@h", 0), 0);
    size_t pts = dsup_ring_point_count(r);
    assert_int_equal(pts, 128);
    assert_int_equal(dsup_ring_add_node(r, "a@h", 5), 0); /* no-op */
    assert_int_equal(dsup_ring_point_count(r), pts);
    assert_int_equal(dsup_ring_node_count(r), 1);
    assert_int_equal(dsup_ring_add_node(r, "b@h", 10), 0);
    assert_int_equal(dsup_ring_point_count(r), 138);
    assert_int_equal(dsup_ring_add_node(r, "c@h", -3), 0);
    assert_string_equal(dsup_ring_node_at(r, 0), "c@h"); /* newest first */
    assert_string_equal(dsup_ring_node_at(r, 2), "a@h");
    assert_null(dsup_ring_node_at(r, 3));

    /* points strictly increasing */
    const dsup_ring_point *p = dsup_ring_points(r);
    for (size_t i = 1; i < dsup_ring_point_count(r); i++)
        assert_true(p[i - 1].hash < p[i].hash);

    /* the version byte is optional; malformed or unhashable keys give NULL */
    const char *n1 = dsup_ring_node_for(r, "\x83\x68\x02\x64\x00\x01x\x61\x07", 9);
    assert_non_null(n1);
    assert_ptr_equal(n1, dsup_ring_node_for(r, "\x68\x02\x64\x00\x01x\x61\x07", 8));
    assert_null(dsup_ring_node_for(r, "\x83\x68\x02\x64\x00\x01x", 7));
    assert_null(dsup_ring_node_for(r, "\x83\x70\x00", 3));
    assert_null(dsup_ring_node_for(r, "\x83\x64\x00\x05" "ab", 5));
    assert_null(dsup_ring_node_for(r, "\x83", 1));

    /* an atom key is hashed through term_to_binary(Atom) */
    uint32_t h1, h2, h3;
    assert_int_equal(dsup_ring_key_hash(r, "\x83\x64\x00\x03" "foo", 7, &h1), 0);
    assert_int_equal(dsup_phash2("\x83\x6d\x00\x00\x00\x07\x83\x64\x00\x03" "foo", 13, DSUP_RING_HASH_RANGE, &h2), 0);
    assert_int_equal(h1, h2);
    /* the same atom in any of its four encodings */
    assert_int_equal(dsup_ring_key_hash(r, "\x77\x03" "foo", 5, &h3), 0);
    assert_int_equal(h3, h1);
    dsup_ring_set_atom_encoding(r, DSUP_RING_ATOM_UTF8);
    assert_int_equal(dsup_ring_atom_encoding(r), DSUP_RING_ATOM_UTF8);
    assert_int_equal(dsup_ring_key_hash(r, "\x73\x03" "foo", 5, &h3), 0);
    assert_int_equal(dsup_phash2("\x6d\x00\x00\x00\x06\x83\x77\x03" "foo", 11, DSUP_RING_HASH_RANGE, &h2), 0);
    assert_int_equal(h3, h2);
    dsup_ring_set_atom_encoding(r, DSUP_RING_ATOM_PLAIN);
    assert_int_equal(dsup_ring_key_hash(r, "\x73\x03" "foo", 5, &h3), 0);
    assert_int_equal(dsup_phash2("\x73\x03" "foo", 5, DSUP_RING_HASH_RANGE, &h2), 0);
    assert_int_equal(h3, h2);
    dsup_ring_set_atom_encoding(r, 42); /* ignored */
    assert_int_equal(dsup_ring_atom_encoding(r), DSUP_RING_ATOM_PLAIN);

    /* nodes_for: distinct, first is the owner, capped at the node count */
    assert_int_equal(dsup_ring_nodes_for(r, "\x83\x61\x07", 3, out, 4), 3);
    assert_ptr_equal(out[0], dsup_ring_node_for(r, "\x83\x61\x07", 3));
    assert_true(out[0] != out[1] && out[1] != out[2] && out[0] != out[2]);
    assert_int_equal(dsup_ring_nodes_for(r, "\x83\x61\x07", 3, out, 1), 1);

    assert_int_equal(dsup_ring_remove_node(r, "b@h"), 0);
    assert_int_equal(dsup_ring_point_count(r), 256);
    assert_false(dsup_ring_has_node(r, "b@h"));
    assert_int_equal(dsup_ring_remove_node(r, "a@h"), 0);
    assert_int_equal(dsup_ring_remove_node(r, "c@h"), 0);
    assert_int_equal(dsup_ring_point_count(r), 0);
    assert_null(dsup_ring_node_for(r, "\x83\x61\x07", 3));
    dsup_ring_free(r);
    dsup_ring_free(NULL);
}

/* dsup_ring_gen changes with every add and remove that changes the ring and
 * differs between rings; dsup_ring_name is the pointer node_for returns. */
static void test_ring_gen_and_name(void **state)
{
    (void)state;
    dsup_ring *r = dsup_ring_new(), *r2 = dsup_ring_new();
    assert_int_equal(dsup_ring_gen(NULL), 0);
    uint64_t g0 = dsup_ring_gen(r);
    assert_true(g0 != 0 && g0 != dsup_ring_gen(r2));
    assert_int_equal(dsup_ring_add_node(r, "a@h", 0), 0);
    uint64_t g1 = dsup_ring_gen(r);
    assert_true(g1 != g0 && g1 != dsup_ring_gen(r2));
    assert_int_equal(dsup_ring_add_node(r, "a@h", 0), 0); /* already there: unchanged */
    assert_int_equal(dsup_ring_gen(r), g1);
    assert_int_equal(dsup_ring_remove_node(r, "x@h"), DSUP_RING_ENOTFOUND);
    assert_int_equal(dsup_ring_gen(r), g1);
    assert_int_equal(dsup_ring_add_node(r, "b@h", 0), 0);
    uint64_t g2 = dsup_ring_gen(r);
    assert_true(g2 != g1);
    char a[] = "a@h"; /* another copy of the text */
    const char *na = dsup_ring_name(r, a);
    assert_non_null(na);
    assert_ptr_not_equal(na, a);
    assert_string_equal(na, "a@h");
    assert_null(dsup_ring_name(r, "c@h"));
    assert_null(dsup_ring_name(NULL, "a@h"));
    const char *out[2];
    assert_int_equal(dsup_ring_nodes_for(r, "\x83\x61\x07", 3, out, 2), 2);
    assert_true(out[0] == na || out[1] == na);
    assert_true(out[0] == dsup_ring_name(r, "b@h") || out[1] == dsup_ring_name(r, "b@h"));
    assert_int_equal(dsup_ring_remove_node(r, "a@h"), 0);
    assert_true(dsup_ring_gen(r) != g2);
    assert_null(dsup_ring_name(r, "a@h"));
    dsup_ring_free(r);
    dsup_ring_free(r2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_api),
        cmocka_unit_test(test_ring_gen_and_name),
        cmocka_unit_test(test_ring_vs_libring),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
