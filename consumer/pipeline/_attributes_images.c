/* image_lines(text, reserved, head, doc_id, version): bulk.item_lines of an item image given as its
 * text, an OldImage or NewImage cut out of a GetRecords answer (_attributes_pages.c), written without
 * parsing it: the DynamoDB JSON read and the document's JSON written in one pass, byte for byte what
 * item_lines writes of the parsed image (bulk.python_image_lines, the definition).
 *
 * The text must be one the scan accepted: valid UTF-8, valid escapes and none of a surrogate, no
 * numbers, at most 64 levels. Of any other text it answers None or lines of no meaning, but never
 * reads beyond the text. It writes the plain images nearly every record has, and answers None, for
 * the caller to parse the image and write it from the item, for everything else: an attribute value
 * that is not an object of one member, an unknown type tag or a value of another JSON type than the
 * tag's, a number not spelt plainly (or an NS member of more than 18 digits), an attribute name, type
 * tag, number or set member spelt with an escape, a name twice in one map, a top-level name in
 * ``reserved``, nesting beyond MAX_DEPTH. tests/unit/pipeline/test_image_lines.py holds it equal to
 * the definition on random images spelt every way JSON allows, malformed ones included, and holds
 * that the images the service reads are written here. */
#include "_attributes.h"

#define MAX_DEPTH 64

typedef struct {
    const unsigned char *chars;
    Py_ssize_t length;
} Span;

typedef struct {
    Span *spans;
    Py_ssize_t count, capacity;
} Spans;

typedef struct {
    const unsigned char *text;
    Py_ssize_t length, at;
    Text *out;
    Text unescaped; /* a string with escapes, its characters */
    Spans names;    /* the names of the maps being read, outermost first */
    Spans members;  /* the members of the set being read */
    const unsigned char *reserved_first; /* whether a reserved name starts with this byte (0: the empty name) */
    PyObject *reserved;
} Reader;

static Written write_attribute(Reader *reader, int depth);

static void skip_space(Reader *reader)
{
    reader->at = past_space(reader->text, reader->length, reader->at);
}

/* The next character after any space, or -1 at the end */
static int peek(Reader *reader)
{
    skip_space(reader);
    return reader->at < reader->length ? reader->text[reader->at] : -1;
}

static int take(Reader *reader, unsigned char c)
{
    if (peek(reader) != c)
        return 0;
    reader->at++;
    return 1;
}

static int take_word(Reader *reader, const char *word, Py_ssize_t length)
{
    if (reader->length - reader->at < length || memcmp(reader->text + reader->at, word, length) != 0)
        return 0;
    reader->at += length;
    return 1;
}

/* A string (its quote next): its characters as spelt, and whether they hold an escape. -1: none. */
static int string(Reader *reader, Span *span, int *escaped)
{
    if (peek(reader) != '"')
        return -1;
    const unsigned char *text = reader->text;
    Py_ssize_t at = reader->at + 1, length = reader->length;
    *escaped = 0;
    while (at < length) {
        uint64_t word;
        while (at + 8 <= length && (memcpy(&word, text + at, 8), !needs_escape(word)))
            at += 8;
        if (at >= length)
            break;
        unsigned char c = text[at];
        if (c == '"') {
            span->chars = text + reader->at + 1;
            span->length = at - reader->at - 1;
            reader->at = at + 1;
            return 0;
        }
        if (c == '\\') {
            *escaped = 1;
            at += at + 1 < length && text[at + 1] == 'u' ? 6 : 2;
        } else {
            at++;
        }
    }
    return -1;
}

