/* cut_images(answer): a GetRecords answer's JSON text with each record's dynamodb.OldImage and
 * dynamodb.NewImage objects cut out, for consumer.shards.raw_records.read_answer to parse the rest and
 * keep each image as its text until a record needs it parsed. Most never do: a plain MODIFY or REMOVE
 * is applied from its keys, and its NewImage written as a document straight from its text
 * (_attributes_images.c).
 *
 * It answers (text, [(record index, "OldImage" or "NewImage", image text), ...]), where text is the
 * answer with each cut image replaced by 0, or None for read_answer to parse the answer whole, as it
 * did before: when the answer has no image, when it is not JSON as far as this scan can tell (orjson
 * judges the rest), and whenever the place of an image could be ambiguous (a key at the answer's, a
 * record's or its dynamodb object's level spelt with an escape; "Records", "dynamodb", "OldImage" or
 * "NewImage" twice in one object). Every cut image is held to a stricter JSON than orjson's: strings
 * of valid UTF-8 with valid escapes (an escaped surrogate, even one of a pair, leaves the answer
 * whole), no numbers (DynamoDB's JSON spells them as strings), at most MAX_IMAGE_DEPTH levels; an
 * image that is not answers None, so that what is cut is exactly what orjson would have read.
 * tests/unit/shards/test_read_answer.py holds read_answer equal to orjson.loads on random answers,
 * broken ones included. */
#include "_attributes.h"

#define MAX_DEPTH 512      /* beyond it, the answer is parsed whole (orjson's own limit decides) */
#define MAX_IMAGE_DEPTH 64 /* DynamoDB nests 32 levels at most */

enum { OLD_IMAGE, NEW_IMAGE }; /* an image's kind */

typedef struct {
    Py_ssize_t start, end, record;
    int kind;
} Image;

typedef struct {
    const unsigned char *text;
    Py_ssize_t length, at;
    Image *images; /* the images to cut */
    Py_ssize_t count, capacity;
} Scan;

typedef enum { LOOSE, STRICT } Rule; /* STRICT: inside an image */

static int value(Scan *scan, int depth, Rule rule);

static void skip_space(Scan *scan)
{
    scan->at = past_space(scan->text, scan->length, scan->at);
}

/* Whether the next character is c; consumed if so */
static int take(Scan *scan, unsigned char c)
{
    skip_space(scan);
    if (scan->at < scan->length && scan->text[scan->at] == c) {
        scan->at++;
        return 1;
    }
    return 0;
}

/* The length of the UTF-8 sequence at text[0..available), 0 when it is not valid UTF-8 (overlong forms,
 * surrogates and code points beyond U+10FFFF included) */
static int utf8_length(const unsigned char *text, Py_ssize_t available)
{
    unsigned char c = text[0];
    int length = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
    if (c < 0xc2 || c > 0xf4 || available < length)
        return 0;
    for (int i = 1; i < length; i++)
        if ((text[i] & 0xc0) != 0x80)
            return 0;
    if ((c == 0xe0 && text[1] < 0xa0) || (c == 0xed && text[1] > 0x9f) || (c == 0xf0 && text[1] < 0x90)
        || (c == 0xf4 && text[1] > 0x8f))
        return 0;
    return length;
}

/* A string from its opening quote; *escaped says whether it held an escape. LOOSE only finds its end
 * (orjson reads it from the cut text); STRICT checks it. -1: not a string this scan accepts. */
static int string(Scan *scan, Rule rule, int *escaped)
{
    const unsigned char *text = scan->text;
    Py_ssize_t at = scan->at + 1, length = scan->length;
    *escaped = 0;
    while (at < length) {
        uint64_t word;
        while (at + 8 <= length && (memcpy(&word, text + at, 8), !needs_escape(word) && !(word & HIGHS)))
            at += 8; /* most of a string: eight ASCII characters at a time, none to look at */
        if (at >= length)
            break;
        unsigned char c = text[at];
        if (c == '"') {
            scan->at = at + 1;
            return 0;
        }
        if (c == '\\') {
            *escaped = 1;
            if (at + 1 >= length)
                return -1;
            unsigned char next = text[at + 1];
            if (next == 'u') {
                if (at + 6 > length)
                    return -1;
                int code = 0;
                for (int i = 2; i < 6; i++) {
                    int digit = hex_digit(text[at + i]);
                    if (digit < 0)
                        return -1;
                    code = code * 16 + digit;
                }
                if (rule == STRICT && code >= 0xd800 && code <= 0xdfff)
                    return -1; /* a surrogate pair, or half of one: orjson decides */
                at += 6;
            } else if (next != '\0' && (rule == LOOSE || strchr("\"\\/bfnrt", next) != NULL)) {
                at += 2;
            } else {
                return -1;
            }
        } else if (c < 0x20) {
            if (rule == STRICT)
                return -1;
            at++;
        } else if (c >= 0x80 && rule == STRICT) {
            int sequence = utf8_length(text + at, length - at);
            if (sequence == 0)
                return -1;
            at += sequence;
        } else {
            at++;
        }
    }
    return -1;
}

