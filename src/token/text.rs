//! The text form of a token for QR codes and paper: `PG1:` + base45(zlib(COSE)).

use std::io::Read;

use flate2::Compression;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;

/// Prefix of the text form.
pub const PREFIX: &str = "PG1:";
/// Largest COSE message accepted after decompression.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Encodes COSE bytes as `PG1:` text.
pub fn encode(cose: &[u8]) -> String {
    use std::io::Write;
    let mut z = ZlibEncoder::new(Vec::new(), Compression::best());
    // Writing into a Vec cannot fail.
    let _ = z.write_all(cose);
    let compressed = z.finish().unwrap_or_default();
    format!("{PREFIX}{}", base45::encode(compressed))
}

/// Turns what a scanner or a file gives (text form, or raw COSE bytes) into COSE bytes.
pub fn to_cose_bytes(input: &[u8]) -> Result<Vec<u8>, String> {
    let trimmed = trim_ascii(input);
    if let Some(rest) = trimmed.strip_prefix(PREFIX.as_bytes()) {
        let text = std::str::from_utf8(rest).map_err(|_| "PG1 text is not ASCII".to_string())?;
        let data = base45::decode(text).map_err(|e| format!("PG1 text is not base45: {e}"))?;
        // zlib streams start with 0x78; accept uncompressed COSE too, as DCC verifiers do.
        if data.first() == Some(&0x78) {
            inflate(&data)
        } else {
            Ok(data)
        }
    } else if input.len() > MAX_TOKEN_BYTES {
        Err(format!("token is larger than {MAX_TOKEN_BYTES} bytes"))
    } else if matches!(input.first(), Some(0xd2) | Some(0x84)) {
        Ok(input.to_vec())
    } else {
        Err("not a token: expected `PG1:` text or COSE_Sign1 bytes".into())
    }
}

fn inflate(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    // Bound the output so a zlib bomb costs nothing.
    ZlibDecoder::new(data)
        .take(MAX_TOKEN_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("PG1 text does not inflate: {e}"))?;
    if out.len() > MAX_TOKEN_BYTES {
        return Err(format!(
            "token inflates to more than {MAX_TOKEN_BYTES} bytes"
        ));
    }
    Ok(out)
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip() {
        let cose = vec![0xd2, 0x84, 1, 2, 3];
        let t = encode(&cose);
        assert!(t.starts_with("PG1:"));
        assert_eq!(to_cose_bytes(t.as_bytes()).unwrap(), cose);
        assert_eq!(to_cose_bytes(format!("  {t}\n").as_bytes()).unwrap(), cose);
        assert_eq!(to_cose_bytes(&cose).unwrap(), cose);
    }

    #[test]
    fn zlib_bomb_is_refused() {
        let big = vec![0u8; 10 * MAX_TOKEN_BYTES];
        let t = encode(&big);
        assert!(
            to_cose_bytes(t.as_bytes())
                .unwrap_err()
                .contains("more than")
        );
    }

    #[test]
    fn garbage_is_refused() {
        assert!(to_cose_bytes(b"PG1:!!!").is_err());
        assert!(to_cose_bytes(b"hello").is_err());
        assert!(to_cose_bytes(b"").is_err());
    }
}
