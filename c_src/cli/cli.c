/* cli.c — dsup_main: the dsup-node command line, usable from your own main()
 * after registering worker types (see examples/). */
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_args.h"
#include "xalloc.h"
#include "http/http.h"
#include "node_new.h"
#include "intern.h"
#include "log.h"
#include "node.h"
#include "node_hooks.h"
#include "pg.h"
#include "ring.h"
#include "sup.h"
#include "sup_heal.h"
#include "term.h"
#include "term_text.h"
#include "workers/workers.h"

#ifndef DSUP_VERSION
#define DSUP_VERSION "unknown" /* the Makefile passes the VERSION file's */
#endif
#define DSUP_EXIT_USAGE 64     /* EX_USAGE, sysexits(3) */

static const char usage[] =
    "usage: dsup-node (--sname NAME | --name NAME[@HOST]) [options]\n"
    "\n"
    "An Erlang C-node that supervises C workers for BEAM clusters.\n"
    "\n"
    "  --sname NAME         short node name (NAME@shorthost)\n"
    "  --name NAME[@HOST]   long node name (NAME@fqdn when HOST is omitted)\n"
    "  --cookie COOKIE      distribution cookie (default: ~/.erlang.cookie, created\n"
    "                       like erl does when missing)\n"
    "  --visible            a normal (visible) node: appears in nodes() (default hidden)\n"
    "  --hidden             a hidden node (the default)\n"
    "  --connect NODE       connect to NODE at start and keep reconnecting (repeatable)\n"
    "  --listen-port PORT   distribution port, 0..65535 (default 0: any free port)\n"
    "  --listen-address IP  accept connections on this IPv4 or IPv6 address only\n"
    "                       (default: every IPv4 interface, 0.0.0.0)\n"
    "  --net-ticktime SECS  like erl's net_ticktime, 1..86400 (default 60)\n"
    "  --max-frame BYTES    largest distribution frame accepted (default 134217728)\n"
    "  --scope NAME         take part in the :pg scope NAME (repeatable); a name that\n"
    "                       starts upper-case is an Elixir alias: MyApp.Scope means\n"
    "                       'Elixir.MyApp.Scope'\n"
    "  --supervisor NAME[,key=value...]\n"
    "                       run a DistributedSupervisor instance NAME (repeatable).\n"
    "                       keys: cache_children=true|false, monitor_nodes=\n"
    "                       true|false|cluster, nodes=a@h+b@h, listeners=name+name,\n"
    "                       max_restarts=0..1000000, max_seconds=1..31536000,\n"
    "                       rebalance=true|false (move children to a joining host),\n"
    "                       rebalance_moves=1..10000 (moves in flight, default 8),\n"
    "                       replicas=1..16 (hosts besides its own keeping a child's\n"
    "                       spec for failover, default 2)\n"
    "  --max-instance-restarts N, --max-instance-seconds S\n"
    "                       the node restarts a supervisor instance that ends (its\n"
    "                       restart intensity reached) with backoff; more than N\n"
    "                       instance restarts in S seconds stop the node with exit\n"
    "                       status 70 (N 0..10000, default 3; S 1..86400, default 60)\n"
    "  --ring-atoms otp25|otp26\n"
    "                       how atom child names are hashed on the ring: as\n"
    "                       term_to_binary writes them on that OTP release (the\n"
    "                       default: the release of the first BEAM peer, before\n"
    "                       any connects the one dsup was built against)\n"
    "  --load PLUGIN.so     load worker types from a plugin (repeatable)\n"
    "  --log-level LEVEL    debug | info | warn | error (default info)\n"
    "  --peer-name-quota N  live names (node names, registered-name targets) one\n"
    "                       peer may add to the node's name table (default 100000,\n"
    "                       0 = no limit); past it its messages that would add\n"
    "                       one are dropped and logged\n"
    "  --log-format FORMAT  text | json (default text): one line per event on\n"
    "                       stderr, with UTC time, node name and level\n"
    "  --http ADDR:PORT     serve /metrics (Prometheus), /status, /status.json and\n"
    "                       /healthz on ADDR:PORT (off by default; port 0: any)\n"
    "  --version            print the version and exit\n"
    "  --help               this text\n"
    "\n"
    "Exit status: 0 after a clean stop, 64 for a command-line error, 70 after more\n"
    "instance restarts than --max-instance-restarts allows.\n"
    "Environment: ERL_EPMD_PORT (epmd port, default 4369).\n";

