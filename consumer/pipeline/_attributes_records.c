/* read_record(raw): the fields of consumer.pipeline.records.StreamRecord.from_wire, read in C from a
 * record as GetRecords' JSON has it, for the records nearly every page consists of: a dict of the
 * dataclass's fields (raw included), which from_wire installs as the record's attributes. None for
 * anything else (a datetime or a text where a number belongs, a missing or mistyped field, a record
 * a transport could not decode), which from_wire's Python decides, with its errors.
 * tests/unit/pipeline/test_records.py holds the two equal on random records, malformed ones included. */
#include "_attributes.h"

#include <math.h>

/* the wire's names, and StreamRecord's field names, interned once */
static PyObject *wire_dynamodb, *wire_event_name, *wire_event_id, *wire_sequence_number, *wire_keys,
    *wire_new_image, *wire_old_image, *wire_identity, *wire_type, *wire_type_lower, *wire_principal,
    *wire_principal_lower, *wire_created, *wire_size, *decode_error;
static PyObject *field_event_id, *field_event_name, *field_keys, *field_new_image, *field_old_image,
    *field_sequence_number, *field_approximate_second, *field_size_bytes, *field_is_ttl_delete, *field_raw;
static PyObject *empty_text, *zero;
static PyTypeObject *image_text; /* records.ImageText, registered at its import: an image as a dict is */

