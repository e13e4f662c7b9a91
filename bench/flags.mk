# Used by bench/run.sh only: `make -s -f Makefile -f bench/flags.mk bench-flags`
# prints the project's compiler, CFLAGS and link libraries (as the unit tests
# link against build/libdsup.a), so bench/bench_ring.c is built like the rest.
.PHONY: bench-flags
bench-flags:
	@echo 'BENCH_CC=$(CC)'
	@echo 'BENCH_CFLAGS=$(CFLAGS)'
	@echo 'BENCH_LDFLAGS=$(LDFLAGS)'
	@echo 'BENCH_LIBS=$(TEST_EI) $(LDLIBS)'
