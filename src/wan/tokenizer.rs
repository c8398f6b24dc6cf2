//! The UMT5 tokenizer with the Wan pipelines' prompt cleaning, truncation and padding.

use std::path::{Path, PathBuf};

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

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
/// Of `fix_text` this keeps the repairs that change ordinary prompts (HTML entities,
/// curly quotes, ligatures, full-width forms, control characters and line breaks);
/// mojibake repair, which needs ftfy's tables of broken encodings, is not reproduced.
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
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{201b}' => out.push('\''),
            '\u{201c}' | '\u{201d}' | '\u{201e}' | '\u{201f}' => out.push('"'),
            '\u{fb00}' => out.push_str("ff"),
            '\u{fb01}' => out.push_str("fi"),
            '\u{fb02}' => out.push_str("fl"),
            '\u{fb03}' => out.push_str("ffi"),
            '\u{fb04}' => out.push_str("ffl"),
            '\u{fb05}' | '\u{fb06}' => out.push_str("st"),
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push('\n');
            }
            '\u{2028}' | '\u{2029}' | '\u{85}' => out.push('\n'),
            '\u{ff01}'..='\u{ff5e}' => {
                out.push(char::from_u32(c as u32 - 0xfee0).unwrap_or(c));
            }
            '\u{3000}' => out.push(' '),
            '\t' | '\n' => out.push(c),
            c if c.is_control() || ('\u{fff9}'..='\u{fffb}').contains(&c) => {}
            c => out.push(c),
        }
    }
    out
}

/// Python's `html.unescape` for the named entities a prompt plausibly holds and for
/// numeric character references.
fn html_unescape(text: &str) -> String {
    const NAMED: [(&str, char); 10] = [
        ("amp", '&'),
        ("lt", '<'),
        ("gt", '>'),
        ("quot", '"'),
        ("apos", '\''),
        ("nbsp", '\u{a0}'),
        ("hellip", '\u{2026}'),
        ("mdash", '\u{2014}'),
        ("ndash", '\u{2013}'),
        ("copy", '\u{a9}'),
    ];
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
            NAMED.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
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
        // Values from diffusers' `prompt_clean` (ftfy 6).
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
    }
}
