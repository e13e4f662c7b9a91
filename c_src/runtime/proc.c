/* proc.c — the local process table and the signals between processes.
 *
 * Pids are (num:15, serial:13) like a BEAM's, packed into a 28-bit key and
 * kept in an open-addressing S->table (linear probing, backward-shift delete),
 * so a million processes cost one pointer slot each. */
#include "proc.h"
#include "xalloc.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "intern.h"
#include "log.h"
#include "node.h"
#include "node_hooks.h"
#include "term.h"

#define KEY_BITS 28
#define KEY_MASK ((1u << KEY_BITS) - 1)

typedef struct name_ent {
    const char *name;
    dsup_proc *p;
} name_ent;

/* One node's processes (node->procs). */
struct dsup_procs {
    dsup_proc **table;
    size_t tcap, tcount;
    uint32_t next_key;
    name_ent *names;
    size_t ncap, ncount;
    const dsup_proc_class *cls;
    dsup_buf queue[2];            /* the local signal queue, two buffers swapped */
    int qcur;
    int running;                  /* the queue is being drained */
    uint64_t unlink_id;
    dsup_ivec selves;             /* dsup_pid *: the pids dsup_self handed out (self_kept) */
    const dsup_proc *last_self;   /* the process dsup_self answered last, */
    const dsup_pid *last_self_pid;/* ... and its pid (a service asks in loops) */
};

static size_t slot_of(uint32_t key, size_t cap) { return (key * 2654435761u) & (cap - 1); }

void dsup_proc_table_init(dsup_node *node)
{
    struct dsup_procs *S = node->procs = dsup_xcalloc(1, sizeof *S);
    S->next_key = 1;
    S->unlink_id = 1;
    S->tcap = 1024;
    S->table = dsup_xcalloc(S->tcap, sizeof *S->table);
    S->ncap = 64;
    S->names = dsup_xcalloc(S->ncap, sizeof *S->names);
}

size_t dsup_proc_count(const dsup_node *node) { return node->procs->tcount; }

/* At node close, once every process has ended. */
void dsup_proc_table_free(dsup_node *node)
{
    struct dsup_procs *S = node->procs;
    if (!S)
        return;
    assert(S->tcount == 0); /* dsup_node_free ended them, services still there */
    free(S->table);
    for (size_t i = 0; i < S->ncap; i++)
        if (S->names[i].name)
            dsup_intern_release(S->names[i].name);
    free(S->names);
    dsup_ivec_free(&S->selves); /* empty: each process dropped its own */
    dsup_buf_free(&S->queue[0]);
    dsup_buf_free(&S->queue[1]);
    free(S);
    node->procs = NULL;
}

static void table_put(struct dsup_procs *S, dsup_proc *p)
{
    assert(S->tcount < S->tcap); /* dsup_proc_new grows at 3/4: a free slot ends every probe */
    size_t i = slot_of(dsup_proc_key(p), S->tcap);
    while (S->table[i])
        i = (i + 1) & (S->tcap - 1);
    S->table[i] = p;
    S->tcount++;
}

static int table_grow(struct dsup_procs *S)
{
    size_t oc = S->tcap;
    dsup_proc **old = S->table;
    dsup_proc **nt = dsup_xcalloc(oc * 2, sizeof *nt);
    S->table = nt;
    S->tcap = oc * 2;
    S->tcount = 0;
    for (size_t i = 0; i < oc; i++)
        if (old[i])
            table_put(S, old[i]);
    free(old);
    return 0;
}

static dsup_proc *table_get(const struct dsup_procs *S, uint32_t key)
{
    size_t i = slot_of(key, S->tcap);
    while (S->table[i]) {
        if (dsup_proc_key(S->table[i]) == key)
            return S->table[i];
        i = (i + 1) & (S->tcap - 1);
    }
    return NULL;
}

static void table_del(struct dsup_procs *S, uint32_t key)
{
    size_t i = slot_of(key, S->tcap);
    while (S->table[i] && dsup_proc_key(S->table[i]) != key)
        i = (i + 1) & (S->tcap - 1);
    assert(S->table[i]); /* only live entries are deleted, once */
    if (!S->table[i])
        return;
    S->table[i] = NULL;
    S->tcount--;
    /* Backward-shift the cluster that follows so lookups need no tombstones. */
    size_t j = i;
    for (;;) {
        j = (j + 1) & (S->tcap - 1);
        if (!S->table[j])
            break;
        size_t home = slot_of(dsup_proc_key(S->table[j]), S->tcap);
        int movable = (i <= j) ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) {
            S->table[i] = S->table[j];
            S->table[j] = NULL;
            i = j;
        }
    }
}

void dsup_proc_set_class(dsup_node *node, const dsup_proc_class *cls) { node->procs->cls = cls; }

