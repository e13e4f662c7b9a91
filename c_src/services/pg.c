/* pg.c — a :pg scope peer (kernel/src/pg.erl) in C.
 *
 * Each scope is a C process registered under the scope's name, speaking
 * pg's protocol with the scope processes of BEAM nodes and other dsup-nodes:
 *   {discover, Peer}            -> cast {sync, Self, LocalGroups}; unknown
 *                                  peer: monitor it and discover it back
 *   {'$gen_cast', {sync, Peer, Groups}}, {join, Peer, Group, PidOrPids},
 *   {leave, Peer, PidOrPids, Groups}  -> update the peer's share
 *   {'DOWN', ...}               -> a peer scope or a local member is gone
 * A BEAM scope crashes on anything else, so nothing else is ever sent, and a
 * leave only names groups the peer was told of.
 *
 * Hidden nodes are not sent discover by the BEAM, so we discover: on every
 * new connection, and each second towards connected nodes where no peer
 * scope is known yet (that also finds restarted or late-started scopes). */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "dict.h"
#include "xalloc.h"
#include "gen_server.h"
#include "intern.h"
#include "log.h"
#include "node.h"
#include "pg.h"
#include "proc.h"
#include "ratelimit.h"
#include "term.h"

#define DISCOVER_MS 1000

/* One per group, inside its dict entry, right after the key bytes (the
 * encoded group term, see gkey), then the scope's attach_size bytes (a
 * supervisor's scope: the child's record, 40). 32 bytes: a child's group is
 * then one 112-byte malloc chunk, record included, for a name of up to 16
 * bytes (README, "Memory per child", the assertion below keeps it there).
 * Its members, in arrival order:
 * most groups (a child each) have one, kept inline in m.one (m.one.node NULL:
 * none), and an array is allocated only for a second one (spilled, m.many).
 * A group does not know its scope: a process's only membership carries the
 * scope's index (memb_single). */
typedef struct pg_group {
    uint32_t klen;        /* length of the key bytes before this struct */
    uint32_t nlocal : 28; /* how many members are local (join refuses more: NLOCAL_MAX) */
    uint32_t held : 1;    /* its attached bytes are in use (dsup_pg_attach): kept when empty */
    uint32_t spilled : 1; /* the members are in m.many */
    uint32_t listed : 1;  /* named by the sync being handled (handle_sync) */
    uint32_t busy : 1;    /* its subscribers are being told (notify): not dropped meanwhile */
    union {
        dsup_pid one;
        struct {
            dsup_pid *pids;
            uint32_t n, cap;
        } many;
    } m;
} pg_group;
_Static_assert(sizeof(pg_group) <= 32, "a child's pg group entry grows to the next malloc chunk (README, Memory per child)");
#define NLOCAL_MAX ((1u << 28) - 1)

/* Members of g: how many, and where (a pointer to the inline one is valid
 * while it is the only member and g lives). */
static uint32_t g_count(const pg_group *g) { return g->spilled ? g->m.many.n : g->m.one.node != NULL; }
static dsup_pid *g_pids(pg_group *g) { return g->spilled ? g->m.many.pids : &g->m.one; }

/* Keep the first n members (n <= g_count(g); the others were moved away). */
static void g_truncate(pg_group *g, uint32_t n)
{
    if (g->spilled)
        g->m.many.n = n;
    else if (n == 0)
        g->m.one.node = NULL;
}

/* The members hold the node names of their pids (remote ones: intern.h). */
static void g_free_members(pg_group *g)
{
    uint32_t n = g_count(g);
    dsup_pid *d = g_pids(g);
    for (uint32_t i = 0; i < n; i++)
        dsup_pid_release(&d[i]);
    if (g->spilled)
        free(g->m.many.pids);
    g->spilled = 0;
    g->m.one.node = NULL;
}

/* The group's encoded term: its dict entry's key. */
static dsup_term gkey(const pg_group *g) { return (dsup_term){ dsup_dict_inline_key(g, g->klen), g->klen }; }

typedef struct pg_peer {
    dsup_pid pid;
    dsup_ref mref;
    int told;            /* we sent it our sync: incremental joins/leaves may follow */
} pg_peer;

typedef struct pg_sub {
    dsup_pg_event_fn fn;
    void *arg;
    struct pg_sub *next;
} pg_sub;

struct dsup_pg {
    dsup_node *node;
    const char *name;
    dsup_proc *proc;
    dsup_dict groups;    /* group key -> pg_group, inline, then attach_size bytes */
    size_t nbare;        /* groups without members (held, or on their way out): not listed */
    size_t nheld;        /* groups whose attached bytes are in use */
    uint32_t attach_size; /* bytes after each group's pg_group (dsup_pg_set_attach_size) */
    dsup_dict peers;     /* pid key -> pg_peer* */
    pg_peer *last_peer;  /* the last one found: a batch of joins comes from one */
    pg_sub *subs;        /* an unsubscribed one has fn NULL until no notify runs */
    int notifying, subs_gone;
    pg_group *notified; /* the group of the innermost notify: held (busy) */
    dsup_ratelimit foreign_log; /* peers announcing pids of other nodes */
    dsup_ratelimit malformed_log; /* syncs that are not lists of {Group, Pids} */
    struct dsup_pg *next;
    uint32_t idx;        /* its place in the node's scopes, in start order (memb tags) */
    /* The encoded start of every join we send, `{join, Self,` (made once: a
     * child's start sends one); 0 when it did not fit */
    size_t join_head_len;
    char join_head[16 + 8 + 270];
};

/* One node's scopes (node->pg). The first TAG_SCOPES are also found by
 * their idx, from a member's tagged membership (memb_single). */
#define TAG_SCOPES 4
_Static_assert(2 * TAG_SCOPES <= _Alignof(pg_group), "the tag (bit 0) and a scope's idx fit a group's zero low bits");
struct dsup_pg_service {
    dsup_pg *scopes;
    dsup_pg *tagged[TAG_SCOPES]; /* the first scopes, by idx */
    uint32_t nscopes;
    uv_timer_t discover_timer;
    int timer_on;
};

/* A local member's memberships hang off its process (proc->pg_memb), one
 * node per join (pg allows joining a group twice): no monitor, no table;
 * when the process ends, dsup_pg_proc_exit() makes it leave. The usual
 * case, one membership (a child in its name's group), costs no node:
 * proc->pg_memb is then the group itself, tagged: bit 0 set, bits 1-2 its
 * scope's idx (groups are 8-aligned). A scope started after the first
 * TAG_SCOPES of the node has no tag: its members take a node even alone. */
struct dsup_pg_memb {
    dsup_pg *scope;
    pg_group *group;
    struct dsup_pg_memb *next;
};

/* The group of a single membership, and its scope (when scope is not NULL);
 * NULL when p has none or a list. */
static pg_group *memb_single(const dsup_proc *p, dsup_pg **scope)
{
    uintptr_t v = (uintptr_t)p->pg_memb;
    if (!(v & 1))
        return NULL;
    if (scope)
        *scope = p->node->pg->tagged[(v >> 1) & (TAG_SCOPES - 1)];
    return (pg_group *)(v & ~(uintptr_t)(2 * TAG_SCOPES - 1));
}

