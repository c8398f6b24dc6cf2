//! The UMT5 tokenizer with the Wan pipelines' prompt cleaning, truncation and padding.

use std::path::{Path, PathBuf};

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};
use unicode_normalization::UnicodeNormalization;

use super::error::{Result, WanError};

/// The Wan pipelines encode every prompt to this many tokens.
pub const MAX_SEQUENCE_LENGTH: usize = 512;

/// `tokenizer/tokenizer.json`, configured as the Wan pipelines call it.
pub struct PromptTokenizer {
    inner: Tokenizer,
    path: PathBuf,
}

impl PromptTokenizer {
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.is_file() {
            return Err(WanError::MissingFile { path });
        }
        let mut inner = Tokenizer::from_file(&path).map_err(|e| WanError::Tokenizer {
            path: path.clone(),
            message: e.to_string(),
        })?;
        // transformers truncates with the special tokens counted in (the closing `</s>`
        // survives) and pads separately; padding is done by the caller, which only
        // needs the number of real tokens.
        inner
            .with_truncation(Some(TruncationParams {
                max_length: MAX_SEQUENCE_LENGTH,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| WanError::Tokenizer {
                path: path.clone(),
                message: e.to_string(),
            })?;
        inner.with_padding(None);
        Ok(Self { inner, path })
    }

    /// The token ids of the cleaned prompt, with the special tokens and without padding:
    /// at most [`MAX_SEQUENCE_LENGTH`] of them.
    pub fn encode(&self, prompt: &str) -> Result<Vec<u32>> {
        let text = clean_prompt(prompt);
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| WanError::Tokenizer {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
        Ok(encoding.get_ids().to_vec())
    }
}

/// The pipelines' `prompt_clean`: ftfy's `fix_text`, HTML unescaping twice, and
/// whitespace collapsing.
///
/// Of `fix_text` this keeps every step that applies to text which is not mojibake, in
/// ftfy's order; the repair of mojibake itself (text decoded with the wrong codec),
/// which needs ftfy's tables of broken encodings, is not reproduced.
pub fn clean_prompt(prompt: &str) -> String {
    let text = fix_text(prompt);
    let text = html_unescape(&html_unescape(&text));
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn fix_text(text: &str) -> String {
    // ftfy only unescapes HTML when the text contains no `<`, since real HTML must
    // keep its entities.
    let text = if text.contains('<') {
        text.to_string()
    } else {
        html_unescape(text)
    };
    let text = remove_terminal_escapes(&text);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().map(fix_c1_control).peekable();
    while let Some(c) = chars.next() {
        match c {
            // Latin ligatures.
            '\u{fb00}' => out.push_str("ff"),
            '\u{fb01}' => out.push_str("fi"),
            '\u{fb02}' => out.push_str("fl"),
            '\u{fb03}' => out.push_str("ffi"),
            '\u{fb04}' => out.push_str("ffl"),
            '\u{fb05}' | '\u{fb06}' => out.push_str("st"),
            '\u{132}' => out.push_str("IJ"),
            '\u{133}' => out.push_str("ij"),
            '\u{149}' => out.push_str("\u{2bc}n"),
            '\u{1c4}' => out.push_str("D\u{17d}"),
            '\u{1c5}' => out.push_str("D\u{17e}"),
            '\u{1c6}' => out.push_str("d\u{17e}"),
            '\u{1c7}' => out.push_str("LJ"),
            '\u{1c8}' => out.push_str("Lj"),
            '\u{1c9}' => out.push_str("lj"),
            '\u{1ca}' => out.push_str("NJ"),
            '\u{1cb}' => out.push_str("Nj"),
            '\u{1cc}' => out.push_str("nj"),
            // Full-width forms.
            '\u{ff01}'..='\u{ff5e}' => out.push(char::from_u32(c as u32 - 0xfee0).unwrap_or(c)),
            '\u{3000}' => out.push(' '),
            // Curly quotes.
            '\u{2bc}' | '\u{2018}'..='\u{201b}' => out.push('\''),
            '\u{201c}'..='\u{201f}' => out.push('"'),
            // Line breaks.
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push('\n');
            }
            '\u{2028}' | '\u{2029}' | '\u{85}' => out.push('\n'),
            c if is_ftfy_control(c) => {}
            c => out.push(c),
        }
    }
    out.nfc().collect()
}

/// ANSI terminal escapes (`ESC [ digits-and-semicolons letter`), which ftfy drops.
fn remove_terminal_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("\u{1b}[") {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let params = after
            .find(|c: char| !(c.is_ascii_digit() || c == ';'))
            .unwrap_or(after.len());
        match after[params..].chars().next() {
            Some(c) if c.is_ascii_alphabetic() => rest = &after[params + 1..],
            _ => {
                out.push_str(&rest[pos..pos + 2]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// C1 control characters read as the Windows-1252 characters they almost always were
/// (the five bytes Windows-1252 leaves undefined stay as they are).
fn fix_c1_control(c: char) -> char {
    const CP1252: &str = "\u{20ac}\u{81}\u{201a}\u{192}\u{201e}\u{2026}\u{2020}\u{2021}\u{2c6}\u{2030}\u{160}\u{2039}\u{152}\u{8d}\u{17d}\u{8f}\u{90}\u{2018}\u{2019}\u{201c}\u{201d}\u{2022}\u{2013}\u{2014}\u{2dc}\u{2122}\u{161}\u{203a}\u{153}\u{9d}\u{17e}\u{178}";
    match c as u32 {
        code @ 0x80..=0x9f => CP1252.chars().nth((code - 0x80) as usize).unwrap_or(c),
        _ => c,
    }
}

/// The characters ftfy's `remove_control_chars` deletes (tab, line feed and form feed
/// stay).
fn is_ftfy_control(c: char) -> bool {
    matches!(c as u32,
        0x00..=0x08 | 0x0b | 0x0e..=0x1f | 0x7f | 0x206a..=0x206f | 0xfeff
        | 0xfff9..=0xfffc | 0x1d173..=0x1d17a | 0xe0000..=0xe007f)
}

/// The HTML 4 Latin-1 entities, for U+00A0 to U+00FF in order.
const LATIN1_ENTITIES: [&str; 96] = [
    "nbsp", "iexcl", "cent", "pound", "curren", "yen", "brvbar", "sect", "uml", "copy", "ordf",
    "laquo", "not", "shy", "reg", "macr", "deg", "plusmn", "sup2", "sup3", "acute", "micro",
    "para", "middot", "cedil", "sup1", "ordm", "raquo", "frac14", "frac12", "frac34", "iquest",
    "Agrave", "Aacute", "Acirc", "Atilde", "Auml", "Aring", "AElig", "Ccedil", "Egrave", "Eacute",
    "Ecirc", "Euml", "Igrave", "Iacute", "Icirc", "Iuml", "ETH", "Ntilde", "Ograve", "Oacute",
    "Ocirc", "Otilde", "Ouml", "times", "Oslash", "Ugrave", "Uacute", "Ucirc", "Uuml", "Yacute",
    "THORN", "szlig", "agrave", "aacute", "acirc", "atilde", "auml", "aring", "aelig", "ccedil",
    "egrave", "eacute", "ecirc", "euml", "igrave", "iacute", "icirc", "iuml", "eth", "ntilde",
    "ograve", "oacute", "ocirc", "otilde", "ouml", "divide", "oslash", "ugrave", "uacute", "ucirc",
    "uuml", "yacute", "thorn", "yuml",
];

/// Other named entities a prompt plausibly holds.
const OTHER_ENTITIES: [(&str, char); 15] = [
    ("amp", '&'),
    ("lt", '<'),
    ("gt", '>'),
    ("quot", '"'),
    ("apos", '\''),
    ("hellip", '\u{2026}'),
    ("mdash", '\u{2014}'),
    ("ndash", '\u{2013}'),
    ("lsquo", '\u{2018}'),
    ("rsquo", '\u{2019}'),
    ("ldquo", '\u{201c}'),
    ("rdquo", '\u{201d}'),
    ("bull", '\u{2022}'),
    ("trade", '\u{2122}'),
    ("euro", '\u{20ac}'),
];

fn named_entity(name: &str) -> Option<char> {
    LATIN1_ENTITIES
        .iter()
        .position(|n| *n == name)
        .and_then(|i| char::from_u32(0xa0 + i as u32))
        .or_else(|| {
            OTHER_ENTITIES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, c)| *c)
        })
}

/// Python's `html.unescape` for the HTML 4 Latin-1 entities, a few common others, and
/// numeric character references.
fn html_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('&') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos..];
        let end = rest[1..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '#'))
            .map_or(rest.len(), |i| i + 1);
        let name = &rest[1..end];
        let decoded = if let Some(num) = name.strip_prefix('#') {
            let code = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok(),
                None => num.parse().ok(),
            };
            code.and_then(char::from_u32)
        } else {
            named_entity(name)
        };
        match decoded {
            Some(c) if end > 1 => {
                out.push(c);
                rest = &rest[end..];
                rest = rest.strip_prefix(';').unwrap_or(rest);
            }
            _ => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::clean_prompt;

    #[test]
    fn cleaning_matches_the_pipelines() {
        // Values from diffusers' `prompt_clean` (diffusers 0.42.1, ftfy 6.3.1).
        assert_eq!(clean_prompt("  a  cat\n\tjumps  "), "a cat jumps");
        assert_eq!(clean_prompt("Tom &amp; Jerry"), "Tom & Jerry");
        assert_eq!(clean_prompt("&amp;lt;b&amp;gt;"), "<b>");
        assert_eq!(
            clean_prompt("\u{201c}hi\u{201d} it\u{2019}s"),
            "\"hi\" it's"
        );
        assert_eq!(clean_prompt("\u{fb01}ne"), "fine");
        assert_eq!(clean_prompt("&#65;&#x42;"), "AB");
        assert_eq!(clean_prompt("a <b> &amp; c"), "a <b> & c");
        assert_eq!(clean_prompt("\u{ff21}\u{ff22}"), "AB");
        assert_eq!(clean_prompt("e\u{301}t\u{e9}"), "\u{e9}t\u{e9}");
        assert_eq!(clean_prompt("\u{1b}[31mred\u{1b}[0m text"), "red text");
        assert_eq!(clean_prompt("a\u{93}quoted\u{94} b"), "a\"quoted\" b");
        assert_eq!(clean_prompt("x\u{85}y"), "x\u{2026}y");
        assert_eq!(
            clean_prompt("a\u{200b}b soft\u{ad}hyphen"),
            "a\u{200b}b soft\u{ad}hyphen"
        );
        assert_eq!(
            clean_prompt("nul\u{0}x bell\u{7}x \u{feff}bom"),
            "nulx bellx bom"
        );
        assert_eq!(
            clean_prompt("caf\u{e9} &eacute; &nbsp;x"),
            "caf\u{e9} \u{e9} x"
        );
        assert_eq!(clean_prompt("line1\r\nline2\rline3"), "line1 line2 line3");
    }
}
