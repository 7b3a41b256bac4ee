//! Telling a TLS ClientHello from plaintext by the first bytes of a connection.
//!
//! A TLS connection opens with a handshake record: content type 22 (`0x16`), then a legacy
//! record version whose major byte is 3. No HTTP method, nor any printable protocol greeting,
//! starts with byte 22, so the first byte settles it; the second confirms it when present.
//! Deciding on one byte matters: a peek may return a single byte, and waiting for more would
//! mean polling a socket whose readiness does not change.

/// What the first bytes of a connection look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstBytes {
    /// A TLS handshake record.
    Tls,
    /// Anything else: treated as plaintext.
    Plaintext,
    /// No bytes yet.
    NeedMore,
}

/// TLS record content type for handshake messages.
const HANDSHAKE: u8 = 0x16;
/// Major version byte of every TLS (and SSL 3) record version.
const RECORD_MAJOR: u8 = 0x03;

/// Classifies the start of a connection.
pub fn classify_first_bytes(bytes: &[u8]) -> FirstBytes {
    match bytes {
        [] => FirstBytes::NeedMore,
        [HANDSHAKE] => FirstBytes::Tls,
        [HANDSHAKE, RECORD_MAJOR, ..] => FirstBytes::Tls,
        _ => FirstBytes::Plaintext,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_tls_from_plaintext() {
        assert_eq!(classify_first_bytes(b""), FirstBytes::NeedMore);
        assert_eq!(classify_first_bytes(&[0x16]), FirstBytes::Tls);
        assert_eq!(
            classify_first_bytes(&[0x16, 0x03, 0x01, 0x02, 0x00]),
            FirstBytes::Tls
        );
        assert_eq!(
            classify_first_bytes(b"GET / HTTP/1.1\r\n"),
            FirstBytes::Plaintext
        );
        assert_eq!(
            classify_first_bytes(b"PRI * HTTP/2.0"),
            FirstBytes::Plaintext
        );
        assert_eq!(classify_first_bytes(&[0x16, 0x41]), FirstBytes::Plaintext);
    }
}
