/* intern.c — an open-addressing string set with reference-counted entries.
 *
 * Each string is preceded by a small header (refs, class, the peer it is
 * charged to), so holding or releasing a name is one increment on memory the
 * caller already touches. Interning an existing name is one hash lookup and
 * allocates nothing. Counted entries whose count drops to zero go on a
 * pending list and are freed at the end of the loop turn (dsup_intern_sweep),
 * never in the middle of handling a message, where decoded pids still point
 * at them. Sweeping every turn, in every build, makes a missing hold show up
 * at once under ASan in the test suites. */
#include "intern.h"
#include "dict.h"
#include "xalloc.h"

#include <stddef.h>
#include <stdint.h>
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

struct dsup_intern_tab;
typedef struct ient {
    struct dsup_intern_tab *tab; /* the table (node) it belongs to: holds need no context */
    struct ient *creator; /* the peer this entry is charged to, or NULL */
    uint32_t refs;
    uint32_t created;     /* live counted entries charged to this one (as a peer) */
    uint32_t hash;
    uint32_t len;
    uint8_t pinned;
    uint8_t pending;      /* on the pending list */
    char s[];             /* NUL-terminated */
} ient;

#define MIN_SLOTS 256

/* One node's table. */
struct dsup_intern_tab {
    void *owner;
    ient **slots;
    size_t nslots, nused, npinned;
    ient **pend;
    size_t npend, cappend;
    ient *cur_peer;
    size_t quota;
    size_t refused;
    ient *recent[2];      /* the last names looked up (see recent_find) */
    unsigned recent_next;
    uv_prepare_t sweeper;
    int attached;
    time_t warn_last;
    size_t warn_suppressed;
};

dsup_intern_tab *dsup_intern_new(void *owner)
{
    dsup_intern_tab *t = dsup_xcalloc(1, sizeof *t);
    t->owner = owner;
    t->quota = DSUP_INTERN_DEFAULT_QUOTA;
    return t;
}

static ient *E(const char *s) { return (ient *)(void *)(s - offsetof(ient, s)); }

/* Messages name the same node or two over and over (a peer's pids carry its
 * name): comparing the bytes with the last names found skips the hash and
 * the probe. Entries leave the table only through table_remove, which
 * forgets them here too. */
static ient *recent_find(const dsup_intern_tab *t, const char *s, size_t len)
{
    for (size_t i = 0; i < 2; i++) {
        ient *e = t->recent[i];
        if (e && e->len == len && memcmp(e->s, s, len) == 0)
            return e;
    }
    return NULL;
}

static void recent_add(dsup_intern_tab *t, ient *e)
{
    t->recent[t->recent_next++ & 1] = e;
}

static int resize(dsup_intern_tab *t, size_t n)
{
    ient **ns = dsup_xcalloc(n, sizeof *ns);
    for (size_t i = 0; i < t->nslots; i++) {
        if (!t->slots[i])
            continue;
        size_t j = t->slots[i]->hash & (n - 1);
        while (ns[j])
            j = (j + 1) & (n - 1);
        ns[j] = t->slots[i];
    }
    free(t->slots);
    t->slots = ns;
    t->nslots = n;
    return 0;
}

/* The slot holding s[0..len), or the empty slot where it would go. */
static size_t probe(const dsup_intern_tab *t, const char *s, size_t len, uint32_t h)
{
    size_t j = h & (t->nslots - 1);
    for (ient *e; (e = t->slots[j]); j = (j + 1) & (t->nslots - 1))
        if (e->hash == h && e->len == len && memcmp(e->s, s, len) == 0)
            break;
    return j;
}

static void table_remove(ient *e)
{
    dsup_intern_tab *t = e->tab;
    size_t i = probe(t, e->s, e->len, e->hash);
    if (t->slots[i] != e)
        return;
    t->slots[i] = NULL;
    t->nused--;
    for (size_t k = 0; k < 2; k++)
        if (t->recent[k] == e)
            t->recent[k] = NULL;
    /* Backward-shift the cluster that follows: lookups need no tombstones. */
    for (size_t j = i;;) {
        j = (j + 1) & (t->nslots - 1);
        if (!t->slots[j])
            break;
        size_t home = t->slots[j]->hash & (t->nslots - 1);
        int movable = (i <= j) ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) {
            t->slots[i] = t->slots[j];
            t->slots[j] = NULL;
            i = j;
        }
    }
}

static int freeable(const ient *e) { return !e->pinned && e->refs == 0 && e->created == 0; }

static void make_pending(ient *e)
{
    dsup_intern_tab *t = e->tab;
    if (e->pending || !freeable(e))
        return;
    if (t->npend == t->cappend) {
        size_t nc = t->cappend ? t->cappend * 2 : 256;
        ient **np = dsup_xrealloc(t->pend, nc * sizeof *np);
        t->pend = np;
        t->cappend = nc;
    }
    e->pending = 1;
    t->pend[t->npend++] = e;
}

static ient *insert(dsup_intern_tab *t, const char *s, size_t len, uint32_t h)
{
    if ((t->nused + 1) * 2 > t->nslots && resize(t, t->nslots ? t->nslots * 2 : MIN_SLOTS) < 0)
        return NULL;
    ient *e = dsup_xmalloc(sizeof *e + len + 1);
    memset(e, 0, sizeof *e);
    e->tab = t;
    e->hash = h;
    e->len = (uint32_t)len;
    memcpy(e->s, s, len);
    e->s[len] = 0;
    t->slots[probe(t, s, len, h)] = e;
    t->nused++;
    return e;
}

