/* sup_checkpoint.c — checkpoints for crashes (opt-in per worker: a worker
 * calls dsup_checkpoint()).
 *
 * A checkpoint is one term, at most DSUP_CHECKPOINT_MAX_BYTES. The child's
 * instance keeps the latest one per child and, every SUP_CKPT_FLUSH_MS,
 * sends each new one to the instance on the node that would take the child
 * over if this node died: the name's ring successor among the hosts able to
 * run it (its owner among them without us, which is whom failover picks):
 *   {'$dsup', {checkpoint, Name, Pid, Term}}
 * So a child sends at most 1000 / SUP_CKPT_FLUSH_MS checkpoints a second
 * (later ones in the same window replace the pending one). The receiver
 * keeps the last term per name with the pid it came from, and its failover
 * restarts a lost child with it (init sees it through dsup_handoff_state)
 * when the lost copy is that pid; a checkpoint of an older copy is ignored
 * and dropped. A receiver holds at most SUP_CKPT_STORE_MAX bytes of them;
 * past that new checkpoints are refused with a rate-limited warning. */
#include <stdlib.h>
#include <string.h>

#include "dict.h"
#include "xalloc.h"
#include "intern.h"
#include "log.h"
#include "node.h"
#include "ratelimit.h"
#include "sup.h"
#include "term.h"

#define SUP_CKPT_FLUSH_MS 100
#define SUP_CKPT_STORE_MAX (256u << 20)

typedef struct ckpt {
    dsup_pid pid;                 /* the copy that published it (held) */
    dsup_term term;               /* a heap copy */
} ckpt;

typedef struct sup_ckpt {
    dsup_dict pending;            /* name -> ckpt: ours, not yet sent */
    dsup_dict store;              /* name -> ckpt: received for failover */
    size_t store_bytes;
    uv_timer_t *timer;
} sup_ckpt;


static sup_ckpt *ck_of(dsup_sup *s)
{
    if (!s->ckpt)
        s->ckpt = dsup_xcalloc(1, sizeof *s->ckpt);
    return s->ckpt;
}

static void free_ckpt(void *v)
{
    ckpt *k = v;
    if (!k)
        return;
    dsup_pid_release(&k->pid);
    dsup_term_free(&k->term);
    free(k);
}

/* Put (replace) name -> {pid, term} into d; returns the bytes added/removed. */
static long put(dsup_dict *d, dsup_term name, const dsup_pid *pid, dsup_term term)
{
    ckpt *k = dsup_xcalloc(1, sizeof *k);
    if (!k || !(k->term = dsup_term_dup(term)).buf) {
        free(k);
        return -1;
    }
    k->pid = *pid;
    dsup_pid_hold(&k->pid);
    dsup_dict_ent *e = dsup_dict_upsert(d, name.buf, name.len, NULL);
    if (!e) {
        free_ckpt(k);
        return -1;
    }
    long delta = (long)term.len;
    ckpt *old = dsup_dict_get(e);
    if (old) {
        delta -= (long)old->term.len;
        free_ckpt(old);
    }
    dsup_dict_set(e, k);
    return delta;
}

typedef struct flush_ctx {
    dsup_sup *s;
    ei_x_buff *x;
} flush_ctx;

static void send_one(dsup_dict_ent *e, void *arg)
{
    flush_ctx *f = arg;
    ckpt *k = dsup_dict_get(e);
    dsup_sup *s = f->s;
    sup_child *c = sup_child_by_name(s, (dsup_term){ e->key, e->klen });
    if (!c || !c->shared || !dsup_pid_eq(&c->pid, &k->pid))
        return; /* ended or moved since */
    dsup_child_spec cs = sup_child_spec(c);
    const char *node = sup_place_successor(s, &cs, s->node->name);
    const dsup_pid *host = node ? sup_host_on(s, node) : NULL;
    if (!host)
        return; /* no other host can run it: nobody to take it over */
    dsup_pid to = *host;
    ei_x_buff *x = f->x;
    dsup_x_reset(x);
    ei_x_encode_tuple_header(x, 2);
    dsup_x_encode_atom(x, "$dsup");
    ei_x_encode_tuple_header(x, 4);
    dsup_x_encode_atom(x, "checkpoint");
    dsup_x_encode_term(x, (dsup_term){ e->key, e->klen });
    dsup_x_encode_pid(x, &k->pid);
    dsup_x_encode_term(x, k->term);
    dsup_send(s->proc, &to, x);
}

static void on_flush(uv_timer_t *t)
{
    dsup_sup *s = t->data;
    sup_ckpt *ck = s->ckpt;
    if (!ck || !s->proc)
        return;
    flush_ctx f = { s, dsup_term_scratch(s->node) };
    dsup_dict_foreach(&ck->pending, send_one, &f);
    dsup_term_scratch_release(f.x);
    dsup_dict_free(&ck->pending, free_ckpt);
    memset(&ck->pending, 0, sizeof ck->pending);
}

