/* ccsbus EXI codec: schema-informed EXI for ISO 15118 / DIN 70121 (AppProtocol, DIN, ISO-2).
 *
 * Decoding fills a caller-provided exi_doc (fixed capacity, no heap). Encoding takes a JSON
 * value tree (exi_jtree, filled by exi_json_parse or by a language binding) and walks the
 * grammar, so member order in the JSON does not matter.
 */
#ifndef CCSBUS_EXI_H
#define CCSBUS_EXI_H

#include <stddef.h>
#include <stdint.h>

#include "exi_tables.h"

/* Limits. Real messages stay far below them; exceeding one is EXI_E_CAPACITY. */
#define EXI_MAX_EVENTS 8192u   /* SE + AT + CH + EE events of one message */
#define EXI_MAX_POOL 65536u    /* bytes of decoded strings (UTF-8) and binary values */
#define EXI_MAX_DEPTH 24u      /* element nesting (the schemas nest at most 9 deep, xmldsig more) */
#define EXI_MAX_JNODES 8192u   /* JSON values of one message to encode */
#define EXI_MAX_JSTR 65536u    /* bytes of unescaped JSON strings */
#define EXI_MAX_MEMBERS 64u    /* members of one JSON object */

typedef enum {
    EXI_OK = 0,
    EXI_E_TRUNCATED = 1,    /* input ended inside an event or value */
    EXI_E_HEADER = 2,       /* not 0x80: cookie, options or another EXI version */
    EXI_E_EVENT = 3,        /* event code outside the grammar state */
    EXI_E_UNSUPPORTED = 4,  /* second-level event (xsi:type, xsi:nil, untyped) or wildcard */
    EXI_E_VALUE = 5,        /* value out of range / bad enum index / bad code point */
    EXI_E_CAPACITY = 6,     /* a limit above was exceeded */
    EXI_E_DEPTH = 7,        /* nesting deeper than EXI_MAX_DEPTH */
    EXI_E_JSON = 8,         /* JSON text is malformed */
    EXI_E_STRUCTURE = 9,    /* JSON tree does not fit the schema (missing/unexpected element) */
    EXI_E_OUTPUT = 10,      /* output buffer too small */
    EXI_E_SCHEMA = 11       /* unknown schema name */
} exi_status;

typedef struct {
    int code;             /* exi_status */
    uint32_t offset;      /* bit offset in the EXI stream (decode: read, encode: written) */
    char message[200];
} exi_error;

enum exi_event_kind { EXI_EV_SE = 0, EXI_EV_AT = 1, EXI_EV_CH = 2, EXI_EV_EE = 3 };

typedef struct {
    uint8_t kind;     /* exi_event_kind */
    uint8_t flags;    /* EXI_F_ARRAY for SE */
    uint16_t name;    /* SE, AT: index into schema names */
    uint16_t arg;     /* SE: grammar; AT, CH: datatype */
    uint16_t pad;
    uint32_t len;     /* SE: index of the matching EE; string/binary values: byte length */
    union {
        int64_t i;    /* INT, NBIT, BOOL, ENUM (index) */
        uint64_t u;   /* UINT */
        uint32_t off; /* STRING, HEX, BASE64: offset into pool */
    } v;
} exi_event;

typedef struct {
    const exi_schema *schema;
    uint32_t n_events;
    uint32_t pool_used;
    exi_event ev[EXI_MAX_EVENTS];
    uint8_t pool[EXI_MAX_POOL];
} exi_doc;

enum exi_jtype { EXI_J_NULL, EXI_J_FALSE, EXI_J_TRUE, EXI_J_INT, EXI_J_NUM, EXI_J_STR,
                 EXI_J_ARR, EXI_J_OBJ };

typedef struct {
    uint8_t type;
    uint8_t neg;          /* INT: negative */
    uint16_t pad;
    uint32_t key_len;     /* member of an object: key */
    const char *key;
    const char *str;      /* STR */
    uint32_t len;         /* STR: bytes; ARR, OBJ: number of children */
    uint32_t first;       /* ARR, OBJ: first child index (children are linked by next) */
    uint32_t next;        /* next sibling, 0 = none */
    uint64_t mag;         /* INT: magnitude */
} exi_jnode;

typedef struct {
    uint32_t n;
    uint32_t str_used;
    exi_jnode nodes[EXI_MAX_JNODES];
    char strbuf[EXI_MAX_JSTR];
} exi_jtree;

/* "apphand", "din", "iso2" (NULL if unknown). */
const exi_schema *exi_schema_find(const char *id);

int exi_decode(const exi_schema *s, const uint8_t *data, size_t len, exi_doc *doc,
               exi_error *err);

/* Encode the tree rooted at node root (an object with one member: the global element). */
int exi_encode(const exi_schema *s, const exi_jtree *t, uint32_t root, uint8_t *out, size_t cap,
               size_t *out_len, exi_error *err);

/* JSON text of a decoded document, NUL-terminated. */
int exi_doc_to_json(const exi_doc *doc, char *out, size_t cap, size_t *out_len, exi_error *err);

/* Parse JSON text into t; the root is node 0. */
int exi_json_parse(const char *text, size_t len, exi_jtree *t, exi_error *err);

/* Allocate a node in t (for bindings that build trees directly); returns its index, or
 * EXI_JNONE when t is full. The first node allocated (index 0) is the root. */
#define EXI_JNONE 0xFFFFFFFFu
uint32_t exi_jtree_add(exi_jtree *t, uint8_t type);

const char *exi_status_name(int code);

/* helpers for renderers: value of an AT/CH event as text */
int exi_hex_upper(const uint8_t *bytes, uint32_t n, char *out, size_t cap);

#endif
