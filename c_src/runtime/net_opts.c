/* net_opts.c — defaults and help text of the options that bound what a peer
 * on the network can make the node hold: the setup deadline, the number of
 * connections in handshake, the bytes queued to one peer (parsed in cli.c). */
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

void dsup_net_defaults(dsup_node *n)
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
