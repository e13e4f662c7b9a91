/* gen_server.c — the worker behaviour: makes a dsup_worker_type look like a
 * gen_server to every BEAM process.
 *
 *   {'$gen_call', {Pid, Tag}, Req}  -> handle_call, answered {Tag, Reply} to Pid
 *   {'$gen_cast', Msg}              -> handle_cast
 *   {system, From, Req}             -> sys: get_state, replace_state, get_status,
 *                                      suspend, resume, terminate,
 *                                      debug (statistics, log: sys_debug.c)
 *                                      (get_state/replace_state answered in the
 *                                      form the caller's release expects:
 *                                      peer_rel.c)
 *   {'EXIT', Parent, R} (trapping)  -> stop with R, as gen_server does
 *   anything else                   -> handle_info
 *
 * The reply is encoded straight after the {Tag, header in one scratch
 * buffer, so answering a call costs no allocation and one copy (into the
 * connection's write queue). */
#include <stdlib.h>
#include <string.h>

#include "gen_server.h"
#include "xalloc.h"
#include "err.h"
#include "intern.h"
#include "log.h"
#include "metrics.h"
#include "node.h"
#include "peer_rel.h"
#include "proc.h"
#include "sys_debug.h"
#include "term.h"

/* Behaviour-private data, allocated only when a worker uses sys features. */
typedef struct gs_extra {
    dsup_buf deferred;         /* messages held while suspended or awaiting */
    int awaiting;              /* replace_state: waiting for the fun's result */
    dsup_ref rpc_ref;
    dsup_saved_from *rpc_from;
    dsup_sys_dbg *dbg;         /* sys statistics/log; NULL = off (one branch per message) */
} gs_extra;

struct dsup_saved_from {
    dsup_node *node;           /* where the call arrived: the reply leaves from there */
    dsup_pid pid;
    size_t tag_len;
    char tag[];
};

/* ---- worker type registry --------------------------------------------------- */

/* The registry keeps its own copy of each type, read up to the size the
 * registrant was built with: an older plugin's shorter struct leaves the
 * newer fields zero (absent), a newer one's extra fields are ignored. */
typedef struct type_ent {
    dsup_worker_type type; /* first: proc->type points here */
    const dsup_worker_type *orig; /* the registrant's struct */
    size_t idx;                /* its index in types[], for per-node counts */
    int internal;
} type_ent;
static type_ent **types;
static size_t ntypes, captypes;

/* The struct as ABI 1 plugins built it (before the reserved slots). */
#define DSUP_WORKER_TYPE_V1_SIZE (offsetof(dsup_worker_type, state_size) + sizeof(size_t))

static type_ent *find_type(const char *name)
{
    /* asked for every child started: the first byte turns the others away */
    for (size_t i = 0; i < ntypes; i++)
        if (types[i]->type.name[0] == name[0] && strcmp(types[i]->type.name, name) == 0)
            return types[i];
    return NULL;
}

static int register_type(const dsup_worker_type *t, size_t size, int internal)
{
    if (!t || size < offsetof(dsup_worker_type, init) + sizeof t->init || !t->name || !*t->name ||
        strlen(t->name) > 255)
        return DSUP_EINVAL;
    type_ent *dup = find_type(t->name);
    if (dup) /* the same struct again (a plugin loaded twice) is harmless */
        return dup->orig == t ? 0 : DSUP_EEXIST;
    if (ntypes == captypes) {
        size_t nc = captypes ? captypes * 2 : 8;
        type_ent **n = dsup_xrealloc(types, nc * sizeof *n);
        types = n;
        captypes = nc;
    }
    /* One allocation per type for the node's life: pointers to the copy
     * (dsup_type(), proc->type) stay valid when the table grows. */
    type_ent *e = dsup_xcalloc(1, sizeof *e);
    memcpy(&e->type, t, size < sizeof e->type ? size : sizeof e->type);
    e->orig = t;
    e->internal = internal;
    e->idx = ntypes;
    types[ntypes++] = e;
    return 0;
}

