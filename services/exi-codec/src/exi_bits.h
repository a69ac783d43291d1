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

/* Read n <= 32 bits; returns 0, or -1 when the input is too short. */
static inline int exi_rd(exi_reader *r, unsigned n, uint32_t *out)
{
    uint32_t v = 0;
    if (n > r->nbits - r->pos || r->pos > r->nbits)
        return -1;
    while (n) {
        size_t byte = r->pos >> 3;
        unsigned avail = 8u - (unsigned)(r->pos & 7u);
        unsigned take = n < avail ? n : avail;
        v = (v << take) | (((uint32_t)r->buf[byte] >> (avail - take)) & ((1u << take) - 1u));
        r->pos += take;
        n -= take;
    }
    *out = v;
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