static void memb_push(dsup_proc *p, dsup_pg *s, pg_group *g)
{
    struct dsup_pg_memb *m = dsup_xmalloc(sizeof *m);
    m->scope = s;
    m->group = g;
    m->next = p->pg_memb;
    p->pg_memb = m;
}

/* A new membership of p: tagged when it is the only one, else the list form
 * (the tagged single membership becomes a node first). */
static void memb_add(dsup_proc *p, dsup_pg *s, pg_group *g)
{
    if (!p->pg_memb && s->idx < TAG_SCOPES) {
        assert(((uintptr_t)g & (2 * TAG_SCOPES - 1)) == 0);
        p->pg_memb = (struct dsup_pg_memb *)((uintptr_t)g | (uintptr_t)s->idx << 1 | 1);
        return;
    }
    dsup_pg *s1;
    pg_group *g1 = memb_single(p, &s1);
    if (g1) {
        p->pg_memb = NULL;
        memb_push(p, s1, g1);
    }
    memb_push(p, s, g);
}

/* ---- small helpers ---------------------------------------------------------- */

typedef struct pidkey {
    char b[20];
} pidkey;

static pidkey key_of(const dsup_pid *p)
{
    pidkey k;
    memcpy(k.b, &p->node, 8);
    memcpy(k.b + 8, &p->num, 4);
    memcpy(k.b + 12, &p->serial, 4);
    memcpy(k.b + 16, &p->creation, 4);
    return k;
}

static void vec_push(dsup_pg *s, pg_group *g, const dsup_pid *p)
{
    assert(p->node); /* (an inline member with no node is none) */
    dsup_pid_hold(p);
    s->nbare -= g_count(g) == 0;
    if (!g->spilled) {
        if (!g->m.one.node) {
            g->m.one = *p;
            return;
        }
        dsup_pid first = g->m.one;
        dsup_pid *a = dsup_xmalloc(4 * sizeof *a);
        a[0] = first;
        g->m.many.pids = a;
        g->m.many.n = 1;
        g->m.many.cap = 4;
        g->spilled = 1;
    } else if (g->m.many.n == g->m.many.cap) {
        g->m.many.cap *= 2;
        g->m.many.pids = dsup_xrealloc(g->m.many.pids, g->m.many.cap * sizeof *g->m.many.pids);
    }
    g->m.many.pids[g->m.many.n++] = *p;
}

/* Remove one occurrence; 1 if found. Order is kept (get_members order). */
static int vec_remove(dsup_pg *s, pg_group *g, const dsup_pid *p)
{
    uint32_t n = g_count(g);
    dsup_pid *d = g_pids(g);
    for (uint32_t i = n; i-- > 0;) {
        if (dsup_pid_eq(&d[i], p)) {
            dsup_pid_release(&d[i]);
            memmove(&d[i], &d[i + 1], (n - i - 1) * sizeof *d);
            g_truncate(g, n - 1);
            s->nbare += n == 1;
            return 1;
        }
    }
    return 0;
}

static void subs_sweep(dsup_pg *s)
{
    for (pg_sub **pu = &s->subs; *pu;) {
        pg_sub *u = *pu;
        if (u->fn) {
            pu = &u->next;
        } else {
            *pu = u->next;
            free(u);
        }
    }
    s->subs_gone = 0;
}

static void group_drop_if_empty(dsup_pg *s, pg_group *g);

/* Tell the subscribers of a change of g, then drop g if it is empty: g may
 * be gone when this returns. A subscriber may join, leave or unsubscribe
 * from inside (the supervisor finishing its stop on a host's leave does all
 * three): g stays until the outermost notify of it ends, and an
 * unsubscribed entry is only marked until no notify runs. */
static void notify(dsup_pg *s, int event, pg_group *g, const dsup_pid *pids, size_t n)
{
    unsigned was_busy = g->busy;
    pg_group *outer = s->notified;
    g->busy = 1;
    s->notified = g;
    s->notifying++;
    for (pg_sub *u = s->subs; u; u = u->next)
        if (u->fn)
            u->fn(u->arg, s, event, gkey(g), pids, n);
    if (--s->notifying == 0 && s->subs_gone)
        subs_sweep(s);
    s->notified = outer;
    g->busy = was_busy;
    if (!was_busy)
        group_drop_if_empty(s, g);
}

static pg_group *group_get(dsup_pg *s, dsup_term g, int create)
{
    /* A subscriber asks about the group it is told of (sup.c: every join of
     * a child's name): the very key notify handed it is that group, no
     * lookup. Busy while notified, so its key's memory is still its own. */
    if (s->notified && g.buf == gkey(s->notified).buf && g.len == s->notified->klen)
        return s->notified;
    if (!create) {
        dsup_dict_ent *e = dsup_dict_find(&s->groups, g.buf, g.len);
        return e ? dsup_dict_val(e) : NULL;
    }
    /* The group lives inside its dict entry, keyed by its own encoding. */
    int created;
    dsup_dict_ent *e = dsup_dict_upsert_inline(&s->groups, g.buf, g.len, sizeof(pg_group) + s->attach_size, &created);
    if (!e)
        return NULL;
    pg_group *grp = dsup_dict_val(e);
    if (created) {
        grp->klen = e->klen;
        s->nbare++;
    }
    return grp;
}

static void group_drop_if_empty(dsup_pg *s, pg_group *g)
{
    if (g_count(g) || g->busy || g->held)
        return;
    assert(g->nlocal == 0); /* each local membership is one of its members */
    g_free_members(g);
    s->nbare--;
    /* The key bytes and g itself live in the entry being removed. */
    dsup_dict_ent *e = dsup_dict_find(&s->groups, gkey(g).buf, gkey(g).len);
    if (e)
        dsup_dict_remove(&s->groups, e->key, e->klen);
}

/* Encode Pid or [Pid] as pg does (one pid goes bare). */
static void encode_pids(ei_x_buff *x, const dsup_pid *pids, size_t n)
{
    if (n == 1) {
        dsup_x_encode_pid(x, &pids[0]);
        return;
    }
    ei_x_encode_list_header(x, (long)n);
    for (size_t i = 0; i < n; i++)
        dsup_x_encode_pid(x, &pids[i]);
    ei_x_encode_empty_list(x);
}

typedef struct bcast {
    dsup_pg *s;
    ei_x_buff *x;
} bcast;

static void send_to_peer(dsup_dict_ent *e, void *arg)
{
    bcast *b = arg;
    pg_peer *p = dsup_dict_get(e);
    /* A BEAM scope that has not had our sync yet knows none of our groups
     * and crashes on a leave naming one: it hears of them in that sync. */
    if (p->told)
        dsup_send(b->s->proc, &p->pid, b->x);
}

static void broadcast(dsup_pg *s, ei_x_buff *x)
{
    bcast b = { s, x };
    dsup_dict_foreach(&s->peers, send_to_peer, &b);
}

