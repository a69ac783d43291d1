/* Bit-packed reader and writer (EXI "bit-packed" alignment, most significant bit first). */
#ifndef CCSBUS_EXI_BITS_H
#define CCSBUS_EXI_BITS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const uint8_t *buf;
    size_t nbits;
    size_t pos;
} exi_reader;

typedef struct {
    uint8_t *buf;
    size_t cap;   /* bytes */
    size_t pos;   /* bits written */
} exi_writer;

/* Read n <= 32 bits; returns 0, or -1 when the input is too short. Reads a 64-bit window
 * (fewer bytes near the end) so that no value needs a loop. */
static inline int exi_rd(exi_reader *r, unsigned n, uint32_t *out)
{
    size_t byte, left;
    unsigned off;
    uint64_t w = 0;
    if (n > r->nbits - r->pos)
        return -1;
    if (n == 0) {
        *out = 0;
        return 0;
    }
    byte = r->pos >> 3;
    off = (unsigned)(r->pos & 7u);
    left = (r->nbits >> 3) - byte;
    if (left >= 8) {
        const uint8_t *p = r->buf + byte;
        w = ((uint64_t)p[0] << 56) | ((uint64_t)p[1] << 48) | ((uint64_t)p[2] << 40) |
            ((uint64_t)p[3] << 32) | ((uint64_t)p[4] << 24) | ((uint64_t)p[5] << 16) |
            ((uint64_t)p[6] << 8) | (uint64_t)p[7];
    } else {
        size_t i;
        for (i = 0; i < left; i++)
            w |= (uint64_t)r->buf[byte + i] << (56u - 8u * i);
    }
    *out = (uint32_t)((w << off) >> (64u - n));
    r->pos += n;
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
