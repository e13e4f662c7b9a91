/* cli.c — dsup_main: the dsup-node command line, usable from your own main()
 * after registering worker types (see examples/). */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "intern.h"
#include "log.h"
#include "node.h"
#include "ring.h"
#include "sup.h"
#include "workers/workers.h"

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
    "  --listen-port PORT   distribution port (default: any free port)\n"
    "  --net-ticktime SECS  like erl's net_ticktime (default 60)\n"
    "  --max-frame BYTES    largest distribution frame accepted (default 134217728)\n"
    "  --scope NAME         take part in the :pg scope NAME (repeatable); a name that\n"
    "                       starts upper-case is an Elixir alias: MyApp.Scope means\n"
    "                       'Elixir.MyApp.Scope'\n"
    "  --supervisor NAME[,key=value...]\n"
    "                       run a DistributedSupervisor instance NAME (repeatable).\n"
    "                       keys: cache_children=true|false, monitor_nodes=\n"
    "                       true|false|cluster, nodes=a@h+b@h, listeners=name+name,\n"
    "                       max_restarts=N, max_seconds=N\n"
    "  --ring-atoms otp25|otp26\n"
    "                       how atom child names are hashed on the ring: as\n"
    "                       term_to_binary writes them on that OTP release (the\n"
    "                       default: the release of the first BEAM peer, before\n"
    "                       any connects the one dsup was built against)\n"
    "  --load PLUGIN.so     load worker types from a plugin (repeatable)\n"
    "  --log-level LEVEL    debug | info | warn | error (default info)\n"
    "  --help               this text\n"
    "\n"
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
    if (abi != DSUP_ABI_VERSION) {
        fprintf(stderr, "dsup-node: plugin %s was built for ABI version %d, this node has %d\n", path, abi,
                DSUP_ABI_VERSION);
        return -1;
    }
    LOG_INFO("loaded plugin %s", path);
    return 0;
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

static int make_name(dsup_nodeinfo *n, const char *arg, int longname)
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
    if (alen == 0 || alen >= sizeof n->alive || !host[0])
        return -1;
    memcpy(n->alive, arg, alen);
    n->alive[alen] = 0;
    snprintf(n->host, sizeof n->host, "%s", host);
    char full[600];
    snprintf(full, sizeof full, "%s@%s", n->alive, n->host);
    if (strlen(full) > 255)
        return -1;
    n->name = dsup_intern_str(full);
    return n->name ? 0 : -1;
}

/* Names given on the command line: MyApp.Sup is the Elixir alias
 * 'Elixir.MyApp.Sup'; lower-case names are plain atoms. Interned. */
const char *dsup_atom_from_cli(const char *arg)
{
    char buf[300];
    if (!arg[0] || strlen(arg) > 255)
        return NULL;
    if (arg[0] >= 'A' && arg[0] <= 'Z' && strncmp(arg, "Elixir.", 7) != 0)
        snprintf(buf, sizeof buf, "Elixir.%s", arg);
    else
        snprintf(buf, sizeof buf, "%s", arg);
    if (strlen(buf) > 255)
        return NULL;
    return dsup_intern_str(buf);
}

/* "Name,key=value,..." into the instance atom and a keyword-list term, as
 * start_link/1 takes. 0, or -1 for a malformed spec. */