/* ---- local joins and leaves -------------------------------------------------- */

int dsup_pg_join(dsup_pg *s, dsup_term group, const dsup_pid *pids, size_t n)
{
    if (!s || !n || !pids || !group.buf || !group.len)
        return DSUP_EINVAL;
    dsup_proc *few[8]; /* the usual join is one pid: look it up once */
    for (size_t i = 0; i < n; i++) {
        dsup_proc *p = dsup_proc_lookup(s->node, &pids[i]);
        if (!p)
            return DSUP_ENOPROC; /* only live local processes may join, as in pg */
        if (i < 8)
            few[i] = p;
    }
    pg_group *g = group_get(s, group, 1);
    if (!g)
        return DSUP_EINVAL;
    if (n > NLOCAL_MAX - g->nlocal) { /* 2^29 local members of one group: 12 GB of them */
        group_drop_if_empty(s, g);
        return DSUP_ETOOBIG;
    }
    group = gkey(g);
    for (size_t i = 0; i < n; i++) {
        dsup_proc *p = i < 8 ? few[i] : dsup_proc_lookup(s->node, &pids[i]);
        memb_add(p, s, g);
        vec_push(s, g, &pids[i]);
        g->nlocal++;
    }
    assert(g_count(g) >= g->nlocal); /* remote members only add to them */
    ei_x_buff *x = dsup_term_scratch(s->node);
    if (s->join_head_len) {
        dsup_x_append(x, s->join_head, s->join_head_len);
    } else {
        ei_x_encode_tuple_header(x, 4);
        dsup_x_encode_atom(x, "join");
        dsup_x_encode_pid(x, dsup_self(s->proc));
    }
    dsup_x_encode_term(x, group);
    encode_pids(x, pids, n);
    broadcast(s, x);
    dsup_term_scratch_release(x);
    notify(s, DSUP_PG_JOIN, g, pids, n);
    return 0;
}

/* Forget one membership of pid in g; 1 if it was there. */
static int drop_local(dsup_pg *s, pg_group *g, const dsup_pid *pid)
{
    dsup_proc *p = dsup_proc_lookup(s->node, pid);
    if (!p)
        return 0;
    pg_group *one = memb_single(p, NULL);
    if (one) {
        if (one != g) /* (a group is of one scope) */
            return 0;
        p->pg_memb = NULL;
        int had = vec_remove(s, g, pid);
        assert(had && g->nlocal > 0);
        (void)had;
        g->nlocal--;
        return 1;
    }
    for (struct dsup_pg_memb **pm = &p->pg_memb; *pm; pm = &(*pm)->next) {
        if ((*pm)->scope == s && (*pm)->group == g) {
            struct dsup_pg_memb *m = *pm;
            *pm = m->next;
            free(m);
            int had = vec_remove(s, g, pid);
            assert(had && g->nlocal > 0); /* the membership's own entry */
            (void)had;
            g->nlocal--;
            return 1;
        }
    }
    return 0;
}

int dsup_pg_leave(dsup_pg *s, dsup_term group, const dsup_pid *pids, size_t n)
{
    if (!s || (n && !pids) || !group.buf)
        return DSUP_EINVAL;
    pg_group *g = group_get(s, group, 0);
    if (!g)
        return DSUP_PG_NOT_JOINED;
    dsup_pid *left = dsup_xmalloc((n ? n : 1) * sizeof *left);
    size_t nl = 0;
    for (size_t i = 0; i < n; i++)
        if (drop_local(s, g, &pids[i]))
            left[nl++] = pids[i];
    if (nl) {
        ei_x_buff *x = dsup_term_scratch(s->node);
        ei_x_encode_tuple_header(x, 4);
        dsup_x_encode_atom(x, "leave");
        dsup_x_encode_pid(x, dsup_self(s->proc));
        encode_pids(x, left, nl);
        ei_x_encode_list_header(x, 1);
        dsup_x_encode_term(x, gkey(g));
        ei_x_encode_empty_list(x);
        broadcast(s, x);
        dsup_term_scratch_release(x);
        notify(s, DSUP_PG_LEAVE, g, left, nl);
    }
    free(left);
    return nl ? 0 : DSUP_PG_NOT_JOINED;
}

/* The leave message pg sends when a member ends: {leave, Scope, Pid, Groups}. */
static void broadcast_exit_leave(dsup_pg *s, const dsup_proc *p, const struct dsup_pg_memb *list, const pg_group *one)
{
    if (!s->proc)
        return;
    uint32_t n = one ? 1 : 0;
    for (const struct dsup_pg_memb *m = list; m; m = m->next)
        n += m->scope == s;
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 4);
    dsup_x_encode_atom(x, "leave");
    dsup_x_encode_pid(x, dsup_self(s->proc));
    const dsup_pid pid = dsup_proc_pid(p);
    dsup_x_encode_pid(x, &pid);
    ei_x_encode_list_header(x, n);
    if (one)
        dsup_x_encode_term(x, gkey(one));
    for (const struct dsup_pg_memb *m = list; m; m = m->next)
        if (m->scope == s)
            dsup_x_encode_term(x, gkey(m->group));
    ei_x_encode_empty_list(x);
    broadcast(s, x);
    dsup_term_scratch_release(x);
}

/* A local member ends: in each scope it leaves all its groups with one
 * {leave, Scope, Pid, Groups} message, as pg does on the member's DOWN. */
void dsup_pg_proc_exit(dsup_proc *p)
{
    const dsup_pid pid = dsup_proc_pid(p);
    pg_group *g1;
    dsup_pg *s1;
    while ((g1 = memb_single(p, &s1))) { /* the usual case: one group, no list */
        p->pg_memb = NULL;
        broadcast_exit_leave(s1, p, NULL, g1);
        int had = vec_remove(s1, g1, &pid);
        assert(had && g1->nlocal > 0);
        (void)had;
        g1->nlocal--;
        notify(s1, DSUP_PG_LEAVE, g1, &pid, 1);
    }
    while (p->pg_memb) {
        dsup_pg *s = p->pg_memb->scope;
        broadcast_exit_leave(s, p, p->pg_memb, NULL);
        for (struct dsup_pg_memb **pm = &p->pg_memb; *pm;) {
            struct dsup_pg_memb *m = *pm;
            if (m->scope != s) {
                pm = &m->next;
                continue;
            }
            *pm = m->next;
            pg_group *g = m->group;
            free(m);
            int had = vec_remove(s, g, &pid);
            assert(had && g->nlocal > 0);
            (void)had;
            g->nlocal--;
            notify(s, DSUP_PG_LEAVE, g, &pid, 1); /* (joined twice: g keeps the other) */
        }
    }
}

/* ---- peers ------------------------------------------------------------------- */

static pg_peer *peer_get(dsup_pg *s, const dsup_pid *pid)
{
    if (s->last_peer && dsup_pid_eq(&s->last_peer->pid, pid))
        return s->last_peer;
    pidkey k = key_of(pid);
    dsup_dict_ent *e = dsup_dict_find(&s->peers, k.b, sizeof k.b);
    if (e)
        s->last_peer = dsup_dict_get(e);
    return e ? dsup_dict_get(e) : NULL;
}

