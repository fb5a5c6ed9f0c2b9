/* The name resolver: c-ares on the loop (resolve.h says how it is driven), and the cache.
 *
 * Cache. One entry per name (compared without regard to case), most recently used first,
 * RESOLVE_CACHE_MAX of them at most. An entry is pending while its lookup runs, and collects
 * every caller that asks for the name meanwhile, so one lookup answers them all. An answer is
 * kept for the smallest TTL of its addresses (c-ares reports them in ai_ttl); a TTL of 0, and
 * every failure, is not kept. Expired entries are dropped when looked at. */
#include "resolve.h"

#include <ares.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>

#include "backend.h"

#define RESOLVE_CACHE_MAX 256u
#define RESOLVE_DRAIN_MAX 16 /* extra passes over a readable socket per readiness report */
#define RESOLVE_TRIES 2

struct rentry {
    struct rill__list link;    /* on r->entries */
    struct rill__list waiters; /* struct rill__resolve_wait, while pending */
    struct rill__resolver *r;
    bool pending;
    uint64_t expires;          /* loop clock, ms */
    int n;
    struct sockaddr_storage addr[RILL__RESOLVE_MAX]; /* ports 0 */
    char name[RILL__HOST_MAX + 1];
};

struct rsock {
    struct rill__watch w;
    struct rill__list link;    /* on r->socks */
    struct rill__resolver *r;
};

struct rill__resolver {
    rill_loop *l;
    ares_channel ch;
    bool dying;                /* the loop's backend may be gone: no more downcalls */
    struct rill__tnode timer;  /* c-ares's next timeout */
    struct rill__list entries;
    uint32_t nentries;
    struct rill__list socks;
};

/* ---- driving c-ares ------------------------------------------------------------------------- */

static void resolver_timer_arm(struct rill__resolver *r)
{
    rill_loop *l = r->l;
    struct timeval tv;
    rill__wheel_del(&l->wheel, &r->timer);
    if (!ares_timeout(r->ch, NULL, &tv))
        return;
    /* Rounded up by a millisecond: the wheel fires at or after its deadline, c-ares counts a
     * query as timed out only once its time has passed, and firing early would spin. */
    uint64_t ms = (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u + 1u;
    rill__wheel_add_ms(&l->wheel, &r->timer, rill__loop_clock(l) + ms);
}

static void resolver_timer_fn(struct rill__tnode *t)
{
    struct rill__resolver *r = rill__container_of(t, struct rill__resolver, timer);
    ares_process_fd(r->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    resolver_timer_arm(r);
}

static struct rsock *rsock_find(struct rill__resolver *r, int fd)
{
    for (struct rill__list *n = r->socks.next; n != &r->socks; n = n->next) {
        struct rsock *s = rill__container_of(n, struct rsock, link);
        if (s->w.fd == fd)
            return s;
    }
    return NULL;
}

/* Watches report edges; c-ares may leave datagrams unread after one pass (it reads a bounded
 * number, a TCP answer once per call), so a readable socket is offered again while poll(2)
 * says it is readable and c-ares still has it open. */
static void rsock_ready(struct rill__watch *w, uint32_t bits)
{
    struct rsock *s = rill__container_of(w, struct rsock, w);
    struct rill__resolver *r = s->r;
    int fd = w->fd;
    bool rd = bits & (RILL__WATCH_IN | RILL__WATCH_ERR);
    ares_process_fd(r->ch, rd ? fd : ARES_SOCKET_BAD,
                    (bits & RILL__WATCH_OUT) ? fd : ARES_SOCKET_BAD);
    for (int i = 0; rd && i < RESOLVE_DRAIN_MAX; i++) {
        struct rsock *again = rsock_find(r, fd);
        if (!again || !(again->w.events & RILL__WATCH_IN))
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 0) <= 0 || !(p.revents & POLLIN))
            break;
        ares_process_fd(r->ch, fd, ARES_SOCKET_BAD);
    }
    resolver_timer_arm(r);
}

