/*
 * The flat JSON fast paths of every tool call (src/ngx_astralform_record.c):
 * the reader of an opened credential record and the writer of an answer's
 * head.
 *
 * Input: any bytes. The reader reads them as a record; the writer writes
 * a flat object built from them (members of every kind it writes).
 *
 * Oracles, differential against jansson: a record the reader accepts is
 * an object to json_loadb() with the same string and integer values (the
 * strings NUL-terminated); a record it declines is left byte for byte as
 * it was; the writer writes exactly what json_dumps(JSON_COMPACT) writes.
 */


#include "fuzz_util.h"
#include "ngx_shim.h"
#include "ngx_astralform_record.h"


static void fz_read(const uint8_t *data, size_t size);
static void fz_write(const uint8_t *data, size_t size);


static ngx_pool_t  *fz_pool;


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_init();

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_pool = ngx_create_pool(4096, NULL);
    if (fz_pool == NULL) {
        return 0;
    }

    fz_read(data, size);
    fz_write(data, size);

    ngx_destroy_pool(fz_pool);

    return 0;
}


static void
fz_read(const uint8_t *data, size_t size)
{
    u_char                         *buf;
    json_t                         *json, *v;
    int64_t                         num;
    ngx_str_t                       a, b;
    ngx_int_t                       rc;
    json_error_t                    err;
    ngx_astralform_record_field_t   fields[] = {
        { "a", &a, NULL }, { "b", &b, NULL }, { "n", NULL, &num },
        { NULL, NULL, NULL }
    };

    buf = ngx_pnalloc(fz_pool, size + 1);
    if (buf == NULL) {
        return;
    }

    ngx_memcpy(buf, data, size);
    ngx_str_null(&a);
    ngx_str_null(&b);
    num = -7;

    rc = ngx_astralform_record_read(buf, size, fields);

    if (rc != NGX_OK) {
        if (ngx_memcmp(buf, data, size) != 0) {
            fz_fail("a declined record was modified");
        }
        return;
    }

    json = json_loadb((const char *) data, size, 0, &err);
    if (!json_is_object(json)) {
        fz_fail("the reader accepted what jansson rejects: %s", err.text);
    }

    v = json_object_get(json, "a");
    if (json_is_string(v)) {
        if (a.data == NULL || a.len != json_string_length(v)
            || ngx_memcmp(a.data, json_string_value(v), a.len) != 0
            || a.data[a.len] != '\0')
        {
            fz_fail("\"a\" differs from jansson's");
        }

    } else if (a.data != NULL) {
        fz_fail("\"a\" read from a value that is not a string");
    }

    v = json_object_get(json, "n");
    if (json_is_integer(v) ? num != json_integer_value(v) : num != -7) {
        fz_fail("\"n\" differs from jansson's");
    }

    json_decref(json);
}


static void
fz_write(const uint8_t *data, size_t size)
{
    char       *text, key[8];
    json_t     *obj, *v;
    size_t      i, n;
    ngx_str_t   out;
    ngx_uint_t  k;

    obj = json_object();
    if (obj == NULL) {
        return;
    }

    for (i = 0, k = 0; i < size; i += n, k++) {
        n = data[i++] % 16;
        if (n > size - i) {
            n = size - i;
        }

        ngx_sprintf((u_char *) key, "k%ui%Z", k % 5);

        switch (n % 4) {
        case 0:  v = json_integer((json_int_t) (n * 1234567891LL - 99999));
                 break;
        case 1:  v = json_true(); break;
        case 2:  v = json_null(); break;
        default: v = json_stringn((const char *) data + i, n);
        }

        if (v != NULL) {
            json_object_set_new(obj, key, v);
        }
    }

    text = json_dumps(obj, JSON_COMPACT);

    if (ngx_astralform_record_write(fz_pool, obj, 0, &out) != NGX_OK
        || text == NULL || ngx_strlen(text) != out.len
        || ngx_memcmp(text, out.data, out.len) != 0)
    {
        fz_fail("the writer differs from json_dumps: %s", text);
    }

    free(text);
    json_decref(obj);
}