static pg_peer *peer_add(dsup_pg *s, const dsup_pid *pid)
{
    if (pid->node == s->node->name)
        return NULL; /* only one scope of a name per node: not a peer */
    pidkey k = key_of(pid);
    dsup_dict_ent *e = dsup_dict_upsert(&s->peers, k.b, sizeof k.b, NULL);
    if (!e)
        return NULL;
    if (!dsup_dict_get(e)) {
        pg_peer *p = dsup_xcalloc(1, sizeof *p);
        p->pid = *pid;
        dsup_pid_hold(&p->pid);
        dsup_monitor(s->proc, pid, &p->mref);
        dsup_dict_set(e, p);
        LOG_DEBUG("pg %s: peer scope on %s", s->name, pid->node);
    }
    return dsup_dict_get(e);
}

/* pg announces only its own node's members (a scope joins local processes
 * only), so a peer's share of our groups is their members on its node: no
 * per-peer copy is kept. A pid of another node from a peer is not its to
 * announce (and no DOWN of ours would ever take it out): it is dropped. */
static size_t own_pids(dsup_pg *s, const pg_peer *p, dsup_pid *pids, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (pids[i].node == p->pid.node)
            pids[k++] = pids[i];
    if (k < n) {
        unsigned dropped = 0;
        if (dsup_ratelimit_ok(&s->foreign_log, dsup_node_now(s->node), &dropped))
            LOG_WARN("pg %s: the peer scope on %s announced %zu pid(s) of other nodes; ignored%s", s->name,
                     p->pid.node, n - k, dropped ? " (more not logged)" : "");
    }
    return k;
}

typedef struct has_node {
    const char *node;
    int found;
} has_node;

static void peer_on_node(dsup_dict_ent *e, void *arg)
{
    has_node *h = arg;
    pg_peer *p = dsup_dict_get(e);
    h->found |= p->pid.node == h->node;
}

static void remote_join(dsup_pg *s, dsup_term group, const dsup_pid *pids, size_t n)
{
    pg_group *g = group_get(s, group, 1);
    if (!g)
        return;
    for (size_t i = 0; i < n; i++)
        vec_push(s, g, &pids[i]);
    notify(s, DSUP_PG_JOIN, g, pids, n);
}

static void remote_leave(dsup_pg *s, const pg_peer *p, dsup_term group, const dsup_pid *pids, size_t n)
{
    pg_group *g = group_get(s, group, 0);
    if (!g)
        return;
    dsup_pid one, *gone = n > 1 ? dsup_xmalloc(n * sizeof *gone) : &one;
    size_t ng = 0;
    for (size_t i = 0; i < n; i++)
        if (pids[i].node == p->pid.node && vec_remove(s, g, &pids[i]))
            gone[ng++] = pids[i]; /* (a name released here lives to the end of the loop turn) */
    if (ng)
        notify(s, DSUP_PG_LEAVE, g, gone, ng); /* g may be gone now */
    if (gone != &one)
        free(gone);
}

static uint32_t count_on_node(pg_group *g, const char *node)
{
    uint32_t k = 0, n = g_count(g);
    const dsup_pid *d = g_pids(g);
    for (uint32_t i = 0; i < n; i++)
        k += d[i].node == node;
    return k;
}

/* Every member of g on `node` leaves (one LEAVE event with them, in order). */
static void drop_node_members(dsup_pg *s, pg_group *g, const char *node)
{
    uint32_t k = count_on_node(g, node);
    if (!k)
        return;
    dsup_pid one, *gone = k > 1 ? dsup_xmalloc(k * sizeof *gone) : &one;
    dsup_pid *d = g_pids(g);
    uint32_t w = 0, ng = 0, n = g_count(g);
    for (uint32_t i = 0; i < n; i++) {
        if (d[i].node == node)
            gone[ng++] = d[i];
        else
            d[w++] = d[i];
    }
    g_truncate(g, w);
    s->nbare += w == 0;
    notify(s, DSUP_PG_LEAVE, g, gone, ng); /* g may be gone now */
    for (uint32_t i = 0; i < ng; i++)
        dsup_pid_release(&gone[i]);
    if (gone != &one)
        free(gone);
}

/* Keys of groups, copied (a subscriber called back while they are handled
 * may add or drop groups): [uint32 len][bytes]... */
typedef struct keybuf {
    dsup_pg *s;
    const char *node;
    char *b;
    size_t len, cap;
} keybuf;

static void collect_node_group(dsup_dict_ent *e, void *arg)
{
    keybuf *kb = arg;
    pg_group *g = dsup_dict_val(e);
    int listed = g->listed;
    g->listed = 0;
    if (listed || !count_on_node(g, kb->node))
        return;
    uint32_t kl = g->klen;
    if (kb->len + sizeof kl + kl > kb->cap) {
        kb->cap = (kb->len + sizeof kl + kl) * 2;
        kb->b = dsup_xrealloc(kb->b, kb->cap);
    }
    memcpy(kb->b + kb->len, &kl, sizeof kl);
    memcpy(kb->b + kb->len + sizeof kl, gkey(g).buf, kl);
    kb->len += sizeof kl + kl;
}

/* The members on `node` leave every group not marked `listed` (one pass
 * over the groups; it clears the marks). */
static void forget_node(dsup_pg *s, const char *node)
{
    keybuf kb = { s, node, NULL, 0, 0 };
    dsup_dict_foreach(&s->groups, collect_node_group, &kb);
    for (size_t off = 0; off < kb.len;) {
        uint32_t kl;
        memcpy(&kl, kb.b + off, sizeof kl);
        pg_group *g = group_get(s, (dsup_term){ kb.b + off + sizeof kl, kl }, 0);
        if (g)
            drop_node_members(s, g, node);
        off += sizeof kl + kl;
    }
    free(kb.b);
}

static void peer_down(dsup_pg *s, const dsup_pid *pid)
{
    pg_peer *p = peer_get(s, pid);
    if (!p)
        return;
    pidkey k = key_of(pid);
    dsup_dict_remove(&s->peers, k.b, sizeof k.b);
    if (s->last_peer == p)
        s->last_peer = NULL;
    /* A restarted scope on that node that is already our peer has replaced
     * the node's members with its sync (or will: we sent it our discover),
     * so they are its own now. (Its messages come after this DOWN on the
     * same connection anyway.) */
    has_node h = { p->pid.node, 0 };
    dsup_dict_foreach(&s->peers, peer_on_node, &h);
    if (!h.found)
        forget_node(s, p->pid.node);
    LOG_DEBUG("pg %s: peer scope on %s gone", s->name, pid->node);
    dsup_pid_release(&p->pid);
    free(p);
}

/* ---- decoding pid lists ----------------------------------------------------------- */

/* Pid | [Pid] into an array: `one` for a single pid (the usual join, no
 * malloc), else a malloc'd one (free with pids_free); -1 when malformed. */
