/* The worker types of the example plugin (see plugin.c). */
#ifndef EXAMPLES_H
#define EXAMPLES_H

#include "dsup.h"

extern const dsup_worker_type examples_rate_limiter;
extern const dsup_worker_type examples_hasher;

#endif
