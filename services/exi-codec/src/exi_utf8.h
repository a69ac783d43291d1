/* UTF-8 of Unicode scalar values (strings travel as code points in EXI, as UTF-8 in JSON). */
#ifndef CCSBUS_EXI_UTF8_H
#define CCSBUS_EXI_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Write the UTF-8 form of cp (a scalar value, not a surrogate) into out; returns its length. */
static inline unsigned exi_utf8_put(uint32_t cp, uint8_t out[4])
{
    if (cp < 0x80u) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800u) {
        out[0] = (uint8_t)(0xC0u | (cp >> 6));
        out[1] = (uint8_t)(0x80u | (cp & 0x3Fu));
        return 2;
    }
    if (cp < 0x10000u) {
        out[0] = (uint8_t)(0xE0u | (cp >> 12));
        out[1] = (uint8_t)(0x80u | ((cp >> 6) & 0x3Fu));
        out[2] = (uint8_t)(0x80u | (cp & 0x3Fu));
        return 3;
    }
    out[0] = (uint8_t)(0xF0u | (cp >> 18));
    out[1] = (uint8_t)(0x80u | ((cp >> 12) & 0x3Fu));
    out[2] = (uint8_t)(0x80u | ((cp >> 6) & 0x3Fu));
    out[3] = (uint8_t)(0x80u | (cp & 0x3Fu));
    return 4;
}

/* Decode one UTF-8 sequence of at most n bytes; returns its length, or 0 if it is not the
 * shortest form of a scalar value. */
static inline unsigned exi_utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    if (s[0] < 0x80u) {
        *cp = s[0];
        return 1;
    }
    if ((s[0] & 0xE0u) == 0xC0u && n >= 2 && (s[1] & 0xC0u) == 0x80u) {
        *cp = ((uint32_t)(s[0] & 0x1Fu) << 6) | (s[1] & 0x3Fu);
        return *cp >= 0x80u ? 2 : 0;
    }
    if ((s[0] & 0xF0u) == 0xE0u && n >= 3 && (s[1] & 0xC0u) == 0x80u &&
        (s[2] & 0xC0u) == 0x80u) {
        *cp = ((uint32_t)(s[0] & 0x0Fu) << 12) | ((uint32_t)(s[1] & 0x3Fu) << 6) |
              (s[2] & 0x3Fu);
        return (*cp >= 0x800u && (*cp < 0xD800u || *cp > 0xDFFFu)) ? 3 : 0;
    }
    if ((s[0] & 0xF8u) == 0xF0u && n >= 4 && (s[1] & 0xC0u) == 0x80u &&
        (s[2] & 0xC0u) == 0x80u && (s[3] & 0xC0u) == 0x80u) {
        *cp = ((uint32_t)(s[0] & 0x07u) << 18) | ((uint32_t)(s[1] & 0x3Fu) << 12) |
              ((uint32_t)(s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
        return (*cp >= 0x10000u && *cp <= 0x10FFFFu) ? 4 : 0;
    }
    return 0;
}

#endif