static int load_plugin(const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dsup-node: cannot load plugin %s: %s\n", path, dlerror());
        return -1;
    }
    dsup_plugin_init_fn init = (dsup_plugin_init_fn)dlsym(h, DSUP_PLUGIN_INIT_SYMBOL);
    if (!init) {
        fprintf(stderr, "dsup-node: plugin %s does not export %s()\n", path, DSUP_PLUGIN_INIT_SYMBOL);
        dlclose(h);
        return -1;
    }
    int abi = init();
    if (abi < 0) {
        fprintf(stderr, "dsup-node: plugin %s failed to initialise (returned %d)\n", path, abi);
        return -1;
    }
    if (abi < 1 || abi > DSUP_ABI_VERSION) { /* ABI 1 plugins are still read correctly */
        fprintf(stderr, "dsup-node: plugin %s was built for ABI version %d, this node has %d\n", path, abi,
                DSUP_ABI_VERSION);
        return -1;
    }
    LOG_INFO("loaded plugin %s", path);
    return 0;
}

/* Once the node is registered and dsup_node runs: the scopes and instances
 * the command line asked for. A supervisor that cannot start stops the node
 * (exit status 2) before it says it is ready. */
static void start_requested(dsup_node *node, void *arg, dsup_node_event ev, const char *peer, int value)
{
    if (ev != DSUP_NODE_READY)
        return;
    for (int i = 0; i < node->nscopes; i++)
        if (!dsup_pg_scope(node, node->scopes[i]))
            LOG_WARN("--scope %s: cannot start the scope", node->scopes[i]);
    for (int i = 0; i < node->nsups; i++) {
        ei_x_buff opts, *why = dsup_term_scratch(node);
        char name[300];
        dsup_cli_sup_opts(node->sups[i], name, sizeof name, &opts);
        dsup_term o = { opts.buff, (size_t)opts.index };
        if (dsup_sup_reserved_name(name)) {
            why->index = 0;
            ei_x_encode_tuple_header(why, 2);
            dsup_x_encode_atom(why, "reserved_name");
            dsup_x_encode_atom(why, name);
        }
        int failed = why->index > 0 || dsup_sup_start(node, name, &o, NULL, why) < 0;
        if (failed) {
            char txt[512];
            dsup_term_text((dsup_term){ why->buff, (size_t)why->index }, txt, sizeof txt);
            LOG_ERROR("--supervisor %s: %s", node->sups[i], why->index ? txt : "cannot start");
            node->exit_status = 2;
        }
        ei_x_free(&opts);
        dsup_term_scratch_release(why);
        if (failed) {
            dsup_shutdown(node);
            return;
        }
    }
}

/* The HTTP endpoints stop first when the node stops (hooks run newest first). */
static void http_events(dsup_node *node, void *arg, dsup_node_event ev, const char *peer, int value)
{
    if (ev == DSUP_NODE_STOPPING)
        dsup_http_stop(node);
    else if (ev == DSUP_NODE_CLOSE)
        dsup_http_free(node);
}

static int read_cookie(char *out, size_t cap)
{
    const char *home = getenv("HOME");
    char path[4096];
    snprintf(path, sizeof path, "%s/.erlang.cookie", home ? home : ".");
    FILE *f = fopen(path, "r");
    if (!f) {
        /* Like erl: create a random cookie readable only by the owner. */
        char c[21];
        uint8_t r[20];
        if (uv_random(NULL, NULL, r, sizeof r, 0, NULL) != 0)
            return -1;
        for (int i = 0; i < 20; i++)
            c[i] = (char)('A' + r[i] % 26);
        c[20] = 0;
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0400);
        if (fd < 0 || write(fd, c, 20) != 20) {
            fprintf(stderr, "dsup-node: no --cookie and cannot create %s: %s\n", path, strerror(errno));
            if (fd >= 0)
                close(fd);
            return -1;
        }
        close(fd);
        snprintf(out, cap, "%s", c);
        return 0;
    }
    size_t n = fread(out, 1, cap - 1, f);
    fclose(f);
    out[n] = 0;
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r' || out[n - 1] == ' '))
        out[--n] = 0;
    return n ? 0 : -1;
}

