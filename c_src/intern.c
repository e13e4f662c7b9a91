/* intern.c — an open-addressing string set. Entries live for the whole run;
 * a cap bounds the memory a hostile peer can make us spend on names. */
#include "intern.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define INTERN_MAX 1000000

static const char **slots;
static size_t nslots, nused;

static uint64_t fnv1a(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static int grow(void)
{
    size_t n = nslots ? nslots * 2 : 256;
    const char **ns = calloc(n, sizeof *ns);
    if (!ns)
        return -1;
    for (size_t i = 0; i < nslots; i++) {
        if (!slots[i])
            continue;
        size_t j = fnv1a(slots[i], strlen(slots[i])) & (n - 1);
        while (ns[j])
            j = (j + 1) & (n - 1);
        ns[j] = slots[i];
    }
    free(slots);
    slots = ns;
    nslots = n;
    return 0;
}

const char *dsup_intern(const char *s, size_t len)
{
    if (nused * 2 >= nslots && grow())
        return NULL;
    size_t j = fnv1a(s, len) & (nslots - 1);
    while (slots[j]) {
        if (strncmp(slots[j], s, len) == 0 && slots[j][len] == 0)
            return slots[j];
        j = (j + 1) & (nslots - 1);
    }
    if (nused >= INTERN_MAX)
        return NULL;
    char *copy = malloc(len + 1);
    if (!copy)
        return NULL;
    memcpy(copy, s, len);
    copy[len] = 0;
    slots[j] = copy;
    nused++;
    return copy;
}

const char *dsup_intern_str(const char *s) { return dsup_intern(s, strlen(s)); }