/* A string with escapes, written as orjson writes the string it stands for */
static Written write_unescaped(Reader *reader, Span span)
{
    Text *unescaped = &reader->unescaped;
    unescaped->length = 0;
    if (reserve(unescaped, span.length) < 0)
        return FAILED;
    char *out = unescaped->data;
    for (Py_ssize_t i = 0; i < span.length; i++) {
        unsigned char c = span.chars[i];
        if (c != '\\') {
            *out++ = (char)c;
            continue;
        }
        if (++i >= span.length)
            return PYTHON_DECIDES;
        char simple;
        switch (span.chars[i]) {
        case '"': simple = '"'; break;
        case '\\': simple = '\\'; break;
        case '/': simple = '/'; break;
        case 'b': simple = '\b'; break;
        case 'f': simple = '\f'; break;
        case 'n': simple = '\n'; break;
        case 'r': simple = '\r'; break;
        case 't': simple = '\t'; break;
        case 'u': simple = 0; break;
        default: return PYTHON_DECIDES;
        }
        if (simple != 0) {
            *out++ = simple;
            continue;
        }
        int code = 0;
        for (int d = 1; d <= 4; d++) {
            int digit = i + d < span.length ? hex_digit(span.chars[i + d]) : -1;
            if (digit < 0)
                return PYTHON_DECIDES;
            code = code * 16 + digit;
        }
        i += 4;
        if (code >= 0xd800 && code <= 0xdfff)
            return PYTHON_DECIDES; /* the scan leaves these answers whole */
        if (code < 0x80) {
            *out++ = (char)code;
        } else if (code < 0x800) { /* an escape's six characters hold the two or three of its UTF-8 */
            *out++ = (char)(0xc0 | code >> 6);
            *out++ = (char)(0x80 | (code & 0x3f));
        } else {
            *out++ = (char)(0xe0 | code >> 12);
            *out++ = (char)(0x80 | ((code >> 6) & 0x3f));
            *out++ = (char)(0x80 | (code & 0x3f));
        }
    }
    unescaped->length = out - unescaped->data;
    return append_escaped(reader->out, (const unsigned char *)unescaped->data, unescaped->length) < 0 ? FAILED : WRITTEN;
}

/* A string value (S, B): as it is spelt when it holds no escape (the scan let no character through
 * that orjson would escape), else unescaped and escaped again */
static Written write_string(Reader *reader)
{
    Span span;
    int escaped;
    if (string(reader, &span, &escaped) < 0)
        return PYTHON_DECIDES;
    if (escaped)
        return write_unescaped(reader, span);
    return append(reader->out, (const char *)span.chars - 1, span.length + 2) < 0 ? FAILED : WRITTEN;
}

/* A string spelt without escapes (a name, a tag, a number, a set member); -1: anything else */
static int plain_string(Reader *reader, Span *span)
{
    int escaped;
    return string(reader, span, &escaped) < 0 || escaped ? -1 : 0;
}

static int push(Spans *spans, Span span)
{
    if (make_room((void **)&spans->spans, spans->count, &spans->capacity, sizeof(Span), 32) < 0)
        return -1;
    spans->spans[spans->count++] = span;
    return 0;
}

static int equal(Span a, Span b)
{
    return a.length == b.length && memcmp(a.chars, b.chars, a.length) == 0;
}

/* Whether a top-level name is in ``reserved`` */
static int is_reserved(Reader *reader, Span name)
{
    if (!reader->reserved_first[name.length > 0 ? name.chars[0] : 0])
        return 0;
    PyObject *text = PyUnicode_DecodeUTF8((const char *)name.chars, name.length, NULL);
    if (text == NULL)
        return -1;
    int found = PySet_Contains(reader->reserved, text);
    Py_DECREF(text);
    return found;
}

/* A map's attributes (its '{' next) as a JSON object; the top level's (depth 0) names checked against
 * ``reserved`` */