static int make_name(dsup_node *n, const char *arg, int longname)
{
    const char *at = strchr(arg, '@');
    char host[256];
    if (at) {
        snprintf(host, sizeof host, "%s", at + 1);
    } else {
        if (gethostname(host, sizeof host) != 0)
            return -1;
        host[sizeof host - 1] = 0;
        if (!longname) {
            char *dot = strchr(host, '.');
            if (dot)
                *dot = 0;
        }
    }
    size_t alen = at ? (size_t)(at - arg) : strlen(arg);
    if (alen == 0 || alen >= sizeof n->alive || !host[0] || strchr(host, '@'))
        return -1;
    for (size_t i = 0; i < alen; i++) /* what erl accepts in a node name */
        if (!(isalnum((unsigned char)arg[i]) || arg[i] == '_' || arg[i] == '-'))
            return -1;
    memcpy(n->alive, arg, alen);
    n->alive[alen] = 0;
    snprintf(n->host, sizeof n->host, "%s", host);
    char full[600];
    snprintf(full, sizeof full, "%s@%s", n->alive, n->host);
    if (strlen(full) > 255)
        return -1;
    n->name = dsup_intern_str(n->names, full);
    return n->name ? 0 : -1;
}

/* ---- options ------------------------------------------------------------------------
 * One table row per option: its name, whether it takes a value, and the
 * function that checks and stores it. A bad value is one line on stderr
 * naming the option and what it accepts, and exit status 64 (EX_USAGE),
 * before anything starts. */

enum { CLI_OK = 0, CLI_ERR = -1, CLI_EXIT0 = 1 };

typedef struct cli_ctx {
    dsup_node *n;
    const char *name, *cookie;
    int longname;
    const char **connect, **plugins, **scopes, **sups;
    int nplugins;
} cli_ctx;

typedef struct cli_opt {
    const char *name;
    int takes_value;
    int (*set)(cli_ctx *c, const char *opt, const char *v);
} cli_opt;

__attribute__((format(printf, 2, 3))) static int cli_error(const char *opt, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "dsup-node: %s%s%s\n", opt ? opt : "", opt ? ": " : "", msg);
    return CLI_ERR;
}

/* An integer option: the whole string, in range, or one clear line. */
static int int_arg(const char *opt, const char *v, long long min, long long max, long long *out)
{
    char err[256];
    return dsup_cli_parse_int(v, min, max, out, err, sizeof err) < 0 ? cli_error(opt, "%s", err) : CLI_OK;
}

static int opt_help(cli_ctx *c, const char *opt, const char *v)
{
    fputs(usage, stdout);
    fputs(dsup_net_cli_usage, stdout); /* net_opts.c */
    return CLI_EXIT0;
}

static int opt_version(cli_ctx *c, const char *opt, const char *v)
{
    printf("dsup-node %s\n", DSUP_VERSION);
    return CLI_EXIT0;
}

static int opt_name(cli_ctx *c, const char *opt, const char *v)
{
    c->longname = !strcmp(opt, "--name");
    c->name = v;
    return CLI_OK;
}

static int opt_cookie(cli_ctx *c, const char *opt, const char *v)
{
    if (!v[0] || strlen(v) >= sizeof c->n->cookie)
        return cli_error(opt, "expected 1..%zu characters", sizeof c->n->cookie - 1);
    c->cookie = v;
    return CLI_OK;
}

static int opt_visible(cli_ctx *c, const char *opt, const char *v)
{
    c->n->visible = !strcmp(opt, "--visible");
    return CLI_OK;
}