/* c-ares opens, changes and closes its sockets (this runs before it closes one). */
static void sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
    struct rill__resolver *r = data;
    struct rsock *s = rsock_find(r, fd);
    uint32_t ev = (readable ? RILL__WATCH_IN : 0u) | (writable ? RILL__WATCH_OUT : 0u);
    if (r->dying) {
        if (s && !ev) {
            rill__list_del(&s->link);
            rill__free(s);
        }
        return;
    }
    if (!s && ev) {
        if (!(s = rill__calloc(1, sizeof *s)))
            return; /* unwatched: its queries end at their timeout */
        if (rill__watch_register(r->l, &s->w) < 0) {
            rill__free(s);
            return;
        }
        s->w.fd = fd;
        s->w.fn = rsock_ready;
        s->r = r;
        rill__list_push_back(&r->socks, &s->link);
    }
    if (!s)
        return;
    r->l->ops->watch(r->l, &s->w, ev);
    if (!ev) {
        rill__watch_unregister(r->l, &s->w);
        rill__list_del(&s->link);
        rill__free(s);
    }
}

static pthread_once_t ares_once = PTHREAD_ONCE_INIT;
static int ares_init_status;

static void ares_global_init(void)
{
    ares_init_status = ares_library_init(ARES_LIB_INIT_ALL);
}

static int ares_errno(int status)
{
    switch (status) {
    case ARES_SUCCESS:
        return 0;
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
    case ARES_ENONAME:
        return RILL_ENONAME;
    case ARES_ETIMEOUT:
        return RILL_EDNSTIMEOUT;
    case ARES_ENOMEM:
        return -ENOMEM;
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
        return -ECANCELED;
    case ARES_EBADNAME:
    case ARES_EBADSTR:
        return -EINVAL;
    default: /* SERVFAIL, REFUSED, a malformed answer, no server reachable ... */
        return RILL_EDNSFAIL;
    }
}

/* The whole lookup is bounded by dns_timeout_ms: c-ares doubles a query's timeout on each
 * round over the servers (1.18), so RESOLVE_TRIES = 2 rounds of t and 2t fit in 3t. */
static int resolver_create(rill_loop *l)
{
    pthread_once(&ares_once, ares_global_init);
    if (ares_init_status != ARES_SUCCESS)
        return -ENOMEM;
    struct rill__resolver *r = rill__calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->l = l;
    r->timer.fn = resolver_timer_fn;
    rill__list_init(&r->entries);
    rill__list_init(&r->socks);
    struct ares_options o;
    memset(&o, 0, sizeof o);
    o.sock_state_cb = sock_state_cb;
    o.sock_state_cb_data = r;
    o.timeout = (int)(l->cfg.dns_timeout_ms / 3 ? l->cfg.dns_timeout_ms / 3 : 1);
    o.tries = RESOLVE_TRIES;
    int st = ares_init_options(&r->ch, &o, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS |
                                               ARES_OPT_TRIES);
    if (st == ARES_SUCCESS && l->cfg.dns_servers &&
        (st = ares_set_servers_ports_csv(r->ch, l->cfg.dns_servers)) != ARES_SUCCESS) {
        ares_destroy(r->ch);
        rill__free(r);
        return -EINVAL;
    }
    if (st != ARES_SUCCESS) {
        rill__free(r);
        return st == ARES_ENOMEM ? -ENOMEM : RILL_EDNSFAIL;
    }
    l->resolver = r;
    return 0;
}

/* ---- the cache ------------------------------------------------------------------------------ */

static void entry_free(struct rentry *e)
{
    rill__list_del(&e->link);
    e->r->nentries--;
    rill__free(e);
}

