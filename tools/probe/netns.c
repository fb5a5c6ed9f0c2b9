/* The veth transport: two network namespaces joined by a veth pair, created once per run and
 * removed at exit, on SIGINT/SIGTERM, and (when a previous run was killed) at the next start.
 *
 * The namespaces are named the way `ip netns` names them (a bind mount of the namespace on
 * /run/netns/<name>), so an operator can see and remove them with iproute2. Removing one is
 * exactly what `ip netns delete` does, an unmount and an unlink, which are both async-signal-safe,
 * so the signal handler can do it too. The namespace itself, and the veth ends in it, vanish when
 * the last reference (our descriptors and sockets) goes at process exit.
 *
 * The drop transport has a namespace of its own (the third): a veth pair whose peer end stays
 * down, an address on the end that is up, and a permanent neighbour entry for the far address,
 * so a datagram sent there needs no ARP and is dropped at transmit: the end has no carrier
 * while its peer is down, so its queue is the kernel's noop qdisc, which frees every packet. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "probe.h"

const char probe_netns_prefix[] = "rillprobe-";

#define NETNS_DIR "/run/netns"

#define NNS 3 /* the veth client's, the veth server's, the drop transport's */

static char ns_name[NNS][48];
static char ns_path[NNS][160];
static volatile sig_atomic_t ns_created[NNS];
static int ns_fd[NNS] = {-1, -1, -1};
static int setup_result[2] = {1, 1}; /* veth, drop: 1 not tried yet, 0 ready, -errno failed */
static char setup_why[2][256]; /* room for "open " + a 160-byte path + strerror */
static int which_setup; /* the one being built, for ip_step's message */

int probe_netns_fd(int which)
{
    return ns_fd[which];
}

