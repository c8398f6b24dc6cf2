//! LoRA tensor names in the two layouts found in the wild, mapped to the names of the
//! port's weights (diffusers' `WanTransformer3DModel` names).
//!
//! - diffusers / PEFT: `transformer.blocks.0.attn1.to_q.lora_A.weight` (the prefix may
//!   be missing), `lora_B.weight`, `lora_B.bias`, and optionally `<module>.alpha`.
//! - ComfyUI / kijai / the original Wan code: `diffusion_model.blocks.0.self_attn.q.
//!   lora_down.weight` (or `lora_A`), `lora_up.weight` (or `lora_B`), `.alpha`, and the
//!   full deltas `.diff` (weights) and `.diff_b` (biases) of extracted LoRAs.

/// Which naming a file uses; one per file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Diffusers,
    Original,
}

/// What one tensor of a LoRA file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// `A` (`lora_down`): `[rank, in]`.
    Down,
    /// `B` (`lora_up`): `[out, rank]`.
    Up,
    /// PEFT's bias of `B` (diffusers' `lora_bias`): a bias delta scaled like `B @ A`.
    UpBias,
    /// The scalar alpha: the pair is scaled by `alpha / rank`.
    Alpha,
    /// A full delta of the weight (or of a parameter tensor such as a modulation table).
    Diff,
    /// A full delta of the bias.
    DiffBias,
}

const PARTS: [(&str, Part); 9] = [
    (".lora_down.weight", Part::Down),
    (".lora_A.weight", Part::Down),
    (".lora_up.weight", Part::Up),
    (".lora_B.weight", Part::Up),
    (".lora_B.bias", Part::UpBias),
    (".lora_up.bias", Part::UpBias),
    (".alpha", Part::Alpha),
    (".diff_b", Part::DiffBias),
    (".diff", Part::Diff),
];

/// The layout of a file, from its keys: the original names are recognised by their
/// prefix or by module names diffusers does not use.
pub fn layout_of<'a>(keys: impl IntoIterator<Item = &'a str>) -> Layout {
    let original = |k: &str| {
        k.starts_with("diffusion_model.")
            || [
                ".self_attn.",
                ".cross_attn.",
                ".ffn.0.",
                ".ffn.2.",
                "head.head.",
            ]
            .iter()
            .any(|m| k.contains(m))
            || k.contains(".lora_down.")
            || k.contains(".lora_up.")
    };
    if keys.into_iter().any(original) {
        Layout::Original
    } else {
        Layout::Diffusers
    }
}

/// A tensor's role and the module it belongs to (in the port's names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub module: String,
    pub part: Part,
    /// The parameter a `Diff` replaces when it is not `<module>.weight` (the
    /// modulation tables, which are parameters of their own).
    pub param: Option<String>,
}

impl Parsed {
    /// The weight tensor a low-rank pair or a `.diff` changes.
    pub fn weight(&self) -> String {
        self.param
            .clone()
            .unwrap_or_else(|| format!("{}.weight", self.module))
    }

    pub fn bias(&self) -> String {
        format!("{}.bias", self.module)
    }
}

/// Reads one key, or says why it is not a LoRA tensor this port knows.
pub fn parse(key: &str, layout: Layout) -> Result<Parsed, String> {
    let (stem, part) = PARTS
        .iter()
        .find_map(|(suffix, part)| key.strip_suffix(suffix).map(|stem| (stem, *part)))
        .ok_or_else(|| {
            "not a LoRA tensor (expected lora_A/lora_B, lora_down/lora_up, alpha, diff or \
             diff_b)"
                .to_string()
        })?;
    let (module, param) = match layout {
        Layout::Diffusers => {
            let stem = stem
                .strip_prefix("transformer.")
                .or_else(|| stem.strip_prefix("base_model.model."))
                .unwrap_or(stem);
            if stem.starts_with("text_encoder.") || stem.starts_with("vae.") {
                return Err("only LoRAs of the transformer are supported".into());
            }
            (stem.to_string(), None)
        }
        Layout::Original => {
            let stem = stem.strip_prefix("diffusion_model.").unwrap_or(stem);
            original_module(stem).ok_or_else(|| {
                format!("`{stem}` is not a module of the Wan transformer this port knows")
            })?
        }
    };
    Ok(Parsed {
        module,
        part,
        param,
    })
}

