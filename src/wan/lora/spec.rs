//! The `lora` property's list, `path[:scale],...`, read into canonical files and scales.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use crate::wan::error::{Result, WanError};

/// One LoRA file and the strength it is merged with.
#[derive(Debug, Clone)]
pub struct LoraSpec {
    /// Canonical, so that two spellings of one file make the same model key.
    pub path: PathBuf,
    pub scale: f64,
}

// Scales compare by their bits: a model key must be `Eq` and `Hash`, and two loads
// differ when any bit of a scale does. `+ 0.0` makes -0.0 and 0.0 one key.
impl PartialEq for LoraSpec {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && (self.scale + 0.0).to_bits() == (other.scale + 0.0).to_bits()
    }
}

impl Eq for LoraSpec {}

impl Hash for LoraSpec {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.path.hash(state);
        (self.scale + 0.0).to_bits().hash(state);
    }
}

impl LoraSpec {
    /// Reads `path[:scale],...`: entries separated by commas (empty ones skipped), the
    /// scale after the entry's last `:` when what follows it is a number, else 1.0 (so a
    /// path may hold colons). Every file must exist; paths are canonicalized.
    pub fn parse_list(text: &str) -> Result<Vec<LoraSpec>> {
        text.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(Self::parse_entry)
            .collect()
    }

    fn parse_entry(entry: &str) -> Result<LoraSpec> {
        let bad_scale = |scale: &str| WanError::LoraScale {
            entry: entry.to_string(),
            scale: scale.to_string(),
        };
        let (path, scale) = match entry.rsplit_once(':') {
            Some((path, scale)) => match scale.trim().parse::<f64>() {
                Ok(value) if value.is_finite() => (path.trim(), value),
                Ok(_) => return Err(bad_scale(scale)),
                // `file.safetensors:abc` is a mistyped scale, not a file named so;
                // unless such a file exists.
                Err(_) if !Path::new(entry).exists() && looks_like_lora(path) => {
                    return Err(bad_scale(scale));
                }
                Err(_) => (entry, 1.0),
            },
            None => (entry, 1.0),
        };
        Ok(LoraSpec {
            path: canonical_file(Path::new(path))?,
            scale,
        })
    }
}

fn looks_like_lora(path: &str) -> bool {
    path.ends_with(".safetensors") || Path::new(path).is_file()
}

fn canonical_file(path: &Path) -> Result<PathBuf> {
    let canonical = path
        .canonicalize()
        .map_err(|source| WanError::reading(path, source))?;
    if canonical.is_file() {
        Ok(canonical)
    } else {
        Err(WanError::InvalidInput(format!(
            "LoRA {}: not a file",
            path.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("wanedit-lora-spec-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn scales_default_to_one_and_paths_are_canonical() {
        let dir = temp_dir("parse");
        let a = dir.join("a.safetensors");
        let b = dir.join("b:c.safetensors");
        std::fs::write(&a, b"").unwrap();
        std::fs::write(&b, b"").unwrap();
        let text = format!(
            " {}/./a.safetensors , {}:0.5,,{}:-1e-1 ",
            dir.display(),
            b.display(),
            a.display()
        );
        let specs = LoraSpec::parse_list(&text).unwrap();
        let a = a.canonicalize().unwrap();
        let b = b.canonicalize().unwrap();
        assert_eq!(
            specs,
            vec![
                LoraSpec {
                    path: a.clone(),
                    scale: 1.0
                },
                LoraSpec {
                    path: b.clone(),
                    scale: 0.5
                },
                LoraSpec {
                    path: a,
                    scale: -0.1
                },
            ]
        );
        // A colon inside the path with no number after it belongs to the path.
        let specs = LoraSpec::parse_list(b.to_str().unwrap()).unwrap();
        assert_eq!(
            specs,
            vec![LoraSpec {
                path: b,
                scale: 1.0
            }]
        );
        assert_eq!(LoraSpec::parse_list(" , ").unwrap(), vec![]);
    }

    #[test]
    fn errors_name_the_entry() {
        let dir = temp_dir("errors");
        let a = dir.join("x.safetensors");
        std::fs::write(&a, b"").unwrap();
        let entry = format!("{}:abc", a.display());
        assert_eq!(
            LoraSpec::parse_list(&entry).unwrap_err().to_string(),
            format!("lora `{entry}`: `abc` is not a scale (a number after the last ':')")
        );
        assert_eq!(
            LoraSpec::parse_list("missing.safetensors:abc")
                .unwrap_err()
                .to_string(),
            "lora `missing.safetensors:abc`: `abc` is not a scale (a number after the last ':')"
        );
        let entry = format!("{}:inf", a.display());
        assert!(matches!(
            LoraSpec::parse_list(&entry),
            Err(WanError::LoraScale { .. })
        ));
        let missing = dir.join("gone.safetensors");
        assert_eq!(
            LoraSpec::parse_list(&format!("{}:0.5", missing.display()))
                .unwrap_err()
                .to_string(),
            format!("{}: missing file", missing.display())
        );
        assert_eq!(
            LoraSpec::parse_list(dir.to_str().unwrap())
                .unwrap_err()
                .to_string(),
            format!("invalid input: LoRA {}: not a file", dir.display())
        );
    }

    #[test]
    fn keys_compare_scales_by_value() {
        let p = PathBuf::from("/x");
        let spec = |scale| LoraSpec {
            path: p.clone(),
            scale,
        };
        assert_eq!(spec(0.0), spec(-0.0));
        assert_ne!(spec(1.0), spec(0.5));
    }
}
