/* test_metrics.c — the metrics registry: histogram buckets (Prometheus `le`
 * is "less than or equal"), per-peer records, the classes of handshake
 * failures and child exits, and the rings of recent events. */
#include "unit_helpers.h"

#include "http/http.h"
#include "intern.h"
#include "metrics.h"
#include "node.h"

/* A node that never starts: its tables are what these tests read. */
static dsup_node *N;

static void test_hist_buckets(void **st)
{
    static const double le[] = { 0.001, 0.01, 0.1 };
    dsup_hist h = { .le = le, .n = 3 };
    dsup_hist_observe(&h, 0.0);
    dsup_hist_observe(&h, 0.001); /* on the bound: that bucket */
    dsup_hist_observe(&h, 0.0011);
    dsup_hist_observe(&h, 0.1);
    dsup_hist_observe(&h, 5.0);   /* past the last bound: +Inf only */
    assert_int_equal(h.bucket[0], 2);
    assert_int_equal(h.bucket[1], 1);
    assert_int_equal(h.bucket[2], 1);
    assert_int_equal(h.bucket[3], 1);
    assert_int_equal(h.count, 5);
    assert_true(h.sum > 5.10209 && h.sum < 5.10211);
}

static void test_node_histograms_have_bucket_texts(void **st)
{
    const dsup_hist *hs[] = { &dsup_metrics_of(N)->loop_lag, &dsup_metrics_of(N)->node_call, &dsup_metrics_of(N)->worker_call,
                              &dsup_metrics_of(N)->http_render };
    for (size_t k = 0; k < sizeof hs / sizeof *hs; k++) {
        assert_true(hs[k]->n > 0 && hs[k]->n < DSUP_HIST_MAX);
        for (int i = 0; i < hs[k]->n; i++) {
            assert_true(strtod(hs[k]->le_txt[i], NULL) == hs[k]->le[i]); /* the text says the bound */
            if (i)
                assert_true(hs[k]->le[i] > hs[k]->le[i - 1]);
        }
    }
}

static void test_peer_records(void **st)
{
    const char *a = dsup_intern_str(N->names, "a@127.0.0.1"), *b = dsup_intern_str(N->names, "b@127.0.0.1");
    dsup_peer_stats *pa = dsup_metrics_peer(N, a);
    assert_ptr_equal(pa, dsup_metrics_peer(N, a));
    assert_ptr_not_equal(pa, dsup_metrics_peer(N, b));
    assert_ptr_equal(pa, dsup_metrics_peer(N, a)); /* after another peer in between */
    assert_string_equal(dsup_metrics_peer(N, NULL)->peer, "");
    pa->bytes_in += 10;
    dsup_metrics_peer(N, a)->bytes_in += 5;
    assert_int_equal(pa->bytes_in, 15);
    int seen = 0;
    for (dsup_peer_stats *p = dsup_metrics_peers(N); p; p = p->next)
        seen += p->peer == a || p->peer == b;
    assert_int_equal(seen, 2);
}

static void test_handshake_failure_classes(void **st)
{
    static const struct { const char *why; int cls; } cases[] = {
        { "wrong cookie (peer's digest does not match)", DSUP_HS_COOKIE },
        { "wrong cookie", DSUP_HS_COOKIE },
        { "handshake timed out", DSUP_HS_TIMEOUT },
        { "peer speaks only protocol version 5", DSUP_HS_VERSION },
        { "bad node name in send_name", DSUP_HS_NAME },
        { "simultaneous connect, ours wins", DSUP_HS_SIMULTANEOUS },
        { "bad status", DSUP_HS_STATUS },
        { "closed by peer", DSUP_HS_CLOSED },
        { "bad challenge_reply", DSUP_HS_PROTOCOL },
    };
    const char *peer = dsup_intern_str(N->names, "hs@127.0.0.1");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint64_t before = dsup_metrics_peer(N, peer)->hs_fail[cases[i].cls];
        dsup_metrics_hs_failure(N, peer, cases[i].why);
        assert_int_equal(dsup_metrics_peer(N, peer)->hs_fail[cases[i].cls], before + 1);
        /* and each shows as a connection event, newest first */
        const dsup_conn_event *e = dsup_metrics_conn_ev(N, 0);
        assert_non_null(e);
        assert_string_equal(e->event, "handshake failed");
        assert_string_equal(e->detail, cases[i].why);
    }
}

static dsup_term enc(ei_x_buff *x) { return (dsup_term){ x->buff, (size_t)x->index }; }