/// The diffusers name of a module of the original Wan code, and the parameter it stands
/// for when that is not `<module>.weight`.
fn original_module(name: &str) -> Option<(String, Option<String>)> {
    let plain = |s: &str| Some((s.to_string(), None));
    match name {
        "patch_embedding" => return plain("patch_embedding"),
        "text_embedding.0" => return plain("condition_embedder.text_embedder.linear_1"),
        "text_embedding.2" => return plain("condition_embedder.text_embedder.linear_2"),
        "time_embedding.0" => return plain("condition_embedder.time_embedder.linear_1"),
        "time_embedding.2" => return plain("condition_embedder.time_embedder.linear_2"),
        "time_projection.1" => return plain("condition_embedder.time_proj"),
        "head.head" => return plain("proj_out"),
        "vace_patch_embedding" => return plain("vace_patch_embedding"),
        "head.modulation" => {
            return Some(("".into(), Some("scale_shift_table".into())));
        }
        _ => {}
    }
    // The VACE blocks (`vace_blocks.<i>`) are main blocks with input and output projections.
    let (blocks, rest) = match name.strip_prefix("vace_blocks.") {
        Some(rest) => ("vace_blocks", rest),
        None => ("blocks", name.strip_prefix("blocks.")?),
    };
    let (index, inner) = rest.split_once('.')?;
    index.parse::<usize>().ok()?;
    let block = |s: &str| Some((format!("{blocks}.{index}.{s}"), None));
    let attention = |inner: &str, attn: &str| {
        let target = match inner {
            "q" => "to_q",
            "k" => "to_k",
            "v" => "to_v",
            "o" => "to_out.0",
            "norm_q" => "norm_q",
            "norm_k" => "norm_k",
            // The image branch of I2V models: named, so that the error says the port has
            // no such weight rather than that the key is unknown.
            "k_img" => "add_k_proj",
            "v_img" => "add_v_proj",
            "norm_k_img" => "norm_added_k",
            _ => return None,
        };
        Some((format!("{blocks}.{index}.{attn}.{target}"), None))
    };
    match inner {
        "before_proj" if blocks == "vace_blocks" => block("proj_in"),
        "after_proj" if blocks == "vace_blocks" => block("proj_out"),
        "ffn.0" => block("ffn.net.0.proj"),
        "ffn.2" => block("ffn.net.2"),
        // The original norm3 (cross-attention) is diffusers' norm2.
        "norm3" => block("norm2"),
        "modulation" => Some((
            format!("{blocks}.{index}"),
            Some(format!("{blocks}.{index}.scale_shift_table")),
        )),
        _ => {
            if let Some(a) = inner.strip_prefix("self_attn.") {
                attention(a, "attn1")
            } else if let Some(a) = inner.strip_prefix("cross_attn.") {
                attention(a, "attn2")
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(key: &str) -> (String, Part) {
        let layout = layout_of([key]);
        let p = parse(key, layout).unwrap();
        let name = match p.part {
            Part::DiffBias | Part::UpBias => p.bias(),
            _ => p.weight(),
        };
        (name, p.part)
    }

    #[test]
    fn both_layouts_name_the_same_weights() {
        let pairs = [
            (
                "diffusion_model.blocks.3.self_attn.q.lora_down.weight",
                "transformer.blocks.3.attn1.to_q.lora_A.weight",
            ),
            (
                "diffusion_model.blocks.3.self_attn.o.lora_up.weight",
                "blocks.3.attn1.to_out.0.lora_B.weight",
            ),
            (
                "diffusion_model.blocks.0.cross_attn.k.lora_A.weight",
                "transformer.blocks.0.attn2.to_k.lora_A.weight",
            ),
            (
                "diffusion_model.blocks.0.cross_attn.v.alpha",
                "transformer.blocks.0.attn2.to_v.alpha",
            ),
            (
                "diffusion_model.blocks.1.ffn.0.lora_B.weight",
                "transformer.blocks.1.ffn.net.0.proj.lora_B.weight",
            ),
            (
                "diffusion_model.blocks.1.ffn.2.diff_b",
                "transformer.blocks.1.ffn.net.2.lora_B.bias",
            ),
            (
                "diffusion_model.blocks.1.norm3.diff",
                "transformer.blocks.1.norm2.diff",
            ),
            (
                "diffusion_model.blocks.1.self_attn.norm_k.diff",
                "transformer.blocks.1.attn1.norm_k.diff",
            ),
            (
                "diffusion_model.head.head.lora_down.weight",
                "transformer.proj_out.lora_A.weight",
            ),
            (
                "diffusion_model.time_projection.1.lora_up.weight",
                "transformer.condition_embedder.time_proj.lora_B.weight",
            ),
            (
                "diffusion_model.text_embedding.2.lora_up.weight",
                "transformer.condition_embedder.text_embedder.linear_2.lora_B.weight",
            ),
            (
                "diffusion_model.time_embedding.0.lora_up.weight",
                "transformer.condition_embedder.time_embedder.linear_1.lora_B.weight",
            ),
            // VACE: the original before_proj / after_proj are diffusers' proj_in / proj_out.
            (
                "diffusion_model.vace_blocks.0.before_proj.lora_down.weight",
                "transformer.vace_blocks.0.proj_in.lora_A.weight",
            ),
            (
                "diffusion_model.vace_blocks.1.after_proj.lora_up.weight",
                "transformer.vace_blocks.1.proj_out.lora_B.weight",
            ),
            (
                "diffusion_model.vace_blocks.1.cross_attn.o.lora_up.weight",
                "transformer.vace_blocks.1.attn2.to_out.0.lora_B.weight",
            ),
            (
                "diffusion_model.vace_patch_embedding.diff_b",
                "transformer.vace_patch_embedding.lora_B.bias",
            ),
        ];
        for (original, diffusers) in pairs {
            let (a, _) = target(original);
            let (b, _) = target(diffusers);
            assert_eq!(a, b, "{original} vs {diffusers}");
        }
        assert_eq!(
            target("diffusion_model.blocks.2.modulation.diff"),
            ("blocks.2.scale_shift_table".into(), Part::Diff)
        );
        assert_eq!(
            target("diffusion_model.vace_blocks.0.modulation.diff"),
            ("vace_blocks.0.scale_shift_table".into(), Part::Diff)
        );
        assert_eq!(
            target("diffusion_model.vace_blocks.0.ffn.0.lora_down.weight"),
            ("vace_blocks.0.ffn.net.0.proj.weight".into(), Part::Down)
        );
        assert_eq!(
            target("diffusion_model.head.modulation.diff"),
            ("scale_shift_table".into(), Part::Diff)
        );
        // Without the prefix, the original names still tell the layout.
        assert_eq!(
            target("blocks.0.self_attn.q.lora_down.weight"),
            ("blocks.0.attn1.to_q.weight".into(), Part::Down)
        );
    }

    #[test]
    fn unknown_keys_say_why() {
        let layout = Layout::Original;
        assert!(
            parse(
                "diffusion_model.blocks.0.self_attn.q.lora_mid.weight",
                layout
            )
            .unwrap_err()
            .starts_with("not a LoRA tensor")
        );
        assert_eq!(
            parse(
                "diffusion_model.blocks.0.self_attn.x.lora_down.weight",
                layout
            )
            .unwrap_err(),
            "`blocks.0.self_attn.x` is not a module of the Wan transformer this port knows"
        );
        assert_eq!(
            parse(
                "text_encoder.encoder.block.0.lora_A.weight",
                Layout::Diffusers
            )
            .unwrap_err(),
            "only LoRAs of the transformer are supported"
        );
    }
}
