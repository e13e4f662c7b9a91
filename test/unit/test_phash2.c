/* test_phash2.c — dsup_phash2() against the real erlang:phash2/1,2.
 *
 * One erl run (test/ref/phash2_ref.erl) writes ~10,000 random terms of every
 * type in several encodings, local funs, and mutated encodings together with
 * binary_to_term's verdict; the C side hashes every one and compares. */
#include "unit_helpers.h"

#include <errno.h>
#include <sys/stat.h>

#include "phash2.h"



static uint32_t be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Runs phash2_ref:gen/3 into a fresh temp file; returns its bytes. */
static unsigned char *generate(int nterms, size_t *len, long counts[4])
{
    char src[1024], out[] = "/tmp/dsup_phash2_ref_XXXXXX", expr[4096];
    unit_ref_path(src, sizeof src, "phash2_ref.erl");
    int fd = mkstemp(out);
    if (fd < 0)
        return NULL;
    close(fd);
    snprintf(expr, sizeof expr,
             "{ok,M,B} = compile:file(\"%s\", [binary, return_errors]),"
             "{module,M} = code:load_binary(M, \"%s\", B),"
             "ok = M:gen(\"%s\", {20240, 17, 3}, %d),"
             "halt().",
             src, src, out, nterms);
    char *res = unit_erl(expr);
    unsigned char *data = NULL;
    if (res && sscanf(res, "ok %ld %ld %ld %ld", &counts[0], &counts[1], &counts[2], &counts[3]) == 4)
        data = unit_slurp(out, len);
    else
        fprintf(stderr, "phash2_ref failed: %s\n", res ? res : "(erl did not run)");
    free(res);
    unlink(out);
    return data;
}

static unsigned char *g_data;
static size_t g_len;
static long g_counts[4];

static int setup(void **state)
{
    (void)state;
    g_data = generate(10000, &g_len, g_counts);
    return g_data ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    free(g_data);
    return 0;
}

/* The bytes of a term erl and we disagree on, as an Erlang binary to paste
 * into erl (binary_to_term, erlang:phash2). */
static void dump_term(const char *term, size_t n)
{
    fprintf(stderr, "  <<");
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, "%s%u", i ? "," : "", (unsigned char)term[i]);
    fprintf(stderr, ">>\n");
}

static void test_reference_terms(void **state)
{
    (void)state;
    size_t pos = 0;
    long hashable = 0, unhashable = 0, fuzz_ok = 0, fuzz_rejected = 0, lenient = 0, bad = 0;
    long truncations = 0, internal_atoms = 0, overread = 0, tag_seen[256] = {0};

    while (pos < g_len) {
        assert_true(g_len - pos >= 5);
        unsigned kind = g_data[pos];
        size_t n = be32(g_data + pos + 1);
        const char *term = (const char *)g_data + pos + 5;
        pos += 5 + n;
        uint32_t h = 0;
        size_t used = 0;
        int rc;

        if (kind == 0) {
            unsigned nr = g_data[pos + 4];
            size_t eused = be32(g_data + pos);
            assert_int_equal(eused, n);
            pos += 5;
            hashable++;
            if (n > 1)
                tag_seen[(unsigned char)term[1]]++;
            for (unsigned i = 0; i < nr; i++, pos += 8) {
                uint32_t range = be32(g_data + pos), want = be32(g_data + pos + 4);
                rc = dsup_phash2(term, n, range, &h);
                if (rc != 0 || h != want) {
                    if (bad++ < 10)
                        fprintf(stderr, "mismatch: record %ld len %zu tag %u range %u: rc %d got %u want %u\n",
                                hashable, n, n > 1 ? (unsigned char)term[1] : 0, range, rc, h, want);
                }
            }
            /* Without the version byte too. */
            rc = dsup_phash2(term + 1, n - 1, 0, &h);
            uint32_t full;
            assert_int_equal(dsup_make_hash2(term, n, &full, &used), 0);
            assert_int_equal(used, n);
            assert_int_equal(rc, 0);
            assert_int_equal(h, full);
            /* Every strict prefix of a small term is malformed. */
            if (n <= 200 && hashable % 8 == 0) {
                for (size_t k = 0; k < n; k++, truncations++)
                    assert_int_equal(dsup_phash2(term, k, 0, &h), DSUP_PHASH2_EBADARG);
            }
        } else if (kind == 1) {
            unhashable++;
            assert_int_equal(dsup_phash2(term, n, 0, &h), DSUP_PHASH2_EUNHASHABLE);
        } else if (kind == 2) {
            unsigned accepted = g_data[pos++];
            rc = dsup_make_hash2(term, n, &h, &used);
            if (accepted) {
                size_t eused = be32(g_data + pos);
                uint32_t want = be32(g_data + pos + 4);
                pos += 8;
                fuzz_ok++;
                if (eused > n) {
                    /* binary_to_term read past the end of its binary (OTP 25
                     * does for a zero-length reference ID); we must not. */
                    overread++;
                    assert_int_not_equal(rc, 0);
                } else if (rc != 0 || used != eused || h != want) {
                    if (bad++ < 10) {
                        fprintf(stderr, "fuzz mismatch: len %zu: rc %d used %zu/%zu got %u want %u\n",
                                n, rc, used, eused, h, want);
                        dump_term(term, n);
                    }
                }
            } else {
                fuzz_rejected++;
                if (rc == 0)
                    lenient++;
            }
        } else if (kind == 3) {
            internal_atoms++;
            assert_int_equal(dsup_phash2(term, n, 0, &h), DSUP_PHASH2_EBADARG);
        } else {
            fail_msg("bad record kind %u", kind);
        }
    }
    fprintf(stderr,
            "phash2: %ld encodings hashed (x9 ranges), %ld local funs, %ld mutated accepted, "
            "%ld mutated rejected (%ld of those still hashed here), %ld using VM-internal atom refs, "
            "%ld that erl decoded by reading past the end, "
            "%ld truncations; "
            "erl reported %ld/%ld/%ld, %ld alt-encoding fallbacks\n",
            hashable, unhashable, fuzz_ok, fuzz_rejected, lenient, internal_atoms, overread, truncations,
            g_counts[0], g_counts[1], g_counts[2], g_counts[3]);
    assert_int_equal(bad, 0);
    assert_int_equal(hashable, g_counts[0]);
    /* fewer on OTP 26+: term_to_binary/1 and minor_version 2 agree on atoms */
    assert_true(hashable >= 15000);
    assert_true(fuzz_ok > 500);
    /* Every hashable tag was exercised at the top level at least once. */
    /* (PORT_EXT, 102, is not required: it needs a creation <= 3, which
     * OTP 26+ ports seldom have.) */
    static const unsigned char tags[] = {70, 77, 88, 89, 90, 97, 98, 99, 100, 101, 103, 104, 105,
                                         106, 107, 108, 109, 110, 111, 113, 114, 115, 116, 118, 119, 120};
    for (size_t i = 0; i < sizeof tags; i++) {
        if (!tag_seen[tags[i]])
            fail_msg("no top-level term with tag %u", tags[i]);
    }
}