int init_read_record(void)
{
    struct { PyObject **name; const char *text; } names[] = {
        {&wire_dynamodb, "dynamodb"}, {&wire_event_name, "eventName"}, {&wire_event_id, "eventID"},
        {&wire_sequence_number, "SequenceNumber"}, {&wire_keys, "Keys"}, {&wire_new_image, "NewImage"},
        {&wire_old_image, "OldImage"}, {&wire_identity, "userIdentity"}, {&wire_type, "Type"},
        {&wire_type_lower, "type"}, {&wire_principal, "PrincipalId"}, {&wire_principal_lower, "principalId"},
        {&wire_created, "ApproximateCreationDateTime"}, {&wire_size, "SizeBytes"},
        {&decode_error, "_cdc_decode_error"}, /* records.DECODE_ERROR_FIELD */
        {&field_event_id, "event_id"}, {&field_event_name, "event_name"}, {&field_keys, "keys"},
        {&field_new_image, "new_image_as_read"}, {&field_old_image, "old_image_as_read"},
        {&field_sequence_number, "sequence_number"}, {&field_approximate_second, "approximate_second"},
        {&field_size_bytes, "size_bytes"}, {&field_is_ttl_delete, "is_ttl_delete"}, {&field_raw, "raw"},
        {&empty_text, ""},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if ((*names[i].name = PyUnicode_InternFromString(names[i].text)) == NULL)
            return -1;
    return (zero = PyLong_FromLong(0)) == NULL ? -1 : 0;
}

/* ``mapping[name]``, borrowed; NULL when absent (or on an error, which is then set) */
static PyObject *get(PyObject *mapping, PyObject *name)
{
    return PyDict_GetItemWithError(mapping, name);
}

static int is_text(PyObject *value, const char *text)
{
    return value != NULL && PyUnicode_CheckExact(value) && PyUnicode_CompareWithASCIIString(value, text) == 0;
}

static int is_digits(PyObject *value)
{
    if (!PyUnicode_CheckExact(value) || !PyUnicode_IS_ASCII(value) || PyUnicode_GET_LENGTH(value) == 0)
        return 0;
    const char *chars = (const char *)PyUnicode_DATA(value);
    for (Py_ssize_t i = 0; i < PyUnicode_GET_LENGTH(value); i++)
        if (chars[i] < '0' || chars[i] > '9')
            return 0;
    return 1;
}

/* Whether the record is a TTL deletion: a userIdentity of type Service by dynamodb.amazonaws.com, in
 * boto3's spelling or Lambda's. -1: for Python (an identity that is not a dict or None). */
static int ttl_identity(PyObject *raw)
{
    PyObject *identity = get(raw, wire_identity);
    if (identity == NULL || identity == Py_None)
        return PyErr_Occurred() ? -2 : 0;
    if (!PyDict_CheckExact(identity))
        return -1;
    PyObject *type = get(identity, wire_type);
    if (type == NULL && !PyErr_Occurred())
        type = get(identity, wire_type_lower);
    PyObject *principal = get(identity, wire_principal);
    if (principal == NULL && !PyErr_Occurred())
        principal = get(identity, wire_principal_lower);
    if (PyErr_Occurred())
        return -2;
    return is_text(type, "Service") && is_text(principal, "dynamodb.amazonaws.com");
}

/* ApproximateCreationDateTime in whole seconds: an int as it is, a finite float rounded down */
static PyObject *whole_seconds(PyObject *value)
{
    if (value != NULL && PyLong_CheckExact(value))
        return Py_NewRef(value);
    if (value != NULL && PyFloat_CheckExact(value) && isfinite(PyFloat_AS_DOUBLE(value)))
        return PyLong_FromDouble(floor(PyFloat_AS_DOUBLE(value)));
    return NULL;
}

PyObject *register_image_text(PyObject *module, PyObject *type)
{
    if (!PyType_Check(type)) {
        PyErr_SetString(PyExc_TypeError, "register_image_text() takes a type");
        return NULL;
    }
    Py_XSETREF(image_text, (PyTypeObject *)Py_NewRef(type));
    Py_RETURN_NONE;
}

PyObject *read_record(PyObject *module, PyObject *raw)
{
    if (!PyDict_CheckExact(raw))
        Py_RETURN_NONE;
    PyObject *body = get(raw, wire_dynamodb), *event_name = get(raw, wire_event_name);
    PyObject *event_id = get(raw, wire_event_id), *failed = get(raw, decode_error);
    if (PyErr_Occurred())
        return NULL;
    if (failed != NULL || body == NULL || !PyDict_CheckExact(body) || event_name == NULL)
        Py_RETURN_NONE;
    int remove = is_text(event_name, "REMOVE");
    if (!remove && !is_text(event_name, "INSERT") && !is_text(event_name, "MODIFY"))
        Py_RETURN_NONE;
    PyObject *sequence_number = get(body, wire_sequence_number), *keys = get(body, wire_keys);
    PyObject *new_image = get(body, wire_new_image), *old_image = get(body, wire_old_image);
    PyObject *created = get(body, wire_created), *size = get(body, wire_size);
    if (PyErr_Occurred())
        return NULL;
    if (sequence_number == NULL || !is_digits(sequence_number) || keys == NULL || !PyDict_CheckExact(keys)
        || PyDict_GET_SIZE(keys) == 0
        || (!remove && (new_image == NULL || (!PyDict_CheckExact(new_image) && Py_TYPE(new_image) != image_text)))
        || (old_image != NULL && old_image != Py_None && !PyDict_CheckExact(old_image)
            && Py_TYPE(old_image) != image_text)
        || (event_id != NULL && !PyUnicode_CheckExact(event_id)) || (size != NULL && !PyLong_CheckExact(size)))
        Py_RETURN_NONE;
    int ttl = ttl_identity(raw);
    if (ttl == -2)
        return NULL;
    PyObject *second = ttl < 0 ? NULL : whole_seconds(created);
    if (second == NULL)
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    PyObject *fields = PyDict_New();
    PyObject *pairs[][2] = {
        {field_event_id, event_id != NULL ? event_id : empty_text},
        {field_event_name, event_name},
        {field_keys, keys},
        {field_new_image, remove ? Py_None : new_image},
        {field_old_image, old_image != NULL ? old_image : Py_None},
        {field_sequence_number, sequence_number},
        {field_approximate_second, second},
        {field_size_bytes, size != NULL ? size : zero},
        {field_is_ttl_delete, ttl ? Py_True : Py_False},
        {field_raw, raw},
    };
    for (size_t i = 0; fields != NULL && i < sizeof(pairs) / sizeof(pairs[0]); i++)
        if (PyDict_SetItem(fields, pairs[i][0], pairs[i][1]) < 0)
            Py_CLEAR(fields);
    Py_DECREF(second);
    return fields;
}
