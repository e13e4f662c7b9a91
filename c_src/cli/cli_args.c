/* cli_args.c — strict parsers for command-line values; see cli_args.h. */
#include "cli_args.h"
#include "xalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "intern.h"
#include "node.h"

const char dsup_cli_sup_keys[] =
    "cache_children=true|false, monitor_nodes=true|false|cluster, nodes=a@h+b@h, "
    "listeners=name+name, max_restarts=0..1000000, max_seconds=1..31536000, rebalance=true|false, "
    "rebalance_moves=1..10000, replicas=1..16";

/* Names given on the command line: MyApp.Sup is the Elixir alias
 * 'Elixir.MyApp.Sup'; lower-case names are plain atoms. Written into buf
 * (300 bytes suffice); NULL when empty or too long. */
const char *dsup_atom_from_cli(const char *arg, char *buf, size_t cap)
{
    if (!arg[0] || strlen(arg) > 255)
        return NULL;
    if (arg[0] >= 'A' && arg[0] <= 'Z' && strncmp(arg, "Elixir.", 7) != 0)
        snprintf(buf, cap, "Elixir.%s", arg);
    else
        snprintf(buf, cap, "%s", arg);
    if (strlen(buf) > 255)
        return NULL;
    return buf;
}

/* For node_ctrl.c (it starts the instances once the node is up); the specs
 * were checked by the option parser before anything started. */
int dsup_cli_sup_opts(const char *arg, char *name, size_t cap, ei_x_buff *opts)
{
    char err[8];
    return dsup_cli_sup_parse(arg, name, cap, opts, err, sizeof err);
}

int dsup_cli_parse_int(const char *s, long long min, long long max, long long *out, char *err, size_t errcap)
{
    /* strtoll alone accepts " 12", "+12", "12abc" (with end) and saturates
     * on overflow: demand digits only (one leading '-' when min < 0). */
    const char *d = s[0] == '-' && min < 0 ? s + 1 : s;
    int digits = *d != 0;
    for (const char *p = d; *p; p++)
        digits &= *p >= '0' && *p <= '9';
    errno = 0;
    char *end = NULL;
    long long v = digits ? strtoll(s, &end, 10) : 0;
    if (!digits || errno || *end || v < min || v > max) {
        snprintf(err, errcap, "expected an integer in %lld..%lld, got '%s'", min, max, s);
        return -1;
    }
    *out = v;
    return 0;
}

int dsup_cli_parse_address(const char *s, char *err, size_t errcap)
{
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    if (uv_ip4_addr(s, 0, &a4) == 0 || uv_ip6_addr(s, 0, &a6) == 0)
        return 0;
    snprintf(err, errcap, "expected an IPv4 or IPv6 address (e.g. 127.0.0.1 or ::1), got '%s'", s);
    return -1;
}

int dsup_cli_check_node(const char *s, char *err, size_t errcap)
{
    const char *at = strchr(s, '@');
    if (!at || at == s || !at[1] || strchr(at + 1, '@') || strlen(s) > 255) {
        snprintf(err, errcap, "expected a node name NAME@HOST, got '%s'", s);
        return -1;
    }
    return 0;
}

/* ---- --supervisor Name,key=value,... ---------------------------------------------- */

typedef struct kv {
    char *k, *v;
} kv;

static int fail(char *err, size_t errcap, const char *what, const char *arg)
{
    snprintf(err, errcap, "%s in '%s' (valid keys: %s)", what, arg, dsup_cli_sup_keys);
    return -1;
}

/* "a+b+c": NULL when every element is non-empty and valid (a node name
 * NAME@HOST for nodes, an atom for listeners), else what was expected.
 * Empty elements are an error, never skipped: the list header written
 * later counts the '+' separators. */
static const char *list_error(const char *v, int nodes)
{
    for (const char *p = v;;) {
        const char *e = strchr(p, '+');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char el[300], why[8];
        if (len == 0)
            return nodes ? "expected NAME@HOST elements joined by '+' (none empty)"
                         : "expected names joined by '+' (none empty)";
        if (len > 255)
            return "expected elements of at most 255 bytes";
        memcpy(el, p, len);
        el[len] = 0;
        if (nodes && dsup_cli_check_node(el, why, sizeof why) < 0)
            return "expected NAME@HOST elements joined by '+' (none empty)";
        char atom[300];
        if (!nodes && !dsup_atom_from_cli(el, atom, sizeof atom))
            return "expected names joined by '+' (none empty)";
        if (!e)
            return NULL;
        p = e + 1;
    }
}

static void encode_list(ei_x_buff *x, char *v, int nodes)
{
    int n = 1;
    for (const char *p = v; *p; p++)
        n += *p == '+';
    ei_x_encode_list_header(x, n);
    char *save = NULL;
    for (char *t = strtok_r(v, "+", &save); t; t = strtok_r(NULL, "+", &save)) {
        char atom[300];
        dsup_x_encode_atom(x, nodes ? t : dsup_atom_from_cli(t, atom, sizeof atom));
    }
    ei_x_encode_empty_list(x);
}

