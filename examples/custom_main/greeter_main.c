/* dsup-custom — your own node program: register worker types, then hand
 * the command line to dsup_main (the same options as dsup-node).
 *
 *   cc -rdynamic -o dsup-custom greeter_main.c $(pkg-config --cflags --libs dsup)
 *   ./dsup-custom --name greeter@127.0.0.1 --cookie secret
 *
 * (-rdynamic lets plugins given with --load use the node's dsup_* and ei_*
 * functions.) From Elixir:
 *
 *   {:ok, pid} = GenServer.call({:dsup_node, node}, {:spawn, Examples.Greeter, []})
 *   GenServer.call(pid, {:hello, "world"})    # "hello, world"
 *   :sys.get_state(pid)                       # %{greeted: 1}
 *
 * Name may be a binary, an atom or a (latin-1) charlist. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsup.h"

typedef struct greeter {
    unsigned long greeted;
} greeter;

static int greeter_init(dsup_proc *self, dsup_term args, void **state)
{
    *state = calloc(1, sizeof(greeter));
    return *state ? 0 : -1;
}

/* Name as text into buf (NUL-terminated); its length, or -1. */
static long decode_name(dsup_term t, char *buf, long cap)
{
    int type, size, i = 0;
    if (ei_get_type(t.buf, &i, &type, &size) < 0 || size >= cap)
        return -1;
    long len = size;
    switch (type) {
    case ERL_BINARY_EXT:
        if (ei_decode_binary(t.buf, &i, buf, &len) < 0)
            return -1;
        break;
    case ERL_ATOM_EXT:
    case ERL_SMALL_ATOM_EXT:
    case ERL_ATOM_UTF8_EXT:
    case ERL_SMALL_ATOM_UTF8_EXT:
    case ERL_STRING_EXT:
        if ((type == ERL_STRING_EXT ? ei_decode_string(t.buf, &i, buf)
                                    : ei_decode_atom(t.buf, &i, buf)) < 0)
            return -1;
        len = (long)strlen(buf);
        break;
    case ERL_NIL_EXT:
        len = 0;
        break;
    default:
        return -1;
    }
    buf[len] = 0;
    return len;
}

static dsup_call_ret greeter_call(dsup_proc *self, void *state, dsup_term req, const dsup_from *from,
                                  ei_x_buff *reply)
{
    greeter *g = state;
    dsup_term el[2];
    int ar;
    char text[1024] = "hello, ";
    const long pre = 7; /* strlen("hello, ") */
    long len;
    if (dsup_term_tagged(req, "hello", &ar, el, 2) && ar == 2 &&
        (len = decode_name(el[1], text + pre, (long)sizeof text - pre)) >= 0) {
        g->greeted++;
        ei_x_encode_binary(reply, text, pre + len); /* a binary name may hold NULs */
    } else {
        ei_x_encode_tuple_header(reply, 2);
        ei_x_encode_atom(reply, "error");
        ei_x_encode_atom(reply, "unknown_call");
    }
    return DSUP_REPLY;
}

static void greeter_terminate(dsup_proc *self, void *state, dsup_term reason) { free(state); }

static int greeter_state(dsup_proc *self, void *state, ei_x_buff *out)
{
    ei_x_encode_map_header(out, 1);
    ei_x_encode_atom(out, "greeted");
    return ei_x_encode_ulong(out, ((greeter *)state)->greeted);
}

static const dsup_worker_type greeter_type = {
    .name = "Elixir.Examples.Greeter",
    .init = greeter_init,
    .handle_call = greeter_call,
    .terminate = greeter_terminate,
    .encode_state = greeter_state,
};

int main(int argc, char **argv)
{
    if (dsup_register_worker_type(&greeter_type) < 0) {
        fprintf(stderr, "dsup-custom: cannot register %s\n", greeter_type.name);
        return 1;
    }
    return dsup_main(argc, argv);
}
