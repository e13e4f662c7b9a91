/* builtin.c — registers the built-in worker types. */
#include "workers.h"

void dsup_register_builtin_workers(void)
{
    /* Already-registered names are refused quietly: calling twice is fine. */
    dsup_register_worker_type(&dsup_worker_echo);
    dsup_register_worker_type(&dsup_worker_counter);
    dsup_register_worker_type(&dsup_worker_kv);
}