static int entry_addrs(const struct rentry *e, const struct rill__resolve_wait *w,
                       struct rill__addr *out, int max)
{
    int n = 0;
    for (int i = 0; i < e->n && n < max; i++, n++) {
        struct rill__addr *a = &out[n];
        memset(a, 0, sizeof *a);
        a->ss = e->addr[i];
        a->family = a->ss.ss_family;
        a->socktype = w->socktype;
        if (a->family == AF_INET) {
            ((struct sockaddr_in *)&a->ss)->sin_port = htons(w->port);
            a->len = sizeof(struct sockaddr_in);
        } else {
            ((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(w->port);
            a->len = sizeof(struct sockaddr_in6);
        }
    }
    return n;
}

static int entry_fill(struct rentry *e, const struct ares_addrinfo *res)
{
    int ttl = -1;
    e->n = 0;
    for (const struct ares_addrinfo_node *ai = res ? res->nodes : NULL;
         ai && e->n < RILL__RESOLVE_MAX; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            ai->ai_addrlen > sizeof e->addr[0])
            continue;
        memcpy(&e->addr[e->n], ai->ai_addr, ai->ai_addrlen);
        e->n++;
        if (ttl < 0 || ai->ai_ttl < ttl)
            ttl = ai->ai_ttl;
    }
    return ttl < 0 ? 0 : ttl;
}

static void gai_cb(void *arg, int status, int timeouts, struct ares_addrinfo *res)
{
    (void)timeouts;
    struct rentry *e = arg;
    rill_loop *l = e->r->l;
    int st = ares_errno(status), ttl = 0;
    if (st == 0) {
        ttl = entry_fill(e, res);
        if (e->n == 0)
            st = RILL_ENONAME; /* only families rill has no use for */
    }
    if (res)
        ares_freeaddrinfo(res);
    e->pending = false;
    e->expires = rill__loop_clock(l) + (uint64_t)ttl * 1000u;
    /* Each waiter gets its own copy (its port); a waiter's fn may start other lookups or
     * cancel other waiters, so the list is popped one at a time. */
    struct rill__list *n;
    while ((n = rill__list_pop_front(&e->waiters))) {
        struct rill__resolve_wait *w = rill__container_of(n, struct rill__resolve_wait, link);
        struct rill__addr a[RILL__RESOLVE_MAX];
        int cnt = st == 0 ? entry_addrs(e, w, a, RILL__RESOLVE_MAX) : 0;
        w->fn(w, st, a, cnt);
    }
    if (st < 0 || ttl == 0)
        entry_free(e);
}

static struct rentry *entry_find(struct rill__resolver *r, const char *host)
{
    uint64_t now = rill__loop_clock(r->l);
    for (struct rill__list *n = r->entries.next; n != &r->entries;) {
        struct rentry *e = rill__container_of(n, struct rentry, link);
        n = n->next;
        if (!e->pending && e->expires <= now) {
            entry_free(e);
            continue;
        }
        if (!strcasecmp(e->name, host))
            return e;
    }
    return NULL;
}

/* A new entry at the front; the least recently used answer goes when the cache is full. */
static struct rentry *entry_new(struct rill__resolver *r, const char *host)
{
    if (r->nentries >= RESOLVE_CACHE_MAX) {
        for (struct rill__list *n = r->entries.prev; n != &r->entries; n = n->prev) {
            struct rentry *old = rill__container_of(n, struct rentry, link);
            if (!old->pending) {
                entry_free(old);
                break;
            }
        }
    }
    struct rentry *e = rill__calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->r = r;
    e->pending = true;
    rill__list_init(&e->waiters);
    size_t len = strlen(host);
    memcpy(e->name, host, len < RILL__HOST_MAX ? len : RILL__HOST_MAX);
    rill__list_push_front(&r->entries, &e->link);
    r->nentries++;
    return e;
}

int rill__resolve(rill_loop *l, const char *host, struct rill__resolve_wait *w,
                  struct rill__addr *out, int max)
{
    int rc;
    if (!l->resolver && (rc = resolver_create(l)) < 0)
        return rc;
    struct rill__resolver *r = l->resolver;
    w->link.next = w->link.prev = NULL;
    struct rentry *e = entry_find(r, host);
    if (e && !e->pending) {
        rill__list_del(&e->link); /* most recently used first */
        rill__list_push_front(&r->entries, &e->link);
        return entry_addrs(e, w, out, max);
    }
    if (e) {
        rill__list_push_back(&e->waiters, &w->link);
        return 0;
    }
    if (!(e = entry_new(r, host)))
        return -ENOMEM;
    rill__list_push_back(&e->waiters, &w->link);
    struct ares_addrinfo_hints hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = w->socktype;
    /* The callback may run inside this call (/etc/hosts, or a failure): e is gone then. */
    ares_getaddrinfo(r->ch, e->name, NULL, &hints, gai_cb, e);
    resolver_timer_arm(r);
    return 0;
}

void rill__resolve_cancel(struct rill__resolve_wait *w)
{
    rill__list_del(&w->link);
}

/* ---- the resolver as a kind of the loop ----------------------------------------------------- */

/* A server list c-ares does not take fails rill_loop_create with -EINVAL: tried on a channel
 * of its own, before any backend (a bad list is no reason to fall back from io_uring). */
static int resolve_kind_check(const struct rill_loop_config *cfg)
{
    if (!cfg->dns_servers)
        return 0;
    pthread_once(&ares_once, ares_global_init);
    if (ares_init_status != ARES_SUCCESS)
        return -ENOMEM;
    ares_channel ch;
    struct ares_options o;
    memset(&o, 0, sizeof o);
    int st = ares_init_options(&ch, &o, 0);
    if (st != ARES_SUCCESS)
        return st == ARES_ENOMEM ? -ENOMEM : 0; /* no resolver here: said at the first lookup */
    st = ares_set_servers_ports_csv(ch, cfg->dns_servers);
    ares_destroy(ch);
    return st == ARES_SUCCESS ? 0 : st == ARES_ENOMEM ? -ENOMEM : -EINVAL;
}

/* A loop given servers makes its channel now, so a bad server list fails rill_loop_create. The
 * list is copied: the config is not kept. */
static int resolve_kind_init(rill_loop *l)
{
    if (!l->cfg.dns_servers)
        return 0;
    size_t n = strlen(l->cfg.dns_servers) + 1;
    char *copy = rill__malloc(n);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, l->cfg.dns_servers, n);
    l->cfg.dns_servers = copy;
    int r = resolver_create(l);
    if (r < 0) {
        rill__free(copy);
        l->cfg.dns_servers = NULL;
    }
    return r;
}