static void test_child_exit_classes(void **st)
{
    const char *inst = dsup_intern_str(N->names, "Elixir.T"), *type = dsup_intern_str(N->names, "counter");
    dsup_pid pid = { dsup_intern_str(N->names, "n@127.0.0.1"), 42, 0, 1 };
    ei_x_buff name, r;
    ei_x_new(&name);
    dsup_x_encode_atom(&name, "c1");
    /* not crashes: normal, shutdown, {shutdown, _}, and anything asked for */
    const char *benign[] = { "normal", "shutdown" };
    for (int i = 0; i < 2; i++) {
        ei_x_new(&r);
        dsup_x_encode_atom(&r, benign[i]);
        dsup_metrics_child_exit(N, inst, type, enc(&name), &pid, enc(&r), 0);
        ei_x_free(&r);
    }
    ei_x_new(&r);
    ei_x_encode_tuple_header(&r, 2);
    dsup_x_encode_atom(&r, "shutdown");
    dsup_x_encode_atom(&r, "bye");
    dsup_metrics_child_exit(N, inst, type, enc(&name), &pid, enc(&r), 0);
    ei_x_free(&r);
    ei_x_new(&r);
    dsup_x_encode_atom(&r, "killed");
    dsup_metrics_child_exit(N, inst, type, enc(&name), &pid, enc(&r), 1); /* expected: terminate_child */
    ei_x_free(&r);
    dsup_sup_stats *s = dsup_metrics_sup(N, inst, type);
    for (int k = 0; k < DSUP_CRASH_NCLASS; k++)
        assert_int_equal(s->crashes[k], 0);
    assert_null(dsup_metrics_crash(N, 0));

    /* crashes */
    const char *atoms[] = { "killed", "noconnection", "timeout" };
    for (int i = 0; i < 3; i++) {
        ei_x_new(&r);
        dsup_x_encode_atom(&r, atoms[i]);
        dsup_metrics_child_exit(N, inst, type, enc(&name), &pid, enc(&r), 0);
        ei_x_free(&r);
    }
    ei_x_new(&r);
    ei_x_encode_tuple_header(&r, 2);
    dsup_x_encode_atom(&r, "badarg");
    ei_x_encode_empty_list(&r);
    dsup_metrics_child_exit(N, inst, type, enc(&name), &pid, enc(&r), 0);
    ei_x_free(&r);
    assert_int_equal(s->crashes[DSUP_CRASH_KILLED], 1);
    assert_int_equal(s->crashes[DSUP_CRASH_NOCONNECTION], 1);
    assert_int_equal(s->crashes[DSUP_CRASH_TIMEOUT], 1);
    assert_int_equal(s->crashes[DSUP_CRASH_ERROR], 1);
    const dsup_crash_report *c = dsup_metrics_crash(N, 0);
    assert_non_null(c);
    assert_string_equal(c->name, "c1");
    assert_string_equal(c->pid, "<n@127.0.0.1.42.0>");
    assert_string_equal(c->reason, "{badarg, []}"); /* as ei prints it */
    assert_string_equal(dsup_metrics_crash(N, 3)->reason, "killed");
    assert_null(dsup_metrics_crash(N, 4));
    ei_x_free(&name);
}

static void test_rings_keep_the_newest(void **st)
{
    char detail[32];
    for (int i = 0; i < DSUP_RECENT + 5; i++) {
        snprintf(detail, sizeof detail, "e%d", i);
        dsup_metrics_conn_event(N, NULL, "up", detail);
    }
    snprintf(detail, sizeof detail, "e%d", DSUP_RECENT + 4);
    assert_string_equal(dsup_metrics_conn_ev(N, 0)->detail, detail);
    snprintf(detail, sizeof detail, "e%d", 5);
    assert_string_equal(dsup_metrics_conn_ev(N, DSUP_RECENT - 1)->detail, detail);
    assert_null(dsup_metrics_conn_ev(N, DSUP_RECENT));
}

/* What the status page and Prometheus read must stay valid whatever a name holds. */
static void test_text_escaping(void **st)
{
    dsup_buf b = { 0 };
    out_json_str(&b, "a\"b\\c\n\x01 \xc3\xa9 \xff\xc3 <x>");
    dsup_buf_put_u8(&b, 0);
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\u000a\\u0001 \xc3\xa9 \\ufffd\\ufffd <x>\"");
    b.len = 0;
    out_label(&b, "x\"y\\z\nw");
    dsup_buf_put_u8(&b, 0);
    assert_string_equal(b.data, "x\\\"y\\\\z\\nw");
    dsup_buf_free(&b);
}

static void test_query_param(void **st)
{
    const char *qs = "limit=10&q=a%20b+c%2f&x";
    char out[32];
    assert_int_equal(dsup_http_query_param(qs, strlen(qs), "q", out, sizeof out), 0);
    assert_string_equal(out, "a b c/");
    assert_int_equal(dsup_http_query_param(qs, strlen(qs), "limit", out, sizeof out), 0);
    assert_string_equal(out, "10");
    assert_int_equal(dsup_http_query_param(qs, strlen(qs), "x", out, sizeof out), -1);
    assert_int_equal(dsup_http_query_param(qs, strlen(qs), "lim", out, sizeof out), -1);
    /* truncated escapes are kept as they are; the output is bounded */
    assert_int_equal(dsup_http_query_param("q=%4", 4, "q", out, sizeof out), 0);
    assert_string_equal(out, "%4");
    assert_int_equal(dsup_http_query_param("q=abcdef", 8, "q", out, 4), 0);
    assert_string_equal(out, "abc");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hist_buckets),
        cmocka_unit_test(test_node_histograms_have_bucket_texts),
        cmocka_unit_test(test_peer_records),
        cmocka_unit_test(test_handshake_failure_classes),
        cmocka_unit_test(test_child_exit_classes),
        cmocka_unit_test(test_rings_keep_the_newest),
        cmocka_unit_test(test_text_escaping),
        cmocka_unit_test(test_query_param),
    };
    N = dsup_node_alloc(uv_default_loop());
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    dsup_node_free(N);
    return rc;
}
