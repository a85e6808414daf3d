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
    let mut data: Option<Vec<u8>> = None;
    for coding in codings(content_encoding).iter().rev() {
        let input = data.as_deref().unwrap_or(body);
        data = Some(decode_one(coding, input, limit)?);
    }
    match data {
        Some(d) => Ok(d),
        None if body.len() > limit => Err(DecodeError::TooLarge { limit }),
        None => Ok(body.to_vec()),
    }
}

/// The codings of a `Content-Encoding` value, in the order they were applied.
fn codings(content_encoding: &str) -> Vec<String> {
    content_encoding
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity" && c != "utf-8")
        .collect()
}

/// At most the first `max` bytes of the decoded body, decoding no more of
/// it than that takes: ingest reads an envelope's header line this way to
/// find its key, so that a request without a valid key never costs a whole
/// decompression. A stream damaged or cut short after its first bytes
/// yields what decoded before the damage (the full [`decode`] reports it);
/// with several codings each stage is cut at `max` too.
pub fn decode_prefix(content_encoding: &str, body: &[u8], max: usize) -> Result<Vec<u8>, DecodeError> {
    let mut data: Option<Vec<u8>> = None;
    for coding in codings(content_encoding).iter().rev() {
        let input = data.as_deref().unwrap_or(body);
        data = Some(prefix_one(coding, input, max)?);
    }
    Ok(data.unwrap_or_else(|| body[..body.len().min(max)].to_vec()))
}

fn prefix_one(coding: &str, input: &[u8], max: usize) -> Result<Vec<u8>, DecodeError> {
    let (encoding, mut reader): (&'static str, Box<dyn Read + '_>) = match coding {
        "gzip" | "x-gzip" => ("gzip", Box::new(flate2::read::MultiGzDecoder::new(input))),
        "deflate" if is_zlib_header(input) => ("deflate", Box::new(flate2::read::ZlibDecoder::new(input))),
        "deflate" => ("deflate", Box::new(flate2::read::DeflateDecoder::new(input))),
        "br" => ("br", Box::new(brotli::Decompressor::new(input, 4096))),
        "zstd" => ("zstd", Box::new(zstd::stream::read::Decoder::new(input).map_err(|source| DecodeError::Corrupt { encoding: "zstd", source })?)),
        other => return Err(DecodeError::Unsupported(other.to_string())),
    };
    let mut out = vec![0; max];
    let mut filled = 0;
    while filled < max {
        match reader.read(&mut out[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) if filled == 0 => return Err(DecodeError::Corrupt { encoding, source }),
            Err(_) => break,
        }
    }
    out.truncate(filled);
    Ok(out)
}

fn decode_one(coding: &str, input: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    match coding {
        "gzip" | "x-gzip" => gunzip(input, limit),
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

thread_local! {
    /// One raw-deflate state per thread, reset for each gzip member: a fresh
    /// one allocates and zeroes its 32 KiB window, which was a good part of
    /// the cost of a small body.
    static INFLATE: std::cell::RefCell<flate2::Decompress> = std::cell::RefCell::new(flate2::Decompress::new(false));
}

/// Decodes a gzip body of one or more members (RFC 1952; SDKs send one, and
/// a body may be several, as from `cat a.gz b.gz`). Every member's CRC-32
/// and length are checked; anything after the last member is an error.
pub fn gunzip(input: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    if input.is_empty() {
        return Err(gzip_corrupt("empty body"));
    }
    let mut out: Vec<u8> = Vec::new();
    let mut rest = input;
    INFLATE.with(|state| {
        let mut inflate = state.borrow_mut();
        while !rest.is_empty() {
            rest = skip_gzip_header(rest).ok_or_else(|| gzip_corrupt("invalid gzip header"))?;
            if out.capacity() == 0 {
                // Room for a typical ratio once the header is good (not for
                // junk); growth in `inflate_member` stays within the limit.
                out.reserve_exact(input.len().saturating_mul(4).clamp(1024, 1 << 20).min(limit.saturating_add(1)));
            }
            let start = out.len();
            rest = &rest[inflate_member(&mut inflate, rest, &mut out, limit)?..];
            let trailer = rest.get(..8).ok_or_else(|| gzip_corrupt("gzip member ends without its CRC and length"))?;
            let mut crc = flate2::Crc::new();
            crc.update(&out[start..]);
            if crc.sum() != u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]) {
                return Err(gzip_corrupt("gzip CRC-32 mismatch"));
            }
            if (out.len() - start) as u32 != u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]) {
                return Err(gzip_corrupt("gzip length mismatch"));
            }
            rest = &rest[8..];
        }
        Ok(())
    })?;
    Ok(out)
}

