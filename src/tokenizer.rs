//! The OpenAI CLIP byte-level BPE tokenizer exactly as open_clip runs it: same text cleaning, split pattern, merges and ids.

mod clean;
mod tables;

use std::collections::HashMap;
use std::io::Read;

use regex::Regex;

/// `<start_of_text>`.
pub const SOT: u32 = 49406;
/// `<end_of_text>`; also the last id of every truncated sequence.
pub const EOT: u32 = 49407;
/// The text context of every released CLIP model.
pub const CONTEXT_LENGTH: usize = 77;

/// OpenAI's merges (MIT), the same file open_clip ships.
static VOCAB_GZ: &[u8] = include_bytes!("../assets/bpe_simple_vocab_16e6.txt.gz");

/// open_clip reads `merges[1 : 49152 - 256 - 2 + 1]`: the header line is skipped and only this many merges are used.
const NUM_MERGES: usize = 49152 - 256 - 2;
const VOCAB_SIZE: usize = 512 + NUM_MERGES + 2;

/// open_clip's special tokens (not OpenAI's `<|startoftext|>`): they are what its split pattern recognises.
const SOT_TEXT: &str = "<start_of_text>";
const EOT_TEXT: &str = "<end_of_text>";

/// Build once and share: construction gunzips and indexes the 49k merges (about 50 ms).
#[derive(Clone)]
pub struct Tokenizer {
    /// Id of each byte as a word-initial or inner symbol; the word-final (`</w>`) form is this + 256.
    byte_symbol: [u32; 256],
    /// (left id, right id) -> (merge rank, id of the merged symbol).
    merges: HashMap<(u32, u32), (u32, u32)>,
    /// Id -> UTF-8 bytes of the token, `</w>` included.
    decoder: Vec<Vec<u8>>,
    pattern: Regex,
}

impl std::fmt::Debug for Tokenizer {
    // The derived form would print all 49k merges.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer").field("vocab_size", &self.vocab_size()).finish_non_exhaustive()
    }
}

impl Default for Tokenizer {
    fn default() -> Self {
        Self::new()
    }
}

/// GPT-2's reversible byte -> printable character table, in its insertion order (that order is the vocabulary's).
fn bytes_to_unicode() -> Vec<(u8, char)> {
    let printable = |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
    let mut table: Vec<(u8, char)> =
        (0u32..256).filter(|&b| printable(b)).map(|b| (b as u8, char::from_u32(b).unwrap_or('?'))).collect();
    let mut n = 0;
    for b in 0u32..256 {
        if !printable(b) {
            table.push((b as u8, char::from_u32(256 + n).unwrap_or('?')));
            n += 1;
        }
    }
    table
}

impl Tokenizer {
    pub fn new() -> Tokenizer {
        let mut text = String::new();
        // The vocabulary is compiled in; if it does not gunzip the binary itself is broken.
        flate2::read::GzDecoder::new(VOCAB_GZ)
            .read_to_string(&mut text)
            .expect("embedded BPE vocabulary is valid gzip UTF-8");
        let merges: Vec<(&str, &str)> = text
            .split('\n')
            .skip(1)
            .take(NUM_MERGES)
            .map(|line| {
                let mut parts = line.split(' ');
                (parts.next().unwrap_or(""), parts.next().unwrap_or(""))
            })
            .collect();
        assert_eq!(merges.len(), NUM_MERGES, "embedded BPE vocabulary is complete");

        let table = bytes_to_unicode();
        let mut vocab: Vec<String> = table.iter().map(|&(_, c)| c.to_string()).collect();
        vocab.extend(table.iter().map(|&(_, c)| format!("{c}</w>")));
        vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        vocab.push(SOT_TEXT.to_string());
        vocab.push(EOT_TEXT.to_string());
        debug_assert_eq!(vocab.len(), VOCAB_SIZE);

        // Later duplicates win, as in Python's dict(zip(vocab, range(len(vocab)))).
        let mut encoder: HashMap<&str, u32> = HashMap::with_capacity(vocab.len());
        for (id, s) in vocab.iter().enumerate() {
            encoder.insert(s.as_str(), id as u32);
        }
        let mut merge_map = HashMap::with_capacity(NUM_MERGES);
        for (rank, (a, b)) in merges.iter().enumerate() {
            let joined = format!("{a}{b}");
            // A merge whose halves are not tokens can never fire; open_clip would never reach it either.
            if let (Some(&ia), Some(&ib), Some(&ij)) = (encoder.get(a), encoder.get(b), encoder.get(joined.as_str())) {
                merge_map.insert((ia, ib), (rank as u32, ij));
            }
        }

        let mut byte_symbol = [0u32; 256];
        let mut byte_of_char: HashMap<char, u8> = HashMap::with_capacity(256);
        for (i, &(b, c)) in table.iter().enumerate() {
            byte_symbol[b as usize] = i as u32;
            byte_of_char.insert(c, b);
        }
        let decoder =
            vocab.iter().map(|s| s.chars().map(|c| byte_of_char.get(&c).copied().unwrap_or(b'?')).collect()).collect();

        // open_clip's `<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+` with
        // IGNORECASE. Case folding matters for the literals ('ſ matches 's); for the classes, the character sets the
        // Python `regex` module really uses are spelled out, so that its Unicode version and its IGNORECASE quirk
        // (U+0345 belongs to no class) carry over.
        let (l, n, none) = (tables::SPLIT_LETTER, tables::SPLIT_NUMBER, tables::SPLIT_NONE);
        let pattern = Regex::new(&format!(
            "(?i:<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d)|[{l}]+|[{n}]|[^{l}{n}{none}]+"
        ))
        .expect("tokenizer pattern compiles");

        Tokenizer { byte_symbol, merges: merge_map, decoder, pattern }
    }

