/* test_errors.c — the error surface (include/dsup.h, dsup_err): every code
 * has its own text, unknown values read "unknown error", and the public
 * functions' error paths that need no running node return the codes dsup.h
 * documents. Also the allocation rule (base/xalloc.h): out of memory logs
 * the size and the call site, then aborts. */
#include "unit_helpers.h"

#include <signal.h>
#include <sys/wait.h>

#include "dsup.h"
#include <uv.h>
#include "err.h"
#include "xalloc.h"

/* A node made but never started: the calls below must refuse, not crash. */
static dsup_node *N;

static const int codes[] = { DSUP_OK, DSUP_ENOMEM, DSUP_EINVAL, DSUP_ENOTFOUND, DSUP_EEXIST, DSUP_ENOPROC,
                             DSUP_EUNKNOWN_TYPE, DSUP_EREFUSED, DSUP_ENOTUP, DSUP_ETOOBIG, DSUP_ENOTCONN,
                             DSUP_ESYSTEM };
#define NCODES (sizeof codes / sizeof codes[0])

static void test_strerror_distinct(void **st)
{
    /* -1 stays "out of memory": callers that compared with -1 still work. */
    assert_int_equal(DSUP_ENOMEM, -1);
    assert_string_equal(dsup_strerror(DSUP_OK), "success");
    assert_string_equal(dsup_strerror(DSUP_EINVAL), "invalid argument");
    for (size_t i = 0; i < NCODES; i++) {
        if (codes[i] != DSUP_OK)
            assert_true(codes[i] < 0); /* `rc < 0` means failure */
        assert_string_not_equal(dsup_strerror(codes[i]), "unknown error");
        assert_string_not_equal(dsup_err_name(codes[i]), "eunknown");
        for (size_t j = 0; j < i; j++) {
            assert_int_not_equal(codes[i], codes[j]);
            assert_string_not_equal(dsup_strerror(codes[i]), dsup_strerror(codes[j]));
            assert_string_not_equal(dsup_err_name(codes[i]), dsup_err_name(codes[j]));
        }
    }
    assert_string_equal(dsup_strerror(-1000), "unknown error");
    assert_string_equal(dsup_strerror(7), "unknown error");
    assert_string_equal(dsup_err_name(-1000), "eunknown");
}

static void test_register_errors(void **st)
{
    dsup_worker_type none = { 0 };
    assert_int_equal(dsup_register_worker_type(&none), DSUP_EINVAL);
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    dsup_worker_type toolong = { .name = longname };
    assert_int_equal(dsup_register_worker_type(&toolong), DSUP_EINVAL);
    static dsup_worker_type a = { .name = "unit_err_type" };
    static dsup_worker_type b = { .name = "unit_err_type" };
    assert_int_equal(dsup_register_worker_type(&a), DSUP_OK);
    assert_int_equal(dsup_register_worker_type(&a), DSUP_OK); /* the same struct again */
    assert_int_equal(dsup_register_worker_type(&b), DSUP_EEXIST);
}

static void test_spawn_errors(void **st)
{
    ei_x_buff why;
    ei_x_new(&why);
    dsup_pid pid;
    /* An unknown type: the reason is {unknown_worker, Type}, as erl encodes
     * it with UTF-8 atoms (minor_version 2, the default from OTP 26). */
    assert_int_equal(dsup_spawn(N, "unit_no_such_type", NULL, NULL, &pid, &why), DSUP_EUNKNOWN_TYPE);
    char *ref = unit_erl("<<131, B/binary>> = term_to_binary({unknown_worker, unit_no_such_type}, [{minor_version, 2}]),"
                         "io:format(\"~w\", [binary_to_list(B)]), halt().");
    assert_non_null(ref);
    char mine[256] = "[";
    for (int i = 0; i < why.index; i++)
        snprintf(mine + strlen(mine), sizeof mine - strlen(mine), "%s%u", i ? "," : "", (unsigned char)why.buff[i]);
    strcat(mine, "]");
    assert_string_equal(mine, ref);
    free(ref);
    /* A known type, but no node yet: refused, not crashed. */
    static dsup_worker_type t = { .name = "unit_err_spawn" };
    assert_int_equal(dsup_register_worker_type(&t), DSUP_OK);
    assert_int_equal(dsup_spawn(N, "unit_err_spawn", NULL, NULL, &pid, &why), DSUP_ENOTUP);
    ei_x_free(&why);
}