/* Runs `ip ARGS...` without a shell; its output goes to /dev/null. Returns its exit status. */
static int run_ip(const char *const argv[])
{
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        int dn = open("/dev/null", O_WRONLY);
        if (dn >= 0) {
            dup2(dn, 1);
            dup2(dn, 2);
        }
        execvp("ip", (char *const *)argv);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -errno;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void remove_path(const char *path)
{
    /* MNT_DETACH: our own descriptors still pin the namespace, which must not block the
     * unmount; the namespace dies once they are closed. */
    umount2(path, MNT_DETACH);
    unlink(path);
}

void probe_netns_cleanup(void)
{
    for (int i = 0; i < NNS; i++)
        if (ns_created[i]) {
            remove_path(ns_path[i]);
            ns_created[i] = 0;
        }
}

/* Removes namespaces left by a probe that died without cleaning up (SIGKILL, a crash): those
 * whose name carries the probe's prefix and the pid of a process that no longer exists. */
void probe_netns_remove_stale(void)
{
    DIR *d = opendir(NETNS_DIR);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t pl = strlen(probe_netns_prefix);
        if (strncmp(e->d_name, probe_netns_prefix, pl) != 0)
            continue;
        long pid = strtol(e->d_name + pl, NULL, 10);
        if (pid <= 0 || (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
            continue;
        char path[300];
        snprintf(path, sizeof path, NETNS_DIR "/%s", e->d_name);
        remove_path(path);
        fprintf(stderr, "rill-probe: removed stale namespace %s\n", e->d_name);
    }
    closedir(d);
}

static int ip_step(const char *const argv[], const char *what)
{
    int r = run_ip(argv);
    if (r != 0) {
        snprintf(setup_why[which_setup], sizeof setup_why[0], "`ip %s` failed (exit %d)", what,
                 r);
        return -EIO;
    }
    return 0;
}

static int add_ns(int i)
{
    const char *add[] = {"ip", "netns", "add", ns_name[i], NULL};
    ns_created[i] = 1; /* before: a signal during `ip` must still remove it */
    return ip_step(add, "netns add");
}

static int open_ns(int i)
{
    ns_fd[i] = open(ns_path[i], O_RDONLY | O_CLOEXEC);
    if (ns_fd[i] < 0) {
        snprintf(setup_why[which_setup], sizeof setup_why[0], "open %.120s: %s", ns_path[i],
                 strerror(errno));
        return -errno;
    }
    return 0;
}

static int build(void)
{
    const char *c = ns_name[0], *s = ns_name[1];
    for (int i = 0; i < 2; i++)
        if (add_ns(i) < 0)
            return -EIO;
    const char *link[] = {"ip", "-n", c, "link", "add", "rpv-c", "type", "veth",
                          "peer", "name", "rpv-s", "netns", s, NULL};
    const char *addr_c[] = {"ip", "-n", c, "addr", "add", "10.213.77.1/24", "dev", "rpv-c", NULL};
    const char *addr_s[] = {"ip", "-n", s, "addr", "add", "10.213.77.2/24", "dev", "rpv-s", NULL};
    const char *up_c[] = {"ip", "-n", c, "link", "set", "rpv-c", "up", NULL};
    const char *up_s[] = {"ip", "-n", s, "link", "set", "rpv-s", "up", NULL};
    if (ip_step(link, "link add type veth") < 0 || ip_step(addr_c, "addr add") < 0 ||
        ip_step(addr_s, "addr add") < 0 || ip_step(up_c, "link set up") < 0 ||
        ip_step(up_s, "link set up") < 0)
        return -EIO;
    for (int i = 0; i < 2; i++)
        if (open_ns(i) < 0)
            return -errno;
    return 0;
}

static int build_drop(void)
{
    const char *d = ns_name[2];
    const char *link[] = {"ip", "-n", d, "link", "add", "rpd-a", "type", "veth",
                          "peer", "name", "rpd-b", NULL};
    const char *addr[] = {"ip", "-n", d, "addr", "add", PROBE_DROP_SRC "/24", "dev", "rpd-a",
                          NULL};
    const char *up[] = {"ip", "-n", d, "link", "set", "rpd-a", "up", NULL};
    const char *neigh[] = {"ip", "-n", d, "neigh", "replace", PROBE_DROP_DST, "lladdr",
                           "02:00:00:00:00:02", "dev", "rpd-a", "nud", "permanent", NULL};
    if (add_ns(2) < 0 || ip_step(link, "link add type veth") < 0 || ip_step(addr, "addr add") < 0 ||
        ip_step(up, "link set up") < 0 || ip_step(neigh, "neigh replace permanent") < 0)
        return -EIO;
    return open_ns(2);
}

static void name_all(void)
{
    static const char tag[NNS] = {'c', 's', 'd'};
    for (int i = 0; i < NNS; i++) {
        snprintf(ns_name[i], sizeof ns_name[i], "%s%d-%c", probe_netns_prefix, (int)getpid(),
                 tag[i]);
        snprintf(ns_path[i], sizeof ns_path[i], NETNS_DIR "/%s", ns_name[i]);
    }
}

/* which 0: the veth pair (namespaces 0 and 1), 1: the drop transport's (namespace 2). */
static int setup(int which, char *why, size_t n)
{
    if (setup_result[which] == 1) {
        which_setup = which;
        if (geteuid() != 0) {
            snprintf(setup_why[which], sizeof setup_why[0],
                     "needs root to create network namespaces");
            setup_result[which] = -EPERM;
        } else if (system("command -v ip >/dev/null 2>&1") != 0) {
            snprintf(setup_why[which], sizeof setup_why[0], "iproute2 (`ip`) not found");
            setup_result[which] = -ENOENT;
        } else {
            name_all();
            if (setup_result[0] == 1 && setup_result[1] == 1)
                probe_netns_remove_stale();
            setup_result[which] = which ? build_drop() : build();
            if (setup_result[which] < 0)
                probe_netns_cleanup();
        }
    }
    if (setup_result[which] < 0)
        snprintf(why, n, "%s", setup_why[which]);
    return setup_result[which];
}

int probe_netns_setup(char *why, size_t n)
{
    return setup(0, why, n);
}

int probe_netns_setup_drop(char *why, size_t n)
{
    return setup(1, why, n);
}
