/* test_dict.c — the byte-keyed hash table (c_src/base/dict.c) with both
 * kinds of entries: inline values (the supervisor's child records, pg
 * groups) and pointer values (checkpoints, pending specs, pg peers). Keys of
 * every length 0..40 cross the 8-byte padding the value sits behind. */
#include "unit_helpers.h"

#include "dict.h"

/* The header is what every child record pays on every node (README,
 * Memory per child). */
_Static_assert(sizeof(dsup_dict_ent) == 16, "dict entry header is 16 bytes");

#define MAXK 40
#define NKEYS 2000 /* enough to double the table several times */

/* A value the size and alignment of a small record. */
typedef struct rec {
    uint64_t a;
    uint32_t b, c;
    uint64_t d;
} rec;

/* Key i: length i % (MAXK + 1), bytes that depend on i in every position, so
 * keys of the same length differ and a key is never another's prefix match. */
static size_t make_key(unsigned i, unsigned char *k)
{
    size_t len = i % (MAXK + 1);
    for (size_t j = 0; j < len; j++)
        k[j] = (unsigned char)(i * 131u + j * 7u + (i >> 8) * 17u);
    if (len >= 2) { /* i itself in the first bytes: distinct keys for distinct i */
        k[0] = (unsigned char)(i & 0xFF);
        k[1] = (unsigned char)(i >> 8);
    }
    return len;
}

/* Key i is one of the NKEYS distinct ones only when its length has room for
 * i (lengths 0 and 1 have 1 and 256 keys): the tests use i below that. */
static int key_unique(unsigned i)
{
    size_t len = i % (MAXK + 1);
    return len >= 2 || (len == 1 && i < 256) || i == 0;
}

static void check_inline_entry(dsup_dict_ent *e, const unsigned char *k, size_t len, unsigned i)
{
    assert_non_null(e);
    assert_int_equal(e->klen, len);
    assert_memory_equal(e->key, k, len);
    rec *r = dsup_dict_val(e);
    assert_int_equal((uintptr_t)r % 8, 0); /* aligned for its 8-byte fields */
    assert_ptr_equal(dsup_dict_inline_key(r, len), e->key);
    assert_int_equal(r->a, i);
    assert_int_equal(r->b, (uint32_t)len);
    assert_int_equal(r->d, ~(uint64_t)i);
}

static void test_inline_all_key_lengths(void **st)
{
    (void)st;
    dsup_dict d = { 0 };
    rec *first[MAXK + 1];
    unsigned char k[MAXK];
    for (unsigned i = 0; i <= MAXK; i++) {
        size_t len = make_key(i, k);
        int created = -1;
        dsup_dict_ent *e = dsup_dict_upsert_inline(&d, k, len, sizeof(rec), &created);
        assert_int_equal(created, 1);
        rec *r = dsup_dict_val(e);
        /* zeroed, and writing every byte of it leaves the key intact */
        assert_int_equal(r->a | r->b | r->c | r->d, 0);
        *r = (rec){ i, (uint32_t)len, 0xFFFFFFFFu, ~(uint64_t)i };
        first[i] = r;
        check_inline_entry(e, k, len, i);
    }
    assert_int_equal(d.count, MAXK + 1);
    assert_int_equal(d.kind, DSUP_DICT_INLINE);
    for (unsigned i = 0; i <= MAXK; i++) {
        size_t len = make_key(i, k);
        check_inline_entry(dsup_dict_find(&d, k, len), k, len, i);
        int created = -1; /* the same key again: the same entry, value kept */
        dsup_dict_ent *e = dsup_dict_upsert_inline(&d, k, len, sizeof(rec), &created);
        assert_int_equal(created, 0);
        assert_ptr_equal(dsup_dict_val(e), first[i]);
        check_inline_entry(e, k, len, i);
    }
    /* a key one byte longer or shorter than a stored one is not found */
    make_key(20, k);
    assert_null(dsup_dict_find(&d, k, 19));
    assert_non_null(dsup_dict_find(&d, k, 20));
    assert_null(dsup_dict_find(&d, k, 21));
    dsup_dict_free(&d, NULL);
    assert_int_equal(d.count, 0);
    assert_int_equal(d.kind, 0);
}