int dsup_register_worker_type_sized(const dsup_worker_type *t, size_t size)
{
    return register_type(t, size, 0);
}

/* The ABI 1 entry point, still called by plugins built before the size was
 * passed (the header's macro hides this name from newer code). */
#undef dsup_register_worker_type
DSUP_EXTERN int dsup_register_worker_type(const dsup_worker_type *t);
int dsup_register_worker_type(const dsup_worker_type *t)
{
    return register_type(t, DSUP_WORKER_TYPE_V1_SIZE, 0);
}

int dsup_register_internal_type(const dsup_worker_type *t) { return register_type(t, sizeof *t, 1); }

const dsup_worker_type *dsup_find_worker_type(const char *name)
{
    type_ent *e = find_type(name);
    return e ? &e->type : NULL;
}

size_t dsup_worker_type_names(const char **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < ntypes; i++)
        if (!types[i]->internal) {
            if (n < max)
                out[n] = types[i]->type.name;
            n++;
        }
    return n;
}

static void count_type(dsup_proc *p, void *arg)
{
    size_t *counts = arg;
    if (p->type) /* the registry's copy, the first member of its entry */
        counts[((const type_ent *)(const void *)p->type)->idx]++;
}

int dsup_which_workers(dsup_node *node, ei_x_buff *x)
{
    /* Types are process-wide, their live workers per node. */
    size_t *live = dsup_xcalloc(ntypes + 1, sizeof *live);
    dsup_proc_foreach(node, count_type, live);
    size_t n = 0;
    for (size_t i = 0; i < ntypes; i++)
        n += !types[i]->internal;
    if (n)
        ei_x_encode_list_header(x, (long)n);
    for (size_t i = 0; i < ntypes; i++) {
        if (types[i]->internal)
            continue;
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_atom(x, types[i]->type.name);
        ei_x_encode_ulong(x, live[i]);
    }
    free(live);
    return ei_x_encode_empty_list(x);
}

/* ---- replies ------------------------------------------------------------------ */

static int send_reply(dsup_node *node, const dsup_pid *to, ei_x_buff *x)
{
    dsup_term t = { x->buff, (size_t)x->index };
    return dsup_proc_send(node, NULL, to, t);
}

/* Start {Tag, ...} in x; the caller encodes the reply term after it. */
static void begin_reply(ei_x_buff *x, dsup_term tag)
{
    x->index = 0;
    ei_x_encode_tuple_header(x, 2);
    ei_x_append_buf(x, tag.buf, (int)tag.len);
}

dsup_saved_from *dsup_from_save(const dsup_from *from)
{
    dsup_saved_from *s = dsup_xmalloc(sizeof *s + from->tag.len);
    s->node = dsup_node_of_name(from->pid.node); /* decoded into that node's table */
    s->pid = from->pid;
    dsup_pid_hold(&s->pid); /* the caller's node name outlives this callback */
    s->tag_len = from->tag.len;
    memcpy(s->tag, from->tag.buf, from->tag.len);
    return s;
}

void dsup_from_discard(dsup_saved_from *from)
{
    if (!from)
        return;
    dsup_pid_release(&from->pid);
    free(from);
}

int dsup_reply(dsup_saved_from *from, const ei_x_buff *reply)
{
    if (!from)
        return DSUP_EINVAL;
    ei_x_buff *x = dsup_term_scratch(from->node);
    begin_reply(x, (dsup_term){ from->tag, from->tag_len });
    dsup_x_encode_term(x, dsup_term_of_x(reply));
    int rc = send_reply(from->node, &from->pid, x);
    dsup_term_scratch_release(x);
    dsup_from_discard(from);
    return rc;
}

static int decode_from(dsup_node *node, dsup_term t, dsup_from *from)
{
    dsup_term el[2];
    int i = 0;
    if (dsup_term_tuple(t, el, 2) != 2 || dsup_decode_pid(node, el[0].buf, &i, &from->pid) < 0)
        return -1;
    from->tag = el[1];
    return 0;
}

