/*
 * Sealed secrets: AES-256-GCM with a key ring (the first key seals, every
 * key opens), a fresh 96-bit nonce per seal, the key id in the blob, and
 * additional authenticated data naming what the secret belongs to.
 */

#ifndef _NGX_ASTRALFORM_CRYPTO_H_INCLUDED_
#define _NGX_ASTRALFORM_CRYPTO_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_ASTRALFORM_KEY_LEN    32


typedef struct {
    ngx_str_t    id;
    u_char       key[NGX_ASTRALFORM_KEY_LEN];
} ngx_astralform_key_t;


char *ngx_astralform_key_load(ngx_conf_t *cf, ngx_astralform_key_t *key,
    ngx_str_t *id, ngx_str_t *path);
void ngx_astralform_keys_wipe(ngx_array_t *keys);

ngx_int_t ngx_astralform_seal(ngx_pool_t *pool, ngx_array_t *keys,
    ngx_str_t *aad, ngx_str_t *plain, ngx_str_t *blob);
/* *stale is set when the blob was sealed with a key other than the first */
ngx_int_t ngx_astralform_open(ngx_pool_t *pool, ngx_array_t *keys,
    ngx_str_t *aad, ngx_str_t *blob, ngx_str_t *plain, ngx_uint_t *stale);

/* releases the per-process cipher (exit_process) */
void ngx_astralform_crypto_exit(void);

ngx_int_t ngx_astralform_random_token(ngx_pool_t *pool, ngx_str_t *out,
    size_t bytes);
ngx_uint_t ngx_astralform_secret_eq(ngx_str_t *a, ngx_str_t *b);
ngx_int_t ngx_astralform_sha256_b64url(ngx_pool_t *pool, ngx_str_t *in,
    ngx_str_t *out);
ngx_int_t ngx_astralform_mac_b64url(ngx_pool_t *pool, ngx_array_t *keys,
    const char *purpose, ngx_str_t *data, ngx_str_t *out);
ngx_int_t ngx_astralform_read_secret_file(ngx_conf_t *cf, ngx_str_t *path,
    ngx_str_t *out, ngx_uint_t trim);


#endif /* _NGX_ASTRALFORM_CRYPTO_H_INCLUDED_ */
