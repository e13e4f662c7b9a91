/* test_cli.c — the pure command-line parsers (cli_args.c) and the log line
 * formatter (log.c). References: --supervisor terms are compared with
 * Erlang literals by the real erl (binary_to_term(...) =:= Term); JSON log
 * lines are read back by python3's json module; timestamps come from
 * calendar:system_time_to_rfc3339 in erl. */
#include "unit_helpers.h"

#include <time.h>

#include "cli_args.h"
#include "log.h"

/* ---- numbers, addresses, node names ------------------------------------------------ */

static void test_parse_int(void **st)
{
    char err[256];
    long long v = -42;
    struct { const char *s; long long min, max, want; int ok; } cases[] = {
        { "0", 0, 65535, 0, 1 },          { "65535", 0, 65535, 65535, 1 },
        { "007", 0, 65535, 7, 1 },        { "-5", -10, 10, -5, 1 },
        { "65536", 0, 65535, 0, 0 },      { "-1", 0, 65535, 0, 0 },
        { "", 0, 65535, 0, 0 },           { " 1", 0, 65535, 0, 0 },
        { "+1", 0, 65535, 0, 0 },         { "1x", 0, 65535, 0, 0 },
        { "0x10", 0, 65535, 0, 0 },       { "abc", 0, 65535, 0, 0 },
        { "-", -10, 10, 0, 0 },           { "--1", -10, 10, 0, 0 },
        { "99999999999999999999", 0, 0x7fffffffffffffffLL, 0, 0 }, /* overflow */
        { "4294967295", 1024, 0xffffffffLL, 0xffffffffLL, 1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = 0;
        int rc = dsup_cli_parse_int(cases[i].s, cases[i].min, cases[i].max, &v, err, sizeof err);
        if (cases[i].ok) {
            assert_int_equal(rc, 0);
            assert_true(v == cases[i].want);
        } else {
            assert_int_equal(rc, -1);
            assert_non_null(strstr(err, "expected an integer in"));
            char quoted[64];
            snprintf(quoted, sizeof quoted, "'%s'", cases[i].s);
            assert_non_null(strstr(err, quoted));
        }
    }
}

static void test_parse_address(void **st)
{
    char err[256];
    const char *good[] = { "127.0.0.1", "0.0.0.0", "::1", "::", "fe80::1", "2001:db8::8:800:200c:417a" };
    const char *bad[] = { "localhost", "", "1.2.3", "127.0.0.256", "::g", "1.2.3.4:80", " 127.0.0.1" };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_int_equal(dsup_cli_parse_address(good[i], err, sizeof err), 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(dsup_cli_parse_address(bad[i], err, sizeof err), -1);
        assert_non_null(strstr(err, "IPv4 or IPv6"));
    }
}

static void test_check_node(void **st)
{
    char err[256];
    assert_int_equal(dsup_cli_check_node("a@h", err, sizeof err), 0);
    assert_int_equal(dsup_cli_check_node("dsup@127.0.0.1", err, sizeof err), 0);
    const char *bad[] = { "a", "@h", "a@", "a@b@c", "" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(dsup_cli_check_node(bad[i], err, sizeof err), -1);
}

/* ---- --supervisor specs --------------------------------------------------------------- */

/* Good specs and the Erlang terms they must encode; erl checks each. */
static const struct { const char *spec, *name, *term; } good_specs[] = {
    { "Foo", "Elixir.Foo", "[]" },
    { "my_sup", "my_sup", "[]" },
    { "X,nodes=a@h", "Elixir.X", "[{nodes,['a@h']}]" },
    { "X,nodes=a@h+b@h+c@127.0.0.1", "Elixir.X", "[{nodes,['a@h','b@h','c@127.0.0.1']}]" },
    { "X,listeners=l1+My.L", "Elixir.X", "[{listeners,[l1,'Elixir.My.L']}]" },
    { "My.Sup,cache_children=false,monitor_nodes=cluster,max_restarts=5,max_seconds=7", "Elixir.My.Sup",
      "[{'cache_children?',false},{monitor_nodes,cluster},{max_restarts,5},{max_seconds,7}]" },
    { "X,cache_children?=true,monitor_nodes=false,max_restarts=0,max_seconds=31536000", "Elixir.X",
      "[{'cache_children?',true},{monitor_nodes,false},{max_restarts,0},{max_seconds,31536000}]" },
};

static void test_sup_specs_vs_erl(void **st)
{
    size_t n = sizeof good_specs / sizeof good_specs[0];
    char *expr = malloc(1 << 16);
    size_t len = (size_t)sprintf(expr, "io:format(\"~p~n\", [[");
    for (size_t i = 0; i < n; i++) {
        char name[300], err[1024];
        ei_x_buff x;
        assert_int_equal(dsup_cli_sup_parse(good_specs[i].spec, name, sizeof name, &x, err, sizeof err), 0);
        assert_string_equal(name, good_specs[i].name);
        len += (size_t)sprintf(expr + len, "%s(binary_to_term(<<131", i ? "," : "");
        for (int k = 0; k < x.index; k++)
            len += (size_t)sprintf(expr + len, ",%u", (unsigned char)x.buff[k]);
        len += (size_t)sprintf(expr + len, ">>) =:= %s)", good_specs[i].term);
        ei_x_free(&x);
    }
    sprintf(expr + len, "]]), halt().");
    char *out = unit_erl(expr);
    assert_non_null(out);
    char want[256] = "[";
    for (size_t i = 0; i < n; i++)
        strcat(want, i ? ",true" : "true");
    strcat(want, "]\n");
    assert_string_equal(out, want);
    free(out);
    free(expr);
}

static void test_sup_spec_errors(void **st)
{
    /* Each is refused, naming the key (or the problem) and quoting the spec. */
    static const struct { const char *spec, *says; } bad[] = {
        { "Foo,bogus=1", "unknown key 'bogus'" },
        { "X,nodes=a@h+", "nodes" },          { "X,nodes=a@h++b@h", "nodes" },
        { "X,nodes=+a@h", "nodes" },          { "X,nodes=+", "nodes" },
        { "X,nodes=ab", "nodes" },            { "X,nodes=a@h+b", "nodes" },
        { "X,listeners=a++b", "listeners" },  { "X,listeners=a+", "listeners" },
        { "X,max_restarts=abc", "max_restarts" }, { "X,max_restarts=-1", "max_restarts" },
        { "X,max_restarts=1000001", "max_restarts" }, { "X,max_seconds=0", "max_seconds" },
        { "X,max_seconds=31536001", "max_seconds" }, { "X,cache_children=yes", "cache_children" },
        { "X,monitor_nodes=all", "monitor_nodes" }, { "X,,max_seconds=1", "key=value" },
        { "X,max_seconds", "key=value" },      { "X,=1", "key=value" },
        { "X,nodes=", "key=value" },           { "max_seconds=1", "instance name" },
        { "", "instance name" },               { ",x=1", "instance name" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[300], err[1024] = "";
        ei_x_buff x;
        int rc = dsup_cli_sup_parse(bad[i].spec, name, sizeof name, &x, err, sizeof err);
        ei_x_free(&x);
        if (rc != -1 || !strstr(err, bad[i].says) || !strstr(err, bad[i].spec))
            fail_msg("spec '%s': rc %d, err '%s' (wanted '%s')", bad[i].spec, rc, err, bad[i].says);
    }
    /* an unknown key lists every valid one */
    char name[300], err[1024];
    ei_x_buff x;
    assert_int_equal(dsup_cli_sup_parse("Foo,bogus=1", name, sizeof name, &x, err, sizeof err), -1);
    ei_x_free(&x);
    const char *keys[] = { "cache_children", "monitor_nodes", "nodes", "listeners", "max_restarts", "max_seconds" };
    for (size_t i = 0; i < 6; i++)
        assert_non_null(strstr(err, keys[i]));
}

/* ---- log lines -------------------------------------------------------------------------- */

static void test_log_text_line(void **st)
{
    char *ref = unit_erl("io:format(\"~s~n\", [calendar:system_time_to_rfc3339(1700000000123, "
                         "[{unit, millisecond}, {offset, \"Z\"}])]), halt().");
    assert_non_null(ref);
    ref[strcspn(ref, "\n")] = 0;
    assert_int_equal(dsup_log_format_parse("text"), 0);
    dsup_log_set_node("n@h");
    char line[256], want[256];
    size_t len = dsup_log_format_line(line, sizeof line, DSUP_LOG_WARN, 1700000000123LL, "two\nlines");
    snprintf(want, sizeof want, "%s n@h warn two lines\n", ref);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(line, want, len);
    /* truncated, still one line */
    char big[600];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    len = dsup_log_format_line(line, 100, DSUP_LOG_INFO, 1700000000123LL, big);
    assert_true(len <= 100 && len > 50);
    assert_int_equal(line[len - 1], '\n');
    assert_null(memchr(line, '\n', len - 1));
    free(ref);
}

static void test_log_json_lines_parse(void **st)
{
    assert_int_equal(dsup_log_format_parse("json"), 0);
    assert_int_equal(dsup_log_format_parse("xml"), -1);
    dsup_log_set_node("we\"ird\\node@h");
    static char longmsg[6000];
    for (size_t i = 0; i + 2 < sizeof longmsg; i += 2) /* "é" repeated: cut mid-character? */
        memcpy(longmsg + i, "\xc3\xa9", 2);
    static const struct { const char *msg, *want; } m[] = {
        { "plain", "plain" },
        { "q\"b\\s/", "q\"b\\s/" },
        { "\x01\x1f\x7f\n\t\r", "\x01\x1f\x7f\n\t\r" },
        { "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80" },
        { "\xff|\xc3(|\xed\xa0\x80|\xf0\x9f\x98",
          "\xef\xbf\xbd|\xef\xbf\xbd(|\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
    };
    char path[] = "/tmp/dsup_unit_json_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    char line[4096];
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        fwrite(line, 1, dsup_log_format_line(line, sizeof line, (int)(i % 4), 1700000000123LL, m[i].msg), f);
    size_t len = dsup_log_format_line(line, sizeof line, DSUP_LOG_ERROR, 1700000000123LL, longmsg);
    assert_true(len <= sizeof line);
    fwrite(line, 1, len, f);
    fclose(f);
    /* python3 reads every line and prints each msg (and node) as hex */
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "python3 -c 'import json,sys\n"
             "for l in open(sys.argv[1], \"rb\"):\n"
             "    o = json.loads(l)\n"
             "    assert set(o) == {\"time\",\"node\",\"level\",\"msg\"}\n"
             "    assert o[\"time\"] == \"2023-11-14T22:13:20.123Z\", o[\"time\"]\n"
             "    print(o[\"level\"], o[\"node\"].encode().hex(), o[\"msg\"].encode().hex())' %s",
             path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[32768];
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    assert_int_equal(pclose(p), 0);
    unlink(path);
    const char *levels[] = { "debug", "info", "warn", "error" };
    char *save = NULL, *row = strtok_r(out, "\n", &save);
    for (size_t i = 0; i <= sizeof m / sizeof m[0]; i++, row = strtok_r(NULL, "\n", &save)) {
        assert_non_null(row);
        const char *want = i < sizeof m / sizeof m[0] ? m[i].want : NULL;
        char expect[512], *e = expect;
        e += sprintf(e, "%s ", i < sizeof m / sizeof m[0] ? levels[i % 4] : "error");
        for (const char *c = "we\"ird\\node@h"; *c; c++)
            e += sprintf(e, "%02x", (unsigned char)*c);
        *e++ = ' ';
        *e = 0;
        if (want) {
            for (const char *c = want; *c; c++)
                e += sprintf(e, "%02x", (unsigned char)*c);
            assert_string_equal(row, expect);
        } else { /* the long line: cut on a whole character, a prefix of the message */
            assert_true(strncmp(row, expect, strlen(expect)) == 0);
            const char *hex = row + strlen(expect);
            assert_true(strlen(hex) > 2000 && strlen(hex) % 4 == 0);
            for (size_t k = 0; k < strlen(hex); k += 4)
                assert_true(strncmp(hex + k, "c3a9", 4) == 0);
        }
    }
    dsup_log_format_parse("text");
}

/* Not a test of speed (the machine is shared): a figure for the report. */
static void test_log_cost(void **st)
{
    char line[4096];
    const char *fmts[] = { "text", "json" };
    for (int f = 0; f < 2; f++) {
        dsup_log_format_parse(fmts[f]);
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        size_t sum = 0;
        for (int i = 0; i < 200000; i++)
            sum += dsup_log_format_line(line, sizeof line, DSUP_LOG_INFO, 1700000000123LL + i,
                                        "connection attempt from x@127.0.0.1 refused: wrong cookie");
        clock_gettime(CLOCK_MONOTONIC, &b);
        double ns = ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / 200000;
        print_message("log line (%s): %.0f ns to format (%zu bytes)\n", fmts[f], ns, sum / 200000);
    }
    dsup_log_format_parse("text");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_int),
        cmocka_unit_test(test_parse_address),
        cmocka_unit_test(test_check_node),
        cmocka_unit_test(test_sup_specs_vs_erl),
        cmocka_unit_test(test_sup_spec_errors),
        cmocka_unit_test(test_log_text_line),
        cmocka_unit_test(test_log_json_lines_parse),
        cmocka_unit_test(test_log_cost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
