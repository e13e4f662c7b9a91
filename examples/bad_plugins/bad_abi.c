/* A broken plugin for the tests: built for another ABI version, so dsup-node
 * must refuse it ("built for ABI version 999, this node has N") and exit
 * non-zero before starting. It registers nothing. */
#include "dsup.h"

__attribute__((visibility("default"))) int dsup_plugin_init(void) { return 999; }
