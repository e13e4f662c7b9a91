/* dsup.h — the public C API of dsup: write C workers that every BEAM process
 * sees as a GenServer (call, cast, send, monitor, link, :sys.get_state).
 *
 * Terms are Erlang's external term format, read and written with
 * erl_interface (ei): a dsup_term is one encoded term WITHOUT the 131 version
 * byte, so `int i = 0; ei_decode_long(t.buf, &i, &n)` reads it. Replies and
 * messages are built in an ei_x_buff; a leading version byte (from
 * ei_x_new_with_version) is accepted and skipped.
 *
 * Threading: every callback runs on the node's single event-loop thread and
 * must not block. Slow work goes to dsup_queue_work(), which runs it on
 * libuv's thread pool and calls you back on the loop, where you may reply
 * with a saved `from`.
 *
 * Lifetime: a dsup_term or dsup_from handed to a callback is valid only
 * during that callback. Keep a copy with dsup_term_dup()/dsup_from_save(). */
#ifndef DSUP_H
#define DSUP_H

#include <stddef.h>
#include <stdint.h>

#include <ei.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Only what this header declares is exported from libdsup and dsup-node
 * (the library is built with -fvisibility=hidden). */
#if defined(__GNUC__)
#define DSUP_EXTERN __attribute__((visibility("default")))
#else
#define DSUP_EXTERN
#endif

#define DSUP_ABI_VERSION 2

/* ---- errors ------------------------------------------------------------- */

/* What the int-returning functions below return: 0 (DSUP_OK) on success, a
 * negative dsup_err on failure, so `rc < 0` still tests for failure and
 * dsup_strerror(rc) says why. The one positive result is dsup_pg_leave's
 * DSUP_PG_NOT_JOINED (pg's `not_joined`, not a failure). The ei-style
 * encoders/decoders (dsup_x_encode_*, dsup_decode_*, dsup_term_next) keep
 * ei's convention: 0, or -1.
 *
 * The node aborts on out of memory (it logs "out of memory allocating N
 * bytes (file:line)" first), so DSUP_ENOMEM only means a table refused to
 * grow past its size limit; it keeps -1, the value every failure had
 * before these codes. */
typedef enum dsup_err {
    DSUP_OK = 0,
    DSUP_ENOMEM = -1,        /* a table is full (see above) */
    DSUP_EINVAL = -2,        /* an invalid argument (NULL, empty, malformed) */
    DSUP_ENOTFOUND = -3,     /* no such timer, subscription, supervisor child */
    DSUP_EEXIST = -4,        /* the name is taken */
    DSUP_ENOPROC = -5,       /* not a live local process */
    DSUP_EUNKNOWN_TYPE = -6, /* no worker type of that name */
    DSUP_EREFUSED = -7,      /* init refused (the reason term says why) */
    DSUP_ENOTUP = -8,        /* the node is not up (or is stopping) */
    DSUP_ETOOBIG = -9,       /* larger than the documented limit */
    DSUP_ENOTCONN = -10,     /* the peer node is not connected (message dropped) */
    DSUP_ESYSTEM = -11,      /* the OS or libuv refused (thread pool, sockets) */
} dsup_err;

/* A short text for a dsup_err ("invalid argument"); "unknown error" for
 * any other value. Never NULL; static storage. */
DSUP_EXTERN const char *dsup_strerror(int err);

/* ---- identities -------------------------------------------------------- */

/* A process id. `node` is an interned string: two pids on the same node have
 * the same `node` pointer, so pids compare with dsup_pid_eq.
 *
 * Node names that peers introduce are freed once nothing uses them, at the
 * end of the loop turn: a dsup_pid or dsup_ref handed to a callback (or
 * decoded from its terms) is valid during that callback. A worker that keeps
 * one for later (in its state, across callbacks) must hold it with
 * dsup_pid_hold()/dsup_ref_hold() and release it when it drops it. Pids of
 * this node need no hold (holding them is harmless). dsup_monitor, dsup_link,
 * dsup_from_save and the pg and supervisor APIs hold what they keep. */
typedef struct dsup_pid {
    const char *node;
    uint32_t    num, serial, creation;
} dsup_pid;

/* A reference (make_ref()). */
typedef struct dsup_ref {
    const char *node;
    uint32_t    creation;
    uint32_t    len;       /* words used in n, 1..5 */
    uint32_t    n[5];
} dsup_ref;

