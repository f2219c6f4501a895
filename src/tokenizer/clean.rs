//! open_clip's text cleaning (`ftfy.fix_text`, `html.unescape` twice, whitespace collapse, lowercase), ported from the Python it runs.
//!
//! Every step mirrors the reference function named in its comment; where Python and Rust differ (character counts,
//! `re` whitespace classes, lookaround), the difference is handled by hand so that ids match open_clip exactly.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::Regex;
use regex::bytes::Regex as BytesRegex;
use unicode_normalization::UnicodeNormalization;

use super::tables as t;

/// ftfy's `max_decode_length`: text is fixed in segments of at most this many code points.
const MAX_DECODE_LENGTH: usize = 1_000_000;

/// `_clean_lower`: `whitespace_clean(basic_clean(text)).lower()`.
pub(super) fn clean(text: &str) -> String {
    let fixed = fix_text(text);
    let once = html_unescape(&fixed);
    let twice = html_unescape(&once);
    // strip + split + join + strip collapse to one split on Python's whitespace (str.isspace, not char::is_whitespace).
    let mut out = String::with_capacity(twice.len());
    for word in twice.split(is_py_space).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out.to_lowercase()
}

fn is_py_space(c: char) -> bool {
    t::PY_SPACE.iter().any(|&(lo, hi)| lo <= c && c <= hi)
}

struct Regexes {
    badness: Regex,
    utf8_detector: Regex,
    utf8_continuation_strict: Regex,
    altered_utf8: BytesRegex,
    lossy_utf8: BytesRegex,
    html_entity: Regex,
    ansi: Regex,
}

fn regexes() -> &'static Regexes {
    static RE: OnceLock<Regexes> = OnceLock::new();
    RE.get_or_init(|| {
        // The patterns are constants checked by the tests; a failure here is a build defect, not bad input.
        let re = |p: &str| Regex::new(p).expect("ftfy regex compiles");
        let bre = |p: &str| BytesRegex::new(p).expect("ftfy bytes regex compiles");
        Regexes {
            badness: re(t::BADNESS_RE),
            utf8_detector: re(t::UTF8_DETECTOR_BODY),
            utf8_continuation_strict: re(&format!("^{}$", t::UTF8_CONTINUATION_STRICT)),
            altered_utf8: bre(t::ALTERED_UTF8_RE),
            lossy_utf8: bre(t::LOSSY_UTF8_RE),
            // ftfy.chardata.HTML_ENTITY_RE; Python's [0-9A-Za-z] is ASCII-only, as is Rust's.
            html_entity: re(r"&#?[0-9A-Za-z]{1,24};"),
            // ftfy.fixes.ANSI_RE; Python's \d on str is Unicode Nd, as is Rust's.
            ansi: re(r"\x1b\[(?:\d|;)*[a-zA-Z]"),
        }
    })
}

/// `ftfy.fix_text` with the default `TextFixerConfig(explain=False)`.
fn fix_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // "auto": HTML unescaping stops for good at the first segment that contains '<'.
    let mut unescape = true;
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.find('\n').map_or(rest.len(), |i| i + 1);
        if let Some((byte, _)) = rest[..end].char_indices().nth(MAX_DECODE_LENGTH) {
            end = byte;
        }
        let segment = &rest[..end];
        if segment.contains('<') {
            unescape = false;
        }
        out.push_str(&fix_segment(segment, unescape));
        rest = &rest[end..];
    }
    out
}

/// `ftfy.fix_and_explain`: apply every fixer in order until the text stops changing.
fn fix_segment(segment: &str, unescape: bool) -> String {
    let mut text = segment.to_string();
    loop {
        let orig = text.clone();
        if unescape {
            text = ftfy_unescape_html(&text);
        }
        text = fix_encoding(&text);
        text = fix_c1_controls(&text);
        text = fix_latin_ligatures(&text);
        text = fix_character_width(&text);
        text = uncurl_quotes(&text);
        text = fix_line_breaks(&text);
        // fix_surrogates: a Rust str cannot hold surrogates.
        text = regexes().ansi.replace_all(&text, "").into_owned();
        text = remove_control_chars(&text);
        text = text.nfc().collect();
        if text == orig {
            return text;
        }
    }
}

