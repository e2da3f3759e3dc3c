//! Message bodies encrypted at rest (`_enable_encrypt_messages`): AES-256-GCM with
//! a random 96-bit nonce per message.
//!
//! An encrypted body is stored as a JSON string, so every backend keeps treating it
//! as an ordinary body: `"zaqar-enc:v1:<base64 of nonce ‖ ciphertext ‖ tag>"`. The
//! version names the algorithm and layout; a later format gets a new version and
//! this one stays readable. The authentication tag covers the whole body, so a
//! changed byte, a wrong key or a truncated envelope is detected, never returned.

use std::borrow::Cow;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use md5::{Digest, Md5};
use zaqar_proto::pb::{Message, NewMessage};
use zaqar_proto::ZaqarError;

/// What an encrypted body starts with, after the opening quote of its JSON string.
pub const PREFIX: &str = "zaqar-enc:v1:";
/// The stored body text starts with this: a JSON string holding [`PREFIX`].
const STORED_PREFIX: &str = "\"zaqar-enc:v1:";
/// Bytes of the AES-256 key.
pub const KEY_LEN: usize = 32;
/// Bytes of the GCM nonce (96 bits, the size GCM is made for).
const NONCE_LEN: usize = 12;
/// Bytes of the GCM authentication tag.
const TAG_LEN: usize = 16;

/// Encrypts and decrypts message bodies with one AES-256 key.
#[derive(Clone)]
pub struct MessageCipher {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for MessageCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageCipher(AES-256-GCM, key hidden)")
    }
}

impl MessageCipher {
    /// The cipher of a key given as base64 of 32 bytes (the `encryption_key` setting).
    pub fn from_base64_key(key: &str) -> Result<MessageCipher, ZaqarError> {
        let bytes = STANDARD.decode(key.trim()).map_err(|_| {
            ZaqarError::bad_request("the encryption key must be base64 (of 32 random bytes)")
        })?;
        Self::from_key(&bytes)
    }

    /// The cipher of a raw 32-byte key.
    pub fn from_key(key: &[u8]) -> Result<MessageCipher, ZaqarError> {
        let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| {
            ZaqarError::bad_request(format!(
                "the encryption key must be {KEY_LEN} bytes, not {}",
                key.len()
            ))
        })?;
        Ok(MessageCipher { cipher })
    }

    /// A new random key, base64-encoded as the `encryption_key` setting expects.
    pub fn generate_base64_key() -> String {
        STANDARD.encode(Aes256Gcm::generate_key(OsRng))
    }

    /// The stored form of `body_json`: a JSON string `"zaqar-enc:v1:..."`.
    pub fn encrypt(&self, body_json: &str) -> Result<String, ZaqarError> {
        let nonce = Aes256Gcm::generate_nonce(OsRng);
        let sealed = self
            .cipher
            .encrypt(&nonce, body_json.as_bytes())
            .map_err(|_| ZaqarError::internal("message encryption failed"))?;
        let mut envelope = Vec::with_capacity(NONCE_LEN + sealed.len());
        envelope.extend_from_slice(&nonce);
        envelope.extend_from_slice(&sealed);
        // Base64 needs no JSON escaping, so the quotes make a valid JSON string.
        Ok(format!("\"{PREFIX}{}\"", STANDARD.encode(envelope)))
    }

    /// The original body of a stored one: decrypted when it is an envelope, as
    /// it is otherwise. A corrupt envelope or another key's is `Internal`.
    pub fn decrypt(&self, stored: &str) -> Result<String, ZaqarError> {
        let Some(encoded) = envelope_of(stored) else {
            return Ok(stored.to_string());
        };
        let corrupt = || {
            ZaqarError::internal(
                "an encrypted message body cannot be decrypted: it is corrupt or was \
                 encrypted with another key than this pool's encryption_key",
            )
        };
        let envelope = STANDARD.decode(encoded).map_err(|_| corrupt())?;
        if envelope.len() < NONCE_LEN + TAG_LEN {
            return Err(corrupt());
        }
        let (nonce, sealed) = envelope.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| corrupt())?;
        String::from_utf8(plain).map_err(|_| corrupt())
    }
}

/// Whether a stored body is an encrypted envelope.
pub fn is_encrypted(stored: &str) -> bool {
    envelope_of(stored).is_some()
}

/// The base64 part of an envelope `"zaqar-enc:v1:<base64>"`.
fn envelope_of(stored: &str) -> Option<&str> {
    stored.strip_prefix(STORED_PREFIX)?.strip_suffix('"')
}

/// The bytes of the stored form of a body of `len` bytes, as [`MessageCipher::encrypt`]
/// writes it (what the stores count of an encrypted message).
pub fn sealed_len(len: usize) -> usize {
    let envelope = NONCE_LEN + len + TAG_LEN;
    2 + PREFIX.len() + envelope.div_ceil(3) * 4
}

