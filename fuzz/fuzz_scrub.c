/*
 * Credential scrubbing (src/ngx_astralform_scrub.c) and the confirmation
 * page's form parser (ngx_astralform_oauth_form_arg(),
 * src/ngx_astralform_oauth_util.c): both read bytes a provider or a
 * browser chose.
 *
 * Input: "SECRET\n%%\nTEXT".
 *
 * Oracles: after ngx_astralform_scrub_text() no form of SECRET is left in
 * TEXT (in any case); when TEXT is JSON, after ngx_astralform_scrub_json()
 * no string or key of it holds SECRET; the form parser never reads past
 * TEXT and gives back at most TEXT's length.
 */


#include "fuzz_util.h"
#include "ngx_shim.h"
#include "ngx_astralform_scrub.h"
#include "ngx_astralform_oauth_internal.h"


static ngx_log_t  fz_log;


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fz_init();
    fz_log.log_level = NGX_LOG_DEBUG_ALL;

    return 0;
}


static ngx_uint_t
fz_holds(ngx_str_t *text, ngx_str_t *lower)
{
    return text->len >= lower->len
           && ngx_strlcasestrn(text->data, text->data + text->len,
                               lower->data, lower->len - 1) != NULL;
}


static void
fz_json_clean(json_t *json, ngx_str_t *lower)
{
    size_t       i;
    json_t      *v;
    ngx_str_t    s;
    const char  *key;

    if (json_is_string(json)) {
        s.data = (u_char *) json_string_value(json);
        s.len = json_string_length(json);

        if (fz_holds(&s, lower)) {
            fz_fail("a JSON string still holds the secret");
        }
    }

    json_array_foreach(json, i, v) {
        fz_json_clean(v, lower);
    }

    json_object_foreach(json, key, v) {
        s.data = (u_char *) key;
        s.len = ngx_strlen(key);

        if (fz_holds(&s, lower)) {
            fz_fail("a JSON key still holds the secret");
        }

        fz_json_clean(v, lower);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t         *json;
    ngx_str_t       out, lower, value, *f;
    ngx_int_t       rc;
    ngx_uint_t      i;
    ngx_pool_t     *pool;
    ngx_array_t    *forms;
    fz_sections_t   sec;

    fz_split(data, size, &sec);

    if (sec.n != 2) {
        return 0;
    }

    pool = ngx_create_pool(4096, &fz_log);
    forms = NULL;

    if (ngx_astralform_scrub_add(pool, &forms, &sec.s[0]) != NGX_OK) {
        fz_fail("scrub_add failed");
    }

    if (forms != NULL) {
        lower.data = ngx_pnalloc(pool, sec.s[0].len);
        ngx_strlow(lower.data, sec.s[0].data, sec.s[0].len);
        lower.len = sec.s[0].len;

        rc = ngx_astralform_scrub_text(pool, forms, &sec.s[1], &out);
        if (rc == NGX_ERROR) {
            fz_fail("scrub_text failed");
        }

        if (rc == NGX_DECLINED) {
            out = sec.s[1];
        }

        /* "[redacted]" itself can complete a form: scrub to a fixpoint */
        for (i = 0; i < 4 && rc == NGX_OK; i++) {
            rc = ngx_astralform_scrub_text(pool, forms, &out, &out);
        }

        f = forms->elts;

        for (i = 0; rc == NGX_DECLINED && i < forms->nelts; i++) {
            if (fz_holds(&out, &f[i])) {
                fz_fail("a form of the secret is left in the text");
            }
        }

        json = json_loadb((char *) sec.s[1].data, sec.s[1].len, 0, NULL);

        if (json != NULL) {
            for (i = 0; i < 4; i++) {
                if (ngx_astralform_scrub_json(pool, forms, json) != NGX_OK) {
                    break;
                }
            }

            if (i < 4) {
                fz_json_clean(json, &lower);
            }

            json_decref(json);
        }
    }

    rc = ngx_astralform_oauth_form_arg(pool, &sec.s[1], "session", &value);
    if (rc == NGX_OK && value.len > sec.s[1].len) {
        fz_fail("a form value longer than the body");
    }

    (void) ngx_astralform_oauth_form_arg(pool, &sec.s[1], "csrf", &value);

    ngx_destroy_pool(pool);

    return 0;
}
