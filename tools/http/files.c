/* rill-http --root DIR: mapping a request path to a file under DIR, safely.
 *
 * The path is percent-decoded, then split at '/': an empty or "." segment is skipped, a ".."
 * segment is refused (403) rather than normalised, as is a decoded NUL or '/'. What is left is
 * opened with openat2(2) relative to DIR's descriptor with RESOLVE_BENEATH (nothing resolves
 * outside DIR, whatever the path) and RESOLVE_NO_SYMLINKS (no symbolic link anywhere in the
 * path, inside DIR or not: a symlink out of the root is 403, and so is one inside it). Kernels
 * before 5.6 have no openat2: there each segment is opened with openat(O_NOFOLLOW) in turn. A
 * directory is 403 (no listings, no index file); a missing file is 404; anything that is not
 * a regular file is 403. */
#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef RESOLVE_BENEATH
#define RESOLVE_BENEATH 0x08
#endif
#ifndef RESOLVE_NO_SYMLINKS
#define RESOLVE_NO_SYMLINKS 0x04
#endif
#ifndef RESOLVE_NO_MAGICLINKS
#define RESOLVE_NO_MAGICLINKS 0x02
#endif

static int have_openat2 = -1; /* unknown until the first open; loops race benignly on it */

int files_open_root(const char *dir)
{
    int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes the path into out (a relative path, segments joined by '/'). Returns 0, or the HTTP
 * status refusing it. */
static int clean_path(const char *path, size_t len, char *out, size_t cap)
{
    size_t o = 0, seg = 0; /* seg: where the current segment starts in out */
    for (size_t i = 0; i <= len; i++) {
        char c = i < len ? path[i] : '/';
        if (c == '%') {
            int h = i + 2 < len ? hexval(path[i + 1]) : -1, l = h >= 0 ? hexval(path[i + 2]) : -1;
            if (l < 0)
                return 400;
            c = (char)(h * 16 + l);
            i += 2;
            if (c == '\0' || c == '/')
                return 403; /* an encoded separator would hide a segment from the checks */
        } else if (c == '/') {
            size_t n = o - seg;
            if (n == 0 || (n == 1 && out[seg] == '.')) {
                o = seg; /* "//" and "/./" */
                continue;
            }
            if (n == 2 && out[seg] == '.' && out[seg + 1] == '.')
                return 403;
            if (i == len)
                break;
            if (o + 1 >= cap)
                return 414;
            out[o++] = '/';
            seg = o;
            continue;
        }
        if (o + 1 >= cap)
            return 414;
        out[o++] = c;
    }
    if (o > 0 && out[o - 1] == '/')
        o--;
    out[o] = '\0';
    return 0;
}

/* Fallback without openat2: each segment with O_NOFOLLOW, never leaving the root (no ".."
 * segment survives clean_path). */
static int open_by_segments(int root, char *rel)
{
    int dir = root;
    char *s = rel;
    for (;;) {
        char *slash = strchr(s, '/');
        if (slash)
            *slash = '\0';
        int fd = openat(dir, s, (slash ? O_PATH | O_DIRECTORY : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC);
        int err = errno;
        if (slash)
            *slash = '/';
        if (dir != root)
            close(dir);
        if (fd < 0)
            return -err;
        if (!slash)
            return fd;
        dir = fd;
        s = slash + 1;
    }
}

static int open_beneath(int root, char *rel)
{
    if (have_openat2 != 0) {
        struct open_how how = {.flags = O_RDONLY | O_CLOEXEC,
                               .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                                          RESOLVE_NO_MAGICLINKS};
        long fd = syscall(SYS_openat2, root, rel, &how, sizeof how);
        if (fd >= 0 || errno != ENOSYS) {
            have_openat2 = 1;
            return fd >= 0 ? (int)fd : -errno;
        }
        have_openat2 = 0;
    }
    return open_by_segments(root, rel);
}

static int status_of_errno(int err)
{
    switch (err) {
    case ENOENT:
    case ENOTDIR:
        return 404;
    case ENAMETOOLONG:
        return 414;
    case ELOOP: /* a symbolic link (RESOLVE_NO_SYMLINKS, O_NOFOLLOW) */
    case EXDEV: /* an escape RESOLVE_BENEATH caught */
    case EACCES:
    case EPERM:
        return 403;
    default:
        return 500;
    }
}

static const struct {
    const char *ext, *type;
} types[] = {
    {".html", "text/html"}, {".htm", "text/html"},        {".txt", "text/plain"},
    {".css", "text/css"},   {".js", "text/javascript"},   {".json", "application/json"},
    {".png", "image/png"},  {".jpg", "image/jpeg"},       {".svg", "image/svg+xml"},
};

static const char *type_of(const char *rel)
{
    const char *dot = strrchr(rel, '.');
    if (dot && !strchr(dot, '/'))
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (!strcmp(dot, types[i].ext))
                return types[i].type;
    return "application/octet-stream";
}

int files_resolve(int root, const char *path, size_t len, struct file_hit *hit)
{
    char rel[FILES_PATH_MAX];
    int st = clean_path(path, len, rel, sizeof rel);
    if (st)
        return st;
    if (rel[0] == '\0')
        return 403; /* the root itself: a directory */
    int fd = open_beneath(root, rel);
    if (fd < 0)
        return status_of_errno(-fd);
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return 403; /* a directory, a device, a FIFO: never served */
    }
    hit->fd = fd;
    hit->size = (uint64_t)sb.st_size;
    hit->type = type_of(rel);
    return 200;
}