static int opt_connect(cli_ctx *c, const char *opt, const char *v)
{
    char err[300];
    if (dsup_cli_check_node(v, err, sizeof err) < 0)
        return cli_error(opt, "%s", err);
    c->connect[c->n->nconnect++] = v;
    return CLI_OK;
}

static int opt_listen_port(cli_ctx *c, const char *opt, const char *v)
{
    long long p;
    if (int_arg(opt, v, 0, 65535, &p) < 0)
        return CLI_ERR;
    c->n->port = (int)p;
    return CLI_OK;
}

static int opt_listen_address(cli_ctx *c, const char *opt, const char *v)
{
    char err[300];
    if (dsup_cli_parse_address(v, err, sizeof err) < 0)
        return cli_error(opt, "%s", err);
    c->n->listen_address = v;
    return CLI_OK;
}

static int opt_ticktime(cli_ctx *c, const char *opt, const char *v)
{
    long long t;
    if (int_arg(opt, v, 1, 86400, &t) < 0)
        return CLI_ERR;
    c->n->ticktime_ms = (unsigned)t * 1000u;
    return CLI_OK;
}

static int opt_max_frame(cli_ctx *c, const char *opt, const char *v)
{
    long long m;
    if (int_arg(opt, v, 1024, 0xffffffffLL, &m) < 0) /* the length prefix is 32 bits */
        return CLI_ERR;
    c->n->max_frame = (size_t)m;
    return CLI_OK;
}

static int opt_scope(cli_ctx *c, const char *opt, const char *v)
{
    char buf[300];
    const char *sc = dsup_atom_from_cli(v, buf, sizeof buf);
    if (sc)
        sc = dsup_intern_str(c->n->names, sc); /* the node keeps it (pinned) */
    if (!sc)
        return cli_error(opt, "expected a name of 1..255 characters, got '%s'", v);
    c->scopes[c->n->nscopes++] = sc;
    return CLI_OK;
}

static int opt_supervisor(cli_ctx *c, const char *opt, const char *v)
{
    char name[300], err[1024];
    ei_x_buff x;
    int rc = dsup_cli_sup_parse(v, name, sizeof name, &x, err, sizeof err);
    ei_x_free(&x);
    if (rc < 0)
        return cli_error(opt, "%s", err);
    const char *atom = dsup_intern_str(c->n->names, name);
    for (int i = 0; i < c->n->nsups; i++) {
        char other[300];
        ei_x_buff y;
        dsup_cli_sup_parse(c->sups[i], other, sizeof other, &y, err, sizeof err);
        ei_x_free(&y);
        if (dsup_intern_str(c->n->names, other) == atom)
            return cli_error(opt, "instance %s given twice", name);
    }
    c->sups[c->n->nsups++] = v;
    return CLI_OK;
}

static int opt_max_instance_restarts(cli_ctx *c, const char *opt, const char *v)
{
    long long n;
    if (int_arg(opt, v, 0, 10000, &n) < 0)
        return CLI_ERR;
    dsup_heal_max_restarts = (int)n;
    return CLI_OK;
}

static int opt_max_instance_seconds(cli_ctx *c, const char *opt, const char *v)
{
    long long n;
    if (int_arg(opt, v, 1, 86400, &n) < 0)
        return CLI_ERR;
    dsup_heal_max_seconds = (int)n;
    return CLI_OK;
}

static int opt_ring_atoms(cli_ctx *c, const char *opt, const char *v)
{
    if (!strcmp(v, "otp25"))
        dsup_ring_default_atom_encoding = DSUP_RING_ATOM_EXT;
    else if (!strcmp(v, "otp26"))
        dsup_ring_default_atom_encoding = DSUP_RING_ATOM_UTF8;
    else
        return cli_error(opt, "expected otp25 or otp26, got '%s'", v);
    dsup_ring_atoms_explicit = 1;
    return CLI_OK;
}

static int opt_load(cli_ctx *c, const char *opt, const char *v)
{
    c->plugins[c->nplugins++] = v;
    return CLI_OK;
}

