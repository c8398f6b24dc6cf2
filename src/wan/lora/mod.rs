//! LoRA adapters merged into the transformer's weights at load.
//!
//! Each LoRA file (`spec`) is read in either key layout (`keys`), its tensors grouped by
//! the weight they change (`file`), and the deltas `scale * alpha / rank * B @ A` (and
//! the full `.diff` / `.diff_b` deltas) are added in f32 to the weights as the
//! transformer reads them, before the conversion to the model's precision (`merge`).
//! A merged model runs exactly as the base one: nothing is left to compute per step.
//!
//! Nothing is ignored: a key of an unknown form, a module the port does not know, a
//! weight the transformer does not have or does not read, a half pair or a shape that
//! does not fit is an error naming the file and the key.

mod file;
mod keys;
mod merge;
mod spec;

pub use merge::{MergedWeights, Pending};
pub use spec::LoraSpec;

#[cfg(test)]
mod tests;
