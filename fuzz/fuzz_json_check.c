/*
 * The one-pass JSON check of a provider's answer
 * (src/ngx_astralform_json_check.c): a success's bytes go to the agent
 * unchanged when it says they are JSON.
 *
 * Input: any bytes, as a provider's answer.
 *
 * Oracles, differential against json_loadb() with no flags: NGX_OK only
 * for a text jansson accepts, with the type of its top-level "ok" member
 * as jansson sees it; NGX_ERROR only for a text jansson rejects (except
 * one holding a NUL byte: jansson reads some of those as ending there,
 * the check refuses them, a NUL is no JSON).
 */


#include "fuzz_util.h"
#include "ngx_shim.h"
#include "ngx_astralform_json_check.h"


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_init();

    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int            type, jtype;
    u_char        *buf;
    json_t        *json, *ok;
    ngx_int_t      rc;
    json_error_t   err;

    /* a copy of its own size, so that ASan sees any read past the end */
    buf = malloc(size ? size : 1);
    if (buf == NULL) {
        return 0;
    }

    ngx_memcpy(buf, data, size);

    rc = ngx_astralform_json_check(buf, size, "ok", &type);
    json = json_loadb((const char *) data, size, 0, &err);

    if (rc == NGX_OK) {
        if (json == NULL) {
            fz_fail("checked OK, jansson rejects: %s", err.text);
        }

        ok = json_is_object(json) ? json_object_get(json, "ok") : NULL;
        jtype = ok ? (int) json_typeof(ok) : -1;

        if (type != jtype) {
            fz_fail("\"ok\" is type %d, jansson says %d", type, jtype);
        }

    } else if (rc == NGX_ERROR && json != NULL
               && memchr(data, '\0', size) == NULL)
    {
        fz_fail("checked ERROR, jansson accepts");
    }

    json_decref(json);
    free(buf);

    return 0;
}
