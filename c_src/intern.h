/* intern.h — interned strings: node names and registered names are stored
 * once, so they compare by pointer and pids carry no string copies. */
#ifndef DSUP_INTERN_H
#define DSUP_INTERN_H

#include <stddef.h>

/* The unique NUL-terminated copy of s[0..len). Never freed. NULL only when
 * out of memory or when the table is full (a peer inventing node names). */
const char *dsup_intern(const char *s, size_t len);
const char *dsup_intern_str(const char *s);

#endif