const char *dsup_intern_find(const dsup_intern_tab *t, const char *s, size_t len)
{
    if (!t->nslots)
        return NULL;
    ient *e = recent_find(t, s, len);
    if (!e)
        e = t->slots[probe(t, s, len, dsup_hash_bytes(s, len))];
    return e ? e->s : NULL;
}

const char *dsup_intern(dsup_intern_tab *t, const char *s, size_t len)
{
    uint32_t h = dsup_hash_bytes(s, len);
    ient *e = t->nslots ? t->slots[probe(t, s, len, h)] : NULL;
    if (!e && !(e = insert(t, s, len, h)))
        return NULL;
    if (!e->pinned) {
        e->pinned = 1;
        t->npinned++;
    }
    return e->s;
}

const char *dsup_intern_str(dsup_intern_tab *t, const char *s) { return dsup_intern(t, s, strlen(s)); }

static void warn_quota(dsup_intern_tab *t)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    if (t->warn_last && ts.tv_sec - t->warn_last < 10) {
        t->warn_suppressed++;
        return;
    }
    LOG_WARN("peer %s reached its quota of %zu names (--peer-name-quota): messages that "
             "would add more are dropped (%zu more since the last warning)",
             t->cur_peer->s, t->quota, t->warn_suppressed);
    t->warn_last = ts.tv_sec;
    t->warn_suppressed = 0;
}

const char *dsup_intern_peer(dsup_intern_tab *t, const char *s, size_t len)
{
    ient *e = recent_find(t, s, len);
    if (e)
        return e->s;
    uint32_t h = dsup_hash_bytes(s, len);
    e = t->nslots ? t->slots[probe(t, s, len, h)] : NULL;
    if (e) {
        recent_add(t, e);
        return e->s;
    }
    if (t->cur_peer && t->quota && t->cur_peer->created >= t->quota) {
        t->refused++;
        warn_quota(t);
        return NULL;
    }
    if (!(e = insert(t, s, len, h)))
        return NULL;
    if (t->cur_peer) {
        e->creator = t->cur_peer;
        t->cur_peer->created++;
    }
    make_pending(e);
    recent_add(t, e);
    return e->s;
}

void dsup_intern_hold(const char *s)
{
    if (s && !E(s)->pinned)
        E(s)->refs++;
}

void dsup_intern_release(const char *s)
{
    if (!s)
        return;
    ient *e = E(s);
    if (e->pinned)
        return;
    if (e->refs == 0) {
        LOG_ERROR("BUG: name '%s' released more often than held", e->s);
        assert(!"intern refcount below zero"); /* NDEBUG builds log and go on */
        return;
    }
    if (--e->refs == 0)
        make_pending(e);
}

void dsup_intern_set_peer(dsup_intern_tab *t, const char *peer) { t->cur_peer = peer ? E(peer) : NULL; }
void dsup_intern_set_quota(dsup_intern_tab *t, size_t max_per_peer) { t->quota = max_per_peer; }

void dsup_intern_sweep(dsup_intern_tab *t)
{
    if (!t->npend)
        return;
    while (t->npend) {
        ient *e = t->pend[--t->npend];
        e->pending = 0;
        if (!freeable(e))
            continue;
        table_remove(e);
        if (e->creator && --e->creator->created == 0)
            make_pending(e->creator);
        free(e);
    }
    /* Give memory back after a flood; halve at most down to a quarter full. */
    size_t n = t->nslots;
    while (n > MIN_SLOTS && t->nused * 8 < n)
        n /= 2;
    if (n != t->nslots)
        resize(t, n);
    if (t->cappend > 65536) { /* kept between turns, up to what a busy turn needs */
        free(t->pend);
        t->pend = NULL;
        t->cappend = 0;
    }
}

static void on_prepare(uv_prepare_t *h) { dsup_intern_sweep(h->data); }

int dsup_intern_attach(dsup_intern_tab *t, uv_loop_t *loop)
{
    if (t->attached)
        return 0;
    if (uv_prepare_init(loop, &t->sweeper) < 0 || uv_prepare_start(&t->sweeper, on_prepare) < 0)
        return -1;
    t->sweeper.data = t;
    uv_unref((uv_handle_t *)&t->sweeper); /* it never keeps the loop alive */
    t->attached = 1;
    return 0;
}

void dsup_intern_detach(dsup_intern_tab *t)
{
    if (!t->attached)
        return;
    LOG_INFO("name table at exit: %zu names, %zu of them kept for the run", t->nused, t->npinned);
    uv_prepare_stop(&t->sweeper);
    if (!uv_is_closing((uv_handle_t *)&t->sweeper))
        uv_close((uv_handle_t *)&t->sweeper, NULL);
    t->attached = 0;
}

void dsup_intern_get_stats(const dsup_intern_tab *t, dsup_intern_stats *st)
{
    st->entries = t->nused;
    st->pinned = t->npinned;
    st->pending = t->npend;
    st->slots = t->nslots;
    st->refused = t->refused;
}

size_t dsup_intern_peer_count(const dsup_intern_tab *t, const char *peer)
{
    const char *p = peer ? dsup_intern_find(t, peer, strlen(peer)) : NULL;
    return p ? E(p)->created : 0;
}

int dsup_intern_is_pinned(const char *s) { return s && E(s)->pinned; }
unsigned dsup_intern_refs(const char *s) { return s ? E(s)->refs : 0; }

void *dsup_intern_owner(const char *s) { return s ? E(s)->tab->owner : NULL; }

/* Called once the sweeper handle is closed (or was never attached): every
 * entry, pinned or counted, goes with the table. */
void dsup_intern_free(dsup_intern_tab *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nslots; i++)
        free(t->slots[i]);
    free(t->slots);
    free(t->pend);
    free(t);
}