/* ---- deferred messages (suspended, or waiting for replace_state) -------------- */

static gs_extra *extra(dsup_proc *p)
{
    dsup_proc_ext *x = dsup_proc_ext_get(p);
    if (!x->beh)
        x->beh = dsup_xcalloc(1, sizeof(gs_extra));
    return x->beh;
}


static void defer(dsup_proc *p, dsup_term msg)
{
    uint32_t len = (uint32_t)msg.len;
    gs_extra *e = extra(p);
    if (e && dsup_buf_append(&e->deferred, &len, sizeof len) == 0)
        dsup_buf_append(&e->deferred, msg.buf, msg.len);
}

/* Re-queue what was held, in order, ahead of nothing else: it goes through
 * the local queue so it is handled from the loop like any message. */
static void release_deferred(dsup_proc *p)
{
    gs_extra *e = dsup_proc_beh(p);
    if (!e)
        return;
    size_t off = 0;
    const dsup_pid self = dsup_proc_pid(p);
    while (off + 4 <= e->deferred.len) {
        uint32_t len;
        memcpy(&len, e->deferred.data + off, 4);
        dsup_term t = { e->deferred.data + off + 4, len };
        dsup_proc_enqueue(p->node, &self, t);
        off += 4 + len;
    }
    dsup_buf_free(&e->deferred);
}

/* ---- sys ------------------------------------------------------------------------ */

#define encode_state dsup_gs_encode_state

static void encode_status(dsup_proc *p, ei_x_buff *x)
{
    const gs_extra *e = dsup_proc_beh(p);
    const dsup_sys_dbg *dbg = e ? e->dbg : NULL;
    const dsup_pid self = dsup_proc_pid(p);
    /* {status, Pid, {module, gen_server}, [PDict, SysState, Parent, Debug, Misc]} */
    ei_x_encode_tuple_header(x, 4);
    dsup_x_encode_atom(x, "status");
    dsup_x_encode_pid(x, &self);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "module");
    dsup_x_encode_atom(x, "gen_server");
    ei_x_encode_list_header(x, 5);
    /* process dictionary: what proc_lib would show */
    ei_x_encode_list_header(x, 1);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "$initial_call");
    ei_x_encode_tuple_header(x, 3);
    dsup_x_encode_atom(x, p->type->name);
    dsup_x_encode_atom(x, "init");
    ei_x_encode_long(x, 1);
    ei_x_encode_empty_list(x);
    dsup_x_encode_atom(x, p->suspended ? "suspended" : "running");
    dsup_pid parent = dsup_proc_parent(p);
    if (p->has_parent)
        dsup_x_encode_pid(x, &parent);
    else
        dsup_x_encode_pid(x, &self); /* unsupervised: its own parent, like gen_server:start */
    dsup_sys_dbg_encode_opts(dbg, &self, x);
    /* Misc, formatted like gen_server's format_status */
    ei_x_encode_list_header(x, 3);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "header");
    char hdr[400];
    snprintf(hdr, sizeof hdr, "Status for dsup C worker <%s.%u.%u> (%s)", self.node, self.num,
             self.serial, p->type->name);
    ei_x_encode_string(x, hdr);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "data");
    ei_x_encode_list_header(x, 3);
    ei_x_encode_tuple_header(x, 2);
    ei_x_encode_string(x, "Status");
    dsup_x_encode_atom(x, p->suspended ? "suspended" : "running");
    ei_x_encode_tuple_header(x, 2);
    ei_x_encode_string(x, "Parent");
    if (p->has_parent)
        dsup_x_encode_pid(x, &parent);
    else
        dsup_x_encode_pid(x, &self);
    ei_x_encode_tuple_header(x, 2);
    ei_x_encode_string(x, "Logged events");
    dsup_sys_dbg_encode_logged(dbg, x);
    ei_x_encode_empty_list(x);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "data");
    ei_x_encode_list_header(x, 1);
    ei_x_encode_tuple_header(x, 2);
    ei_x_encode_string(x, "State");
    encode_state(p, x);
    ei_x_encode_empty_list(x);
    ei_x_encode_empty_list(x);
    ei_x_encode_empty_list(x);
}