typedef struct visit {
    size_t n;
    uint64_t sum;
} visit;

static void sum_inline(dsup_dict_ent *e, void *arg)
{
    visit *v = arg;
    rec *r = dsup_dict_val(e);
    assert_int_equal(r->b, e->klen);
    v->n++;
    v->sum += r->a;
}

static size_t released;
static void release_rec(void *val)
{
    rec *r = val;
    assert_int_equal(r->d, ~r->a); /* handed the value itself */
    released++;
}

/* Growth keeps every entry where it is (records are pointed at: by_pid, a
 * kill timer's data), and finds, foreach, remove and delete stay right. */
static void test_inline_growth_remove_foreach(void **st)
{
    (void)st;
    dsup_dict d = { 0 };
    static rec *where[NKEYS];
    unsigned char k[MAXK];
    size_t n = 0;
    uint64_t sum = 0;
    for (unsigned i = 0; i < NKEYS; i++) {
        where[i] = NULL;
        if (!key_unique(i))
            continue;
        size_t len = make_key(i, k);
        int created = 0;
        dsup_dict_ent *e = dsup_dict_upsert_inline(&d, k, len, sizeof(rec), &created);
        assert_int_equal(created, 1);
        rec *r = dsup_dict_val(e);
        *r = (rec){ i, (uint32_t)len, 0, ~(uint64_t)i };
        where[i] = r;
        n++;
        sum += i;
    }
    assert_int_equal(d.count, n);
    assert_true(d.nslots >= n);
    for (unsigned i = 0; i < NKEYS; i++) {
        if (!where[i])
            continue;
        size_t len = make_key(i, k);
        dsup_dict_ent *e = dsup_dict_find(&d, k, len);
        assert_ptr_equal(dsup_dict_val(e), where[i]);
        check_inline_entry(e, k, len, i);
    }
    visit v = { 0, 0 };
    dsup_dict_foreach(&d, sum_inline, &v);
    assert_int_equal(v.n, n);
    assert_int_equal(v.sum, sum);
    /* every third by remove (NULL: the value died with its entry), every
     * third by delete */
    for (unsigned i = 0; i < NKEYS; i++) {
        if (!where[i] || i % 3 == 2)
            continue;
        size_t len = make_key(i, k);
        if (i % 3 == 0)
            assert_null(dsup_dict_remove(&d, k, len));
        else
            assert_int_equal(dsup_dict_delete(&d, k, len), 1);
        assert_null(dsup_dict_find(&d, k, len));
        assert_int_equal(dsup_dict_delete(&d, k, len), 0);
        assert_null(dsup_dict_remove(&d, k, len));
        n--;
        sum -= i;
        where[i] = NULL;
    }
    assert_int_equal(d.count, n);
    for (unsigned i = 0; i < NKEYS; i++) {
        size_t len = make_key(i, k);
        dsup_dict_ent *e = dsup_dict_find(&d, k, len);
        if (where[i])
            check_inline_entry(e, k, len, i);
        else if (key_unique(i))
            assert_null(e);
    }
    v = (visit){ 0, 0 };
    dsup_dict_foreach(&d, sum_inline, &v);
    assert_int_equal(v.n, n);
    assert_int_equal(v.sum, sum);
    released = 0;
    dsup_dict_free(&d, release_rec);
    assert_int_equal(released, n);
    assert_null(d.slots);
}

/* Pointer values: the entry's slot holds the caller's pointer. */
typedef struct box {
    unsigned i;
    size_t len;
} box;

static size_t freed;
static void free_box(void *p)
{
    assert_non_null(p);
    freed++;
    free(p);
}

static void sum_boxes(dsup_dict_ent *e, void *arg)
{
    visit *v = arg;
    box *b = dsup_dict_get(e);
    assert_int_equal(b->len, e->klen);
    v->n++;
    v->sum += b->i;
}

