/* fuzz_http.c - the admin endpoint's request parser (http_parse) on any bytes.  The first
 * byte says how the rest arrives: in reads of that many bytes (0: all at once), as a
 * socket would deliver them.  The parser must ask for more, answer a complete request
 * with a request that lies inside the buffer, or refuse with one of its statuses. */
#include <stdlib.h>
#include <string.h>

#include "admin/http.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t chunk = data[0] ? data[0] : size;
    data++;
    size--;
    char *buf = malloc(HTTP_HEAD_MAX);
    if (!buf)
        return 0;
    struct http_parser p = {0};
    struct http_request r = {0};
    size_t len = 0, off = 0;
    const char *token = (size & 1) ? "sekrit" : "";
    while (off < size) {
        size_t k = size - off;
        if (k > chunk)
            k = chunk;
        if (k > HTTP_HEAD_MAX - 1 - len)
            k = HTTP_HEAD_MAX - 1 - len;
        if (k == 0)
            abort(); /* the server would stall: a full buffer must have been answered */
        memcpy(buf + len, data + off, k);
        size_t was = len;
        len += k;
        off += k;
        buf[len] = 0;
        const char *msg = NULL;
        int rc = http_parse(&p, buf, len, was, token, &r, &msg);
        if (rc == 0)
            continue;
        if (rc == 1) {
            if (!r.method[0] || r.path[0] != '/' || !r.query ||
                r.body != buf + p.head_len || r.body + r.body_len > buf + len ||
                p.head_len > len || (!token[0] && !r.authorized))
                abort();
        } else if ((rc != 400 && rc != 411 && rc != 413 && rc != 431) || !msg) {
            abort();
        }
        break;
    }
    free(buf);
    return 0;
}