/// Whether a queue's metadata asks for encryption (`_enable_encrypt_messages: true`).
pub fn queue_encrypts(metadata_json: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(metadata_json)
        .ok()
        .and_then(|metadata| metadata.get("_enable_encrypt_messages")?.as_bool())
        .unwrap_or(false)
}

/// The messages of a post as they are to be stored: every body encrypted when the
/// queue encrypts, else only the bodies that look like an envelope (so a client's
/// text that happens to start with [`PREFIX`] reads back as it was posted).
///
/// Without a cipher, a post to an encrypting queue is `Unavailable` (this pool
/// cannot keep the queue's promise; a pool-node with a key can), and a body that
/// looks like an envelope is `BadRequest` (the prefix is reserved).
pub fn seal_messages<'a>(
    cipher: Option<&MessageCipher>,
    queue_encrypts: bool,
    messages: &'a [NewMessage],
) -> Result<Cow<'a, [NewMessage]>, ZaqarError> {
    let must_seal = |message: &NewMessage| queue_encrypts || is_encrypted(&message.body_json);
    if !messages.iter().any(must_seal) {
        return Ok(Cow::Borrowed(messages));
    }
    let Some(cipher) = cipher else {
        return Err(if queue_encrypts {
            ZaqarError::unavailable("message encryption is not configured on this pool")
        } else {
            ZaqarError::bad_request(format!(
                "message bodies may not be strings starting with {PREFIX:?}: the prefix is reserved"
            ))
        });
    };
    let sealed = messages
        .iter()
        .map(|message| {
            let body_json = if must_seal(message) {
                cipher.encrypt(&message.body_json)?
            } else {
                message.body_json.clone()
            };
            Ok(NewMessage {
                body_json,
                ..message.clone()
            })
        })
        .collect::<Result<Vec<_>, ZaqarError>>()?;
    Ok(Cow::Owned(sealed))
}

