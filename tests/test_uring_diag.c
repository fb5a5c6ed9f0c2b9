/* The words of an io_uring_setup failure (engine/probe.c), case by case: the pure wording
 * function for every errno the fallback line tells apart, with kernel.io_uring_disabled at 0, 1,
 * 2 and unreadable; the sysctl reader against the file itself; and the thread-local buffer of
 * the wrapper. test_uring_probe.c produces the same failures for real, under seccomp. */
#include <fcntl.h>
#include <pthread.h>

#include "harness.h"
#include "probe.h"

/* Words for (err, sysctl) in a buffer of the test's own. */
static const char *words(int err, int sysctl)
{
    static char buf[512];
    memset(buf, 'x', sizeof buf);
    const char *r = rill__uring_setup_reason_for(err, sysctl, buf, sizeof buf);
    cr_assert_eq(r, buf, "the text goes into the caller's buffer");
    cr_assert_lt(strlen(buf), sizeof buf);
    return buf;
}

static void has(const char *text, const char *word)
{
    cr_expect(strstr(text, word), "\"%s\" must say \"%s\"", text, word);
}

static void lacks(const char *text, const char *word)
{
    cr_expect(!strstr(text, word), "\"%s\" must not say \"%s\"", text, word);
}

Test(uring_diag, eperm_with_sysctl_0_blames_seccomp_or_lsm)
{
    (void)h_backends; /* harness.h's backend table: nothing here runs a loop */
    const char *t = words(-EPERM, 0);
    has(t, "seccomp");
    has(t, "security module");
    has(t, "EPERM");
    has(t, "io_uring_setup");
    /* The sysctl is mentioned only to rule it out. */
    has(t, "not the kernel.io_uring_disabled sysctl, which is 0");
    lacks(t, "disabled by");
    lacks(t, "limited by");
}

Test(uring_diag, eperm_with_sysctl_unreadable_says_so)
{
    const char *t = words(-EPERM, -1);
    has(t, "seccomp");
    has(t, "security module");
    has(t, "EPERM");
    has(t, "kernel.io_uring_disabled is absent or unreadable");
    lacks(t, "disabled by");
    lacks(t, "limited by");
}

Test(uring_diag, eperm_with_sysctl_1_names_the_group)
{
    const char *t = words(-EPERM, 1);
    has(t, "kernel.io_uring_disabled sysctl (1)");
    has(t, "kernel.io_uring_group");
    has(t, "not in that group");
    has(t, "EPERM");
    lacks(t, "seccomp");
}

Test(uring_diag, eperm_with_sysctl_2_disables_everyone)
{
    const char *t = words(-EPERM, 2);
    has(t, "disabled for everyone by the kernel.io_uring_disabled sysctl (2; EPERM)");
    has(t, "EPERM");
    lacks(t, "seccomp");
    lacks(t, "io_uring_group");
}

Test(uring_diag, enosys_is_seccomp_or_no_io_uring)
{
    /* The sysctl plays no part in ENOSYS, whatever its value. */
    for (int sysctl = -1; sysctl <= 2; sysctl++) {
        const char *t = words(-ENOSYS, sysctl);
        has(t, "ENOSYS");
        has(t, "seccomp");
        has(t, "kernel built without io_uring");
        lacks(t, "io_uring_disabled");
    }
}

Test(uring_diag, eacces_is_named_with_its_text)
{
    for (int sysctl = -1; sysctl <= 2; sysctl++)
        cr_expect_str_eq(words(-EACCES, sysctl),
                         "io_uring_setup failed: EACCES (Permission denied)");
}

Test(uring_diag, enomem_is_the_memlock_limit)
{
    const char *t = words(-ENOMEM, 0);
    has(t, "ENOMEM");
    has(t, "locked-memory");
    has(t, "RLIMIT_MEMLOCK");
}

Test(uring_diag, other_errnos_are_named_with_their_text)
{
    cr_expect_str_eq(words(-EINVAL, 0), "io_uring_setup failed: EINVAL (Invalid argument)");
    cr_expect_str_eq(words(-EFAULT, 1), "io_uring_setup failed: EFAULT (Bad address)");
    /* A positive errno is taken as the same failure. */
    cr_expect_str_eq(words(EIO, -1), "io_uring_setup failed: EIO (Input/output error)");
    const char *t = words(-EMFILE, 0);
    has(t, "out of file descriptors");
    has(t, "EMFILE (Too many open files)");
    /* No name for it: the number. */
    cr_expect_str_eq(words(-4000, 0), "io_uring_setup failed: errno 4000");
}

Test(uring_diag, small_buffers_are_cut_and_terminated)
{
    char buf[16];
    cr_expect_eq(rill__uring_setup_reason_for(-EACCES, 0, buf, sizeof buf), buf);
    cr_expect_str_eq(buf, "io_uring_setup ");
    cr_expect_str_eq(rill__uring_setup_reason_for(-EACCES, 0, buf, 0), "");
    cr_expect_str_eq(rill__uring_setup_reason_for(-EACCES, 0, NULL, 16), "");
}

/* The reader agrees with the file (the tests only read the sysctl, never write it). */
Test(uring_diag, sysctl_reader_matches_proc)
{
    int got = rill__uring_disabled_sysctl();
    int fd = open("/proc/sys/kernel/io_uring_disabled", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        cr_expect_eq(got, -1, "an unreadable sysctl reads as -1, got %d", got);
        return;
    }
    char text[16] = {0};
    ssize_t n = read(fd, text, sizeof text - 1);
    close(fd);
    cr_assert_gt(n, 0);
    cr_expect_eq(got, atoi(text), "read %d, the file says %s", got, text);
    cr_expect(got >= 0 && got <= 2, "kernel.io_uring_disabled is 0, 1 or 2, read %d", got);
}

/* The wrapper words EPERM by the sysctl it reads here, and the rest as the pure function does. */
Test(uring_diag, wrapper_reads_the_sysctl_for_eperm)
{
    char want[512];
    int sysctl = rill__uring_disabled_sysctl();
    rill__uring_setup_reason_for(-EPERM, sysctl, want, sizeof want);
    cr_expect_str_eq(rill__uring_setup_reason(-EPERM), want);
    rill__uring_setup_reason_for(-EACCES, sysctl, want, sizeof want);
    cr_expect_str_eq(rill__uring_setup_reason(-EACCES), want);
}

/* Each thread words into its own buffer: two threads wording different errnos at once each
 * read back their own text. */
struct worder {
    int err;
    int mismatches;
};

static void *word_many(void *arg)
{
    struct worder *w = arg;
    char want[512];
    rill__uring_setup_reason_for(w->err, rill__uring_disabled_sysctl(), want, sizeof want);
    for (int i = 0; i < 2000; i++)
        if (strcmp(rill__uring_setup_reason(w->err), want) != 0)
            w->mismatches++;
    return NULL;
}

Test(uring_diag, wrapper_buffer_is_per_thread, .timeout = 30)
{
    struct worder a = {-EACCES, 0}, b = {-ENOSYS, 0};
    pthread_t ta, tb;
    cr_assert_eq(pthread_create(&ta, NULL, word_many, &a), 0);
    cr_assert_eq(pthread_create(&tb, NULL, word_many, &b), 0);
    const char *mine = rill__uring_setup_reason(-ENOMEM);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    cr_expect_eq(a.mismatches, 0);
    cr_expect_eq(b.mismatches, 0);
    has(mine, "ENOMEM"); /* the other threads' calls did not overwrite this thread's text */
}
