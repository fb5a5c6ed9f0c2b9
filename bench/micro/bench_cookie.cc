// Micro benchmarks of completion cookies (engine/cookie.h): the {op | generation | slot}
// packing every completion goes through, on the way out (encode) and back in (decode and the
// stale-generation check that drops completions of a reused slot).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

extern "C" {
#include "cookie.h"
}

namespace {

constexpr size_t kBatch = 1024; // completions per iteration: a busy loop's CQ batch

// Encode one cookie per operation, as a backend does for every submission.
void BM_CookieEncode(benchmark::State &state)
{
    std::vector<uint64_t> out(kBatch);
    uint32_t gen = 1;
    for (auto _ : state) {
        for (size_t i = 0; i < kBatch; i++)
            out[i] = rill__cookie(RILL__OP_RECV, gen + static_cast<uint32_t>(i),
                                  static_cast<uint32_t>(i));
        benchmark::DoNotOptimize(out.data());
        benchmark::ClobberMemory();
        gen += kBatch;
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
}
BENCHMARK(BM_CookieEncode);

// Decode a batch and dispatch on op, dropping cookies whose generation no longer matches the
// slot's (range(0) percent of them stale), as the loop does for each completion.
void BM_CookieDecodeCheck(benchmark::State &state)
{
    const unsigned stale_pct = static_cast<unsigned>(state.range(0));
    std::vector<uint32_t> slot_gen(kBatch);
    std::vector<uint64_t> cookies(kBatch);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < kBatch; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        slot_gen[i] = static_cast<uint32_t>(x) & RILL__COOKIE_GEN_MASK;
        bool stale = x % 100 < stale_pct;
        auto op = static_cast<enum rill__op>(RILL__OP_ACCEPT + (x >> 32) % 4);
        cookies[i] = rill__cookie(op, slot_gen[i] + (stale ? 1 : 0), static_cast<uint32_t>(i));
    }
    for (auto _ : state) {
        uint64_t live = 0, dropped = 0, per_op[16] = {};
        for (uint64_t c : cookies) {
            uint32_t slot = rill__cookie_slot(c);
            if (rill__cookie_gen(c) != slot_gen[slot]) {
                dropped++;
                continue;
            }
            live++;
            per_op[rill__cookie_op(c) & 15]++;
        }
        benchmark::DoNotOptimize(live);
        benchmark::DoNotOptimize(dropped);
        benchmark::DoNotOptimize(per_op);
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
}
BENCHMARK(BM_CookieDecodeCheck)->Arg(0)->Arg(1)->Arg(50);

// Round trip: encode then decode every field, the generation wrapping at 24 bits.
void BM_CookieRoundTrip(benchmark::State &state)
{
    uint32_t gen = RILL__COOKIE_GEN_MASK - 512; // wraps inside the run
    uint64_t sum = 0;
    for (auto _ : state) {
        for (uint32_t i = 0; i < kBatch; i++) {
            uint64_t c = rill__cookie(RILL__OP_SEND, gen + i, i * 7919u);
            sum += rill__cookie_op(c) + rill__cookie_gen(c) + rill__cookie_slot(c);
        }
        benchmark::DoNotOptimize(sum);
        gen += kBatch;
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kBatch));
}
BENCHMARK(BM_CookieRoundTrip);

} // namespace