/// Decrypts the body of every message that holds an envelope, in place, and gives
/// it the checksum of its original body (the store computed one of the envelope).
/// Without a cipher, an envelope is an error: it cannot be shown.
pub fn decrypt_messages<'a>(
    cipher: Option<&MessageCipher>,
    messages: impl IntoIterator<Item = &'a mut Message>,
) -> Result<(), ZaqarError> {
    for message in messages {
        if !is_encrypted(&message.body_json) {
            continue;
        }
        let Some(cipher) = cipher else {
            return Err(ZaqarError::internal(
                "an encrypted message body cannot be decrypted: encryption_key is not \
                 configured on this pool",
            ));
        };
        message.body_json = cipher.decrypt(&message.body_json)?;
        message.checksum = format!("MD5:{:x}", Md5::digest(message.body_json.as_bytes()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zaqar_proto::ErrorCode;

    fn cipher() -> MessageCipher {
        MessageCipher::from_base64_key(&MessageCipher::generate_base64_key()).unwrap()
    }

    #[test]
    fn the_stored_length_is_known_before_sealing() {
        let cipher = cipher();
        for len in [0, 1, 2, 3, 4, 100, 4096] {
            let body = "x".repeat(len);
            assert_eq!(
                cipher.encrypt(&body).unwrap().len(),
                sealed_len(len),
                "{len}"
            );
        }
    }

    #[test]
    fn round_trip_gives_the_exact_body_back() {
        let cipher = cipher();
        for body in [
            r#"{"event":"BackupStarted","n":[1,2]}"#,
            r#""just text""#,
            "42",
            "{}",
        ] {
            let stored = cipher.encrypt(body).unwrap();
            // A short body (`42`) turns up in random base64 about one time in a hundred.
            let plain = body.trim_matches('"');
            if plain.len() >= 8 {
                assert!(!stored.contains(plain), "{stored}");
            }
            assert_eq!(cipher.decrypt(&stored).unwrap(), body);
        }
    }

    #[test]
    fn the_stored_form_is_a_json_string_with_the_version_prefix() {
        let stored = cipher().encrypt(r#"{"secret":"s3cr3t"}"#).unwrap();
        let value: serde_json::Value = serde_json::from_str(&stored).unwrap();
        let text = value.as_str().expect("a JSON string");
        assert!(text.starts_with(PREFIX), "{text}");
        assert!(is_encrypted(&stored));
        assert!(!is_encrypted(r#"{"secret":"s3cr3t"}"#));
        assert!(!is_encrypted(r#""zaqar-enc:v2:abc""#));
    }

    #[test]
    fn each_message_gets_its_own_nonce() {
        let cipher = cipher();
        let body = r#"{"same":"body"}"#;
        assert_ne!(cipher.encrypt(body).unwrap(), cipher.encrypt(body).unwrap());
    }

    #[test]
    fn a_tampered_envelope_is_an_internal_error() {
        let cipher = cipher();
        let stored = cipher.encrypt(r#"{"amount":100}"#).unwrap();
        let encoded = envelope_of(&stored).unwrap();
        let mut bytes = STANDARD.decode(encoded).unwrap();
        for index in [0, NONCE_LEN, bytes.len() - 1] {
            bytes[index] ^= 0x01;
            let tampered = format!("\"{PREFIX}{}\"", STANDARD.encode(&bytes));
            let err = cipher.decrypt(&tampered).unwrap_err();
            assert_eq!(err.code, ErrorCode::Internal);
            assert!(err.description.contains("cannot be decrypted"), "{err}");
            bytes[index] ^= 0x01;
        }
        for corrupt in [
            format!("\"{PREFIX}not base64!\""),
            format!("\"{PREFIX}{}\"", STANDARD.encode([0u8; 20])),
            format!("\"{PREFIX}\""),
        ] {
            assert_eq!(
                cipher.decrypt(&corrupt).unwrap_err().code,
                ErrorCode::Internal
            );
        }
    }

    #[test]
    fn another_key_cannot_decrypt() {
        let stored = cipher().encrypt(r#"{"a":1}"#).unwrap();
        let err = cipher().decrypt(&stored).unwrap_err();
        assert_eq!(err.code, ErrorCode::Internal);
    }

    #[test]
    fn plain_bodies_pass_through_decryption() {
        assert_eq!(cipher().decrypt(r#"{"a":1}"#).unwrap(), r#"{"a":1}"#);
    }

    #[test]
    fn keys_must_be_base64_of_32_bytes() {
        assert!(MessageCipher::from_base64_key("not base64!").is_err());
        assert!(MessageCipher::from_base64_key(&STANDARD.encode([7u8; 16])).is_err());
        assert!(MessageCipher::from_base64_key(&STANDARD.encode([7u8; 32])).is_ok());
        assert_eq!(
            STANDARD
                .decode(MessageCipher::generate_base64_key())
                .unwrap()
                .len(),
            32
        );
    }

    #[test]
    fn the_flag_is_read_from_queue_metadata() {
        assert!(queue_encrypts(r#"{"_enable_encrypt_messages": true}"#));
        assert!(!queue_encrypts(r#"{"_enable_encrypt_messages": false}"#));
        assert!(!queue_encrypts(r#"{"_enable_encrypt_messages": "true"}"#));
        assert!(!queue_encrypts("{}"));
        assert!(!queue_encrypts("not json"));
    }

    fn new_message(body: &str) -> NewMessage {
        NewMessage {
            ttl: 60,
            delay: 0,
            body_json: body.into(),
        }
    }

    #[test]
    fn sealing_follows_the_queue_flag_and_the_reserved_prefix() {
        let cipher = cipher();
        let lookalike = format!("\"{PREFIX}not really\"");
        let plain = [new_message(r#"{"a":1}"#)];
        let sealed = seal_messages(Some(&cipher), false, &plain).unwrap();
        assert!(matches!(sealed, Cow::Borrowed(_)));
        let sealed = seal_messages(Some(&cipher), true, &plain).unwrap();
        assert!(is_encrypted(&sealed[0].body_json));
        assert_eq!(sealed[0].ttl, 60);
        assert_eq!(cipher.decrypt(&sealed[0].body_json).unwrap(), r#"{"a":1}"#);

        let mixed = [new_message("{}"), new_message(&lookalike)];
        let sealed = seal_messages(Some(&cipher), false, &mixed).unwrap();
        assert_eq!(sealed[0].body_json, "{}");
        assert_eq!(cipher.decrypt(&sealed[1].body_json).unwrap(), lookalike);

        let err = seal_messages(None, true, &plain).unwrap_err();
        assert_eq!(err.code, ErrorCode::Unavailable);
        assert_eq!(
            err.description,
            "message encryption is not configured on this pool"
        );
        let err = seal_messages(None, false, &mixed).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        assert!(seal_messages(None, false, &plain).is_ok());
    }

    #[test]
    fn decrypting_messages_restores_body_and_checksum() {
        let cipher = cipher();
        let body = r#"{"n":1}"#;
        let mut messages = vec![
            Message {
                body_json: cipher.encrypt(body).unwrap(),
                checksum: "MD5:of-the-envelope".into(),
                ..Default::default()
            },
            Message {
                body_json: "{}".into(),
                checksum: "MD5:99914b932bd37a50b983c5e7c90ae93b".into(),
                ..Default::default()
            },
        ];
        let mut without_key = messages.clone();
        decrypt_messages(Some(&cipher), &mut messages).unwrap();
        assert_eq!(messages[0].body_json, body);
        assert_eq!(messages[0].checksum, format!("MD5:{:x}", Md5::digest(body)));
        assert_eq!(messages[1].body_json, "{}");
        let err = decrypt_messages(None, &mut without_key).unwrap_err();
        assert_eq!(err.code, ErrorCode::Internal);
    }
}
