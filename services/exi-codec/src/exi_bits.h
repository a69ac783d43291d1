/* Bit-packed reader and writer (EXI "bit-packed" alignment, most significant bit first). */
#ifndef CCSBUS_EXI_BITS_H
#define CCSBUS_EXI_BITS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const uint8_t *buf;  /* start of the stream */
    const uint8_t *p;    /* next byte to load into the cache */
    const uint8_t *end;
    uint64_t cache;      /* unread bits, most significant first */
    unsigned avail;      /* number of valid bits in cache */
} exi_reader;

typedef struct {
    uint8_t *buf;
    size_t cap;   /* bytes */
    size_t pos;   /* bits written */
} exi_writer;

static inline void exi_rinit(exi_reader *r, const uint8_t *buf, size_t len)
{
    r->buf = r->p = buf;
    r->end = buf + len;
    r->cache = 0;
    r->avail = 0;
}

/* Bits consumed so far (for error offsets). */
static inline size_t exi_rpos(const exi_reader *r)
{
    return (size_t)(r->p - r->buf) * 8u - r->avail;
}

/* Bits not yet consumed. */
static inline size_t exi_rleft(const exi_reader *r)
{
    return (size_t)(r->end - r->p) * 8u + r->avail;
}

/* Read n <= 32 bits; returns 0, or -1 when the input is too short. The 64-bit cache is
 * refilled a byte at a time only when it holds fewer than n bits. */
static inline int exi_rd(exi_reader *r, unsigned n, uint32_t *out)
{
    if (r->avail < n) {
        while (r->avail <= 56u && r->p < r->end) {
            r->cache |= (uint64_t)*r->p++ << (56u - r->avail);
            r->avail += 8u;
        }
        if (r->avail < n)
            return -1;
    }
    /* two shifts: n == 0 must give 0 without a shift by 64 */
    *out = (uint32_t)((r->cache >> (63u - n)) >> 1);
    r->cache <<= n;
    r->avail -= n;
    return 0;
}

/* Write the low n <= 32 bits of v; returns 0, or -1 when the buffer is full. */
static inline int exi_wr(exi_writer *w, unsigned n, uint32_t v)
{
    if (((w->pos + n + 7u) >> 3) > w->cap)
        return -1;
    while (n) {
        size_t byte = w->pos >> 3;
        unsigned off = (unsigned)(w->pos & 7u);
        unsigned room = 8u - off;
        unsigned take = n < room ? n : room;
        uint32_t bits = (v >> (n - take)) & ((1u << take) - 1u);
        if (off == 0)
            w->buf[byte] = 0;
        w->buf[byte] = (uint8_t)(w->buf[byte] | (bits << (room - take)));
        w->pos += take;
        n -= take;
    }
    return 0;
}

#endif