/* One encoded term, no version byte: buf[0..len) holds exactly the term
 * (dsup_term_tuple takes the last element's end from len). */
typedef struct dsup_term {
    const char *buf;
    size_t      len;
} dsup_term;

typedef struct dsup_node dsup_node;          /* a node (see "running a node") */
typedef struct dsup_proc dsup_proc;          /* a process on a node */
typedef struct dsup_saved_from dsup_saved_from;

/* Who made a call: reply to `pid` with {tag, Reply}. */
typedef struct dsup_from {
    dsup_pid  pid;
    dsup_term tag;
} dsup_from;

static inline int dsup_pid_eq(const dsup_pid *a, const dsup_pid *b)
{
    return a->node == b->node && a->num == b->num && a->serial == b->serial &&
           a->creation == b->creation;
}
DSUP_EXTERN int dsup_ref_eq(const dsup_ref *a, const dsup_ref *b);
/* Keep the node name of a saved pid/ref alive (see above); one release per hold. */
DSUP_EXTERN void dsup_pid_hold(const dsup_pid *pid);
DSUP_EXTERN void dsup_pid_release(const dsup_pid *pid);
DSUP_EXTERN void dsup_ref_hold(const dsup_ref *ref);
DSUP_EXTERN void dsup_ref_release(const dsup_ref *ref);

/* ---- writing a worker --------------------------------------------------- */

typedef enum dsup_call_ret {
    DSUP_NOREPLY = 0, /* no reply now: dsup_from_save() and dsup_reply() later, or stop */
    DSUP_REPLY = 1,   /* the reply term is in `reply` */
} dsup_call_ret;

/* A worker type: the C counterpart of a GenServer module. Every callback but
 * `name` is optional. To stop the worker from any callback, call dsup_stop()
 * (or dsup_stop_atom()) and return; a handle_call may still return
 * DSUP_REPLY to answer before it stops. */
typedef struct dsup_worker_type {
    /* The type's name as an atom: "counter", or an Elixir alias
     * "Elixir.MyApp.Worker" so that {MyApp.Worker, opts} specs read naturally. */
    const char *name;

    /* Called in the new process. `args` is the term given at spawn
     * (a keyword list for child specs). Set *state. Return 0, or non-zero after
     * dsup_stop(self, Reason) to refuse: the spawner gets {error, Reason}. */
    int (*init)(dsup_proc *self, dsup_term args, void **state);

    /* {'$gen_call', From, Request}: encode exactly one term into `reply`. */
    dsup_call_ret (*handle_call)(dsup_proc *self, void *state, dsup_term request,
                                 const dsup_from *from, ei_x_buff *reply);

    /* {'$gen_cast', Msg}. */
    void (*handle_cast)(dsup_proc *self, void *state, dsup_term msg);

    /* Any other message, including {'DOWN', ...} for dsup_monitor() and
     * {'EXIT', Pid, Reason} when trapping exits. */
    void (*handle_info)(dsup_proc *self, void *state, dsup_term msg);

    /* Called exactly once whenever the process ends, whatever the reason
     * (including `kill` and lost parents): free the state here. Unlike
     * gen_server it is a destructor, so it must not send a reply. */
    void (*terminate)(dsup_proc *self, void *state, dsup_term reason);

    /* :sys.get_state / :sys.get_status: encode the state as one term.
     * When absent the state shows as the atom `undefined`. */
    int (*encode_state)(dsup_proc *self, void *state, ei_x_buff *out);

    /* :sys.replace_state(Pid, Fun): Fun runs on the caller's node over
     * `encode_state`'s term; the result is handed here. Return 0 to accept
     * (and update *state), non-zero to refuse (the caller gets an error).
     * When absent, replace_state fails with {error, not_supported}. */
    int (*replace_state)(dsup_proc *self, void **state, dsup_term new_state);

    /* Optional: when non-zero, *state points at this many zeroed bytes when
     * init is called, allocated with the process itself and freed with it
     * (terminate must not free them). Saves an allocation per worker; a
     * worker whose state grows keeps state_size 0 and allocates its own. */
    size_t state_size;

    /* Optional (handoff): when the child moves to another node (graceful
     * stop of its node or instance, move_child, rebalance), encode the state
     * as one term into `out` and return 0. The process then stops with
     * reason `shutdown` (terminate runs as usual) and the copy on the new
     * node starts with the same init args; its init finds this term with
     * dsup_handoff_state(). Non-zero, or no callback: the child moves by
     * restart from its spec (init args only), as before. Takes the first
     * reserved slot of ABI 2, so the struct keeps its size. */
    int (*handoff_state)(dsup_proc *self, void *state, ei_x_buff *out);

    /* Room to grow (ABI 2): leave zeroed. New optional fields take these
     * slots, so a type built against this header keeps its size. */
    void *reserved[7];
} dsup_worker_type;