dsup_proc *dsup_proc_new(dsup_node *node, size_t extra)
{
    struct dsup_procs *S = node->procs;
    if ((S->tcount + 1) * 4 > S->tcap * 3 && table_grow(S))
        return NULL;
    size_t base = (sizeof(dsup_proc) + 7) & ~(size_t)7;
    dsup_proc *p = dsup_xcalloc(1, base + extra);
    /* Next free key; wraps like the BEAM's pid counter. */
    for (;;) {
        uint32_t k = S->next_key;
        S->next_key = (S->next_key + 1) & KEY_MASK;
        if (S->next_key == 0)
            S->next_key = 1;
        if (!table_get(S, k)) {
            p->key = k;
            break;
        }
    }
    p->node = node;
    if (extra) {
        p->state = (char *)p + base;
        p->state_inline = 1;
    }
    table_put(S, p);
    /* pid <-> slot: the pid's number and serial are the key. */
    assert(table_get(S, dsup_proc_key(p)) == p);
    return p;
}

dsup_proc *dsup_proc_lookup(const dsup_node *node, const dsup_pid *pid)
{
    if (pid->node != node->name || pid->creation != node->creation || pid->num > 0x7fff ||
        pid->serial > 0x1fff)
        return NULL;
    dsup_proc *p = table_get(node->procs, pid->num | (pid->serial << 15));
    return p && !p->dead ? p : NULL;
}

void dsup_proc_foreach(dsup_node *node, void (*fn)(dsup_proc *p, void *arg), void *arg)
{
    struct dsup_procs *S = node->procs;
    /* Collect first: fn may end processes and reshape the table. */
    size_t n = 0;
    dsup_proc **all = dsup_xmalloc((S->tcount + 1) * sizeof *all);
    for (size_t i = 0; i < S->tcap; i++)
        if (S->table[i])
            all[n++] = S->table[i];
    uint32_t *keys = dsup_xmalloc((n + 1) * sizeof *keys);
    for (size_t i = 0; i < n; i++)
        keys[i] = dsup_proc_key(all[i]);
    for (size_t i = 0; i < n; i++) {
        dsup_proc *p = table_get(S, keys[i]);
        if (p && p == all[i] && !p->dead)
            fn(p, arg);
    }
    free(keys);
    free(all);
}

/* ---- registered names --------------------------------------------------- */

static size_t name_slot(const char *name, size_t cap) { return ((uintptr_t)name >> 4) * 2654435761u & (cap - 1); }

dsup_proc *dsup_proc_whereis(const dsup_node *node, const char *name)
{
    const struct dsup_procs *S = node->procs;
    if (!name)
        return NULL;
    size_t i = name_slot(name, S->ncap);
    while (S->names[i].name) {
        if (S->names[i].name == name)
            return S->names[i].p;
        i = (i + 1) & (S->ncap - 1);
    }
    return NULL;
}

static void names_put(struct dsup_procs *S, const char *name, dsup_proc *p)
{
    size_t i = name_slot(name, S->ncap);
    while (S->names[i].name)
        i = (i + 1) & (S->ncap - 1);
    S->names[i].name = name;
    S->names[i].p = p;
    S->ncount++;
}

int dsup_proc_register(dsup_proc *p, const char *name)
{
    /* The registry holds the name: a child name a peer chose is freed with
     * the process (it counts against that peer's quota meanwhile). */
    struct dsup_procs *S = p->node->procs;
    name = dsup_intern_peer(p->node->names, name, strlen(name));
    if (!name || p->registered || dsup_proc_whereis(p->node, name))
        return -1;
    if ((S->ncount + 1) * 2 > S->ncap) {
        name_ent *old = S->names;
        size_t oc = S->ncap;
        S->names = dsup_xcalloc(oc * 2, sizeof *S->names);
        S->ncap = oc * 2;
        S->ncount = 0;
        for (size_t i = 0; i < oc; i++)
            if (old[i].name)
                names_put(S, old[i].name, old[i].p);
        free(old);
    }
    names_put(S, name, p);
    dsup_intern_hold(name);
    p->registered = 1;
    return 0;
}

static void unregister(dsup_proc *p)
{
    if (!p->registered)
        return;
    struct dsup_procs *S = p->node->procs;
    /* Rebuild the small name table without this entry (names are few). */
    name_ent *old = S->names;
    size_t oc = S->ncap;
    S->names = dsup_xcalloc(oc, sizeof *S->names);
    S->ncount = 0;
    for (size_t i = 0; i < oc; i++) {
        if (old[i].name && old[i].p != p)
            names_put(S, old[i].name, old[i].p);
        else if (old[i].name)
            dsup_intern_release(old[i].name);
    }
    free(old);
    p->registered = 0;
}

/* ---- the local signal queue ---------------------------------------------- */

enum { Q_MSG = 1, Q_EXIT_LINK, Q_EXIT2, Q_EXIT_CHILD };

typedef struct qrec {
    uint32_t type;
    uint32_t len;
    dsup_pid to;
    dsup_pid from;
} qrec;


static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