static void test_errors(void **state)
{
    (void)state;
    uint32_t h = 12345;
    size_t used;
    assert_int_equal(dsup_phash2("", 0, 0, &h), DSUP_PHASH2_EBADARG);
    assert_int_equal(dsup_phash2(NULL, 0, 0, &h), DSUP_PHASH2_EBADARG);
    assert_int_equal(dsup_phash2("\x83", 1, 0, &h), DSUP_PHASH2_EBADARG);
    assert_int_equal(dsup_phash2("\x83\x50\0\0\0\1\x78\x9c", 8, 0, &h), DSUP_PHASH2_EBADARG); /* compressed */
    assert_int_equal(dsup_phash2("\x83\x52\0", 3, 0, &h), DSUP_PHASH2_EBADARG);              /* atom cache ref */
    assert_int_equal(dsup_phash2("\x83\x01", 2, 0, &h), DSUP_PHASH2_EBADARG);                /* unknown tag */
    assert_int_equal(dsup_phash2("\x83\x70", 2, 0, &h), DSUP_PHASH2_EUNHASHABLE);            /* NEW_FUN_EXT */
    assert_int_equal(dsup_phash2("\x83\x68\x02\x61\x01\x75", 6, 0, &h), DSUP_PHASH2_EUNHASHABLE);
    assert_int_equal(h, 12345); /* untouched on error */
    /* Trailing bytes: an error for dsup_phash2, reported by dsup_make_hash2. */
    assert_int_equal(dsup_phash2("\x83\x61\x01\x00", 4, 0, &h), DSUP_PHASH2_EBADARG);
    assert_int_equal(dsup_make_hash2("\x83\x61\x01\x00", 4, &h, &used), 0);
    assert_int_equal(used, 3);
    /* Malformed atoms, floats, bitstrings, big signs. */
    assert_int_equal(dsup_phash2("\x77\x02\xc0\x80", 4, 0, &h), DSUP_PHASH2_EBADARG);   /* overlong */
    assert_int_equal(dsup_phash2("\x77\x03\xed\xa0\x80", 5, 0, &h), DSUP_PHASH2_EBADARG); /* surrogate */
    assert_int_equal(dsup_phash2("\x46\x7f\xf8\0\0\0\0\0\0", 9, 0, &h), DSUP_PHASH2_EBADARG); /* NaN */
    assert_int_equal(dsup_phash2("\x4d\0\0\0\0\x08", 6, 0, &h), DSUP_PHASH2_EBADARG);
    assert_int_equal(dsup_phash2("\x4d\0\0\0\x01\x00\xff", 7, 0, &h), DSUP_PHASH2_EBADARG);
    assert_int_equal(dsup_phash2("\x6e\x01", 2, 0, &h), DSUP_PHASH2_EBADARG);
    /* Huge claimed sizes do not read past the end. */
    assert_int_equal(dsup_phash2("\x6c\xff\xff\xff\xff\x61\x01", 7, 0, &h), DSUP_PHASH2_EBADARG);
    assert_int_equal(dsup_phash2("\x6d\xff\xff\xff\xff", 5, 0, &h), DSUP_PHASH2_EBADARG);
    assert_int_equal(dsup_phash2("\x74\xff\xff\xff\xff", 5, 0, &h), DSUP_PHASH2_EBADARG);
    assert_int_equal(dsup_phash2("\x69\xff\xff\xff\xff", 5, 0, &h), DSUP_PHASH2_EBADARG);
}