static int opt_log_level(cli_ctx *c, const char *opt, const char *v)
{
    int l = dsup_log_level_parse(v);
    if (l < 0)
        return cli_error(opt, "expected debug, info, warn or error, got '%s'", v);
    dsup_log_level = l;
    return CLI_OK;
}

static int opt_log_format(cli_ctx *c, const char *opt, const char *v)
{
    if (dsup_log_format_parse(v) < 0)
        return cli_error(opt, "expected text or json, got '%s'", v);
    return CLI_OK;
}

static int opt_peer_name_quota(cli_ctx *c, const char *opt, const char *v)
{
    long long q;
    if (int_arg(opt, v, 0, 1000000000LL, &q) < 0)
        return CLI_ERR;
    dsup_intern_set_quota(c->n->names, (size_t)q);
    return CLI_OK;
}

/* Hostile-network bounds (defaults in net_opts.c). */
static int opt_setup_time(cli_ctx *c, const char *opt, const char *v)
{
    char *end;
    errno = 0;
    double secs = strtod(v, &end);
    if (!*v || *end || errno || !(secs >= 0.05 && secs <= 3600))
        return cli_error(opt, "expected seconds from 0.05 to 3600, got '%s'", v);
    c->n->setup_ms = (unsigned)(secs * 1000);
    return CLI_OK;
}

static int opt_max_handshakes(cli_ctx *c, const char *opt, const char *v)
{
    long long x;
    if (int_arg(opt, v, 1, 100000, &x) < 0)
        return CLI_ERR;
    if (!strcmp(opt, "--max-handshakes"))
        c->n->max_handshakes = (unsigned)x;
    else
        c->n->max_handshakes_per_addr = (unsigned)x;
    return CLI_OK;
}

static int opt_max_out_queue(cli_ctx *c, const char *opt, const char *v)
{
    long long x;
    if (int_arg(opt, v, 4096, 1LL << 40, &x) < 0)
        return CLI_ERR;
    c->n->max_out_queue = (size_t)x;
    return CLI_OK;
}

/* --http: the metrics and status endpoints (c_src/http/). */
static int opt_http(cli_ctx *c, const char *opt, const char *v)
{
    char err[300];
    return dsup_http_configure(c->n, v, err, sizeof err) < 0 ? cli_error(opt, "%s", err) : CLI_OK;
}

static const cli_opt options[] = {
    { "--help", 0, opt_help },
    { "-h", 0, opt_help },
    { "--version", 0, opt_version },
    { "--sname", 1, opt_name },
    { "--name", 1, opt_name },
    { "--cookie", 1, opt_cookie },
    { "--visible", 0, opt_visible },
    { "--hidden", 0, opt_visible },
    { "--connect", 1, opt_connect },
    { "--listen-port", 1, opt_listen_port },
    { "--listen-address", 1, opt_listen_address },
    { "--net-ticktime", 1, opt_ticktime },
    { "--max-frame", 1, opt_max_frame },
    { "--scope", 1, opt_scope },
    { "--supervisor", 1, opt_supervisor },
    { "--max-instance-restarts", 1, opt_max_instance_restarts },
    { "--max-instance-seconds", 1, opt_max_instance_seconds },
    { "--ring-atoms", 1, opt_ring_atoms },
    { "--load", 1, opt_load },
    { "--log-level", 1, opt_log_level },
    { "--log-format", 1, opt_log_format },
    { "--peer-name-quota", 1, opt_peer_name_quota },
    { "--setup-time", 1, opt_setup_time },
    { "--max-handshakes", 1, opt_max_handshakes },
    { "--max-handshakes-per-addr", 1, opt_max_handshakes },
    { "--max-out-queue", 1, opt_max_out_queue },
    { "--http", 1, opt_http },
};

/* CLI_OK when the node should start, CLI_EXIT0 after --help/--version,
 * CLI_ERR after a usage error (already printed). */