static int enqueue(dsup_node *node, uint32_t type, const dsup_pid *to, const dsup_pid *from, dsup_term t)
{
    struct dsup_procs *S = node->procs;
    dsup_buf *q = &S->queue[S->qcur];
    size_t need = align8(sizeof(qrec) + t.len);
    if (dsup_buf_reserve(q, need))
        return -1;
    qrec *r = (qrec *)(void *)(q->data + q->len);
    r->type = type;
    r->len = (uint32_t)t.len;
    r->to = *to;
    if (from)
        r->from = *from;
    else
        memset(&r->from, 0, sizeof r->from);
    memcpy(r + 1, t.buf, t.len);
    q->len += need;
    dsup_node_wake(node);
    return 0;
}

int dsup_proc_enqueue(dsup_node *node, const dsup_pid *to, dsup_term msg)
{
    return enqueue(node, Q_MSG, to, NULL, msg);
}

size_t dsup_proc_queue_len(const dsup_node *node)
{
    const struct dsup_procs *S = node->procs;
    size_t n = 0;
    for (int b = 0; b < 2; b++)
        for (size_t off = 0; off < S->queue[b].len; n++)
            off += align8(sizeof(qrec) + ((const qrec *)(const void *)(S->queue[b].data + off))->len);
    return n;
}

int dsup_proc_run_queue(dsup_node *node)
{
    struct dsup_procs *S = node->procs;
    int ran = 0;
    if (S->running)
        return 0; /* a handler that ends up here must not swap the buffer being read */
    S->running = 1;
    while (S->queue[S->qcur].len) {
        /* Swap so that handlers enqueue into the other buffer while we read. */
        dsup_buf *q = &S->queue[S->qcur];
        S->qcur ^= 1;
        for (size_t off = 0; off < q->len;) {
            qrec *r = (qrec *)(void *)(q->data + off);
            dsup_term t = { (const char *)(r + 1), r->len };
            dsup_proc *p = dsup_proc_lookup(node, &r->to);
            if (p) {
                if (r->type == Q_MSG)
                    dsup_proc_deliver(p, t);
                else
                    dsup_proc_sig_exit(p, &r->from, t,
                                       r->type == Q_EXIT_LINK ? 1 : r->type == Q_EXIT_CHILD ? 2 : 0);
            }
            off += align8(sizeof(qrec) + r->len);
            ran = 1;
        }
        q->len = 0;
    }
    S->running = 0;
    return ran;
}

/* ---- sending -------------------------------------------------------------- */

static int is_local(const dsup_node *node, const dsup_pid *pid) { return pid->node == node->name; }

int dsup_proc_send(dsup_node *node, const dsup_pid *from, const dsup_pid *to, dsup_term msg)
{
    if (is_local(node, to))
        return dsup_proc_enqueue(node, to, msg);
    return dsup_node_send_to_pid(node, to, msg);
}

static void send_exit_signal(dsup_node *node, const dsup_pid *from, const dsup_pid *to, dsup_term reason,
                             int is_link)
{
    if (is_local(node, to)) {
        enqueue(node, is_link ? Q_EXIT_LINK : Q_EXIT2, to, from, reason);
        return;
    }
    dsup_ctrl c;
    memset(&c, 0, sizeof c);
    c.op = is_link ? DSUP_OP_EXIT : DSUP_OP_EXIT2;
    dsup_pid_to_wire(from, &c.from);
    dsup_pid_to_wire(to, &c.to);
    c.reason.ptr = reason.buf;
    c.reason.len = (uint32_t)reason.len;
    dsup_node_send_ctrl(node, to->node, &c);
}

/* ---- links and monitors ------------------------------------------------------ */

static uint64_t mix(uint64_t h) { h ^= h >> 33; h *= 0xff51afd7ed558ccdULL; return h ^ (h >> 33); }

static const void *self_key(const void *e) { return e; }
static uint64_t pid_hash(const void *k)
{
    const dsup_pid *p = k;
    return mix((uintptr_t)p->node ^ ((uint64_t)p->num << 32) ^ ((uint64_t)p->serial << 17) ^ p->creation);
}
static int pid_eq(const void *a, const void *b) { return dsup_pid_eq(a, b); }

static const void *mon_key(const void *e) { return &((const dsup_monitor_rec *)e)->ref; }
static uint64_t ref_hash(const void *k)
{
    const dsup_ref *r = k;
    return mix((uintptr_t)r->node ^ ((uint64_t)r->n[0] << 32) ^ r->n[1] ^ ((uint64_t)r->n[2] << 13));
}
static int ref_eq(const void *a, const void *b) { return dsup_ref_eq(a, b); }

static const dsup_ivec_type link_t = { sizeof(dsup_pid), pid_hash, self_key, pid_eq };
static const dsup_ivec_type mon_t = { sizeof(dsup_monitor_rec), ref_hash, mon_key, ref_eq };

/* ---- dsup_self ------------------------------------------------------------------ */

/* A process keeps no pid (dsup_proc_pid builds it from its key), but
 * dsup_self hands out a pointer valid while the process lives: the few
 * processes that ask (services, workers calling it) get a copy here, freed
 * when they end (self_kept). */