int dsup_cli_sup_opts(const char *arg, char *name, size_t cap, ei_x_buff *opts)
{
    char *copy = strdup(arg), *save = NULL;
    ei_x_new(opts);
    if (!copy)
        return -1;
    char *tok = strtok_r(copy, ",", &save);
    const char *atom = tok ? dsup_atom_from_cli(tok) : NULL;
    int rc = atom ? 0 : -1;
    if (atom)
        snprintf(name, cap, "%s", atom);
    char *pairs[64];
    int npairs = 0;
    while (rc == 0 && (tok = strtok_r(NULL, ",", &save))) {
        if (!strchr(tok, '=') || npairs == 64)
            rc = -1;
        else
            pairs[npairs++] = tok;
    }
    if (rc == 0 && npairs)
        ei_x_encode_list_header(opts, npairs);
    for (int i = 0; rc == 0 && i < npairs; i++) {
        char *eq = strchr(pairs[i], '=');
        *eq = 0;
        const char *k = pairs[i], *v = eq + 1;
        ei_x_encode_tuple_header(opts, 2);
        if (!strcmp(k, "cache_children") || !strcmp(k, "cache_children?")) {
            dsup_x_encode_atom(opts, "cache_children?");
            dsup_x_encode_atom(opts, v);
        } else if (!strcmp(k, "monitor_nodes")) {
            dsup_x_encode_atom(opts, k);
            dsup_x_encode_atom(opts, v);
        } else if (!strcmp(k, "max_restarts") || !strcmp(k, "max_seconds")) {
            char *end;
            long num = strtol(v, &end, 10);
            if (*end || !*v)
                rc = -1;
            dsup_x_encode_atom(opts, k);
            ei_x_encode_long(opts, num);
        } else if (!strcmp(k, "nodes") || !strcmp(k, "listeners")) {
            dsup_x_encode_atom(opts, k);
            char *s2 = NULL, *list = strdup(v);
            int cnt = 0;
            for (const char *t = v; *t; t++)
                cnt += *t == '+';
            cnt += *v != 0;
            if (cnt)
                ei_x_encode_list_header(opts, cnt);
            for (char *t = strtok_r(list, "+", &s2); t; t = strtok_r(NULL, "+", &s2))
                dsup_x_encode_atom(opts, !strcmp(k, "nodes") ? t : dsup_atom_from_cli(t));
            ei_x_encode_empty_list(opts);
            free(list);
        } else {
            dsup_x_encode_atom(opts, k); /* refused by the option check, by name */
            dsup_x_encode_atom(opts, v);
        }
    }
    ei_x_encode_empty_list(opts);
    free(copy);
    return rc;
}

static int need(int i, int argc, const char *opt)
{
    if (i + 1 >= argc) {
        fprintf(stderr, "dsup-node: %s needs a value\n%s", opt, usage);
        return 0;
    }
    return 1;
}