/* Make a worker type known to this node (before or after dsup_main starts).
 * The node keeps its own copy of the struct. 0; DSUP_EEXIST when another
 * type has the name (the same struct again is 0); DSUP_EINVAL when the
 * name is missing or longer than 255 bytes. The macro passes the struct's size, so a type built against an
 * older or newer header is read correctly: fields it lacks count as absent
 * (zero), fields this node does not know are ignored. */
DSUP_EXTERN int dsup_register_worker_type_sized(const dsup_worker_type *type, size_t size);
#define dsup_register_worker_type(type) dsup_register_worker_type_sized((type), sizeof *(type))
DSUP_EXTERN const dsup_worker_type *dsup_find_worker_type(const char *name);

/* Start a worker of `type` on `node` with init args `args` (NULL = []),
 * optionally linked to `link_to` (a process of that node). On success
 * returns 0 and sets *pid. On failure, if reason is non-NULL, it holds the
 * reason term: DSUP_EREFUSED (init refused; its reason), DSUP_EUNKNOWN_TYPE
 * ({unknown_worker, Type}), DSUP_ENOTUP (the node has not started; the atom
 * enotup), DSUP_EINVAL (link_to runs on another node). */
DSUP_EXTERN int dsup_spawn(dsup_node *node, const char *type, const dsup_term *args, dsup_proc *link_to,
                           dsup_pid *pid, ei_x_buff *reason);

/* ---- inside a callback -------------------------------------------------- */

DSUP_EXTERN const dsup_pid *dsup_self(const dsup_proc *self);
/* The node the process runs on. */
DSUP_EXTERN dsup_node *dsup_proc_node(const dsup_proc *self);
/* Only inside init: 1 when this process starts as a move (handoff) and
 * *state is the term the previous copy's handoff_state encoded (valid during
 * init); 0 on a fresh start or a restart after a crash. */
DSUP_EXTERN int dsup_handoff_state(const dsup_proc *self, dsup_term *state);
DSUP_EXTERN void *dsup_state(const dsup_proc *self);
DSUP_EXTERN const dsup_worker_type *dsup_type(const dsup_proc *self);

/* Stop after the current callback returns, with this exit reason. */
DSUP_EXTERN void dsup_stop(dsup_proc *self, dsup_term reason);
DSUP_EXTERN void dsup_stop_atom(dsup_proc *self, const char *reason);

/* Checkpoints for crashes (opt-in): publish `state` (one encoded term, at
 * most DSUP_CHECKPOINT_MAX_BYTES) as this supervised child's latest
 * checkpoint. It is copied to the node that would take the child over if
 * this node died (the ring successor of its name among the hosts); after
 * such a crash (kill -9, lost node) the child restarts there and its init
 * finds the term with dsup_handoff_state(), instead of starting from its
 * init args only. Copies go out at most every 100 ms per instance (a newer
 * checkpoint replaces one not yet sent). 0; DSUP_ENOTFOUND when the
 * process is not a supervised child on this node, DSUP_EINVAL for an empty
 * term, DSUP_ETOOBIG above the limit, DSUP_ENOTUP while its instance stops. */
#define DSUP_CHECKPOINT_MAX_BYTES (64u * 1024u)
DSUP_EXTERN int dsup_checkpoint(dsup_proc *self, dsup_term state);

/* Trap exits: exit signals arrive as {'EXIT', From, Reason} in handle_info. */
DSUP_EXTERN void dsup_trap_exit(dsup_proc *self, int on);

/* Deferred replies: save the `from` of a call, answer later. dsup_reply
 * frees the saved from; it returns as dsup_send does (DSUP_EINVAL for a
 * NULL from). */
DSUP_EXTERN dsup_saved_from *dsup_from_save(const dsup_from *from);
DSUP_EXTERN int dsup_reply(dsup_saved_from *from, const ei_x_buff *reply);
DSUP_EXTERN void dsup_from_discard(dsup_saved_from *from);

