/* net_opts.c — the command-line options that bound what a peer on the
 * network can make the node hold: the setup deadline, the number of
 * connections in handshake, the bytes queued to one peer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "node.h"

#define DEFAULT_SETUP_MS 7000u              /* net_setuptime's default */
#define DEFAULT_MAX_HANDSHAKES 64u
#define DEFAULT_MAX_HANDSHAKES_PER_ADDR 16u
#define DEFAULT_MAX_OUT_QUEUE (64u << 20)

const char dsup_net_cli_usage[] =
    "  --setup-time SECS    deadline for a whole connection setup (epmd, TCP,\n"
    "                       handshake), like net_setuptime (default 7)\n"
    "  --max-handshakes N   inbound connections not yet authenticated (default 64);\n"
    "                       when full, the oldest is dropped\n"
    "  --max-handshakes-per-addr N\n"
    "                       the same, per source address (default 16)\n"
    "  --max-out-queue BYTES  bytes queued to one peer before it is disconnected as\n"
    "                       not reading (default 67108864; one larger frame alone\n"
    "                       still goes out)\n";

void dsup_net_defaults(dsup_nodeinfo *n)
{
    if (!n->setup_ms)
        n->setup_ms = DEFAULT_SETUP_MS;
    if (!n->max_handshakes)
        n->max_handshakes = DEFAULT_MAX_HANDSHAKES;
    if (!n->max_handshakes_per_addr)
        n->max_handshakes_per_addr = DEFAULT_MAX_HANDSHAKES_PER_ADDR;
    if (!n->max_out_queue)
        n->max_out_queue = DEFAULT_MAX_OUT_QUEUE;
}

static int bad(const char *opt, const char *v)
{
    fprintf(stderr, "dsup-node: bad %s %s\n", opt, v);
    return -1;
}

int dsup_net_cli_option(dsup_nodeinfo *n, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    int known = !strcmp(a, "--setup-time") || !strcmp(a, "--max-handshakes") ||
                !strcmp(a, "--max-handshakes-per-addr") || !strcmp(a, "--max-out-queue");
    if (!known)
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "dsup-node: %s needs a value\n", a);
        return -1;
    }
    const char *v = argv[++*i];
    char *end;
    if (!strcmp(a, "--setup-time")) {
        double s = strtod(v, &end);
        if (*end || !(s >= 0.05 && s <= 3600))
            return bad(a, v);
        n->setup_ms = (unsigned)(s * 1000);
        return 1;
    }
    long long x = strtoll(v, &end, 10);
    if (*end || x < 1)
        return bad(a, v);
    if (!strcmp(a, "--max-out-queue")) {
        if (x < 4096)
            return bad(a, v);
        n->max_out_queue = (size_t)x;
    } else if (x > 100000) {
        return bad(a, v);
    } else if (!strcmp(a, "--max-handshakes")) {
        n->max_handshakes = (unsigned)x;
    } else {
        n->max_handshakes_per_addr = (unsigned)x;
    }
    return 1;
}