    /// open_clip's cleaning: ftfy.fix_text, html.unescape twice, whitespace collapsed and stripped, lowercased.
    pub fn clean(text: &str) -> String {
        clean::clean(text)
    }

    /// SOT, the BPE ids of the cleaned text, EOT; never truncated.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let cleaned = clean::clean(text);
        let mut ids = vec![SOT];
        for piece in self.pattern.find_iter(&cleaned) {
            match piece.as_str() {
                SOT_TEXT => ids.push(SOT),
                EOT_TEXT => ids.push(EOT),
                word => self.bpe(word.as_bytes(), &mut ids),
            }
        }
        ids.push(EOT);
        ids
    }

    /// `encode`, cut to `context_length` the way open_clip's `tokenize` does (EOT kept as the last id); not padded.
    pub fn encode_for_context(&self, text: &str, context_length: usize) -> Vec<u32> {
        let mut ids = self.encode(text);
        if ids.len() > context_length {
            ids.truncate(context_length);
            if let Some(last) = ids.last_mut() {
                *last = EOT;
            }
        }
        ids
    }

    /// Ids back to text, one space per word end; ids outside the vocabulary are skipped.
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> =
            ids.iter().filter_map(|&id| self.decoder.get(id as usize)).flat_map(|b| b.iter().copied()).collect();
        String::from_utf8_lossy(&bytes).replace("</w>", " ")
    }

    pub fn vocab_size(&self) -> usize {
        self.decoder.len()
    }

    /// Byte-pair merges of one pre-token, lowest rank first, every occurrence of the chosen pair at once.
    fn bpe(&self, word: &[u8], out: &mut Vec<u32>) {
        let Some((&last, init)) = word.split_last() else {
            return;
        };
        let mut symbols: Vec<u32> = init.iter().map(|&b| self.byte_symbol[b as usize]).collect();
        symbols.push(self.byte_symbol[last as usize] + 256);
        let mut merged = Vec::with_capacity(symbols.len());
        while symbols.len() > 1 {
            let best = symbols
                .windows(2)
                .filter_map(|p| self.merges.get(&(p[0], p[1])).map(|&(rank, id)| (rank, p[0], p[1], id)))
                .min_by_key(|&(rank, ..)| rank);
            let Some((_, first, second, id)) = best else {
                break;
            };
            merged.clear();
            let mut i = 0;
            while i < symbols.len() {
                if symbols[i] == first && i + 1 < symbols.len() && symbols[i + 1] == second {
                    merged.push(id);
                    i += 2;
                } else {
                    merged.push(symbols[i]);
                    i += 1;
                }
            }
            std::mem::swap(&mut symbols, &mut merged);
        }
        out.extend_from_slice(&symbols);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_layout_matches_open_clip() {
        let tok = Tokenizer::new();
        assert_eq!(tok.vocab_size(), 49408);
        assert_eq!(tok.decoder[SOT as usize], SOT_TEXT.as_bytes());
        assert_eq!(tok.decoder[EOT as usize], EOT_TEXT.as_bytes());
        // id 0 is '!', id 256 is '!</w>', the first merge is "i n".
        assert_eq!(tok.decoder[0], b"!");
        assert_eq!(tok.decoder[256], b"!</w>");
        assert_eq!(tok.decoder[512], b"in");
    }

    #[test]
    fn special_tokens_in_text_and_truncation() {
        let tok = Tokenizer::new();
        assert_eq!(tok.encode("a photo of a cat"), [SOT, 320, 1125, 539, 320, 2368, EOT]);
        let long = "cat ".repeat(100);
        let ids = tok.encode_for_context(&long, CONTEXT_LENGTH);
        assert_eq!(ids.len(), CONTEXT_LENGTH);
        assert_eq!(ids[0], SOT);
        assert_eq!(ids[CONTEXT_LENGTH - 1], EOT);
        assert_eq!(tok.encode_for_context("cat", 1), [EOT]);
        assert!(tok.encode_for_context("cat", 0).is_empty());
        assert_eq!(tok.decode(&tok.encode("A PHOTO of a Dog!!")), "<start_of_text>a photo of a dog !! <end_of_text>");
    }
}