/* replace_state: a C worker cannot run an Erlang fun, so it asks the caller's
 * own node to: gen_server:call({rex, CallerNode}, {call, erlang, apply,
 * [Fun, [State]], GL}). The result comes back as {Ref, NewState}; meanwhile
 * other messages wait, as they would in a BEAM process inside sys. */
static int start_replace_state(dsup_proc *p, const dsup_from *from, dsup_term fun)
{
    gs_extra *e = extra(p);
    if (!e || !p->type->replace_state)
        return -1;
    dsup_node_make_ref(p->node, &e->rpc_ref);
    const dsup_pid self = dsup_proc_pid(p);
    ei_x_buff *x = dsup_term_scratch(p->node);
    ei_x_encode_tuple_header(x, 3);
    dsup_x_encode_atom(x, "$gen_call");
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_pid(x, &self);
    dsup_x_encode_ref(x, &e->rpc_ref);
    ei_x_encode_tuple_header(x, 5);
    dsup_x_encode_atom(x, "call");
    dsup_x_encode_atom(x, "erlang");
    dsup_x_encode_atom(x, "apply");
    ei_x_encode_list_header(x, 2);
    dsup_x_encode_term(x, fun);
    ei_x_encode_list_header(x, 1);
    encode_state(p, x);
    ei_x_encode_empty_list(x);
    ei_x_encode_empty_list(x);
    dsup_x_encode_pid(x, &self);
    int rc = dsup_send_named(p, "rex", from->pid.node, x);
    dsup_term_scratch_release(x);
    if (rc < 0)
        return -1;
    e->rpc_from = dsup_from_save(from);
    e->awaiting = 1;
    return 0;
}

static void finish_replace_state(dsup_proc *p, dsup_term result)
{
    gs_extra *e = dsup_proc_beh(p);
    e->awaiting = 0;
    ei_x_buff *x = dsup_term_scratch(p->node);
    dsup_term el[3];
    int ar;
    if (dsup_term_tagged(result, "badrpc", &ar, el, 3) && ar == 2) {
        /* As sys reports a gen_server's failing fun:
         * {error, {callback_failed, {gen_server, system_replace_state}, {Class, Reason}}}
         * from rex's {badrpc, {'EXIT', {Reason, Stack}}} (error) or
         * {badrpc, {'EXIT', Reason}} (exit). */
        dsup_term ex[3], rs[3];
        int ea;
        const char *cls = "error";
        dsup_term why = el[1];
        if (dsup_term_tagged(el[1], "EXIT", &ea, ex, 3) && ea == 2) {
            why = ex[1];
            cls = "exit";
            if (dsup_term_tuple(ex[1], rs, 2) == 2 && rs[1].len > 0 &&
                ((unsigned char)rs[1].buf[0] == ERL_LIST_EXT || (unsigned char)rs[1].buf[0] == ERL_NIL_EXT)) {
                why = rs[0];
                cls = "error";
            }
        }
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_atom(x, "error");
        ei_x_encode_tuple_header(x, 3);
        dsup_x_encode_atom(x, "callback_failed");
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_atom(x, "gen_server");
        dsup_x_encode_atom(x, "system_replace_state");
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_atom(x, cls);
        dsup_x_encode_term(x, why);
    } else if (p->type->replace_state(p, &p->state, result) != 0) {
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_atom(x, "error");
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_atom(x, "bad_state");
        dsup_x_encode_term(x, result);
    } else {
        /* success: {ok, NewState} or NewState, as the caller's sys expects */
        encode_state(p, x);
        dsup_saved_from *f = e->rpc_from;
        if (f)
            dsup_peer_sys_reply(p->node, &f->pid, (dsup_term){ f->tag, f->tag_len }, dsup_term_of_x(x));
        dsup_from_discard(f);
        e->rpc_from = NULL;
        dsup_term_scratch_release(x);
        release_deferred(p);
        return;
    }
    dsup_reply(e->rpc_from, x);
    e->rpc_from = NULL;
    dsup_term_scratch_release(x);
    release_deferred(p);
}