static dsup_sup *sup_of_child(dsup_proc *self, sup_child **child)
{
    if (!self || !self->has_parent)
        return NULL;
    dsup_pid parent = dsup_proc_parent(self);
    for (dsup_sup *s = dsup_sups_of(self->node); s; s = s->next) {
        if (s->proc && dsup_pid_eq(dsup_self(s->proc), &parent)) {
            dsup_pid pid = dsup_proc_pid(self);
            sup_child *c = sup_child_by_pid(s, &pid);
            if (!c || !c->local)
                return NULL;
            *child = c;
            return s;
        }
    }
    return NULL;
}

int dsup_checkpoint(dsup_proc *self, dsup_term state)
{
    sup_child *c;
    dsup_sup *s = sup_of_child(self, &c);
    if (!s)
        return DSUP_ENOTFOUND; /* not a supervised child */
    if (s->stopping)
        return DSUP_ENOTUP;
    if (!state.buf || state.len == 0)
        return DSUP_EINVAL;
    if (state.len > DSUP_CHECKPOINT_MAX_BYTES)
        return DSUP_ETOOBIG;
    sup_ckpt *ck = ck_of(s);
    if (!ck || put(&ck->pending, sup_child_name(c), &c->pid, state) == -1)
        return DSUP_ENOMEM;
    if (!ck->timer && (ck->timer = dsup_xmalloc(sizeof *ck->timer))) {
        uv_timer_init(s->node->loop, ck->timer);
        ck->timer->data = s;
    }
    if (ck->timer && !uv_is_active((uv_handle_t *)ck->timer))
        uv_timer_start(ck->timer, on_flush, SUP_CKPT_FLUSH_MS, 0);
    return 0;
}

int sup_checkpoint_msg(dsup_sup *s, dsup_term ev)
{
    dsup_term el[5];
    int ar, i = 0;
    dsup_pid pid;
    if (dsup_term_tagged(ev, "child_down", &ar, el, 5) && ar == 4) {
        /* a child that ended for good: its checkpoint is of no use (the
         * event itself is for sup_cache.c: not consumed) */
        dsup_dict_ent *e = s->ckpt ? dsup_dict_find(&s->ckpt->store, el[1].buf, el[1].len) : NULL;
        if (e && dsup_decode_pid(s->node, el[2].buf, &i, &pid) == 0 && dsup_pid_eq(&((ckpt *)dsup_dict_get(e))->pid, &pid)) {
            dsup_term t = sup_checkpoint_take(s, el[1], &pid);
            dsup_term_free(&t);
        }
        return 0;
    }
    if (!dsup_term_tagged(ev, "checkpoint", &ar, el, 5) || ar != 4)
        return 0;
    sup_ckpt *ck = ck_of(s);
    if (!ck || dsup_decode_pid(s->node, el[2].buf, &i, &pid) < 0 || el[3].len > DSUP_CHECKPOINT_MAX_BYTES)
        return 1;
    if (ck->store_bytes + el[3].len > SUP_CKPT_STORE_MAX) {
        unsigned dropped;
        if (dsup_ratelimit_ok(&s->node->sup->ckpt_full_log, dsup_node_now(s->node), &dropped))
            LOG_WARN("%s: checkpoint store full (%u MiB); refusing new checkpoints (%u similar lines suppressed)",
                     s->name, SUP_CKPT_STORE_MAX >> 20, dropped);
        return 1;
    }
    long delta = put(&ck->store, el[1], &pid, el[3]);
    if (delta != -1)
        ck->store_bytes += (size_t)delta;
    return 1;
}

/* Take the checkpoint of `name` if it came from the lost copy `pid`: a heap
 * term the caller frees with dsup_term_free ({NULL, 0} when none). */
dsup_term sup_checkpoint_take(dsup_sup *s, dsup_term name, const dsup_pid *pid)
{
    dsup_term t = { NULL, 0 };
    sup_ckpt *ck = s->ckpt;
    ckpt *k = ck ? dsup_dict_remove(&ck->store, name.buf, name.len) : NULL;
    if (!k)
        return t;
    ck->store_bytes -= k->term.len;
    if (dsup_pid_eq(&k->pid, pid)) {
        t = k->term;
        k->term.buf = NULL;
    }
    free_ckpt(k);
    return t;
}

/* {checkpoint_of, Name} -> {ok, Term} | none: the checkpoint kept here for
 * a child that runs on another node (for operators and tests). */
void sup_checkpoint_encode(dsup_sup *s, dsup_term name, ei_x_buff *reply)
{
    dsup_dict_ent *e = s->ckpt ? dsup_dict_find(&s->ckpt->store, name.buf, name.len) : NULL;
    if (!e) {
        dsup_x_encode_atom(reply, "none");
        return;
    }
    ei_x_encode_tuple_header(reply, 2);
    dsup_x_encode_atom(reply, "ok");
    dsup_x_encode_term(reply, ((ckpt *)dsup_dict_get(e))->term);
}

void sup_checkpoint_free(dsup_sup *s)
{
    sup_ckpt *ck = s->ckpt;
    if (!ck)
        return;
    dsup_dict_free(&ck->pending, free_ckpt);
    dsup_dict_free(&ck->store, free_ckpt);
    if (ck->timer)
        uv_close((uv_handle_t *)ck->timer, (uv_close_cb)free);
    free(ck);
    s->ckpt = NULL;
}
