/* The incremental HTTP/1.1 request parser (see parser.h): a byte-at-a-time state machine over
 * RFC 9112's request grammar. Every state is resumable, so a request split at any byte boundary
 * parses exactly as the whole one does; no byte is ever looked at twice and none is copied
 * except the few kept in the request (path) and the current token. */
#include "parser.h"

#include <string.h>

enum state {
    S_START,   /* before the request line; empty lines are skipped (RFC 9112 2.2) */
    S_METHOD,
    S_TARGET,
    S_VERSION, /* matching "HTTP/" (idx counts) */
    S_VMAJOR,
    S_VDOT,
    S_VMINOR,
    S_RL_CR,   /* after the version: CR LF or a bare LF */
    S_RL_LF,
    S_LINE,    /* at the start of a header line, or of the empty line ending the head */
    S_NAME,
    S_OWS,     /* between ':' and the field value */
    S_VALUE,
    S_VAL_LF,
    S_END_LF,  /* after the empty line's CR */
    S_BODY,
    S_DONE,    /* a request was reported; the next call starts another */
    S_ERROR,
};

/* The header fields the server acts on. */
enum { H_OTHER, H_CONTENT_LENGTH, H_CONNECTION, H_TRANSFER_ENCODING, H_HOST };

#define DEFAULT_MAX_HEAD (8u * 1024)
#define DEFAULT_MAX_TARGET (4u * 1024)
#define DEFAULT_MAX_BODY (1ull << 20)

/* tchar of RFC 9110 5.6.2: the characters of a token (method, header name). */
static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

static void start_request(struct http_parser *p)
{
    struct http_limits lim = p->lim;
    memset(p, 0, sizeof *p);
    p->lim = lim;
    p->state = S_START;
}

void http_parser_init(struct http_parser *p, const struct http_limits *lim)
{
    memset(p, 0, sizeof *p);
    if (lim)
        p->lim = *lim;
    if (!p->lim.max_head)
        p->lim.max_head = DEFAULT_MAX_HEAD;
    if (!p->lim.max_target)
        p->lim.max_target = DEFAULT_MAX_TARGET;
    if (!p->lim.max_body)
        p->lim.max_body = DEFAULT_MAX_BODY;
    if (p->lim.max_body > (1ull << 60))
        p->lim.max_body = 1ull << 60; /* so that the saturating cl * 10 + 9 cannot wrap */
    start_request(p);
}

static void tok_add(struct http_parser *p, unsigned char c)
{
    if (p->tok_len < sizeof p->tok)
        p->tok[p->tok_len++] = (char)c;
    else
        p->tok_over = true;
}

static bool tok_is(const struct http_parser *p, const char *s)
{
    size_t n = strlen(s);
    return !p->tok_over && p->tok_len == n && memcmp(p->tok, s, n) == 0;
}

static void tok_reset(struct http_parser *p)
{
    p->tok_len = 0;
    p->tok_over = false;
}