/// `ftfy.fixes.unescape_html`: only `&...;` forms, plus all-caps names such as `&EACUTE;`.
fn ftfy_unescape_html(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    regexes()
        .html_entity
        .replace_all(text, |caps: &regex::Captures| {
            let m = &caps[0];
            if let Some(v) = htmlize::ENTITIES.get(m.as_bytes()) {
                return String::from_utf8_lossy(v).into_owned();
            }
            if let Some(v) = uppercase_entity(m) {
                return v;
            }
            if m.starts_with("&#") {
                let unescaped = html_unescape(m);
                // A partially decoded reference (the ';' survived) is left as it was.
                return if unescaped.contains(';') { m.to_string() } else { unescaped.into_owned() };
            }
            m.to_string()
        })
        .into_owned()
}

/// The all-caps entries of `ftfy.chardata.HTML_ENTITIES`: `&NAME;` for a lowercase html5 name `name;`, kept only
/// when Python's `html.unescape` leaves `&NAME;` alone, and mapped to the uppercased expansion.
fn uppercase_entity(m: &str) -> Option<String> {
    let name = &m[1..];
    if name.bytes().any(|b| b.is_ascii_lowercase()) {
        return None;
    }
    let lower = format!("&{}", name.to_ascii_lowercase());
    let expansion = htmlize::ENTITIES.get(lower.as_bytes())?;
    if html_unescape(m) != m {
        return None;
    }
    Some(String::from_utf8_lossy(expansion).to_uppercase())
}