static void on_pg(void *arg, dsup_pg *scope, int event, dsup_term group, const dsup_pid *pids, size_t n) {}
static void on_sup(void *arg, dsup_sup *sup, dsup_term event) {}

static void test_api_errors_without_node(void **st)
{
    static const char g[] = { 119, 1, 'g' }; /* the atom g */
    dsup_term group = { g, sizeof g };
    dsup_pid pid = { "x@y", 1, 0, 1 };
    assert_null(dsup_pg_scope(N, "unit_scope")); /* NULL before the node is up */
    assert_int_equal(dsup_pg_join(NULL, group, &pid, 1), DSUP_EINVAL);
    assert_int_equal(dsup_pg_leave(NULL, group, &pid, 1), DSUP_EINVAL);
    assert_int_equal(dsup_pg_subscribe(NULL, on_pg, NULL), DSUP_EINVAL);
    assert_int_equal(dsup_pg_unsubscribe(NULL, on_pg, NULL), DSUP_EINVAL);
    assert_int_equal(dsup_sup_subscribe(NULL, on_sup, NULL), DSUP_EINVAL);
    assert_int_equal(dsup_cancel_timer(NULL, 123456), DSUP_EINVAL);
    assert_int_equal(dsup_reply(NULL, NULL), DSUP_EINVAL);
    assert_int_equal(dsup_queue_work(NULL, NULL, NULL, NULL), DSUP_EINVAL);
    assert_int_equal(dsup_checkpoint(NULL, group), DSUP_ENOTFOUND);

    ei_x_buff err;
    ei_x_new(&err);
    assert_int_equal(dsup_sup_start(N, "UnitSup", NULL, NULL, &err), DSUP_ENOTUP);
    int i = 0;
    char atom[MAXATOMLEN];
    assert_int_equal(ei_decode_atom(err.buff, &i, atom), 0);
    assert_string_equal(atom, "cannot_start");
    assert_int_equal(dsup_sup_start(N, "", NULL, NULL, &err), DSUP_EINVAL);
    ei_x_free(&err);
}

static void test_oom_message(void **st)
{
    char line[256];
    size_t n = dsup_oom_format(line, sizeof line, 4096, "services/pg.c", 42);
    assert_string_equal(line, "dsup: out of memory allocating 4096 bytes (services/pg.c:42)\n");
    assert_int_equal(n, strlen(line));
    /* Truncated to the buffer, still NUL-terminated. */
    assert_int_equal(dsup_oom_format(line, 10, 1, "f.c", 1), 9);
    assert_int_equal(strlen(line), 9);
}

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

/* A real failed allocation (SIZE_MAX / 2 bytes) in a child process: it
 * dies by SIGABRT after saying why (under ASan, ASan's own report comes
 * first and ends it the same way). */
static void test_oom_aborts(void **st)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        signal(SIGABRT, SIG_DFL);
        volatile size_t huge = SIZE_MAX / 2;
        char *p = dsup_xmalloc(huge);
        p[0] = 1;
        _exit(0); /* not reached */
    }
    close(fds[1]);
    char out[4096];
    size_t len = 0;
    ssize_t r;
    while ((r = read(fds[0], out + len, sizeof out - 1 - len)) > 0)
        len += (size_t)r;
    out[len] = 0;
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
#ifdef UNDER_ASAN
    assert_false(WIFEXITED(status) && WEXITSTATUS(status) == 0);
#else
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    char want[128];
    snprintf(want, sizeof want, "dsup: out of memory allocating %zu bytes (test/unit/test_errors.c:", SIZE_MAX / 2);
    assert_non_null(strstr(out, want));
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror_distinct),
        cmocka_unit_test(test_register_errors),
        cmocka_unit_test(test_spawn_errors),
        cmocka_unit_test(test_api_errors_without_node),
        cmocka_unit_test(test_oom_message),
        cmocka_unit_test(test_oom_aborts),
    };
    dsup_node_config cfg = { .name = "unit_errors@127.0.0.1", .cookie = "c", .no_epmd = 1 };
    N = dsup_node_new(uv_default_loop(), &cfg);
    int rc = N ? cmocka_run_group_tests(tests, NULL, NULL) : 1;
    dsup_node_free(N);
    return rc;
}
