//! PROXY protocol version 2 headers for the upstream.
//!
//! The header carries the client's address and, for TLS clients, a `PP2_TYPE_SSL` record with
//! the negotiated version and the client certificate's common name, plus the client's SPIFFE ID
//! in the first custom TLV type (`0xE0`), since the specification has no field for it.

use std::net::SocketAddr;

const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
const VERSION_2_PROXY: u8 = 0x21;
const TCP_OVER_IPV4: u8 = 0x11;
const TCP_OVER_IPV6: u8 = 0x21;
const UNSPECIFIED: u8 = 0x00;

const PP2_TYPE_SSL: u8 = 0x20;
const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
const PP2_SUBTYPE_SSL_CN: u8 = 0x22;
/// First of the custom types (`PP2_TYPE_MIN_CUSTOM`): Portcullis puts the SPIFFE ID there.
pub const PP2_TYPE_SPIFFE_ID: u8 = 0xE0;

const PP2_CLIENT_SSL: u8 = 0x01;
const PP2_CLIENT_CERT_CONN: u8 = 0x02;
const PP2_CLIENT_CERT_SESS: u8 = 0x04;

/// What the header says about a TLS client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsDetails {
    /// Such as `TLSv1.3`.
    pub version: String,
    /// Whether the client presented a certificate that verified.
    pub verified_cert: bool,
    /// The certificate was sent on this connection (not only in a resumed session).
    pub cert_on_this_connection: bool,
    pub common_name: Option<String>,
    pub spiffe_id: Option<String>,
}

/// Encodes a header for a connection from `source` to `destination`.
pub fn encode(source: SocketAddr, destination: SocketAddr, tls: Option<&TlsDetails>) -> Vec<u8> {
    let mut body = Vec::with_capacity(64);
    let family = match (source, destination) {
        (SocketAddr::V4(src), SocketAddr::V4(dst)) => {
            body.extend_from_slice(&src.ip().octets());
            body.extend_from_slice(&dst.ip().octets());
            body.extend_from_slice(&src.port().to_be_bytes());
            body.extend_from_slice(&dst.port().to_be_bytes());
            TCP_OVER_IPV4
        }
        (SocketAddr::V6(src), SocketAddr::V6(dst)) => {
            body.extend_from_slice(&src.ip().octets());
            body.extend_from_slice(&dst.ip().octets());
            body.extend_from_slice(&src.port().to_be_bytes());
            body.extend_from_slice(&dst.port().to_be_bytes());
            TCP_OVER_IPV6
        }
        // Mixed families cannot be expressed; the receiver then uses the real addresses.
        _ => UNSPECIFIED,
    };

    if let Some(tls) = tls {
        body.extend_from_slice(&ssl_tlv(tls));
        if let Some(id) = &tls.spiffe_id {
            push_tlv(&mut body, PP2_TYPE_SPIFFE_ID, id.as_bytes());
        }
    }

    let mut header = Vec::with_capacity(16 + body.len());
    header.extend_from_slice(&SIGNATURE);
    header.push(VERSION_2_PROXY);
    header.push(family);
    header.extend_from_slice(&(body.len() as u16).to_be_bytes());
    header.extend_from_slice(&body);
    header
}

fn ssl_tlv(tls: &TlsDetails) -> Vec<u8> {
    let mut client = PP2_CLIENT_SSL;
    if tls.verified_cert {
        client |= PP2_CLIENT_CERT_SESS;
        if tls.cert_on_this_connection {
            client |= PP2_CLIENT_CERT_CONN;
        }
    }
    // `verify` is zero when the client certificate verified, non-zero otherwise.
    let verify: u32 = if tls.verified_cert { 0 } else { 1 };

    let mut value = vec![client];
    value.extend_from_slice(&verify.to_be_bytes());
    push_tlv(&mut value, PP2_SUBTYPE_SSL_VERSION, tls.version.as_bytes());
    if let Some(cn) = &tls.common_name {
        push_tlv(&mut value, PP2_SUBTYPE_SSL_CN, cn.as_bytes());
    }

    let mut tlv = Vec::with_capacity(3 + value.len());
    push_tlv(&mut tlv, PP2_TYPE_SSL, &value);
    tlv
}

fn push_tlv(out: &mut Vec<u8>, kind: u8, value: &[u8]) {
    // Values come from certificates we verified; a field over 64 KiB is cut, not trusted.
    let value = &value[..value.len().min(u16::MAX as usize)];
    out.push(kind);
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_ipv4_addresses_and_tls_details() {
        let tls = TlsDetails {
            version: "TLSv1.3".into(),
            verified_cert: true,
            cert_on_this_connection: true,
            common_name: Some("web".into()),
            spiffe_id: Some("spiffe://a.org/web".into()),
        };
        let header = encode(
            "10.0.0.1:5000".parse().unwrap(),
            "10.0.0.2:443".parse().unwrap(),
            Some(&tls),
        );
        assert_eq!(&header[..12], &SIGNATURE);
        assert_eq!(header[12], 0x21);
        assert_eq!(header[13], TCP_OVER_IPV4);
        let length = u16::from_be_bytes([header[14], header[15]]) as usize;
        assert_eq!(header.len(), 16 + length);
        assert_eq!(&header[16..20], &[10, 0, 0, 1]);
        assert_eq!(&header[24..26], &5000u16.to_be_bytes());

        let tlvs = &header[28..];
        assert_eq!(tlvs[0], PP2_TYPE_SSL);
        assert_eq!(
            tlvs[3],
            PP2_CLIENT_SSL | PP2_CLIENT_CERT_CONN | PP2_CLIENT_CERT_SESS
        );
        assert_eq!(&tlvs[4..8], &[0, 0, 0, 0]);
        let ssl_len = u16::from_be_bytes([tlvs[1], tlvs[2]]) as usize;
        let custom = &tlvs[3 + ssl_len..];
        assert_eq!(custom[0], PP2_TYPE_SPIFFE_ID);
        assert_eq!(&custom[3..], b"spiffe://a.org/web");
        assert!(header.windows(3).any(|w| w == b"web"));
    }

    #[test]
    fn plaintext_clients_get_addresses_only() {
        let header = encode("[::1]:1".parse().unwrap(), "[::1]:2".parse().unwrap(), None);
        assert_eq!(header[13], TCP_OVER_IPV6);
        assert_eq!(header.len(), 16 + 36);
    }
}
