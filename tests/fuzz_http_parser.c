/* libFuzzer target for rill-http's request parser (tools/http/parser.c).
 *
 * The first input byte seeds how the rest is cut into pieces; the stream is parsed twice, whole
 * and in those pieces, and both runs must report the same requests (method, path, version,
 * keep-alive, body length) and the same final error status: a parser that is resumable at any
 * byte boundary cannot tell the difference. Each piece is its own heap allocation of exactly its
 * size, so AddressSanitizer catches any read past it. Every reported request must also keep the
 * promises of parser.h (NUL-terminated path within HTTP_PATH_KEEP, body within the limit, a
 * known status on error); a violation aborts. Small limits make the 413/414/431 paths reachable.
 *
 * Build (the fuzz preset): cmake --preset fuzz && cmake --build build/fuzz --target fuzz_http_parser */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_REQ 256

struct seen {
    int n;
    int status;
    struct http_request req[MAX_REQ];
};

static void check(int ok)
{
    if (!ok)
        abort();
}

static void check_req(const struct http_request *r, const struct http_limits *lim)
{
    check(r->path_len <= HTTP_PATH_KEEP);
    check(r->path[r->path_len] == '\0');
    check(strlen(r->path) == r->path_len);
    check(r->version_minor <= 1);
    check(r->content_length <= lim->max_body);
    check(!r->path_truncated || r->path_len == HTTP_PATH_KEEP);
}

/* Feeds one piece; returns 0 once the parser is in error. */
static int feed(struct http_parser *p, const struct http_limits *lim, const uint8_t *src,
                size_t len, struct seen *s)
{
    char *buf = malloc(len ? len : 1);
    check(buf != NULL);
    memcpy(buf, src, len);
    const char *q = buf;
    size_t left = len;
    int alive = 1;
    while (left && alive) {
        enum http_event ev;
        size_t used = http_parse(p, q, left, &ev);
        check(used <= left);
        q += used;
        left -= used;
        switch (ev) {
        case HTTP_REQUEST:
            check_req(&p->req, lim);
            if (s->n < MAX_REQ)
                s->req[s->n] = p->req;
            s->n++;
            break;
        case HTTP_ERROR:
            check(p->status == 400 || p->status == 413 || p->status == 414 ||
                  p->status == 431 || p->status == 501 || p->status == 505);
            s->status = p->status;
            alive = 0;
            break;
        case HTTP_NEED_MORE:
            check(left == 0);
            break;
        }
    }
    free(buf);
    return alive;
}

static int same_req(const struct http_request *a, const struct http_request *b)
{
    return a->method == b->method && a->version_minor == b->version_minor &&
           a->keep_alive == b->keep_alive && a->path_len == b->path_len &&
           a->path_truncated == b->path_truncated && a->content_length == b->content_length &&
           memcmp(a->path, b->path, a->path_len) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint32_t rng = data[0] * 2654435761u + 1;
    data++;
    size--;
    struct http_limits lim = {.max_head = 512, .max_target = 128, .max_body = 4096};

    static struct seen whole, pieces;
    memset(&whole, 0, sizeof whole);
    memset(&pieces, 0, sizeof pieces);

    struct http_parser p;
    http_parser_init(&p, &lim);
    feed(&p, &lim, data, size, &whole);

    http_parser_init(&p, &lim);
    size_t off = 0;
    while (off < size) {
        rng = rng * 1103515245u + 12345u;
        size_t n = 1 + (rng >> 16) % 64;
        if (n > size - off)
            n = size - off;
        if (!feed(&p, &lim, data + off, n, &pieces))
            break;
        off += n;
    }

    check(whole.n == pieces.n);
    check(whole.status == pieces.status);
    for (int i = 0; i < whole.n && i < MAX_REQ; i++)
        check(same_req(&whole.req[i], &pieces.req[i]));
    return 0;
}