static void handle_system(dsup_proc *p, dsup_term from_t, dsup_term req)
{
    dsup_from from;
    if (decode_from(p->node, from_t, &from) < 0)
        return;
    ei_x_buff *x = dsup_term_scratch(p->node);
    begin_reply(x, from.tag);
    dsup_term el[4];
    int ar;
    int stop = 0;
    if (dsup_term_is_atom(req, "get_state")) {
        /* {ok, State} or State, as the caller's sys expects */
        x->index = 0;
        encode_state(p, x);
        dsup_peer_sys_reply(p->node, &from.pid, from.tag, dsup_term_of_x(x));
        dsup_term_scratch_release(x);
        return;
    } else if (dsup_term_is_atom(req, "get_status")) {
        encode_status(p, x);
    } else if (dsup_term_is_atom(req, "suspend")) {
        p->suspended = 1;
        dsup_x_encode_atom(x, "ok");
    } else if (dsup_term_is_atom(req, "resume")) {
        p->suspended = 0;
        dsup_x_encode_atom(x, "ok");
        release_deferred(p);
    } else if (dsup_term_tagged(req, "replace_state", &ar, el, 3) && ar == 2) {
        if (start_replace_state(p, &from, el[1]) == 0) {
            dsup_term_scratch_release(x);
            return; /* answered when the fun's result arrives */
        }
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_atom(x, "error");
        dsup_x_encode_atom(x, "not_supported");
    } else if (dsup_term_tagged(req, "terminate", &ar, el, 3) && ar == 2) {
        dsup_x_encode_atom(x, "ok");
        dsup_stop(p, el[1]);
        stop = 1;
    } else if (dsup_term_tagged(req, "debug", &ar, el, 3) && ar == 2) {
        gs_extra *e = extra(p);
        if (e)
            dsup_sys_debug_cmd(&e->dbg, el[1], x);
        else
            dsup_x_encode_atom(x, "unknown_debug");
    } else if (dsup_term_tagged(req, "change_code", &ar, el, 5)) {
        dsup_x_encode_atom(x, "ok");
    } else {
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_atom(x, "error");
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_atom(x, "unknown_system_msg");
        dsup_x_encode_term(x, req);
    }
    send_reply(p->node, &from.pid, x);
    dsup_term_scratch_release(x);
    (void)stop;
}

/* ---- dispatch --------------------------------------------------------------------- */

typedef void (*async_cb)(dsup_proc *self, void *state, dsup_term msg);

/* A cast or info with sys statistics or log on: {in, Msg}, the callback
 * timed, {noreply, State}, as gen_server reports them. */
static void debug_callback(dsup_proc *p, dsup_sys_dbg *dbg, dsup_term msg, async_cb cb, dsup_term arg)
{
    dsup_sys_dbg_in(dbg, p, msg);
    uint64_t t0 = uv_hrtime();
    if (cb)
        cb(p, p->state, arg);
    dsup_sys_dbg_work(dbg, uv_hrtime() - t0);
    dsup_sys_dbg_noreply(dbg, p);
}