/// Python's `html.unescape` (HTML5 rules as CPython implements them, which differ from the spec for numeric
/// references to control characters and for how far a name without ';' may reach).
fn html_unescape(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match charref(after) {
            Some((consumed, replacement)) => {
                out.push_str(&replacement);
                rest = &after[consumed..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// One match of `&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)` after the '&': bytes consumed and
/// what `_replace_charref` returns.
fn charref(after: &str) -> Option<(usize, String)> {
    let bytes = after.as_bytes();
    if bytes.first() == Some(&b'#') {
        let dec = bytes[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        let (start, digits, radix) = if dec > 0 {
            (1, dec, 10)
        } else if matches!(bytes.get(1), Some(b'x' | b'X')) {
            let hex = bytes[2..].iter().take_while(|b| b.is_ascii_hexdigit()).count();
            if hex == 0 {
                return None;
            }
            (2, hex, 16)
        } else {
            return None;
        };
        let mut end = start + digits;
        if bytes.get(end) == Some(&b';') {
            end += 1;
        }
        // Saturate: every value above 0x10FFFF gives the same answer.
        let num = after[start..start + digits]
            .chars()
            .fold(0u32, |acc, c| acc.saturating_mul(radix).saturating_add(c.to_digit(radix).unwrap_or(0)));
        return Some((end, numeric_charref(num)));
    }
    // Up to 32 code points (not bytes) of the name class, then an optional ';'.
    let mut end = 0;
    let mut count = 0;
    for (i, c) in after.char_indices() {
        if count == 32 || matches!(c, '\t' | '\n' | '\x0c' | ' ' | '<' | '&' | '#' | ';') {
            break;
        }
        end = i + c.len_utf8();
        count += 1;
    }
    if count == 0 {
        return None;
    }
    if bytes.get(end) == Some(&b';') {
        end += 1;
    }
    let name = &after[..end];
    if let Some(v) = entity(name) {
        return Some((end, v));
    }
    // The longest prefix (at least 2 characters, shorter than the whole) that is itself a name.
    let bounds: Vec<usize> = name.char_indices().map(|(i, _)| i).collect();
    for x in (2..bounds.len()).rev() {
        if let Some(v) = entity(&name[..bounds[x]]) {
            return Some((end, v + &name[bounds[x]..]));
        }
    }
    Some((end, format!("&{name}")))
}

fn entity(name: &str) -> Option<String> {
    let key = format!("&{name}");
    htmlize::ENTITIES.get(key.as_bytes()).map(|v| String::from_utf8_lossy(v).into_owned())
}

fn numeric_charref(num: u32) -> String {
    if num == 0 {
        return "\u{fffd}".into();
    }
    if num == 0x0d {
        return "\r".into();
    }
    if (0x80..=0x9f).contains(&num) {
        // _invalid_charrefs: windows-1252, with its five holes kept as the C1 control itself.
        let c = t::WINDOWS_1252_C1[(num - 0x80) as usize].unwrap_or(char::from_u32(num).unwrap_or('\u{fffd}'));
        return c.to_string();
    }
    if (0xd800..=0xdfff).contains(&num) || num > 0x10ffff {
        return "\u{fffd}".into();
    }
    let invalid = matches!(num, 0x1..=0x8 | 0xb | 0xe..=0x1f | 0x7f | 0xfdd0..=0xfdef) || (num & 0xfffe) == 0xfffe;
    if invalid {
        return String::new();
    }
    char::from_u32(num).map(String::from).unwrap_or_default()
}

/// `ftfy.fix_encoding`: undo mojibake one step at a time until nothing changes.
fn fix_encoding(text: &str) -> String {
    let mut text = text.to_string();
    while let Some(fixed) = fix_encoding_one_step(&text) {
        if fixed == text {
            break;
        }
        text = fixed;
    }
    text
}

fn is_bad(text: &str) -> bool {
    regexes().badness.is_match(text)
}

/// `_fix_encoding_one_step_and_explain`; None when the text is left as it is.
fn fix_encoding_one_step(text: &str) -> Option<String> {
    if text.is_ascii() || !is_bad(text) {
        return None;
    }
    let mut latin1_possible = false;
    for (index, (name, table, byte_1a)) in t::CHARMAP_ENCODINGS.iter().enumerate() {
        let Some(mut bytes) = encode_charmap(text, table, *byte_1a) else {
            continue;
        };
        if index == 0 {
            latin1_possible = true;
        }
        if *name != "macroman" && regexes().altered_utf8.is_match(&bytes) {
            bytes = restore_byte_a0(&bytes);
        }
        if name.starts_with("sloppy") {
            bytes = regexes().lossy_utf8.replace_all(&bytes, "\u{fffd}".as_bytes()).into_owned();
        }
        let decoded = if bytes.contains(&0xed) || bytes.contains(&0xc0) {
            decode_utf8_variants(&bytes)
        } else {
            String::from_utf8(bytes).ok()
        };
        if let Some(fixed) = decoded {
            return Some(fixed);
        }
    }
    if regexes().utf8_detector.is_match(text) {
        let fixed = decode_inconsistent_utf8(text);
        if fixed != text {
            return Some(fixed);
        }
    }
    // ftfy asks whether "windows-1252" is among the possible encodings, but only "sloppy-windows-1252" can be, so
    // Latin-1 text always gets the strict windows-1252 reading here.
    if latin1_possible
        && let Some(fixed) = latin1_as_windows1252(text)
        && fixed != text
    {
        return Some(fixed);
    }
    if text.chars().any(is_c1) {
        return Some(fix_c1_controls(text));
    }
    None
}

/// `text.encode(encoding)` when `chardata.possible_encoding` allows it, else None.
fn encode_charmap(text: &str, table: &[char; 128], char_1a: char) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        if c == char_1a {
            out.push(0x1a);
        } else if (c as u32) < 0x80 && c != '\x1a' {
            out.push(c as u8);
        } else {
            let pos = table.iter().position(|&t| t == c)?;
            out.push(0x80 + pos as u8);
        }
    }
    Some(out)
}

/// `fixes.restore_byte_a0`: put back 0xA0 bytes that became spaces inside UTF-8 sequences.
fn restore_byte_a0(bytes: &[u8]) -> Vec<u8> {
    // A_GRAVE_WORD_RE = b"\xc3 (?! |quele|quela|quilo|s )" -> b"\xc3\xa0 ", lookahead done by hand.
    let mut grave = Vec::with_capacity(bytes.len() + 8);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0xc3 && bytes.get(i + 1) == Some(&b' ') {
            let after = &bytes[i + 2..];
            let blocked = [&b" "[..], b"quele", b"quela", b"quilo", b"s "].iter().any(|p| after.starts_with(p));
            if !blocked {
                grave.extend_from_slice(b"\xc3\xa0 ");
                i += 2;
                continue;
            }
        }
        grave.push(bytes[i]);
        i += 1;
    }
    regexes()
        .altered_utf8
        .replace_all(&grave, |caps: &regex::bytes::Captures| {
            caps[0].iter().map(|&b| if b == b' ' { 0xa0 } else { b }).collect::<Vec<u8>>()
        })
        .into_owned()
}

/// ftfy's "utf-8-variants" codec: strict UTF-8 plus CESU-8 surrogate pairs and Java's C0 80 for U+0000.
fn decode_utf8_variants(bytes: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == 0xc0 {
            if bytes.get(i + 1) == Some(&0x80) {
                out.push('\0');
                i += 2;
                continue;
            }
            return None;
        }
        if b == 0xed && bytes.get(i + 1).is_some_and(|&n| n >= 0xa0) {
            let s = bytes.get(i..i + 6)?;
            let cesu = (0xa0..=0xaf).contains(&s[1])
                && (0x80..=0xbf).contains(&s[2])
                && s[3] == 0xed
                && (0xb0..=0xbf).contains(&s[4])
                && (0x80..=0xbf).contains(&s[5]);
            if !cesu {
                return None;
            }
            let cp = (((s[1] & 0x0f) as u32) << 16)
                + (((s[2] & 0x3f) as u32) << 10)
                + (((s[4] & 0x0f) as u32) << 6)
                + (s[5] & 0x3f) as u32
                + 0x10000;
            out.push(char::from_u32(cp)?);
            i += 6;
            continue;
        }
        let width = match b {
            0x00..=0x7f => 1,
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => return None,
        };
        let s = std::str::from_utf8(bytes.get(i..i + width)?).ok()?;
        out.push_str(s);
        i += width;
    }
    Some(out)
}

/// `fixes.decode_inconsistent_utf8`: fix mojibake embedded in otherwise good text.
fn decode_inconsistent_utf8(text: &str) -> String {
    let re = regexes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut pos = 0;
    while let Some(m) = re.utf8_detector.find_at(text, pos) {
        // The negative lookbehind of UTF8_DETECTOR_RE: a match may not follow a strict continuation character.
        if let Some(prev) = text[..m.start()].chars().next_back() {
            let mut buf = [0u8; 4];
            if re.utf8_continuation_strict.is_match(prev.encode_utf8(&mut buf)) {
                pos = m.start() + text[m.start()..].chars().next().map_or(1, char::len_utf8);
                continue;
            }
        }
        let sub = m.as_str();
        out.push_str(&text[copied..m.start()]);
        if sub.len() < text.len() && is_bad(sub) {
            out.push_str(&fix_encoding(sub));
        } else {
            out.push_str(sub);
        }
        copied = m.end();
        pos = m.end();
    }
    out.push_str(&text[copied..]);
    out
}

/// `text.encode("latin-1").decode("windows-1252")`, None on a decode error.
fn latin1_as_windows1252(text: &str) -> Option<String> {
    text.chars()
        .map(|c| match c as u32 {
            0x80..=0x9f => t::WINDOWS_1252_C1[(c as u32 - 0x80) as usize],
            0x100.. => None,
            _ => Some(c),
        })
        .collect()
}

fn is_c1(c: char) -> bool {
    ('\u{80}'..='\u{9f}').contains(&c)
}

/// `fixes.fix_c1_controls`: C1 controls read as sloppy windows-1252.
fn fix_c1_controls(text: &str) -> String {
    let sloppy_1252 = &t::CHARMAP_ENCODINGS[1].1;
    text.chars().map(|c| if is_c1(c) { sloppy_1252[(c as u32 - 0x80) as usize] } else { c }).collect()
}

/// `fixes.fix_latin_ligatures` (chardata.LIGATURES).
fn fix_latin_ligatures(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let rep = match c {
            'Ĳ' => "IJ",
            'ĳ' => "ij",
            'ŉ' => "ʼn",
            'Ǳ' => "DZ",
            'ǲ' => "Dz",
            'ǳ' => "dz",
            'Ǆ' => "DŽ",
            'ǅ' => "Dž",
            'ǆ' => "dž",
            'Ǉ' => "LJ",
            'ǈ' => "Lj",
            'ǉ' => "lj",
            'Ǌ' => "NJ",
            'ǋ' => "Nj",
            'ǌ' => "nj",
            'ﬀ' => "ff",
            'ﬁ' => "fi",
            'ﬂ' => "fl",
            'ﬃ' => "ffi",
            'ﬄ' => "ffl",
            'ﬅ' => "ſt",
            'ﬆ' => "st",
            _ => {
                out.push(c);
                continue;
            }
        };
        out.push_str(rep);
    }
    out
}

