//! Models shared between elements: one copy per (pipeline directory, device, precision).
//!
//! The registry holds weak references only: a model lives as long as some backend holds
//! it, and is freed when the last element using it stops.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use super::shared::{ModelKey, SharedModel};
use crate::wan::WanError;

/// One slot per key, locked while its model loads, so that elements loading the same
/// model at once wait for a single load instead of making two copies, while loads of
/// other models go on.
type Slot = Arc<Mutex<Weak<SharedModel>>>;

static MODELS: LazyLock<Mutex<HashMap<ModelKey, Slot>>> = LazyLock::new(Mutex::default);

fn slot(key: &ModelKey) -> Slot {
    MODELS
        .lock()
        .unwrap()
        .entry(key.clone())
        .or_default()
        .clone()
}

/// The model of `key`: the copy already loaded, or a new one made by `load`.
pub fn acquire(
    key: &ModelKey,
    load: impl FnOnce() -> Result<SharedModel, WanError>,
) -> Result<Arc<SharedModel>, WanError> {
    let slot = slot(key);
    let mut held = slot.lock().unwrap();
    if let Some(model) = held.upgrade() {
        return Ok(model);
    }
    let model = Arc::new(load()?);
    *held = Arc::downgrade(&model);
    Ok(model)
}

/// The loaded model of `key`, if some element holds it.
pub fn lookup(key: &ModelKey) -> Option<Arc<SharedModel>> {
    let slot = MODELS.lock().unwrap().get(key).cloned()?;
    let held = slot.lock().unwrap();
    held.upgrade()
}

/// How many handles to the model of `key` exist (0 when it is not loaded).
pub fn holders(key: &ModelKey) -> usize {
    // The map's lock is let go first: a slot stays locked for as long as its model loads.
    let slot = MODELS.lock().unwrap().get(key).cloned();
    slot.map_or(0, |slot| slot.lock().unwrap().strong_count())
}