/* Send `msg` to a pid (local or on any connected or connectable node), or to
 * a registered name on a node ({Name, Node}; node NULL = this node).
 * Like Erlang's send, these never fail for a dead or unknown destination:
 * the message is dropped. They return 0 when it was queued, DSUP_ENOTCONN
 * when it was dropped because the peer node is unreachable or its
 * connection's queue is full, DSUP_EINVAL for an invalid name/node or,
 * for send_named, a NULL self (the sender says which node sends). dsup_send
 * with a NULL self sends from the node that decoded `to` (its name table
 * holds to->node). Most callers ignore the result, as Erlang code does. */
DSUP_EXTERN int dsup_send(dsup_proc *self, const dsup_pid *to, const ei_x_buff *msg);
DSUP_EXTERN int dsup_send_named(dsup_proc *self, const char *name, const char *node, const ei_x_buff *msg);

/* Monitor a process: {'DOWN', Ref, process, Pid, Reason} arrives later.
 * These four return 0, or what dsup_send returns when the signal to a
 * remote pid could not be queued (the link/monitor is kept locally, as
 * Erlang's is when the peer is down). */
DSUP_EXTERN int dsup_monitor(dsup_proc *self, const dsup_pid *target, dsup_ref *ref);
DSUP_EXTERN int dsup_demonitor(dsup_proc *self, const dsup_ref *ref);
DSUP_EXTERN int dsup_link(dsup_proc *self, const dsup_pid *other);
DSUP_EXTERN int dsup_unlink(dsup_proc *self, const dsup_pid *other);
/* Send an exit signal (erlang:exit/2). */
DSUP_EXTERN int dsup_exit(dsup_proc *self, const dsup_pid *to, dsup_term reason);

/* erlang:send_after(Ms, self(), Msg). Returns a timer id (never 0).
 * cancel (one of self's timers): 0, or DSUP_ENOTFOUND when it fired or was
 * cancelled. */
DSUP_EXTERN uint64_t dsup_send_after(dsup_proc *self, unsigned ms, const ei_x_buff *msg);
DSUP_EXTERN int dsup_cancel_timer(dsup_proc *self, uint64_t timer_id);

/* Run work(arg) on the thread pool, then done(self, arg, status) on the loop
 * thread, unless the process died meanwhile (then done gets self == NULL).
 * 0; DSUP_EINVAL (NULL self/work/done), DSUP_ESYSTEM (libuv refused). */
DSUP_EXTERN int dsup_queue_work(dsup_proc *self, void *arg, void (*work)(void *arg),
                    void (*done)(dsup_proc *self, void *arg, int status));

/* ---- terms -------------------------------------------------------------- */

/* An atom from UTF-8 text, written as SMALL_ATOM_UTF8_EXT: what
 * ei_x_encode_atom produces, without its per-call latin1 conversion. */
DSUP_EXTERN int dsup_x_encode_atom(ei_x_buff *x, const char *name);
/* Encode/decode dsup_pid / dsup_ref into ei buffers. */
DSUP_EXTERN int dsup_x_encode_pid(ei_x_buff *x, const dsup_pid *pid);
DSUP_EXTERN int dsup_x_encode_ref(ei_x_buff *x, const dsup_ref *ref);
DSUP_EXTERN int dsup_x_encode_term(ei_x_buff *x, dsup_term t);   /* append an encoded term */
/* Decoding interns the node name in `node`'s name table (dsup_proc_node(self)
 * inside a callback). */
DSUP_EXTERN int dsup_decode_pid(dsup_node *node, const char *buf, int *index, dsup_pid *pid);
DSUP_EXTERN int dsup_decode_ref(dsup_node *node, const char *buf, int *index, dsup_ref *ref);

/* True when the term is the atom `name`. */
DSUP_EXTERN int dsup_term_is_atom(dsup_term t, const char *name);
/* When t is a tuple whose first element is the atom `tag`, set *arity and
 * elems[0..max-1] to its elements (elems[0] is the tag) and return 1. */
