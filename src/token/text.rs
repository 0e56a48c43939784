//! The text form of a token for QR codes and paper: `PG1:` + base45(zlib(COSE)).

use flate2::Compression;
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
    use flate2::{Decompress, FlushDecompress, Status};
    use std::cell::RefCell;
    thread_local! {
        // Design: one inflater per thread, reset per token; making a new one
        // allocates and clears tens of kilobytes for a few hundred bytes out.
        static INFLATER: RefCell<Decompress> = RefCell::new(Decompress::new(true));
    }
    // Room for one byte more than allowed, so a zlib bomb is caught and costs nothing.
    let mut out = Vec::with_capacity(MAX_TOKEN_BYTES + 1);
    let (status, read) = INFLATER.with_borrow_mut(|z| {
        z.reset(true);
        let status = z.decompress_vec(data, &mut out, FlushDecompress::Finish);
        (status, z.total_in())
    });
    match status {
        // Design: one token, one text form: bytes after the stream's end
        // are refused like trailing bytes anywhere else.
        Ok(Status::StreamEnd) if read < data.len() as u64 => Err(format!(
            "PG1 text has {} bytes after the end of its zlib stream",
            data.len() as u64 - read
        )),
        Ok(Status::StreamEnd) if out.len() <= MAX_TOKEN_BYTES => {
            out.shrink_to_fit();
            Ok(out)
        }
        Ok(_) if out.len() > MAX_TOKEN_BYTES => Err(format!(
            "token inflates to more than {MAX_TOKEN_BYTES} bytes"
        )),
        Ok(_) => Err("PG1 text does not inflate: the zlib stream is cut short".into()),
        Err(e) => Err(format!("PG1 text does not inflate: {e}")),
    }
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
    fn a_cut_or_corrupt_stream_is_refused_and_the_next_token_still_reads() {
        let cose: Vec<u8> = (0..600u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut z = ZlibEncoder::new(Vec::new(), Compression::best());
        std::io::Write::write_all(&mut z, &cose).unwrap();
        let zlib = z.finish().unwrap();
        let text = |b: &[u8]| format!("{PREFIX}{}", base45::encode(b));
        let cut = to_cose_bytes(text(&zlib[..zlib.len() / 2]).as_bytes()).unwrap_err();
        assert!(cut.contains("cut short"), "{cut}");
        let mut bad = zlib.clone();
        bad[3] ^= 0xff;
        assert!(to_cose_bytes(text(&bad).as_bytes()).is_err());
        // Bytes after the stream's end: refused, not ignored.
        let mut trailing = zlib.clone();
        trailing.extend_from_slice(b"xx");
        let why = to_cose_bytes(text(&trailing).as_bytes()).unwrap_err();
        assert!(why.contains("2 bytes after the end"), "{why}");
        // The inflater is reused per thread: what failed before leaves no trace.
        assert_eq!(to_cose_bytes(text(&zlib).as_bytes()).unwrap(), cose);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(to_cose_bytes(b"PG1:!!!").is_err());
        assert!(to_cose_bytes(b"hello").is_err());
        assert!(to_cose_bytes(b"").is_err());
    }
}
