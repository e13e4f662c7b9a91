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
#include "xalloc.h"

#include <stddef.h>
#include <stdint.h>
#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

typedef struct ient {
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

static ient **slots;
static size_t nslots, nused, npinned;
static ient **pend;
static size_t npend, cappend;
static ient *cur_peer;
static size_t quota = DSUP_INTERN_DEFAULT_QUOTA;
static size_t refused;
static uv_prepare_t sweeper;
static int attached;

static ient *E(const char *s) { return (ient *)(void *)(s - offsetof(ient, s)); }

static uint32_t fnv1a(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return (uint32_t)(h ^ (h >> 32));
}

static int resize(size_t n)
{
    ient **ns = dsup_xcalloc(n, sizeof *ns);
    for (size_t i = 0; i < nslots; i++) {
        if (!slots[i])
            continue;
        size_t j = slots[i]->hash & (n - 1);
        while (ns[j])
            j = (j + 1) & (n - 1);
        ns[j] = slots[i];
    }
    free(slots);
    slots = ns;
    nslots = n;
    return 0;
}

/* The slot holding s[0..len), or the empty slot where it would go. */
static size_t probe(const char *s, size_t len, uint32_t h)
{
    size_t j = h & (nslots - 1);
    for (ient *e; (e = slots[j]); j = (j + 1) & (nslots - 1))
        if (e->hash == h && e->len == len && memcmp(e->s, s, len) == 0)
            break;
    return j;
}

static void table_remove(ient *e)
{
    size_t i = probe(e->s, e->len, e->hash);
    if (slots[i] != e)
        return;
    slots[i] = NULL;
    nused--;
    /* Backward-shift the cluster that follows: lookups need no tombstones. */
    for (size_t j = i;;) {
        j = (j + 1) & (nslots - 1);
        if (!slots[j])
            break;
        size_t home = slots[j]->hash & (nslots - 1);
        int movable = (i <= j) ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) {
            slots[i] = slots[j];
            slots[j] = NULL;
            i = j;
        }
    }
}

static int freeable(const ient *e) { return !e->pinned && e->refs == 0 && e->created == 0; }

static void make_pending(ient *e)
{
    if (e->pending || !freeable(e))
        return;
    if (npend == cappend) {
        size_t nc = cappend ? cappend * 2 : 256;
        ient **np = dsup_xrealloc(pend, nc * sizeof *np);
        pend = np;
        cappend = nc;
    }
    e->pending = 1;
    pend[npend++] = e;
}

static ient *insert(const char *s, size_t len, uint32_t h)
{
    if ((nused + 1) * 2 > nslots && resize(nslots ? nslots * 2 : MIN_SLOTS) < 0)
        return NULL;
    ient *e = dsup_xmalloc(sizeof *e + len + 1);
    memset(e, 0, sizeof *e);
    e->hash = h;
    e->len = (uint32_t)len;
    memcpy(e->s, s, len);
    e->s[len] = 0;
    slots[probe(s, len, h)] = e;
    nused++;
    return e;
}

const char *dsup_intern_find(const char *s, size_t len)
{
    if (!nslots)
        return NULL;
    ient *e = slots[probe(s, len, fnv1a(s, len))];
    return e ? e->s : NULL;
}

const char *dsup_intern(const char *s, size_t len)
{
    uint32_t h = fnv1a(s, len);
    ient *e = nslots ? slots[probe(s, len, h)] : NULL;
    if (!e && !(e = insert(s, len, h)))
        return NULL;
    if (!e->pinned) {
        e->pinned = 1;
        npinned++;
    }
    return e->s;
}

const char *dsup_intern_str(const char *s) { return dsup_intern(s, strlen(s)); }

static void warn_quota(void)
{
    static time_t last;
    static size_t suppressed;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    if (last && ts.tv_sec - last < 10) {
        suppressed++;
        return;
    }
    LOG_WARN("peer %s reached its quota of %zu names (--peer-name-quota): messages that "
             "would add more are dropped (%zu more since the last warning)",
             cur_peer->s, quota, suppressed);
    last = ts.tv_sec;
    suppressed = 0;
}

const char *dsup_intern_peer(const char *s, size_t len)
{
    uint32_t h = fnv1a(s, len);
    ient *e = nslots ? slots[probe(s, len, h)] : NULL;
    if (e)
        return e->s;
    if (cur_peer && quota && cur_peer->created >= quota) {
        refused++;
        warn_quota();
        return NULL;
    }
    if (!(e = insert(s, len, h)))
        return NULL;
    if (cur_peer) {
        e->creator = cur_peer;
        cur_peer->created++;
    }
    make_pending(e);
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

void dsup_intern_set_peer(const char *peer) { cur_peer = peer ? E(peer) : NULL; }
void dsup_intern_set_quota(size_t max_per_peer) { quota = max_per_peer; }

void dsup_intern_sweep(void)
{
    if (!npend)
        return;
    while (npend) {
        ient *e = pend[--npend];
        e->pending = 0;
        if (!freeable(e))
            continue;
        table_remove(e);
        if (e->creator && --e->creator->created == 0)
            make_pending(e->creator);
        free(e);
    }
    /* Give memory back after a flood; halve at most down to a quarter full. */
    size_t n = nslots;
    while (n > MIN_SLOTS && nused * 8 < n)
        n /= 2;
    if (n != nslots)
        resize(n);
    if (cappend > 65536) { /* kept between turns, up to what a busy turn needs */
        free(pend);
        pend = NULL;
        cappend = 0;
    }
}

static void on_prepare(uv_prepare_t *h) { dsup_intern_sweep(); }

int dsup_intern_attach(uv_loop_t *loop)
{
    if (attached)
        return 0;
    if (uv_prepare_init(loop, &sweeper) < 0 || uv_prepare_start(&sweeper, on_prepare) < 0)
        return -1;
    uv_unref((uv_handle_t *)&sweeper); /* it never keeps the loop alive */
    attached = 1;
    return 0;
}

void dsup_intern_detach(void)
{
    if (!attached)
        return;
    LOG_INFO("name table at exit: %zu names, %zu of them kept for the run", nused, npinned);
    uv_prepare_stop(&sweeper);
    if (!uv_is_closing((uv_handle_t *)&sweeper))
        uv_close((uv_handle_t *)&sweeper, NULL);
    attached = 0;
}

void dsup_intern_get_stats(dsup_intern_stats *st)
{
    st->entries = nused;
    st->pinned = npinned;
    st->pending = npend;
    st->slots = nslots;
    st->refused = refused;
}

size_t dsup_intern_peer_count(const char *peer)
{
    const char *p = peer ? dsup_intern_find(peer, strlen(peer)) : NULL;
    return p ? E(p)->created : 0;
}

int dsup_intern_is_pinned(const char *s) { return s && E(s)->pinned; }
unsigned dsup_intern_refs(const char *s) { return s ? E(s)->refs : 0; }