/// Inflates one member's deflate stream from the start of `input` onto
/// `out`, within `limit`; returns how many bytes of `input` it took.
fn inflate_member(inflate: &mut flate2::Decompress, input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<usize, DecodeError> {
    inflate.reset(false);
    let base = inflate.total_in();
    let used = |inflate: &flate2::Decompress| (inflate.total_in() - base) as usize;
    loop {
        if out.len() == out.capacity() {
            if out.len() > limit {
                return Err(DecodeError::TooLarge { limit });
            }
            // Double, within the limit (one byte over it tells a bomb).
            out.reserve_exact(out.capacity().max(1024).min(limit.saturating_add(1) - out.len()));
        }
        let (used_before, len_before) = (used(inflate), out.len());
        let status = inflate.decompress_vec(&input[used_before..], out, flate2::FlushDecompress::None).map_err(gzip_corrupt)?;
        if out.len() > limit {
            return Err(DecodeError::TooLarge { limit });
        }
        if status == flate2::Status::StreamEnd {
            return Ok(used(inflate));
        }
        // With room left to write, no progress means the input ended inside the stream.
        if used(inflate) == used_before && out.len() == len_before && out.len() < out.capacity() {
            return Err(gzip_corrupt("unexpected end of gzip data"));
        }
    }
}

fn gzip_corrupt(why: impl std::fmt::Display) -> DecodeError {
    DecodeError::Corrupt { encoding: "gzip", source: std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string()) }
}

