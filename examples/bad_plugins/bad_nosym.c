/* A broken plugin for the tests: it forgot to export dsup_plugin_init, so
 * dsup-node must refuse it ("does not export dsup_plugin_init()") and exit
 * non-zero before starting. */
#include "dsup.h"

__attribute__((visibility("default"))) int dsup_plugin_initialize(void) { return DSUP_ABI_VERSION; }