static int decode_pids(dsup_node *node, dsup_term t, dsup_pid *one, dsup_pid **out, size_t *n)
{
    int i = 0, type, size, arity;
    *out = one;
    *n = 0;
    if (ei_get_type(t.buf, &i, &type, &size) < 0)
        return -1;
    if (type == ERL_PID_EXT || type == ERL_NEW_PID_EXT) {
        if (dsup_decode_pid(node, t.buf, &i, one) < 0)
            return -1;
        *n = 1;
        return 0;
    }
    if (type == ERL_NIL_EXT)
        return 0;
    /* The arity is the peer's: each element takes at least a byte. */
    if (type != ERL_LIST_EXT || ei_decode_list_header(t.buf, &i, &arity) < 0 || arity < 0 ||
        (size_t)arity > t.len - (size_t)i)
        return -1;
    if (arity > 1)
        *out = dsup_xmalloc((size_t)arity * sizeof **out);
    for (int k = 0; k < arity; k++)
        if (dsup_decode_pid(node, t.buf, &i, &(*out)[k]) < 0)
            return -1;
    *n = (size_t)arity;
    return 0;
}

static void pids_free(dsup_pid *pids, const dsup_pid *one)
{
    if (pids != one)
        free(pids);
}

/* ---- the scope process ---------------------------------------------------------- */

static void send_sync(dsup_pg *s, const dsup_pid *to);

static void handle_discover(dsup_pg *s, dsup_term peer_t)
{
    dsup_pid peer;
    int i = 0;
    if (dsup_decode_pid(s->node, peer_t.buf, &i, &peer) < 0 || dsup_pid_eq(&peer, dsup_self(s->proc)))
        return;
    send_sync(s, &peer);
    pg_peer *known = peer_get(s, &peer);
    if (known) {
        known->told = 1;
    } else {
        pg_peer *p = peer_add(s, &peer);
        if (p)
            p->told = 1;
        ei_x_buff *x = dsup_term_scratch(s->node);
        ei_x_encode_tuple_header(x, 2);
        dsup_x_encode_atom(x, "discover");
        dsup_x_encode_pid(x, dsup_self(s->proc));
        dsup_send(s->proc, &peer, x);
        dsup_term_scratch_release(x);
    }
}

static int pid_cmp(const void *a, const void *b)
{
    const dsup_pid *x = a, *y = b;
    if (x->num != y->num)
        return x->num < y->num ? -1 : 1;
    if (x->serial != y->serial)
        return x->serial < y->serial ? -1 : 1;
    return x->creation < y->creation ? -1 : x->creation > y->creation;
}

/* Are the members of g on `node` exactly pids (as a multiset: a sync lists
 * them newest first, our vector keeps them in arrival order)? */
static int same_node_members(pg_group *g, const char *node, const dsup_pid *pids, size_t n)
{
    if (count_on_node(g, node) != n)
        return 0;
    if (n == 0)
        return 1;
    const dsup_pid *d = g_pids(g);
    uint32_t all = g_count(g);
    if (n == 1) {
        for (uint32_t i = 0; i < all; i++)
            if (d[i].node == node)
                return dsup_pid_eq(&d[i], &pids[0]);
    }
    dsup_pid *a = dsup_xmalloc(2 * n * sizeof *a), *b = a + n;
    size_t k = 0;
    for (uint32_t i = 0; i < all; i++)
        if (d[i].node == node)
            a[k++] = d[i];
    memcpy(b, pids, n * sizeof *b);
    qsort(a, n, sizeof *a, pid_cmp);
    qsort(b, n, sizeof *b, pid_cmp);
    int same = 1;
    for (size_t i = 0; i < n && same; i++)
        same = pid_cmp(&a[i], &b[i]) == 0;
    free(a);
    return same;
}

/* {sync, Peer, [{Group, Pids}]}: the peer's whole share. As pg's
 * handle_sync: groups it no longer lists lose its members, each listed group
 * gets exactly the listed pids from it (events only for what changed). Its
 * members are ours on its node (own_pids), so one pass over our groups
 * finds the unlisted ones. */
static void sync_malformed(dsup_pg *s, const dsup_pid *peer)
{
    unsigned dropped = 0;
    if (dsup_ratelimit_ok(&s->malformed_log, dsup_node_now(s->node), &dropped))
        LOG_WARN("pg %s: a sync from the scope on %s is not a list of {Group, Pids}; ignored%s", s->name,
                 peer->node, dropped ? " (more not logged)" : "");
}

static void handle_sync(dsup_pg *s, dsup_term peer_t, dsup_term groups)
{
    dsup_pid peer;
    int i = 0, n = 0, type, size;
    if (dsup_decode_pid(s->node, peer_t.buf, &i, &peer) < 0)
        return;
    i = 0;
    /* [] or a list: anything else would read as "no members" and drop the
     * peer's whole share */
    if (ei_get_type(groups.buf, &i, &type, &size) < 0 || (type != ERL_NIL_EXT && type != ERL_LIST_EXT) ||
        (type == ERL_LIST_EXT && ei_decode_list_header(groups.buf, &i, &n) < 0)) {
        sync_malformed(s, &peer);
        return;
    }
    int start = i;
    for (int k = 0; k < n; k++) { /* all well formed before anything changes */
        int el = i;
        dsup_term pair[2];
        if (dsup_term_next(groups.buf, &i) < 0 ||
            dsup_term_tuple((dsup_term){ groups.buf + el, (size_t)(i - el) }, pair, 2) != 2) {
            sync_malformed(s, &peer);
            return;
        }
    }
    pg_peer *p = peer_add(s, &peer);
    if (!p)
        return;
    const char *node = p->pid.node;
    i = start;
    for (int k = 0; k < n; k++) {
        int el = i;
        dsup_term pair[2];
        dsup_term_next(groups.buf, &i);
        dsup_term_tuple((dsup_term){ groups.buf + el, (size_t)(i - el) }, pair, 2);
        pg_group *g = group_get(s, pair[0], 0);
        if (g)
            g->listed = 1;
    }
    forget_node(s, node); /* the unlisted groups; clears the marks */
    i = start;
    for (int k = 0; k < n; k++) {
        int el = i;
        dsup_term pair[2];
        dsup_term_next(groups.buf, &i);
        dsup_term_tuple((dsup_term){ groups.buf + el, (size_t)(i - el) }, pair, 2);
        dsup_pid one, *pids;
        size_t np;
        if (decode_pids(s->node, pair[1], &one, &pids, &np) == 0) {
            np = own_pids(s, p, pids, np);
            pg_group *g = group_get(s, pair[0], 0);
            if (!(g ? same_node_members(g, node, pids, np) : np == 0)) {
                if (g)
                    drop_node_members(s, g, node);
                if (np)
                    remote_join(s, pair[0], pids, np);
            }
        }
        pids_free(pids, &one);
    }
}