static const void *kept_pid_key(const void *e) { return *(const dsup_pid *const *)e; }
static const dsup_ivec_type kept_pid_t = { sizeof(dsup_pid *), pid_hash, kept_pid_key, pid_eq };

const dsup_pid *dsup_self(const dsup_proc *self)
{
    struct dsup_procs *S = self->node->procs;
    if (S->last_self == self)
        return S->last_self_pid;
    dsup_pid pid = dsup_proc_pid(self);
    dsup_pid *kept;
    if (self->self_kept) {
        long i = dsup_ivec_find(&S->selves, &kept_pid_t, &pid);
        assert(i >= 0);
        kept = *(dsup_pid **)dsup_ivec_at(&S->selves, &kept_pid_t, (uint32_t)i);
    } else {
        kept = dsup_xmalloc(sizeof *kept);
        *kept = pid;
        (void)dsup_ivec_push(&S->selves, &kept_pid_t, &kept); /* allocates or aborts (xalloc.h) */
        ((dsup_proc *)self)->self_kept = 1; /* every process is allocated mutable */
    }
    S->last_self = self;
    S->last_self_pid = kept;
    return kept;
}

/* At p's end: its dsup_self pid goes. */
static void drop_kept_pid(struct dsup_procs *S, const dsup_proc *p, const dsup_pid *pid)
{
    if (S->last_self == p)
        S->last_self = NULL;
    if (!p->self_kept)
        return;
    long i = dsup_ivec_find(&S->selves, &kept_pid_t, pid);
    assert(i >= 0);
    free(*(dsup_pid **)dsup_ivec_at(&S->selves, &kept_pid_t, (uint32_t)i));
    dsup_ivec_remove_at(&S->selves, &kept_pid_t, (uint32_t)i);
}

dsup_proc_ext *dsup_proc_ext_get(dsup_proc *p)
{
    if (!p->ext)
        p->ext = dsup_xcalloc(1, sizeof *p->ext);
    return p->ext;
}

/* A process's link and monitor vectors: NULL (empty) until its extras exist.
 * Only pushes create the extras (dsup_proc_ext_get). */
static dsup_ivec *links_of(const dsup_proc *p) { return p->ext ? &p->ext->links : NULL; }
static dsup_ivec *watchers_of(const dsup_proc *p) { return p->ext ? &p->ext->watchers : NULL; }
static dsup_ivec *watching_of(const dsup_proc *p) { return p->ext ? &p->ext->watching : NULL; }
static uint32_t vec_len(const dsup_ivec *v) { return v ? dsup_ivec_len(v) : 0; }

uint32_t dsup_proc_link_count(const dsup_proc *p) { return vec_len(links_of(p)); }
uint32_t dsup_proc_watcher_count(const dsup_proc *p) { return vec_len(watchers_of(p)); }

#define LINK_AT(p, i) ((dsup_pid *)dsup_ivec_at(links_of(p), &link_t, (i)))
#define MON_AT(v, i) ((dsup_monitor_rec *)dsup_ivec_at((v), &mon_t, (i)))

/* Link and monitor records hold the names they point at (intern.h). */
static int add_link(dsup_proc *p, const dsup_pid *other)
{
    dsup_ivec *v = &dsup_proc_ext_get(p)->links;
    if (dsup_ivec_find(v, &link_t, other) >= 0)
        return 0;
    if (dsup_ivec_push(v, &link_t, other) < 0)
        return -1;
    dsup_intern_hold(other->node);
    return 0;
}

static int remove_link(dsup_proc *p, const dsup_pid *other)
{
    dsup_ivec *v = links_of(p);
    long i = v ? dsup_ivec_find(v, &link_t, other) : -1;
    if (i < 0)
        return 0;
    dsup_intern_release(LINK_AT(p, (uint32_t)i)->node);
    dsup_ivec_remove_at(v, &link_t, (uint32_t)i);
    return 1;
}

static void mon_hold(const dsup_monitor_rec *m)
{
    dsup_intern_hold(m->pid.node);
    dsup_intern_hold(m->ref.node);
    dsup_intern_hold(m->name);
    dsup_intern_hold(m->name_node);
}

static void mon_release(const dsup_monitor_rec *m)
{
    dsup_intern_release(m->pid.node);
    dsup_intern_release(m->ref.node);
    dsup_intern_release(m->name);
    dsup_intern_release(m->name_node);
}

static int push_monitor(dsup_ivec *v, const dsup_monitor_rec *m)
{
    if (dsup_ivec_push(v, &mon_t, m) < 0)
        return -1;
    mon_hold(m);
    return 0;
}

/* Remove the monitor with this ref from v (NULL: none); 1 and a copy in
 * *out if found. `keep`: an emptied v stays allocated. */
static int take_monitor_keep(dsup_ivec *v, const dsup_ref *ref, dsup_monitor_rec *out, int keep)
{
    long i = v ? dsup_ivec_find(v, &mon_t, ref) : -1;
    if (i < 0)
        return 0;
    if (out)
        *out = *MON_AT(v, (uint32_t)i);
    /* Released now, freed at the end of the turn: *out stays usable. */
    mon_release(MON_AT(v, (uint32_t)i));
    if (keep)
        dsup_ivec_remove_at_keep(v, &mon_t, (uint32_t)i);
    else
        dsup_ivec_remove_at(v, &mon_t, (uint32_t)i);
    return 1;
}

