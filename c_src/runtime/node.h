/* node.h — the node context: its identity, its libuv loop, its connection
 * table, and every module's state hung off it (as libuv hangs everything off
 * a uv_loop_t). Several nodes may live in one process, on one loop or on
 * several; nothing reaches a node but through its arguments: a dsup_proc,
 * dsup_conn, dsup_pg or dsup_sup carries its node, a uv callback takes it
 * from handle->data, an interned name reaches the node whose table holds it
 * (dsup_node_of_name), and the rest take a dsup_node * explicitly.
 *
 * Process-wide state, on purpose (everything else is per node):
 *  - the worker TYPE registry (gen_server.c): types are code, like loaded
 *    modules; plugins register them once per process;
 *  - log settings (log.c): level, text/json format, the node name shown in
 *    log lines (the command line's node, or the first library node made);
 *  - SIGPIPE ignored (dsup_main), the canonical-term hash seeds
 *    (term_canon.c, random per process), and expo.c's open descriptor of
 *    /proc/self/statm (the process's memory, not a node's);
 *  - command-line settings, set before any node starts: the ring's atom
 *    encoding (--ring-atoms, ring.c: copied when a node's services start;
 *    what a node learns from its peers afterwards is its own) and the
 *    instance-restart limits (--max-instance-*, sup_heal.c: read when an
 *    instance ends; each node counts its own restarts). */
#ifndef DSUP_NODE_H
#define DSUP_NODE_H

#include <assert.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "ctrl.h"
#include "intern.h"
#include "dsup.h"
#include "ratelimit.h"

/* Distribution flags (erl_dist_protocol.xml, "Distribution Flags"). */
#define DFLAG_PUBLISHED 0x01ULL
#define DFLAG_EXTENDED_REFERENCES 0x04ULL
#define DFLAG_DIST_MONITOR 0x08ULL
#define DFLAG_FUN_TAGS 0x10ULL
#define DFLAG_DIST_MONITOR_NAME 0x20ULL
#define DFLAG_NEW_FUN_TAGS 0x80ULL
#define DFLAG_EXTENDED_PIDS_PORTS 0x100ULL
#define DFLAG_EXPORT_PTR_TAG 0x200ULL
#define DFLAG_BIT_BINARIES 0x400ULL
#define DFLAG_NEW_FLOATS 0x800ULL
#define DFLAG_UNICODE_IO 0x1000ULL
#define DFLAG_SMALL_ATOM_TAGS 0x4000ULL
#define DFLAG_UTF8_ATOMS 0x10000ULL
#define DFLAG_MAP_TAG 0x20000ULL
#define DFLAG_BIG_CREATION 0x40000ULL
#define DFLAG_BIG_SEQTRACE_LABELS 0x100000ULL
#define DFLAG_HANDSHAKE_23 0x1000000ULL
#define DFLAG_UNLINK_ID 0x2000000ULL
#define DFLAG_V4_NC (1ULL << 34)

/* What we need from a peer before we talk to it. */
#define DSUP_DFLAGS_REQUIRED                                                                  \
    (DFLAG_EXTENDED_REFERENCES | DFLAG_EXTENDED_PIDS_PORTS | DFLAG_UTF8_ATOMS |             \
     DFLAG_NEW_FLOATS | DFLAG_BIG_CREATION | DFLAG_HANDSHAKE_23 | DFLAG_MAP_TAG)

typedef enum conn_state {
    CONN_RESOLVING,  /* outbound: resolving the peer's host */
    CONN_EPMD,       /* outbound: asking its epmd for the port */
    CONN_CONNECTING, /* outbound: TCP connect */
    CONN_HANDSHAKE,  /* either side: the v6 handshake */
    CONN_UP,         /* frames flow */
    CONN_CLOSING,
} conn_state;

typedef struct dsup_node dsup_node;