static void gs_message(dsup_proc *p, dsup_term msg)
{
    const dsup_worker_type *t = p->type;
    dsup_term el[4];
    int ar;
    gs_extra *e = dsup_proc_beh(p);

    if (dsup_term_tagged(msg, "$gen_call", &ar, el, 4) && ar == 3) {
        if (p->suspended || (e && e->awaiting)) {
            defer(p, msg);
            return;
        }
        dsup_from from;
        if (decode_from(p->node, el[1], &from) < 0)
            return;
        if (!t->handle_call) {
            LOG_WARN("worker type %s has no handle_call; call dropped", t->name);
            return;
        }
        dsup_sys_dbg *dbg = e ? e->dbg : NULL;
        if (dbg)
            dsup_sys_dbg_in(dbg, p, msg);
        ei_x_buff *x = dsup_term_scratch(p->node);
        begin_reply(x, from.tag);
        int hdr = x->index;
        uint64_t t0 = uv_hrtime();
        dsup_call_ret r = t->handle_call(p, p->state, el[2], &from, x);
        uint64_t dt = uv_hrtime() - t0;
        dsup_hist_observe(&dsup_metrics_of(p->node)->worker_call, (double)dt / 1e9);
        int replied = r == DSUP_REPLY && x->index > hdr;
        if (replied)
            send_reply(p->node, &from.pid, x);
        if (dbg) {
            dsup_sys_dbg_work(dbg, dt);
            if (replied)
                dsup_sys_dbg_out(dbg, p, (dsup_term){ x->buff + hdr, (size_t)(x->index - hdr) }, el[1]);
            else
                dsup_sys_dbg_noreply(dbg, p);
        }
        dsup_term_scratch_release(x);
        return;
    }
    if (dsup_term_tagged(msg, "system", &ar, el, 4) && ar == 3) {
        handle_system(p, el[1], el[2]);
        return;
    }
    if (e && e->awaiting && dsup_term_tuple(msg, el, 2) == 2) {
        dsup_ref ref;
        int i = 0;
        if (dsup_decode_ref(p->node, el[0].buf, &i, &ref) == 0 && dsup_ref_eq(&ref, &e->rpc_ref)) {
            finish_replace_state(p, el[1]);
            return;
        }
    }
    if (p->suspended || (e && e->awaiting)) {
        defer(p, msg);
        return;
    }
    if (dsup_term_tagged(msg, "$gen_cast", &ar, el, 2) && ar == 2) {
        if (e && e->dbg)
            debug_callback(p, e->dbg, msg, t->handle_cast, el[1]);
        else if (t->handle_cast)
            t->handle_cast(p, p->state, el[1]);
        return;
    }
    if (p->has_parent && p->trap_exit && dsup_term_tagged(msg, "EXIT", &ar, el, 3) && ar == 3) {
        dsup_pid from;
        int i = 0;
        dsup_pid parent = dsup_proc_parent(p);
        if (dsup_decode_pid(p->node, el[1].buf, &i, &from) == 0 && dsup_pid_eq(&from, &parent)) {
            dsup_stop(p, el[2]);
            return;
        }
    }
    if (e && e->dbg)
        debug_callback(p, e->dbg, msg, t->handle_info, msg);
    else if (t->handle_info)
        t->handle_info(p, p->state, msg);
}

static void gs_exiting(dsup_proc *p, dsup_term reason)
{
    if (p->started && p->type->terminate)
        p->type->terminate(p, p->state, reason);
    p->state = NULL;
    /* p->type is the registry's copy, the first member of its entry. */
    gs_extra *e = dsup_proc_beh(p);
    if (e) {
        dsup_from_discard(e->rpc_from);
        dsup_sys_dbg_free(e->dbg);
        dsup_buf_free(&e->deferred);
        free(e);
        p->ext->beh = NULL; /* e came from p's extras */
    }
}

static const dsup_proc_class gen_server_class = { gs_message, gs_exiting };

/* ---- spawning ------------------------------------------------------------------------ */

/* The handoff term of the process whose init is running (dsup_handoff_state)
 * is kept on its node: saved and restored around init, since an init may
 * spawn other workers. */
int dsup_handoff_state(const dsup_proc *self, dsup_term *state)
{
    if (!self || self != self->node->handoff_proc || !self->node->handoff_term)
        return 0;
    if (state)
        *state = *self->node->handoff_term;
    return 1;
}