static int take_monitor(dsup_ivec *v, const dsup_ref *ref, dsup_monitor_rec *out)
{
    return take_monitor_keep(v, ref, out, 0);
}

/* ---- signals arriving at a local process ------------------------------------- */

void dsup_proc_sig_link(dsup_proc *p, const dsup_pid *from) { add_link(p, from); }

void dsup_proc_sig_unlink(dsup_proc *p, const dsup_pid *from) { remove_link(p, from); }

/* {'EXIT', From, Reason} into the mailbox of a trapping process. */
static void deliver_exit_msg(dsup_proc *p, const dsup_pid *from, dsup_term reason)
{
    ei_x_buff *x = dsup_term_scratch(p->node);
    ei_x_encode_tuple_header(x, 3);
    dsup_x_encode_atom(x, "EXIT");
    dsup_x_encode_pid(x, from);
    dsup_x_encode_term(x, reason);
    dsup_term t = { x->buff, (size_t)x->index };
    dsup_proc_deliver(p, t);
    dsup_term_scratch_release(x);
}

void dsup_proc_sig_exit(dsup_proc *p, const dsup_pid *from, dsup_term reason, int is_link)
{
    if (p->dead)
        return;
    if (is_link == 1 && !remove_link(p, from)) {
        /* The implicit link to a supervising parent (dsup_spawn_child). */
        dsup_pid parent = dsup_proc_parent(p);
        if (!(p->parent_link && dsup_pid_eq(from, &parent)))
            return; /* no such link (already unlinked): the signal is void */
        p->parent_link = 0;
    }
    int is_kill = dsup_term_is_atom(reason, "kill");
    if (is_kill && !is_link) {
        dsup_proc_exit(p, dsup_reason_atom(p->node, "killed"));
        return;
    }
    if (p->trap_exit) {
        deliver_exit_msg(p, from, reason);
        return;
    }
    if (dsup_term_is_atom(reason, "normal")) {
        dsup_pid self = dsup_proc_pid(p);
        if (!is_link && dsup_pid_eq(from, &self))
            dsup_proc_exit(p, reason);
        return;
    }
    dsup_proc_exit(p, reason);
}

void dsup_proc_sig_monitor(dsup_proc *p, const dsup_pid *watcher, const dsup_ref *ref, const char *by_name)
{
    dsup_monitor_rec m;
    memset(&m, 0, sizeof m);
    m.ref = *ref;
    m.pid = *watcher;
    m.name = by_name;
    m.name_node = by_name ? p->node->name : NULL;
    push_monitor(&dsup_proc_ext_get(p)->watchers, &m);
}

void dsup_proc_sig_demonitor(dsup_proc *p, const dsup_pid *watcher, const dsup_ref *ref)
{
    /* Every GenServer.call monitors the callee and demonitors it. A
     * registered process (an instance, a named server: few, and called by
     * name all the time, on every start) keeps its emptied watchers vector,
     * not a malloc and a free per call; any other (a child: its name is a
     * pg group) gives it back, so a child called once costs no more than
     * before (README, Memory per child). */
    take_monitor_keep(watchers_of(p), ref, NULL, p->registered);
}

/* {'DOWN', Ref, process, PidOrNameTuple, Reason} */
static void encode_down(ei_x_buff *x, const dsup_ref *ref, const dsup_pid *who, const char *who_name,
                        const char *who_node, dsup_term reason)
{
    ei_x_encode_tuple_header(x, 5);
    dsup_x_encode_atom(x, "DOWN");
    dsup_x_encode_ref(x, ref);
    dsup_x_encode_atom(x, "process");
    if (who_name) {
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_atom(x, who_name);
        dsup_x_encode_atom(x, who_node);
    } else {
        dsup_x_encode_pid(x, who);
    }
    dsup_x_encode_term(x, reason);
}

void dsup_proc_sig_down(dsup_proc *p, const dsup_ref *ref, const dsup_pid *who, const char *who_name,
                        const char *who_node, dsup_term reason)
{
    if (!take_monitor(watching_of(p), ref, NULL))
        return; /* demonitored meanwhile */
    ei_x_buff *x = dsup_term_scratch(p->node);
    encode_down(x, ref, who, who_name, who_node, reason);
    dsup_term t = { x->buff, (size_t)x->index };
    dsup_proc_deliver(p, t);
    dsup_term_scratch_release(x);
}

/* ---- delivering ------------------------------------------------------------ */

void dsup_proc_deliver(dsup_proc *p, dsup_term msg)
{
    if (p->dead)
        return;
    p->in_callback++;
    p->node->procs->cls->message(p, msg);
    p->in_callback--;
    dsup_proc_after_callback(p);
}