typedef struct dsup_conn {
    uv_tcp_t tcp;
    dsup_node *node;
    conn_state state;
    int outbound;
    /* Interned node name. Inbound: NULL until the peer has proven the cookie;
     * the name it claims waits in hs_name, so nothing an unauthenticated
     * peer sends reaches the intern table or acts on another connection. */
    const char *peer;
    char hs_name[256];
    char addr_text[64];     /* inbound: the source address, for caps and logs */
    uint64_t setup_deadline_ms; /* loop time by which the setup must be done */
    int overflow;           /* output bound exceeded: closed at the next flush */
    const char *error;      /* why the setup failed, for the close log (static or errbuf) */
    char errbuf[160];
    uint64_t peer_flags;
    uint32_t peer_creation;
    /* handshake */
    int hs_step;
    uint32_t my_challenge, peer_challenge;
    /* I/O: read buffer; write queue (frames appended) and in-flight buffer,
     * swapped so neither is reallocated per message */
    dsup_buf rbuf;
    dsup_buf wq;
    dsup_buf wflight;
    uv_write_t wreq;
    int writing;
    int dirty;              /* on the node's flush list */
    int pending_cb;         /* an epmd/getaddrinfo callback still refers to us */
    int freed_when_done;
    int was_up;             /* reached CONN_UP: its loss is a nodedown */
    uint64_t last_rx_ms;    /* loop time of the last byte read */
    struct dsup_peer_stats *stats; /* metrics.c's record of c->peer, once the peer is known */
    int wrote_since_tick;
    uint32_t peer_stdlib;   /* the peer's stdlib version, asked of its rex (peer_rel.c) */
    /* The head of the last SEND frame queued (everything but the length and
     * the message): a process sending to the same pid again (pg to a peer
     * scope, once per join) copies it instead of encoding it. to.node is
     * this connection's peer, which the connection holds. */
    struct {
        dsup_pid to;
        uint16_t len;                /* 0: none */
        char head[288];              /* fits a 255-byte node name */
    } send_head;
    uv_connect_t creq;
    uv_getaddrinfo_t gai;
    struct sockaddr_storage addr;
} dsup_conn;

/* A connection moves forward only: (resolving ->) epmd -> connecting ->
 * handshake -> up, an accepted one straight to handshake, and any state
 * but closing to closing. Every change goes through here (asserted). */
static inline void dsup_conn_enter(dsup_conn *c, conn_state to)
{
#define DSUP_CS(s) (1u << (s))
    static const unsigned from[] = {
        [CONN_RESOLVING] = DSUP_CS(CONN_RESOLVING),
        [CONN_EPMD] = DSUP_CS(CONN_RESOLVING),
        [CONN_CONNECTING] = DSUP_CS(CONN_EPMD),
        [CONN_HANDSHAKE] = DSUP_CS(CONN_RESOLVING) | DSUP_CS(CONN_CONNECTING), /* fresh (accepted) or connected */
        [CONN_UP] = DSUP_CS(CONN_HANDSHAKE),
        [CONN_CLOSING] = ~DSUP_CS(CONN_CLOSING),
    };
#undef DSUP_CS
    assert(from[to] & (1u << c->state));
    (void)from;
    c->state = to;
}

struct dsup_node {
    uv_loop_t *loop;
    const char *name;       /* interned "alive@host" */
    char alive[256];
    char host[256];
    char cookie[1024];
    uint32_t creation;
    uint64_t flags;         /* what we advertise */
    int visible;
    unsigned ticktime_ms;   /* net_ticktime in ms */
    size_t max_frame;
    /* Hostile-network bounds (net_opts.c parses them; 0 = the default). */
    unsigned setup_ms;          /* --setup-time: whole-setup deadline, like net_setuptime */
    unsigned max_handshakes;    /* --max-handshakes: inbound connections not yet authenticated */
    unsigned max_handshakes_per_addr; /* --max-handshakes-per-addr: the same, per source address */
    size_t max_out_queue;       /* --max-out-queue: bytes queued to one peer before it is cut */
    uv_timer_t setup_timer;     /* sweeps setup deadlines */
    uv_tcp_t listener;
    int port;
    const char *listen_address; /* --listen-address (IPv4/IPv6 literal); NULL: 0.0.0.0 */
    dsup_conn **conns;
    size_t nconns, capconns;
    dsup_conn **flush;      /* connections with queued frames */
    size_t nflush, capflush;
    uv_timer_t tick_timer;
    uv_idle_t idle;         /* runs deferred local work without blocking poll */
    int idle_on;
    uv_signal_t sigint, sigterm;
    int running, stopping, exit_status;
    ei_x_buff scratch;      /* reusable encode buffer for replies and signals */
    const char **connect;   /* --connect targets, dialled once registered */
    int nconnect;
    const char **scopes;    /* --scope names (atom text) */
    int nscopes;
    const char **sups;      /* --supervisor specs */
    int nsups;
    uint32_t ref_n[3];
    /* Without epmd: peers' ports told by dsup_node_set_peer_port (tests,
     * fixed deployments); a peer listed here is dialled on that port of its
     * host, and the node itself registers with no epmd (no_epmd). */
    struct dsup_static_port *static_ports;
    int no_epmd;
    int started, stopped;     /* dsup_node_start ran; dsup_shutdown finished its part */
    int up;                   /* registered and dsup_node runs (dsup_node_is_up) */
    int announce_ready;       /* print "dsup-node ready NAME" on stdout (dsup_main) */
    int handle_signals;       /* SIGINT/SIGTERM stop it (dsup_main) */
    int own_loop;             /* the stop deadline may stop the whole loop (dsup_main) */
    int closed;               /* dsup_node_free may free it once the loop let go */
    /* gen_server.c: the process whose init runs, and its handoff term */
    const struct dsup_proc *handoff_proc;
    const dsup_term *handoff_term;
    /* node.c's own */
    struct reconnect *reconnects;
    dsup_ratelimit dial_fail_log, refuse_log, deadline_log, inbound_fail_log, forged_log;
    uv_timer_t stop_deadline;
    int stop_holds, stop_hooks_ran;
    /* Every module's state, allocated at node init, freed at node close. */
    struct dsup_intern_tab *names; /* base/intern.c: node names, registered names */
    struct dsup_procs *procs;      /* proc.c: the process table, names, local signal queue */
    struct dsup_terms *terms;      /* term.c: scratch buffers, atom cache */
    struct dsup_sched *sched;      /* sched.c: send_after timers */
    struct dsup_hooks *hooks;      /* node_hooks.c */
    struct dsup_metrics_st *metrics; /* metrics.c */
    struct dsup_peer_rel *peer_rel;  /* peer_rel.c */
    struct dsup_node_ctrl *ctrl;     /* node_ctrl.c: the dsup_node process */
    struct dsup_epmd_reg *epmd;      /* wire/epmd.c: our registration */
    /* The layers above own these; the runtime never looks inside them. They
     * are freed by their DSUP_NODE_CLOSE hooks. */
    struct dsup_pg_service *pg;
    struct dsup_sup_service *sup;
    struct dsup_http_server *http;
};

