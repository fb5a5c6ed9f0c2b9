// Micro benchmark of rill__uri_parse: the cost of turning a configuration string into fields,
// for each address shape. Resolution is not measured here: it is dominated by getaddrinfo or,
// for numeric hosts, by inet_pton, which the parse already calls once.
#include <benchmark/benchmark.h>

#include <cerrno>
#include <cstring>

extern "C" {
#include "addr.h"
}

namespace {

const char *const kUris[] = {
    "tcp://127.0.0.1:8080",
    "tcp://[::1]:8080",
    "tcp://[fe80::1%lo]:8080",
    "tcp://localhost:0",
    "tcp://api.internal.example.com:443",
    "unix:/run/rill/echo.sock",
    "unix:@rill-echo",
    "tcp://1.2.3.4:80/garbage", // a rejected input costs about as much as an accepted one
};

void BM_UriParse(benchmark::State &state)
{
    const char *uri = kUris[state.range(0)];
    struct rill__uri u;
    int expect = std::strstr(uri, "garbage") ? -EINVAL : 0;

    state.SetLabel(uri);
    for (auto _ : state) {
        int rc = rill__uri_parse(uri, &u);
        benchmark::DoNotOptimize(rc);
        benchmark::ClobberMemory();
        if (rc != expect) {
            state.SkipWithError("unexpected parse result");
            break;
        }
    }
    state.SetItemsProcessed(state.iterations());
}

BENCHMARK(BM_UriParse)->DenseRange(0, sizeof kUris / sizeof kUris[0] - 1);

} // namespace

BENCHMARK_MAIN();