/// `fixes.fix_character_width` (chardata.WIDTH_MAP: U+3000 and the NFKC forms of U+FF01..U+FFEF).
fn fix_character_width(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\u{3000}' => out.push(' '),
            '\u{ff01}'..='\u{ffef}' => out.extend(std::iter::once(c).nfkc()),
            _ => out.push(c),
        }
    }
    out
}

/// `fixes.uncurl_quotes`.
fn uncurl_quotes(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{2bc}' | '\u{2018}'..='\u{201b}' => '\'',
            '\u{201c}'..='\u{201f}' => '"',
            _ => c,
        })
        .collect()
}

/// `fixes.fix_line_breaks`.
fn fix_line_breaks(text: &str) -> String {
    text.replace("\r\n", "\n").replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n")
}

/// `fixes.remove_control_chars` (chardata.CONTROL_CHARS).
fn remove_control_chars(text: &str) -> String {
    text.chars()
        .filter(|&c| {
            !matches!(c, '\0'..='\u{8}' | '\u{b}' | '\u{e}'..='\u{1f}' | '\u{7f}' | '\u{206a}'..='\u{206f}'
                | '\u{feff}' | '\u{fff9}'..='\u{fffc}')
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htmlize_has_pythons_entity_table() {
        assert_eq!(htmlize::ENTITIES.len(), t::HTML5_ENTITY_COUNT);
    }

    #[test]
    fn python_html_unescape_edge_cases() {
        // Values checked against CPython 3.11's html.unescape.
        assert_eq!(html_unescape("&amp;amp;"), "&amp;");
        assert_eq!(html_unescape("&notit; &notin; &ampx &#65&#x42;"), "¬it; ∉ &x AB");
        assert_eq!(html_unescape("&#128; &#1; &#0; &#xD800; &#99999999999;"), "€  \u{fffd} \u{fffd} \u{fffd}");
        assert_eq!(html_unescape("&#; &#x; &; & x"), "&#; &#x; &; & x");
    }

    #[test]
    fn ftfy_fixes_mojibake_and_leaves_text_with_tags_escaped() {
        assert_eq!(fix_text("âœ” No problems"), "✔ No problems");
        assert_eq!(fix_text("Broken text&hellip; it&#x2019;s ﬂubberiﬁc!"), "Broken text… it's flubberific!");
        assert_eq!(fix_text("ＬＯＵＤ　ＮＯＩＳＥＳ"), "LOUD NOISES");
        assert_eq!(fix_text("P&EACUTE;REZ <b>&eacute;</b>"), "P&EACUTE;REZ <b>&eacute;</b>");
    }
}
