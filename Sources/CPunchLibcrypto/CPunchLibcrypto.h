// The system's OpenSSL libcrypto (Debian: libssl-dev), for ChaCha20-Poly1305 on caller-owned
// buffers: Noise transport messages are sealed straight into the outgoing frame and opened
// straight into the plaintext buffer, with no allocation or copy per message.
#include <openssl/evp.h>