static int parse_args(cli_ctx *c, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const cli_opt *o = NULL;
        for (size_t k = 0; k < sizeof options / sizeof options[0] && !o; k++)
            if (!strcmp(a, options[k].name))
                o = &options[k];
        if (!o)
            return cli_error(NULL, "unknown option '%s' (see dsup-node --help)", a);
        if (o->takes_value && i + 1 >= argc)
            return cli_error(a, "needs a value");
        int rc = o->set(c, a, o->takes_value ? argv[++i] : NULL);
        if (rc != CLI_OK)
            return rc;
    }
    if (!c->name)
        return cli_error(NULL, "--sname NAME or --name NAME[@HOST] is required (see dsup-node --help)");
    if (make_name(c->n, c->name, c->longname) < 0)
        return cli_error(c->longname ? "--name" : "--sname",
                         "expected NAME[@HOST] with NAME of letters, digits, '_' or '-', got '%s'", c->name);
    return CLI_OK;
}

static int run(int argc, char **argv, const char **connect, const char **plugins, const char **scopes,
               const char **sups)
{
    dsup_node *n = dsup_node_alloc(uv_default_loop());
#ifndef DSUP_OTP_RELEASE
#define DSUP_OTP_RELEASE 25
#endif
    /* term_to_binary of atoms changed in OTP 26: match the release we were
     * built against unless told otherwise. */
    dsup_ring_default_atom_encoding = DSUP_OTP_RELEASE >= 26 ? DSUP_RING_ATOM_UTF8 : DSUP_RING_ATOM_EXT;

    cli_ctx c = { .n = n, .connect = connect, .plugins = plugins, .scopes = scopes, .sups = sups };
    int rc = parse_args(&c, argc, argv);
    if (rc != CLI_OK) {
        dsup_node_free(n);
        return rc == CLI_EXIT0 ? 0 : DSUP_EXIT_USAGE;
    }
    dsup_log_set_node(n->name);
    if (c.cookie) {
        snprintf(n->cookie, sizeof n->cookie, "%s", c.cookie);
    } else if (read_cookie(n->cookie, sizeof n->cookie) < 0) {
        fprintf(stderr, "dsup-node: no cookie (use --cookie or ~/.erlang.cookie)\n");
        dsup_node_free(n);
        return 1;
    }
    dsup_register_builtin_workers();
    for (int i = 0; i < c.nplugins; i++)
        if (load_plugin(plugins[i]) < 0) {
            dsup_node_free(n);
            return 1;
        }

    n->connect = connect;
    n->scopes = scopes;
    n->sups = sups;
    n->announce_ready = 1;
    n->handle_signals = 1;
    n->own_loop = 1;
    uv_loop_t *loop = n->loop;
    /* The layers above the runtime plug in (node_hooks.h), lowest first. */
    int status = 1;
    if (dsup_node_services_init(n) == 0 && dsup_node_hook_add(n, start_requested, NULL) == 0 &&
        dsup_node_hook_add(n, http_events, NULL) == 0 && dsup_node_start(n) == 0 && dsup_http_start(n) == 0) {
        uv_run(loop, UV_RUN_DEFAULT);
        status = n->exit_status;
        LOG_INFO("node %s stopped", n->name);
    }
    dsup_node_free(n);
    uv_loop_close(loop);
    return status;
}

int dsup_main(int argc, char **argv)
{
    /* A peer that resets its socket must not kill the node: writes to it
     * then fail with EPIPE instead (libuv writes with write/writev). */
    signal(SIGPIPE, SIG_IGN);
    /* Room for every argument; freed on every way out (LeakSanitizer runs). */
    const char **connect = dsup_xcalloc((size_t)argc, sizeof *connect);
    const char **plugins = dsup_xcalloc((size_t)argc, sizeof *plugins);
    const char **scopes = dsup_xcalloc((size_t)argc, sizeof *scopes);
    const char **sups = dsup_xcalloc((size_t)argc, sizeof *sups);
    int rc = connect && plugins && scopes && sups ? run(argc, argv, connect, plugins, scopes, sups) : 1;
    free(connect);
    free(plugins);
    free(scopes);
    free(sups);
    return rc;
}