static void test_pointer_dict(void **st)
{
    (void)st;
    dsup_dict d = { 0 };
    unsigned char k[MAXK];
    static int present[NKEYS];
    size_t n = 0;
    uint64_t sum = 0;
    for (unsigned i = 0; i < NKEYS; i++) {
        present[i] = 0;
        if (!key_unique(i))
            continue;
        size_t len = make_key(i, k);
        int created = 0;
        dsup_dict_ent *e = dsup_dict_upsert(&d, k, len, &created);
        assert_int_equal(created, 1);
        assert_null(dsup_dict_get(e)); /* a new entry's pointer is NULL */
        assert_memory_equal(e->key, k, len);
        box *b = malloc(sizeof *b);
        *b = (box){ i, len };
        dsup_dict_set(e, b);
        present[i] = 1;
        n++;
        sum += i;
    }
    assert_int_equal(d.kind, DSUP_DICT_POINTERS);
    assert_int_equal(d.count, n);
    for (unsigned i = 0; i < NKEYS; i++) {
        if (!present[i])
            continue;
        size_t len = make_key(i, k);
        dsup_dict_ent *e = dsup_dict_find(&d, k, len);
        assert_non_null(e);
        assert_memory_equal(e->key, k, len);
        box *b = dsup_dict_get(e);
        assert_int_equal(b->i, i);
        int created = -1; /* upsert of a present key keeps the pointer */
        assert_ptr_equal(dsup_dict_upsert(&d, k, len, &created), e);
        assert_int_equal(created, 0);
        assert_ptr_equal(dsup_dict_get(e), b);
    }
    /* replace a value through the slot */
    size_t len7 = make_key(7, k);
    dsup_dict_ent *e7 = dsup_dict_find(&d, k, len7);
    box *old = dsup_dict_get(e7);
    box *nb = malloc(sizeof *nb);
    *nb = *old;
    free(old);
    dsup_dict_set(e7, nb);
    assert_ptr_equal(dsup_dict_get(dsup_dict_find(&d, k, len7)), nb);

    visit v = { 0, 0 };
    dsup_dict_foreach(&d, sum_boxes, &v);
    assert_int_equal(v.n, n);
    assert_int_equal(v.sum, sum);
    /* remove hands the pointer back (ours to free); delete of an absent key */
    for (unsigned i = 0; i < NKEYS; i += 2) {
        if (!present[i])
            continue;
        size_t len = make_key(i, k);
        box *b = dsup_dict_remove(&d, k, len);
        assert_non_null(b);
        assert_int_equal(b->i, i);
        assert_int_equal(b->len, len);
        free(b);
        assert_null(dsup_dict_find(&d, k, len));
        assert_null(dsup_dict_remove(&d, k, len));
        assert_int_equal(dsup_dict_delete(&d, k, len), 0);
        present[i] = 0;
        n--;
        sum -= i;
    }
    assert_int_equal(d.count, n);
    v = (visit){ 0, 0 };
    dsup_dict_foreach(&d, sum_boxes, &v);
    assert_int_equal(v.n, n);
    assert_int_equal(v.sum, sum);
    freed = 0;
    dsup_dict_free(&d, free_box); /* the rest: ASan says whether all went */
    assert_int_equal(freed, n);
    assert_int_equal(d.count, 0);
}

/* An empty dict: finds and removes of any key, before the first upsert. */
static void test_empty(void **st)
{
    (void)st;
    dsup_dict d = { 0 };
    assert_null(dsup_dict_find(&d, "x", 1));
    assert_null(dsup_dict_find(&d, "", 0));
    assert_null(dsup_dict_remove(&d, "x", 1));
    assert_int_equal(dsup_dict_delete(&d, "x", 1), 0);
    dsup_dict_free(&d, free_box);
    /* the empty key is a key like any other */
    dsup_dict_ent *e = dsup_dict_upsert(&d, "", 0, NULL);
    assert_non_null(e);
    assert_ptr_equal(dsup_dict_find(&d, "", 0), e);
    assert_null(dsup_dict_find(&d, "\0", 1));
    assert_null(dsup_dict_remove(&d, "", 0)); /* its pointer was NULL */
    assert_int_equal(d.count, 0);
    dsup_dict_free(&d, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inline_all_key_lengths),
        cmocka_unit_test(test_inline_growth_remove_foreach),
        cmocka_unit_test(test_pointer_dict),
        cmocka_unit_test(test_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
