/* term_text.h — a term as erl prints it, for log lines and status pages,
 * safe on any term a peer sends. */
#ifndef DSUP_TERM_TEXT_H
#define DSUP_TERM_TEXT_H

#include <stddef.h>

#include "dsup.h"

/* Deeper or larger terms are summarised rather than printed: ei's printer
 * recurses once per level (a 100,000-deep exit reason would overflow the C
 * stack) and prints the whole term before it can be cut. */
#define DSUP_TERM_TEXT_DEPTH 64
#define DSUP_TERM_TEXT_BYTES 65536

/* Print t into out[0..cap), NUL-terminated, cut with "..." when longer; a
 * term too deep or too large reads "<term of N bytes, nested more than 64
 * deep>" / "<term of N bytes>", a malformed one "?". Returns out. */
char *dsup_term_text(dsup_term t, char *out, size_t cap);

#endif
