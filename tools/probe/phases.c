/* The phase table: which part of the socket path a kernel function belongs to.
 *
 * It is data. Each entry is a function-name prefix and a phase; the longest prefix that matches
 * wins, so a broad entry ("tcp_" is transmit) can be refined by a narrower one ("tcp_rcv" is
 * receive), and a full name is simply the longest prefix of itself (compiler suffixes such as
 * ".isra.0" or ".cold" still match). A function no entry names is `other`, and the profile
 * lists the unnamed leaf functions it met, so the table grows from what the kernel shows.
 *
 * How a sample gets its phase (profile.c): its kernel callchain is walked from the leaf
 * towards the system-call entry, and the first frame the table names decides. Generic helpers
 * (spin locks, RCU, memset, list and skb-queue helpers) are deliberately left out of the
 * table: a spin lock taken by try_to_wake_up is wake-up cost, the same lock taken by
 * lock_sock is socket cost, and only the caller can say which. The syscall entry and exit
 * functions sit at the root of every chain, so they decide only when nothing nearer the leaf
 * is named: time in entry and exit themselves, and helpers called straight from them. A sample
 * taken in user space is `user`; one whose chain names no frame at all is `other`.
 *
 * The rule also absorbs a limit of the software cpu-clock: its sample is an hrtimer interrupt,
 * which cannot fire while interrupts are disabled, so the time of an interrupts-off stretch
 * lands on the function that turns them back on (_raw_spin_unlock_irqrestore,
 * finish_task_switch after a context switch, handle_softirqs). Those are unnamed or named for
 * what they close: the caller of the unlock decides, and a context switch is `wakeup`.
 *
 * Choices worth knowing:
 *  - AF_UNIX has no transmit protocol of its own: unix_*_sendmsg is `socket`, its receive
 *    functions are `rx`, like TCP's and UDP's.
 *  - IP output (ip_queue_xmit, ip_finish_output2 ...) is not named, so it takes the phase of
 *    the protocol that called it: tcp_tx under TCP, udp_tx under UDP.
 *  - Loopback and veth transmit, the qdisc, and the receive softirq that the transmitting
 *    thread runs itself (net_rx_action, process_backlog) are `device`; the protocol receive
 *    that softirq calls (ip_rcv, tcp_v4_rcv) is `rx`.
 *  - epoll's wake-up callback is `wakeup`; the rest of epoll (ep_poll's scan, ep_item_poll)
 *    is `socket`, the readiness part of the socket layer. task_work_run is `io_uring`: in the
 *    probe the task work is io_uring's (DEFER_TASKRUN, completions).
 *  - Zero-copy page pinning is `memory`: it is what the send does instead of a copy; the copy
 *    a zero-copy send falls back to on loopback (skb_copy_ubufs) is `copy`. */
#include <string.h>

#include "profile.h"

static const char *const phase_names[PHASE_COUNT] = {
    [PHASE_SYSCALL] = "syscall", [PHASE_SOCKET] = "socket",   [PHASE_TCP_TX] = "tcp_tx",
    [PHASE_UDP_TX] = "udp_tx",   [PHASE_RX] = "rx",           [PHASE_DEVICE] = "device",
    [PHASE_COPY] = "copy",       [PHASE_WAKEUP] = "wakeup",   [PHASE_IO_URING] = "io_uring",
    [PHASE_MEMORY] = "memory",   [PHASE_USER] = "user",       [PHASE_OTHER] = "other",
};

struct phase_rule {
    const char *prefix;
    enum probe_phase phase;
};

