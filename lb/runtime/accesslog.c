/* accesslog.c - see accesslog.h. */
#include "runtime/accesslog.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>

#include "os/log.h"

static void addr_text(const struct sockaddr *ss, uint16_t port_override, char *out,
                      size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "-";
    uint16_t port = 0;
    if (ss->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const void *)ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
        port = ntohs(a->sin_port);
    } else if (ss->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const void *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
        port = ntohs(a->sin6_port);
    }
    if (port_override)
        port = port_override;
    snprintf(out, len, ss->sa_family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, port);
}

void accesslog_write(const struct access_record *r)
{
    if (!log_access_enabled())
        return;
    char t[LOG_TIME_LEN], client[64], inside[64] = "-";
    log_time(t);
    addr_text(r->client, 0, client, sizeof client);
    if (r->inside)
        addr_text(r->inside, r->inside_port, inside, sizeof inside);
    char line[1024];
    int n = snprintf(line, sizeof line,
                     log_access_json()
                         ? "{\"time\":\"%s\",\"listener\":\"%s\",\"client\":\"%s\","
                           "\"backend\":\"%s\",\"backend_address\":\"%s\",\"inside\":\"%s\","
                           "\"isn_mode\":\"%s\",\"reused_time_wait\":\"%s\","
                           "\"bytes_to_backend\":%llu,\"bytes_to_client\":%llu,"
                           "\"duration_ms\":%llu,\"queue_ms\":%llu,\"tries\":%zu,"
                           "\"first_fin\":\"%s\",\"end\":\"%s\"}"
                         : "time=%s listener=%s client=%s backend=%s backend_address=%s "
                           "inside=%s isn_mode=%s reused_time_wait=%s bytes_to_backend=%llu "
                           "bytes_to_client=%llu duration_ms=%llu queue_ms=%llu tries=%zu "
                           "first_fin=%s end=%s",
                     t, r->listener, client, r->backend ? r->backend : "-",
                     r->backend_address ? r->backend_address : "-", inside, r->isn_mode,
                     r->reused_time_wait ? "yes" : "no", (unsigned long long)r->bytes_to_backend,
                     (unsigned long long)r->bytes_to_client, (unsigned long long)r->duration_ms,
                     (unsigned long long)r->queue_ms, r->tries, r->first_fin, r->end);
    if (n > 0)
        log_access(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}
