/* Grammar tables of one schema, as emitted by services/exi-codec/generator.
 *
 * A schema is a set of element grammars. Every grammar is a list of states; every state is a
 * contiguous run of first-level productions in event-code order. Because the grammars are
 * non-strict, every state also has second-level productions, so the first-level code width is
 * ceil(log2(nprods + 1)) and the code nprods is the escape to the second level.
 */
#ifndef CCSBUS_EXI_TABLES_H
#define CCSBUS_EXI_TABLES_H

#include <stdint.h>

enum exi_prod_kind {
    EXI_P_SE = 0,      /* start of a declared element: arg = child grammar */
    EXI_P_AT = 1,      /* declared attribute: arg = datatype */
    EXI_P_CH = 2,      /* typed character content: arg = datatype */
    EXI_P_EE = 3,      /* end of the element */
    EXI_P_SE_ANY = 4,  /* element wildcard (xs:any): not supported by the runtime */
    EXI_P_CH_ANY = 5   /* untyped characters in mixed content: not supported by the runtime */
};

enum exi_prod_flag {
    EXI_F_ARRAY = 1    /* the element may occur more than once here: JSON renders an array */
};

typedef struct {
    uint8_t kind;
    uint8_t flags;
    uint16_t name;  /* index into names (SE, AT) */
    uint16_t arg;   /* child grammar (SE) or datatype (AT, CH) */
    uint16_t next;  /* state index after this production */
} exi_prod;

typedef struct {
    uint16_t first;  /* first production index */
    uint8_t n;       /* number of first-level productions */
    uint8_t bits;    /* ceil(log2(n + 1)) */
} exi_state;

enum exi_grammar_kind {
    EXI_G_COMPLEX = 0,  /* JSON object */
    EXI_G_SIMPLE = 1    /* simple type without attributes: JSON scalar */
};

typedef struct {
    uint16_t init;   /* initial state */
    uint8_t kind;
    uint8_t pad;
} exi_grammar;

enum exi_dtype_kind {
    EXI_T_STRING = 0,
    EXI_T_HEX = 1,      /* hexBinary */
    EXI_T_BASE64 = 2,   /* base64Binary (rendered as hex as well) */
    EXI_T_BOOL = 3,
    EXI_T_INT = 4,      /* sign bit + unsigned magnitude */
    EXI_T_UINT = 5,     /* unsigned integer, 7-bit groups */
    EXI_T_NBIT = 6,     /* bounded integer: nbits of (value - min) */
    EXI_T_ENUM = 7      /* nbits of the index into the enumeration */
};

typedef struct {
    uint8_t kind;
    uint8_t nbits;
    uint16_t enum_first;  /* index into enum_names */
    uint16_t enum_count;
    uint16_t pad;
    uint32_t max_len;     /* maxLength / length facet, 0 = unbounded */
    int64_t min;          /* lower bound (NBIT) */
    int64_t max;          /* upper bound (NBIT) */
} exi_dtype;

typedef struct {
    const char *id;               /* "din", "iso2", "apphand" */
    const char *const *names;     /* local names of elements and attributes */
    const char *const *enum_names;
    const exi_dtype *dtypes;
    const exi_grammar *grammars;
    const exi_state *states;
    const exi_prod *prods;
    uint16_t n_names, n_dtypes, n_grammars, n_states, n_prods;
    /* document grammar: the global elements in event-code order */
    const exi_prod *doc_prods;
    uint16_t n_doc;
    uint8_t doc_bits;             /* ceil(log2(n_doc + 1)): SE(*) follows the declared ones */
} exi_schema;

#endif
