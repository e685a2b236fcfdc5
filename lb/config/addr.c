/* addr.c - see addr.h. */
#include "config/addr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A host name: letters, digits, '-' and '.', with at least one letter (so that a bad
 * IPv4 literal such as 198.18.0.300 stays an error, never a DNS query). */
static int is_hostname(const char *h)
{
    int letter = 0;
    if (!*h || *h == '-' || *h == '.')
        return 0;
    for (const char *p = h; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))
            letter = 1;
        else if (!(*p >= '0' && *p <= '9') && *p != '-' && *p != '.')
            return 0;
    }
    return letter;
}

/* The first IPv4 address of <name>, else its first IPv6 one, into out->ss (no port). */
static int resolve(const char *name, struct cfg_addr *out, const char **why)
{
    static char msg[128];
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int r = getaddrinfo(name, NULL, &hints, &res);
    if (r != 0) {
        snprintf(msg, sizeof msg, "does not resolve (%s)", gai_strerror(r));
        *why = msg;
        return -1;
    }
    const struct addrinfo *pick = NULL;
    for (const struct addrinfo *ai = res; ai && !pick; ai = ai->ai_next)
        if (ai->ai_family == AF_INET)
            pick = ai;
    for (const struct addrinfo *ai = res; ai && !pick; ai = ai->ai_next)
        if (ai->ai_family == AF_INET6)
            pick = ai;
    if (pick) {
        memcpy(&out->ss, pick->ai_addr, pick->ai_addrlen);
        out->len = pick->ai_addrlen;
    }
    freeaddrinfo(res);
    if (!pick) {
        *why = "resolves to no IPv4 or IPv6 address";
        return -1;
    }
    return 0;
}

int cfg_addr_parse(const char *s, int want_port, struct cfg_addr *out, const char **why)
{
    memset(out, 0, sizeof *out);
    snprintf(out->text, sizeof out->text, "%s", s);
    char host[64];
    const char *port = NULL;
    size_t hlen;
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb) {
            *why = "missing ']'";
            return -1;
        }
        hlen = (size_t)(rb - s - 1);
        if (hlen >= sizeof host) {
            *why = "address too long";
            return -1;
        }
        memcpy(host, s + 1, hlen);
        host[hlen] = 0;
        if (rb[1] == ':')
            port = rb + 2;
        else if (rb[1]) {
            *why = "junk after ']'";
            return -1;
        }
    } else {
        const char *colon = strrchr(s, ':');
        if (want_port && colon && strchr(s, ':') == colon) {
            hlen = (size_t)(colon - s);
            port = colon + 1;
        } else {
            hlen = strlen(s);
        }
        if (hlen >= sizeof host) {
            *why = "address too long";
            return -1;
        }
        memcpy(host, s, hlen);
        host[hlen] = 0;
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&out->ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1 && s[0] != '[') {
        a4->sin_family = AF_INET;
        out->len = sizeof *a4;
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        out->len = sizeof *a6;
    } else if (want_port && s[0] != '[' && port && is_hostname(host)) {
        if (resolve(host, out, why) < 0)
            return -1;
    } else {
        *why = want_port ? "is not an IPv4 or IPv6 address or a host name with a port "
                           "(expected \"IP:PORT\", \"[IPv6]:PORT\" or \"NAME:PORT\")"
                         : "is not an IPv4 or IPv6 address";
        return -1;
    }
    if (!want_port) {
        if (port) {
            *why = "must not have a port";
            return -1;
        }
        snprintf(out->resolved, sizeof out->resolved, "%s", s);
        return 0;
    }
    if (!port || !*port) {
        *why = "has no port (expected \"IP:PORT\" or \"[IPv6]:PORT\")";
        return -1;
    }
    char *end;
    errno = 0;
    long p = strtol(port, &end, 10);
    if (*end || errno || end == port) {
        *why = "has a port that is not a number";
        return -1;
    }
    if (p < 1 || p > 65535) {
        *why = "has a port out of range 1..65535";
        return -1;
    }
    if (out->ss.ss_family == AF_INET)
        a4->sin_port = htons((uint16_t)p);
    else
        a6->sin6_port = htons((uint16_t)p);
    char ip[INET6_ADDRSTRLEN] = "";
    if (out->ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &a4->sin_addr, ip, sizeof ip);
    else
        inet_ntop(AF_INET6, &a6->sin6_addr, ip, sizeof ip);
    snprintf(out->resolved, sizeof out->resolved,
             out->ss.ss_family == AF_INET6 ? "[%s]:%ld" : "%s:%ld", ip, p);
    return 0;
}

int cfg_addr_same(const struct cfg_addr *a, const struct cfg_addr *b)
{
    return a->len && a->len == b->len && !memcmp(&a->ss, &b->ss, a->len);
}

int cfg_addr_is_loopback(const struct cfg_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr) >> 24) == 127;
    if (a->ss.ss_family != AF_INET6)
        return 0;
    const struct in6_addr *x = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(x) || (IN6_IS_ADDR_V4MAPPED(x) && x->s6_addr[12] == 127);
}
