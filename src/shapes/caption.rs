//! Captions: the wording patterns that name a scene's colour and shape, with size, place, style and background words.

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" }
}

pub(super) struct Words<'a> {
    pub(super) colour: &'a str,
    pub(super) shape: &'a str,
    pub(super) size: &'a str,
    pub(super) style: &'a str,
    pub(super) place: &'a str,
    pub(super) place_phrase: &'a str,
    pub(super) background: &'a str,
}

pub(super) const CAPTION_PATTERNS: usize = 16;

/// Caption pattern `pattern`: every one names the colour and the shape (nearly always adjacent, as in the label,
/// which is what zero-shot prompts look like), and some add
/// size, position, background or style, so the text tower learns the label words amid varied wording.
pub(super) fn caption(pattern: usize, w: &Words) -> String {
    let Words { colour: c, shape: s, size, style, place, place_phrase, background: bg } = *w;
    let (ac, asz, ast) = (article(c), article(size), article(style));
    match pattern {
        0 => format!("{ac} {c} {s}"),
        1 => format!("a photo of {asz} {size} {c} {s} on {bg}"),
        2 => format!("{c} {s}, {place}"),
        3 => format!("{ast} {style} {c} {s} on {bg}"),
        4 => format!("a photo of {ac} {c} {s}"),
        5 => format!("{asz} {size} {c} {s}"),
        6 => format!("{ac} {c} {s} {place_phrase}"),
        7 => format!("a drawing of {ast} {style} {c} {s}"),
        8 => format!("{c} {s}"),
        9 => format!("a picture of {ac} {c} {s} on {bg}"),
        10 => format!("{asz} {size} {style} {c} {s} {place_phrase}"),
        11 => format!("there is {ac} {c} {s} in the image"),
        12 => format!("{ac} {c} {s} on {bg}"),
        13 => format!("an image of {asz} {size} {c} {s}"),
        14 => format!("a {s} that is {c}"),
        _ => format!("{c} {s}, {size}, {style}, on {bg}"),
    }
}

/// Short and phrased names of where the shape's centre is, in a 3x3 grid with a wide middle band.
pub(super) fn placement_words(fx: f32, fy: f32) -> (&'static str, &'static str) {
    let column = if fx < 0.38 {
        0
    } else if fx > 0.62 {
        2
    } else {
        1
    };
    let row = if fy < 0.38 {
        0
    } else if fy > 0.62 {
        2
    } else {
        1
    };
    match (row, column) {
        (0, 0) => ("top left", "in the top left corner"),
        (0, 1) => ("top", "at the top"),
        (0, _) => ("top right", "in the top right corner"),
        (1, 0) => ("left", "on the left"),
        (1, 1) => ("center", "in the center"),
        (1, _) => ("right", "on the right"),
        (_, 0) => ("bottom left", "in the bottom left corner"),
        (_, 1) => ("bottom", "at the bottom"),
        _ => ("bottom right", "in the bottom right corner"),
    }
}
