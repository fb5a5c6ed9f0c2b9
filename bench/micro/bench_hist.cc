// rill-load's latency histogram (tools/load/hist.c): the cost of recording one latency, which
// every completed request pays, of a quantile, which the report and the live line pay, and of a
// merge, which the end of a run pays once per thread.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "hist.h"

// Log-normal-ish latencies from 5 us to 50 ms, drawn before timing starts.
static std::vector<uint64_t> latencies(size_t n)
{
    std::mt19937_64 rng(42);
    std::lognormal_distribution<double> d(11.5, 1.2); // median ~100 us, in ns
    std::vector<uint64_t> v(n);
    for (auto &x : v) {
        double ns = d(rng);
        x = static_cast<uint64_t>(ns < 5e3 ? 5e3 : ns > 5e7 ? 5e7 : ns);
    }
    return v;
}

static void BM_hist_record(benchmark::State &state)
{
    auto h = std::make_unique<struct hist>();
    hist_init(h.get());
    const auto v = latencies(1 << 16);
    size_t i = 0;
    for (auto _ : state) {
        hist_record(h.get(), v[i++ & (v.size() - 1)]);
    }
    benchmark::DoNotOptimize(h->count);
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_hist_record);

static void BM_hist_quantile_p99(benchmark::State &state)
{
    auto h = std::make_unique<struct hist>();
    hist_init(h.get());
    for (uint64_t x : latencies(1 << 20))
        hist_record(h.get(), x);
    for (auto _ : state)
        benchmark::DoNotOptimize(hist_quantile(h.get(), 0.99));
}
BENCHMARK(BM_hist_quantile_p99);

static void BM_hist_merge(benchmark::State &state)
{
    auto a = std::make_unique<struct hist>(), b = std::make_unique<struct hist>();
    hist_init(a.get());
    hist_init(b.get());
    for (uint64_t x : latencies(1 << 16))
        hist_record(b.get(), x);
    for (auto _ : state)
        hist_merge(a.get(), b.get());
    benchmark::DoNotOptimize(a->count);
}
BENCHMARK(BM_hist_merge);