DSUP_EXTERN int dsup_term_tagged(dsup_term t, const char *tag, int *arity, dsup_term *elems, int max);
/* Split a tuple into elements (returns arity, or -1 if not a tuple). */
DSUP_EXTERN int dsup_term_tuple(dsup_term t, dsup_term *elems, int max);
/* Look `key` up in a keyword/property list ([{key, V}]); 1 if found. */
DSUP_EXTERN int dsup_term_keyfind(dsup_term list, const char *key, dsup_term *value);
/* Compare two encoded terms byte for byte (equal encodings). */
DSUP_EXTERN int dsup_term_eq(dsup_term a, dsup_term b);
/* Advance *index past one term of buf, like ei_skip_term, but without
 * recursion: terms from peers may be nested 100,000s deep, where
 * ei_skip_term (and ei_print_term) overflow the C stack. For terms dsup
 * handed you (validated on arrival); 0, or -1 when malformed. */
DSUP_EXTERN int dsup_term_next(const char *buf, int *index);
/* A heap copy of a term (free with dsup_term_free). */
DSUP_EXTERN dsup_term dsup_term_dup(dsup_term t);
DSUP_EXTERN void dsup_term_free(dsup_term *t);
/* Reset a reusable ei_x_buff without freeing its memory. */
static inline void dsup_x_reset(ei_x_buff *x) { x->index = 0; }

/* ---- :pg scopes ---------------------------------------------------------- */

/* A pg scope this node takes part in, like a BEAM node's pg scope process:
 * BEAM nodes see C members in pg:get_members/2, and C code sees theirs. */
typedef struct dsup_pg dsup_pg;
enum { DSUP_PG_JOIN = 1, DSUP_PG_LEAVE = 2 };
/* dsup_pg_leave's one positive result: none of the pids was a member. */
#define DSUP_PG_NOT_JOINED 1
typedef void (*dsup_pg_event_fn)(void *arg, dsup_pg *scope, int event, dsup_term group,
                                 const dsup_pid *pids, size_t n);

/* Start (or find) the scope `name` on `node`. NULL before the node is up. */
DSUP_EXTERN dsup_pg *dsup_pg_scope(dsup_node *node, const char *name);
DSUP_EXTERN dsup_pg *dsup_pg_find(dsup_node *node, const char *name);
DSUP_EXTERN const char *dsup_pg_name(const dsup_pg *scope);
/* Join/leave local processes (a member that exits leaves all its groups).
 * join: 0; DSUP_ENOPROC (a pid is not a live local process: none joins),
 * DSUP_EINVAL (NULL scope, no pids, empty group). leave: 0;
 * DSUP_PG_NOT_JOINED (1: none of the pids was a member, pg's not_joined);
 * DSUP_EINVAL (NULL scope). */
DSUP_EXTERN int dsup_pg_join(dsup_pg *scope, dsup_term group, const dsup_pid *pids, size_t n);
DSUP_EXTERN int dsup_pg_leave(dsup_pg *scope, dsup_term group, const dsup_pid *pids, size_t n);
/* All members (local and remote); the array is valid until the next event. */
DSUP_EXTERN size_t dsup_pg_members(dsup_pg *scope, dsup_term group, const dsup_pid **pids);
/* Local members copied into out (up to max); returns how many there are. */
DSUP_EXTERN size_t dsup_pg_local_members(dsup_pg *scope, dsup_term group, dsup_pid *out, size_t max);
/* Calls fn for each group with members; returns the number of groups. */
DSUP_EXTERN size_t dsup_pg_which_groups(dsup_pg *scope, void (*fn)(void *arg, dsup_term group, size_t members),
                            void *arg);
/* Membership changes, local and remote, as they are applied. 0;
 * DSUP_EINVAL (NULL scope or fn); unsubscribe: DSUP_ENOTFOUND. */
DSUP_EXTERN int dsup_pg_subscribe(dsup_pg *scope, dsup_pg_event_fn fn, void *arg);
DSUP_EXTERN int dsup_pg_unsubscribe(dsup_pg *scope, dsup_pg_event_fn fn, void *arg);

/* ---- distributed supervisors ---------------------------------------------- */

/* An instance of a DistributedSupervisor on this node (see README: the wire
 * API is gen_server:call({Name, Node}, Msg)). */
typedef struct dsup_sup dsup_sup;
/* Events, as terms: {process_start, Id, Pid}, {process_stop, Id, [Pid]},
 * {node_up, Node, Info}, {node_down, Node, Info},
 * {node_terminate, Node, Reason, Statuses}. */
typedef void (*dsup_sup_event_fn)(void *arg, dsup_sup *sup, dsup_term event);

