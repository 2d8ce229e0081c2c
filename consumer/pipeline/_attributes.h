/* What the parts of the compiled record path share: _attributes.c turns an item into JSON values
 * (Python objects), _attributes_text.c into the JSON text of those values, _attributes_ids.c its keys
 * into a document id, _attributes_records.c reads a stream record's fields. They read numbers and type
 * tags alike and leave the same rare cases, and every error, to the Python they stand for. */
#ifndef CONSUMER_PIPELINE_ATTRIBUTES_H
#define CONSUMER_PIPELINE_ATTRIBUTES_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define LONG_SAFE_DIGITS 18   /* any integer of up to 18 digits fits a Java long */
#define DOUBLE_SAFE_DIGITS 15 /* any decimal of up to 15 digits survives a double */
#define MAX_DIGITS 38         /* DynamoDB's numbers: 38 significant digits */

/* The Python of the rare cases, given to configure() (consumer/pipeline/attributes.py) */
extern PyObject *attribute_fallback; /* attribute_to_json: one attribute value */
extern PyObject *dumps_fallback;     /* dumps_json: JSON values to JSON text */

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Whether any of 8 bytes needs an escape: below 0x20, '"' or '\\' (bit tricks on a 64-bit word: a
 * byte is zero, or below n, exactly where its high bit ends up set) */
static inline int needs_escape(uint64_t bytes)
{
    uint64_t quote = bytes ^ (ONES * '"'), backslash = bytes ^ (ONES * '\\');
    uint64_t below_space = (bytes - ONES * 0x20) & ~bytes;
    uint64_t is_quote = (quote - ONES) & ~quote, is_backslash = (backslash - ONES) & ~backslash;
    return ((below_space | is_quote | is_backslash) & HIGHS) != 0;
}

typedef enum { NOT_PLAIN, PLAIN_INTEGER, PLAIN_DECIMAL } PlainKind;

/* An N string as the number policy reads a plain spelling (attributes._plain_number): an integer of
 * up to 38 digits, or a decimal of up to 15 digits (a float) from 1e-5 up; NOT_PLAIN for any other
 * spelling, which Python's number_to_json takes. */
typedef struct {
    PlainKind kind;
    int negative;
    Py_ssize_t spelt_digits;  /* the whole part's digits as spelt, leading zeros included */
    const char *whole;        /* the whole part without leading zeros (whole_length 0: zero) */
    Py_ssize_t whole_length;
    const char *fraction;     /* a decimal's fraction without trailing zeros (never empty) */
    Py_ssize_t fraction_length;
} PlainNumber;

PlainNumber read_plain_number(const char *chars, Py_ssize_t length);

/* The attribute's type tag: 'S', 'N', 'M', 'L', 'B', 's' (SS), 'n' (NS), 'b' (BOOL) or '0' (NULL);
 * 0 for any other key */
char tag_of(PyObject *tag);

/* A JSON text being written: _attributes_text.c writes it from an item, _attributes_images.c from the
 * item's text */
typedef struct {
    char *data;
    Py_ssize_t length, capacity;
} Text;

typedef enum {
    FAILED = -1,        /* an exception is set */
    WRITTEN = 0,
    PYTHON_WRITES = 1,  /* this value is for the Python converter and dumps_json */
    PYTHON_DECIDES = 2, /* the whole item is: the writer answers None */
} Written;

static inline int reserve(Text *text, Py_ssize_t more)
{
    if (text->length + more <= text->capacity)
        return 0;
    Py_ssize_t capacity = text->capacity;
    while (capacity < text->length + more)
        capacity *= 2;
    char *data = PyMem_Realloc(text->data, capacity);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    text->data = data;
    text->capacity = capacity;
    return 0;
}

static inline int append(Text *text, const char *chars, Py_ssize_t length)
{
    if (reserve(text, length) < 0)
        return -1;
    memcpy(text->data + text->length, chars, length);
    text->length += length;
    return 0;
}

static inline int append_char(Text *text, char c)
{
    if (text->length == text->capacity && reserve(text, 1) < 0)
        return -1;
    text->data[text->length++] = c;
    return 0;
}

/* The value of a hexadecimal digit, -1 for any other character */
static inline int hex_digit(unsigned char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The first place from ``at`` that is not JSON whitespace */
static inline Py_ssize_t past_space(const unsigned char *text, Py_ssize_t length, Py_ssize_t at)
{
    while (at < length && (text[at] == ' ' || text[at] == '\n' || text[at] == '\r' || text[at] == '\t'))
        at++;
    return at;
}

/* Room for one more item in a growing array of ``count`` items of ``size`` bytes (its capacity
 * doubled, ``first`` the first time); -1: out of memory, the exception set */
static inline int make_room(void **items, Py_ssize_t count, Py_ssize_t *capacity, size_t size, Py_ssize_t first)
{
    if (count < *capacity)
        return 0;
    Py_ssize_t grown = *capacity ? *capacity * 2 : first;
    void *moved = PyMem_Realloc(*items, grown * size);
    if (moved == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *items = moved;
    *capacity = grown;
    return 0;
}

/* A string of valid UTF-8, quoted and escaped as orjson writes it */
int append_escaped(Text *text, const unsigned char *chars, Py_ssize_t length);

/* The policy's spelling of a plain number */
int append_number(Text *text, const PlainNumber *number);

/* The spelling of a number set's i-th member (NULL: not a text of ASCII characters) */
typedef const char *(*Spelling)(void *members, Py_ssize_t i, Py_ssize_t *length);

/* An NS of plain members of at most 18 digits (nearly every one): sorted by value, written;
 * ``otherwise`` for any other */
Written write_number_set(Text *text, void *members, Py_ssize_t size, Spelling spelling, Written otherwise);

/* The _bulk lines of bulk.item_lines and image_lines (args: what is indexed, reserved, head, doc_id,
 * version): begin_lines checks the arguments and writes the metadata line into a new ``text`` (0; 1:
 * the answer is None; -1: an exception is set); end_lines ends the document's line and answers the
 * lines (None for PYTHON_DECIDES), ``text`` freed either way. */
int begin_lines(const char *signature, PyObject *const *args, Py_ssize_t nargs, Text *text);
PyObject *end_lines(Text *text, Written written);

/* bulk.item_lines: see _attributes_text.c */
PyObject *item_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* bulk.image_lines: see _attributes_images.c */
PyObject *image_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* doc_ids's readable ids: see _attributes_ids.c */
PyObject *readable_id(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* records's StreamRecord fields: see _attributes_records.c (init_read_record: once, at import;
 * register_image_text: records.ImageText, an image read_record accepts as it accepts a dict) */
int init_read_record(void);
PyObject *register_image_text(PyObject *module, PyObject *type);
PyObject *read_record(PyObject *module, PyObject *raw);

/* a GetRecords answer with its images cut out: see _attributes_pages.c */
PyObject *cut_images(PyObject *module, PyObject *body);

#endif
