/* A plugin as an ABI 1 build of dsup produced it, for the tests: its worker
 * type struct ends at state_size (no reserved slots), it registers through
 * the plain dsup_register_worker_type symbol (no size) and returns 1 from
 * dsup_plugin_init. A node of a newer ABI must still load and run it. */
#include <string.h>

#include "dsup.h"

/* The ABI 1 layout of dsup_worker_type, field for field. */
typedef struct abi1_worker_type {
    const char *name;
    int (*init)(dsup_proc *self, dsup_term args, void **state);
    dsup_call_ret (*handle_call)(dsup_proc *self, void *state, dsup_term request,
                                 const dsup_from *from, ei_x_buff *reply);
    void (*handle_cast)(dsup_proc *self, void *state, dsup_term msg);
    void (*handle_info)(dsup_proc *self, void *state, dsup_term msg);
    void (*terminate)(dsup_proc *self, void *state, dsup_term reason);
    int (*encode_state)(dsup_proc *self, void *state, ei_x_buff *out);
    int (*replace_state)(dsup_proc *self, void **state, dsup_term new_state);
    size_t state_size;
} abi1_worker_type;

/* The ABI 1 entry point (the header's macro would pass a size). */
DSUP_EXTERN int (dsup_register_worker_type)(const dsup_worker_type *type);

/* {abi1, Request} for every call. */
static dsup_call_ret abi1_call(dsup_proc *self, void *state, dsup_term request, const dsup_from *from,
                               ei_x_buff *reply)
{
    ei_x_encode_tuple_header(reply, 2);
    dsup_x_encode_atom(reply, "abi1");
    dsup_x_encode_term(reply, request);
    return DSUP_REPLY;
}

/* Followed in memory by bytes that are not part of the struct: a node that
 * read an ABI 2 struct here would see them as reserved fields. */
static struct {
    abi1_worker_type type;
    unsigned char after[64];
} abi1 = {
    .type = { .name = "abi1_echo", .handle_call = abi1_call },
    .after = { [0 ... 63] = 0xA5 },
};

__attribute__((visibility("default"))) int dsup_plugin_init(void)
{
    if ((dsup_register_worker_type)((const dsup_worker_type *)&abi1.type) < 0)
        return -1;
    return 1;
}