/// The bytes after a gzip member header, or `None` if it is not one.
fn skip_gzip_header(b: &[u8]) -> Option<&[u8]> {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    if b.len() < 10 || b[0] != 0x1f || b[1] != 0x8b || b[2] != 8 || b[3] & 0xe0 != 0 {
        return None;
    }
    let flags = b[3];
    let mut rest = &b[10..];
    if flags & FEXTRA != 0 {
        let len = u16::from_le_bytes([*rest.first()?, *rest.get(1)?]) as usize;
        rest = rest.get(2 + len..)?;
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let end = rest.iter().position(|&c| c == 0)?;
            rest = &rest[end + 1..];
        }
    }
    if flags & FHCRC != 0 {
        // The low 16 bits of the CRC-32 of the header before it (RFC 1952 2.3.1).
        let header = &b[..b.len() - rest.len()];
        let stored = u16::from_le_bytes([*rest.first()?, *rest.get(1)?]);
        let mut crc = flate2::Crc::new();
        crc.update(header);
        if crc.sum() as u16 != stored {
            return None;
        }
        rest = &rest[2..];
    }
    Some(rest)
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
    fn a_prefix_decodes_only_the_start() {
        let plain = b"{\"dsn\":\"https://key@example.com/1\"}\n".iter().chain(&vec![b'x'; 1 << 20]).copied().collect::<Vec<u8>>();
        let zst = zstd::encode_all(&plain[..], 1).unwrap();
        let mut br = Vec::new();
        brotli::CompressorWriter::new(&mut br, 4096, 4, 22).write_all(&plain).unwrap();
        for (enc, body) in [("gzip", gzip(&plain)), ("br", br), ("zstd", zst.clone()), ("", plain.clone()), ("zstd, gzip", gzip(&zst))] {
            assert_eq!(decode_prefix(enc, &body, 100).unwrap(), &plain[..100], "{enc}");
        }
        // Shorter than asked: all of it. Cut short: what decoded before the cut.
        assert_eq!(decode_prefix("gzip", &gzip(b"{}"), 100).unwrap(), b"{}");
        let gz = gzip(&plain);
        assert_eq!(decode_prefix("gzip", &gz[..gz.len() / 2], 100).unwrap(), &plain[..100]);
        // Nothing decodable, or a coding we do not speak: the same errors as a full decode.
        assert!(matches!(decode_prefix("gzip", b"not gzip", 100), Err(DecodeError::Corrupt { .. })));
        assert!(matches!(decode_prefix("compress", b"x", 100), Err(DecodeError::Unsupported(_))));
        // A bomb yields its prefix, not an error: the caller decides on the rest.
        let bomb = gzip(&vec![0u8; 50 * 1024 * 1024]);
        assert_eq!(decode_prefix("gzip", &bomb, 64 << 10).unwrap().len(), 64 << 10);
    }

    #[test]
    fn bomb_is_cut_at_the_limit() {
        let bomb = gzip(&vec![0u8; 50 * 1024 * 1024]);
        assert!(bomb.len() < 100 * 1024);
        assert!(matches!(decode("gzip", &bomb, 1024 * 1024), Err(DecodeError::TooLarge { .. })));
    }

    #[test]
    fn gzip_members_headers_and_trailers() {
        let (a, b) = (b"first member ".repeat(100), b"second member".repeat(300));
        let mut two = gzip(&a);
        two.extend(gzip(&b));
        assert_eq!(gunzip(&two, 1 << 20).unwrap(), [&a[..], &b[..]].concat(), "members are concatenated");
        // Optional header fields (RFC 1952 2.3.1): extra, name, comment, header CRC.
        let mut e = flate2::GzBuilder::new().extra(b"xy".to_vec()).filename("a.json").comment("c").write(Vec::new(), flate2::Compression::fast());
        e.write_all(&a).unwrap();
        let mut full = e.finish().unwrap();
        full[3] |= 2; // FHCRC: the header's CRC-16 after the comment
        let header_end = 10 + 2 + 2 + b"a.json\0".len() + b"c\0".len();
        let mut crc = flate2::Crc::new();
        crc.update(&full[..header_end]);
        let mut wrong = full.clone();
        full.splice(header_end..header_end, (crc.sum() as u16).to_le_bytes());
        assert_eq!(gunzip(&full, 1 << 20).unwrap(), a);
        wrong.splice(header_end..header_end, (crc.sum() as u16 ^ 1).to_le_bytes());
        assert!(matches!(gunzip(&wrong, 1 << 20), Err(DecodeError::Corrupt { .. })), "a wrong header CRC");
        let good = gzip(&a);
        let n = good.len();
        let mut bad_crc = good.clone();
        bad_crc[n - 8] ^= 1;
        let mut bad_len = good.clone();
        bad_len[n - 1] ^= 1;
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"garbage!!!");
        for (what, body) in [("crc", bad_crc), ("length", bad_len), ("truncated", good[..n - 4].to_vec()), ("cut in the stream", good[..n / 2].to_vec()), ("trailing bytes", trailing), ("empty", Vec::new())] {
            assert!(matches!(gunzip(&body, 1 << 20), Err(DecodeError::Corrupt { .. })), "{what}");
        }
        // Exactly at the limit is fine, one byte over is not; a tiny limit does not panic.
        assert_eq!(gunzip(&good, a.len()).unwrap(), a);
        assert!(matches!(gunzip(&good, a.len() - 1), Err(DecodeError::TooLarge { .. })));
        assert!(matches!(gunzip(&good, 10), Err(DecodeError::TooLarge { .. })));
    }

    #[test]
    fn gzip_agrees_with_flate2() {
        use proptest::prelude::*;
        proptest!(|(data in proptest::collection::vec(any::<u8>(), 0..3000), cut in 0usize..4000, flip in 0usize..4000)| {
            let body = gzip(&data);
            prop_assert_eq!(gunzip(&body, 1 << 20).unwrap(), data.clone());
            // Damaged input: same verdict as flate2's decoder, never a panic.
            let mut damaged = body[..cut.min(body.len())].to_vec();
            if !damaged.is_empty() { let i = flip % damaged.len(); damaged[i] ^= 0x55; }
            let ours = gunzip(&damaged, 1 << 20);
            let theirs = read_limited("gzip", flate2::read::MultiGzDecoder::new(&damaged[..]), 1 << 20);
            prop_assert_eq!(ours.is_ok(), theirs.is_ok() && !damaged.is_empty(), "{:?} vs {:?}", ours.as_ref().map(Vec::len), theirs.as_ref().map(Vec::len));
            if let (Ok(a), Ok(b)) = (ours, theirs) { prop_assert_eq!(a, b); }
        });
    }

    #[test]
    fn corrupt_and_unknown() {
        assert!(matches!(decode("gzip", b"not gzip", 100), Err(DecodeError::Corrupt { .. })));
        assert!(matches!(decode("lzma", b"x", 100), Err(DecodeError::Unsupported(_))));
        assert!(matches!(decode("", b"12345", 3), Err(DecodeError::TooLarge { .. })));
    }
}
