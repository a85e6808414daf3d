//! Request bodies by `Content-Encoding`, decompressed with a hard output
//! limit so that a decompression bomb costs no more than the limit.

use std::io::Read;

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unsupported Content-Encoding '{0}': send gzip, deflate, br, zstd or identity")]
    Unsupported(String),
    #[error("body is larger than {limit} bytes after decompression")]
    TooLarge { limit: usize },
    #[error("corrupt {encoding} body: {source}")]
    Corrupt { encoding: &'static str, source: std::io::Error },
}

/// Decodes `body` according to a `Content-Encoding` header value. Several
/// comma-separated codings are undone in reverse order; an empty value and
/// `UTF-8` (sent by some old SDKs) mean no coding.
pub fn decode(content_encoding: &str, body: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    let codings: Vec<String> = content_encoding
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity" && c != "utf-8")
        .collect();
    let mut data: Option<Vec<u8>> = None;
    for coding in codings.iter().rev() {
        let input = data.as_deref().unwrap_or(body);
        data = Some(decode_one(coding, input, limit)?);
    }
    match data {
        Some(d) => Ok(d),
        None if body.len() > limit => Err(DecodeError::TooLarge { limit }),
        None => Ok(body.to_vec()),
    }
}

fn decode_one(coding: &str, input: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    match coding {
        "gzip" | "x-gzip" => read_limited("gzip", flate2::read::MultiGzDecoder::new(input), limit),
        "deflate" => inflate(input, limit),
        "br" => read_limited("br", brotli::Decompressor::new(input, 4096), limit),
        "zstd" => {
            let dec = zstd::stream::read::Decoder::new(input)
                .map_err(|source| DecodeError::Corrupt { encoding: "zstd", source })?;
            read_limited("zstd", dec, limit)
        }
        other => Err(DecodeError::Unsupported(other.to_string())),
    }
}

/// `deflate` per HTTP means a zlib stream (raven sends `zlib.compress()`),
/// but some clients send raw deflate: sniff the zlib header, else go raw.
pub fn inflate(input: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    if is_zlib_header(input) {
        read_limited("deflate", flate2::read::ZlibDecoder::new(input), limit)
    } else {
        read_limited("deflate", flate2::read::DeflateDecoder::new(input), limit)
    }
}

fn is_zlib_header(b: &[u8]) -> bool {
    b.len() >= 2 && b[0] & 0x0f == 8 && (u16::from(b[0]) * 256 + u16::from(b[1])) % 31 == 0
}

fn read_limited(encoding: &'static str, r: impl Read, limit: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    r.take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|source| DecodeError::Corrupt { encoding, source })?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn all_codings_round_trip() {
        let plain = b"{\"message\":\"hello\"}".repeat(50);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&plain).unwrap();
        let zlib = z.finish().unwrap();
        let mut d = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        d.write_all(&plain).unwrap();
        let raw = d.finish().unwrap();
        let mut br = Vec::new();
        brotli::CompressorWriter::new(&mut br, 4096, 4, 22).write_all(&plain).unwrap();
        let zst = zstd::encode_all(&plain[..], 1).unwrap();
        for (enc, body) in [("gzip", gzip(&plain)), ("deflate", zlib), ("deflate", raw), ("br", br), ("zstd", zst), ("", plain.clone()), ("UTF-8", plain.clone()), ("identity", plain.clone())] {
            assert_eq!(decode(enc, &body, 1 << 20).unwrap(), plain, "{enc}");
        }
    }

    #[test]
    fn bomb_is_cut_at_the_limit() {
        let bomb = gzip(&vec![0u8; 50 * 1024 * 1024]);
        assert!(bomb.len() < 100 * 1024);
        assert!(matches!(decode("gzip", &bomb, 1024 * 1024), Err(DecodeError::TooLarge { .. })));
    }

    #[test]
    fn corrupt_and_unknown() {
        assert!(matches!(decode("gzip", b"not gzip", 100), Err(DecodeError::Corrupt { .. })));
        assert!(matches!(decode("lzma", b"x", 100), Err(DecodeError::Unsupported(_))));
        assert!(matches!(decode("", b"12345", 3), Err(DecodeError::TooLarge { .. })));
    }
}