static int is_one_of(const char *v, const char *const *set)
{
    for (; *set; set++)
        if (!strcmp(v, *set))
            return 1;
    return 0;
}

/* One key=value: checked (the checks of sup_opts.c, so that the instance
 * cannot refuse it after the node started), then encoded as {Key, Value}. */
static int pair(ei_x_buff *x, kv *p, const char *arg, char *err, size_t errcap)
{
    static const char *const booleans[] = { "true", "false", NULL };
    static const char *const monitor[] = { "true", "false", "cluster", NULL };
    char what[600];
    const char *k = p->k, *v = p->v, *why = NULL;
    long long num;
    if (!strcmp(k, "cache_children") || !strcmp(k, "cache_children?")) {
        if (!is_one_of(v, booleans))
            why = "expected true or false";
        k = "cache_children?";
    } else if (!strcmp(k, "monitor_nodes")) {
        if (!is_one_of(v, monitor))
            why = "expected true, false or cluster";
    } else if (!strcmp(k, "max_restarts")) {
        if (dsup_cli_parse_int(v, 0, 1000000, &num, what, sizeof what) < 0)
            why = "expected an integer in 0..1000000";
    } else if (!strcmp(k, "max_seconds")) {
        if (dsup_cli_parse_int(v, 1, 86400 * 365, &num, what, sizeof what) < 0)
            why = "expected an integer in 1..31536000";
    } else if (!strcmp(k, "rebalance")) {
        if (!is_one_of(v, booleans))
            why = "expected true or false";
    } else if (!strcmp(k, "rebalance_moves")) {
        if (dsup_cli_parse_int(v, 1, 10000, &num, what, sizeof what) < 0)
            why = "expected an integer in 1..10000";
    } else if (!strcmp(k, "replicas")) {
        if (dsup_cli_parse_int(v, 1, 16, &num, what, sizeof what) < 0)
            why = "expected an integer in 1..16";
    } else if (!strcmp(k, "nodes") || !strcmp(k, "listeners")) {
        why = list_error(v, !strcmp(k, "nodes"));
    } else {
        snprintf(what, sizeof what, "unknown key '%s'", k);
        return fail(err, errcap, what, arg);
    }
    if (why) {
        snprintf(err, errcap, "%s: %s, got '%s' in '%s'", p->k, why, v, arg);
        return -1;
    }
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, k);
    if (!strcmp(k, "max_restarts") || !strcmp(k, "max_seconds") || !strcmp(k, "rebalance_moves") ||
        !strcmp(k, "replicas"))
        ei_x_encode_longlong(x, num);
    else if (!strcmp(k, "nodes") || !strcmp(k, "listeners"))
        encode_list(x, p->v, !strcmp(k, "nodes"));
    else
        dsup_x_encode_atom(x, v);
    return 0;
}

int dsup_cli_sup_parse(const char *arg, char *name, size_t cap, ei_x_buff *opts, char *err, size_t errcap)
{
    ei_x_new(opts);
    size_t n = 1;
    for (const char *p = arg; *p; p++)
        n += *p == ',';
    char *copy = dsup_xstrdup(arg);
    kv *pairs = dsup_xcalloc(n, sizeof *pairs);
    int rc = -1;
    if (!copy || !pairs) {
        snprintf(err, errcap, "out of memory");
        goto out;
    }
    /* Split by hand: strtok would skip empty fields ("Foo,,x=1"). */
    char *fields = copy, *comma = strchr(fields, ',');
    if (comma)
        *comma = 0;
    char abuf[300];
    const char *atom = strchr(fields, '=') ? NULL : dsup_atom_from_cli(fields, abuf, sizeof abuf);
    if (!atom) {
        fail(err, errcap, "expected the instance name first (NAME[,key=value...])", arg);
        goto out;
    }
    snprintf(name, cap, "%s", atom);
    size_t np = 0;
    while (comma) {
        char *f = comma + 1;
        if ((comma = strchr(f, ',')))
            *comma = 0;
        char *eq = strchr(f, '=');
        if (!eq || eq == f || !eq[1]) {
            char what[300];
            snprintf(what, sizeof what, "expected key=value, got '%s'", f);
            fail(err, errcap, what, arg);
            goto out;
        }
        *eq = 0;
        pairs[np++] = (kv){ f, eq + 1 };
    }
    if (np)
        ei_x_encode_list_header(opts, (long)np);
    for (size_t i = 0; i < np; i++)
        if (pair(opts, &pairs[i], arg, err, errcap) < 0)
            goto out;
    ei_x_encode_empty_list(opts);
    rc = 0;
out:
    free(pairs);
    free(copy);
    return rc;
}