void dsup_proc_after_callback(dsup_proc *p)
{
    const dsup_term *why = dsup_proc_stop_reason(p);
    if (p->in_callback == 0 && why && !p->dead)
        dsup_proc_exit(p, *why);
}

/* ---- process exit ---------------------------------------------------------- */

void dsup_proc_exit(dsup_proc *p, dsup_term reason)
{
    if (p->dead)
        return;
    p->dead = 1;
    dsup_node *node = p->node;
    struct dsup_procs *S = node->procs;
    const dsup_pid self = dsup_proc_pid(p);
    /* The reason may live in p's extras (stop_reason) or a scratch buffer
     * that the class's exiting hook reuses: keep our own copy until done. */
    dsup_term r = dsup_term_dup(reason);
    LOG_DEBUG("process <%u.%u> (%s) exits", self.num, self.serial, p->type ? p->type->name : "-");
    if (S->cls->exiting)
        S->cls->exiting(p, r);
    if (p->pg_memb)
        dsup_proc_run_exit_hook(p); /* pg: the process leaves its groups */

    /* The vectors are read after the exiting hook: a terminate callback
     * may have linked or monitored (and so made the extras). */
    for (uint32_t i = 0; i < vec_len(links_of(p)); i++)
        send_exit_signal(node, &self, LINK_AT(p, i), r, 1);
    if (p->parent_link) {
        dsup_pid parent = dsup_proc_parent(p);
        enqueue(node, Q_EXIT_CHILD, &parent, &self, r);
    }

    for (uint32_t i = 0; i < vec_len(watchers_of(p)); i++) {
        dsup_monitor_rec *m = MON_AT(watchers_of(p), i);
        if (is_local(node, &m->pid)) {
            dsup_proc *w = dsup_proc_lookup(node, &m->pid);
            if (!w)
                continue;
            if (!take_monitor(watching_of(w), &m->ref, NULL))
                continue;
            ei_x_buff *x = dsup_term_scratch(node);
            encode_down(x, &m->ref, &self, m->name, m->name_node, r);
            dsup_term t = { x->buff, (size_t)x->index };
            dsup_proc_enqueue(node, &m->pid, t);
            dsup_term_scratch_release(x);
        } else {
            dsup_ctrl c;
            memset(&c, 0, sizeof c);
            c.op = DSUP_OP_MONITOR_P_EXIT;
            if (m->name) {
                c.from_is_name = 1;
                c.from_name.ptr = m->name;
                c.from_name.len = (uint32_t)strlen(m->name);
            } else {
                dsup_pid_to_wire(&self, &c.from);
            }
            dsup_pid_to_wire(&m->pid, &c.to);
            ei_x_buff *x = dsup_term_scratch(node);
            dsup_x_encode_ref(x, &m->ref);
            c.ref.ptr = x->buff;
            c.ref.len = (uint32_t)x->index;
            c.reason.ptr = r.buf;
            c.reason.len = (uint32_t)r.len;
            dsup_node_send_ctrl(node, m->pid.node, &c);
            dsup_term_scratch_release(x);
        }
    }

    for (uint32_t i = 0; i < vec_len(watching_of(p)); i++) {
        dsup_monitor_rec *m = MON_AT(watching_of(p), i);
        if (m->name ? m->name_node == node->name : is_local(node, &m->pid)) {
            dsup_proc *t = m->name ? dsup_proc_whereis(node, m->name) : dsup_proc_lookup(node, &m->pid);
            if (t)
                dsup_proc_sig_demonitor(t, &self, &m->ref);
        } else {
            dsup_ctrl c;
            memset(&c, 0, sizeof c);
            c.op = DSUP_OP_DEMONITOR_P;
            dsup_pid_to_wire(&self, &c.from);
            if (m->name) {
                c.to_is_name = 1;
                c.to_name.ptr = m->name;
                c.to_name.len = (uint32_t)strlen(m->name);
            } else {
                dsup_pid_to_wire(&m->pid, &c.to);
            }
            ei_x_buff *x = dsup_term_scratch(node);
            dsup_x_encode_ref(x, &m->ref);
            c.ref.ptr = x->buff;
            c.ref.len = (uint32_t)x->index;
            dsup_node_send_ctrl(node, m->name ? m->name_node : m->pid.node, &c);
            dsup_term_scratch_release(x);
        }
    }

    unregister(p);
    drop_kept_pid(S, p, &self);
    assert(table_get(S, dsup_proc_key(p)) == p);
    table_del(S, dsup_proc_key(p));
    (void)S;
    dsup_proc_ext *x = p->ext;
    if (x) {
        for (uint32_t i = 0; i < dsup_ivec_len(&x->links); i++)
            dsup_intern_release(LINK_AT(p, i)->node);
        for (uint32_t i = 0; i < dsup_ivec_len(&x->watchers); i++)
            mon_release(MON_AT(&x->watchers, i));
        for (uint32_t i = 0; i < dsup_ivec_len(&x->watching); i++)
            mon_release(MON_AT(&x->watching, i));
        dsup_ivec_free(&x->links);
        dsup_ivec_free(&x->watchers);
        dsup_ivec_free(&x->watching);
        free(x->stop_reason);
        free(x); /* the class's exiting hook freed its own extras (beh) */
    }
    dsup_term_free(&r);
    free(p);
}

