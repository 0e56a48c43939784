//! QR codes for license paperwork: a `PG1:` token is base45, which is the
//! QR alphanumeric alphabet, so it encodes compactly and scans as text.

use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;

/// A token that does not fit in a QR code.
#[derive(Debug, thiserror::Error)]
#[error("cannot make a QR code: {0}")]
pub struct QrError(String);

/// Quiet zone around the symbol, in modules (the standard asks for 4).
const QUIET: usize = 4;

fn code(text: &str) -> Result<QrCode, QrError> {
    QrCode::new(text.as_bytes()).map_err(|e| QrError(e.to_string()))
}

/// The code drawn with half-block characters, for a terminal.
pub fn terminal(text: &str) -> Result<String, QrError> {
    Ok(code(text)?
        .render::<Dense1x2>()
        .dark_color(Dense1x2::Light)
        .light_color(Dense1x2::Dark)
        .build())
}

/// The code as a greyscale PNG, `scale` pixels per module.
pub fn png(text: &str, scale: usize) -> Result<Vec<u8>, QrError> {
    let code = code(text)?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET) * scale;
    let mut pixels = vec![255u8; side * side];
    for (i, c) in colors.iter().enumerate() {
        if *c == qrcode::Color::Dark {
            let (mx, my) = (i % modules + QUIET, i / modules + QUIET);
            for y in my * scale..(my + 1) * scale {
                pixels[y * side + mx * scale..y * side + (mx + 1) * scale].fill(0);
            }
        }
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, side as u32, side as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(|e| QrError(e.to_string()))?;
    w.write_image_data(&pixels)
        .map_err(|e| QrError(e.to_string()))?;
    w.finish().map_err(|e| QrError(e.to_string()))?;
    Ok(out)
}
