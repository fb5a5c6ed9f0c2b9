// Micro benchmarks of the per-loop slab (engine/slab.c).
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdlib>
#include <vector>

extern "C" {
#include "slab.h"
}

namespace {

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * kKiB;

// The hot path of a receive: lease one 16 KiB buffer and give it back. After the first
// iteration the free list always has a warm buffer, so this measures lease + put alone.
void BM_LeasePut16K(benchmark::State &state)
{
    rill__slab s;
    if (rill__slab_init(&s, 64 * kMiB) != 0) {
        state.SkipWithError("slab init failed");
        return;
    }
    for (auto _ : state) {
        rill_buf *b;
        if (rill__slab_lease(&s, 16 * kKiB, &b) != 0) {
            state.SkipWithError("lease failed");
            break;
        }
        benchmark::DoNotOptimize(b->data);
        rill__buf_put(b);
    }
    state.SetItemsProcessed(state.iterations());
    rill__slab_fini(&s);
}
BENCHMARK(BM_LeasePut16K);

// A burst: lease `batch` buffers of one size, then release them all, as a loop iteration that
// reads from many connections does. The regions are mapped once, outside the timed loop.
void BM_LeasePutBurst(benchmark::State &state)
{
    const size_t size = static_cast<size_t>(state.range(0));
    const size_t batch = static_cast<size_t>(state.range(1));
    rill__slab s;
    if (rill__slab_init(&s, 256 * kMiB) != 0) {
        state.SkipWithError("slab init failed");
        return;
    }
    std::vector<rill_buf *> held(batch);
    for (auto _ : state) {
        for (size_t i = 0; i < batch; i++) {
            if (rill__slab_lease(&s, size, &held[i]) != 0) {
                state.SkipWithError("lease failed");
                rill__slab_fini(&s);
                return;
            }
        }
        benchmark::ClobberMemory();
        for (size_t i = 0; i < batch; i++)
            rill__buf_put(held[i]);
    }
    state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(batch));
    rill__slab_fini(&s);
}
BENCHMARK(BM_LeasePutBurst)->Args({ 512, 256 })->Args({ 16 * 1024, 256 })->Args({ 64 * 1024, 64 });

// Take and drop an extra reference, as rill_send_bufs does with a received buffer.
void BM_RefPut(benchmark::State &state)
{
    rill__slab s;
    rill_buf *b;
    if (rill__slab_init(&s, 1 * kMiB) != 0 || rill__slab_lease(&s, 512, &b) != 0) {
        state.SkipWithError("setup failed");
        return;
    }
    for (auto _ : state) {
        rill__buf_get(b);
        benchmark::ClobberMemory();
        rill__buf_put(b);
    }
    rill__buf_put(b);
    rill__slab_fini(&s);
}
BENCHMARK(BM_RefPut);

} // namespace

BENCHMARK_MAIN();
