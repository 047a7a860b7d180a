// OpenSSL 3.0 for Swift: the headers KVTLS needs, plus prefixed `static inline` wrappers for the
// macros Swift cannot import (function-like macros, `SSL_OP_BIT` flags, `STACK_OF` accessors).
// Every wrapper is named `CQKV_<what it wraps>` and does nothing but forward.
#ifndef CQKV_OPENSSL_SHIM_H
#define CQKV_OPENSSL_SHIM_H

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

// MARK: SSL_CTX

static inline int CQKV_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}

static inline int CQKV_SSL_CTX_set_max_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_max_proto_version(ctx, version);
}

static inline long CQKV_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_mode(ctx, mode);
}

/// `list`: colon-separated group names, e.g. "X25519:P-256".
static inline int CQKV_SSL_CTX_set1_groups_list(SSL_CTX *ctx, const char *list) {
    return (int)SSL_CTX_set1_groups_list(ctx, list);
}

static inline long CQKV_SSL_CTX_set_session_cache_mode(SSL_CTX *ctx, long mode) {
    return SSL_CTX_set_session_cache_mode(ctx, mode);
}

/// Takes ownership of `cert` on success.
static inline int CQKV_SSL_CTX_add0_chain_cert(SSL_CTX *ctx, X509 *cert) {
    return (int)SSL_CTX_add0_chain_cert(ctx, cert);
}

static const uint64_t CQKV_SSL_OP_NO_COMPRESSION = SSL_OP_NO_COMPRESSION;
static const uint64_t CQKV_SSL_OP_NO_RENEGOTIATION = SSL_OP_NO_RENEGOTIATION;
static const uint64_t CQKV_SSL_OP_NO_TICKET = SSL_OP_NO_TICKET;
static const uint64_t CQKV_SSL_OP_CIPHER_SERVER_PREFERENCE = SSL_OP_CIPHER_SERVER_PREFERENCE;
static const long CQKV_SSL_MODE_RELEASE_BUFFERS = SSL_MODE_RELEASE_BUFFERS;
static const long CQKV_SSL_SESS_CACHE_OFF = SSL_SESS_CACHE_OFF;

// MARK: SSL

static inline int CQKV_SSL_get_ex_new_index(void) {
    return SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static inline int CQKV_SSL_set_tlsext_host_name(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}

// MARK: BIO

static inline size_t CQKV_BIO_pending(BIO *bio) {
    return (size_t)BIO_pending(bio);
}

static inline long CQKV_BIO_get_mem_data(BIO *bio, char **data) {
    return BIO_get_mem_data(bio, data);
}

static inline int CQKV_BIO_set_mem_eof_return(BIO *bio, int value) {
    return (int)BIO_set_mem_eof_return(bio, value);
}

// MARK: Memory and stacks

static inline void CQKV_OPENSSL_free(void *pointer) {
    OPENSSL_free(pointer);
}

static inline int CQKV_sk_GENERAL_NAME_num(const GENERAL_NAMES *names) {
    return sk_GENERAL_NAME_num(names);
}

static inline GENERAL_NAME *CQKV_sk_GENERAL_NAME_value(const GENERAL_NAMES *names, int index) {
    return sk_GENERAL_NAME_value(names, index);
}

/// The kind of a GENERAL_NAME (GEN_DNS, GEN_URI, GEN_IPADD, ...).
static inline int CQKV_GENERAL_NAME_type(const GENERAL_NAME *name) {
    return name->type;
}

/// The string of a GEN_DNS, GEN_URI or GEN_IPADD name (IA5 text or raw address octets).
static inline const ASN1_STRING *CQKV_GENERAL_NAME_string(const GENERAL_NAME *name) {
    switch (name->type) {
    case GEN_DNS: return name->d.dNSName;
    case GEN_URI: return name->d.uniformResourceIdentifier;
    case GEN_IPADD: return name->d.iPAddress;
    default: return NULL;
    }
}

static const int CQKV_GEN_DNS = GEN_DNS;
static const int CQKV_GEN_URI = GEN_URI;
static const int CQKV_GEN_IPADD = GEN_IPADD;
static const int CQKV_MBSTRING_UTF8 = MBSTRING_UTF8;

// MARK: X509v3 extensions

/// Adds one extension given in `openssl.cnf` syntax (e.g. "critical,CA:TRUE") to `cert`, with
/// `issuer` as the issuing certificate (for authorityKeyIdentifier). Returns 1 on success.
/// Wrapped in C because `X509V3_CTX` lives on the stack and `X509V3_set_ctx_nodb` is a macro.
static inline int CQKV_X509_add_ext_conf(X509 *cert, X509 *issuer, int nid, const char *value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *extension = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (extension == NULL) {
        return 0;
    }
    int ok = X509_add_ext(cert, extension, -1);
    X509_EXTENSION_free(extension);
    return ok;
}

// MARK: Certificate reload and revocation lists

/// The chain certificates loaded with the context's own certificate (not owned: do not free).
static inline int CQKV_SSL_CTX_get0_chain_certs(SSL_CTX *ctx, STACK_OF(X509) **chain) {
    return (int)SSL_CTX_get0_chain_certs(ctx, chain);
}

static inline int CQKV_sk_X509_REVOKED_num(const STACK_OF(X509_REVOKED) *revoked) {
    return sk_X509_REVOKED_num(revoked);
}

static inline X509_REVOKED *CQKV_sk_X509_REVOKED_value(const STACK_OF(X509_REVOKED) *revoked, int index) {
    return sk_X509_REVOKED_value(revoked, index);
}

/// Adds one extension in `openssl.cnf` syntax (e.g. "keyid:always") to a CRL that `issuer` signs.
static inline int CQKV_X509_CRL_add_ext_conf(X509_CRL *crl, X509 *issuer, int nid, const char *value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, NULL, NULL, crl, 0);
    X509_EXTENSION *extension = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (extension == NULL) {
        return 0;
    }
    int ok = X509_CRL_add_ext(crl, extension, -1);
    X509_EXTENSION_free(extension);
    return ok;
}

#endif // CQKV_OPENSSL_SHIM_H
