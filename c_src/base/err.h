/* err.h — the internal side of dsup_err (include/dsup.h): short names for
 * logs and for atoms in error terms. */
#ifndef DSUP_ERR_H
#define DSUP_ERR_H

#include "dsup.h"

/* "einval", "enotup", ... (the enum's name, lower case, no prefix);
 * "eunknown" for any other value. Valid as an atom. */
const char *dsup_err_name(int err);

#endif
