/* cidr.h - address prefixes ("198.18.0.0/15", "::1/128") and the client ACL of a
 * listener: parsing them from text, and whether a client address lies in one.
 *
 * Addresses are bytes in network order with a family passed as a plain int, as the
 * kernel numbers them (CIDR_INET = AF_INET = 2, CIDR_INET6 = AF_INET6 = 10 on Linux;
 * the runtime checks that they agree), so nothing here needs a socket header.
 *
 * IPv4 is IPv4 wherever it comes from: a client of a dual-stack ("[::]") listener
 * arrives as ::ffff:a.b.c.d and is matched as a.b.c.d against the IPv4 prefixes, and an
 * IPv4-mapped prefix in the text (::ffff:198.18.0.0/111) is read as the IPv4 prefix it
 * denotes (198.18.0.0/15).  An IPv6 prefix never matches an IPv4 client, not even ::/0.
 *
 * Pure.  Return convention: 0 / -1 (and CIDR_HOST_BITS, below). */
#ifndef TWLB_CIDR_H
#define TWLB_CIDR_H

#include <stddef.h>
#include <stdint.h>

#define CIDR_INET 2   /* AF_INET: 4 address bytes */
#define CIDR_INET6 10 /* AF_INET6: 16 address bytes */

struct cidr {
    int family;       /* CIDR_INET or CIDR_INET6 */
    unsigned len;     /* prefix length: 0..32 or 0..128 */
    uint8_t addr[16]; /* the network; IPv4 in the first 4 bytes; bits past len are 0 */
};

/* A prefix written with bits set past its length ("198.18.0.1/15"): cidr_parse() still
 * fills <out>, with those bits cleared (the prefix the text probably meant). */
#define CIDR_HOST_BITS (-2)

/* Parse "ADDRESS/LENGTH" or a bare "ADDRESS" (a /32 or /128): an IPv4 address in dotted
 * decimal (four parts, no leading zeros), or an IPv6 address as RFC 4291 writes it (with
 * "::" and a dotted IPv4 tail); LENGTH in decimal, at most 32 or 128, no leading zero.
 * Returns 0, CIDR_HOST_BITS, or -1 with <why>, a phrase that follows the quoted text in
 * an error message ("is not an IPv4 or IPv6 prefix (...)"). */
int cidr_parse(const char *s, struct cidr *out, const char **why);

/* 1 when address <addr> of <family> (4 or 16 bytes) lies in prefix <c>, else 0. */
int cidr_contains(const struct cidr *c, int family, const uint8_t *addr);

/* The index of the first prefix of <list> (<n> of them) that holds the address, or -1. */
long cidr_find(const struct cidr *list, size_t n, int family, const uint8_t *addr);

/* The client ACL of a listener: 1 when the client is refused, that is when it lies in a
 * <deny> prefix, or when <allow> is not empty and it lies in none of its prefixes.  Deny
 * wins: a client in both lists is refused.  0 when it may connect. */
int cidr_acl_refuses(const struct cidr *allow, size_t n_allow, const struct cidr *deny,
                     size_t n_deny, int family, const uint8_t *addr);

/* The 16 bytes one client is known by (per-client limits): an IPv6 address as it is,
 * an IPv4 one (or an IPv4-mapped IPv6 one) as ::ffff:a.b.c.d, so that a client is the
 * same client on an IPv4 and on a dual-stack listener. */
void cidr_client_key(int family, const uint8_t *addr, uint8_t out[16]);

#endif