/* ---- node loss ---------------------------------------------------------------- */

/* The signals below may end p (a DOWN can make it stop, a broken link
 * kills it), which frees it: look it up again after each one. */
static void node_down_one(dsup_proc *p, void *arg)
{
    const char *node = arg;
    dsup_node *self_node = p->node;
    dsup_pid self = dsup_proc_pid(p);
    /* Monitors others on that node held on us: gone with the node. */
    for (uint32_t i = 0; i < vec_len(watchers_of(p));) {
        if (MON_AT(watchers_of(p), i)->pid.node == node) {
            mon_release(MON_AT(watchers_of(p), i));
            dsup_ivec_remove_at(watchers_of(p), &mon_t, i);
        } else
            i++;
    }
    /* Monitors we held on that node's processes fire with noconnection. */
    for (uint32_t i = 0; (p = dsup_proc_lookup(self_node, &self)) && i < vec_len(watching_of(p));) {
        dsup_monitor_rec m = *MON_AT(watching_of(p), i);
        const char *mnode = m.name ? m.name_node : m.pid.node;
        if (mnode == node) {
            dsup_proc_sig_down(p, &m.ref, &m.pid, m.name, m.name_node, dsup_reason_atom(self_node, "noconnection"));
            /* that element is gone (the last moved into i), or p is */
        } else {
            i++;
        }
    }
    /* Links to that node break with noconnection. */
    for (uint32_t i = 0; (p = dsup_proc_lookup(self_node, &self)) && i < vec_len(links_of(p));) {
        if (LINK_AT(p, i)->node == node) {
            dsup_pid other = *LINK_AT(p, i);
            dsup_proc_sig_exit(p, &other, dsup_reason_atom(self_node, "noconnection"), 1);
        } else {
            i++;
        }
    }
}

void dsup_proc_node_down(dsup_node *node, const char *peer) { dsup_proc_foreach(node, node_down_one, (void *)peer); }

/* ---- public API pieces ---------------------------------------------------------- */

dsup_node *dsup_proc_node(const dsup_proc *self) { return self->node; }
void *dsup_state(const dsup_proc *self) { return self->state; }
const dsup_worker_type *dsup_type(const dsup_proc *self) { return self->type; }
void dsup_trap_exit(dsup_proc *self, int on) { self->trap_exit = on ? 1 : 0; }

void dsup_stop(dsup_proc *self, dsup_term reason)
{
    if (reason.len && (unsigned char)reason.buf[0] == 131) {
        reason.buf++;
        reason.len--;
    }
    dsup_term *copy = dsup_xmalloc(sizeof *copy + reason.len);
    memcpy(copy + 1, reason.buf, reason.len);
    copy->buf = (const char *)(copy + 1);
    copy->len = reason.len;
    dsup_proc_ext *x = dsup_proc_ext_get(self);
    free(x->stop_reason);
    x->stop_reason = copy;
    if (self->in_callback == 0)
        dsup_proc_after_callback(self);
}

void dsup_stop_atom(dsup_proc *self, const char *reason) { dsup_stop(self, dsup_reason_atom(self->node, reason)); }

int dsup_send(dsup_proc *self, const dsup_pid *to, const ei_x_buff *msg)
{
    /* Without self, the node whose name table holds the pid's node name. */
    if (!self)
        return dsup_proc_send(dsup_node_of_name(to->node), NULL, to, dsup_term_of_x(msg));
    dsup_pid me = dsup_proc_pid(self);
    return dsup_proc_send(self->node, &me, to, dsup_term_of_x(msg));
}

int dsup_send_named(dsup_proc *self, const char *name, const char *node, const ei_x_buff *msg)
{
    if (!self)
        return DSUP_EINVAL; /* the sending process says which node sends */
    dsup_node *me = self->node;
    dsup_term t = dsup_term_of_x(msg);
    const char *n = node ? dsup_intern_peer(me->names, node, strlen(node)) : me->name;
    if (!n)
        return DSUP_EINVAL;
    if (n == me->name) {
        dsup_proc *p = dsup_proc_whereis(me, dsup_intern_find(me->names, name, strlen(name)));
        if (!p)
            return 0;
        dsup_pid to = dsup_proc_pid(p);
        return dsup_proc_enqueue(me, &to, t);
    }
    if (!self)
        return DSUP_EINVAL; /* REG_SEND needs a sender pid */
    dsup_ctrl c;
    memset(&c, 0, sizeof c);
    c.op = DSUP_OP_REG_SEND;
    dsup_pid from = dsup_proc_pid(self);
    dsup_pid_to_wire(&from, &c.from);
    c.to_is_name = 1;
    c.to_name.ptr = name;
    c.to_name.len = (uint32_t)strlen(name);
    c.msg.ptr = t.buf;
    c.msg.len = (uint32_t)t.len;
    return dsup_node_send_ctrl(me, n, &c);
}