static void scope_cast(dsup_proc *self, void *state, dsup_term msg)
{
    dsup_pg *s = state;
    dsup_term el[4];
    int ar;
    if (dsup_term_tagged(msg, "sync", &ar, el, 4) && ar == 3)
        handle_sync(s, el[1], el[2]);
}

/* {join, Peer, Group, PidOrPids} and {leave, Peer, PidOrPids, Groups}, split
 * in one pass: a join runs once per child on every observer during a batch
 * start. (The frame was checked whole when it was decoded, so the last
 * element is simply the rest of it.) 1 when msg is {Tag, _, _, _} with a
 * pid second, 0 when it is something else. */
static int split_update(dsup_pg *s, dsup_term msg, const char *tag, dsup_pid *peer, dsup_term *a, dsup_term *b)
{
    int i = 0, arity;
    const char *name;
    size_t len;
    if (ei_decode_tuple_header(msg.buf, &i, &arity) < 0 || arity != 4 ||
        dsup_term_atom_text(msg.buf, &i, &name, &len) < 0 || len != strlen(tag) || memcmp(name, tag, len) != 0 ||
        dsup_decode_pid(s->node, msg.buf, &i, peer) < 0)
        return 0;
    int a0 = i;
    if (dsup_term_next(msg.buf, &i) < 0 || (size_t)i >= msg.len)
        return 0;
    *a = (dsup_term){ msg.buf + a0, (size_t)(i - a0) };
    *b = (dsup_term){ msg.buf + i, msg.len - (size_t)i };
    return 1;
}

static void handle_join(dsup_pg *s, const dsup_pid *peer, dsup_term group, dsup_term pids_t)
{
    pg_peer *p = peer_get(s, peer);
    if (!p)
        return; /* not (yet) a peer: pg ignores it too */
    dsup_pid one, *pids;
    size_t n;
    if (decode_pids(s->node, pids_t, &one, &pids, &n) == 0 && (n = own_pids(s, p, pids, n)))
        remote_join(s, group, pids, n);
    pids_free(pids, &one);
}

static void handle_leave(dsup_pg *s, const dsup_pid *peer, dsup_term pids_t, dsup_term groups)
{
    pg_peer *p = peer_get(s, peer);
    dsup_pid one, *pids = &one;
    size_t n;
    if (!p || decode_pids(s->node, pids_t, &one, &pids, &n) < 0) {
        pids_free(pids, &one);
        return;
    }
    int i = 0, type, size, cnt;
    if (ei_get_type(groups.buf, &i, &type, &size) == 0 && type == ERL_STRING_EXT) {
        /* [42] travels as the string "*": each byte is a small-integer group. */
        const unsigned char *bytes = (const unsigned char *)groups.buf + 3;
        for (int k = 0; k < size; k++) {
            char g[2] = { 97 /* SMALL_INTEGER_EXT */, (char)bytes[k] };
            remote_leave(s, p, (dsup_term){ g, 2 }, pids, n);
        }
    } else if (type == ERL_LIST_EXT && ei_decode_list_header(groups.buf, &i, &cnt) == 0) {
        for (int k = 0; k < cnt; k++) {
            int g0 = i;
            if (dsup_term_next(groups.buf, &i) < 0)
                break;
            remote_leave(s, p, (dsup_term){ groups.buf + g0, (size_t)(i - g0) }, pids, n);
        }
    }
    pids_free(pids, &one);
}

static void scope_info(dsup_proc *self, void *state, dsup_term msg)
{
    dsup_pg *s = state;
    dsup_term el[5];
    dsup_pid peer;
    int ar;
    if (split_update(s, msg, "join", &peer, &el[0], &el[1])) {
        handle_join(s, &peer, el[0], el[1]);
    } else if (split_update(s, msg, "leave", &peer, &el[0], &el[1])) {
        handle_leave(s, &peer, el[0], el[1]);
    } else if (dsup_term_tagged(msg, "discover", &ar, el, 3) && (ar == 2 || ar == 3)) {
        handle_discover(s, el[1]);
    } else if (dsup_term_tagged(msg, "DOWN", &ar, el, 5) && ar == 5) {
        dsup_pid who;
        int i = 0;
        if (dsup_decode_pid(s->node, el[3].buf, &i, &who) < 0)
            return;
        if (who.node != s->node->name)
            peer_down(s, &who);
    }
}

typedef struct sync_ctx {
    const char *me; /* our node's name */
    ei_x_buff *x;
    size_t n;
} sync_ctx;

static void count_local_group(dsup_dict_ent *e, void *arg)
{
    sync_ctx *c = arg;
    c->n += ((pg_group *)dsup_dict_val(e))->nlocal > 0;
}

static void encode_local_group(dsup_dict_ent *e, void *arg)
{
    sync_ctx *c = arg;
    const char *me = c->me;
    pg_group *g = dsup_dict_val(e);
    if (!g->nlocal)
        return;
    ei_x_encode_tuple_header(c->x, 2);
    dsup_x_encode_term(c->x, gkey(g));
    ei_x_encode_list_header(c->x, g->nlocal);
    const dsup_pid *d = g_pids(g);
    for (uint32_t i = 0, n = g_count(g); i < n; i++)
        if (d[i].node == me)
            dsup_x_encode_pid(c->x, &d[i]);
    ei_x_encode_empty_list(c->x);
}

/* {'$gen_cast', {sync, Self, [{Group, LocalPids}]}}: one entry per group
 * that has local members. */
static void send_sync(dsup_pg *s, const dsup_pid *to)
{
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "$gen_cast");
    ei_x_encode_tuple_header(x, 3);
    dsup_x_encode_atom(x, "sync");
    dsup_x_encode_pid(x, dsup_self(s->proc));
    sync_ctx c = { s->node->name, x, 0 };
    dsup_dict_foreach(&s->groups, count_local_group, &c);
    if (c.n) {
        ei_x_encode_list_header(x, (long)c.n);
        dsup_dict_foreach(&s->groups, encode_local_group, &c);
    }
    ei_x_encode_empty_list(x);
    dsup_send(s->proc, to, x);
    dsup_term_scratch_release(x);
}

static void scope_terminate(dsup_proc *self, void *state, dsup_term reason)
{
    dsup_pg *s = state;
    s->proc = NULL;
}

static int scope_state(dsup_proc *self, void *state, ei_x_buff *out)
{
    dsup_pg *s = state;
    ei_x_encode_tuple_header(out, 4);
    dsup_x_encode_atom(out, "pg_scope");
    dsup_x_encode_atom(out, s->name);
    ei_x_encode_ulong(out, s->groups.count - s->nbare);
    ei_x_encode_ulong(out, s->peers.count);
    return 0;
}

static int scope_init(dsup_proc *self, dsup_term args, void **state)
{
    return 0; /* the dsup_pg is attached right after spawn */
}

static const dsup_worker_type scope_type = {
    .name = "pg_scope",
    .init = scope_init,
    .handle_cast = scope_cast,
    .handle_info = scope_info,
    .terminate = scope_terminate,
    .encode_state = scope_state,
};

/* ---- discovery ------------------------------------------------------------------- */

