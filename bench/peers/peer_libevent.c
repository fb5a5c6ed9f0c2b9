/* B3, peer-libevent: the bufferevent echo server of libevent's own documentation.
 *
 * One event_base per thread, each with an evconnlistener bound with LEV_OPT_REUSEABLE_PORT
 * (SO_REUSEPORT) on the same port; each accepted socket becomes a bufferevent whose read
 * callback moves the whole input buffer to the output buffer (evbuffer_add_buffer: no copy of
 * the bytes, the chains move). When the output holds more than WQ_HIGH bytes, reading stops;
 * a write watermark brings the write callback when it has drained below WQ_LOW, which resumes
 * reading. The bases are built on the main thread and each is then run by one thread only, so
 * libevent's locking (evthread_use_pthreads) is not needed. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "peer_common.h"

#define WQ_HIGH (1u << 20)
#define WQ_LOW (256u << 10)

struct worker {
    int index;
    const struct peer_opts *o;
    struct event_base *base;
};

static void on_write(struct bufferevent *bev, void *ctx)
{
    (void)ctx;
    /* The output fell to the low watermark: read again if reading had stopped. */
    if (!(bufferevent_get_enabled(bev) & EV_READ))
        bufferevent_enable(bev, EV_READ);
}

static void on_read(struct bufferevent *bev, void *ctx)
{
    (void)ctx;
    struct evbuffer *out = bufferevent_get_output(bev);
    evbuffer_add_buffer(out, bufferevent_get_input(bev));
    if (evbuffer_get_length(out) > WQ_HIGH)
        bufferevent_disable(bev, EV_READ);
}

static void on_event(struct bufferevent *bev, short what, void *ctx)
{
    (void)ctx;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        bufferevent_free(bev); /* BEV_OPT_CLOSE_ON_FREE closes the socket */
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *ctx)
{
    (void)sa;
    (void)len;
    (void)ctx;
    struct event_base *base = evconnlistener_get_base(l);
    peer_nodelay(fd);
    struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        evutil_closesocket(fd);
        return;
    }
    bufferevent_setcb(bev, on_read, on_write, on_event, NULL);
    bufferevent_setwatermark(bev, EV_WRITE, WQ_LOW, 0);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void *run(void *arg)
{
    struct worker *w = arg;
    peer_pin(w->o, w->index);
    event_base_dispatch(w->base);
    return NULL;
}

int main(int argc, char **argv)
{
    static struct peer_opts o;
    peer_parse(&o, "peer-libevent", argc, argv);
    /* libevent binds its own TCP listeners (LEV_OPT_REUSEABLE_PORT); only the --unix socket
     * comes from peer_common. */
    struct worker *ws = calloc((size_t)o.threads, sizeof *ws);
    void *args[PEER_MAX_THREADS];
    if (!ws)
        peer_die(&o, "calloc");
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o.port)};
    if (inet_pton(AF_INET, o.host, &sin.sin_addr) != 1) {
        fprintf(stderr, "peer-libevent: --host must be an IPv4 address\n");
        return 2;
    }
    const unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT |
                           LEV_OPT_CLOSE_ON_EXEC;
    for (int i = 0; i < o.threads; i++) {
        struct worker *w = &ws[i];
        w->index = i;
        w->o = &o;
        w->base = event_base_new();
        if (!w->base)
            peer_die(&o, "event_base_new");
        struct evconnlistener *l = evconnlistener_new_bind(
            w->base, on_accept, NULL, flags, -1, (struct sockaddr *)&sin, sizeof sin);
        if (!l)
            peer_die(&o, "evconnlistener_new_bind");
        if (sin.sin_port == 0) {
            /* Port 0: the first listener picked one; the others join it. */
            socklen_t len = sizeof sin;
            getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&sin, &len);
            o.port = ntohs(sin.sin_port);
        }
        if (i == 0 && o.unix_path) {
            peer_listen_unix(&o);
            if (!evconnlistener_new(w->base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE, -1,
                                    o.unix_fd))
                peer_die(&o, "evconnlistener_new(unix)");
        }
        args[i] = w;
    }
    peer_announce(&o);
    peer_run_threads(&o, run, args);
    return 0;
}