static int literal(Scan *scan, const char *word)
{
    size_t length = strlen(word);
    if ((size_t)(scan->length - scan->at) < length || memcmp(scan->text + scan->at, word, length) != 0)
        return -1;
    scan->at += length;
    return 0;
}

/* A number, LOOSE only: its characters skipped, orjson reads it */
static int number(Scan *scan)
{
    Py_ssize_t start = scan->at;
    while (scan->at < scan->length && strchr("0123456789+-.eE", scan->text[scan->at]) != NULL
           && scan->text[scan->at] != '\0')
        scan->at++;
    return scan->at > start ? 0 : -1;
}

/* An object whose keys need no reading: each key, then its value */
static int object(Scan *scan, int depth, Rule rule)
{
    scan->at++; /* '{' */
    if (take(scan, '}'))
        return 0;
    do {
        int escaped;
        skip_space(scan);
        if (scan->at >= scan->length || scan->text[scan->at] != '"' || string(scan, rule, &escaped) < 0)
            return -1;
        if (!take(scan, ':') || value(scan, depth + 1, rule) < 0)
            return -1;
    } while (take(scan, ','));
    return take(scan, '}') ? 0 : -1;
}

static int array(Scan *scan, int depth, Rule rule)
{
    scan->at++; /* '[' */
    if (take(scan, ']'))
        return 0;
    do {
        if (value(scan, depth + 1, rule) < 0)
            return -1;
    } while (take(scan, ','));
    return take(scan, ']') ? 0 : -1;
}

static int value(Scan *scan, int depth, Rule rule)
{
    if (depth > (rule == STRICT ? MAX_IMAGE_DEPTH : MAX_DEPTH))
        return -1;
    skip_space(scan);
    if (scan->at >= scan->length)
        return -1;
    int escaped;
    switch (scan->text[scan->at]) {
    case '{':
        return object(scan, depth, rule);
    case '[':
        return array(scan, depth, rule);
    case '"':
        return string(scan, rule, &escaped);
    case 't':
        return literal(scan, "true");
    case 'f':
        return literal(scan, "false");
    case 'n':
        return literal(scan, "null");
    default:
        return rule == STRICT ? -1 : number(scan);
    }
}

/* The next key of an object whose keys are read, up to its colon: its characters and their length;
 * -1 for a key with an escape (the key it stands for is orjson's to say) or no key at all */
static int read_key(Scan *scan, const unsigned char **key, Py_ssize_t *key_length)
{
    int escaped;
    skip_space(scan);
    if (scan->at >= scan->length || scan->text[scan->at] != '"')
        return -1;
    Py_ssize_t start = scan->at + 1;
    if (string(scan, LOOSE, &escaped) < 0 || escaped)
        return -1;
    *key = scan->text + start;
    *key_length = scan->at - 1 - start;
    return take(scan, ':') ? 0 : -1;
}

static int note_image(Scan *scan, Py_ssize_t start, Py_ssize_t end, Py_ssize_t record, int kind)
{
    if (make_room((void **)&scan->images, scan->count, &scan->capacity, sizeof(Image), 64) < 0)
        return -2;
    scan->images[scan->count++] = (Image){start, end, record, kind};
    return 0;
}

/* A member of an object whose named members are read (the object's record, and the names it has met:
 * one bit each). 0: read; 1: not one this reader reads (its value is skipped); -1: not accepted;
 * -2: out of memory. */
typedef int (*MemberReader)(Scan *scan, const unsigned char *key, Py_ssize_t key_length, Py_ssize_t record,
                            unsigned *met);

/* Whether the key is ``name``, the first time in its object (the second: *repeated) */
static int meets(const unsigned char *key, Py_ssize_t length, const char *name, unsigned bit, unsigned *met,
                 int *repeated)
{
    if ((size_t)length != strlen(name) || memcmp(key, name, length) != 0)
        return 0;
    *repeated = (*met & bit) != 0;
    *met |= bit;
    return 1;
}

/* An object at ``depth`` (its '{' next) whose members ``member`` reads, every other value skipped */
static int object_read(Scan *scan, int depth, Py_ssize_t record, MemberReader member)
{
    unsigned met = 0;
    scan->at++; /* '{' */
    if (take(scan, '}'))
        return 0;
    do {
        const unsigned char *key;
        Py_ssize_t key_length;
        if (read_key(scan, &key, &key_length) < 0)
            return -1;
        skip_space(scan);
        int read = member(scan, key, key_length, record, &met);
        if (read < 0)
            return read;
        if (read > 0 && value(scan, depth + 1, LOOSE) < 0)
            return -1;
    } while (take(scan, ','));
    return take(scan, '}') ? 0 : -1;
}

static int next_is(Scan *scan, unsigned char c)
{
    return scan->at < scan->length && scan->text[scan->at] == c;
}