/* Terms nested far deeper than the inline stack: the heap stack path. */
static void test_deep_nesting(void **state)
{
    (void)state;
    char *res = unit_erl(
        "L = lists:foldl(fun(_, A) -> [A] end, [], lists:seq(1, 100000)),"
        "T = lists:foldl(fun(I, A) -> {I, A} end, x, lists:seq(1, 100000)),"
        "M = lists:foldl(fun(I, A) -> #{I => A} end, #{}, lists:seq(1, 3000)),"
        "io:format(\"~b ~b ~b~n\", [erlang:phash2(X, 1 bsl 32) || X <- [L, T, M]]),"
        "halt().");
    assert_non_null(res);
    unsigned long want[3];
    assert_int_equal(sscanf(res, "%lu %lu %lu", &want[0], &want[1], &want[2]), 3);
    free(res);

    size_t cap = 100000 * 12 + 64, n;
    char *b = malloc(cap);
    uint32_t h;

    n = 0;
    b[n++] = (char)131;
    for (int i = 0; i < 100000; i++) {
        memcpy(b + n, "\x6c\0\0\0\x01", 5);
        n += 5;
    }
    b[n++] = 0x6a;
    for (int i = 0; i < 100000; i++)
        b[n++] = 0x6a;
    assert_int_equal(dsup_phash2(b, n, 0, &h), 0);
    assert_int_equal(h, want[0]);

    n = 0;
    b[n++] = (char)131;
    for (int i = 100000; i >= 1; i--) {
        b[n++] = 0x68;
        b[n++] = 2;
        b[n++] = 0x62;
        b[n++] = (char)(i >> 24);
        b[n++] = (char)(i >> 16);
        b[n++] = (char)(i >> 8);
        b[n++] = (char)i;
    }
    memcpy(b + n, "\x77\x01x", 3);
    n += 3;
    assert_int_equal(dsup_phash2(b, n, 0, &h), 0);
    assert_int_equal(h, want[1]);

    n = 0;
    b[n++] = (char)131;
    for (int i = 3000; i >= 1; i--) {
        memcpy(b + n, "\x74\0\0\0\x01\x62", 6);
        n += 6;
        b[n++] = (char)(i >> 24);
        b[n++] = (char)(i >> 16);
        b[n++] = (char)(i >> 8);
        b[n++] = (char)i;
    }
    memcpy(b + n, "\x74\0\0\0\0", 5);
    n += 5;
    assert_int_equal(dsup_phash2(b, n, 0, &h), 0);
    assert_int_equal(h, want[2]);
    free(b);
}

static void test_ranges_and_atoms(void **state)
{
    (void)state;
    char *res = unit_erl(
        "io:format(\"~b ~b ~b ~b ~b~n\", [erlang:phash2(hello), erlang:phash2(hello, 1),"
        " erlang:phash2(hello, 4294967295), erlang:phash2('h\\x{e9}llo'),"
        " erlang:phash2(list_to_atom([16#1F600, $a]))]), halt().");
    assert_non_null(res);
    unsigned long want[5];
    assert_int_equal(sscanf(res, "%lu %lu %lu %lu %lu", &want[0], &want[1], &want[2], &want[3], &want[4]), 5);
    free(res);
    uint32_t h;
    assert_int_equal(dsup_phash2("\x83\x64\x00\x05hello", 9, DSUP_PHASH2_RANGE_1, &h), 0);
    assert_int_equal(h, want[0]);
    assert_int_equal(dsup_phash2("\x83\x64\x00\x05hello", 9, 1, &h), 0);
    assert_int_equal(h, want[1]);
    assert_int_equal(dsup_phash2("\x73\x05hello", 7, 4294967295u, &h), 0);
    assert_int_equal(h, want[2]);
    /* latin1 and UTF-8 spellings of the same atom hash alike */
    assert_int_equal(dsup_phash2("\x73\x05h\xe9llo", 7, DSUP_PHASH2_RANGE_1, &h), 0);
    assert_int_equal(h, want[3]);
    assert_int_equal(dsup_phash2("\x77\x06h\xc3\xa9llo", 8, DSUP_PHASH2_RANGE_1, &h), 0);
    assert_int_equal(h, want[3]);
    assert_int_equal(dsup_phash2("\x77\x05\xf0\x9f\x98\x80" "a", 7, DSUP_PHASH2_RANGE_1, &h), 0);
    assert_int_equal(h, want[4]);
    assert_int_equal(dsup_phash2_atom_hvalue("h\xc3\xa9llo", 6) & ((1u << 27) - 1), want[3]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_ranges_and_atoms),
        cmocka_unit_test_setup_teardown(test_reference_terms, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