static int run(int argc, char **argv, const char **connect, const char **plugins, const char **scopes,
               const char **sups)
{
    static dsup_nodeinfo node;
    dsup_nodeinfo *n = &node;
    memset(n, 0, sizeof *n);
    n->ticktime_ms = 60000;
    n->max_frame = 128u << 20;
    const char *name = NULL, *cookie = NULL;
    int longname = 0;
    int nplugins = 0;
#ifndef DSUP_OTP_RELEASE
#define DSUP_OTP_RELEASE 25
#endif
    /* term_to_binary of atoms changed in OTP 26: match the release we were
     * built against unless told otherwise. */
    dsup_ring_default_atom_encoding = DSUP_OTP_RELEASE >= 26 ? DSUP_RING_ATOM_UTF8 : DSUP_RING_ATOM_EXT;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--sname") || !strcmp(a, "--name")) {
            if (!need(i, argc, a))
                return 2;
            longname = !strcmp(a, "--name");
            name = argv[++i];
        } else if (!strcmp(a, "--cookie")) {
            if (!need(i, argc, a))
                return 2;
            cookie = argv[++i];
        } else if (!strcmp(a, "--visible")) {
            n->visible = 1;
        } else if (!strcmp(a, "--hidden")) {
            n->visible = 0;
        } else if (!strcmp(a, "--connect")) {
            if (!need(i, argc, a))
                return 2;
            connect[n->nconnect++] = argv[++i];
        } else if (!strcmp(a, "--listen-port")) {
            if (!need(i, argc, a))
                return 2;
            n->port = atoi(argv[++i]);
            if (n->port < 0 || n->port > 65535) {
                fprintf(stderr, "dsup-node: bad port %s\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(a, "--net-ticktime")) {
            if (!need(i, argc, a))
                return 2;
            int t = atoi(argv[++i]);
            if (t <= 0) {
                fprintf(stderr, "dsup-node: bad net ticktime %s\n", argv[i]);
                return 2;
            }
            n->ticktime_ms = (unsigned)t * 1000u;
        } else if (!strcmp(a, "--max-frame")) {
            if (!need(i, argc, a))
                return 2;
            long long m = atoll(argv[++i]);
            if (m < 1024) {
                fprintf(stderr, "dsup-node: bad --max-frame %s\n", argv[i]);
                return 2;
            }
            n->max_frame = (size_t)m;
        } else if (!strcmp(a, "--scope")) {
            if (!need(i, argc, a))
                return 2;
            const char *sc = dsup_atom_from_cli(argv[++i]);
            if (!sc) {
                fprintf(stderr, "dsup-node: bad scope name %s\n", argv[i]);
                return 2;
            }
            scopes[n->nscopes++] = sc;
        } else if (!strcmp(a, "--supervisor")) {
            if (!need(i, argc, a))
                return 2;
            sups[n->nsups++] = argv[++i];
        } else if (!strcmp(a, "--ring-atoms")) {
            if (!need(i, argc, a))
                return 2;
            const char *v = argv[++i];
            dsup_ring_atoms_explicit = 1;
            if (!strcmp(v, "otp25"))
                dsup_ring_default_atom_encoding = DSUP_RING_ATOM_EXT;
            else if (!strcmp(v, "otp26"))
                dsup_ring_default_atom_encoding = DSUP_RING_ATOM_UTF8;
            else {
                fprintf(stderr, "dsup-node: --ring-atoms takes otp25 or otp26\n");
                return 2;
            }
        } else if (!strcmp(a, "--load")) {
            if (!need(i, argc, a))
                return 2;
            plugins[nplugins++] = argv[++i];
        } else if (!strcmp(a, "--log-level")) {
            if (!need(i, argc, a))
                return 2;
            int l = dsup_log_level_parse(argv[++i]);
            if (l < 0) {
                fprintf(stderr, "dsup-node: bad log level %s\n", argv[i]);
                return 2;
            }
            dsup_log_level = l;
        } else {
            fprintf(stderr, "dsup-node: unknown option %s\n%s", a, usage);
            return 2;
        }
    }
    if (!name) {
        fprintf(stderr, "dsup-node: --sname or --name is required\n%s", usage);
        return 2;
    }
    if (make_name(n, name, longname) < 0) {
        fprintf(stderr, "dsup-node: bad node name %s\n", name);
        return 2;
    }
    if (cookie) {
        snprintf(n->cookie, sizeof n->cookie, "%s", cookie);
    } else if (read_cookie(n->cookie, sizeof n->cookie) < 0) {
        fprintf(stderr, "dsup-node: no cookie (use --cookie or ~/.erlang.cookie)\n");
        return 2;
    }
    dsup_register_builtin_workers();
    for (int i = 0; i < nplugins; i++)
        if (load_plugin(plugins[i]) < 0)
            return 1;

    n->connect = connect;
    n->scopes = scopes;
    n->sups = sups;
    for (int i = 0; i < n->nsups; i++) {
        ei_x_buff opts;
        char name[300];
        if (dsup_cli_sup_opts(sups[i], name, sizeof name, &opts) < 0) {
            fprintf(stderr, "dsup-node: bad --supervisor %s\n", sups[i]);
            return 2;
        }
        ei_x_free(&opts);
    }
    n->loop = uv_default_loop();
    g_node = n;
    if (dsup_node_start() < 0)
        return 1;
    uv_run(n->loop, UV_RUN_DEFAULT);
    int status = n->exit_status;
    uv_loop_close(n->loop);
    LOG_INFO("node %s stopped", n->name);
    return status;
}

int dsup_main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    /* Room for every argument; freed on every way out (LeakSanitizer runs). */
    const char **connect = calloc((size_t)argc, sizeof *connect);
    const char **plugins = calloc((size_t)argc, sizeof *plugins);
    const char **scopes = calloc((size_t)argc, sizeof *scopes);
    const char **sups = calloc((size_t)argc, sizeof *sups);
    int rc = connect && plugins && scopes && sups ? run(argc, argv, connect, plugins, scopes, sups) : 1;
    free(connect);
    free(plugins);
    free(scopes);
    free(sups);
    return rc;
}