static void resolver_destroy(rill_loop *l, bool dying)
{
    struct rill__resolver *r = l->resolver;
    if (!r)
        return;
    r->dying = dying;
    rill__wheel_del(&l->wheel, &r->timer);
    ares_destroy(r->ch); /* pending lookups end with ARES_EDESTRUCTION; sockets are closed */
    while (!rill__list_empty(&r->socks)) {
        struct rsock *s = rill__container_of(r->socks.next, struct rsock, link);
        rill__list_del(&s->link);
        rill__free(s);
    }
    while (!rill__list_empty(&r->entries))
        entry_free(rill__container_of(r->entries.next, struct rentry, link));
    rill__free(r);
    l->resolver = NULL;
}

/* rill_loop_destroy: every connection and datagram socket has stopped waiting by now. */
static void resolve_kind_teardown(rill_loop *l, int status)
{
    (void)status;
    resolver_destroy(l, false);
}

static void resolve_kind_fini(rill_loop *l)
{
    resolver_destroy(l, true);
    rill__free((char *)l->cfg.dns_servers);
    l->cfg.dns_servers = NULL;
}

const struct rill__kind_ops rill__resolve_kind = {
    .name = "resolver",
    .check = resolve_kind_check,
    .init = resolve_kind_init,
    .fini = resolve_kind_fini,
    .teardown = resolve_kind_teardown,
};
