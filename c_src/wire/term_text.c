/* term_text.c — printing terms for humans without trusting their shape. */
#include "term_text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 1 when no container in t nests deeper than max, 0 otherwise (or when
 * malformed). Iterative: one counter of elements still to read per open
 * container, at most max of them. */
static int depth_within(dsup_term t, int max)
{
    long left[DSUP_TERM_TEXT_DEPTH + 1];
    int d = 0, i = 0;
    left[0] = 1;
    while (d >= 0) {
        if (left[d] == 0) {
            d--;
            continue;
        }
        left[d]--;
        int type, size, arity;
        if (i < 0 || (size_t)i >= t.len || ei_get_type(t.buf, &i, &type, &size) < 0)
            return 0;
        long open = 0;
        switch (type) {
        case ERL_SMALL_TUPLE_EXT:
        case ERL_LARGE_TUPLE_EXT:
            if (ei_decode_tuple_header(t.buf, &i, &arity) < 0)
                return 0;
            open = arity;
            break;
        case ERL_LIST_EXT:
            if (ei_decode_list_header(t.buf, &i, &arity) < 0)
                return 0;
            open = (long)arity + 1; /* the elements and the tail */
            break;
        case ERL_MAP_EXT:
            if (ei_decode_map_header(t.buf, &i, &arity) < 0)
                return 0;
            open = 2L * arity;
            break;
        default: /* a leaf (funs print without their environment) */
            if (dsup_term_next(t.buf, &i) < 0)
                return 0;
            continue;
        }
        if (open == 0)
            continue;
        if (d + 1 > max)
            return 0;
        left[++d] = open;
    }
    return 1;
}

char *dsup_term_text(dsup_term t, char *out, size_t cap)
{
    if (!cap)
        return out;
    if (t.len > DSUP_TERM_TEXT_BYTES) {
        snprintf(out, cap, "<term of %zu bytes>", t.len);
        return out;
    }
    if (!t.len || !depth_within(t, DSUP_TERM_TEXT_DEPTH)) {
        if (t.len)
            snprintf(out, cap, "<term of %zu bytes, nested more than %d deep>", t.len, DSUP_TERM_TEXT_DEPTH);
        else
            snprintf(out, cap, "?");
        return out;
    }
    char *txt = NULL;
    int i = 0;
    if (ei_s_print_term(&txt, t.buf, &i) < 0 || !txt) {
        free(txt);
        snprintf(out, cap, "?");
        return out;
    }
    size_t n = strlen(txt);
    if (n >= cap && cap > 4) {
        memcpy(out, txt, cap - 4);
        memcpy(out + cap - 4, "...", 4);
    } else {
        snprintf(out, cap, "%s", txt);
    }
    free(txt);
    return out;
}
