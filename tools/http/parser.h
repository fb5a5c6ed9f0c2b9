/* An incremental HTTP/1.1 request parser for rill-http: no allocation, no copy of the input,
 * resumable at any byte boundary.
 *
 * Feed it whatever bytes arrived; it consumes them up to the end of one request (head and body)
 * and says so, or up to the end of the input and asks for more. It keeps only what routing and
 * connection management need: the method, the path (up to HTTP_PATH_KEEP bytes), the version,
 * Content-Length, the Connection tokens and whether Transfer-Encoding was present. Bodies are
 * counted and skipped, never stored.
 *
 * Limits, each with its status: a malformed request is 400; a request-target longer than
 * max_target is 414; a head (request line and header fields) longer than max_head is 431; a
 * Content-Length over max_body is 413; Transfer-Encoding (chunked bodies are not implemented)
 * is 501; an HTTP major version other than 1 is 505. After an error the parser stays in error
 * and consumes nothing more: the connection must be answered and closed, since where the next
 * request would start is unknown. */
#ifndef RILL_HTTP_PARSER_H
#define RILL_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_PATH_KEEP 255 /* bytes of the path kept (routing, --root); longer ones are cut */

struct http_limits {
    uint32_t max_head;   /* request line + header fields, bytes (default 8 KiB) */
    uint32_t max_target; /* request-target, bytes (default 4 KiB) */
    uint64_t max_body;   /* Content-Length, bytes (default 1 MiB) */
};

enum http_method {
    HTTP_OTHER = 0, /* a valid method token we do not know */
    HTTP_GET,
    HTTP_HEAD,
    HTTP_POST,
    HTTP_PUT,
    HTTP_DELETE,
    HTTP_OPTIONS,
};

/* What one complete request looked like. Valid until the next http_parse() call. */
struct http_request {
    enum http_method method;
    uint8_t version_minor;   /* 0 for HTTP/1.0, 1 for HTTP/1.1 (and 1 for 1.2 … 1.9) */
    bool keep_alive;         /* the connection may carry another request after this one */
    bool path_truncated;     /* the path was longer than HTTP_PATH_KEEP */
    uint16_t path_len;
    uint64_t content_length; /* the body's length (already skipped when reported) */
    char path[HTTP_PATH_KEEP + 1]; /* the target's path, before any '?'; NUL-terminated */
};

enum http_event {
    HTTP_NEED_MORE = 0, /* every byte was consumed; the request is not complete yet */
    HTTP_REQUEST = 1,   /* a complete request is in p->req; bytes after it are not consumed */
    HTTP_ERROR = -1,    /* the request is unacceptable; p->status says why (400, 413, ...) */
};

struct http_parser {
    struct http_limits lim;
    struct http_request req;
    int status;          /* the HTTP status of an error, else 0 */
    uint8_t state;
    uint8_t hdr;         /* the header field being read: one of parser.c's H_* */
    uint8_t idx;         /* position while matching a fixed string ("HTTP/") */
    uint8_t tok_len;     /* bytes in tok */
    bool tok_over;       /* the token being read is longer than tok (so it matches nothing) */
    bool has_cl, has_te, has_host, conn_close, conn_keep, cl_digits, cl_end;
    char tok[24];        /* method name, header name or Connection token, lowercased */
    uint32_t head_bytes;
    uint32_t target_bytes;
    uint64_t cl;         /* Content-Length being parsed */
    uint64_t body_left;
};

/* Prepares a parser. lim may be NULL for the defaults; zero members take their default too. */
void http_parser_init(struct http_parser *p, const struct http_limits *lim);

/* True while a request head is under way: some of its bytes came, not all of them yet. */
bool http_parser_in_head(const struct http_parser *p);

/* Consumes bytes of the request stream. Returns the number of bytes consumed (all of them
 * with HTTP_NEED_MORE; up to the end of the request with HTTP_REQUEST; up to and including the
 * offending byte with HTTP_ERROR) and sets *ev. Call it again with the rest after a request.
 * The next call after HTTP_REQUEST starts a new request; after HTTP_ERROR every call returns 0
 * bytes and HTTP_ERROR until http_parser_init(). */
size_t http_parse(struct http_parser *p, const char *data, size_t len, enum http_event *ev);

/* The reason phrase of the statuses this server sends ("Bad Request" for 400, ...). */
const char *http_reason(int status);

#endif
