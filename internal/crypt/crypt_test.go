package crypt

import (
	"errors"
	"strings"
	"testing"
)

// defaultKeyring is APISIX's default apisix.data_encryption.keyring
// (apisix/cli/config.lua).
var defaultKeyring = []string{"qeddd145sfvddff3", "edd1c9f0985e76a2"}

// TestAPISIXVectors proves compatibility with ciphertexts that appear
// verbatim in APISIX's own test suite (commit f519a0f):
//   - t/admin/consumers.t TEST 2: key-auth "auth-one" stored under the default keyring;
//   - t/admin/credentials.t: basic-auth "the-password";
//   - t/node/credential-plugin-key-auth.t TEST 3: key-auth "p7a3k6r4t9";
//   - t/node/data_encrypt.t TEST 1 and TEST 9: keyring [edd1c9f0985e76a2],
//     basic-auth "bar" and key-auth "auth-two".
func TestAPISIXVectors(t *testing.T) {
	tests := []struct {
		name   string
		keys   []string
		plain  string
		cipher string
	}{
		{"consumers.t auth-one", defaultKeyring, "auth-one", "4y+JvURBE6ZwRbbgaryrhg=="},
		{"credentials.t the-password", defaultKeyring, "the-password", "WvF5kpaLvIzjuk4GNIMTJg=="},
		{"credential-plugin-key-auth.t", defaultKeyring, "p7a3k6r4t9", "fsFPtg7BtXMXkvSnS9e1zw=="},
		{"data_encrypt.t bar", []string{"edd1c9f0985e76a2"}, "bar", "77+NmbYqNfN+oLm0aX5akg=="},
		{"data_encrypt.t auth-two", []string{"edd1c9f0985e76a2"}, "auth-two", "vU/ZHVJw7b0XscDJ1Fhtig=="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := NewKeyring(tt.keys)
			if err != nil {
				t.Fatal(err)
			}
			got, err := k.Encrypt(tt.plain)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.cipher {
				t.Errorf("Encrypt(%q) = %q, want %q", tt.plain, got, tt.cipher)
			}
			dec, err := k.Decrypt(tt.cipher)
			if err != nil {
				t.Fatalf("Decrypt(%q): %v", tt.cipher, err)
			}
			if dec != tt.plain {
				t.Errorf("Decrypt(%q) = %q, want %q", tt.cipher, dec, tt.plain)
			}
		})
	}
}

// TestRotation mirrors t/node/data_encrypt.t TEST 12: data written with
// edd1c9f0985e76a2 stays readable when a new key is put in front of it.
func TestRotation(t *testing.T) {
	k, err := NewKeyring(defaultKeyring)
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.Decrypt("77+NmbYqNfN+oLm0aX5akg==")
	if err != nil || got != "bar" {
		t.Fatalf("Decrypt with second key = %q, %v; want bar", got, err)
	}
	// AES-128 data stays readable after rotating to an AES-256 first key
	// (t/core/data_encryption.t TEST 3).
	rot, err := NewKeyring([]string{"qeddd145sfvddff3qeddd145sfvddff3", "qeddd145sfvddff3"})
	if err != nil {
		t.Fatal(err)
	}
	got, err = rot.Decrypt("4y+JvURBE6ZwRbbgaryrhg==")
	if err != nil || got != "auth-one" {
		t.Fatalf("Decrypt legacy = %q, %v; want auth-one", got, err)
	}
	enc, err := rot.Encrypt("auth-one")
	if err != nil {
		t.Fatal(err)
	}
	if enc == "4y+JvURBE6ZwRbbgaryrhg==" {
		t.Fatal("rotated keyring must encrypt with the new first key")
	}
}

func TestRoundTrip(t *testing.T) {
	keyrings := map[string][]string{
		"aes128": {"qeddd145sfvddff3"},
		"aes256": {"qeddd145sfvddff3qeddd145sfvddff3"},
	}
	plains := []string{"", "a", "hello world", strings.Repeat("x", 15), strings.Repeat("x", 16),
		strings.Repeat("x", 17), "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n", "ünïcødé\x00\xff"}
	for name, keys := range keyrings {
		k, err := NewKeyring(keys)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range plains {
			t.Run(name, func(t *testing.T) {
				enc, err := k.Encrypt(p)
				if err != nil {
					t.Fatal(err)
				}
				if enc == p {
					t.Fatal("ciphertext equals plaintext")
				}
				dec, err := k.Decrypt(enc)
				if err != nil {
					t.Fatal(err)
				}
				if dec != p {
					t.Fatalf("round trip %q -> %q", p, dec)
				}
			})
		}
	}
}

