/* The HTTP/1.1 protocol: GET requests on keep-alive connections, pipelined up to --depth, and an
 * incremental response parser.
 *
 * The parser takes bytes as they come, in pieces of any size, and keeps only a state, a counter
 * and the first bytes of the current line: the status line, the headers it acts on
 * (Content-Length, Transfer-Encoding: chunked, Connection: close) and chunk sizes. Bodies are
 * skipped by length, never copied. Anything that is not a well-formed response (a bad status
 * line, a line longer than HTTP_LINE_MAX, a bad length or chunk size, a response with neither a
 * length nor chunking, which could only end at a close) is garbage: the connection is closed and
 * counted. 1xx responses are skipped; 204 and 304 have no body. Responses outside 2xx complete
 * their request and are counted by status class and as a "status" error. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "load.h"

#define HTTP_LINE_MAX 65536u

enum { S_STATUS, S_HEADER, S_BODY, S_CHUNK_SIZE, S_CHUNK_DATA, S_CHUNK_END, S_TRAILER };

static char *request;
static size_t request_len;

int http_global_init(const struct load_opts *o)
{
#define REQ_FMT "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: rill-load\r\n\r\n"
    int n = snprintf(NULL, 0, REQ_FMT, o->path, o->host);
    request = malloc((size_t)n + 1);
    if (!request)
        return -ENOMEM;
    snprintf(request, (size_t)n + 1, REQ_FMT, o->path, o->host);
    request_len = (size_t)n;
    return 0;
}

void http_global_fini(void)
{
    free(request);
    request = NULL;
}

static void http_reset(struct lconn *lc)
{
    memset(&lc->hp, 0, sizeof lc->hp);
}

static int http_send(struct lconn *lc, struct req *r)
{
    (void)r;
    struct iovec iov = {request, request_len};
    return rill_send(lc->c, &iov, 1, NULL, NULL);
}

/* "HTTP/1.1 200 OK": returns the status or -1. */
static int parse_status(const char *l, uint32_t n)
{
    if (n < 12 || strncmp(l, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)l[7]) || l[8] != ' ')
        return -1;
    if (!isdigit((unsigned char)l[9]) || !isdigit((unsigned char)l[10]) ||
        !isdigit((unsigned char)l[11]) || (n > 12 && l[12] != ' '))
        return -1;
    return (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
}

/* Acts on one header line. Returns 0 or -1 for a malformed one we care about. */
static int parse_header(struct http_parse *hp)
{
    char *l = hp->line, *colon = memchr(l, ':', hp->line_len < sizeof hp->line ? hp->line_len
                                                                               : sizeof hp->line);
    if (!colon || colon == l)
        return -1;
    *colon = '\0';
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    if (!strcasecmp(l, "content-length")) {
        char *end;
        if (!isdigit((unsigned char)*v))
            return -1;
        hp->left = strtoull(v, &end, 10);
        while (*end == ' ' || *end == '\t')
            end++;
        if (*end)
            return -1;
        hp->has_len = true;
    } else if (!strcasecmp(l, "transfer-encoding")) {
        hp->chunked = strcasestr(v, "chunked") != NULL;
    } else if (!strcasecmp(l, "connection")) {
        hp->close = strcasestr(v, "close") != NULL;
    }
    return 0;
}

/* The blank line after the headers. Returns 1 when the response is complete, 0 when a body
 * follows, -1 when its end cannot be known. */
static int headers_done(struct http_parse *hp)
{
    if (hp->status < 200) { /* 1xx: informational, the real response follows */
        hp->state = S_STATUS;
        return 0;
    }
    if (hp->status == 204 || hp->status == 304)
        return 1;
    if (hp->chunked) {
        hp->state = S_CHUNK_SIZE;
        return 0;
    }
    if (!hp->has_len)
        return -1;
    if (hp->left == 0)
        return 1;
    hp->state = S_BODY;
    return 0;
}

static int chunk_size(struct http_parse *hp)
{
    char *end;
    if (!isxdigit((unsigned char)hp->line[0]))
        return -1;
    hp->left = strtoull(hp->line, &end, 16);
    if (*end && *end != ';' && *end != ' ' && *end != '\t')
        return -1;
    hp->state = hp->left ? S_CHUNK_DATA : S_TRAILER;
    return 0;
}

/* A complete line is in hp->line (NUL-terminated, CR stripped, truncated to its buffer).
 * Returns 1 when it completes a response, 0 to go on, -1 for garbage. */
