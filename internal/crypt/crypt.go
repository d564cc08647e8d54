// Package crypt encrypts sensitive resource fields at rest exactly the way
// Apache APISIX does (apisix/core/data_encryption.lua), so that data written by
// APISIX can be read by Sluice and the other way round.
//
// The scheme is base64(AES-CBC(PKCS#7(plain))) where every keyring entry is
// used both as the AES key and as the IV: a 16-byte entry selects AES-128 and a
// 32-byte entry AES-256. OpenSSL, which APISIX calls through lua-resty-string,
// reads only one block (16 bytes) of the IV, so a 32-byte entry uses its first
// 16 bytes as the IV. The scheme is deterministic (equal plaintexts give equal
// ciphertexts); that is APISIX's design, kept here for compatibility.
package crypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// ErrDecrypt is returned (wrapped) by Decrypt when no key of the keyring
// decrypts the value, so callers can tell "not ours / plaintext" from other
// failures with errors.Is.
var ErrDecrypt = errors.New("decrypt failed")

// Keyring holds the ciphers built from APISIX's
// apisix.data_encryption.keyring. It is immutable after NewKeyring and safe
// for concurrent use.
type Keyring struct {
	keys []key
}

// key is one keyring entry: the block cipher and the IV derived from it.
type key struct {
	block cipher.Block
	iv    []byte
}

// NewKeyring builds a keyring from the configured entries. Every entry must be
// exactly 16 or 32 bytes long; APISIX's CLI rejects other lengths at startup
// and we do the same rather than silently dropping an entry. An empty list is
// an error because there would be nothing to encrypt with.
func NewKeyring(keys []string) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("keyring is empty")
	}
	k := &Keyring{keys: make([]key, 0, len(keys))}
	for i, s := range keys {
		if len(s) != 16 && len(s) != 32 {
			return nil, fmt.Errorf("keyring entry %d: expected a 16 byte (AES-128) or 32 byte (AES-256) key, got %d bytes", i, len(s))
		}
		b, err := aes.NewCipher([]byte(s))
		if err != nil {
			return nil, fmt.Errorf("keyring entry %d: %w", i, err)
		}
		k.keys = append(k.keys, key{block: b, iv: []byte(s)[:aes.BlockSize]})
	}
	return k, nil
}

// Encrypt encrypts plain with the first keyring entry, as APISIX does for
// every write, and returns the base64 (standard alphabet, padded) ciphertext.
func (k *Keyring) Encrypt(plain string) (string, error) {
	if k == nil || len(k.keys) == 0 {
		return "", errors.New("no keyring configured")
	}
	first := k.keys[0]
	pad := aes.BlockSize - len(plain)%aes.BlockSize
	buf := make([]byte, len(plain)+pad)
	copy(buf, plain)
	for i := len(plain); i < len(buf); i++ {
		buf[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(first.block, first.iv).CryptBlocks(buf, buf)
	return base64.StdEncoding.EncodeToString(buf), nil
}

// Decrypt decodes enc from base64 and tries each keyring entry in order,
// returning the first plaintext whose PKCS#7 padding is valid. Like nginx's
// ngx.decode_base64, missing "=" padding is accepted. Padding is checked
// strictly (every pad byte equal, length 1..16) because that check is the
// only thing that tells a wrong key from the right one, exactly as OpenSSL's
// EVP_DecryptFinal does for APISIX. An error wrapping ErrDecrypt means no
// entry worked; note that, as in APISIX, a wrong key still passes the
// padding check with a probability of about 1/256.
func (k *Keyring) Decrypt(enc string) (string, error) {
	if k == nil || len(k.keys) == 0 {
		return "", errors.New("no keyring configured")
	}
	raw, err := decodeBase64(enc)
	if err != nil {
		return "", fmt.Errorf("base64 decode failed: %w", err)
	}
	if len(raw) == 0 || len(raw)%aes.BlockSize != 0 {
		return "", fmt.Errorf("%w: ciphertext length %d is not a positive multiple of %d", ErrDecrypt, len(raw), aes.BlockSize)
	}
	buf := make([]byte, len(raw))
	for _, e := range k.keys {
		cipher.NewCBCDecrypter(e.block, e.iv).CryptBlocks(buf, raw)
		if n, ok := unpad(buf); ok {
			return string(buf[:n]), nil
		}
	}
	return "", ErrDecrypt
}

// unpad checks PKCS#7 padding and returns the plaintext length. The check is
// constant-time over the last block so the time taken does not reveal which
// padding byte was wrong.
func unpad(b []byte) (int, bool) {
	pad := int(b[len(b)-1])
	if pad == 0 || pad > aes.BlockSize {
		return 0, false
	}
	good := 1
	last := b[len(b)-aes.BlockSize:]
	for i := aes.BlockSize - 1; i >= 0; i-- {
		inPad := subtle.ConstantTimeLessOrEq(aes.BlockSize-i, pad)
		eq := subtle.ConstantTimeByteEq(last[i], byte(pad))
		// Bytes inside the padding must equal pad; others are ignored.
		good &= eq | (inPad ^ 1)
	}
	if good != 1 {
		return 0, false
	}
	return len(b) - pad, true
}

// decodeBase64 accepts the standard alphabet with or without "=" padding,
// mirroring ngx.decode_base64, which APISIX uses.
func decodeBase64(s string) ([]byte, error) {
	if strings.HasSuffix(s, "=") || len(s)%4 == 0 {
		return base64.StdEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}
