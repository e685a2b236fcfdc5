/* addr.h - addresses as the configuration writes them: "IP:PORT", "[IPv6]:PORT",
 * "NAME:PORT" (a host name, resolved when the config is loaded: at start, --check and
 * every reload; on the main thread, never on a worker's loop), or an IP alone (inside
 * addresses).  Returns 0, or -1 with a short reason. */
#ifndef TWLB_CONFIG_ADDR_H
#define TWLB_CONFIG_ADDR_H

#include <sys/socket.h>

/* A parsed "ip:port" or "[ipv6]:port" (ip alone for inside addresses: port 0). */
struct cfg_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    char text[64];     /* as written in the config, for logs and metric labels */
    char resolved[64]; /* the address in use, "IP:PORT" or "[IPv6]:PORT" (= text for an
                          IP literal) */
};

/* Parse "1.2.3.4:80", "[::1]:80", "name.example:80" (want_port=1) or "1.2.3.4", "::1"
 * (want_port=0).  A name (letters, digits, '-' and '.', at least one letter) is resolved
 * with getaddrinfo(); its first IPv4 address is taken, else its first IPv6 one.  Returns
 * 0, or -1 with a short reason in <why> (static, or valid until the next call). */
int cfg_addr_parse(const char *s, int want_port, struct cfg_addr *out, const char **why);

/* 1 when both are parsed and name the same address and port, else 0. */
int cfg_addr_same(const struct cfg_addr *a, const struct cfg_addr *b);

/* 1 when <a> is a loopback address (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104), else 0. */
int cfg_addr_is_loopback(const struct cfg_addr *a);

#endif
