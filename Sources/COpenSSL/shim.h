#ifndef STARLING_COPENSSL_SHIM_H
#define STARLING_COPENSSL_SHIM_H
// System OpenSSL (libssl-dev): EVP SHA-1 for piece hashes, SHA-256 / HMAC for gossip auth.
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/crypto.h>
#endif