static Written write_map(Reader *reader, int depth)
{
    Py_ssize_t base = reader->names.count;
    uint64_t seen = 0; /* the names met, by a 6-bit digest: most names are told apart by it alone */
    Written written = WRITTEN;
    reader->at++; /* '{' */
    if (append_char(reader->out, '{') < 0)
        return FAILED;
    if (take(reader, '}'))
        return append_char(reader->out, '}') < 0 ? FAILED : WRITTEN;
    do {
        Span name;
        if (plain_string(reader, &name) < 0 || !take(reader, ':')) {
            written = PYTHON_DECIDES;
            break;
        }
        uint64_t bit = 1ULL << ((name.length * 31 + (name.length ? name.chars[0] * 7 + name.chars[name.length - 1] : 0)) & 63);
        if (seen & bit)
            for (Py_ssize_t i = base; i < reader->names.count && written == WRITTEN; i++)
                if (equal(reader->names.spans[i], name))
                    written = PYTHON_DECIDES; /* the later value wins, at the earlier place: Python's to write */
        seen |= bit;
        int reserved = depth == 0 ? is_reserved(reader, name) : 0;
        if (written != WRITTEN || reserved != 0) {
            written = reserved < 0 ? FAILED : PYTHON_DECIDES;
            break;
        }
        if (push(&reader->names, name) < 0
            || (reader->names.count > base + 1 && append_char(reader->out, ',') < 0)
            || append(reader->out, (const char *)name.chars - 1, name.length + 2) < 0
            || append_char(reader->out, ':') < 0) {
            written = FAILED;
            break;
        }
        written = write_attribute(reader, depth);
    } while (written == WRITTEN && take(reader, ','));
    reader->names.count = base;
    if (written == WRITTEN && !take(reader, '}'))
        written = PYTHON_DECIDES;
    return written == WRITTEN && append_char(reader->out, '}') < 0 ? FAILED : written;
}

static Written write_list(Reader *reader, int depth)
{
    reader->at++; /* '[' */
    if (append_char(reader->out, '[') < 0)
        return FAILED;
    if (!take(reader, ']')) {
        Py_ssize_t elements = 0;
        do {
            if (elements++ > 0 && append_char(reader->out, ',') < 0)
                return FAILED;
            Written written = write_attribute(reader, depth);
            if (written != WRITTEN)
                return written;
        } while (take(reader, ','));
        if (!take(reader, ']'))
            return PYTHON_DECIDES;
    }
    return append_char(reader->out, ']') < 0 ? FAILED : WRITTEN;
}

/* A set's members (its '[' next), each a string spelt without escapes, into reader->members */
static Written read_members(Reader *reader)
{
    reader->members.count = 0;
    reader->at++; /* '[' */
    if (take(reader, ']'))
        return WRITTEN;
    do {
        Span member;
        if (plain_string(reader, &member) < 0)
            return PYTHON_DECIDES;
        if (push(&reader->members, member) < 0)
            return FAILED;
    } while (take(reader, ','));
    return take(reader, ']') ? WRITTEN : PYTHON_DECIDES;
}

/* Python's order of str: by code point, which is the order of their UTF-8 bytes */
static int compare_spans(const void *left, const void *right)
{
    const Span *a = left, *b = right;
    int order = memcmp(a->chars, b->chars, a->length < b->length ? a->length : b->length);
    return order != 0 ? order : (a->length > b->length) - (a->length < b->length);
}

/* An SS or BS (base64 text on the wire, which binary_to_text keeps): sorted, written */
static Written write_string_set(Reader *reader)
{
    Written written = read_members(reader);
    if (written != WRITTEN)
        return written;
    Spans *members = &reader->members;
    qsort(members->spans, members->count, sizeof(Span), compare_spans);
    if (append_char(reader->out, '[') < 0)
        return FAILED;
    for (Py_ssize_t i = 0; i < members->count; i++)
        if ((i > 0 && append_char(reader->out, ',') < 0)
            || append(reader->out, (const char *)members->spans[i].chars - 1, members->spans[i].length + 2) < 0)
            return FAILED;
    return append_char(reader->out, ']') < 0 ? FAILED : WRITTEN;
}

/* The spelling of a set member read into reader->members */
static const char *read_spelling(void *members, Py_ssize_t i, Py_ssize_t *length)
{
    Span member = ((Spans *)members)->spans[i];
    *length = member.length;
    return (const char *)member.chars;
}

/* An NS of plain members of at most 18 digits: sorted by value, written */
static Written write_numbers(Reader *reader)
{
    Written written = read_members(reader);
    if (written != WRITTEN)
        return written;
    return write_number_set(reader->out, &reader->members, reader->members.count, read_spelling, PYTHON_DECIDES);
}

static int is_tag(Span tag, const char *name)
{
    return (size_t)tag.length == strlen(name) && memcmp(tag.chars, name, tag.length) == 0;
}