/* Start instance `name` (atom text) on `node` with `opts`, the keyword list that
 * DistributedSupervisor.start_link/1 takes (NULL for []). 0, or with the
 * error reason term in err when err is non-NULL: DSUP_EINVAL (a bad
 * option: {bad_option, Key}; a name too long: system_limit), DSUP_EEXIST
 * ({already_started, Pid}), DSUP_ENOTUP (cannot_start: the node is not up
 * or is stopping). subscribe: 0, or DSUP_EINVAL (NULL sup or fn). */
DSUP_EXTERN int dsup_sup_start(dsup_node *node, const char *name, const dsup_term *opts, dsup_sup **out,
                               ei_x_buff *err);
DSUP_EXTERN dsup_sup *dsup_sup_find(dsup_node *node, const char *name);
DSUP_EXTERN int dsup_sup_subscribe(dsup_sup *sup, dsup_sup_event_fn fn, void *arg);

/* ---- logging ------------------------------------------------------------ */

enum { DSUP_LOG_DEBUG = 0, DSUP_LOG_INFO = 1, DSUP_LOG_WARN = 2, DSUP_LOG_ERROR = 3 };
DSUP_EXTERN void dsup_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- running a node ----------------------------------------------------- */

/* The dsup-node command line as a function: register your worker types,
 * then call dsup_main(argc, argv) from your own main(). Returns the exit
 * status. See `dsup-node --help`. */
DSUP_EXTERN int dsup_main(int argc, char **argv);

/* A node as a library object (what dsup_main runs one of): any number of
 * nodes may share one process and one libuv loop; each owns its own state
 * (processes, names, connections, pg scopes, supervisor instances). */
typedef struct dsup_node_config {
    const char *name;        /* "alive@host" (required) */
    const char *cookie;      /* required */
    int listen_port;         /* 0: any free port (dsup_node_port tells which) */
    const char *listen_address; /* IPv4/IPv6 literal; NULL: 0.0.0.0 */
    int visible;             /* 1: a normal node; 0: hidden */
    int no_epmd;             /* 1: do not register with epmd; peers are found
                                through dsup_node_set_peer_port only */
    unsigned ticktime_ms;    /* 0: 60000, like net_ticktime 60 */
} dsup_node_config;
/* A node on `uv_loop` (a uv_loop_t *). NULL for a missing name or cookie,
 * or a name that is not alive@host. Nothing runs until dsup_node_start. */
DSUP_EXTERN dsup_node *dsup_node_new(void *uv_loop, const dsup_node_config *cfg);
/* Listen, then register with epmd (unless no_epmd); the node is up (its
 * callbacks, scopes and instances work) once dsup_node_is_up says so. */
DSUP_EXTERN int dsup_node_start(dsup_node *node);
DSUP_EXTERN int dsup_node_is_up(const dsup_node *node);
/* The distribution port it listens on (after dsup_node_start). */
DSUP_EXTERN int dsup_node_port(const dsup_node *node);
/* A static port resolver: dial `peer` ("alive@host") on `port` of its host
 * without asking epmd. 0; DSUP_EINVAL for a bad name or port. */
DSUP_EXTERN int dsup_node_set_peer_port(dsup_node *node, const char *peer, int port);
/* Ask the node to shut down cleanly (as SIGTERM does for dsup_main). */
DSUP_EXTERN void dsup_shutdown(dsup_node *node);
/* 1 once a shut-down node has closed everything it had open on the loop. */
DSUP_EXTERN int dsup_node_is_stopped(const dsup_node *node);
/* Free a node: call it outside any callback of its loop, after
 * dsup_shutdown (or without dsup_node_start). It closes what is still open
 * and runs the loop once (UV_RUN_NOWAIT) until those handles are closed. */
DSUP_EXTERN void dsup_node_free(dsup_node *node);
/* The node's name (e.g. "dsup@127.0.0.1"). */
DSUP_EXTERN const char *dsup_node_name(const dsup_node *node);

/* A plugin .so loaded with `--load` exports this function, which registers
 * its worker types and returns DSUP_ABI_VERSION, or a negative number when
 * it cannot initialise (log why with dsup_log first): the node then refuses
 * to start. Every ei function is available to plugins. Plugins built for
 * ABI 1 (registering through the plain dsup_register_worker_type symbol,
 * without the size) are still accepted. */
typedef int (*dsup_plugin_init_fn)(void);
#define DSUP_PLUGIN_INIT_SYMBOL "dsup_plugin_init"

#ifdef __cplusplus
}
#endif
#endif