int dsup_link(dsup_proc *self, const dsup_pid *other)
{
    const dsup_pid me = dsup_proc_pid(self);
    if (dsup_pid_eq(other, &me))
        return 0;
    dsup_node *node = self->node;
    if (is_local(node, other)) {
        dsup_proc *o = dsup_proc_lookup(node, other);
        if (!o) {
            enqueue(node, Q_EXIT_LINK, &me, other, dsup_reason_atom(node, "noproc"));
            return add_link(self, other);
        }
        add_link(o, &me);
        return add_link(self, other);
    }
    if (add_link(self, other))
        return -1;
    dsup_ctrl c;
    memset(&c, 0, sizeof c);
    c.op = DSUP_OP_LINK;
    dsup_pid_to_wire(&me, &c.from);
    dsup_pid_to_wire(other, &c.to);
    return dsup_node_send_ctrl(node, other->node, &c);
}

int dsup_unlink(dsup_proc *self, const dsup_pid *other)
{
    const dsup_pid me = dsup_proc_pid(self);
    if (!remove_link(self, other))
        return 0;
    dsup_node *node = self->node;
    if (is_local(node, other)) {
        dsup_proc *o = dsup_proc_lookup(node, other);
        if (o)
            remove_link(o, &me);
        return 0;
    }
    dsup_ctrl c;
    memset(&c, 0, sizeof c);
    c.op = DSUP_OP_UNLINK_ID;
    c.id = node->procs->unlink_id++;
    dsup_pid_to_wire(&me, &c.from);
    dsup_pid_to_wire(other, &c.to);
    return dsup_node_send_ctrl(node, other->node, &c);
}

void dsup_exit_linked(dsup_proc *self, const dsup_pid *to, dsup_term reason)
{
    const dsup_pid me = dsup_proc_pid(self);
    send_exit_signal(self->node, &me, to, reason, 1);
}

int dsup_exit(dsup_proc *self, const dsup_pid *to, dsup_term reason)
{
    const dsup_pid me = dsup_proc_pid(self);
    send_exit_signal(self->node, &me, to, reason, 0);
    return 0;
}

int dsup_monitor(dsup_proc *self, const dsup_pid *target, dsup_ref *ref)
{
    const dsup_pid me = dsup_proc_pid(self);
    dsup_node *node = self->node;
    dsup_node_make_ref(node, ref);
    dsup_monitor_rec m;
    memset(&m, 0, sizeof m);
    m.ref = *ref;
    m.pid = *target;
    if (is_local(node, target)) {
        dsup_proc *t = dsup_proc_lookup(node, target);
        if (t) {
            if (push_monitor(&dsup_proc_ext_get(self)->watching, &m) < 0)
                return -1;
            dsup_proc_sig_monitor(t, &me, ref, NULL);
        } else {
            ei_x_buff *x = dsup_term_scratch(node);
            encode_down(x, ref, target, NULL, NULL, dsup_reason_atom(node, "noproc"));
            dsup_term t2 = { x->buff, (size_t)x->index };
            dsup_proc_enqueue(node, &me, t2);
            dsup_term_scratch_release(x);
        }
        return 0;
    }
    if (push_monitor(&dsup_proc_ext_get(self)->watching, &m) < 0)
        return -1;
    dsup_ctrl c;
    memset(&c, 0, sizeof c);
    c.op = DSUP_OP_MONITOR_P;
    dsup_pid_to_wire(&me, &c.from);
    dsup_pid_to_wire(target, &c.to);
    ei_x_buff *x = dsup_term_scratch(node);
    dsup_x_encode_ref(x, ref);
    c.ref.ptr = x->buff;
    c.ref.len = (uint32_t)x->index;
    int rc = dsup_node_send_ctrl(node, target->node, &c);
    dsup_term_scratch_release(x);
    return rc;
}

int dsup_demonitor(dsup_proc *self, const dsup_ref *ref)
{
    dsup_monitor_rec m;
    if (!take_monitor(watching_of(self), ref, &m))
        return 0;
    dsup_node *node = self->node;
    const dsup_pid me = dsup_proc_pid(self);
    if (is_local(node, &m.pid)) {
        dsup_proc *t = dsup_proc_lookup(node, &m.pid);
        if (t)
            dsup_proc_sig_demonitor(t, &me, ref);
        return 0;
    }
    dsup_ctrl c;
    memset(&c, 0, sizeof c);
    c.op = DSUP_OP_DEMONITOR_P;
    dsup_pid_to_wire(&me, &c.from);
    dsup_pid_to_wire(&m.pid, &c.to);
    ei_x_buff *x = dsup_term_scratch(node);
    dsup_x_encode_ref(x, ref);
    c.ref.ptr = x->buff;
    c.ref.len = (uint32_t)x->index;
    int rc = dsup_node_send_ctrl(node, m.pid.node, &c);
    dsup_term_scratch_release(x);
    return rc;
}