static int spawn(dsup_node *node, const char *type_name, const dsup_term *args, const dsup_term *handoff, dsup_proc *link_to,
                 int implicit, dsup_proc **out, ei_x_buff *reason)
{
    type_ent *te = find_type(type_name);
    if (!te)
        return DSUP_EUNKNOWN_TYPE;
    if (!node || !node->creation || !node->procs)
        return DSUP_ENOTUP;
    dsup_proc_set_class(node, &gen_server_class);
    dsup_proc *p = dsup_proc_new(node, te->type.state_size);
    if (!p)
        return DSUP_ENOMEM;
    p->type = &te->type;
    if (link_to) {
        p->has_parent = 1;
        p->parent_key = dsup_proc_key(link_to);
    }
    static const char nil[] = { 106 }; /* [] */
    dsup_term a = args ? *args : (dsup_term){ nil, 1 };
    int rc = 0;
    if (te->type.init) {
        const dsup_proc *outer_proc = node->handoff_proc;
        const dsup_term *outer_term = node->handoff_term;
        node->handoff_proc = p;
        node->handoff_term = handoff;
        p->in_callback++;
        rc = te->type.init(p, a, &p->state);
        p->in_callback--;
        node->handoff_proc = outer_proc;
        node->handoff_term = outer_term;
    }
    p->started = rc == 0 && !dsup_proc_stop_reason(p);
    if (!p->started) {
        if (reason) {
            reason->index = 0;
            if (dsup_proc_stop_reason(p))
                dsup_x_encode_term(reason, *dsup_proc_stop_reason(p));
            else
                dsup_x_encode_atom(reason, "init_failed");
        }
        /* Nobody knows this pid yet: end it without signals. */
        dsup_proc_exit(p, dsup_reason_atom(node, "normal"));
        return DSUP_EREFUSED;
    }
    if (link_to && implicit)
        p->parent_link = 1;
    else if (link_to) {
        dsup_pid pid = dsup_proc_pid(p);
        dsup_link(link_to, &pid);
    }
    *out = p;
    return 0;
}

int dsup_spawn_proc(dsup_node *node, const char *type_name, const dsup_term *args, dsup_proc *link_to,
                    dsup_proc **out, ei_x_buff *reason)
{
    return spawn(node, type_name, args, NULL, link_to, 0, out, reason);
}

int dsup_spawn_child(const char *type_name, const dsup_term *args, dsup_proc *parent, dsup_proc **out,
                     ei_x_buff *reason)
{
    return spawn(parent->node, type_name, args, NULL, parent, 1, out, reason);
}

int dsup_spawn_child_handoff(const char *type_name, const dsup_term *args, const dsup_term *handoff,
                             dsup_proc *parent, dsup_proc **out, ei_x_buff *reason)
{
    return spawn(parent->node, type_name, args, handoff, parent, 1, out, reason);
}

int dsup_spawn(dsup_node *node, const char *type, const dsup_term *args, dsup_proc *link_to, dsup_pid *pid,
               ei_x_buff *reason)
{
    dsup_proc *p;
    /* link_to must run on that node */
    int rc = link_to && link_to->node != node ? DSUP_EINVAL : dsup_spawn_proc(node, type, args, link_to, &p, reason);
    if (rc < 0) {
        if (rc == DSUP_EUNKNOWN_TYPE && reason) {
            reason->index = 0;
            ei_x_encode_tuple_header(reason, 2);
            dsup_x_encode_atom(reason, "unknown_worker");
            dsup_x_encode_atom(reason, type);
        } else if (rc != DSUP_EREFUSED && reason) {
            reason->index = 0;
            dsup_x_encode_atom(reason, dsup_err_name(rc));
        }
        return rc;
    }
    *pid = dsup_proc_pid(p);
    return 0;
}

/* Messages a worker holds back (suspended, or awaiting replace_state): its
 * queue as :erlang.process_info(P, :message_queue_len) would count it. */
size_t dsup_gs_queue_len(const dsup_proc *p)
{
    const gs_extra *e = dsup_proc_beh(p);
    size_t n = 0;
    for (size_t off = 0; e && off + 4 <= e->deferred.len; n++) {
        uint32_t len;
        memcpy(&len, e->deferred.data + off, 4);
        off += 4 + len;
    }
    return n;
}