func TestNewKeyringErrors(t *testing.T) {
	tests := []struct {
		name string
		keys []string
		want string
	}{
		{"nil", nil, "keyring is empty"},
		{"empty", []string{}, "keyring is empty"},
		{"short", []string{"short"}, "entry 0: expected a 16 byte (AES-128) or 32 byte (AES-256) key, got 5 bytes"},
		{"24 bytes", []string{"qeddd145sfvddff3", "123456789012345678901234"}, "entry 1"},
		{"empty entry", []string{""}, "got 0 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewKeyring(tt.keys)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want containing %q", err, tt.want)
			}
		})
	}
}

func TestDecryptErrors(t *testing.T) {
	k, err := NewKeyring([]string{"qeddd145sfvddff3"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		in         string
		isDecrypt  bool
		wantSubstr string
	}{
		{"not base64", "!!!", false, "base64"},
		{"empty", "", true, "not a positive multiple"},
		// "bar" is valid unpadded base64 of 2 bytes, which nginx also decodes;
		// it then fails as a ciphertext (t/node/data_encrypt.t TEST 9).
		{"plaintext bar", "bar", true, "not a positive multiple"},
		{"wrong key", "77+NmbYqNfN+oLm0aX5akg==", true, "decrypt failed"},
		{"plain PEM", "-----BEGIN", false, "base64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := k.Decrypt(tt.in)
			if err == nil {
				t.Fatalf("Decrypt(%q) = %q, want error", tt.in, got)
			}
			if errors.Is(err, ErrDecrypt) != tt.isDecrypt {
				t.Errorf("errors.Is(err, ErrDecrypt) = %v, want %v (%v)", !tt.isDecrypt, tt.isDecrypt, err)
			}
			if !strings.Contains(err.Error(), tt.wantSubstr) {
				t.Errorf("err = %v, want containing %q", err, tt.wantSubstr)
			}
		})
	}
}

func TestUnpadStrict(t *testing.T) {
	block := func(tail ...byte) []byte {
		b := make([]byte, 16)
		copy(b[16-len(tail):], tail)
		return b
	}
	tests := []struct {
		name string
		in   []byte
		n    int
		ok   bool
	}{
		{"one", block(1), 15, true},
		{"two", block(2, 2), 14, true},
		{"two bad", block(3, 2), 0, false},
		{"zero", block(0), 0, false},
		{"too big", block(17), 0, false},
		{"full", []byte{16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16}, 0, true},
		{"full one wrong", []byte{15, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16, 16}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, ok := unpad(tt.in)
			if n != tt.n || ok != tt.ok {
				t.Fatalf("unpad = %d, %v; want %d, %v", n, ok, tt.n, tt.ok)
			}
		})
	}
}

func TestNilKeyring(t *testing.T) {
	var k *Keyring
	if _, err := k.Encrypt("x"); err == nil {
		t.Fatal("want error")
	}
	if _, err := k.Decrypt("x"); err == nil {
		t.Fatal("want error")
	}
}

func FuzzDecrypt(f *testing.F) {
	for _, s := range []string{"", "bar", "77+NmbYqNfN+oLm0aX5akg==", "4y+JvURBE6ZwRbbgaryrhg==", "4y+JvURBE6ZwRbbgaryrhg", "====", "AAAAAAAAAAAAAAAAAAAAAA=="} {
		f.Add(s)
	}
	k, err := NewKeyring(defaultKeyring)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string) {
		plain, err := k.Decrypt(s)
		if err != nil {
			return
		}
		// Whatever decrypts must re-encrypt under some key to the same bytes
		// modulo base64 padding, or at least round-trip through Encrypt.
		enc, err := k.Encrypt(plain)
		if err != nil {
			t.Fatal(err)
		}
		back, err := k.Decrypt(enc)
		if err != nil || back != plain {
			t.Fatalf("round trip of %q failed: %q, %v", plain, back, err)
		}
	})
}

func BenchmarkDecrypt(b *testing.B) {
	k, err := NewKeyring(defaultKeyring)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Decrypt("77+NmbYqNfN+oLm0aX5akg=="); err != nil {
			b.Fatal(err)
		}
	}
}