static void discover_on(dsup_pg *s, const char *node)
{
    if (!s->proc)
        return;
    ei_x_buff *x = dsup_term_scratch(s->node);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "discover");
    dsup_x_encode_pid(x, dsup_self(s->proc));
    dsup_send_named(s->proc, s->name, node, x);
    dsup_term_scratch_release(x);
}

/* A peer that sent us its sync but whose discover (answered with ours) never
 * came: give it our picture now, so that our joins and leaves reach it. */
static void tell_if_untold(dsup_dict_ent *e, void *arg)
{
    dsup_pg *s = arg;
    pg_peer *p = dsup_dict_get(e);
    if (!p->told) {
        send_sync(s, &p->pid);
        p->told = 1;
    }
}

static void on_discover_timer(uv_timer_t *t)
{
    dsup_node *node = t->data;
    for (dsup_pg *s = node->pg->scopes; s; s = s->next) {
        dsup_dict_foreach(&s->peers, tell_if_untold, s);
        for (size_t i = 0; i < node->nconns; i++) {
            dsup_conn *c = node->conns[i];
            if (c->state != CONN_UP)
                continue;
            has_node h = { c->peer, 0 };
            dsup_dict_foreach(&s->peers, peer_on_node, &h);
            if (!h.found)
                discover_on(s, c->peer);
        }
    }
}

void dsup_pg_conn_up(dsup_node *node, const char *peer)
{
    for (dsup_pg *s = node->pg->scopes; s; s = s->next)
        discover_on(s, peer);
}

void dsup_pg_stop_all(dsup_node *node)
{
    struct dsup_pg_service *P = node->pg;
    if (P->timer_on && !uv_is_closing((uv_handle_t *)&P->discover_timer))
        uv_close((uv_handle_t *)&P->discover_timer, NULL);
    P->timer_on = 0;
}

static void free_peer(void *val)
{
    pg_peer *p = val;
    dsup_pid_release(&p->pid);
    free(p);
}

static void free_group(dsup_dict_ent *e, void *arg) { g_free_members(dsup_dict_val(e)); }

void dsup_pg_service_init_state(dsup_node *node) { node->pg = dsup_xcalloc(1, sizeof *node->pg); }

/* Node close: every scope's tables (their processes ended at shutdown). */
void dsup_pg_service_free(dsup_node *node)
{
    struct dsup_pg_service *P = node->pg;
    if (!P)
        return;
    for (dsup_pg *s = P->scopes, *next; s; s = next) {
        next = s->next;
        dsup_dict_free(&s->peers, free_peer);
        dsup_dict_foreach(&s->groups, free_group, NULL);
        dsup_dict_free(&s->groups, NULL);
        for (pg_sub *u = s->subs, *un; u; u = un) {
            un = u->next;
            free(u);
        }
        free(s);
    }
    free(P);
    node->pg = NULL;
}

/* ---- public API -------------------------------------------------------------------- */

dsup_pg *dsup_pg_find(dsup_node *node, const char *name)
{
    if (!node || !name || !node->pg)
        return NULL;
    const char *n = dsup_intern_find(node->names, name, strlen(name)); /* no scope has a name nobody holds */
    for (dsup_pg *s = node->pg->scopes; s; s = s->next)
        if (s->name == n && s->proc)
            return s;
    return NULL;
}

dsup_pg *dsup_pg_scope(dsup_node *node, const char *name)
{
    dsup_pg *s = dsup_pg_find(node, name);
    if (s)
        return s;
    if (!node || !node->creation || node->stopping || !node->pg)
        return NULL;
    struct dsup_pg_service *P = node->pg;
    const char *n = dsup_intern_str(node->names, name);
    if (!n || dsup_proc_whereis(node, n))
        return NULL;
    dsup_register_internal_type(&scope_type); /* the same struct again is a no-op */
    s = dsup_xcalloc(1, sizeof *s);
    s->node = node;
    s->name = n;
    if (dsup_spawn_proc(node, "pg_scope", NULL, NULL, &s->proc, NULL) < 0) {
        free(s);
        return NULL;
    }
    s->proc->state = s;
    ei_x_buff *x = dsup_term_scratch(node);
    ei_x_encode_tuple_header(x, 4);
    dsup_x_encode_atom(x, "join");
    dsup_x_encode_pid(x, dsup_self(s->proc));
    if ((size_t)x->index <= sizeof s->join_head) { /* else each join encodes it */
        memcpy(s->join_head, x->buff, (size_t)x->index);
        s->join_head_len = (size_t)x->index;
    }
    dsup_term_scratch_release(x);
    int rc = dsup_proc_register(s->proc, n);
    assert(rc == 0); /* whereis(n) was checked above */
    (void)rc;
    s->next = P->scopes;
    P->scopes = s;
    s->idx = P->nscopes++;
    if (s->idx < TAG_SCOPES)
        P->tagged[s->idx] = s;
    if (!P->timer_on) {
        uv_timer_init(node->loop, &P->discover_timer);
        P->discover_timer.data = node;
        uv_timer_start(&P->discover_timer, on_discover_timer, DISCOVER_MS, DISCOVER_MS);
        P->timer_on = 1;
    }
    /* Tell every node we already talk to (visible BEAM scopes would also find
     * us through nodeup, hidden ones only this way). */
    for (size_t i = 0; i < node->nconns; i++)
        if (node->conns[i]->state == CONN_UP)
            discover_on(s, node->conns[i]->peer);
    LOG_INFO("pg scope %s started", n);
    return s;
}

const char *dsup_pg_name(const dsup_pg *s) { return s->name; }

size_t dsup_pg_members(dsup_pg *s, dsup_term group, const dsup_pid **pids)
{
    pg_group *g = s ? group_get(s, group, 0) : NULL;
    *pids = g ? g_pids(g) : NULL;
    return g ? g_count(g) : 0;
}

size_t dsup_pg_local_members(dsup_pg *s, dsup_term group, dsup_pid *out, size_t max)
{
    pg_group *g = s ? group_get(s, group, 0) : NULL;
    size_t n = 0;
    if (!g)
        return 0;
    const dsup_pid *d = g_pids(g);
    for (uint32_t i = 0, all = g_count(g); i < all; i++)
        if (d[i].node == s->node->name) {
            if (n < max)
                out[n] = d[i];
            n++;
        }
    return n;
}

typedef struct groups_ctx {
    void (*fn)(void *arg, dsup_term group, size_t members);
    void *arg;
} groups_ctx;

static void visit_group(dsup_dict_ent *e, void *arg)
{
    groups_ctx *c = arg;
    pg_group *g = dsup_dict_val(e);
    if (g_count(g)) /* a group held for its attachment only is no pg group */
        c->fn(c->arg, gkey(g), g_count(g));
}

/* The groups pg would list: those with members. */
static size_t visible_groups(const dsup_pg *s) { return s->groups.count - s->nbare; }

size_t dsup_pg_which_groups(dsup_pg *s, void (*fn)(void *arg, dsup_term group, size_t members), void *arg)
{
    if (!s)
        return 0;
    if (fn) {
        groups_ctx c = { fn, arg };
        dsup_dict_foreach(&s->groups, visit_group, &c);
    }
    return visible_groups(s);
}