/* A record's dynamodb object: its OldImage and NewImage, when objects, noted for cutting */
static int dynamodb_member(Scan *scan, const unsigned char *key, Py_ssize_t key_length, Py_ssize_t record,
                           unsigned *met)
{
    int repeated;
    int kind = meets(key, key_length, "OldImage", 1, met, &repeated) ? OLD_IMAGE
             : meets(key, key_length, "NewImage", 2, met, &repeated) ? NEW_IMAGE
             : -1;
    if (kind < 0)
        return 1;
    if (repeated)
        return -1;
    if (!next_is(scan, '{'))
        return 1;
    Py_ssize_t start = scan->at;
    if (object(scan, 0, STRICT) < 0)
        return -1;
    return note_image(scan, start, scan->at, record, kind);
}

/* The one member ``name`` of an object, read by ``read`` when its value opens with ``opens`` (a
 * second: not accepted); any other member, or another value, is for the caller to skip */
static int named_member(Scan *scan, const unsigned char *key, Py_ssize_t key_length, const char *name,
                        unsigned char opens, int (*read)(Scan *scan, Py_ssize_t record), Py_ssize_t record,
                        unsigned *met)
{
    int repeated;
    if (!meets(key, key_length, name, 1, met, &repeated))
        return 1;
    if (repeated)
        return -1;
    return next_is(scan, opens) ? read(scan, record) : 1;
}

static int dynamodb_object(Scan *scan, Py_ssize_t record)
{
    return object_read(scan, 2, record, dynamodb_member);
}

static int record_member(Scan *scan, const unsigned char *key, Py_ssize_t key_length, Py_ssize_t record,
                         unsigned *met)
{
    return named_member(scan, key, key_length, "dynamodb", '{', dynamodb_object, record, met);
}

/* The answer's records (``record``: none yet) */
static int records(Scan *scan, Py_ssize_t record)
{
    Py_ssize_t index = 0;
    scan->at++; /* '[' */
    if (take(scan, ']'))
        return 0;
    do {
        skip_space(scan);
        int read = next_is(scan, '{') ? object_read(scan, 1, index, record_member) : value(scan, 1, LOOSE);
        if (read < 0)
            return read;
        index++;
    } while (take(scan, ','));
    return take(scan, ']') ? 0 : -1;
}

static int answer_member(Scan *scan, const unsigned char *key, Py_ssize_t key_length, Py_ssize_t record,
                         unsigned *met)
{
    return named_member(scan, key, key_length, "Records", '[', records, record, met);
}

static int answer(Scan *scan)
{
    skip_space(scan);
    if (!next_is(scan, '{'))
        return -1;
    int read = object_read(scan, 0, -1, answer_member);
    if (read < 0)
        return read;
    skip_space(scan);
    return scan->at == scan->length ? 0 : -1;
}

/* The answer with the noted images replaced by 0, and the images: (text, [(record, name, image), ...]) */
static PyObject *cut(const Scan *scan)
{
    static PyObject *names[2]; /* the images' names, by kind */
    for (int kind = OLD_IMAGE; kind <= NEW_IMAGE; kind++)
        if (names[kind] == NULL && (names[kind] = PyUnicode_InternFromString(kind == OLD_IMAGE ? "OldImage" : "NewImage")) == NULL)
            return NULL;
    Py_ssize_t removed = 0;
    for (Py_ssize_t i = 0; i < scan->count; i++)
        removed += scan->images[i].end - scan->images[i].start - 1;
    PyObject *text = PyBytes_FromStringAndSize(NULL, scan->length - removed);
    PyObject *images = PyList_New(scan->count);
    if (text == NULL || images == NULL)
        goto failed;
    char *out = PyBytes_AS_STRING(text);
    Py_ssize_t from = 0;
    for (Py_ssize_t i = 0; i < scan->count; i++) {
        const Image *cut = &scan->images[i];
        memcpy(out, scan->text + from, cut->start - from);
        out += cut->start - from;
        *out++ = '0';
        from = cut->end;
        PyObject *image = Py_BuildValue("(nOy#)", cut->record, names[cut->kind], scan->text + cut->start, cut->end - cut->start);
        if (image == NULL)
            goto failed;
        PyList_SET_ITEM(images, i, image);
    }
    memcpy(out, scan->text + from, scan->length - from);
    PyObject *result = PyTuple_Pack(2, text, images);
    Py_DECREF(text);
    Py_DECREF(images);
    return result;
failed:
    Py_XDECREF(text);
    Py_XDECREF(images);
    return NULL;
}

PyObject *cut_images(PyObject *module, PyObject *body)
{
    if (!PyBytes_Check(body)) {
        PyErr_Format(PyExc_TypeError, "cut_images() takes bytes, not %.100s", Py_TYPE(body)->tp_name);
        return NULL;
    }
    Scan scan = {(const unsigned char *)PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body), 0, NULL, 0, 0};
    int read = answer(&scan);
    PyObject *result = read == -2 ? NULL : read < 0 || scan.count == 0 ? Py_NewRef(Py_None) : cut(&scan);
    PyMem_Free(scan.images);
    return result;
}