/* The node whose name table holds `name` (any name a dsup_pid or dsup_ref
 * from this node's callbacks carries). */
static inline dsup_node *dsup_node_of_name(const char *name) { return (dsup_node *)dsup_intern_owner(name); }

/* The connection to `peer`, starting one if none and `connect` is set.
 * NULL when the name is not a valid node name or it is ourselves. */
dsup_conn *dsup_node_conn(dsup_node *node, const char *peer, int connect);
/* Queue one control message (and message) to the peer node; connects on
 * demand. Frames queued before the handshake completes are sent after it. */
int dsup_node_send_ctrl(dsup_node *node, const char *peer, const dsup_ctrl *c);
/* Queue msg to the remote pid `to` (a SEND): dsup_node_send_ctrl, but a
 * send to the pid the connection last sent to reuses that frame's head. */
int dsup_node_send_to_pid(dsup_node *node, const dsup_pid *to, dsup_term msg);
/* Make sure deferred work (local messages, flushes) runs soon. */
void dsup_node_wake(dsup_node *node);
/* A fresh reference from this node. */
void dsup_node_make_ref(dsup_node *node, dsup_ref *ref);
/* Loop time in ms. */
static inline uint64_t dsup_node_now(const dsup_node *node) { return uv_now(node->loop); }
/* Called by conn.c */
void dsup_node_conn_up(dsup_conn *c);
void dsup_node_conn_closed(dsup_conn *c);
void dsup_node_mark_dirty(dsup_conn *c);
void dsup_node_flush_all(dsup_node *node);
/* Act on an incoming control message; -1 when the connection must be closed
 * (c->error says why). */
int dsup_node_dispatch(dsup_conn *c, const dsup_ctrl *ctrl);
/* Decide on an inbound send_name claiming `name` (not interned). */
int dsup_node_accept_peer(dsup_conn *c, const char *name);
/* The peer proved the cookie: intern its name, settle a pending "alive" or
 * simultaneous connect. -1 when the name cannot be kept. */
int dsup_node_peer_proven(dsup_conn *c);
/* The name to log for a connection (peer, claimed name, or address). */
const char *dsup_conn_label(const dsup_conn *c);
void dsup_node_conn_remove(dsup_conn *c);

/* A node with every module's state made and nothing running (the CLI and
 * dsup_node_new fill in identity and options, then dsup_node_start). */
dsup_node *dsup_node_alloc(uv_loop_t *loop);
/* The port dsup_node_set_peer_port gave `peer` (interned), or 0. */
int dsup_node_static_port(const dsup_node *node, const char *peer);

/* CLI names: an upper-case first letter means an Elixir alias (cli.c). */
const char *dsup_atom_from_cli(const char *arg, char *buf, size_t cap);
int dsup_cli_sup_opts(const char *arg, char *name, size_t cap, ei_x_buff *opts);
int dsup_node_add_connect_target(dsup_node *node, const char *peer);
/* Hostile-network options (net_opts.c): 1 consumed (i advanced), 0 not ours,
 * -1 bad value (message printed). */
extern const char dsup_net_cli_usage[];
void dsup_net_defaults(dsup_node *n);

/* Conversions between our pids and wire pids. */
void dsup_pid_to_wire(const dsup_pid *p, dsup_wire_pid *w);
int dsup_pid_from_wire(dsup_node *node, const dsup_wire_pid *w, dsup_pid *p);

#endif