static const struct phase_rule rules[] = {
    /* syscall: entry, dispatch, exit. */
    {"entry_SYSCALL", PHASE_SYSCALL}, {"entry_SYSRET", PHASE_SYSCALL},
    {"do_syscall_", PHASE_SYSCALL}, {"x64_sys_call", PHASE_SYSCALL},
    {"__x64_sys_", PHASE_SYSCALL}, {"__ia32_sys_", PHASE_SYSCALL},
    {"__se_sys_", PHASE_SYSCALL}, {"__do_sys_", PHASE_SYSCALL},
    {"syscall_exit", PHASE_SYSCALL}, {"syscall_enter", PHASE_SYSCALL},
    {"syscall_trace", PHASE_SYSCALL}, {"exit_to_user_mode", PHASE_SYSCALL},
    {"arch_exit_to_user_mode", PHASE_SYSCALL}, {"__rseq_handle_notify_resume", PHASE_SYSCALL},
    {"rseq_", PHASE_SYSCALL}, {"switch_fpu_return", PHASE_SYSCALL},
    {"fpregs_", PHASE_SYSCALL}, {"restore_fpregs", PHASE_SYSCALL},
    {"clear_bhb_loop", PHASE_SYSCALL}, {"srso_", PHASE_SYSCALL},
    {"irqentry_exit_to_user", PHASE_SYSCALL},

    /* socket: the file and socket layers, socket locking, LSM hooks on socket calls, epoll. */
    {"__sys_", PHASE_SOCKET}, {"___sys_", PHASE_SOCKET}, {"____sys_", PHASE_SOCKET},
    {"do_recvmmsg", PHASE_SOCKET}, {"do_sendmmsg", PHASE_SOCKET},
    {"sockfd_lookup", PHASE_SOCKET}, {"ksys_read", PHASE_SOCKET}, {"ksys_write", PHASE_SOCKET},
    {"vfs_read", PHASE_SOCKET}, {"vfs_write", PHASE_SOCKET}, {"vfs_iter_", PHASE_SOCKET},
    {"do_iter_", PHASE_SOCKET}, {"do_readv", PHASE_SOCKET}, {"do_writev", PHASE_SOCKET},
    {"vfs_readv", PHASE_SOCKET}, {"vfs_writev", PHASE_SOCKET}, {"new_sync_", PHASE_SOCKET},
    {"rw_verify_area", PHASE_SOCKET}, {"fdget", PHASE_SOCKET}, {"__fdget", PHASE_SOCKET},
    {"__fget", PHASE_SOCKET}, {"fget", PHASE_SOCKET}, {"fput", PHASE_SOCKET},
    {"__fput", PHASE_SOCKET},
    {"sock_", PHASE_SOCKET}, {"__sock_", PHASE_SOCKET}, {"sk_", PHASE_SOCKET},
    {"__sk_", PHASE_SOCKET}, {"inet_", PHASE_SOCKET}, {"inet6_", PHASE_SOCKET},
    {"lock_sock", PHASE_SOCKET}, {"release_sock", PHASE_SOCKET},
    {"__release_sock", PHASE_SOCKET}, {"__lock_sock", PHASE_SOCKET},
    {"security_socket_", PHASE_SOCKET}, {"security_file_", PHASE_SOCKET},
    {"apparmor_", PHASE_SOCKET}, {"aa_", PHASE_SOCKET}, {"selinux_", PHASE_SOCKET},
    {"bpf_lsm_", PHASE_SOCKET}, {"unix_", PHASE_SOCKET}, {"scm_", PHASE_SOCKET},
    {"__scm_", PHASE_SOCKET}, {"msg_zerocopy_", PHASE_SOCKET}, {"ip_recv_error", PHASE_SOCKET},
    {"sock_recv_errqueue", PHASE_SOCKET}, {"__sock_recv_", PHASE_SOCKET},
    {"do_epoll_", PHASE_SOCKET}, {"ep_", PHASE_SOCKET}, {"__ep_", PHASE_SOCKET},
    {"__x64_sys_epoll", PHASE_SOCKET}, {"tcp_poll", PHASE_SOCKET},
    {"udp_poll", PHASE_SOCKET}, {"datagram_poll", PHASE_SOCKET},

    /* tcp_tx: TCP's send path (IP output below it inherits it). */
    {"tcp_", PHASE_TCP_TX}, {"__tcp_", PHASE_TCP_TX}, {"tcp_v4_send_check", PHASE_TCP_TX},
    {"tcp_v6_send_check", PHASE_TCP_TX}, {"bbr_", PHASE_TCP_TX}, {"cubictcp_", PHASE_TCP_TX},
    {"bictcp_", PHASE_TCP_TX},
    /* udp_tx */
    {"udp_", PHASE_UDP_TX}, {"udpv6_", PHASE_UDP_TX}, {"__udp_", PHASE_UDP_TX},
    {"ip_make_skb", PHASE_UDP_TX}, {"ip_append_data", PHASE_UDP_TX},
    {"__ip_append_data", PHASE_UDP_TX}, {"ip6_make_skb", PHASE_UDP_TX},
    {"ip_generic_getfrag", PHASE_UDP_TX}, {"__ip_make_skb", PHASE_UDP_TX},
    {"ip_setup_cork", PHASE_UDP_TX},

    /* rx: protocol receive, in the softirq and in recvmsg. */
    {"ip_rcv", PHASE_RX}, {"ip_local_deliver", PHASE_RX}, {"ip_protocol_deliver", PHASE_RX},
    {"ip_sublist_rcv", PHASE_RX}, {"ip_list_rcv", PHASE_RX}, {"ip6_rcv", PHASE_RX},
    {"ipv6_rcv", PHASE_RX}, {"ip6_input", PHASE_RX}, {"ip6_protocol_deliver", PHASE_RX},
    {"raw_local_deliver", PHASE_RX}, {"ip_route_input", PHASE_RX},
    {"tcp_v4_rcv", PHASE_RX}, {"tcp_v6_rcv", PHASE_RX}, {"tcp_v4_do_rcv", PHASE_RX},
    {"tcp_v6_do_rcv", PHASE_RX}, {"tcp_rcv", PHASE_RX}, {"tcp_data", PHASE_RX},
    {"tcp_ack", PHASE_RX}, {"tcp_clean_rtx", PHASE_RX}, {"tcp_recvmsg", PHASE_RX},
    {"tcp_cleanup_rbuf", PHASE_RX}, {"tcp_event_data_recv", PHASE_RX},
    {"tcp_queue_rcv", PHASE_RX}, {"tcp_add_backlog", PHASE_RX}, {"tcp_filter", PHASE_RX},
    {"tcp_check_space", PHASE_RX}, {"tcp_urg", PHASE_RX}, {"tcp_validate_incoming", PHASE_RX},
    {"tcp_inbound_", PHASE_RX}, {"tcp_update_recv_tstamps", PHASE_RX},
    {"tcp_measure_rcv_mss", PHASE_RX}, {"tcp_sack", PHASE_RX}, {"tcp_try_rmem", PHASE_RX},
    {"tcp_ofo_", PHASE_RX}, {"tcp_grow_window", PHASE_RX}, {"tcp_recv_", PHASE_RX},
    {"__tcp_ack_snd_check", PHASE_RX}, {"tcp_stream_is_readable", PHASE_RX},
    {"__inet_lookup", PHASE_RX}, {"inet_ehash", PHASE_RX}, {"__inet6_lookup", PHASE_RX},
    {"udp_rcv", PHASE_RX}, {"__udp4_lib_rcv", PHASE_RX}, {"__udp6_lib_rcv", PHASE_RX},
    {"udp_queue_rcv", PHASE_RX}, {"udpv6_queue_rcv", PHASE_RX}, {"udp_unicast_rcv", PHASE_RX},
    {"udp_recvmsg", PHASE_RX}, {"udpv6_recvmsg", PHASE_RX}, {"__skb_recv_udp", PHASE_RX},
    {"__udp_enqueue", PHASE_RX}, {"udp_rmem_release", PHASE_RX}, {"__udp4_lib_lookup", PHASE_RX},
    {"udp4_lib_lookup", PHASE_RX}, {"udp_lib_lookup", PHASE_RX}, {"udp_skb_destructor", PHASE_RX},
    {"__udp_lib_lookup", PHASE_RX}, {"udp4_csum_init", PHASE_RX},
    {"unix_stream_recvmsg", PHASE_RX}, {"unix_stream_read", PHASE_RX},
    {"unix_dgram_recvmsg", PHASE_RX}, {"unix_seqpacket_recvmsg", PHASE_RX},
    {"__unix_dgram_recvmsg", PHASE_RX}, {"__skb_try_recv", PHASE_RX},
    {"__skb_recv_datagram", PHASE_RX}, {"skb_recv_datagram", PHASE_RX},
    {"__skb_wait_for_more", PHASE_WAKEUP},

    /* device: loopback and veth transmit, qdisc, the receive softirq. */
    {"loopback_", PHASE_DEVICE}, {"veth_", PHASE_DEVICE}, {"dev_", PHASE_DEVICE},
    {"__dev_", PHASE_DEVICE}, {"netdev_", PHASE_DEVICE}, {"netif_", PHASE_DEVICE},
    {"__netif_", PHASE_DEVICE}, {"enqueue_to_backlog", PHASE_DEVICE},
    {"net_rx_action", PHASE_DEVICE}, {"__napi_", PHASE_DEVICE}, {"napi_", PHASE_DEVICE},
    {"process_backlog", PHASE_DEVICE}, {"do_softirq", PHASE_DEVICE},
    {"__do_softirq", PHASE_DEVICE}, {"handle_softirqs", PHASE_DEVICE},
    {"__local_bh_enable", PHASE_DEVICE}, {"local_bh_enable", PHASE_DEVICE},
    {"irq_exit", PHASE_DEVICE}, {"validate_xmit", PHASE_DEVICE}, {"sch_direct_xmit", PHASE_DEVICE},
    {"__qdisc_", PHASE_DEVICE}, {"qdisc_", PHASE_DEVICE}, {"pfifo_", PHASE_DEVICE},
    {"noop_enqueue", PHASE_DEVICE}, {"eth_type_trans", PHASE_DEVICE},
    {"neigh_", PHASE_DEVICE}, {"__neigh_", PHASE_DEVICE}, {"skb_csum_hwoffload", PHASE_DEVICE},
    {"gro_", PHASE_DEVICE}, {"dev_gro_", PHASE_DEVICE}, {"skb_gro_", PHASE_DEVICE},
    {"rps_", PHASE_DEVICE}, {"nf_hook", PHASE_DEVICE}, {"nf_", PHASE_DEVICE},

    /* copy: user copies, hardened usercopy checks, iovec import. */
    {"_copy_to_iter", PHASE_COPY}, {"_copy_from_iter", PHASE_COPY},
    {"copy_to_user", PHASE_COPY}, {"copy_from_user", PHASE_COPY}, {"_copy_to_user", PHASE_COPY},
    {"_copy_from_user", PHASE_COPY}, {"rep_movs_alternative", PHASE_COPY},
    {"copy_user_", PHASE_COPY}, {"__copy_user", PHASE_COPY}, {"copy_page_to_iter", PHASE_COPY},
    {"copy_page_from_iter", PHASE_COPY}, {"skb_copy_datagram", PHASE_COPY},
    {"__skb_datagram_iter", PHASE_COPY}, {"simple_copy_to_iter", PHASE_COPY},
    {"skb_copy_to_page", PHASE_COPY}, {"skb_do_copy_data", PHASE_COPY},
    {"csum_and_copy", PHASE_COPY}, {"unix_stream_read_actor", PHASE_COPY},
    {"iov_iter_", PHASE_COPY}, {"import_iovec", PHASE_COPY}, {"__import_iovec", PHASE_COPY},
    {"import_ubuf", PHASE_COPY}, {"iovec_from_user", PHASE_COPY},
    {"copy_iovec_from_user", PHASE_COPY},
    {"copy_msghdr_from_user", PHASE_COPY}, {"__copy_msghdr", PHASE_COPY},
    {"sendmsg_copy_msghdr", PHASE_COPY}, {"recvmsg_copy_msghdr", PHASE_COPY},
    {"__check_object_size", PHASE_COPY}, {"check_heap_object", PHASE_COPY},
    {"__check_heap_object", PHASE_COPY}, {"skb_copy_ubufs", PHASE_COPY},
    {"skb_copy_bits", PHASE_COPY}, {"memcpy_to_iter", PHASE_COPY},
    {"memcpy_from_iter", PHASE_COPY}, {"copyin", PHASE_COPY}, {"copyout", PHASE_COPY},
    {"__put_user", PHASE_COPY}, {"__get_user", PHASE_COPY}, {"put_cmsg", PHASE_COPY},

    /* wakeup: waking a thread, sleeping, switching. */
    {"try_to_wake_up", PHASE_WAKEUP}, {"wake_up_", PHASE_WAKEUP}, {"__wake_up", PHASE_WAKEUP},
    {"autoremove_wake_function", PHASE_WAKEUP}, {"woken_wake_function", PHASE_WAKEUP},
    {"default_wake_function", PHASE_WAKEUP}, {"pollwake", PHASE_WAKEUP},
    {"ep_poll_callback", PHASE_WAKEUP}, {"ep_autoremove_wake_function", PHASE_WAKEUP},
    {"sock_def_readable", PHASE_WAKEUP}, {"sock_def_write_space", PHASE_WAKEUP},
    {"sk_stream_write_space", PHASE_WAKEUP}, {"unix_write_space", PHASE_WAKEUP},
    {"tcp_data_ready", PHASE_WAKEUP}, {"sk_wait_data", PHASE_WAKEUP},
    {"sk_stream_wait_memory", PHASE_WAKEUP}, {"sock_wait_for_wmem", PHASE_WAKEUP},
    {"wait_woken", PHASE_WAKEUP}, {"prepare_to_wait", PHASE_WAKEUP},
    {"finish_wait", PHASE_WAKEUP}, {"schedule", PHASE_WAKEUP}, {"__schedule", PHASE_WAKEUP},
    {"preempt_schedule", PHASE_WAKEUP}, {"io_schedule", PHASE_WAKEUP},
    {"finish_task_switch", PHASE_WAKEUP}, {"__switch_to", PHASE_WAKEUP},
    {"switch_mm", PHASE_WAKEUP}, {"ttwu_", PHASE_WAKEUP}, {"enqueue_task", PHASE_WAKEUP},
    {"dequeue_task", PHASE_WAKEUP}, {"enqueue_entity", PHASE_WAKEUP},
    {"dequeue_entity", PHASE_WAKEUP}, {"pick_next_", PHASE_WAKEUP},
    {"put_prev_", PHASE_WAKEUP}, {"set_next_", PHASE_WAKEUP}, {"select_task_rq", PHASE_WAKEUP},
    {"update_curr", PHASE_WAKEUP}, {"update_load_avg", PHASE_WAKEUP},
    {"update_rq_clock", PHASE_WAKEUP}, {"psi_", PHASE_WAKEUP}, {"sched_", PHASE_WAKEUP},
    {"check_preempt", PHASE_WAKEUP}, {"wakeup_preempt", PHASE_WAKEUP},
    {"resched_curr", PHASE_WAKEUP}, {"raw_spin_rq_", PHASE_WAKEUP},
    {"newidle_balance", PHASE_WAKEUP}, {"sched_balance", PHASE_WAKEUP},
    {"hrtick_", PHASE_WAKEUP}, {"do_task_dead", PHASE_WAKEUP},
    {"schedule_hrtimeout", PHASE_WAKEUP}, {"do_nanosleep", PHASE_WAKEUP},
    {"futex_", PHASE_WAKEUP},

    /* io_uring: submission, completion, task work, the ring's own waits. */
    {"io_", PHASE_IO_URING}, {"__io_", PHASE_IO_URING}, {"io_uring", PHASE_IO_URING},
    {"__do_sys_io_uring_enter", PHASE_IO_URING}, {"__x64_sys_io_uring_enter", PHASE_IO_URING},
    {"tctx_task_work", PHASE_IO_URING}, {"task_work_run", PHASE_IO_URING},
    {"io_schedule", PHASE_WAKEUP}, {"io_cqring_wait", PHASE_IO_URING},

    /* memory: skb allocation and freeing, socket memory accounting, page pinning. */
    {"__alloc_skb", PHASE_MEMORY}, {"alloc_skb", PHASE_MEMORY}, {"__build_skb", PHASE_MEMORY},
    {"kmalloc", PHASE_MEMORY}, {"__kmalloc", PHASE_MEMORY}, {"kmem_cache_", PHASE_MEMORY},
    {"kfree", PHASE_MEMORY}, {"__kfree_skb", PHASE_MEMORY}, {"kfree_skb", PHASE_MEMORY},
    {"sk_skb_reason_drop", PHASE_MEMORY}, {"consume_skb", PHASE_MEMORY},
    {"__consume_stateless_skb", PHASE_MEMORY}, {"skb_release", PHASE_MEMORY},
    {"skb_free_head", PHASE_MEMORY}, {"napi_consume_skb", PHASE_MEMORY},
    {"skb_attempt_defer_free", PHASE_MEMORY}, {"skb_clone", PHASE_MEMORY},
    {"__skb_clone", PHASE_MEMORY}, {"pskb_expand_head", PHASE_MEMORY},
    {"skb_set_owner", PHASE_MEMORY}, {"sock_wfree", PHASE_MEMORY}, {"sock_rfree", PHASE_MEMORY},
    {"sock_wmalloc", PHASE_MEMORY}, {"sock_alloc_send", PHASE_MEMORY},
    {"sock_kmalloc", PHASE_MEMORY}, {"sock_kfree", PHASE_MEMORY},
    {"alloc_skb_with_frags", PHASE_MEMORY}, {"tcp_stream_alloc_skb", PHASE_MEMORY},
    {"tcp_wfree", PHASE_MEMORY}, {"sk_wmem_free_skb", PHASE_MEMORY},
    {"sk_forced_mem_schedule", PHASE_MEMORY}, {"__sk_mem_", PHASE_MEMORY},
    {"sk_mem_", PHASE_MEMORY}, {"sk_page_frag", PHASE_MEMORY},
    {"skb_page_frag_refill", PHASE_MEMORY}, {"page_frag_", PHASE_MEMORY},
    {"mem_cgroup_", PHASE_MEMORY}, {"__mem_cgroup_", PHASE_MEMORY}, {"memcg_", PHASE_MEMORY},
    {"__memcg_", PHASE_MEMORY}, {"__mod_memcg", PHASE_MEMORY}, {"mod_memcg", PHASE_MEMORY},
    {"obj_cgroup_", PHASE_MEMORY}, {"refill_obj_stock", PHASE_MEMORY},
    {"drain_obj_stock", PHASE_MEMORY}, {"consume_obj_stock", PHASE_MEMORY},
    {"__alloc_pages", PHASE_MEMORY}, {"alloc_pages", PHASE_MEMORY},
    {"get_page_from_freelist", PHASE_MEMORY}, {"free_unref_", PHASE_MEMORY},
    {"__free_pages", PHASE_MEMORY}, {"___slab_alloc", PHASE_MEMORY},
    {"__slab_free", PHASE_MEMORY}, {"slab_", PHASE_MEMORY}, {"kmalloc_reserve", PHASE_MEMORY},
    {"__folio_put", PHASE_MEMORY}, {"folio_", PHASE_MEMORY}, {"put_page", PHASE_MEMORY},
    {"__zerocopy_sg_from_iter", PHASE_MEMORY}, {"zerocopy_sg_from_iter", PHASE_MEMORY},
    {"skb_zerocopy_iter", PHASE_MEMORY}, {"pin_user_pages", PHASE_MEMORY},
    {"get_user_pages", PHASE_MEMORY}, {"gup_", PHASE_MEMORY}, {"__gup_", PHASE_MEMORY},
    {"unpin_user_page", PHASE_MEMORY}, {"mm_account_pinned", PHASE_MEMORY},
    {"__skb_zcopy", PHASE_MEMORY}, {"skb_zcopy", PHASE_MEMORY}, {"net_zcopy", PHASE_MEMORY},
    {"msg_zerocopy_realloc", PHASE_MEMORY}, {"msg_zerocopy_alloc", PHASE_MEMORY},
    {"__free_frozen_pages", PHASE_MEMORY}, {"__alloc_frozen_pages", PHASE_MEMORY},
    {"uncharge_", PHASE_MEMORY}, {"page_counter_", PHASE_MEMORY},
    {"try_charge_memcg", PHASE_MEMORY}, {"memcg1_", PHASE_MEMORY},
    {"__account_obj_stock", PHASE_MEMORY}, {"page_reporting_", PHASE_MEMORY},
    {"skb_defer_free", PHASE_MEMORY}, {"free_frozen_pages", PHASE_MEMORY},
};

const char *probe_phase_name(enum probe_phase p)
{
    return (unsigned)p < PHASE_COUNT ? phase_names[p] : "?";
}

int probe_phase_parse(const char *name)
{
    for (int p = 0; p < PHASE_COUNT; p++)
        if (strcmp(name, phase_names[p]) == 0)
            return p;
    return -1;
}

enum probe_phase probe_phase_classify(const char *fn, bool *named)
{
    size_t best = 0;
    enum probe_phase phase = PHASE_OTHER;
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        size_t l = strlen(rules[i].prefix);
        if (l > best && strncmp(fn, rules[i].prefix, l) == 0) {
            best = l;
            phase = rules[i].phase;
        }
    }
    if (named)
        *named = best > 0;
    return phase;
}