static enum http_method method_of(const struct http_parser *p)
{
    /* Methods are case-sensitive (RFC 9110 9.1): "get" is some other method. */
    static const struct {
        const char *name;
        enum http_method m;
    } known[] = {{"GET", HTTP_GET},       {"HEAD", HTTP_HEAD},     {"POST", HTTP_POST},
                 {"PUT", HTTP_PUT},       {"DELETE", HTTP_DELETE}, {"OPTIONS", HTTP_OPTIONS}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (tok_is(p, known[i].name))
            return known[i].m;
    return HTTP_OTHER;
}

/* The end of one Connection token (the field is a comma-separated list). */
static void conn_token(struct http_parser *p)
{
    if (tok_is(p, "close"))
        p->conn_close = true;
    else if (tok_is(p, "keep-alive"))
        p->conn_keep = true;
    tok_reset(p);
}

/* Called at the end of a field value. Returns an error status or 0. */
static int end_value(struct http_parser *p)
{
    if (p->hdr == H_CONTENT_LENGTH && !p->cl_digits)
        return 400; /* an empty Content-Length */
    if (p->hdr == H_CONNECTION)
        conn_token(p);
    return 0;
}

/* Called at ':' after a field name. Returns an error status or 0. */
static int begin_value(struct http_parser *p)
{
    p->hdr = H_OTHER;
    if (tok_is(p, "content-length")) {
        if (p->has_cl)
            return 400; /* duplicates invite request smuggling: refuse them all */
        p->has_cl = true;
        p->hdr = H_CONTENT_LENGTH;
    } else if (tok_is(p, "connection")) {
        p->hdr = H_CONNECTION;
    } else if (tok_is(p, "transfer-encoding")) {
        p->has_te = true;
        p->hdr = H_TRANSFER_ENCODING;
    } else if (tok_is(p, "host")) {
        if (p->has_host)
            return 400; /* RFC 9112 3.2: more than one Host is a 400 */
        p->has_host = true;
        p->hdr = H_HOST;
    }
    tok_reset(p);
    return 0;
}

/* One byte of a field value (not CR or LF). Returns an error status or 0. */
static int value_byte(struct http_parser *p, unsigned char c)
{
    if ((c < 0x20 && c != '\t') || c == 0x7f)
        return 400; /* controls are not allowed in field values (obs-text, >= 0x80, is) */
    switch (p->hdr) {
    case H_CONTENT_LENGTH:
        if (c >= '0' && c <= '9') {
            if (p->cl_end)
                return 400; /* "12 34" */
            p->cl_digits = true;
            /* Past the limit the exact value no longer matters: saturate, answer 413. */
            if (p->cl <= p->lim.max_body)
                p->cl = p->cl * 10 + (uint64_t)(c - '0');
        } else if ((c == ' ' || c == '\t') && p->cl_digits) {
            p->cl_end = true; /* trailing whitespace */
        } else {
            return 400;
        }
        break;
    case H_CONNECTION:
        if (c == ',' || c == ' ' || c == '\t')
            conn_token(p);
        else
            tok_add(p, lower(c));
        break;
    default:
        break;
    }
    return 0;
}

/* The empty line ended the head. Returns an error status or 0 and sets up the body. */
static int head_done(struct http_parser *p)
{
    if (p->has_te)
        return p->has_cl ? 400 : 501; /* both: RFC 9112 6.3 says treat as an attack */
    if (p->req.version_minor >= 1 && !p->has_host)
        return 400; /* RFC 9112 3.2: HTTP/1.1 requests carry Host */
    if (p->cl > p->lim.max_body)
        return 413;
    p->req.keep_alive =
        p->req.version_minor >= 1 ? !p->conn_close : (p->conn_keep && !p->conn_close);
    p->req.content_length = p->cl;
    p->body_left = p->cl;
    return 0;
}

bool http_parser_in_head(const struct http_parser *p)
{
    /* head_bytes counts every byte of the head, the empty lines before it included, and is
     * zeroed when the next request starts; the body and a finished request are not the head. */
    return p->head_bytes > 0 && p->state < S_BODY;
}

size_t http_parse(struct http_parser *p, const char *data, size_t len, enum http_event *ev)
{
    if (p->state == S_ERROR) {
        *ev = HTTP_ERROR;
        return 0;
    }
    if (p->state == S_DONE)
        start_request(p);
    size_t i = 0;
    int err = 0;
    while (i < len) {
        if (p->state == S_BODY) {
            size_t take = len - i;
            if (take > p->body_left)
                take = (size_t)p->body_left;
            i += take;
            p->body_left -= take;
            if (p->body_left == 0)
                goto done;
            continue;
        }
        unsigned char c = (unsigned char)data[i++];
        if (++p->head_bytes > p->lim.max_head) {
            err = 431;
            goto fail;
        }
        switch (p->state) {
        case S_START:
            if (c == '\r' || c == '\n')
                break;
            if (!is_tchar(c)) {
                err = 400;
                goto fail;
            }
            tok_add(p, c);
            p->state = S_METHOD;
            break;
        case S_METHOD:
            if (c == ' ') {
                p->req.method = method_of(p);
                tok_reset(p);
                p->idx = 0; /* 0: in the path, 1: in the query */
                p->state = S_TARGET;
            } else if (is_tchar(c)) {
                tok_add(p, c);
            } else {
                err = 400;
                goto fail;
            }
            break;
        case S_TARGET:
            if (c == ' ' && p->target_bytes > 0) {
                p->state = S_VERSION;
                p->idx = 0;
                break;
            }
            /* A target is visible ASCII: a control, a space first, DEL, a raw 8-bit byte, or
             * a line end (HTTP/0.9's "GET /") is malformed. */
            if (c <= 0x20 || c >= 0x7f || (p->target_bytes == 0 && c != '/' && c != '*' &&
                                           !((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))) {
                err = 400;
                goto fail;
            }
            if (++p->target_bytes > p->lim.max_target) {
                err = 414;
                goto fail;
            }
            if (p->idx == 0) {
                if (c == '?') {
                    p->idx = 1;
                } else if (p->req.path_len < HTTP_PATH_KEEP) {
                    p->req.path[p->req.path_len++] = (char)c;
                    p->req.path[p->req.path_len] = '\0';
                } else {
                    p->req.path_truncated = true;
                }
            }
            break;
        case S_VERSION:
            if (c != (unsigned char)"HTTP/"[p->idx]) {
                err = 400;
                goto fail;
            }
            if (++p->idx == 5)
                p->state = S_VMAJOR;
            break;
        case S_VMAJOR:
            if (c < '0' || c > '9') {
                err = 400;
                goto fail;
            }
            p->idx = (uint8_t)(c - '0');
            p->state = S_VDOT;
            break;
        case S_VDOT:
            if (c != '.') {
                err = 400;
                goto fail;
            }
            p->state = S_VMINOR;
            break;
        case S_VMINOR:
            if (c < '0' || c > '9') {
                err = 400;
                goto fail;
            }
            if (p->idx != 1) {
                err = 505;
                goto fail;
            }
            p->req.version_minor = c == '0' ? 0 : 1;
            p->state = S_RL_CR;
            break;
        case S_RL_CR:
            if (c == '\r') {
                p->state = S_RL_LF;
            } else if (c == '\n') {
                p->state = S_LINE; /* a bare LF ends a line too (RFC 9112 2.2 allows it) */
            } else {
                err = 400;
                goto fail;
            }
            break;
        case S_RL_LF:
        case S_VAL_LF:
            if (c != '\n') {
                err = 400;
                goto fail;
            }
            p->state = S_LINE;
            break;
        case S_LINE:
            if (c == '\r') {
                p->state = S_END_LF;
            } else if (c == '\n') {
                if ((err = head_done(p)))
                    goto fail;
                p->state = S_BODY;
                if (p->body_left == 0)
                    goto done;
            } else if (is_tchar(c)) {
                tok_reset(p);
                tok_add(p, lower(c));
                p->state = S_NAME;
            } else {
                err = 400; /* whitespace first is obs-fold (RFC 9112 5.2: reject) */
                goto fail;
            }
            break;
        case S_NAME:
            if (c == ':') {
                if ((err = begin_value(p)))
                    goto fail;
                p->state = S_OWS;
            } else if (is_tchar(c)) {
                tok_add(p, lower(c));
            } else {
                err = 400; /* includes whitespace before ':' (RFC 9112 5.1) */
                goto fail;
            }
            break;
        case S_OWS:
            if (c == ' ' || c == '\t')
                break;
            p->state = S_VALUE;
            __attribute__((fallthrough)); /* c is the value's first byte */
        case S_VALUE:
            if (c == '\r' || c == '\n') {
                if ((err = end_value(p)))
                    goto fail;
                p->state = c == '\r' ? S_VAL_LF : S_LINE;
            } else if ((err = value_byte(p, c))) {
                goto fail;
            }
            break;
        case S_END_LF:
            if (c != '\n') {
                err = 400;
                goto fail;
            }
            if ((err = head_done(p)))
                goto fail;
            p->state = S_BODY;
            if (p->body_left == 0)
                goto done;
            break;
        default:
            err = 500; /* unreachable: S_BODY is handled above, S_DONE/S_ERROR on entry */
            goto fail;
        }
    }
    *ev = HTTP_NEED_MORE;
    return i;
done:
    p->state = S_DONE;
    *ev = HTTP_REQUEST;
    return i;
fail:
    p->state = S_ERROR;
    p->status = err;
    *ev = HTTP_ERROR;
    return i;
}

const char *http_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}
