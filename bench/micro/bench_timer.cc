// Micro benchmarks of the hierarchical timer wheel (engine/timer.c). The wheel counts
// microseconds; the workloads are the ones of the millisecond wheel it replaced, in the same real
// time (1 ms is 1000 ticks now), so old and new figures compare, plus the sub-millisecond cases.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <vector>

#include <sys/prctl.h>

extern "C" {
#include "rill.h"
#include "timer.h"
}

namespace {

uint64_t xorshift(uint64_t &x)
{
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
}

void noop_fire(rill__tnode *) {}

constexpr uint64_t kMs = 1000; // wheel ticks (us) per millisecond

// Deadlines spread over every level: 1 ms to ~18 hours away, to the microsecond.
uint64_t random_delay(uint64_t &rng)
{
    unsigned bits = 1 + static_cast<unsigned>(xorshift(rng) % 26);
    return kMs + xorshift(rng) % ((uint64_t{ 1 } << bits) * kMs);
}

// Schedule and cancel one node (an idle timer reset by I/O), with `n` other nodes already in
// the wheel. Both are O(1), so the time should not depend on n.
void BM_WheelAddDel(benchmark::State &state)
{
    const size_t n = static_cast<size_t>(state.range(0));
    auto w = std::make_unique<rill__wheel>();
    rill__wheel_init(w.get(), 1000);
    std::vector<rill__tnode> bg(n);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (auto &node : bg) {
        node = rill__tnode{};
        node.fn = noop_fire;
        rill__wheel_add(w.get(), &node, w->now + random_delay(rng));
    }
    std::vector<uint64_t> delays(1024);
    for (auto &d : delays)
        d = random_delay(rng);
    rill__tnode node{};
    node.fn = noop_fire;
    size_t i = 0;
    for (auto _ : state) {
        rill__wheel_add(w.get(), &node, w->now + delays[i++ & 1023]);
        rill__wheel_del(w.get(), &node);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_WheelAddDel)->Arg(0)->Arg(10000)->Arg(1000000);

// Fires re-add themselves one period later, keeping the population steady.
struct periodic {
    rill__tnode node; // first: the node's address is the struct's
    rill__wheel *w;
    uint64_t period;
};

void periodic_fire(rill__tnode *n)
{
    auto *p = reinterpret_cast<periodic *>(n);
    rill__wheel_add(p->w, n, p->w->now + p->period);
}

// One loop iteration's worth of time (1 ms) with n periodic timers whose periods range from
// 1 ms to ~1 minute (in whole milliseconds, as the millisecond API gives them): cascades and
// firings together, per advance.
void BM_WheelAdvance(benchmark::State &state)
{
    const size_t n = static_cast<size_t>(state.range(0));
    auto w = std::make_unique<rill__wheel>();
    rill__wheel_init(w.get(), 0);
    std::vector<periodic> timers(n);
    uint64_t rng = 0x243f6a8885a308d3ull;
    for (auto &t : timers) {
        t.node = rill__tnode{};
        t.node.fn = periodic_fire;
        t.w = w.get();
        t.period = (1 + xorshift(rng) % 65536) * kMs;
        rill__wheel_add(w.get(), &t.node, xorshift(rng) % t.period + 1);
    }
    uint64_t fired = 0;
    for (auto _ : state)
        fired += rill__wheel_advance(w.get(), w->now + kMs);
    state.counters["fired/advance"] =
        benchmark::Counter(static_cast<double>(fired) / static_cast<double>(state.iterations()));
}
BENCHMARK(BM_WheelAdvance)->Arg(1000)->Arg(100000)->Arg(1000000);

// Jumps of one hour at a time (a loop that slept) with n periodic timers of 1 to 1000 hours:
// the cost follows the occupied slots and the cascades, not the 3.6 million milliseconds skipped.
void BM_WheelAdvanceHour(benchmark::State &state)
{
    const size_t n = static_cast<size_t>(state.range(0));
    const uint64_t hour = 3600 * 1000 * kMs;
    auto w = std::make_unique<rill__wheel>();
    rill__wheel_init(w.get(), 0);
    std::vector<periodic> timers(n);
    uint64_t rng = 0x2545f4914f6cdd1dull;
    for (auto &t : timers) {
        t.node = rill__tnode{};
        t.node.fn = periodic_fire;
        t.w = w.get();
        t.period = hour + xorshift(rng) % (1000 * hour);
        rill__wheel_add(w.get(), &t.node, xorshift(rng) % t.period + 1);
    }
    uint64_t fired = 0;
    for (auto _ : state)
        fired += rill__wheel_advance(w.get(), w->now + hour);
    state.counters["fired/advance"] =
        benchmark::Counter(static_cast<double>(fired) / static_cast<double>(state.iterations()));
}
BENCHMARK(BM_WheelAdvanceHour)->Arg(0)->Arg(100)->Arg(10000);

// Sub-millisecond timers, the case the microsecond tick is for: n periodic timers with periods
// of 50 us to 1 ms, advanced 10 us at a time (a loop woken at each deadline). Items are
// firings, so the time per item is the cost of one fire: cascades, the callback's re-add, and
// the share of the advance that found nothing.
void BM_WheelFireSubMs(benchmark::State &state)
{
    const size_t n = static_cast<size_t>(state.range(0));
    auto w = std::make_unique<rill__wheel>();
    rill__wheel_init(w.get(), 0);
    std::vector<periodic> timers(n);
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (auto &t : timers) {
        t.node = rill__tnode{};
        t.node.fn = periodic_fire;
        t.w = w.get();
        t.period = 50 + xorshift(rng) % 951;
        rill__wheel_add(w.get(), &t.node, xorshift(rng) % t.period + 1);
    }
    uint64_t fired = 0;
    for (auto _ : state)
        fired += rill__wheel_advance(w.get(), w->now + 10);
    state.SetItemsProcessed(static_cast<int64_t>(fired));
}
BENCHMARK(BM_WheelFireSubMs)->Arg(10)->Arg(1000)->Arg(100000);

// The loop's question before each wait: how long until the next deadline? n timers 1 ms to
// 18 h away; the earliest slot is looked at (up to 16 nodes) for an exact answer.
void BM_WheelNext(benchmark::State &state)
{
    const size_t n = static_cast<size_t>(state.range(0));
    auto w = std::make_unique<rill__wheel>();
    rill__wheel_init(w.get(), 1000);
    std::vector<rill__tnode> bg(n);
    uint64_t rng = 0x243f6a8885a308d3ull;
    for (auto &node : bg) {
        node = rill__tnode{};
        node.fn = noop_fire;
        rill__wheel_add(w.get(), &node, w->now + random_delay(rng));
    }
    int64_t sum = 0;
    for (auto _ : state) {
        sum += rill__wheel_next(w.get());
        benchmark::DoNotOptimize(sum);
    }
}
BENCHMARK(BM_WheelNext)->Arg(1)->Arg(10)->Arg(10000);

// What a sleep costs the sleeper, the floor under any open-loop client that sleeps between
// sends: one nanosleep(2) of 500 us per iteration, then one 500 us rill timer on a real loop
// (arg 0: epoll, 1: io_uring) waited for with rill_loop_run_once_us. The CPU column is the
// thread's CPU time per sleep (system-call entry, timer programming, the switch out and back:
// in a virtual machine mostly the exits these take), the wall column the sleep itself.
void BM_SleepFloorNanosleep(benchmark::State &state)
{
    prctl(PR_SET_TIMERSLACK, 1ul, 0, 0, 0);
    struct timespec ts = { 0, 500000 };
    for (auto _ : state)
        nanosleep(&ts, nullptr);
}
BENCHMARK(BM_SleepFloorNanosleep)->Iterations(2000);

void count_fire(rill_timer *, void *ctx)
{
    ++*static_cast<int *>(ctx);
}

void BM_SleepFloorLoopTimer(benchmark::State &state)
{
    prctl(PR_SET_TIMERSLACK, 1ul, 0, 0, 0);
    struct rill_loop_config cfg;
    rill_loop_config_init(&cfg);
    cfg.backend = state.range(0) ? RILL_BACKEND_URING : RILL_BACKEND_EPOLL;
    unsetenv("RILL_BACKEND");
    rill_loop *l = nullptr;
    rill_timer *t = nullptr;
    int fired = 0;
    if (rill_loop_create(&cfg, &l) < 0 || rill_timer_create(l, count_fire, &fired, &t) < 0) {
        state.SkipWithError("no loop on this backend");
        return;
    }
    for (auto _ : state) {
        int want = fired + 1;
        rill_timer_start_us(t, 500, 0);
        while (fired < want)
            rill_loop_run_once_us(l, -1);
    }
    rill_timer_destroy(t);
    rill_loop_destroy(l);
}
BENCHMARK(BM_SleepFloorLoopTimer)->Arg(0)->Arg(1)->Iterations(2000);

} // namespace

BENCHMARK_MAIN();
