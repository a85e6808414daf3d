//! `/store/` bodies: a JSON event, or base64 of it, or base64 of a zlib stream
//! of it (old JavaScript and raven variants).

use base64::Engine;

use crate::decompress::{inflate, DecodeError};

/// Returns the JSON bytes of a store body, undoing base64 and zlib if needed.
pub fn decode_store_body(body: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let trimmed = trim_ascii(body);
    if trimmed.is_empty() || trimmed[0] == b'{' {
        return Ok(body.to_vec());
    }
    let cleaned: Vec<u8> = trimmed.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(&cleaned)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(&cleaned))
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(&cleaned));
    match decoded {
        Ok(d) if trim_ascii(&d).first() == Some(&b'{') => Ok(d),
        Ok(d) => inflate(&d, limit),
        // Not base64 either: hand the bytes on so that the JSON error names what is wrong.
        Err(_) => Ok(body.to_vec()),
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &b[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn plain_base64_and_zlib() {
        let json = br#"{"message":"hi"}"#;
        assert_eq!(decode_store_body(json, 1024).unwrap(), json);
        let b64 = base64::engine::general_purpose::STANDARD.encode(json);
        assert_eq!(decode_store_body(b64.as_bytes(), 1024).unwrap(), json);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(json).unwrap();
        let b64z = base64::engine::general_purpose::STANDARD.encode(z.finish().unwrap());
        assert_eq!(decode_store_body(b64z.as_bytes(), 1024).unwrap(), json);
        assert_eq!(decode_store_body(b"not json", 1024).unwrap(), b"not json");
    }
}
