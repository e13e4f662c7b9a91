/* bench_ring.c — microbenchmark of the ring and phash2.
 *
 * bench/run.sh builds it against build/libdsup.a with the Makefile's CC,
 * CFLAGS and libraries (bench/flags.mk) and runs it once per repetition
 * beside the same loops on the BEAM (rows ring_node_for, phash2_small,
 * phash2_1k of bench/sup_bench.erl). Standalone, from the repository root:
 *
 *   cc -O2 -Ic_src -o build/bench_ring bench/bench_ring.c c_src/phash2.c c_src/ring.c -lm \
 *     && build/bench_ring
 *
 * Prints one line each:
 *   ring_node_for_20_nodes   ns per dsup_ring_node_for() on a 20-node ring
 *                            (keys {user, N} encoded with the version byte)
 *   phash2_small_term        ns per dsup_phash2() of {user, 12345}
 *   phash2_1k_term           ns per dsup_phash2() of a 1 KiB binary
 * BEAM side: sup_bench:beam_hash/1 (bl_ring = libring's HashRing, erlang:phash2/2). */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "phash2.h"
#include "ring.h"

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* <<131, {user, N}>> with N as INTEGER_EXT: 15 bytes. */
static size_t encode_key(uint8_t *b, int32_t n)
{
    size_t k = 0;
    b[k++] = 131;
    b[k++] = 104; /* SMALL_TUPLE_EXT */
    b[k++] = 2;
    b[k++] = 119; /* SMALL_ATOM_UTF8_EXT */
    b[k++] = 4;
    memcpy(b + k, "user", 4);
    k += 4;
    b[k++] = 98; /* INTEGER_EXT */
    b[k++] = (uint8_t)((uint32_t)n >> 24);
    b[k++] = (uint8_t)((uint32_t)n >> 16);
    b[k++] = (uint8_t)((uint32_t)n >> 8);
    b[k++] = (uint8_t)n;
    return k;
}

int main(void)
{
    enum { NKEYS = 4096, LOOKUPS = 4000000, HASHES = 4000000, HASHES_1K = 400000 };
    static uint8_t keys[NKEYS][16];
    static size_t klen[NKEYS];
    volatile uintptr_t sink = 0;

    dsup_ring *r = dsup_ring_new();
    for (int i = 1; i <= 20; i++) {
        char name[64];
        snprintf(name, sizeof name, "node%d@host", i);
        if (dsup_ring_add_node(r, name, 0) != 0) {
            fprintf(stderr, "add_node failed\n");
            return 1;
        }
    }
    for (int i = 0; i < NKEYS; i++)
        klen[i] = encode_key(keys[i], i * 7919);

    /* warm up, then time */
    for (int i = 0; i < NKEYS; i++)
        sink += (uintptr_t)dsup_ring_node_for(r, (const char *)keys[i], klen[i]);
    double t0 = now_ns();
    for (int i = 0; i < LOOKUPS; i++) {
        int k = i & (NKEYS - 1);
        sink += (uintptr_t)dsup_ring_node_for(r, (const char *)keys[k], klen[k]);
    }
    double t1 = now_ns();
    printf("ring_node_for_20_nodes %.1f ns/op\n", (t1 - t0) / LOOKUPS);

    uint8_t small[16];
    size_t slen = encode_key(small, 12345);
    uint32_t h = 0;
    t0 = now_ns();
    for (int i = 0; i < HASHES; i++) {
        small[14] = (uint8_t)i; /* vary the term so nothing is hoisted */
        dsup_phash2((const char *)small, slen, 0, &h);
        sink += h;
    }
    t1 = now_ns();
    printf("phash2_small_term %.1f ns/op\n", (t1 - t0) / HASHES);

    static uint8_t big[6 + 1024];
    big[0] = 131;
    big[1] = 109; /* BINARY_EXT */
    big[2] = 0;
    big[3] = 0;
    big[4] = 4;
    big[5] = 0;
    for (int i = 0; i < 1024; i++)
        big[6 + i] = (uint8_t)(i * 31 + 7);
    t0 = now_ns();
    for (int i = 0; i < HASHES_1K; i++) {
        big[6] = (uint8_t)i;
        dsup_phash2((const char *)big, sizeof big, 0, &h);
        sink += h;
    }
    t1 = now_ns();
    printf("phash2_1k_term %.1f ns/op\n", (t1 - t0) / HASHES_1K);

    dsup_ring_free(r);
    return sink == 42 ? 2 : 0;
}