static int on_line(struct http_parse *hp)
{
    switch (hp->state) {
    case S_STATUS:
        if ((hp->status = parse_status(hp->line, hp->line_len)) < 0)
            return -1;
        hp->chunked = hp->close = hp->has_len = false;
        hp->left = 0;
        hp->state = S_HEADER;
        return 0;
    case S_HEADER:
        if (hp->line_len == 0)
            return headers_done(hp);
        return parse_header(hp);
    case S_CHUNK_SIZE:
        return chunk_size(hp);
    case S_CHUNK_END:
        if (hp->line_len != 0)
            return -1;
        hp->state = S_CHUNK_SIZE;
        return 0;
    case S_TRAILER:
        return hp->line_len == 0 ? 1 : 0;
    }
    return -1;
}

/* Takes bytes into the current line; returns how many were used, and sets *eol at its end. */
static size_t take_line(struct http_parse *hp, const uint8_t *p, size_t len, bool *eol)
{
    const uint8_t *nl = memchr(p, '\n', len);
    size_t n = nl ? (size_t)(nl - p) + 1 : len;
    size_t body = nl ? n - 1 : n;
    for (size_t i = 0; i < body; i++) {
        if (hp->line_len + 1 < sizeof hp->line)
            hp->line[hp->line_len] = (char)p[i];
        hp->line_len++;
    }
    *eol = nl != NULL;
    if (*eol) {
        if (hp->line_len && hp->line_len < sizeof hp->line && hp->line[hp->line_len - 1] == '\r')
            hp->line_len--;
        else if (hp->line_len >= sizeof hp->line) /* long line: its CR is past what we keep */
            hp->line_len--;
        hp->line[hp->line_len < sizeof hp->line ? hp->line_len : sizeof hp->line - 1] = '\0';
    }
    return n;
}

/* Parses up to one response out of p. Returns the bytes used; *done is 1 when a response
 * completed, -1 on garbage, else 0. */
static size_t step(struct http_parse *hp, const uint8_t *p, size_t len, int *done)
{
    *done = 0;
    if (hp->state == S_BODY || hp->state == S_CHUNK_DATA) {
        size_t n = hp->left < len ? (size_t)hp->left : len;
        hp->left -= n;
        if (hp->left == 0) {
            if (hp->state == S_BODY)
                *done = 1;
            hp->state = hp->state == S_BODY ? S_STATUS : S_CHUNK_END;
        }
        return n;
    }
    size_t used = 0;
    while (used < len) {
        bool eol;
        used += take_line(hp, p + used, len - used, &eol);
        if (hp->line_len > HTTP_LINE_MAX) {
            *done = -1;
            return used;
        }
        if (!eol)
            return used;
        int r = on_line(hp);
        hp->line_len = 0;
        if (r != 0) {
            *done = r;
            if (r == 1)
                hp->state = S_STATUS;
            return used;
        }
        if (hp->state == S_BODY || hp->state == S_CHUNK_DATA)
            return used;
    }
    return used;
}

int http_parse_feed(struct http_parse *hp, const uint8_t *p, size_t len, int *status,
                    size_t *consumed)
{
    int n = 0;
    size_t used = 0;
    while (used < len) {
        int done;
        used += step(hp, p + used, len - used, &done);
        if (done < 0) {
            *consumed = used;
            return -1;
        }
        if (done) {
            *status = hp->status;
            n++;
        }
    }
    *consumed = used;
    return n;
}

static void response(struct lconn *lc, uint64_t now)
{
    struct worker *w = lc->w;
    int st = lc->hp.status;
    if (w->measuring)
        w->status[st >= 100 && st < 600 ? st / 100 : 0]++;
    if (st < 200 || st > 299)
        worker_error(w, ERR_STATUS, 0);
    if (lc->hp.close)
        lc->peer_closes = true; /* the server closes after this one: send no more here */
    conn_complete(lc, now);
}

static void http_data(struct lconn *lc, const uint8_t *p, size_t len, uint64_t now)
{
    size_t used = 0;
    while (used < len && !lc->closing) {
        int done;
        used += step(&lc->hp, p + used, len - used, &done);
        if (done < 0) {
            conn_fail(lc, ERR_GARBAGE, 0);
            return;
        }
        if (done) {
            if (!lc->inflight) {
                conn_fail(lc, ERR_EXTRA, 0); /* a response to nothing we asked */
                return;
            }
            response(lc, now);
        }
    }
}

static bool http_partial(const struct lconn *lc)
{
    return lc->hp.state != S_STATUS || lc->hp.line_len > 0;
}

const struct proto proto_http = {
    .send = http_send, .data = http_data, .reset = http_reset, .partial = http_partial};
