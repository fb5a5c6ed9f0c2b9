/* rill-http --root DIR: request paths to files under DIR (files.c says how escapes are
 * refused). */
#ifndef RILL_HTTP_FILES_H
#define RILL_HTTP_FILES_H

#include <stddef.h>
#include <stdint.h>

#define FILES_PATH_MAX 1024 /* the decoded relative path, bytes */

struct file_hit {
    int fd;           /* open for reading; the caller closes it */
    uint64_t size;    /* its length when opened */
    const char *type; /* Content-Type by extension (static string) */
};

/* Opens DIR for resolving beneath it (O_PATH). Returns the descriptor or -errno. */
int files_open_root(const char *dir);

/* Maps a request path (as the parser keeps it: before any '?', not decoded) to a regular file
 * beneath root. Returns 200 and *hit, or the HTTP status to answer: 400 a bad percent escape,
 * 403 a ".." segment, a symlink, an escape, a directory or a non-regular file, 404 missing,
 * 414 too long, 500 another open error. */
int files_resolve(int root, const char *path, size_t len, struct file_hit *hit);

#endif