int dsup_pg_subscribe(dsup_pg *s, dsup_pg_event_fn fn, void *arg)
{
    if (!s || !fn)
        return DSUP_EINVAL;
    pg_sub *u = dsup_xcalloc(1, sizeof *u);
    u->fn = fn;
    u->arg = arg;
    u->next = s->subs;
    s->subs = u;
    return 0;
}

int dsup_pg_unsubscribe(dsup_pg *s, dsup_pg_event_fn fn, void *arg)
{
    if (!s)
        return DSUP_EINVAL;
    for (pg_sub **pu = &s->subs; *pu; pu = &(*pu)->next) {
        if (fn && (*pu)->fn == fn && (*pu)->arg == arg) {
            pg_sub *u = *pu;
            if (s->notifying) { /* a notify may stand on u: freed once none runs */
                u->fn = NULL;
                s->subs_gone = 1;
                return 0;
            }
            *pu = u->next;
            free(u);
            return 0;
        }
    }
    return DSUP_ENOTFOUND;
}

/* ---- data attached to groups ---------------------------------------------------- */

static void *g_att(pg_group *g) { return (char *)g + sizeof(pg_group); }
static pg_group *att_g(const void *att) { return (pg_group *)((char *)att - sizeof(pg_group)); }

/* Point p's memberships in `from` (of scope s) at `to`. */
static void memb_repoint(dsup_pg *s, dsup_proc *p, pg_group *from, pg_group *to)
{
    dsup_pg *s1;
    if (memb_single(p, &s1) == from) {
        p->pg_memb = (struct dsup_pg_memb *)((uintptr_t)to | (uintptr_t)s->idx << 1 | 1);
        return;
    }
    if ((uintptr_t)p->pg_memb & 1)
        return;
    for (struct dsup_pg_memb *m = p->pg_memb; m; m = m->next)
        if (m->scope == s && m->group == from)
            m->group = to;
}

/* Move a group made before the scope had an attachment into an entry with
 * room for one: its members and their memberships follow. */
static int relocate(dsup_pg *s, dsup_term key)
{
    dsup_dict_ent *e = dsup_dict_find(&s->groups, key.buf, key.len);
    if (!e)
        return 0;
    pg_group *old = dsup_dict_val(e), keep = *old;
    if (old->busy)
        return DSUP_EINVAL; /* a notify stands on it */
    dsup_dict_delete(&s->groups, key.buf, key.len); /* (the members live on in keep) */
    int created;
    e = dsup_dict_upsert_inline(&s->groups, key.buf, key.len, sizeof(pg_group) + s->attach_size, &created);
    if (!e)
        abort(); /* (dsup_xmalloc aborts first) */
    pg_group *g = dsup_dict_val(e);
    *g = keep;
    const dsup_pid *d = g_pids(g);
    for (uint32_t i = 0, n = g_count(g); i < n; i++) {
        dsup_proc *p = d[i].node == s->node->name ? dsup_proc_lookup(s->node, &d[i]) : NULL;
        if (p)
            memb_repoint(s, p, old, g);
    }
    return 0;
}

int dsup_pg_set_attach_size(dsup_pg *s, size_t size)
{
    size = (size + 7) & ~(size_t)7;
    if (!s || size == 0 || size > UINT32_MAX)
        return DSUP_EINVAL;
    if (s->attach_size)
        return s->attach_size == size ? 0 : DSUP_EINVAL;
    if (s->notifying)
        return DSUP_EINVAL;
    s->attach_size = (uint32_t)size;
    if (!s->groups.count)
        return 0;
    /* Groups made before (a scope started by pg_start_scope): room for
     * everyone's. Their keys are copied: the table changes meanwhile. */
    keybuf kb = { s, NULL, NULL, 0, 0 };
    for (size_t i = 0; i < s->groups.nslots; i++)
        for (dsup_dict_ent *e = s->groups.slots[i]; e; e = e->next) {
            uint32_t kl = e->klen;
            if (kb.len + sizeof kl + kl > kb.cap) {
                kb.cap = (kb.len + sizeof kl + kl) * 2;
                kb.b = dsup_xrealloc(kb.b, kb.cap);
            }
            memcpy(kb.b + kb.len, &kl, sizeof kl);
            memcpy(kb.b + kb.len + sizeof kl, e->key, kl);
            kb.len += sizeof kl + kl;
        }
    for (size_t off = 0; off < kb.len;) {
        uint32_t kl;
        memcpy(&kl, kb.b + off, sizeof kl);
        relocate(s, (dsup_term){ kb.b + off + sizeof kl, kl });
        off += sizeof kl + kl;
    }
    free(kb.b);
    return 0;
}

void *dsup_pg_attach(dsup_pg *s, dsup_term group, int *created)
{
    if (!s || !s->attach_size || !group.buf || !group.len)
        return NULL;
    pg_group *g = group_get(s, group, 1);
    if (!g)
        return NULL;
    if (created)
        *created = !g->held;
    if (!g->held) {
        g->held = 1;
        s->nheld++;
    }
    return g_att(g);
}

void *dsup_pg_attached(dsup_pg *s, dsup_term group)
{
    pg_group *g = s && s->attach_size ? group_get(s, group, 0) : NULL;
    return g && g->held ? g_att(g) : NULL;
}

void dsup_pg_detach(dsup_pg *s, void *att)
{
    pg_group *g = att_g(att);
    assert(g->held);
    memset(att, 0, s->attach_size); /* zeroed for the next dsup_pg_attach */
    g->held = 0;
    s->nheld--;
    group_drop_if_empty(s, g);
}

dsup_term dsup_pg_attached_key(const void *att) { return gkey(att_g(att)); }

size_t dsup_pg_attached_count(const dsup_pg *s) { return s ? s->nheld : 0; }

void dsup_pg_counts(const dsup_pg *s, size_t *groups, size_t *entries, size_t *held)
{
    *groups = visible_groups(s);
    *entries = s->groups.count;
    *held = s->nheld;
}

size_t dsup_pg_attached_slots(const dsup_pg *s) { return s ? s->groups.nslots : 0; }

size_t dsup_pg_attached_visit_slot(dsup_pg *s, size_t slot, void (*fn)(void *att, void *arg), void *arg)
{
    size_t seen = 0;
    if (!s || slot >= s->groups.nslots)
        return 0;
    for (dsup_dict_ent *e = s->groups.slots[slot], *next; e; e = next, seen++) {
        next = e->next;
        pg_group *g = dsup_dict_val(e);
        if (g->held)
            fn(g_att(g), arg);
    }
    return seen;
}

void dsup_pg_foreach_attached(dsup_pg *s, void (*fn)(void *att, void *arg), void *arg)
{
    if (!s || !s->nheld)
        return;
    for (size_t i = 0; i < s->groups.nslots; i++)
        dsup_pg_attached_visit_slot(s, i, fn, arg);
}
