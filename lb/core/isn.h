/* isn.h - initial sequence numbers for backend connections.  Pure: the caller
 * passes the time and the secret; nothing here reads a clock or a socket.
 *
 *   isn_fresh()   RFC 6528: keyed hash of the 4-tuple + a 4 us-ish clock, used for a
 *                 4-tuple the backend does not remember.
 *   isn_reuse()   for a 4-tuple the backend holds in TIME_WAIT: an ISN in
 *                 [rcv_nxt + 65537, rcv_nxt + 2^30) chosen by keyed hash, so it is
 *                 "after" rcv_nxt with a wide margin, never rcv_nxt - 1, and not
 *                 predictable from outside.  65537 mirrors the kernel's own choice
 *                 (old snd_nxt + 65537) when it reuses TIME_WAIT itself.
 *   isn_kernel_*  prediction of the kernel's own ISN clock (kernel-facts 3):
 *                 ISN = siphash(4-tuple, boot secret) + CLOCK_REALTIME_ns / 64. */
#ifndef TWLB_ISN_H
#define TWLB_ISN_H

#include <stddef.h>
#include <stdint.h>

enum isn_mode {
    ISN_AUTO,     /* explicit when CAP_NET_ADMIN is there, else kernel */
    ISN_EXPLICIT, /* twlb sets every ISN through TCP_REPAIR */
    ISN_KERNEL,   /* no privilege: predict the kernel's ISN, reuse only when safe */
    ISN_OFF,      /* reuse a 4-tuple only after its TIME_WAIT expired */
};
const char *isn_mode_name(enum isn_mode m);          /* "auto", "explicit", ... */
int isn_mode_parse(const char *s, enum isn_mode *out); /* 0 ok, -1 unknown */

/* The bytes of a 4-tuple as they enter the hash: addresses in network order
 * (4 or 16 bytes each), ports in host order. */
struct isn_tuple {
    uint8_t saddr[16], daddr[16];
    uint8_t addr_len; /* 4 or 16 */
    uint16_t sport, dport;
};

struct isn_key {
    uint8_t k[16]; /* secret; the proxy fills it from getrandom() at start */
};

/* SipHash-2-4 of <len> bytes under a 16-byte key (the reference algorithm). */
uint64_t isn_siphash24(const uint8_t key[16], const void *data, size_t len);

/* RFC 6528 ISN: siphash(tuple, key) + now_ns / 64. */
uint32_t isn_fresh(const struct isn_key *key, const struct isn_tuple *t, uint64_t now_ns);

/* ISN for reopening a 4-tuple that the backend holds in TIME_WAIT with <rcv_nxt>.
 * Result r satisfies 65537 <= (r - rcv_nxt) mod 2^32 < 2^30.  <now_ns> only varies
 * the choice between successive reuses of the same tuple. */
uint32_t isn_reuse(const struct isn_key *key, const struct isn_tuple *t,
                   uint32_t rcv_nxt, uint64_t now_ns);

/* How far the kernel's ISN clock for one 4-tuple advances between two SYNs
 * <dt_ns> apart: floor(dt_ns / 64) mod 2^32. */
uint32_t isn_kernel_advance(uint64_t dt_ns);

/* Kernel-mode safety: the old connection on this 4-tuple sent its SYN at
 * <old_syn_real_ns> (CLOCK_REALTIME read right after its connect() returned, so never
 * earlier than the kernel's ISN time) and <bytes> payload bytes to the backend.  A SYN
 * sent now would carry the kernel's ISN, which is "after" the old rcv_nxt iff
 * d = (advance - (bytes + 2)) mod 2^32 lies in [1, 2^31].  <now_real_ns> is read before
 * connect(), so the true advance is never smaller than the predicted one: at the lower
 * edge only a clock step can make the prediction wrong.  Returns 1 only if d lies in
 * [margin, 2^31 - max(margin, ISN_KERNEL_UPPER_GUARD)].  Returns 0 when the wall clock
 * went backwards or moved more than isn_kernel_skew_limit_ns(margin) away from the
 * monotonic clock over the same interval (<old_syn_mono_ns>, <now_mono_ns>): a step. */
int isn_kernel_reuse_safe(uint64_t old_syn_real_ns, uint64_t old_syn_mono_ns,
                          uint64_t now_real_ns, uint64_t now_mono_ns,
                          uint64_t bytes, uint32_t margin);

/* When does the reuse above become safe?  <dt_ns> is the time since the old SYN now;
 * returns the smallest dt >= dt_ns (ns since the old SYN) at which the kernel's ISN lies
 * in the safe window of isn_kernel_reuse_safe() for <bytes> and <margin> (the window
 * comes back every 2^32 ticks of 64 ns, about 275 s).  Ignores the clock-step test,
 * which waiting does not change: a caller that waits must apply it first, with
 * isn_kernel_skew_limit_ns(margin), or it waits for a port the test refuses. */
uint64_t isn_kernel_safe_at_ns(uint64_t dt_ns, uint64_t bytes, uint32_t margin);

/* The largest wall-clock step isn_kernel_reuse_safe() lets through: half the margin,
 * in ns of the ISN clock (64 ns per sequence number), and at most 50 ms.  A step that
 * is let through shifts a prediction only when it falls between a clock reading and the
 * kernel's ISN time, and then by at most this much: the other half of the margin stays. */
uint64_t isn_kernel_skew_limit_ns(uint32_t margin);

/* A margin in microseconds (reuse.kernel_margin_us) in sequence numbers of the kernel's
 * ISN clock (15.625 per us), rounded up, at most 2^30. */
uint32_t isn_kernel_margin_of_us(uint32_t us);

/* Default margin (docs/reuse.md, "The kernel-mode margin"): 4,096 us = 64,000 sequence
 * numbers.  The upper edge (near 2^31, an old connection about 137 s ago) keeps at
 * least ISN_KERNEL_UPPER_GUARD = 2^24 (1.07 s): there the error is the time from the
 * decision to connect(), which preemption can stretch to milliseconds, and a wide
 * guard costs no waiting. */
#define ISN_KERNEL_MARGIN_US 4096u
#define ISN_KERNEL_MARGIN ((uint32_t)(ISN_KERNEL_MARGIN_US * 125u / 8u))
#define ISN_KERNEL_UPPER_GUARD (1u << 24)

#endif