/* One attribute value ({"S": "x"}): its JSON value */
static Written write_attribute(Reader *reader, int depth)
{
    Span tag;
    if (!take(reader, '{') || plain_string(reader, &tag) < 0 || !take(reader, ':'))
        return PYTHON_DECIDES;
    int next = peek(reader);
    Written written = PYTHON_DECIDES; /* unless written below */
    if (is_tag(tag, "S") || is_tag(tag, "B")) {
        written = write_string(reader);
    } else if (is_tag(tag, "N")) {
        Span spelt;
        PlainNumber number;
        if (plain_string(reader, &spelt) == 0
            && (number = read_plain_number((const char *)spelt.chars, spelt.length)).kind != NOT_PLAIN)
            written = append_number(reader->out, &number) < 0 ? FAILED : WRITTEN;
    } else if (is_tag(tag, "M") || is_tag(tag, "L")) {
        if (depth < MAX_DEPTH && next == (is_tag(tag, "M") ? '{' : '['))
            written = next == '{' ? write_map(reader, depth + 1) : write_list(reader, depth + 1);
    } else if (is_tag(tag, "SS") || is_tag(tag, "BS")) {
        if (next == '[')
            written = write_string_set(reader);
    } else if (is_tag(tag, "NS")) {
        if (next == '[')
            written = write_numbers(reader);
    } else if (is_tag(tag, "BOOL") || is_tag(tag, "NULL")) {
        int truth = take_word(reader, "true", 4);
        if (truth || take_word(reader, "false", 5)) {
            const char *value = is_tag(tag, "NULL") ? "null" : truth ? "true" : "false";
            written = append(reader->out, value, strlen(value)) < 0 ? FAILED : WRITTEN;
        }
    }
    if (written != WRITTEN)
        return written;
    return take(reader, '}') ? WRITTEN : PYTHON_DECIDES; /* another member: Python's to refuse */
}

/* The first bytes of the reserved names, for the set last given (one set serves every call) */
static const unsigned char *reserved_first_bytes(PyObject *reserved)
{
    static PyObject *known;
    static unsigned char first[256];
    if (reserved == known)
        return first;
    memset(first, 0, sizeof first);
    PyObject *iterator = PyObject_GetIter(reserved), *name;
    if (iterator == NULL)
        return NULL;
    while ((name = PyIter_Next(iterator)) != NULL) {
        Py_ssize_t length;
        const char *chars = PyUnicode_Check(name) ? PyUnicode_AsUTF8AndSize(name, &length) : NULL;
        if (chars == NULL)
            PyErr_Clear();
        first[chars == NULL ? 0 : (unsigned char)chars[0]] = 1; /* a name that is no text: checked at every empty name */
        Py_DECREF(name);
    }
    Py_DECREF(iterator);
    if (PyErr_Occurred())
        return NULL;
    Py_XSETREF(known, Py_NewRef(reserved));
    return first;
}

PyObject *image_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    static const char signature[] = "image_lines(text: bytes, reserved: frozenset, head: bytes, doc_id: str, version: int)";
    Text out;
    if (nargs > 0 && !PyBytes_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, signature);
        return NULL;
    }
    int begun = begin_lines(signature, args, nargs, &out);
    if (begun != 0)
        return begun < 0 ? NULL : Py_NewRef(Py_None);
    Reader reader = {(const unsigned char *)PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0]), 0, &out,
                     {NULL, 0, 0}, {NULL, 0, 0}, {NULL, 0, 0}, NULL, args[1]};
    Written written = WRITTEN;
    if ((reader.reserved_first = reserved_first_bytes(args[1])) == NULL
        || (reader.unescaped.data = PyMem_Malloc(256)) == NULL) {
        written = FAILED;
        if (!PyErr_Occurred())
            PyErr_NoMemory();
    }
    reader.unescaped.capacity = 256;
    if (written == WRITTEN)
        written = peek(&reader) == '{' ? write_map(&reader, 0) : PYTHON_DECIDES;
    if (written == WRITTEN && peek(&reader) != -1)
        written = PYTHON_DECIDES;
    PyMem_Free(reader.unescaped.data);
    PyMem_Free(reader.names.spans);
    PyMem_Free(reader.members.spans);
    return end_lines(&out, written);
}
